"""Builds lxc_cr.engine._native, the one compiled module every syscall goes through.

cffi releases the GIL around every call into this module, so nothing here
touches Python objects (lxc_clone3_fork takes the GIL back for the fork hooks).

Run from engine/ by `make native`.  Everything here is a thin wrapper over a
system call or a kernel structure; policy and error handling live in
engine/kernel.py.  Debian 12's kernel headers are 6.1-era, so constants newer
than that are defined here by value (see the reference's appendix).
"""
import pathlib

from cffi import FFI

HERE = pathlib.Path(__file__).resolve().parent
RESTORER_H = (HERE / "asm" / "restorer.h").read_text()


def _cdef_of_header(text: str) -> str:
    """The struct part of restorer.h, stripped of preprocessor lines for cdef."""
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    return "\n".join(lines)


CDEF = r"""
typedef int32_t pid_t;

struct iovec { void *iov_base; size_t iov_len; };

"""

# Kernel structures, shared verbatim by the cdef and the C source.
STRUCTS = r"""
struct user_regs_struct {
    uint64_t r15, r14, r13, r12, rbp, rbx, r11, r10, r9, r8, rax, rcx, rdx,
             rsi, rdi, orig_rax, rip, cs, eflags, rsp, ss, fs_base, gs_base,
             ds, es, fs, gs;
};

struct clone_args {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack,
             stack_size, tls, set_tid, set_tid_size, cgroup;
};

struct page_region { uint64_t start, end, categories; };
struct pm_scan_arg {
    uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages,
             category_inverted, category_mask, category_anyof_mask, return_mask;
};

struct peeksiginfo_args { uint64_t off; uint32_t flags; int32_t nr; };
struct rseq_configuration { uint64_t rseq_abi_pointer; uint32_t rseq_abi_size, signature, flags, pad; };
struct seccomp_metadata { uint64_t filter_off; uint64_t flags; };
struct sock_filter { uint16_t code; uint8_t jt; uint8_t jf; uint32_t k; };
struct sock_fprog { unsigned short len; struct sock_filter *filter; };
struct rlimit64 { uint64_t cur, max; };
struct cap_header { uint32_t version; int32_t pid; };
struct cap_data { uint32_t effective, permitted, inheritable; };

"""

WRAPPERS = r"""
/* errno-returning wrappers: -1 and errno set, like libc. */
long lxc_ptrace(long request, pid_t pid, uint64_t addr, uint64_t data);
long lxc_syscall6(long nr, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5, uint64_t a6);
pid_t lxc_wait(pid_t pid, int *status, int options);

/* clone3 from Python: the parent gets the child's pid, the child gets 0 and a
   Python runtime made safe for a single thread (fork hooks run). */
pid_t lxc_clone3_fork(struct clone_args *args);

/* futex helpers on shared memory, used as barriers between restoring tasks */
int lxc_futex_wait(uint32_t *addr, uint32_t val, int64_t timeout_ms);
int lxc_futex_wake(uint32_t *addr, int n);
uint32_t lxc_atomic_inc(uint32_t *addr);

/* the running thread's own rseq area, to hand to the restorer */
uint64_t lxc_self_rseq_ptr(void);
uint32_t lxc_self_rseq_size(void);

/* CPU state components: XCR0 and the size of an xsave block */
uint64_t lxc_xgetbv0(void);
uint32_t lxc_xsave_size(void);

/* jumping into the restorer blob; never returns */
void lxc_call_blob(uint64_t entry, uint64_t arg);

/* bulk memory movement that never passes through Python objects */
ssize_t lxc_process_vm_readv(pid_t pid, const struct iovec *local, unsigned long liovcnt,
                             const struct iovec *remote, unsigned long riovcnt);
ssize_t lxc_process_vm_writev(pid_t pid, const struct iovec *local, unsigned long liovcnt,
                              const struct iovec *remote, unsigned long riovcnt);
ssize_t lxc_preadv(int fd, const struct iovec *iov, int iovcnt, int64_t off);
ssize_t lxc_pwritev(int fd, const struct iovec *iov, int iovcnt, int64_t off);
void *lxc_mmap(uint64_t addr, size_t len, int prot, int flags, int fd, int64_t off);
int lxc_munmap(uint64_t addr, size_t len);
int lxc_mprotect(uint64_t addr, size_t len, int prot);
int lxc_madvise(uint64_t addr, size_t len, int advice);
ssize_t lxc_copy_file_range(int fd_in, int64_t *off_in, int fd_out, int64_t *off_out, size_t len);
ssize_t lxc_sendfile(int out_fd, int in_fd, int64_t *offset, size_t count);
"""

SOURCE = r"""
#include <Python.h>
#include <errno.h>
#include <stdint.h>
#include <sched.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <sys/sendfile.h>
#include <linux/futex.h>
#include <time.h>
#include <cpuid.h>

"""

SOURCE_TAIL = r"""
#include "asm/restorer.h"

/* cffi builds against the limited API, which leaves these out; they are
   exported by every CPython >= 3.7 all the same. */
void PyOS_BeforeFork(void);
void PyOS_AfterFork_Parent(void);
void PyOS_AfterFork_Child(void);

extern const ptrdiff_t __rseq_offset __attribute__((weak));
extern const unsigned int __rseq_size __attribute__((weak));

static long lxc_ptrace(long request, pid_t pid, uint64_t addr, uint64_t data)
{
    /* the raw syscall: glibc's wrapper treats PEEK* requests specially */
    return syscall(SYS_ptrace, request, pid, addr, data);
}

static long lxc_syscall6(long nr, uint64_t a1, uint64_t a2, uint64_t a3,
                         uint64_t a4, uint64_t a5, uint64_t a6)
{
    return syscall(nr, a1, a2, a3, a4, a5, a6);
}

static pid_t lxc_wait(pid_t pid, int *status, int options)
{
    pid_t r;
    r = waitpid(pid, status, options);
    return r;
}

static pid_t lxc_clone3_fork(struct clone_args *args)
{
    long r;
    int saved;
    /* cffi released the GIL around this call; the fork hooks need it */
    PyGILState_STATE gil = PyGILState_Ensure();
    PyOS_BeforeFork();
    r = syscall(SYS_clone3, args, sizeof(*args));
    saved = errno;
    if (r == 0)
        PyOS_AfterFork_Child();
    else
        PyOS_AfterFork_Parent();
    PyGILState_Release(gil);
    errno = saved;
    return (pid_t)r;
}

static int lxc_futex_wait(uint32_t *addr, uint32_t val, int64_t timeout_ms)
{
    struct timespec ts, *tsp = NULL;
    long r;
    if (timeout_ms >= 0) {
        ts.tv_sec = timeout_ms / 1000;
        ts.tv_nsec = (timeout_ms % 1000) * 1000000;
        tsp = &ts;
    }
    r = syscall(SYS_futex, addr, FUTEX_WAIT, val, tsp, NULL, 0);
    return (int)r;
}

static int lxc_futex_wake(uint32_t *addr, int n)
{
    return (int)syscall(SYS_futex, addr, FUTEX_WAKE, n, NULL, NULL, 0);
}

static uint32_t lxc_atomic_inc(uint32_t *addr)
{
    return __atomic_add_fetch(addr, 1, __ATOMIC_SEQ_CST);
}

static uint64_t lxc_self_rseq_ptr(void)
{
    if (&__rseq_offset == NULL || &__rseq_size == NULL || __rseq_size == 0)
        return 0;
    return (uint64_t)((char *)__builtin_thread_pointer() + __rseq_offset);
}

static uint32_t lxc_self_rseq_size(void)
{
    if (&__rseq_size == NULL)
        return 0;
    /* glibc 2.36 reports 20 (the used part) but registered 32 bytes */
    return __rseq_size < 32 ? 32 : __rseq_size;
}

static uint64_t lxc_xgetbv0(void)
{
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static uint32_t lxc_xsave_size(void)
{
    uint32_t a, b, c, d;
    __cpuid_count(0xd, 0, a, b, c, d);
    return c;
}

static void lxc_call_blob(uint64_t entry, uint64_t arg)
{
    ((void (*)(uint64_t))entry)(arg);
    __builtin_trap();
}

static ssize_t lxc_process_vm_readv(pid_t pid, const struct iovec *l, unsigned long ln,
                                    const struct iovec *r, unsigned long rn)
{
    ssize_t n;
    n = process_vm_readv(pid, l, ln, r, rn, 0);
    return n;
}

static ssize_t lxc_process_vm_writev(pid_t pid, const struct iovec *l, unsigned long ln,
                                     const struct iovec *r, unsigned long rn)
{
    return process_vm_writev(pid, l, ln, r, rn, 0);
}

static ssize_t lxc_preadv(int fd, const struct iovec *iov, int n, int64_t off)
{
    ssize_t r;
    r = preadv(fd, iov, n, off);
    return r;
}

static ssize_t lxc_pwritev(int fd, const struct iovec *iov, int n, int64_t off)
{
    ssize_t r;
    r = pwritev(fd, iov, n, off);
    return r;
}

static void *lxc_mmap(uint64_t addr, size_t len, int prot, int flags, int fd, int64_t off)
{
    return mmap((void *)addr, len, prot, flags, fd, off);
}

static int lxc_munmap(uint64_t addr, size_t len) { return munmap((void *)addr, len); }
static int lxc_mprotect(uint64_t addr, size_t len, int prot) { return mprotect((void *)addr, len, prot); }
static int lxc_madvise(uint64_t addr, size_t len, int advice) { return madvise((void *)addr, len, advice); }

static ssize_t lxc_copy_file_range(int fd_in, int64_t *off_in, int fd_out, int64_t *off_out, size_t len)
{
    ssize_t r;
    r = copy_file_range(fd_in, (off_t *)off_in, fd_out, (off_t *)off_out, len, 0);
    return r;
}

static ssize_t lxc_sendfile(int out_fd, int in_fd, int64_t *offset, size_t count)
{
    ssize_t r;
    r = sendfile(out_fd, in_fd, (off_t *)offset, count);
    return r;
}
"""


def build() -> None:
    ffi = FFI()
    ffi.cdef(CDEF + STRUCTS + WRAPPERS + _cdef_of_header(RESTORER_H))
    ffi.set_source("_native", SOURCE + STRUCTS + SOURCE_TAIL, include_dirs=[str(HERE)],
                   extra_compile_args=["-O2", "-Wall", "-Wno-unused-function"])
    ffi.compile(tmpdir=str(HERE), verbose=False)


if __name__ == "__main__":
    build()
