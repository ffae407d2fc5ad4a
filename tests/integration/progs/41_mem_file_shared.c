/* Scenario 41 (extra): shared file mappings.
 *   m1: "shm.dat" (8 pages) MAP_SHARED rw, page 1 rewritten through the
 *       mapping, inherited by a forked child;
 *   m2: "shm.dat" pages 4-5 MAP_SHARED read-only;
 *   m3: "tmp.dat" (4 pages) MAP_SHARED rw, page 2 rewritten, then the file is
 *       unlinked and its fd closed (only the mapping keeps it).
 * After the signal: contents are as written; the file on disk equals m1; a
 * pwrite is visible through m1 and m2 and a store through m1 is visible to
 * pread (true sharing with the page cache); the child's store is seen by the
 * parent; m3 still holds its data and maps shows it "(deleted)". */
#include "common.h"

#define SEED 0x4101
#define SEED_NEW 0x4102
#define SEED_TMP 0x4103

int main(void)
{
	size_t ps = cr_page_size();
	uint8_t *buf = malloc(8 * ps);
	cr_init();
	cr_fill(buf, 8 * ps, SEED);
	cr_write_file("shm.dat", buf, 8 * ps);
	int fd = open("shm.dat", O_RDWR);
	DIE_IF(fd < 0, "open");
	uint8_t *m1 = mmap(NULL, 8 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	uint8_t *m2 = mmap(NULL, 2 * ps, PROT_READ, MAP_SHARED, fd, 4 * ps);
	DIE_IF(m1 == MAP_FAILED || m2 == MAP_FAILED, "mmap");
	cr_fill_off(m1 + ps, ps, SEED_NEW, ps);

	cr_fill(buf, 4 * ps, SEED_TMP);
	cr_write_file("tmp.dat", buf, 4 * ps);
	int tfd = open("tmp.dat", O_RDWR);
	uint8_t *m3 = mmap(NULL, 4 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, tfd, 0);
	DIE_IF(tfd < 0 || m3 == MAP_FAILED, "tmp.dat");
	cr_fill_off(m3 + 2 * ps, ps, SEED_NEW, 2 * ps);
	close(tfd);
	DIE_IF(unlink("tmp.dat"), "unlink");

	volatile uint32_t *tok = (uint32_t *)(m1 + 7 * ps + 64);
	pid_t child = cr_fork();
	if (child == 0) {
		cr_sync_post("child");
		cr_wait();
		cr_expect_pattern("child: m1 page 0", m1, ps, SEED, 0);
		*tok = 0x41414141;
		cr_child_exit();
	}
	cr_sync_wait("child");
	cr_ready();
	cr_wait();

	cr_expect_pattern("m1 page 0", m1, ps, SEED, 0);
	cr_expect_pattern("m1 page 1 (rewritten)", m1 + ps, ps, SEED_NEW, ps);
	cr_expect_pattern("m1 pages 2-7", m1 + 2 * ps, 5 * ps + 64, SEED, 2 * ps);
	cr_expect_pattern("m2", m2, 2 * ps, SEED, 4 * ps);
	cr_expect_perms("m1", m1, "rw-s");
	cr_expect_perms("m2", m2, "r--s");
	CHECK(pread(fd, buf, 8 * ps, 0) == (ssize_t)(8 * ps), "pread shm.dat");
	CHECK(!memcmp(buf, m1, 7 * ps), "shm.dat on disk differs from the shared mapping");
	uint8_t v = (uint8_t)~m1[4 * ps + 3];
	CHECK(pwrite(fd, &v, 1, 4 * ps + 3) == 1, "pwrite");
	CHECK(m1[4 * ps + 3] == v && m2[3] == v, "pwrite not visible through the shared mappings");
	m1[6 * ps + 9] = 0x99;
	uint8_t r = 0;
	CHECK(pread(fd, &r, 1, 6 * ps + 9) == 1 && r == 0x99, "store through m1 not visible to pread");

	cr_expect_pattern("m3 page 0-1", m3, 2 * ps, SEED_TMP, 0);
	cr_expect_pattern("m3 page 2", m3 + 2 * ps, ps, SEED_NEW, 2 * ps);
	cr_expect_pattern("m3 page 3", m3 + 3 * ps, ps, SEED_TMP, 3 * ps);
	struct cr_map m;
	if (CHECK(cr_map_at(m3, &m) == 0, "m3 not mapped")) {
		size_t l = strlen(m.path);
		CHECK(l > 10 && !strcmp(m.path + l - 10, " (deleted)") && strstr(m.path, "tmp.dat"),
		      "m3 maps entry '%s'", m.path);
		CHECK(!strcmp(m.perms, "rw-s"), "m3 perms %s", m.perms);
	}
	kill(child, SIGUSR1);
	cr_expect_exit(child, 0, "child");
	CHECK(*tok == 0x41414141, "child's store through the shared file mapping not seen");
	cr_finish();
}
