/* Scenario 93: POSIX message queues with messages in them.
 * a: maxmsg 7, msgsize 100, mode 0640; messages at priorities 1, 5, 1, 5, 0,
 *    31 (one of them empty); opened twice: O_RDWR, and O_WRONLY|O_NONBLOCK.
 * b: maxmsg 3, msgsize 8192, empty, O_RDONLY|O_NONBLOCK.
 * c: one message, then mq_unlink()ed while still open.
 * d: empty; a child holds it and is blocked in mq_receive() on it.
 * Names are /lxccr-93-PID-x (the harness removes leftovers: conftest.py no_leftover_queues).
 * After the signal: attributes, flags and mode; every message comes out in
 * priority order, FIFO within a priority, with its priority; the names a, b
 * and d exist again (a new mq_open finds the same queue), c's does not; the
 * child receives what the parent sends on d.  The queues are removed at the
 * end, so that a --leave-running original leaves nothing behind. */
#include "common.h"
#include <mqueue.h>

static char names[4][64];

static mqd_t open_q(int which, int flags, long maxmsg, long msgsize)
{
	struct mq_attr a = { 0, maxmsg, msgsize, 0 };
	mqd_t q = mq_open(names[which], flags | O_CREAT | O_EXCL, 0640, &a);
	DIE_IF(q < 0, "mq_open %s", names[which]);
	return q;
}

static void send(mqd_t q, const char *text, unsigned prio)
{
	DIE_IF(mq_send(q, text, strlen(text), prio), "mq_send %s", text);
}

static void expect_attr(const char *what, mqd_t q, long flags, long maxmsg, long msgsize, long cur)
{
	struct mq_attr a;
	if (!CHECK(mq_getattr(q, &a) == 0, "%s: mq_getattr: %s", what, strerror(errno)))
		return;
	CHECK(a.mq_flags == flags && a.mq_maxmsg == maxmsg && a.mq_msgsize == msgsize && a.mq_curmsgs == cur,
	      "%s: attributes flags %ld maxmsg %ld msgsize %ld curmsgs %ld, expected %ld %ld %ld %ld", what,
	      a.mq_flags, a.mq_maxmsg, a.mq_msgsize, a.mq_curmsgs, flags, maxmsg, msgsize, cur);
}

static void expect_msg(const char *what, mqd_t q, const char *text, unsigned prio)
{
	char buf[8192];
	unsigned p = 999;
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	now.tv_sec += 2;
	ssize_t n = mq_timedreceive(q, buf, sizeof(buf), &p, &now);
	CHECK(n == (ssize_t)strlen(text) && !memcmp(buf, text, (size_t)n) && p == prio,
	      "%s: received %zd bytes '%.*s' at priority %u, expected '%s' at %u", what, n, (int)(n > 0 ? n : 0),
	      buf, p, text, prio);
}

int main(void)
{
	cr_init();
	for (int i = 0; i < 4; i++) {
		snprintf(names[i], sizeof(names[i]), "/lxccr-93-%d-%c", (int)getpid(), 'a' + i);
		/* a run in another PID namespace may have had our PID and left this name */
		mq_unlink(names[i]);
	}
	mqd_t a = open_q(0, O_RDWR, 7, 100);
	mqd_t a2 = mq_open(names[0], O_WRONLY | O_NONBLOCK);
	DIE_IF(a2 < 0, "mq_open a again");
	send(a, "low-1", 1);
	send(a2, "high-1", 5);
	send(a, "low-2", 1);
	send(a, "high-2", 5);
	send(a2, "", 0);
	send(a, "top", 31);
	mqd_t b = open_q(1, O_RDONLY | O_NONBLOCK, 3, 8192);
	mqd_t c = open_q(2, O_RDWR, 4, 16);
	send(c, "ghost", 3);
	DIE_IF(mq_unlink(names[2]), "mq_unlink c");
	mqd_t d = open_q(3, O_RDWR, 2, 32);

	pid_t child = cr_fork();
	if (child == 0) {
		cr_sync_post("child");
		char buf[32];
		unsigned p = 0;
		ssize_t n;
		do      /* blocked here when the dump comes */
			n = mq_receive(d, buf, sizeof(buf), &p);
		while (n < 0 && errno == EINTR);
		CHECK(n == 2 && !memcmp(buf, "go", 2) && p == 7, "child: received %zd bytes at %u", n, p);
		expect_attr("child: a", a, 0, 7, 100, 6);
		cr_child_exit();
	}
	cr_sync_wait("child");
	cr_wait_in_syscall(child, child, SYS_mq_timedreceive, 2000);
	cr_ready();
	cr_wait();

	expect_attr("a", a, 0, 7, 100, 6);
	expect_attr("a2", a2, O_NONBLOCK, 7, 100, 6);
	expect_attr("b", b, O_NONBLOCK, 3, 8192, 0);
	expect_attr("c", c, 0, 4, 16, 1);
	CHECK_EQ(fcntl(a2, F_GETFL) & O_ACCMODE, O_WRONLY, "a2: access mode");
	CHECK_EQ(fcntl(b, F_GETFL) & O_ACCMODE, O_RDONLY, "b: access mode");
	struct stat st;
	CHECK(fstat(a, &st) == 0 && (st.st_mode & 07777) == 0640, "a: mode %o", st.st_mode & 07777);
	/* the names lead to the same queues */
	for (int i = 0; i < 4; i++) {
		mqd_t q = mq_open(names[i], O_RDONLY | O_NONBLOCK);
		if (i == 2) {
			CHECK(q < 0 && errno == ENOENT, "c: its name exists again");
			continue;
		}
		CHECK(q >= 0, "%s does not exist: %s", names[i], strerror(errno));
		struct stat qs;
		if (q >= 0) {
			int fd = i == 0 ? a : i == 1 ? b : d;
			CHECK(fstat(q, &qs) == 0 && fstat(fd, &st) == 0 && qs.st_ino == st.st_ino,
			      "%s is another queue than the restored one", names[i]);
			mq_close(q);
		}
	}
	/* a child sees the same content: it is checked before anything is taken */
	CHECK(mq_send(d, "go", 2, 7) == 0, "send on d: %s", strerror(errno));
	cr_expect_exit(child, 0, "child");
	expect_msg("a 1", a, "top", 31);
	expect_msg("a 2", a, "high-1", 5);
	expect_msg("a 3", a, "high-2", 5);
	expect_msg("a 4", a, "low-1", 1);
	expect_msg("a 5", a, "low-2", 1);
	expect_msg("a 6", a, "", 0);
	expect_attr("a after", a, 0, 7, 100, 0);
	expect_msg("c", c, "ghost", 3);
	CHECK(mq_send(a2, "x", 1, 0) == 0 && mq_send(a2, "y", 1, 0) == 0, "a2: send");
	for (int i = 0; i < 4; i++)
		if (i != 2)
			mq_unlink(names[i]);
	cr_finish();
}
