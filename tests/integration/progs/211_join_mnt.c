/* Scenario 211: a tree restored into a mount namespace that exists and belongs to someone else
 * (--join-ns mnt:...).  Both roles run as PID 1 of unshare -pf --mount, with a tmpfs of their
 * own on DIR holding DIR/marker, whose text is the role's name (the test's shell makes both
 * before exec):
 *
 *   211_join_mnt hold DIR   the holder.  After the signal it checks that its mount table has as
 *                           many mounts as at the start and that its marker still says "hold":
 *                           no mount of a restored tree's images was made in its namespace.
 *   211_join_mnt tree DIR   a tree with a child and memory with a pattern.  Restored with
 *                           --join-ns into the holder's mount namespace, both tasks check from
 *                           inside that DIR/marker says "hold" (they see the holder's tmpfs,
 *                           not their own), and the root its memory.
 */
#include "common.h"

#define SEED_MEM 0x211b
#define MEM_SIZE (1 << 20)

static const char *dir;

static int marker_says(const char *want)
{
	char path[PATH_MAX], buf[64];
	snprintf(path, sizeof(path), "%s/marker", dir);
	ssize_t n = cr_read_file(path, buf, sizeof(buf));
	if (n < 0)
		return 0;
	if (n > 0 && buf[n - 1] == '\n')
		buf[n - 1] = '\0';
	return strcmp(buf, want) == 0;
}

static int count_mounts(void)
{
	char buf[1 << 16];
	ssize_t n = cr_read_file("/proc/self/mountinfo", buf, sizeof(buf));
	DIE_IF(n <= 0 || n >= (ssize_t)sizeof(buf) - 1, "read mountinfo");
	int lines = 0;
	for (ssize_t i = 0; i < n; i++)
		lines += buf[i] == '\n';
	return lines;
}

static void hold(void)
{
	DIE_IF(!marker_says("hold"), "the holder's marker is not there");
	int mounts = count_mounts();
	cr_ready();
	cr_wait();
	int now = count_mounts();
	CHECK(now == mounts, "the holder's namespace has %d mounts, it had %d", now, mounts);
	CHECK(marker_says("hold"), "the holder's marker changed");
	cr_finish();
}

static void tree(void)
{
	DIE_IF(getpid() != 1, "not the init of a PID namespace");
	DIE_IF(setsid() < 0, "setsid");
	DIE_IF(!marker_says("tree"), "the tree's own marker is not there");
	char *mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	DIE_IF(mem == MAP_FAILED, "mmap");
	cr_fill(mem, MEM_SIZE, SEED_MEM);
	pid_t c = cr_fork();
	if (c == 0) {
		cr_wait();
		CHECK(marker_says("hold"), "the child does not see the holder's marker in %s", dir);
		cr_child_exit();
	}
	cr_ready();
	cr_wait();
	CHECK(marker_says("hold"), "the root does not see the holder's marker in %s", dir);
	CHECK(cr_check(mem, MEM_SIZE, SEED_MEM) < 0, "memory lost its pattern");
	kill(c, SIGUSR1);
	int st;
	CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0, "child failed (%#x)", st);
	cr_finish();
}

int main(int argc, char **argv)
{
	cr_init();
	DIE_IF(argc != 3, "usage: 211_join_mnt hold|tree DIR");
	dir = argv[2];
	if (strcmp(argv[1], "hold") == 0)
		hold();
	else if (strcmp(argv[1], "tree") == 0)
		tree();
	cr_die("unknown role %s", argv[1]);
}
