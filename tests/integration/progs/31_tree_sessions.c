/* Scenario 31: sessions and process groups.
 *   root (its own session/group, as started by the harness)
 *   ├─ A: setsid()                     sid=A    pgid=A
 *   │   ├─ G1: setpgid(0,0)            sid=A    pgid=G1
 *   │   └─ G2: (inherits)              sid=A    pgid=A
 *   ├─ B: setpgid(0,0)                 sid=root pgid=B
 *   │   ├─ G3: (inherits)              sid=root pgid=B
 *   │   └─ G4: setpgid(0, root's pgid) sid=root pgid=root's
 *   └─ C: (inherits)                   sid=root pgid=root's
 * Expected ids are computed from the pids, not copied.  After the signal every
 * process checks its own getsid/getpgid/getppid; the root also checks all
 * others with getsid(pid)/getpgid(pid).  Parents reap their children. */
#include "common.h"

struct ids {
	pid_t pid, ppid, sid, pgid;
};
/* shared expectations, written before the forks that need them */
static struct ids A, G1, G2, B, G3, G4, C;
static pid_t rsid, rpgid;

static void check_self(const char *who, pid_t ppid, pid_t sid, pid_t pgid)
{
	CHECK(getppid() == ppid, "%s: ppid %d, expected %d", who, (int)getppid(), (int)ppid);
	CHECK(getsid(0) == sid, "%s: sid %d, expected %d", who, (int)getsid(0), (int)sid);
	CHECK(getpgid(0) == pgid, "%s: pgid %d, expected %d", who, (int)getpgid(0), (int)pgid);
}

static void check_other(const char *who, const struct ids *x)
{
	CHECK(getsid(x->pid) == x->sid, "root sees %s (pid %d) in session %d, expected %d", who, (int)x->pid,
	      (int)getsid(x->pid), (int)x->sid);
	CHECK(getpgid(x->pid) == x->pgid, "root sees %s (pid %d) in group %d, expected %d", who, (int)x->pid,
	      (int)getpgid(x->pid), (int)x->pgid);
}

/* grandchild body: optional setpgid, then wait and check */
static pid_t spawn_leaf(const char *name, pid_t pgid_arg, pid_t exp_sid, int use_own_pgid, pid_t exp_pgid)
{
	pid_t parent = getpid();
	pid_t p = cr_fork();
	if (p == 0) {
		if (pgid_arg >= 0)
			DIE_IF(setpgid(0, pgid_arg), "%s: setpgid", name);
		cr_sync_post(name);
		cr_wait();
		check_self(name, parent, exp_sid, use_own_pgid ? getpid() : exp_pgid);
		cr_child_exit();
	}
	/* also from the parent side, so that the group exists before READY */
	if (pgid_arg >= 0)
		setpgid(p, pgid_arg == 0 ? p : pgid_arg);
	cr_sync_wait(name);
	return p;
}

int main(void)
{
	cr_init();
	rsid = getsid(0);
	rpgid = getpgid(0);
	pid_t root = getpid();

	pid_t a = cr_fork();
	if (a == 0) {
		DIE_IF(setsid() < 0, "A: setsid");
		pid_t me = getpid();
		pid_t g1 = spawn_leaf("G1", 0, me, 1, 0);
		pid_t g2 = spawn_leaf("G2", -1, me, 0, me);
		cr_sync_post("A");
		cr_wait();
		check_self("A", root, me, me);
		kill(g1, SIGUSR1);
		kill(g2, SIGUSR1);
		cr_expect_exit(g1, 0, "G1");
		cr_expect_exit(g2, 0, "G2");
		cr_child_exit();
	}
	cr_sync_wait("A");
	/* learn A's children from /proc (pids are only known to A) */
	char path[64], buf[256];
	snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)a, (int)a);
	cr_read_file(path, buf, sizeof(buf));
	pid_t ag[2] = { 0, 0 };
	sscanf(buf, "%d %d", &ag[0], &ag[1]);
	/* G1 is the one in its own group */
	if (getpgid(ag[0]) != ag[0]) {
		pid_t t = ag[0];
		ag[0] = ag[1];
		ag[1] = t;
	}
	A = (struct ids){ a, root, a, a };
	G1 = (struct ids){ ag[0], a, a, ag[0] };
	G2 = (struct ids){ ag[1], a, a, a };

	pid_t b = cr_fork();
	if (b == 0) {
		DIE_IF(setpgid(0, 0), "B: setpgid");
		pid_t me = getpid();
		pid_t g3 = spawn_leaf("G3", -1, rsid, 0, me);
		pid_t g4 = spawn_leaf("G4", rpgid, rsid, 0, rpgid);
		cr_sync_post("B");
		cr_wait();
		check_self("B", root, rsid, me);
		kill(g3, SIGUSR1);
		kill(g4, SIGUSR1);
		cr_expect_exit(g3, 0, "G3");
		cr_expect_exit(g4, 0, "G4");
		cr_child_exit();
	}
	setpgid(b, b);
	cr_sync_wait("B");
	snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)b, (int)b);
	cr_read_file(path, buf, sizeof(buf));
	pid_t bg[2] = { 0, 0 };
	sscanf(buf, "%d %d", &bg[0], &bg[1]);
	if (getpgid(bg[0]) != b) {
		pid_t t = bg[0];
		bg[0] = bg[1];
		bg[1] = t;
	}
	B = (struct ids){ b, root, rsid, b };
	G3 = (struct ids){ bg[0], b, rsid, b };
	G4 = (struct ids){ bg[1], b, rsid, rpgid };

	pid_t c = cr_fork();
	if (c == 0) {
		cr_sync_post("C");
		cr_wait();
		check_self("C", root, rsid, rpgid);
		cr_child_exit();
	}
	cr_sync_wait("C");
	C = (struct ids){ c, root, rsid, rpgid };
	/* sanity of the set-up itself */
	DIE_IF(getpgid(G1.pid) != G1.pgid || getsid(G1.pid) != a || getpgid(G4.pid) != rpgid ||
		       getpgid(G3.pid) != b,
	       "process groups not as designed");

	cr_ready();
	cr_wait();
	CHECK(getsid(0) == rsid && getpgid(0) == rpgid, "root: sid %d pgid %d, expected %d %d", (int)getsid(0),
	      (int)getpgid(0), (int)rsid, (int)rpgid);
	check_other("A", &A);
	check_other("G1", &G1);
	check_other("G2", &G2);
	check_other("B", &B);
	check_other("G3", &G3);
	check_other("G4", &G4);
	check_other("C", &C);
	kill(a, SIGUSR1);
	kill(b, SIGUSR1);
	kill(c, SIGUSR1);
	cr_expect_exit(a, 0, "A");
	cr_expect_exit(b, 0, "B");
	cr_expect_exit(c, 0, "C");
	cr_finish();
}
