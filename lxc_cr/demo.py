"""`make demo`: checkpoint a counting process, show it gone, restore it, show it counting on.

The demo program (tests/integration/progs/counter.c) prints a counter and holds
64 MiB of distinct data; after the restore it is asked to check every word.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from .engine import kernel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LXC_CR = os.path.join(ROOT, ".venv", "bin", "lxc-cr")
COUNTER = os.path.join(ROOT, "tests", "integration", "progs", "bin", "counter")


def say(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def follow(path: str, seconds: float, offset: int) -> int:
    """Print what the program writes for a while; returns the new offset."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        with open(path) as f:
            f.seek(offset)
            chunk = f.read()
        if chunk:
            sys.stdout.write("".join(f"   | {line}\n" for line in chunk.splitlines()))
            sys.stdout.flush()
            offset += len(chunk)
        time.sleep(0.1)
    return offset


def run(*args: str) -> None:
    print("   $ " + " ".join(args), flush=True)
    t0 = time.monotonic()
    subprocess.run(args, check=True)
    print(f"     ({(time.monotonic() - t0) * 1000:.0f} ms)", flush=True)


def main() -> int:
    # the restored program is reparented to us when `lxc-cr restore -d` exits
    kernel.set_child_subreaper(True)
    work = tempfile.mkdtemp(prefix="lxc-cr-demo-")
    images = os.path.join(work, "images")
    log = os.path.join(work, "counter.log")
    say("start a program that counts and holds 64 MiB of data")
    with open(log, "w") as out:
        proc = subprocess.Popen([COUNTER, "64", "300"], stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                                cwd=work, start_new_session=True)
    pid = proc.pid
    offset = follow(log, 1.5, 0)
    say(f"checkpoint it (PID {pid}) into {images}")
    run(LXC_CR, "dump", "-t", str(pid), "-D", images)
    proc.wait()
    offset = follow(log, 0.1, offset)          # what it printed before it was frozen
    print(f"   PID {pid} is {'still there?!' if os.path.exists(f'/proc/{pid}') else 'gone'}; "
          f"images: {len(os.listdir(images))} files, "
          f"{sum(os.path.getsize(os.path.join(images, f)) for f in os.listdir(images)) >> 20} MiB")
    time.sleep(1.0)
    print(f"   nothing printed for a second: {'right' if os.path.getsize(log) == offset else 'WRONG'}")
    say("restore it")
    pidfile = os.path.join(work, "pid")
    run(LXC_CR, "restore", "-D", images, "-d", "--pidfile", pidfile)
    with open(pidfile) as f:
        restored = int(f.read())
    print(f"   restored PID {restored} ({'the same' if restored == pid else 'DIFFERENT'})")
    offset = follow(log, 1.5, offset)
    say("ask it to verify every word of its memory")
    os.kill(restored, signal.SIGUSR1)
    offset = follow(log, 1.0, offset)
    os.kill(restored, signal.SIGTERM)
    os.waitpid(restored, 0)                     # ours again: we are its subreaper
    with open(log) as f:
        ok = "PASS" in f.read()
    shutil.rmtree(work)
    say("done: the program continued where it stopped" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
