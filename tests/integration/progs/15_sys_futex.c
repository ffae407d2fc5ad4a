/* Scenario 15: futex waits.
 * Threads (SIGUSR1 blocked) sit in:
 *   A: FUTEX_WAIT_PRIVATE, no timeout, on word w1,
 *   B: FUTEX_WAIT (shared futex key) with a 1 h relative timeout on w1,
 *   C: FUTEX_WAIT_BITSET_PRIVATE, absolute CLOCK_MONOTONIC deadline + 2 h, on w2,
 *   D: FUTEX_WAIT_BITSET|FUTEX_CLOCK_REALTIME, absolute deadline + 2 h, on w2.
 * Each loops while its word is 0, accepting EINTR/EAGAIN; ETIMEDOUT is a
 * failure.  After the signal the main thread stores 1 into the words and
 * FUTEX_WAKEs them; all threads must wake and see the new value. */
#include "common.h"
#include <linux/futex.h>
#include <pthread.h>

static uint32_t w1, w2;

struct waiter {
	const char *name;
	int kind;
	volatile int in_loop, done, timedout, other_err;
	pid_t tid;
};

static long futex(uint32_t *uaddr, int op, uint32_t val, const struct timespec *ts, uint32_t bitset)
{
	return syscall(SYS_futex, uaddr, op, val, ts, NULL, bitset);
}

static void *waiter_fn(void *arg)
{
	struct waiter *w = arg;
	struct timespec ts;
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &s, NULL);
	w->tid = cr_gettid();
	if (w->kind == 2)
		clock_gettime(CLOCK_MONOTONIC, &ts);
	else if (w->kind == 3)
		clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 7200;
	w->in_loop = 1;
	uint32_t *word = w->kind < 2 ? &w1 : &w2;
	while (__atomic_load_n(word, __ATOMIC_SEQ_CST) == 0) {
		long r;
		if (w->kind == 0) {
			r = futex(word, FUTEX_WAIT_PRIVATE, 0, NULL, 0);
		} else if (w->kind == 1) {
			struct timespec rel = { 3600, 0 };
			r = futex(word, FUTEX_WAIT, 0, &rel, 0);
		} else if (w->kind == 2) {
			r = futex(word, FUTEX_WAIT_BITSET_PRIVATE, 0, &ts, FUTEX_BITSET_MATCH_ANY);
		} else {
			r = futex(word, FUTEX_WAIT_BITSET | FUTEX_CLOCK_REALTIME, 0, &ts, FUTEX_BITSET_MATCH_ANY);
		}
		if (r < 0 && errno == ETIMEDOUT)
			w->timedout++;
		else if (r < 0 && errno != EINTR && errno != EAGAIN)
			w->other_err = errno;
	}
	w->done = 1;
	return NULL;
}

int main(void)
{
	static struct waiter ws[4] = { { "FUTEX_WAIT_PRIVATE", 0 },
				       { "FUTEX_WAIT (shared, 1 h timeout)", 1 },
				       { "FUTEX_WAIT_BITSET_PRIVATE (abs MONOTONIC)", 2 },
				       { "FUTEX_WAIT_BITSET|CLOCK_REALTIME (abs)", 3 } };
	pthread_t t[4];
	cr_init();
	for (int i = 0; i < 4; i++)
		DIE_IF(pthread_create(&t[i], NULL, waiter_fn, &ws[i]), "pthread_create");
	for (int i = 0; i < 4; i++) {
		while (!ws[i].in_loop)
			cr_sleep_ms(1);
		cr_wait_in_syscall(getpid(), ws[i].tid, SYS_futex, 2000);
	}
	cr_ready();
	cr_wait();

	/* nobody may have left the wait before the words changed */
	for (int i = 0; i < 4; i++)
		CHECK(!ws[i].done, "%s: left the wait loop before the wake", ws[i].name);
	__atomic_store_n(&w1, 1, __ATOMIC_SEQ_CST);
	__atomic_store_n(&w2, 1, __ATOMIC_SEQ_CST);
	futex(&w1, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, 0);
	futex(&w1, FUTEX_WAKE, INT_MAX, NULL, 0);
	futex(&w2, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, 0);
	futex(&w2, FUTEX_WAKE, INT_MAX, NULL, 0);
	for (int i = 0; i < 4; i++) {
		for (int n = 0; !ws[i].done && n < CR_PATIENCE_LOOPS(5); n++)
			cr_sleep_ms(5);
		if (!CHECK(ws[i].done, "%s: not woken by FUTEX_WAKE", ws[i].name))
			continue;
		pthread_join(t[i], NULL);
		CHECK(ws[i].timedout == 0, "%s: timed out early", ws[i].name);
		CHECK(ws[i].other_err == 0, "%s: unexpected error %s", ws[i].name, strerror(ws[i].other_err));
	}
	cr_finish();
}
