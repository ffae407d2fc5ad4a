/* Scenario 95: flock() locks and OFD locks (F_OFD_SETLK), owned by open files.
 * "one": flock exclusive, through an open file only the root holds.
 * "two": flock shared, through an open file the root shares with its child.
 * "three": OFD write lock 0-99 and OFD read lock 200-EOF through one open
 *          file shared with the child; the child also holds a POSIX write
 *          lock on 120-129 of the same file (compatible with both).
 * Dumped with --file-locks.
 * After the signal a new process (never dumped), with open files of its own:
 * flock(one, LOCK_EX|LOCK_NB) fails (EWOULDBLOCK); flock(two) can be shared
 * but not taken exclusively; OFD locks on 0-9 and 200 are refused, and
 * F_OFD_GETLK reports an OFD lock (pid -1); 120 is held by the child's POSIX
 * lock; 150-159 is free.  The holders still hold: taking their own locks
 * again succeeds, and /proc/self/fdinfo lists them. */
#include "common.h"
#include <sys/file.h>

static int ofd(int fd, int cmd, short type, off_t start, off_t len, struct flock *out)
{
	struct flock fl = { .l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len };
	int r = fcntl(fd, cmd, &fl);
	if (out)
		*out = fl;
	return r;
}

static int open_file(const char *name)
{
	int fd = open(name, O_RDWR | O_CREAT, 0644);
	DIE_IF(fd < 0, "open %s", name);
	return fd;
}

static int fdinfo_has(int fd, const char *text)
{
	char path[64], buf[4096];
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	return cr_read_file(path, buf, sizeof(buf)) > 0 && strstr(buf, text);
}

int main(void)
{
	cr_init();
	int one = open_file("one"), two = open_file("two"), three = open_file("three");
	DIE_IF(ftruncate(three, 1000), "ftruncate");
	DIE_IF(flock(one, LOCK_EX | LOCK_NB) || flock(two, LOCK_SH | LOCK_NB), "flock");
	DIE_IF(ofd(three, F_OFD_SETLK, F_WRLCK, 0, 100, NULL) || ofd(three, F_OFD_SETLK, F_RDLCK, 200, 0, NULL),
	       "OFD locks");

	pid_t child = cr_fork();
	if (child == 0) {
		close(one);
		DIE_IF(ofd(three, F_SETLK, F_WRLCK, 120, 10, NULL), "child: POSIX lock");
		cr_sync_post("child");
		cr_wait();
		CHECK(fdinfo_has(three, "POSIX  ADVISORY  WRITE"), "child: its POSIX lock is not in its fdinfo");
		CHECK(fdinfo_has(two, "FLOCK  ADVISORY  READ"), "child: the shared flock is not in its fdinfo");
		cr_child_exit();
	}
	cr_sync_wait("child");
	cr_ready();
	cr_wait();

	pid_t prober = cr_fork();
	if (prober == 0) {
		int p1 = open("one", O_RDWR), p2 = open("two", O_RDWR), p3 = open("three", O_RDWR);
		DIE_IF(p1 < 0 || p2 < 0 || p3 < 0, "prober: open");
		CHECK(flock(p1, LOCK_EX | LOCK_NB) < 0 && errno == EWOULDBLOCK, "one: exclusive flock granted");
		CHECK(flock(p1, LOCK_SH | LOCK_NB) < 0 && errno == EWOULDBLOCK, "one: shared flock granted");
		CHECK(flock(p2, LOCK_EX | LOCK_NB) < 0 && errno == EWOULDBLOCK, "two: exclusive flock granted");
		CHECK(flock(p2, LOCK_SH | LOCK_NB) == 0, "two: shared flock refused: %s", strerror(errno));
		struct flock fl;
		CHECK(ofd(p3, F_OFD_SETLK, F_RDLCK, 0, 10, NULL) < 0 && errno == EAGAIN, "three 0-9: OFD lock granted");
		CHECK(ofd(p3, F_OFD_GETLK, F_RDLCK, 50, 1, &fl) == 0 && fl.l_type == F_WRLCK && fl.l_pid == -1 &&
		      fl.l_start == 0 && fl.l_len == 100, "three 50: F_OFD_GETLK type %d pid %d %ld+%ld", fl.l_type,
		      (int)fl.l_pid, (long)fl.l_start, (long)fl.l_len);
		CHECK(ofd(p3, F_OFD_SETLK, F_WRLCK, 500, 1, NULL) < 0 && errno == EAGAIN, "three 500: write granted");
		CHECK(ofd(p3, F_OFD_GETLK, F_WRLCK, 500, 1, &fl) == 0 && fl.l_type == F_RDLCK && fl.l_pid == -1 &&
		      fl.l_start == 200 && fl.l_len == 0, "three 500: F_OFD_GETLK type %d pid %d", fl.l_type,
		      (int)fl.l_pid);
		CHECK(ofd(p3, F_OFD_GETLK, F_WRLCK, 125, 1, &fl) == 0 && fl.l_type == F_WRLCK && fl.l_pid == child,
		      "three 125: F_OFD_GETLK type %d pid %d, expected the child %d", fl.l_type, (int)fl.l_pid,
		      (int)child);
		CHECK(ofd(p3, F_OFD_SETLK, F_WRLCK, 150, 10, NULL) == 0, "three 150: free range refused");
		cr_child_exit();
	}
	cr_expect_exit(prober, 0, "prober");
	CHECK(flock(one, LOCK_EX | LOCK_NB) == 0, "root: its own flock refused: %s", strerror(errno));
	CHECK(ofd(three, F_OFD_SETLK, F_WRLCK, 0, 100, NULL) == 0, "root: its own OFD lock refused");
	CHECK(fdinfo_has(one, "FLOCK  ADVISORY  WRITE"), "root: flock of one is not in its fdinfo");
	CHECK(fdinfo_has(three, "OFDLCK ADVISORY  WRITE") && fdinfo_has(three, "OFDLCK ADVISORY  READ"),
	      "root: OFD locks of three are not in its fdinfo");
	kill(child, SIGUSR1);
	cr_expect_exit(child, 0, "child");
	cr_finish();
}
