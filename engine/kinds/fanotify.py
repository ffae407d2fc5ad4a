"""fanotify: a notification group (its flags) and its marks on inodes, mounts and file systems.

Dump: the header of fdinfo gives the group's flags, each further line a mark;
an inode mark's inode is found again by its file handle (kinds/_inodes.py), a
mount mark's mount by its id and a file system mark's by its device, both
through the task's mountinfo.
Restore: fanotify_init in the orchestrator; the marks in the first holder
(in_task), once every file of the dump is open (opening them would queue
events).  Events still queued at dump time cannot be read without taking them from
the task: as for inotify, the restored group gets FAN_Q_OVERFLOW instead, what the
kernel queues when events were lost, so that the application rescans.  It is made
honestly, before the marks: a scratch mark on a scratch directory (FAN_CLOSE_WRITE of
its children) and as many nameless files closed in it as the group's queue holds
(fs.fanotify.max_queued_events; files, not one file, as fanotify merges the events
of one file) fill the queue past its limit, the mark goes, and the events ahead of the
overflow are read off (about 0.3 s to 2 s at the default limit).  A group made with
FAN_UNLIMITED_QUEUE cannot overflow: its events are lost (the log says so).  A
permission event waiting for an answer is lost with the others.
"""
from __future__ import annotations

import logging
import os
import struct
import tempfile

from .. import kernel as k
from .. import proc
from ..errors import ImageError, RestoreError, UnsupportedError
from . import _inodes
from .fanotify_pb2 import Fanotify as MESSAGE
from .fanotify_pb2 import FanotifyMark as Mark

NAME = "fanotify"
FAN_MARK_ADD, FAN_MARK_MOUNT, FAN_MARK_FILESYSTEM = 0x1, 0x10, 0x100
FAN_MARK_IGNORED_MASK, FAN_MARK_IGNORED_SURV_MODIFY, FAN_MARK_EVICTABLE, FAN_MARK_IGNORE = 0x20, 0x40, 0x200, 0x400
MFLAGS = FAN_MARK_IGNORED_SURV_MODIFY | FAN_MARK_EVICTABLE | FAN_MARK_IGNORE
TYPE_FLAG = {Mark.INODE: 0, Mark.MOUNT: FAN_MARK_MOUNT, Mark.FILESYSTEM: FAN_MARK_FILESYSTEM}
AT_FDCWD = -100
FAN_MARK_REMOVE, FAN_UNLIMITED_QUEUE = 0x2, 0x10
FAN_CLOSE_WRITE, FAN_EVENT_ON_CHILD = 0x8, 0x08000000
MAX_QUEUED = "/proc/sys/fs/fanotify/max_queued_events"
SCRATCH_DIR = "/tmp"
EVENT_METADATA = "<IBBHQii"             # struct fanotify_event_metadata
EVENT_METADATA_LEN = 24
EVENT_READ = 4096                       # the first read: some events, far fewer than the limit
EVENTS_PER_READ = 128
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
    msg.queued = k.fionread(ctx.local_fd(f))
    if msg.queued:
        lost = "are lost (unlimited queue)" if msg.init_flags & FAN_UNLIMITED_QUEUE else "come back as FAN_Q_OVERFLOW"
        log.warning("process %d fd %d: %d bytes of fanotify events queued %s", f.pid, f.fd, msg.queued, lost)
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
    if msg.queued and not msg.init_flags & FAN_UNLIMITED_QUEUE:
        _queue_overflow(entry, fds[0])
    for m in msg.marks:
        _add_mark(ctx, entry, fds[0], m)


def _queue_overflow(entry, fd: int) -> None:
    """Leave FAN_Q_OVERFLOW alone in the queue (see the module docstring)."""
    where = f"fanotify {entry.id}"
    limit = int(proc.read_bytes(MAX_QUEUED).strip())        # the group took it when it was made
    blocking = os.get_blocking(fd)
    os.set_blocking(fd, False)
    scratch = None
    try:
        scratch = tempfile.mkdtemp(prefix="lxc-cr-fanotify-", dir=SCRATCH_DIR)
        k.fanotify_mark(fd, FAN_MARK_ADD, FAN_CLOSE_WRITE | FAN_EVENT_ON_CHILD, AT_FDCWD, scratch)
        for _ in range(limit + 1):
            os.close(os.open(scratch, os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, 0o600))
        k.fanotify_mark(fd, FAN_MARK_REMOVE, FAN_CLOSE_WRITE | FAN_EVENT_ON_CHILD, AT_FDCWD, scratch)
        _read_events(fd, limit, where)
    except OSError as e:
        raise RestoreError(f"{where}: cannot queue FAN_Q_OVERFLOW: {e.strerror}") from None
    finally:
        if scratch is not None:
            os.rmdir(scratch)
        os.set_blocking(fd, blocking)
    # what is left can only be the overflow event (fanotify cannot be peeked at)
    if k.fionread(fd) != EVENT_METADATA_LEN:
        raise RestoreError(f"{where}: could not queue FAN_Q_OVERFLOW")


def _read_events(fd: int, count: int, where: str) -> None:
    """Read off `count` events on the scratch files (closing the fds they carry), never more:
    each read has room for at most as many as are left, all of one size."""
    size = EVENT_READ
    while count:
        data = os.read(fd, min(count, EVENTS_PER_READ) * size if size != EVENT_READ else size)
        at = 0
        while at < len(data):
            event_len, _, _, _, _, event_fd, _ = struct.unpack_from(EVENT_METADATA, data, at)
            if event_fd >= 0:
                os.close(event_fd)
            at += event_len
            count -= 1
            size = event_len
        if count < 0:
            raise RestoreError(f"{where}: could not queue FAN_Q_OVERFLOW (events of unequal sizes)")


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
