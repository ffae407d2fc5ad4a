"""runc 1.1 with our `criu` (`runc --criu hooks/criu checkpoint|restore`): a busybox bundle made
by `runc spec` (its default namespaces, masked paths, devices and cgroups).

The container counts: it writes "PID N" lines to its stdout (a pipe of the test's) and N to
/dev/shm/count.  After a restore the first line on the new pipe must be the one after the last
line of the old pipe (memory carried over exactly), with PID 1 inside and the same host PID.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import select
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import NO_CR, REPO

CRIU = REPO / "hooks" / "criu"
BUSYBOX = Path("/bin/busybox")
COUNTER = "i=0; while :; do i=$((i+1)); echo $i > /dev/shm/count; echo \"$$ $i\"; sleep 0.05; done"
TIMEOUT = 60


def require_runc():
    if NO_CR:
        pytest.skip("needs lxc-cr")
    if shutil.which("runc") is None:
        pytest.skip("runc is not installed (make setup installs it)")


def run_until_exit(argv, stdout, **kw) -> subprocess.CompletedProcess:
    """subprocess.run with TIMEOUT, woken the moment the command ends.  Without a pipe to read,
    Popen.wait(timeout) sleeps up to 50 ms between polls, which rounds a measured time up to
    that grid (bench/runc.py times these commands); a pidfd in select() does not."""
    with subprocess.Popen(argv, stdout=stdout, text=True, **kw) as p:
        out = None
        try:
            if stdout == subprocess.PIPE:
                out = p.communicate(timeout=TIMEOUT)[0]     # woken by the pipe's end
            elif not _exited_within(p, TIMEOUT):
                raise subprocess.TimeoutExpired(argv, TIMEOUT)
        except BaseException:
            p.kill()
            raise
        p.wait()
    return subprocess.CompletedProcess(argv, p.returncode, out)


def _exited_within(p: subprocess.Popen, seconds: float) -> bool:
    pidfd = os.pidfd_open(p.pid)
    try:
        return bool(select.select([pidfd], [], [], seconds)[0])
    finally:
        os.close(pidfd)


class Container:
    """A runc container from a `runc spec` bundle; the id carries the branch name."""

    def __init__(self, tmp_path: Path, name: str, terminal: bool = False):
        self.id = f"lxccr-rpc-{name}-{os.getpid()}"
        self.bundle = tmp_path / "bundle"
        self.images = tmp_path / "images"
        self.work = tmp_path / "work"
        rootfs = self.bundle / "rootfs"
        for d in ("bin", "proc", "sys", "dev", "tmp", "etc"):
            (rootfs / d).mkdir(parents=True, exist_ok=True)
        shutil.copy(BUSYBOX, rootfs / "bin" / "busybox")
        for applet in ("sh", "cat", "sleep", "echo"):
            (rootfs / "bin" / applet).symlink_to("busybox")
        subprocess.run(["runc", "spec"], cwd=self.bundle, check=True)
        config = json.loads((self.bundle / "config.json").read_text())
        config["process"]["terminal"] = terminal
        config["process"]["args"] = ["/bin/sh", "-c", COUNTER]
        (self.bundle / "config.json").write_text(json.dumps(config))
        self.out = None

    def runc(self, *argv, check=True, stdout=subprocess.PIPE, **kw):
        """runc with our criu; its stderr goes to a file, since run and restore hand it on to
        the container (a pipe would never end)."""
        err_path = self.bundle.parent / "runc.err"
        with open(err_path, "w") as err:
            started = time.perf_counter()
            r = run_until_exit(["runc", "--criu", str(CRIU), *argv], stdout=stdout, stderr=err, **kw)
            self.seconds = time.perf_counter() - started      # of the last runc command (bench/runc.py)
        r.stderr = err_path.read_text()
        if check and r.returncode != 0:
            logs = "".join(f"\n--- {p}\n{p.read_text()}" for p in self.work.glob("*.log"))
            raise AssertionError(f"runc {' '.join(argv)}: exit {r.returncode}: {r.stderr}{logs}")
        return r

    def _with_stdout_pipe(self, *argv):
        """Run runc with a fresh pipe as stdout (the container's); returns the read end."""
        r, w = os.pipe()
        try:
            self.runc(*argv, stdin=subprocess.DEVNULL, stdout=w, cwd=self.bundle)
        finally:
            os.close(w)
        return os.fdopen(r, "r")

    def start(self):
        self.out = self._with_stdout_pipe("run", "-d", self.id)
        return self.next_line()

    def next_line(self) -> tuple[int, int]:
        line = self.out.readline()
        assert line, "the container's stdout pipe ended"
        pid, count = line.split()
        return int(pid), int(count)

    def last_lines_until_eof(self) -> tuple[int, int]:
        last = None
        for line in self.out:
            pid, count = line.split()
            last = int(pid), int(count)
        self.out.close()
        return last

    def state(self):
        r = self.runc("state", self.id, check=False)
        return json.loads(r.stdout) if r.returncode == 0 else None

    def checkpoint(self, *flags, env=None):
        pid = (self.state() or {}).get("pid")
        r = self.runc("checkpoint", "--image-path", str(self.images), "--work-path", str(self.work), *flags,
                      self.id, env=env, check=env is None)
        if r.returncode == 0 and pid and not {"--leave-running", "--pre-dump"} & set(flags):
            with contextlib.suppress(ChildProcessError):    # the dumped init, reparented to us (subreaper)
                os.waitpid(pid, 0)
        return r

    def restore(self, env=None):
        if env is not None:
            return self.runc("restore", "-d", "--image-path", str(self.images), "--work-path", str(self.work),
                             self.id, check=False, env=env, cwd=self.bundle, stdin=subprocess.DEVNULL)
        self.out = self._with_stdout_pipe("restore", "-d", "--image-path", str(self.images), "--work-path",
                                          str(self.work), self.id)

    def exec(self, *argv) -> str:
        return self.runc("exec", self.id, *argv).stdout

    def destroy(self):
        subprocess.run(["runc", "delete", "-f", self.id], capture_output=True, timeout=TIMEOUT)
        if self.out is not None:
            self.out.close()


class Console:
    """The --console-socket of a `terminal: true` container: runc sends the pty master over it
    at run, and again (the new master) at restore."""

    def __init__(self, path: Path):
        self.path = path
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        self.listener.listen(4)
        self.master = None

    def take_master(self) -> int:
        """The master runc sent since the last call (runc has returned: it is queued)."""
        self.listener.settimeout(TIMEOUT)
        conn, _ = self.listener.accept()
        with conn:
            _, fds, _, _ = socket.recv_fds(conn, 4096, 1)
        assert len(fds) == 1, "runc sent no pty master"
        self.master = fds[0]
        return self.master

    def next_line(self) -> tuple[int, int]:
        line = b""
        while not line.endswith(b"\r\n"):
            assert select.select([self.master], [], [], TIMEOUT)[0], f"no line on the terminal: {line!r}"
            line += os.read(self.master, 1)
        pid, count = line.split()
        return int(pid), int(count)

    def last_line_until_eio(self) -> tuple[int, int]:
        data = b""
        while True:
            try:
                chunk = os.read(self.master, 4096)
            except OSError as e:
                assert e.errno == errno.EIO, e
                break
            data += chunk
        os.close(self.master)
        self.master = None
        pid, count = data.splitlines()[-1].split()
        return int(pid), int(count)

    def close(self):
        if self.master is not None:
            os.close(self.master)
        self.listener.close()


@pytest.fixture
def container(tmp_path, request):
    require_runc()
    c = Container(tmp_path, request.node.name.split("[")[0].replace("test_runc_", "")[:16])
    yield c
    c.destroy()


def test_runc_checkpoint_and_restore(container):
    """The container comes back with PID 1 inside and the same host PID, its counter
    continues exactly where the checkpoint left it, and exec, kill and delete work on it."""
    pid_inside, _ = container.start()
    assert pid_inside == 1
    host_pid = container.state()["pid"]
    container.checkpoint()
    assert container.state() is None, "runc still knows the checkpointed container"
    _, last = container.last_lines_until_eof()
    assert (container.work / "dump.log").exists() and (container.images / "inventory.img").exists()
    container.restore()
    state = container.state()
    assert state["status"] == "running" and state["pid"] == host_pid
    assert container.next_line() == (1, last + 1)
    assert int(container.exec("cat", "/dev/shm/count")) > last
    container.runc("kill", container.id, "KILL")
    for _ in range(500):
        if container.state()["status"] == "stopped":
            break
        time.sleep(0.01)
    container.runc("delete", container.id)
    assert container.state() is None


def test_runc_restore_in_the_foreground(container):
    """`runc restore` without -d (runc's default): runc stays the restored container's parent
    and ends with it; its exit status is the container's (killed: 128 + 9)."""
    container.start()
    host_pid = container.state()["pid"]
    container.checkpoint()
    _, last = container.last_lines_until_eof()
    r, w = os.pipe()
    with open(container.bundle.parent / "runc.err", "w") as err:
        runc = subprocess.Popen(["runc", "--criu", str(CRIU), "restore", "--image-path", str(container.images),
                                 "--work-path", str(container.work), container.id], cwd=container.bundle,
                                stdin=subprocess.DEVNULL, stdout=w, stderr=err)
    os.close(w)
    container.out = os.fdopen(r, "r")
    try:
        assert container.next_line() == (1, last + 1)
        state = container.state()
        assert state["status"] == "running" and state["pid"] == host_pid
        assert runc.poll() is None
        container.runc("kill", container.id, "KILL")
        assert runc.wait(timeout=TIMEOUT) == 128 + 9
    finally:
        if runc.poll() is None:
            runc.kill()
            runc.wait()


def test_runc_failed_checkpoint_leaves_the_container_running(container):
    """A dump that fails (an injected fault once everything was collected, or what the engine
    cannot do yet) leaves the container running and counting, as runc says."""
    container = container
    container.start()
    r = container.checkpoint(env=dict(os.environ, LXC_CR_FAULT="write"))
    assert r.returncode != 0 and "criu failed" in r.stderr
    assert container.state()["status"] == "running"
    _, before = container.next_line()
    assert container.next_line()[1] == before + 1
    assert not (container.images / "inventory.img").exists()


def test_runc_failed_restore_leaves_nothing(container):
    """A restore that fails once the tree exists leaves no task behind, and the same images
    then restore fine."""
    container.start()
    host_pid = container.state()["pid"]
    container.checkpoint()
    container.last_lines_until_eof()
    r = container.restore(env=dict(os.environ, LXC_CR_FAULT="registers"))
    assert r.returncode != 0
    with contextlib.suppress(ChildProcessError):    # killed, and reparented to us when runc exited
        os.waitpid(host_pid, os.WNOHANG)
    assert not os.path.exists(f"/proc/{host_pid}")
    assert container.state() is None
    container.restore()
    assert container.state()["pid"] == host_pid


def test_runc_pre_dump_is_refused_and_the_container_runs_on(container):
    """runc asks FEATURE_CHECK for mem_track before a pre-dump; we answer honestly (false), so
    runc refuses the pre-dump itself, and the container is untouched."""
    container = container
    container.start()
    r = container.checkpoint("--pre-dump", env=dict(os.environ))
    assert r.returncode != 0 and "missing features" in r.stderr, r.stderr
    assert container.state()["status"] == "running"
    _, before = container.next_line()
    assert container.next_line()[1] == before + 1


def start_with_terminal(c: Container, console: Console) -> tuple[int, int]:
    """Run the container on a pty, checkpoint it; returns its host PID and its last count."""
    c.runc("run", "-d", "--console-socket", str(console.path), c.id, cwd=c.bundle, stdin=subprocess.DEVNULL)
    console.take_master()
    assert console.next_line()[0] == 1
    host_pid = c.state()["pid"]
    c.checkpoint()
    return host_pid, console.last_line_until_eio()[1]


def restore_with_terminal(c: Container, console: Console, env=None):
    return c.runc("restore", "-d", "--console-socket", str(console.path), "--image-path", str(c.images),
                  "--work-path", str(c.work), c.id, cwd=c.bundle, stdin=subprocess.DEVNULL, env=env,
                  check=env is None)


def test_runc_terminal_checkpoint_and_restore(tmp_path):
    """A `terminal: true` container: its pty's master is runc's (sent to the console socket), so
    the restore makes a new master for the same pty of the restored devpts and hands it to runc
    (orphan-pts-master), which sends it on to the console socket.  The counter goes on on the
    new master where the old one ended, and the shell still has the pty as its controlling
    terminal, as the leader of its session."""
    require_runc()
    c = Container(tmp_path, "terminal", terminal=True)
    console = Console(tmp_path / "console.sock")
    try:
        host_pid, last = start_with_terminal(c, console)
        restore_with_terminal(c, console)
        console.take_master()
        assert c.state()["pid"] == host_pid
        assert console.next_line() == (1, last + 1)
        fields = c.exec("cat", "/proc/1/stat").rsplit(")", 1)[1].split()
        session, tty_nr = int(fields[3]), int(fields[4])
        pts = os.stat(f"/proc/{host_pid}/fd/0").st_rdev
        assert (session, tty_nr) == (1, pts) and os.major(pts) == 136
        console_mounts = [line.split() for line in c.exec("cat", "/proc/self/mountinfo").splitlines()
                          if line.split()[4] == "/dev/console"]
        assert [(m[3], m[-3]) for m in console_mounts] == [(f"/{os.minor(pts)}", "devpts")]
    finally:
        c.destroy()
        console.close()


def test_runc_terminal_failed_restore_leaves_nothing(tmp_path):
    """A restore that fails once the new master went to runc leaves no task and no container,
    and the same images then restore fine."""
    require_runc()
    c = Container(tmp_path, "termfail", terminal=True)
    console = Console(tmp_path / "console.sock")
    try:
        host_pid, last = start_with_terminal(c, console)
        r = restore_with_terminal(c, console, env=dict(os.environ, LXC_CR_FAULT="orphan-pts-master"))
        assert r.returncode != 0 and "injected fault at step 'orphan-pts-master'" in (c.work / "restore.log").read_text()
        with contextlib.suppress(ChildProcessError):    # killed, and reparented to us when runc exited
            os.waitpid(host_pid, os.WNOHANG)
        assert not os.path.exists(f"/proc/{host_pid}") and c.state() is None
        restore_with_terminal(c, console)
        console.take_master()       # the first restore's master, sent on before it failed
        os.close(console.master)
        console.take_master()
        assert console.next_line() == (1, last + 1)
    finally:
        c.destroy()
        console.close()
