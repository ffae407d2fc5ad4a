"""Process trees in namespaces of their own, outside any container manager."""
from __future__ import annotations

import os
import signal
import subprocess

import pytest

from conftest import LXC_CR, NO_CR
from helpers import SETUP_LO, SETUP_VETH, first_child, ns_link, remove_cgroup, unshared

def assert_refused_and_still_running(tmp_path, unshare, root, log, target, message):
    res = subprocess.run([LXC_CR, "dump", "-t", str(target), "-D", tmp_path / "d"], capture_output=True,
                         text=True)
    assert res.returncode == 1 and message in res.stderr, res.stderr
    os.kill(root, signal.SIGUSR1)
    unshare.wait(timeout=30)
    assert "PASS" in log.read_text()


@pytest.mark.parametrize("prog, flags, setup", [
    ("44_pid_namespace", (), ()),
    ("45_uts_ipc_namespace", ("--uts", "--ipc"), ()),
    ("46_net_namespace", ("--net",), SETUP_LO),
    ("48_cgroup_namespace", ("--cgroup",), ()),
])
def test_namespaced_tree_round_trip(tmp_path, prog, flags, setup):
    """unshare -pf makes the program PID 1 of a new PID namespace; it comes back as such,
    with the UTS, IPC and network namespaces of its own it had."""
    with unshared(tmp_path, prog, flags, setup) as (unshare, root, log):
        if NO_CR:
            os.kill(root, signal.SIGUSR1)
            unshare.wait(timeout=30)
            assert "PASS" in log.read_text()
            return
        images = tmp_path / "images"
        res = subprocess.run([LXC_CR, "dump", "-t", str(root), "-D", images, "-o", "dump.log", "-v4"],
                             capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
        unshare.wait()
        res = subprocess.run([LXC_CR, "restore", "-D", images, "-d", "--pidfile", tmp_path / "pid",
                              "-o", "restore.log", "-v4"], capture_output=True, text=True)
        assert res.returncode == 0, res.stderr + (images / "restore.log").read_text()
        assert int((tmp_path / "pid").read_text()) == root
        with open(f"/proc/{root}/status") as f:
            assert "NSpid:\t%d\t1\n" % root in f.read()
        for kind in ("uts", "ipc", "net", "cgroup"):
            assert (ns_link(root, kind) != ns_link("self", kind)) == (f"--{kind}" in flags)
        os.kill(root, signal.SIGUSR1)
        _, status = os.waitpid(root, 0)
        assert os.waitstatus_to_exitcode(status) == 0, log.read_text()
        assert "PASS" in log.read_text() and "FAIL" not in log.read_text()


def test_pid_namespace_member_is_refused(tmp_path):
    """Only the init of a PID namespace can be the root of a dump."""
    if NO_CR:
        pytest.skip("needs lxc-cr")
    with unshared(tmp_path, "44_pid_namespace") as (unshare, root, log):
        assert_refused_and_still_running(tmp_path, unshare, root, log, first_child(root), "not its init")


def test_a_network_device_we_cannot_rebuild_is_refused(tmp_path):
    """A veth pair with both ends in the tree's network namespace is refused, and the tree keeps running."""
    if NO_CR:
        pytest.skip("needs lxc-cr")
    with unshared(tmp_path, "44_pid_namespace", ("--net",), SETUP_VETH) as (unshare, root, log):
        assert_refused_and_still_running(tmp_path, unshare, root, log, root, "device lxccr")


def test_check_only_looks_at_sockets_from_inside_their_namespace(tmp_path):
    """`dump --check-only` classifies a namespaced tree's sockets as the dump does (from
    inside its network namespace): unix sockets there block nothing."""
    if NO_CR:
        pytest.skip("needs lxc-cr")
    with unshared(tmp_path, "70_unix_stream", ("--net",)) as (unshare, root, log):
        res = subprocess.run([LXC_CR, "dump", "-t", str(root), "--check-only", "--shell-job"],
                             capture_output=True, text=True)
        assert res.returncode == 0 and "nothing blocks" in res.stdout, res.stdout + res.stderr
        # in-process callers (lxc-cr plan --lxc, the demo) get their own namespace back
        from lxc_cr.engine.dumping import check_only
        from lxc_cr.plan import DumpPlan
        mine = ns_link("self", "net")
        assert check_only(DumpPlan(pid=root, images_dir=str(tmp_path), shell_job=True, check_only=True)) == []
        assert ns_link("self", "net") == mine
        os.kill(root, signal.SIGUSR1)
        unshare.wait(timeout=30)
        assert "PASS" in log.read_text()


def test_a_cgroup_namespace_rooted_above_the_tree_is_refused(tmp_path):
    """A cgroup namespace whose root is not the root task's cgroup (here: the task moved to a
    child cgroup after unsharing) cannot be made again by unsharing: refused, tree untouched."""
    if NO_CR:
        pytest.skip("needs lxc-cr")
    here = next(line.split(":", 2)[2] for line in open("/proc/self/cgroup").read().splitlines()
                if line.startswith("0::"))
    sub = f"/sys/fs/cgroup/unified{here.rstrip('/')}/lxccr-cgns-{os.getpid()}"
    move = ["sh", "-c", f'mkdir {sub} && echo $$ > {sub}/cgroup.procs && exec "$0"']
    try:
        with unshared(tmp_path, "44_pid_namespace", ("--cgroup",), move) as (unshare, root, log):
            assert_refused_and_still_running(tmp_path, unshare, root, log, root, "not rooted at its cgroup")
    finally:
        remove_cgroup(sub)
