/* Scenario 101: a container-like tree with a root file system of its own (static build).
 * argv: ROOTFS EXTDIR.  PID 1 of new PID and mount namespaces binds ROOTFS onto itself,
 * binds EXTDIR (a host directory, not otherwise in the tree: an external mount) at /ext,
 * pivot_roots into ROOTFS, detaches the old root and runs itself again from there, then mounts proc at /proc, a tmpfs at
 * /tmp with a file, a tmpfs at /dev with a null device node, a devpts instance at /dev/pts,
 * binds /tmp/data onto /mnt/file (a bind of a file from a tmpfs) and the rootfs's /etc onto
 * /mnt/etc read-only.  It keeps /tmp/data open, its cwd in /tmp, and starts busybox sleep
 * (/bin/sleep) as a child; its stdio is /prog.log (appended) and /dev/null.  After the signal it checks every mount from inside, the
 * contents, its files, and that the child still runs busybox from the rootfs. */
#include "mount_common.h"
#include <sys/sysmacros.h>

int main(int argc, char **argv)
{
	cr_init();
	if (argc == 3) {
		/* outside: make the rootfs the root, then run again from inside it (as a runtime does) */
		DIE_IF(getpid() != 1, "not the init of a PID namespace");
		DIE_IF(setsid() < 0, "setsid");
		const char *rootfs = argv[1];
		char ext[PATH_MAX];
		snprintf(ext, sizeof(ext), "%s/ext", rootfs);
		DIE_IF(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), "make / private");
		DIE_IF(mount(rootfs, rootfs, NULL, MS_BIND, NULL), "bind the rootfs");
		DIE_IF(mount(argv[2], ext, NULL, MS_BIND, NULL), "bind %s", argv[2]);
		DIE_IF(chdir(rootfs) || syscall(SYS_pivot_root, ".", ".") || umount2(".", MNT_DETACH) || chdir("/"),
		       "pivot_root");
		execl("/bin/101_mount_root", "101_mount_root", "inside", (char *)NULL);
		cr_die("exec from inside the rootfs");
	}
	DIE_IF(argc != 2 || getpid() != 1, "usage: 101_mount_root ROOTFS EXTDIR");
	DIE_IF(mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL), "mount proc");
	DIE_IF(mount("tmp", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=1m"), "mount /tmp");
	cr_write_file("/tmp/data", "tmp-data", 8);
	DIE_IF(mount("dev", "/dev", "tmpfs", MS_NOSUID, "mode=755,size=64k"), "mount /dev");
	DIE_IF(mknod("/dev/null", S_IFCHR | 0666, makedev(1, 3)) || chmod("/dev/null", 0666) || mkdir("/dev/pts", 0755),
	       "/dev");
	/* stdio from inside the rootfs: the files the tree was started with lie outside it */
	int log = open("/prog.log", O_WRONLY | O_CREAT | O_APPEND, 0644), in = open("/dev/null", O_RDONLY);
	DIE_IF(log < 0 || in < 0 || dup2(in, 0) < 0 || dup2(log, 1) < 0 || dup2(log, 2) < 0, "stdio");
	close(log);
	close(in);
	DIE_IF(mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=620"), "pts");
	DIE_IF(mount("/tmp/data", "/mnt/file", NULL, MS_BIND, NULL), "bind a file");
	DIE_IF(mount("/etc", "/mnt/etc", NULL, MS_BIND, NULL) ||
	       mount(NULL, "/mnt/etc", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL), "bind /etc read-only");
	int data = open("/tmp/data", O_RDWR);
	int null = open("/dev/null", O_WRONLY);
	DIE_IF(data < 0 || null < 0 || lseek(data, 4, SEEK_SET) != 4 || chdir("/tmp"), "open files");
	pid_t child = cr_fork();
	if (child == 0) {
		execl("/bin/sleep", "sleep", "1000", (char *)NULL);
		_exit(99);
	}

	cr_ready();
	cr_wait();

	check_mount("/", "ext4", "rw", "", NULL);
	check_mount("/ext", "ext4", "rw", "", NULL);
	check_content("/ext/file", "external");
	check_content("/marker", "rootfs");
	check_mount("/proc", "proc", "nosuid,nodev,noexec", "", NULL);
	char link[64] = "";
	CHECK(readlink("/proc/self", link, sizeof(link) - 1) > 0 && atoi(link) == 1, "/proc is not ours: %s", link);
	check_mount("/tmp", "tmpfs", "nosuid,nodev", "", NULL);
	check_content("/tmp/data", "tmp-data");
	check_mount("/dev", "tmpfs", "nosuid", "", NULL);
	check_mount("/dev/pts", "devpts", "nosuid,noexec", "", NULL);
	check_mount("/mnt/file", "tmpfs", "rw", "", NULL);
	check_content("/mnt/file", "tmp-data");
	check_mount("/mnt/etc", "ext4", "ro", "", NULL);
	check_content("/mnt/etc/hostname", "rootfs-etc");
	struct stat a, b;
	CHECK(fstat(data, &a) == 0 && stat("/tmp/data", &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino,
	      "the open file is not /tmp/data");
	CHECK(lseek(data, 0, SEEK_CUR) == 4, "position lost");
	CHECK(fstat(null, &a) == 0 && stat("/dev/null", &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev,
	      "the open /dev/null is not the tree's");
	char cwd[64] = "";
	CHECK(getcwd(cwd, sizeof(cwd)) && strcmp(cwd, "/tmp") == 0, "cwd %s", cwd);
	char exe[64] = "", path[64];
	snprintf(path, sizeof(path), "/proc/%d/exe", (int)child);
	CHECK(readlink(path, exe, sizeof(exe) - 1) > 0 && strcmp(exe, "/bin/busybox") == 0, "child runs '%s'", exe);
	CHECK(kill(child, 0) == 0, "the busybox child is gone");
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	cr_finish();
}
