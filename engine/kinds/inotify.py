"""inotify: every watch (the inode, its mask, its watch descriptor) and O_NONBLOCK.

Dump: fdinfo lists the watches; each inode is found again by its file handle
(kinds/_inodes.py), a deleted one through a file of the tree open on it.
Restore: watches are added in wd order, in the first holder (in_task).  The kernel hands out wds cyclically
(the next is one more than the last, even after removals) and takes no
request, so gaps are burnt by adding and removing a watch on a scratch inode;
the IN_IGNORED events that leaves are read off before the task gets the fd.
Events still queued at dump time cannot be read without taking them from the
task, and most could not be made again without side effects (a file created,
deleted, written...).  The restored instance gets IN_Q_OVERFLOW instead, what the
kernel itself queues when events were lost, so that the application rescans what
it watches (inotify(7): "the application should rescan").  It is made honestly: a
scratch watch on a nameless file fills the queue past its limit
(fs.inotify.max_queued_events) with open/close events, the scratch watch goes (its
IN_IGNORED is folded into the overflow), and the events ahead of the overflow are
read off.  Cost: about 40 ms at the default limit, and the next new watch number
is one more than it would have been.
"""
from __future__ import annotations

import logging
import os

from .. import kernel as k
from .. import proc
from ..errors import ImageError, RestoreError
from . import _inodes
from .inotify_pb2 import Inotify as MESSAGE

NAME = "inotify"
WD_MAX = 1 << 20           # how far restore will burn watch descriptors to match one
DRAIN_EVERY = 4096         # scratch removals between reads of their IN_IGNORED events
IN_KEEP = 0xFFFFFFFF & ~(0x01000000 | 0x02000000 | 0x10000000 | 0x20000000)  # not ONLYDIR,
#                          DONT_FOLLOW, MASK_CREATE, MASK_ADD: those only steer inotify_add_watch
log = logging.getLogger("lxc_cr.kinds")
IN_OPEN, IN_CLOSE_NOWRITE = 0x20, 0x10
EVENT_SIZE = 16                         # struct inotify_event without a name
MAX_QUEUED = "/proc/sys/fs/inotify/max_queued_events"
SCRATCH_DIR = "/tmp"


def matches(link: str, st: os.stat_result) -> bool:
    return link == "anon_inode:inotify"


def dump(ctx, f):
    msg = MESSAGE()
    for mark in sorted(_inodes.marks(f.pid, f.fd, "inotify wd:"), key=lambda m: int(m["wd"])):
        w = msg.watches.add(wd=int(mark["wd"]), mask=int(mark["mask"], 16))
        _inodes.locate(ctx, f, mark, w)
    msg.queued = k.fionread(ctx.local_fd(f))
    if msg.queued:
        log.warning("process %d fd %d: %d bytes of inotify events queued come back as IN_Q_OVERFLOW",
                    f.pid, f.fd, msg.queued)
    return msg


def open(ctx, entry, msg) -> int:
    _validate(entry, msg)
    return k.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)


def in_task(ctx, entry, msg, fds) -> None:
    """Watches are added here, once every file of the dump is open: rebuilding them
    (a deleted file made again and unlinked...) would otherwise queue events."""
    fd = fds[0]
    _add_watches(ctx, entry, msg, fd)
    if msg.queued:
        _queue_overflow(entry, fd)
    if entry.flags & os.O_NONBLOCK == 0:
        os.set_blocking(fd, True)


def _validate(entry, msg) -> None:
    prev = 0
    for w in msg.watches:
        if not prev < w.wd <= WD_MAX:
            raise ImageError(f"files.img: inotify {entry.id} has watch descriptors out of order or above "
                             f"{WD_MAX} ({w.wd})")
        prev = w.wd


def _add_watches(ctx, entry, msg, fd: int) -> None:
    where = f"inotify {entry.id}"
    scratch = None
    burnt = 0
    next_wd = 1
    try:
        for w in msg.watches:
            while next_wd < w.wd:
                if scratch is None:
                    scratch = os.memfd_create("lxc-cr-inotify-wd", os.MFD_CLOEXEC)
                wd = k.inotify_add_watch(fd, f"/proc/self/fd/{scratch}", 0x4)      # IN_ATTRIB: any event
                k.inotify_rm_watch(fd, wd)
                next_wd = wd + 1
                burnt += 1
                if burnt % DRAIN_EVERY == 0:
                    _drain(fd)
            target = _inodes.reopen(ctx, w, where)
            try:
                wd = k.inotify_add_watch(fd, f"/proc/self/fd/{target}", w.mask & IN_KEEP)
            except OSError as e:
                raise RestoreError(f"{where}: cannot watch {w.path} (mask {w.mask:#x}): {e.strerror}") from None
            finally:
                os.close(target)
            if wd != w.wd:
                raise ImageError(f"{where}: watch {w.wd} on {w.path} came back as watch {wd} "
                                 f"(the same inode twice?)")
            next_wd = wd + 1
    finally:
        if scratch is not None:
            os.close(scratch)
    if burnt:
        _drain(fd)


def _queue_overflow(entry, fd: int) -> None:
    """Leave IN_Q_OVERFLOW alone in the queue (see the module docstring; fd is non-blocking)."""
    where = f"inotify {entry.id}"
    limit = int(proc.read_bytes(MAX_QUEUED).strip())        # the instance took it when it was made
    try:
        scratch = os.open(SCRATCH_DIR, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise RestoreError(f"{where}: cannot make a scratch file in {SCRATCH_DIR}: {e.strerror}") from None
    try:
        path = f"/proc/self/fd/{scratch}"
        wd = k.inotify_add_watch(fd, path, IN_OPEN | IN_CLOSE_NOWRITE)
        # open and close alternate, so that no event is merged with the one before it
        for _ in range(limit // 2 + 1):
            os.close(os.open(path, os.O_RDONLY | os.O_CLOEXEC))
        k.inotify_rm_watch(fd, wd)
    finally:
        os.close(scratch)
    ahead = limit * EVENT_SIZE          # events on the scratch file carry no name
    while ahead:
        ahead -= len(os.read(fd, min(ahead, 1 << 16)))
    # what is left can only be the overflow event (inotify cannot be peeked at)
    if k.fionread(fd) != EVENT_SIZE:
        raise RestoreError(f"{where}: could not queue IN_Q_OVERFLOW")


def _drain(fd: int) -> None:
    """Read off the IN_IGNORED events the scratch watches left (fd is non-blocking here)."""
    while True:
        try:
            if not os.read(fd, 65536):
                return
        except BlockingIOError:
            return
