/* Scenario 44: a tree in its own PID namespace (started with `unshare -pf`).
 * The root is the namespace's init (PID 1 inside).  It becomes a session
 * leader, forks A (which starts a thread and forks B) and C (its own process
 * group).  Everyone records the PIDs, TIDs, parents and groups it sees inside.
 * After the signal each checks them again: the restored namespace must give
 * the same numbers inside, and A's thread its TID. */
#include "common.h"
#include <pthread.h>

static pid_t thread_tid;
static volatile int thread_stop;

static void *thread_main(void *arg)
{
	(void)arg;
	thread_tid = cr_gettid();
	while (!thread_stop)
		cr_sleep_ms(20);
	return NULL;
}

static void child_checks(pid_t pid, pid_t ppid, pid_t pgid)
{
	CHECK(getpid() == pid, "pid %d, expected %d", (int)getpid(), (int)pid);
	CHECK(getppid() == ppid, "ppid %d, expected %d", (int)getppid(), (int)ppid);
	CHECK(getpgid(0) == pgid, "pgid %d, expected %d", (int)getpgid(0), (int)pgid);
	CHECK(getsid(0) == 1, "sid %d, expected 1", (int)getsid(0));
}

int main(void)
{
	cr_init();
	DIE_IF(getpid() != 1, "not the init of a PID namespace (pid %d)", (int)getpid());
	DIE_IF(setsid() < 0, "setsid");
	pid_t a = cr_fork();
	if (a == 0) {
		pthread_t t;
		DIE_IF(pthread_create(&t, NULL, thread_main, NULL), "pthread_create");
		pid_t b = cr_fork();
		if (b == 0) {
			pid_t me = getpid(), parent = getppid();
			cr_wait();
			child_checks(me, parent, 1);
			cr_child_exit();
		}
		while (!thread_tid)
			cr_sleep_ms(5);
		pid_t tid = thread_tid, me = getpid();
		cr_wait();
		child_checks(me, 1, 1);
		CHECK(thread_tid == tid, "thread tid changed");
		CHECK(syscall(SYS_tgkill, me, tid, 0) == 0, "thread %d is gone", (int)tid);
		thread_stop = 1;
		pthread_join(t, NULL);
		kill(b, SIGUSR1);
		int st;
		CHECK(waitpid(b, &st, 0) == b && WIFEXITED(st) && WEXITSTATUS(st) == 0, "B failed (%#x)", st);
		cr_child_exit();
	}
	pid_t c = cr_fork();
	if (c == 0) {
		DIE_IF(setpgid(0, 0), "setpgid");
		pid_t me = getpid();
		cr_wait();
		child_checks(me, 1, me);
		cr_child_exit();
	}
	cr_sleep_ms(100);
	cr_ready();
	cr_wait();
	CHECK(getpid() == 1, "root pid %d, expected 1", (int)getpid());
	kill(a, SIGUSR1);
	kill(c, SIGUSR1);
	pid_t kids[2] = { a, c };
	for (int i = 0; i < 2; i++) {
		int st;
		pid_t r = waitpid(kids[i], &st, 0);
		CHECK(r == kids[i] && WIFEXITED(st) && WEXITSTATUS(st) == 0, "child %d failed (%#x)", (int)kids[i], st);
	}
	cr_finish();
}
