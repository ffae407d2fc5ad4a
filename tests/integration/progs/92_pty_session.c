/* Scenario 92: a terminal emulator and its shell, like script(1) or sshd.
 * The root keeps only the master of a pty.  Its child S starts a session
 * with the slave as controlling terminal and as fds 0-2 (default termios:
 * canonical, echo on); S forks J into a group of its own, makes J's group the
 * foreground one, and waits for it.  J is blocked in read() on its stdin.
 * Before the dump the root typed "hello wor" (no newline yet): the slave
 * holds a line being typed, and the master holds its echo.
 * After the signal the root reads the echo "hello wor", types "ld\n"; J
 * reads "hello world\n" in one read, checks it is in the foreground of its
 * terminal, and answers "got 12\n" on stdout; the root reads "ld\r\n" (the
 * echo) and "got 12\r\n"; S sees J exit 0 and exits 0. */
#include "common.h"
#include <poll.h>
#include <termios.h>
#include <sys/ioctl.h>

/* read from the master until `want` was seen (or a timeout) */
static int expect_output(int m, const char *want)
{
	char buf[512];
	size_t len = 0, n = strlen(want);
	struct pollfd p = { m, POLLIN, 0 };
	while (len < sizeof(buf) - 1 && poll(&p, 1, CR_PATIENCE_MS) == 1) {
		ssize_t r = read(m, buf + len, sizeof(buf) - 1 - len);
		if (r <= 0)
			break;
		len += (size_t)r;
		buf[len] = 0;
		if (len >= n)
			break;
	}
	buf[len] = 0;
	return CHECK(len == n && !memcmp(buf, want, n), "root: the terminal showed '%s', expected '%s'", buf, want);
}

int main(void)
{
	cr_init();
	int m = posix_openpt(O_RDWR | O_NOCTTY);
	DIE_IF(m < 0 || grantpt(m) || unlockpt(m), "posix_openpt");
	char slave_name[64];
	snprintf(slave_name, sizeof(slave_name), "%s", ptsname(m));

	pid_t s = cr_fork();
	if (s == 0) {
		close(m);
		setsid();
		int t = open(slave_name, O_RDWR);        /* a session leader's first terminal: its own */
		DIE_IF(t < 0, "S: open %s", slave_name);
		DIE_IF(dup2(t, 0) < 0 || dup2(t, 1) < 0 || dup2(t, 2) < 0, "S: dup2");
		if (t > 2)
			close(t);
		signal(SIGTTOU, SIG_IGN);
		pid_t j = fork();
		if (j == 0) {
			setpgid(0, 0);
			while (tcgetpgrp(0) != getpgrp())
				cr_sleep_ms(1);
			char buf[128];
			ssize_t n;
			do      /* blocked here when the dump comes */
				n = read(0, buf, sizeof(buf));
			while (n < 0 && errno == EINTR);
			int ok = n == 12 && !memcmp(buf, "hello world\n", 12) && tcgetpgrp(0) == getpgrp();
			dprintf(1, ok ? "got %zd\n" : "bad %zd\n", n);
			_exit(ok ? 0 : 1);
		}
		setpgid(j, j);
		DIE_IF(tcsetpgrp(0, j), "S: tcsetpgrp");
		int st;
		while (waitpid(j, &st, 0) < 0 && errno == EINTR)
			;
		_exit(WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1);
	}
	DIE_IF(write(m, "hello wor", 9) != 9, "type");
	/* the echo is there once the slave side has taken the bytes */
	cr_sleep_ms(200);
	cr_ready();
	cr_wait();

	expect_output(m, "hello wor");
	CHECK(write(m, "ld\n", 3) == 3, "root: type the rest");
	expect_output(m, "ld\r\ngot 12\r\n");
	cr_expect_exit(s, 0, "S");
	cr_finish();
}
