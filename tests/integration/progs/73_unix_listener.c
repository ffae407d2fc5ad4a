/*
 * A unix stream listener bound to a path (mode 0600): a connection it accepted
 * from a client bound to an abstract name, with data queued both ways, and four
 * connections waiting to be accepted: from a named client that shut down its
 * writing side, an unnamed one, a named one, and one whose client has closed.
 * After the signal the socket file is there again with its mode, the accepted
 * connection has all its data, the waiting ones are accepted in their order,
 * and a new client connects by path.
 */
#include "sk_common.h"

#define LEN 50000

static int connect_to(const struct sockaddr_un *a, socklen_t l, const char *abstract)
{
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	DIE_IF(fd < 0, "socket");
	if (abstract) {
		struct sockaddr_un ca;
		socklen_t cl = sk_abstract(&ca, "%s-%d", abstract, getpid());
		DIE_IF(bind(fd, (struct sockaddr *)&ca, cl), "bind %s", abstract);
	}
	DIE_IF(connect(fd, (const struct sockaddr *)a, l), "connect");
	return fd;
}

static void expect_peer(const char *what, int fd, const char *abstract)
{
	struct sockaddr_un want, got;
	socklen_t wl = abstract ? sk_abstract(&want, "%s-%d", abstract, getpid()) : sizeof(sa_family_t);
	socklen_t gl = sizeof(got);
	if (!abstract) {
		memset(&want, 0, sizeof(want));
		want.sun_family = AF_UNIX;
	}
	if (getpeername(fd, (struct sockaddr *)&got, &gl) || gl != wl || memcmp(&got, &want, wl))
		cr_fail("%s: peer name of %u bytes, expected %u", what, gl, wl);
}

int main(void)
{
	struct sockaddr_un la, got;
	char path[128];
	cr_init();
	if (strlen(cr_dir) + 10 >= sizeof(la.sun_path))
		cr_skip("working directory too long for a socket path");
	snprintf(path, sizeof(path), "%.100s/l73.sock", cr_dir);
	unlink(path);
	socklen_t ll = sk_pathaddr(&la, path);
	int l = socket(AF_UNIX, SOCK_STREAM, 0);
	DIE_IF(bind(l, (struct sockaddr *)&la, ll) || listen(l, 8), "listen");
	DIE_IF(chmod(path, 0600), "chmod");

	int c1 = connect_to(&la, ll, "lxcr73-c1");
	int a1 = accept(l, NULL, NULL);
	DIE_IF(a1 < 0, "accept");
	DIE_IF(sk_fill(c1, 0x731, 0, LEN) != LEN || sk_fill(a1, 0x732, 0, LEN) != LEN, "fill");

	int c2 = connect_to(&la, ll, "lxcr73-c2");
	DIE_IF(shutdown(c2, SHUT_WR), "shutdown c2");
	int c3 = connect_to(&la, ll, NULL);
	int c4 = connect_to(&la, ll, "lxcr73-c4");
	close(connect_to(&la, ll, NULL));          /* waits, its client gone */

	cr_ready();
	cr_wait();

	struct stat st;
	if (lstat(path, &st) || !S_ISSOCK(st.st_mode) || (st.st_mode & 07777) != 0600)
		cr_fail("socket file %s missing or with mode %o", path, st.st_mode & 07777);
	sk_expect_stream("accepted: client's data", a1, 0x731, 0, LEN);
	sk_expect_stream("client: server's data", c1, 0x732, 0, LEN);
	sk_expect_empty("accepted: after the data", a1);
	sk_expect_empty("client: after the data", c1);
	socklen_t gl = sizeof(got);
	if (getsockname(a1, (struct sockaddr *)&got, &gl) || gl != ll || memcmp(&got, &la, ll))
		cr_fail("accepted: does not carry the listener's name");
	expect_peer("accepted", a1, "lxcr73-c1");

	sk_nonblock(l, 1);
	int w[4];
	for (int i = 0; i < 4; i++) {
		w[i] = accept(l, NULL, NULL);
		if (w[i] < 0) {
			cr_fail("waiting connection %d cannot be accepted (errno %d)", i + 1, errno);
			cr_finish();
		}
	}
	if (accept(l, NULL, NULL) >= 0 || errno != EAGAIN)
		cr_fail("more than four connections were waiting (errno %d)", errno);
	expect_peer("1st waiting", w[0], "lxcr73-c2");
	sk_expect_eof("1st waiting (its client shut down writing)", w[0]);
	sk_send_all(c3, "c3", 2);
	sk_send_all(c4, "c4", 2);
	expect_peer("2nd waiting", w[1], NULL);
	sk_expect_msg("2nd waiting", w[1], "c3", 2);
	expect_peer("3rd waiting", w[2], "lxcr73-c4");
	sk_expect_msg("3rd waiting", w[2], "c4", 2);
	sk_expect_eof("4th waiting (client gone)", w[3]);
	sk_send_all(w[1], "to-c3", 5);
	sk_expect_msg("2nd waiting, reply", c3, "to-c3", 5);

	int c5 = connect_to(&la, ll, NULL);
	int a5 = accept(l, NULL, NULL);
	if (a5 < 0)
		cr_fail("the listener takes no new connection by path (errno %d)", errno);
	else {
		sk_send_all(c5, "new", 3);
		sk_expect_msg("new connection", a5, "new", 3);
	}
	unlink(path);
	cr_finish();
}
