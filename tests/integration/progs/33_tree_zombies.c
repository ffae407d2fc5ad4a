/* Scenario 33: zombies.
 * Unreaped children of the root at dump time:
 *   Z1 exited with code 42, Z2 killed by SIGTERM, Z3 killed by SIGKILL;
 * and a live child C with its own unreaped zombie child ZZ (exit code 7).
 * (waitid(WNOWAIT) confirms each is dead without reaping it.)
 * After the signal: /proc shows Z1..Z3 as zombies ('Z'), waitpid gives
 * exit 42, WTERMSIG 15 and WTERMSIG 9; C reaps ZZ with exit 7. */
#include "common.h"

static void wait_dead(pid_t p)
{
	siginfo_t si;
	memset(&si, 0, sizeof(si));
	int r;
	do
		r = waitid(P_PID, (id_t)p, &si, WEXITED | WNOWAIT);
	while (r < 0 && errno == EINTR);
	DIE_IF(r != 0 || si.si_pid != p, "waitid(WNOWAIT) on %d", (int)p);
}

int main(void)
{
	cr_init();
	pid_t z1 = cr_fork();
	if (z1 == 0)
		_exit(42);
	pid_t z2 = cr_fork();
	if (z2 == 0) {
		signal(SIGTERM, SIG_DFL);
		for (;;)
			pause();
	}
	pid_t z3 = cr_fork();
	if (z3 == 0)
		for (;;)
			pause();
	pid_t c = cr_fork();
	if (c == 0) {
		pid_t zz = cr_fork();
		if (zz == 0)
			_exit(7);
		wait_dead(zz);
		cr_sync_post("C");
		cr_wait();
		char st = cr_pid_state(zz);
		CHECK(st == 'Z', "C: child %d has state '%c', expected zombie", (int)zz, st);
		cr_expect_exit(zz, 7, "C's zombie child");
		cr_child_exit();
	}
	kill(z2, SIGTERM);
	kill(z3, SIGKILL);
	wait_dead(z1);
	wait_dead(z2);
	wait_dead(z3);
	cr_sync_wait("C");

	cr_ready();
	cr_wait();
	pid_t z[3] = { z1, z2, z3 };
	for (int i = 0; i < 3; i++) {
		char st = cr_pid_state(z[i]);
		CHECK(st == 'Z', "Z%d (pid %d) has state '%c', expected zombie", i + 1, (int)z[i], st);
	}
	int s = 0;
	if (CHECK(cr_waitpid(z1, &s, 0) == z1, "waitpid(Z1): %s", strerror(errno)))
		CHECK(WIFEXITED(s) && WEXITSTATUS(s) == 42, "Z1 status 0x%x, expected exit 42", s);
	if (CHECK(cr_waitpid(z2, &s, 0) == z2, "waitpid(Z2): %s", strerror(errno)))
		CHECK(WIFSIGNALED(s) && WTERMSIG(s) == SIGTERM, "Z2 status 0x%x, expected SIGTERM", s);
	if (CHECK(cr_waitpid(z3, &s, 0) == z3, "waitpid(Z3): %s", strerror(errno)))
		CHECK(WIFSIGNALED(s) && WTERMSIG(s) == SIGKILL, "Z3 status 0x%x, expected SIGKILL", s);
	kill(c, SIGUSR1);
	cr_expect_exit(c, 0, "C");
	errno = 0;
	CHECK(waitpid(-1, &s, WNOHANG) == -1 && errno == ECHILD, "unexpected extra child");
	cr_finish();
}
