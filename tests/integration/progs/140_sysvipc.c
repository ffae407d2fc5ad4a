/* Scenario 140: SysV IPC in an IPC namespace of the tree's own (unshare -pf --ipc).
 * The root (PID 1 inside) changes the IPC sysctls and creates:
 *  - segment A (key KEY_A, 3 pages + 100 bytes, mode 0640, owner changed with IPC_SET)
 *    attached at ADDR_A and, in a child, at another address, filled with a pattern;
 *  - segment B (IPC_PRIVATE, 1 MiB, detached) with data in two pages only;
 *  - queue Q1 (KEY_Q, mode 0620, qbytes 20000) with messages of several types and sizes;
 *    queue Q2 (IPC_PRIVATE, empty, created by uid 4321 gid 4322);
 *  - semaphore set S (KEY_S, 4 semaphores with values).
 * A segment created and removed first makes the ids differ from a fresh namespace's.
 * After the signal, from inside: ids, keys, perms, sizes, contents, values, the sysctls;
 * both attachments see the segment (a write through a new attachment shows in the root's,
 * and a write by the root shows in the child's), and nattch is 3 (the child also inherited
 * the root's attachment). */
#include "common.h"
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>

#define KEY_A 0x14000a
#define KEY_Q 0x14000b
#define KEY_S 0x14000c
#define ADDR_A ((void *)0x500000000000UL)
#define SIZE_A (3 * 4096 + 100)
#define SIZE_B (1 << 20)
#define SEED_A 0x140a
#define SEED_B 0x140b
#define MAGIC 0x5eedf00dU
#define MAGIC_OFF 8192

struct msgbuf_big { long mtype; char mtext[8192]; };

static const struct { long type; size_t len; } MSGS[] = {{1, 5}, {7, 1}, {3, 5000}, {1, 300}};
static const unsigned short SEMVALS[] = {0, 5, 32767, 1};
static const char *SYSCTLS[][2] = {
	{"/proc/sys/kernel/msgmnb", "32768"},
	{"/proc/sys/kernel/shmmni", "1000"},
	{"/proc/sys/kernel/sem", "300\t32100\t40\t150"},
	{"/proc/sys/fs/mqueue/msg_max", "20"},
};

static int id_a, id_b, id_q1, id_q2, id_s;

static void fill_msg(char *text, size_t len, long type)
{
	for (size_t i = 0; i < len; i++)
		text[i] = (char)('a' + (i * 7 + (size_t)type) % 26);
}

static void check_segment_a(void)
{
	struct shmid_ds ds;
	CHECK(shmget(KEY_A, 0, 0) == id_a, "key %#x is id %d, expected %d", KEY_A, shmget(KEY_A, 0, 0), id_a);
	DIE_IF(shmctl(id_a, IPC_STAT, &ds) != 0, "shmctl A");
	CHECK(ds.shm_segsz == SIZE_A, "A size %zu", ds.shm_segsz);
	CHECK((ds.shm_perm.mode & 0777) == 0640, "A mode %o", ds.shm_perm.mode);
	CHECK(ds.shm_perm.uid == 1234 && ds.shm_perm.gid == 2345, "A owner %u:%u", ds.shm_perm.uid, ds.shm_perm.gid);
	CHECK(ds.shm_perm.cuid == 0 && ds.shm_perm.cgid == 0, "A creator %u:%u", ds.shm_perm.cuid, ds.shm_perm.cgid);
	CHECK(ds.shm_nattch == 3, "A attached %lu times, expected 3 (the root, the child twice)", (unsigned long)ds.shm_nattch);
	cr_expect_pattern("A at its address", ADDR_A, MAGIC_OFF, SEED_A, 0);
	cr_expect_pattern("A after the magic word", (char *)ADDR_A + MAGIC_OFF + 4096, SIZE_A - MAGIC_OFF - 4096,
			  SEED_A, MAGIC_OFF + 4096);
	/* the attachment shares the segment: a write through a new attachment shows */
	char *fresh = shmat(id_a, NULL, 0);
	DIE_IF(fresh == (void *)-1, "shmat A again");
	fresh[100] ^= 0x5a;
	CHECK(((volatile char *)ADDR_A)[100] == fresh[100], "a write to segment A does not show at its address");
	fresh[100] ^= 0x5a;
	shmdt(fresh);
}

static void check_segment_b(void)
{
	struct shmid_ds ds;
	DIE_IF(shmctl(id_b, IPC_STAT, &ds) != 0, "shmctl B");
	CHECK(ds.shm_segsz == SIZE_B && ds.shm_perm.__key == IPC_PRIVATE && ds.shm_nattch == 0,
	      "B size %zu key %#x nattch %lu", ds.shm_segsz, ds.shm_perm.__key, (unsigned long)ds.shm_nattch);
	char *b = shmat(id_b, NULL, SHM_RDONLY);
	DIE_IF(b == (void *)-1, "shmat B");
	cr_expect_zero("B before its data", b, 4096 * 5);
	cr_expect_pattern("B first data page", b + 4096 * 5, 4096, SEED_B, 0);
	cr_expect_zero("B between", b + 4096 * 6, 4096 * 94);
	cr_expect_pattern("B second data page", b + 4096 * 100, 4096, SEED_B, 4096);
	cr_expect_zero("B after", b + 4096 * 101, SIZE_B - 4096 * 101);
	shmdt(b);
}

static void check_queues(void)
{
	struct msqid_ds ds;
	CHECK(msgget(KEY_Q, 0) == id_q1, "key %#x is queue %d, expected %d", KEY_Q, msgget(KEY_Q, 0), id_q1);
	DIE_IF(msgctl(id_q1, IPC_STAT, &ds) != 0, "msgctl Q1");
	CHECK(ds.msg_qbytes == 20000 && ds.msg_qnum == 4 && (ds.msg_perm.mode & 0777) == 0620,
	      "Q1 qbytes %lu qnum %lu mode %o", ds.msg_qbytes, ds.msg_qnum, ds.msg_perm.mode);
	static struct msgbuf_big m;
	char want[8192];
	for (unsigned i = 0; i < sizeof(MSGS) / sizeof(MSGS[0]); i++) {
		ssize_t n = msgrcv(id_q1, &m, sizeof(m.mtext), 0, IPC_NOWAIT);
		fill_msg(want, MSGS[i].len, MSGS[i].type);
		CHECK(n == (ssize_t)MSGS[i].len && m.mtype == MSGS[i].type && memcmp(m.mtext, want, n) == 0,
		      "message %u: type %ld, %zd bytes; expected type %ld, %zu bytes", i, m.mtype, n,
		      MSGS[i].type, MSGS[i].len);
	}
	DIE_IF(msgctl(id_q2, IPC_STAT, &ds) != 0, "msgctl Q2 (id %d)", id_q2);
	CHECK(ds.msg_qnum == 0 && ds.msg_perm.__key == IPC_PRIVATE, "Q2 qnum %lu", ds.msg_qnum);
	CHECK(ds.msg_perm.cuid == 4321 && ds.msg_perm.cgid == 4322 && ds.msg_perm.uid == 4321,
	      "Q2 creator %u:%u owner %u", ds.msg_perm.cuid, ds.msg_perm.cgid, ds.msg_perm.uid);
}

static void check_semaphores(void)
{
	unsigned short vals[4];
	struct semid_ds ds;
	CHECK(semget(KEY_S, 0, 0) == id_s, "key %#x is set %d, expected %d", KEY_S, semget(KEY_S, 0, 0), id_s);
	DIE_IF(semctl(id_s, 0, IPC_STAT, &ds) != 0, "semctl S");
	CHECK(ds.sem_nsems == 4 && (ds.sem_perm.mode & 0777) == 0600, "S nsems %lu mode %o", ds.sem_nsems,
	      ds.sem_perm.mode);
	DIE_IF(semctl(id_s, 0, GETALL, vals) != 0, "GETALL");
	CHECK(memcmp(vals, SEMVALS, sizeof(vals)) == 0, "S values %u %u %u %u", vals[0], vals[1], vals[2], vals[3]);
}

static void check_sysctls(void)
{
	char buf[128];
	for (unsigned i = 0; i < sizeof(SYSCTLS) / sizeof(SYSCTLS[0]); i++) {
		ssize_t n = cr_read_file(SYSCTLS[i][0], buf, sizeof(buf));
		while (n > 0 && buf[n - 1] == '\n')
			buf[--n] = 0;
		CHECK(strcmp(buf, SYSCTLS[i][1]) == 0, "%s is '%s', expected '%s'", SYSCTLS[i][0], buf, SYSCTLS[i][1]);
	}
}

int main(void)
{
	cr_init();
	DIE_IF(getpid() != 1, "not the init of a PID namespace");
	DIE_IF(setsid() < 0, "setsid");
	for (unsigned i = 0; i < sizeof(SYSCTLS) / sizeof(SYSCTLS[0]); i++)
		cr_write_file(SYSCTLS[i][0], SYSCTLS[i][1], strlen(SYSCTLS[i][1]));
	int gone = shmget(IPC_PRIVATE, 4096, 0600);           /* ids are not a fresh namespace's */
	DIE_IF(gone < 0 || shmctl(gone, IPC_RMID, NULL) != 0, "shm made and removed");

	id_a = shmget(KEY_A, SIZE_A, IPC_CREAT | IPC_EXCL | 0640);
	DIE_IF(id_a < 0, "shmget A");
	DIE_IF(shmat(id_a, ADDR_A, 0) != ADDR_A, "shmat A at %p", ADDR_A);
	cr_fill_off(ADDR_A, SIZE_A, SEED_A, 0);
	struct shmid_ds sds;
	DIE_IF(shmctl(id_a, IPC_STAT, &sds) != 0, "IPC_STAT A");
	sds.shm_perm.uid = 1234;
	sds.shm_perm.gid = 2345;
	DIE_IF(shmctl(id_a, IPC_SET, &sds) != 0, "IPC_SET A");

	id_b = shmget(IPC_PRIVATE, SIZE_B, 0600);
	DIE_IF(id_b < 0, "shmget B");
	char *b = shmat(id_b, NULL, 0);
	DIE_IF(b == (void *)-1, "shmat B");
	cr_fill_off(b + 4096 * 5, 4096, SEED_B, 0);
	cr_fill_off(b + 4096 * 100, 4096, SEED_B, 4096);
	DIE_IF(shmdt(b) != 0, "shmdt B");

	id_q1 = msgget(KEY_Q, IPC_CREAT | IPC_EXCL | 0620);
	DIE_IF(setegid(4322) != 0 || seteuid(4321) != 0, "become 4321:4322");
	id_q2 = msgget(IPC_PRIVATE, 0600);                      /* its creator is 4321:4322 */
	DIE_IF(seteuid(0) != 0 || setegid(0) != 0, "back to root");
	DIE_IF(id_q1 < 0 || id_q2 < 0, "msgget");
	struct msqid_ds mds;
	DIE_IF(msgctl(id_q1, IPC_STAT, &mds) != 0, "IPC_STAT Q1");
	mds.msg_qbytes = 20000;
	DIE_IF(msgctl(id_q1, IPC_SET, &mds) != 0, "IPC_SET Q1");
	static struct msgbuf_big m;
	for (unsigned i = 0; i < sizeof(MSGS) / sizeof(MSGS[0]); i++) {
		m.mtype = MSGS[i].type;
		fill_msg(m.mtext, MSGS[i].len, MSGS[i].type);
		DIE_IF(msgsnd(id_q1, &m, MSGS[i].len, IPC_NOWAIT) != 0, "msgsnd %u", i);
	}
	id_s = semget(KEY_S, 4, IPC_CREAT | IPC_EXCL | 0600);
	DIE_IF(id_s < 0 || semctl(id_s, 0, SETALL, SEMVALS) != 0, "semaphores");

	pid_t c = cr_fork();
	if (c == 0) {
		volatile uint32_t *mine = shmat(id_a, NULL, 0);
		DIE_IF(mine == (void *)-1, "child shmat A");
		cr_wait();
		/* the root writes MAGIC through its attachment after its own checks */
		int seen = 0;
		for (int i = 0; i < CR_PATIENCE_LOOPS(10) && !seen; i++) {
			seen = mine[MAGIC_OFF / 4] == MAGIC;
			if (!seen)
				cr_sleep_ms(10);
		}
		CHECK(seen, "the child's attachment does not see the root's write");
		cr_expect_pattern("A in the child", (const char *)mine, MAGIC_OFF, SEED_A, 0);
		cr_child_exit();
	}
	cr_ready();
	cr_wait();
	check_segment_a();
	check_segment_b();
	check_queues();
	check_semaphores();
	check_sysctls();
	*(volatile uint32_t *)((char *)ADDR_A + MAGIC_OFF) = MAGIC;
	kill(c, SIGUSR1);
	int st;
	CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0, "child failed (%#x)", st);
	cr_finish();
}
