"""File descriptor tables and open file descriptions, and the registry of kinds.

Dump: every fd of every task is matched to an open file description (two fds
share one when kcmp(KCMP_FILE) says so); each description is described once
by the kind module that recognises it, in files.img.
Restore: the orchestrator opens every description once, before the tree is
forked, at fd numbers above all the dumped ones; each task then dup3()s the
ones it had to their numbers, so that shared descriptions stay shared.  Kinds
that need the task itself (its fd numbers, its PID) finish in `in_task`.

A kind module (engine/kinds/) provides:
    NAME                  the kind's name in files.img
    MESSAGE               its protobuf detail message
    matches(link, st)     does this open file belong to the kind?
    dump(ctx, f) -> detail            f: a FileRef; may call ctx.* helpers
    open(ctx, entry, detail) -> fd    in the orchestrator, before the tree exists
and optionally:
    check(ctx, f) -> [reasons]        for --check-only: why this file would be refused
                                      (beyond its type), without freezing anything
    in_task(ctx, entry, detail, fds)  in the first restoring task holding the
                                      file, after its fds are installed; fds are
                                      the task's numbers for this file
    IN_EVERY_HOLDER = True            in_task runs in every task holding the file, each
                                      building its own object (what only exists per task)
"""
from __future__ import annotations

import fcntl
import logging
import os
import stat as st_mod
from dataclasses import dataclass, field

from . import kernel as k
from . import proc
from .errors import CRError, ImageError, UnsupportedError

log = logging.getLogger("lxc_cr.files")

O_CLOEXEC = 0o2000000
O_LARGEFILE = 0o100000


def _pb():
    from .proto import images_pb2
    return images_pb2


def kinds():
    from .kinds import KINDS
    return KINDS


def kind_named(name: str):
    for kind in kinds():
        if kind.NAME == name:
            return kind
    return None


@dataclass
class FileRef:
    """One open file of a frozen task, as a kind module's dump sees it."""
    pid: int            # the task holding it (our own PID for files found in flight)
    fd: int             # its number there
    link: str           # readlink of /proc/PID/fd/FD
    st: os.stat_result  # stat of the file it refers to
    info: dict          # /proc/PID/fdinfo/FD
    entry: object       # the FileEntry being filled (id, flags and pos are set)


@dataclass
class DumpContext:
    """What a kind module's dump may use."""
    images: object
    plan: object
    tree: set                                   # PIDs of the dumped tree
    table: "FileTable | None" = None
    next_data_id: int = 0
    _local: dict = field(default_factory=dict)  # (pid, fd) -> our fd on the same open file
    shared: dict = field(default_factory=dict)  # per-kind scratch, e.g. a pipe's data already saved
    memory: object = None                       # the MemoryDumper (memfds share its memory objects)
    # undo steps for what dumping changed in the tasks' files (TCP repair mode...), run
    # by release() when the tree goes on running (--leave-running, or a failed dump)
    on_release: list = field(default_factory=list)

    @property
    def shell_job(self) -> bool:
        return self.plan.shell_job

    def data_file(self, prefix: str) -> tuple[str, int]:
        """A new raw data image (the content of an unlinked file, queued bytes...)."""
        self.next_data_id += 1
        name = f"{prefix}-{self.next_data_id}.img"
        return name, self.images.create(name)

    def local_fd(self, f: FileRef) -> int:
        """Our own fd on the task's open file description (pidfd_getfd): it shares
        offsets and queues, so read nothing from it that the task would miss."""
        if f.pid == os.getpid():
            return f.fd
        key = (f.pid, f.fd)
        if key not in self._local:
            pidfd = k.pidfd_open(f.pid)
            try:
                self._local[key] = k.pidfd_getfd(pidfd, f.fd)
            finally:
                os.close(pidfd)
        return self._local[key]

    def file_id_of_local(self, fd: int) -> int:
        """Dump a file we hold ourselves (e.g. one received from a queue) and return its id."""
        return self.table.entry_for(os.getpid(), fd).id

    def keep(self, fd: int) -> None:
        """An fd we received (a file in flight) that files.img refers to: open until close()."""
        self._local[("kept", fd)] = fd

    def release(self) -> None:
        """The tree goes on running: undo, newest first, what kinds changed in its files."""
        while self.on_release:
            undo = self.on_release.pop()
            try:
                undo()
            except (OSError, CRError) as e:
                log.warning("could not put back a file of the tree: %s", e)

    def close(self) -> None:
        for fd in self._local.values():
            os.close(fd)
        self._local.clear()


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

    def __post_init__(self):
        self.ctx.table = self

    def dump_fds(self, pid: int) -> list:
        pb = _pb()
        out = []
        for fd in proc.fds(pid):
            entry = self.entry_for(pid, fd)
            cloexec = bool(int(proc.fdinfo(pid, fd)["flags"], 8) & O_CLOEXEC)
            out.append(pb.Fd(fd=fd, file_id=entry.id, cloexec=cloexec))
        return out

    def entry_for(self, pid: int, fd: int):
        """The FileEntry of (pid, fd): an existing one if the open file is shared, else a new one."""
        link = proc.fd_link(pid, fd)
        info = proc.fdinfo(pid, fd)
        try:
            st = os.stat(f"/proc/{pid}/fd/{fd}")
        except OSError as e:
            raise UnsupportedError(f"process {pid} fd {fd}: cannot stat {link}: {e.strerror}") from None
        key = (st.st_dev, st.st_ino)
        for other in self.by_inode.get(key, []):
            if k.kcmp_file(pid, fd, other.pid, other.fd) == 0:
                return other.entry
        kind = kind_for(link, st)
        if kind is None:
            raise UnsupportedError(f"process {pid} fd {fd}: {describe(link, st)} is not supported")
        if "lock" in info:
            _check_locks(pid, fd, info)
        pb = _pb()
        flags = int(info["flags"], 8)
        entry = pb.FileEntry(id=len(self.entries) + 1, kind=kind.NAME,
                             flags=flags & ~(O_CLOEXEC | O_LARGEFILE), pos=int(info.get("pos", 0)))
        # registered before dump(): a kind may look up files that point back at this one
        self.entries.append(entry)
        self.by_inode.setdefault(key, []).append(_Open(entry, pid, fd))
        detail = kind.dump(self.ctx, FileRef(pid, fd, link, st, info, entry))
        entry.detail.Pack(detail)
        return entry

    def message(self):
        return _pb().Files(files=self.entries)


def _check_locks(pid: int, fd: int, info: dict) -> None:
    raise UnsupportedError(f"process {pid} fd {fd}: holds a file lock ({info['lock']}); "
                           f"file locks are not supported yet")


def kind_for(link: str, st: os.stat_result):
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
    """What a kind module's open() and in_task() may use."""
    images: object
    plan: object
    files: dict                                   # file id -> FileEntry
    base_fd: int                                  # every fd we open goes at or above this
    shared: dict = field(default_factory=dict)    # per-kind scratch, e.g. the other end of a pipe
    opened: dict = field(default_factory=dict)    # file id -> our fd
    shmem_fds: dict = field(default_factory=dict)  # shmem.img object id -> our fd (memfds)

    @property
    def shell_job(self) -> bool:
        return self.plan.shell_job

    def fd_of(self, file_id: int) -> int:
        """Our fd on another file of the dump (opened now if it was not yet)."""
        if file_id not in self.opened:
            entry = self.files.get(file_id)
            if entry is None:
                raise ImageError(f"files.img: reference to unknown file {file_id}")
            self.opened[file_id] = move_above(_open_entry(self, entry), self.base_fd)
        return self.opened[file_id]


def open_all(ctx: RestoreContext) -> dict[int, int]:
    """Open every file description at a fd >= ctx.base_fd; returns file id -> fd."""
    for entry in ctx.files.values():
        ctx.fd_of(entry.id)
    return ctx.opened


def _open_entry(ctx: RestoreContext, entry) -> int:
    kind = kind_named(entry.kind)
    detail = _detail(kind, entry)
    return kind.open(ctx, entry, detail)


def _detail(kind, entry):
    detail = kind.MESSAGE()
    if not entry.detail.Unpack(detail):
        raise ImageError(f"files.img: file {entry.id} detail is not a {kind.MESSAGE.__name__}")
    return detail


def validate_files(files_msg) -> dict:
    """Every entry checked before anything is opened; returns id -> FileEntry."""
    out = {}
    for entry in files_msg.files:
        if kind_named(entry.kind) is None:
            raise ImageError(f"files.img: file {entry.id} has unknown kind {entry.kind!r}")
        if entry.id in out or entry.id == 0:
            raise ImageError(f"files.img: duplicate or zero file id {entry.id}")
        if entry.pos < 0:
            raise ImageError(f"files.img: file {entry.id} has a negative position")
        out[entry.id] = entry
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


def validate_fds(task, files_ids, where: str) -> None:
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


def finish_in_task(ctx: RestoreContext, task, first_holder: dict[int, int]) -> None:
    """In the restoring task, after install(): the kinds' in_task hooks, for the
    files this task is the first (in tree order) to hold."""
    numbers: dict[int, list[int]] = {}
    for f in task.fds:
        numbers.setdefault(f.file_id, []).append(f.fd)
    # objects built in each holder (pidfds) first: other hooks (epoll) may register them
    def per_holder(file_id):
        return getattr(kind_named(ctx.files[file_id].kind), "IN_EVERY_HOLDER", False)
    for file_id, fds in sorted(numbers.items(), key=lambda item: not per_holder(item[0])):
        entry = ctx.files[file_id]
        kind = kind_named(entry.kind)
        if first_holder.get(file_id) != task.pid and not per_holder(file_id):
            continue
        hook = getattr(kind, "in_task", None)
        if hook is not None:
            hook(ctx, entry, _detail(kind, entry), fds)
