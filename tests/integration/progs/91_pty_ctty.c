/* Scenario 91: controlling terminals and foreground process groups.
 * The root leads its session (the harness starts it so).  It forks A before
 * taking a terminal, so A has none; then it makes the slave of pty P its
 * controlling terminal (TIOCSCTTY), opens /dev/tty, and forks B, which moves
 * to a group of its own; the root makes B's group the foreground one.
 * C starts a session of its own with pty Q (made by C) as its controlling
 * terminal, and forks D, in C's group.  B and D block in read() on their
 * terminal (canonical mode, no data).
 * After the signal, from inside: the root's terminal is P (tty_nr, TIOCGSID
 * through /dev/tty, tcgetpgrp = B's group); writing to its /dev/tty reaches
 * P's master; B is in the foreground and reads the line the root sends it;
 * A still has no terminal (open("/dev/tty") fails with ENXIO); C leads its
 * session with Q, in the foreground; D reads its line from Q. */
#include "common.h"
#include <poll.h>
#include <termios.h>
#include <sys/ioctl.h>
#include <sys/sysmacros.h>

static int new_pair(int *slave)
{
	int m = posix_openpt(O_RDWR | O_NOCTTY);
	DIE_IF(m < 0 || grantpt(m) || unlockpt(m), "posix_openpt");
	*slave = open(ptsname(m), O_RDWR | O_NOCTTY);
	DIE_IF(*slave < 0, "open slave");
	return m;
}

static int pty_index(int m)
{
	int n = -1;
	ioctl(m, TIOCGPTN, &n);
	return n;
}

static int tty_nr(void)
{
	char buf[1024];
	if (cr_read_file("/proc/self/stat", buf, sizeof(buf)) <= 0)
		return -1;
	char *p = strrchr(buf, ')');
	int nr = -1;
	sscanf(p + 2, "%*c %*d %*d %*d %d", &nr);
	return nr;
}

static int expect_ctty(const char *who, int index)
{
	int nr = tty_nr();
	int ok = CHECK(nr == (int)makedev(136, index), "%s: tty_nr %#x, expected pts %d", who, nr, index);
	int fd = open("/dev/tty", O_RDWR | O_NOCTTY);
	ok &= CHECK(fd >= 0, "%s: cannot open /dev/tty: %s", who, strerror(errno));
	if (fd >= 0) {
		pid_t sid = -1;
		ok &= CHECK(ioctl(fd, TIOCGSID, &sid) == 0 && sid == getsid(0), "%s: TIOCGSID %d, expected %d",
			    who, (int)sid, (int)getsid(0));
		close(fd);
	}
	return ok;
}

/* read one line from the terminal, as the foreground job */
static void read_line(const char *who, int fd, const char *want)
{
	char buf[256];
	ssize_t n;
	do
		n = read(fd, buf, sizeof(buf));
	while (n < 0 && errno == EINTR);
	CHECK(n == (ssize_t)strlen(want) && !memcmp(buf, want, (size_t)n), "%s: read %zd bytes '%.*s'", who, n,
	      (int)(n > 0 ? n : 0), buf);
}

static int write_line(int m, const char *text)
{
	return write(m, text, strlen(text)) == (ssize_t)strlen(text);
}

int main(void)
{
	cr_init();
	signal(SIGTTOU, SIG_IGN);          /* the root sets the foreground while in the background */
	DIE_IF(getsid(0) != getpid(), "not a session leader");
	int ps, pm = new_pair(&ps), pi = pty_index(pm);

	pid_t a = cr_fork();
	if (a == 0) {
		cr_sync_post("a");
		cr_wait();
		int fd = open("/dev/tty", O_RDWR);
		CHECK(fd < 0 && errno == ENXIO, "A: /dev/tty opened (fd %d errno %d), A had no terminal", fd, errno);
		CHECK_EQ(tty_nr(), 0, "A: tty_nr");
		cr_child_exit();
	}
	cr_sync_wait("a");

	DIE_IF(ioctl(ps, TIOCSCTTY, 0), "TIOCSCTTY");
	int devtty = open("/dev/tty", O_RDWR);
	DIE_IF(devtty < 0, "open /dev/tty");
	struct termios t;
	DIE_IF(tcgetattr(ps, &t), "tcgetattr");
	t.c_lflag &= ~ECHO;                /* nothing echoed: the master's queue stays ours */
	DIE_IF(tcsetattr(ps, TCSANOW, &t), "tcsetattr");

	pid_t b = cr_fork();
	if (b == 0) {
		setpgid(0, 0);
		cr_sync_post("b");
		cr_sync_wait("fg");            /* read as the foreground job, or be stopped */
		/* blocked here when the dump comes */
		read_line("B", ps, "to-b\n");
		CHECK(tcgetpgrp(ps) == getpgrp(), "B: foreground %d, expected its group %d", (int)tcgetpgrp(ps),
		      (int)getpgrp());
		expect_ctty("B", pi);
		cr_child_exit();
	}
	setpgid(b, b);
	cr_sync_wait("b");
	DIE_IF(tcsetpgrp(ps, b), "tcsetpgrp");
	cr_sync_post("fg");

	pid_t c = cr_fork();
	if (c == 0) {
		setsid();
		int qs, qm = new_pair(&qs), qi = pty_index(qm);
		DIE_IF(ioctl(qs, TIOCSCTTY, 0), "C: TIOCSCTTY");
		pid_t d = cr_fork();
		if (d == 0) {
			cr_sync_post("d");
			read_line("D", qs, "to-d\n");
			expect_ctty("D", qi);
			cr_child_exit();
		}
		cr_sync_wait("d");
		cr_sync_post("c");
		cr_wait();
		expect_ctty("C", qi);
		CHECK(tcgetpgrp(qs) == getpgrp(), "C: foreground %d, expected %d", (int)tcgetpgrp(qs), (int)getpgrp());
		CHECK(getsid(0) == getpid(), "C: no longer leads its session");
		CHECK(write_line(qm, "to-d\n"), "C: write Q master");
		cr_expect_exit(d, 0, "D");
		cr_child_exit();
	}
	cr_sync_wait("c");
	cr_wait_in_syscall(b, b, SYS_read, 2000);
	cr_ready();
	cr_wait();

	expect_ctty("root", pi);
	CHECK(tcgetpgrp(ps) == b, "root: foreground %d, expected B's group %d", (int)tcgetpgrp(ps), (int)b);
	CHECK(getsid(0) == getpid(), "root: no longer leads its session");
	char name[64];
	CHECK(ttyname(devtty) && !strcmp(ttyname(devtty), "/dev/tty"), "root: /dev/tty fd is %s",
	      ttyname(devtty));
	CHECK(write(devtty, "via-dev-tty", 11) == 11, "root: write /dev/tty");
	char buf[64];
	struct pollfd p = { pm, POLLIN, 0 };
	ssize_t n = poll(&p, 1, 2000) == 1 ? read(pm, buf, sizeof(buf)) : -1;
	CHECK(n == 11 && !memcmp(buf, "via-dev-tty", 11), "root: P's master read %zd bytes", n);
	snprintf(name, sizeof(name), "/dev/pts/%d", pi);
	CHECK(ttyname(ps) && !strcmp(ttyname(ps), name), "root: slave is %s, expected %s", ttyname(ps), name);
	CHECK(write_line(pm, "to-b\n"), "root: write P master");
	kill(a, SIGUSR1);
	kill(c, SIGUSR1);
	cr_expect_exit(a, 0, "A");
	cr_expect_exit(b, 0, "B");
	cr_expect_exit(c, 0, "C");
	cr_finish();
}
