/*
 * Files in flight (SCM_RIGHTS).  A stream socket holds "abc", then "def" with a
 * regular file (at offset 5) and the end of another socketpair that has data
 * queued, then "ghi"; a datagram socket holds a message with a socket whose own
 * queue holds a message with a file (nested).  The process closed its own fds
 * on the files in flight.  After the signal the files arrive with the same byte
 * as before, at their offset, with their queues, and still work.
 */
#include "sk_common.h"

static void send_fds(int sock, const char *data, const int *fds, int n)
{
	char cbuf[CMSG_SPACE(sizeof(int) * 4)];
	struct iovec iov = { (void *)data, strlen(data) };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
			    .msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)n) };
	memset(cbuf, 0, sizeof(cbuf));
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)n);
	memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)n);
	DIE_IF(sendmsg(sock, &m, 0) != (ssize_t)iov.iov_len, "sendmsg");
}

/* Receive up to `len` bytes; returns the number of fds received into fds[]. */
static int recv_fds(const char *what, int sock, size_t len, const char *expect, int *fds, int max)
{
	char buf[64], cbuf[CMSG_SPACE(sizeof(int) * 8)];
	struct iovec iov = { buf, len };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
	int n = 0;
	if (!sk_wait_in(sock, CR_PATIENCE_MS)) {
		cr_fail("%s: nothing to read", what);
		return 0;
	}
	ssize_t r = recvmsg(sock, &m, MSG_DONTWAIT);
	if (r != (ssize_t)strlen(expect) || memcmp(buf, expect, (size_t)r))
		cr_fail("%s: got %zd bytes \"%.*s\", expected \"%s\"", what, r, (int)(r > 0 ? r : 0), buf, expect);
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
			int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
			for (int i = 0; i < k; i++) {
				int fd;
				memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
				if (n < max)
					fds[n++] = fd;
			}
		}
	return n;
}

static int make_file(const char *name, const char *content)
{
	int fd = open(name, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	DIE_IF(fd < 0, "create %s", name);
	DIE_IF(write(fd, content, strlen(content)) != (ssize_t)strlen(content), "write %s", name);
	return fd;
}

int main(void)
{
	int sp[2], dq[2], p2[2], p3[2], fds[4];
	char buf[64];
	cr_init();
	DIE_IF(socketpair(AF_UNIX, SOCK_STREAM, 0, sp) || socketpair(AF_UNIX, SOCK_DGRAM, 0, dq), "socketpair");
	DIE_IF(socketpair(AF_UNIX, SOCK_STREAM, 0, p2) || socketpair(AF_UNIX, SOCK_DGRAM, 0, p3), "socketpair");

	int f1 = make_file("f74.txt", "0123456789abcdef");
	DIE_IF(lseek(f1, 5, SEEK_SET) != 5, "lseek");
	sk_send_all(p2[0], "inside-q", 8);
	sk_send_all(sp[0], "abc", 3);
	send_fds(sp[0], "def", (int[]){ f1, p2[1] }, 2);
	sk_send_all(sp[0], "ghi", 3);
	close(f1);
	close(p2[1]);

	int f2 = make_file("g74.txt", "nested-file");
	send_fds(p3[0], "nested", (int[]){ f2 }, 1);
	send_fds(dq[0], "with-socket", (int[]){ p3[1] }, 1);
	close(f2);
	close(p3[1]);
	close(p3[0]);

	cr_ready();
	cr_wait();

	if (recv_fds("stream: before the files", sp[1], 3, "abc", fds, 4) != 0)
		cr_fail("stream: files arrived with the bytes before theirs");
	int n = recv_fds("stream: bytes with the files", sp[1], sizeof(buf), "def", fds, 4);
	if (n != 2) {
		cr_fail("stream: %d files arrived, expected 2", n);
	} else {
		CHECK_EQ(lseek(fds[0], 0, SEEK_CUR), 5, "file in flight: offset");
		memset(buf, 0, sizeof(buf));
		if (read(fds[0], buf, sizeof(buf)) != 11 || strcmp(buf, "56789abcdef"))
			cr_fail("file in flight: read \"%s\"", buf);
		sk_expect_msg("socket in flight: its queue", fds[1], "inside-q", 8);
		sk_send_all(fds[1], "reply", 5);
		sk_expect_msg("socket in flight: its peer hears it", p2[0], "reply", 5);
	}
	if (recv_fds("stream: after the files", sp[1], sizeof(buf), "ghi", fds, 4) != 0)
		cr_fail("stream: files arrived twice");
	sk_expect_empty("stream: after all", sp[1]);

	n = recv_fds("datagram: message with a socket", dq[1], sizeof(buf), "with-socket", fds, 4);
	if (n != 1) {
		cr_fail("datagram: %d files arrived, expected 1", n);
	} else {
		int inner;
		if (recv_fds("nested: message with a file", fds[0], sizeof(buf), "nested", &inner, 1) != 1) {
			cr_fail("nested: the file did not arrive");
		} else {
			memset(buf, 0, sizeof(buf));
			if (pread(inner, buf, sizeof(buf), 0) != 11 || strcmp(buf, "nested-file"))
				cr_fail("nested file: read \"%s\"", buf);
		}
	}
	unlink("f74.txt");
	unlink("g74.txt");
	cr_finish();
}
