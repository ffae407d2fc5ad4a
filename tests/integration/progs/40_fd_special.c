/* Scenario 40: directory fds, device fds and high fd numbers.
 *   fd 100:  O_RDONLY|O_DIRECTORY on "subdir" (40 entries), getdents64 read
 *            partway (small buffer) before the dump
 *   fd 101:  O_PATH on "subdir/file07"
 *   fd 1000: /dev/null O_WRONLY      fd 1001: /dev/zero O_RDONLY
 *   fd 999:  /dev/urandom O_RDONLY   fd 5000: /dev/null O_RDWR|O_APPEND
 *   fd 3:    "/" O_RDONLY|O_DIRECTORY|O_CLOEXEC
 * After the signal: each fd is open with the same F_GETFL/F_GETFD, file type,
 * rdev (1,3 / 1,5 / 1,9) and inode; openat(100, "file07") reads its content;
 * the directory stream continues where it stopped (all 40+2 names seen exactly
 * once in total); /dev/zero reads zeros, /dev/urandom reads data, /dev/null
 * swallows writes; no other fds appeared. */
#include "common.h"
#include <sys/sysmacros.h>

#define NFILES 40

struct rec {
	int fd, fl, fdfl;
	struct stat st;
	const char *what;
};
static struct rec recs[7];
static int nrec;

static void add(int fd, const char *what)
{
	struct rec *r = &recs[nrec++];
	r->fd = fd;
	r->what = what;
	r->fl = fcntl(fd, F_GETFL);
	r->fdfl = fcntl(fd, F_GETFD);
	DIE_IF(fstat(fd, &r->st), "fstat %s", what);
}

static void place(const char *path, int flags, int target)
{
	int fd = open(path, flags);
	DIE_IF(fd < 0, "open %s", path);
	if (fd != target) {
		DIE_IF(dup3(fd, target, flags & O_CLOEXEC) != target, "dup to %d", target);
		close(fd);
	}
}

static int names_seen[NFILES + 2];

static int read_dents(int fd, size_t bufsize, int max_calls)
{
	char buf[4096];
	int total = 0;
	for (int c = 0; c < max_calls; c++) {
		long n = syscall(SYS_getdents64, fd, buf, bufsize);
		if (n <= 0)
			break;
		for (long off = 0; off < n;) {
			struct {
				uint64_t ino;
				int64_t off;
				unsigned short reclen;
				unsigned char type;
				char name[];
			} *d = (void *)(buf + off);
			if (!strcmp(d->name, "."))
				names_seen[NFILES]++;
			else if (!strcmp(d->name, ".."))
				names_seen[NFILES + 1]++;
			else if (!strncmp(d->name, "file", 4))
				names_seen[atoi(d->name + 4)]++;
			total++;
			off += d->reclen;
		}
	}
	return total;
}

static int count_fds(void)
{
	int n = 0;
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	while (d && (e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	if (d)
		closedir(d);
	return n - 1; /* minus the opendir fd */
}

int main(void)
{
	cr_init();
	DIE_IF(mkdir("subdir", 0755), "mkdir");
	for (int i = 0; i < NFILES; i++) {
		char p[64], content[64];
		snprintf(p, sizeof(p), "subdir/file%02d", i);
		snprintf(content, sizeof(content), "content of file %d\n", i);
		cr_write_file(p, content, strlen(content));
	}
	close(3); /* in case something leaked it */
	place("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 3);
	place("subdir", O_RDONLY | O_DIRECTORY, 100);
	place("subdir/file07", O_PATH, 101);
	place("/dev/null", O_WRONLY, 1000);
	place("/dev/zero", O_RDONLY, 1001);
	place("/dev/urandom", O_RDONLY, 999);
	place("/dev/null", O_RDWR | O_APPEND, 5000);
	add(3, "/ dirfd");
	add(100, "subdir dirfd");
	add(101, "O_PATH fd");
	add(1000, "/dev/null");
	add(1001, "/dev/zero");
	add(999, "/dev/urandom");
	add(5000, "/dev/null rw");
	int part = read_dents(100, 200, 2); /* a few entries only */
	DIE_IF(part <= 0 || part >= NFILES, "partial getdents read %d entries", part);
	int nfds0 = count_fds();

	cr_ready();
	cr_wait();

	for (int i = 0; i < nrec; i++) {
		struct rec *r = &recs[i];
		struct stat st;
		if (!CHECK(fstat(r->fd, &st) == 0, "%s: fd %d not open", r->what, r->fd))
			continue;
		CHECK(fcntl(r->fd, F_GETFL) == r->fl, "%s (fd %d): F_GETFL 0%o, was 0%o", r->what, r->fd,
		      fcntl(r->fd, F_GETFL), r->fl);
		CHECK(fcntl(r->fd, F_GETFD) == r->fdfl, "%s (fd %d): F_GETFD %d, was %d", r->what, r->fd,
		      fcntl(r->fd, F_GETFD), r->fdfl);
		CHECK((st.st_mode & S_IFMT) == (r->st.st_mode & S_IFMT) && st.st_ino == r->st.st_ino &&
			      st.st_dev == r->st.st_dev && st.st_rdev == r->st.st_rdev,
		      "%s (fd %d): now mode 0%o ino %lu rdev %u:%u, was 0%o %lu %u:%u", r->what, r->fd, st.st_mode,
		      (unsigned long)st.st_ino, major(st.st_rdev), minor(st.st_rdev), r->st.st_mode,
		      (unsigned long)r->st.st_ino, major(r->st.st_rdev), minor(r->st.st_rdev));
	}
	struct stat st;
	fstat(1000, &st);
	CHECK(S_ISCHR(st.st_mode) && st.st_rdev == makedev(1, 3), "fd 1000 is not /dev/null");
	fstat(1001, &st);
	CHECK(S_ISCHR(st.st_mode) && st.st_rdev == makedev(1, 5), "fd 1001 is not /dev/zero");
	fstat(999, &st);
	CHECK(S_ISCHR(st.st_mode) && st.st_rdev == makedev(1, 9), "fd 999 is not /dev/urandom");
	fstat(101, &st);
	CHECK(S_ISREG(st.st_mode) && st.st_size == (off_t)strlen("content of file 7\n"), "O_PATH fd 101");

	/* the directory stream continues */
	read_dents(100, 4096, 100);
	for (int i = 0; i < NFILES + 2; i++)
		CHECK(names_seen[i] == 1, "directory entry %d seen %d times across the dump", i, names_seen[i]);
	int f = openat(100, "file07", O_RDONLY);
	char buf[64] = "";
	CHECK(f >= 0 && read(f, buf, sizeof(buf)) > 0 && !strcmp(buf, "content of file 7\n"),
	      "openat(dirfd 100, file07) failed or wrong content");
	if (f >= 0)
		close(f);
	int r = openat(3, "proc/self/status", O_RDONLY);
	CHECK(r >= 0, "openat(root dirfd 3, proc/self/status)");
	if (r >= 0)
		close(r);

	uint8_t z[4096];
	memset(z, 0xff, sizeof(z));
	CHECK(read(1001, z, sizeof(z)) == sizeof(z), "read /dev/zero");
	cr_expect_zero("/dev/zero data", z, sizeof(z));
	CHECK(read(999, z, sizeof(z)) == sizeof(z), "read /dev/urandom");
	CHECK(cr_nonzero_at(z, sizeof(z)) >= 0, "/dev/urandom returned only zeros");
	CHECK(write(1000, z, 100) == 100 && write(5000, z, 10) == 10, "write /dev/null");
	CHECK(count_fds() == nfds0, "%d fds open, was %d", count_fds(), nfds0);
	cr_finish();
}
