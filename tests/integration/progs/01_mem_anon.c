/* Scenario 01: private anonymous memory.
 * - 256-page area: even pages hold a pattern, pages 4k+1 were only read
 *   (zero page), pages 4k+3 were never touched;
 * - 64 MiB area with a 1 MiB prefix, every 17th page and the last page written;
 * - .data and .bss globals modified.
 * After the signal: patterns intact, everything else reads as zero, and all
 * pages are still private and writable. */
#include "common.h"

#define SMALL_PAGES 256
#define BIG_SIZE (64ul << 20)
#define SEED_SMALL 0x0101
#define SEED_BIG 0x0102
#define SEED_BSS 0x0103

static uint8_t bss_area[3 * 4096 + 123];
static uint64_t data_words[64] = { 1, 2, 3 };

static int big_written(size_t pg, size_t npages)
{
	return pg < 256 || pg % 17 == 0 || pg == npages - 1;
}

int main(void)
{
	size_t ps = cr_page_size();
	volatile uint64_t sink = 0;

	cr_init();
	uint8_t *small = mmap(NULL, SMALL_PAGES * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint8_t *big = mmap(NULL, BIG_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	DIE_IF(small == MAP_FAILED || big == MAP_FAILED, "mmap");

	for (size_t i = 0; i < SMALL_PAGES; i++) {
		if (i % 2 == 0)
			cr_fill_off(small + i * ps, ps, SEED_SMALL, i * ps);
		else if (i % 4 == 1)
			for (size_t o = 0; o < ps; o += 512)
				sink += ((volatile uint8_t *)small)[i * ps + o]; /* zero page */
	}
	size_t bigpages = BIG_SIZE / ps;
	for (size_t pg = 0; pg < bigpages; pg++)
		if (big_written(pg, bigpages))
			cr_fill_off(big + pg * ps, ps, SEED_BIG, pg * ps);
	/* read a few untouched big pages too */
	for (size_t pg = 300; pg < bigpages; pg += 1001)
		if (!big_written(pg, bigpages))
		sink += ((volatile uint8_t *)big)[pg * ps + 7];
	cr_fill(bss_area, sizeof(bss_area), SEED_BSS);
	for (int i = 0; i < 64; i++)
		data_words[i] = cr_mix64(i * 77);
	if (sink)
		cr_die("untouched memory is not zero");

	cr_ready();
	cr_wait();

	for (size_t i = 0; i < SMALL_PAGES; i++) {
		char what[64];
		snprintf(what, sizeof(what), "small page %zu", i);
		if (i % 2 == 0)
			cr_expect_pattern(what, small + i * ps, ps, SEED_SMALL, i * ps);
		else
			cr_expect_zero(what, small + i * ps, ps);
	}
	int bad = 0;
	for (size_t pg = 0; pg < bigpages && bad < 5; pg++) {
		char what[64];
		snprintf(what, sizeof(what), "64M area page %zu", pg);
		if (big_written(pg, bigpages))
			bad += !cr_expect_pattern(what, big + pg * ps, ps, SEED_BIG, pg * ps);
		else
			bad += !cr_expect_zero(what, big + pg * ps, ps);
	}
	cr_expect_pattern("bss array", bss_area, sizeof(bss_area), SEED_BSS, 0);
	for (int i = 0; i < 64; i++)
		if (data_words[i] != cr_mix64(i * 77)) {
			cr_fail("data word %d changed", i);
			break;
		}
	cr_expect_perms("small area", small, "rw-p");
	cr_expect_perms("big area", big + BIG_SIZE / 2, "rw-p");

	/* still writable, still private: write every page, read back */
	for (size_t i = 0; i < SMALL_PAGES; i++)
		small[i * ps + 5] = (uint8_t)(i + 1);
	for (size_t i = 0; i < SMALL_PAGES; i++)
		if (small[i * ps + 5] != (uint8_t)(i + 1)) {
			cr_fail("small page %zu not writable after restore", i);
			break;
		}
	big[BIG_SIZE - 1] ^= 0xff;
	big[12345 * ps] = 0x5a;
	CHECK(big[12345 * ps] == 0x5a, "64M area: write to untouched page lost");
	cr_finish();
}
