"""The command line as a user and the runtimes see it: foreground and sibling restores,
log options, show and check, and the criu personality of hooks/criu."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time

from helpers import COUNTER, LXC_CR, ROOT, Program, lxc_cr


def dumped(tmp_path, *dump_opts):
    prog = Program(tmp_path)
    d = tmp_path / "d"
    res = lxc_cr("dump", "-t", str(prog.pid), "-D", str(d), *dump_opts)
    assert res.returncode == 0, res.stderr
    prog.proc.wait()
    return prog, d


def test_foreground_restore_waits_and_returns_the_exit_status(tmp_path):
    prog, d = dumped(tmp_path)

    def finish():
        # once it is back, ask it to check its memory, then to stop with SIGTERM
        end = time.monotonic() + 30
        while not os.path.exists(f"/proc/{prog.pid}"):
            assert time.monotonic() < end
            time.sleep(0.01)
        time.sleep(0.2)
        os.kill(prog.pid, signal.SIGUSR1)
        prog.wait_for("MiB intact")
        os.kill(prog.pid, signal.SIGTERM)
    helper = threading.Thread(target=finish)
    helper.start()
    res = lxc_cr("restore", "-D", str(d))
    helper.join()
    assert res.returncode == 0, res.stderr      # counter exits 0 on SIGTERM
    assert not os.path.exists(f"/proc/{prog.pid}")
    prog.out.close()


def test_restore_sibling_makes_the_root_our_child(tmp_path):
    prog, d = dumped(tmp_path)
    res = subprocess.run([LXC_CR, "restore", "-D", str(d), "--restore-sibling"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    with open(f"/proc/{prog.pid}/stat") as f:
        ppid = int(f.read().rsplit(")", 1)[1].split()[1])
    assert ppid == os.getpid()
    os.kill(prog.pid, signal.SIGUSR1)
    prog.wait_for("MiB intact")
    os.kill(prog.pid, signal.SIGTERM)
    _, status = os.waitpid(prog.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    prog.out.close()


def test_log_file_and_verbosity(tmp_path):
    prog = Program(tmp_path)
    try:
        d = tmp_path / "d"
        assert lxc_cr("dump", "-t", str(prog.pid), "-D", str(d), "--leave-running", "-o", "mine.log",
                      "-v4").returncode == 0
        log = (d / "mine.log").read_text()
        assert "DEBUG" in log or "INFO" in log
        assert not (d / "dump.log").exists()
        quiet = tmp_path / "q"
        assert lxc_cr("dump", "-t", str(prog.pid), "-D", str(quiet), "--leave-running", "-v0").returncode == 0
        assert (quiet / "dump.log").read_text() == ""
        assert os.stat(d).st_mode & 0o777 == 0o700
        assert all(os.stat(d / f).st_mode & 0o777 == 0o600 for f in os.listdir(d))
        prog.untouched()
    finally:
        prog.stop()


def test_show_one_image_and_check(tmp_path):
    prog, d = dumped(tmp_path)
    shown = json.loads(lxc_cr("show", str(d), "pstree.img").stdout)
    assert list(shown) == ["pstree.img"] and shown["pstree.img"]["processes"][0]["pid"] == prog.pid
    check = lxc_cr("check")
    lines = check.stdout.splitlines()
    assert check.returncode == (0 if all(line.startswith("yes") for line in lines) else 1)
    assert any("restorer blob" in line for line in lines)
    prog.out.close()


def test_criu_personality(tmp_path):
    criu = os.path.join(ROOT, "hooks", "criu")
    link = tmp_path / "bin" / "criu"
    link.parent.mkdir()
    link.symlink_to(criu)
    # LXC runs `criu --version` with fd 2 closed and parses the first line
    res = subprocess.run([str(link), "--version"], capture_output=True, text=True, stderr=None,
                         env=dict(os.environ, PATH=f"{link.parent}:{os.environ['PATH']}"))
    assert res.returncode == 0 and res.stdout == "Version: 3.17.1\n"
    closed = subprocess.run(f"exec 2>&-; {link} --version", shell=True, capture_output=False,
                            stdout=subprocess.PIPE, text=True)
    assert closed.returncode == 0 and closed.stdout.startswith("Version: ")
    assert subprocess.run([LXC_CR, "--version"], capture_output=True, text=True).stdout.startswith("lxc-cr ")
    assert COUNTER


def test_show_decodes_every_kind(tmp_path):
    """Programs holding pipes, FIFOs, event objects, epoll, inotify, memfd and sockets:
    every file entry of their dumps decodes, with its detail, and raw images are listed."""
    from conftest import BIN_DIR
    kinds = set()
    for prog in ("50_pipe_data", "51_pipe_fifo", "52_eventfd_signalfd", "53_timerfd", "54_epoll",
                 "56_inotify", "58_pidfd", "59_memfd", "70_unix_stream", "77_inet_tcp_listen",
                 "90_pty_pair", "93_mqueue"):
        work = tmp_path / prog
        work.mkdir()
        log = work / "log"
        with open(log, "w") as out:
            p = subprocess.Popen([BIN_DIR / prog], stdout=out, stderr=out, stdin=subprocess.DEVNULL, cwd=work,
                                 start_new_session=True)
        try:
            end = time.monotonic() + 20
            while "READY" not in log.read_text():
                assert time.monotonic() < end and p.poll() is None, log.read_text()
                time.sleep(0.01)
            res = lxc_cr("dump", "-t", str(p.pid), "-D", str(work / "d"), "--leave-running", "--file-locks")
            assert res.returncode == 0, res.stderr
            res = lxc_cr("show", str(work / "d"))
            assert res.returncode == 0, res.stderr
            shown = json.loads(res.stdout)
            for entry in shown["files.img"]["files"]:
                assert entry["detail"]["@type"].startswith("type.googleapis.com/lxccr."), entry
                kinds.add(entry["kind"])
            assert all(isinstance(v, dict) for v in shown.values())
        finally:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    assert {"pipe", "eventfd", "signalfd", "timerfd", "epoll", "inotify", "pidfd", "memfd",
            "unixsk", "inetsk", "tty", "mqueue"} <= kinds, kinds


def test_engine_api_survives_imports_of_its_internals():
    """The engine's public dump/restore are not shadowed by its modules (which once shared
    their names: the second caller in one process got a module)."""
    code = ("import lxc_cr.engine as e, lxc_cr.engine.dumping, lxc_cr.engine.restoring; "
            "print(callable(e.dump) and callable(e.restore) and not hasattr(e.dump, '__path__'))")
    res = subprocess.run([os.path.join(ROOT, ".venv/bin/python"), "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert res.stdout.strip() == "True", res.stdout + res.stderr
