/*
 * Unix seqpacket sockets: a socketpair with messages queued both ways (an empty
 * one among them) and one side shut down; a listener on an abstract name with a
 * connection it accepted (messages both ways) and one waiting to be accepted.
 * After the signal messages come out whole and in order, the accepted socket
 * still carries the listener's name, the waiting connection can be accepted and
 * the listener takes new ones.
 */
#include "sk_common.h"

int main(void)
{
	int sp[2];
	struct sockaddr_un la, got;
	cr_init();
	DIE_IF(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sp), "socketpair");
	DIE_IF(send(sp[0], "one", 3, 0) != 3 || send(sp[0], "", 0, 0) != 0 || send(sp[0], "three", 5, 0) != 5,
	       "send to sp[1]");
	DIE_IF(send(sp[1], "back", 4, 0) != 4, "send to sp[0]");
	DIE_IF(shutdown(sp[0], SHUT_WR), "shutdown");

	int l = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	socklen_t ll = sk_abstract(&la, "lxcr72-%d", getpid());
	DIE_IF(bind(l, (struct sockaddr *)&la, ll) || listen(l, 4), "listen");
	int c1 = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	DIE_IF(connect(c1, (struct sockaddr *)&la, ll), "connect c1");
	int a1 = accept(l, NULL, NULL);
	DIE_IF(a1 < 0, "accept");
	DIE_IF(send(c1, "c1-msg1", 7, 0) != 7 || send(c1, "c1-msg2", 7, 0) != 7, "c1 send");
	DIE_IF(send(a1, "a1-msg", 6, 0) != 6, "a1 send");
	int c2 = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	DIE_IF(connect(c2, (struct sockaddr *)&la, ll), "connect c2");

	cr_ready();
	cr_wait();

	sk_expect_msg("pair: 1st", sp[1], "one", 3);
	sk_expect_msg("pair: empty message", sp[1], "", 0);
	sk_expect_msg("pair: 3rd", sp[1], "three", 5);
	sk_expect_eof("pair: after the shutdown", sp[1]);
	sk_expect_msg("pair: other way", sp[0], "back", 4);
	sk_expect_empty("pair: other way, after", sp[0]);
	DIE_IF(send(sp[1], "again", 5, 0) != 5, "pair: new");
	sk_expect_msg("pair: new message", sp[0], "again", 5);

	sk_expect_msg("accepted: 1st", a1, "c1-msg1", 7);
	sk_expect_msg("accepted: 2nd", a1, "c1-msg2", 7);
	sk_expect_empty("accepted: after 2", a1);
	sk_expect_msg("client: reply", c1, "a1-msg", 6);
	socklen_t gl = sizeof(got);
	if (getsockname(a1, (struct sockaddr *)&got, &gl) || gl != ll || memcmp(&got, &la, ll))
		cr_fail("accepted: does not carry the listener's name");
	gl = sizeof(got);
	if (getpeername(c1, (struct sockaddr *)&got, &gl) || gl != ll || memcmp(&got, &la, ll))
		cr_fail("client: its peer is no longer named as the listener");

	sk_nonblock(l, 1);
	int a2 = accept(l, NULL, NULL);
	if (a2 < 0) {
		cr_fail("the waiting connection cannot be accepted (errno %d)", errno);
	} else {
		DIE_IF(send(c2, "c2-hello", 8, 0) != 8, "c2 send");
		sk_expect_msg("waiting connection, accepted", a2, "c2-hello", 8);
	}
	if (accept(l, NULL, NULL) >= 0 || errno != EAGAIN)
		cr_fail("more than one connection was waiting (errno %d)", errno);
	int c3 = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	DIE_IF(connect(c3, (struct sockaddr *)&la, ll), "connect c3");
	int a3 = accept(l, NULL, NULL);
	if (a3 < 0)
		cr_fail("the listener takes no new connection (errno %d)", errno);
	else {
		DIE_IF(send(a3, "hi-c3", 5, 0) != 5, "a3 send");
		sk_expect_msg("new connection", c3, "hi-c3", 5);
	}
	cr_finish();
}
