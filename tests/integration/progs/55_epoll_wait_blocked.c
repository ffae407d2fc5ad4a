/* Scenario 55: tasks blocked in epoll_wait() at dump time.
 * A child waits in epoll_wait(-1) on the read end of a pipe; a thread of the
 * root waits in epoll_pwait(60 s) on an eventfd; nothing is ready.
 * After the signal the root writes the pipe and the eventfd: each waiter
 * gets exactly its event, with its data, then reads the bytes / the count.
 * epoll_wait() is never restarted by the kernel, and the freeze of a dump
 * (PTRACE_INTERRUPT) ends it with EINTR, as any signal would: the waiters
 * retry on EINTR, as every event loop does. */
#include "common.h"
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

static int P[2], ev_fd, ep_thread;
static volatile int thread_done;

static int wait_one(int ep, int timeout, struct epoll_event *ev, int *eintr)
{
	int n;
	for (;;) {
		n = epoll_pwait(ep, ev, 1, timeout, NULL);
		if (n < 0 && errno == EINTR) {
			(*eintr)++;
			continue;
		}
		return n;
	}
}

static void *thread_main(void *arg)
{
	struct epoll_event ev;
	int eintr = 0;
	(void)arg;
	sigset_t all;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);     /* SIGUSR1 is for the main thread */
	int n = wait_one(ep_thread, 60000, &ev, &eintr);
	CHECK(n == 1 && ev.data.u64 == 0xabcdef0123ull && (ev.events & EPOLLIN),
	      "thread: epoll_pwait gave %d, data %llx", n, (unsigned long long)ev.data.u64);
	uint64_t count = 0;
	CHECK(read(ev_fd, &count, 8) == 8 && count == 5, "thread: eventfd count %llu", (unsigned long long)count);
	if (eintr)
		cr_info("thread: epoll_pwait said EINTR %d time(s)", eintr);
	thread_done = 1;
	return NULL;
}

int main(void)
{
	cr_init();
	DIE_IF(pipe(P), "pipe");
	ev_fd = eventfd(0, 0);
	ep_thread = epoll_create1(0);
	int ep_child = epoll_create1(0);
	DIE_IF(ev_fd < 0 || ep_thread < 0 || ep_child < 0, "create");
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 0xabcdef0123ull };
	DIE_IF(epoll_ctl(ep_thread, EPOLL_CTL_ADD, ev_fd, &ev), "epoll_ctl");
	ev.data.u64 = 0x5eed;
	DIE_IF(epoll_ctl(ep_child, EPOLL_CTL_ADD, P[0], &ev), "epoll_ctl");

	pid_t child = cr_fork();
	if (child == 0) {
		struct epoll_event got;
		int eintr = 0;
		close(P[1]);
		cr_sync_post("child");
		int n = wait_one(ep_child, -1, &got, &eintr);
		CHECK(n == 1 && got.data.u64 == 0x5eed && (got.events & EPOLLIN), "child: epoll_wait gave %d, data %llx",
		      n, (unsigned long long)got.data.u64);
		char buf[16] = "";
		CHECK(read(P[0], buf, sizeof(buf)) == 5 && !memcmp(buf, "hello", 5), "child: pipe bytes");
		if (eintr)
			cr_info("child: epoll_wait said EINTR %d time(s)", eintr);
		cr_child_exit();
	}
	close(P[0]);
	pthread_t th;
	DIE_IF(pthread_create(&th, NULL, thread_main, NULL), "pthread_create");
	cr_sync_wait("child");
	cr_wait_in_syscall(child, child, SYS_epoll_pwait, 2000);
	for (int i = 0; i < 400; i++) {   /* until the thread sits in epoll_pwait */
		char path[300], buf[64];
		DIR *d = opendir("/proc/self/task");
		struct dirent *de;
		int found = 0;
		while (d && (de = readdir(d))) {
			if (de->d_name[0] == '.' || atoi(de->d_name) == getpid())
				continue;
			snprintf(path, sizeof(path), "/proc/self/task/%s/syscall", de->d_name);
			if (cr_read_file(path, buf, sizeof(buf)) > 0 && atoi(buf) == SYS_epoll_pwait)
				found = 1;
		}
		if (d)
			closedir(d);
		if (found)
			break;
		cr_sleep_ms(5);
	}
	cr_ready();
	cr_wait();

	CHECK(write(P[1], "hello", 5) == 5, "write pipe");
	uint64_t five = 5;
	CHECK(write(ev_fd, &five, 8) == 8, "write eventfd");
	pthread_join(th, NULL);
	CHECK(thread_done, "thread did not finish");
	kill(child, SIGUSR1);
	cr_expect_exit(child, 0, "child");
	cr_finish();
}
