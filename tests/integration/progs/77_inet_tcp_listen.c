/*
 * TCP sockets that are not connected: a listener on 127.0.0.1 (SO_REUSEADDR,
 * SO_KEEPALIVE, TCP_NODELAY, a receive buffer), one on ::1 (IPV6_V6ONLY), a
 * bound socket not listening (SO_REUSEPORT) and an unbound one (TCP_NODELAY,
 * IP_TOS).  After the signal they have their addresses and options, the
 * listeners accept new connections (with argument "outside": first the one
 * the test made from outside after the restore), the bound socket can listen
 * on its port and the unbound one connect.
 */
#include "sk_common.h"

static int tcp(int family)
{
	int fd = socket(family, SOCK_STREAM, 0);
	DIE_IF(fd < 0, "socket");
	return fd;
}

static void same_name(const char *what, int fd, const struct sockaddr_storage *want, socklen_t wl)
{
	struct sockaddr_storage got;
	socklen_t gl = sizeof(got);
	if (getsockname(fd, (struct sockaddr *)&got, &gl) || gl != wl || memcmp(&got, want, wl))
		cr_fail("%s: its address changed", what);
}

static void round_trip(const char *what, int l, const struct sockaddr_storage *a, socklen_t al)
{
	int c = socket(a->ss_family, SOCK_STREAM, 0);
	if (connect(c, (const struct sockaddr *)a, al)) {
		cr_fail("%s: cannot connect (errno %d)", what, errno);
		return;
	}
	int s = accept(l, NULL, NULL);
	if (s < 0) {
		cr_fail("%s: cannot accept (errno %d)", what, errno);
		return;
	}
	sk_send_all(c, "hello", 5);
	sk_expect_msg(what, s, "hello", 5);
	close(c);
	close(s);
}

int main(int argc, char **argv)
{
	struct sockaddr_storage a4, a6, ab;
	socklen_t l4 = sizeof(a4), l6 = sizeof(a6), lb = sizeof(ab);
	struct sockaddr_in in4 = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct sockaddr_in6 in6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	int outside = argc > 1 && !strcmp(argv[1], "outside");
	cr_init();

	int L4 = tcp(AF_INET);
	sk_setint(L4, SOL_SOCKET, SO_REUSEADDR, 1);
	sk_setint(L4, SOL_SOCKET, SO_KEEPALIVE, 1);
	sk_setint(L4, IPPROTO_TCP, TCP_NODELAY, 1);
	sk_setint(L4, SOL_SOCKET, SO_RCVBUF, 65536);
	DIE_IF(bind(L4, (struct sockaddr *)&in4, sizeof(in4)) || listen(L4, 7), "listen v4");
	getsockname(L4, (struct sockaddr *)&a4, &l4);
	int rcvbuf = sk_getint(L4, SOL_SOCKET, SO_RCVBUF);

	int L6 = socket(AF_INET6, SOCK_STREAM, 0);
	if (L6 < 0)
		cr_skip("no IPv6");
	sk_setint(L6, IPPROTO_IPV6, IPV6_V6ONLY, 1);
	if (bind(L6, (struct sockaddr *)&in6, sizeof(in6)))
		cr_skip("no ::1 (errno %d)", errno);
	DIE_IF(listen(L6, 3), "listen v6");
	getsockname(L6, (struct sockaddr *)&a6, &l6);

	int B = tcp(AF_INET);
	sk_setint(B, SOL_SOCKET, SO_REUSEPORT, 1);
	DIE_IF(bind(B, (struct sockaddr *)&in4, sizeof(in4)), "bind");
	getsockname(B, (struct sockaddr *)&ab, &lb);

	int U = tcp(AF_INET);
	sk_setint(U, IPPROTO_TCP, TCP_NODELAY, 1);
	sk_setint(U, IPPROTO_IP, IP_TOS, 0x10);

	cr_info("port %d", ntohs(((struct sockaddr_in *)&a4)->sin_port));
	cr_ready();
	cr_wait();

	if (outside) {
		int s = accept(L4, NULL, NULL);
		if (s < 0)
			cr_fail("no connection from outside (errno %d)", errno);
		else {
			sk_expect_msg("connection from outside", s, "from-outside", 12);
			sk_send_all(s, "ok", 2);
			close(s);
		}
	}
	same_name("v4 listener", L4, &a4, l4);
	same_name("v6 listener", L6, &a6, l6);
	same_name("bound socket", B, &ab, lb);
	CHECK_EQ(sk_getint(L4, SOL_SOCKET, SO_ACCEPTCONN), 1, "v4 listener: SO_ACCEPTCONN");
	CHECK_EQ(sk_getint(L4, SOL_SOCKET, SO_REUSEADDR), 1, "v4 listener: SO_REUSEADDR");
	CHECK_EQ(sk_getint(L4, SOL_SOCKET, SO_KEEPALIVE), 1, "v4 listener: SO_KEEPALIVE");
	CHECK_EQ(sk_getint(L4, IPPROTO_TCP, TCP_NODELAY), 1, "v4 listener: TCP_NODELAY");
	CHECK_EQ(sk_getint(L4, SOL_SOCKET, SO_RCVBUF), rcvbuf, "v4 listener: SO_RCVBUF");
	CHECK_EQ(sk_getint(L6, IPPROTO_IPV6, IPV6_V6ONLY), 1, "v6 listener: IPV6_V6ONLY");
	CHECK_EQ(sk_getint(L6, SOL_SOCKET, SO_REUSEADDR), 0, "v6 listener: SO_REUSEADDR");
	CHECK_EQ(sk_getint(B, SOL_SOCKET, SO_REUSEPORT), 1, "bound socket: SO_REUSEPORT");
	CHECK_EQ(sk_getint(B, SOL_SOCKET, SO_ACCEPTCONN), 0, "bound socket: SO_ACCEPTCONN");
	CHECK_EQ(sk_getint(U, IPPROTO_TCP, TCP_NODELAY), 1, "unbound socket: TCP_NODELAY");
	CHECK_EQ(sk_getint(U, IPPROTO_IP, IP_TOS), 0x10, "unbound socket: IP_TOS");

	round_trip("v4 listener", L4, &a4, l4);
	round_trip("v6 listener", L6, &a6, l6);
	DIE_IF(listen(B, 1), "listen on the bound socket");
	round_trip("bound socket, listening now", B, &ab, lb);
	if (connect(U, (struct sockaddr *)&a4, l4))
		cr_fail("unbound socket: cannot connect (errno %d)", errno);
	int s = accept(L4, NULL, NULL);
	if (s < 0)
		cr_fail("unbound socket's connection not accepted");
	else
		CHECK_EQ(sk_getint(s, SOL_SOCKET, SO_KEEPALIVE), 1, "accepted socket: SO_KEEPALIVE (inherited)");
	cr_finish();
}
