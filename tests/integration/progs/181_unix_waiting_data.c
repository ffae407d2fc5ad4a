/*
 * Unix listeners (stream and seqpacket) with connections waiting to be accepted
 * that already hold data, one with a file in flight (SCM_RIGHTS: a pipe holding
 * bytes), one from a client that has closed since, and one without data between
 * them.  After the signal the connections are accepted in their order and each
 * reads its data (and file) exactly once, then nothing (or EOF: closed client);
 * the clients still talk to the accepted ends both ways.
 */
#include "sk_common.h"

#define LEN 20000

static int client(int type, const struct sockaddr_un *a, socklen_t l)
{
	int fd = socket(AF_UNIX, type, 0);
	DIE_IF(fd < 0 || connect(fd, (const struct sockaddr *)a, l), "connect");
	return fd;
}

static void send_fd(int sk, const char *data, size_t n, int fd)
{
	char cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { (void *)data, n };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	DIE_IF(sendmsg(sk, &mh, 0) != (ssize_t)n, "sendmsg");
}

/* Read n bytes (stream) or one message (seqpacket); returns the fd passed with them (-1: none). */
static int recv_with_fd(const char *what, int sk, char *buf, size_t n)
{
	int got_fd = -1;
	size_t got = 0;
	while (got < n) {
		char cbuf[CMSG_SPACE(4 * sizeof(int))];
		struct iovec iov = { buf + got, n - got };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
		if (!sk_wait_in(sk, CR_PATIENCE_MS))
			break;
		ssize_t r = recvmsg(sk, &mh, MSG_DONTWAIT);
		if (r <= 0)
			break;
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
			if (c->cmsg_type == SCM_RIGHTS) {
				if (got_fd >= 0 || c->cmsg_len != CMSG_LEN(sizeof(int)))
					cr_fail("%s: more files than one", what);
				memcpy(&got_fd, CMSG_DATA(c), sizeof(int));
			}
		got += (size_t)r;
		if (sk_getint(sk, SOL_SOCKET, SO_TYPE) != SOCK_STREAM)
			break;
	}
	if (got != n)
		cr_fail("%s: %zu of %zu bytes", what, got, n);
	return got_fd;
}

static void expect_pipe(const char *what, int fd)
{
	char buf[32];
	if (fd < 0) {
		cr_fail("%s: no file came with the data", what);
		return;
	}
	ssize_t r = read(fd, buf, 12);
	if (r != 12 || memcmp(buf, "through-pipe", 12))
		cr_fail("%s: the pipe passed holds %zd bytes", what, r);
	close(fd);
}

static int accept_one(const char *what, int L)
{
	if (!sk_wait_in(L, CR_PATIENCE_MS)) {
		cr_fail("%s: no connection to accept", what);
		return -1;
	}
	int fd = accept(L, NULL, NULL);
	if (fd < 0)
		cr_fail("%s: accept failed (errno %d)", what, errno);
	return fd;
}

int main(void)
{
	static char buf[LEN], want[LEN];
	struct sockaddr_un sa, qa;
	socklen_t sl, ql;
	cr_init();
	sl = sk_abstract(&sa, "lxcr181-%d", getpid());
	ql = sk_abstract(&qa, "lxcr181q-%d", getpid());
	int LS = socket(AF_UNIX, SOCK_STREAM, 0), LQ = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	DIE_IF(bind(LS, (struct sockaddr *)&sa, sl) || listen(LS, 8), "listen stream");
	DIE_IF(bind(LQ, (struct sockaddr *)&qa, ql) || listen(LQ, 8), "listen seqpacket");
	int p[2];
	DIE_IF(pipe(p), "pipe");
	/* the same pipe goes with both connections: each reads its 12 bytes */
	DIE_IF(write(p[1], "through-pipethrough-pipe", 24) != 24, "write pipe");

	/* stream: A (data, a file, data), B (nothing), C (data, then closed) */
	int A = client(SOCK_STREAM, &sa, sl);
	cr_fill(want, LEN, 181);
	sk_send_all(A, want, 15000);
	send_fd(A, want + 15000, 1000, p[0]);
	sk_send_all(A, want + 16000, LEN - 16000);
	int B = client(SOCK_STREAM, &sa, sl);
	int C = client(SOCK_STREAM, &sa, sl);
	sk_send_all(C, "closed-client-data", 18);
	close(C);
	/* seqpacket: Q1 (two messages, the second with a file), Q2 (nothing) */
	int Q1 = client(SOCK_SEQPACKET, &qa, ql);
	DIE_IF(send(Q1, "msg-one", 7, 0) != 7, "send");
	send_fd(Q1, "msg-two-with-file", 17, p[0]);
	int Q2 = client(SOCK_SEQPACKET, &qa, ql);
	close(p[0]);

	cr_ready();
	cr_wait();

	int a = accept_one("stream #1", LS);
	if (a >= 0) {
		expect_pipe("stream #1: file", recv_with_fd("stream #1", a, buf, LEN));
		cr_expect_pattern("stream #1 data", buf, LEN, 181, 0);
		sk_expect_empty("stream #1 after its data", a);
		sk_send_all(a, "reply-a", 7);
		sk_expect_msg("stream #1: reply reaches its client", A, "reply-a", 7);
		sk_send_all(A, "more-a", 6);
		sk_expect_msg("stream #1: its client still sends", a, "more-a", 6);
	}
	int b = accept_one("stream #2", LS);
	if (b >= 0) {
		sk_expect_empty("stream #2 (no data)", b);
		sk_send_all(B, "b", 1);
		sk_expect_msg("stream #2: its client sends", b, "b", 1);
	}
	int c = accept_one("stream #3", LS);
	if (c >= 0) {
		if (recv_with_fd("stream #3", c, buf, 18) >= 0)
			cr_fail("stream #3: a file came with it");
		if (memcmp(buf, "closed-client-data", 18))
			cr_fail("stream #3: wrong data");
		sk_expect_eof("stream #3 after its data", c);
	}
	int q1 = accept_one("seqpacket #1", LQ);
	if (q1 >= 0) {
		if (recv_with_fd("seqpacket #1 message 1", q1, buf, 7) >= 0 || memcmp(buf, "msg-one", 7))
			cr_fail("seqpacket #1: first message wrong or with a file");
		expect_pipe("seqpacket #1 message 2: file", recv_with_fd("seqpacket #1 message 2", q1, buf, 17));
		if (memcmp(buf, "msg-two-with-file", 17))
			cr_fail("seqpacket #1: second message wrong");
		sk_expect_empty("seqpacket #1 after its messages", q1);
	}
	int q2 = accept_one("seqpacket #2", LQ);
	if (q2 >= 0) {
		sk_expect_empty("seqpacket #2 (no data)", q2);
		DIE_IF(send(Q2, "q2", 2, 0) != 2, "send");
		sk_expect_msg("seqpacket #2: its client sends", q2, "q2", 2);
	}
	sk_nonblock(LS, 1);
	if (accept(LS, NULL, NULL) >= 0 || errno != EAGAIN)
		cr_fail("stream listener: a connection more than waited");
	cr_finish();
}
