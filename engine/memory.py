"""Address spaces: which VMAs a task has, which pages to save, and how to rebuild them.

Dump: smaps gives the VMAs; PAGEMAP_SCAN picks the pages that hold data of
their own (present or swapped, not file-backed, not the zero page); the data
goes from the task to pages-PID.img through one native 4 MiB buffer
(process_vm_readv in, pwritev out): it never becomes a Python object.  Reading
straight into a mapped window of the image file was measured slower here
(populating shared file mappings costs more than the second copy; see
docs/BENCHMARKS.md).
Shared anonymous memory is saved once per object, from its shmem file.

Restore: every VMA is first built at a "premap" address that is free both in
the restoring process and in the dumped layout, filled with preadv, given its
final protection; the restorer blob then moves them into place with mremap.
"""
from __future__ import annotations

import functools
import logging
import os
from typing import NamedTuple

from . import kernel as k
from . import proc
from .errors import DumpError, ImageError, UnsupportedError
from .files import new_deleted_file

log = logging.getLogger("lxc_cr.memory")

PAGE = k.PAGE_SIZE
BATCH = 4 << 20            # bytes moved per process_vm_readv / pwritev round
IOV_MAX = 1024

# smaps VmFlags that restore recreates with madvise(), and their advice values
MADVICE = {"dd": 16, "dc": 10, "wf": 18, "hg": 14, "nh": 15, "mg": 12}
SPECIAL = {"[vdso]": "VDSO", "[vvar]": "VVAR", "[vvar_vclock]": "VVAR_VCLOCK", "[vsyscall]": "VSYSCALL"}
SHARED_ANON_PATH = "/dev/zero (deleted)"
DELETED = " (deleted)"
DELETED_FILE_LIMIT = 256 << 20


def _pb():
    from .proto import images_pb2
    return images_pb2


def prot_of(perms: str) -> int:
    return ((k.PROT_READ if perms[0] == "r" else 0) | (k.PROT_WRITE if perms[1] == "w" else 0)
            | (k.PROT_EXEC if perms[2] == "x" else 0))


# --- dump -------------------------------------------------------------------------------

class ShmemObject(NamedTuple):
    id: int
    fd: int         # our own fd on the object, via map_files
    size: int
    path: str       # a deleted file's old path; "" for anonymous shared memory
    mode: int
    memfd: bool = False     # a memfd (path "/memfd:NAME"): kinds/memfd.py rebuilds it


class MemoryDumper:
    """Dumps the address spaces of a frozen tree; shared objects are tracked across tasks."""

    def __init__(self, images):
        self.images = images
        self.shmem: dict[tuple[int, int], ShmemObject] = {}
        self.buf = k.ffi.new("char[]", BATCH)
        self.buf_addr = int(k.ffi.cast("uintptr_t", self.buf))
        self.pages_written = 0

    def vmas(self, pid: int):
        from . import namespaces, sysvipc
        pb = _pb()
        out = []
        own_ipc = namespaces.own(pid, "ipc")
        for m in proc.smaps(pid):
            vma = pb.Vma(start=m.start, end=m.end, prot=prot_of(m.perms), pgoff=m.offset)
            shared = m.perms[3] == "s"
            if m.path in SPECIAL:
                vma.kind = getattr(pb.Vma, SPECIAL[m.path])
            elif sysvipc.vma_of(pid, m, vma, own_ipc):
                pass
            elif m.path == SHARED_ANON_PATH and shared:
                vma.kind = pb.Vma.ANON_SHARED
                vma.shmem_id = self._shmem_object(pid, m).id
            elif m.path.startswith("/") and m.inode:
                vma.kind = pb.Vma.FILE_SHARED if shared else pb.Vma.FILE_PRIVATE
                vma.path = m.path
                if m.path.endswith(DELETED):
                    vma.path = m.path[:-len(DELETED)]
                    vma.shmem_id = self._shmem_object(pid, m, vma.path).id
            elif m.inode == 0 and not shared:
                vma.kind = pb.Vma.ANON_PRIVATE
            else:
                raise UnsupportedError(f"process {pid}: mapping {m.start:#x}-{m.end:#x} of "
                                       f"{m.path or 'an anonymous object'} ({m.perms}) is not supported")
            if "gd" in m.vmflags:
                vma.flags |= k.MAP_GROWSDOWN
            if "sl" in m.vmflags and vma.kind not in (pb.Vma.VSYSCALL,):
                raise UnsupportedError(f"process {pid}: mapping {m.start:#x}-{m.end:#x} is sealed (mseal)")
            vma.vmflags.extend(f for f in m.vmflags if f in MADVICE)
            out.append(vma)
        return out

    def _shmem_object(self, pid: int, m, deleted_path: str = "") -> ShmemObject:
        """The object behind a mapping that must be saved with its content, once."""
        fd = os.open(f"/proc/{pid}/map_files/{m.start:x}-{m.end:x}", os.O_RDONLY | os.O_CLOEXEC)
        return self.shmem_object_of(fd, f"process {pid}", deleted_path)

    def shmem_object_of(self, fd: int, what: str, deleted_path: str = "") -> ShmemObject:
        """The same for an object we hold an fd on (taken over); memfds come here for
        their open files too, so that mappings and files share one object."""
        from .kinds import memfd
        st = os.fstat(fd)
        key = (st.st_dev, st.st_ino)
        if key in self.shmem:
            os.close(fd)
            return self.shmem[key]
        try:
            memfd.refuse_unless_memfd(deleted_path, st, what)
        except UnsupportedError:
            os.close(fd)
            raise
        if deleted_path and st.st_size > DELETED_FILE_LIMIT:
            os.close(fd)
            raise UnsupportedError(f"{what}: mapped deleted file {deleted_path} is larger than "
                                   f"{DELETED_FILE_LIMIT >> 20} MiB")
        obj = ShmemObject(id=len(self.shmem) + 1, fd=fd, size=st.st_size, path=deleted_path,
                          mode=st.st_mode & 0o7777, memfd=memfd.is_memfd(deleted_path, st))
        self.shmem[key] = obj
        return obj

    def page_runs(self, pid: int, vmas) -> list[tuple[int, int]]:
        """(address, pages) runs holding data of their own, in address order."""
        pb = _pb()
        runs = []
        fd = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY | os.O_CLOEXEC)
        try:
            for vma in vmas:
                if vma.kind not in (pb.Vma.ANON_PRIVATE, pb.Vma.FILE_PRIVATE):
                    continue
                # present or swapped, and neither a file page, the zero page nor a guard
                mask = k.PAGE_IS_FILE | k.PAGE_IS_PFNZERO | k.PAGE_IS_GUARD
                for start, end, cats in k.pagemap_scan(fd, vma.start, vma.end, mask, mask,
                                                       anyof=k.PAGE_IS_PRESENT | k.PAGE_IS_SWAPPED):
                    runs.append((start, (end - start) // PAGE))
        finally:
            os.close(fd)
        return runs

    def dump_pages(self, pid: int, vmas, runs: list[tuple[int, int]]) -> None:
        """Copy the pages of `runs` into pages-PID.img."""
        out = self.images.create(f"pages-{pid}.img")
        memfd = None
        try:
            readable = [(v.start, v.end) for v in vmas if v.prot & k.PROT_READ]
            offset = 0
            for chunk in _chunks(runs, BATCH):
                local = k.iovecs([(self.buf_addr, sum(n for _, n in chunk))])
                if all(_inside(a, n, readable) for a, n in chunk):
                    remote = k.iovecs([(a, n) for a, n in chunk])
                    got = k.process_vm_readv(pid, local, 1, remote, len(chunk))
                else:
                    # PROT_NONE or write-only pages: only /proc/PID/mem may read them
                    if memfd is None:
                        memfd = os.open(f"/proc/{pid}/mem", os.O_RDONLY | os.O_CLOEXEC)
                    got = 0
                    for a, n in chunk:
                        one = k.iovecs([(self.buf_addr + got, n)])
                        got += k.preadv(memfd, one, 1, a)
                total = sum(n for _, n in chunk)
                if got != total:
                    raise DumpError(f"process {pid}: read {got} of {total} bytes of memory")
                k.pwritev(out, local, 1, offset)
                offset += total
            self.pages_written += offset // PAGE
        finally:
            os.close(out)
            if memfd is not None:
                os.close(memfd)

    def dump_shmem(self):
        """Write every shared anonymous object once: its data ranges and their bytes."""
        pb = _pb()
        table = pb.SharedMemory()
        for obj in self.shmem.values():
            entry = table.objects.add(id=obj.id, size=obj.size, path=obj.path, mode=obj.mode)
            if obj.memfd:
                from .kinds import memfd
                memfd.describe(obj.fd, entry)
            out = self.images.create(f"shmem-{obj.id}.img")
            try:
                written = 0
                for start, end in _data_ranges(obj.fd, obj.size):
                    k.copy_range(obj.fd, start, out, written, end - start)
                    entry.pages.add(addr=start, nr_pages=(end - start) // PAGE)
                    written += end - start
            finally:
                os.close(out)
            os.close(obj.fd)
        self.shmem.clear()
        return table


def _chunks(runs, limit):
    """Split runs (address, pages) into batches of (address, bytes) of at most `limit`
    bytes and IOV_MAX entries."""
    batch, size = [], 0
    for addr, npages in runs:
        length = npages * PAGE
        while length:
            take = min(length, limit - size)
            batch.append((addr, take))
            size += take
            addr += take
            length -= take
            if size == limit or len(batch) == IOV_MAX:
                yield batch
                batch, size = [], 0
    if batch:
        yield batch


def _inside(addr: int, length: int, ranges) -> bool:
    return any(s <= addr and addr + length <= e for s, e in ranges)


def _data_ranges(fd: int, size: int):
    """Page-aligned [start, end) ranges of a shmem file that hold data (SEEK_DATA/SEEK_HOLE)."""
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError:
            return
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        start -= start % PAGE
        end = -(-end // PAGE) * PAGE
        yield start, end
        pos = end


# --- restore ------------------------------------------------------------------------------

def validate_mm(mm, pages_size: int, where: str) -> None:
    """Every field checked before anything is mapped: addresses in the user range,
    VMAs sorted and disjoint, page runs inside private VMAs and inside the page file."""
    pb = _pb()
    prev_end = 0
    for v in mm.vmas:
        if v.kind == pb.Vma.VSYSCALL:
            continue
        if not (v.start % PAGE == 0 and v.end % PAGE == 0 and prev_end <= v.start < v.end <= k.TASK_SIZE):
            raise ImageError(f"{where}: bad VMA {v.start:#x}-{v.end:#x}")
        if v.prot & ~7 or v.pgoff % PAGE:
            raise ImageError(f"{where}: bad protection or offset in VMA {v.start:#x}")
        if v.kind in (pb.Vma.FILE_PRIVATE, pb.Vma.FILE_SHARED) and not v.path.startswith("/"):
            raise ImageError(f"{where}: file VMA {v.start:#x} has no absolute path")
        prev_end = v.end
    private = [(v.start, v.end) for v in mm.vmas if v.kind in (pb.Vma.ANON_PRIVATE, pb.Vma.FILE_PRIVATE)]
    total = 0
    prev = 0
    for run in mm.pages:
        length = run.nr_pages * PAGE
        if run.addr % PAGE or run.nr_pages == 0 or run.addr < prev or not _inside(run.addr, length, private):
            raise ImageError(f"{where}: page run {run.addr:#x}+{run.nr_pages} outside the private VMAs")
        prev = run.addr + length
        total += length
    if total != pages_size:
        raise ImageError(f"{where}: page file holds {pages_size} bytes, the runs need {total}")
    if len(mm.auxv) % 2 or len(mm.auxv) > 2 * 64:
        raise ImageError(f"{where}: bad auxv")
    for name in ("start_code", "end_code", "start_data", "end_data", "start_brk", "brk", "start_stack",
                 "arg_start", "arg_end", "env_start", "env_end"):
        if getattr(mm, name) >= k.TASK_SIZE:
            raise ImageError(f"{where}: {name} outside the user address range")


def find_hole(size: int, avoid: list[tuple[int, int]], low: int = 1 << 32) -> int:
    """The highest page-aligned address range of `size` bytes overlapping nothing in `avoid`."""
    spans = sorted(avoid)
    top = k.TASK_SIZE - PAGE
    merged = []
    for s, e in spans:
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    gap_end = top
    for s, e in reversed(merged):
        if e < gap_end and gap_end - e >= size + 2 * PAGE and gap_end - size - PAGE >= low:
            return gap_end - size - PAGE
        gap_end = min(gap_end, s)
    if gap_end - size - PAGE >= low:
        return gap_end - size - PAGE
    raise ImageError(f"no free address range of {size:#x} bytes for the restore")


class Premap(NamedTuple):
    src: int
    dst: int
    length: int


def premap(mm, pages_fd: int, shmem_fds: dict[int, int], base: int, where: str) -> list[Premap]:
    """Build every VMA of mm at base.. (one page apart so none merge), fill and protect them."""
    pb = _pb()
    moves = []
    cursor = base
    runs = list(mm.pages)
    ri = 0
    file_offset = 0
    for v in premap_vmas(mm):
        length = v.end - v.start
        flags = k.MAP_FIXED_NOREPLACE | (v.flags & k.MAP_GROWSDOWN)
        if v.kind == pb.Vma.ANON_PRIVATE:
            addr = k.mmap(cursor, length, k.PROT_READ | k.PROT_WRITE,
                          flags | k.MAP_PRIVATE | k.MAP_ANONYMOUS | k.MAP_NORESERVE)
        elif v.kind == pb.Vma.SYSV_SHM:
            from . import sysvipc
            addr = sysvipc.attach(v, cursor)
        elif v.kind in (pb.Vma.FILE_PRIVATE, pb.Vma.FILE_SHARED, pb.Vma.ANON_SHARED):
            private = v.kind == pb.Vma.FILE_PRIVATE
            if v.shmem_id:
                if v.shmem_id not in shmem_fds:
                    raise ImageError(f"{where}: VMA {v.start:#x} names unknown memory object {v.shmem_id}")
                # a shared writable mapping needs a writable open of the object
                writable = v.prot & k.PROT_WRITE and not private
                fd = (os.open(f"/proc/self/fd/{shmem_fds[v.shmem_id]}", os.O_RDWR | os.O_CLOEXEC) if writable
                      else os.dup(shmem_fds[v.shmem_id]))
            else:
                fd = _open_mapped(v.path, os.O_RDWR if v.prot & k.PROT_WRITE and not private else os.O_RDONLY,
                                  where)
            try:
                addr = k.mmap(cursor, length, k.PROT_READ | k.PROT_WRITE if private else v.prot,
                              flags | (k.MAP_PRIVATE if private else k.MAP_SHARED), fd, v.pgoff)
            finally:
                os.close(fd)
        else:
            raise ImageError(f"{where}: unknown VMA kind {v.kind}")
        # fill the pages that belong to this VMA
        iov = []
        while ri < len(runs) and runs[ri].addr < v.end:
            run = runs[ri]
            iov.append((addr + run.addr - v.start, run.nr_pages * PAGE))
            ri += 1
        file_offset = _fill(pages_fd, iov, file_offset, where)
        if v.kind in (pb.Vma.ANON_PRIVATE, pb.Vma.FILE_PRIVATE):
            k.mprotect(addr, length, v.prot)
        for flag in v.vmflags:
            try:
                k.madvise(addr, length, MADVICE[flag])
            except (OSError, KeyError) as e:
                log.warning("%s: madvise %s on %#x: %s", where, flag, v.start, e)
        moves.append(Premap(addr, v.start, length))
        cursor += length + PAGE
    return moves


def premap_vmas(mm) -> list:
    """The VMAs restore builds itself (the kernel's vDSO pieces and vsyscall are moved or left)."""
    pb = _pb()
    return [v for v in mm.vmas if v.kind not in (pb.Vma.VDSO, pb.Vma.VVAR, pb.Vma.VVAR_VCLOCK, pb.Vma.VSYSCALL)]


def premap_size(mm) -> int:
    return sum(v.end - v.start + PAGE for v in premap_vmas(mm))


def _fill(fd: int, ranges, offset: int, where: str) -> int:
    for i in range(0, len(ranges), IOV_MAX):
        part = ranges[i:i + IOV_MAX]
        want = sum(n for _, n in part)
        got = k.preadv(fd, k.iovecs(part), len(part), offset)
        if got != want:
            raise ImageError(f"{where}: page file is short ({got} of {want} bytes at {offset})")
        offset += want
    return offset


def _open_mapped(path: str, flags: int, where: str) -> int:
    try:
        return os.open(path, flags | os.O_CLOEXEC)
    except OSError as e:
        raise ImageError(f"{where}: mapped file {path}: {e.strerror}") from None


def restore_shmem(images, table) -> dict[int, int]:
    """Recreate each memory object, fill it, and return id -> fd."""
    from .kinds import memfd
    fds = {}
    for obj in table.objects:
        if obj.size > 1 << 40 or (not obj.path and obj.size % PAGE) or obj.id in fds or obj.id == 0:
            raise ImageError(f"shmem.img: bad object {obj.id} (size {obj.size})")
        if obj.path and not obj.path.startswith("/"):
            raise ImageError(f"shmem.img: object {obj.id} has a relative path")
        if obj.memfd:
            fd = memfd.create(obj)
        else:
            fd = new_deleted_file(obj.path, obj.mode) if obj.path else _new_shared_anon(obj.size)
        data = images.open(f"shmem-{obj.id}.img")
        try:
            src = 0
            for run in obj.pages:
                length = run.nr_pages * PAGE
                if run.addr % PAGE or run.addr + length > -(-obj.size // PAGE) * PAGE:
                    raise ImageError(f"shmem.img: object {obj.id} data outside its size")
                k.copy_range(data, src, fd, run.addr, length)
                src += length
            if obj.path:
                os.ftruncate(fd, obj.size)     # the last run is rounded up to a page
            if obj.memfd:
                memfd.seal_early(fd, obj)
            elif obj.path:
                # held read-only from now on: the kernel takes no exe (an upgraded
                # binary's) while anyone has it open for writing
                fd = _reopen(fd, os.O_RDONLY)
        finally:
            os.close(data)
        fds[obj.id] = fd
    return fds


def _reopen(fd: int, flags: int) -> int:
    new = os.open(f"/proc/self/fd/{fd}", flags | os.O_CLOEXEC)
    os.close(fd)
    return new


def seal_shmem(table, fds: dict[int, int]) -> None:
    """Once every task has built its mappings: the seals that had to wait for them (memfds)."""
    from .kinds import memfd
    for obj in table.objects:
        if obj.memfd:
            memfd.seal_late(fds[obj.id], obj)


def _new_shared_anon(size: int) -> int:
    """The shmem object a MAP_SHARED|MAP_ANONYMOUS mapping has, as an fd."""
    addr = k.mmap(0, size, k.PROT_READ | k.PROT_WRITE, k.MAP_SHARED | k.MAP_ANONYMOUS)
    try:
        return os.open(f"/proc/self/map_files/{addr:x}-{addr + size:x}", os.O_RDWR | os.O_CLOEXEC)
    finally:
        k.munmap(addr, size)


VDSO_NAMES = ("[vvar]", "[vvar_vclock]", "[vdso]")


@functools.cache
def vdso_layout() -> list[tuple[str, int]]:
    """(name, size) of our vDSO pieces, in address order (read once: they never change)."""
    return [(m.path, m.end - m.start) for m in proc.maps("self") if m.path in VDSO_NAMES]


def vdso_areas(pid="self") -> dict[str, tuple[int, int]]:
    return {m.path: (m.start, m.end) for m in proc.maps(pid) if m.path in VDSO_NAMES}
