/* Scenario 58: pidfds into the tree.
 * P1: a live child C1 (waits, then exits 3); a second child C2 inherits P1.
 * PZ: a zombie child Z (exited 7, not waited for), PIDFD_NONBLOCK.
 * PR: a child that exited and was reaped (fdinfo Pid: -1).
 * PS: the root itself, watched by an epoll (data 0x5e1f).
 * After the signal: fdinfo names the same processes; PZ is readable and
 * waitid(P_PIDFD) gives Z's status 7; PR is readable and signals to it fail
 * with ESRCH; the epoll has its watch on PS; pidfd_send_signal(P1, SIGUSR1)
 * ends C1, waitid(P_PIDFD, P1) gives 3; C2 signals C1 through its P1. */
#include "common.h"
#include <poll.h>
#include <sys/epoll.h>

#ifndef PIDFD_NONBLOCK
#define PIDFD_NONBLOCK O_NONBLOCK
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif

static int pidfd_open(pid_t pid, unsigned flags) { return (int)syscall(SYS_pidfd_open, pid, flags); }
static int pidfd_send_signal(int fd, int sig) { return (int)syscall(SYS_pidfd_send_signal, fd, sig, NULL, 0); }

static long fdinfo_pid(int fd)
{
	char path[64], v[64];
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	if (cr_status_field(path, "Pid", v, sizeof(v)))
		return -1000;
	return strtol(v, NULL, 10);
}

static int readable(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

int main(void)
{
	cr_init();
	pid_t c1 = cr_fork();
	if (c1 == 0) {
		cr_wait();
		_exit(3);
	}
	int P1 = pidfd_open(c1, 0);
	DIE_IF(P1 < 0, "pidfd_open C1");
	pid_t c2 = cr_fork();
	if (c2 == 0) {
		cr_sync_post("c2");
		cr_wait();
		CHECK(fdinfo_pid(P1) == c1, "c2: its P1 names %ld, expected %d", fdinfo_pid(P1), (int)c1);
		CHECK(pidfd_send_signal(P1, 0) == 0, "c2: signal through P1: %s", strerror(errno));
		cr_child_exit();
	}
	pid_t z = cr_fork();
	if (z == 0)
		_exit(7);
	int PZ = pidfd_open(z, PIDFD_NONBLOCK);
	DIE_IF(PZ < 0, "pidfd_open Z");
	siginfo_t si;
	DIE_IF(waitid(P_PID, (id_t)z, &si, WEXITED | WNOWAIT), "waitid Z");   /* a zombie now */
	pid_t r = cr_fork();
	if (r == 0)
		_exit(0);
	int PR = pidfd_open(r, 0);
	DIE_IF(PR < 0, "pidfd_open R");
	cr_waitpid(r, NULL, 0);
	int PS = pidfd_open(getpid(), 0);
	int ep = epoll_create1(0);
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 0x5e1f };
	DIE_IF(PS < 0 || ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, PS, &ev), "pidfd of self");
	cr_sync_wait("c2");
	cr_ready();
	cr_wait();

	CHECK_EQ(fdinfo_pid(P1), c1, "P1 process");
	CHECK_EQ(fdinfo_pid(PZ), z, "PZ process");
	CHECK_EQ(fdinfo_pid(PR), -1, "PR process");
	CHECK_EQ(fdinfo_pid(PS), getpid(), "PS process");
	CHECK_EQ(fcntl(PZ, F_GETFL) & O_NONBLOCK, O_NONBLOCK, "PZ O_NONBLOCK");
	CHECK_EQ(fcntl(P1, F_GETFL) & O_NONBLOCK, 0, "P1 O_NONBLOCK");
	CHECK(!readable(P1), "P1 readable: C1 has exited");
	CHECK(readable(PZ), "PZ not readable: Z has not exited");
	CHECK(readable(PR), "PR not readable");
	CHECK(pidfd_send_signal(PR, 0) < 0 && errno == ESRCH, "signal to the reaped process: %s", strerror(errno));
	char path[64], buf[512];
	int tfd = -1;
	unsigned events = 0;
	unsigned long long data = 0;
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", ep);
	CHECK(cr_read_file(path, buf, sizeof(buf)) > 0 && strstr(buf, "tfd:") &&
	      sscanf(strstr(buf, "tfd:"), "tfd: %d events: %x data: %llx", &tfd, &events, &data) == 3 &&
	      tfd == PS && events == (EPOLLIN | EPOLLERR | EPOLLHUP) && data == 0x5e1f, "epoll watch on PS: %s", buf);
	struct epoll_event got;
	CHECK(epoll_wait(ep, &got, 1, 0) == 0, "epoll reports the live root as exited");

	memset(&si, 0, sizeof(si));
	CHECK(waitid(P_PIDFD, (id_t)PZ, &si, WEXITED) == 0 && si.si_pid == z && si.si_status == 7,
	      "waitid(PZ): pid %d status %d (%s)", si.si_pid, si.si_status, strerror(errno));
	kill(c2, SIGUSR1);
	cr_expect_exit(c2, 0, "c2");
	CHECK(pidfd_send_signal(P1, SIGUSR1) == 0, "pidfd_send_signal(P1): %s", strerror(errno));
	memset(&si, 0, sizeof(si));
	int w;
	do
		w = waitid(P_PIDFD, (id_t)P1, &si, WEXITED);
	while (w < 0 && errno == EINTR);
	CHECK(w == 0 && si.si_pid == c1 && si.si_status == 3, "waitid(P1): pid %d status %d (%s)", si.si_pid,
	      si.si_status, strerror(errno));
	cr_finish();
}
