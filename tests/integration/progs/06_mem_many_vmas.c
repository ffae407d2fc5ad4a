/* Scenario 06: many (600) small adjacent mappings.
 * A reservation of 600 areas of 1-3 pages each, protections cycling through
 * r--, rw-, ---, r-x, rw- (so neighbours never merge), each holding its own
 * pattern (written before the protection change), some areas anonymous
 * MAP_FIXED remaps inside the reservation.
 * After the signal: the same 600 VMAs with the same bounds and perms exist,
 * and every area holds its pattern (PROT_NONE ones are made readable first). */
#include "common.h"

#define NAREA 600
#define SEED 0x0600

static const int prots[5] = { PROT_READ, PROT_READ | PROT_WRITE, PROT_NONE,
			      PROT_READ | PROT_EXEC, PROT_READ | PROT_WRITE | PROT_EXEC };
static const char *perm_str[5] = { "r--p", "rw-p", "---p", "r-xp", "rwxp" };

static size_t off[NAREA], len[NAREA];
static uint8_t *base;
static size_t total;

struct scan {
	int count, bad;
};

static void scan_cb(const struct cr_map *m, void *a)
{
	struct scan *s = a;
	unsigned long b = (unsigned long)base;
	if (m->end <= b || m->start >= b + total)
		return;
	/* find the area starting at m->start */
	int lo = 0, hi = NAREA - 1, idx = -1;
	while (lo <= hi) {
		int mid = (lo + hi) / 2;
		if (b + off[mid] == m->start) {
			idx = mid;
			break;
		}
		if (b + off[mid] < m->start)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	s->count++;
	if (idx < 0) {
		if (s->bad++ < 5)
			cr_fail("unexpected VMA %lx-%lx %s inside the reservation", m->start, m->end, m->perms);
		return;
	}
	if (m->end != b + off[idx] + len[idx] || strcmp(m->perms, perm_str[idx % 5])) {
		if (s->bad++ < 5)
			cr_fail("area %d: VMA %lx-%lx %s, expected %lx-%lx %s", idx, m->start, m->end,
				m->perms, b + off[idx], b + off[idx] + len[idx], perm_str[idx % 5]);
	}
}

int main(void)
{
	size_t ps = cr_page_size();
	cr_init();
	total = 0;
	for (int i = 0; i < NAREA; i++) {
		off[i] = total;
		len[i] = (1 + cr_mix64(i) % 3) * ps;
		total += len[i];
	}
	base = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	DIE_IF(base == MAP_FAILED, "mmap reservation");
	for (int i = 0; i < NAREA; i++) {
		if (i % 7 == 0) { /* a fresh mapping placed over the reservation */
			void *p = mmap(base + off[i], len[i], PROT_READ | PROT_WRITE,
				       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
			DIE_IF(p != base + off[i], "mmap fixed %d", i);
		}
		cr_fill(base + off[i], len[i], SEED + i);
		DIE_IF(mprotect(base + off[i], len[i], prots[i % 5]), "mprotect %d", i);
	}
	struct scan s0 = { 0, 0 };
	cr_maps_foreach(scan_cb, &s0);
	DIE_IF(s0.bad || s0.count != NAREA, "layout before dump: %d VMAs, %d bad", s0.count, s0.bad);

	cr_ready();
	cr_wait();

	struct scan s1 = { 0, 0 };
	cr_maps_foreach(scan_cb, &s1);
	CHECK_EQ(s1.count, NAREA, "number of VMAs in the reservation");
	int bad = 0;
	for (int i = 0; i < NAREA && bad < 5; i++) {
		char what[64];
		if (prots[i % 5] == PROT_NONE && mprotect(base + off[i], len[i], PROT_READ)) {
			cr_fail("area %d: mprotect: %s", i, strerror(errno));
			continue;
		}
		snprintf(what, sizeof(what), "area %d (%s)", i, perm_str[i % 5]);
		bad += !cr_expect_pattern(what, base + off[i], len[i], SEED + i, 0);
	}
	cr_finish();
}
