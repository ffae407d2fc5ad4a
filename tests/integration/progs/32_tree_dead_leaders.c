/* Scenario 32: session and group leaders that are dead.
 * The root is a child subreaper.  Child L calls setsid() and forks:
 *   G1: setpgid(0,0)  -> sid=L (dead), pgid=G1
 *   G2: stays         -> sid=L (dead), pgid=L (dead)
 *   G3: joins G1's group -> sid=L (dead), pgid=G1
 * then L exits and the root reaps it, so G1..G3 are reparented to the root.
 * After the signal: each grandchild checks getppid()==root, getsid()==L and
 * its pgid; the root checks L's pid is free (no helper left over) and that the
 * children file lists exactly G1 G2 G3; then it reaps them. */
#include "common.h"

int main(void)
{
	cr_init();
	DIE_IF(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "PR_SET_CHILD_SUBREAPER");
	pid_t root = getpid();
	pid_t L = cr_fork();
	if (L == 0) {
		DIE_IF(setsid() < 0, "L: setsid");
		pid_t me = getpid();
		pid_t g[3];
		for (int i = 0; i < 3; i++) {
			pid_t want_pgid = i == 0 ? 0 : i == 1 ? -1 : g[0];
			g[i] = cr_fork();
			if (g[i] == 0) {
				char name[8];
				snprintf(name, sizeof(name), "G%d", i + 1);
				if (want_pgid >= 0)
					DIE_IF(setpgid(0, want_pgid), "%s: setpgid", name);
				pid_t exp_pgid = i == 0 ? getpid() : i == 1 ? me : want_pgid;
				/* wait until reparented to the root, then announce */
				while (getppid() != root)
					cr_sleep_ms(2);
				cr_sync_post(name);
				cr_wait();
				CHECK(getppid() == root, "%s: ppid %d, expected root %d", name, (int)getppid(), (int)root);
				CHECK(getsid(0) == me, "%s: sid %d, expected dead leader %d", name, (int)getsid(0), (int)me);
				CHECK(getpgid(0) == exp_pgid, "%s: pgid %d, expected %d", name, (int)getpgid(0),
				      (int)exp_pgid);
				_exit(cr_failed() ? 1 : 30 + i);
			}
			if (want_pgid >= 0)
				setpgid(g[i], want_pgid == 0 ? g[i] : want_pgid);
		}
		_exit(0);
	}
	cr_expect_exit(L, 0, "session leader L");
	cr_sync_wait("G1");
	cr_sync_wait("G2");
	cr_sync_wait("G3");
	char path[64], buf[256];
	snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)root, (int)root);
	cr_read_file(path, buf, sizeof(buf));
	pid_t g[3] = { 0, 0, 0 };
	DIE_IF(sscanf(buf, "%d %d %d", &g[0], &g[1], &g[2]) != 3, "children of root: '%s'", buf);
	/* order them: G1 leads its group, G3 is in it, G2 is in L's group */
	pid_t ord[3] = { 0, 0, 0 };
	for (int i = 0; i < 3; i++) {
		if (getpgid(g[i]) == g[i])
			ord[0] = g[i];
		else if (getpgid(g[i]) == L)
			ord[1] = g[i];
	}
	for (int i = 0; i < 3; i++)
		if (g[i] != ord[0] && g[i] != ord[1])
			ord[2] = g[i];
	DIE_IF(!ord[0] || !ord[1] || getpgid(ord[2]) != ord[0], "groups not as designed");

	cr_ready();
	cr_wait();
	errno = 0;
	CHECK(kill(L, 0) == -1 && errno == ESRCH, "pid %d of the dead session leader is in use", (int)L);
	snprintf(path, sizeof(path), "/proc/%d", (int)L);
	CHECK(access(path, F_OK) != 0, "/proc/%d exists", (int)L);
	snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)root, (int)root);
	cr_read_file(path, buf, sizeof(buf));
	pid_t now[4] = { 0, 0, 0, 0 };
	int n = sscanf(buf, "%d %d %d %d", &now[0], &now[1], &now[2], &now[3]);
	int match = 0;
	for (int i = 0; i < n; i++)
		for (int k = 0; k < 3; k++)
			match += now[i] == ord[k];
	CHECK(n == 3 && match == 3, "root's children are '%s', expected %d %d %d", buf, (int)ord[0], (int)ord[1],
	      (int)ord[2]);
	int sub = 0;
	prctl(PR_GET_CHILD_SUBREAPER, &sub, 0, 0, 0);
	CHECK(sub == 1, "root is no longer a child subreaper");
	for (int i = 0; i < 3; i++) {
		CHECK(getsid(ord[i]) == L, "G%d: sid %d, expected %d", i + 1, (int)getsid(ord[i]), (int)L);
		kill(ord[i], SIGUSR1);
	}
	for (int i = 0; i < 3; i++) {
		char name[8];
		snprintf(name, sizeof(name), "G%d", i + 1);
		cr_expect_exit(ord[i], 30 + i, name);
	}
	cr_finish();
}
