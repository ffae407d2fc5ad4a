/*
 * An established TCP connection to a server outside the tree (the test process,
 * 127.0.0.1:argv[1]).  The server has sent 20000 bytes the program has not
 * read; the program has written until its send queue is full (the server reads
 * nothing yet).  Needs --tcp-established.  After the signal the program reads
 * the server's bytes, then sends "DONE" once the server has read everything
 * and waits for the server's "OK": the server saw nothing but a pause.
 */
#include "sk_common.h"

#define S_LEN 20000

int main(int argc, char **argv)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	cr_init();
	if (argc != 2)
		cr_die("usage: 80_inet_tcp_external PORT");
	a.sin_port = htons((uint16_t)atoi(argv[1]));
	int c = socket(AF_INET, SOCK_STREAM, 0);
	DIE_IF(connect(c, (struct sockaddr *)&a, sizeof(a)), "connect");
	int queued = 0;
	for (int i = 0; i < CR_PATIENCE_LOOPS(10) && queued < S_LEN; i++) {
		cr_sleep_ms(10);
		ioctl(c, FIONREAD, &queued);
	}
	DIE_IF(queued != S_LEN, "the server's %d bytes did not arrive (%d)", S_LEN, queued);
	size_t sent = sk_fill(c, 0x80A, 0, 64 << 20);
	cr_sleep_ms(100);
	sent += sk_fill(c, 0x80A, sent, 64 << 20);
	cr_sleep_ms(100);
	cr_info("sent %zu", sent);
	cr_ready();
	cr_wait();

	sk_expect_stream("data from the server", c, 0x80B, 0, S_LEN);
	sk_expect_empty("after the server's data", c);
	sk_nonblock(c, 0);
	sk_send_all(c, "DONE", 4);
	sk_expect_msg("server's answer", c, "OK", 2);
	cr_finish();
}
