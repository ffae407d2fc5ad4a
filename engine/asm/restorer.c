/*
 * The restorer blob: the last code a restored task runs before its own.
 *
 * It owns what a task can only do to itself, once the Python restorer's
 * address space is gone: dropping that address space, moving the premapped
 * areas (and the vDSO) into place, the mm fields, signal actions, interval
 * and POSIX timers, process attributes, the final shape of the fd table, the
 * other threads with their TIDs, and per thread: tid address, robust list,
 * sigaltstack, name, rseq, AMX state size, credentials and pending signals.
 * Every thread then stops on int3 and the tracer loads its registers.
 *
 * The contract with Python is restorer.h.  entry.S has the entry point (at
 * offset 0) and the clone3 call.  Freestanding: no libc, no relocations,
 * no writable data; all state lives in struct rst_args and on the stacks.
 *
 * On failure a thread stores the step and the negative errno in rst_args
 * and traps forever; the tracer reads them and kills the task.
 */
#include <stdint.h>
#include <stddef.h>
#include "restorer.h"

#define NR_close                3
#define NR_munmap               11
#define NR_rt_sigaction         13
#define NR_rt_sigprocmask       14
#define NR_mremap               25
#define NR_setitimer            38
#define NR_getpid               39
#define NR_umask                95
#define NR_setgroups            116
#define NR_setresuid            117
#define NR_setresgid            119
#define NR_setfsuid             122
#define NR_setfsgid             123
#define NR_capget               125
#define NR_capset               126
#define NR_rt_sigtimedwait      128
#define NR_rt_sigqueueinfo      129
#define NR_sigaltstack          131
#define NR_personality          135
#define NR_prctl                157
#define NR_arch_prctl           158
#define NR_futex                202
#define NR_set_tid_address      218
#define NR_timer_create         222
#define NR_timer_settime        223
#define NR_set_robust_list      273
#define NR_rt_tgsigqueueinfo    297
#define NR_rseq                 334
#define NR_close_range          436

#define EPERM   1
#define EEXIST  17

#define SIG_BLOCK               0
#define SIG_UNBLOCK             1
#define SIGTRAP                 5
#define SIGKILL                 9
#define SIGSTOP                 19
#define SS_DISABLE              2
#define MREMAP_MAYMOVE          1
#define MREMAP_FIXED            2
#define RSEQ_FLAG_UNREGISTER    1
#define FUTEX_WAIT_PRIVATE      128
#define FUTEX_WAKE_PRIVATE      129

#define PR_SET_PDEATHSIG        1
#define PR_SET_DUMPABLE         4
#define PR_SET_NAME             15
#define PR_CAPBSET_READ         23
#define PR_CAPBSET_DROP         24
#define PR_GET_SECUREBITS       27
#define PR_SET_SECUREBITS       28
#define PR_SET_MM               35
#define PR_SET_MM_MAP           14
#define PR_SET_CHILD_SUBREAPER  36
#define PR_SET_NO_NEW_PRIVS     38
#define PR_SET_THP_DISABLE      41
#define PR_CAP_AMBIENT          47
#define PR_CAP_AMBIENT_RAISE    2
#define PR_TIMER_CREATE_RESTORE_IDS 77
#define SECBIT_NO_SETUID_FIXUP  (1 << 2)
#define CAP_VERSION_3           0x20080522
#define ARCH_REQ_XCOMP_PERM     0x1023
#define XFEATURE_XTILEDATA      18

#define CLONE_THREAD_FLAGS      (0x100 | 0x200 | 0x400 | 0x800 | 0x10000 | 0x40000)
        /* CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM */

/* clone3 gets this much of a thread's stack, ending at stack_top; Python gives at least as much. */
#define THREAD_STACK            (16 << 10)

/* entry.S reads these two fields by offset. */
_Static_assert(offsetof(struct rst_args, threads) == 0x118, "RST_ARGS_THREADS in entry.S");
_Static_assert(offsetof(struct rst_thread, stack_top) == 0x8, "RST_THREAD_STACK_TOP in entry.S");
_Static_assert(sizeof(struct rst_mm_map) == 104, "struct prctl_mm_map");

struct clone_args {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls;
    uint64_t set_tid, set_tid_size, cgroup;
};

struct ksigevent {              /* the kernel's struct sigevent: 64 bytes */
    uint64_t value;
    int32_t signo, notify, tid;
    int32_t pad[11];
};

struct cap_data {               /* struct __user_cap_data_struct */
    uint32_t eff, prm, inh;
};

long spawn_thread(struct clone_args *ca, size_t size, struct rst_args *a,
                  struct rst_thread *t, uint32_t *done);
void restore_main(struct rst_args *a) __attribute__((noreturn));
void thread_main(struct rst_args *a, struct rst_thread *t, uint32_t *done) __attribute__((noreturn));

static long sys6(long nr, long a, long b, long c, long d, long e, long f)
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

/* SYS(nr, args...): up to six arguments, the missing ones 0. */
#define SYS_(n, a, b, c, d, e, f, ...) \
    sys6(n, (long)(a), (long)(b), (long)(c), (long)(d), (long)(e), (long)(f))
#define SYS(...) SYS_(__VA_ARGS__, 0, 0, 0, 0, 0, 0)

/* gcc may emit calls to these for struct initialisation and copies. */
void *memset(void *dst, int c, size_t n)
{
    unsigned char *d = dst;
    while (n--)
        *d++ = (unsigned char)c;
    return dst;
}

void *memcpy(void *dst, const void *src, size_t n)
{
    unsigned char *d = dst;
    const unsigned char *s = src;
    while (n--)
        *d++ = *s++;
    return dst;
}

static void __attribute__((noreturn)) trap_forever(void)
{
    for (;;)
        __asm__ volatile("int3");
}

/* Tell the tracer where and why, then stop for good. */
static void __attribute__((noreturn)) fail(struct rst_args *a, uint32_t step, long err)
{
    a->step = step;
    a->error = (int32_t)err;
    trap_forever();
}

static int is_error(long r)
{
    return (unsigned long)r > -4096UL;
}

/* Results in -4095..-1 are errors; anything else is passed through. */
static long check(struct rst_args *a, uint32_t step, long r)
{
    if (is_error(r))
        fail(a, step, r);
    return r;
}

/* ---- per thread ------------------------------------------------------- */

static void enable_amx(struct rst_args *a)
{
    /* The kernel only enlarges a thread's fpstate for tile data when the
     * thread executes a tile instruction; until then the tracer cannot load
     * an image with AMX state (SETREGSET gives EINVAL). */
    uint8_t cfg[64] __attribute__((aligned(64)));

    check(a, RST_STEP_THREAD, SYS(NR_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA));
    memset(cfg, 0, sizeof(cfg));
    cfg[0] = 1;                 /* palette 1 */
    cfg[16] = 4;                /* colsb[0] = 4 bytes */
    cfg[48] = 1;                /* rows[0] = 1 */
    __asm__ volatile("ldtilecfg %0\n\ttilezero %%tmm0" : : "m"(cfg));
}

/* What the kernel keeps per thread, apart from credentials. */
static void thread_setup(struct rst_args *a, struct rst_thread *t)
{
    struct { uint64_t sp; int32_t flags; int32_t pad; uint64_t size; } ss = { 0, SS_DISABLE, 0, 0 };

    SYS(NR_set_tid_address, t->clear_tid);
    if (t->robust_list)
        check(a, RST_STEP_THREAD, SYS(NR_set_robust_list, t->robust_list, t->robust_len));
    if (!(t->altstack_flags & SS_DISABLE)) {
        ss.sp = t->altstack_sp;
        ss.flags = t->altstack_flags;
        ss.size = t->altstack_size;
    }
    check(a, RST_STEP_THREAD, SYS(NR_sigaltstack, &ss, 0));
    check(a, RST_STEP_THREAD, SYS(NR_prctl, PR_SET_NAME, t->comm));
    /* rseq_cs is written back just before the trap: see finish() */
    if (t->rseq_ptr)
        check(a, RST_STEP_THREAD, SYS(NR_rseq, t->rseq_ptr, t->rseq_len, 0, t->rseq_sig));
    if (t->amx)
        enable_amx(a);
}

/*
 * Credentials are per thread in the kernel, so every thread sets its own.
 * The order keeps the privileges each step needs until the last capset:
 * NO_SETUID_FIXUP keeps the capabilities across the uid change, CAP_SETPCAP
 * stays effective for the bounding set and securebits, and the inheritable
 * set goes in before the bounding set shrinks (capset checks it against it).
 */
static void thread_creds(struct rst_args *a, struct rst_thread *t)
{
    const struct rst_creds *c = &a->creds;
    struct { uint32_t version; int32_t pid; } hdr = { CAP_VERSION_3, 0 };
    struct cap_data cap[2];
    long sb, r;
    int n;

    sb = check(a, RST_STEP_CREDS, SYS(NR_prctl, PR_GET_SECUREBITS));
    if (!(sb & SECBIT_NO_SETUID_FIXUP))
        check(a, RST_STEP_CREDS, SYS(NR_prctl, PR_SET_SECUREBITS, sb | SECBIT_NO_SETUID_FIXUP));

    check(a, RST_STEP_CREDS, SYS(NR_setgroups, c->ngroups, c->groups));
    check(a, RST_STEP_CREDS, SYS(NR_setresgid, c->gid, c->egid, c->sgid));
    check(a, RST_STEP_CREDS, SYS(NR_setresuid, c->uid, c->euid, c->suid));
    /* setfs[ug]id return the old value, never an error: ask again with -1 */
    SYS(NR_setfsgid, c->fsgid);
    if ((uint32_t)SYS(NR_setfsgid, -1) != c->fsgid)
        fail(a, RST_STEP_CREDS, -EPERM);
    SYS(NR_setfsuid, c->fsuid);
    if ((uint32_t)SYS(NR_setfsuid, -1) != c->fsuid)
        fail(a, RST_STEP_CREDS, -EPERM);

    /* inheritable first (so ambient can be raised), the rest as it is */
    check(a, RST_STEP_CREDS, SYS(NR_capget, &hdr, cap));
    cap[0].inh = (uint32_t)c->cap_inh;
    cap[1].inh = (uint32_t)(c->cap_inh >> 32);
    check(a, RST_STEP_CREDS, SYS(NR_capset, &hdr, cap));
    for (n = 0; n < 64; n++)
        if (c->cap_amb & (1ULL << n))
            check(a, RST_STEP_CREDS, SYS(NR_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, n));

    /* the bounding set, as far as this kernel knows capabilities */
    for (n = 0; n < 64; n++) {
        r = SYS(NR_prctl, PR_CAPBSET_READ, n);
        if (is_error(r))
            break;
        if (r == 1 && !(c->cap_bnd & (1ULL << n)))
            check(a, RST_STEP_CREDS, SYS(NR_prctl, PR_CAPBSET_DROP, n));
    }

    if (check(a, RST_STEP_CREDS, SYS(NR_prctl, PR_GET_SECUREBITS)) != (long)c->securebits)
        check(a, RST_STEP_CREDS, SYS(NR_prctl, PR_SET_SECUREBITS, c->securebits));

    cap[0].eff = (uint32_t)c->cap_eff;
    cap[1].eff = (uint32_t)(c->cap_eff >> 32);
    cap[0].prm = (uint32_t)c->cap_prm;
    cap[1].prm = (uint32_t)(c->cap_prm >> 32);
    check(a, RST_STEP_CREDS, SYS(NR_capset, &hdr, cap));

    if (a->no_new_privs)
        check(a, RST_STEP_CREDS, SYS(NR_prctl, PR_SET_NO_NEW_PRIVS, 1));
    /* a change of uid/gid/caps clears the parent-death signal: set it after */
    check(a, RST_STEP_CREDS, SYS(NR_prctl, PR_SET_PDEATHSIG, t->pdeath_signal));
}

/* Queue siginfos: tid 0 = the process-wide queue, else that thread's own. */
static void queue_signals(struct rst_args *a, uint64_t info, uint32_t n, int32_t tid)
{
    long pid = SYS(NR_getpid);
    struct rst_siginfo *si = (struct rst_siginfo *)info;
    uint32_t i;

    for (i = 0; i < n; i++) {
        int32_t signo = *(int32_t *)si[i].data;
        if (tid)
            check(a, RST_STEP_SIGNALS, SYS(NR_rt_tgsigqueueinfo, pid, tid, signo, si[i].data));
        else
            check(a, RST_STEP_SIGNALS, SYS(NR_rt_sigqueueinfo, pid, signo, si[i].data));
    }
}

static int queued(uint64_t info, uint32_t n, int32_t sig)
{
    const struct rst_siginfo *si = (const struct rst_siginfo *)info;
    uint32_t i;

    for (i = 0; i < n; i++)
        if (*(const int32_t *)si[i].data == sig)
            return 1;
    return 0;
}

/* The last thing a thread does: hand over to the tracer. */
static void __attribute__((noreturn)) finish(struct rst_args *a, struct rst_thread *t)
{
    uint64_t trap = 1ULL << (SIGTRAP - 1);

    /* int3 forces a SIGTRAP, and a forced signal that is blocked gets
     * unblocked and its action reset to SIG_DFL.  Unblock it ourselves to
     * keep the action (the tracer loads the real mask), unless one of the
     * task's own SIGTRAPs is queued: that one would be delivered first. */
    if (!queued(a->shared_siginfo, a->n_shared_siginfo, SIGTRAP) &&
        !queued(t->siginfo, t->n_siginfo, SIGTRAP))
        SYS(NR_rt_sigprocmask, SIG_UNBLOCK, &trap, 0, 8);
    /* The kernel clears rseq_cs when it returns to user space outside the
     * critical section after a preemption: write it as late as possible.
     * After the int3 stop it looks again, at the registers the tracer set. */
    if (t->rseq_ptr)
        *(volatile uint64_t *)(t->rseq_ptr + 8) = t->rseq_cs;
    trap_forever();
}

/* Threads other than the first start here, on their own stack (see entry.S). */
void thread_main(struct rst_args *a, struct rst_thread *t, uint32_t *creds_done)
{
    thread_setup(a, t);
    thread_creds(a, t);
    __atomic_add_fetch(creds_done, 1, __ATOMIC_SEQ_CST);
    SYS(NR_futex, creds_done, FUTEX_WAKE_PRIVATE, 1);
    queue_signals(a, t->siginfo, t->n_siginfo, t->tid);
    finish(a, t);
}

/* ---- per process ------------------------------------------------------ */

static void start_thread(struct rst_args *a, struct rst_thread *t, uint32_t *creds_done)
{
    int32_t set_tid[2] = { t->tid, t->outer_tid };   /* innermost PID namespace first */
    struct clone_args ca;
    long r;

    memset(&ca, 0, sizeof(ca));
    ca.flags = CLONE_THREAD_FLAGS;
    ca.stack = t->stack_top - THREAD_STACK;
    ca.stack_size = THREAD_STACK;
    ca.set_tid = (uint64_t)set_tid;
    ca.set_tid_size = t->outer_tid ? 2 : 1;
    r = spawn_thread(&ca, sizeof(ca), a, t, creds_done);
    if (r != t->tid)
        fail(a, RST_STEP_THREADS, is_error(r) ? r : -EEXIST);
}

/* After the threads: a SIGEV_THREAD_ID timer needs its thread to exist. */
static void restore_timers(struct rst_args *a)
{
    struct rst_posix_timer *pt = (struct rst_posix_timer *)a->timers;
    struct ksigevent sev;
    int32_t id;
    uint32_t i;

    if (!a->n_timers)
        return;
    /* in this mode timer_create takes the id to use from *id */
    check(a, RST_STEP_TIMER, SYS(NR_prctl, PR_TIMER_CREATE_RESTORE_IDS, 1));
    for (i = 0; i < a->n_timers; i++, pt++) {
        memset(&sev, 0, sizeof(sev));
        sev.value = pt->sigev_value;
        sev.signo = pt->sigev_signo;
        sev.notify = pt->sigev_notify;
        sev.tid = pt->notify_tid;
        id = pt->id;
        check(a, RST_STEP_TIMER, SYS(NR_timer_create, pt->clock_id, &sev, &id));
        if (id != pt->id)
            fail(a, RST_STEP_TIMER, -EEXIST);
        /* interval then value, as struct itimerspec wants them */
        if (pt->value_sec || pt->value_nsec)
            check(a, RST_STEP_TIMER, SYS(NR_timer_settime, id, 0, &pt->interval_sec, 0));
    }
    check(a, RST_STEP_TIMER, SYS(NR_prctl, PR_TIMER_CREATE_RESTORE_IDS, 0));
}

static void close_fds(struct rst_args *a)
{
    const int32_t *keep = (const int32_t *)a->keep_fds;
    uint32_t next = 0, i;

    for (i = 0; i < a->n_keep_fds; i++) {
        if ((uint32_t)keep[i] > next)
            check(a, RST_STEP_FDS, SYS(NR_close_range, next, keep[i] - 1, 0));
        next = keep[i] + 1;
    }
    check(a, RST_STEP_FDS, SYS(NR_close_range, next, ~0U, 0));
}

/* threads[0] starts here, on its own stack (see entry.S). */
void restore_main(struct rst_args *a)
{
    struct rst_thread *th = (struct rst_thread *)a->threads;
    struct rst_range *un = (struct rst_range *)a->unmap;
    struct rst_move *mv = (struct rst_move *)a->moves;
    struct rst_sigaction *sa = (struct rst_sigaction *)a->sigactions;
    uint64_t all = ~0ULL;
    struct { int64_t sec, nsec; } no_wait = { 0, 0 };
    uint32_t creds_done = 0;    /* futex: threads past thread_creds() */
    uint32_t i, n;
    long r;
    int sig;

    a->step = RST_STEP_START;
    a->error = 0;
    check(a, RST_STEP_START, SYS(NR_rt_sigprocmask, SIG_BLOCK, &all, 0, 8));
    /* what is pending now came to the restoring process (SIGCHLD from the
     * zombies it made...), not to the task; its own signals are queued last */
    while (SYS(NR_rt_sigtimedwait, &all, 0, &no_wait, 8) > 0)
        ;
    /* glibc's rseq area goes away with the Python thread's memory */
    if (a->old_rseq_ptr)
        check(a, RST_STEP_START, SYS(NR_rseq, a->old_rseq_ptr, a->old_rseq_len,
                                     RSEQ_FLAG_UNREGISTER, a->old_rseq_sig));

    a->step = RST_STEP_UNMAP;
    for (i = 0; i < a->n_unmap; i++)
        if (un[i].end > un[i].start)
            check(a, RST_STEP_UNMAP, SYS(NR_munmap, un[i].start, un[i].end - un[i].start));

    a->step = RST_STEP_MOVE;
    for (i = 0; i < a->n_moves; i++) {
        r = SYS(NR_mremap, mv[i].src, mv[i].len, mv[i].len, MREMAP_MAYMOVE | MREMAP_FIXED, mv[i].dst);
        if (r != (long)mv[i].dst)
            fail(a, RST_STEP_MOVE, is_error(r) ? r : -EEXIST);
    }

    a->step = RST_STEP_MM;
    check(a, RST_STEP_MM, SYS(NR_prctl, PR_SET_MM, PR_SET_MM_MAP, &a->mm, sizeof(a->mm)));
    if (a->mm.exe_fd != (uint32_t)-1)
        check(a, RST_STEP_MM, SYS(NR_close, a->mm.exe_fd));

    a->step = RST_STEP_SIGACTION;
    for (sig = 1; sig <= RST_NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            check(a, RST_STEP_SIGACTION, SYS(NR_rt_sigaction, sig, &sa[sig - 1], 0, 8));

    a->step = RST_STEP_ITIMER;
    for (i = 0; i < 3; i++)
        check(a, RST_STEP_ITIMER, SYS(NR_setitimer, i, &a->itimers[i], 0));

    /* dumpable comes at the very end: every change of credentials resets it */
    a->step = RST_STEP_TASK;
    SYS(NR_personality, a->personality);
    SYS(NR_umask, a->umask);
    check(a, RST_STEP_TASK, SYS(NR_prctl, PR_SET_CHILD_SUBREAPER, a->child_subreaper));
    if (a->thp_disable)
        check(a, RST_STEP_TASK, SYS(NR_prctl, PR_SET_THP_DISABLE, 1));

    a->step = RST_STEP_FDS;
    close_fds(a);

    /* threads are made while still root: clone3's set_tid needs the capability */
    a->step = RST_STEP_THREADS;
    for (i = 1; i < a->n_threads; i++)
        start_thread(a, &th[i], &creds_done);

    a->step = RST_STEP_TIMER;
    restore_timers(a);

    a->step = RST_STEP_THREAD;
    thread_setup(a, &th[0]);
    a->step = RST_STEP_CREDS;
    thread_creds(a, &th[0]);

    /* dumpable is per mm, and each thread's commit of new credentials reset it: wait for them all */
    while ((n = __atomic_load_n(&creds_done, __ATOMIC_SEQ_CST)) < a->n_threads - 1)
        SYS(NR_futex, &creds_done, FUTEX_WAIT_PRIVATE, n, 0);
    /* prctl takes only 0 and 1; for 2 keep what the credential change left (suid_dumpable) */
    if (a->dumpable == 0 || a->dumpable == 1)
        check(a, RST_STEP_CREDS, SYS(NR_prctl, PR_SET_DUMPABLE, a->dumpable));

    a->step = RST_STEP_SIGNALS;
    queue_signals(a, a->shared_siginfo, a->n_shared_siginfo, 0);
    queue_signals(a, th[0].siginfo, th[0].n_siginfo, th[0].tid);

    a->step = RST_STEP_TRAP;
    finish(a, &th[0]);
}
