"""A shell job: its terminal and session belong to the shell, not to the tree.

The job runs on one pty and is restored with --shell-job onto another, the
terminal of the restoring command, as a shell's `fg` after a restore would.
"""
from __future__ import annotations

import os
import signal
import subprocess

from conftest import BIN_DIR, LXC_CR, NO_CR
from helpers import read_until


def test_43_shell_job_moves_to_the_restoring_terminal(tmp_path):
    old_master, old_slave = os.openpty()
    new_master, new_slave = os.openpty()
    prog = subprocess.Popen([BIN_DIR / "43_shell_job"], stdin=old_slave, stdout=old_slave, stderr=old_slave,
                            cwd=tmp_path, process_group=0, close_fds=True)
    try:
        read_until(old_master, b"READY")
        pid = prog.pid
        if not NO_CR:
            images = tmp_path / "images"
            dump = subprocess.run([LXC_CR, "dump", "-t", str(pid), "-D", images, "--shell-job"],
                                  capture_output=True, text=True, stdin=subprocess.DEVNULL)
            assert dump.returncode == 0, dump.stderr
            prog.wait()
            refused = subprocess.run([LXC_CR, "restore", "-D", images, "-d"], capture_output=True, text=True)
            assert refused.returncode != 0 and "--shell-job" in refused.stderr
            restore = subprocess.run([LXC_CR, "restore", "-D", images, "-d", "--shell-job",
                                      "--pidfile", tmp_path / "pid"],
                                     stdin=new_slave, stdout=new_slave, stderr=subprocess.PIPE, text=True)
            assert restore.returncode == 0, restore.stderr
            assert int((tmp_path / "pid").read_text()) == pid
            master = new_master
        else:
            master = old_master
        os.kill(pid, signal.SIGUSR1)
        out = read_until(master, b"PASS")
        assert b"FAIL" not in out
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        try:
            os.kill(prog.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for fd in (old_master, old_slave, new_master, new_slave):
            os.close(fd)
