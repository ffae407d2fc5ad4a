/*
 * Unix datagram sockets: a socketpair with messages queued both ways (one of
 * them empty, one of 3000 bytes); a server bound to an abstract name holding
 * messages from a path-bound client (connected to it), an abstract-bound client
 * (relative name) and an unnamed one; a client holding a reply.  After the signal every message
 * comes out once, in order, whole, from the same sender address; the sockets
 * keep their names and connection and carry new messages.
 */
#include "sk_common.h"

static char big[3000];

static void expect_from(const char *what, int fd, const char *data, const struct sockaddr_un *from,
			socklen_t fromlen)
{
	char buf[256];
	struct sockaddr_un a;
	socklen_t l = sizeof(a);
	if (!sk_wait_in(fd, CR_PATIENCE_MS)) {
		cr_fail("%s: no message", what);
		return;
	}
	memset(&a, 0, sizeof(a));
	ssize_t r = recvfrom(fd, buf, sizeof(buf), MSG_DONTWAIT, (struct sockaddr *)&a, &l);
	if (r != (ssize_t)strlen(data) || memcmp(buf, data, (size_t)r))
		cr_fail("%s: got %zd bytes \"%.*s\", expected \"%s\"", what, r, (int)(r > 0 ? r : 0), buf, data);
	if (l != fromlen || memcmp(&a, from, fromlen))
		cr_fail("%s: sender address of %u bytes (\"%s\"), expected %u bytes (\"%s\")", what, l,
			a.sun_path[0] ? a.sun_path : a.sun_path + 1, fromlen,
			from->sun_path[0] ? from->sun_path : from->sun_path + 1);
}

int main(void)
{
	int dp[2];
	struct sockaddr_un sa, c1a, c2a, none;
	char path[64];
	cr_init();
	cr_fill(big, sizeof(big), 0x71);
	DIE_IF(socketpair(AF_UNIX, SOCK_DGRAM, 0, dp), "socketpair");
	DIE_IF(send(dp[0], "m1", 2, 0) != 2 || send(dp[0], "", 0, 0) != 0 ||
	       send(dp[0], big, sizeof(big), 0) != sizeof(big) || send(dp[0], "m4", 2, 0) != 2, "send to dp[1]");
	DIE_IF(send(dp[1], "r1", 2, 0) != 2 || send(dp[1], "r2", 2, 0) != 2, "send to dp[0]");

	int s = socket(AF_UNIX, SOCK_DGRAM, 0), c1 = socket(AF_UNIX, SOCK_DGRAM, 0);
	int c2 = socket(AF_UNIX, SOCK_DGRAM, 0), c3 = socket(AF_UNIX, SOCK_DGRAM, 0);
	DIE_IF(s < 0 || c1 < 0 || c2 < 0 || c3 < 0, "socket");
	socklen_t sl = sk_abstract(&sa, "lxcr71-srv-%d", getpid());
	socklen_t c2l = sk_abstract(&c2a, "lxcr71-c2-%d", getpid());
	/* a relative name: it must come back relative to the same directory */
	snprintf(path, sizeof(path), "c71.sock");
	unlink(path);
	socklen_t c1l = sk_pathaddr(&c1a, path);
	memset(&none, 0, sizeof(none));
	none.sun_family = AF_UNIX;
	DIE_IF(bind(s, (struct sockaddr *)&sa, sl), "bind server");
	DIE_IF(bind(c1, (struct sockaddr *)&c1a, c1l), "bind c1");
	DIE_IF(bind(c2, (struct sockaddr *)&c2a, c2l), "bind c2");
	DIE_IF(chmod(path, 0640), "chmod");
	DIE_IF(sendto(c1, "from-c1-a", 9, 0, (struct sockaddr *)&sa, sl) != 9, "c1 a");
	DIE_IF(sendto(c3, "from-c3", 7, 0, (struct sockaddr *)&sa, sl) != 7, "c3");
	DIE_IF(sendto(c2, "from-c2", 7, 0, (struct sockaddr *)&sa, sl) != 7, "c2");
	DIE_IF(connect(c1, (struct sockaddr *)&sa, sl), "connect c1");
	DIE_IF(send(c1, "from-c1-b", 9, 0) != 9, "c1 b");
	DIE_IF(sendto(s, "to-c2", 5, 0, (struct sockaddr *)&c2a, c2l) != 5, "to c2");
	sk_nonblock(dp[0], 1);
	sk_setint(s, SOL_SOCKET, SO_PEEK_OFF, 0);       /* the dump peeks with its own offset */

	cr_ready();
	cr_wait();

	CHECK_EQ(sk_getint(s, SOL_SOCKET, SO_PEEK_OFF), 0, "server: SO_PEEK_OFF");
	sk_setint(s, SOL_SOCKET, SO_PEEK_OFF, -1);
	if (!(fcntl(dp[0], F_GETFL) & O_NONBLOCK) || (fcntl(dp[1], F_GETFL) & O_NONBLOCK))
		cr_fail("pair: O_NONBLOCK is not where it was");

	sk_expect_msg("pair: 1st", dp[1], "m1", 2);
	sk_expect_msg("pair: empty message", dp[1], "", 0);
	sk_expect_msg("pair: 3000 bytes", dp[1], big, sizeof(big));
	sk_expect_msg("pair: 4th", dp[1], "m4", 2);
	sk_expect_empty("pair: after 4 messages", dp[1]);
	sk_expect_msg("pair: reverse 1st", dp[0], "r1", 2);
	sk_expect_msg("pair: reverse 2nd", dp[0], "r2", 2);
	sk_expect_empty("pair: reverse after 2", dp[0]);
	DIE_IF(send(dp[0], "new", 3, 0) != 3, "pair: new");
	sk_expect_msg("pair: new message", dp[1], "new", 3);

	expect_from("server: 1st", s, "from-c1-a", &c1a, c1l);
	expect_from("server: 2nd (unnamed)", s, "from-c3", &none, 0);
	expect_from("server: 3rd", s, "from-c2", &c2a, c2l);
	expect_from("server: 4th", s, "from-c1-b", &c1a, c1l);
	sk_expect_empty("server: after 4", s);
	expect_from("client 2: reply", c2, "to-c2", &sa, sl);
	sk_expect_empty("client 2: after reply", c2);

	struct sockaddr_un got;
	socklen_t gl = sizeof(got);
	if (getpeername(c1, (struct sockaddr *)&got, &gl) || gl != sl || memcmp(&got, &sa, sl))
		cr_fail("client 1: no longer connected to the server");
	gl = sizeof(got);
	if (getsockname(c1, (struct sockaddr *)&got, &gl) || gl != c1l || memcmp(&got, &c1a, c1l))
		cr_fail("client 1: lost its name");
	struct stat st;
	if (lstat(path, &st) || !S_ISSOCK(st.st_mode) || (st.st_mode & 07777) != 0640)
		cr_fail("client 1: socket file %s missing or mode %o", path, st.st_mode & 07777);
	DIE_IF(send(c1, "after", 5, 0) != 5, "c1 after");
	expect_from("server: new from client 1", s, "after", &c1a, c1l);
	DIE_IF(sendto(c3, "c3-after", 8, 0, (struct sockaddr *)&sa, sl) != 8, "c3 after");
	expect_from("server: new from client 3", s, "c3-after", &none, 0);
	DIE_IF(sendto(s, "to-c2-2", 7, 0, (struct sockaddr *)&c2a, c2l) != 7, "to c2 again");
	expect_from("client 2: new reply", c2, "to-c2-2", &sa, sl);
	unlink(path);
	cr_finish();
}
