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
#include "sk_common.h"
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>

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

static void read_file(const char *path, char *buf, size_t n)
{
	buf[0] = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	ssize_t r = read(fd, buf, n - 1);
	close(fd);
	buf[r > 0 ? r : 0] = 0;
	if (r > 0 && buf[r - 1] == '\n')
		buf[r - 1] = 0;
}

static int has_address(int family, const char *text, int prefix)
{
	struct ifaddrs *list, *i;
	unsigned char want[16], mask[16];
	int found = 0;
	DIE_IF(getifaddrs(&list), "getifaddrs");
	inet_pton(family, text, want);
	for (i = list; i; i = i->ifa_next) {
		if (!i->ifa_addr || i->ifa_addr->sa_family != family || strcmp(i->ifa_name, "eth0"))
			continue;
		const void *a = family == AF_INET ? (void *)&((struct sockaddr_in *)i->ifa_addr)->sin_addr
						  : (void *)&((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr;
		const void *m = family == AF_INET ? (void *)&((struct sockaddr_in *)i->ifa_netmask)->sin_addr
						  : (void *)&((struct sockaddr_in6 *)i->ifa_netmask)->sin6_addr;
		size_t len = family == AF_INET ? 4 : 16;
		memcpy(mask, m, len);
		int bits = 0;
		for (size_t b = 0; b < len; b++)
			bits += __builtin_popcount(mask[b]);
		if (!memcmp(a, want, len) && bits == prefix)
			found = 1;
	}
	freeifaddrs(list);
	return found;
}

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
	int ok = 1, s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct ifreq ifr;
	char buf[256];
	memset(&ifr, 0, sizeof(ifr));
	strcpy(ifr.ifr_name, "eth0");
	ok &= CHECK(ioctl(s, SIOCGIFINDEX, &ifr) == 0, "%s: no eth0", when);
	if (st->ifindex)
		ok &= CHECK(ifr.ifr_ifindex == st->ifindex, "%s: eth0 has index %d, was %d", when, ifr.ifr_ifindex,
			    st->ifindex);
	st->ifindex = ifr.ifr_ifindex;
	ok &= CHECK(ioctl(s, SIOCGIFFLAGS, &ifr) == 0 && (ifr.ifr_flags & IFF_UP) && (ifr.ifr_flags & IFF_RUNNING),
		    "%s: eth0 is not up with carrier (flags %#x)", when, ifr.ifr_flags);
	ok &= CHECK(ioctl(s, SIOCGIFMTU, &ifr) == 0 && ifr.ifr_mtu == MTU, "%s: eth0 MTU %d", when, ifr.ifr_mtu);
	ok &= CHECK(ioctl(s, SIOCGIFHWADDR, &ifr) == 0 && !memcmp(ifr.ifr_hwaddr.sa_data, MAC, 6),
		    "%s: eth0 has another MAC address", when);
	close(s);
	ok &= CHECK(has_address(AF_INET, "10.120.0.2", 24), "%s: no 10.120.0.2/24 on eth0", when);
	ok &= CHECK(has_address(AF_INET6, "fd42:120::2", 64), "%s: no fd42:120::2/64 on eth0", when);
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
	cr_info("waiting");
	for (int i = 0; access("configured", F_OK); i++) {
		DIE_IF(i > 3000, "the test did not configure the network");
		cr_sleep_ms(10);
	}
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
