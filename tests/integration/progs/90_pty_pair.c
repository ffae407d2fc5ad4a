/* Scenario 90: pseudo-terminal pairs with bytes in flight in both directions.
 * A: unlocked, slave open by path; slave termios changed (canonical, no echo,
 *    ICRNL, VERASE ^H, VMIN 3), window 37x101; the master (O_NONBLOCK) wrote
 *    "first line\nsecond\rpart" (two lines and one being typed) that the slave
 *    has not read; the slave wrote "out-1\n" and 3000 pattern bytes (OPOST off
 *    for those) that the master has not read.
 * B: never unlocked, packet mode on, slave never opened.
 * C: slave opened, wrote "bye\n" and closed again: the master has "bye\r\n"
 *    to read, then sees a hang-up.
 * D: packet mode on, the slave wrote "pkt" (the master reads it with the
 *    packet header).
 * After the signal: same pty numbers, termios, window size, lock state,
 * packet mode; the slave reads "first line\n", "second\n", then nothing
 * until the master completes the line; the master reads exactly what the
 * slave wrote (no echo, nothing more); B reads nothing (no hang-up); C reads
 * "bye\r\n" then EIO. */
#include "common.h"
#include <poll.h>
#include <termios.h>
#include <sys/ioctl.h>

static int open_master(int flags)
{
	int m = posix_openpt(O_RDWR | O_NOCTTY | flags);
	DIE_IF(m < 0, "posix_openpt");
	return m;
}

static int pty_index(int m)
{
	int n = -1;
	DIE_IF(ioctl(m, TIOCGPTN, &n), "TIOCGPTN");
	return n;
}

static int open_slave(int m)
{
	DIE_IF(unlockpt(m), "unlockpt");
	int s = open(ptsname(m), O_RDWR | O_NOCTTY);
	DIE_IF(s < 0, "open %s", ptsname(m));
	return s;
}

/* everything readable now (the fd may block: poll first) */
static ssize_t read_now(int fd, char *buf, size_t cap, int wait_ms)
{
	size_t len = 0;
	struct pollfd p = { fd, POLLIN, 0 };
	while (len < cap && poll(&p, 1, wait_ms) == 1 && (p.revents & POLLIN)) {
		ssize_t r = read(fd, buf + len, cap - len);
		if (r <= 0)
			break;
		len += (size_t)r;
		wait_ms = 50;
	}
	return (ssize_t)len;
}

static uint8_t pattern[3000];

int main(void)
{
	cr_init();
	cr_fill(pattern, sizeof(pattern), 0x90);

	/* A */
	int am = open_master(O_NONBLOCK), as = open_slave(am);
	int ai = pty_index(am);
	struct termios t;
	DIE_IF(tcgetattr(as, &t), "tcgetattr");
	t.c_lflag = ICANON | ISIG | IEXTEN;
	t.c_iflag = ICRNL | IXON;
	t.c_oflag = OPOST | ONLCR;
	t.c_cc[VERASE] = 8;
	t.c_cc[VMIN] = 3;
	DIE_IF(tcsetattr(as, TCSANOW, &t), "tcsetattr");
	struct winsize ws = { 37, 101, 640, 480 };
	DIE_IF(ioctl(am, TIOCSWINSZ, &ws), "TIOCSWINSZ");
	DIE_IF(write(am, "first line\nsecond\rpart", 22) != 22, "write A master");
	DIE_IF(write(as, "out-1\n", 6) != 6, "write A slave");
	struct termios raw = t;
	raw.c_oflag &= ~OPOST;
	DIE_IF(tcsetattr(as, TCSANOW, &raw), "tcsetattr raw");
	DIE_IF(write(as, pattern, sizeof(pattern)) != (ssize_t)sizeof(pattern), "write pattern");
	DIE_IF(tcsetattr(as, TCSANOW, &t), "tcsetattr back");

	/* B */
	int bm = open_master(0), bi = pty_index(bm), one = 1;
	DIE_IF(ioctl(bm, TIOCPKT, &one), "TIOCPKT B");

	/* C */
	int cm = open_master(0), ci = pty_index(cm);
	int cs = open_slave(cm);
	DIE_IF(write(cs, "bye\n", 4) != 4, "write C");
	close(cs);

	/* D */
	int dm = open_master(0), di = pty_index(dm), ds = open_slave(dm);
	DIE_IF(ioctl(dm, TIOCPKT, &one), "TIOCPKT D");
	DIE_IF(write(ds, "pkt", 3) != 3, "write D");
	cr_sleep_ms(100);       /* let the bytes reach the other side */

	cr_ready();
	cr_wait();

	CHECK_EQ(pty_index(am), ai, "A: pty number");
	CHECK_EQ(pty_index(bm), bi, "B: pty number");
	CHECK_EQ(pty_index(cm), ci, "C: pty number");
	CHECK_EQ(pty_index(dm), di, "D: pty number");
	char name[64];
	snprintf(name, sizeof(name), "/dev/pts/%d", ai);
	CHECK(ttyname(as) && !strcmp(ttyname(as), name), "A: slave is %s, expected %s", ttyname(as), name);
	CHECK(fcntl(am, F_GETFL) & O_NONBLOCK, "A: master lost O_NONBLOCK");
	CHECK(!(fcntl(as, F_GETFL) & O_NONBLOCK), "A: slave got O_NONBLOCK");

	struct termios now;
	CHECK(tcgetattr(as, &now) == 0, "tcgetattr A");
	CHECK_EQ(now.c_lflag, t.c_lflag, "A: c_lflag");
	CHECK_EQ(now.c_iflag, t.c_iflag, "A: c_iflag");
	CHECK_EQ(now.c_oflag, t.c_oflag, "A: c_oflag");
	CHECK_EQ(now.c_cflag, t.c_cflag, "A: c_cflag");
	CHECK(!memcmp(now.c_cc, t.c_cc, sizeof(t.c_cc)), "A: control characters differ");
	struct winsize wn;
	CHECK(ioctl(as, TIOCGWINSZ, &wn) == 0 && wn.ws_row == 37 && wn.ws_col == 101 && wn.ws_xpixel == 640 &&
	      wn.ws_ypixel == 480, "A: window %dx%d", wn.ws_row, wn.ws_col);
	int v = -1;
	CHECK(ioctl(am, TIOCGPTLCK, &v) == 0 && v == 0, "A: lock %d", v);
	CHECK(ioctl(bm, TIOCGPTLCK, &v) == 0 && v == 1, "B: lock %d", v);
	CHECK(ioctl(am, TIOCGPKT, &v) == 0 && v == 0, "A: packet mode %d", v);
	CHECK(ioctl(bm, TIOCGPKT, &v) == 0 && v == 1, "B: packet mode %d", v);
	CHECK(ioctl(dm, TIOCGPKT, &v) == 0 && v == 1, "D: packet mode %d", v);

	/* A, slave side: whole lines, then nothing until the line is ended */
	char buf[8192];
	ssize_t n = read(as, buf, sizeof(buf));
	CHECK(n == 11 && !memcmp(buf, "first line\n", 11), "A: slave read 1 gave %zd bytes '%.*s'", n,
	      (int)(n > 0 ? n : 0), buf);
	n = read(as, buf, sizeof(buf));
	CHECK(n == 7 && !memcmp(buf, "second\n", 7), "A: slave read 2 gave %zd bytes '%.*s'", n,
	      (int)(n > 0 ? n : 0), buf);
	struct pollfd p = { as, POLLIN, 0 };
	CHECK(poll(&p, 1, 200) == 0, "A: the slave can read an unfinished line");
	/* A, master side: what the slave wrote, no echo of the input */
	n = read_now(am, buf, sizeof(buf), 1000);
	CHECK(n == 7 + (ssize_t)sizeof(pattern) && !memcmp(buf, "out-1\r\n", 7),
	      "A: master read %zd bytes, expected %zu", n, 7 + sizeof(pattern));
	if (n >= 7)
		cr_expect_pattern("A: master", buf + 7, (size_t)n - 7 < sizeof(pattern) ? (size_t)n - 7 : sizeof(pattern),
				  0x90, 0);
	CHECK(write(am, "-end\n", 5) == 5, "A: write master");
	n = read(as, buf, sizeof(buf));
	CHECK(n == 9 && !memcmp(buf, "part-end\n", 9), "A: slave read 3 gave %zd bytes '%.*s'", n,
	      (int)(n > 0 ? n : 0), buf);

	/* B: nothing to read, no hang-up */
	p = (struct pollfd){ bm, POLLIN, 0 };
	CHECK(poll(&p, 1, 100) == 0, "B: master ready (revents %#x)", p.revents);

	/* C: the bytes, then the hang-up */
	p = (struct pollfd){ cm, POLLIN, 0 };
	CHECK(poll(&p, 1, 1000) == 1 && (p.revents & POLLHUP), "C: no hang-up (revents %#x)", p.revents);
	n = read(cm, buf, sizeof(buf));
	CHECK(n == 5 && !memcmp(buf, "bye\r\n", 5), "C: master read %zd bytes", n);
	n = read(cm, buf, sizeof(buf));
	CHECK(n < 0 && errno == EIO, "C: read after the bytes gave %zd (errno %d), expected EIO", n, errno);

	/* D: packet header, then the bytes */
	n = read_now(dm, buf, sizeof(buf), 1000);
	CHECK(n == 4 && !memcmp(buf, "\0pkt", 4), "D: master read %zd bytes", n);
	cr_finish();
}
