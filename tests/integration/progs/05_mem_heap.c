/* Scenario 05: heap / brk.
 * 3000 malloc'ed blocks of varied sizes with patterns (every third freed),
 * a few large (mmap-backed) blocks, and a raw sbrk() extension.
 * After the signal: sbrk(0) is unchanged, every live block keeps its pattern,
 * malloc/free/realloc keep working and the heap can grow again. */
#include "common.h"
#include <malloc.h>

#define NBLK 3000
#define NBIG 4
#define SEED 0x0500

static void *blk[NBLK];
static size_t blksz[NBLK];
static void *big[NBIG];

int main(void)
{
	cr_init();
	for (int i = 0; i < NBLK; i++) {
		blksz[i] = 8 + (cr_mix64(i) % 4000);
		blk[i] = malloc(blksz[i]);
		DIE_IF(!blk[i], "malloc");
		cr_fill(blk[i], blksz[i], SEED + i);
	}
	for (int i = 0; i < NBLK; i += 3) {
		free(blk[i]);
		blk[i] = NULL;
	}
	for (int i = 0; i < NBIG; i++) {
		big[i] = malloc((1 << 20) + i * 4096); /* above the mmap threshold */
		DIE_IF(!big[i], "malloc big");
		cr_fill(big[i], (1 << 20) + i * 4096, SEED + 10000 + i);
	}
	/* a raw brk extension glibc does not know about: 3 pages */
	uint8_t *raw = sbrk(3 * 4096);
	DIE_IF(raw == (void *)-1, "sbrk");
	cr_fill(raw, 3 * 4096, SEED + 20000);
	void *brk0 = sbrk(0);

	cr_ready();
	cr_wait();

	void *brk1 = sbrk(0);
	CHECK(brk0 == brk1, "sbrk(0) is %p, was %p", brk1, brk0);
	int bad = 0;
	for (int i = 0; i < NBLK && bad < 5; i++) {
		char what[64];
		if (!blk[i])
			continue;
		snprintf(what, sizeof(what), "heap block %d (%zu bytes)", i, blksz[i]);
		bad += !cr_expect_pattern(what, blk[i], blksz[i], SEED + i, 0);
	}
	for (int i = 0; i < NBIG; i++) {
		char what[64];
		snprintf(what, sizeof(what), "large block %d", i);
		cr_expect_pattern(what, big[i], (1 << 20) + i * 4096, SEED + 10000 + i, 0);
	}
	cr_expect_pattern("raw sbrk area", raw, 3 * 4096, SEED + 20000, 0);
	struct cr_map m;
	if (CHECK(cr_map_at(raw, &m) == 0, "raw sbrk area not mapped"))
		CHECK(!strcmp(m.path, "[heap]"), "raw sbrk area is in '%s', not [heap]", m.path);

	/* the allocator still works */
	for (int i = 0; i < NBLK; i += 2) {
		blk[i] = realloc(blk[i], 64);
		if (!CHECK(blk[i] != NULL, "realloc failed"))
			break;
		memset(blk[i], 0x5c, 64);
	}
	for (int i = 0; i < NBLK; i++)
		free(blk[i]);
	for (int i = 0; i < NBIG; i++)
		free(big[i]);
	void *p = malloc(5 << 20);
	CHECK(p != NULL, "malloc after restore");
	free(p);
	void *cur = sbrk(0);
	uint8_t *more = sbrk(8192);
	if (CHECK(more != (void *)-1, "sbrk grow after restore: errno %d", errno)) {
		CHECK(more == cur, "sbrk grew from %p, expected %p", (void *)more, cur);
		memset(more, 0xa5, 8192);
		CHECK(more[8191] == 0xa5, "new brk memory");
	}
	cr_finish();
}
