"""The typed syscall layer: every call into the kernel that Python's os module lacks.

Thin wrappers over lxc_cr.engine._native (cffi).  Each raises OSError with the
errno and the name of the call, so callers can turn it into a specific
CRError with context.  Constants newer than Debian 12's headers are defined
here by value.
"""
from __future__ import annotations

import errno
import fcntl
import os
import struct

from ._native import ffi, lib

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
TASK_SIZE = 0x7FFFFFFFF000

# ptrace requests and options
PTRACE_PEEKDATA = 2
PTRACE_POKEDATA = 5
PTRACE_CONT = 7
PTRACE_KILL = 8
PTRACE_GETREGS = 12
PTRACE_SETREGS = 13
PTRACE_DETACH = 17
PTRACE_SYSCALL = 24
PTRACE_ARCH_PRCTL = 30
PTRACE_SETOPTIONS = 0x4200
PTRACE_GETEVENTMSG = 0x4201
PTRACE_GETSIGINFO = 0x4202
PTRACE_GETREGSET = 0x4204
PTRACE_SETREGSET = 0x4205
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
PTRACE_LISTEN = 0x4208
PTRACE_PEEKSIGINFO = 0x4209
PTRACE_GETSIGMASK = 0x420A
PTRACE_SETSIGMASK = 0x420B
PTRACE_SECCOMP_GET_FILTER = 0x420C
PTRACE_SECCOMP_GET_METADATA = 0x420D
PTRACE_GET_RSEQ_CONFIGURATION = 0x420F
PTRACE_PEEKSIGINFO_SHARED = 1
PTRACE_O_TRACESYSGOOD = 1
PTRACE_O_TRACEFORK = 2
PTRACE_O_TRACEVFORK = 4
PTRACE_O_TRACECLONE = 8
PTRACE_O_EXITKILL = 1 << 20
PTRACE_O_SUSPEND_SECCOMP = 1 << 21
PTRACE_EVENT_FORK = 1
PTRACE_EVENT_VFORK = 2
PTRACE_EVENT_CLONE = 3
PTRACE_EVENT_STOP = 128
NT_PRSTATUS = 1
NT_X86_XSTATE = 0x202
WALL = 0x40000000

# system call numbers (x86_64)
SYS = dict(
    read=0, write=1, close=3, mmap=9, mprotect=10, munmap=11, brk=12, rt_sigaction=13,
    rt_sigprocmask=14, getitimer=36, setitimer=38, getpid=39, kill=62, sigaltstack=131,
    prctl=157, arch_prctl=158, gettid=186, futex=202, set_tid_address=218,
    timer_create=222, timer_settime=223, timer_gettime=224, timer_getoverrun=225,
    timer_delete=226, tgkill=234, get_robust_list=274, rt_tgsigqueueinfo=297,
    kcmp=312, seccomp=317, rseq=334, pidfd_send_signal=424, pidfd_open=434, clone3=435,
    close_range=436, pidfd_getfd=438, prlimit64=302, capget=125, capset=126,
    getpriority=140, setpriority=141, personality=135, ioprio_set=251, ioprio_get=252, setns=308, setdomainname=171, unshare=272,
)

# clone flags
CLONE_VM = 0x100
CLONE_FS = 0x200
CLONE_FILES = 0x400
CLONE_SIGHAND = 0x800
CLONE_PARENT = 0x8000
CLONE_THREAD = 0x10000
CLONE_NEWNS = 0x20000
CLONE_SYSVSEM = 0x40000
CLONE_NEWPID = 0x20000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWNET = 0x40000000

KCMP_FILE = 0

# mmap
PROT_READ, PROT_WRITE, PROT_EXEC = 1, 2, 4
MAP_SHARED, MAP_PRIVATE, MAP_FIXED, MAP_ANONYMOUS = 0x01, 0x02, 0x10, 0x20
MAP_GROWSDOWN = 0x100
MAP_NORESERVE = 0x4000
MAP_FIXED_NOREPLACE = 0x100000
MAP_FAILED = 0xFFFFFFFFFFFFFFFF

# PAGEMAP_SCAN (6.7): _IOWR('f', 16, struct pm_scan_arg)
PAGEMAP_SCAN = (3 << 30) | (96 << 16) | (ord("f") << 8) | 16
PAGE_IS_WRITTEN = 0x02
PAGE_IS_FILE = 0x04
PAGE_IS_PRESENT = 0x08
PAGE_IS_SWAPPED = 0x10
PAGE_IS_PFNZERO = 0x20
PAGE_IS_GUARD = 0x100


def _check(ret: int, name: str) -> int:
    if ret == -1:
        err = ffi.errno
        raise OSError(err, f"{name}: {os.strerror(err)}")
    return ret


# --- ptrace ---------------------------------------------------------------

def ptrace(request: int, pid: int, addr: int = 0, data: int = 0, name: str = "ptrace") -> int:
    ffi.errno = 0
    ret = lib.lxc_ptrace(request, pid, addr, data)
    if ret == -1 and ffi.errno != 0:
        err = ffi.errno
        raise OSError(err, f"{name}({pid}): {os.strerror(err)}")
    return ret


def wait(pid: int, options: int = WALL) -> tuple[int, int]:
    status = ffi.new("int *")
    r = lib.lxc_wait(pid, status, options)
    if r == -1:
        err = ffi.errno
        raise OSError(err, f"waitpid({pid}): {os.strerror(err)}")
    return r, status[0]


def get_regs(tid: int):
    regs = ffi.new("struct user_regs_struct *")
    ptrace(PTRACE_GETREGS, tid, 0, int(ffi.cast("uintptr_t", regs)), "PTRACE_GETREGS")
    return regs


def set_regs(tid: int, regs) -> None:
    ptrace(PTRACE_SETREGS, tid, 0, int(ffi.cast("uintptr_t", regs)), "PTRACE_SETREGS")


def regs_to_bytes(regs) -> bytes:
    return bytes(ffi.buffer(regs))


def regs_from_bytes(data: bytes):
    regs = ffi.new("struct user_regs_struct *")
    if len(data) != ffi.sizeof(regs[0]):
        raise ValueError(f"register block is {len(data)} bytes, expected {ffi.sizeof(regs[0])}")
    ffi.memmove(regs, data, len(data))
    return regs


def get_regset(tid: int, note: int, size: int) -> bytes:
    buf = ffi.new("char[]", size)
    iov = ffi.new("struct iovec *", {"iov_base": buf, "iov_len": size})
    ptrace(PTRACE_GETREGSET, tid, note, int(ffi.cast("uintptr_t", iov)), "PTRACE_GETREGSET")
    return ffi.buffer(buf, iov.iov_len)[:]


def set_regset(tid: int, note: int, data: bytes) -> None:
    buf = ffi.new("char[]", data)
    iov = ffi.new("struct iovec *", {"iov_base": buf, "iov_len": len(data)})
    ptrace(PTRACE_SETREGSET, tid, note, int(ffi.cast("uintptr_t", iov)), "PTRACE_SETREGSET")


def get_sigmask(tid: int) -> int:
    mask = ffi.new("uint64_t *")
    ptrace(PTRACE_GETSIGMASK, tid, 8, int(ffi.cast("uintptr_t", mask)), "PTRACE_GETSIGMASK")
    return mask[0]


def set_sigmask(tid: int, value: int) -> None:
    mask = ffi.new("uint64_t *", value)
    ptrace(PTRACE_SETSIGMASK, tid, 8, int(ffi.cast("uintptr_t", mask)), "PTRACE_SETSIGMASK")


def peek_siginfo(tid: int, shared: bool) -> list[bytes]:
    """Every queued siginfo (128 bytes each), without dequeuing them."""
    out: list[bytes] = []
    batch = 32
    buf = ffi.new("char[]", 128 * batch)
    args = ffi.new("struct peeksiginfo_args *")
    while True:
        args.off = len(out)
        args.flags = PTRACE_PEEKSIGINFO_SHARED if shared else 0
        args.nr = batch
        n = ptrace(PTRACE_PEEKSIGINFO, tid, int(ffi.cast("uintptr_t", args)),
                   int(ffi.cast("uintptr_t", buf)), "PTRACE_PEEKSIGINFO")
        out.extend(ffi.buffer(buf, 128 * n)[i * 128:(i + 1) * 128] for i in range(n))
        if n < batch:
            return out


def get_siginfo(tid: int) -> bytes:
    buf = ffi.new("char[]", 128)
    ptrace(PTRACE_GETSIGINFO, tid, 0, int(ffi.cast("uintptr_t", buf)), "PTRACE_GETSIGINFO")
    return ffi.buffer(buf, 128)[:]


def get_rseq(tid: int) -> tuple[int, int, int]:
    conf = ffi.new("struct rseq_configuration *")
    ptrace(PTRACE_GET_RSEQ_CONFIGURATION, tid, ffi.sizeof(conf[0]),
           int(ffi.cast("uintptr_t", conf)), "PTRACE_GET_RSEQ_CONFIGURATION")
    return conf.rseq_abi_pointer, conf.rseq_abi_size, conf.signature


def seccomp_filters(tid: int) -> list[bytes]:
    """The task's seccomp filters, innermost (most recently installed) first."""
    filters = []
    index = 0
    while True:
        try:
            n = ptrace(PTRACE_SECCOMP_GET_FILTER, tid, index, 0, "PTRACE_SECCOMP_GET_FILTER")
        except OSError as e:
            if e.errno == errno.ENOENT:
                return filters
            raise
        buf = ffi.new("struct sock_filter[]", n)
        ptrace(PTRACE_SECCOMP_GET_FILTER, tid, index, int(ffi.cast("uintptr_t", buf)),
               "PTRACE_SECCOMP_GET_FILTER")
        filters.append(bytes(ffi.buffer(buf, 8 * n)))
        index += 1


def seccomp_filter_flags(tid: int, index: int) -> int:
    meta = ffi.new("struct seccomp_metadata *", {"filter_off": index})
    ptrace(PTRACE_SECCOMP_GET_METADATA, tid, ffi.sizeof(meta[0]), int(ffi.cast("uintptr_t", meta)),
           "PTRACE_SECCOMP_GET_METADATA")
    return meta.flags


def peek_word(tid: int, addr: int) -> int:
    return ptrace(PTRACE_PEEKDATA, tid, addr, 0, "PTRACE_PEEKDATA") & 0xFFFFFFFFFFFFFFFF


# --- generic syscalls -----------------------------------------------------

def syscall(name: str, *args: int) -> int:
    a = list(args) + [0] * (6 - len(args))
    return _check(lib.lxc_syscall6(SYS[name], *a), name)


PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37
PR_TIMER_CREATE_RESTORE_IDS = 77


def prctl(option: int, *args: int) -> int:
    return syscall("prctl", option, *args)


def set_child_subreaper(on: bool) -> None:
    prctl(PR_SET_CHILD_SUBREAPER, int(on))


def is_child_subreaper() -> bool:
    value = ffi.new("int *")
    prctl(PR_GET_CHILD_SUBREAPER, int(ffi.cast("uintptr_t", value)))
    return bool(value[0])


def pidfd_open(pid: int) -> int:
    return syscall("pidfd_open", pid, 0)


def pidfd_getfd(pidfd: int, fd: int) -> int:
    return syscall("pidfd_getfd", pidfd, fd, 0)


def kcmp_file(pid1: int, fd1: int, pid2: int, fd2: int) -> int:
    return syscall("kcmp", pid1, pid2, KCMP_FILE, fd1, fd2)


def get_robust_list(tid: int) -> tuple[int, int]:
    head = ffi.new("uint64_t *")
    length = ffi.new("size_t *")
    syscall("get_robust_list", tid, int(ffi.cast("uintptr_t", head)), int(ffi.cast("uintptr_t", length)))
    return head[0], length[0]


def prlimit(pid: int, resource: int, new: tuple[int, int] | None = None) -> tuple[int, int]:
    old = ffi.new("struct rlimit64 *")
    newp = ffi.new("struct rlimit64 *", {"cur": new[0], "max": new[1]}) if new else ffi.NULL
    syscall("prlimit64", pid, resource, int(ffi.cast("uintptr_t", newp)), int(ffi.cast("uintptr_t", old)))
    return old.cur, old.max


def capget(pid: int) -> tuple[int, int, int]:
    """(effective, permitted, inheritable) as 64-bit sets."""
    hdr = ffi.new("struct cap_header *", {"version": 0x20080522, "pid": pid})
    data = ffi.new("struct cap_data[2]")
    syscall("capget", int(ffi.cast("uintptr_t", hdr)), int(ffi.cast("uintptr_t", data)))
    return tuple((data[1][f] << 32) | data[0][f] for f in ("effective", "permitted", "inheritable"))


def clone3_fork(flags: int = 0, set_tid: list[int] | None = None, exit_signal: int = 17) -> int:
    """Fork this Python process with clone3; returns 0 in the child."""
    tids = ffi.new("int32_t[]", set_tid or [0])
    args = ffi.new("struct clone_args *")
    args.flags = flags
    # with CLONE_PARENT the child takes our own exit signal; clone3 refuses any other
    args.exit_signal = 0 if flags & CLONE_PARENT else exit_signal
    if set_tid:
        args.set_tid = int(ffi.cast("uintptr_t", tids))
        args.set_tid_size = len(set_tid)
    return _check(lib.lxc_clone3_fork(args), "clone3")


# --- memory ---------------------------------------------------------------

def mmap(addr: int, length: int, prot: int, flags: int, fd: int = -1, offset: int = 0) -> int:
    p = lib.lxc_mmap(addr, length, prot, flags, fd, offset)
    res = int(ffi.cast("uintptr_t", p))
    if res == MAP_FAILED:
        err = ffi.errno
        raise OSError(err, f"mmap({addr:#x}, {length:#x}): {os.strerror(err)}")
    return res


def munmap(addr: int, length: int) -> None:
    _check(lib.lxc_munmap(addr, length), "munmap")


def mprotect(addr: int, length: int, prot: int) -> None:
    _check(lib.lxc_mprotect(addr, length, prot), "mprotect")


def madvise(addr: int, length: int, advice: int) -> None:
    _check(lib.lxc_madvise(addr, length, advice), "madvise")


def iovecs(ranges: list[tuple[int, int]]):
    """A cffi iovec array over (address, length) pairs."""
    iov = ffi.new("struct iovec[]", len(ranges))
    for i, (addr, length) in enumerate(ranges):
        iov[i].iov_base = ffi.cast("void *", addr)
        iov[i].iov_len = length
    return iov


def process_vm_readv(pid: int, local, nlocal: int, remote, nremote: int) -> int:
    return _check(lib.lxc_process_vm_readv(pid, local, nlocal, remote, nremote), "process_vm_readv")


def process_vm_writev(pid: int, local, nlocal: int, remote, nremote: int) -> int:
    return _check(lib.lxc_process_vm_writev(pid, local, nlocal, remote, nremote), "process_vm_writev")


def preadv(fd: int, iov, n: int, offset: int) -> int:
    return _check(lib.lxc_preadv(fd, iov, n, offset), "preadv")


def pwritev(fd: int, iov, n: int, offset: int) -> int:
    return _check(lib.lxc_pwritev(fd, iov, n, offset), "pwritev")


def read_remote(pid: int, addr: int, length: int) -> bytes:
    """Small reads of another task's memory (structures, not page data)."""
    buf = ffi.new("char[]", length)
    local = iovecs([(int(ffi.cast("uintptr_t", buf)), length)])
    remote = iovecs([(addr, length)])
    n = process_vm_readv(pid, local, 1, remote, 1)
    if n != length:
        raise OSError(errno.EFAULT, f"process_vm_readv: short read at {addr:#x}")
    return ffi.buffer(buf, length)[:]


def write_remote(pid: int, addr: int, data: bytes) -> None:
    buf = ffi.from_buffer(data)
    local = iovecs([(int(ffi.cast("uintptr_t", buf)), len(data))])
    remote = iovecs([(addr, len(data))])
    if process_vm_writev(pid, local, 1, remote, 1) != len(data):
        raise OSError(errno.EFAULT, f"process_vm_writev: short write at {addr:#x}")


def pagemap_scan(pagemap_fd: int, start: int, end: int, category_mask: int,
                 category_inverted: int = 0, anyof: int = 0,
                 return_mask: int | None = None) -> list[tuple[int, int, int]]:
    """Ranges [start, end) of pages matching the category filter, with their categories.

    A page matches when (categories ^ inverted) has every bit of category_mask
    and, if anyof is non-zero, at least one bit of anyof."""
    out = []
    vec_len = 512
    vec = ffi.new("struct page_region[]", vec_len)
    arg = ffi.new("struct pm_scan_arg *")
    while start < end:
        arg.size = ffi.sizeof(arg[0])
        arg.flags = 0
        arg.start = start
        arg.end = end
        arg.vec = int(ffi.cast("uintptr_t", vec))
        arg.vec_len = vec_len
        arg.max_pages = 0
        arg.category_inverted = category_inverted
        arg.category_mask = category_mask
        arg.category_anyof_mask = anyof
        arg.return_mask = (category_mask | anyof) if return_mask is None else return_mask
        n = fcntl.ioctl(pagemap_fd, PAGEMAP_SCAN, int(ffi.cast("uintptr_t", arg)))
        out.extend((vec[i].start, vec[i].end, vec[i].categories) for i in range(n))
        if arg.walk_end >= end or n < vec_len:
            break
        start = arg.walk_end
    return out


def copy_range(fd_in: int, off_in: int, fd_out: int, off_out: int, length: int) -> int:
    """Copy length bytes between files inside the kernel; returns the bytes copied.

    copy_file_range where the kernel allows it (same file system), else
    sendfile, which also works between tmpfs/shmem and other file systems."""
    pin = ffi.new("int64_t *", off_in)
    pout = ffi.new("int64_t *", off_out)
    done = 0
    use_sendfile = False
    while done < length:
        if not use_sendfile:
            n = lib.lxc_copy_file_range(fd_in, pin, fd_out, pout, length - done)
            if n == -1 and ffi.errno in (errno.EXDEV, errno.EINVAL, errno.EOPNOTSUPP):
                use_sendfile = True
                os.lseek(fd_out, pout[0], os.SEEK_SET)
                continue
            _check(n, "copy_file_range")
        else:
            n = _check(lib.lxc_sendfile(fd_out, fd_in, pin, length - done), "sendfile")
        if n == 0:
            break
        done += n
    return done


# --- misc -------------------------------------------------------------------

def sigset_to_int(signals) -> int:
    mask = 0
    for s in signals:
        mask |= 1 << (int(s) - 1)
    return mask


def siginfo_signo(info: bytes) -> int:
    return struct.unpack_from("<i", info, 0)[0]


# --- special files: pipes, event/timer/signal fds, epoll, notification groups, memfd ---------

SYS.update(
    epoll_wait=232, epoll_ctl=233, inotify_add_watch=254, inotify_rm_watch=255, splice=275, tee=276,
    timerfd_create=283, timerfd_settime=286, timerfd_gettime=287, signalfd4=289, epoll_create1=291,
    inotify_init1=294, fanotify_init=300, fanotify_mark=301, open_by_handle_at=304,
)

KCMP_EPOLL_TFD = 7
SPLICE_F_NONBLOCK = 2
F_SETPIPE_SZ, F_GETPIPE_SZ = 1031, 1032
F_ADD_SEALS, F_GET_SEALS = 1033, 1034
FIONREAD = 0x541B
TFD_IOC_SET_TICKS = 0x40085400          # _IOW('T', 0, __u64)
EPOLL_CTL_ADD = 1


def tee(fd_in: int, fd_out: int, length: int, flags: int = 0) -> int:
    """Duplicate up to `length` queued bytes of pipe fd_in into pipe fd_out without consuming them."""
    return syscall("tee", fd_in, fd_out, length, flags)


def kcmp_epoll_tfd(pid: int, fd: int, epoll_pid: int, epfd: int, tfd: int, toff: int) -> int:
    """0 if pid's fd is the file that epoll_pid's epoll epfd watches as its toff-th watch numbered tfd."""
    slot = ffi.new("uint32_t[3]", [epfd, tfd, toff])
    return syscall("kcmp", pid, epoll_pid, KCMP_EPOLL_TFD, fd, int(ffi.cast("uintptr_t", slot)))


def epoll_create1(flags: int) -> int:
    return syscall("epoll_create1", flags)


def epoll_ctl(epfd: int, op: int, fd: int, events: int, data: int) -> None:
    ev = ffi.new("char[12]", struct.pack("<IQ", events, data))     # struct epoll_event is packed on x86-64
    syscall("epoll_ctl", epfd, op, fd, int(ffi.cast("uintptr_t", ev)))


def epoll_wait(epfd: int, max_events: int, timeout_ms: int) -> int:
    """How many events epoll_wait() reported (the events themselves are dropped)."""
    buf = ffi.new("char[]", 12 * max_events)
    return syscall("epoll_wait", epfd, int(ffi.cast("uintptr_t", buf)), max_events, timeout_ms)


def signalfd(mask: int, flags: int) -> int:
    m = ffi.new("uint64_t *", mask)
    return syscall("signalfd4", 2**64 - 1, int(ffi.cast("uintptr_t", m)), 8, flags)


def timerfd_create(clockid: int, flags: int) -> int:
    return syscall("timerfd_create", clockid, flags)


def timerfd_gettime(fd: int) -> tuple[int, int]:
    """(value, interval) in nanoseconds: the time left and the period."""
    its = ffi.new("int64_t[4]")
    syscall("timerfd_gettime", fd, int(ffi.cast("uintptr_t", its)))
    return its[2] * 10**9 + its[3], its[0] * 10**9 + its[1]


def timerfd_settime(fd: int, flags: int, value_ns: int, interval_ns: int) -> None:
    its = ffi.new("int64_t[4]", [interval_ns // 10**9, interval_ns % 10**9, value_ns // 10**9, value_ns % 10**9])
    syscall("timerfd_settime", fd, flags, int(ffi.cast("uintptr_t", its)), 0)


def inotify_init1(flags: int) -> int:
    return syscall("inotify_init1", flags)


def inotify_add_watch(fd: int, path: str, mask: int) -> int:
    p = ffi.new("char[]", os.fsencode(path))
    return syscall("inotify_add_watch", fd, int(ffi.cast("uintptr_t", p)), mask)


def inotify_rm_watch(fd: int, wd: int) -> None:
    syscall("inotify_rm_watch", fd, wd)


def fanotify_init(flags: int, event_f_flags: int) -> int:
    return syscall("fanotify_init", flags, event_f_flags)


def fanotify_mark(fd: int, flags: int, mask: int, dirfd: int, path: str | None) -> None:
    p = ffi.new("char[]", os.fsencode(path)) if path is not None else ffi.NULL
    syscall("fanotify_mark", fd, flags, mask, dirfd & 0xFFFFFFFFFFFFFFFF, int(ffi.cast("uintptr_t", p)))


def open_by_handle_at(mount_fd: int, handle_type: int, handle: bytes, flags: int) -> int:
    """Open an inode by its file handle (as /proc fdinfo shows it); needs CAP_DAC_READ_SEARCH."""
    buf = ffi.new("char[]", 8 + len(handle))
    ffi.memmove(buf, struct.pack("<Ii", len(handle), handle_type) + handle, 8 + len(handle))
    return syscall("open_by_handle_at", mount_fd, int(ffi.cast("uintptr_t", buf)), flags)


def fionread(fd: int) -> int:
    """Bytes queued in a pipe (or other queue) fd."""
    return struct.unpack("i", fcntl.ioctl(fd, FIONREAD, b"\0\0\0\0"))[0]
