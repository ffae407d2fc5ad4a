"""File descriptor tables and open file descriptions, and the registry of kinds.

Dump: every fd of every task is matched to an open file description (two fds
share one when kcmp(KCMP_FILE) says so); each description is described once
by the kind module that recognises it, in files.img.
Restore: the orchestrator opens every description once, before the tree is
forked, at fd numbers above all the dumped ones; each task then dup3()s the
ones it had to their numbers, so that shared descriptions stay shared.
"""
from __future__ import annotations

import fcntl
import logging
import os
import stat as st_mod
from dataclasses import dataclass, field

from . import kernel as k
from . import proc
from .errors import ImageError, UnsupportedError

log = logging.getLogger("lxc_cr.files")

O_CLOEXEC = 0o2000000
O_LARGEFILE = 0o100000


def _pb():
    from .proto import images_pb2
    return images_pb2


def kinds():
    from .kinds import KINDS
    return KINDS


@dataclass
class DumpContext:
    """What a kind module's dump may use: the image dir and the dump's options."""
    images: object
    shell_job: bool
    next_data_id: int = 0

    def data_file(self, prefix: str) -> tuple[str, int]:
        """A new raw data image (e.g. the content of an unlinked file)."""
        self.next_data_id += 1
        name = f"{prefix}-{self.next_data_id}.img"
        return name, self.images.create(name)


@dataclass
class _Open:
    entry: object
    pid: int
    fd: int


@dataclass
class FileTable:
    """Dump-side index of open file descriptions across the whole tree."""
    ctx: DumpContext
    entries: list = field(default_factory=list)
    by_inode: dict = field(default_factory=dict)

    def dump_fds(self, pid: int) -> list:
        pb = _pb()
        out = []
        for fd in proc.fds(pid):
            link = proc.fd_link(pid, fd)
            info = proc.fdinfo(pid, fd)
            if "lock" in info:
                raise UnsupportedError(f"process {pid} fd {fd}: holds a file lock ({info['lock']}); "
                                       f"file locks are not supported yet")
            flags = int(info["flags"], 8)
            entry = self._entry_for(pid, fd, link, flags, info)
            out.append(pb.Fd(fd=fd, file_id=entry.id, cloexec=bool(flags & O_CLOEXEC)))
        return out

    def _entry_for(self, pid: int, fd: int, link: str, flags: int, info: dict):
        try:
            st = os.stat(f"/proc/{pid}/fd/{fd}")
        except OSError as e:
            raise UnsupportedError(f"process {pid} fd {fd}: cannot stat {link}: {e.strerror}") from None
        key = (st.st_dev, st.st_ino)
        for other in self.by_inode.get(key, []):
            if k.kcmp_file(pid, fd, other.pid, other.fd) == 0:
                return other.entry
        kind = _kind_for(link, st)
        if kind is None:
            raise UnsupportedError(f"process {pid} fd {fd}: {describe(link, st)} is not supported")
        pb = _pb()
        entry = pb.FileEntry(id=len(self.entries) + 1, kind=kind.NAME,
                             flags=flags & ~(O_CLOEXEC | O_LARGEFILE), pos=int(info.get("pos", 0)))
        detail = kind.dump(self.ctx, pid, fd, link, st, entry)
        entry.detail.Pack(detail)
        self.entries.append(entry)
        self.by_inode.setdefault(key, []).append(_Open(entry, pid, fd))
        return entry

    def message(self):
        return _pb().Files(files=self.entries)


def _kind_for(link: str, st: os.stat_result):
    for kind in kinds():
        if kind.matches(link, st):
            return kind
    return None


def describe(link: str, st: os.stat_result) -> str:
    """A plain name for an object we may not support: 'pipe', 'eventfd', 'socket', ..."""
    if link.startswith("anon_inode:"):
        return link[len("anon_inode:"):].strip("[]") or "anonymous inode"
    for prefix in ("pipe", "socket", "net", "mnt", "pidfd"):
        if link.startswith(prefix + ":"):
            return f"{prefix} {link}"
    if st_mod.S_ISFIFO(st.st_mode):
        return f"FIFO {link}"
    if st_mod.S_ISSOCK(st.st_mode):
        return f"socket {link}"
    if st_mod.S_ISCHR(st.st_mode):
        return f"character device {link} ({os.major(st.st_rdev)}:{os.minor(st.st_rdev)})"
    if st_mod.S_ISBLK(st.st_mode):
        return f"block device {link}"
    return link


# --- restore -----------------------------------------------------------------------------

@dataclass
class RestoreContext:
    """What a kind module's open() may use."""
    images: object
    shell_job: bool


def open_all(ctx: RestoreContext, files_msg, base: int) -> dict[int, int]:
    """Open every file description at a fd >= base; returns file id -> fd."""
    table = {k_.NAME: k_ for k_ in kinds()}
    out: dict[int, int] = {}
    for entry in files_msg.files:
        kind = table.get(entry.kind)
        if kind is None:
            raise ImageError(f"files.img: file {entry.id} has unknown kind {entry.kind!r}")
        if entry.id in out or entry.id == 0:
            raise ImageError(f"files.img: duplicate or zero file id {entry.id}")
        if entry.pos < 0:
            raise ImageError(f"files.img: file {entry.id} has a negative position")
        detail = kind.MESSAGE()
        if not entry.detail.Unpack(detail):
            raise ImageError(f"files.img: file {entry.id} detail is not a {kind.MESSAGE.__name__}")
        fd = kind.open(ctx, entry, detail)
        out[entry.id] = move_above(fd, base)
    return out


def move_above(fd: int, base: int) -> int:
    """The same open file at the lowest free fd >= base (close-on-exec: exec never sees it)."""
    if fd >= base:
        return fd
    new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, base)
    os.close(fd)
    return new


def new_deleted_file(path: str, mode: int) -> int:
    """A file that looks like the deleted `path` did: created there and unlinked again
    (so /proc shows "path (deleted)"), or, if the name is taken or its directory is
    gone, a nameless file as close to it as still exists.  Returns an O_RDWR fd."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode & 0o7777)
        os.unlink(path)
        return fd
    except OSError:
        pass
    d = os.path.dirname(path)
    while not os.path.isdir(d):
        d = os.path.dirname(d)
    try:
        return os.open(d, os.O_RDWR | os.O_TMPFILE | os.O_CLOEXEC, mode & 0o7777)
    except OSError as e:
        raise ImageError(f"cannot recreate deleted file {path} in {d}: {e.strerror}") from None


def validate_fds(task, files_ids: set[int], where: str) -> None:
    seen = set()
    for f in task.fds:
        if not (0 <= f.fd < 1 << 20) or f.fd in seen:
            raise ImageError(f"{where}: bad or duplicate fd {f.fd}")
        if f.file_id not in files_ids:
            raise ImageError(f"{where}: fd {f.fd} points at unknown file {f.file_id}")
        seen.add(f.fd)


def install(task, opened: dict[int, int]) -> None:
    """In the restoring task: put every file at its number (sources are all above the targets)."""
    for f in task.fds:
        os.dup2(opened[f.file_id], f.fd, inheritable=not f.cloexec)
