/*
 * Scenario 120: PID 1 of new PID, UTS and network namespaces whose eth0 is the
 * inner end of a veth pair on a host bridge (tests/integration/test_netdev.py
 * sets it up from outside and then creates the file "configured"): eth0 with
 * a given MAC and MTU, 10.120.0.2/24 and fd42:120::2/64, a route to
 * 10.122.0.0/16 via 10.120.0.1, an IPv6 default route via fd42:120::1, and
 * changed sysctls.  The program listens on TCP port 7120 and takes one
 * connection from the host, on which both sides leave unread data.
 *
 * Before the dump and after the signal it checks, from inside, the device
 * (index, MAC, MTU, up with carrier), addresses, routes and sysctls.  After the
 * signal it reads the host's bytes, answers "pong" to a "ping" on a new
 * connection the host made to the listener after the restore, sends "DONE" on
 * the first connection and waits for "OK" (the host read every byte).
 */
#include "net_common.h"

#define PORT 7120
#define MAC "\x02\x00\x00\x01\x20\x02"
#define MTU 1400
#define H_LEN 20000 /* bytes the host sent, unread until the end */
#define SEED_HOST 0x120A
#define SEED_PROG 0x120B
#define PORT_RANGE "20120\t30120"

struct state {
	int ifindex;
};

static int has_route4(const char *dst, const char *gw)
{
	char buf[8192];
	read_file("/proc/net/route", buf, sizeof(buf));
	struct in_addr d, g;
	inet_pton(AF_INET, dst, &d);
	inet_pton(AF_INET, gw, &g);
	for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
		char dev[32];
		unsigned int ld, lg;
		if (sscanf(line, "%31s %x %x", dev, &ld, &lg) == 3 && !strcmp(dev, "eth0") && ld == d.s_addr &&
		    lg == g.s_addr)
			return 1;
	}
	return 0;
}

static int has_default_route6(const char *hex_gw)
{
	char buf[16384], want[128];
	read_file("/proc/net/ipv6_route", buf, sizeof(buf));
	snprintf(want, sizeof(want), "00000000000000000000000000000000 00 00000000000000000000000000000000 00 %s",
		 hex_gw);
	for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n"))
		if (!strncmp(line, want, strlen(want)) && strstr(line, " eth0"))
			return 1;
	return 0;
}

static int check_network(const char *when, struct state *st)
{
	int ok = check_device(when, "eth0", MAC, MTU, &st->ifindex);
	char buf[256];
	ok &= CHECK(has_address("eth0", AF_INET, "10.120.0.2", 24), "%s: no 10.120.0.2/24 on eth0", when);
	ok &= CHECK(has_address("eth0", AF_INET6, "fd42:120::2", 64), "%s: no fd42:120::2/64 on eth0", when);
	ok &= CHECK(has_route4("10.122.0.0", "10.120.0.1"), "%s: no route to 10.122.0.0 via 10.120.0.1", when);
	ok &= CHECK(has_default_route6("fd420120000000000000000000000001"), "%s: no IPv6 default route", when);
	read_file("/proc/sys/net/ipv4/ip_local_port_range", buf, sizeof(buf));
	ok &= CHECK(!strcmp(buf, PORT_RANGE), "%s: ip_local_port_range is \"%s\"", when, buf);
	read_file("/proc/sys/net/ipv4/conf/eth0/arp_ignore", buf, sizeof(buf));
	ok &= CHECK(!strcmp(buf, "2"), "%s: eth0 arp_ignore is %s", when, buf);
	gethostname(buf, sizeof(buf));
	ok &= CHECK(!strcmp(buf, "net120"), "%s: hostname %s", when, buf);
	return ok;
}

int main(void)
{
	struct state st = { 0 };
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(PORT) };
	cr_init();
	DIE_IF(getpid() != 1, "not the init of a PID namespace");
	DIE_IF(setsid() < 0, "setsid");
	DIE_IF(sethostname("net120", 6), "sethostname");
	wait_configured();
	DIE_IF(!check_network("before the dump", &st), "network not as expected before the dump");

	int l = socket(AF_INET, SOCK_STREAM, 0);
	sk_setint(l, SOL_SOCKET, SO_REUSEADDR, 1);
	DIE_IF(bind(l, (struct sockaddr *)&a, sizeof(a)) || listen(l, 8), "listen");
	cr_info("listening");
	DIE_IF(!sk_wait_in(l, 30000), "no connection from the host");
	int c = accept(l, NULL, NULL);
	DIE_IF(c < 0, "accept");
	int queued = 0;
	for (int i = 0; i < CR_PATIENCE_LOOPS(10) && queued < H_LEN; i++) {
		cr_sleep_ms(10);
		ioctl(c, FIONREAD, &queued);
	}
	DIE_IF(queued != H_LEN, "the host's %d bytes did not arrive (%d)", H_LEN, queued);
	size_t sent = sk_fill(c, SEED_PROG, 0, 4 << 20);
	cr_sleep_ms(100);
	sent += sk_fill(c, SEED_PROG, sent, 4 << 20);
	cr_info("sent %zu", sent);
	cr_ready();
	cr_wait();

	check_network("after the restore", &st);
	sk_expect_stream("data from the host", c, SEED_HOST, 0, H_LEN);
	sk_expect_empty("after the host's data", c);
	if (CHECK(sk_wait_in(l, CR_PATIENCE_MS), "no new connection on the listener")) {
		int n = accept(l, NULL, NULL);
		sk_expect_msg("ping on the new connection", n, "ping", 4);
		sk_send_all(n, "pong", 4);
		close(n);
	}
	sk_nonblock(c, 0);
	sk_send_all(c, "DONE", 4);
	sk_expect_msg("host's answer", c, "OK", 2);
	cr_finish();
}
