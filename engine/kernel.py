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
PTRACE_SINGLESTEP = 9
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
CLONE_NEWCGROUP = 0x02000000

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


# --- terminals, POSIX message queues, file locks, file owners ------------------------------

SYS.update(
    ioctl=16, fcntl=72, flock=73, fstatfs=138,
    mq_open=240, mq_unlink=241, mq_timedsend=242, mq_timedreceive=243, mq_getsetattr=245,
)

# tty ioctls (x86-64 numbers)
TCGETS, TCSETS = 0x5401, 0x5402
TIOCSCTTY, TIOCGPGRP, TIOCSPGRP = 0x540E, 0x540F, 0x5410
TIOCSTI, TIOCGWINSZ, TIOCSWINSZ = 0x5412, 0x5413, 0x5414
TIOCPKT, TIOCNOTTY, TIOCGETD, TIOCGSID = 0x5420, 0x5422, 0x5424, 0x5429
TIOCGPTN, TIOCSPTLCK, TIOCGDEV = 0x80045430, 0x40045431, 0x80045432
TIOCGPKT, TIOCGPTLCK, TIOCGPTPEER = 0x80045438, 0x80045439, 0x5441
TERMIOS_SIZE = 36                 # the kernel's struct termios: 4 flags, c_line, c_cc[19]
N_TTY_BUF_SIZE = 4096             # a tty's line discipline holds at most this minus one byte

MQUEUE_MAGIC = 0x19800202

# fcntl commands
F_SETLK, F_GETLK = 6, 5
F_SETOWN, F_GETOWN, F_SETSIG, F_GETSIG = 8, 9, 10, 11
F_SETOWN_EX, F_GETOWN_EX = 15, 16
F_OFD_GETLK, F_OFD_SETLK = 36, 37
F_RDLCK, F_WRLCK, F_UNLCK = 0, 1, 2
LOCK_SH, LOCK_EX, LOCK_NB = 1, 2, 4


def _addr(buf) -> int:
    return int(ffi.cast("uintptr_t", buf))


def ioctl_get_int(fd: int, request: int, name: str = "ioctl") -> int:
    """An ioctl that fills one int (TIOCGPTN, TIOCGPKT, TIOCGPGRP...)."""
    value = ffi.new("int *")
    _check(lib.lxc_syscall6(SYS["ioctl"], fd, request, _addr(value), 0, 0, 0), name)
    return value[0]


def ioctl_set_int(fd: int, request: int, value: int, name: str = "ioctl") -> None:
    """An ioctl that reads one int through a pointer (TIOCSPTLCK, TIOCPKT, TIOCSPGRP)."""
    p = ffi.new("int *", value)
    _check(lib.lxc_syscall6(SYS["ioctl"], fd, request, _addr(p), 0, 0, 0), name)


def ioctl_arg(fd: int, request: int, arg: int, name: str = "ioctl") -> int:
    """An ioctl whose argument is a plain number (TIOCSCTTY, TIOCGPTPEER, TIOCNOTTY)."""
    return _check(lib.lxc_syscall6(SYS["ioctl"], fd, request, arg, 0, 0, 0), name)


def tcgets(fd: int) -> bytes:
    buf = ffi.new("char[]", TERMIOS_SIZE)
    _check(lib.lxc_syscall6(SYS["ioctl"], fd, TCGETS, _addr(buf), 0, 0, 0), "TCGETS")
    return bytes(ffi.buffer(buf, TERMIOS_SIZE))


def tcsets(fd: int, termios: bytes) -> None:
    """Set termios at once (TCSETS: no draining, no flushing)."""
    buf = ffi.new("char[]", bytes(termios))
    _check(lib.lxc_syscall6(SYS["ioctl"], fd, TCSETS, _addr(buf), 0, 0, 0), "TCSETS")


def get_winsize(fd: int) -> tuple[int, int, int, int]:
    buf = ffi.new("uint16_t[4]")
    _check(lib.lxc_syscall6(SYS["ioctl"], fd, TIOCGWINSZ, _addr(buf), 0, 0, 0), "TIOCGWINSZ")
    return tuple(buf)


def set_winsize(fd: int, size: tuple[int, int, int, int]) -> None:
    buf = ffi.new("uint16_t[4]", list(size))
    _check(lib.lxc_syscall6(SYS["ioctl"], fd, TIOCSWINSZ, _addr(buf), 0, 0, 0), "TIOCSWINSZ")


def tiocsti(fd: int, data: bytes) -> None:
    """Push bytes into a tty's input queue, one at a time, as if they had just arrived."""
    c = ffi.new("char *")
    for b in data:
        c[0] = bytes([b])
        _check(lib.lxc_syscall6(SYS["ioctl"], fd, TIOCSTI, _addr(c), 0, 0, 0), "TIOCSTI")


def fstatfs_type(fd: int) -> int:
    """The f_type (magic number) of the filesystem an fd is on."""
    buf = ffi.new("int64_t[16]")           # struct statfs is 120 bytes; f_type comes first
    _check(lib.lxc_syscall6(SYS["fstatfs"], fd, _addr(buf), 0, 0, 0, 0), "fstatfs")
    return buf[0]


def mq_open(name: str, flags: int, mode: int = 0, attr: tuple[int, int] | None = None) -> int:
    """mq_open(2) by its queue name (without the leading '/'); attr = (maxmsg, msgsize)."""
    n = ffi.new("char[]", os.fsencode(name))
    a = ffi.new("int64_t[8]", [0, attr[0], attr[1], 0]) if attr else ffi.NULL
    return syscall("mq_open", _addr(n), flags, mode, _addr(a) if attr else 0)


def mq_unlink(name: str) -> None:
    n = ffi.new("char[]", os.fsencode(name))
    syscall("mq_unlink", _addr(n))


def mq_getattr(fd: int) -> tuple[int, int, int, int]:
    """(flags, maxmsg, msgsize, curmsgs) of a message queue descriptor."""
    a = ffi.new("int64_t[8]")
    syscall("mq_getsetattr", fd, 0, _addr(a))
    return a[0], a[1], a[2], a[3]


_NO_WAIT = ffi.new("int64_t[2]")           # an absolute time long past: never block


def mq_receive_now(fd: int, msgsize: int) -> tuple[bytes, int] | None:
    """The next message (highest priority first) and its priority, or None if the queue is empty."""
    buf = ffi.new("char[]", max(msgsize, 1))
    prio = ffi.new("unsigned int *")
    ret = lib.lxc_syscall6(SYS["mq_timedreceive"], fd, _addr(buf), msgsize, _addr(prio), _addr(_NO_WAIT), 0)
    if ret == -1 and ffi.errno in (errno.ETIMEDOUT, errno.EAGAIN):
        return None
    n = _check(ret, "mq_timedreceive")
    return bytes(ffi.buffer(buf, n)), prio[0]


def mq_send_now(fd: int, data: bytes, prio: int) -> None:
    """Queue one message; fails (ETIMEDOUT) rather than wait if the queue is full."""
    buf = ffi.new("char[]", data or b"\0")
    syscall("mq_timedsend", fd, _addr(buf), len(data), prio, _addr(_NO_WAIT))


def get_owner(fd: int) -> tuple[int, int]:
    """(type, pid) of the process or group that gets SIGIO/SIGURG for this open file (F_GETOWN_EX)."""
    o = ffi.new("int32_t[2]")
    syscall("fcntl", fd, F_GETOWN_EX, _addr(o))
    return o[0], o[1]


def set_owner(fd: int, owner_type: int, pid: int) -> None:
    o = ffi.new("int32_t[2]", [owner_type, pid])
    syscall("fcntl", fd, F_SETOWN_EX, _addr(o))


def lock_range(fd: int, cmd: int, write: bool, start: int, length: int) -> None:
    """Take a POSIX (F_SETLK) or OFD (F_OFD_SETLK) record lock without waiting."""
    # struct flock: short l_type, short l_whence, off_t l_start, off_t l_len, pid_t l_pid
    fl = ffi.new("char[]", struct.pack("<hhxxxxqqi4x", F_WRLCK if write else F_RDLCK, os.SEEK_SET,
                                       start, length, 0))
    syscall("fcntl", fd, cmd, _addr(fl))


# --- SysV IPC (engine/sysvipc.py); structures as the x86_64 kernel lays them out -----------

SYS.update(shmget=29, shmat=30, shmctl=31, semget=64, semctl=66, shmdt=67, msgget=68, msgsnd=69,
           msgrcv=70, msgctl=71)
IPC_PRIVATE = 0
IPC_CREAT, IPC_EXCL, IPC_NOWAIT = 0o1000, 0o2000, 0o4000
IPC_RMID, IPC_SET, IPC_STAT = 0, 1, 2
SHM_RDONLY, SHM_EXEC = 0o10000, 0o100000
SHM_LOCK = 11
SHM_DEST, SHM_LOCKED = 0o1000, 0o2000
GETALL, SETALL = 13, 17
MSG_COPY = 0o40000
# struct ipc64_perm: key, uid, gid, cuid, cgid, mode, seq (then padding to 48 bytes)
IPC_PERM = struct.Struct("<iIIIIIH")
IPC_PERM_SIZE = 48
SHMID_DS_SIZE, MSQID_DS_SIZE, SEMID_DS_SIZE = 112, 120, 104
SHM_SEGSZ, MSG_CBYTES, MSG_QNUM, MSG_QBYTES, SEM_NSEMS = 48, 72, 80, 88, 80


def ipc_stat(kind: str, ipc_id: int) -> bytes:
    """The raw *id64_ds of a SysV object (kind "shm", "msg" or "sem") by IPC_STAT."""
    size = {"shm": SHMID_DS_SIZE, "msg": MSQID_DS_SIZE, "sem": SEMID_DS_SIZE}[kind]
    buf = ffi.new("char[]", size)
    if kind == "sem":
        syscall("semctl", ipc_id, 0, IPC_STAT, _addr(buf))
    else:
        syscall(f"{kind}ctl", ipc_id, IPC_STAT, _addr(buf))
    return bytes(ffi.buffer(buf, size))


def ipc_set(kind: str, ipc_id: int, uid: int, gid: int, mode: int, qbytes: int | None = None) -> None:
    """IPC_SET: owner, permission bits and (message queues) qbytes."""
    size = {"shm": SHMID_DS_SIZE, "msg": MSQID_DS_SIZE, "sem": SEMID_DS_SIZE}[kind]
    buf = ffi.new("char[]", size)
    ffi.memmove(buf, IPC_PERM.pack(0, uid, gid, 0, 0, mode, 0), IPC_PERM.size)
    if qbytes is not None:
        ffi.memmove(buf + MSG_QBYTES, struct.pack("<Q", qbytes), 8)
    if kind == "sem":
        syscall("semctl", ipc_id, 0, IPC_SET, _addr(buf))
    else:
        syscall(f"{kind}ctl", ipc_id, IPC_SET, _addr(buf))


def shmat(shmid: int, addr: int, flags: int) -> int:
    return syscall("shmat", shmid, addr, flags)


def shmdt(addr: int) -> None:
    syscall("shmdt", addr)


def msgrcv_copy(msqid: int, index: int, size: int) -> tuple[int, bytes] | None:
    """Message number index of a queue, left in place (MSG_COPY); None past the last one."""
    buf = ffi.new("char[]", 8 + size)
    ret = lib.lxc_syscall6(SYS["msgrcv"], msqid, _addr(buf), size, index, IPC_NOWAIT | MSG_COPY, 0)
    if ret == -1 and ffi.errno == errno.ENOMSG:
        return None
    n = _check(ret, "msgrcv")
    return struct.unpack_from("<q", ffi.buffer(buf, 8))[0], bytes(ffi.buffer(buf + 8, n))


def msgsnd_now(msqid: int, mtype: int, text: bytes) -> None:
    buf = ffi.new("char[]", struct.pack("<q", mtype) + text)
    syscall("msgsnd", msqid, _addr(buf), len(text), IPC_NOWAIT)


def sem_getall(semid: int, nsems: int) -> list[int]:
    vals = ffi.new("unsigned short[]", max(nsems, 1))
    syscall("semctl", semid, 0, GETALL, _addr(vals))
    return list(vals)[:nsems]


def sem_setall(semid: int, values: list[int]) -> None:
    vals = ffi.new("unsigned short[]", values or [0])
    syscall("semctl", semid, 0, SETALL, _addr(vals))


# --- mounts (engine/mounts.py) ----------------------------------------------

SYS.update(pivot_root=155, mount=165, umount2=166, open_tree=428, move_mount=429, openat2=437)

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND = 0x20, 0x400, 0x800, 0x1000
MS_REC, MS_UNBINDABLE, MS_PRIVATE, MS_SLAVE, MS_SHARED = 0x4000, 0x20000, 0x40000, 0x80000, 0x100000
MS_RELATIME, MS_STRICTATIME = 0x200000, 0x1000000
MNT_DETACH = 2
OPEN_TREE_CLONE, AT_RECURSIVE, AT_EMPTY_PATH = 1, 0x8000, 0x1000
MOVE_MOUNT_F_EMPTY_PATH, MOVE_MOUNT_T_SYMLINKS = 4, 0x10
RESOLVE_NO_XDEV, RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS = 0x01, 0x02, 0x04
RESOLVE_BENEATH, RESOLVE_IN_ROOT = 0x08, 0x10
AT_FDCWD = -100


def _cstr(text: str | None):
    return ffi.new("char[]", os.fsencode(text)) if text is not None else ffi.NULL


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    bufs = [_cstr(x) for x in (source, target, fstype, data)]
    a = [_addr(b) if b != ffi.NULL else 0 for b in bufs]
    syscall("mount", a[0], a[1], a[2], flags, a[3])


def umount2(target: str, flags: int) -> None:
    p = _cstr(target)
    syscall("umount2", _addr(p), flags)


def pivot_root(new_root: str, put_old: str) -> None:
    a, b = _cstr(new_root), _cstr(put_old)
    syscall("pivot_root", _addr(a), _addr(b))


def open_tree(dirfd: int, path: str, flags: int) -> int:
    """A detached copy of the mount at path (OPEN_TREE_CLONE): an fd to attach with move_mount."""
    p = _cstr(path)
    return syscall("open_tree", dirfd & 0xFFFFFFFF, _addr(p), flags)


def move_mount_fd(tree_fd: int, target: str) -> None:
    """Attach a detached tree (open_tree, fsmount) at target."""
    a, b = _cstr(""), _cstr(target)
    syscall("move_mount", tree_fd, _addr(a), AT_FDCWD & 0xFFFFFFFF, _addr(b), MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_SYMLINKS)


def openat2(dirfd: int, path: str, flags: int, resolve: int, mode: int = 0) -> int:
    how = ffi.new("uint64_t[3]", [flags, mode, resolve])
    p = _cstr(path)
    return syscall("openat2", dirfd & 0xFFFFFFFF, _addr(p), _addr(how), 24)
