/* Scenario 42 (extra): scheduling and miscellaneous task attributes.
 * SCHED_BATCH with nice 3, timer slack 123456 ns (per thread), oom_score_adj
 * 500, I/O priority best-effort level 6, PR_SET_THP_DISABLE.
 * After the signal all of them read back unchanged. */
#include "common.h"
#include <sys/resource.h>

#define IOPRIO_CLASS_SHIFT 13
#define IOPRIO_PRIO_VALUE(c, d) (((c) << IOPRIO_CLASS_SHIFT) | (d))
#define IOPRIO_CLASS_BE 2
#define IOPRIO_WHO_PROCESS 1

int main(void)
{
	cr_init();
	DIE_IF(setpriority(PRIO_PROCESS, 0, 3), "setpriority");
	struct sched_param sp = { 0 };
	DIE_IF(sched_setscheduler(0, SCHED_BATCH, &sp), "sched_setscheduler");
	DIE_IF(prctl(PR_SET_TIMERSLACK, 123456, 0, 0, 0), "PR_SET_TIMERSLACK");
	int fd = open("/proc/self/oom_score_adj", O_WRONLY);
	DIE_IF(fd < 0 || write(fd, "500", 3) != 3, "oom_score_adj");
	close(fd);
	DIE_IF(syscall(SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, IOPRIO_PRIO_VALUE(IOPRIO_CLASS_BE, 6)),
	       "ioprio_set");
	DIE_IF(prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0), "PR_SET_THP_DISABLE");

	cr_ready();
	cr_wait();

	CHECK(sched_getscheduler(0) == SCHED_BATCH, "policy %d, expected SCHED_BATCH", sched_getscheduler(0));
	errno = 0;
	int nice = getpriority(PRIO_PROCESS, 0);
	CHECK(nice == 3 && errno == 0, "nice %d, expected 3", nice);
	CHECK(prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0) == 123456, "timer slack %d", prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0));
	char v[32] = "";
	cr_read_file("/proc/self/oom_score_adj", v, sizeof(v));
	CHECK(atoi(v) == 500, "oom_score_adj %s", v);
	long io = syscall(SYS_ioprio_get, IOPRIO_WHO_PROCESS, 0);
	CHECK(io == IOPRIO_PRIO_VALUE(IOPRIO_CLASS_BE, 6), "ioprio 0x%lx, expected 0x%x", io,
	      IOPRIO_PRIO_VALUE(IOPRIO_CLASS_BE, 6));
	CHECK(prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0) == 1, "THP disable flag lost");
	cr_finish();
}
