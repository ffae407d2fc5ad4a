"""Freezing a process tree with ptrace, and running system calls inside its tasks.

All ptrace and wait calls happen on the calling OS thread (the engine is
single-threaded).  `Seizure` owns every task it stopped and guarantees that,
whatever happens, each one is left exactly as it was found: registers and
signal masks put back, scratch memory unmapped, detached, still stopped if it
was stopped.
"""
from __future__ import annotations

import errno
import logging
import os
import signal
from contextlib import contextmanager

from . import kernel as k
from . import proc
from .errors import DumpError, PlanError, fault_point

log = logging.getLogger("lxc_cr.seize")

SCRATCH_SIZE = 2 * k.PAGE_SIZE       # per process: a code page, a data page (scratch_page)


class Tracee:
    def __init__(self, tid: int, pid: int, stopped: bool = False):
        self.tid = tid
        self.pid = pid
        self.stopped = stopped          # group-stopped (T) before we came


class ProcessInfo:
    def __init__(self, pid: int, ppid: int, zombie: bool = False, stopped: bool = False):
        self.pid = pid
        self.ppid = ppid
        self.zombie = zombie
        self.stopped = stopped
        self.tids: list[int] = []


class Seizure:
    """The frozen tree: seize() stops it, release() lets it go (or kill() ends it)."""

    def __init__(self, root: int, freezer=None):
        self.root = root
        self.freezer = freezer
        self.tracees: dict[int, Tracee] = {}
        self.processes: dict[int, ProcessInfo] = {}
        self.order: list[int] = []             # pids, parents before children
        self.scratch: dict[int, int] = {}      # pid -> scratch area address (scratch_page)

    # --- freezing -----------------------------------------------------------------

    def seize(self) -> None:
        if not proc.exists(self.root):
            raise PlanError(f"no process with PID {self.root}")
        if self.root == os.getpid():
            raise PlanError("cannot dump lxc-cr itself")
        st = proc.stat(self.root)
        if st.state == "Z":
            raise PlanError(f"process {self.root} is a zombie; nothing to dump")
        if self.freezer:
            # Frozen, the tree cannot grow while we walk it; but a frozen task
            # may only take its ptrace trap once thawed (always with the v1
            # freezer, with cgroup2 when frozen inside pause()): interrupt
            # every task, then thaw and collect the stops.
            self.freezer.freeze()
            self._seize_pass(wait=False)
            self.freezer.thaw()
            for t in list(self.tracees.values()):
                self._wait_stop(t)
        # Walk until a pass finds nothing new: a task that is stopped cannot fork.
        while self._seize_pass():
            pass
        log.info("seized %d processes, %d threads", len(self.processes), len(self.tracees))

    def _seize_pass(self, wait: bool = True) -> bool:
        found = False
        queue = [self.root]
        seen = set()
        while queue:
            pid = queue.pop(0)
            if pid in seen:
                continue
            seen.add(pid)
            if pid not in self.processes:
                self._add_process(pid)
                found = True
            info = self.processes[pid]
            if info.zombie:
                continue
            for tid in proc.tids(pid):
                if tid not in self.tracees:
                    if self._seize_thread(pid, tid, wait):
                        info.tids.append(tid)
                        found = True
            queue.extend(proc.children(pid))
        return found

    def _add_process(self, pid: int) -> None:
        st = proc.stat(pid)
        info = ProcessInfo(pid=pid, ppid=st.ppid, zombie=st.state == "Z", stopped=st.state == "T")
        self.processes[pid] = info
        self.order.append(pid)

    def _seize_thread(self, pid: int, tid: int, wait: bool = True) -> bool:
        stopped = proc.stat(pid, tid).state == "T"
        opts = k.PTRACE_O_TRACESYSGOOD | k.PTRACE_O_SUSPEND_SECCOMP
        try:
            k.ptrace(k.PTRACE_SEIZE, tid, 0, opts, "PTRACE_SEIZE")
        except OSError as e:
            if e.errno == errno.ESRCH:
                return False           # died meanwhile
            raise DumpError(f"cannot seize task {tid} of process {pid}: {e.strerror}") from None
        tracee = Tracee(tid=tid, pid=pid, stopped=stopped)
        self.tracees[tid] = tracee
        if not stopped:
            k.ptrace(k.PTRACE_INTERRUPT, tid, 0, 0, "PTRACE_INTERRUPT")
        if wait:
            self._wait_stop(tracee)
        return True

    def _wait_stop(self, t: Tracee) -> None:
        """Wait for the interrupt (or group-stop) report, passing signals on."""
        while True:
            _, status = k.wait(t.tid)
            if os.WIFEXITED(status) or os.WIFSIGNALED(status):
                del self.tracees[t.tid]
                return
            sig = os.WSTOPSIG(status)
            event = status >> 16
            if event == k.PTRACE_EVENT_STOP:
                if sig in (signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU):
                    t.stopped = True
                return
            # a signal arrived first: deliver it later, stop now
            k.ptrace(k.PTRACE_CONT, t.tid, 0, sig)
            k.ptrace(k.PTRACE_INTERRUPT, t.tid, 0, 0, "PTRACE_INTERRUPT")

    # --- remote system calls ----------------------------------------------------------

    def remote_syscall(self, tid: int, name: str, *args: int) -> int:
        return remote_syscall(tid, self.tracees[tid].pid, name, *args)

    def scratch_page(self, pid: int) -> int:
        """A private page in process pid for remote calls that return structures.  The page
        before it, read and execute only, holds the code of engine/remote_calls.py."""
        if pid not in self.scratch:
            leader = self.processes[pid].tids[0]
            area = self.remote_syscall(leader, "mmap", 0, SCRATCH_SIZE, k.PROT_READ | k.PROT_EXEC,
                                       k.MAP_PRIVATE | k.MAP_ANONYMOUS, 2**64 - 1, 0)
            self.scratch[pid] = area        # now, so that drop_scratch unmaps it whatever follows
            self.remote_syscall(leader, "mprotect", area + k.PAGE_SIZE, k.PAGE_SIZE, k.PROT_READ | k.PROT_WRITE)
        return self.scratch[pid] + k.PAGE_SIZE

    def drop_scratch(self) -> None:
        for pid, area in list(self.scratch.items()):
            try:
                self.remote_syscall(self.processes[pid].tids[0], "munmap", area, SCRATCH_SIZE)
            except (OSError, DumpError) as e:
                log.warning("cannot unmap scratch area of %d: %s", pid, e)
            del self.scratch[pid]

    # --- letting go -------------------------------------------------------------------

    def release(self) -> None:
        """Undo everything and detach: the tree runs on as if nothing happened."""
        self.drop_scratch()
        # remote_syscall() always puts registers and masks back, so a plain
        # detach is all that is left; a group stop still in effect is kept.
        for t in list(self.tracees.values()):
            try:
                k.ptrace(k.PTRACE_DETACH, t.tid, 0, 0, "PTRACE_DETACH")
            except OSError as e:
                log.warning("detach of %d: %s", t.tid, e)
        self.tracees.clear()
        if self.freezer:
            self.freezer.restore_state()

    def kill(self) -> None:
        """End the dumped tree (the default after a successful dump)."""
        self.drop_scratch()
        for pid in self.order:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.freezer:
            self.freezer.thaw()       # v1-frozen tasks die only once thawed
            self.freezer.restore_state()
        # collect the tracer's exit reports, so the tasks are gone when we return:
        # children before parents (a PID namespace's init finishes exiting only
        # once the rest of its namespace is reaped), threads before their leader
        rank = {pid: i for i, pid in enumerate(self.order)}
        for t in sorted(self.tracees.values(), key=lambda t: (-rank[t.pid], t.tid == t.pid)):
            try:
                k.wait(t.tid)
            except OSError:
                pass
        self.tracees.clear()


def remote_syscall(tid: int, pid: int, name: str, *args: int, vdso: int | None = None) -> int:
    """Run one system call in thread tid (stopped under our ptrace) at its vDSO's syscall instruction
    (vdso: where pid's vDSO starts, when the caller knows it; else its maps tell).

    The thread's registers and signal mask are put back afterwards, whatever
    happens, so an interrupted system call restarts exactly as it would have.
    """
    site = syscall_site(pid, vdso)
    with diverted(tid) as regs:
        regs.rip = site
        regs.rax = k.SYS[name]
        a = list(args) + [0] * (6 - len(args))
        regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8, regs.r9 = [x & 0xFFFFFFFFFFFFFFFF for x in a]
        k.set_regs(tid, regs)
        fault_point("remote-syscall")
        _step_over_syscall(tid, site)
        ret = k.get_regs(tid).rax
    if ret >= 2**63:
        ret -= 2**64
    if -4096 < ret < 0:
        raise OSError(-ret, f"remote {name} in {tid}: {os.strerror(-ret)}")
    return ret


ALL_BUT_KILL_STOP = ~((1 << (signal.SIGKILL - 1)) | (1 << (signal.SIGSTOP - 1))) & (2**64 - 1)


@contextmanager
def diverted(tid: int):
    """Thread tid's registers, to change and set, with every signal blocked: for code of ours
    to run in it.  Registers and signal mask are put back afterwards, whatever happens."""
    saved = k.regs_to_bytes(k.get_regs(tid))
    mask = k.get_sigmask(tid)
    regs = k.regs_from_bytes(saved)
    regs.orig_rax = 0xFFFFFFFFFFFFFFFF       # not in a syscall: no restart logic on the new rip
    try:
        k.set_sigmask(tid, ALL_BUT_KILL_STOP)
        yield regs
    finally:
        try:
            k.set_regs(tid, k.regs_from_bytes(saved))
            k.set_sigmask(tid, mask)
        except OSError:
            pass


def _trap_pending(tid: int) -> bool:
    status = proc.read_text(f"/proc/{tid}/status")
    pending = next(int(line.split()[1], 16) for line in status.splitlines() if line.startswith("SigPnd:"))
    return bool(pending & (1 << (signal.SIGTRAP - 1)))


def _step_over_syscall(tid: int, site: int) -> None:
    """Execute the `syscall` instruction at site with one single step: the thread stops once,
    after the call returned (half the stops of syscall-entry/exit tracing)."""
    k.ptrace(k.PTRACE_SINGLESTEP, tid, 0, 0, "PTRACE_SINGLESTEP")
    while True:
        _, status = k.wait(tid)
        if os.WIFEXITED(status) or os.WIFSIGNALED(status):
            raise DumpError(f"task {tid} died during a remote system call")
        rip = k.get_regs(tid).rip
        if rip == site + 2:
            if os.WSTOPSIG(status) == signal.SIGTRAP or not _trap_pending(tid):
                return
            # another stop came first and the step's SIGTRAP waits: let it be reported (a
            # pending signal stops the tracee before it runs any instruction) and drop it
            k.ptrace(k.PTRACE_CONT, tid, 0, 0, "PTRACE_CONT")
            continue
        if rip != site:
            raise DumpError(f"task {tid} left the remote system call at {rip:#x}")
        # a group stop or a new signal before the step: step again without delivering it
        # (it stays pending; the mask blocks it)
        k.ptrace(k.PTRACE_SINGLESTEP, tid, 0, 0, "PTRACE_SINGLESTEP")


_SYSCALL_OFFSET: int | None = None
_SITES: dict[int, int] = {}      # pid -> syscall site; the vDSO does not move while we hold the task


def vdso_range(pid: int | str) -> tuple[int, int] | None:
    for m in proc.maps(pid):
        if m.path == "[vdso]":
            return m.start, m.end
    return None


def syscall_site(pid: int, vdso: int | None = None) -> int:
    """Address of a `syscall` instruction in pid's vDSO (same offset in every task of this kernel)."""
    global _SYSCALL_OFFSET
    if _SYSCALL_OFFSET is None:
        start, end = vdso_range("self")
        data = k.read_remote(os.getpid(), start, end - start)
        off = data.find(b"\x0f\x05")
        if off < 0:
            raise DumpError("no syscall instruction in this kernel's vDSO")
        _SYSCALL_OFFSET = off
    if vdso is not None:
        return vdso + _SYSCALL_OFFSET
    if pid not in _SITES:
        r = vdso_range(pid)
        if r is None:
            raise DumpError(f"process {pid} has no vDSO; cannot run system calls in it")
        _SITES[pid] = r[0] + _SYSCALL_OFFSET
    return _SITES[pid]
