"""Terminals, POSIX message queues, file locks and file owners.

Each scenario program (progs/9X_*.c) follows the READY / SIGUSR1 /
PASS protocol of conftest.py.  The --leave-running variants check that a dump
takes nothing out of a pty or a queue: the original tree, left running,
verifies itself first; then the same images are restored and verified again.
Refusals are checked on the dump's exit status and error line.
"""
from __future__ import annotations

import os
import re
import subprocess
import time

import pytest

from conftest import EXIT_TIMEOUT, LXC_CR, NO_CR, Cycle, _kill_leftovers


def _remove_queues(pid):
    """The queues 93_mqueue names after its PID (/lxccr-93-PID-x), if it left any."""
    from lxc_cr.engine import kernel as k
    for name in "abcd":
        try:
            k.mq_unlink(f"lxccr-93-{pid}-{name}")
        except OSError:
            pass


def restore(c, opts=(), patience=30.0):
    """c.restore(), again while a pty number the tree needs is taken by someone else's
    test (devpts gives numbers out to all; a restore needs the dumped ones)."""
    deadline = time.monotonic() + patience
    while True:
        try:
            return c.restore(tuple(opts))
        except pytest.fail.Exception:
            log = (c.imgdir / "restore.log").read_text(errors="replace")
            if "is in use by another process" not in log or time.monotonic() > deadline:
                raise
        del c.notes[-2:]
        time.sleep(0.5)


@pytest.fixture
def cycle(progs_built, tmp_path):
    """Returns run(prog, args=(), dump_opts=(), restore_opts=(), leave_running=False).

    With leave_running, the dump leaves the tree running: the original verifies
    itself and exits, then the images are restored and verified again."""
    def run(prog, args=(), dump_opts=(), restore_opts=(), leave_running=False, shown=()):
        c = Cycle(progs_built / prog, tmp_path)
        try:
            c.start(tuple(args))
            c.wait_ready()
            if not NO_CR:
                if leave_running:
                    c.lxc_cr("dump", ["-t", str(c.pid), "-D", str(c.imgdir), "--leave-running", *dump_opts],
                             "dump.log")
                    c.signal_and_wait(EXIT_TIMEOUT, restored=False)
                    _kill_leftovers(c.pid)
                    # the restored tree reopens the log by name: give it a fresh one
                    c.log.rename(tmp_path / "original.log")
                    c.log.touch()
                else:
                    c.dump(tuple(dump_opts))
                show = c.lxc_cr("show", [str(c.imgdir)], "show.log").stdout
                for text in shown:
                    assert text in show, f"lxc-cr show does not say {text!r}"
                restore(c, restore_opts)
            c.signal_and_wait(EXIT_TIMEOUT, restored=not NO_CR)
            return c.log_text()
        finally:
            _kill_leftovers(c.pid)
            if c.pid:
                _remove_queues(c.pid)
    return run


def refused_dump(progs_built, tmp_path, prog, args=(), dump_opts=(), stdin=None):
    """Start prog (stdin: an fd for its stdin), expect `lxc-cr dump` to fail; returns its
    stderr and the output of `lxc-cr dump --check-only`.  The tree must still run
    afterwards (a failed dump releases it) and pass its checks."""
    c = Cycle(progs_built / prog, tmp_path)
    try:
        c.work.mkdir(parents=True, exist_ok=True)
        with open(c.log, "ab") as log:
            c.proc = subprocess.Popen([str(c.binary), *args], cwd=c.work,
                                      stdin=subprocess.DEVNULL if stdin is None else stdin, stdout=log,
                                      stderr=log, start_new_session=True, close_fds=True)
        c.pid = c.proc.pid
        c.wait_ready()
        check = subprocess.run([str(LXC_CR), "dump", "-t", str(c.pid), "--check-only", *dump_opts],
                               capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
        r = subprocess.run([str(LXC_CR), "dump", "-t", str(c.pid), "-D", str(c.imgdir), *dump_opts],
                           capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
        assert r.returncode != 0, f"dump of {prog} succeeded; expected a refusal"
        assert c.proc.poll() is None, "the tree died after a refused dump"
        assert not (c.imgdir / "inventory.img").exists()
        c.signal_and_wait(EXIT_TIMEOUT, restored=False)
        return r.stderr, check.stdout + check.stderr
    finally:
        _kill_leftovers(c.pid)
        if c.pid:
            _remove_queues(c.pid)


skip_no_cr = pytest.mark.skipif(NO_CR, reason="checks lxc-cr itself")


# ---- pseudo-terminals

def test_90_pty_pairs_with_data_both_ways(cycle):
    cycle("90_pty_pair", shown=['"to_master": "tty-', '"to_slave": "tty-', '"locked": true', '"packet": true',
                                '"slave_closed": true', '"type": "SLAVE"'])


def test_90b_pty_pairs_leave_running(cycle):
    cycle("90_pty_pair", leave_running=True)


def test_91_controlling_terminals_and_foreground(cycle):
    cycle("91_pty_ctty", shown=['"@type": "type.googleapis.com/lxccr.Tty"', '"type": "DEV_TTY"', '"session":',
                                '"foreground":', '"without_ctty":'])


def test_91b_controlling_terminals_leave_running(cycle):
    cycle("91_pty_ctty", leave_running=True)


def test_92_terminal_emulator_and_its_shell(cycle):
    cycle("92_pty_session")


def test_92b_terminal_emulator_leave_running(cycle):
    cycle("92_pty_session", leave_running=True)


# ---- POSIX message queues

def test_93_message_queues(cycle):
    cycle("93_mqueue", shown=['"@type": "type.googleapis.com/lxccr.MQueue"', '"unlinked": true', '"same_queue_as"'])


def test_93b_message_queues_leave_running(cycle):
    """The original reads every message after a --leave-running dump: the dump took none."""
    cycle("93_mqueue", leave_running=True)


# ---- file locks

def test_94_posix_locks(cycle):
    cycle("94_locks_posix", dump_opts=["--file-locks"], restore_opts=["--file-locks"], shown=['"locks": [', '"owner":'])


def test_95_flock_and_ofd_locks(cycle):
    cycle("95_locks_flock_ofd", dump_opts=["--file-locks"], restore_opts=["--file-locks"])


@skip_no_cr
def test_96_locks_refused_without_file_locks(progs_built, tmp_path):
    err, check = refused_dump(progs_built, tmp_path, "94_locks_posix")
    line = r"process \d+ fd \d+: holds a file lock \(POSIX .*WRITE.*\); dump with --file-locks"
    assert re.search(line, err), err
    assert re.search(line, check), check


# ---- file owners, O_PATH, /proc/self/fd

def test_97_file_owners_and_sigio(cycle):
    cycle("97_fown", shown=['"owner_type": 2', '"owner_pid":', '"owner_signal": 12'])


def test_98_o_path_and_proc_self_fd(cycle):
    cycle("98_opath_procfd")


# ---- terminals that are not the tree's

@skip_no_cr
def test_99_pty_of_outside_refused(progs_built, tmp_path):
    master, slave = os.openpty()
    try:
        err, check = refused_dump(progs_built, tmp_path, "99_tty_outside", stdin=slave)
    finally:
        os.close(master)
        os.close(slave)
    line = r"process \d+ fd 0: /dev/pts/\d+ belongs to a pty pair whose master is outside the tree " \
           r"\(use --shell-job"
    assert re.search(line, err), err
    assert re.search(line, check), check


@skip_no_cr
def test_99b_controlling_terminal_of_outside_refused(progs_built, tmp_path):
    master, slave = os.openpty()
    try:
        err, check = refused_dump(progs_built, tmp_path, "99_tty_outside", args=["ctty"], stdin=slave)
    finally:
        os.close(master)
        os.close(slave)
    line = r"process \d+: its controlling terminal /dev/pts/\d+ is not a pty pair of the tree"
    assert re.search(line, err), err
    assert re.search(line, check), check


@skip_no_cr
def test_93c_existing_queue_with_other_messages_refused(progs_built, tmp_path):
    """After a dump the queue outlives the tree; if it changed since, restore refuses
    rather than destroy it, and creates it afresh once it is gone."""
    from lxc_cr.engine import kernel as k
    c = Cycle(progs_built / "93_mqueue", tmp_path)
    try:
        c.start(())
        c.wait_ready()
        c.dump(())
        name = f"lxccr-93-{c.pid}-a"
        q = k.mq_open(name, os.O_WRONLY | os.O_CLOEXEC)
        try:
            k.mq_send_now(q, b"intruder", 2)
        finally:
            os.close(q)
        r = subprocess.run([str(LXC_CR), "restore", "-D", str(c.imgdir), "-d"], capture_output=True, text=True,
                           stdin=subprocess.DEVNULL, timeout=120)
        assert r.returncode != 0, "restore took a queue with other messages"
        assert f"message queue /{name} already exists with other attributes or messages" in r.stderr, r.stderr
        assert not os.path.exists(f"/proc/{c.pid}")
        # the queue was left as it was
        q = k.mq_open(name, os.O_RDONLY | os.O_CLOEXEC)
        try:
            assert k.mq_getattr(q)[3] == 7
        finally:
            os.close(q)
        # gone: restore makes it again, with the dumped messages
        k.mq_unlink(name)
        restore(c)
        c.signal_and_wait(EXIT_TIMEOUT, restored=True)
    finally:
        _kill_leftovers(c.pid)
        if c.pid:
            _remove_queues(c.pid)
