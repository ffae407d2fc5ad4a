/* Scenario 04: shared anonymous memory between a parent and a forked child.
 * An 8-page MAP_SHARED|MAP_ANONYMOUS area (pattern, page 7 never touched) is
 * inherited by a child; the child also maps a shared anonymous area of its own.
 * After the signal: both see the pattern, the child writes a token the parent
 * must see, and the parent writes one the child must see. */
#include "common.h"

#define NPG 8
#define SEED 0x0401
#define SEED_CHILD 0x0402
#define TOKEN_C 0xc41dc41dc41dc41dull
#define TOKEN_P 0x9a7e9a7e9a7e9a7eull

static uint8_t *shm;
static size_t ps;

static int wait_token(volatile uint64_t *w, uint64_t token)
{
	for (int i = 0; i < CR_PATIENCE_LOOPS(5); i++) {
		if (__atomic_load_n(w, __ATOMIC_SEQ_CST) == token)
			return 1;
		cr_sleep_ms(5);
	}
	return 0;
}

static void check_common(const char *who)
{
	char what[64];
	snprintf(what, sizeof(what), "%s: shared area pattern", who);
	cr_expect_pattern(what, shm, 6 * ps, SEED, 0);
	snprintf(what, sizeof(what), "%s: shared untouched page", who);
	cr_expect_zero(what, shm + 7 * ps, ps);
	snprintf(what, sizeof(what), "%s: shared area", who);
	cr_expect_perms(what, shm, "rw-s");
}

int main(void)
{
	ps = cr_page_size();
	cr_init();
	shm = mmap(NULL, NPG * ps, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	DIE_IF(shm == MAP_FAILED, "mmap shared");
	cr_fill(shm, 6 * ps, SEED);
	/* page 6 is the token page, page 7 never touched */
	volatile uint64_t *tok_c = (uint64_t *)(shm + 6 * ps);
	volatile uint64_t *tok_p = (uint64_t *)(shm + 6 * ps + 64);

	pid_t child = cr_fork();
	if (child == 0) {
		uint8_t *own = mmap(NULL, 2 * ps, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		DIE_IF(own == MAP_FAILED, "child mmap");
		cr_fill(own, 2 * ps, SEED_CHILD);
		cr_sync_post("child");
		cr_wait();
		check_common("child");
		cr_expect_pattern("child: own shared area", own, 2 * ps, SEED_CHILD, 0);
		*tok_c = TOKEN_C;
		CHECK(wait_token(tok_p, TOKEN_P), "child: parent's write to shared memory never seen");
		cr_child_exit();
	}
	cr_sync_wait("child");
	cr_ready();
	cr_wait();
	check_common("parent");
	kill(child, SIGUSR1);
	CHECK(wait_token(tok_c, TOKEN_C), "parent: child's write to shared memory never seen");
	*tok_p = TOKEN_P;
	cr_expect_exit(child, 0, "child");
	cr_finish();
}
