/*
 * A socket of a family lxc-cr does not carry (argv[1]: "netlink" or "packet"):
 * the dump must refuse it, naming the kind, the process and the fd.  After the
 * signal (the refused dump left it running) the socket is still there.
 */
#include "sk_common.h"
#include <linux/netlink.h>
#include <linux/if_ether.h>

int main(int argc, char **argv)
{
	cr_init();
	if (argc != 2)
		cr_die("usage: 82_sock_unsupported netlink|packet");
	int fd = !strcmp(argv[1], "netlink") ? socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE)
					     : socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
	if (fd < 0)
		cr_skip("cannot create a %s socket (errno %d)", argv[1], errno);
	cr_info("fd %d", fd);
	cr_ready();
	cr_wait();
	CHECK_EQ(sk_getint(fd, SOL_SOCKET, SO_DOMAIN), !strcmp(argv[1], "netlink") ? AF_NETLINK : AF_PACKET,
		 "SO_DOMAIN");
	cr_finish();
}
