/* Scenario 94: POSIX record locks (fcntl F_SETLK), owned by processes.
 * The root holds a write lock on bytes 0-9 and a read lock on 20-29 of
 * file "data"; its child holds a read lock on 20-29 too (through the
 * inherited fd: the open file is shared, the locks are not) and a write lock
 * from 100 to the end, through an open file of its own.  The child is
 * blocked in a blocking F_SETLKW on bytes 0-9, which the root holds.
 * Dumped with --file-locks.
 * After the signal a new process (forked now, never dumped) probes every
 * range with F_GETLK and F_SETLK: each held range is refused (EAGAIN) and
 * F_GETLK names the right owner; free ranges can be taken.  Each holder
 * finds its own locks in /proc/self/fdinfo.  Then the root unlocks 0-9 and
 * the child's F_SETLKW completes. */
#include "common.h"

static int lock(int fd, int cmd, short type, off_t start, off_t len)
{
	struct flock fl = { .l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len };
	return fcntl(fd, cmd, &fl);
}

/* in a new process: who holds a conflicting lock on [start, start+len) for `type` */
static void probe(int fd, short type, off_t start, off_t len, pid_t holder, const char *what)
{
	struct flock fl = { .l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len };
	CHECK(fcntl(fd, F_GETLK, &fl) == 0, "%s: F_GETLK: %s", what, strerror(errno));
	if (holder) {
		CHECK(fl.l_type != F_UNLCK && fl.l_pid == holder, "%s: F_GETLK says type %d pid %d, expected pid %d",
		      what, fl.l_type, (int)fl.l_pid, (int)holder);
		CHECK(lock(fd, F_SETLK, type, start, len) < 0 && (errno == EAGAIN || errno == EACCES),
		      "%s: F_SETLK was not refused (errno %d)", what, errno);
	} else {
		CHECK(fl.l_type == F_UNLCK, "%s: F_GETLK says held by %d", what, (int)fl.l_pid);
		CHECK(lock(fd, F_SETLK, type, start, len) == 0, "%s: F_SETLK: %s", what, strerror(errno));
		lock(fd, F_SETLK, F_UNLCK, start, len);
	}
}

/* the calling process's POSIX locks through fd, as "TYPE start end" lines */
static int holds(int fd, const char *want)
{
	char path[64], buf[4096];
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	if (cr_read_file(path, buf, sizeof(buf)) < 0)
		return 0;
	char pattern[128];
	snprintf(pattern, sizeof(pattern), "POSIX  ADVISORY  %s %d ", want, (int)getpid());
	return strstr(buf, pattern) != NULL;
}

int main(void)
{
	cr_init();
	int fd = open("data", O_RDWR | O_CREAT | O_TRUNC, 0644);
	DIE_IF(fd < 0, "create data");
	DIE_IF(ftruncate(fd, 4096), "ftruncate");
	DIE_IF(lock(fd, F_SETLK, F_WRLCK, 0, 10) || lock(fd, F_SETLK, F_RDLCK, 20, 10), "root locks");
	pid_t root = getpid();

	pid_t child = cr_fork();
	if (child == 0) {
		int own = open("data", O_RDWR);
		DIE_IF(own < 0 || lock(fd, F_SETLK, F_RDLCK, 20, 10) || lock(own, F_SETLK, F_WRLCK, 100, 0),
		       "child locks");
		cr_sync_post("child");
		int r;
		do      /* blocked here when the dump comes */
			r = lock(own, F_SETLKW, F_WRLCK, 0, 10);
		while (r < 0 && errno == EINTR);
		CHECK(r == 0, "child: F_SETLKW on 0-9: %s", strerror(errno));
		CHECK(holds(own, "WRITE") && holds(fd, "READ"), "child: its locks are not in its fdinfo");
		cr_child_exit();
	}
	cr_sync_wait("child");
	cr_wait_in_syscall(child, child, SYS_fcntl, 2000);
	cr_ready();
	cr_wait();

	CHECK(holds(fd, "WRITE") && holds(fd, "READ"), "root: its locks are not in its fdinfo");
	pid_t prober = cr_fork();
	if (prober == 0) {
		int p = open("data", O_RDWR);
		DIE_IF(p < 0, "prober: open");
		probe(p, F_RDLCK, 0, 10, root, "root's write lock 0-9");
		struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 20, .l_len = 10 };
		CHECK(fcntl(p, F_GETLK, &fl) == 0 && fl.l_type == F_RDLCK && (fl.l_pid == root || fl.l_pid == child),
		      "read locks 20-29: F_GETLK says type %d pid %d", fl.l_type, (int)fl.l_pid);
		CHECK(lock(p, F_SETLK, F_WRLCK, 20, 10) < 0, "read locks 20-29: a write lock was granted");
		probe(p, F_RDLCK, 20, 10, 0, "read locks 20-29 (read probe)");
		probe(p, F_RDLCK, 100, 1000, child, "child's write lock 100-EOF");
		probe(p, F_WRLCK, 50, 10, 0, "free range 50-59");
		cr_child_exit();
	}
	cr_expect_exit(prober, 0, "prober");
	/* F_GETLK from the root itself: its own locks never conflict, the child's do */
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 100, .l_len = 1 };
	CHECK(fcntl(fd, F_GETLK, &fl) == 0 && fl.l_pid == child, "root: 100 held by %d, expected %d", (int)fl.l_pid,
	      (int)child);
	CHECK(lock(fd, F_SETLK, F_UNLCK, 0, 10) == 0, "root: unlock 0-9");
	cr_expect_exit(child, 0, "child");
	cr_finish();
}
