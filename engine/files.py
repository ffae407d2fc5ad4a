"""File descriptor tables and open file descriptions, and the interface of kinds.

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

import contextlib
import fcntl
import logging
import os
import stat as st_mod
from typing import NamedTuple

from . import kernel as k
from . import inherit, kinds, locks, proc
from .errors import CRError, DumpError, ImageError, UnsupportedError

log = logging.getLogger("lxc_cr.files")

O_CLOEXEC = 0o2000000
O_LARGEFILE = 0o100000


def _pb():
    from .proto import images_pb2
    return images_pb2


def _external():
    return kinds.named("external")      # files outside the tree (--external): not dumped


class FileRef(NamedTuple):
    """One open file of a frozen task, as a kind module's dump sees it."""
    pid: int            # the task holding it (our own PID for files found in flight)
    fd: int             # its number there
    link: str           # readlink of /proc/PID/fd/FD
    st: os.stat_result  # stat of the file it refers to
    info: dict          # /proc/PID/fdinfo/FD
    entry: object       # the FileEntry being filled (id, flags and pos are set)


class DumpContext:
    """What a kind module's dump may use."""

    def __init__(self, images, plan, tree: set, memory=None):
        self.images = images
        self.plan = plan
        self.tree = tree                        # PIDs of the dumped tree
        self.table: FileTable | None = None
        self.next_data_id = 0
        self._local: dict = {}                  # (pid, fd) -> our fd on the same open file
        self.shared: dict = {}                  # per-kind scratch, e.g. a pipe's data already saved
        self.memory = memory                    # the MemoryDumper (memfds share its memory objects)
        # undo steps for what dumping changed in the tasks' files (TCP repair mode...), run
        # by release() when the tree goes on running (--leave-running, or a failed dump)
        self.on_release: list = []

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


class _Open(NamedTuple):
    entry: object
    pid: int
    fd: int


class FileTable:
    """Dump-side index of open file descriptions across the whole tree."""

    def __init__(self, ctx: DumpContext):
        self.ctx = ctx
        self.entries: list = []
        self.by_inode: dict = {}
        ctx.table = self

    def dump_fds(self, pid: int) -> list:
        pb = _pb()
        out = []
        for fd in proc.fds(pid):
            entry = self.entry_for(pid, fd)
            locks.dump_fd(self.ctx, pid, fd, entry)     # the locks held through this fd
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
        kind = kind_for_dump(self.ctx, link, st)
        if kind is None:
            raise UnsupportedError(f"process {pid} fd {fd}: {describe(link, st)} is not supported")
        pb = _pb()
        flags = int(info["flags"], 8)
        entry = pb.FileEntry(id=len(self.entries) + 1, kind=kind.NAME,
                             flags=flags & ~(O_CLOEXEC | O_LARGEFILE), pos=int(info.get("pos", 0)),
                             inherit_key=inherit.key_of(link, st))
        # registered before dump(): a kind may look up files that point back at this one
        self.entries.append(entry)
        self.by_inode.setdefault(key, []).append(_Open(entry, pid, fd))
        ref = FileRef(pid, fd, link, st, info, entry)
        detail = kind.dump(self.ctx, ref)
        entry.detail.Pack(detail)
        _dump_owner(self.ctx, ref, entry)
        return entry

    def message(self):
        return _pb().Files(files=self.entries)


# --- file owners (F_SETOWN_EX, F_SETSIG, O_ASYNC): the same for every kind -----------------
# The owner and signal belong to the open file description.  Dump reads them on our copy of
# it; restore sets them from the orchestrator once every task and thread exists (an owner may
# be a thread, made last), and turns O_ASYNC on in the first task holding the file, through
# its own fd number (the number SIGIO reports in si_fd).

F_OWNER_TYPES = (0, 1, 2)      # F_OWNER_TID, F_OWNER_PID, F_OWNER_PGRP


def _dump_owner(ctx: DumpContext, f: FileRef, entry) -> None:
    if entry.flags & os.O_PATH or entry.kind == _external().NAME:
        return                  # an O_PATH file has no owner (fcntl refuses); an external one is not ours
    try:
        fd = ctx.local_fd(f)
        owner_type, pid = k.get_owner(fd)
        entry.owner_signal = fcntl.fcntl(fd, k.F_GETSIG)
    except OSError as e:
        raise DumpError(f"process {f.pid} fd {f.fd}: cannot read its owner: {e.strerror}") from None
    if pid <= 0:
        return                  # nobody, or an owner that is gone
    if not _owner_in_tree(ctx, owner_type, pid):
        if entry.kind == "chardev" and ctx.shell_job:
            return              # a shell job's terminal is its shell's file: restore leaves it as it is
        what = {0: "thread", 1: "process", 2: "process group"}.get(owner_type, "owner")
        raise UnsupportedError(f"process {f.pid} fd {f.fd}: signals for it go to {what} {pid} (F_SETOWN), "
                               f"outside the tree")
    entry.owner_type, entry.owner_pid = owner_type, pid


def _owner_in_tree(ctx: DumpContext, owner_type: int, pid: int) -> bool:
    try:
        if owner_type == 2:
            return any(proc.stat(p).pgid == pid for p in ctx.tree)
        if owner_type == 0:
            return int(proc.status(pid)["Tgid"]) in ctx.tree
        return pid in ctx.tree
    except (ProcessLookupError, KeyError, ValueError):
        return False


def _validate_owner(entry) -> None:
    if entry.owner_type not in F_OWNER_TYPES or entry.owner_pid < 0 or not 0 <= entry.owner_signal <= 64:
        raise ImageError(f"files.img: file {entry.id} has a bad owner or signal")


def _restore_async(fd: int) -> None:
    """O_ASYNC is only armed by fcntl (open() ignores it): off, then on again."""
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~fcntl.FASYNC)
    fcntl.fcntl(fd, fcntl.F_SETFL, flags | fcntl.FASYNC)


def restore_owners(ctx: "RestoreContext", ids: set, groups: set) -> None:
    """In the orchestrator, every task and thread made (ids: their PIDs and TIDs, groups:
    their process groups): each file's owner and signal, on our own copy of the file."""
    for entry in ctx.files.values():
        if entry.owner_signal:
            fcntl.fcntl(ctx.opened[entry.id], k.F_SETSIG, entry.owner_signal)
        if not entry.owner_pid:
            continue
        if entry.owner_pid not in (groups if entry.owner_type == 2 else ids):
            raise ImageError(f"files.img: file {entry.id} is owned by {entry.owner_pid}, not in the tree")
        k.set_owner(ctx.opened[entry.id], entry.owner_type, entry.owner_pid)


def kind_for_dump(ctx: DumpContext, link: str, st: os.stat_result):
    """The kind that dumps this file: external if the plan says it is outside the tree."""
    return _external() if _external().claims(ctx, link, st) else kinds.owner(link, st)


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

class RestoreContext:
    """What a kind module's open() and in_task() may use."""

    def __init__(self, images, plan, files: dict, base_fd: int, mnt=None):
        self.images = images
        self.plan = plan
        self.files = files                      # file id -> FileEntry
        self.base_fd = base_fd                  # every fd we open goes at or above this
        self.shared: dict = {}                  # per-kind scratch, e.g. the other end of a pipe
        self.opened: dict = {}                  # file id -> our fd
        self.inherited: set = set()             # ids of files that are the caller's (engine/inherit.py)
        self.shmem_fds: dict = {}               # shmem.img object id -> our fd (memfds)
        self.mnt = mnt                          # mounts.MountNs when the tree has its own

    @property
    def shell_job(self) -> bool:
        return self.plan.shell_job

    def path(self, p: str) -> str:
        """The tasks' path p as this process can open, make or bind it: the same path, or,
        in a restored mount namespace, p resolved in that namespace (engine/mounts.py)."""
        return self.mnt.path(p) if self.mnt is not None else p

    def rooted(self):
        """A context in which this process's root is the tasks' (a restored mount namespace's),
        for calls that take a name and keep it (bind of a unix socket): nothing else may run
        in it, not even an import."""
        return self.mnt.rooted() if self.mnt is not None else contextlib.nullcontext()

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
    locks.take_file_locks(ctx)          # flock and OFD locks belong to these open files
    return ctx.opened


def _open_entry(ctx: RestoreContext, entry) -> int:
    fd = inherit.open_inherited(ctx, entry)
    if fd is not None:
        return fd
    kind = kinds.named(entry.kind)
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
        if kinds.named(entry.kind) is None:
            raise ImageError(f"files.img: file {entry.id} has unknown kind {entry.kind!r}")
        if entry.id in out or entry.id == 0:
            raise ImageError(f"files.img: duplicate or zero file id {entry.id}")
        if entry.pos < 0:
            raise ImageError(f"files.img: file {entry.id} has a negative position")
        inherit.validate_key(entry)
        _validate_owner(entry)
        locks.validate(entry, "files.img")
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
        return getattr(kinds.named(ctx.files[file_id].kind), "IN_EVERY_HOLDER", False)
    for file_id, fds in sorted(numbers.items(), key=lambda item: not per_holder(item[0])):
        entry = ctx.files[file_id]
        kind = kinds.named(entry.kind)
        if first_holder.get(file_id) != task.pid and not per_holder(file_id) or file_id in ctx.inherited:
            continue
        hook = getattr(kind, "in_task", None)
        if hook is not None:
            hook(ctx, entry, _detail(kind, entry), fds)
    for file_id, fds in numbers.items():
        if first_holder.get(file_id) == task.pid and ctx.files[file_id].flags & fcntl.FASYNC:
            _restore_async(fds[0])
    locks.take_posix_locks(ctx, task)   # last: the task's own locks (engine/locks.py)
