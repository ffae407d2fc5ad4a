/*
 * blobtest: runs restorer.bin in a traced child and checks what it did.
 * Needs root.  Usage: blobtest restorer.bin; prints PASS or FAIL.
 *
 * The child lays out a blob area as Python does (blob, rst_args, arrays,
 * stacks), asks for: one page moved from A to B, everything else of its
 * address space unmapped, exe replaced by /bin/true, two more threads with
 * chosen TIDs, a few signal actions, a POSIX timer, pending signals, rseq for
 * one thread, AMX for another (if the CPU has it) and uid 1000 with one
 * ambient capability; then it jumps into the blob.  The parent (tracer)
 * waits for the three int3 stops and checks the result from outside.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/rseq.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/elf.h>
#include "restorer.h"

#define AREA        0x200000000000UL
#define AREA_SIZE   (1UL << 20)
#define ARGS_OFF    0x8000UL            /* the blob must fit below */
#define STACKS_OFF  0x40000UL
#define STACK       0x8000UL
#define PAGE_A      0x300000000000UL
#define PAGE_B      0x300000200000UL
#define TASK_END    0x7ffffffff000UL
#define UID         1000
#define TIMER_ID    7
#define SIG_PRIV    37                  /* queued to thread 1 */
#define CAP_NET_BIND_SERVICE 10
#define CAP_SYS_MODULE       16

static int tids[3];
static int have_amx;
static int failures;

static void check(int ok, const char *what)
{
    if (!ok) {
        printf("  check failed: %s\n", what);
        failures++;
    }
}

static void die(const char *what)
{
    perror(what);
    printf("FAIL\n");
    exit(1);
}

static uint8_t pattern(int i)
{
    return (uint8_t)(i * 7 + 3);
}

/* The value of "key:" in a /proc status-like file, or "" */
static const char *field(const char *path, const char *key)
{
    static char buf[8192], val[256];
    size_t klen = strlen(key);
    char *p;
    int fd = open(path, O_RDONLY);
    ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);

    if (fd >= 0)
        close(fd);
    val[0] = 0;
    if (n <= 0)
        return val;
    buf[n] = 0;
    for (p = buf; p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (!strncmp(p, key, klen) && p[klen] == ':') {
            p += klen + 1;
            while (*p == ' ' || *p == '\t')
                p++;
            snprintf(val, sizeof(val), "%.*s", (int)strcspn(p, "\n"), p);
            for (n = strlen(val); n > 0 && val[n - 1] == ' '; n--)
                val[n - 1] = 0;
            break;
        }
    return val;
}

static unsigned long long hexfield(const char *path, const char *key)
{
    return strtoull(field(path, key), NULL, 16);
}

/* ---- the child: build rst_args and jump ---------------------------------- */

static char *bump;

static void *alloc(size_t n)
{
    void *p = bump;
    bump += (n + 63) & ~63UL;
    return p;
}

/* Fields of /proc/self/stat, 1-based as in proc(5). */
static void read_stat(unsigned long long *f)
{
    char buf[4096], *p, *tok;
    int fd = open("/proc/self/stat", O_RDONLY), i = 3;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);

    close(fd);
    buf[n > 0 ? n : 0] = 0;
    p = strrchr(buf, ')') + 2;
    for (tok = strtok(p, " "); tok && i < 60; tok = strtok(NULL, " "), i++)
        f[i] = strtoull(tok, NULL, 10);
}

static void child(const char *bin, int go)
{
    struct { uint64_t start, end; } keep[8], tmp;
    unsigned long long st[60] = { 0 };
    int nkeep = 0, i, j, fd;
    char c, line[512];
    FILE *maps;

    if (read(go, &c, 1) != 1)       /* wait until the parent has seized us */
        _exit(2);
    char *area = mmap((void *)AREA, AREA_SIZE, PROT_READ | PROT_WRITE | PROT_EXEC,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    uint8_t *a_page = mmap((void *)PAGE_A, 4096, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (area == MAP_FAILED || a_page == MAP_FAILED)
        die("mmap");
    fd = open(bin, O_RDONLY);
    if (fd < 0 || read(fd, area, ARGS_OFF) <= 0)
        die(bin);
    close(fd);
    for (i = 0; i < 4096; i++)
        a_page[i] = pattern(i);

    struct rst_args *a = (struct rst_args *)(area + ARGS_OFF);
    bump = (char *)a;
    alloc(sizeof(*a));
    a->magic = RST_MAGIC;
    a->version = RST_VERSION;
    if (__rseq_size) {
        a->old_rseq_ptr = (uint64_t)__builtin_thread_pointer() + __rseq_offset;
        a->old_rseq_len = __rseq_size < 32 ? 32 : __rseq_size;   /* glibc 2.36 registers 32 */
        a->old_rseq_sig = RSEQ_SIG;
    }

    /* keep the blob area, page A and the vDSO pieces; unmap everything else */
    keep[nkeep].start = AREA, keep[nkeep++].end = AREA + AREA_SIZE;
    keep[nkeep].start = PAGE_A, keep[nkeep++].end = PAGE_A + 4096;
    maps = fopen("/proc/self/maps", "r");
    while (fgets(line, sizeof(line), maps))
        if (strstr(line, "[vdso]") || strstr(line, "[vvar"))
            sscanf(line, "%lx-%lx", &keep[nkeep].start, &keep[nkeep].end), nkeep++;
    fclose(maps);
    for (i = 0; i < nkeep; i++)
        for (j = i + 1; j < nkeep; j++)
            if (keep[j].start < keep[i].start)
                tmp = keep[i], keep[i] = keep[j], keep[j] = tmp;
    struct rst_range *un = alloc(sizeof(*un) * (nkeep + 1));
    uint64_t pos = 4096;
    for (i = 0; i < nkeep; i++) {
        if (keep[i].start > pos)
            un[a->n_unmap].start = pos, un[a->n_unmap++].end = keep[i].start;
        pos = keep[i].end;
    }
    un[a->n_unmap].start = pos, un[a->n_unmap++].end = TASK_END;
    a->unmap = (uint64_t)un;

    struct rst_move *mv = alloc(sizeof(*mv));
    mv->src = PAGE_A, mv->dst = PAGE_B, mv->len = 4096;
    a->moves = (uint64_t)mv, a->n_moves = 1;

    read_stat(st);
    a->mm.start_code = st[26], a->mm.end_code = st[27], a->mm.start_stack = st[28];
    a->mm.start_data = st[45], a->mm.end_data = st[46], a->mm.start_brk = st[47];
    a->mm.arg_start = st[48], a->mm.arg_end = st[49], a->mm.env_start = st[50], a->mm.env_end = st[51];
    a->mm.brk = syscall(SYS_brk, 0);
    void *auxv = alloc(1024);
    fd = open("/proc/self/auxv", O_RDONLY);
    a->mm.auxv = (uint64_t)auxv, a->mm.auxv_size = read(fd, auxv, 1024);
    close(fd);
    a->mm.exe_fd = open("/bin/true", O_RDONLY);

    struct rst_sigaction *sa = alloc(sizeof(*sa) * RST_NSIG);
    sa[SIGUSR1 - 1].handler = 0x1000;
    sa[SIGUSR1 - 1].flags = 0x04000000 | 0x10000000;          /* SA_RESTORER | SA_RESTART */
    sa[SIGUSR1 - 1].restorer = 0x2000;
    sa[SIGUSR2 - 1].handler = (uint64_t)SIG_IGN;
    sa[SIGTRAP - 1] = sa[SIGUSR1 - 1];                        /* int3 must not reset it */
    a->sigactions = (uint64_t)sa;
    a->itimers[ITIMER_REAL].value_sec = 100;

    struct rst_posix_timer *pt = alloc(sizeof(*pt));
    pt->id = TIMER_ID, pt->clock_id = CLOCK_MONOTONIC;
    pt->sigev_notify = SIGEV_SIGNAL, pt->sigev_signo = SIGRTMIN + 2;
    pt->value_sec = 100;
    a->timers = (uint64_t)pt, a->n_timers = 1;

    siginfo_t *si = alloc(2 * sizeof(*si));
    si[0].si_signo = SIGUSR1, si[0].si_code = SI_QUEUE, si[0].si_pid = getpid();
    si[1].si_signo = SIG_PRIV, si[1].si_code = SI_QUEUE, si[1].si_pid = getpid();
    a->shared_siginfo = (uint64_t)&si[0], a->n_shared_siginfo = 1;

    struct rst_thread *th = alloc(sizeof(*th) * 3);
    for (i = 0; i < 3; i++) {
        th[i].tid = tids[i];
        th[i].stack_top = AREA + STACKS_OFF + STACK * (i + 1) - 64;
        th[i].altstack_flags = SS_DISABLE;
        snprintf(th[i].comm, sizeof(th[i].comm), "blob-%d", i);
    }
    th[0].robust_list = (uint64_t)alloc(24), th[0].robust_len = 24;
    th[0].pdeath_signal = SIGKILL;
    th[1].altstack_sp = PAGE_B, th[1].altstack_size = 0x10000, th[1].altstack_flags = 0;
    th[1].rseq_ptr = (uint64_t)alloc(32), th[1].rseq_len = 32, th[1].rseq_sig = RSEQ_SIG;
    th[1].siginfo = (uint64_t)&si[1], th[1].n_siginfo = 1;
    th[2].amx = have_amx;
    a->threads = (uint64_t)th, a->n_threads = 3;

    a->umask = 022, a->dumpable = 1, a->no_new_privs = 1;
    struct rst_creds *cr = &a->creds;
    cr->uid = cr->euid = cr->suid = cr->fsuid = UID;
    cr->gid = cr->egid = cr->sgid = cr->fsgid = UID;
    cr->cap_inh = cr->cap_prm = cr->cap_eff = cr->cap_amb = 1ULL << CAP_NET_BIND_SERVICE;
    cr->cap_bnd = hexfield("/proc/self/status", "CapBnd") & ~(1ULL << CAP_SYS_MODULE);
    uint32_t *groups = alloc(8);
    groups[0] = UID, groups[1] = 27;
    cr->groups = (uint64_t)groups, cr->ngroups = 2;

    int32_t *fds = alloc(12);
    fds[0] = 0, fds[1] = 1, fds[2] = 2;
    a->keep_fds = (uint64_t)fds, a->n_keep_fds = 3;

    if (bump > area + STACKS_OFF)
        die("layout");
    sigset_t all;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, NULL);
    ((void (*)(struct rst_args *))area)(a);
    _exit(3);
}

/* ---- the parent: trace, then look ----------------------------------------- */

static void on_alarm(int sig)
{
    (void)sig;
    printf("  timeout waiting for the threads to trap\nFAIL\n");
    exit(1);
}

static int free_tid(int from)
{
    char path[64];
    struct stat sb;

    for (; from < 32000; from++) {
        snprintf(path, sizeof(path), "/proc/%d", from);
        if (stat(path, &sb) < 0 && errno == ENOENT)
            return from;
    }
    die("no free TID");
    return -1;
}

static int in(int tid, int *set, int n)
{
    for (int i = 0; i < n; i++)
        if (set[i] == tid)
            return 1;
    return 0;
}

/* Names in a /proc directory, as numbers; returns how many. */
static int list_dir(const char *path, int *out, int max)
{
    DIR *d = opendir(path);
    struct dirent *e;
    int n = 0;

    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.' && n < max)
            out[n++] = atoi(e->d_name);
    if (d)
        closedir(d);
    return n;
}

/* Can PTRACE_SETREGSET load an xstate image that has tile data? */
static int takes_tiledata(int tid)
{
    static uint8_t xs[16384];
    struct iovec iov = { xs, sizeof(xs) };

    if (ptrace(PTRACE_GETREGSET, tid, NT_X86_XSTATE, &iov) < 0)
        return 0;
    *(uint64_t *)(xs + 512) |= 1ULL << 18;          /* xstate_bv: XTILEDATA */
    return ptrace(PTRACE_SETREGSET, tid, NT_X86_XSTATE, &iov) == 0;
}

int main(int argc, char **argv)
{
    int go[2], status, ntrapped = 0, trapped[3], i, n, list[16];
    uint32_t se[2];
    uint64_t supp = 0;
    char path[128], what[128], link[256];
    pid_t pid;

    if (argc != 2) {
        fprintf(stderr, "usage: %s restorer.bin\n", argv[0]);
        return 2;
    }
    if (geteuid() != 0) {
        printf("  must run as root\nFAIL\n");
        return 1;
    }
    setvbuf(stdout, NULL, _IONBF, 0);
    have_amx = syscall(SYS_arch_prctl, 0x1021 /* ARCH_GET_XCOMP_SUPP */, &supp) == 0 && (supp >> 18 & 1);
    if (pipe(go) < 0)
        die("pipe");
    tids[1] = free_tid(30000);
    tids[2] = free_tid(tids[1] + 1);
    pid = fork();
    if (pid < 0)
        die("fork");
    tids[0] = pid > 0 ? pid : getpid();
    if (pid == 0) {
        close(go[1]);
        child(argv[1], go[0]);
    }
    close(go[0]);
    if (ptrace(PTRACE_SEIZE, pid, 0, PTRACE_O_TRACECLONE | PTRACE_O_EXITKILL) < 0)
        die("PTRACE_SEIZE");
    if (write(go[1], "x", 1) != 1)
        die("write");
    signal(SIGALRM, on_alarm);
    alarm(10);

    /* run until all three threads sit on their int3 */
    while (ntrapped < 3) {
        int tid = waitpid(-1, &status, __WALL);
        if (tid < 0)
            die("waitpid");
        if (WIFEXITED(status) || WIFSIGNALED(status)) {
            printf("  task %d ended (status %#x)\nFAIL\n", tid, status);
            return 1;
        }
        int event = status >> 16, sig = WSTOPSIG(status);
        if (event == PTRACE_EVENT_CLONE || event == PTRACE_EVENT_STOP) {
            ptrace(PTRACE_CONT, tid, 0, 0);
            continue;
        }
        siginfo_t si;
        ptrace(PTRACE_GETSIGINFO, tid, 0, &si);
        if (sig != SIGTRAP || si.si_code != SI_KERNEL) {
            printf("  task %d stopped by signal %d (code %d)\n", tid, sig, si.si_code);
            break;
        }
        trapped[ntrapped++] = tid;
        struct iovec local = { se, sizeof(se) }, remote = { (void *)(AREA + ARGS_OFF + 8), sizeof(se) };
        if (process_vm_readv(pid, &local, 1, &remote, 1, 0) != sizeof(se))
            die("process_vm_readv");
        if (se[1]) {
            printf("  restorer failed at step %u: %s\n", se[0], strerror(-(int)se[1]));
            break;
        }
    }
    alarm(0);
    check(ntrapped == 3, "all three threads trap on int3");
    for (i = 0; i < ntrapped; i++)
        check(in(trapped[i], tids, 3), "the trapped threads are the chosen TIDs");
    check(se[0] == RST_STEP_TRAP, "step is RST_STEP_TRAP");

    if (ntrapped == 3) {
        uint8_t page[4096];
        struct iovec local = { page, sizeof(page) }, rb = { (void *)PAGE_B, 4096 }, ra = { (void *)PAGE_A, 4096 };
        int ok = process_vm_readv(pid, &local, 1, &rb, 1, 0) == 4096;
        for (i = 0; ok && i < 4096; i++)
            ok = page[i] == pattern(i);
        check(ok, "the pattern is at B");
        check(process_vm_readv(pid, &local, 1, &ra, 1, 0) < 0 && errno == EFAULT, "nothing is at A");

        snprintf(path, sizeof(path), "/proc/%d/task", pid);
        n = list_dir(path, list, 16);
        check(n == 3 && in(tids[0], list, n) && in(tids[1], list, n) && in(tids[2], list, n),
              "/proc/<pid>/task lists exactly the chosen TIDs");
        snprintf(path, sizeof(path), "/proc/%d/fd", pid);
        n = list_dir(path, list, 16);
        check(n == 3 && in(0, list, n) && in(1, list, n) && in(2, list, n), "only fds 0-2 are left");
        snprintf(path, sizeof(path), "/proc/%d/exe", pid);
        n = readlink(path, link, sizeof(link) - 1);
        link[n > 0 ? n : 0] = 0;
        check(n > 5 && !strcmp(link + n - 5, "/true"), "exe is /bin/true (PR_SET_MM_MAP)");
        snprintf(path, sizeof(path), "/proc/%d/timers", pid);
        check(strstr(field(path, "ID"), "7") != NULL, "POSIX timer has id 7");

        snprintf(path, sizeof(path), "/proc/%d/status", pid);
        check(hexfield(path, "SigCgt") == (1ULL << (SIGUSR1 - 1) | 1ULL << (SIGTRAP - 1)),
              "SigCgt is SIGUSR1 and SIGTRAP");
        check(hexfield(path, "SigIgn") == 1ULL << (SIGUSR2 - 1), "SigIgn is SIGUSR2");
        check(hexfield(path, "ShdPnd") == 1ULL << (SIGUSR1 - 1), "SIGUSR1 pending for the process");
        check(hexfield(path, "SigBlk") == 0xfffffffffffbfeefULL, "every signal blocked but SIGTRAP");
        struct stat sb;
        check(stat(path, &sb) == 0 && sb.st_uid == UID, "still dumpable after the uid change");

        for (i = 0; i < 3; i++) {
            snprintf(path, sizeof(path), "/proc/%d/task/%d/status", pid, tids[i]);
            snprintf(what, sizeof(what), "blob-%d", i);
            check(!strcmp(field(path, "Name"), what), "thread name");
            check(!strcmp(field(path, "Uid"), "1000\t1000\t1000\t1000"), "uids");
            check(!strcmp(field(path, "Gid"), "1000\t1000\t1000\t1000"), "gids");
            check(!strcmp(field(path, "Groups"), "27 1000"), "groups");
            check(hexfield(path, "CapPrm") == 1ULL << CAP_NET_BIND_SERVICE, "CapPrm");
            check(hexfield(path, "CapAmb") == 1ULL << CAP_NET_BIND_SERVICE, "CapAmb");
            check(!(hexfield(path, "CapBnd") & 1ULL << CAP_SYS_MODULE), "CapBnd lost CAP_SYS_MODULE");
            check(!strcmp(field(path, "NoNewPrivs"), "1"), "no_new_privs");
            check(hexfield(path, "SigPnd") == (i == 1 ? 1ULL << (SIG_PRIV - 1) : 0), "private pending signals");
        }

        struct { uint64_t ptr; uint32_t size, sig, flags, pad; } rc = { 0 };
        check(ptrace(PTRACE_GET_RSEQ_CONFIGURATION, tids[1], sizeof(rc), &rc) == sizeof(rc) && rc.ptr != 0 &&
              rc.size == 32 && rc.sig == RSEQ_SIG, "thread 1 has rseq registered");
        if (have_amx) {
            check(takes_tiledata(tids[2]), "AMX thread takes tile data");
            check(!takes_tiledata(tids[1]), "non-AMX thread refuses tile data");
        } else {
            printf("  (no AMX on this CPU: AMX check skipped)\n");
        }
    }

    kill(pid, SIGKILL);
    while (waitpid(-1, &status, __WALL) > 0)
        ;
    printf(failures || ntrapped < 3 ? "FAIL\n" : "PASS\n");
    return failures || ntrapped < 3;
}
