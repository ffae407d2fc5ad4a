"""Pipes and FIFOs: every open end, the pipe's capacity and the bytes queued in it.

Dump: the open files of one pipe (same inode) share a pipe_id; the pipe itself
is described once: its capacity, and its queued bytes, copied with tee() into
a scratch pipe and spliced from there into pipe-N.img.  tee() only adds page
references: the task's queue is neither consumed nor reordered, so a
--leave-running dump leaves it exactly as it was.
Restore: the first open of a pipe builds it whole: an unnamed pipe with
pipe2(), a FIFO reopened by path (through one O_RDWR open, which never blocks);
capacity first, then the bytes written back; then one open file per entry
(the first reader and writer get the pipe's own two ends, any other is a new
open of the same pipe), each given its status flags; unused ends are closed.
"""
from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import re
import stat

from .. import kernel as k
from ..errors import DumpError, ImageError, UnsupportedError
from .pipe_pb2 import Pipe as MESSAGE

NAME = "pipe"
DELETED = " (deleted)"
PIPE_MAX_SIZE = "/proc/sys/fs/pipe-max-size"
ACCMODES = (os.O_RDONLY, os.O_WRONLY, os.O_RDWR)
SETTABLE = os.O_NONBLOCK                    # the status flags restore gives back with F_SETFL
REFUSED = {os.O_DIRECT: "packet mode (O_DIRECT)", fcntl.FASYNC: "signal-driven I/O (O_ASYNC)"}
DATA_NAME = re.compile(r"pipe-[0-9]+\.img")


def matches(link: str, st: os.stat_result) -> bool:
    return stat.S_ISFIFO(st.st_mode)


def _what(f) -> str:
    return "pipe" if f.link.startswith("pipe:") else f"FIFO {f.link}"


def _refusals(f, flags: int) -> list[str]:
    return [f"process {f.pid} fd {f.fd}: {_what(f)} in {why} is not supported"
            for bit, why in REFUSED.items() if flags & bit]


def check(ctx, f) -> list[str]:
    return _refusals(f, int(f.info["flags"], 8))


# --- dump ----------------------------------------------------------------------------------

def dump(ctx, f):
    reasons = _refusals(f, f.entry.flags)
    if reasons:
        raise UnsupportedError(reasons[0])
    pipes = ctx.shared.setdefault(NAME, {})
    key = (f.st.st_dev, f.st.st_ino)
    if key not in pipes:
        pipes[key] = _dump_pipe(ctx, f, len(pipes) + 1)
    msg = MESSAGE()
    msg.CopyFrom(pipes[key])
    return msg


def _dump_pipe(ctx, f, pipe_id: int):
    """The pipe behind f, described once: its name if it is a FIFO, capacity, queued bytes."""
    msg = MESSAGE(pipe_id=pipe_id)
    if not f.link.startswith("pipe:"):
        msg.fifo_mode = f.st.st_mode
        msg.fifo_path = f.link
        if f.link.endswith(DELETED) and f.st.st_nlink == 0:
            msg.fifo_path = f.link[:-len(DELETED)]
            msg.fifo_unlinked = True
        if not msg.fifo_path.startswith("/"):
            raise UnsupportedError(f"process {f.pid} fd {f.fd}: FIFO {f.link} has no path we can reopen")
    local = ctx.local_fd(f)
    msg.capacity = fcntl.fcntl(local, k.F_GETPIPE_SZ)
    queued = k.fionread(local)
    if queued:
        msg.data, msg.data_size = _save_queue(ctx, f, local, msg.capacity, queued)
    return msg


def _save_queue(ctx, f, local: int, capacity: int, queued: int) -> tuple[str, int]:
    """Copy the queued bytes into a data image without taking them out of the pipe."""
    # tee() needs an end open for reading; the task may only hold the write end
    reader = local
    if f.entry.flags & os.O_ACCMODE == os.O_WRONLY:
        reader = os.open(f"/proc/self/fd/{local}", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    scratch_r, scratch_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    name, out = ctx.data_file(NAME)
    try:
        # as many slots as the source: every buffer it holds fits, however full each one is
        set_capacity(scratch_w, capacity)
        copied = 0
        while copied < queued:
            n = k.tee(reader, scratch_w, queued - copied, k.SPLICE_F_NONBLOCK)
            if n == 0:
                break
            copied += n
        if copied != queued:
            raise DumpError(f"process {f.pid} fd {f.fd}: copied {copied} of the {queued} bytes "
                            f"queued in {_what(f)}")
        written = 0
        while written < copied:
            written += os.splice(scratch_r, out, copied - written)
    finally:
        os.close(out)
        os.close(scratch_r)
        os.close(scratch_w)
        if reader != local:
            os.close(reader)
    return name, copied


# --- restore -------------------------------------------------------------------------------

def open(ctx, entry, msg) -> int:
    built = ctx.shared.setdefault(NAME, {})
    if entry.id not in built:
        built.update(_build(ctx, msg, _members(ctx, msg)))
    return built.pop(entry.id)


def _members(ctx, msg) -> list:
    """Every entry of the same pipe, checked to describe it the same way."""
    out = []
    for e in ctx.files.values():
        if e.kind != NAME:
            continue
        d = MESSAGE()
        if not e.detail.Unpack(d):
            raise ImageError(f"files.img: file {e.id} detail is not a Pipe")
        if d.pipe_id != msg.pipe_id or e.inherit_key in getattr(ctx.plan, "inherit_fds", {}):
            continue                # another pipe, or an end the caller hands in (engine/inherit.py)
        if d != msg:
            raise ImageError(f"files.img: file {e.id} describes pipe {msg.pipe_id} differently")
        if e.flags & os.O_ACCMODE not in ACCMODES:
            raise ImageError(f"files.img: file {e.id} has a bad access mode")
        out.append(e)
    return out


def _validate(ctx, msg) -> None:
    if msg.pipe_id == 0:
        raise ImageError("files.img: pipe without an id")
    cap = msg.capacity
    if not (k.PAGE_SIZE <= cap <= 1 << 31 and cap & (cap - 1) == 0):
        raise ImageError(f"files.img: pipe {msg.pipe_id} has a bad capacity {cap}")
    if msg.data_size > cap:
        raise ImageError(f"files.img: pipe {msg.pipe_id} holds more bytes than its capacity")
    if msg.data or msg.data_size:
        if not DATA_NAME.fullmatch(msg.data):
            raise ImageError(f"files.img: pipe {msg.pipe_id} has a bad data image name {msg.data!r}")
        size = ctx.images.size(msg.data)
        if size != msg.data_size:
            raise ImageError(f"{msg.data}: holds {size} bytes, expected {msg.data_size}")
    if msg.fifo_path and (not msg.fifo_path.startswith("/") or not stat.S_ISFIFO(msg.fifo_mode)):
        raise ImageError(f"files.img: pipe {msg.pipe_id} has a bad FIFO path or mode")


def _build(ctx, msg, members: list) -> dict[int, int]:
    """Make the pipe, fill it, and open one file per member; returns entry id -> fd."""
    _validate(ctx, msg)
    if msg.fifo_path:
        hub = _open_fifo(msg, ctx.path(msg.fifo_path))
        ends = {}
    else:
        r, w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        hub, ends = w, {os.O_RDONLY: r, os.O_WRONLY: w}
    out: dict[int, int] = {}
    try:
        set_capacity(hub, msg.capacity)
        if fcntl.fcntl(hub, k.F_GETPIPE_SZ) != msg.capacity:
            raise ImageError(f"pipe {msg.pipe_id}: capacity {msg.capacity} could not be set")
        if msg.data_size:
            _refill(ctx, msg, hub)
        for e in members:
            mode = e.flags & os.O_ACCMODE
            fd = ends.pop(mode, None)
            if fd is None:
                # another open of the same pipe; O_NONBLOCK: an open never waits for a partner
                fd = os.open(f"/proc/self/fd/{hub}", mode | os.O_NONBLOCK | os.O_CLOEXEC)
            out[e.id] = fd
            status = fcntl.fcntl(fd, fcntl.F_GETFL)
            fcntl.fcntl(fd, fcntl.F_SETFL, (status & ~SETTABLE) | (e.flags & SETTABLE))
    except BaseException:
        for fd in out.values():
            os.close(fd)
        for fd in ends.values():
            os.close(fd)
        if msg.fifo_path:
            os.close(hub)
        raise
    # ends no task holds go now: a reader must see end-of-file where it did before
    for fd in ends.values():
        os.close(fd)
    if msg.fifo_path:
        os.close(hub)
    return out


def _open_fifo(msg, path: str) -> int:
    """The FIFO opened read-write (at path, msg.fifo_path as we reach it): the pipe lives
    (with its bytes) while we hold it."""
    flags = os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        if msg.fifo_unlinked:
            os.mkfifo(path, stat.S_IMODE(msg.fifo_mode))
            try:
                fd = os.open(path, flags)
            finally:
                os.unlink(path)
            os.fchmod(fd, stat.S_IMODE(msg.fifo_mode))      # mkfifo went through our umask
        else:
            fd = os.open(path, flags)
    except OSError as e:
        raise ImageError(f"cannot {'recreate' if msg.fifo_unlinked else 'reopen'} FIFO {msg.fifo_path}: "
                         f"{e.strerror}") from None
    if not stat.S_ISFIFO(os.fstat(fd).st_mode):
        os.close(fd)
        raise ImageError(f"{path} is no longer a FIFO")
    return fd


def _refill(ctx, msg, w: int) -> None:
    """Queue the saved bytes again.  Through write(), not splice(): written bytes land in
    ordinary buffers that later writes can fill up, as the task's own writes did, so the
    pipe takes exactly as many more bytes as it would have."""
    src = ctx.images.open(msg.data)
    try:
        with mmap.mmap(src, msg.data_size, prot=mmap.PROT_READ) as m, memoryview(m) as view:
            done = 0
            while done < msg.data_size:
                done += os.write(w, view[done:])
    except BlockingIOError:
        raise ImageError(f"pipe {msg.pipe_id}: the saved bytes do not fit in it") from None
    finally:
        os.close(src)


def set_capacity(fd: int, size: int) -> None:
    """F_SETPIPE_SZ; above fs.pipe-max-size (which needs CAP_SYS_RESOURCE) the limit is
    raised for the moment of the call and put back."""
    try:
        fcntl.fcntl(fd, k.F_SETPIPE_SZ, size)
    except PermissionError:
        with _pipe_max_size_at_least(size):
            fcntl.fcntl(fd, k.F_SETPIPE_SZ, size)


@contextlib.contextmanager
def _pipe_max_size_at_least(size: int):
    old = int(_read_sysctl(PIPE_MAX_SIZE))
    if old >= size:
        yield
        return
    _write_sysctl(PIPE_MAX_SIZE, size)
    try:
        yield
    finally:
        _write_sysctl(PIPE_MAX_SIZE, old)


def _read_sysctl(path: str) -> str:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, 64).decode()
    finally:
        os.close(fd)


def _write_sysctl(path: str, value: int) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, str(value).encode())
        finally:
            os.close(fd)
    except OSError as e:
        raise OSError(e.errno, f"cannot set {path} to {value}: {e.strerror}") from None
