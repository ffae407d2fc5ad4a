"""inotify: every watch (the inode, its mask, its watch descriptor) and O_NONBLOCK.

Dump: fdinfo lists the watches; each inode is found again by its file handle
(kinds/_inodes.py), a deleted one through a file of the tree open on it.
Restore: watches are added in wd order, in the first holder (in_task).  The kernel hands out wds cyclically
(the next is one more than the last, even after removals) and takes no
request, so gaps are burnt by adding and removing a watch on a scratch inode;
the IN_IGNORED events that leaves are read off before the task gets the fd.
Events still queued at dump time cannot be read without taking them from the
task: they are not carried (the dump log says how many bytes were lost).
"""
from __future__ import annotations

import logging
import os

from .. import kernel as k
from ..errors import ImageError, RestoreError
from . import _inodes
from .inotify_pb2 import Inotify as MESSAGE

NAME = "inotify"
WD_MAX = 1 << 20           # how far restore will burn watch descriptors to match one
DRAIN_EVERY = 4096         # scratch removals between reads of their IN_IGNORED events
IN_KEEP = 0xFFFFFFFF & ~(0x01000000 | 0x02000000 | 0x10000000 | 0x20000000)  # not ONLYDIR,
#                          DONT_FOLLOW, MASK_CREATE, MASK_ADD: those only steer inotify_add_watch
log = logging.getLogger("lxc_cr.kinds")


def matches(link: str, st: os.stat_result) -> bool:
    return link == "anon_inode:inotify"


def dump(ctx, f):
    msg = MESSAGE()
    for mark in sorted(_inodes.marks(f.pid, f.fd, "inotify wd:"), key=lambda m: int(m["wd"])):
        w = msg.watches.add(wd=int(mark["wd"]), mask=int(mark["mask"], 16))
        _inodes.locate(ctx, f, mark, w)
    queued = k.fionread(ctx.local_fd(f))
    if queued:
        log.warning("process %d fd %d: %d bytes of inotify events queued are not carried", f.pid, f.fd, queued)
    return msg


def open(ctx, entry, msg) -> int:
    _validate(entry, msg)
    return k.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)


def in_task(ctx, entry, msg, fds) -> None:
    """Watches are added here, once every file of the dump is open: rebuilding them
    (a deleted file made again and unlinked...) would otherwise queue events."""
    fd = fds[0]
    _add_watches(ctx, entry, msg, fd)
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


def _drain(fd: int) -> None:
    """Read off the IN_IGNORED events the scratch watches left (fd is non-blocking here)."""
    while True:
        try:
            if not os.read(fd, 65536):
                return
        except BlockingIOError:
            return
