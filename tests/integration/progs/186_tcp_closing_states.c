/*
 * TCP connections caught while closing, both ends in the tree (needs --tcp-established).
 * Each pair is A (the accepted end) and B (the client); B's receive buffer is small.
 *  1: B sent 2000 bytes and shut down, A sent 1000: A CLOSE_WAIT, B FIN_WAIT2.
 *  2: A filled B's buffer and its own send queue, then shut down: A FIN_WAIT1 (its FIN
 *     waits behind the data), B ESTABLISHED.
 *  3: B sent 500 bytes and shut down, then A filled and shut down: A LAST_ACK, B FIN_WAIT2.
 *  4: A filled and shut down, then B sent 300 bytes and shut down: A CLOSING, B FIN_WAIT2.
 *  5: as 1, over ::1.
 * After the signal the states are as before, every byte is read once and in order,
 * EOF comes where a FIN was, a shut-down end cannot send, the open ends still can, and
 * the closing handshakes complete (A of 3 and 4 end CLOSED, A of 2 FIN_WAIT2).
 */
#include "sk_common.h"

#define NPAIRS 5

static const char *names[] = { "?", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT",
			       "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING" };

static int state(int fd)
{
	struct tcp_info ti;
	socklen_t l = sizeof(ti);
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &l))
		return -1;
	return ti.tcpi_state;
}

/* Wait (a guard against hangs only) until fd is in state `want`. */
static int reaches(const char *what, int fd, int want)
{
	int s = -1;
	for (int i = 0; i < CR_PATIENCE_LOOPS(10); i++) {
		s = state(fd);
		if (s == want)
			return 1;
		cr_sleep_ms(10);
	}
	cr_fail("%s: state %s, expected %s", what, s >= 0 && s <= 11 ? names[s] : "?", names[want]);
	return 0;
}

static int A[NPAIRS + 1], B[NPAIRS + 1];
static size_t filled[NPAIRS + 1];

static void pair(int n, int family, int L, const void *addr, socklen_t al)
{
	B[n] = socket(family, SOCK_STREAM, 0);
	DIE_IF(B[n] < 0, "socket");
	sk_setint(B[n], SOL_SOCKET, SO_RCVBUF, 4096);
	DIE_IF(connect(B[n], addr, al), "connect %d", n);
	A[n] = accept(L, NULL, NULL);
	DIE_IF(A[n] < 0, "accept %d", n);
	sk_setint(A[n], SOL_SOCKET, SO_SNDBUF, 8192);
}

/* A fills B's receive buffer and its own send queue (twice, with a pause: the window closes). */
static void fill(int n)
{
	filled[n] = sk_fill(A[n], 0x1830 + (uint64_t)n, 0, 64 << 20);
	cr_sleep_ms(100);
	filled[n] += sk_fill(A[n], 0x1830 + (uint64_t)n, filled[n], 64 << 20);
	DIE_IF(!filled[n], "fill %d", n);
}

static void send_pattern(int fd, uint64_t seed, size_t n)
{
	DIE_IF(sk_fill(fd, seed, 0, n) != n, "send %zu", n);
}

static void expect_eof(const char *what, int fd)
{
	if (!sk_wait_in(fd, CR_PATIENCE_MS)) {
		cr_fail("%s: no EOF", what);
		return;
	}
	sk_expect_eof(what, fd);
}

static void cannot_send(const char *what, int fd)
{
	errno = 0;
	if (send(fd, "x", 1, MSG_NOSIGNAL | MSG_DONTWAIT) != -1 || errno != EPIPE)
		cr_fail("%s: send after shutdown did not fail with EPIPE (errno %d)", what, errno);
}

int main(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct sockaddr_in6 a6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	socklen_t al = sizeof(a), al6 = sizeof(a6);
	cr_init();
	int L = socket(AF_INET, SOCK_STREAM, 0), L6 = socket(AF_INET6, SOCK_STREAM, 0);
	DIE_IF(bind(L, (struct sockaddr *)&a, al) || listen(L, 8), "listen");
	getsockname(L, (struct sockaddr *)&a, &al);
	if (bind(L6, (struct sockaddr *)&a6, al6) || listen(L6, 8))
		cr_skip("no ::1");
	getsockname(L6, (struct sockaddr *)&a6, &al6);
	for (int n = 1; n <= 4; n++)
		pair(n, AF_INET, L, &a, al);
	pair(5, AF_INET6, L6, &a6, al6);
	close(L);
	close(L6);

	for (int n = 1; n <= 5; n += 4) {
		send_pattern(B[n], 0x1831B + (uint64_t)n, 2000);
		send_pattern(A[n], 0x1831A + (uint64_t)n, 1000);
		DIE_IF(shutdown(B[n], SHUT_WR), "shutdown");
	}
	fill(2);
	DIE_IF(shutdown(A[2], SHUT_WR), "shutdown");
	send_pattern(B[3], 0x1833B, 500);
	DIE_IF(shutdown(B[3], SHUT_WR), "shutdown");
	DIE_IF(!reaches("3 A before", A[3], TCP_CLOSE_WAIT), "pair 3");
	fill(3);
	DIE_IF(shutdown(A[3], SHUT_WR), "shutdown");
	fill(4);
	DIE_IF(shutdown(A[4], SHUT_WR), "shutdown");
	send_pattern(B[4], 0x1834B, 300);
	DIE_IF(shutdown(B[4], SHUT_WR), "shutdown");
	const int want_a[] = { 0, TCP_CLOSE_WAIT, TCP_FIN_WAIT1, TCP_LAST_ACK, TCP_CLOSING, TCP_CLOSE_WAIT };
	const int want_b[] = { 0, TCP_FIN_WAIT2, TCP_ESTABLISHED, TCP_FIN_WAIT2, TCP_FIN_WAIT2, TCP_FIN_WAIT2 };
	for (int n = 1; n <= NPAIRS; n++)
		DIE_IF(!reaches("before", A[n], want_a[n]) || !reaches("before", B[n], want_b[n]), "pair %d", n);

	cr_ready();
	cr_wait();

	char what[64];
	for (int n = 1; n <= NPAIRS; n++) {
		snprintf(what, sizeof(what), "pair %d: A", n);
		reaches(what, A[n], want_a[n]);
		snprintf(what, sizeof(what), "pair %d: B", n);
		reaches(what, B[n], want_b[n]);
	}
	/* 1 and 5: A reads B's data then EOF, and can still send; B reads A's data */
	for (int n = 1; n <= 5; n += 4) {
		snprintf(what, sizeof(what), "pair %d: A reads", n);
		sk_expect_stream(what, A[n], 0x1831B + (uint64_t)n, 0, 2000);
		expect_eof(what, A[n]);
		snprintf(what, sizeof(what), "pair %d: B reads", n);
		sk_expect_stream(what, B[n], 0x1831A + (uint64_t)n, 0, 1000);
		sk_expect_empty(what, B[n]);
		cannot_send(what, B[n]);
		sk_send_all(A[n], "more", 4);
		sk_expect_msg(what, B[n], "more", 4);
		DIE_IF(shutdown(A[n], SHUT_WR), "shutdown");
		expect_eof(what, B[n]);
	}
	/* 2, 3, 4: B reads everything A had queued, then EOF */
	for (int n = 2; n <= 4; n++) {
		snprintf(what, sizeof(what), "pair %d: B reads", n);
		sk_expect_stream(what, B[n], 0x1830 + (uint64_t)n, 0, filled[n]);
		expect_eof(what, B[n]);
		snprintf(what, sizeof(what), "pair %d: A", n);
		cannot_send(what, A[n]);
	}
	snprintf(what, sizeof(what), "pair 3: A reads");
	sk_expect_stream(what, A[3], 0x1833B, 0, 500);
	expect_eof(what, A[3]);
	snprintf(what, sizeof(what), "pair 4: A reads");
	sk_expect_stream(what, A[4], 0x1834B, 0, 300);
	expect_eof(what, A[4]);
	sk_send_all(B[2], "last", 4);
	sk_expect_msg("pair 2: A reads", A[2], "last", 4);
	/* the closing handshakes complete */
	reaches("pair 2: A at the end", A[2], TCP_FIN_WAIT2);
	reaches("pair 2: B at the end", B[2], TCP_CLOSE_WAIT);
	reaches("pair 3: A at the end", A[3], TCP_CLOSE);
	reaches("pair 4: A at the end", A[4], TCP_CLOSE);
	for (int n = 1; n <= 5; n += 4) {
		snprintf(what, sizeof(what), "pair %d: A at the end", n);
		reaches(what, A[n], TCP_CLOSE);
	}
	cr_finish();
}
