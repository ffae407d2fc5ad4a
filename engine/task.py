"""Per-process and per-thread state: registers, signals, timers, credentials, attributes.

Dump reads each item from the cheapest honest source (/proc, ptrace, or one
remote system call in the right thread).  Restore splits the work between the
restorer blob (what only the task can set on itself: fill_args) and the
tracer (what can be set from outside once the task has trapped: apply_outside).
"""
from __future__ import annotations

import logging
import os
import signal
import struct

from . import kernel as k
from . import proc
from .errors import ImageError, UnsupportedError
from .remote_calls import OUT, Calls
from .seize import Seizure

log = logging.getLogger("lxc_cr.task")

NSIG = 64
IOPRIO_WHO_PROCESS = 1
PR_GET_PDEATHSIG = 2
PR_GET_DUMPABLE = 3
PR_GET_SECUREBITS = 27
PR_GET_CHILD_SUBREAPER = 37
PR_GET_TID_ADDRESS = 40
XFEATURE_AMX = (1 << 17) | (1 << 18)
XSTATE_BV_OFFSET = 512
RSEQ_CS_OFFSET = 8
SIGACTION = struct.Struct("<QQQQ")
ITIMERVAL = struct.Struct("<qqqq")
ITIMERSPEC = struct.Struct("<qqqq")
STACK_T = struct.Struct("<QiiQ")       # ss_sp, ss_flags, pad, ss_size


def _pb():
    from .proto import images_pb2
    return images_pb2


# --- dump --------------------------------------------------------------------------------

def xfeatures() -> int:
    """XCR0: the CPU state components this kernel saves and restores."""
    return k.lib.lxc_xgetbv0()


def xsave_size() -> int:
    """Size of an NT_X86_XSTATE block on this CPU (CPUID leaf 0xD, sub-leaf 0, ECX)."""
    return k.lib.lxc_xsave_size()


def dump_thread(pid: int, tid: int, calls: Calls):
    """What /proc and ptrace tell of one thread; what only the thread can tell is asked
    through calls, and filled in by thread_answers() once they ran."""
    pb = _pb()
    t = pb.Thread(tid=tid)
    regs = k.get_regs(tid)
    t.regs = k.regs_to_bytes(regs)
    t.xsave = k.get_regset(tid, k.NT_X86_XSTATE, xsave_size())
    t.sigmask = k.get_sigmask(tid)
    t.siginfo.extend(k.peek_siginfo(tid, shared=False))
    t.comm = proc.stat(pid, tid).comm
    t.timerslack_ns = int(proc.read_text(f"/proc/{tid}/timerslack_ns"))
    t.affinity.extend(sorted(os.sched_getaffinity(tid)))
    t.robust_list, t.robust_len = k.get_robust_list(tid)
    ptr, size, sig = k.get_rseq(tid)
    if ptr:
        # read rseq_cs before any remote call: the kernel clears it when the IP leaves the section
        t.rseq_ptr, t.rseq_len, t.rseq_sig = ptr, size, sig
        t.rseq_cs = struct.unpack("<Q", k.read_remote(pid, ptr + RSEQ_CS_OFFSET, 8))[0]
    asked = (calls.add("sigaltstack", STACK_T.size, 0, OUT),
             calls.add("prctl", 8, PR_GET_TID_ADDRESS, OUT),
             calls.add("prctl", 4, PR_GET_PDEATHSIG, OUT))
    return t, asked


def thread_answers(t, asked) -> None:
    altstack, tid_address, pdeath = asked
    t.altstack_sp, t.altstack_flags, _, t.altstack_size = STACK_T.unpack(altstack.out)
    t.clear_tid = struct.unpack("<Q", tid_address.out)[0]
    t.pdeath_signal = struct.unpack("<i", pdeath.out)[0]


def dump_task(s: Seizure, pid: int, tids: list[int]):
    """Everything process-wide of a live process, plus its threads.  The remote calls are
    asked first and run together: one stop per thread."""
    pb = _pb()
    calls = {tid: Calls(s, tid) for tid in tids}
    ask = calls[tids[0]]                # process-wide questions go to the leader
    st = proc.stat(pid)
    status = proc.status(pid)
    task = pb.Task(pid=pid, comm=st.comm, nice=st.nice)
    threads = [dump_thread(pid, tid, calls[tid]) for tid in tids]
    sigactions = _ask_sigactions(ask, status)
    itimers = [ask.add("getitimer", ITIMERVAL.size, which, OUT) for which in range(3)]
    posix_timers = _ask_posix_timers(ask, pid)
    subreaper = ask.add("prctl", 4, PR_GET_CHILD_SUBREAPER, OUT)
    dumpable = ask.add("prctl", 0, PR_GET_DUMPABLE)
    securebits = ask.add("prctl", 0, PR_GET_SECUREBITS)
    for c in calls.values():
        c.run()
    for t, asked in threads:
        thread_answers(t, asked)
        task.threads.append(t)
    task.creds.CopyFrom(_creds(status, securebits.ret))
    for r, (cur, mx) in enumerate(proc.limits(pid)):
        task.rlimits.add(resource=r, cur=cur, max=mx)
    task.sched_policy = os.sched_getscheduler(pid)
    task.sched_priority = os.sched_getparam(pid).sched_priority
    task.oom_score_adj = int(proc.read_text(f"/proc/{pid}/oom_score_adj"))
    task.ioprio = k.syscall("ioprio_get", IOPRIO_WHO_PROCESS, pid)
    task.thp_disabled = status.get("THP_enabled", "1") == "0"
    task.sigactions.extend(_sigactions(sigactions))
    for itimer in itimers:
        i_s, i_us, v_s, v_us = ITIMERVAL.unpack(itimer.out)
        task.itimers.add(interval_sec=i_s, interval_usec=i_us, value_sec=v_s, value_usec=v_us)
    task.posix_timers.extend(_posix_timers(pid, posix_timers))
    task.shared_siginfo.extend(k.peek_siginfo(tids[0], shared=True))
    task.personality = int(proc.read_text(f"/proc/{pid}/personality"), 16)
    task.umask = int(status.get("Umask", "0022"), 8)
    task.child_subreaper = struct.unpack("<i", subreaper.out)[0] != 0
    task.dumpable = dumpable.ret
    task.cwd = os.readlink(f"/proc/{pid}/cwd")
    task.root = os.readlink(f"/proc/{pid}/root")
    if int(status.get("Seccomp", "0")) == 1:
        raise UnsupportedError(f"process {pid} uses strict seccomp mode, which cannot be restored")
    if int(status.get("Seccomp", "0")) == 2:
        for index, prog in enumerate(k.seccomp_filters(tids[0])):
            task.seccomp.add(program=prog, flags=k.seccomp_filter_flags(tids[0], index))
        task.seccomp.reverse()     # outermost first: the order to install them in
    return task


def _ask_sigactions(ask: Calls, status: dict[str, str]) -> dict:
    """The signal actions worth asking for: only those the kernel shows as caught or ignored
    (SigCgt, SigIgn), and SIGCHLD.  The flags and mask of any other signal, at its default
    action, have no effect (SIGCHLD's SA_NOCLDSTOP and SA_NOCLDWAIT do), and asking for all
    62 was a third of a container's frozen time."""
    asked = int(status.get("SigCgt", "0"), 16) | int(status.get("SigIgn", "0"), 16) | 1 << (signal.SIGCHLD - 1)
    return {signo: ask.add("rt_sigaction", SIGACTION.size, signo, 0, OUT, 8)
            for signo in range(1, NSIG + 1)
            if signo not in (signal.SIGKILL, signal.SIGSTOP) and asked >> (signo - 1) & 1}


def _sigactions(answers: dict):
    """The 64 signal actions, SIG_DFL where none was asked for."""
    pb = _pb()
    out = []
    for signo in range(1, NSIG + 1):
        if signo not in answers:
            out.append(pb.SigAction())
            continue
        h, fl, rest, mask = SIGACTION.unpack(answers[signo].out)
        out.append(pb.SigAction(handler=h, flags=fl, restorer=rest, mask=mask))
    return out


def _creds(status: dict[str, str], securebits: int):
    pb = _pb()
    c = pb.Creds()
    c.uids.extend(int(x) for x in status["Uid"].split())
    c.gids.extend(int(x) for x in status["Gid"].split())
    c.groups.extend(int(x) for x in status.get("Groups", "").split())
    c.cap_inh = int(status["CapInh"], 16)
    c.cap_prm = int(status["CapPrm"], 16)
    c.cap_eff = int(status["CapEff"], 16)
    c.cap_bnd = int(status["CapBnd"], 16)
    c.cap_amb = int(status.get("CapAmb", "0"), 16)
    c.no_new_privs = status.get("NoNewPrivs", "0") == "1"
    c.securebits = securebits
    return c


def _ask_posix_timers(ask: Calls, pid: int) -> list:
    """/proc/PID/timers, and for each timer its time and overrun asked through ask."""
    out = []
    for t in proc.timers(pid):
        timer_id = int(t["ID"])
        out.append((t, ask.add("timer_gettime", ITIMERSPEC.size, timer_id, OUT),
                    ask.add("timer_getoverrun", 0, timer_id)))
    return out


def _posix_timers(pid: int, asked: list):
    pb = _pb()
    out = []
    for t, gettime, overrun in asked:
        timer_id = int(t["ID"])
        signo, _, value = t["signal"].partition("/")
        notify, _, target = t["notify"].partition("/")
        mode = {"signal": 0, "none": 1, "thread": 2}.get(notify)
        if mode is None:
            raise UnsupportedError(f"process {pid}: POSIX timer {timer_id} notifies by {notify!r}")
        if target.startswith("tid"):
            mode |= 4  # SIGEV_THREAD_ID
        i_s, i_ns, v_s, v_ns = ITIMERSPEC.unpack(gettime.out)
        out.append(pb.PosixTimer(
            id=timer_id, clock_id=int(t["ClockID"]), sigev_notify=mode, sigev_signo=int(signo),
            sigev_value=int(value, 16), notify_tid=int(target.split(".")[-1]) if "." in target else 0,
            overrun=overrun.ret, interval_sec=i_s, interval_nsec=i_ns, value_sec=v_s, value_nsec=v_ns))
    return out


def check_xsave(task, xfeatures: int, where: str) -> None:
    """Every thread's xsave header may only claim components the dump's CPU had
    (which load() has already checked against this CPU's)."""
    for t in task.threads:
        if len(t.xsave) < XSTATE_BV_OFFSET + 8:
            raise ImageError(f"{where}: thread {t.tid} has a truncated xsave block")
        bv = struct.unpack_from("<Q", t.xsave, XSTATE_BV_OFFSET)[0]
        if bv & ~xfeatures:
            raise ImageError(f"{where}: thread {t.tid} claims CPU state {bv & ~xfeatures:#x} "
                             f"outside the dump's XCR0")


def uses_amx(thread) -> bool:
    return bool(struct.unpack_from("<Q", thread.xsave, XSTATE_BV_OFFSET)[0] & XFEATURE_AMX)


# --- restore: what is set from outside, or by the task before the blob -------------------------

def apply_rlimits(t) -> None:
    """In the restoring task itself, just before the blob: its own limits.

    A hard limit above the current one needs CAP_SYS_RESOURCE; then the current
    hard limit stays (rlimit_warnings() told the log beforehand)."""
    for r in t.rlimits:
        try:
            k.prlimit(0, r.resource, (r.cur, r.max))
        except OSError:
            _, hard = k.prlimit(0, r.resource)
            k.prlimit(0, r.resource, (min(r.cur, hard), hard))


def rlimit_warnings(t) -> list[str]:
    out = []
    for r in t.rlimits:
        _, hard = k.prlimit(0, r.resource)
        if r.max > hard:
            out.append(f"process {t.pid}: hard limit of resource {r.resource} ({r.max}) is above ours "
                       f"({hard}); raising it needs CAP_SYS_RESOURCE, it stays at {hard}")
    return out


def apply_outside(pid: int, t) -> None:
    """Scheduling attributes, set by the tracer once the task has trapped (root may set them)."""
    for th in t.threads:
        try:
            os.sched_setscheduler(th.tid, t.sched_policy, os.sched_param(t.sched_priority))
        except OSError as e:
            log.warning("process %d: scheduling policy %d: %s", pid, t.sched_policy, e.strerror)
        try:
            os.setpriority(os.PRIO_PROCESS, th.tid, t.nice)
        except OSError as e:
            log.warning("thread %d: nice %d: %s", th.tid, t.nice, e.strerror)
        if th.affinity:
            try:
                os.sched_setaffinity(th.tid, th.affinity)
            except OSError as e:
                log.warning("thread %d: CPU affinity: %s", th.tid, e.strerror)
        _write_proc(f"/proc/{th.tid}/timerslack_ns", th.timerslack_ns)
        k.syscall("ioprio_set", IOPRIO_WHO_PROCESS, th.tid, t.ioprio)
    try:
        _write_proc(f"/proc/{pid}/oom_score_adj", t.oom_score_adj)
    except OSError as e:
        log.warning("process %d: oom_score_adj %d needs CAP_SYS_RESOURCE: %s", pid, t.oom_score_adj, e.strerror)


def _write_proc(path: str, value: int) -> None:
    with open(path, "w") as f:
        f.write(str(value))
