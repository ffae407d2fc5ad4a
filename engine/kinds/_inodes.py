"""Finding again the inodes that notification groups (inotify, fanotify) watch.

Not a kind: helpers shared by kinds/inotify.py and kinds/fanotify.py.
fdinfo names each watched inode by its device, number and file handle.
Dump: the handle is opened (open_by_handle_at through a mount of the same file
system) to learn where the inode lives; an inode that was deleted but is still
open in the tree is tied to that open file instead, whose kind rebuilds it.
Restore: the inode is opened by handle, else by the path it had; a deleted one
through the rebuilt open file.  The result is an O_PATH fd, watched through
/proc/self/fd/N.
"""
from __future__ import annotations

import logging
import os
import re

from .. import kernel as k
from .. import proc
from ..errors import ImageError, UnsupportedError

log = logging.getLogger("lxc_cr.kinds")

O_PATH = 0o10000000
FIELD = re.compile(r"([a-z_-]+):(\S+)")


def marks(pid: int, fd: int, prefix: str) -> list[dict[str, str]]:
    """The fdinfo lines of a notification fd that start with `prefix` (e.g. 'inotify wd:'), as fields."""
    text = proc.read_bytes(f"/proc/{pid}/fdinfo/{fd}").decode()
    return [dict(FIELD.findall(line)) for line in text.splitlines() if line.startswith(prefix)]


def user_dev(s_dev: int) -> int:
    """The kernel's dev_t (major << 20 | minor, as fdinfo shows it) as st_dev."""
    return os.makedev(s_dev >> 20, s_dev & 0xFFFFF)


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), field)


def mounts(pid="self") -> list[tuple[int, int, str]]:
    """(mount id, st_dev, mount point) of every mount pid sees."""
    out = []
    for line in proc.read_bytes(f"/proc/{pid}/mountinfo").decode("utf-8", "surrogateescape").splitlines():
        f = line.split()
        major, minor = f[2].split(":")
        out.append((int(f[0]), os.makedev(int(major), int(minor)), _unescape(f[4])))
    return out


def mount_point_of_dev(dev: int, pid="self") -> str | None:
    for _, d, point in mounts(pid):
        if d == dev:
            return point
    return None


def open_handle(s_dev: int, handle_type: int, handle: bytes) -> int | None:
    """An O_PATH fd on the inode behind a file handle, or None if it cannot be found."""
    point = mount_point_of_dev(user_dev(s_dev))
    if point is None:
        return None
    try:
        mount_fd = os.open(point, os.O_RDONLY | os.O_CLOEXEC)      # (open_by_handle_at refuses O_PATH)
    except OSError:
        return None
    try:
        return k.open_by_handle_at(mount_fd, handle_type, handle, O_PATH | os.O_CLOEXEC)
    except OSError:
        return None
    finally:
        os.close(mount_fd)


def locate(ctx, f, mark: dict[str, str], msg) -> None:
    """Fill msg (path, ino, s_dev, handle_type, handle, file) for the inode of one mark."""
    what = f"process {f.pid} fd {f.fd}"
    msg.ino, msg.s_dev = int(mark["ino"], 16), int(mark["sdev"], 16)
    if "f_handle" not in mark:
        raise UnsupportedError(f"{what}: watches inode {msg.ino:#x} of a file system without file handles")
    msg.handle_type, msg.handle = int(mark["fhandle-type"]), bytes.fromhex(mark["f_handle"])
    fd = open_handle(msg.s_dev, msg.handle_type, msg.handle)
    if fd is None:
        # file systems refuse handles of deleted inodes (ESTALE): look for it among open files
        msg.file = _open_file_of(ctx, user_dev(msg.s_dev), msg.ino, what)
        return
    try:
        st = os.fstat(fd)
        msg.path = os.readlink(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)
    if st.st_nlink == 0:
        msg.file = _open_file_of(ctx, st.st_dev, st.st_ino, what)


def _open_file_of(ctx, dev: int, ino: int, what: str) -> int:
    """The FileEntry id of a file of the tree open on this (deleted) inode."""
    for pid in sorted(ctx.tree):
        try:
            fds = proc.fds(pid)
        except (ProcessLookupError, PermissionError):
            continue
        for fd in fds:
            try:
                other = os.stat(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if (other.st_dev, other.st_ino) == (dev, ino):
                return ctx.table.entry_for(pid, fd).id
    raise UnsupportedError(f"{what}: cannot find watched inode {ino:#x} on device "
                           f"{os.major(dev)}:{os.minor(dev)}: no handle opens it and no task of the tree "
                           f"holds it open")


def reopen(ctx, msg, where: str) -> int:
    """An O_PATH fd on the inode a mark watched (see locate)."""
    if msg.file:
        return os.open(f"/proc/self/fd/{ctx.fd_of(msg.file)}", O_PATH | os.O_CLOEXEC)
    if msg.handle:
        fd = open_handle(msg.s_dev, msg.handle_type, msg.handle)
        if fd is not None:
            return fd
    if not msg.path.startswith("/"):
        raise ImageError(f"{where}: watched inode {msg.ino:#x} has no path")
    try:
        fd = os.open(ctx.path(msg.path), O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        raise ImageError(f"{where}: cannot find watched {msg.path}: {e.strerror}") from None
    st = os.fstat(fd)
    if st.st_ino != msg.ino:
        log.warning("%s: %s is another inode now (%#x, was %#x); watching it", where, msg.path, st.st_ino, msg.ino)
    return fd
