/* Scenario 19: 8 threads with per-thread state.
 * Each thread records gettid(), sets its own name (comm), its own signal mask
 * (SIGUSR1 plus SIGRTMIN+i, plus SIGUSR2 for odd i), its own sigaltstack and
 * a __thread pattern.  After the signal each thread checks: same tid, same
 * comm, same mask, same sigaltstack (not active), TLS intact, and that a
 * SA_ONSTACK handler raised with tgkill really runs on its own alternate
 * stack.  The main thread also checks /proc/self/task lists exactly these 9
 * tasks. */
#include "common.h"
#include <pthread.h>

#define NTHR 8
#define ALT_SIZE (128 * 1024)
#define SEED 0x1900
#define SIG_ONSTACK_TEST (SIGRTMIN + 10)

struct tinfo {
	int idx;
	pid_t tid;
	void *alt;
	char name[16];
	pthread_t pt;
};
static struct tinfo ti[NTHR];
static __thread uint8_t tls_pat[200];
static __thread volatile uintptr_t handler_sp;
static volatile int nready;

static void onstack_handler(int sig)
{
	volatile int local;
	(void)sig;
	handler_sp = (uintptr_t)&local;
}

static void build_mask(int idx, sigset_t *m)
{
	sigemptyset(m);
	sigaddset(m, SIGUSR1);
	sigaddset(m, SIGRTMIN + idx);
	if (idx & 1)
		sigaddset(m, SIGUSR2);
}

static void *thread_fn(void *arg)
{
	struct tinfo *t = arg;
	sigset_t m, cur;
	build_mask(t->idx, &m);
	pthread_sigmask(SIG_SETMASK, &m, NULL);
	t->tid = cr_gettid();
	snprintf(t->name, sizeof(t->name), "crthr-%d", t->idx);
	prctl(PR_SET_NAME, t->name);
	t->alt = malloc(ALT_SIZE);
	stack_t ss = { .ss_sp = t->alt, .ss_size = ALT_SIZE, .ss_flags = 0 };
	DIE_IF(!t->alt || sigaltstack(&ss, NULL), "sigaltstack");
	cr_fill(tls_pat, sizeof(tls_pat), SEED + t->idx);
	__atomic_fetch_add(&nready, 1, __ATOMIC_SEQ_CST);

	cr_wait();

	char who[32], comm[32], path[64];
	snprintf(who, sizeof(who), "thread %d", t->idx);
	CHECK(cr_gettid() == t->tid, "%s: tid %d, was %d", who, (int)cr_gettid(), (int)t->tid);
	snprintf(path, sizeof(path), "/proc/self/task/%d/comm", (int)t->tid);
	cr_read_file(path, comm, sizeof(comm));
	comm[strcspn(comm, "\n")] = 0;
	CHECK(!strcmp(comm, t->name), "%s: comm '%s', expected '%s'", who, comm, t->name);
	pthread_sigmask(SIG_SETMASK, NULL, &cur);
	for (int s = 1; s < 65; s++)
		if (s != SIGKILL && s != SIGSTOP && sigismember(&cur, s) != sigismember(&m, s))
			cr_fail("%s: signal %d is %sblocked", who, s, sigismember(&cur, s) ? "" : "not ");
	stack_t now;
	sigaltstack(NULL, &now);
	CHECK(now.ss_sp == t->alt && now.ss_size == ALT_SIZE && now.ss_flags == 0,
	      "%s: sigaltstack sp %p size %zu flags %d, expected %p %d 0", who, now.ss_sp, now.ss_size,
	      now.ss_flags, t->alt, ALT_SIZE);
	cr_expect_pattern(who, tls_pat, sizeof(tls_pat), SEED + t->idx, 0);
	handler_sp = 0;
	syscall(SYS_tgkill, getpid(), cr_gettid(), SIG_ONSTACK_TEST);
	CHECK(handler_sp >= (uintptr_t)t->alt && handler_sp < (uintptr_t)t->alt + ALT_SIZE,
	      "%s: SA_ONSTACK handler ran at %p, not on its altstack %p", who, (void *)handler_sp, t->alt);
	return NULL;
}

int main(void)
{
	cr_init();
	struct sigaction sa = { 0 };
	sa.sa_handler = onstack_handler;
	sa.sa_flags = SA_ONSTACK;
	sigaction(SIG_ONSTACK_TEST, &sa, NULL);
	for (int i = 0; i < NTHR; i++) {
		ti[i].idx = i;
		DIE_IF(pthread_create(&ti[i].pt, NULL, thread_fn, &ti[i]), "pthread_create");
	}
	while (__atomic_load_n(&nready, __ATOMIC_SEQ_CST) < NTHR)
		cr_sleep_ms(1);
	cr_ready();
	cr_wait();

	/* exactly main + 8 threads, with the recorded tids */
	int found[NTHR] = { 0 }, other = 0, seen_main = 0;
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	while (d && (e = readdir(d))) {
		int tid = atoi(e->d_name);
		if (tid <= 0)
			continue;
		int k;
		for (k = 0; k < NTHR; k++)
			if (ti[k].tid == tid)
				break;
		if (k < NTHR)
			found[k]++;
		else if (tid == getpid())
			seen_main++;
		else
			other++;
	}
	if (d)
		closedir(d);
	CHECK(seen_main == 1 && other == 0, "/proc/self/task: main %d, unknown tasks %d", seen_main, other);
	for (int i = 0; i < NTHR; i++)
		CHECK(found[i] == 1, "thread %d (tid %d) missing from /proc/self/task", i, (int)ti[i].tid);
	for (int i = 0; i < NTHR; i++)
		pthread_join(ti[i].pt, NULL);
	cr_finish();
}
