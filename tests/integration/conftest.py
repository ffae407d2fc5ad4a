"""Harness for the lxc-cr integration scenarios.

Every scenario is a self-checking C program (tests/integration/progs/*.c):
it sets up some state, prints READY, waits for SIGUSR1, verifies the state
from inside and prints PASS (exit 0) or FAIL lines (exit 1); exit 77 = skip.

``run_cycle(prog, args=(), dump_opts=(), restore_opts=())`` drives one
program through ``lxc-cr dump`` + ``lxc-cr restore -d`` and checks the verdict.
With ``LXC_CR_TEST_NO_CR=1`` the dump/restore step is left out, which
validates the programs themselves.

The pytest process makes itself a child subreaper, so restored roots (whose
restoring parent exits) are reparented to it and can be waited for.
"""

import ctypes
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROGS_DIR = Path(__file__).resolve().parent / "progs"
BIN_DIR = PROGS_DIR / "bin"
LXC_CR = Path(os.environ.get("LXC_CR_BIN", REPO / ".venv" / "bin" / "lxc-cr"))
NO_CR = os.environ.get("LXC_CR_TEST_NO_CR") == "1"

READY_TIMEOUT = 30.0  # program set-up
CR_TIMEOUT = float(os.environ.get("LXC_CR_TEST_CR_TIMEOUT", "120"))  # one lxc-cr invocation
EXIT_TIMEOUT = 30.0  # verification after SIGUSR1
NUDGE_EVERY = 2.0  # SIGUSR1 is re-sent this often while waiting (it is idempotent)
EXIT_SKIP = 77
LOG_TAIL = 12000  # characters of each log put into a failure message

PR_SET_CHILD_SUBREAPER = 36


def _prctl(option, arg):
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="session", autouse=True)
def child_subreaper():
    """Restored roots get reparented to us; we must be able to reap them."""
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    yield
    _reap_all()


@pytest.fixture(scope="session", autouse=True)
def no_leftover_queues():
    """POSIX message queues named /lxccr-* that test programs left in the host's IPC namespace
    (a run killed before its end), removed before and after the session: they count against
    root's RLIMIT_MSGQUEUE in every namespace, so leftovers of earlier runs make mq_open fail."""
    _remove_queues()
    yield
    _remove_queues()


def _remove_queues():
    # an mqueue mount of the host's IPC namespace, made in a mount namespace of its own: its
    # files are the queues, and removing one is mq_unlink
    subprocess.run(["unshare", "--mount", "sh", "-c", "mount -t mqueue none /mnt && rm -f /mnt/lxccr-*"],
                   check=True)


@pytest.fixture(scope="session")
def progs_built():
    """Build the scenario programs once per session."""
    r = subprocess.run(["make", "-s", "-C", str(PROGS_DIR)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(f"building test programs failed:\n{r.stdout}\n{r.stderr}", pytrace=False)
    return BIN_DIR


@pytest.fixture
def run_cycle(progs_built, tmp_path):
    """Returns run(prog, args=(), dump_opts=(), restore_opts=(), exit_timeout=...)."""
    def run(prog, args=(), dump_opts=(), restore_opts=(), exit_timeout=EXIT_TIMEOUT):
        return Cycle(progs_built / prog, tmp_path).run(
            tuple(args), tuple(dump_opts), tuple(restore_opts), exit_timeout)
    return run


# ---------------------------------------------------------------- helpers


def _tail(path, limit=LOG_TAIL):
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        return f"<cannot read {path}: {e.strerror}>"
    text = data.decode("utf-8", "replace")
    if len(text) > limit:
        text = "[... cut ...]\n" + text[-limit:]
    return text or "<empty>"


def _proc_stat(pid):
    """(ppid, pgid, sid, state) of a process, or None."""
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes().decode("utf-8", "replace")
    except OSError:
        return None
    rest = data[data.rfind(")") + 2:].split()
    return int(rest[1]), int(rest[2]), int(rest[3]), rest[0]


def _all_pids():
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def _related_pids(root):
    """Descendants of `root` and of this process, plus members of root's session/group."""
    me = os.getpid()
    table = {}
    for pid in _all_pids():
        st = _proc_stat(pid)
        if st:
            table[pid] = st
    children = {}
    for pid, (ppid, _, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found = set()
    todo = [me]
    if root:
        todo.append(root)
    while todo:
        p = todo.pop()
        for c in children.get(p, ()):
            if c not in found:
                found.add(c)
                todo.append(c)
    if root:
        found |= {pid for pid, (_, pgid, sid, _) in table.items() if sid == root or pgid == root}
    found.discard(me)
    return found


def _reap_all():
    """Reap every zombie child of ours (orphans come to us: we are a subreaper)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _kill_leftovers(root, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        if root:
            try:
                os.killpg(root, signal.SIGKILL)
            except OSError:
                pass
        pids = _related_pids(root)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        _reap_all()
        alive = [p for p in _related_pids(root) if (_proc_stat(p) or (0, 0, 0, "X"))[3] != "Z"]
        zombies = [p for p in _related_pids(root) if (_proc_stat(p) or (0, 0, 0, "X"))[3] == "Z"]
        if not alive and not zombies:
            return
        if time.monotonic() > deadline:
            return
        time.sleep(0.05)


class Cycle:
    """One start -> (dump -> restore) -> signal -> verdict run of a program."""

    def __init__(self, binary, tmp_path):
        self.binary = Path(binary)
        self.base = Path(tmp_path)
        self.work = self.base / "work"
        self.imgdir = self.base / "images"
        self.log = self.base / "prog.log"
        self.pidfile = self.base / "restore.pid"
        self.pid = None
        self.proc = None
        self.notes = []

    # -- reporting

    def fail(self, what):
        parts = [f"{self.binary.name}: {what}"]
        parts += self.notes
        parts.append(f"--- program log ({self.log}) ---\n{_tail(self.log)}")
        for name in ("dump.log", "restore.log"):
            p = self.imgdir / name
            if p.exists():
                parts.append(f"--- lxc-cr {name} ({p}) ---\n{_tail(p)}")
        pytest.fail("\n".join(parts), pytrace=False)

    def log_text(self):
        try:
            return self.log.read_bytes().decode("utf-8", "replace")
        except OSError:
            return ""

    # -- steps

    def start(self, args):
        if not self.binary.exists():
            self.fail(f"program {self.binary} not built")
        self.work.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log, open(os.devnull, "rb") as devnull:
            self.proc = subprocess.Popen(
                [str(self.binary), *args], cwd=self.work, stdin=devnull, stdout=log,
                stderr=log, start_new_session=True, close_fds=True)
        self.pid = self.proc.pid

    def wait_ready(self):
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if "READY\n" in self.log_text():
                return
            rc = self.proc.poll()
            if rc is not None:
                self.check_skip(rc)
                self.fail(f"exited with status {rc} before READY")
            time.sleep(0.02)
        self.fail(f"no READY within {READY_TIMEOUT:.0f} s")

    def check_skip(self, rc):
        if rc == EXIT_SKIP:
            reason = [l for l in self.log_text().splitlines() if l.startswith("SKIP")]
            pytest.skip(f"{self.binary.name}: {reason[0] if reason else 'skipped (exit 77)'}")

    def lxc_cr(self, verb, argv, logname):
        cmd = [str(LXC_CR), verb, *argv, "-o", logname, "-v4"]
        self.notes.append("$ " + " ".join(cmd))
        try:
            r = subprocess.run(cmd, cwd=self.base, stdin=subprocess.DEVNULL, capture_output=True,
                               text=True, timeout=CR_TIMEOUT)
        except subprocess.TimeoutExpired:
            r = None
        if r is None:
            self.fail(f"lxc-cr {verb} did not finish within {CR_TIMEOUT:.0f} s")
        self.notes.append(f"lxc-cr {verb}: exit {r.returncode}\nstdout: {r.stdout.strip()}\n"
                          f"stderr: {r.stderr.strip()}")
        if r.returncode != 0:
            self.fail(f"lxc-cr {verb} failed with exit {r.returncode}: {r.stderr.strip()}")
        return r

    def dump(self, dump_opts):
        if not LXC_CR.exists():
            self.fail(f"{LXC_CR} does not exist (set LXC_CR_TEST_NO_CR=1 to validate programs only)")
        leave_running = "--leave-running" in dump_opts
        tree = _related_pids(self.pid)
        self.lxc_cr("dump", ["-t", str(self.pid), "-D", str(self.imgdir), *dump_opts], "dump.log")
        if leave_running:
            if self.proc.poll() is not None:
                self.fail(f"dump --leave-running: the tree root died (status {self.proc.returncode})")
            # the originals must go so that restore can reuse the PIDs
            _kill_leftovers(self.pid)
            self.proc.wait()
        else:
            try:
                rc = self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.fail("dump succeeded but the dumped root is still running")
            self.notes.append(f"original root ended with status {rc} after the dump")
        # every task of the dumped tree must be gone (reap the ones reparented to us)
        deadline = time.monotonic() + 10
        while True:
            _reap_all()
            left = sorted(p for p in tree | {self.pid} if os.path.exists(f"/proc/{p}"))
            if not left:
                break
            if time.monotonic() > deadline:
                self.fail(f"tasks still present after the dump: {left}")
            time.sleep(0.02)

    def restore(self, restore_opts):
        self.lxc_cr("restore", ["-D", str(self.imgdir), "-d", "--pidfile", str(self.pidfile),
                                *restore_opts], "restore.log")
        try:
            text = self.pidfile.read_text().strip()
        except OSError as e:
            text = f"<unreadable: {e.strerror}>"
        if not self.pidfile.exists():
            self.fail("restore did not write the pidfile")
        if text != str(self.pid):
            self.fail(f"pidfile holds {text!r}, expected {self.pid}")
        if not os.path.exists(f"/proc/{self.pid}"):
            self.fail(f"restored root {self.pid} does not exist")

    def signal_and_wait(self, exit_timeout, restored):
        try:
            os.kill(self.pid, signal.SIGUSR1)
        except ProcessLookupError:
            pass  # already gone: waitpid tells what happened
        deadline = time.monotonic() + exit_timeout
        next_nudge = time.monotonic() + NUDGE_EVERY
        while True:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                pid = -1
            if pid == -1:
                self.fail(f"restored root {self.pid} is not a child of the test process "
                          "(expected it to be reparented to this subreaper)")
            if pid == self.pid:
                break
            now = time.monotonic()
            if now > deadline:
                self.fail(f"did not exit within {exit_timeout:.0f} s after SIGUSR1 "
                          f"(state {(_proc_stat(self.pid) or (0, 0, 0, '?'))[3]})")
            if now > next_nudge:
                next_nudge = now + NUDGE_EVERY
                try:
                    os.kill(self.pid, signal.SIGUSR1)
                except ProcessLookupError:
                    pass
            time.sleep(0.01)
        if not restored:
            self.proc.returncode = os.waitstatus_to_exitcode(status)
        if os.WIFSIGNALED(status):
            self.fail(f"killed by signal {os.WTERMSIG(status)}")
        rc = os.WEXITSTATUS(status)
        self.check_skip(rc)
        out = self.log_text()
        lines = out.splitlines()
        if rc != 0:
            self.fail(f"exit status {rc}")
        if any(l.startswith("FAIL") for l in lines):
            self.fail("FAIL lines in the log despite exit 0")
        if "PASS" not in lines:
            self.fail("no PASS line in the log")

    def run(self, args, dump_opts, restore_opts, exit_timeout):
        try:
            self.start(args)
            self.wait_ready()
            if not NO_CR:
                self.dump(dump_opts)
                self.restore(restore_opts)
            self.signal_and_wait(exit_timeout, restored=not NO_CR)
        finally:
            _kill_leftovers(self.pid)
            if self.proc is not None and self.proc.returncode is None:
                try:
                    self.proc.wait(timeout=1)
                except (subprocess.TimeoutExpired, ChildProcessError):
                    self.proc.returncode = -9
        return self.log_text()
