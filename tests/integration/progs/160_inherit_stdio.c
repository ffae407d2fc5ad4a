/* Scenario 160: stdout and stderr are one pipe of the caller's (as a container's stdio is
 * runc's), and the program also holds a pipe of its own with bytes queued in it.
 * At restore the caller hands in a new pipe for the old one (inherit_fd pipe:[INO]).
 * After the signal: fds 1 and 2 are still one pipe, write-only; the private pipe still
 * holds its bytes; PASS goes out through fd 1, so the caller reads it on the new pipe. */
#include "common.h"

int main(void)
{
	cr_init();
	int own[2];
	DIE_IF(pipe(own) < 0, "pipe");
	DIE_IF(write(own[1], "queued", 6) != 6, "write");
	struct stat before;
	DIE_IF(fstat(1, &before) < 0, "fstat");
	cr_ready();
	cr_wait();
	struct stat out, err;
	CHECK(fstat(1, &out) == 0 && S_ISFIFO(out.st_mode), "fd 1 is not a pipe");
	CHECK(fstat(2, &err) == 0 && err.st_ino == out.st_ino, "fds 1 and 2 are no longer one pipe");
	CHECK((fcntl(1, F_GETFL) & O_ACCMODE) == O_WRONLY, "fd 1 is not write-only");
	char buf[16] = "";
	CHECK(read(own[0], buf, sizeof(buf)) == 6 && memcmp(buf, "queued", 6) == 0,
	      "the private pipe lost its bytes");
	cr_info("stdout was pipe:[%lu] at dump, is pipe:[%lu] now", (unsigned long)before.st_ino,
		(unsigned long)out.st_ino);
	cr_finish();
}
