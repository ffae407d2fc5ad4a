/*
 * Established TCP connections with both ends in the tree: parent holds a
 * listener and the accepted end, a child holds the client.  The client has
 * written until its send queue is full (the server reads nothing: part sits in
 * the server's receive queue, part in the client's send queue, some of it not
 * sent yet); the server has written 30000 bytes the client has not read.  A
 * second connection over ::1 holds a few bytes.  Needs --tcp-established.
 * After the signal every byte arrives once, in order; the connections carry
 * new data; the listener still accepts.
 */
#include "sk_common.h"

#define S_LEN 30000

struct shared {
	size_t c_sent;
};

static void child(struct sockaddr_in *a, struct sockaddr_in6 *a6, struct shared *sh)
{
	int c = socket(AF_INET, SOCK_STREAM, 0);
	DIE_IF(connect(c, (struct sockaddr *)a, sizeof(*a)), "connect");
	int c6 = socket(AF_INET6, SOCK_STREAM, 0);
	DIE_IF(connect(c6, (struct sockaddr *)a6, sizeof(*a6)), "connect v6");
	cr_sync_wait("c79go");
	/* fill until the kernel takes no more, twice with a pause: the window closes */
	sh->c_sent = sk_fill(c, 0x79A, 0, 64 << 20);
	cr_sleep_ms(100);
	sh->c_sent += sk_fill(c, 0x79A, sh->c_sent, 64 << 20);
	sk_send_all(c6, "six", 3);
	cr_sync_post("c79");
	cr_wait();
	sk_expect_stream("client: server's data", c, 0x79B, 0, S_LEN);
	char buf[8] = { 0 };
	if (!sk_wait_in(c, CR_PATIENCE_MS) || recv(c, buf, 4, 0) != 4 || memcmp(buf, "ping", 4))
		cr_fail("client: no ping (\"%s\")", buf);
	sk_expect_empty("client: after ping", c);
	sk_nonblock(c, 0);
	sk_send_all(c, "pong", 4);
	sk_expect_msg("client v6: reply", c6, "xis", 3);
	cr_child_exit();
}

int main(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct sockaddr_in6 a6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	socklen_t al = sizeof(a), al6 = sizeof(a6);
	cr_init();
	struct shared *sh = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	DIE_IF(sh == MAP_FAILED, "mmap");
	int l = socket(AF_INET, SOCK_STREAM, 0);
	sk_setint(l, SOL_SOCKET, SO_RCVBUF, 16384);      /* the accepted socket inherits it */
	DIE_IF(bind(l, (struct sockaddr *)&a, al) || listen(l, 4), "listen");
	getsockname(l, (struct sockaddr *)&a, &al);
	int l6 = socket(AF_INET6, SOCK_STREAM, 0);
	if (l6 < 0 || bind(l6, (struct sockaddr *)&a6, al6))
		cr_skip("no IPv6");
	DIE_IF(listen(l6, 4), "listen v6");
	getsockname(l6, (struct sockaddr *)&a6, &al6);

	pid_t pid = cr_fork();
	if (pid == 0)
		child(&a, &a6, sh);
	int s = accept(l, NULL, NULL), s6 = accept(l6, NULL, NULL);
	DIE_IF(s < 0 || s6 < 0, "accept");
	DIE_IF(sk_fill(s, 0x79B, 0, S_LEN) != S_LEN, "server fill");
	cr_sync_post("c79go");
	cr_sync_wait("c79");
	cr_sleep_ms(100);
	size_t c_sent = sh->c_sent;
	cr_info("client sent %zu bytes", c_sent);

	cr_ready();
	cr_wait();
	kill(pid, SIGUSR1);

	uint64_t t0 = cr_now_ns(CLOCK_MONOTONIC);
	sk_expect_stream("server: client's data", s, 0x79A, 0, c_sent);
	cr_info("server read the client's data in %llu ms", (unsigned long long)((cr_now_ns(CLOCK_MONOTONIC) - t0) / 1000000));
	sk_expect_empty("server: after client's data", s);
	sk_send_all(s, "ping", 4);
	sk_expect_msg("server: pong", s, "pong", 4);
	sk_expect_msg("server v6: data", s6, "six", 3);
	sk_send_all(s6, "xis", 3);
	int c = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(c, (struct sockaddr *)&a, al) || accept(l, NULL, NULL) < 0)
		cr_fail("the listener takes no new connection (errno %d)", errno);
	cr_expect_exit(pid, 0, "client");
	cr_finish();
}
