/* Scenario 03: private file mappings of a file created in the cwd.
 * - map1: whole file (16 pages) MAP_PRIVATE rw; pages 2, 5, 9 rewritten,
 *   page 11 partly rewritten, other pages read (page cache) or untouched;
 * - map2: pages 4..7 of the file at file offset 4 pages, read-only;
 * After the signal: modified pages keep their new content, the others match
 * the file, the file itself is unchanged, /proc/self/maps still names the
 * file with the right offsets, and an unmodified page of map1 still follows
 * the file (pwrite to it is visible through the private mapping). */
#include "common.h"

#define NPG 16
#define SEED_FILE 0x0301
#define SEED_NEW 0x0302

static int modified(int pg) { return pg == 2 || pg == 5 || pg == 9; }

int main(void)
{
	size_t ps = cr_page_size();
	size_t fsize = NPG * ps;
	char path[PATH_MAX + 16];
	uint8_t *buf = malloc(fsize);

	cr_init();
	snprintf(path, sizeof(path), "%s/data.bin", cr_dir);
	cr_fill(buf, fsize, SEED_FILE);
	cr_write_file("data.bin", buf, fsize);
	int fd = open("data.bin", O_RDWR);
	DIE_IF(fd < 0, "open data.bin");
	struct stat st0;
	fstat(fd, &st0);

	uint8_t *m1 = mmap(NULL, fsize, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	uint8_t *m2 = mmap(NULL, 4 * ps, PROT_READ, MAP_PRIVATE, fd, 4 * ps);
	DIE_IF(m1 == MAP_FAILED || m2 == MAP_FAILED, "mmap data.bin");
	close(fd); /* the mappings keep the file */

	volatile uint8_t sink = 0;
	for (int pg = 0; pg < NPG; pg++) {
		if (modified(pg))
			cr_fill_off(m1 + pg * ps, ps, SEED_NEW, pg * ps);
		else if (pg == 11)
			cr_fill_off(m1 + pg * ps, 100, SEED_NEW, pg * ps);
		else if (pg % 3 == 0)
			sink += m1[pg * ps + 1];
	}
	sink += m2[0] + m2[3 * ps];
	(void)sink;

	cr_ready();
	cr_wait();

	for (int pg = 0; pg < NPG; pg++) {
		char what[64];
		snprintf(what, sizeof(what), "map1 page %d", pg);
		if (modified(pg)) {
			cr_expect_pattern(what, m1 + pg * ps, ps, SEED_NEW, pg * ps);
		} else if (pg == 11) {
			cr_expect_pattern(what, m1 + pg * ps, 100, SEED_NEW, pg * ps);
			cr_expect_pattern(what, m1 + pg * ps + 100, ps - 100, SEED_FILE, pg * ps + 100);
		} else {
			cr_expect_pattern(what, m1 + pg * ps, ps, SEED_FILE, pg * ps);
		}
	}
	cr_expect_pattern("map2", m2, 4 * ps, SEED_FILE, 4 * ps);

	struct cr_map m;
	if (CHECK(cr_map_at(m1, &m) == 0, "map1 missing from maps")) {
		CHECK(!strcmp(m.path, path), "map1 backed by '%s', expected '%s'", m.path, path);
		CHECK_EQ(m.off, 0, "map1 file offset");
		CHECK(!strcmp(m.perms, "rw-p"), "map1 perms %s", m.perms);
	}
	if (CHECK(cr_map_at(m2, &m) == 0, "map2 missing from maps")) {
		CHECK(!strcmp(m.path, path), "map2 backed by '%s', expected '%s'", m.path, path);
		CHECK_EQ(m.off, 4 * ps, "map2 file offset");
		CHECK(!strcmp(m.perms, "r--p"), "map2 perms %s", m.perms);
		CHECK_EQ(m.end - m.start, 4 * ps, "map2 size");
	}

	/* the file on disk was never written through the private mapping */
	fd = open("data.bin", O_RDWR);
	if (CHECK(fd >= 0, "data.bin disappeared")) {
		struct stat st;
		fstat(fd, &st);
		CHECK_EQ(st.st_ino, st0.st_ino, "data.bin inode");
		CHECK_EQ(st.st_size, fsize, "data.bin size");
		memset(buf, 0, fsize);
		CHECK_EQ(pread(fd, buf, fsize, 0), fsize, "pread data.bin");
		cr_expect_pattern("data.bin on disk", buf, fsize, SEED_FILE, 0);
		/* an unmodified private page still shares the page cache */
		uint8_t v = (uint8_t)~m1[13 * ps + 10];
		CHECK_EQ(pwrite(fd, &v, 1, 13 * ps + 10), 1, "pwrite data.bin");
		CHECK(m1[13 * ps + 10] == v,
		      "unmodified page 13 of the private mapping no longer follows the file");
		CHECK(m2[0 * ps] == cr_pat_byte(SEED_FILE, 4 * ps), "map2 page 0");
		/* and a modified one does not */
		v = (uint8_t)~m1[5 * ps];
		pwrite(fd, &v, 1, 5 * ps);
		CHECK(m1[5 * ps] != v, "modified page 5 of the private mapping follows the file");
		close(fd);
	}
	/* private copy still writable */
	m1[15 * ps] = 0xab;
	CHECK(m1[15 * ps] == 0xab, "map1 not writable");
	cr_finish();
}
