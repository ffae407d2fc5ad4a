"""Several system calls run in one seized thread with a single ptrace stop.

One remote system call (seize.remote_syscall) costs a stop of the thread and two
context switches: about 0.1 ms on a busy host, and a task's attributes take a dozen
of them (engine/task.py).  `Calls` queues the calls, writes them as straight-line
machine code into the task's scratch area (Seizure.scratch_page: a code page, read
and execute only, written through /proc/PID/mem; the data page after it holds the
return values and output buffers), points the thread at the code with every signal
blocked and lets it run to the int3 at its end.  Registers and signal mask are put
back afterwards, whatever happens, as after one remote call.

    calls = Calls(seizure, tid)
    alt = calls.add("sigaltstack", STACK_T.size, 0, OUT)    # OUT: this call's output buffer
    calls.run()                                             # OSError for a failed call
    alt.ret, alt.out
"""
from __future__ import annotations

import os
import signal
import struct

from . import kernel as k
from .errors import DumpError, fault_point
from .seize import diverted


class _Out:
    def __repr__(self) -> str:
        return "OUT"


OUT = _Out()          # an argument: the address of the call's own output buffer

# x86-64: movabs REG, imm64 for the syscall number (rax) and the six argument registers
_MOV_RAX = b"\x48\xb8"
_MOV_ARGS = (b"\x48\xbf", b"\x48\xbe", b"\x48\xba", b"\x49\xba", b"\x49\xb8", b"\x49\xb9")  # rdi rsi rdx r10 r8 r9
_SYSCALL = b"\x0f\x05"
_STORE_RAX = b"\x48\xa3"        # movabs [imm64], rax
_INT3 = b"\xcc"
_CALL_SIZE = len(_MOV_RAX) + 8 + 6 * (2 + 8) + len(_SYSCALL) + len(_STORE_RAX) + 8


class Call:
    """One queued system call; run() fills in ret and out (its output buffer)."""

    def __init__(self, name: str, out_size: int, args: tuple):
        self.name = name
        self.out_size = out_size
        self.args = args
        self.ret: int | None = None
        self.out = b""


class Calls:
    def __init__(self, seizure, tid: int):
        self.s = seizure
        self.tid = tid
        self.pid = seizure.tracees[tid].pid
        self.queued: list[Call] = []

    def add(self, name: str, out_size: int, *args) -> Call:
        call = Call(name, out_size, args)
        self.queued.append(call)
        return call

    def run(self) -> None:
        """Run every queued call, in order (as many stops as the scratch area needs, usually one)."""
        pending, self.queued = self.queued, []
        while pending:
            n = _fitting(pending)
            self._run_chunk(pending[:n])
            pending = pending[n:]

    def _run_chunk(self, calls: list[Call]) -> None:
        data = self.s.scratch_page(self.pid)
        code_at = data - k.PAGE_SIZE
        out_at = data + 8 * len(calls)              # return values first, then the buffers
        code = b""
        for i, c in enumerate(calls):
            args = [out_at if a is OUT else a for a in c.args] + [0] * (6 - len(c.args))
            code += _MOV_RAX + struct.pack("<Q", k.SYS[c.name])
            code += b"".join(mov + struct.pack("<Q", a & 0xFFFFFFFFFFFFFFFF) for mov, a in zip(_MOV_ARGS, args))
            code += _SYSCALL + _STORE_RAX + struct.pack("<Q", data + 8 * i)
            out_at += c.out_size
        code += _INT3
        # the code page is not writable in the task (a page both writable and executable may
        # be refused, PR_SET_MDWE): /proc/PID/mem writes it as a debugger would
        fd = os.open(f"/proc/{self.pid}/mem", os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.pwrite(fd, code, code_at)
        finally:
            os.close(fd)
        _execute(self.tid, code_at, code_at + len(code))
        raw = k.read_remote(self.pid, data, out_at - data)
        at = 8 * len(calls)
        for i, c in enumerate(calls):
            ret = struct.unpack_from("<q", raw, 8 * i)[0]
            if -4096 < ret < 0:
                raise OSError(-ret, f"remote {c.name} in {self.tid}: {os.strerror(-ret)}")
            c.ret, c.out = ret, raw[at:at + c.out_size]
            at += c.out_size


def _fitting(calls: list[Call]) -> int:
    """How many of calls, from the first, fit the code and the data page."""
    code, data = len(_INT3), 0
    for n, c in enumerate(calls):
        code += _CALL_SIZE
        data += 8 + c.out_size
        if code > k.PAGE_SIZE or data > k.PAGE_SIZE:
            if n == 0:
                raise DumpError(f"remote {c.name}: its output does not fit the scratch page")
            return n
    return len(calls)


def _execute(tid: int, start: int, end: int) -> None:
    """Run thread tid from start until the int3 that ends at end, every signal blocked."""
    with diverted(tid) as regs:
        regs.rip = start
        k.set_regs(tid, regs)
        fault_point("remote-calls")         # the thread is ours now: a failure must put it back
        k.ptrace(k.PTRACE_CONT, tid, 0, 0, "PTRACE_CONT")
        while True:
            _, status = k.wait(tid)
            if os.WIFEXITED(status) or os.WIFSIGNALED(status):
                raise DumpError(f"task {tid} died during remote system calls")
            sig, event = os.WSTOPSIG(status), status >> 16
            rip = k.get_regs(tid).rip
            if sig == signal.SIGTRAP and event == 0 and rip == end:
                return
            if not (event == k.PTRACE_EVENT_STOP or sig == signal.SIGSTOP) or not start <= rip <= end:
                raise DumpError(f"task {tid} stopped by signal {sig} at {rip:#x} in remote system calls")
            # a group stop, or a SIGSTOP (the one signal the mask cannot block) on the way:
            # go on without delivering it, as remote_syscall does
            k.ptrace(k.PTRACE_CONT, tid, 0, 0, "PTRACE_CONT")
