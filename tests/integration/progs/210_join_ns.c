/* Scenario 210: a tree restored into IPC and UTS namespaces that exist and belong to someone
 * else (--join-ns; a pod's namespaces, held by its infra container).  Three roles:
 *
 *   210_join_ns hold HOST  the holder, in IPC and UTS namespaces of its own: host name HOST,
 *                          message queue KEY_Q holding MSG, segment KEY_SHM (2 pages) filled
 *                          with a pattern.  After the signal it checks that all of it is as it
 *                          made it and that its namespace holds nothing else: no object of a
 *                          restored tree's images was made in it.
 *   210_join_ns own HOST   a tree with IPC and UTS namespaces of its own (PID 1 of unshare -pf
 *                          --ipc --uts): host name OWN_HOST, a queue KEY_OWN with a message,
 *                          a child, memory with a pattern.  Restored with --join-ns into the
 *                          holder's, it checks from inside (both tasks) that it sees the
 *                          holder's host name HOST and queue, and not its own queue (the
 *                          images' objects are not made in a joined namespace), and its memory.
 *   210_join_ns pod HOST   a tree started in the holder's namespaces (nsenter): it attaches the
 *                          holder's segment and marks its second page.  Restored with --join-ns,
 *                          its attachment is the holder's live segment again: the pattern and
 *                          its mark are there, nattch counts it and the holder, and a write
 *                          shows through a new attachment.
 */
#include "common.h"
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/shm.h>
#include <sys/utsname.h>

#define KEY_Q 0x2100a
#define KEY_SHM 0x2100b
#define KEY_OWN 0x2100c
#define OWN_HOST "joinns-own"
#define MSG "held by the holder"
#define SHM_SIZE (2 * 4096)
#define SEED_H 0x210a
#define SEED_MEM 0x210b
#define MARK 0x7a11ed5eedULL
#define MEM_SIZE (1 << 20)

struct msgbuf_small { long mtype; char mtext[64]; };

static void check_host(const char *want)
{
	struct utsname u;
	CHECK(uname(&u) == 0 && strcmp(u.nodename, want) == 0, "host name '%s', expected '%s'", u.nodename, want);
}

static int count_lines(const char *path)
{
	char buf[8192];
	int fd = open(path, O_RDONLY), n = 0;
	ssize_t got;
	DIE_IF(fd < 0, "open %s", path);
	while ((got = read(fd, buf, sizeof(buf))) > 0)
		for (ssize_t i = 0; i < got; i++)
			n += buf[i] == '\n';
	close(fd);
	return n - 1;       /* the header */
}

/* The holder's queue holds exactly MSG, read without taking it (MSG_COPY). */
static void check_queue(void)
{
	struct msgbuf_small m;
	struct msqid_ds ds;
	int q = msgget(KEY_Q, 0);
	if (!CHECK(q >= 0, "no queue with key %#x: %s", KEY_Q, strerror(errno)))
		return;
	CHECK(msgctl(q, IPC_STAT, &ds) == 0 && ds.msg_qnum == 1, "queue holds %lu messages", (unsigned long)ds.msg_qnum);
	memset(&m, 0, sizeof(m));
	ssize_t n = msgrcv(q, &m, sizeof(m.mtext), 0, IPC_NOWAIT | 040000 /* MSG_COPY */);
	CHECK(n == (ssize_t)strlen(MSG) && memcmp(m.mtext, MSG, strlen(MSG)) == 0, "queue message '%.*s'",
	      n > 0 ? (int)n : 0, m.mtext);
}

static void hold(const char *host)
{
	DIE_IF(sethostname(host, strlen(host)), "sethostname");
	int q = msgget(KEY_Q, IPC_CREAT | IPC_EXCL | 0600);
	DIE_IF(q < 0, "msgget");
	struct msgbuf_small m = {1, MSG};
	DIE_IF(msgsnd(q, &m, strlen(MSG), 0), "msgsnd");
	int s = shmget(KEY_SHM, SHM_SIZE, IPC_CREAT | IPC_EXCL | 0600);
	DIE_IF(s < 0, "shmget");
	char *p = shmat(s, NULL, 0);
	DIE_IF(p == (void *)-1, "shmat");
	cr_fill(p, 4096, SEED_H);
	cr_ready();
	cr_wait();
	check_host(host);
	check_queue();
	CHECK(cr_check(p, 4096, SEED_H) < 0, "the segment's first page lost its pattern");
	CHECK(count_lines("/proc/sysvipc/msg") == 1, "%d queues in the namespace, expected the holder's one",
	      count_lines("/proc/sysvipc/msg"));
	CHECK(count_lines("/proc/sysvipc/shm") == 1, "%d segments in the namespace, expected the holder's one",
	      count_lines("/proc/sysvipc/shm"));
	CHECK(count_lines("/proc/sysvipc/sem") == 0, "%d semaphore sets in the namespace", count_lines("/proc/sysvipc/sem"));
	cr_finish();
}

static void own(const char *host)
{
	DIE_IF(getpid() != 1, "not the init of a PID namespace");
	DIE_IF(setsid() < 0, "setsid");
	DIE_IF(sethostname(OWN_HOST, strlen(OWN_HOST)), "sethostname");
	int q = msgget(KEY_OWN, IPC_CREAT | IPC_EXCL | 0600);
	DIE_IF(q < 0, "msgget");
	struct msgbuf_small m = {2, "the tree's own"};
	DIE_IF(msgsnd(q, &m, 14, 0), "msgsnd");
	char *mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	DIE_IF(mem == MAP_FAILED, "mmap");
	cr_fill(mem, MEM_SIZE, SEED_MEM);
	pid_t c = cr_fork();
	if (c == 0) {
		cr_wait();
		check_host(host);
		CHECK(msgget(KEY_Q, 0) >= 0, "the child does not see the holder's queue");
		cr_child_exit();
	}
	cr_ready();
	cr_wait();
	check_host(host);
	check_queue();
	CHECK(msgget(KEY_OWN, 0) < 0 && errno == ENOENT, "the tree's own queue %#x was made in the joined namespace",
	      KEY_OWN);
	CHECK(cr_check(mem, MEM_SIZE, SEED_MEM) < 0, "memory lost its pattern");
	kill(c, SIGUSR1);
	int st;
	CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0, "child failed (%#x)", st);
	cr_finish();
}

static void pod(const char *host)
{
	DIE_IF(setsid() < 0, "setsid");
	int s = shmget(KEY_SHM, 0, 0);
	DIE_IF(s < 0, "the holder's segment");
	char *p = shmat(s, NULL, 0);
	DIE_IF(p == (void *)-1, "shmat");
	DIE_IF(cr_check(p, 4096, SEED_H) >= 0, "the holder's segment lacks its pattern");
	*(volatile uint64_t *)(p + 4096) = MARK;
	cr_ready();
	cr_wait();
	check_host(host);
	check_queue();
	struct shmid_ds ds;
	CHECK(shmget(KEY_SHM, 0, 0) == s, "key %#x is no longer segment %d", KEY_SHM, s);
	CHECK(shmctl(s, IPC_STAT, &ds) == 0 && ds.shm_nattch == 2, "segment attached %lu times, expected 2 (the "
	      "holder and this tree)", (unsigned long)ds.shm_nattch);
	CHECK(cr_check(p, 4096, SEED_H) < 0, "the attachment lost the holder's pattern");
	CHECK(*(volatile uint64_t *)(p + 4096) == MARK, "the attachment lost this tree's mark");
	char *again = shmat(s, NULL, 0);
	if (CHECK(again != (void *)-1, "shmat again")) {
		*(volatile uint64_t *)(p + 4096 + 8) = MARK + 1;
		CHECK(*(volatile uint64_t *)(again + 4096 + 8) == MARK + 1, "the attachment is not the live segment");
		shmdt(again);
	}
	cr_finish();
}

int main(int argc, char **argv)
{
	cr_init();
	DIE_IF(argc != 3, "usage: 210_join_ns hold|own|pod HOST");
	if (strcmp(argv[1], "hold") == 0)
		hold(argv[2]);
	else if (strcmp(argv[1], "own") == 0)
		own(argv[2]);
	else if (strcmp(argv[1], "pod") == 0)
		pod(argv[2]);
	cr_die("unknown role %s", argv[1]);
}
