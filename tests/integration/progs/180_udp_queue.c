/*
 * UDP receive queues (IPv4, IPv6, dual-stack, wildcard, connected) hold datagrams
 * at the signal.  After it each socket reads exactly those datagrams, in order, each
 * once, from the same source address and port (a wildcard socket: to the same
 * destination address too), then nothing; a socket's own peek offset is kept.
 * Both ends of a connected pair have datagrams queued (both directions).
 */
#include "sk_common.h"

static int udp_bound(int family, const char *addr, int v6only)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	socklen_t len;
	int fd = socket(family, SOCK_DGRAM, 0);
	DIE_IF(fd < 0, "socket");
	if (family == AF_INET) {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		a->sin_family = AF_INET;
		DIE_IF(inet_pton(AF_INET, addr, &a->sin_addr) != 1, "inet_pton %s", addr);
		len = sizeof(*a);
	} else {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		a->sin6_family = AF_INET6;
		DIE_IF(inet_pton(AF_INET6, addr, &a->sin6_addr) != 1, "inet_pton %s", addr);
		sk_setint(fd, IPPROTO_IPV6, IPV6_V6ONLY, v6only);
		len = sizeof(*a);
	}
	if (bind(fd, (struct sockaddr *)&ss, len))
		cr_skip("cannot bind %s (errno %d)", addr, errno);
	return fd;
}

static struct sockaddr_storage name_of(int fd, socklen_t *len)
{
	struct sockaddr_storage ss;
	*len = sizeof(ss);
	DIE_IF(getsockname(fd, (struct sockaddr *)&ss, len), "getsockname");
	return ss;
}

/* Send from `from` to `to`'s port, at its address or at `to_addr` (IPv4, text). */
static void send_to(int from, int to, const char *to_addr, const void *data, size_t n)
{
	socklen_t len;
	struct sockaddr_storage ss = name_of(to, &len);
	if (to_addr) {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		in_port_t port = ss.ss_family == AF_INET ? a->sin_port : ((struct sockaddr_in6 *)&ss)->sin6_port;
		memset(&ss, 0, sizeof(ss));
		a->sin_family = AF_INET;
		a->sin_port = port;
		len = sizeof(*a);
		DIE_IF(inet_pton(AF_INET, to_addr, &a->sin_addr) != 1, "inet_pton");
	}
	DIE_IF(sendto(from, data, n, 0, (struct sockaddr *)&ss, len) != (ssize_t)n, "sendto");
}

/* The port and address (v4, v6, or v4 as ::ffff:a.b.c.d) of a sockaddr, as text. */
static void addr_text(const struct sockaddr_storage *ss, char *out, size_t n)
{
	char host[INET6_ADDRSTRLEN] = "?";
	int port = 0;
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
		inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
		port = ntohs(a->sin_port);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
		inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
		port = ntohs(a->sin6_port);
	}
	snprintf(out, n, "%s#%d", host, port);
}

/* What a socket `fd` looks like as a sender to a socket of `family` (v4 senders to
 * a dual-stack socket are seen as ::ffff:a.b.c.d). */
static void sender_text(int fd, int family, char *out, size_t n)
{
	socklen_t len;
	struct sockaddr_storage ss = name_of(fd, &len);
	if (ss.ss_family == AF_INET && family == AF_INET6) {
		struct sockaddr_in a = *(struct sockaddr_in *)&ss;
		struct sockaddr_in6 *m = (struct sockaddr_in6 *)&ss;
		memset(m, 0, sizeof(*m));
		m->sin6_family = AF_INET6;
		m->sin6_port = a.sin_port;
		m->sin6_addr.s6_addr[10] = m->sin6_addr.s6_addr[11] = 0xff;
		memcpy(&m->sin6_addr.s6_addr[12], &a.sin_addr, 4);
	}
	addr_text(&ss, out, n);
}

static char big[60000];

/* The next datagram of `fd` is `data` from `sender` (and to `dest`, when given). */
static void expect(const char *what, int fd, int sender, const void *data, size_t n, const char *dest)
{
	static char buf[65536];
	struct sockaddr_storage from;
	char cbuf[256], want[80], got[80];
	struct iovec iov = { buf, sizeof(buf) };
	struct msghdr mh = { .msg_name = &from, .msg_namelen = sizeof(from), .msg_iov = &iov, .msg_iovlen = 1,
			     .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
	ssize_t r = recvmsg(fd, &mh, MSG_DONTWAIT);
	if (r != (ssize_t)n || memcmp(buf, data, n)) {
		cr_fail("%s: got %zd bytes (errno %d), expected %zu", what, r, r < 0 ? errno : 0, n);
		return;
	}
	sender_text(sender, sk_getint(fd, SOL_SOCKET, SO_DOMAIN), want, sizeof(want));
	addr_text(&from, got, sizeof(got));
	if (strcmp(want, got))
		cr_fail("%s: from %s, expected %s", what, got, want);
	if (!dest)
		return;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
			struct in_pktinfo pi;
			memcpy(&pi, CMSG_DATA(c), sizeof(pi));
			inet_ntop(AF_INET, &pi.ipi_addr, got, sizeof(got));
			if (strcmp(got, dest))
				cr_fail("%s: sent to %s, expected %s", what, got, dest);
			return;
		}
	}
	cr_fail("%s: no IP_PKTINFO", what);
}

int main(void)
{
	cr_init();
	cr_fill(big, sizeof(big), 180);
	int S4a = udp_bound(AF_INET, "127.0.0.1", 0), S4b = udp_bound(AF_INET, "127.0.0.2", 0);
	int S6 = udp_bound(AF_INET6, "::1", 1);
	int U4 = udp_bound(AF_INET, "127.0.0.1", 0);
	int W4 = udp_bound(AF_INET, "0.0.0.0", 0);
	int U6 = udp_bound(AF_INET6, "::1", 1);
	int D6 = udp_bound(AF_INET6, "::", 0);
	int C1 = udp_bound(AF_INET, "127.0.0.1", 0), C2 = udp_bound(AF_INET, "127.0.0.1", 0);
	int C3 = udp_bound(AF_INET, "127.0.0.1", 0);
	socklen_t l;
	struct sockaddr_storage a;

	send_to(S4a, U4, NULL, "a-one", 5);
	send_to(S4b, U4, NULL, big, sizeof(big));
	send_to(S4a, U4, NULL, "", 0);
	send_to(S4b, U4, NULL, "b-three", 7);
	sk_setint(W4, IPPROTO_IP, IP_PKTINFO, 1);
	send_to(S4a, W4, "127.0.0.3", "to-dot-3", 8);
	send_to(S4b, W4, "127.0.0.1", "to-dot-1", 8);
	send_to(S6, U6, NULL, "six-1", 5);
	send_to(S6, U6, NULL, "six-2", 5);
	send_to(S4a, D6, "127.0.0.1", "mapped", 6);
	send_to(S6, D6, NULL, "native", 6);
	/* C3: one datagram from S4b, then connected to S4a, which sends one */
	send_to(S4b, C3, NULL, "before-connect", 14);
	a = name_of(S4a, &l);
	DIE_IF(connect(C3, (struct sockaddr *)&a, l), "connect");
	send_to(S4a, C3, NULL, "from-peer", 9);
	a = name_of(C2, &l);
	DIE_IF(connect(C1, (struct sockaddr *)&a, l), "connect");
	a = name_of(C1, &l);
	DIE_IF(connect(C2, (struct sockaddr *)&a, l), "connect");
	DIE_IF(send(C1, "1-to-2 #1", 9, 0) != 9 || send(C1, "1-to-2 #2", 9, 0) != 9, "send");
	DIE_IF(send(C2, "2-to-1", 6, 0) != 6, "send");
	/* U6 has peeked its first datagram with a peek offset: the offset moved past it */
	char pk[8];
	sk_setint(U6, SOL_SOCKET, SO_PEEK_OFF, 0);
	DIE_IF(recv(U6, pk, sizeof(pk), MSG_PEEK | MSG_DONTWAIT) != 5, "peek");

	cr_ready();
	cr_wait();

	CHECK_EQ(sk_getint(U6, SOL_SOCKET, SO_PEEK_OFF), 5, "v6: SO_PEEK_OFF");
	ssize_t r = recv(U6, pk, sizeof(pk), MSG_PEEK | MSG_DONTWAIT);
	if (r != 5 || memcmp(pk, "six-2", 5))
		cr_fail("v6: peek at the offset gave %zd bytes", r);
	expect("v4 #1", U4, S4a, "a-one", 5, NULL);
	expect("v4 #2 (60000 bytes)", U4, S4b, big, sizeof(big), NULL);
	expect("v4 #3 (empty)", U4, S4a, "", 0, NULL);
	expect("v4 #4", U4, S4b, "b-three", 7, NULL);
	expect("wildcard #1", W4, S4a, "to-dot-3", 8, "127.0.0.3");
	expect("wildcard #2", W4, S4b, "to-dot-1", 8, "127.0.0.1");
	expect("v6 #1", U6, S6, "six-1", 5, NULL);
	expect("v6 #2", U6, S6, "six-2", 5, NULL);
	expect("dual-stack #1 (IPv4)", D6, S4a, "mapped", 6, NULL);
	expect("dual-stack #2 (IPv6)", D6, S6, "native", 6, NULL);
	expect("connected #1 (from before connect)", C3, S4b, "before-connect", 14, NULL);
	expect("connected #2", C3, S4a, "from-peer", 9, NULL);
	expect("pair 1 -> 2 #1", C2, C1, "1-to-2 #1", 9, NULL);
	expect("pair 1 -> 2 #2", C2, C1, "1-to-2 #2", 9, NULL);
	expect("pair 2 -> 1", C1, C2, "2-to-1", 6, NULL);
	int all[] = { U4, W4, U6, D6, C1, C2, C3 };
	for (unsigned i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		sk_expect_empty("queue after its datagrams", all[i]);
	/* and they still receive */
	send_to(S4a, U4, NULL, "new", 3);
	if (sk_wait_in(U4, CR_PATIENCE_MS))
		expect("v4: a new datagram", U4, S4a, "new", 3, NULL);
	else
		cr_fail("v4: a new datagram did not arrive");
	cr_finish();
}
