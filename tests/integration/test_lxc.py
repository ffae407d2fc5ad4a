"""LXC containers checkpointed and restored by `lxc-checkpoint`, with our hooks/criu as `criu`.

Each test makes a fresh busybox container (syslogd, a counter, a TCP listener, a shell on
the console: lxc_cr/busybox_ct.py) and destroys it afterwards.  Inside, /bin/crcheck saves
the container's state before and checks it after (PASS or FAIL lines); outside, the test
looks at what LXC reports and reaches the listener over the bridge.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import time
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from lxc_cr.busybox_ct import CriuOnPath
from lxc_support import lxc_host, make_container, plan_of, checkpointable_plan  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("lxc_host")

PATIENCE = 10.0


@pytest.fixture
def container(request):
    number = {"plan": 0, "faildump": 1, "stop": 2, "running": 3, "failrestore": 4, "badimages": 5}[request.param]
    c = make_container(request.param, number)
    yield c
    c.destroy()


def counting(c) -> bool:
    """Is the container's counter going on? (waits for one step at most PATIENCE)"""
    first = c.count()
    end = time.monotonic() + PATIENCE
    while time.monotonic() < end:
        if c.count() > first:
            return True
        time.sleep(0.05)
    return False


def crcheck(c, what: str) -> str:
    r = c.attach("/bin/crcheck", what)
    assert r.returncode == 0, f"lxc-attach crcheck {what}: {r.stdout}{r.stderr}"
    return r.stdout


def assert_same_state(c) -> None:
    """Inside: everything crcheck saved holds.  Outside: LXC sees it running, the host
    reaches its listener over the bridge, and it counts on."""
    out = crcheck(c, "verify")
    assert out.strip() == "PASS", out
    assert c.state() == "RUNNING"
    hello = c.hello().split()
    assert hello[:2] == ["hello", c.name], hello
    assert counting(c)


def gone(pids) -> bool:
    """Have these tasks all ended?  A restored root killed by a failed restore is the LXC
    monitor's child (--restore-sibling); when the monitor ends, it is ours (we are a subreaper):
    reaped here."""
    end = time.monotonic() + PATIENCE
    while True:
        for p in pids:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(p, os.WNOHANG)
        if not any(os.path.exists(f"/proc/{p}") for p in pids):
            return True
        if time.monotonic() > end:
            return False
        time.sleep(0.05)


def digest(directory: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())
            if p.is_file() and not p.name.endswith(".log")}


# --- the plan ---------------------------------------------------------------------------------

@pytest.mark.parametrize("container", ["plan"], indirect=True)
def test_plan_lists_blockers_first_and_is_what_lxc_runs(container, tmp_path, monkeypatch):
    """`lxc-cr plan --lxc` freezes nothing; its plan is the one LXC's own dump command line
    makes (captured from a real lxc-checkpoint whose dump is made to fail)."""
    c = container
    report = plan_of(c, tmp_path / "images")
    assert list(report)[:2] == ["blocking", "restore_blocking"]
    assert report["container"]["init_pid"] == c.init_pid()
    assert report["container"]["network"][0]["ipv4"] in (f"{c.ip}/24", [f"{c.ip}/24"])
    assert Path(f"/sys/fs/cgroup/freezer/lxc.payload.{c.name}/freezer.state").read_text().strip() == "THAWED"
    assert counting(c)
    # what LXC passes: recorded by a criu that logs its argv before running ours
    record, wrapper = tmp_path / "argv", tmp_path / "recording-criu"
    wrapper.write_text(f'#!/bin/sh\n[ "$1" = dump ] && printf "%s\\n" "$@" > {record}\n'
                       f'exec {REPO}/hooks/criu "$@"\n')
    wrapper.chmod(0o755)
    recording = CriuOnPath(wrapper)
    try:
        r = c.checkpoint(tmp_path / "images", recording, stop=True, LXC_CR_FAULT="seize")
    finally:
        recording.remove()
    assert r.returncode != 0
    lxc_argv = record.read_text().splitlines()
    from lxc_cr.cli import _parser
    from lxc_cr.lxc_plan import caller
    from lxc_cr.plan import dump_plan, to_yaml
    monkeypatch.setenv("LXC_CR_PERSONA", "criu")            # as hooks/criu runs
    args = _parser().parse_args(lxc_argv)
    assert caller(args) == ("lxc", c.name)
    plan = dump_plan(args, *caller(args))._asdict()
    theirs = yaml.safe_load(to_yaml({key: value for key, value in plan.items() if key != "origins"}))
    ours = report["dump"]
    for key in ("verbosity",):          # lxc-checkpoint -v passes -v4
        theirs.pop(key), ours.pop(key)
    assert theirs == ours


# --- checkpoint and restore ---------------------------------------------------------------------

@pytest.mark.parametrize("container", ["faildump"], indirect=True)
def test_failed_checkpoint_leaves_the_container_running(container, lxc_host, tmp_path):
    c = container
    crcheck(c, "save")
    pids = c.payload_pids()
    images = tmp_path / "images"
    for fault in ("seize", "collect", "write"):
        r = c.checkpoint(images, lxc_host, stop=True, LXC_CR_FAULT=fault)
        assert r.returncode != 0, f"fault at {fault}: lxc-checkpoint reported success"
        assert not (images / "inventory.img").exists()
        assert c.payload_pids() >= pids
        assert_same_state(c)
    assert Path(f"/sys/fs/cgroup/freezer/lxc.payload.{c.name}/freezer.state").read_text().strip() == "THAWED"


def checkpoint_and_restore(c, lxc_host, tmp_path, stop: bool):
    plan = checkpointable_plan(c, tmp_path / "plan")
    crcheck(c, "save")
    pids, init = c.payload_pids(), c.init_pid()
    images = tmp_path / "images"
    r = c.checkpoint(images, lxc_host, stop=stop)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (images / "inventory.img").exists() and (images / "tty.info").exists()
    if stop:
        assert c.state() == "STOPPED"
        assert not any(os.path.exists(f"/proc/{p}") for p in pids)
    else:
        assert_same_state(c)
        assert c.stop().returncode == 0
    assert c.restore(images, lxc_host, tmp_path / "restore.out") == 0, (tmp_path / "restore.out").read_text()
    assert c.init_pid() == init
    assert c.payload_pids() >= pids
    assert_same_state(c)
    assert c.stop().returncode == 0 and c.state() == "STOPPED"
    return plan


@pytest.mark.parametrize("container", ["stop"], indirect=True)
def test_checkpoint_stop_then_restore(container, lxc_host, tmp_path):
    checkpoint_and_restore(container, lxc_host, tmp_path, stop=True)


@pytest.mark.parametrize("container", ["running"], indirect=True)
def test_checkpoint_leave_running_then_restore(container, lxc_host, tmp_path):
    checkpoint_and_restore(container, lxc_host, tmp_path, stop=False)


@pytest.mark.parametrize("container", ["failrestore"], indirect=True)
def test_failed_restore_leaves_nothing(container, lxc_host, tmp_path):
    c = container
    checkpointable_plan(c, tmp_path / "plan")
    pids = c.payload_pids()
    images = tmp_path / "images"
    r = c.checkpoint(images, lxc_host, stop=True)
    assert r.returncode == 0, r.stdout + r.stderr
    before, sums = c.host_objects(), digest(images)
    # mount:/dev fails in the mount namespace's builder, whose result is taken after the veth is made
    for fault in ("validate", "mount:/dev", "registers"):
        code = c.restore(images, lxc_host, tmp_path / "restore.out", LXC_CR_FAULT=fault)
        assert code != 0, f"fault at {fault}: lxc-checkpoint -r reported success"
        assert c.state() == "STOPPED"
        assert gone(pids)
        assert c.host_objects() <= before
        assert digest(images) == sums


@pytest.mark.parametrize("container", ["badimages"], indirect=True)
def test_restore_from_a_directory_without_a_dump_fails_cleanly(container, lxc_host, tmp_path):
    """LXC reports our failure and nothing of the attempt is left: no task, cgroup or veth."""
    c = container
    assert c.stop().returncode == 0
    images = tmp_path / "images"
    images.mkdir(mode=0o700)
    before = c.host_objects()
    code = c.restore(images, lxc_host, tmp_path / "restore.out")
    out = (tmp_path / "restore.out").read_text()
    assert code != 0, out
    assert "criu" in out and "exited" in out, out       # LXC says the checkpointer failed
    assert c.state() == "STOPPED"
    assert c.host_objects() <= before
    assert not list(images.glob("*.img"))
