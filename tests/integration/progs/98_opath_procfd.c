/* Scenario 98: O_PATH descriptors and files opened again through /proc/self/fd.
 * O_PATH on a regular file, on the working directory, on a file deleted
 * since, on /dev/null and on the slave of a pty the tree holds; the file opened again read-only through /proc/self/fd/N of its O_PATH
 * fd (offset 5), and read-write with O_APPEND through the read-only one.
 * After the signal: O_PATH is kept (reading fails with EBADF), each fd leads
 * to the same inode as before (the deleted one still deleted, same size),
 * openat() through the directory works, the reopened files are open files of
 * their own (kcmp) with their flags and offsets. */
#include "common.h"

#define KCMP_FILE 0

int main(void)
{
	cr_init();
	cr_write_file("file", "0123456789abcdef", 16);
	cr_write_file("gone", "deleted content", 15);
	int p = open("file", O_PATH), d = open(".", O_PATH | O_DIRECTORY), g = open("gone", O_PATH);
	DIE_IF(p < 0 || d < 0 || g < 0, "O_PATH opens");
	DIE_IF(unlink("gone"), "unlink gone");
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", p);
	int r = open(path, O_RDONLY);
	DIE_IF(r < 0 || lseek(r, 5, SEEK_SET) != 5, "reopen through %s", path);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", r);
	int w = open(path, O_RDWR | O_APPEND);
	DIE_IF(w < 0, "reopen through %s", path);
	struct stat file_st, dir_st, null_st, pts_st;
	DIE_IF(stat("file", &file_st) || stat(".", &dir_st), "stat");
	int m = posix_openpt(O_RDWR | O_NOCTTY);
	DIE_IF(m < 0 || unlockpt(m), "posix_openpt");
	int pts = open(ptsname(m), O_PATH), null = open("/dev/null", O_PATH);
	DIE_IF(pts < 0 || null < 0 || fstat(pts, &pts_st) || fstat(null, &null_st), "O_PATH on devices");
	cr_ready();
	cr_wait();

	CHECK(fcntl(p, F_GETFL) & O_PATH, "file: O_PATH is gone");
	CHECK(fcntl(d, F_GETFL) & O_PATH, "directory: O_PATH is gone");
	struct stat st;
	CHECK((fcntl(pts, F_GETFL) & O_PATH) && (fcntl(null, F_GETFL) & O_PATH), "devices: O_PATH is gone");
	CHECK(fstat(pts, &st) == 0 && st.st_rdev == pts_st.st_rdev && S_ISCHR(st.st_mode), "pty slave: another device");
	CHECK(fstat(null, &st) == 0 && st.st_rdev == null_st.st_rdev, "/dev/null: another device");
	char c;
	CHECK(read(p, &c, 1) < 0 && errno == EBADF, "file: read through O_PATH did not fail with EBADF");
	CHECK(fstat(p, &st) == 0 && st.st_ino == file_st.st_ino, "file: another inode");
	CHECK(fstat(d, &st) == 0 && st.st_ino == dir_st.st_ino, "directory: another inode");
	CHECK(fstat(g, &st) == 0 && st.st_nlink == 0 && st.st_size == 15, "deleted: nlink %ld size %ld",
	      (long)st.st_nlink, (long)st.st_size);
	int f = openat(d, "file", O_RDONLY);
	CHECK(f >= 0, "openat through the directory: %s", strerror(errno));
	close(f);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", g);
	f = open(path, O_RDONLY);
	char buf[32] = "";
	CHECK(f >= 0 && read(f, buf, sizeof(buf)) == 15 && !memcmp(buf, "deleted content", 15),
	      "deleted: content '%s'", buf);
	close(f);
	pid_t me = getpid();
	CHECK(syscall(SYS_kcmp, me, me, KCMP_FILE, r, w) != 0 && syscall(SYS_kcmp, me, me, KCMP_FILE, p, r) != 0,
	      "the reopened files share an open file");
	CHECK_EQ(fcntl(r, F_GETFL) & (O_ACCMODE | O_APPEND), O_RDONLY, "read-only reopen: flags");
	CHECK_EQ(fcntl(w, F_GETFL) & (O_ACCMODE | O_APPEND), O_RDWR | O_APPEND, "read-write reopen: flags");
	CHECK(lseek(r, 0, SEEK_CUR) == 5 && read(r, buf, 3) == 3 && !memcmp(buf, "567", 3), "read-only: offset");
	CHECK(write(w, "+", 1) == 1, "read-write: write");
	CHECK(stat("file", &st) == 0 && st.st_size == 17, "append: size %ld", (long)st.st_size);
	cr_finish();
}
