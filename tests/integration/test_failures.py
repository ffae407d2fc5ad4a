"""Failure paths: bad input, injected faults, a killed dumper, damaged images.

Each test checks the promise of docs/ARCHITECTURE.md: one clear line and a
non-zero exit; a failed dump leaves the tree running exactly as before (the
program then verifies its own memory); a failed restore leaves no task behind
and does not touch the images.
"""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time

import pytest
from helpers import LXC_CR, Program, ROOT, lxc_cr, one_line_error

@pytest.fixture
def program(tmp_path):
    p = Program(tmp_path)
    yield p
    p.stop()


def digest(directory) -> dict[str, str]:
    return {name: hashlib.sha256((directory / name).read_bytes()).hexdigest()
            for name in sorted(os.listdir(directory)) if name.endswith(".img")}


# --- bad input --------------------------------------------------------------------------------

def test_dump_of_missing_pid(tmp_path):
    line = one_line_error(lxc_cr("dump", "-t", "999999", "-D", str(tmp_path / "d")))
    assert "999999" in line
    assert not (tmp_path / "d").exists()


def test_unknown_option_is_refused(tmp_path):
    line = one_line_error(lxc_cr("dump", "-t", "1", "-D", str(tmp_path), "--no-such-option"))
    assert "--no-such-option" in line


def test_option_of_the_other_command_is_refused(tmp_path, program):
    line = one_line_error(lxc_cr("dump", "-t", str(program.pid), "-D", str(tmp_path / "d"), "--pidfile", "x"))
    assert "--pidfile" in line


def test_directory_that_already_holds_a_dump(tmp_path, program):
    d = tmp_path / "d"
    assert lxc_cr("dump", "-t", str(program.pid), "-D", str(d), "--leave-running").returncode == 0
    line = one_line_error(lxc_cr("dump", "-t", str(program.pid), "-D", str(d), "--leave-running"))
    assert "already holds a dump" in line
    program.untouched()


def userfaultfd() -> int:
    import ctypes
    fd = ctypes.CDLL(None, use_errno=True).syscall(323, 0)     # userfaultfd(0)
    assert fd >= 0, os.strerror(ctypes.get_errno())
    os.set_inheritable(fd, True)
    return fd


def test_unsupported_object_names_kind_pid_and_fd(tmp_path):
    uffd = userfaultfd()           # refused by design: its state cannot be moved
    p = Program(tmp_path, extra_setup=(uffd,))
    try:
        d = tmp_path / "d"
        # the pre-flight lists it without freezing anything or writing anything
        pre = lxc_cr("dump", "-t", str(p.pid), "--check-only", "-D", str(d))
        assert pre.returncode == 1
        assert pre.stdout.splitlines() == [f"process {p.pid} fd {uffd}: userfaultfd is not supported"]
        assert not d.exists()
        line = one_line_error(lxc_cr("dump", "-t", str(p.pid), "-D", str(d)))
        assert "userfaultfd" in line and str(p.pid) in line and f"fd {uffd}" in line
        assert [f for f in os.listdir(d) if f.endswith(".img")] == []
        p.untouched()
    finally:
        os.close(uffd)
        p.stop()


# --- a failed dump leaves the tree as it was ------------------------------------------------------

@pytest.mark.parametrize("step", ["seize", "remote-syscall", "remote-calls", "collect", "write"])
def test_injected_dump_fault_releases_the_tree(tmp_path, program, step):
    d = tmp_path / "d"
    line = one_line_error(lxc_cr("dump", "-t", str(program.pid), "-D", str(d), env={"LXC_CR_FAULT": step}))
    assert step in line
    assert not (d / "inventory.img").exists()
    assert [f for f in os.listdir(d) if f.endswith(".img")] == []
    program.untouched()
    # and it can still be dumped afterwards
    assert lxc_cr("dump", "-t", str(program.pid), "-D", str(tmp_path / "again"), "--leave-running").returncode == 0
    program.untouched()


@pytest.mark.parametrize("step", ["remote-syscall", "remote-calls", "collect"])
def test_sigkill_of_the_dumper_releases_the_tree(tmp_path, program, step):
    d = tmp_path / "d"
    dumper = subprocess.Popen([LXC_CR, "dump", "-t", str(program.pid), "-D", str(d)],
                              env=dict(os.environ, LXC_CR_PAUSE=step), stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    end = time.monotonic() + 20
    while "TracerPid:\t0" in open(f"/proc/{program.pid}/status").read():
        assert time.monotonic() < end, "dumper never seized the program"
        time.sleep(0.01)
    time.sleep(0.2)                      # well inside the paused step
    dumper.kill()
    dumper.wait()
    program.untouched()
    end = time.monotonic() + 10
    while any(f.endswith(".img") for f in os.listdir(d)):
        assert time.monotonic() < end, "partial images left behind"
        time.sleep(0.01)


def test_check_only_of_a_dumpable_tree(tmp_path, program):
    res = lxc_cr("dump", "-t", str(program.pid), "--check-only")
    assert res.returncode == 0 and res.stdout == f"nothing blocks a dump of {program.pid}\n"
    program.untouched()


def test_leave_running_twice_changes_nothing(tmp_path, program):
    for name in ("a", "b"):
        assert lxc_cr("dump", "-t", str(program.pid), "-D", str(tmp_path / name), "--leave-running").returncode == 0
        program.untouched()


# --- a failed restore leaves nothing behind and never touches the images ---------------------------

@pytest.fixture
def dumped(tmp_path, program):
    d = tmp_path / "d"
    res = lxc_cr("dump", "-t", str(program.pid), "-D", str(d))
    assert res.returncode == 0, res.stderr
    program.proc.wait()
    return program.pid, d


def assert_gone(pid):
    end = time.monotonic() + 10
    while os.path.exists(f"/proc/{pid}"):
        assert time.monotonic() < end, f"stray task {pid}"
        time.sleep(0.01)


def test_restore_refuses_a_pid_in_use(tmp_path, program):
    d = tmp_path / "d"
    assert lxc_cr("dump", "-t", str(program.pid), "-D", str(d), "--leave-running").returncode == 0
    before = digest(d)
    line = one_line_error(lxc_cr("restore", "-D", str(d), "-d"))
    assert f"PID {program.pid} is already in use" in line
    assert digest(d) == before
    program.untouched()


def test_restore_of_a_directory_without_a_dump(tmp_path):
    line = one_line_error(lxc_cr("restore", "-D", str(tmp_path), "-d"))
    assert "inventory.img" in line


@pytest.mark.parametrize("damage", ["missing-mm", "truncated-task", "corrupted-pstree", "short-pages",
                                    "bad-magic-inventory"])
def test_damaged_images_are_refused(dumped, damage):
    pid, d = dumped
    if damage == "missing-mm":
        os.unlink(d / f"mm-{pid}.img")
    elif damage == "truncated-task":
        data = (d / f"task-{pid}.img").read_bytes()
        (d / f"task-{pid}.img").write_bytes(data[: len(data) // 2])
    elif damage == "corrupted-pstree":
        data = bytearray((d / "pstree.img").read_bytes())
        data[-1] ^= 0x55
        (d / "pstree.img").write_bytes(bytes(data))
    elif damage == "short-pages":
        with open(d / f"pages-{pid}.img", "r+b") as f:
            f.truncate(4096)
    elif damage == "bad-magic-inventory":
        data = bytearray((d / "inventory.img").read_bytes())
        data[0:4] = b"XXXX"
        (d / "inventory.img").write_bytes(bytes(data))
    before = digest(d)
    line = one_line_error(lxc_cr("restore", "-D", str(d), "-d"))
    assert str(d) in line
    assert digest(d) == before
    assert_gone(pid)


@pytest.mark.parametrize("step", ["validate", "task", "registers"])
def test_injected_restore_fault_leaves_nothing(dumped, step):
    pid, d = dumped
    before = digest(d)
    line = one_line_error(lxc_cr("restore", "-D", str(d), "-d", env={"LXC_CR_FAULT": step}))
    assert step in line
    assert_gone(pid)
    assert digest(d) == before


def test_show_decodes_every_image(dumped):
    import json
    pid, d = dumped
    res = lxc_cr("show", str(d))
    assert res.returncode == 0, res.stderr
    shown = json.loads(res.stdout)
    assert shown["inventory.img"]["root_pid"] == pid
    assert shown["pstree.img"]["processes"][0]["pid"] == pid
    assert shown[f"pages-{pid}.img"]["raw_bytes"] >= 8 << 20
    assert {f["kind"] for f in shown["files.img"]["files"]} == {"chardev", "regfile"}


@pytest.mark.parametrize("prog", ["09_regs_gp", "11_regs_avx512", "15_sys_futex", "18_sys_pause",
                                  "24_sig_pending", "26_sig_posix_timers", "34_tree_stopped"])
def test_leave_running_leaves_the_original_exact(tmp_path, prog):
    """Two --leave-running dumps, then the original tree checks its own registers,
    blocking calls, pending signals, timers and stopped state: nothing may have changed."""
    log = tmp_path / "prog.log"
    with open(log, "w") as out:
        p = subprocess.Popen([os.path.join(ROOT, "tests", "integration", "progs", "bin", prog)], stdout=out,
                             stderr=out, stdin=subprocess.DEVNULL, cwd=tmp_path, start_new_session=True)
    try:
        end = time.monotonic() + 20
        while "READY" not in log.read_text() and "SKIP" not in log.read_text():
            assert time.monotonic() < end and p.poll() is None, log.read_text()
            time.sleep(0.01)
        if "SKIP" in log.read_text():
            pytest.skip(log.read_text().strip())
        for name in ("a", "b"):
            res = lxc_cr("dump", "-t", str(p.pid), "-D", str(tmp_path / name), "--leave-running")
            assert res.returncode == 0, res.stderr
        end = time.monotonic() + 30
        while p.poll() is None:
            os.kill(p.pid, signal.SIGUSR1)           # the programs take repeats
            assert time.monotonic() < end, log.read_text()
            time.sleep(0.2)
        assert p.returncode == 0 and "PASS" in log.read_text(), log.read_text()
    finally:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()
