/* Scenario 46: a tree with a network namespace of its own, whose loopback
 * device is up with an extra address (set up by the test with `ip` before
 * exec).  Before the dump and after the signal the program checks that lo is
 * up and that a UDP datagram sent to the extra address comes back to it. */
#include "common.h"
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#define EXTRA "127.1.2.3"

static int check_network(void)
{
	int ok = 1;
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	DIE_IF(s < 0, "socket");
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	strcpy(ifr.ifr_name, "lo");
	ok &= CHECK(ioctl(s, SIOCGIFFLAGS, &ifr) == 0 && (ifr.ifr_flags & IFF_UP), "lo is not up");
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(4242) };
	inet_pton(AF_INET, EXTRA, &a.sin_addr);
	ok &= CHECK(bind(s, (struct sockaddr *)&a, sizeof(a)) == 0, "bind %s: %s", EXTRA, strerror(errno));
	ok &= CHECK(sendto(s, "ping", 4, 0, (struct sockaddr *)&a, sizeof(a)) == 4, "sendto: %s", strerror(errno));
	char buf[8] = "";
	ok &= CHECK(recv(s, buf, sizeof(buf), MSG_DONTWAIT) == 4 && memcmp(buf, "ping", 4) == 0,
		    "no datagram back through %s", EXTRA);
	close(s);
	return ok;
}

int main(void)
{
	cr_init();
	DIE_IF(getpid() != 1, "not the init of a PID namespace");
	DIE_IF(setsid() < 0, "setsid");
	DIE_IF(!check_network(), "network not as expected before the dump");
	cr_ready();
	cr_wait();
	check_network();
	cr_finish();
}
