/* Scenario 18: pause, sigsuspend and sigtimedwait.
 * At dump time:
 *   main thread: pause() in a loop,
 *   thread A:    sigsuspend(empty mask) while its normal mask blocks SIGUSR1,
 *                SIGUSR2 and SIGRTMIN+3 (the temporary mask must not leak),
 *   thread B:    sigtimedwait({SIGUSR2}, 1 h) with SIGUSR2 blocked.
 * After the signal: A is woken with SIGUSR1 and checks its mask is its normal
 * one again; B is sent SIGUSR2 with a value (pthread_sigqueue) and must
 * receive exactly that siginfo. */
#include "common.h"
#include <pthread.h>

static volatile int a_in, a_done, a_mask_bad, a_err;
static volatile int b_in, b_done, b_early, b_err;
static siginfo_t b_info;
static pid_t a_tid, b_tid;

static void *thread_a(void *arg)
{
	(void)arg;
	sigset_t normal, empty, cur;
	sigemptyset(&normal);
	sigaddset(&normal, SIGUSR1);
	sigaddset(&normal, SIGUSR2);
	sigaddset(&normal, SIGRTMIN + 3);
	sigemptyset(&empty);
	pthread_sigmask(SIG_SETMASK, &normal, NULL);
	a_tid = cr_gettid();
	a_in = 1;
	while (!cr_go) {
		int r = sigsuspend(&empty);
		if (r != -1 || errno != EINTR)
			a_err = r == -1 ? errno : -1;
		pthread_sigmask(SIG_SETMASK, NULL, &cur);
		for (int s = 1; s < 65; s++)
			if (s != SIGKILL && s != SIGSTOP && sigismember(&cur, s) != sigismember(&normal, s))
				a_mask_bad = s;
	}
	a_done = 1;
	return NULL;
}

static void *thread_b(void *arg)
{
	(void)arg;
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR2);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	sigdelset(&set, SIGUSR1);
	b_tid = cr_gettid();
	b_in = 1;
	for (;;) {
		struct timespec ts = { 3600, 0 };
		int r = sigtimedwait(&set, &b_info, &ts);
		if (r == SIGUSR2)
			break;
		if (r < 0 && errno == EAGAIN)
			b_early++;
		else if (r < 0 && errno != EINTR) {
			b_err = errno;
			break;
		}
	}
	b_done = 1;
	return NULL;
}

int main(void)
{
	pthread_t a, b;
	cr_init();
	/* SIGUSR2 must stay blocked in main so that only B can take it */
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, SIGUSR2);
	sigaddset(&s, SIGRTMIN + 3);
	pthread_sigmask(SIG_BLOCK, &s, NULL);
	DIE_IF(pthread_create(&a, NULL, thread_a, NULL), "pthread_create");
	DIE_IF(pthread_create(&b, NULL, thread_b, NULL), "pthread_create");
	while (!a_in || !b_in)
		cr_sleep_ms(1);
	cr_wait_in_syscall(getpid(), a_tid, SYS_rt_sigsuspend, 2000);
	cr_wait_in_syscall(getpid(), b_tid, SYS_rt_sigtimedwait, 2000);
	cr_ready();
	while (!cr_go)
		pause();

	CHECK(!b_done, "sigtimedwait returned before SIGUSR2 was sent");
	for (int n = 0; !a_done && n < CR_PATIENCE_LOOPS(5); n++) {
		pthread_kill(a, SIGUSR1);
		cr_sleep_ms(5);
	}
	union sigval v = { .sival_int = 0x18181818 };
	DIE_IF(pthread_sigqueue(b, SIGUSR2, v), "pthread_sigqueue");
	for (int n = 0; !b_done && n < CR_PATIENCE_LOOPS(5); n++)
		cr_sleep_ms(5);
	if (CHECK(a_done, "sigsuspend thread never woke up")) {
		pthread_join(a, NULL);
		CHECK(a_mask_bad == 0, "sigsuspend: mask wrong after return (signal %d)", a_mask_bad);
		CHECK(a_err == 0, "sigsuspend returned error %d", a_err);
	}
	if (CHECK(b_done, "sigtimedwait thread never got SIGUSR2")) {
		pthread_join(b, NULL);
		CHECK(b_err == 0, "sigtimedwait: %s", strerror(b_err));
		CHECK(b_early == 0, "sigtimedwait timed out early");
		CHECK(b_info.si_signo == SIGUSR2 && b_info.si_code == SI_QUEUE &&
		      b_info.si_value.sival_int == 0x18181818 && b_info.si_pid == getpid(),
		      "sigtimedwait info: signo %d code %d value 0x%x pid %d", b_info.si_signo, b_info.si_code,
		      b_info.si_value.sival_int, (int)b_info.si_pid);
	}
	cr_finish();
}
