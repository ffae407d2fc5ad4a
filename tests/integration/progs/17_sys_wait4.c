/* Scenario 17: waiting for children.
 * The main thread sits in wait4(child1) and a second thread (SIGUSR1
 * blocked) in waitid(P_PID, child2, WEXITED).  Both children only exit after
 * the signal.  On EINTR the main thread forwards SIGUSR1 to child1 and waits
 * again; child1 exits 7 (after checking its parent), then the main thread
 * signals child2, which exits 9.  The wait calls must return exactly these
 * statuses, with rusage, and no other child may be reported. */
#include "common.h"
#include <pthread.h>
#include <sys/resource.h>

static pid_t child1, child2;
static volatile int thr_in_loop, thr_done;
static siginfo_t thr_info;
static int thr_err;

static void child_body(int code)
{
	pid_t parent = getppid();
	cr_wait();
	CHECK(getppid() == parent, "child: parent changed from %d to %d", (int)parent, (int)getppid());
	_exit(cr_failed() ? 1 : code);
}

static void *thread_fn(void *arg)
{
	(void)arg;
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &s, NULL);
	thr_in_loop = 1;
	for (;;) {
		memset(&thr_info, 0, sizeof(thr_info));
		int r = waitid(P_PID, (id_t)child2, &thr_info, WEXITED);
		if (r == 0)
			break;
		if (errno != EINTR) {
			thr_err = errno;
			break;
		}
	}
	thr_done = 1;
	return NULL;
}

int main(void)
{
	cr_init();
	child1 = cr_fork();
	if (child1 == 0)
		child_body(7);
	child2 = cr_fork();
	if (child2 == 0)
		child_body(9);
	pthread_t t;
	DIE_IF(pthread_create(&t, NULL, thread_fn, NULL), "pthread_create");
	while (!thr_in_loop)
		cr_sleep_ms(1);
	pid_t ttid = 0;
	{ /* find the thread's tid: the only other entry in /proc/self/task */
		DIR *d = opendir("/proc/self/task");
		struct dirent *e;
		while (d && (e = readdir(d)))
			if (atoi(e->d_name) > 0 && atoi(e->d_name) != getpid())
				ttid = atoi(e->d_name);
		if (d)
			closedir(d);
	}
	if (ttid)
		cr_wait_in_syscall(getpid(), ttid, SYS_waitid, 2000);
	cr_ready();

	int st = 0, eintr = 0;
	struct rusage ru;
	pid_t r;
	for (;;) {
		memset(&ru, 0, sizeof(ru));
		r = wait4(child1, &st, 0, &ru);
		if (r >= 0)
			break;
		if (errno != EINTR) {
			cr_fail("wait4: %s", strerror(errno));
			break;
		}
		eintr++;
		if (cr_go)
			kill(child1, SIGUSR1);
	}
	CHECK(cr_go, "wait4 returned before the signal");
	if (r == child1) {
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 7, "child1 status 0x%x, expected exit 7", st);
		CHECK(ru.ru_utime.tv_sec >= 0 && ru.ru_maxrss > 0, "wait4 rusage looks empty (maxrss %ld)",
		      ru.ru_maxrss);
	} else if (r >= 0) {
		cr_fail("wait4 returned pid %d, expected %d", (int)r, (int)child1);
	}
	CHECK(!thr_done, "waitid in the thread returned before child2 was told to exit");
	kill(child2, SIGUSR1);
	for (int n = 0; !thr_done && n < CR_PATIENCE_LOOPS(5); n++)
		cr_sleep_ms(5);
	if (CHECK(thr_done, "waitid(child2) in the thread never returned")) {
		pthread_join(t, NULL);
		CHECK(thr_err == 0, "waitid: %s", strerror(thr_err));
		CHECK(thr_info.si_pid == child2 && thr_info.si_code == CLD_EXITED && thr_info.si_status == 9,
		      "waitid: pid %d code %d status %d, expected %d CLD_EXITED 9", (int)thr_info.si_pid,
		      thr_info.si_code, thr_info.si_status, (int)child2);
	}
	errno = 0;
	CHECK(waitpid(-1, &st, WNOHANG) < 0 && errno == ECHILD, "unexpected extra child");
	cr_finish();
}
