/* Scenario 34: a stopped child.
 * Child S (2 threads, some patterned memory, a SIGCONT handler) stops itself
 * with SIGSTOP; the root sees the stop with waitpid(WUNTRACED).
 * After the signal: the root checks S and both its threads are still in
 * state 'T' (stopped), sends SIGCONT, and S - resuming right after its
 * kill(SIGSTOP) - checks its memory and that SIGCONT was delivered once, then
 * exits 0. */
#include "common.h"
#include <pthread.h>

static volatile int cont_hits, resumed;
static void on_cont(int s) { (void)s; cont_hits++; }

static void *s_thread(void *arg)
{
	(void)arg;
	while (!resumed)
		cr_sleep_ms(20);
	return NULL;
}

static int all_tasks_stopped(pid_t pid, char *states, size_t cap)
{
	char path[64];
	int ok = 1, n = 0;
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	DIR *d = opendir(path);
	struct dirent *e;
	states[0] = 0;
	while (d && (e = readdir(d))) {
		if (atoi(e->d_name) <= 0)
			continue;
		char sp[96];
		snprintf(sp, sizeof(sp), "/proc/%d/task/%d/stat", (int)pid, atoi(e->d_name));
		char st = cr_proc_state(sp);
		size_t l = strlen(states);
		snprintf(states + l, cap - l, "%s%d:%c", n ? " " : "", atoi(e->d_name), st);
		if (st != 'T')
			ok = 0;
		n++;
	}
	if (d)
		closedir(d);
	return ok && n == 2;
}

int main(void)
{
	cr_init();
	pid_t s = cr_fork();
	if (s == 0) {
		struct sigaction sa = { 0 };
		sa.sa_handler = on_cont;
		sigaction(SIGCONT, &sa, NULL);
		uint8_t *mem = malloc(100000);
		cr_fill(mem, 100000, 0x3400);
		pthread_t t;
		DIE_IF(pthread_create(&t, NULL, s_thread, NULL), "pthread_create");
		kill(getpid(), SIGSTOP);
		/* resumed by SIGCONT */
		resumed = 1;
		pthread_join(t, NULL);
		cr_expect_pattern("S memory", mem, 100000, 0x3400, 0);
		CHECK(cont_hits == 1, "S: SIGCONT handler ran %d times, expected 1", cont_hits);
		cr_child_exit();
	}
	int st = 0;
	DIE_IF(cr_waitpid(s, &st, WUNTRACED) != s || !WIFSTOPPED(st), "waitpid(WUNTRACED)");
	DIE_IF(WSTOPSIG(st) != SIGSTOP, "stopped by %d", WSTOPSIG(st));
	char states[256];
	for (int i = 0; i < 1000 && !all_tasks_stopped(s, states, sizeof(states)); i++)
		cr_sleep_ms(5);
	DIE_IF(!all_tasks_stopped(s, states, sizeof(states)), "S not fully stopped: %s", states);

	cr_ready();
	cr_wait();
	CHECK(all_tasks_stopped(s, states, sizeof(states)), "S is not stopped after restore: tasks %s", states);
	kill(s, SIGCONT);
	for (;;) {
		pid_t r = cr_waitpid(s, &st, 0);
		if (r != s) {
			cr_fail("waitpid(S): %s", strerror(errno));
			break;
		}
		if (WIFEXITED(st) || WIFSIGNALED(st)) {
			CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "S status 0x%x", st);
			break;
		}
	}
	cr_finish();
}
