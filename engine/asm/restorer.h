/*
 * The contract between the Python restore side and the restorer blob.
 *
 * Python maps one region (the "blob area"), copies restorer.bin to its start,
 * fills a struct rst_args after it and calls the entry point with a pointer to
 * that struct.  The blob switches to its own stack, tears down the Python
 * address space, moves the premapped areas into place and sets every piece of
 * per-process and per-thread state that only the task itself can set, then
 * every thread stops on int3 so that the tracer can load its registers.
 *
 * This header is parsed by cffi too (see native_build.py): keep it to plain
 * fixed-width fields, no macros inside structs, no bitfields.  Every pointer is
 * an absolute address in the restored task, stored as uint64_t.
 */
#ifndef LXC_CR_RESTORER_H
#define LXC_CR_RESTORER_H

#define RST_MAGIC    0x5243584cu /* "LXCR" */
#define RST_VERSION  1
#define RST_NSIG     64

/* A range to munmap or a premapped area to mremap into place. */
struct rst_move {
    uint64_t src;
    uint64_t dst;
    uint64_t len;
};

struct rst_range {
    uint64_t start;
    uint64_t end;
};

/* The kernel's struct sigaction for rt_sigaction on x86_64. */
struct rst_sigaction {
    uint64_t handler;
    uint64_t flags;
    uint64_t restorer;
    uint64_t mask;
};

/* struct itimerval with 64-bit timevals. */
struct rst_itimer {
    int64_t interval_sec;
    int64_t interval_usec;
    int64_t value_sec;
    int64_t value_usec;
};

struct rst_posix_timer {
    int32_t  id;
    int32_t  clock_id;
    int32_t  sigev_notify;   /* SIGEV_SIGNAL, SIGEV_NONE, SIGEV_THREAD_ID */
    int32_t  sigev_signo;
    uint64_t sigev_value;
    int32_t  notify_tid;     /* for SIGEV_THREAD_ID */
    int32_t  pad;
    int64_t  interval_sec;
    int64_t  interval_nsec;
    int64_t  value_sec;      /* relative time left; 0/0 = disarmed */
    int64_t  value_nsec;
};

/* A pending signal: the raw 128-byte siginfo_t as PTRACE_PEEKSIGINFO gave it. */
struct rst_siginfo {
    uint8_t data[128];
};

struct rst_thread {
    int32_t  tid;             /* the TID as the task sees it (in its own PID namespace) */
    int32_t  amx;             /* 1: enable AMX tile state before trapping */
    uint64_t stack_top;       /* top of this thread's private stack in the blob area */
    uint64_t clear_tid;       /* set_tid_address() value */
    uint64_t robust_list;     /* set_robust_list() head, 0 = none */
    uint64_t robust_len;
    uint64_t altstack_sp;     /* sigaltstack; flags SS_DISABLE (2) = none */
    uint64_t altstack_size;
    int32_t  altstack_flags;
    int32_t  pdeath_signal;
    uint64_t rseq_ptr;        /* rseq registration, 0 = none */
    uint32_t rseq_len;
    uint32_t rseq_sig;
    uint64_t rseq_cs;         /* value of rseq->rseq_cs at dump time */
    uint64_t siginfo;         /* -> struct rst_siginfo[n_siginfo]: this thread's private queue */
    uint32_t n_siginfo;
    int32_t  outer_tid;       /* the TID one PID namespace up (the restorer's), 0 = same namespace */
    char     comm[16];
};

struct rst_creds {
    uint32_t uid, euid, suid, fsuid;
    uint32_t gid, egid, sgid, fsgid;
    uint64_t cap_inh, cap_prm, cap_eff, cap_bnd, cap_amb;
    uint32_t securebits;
    uint32_t ngroups;
    uint64_t groups;          /* -> uint32_t[ngroups] */
};

/* struct prctl_mm_map (104 bytes). */
struct rst_mm_map {
    uint64_t start_code, end_code, start_data, end_data;
    uint64_t start_brk, brk, start_stack;
    uint64_t arg_start, arg_end, env_start, env_end;
    uint64_t auxv;
    uint32_t auxv_size;
    uint32_t exe_fd;
};

struct rst_args {
    uint32_t magic;
    uint32_t version;

    /* Progress and failure report, read by the tracer when something goes wrong. */
    uint32_t step;            /* last step entered, see RST_STEP_* */
    int32_t  error;           /* negative errno of the failed syscall, 0 = ok */

    /* The Python thread's rseq registration, to drop before its memory goes. */
    uint64_t old_rseq_ptr;
    uint32_t old_rseq_len;
    uint32_t old_rseq_sig;

    uint64_t unmap;           /* -> struct rst_range[n_unmap] */
    uint32_t n_unmap;
    uint32_t n_moves;
    uint64_t moves;           /* -> struct rst_move[n_moves], done in array order */

    struct rst_mm_map mm;

    uint64_t sigactions;      /* -> struct rst_sigaction[RST_NSIG], index = signo - 1 */
    struct rst_itimer itimers[3];   /* REAL, VIRTUAL, PROF */
    uint64_t timers;          /* -> struct rst_posix_timer[n_timers] */
    uint32_t n_timers;

    uint32_t n_threads;
    uint64_t threads;         /* -> struct rst_thread[n_threads]; [0] is the thread that enters */

    uint64_t shared_siginfo;  /* -> struct rst_siginfo[n_shared_siginfo]: process-wide queue */
    uint32_t n_shared_siginfo;

    uint32_t personality;
    uint32_t umask;
    int32_t  child_subreaper;
    int32_t  dumpable;
    int32_t  no_new_privs;

    struct rst_creds creds;

    /* File descriptors to keep; every other descriptor is closed. Sorted. */
    uint64_t keep_fds;        /* -> int32_t[n_keep_fds] */
    uint32_t n_keep_fds;
    int32_t  thp_disable;     /* PR_SET_THP_DISABLE */
};

/* Values of rst_args.step, so that a failure can be named. */
#define RST_STEP_START      1
#define RST_STEP_UNMAP      2
#define RST_STEP_MOVE       3
#define RST_STEP_MM         4
#define RST_STEP_SIGACTION  5
#define RST_STEP_ITIMER     6
#define RST_STEP_TIMER      7
#define RST_STEP_TASK       8
#define RST_STEP_FDS        9
#define RST_STEP_THREADS    10
#define RST_STEP_THREAD     11
#define RST_STEP_CREDS      12
#define RST_STEP_SIGNALS    13
#define RST_STEP_TRAP       14

#endif
