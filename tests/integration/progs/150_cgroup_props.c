/* Scenario 150: cgroup properties (--cgroup-root, --manage-cgroups=full).
 * The test starts this program in cgroups of its own in the v1 pids, memory and
 * cpu hierarchies, named argv[1], with limits; the program puts a child into a
 * cgroup "sub" below them with a lower pids.max.  After the signal both check
 * from inside that they are in cgroups named argv[2] (and argv[2]/sub) in those
 * hierarchies, and that the limits of those cgroups are the ones set before:
 *   argv[3] pids.max, argv[4] memory.limit_in_bytes, argv[5] cpu.shares,
 *   argv[6] pids.max of sub. */
#include "common.h"

static const char *HIER[] = {"pids", "memory", "cpu"};

/* this process's cgroup path in a v1 hierarchy, from /proc/self/cgroup */
static void my_cgroup(const char *hier, char *out, size_t cap)
{
	char buf[4096], *line, *save;
	out[0] = 0;
	DIE_IF(cr_read_file("/proc/self/cgroup", buf, sizeof(buf)) <= 0, "read /proc/self/cgroup");
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *ctrl = strchr(line, ':');
		char *path = ctrl ? strchr(ctrl + 1, ':') : NULL;
		if (!path)
			continue;
		*path = 0;
		char *c, *s2;
		for (c = strtok_r(ctrl + 1, ",", &s2); c; c = strtok_r(NULL, ",", &s2))
			if (strcmp(c, hier) == 0)
				snprintf(out, cap, "%s", path + 1);
	}
}

static void check_value(const char *hier, const char *cg, const char *file, const char *want)
{
	char path[PATH_MAX], buf[256];
	snprintf(path, sizeof(path), "/sys/fs/cgroup/%s%s/%s", hier, cg, file);
	ssize_t n = cr_read_file(path, buf, sizeof(buf));
	while (n > 0 && buf[n - 1] == '\n')
		buf[--n] = 0;
	CHECK(n > 0 && strcmp(buf, want) == 0, "%s is '%s', expected '%s'", path, n > 0 ? buf : "?", want);
}

static void check_place(const char *name, int sub)
{
	char want[PATH_MAX], cg[PATH_MAX];
	snprintf(want, sizeof(want), "/%s%s", name, sub ? "/sub" : "");
	for (unsigned i = 0; i < sizeof(HIER) / sizeof(HIER[0]); i++) {
		my_cgroup(HIER[i], cg, sizeof(cg));
		CHECK(strcmp(cg, want) == 0, "in %s cgroup '%s', expected '%s'", HIER[i], cg, want);
	}
}

int main(int argc, char **argv)
{
	DIE_IF(argc != 7, "usage: %s FROM TO PIDS_MAX MEM_LIMIT CPU_SHARES SUB_PIDS_MAX", argv[0]);
	const char *from = argv[1], *to = argv[2];
	cr_init();
	check_place(from, 0);
	DIE_IF(cr_failed(), "not started in the test's cgroups");
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "/sys/fs/cgroup/pids/%s/sub", from);
	DIE_IF(mkdir(path, 0755) != 0, "mkdir %s", path);
	for (unsigned i = 1; i < sizeof(HIER) / sizeof(HIER[0]); i++) {
		char p2[PATH_MAX];
		snprintf(p2, sizeof(p2), "/sys/fs/cgroup/%s/%s/sub", HIER[i], from);
		DIE_IF(mkdir(p2, 0755) != 0, "mkdir %s", p2);
	}
	snprintf(path, sizeof(path), "/sys/fs/cgroup/pids/%s/sub/pids.max", from);
	cr_write_file(path, argv[6], strlen(argv[6]));
	pid_t c = cr_fork();
	if (c == 0) {
		for (unsigned i = 0; i < sizeof(HIER) / sizeof(HIER[0]); i++) {
			char p2[PATH_MAX];
			snprintf(p2, sizeof(p2), "/sys/fs/cgroup/%s/%s/sub/cgroup.procs", HIER[i], from);
			cr_write_file(p2, "0", 1);
		}
		check_place(from, 1);
		cr_wait();
		check_place(to, 1);
		char sub[PATH_MAX];
		snprintf(sub, sizeof(sub), "/%s/sub", to);
		check_value("pids", sub, "pids.max", argv[6]);
		cr_child_exit();
	}
	cr_ready();
	cr_wait();
	check_place(to, 0);
	char root[PATH_MAX];
	snprintf(root, sizeof(root), "/%s", to);
	check_value("pids", root, "pids.max", argv[3]);
	check_value("memory", root, "memory.limit_in_bytes", argv[4]);
	check_value("cpu", root, "cpu.shares", argv[5]);
	kill(c, SIGUSR1);
	int st;
	CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0, "child failed (%#x)", st);
	cr_finish();
}
