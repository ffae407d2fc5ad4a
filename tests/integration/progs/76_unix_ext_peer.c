/*
 * Unix sockets connected outside the tree (to the test process): a datagram
 * socket bound to an abstract name and connected to the test's datagram server
 * (argv[1]), holding a message the server sent; a stream socket connected to
 * the test's listener (argv[2]), holding data the server sent.  Without
 * --ext-unix-sk the dump must refuse; with it the datagram socket comes back
 * connected to the same server and the stream socket reads its data, then EOF.
 * The program logs "# stream: EOF" or "# stream: open" for the test to check.
 */
#include "sk_common.h"

int main(int argc, char **argv)
{
	struct sockaddr_un ca, da, sa;
	cr_init();
	if (argc != 3)
		cr_die("usage: 76_unix_ext_peer DGRAM_PATH STREAM_PATH");
	int c = socket(AF_UNIX, SOCK_DGRAM, 0), t = socket(AF_UNIX, SOCK_STREAM, 0);
	DIE_IF(c < 0 || t < 0, "socket");
	socklen_t cl = sk_abstract(&ca, "lxcr76-%d", getpid());
	socklen_t dl = sk_pathaddr(&da, argv[1]), sl = sk_pathaddr(&sa, argv[2]);
	DIE_IF(bind(c, (struct sockaddr *)&ca, cl), "bind");
	DIE_IF(connect(c, (struct sockaddr *)&da, dl), "connect datagram");
	DIE_IF(send(c, "hello-1", 7, 0) != 7, "send hello-1");
	DIE_IF(connect(t, (struct sockaddr *)&sa, sl), "connect stream");

	cr_ready();
	cr_wait();

	sk_expect_msg("datagram: message from the server", c, "to-client", 9);
	sk_expect_empty("datagram: after it", c);
	DIE_IF(send(c, "hello-2", 7, 0) != 7, "send hello-2");
	sk_expect_stream("stream: data from the server", t, 0x76, 0, 1000);
	char x;
	ssize_t r = recv(t, &x, 1, MSG_DONTWAIT);
	if (r == 0)
		cr_info("stream: EOF");
	else if (r < 0 && errno == EAGAIN)
		cr_info("stream: open");
	else
		cr_fail("stream: after the data, recv returned %zd (errno %d)", r, errno);
	cr_finish();
}
