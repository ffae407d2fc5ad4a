/* Scenario 08: vDSO.
 * Records the [vdso] (and [vvar]) addresses, AT_SYSINFO_EHDR, a copy of the
 * vDSO text, and CLOCK_MONOTONIC/BOOTTIME before the dump.
 * After the signal: [vdso] is at the same address (== AT_SYSINFO_EHDR) with
 * the same size and bytes, clock_gettime/gettimeofday/time work through it,
 * monotonic clocks did not go backwards, and vDSO time is consistent with the
 * raw syscalls (syscall <= vdso <= syscall). */
#include "common.h"
#include <sys/auxv.h>
#include <sys/time.h>

static uint64_t sys_ns(clockid_t c)
{
	struct timespec ts;
	syscall(SYS_clock_gettime, c, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void check_order(clockid_t c, const char *name)
{
	/* vDSO value must lie between two syscall readings (monotonic clocks) */
	for (int i = 0; i < 5; i++) {
		uint64_t a = sys_ns(c);
		uint64_t b = cr_now_ns(c);
		uint64_t d = sys_ns(c);
		if (a <= b && b <= d)
			return;
		if (i == 4)
			cr_fail("%s: vDSO time %llu not between syscall times %llu and %llu", name,
				(unsigned long long)b, (unsigned long long)a, (unsigned long long)d);
	}
}

int main(void)
{
	struct cr_map vdso0, vvar0, m;
	static uint8_t text0[65536];
	cr_init();
	DIE_IF(cr_map_named("[vdso]", &vdso0), "no [vdso] mapping");
	int have_vvar = cr_map_named("[vvar]", &vvar0) == 0;
	unsigned long ehdr0 = getauxval(AT_SYSINFO_EHDR);
	DIE_IF(ehdr0 != vdso0.start, "AT_SYSINFO_EHDR %lx != [vdso] %lx", ehdr0, vdso0.start);
	size_t vsize = vdso0.end - vdso0.start;
	DIE_IF(vsize > sizeof(text0), "vdso too big");
	memcpy(text0, (void *)vdso0.start, vsize);
	uint64_t mono0 = cr_now_ns(CLOCK_MONOTONIC);
	uint64_t boot0 = cr_now_ns(CLOCK_BOOTTIME);
	uint64_t raw0 = cr_now_ns(CLOCK_MONOTONIC_RAW);

	cr_ready();
	cr_wait();

	if (CHECK(cr_map_named("[vdso]", &m) == 0, "no [vdso] after restore")) {
		CHECK(m.start == vdso0.start, "[vdso] at %lx, was at %lx", m.start, vdso0.start);
		CHECK(m.end - m.start == vsize, "[vdso] size %lu, was %zu", m.end - m.start, vsize);
		CHECK(!strcmp(m.perms, vdso0.perms), "[vdso] perms %s, was %s", m.perms, vdso0.perms);
	}
	if (have_vvar && CHECK(cr_map_named("[vvar]", &m) == 0, "no [vvar] after restore"))
		CHECK(m.start == vvar0.start, "[vvar] at %lx, was at %lx", m.start, vvar0.start);
	CHECK_EQ(getauxval(AT_SYSINFO_EHDR), ehdr0, "AT_SYSINFO_EHDR");
	CHECK(!memcmp((void *)vdso0.start, text0, vsize), "vDSO text at the old address changed");

	struct timespec ts;
	CHECK(clock_gettime(CLOCK_REALTIME, &ts) == 0, "clock_gettime(REALTIME)");
	uint64_t mono1 = cr_now_ns(CLOCK_MONOTONIC);
	CHECK(mono1 >= mono0, "CLOCK_MONOTONIC went backwards: %llu < %llu",
	      (unsigned long long)mono1, (unsigned long long)mono0);
	uint64_t boot1 = cr_now_ns(CLOCK_BOOTTIME);
	CHECK(boot1 >= boot0, "CLOCK_BOOTTIME went backwards");
	uint64_t raw1 = cr_now_ns(CLOCK_MONOTONIC_RAW);
	CHECK(raw1 >= raw0, "CLOCK_MONOTONIC_RAW went backwards");
	check_order(CLOCK_MONOTONIC, "CLOCK_MONOTONIC");
	check_order(CLOCK_BOOTTIME, "CLOCK_BOOTTIME");

	/* realtime views agree with each other (1 hour slack: not a timing test) */
	struct timeval tv;
	CHECK(gettimeofday(&tv, NULL) == 0, "gettimeofday");
	uint64_t sys_rt = sys_ns(CLOCK_REALTIME) / 1000000000ull;
	CHECK(tv.tv_sec + 3600 > (time_t)sys_rt && (time_t)sys_rt + 3600 > tv.tv_sec,
	      "gettimeofday %ld vs syscall realtime %llu", (long)tv.tv_sec, (unsigned long long)sys_rt);
	time_t t = time(NULL);
	CHECK(t + 3600 > (time_t)sys_rt && (time_t)sys_rt + 3600 > t, "time() %ld vs %llu", (long)t,
	      (unsigned long long)sys_rt);
	unsigned cpu = 999, node = 999;
	CHECK(getcpu(&cpu, &node) == 0 && cpu < 4096, "getcpu: cpu %u", cpu);
	CHECK(clock_getres(CLOCK_MONOTONIC, &ts) == 0 && ts.tv_sec == 0 && ts.tv_nsec > 0,
	      "clock_getres(MONOTONIC)");
	cr_finish();
}
