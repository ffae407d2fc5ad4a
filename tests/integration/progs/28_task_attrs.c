/* Scenario 28: per-process attributes.
 * umask 027; RLIMIT_NOFILE 512/1024, RLIMIT_CORE 1 MiB/2 MiB,
 * RLIMIT_MSGQUEUE 4096/8192 (all lowered); nice 5; personality
 * ADDR_NO_RANDOMIZE|UNAME26; comm "cr-attrs-28"; cwd in a subdirectory;
 * PR_SET_DUMPABLE 0; PR_SET_NO_NEW_PRIVS 1; PR_SET_CHILD_SUBREAPER 1; a child
 * with PR_SET_PDEATHSIG(SIGUSR2) (its parent, the root, stays alive).
 * After the signal every one of them reads back unchanged (uname release shows
 * the UNAME26 "2.6." form), and the child never got its death signal. */
#include "common.h"
#include <sys/personality.h>
#include <sys/resource.h>
#include <sys/utsname.h>

static const struct {
	int res;
	const char *name;
	struct rlimit lim;
} lims[] = {
	{ RLIMIT_NOFILE, "RLIMIT_NOFILE", { 512, 1024 } },
	{ RLIMIT_CORE, "RLIMIT_CORE", { 1 << 20, 2 << 20 } },
	{ RLIMIT_MSGQUEUE, "RLIMIT_MSGQUEUE", { 4096, 8192 } },
};
#define NLIM (sizeof(lims) / sizeof(lims[0]))
#define PERS (ADDR_NO_RANDOMIZE | UNAME26)

static volatile int deathsig_hits;
static void on_usr2(int s) { (void)s; deathsig_hits++; }

int main(void)
{
	cr_init();
	struct sigaction sa = { 0 };
	sa.sa_handler = on_usr2;
	sigaction(SIGUSR2, &sa, NULL);

	pid_t child = cr_fork();
	if (child == 0) {
		DIE_IF(prctl(PR_SET_PDEATHSIG, SIGUSR2, 0, 0, 0), "PR_SET_PDEATHSIG");
		cr_sync_post("child");
		cr_wait();
		int sig = 0;
		prctl(PR_GET_PDEATHSIG, &sig, 0, 0, 0);
		CHECK(sig == SIGUSR2, "child: PR_GET_PDEATHSIG %d, expected SIGUSR2", sig);
		CHECK(deathsig_hits == 0, "child: parent-death signal delivered although the parent lives");
		cr_child_exit();
	}
	cr_sync_wait("child");

	umask(027);
	for (size_t i = 0; i < NLIM; i++)
		DIE_IF(setrlimit(lims[i].res, &lims[i].lim), "setrlimit %s", lims[i].name);
	DIE_IF(setpriority(PRIO_PROCESS, 0, 5), "setpriority");
	DIE_IF(personality(PERS) < 0, "personality");
	DIE_IF(prctl(PR_SET_NAME, "cr-attrs-28", 0, 0, 0), "PR_SET_NAME");
	DIE_IF(mkdir("sub", 0755) || mkdir("sub/dir2", 0700), "mkdir");
	DIE_IF(chdir("sub/dir2"), "chdir");
	char cwd0[PATH_MAX];
	DIE_IF(!getcwd(cwd0, sizeof(cwd0)), "getcwd");
	struct stat cst0;
	stat(".", &cst0);
	DIE_IF(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "PR_SET_CHILD_SUBREAPER");
	DIE_IF(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "PR_SET_NO_NEW_PRIVS");
	DIE_IF(prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), "PR_SET_DUMPABLE");

	cr_ready();
	cr_wait();

	char v[64];
	CHECK(cr_status_field("/proc/self/status", "Umask", v, sizeof(v)) == 0 && !strcmp(v, "0027"),
	      "/proc/self/status Umask '%s', expected 0027", v);
	mode_t m = umask(022);
	CHECK(m == 027, "umask 0%o, expected 027", (unsigned)m);
	for (size_t i = 0; i < NLIM; i++) {
		struct rlimit r;
		getrlimit(lims[i].res, &r);
		CHECK(r.rlim_cur == lims[i].lim.rlim_cur && r.rlim_max == lims[i].lim.rlim_max,
		      "%s: %llu/%llu, expected %llu/%llu", lims[i].name, (unsigned long long)r.rlim_cur,
		      (unsigned long long)r.rlim_max, (unsigned long long)lims[i].lim.rlim_cur,
		      (unsigned long long)lims[i].lim.rlim_max);
	}
	errno = 0;
	int nice = getpriority(PRIO_PROCESS, 0);
	CHECK(nice == 5 && errno == 0, "nice %d, expected 5", nice);
	int pers = personality(0xffffffff);
	CHECK(pers == PERS, "personality 0x%x, expected 0x%x", pers, PERS);
	struct utsname u;
	uname(&u);
	CHECK(!strncmp(u.release, "2.6.", 4), "uname release '%s' does not reflect UNAME26", u.release);
	char comm[32] = "";
	prctl(PR_GET_NAME, comm, 0, 0, 0);
	CHECK(!strcmp(comm, "cr-attrs-28"), "comm '%s'", comm);
	cr_read_file("/proc/self/comm", comm, sizeof(comm));
	CHECK(!strcmp(comm, "cr-attrs-28\n"), "/proc/self/comm '%s'", comm);
	char cwd[PATH_MAX];
	CHECK(getcwd(cwd, sizeof(cwd)) && !strcmp(cwd, cwd0), "cwd '%s', expected '%s'", cwd, cwd0);
	struct stat cst;
	stat(".", &cst);
	CHECK(cst.st_ino == cst0.st_ino && cst.st_dev == cst0.st_dev, "cwd is another directory");
	CHECK(prctl(PR_GET_DUMPABLE) == 0, "dumpable %d, expected 0", prctl(PR_GET_DUMPABLE));
	CHECK(prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1, "no_new_privs not set");
	int sub = 0;
	prctl(PR_GET_CHILD_SUBREAPER, &sub, 0, 0, 0);
	CHECK(sub == 1, "child subreaper %d, expected 1", sub);
	CHECK(deathsig_hits == 0, "root got SIGUSR2");
	kill(child, SIGUSR1);
	cr_expect_exit(child, 0, "pdeathsig child");
	cr_finish();
}
