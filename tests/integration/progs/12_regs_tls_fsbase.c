/* Scenario 12: fs base and TLS.
 * Main + 4 threads each keep __thread values (an initialised .tdata word, a
 * .tbss array with a per-thread pattern) and record arch_prctl(ARCH_GET_FS),
 * pthread_self() and the TLS addresses.  Thread 2 also sets its GS base to a
 * private buffer (ARCH_SET_GS).
 * After the signal each thread checks: fs base, %fs:0 self pointer,
 * pthread_self, TLS addresses and contents, gs base (thread 2: the buffer,
 * others: unchanged). */
#include "common.h"
#include <asm/prctl.h>
#include <pthread.h>

#define NTHR 5 /* including main */
#define SEED 0x1200

static __thread uint64_t tdata_word = 0x1234567890abcdefull;
static __thread uint8_t tbss_arr[300];
static __thread int my_index;

struct rec {
	unsigned long fs, gs;
	void *self, *tdata_addr, *tbss_addr;
	pthread_t pt;
};
static struct rec recs[NTHR];
static uint8_t gs_buffer[256];
static volatile int ready_count;

static unsigned long get_base(int code)
{
	unsigned long v = 0;
	syscall(SYS_arch_prctl, code, &v);
	return v;
}

static void setup(int idx)
{
	my_index = idx;
	tdata_word = cr_mix64(SEED + idx);
	cr_fill(tbss_arr, sizeof(tbss_arr), SEED + 100 + idx);
	if (idx == 2)
		DIE_IF(syscall(SYS_arch_prctl, ARCH_SET_GS, (unsigned long)gs_buffer), "ARCH_SET_GS");
	struct rec *r = &recs[idx];
	r->fs = get_base(ARCH_GET_FS);
	r->gs = get_base(ARCH_GET_GS);
	__asm__ volatile("mov %%fs:0, %0" : "=r"(r->self));
	r->tdata_addr = &tdata_word;
	r->tbss_addr = tbss_arr;
	r->pt = pthread_self();
}

static void verify(int idx)
{
	struct rec *r = &recs[idx];
	void *self;
	char who[32];
	snprintf(who, sizeof(who), "thread %d", idx);
	CHECK(my_index == idx, "%s: __thread index is %d", who, my_index);
	CHECK(get_base(ARCH_GET_FS) == r->fs, "%s: fs base %lx, was %lx", who, get_base(ARCH_GET_FS), r->fs);
	__asm__ volatile("mov %%fs:0, %0" : "=r"(self));
	CHECK(self == r->self, "%s: %%fs:0 is %p, was %p", who, self, r->self);
	CHECK((unsigned long)self == r->fs, "%s: TCB self pointer %p != fs base %lx", who, self, r->fs);
	CHECK(pthread_equal(pthread_self(), r->pt), "%s: pthread_self changed", who);
	CHECK(&tdata_word == r->tdata_addr && (void *)tbss_arr == r->tbss_addr,
	      "%s: TLS addresses moved", who);
	CHECK(tdata_word == cr_mix64(SEED + idx), "%s: .tdata value %llx", who, (unsigned long long)tdata_word);
	cr_expect_pattern(who, tbss_arr, sizeof(tbss_arr), SEED + 100 + idx, 0);
	unsigned long gs = get_base(ARCH_GET_GS);
	CHECK(gs == r->gs, "%s: gs base %lx, was %lx", who, gs, r->gs);
	if (idx == 2)
		CHECK(gs == (unsigned long)gs_buffer, "%s: gs base %lx, expected %p", who, gs, (void *)gs_buffer);
}

static void *thread_fn(void *arg)
{
	int idx = (int)(long)arg;
	setup(idx);
	__atomic_fetch_add(&ready_count, 1, __ATOMIC_SEQ_CST);
	cr_wait();
	verify(idx);
	return NULL;
}

int main(void)
{
	cr_init();
	cr_fill(gs_buffer, sizeof(gs_buffer), SEED + 999);
	setup(0);
	pthread_t t[NTHR];
	for (int i = 1; i < NTHR; i++)
		DIE_IF(pthread_create(&t[i], NULL, thread_fn, (void *)(long)i), "pthread_create");
	while (__atomic_load_n(&ready_count, __ATOMIC_SEQ_CST) < NTHR - 1)
		cr_sleep_ms(1);
	for (int i = 0; i < NTHR; i++)
		for (int j = 0; j < i; j++)
			DIE_IF(recs[i].fs == recs[j].fs, "threads %d and %d share an fs base", i, j);
	cr_ready();
	cr_wait();
	verify(0);
	for (int i = 1; i < NTHR; i++) {
		/* the signal may have reached main only: wake the others */
		pthread_kill(t[i], SIGUSR1);
		pthread_join(t[i], NULL);
	}
	cr_expect_pattern("gs buffer", gs_buffer, sizeof(gs_buffer), SEED + 999, 0);
	cr_finish();
}
