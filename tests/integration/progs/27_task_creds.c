/* Scenario 27: credentials and capabilities (needs root to set up).
 * setgroups({5,6,7}), setresgid(1001,1002,1003), PR_CAPBSET_DROP(CAP_SYS_BOOT),
 * PR_SET_KEEPCAPS, setresuid(2001,2002,2003), then capset:
 * permitted {KILL, NET_BIND_SERVICE, SETUID}, effective {KILL,
 * NET_BIND_SERVICE}, inheritable {KILL}; ambient CAP_KILL raised.
 * After the signal: getresuid/getresgid/getgroups/fsuid/fsgid, capget,
 * bounding set, ambient set, keepcaps, securebits, the /proc/self/status
 * lines and dumpable all unchanged; CAP_KILL still works (kill(1, 0)) and
 * setuid(0) still fails (SETUID not effective). */
#include "common.h"
#include <grp.h>
#include <linux/capability.h>
#include <linux/securebits.h>
#include <sys/fsuid.h>

#define CAPBIT(c) (1u << (c))

static int capget2(struct __user_cap_data_struct d[2])
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	return (int)syscall(SYS_capget, &h, d);
}

int main(void)
{
	cr_init();
	if (geteuid() != 0)
		cr_skip("needs root");
	DIE_IF(prctl(PR_CAPBSET_DROP, CAP_SYS_BOOT, 0, 0, 0), "PR_CAPBSET_DROP");
	gid_t groups[3] = { 5, 6, 7 };
	DIE_IF(setgroups(3, groups), "setgroups");
	DIE_IF(setresgid(1001, 1002, 1003), "setresgid");
	DIE_IF(prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0), "PR_SET_KEEPCAPS");
	DIE_IF(setresuid(2001, 2002, 2003), "setresuid");
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2];
	memset(d, 0, sizeof(d));
	d[0].permitted = CAPBIT(CAP_KILL) | CAPBIT(CAP_NET_BIND_SERVICE) | CAPBIT(CAP_SETUID);
	d[0].effective = CAPBIT(CAP_KILL) | CAPBIT(CAP_NET_BIND_SERVICE);
	d[0].inheritable = CAPBIT(CAP_KILL);
	DIE_IF(syscall(SYS_capset, &h, d), "capset");
	DIE_IF(prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_KILL, 0, 0), "ambient raise");

	struct __user_cap_data_struct d0[2];
	DIE_IF(capget2(d0), "capget");
	int sb0 = prctl(PR_GET_SECUREBITS);
	int dumpable0 = prctl(PR_GET_DUMPABLE);
	static const char *keys[] = { "Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb",
				      "NoNewPrivs" };
	char st0[9][128];
	for (int i = 0; i < 9; i++)
		DIE_IF(cr_status_field("/proc/self/status", keys[i], st0[i], sizeof(st0[i])), "status %s", keys[i]);

	cr_ready();
	cr_wait();

	uid_t r, e, s;
	gid_t gr, ge, gs;
	getresuid(&r, &e, &s);
	CHECK(r == 2001 && e == 2002 && s == 2003, "getresuid %u %u %u, expected 2001 2002 2003", r, e, s);
	getresgid(&gr, &ge, &gs);
	CHECK(gr == 1001 && ge == 1002 && gs == 1003, "getresgid %u %u %u, expected 1001 1002 1003", gr, ge, gs);
	CHECK(setfsuid((uid_t)-1) == 2002, "fsuid %d, expected 2002", setfsuid((uid_t)-1));
	CHECK(setfsgid((gid_t)-1) == 1002, "fsgid %d, expected 1002", setfsgid((gid_t)-1));
	gid_t g[16];
	int ng = getgroups(16, g);
	CHECK(ng == 3 && g[0] == 5 && g[1] == 6 && g[2] == 7, "getgroups: %d groups (%u %u %u)", ng, ng > 0 ? g[0] : 0,
	      ng > 1 ? g[1] : 0, ng > 2 ? g[2] : 0);
	struct __user_cap_data_struct d1[2];
	if (CHECK(capget2(d1) == 0, "capget"))
		for (int i = 0; i < 2; i++)
			CHECK(d1[i].effective == d0[i].effective && d1[i].permitted == d0[i].permitted &&
				      d1[i].inheritable == d0[i].inheritable,
			      "capget word %d: eff 0x%x prm 0x%x inh 0x%x, was 0x%x 0x%x 0x%x", i, d1[i].effective,
			      d1[i].permitted, d1[i].inheritable, d0[i].effective, d0[i].permitted, d0[i].inheritable);
	CHECK(prctl(PR_CAPBSET_READ, CAP_SYS_BOOT, 0, 0, 0) == 0, "CAP_SYS_BOOT back in the bounding set");
	CHECK(prctl(PR_CAPBSET_READ, CAP_KILL, 0, 0, 0) == 1, "CAP_KILL missing from the bounding set");
	CHECK(prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, CAP_KILL, 0, 0) == 1, "ambient CAP_KILL lost");
	CHECK(prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, CAP_SETUID, 0, 0) == 0, "ambient CAP_SETUID set");
	CHECK(prctl(PR_GET_KEEPCAPS) == 1, "PR_GET_KEEPCAPS %d", prctl(PR_GET_KEEPCAPS));
	CHECK(prctl(PR_GET_SECUREBITS) == sb0, "securebits 0x%x, was 0x%x", prctl(PR_GET_SECUREBITS), sb0);
	CHECK(prctl(PR_GET_DUMPABLE) == dumpable0, "dumpable %d, was %d", prctl(PR_GET_DUMPABLE), dumpable0);
	for (int i = 0; i < 9; i++) {
		char v[128];
		if (CHECK(cr_status_field("/proc/self/status", keys[i], v, sizeof(v)) == 0, "status %s", keys[i]))
			CHECK(!strcmp(v, st0[i]), "/proc/self/status %s: '%s', was '%s'", keys[i], v, st0[i]);
	}
	CHECK(kill(1, 0) == 0, "kill(1, 0) with CAP_KILL: %s", strerror(errno));
	errno = 0;
	CHECK(setresuid((uid_t)-1, 0, (uid_t)-1) == -1 && errno == EPERM, "setresuid(-1, 0, -1) did not fail with EPERM");
	cr_finish();
}
