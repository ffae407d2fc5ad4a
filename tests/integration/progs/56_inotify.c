/* Scenario 56: inotify watches.
 * I (blocking) watches: wd 1 the directory d (IN_CREATE | IN_DELETE | IN_EXCL_UNLINK),
 * wd 2 the file d/f1 (IN_MODIFY | IN_ONESHOT), wd 3 was d/f2 and is removed
 * (a gap), wd 4 the file d/gone (IN_MODIFY), which is then
 * deleted while the task keeps it open as G.  I2 (IN_NONBLOCK | IN_CLOEXEC)
 * watches the directory too (wd 1, IN_ATTRIB).  The queues are empty.
 * After the signal: the same watches in fdinfo (wd and mask); creating
 * d/new, writing d/f1 and G give IN_CREATE (wd 1, "new"), IN_MODIFY then
 * IN_IGNORED (wd 2, oneshot) and IN_MODIFY (wd 4); the next watch added
 * gets wd 5; I2 says EAGAIN. */
#include "common.h"
#include <poll.h>
#include <sys/inotify.h>

struct mark { int wd; unsigned mask; };

static int marks(int fd, struct mark *m, int cap)
{
	char path[64], buf[8192];
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	if (cr_read_file(path, buf, sizeof(buf)) < 0)
		return -1;
	int n = 0;
	for (char *p = strstr(buf, "inotify wd:"); p && n < cap; p = strstr(p + 1, "inotify wd:")) {
		unsigned long ino;
		unsigned sdev;
		if (sscanf(p, "inotify wd:%d ino:%lx sdev:%x mask:%x", &m[n].wd, &ino, &sdev, &m[n].mask) == 4)
			n++;
	}
	return n;
}

/* Next event (waits up to 5 s); 0 if one was read. */
static int next_event(int fd, struct inotify_event *ev, size_t cap)
{
	static char buf[4096];
	static size_t have, at;
	if (at >= have) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, CR_PATIENCE_MS) != 1)
			return -1;
		ssize_t r = read(fd, buf, sizeof(buf));
		if (r <= 0)
			return -1;
		have = (size_t)r;
		at = 0;
	}
	struct inotify_event *e = (struct inotify_event *)(buf + at);
	size_t len = sizeof(*e) + e->len;
	if (len > cap)
		return -1;
	memcpy(ev, e, len);
	at += len;
	return 0;
}

static void expect_event(int fd, int wd, unsigned mask, const char *name)
{
	union { struct inotify_event ev; char raw[512]; } u;
	if (next_event(fd, &u.ev, sizeof(u))) {
		cr_fail("no event for wd %d mask %x", wd, mask);
		return;
	}
	CHECK(u.ev.wd == wd && u.ev.mask == mask && (!name || (u.ev.len && !strcmp(u.ev.name, name))),
	      "event wd %d mask %x name %s, expected wd %d mask %x name %s", u.ev.wd, u.ev.mask,
	      u.ev.len ? u.ev.name : "-", wd, mask, name ? name : "-");
}

static void drain(int fd)
{
	char buf[4096];
	int fl = fcntl(fd, F_GETFL);
	fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	while (read(fd, buf, sizeof(buf)) > 0)
		;
	fcntl(fd, F_SETFL, fl);
}

int main(void)
{
	cr_init();
	mkdir("d", 0755);
	cr_write_file("d/f1", "one", 3);
	cr_write_file("d/f2", "two", 3);
	cr_write_file("d/gone", "three", 5);
	int I = inotify_init1(0), I2 = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	DIE_IF(I < 0 || I2 < 0, "inotify_init1");
	DIE_IF(inotify_add_watch(I, "d", IN_CREATE | IN_DELETE | IN_EXCL_UNLINK) != 1, "wd 1");
	DIE_IF(inotify_add_watch(I, "d/f1", IN_MODIFY | IN_ONESHOT) != 2, "wd 2");
	DIE_IF(inotify_add_watch(I, "d/f2", IN_OPEN) != 3, "wd 3");
	DIE_IF(inotify_add_watch(I, "d/gone", IN_MODIFY) != 4, "wd 4");
	DIE_IF(inotify_rm_watch(I, 3), "rm wd 3");
	int G = open("d/gone", O_RDWR | O_APPEND);
	DIE_IF(G < 0, "open gone");
	DIE_IF(unlink("d/gone"), "unlink");
	DIE_IF(inotify_add_watch(I2, "d", IN_ATTRIB) != 1, "I2 wd 1");
	drain(I);
	drain(I2);
	struct mark before[8], after[8];
	int nb = marks(I, before, 8);
	DIE_IF(nb != 3, "%d watches", nb);
	cr_ready();
	cr_wait();

	int na = marks(I, after, 8);
	CHECK_EQ(na, nb, "number of watches");
	for (int i = 0; i < na && i < nb; i++) {
		int found = 0;
		for (int j = 0; j < nb; j++)
			found |= after[i].wd == before[j].wd && after[i].mask == before[j].mask;
		CHECK(found, "watch wd %d mask %x was not there before", after[i].wd, after[i].mask);
	}
	struct mark m2[2];
	CHECK(marks(I2, m2, 2) == 1 && m2[0].wd == 1 && m2[0].mask == IN_ATTRIB, "I2 watch");
	CHECK_EQ(fcntl(I2, F_GETFL) & O_NONBLOCK, O_NONBLOCK, "I2 O_NONBLOCK");
	CHECK_EQ(fcntl(I2, F_GETFD), FD_CLOEXEC, "I2 close-on-exec");
	CHECK_EQ(fcntl(I, F_GETFL) & O_NONBLOCK, 0, "I O_NONBLOCK");
	char buf[64];
	CHECK(read(I2, buf, sizeof(buf)) < 0 && errno == EAGAIN, "I2 has events");
	struct stat st;
	CHECK(fstat(G, &st) == 0 && st.st_nlink == 0 && st.st_size == 5, "G is no longer the deleted file");

	/* the original tree of a --leave-running dump may have made it already */
	if (unlink("d/new") == 0)
		drain(I);
	cr_write_file("d/new", "x", 1);
	expect_event(I, 1, IN_CREATE, "new");
	int f1 = open("d/f1", O_WRONLY | O_APPEND);
	CHECK(f1 >= 0 && write(f1, "1", 1) == 1, "write f1");
	close(f1);
	expect_event(I, 2, IN_MODIFY, NULL);
	expect_event(I, 2, IN_IGNORED, NULL);
	CHECK(write(G, "4", 1) == 1, "write G");
	expect_event(I, 4, IN_MODIFY, NULL);
	CHECK_EQ(inotify_add_watch(I, "d/f2", IN_OPEN), 5, "wd of a new watch");
	cr_finish();
}
