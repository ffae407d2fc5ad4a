/* Scenario 29: seccomp filters.
 * Two stacked filters, synchronised to a second thread (TSYNC):
 *   A: getpgid(0x7a5b3c1d) -> ERRNO(ENOTBLK)
 *   B: getsid(0x6c2d4e1f)  -> ERRNO(EL2HLT)
 * (magic arguments: no library or engine ever makes these calls; every other
 * syscall is allowed).  After the signal, in both threads: /proc status shows
 * Seccomp 2 and Seccomp_filters 2, both filters still apply, and the same
 * syscalls with ordinary arguments behave normally. */
#include "common.h"
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stddef.h>

#define MAGIC_A 0x7a5b3c1d
#define MAGIC_B 0x6c2d4e1f

static void install(int nr, uint32_t arg, int err)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)nr, 0, 3),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, arg, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (uint32_t)err),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { sizeof(f) / sizeof(f[0]), f };
	long r = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &prog);
	DIE_IF(r != 0, "seccomp filter install (returned %ld)", r);
}

static void verify(const char *who)
{
	char path[64], v[32];
	snprintf(path, sizeof(path), "/proc/self/task/%d/status", (int)cr_gettid());
	CHECK(cr_status_field(path, "Seccomp", v, sizeof(v)) == 0 && !strcmp(v, "2"), "%s: Seccomp '%s'", who, v);
	CHECK(cr_status_field(path, "Seccomp_filters", v, sizeof(v)) == 0 && !strcmp(v, "2"),
	      "%s: Seccomp_filters '%s'", who, v);
	errno = 0;
	long r = syscall(SYS_getpgid, MAGIC_A);
	CHECK(r == -1 && errno == ENOTBLK, "%s: getpgid(magic) = %ld errno %d, expected ENOTBLK", who, r, errno);
	errno = 0;
	r = syscall(SYS_getsid, MAGIC_B);
	CHECK(r == -1 && errno == EL2HLT, "%s: getsid(magic) = %ld errno %d, expected EL2HLT", who, r, errno);
	CHECK(getpgid(0) == getpgrp(), "%s: getpgid(0) broken", who);
	CHECK(getsid(0) > 0, "%s: getsid(0) broken", who);
	errno = 0;
	r = syscall(SYS_getpgid, MAGIC_A + 1);
	CHECK(r == -1 && errno == ESRCH, "%s: getpgid(other) errno %d, expected ESRCH", who, errno);
}

static volatile int t_ready;
static void *thread_fn(void *arg)
{
	(void)arg;
	t_ready = 1;
	cr_wait();
	verify("second thread");
	return NULL;
}

int main(void)
{
	cr_init();
	pthread_t t;
	DIE_IF(pthread_create(&t, NULL, thread_fn, NULL), "pthread_create");
	while (!t_ready)
		cr_sleep_ms(1);
	DIE_IF(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "PR_SET_NO_NEW_PRIVS");
	install(SYS_getpgid, MAGIC_A, ENOTBLK);
	install(SYS_getsid, MAGIC_B, EL2HLT);
	errno = 0;
	DIE_IF(syscall(SYS_getpgid, MAGIC_A) != -1 || errno != ENOTBLK, "filter A not active before the dump");

	cr_ready();
	cr_wait();
	verify("main thread");
	pthread_join(t, NULL);
	cr_finish();
}
