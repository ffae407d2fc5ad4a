/*
 * A fanotify group with an event queued at the signal (FAN_CLOSE_WRITE of file g, from
 * this process).  Restored, it holds FAN_Q_OVERFLOW alone (the event is not carried:
 * the application is told to rescan); with the argument "original" (no restore, or a
 * --leave-running dump) it holds the very event queued.  Either way the queue is empty
 * after it and a new event arrives on the same mark.
 */
#include "common.h"
#include <sys/fanotify.h>

/* One event: its mask, and whether it came from us on g; mask 0 if none is queued. */
static uint64_t next_event(int fd, int *ours)
{
	static char buf[4096];
	*ours = 0;
	ssize_t r = read(fd, buf, sizeof(struct fanotify_event_metadata));
	if (r <= 0)
		return 0;
	struct fanotify_event_metadata *m = (void *)buf;
	if (m->fd >= 0) {
		char p[64], link[PATH_MAX];
		snprintf(p, sizeof(p), "/proc/self/fd/%d", m->fd);
		ssize_t l = readlink(p, link, sizeof(link) - 1);
		link[l > 0 ? l : 0] = 0;
		*ours = m->pid == getpid() && l > 2 && !strcmp(link + l - 2, "/g");
		close(m->fd);
	}
	return m->mask;
}

static void expect(const char *what, int fd, uint64_t mask, int ours)
{
	int us;
	uint64_t got = next_event(fd, &us);
	if (got != mask || us != ours)
		cr_fail("%s: event mask %#llx (ours %d), expected %#llx (ours %d)", what, (unsigned long long)got, us,
			(unsigned long long)mask, ours);
}

int main(int argc, char **argv)
{
	int original = argc > 1 && !strcmp(argv[1], "original");
	cr_init();
	char dir[] = "/tmp/lxc-cr-sock2-187-XXXXXX";
	DIE_IF(!mkdtemp(dir) || chdir(dir), "mkdtemp");
	cr_write_file("g", "g", 1);
	int G = fanotify_init(FAN_CLASS_NOTIF | FAN_NONBLOCK, O_RDONLY);
	if (G < 0)
		cr_skip("no fanotify");
	DIE_IF(fanotify_mark(G, FAN_MARK_ADD, FAN_CLOSE_WRITE, AT_FDCWD, "g"), "fanotify_mark");
	cr_write_file("g", "h", 1);

	cr_ready();
	cr_wait();

	if (original)
		expect("queued event", G, FAN_CLOSE_WRITE, 1);
	else
		expect("queued events", G, FAN_Q_OVERFLOW, 0);
	expect("then nothing", G, 0, 0);
	cr_write_file("g", "i", 1);
	expect("a new event", G, FAN_CLOSE_WRITE, 1);
	expect("and nothing else", G, 0, 0);
	unlink("g");
	chdir("/");
	rmdir(dir);
	cr_finish();
}
