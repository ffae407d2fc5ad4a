/* Scenario 37: shared open file descriptions.
 * A = open("shared.dat"), B = dup(A), C = dup2(A, 50), O_APPEND set through
 * A (an OFD-level flag), offset 4321; D = a separate open of the same file at
 * offset 99.  A child forked before the dump inherits all of them.
 * After the signal: kcmp(KCMP_FILE) says A/B/C (and the child's A) are one
 * file description and D another; offsets and flags agree; then the child
 * seeks its A to 777 and exits; the parent must see 777 on A, B and C, while
 * D is still at 99.  Finally a seek on C in the parent is seen on B. */
#include "common.h"
#include <linux/kcmp.h>

static int kcmp_file(pid_t p1, pid_t p2, int fd1, int fd2)
{
	return (int)syscall(SYS_kcmp, p1, p2, KCMP_FILE, fd1, fd2);
}

int main(void)
{
	uint8_t buf[8192];
	cr_init();
	cr_fill(buf, sizeof(buf), 0x3700);
	cr_write_file("shared.dat", buf, sizeof(buf));
	int A = open("shared.dat", O_RDWR);
	DIE_IF(A < 0, "open");
	int B = dup(A);
	int C = dup2(A, 50);
	int D = open("shared.dat", O_RDWR);
	DIE_IF(B < 0 || C != 50 || D < 0, "dup");
	DIE_IF(fcntl(A, F_SETFL, O_APPEND), "F_SETFL");
	lseek(A, 4321, SEEK_SET);
	lseek(D, 99, SEEK_SET);
	DIE_IF(kcmp_file(getpid(), getpid(), A, B) != 0, "kcmp not usable here");
	pid_t parent = getpid();

	pid_t child = cr_fork();
	if (child == 0) {
		cr_sync_post("child");
		cr_wait();
		CHECK(kcmp_file(getpid(), parent, A, A) == 0, "child: its A is not the parent's A");
		CHECK(kcmp_file(getpid(), getpid(), A, C) == 0, "child: A and C differ");
		CHECK(kcmp_file(getpid(), getpid(), A, D) != 0, "child: A and D are the same description");
		CHECK(lseek(B, 0, SEEK_CUR) == 4321, "child: B offset %lld", (long long)lseek(B, 0, SEEK_CUR));
		CHECK(fcntl(C, F_GETFL) & O_APPEND, "child: C lost O_APPEND");
		lseek(A, 777, SEEK_SET);
		cr_child_exit();
	}
	cr_sync_wait("child");
	cr_ready();
	cr_wait();

	CHECK(kcmp_file(getpid(), getpid(), A, B) == 0, "A and B are different file descriptions");
	CHECK(kcmp_file(getpid(), getpid(), A, C) == 0, "A and C are different file descriptions");
	CHECK(kcmp_file(getpid(), getpid(), A, D) != 0, "A and D are the same file description");
	CHECK(kcmp_file(getpid(), child, A, A) == 0, "parent's A and child's A are different descriptions");
	CHECK(kcmp_file(getpid(), child, D, D) == 0, "parent's D and child's D are different descriptions");
	int fds[3] = { A, B, C };
	for (int i = 0; i < 3; i++) {
		CHECK(lseek(fds[i], 0, SEEK_CUR) == 4321, "fd %d offset %lld, expected 4321", fds[i],
		      (long long)lseek(fds[i], 0, SEEK_CUR));
		CHECK(fcntl(fds[i], F_GETFL) & O_APPEND, "fd %d lost O_APPEND", fds[i]);
	}
	CHECK(lseek(D, 0, SEEK_CUR) == 99, "D offset %lld, expected 99", (long long)lseek(D, 0, SEEK_CUR));
	CHECK(!(fcntl(D, F_GETFL) & O_APPEND), "D got O_APPEND");

	kill(child, SIGUSR1);
	cr_expect_exit(child, 0, "child");
	for (int i = 0; i < 3; i++)
		CHECK(lseek(fds[i], 0, SEEK_CUR) == 777, "after the child's seek: fd %d offset %lld, expected 777",
		      fds[i], (long long)lseek(fds[i], 0, SEEK_CUR));
	CHECK(lseek(D, 0, SEEK_CUR) == 99, "D moved with the child's seek");
	lseek(C, 1500, SEEK_SET);
	CHECK(lseek(B, 0, SEEK_CUR) == 1500, "seek on C not seen on B");
	CHECK(read(B, buf, 10) == 10, "read B");
	cr_expect_pattern("read through B", buf, 10, 0x3700, 1500);
	cr_finish();
}
