/*
 * Helpers for the network device scenarios (120-139): what a program sees of
 * its network namespace's devices and addresses from inside.
 */
#ifndef CR_NET_COMMON_H
#define CR_NET_COMMON_H

#include "sk_common.h"
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>

/* A small file's content, without its final newline ("" if unreadable). */
static __attribute__((unused)) void read_file(const char *path, char *buf, size_t n)
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

/* Is address text/prefix on device dev? */
static __attribute__((unused)) int has_address(const char *dev, int family, const char *text, int prefix)
{
	struct ifaddrs *list, *i;
	unsigned char want[16], mask[16];
	int found = 0;
	DIE_IF(getifaddrs(&list), "getifaddrs");
	inet_pton(family, text, want);
	for (i = list; i; i = i->ifa_next) {
		if (!i->ifa_addr || i->ifa_addr->sa_family != family || strcmp(i->ifa_name, dev))
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

/* Device dev is up with carrier, with this MAC and MTU, and keeps its index (*ifindex: 0 the
 * first time, when it is recorded). */
static __attribute__((unused)) int check_device(const char *when, const char *dev, const char *mac, int mtu,
						int *ifindex)
{
	int ok = 1, s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	strcpy(ifr.ifr_name, dev);
	ok &= CHECK(ioctl(s, SIOCGIFINDEX, &ifr) == 0, "%s: no %s", when, dev);
	if (*ifindex)
		ok &= CHECK(ifr.ifr_ifindex == *ifindex, "%s: %s has index %d, was %d", when, dev, ifr.ifr_ifindex,
			    *ifindex);
	*ifindex = ifr.ifr_ifindex;
	ok &= CHECK(ioctl(s, SIOCGIFFLAGS, &ifr) == 0 && (ifr.ifr_flags & IFF_UP) && (ifr.ifr_flags & IFF_RUNNING),
		    "%s: %s is not up with carrier (flags %#x)", when, dev, ifr.ifr_flags);
	ok &= CHECK(ioctl(s, SIOCGIFMTU, &ifr) == 0 && ifr.ifr_mtu == mtu, "%s: %s MTU %d", when, dev, ifr.ifr_mtu);
	ok &= CHECK(ioctl(s, SIOCGIFHWADDR, &ifr) == 0 && !memcmp(ifr.ifr_hwaddr.sa_data, mac, 6),
		    "%s: %s has another MAC address", when, dev);
	close(s);
	return ok;
}

/* Wait (up to 30 s) for the file the test creates once it has configured the namespace. */
static __attribute__((unused)) void wait_configured(void)
{
	cr_info("waiting");
	for (int i = 0; access("configured", F_OK); i++) {
		DIE_IF(i > 3000, "the test did not configure the network");
		cr_sleep_ms(10);
	}
}

#endif /* CR_NET_COMMON_H */
