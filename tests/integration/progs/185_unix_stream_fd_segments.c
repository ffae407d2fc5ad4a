/*
 * Files in flight on a unix stream socket stay on the segment they were sent with.
 * Each end of a socketpair holds, sent by the other end: "AAAA", "BBBBBB" with file
 * X, "CC", "DDD" with file Y, "EEEE" with file Z, "FF" (the fds closed by the
 * sender).  A read that takes only part of a segment with files gets its files, and
 * a read stops after a segment with files, so after the signal the reads of 6, 64,
 * 2 and 64 bytes give "AAAABB"+X, "BBBBCCDDD"+Y, "EE"+Z, "EEFF", as before.
 */
#include "sk_common.h"

static void send_seg(int sock, const char *data, const char *file)
{
	char cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { (void *)data, strlen(data) };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
	int fd = -1;
	if (file) {
		fd = open(file, O_RDONLY | O_CLOEXEC);
		DIE_IF(fd < 0, "open %s", file);
		memset(cbuf, 0, sizeof(cbuf));
		m.msg_control = cbuf;
		m.msg_controllen = sizeof(cbuf);
		struct cmsghdr *c = CMSG_FIRSTHDR(&m);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	DIE_IF(sendmsg(sock, &m, 0) != (ssize_t)iov.iov_len, "sendmsg");
	if (fd >= 0)
		close(fd);
}

/* One read of up to `len` bytes: the bytes and the file (by its content) that came with them. */
static void expect_read(const char *what, int sock, size_t len, const char *bytes, const char *file)
{
	char buf[64] = { 0 }, cbuf[CMSG_SPACE(sizeof(int) * 4)], content[32] = { 0 };
	struct iovec iov = { buf, len };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
	int got = -1, nfds = 0;
	if (!sk_wait_in(sock, CR_PATIENCE_MS)) {
		cr_fail("%s: nothing to read", what);
		return;
	}
	ssize_t r = recvmsg(sock, &m, MSG_DONTWAIT);
	if (r != (ssize_t)strlen(bytes) || memcmp(buf, bytes, (size_t)r))
		cr_fail("%s: read %zd bytes \"%.*s\", expected \"%s\"", what, r, (int)(r > 0 ? r : 0), buf, bytes);
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
			nfds += (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
			memcpy(&got, CMSG_DATA(c), sizeof(int));
		}
	if (!file) {
		if (nfds)
			cr_fail("%s: %d files came with the bytes, expected none", what, nfds);
		return;
	}
	if (nfds != 1) {
		cr_fail("%s: %d files came with the bytes, expected %s", what, nfds, file);
		return;
	}
	if (pread(got, content, sizeof(content) - 1, 0) < 0 || strcmp(content, file))
		cr_fail("%s: the file that came is \"%s\", expected %s", what, content, file);
	close(got);
}

static void fill(int sock)
{
	send_seg(sock, "AAAA", NULL);
	send_seg(sock, "BBBBBB", "X");
	send_seg(sock, "CC", NULL);
	send_seg(sock, "DDD", "Y");
	send_seg(sock, "EEEE", "Z");
	send_seg(sock, "FF", NULL);
}

static void check(const char *who, int sock)
{
	char what[64];
	snprintf(what, sizeof(what), "%s: read 6", who);
	expect_read(what, sock, 6, "AAAABB", "X");
	snprintf(what, sizeof(what), "%s: read 64", who);
	expect_read(what, sock, 64, "BBBBCCDDD", "Y");
	snprintf(what, sizeof(what), "%s: read 2", who);
	expect_read(what, sock, 2, "EE", "Z");
	snprintf(what, sizeof(what), "%s: read 64 again", who);
	expect_read(what, sock, 64, "EEFF", NULL);
	sk_expect_empty(who, sock);
}

int main(void)
{
	int sp[2];
	cr_init();
	char dir[] = "/tmp/lxc-cr-sock2-185-XXXXXX";
	DIE_IF(!mkdtemp(dir) || chdir(dir), "mkdtemp");
	cr_write_file("X", "X", 1);
	cr_write_file("Y", "Y", 1);
	cr_write_file("Z", "Z", 1);
	DIE_IF(socketpair(AF_UNIX, SOCK_STREAM, 0, sp), "socketpair");
	fill(sp[0]);
	fill(sp[1]);

	cr_ready();
	cr_wait();

	check("end 0", sp[0]);
	check("end 1", sp[1]);
	sk_send_all(sp[0], "ok", 2);
	sk_expect_msg("the pair still carries data", sp[1], "ok", 2);
	unlink("X");
	unlink("Y");
	unlink("Z");
	chdir("/");
	rmdir(dir);
	cr_finish();
}
