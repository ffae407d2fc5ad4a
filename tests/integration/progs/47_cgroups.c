/* Scenario 47: cgroup membership.  The test starts this program inside cgroups
 * of its own (cgroup2 and the v1 pids hierarchy) and removes them after the
 * dump.  The program and a child record /proc/self/cgroup; after the signal
 * both must be back in exactly the same cgroups. */
#include "common.h"

static void read_cgroups(char *buf, size_t size)
{
	int fd = open("/proc/self/cgroup", O_RDONLY);
	DIE_IF(fd < 0, "open /proc/self/cgroup");
	ssize_t n = read(fd, buf, size - 1);
	DIE_IF(n <= 0, "read /proc/self/cgroup");
	buf[n] = 0;
	close(fd);
}

static void check_same(const char *before)
{
	char now[4096];
	read_cgroups(now, sizeof(now));
	CHECK(strcmp(now, before) == 0, "cgroups changed:\n%s---\n%s", before, now);
}

int main(void)
{
	static char mine[4096], childs[4096];
	cr_init();
	read_cgroups(mine, sizeof(mine));
	DIE_IF(!strstr(mine, "lxccr-cg-"), "not started in the test's cgroups:\n%s", mine);
	pid_t c = cr_fork();
	if (c == 0) {
		read_cgroups(childs, sizeof(childs));
		cr_wait();
		check_same(childs);
		cr_child_exit();
	}
	cr_ready();
	cr_wait();
	check_same(mine);
	kill(c, SIGUSR1);
	int st;
	CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0, "child failed (%#x)", st);
	cr_finish();
}
