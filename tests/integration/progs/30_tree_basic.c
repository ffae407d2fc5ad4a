/* Scenario 30: a small process tree.
 * root -> c1, c2, c3; c2 -> g (grandchild).  Every process records its pid
 * and its parent's pid before the dump.
 * After the signal: each checks getpid()/getppid(); root checks
 * /proc/self/task/<pid>/children lists exactly c1 c2 c3; c2 checks it lists g.
 * c2 forwards the signal to g and reaps it (exit 21); root reaps c1/c2/c3
 * with their distinct exit codes 11/12/13. */
#include "common.h"

static int children_of(pid_t pid, pid_t *out, int max)
{
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)pid, (int)pid);
	if (cr_read_file(path, buf, sizeof(buf)) < 0)
		return -1;
	int n = 0;
	for (char *p = buf; *p && n < max;) {
		char *end;
		long v = strtol(p, &end, 10);
		if (end == p)
			break;
		out[n++] = (pid_t)v;
		p = end;
	}
	return n;
}

static int has(const pid_t *a, int n, pid_t x)
{
	for (int i = 0; i < n; i++)
		if (a[i] == x)
			return 1;
	return 0;
}

static void check_ids(const char *who, pid_t me, pid_t parent)
{
	CHECK(getpid() == me, "%s: getpid %d, was %d", who, (int)getpid(), (int)me);
	CHECK(getppid() == parent, "%s: getppid %d, expected %d", who, (int)getppid(), (int)parent);
}

int main(void)
{
	cr_init();
	pid_t root = getpid();
	pid_t c[3];
	for (int i = 0; i < 3; i++) {
		c[i] = cr_fork();
		if (c[i] == 0) {
			char who[16];
			snprintf(who, sizeof(who), "c%d", i + 1);
			pid_t me = getpid(), g = 0;
			if (i == 1) {
				g = cr_fork();
				if (g == 0) {
					pid_t gm = getpid();
					cr_sync_post("g");
					cr_wait();
					check_ids("g", gm, me);
					_exit(cr_failed() ? 1 : 21);
				}
				cr_sync_wait("g");
			}
			cr_sync_post(who);
			cr_wait();
			check_ids(who, me, root);
			if (g) {
				pid_t kids[8];
				int n = children_of(me, kids, 8);
				CHECK(n == 1 && kids[0] == g, "c2: children file lists %d entries, expected [%d]", n, (int)g);
				kill(g, SIGUSR1);
				cr_expect_exit(g, 21, "grandchild g");
			}
			_exit(cr_failed() ? 1 : 11 + i);
		}
	}
	cr_sync_wait("c1");
	cr_sync_wait("c2");
	cr_sync_wait("c3");
	cr_ready();
	cr_wait();
	/* the root's parent is whoever reaps it (the harness, a subreaper) */
	CHECK(getpid() == root, "root: getpid %d, was %d", (int)getpid(), (int)root);
	pid_t kids[8];
	int n = children_of(root, kids, 8);
	CHECK(n == 3 && has(kids, n, c[0]) && has(kids, n, c[1]) && has(kids, n, c[2]),
	      "root: children file lists %d entries, expected c1 c2 c3 (%d %d %d)", n, (int)c[0], (int)c[1],
	      (int)c[2]);
	for (int i = 0; i < 3; i++)
		kill(c[i], SIGUSR1);
	cr_expect_exit(c[0], 11, "c1");
	cr_expect_exit(c[1], 12, "c2");
	cr_expect_exit(c[2], 13, "c3");
	int st;
	errno = 0;
	CHECK(waitpid(-1, &st, WNOHANG) == -1 && errno == ECHILD, "root has unexpected extra children");
	cr_finish();
}
