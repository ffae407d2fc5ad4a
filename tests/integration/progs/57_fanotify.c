/* Scenario 57: fanotify groups and their marks.
 * G (FAN_CLASS_NOTIF | FAN_NONBLOCK | FAN_CLOEXEC, events O_RDONLY): an
 *   inode mark on the directory fd (FAN_OPEN | FAN_CLOSE_WRITE |
 *   FAN_EVENT_ON_CHILD), and an ignore mark on fd/quiet (FAN_OPEN, survives
 *   modification).
 * M: a mount mark (FAN_CLOSE_WRITE) on the mount holding the work directory.
 * F: a file system mark (FAN_CLOSE_WRITE) on the same file system.
 * After the signal: the fdinfo mark lines are the same; opening fd/a gives G
 * an FAN_OPEN event from this process on fd/a, opening fd/quiet gives none;
 * writing fd/b gives M and F an FAN_CLOSE_WRITE event from this process. */
#include "common.h"
#include <sys/fanotify.h>

static int mark_lines(int fd, char *out, size_t cap)
{
	char path[64], buf[8192];
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	if (cr_read_file(path, buf, sizeof(buf)) < 0)
		return -1;
	out[0] = 0;
	for (char *line = strstr(buf, "fanotify"); line; line = strstr(line + 1, "\nfanotify")) {
		if (*line == '\n')
			line++;
		size_t l = strcspn(line, "\n");
		strncat(out, line, cap - strlen(out) - 2 < l ? cap - strlen(out) - 2 : l);
		strcat(out, "\n");
	}
	return 0;
}

/* Does fd hold an event from us with mask bits `mask` on a file named `name`? */
static int saw(int fd, uint64_t mask, const char *name)
{
	static char buf[65536];
	int found = 0;
	for (int tries = 0; tries < 50 && !found; tries++) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n <= 0) {
			cr_sleep_ms(20);
			continue;
		}
		for (struct fanotify_event_metadata *m = (void *)buf; FAN_EVENT_OK(m, n); m = FAN_EVENT_NEXT(m, n)) {
			char p[64], link[PATH_MAX];
			if (m->fd < 0)
				continue;
			snprintf(p, sizeof(p), "/proc/self/fd/%d", m->fd);
			ssize_t l = readlink(p, link, sizeof(link) - 1);
			link[l > 0 ? l : 0] = 0;
			size_t nl = strlen(name), ll = strlen(link);
			if (m->pid == getpid() && (m->mask & mask) && ll >= nl && !strcmp(link + ll - nl, name))
				found = 1;
			close(m->fd);
		}
	}
	return found;
}

int main(void)
{
	cr_init();
	mkdir("fd", 0755);
	cr_write_file("fd/a", "a", 1);
	cr_write_file("fd/quiet", "q", 1);
	int G = fanotify_init(FAN_CLASS_NOTIF | FAN_NONBLOCK | FAN_CLOEXEC, O_RDONLY | O_LARGEFILE);
	if (G < 0 && (errno == ENOSYS || errno == EPERM)) {
		printf("SKIP: no fanotify here (%s)\n", strerror(errno));
		return CR_EXIT_SKIP;
	}
	int M = fanotify_init(FAN_CLASS_NOTIF | FAN_NONBLOCK, O_RDONLY);
	int F = fanotify_init(FAN_CLASS_NOTIF | FAN_NONBLOCK, O_RDONLY);
	DIE_IF(G < 0 || M < 0 || F < 0, "fanotify_init");
	DIE_IF(fanotify_mark(G, FAN_MARK_ADD, FAN_OPEN | FAN_CLOSE_WRITE | FAN_EVENT_ON_CHILD, AT_FDCWD, "fd"),
	       "mark fd");
	DIE_IF(fanotify_mark(G, FAN_MARK_ADD | FAN_MARK_IGNORED_MASK | FAN_MARK_IGNORED_SURV_MODIFY, FAN_OPEN,
			     AT_FDCWD, "fd/quiet"), "ignore mark");
	DIE_IF(fanotify_mark(M, FAN_MARK_ADD | FAN_MARK_MOUNT, FAN_CLOSE_WRITE, AT_FDCWD, "."), "mount mark");
	DIE_IF(fanotify_mark(F, FAN_MARK_ADD | FAN_MARK_FILESYSTEM, FAN_CLOSE_WRITE, AT_FDCWD, "."), "fs mark");
	char before[3][2048], after[2048];
	int fds[3] = { G, M, F };
	for (int i = 0; i < 3; i++)
		DIE_IF(mark_lines(fds[i], before[i], sizeof(before[i])), "fdinfo");
	cr_ready();
	cr_wait();

	for (int i = 0; i < 3; i++) {
		CHECK(mark_lines(fds[i], after, sizeof(after)) == 0 && !strcmp(after, before[i]),
		      "group %d: fdinfo\n%s# expected\n%s", i, after, before[i]);
		CHECK_EQ(fcntl(fds[i], F_GETFL) & O_NONBLOCK, O_NONBLOCK, "O_NONBLOCK");
	}
	CHECK_EQ(fcntl(G, F_GETFD), FD_CLOEXEC, "G close-on-exec");
	CHECK_EQ(fcntl(M, F_GETFD), 0, "M close-on-exec");
	/* drop what the dump and restore queued, then make events of our own */
	static char junk[65536];
	for (int i = 0; i < 3; i++)
		while (read(fds[i], junk, sizeof(junk)) > 0)
			;
	int q = open("fd/quiet", O_RDONLY);
	CHECK(q >= 0, "open fd/quiet");
	close(q);
	int a = open("fd/a", O_RDONLY);
	CHECK(a >= 0, "open fd/a");
	close(a);
	cr_write_file("fd/b", "b", 1);
	CHECK(saw(G, FAN_OPEN, "/fd/a"), "G: no FAN_OPEN event for fd/a");
	q = open("fd/quiet", O_RDONLY);
	close(q);
	CHECK(!saw(G, FAN_OPEN, "/fd/quiet"), "G: FAN_OPEN event for the ignored fd/quiet");
	CHECK(saw(M, FAN_CLOSE_WRITE, "/fd/b"), "M: no FAN_CLOSE_WRITE event for fd/b");
	CHECK(saw(F, FAN_CLOSE_WRITE, "/fd/b"), "F: no FAN_CLOSE_WRITE event for fd/b");
	cr_finish();
}
