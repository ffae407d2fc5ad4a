"""`make demo`: checkpoint a running container with lxc-checkpoint, restore it, show it counting on.

The container is a busybox one made fit for checkpointing (lxc_cr/busybox_ct.py): its
counter is shown from its own log, its processes with lxc-attach, before the
checkpoint and after the restore (same PIDs, the count going on from where it was).
Where the engine cannot checkpoint the container yet, the demo says why (the
blockers `lxc-cr plan --lxc` lists) and shows a process tree instead: a program
(tests/integration/progs/counter.c) that prints a counter and holds 64 MiB of
distinct data, checked word by word after its restore.
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
    if "--process" not in sys.argv[1:]:
        done = container_demo()
        if done is not None:
            return done
    return process_demo()


def process_demo() -> int:
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


def container_demo() -> int | None:
    """The LXC demo; None if the engine cannot checkpoint the container (it says why)."""
    from . import busybox_ct as ct
    from .lxc_plan import blockers
    missing = ct.lxc_missing()
    if missing:
        say(f"no container demo: {missing}")
        return None
    ct.ensure_bridge()
    path = ct.CriuOnPath()
    c = ct.Container("demo", 19)
    work = tempfile.mkdtemp(prefix=f"{ct.PREFIX}demo-")
    images = os.path.join(work, "images")
    log = c.rootfs / "var" / "log" / "counter.log"
    try:
        say(f"create and start the busybox container {c.name} (counter, syslogd, a listener on "
            f"{c.ip}:{ct.PORT}, a shell on the console)")
        c.create()
        c.start()
        offset = follow(str(log), 1.5, os.path.getsize(log))
        show_processes(c)
        blocked = blockers(c.name)
        if blocked:
            say("the engine cannot checkpoint this container yet:")
            print("".join(f"   - {b}\n" for b in blocked), end="")
            say("showing a process tree instead")
            return None
        init = c.init_pid()
        say("checkpoint it: lxc-checkpoint -s, with our criu first on PATH")
        env = path.env()
        run_env(env, "lxc-checkpoint", "-n", c.name, "-D", images, "-s")
        offset = follow(str(log), 0.1, offset)
        print(f"   state {c.state()}; nothing counted for a second: ", end="", flush=True)
        time.sleep(1.0)
        print("right" if os.path.getsize(log) == offset else "WRONG")
        say("restore it: lxc-checkpoint -r")
        t0 = time.monotonic()
        code = c.restore(images, path, os.path.join(work, "restore.out"))
        print(f"     ({(time.monotonic() - t0) * 1000:.0f} ms, exit {code})")
        print(f"   state {c.state()}; init PID {c.init_pid()} ({'the same' if c.init_pid() == init else 'DIFFERENT'})")
        offset = follow(str(log), 1.5, offset)
        show_processes(c)
        print(f"   the host asks {c.ip}:{ct.PORT}: {c.hello().strip()}")
        ok = code == 0 and c.init_pid() == init
        say("done: the container counted on where it stopped" if ok else "FAILED")
        return 0 if ok else 1
    finally:
        c.destroy()
        path.remove()
        shutil.rmtree(work, ignore_errors=True)


def show_processes(c) -> None:
    print("   $ lxc-attach -n " + c.name + " -- ps")
    print("".join(f"   | {line}\n" for line in c.attach("ps").stdout.splitlines()), end="", flush=True)


def run_env(env: dict, *args: str) -> None:
    print("   $ " + " ".join(args), flush=True)
    t0 = time.monotonic()
    subprocess.run(args, check=True, env=env, stdin=subprocess.DEVNULL)
    print(f"     ({(time.monotonic() - t0) * 1000:.0f} ms)", flush=True)


if __name__ == "__main__":
    sys.exit(main())
