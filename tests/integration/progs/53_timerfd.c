/* Scenario 53: timerfds.
 * T1: MONOTONIC, fired once 10 ms in, period 100 s: one expiration unread.
 * T2: MONOTONIC one-shot that fired: one expiration unread, disarmed.
 * T3: disarmed, O_NONBLOCK.
 * T4: REALTIME, TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET, deadline in 1000 s.
 * T5: BOOTTIME, 1000 s, period 5 s.
 * T6: MONOTONIC one-shot 300 ms.
 * T7: MONOTONIC, 5 ms then every 10 ms, nothing read for 100 ms: the
 *     missed periods count too (fdinfo shows 1 until someone asks).
 * After the signal: flags, clocks, values left and periods, and the
 * expirations read back; T6 still fires (a blocking read returns 1). */
#include "common.h"
#include <sys/timerfd.h>

#define S(x) ((long long)(x) * 1000000000ll)

static long long ts_ns(struct timespec t) { return (long long)t.tv_sec * 1000000000ll + t.tv_nsec; }

static int arm(int clock, int flags, long long value, long long interval, int tflags)
{
	int fd = timerfd_create(clock, flags);
	DIE_IF(fd < 0, "timerfd_create %d", clock);
	struct itimerspec its = { { interval / 1000000000ll, interval % 1000000000ll },
				  { value / 1000000000ll, value % 1000000000ll } };
	DIE_IF(timerfd_settime(fd, tflags, &its, NULL), "timerfd_settime");
	return fd;
}

static uint64_t ticks(int fd)
{
	uint64_t n = 0;
	if (read(fd, &n, 8) != 8)
		return ~0ull;
	return n;
}

static void fdinfo_field(int fd, const char *key, char *out, size_t cap)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	if (cr_status_field(path, key, out, cap))
		snprintf(out, cap, "?");
}

int main(void)
{
	cr_init();
	int T1 = arm(CLOCK_MONOTONIC, 0, 10000000, S(100), 0);
	int T2 = arm(CLOCK_MONOTONIC, 0, 1000000, 0, 0);
	int T3 = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	long long deadline = ts_ns(now) + S(1000);
	int T4 = arm(CLOCK_REALTIME, 0, deadline, 0, TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET);
	int T5 = arm(CLOCK_BOOTTIME, TFD_CLOEXEC, S(1000), S(5), 0);
	int T7 = arm(CLOCK_MONOTONIC, 0, 5000000, 10000000, 0);
	cr_sleep_ms(100);
	int T6 = arm(CLOCK_MONOTONIC, 0, 300000000, 0, 0);
	DIE_IF(T3 < 0, "timerfd_create");
	cr_ready();
	cr_wait();

	char buf[64];
	struct itimerspec its;
	CHECK(timerfd_gettime(T1, &its) == 0 && ts_ns(its.it_interval) == S(100) && ts_ns(its.it_value) > 0 &&
	      ts_ns(its.it_value) <= S(100), "T1: left %lld ns, period %lld ns", ts_ns(its.it_value),
	      ts_ns(its.it_interval));
	CHECK_EQ(ticks(T1), 1, "T1 expirations");
	CHECK(timerfd_gettime(T2, &its) == 0 && ts_ns(its.it_value) == 0 && ts_ns(its.it_interval) == 0,
	      "T2 is armed again");
	CHECK_EQ(ticks(T2), 1, "T2 expirations");
	uint64_t n;
	CHECK(read(T3, &n, 8) < 0 && errno == EAGAIN, "T3 did not say EAGAIN");
	CHECK_EQ(fcntl(T3, F_GETFL) & O_NONBLOCK, O_NONBLOCK, "T3 O_NONBLOCK");
	CHECK_EQ(fcntl(T1, F_GETFL) & O_NONBLOCK, 0, "T1 O_NONBLOCK");
	CHECK(timerfd_gettime(T3, &its) == 0 && ts_ns(its.it_value) == 0, "T3 is armed");

	fdinfo_field(T4, "settime flags", buf, sizeof(buf));
	CHECK(!strcmp(buf, "03"), "T4 settime flags %s, expected 03", buf);
	fdinfo_field(T4, "clockid", buf, sizeof(buf));
	CHECK(!strcmp(buf, "0"), "T4 clock %s", buf);
	clock_gettime(CLOCK_REALTIME, &now);
	CHECK(timerfd_gettime(T4, &its) == 0, "T4 gettime");
	long long off = ts_ns(its.it_value) - (deadline - ts_ns(now));
	CHECK(off > -S(1) && off < S(1), "T4: deadline moved by %lld ns", off);

	fdinfo_field(T5, "clockid", buf, sizeof(buf));
	CHECK(!strcmp(buf, "7"), "T5 clock %s", buf);
	CHECK_EQ(fcntl(T5, F_GETFD), FD_CLOEXEC, "T5 close-on-exec");
	CHECK(timerfd_gettime(T5, &its) == 0 && ts_ns(its.it_interval) == S(5) && ts_ns(its.it_value) > S(900) &&
	      ts_ns(its.it_value) <= S(1000), "T5: left %lld ns, period %lld", ts_ns(its.it_value),
	      ts_ns(its.it_interval));

	uint64_t missed = ticks(T7);
	CHECK(missed >= 9 && missed != ~0ull, "T7: %llu expirations, expected at least 9",
	      (unsigned long long)missed);
	CHECK(timerfd_gettime(T7, &its) == 0 && ts_ns(its.it_interval) == 10000000, "T7 period");

	CHECK_EQ(ticks(T6), 1, "T6 expirations");
	cr_finish();
}
