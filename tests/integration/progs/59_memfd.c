/* Scenario 59: memfds, as open files and as mappings of the same object.
 * M1 "data one": 3 pages + 100 bytes, position 1234, F_SEAL_SHRINK |
 *    F_SEAL_GROW, mode 0640; its first 2 pages mapped shared at A1 (and
 *    changed through it); a child inherits M1 and A1; R1 is a second,
 *    read-only open of the same memfd at position 77.
 * M2 "sealed": F_SEAL_WRITE, then mapped shared read-only (A2: it can never
 *    become writable) and privately (P2, changed copy-on-write).
 * M3 "future": mapped shared writable (A3), then F_SEAL_FUTURE_WRITE |
 *    F_SEAL_SEAL: A3 stays writable, nothing else may write.
 * M4 "maponly": 5 pages, only pages 0 and 4 written, mapped shared (A4),
 *    fd closed: only the mapping holds it.
 * M5 "noexec": MFD_NOEXEC_SEAL (mode 0666, F_SEAL_EXEC).
 * After the signal: names, sizes, modes, seals, positions and access modes;
 * the content; each fd and its mapping are one object (same inode; a write
 * through one is seen through the other, in the child too); what the seals
 * forbid is refused and what they allow still works. */
#include "common.h"
#include <linux/kcmp.h>

#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010
#endif
#ifndef F_SEAL_EXEC
#define F_SEAL_EXEC 0x0020
#endif
#ifndef MFD_NOEXEC_SEAL
#define MFD_NOEXEC_SEAL 0x0008U
#endif

static size_t PG;

static int make(const char *name, unsigned flags, size_t size, uint64_t seed)
{
	int fd = memfd_create(name, flags);
	DIE_IF(fd < 0, "memfd_create %s", name);
	uint8_t *buf = malloc(size);
	cr_fill(buf, size, seed);
	DIE_IF(pwrite(fd, buf, size, 0) != (ssize_t)size, "pwrite %s", name);
	free(buf);
	return fd;
}

static void *map(int fd, size_t len, int prot, int flags)
{
	void *p = mmap(NULL, len, prot, flags, fd, 0);
	DIE_IF(p == MAP_FAILED, "mmap");
	return p;
}

static unsigned long map_inode(void *addr)
{
	struct cr_map m;
	char *text = cr_maps_text(), *line;
	unsigned long ino = 0;
	if (cr_map_at(addr, &m) == 0)
		for (line = text; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
			if (strtoul(line, NULL, 16) == m.start)
				sscanf(line, "%*s %*s %*s %*s %lu", &ino);
	free(text);
	return ino;
}

static void expect_link(int fd, const char *want)
{
	char path[64], link[256];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(path, link, sizeof(link) - 1);
	link[n > 0 ? n : 0] = 0;
	CHECK(!strcmp(link, want), "fd %d is %s, expected %s", fd, link, want);
}

static void expect_content(const char *what, int fd, size_t off, size_t len, uint64_t seed, uint64_t poff)
{
	uint8_t *buf = malloc(len);
	CHECK(pread(fd, buf, len, (off_t)off) == (ssize_t)len, "%s: short read", what);
	cr_expect_pattern(what, buf, len, seed, poff);
	free(buf);
}

int main(void)
{
	cr_init();
	PG = cr_page_size();
	size_t size1 = 3 * PG + 100;
	int M1 = make("data one", MFD_ALLOW_SEALING, size1, 0x591);
	uint8_t *A1 = map(M1, 2 * PG, PROT_READ | PROT_WRITE, MAP_SHARED);
	cr_fill(A1 + 10, 500, 0x5910);                         /* bytes 10..510 changed through A1 */
	DIE_IF(fcntl(M1, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), "seal M1");
	DIE_IF(fchmod(M1, 0640), "fchmod");
	lseek(M1, 1234, SEEK_SET);
	char r1path[64];
	snprintf(r1path, sizeof(r1path), "/proc/self/fd/%d", M1);
	int R1 = open(r1path, O_RDONLY);
	DIE_IF(R1 < 0, "reopen M1");
	lseek(R1, 77, SEEK_SET);

	int M2 = make("sealed", MFD_ALLOW_SEALING, PG, 0x592);
	DIE_IF(fcntl(M2, F_ADD_SEALS, F_SEAL_WRITE), "seal M2");
	uint8_t *A2 = map(M2, PG, PROT_READ, MAP_SHARED);
	uint8_t *P2 = map(M2, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE);
	cr_fill(P2, 64, 0x5920);

	int M3 = make("future", MFD_ALLOW_SEALING, 2 * PG, 0x593);
	uint8_t *A3 = map(M3, 2 * PG, PROT_READ | PROT_WRITE, MAP_SHARED);
	DIE_IF(fcntl(M3, F_ADD_SEALS, F_SEAL_FUTURE_WRITE | F_SEAL_SEAL), "seal M3");

	int M4 = memfd_create("maponly", 0);
	DIE_IF(M4 < 0 || ftruncate(M4, 5 * PG), "memfd M4");
	uint8_t *A4 = map(M4, 5 * PG, PROT_READ | PROT_WRITE, MAP_SHARED);
	cr_fill(A4, PG, 0x5940);
	cr_fill(A4 + 4 * PG, PG, 0x5944);
	close(M4);

	int M5 = memfd_create("noexec", MFD_NOEXEC_SEAL);
	DIE_IF(M5 < 0, "memfd M5");

	pid_t parent = getpid();
	pid_t child = cr_fork();
	if (child == 0) {
		cr_sync_post("child");
		cr_wait();
		CHECK(syscall(SYS_kcmp, getpid(), parent, KCMP_FILE, M1, M1) == 0, "child: M1 is not the parent's");
		cr_expect_pattern("child: A1", A1 + 10, 500, 0x5910, 0);
		cr_fill(A1 + PG, 200, 0x5911);                   /* the parent must see this */
		cr_child_exit();
	}
	cr_sync_wait("child");
	cr_ready();
	cr_wait();

	struct stat st;
	expect_link(M1, "/memfd:data one (deleted)");
	expect_link(R1, "/memfd:data one (deleted)");
	expect_link(M2, "/memfd:sealed (deleted)");
	expect_link(M5, "/memfd:noexec (deleted)");
	CHECK(fstat(M1, &st) == 0 && st.st_size == (off_t)size1 && (st.st_mode & 07777) == 0640,
	      "M1: size %lld mode %o", (long long)st.st_size, st.st_mode & 07777);
	CHECK_EQ(map_inode(A1), st.st_ino, "inode of A1 vs M1");
	struct stat st2;
	CHECK(fstat(R1, &st2) == 0 && st2.st_ino == st.st_ino, "R1 is another memfd");
	CHECK(syscall(SYS_kcmp, getpid(), getpid(), KCMP_FILE, M1, R1) != 0, "R1 and M1 are one open file");
	CHECK_EQ(lseek(M1, 0, SEEK_CUR), 1234, "M1 position");
	CHECK_EQ(lseek(R1, 0, SEEK_CUR), 77, "R1 position");
	CHECK_EQ(fcntl(R1, F_GETFL) & O_ACCMODE, O_RDONLY, "R1 access mode");
	CHECK_EQ(fcntl(M1, F_GETFL) & O_ACCMODE, O_RDWR, "M1 access mode");
	CHECK_EQ(fcntl(M1, F_GET_SEALS), F_SEAL_SHRINK | F_SEAL_GROW, "M1 seals");
	expect_content("M1 head", M1, 0, 10, 0x591, 0);
	expect_content("M1 changed through A1", M1, 10, 500, 0x5910, 0);
	expect_content("M1 tail", M1, 510, size1 - 510, 0x591, 510);
	CHECK(ftruncate(M1, PG) < 0 && errno == EPERM, "M1 could shrink");
	CHECK(pwrite(M1, "Z", 1, 5) == 1 && A1[5] == 'Z', "write through M1 not seen in A1");

	CHECK_EQ(fcntl(M2, F_GET_SEALS), F_SEAL_WRITE, "M2 seals");
	cr_expect_pattern("A2", A2, PG, 0x592, 0);
	cr_expect_pattern("P2 changed", P2, 64, 0x5920, 0);
	cr_expect_pattern("P2 rest", P2 + 64, PG - 64, 0x592, 64);
	expect_content("M2 under P2", M2, 0, 64, 0x592, 0);
	CHECK(pwrite(M2, "x", 1, 0) < 0 && errno == EPERM, "M2 took a write");
	CHECK(mprotect(A2, PG, PROT_READ | PROT_WRITE) < 0, "A2 (write-sealed) could become writable");
	CHECK_EQ(map_inode(A2), map_inode(P2), "A2 and P2 map different objects");

	CHECK_EQ(fcntl(M3, F_GET_SEALS), F_SEAL_FUTURE_WRITE | F_SEAL_SEAL, "M3 seals");
	cr_expect_pattern("A3", A3, 2 * PG, 0x593, 0);
	A3[PG + 1] = 'Q';
	char c = 0;
	CHECK(pread(M3, &c, 1, (off_t)PG + 1) == 1 && c == 'Q', "write through A3 not in M3");
	CHECK(pwrite(M3, "x", 1, 0) < 0 && errno == EPERM, "M3 took a write");
	CHECK(mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, M3, 0) == MAP_FAILED, "M3 took a writable mapping");
	CHECK(fcntl(M3, F_ADD_SEALS, F_SEAL_GROW) < 0 && errno == EPERM, "M3 took a new seal");

	cr_expect_pattern("A4 page 0", A4, PG, 0x5940, 0);
	cr_expect_zero("A4 pages 1-3", A4 + PG, 3 * PG);
	cr_expect_pattern("A4 page 4", A4 + 4 * PG, PG, 0x5944, 0);
	struct cr_map m;
	CHECK(cr_map_at(A4, &m) == 0 && !strcmp(m.path, "/memfd:maponly (deleted)") && !strcmp(m.perms, "rw-s"),
	      "A4 is %s %s", m.path, m.perms);

	CHECK(fstat(M5, &st) == 0 && (st.st_mode & 07777) == 0666, "M5 mode %o", st.st_mode & 07777);
	CHECK_EQ(fcntl(M5, F_GET_SEALS) & F_SEAL_EXEC, F_SEAL_EXEC, "M5 F_SEAL_EXEC");

	kill(child, SIGUSR1);
	cr_expect_exit(child, 0, "child");
	cr_expect_pattern("A1 written by the child", A1 + PG, 200, 0x5911, 0);
	expect_content("M1 written by the child", M1, PG, 200, 0x5911, 0);
	cr_finish();
}
