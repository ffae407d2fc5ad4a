/* Scenario 50: pipes with bytes in flight.
 * A: both ends in the root, 1000 pattern bytes queued.
 * B: capacity 256 KiB, 200 KiB queued, read end O_NONBLOCK.
 * C: capacity 2 MiB, above fs.pipe-max-size (raised for the moment of the
 *    call, as root may), 1.5 MiB queued.
 * D: shared with a child; the parent queued 5000 bytes before the dump.
 * E: empty; the child is blocked in read() on it at dump time.
 * F: 3000 bytes queued, then the write end closed everywhere.
 * After the signal: capacities, flags and FIONREAD; each pipe takes exactly
 * (capacity - queued) more bytes with non-blocking writes; then the queued
 * bytes come out exactly once, in order, followed by the new ones.  The
 * parent writes "go" to E: the child's read() returns it, the child checks
 * D and exits.  F gives its bytes, then end-of-file. */
#include "common.h"
#include <sys/ioctl.h>

#define CAP_B (256 << 10)
#define CAP_C (2 << 20)

static void write_pattern(int fd, size_t n, uint64_t seed)
{
	static uint8_t buf[1 << 16];
	size_t off = 0;
	while (off < n) {
		size_t chunk = n - off < sizeof(buf) ? n - off : sizeof(buf);
		cr_fill_off(buf, chunk, seed, off);
		ssize_t r = write(fd, buf, chunk);
		DIE_IF(r <= 0, "write pattern");
		off += (size_t)r;
	}
}

static int set_pipe_max(long value)
{
	char buf[32];
	int fd = open("/proc/sys/fs/pipe-max-size", O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int n = snprintf(buf, sizeof(buf), "%ld", value);
	int r = write(fd, buf, (size_t)n) == n ? 0 : -1;
	close(fd);
	return r;
}

/* Read exactly n bytes (the fd may be non-blocking: the bytes are already there). */
static int read_exact(int fd, uint8_t *buf, size_t n)
{
	size_t off = 0;
	while (off < n) {
		ssize_t r = read(fd, buf + off, n - off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		off += (size_t)r;
	}
	return 0;
}

/* The pipe (r, w) of capacity cap holding `queued` bytes of pattern seed:
 * check it, top it up to the brim, drain it and check every byte. */
static void check_pipe(const char *name, int r, int w, int cap, size_t queued, uint64_t seed)
{
	int n = -1;
	CHECK_EQ(fcntl(w, F_GETPIPE_SZ), cap, name);
	CHECK(ioctl(r, FIONREAD, &n) == 0 && n == (int)queued, "%s: FIONREAD %d, expected %zu", name, n,
	      queued);
	int wflags = fcntl(w, F_GETFL);
	fcntl(w, F_SETFL, wflags | O_NONBLOCK);
	size_t room = 0;
	static uint8_t chunk[1 << 16];
	/* top up the last, partly filled page first (a write merges into it only
	 * if the buffer is an ordinary one and the bytes fit), then whole chunks */
	size_t first = (cr_page_size() - queued % cr_page_size()) % cr_page_size();
	for (;;) {
		size_t want = first ? first : sizeof(chunk);
		first = 0;
		cr_fill_off(chunk, want, seed + 1, room);
		ssize_t k = write(w, chunk, want);
		if (k < 0 && errno == EAGAIN)
			break;
		if (k <= 0) {
			cr_fail("%s: write to fill: %s", name, strerror(errno));
			break;
		}
		room += (size_t)k;
	}
	fcntl(w, F_SETFL, wflags);
	CHECK(room == (size_t)cap - queued, "%s: took %zu more bytes, expected %zu", name, room,
	      (size_t)cap - queued);
	uint8_t *all = malloc(queued + room);
	DIE_IF(!all, "malloc");
	if (read_exact(r, all, queued + room)) {
		cr_fail("%s: could not read back %zu bytes", name, queued + room);
	} else {
		cr_expect_pattern(name, all, queued, seed, 0);
		cr_expect_pattern(name, all + queued, room, seed + 1, 0);
	}
	free(all);
	CHECK(ioctl(r, FIONREAD, &n) == 0 && n == 0, "%s: %d bytes left after draining", name, n);
}

int main(void)
{
	int A[2], B[2], C[2], D[2], E[2], F[2];
	cr_init();
	DIE_IF(pipe(A) || pipe(B) || pipe(C) || pipe(D) || pipe(E) || pipe(F), "pipe");
	write_pattern(A[1], 1000, 0x50a);

	DIE_IF(fcntl(B[1], F_SETPIPE_SZ, CAP_B) < 0, "F_SETPIPE_SZ B");
	write_pattern(B[1], 200 << 10, 0x50b);
	DIE_IF(fcntl(B[0], F_SETFL, O_NONBLOCK), "F_SETFL B");

	int have_c = fcntl(C[1], F_SETPIPE_SZ, CAP_C) == CAP_C;
	if (!have_c) {
		char old[32] = "";
		cr_read_file("/proc/sys/fs/pipe-max-size", old, sizeof(old));
		if (set_pipe_max(CAP_C) == 0) {
			have_c = fcntl(C[1], F_SETPIPE_SZ, CAP_C) == CAP_C;
			set_pipe_max(strtol(old, NULL, 10));
		}
	}
	if (!have_c)
		cr_info("cannot give a pipe 2 MiB here; pipe C left at its default size");
	int cap_c = fcntl(C[1], F_GETPIPE_SZ);
	size_t queued_c = (size_t)cap_c * 3 / 4;
	write_pattern(C[1], queued_c, 0x50c);

	write_pattern(D[1], 5000, 0x50d);
	write_pattern(F[1], 3000, 0x50f);

	pid_t child = cr_fork();
	if (child == 0) {
		uint8_t buf[5000];
		close(D[1]);
		close(E[1]);
		close(F[0]);
		close(F[1]);
		cr_sync_post("child");
		/* blocked here, on an empty pipe, when the dump comes */
		ssize_t r;
		do
			r = read(E[0], buf, sizeof(buf));
		while (r < 0 && errno == EINTR);
		CHECK(r == 2 && !memcmp(buf, "go", 2), "child: read on E returned %zd", r);
		CHECK(read_exact(D[0], buf, 5000) == 0, "child: D short");
		cr_expect_pattern("child: D", buf, 5000, 0x50d, 0);
		int n = -1;
		CHECK(ioctl(D[0], FIONREAD, &n) == 0 && n == 0, "child: D has %d more bytes", n);
		cr_child_exit();
	}
	close(D[0]);
	close(E[0]);
	close(F[1]);
	cr_sync_wait("child");
	cr_wait_in_syscall(child, child, SYS_read, 2000);
	cr_ready();
	cr_wait();

	check_pipe("A", A[0], A[1], 65536, 1000, 0x50a);
	check_pipe("B", B[0], B[1], CAP_B, 200 << 10, 0x50b);
	CHECK(fcntl(B[0], F_GETFL) & O_NONBLOCK, "B: read end lost O_NONBLOCK");
	CHECK(!(fcntl(B[1], F_GETFL) & O_NONBLOCK), "B: write end got O_NONBLOCK");
	CHECK_EQ(fcntl(B[0], F_GETFL) & O_ACCMODE, O_RDONLY, "B: read end access mode");
	CHECK_EQ(fcntl(B[1], F_GETFL) & O_ACCMODE, O_WRONLY, "B: write end access mode");
	check_pipe("C", C[0], C[1], cap_c, queued_c, 0x50c);

	uint8_t buf[3001];
	CHECK(read_exact(F[0], buf, 3000) == 0, "F: short");
	cr_expect_pattern("F", buf, 3000, 0x50f, 0);
	CHECK(read(F[0], buf, 1) == 0, "F: no end-of-file after its bytes");

	CHECK(write(E[1], "go", 2) == 2, "write E");
	kill(child, SIGUSR1);
	cr_expect_exit(child, 0, "child");
	cr_finish();
}
