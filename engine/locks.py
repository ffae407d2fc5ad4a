"""File locks: POSIX record locks, flock() locks and OFD locks (dump --file-locks).

Who owns a lock decides who takes it back:
  - a POSIX lock (fcntl F_SETLK) belongs to a process: it is taken again by
    that process itself, through its own fd, after its fds are installed;
  - a flock() lock and an OFD lock (F_OFD_SETLK) belong to an open file
    description: the orchestrator takes them on its own open file, right after
    opening it and before the tree is forked, and the tasks share that file.

Dump: /proc/PID/fdinfo/FD lists as "lock:" lines the locks held through that
open file: a POSIX lock under the fd it was taken through and in its owner
process only; a flock or OFD lock under every fd of its open file.  Each lock
is recorded once, on the FileEntry of the open file it was taken through.
Without --file-locks any held lock fails the dump; leases are always refused.

Restore, POSIX: closing any fd of a file drops every POSIX lock the process
holds on it.  A restoring task inherited the orchestrator's copies of all the
files (the restorer blob closes them with close_range later), so before
taking its POSIX locks it closes the copies that are on the locked files.
Locks are taken without waiting: if another process holds a conflicting lock
now, the restore fails and says so.
Blocked lock requests are not state: a task blocked in F_SETLKW or flock()
at dump time finds itself back in that call after restore.
"""
from __future__ import annotations

import errno
import os
import re

from . import kernel as k
from . import proc
from .errors import ImageError, RestoreError, UnsupportedError

# "lock:\t1: POSIX  ADVISORY  WRITE 11884 fe:00:2164770 5 14"
LOCK_LINE = re.compile(r"lock:\s*\d+:\s*(\S+)\s+(\S+)\s+(\S+)\s+(-?\d+)\s+\S+\s+(\d+)\s+(\d+|EOF)\s*$")
KINDS = {"POSIX": 0, "FLOCK": 1, "OFDLCK": 2}
OFF_MAX = (1 << 63) - 1


def _pb():
    from .proto import images_pb2
    return images_pb2


def _lines(pid: int, fd: int) -> list[str]:
    try:
        text = proc.read_bytes(f"/proc/{pid}/fdinfo/{fd}").decode("utf-8", "replace")
    except ProcessLookupError:
        return []
    return [line for line in text.splitlines() if line.startswith("lock:")]


def _describe(line: str) -> str:
    return " ".join(line.split()[2:])


def _refusal(plan, pid: int, fd: int, line: str) -> str | None:
    m = LOCK_LINE.match(line)
    if m is None or m[1] not in KINDS or m[3] not in ("READ", "WRITE"):
        return f"process {pid} fd {fd}: holds a lease or lock of a kind not supported ({_describe(line)})"
    if not plan.file_locks:
        return f"process {pid} fd {fd}: holds a file lock ({_describe(line)}); dump with --file-locks to keep it"
    if m[1] == "POSIX" and int(m[4]) != pid:
        return (f"process {pid} fd {fd}: holds a POSIX lock owned by process {m[4]} "
                f"(an fd table shared between processes is not supported)")
    return None


def check(plan, pid: int, fd: int) -> list[str]:
    """For --check-only: why the locks held through this fd would fail a dump."""
    return [r for r in (_refusal(plan, pid, fd, line) for line in _lines(pid, fd)) if r]


def dump_fd(ctx, pid: int, fd: int, entry) -> None:
    """Record on `entry` the locks held through fd `fd` of process `pid` (once each)."""
    pb = _pb()
    for line in _lines(pid, fd):
        reason = _refusal(ctx.plan, pid, fd, line)
        if reason:
            raise UnsupportedError(reason)
        m = LOCK_LINE.match(line)
        start = int(m[5])
        length = 0 if m[6] == "EOF" else int(m[6]) - start + 1
        lock = pb.FileLock(kind=KINDS[m[1]], write=m[3] == "WRITE", start=start, length=length,
                           owner=pid if m[1] == "POSIX" else 0)
        if lock not in entry.locks:
            entry.locks.append(lock)


# --- restore -----------------------------------------------------------------------------

def validate(entry, where: str) -> None:
    pb = _pb()
    flocks = 0
    for lock in entry.locks:
        if lock.kind not in (pb.FileLock.POSIX, pb.FileLock.FLOCK, pb.FileLock.OFD):
            raise ImageError(f"{where}: file {entry.id} has a lock of unknown kind {lock.kind}")
        if not (0 <= lock.start <= OFF_MAX and 0 <= lock.length <= OFF_MAX - lock.start + 1):
            raise ImageError(f"{where}: file {entry.id} has a lock with a bad range")
        if (lock.kind == pb.FileLock.POSIX) != (lock.owner > 0):
            raise ImageError(f"{where}: file {entry.id} has a lock with a bad owner {lock.owner}")
        if lock.kind == pb.FileLock.FLOCK:
            flocks += 1
            if lock.start or lock.length or flocks > 1:
                raise ImageError(f"{where}: file {entry.id} has a bad flock lock")


def _what(lock) -> str:
    kind = {0: "POSIX", 1: "flock", 2: "OFD"}[lock.kind]
    end = "EOF" if not lock.length else lock.start + lock.length - 1
    return f"{kind} {'write' if lock.write else 'read'} lock ({lock.start}-{end})"


def _take(fd: int, lock, cmd: int, whose: str) -> None:
    pb = _pb()
    try:
        if lock.kind == pb.FileLock.FLOCK:
            k.syscall("flock", fd, (k.LOCK_EX if lock.write else k.LOCK_SH) | k.LOCK_NB)
        else:
            k.lock_range(fd, cmd, lock.write, lock.start, lock.length)
    except OSError as e:
        held = e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK)
        why = "another process holds a conflicting lock" if held else os.strerror(e.errno)
        raise RestoreError(f"cannot take back the {_what(lock)} of {whose}: {why}") from None


def take_file_locks(ctx) -> None:
    """In the orchestrator, once every file is open: the flock and OFD locks, which belong
    to the open files the tasks are about to share."""
    pb = _pb()
    for entry in ctx.files.values():
        for lock in entry.locks:
            if lock.kind != pb.FileLock.POSIX:
                _take(ctx.opened[entry.id], lock, k.F_OFD_SETLK, f"file {entry.id}")


def take_posix_locks(ctx, task) -> None:
    """In the restoring task, its fds installed: the POSIX locks it owned."""
    pb = _pb()
    mine, seen = [], set()
    for f in task.fds:
        if f.file_id in seen:
            continue
        seen.add(f.file_id)
        for lock in ctx.files[f.file_id].locks:
            if lock.kind == pb.FileLock.POSIX and lock.owner == task.pid:
                mine.append((f.fd, lock))
    if not mine:
        return
    locked = set()
    for fd, _ in mine:
        st = os.fstat(fd)
        locked.add((st.st_dev, st.st_ino))
    # closing a file drops the process's POSIX locks on it: the inherited copies go first
    for file_id, ofd in list(ctx.opened.items()):
        try:
            st = os.fstat(ofd)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in locked:
            os.close(ofd)
            del ctx.opened[file_id]
    for fd, lock in mine:
        _take(fd, lock, k.F_SETLK, f"process {task.pid} fd {fd}")
