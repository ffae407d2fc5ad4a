/* Scenario 61: a pidfd on a process outside the tree is refused.
 * The root holds a pidfd of its parent (the test runner), prints its number
 * and the parent's PID, and after the signal checks that the pidfd still
 * names its parent: the refused dump changed nothing. */
#include "common.h"

int main(void)
{
	cr_init();
	pid_t parent = getppid();
	int fd = (int)syscall(SYS_pidfd_open, parent, 0);
	DIE_IF(fd < 0, "pidfd_open");
	cr_info("pidfd=%d parent=%d", fd, (int)parent);
	cr_ready();
	cr_wait();
	char path[64], v[64];
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	CHECK(cr_status_field(path, "Pid", v, sizeof(v)) == 0 && atoi(v) == parent, "pidfd names %s", v);
	CHECK(syscall(SYS_pidfd_send_signal, fd, 0, NULL, 0) == 0, "pidfd_send_signal: %s", strerror(errno));
	cr_finish();
}
