/* Scenario 48: a tree with a cgroup namespace of its own (unshare -pf --cgroup), rooted at
 * its cgroups, as LXC makes containers.  Root and child see every cgroup path as "/" and
 * the same hierarchies before and after; a check after the signal proves the restored
 * namespace is rooted where the tree is again (paths would show ".." or the host path
 * otherwise). */
#include "common.h"

static char before[4096];

static void check_cgroups(const char *who)
{
	char now[4096];
	CHECK(cr_read_file("/proc/self/cgroup", now, sizeof(now)) > 0, "%s: read /proc/self/cgroup", who);
	CHECK(strcmp(now, before) == 0, "%s: cgroups now\n%s\nwere\n%s", who, now, before);
}

int main(void)
{
	cr_init();
	DIE_IF(getpid() != 1, "not the init of a PID namespace");
	DIE_IF(setsid() < 0, "setsid");
	DIE_IF(cr_read_file("/proc/self/cgroup", before, sizeof(before)) <= 0, "read /proc/self/cgroup");
	for (char *line = strtok(strdup(before), "\n"); line; line = strtok(NULL, "\n")) {
		char *path = strrchr(line, ':');
		DIE_IF(!path || strcmp(path, ":/") != 0, "not at the root of its cgroup namespace: %s", line);
	}
	pid_t c = cr_fork();
	if (c == 0) {
		cr_wait();
		check_cgroups("child");
		cr_child_exit();
	}
	cr_ready();
	cr_wait();
	check_cgroups("root");
	kill(c, SIGUSR1);
	int st;
	CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0, "child failed (%#x)", st);
	cr_finish();
}
