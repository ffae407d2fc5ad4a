/* Scenario 97: file owners (F_SETOWN_EX, F_SETSIG) and signal-driven I/O (O_ASYNC).
 * A pty master with O_ASYNC whose owner is a thread other than the main one
 * (F_OWNER_TID) and whose signal is SIGRTMIN+2; the thread waits for it in
 * sigtimedwait().  A regular file owned by the root (F_SETOWN), /dev/null
 * owned by the root's process group with F_SETSIG SIGUSR2, and a regular file
 * owned by a child.
 * After the signal: F_GETOWN_EX and F_GETSIG give back every owner and signal,
 * O_ASYNC is still set; a byte written on the slave makes the kernel signal
 * the thread, with si_fd the master's fd number and si_code POLL_IN. */
#include "common.h"
#include <pthread.h>
#include <sys/ioctl.h>

static int master, slave;
static volatile pid_t worker_tid;
static volatile int worker_ok = -1;

static void *worker(void *arg)
{
	(void)arg;
	worker_tid = cr_gettid();
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGRTMIN + 2);
	siginfo_t si;
	struct timespec ts = { 1, 0 };
	for (;;) {      /* the signal comes only once the root writes, after the restore */
		int r = sigtimedwait(&set, &si, &ts);
		if (r == SIGRTMIN + 2)
			break;
		if (cr_go > 1) {
			cr_fail("thread: no signal for the pty master");
			worker_ok = 0;
			return NULL;
		}
	}
	worker_ok = CHECK(si.si_fd == master && si.si_code == POLL_IN, "thread: si_fd %d si_code %d, expected %d %d",
			  si.si_fd, si.si_code, master, POLL_IN);
	return NULL;
}

static void expect_owner(const char *what, int fd, int type, pid_t pid, int sig)
{
	struct f_owner_ex o = { -1, -1 };
	CHECK(fcntl(fd, F_GETOWN_EX, &o) == 0 && o.type == type && o.pid == pid,
	      "%s: owner type %d pid %d, expected %d %d", what, o.type, o.pid, type, (int)pid);
	CHECK_EQ(fcntl(fd, F_GETSIG), sig, what);
}

int main(void)
{
	cr_init();
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGRTMIN + 2);
	sigprocmask(SIG_BLOCK, &set, NULL);    /* every thread: only sigtimedwait takes it */
	master = posix_openpt(O_RDWR | O_NOCTTY);
	DIE_IF(master < 0 || grantpt(master) || unlockpt(master), "posix_openpt");
	slave = open(ptsname(master), O_RDWR | O_NOCTTY);
	DIE_IF(slave < 0, "open slave");
	pthread_t th;
	DIE_IF(pthread_create(&th, NULL, worker, NULL), "pthread_create");
	while (!worker_tid)
		cr_sleep_ms(1);
	struct f_owner_ex o = { F_OWNER_TID, worker_tid };
	DIE_IF(fcntl(master, F_SETSIG, SIGRTMIN + 2) || fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_ASYNC) ||
	       fcntl(master, F_SETOWN_EX, &o), "master owner");

	int file = open("owned", O_RDWR | O_CREAT, 0644);
	DIE_IF(file < 0 || fcntl(file, F_SETOWN, getpid()), "file owner");
	int null = open("/dev/null", O_RDWR);
	struct f_owner_ex g = { F_OWNER_PGRP, getpgrp() };
	DIE_IF(null < 0 || fcntl(null, F_SETOWN_EX, &g) || fcntl(null, F_SETSIG, SIGUSR2), "null owner");
	pid_t child = cr_fork();
	if (child == 0) {
		cr_wait();
		cr_child_exit();
	}
	int other = open("owned", O_RDONLY);
	DIE_IF(other < 0 || fcntl(other, F_SETOWN, child), "child owner");
	cr_ready();
	cr_wait();

	expect_owner("pty master", master, F_OWNER_TID, worker_tid, SIGRTMIN + 2);
	CHECK(fcntl(master, F_GETFL) & O_ASYNC, "pty master: O_ASYNC is gone");
	expect_owner("file", file, F_OWNER_PID, getpid(), 0);
	expect_owner("/dev/null", null, F_OWNER_PGRP, getpgrp(), SIGUSR2);
	expect_owner("file owned by the child", other, F_OWNER_PID, child, 0);
	CHECK(write(slave, "s", 1) == 1, "write slave");
	for (int i = 0; i < CR_PATIENCE_LOOPS(10) && worker_ok < 0; i++)
		cr_sleep_ms(10);
	cr_go = 2;
	pthread_join(th, NULL);
	CHECK(worker_ok == 1, "thread: no signal");
	kill(child, SIGUSR1);
	cr_expect_exit(child, 0, "child");
	cr_finish();
}
