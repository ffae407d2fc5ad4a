/* Scenario 21: robust futex lists and clear-child-tid.
 * Main + 3 threads record get_robust_list(0) (head, len) before the dump.
 * Thread 1 holds a PTHREAD_MUTEX_ROBUST mutex; a forked child holds a
 * process-shared robust mutex in shared memory.
 * After the signal: every thread's get_robust_list is unchanged; thread 1
 * exits without unlocking and main's lock must return EOWNERDEAD (the kernel
 * walked the restored list); the child does the same with the shared mutex.
 * pthread_join of all threads (clear_child_tid wake-up) must work. */
#include "common.h"
#include <pthread.h>

#define NTHR 4

struct rl {
	void *head;
	size_t len;
};
static struct rl before[NTHR];
static volatile int nready, t_fail[NTHR];
static pthread_mutex_t robust;

static struct rl get_rl(void)
{
	struct rl r = { 0, 0 };
	syscall(SYS_get_robust_list, 0, &r.head, &r.len);
	return r;
}

static void check_rl(int idx)
{
	struct rl now = get_rl();
	if (now.head != before[idx].head || now.len != before[idx].len) {
		cr_fail("thread %d: robust list %p/%zu, was %p/%zu", idx, now.head, now.len,
			before[idx].head, before[idx].len);
		t_fail[idx] = 1;
	}
}

static void *thread_fn(void *arg)
{
	int idx = (int)(long)arg;
	before[idx] = get_rl();
	if (idx == 1)
		DIE_IF(pthread_mutex_lock(&robust), "lock robust mutex");
	__atomic_fetch_add(&nready, 1, __ATOMIC_SEQ_CST);
	cr_wait();
	check_rl(idx);
	return NULL; /* thread 1 exits holding the robust mutex */
}

int main(void)
{
	pthread_t t[NTHR];
	pthread_mutexattr_t a;
	cr_init();
	pthread_mutexattr_init(&a);
	pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
	pthread_mutex_init(&robust, &a);

	/* process-shared robust mutex held by a child */
	pthread_mutex_t *shm = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	DIE_IF(shm == MAP_FAILED, "mmap");
	pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
	pthread_mutex_init(shm, &a);
	pid_t child = cr_fork();
	if (child == 0) {
		struct rl r0 = get_rl();
		DIE_IF(pthread_mutex_lock(shm), "child lock");
		cr_sync_post("child");
		cr_wait();
		struct rl r1 = get_rl();
		CHECK(r0.head == r1.head && r0.len == r1.len, "child: robust list %p/%zu, was %p/%zu", r1.head,
		      r1.len, r0.head, r0.len);
		_exit(cr_failed() ? 1 : 0); /* dies holding the shared mutex */
	}

	before[0] = get_rl();
	DIE_IF(before[0].head == NULL || before[0].len == 0, "no robust list registered by glibc");
	for (int i = 1; i < NTHR; i++)
		DIE_IF(pthread_create(&t[i], NULL, thread_fn, (void *)(long)i), "pthread_create");
	while (__atomic_load_n(&nready, __ATOMIC_SEQ_CST) < NTHR - 1)
		cr_sleep_ms(1);
	cr_sync_wait("child");
	for (int i = 1; i < NTHR; i++)
		DIE_IF(before[i].head == before[0].head, "threads share a robust list head");
	cr_ready();
	cr_wait();
	check_rl(0);
	kill(child, SIGUSR1);
	for (int i = 1; i < NTHR; i++)
		pthread_join(t[i], NULL); /* thread 1 is gone, still holding `robust` */

	struct timespec dl;
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += CR_PATIENCE_MS / 1000; /* only avoids a hang */
	int r = pthread_mutex_timedlock(&robust, &dl);
	CHECK(r == EOWNERDEAD, "robust mutex after owner thread exit: %d (%s), expected EOWNERDEAD", r,
	      strerror(r));
	if (r == EOWNERDEAD) {
		pthread_mutex_consistent(&robust);
		pthread_mutex_unlock(&robust);
	} else if (r == 0) {
		pthread_mutex_unlock(&robust);
	}

	cr_expect_exit(child, 0, "child");
	r = pthread_mutex_trylock(shm);
	CHECK(r == EOWNERDEAD, "shared robust mutex after owner process exit: %d (%s), expected EOWNERDEAD", r,
	      strerror(r));
	cr_finish();
}
