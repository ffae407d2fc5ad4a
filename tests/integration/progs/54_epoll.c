/* Scenario 54: epoll watches.
 * ep1 (EPOLL_CLOEXEC, shared with a child) watches:
 *   P[0]  pipe read end, 10 bytes queued, level-triggered, data 0x1111222233334444
 *   P[1]  pipe write end, EPOLLOUT, data 0x77
 *   E     eventfd (count 1), EPOLLIN | EPOLLET, the edge not taken yet, data 0xe
 *   E3    eventfd (count 1), EPOLLIN | EPOLLONESHOT, fired and taken: disarmed
 *   X     a dup of E4 (count 1), registered through X, then X closed: the
 *         watch lives on under a number that no longer exists
 *   ep2   another epoll, itself watching E5 (count 1)
 *   E6    an eventfd (count 1) the child made and added after the fork: in
 *         the parent its number names nothing
 * After the signal: fdinfo lists the same (fd, events, data) watches; one
 * epoll_wait reports exactly P[0], P[1], E, X and ep2 with their data; the
 * edge-triggered E is not reported again; the disarmed E3 is not reported
 * until EPOLL_CTL_MOD re-arms it; the child's ep1 is the parent's. */
#include "common.h"
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <linux/kcmp.h>

struct watch { int tfd; unsigned events; unsigned long long data; };

static int watches(int ep, struct watch *w, int cap)
{
	char path[64], buf[8192];
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", ep);
	if (cr_read_file(path, buf, sizeof(buf)) < 0)
		return -1;
	int n = 0;
	for (char *p = strstr(buf, "tfd:"); p && n < cap; p = strstr(p + 1, "tfd:")) {
		if (sscanf(p, "tfd: %d events: %x data: %llx", &w[n].tfd, &w[n].events, &w[n].data) == 3)
			n++;
	}
	return n;
}

static int cmp_watch(const void *a, const void *b)
{
	const struct watch *x = a, *y = b;
	return x->tfd != y->tfd ? x->tfd - y->tfd : (x->data > y->data) - (x->data < y->data);
}

static void add(int ep, int fd, unsigned events, unsigned long long data)
{
	struct epoll_event ev = { .events = events, .data.u64 = data };
	DIE_IF(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev), "epoll_ctl add %d", fd);
}

static int ready(int ep, struct epoll_event *evs, int cap)
{
	int n;
	do
		n = epoll_wait(ep, evs, cap, 0);
	while (n < 0 && errno == EINTR);
	return n;
}

static int has(struct epoll_event *evs, int n, unsigned long long data, unsigned events)
{
	for (int i = 0; i < n; i++)
		if (evs[i].data.u64 == data)
			return (evs[i].events & events) == events;
	return 0;
}

int main(void)
{
	cr_init();
	int P[2];
	DIE_IF(pipe(P), "pipe");
	DIE_IF(write(P[1], "0123456789", 10) != 10, "write");
	int E = eventfd(1, 0), E3 = eventfd(1, 0), E4 = eventfd(1, 0), E5 = eventfd(1, 0);
	int ep1 = epoll_create1(EPOLL_CLOEXEC), ep2 = epoll_create1(0);
	DIE_IF(E < 0 || E3 < 0 || E4 < 0 || E5 < 0 || ep1 < 0 || ep2 < 0, "create");
	add(ep1, P[0], EPOLLIN, 0x1111222233334444ull);
	add(ep1, P[1], EPOLLOUT, 0x77);
	add(ep1, E, EPOLLIN | EPOLLET, 0xe);
	add(ep1, E3, EPOLLIN | EPOLLONESHOT, 0xe3);
	struct epoll_event evs[16];
	int n = ready(ep1, evs, 16);      /* takes E's edge too: put it back below */
	DIE_IF(!has(evs, n, 0xe3, EPOLLIN), "E3 was not ready");
	uint64_t one = 1;
	DIE_IF(read(E, &one, 8) != 8 || write(E, &one, 8) != 8, "E new edge");
	int X = dup(E4);
	add(ep1, X, EPOLLIN, 0x4444);
	close(X);
	add(ep2, E5, EPOLLIN, 0x55);
	add(ep1, ep2, EPOLLIN, 0x2);

	pid_t parent = getpid();
	pid_t child = cr_fork();
	if (child == 0) {
		int E6 = eventfd(1, 0);
		DIE_IF(E6 < 0, "eventfd");
		add(ep1, E6, EPOLLIN, 0xc6);
		cr_sync_post("child");
		cr_wait();
		CHECK(syscall(SYS_kcmp, getpid(), parent, KCMP_FILE, ep1, ep1) == 0,
		      "child: ep1 is not the parent's");
		cr_child_exit();
	}
	cr_sync_wait("child");
	struct watch before[16], after[16];
	int nb = watches(ep1, before, 16);
	DIE_IF(nb != 7, "ep1 has %d watches in fdinfo", nb);
	qsort(before, (size_t)nb, sizeof(before[0]), cmp_watch);
	cr_ready();
	cr_wait();

	int na = watches(ep1, after, 16);
	CHECK_EQ(na, nb, "number of watches");
	if (na == nb) {
		qsort(after, (size_t)na, sizeof(after[0]), cmp_watch);
		for (int i = 0; i < na; i++)
			CHECK(after[i].tfd == before[i].tfd && after[i].events == before[i].events &&
			      after[i].data == before[i].data,
			      "watch %d: fd %d events %x data %llx, expected fd %d events %x data %llx", i,
			      after[i].tfd, after[i].events, after[i].data, before[i].tfd, before[i].events,
			      before[i].data);
	}
	CHECK_EQ(fcntl(ep1, F_GETFD), FD_CLOEXEC, "ep1 close-on-exec");
	CHECK(fcntl(X, F_GETFD) < 0 && errno == EBADF, "fd %d (closed before the dump) is open", X);

	n = ready(ep1, evs, 16);
	CHECK_EQ(n, 6, "events reported");
	CHECK(has(evs, n, 0xc6, EPOLLIN), "the child's eventfd not reported");
	CHECK(has(evs, n, 0x1111222233334444ull, EPOLLIN), "pipe read end not reported");
	CHECK(has(evs, n, 0x77, EPOLLOUT), "pipe write end not reported");
	CHECK(has(evs, n, 0xe, EPOLLIN), "edge-triggered eventfd not reported");
	CHECK(has(evs, n, 0x4444, EPOLLIN), "watch through a closed number not reported");
	CHECK(has(evs, n, 0x2, EPOLLIN), "nested epoll not reported");
	CHECK(!has(evs, n, 0xe3, 0), "disarmed oneshot watch reported");
	n = ready(ep1, evs, 16);
	CHECK(!has(evs, n, 0xe, 0), "edge-triggered eventfd reported twice");
	CHECK(has(evs, n, 0x1111222233334444ull, EPOLLIN), "level-triggered pipe not reported again");
	struct epoll_event ev = { .events = EPOLLIN | EPOLLONESHOT, .data.u64 = 0xe33 };
	CHECK(epoll_ctl(ep1, EPOLL_CTL_MOD, E3, &ev) == 0, "EPOLL_CTL_MOD E3: %s", strerror(errno));
	n = ready(ep1, evs, 16);
	CHECK(has(evs, n, 0xe33, EPOLLIN), "re-armed oneshot watch not reported");
	n = ready(ep2, evs, 16);
	CHECK(n == 1 && evs[0].data.u64 == 0x55, "ep2 reported %d events", n);
	CHECK(epoll_ctl(ep1, EPOLL_CTL_DEL, P[0], NULL) == 0, "EPOLL_CTL_DEL pipe: %s", strerror(errno));

	kill(child, SIGUSR1);
	cr_expect_exit(child, 0, "child");
	cr_finish();
}
