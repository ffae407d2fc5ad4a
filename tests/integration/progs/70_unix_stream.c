/*
 * Unix stream sockets: a socketpair shared by parent and child with data queued
 * in both directions, a pair with one side shut down for writing, and a socket
 * whose peer was closed with data still queued.  After the signal every byte
 * arrives exactly once and in order, shutdown and EOF are as before, the
 * connection still carries new data, and options set before are still set.
 */
#include "sk_common.h"

#define A_LEN 100000            /* parent -> child, queued in the child's end */
#define B_LEN 80000             /* child -> parent */
#define T_LEN 5000              /* written before shutdown(SHUT_WR) */
#define D_LEN 3000              /* left by a peer that closed */

static void child(int fd)
{
	cr_sync_wait("c70go");
	DIE_IF(sk_fill(fd, 0x70B, 0, B_LEN) != B_LEN, "fill B");
	cr_sync_post("c70");
	cr_wait();
	CHECK_EQ(sk_getint(fd, SOL_SOCKET, SO_TYPE), SOCK_STREAM, "child: SO_TYPE");
	sk_expect_stream("child: data from parent", fd, 0x70A, 0, A_LEN);
	/* the parent sends "ping" once it has checked its own queue: right after A */
	char buf[8] = { 0 };
	if (!sk_wait_in(fd, CR_PATIENCE_MS) || recv(fd, buf, 4, 0) != 4 || memcmp(buf, "ping", 4))
		cr_fail("child: no ping (got \"%s\")", buf);
	sk_expect_empty("child: after parent's data", fd);
	sk_send_all(fd, "pong", 4);
	struct timeval tv;
	socklen_t l = sizeof(tv);
	getsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, &l);
	if (tv.tv_sec != 1 || tv.tv_usec != 500000)
		cr_fail("child: SO_RCVTIMEO is %ld.%06ld", (long)tv.tv_sec, (long)tv.tv_usec);
	cr_child_exit();
}

int main(void)
{
	int sp[2], sq[2], dp[2];
	cr_init();
	DIE_IF(socketpair(AF_UNIX, SOCK_STREAM, 0, sp), "socketpair");
	struct timeval tv = { 1, 500000 };
	DIE_IF(setsockopt(sp[1], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), "SO_RCVTIMEO");
	pid_t pid = cr_fork();
	if (pid == 0) {
		close(sp[0]);
		child(sp[1]);
	}
	close(sp[1]);
	sk_setint(sp[0], SOL_SOCKET, SO_SNDBUF, 300000);
	sk_setint(sp[0], SOL_SOCKET, SO_PASSCRED, 1);
	int sndbuf = sk_getint(sp[0], SOL_SOCKET, SO_SNDBUF);
	DIE_IF(sk_fill(sp[0], 0x70A, 0, A_LEN) != A_LEN, "fill A");
	cr_sync_post("c70go");
	cr_sync_wait("c70");

	DIE_IF(socketpair(AF_UNIX, SOCK_STREAM, 0, sq), "socketpair 2");
	DIE_IF(sk_fill(sq[1], 0x70C, 0, T_LEN) != T_LEN, "fill T");
	DIE_IF(shutdown(sq[1], SHUT_WR), "shutdown");
	sk_send_all(sq[0], "back", 4);

	DIE_IF(socketpair(AF_UNIX, SOCK_STREAM, 0, dp), "socketpair 3");
	DIE_IF(sk_fill(dp[1], 0x70D, 0, D_LEN) != D_LEN, "fill D");
	close(dp[1]);

	cr_ready();
	cr_wait();
	kill(pid, SIGUSR1);

	sk_expect_stream("parent: data from child", sp[0], 0x70B, 0, B_LEN);
	sk_expect_empty("parent: after child's data", sp[0]);
	sk_send_all(sp[0], "ping", 4);
	char buf[8] = { 0 };
	if (!sk_wait_in(sp[0], CR_PATIENCE_MS) || recv(sp[0], buf, 4, 0) != 4 || memcmp(buf, "pong", 4))
		cr_fail("parent: no pong (got \"%s\")", buf);
	CHECK_EQ(sk_getint(sp[0], SOL_SOCKET, SO_SNDBUF), sndbuf, "SO_SNDBUF");
	CHECK_EQ(sk_getint(sp[0], SOL_SOCKET, SO_PASSCRED), 1, "SO_PASSCRED");
	CHECK_EQ(sk_getint(sq[0], SOL_SOCKET, SO_PASSCRED), 0, "SO_PASSCRED of another socket");

	sk_expect_stream("shut-down pair: data before shutdown", sq[0], 0x70C, 0, T_LEN);
	sk_expect_eof("shut-down pair: after its data", sq[0]);
	if (send(sq[1], "x", 1, MSG_NOSIGNAL | MSG_DONTWAIT) != -1 || errno != EPIPE)
		cr_fail("shut-down pair: writing after SHUT_WR did not fail with EPIPE (errno %d)", errno);
	if (recv(sq[1], buf, 4, MSG_DONTWAIT) != 4 || memcmp(buf, "back", 4))
		cr_fail("shut-down pair: the other direction lost its data");
	sk_send_all(sq[0], "more", 4);
	if (recv(sq[1], buf, 4, MSG_DONTWAIT) != 4 || memcmp(buf, "more", 4))
		cr_fail("shut-down pair: the other direction no longer carries data");

	sk_expect_stream("closed peer: data left", dp[0], 0x70D, 0, D_LEN);
	sk_expect_eof("closed peer: after its data", dp[0]);
	if (send(dp[0], "x", 1, MSG_NOSIGNAL | MSG_DONTWAIT) != -1 || errno != EPIPE)
		cr_fail("closed peer: writing did not fail with EPIPE (errno %d)", errno);

	cr_expect_exit(pid, 0, "child");
	cr_finish();
}
