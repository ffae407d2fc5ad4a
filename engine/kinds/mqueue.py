"""POSIX message queues (mq_open): name, attributes, permissions and the queued messages.

Dump: a queue has no way to look at a message without taking it, so its
messages are taken out with mq_timedreceive (highest priority first, oldest
first within a priority) and sent back at once, in that same order, before
anything else happens: the queue ends up exactly as it was, whether the dump
goes on, fails or leaves the tree running.  This is safe because every task
of the tree is frozen (none can send or receive meanwhile) and neither call
ever waits (an absolute timeout in the past).  A queue shared with processes
outside the tree could see them race with this; see docs/SUPPORTED.md.
The messages go into mqueue-N.img once per queue, with the first open file
of the queue; other open files of the same queue point at that one.
Refused: queues of a tree with an IPC namespace of its own (they would be
created in the restorer's), and queues with a notification registered
(mq_notify: its sigevent value cannot be read back).

Restore: a queue whose name exists already is taken as it is if it has the
same attributes and exactly the dumped messages (the tree was dumped and
killed on this machine: the queue outlived it); otherwise the restore is
refused rather than destroy someone's queue.  A missing queue is created
with its attributes, owner and mode, and the messages are sent in dump
order.  A queue that had been unlinked is created under a temporary name
and unlinked again.  Each open file is then a new open of the queue through
/proc/self/fd, with the dumped access mode and O_NONBLOCK.
"""
from __future__ import annotations

import errno
import os
import re
import stat

from .. import kernel as k
from .. import namespaces
from ..errors import DumpError, ImageError, RestoreError, UnsupportedError
from .mqueue_pb2 import MQueue as MESSAGE

NAME = "mqueue"
DELETED = " (deleted)"
NAME_MAX = 255
HARD_MSGMAX = 65536              # the kernel's limits on a queue's attributes
HARD_MSGSIZEMAX = 16 << 20
MQ_PRIO_MAX = 32768
DATA_NAME = re.compile(r"mqueue-[0-9]+\.img")
NOTIFY_PID = re.compile(r"NOTIFY_PID:\s*(\d+)")


def matches(link: str, st: os.stat_result) -> bool:
    """A regular file "/NAME" on an anonymous device that is not the file "/NAME" we see:
    the root of an mqueue filesystem.  dump() confirms it with fstatfs and hands
    anything else to regfile."""
    if not stat.S_ISREG(st.st_mode) or os.major(st.st_dev) != 0:
        return False
    name, _ = _split(link)
    if not name or "/" in name:
        return False
    try:
        here = os.stat("/" + name)
    except OSError:
        return True
    return (here.st_dev, here.st_ino) != (st.st_dev, st.st_ino)


def _split(link: str) -> tuple[str, bool]:
    """(queue name without '/', unlinked?) from an fd's link; ("", False) if not of that form."""
    unlinked = link.endswith(DELETED)
    if unlinked:
        link = link[:-len(DELETED)]
    return (link[1:], unlinked) if link.startswith("/") else ("", False)


def _is_queue(pid: int, fd: int) -> bool:
    """Is the file behind /proc/PID/fd/FD on an mqueue filesystem? (an O_PATH open touches nothing)"""
    try:
        p = os.open(f"/proc/{pid}/fd/{fd}", os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return k.fstatfs_type(p) == k.MQUEUE_MAGIC
    finally:
        os.close(p)


def _refusals(ctx, pid: int, fd: int, own: int) -> list[str]:
    out = []
    if namespaces.own(ctx.plan.pid, "ipc"):
        out.append(f"process {pid} fd {fd}: POSIX message queue in a tree with an IPC namespace of its "
                   f"own is not supported yet")
    # reading a queue's file gives "QSIZE:... NOTIFY:... SIGNO:... NOTIFY_PID:..."; pread moves nothing
    status = os.pread(own, 256, 0).decode("ascii", "replace")
    m = NOTIFY_PID.search(status)
    if m and int(m[1]):
        out.append(f"process {pid} fd {fd}: POSIX message queue with a notification registered "
                   f"(mq_notify by process {m[1]}) is not supported")
    return out


def check(ctx, f) -> list[str]:
    if not _is_queue(f.pid, f.fd):
        return []
    try:
        own = _open_own(f.pid, f.fd)
    except DumpError as e:
        return [str(e)]
    try:
        return _refusals(ctx, f.pid, f.fd, own)
    finally:
        os.close(own)


# --- dump ------------------------------------------------------------------------------------

def dump(ctx, f):
    if not _is_queue(f.pid, f.fd):
        # an ordinary file that only looked like a queue: it is regfile's
        from . import regfile
        f.entry.kind = regfile.NAME
        return regfile.dump(ctx, f)
    name, unlinked = _split(f.link)
    msg = MESSAGE(name=name, unlinked=unlinked, mode=stat.S_IMODE(f.st.st_mode), uid=f.st.st_uid,
                  gid=f.st.st_gid)
    # our own open file of the queue: the task's flags and offset stay untouched
    own = _open_own(f.pid, f.fd)
    try:
        reasons = _refusals(ctx, f.pid, f.fd, own)
        if reasons:
            raise UnsupportedError(reasons[0])
        _, msg.maxmsg, msg.msgsize, _ = k.mq_getattr(own)
        queues = ctx.shared.setdefault(NAME, {})      # (dev, ino) -> id of the file holding the content
        key = (f.st.st_dev, f.st.st_ino)
        if key in queues:
            msg.same_queue_as = queues[key]
            return msg
        queues[key] = f.entry.id
        messages = _take_and_put_back(own, msg.msgsize, f)
    finally:
        os.close(own)
    msg.data, out = ctx.data_file(NAME)
    try:
        for data, prio in messages:
            msg.messages.add(priority=prio, size=len(data))
            _write_all(out, data)
    finally:
        os.close(out)
    return msg


def _open_own(pid: int, fd: int) -> int:
    try:
        return os.open(f"/proc/{pid}/fd/{fd}", os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        raise DumpError(f"process {pid} fd {fd}: cannot open its message queue: {e.strerror}") from None


def _take_and_put_back(own: int, msgsize: int, f) -> list[tuple[bytes, int]]:
    """Every message of the queue in receive order; the queue is refilled before returning."""
    taken: list[tuple[bytes, int]] = []
    try:
        while (m := k.mq_receive_now(own, msgsize)) is not None:
            taken.append(m)
    finally:
        _send_all(own, taken, f"process {f.pid} fd {f.fd}: message queue {f.link}", DumpError)
    return taken


def _send_all(fd: int, messages, what: str, error) -> None:
    for i, (data, prio) in enumerate(messages):
        try:
            k.mq_send_now(fd, data, prio)
        except OSError as e:
            raise error(f"{what}: could not queue message {i + 1} of {len(messages)} again "
                        f"({e.strerror}); {len(messages) - i} messages are lost") from None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


# --- restore ---------------------------------------------------------------------------------

def open(ctx, entry, msg) -> int:
    if msg.same_queue_as:
        first = ctx.files.get(msg.same_queue_as)
        if first is None or first.kind != NAME or first.id == entry.id:
            raise ImageError(f"files.img: message queue file {entry.id} points at file {msg.same_queue_as}, "
                             f"which is not the queue's first file")
        return _reopen(ctx.fd_of(first.id), entry.flags)
    messages = _validate(ctx, entry, msg)
    queue = _unlinked_queue(entry, msg, messages) if msg.unlinked else _named_queue(msg, messages)
    try:
        return _reopen(queue, entry.flags)
    finally:
        os.close(queue)


def _validate(ctx, entry, msg) -> list[tuple[bytes, int]]:
    """Check every field of the queue, then read its messages from the data image."""
    where = f"files.img: message queue file {entry.id}"
    if not msg.name or "/" in msg.name or "\0" in msg.name or len(msg.name) > NAME_MAX:
        raise ImageError(f"{where}: bad queue name {msg.name!r}")
    if not 0 < msg.maxmsg <= HARD_MSGMAX or not 0 < msg.msgsize <= HARD_MSGSIZEMAX:
        raise ImageError(f"{where}: bad attributes maxmsg {msg.maxmsg}, msgsize {msg.msgsize}")
    if msg.mode & ~0o7777:
        raise ImageError(f"{where}: bad mode {msg.mode:o}")
    if len(msg.messages) > msg.maxmsg:
        raise ImageError(f"{where}: {len(msg.messages)} messages in a queue of {msg.maxmsg}")
    for m in msg.messages:
        if m.size > msg.msgsize or m.priority >= MQ_PRIO_MAX:
            raise ImageError(f"{where}: bad message (size {m.size}, priority {m.priority})")
    if not DATA_NAME.fullmatch(msg.data):
        raise ImageError(f"{where}: bad data image name {msg.data!r}")
    total = sum(m.size for m in msg.messages)
    if ctx.images.size(msg.data) != total:
        raise ImageError(f"{msg.data}: holds {ctx.images.size(msg.data)} bytes, expected {total}")
    fd = ctx.images.open(msg.data)
    try:
        out, off = [], 0
        for m in msg.messages:
            data = os.pread(fd, m.size, off)
            if len(data) != m.size:
                raise ImageError(f"{msg.data}: short read at offset {off}")
            out.append((data, m.priority))
            off += m.size
        return out
    finally:
        os.close(fd)


def _named_queue(msg, messages) -> int:
    """An O_RDWR descriptor of the queue /NAME, created and filled, or found as it was dumped."""
    try:
        fd = k.mq_open(msg.name, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, msg.mode,
                       (msg.maxmsg, msg.msgsize))
    except OSError as e:
        if e.errno == errno.EEXIST:
            return _existing_queue(msg, messages)
        raise RestoreError(f"cannot create message queue /{msg.name}: {e.strerror}") from None
    try:
        _fill(fd, msg, messages, f"/{msg.name}")
    except BaseException:
        os.close(fd)
        k.mq_unlink(msg.name)
        raise
    return fd


def _unlinked_queue(entry, msg, messages) -> int:
    temp = f"lxc-cr-{os.getpid()}-{entry.id}"
    try:
        fd = k.mq_open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, msg.mode,
                       (msg.maxmsg, msg.msgsize))
    except OSError as e:
        raise RestoreError(f"cannot create a message queue for the unlinked /{msg.name}: {e.strerror}") from None
    k.mq_unlink(temp)            # nameless from the start, as it was
    try:
        _fill(fd, msg, messages, f"/{msg.name} (unlinked)")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _fill(fd: int, msg, messages, what: str) -> None:
    _send_all(fd, messages, f"message queue {what}", RestoreError)
    os.fchown(fd, msg.uid, msg.gid)
    os.fchmod(fd, msg.mode)          # mq_open applied our umask


def _existing_queue(msg, messages) -> int:
    """The queue outlived the dumped tree: take it if it is still the dumped one."""
    fd = k.mq_open(msg.name, os.O_RDWR | os.O_CLOEXEC)
    try:
        _, maxmsg, msgsize, count = k.mq_getattr(fd)
        same = (maxmsg, msgsize, count) == (msg.maxmsg, msg.msgsize, len(messages))
        if same and count:
            taken: list[tuple[bytes, int]] = []
            try:
                while (m := k.mq_receive_now(fd, msgsize)) is not None:
                    taken.append(m)
            finally:
                _send_all(fd, taken, f"message queue /{msg.name}", RestoreError)
            same = taken == messages
    except BaseException:
        os.close(fd)
        raise
    if not same:
        os.close(fd)
        raise RestoreError(f"message queue /{msg.name} already exists with other attributes or messages "
                           f"than the dumped one; remove it (mq_unlink) to restore the dumped queue")
    return fd


def _reopen(queue: int, flags: int) -> int:
    """A new open file of the queue, with the dumped access mode, O_NONBLOCK and O_PATH."""
    if flags & os.O_ACCMODE not in (os.O_RDONLY, os.O_WRONLY, os.O_RDWR):
        raise ImageError(f"files.img: message queue opened with bad access mode {flags:#o}")
    return os.open(f"/proc/self/fd/{queue}", (flags & (os.O_ACCMODE | os.O_NONBLOCK | os.O_PATH)) | os.O_CLOEXEC)
