/* Scenario 141: a SysV segment of the host's IPC namespace attached by a tree without an
 * IPC namespace of its own: a dump must refuse it (naming the segment) and leave the tree
 * running.  The segment is removed at once (IPC_RMID), so it goes away with the process. */
#include "common.h"
#include <sys/ipc.h>
#include <sys/shm.h>

int main(void)
{
	cr_init();
	DIE_IF(setsid() < 0, "setsid");
	int id = shmget(IPC_PRIVATE, 4096, 0600);
	DIE_IF(id < 0, "shmget");
	char *p = shmat(id, NULL, 0);
	DIE_IF(p == (void *)-1, "shmat");
	DIE_IF(shmctl(id, IPC_RMID, NULL) != 0, "IPC_RMID");
	cr_fill(p, 4096, 141);
	cr_ready();
	cr_wait();
	cr_expect_pattern("segment", p, 4096, 141, 0);
	cr_finish();
}
