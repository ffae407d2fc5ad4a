/* Scenario 51: FIFOs with bytes in flight.
 * fifo1: opened read-only (O_NONBLOCK), write-only and read-write; capacity
 *        128 KiB; 7000 bytes queued; a child shares the read-only one.
 * fifo2: opened read-write, 2500 bytes queued, then its name removed.
 * fifo3: only a writer left (the read-write open used to get it is closed),
 *        100 bytes queued.
 * After the signal: the fds still name their FIFOs (fifo2 as deleted), with
 * their access modes and flags; the queued bytes come out once, in order;
 * bytes written on one open come out of another; a new reader of fifo3
 * gets its 100 bytes. */
#include "common.h"
#include <sys/ioctl.h>

static void write_pattern(int fd, size_t n, uint64_t seed)
{
	uint8_t buf[8192];
	for (size_t off = 0; off < n;) {
		size_t chunk = n - off < sizeof(buf) ? n - off : sizeof(buf);
		cr_fill_off(buf, chunk, seed, off);
		ssize_t r = write(fd, buf, chunk);
		DIE_IF(r <= 0, "write pattern");
		off += (size_t)r;
	}
}

static void expect_bytes(const char *what, int fd, size_t n, uint64_t seed)
{
	uint8_t *buf = malloc(n + 1);
	size_t off = 0;
	DIE_IF(!buf, "malloc");
	while (off < n) {
		ssize_t r = read(fd, buf + off, n - off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		off += (size_t)r;
	}
	if (off != n)
		cr_fail("%s: read %zu bytes, expected %zu", what, off, n);
	else
		cr_expect_pattern(what, buf, n, seed, 0);
	int left = -1;
	CHECK(ioctl(fd, FIONREAD, &left) == 0 && left == 0, "%s: %d bytes left", what, left);
	free(buf);
}

static void expect_link(const char *what, int fd, const char *suffix)
{
	char path[64], link[PATH_MAX], want[PATH_MAX + 64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(path, link, sizeof(link) - 1);
	link[n > 0 ? n : 0] = 0;
	snprintf(want, sizeof(want), "%s/%s", cr_dir, suffix);
	CHECK(!strcmp(link, want), "%s: fd %d is %s, expected %s", what, fd, link, want);
}

int main(void)
{
	cr_init();
	unlink("fifo1");
	unlink("fifo2");
	unlink("fifo3");
	DIE_IF(mkfifo("fifo1", 0640) || mkfifo("fifo2", 0600) || mkfifo("fifo3", 0600), "mkfifo");
	int R = open("fifo1", O_RDONLY | O_NONBLOCK);
	int W = open("fifo1", O_WRONLY);
	int RW = open("fifo1", O_RDWR);
	DIE_IF(R < 0 || W < 0 || RW < 0, "open fifo1");
	DIE_IF(fcntl(W, F_SETPIPE_SZ, 128 << 10) < 0, "F_SETPIPE_SZ");
	write_pattern(W, 7000, 0x511);

	int RW2 = open("fifo2", O_RDWR);
	DIE_IF(RW2 < 0, "open fifo2");
	write_pattern(RW2, 2500, 0x512);
	DIE_IF(unlink("fifo2"), "unlink fifo2");

	int tmp = open("fifo3", O_RDWR);
	int W3 = open("fifo3", O_WRONLY);
	DIE_IF(tmp < 0 || W3 < 0, "open fifo3");
	write_pattern(W3, 100, 0x513);
	close(tmp);

	pid_t child = cr_fork();
	if (child == 0) {
		cr_sync_post("child");
		cr_wait();
		CHECK(fcntl(R, F_GETFL) & O_NONBLOCK, "child: R lost O_NONBLOCK");
		expect_link("child: R", R, "fifo1");
		cr_child_exit();
	}
	cr_sync_wait("child");
	cr_ready();
	cr_wait();

	expect_link("R", R, "fifo1");
	expect_link("W", W, "fifo1");
	expect_link("RW", RW, "fifo1");
	expect_link("RW2", RW2, "fifo2 (deleted)");
	expect_link("W3", W3, "fifo3");
	CHECK_EQ(fcntl(R, F_GETFL) & (O_ACCMODE | O_NONBLOCK), O_RDONLY | O_NONBLOCK, "R flags");
	CHECK_EQ(fcntl(W, F_GETFL) & (O_ACCMODE | O_NONBLOCK), O_WRONLY, "W flags");
	CHECK_EQ(fcntl(RW, F_GETFL) & (O_ACCMODE | O_NONBLOCK), O_RDWR, "RW flags");
	CHECK_EQ(fcntl(W3, F_GETFL) & (O_ACCMODE | O_NONBLOCK), O_WRONLY, "W3 flags");
	CHECK_EQ(fcntl(R, F_GETPIPE_SZ), 128 << 10, "fifo1 capacity");
	struct stat st;
	CHECK(fstat(RW2, &st) == 0 && S_ISFIFO(st.st_mode) && st.st_nlink == 0, "fifo2 is not an unlinked FIFO");
	CHECK(access("fifo2", F_OK) != 0, "fifo2 has a name again");

	expect_bytes("fifo1 through R", R, 7000, 0x511);
	write_pattern(RW, 300, 0x514);
	expect_bytes("fifo1 written by RW, read by R", R, 300, 0x514);
	write_pattern(W, 40, 0x515);
	expect_bytes("fifo1 written by W, read by RW", RW, 40, 0x515);
	expect_bytes("fifo2", RW2, 2500, 0x512);
	int R3 = open("fifo3", O_RDONLY | O_NONBLOCK);
	CHECK(R3 >= 0, "open fifo3 for reading");
	if (R3 >= 0)
		expect_bytes("fifo3", R3, 100, 0x513);

	kill(child, SIGUSR1);
	cr_expect_exit(child, 0, "child");
	cr_finish();
}
