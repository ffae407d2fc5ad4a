/* Scenario 20: pthread synchronisation objects.
 * At dump time:
 *   5 workers wait in pthread_cond_wait on a condvar (predicate `released`),
 *   1 worker waits in pthread_cond_timedwait with a 2 h deadline,
 *   1 worker is blocked in pthread_mutex_lock on a mutex the main thread holds,
 *   1 worker is blocked in pthread_rwlock_rdlock while main holds the write lock,
 *   2 workers wait in pthread_barrier_wait (barrier of 3, main is the third).
 * After the signal main broadcasts, unlocks and joins the barrier; every
 * worker must wake, see the right state and finish. */
#include "common.h"
#include <pthread.h>

#define NCOND 5
static pthread_mutex_t mtx = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static pthread_mutex_t held = PTHREAD_MUTEX_INITIALIZER;
static pthread_rwlock_t rw = PTHREAD_RWLOCK_INITIALIZER;
static pthread_barrier_t bar;
static int released;
static volatile int woke_cond, woke_timed, timed_out, got_mutex, got_rdlock, passed_barrier, serial;
static volatile int started;
static int shared_counter;

static void block_usr1(void)
{
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &s, NULL);
}

static void *cond_worker(void *arg)
{
	(void)arg;
	block_usr1();
	pthread_mutex_lock(&mtx);
	__atomic_fetch_add(&started, 1, __ATOMIC_SEQ_CST);
	while (!released)
		pthread_cond_wait(&cond, &mtx);
	shared_counter++;
	pthread_mutex_unlock(&mtx);
	__atomic_fetch_add(&woke_cond, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

static void *timed_worker(void *arg)
{
	(void)arg;
	block_usr1();
	struct timespec dl;
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += 7200;
	pthread_mutex_lock(&mtx);
	__atomic_fetch_add(&started, 1, __ATOMIC_SEQ_CST);
	while (!released) {
		int r = pthread_cond_timedwait(&cond, &mtx, &dl);
		if (r == ETIMEDOUT) {
			timed_out = 1;
			break;
		}
	}
	shared_counter++;
	pthread_mutex_unlock(&mtx);
	woke_timed = 1;
	return NULL;
}

static void *mutex_worker(void *arg)
{
	(void)arg;
	block_usr1();
	__atomic_fetch_add(&started, 1, __ATOMIC_SEQ_CST);
	pthread_mutex_lock(&held);
	got_mutex = 1;
	pthread_mutex_unlock(&held);
	return NULL;
}

static void *rw_worker(void *arg)
{
	(void)arg;
	block_usr1();
	__atomic_fetch_add(&started, 1, __ATOMIC_SEQ_CST);
	pthread_rwlock_rdlock(&rw);
	got_rdlock = 1;
	pthread_rwlock_unlock(&rw);
	return NULL;
}

static void *barrier_worker(void *arg)
{
	(void)arg;
	block_usr1();
	__atomic_fetch_add(&started, 1, __ATOMIC_SEQ_CST);
	int r = pthread_barrier_wait(&bar);
	if (r == PTHREAD_BARRIER_SERIAL_THREAD)
		__atomic_fetch_add(&serial, 1, __ATOMIC_SEQ_CST);
	__atomic_fetch_add(&passed_barrier, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

int main(void)
{
	pthread_t t[NCOND + 5];
	int n = 0;
	cr_init();
	pthread_barrier_init(&bar, NULL, 3);
	pthread_mutex_lock(&held);
	pthread_rwlock_wrlock(&rw);
	for (int i = 0; i < NCOND; i++)
		DIE_IF(pthread_create(&t[n++], NULL, cond_worker, NULL), "pthread_create");
	DIE_IF(pthread_create(&t[n++], NULL, timed_worker, NULL), "pthread_create");
	DIE_IF(pthread_create(&t[n++], NULL, mutex_worker, NULL), "pthread_create");
	DIE_IF(pthread_create(&t[n++], NULL, rw_worker, NULL), "pthread_create");
	DIE_IF(pthread_create(&t[n++], NULL, barrier_worker, NULL), "pthread_create");
	DIE_IF(pthread_create(&t[n++], NULL, barrier_worker, NULL), "pthread_create");
	while (__atomic_load_n(&started, __ATOMIC_SEQ_CST) < n)
		cr_sleep_ms(1);
	/* give them a moment to block in their futexes (not required) */
	cr_sleep_ms(50);
	cr_ready();
	cr_wait();

	CHECK(woke_cond == 0 && !woke_timed && !got_mutex && !got_rdlock && passed_barrier == 0,
	      "a worker got through before the release (cond %d timed %d mutex %d rd %d barrier %d)",
	      woke_cond, woke_timed, got_mutex, got_rdlock, passed_barrier);
	pthread_mutex_lock(&mtx);
	released = 1;
	pthread_cond_broadcast(&cond);
	pthread_mutex_unlock(&mtx);
	pthread_mutex_unlock(&held);
	pthread_rwlock_unlock(&rw);
	int r = pthread_barrier_wait(&bar);
	if (r == PTHREAD_BARRIER_SERIAL_THREAD)
		__atomic_fetch_add(&serial, 1, __ATOMIC_SEQ_CST);
	else
		CHECK(r == 0, "main pthread_barrier_wait: %d", r);

	for (int k = 0; k < CR_PATIENCE_LOOPS(5); k++) {
		if (woke_cond == NCOND && woke_timed && got_mutex && got_rdlock && passed_barrier == 2)
			break;
		cr_sleep_ms(5);
	}
	CHECK_EQ(woke_cond, NCOND, "condvar waiters woken");
	CHECK(woke_timed, "timed condvar waiter not woken");
	CHECK(!timed_out, "pthread_cond_timedwait timed out early");
	CHECK(got_mutex, "mutex waiter never got the mutex");
	CHECK(got_rdlock, "rwlock reader never got the lock");
	CHECK_EQ(passed_barrier, 2, "barrier workers through");
	CHECK_EQ(serial, 1, "PTHREAD_BARRIER_SERIAL_THREAD returns");
	if (!cr_failed()) {
		for (int i = 0; i < n; i++)
			pthread_join(t[i], NULL);
		CHECK_EQ(shared_counter, NCOND + 1, "counter under the mutex");
	}
	cr_finish();
}
