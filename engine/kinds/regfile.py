"""Regular files and directories: path, flags, position; unlinked files with their content."""
from __future__ import annotations

import os
import stat

from .. import kernel as k
from .. import mounts
from ..errors import ImageError, UnsupportedError
from ..files import new_deleted_file
from .regfile_pb2 import RegFile as MESSAGE

NAME = "regfile"
DELETED = " (deleted)"


def matches(link: str, st: os.stat_result) -> bool:
    return link.startswith("/") and (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode))


def dump(ctx, f):
    if f.link.startswith("/memfd:"):
        raise UnsupportedError(f"process {f.pid} fd {f.fd}: memfd {f.link} is not supported")
    st = f.st
    msg = MESSAGE(path=f.link, mode=st.st_mode, size=st.st_size,
                  outside_mounts=not mounts.in_tree(ctx, int(f.info.get("mnt_id", -1))))
    if st.st_nlink == 0 and f.link.endswith(DELETED) and stat.S_ISREG(st.st_mode):
        if st.st_size > ctx.plan.ghost_limit:
            raise UnsupportedError(f"process {f.pid} fd {f.fd}: unlinked file {f.link} is larger than the "
                                   f"ghost limit ({ctx.plan.ghost_limit} bytes; see --ghost-limit)")
        msg.path = f.link[:-len(DELETED)]
        msg.unlinked = True
        name, out = ctx.data_file("ghost")
        # a new open file of our own: reading it moves no offset of the task's
        src = os.open(f"/proc/{f.pid}/fd/{f.fd}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            k.copy_range(src, 0, out, 0, st.st_size)
        finally:
            os.close(src)
            os.close(out)
        msg.data = name
    return msg


def open(ctx, entry, msg) -> int:
    if not msg.path.startswith("/"):
        raise ImageError(f"files.img: file {entry.id} has a relative path")
    flags = entry.flags & ~(os.O_CREAT | os.O_EXCL | os.O_TRUNC)
    if msg.unlinked:
        fd = _recreate_unlinked(ctx, msg, flags)
    else:
        try:
            fd = os.open(msg.path if msg.outside_mounts else ctx.path(msg.path), flags | os.O_CLOEXEC)
        except OSError as e:
            raise ImageError(f"cannot reopen {msg.path}: {e.strerror}") from None
    st = os.fstat(fd)
    if stat.S_IFMT(st.st_mode) != stat.S_IFMT(msg.mode):
        os.close(fd)
        raise ImageError(f"{msg.path} is no longer the same type of file")
    if entry.pos and not entry.flags & os.O_PATH:
        os.lseek(fd, entry.pos, os.SEEK_SET)
    return fd


def _recreate_unlinked(ctx, msg, flags: int) -> int:
    """Rebuild the unlinked file with its content and open it as the task had it."""
    if not msg.data.startswith("ghost-") or "/" in msg.data:
        raise ImageError(f"files.img: bad data image name {msg.data!r}")
    size = ctx.images.size(msg.data)
    if size != msg.size:
        raise ImageError(f"{msg.data}: holds {size} bytes, expected {msg.size}")
    tmp = new_deleted_file(ctx.path(msg.path), stat.S_IMODE(msg.mode))
    try:
        src = ctx.images.open(msg.data)
        try:
            k.copy_range(src, 0, tmp, 0, size)
        finally:
            os.close(src)
        return os.open(f"/proc/self/fd/{tmp}", flags | os.O_CLOEXEC)
    finally:
        os.close(tmp)
