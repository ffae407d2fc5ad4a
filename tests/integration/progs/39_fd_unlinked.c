/* Scenario 39: opened-and-unlinked files.
 *   U1: "victim.dat" (20000 B pattern), O_RDWR, offset 5000, unlinked;
 *   U2: "reused.dat" (3000 B pattern), O_RDONLY, offset 10, unlinked, and a
 *       *new* file created under the same name with other content;
 *   U3: "gone/inner.dat" in a directory that is removed afterwards.
 * After the signal: fstat nlink == 0 for U1..U3, contents, sizes and
 * offsets are the original ones (not the new reused.dat), /proc/self/fd/N
 * ends in " (deleted)", writing to U1 and reading back works, and the new
 * reused.dat is untouched. */
#include "common.h"

struct u {
	const char *name;
	int fd;
	uint64_t seed;
	size_t size;
	off_t pos;
};

static void check_u(struct u *u)
{
	struct stat st;
	if (!CHECK(fstat(u->fd, &st) == 0, "%s: fd %d not open", u->name, u->fd))
		return;
	CHECK(st.st_nlink == 0, "%s: nlink %lu, expected 0", u->name, (unsigned long)st.st_nlink);
	/* (the inode number itself may change: an unlinked inode cannot be reopened) */
	CHECK(st.st_size == (off_t)u->size, "%s: size %lld", u->name, (long long)st.st_size);
	CHECK(lseek(u->fd, 0, SEEK_CUR) == u->pos, "%s: offset %lld, expected %lld", u->name,
	      (long long)lseek(u->fd, 0, SEEK_CUR), (long long)u->pos);
	uint8_t *buf = malloc(u->size);
	CHECK(pread(u->fd, buf, u->size, 0) == (ssize_t)u->size, "%s: pread", u->name);
	cr_expect_pattern(u->name, buf, u->size, u->seed, 0);
	free(buf);
	char path[64], link[PATH_MAX];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", u->fd);
	ssize_t n = readlink(path, link, sizeof(link) - 1);
	link[n > 0 ? n : 0] = 0;
	size_t l = strlen(link);
	CHECK(l > 10 && !strcmp(link + l - 10, " (deleted)"), "%s: /proc/self/fd link '%s'", u->name, link);
}

int main(void)
{
	uint8_t buf[20000];
	cr_init();
	struct u us[3] = { { "victim.dat", -1, 0x3901, 20000, 5000 },
			   { "reused.dat", -1, 0x3902, 3000, 10 },
			   { "gone/inner.dat", -1, 0x3903, 4096, 4096 } };
	DIE_IF(mkdir("gone", 0755), "mkdir");
	for (int i = 0; i < 3; i++) {
		cr_fill(buf, us[i].size, us[i].seed);
		cr_write_file(us[i].name, buf, us[i].size);
		us[i].fd = open(us[i].name, i == 1 ? O_RDONLY : O_RDWR);
		DIE_IF(us[i].fd < 0, "open %s", us[i].name);
		lseek(us[i].fd, us[i].pos, SEEK_SET);
		DIE_IF(unlink(us[i].name), "unlink %s", us[i].name);
	}
	DIE_IF(rmdir("gone"), "rmdir");
	cr_fill(buf, 777, 0x3904);
	cr_write_file("reused.dat", buf, 777);

	cr_ready();
	cr_wait();

	for (int i = 0; i < 3; i++)
		check_u(&us[i]);
	CHECK(write(us[0].fd, "hello", 5) == 5, "write to unlinked file");
	char rb[5];
	CHECK(pread(us[0].fd, rb, 5, 5000) == 5 && !memcmp(rb, "hello", 5), "read back from unlinked file");
	int fd = open("reused.dat", O_RDONLY);
	struct stat st;
	CHECK(fd >= 0 && fstat(fd, &st) == 0 && st.st_size == 777 && st.st_nlink == 1, "new reused.dat changed");
	if (fd >= 0) {
		CHECK(read(fd, buf, 777) == 777, "read new reused.dat");
		cr_expect_pattern("new reused.dat", buf, 777, 0x3904, 0);
		struct stat ust;
		fstat(us[1].fd, &ust);
		CHECK(st.st_ino != ust.st_ino || st.st_dev != ust.st_dev,
		      "the unlinked reused.dat fd now refers to the new reused.dat");
		close(fd);
	}
	CHECK(access("victim.dat", F_OK) != 0, "victim.dat reappeared in the directory");
	CHECK(access("gone", F_OK) != 0, "directory 'gone' reappeared");
	cr_finish();
}
