/* Scenario 142: SysV segments a dump must not lose, in an IPC namespace of the tree's own
 * (unshare -pf --ipc).  K: keyed, detached, with kernel.shm_rmid_forced on (reading it at
 * dump attaches and detaches it, which would remove it).  R: attached by the root and by a
 * child, then removed (IPC_RMID): it lives on while attached (SHM_DEST), nameless.
 * After the signal: K is there with its contents and the sysctl is still on; R's contents
 * are in both attachments, which share it (the child's store is seen by the root), it is
 * still marked removed, and it goes away with its last attachment. */
#include "common.h"
#include <sys/ipc.h>
#include <sys/shm.h>

#define KEY_K 0x4711
#define SIZE_K (2 * 4096 + 10)
#define SIZE_R (3 * 4096)
#define MARK 100

static int id_k, id_r;
static char *at_r;

static void write_file(const char *path, const char *value)
{
	int fd = open(path, O_WRONLY);
	DIE_IF(fd < 0 || write(fd, value, strlen(value)) != (ssize_t)strlen(value), "write %s", path);
	close(fd);
}

static int make_shm(key_t key, size_t size, uint64_t seed)
{
	int id = shmget(key, size, IPC_CREAT | IPC_EXCL | 0600);
	DIE_IF(id < 0, "shmget");
	char *p = shmat(id, NULL, 0);
	DIE_IF(p == (void *)-1, "shmat");
	cr_fill(p, size, seed);
	shmdt(p);
	return id;
}

int main(void)
{
	cr_init();
	DIE_IF(getpid() != 1, "not the init of a PID namespace");
	DIE_IF(setsid() < 0, "setsid");
	id_k = make_shm(KEY_K, SIZE_K, 11);
	id_r = make_shm(IPC_PRIVATE, SIZE_R, 12);
	at_r = shmat(id_r, NULL, 0);
	DIE_IF(at_r == (void *)-1, "shmat R");
	DIE_IF(shmctl(id_r, IPC_RMID, NULL), "IPC_RMID R");
	write_file("/proc/sys/kernel/shm_rmid_forced", "1");
	pid_t c = cr_fork();
	if (c == 0) {           /* R's second attachment, inherited */
		cr_wait();
		CHECK(cr_check_off(at_r, MARK, 12, 0) < 0, "child: R's contents differ");
		at_r[MARK] = 'c';
		cr_child_exit();
	}
	cr_ready();
	cr_wait();

	char buf[8] = "";
	int fd = open("/proc/sys/kernel/shm_rmid_forced", O_RDONLY);
	CHECK(fd >= 0 && read(fd, buf, sizeof(buf) - 1) > 0 && buf[0] == '1', "shm_rmid_forced is '%s'", buf);
	close(fd);
	struct shmid_ds ds;
	if (CHECK(shmctl(id_k, IPC_STAT, &ds) == 0, "K (id %d) is gone: %s", id_k, strerror(errno))) {
		CHECK(ds.shm_perm.__key == KEY_K && ds.shm_segsz == SIZE_K && ds.shm_nattch == 0, "K: key %#x size %zu",
		      ds.shm_perm.__key, (size_t)ds.shm_segsz);
		char *p = shmat(id_k, NULL, SHM_RDONLY);
		CHECK(p != (void *)-1 && cr_check_off(p, SIZE_K, 11, 0) < 0, "K's contents differ");
		shmdt(p);            /* with shm_rmid_forced, K goes now */
	}
	if (CHECK(shmctl(id_r, IPC_STAT, &ds) == 0, "R (id %d) is gone: %s", id_r, strerror(errno)))
		CHECK((ds.shm_perm.mode & SHM_DEST) && ds.shm_perm.__key == IPC_PRIVATE && ds.shm_nattch == 2,
		      "R: mode %#o key %#x nattch %lu", ds.shm_perm.mode, ds.shm_perm.__key, (unsigned long)ds.shm_nattch);
	kill(c, SIGUSR1);
	int st;
	CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0, "child failed (%#x)", st);
	CHECK(at_r[MARK] == 'c', "the child's store in R is not seen by the root");
	CHECK(cr_check_off(at_r + MARK + 1, SIZE_R - MARK - 1, 12, MARK + 1) < 0, "R's contents differ");
	CHECK(shmdt(at_r) == 0 && shmctl(id_r, IPC_STAT, &ds) < 0 && errno == EINVAL,
	      "R is still there after its last detach");
	cr_finish();
}
