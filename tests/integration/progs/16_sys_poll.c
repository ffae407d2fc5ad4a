/* Scenario 16: poll-family waits with no fds.
 * At dump time:
 *   main thread: poll(NULL, 0, 1 h) in a loop,
 *   thread A:    ppoll(NULL, 0, 1 h, empty mask) while SIGUSR1/SIGUSR2 are
 *                normally blocked in it (the temporary mask must not leak),
 *   thread B:    the raw select(2) syscall (glibc uses pselect6), 1 h,
 *   thread C:    pselect(0, ..., 1 h, empty mask), normally blocking SIGUSR1.
 * A call returning 0 (timeout) before the signal is a failure.  After the
 * signal the threads are woken with SIGUSR1; A and C then check their signal
 * mask is their normal one again. */
#include "common.h"
#include <poll.h>
#include <pthread.h>
#include <sys/select.h>

struct waiter {
	const char *name;
	int kind;
	volatile int in_loop, done, early, other_err, mask_bad;
	pid_t tid;
};

static void wait_loop(struct waiter *w)
{
	sigset_t normal, empty, cur;
	sigemptyset(&normal);
	sigemptyset(&empty);
	if (w->kind == 1) {
		sigaddset(&normal, SIGUSR1);
		sigaddset(&normal, SIGUSR2);
	} else if (w->kind == 3) {
		sigaddset(&normal, SIGUSR1);
		sigaddset(&normal, SIGRTMIN + 1);
	}
	pthread_sigmask(SIG_SETMASK, &normal, NULL);
	w->tid = cr_gettid();
	w->in_loop = 1;
	while (!cr_go) {
		int r;
		if (w->kind == 0) {
			r = poll(NULL, 0, 3600 * 1000);
		} else if (w->kind == 1) {
			struct timespec ts = { 3600, 0 };
			r = ppoll(NULL, 0, &ts, &empty);
		} else if (w->kind == 2) {
			struct timeval tv = { 3600, 0 };
			r = (int)syscall(SYS_select, 0, NULL, NULL, NULL, &tv); /* raw select(2) */
		} else {
			struct timespec ts = { 3600, 0 };
			r = pselect(0, NULL, NULL, NULL, &ts, &empty);
		}
		if (r == 0)
			w->early++;
		else if (r < 0 && errno != EINTR)
			w->other_err = errno;
		pthread_sigmask(SIG_SETMASK, NULL, &cur);
		for (int s = 1; s < 65; s++)
			if (s != SIGKILL && s != SIGSTOP && sigismember(&cur, s) != sigismember(&normal, s))
				w->mask_bad = s;
	}
	struct pollfd none;
	if (poll(&none, 0, 1) < 0 && errno != EINTR)
		w->other_err = errno;
	w->done = 1;
}

static void *thread_fn(void *arg)
{
	wait_loop(arg);
	return NULL;
}

int main(void)
{
	static struct waiter ws[4] = { { "main poll", 0 },
				       { "ppoll with mask", 1 },
				       { "select", 2 },
				       { "pselect with mask", 3 } };
	static const long nrs[4] = { SYS_poll, SYS_ppoll, SYS_select, SYS_pselect6 };
	pthread_t t[4];
	cr_init();
	for (int i = 1; i < 4; i++)
		DIE_IF(pthread_create(&t[i], NULL, thread_fn, &ws[i]), "pthread_create");
	for (int i = 1; i < 4; i++) {
		while (!ws[i].in_loop)
			cr_sleep_ms(1);
		cr_wait_in_syscall(getpid(), ws[i].tid, nrs[i], 2000);
	}
	cr_ready();
	wait_loop(&ws[0]);
	for (int i = 1; i < 4; i++) {
		for (int n = 0; !ws[i].done && n < CR_PATIENCE_LOOPS(5); n++) {
			pthread_kill(t[i], SIGUSR1);
			cr_sleep_ms(5);
		}
		if (!CHECK(ws[i].done, "%s: never woke up", ws[i].name))
			continue;
		pthread_join(t[i], NULL);
	}
	for (int i = 0; i < 4; i++) {
		CHECK(ws[i].early == 0, "%s: timed out early (%d times)", ws[i].name, ws[i].early);
		CHECK(ws[i].other_err == 0, "%s: error %s", ws[i].name, strerror(ws[i].other_err));
		CHECK(ws[i].mask_bad == 0, "%s: signal mask wrong after the call (signal %d)", ws[i].name,
		      ws[i].mask_bad);
	}
	cr_finish();
}
