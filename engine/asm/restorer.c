/*
 * The restorer blob: the last code a restored task runs before its own.
 *
 * It owns everything the task can only do to itself once Python is gone:
 * tearing down the restoring address space, moving the premapped areas (and
 * the vDSO) into place, the mm fields, signal actions, timers, attributes,
 * the fd table's final shape, the other threads with their TIDs, per-thread
 * state, credentials and pending signals.  Every thread ends on int3; the
 * tracer then loads its registers.  The contract is restorer.h.
 *
 * Freestanding: no libc, no relocations, entry at offset 0.
 */
#include <stdint.h>
#include <stddef.h>
#include "restorer.h"

#define __NR_rt_sigaction       13
#define __NR_rt_sigprocmask     14
#define __NR_munmap             11
#define __NR_mremap             25
#define __NR_close              3
#define __NR_setitimer          38
#define __NR_getpid             39
#define __NR_rt_sigqueueinfo    129
#define __NR_rt_sigtimedwait    128
#define __NR_sigaltstack        131
#define __NR_personality        135
#define __NR_prctl              157
#define __NR_arch_prctl         158
#define __NR_setgroups          116
#define __NR_setresuid          117
#define __NR_setresgid          119
#define __NR_setfsuid           122
#define __NR_setfsgid           123
#define __NR_capset             126
#define __NR_umask              95
#define __NR_set_tid_address    218
#define __NR_timer_create       222
#define __NR_timer_settime      223
#define __NR_set_robust_list    273
#define __NR_rt_tgsigqueueinfo  297
#define __NR_rseq               334
#define __NR_clone3             435
#define __NR_close_range        436

#define MREMAP_MAYMOVE   1
#define MREMAP_FIXED     2
#define PR_SET_PDEATHSIG 1
#define PR_SET_DUMPABLE  4
#define PR_SET_KEEPCAPS  8
#define PR_SET_NAME      15
#define PR_CAPBSET_DROP  24
#define PR_GET_SECUREBITS 27
#define PR_SET_SECUREBITS 28
#define PR_SET_MM        35
#define PR_SET_MM_MAP    14
#define PR_SET_CHILD_SUBREAPER 36
#define PR_SET_NO_NEW_PRIVS 38
#define PR_SET_THP_DISABLE 41
#define PR_CAP_AMBIENT   47
#define PR_CAP_AMBIENT_RAISE 2
#define PR_TIMER_CREATE_RESTORE_IDS 77
#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18
#define SS_DISABLE       2
#define CAP_LAST         40

#define CLONE_VM      0x00000100
#define CLONE_FS      0x00000200
#define CLONE_FILES   0x00000400
#define CLONE_SIGHAND 0x00000800
#define CLONE_THREAD  0x00010000
#define CLONE_SYSVSEM 0x00040000

static inline long sys6(long nr, long a, long b, long c, long d, long e, long f)
{
    long ret;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "0"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}

#define sys0(n)             sys6(n, 0, 0, 0, 0, 0, 0)
#define sys1(n, a)          sys6(n, (long)(a), 0, 0, 0, 0, 0)
#define sys2(n, a, b)       sys6(n, (long)(a), (long)(b), 0, 0, 0, 0)
#define sys3(n, a, b, c)    sys6(n, (long)(a), (long)(b), (long)(c), 0, 0, 0)
#define sys4(n, a, b, c, d) sys6(n, (long)(a), (long)(b), (long)(c), (long)(d), 0, 0)
#define sys5(n, a, b, c, d, e) sys6(n, (long)(a), (long)(b), (long)(c), (long)(d), (long)(e), 0)

/* gcc may emit calls to these for struct copies and zeroing */
void *memcpy(void *dst, const void *src, size_t n)
{
    char *d = dst;
    const char *s = src;
    while (n--)
        *d++ = *s++;
    return dst;
}

void *memset(void *dst, int c, size_t n)
{
    char *d = dst;
    while (n--)
        *d++ = (char)c;
    return dst;
}

static void trap_forever(void)
{
    for (;;)
        __asm__ volatile("int3");
}

/* Record where we failed and stop; the tracer reads step and error and kills the task. */
static void fail(struct rst_args *a, uint32_t step, long err)
{
    a->step = step;
    a->error = (int32_t)err;
    trap_forever();
}

#define CHECK(a, step, expr)                    \
    do {                                        \
        long __r = (expr);                      \
        if (__r < 0 && __r > -4096)             \
            fail(a, step, __r);                 \
    } while (0)

static const uint64_t all_signals = ~0ull;

static void thread_setup(struct rst_args *a, struct rst_thread *t)
{
    a->step = RST_STEP_THREAD;
    sys1(__NR_set_tid_address, t->clear_tid);
    if (t->robust_list)
        CHECK(a, RST_STEP_THREAD, sys2(__NR_set_robust_list, t->robust_list, t->robust_len));
    struct { uint64_t sp; int32_t flags; int32_t pad; uint64_t size; } ss;
    if (t->altstack_flags & SS_DISABLE) {
        ss.sp = 0;
        ss.flags = SS_DISABLE;
        ss.size = 0;
    } else {
        ss.sp = t->altstack_sp;
        ss.flags = t->altstack_flags;
        ss.size = t->altstack_size;
    }
    ss.pad = 0;
    /* SS_ONSTACK is a state, not a flag one can set */
    if (!(ss.flags & SS_DISABLE))
        ss.flags &= ~1;
    CHECK(a, RST_STEP_THREAD, sys2(__NR_sigaltstack, &ss, 0));
    CHECK(a, RST_STEP_THREAD, sys5(__NR_prctl, PR_SET_PDEATHSIG, t->pdeath_signal, 0, 0, 0));
    sys5(__NR_prctl, PR_SET_NAME, t->comm, 0, 0, 0);
    if (t->rseq_ptr) {
        CHECK(a, RST_STEP_THREAD, sys4(__NR_rseq, t->rseq_ptr, t->rseq_len, 0, t->rseq_sig));
        *(volatile uint64_t *)(t->rseq_ptr + 8) = t->rseq_cs;
    }
    if (t->amx) {
        /* A task's fpstate only grows to hold tile data after it runs a tile
           instruction; until then the tracer cannot load AMX state. */
        static const uint8_t cfg[64] __attribute__((aligned(64))) = { 1 };
        uint8_t tilecfg[64] __attribute__((aligned(64)));
        for (int i = 0; i < 64; i++)
            tilecfg[i] = cfg[i];
        tilecfg[16] = 4;          /* tile 0: 4 bytes per row */
        tilecfg[48] = 1;          /* tile 0: 1 row */
        CHECK(a, RST_STEP_THREAD, sys2(__NR_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA));
        /* ldtilecfg (%rax); tilezero %tmm0 */
        __asm__ volatile(".byte 0xc4, 0xe2, 0x78, 0x49, 0x00\n\t"
                         ".byte 0xc4, 0xe2, 0x7b, 0x49, 0xc0"
                         : : "a"(tilecfg) : "memory");
    }
}

static void restore_creds(struct rst_args *a)
{
    struct rst_creds *c = &a->creds;
    a->step = RST_STEP_CREDS;
    CHECK(a, RST_STEP_CREDS, sys5(__NR_prctl, PR_SET_KEEPCAPS, 1, 0, 0, 0));
    for (int cap = 0; cap <= CAP_LAST; cap++)
        if (!(c->cap_bnd & (1ull << cap)))
            CHECK(a, RST_STEP_CREDS, sys5(__NR_prctl, PR_CAPBSET_DROP, cap, 0, 0, 0));
    if (sys5(__NR_prctl, PR_GET_SECUREBITS, 0, 0, 0, 0) != (long)c->securebits)
        CHECK(a, RST_STEP_CREDS, sys5(__NR_prctl, PR_SET_SECUREBITS, c->securebits, 0, 0, 0));
    CHECK(a, RST_STEP_CREDS, sys2(__NR_setgroups, c->ngroups, c->groups));
    CHECK(a, RST_STEP_CREDS, sys3(__NR_setresgid, c->gid, c->egid, c->sgid));
    CHECK(a, RST_STEP_CREDS, sys3(__NR_setresuid, c->uid, c->euid, c->suid));
    sys1(__NR_setfsgid, c->fsgid);
    sys1(__NR_setfsuid, c->fsuid);
    struct { uint32_t version; int32_t pid; } hdr = { 0x20080522, 0 };
    struct { uint32_t eff, prm, inh; } data[2] = {
        { (uint32_t)c->cap_eff, (uint32_t)c->cap_prm, (uint32_t)c->cap_inh },
        { (uint32_t)(c->cap_eff >> 32), (uint32_t)(c->cap_prm >> 32), (uint32_t)(c->cap_inh >> 32) },
    };
    CHECK(a, RST_STEP_CREDS, sys2(__NR_capset, &hdr, data));
    for (int cap = 0; cap <= CAP_LAST; cap++)
        if (c->cap_amb & (1ull << cap))
            CHECK(a, RST_STEP_CREDS, sys5(__NR_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0));
    if (a->no_new_privs)
        CHECK(a, RST_STEP_CREDS, sys5(__NR_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0));
}

/* Signals that reached the task while it was being rebuilt (a zombie child's
   SIGCHLD...) are not the task's: take them off the queue. */
static void drain_signals(void)
{
    struct { int64_t sec, nsec; } zero = { 0, 0 };
    while (sys4(__NR_rt_sigtimedwait, &all_signals, 0, &zero, 8) > 0)
        ;
}

static void queue_signals(struct rst_args *a, struct rst_siginfo *info, uint32_t n, int tid)
{
    long pid = sys0(__NR_getpid);
    for (uint32_t i = 0; i < n; i++) {
        int signo = *(int32_t *)info[i].data;
        long r = tid ? sys4(__NR_rt_tgsigqueueinfo, pid, tid, signo, info[i].data)
                     : sys3(__NR_rt_sigqueueinfo, pid, signo, info[i].data);
        CHECK(a, RST_STEP_SIGNALS, r);
    }
}

/* The end of every thread: its own state, its credentials, its queue, then the trap. */
static void __attribute__((noreturn, used)) thread_main(struct rst_args *a, struct rst_thread *t)
{
    thread_setup(a, t);
    restore_creds(a);
    queue_signals(a, (struct rst_siginfo *)t->siginfo, t->n_siginfo, t->tid);
    trap_forever();
    __builtin_unreachable();
}

/* clone3 for a thread: the child starts on its own stack, straight in thread_main. */
static long new_thread(struct rst_args *a, struct rst_thread *t, uint64_t stack_base, uint64_t stack_size)
{
    /* set_tid lists the TID innermost namespace first */
    int32_t tids[2] = { t->tid, t->outer_tid };
    struct {
        uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid,
            set_tid_size, cgroup;
    } ca = {
        .flags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM,
        .stack = stack_base,
        .stack_size = stack_size,
        .set_tid = (uint64_t)tids,
        .set_tid_size = t->outer_tid ? 2 : 1,
    };
    long ret;
    register long r12 __asm__("r12") = (long)a;
    register long r13 __asm__("r13") = (long)t;
    __asm__ volatile(
        "syscall\n\t"
        "test %%rax, %%rax\n\t"
        "jnz 1f\n\t"
        /* child: a fresh stack, nothing of the parent's frame */
        "and $-16, %%rsp\n\t"
        "mov %%r12, %%rdi\n\t"
        "mov %%r13, %%rsi\n\t"
        "call thread_main\n\t"
        "ud2\n"
        "1:"
        : "=a"(ret)
        : "0"(__NR_clone3), "D"(&ca), "S"(sizeof(ca)), "r"(r12), "r"(r13)
        : "rcx", "r11", "memory");
    return ret;
}

/* POSIX timers with their ids; after the threads exist, as a timer may notify one of them. */
static void restore_timers(struct rst_args *a)
{
    a->step = RST_STEP_TIMER;
    if (a->n_timers) {
        struct rst_posix_timer *pt = (struct rst_posix_timer *)a->timers;
        CHECK(a, RST_STEP_TIMER, sys5(__NR_prctl, PR_TIMER_CREATE_RESTORE_IDS, 1, 0, 0, 0));
        for (uint32_t i = 0; i < a->n_timers; i++) {
            struct { uint64_t value; int32_t signo, notify; int32_t tid; int32_t pad[11]; } sev;
            memset(&sev, 0, sizeof(sev));
            sev.value = pt[i].sigev_value;
            sev.signo = pt[i].sigev_signo;
            sev.notify = pt[i].sigev_notify;
            sev.tid = pt[i].notify_tid;
            int32_t id = pt[i].id;
            CHECK(a, RST_STEP_TIMER, sys3(__NR_timer_create, pt[i].clock_id, &sev, &id));
            if (id != pt[i].id)
                fail(a, RST_STEP_TIMER, -17);
            struct { int64_t is, ins, vs, vns; } its = {
                pt[i].interval_sec, pt[i].interval_nsec, pt[i].value_sec, pt[i].value_nsec };
            if (its.vs || its.vns)
                CHECK(a, RST_STEP_TIMER, sys4(__NR_timer_settime, id, 0, &its, 0));
        }
        sys5(__NR_prctl, PR_TIMER_CREATE_RESTORE_IDS, 0, 0, 0, 0);
    }
}

static void __attribute__((noreturn, used)) restore_main(struct rst_args *a)
{
    a->step = RST_STEP_START;
    sys4(__NR_rt_sigprocmask, 0 /* SIG_BLOCK */, &all_signals, 0, 8);
    if (a->old_rseq_ptr)
        sys4(__NR_rseq, a->old_rseq_ptr, a->old_rseq_len, 1 /* UNREGISTER */, a->old_rseq_sig);

    a->step = RST_STEP_UNMAP;
    struct rst_range *un = (struct rst_range *)a->unmap;
    for (uint32_t i = 0; i < a->n_unmap; i++)
        CHECK(a, RST_STEP_UNMAP, sys2(__NR_munmap, un[i].start, un[i].end - un[i].start));

    a->step = RST_STEP_MOVE;
    struct rst_move *mv = (struct rst_move *)a->moves;
    for (uint32_t i = 0; i < a->n_moves; i++) {
        long r = sys5(__NR_mremap, mv[i].src, mv[i].len, mv[i].len, MREMAP_MAYMOVE | MREMAP_FIXED, mv[i].dst);
        if (r != (long)mv[i].dst)
            fail(a, RST_STEP_MOVE, r < 0 ? r : -14);
    }

    a->step = RST_STEP_MM;
    CHECK(a, RST_STEP_MM, sys5(__NR_prctl, PR_SET_MM, PR_SET_MM_MAP, &a->mm, sizeof(a->mm), 0));
    if (a->mm.exe_fd != (uint32_t)-1)
        sys1(__NR_close, a->mm.exe_fd);

    a->step = RST_STEP_SIGACTION;
    struct rst_sigaction *sa = (struct rst_sigaction *)a->sigactions;
    for (int sig = 1; sig <= RST_NSIG; sig++) {
        if (sig == 9 || sig == 19)
            continue;
        CHECK(a, RST_STEP_SIGACTION, sys4(__NR_rt_sigaction, sig, &sa[sig - 1], 0, 8));
    }

    a->step = RST_STEP_ITIMER;
    for (int which = 0; which < 3; which++)
        CHECK(a, RST_STEP_ITIMER, sys3(__NR_setitimer, which, &a->itimers[which], 0));

    a->step = RST_STEP_TASK;
    sys1(__NR_personality, a->personality);
    sys1(__NR_umask, a->umask);
    CHECK(a, RST_STEP_TASK, sys5(__NR_prctl, PR_SET_CHILD_SUBREAPER, a->child_subreaper, 0, 0, 0));
    CHECK(a, RST_STEP_TASK, sys5(__NR_prctl, PR_SET_DUMPABLE, a->dumpable, 0, 0, 0));
    if (a->thp_disable)
        CHECK(a, RST_STEP_TASK, sys5(__NR_prctl, PR_SET_THP_DISABLE, 1, 0, 0, 0));

    a->step = RST_STEP_FDS;
    int32_t *keep = (int32_t *)a->keep_fds;
    uint32_t next = 0;
    for (uint32_t i = 0; i < a->n_keep_fds; i++) {
        if ((uint32_t)keep[i] > next)
            CHECK(a, RST_STEP_FDS, sys3(__NR_close_range, next, keep[i] - 1, 0));
        next = keep[i] + 1;
    }
    CHECK(a, RST_STEP_FDS, sys3(__NR_close_range, next, ~0u, 0));

    a->step = RST_STEP_THREADS;
    struct rst_thread *th = (struct rst_thread *)a->threads;
    for (uint32_t i = 1; i < a->n_threads; i++) {
        /* each thread's stack ends at stack_top; give it the 16 KiB below */
        long r = new_thread(a, &th[i], th[i].stack_top - 16384, 16384);
        if (r != th[i].tid)
            fail(a, RST_STEP_THREADS, r < 0 ? r : -17);
    }

    restore_timers(a);
    thread_setup(a, &th[0]);
    restore_creds(a);
    drain_signals();
    a->step = RST_STEP_SIGNALS;
    queue_signals(a, (struct rst_siginfo *)a->shared_siginfo, a->n_shared_siginfo, 0);
    queue_signals(a, (struct rst_siginfo *)th[0].siginfo, th[0].n_siginfo, th[0].tid);
    a->step = RST_STEP_TRAP;
    trap_forever();
    __builtin_unreachable();
}

_Static_assert(offsetof(struct rst_args, threads) == 0x118, "entry below hard-codes this offset");
_Static_assert(offsetof(struct rst_thread, stack_top) == 0x8, "entry below hard-codes this offset");

/* Offset 0: leave the caller's stack (it is about to be unmapped) for our own. */
__asm__(".section .text.entry, \"ax\"\n"
        ".globl entry\n"
        "entry:\n"
        "  mov %rdi, %rbx\n"
        "  mov 0x118(%rdi), %rax\n"      /* a->threads */
        "  mov 0x8(%rax), %rsp\n"        /* threads[0].stack_top */
        "  and $-16, %rsp\n"
        "  mov %rbx, %rdi\n"
        "  call restore_main\n"
        "  ud2\n"
        ".previous\n");
