"""Open objects with data in flight: pipes and FIFOs, eventfd, epoll, signalfd, timerfd,
inotify, fanotify, pidfd, memfd; and the refusal of userfaultfd.

Each scenario program (progs/5X_*.c, 6X_*.c) follows the READY / SIGUSR1 / PASS
protocol of conftest.py.  The --leave-running variants check that a dump takes
nothing out of the queues: the original tree, left running, verifies itself
first; then the same images are restored and verified again.
"""
from __future__ import annotations

import os
import re
import subprocess

import pytest

from conftest import EXIT_TIMEOUT, LXC_CR, NO_CR, Cycle, _kill_leftovers


@pytest.fixture
def leave_running_cycle(progs_built, tmp_path):
    """Returns run(prog): dump --leave-running, the original verifies itself and exits,
    then the images are restored and the restored tree verifies itself."""
    def run(prog, args=()):
        c = Cycle(progs_built / prog, tmp_path)
        try:
            c.start(tuple(args))
            c.wait_ready()
            if not NO_CR:
                c.lxc_cr("dump", ["-t", str(c.pid), "-D", str(c.imgdir), "--leave-running"], "dump.log")
            c.signal_and_wait(EXIT_TIMEOUT, restored=False)
            if NO_CR:
                return
            _kill_leftovers(c.pid)
            # the restored tree reopens the log by name: give it a fresh one
            c.log.rename(tmp_path / "original.log")
            c.log.touch()
            c.restore(())
            c.signal_and_wait(EXIT_TIMEOUT, restored=True)
        finally:
            _kill_leftovers(c.pid)
    return run


# ---- pipes and FIFOs

def test_50_pipes_with_data(run_cycle):
    run_cycle("50_pipe_data")


def test_50b_pipes_leave_running(leave_running_cycle):
    leave_running_cycle("50_pipe_data")


def test_51_fifos_with_data(run_cycle):
    run_cycle("51_pipe_fifo")


def test_51b_fifos_leave_running(leave_running_cycle):
    leave_running_cycle("51_pipe_fifo")


# ---- eventfd, signalfd, timerfd

def test_52_eventfd_signalfd(run_cycle):
    run_cycle("52_eventfd_signalfd")


def test_52b_eventfd_signalfd_leave_running(leave_running_cycle):
    leave_running_cycle("52_eventfd_signalfd")


def test_53_timerfd(run_cycle):
    run_cycle("53_timerfd")


def test_53b_timerfd_leave_running(leave_running_cycle):
    leave_running_cycle("53_timerfd")


# ---- epoll

def test_54_epoll_watches(run_cycle):
    run_cycle("54_epoll")


def test_54b_epoll_leave_running(leave_running_cycle):
    leave_running_cycle("54_epoll")


def test_55_blocked_in_epoll_wait(run_cycle):
    run_cycle("55_epoll_wait_blocked")


# ---- inotify, fanotify

def test_56_inotify(run_cycle):
    run_cycle("56_inotify")


def test_56b_inotify_leave_running(leave_running_cycle):
    leave_running_cycle("56_inotify")


def test_184_inotify_queued_events_come_back_as_overflow(run_cycle):
    run_cycle("184_inotify_queued")


def original_keeps_its_queue(binary, tmp_path):
    """A --leave-running dump leaves the queued events to the original (started with the
    argument "original", it checks it gets them all), as they were."""
    c = Cycle(binary, tmp_path)
    try:
        c.start(("original",))
        c.wait_ready()
        if not NO_CR:
            c.lxc_cr("dump", ["-t", str(c.pid), "-D", str(c.imgdir), "--leave-running"], "dump.log")
        c.signal_and_wait(EXIT_TIMEOUT, restored=False)
    finally:
        _kill_leftovers(c.pid)


def test_184b_inotify_queued_events_leave_running(progs_built, tmp_path):
    original_keeps_its_queue(progs_built / "184_inotify_queued", tmp_path)


def test_57_fanotify(run_cycle):
    run_cycle("57_fanotify")


def test_57b_fanotify_leave_running(leave_running_cycle):
    leave_running_cycle("57_fanotify")


# ---- pidfd

def test_58_pidfd(run_cycle):
    run_cycle("58_pidfd")


# ---- memfd

def test_59_memfd_files_and_mappings(run_cycle):
    run_cycle("59_memfd")


def test_59b_memfd_leave_running(leave_running_cycle):
    leave_running_cycle("59_memfd")


# ---- refusals

def test_60_userfaultfd_is_refused(progs_built, tmp_path):
    """The pre-flight and the dump name the kind, the PID and the fd, in one line; the dump
    writes no image and the tree, left as it was, verifies itself."""
    c = Cycle(progs_built / "60_userfaultfd_refused", tmp_path)
    try:
        c.start(())
        c.wait_ready()
        if not NO_CR:
            uffd = next(int(line.split("=")[1]) for line in c.log_text().splitlines()
                        if line.startswith("# uffd="))
            want = f"process {c.pid} fd {uffd}: userfaultfd is not supported"
            pre = _lxc_cr("dump", "-t", str(c.pid), "-D", str(c.imgdir), "--check-only")
            # the root's fd, then its child's (the same userfaultfd, inherited)
            lines = pre.stdout.splitlines()
            assert pre.returncode == 1 and len(lines) == 2 and lines[0] == want, pre
            assert re.fullmatch(rf"process \d+ fd {uffd}: userfaultfd is not supported", lines[1]), pre
            res = _lxc_cr("dump", "-t", str(c.pid), "-D", str(c.imgdir))
            assert res.returncode != 0 and res.stderr.splitlines() == [f"lxc-cr: error: {want}"], res
            assert not [f for f in os.listdir(c.imgdir) if f.endswith(".img")]
        c.signal_and_wait(EXIT_TIMEOUT, restored=False)
    finally:
        _kill_leftovers(c.pid)


def test_61_pidfd_outside_the_tree_is_refused(progs_built, tmp_path):
    c = Cycle(progs_built / "61_pidfd_outside", tmp_path)
    try:
        c.start(())
        c.wait_ready()
        if not NO_CR:
            m = re.search(r"^# pidfd=(\d+) parent=(\d+)$", c.log_text(), re.M)
            want = (f"process {c.pid} fd {m[1]}: pidfd of process {m[2]}, which is outside the tree, "
                    f"is not supported")
            pre = _lxc_cr("dump", "-t", str(c.pid), "-D", str(c.imgdir), "--check-only")
            assert pre.returncode == 1 and pre.stdout.splitlines() == [want], pre
            res = _lxc_cr("dump", "-t", str(c.pid), "-D", str(c.imgdir))
            assert res.returncode != 0 and res.stderr.splitlines() == [f"lxc-cr: error: {want}"], res
        c.signal_and_wait(EXIT_TIMEOUT, restored=False)
    finally:
        _kill_leftovers(c.pid)


@pytest.mark.parametrize("prog", ["50_pipe_data", "51_pipe_fifo", "52_eventfd_signalfd", "53_timerfd",
                                  "54_epoll", "56_inotify", "57_fanotify", "58_pidfd", "59_memfd"])
def test_check_only_finds_nothing_to_refuse(progs_built, tmp_path, prog):
    """--check-only classifies these objects as a dump does: nothing to report, nothing touched."""
    c = Cycle(progs_built / prog, tmp_path)
    try:
        c.start(())
        c.wait_ready()
        if not NO_CR:
            res = _lxc_cr("dump", "-t", str(c.pid), "-D", str(c.imgdir), "--check-only")
            assert res.returncode == 0 and res.stdout == f"nothing blocks a dump of {c.pid}\n", res
        c.signal_and_wait(EXIT_TIMEOUT, restored=False)
    finally:
        _kill_leftovers(c.pid)


def test_damaged_pipe_data_is_refused_before_anything_runs(progs_built, tmp_path):
    """A data image that lost bytes fails the restore with one line naming it; no task is left."""
    if NO_CR:
        pytest.skip("needs lxc-cr")
    c = Cycle(progs_built / "50_pipe_data", tmp_path)
    try:
        c.start(())
        c.wait_ready()
        c.dump(())
        data = c.imgdir / "pipe-1.img"
        os.truncate(data, 999)
        res = _lxc_cr("restore", "-D", str(c.imgdir), "-d")
        assert res.returncode != 0, res
        assert res.stderr.splitlines() == ["lxc-cr: error: pipe-1.img: holds 999 bytes, expected 1000"], res
        assert not os.path.exists(f"/proc/{c.pid}")
    finally:
        _kill_leftovers(c.pid)


def _lxc_cr(*args):
    return subprocess.run([str(LXC_CR), *args], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          timeout=120)


def test_187_fanotify_queued_events_come_back_as_overflow(run_cycle):
    run_cycle("187_fanotify_queued", args=("original",) if NO_CR else ())


def test_187b_fanotify_queued_events_leave_running(progs_built, tmp_path):
    original_keeps_its_queue(progs_built / "187_fanotify_queued", tmp_path)
