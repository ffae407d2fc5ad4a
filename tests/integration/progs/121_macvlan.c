/*
 * Scenario 121: PID 1 of new PID and network namespaces whose eth1 is a macvlan
 * (bridge mode) on a host device (tests/integration/test_netdev.py makes it and
 * then creates the file "configured"): a given MAC and MTU, 10.121.0.2/24.  The
 * program listens on TCP port 7121.  Before the dump and after the signal it
 * checks eth1 (index, MAC, MTU, up with carrier, address) from inside; after the
 * signal it answers "pong" to the "ping" of a connection the host made after
 * the restore.
 */
#include "net_common.h"

#define PORT 7121
#define MAC "\x02\x00\x00\x01\x21\x02"
#define MTU 1400

static int check_network(const char *when, int *ifindex)
{
	int ok = check_device(when, "eth1", MAC, MTU, ifindex);
	ok &= CHECK(has_address("eth1", AF_INET, "10.121.0.2", 24), "%s: no 10.121.0.2/24 on eth1", when);
	return ok;
}

int main(void)
{
	int ifindex = 0;
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(PORT) };
	cr_init();
	DIE_IF(getpid() != 1, "not the init of a PID namespace");
	DIE_IF(setsid() < 0, "setsid");
	wait_configured();
	DIE_IF(!check_network("before the dump", &ifindex), "network not as expected before the dump");
	int l = socket(AF_INET, SOCK_STREAM, 0);
	DIE_IF(bind(l, (struct sockaddr *)&a, sizeof(a)) || listen(l, 8), "listen");
	cr_ready();
	cr_wait();

	check_network("after the restore", &ifindex);
	if (CHECK(sk_wait_in(l, CR_PATIENCE_MS), "no connection on the listener")) {
		int n = accept(l, NULL, NULL);
		sk_expect_msg("ping", n, "ping", 4);
		sk_send_all(n, "pong", 4);
		close(n);
	}
	cr_finish();
}
