"""fanotify: a notification group (its flags) and its marks on inodes, mounts and file systems.

Dump: the header of fdinfo gives the group's flags, each further line a mark;
an inode mark's inode is found again by its file handle (kinds/_inodes.py), a
mount mark's mount by its id and a file system mark's by its device, both
through the task's mountinfo.
Restore: fanotify_init in the orchestrator; the marks in the first holder
(in_task), once every file of the dump is open (opening them would queue
events).  Events still queued at dump time are not carried (the dump log says
how many bytes were lost); a permission event waiting for an answer is lost
with them.
"""
from __future__ import annotations

import logging
import os

from .. import kernel as k
from ..errors import ImageError, UnsupportedError
from . import _inodes
from .fanotify_pb2 import Fanotify as MESSAGE
from .fanotify_pb2 import FanotifyMark as Mark

NAME = "fanotify"
FAN_MARK_ADD, FAN_MARK_MOUNT, FAN_MARK_FILESYSTEM = 0x1, 0x10, 0x100
FAN_MARK_IGNORED_MASK, FAN_MARK_IGNORED_SURV_MODIFY, FAN_MARK_EVICTABLE, FAN_MARK_IGNORE = 0x20, 0x40, 0x200, 0x400
MFLAGS = FAN_MARK_IGNORED_SURV_MODIFY | FAN_MARK_EVICTABLE | FAN_MARK_IGNORE
TYPE_FLAG = {Mark.INODE: 0, Mark.MOUNT: FAN_MARK_MOUNT, Mark.FILESYSTEM: FAN_MARK_FILESYSTEM}
AT_FDCWD = -100
log = logging.getLogger("lxc_cr.kinds")


def matches(link: str, st: os.stat_result) -> bool:
    return link == "anon_inode:[fanotify]"


def dump(ctx, f):
    lines = _inodes.marks(f.pid, f.fd, "fanotify ")
    head = next((line for line in lines if "flags" in line), None)
    if head is None:
        raise UnsupportedError(f"process {f.pid} fd {f.fd}: fanotify fdinfo has no flags line")
    msg = MESSAGE(init_flags=int(head["flags"], 16), event_flags=int(head["event-flags"], 16))
    # fdinfo lists the newest mark first: keep them oldest first, the order to add them in
    for line in reversed(lines):
        if line is not head:
            _dump_mark(ctx, f, line, msg.marks.add())
    queued = k.fionread(ctx.local_fd(f))
    if queued:
        log.warning("process %d fd %d: %d bytes of fanotify events queued are not carried", f.pid, f.fd, queued)
    return msg


def _dump_mark(ctx, f, line: dict, mark) -> None:
    mark.mflags = int(line["mflags"], 16)
    mark.mask = int(line["mask"], 16)
    mark.ignored_mask = int(line["ignored_mask"], 16)
    if "ino" in line:
        mark.type = Mark.INODE
        _inodes.locate(ctx, f, line, mark)
        return
    if "mnt_id" in line:
        mark.type = Mark.MOUNT
        mnt_id = int(line["mnt_id"], 16)
        point = next((p for i, _, p in _inodes.mounts(f.pid) if i == mnt_id), None)
        what = f"mount {mnt_id}"
    else:
        mark.type = Mark.FILESYSTEM
        mark.s_dev = int(line["sdev"], 16)
        point = _inodes.mount_point_of_dev(_inodes.user_dev(mark.s_dev), f.pid)
        what = f"file system {mark.s_dev >> 20}:{mark.s_dev & 0xFFFFF}"
    if point is None:
        raise UnsupportedError(f"process {f.pid} fd {f.fd}: fanotify marks {what}, which it cannot see")
    mark.path = point


def open(ctx, entry, msg) -> int:
    for m in msg.marks:
        if m.mflags & ~MFLAGS or m.type not in TYPE_FLAG or (m.type != Mark.INODE and not m.path.startswith("/")):
            raise ImageError(f"files.img: fanotify {entry.id} has a bad mark")
    # the group keeps its init flags as given (FAN_CLOEXEC and FAN_NONBLOCK too, which fdinfo
    # shows); the open file's own flags are set apart
    try:
        fd = k.fanotify_init(msg.init_flags, msg.event_flags)
    except OSError as e:
        raise ImageError(f"fanotify {entry.id}: fanotify_init({msg.init_flags:#x}, {msg.event_flags:#x}): "
                         f"{e.strerror}") from None
    os.set_inheritable(fd, False)
    os.set_blocking(fd, not entry.flags & os.O_NONBLOCK)
    return fd


def in_task(ctx, entry, msg, fds) -> None:
    for m in msg.marks:
        _add_mark(ctx, entry, fds[0], m)


def _add_mark(ctx, entry, fd: int, m) -> None:
    where = f"fanotify {entry.id}"
    target = _inodes.reopen(ctx, m, where) if m.type == Mark.INODE else None
    path = f"/proc/self/fd/{target}" if target is not None else m.path
    base = FAN_MARK_ADD | TYPE_FLAG[m.type] | (m.mflags & FAN_MARK_EVICTABLE)
    try:
        if m.mask:
            k.fanotify_mark(fd, base, m.mask, AT_FDCWD, path)
        if m.ignored_mask:
            ignore = FAN_MARK_IGNORE if m.mflags & FAN_MARK_IGNORE else FAN_MARK_IGNORED_MASK
            k.fanotify_mark(fd, base | ignore | (m.mflags & FAN_MARK_IGNORED_SURV_MODIFY), m.ignored_mask,
                            AT_FDCWD, path)
    except OSError as e:
        raise ImageError(f"{where}: cannot mark {m.path}: {e.strerror}") from None
    finally:
        if target is not None:
            os.close(target)
