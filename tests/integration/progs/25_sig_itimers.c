/* Scenario 25: interval timers.
 * ITIMER_REAL    value 3000 s, interval 1000 s
 * ITIMER_VIRTUAL value 2000 s, interval  500 s
 * ITIMER_PROF    value 2500 s, interval  700.25 s
 * (handlers installed; none can fire during the test).
 * After the signal: getitimer gives 0 < value <= set value (+ a few ticks for
 * the CPU-time timers, which the kernel rounds up when set) and the interval
 * unchanged for all three, no timer signal was delivered, and a short REAL
 * timer armed after restore fires (SIGALRM arrives). */
#include "common.h"
#include <sys/time.h>

static volatile int hits[65];
static void on_timer(int s) { hits[s]++; }

struct spec {
	int which;
	const char *name;
	struct itimerval set;
} specs[3] = {
	{ ITIMER_REAL, "ITIMER_REAL", { { 1000, 0 }, { 3000, 0 } } },
	{ ITIMER_VIRTUAL, "ITIMER_VIRTUAL", { { 500, 0 }, { 2000, 0 } } },
	{ ITIMER_PROF, "ITIMER_PROF", { { 700, 250000 }, { 2500, 0 } } },
};

static long long usec(struct timeval tv) { return (long long)tv.tv_sec * 1000000 + tv.tv_usec; }

int main(void)
{
	cr_init();
	struct sigaction sa = { 0 };
	sa.sa_handler = on_timer;
	sigaction(SIGALRM, &sa, NULL);
	sigaction(SIGVTALRM, &sa, NULL);
	sigaction(SIGPROF, &sa, NULL);
	for (int i = 0; i < 3; i++)
		DIE_IF(setitimer(specs[i].which, &specs[i].set, NULL), "setitimer %s", specs[i].name);
	/* burn a little CPU so VIRTUAL/PROF are below their set values */
	volatile uint64_t x = 0;
	for (int i = 0; i < 2000000; i++)
		x += cr_mix64(i);

	cr_ready();
	cr_wait();

	for (int i = 0; i < 3; i++) {
		struct itimerval cur;
		if (!CHECK(getitimer(specs[i].which, &cur) == 0, "getitimer %s", specs[i].name))
			continue;
		long long v = usec(cur.it_value), set = usec(specs[i].set.it_value);
		/* the kernel adds one tick to CPU-time itimers when they are set (and a
		 * restore sets them again): allow a few ticks of slack there */
		if (specs[i].which != ITIMER_REAL)
			set += 50000;
		CHECK(v > 0 && v <= set, "%s: value %lld us, expected in (0, %lld]", specs[i].name, v, set);
		CHECK(usec(cur.it_interval) == usec(specs[i].set.it_interval), "%s: interval %lld us, expected %lld",
		      specs[i].name, usec(cur.it_interval), usec(specs[i].set.it_interval));
	}
	CHECK(!hits[SIGALRM] && !hits[SIGVTALRM] && !hits[SIGPROF], "a timer fired early (ALRM %d VTALRM %d PROF %d)",
	      hits[SIGALRM], hits[SIGVTALRM], hits[SIGPROF]);

	/* a short real timer armed now must fire */
	struct itimerval shortv = { { 0, 0 }, { 0, 20000 } };
	CHECK(setitimer(ITIMER_REAL, &shortv, NULL) == 0, "setitimer short");
	for (int n = 0; !hits[SIGALRM] && n < CR_PATIENCE_LOOPS(5); n++)
		cr_sleep_ms(5);
	CHECK(hits[SIGALRM] == 1, "short ITIMER_REAL delivered SIGALRM %d times", hits[SIGALRM]);
	cr_finish();
}
