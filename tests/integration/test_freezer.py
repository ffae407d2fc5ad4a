"""--freeze-cgroup: the tree is frozen through its cgroup (cgroup2 or the v1 freezer)
before it is seized, and the cgroup is left as it was found."""
from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from helpers import COUNTER, LXC_CR, remove_cgroup

KINDS = {"cgroup2": ("/sys/fs/cgroup/unified", "cgroup.events"),
         "v1": ("/sys/fs/cgroup/freezer", "freezer.state")}


def frozen(cg: str, kind: str) -> bool:
    name = KINDS[kind][1]
    text = open(os.path.join(cg, name)).read()
    return "frozen 1" in text if kind == "cgroup2" else text.strip() == "FROZEN"


def set_frozen(cg: str, kind: str, on: bool) -> None:
    if kind == "cgroup2":
        open(os.path.join(cg, "cgroup.freeze"), "w").write("1" if on else "0")
    else:
        open(os.path.join(cg, "freezer.state"), "w").write("FROZEN" if on else "THAWED")
    end = time.monotonic() + 10
    while frozen(cg, kind) != on:
        assert time.monotonic() < end
        time.sleep(0.01)


@pytest.fixture(params=sorted(KINDS))
def cgroup(request, tmp_path):
    base = KINDS[request.param][0]
    if not os.path.isdir(base):
        pytest.skip(f"{base} is not mounted")
    cg = os.path.join(base, f"lxccr-fz-{os.getpid()}-{request.param}")
    os.mkdir(cg)
    yield cg, request.param
    if frozen(cg, request.param):
        set_frozen(cg, request.param, False)
    for pid in open(os.path.join(cg, "cgroup.procs")).read().split():
        os.kill(int(pid), signal.SIGKILL)
    remove_cgroup(cg)


def start_counter(tmp_path, cg):
    log = tmp_path / "counter.log"
    with open(log, "w") as out:
        p = subprocess.Popen(["sh", "-c", f'echo $$ > {cg}/cgroup.procs && exec "$0" 8 0', COUNTER], stdout=out,
                             stderr=out, stdin=subprocess.DEVNULL, cwd=tmp_path, start_new_session=True)
    end = time.monotonic() + 20
    while "READY" not in log.read_text():
        assert time.monotonic() < end and p.poll() is None, log.read_text()
        time.sleep(0.01)
    return p, log


def check_memory(pid: int, log) -> None:
    os.kill(pid, signal.SIGUSR1)
    end = time.monotonic() + 20
    while "MiB intact" not in log.read_text():
        assert time.monotonic() < end and "FAIL" not in log.read_text(), log.read_text()
        time.sleep(0.01)


@pytest.mark.parametrize("was_frozen", [False, True])
def test_freeze_cgroup_leave_running(tmp_path, cgroup, was_frozen):
    cg, kind = cgroup
    p, log = start_counter(tmp_path, cg)
    if was_frozen:
        set_frozen(cg, kind, True)
    res = subprocess.run([LXC_CR, "dump", "-t", str(p.pid), "-D", tmp_path / "d", "--leave-running",
                          "--freeze-cgroup", cg, "-v4"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert frozen(cg, kind) == was_frozen          # as we found it
    assert "froze" in (tmp_path / "d" / "dump.log").read_text() or was_frozen
    if was_frozen:
        set_frozen(cg, kind, False)
    with open(f"/proc/{p.pid}/status") as f:
        assert "TracerPid:\t0" in f.read()
    check_memory(p.pid, log)
    p.kill()
    p.wait()


def test_freeze_cgroup_dump_and_restore(tmp_path, cgroup):
    cg, kind = cgroup
    p, log = start_counter(tmp_path, cg)
    images = tmp_path / "d"
    res = subprocess.run([LXC_CR, "dump", "-t", str(p.pid), "-D", images, "--freeze-cgroup", cg],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    p.wait()
    assert not frozen(cg, kind)
    res = subprocess.run([LXC_CR, "restore", "-D", images, "-d"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert open(os.path.join(cg, "cgroup.procs")).read().split() == [str(p.pid)]
    check_memory(p.pid, log)
    os.kill(p.pid, signal.SIGKILL)
    os.waitpid(p.pid, 0)
