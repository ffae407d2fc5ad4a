/* Scenario 26: POSIX timers (raw syscalls, kernel timer ids).
 *   t1 CLOCK_MONOTONIC  SIGEV_SIGNAL RTMIN+3 value 1001, 3000 s, interval 100 s
 *   t2 CLOCK_REALTIME   SIGEV_NONE, absolute now + 5000 s
 *   t3 CLOCK_MONOTONIC  SIGEV_THREAD_ID -> worker, RTMIN+4 value 3003, disarmed
 *   t4 CLOCK_PROCESS_CPUTIME_ID SIGEV_SIGNAL RTMIN+5, 1000 s of CPU
 *   t5 created and deleted (a hole in the ids), t6 disarmed
 *   t7 CLOCK_BOOTTIME   SIGEV_SIGNAL RTMIN+6, 4000 s
 * After the signal: the same ids exist (t5 does not), timer_gettime values are
 * plausible and intervals exact, overruns 0, /proc/self/timers has the same
 * entries; then t3 is armed for 10 ms and the worker must receive RTMIN+4 with
 * SI_TIMER, the t3 id and value 3003; a new timer can be created. */
#include "common.h"
#include <pthread.h>

#define RT(n) (SIGRTMIN + (n))
#define NT 7

static int ids[NT + 1];
static pid_t worker_tid;
static volatile int worker_ready, arm_done, worker_done;
static siginfo_t worker_si;
static int worker_r;
static volatile int hits;

static void on_sig(int s) { (void)s; hits++; }

static int tcreate(clockid_t clk, int notify, int signo, int value, pid_t tid)
{
	struct sigevent sev;
	int id = -1;
	memset(&sev, 0, sizeof(sev));
	sev.sigev_notify = notify;
	sev.sigev_signo = signo;
	sev.sigev_value.sival_int = value;
	sev._sigev_un._tid = tid;
	DIE_IF(syscall(SYS_timer_create, clk, &sev, &id), "timer_create(clock %d)", (int)clk);
	return id;
}

static void tset(int id, int flags, time_t val, time_t ival)
{
	struct itimerspec its = { { ival, 0 }, { val, 0 } };
	DIE_IF(syscall(SYS_timer_settime, id, flags, &its, NULL), "timer_settime(%d)", id);
}

static double secs(struct timespec t) { return (double)t.tv_sec + t.tv_nsec / 1e9; }

static void *worker(void *arg)
{
	(void)arg;
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, SIGUSR1);
	sigaddset(&s, RT(4));
	pthread_sigmask(SIG_BLOCK, &s, NULL);
	worker_tid = cr_gettid();
	worker_ready = 1;
	while (!arm_done)
		cr_sleep_ms(5);
	sigdelset(&s, SIGUSR1);
	struct timespec to = { CR_PATIENCE_MS / 1000, 0 }; /* only avoids a hang */
	worker_r = (int)syscall(SYS_rt_sigtimedwait, &s, &worker_si, &to, 8);
	worker_done = 1;
	return NULL;
}

/* /proc/self/timers as a sorted list of entries */
static int timers_blocks(char out[][256], int max)
{
	static char buf[16384];
	int n = 0;
	if (cr_read_file("/proc/self/timers", buf, sizeof(buf)) < 0)
		return -1;
	/* an entry starts with a line "ID: n" (beware of "ClockID: ") */
	char *p = buf;
	while (p && *p && n < max) {
		char *q = strstr(p + 1, "\nID: ");
		size_t l = q ? (size_t)(q + 1 - p) : strlen(p);
		if (strncmp(p, "ID: ", 4)) {
			p = q ? q + 1 : NULL;
			continue;
		}
		if (l > 255)
			l = 255;
		memcpy(out[n], p, l);
		out[n][l] = 0;
		n++;
		p = q ? q + 1 : NULL;
	}
	qsort(out, (size_t)n, 256, (int (*)(const void *, const void *))strcmp);
	return n;
}

int main(void)
{
	static char blocks0[32][256], blocks1[32][256];
	cr_init();
	struct sigaction sa = { 0 };
	sa.sa_handler = on_sig;
	for (int i = 3; i <= 6; i++)
		if (i != 4)
			sigaction(RT(i), &sa, NULL);
	pthread_t w;
	DIE_IF(pthread_create(&w, NULL, worker, NULL), "pthread_create");
	while (!worker_ready)
		cr_sleep_ms(1);

	struct timespec now;
	ids[1] = tcreate(CLOCK_MONOTONIC, SIGEV_SIGNAL, RT(3), 1001, 0);
	ids[2] = tcreate(CLOCK_REALTIME, SIGEV_NONE, 0, 0, 0);
	ids[3] = tcreate(CLOCK_MONOTONIC, SIGEV_SIGNAL | SIGEV_THREAD_ID, RT(4), 3003, worker_tid);
	ids[4] = tcreate(CLOCK_PROCESS_CPUTIME_ID, SIGEV_SIGNAL, RT(5), 4004, 0);
	ids[5] = tcreate(CLOCK_MONOTONIC, SIGEV_SIGNAL, RT(6), 5005, 0);
	ids[6] = tcreate(CLOCK_MONOTONIC, SIGEV_SIGNAL, RT(6), 6006, 0);
	ids[7] = tcreate(CLOCK_BOOTTIME, SIGEV_SIGNAL, RT(6), 7007, 0);
	tset(ids[1], 0, 3000, 100);
	clock_gettime(CLOCK_REALTIME, &now);
	tset(ids[2], TIMER_ABSTIME, now.tv_sec + 5000, 0);
	tset(ids[4], 0, 1000, 0);
	tset(ids[7], 0, 4000, 0);
	DIE_IF(syscall(SYS_timer_delete, ids[5]), "timer_delete");
	int nb0 = timers_blocks(blocks0, 32);
	DIE_IF(nb0 != 6, "/proc/self/timers lists %d timers, expected 6", nb0);

	cr_ready();
	cr_wait();

	struct {
		double lo, hi, ival;
	} exp[NT + 1] = { { 0 }, { 0, 3000, 100 }, { 0, 5000, 0 }, { -1, 0, 0 }, { 0, 1000, 0 },
			  { 0 },       { -1, 0, 0 },     { 0, 4000, 0 } };
	for (int i = 1; i <= NT; i++) {
		struct itimerspec cur;
		long r = syscall(SYS_timer_gettime, ids[i], &cur);
		if (i == 5) {
			CHECK(r < 0 && errno == EINVAL, "deleted timer id %d exists again", ids[5]);
			continue;
		}
		if (!CHECK(r == 0, "timer t%d (id %d): timer_gettime: %s", i, ids[i], strerror(errno)))
			continue;
		double v = secs(cur.it_value), iv = secs(cur.it_interval);
		if (exp[i].lo < 0)
			CHECK(v == 0 && iv == 0, "t%d (id %d) should be disarmed: value %.3f interval %.3f", i, ids[i],
			      v, iv);
		else
			CHECK(v > exp[i].lo && v <= exp[i].hi && iv == exp[i].ival,
			      "t%d (id %d): value %.3f (expected (%.0f, %.0f]) interval %.3f (expected %.0f)", i,
			      ids[i], v, exp[i].lo, exp[i].hi, iv, exp[i].ival);
		CHECK(syscall(SYS_timer_getoverrun, ids[i]) == 0, "t%d: overrun not 0", i);
	}
	int nb1 = timers_blocks(blocks1, 32);
	CHECK(nb1 == nb0, "/proc/self/timers lists %d timers, was %d", nb1, nb0);
	for (int i = 0; i < nb0 && i < nb1; i++)
		CHECK(!strcmp(blocks0[i], blocks1[i]), "/proc/self/timers entry changed:\n%s\nwas:\n%s", blocks1[i],
		      blocks0[i]);
	CHECK(hits == 0, "a long timer fired early");

	/* arm the thread-directed timer now */
	struct itimerspec its = { { 0, 0 }, { 0, 10000000 } };
	CHECK(syscall(SYS_timer_settime, ids[3], 0, &its, NULL) == 0, "arming t3 after restore: %s",
	      strerror(errno));
	arm_done = 1;
	pthread_join(w, NULL);
	CHECK(worker_r == RT(4), "worker: rt_sigtimedwait returned %d (errno %d), expected SIGRTMIN+4", worker_r,
	      errno);
	if (worker_r == RT(4))
		CHECK(worker_si.si_code == SI_TIMER && worker_si.si_timerid == ids[3] &&
			      worker_si.si_value.sival_int == 3003,
		      "timer signal: code %d timerid %d value %d, expected SI_TIMER %d 3003", worker_si.si_code,
		      worker_si.si_timerid, worker_si.si_value.sival_int, ids[3]);
	int nid = tcreate(CLOCK_MONOTONIC, SIGEV_NONE, 0, 0, 0);
	for (int i = 1; i <= NT; i++)
		if (i != 5)
			CHECK(nid != ids[i], "new timer got the id %d of a live timer", nid);
	cr_finish();
}
