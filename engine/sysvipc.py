"""The contents of a tree's own IPC namespace: SysV shared memory segments, message queues
and semaphore sets, with their ids, and the namespace's IPC sysctls (sysvipc.img).

Dump (the dumper joins the tree's IPC namespace for the while, then goes back to its own):
every object listed in /proc/sysvipc/* is read with IPC_STAT (key, id, owner,
creator, mode; a segment's size, a queue's qbytes).  A segment's bytes go from
its shmem file to sysvshm-ID.img inside the kernel (attached read-only, opened
through /proc/self/map_files, copied with copy_file_range/sendfile, holes
kept); a queue's messages are read in order without being taken (msgrcv
MSG_COPY); a set's values with GETALL.  With kernel.shm_rmid_forced on, the
last detach of a segment removes it: it is off while the segments are read.

Restore, in the root task once it is in its new IPC namespace and before it
forks anything: each object is created with its id (kernel.{shm,msg,sem}_next_id
written just before), as its creator (the effective ids are the dumped cuid/cgid
for the call), then given its owner, mode and qbytes with IPC_SET; a segment is
filled from its image with preadv into an attachment (only the ranges that hold
data), locked again if it was (SHM_LOCK); messages are sent back in order; the
values are set with SETALL.  The sysctls are written last, so that a limit
lowered below what already existed at dump time does not stop the creation.
A segment removed (IPC_RMID) while still attached (SHM_DEST, nameless) is made
like any other and removed again by the orchestrator once every restored task
has attached it (remove_again).

Attachments: a task's mapping of a segment (`/SYSV<key> (deleted)` in its maps,
the inode is the id) is a VMA of kind SYSV_SHM (engine/memory.py); restore
attaches the restored segment with shmat at the premap address and the
restorer moves it into place, so the task shares the segment again.  Only whole
attachments are carried (a part unmapped or mprotected on its own is refused).
A tree without an IPC namespace of its own shares the host's objects, which are
not the tree's to recreate: a mapping of one is refused with its id.

Not carried: semadj (the undo values of SEM_UNDO operations are kept per task by
the kernel and cannot be read back: a restored task that exits does not undo
them); the times and last PIDs of each object (stime, lspid...).
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import struct

from . import kernel as k
from .namespaces import visiting
from .errors import DumpError, ImageError, RestoreError, UnsupportedError, fault_point

log = logging.getLogger("lxc_cr.sysvipc")

IMAGE = "sysvipc.img"
KINDS = ("shm", "msg", "sem")
SYSCTLS = ("kernel/shmmax", "kernel/shmall", "kernel/shmmni", "kernel/shm_rmid_forced",
           "kernel/msgmax", "kernel/msgmnb", "kernel/msgmni", "kernel/sem",
           "fs/mqueue/queues_max", "fs/mqueue/msg_max", "fs/mqueue/msgsize_max",
           "fs/mqueue/msg_default", "fs/mqueue/msgsize_default")
SYSCTL_VALUE = re.compile(r"[0-9]{1,20}(\s[0-9]{1,20}){0,3}")
SYSV_PATH = re.compile(r"/SYSV([0-9a-f]{8}) \(deleted\)")
MAX_SHM = 1 << 40
SEMVMX, SEMMSL = 32767, 32000
PAGE = k.PAGE_SIZE


def message():
    from .proto.sysvipc_pb2 import SysvIpc
    return SysvIpc


def _round(n: int) -> int:
    return -(-n // PAGE) * PAGE


# --- dump ---------------------------------------------------------------------------------

def dump(pid: int, images):
    """sysvipc.img for the tree rooted at pid, which has an IPC namespace of its own."""
    msg = message()()
    with visiting(pid, "ipc"):
        for name in SYSCTLS:
            with open(f"/proc/sys/{name}") as f:
                msg.sysctls.add(name=name, value=f.read().strip())
        with _rmid_not_forced():
            for ipc_id in _ids("shm"):
                _dump_shm(msg.shm.add(), ipc_id, images)
        for ipc_id in _ids("msg"):
            _dump_msg(msg.msg.add(), ipc_id)
        for ipc_id in _ids("sem"):
            raw = k.ipc_stat("sem", ipc_id)
            s = msg.sem.add()
            _perm(s.perm, raw, ipc_id)
            s.values.extend(k.sem_getall(ipc_id, struct.unpack_from("<Q", raw, k.SEM_NSEMS)[0]))
    log.info("IPC namespace of %d: %d shm segments, %d message queues, %d semaphore sets",
             pid, len(msg.shm), len(msg.msg), len(msg.sem))
    return msg


@contextlib.contextmanager
def _rmid_not_forced():
    """kernel.shm_rmid_forced off for the block: reading a detached segment attaches and
    detaches it, and with the sysctl on, that detach would remove it."""
    path = "/proc/sys/kernel/shm_rmid_forced"
    with open(path) as f:
        forced = f.read().strip() != "0"
    if forced:
        _write(path, "0")
    try:
        yield
    finally:
        if forced:
            _write(path, "1")


def _ids(kind: str) -> list[int]:
    with open(f"/proc/sysvipc/{kind}") as f:
        return sorted(int(line.split()[1]) for line in f.read().splitlines()[1:] if line.strip())


def _perm(perm, raw: bytes, ipc_id: int) -> None:
    key, uid, gid, cuid, cgid, mode, _ = k.IPC_PERM.unpack_from(raw)
    perm.key, perm.id, perm.uid, perm.gid, perm.cuid, perm.cgid, perm.mode = key, ipc_id, uid, gid, cuid, cgid, mode


def _dump_shm(shm, ipc_id: int, images) -> None:
    from .memory import _data_ranges
    raw = k.ipc_stat("shm", ipc_id)
    _perm(shm.perm, raw, ipc_id)
    shm.perm.mode &= 0o777 | k.SHM_LOCKED | k.SHM_DEST
    shm.size = struct.unpack_from("<Q", raw, k.SHM_SEGSZ)[0]
    shm.data = f"sysvshm-{ipc_id}.img"
    out = images.create(shm.data)
    addr = k.shmat(ipc_id, 0, k.SHM_RDONLY)
    try:
        src = os.open(f"/proc/self/map_files/{addr:x}-{addr + _round(shm.size):x}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            for start, end in _data_ranges(src, shm.size):
                end = min(end, shm.size)
                if k.copy_range(src, start, out, start, end - start) != end - start:
                    raise DumpError(f"SysV shared memory segment {ipc_id}: short copy at {start:#x}")
        finally:
            os.close(src)
        os.ftruncate(out, shm.size)
    finally:
        k.shmdt(addr)
        os.close(out)


def _dump_msg(q, ipc_id: int) -> None:
    raw = k.ipc_stat("msg", ipc_id)
    _perm(q.perm, raw, ipc_id)
    cbytes, qnum, q.qbytes = struct.unpack_from("<QQQ", raw, k.MSG_CBYTES)
    for index in range(qnum):
        got = k.msgrcv_copy(ipc_id, index, max(cbytes, 1))
        if got is None:
            break
        q.messages.add(type=got[0], text=got[1])
    if len(q.messages) != qnum:
        raise DumpError(f"SysV message queue {ipc_id}: read {len(q.messages)} of {qnum} messages")


def vma_of(pid: int, m, vma, own_ns: bool) -> bool:
    """Dump side of an attachment: is mapping m a SysV segment?  Fills vma (kind SYSV_SHM)."""
    match = SYSV_PATH.fullmatch(m.path)
    if not match or m.perms[3] != "s" or os.major(os.stat(f"/proc/{pid}/map_files/{m.start:x}-{m.end:x}").st_dev):
        return False
    from .proto import images_pb2 as pb
    what = f"process {pid}: mapping {m.start:#x}-{m.end:#x} of SysV shared memory segment {m.inode} " \
           f"(key {int(match.group(1), 16):#x})"
    if not own_ns:
        raise UnsupportedError(f"{what}: SysV IPC is carried only for a tree with an IPC namespace of "
                               f"its own (unshare --ipc)")
    if m.offset:
        raise UnsupportedError(f"{what}: only whole attachments are supported (this one starts at "
                               f"offset {m.offset:#x})")
    vma.kind = pb.Vma.SYSV_SHM
    vma.shmid = m.inode
    vma.shmflg = 0 if "mw" in m.vmflags else k.SHM_RDONLY
    if "x" in m.perms:
        vma.shmflg |= k.SHM_EXEC
    return True


# --- restore ------------------------------------------------------------------------------

def load(images, inventory):
    """sysvipc.img, validated (None for a tree without an IPC namespace of its own)."""
    if not inventory.ipc_ns:
        return None
    img = images.read(IMAGE, message())
    where = f"{images.path}/{IMAGE}"
    for s in img.sysctls:
        if s.name not in SYSCTLS or not SYSCTL_VALUE.fullmatch(s.value):
            raise ImageError(f"{where}: bad sysctl {s.name!r} = {s.value[:40]!r}")
    for kind in KINDS:
        seen_ids, seen_keys = set(), set()
        for obj in getattr(img, kind):
            p = obj.perm
            name = f"{where}: {kind} {p.id}"
            if p.id < 0 or p.id in seen_ids or (p.key and p.key in seen_keys):
                raise ImageError(f"{name}: bad or repeated id or key")
            if p.mode & ~(0o777 | (k.SHM_LOCKED | k.SHM_DEST if kind == "shm" else 0)) or (
                    p.mode & k.SHM_DEST and p.key):
                raise ImageError(f"{name}: bad mode {p.mode:#o}")
            seen_ids.add(p.id)
            seen_keys.add(p.key)
        for shm in img.shm:
            if not 0 < shm.size <= MAX_SHM or shm.data != f"sysvshm-{shm.perm.id}.img" \
                    or images.size(shm.data) != shm.size:
                raise ImageError(f"{where}: shm {shm.perm.id}: bad size or data file")
        for q in img.msg:
            if q.qbytes > 1 << 31 or any(m.type <= 0 for m in q.messages) or _queued(q) > 1 << 31:
                raise ImageError(f"{where}: msg {q.perm.id}: bad qbytes or message")
        for s in img.sem:
            if not 0 < len(s.values) <= SEMMSL or any(v > SEMVMX for v in s.values):
                raise ImageError(f"{where}: sem {s.perm.id}: bad semaphore count or value")
    return img


def validate_vmas(mm, img, where: str) -> None:
    """Every SysV attachment names a dumped segment and covers all of it."""
    from .proto import images_pb2 as pb
    sizes = {s.perm.id: _round(s.size) for s in img.shm} if img is not None else {}
    for v in mm.vmas:
        if v.kind != pb.Vma.SYSV_SHM:
            continue
        if sizes.get(v.shmid) != v.end - v.start or v.pgoff or v.shmflg & ~(k.SHM_RDONLY | k.SHM_EXEC):
            raise ImageError(f"{where}: VMA {v.start:#x} attaches unknown SysV segment {v.shmid} or not all of it")


def restore_in_root(images, img) -> None:
    """In the root task, in its new IPC namespace, before it forks anything."""
    if img is None:
        return
    # without CAP_SYS_RESOURCE, qbytes may not exceed kernel.msgmnb: raise it for the while
    room = max([max(q.qbytes, _queued(q)) for q in img.msg], default=0)
    with open("/proc/sys/kernel/msgmnb") as f:
        if room > int(f.read()):
            _write("/proc/sys/kernel/msgmnb", str(room))
    for kind in KINDS:
        for obj in sorted(getattr(img, kind), key=lambda o: o.perm.id):
            ipc_id = _create(kind, obj)
            if kind == "shm":
                _fill_shm(images, obj, ipc_id)
            elif kind == "msg":
                for m in obj.messages:
                    k.msgsnd_now(ipc_id, m.type, m.text)
                if _queued(obj) > obj.qbytes:       # lowered below what was queued: lower it again
                    k.ipc_set(kind, ipc_id, obj.perm.uid, obj.perm.gid, obj.perm.mode, obj.qbytes)
            else:
                k.sem_setall(ipc_id, list(obj.values))
    for s in img.sysctls:
        _write(f"/proc/sys/{s.name}", s.value)


def _create(kind: str, obj) -> int:
    p = obj.perm
    fault_point("sysv-next-id")
    _write(f"/proc/sys/kernel/{kind}_next_id", str(p.id))
    flags = k.IPC_CREAT | k.IPC_EXCL | (p.mode & 0o777)
    uid, gid = os.geteuid(), os.getegid()
    os.setegid(p.cgid)              # the creator: cuid and cgid cannot be set otherwise
    os.seteuid(p.cuid)
    try:
        if kind == "shm":
            got = k.syscall("shmget", p.key, obj.size, flags)
        elif kind == "msg":
            got = k.syscall("msgget", p.key, flags)
        else:
            got = k.syscall("semget", p.key, len(obj.values), flags)
    except OSError as e:
        raise RestoreError(f"cannot create SysV {kind} {p.id} (key {p.key:#x}): {e.strerror}") from None
    finally:
        os.seteuid(uid)
        os.setegid(gid)
    if got != p.id:
        raise RestoreError(f"SysV {kind} {p.id} was created with id {got}: kernel.{kind}_next_id was not honoured")
    # room for every message first (root may exceed kernel.msgmnb)
    k.ipc_set(kind, got, p.uid, p.gid, p.mode & 0o777, max(obj.qbytes, _queued(obj)) if kind == "msg" else None)
    return got


def _queued(q) -> int:
    return sum(len(m.text) for m in q.messages)


def _fill_shm(images, shm, ipc_id: int) -> None:
    from .memory import _data_ranges
    fd = images.open(shm.data)
    addr = k.shmat(ipc_id, 0, 0)
    try:
        for start, end in _data_ranges(fd, shm.size):
            length = min(end, shm.size) - start
            if k.preadv(fd, k.iovecs([(addr + start, length)]), 1, start) != length:
                raise ImageError(f"{images.path}/{shm.data}: short read at {start:#x}")
    finally:
        k.shmdt(addr)
        os.close(fd)
    if shm.perm.mode & k.SHM_LOCKED:
        k.syscall("shmctl", ipc_id, k.SHM_LOCK, 0)


def _write(path: str, value: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError as e:
        name = path[len("/proc/sys/"):].replace("/", ".")
        raise RestoreError(f"cannot set {name} to {value}: {e.strerror}") from None


def remove_again(root: int, img) -> None:
    """In the orchestrator, once every restored task has attached its segments: remove the
    segments that were removed while attached at dump time, in root's IPC namespace."""
    removed = [s.perm.id for s in img.shm if s.perm.mode & k.SHM_DEST] if img is not None else []
    if removed:
        with visiting(root, "ipc"):
            for ipc_id in removed:
                k.syscall("shmctl", ipc_id, k.IPC_RMID, 0)


def attach(v, addr: int) -> int:
    """In a restoring task: attach segment v.shmid at addr (the premap place) with the
    dumped protection; the restorer moves it where it was."""
    got = k.shmat(v.shmid, addr, v.shmflg)
    prot = k.PROT_READ | (0 if v.shmflg & k.SHM_RDONLY else k.PROT_WRITE) | (k.PROT_EXEC if v.shmflg & k.SHM_EXEC else 0)
    if v.prot != prot:
        k.mprotect(got, v.end - v.start, v.prot)
    return got
