/* Scenario 100: a tree with a mount namespace of its own (`unshare -pfm --mount-proc`).
 * PID 1 builds, under DIR (argv[1]): a tmpfs with options and content (files, a directory,
 * a symlink, a hard link, a FIFO, a device node, each with its mode, owner and time); a bind
 * of a file and of a directory from the host's file system; a read-only bind; a second proc
 * (hidepid); an mqueue and a cgroup2 mount; a devpts instance of its own at /dev/pts with an
 * open pty; a shared tmpfs with a peer, a slave, a private and an unbindable bind; an unbindable
 * tmpfs of its own with a file.  It keeps a file, a FIFO (with a queued byte) and a listening
 * unix socket open in the tmpfs, and its cwd there.  After the signal it checks, from inside, every mount's line in mountinfo (type,
 * options, propagation), every content, its open files, and that propagation still works. */
#include "mount_common.h"
#include <mqueue.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/sysmacros.h>
#include <termios.h>

static char D[PATH_MAX / 2];

static const char *at(const char *rel)
{
	static char buf[8][PATH_MAX];
	static int i;
	char *out = buf[i++ % 8];
	snprintf(out, PATH_MAX, "%s/%s", D, rel);
	return out;
}

static void make_file(const char *path, const char *text, mode_t mode, uid_t uid, gid_t gid)
{
	cr_write_file(path, text, strlen(text));
	DIE_IF(chown(path, uid, gid) || chmod(path, mode), "attrs of %s", path);
}

static void set_mtime(const char *path, time_t when, int flags)
{
	struct timespec ts[2] = {{when, 0}, {when, 0}};
	DIE_IF(utimensat(AT_FDCWD, path, ts, flags), "utimensat %s", path);
}

static void check_attrs(const char *path, mode_t type, mode_t mode, uid_t uid, gid_t gid, time_t mtime)
{
	struct stat st;
	if (!CHECK(lstat(path, &st) == 0, "%s is gone", path))
		return;
	CHECK((st.st_mode & S_IFMT) == type, "%s: type %o", path, st.st_mode & S_IFMT);
	if (type != S_IFLNK)
		CHECK((st.st_mode & 07777) == mode, "%s: mode %o, expected %o", path, st.st_mode & 07777, mode);
	CHECK(st.st_uid == uid && st.st_gid == gid, "%s: owner %d:%d", path, st.st_uid, st.st_gid);
	if (mtime)
		CHECK(st.st_mtime == mtime, "%s: mtime %ld", path, (long)st.st_mtime);
}

static void build(void)
{
	DIE_IF(mkdir(at("t"), 0755) || mkdir(at("src"), 0755) || mkdir(at("src/dir"), 0755), "mkdir");
	make_file(at("src/file"), "src-file", 0644, 0, 0);
	make_file(at("src/dir/x"), "src-dir", 0644, 0, 0);
	DIE_IF(mount("crt", at("t"), "tmpfs", MS_NOSUID, "size=4m,mode=1751,uid=1,gid=2"), "mount tmpfs");
	make_file(at("t/file"), "tmpfs-content-100", 0640, 3, 4);
	set_mtime(at("t/file"), 1000000000, 0);
	DIE_IF(link(at("t/file"), at("t/hard")), "link");
	DIE_IF(mkdir(at("t/dir"), 0700) || chown(at("t/dir"), 5, 6) || chmod(at("t/dir"), 0705), "dir");
	make_file(at("t/dir/inner"), "inner", 0600, 0, 0);
	set_mtime(at("t/dir"), 1100000000, 0);
	DIE_IF(symlink("file", at("t/link")) || lchown(at("t/link"), 7, 8), "symlink");
	DIE_IF(mkfifo(at("t/fifo"), 0600) || chmod(at("t/fifo"), 0620), "mkfifo");
	DIE_IF(mknod(at("t/null"), S_IFCHR | 0666, makedev(1, 3)) || chmod(at("t/null"), 0666), "mknod");
	/* binds from the host's file system, one of them read-only */
	make_file(at("t/bfile"), "", 0600, 0, 0);
	DIE_IF(mkdir(at("t/bdir"), 0755) || mkdir(at("t/ro"), 0755), "mkdir");
	DIE_IF(mount(at("src/file"), at("t/bfile"), NULL, MS_BIND, NULL), "bind file");
	DIE_IF(mount(at("src/dir"), at("t/bdir"), NULL, MS_BIND, NULL), "bind dir");
	DIE_IF(mount(at("src/dir"), at("t/ro"), NULL, MS_BIND, NULL), "bind ro");
	DIE_IF(mount(NULL, at("t/ro"), NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID, NULL), "remount ro");
	/* file systems of the tree's own */
	DIE_IF(mkdir(at("t/proc"), 0555) || mkdir(at("t/mq"), 0755) || mkdir(at("t/cg"), 0755), "mkdir");
	DIE_IF(mount("proc", at("t/proc"), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "hidepid=1"), "mount proc");
	DIE_IF(mount("mqueue", at("t/mq"), "mqueue", MS_NODEV, NULL), "mount mqueue");
	DIE_IF(mount("cgroup2", at("t/cg"), "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL), "mount cgroup2");
	DIE_IF(mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=620,gid=5"),
	       "mount devpts");
	/* propagation: p1 shared, p2 its peer, p3 its slave, p4 private, p5 private and unbindable */
	const char *p[] = {"t/p1", "t/p2", "t/p3", "t/p4", "t/p5"};
	for (int i = 0; i < 5; i++)
		DIE_IF(mkdir(at(p[i]), 0755), "mkdir %s", p[i]);
	DIE_IF(mount("prop", at("t/p1"), "tmpfs", 0, "size=1m") || mount(NULL, at("t/p1"), NULL, MS_SHARED, NULL),
	       "shared");
	DIE_IF(mkdir(at("t/p1/sub"), 0755), "mkdir sub");
	for (int i = 1; i < 5; i++)
		DIE_IF(mount(at("t/p1"), at(p[i]), NULL, MS_BIND, NULL), "bind %s", p[i]);
	DIE_IF(mount(NULL, at("t/p3"), NULL, MS_SLAVE, NULL) || mount(NULL, at("t/p4"), NULL, MS_PRIVATE, NULL) ||
	       mount(NULL, at("t/p5"), NULL, MS_PRIVATE, NULL) || mount(NULL, at("t/p5"), NULL, MS_UNBINDABLE, NULL),
	       "propagation");
	/* p6: an unbindable tmpfs of its own (its files cannot be read through a clone of it) */
	DIE_IF(mkdir(at("t/p6"), 0755) || mount("ub", at("t/p6"), "tmpfs", 0, "size=1m") ||
	       mount(NULL, at("t/p6"), NULL, MS_UNBINDABLE, NULL), "unbindable tmpfs");
	make_file(at("t/p6/file"), "unbindable-content", 0600, 0, 0);
}

static void check_propagation(void)
{
	struct mnt_line m[5];
	const char *p[] = {"t/p1", "t/p2", "t/p3", "t/p4", "t/p5"};
	for (int i = 0; i < 5; i++)
		check_mount(at(p[i]), "tmpfs", "rw", "size=1024k", &m[i]);
	int group = mnt_tag(m[0].tags, "shared");
	CHECK(group && mnt_tag(m[1].tags, "shared") == group, "p1/p2 not peers: '%s' '%s'", m[0].tags, m[1].tags);
	CHECK(mnt_tag(m[2].tags, "master") == group && !mnt_tag(m[2].tags, "shared"), "p3 not p1's slave: '%s'",
	      m[2].tags);
	CHECK(!mnt_tag(m[3].tags, "shared") && !mnt_tag(m[3].tags, "master"), "p4 not private: '%s'", m[3].tags);
	CHECK(strstr(m[4].tags, "unbindable") != NULL, "p5 not unbindable: '%s'", m[4].tags);
	struct mnt_line u;
	check_mount(at("t/p6"), "tmpfs", "rw", "size=1024k", &u);
	CHECK(strstr(u.tags, "unbindable") != NULL, "p6 not unbindable: '%s'", u.tags);
	check_content(at("t/p6/file"), "unbindable-content");
	/* and it works: a mount in p1 shows in its peer and its slave, not elsewhere */
	DIE_IF(mount("sub", at("t/p1/sub"), "tmpfs", 0, "size=1m"), "mount sub");
	struct mnt_line s;
	CHECK(mnt_find(at("t/p2/sub"), &s) && strcmp(s.source, "sub") == 0, "no propagation to the peer");
	CHECK(mnt_find(at("t/p3/sub"), &s) && strcmp(s.source, "sub") == 0, "no propagation to the slave");
	CHECK(!mnt_find(at("t/p4/sub"), &s), "propagation to a private mount");
	CHECK(mount(at("t/p5"), at("t/dir"), NULL, MS_BIND, NULL) < 0 && errno == EINVAL, "p5 could be bound");
}

int main(int argc, char **argv)
{
	cr_init();
	DIE_IF(argc < 2, "usage: 100_mount_tree DIR");
	snprintf(D, sizeof(D), "%s", argv[1]);
	DIE_IF(getpid() != 1, "not the init of a PID namespace");
	DIE_IF(setsid() < 0, "setsid");
	build();
	struct stat st;
	/* open files in the tmpfs */
	int file = open(at("t/file"), O_RDWR);
	int fifo = open(at("t/fifo"), O_RDWR);
	DIE_IF(file < 0 || fifo < 0 || lseek(file, 3, SEEK_SET) != 3 || write(fifo, "q", 1) != 1, "open files");
	int sk = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", at("t/sock"));
	DIE_IF(bind(sk, (struct sockaddr *)&sa, sizeof(sa)) || listen(sk, 4), "bind %s", sa.sun_path);
	int master = open("/dev/pts/ptmx", O_RDWR | O_NOCTTY);
	DIE_IF(master < 0 || grantpt(master) || unlockpt(master), "ptmx");
	int index;
	DIE_IF(ioctl(master, TIOCGPTN, &index), "TIOCGPTN");
	char name[64];
	snprintf(name, sizeof(name), "/dev/pts/%d", index);
	int slave = open(name, O_RDWR | O_NOCTTY);
	DIE_IF(slave < 0, "open %s", name);
	DIE_IF(chdir(at("t/dir")), "chdir");

	cr_ready();
	cr_wait();

	/* the tmpfs: options and content */
	check_mount(at("t"), "tmpfs", "rw,nosuid", "size=4096k,mode=1751,uid=1,gid=2", NULL);
	check_attrs(at("t"), S_IFDIR, 01751, 1, 2, 0);
	check_attrs(at("t/file"), S_IFREG, 0640, 3, 4, 1000000000);
	check_content(at("t/file"), "tmpfs-content-100");
	check_attrs(at("t/dir"), S_IFDIR, 0705, 5, 6, 1100000000);
	check_content(at("t/dir/inner"), "inner");
	check_attrs(at("t/link"), S_IFLNK, 0, 7, 8, 0);
	char target[64] = "";
	CHECK(readlink(at("t/link"), target, sizeof(target) - 1) == 4 && strcmp(target, "file") == 0, "symlink -> %s",
	      target);
	struct stat a, b;
	CHECK(stat(at("t/file"), &a) == 0 && stat(at("t/hard"), &b) == 0 && a.st_ino == b.st_ino && a.st_nlink == 2,
	      "the hard link is not the same file");
	check_attrs(at("t/fifo"), S_IFIFO, 0620, 0, 0, 0);
	check_attrs(at("t/null"), S_IFCHR, 0666, 0, 0, 0);
	CHECK(stat(at("t/null"), &st) == 0 && st.st_rdev == makedev(1, 3), "device node is %u:%u", major(st.st_rdev),
	      minor(st.st_rdev));
	/* the open files are those of the restored tmpfs */
	CHECK(fstat(file, &a) == 0 && stat(at("t/file"), &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino,
	      "the open file is not t/file");
	CHECK(lseek(file, 0, SEEK_CUR) == 3, "file position lost");
	char c = 0;
	CHECK(read(fifo, &c, 1) == 1 && c == 'q', "the FIFO lost its byte");
	CHECK(fstat(fifo, &a) == 0 && stat(at("t/fifo"), &b) == 0 && a.st_ino == b.st_ino, "the FIFO is another");
	struct sockaddr_un got = {0};
	socklen_t len = sizeof(got);
	CHECK(getsockname(sk, (struct sockaddr *)&got, &len) == 0 && strcmp(got.sun_path, sa.sun_path) == 0,
	      "socket name '%s'", got.sun_path);
	int cl = socket(AF_UNIX, SOCK_STREAM, 0);
	CHECK(connect(cl, (struct sockaddr *)&sa, sizeof(sa)) == 0, "cannot connect to the socket by its path");
	char cwd[PATH_MAX] = "";
	CHECK(getcwd(cwd, sizeof(cwd)) && strcmp(cwd, at("t/dir")) == 0, "cwd %s", cwd);
	CHECK(stat(".", &a) == 0 && stat(at("t/dir"), &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev,
	      "cwd is another directory");
	/* binds */
	struct mnt_line m;
	check_mount(at("t/bfile"), "ext4", "rw", "", &m);
	CHECK(strlen(m.root) > 9 && strcmp(m.root + strlen(m.root) - 9, "/src/file") == 0, "bfile root %s", m.root);
	check_content(at("t/bfile"), "src-file");
	check_mount(at("t/bdir"), "ext4", "rw", "", NULL);
	check_content(at("t/bdir/x"), "src-dir");
	check_mount(at("t/ro"), "ext4", "ro,nosuid", "", NULL);
	CHECK(open(at("t/ro/new"), O_CREAT | O_WRONLY, 0600) < 0 && errno == EROFS, "read-only bind is writable");
	/* file systems of its own */
	check_mount(at("t/proc"), "proc", "nosuid,nodev,noexec", "hidepid=noaccess", NULL);
	CHECK(readlink(at("t/proc/self"), target, sizeof(target)) > 0 && atoi(target) == 1,
	      "the second proc is not of our PID namespace");
	CHECK(readlink("/proc/self", target, sizeof(target)) > 0 && atoi(target) == 1, "/proc is not ours");
	check_mount(at("t/mq"), "mqueue", "nodev", "", NULL);
	mqd_t q = mq_open("/lxccr-100-mnt", O_CREAT | O_RDWR, 0600, NULL);
	CHECK(q != (mqd_t)-1 && access(at("t/mq/lxccr-100-mnt"), F_OK) == 0, "mqueue mount does not show queues");
	mq_unlink("/lxccr-100-mnt");
	check_mount(at("t/cg"), "cgroup2", "nosuid,nodev,noexec", "", NULL);
	CHECK(access(at("t/cg/cgroup.procs"), R_OK) == 0, "cgroup2 mount is empty");
	/* the devpts instance and the pty in it */
	check_mount("/dev/pts", "devpts", "nosuid,noexec", "mode=620,ptmxmode=666,gid=5", NULL);
	CHECK(fstat(slave, &a) == 0 && stat("/dev/pts/ptmx", &b) == 0 && a.st_dev == b.st_dev &&
	      minor(a.st_rdev) == (unsigned)index, "the pty is not /dev/pts/%d of our devpts", index);
	int now = -1;
	CHECK(ioctl(master, TIOCGPTN, &now) == 0 && now == index, "pty number %d, expected %d", now, index);
	char line[16] = "";
	CHECK(write(master, "ping\n", 5) == 5 && read(slave, line, sizeof(line)) == 5 && memcmp(line, "ping\n", 5) == 0,
	      "pty does not carry data");
	check_propagation();
	cr_finish();
}
