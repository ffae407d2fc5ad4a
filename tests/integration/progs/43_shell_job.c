/* Scenario 43: a shell job on a terminal (restored with --shell-job).
 * Started by the harness as its own process group in the harness's session,
 * with stdin, stdout and stderr on a pty slave, like a job a shell starts.
 * At dump time it records the open flags of fds 0-2 and that they share one
 * open file description.  After the restore (onto another terminal) it checks
 * that fds 0-2 are terminals again, with the same flags, still one shared
 * description, that it is still its group's leader outside its session's
 * leadership, and that termios can be read; then it prints PASS on the tty. */
#include "common.h"
#include <termios.h>
#include <sys/syscall.h>

#define KCMP_FILE 0

int main(void)
{
	cr_init();
	int flags[3];
	for (int fd = 0; fd < 3; fd++) {
		DIE_IF(!isatty(fd), "fd %d is not a terminal at start", fd);
		flags[fd] = fcntl(fd, F_GETFL);
	}
	pid_t me = getpid();
	DIE_IF(getpgid(0) != me, "not a process group leader at start");
	cr_ready();
	cr_wait();
	for (int fd = 0; fd < 3; fd++) {
		CHECK(isatty(fd), "fd %d is no longer a terminal", fd);
		CHECK(fcntl(fd, F_GETFL) == flags[fd], "fd %d flags %#x, expected %#x", fd,
		      fcntl(fd, F_GETFL), flags[fd]);
	}
	CHECK(syscall(SYS_kcmp, me, me, KCMP_FILE, 0, 1) == 0 &&
	      syscall(SYS_kcmp, me, me, KCMP_FILE, 1, 2) == 0, "fds 0-2 no longer share one open file");
	CHECK(getpgid(0) == me, "pgid %d, expected %d", (int)getpgid(0), (int)me);
	CHECK(getsid(0) != me, "became a session leader");
	struct termios t;
	CHECK(tcgetattr(1, &t) == 0, "tcgetattr: %s", strerror(errno));
	cr_finish();
}
