"""pidfd: a process of the tree (alive or a zombie), or one that was already reaped.

Dump: fdinfo's Pid line names the process; it must belong to the tree (its
PID comes back with it); a reaped one (Pid -1) is fine too.
Restore: the process does not exist before the tree is rebuilt, so the pidfd
is opened in the restoring task (in_task), then put at the task's fd numbers
and over the orchestrator's stand-in fd (which other hooks of the task, e.g.
epoll's, use).  That happens in every task holding it: a pidfd shared between
processes comes back as one open file per process, on the same process with
the same flags.  A reaped process gets a pidfd on a short-lived child of the
orchestrator, reaped at once, opened before the tree exists.
"""
from __future__ import annotations

import os

from .. import kernel as k
from .. import proc
from ..errors import ImageError, RestoreError, UnsupportedError
from .pidfd_pb2 import PidFd as MESSAGE

NAME = "pidfd"
IN_EVERY_HOLDER = True
PIDFD_THREAD = os.O_EXCL          # pidfd_open flag, shown as O_EXCL in the file's flags


def matches(link: str, st: os.stat_result) -> bool:
    return link == "anon_inode:[pidfd]" or link.startswith("pidfd:")


def _refusal(ctx, f, flags: int) -> str | None:
    what = f"process {f.pid} fd {f.fd}: pidfd"
    if f.pid == os.getpid():
        return f"{what} in flight (passed in a message) is not supported"
    if flags & PIDFD_THREAD:
        return f"{what} of a thread (PIDFD_THREAD) is not supported"
    pid = int(f.info["Pid"])
    if pid != -1 and pid not in ctx.tree:
        return f"{what} of process {pid}, which is outside the tree, is not supported"
    return None


def check(ctx, f) -> list[str]:
    reason = _refusal(ctx, f, int(f.info["flags"], 8))
    return [reason] if reason else []


def dump(ctx, f):
    reason = _refusal(ctx, f, f.entry.flags)
    if reason:
        raise UnsupportedError(reason)
    pid = int(f.info["Pid"])
    return MESSAGE(reaped=True) if pid == -1 else MESSAGE(pid=pid)


def open(ctx, entry, msg) -> int:
    if msg.reaped:
        return _pidfd_of_reaped(entry.flags & os.O_NONBLOCK)
    if msg.pid <= 0:
        raise ImageError(f"files.img: pidfd {entry.id} has a bad PID {msg.pid}")
    # a stand-in until in_task, in a task, opens the real one
    return os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)


def _pidfd_of_reaped(flags: int) -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    try:
        return k.syscall("pidfd_open", pid, flags)      # works on the zombie it may already be
    finally:
        os.waitpid(pid, 0)


def in_task(ctx, entry, msg, fds) -> None:
    ctx.shared.setdefault("built_here", set()).add(entry.id)
    if msg.reaped:
        return                         # the orchestrator's pidfd is the real one
    try:
        real = k.syscall("pidfd_open", _seen_here(msg.pid), entry.flags & os.O_NONBLOCK)
    except OSError as e:
        raise RestoreError(f"pidfd {entry.id}: cannot open a pidfd of process {msg.pid}: {e.strerror}") from None
    try:
        for fd in fds:
            os.dup2(real, fd, inheritable=os.get_inheritable(fd))
        os.dup2(real, ctx.opened[entry.id], inheritable=False)
    finally:
        os.close(real)


def _seen_here(pid: int) -> int:
    """A PID of the dump as this task sees it.  /proc is the dumper's: NSpid lists a task's
    PIDs from that namespace inwards; the one at this task's own depth is what it sees."""
    depth = len(_nspids("self"))
    seen = _nspids(str(pid))
    if len(seen) < depth:
        raise ImageError(f"pidfd: process {pid} is not in this task's PID namespace")
    return seen[depth - 1]


def _nspids(pid: str) -> list[int]:
    for line in proc.read_bytes(f"/proc/{pid}/status").decode().splitlines():
        if line.startswith("NSpid:"):
            return [int(x) for x in line.split()[1:]]
    raise ImageError(f"/proc/{pid}/status has no NSpid line")
