/* Scenario 60: a userfaultfd is refused, and the refusal changes nothing.
 * The root holds a userfaultfd (API handshake done, 4 pages registered for
 * missing-page faults) and a pipe with 100 bytes queued; a child shares both.
 * The dump must fail (the test checks the message); after the signal the
 * tree checks that it is untouched: the registration still catches a fault
 * (resolved with UFFDIO_COPY from a thread), the pipe still holds its bytes. */
#include "common.h"
#include <poll.h>
#include <pthread.h>
#include <sys/ioctl.h>
#include <linux/userfaultfd.h>

static int uffd;
static uint8_t *area;

static void *resolver(void *arg)
{
	(void)arg;
	struct pollfd p = { .fd = uffd, .events = POLLIN };
	if (poll(&p, 1, CR_PATIENCE_MS) != 1) {
		cr_fail("no userfault event");
		return NULL;
	}
	struct uffd_msg msg;
	if (read(uffd, &msg, sizeof(msg)) != sizeof(msg) || msg.event != UFFD_EVENT_PAGEFAULT) {
		cr_fail("bad userfault message");
		return NULL;
	}
	static uint8_t page[65536] __attribute__((aligned(4096)));
	cr_fill(page, cr_page_size(), 0x600);
	struct uffdio_copy copy = { .dst = msg.arg.pagefault.address & ~(cr_page_size() - 1),
				    .src = (unsigned long)page, .len = cr_page_size() };
	CHECK(ioctl(uffd, UFFDIO_COPY, &copy) == 0, "UFFDIO_COPY: %s", strerror(errno));
	return NULL;
}

int main(void)
{
	cr_init();
	size_t pg = cr_page_size();
	uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (uffd < 0) {
		cr_info("SKIP-REASON userfaultfd: %s", strerror(errno));
		cr_write_all(1, "SKIP: no userfaultfd\n", 21);
		return CR_EXIT_SKIP;
	}
	struct uffdio_api api = { .api = UFFD_API };
	DIE_IF(ioctl(uffd, UFFDIO_API, &api), "UFFDIO_API");
	area = mmap(NULL, 4 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	DIE_IF(area == MAP_FAILED, "mmap");
	struct uffdio_register reg = { .range = { (unsigned long)area, 4 * pg }, .mode = UFFDIO_REGISTER_MODE_MISSING };
	DIE_IF(ioctl(uffd, UFFDIO_REGISTER, &reg), "UFFDIO_REGISTER");
	int P[2];
	DIE_IF(pipe(P), "pipe");
	uint8_t buf[100];
	cr_fill(buf, sizeof(buf), 0x601);
	DIE_IF(write(P[1], buf, sizeof(buf)) != sizeof(buf), "write");
	pid_t child = cr_fork();
	if (child == 0) {
		cr_sync_post("child");
		cr_wait();
		cr_child_exit();
	}
	cr_sync_wait("child");
	cr_info("uffd=%d", uffd);
	cr_ready();
	cr_wait();

	pthread_t th;
	DIE_IF(pthread_create(&th, NULL, resolver, NULL), "pthread_create");
	cr_expect_pattern("page filled by the resolver", area + pg, pg, 0x600, 0);
	pthread_join(th, NULL);
	int n = -1;
	CHECK(ioctl(P[0], FIONREAD, &n) == 0 && n == 100, "pipe holds %d bytes", n);
	CHECK(read(P[0], buf, sizeof(buf)) == 100, "read pipe");
	cr_expect_pattern("pipe", buf, 100, 0x601, 0);
	kill(child, SIGUSR1);
	cr_expect_exit(child, 0, "child");
	cr_finish();
}
