/* Scenario 35: orphans reparented to a subreaper root.
 * The root is a child subreaper.  Child C forks G, G forks H, then C exits
 * and the root reaps it: G is reparented to the root (H stays G's child).
 * After the signal: G checks getppid()==root and exits 3; H, now orphaned
 * after restore, must be reparented to the root as well (the subreaper
 * attribute survived), checks that and exits 5; the root reaps both. */
#include "common.h"

static pid_t first_child_of(pid_t pid)
{
	char path[64], buf[128];
	snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)pid, (int)pid);
	if (cr_read_file(path, buf, sizeof(buf)) <= 0)
		return 0;
	return (pid_t)atoi(buf);
}

int main(void)
{
	cr_init();
	DIE_IF(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "PR_SET_CHILD_SUBREAPER");
	pid_t root = getpid();
	pid_t c = cr_fork();
	if (c == 0) {
		pid_t g = cr_fork();
		if (g == 0) {
			pid_t me = getpid();
			pid_t h = cr_fork();
			if (h == 0) {
				cr_sync_post("H");
				cr_wait();
				CHECK(getppid() == me || getppid() == root, "H: ppid %d, expected G %d or root %d",
				      (int)getppid(), (int)me, (int)root);
				for (int i = 0; i < CR_PATIENCE_LOOPS(5) && getppid() != root; i++)
					cr_sleep_ms(5);
				CHECK(getppid() == root, "H: not reparented to the subreaper root (ppid %d)",
				      (int)getppid());
				_exit(cr_failed() ? 1 : 5);
			}
			cr_sync_wait("H");
			while (getppid() != root)
				cr_sleep_ms(2);
			cr_sync_post("G");
			cr_wait();
			CHECK(getppid() == root, "G: ppid %d, expected root %d", (int)getppid(), (int)root);
			CHECK(first_child_of(me) == h, "G: child H (%d) missing", (int)h);
			_exit(cr_failed() ? 1 : 3); /* H becomes an orphan now */
		}
		_exit(0);
	}
	cr_expect_exit(c, 0, "C");
	cr_sync_wait("G");
	pid_t g = first_child_of(root);
	pid_t h = g ? first_child_of(g) : 0;
	DIE_IF(!g || !h, "tree not as designed (g %d h %d)", (int)g, (int)h);

	cr_ready();
	cr_wait();
	int sub = 0;
	prctl(PR_GET_CHILD_SUBREAPER, &sub, 0, 0, 0);
	CHECK(sub == 1, "root: PR_GET_CHILD_SUBREAPER %d", sub);
	CHECK(first_child_of(root) == g, "root's child is %d, expected G %d", (int)first_child_of(root), (int)g);
	kill(h, SIGUSR1);
	kill(g, SIGUSR1);
	cr_expect_exit(g, 3, "G");
	cr_expect_exit(h, 5, "H (orphan)");
	cr_finish();
}
