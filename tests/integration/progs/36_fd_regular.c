/* Scenario 36: regular files with access modes, flags and offsets.
 *   fd ro: O_RDONLY|O_NOATIME on "ro file\nwith space" (odd name), read 1234 B
 *   fd wo: O_WRONLY|O_CREAT|O_TRUNC, 3000 B written, then lseek to 1000
 *   fd rw: O_RDWR|O_SYNC, 5000 B written, lseek to 2500
 *   fd ap: O_WRONLY|O_APPEND, 700 B appended, lseek to 100 (ignored for writes)
 *   fd nb: O_RDONLY|O_NONBLOCK at offset 0, fd 77 (chosen number)
 * After the signal: fstat identity (dev/ino), F_GETFL flags and lseek offsets
 * are unchanged; reads continue at the right place; a write on wo lands at
 * 1000; an append lands at the end; file contents on disk are intact. */
#include "common.h"

#define SEED_RO 0x3601
#define SEED_WO 0x3602
#define SEED_RW 0x3603
#define SEED_AP 0x3604
#define RO_NAME "ro file\nwith space"

struct f {
	const char *name;
	int fd, fl;
	off_t pos;
	struct stat st;
};

static void rec(struct f *f)
{
	f->fl = fcntl(f->fd, F_GETFL);
	f->pos = lseek(f->fd, 0, SEEK_CUR);
	fstat(f->fd, &f->st);
}

static void same(struct f *f)
{
	struct stat st;
	int fl = fcntl(f->fd, F_GETFL);
	off_t pos = lseek(f->fd, 0, SEEK_CUR);
	if (!CHECK(fstat(f->fd, &st) == 0, "%s: fd %d is not open", f->name, f->fd))
		return;
	CHECK(st.st_ino == f->st.st_ino && st.st_dev == f->st.st_dev, "%s: fd %d refers to another file", f->name,
	      f->fd);
	CHECK(fl == f->fl, "%s: F_GETFL 0%o, was 0%o", f->name, fl, f->fl);
	CHECK(pos == f->pos, "%s: offset %lld, was %lld", f->name, (long long)pos, (long long)f->pos);
}

int main(void)
{
	uint8_t buf[10000];
	cr_init();
	cr_fill(buf, sizeof(buf), SEED_RO);
	cr_write_file(RO_NAME, buf, sizeof(buf));
	cr_fill(buf, sizeof(buf), SEED_AP);
	cr_write_file("ap.dat", buf, 500);

	struct f ro = { "ro" }, wo = { "wo" }, rw = { "rw" }, ap = { "ap" }, nb = { "nb" };
	ro.fd = open(RO_NAME, O_RDONLY | O_NOATIME);
	wo.fd = open("wo.dat", O_WRONLY | O_CREAT | O_TRUNC, 0600);
	rw.fd = open("rw.dat", O_RDWR | O_CREAT | O_TRUNC | O_SYNC, 0640);
	ap.fd = open("ap.dat", O_WRONLY | O_APPEND);
	int t = open(RO_NAME, O_RDONLY | O_NONBLOCK);
	DIE_IF(ro.fd < 0 || wo.fd < 0 || rw.fd < 0 || ap.fd < 0 || t < 0, "open");
	nb.fd = dup2(t, 77);
	close(t);
	DIE_IF(read(ro.fd, buf, 1234) != 1234, "read ro");
	cr_fill(buf, 3000, SEED_WO);
	DIE_IF(write(wo.fd, buf, 3000) != 3000, "write wo");
	lseek(wo.fd, 1000, SEEK_SET);
	cr_fill(buf, 5000, SEED_RW);
	DIE_IF(write(rw.fd, buf, 5000) != 5000, "write rw");
	lseek(rw.fd, 2500, SEEK_SET);
	cr_fill_off(buf, 700, SEED_AP, 500);
	DIE_IF(write(ap.fd, buf, 700) != 700, "write ap");
	lseek(ap.fd, 100, SEEK_SET);
	rec(&ro);
	rec(&wo);
	rec(&rw);
	rec(&ap);
	rec(&nb);
	DIE_IF(!(ro.fl & O_NOATIME) || !(rw.fl & O_SYNC) || !(ap.fl & O_APPEND) || !(nb.fl & O_NONBLOCK),
	       "flags not as requested");

	cr_ready();
	cr_wait();

	same(&ro);
	same(&wo);
	same(&rw);
	same(&ap);
	same(&nb);
	/* ro continues at 1234 */
	CHECK(read(ro.fd, buf, 766) == 766, "read ro after restore");
	cr_expect_pattern("ro continued read", buf, 766, SEED_RO, 1234);
	CHECK(lseek(ro.fd, 0, SEEK_CUR) == 2000, "ro offset after read");
	errno = 0;
	CHECK(write(ro.fd, "x", 1) == -1 && errno == EBADF, "ro fd is writable");
	/* nb reads from 0 */
	CHECK(read(nb.fd, buf, 100) == 100, "read nb");
	cr_expect_pattern("nb read", buf, 100, SEED_RO, 0);
	/* wo: write at 1000, not readable */
	CHECK(write(wo.fd, "WXYZ", 4) == 4, "write wo");
	errno = 0;
	CHECK(read(wo.fd, buf, 1) == -1 && errno == EBADF, "wo fd is readable");
	/* rw reads what was written at 2500 */
	CHECK(read(rw.fd, buf, 100) == 100, "read rw");
	cr_expect_pattern("rw read at 2500", buf, 100, SEED_RW, 2500);
	/* ap appends at the end (1200) whatever its offset */
	CHECK(write(ap.fd, "END", 3) == 3, "append");
	struct stat st;
	fstat(ap.fd, &st);
	CHECK(st.st_size == 1203, "ap size %lld, expected 1203", (long long)st.st_size);

	/* contents on disk, through fresh fds */
	int fd = open("wo.dat", O_RDONLY);
	memset(buf, 0, sizeof(buf));
	CHECK(fd >= 0 && read(fd, buf, 4000) == 3000, "wo.dat size");
	cr_expect_pattern("wo.dat head", buf, 1000, SEED_WO, 0);
	CHECK(!memcmp(buf + 1000, "WXYZ", 4), "write on wo did not land at offset 1000");
	cr_expect_pattern("wo.dat tail", buf + 1004, 1996, SEED_WO, 1004);
	close(fd);
	fd = open("ap.dat", O_RDONLY);
	CHECK(fd >= 0 && read(fd, buf, 2000) == 1203, "ap.dat size");
	cr_expect_pattern("ap.dat", buf, 1200, SEED_AP, 0);
	CHECK(!memcmp(buf + 1200, "END", 3), "append did not land at the end");
	close(fd);
	fd = open(RO_NAME, O_RDONLY);
	CHECK(fd >= 0 && read(fd, buf, sizeof(buf)) == sizeof(buf), "ro file size");
	cr_expect_pattern("ro file", buf, sizeof(buf), SEED_RO, 0);
	close(fd);
	cr_finish();
}
