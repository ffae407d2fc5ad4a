"""What several test files share: running lxc-cr, the counter program, programs in new
namespaces, reading a terminal.  (Fixtures live in conftest.py.)"""
from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import time

from conftest import BIN_DIR

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LXC_CR = os.path.join(ROOT, ".venv", "bin", "lxc-cr")
COUNTER = os.path.join(ROOT, "tests", "integration", "progs", "bin", "counter")


def lxc_cr(*args, env=None, timeout=60):
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run([LXC_CR, *args], capture_output=True, text=True, timeout=timeout, env=full_env,
                          stdin=subprocess.DEVNULL)


def one_line_error(result) -> str:
    assert result.returncode != 0, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("lxc-cr: error: "), lines
    return lines[0]


class Program:
    """The counter program holding 8 MiB; check() asks it to verify every word."""

    def __init__(self, tmp_path, extra_setup=None):
        self.log = tmp_path / "prog.log"
        self.out = open(self.log, "w")
        self.proc = subprocess.Popen([COUNTER, "8", "0"], stdout=self.out, stderr=self.out,
                                     stdin=subprocess.DEVNULL, cwd=tmp_path, start_new_session=True,
                                     pass_fds=extra_setup or ())
        self.pid = self.proc.pid
        self.wait_for("READY")
        self.maps = self.snapshot()

    def wait_for(self, text, timeout=20):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if text in self.log.read_text():
                return
            time.sleep(0.01)
        raise AssertionError(f"no {text!r} in {self.log.read_text()!r}")

    def snapshot(self):
        maps = open(f"/proc/{self.pid}/maps").read()
        fds = sorted(os.listdir(f"/proc/{self.pid}/fd"))
        return maps, fds

    def untouched(self):
        """Not traced any more, same mappings and fds, and its memory still intact."""
        end = time.monotonic() + 10
        while "TracerPid:\t0" not in open(f"/proc/{self.pid}/status").read():
            assert time.monotonic() < end, "still traced"
            time.sleep(0.01)
        assert self.snapshot() == self.maps
        os.kill(self.pid, signal.SIGUSR1)
        self.wait_for("MiB intact")

    def stop(self):
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.out.close()


SETUP_LO = ["sh", "-c", 'ip link set lo up && ip addr add 127.1.2.3/8 dev lo && exec "$0"']
SETUP_VETH = ["sh", "-c", 'ip link add lxccr0 type veth peer name lxccr1 && exec "$0"']


def wait_for(path, text, timeout=30):
    end = time.monotonic() + timeout
    while text not in path.read_text():
        assert time.monotonic() < end, f"no {text!r} in {path.read_text()!r}"
        time.sleep(0.01)


def remove_cgroup(path) -> None:
    """Remove a cgroup directory and the ones below it, waiting for exiting tasks to leave."""
    if not os.path.isdir(path):
        return
    for entry in os.scandir(path):
        if entry.is_dir(follow_symlinks=False):
            remove_cgroup(entry.path)
    end = time.monotonic() + 10
    while os.path.isdir(path):
        try:
            os.rmdir(path)
        except OSError:
            assert time.monotonic() < end, f"cgroup {path} still busy"
            time.sleep(0.02)


def ns_link(pid, kind):
    return os.readlink(f"/proc/{pid}/ns/{kind}")


def first_child(pid: int) -> int:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return int(f.read().split()[0])


@contextlib.contextmanager
def unshared(tmp_path, prog, flags=(), setup=(), ready="READY", log=None):
    """Run prog (a test program's name, or a whole argv) as PID 1 of new namespaces; yields
    (unshare's Popen, the program's PID, its log) once its log (default: its output, in
    prog.log) shows `ready`."""
    argv = [BIN_DIR / prog] if isinstance(prog, str) else list(prog)
    log = log or tmp_path / "prog.log"
    with open(tmp_path / "prog.log", "w") as out:
        unshare = subprocess.Popen(["unshare", "--pid", "--fork", *flags, *setup, *map(str, argv)], stdout=out,
                                   stderr=out, stdin=subprocess.DEVNULL, cwd=tmp_path, start_new_session=True)
    root = None
    try:
        wait_for(log, ready)
        root = first_child(unshare.pid)
        yield unshare, root, log
    finally:
        for pid in (root, unshare.pid):
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        unshare.wait()


def read_until(master: int, text: bytes, timeout: float = 30.0) -> bytes:
    seen = b""
    end = time.monotonic() + timeout
    while text not in seen:
        left = end - time.monotonic()
        assert left > 0, f"no {text!r} on the terminal; got {seen!r}"
        if select.select([master], [], [], left)[0]:
            try:
                seen += os.read(master, 4096)
            except OSError:
                break
    return seen
