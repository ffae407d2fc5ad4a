"""hooks/criu as LXC drives it, on a bare process tree: the command lines of runtimes.md §2,
a console that belongs to the runtime (--external tty / --inherit-fd), a restored root that
is the caller's sibling, and the answers LXC's feature check gets.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from conftest import BIN_DIR, NO_CR, REPO, _reap_all, _related_pids
from helpers import LXC_CR, read_until

CRIU = REPO / "hooks" / "criu"
# what LXC adds to every dump and restore (runtimes.md §2.3) that does not depend on a container
LXC_PREFIX = ["--tcp-established", "--file-locks", "--link-remap", "--force-irmap",
              "--enable-external-sharing", "--enable-external-masters", "--enable-fs", "hugetlbfs",
              "--enable-fs", "tracefs", "-v4"]


def tty_key(fd: int) -> str:
    st = os.fstat(fd)
    return f"tty[{st.st_rdev:x}:{st.st_dev:x}]"


def my_children() -> list[int]:
    out = []
    for tid in os.listdir("/proc/self/task"):
        out += [int(p) for p in Path(f"/proc/self/task/{tid}/children").read_text().split()]
    return out


def wait_gone(pids, timeout: float = 10.0) -> None:
    """After a dump: every task of the tree gone (those reparented to us reaped)."""
    end = time.monotonic() + timeout
    while [p for p in pids if os.path.exists(f"/proc/{p}")]:
        assert time.monotonic() < end, f"tasks left after the dump: {pids}"
        _reap_all()
        time.sleep(0.02)


def run_criu(args, **kw):
    return subprocess.run([CRIU, *args], capture_output=True, text=True, **kw)


def test_200_console_is_the_runtimes_and_root_is_a_sibling(tmp_path):
    """As lxc-checkpoint does: the console is marked external at dump and handed back as an
    inherited fd at restore; the root comes back as our child (CLONE_PARENT), and the tool
    leaves no other child of ours behind."""
    old_master, old_slave = os.openpty()
    new_master, new_slave = os.openpty()
    prog = subprocess.Popen([BIN_DIR / "200_external_console"], stdin=old_slave, stdout=old_slave,
                            stderr=old_slave, cwd=tmp_path, start_new_session=True, close_fds=True)
    pid = prog.pid
    try:
        read_until(old_master, b"READY")
        master = old_master
        if not NO_CR:
            images, key = tmp_path / "images", tty_key(old_slave)
            tree = _related_pids(pid) | {pid}
            images.mkdir(mode=0o700)
            (images / "tty.info").write_text(key)          # LXC's own file: must be left alone
            dump = run_criu(["dump", *LXC_PREFIX, "-D", images, "-o", images / "dump.log", "-t", str(pid),
                             "--external", key], stdin=subprocess.DEVNULL)
            assert dump.returncode == 0, dump.stdout + dump.stderr
            assert len(dump.stdout + dump.stderr) < 4096
            prog.wait()
            wait_gone(tree)
            assert (images / "inventory.img").exists() and (images / "tty.info").read_text() == key
            without = run_criu(["restore", "-D", images, "-o", "refused.log", "--restore-detached",
                                "--restore-sibling"])
            assert without.returncode != 0 and "--inherit-fd" in without.stderr
            # the new console at fd 7, as LXC passes it; stdin closed, as in lxc-checkpoint -r
            restore = subprocess.run(
                [CRIU, "restore", *LXC_PREFIX, "-D", images, "-o", images / "restore.log", "--restore-detached",
                 "--restore-sibling", "--inherit-fd", f"fd[7]:{key}", "--lsm-profile", "apparmor:unconfined"],
                stdin=subprocess.DEVNULL, capture_output=True, text=True, pass_fds=(7,),
                preexec_fn=lambda: (os.dup2(new_slave, 7), os.close(0)))
            assert restore.returncode == 0, restore.stdout + restore.stderr
            assert my_children() == [pid], "the restored root must be our only child"
            master = new_master
        os.kill(pid, signal.SIGUSR1)
        out = read_until(master, b"PASS")
        assert b"FAIL" not in out, out
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for fd in (old_master, old_slave, new_master, new_slave):
            os.close(fd)


def test_lxc_feature_check_answers_honestly():
    """LXC's migrate(FEATURE_CHECK) runs `criu check --feature X`: exit 0 means supported."""
    for feature in ("mem_dirty_track", "uffd-noncoop"):
        r = run_criu(["check", "--feature", feature], stdin=subprocess.DEVNULL)
        assert r.returncode != 0 and "not supported" in r.stdout
    r = run_criu(["check", "--feature", "no-such-feature"])
    assert r.returncode != 0 and "unknown feature" in r.stderr


def test_version_with_stderr_closed():
    """hooks/criu answers the version itself (LXC asks before every dump and restore): it must
    be the version the Python side gives (VERSION RPC, and lxc-cr in the criu persona)."""
    r = subprocess.run([CRIU, "--version"], stdout=subprocess.PIPE, text=True, preexec_fn=lambda: os.close(2))
    from lxc_cr import CRIU_COMPAT_VERSION
    assert r.returncode == 0 and r.stdout == f"Version: {CRIU_COMPAT_VERSION}\n"
    python = subprocess.run([LXC_CR, "--version"], stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, LXC_CR_PERSONA="criu"))
    assert python.stdout == r.stdout


def test_options_that_cannot_apply_are_refused_or_logged(tmp_path):
    sleeper = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        r = run_criu(["dump", "-t", str(sleeper.pid), "-D", tmp_path / "a", "--page-server", "--address",
                      "10.0.0.1", "--port", "1234"])
        assert r.returncode != 0 and "page-server" in r.stderr
        r = run_criu(["dump", "-t", str(sleeper.pid), "-D", tmp_path / "b", "--lsm-profile", "selinux:x"])
        assert r.returncode != 0 and "lsm-profile" in r.stderr
        r = run_criu(["restore", "-D", tmp_path / "c", "--inherit-fd", "7:tty[1:2]"])
        assert r.returncode != 0 and "fd[N]:KEY" in r.stderr
        r = run_criu(["dump", "-t", str(sleeper.pid), "-D", tmp_path / "d", "--external", "veth[eth0]:x"])
        assert r.returncode != 0 and "veth[eth0]" in r.stderr
        # pre-dump: nothing to copy ahead; it says why in its log and succeeds
        pre = tmp_path / "pre"
        r = run_criu(["pre-dump", *LXC_PREFIX, "-D", pre, "-o", pre / "pre-dump.log", "-t", str(sleeper.pid)])
        assert r.returncode == 0, r.stderr
        log = (pre / "pre-dump.log").read_text()
        assert "nothing is copied ahead" in log and "--link-remap: accepted, no effect" in log
        assert sleeper.poll() is None and not (pre / "inventory.img").exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_action_script_runs_at_criu_stages(tmp_path):
    """LXC's -A SCRIPT becomes --action-script: run with CRTOOLS_SCRIPT_ACTION at each stage."""
    record = tmp_path / "stages"
    script = tmp_path / "script.sh"
    script.write_text(f'#!/bin/sh\necho "$CRTOOLS_SCRIPT_ACTION" >> {record}\n')
    script.chmod(0o755)
    sleeper = subprocess.Popen(["sleep", "60"], start_new_session=True, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        r = run_criu(["dump", "-t", str(sleeper.pid), "-D", tmp_path / "images", "--leave-running",
                      "--action-script", script])
        assert r.returncode == 0, r.stderr
        assert record.read_text().split() == ["pre-dump", "post-dump"]
        failing = tmp_path / "fail.sh"
        failing.write_text("#!/bin/sh\n[ \"$CRTOOLS_SCRIPT_ACTION\" != post-dump ]\n")
        failing.chmod(0o755)
        r = run_criu(["dump", "-t", str(sleeper.pid), "-D", tmp_path / "again", "--leave-running",
                      "--action-script", failing])
        assert r.returncode != 0 and not (tmp_path / "again" / "inventory.img").exists()
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()
