/*
 * An inotify instance with events queued at the signal (IN_CREATE of d/a on the
 * directory's watch, IN_MODIFY on d/f's).  Restored, it holds IN_Q_OVERFLOW alone
 * (the events are not carried: the application is told to rescan); with the
 * argument "original" (a --leave-running dump) it holds the very events queued.
 * Either way the queue is empty after them and new events arrive on the same watches.
 */
#include "common.h"
#include <sys/inotify.h>

struct ev { int wd; unsigned mask; char name[32]; };

/* The next event, or wd 0 if none is queued. */
static struct ev next_event(int fd)
{
	static char buf[4096];
	static size_t have, at;
	struct ev e = { 0, 0, "" };
	if (at == have) {
		ssize_t r = read(fd, buf, sizeof(buf));
		if (r <= 0)
			return e;
		have = (size_t)r;
		at = 0;
	}
	struct inotify_event *ie = (struct inotify_event *)(buf + at);
	e.wd = ie->wd;
	e.mask = ie->mask;
	if (ie->len)
		snprintf(e.name, sizeof(e.name), "%s", ie->name);
	at += sizeof(*ie) + ie->len;
	return e;
}

static void expect(const char *what, int fd, int wd, unsigned mask, const char *name)
{
	struct ev e = next_event(fd);
	if (e.wd != wd || e.mask != mask || strcmp(e.name, name))
		cr_fail("%s: event wd %d mask %#x \"%s\", expected wd %d mask %#x \"%s\"", what, e.wd, e.mask, e.name,
			wd, mask, name);
}

int main(int argc, char **argv)
{
	int original = argc > 1 && !strcmp(argv[1], "original");
	cr_init();
	DIE_IF(mkdir("d", 0700) && errno != EEXIST, "mkdir");
	cr_write_file("d/f", "f", 1);
	int I = inotify_init1(IN_NONBLOCK);
	DIE_IF(I < 0, "inotify_init1");
	int wd_dir = inotify_add_watch(I, "d", IN_CREATE | IN_DELETE);
	int wd_f = inotify_add_watch(I, "d/f", IN_MODIFY);
	DIE_IF(wd_dir != 1 || wd_f != 2, "watches %d %d", wd_dir, wd_f);
	close(open("d/a", O_CREAT | O_WRONLY, 0600));
	int f = open("d/f", O_WRONLY);
	DIE_IF(f < 0 || write(f, "x", 1) != 1, "write d/f");

	cr_ready();
	cr_wait();

	if (original) {
		expect("queued event 1", I, wd_dir, IN_CREATE, "a");
		expect("queued event 2", I, wd_f, IN_MODIFY, "");
	} else {
		expect("queued events", I, -1, IN_Q_OVERFLOW, "");
	}
	expect("then nothing", I, 0, 0, "");
	close(open("d/b", O_CREAT | O_WRONLY, 0600));
	DIE_IF(write(f, "y", 1) != 1, "write d/f");
	expect("new event on the directory", I, wd_dir, IN_CREATE, "b");
	expect("new event on the file", I, wd_f, IN_MODIFY, "");
	expect("and nothing else", I, 0, 0, "");
	unlink("d/a");
	unlink("d/b");
	cr_finish();
}
