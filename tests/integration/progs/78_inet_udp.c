/*
 * UDP sockets: bound on 127.0.0.1 (SO_BROADCAST, IP_TOS) and on ::1
 * (IPV6_V6ONLY), a pair bound and connected to each other, an unbound one.
 * After the signal their addresses, peers and options are as before; the bound
 * ones receive from a new socket (with the sender's address), the pair talks.
 */
#include "sk_common.h"

static int udp(int family, const void *addr, socklen_t len, struct sockaddr_storage *name, socklen_t *nl)
{
	int fd = socket(family, SOCK_DGRAM, 0);
	DIE_IF(fd < 0, "socket");
	if (addr) {
		DIE_IF(bind(fd, addr, len), "bind");
		*nl = sizeof(*name);
		getsockname(fd, (struct sockaddr *)name, nl);
	}
	return fd;
}

static void receives(const char *what, int fd, const struct sockaddr_storage *a, socklen_t al)
{
	struct sockaddr_storage from, mine;
	socklen_t fl = sizeof(from), ml = sizeof(mine);
	char buf[64];
	int s = socket(a->ss_family, SOCK_DGRAM, 0);
	DIE_IF(sendto(s, what, strlen(what), 0, (const struct sockaddr *)a, al) != (ssize_t)strlen(what), "sendto");
	getsockname(s, (struct sockaddr *)&mine, &ml);
	if (!sk_wait_in(fd, CR_PATIENCE_MS)) {
		cr_fail("%s: nothing received", what);
		return;
	}
	ssize_t r = recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fl);
	if (r != (ssize_t)strlen(what) || memcmp(buf, what, (size_t)r))
		cr_fail("%s: received %zd bytes", what, r);
	/* the sender was bound by sendto() to the wildcard address: compare ports */
	if (fl != ml || from.ss_family != mine.ss_family ||
	    (from.ss_family == AF_INET ? ((struct sockaddr_in *)&from)->sin_port != ((struct sockaddr_in *)&mine)->sin_port
				       : ((struct sockaddr_in6 *)&from)->sin6_port != ((struct sockaddr_in6 *)&mine)->sin6_port))
		cr_fail("%s: sender address differs", what);
	close(s);
}

static void same(const char *what, int fd, const struct sockaddr_storage *a, socklen_t al, int peer)
{
	struct sockaddr_storage got;
	socklen_t gl = sizeof(got);
	int r = peer ? getpeername(fd, (struct sockaddr *)&got, &gl) : getsockname(fd, (struct sockaddr *)&got, &gl);
	if (r || gl != al || memcmp(&got, a, al))
		cr_fail("%s: %s changed", what, peer ? "peer" : "address");
}

int main(void)
{
	struct sockaddr_in in4 = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct sockaddr_in6 in6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	struct sockaddr_storage a4, a6, p1, p2, none;
	socklen_t l4, l6, pl1, pl2, nl;
	cr_init();
	int U4 = udp(AF_INET, &in4, sizeof(in4), &a4, &l4);
	sk_setint(U4, SOL_SOCKET, SO_BROADCAST, 1);
	sk_setint(U4, IPPROTO_IP, IP_TOS, 0x08);
	int U6 = socket(AF_INET6, SOCK_DGRAM, 0);
	if (U6 < 0)
		cr_skip("no IPv6");
	sk_setint(U6, IPPROTO_IPV6, IPV6_V6ONLY, 1);
	if (bind(U6, (struct sockaddr *)&in6, sizeof(in6)))
		cr_skip("no ::1");
	l6 = sizeof(a6);
	getsockname(U6, (struct sockaddr *)&a6, &l6);
	int P1 = udp(AF_INET, &in4, sizeof(in4), &p1, &pl1);
	int P2 = udp(AF_INET, &in4, sizeof(in4), &p2, &pl2);
	DIE_IF(connect(P1, (struct sockaddr *)&p2, pl2) || connect(P2, (struct sockaddr *)&p1, pl1), "connect");
	int X = udp(AF_INET, NULL, 0, &none, &nl);

	cr_ready();
	cr_wait();

	same("v4 socket", U4, &a4, l4, 0);
	same("v6 socket", U6, &a6, l6, 0);
	same("pair 1", P1, &p1, pl1, 0);
	same("pair 1", P1, &p2, pl2, 1);
	same("pair 2", P2, &p2, pl2, 0);
	same("pair 2", P2, &p1, pl1, 1);
	CHECK_EQ(sk_getint(U4, SOL_SOCKET, SO_BROADCAST), 1, "v4 socket: SO_BROADCAST");
	CHECK_EQ(sk_getint(U4, IPPROTO_IP, IP_TOS), 0x08, "v4 socket: IP_TOS");
	CHECK_EQ(sk_getint(U6, IPPROTO_IPV6, IPV6_V6ONLY), 1, "v6 socket: IPV6_V6ONLY");
	struct sockaddr_storage xs;
	socklen_t xl = sizeof(xs);
	getsockname(X, (struct sockaddr *)&xs, &xl);
	CHECK_EQ(((struct sockaddr_in *)&xs)->sin_port, 0, "unbound socket: port");
	errno = 0;
	if (send(X, "x", 1, 0) != -1 || errno != EDESTADDRREQ)
		cr_fail("unbound socket: send without a peer did not fail with EDESTADDRREQ (errno %d)", errno);

	receives("v4 socket receives", U4, &a4, l4);
	receives("v6 socket receives", U6, &a6, l6);
	DIE_IF(send(P1, "one-two", 7, 0) != 7 || send(P2, "two-one", 7, 0) != 7, "pair send");
	sk_expect_msg("pair: 1 -> 2", P2, "one-two", 7);
	sk_expect_msg("pair: 2 -> 1", P1, "two-one", 7);
	cr_finish();
}
