/*
 * Half-closed TCP connections on loopback, both ends in the tree, IPv4 and IPv6:
 * the client shut down its writing side (FIN_WAIT2), the server has not read the
 * FIN yet (CLOSE_WAIT); data is queued both ways.  After the signal both are in
 * the same states, the server reads its data then EOF, the client reads its data,
 * cannot send, and still receives what the server sends, then EOF when it closes.
 */
#include "sk_common.h"

#define C2S 3000
#define S2C 2000

static int tcp_state(int fd)
{
	struct tcp_info ti;
	socklen_t l = sizeof(ti);
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &l))
		return -1;
	return ti.tcpi_state;
}

static void pair(int family, int *client, int *server)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	socklen_t l;
	if (family == AF_INET) {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		a->sin_family = AF_INET;
		a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		l = sizeof(*a);
	} else {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		a->sin6_family = AF_INET6;
		a->sin6_addr = in6addr_loopback;
		l = sizeof(*a);
	}
	int L = socket(family, SOCK_STREAM, 0);
	DIE_IF(L < 0, "socket");
	if (bind(L, (struct sockaddr *)&ss, l))
		cr_skip("cannot bind the loopback address of family %d", family);
	DIE_IF(listen(L, 1), "listen");
	l = sizeof(ss);
	DIE_IF(getsockname(L, (struct sockaddr *)&ss, &l), "getsockname");
	*client = socket(family, SOCK_STREAM, 0);
	DIE_IF(connect(*client, (struct sockaddr *)&ss, l), "connect");
	*server = accept(L, NULL, NULL);
	DIE_IF(*server < 0, "accept");
	close(L);
}

static void setup(int family, int seed, int *c, int *s)
{
	pair(family, c, s);
	DIE_IF(sk_fill(*c, seed, 0, C2S) != C2S || sk_fill(*s, seed + 1, 0, S2C) != S2C, "fill");
	DIE_IF(shutdown(*c, SHUT_WR), "shutdown");
	for (int i = 0; i < CR_PATIENCE_LOOPS(10) && (tcp_state(*c) != TCP_FIN_WAIT2 || tcp_state(*s) != TCP_CLOSE_WAIT); i++)
		cr_sleep_ms(10);
	DIE_IF(tcp_state(*c) != TCP_FIN_WAIT2 || tcp_state(*s) != TCP_CLOSE_WAIT, "states %d %d", tcp_state(*c),
	       tcp_state(*s));
}

static void check(const char *what, int seed, int c, int s)
{
	char buf[16];
	if (tcp_state(c) != TCP_FIN_WAIT2 || tcp_state(s) != TCP_CLOSE_WAIT)
		cr_fail("%s: states %d (client) and %d (server), expected FIN_WAIT2 and CLOSE_WAIT", what, tcp_state(c),
			tcp_state(s));
	sk_expect_stream(what, s, seed, 0, C2S);
	sk_expect_eof(what, s);
	sk_expect_stream(what, c, seed + 1, 0, S2C);
	sk_expect_empty(what, c);
	errno = 0;
	if (send(c, "x", 1, MSG_NOSIGNAL | MSG_DONTWAIT) != -1 || errno != EPIPE)
		cr_fail("%s: the client could send after its shutdown (errno %d)", what, errno);
	sk_send_all(s, "after", 5);
	sk_expect_msg(what, c, "after", 5);
	close(s);
	if (!sk_wait_in(c, CR_PATIENCE_MS) || recv(c, buf, sizeof(buf), MSG_DONTWAIT) != 0)
		cr_fail("%s: the client did not see the server close", what);
}

int main(void)
{
	int c4, s4, c6, s6;
	cr_init();
	setup(AF_INET, 1830, &c4, &s4);
	setup(AF_INET6, 1840, &c6, &s6);

	cr_ready();
	cr_wait();

	check("IPv4", 1830, c4, s4);
	check("IPv6", 1840, c6, s6);
	cr_finish();
}
