/*
 * A TCP listener with a connection from outside (the test) waiting to be
 * accepted.  The dump refuses it without --skip-in-flight; with it the waiting
 * connection is left out.  After the signal the program connects to its own
 * listener, accepts every waiting connection, logs "# accepted N" and checks
 * that its own connection works.
 */
#include "sk_common.h"

int main(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(a);
	cr_init();
	int l = socket(AF_INET, SOCK_STREAM, 0);
	DIE_IF(bind(l, (struct sockaddr *)&a, al) || listen(l, 4), "listen");
	getsockname(l, (struct sockaddr *)&a, &al);
	cr_info("port %d", ntohs(a.sin_port));
	cr_ready();
	cr_wait();

	int c = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in mine;
	socklen_t ml = sizeof(mine);
	DIE_IF(connect(c, (struct sockaddr *)&a, al), "connect");
	getsockname(c, (struct sockaddr *)&mine, &ml);
	cr_sleep_ms(50);
	sk_nonblock(l, 1);
	int n = 0, own = -1, s;
	while ((s = accept(l, NULL, NULL)) >= 0) {
		struct sockaddr_in peer;
		socklen_t pl = sizeof(peer);
		getpeername(s, (struct sockaddr *)&peer, &pl);
		if (peer.sin_port == mine.sin_port)
			own = s;
		n++;
	}
	cr_info("accepted %d", n);
	if (own < 0) {
		cr_fail("own connection not accepted");
	} else {
		sk_send_all(c, "mine", 4);
		sk_expect_msg("own connection", own, "mine", 4);
	}
	cr_finish();
}
