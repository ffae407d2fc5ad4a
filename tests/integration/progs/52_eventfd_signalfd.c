/* Scenario 52: eventfd and signalfd with something to read.
 * E1: counter 0x123456789abcdef (above 32 bits), blocking.
 * E2: EFD_SEMAPHORE | EFD_NONBLOCK, counter 3.
 * E3: counter 0; a child sharing it is blocked in read() at dump time.
 * S1: signalfd for SIGUSR2 and SIGRTMIN+1, SFD_NONBLOCK; SIGUSR2 and two
 *     SIGRTMIN+1 (values 42, 43) are pending.  S2: signalfd for SIGUSR2 only.
 * After the signal: flags, the fdinfo masks; E1 reads its counter once; E2
 * gives 1, 1, 1 then EAGAIN; the signals come out of S1 in order with their
 * values, then EAGAIN; the parent adds 7 to E3 and the child reads 7. */
#include "common.h"
#include <sys/eventfd.h>
#include <sys/signalfd.h>

static unsigned long long fdinfo_hex(int fd, const char *key)
{
	char path[64], value[128];
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	if (cr_status_field(path, key, value, sizeof(value)))
		return ~0ull;
	return strtoull(value, NULL, 16);
}

int main(void)
{
	cr_init();
	int E1 = eventfd(0, 0);
	int E2 = eventfd(3, EFD_SEMAPHORE | EFD_NONBLOCK);
	int E3 = eventfd(0, 0);
	DIE_IF(E1 < 0 || E2 < 0 || E3 < 0, "eventfd");
	uint64_t v = 0x123456789abcdefull;
	DIE_IF(write(E1, &v, 8) != 8, "write E1");

	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR2);
	sigaddset(&set, SIGRTMIN + 1);
	DIE_IF(sigprocmask(SIG_BLOCK, &set, NULL), "sigprocmask");
	int S1 = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	sigset_t only2;
	sigemptyset(&only2);
	sigaddset(&only2, SIGUSR2);
	int S2 = signalfd(-1, &only2, 0);
	DIE_IF(S1 < 0 || S2 < 0, "signalfd");

	pid_t child = cr_fork();
	if (child == 0) {
		uint64_t got = 0;
		cr_sync_post("child");
		ssize_t r;
		do
			r = read(E3, &got, 8);
		while (r < 0 && errno == EINTR);
		CHECK(r == 8 && got == 7, "child: read E3 gave %zd, value %llu", r, (unsigned long long)got);
		cr_child_exit();
	}
	cr_sync_wait("child");
	cr_wait_in_syscall(child, child, SYS_read, 2000);
	DIE_IF(kill(getpid(), SIGUSR2), "kill");
	union sigval sv = { .sival_int = 42 };
	DIE_IF(sigqueue(getpid(), SIGRTMIN + 1, sv), "sigqueue");
	sv.sival_int = 43;
	DIE_IF(sigqueue(getpid(), SIGRTMIN + 1, sv), "sigqueue");
	cr_ready();
	cr_wait();

	CHECK_EQ(fcntl(E1, F_GETFL) & (O_NONBLOCK | O_ACCMODE), O_RDWR, "E1 flags");
	CHECK_EQ(fcntl(E2, F_GETFL) & (O_NONBLOCK | O_ACCMODE), O_RDWR | O_NONBLOCK, "E2 flags");
	CHECK_EQ(fdinfo_hex(E1, "eventfd-count"), 0x123456789abcdefull, "E1 counter in fdinfo");
	CHECK_EQ(fdinfo_hex(E2, "eventfd-semaphore"), 1, "E2 semaphore mode");
	CHECK_EQ(fdinfo_hex(E1, "eventfd-semaphore"), 0, "E1 semaphore mode");
	CHECK(read(E1, &v, 8) == 8 && v == 0x123456789abcdefull, "E1 read %llx", (unsigned long long)v);
	for (int i = 0; i < 3; i++)
		CHECK(read(E2, &v, 8) == 8 && v == 1, "E2 read %d gave %llu", i, (unsigned long long)v);
	CHECK(read(E2, &v, 8) < 0 && errno == EAGAIN, "E2 not empty after 3 reads");

	CHECK_EQ(fdinfo_hex(S1, "sigmask"), (1ull << (SIGUSR2 - 1)) | (1ull << (SIGRTMIN + 1 - 1)), "S1 mask");
	CHECK_EQ(fdinfo_hex(S2, "sigmask"), 1ull << (SIGUSR2 - 1), "S2 mask");
	CHECK_EQ(fcntl(S1, F_GETFL) & O_NONBLOCK, O_NONBLOCK, "S1 O_NONBLOCK");
	CHECK_EQ(fcntl(S2, F_GETFL) & O_NONBLOCK, 0, "S2 O_NONBLOCK");
	CHECK_EQ(fcntl(S1, F_GETFD), FD_CLOEXEC, "S1 close-on-exec");
	struct signalfd_siginfo si;
	int want[3] = { SIGUSR2, SIGRTMIN + 1, SIGRTMIN + 1 };
	int vals[3] = { 0, 42, 43 };
	for (int i = 0; i < 3; i++) {
		ssize_t r = read(S1, &si, sizeof(si));
		if (r != sizeof(si)) {
			cr_fail("S1 read %d returned %zd (%s)", i, r, strerror(errno));
			break;
		}
		CHECK((int)si.ssi_signo == want[i], "S1 read %d: signal %u, expected %d", i, si.ssi_signo, want[i]);
		if (i)
			CHECK(si.ssi_int == vals[i], "S1 read %d: value %d, expected %d", i, si.ssi_int, vals[i]);
	}
	CHECK(read(S1, &si, sizeof(si)) < 0 && errno == EAGAIN, "S1 has more signals");

	v = 7;
	CHECK(write(E3, &v, 8) == 8, "write E3");
	kill(child, SIGUSR1);
	cr_expect_exit(child, 0, "child");
	cr_finish();
}
