/* Scenario 14: nanosleep / clock_nanosleep.
 * At dump time:
 *   main thread: clock_nanosleep(CLOCK_MONOTONIC, relative 1 h) in a loop,
 *   thread A:    nanosleep(1 h) in a loop (checks *rem),
 *   thread B:    clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, now + 2 h),
 *   thread C:    clock_nanosleep(CLOCK_BOOTTIME, TIMER_ABSTIME, now + 3 h).
 * Each loop accepts EINTR (signal, or a restore that turned the restart into
 * EINTR) and sleeps again; a long sleep that *completes* before the signal is
 * a failure.  After the signal the threads are woken with SIGUSR1 and short
 * sleeps must complete normally. */
#include "common.h"
#include <pthread.h>

struct sleeper {
	const char *name;
	int kind;
	volatile int in_loop, done;
	volatile int einval, completed, other_err;
	pid_t tid;
};

static void sleep_loop(struct sleeper *s)
{
	struct timespec deadline;
	s->tid = cr_gettid();
	if (s->kind == 2) {
		clock_gettime(CLOCK_REALTIME, &deadline);
		deadline.tv_sec += 7200;
	} else if (s->kind == 3) {
		clock_gettime(CLOCK_BOOTTIME, &deadline);
		deadline.tv_sec += 10800;
	}
	s->in_loop = 1;
	while (!cr_go) {
		int r;
		if (s->kind == 0) {
			struct timespec req = { 3600, 0 };
			r = clock_nanosleep(CLOCK_MONOTONIC, 0, &req, NULL);
		} else if (s->kind == 1) {
			struct timespec req = { 3600, 0 }, rem = { -1, -1 };
			r = nanosleep(&req, &rem) ? errno : 0;
			if (r == EINTR && (rem.tv_sec < 0 || rem.tv_sec > 3600 || rem.tv_nsec < 0 ||
					   rem.tv_nsec >= 1000000000L))
				s->einval++;
		} else if (s->kind == 2) {
			r = clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, &deadline, NULL);
		} else {
			r = clock_nanosleep(CLOCK_BOOTTIME, TIMER_ABSTIME, &deadline, NULL);
		}
		if (r == 0)
			s->completed++;
		else if (r != EINTR)
			s->other_err = r;
	}
	/* sleeping still works */
	struct timespec shortreq = { 0, 2000000 };
	if (nanosleep(&shortreq, NULL) && errno != EINTR)
		s->other_err = errno;
	struct timespec abs;
	clock_gettime(CLOCK_MONOTONIC, &abs);
	abs.tv_nsec += 1000000;
	if (abs.tv_nsec >= 1000000000L) {
		abs.tv_sec++;
		abs.tv_nsec -= 1000000000L;
	}
	int r;
	while ((r = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &abs, NULL)) == EINTR)
		;
	if (r)
		s->other_err = r;
	s->done = 1;
}

static void *thread_fn(void *arg)
{
	sleep_loop(arg);
	return NULL;
}

static void report(struct sleeper *s)
{
	CHECK(s->completed == 0, "%s: a long sleep completed early (%d times)", s->name, s->completed);
	CHECK(s->einval == 0, "%s: nanosleep returned a bogus remaining time", s->name);
	CHECK(s->other_err == 0, "%s: unexpected error %d (%s)", s->name, s->other_err, strerror(s->other_err));
}

int main(void)
{
	static struct sleeper sl[4] = { { "main clock_nanosleep(MONOTONIC, rel)", 0 },
					 { "thread nanosleep", 1 },
					 { "thread clock_nanosleep(REALTIME, abs)", 2 },
					 { "thread clock_nanosleep(BOOTTIME, abs)", 3 } };
	pthread_t t[4];
	cr_init();
	for (int i = 1; i < 4; i++)
		DIE_IF(pthread_create(&t[i], NULL, thread_fn, &sl[i]), "pthread_create");
	for (int i = 1; i < 4; i++) {
		while (!sl[i].in_loop)
			cr_sleep_ms(1);
		cr_wait_in_syscall(getpid(), sl[i].tid, SYS_clock_nanosleep, 2000);
	}
	cr_ready();
	sleep_loop(&sl[0]);
	for (int i = 1; i < 4; i++) {
		for (int n = 0; !sl[i].done && n < CR_PATIENCE_LOOPS(5); n++) {
			pthread_kill(t[i], SIGUSR1);
			cr_sleep_ms(5);
		}
		if (!CHECK(sl[i].done, "%s: never woke up", sl[i].name))
			continue;
		pthread_join(t[i], NULL);
	}
	for (int i = 0; i < 4; i++)
		report(&sl[i]);
	cr_finish();
}
