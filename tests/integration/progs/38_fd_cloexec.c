/* Scenario 38: per-descriptor close-on-exec flags.
 *   A = open(O_CLOEXEC)                    FD_CLOEXEC
 *   B = dup(A)                             0
 *   C = fcntl(A, F_DUPFD_CLOEXEC, 200)     FD_CLOEXEC
 *   D = dup3(B, 300, O_CLOEXEC)            FD_CLOEXEC
 *   E = open() then F_SETFD FD_CLOEXEC     FD_CLOEXEC
 *   F = dup2(E, 400)                       0
 * After the signal: F_GETFD of each is unchanged, and a forked child that
 * execs this program in "probe" mode finds exactly B and F still open (its
 * exit status is a bitmask of the open ones). */
#include "common.h"

#define N 6

static int probe(int argc, char **argv)
{
	int mask = 0;
	for (int i = 2; i < argc && i - 2 < N; i++)
		if (fcntl(atoi(argv[i]), F_GETFD) >= 0)
			mask |= 1 << (i - 2);
	return mask;
}

int main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "probe"))
		return probe(argc, argv);
	cr_init();
	cr_write_file("f.dat", "hello", 5);
	int fd[N];
	const char *names[N] = { "A", "B", "C", "D", "E", "F" };
	fd[0] = open("f.dat", O_RDONLY | O_CLOEXEC);
	fd[1] = dup(fd[0]);
	fd[2] = fcntl(fd[0], F_DUPFD_CLOEXEC, 200);
	fd[3] = dup3(fd[1], 300, O_CLOEXEC);
	fd[4] = open("f.dat", O_RDWR);
	DIE_IF(fcntl(fd[4], F_SETFD, FD_CLOEXEC), "F_SETFD");
	fd[5] = dup2(fd[4], 400);
	const int expect[N] = { FD_CLOEXEC, 0, FD_CLOEXEC, FD_CLOEXEC, FD_CLOEXEC, 0 };
	for (int i = 0; i < N; i++)
		DIE_IF(fd[i] < 0 || fcntl(fd[i], F_GETFD) != expect[i], "fd %s set-up", names[i]);
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	DIE_IF(n <= 0, "readlink /proc/self/exe");
	exe[n] = 0;

	cr_ready();
	cr_wait();

	for (int i = 0; i < N; i++) {
		int f = fcntl(fd[i], F_GETFD);
		CHECK(f == expect[i], "fd %s (%d): F_GETFD %d, expected %d", names[i], fd[i], f, expect[i]);
	}
	pid_t c = cr_fork();
	if (c == 0) {
		char a[N][16];
		char *av[N + 3];
		av[0] = exe;
		av[1] = "probe";
		for (int i = 0; i < N; i++) {
			snprintf(a[i], sizeof(a[i]), "%d", fd[i]);
			av[i + 2] = a[i];
		}
		av[N + 2] = NULL;
		execv(exe, av);
		_exit(255);
	}
	int st = 0;
	cr_waitpid(c, &st, 0);
	int want = (1 << 1) | (1 << 5);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == want, "after exec the open set is 0x%x, expected 0x%x (B and F)",
	      WIFEXITED(st) ? WEXITSTATUS(st) : -1, want);
	cr_finish();
}
