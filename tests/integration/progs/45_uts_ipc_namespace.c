/* Scenario 45: a tree with UTS and IPC namespaces of its own (unshare -pf --uts --ipc).
 * The root (PID 1 inside) sets its host and domain names and forks a child.
 * After the signal both check the names, and that a SysV message queue made
 * now in the namespace gets the first id (the restored IPC namespace is new,
 * and its own). */
#include "common.h"
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/utsname.h>

#define HOST "lxc-cr-uts-test"
#define DOMAIN "cr.example"

static void check_names(void)
{
	struct utsname u;
	char dom[128] = "";
	CHECK(uname(&u) == 0 && strcmp(u.nodename, HOST) == 0, "hostname '%s'", u.nodename);
	CHECK(getdomainname(dom, sizeof(dom)) == 0 && strcmp(dom, DOMAIN) == 0, "domainname '%s'", dom);
}

int main(void)
{
	cr_init();
	DIE_IF(getpid() != 1, "not the init of a PID namespace");
	DIE_IF(setsid() < 0, "setsid");
	DIE_IF(sethostname(HOST, strlen(HOST)), "sethostname");
	DIE_IF(setdomainname(DOMAIN, strlen(DOMAIN)), "setdomainname");
	pid_t c = cr_fork();
	if (c == 0) {
		cr_wait();
		check_names();
		cr_child_exit();
	}
	cr_ready();
	cr_wait();
	check_names();
	int q = msgget(IPC_PRIVATE, 0600);
	CHECK(q == 0, "first message queue id %d in a fresh IPC namespace", q);
	if (q >= 0)
		msgctl(q, IPC_RMID, NULL);
	kill(c, SIGUSR1);
	int st;
	CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0, "child failed (%#x)", st);
	cr_finish();
}
