"""memfd: open files of memfds, and the memfd objects themselves (for mappings too).

A memfd object is saved once, with the shared memory of the dump (shmem.img):
its name, size, mode, owner, seals and content, whether the tree holds it as
an open file, a mapping or both.  engine/memory.py calls describe() / create()
/ seal_early() / seal_late() for those objects; this module's dump() and open()
handle the open files, which refer to the object by its shmem id.
Restore: the object is made with memfd_create and filled before the mappings
are built; an open file is a new open of it through /proc/self/fd.  Seals go on
in two steps: before the mappings, every seal but F_SEAL_FUTURE_WRITE (a
write-sealed memfd only takes mappings that cannot become writable, which is
how the task's were made); after every task has built its mappings (writable
ones made before F_SEAL_FUTURE_WRITE stay writable), F_SEAL_FUTURE_WRITE and,
with it, F_SEAL_SEAL.
"""
from __future__ import annotations

import fcntl
import os
import stat

from .. import kernel as k
from ..errors import ImageError, UnsupportedError
from .memfd_pb2 import MemFd as MESSAGE

NAME = "memfd"
PREFIX = "/memfd:"
DELETED = " (deleted)"
NAME_MAX = 249                                  # MFD_NAME_MAX_LEN
F_SEAL_SEAL, F_SEAL_SHRINK, F_SEAL_GROW, F_SEAL_WRITE, F_SEAL_FUTURE_WRITE, F_SEAL_EXEC = 1, 2, 4, 8, 16, 32
ALL_SEALS = 0x3F
MFD_CLOEXEC, MFD_ALLOW_SEALING, MFD_NOEXEC_SEAL, MFD_EXEC = 1, 2, 8, 16
_device: list[int] = []


def matches(link: str, st: os.stat_result) -> bool:
    return link.startswith(PREFIX) and link.endswith(DELETED) and stat.S_ISREG(st.st_mode)


def is_memfd(path: str, st: os.stat_result) -> bool:
    """Is this "/memfd:NAME" a memfd of ours to rebuild: one on the kernel's internal shmem
    mount (the device every memfd but hugetlb ones lives on)?"""
    if not _device:
        probe = os.memfd_create("lxc-cr-probe", os.MFD_CLOEXEC)
        _device.append(os.fstat(probe).st_dev)
        os.close(probe)
    return path.startswith(PREFIX) and st.st_dev == _device[0]


def refuse_unless_memfd(path: str, st: os.stat_result, what: str) -> None:
    if path.startswith(PREFIX) and not is_memfd(path, st):
        raise UnsupportedError(f"{what}: memfd {path} is not on shmem (a hugetlb memfd?); not supported")


# --- open files ----------------------------------------------------------------------------

def check(ctx, f) -> list[str]:
    try:
        refuse_unless_memfd(f.link[:-len(DELETED)], f.st, f"process {f.pid} fd {f.fd}")
    except UnsupportedError as e:
        return [str(e)]
    return []


def dump(ctx, f):
    what = f"process {f.pid} fd {f.fd}"
    if ctx.memory is None:
        raise UnsupportedError(f"{what}: memfd {f.link} cannot be dumped here")
    path = f.link[:-len(DELETED)]
    refuse_unless_memfd(path, f.st, what)
    # a new open file of our own: the object's content is read through it, not through the task's
    fd = os.open(f"/proc/{f.pid}/fd/{f.fd}", os.O_RDONLY | os.O_CLOEXEC)
    obj = ctx.memory.shmem_object_of(fd, what, path)
    return MESSAGE(shmem_id=obj.id, name=path[len(PREFIX):])


def open(ctx, entry, msg) -> int:
    src = ctx.shmem_fds.get(msg.shmem_id)
    if src is None:
        raise ImageError(f"files.img: memfd {entry.id} names unknown memory object {msg.shmem_id}")
    flags = entry.flags & ~(os.O_CREAT | os.O_EXCL | os.O_TRUNC | os.O_NOCTTY)
    fd = os.open(f"/proc/self/fd/{src}", flags | os.O_CLOEXEC)
    if entry.pos:
        os.lseek(fd, entry.pos, os.SEEK_SET)
    return fd


# --- the objects (called by engine/memory.py) ------------------------------------------------

def describe(fd: int, entry) -> None:
    """Fill a shmem.img object with what makes it a memfd."""
    st = os.fstat(fd)
    entry.memfd = True
    entry.seals = fcntl.fcntl(fd, k.F_GET_SEALS)
    entry.uid, entry.gid = st.st_uid, st.st_gid


def create(obj) -> int:
    """A new, empty memfd like the one shmem.img describes; returns an O_RDWR fd."""
    name = obj.path[len(PREFIX):]
    if not obj.path.startswith(PREFIX) or len(name.encode(errors="surrogateescape")) > NAME_MAX or "\0" in name:
        raise ImageError(f"shmem.img: object {obj.id} has a bad memfd name {obj.path!r}")
    if obj.seals & ~ALL_SEALS:
        raise ImageError(f"shmem.img: object {obj.id} has unknown seals {obj.seals:#x}")
    # MFD_NOEXEC_SEAL is the only way to F_SEAL_EXEC... and to mode 0666; MFD_EXEC keeps
    # fs.memfd_noexec from sealing one that was not
    base = MFD_CLOEXEC | MFD_ALLOW_SEALING
    exec_flag = MFD_NOEXEC_SEAL if obj.seals & F_SEAL_EXEC else MFD_EXEC
    try:
        fd = os.memfd_create(name, base | exec_flag)
    except OSError:
        fd = os.memfd_create(name, base)
    try:
        st = os.fstat(fd)
        if stat.S_IMODE(st.st_mode) != obj.mode & 0o7777:
            os.fchmod(fd, obj.mode & 0o7777)
        if (st.st_uid, st.st_gid) != (obj.uid, obj.gid):
            os.fchown(fd, obj.uid, obj.gid)
    except OSError as e:
        os.close(fd)
        raise ImageError(f"memfd {obj.path}: cannot set its mode or owner: {e.strerror}") from None
    return fd


def _late(seals: int) -> int:
    return (F_SEAL_FUTURE_WRITE | (seals & F_SEAL_SEAL)) if seals & F_SEAL_FUTURE_WRITE else 0


def seal_early(fd: int, obj) -> None:
    """Seals that must be there before the mappings are built (content already in)."""
    _add_seals(fd, obj.seals & ~_late(obj.seals), obj)


def seal_late(fd: int, obj) -> None:
    """Seals that must wait until every mapping exists."""
    _add_seals(fd, _late(obj.seals), obj)


def _add_seals(fd: int, seals: int, obj) -> None:
    if not seals:
        return
    try:
        fcntl.fcntl(fd, k.F_ADD_SEALS, seals)
    except OSError as e:
        raise ImageError(f"memfd {obj.path}: cannot add seals {seals:#x}: {e.strerror}") from None
