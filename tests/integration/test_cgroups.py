"""Cgroup membership survives a checkpoint, even when the cgroups are gone meanwhile,
and a failed restore removes the cgroups it created."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time

import pytest

from conftest import BIN_DIR, LXC_CR, NO_CR
from helpers import remove_cgroup

HIERARCHIES = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup/pids"]


@pytest.fixture
def cgroups(tmp_path):
    name = f"lxccr-cg-{os.getpid()}-{tmp_path.name[-12:]}"
    dirs = [os.path.join(h, name) for h in HIERARCHIES if os.path.isdir(h)]
    for d in dirs:
        os.mkdir(d)
    yield dirs
    for d in reversed(dirs):
        remove_cgroup(d)


def start_inside(tmp_path, dirs, prog="47_cgroups", args=()):
    """prog started in the cgroups dirs; returns (its Popen, its log) once it is READY."""
    log = tmp_path / "prog.log"
    join = "; ".join(f"echo $$ > {d}/cgroup.procs" for d in dirs)
    with open(log, "w") as out:
        p = subprocess.Popen(["sh", "-c", f'{join}; exec "$0" "$@"', BIN_DIR / prog, *args], stdout=out,
                             stderr=out, stdin=subprocess.DEVNULL, cwd=tmp_path, start_new_session=True)
    end = time.monotonic() + 20
    while "READY" not in log.read_text():
        assert time.monotonic() < end and p.poll() is None, log.read_text()
        time.sleep(0.01)
    return p, log


def reap_orphans():
    """The killed tree's children were reparented to us (a subreaper): reap them."""
    end = time.monotonic() + 10
    while time.monotonic() < end:
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                time.sleep(0.02)
        except ChildProcessError:
            return


@contextlib.contextmanager
def checked(p, log):
    """The program's verdict once the body has run: signalled, reaped (the restored one is our
    child too: we are a subreaper), its PASS required; its group killed whatever happens."""
    try:
        yield
        os.kill(p.pid, signal.SIGUSR1)
        if NO_CR:
            p.wait(timeout=30)
        else:
            os.waitpid(p.pid, 0)
        assert "PASS" in log.read_text() and "FAIL" not in log.read_text(), log.read_text()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
        reap_orphans()


def dump_and_remove(tmp_path, p, dirs):
    images = tmp_path / "images"
    res = subprocess.run([LXC_CR, "dump", "-t", str(p.pid), "-D", images], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    p.wait()
    reap_orphans()
    for d in dirs:                       # the restore must create them again
        remove_cgroup(d)
    return images


def test_47_cgroups_come_back(tmp_path, cgroups):
    p, log = start_inside(tmp_path, cgroups)
    with checked(p, log):
        before = open(f"/proc/{p.pid}/cgroup").read()
        if not NO_CR:
            images = dump_and_remove(tmp_path, p, cgroups)
            res = subprocess.run([LXC_CR, "restore", "-D", images, "-d"], capture_output=True, text=True)
            assert res.returncode == 0, res.stderr
            assert open(f"/proc/{p.pid}/cgroup").read() == before


def test_failed_restore_removes_the_cgroups_it_made(tmp_path, cgroups):
    if NO_CR:
        pytest.skip("needs lxc-cr")
    p, log = start_inside(tmp_path, cgroups)
    images = dump_and_remove(tmp_path, p, cgroups)
    res = subprocess.run([LXC_CR, "restore", "-D", images, "-d"], capture_output=True, text=True,
                         env=dict(os.environ, LXC_CR_FAULT="task"))
    assert res.returncode == 1 and "task" in res.stderr
    assert not any(os.path.exists(d) for d in cgroups)
    assert not os.path.exists(f"/proc/{p.pid}")
