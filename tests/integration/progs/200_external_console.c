/* Scenario 200: a console that belongs to the runtime (LXC's /dev/console).
 * Started as a session leader with stdin, stdout and stderr on a pty slave whose
 * master the harness keeps; it makes that pty its controlling terminal and forks
 * a child that shares the same open file.  The harness dumps it with
 * --external tty[RDEV:DEV] and restores it with --inherit-fd fd[N]:tty[RDEV:DEV],
 * N being the slave of another pty.  After the restore both processes check that
 * fds 0-2 are still one open file description, shared with each other, that it
 * is a terminal and the session's controlling terminal; then the root prints
 * PASS on it, which the harness must read on the new master. */
#include "common.h"
#include <sys/ioctl.h>
#include <termios.h>

#define KCMP_FILE 0

static void check_console(pid_t peer)
{
	pid_t me = getpid();
	for (int fd = 0; fd < 3; fd++)
		CHECK(isatty(fd), "process %d: fd %d is no longer a terminal", (int)me, fd);
	CHECK(syscall(SYS_kcmp, me, me, KCMP_FILE, 0, 1) == 0 && syscall(SYS_kcmp, me, me, KCMP_FILE, 1, 2) == 0,
	      "process %d: fds 0-2 are no longer one open file", (int)me);
	CHECK(syscall(SYS_kcmp, me, peer, KCMP_FILE, 0, 0) == 0, "process %d: fd 0 is not shared with %d",
	      (int)me, (int)peer);
	CHECK(tcgetsid(0) == getsid(0), "process %d: the console is not its session's controlling terminal "
	      "(tcgetsid %d, sid %d)", (int)me, (int)tcgetsid(0), (int)getsid(0));
}

int main(void)
{
	cr_init();
	pid_t me = getpid();
	DIE_IF(getsid(0) != me, "not a session leader at start");
	DIE_IF(ioctl(0, TIOCSCTTY, 0) != 0, "TIOCSCTTY");
	pid_t child = fork();
	DIE_IF(child < 0, "fork");
	if (child == 0) {
		cr_wait();
		check_console(getppid());
		cr_child_exit();
	}
	cr_ready();
	cr_wait();
	check_console(child);           /* first: the child exits once it has checked */
	kill(child, SIGUSR1);
	int status;
	CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0,
	      "the child failed (status %#x)", status);
	cr_finish();
}
