/* Scenario 22: rseq registration (glibc's).
 * In main and 2 threads: __rseq_size > 0, the struct rseq at
 * thread_pointer + __rseq_offset has cpu_id >= 0 consistent with getcpu(2),
 * and re-registering the same area with rseq(2) gives the same errno as
 * before the dump (EBUSY: the kernel still has this exact registration).
 * Also sched_getcpu() agrees with the syscall, and a thread created after
 * restore is registered too. */
#include "common.h"
#include <pthread.h>
#include <sys/rseq.h>

#define NTHR 3
static int reg_errno_before[NTHR];
static void *area_before[NTHR];
static volatile int nready;

static struct rseq *my_rseq(void)
{
	return (struct rseq *)((char *)__builtin_thread_pointer() + __rseq_offset);
}

/* errno of a duplicate registration attempt (EBUSY when registered) */
static int probe_registration(void)
{
	long r = syscall(SYS_rseq, my_rseq(), 32, 0, RSEQ_SIG);
	if (r == 0) { /* was not registered: undo our own registration */
		syscall(SYS_rseq, my_rseq(), 32, RSEQ_FLAG_UNREGISTER, RSEQ_SIG);
		return 0;
	}
	return errno;
}

static void check_cpu(const char *who)
{
	for (int attempt = 0; attempt < 100; attempt++) {
		int32_t a = (int32_t)__atomic_load_n(&my_rseq()->cpu_id, __ATOMIC_SEQ_CST);
		unsigned cpu = 0;
		syscall(SYS_getcpu, &cpu, NULL, NULL);
		int32_t b = (int32_t)__atomic_load_n(&my_rseq()->cpu_id, __ATOMIC_SEQ_CST);
		int g = sched_getcpu();
		if (a != b || (unsigned)a != cpu || g != a)
			continue; /* migrated in between: retry */
		return;
	}
	int32_t id = (int32_t)my_rseq()->cpu_id;
	unsigned cpu = 0;
	syscall(SYS_getcpu, &cpu, NULL, NULL);
	cr_fail("%s: rseq cpu_id %d (cpu_id_start %u) never matches getcpu %u", who, id,
		my_rseq()->cpu_id_start, cpu);
}

static void verify(int idx)
{
	char who[32];
	snprintf(who, sizeof(who), "thread %d", idx);
	CHECK(my_rseq() == area_before[idx], "%s: rseq area moved", who);
	CHECK((int32_t)my_rseq()->cpu_id >= 0, "%s: rseq cpu_id is %d (not registered)", who,
	      (int32_t)my_rseq()->cpu_id);
	check_cpu(who);
	int e = probe_registration();
	CHECK(e == reg_errno_before[idx], "%s: re-registering rseq gives errno %d, was %d", who, e,
	      reg_errno_before[idx]);
}

static void *thread_fn(void *arg)
{
	int idx = (int)(long)arg;
	area_before[idx] = my_rseq();
	reg_errno_before[idx] = probe_registration();
	__atomic_fetch_add(&nready, 1, __ATOMIC_SEQ_CST);
	cr_wait();
	verify(idx);
	return NULL;
}

static void *late_thread(void *arg)
{
	(void)arg;
	CHECK((int32_t)my_rseq()->cpu_id >= 0, "thread created after restore: rseq cpu_id %d",
	      (int32_t)my_rseq()->cpu_id);
	check_cpu("late thread");
	return NULL;
}

int main(void)
{
	pthread_t t[NTHR];
	cr_init();
	if (__rseq_size == 0)
		cr_skip("glibc did not register rseq (glibc.pthread.rseq=0?)");
	area_before[0] = my_rseq();
	reg_errno_before[0] = probe_registration();
	DIE_IF(reg_errno_before[0] != EBUSY, "rseq probe before the dump gave errno %d, expected EBUSY",
	       reg_errno_before[0]);
	check_cpu("main before dump");
	for (int i = 1; i < NTHR; i++)
		DIE_IF(pthread_create(&t[i], NULL, thread_fn, (void *)(long)i), "pthread_create");
	while (__atomic_load_n(&nready, __ATOMIC_SEQ_CST) < NTHR - 1)
		cr_sleep_ms(1);
	cr_ready();
	cr_wait();
	verify(0);
	for (int i = 1; i < NTHR; i++)
		pthread_join(t[i], NULL);
	pthread_t late;
	DIE_IF(pthread_create(&late, NULL, late_thread, NULL), "pthread_create late");
	pthread_join(late, NULL);
	cr_finish();
}
