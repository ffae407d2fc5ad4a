/* Scenario 24: pending signals with their siginfo.
 * Blocked in all threads: SIGUSR2, SIGRTMIN+1, +2, +4, +5.  Queued before
 * the dump:
 *   process (shared) queue: SIGUSR2 (sigqueue 301), SIGRTMIN+1 (101, 102),
 *                           SIGRTMIN+2 (201);
 *   main thread:            SIGRTMIN+5 (pthread_sigqueue 501);
 *   thread T:               SIGRTMIN+1 (111), SIGRTMIN+4 (401, 402) via
 *                           pthread_sigqueue, SIGUSR2 via tgkill.
 * After the signal: sigpending and /proc/self/task/N/status SigPnd/ShdPnd
 * show exactly these; main unblocks them and its SA_SIGINFO handlers (all
 * signals masked inside) must run in kernel order with the right si_value,
 * si_code and si_pid: 501, 301, 101, 102, 201.  T then dequeues its own with
 * sigtimedwait: SIGUSR2 (SI_TKILL), 111, 401, 402, and nothing else. */
#include "common.h"
#include <pthread.h>

#define RT(n) (SIGRTMIN + (n))
#define BIT(s) (1ull << ((s) - 1))

struct ev {
	int signo, code, value;
	pid_t pid;
	uid_t uid;
};
static struct ev log_main[16];
static volatile int nlog_main;
static volatile int t_ready, main_done, t_done;
static pid_t t_tid;

static void handler(int s, siginfo_t *si, void *uc)
{
	(void)uc;
	(void)s;
	int i = nlog_main;
	if (i < 16)
		log_main[i] = (struct ev){ si->si_signo, si->si_code, si->si_value.sival_int, si->si_pid, si->si_uid };
	nlog_main = i + 1;
}

static uint64_t hexfield(pid_t tid, const char *key)
{
	char path[64], v[64];
	snprintf(path, sizeof(path), "/proc/self/task/%d/status", (int)tid);
	if (cr_status_field(path, key, v, sizeof(v)))
		return ~0ull;
	return strtoull(v, NULL, 16) & ~BIT(SIGUSR1); /* the test trigger itself may be in flight */
}

static void check_ev(const char *who, int i, const struct ev *got, int signo, int code, int value)
{
	if (got->signo != signo || got->code != code || (code != SI_TKILL && got->value != value) ||
	    got->pid != getpid() || got->uid != getuid())
		cr_fail("%s: event %d is signo %d code %d value %d pid %d uid %d, expected signo %d code %d "
			"value %d pid %d",
			who, i, got->signo, got->code, got->value, (int)got->pid, (int)got->uid, signo, code,
			value, (int)getpid());
}

static void *thread_t(void *arg)
{
	(void)arg;
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &s, NULL);
	t_tid = cr_gettid();
	t_ready = 1;
	while (!main_done)
		cr_sleep_ms(5);
	/* dequeue T's private signals in kernel order */
	sigset_t want;
	sigemptyset(&want);
	sigaddset(&want, SIGUSR2);
	sigaddset(&want, RT(1));
	sigaddset(&want, RT(4));
	int exp_code[4] = { SI_TKILL, SI_QUEUE, SI_QUEUE, SI_QUEUE };
	int exp_val[4] = { 0, 111, 401, 402 };
	int sigs[4] = { SIGUSR2, RT(1), RT(4), RT(4) };
	for (int i = 0; i < 5; i++) {
		siginfo_t si;
		struct timespec zero = { 0, 0 };
		/* raw syscall: glibc's sigtimedwait folds SI_TKILL into SI_USER */
		int r = (int)syscall(SYS_rt_sigtimedwait, &want, &si, &zero, 8);
		if (i == 4) {
			CHECK(r < 0 && errno == EAGAIN, "thread T: extra pending signal %d (value %d)", r,
			      si.si_value.sival_int);
			break;
		}
		if (r < 0) {
			cr_fail("thread T: only %d of 4 private signals were pending", i);
			break;
		}
		struct ev e = { si.si_signo, si.si_code, si.si_value.sival_int, si.si_pid, si.si_uid };
		check_ev("thread T", i, &e, sigs[i], exp_code[i], exp_val[i]);
	}
	t_done = 1;
	return NULL;
}

int main(void)
{
	cr_init();
	pid_t pid = getpid();
	sigset_t blk;
	sigemptyset(&blk);
	int tested[5] = { SIGUSR2, RT(1), RT(2), RT(4), RT(5) };
	for (int i = 0; i < 5; i++) {
		struct sigaction sa;
		memset(&sa, 0, sizeof(sa));
		sa.sa_sigaction = handler;
		sa.sa_flags = SA_SIGINFO;
		sigfillset(&sa.sa_mask); /* one handler at a time: deterministic order */
		sigaction(tested[i], &sa, NULL);
		sigaddset(&blk, tested[i]);
	}
	pthread_sigmask(SIG_BLOCK, &blk, NULL);
	pthread_t t;
	DIE_IF(pthread_create(&t, NULL, thread_t, NULL), "pthread_create");
	while (!t_ready)
		cr_sleep_ms(1);

	union sigval v;
	v.sival_int = 301; DIE_IF(sigqueue(pid, SIGUSR2, v), "sigqueue");
	v.sival_int = 101; DIE_IF(sigqueue(pid, RT(1), v), "sigqueue");
	v.sival_int = 102; DIE_IF(sigqueue(pid, RT(1), v), "sigqueue");
	v.sival_int = 201; DIE_IF(sigqueue(pid, RT(2), v), "sigqueue");
	v.sival_int = 501; DIE_IF(pthread_sigqueue(pthread_self(), RT(5), v), "pthread_sigqueue");
	v.sival_int = 111; DIE_IF(pthread_sigqueue(t, RT(1), v), "pthread_sigqueue");
	v.sival_int = 401; DIE_IF(pthread_sigqueue(t, RT(4), v), "pthread_sigqueue");
	v.sival_int = 402; DIE_IF(pthread_sigqueue(t, RT(4), v), "pthread_sigqueue");
	DIE_IF(syscall(SYS_tgkill, pid, t_tid, SIGUSR2), "tgkill");

	const uint64_t shd = BIT(SIGUSR2) | BIT(RT(1)) | BIT(RT(2));
	const uint64_t main_prv = BIT(RT(5));
	const uint64_t t_prv = BIT(SIGUSR2) | BIT(RT(1)) | BIT(RT(4));
	DIE_IF(hexfield(pid, "ShdPnd") != shd || hexfield(pid, "SigPnd") != main_prv ||
		       hexfield(t_tid, "SigPnd") != t_prv,
	       "pending sets before the dump are not as expected");

	cr_ready();
	cr_wait();

	sigset_t pend;
	sigpending(&pend);
	for (int i = 0; i < 5; i++)
		if (tested[i] != RT(4))
			CHECK(sigismember(&pend, tested[i]), "main: sigpending lacks signal %d", tested[i]);
	CHECK(!sigismember(&pend, RT(4)), "main: sigpending shows thread T's SIGRTMIN+4");
	uint64_t x;
	x = hexfield(pid, "ShdPnd");
	CHECK(x == shd, "ShdPnd 0x%llx, expected 0x%llx", (unsigned long long)x, (unsigned long long)shd);
	x = hexfield(pid, "SigPnd");
	CHECK(x == main_prv, "main SigPnd 0x%llx, expected 0x%llx", (unsigned long long)x,
	      (unsigned long long)main_prv);
	x = hexfield(t_tid, "SigPnd");
	CHECK(x == t_prv, "thread T SigPnd 0x%llx, expected 0x%llx", (unsigned long long)x,
	      (unsigned long long)t_prv);

	/* deliver main's view: private first, then shared in signal-number order */
	CHECK(nlog_main == 0, "handlers ran while the signals were blocked");
	pthread_sigmask(SIG_UNBLOCK, &blk, NULL);
	struct {
		int signo, value;
	} exp[5] = { { RT(5), 501 }, { SIGUSR2, 301 }, { RT(1), 101 }, { RT(1), 102 }, { RT(2), 201 } };
	CHECK(nlog_main == 5, "main handlers ran %d times, expected 5", nlog_main);
	for (int i = 0; i < 5 && i < nlog_main; i++)
		check_ev("main handler", i, &log_main[i], exp[i].signo, SI_QUEUE, exp[i].value);
	pthread_sigmask(SIG_BLOCK, &blk, NULL);
	main_done = 1;
	for (int n = 0; !t_done && n < CR_PATIENCE_LOOPS(5); n++)
		cr_sleep_ms(5);
	if (CHECK(t_done, "thread T never finished"))
		pthread_join(t, NULL);
	sigpending(&pend);
	for (int i = 0; i < 5; i++)
		CHECK(!sigismember(&pend, tested[i]), "signal %d still pending at the end", tested[i]);
	cr_finish();
}
