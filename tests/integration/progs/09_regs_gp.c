/* Scenario 09: general-purpose registers.
 * The main thread and a second thread each spin in an asm loop holding 15
 * distinct 64-bit values in rax, rbx, rcx, rdx, rsi, rdi, rbp, r8-r15,
 * testing only the memory flag
 * cr_go.  When the flag is set, the loop stores the registers, and the C code
 * compares them with the values it loaded.  The dump catches both threads in
 * the loop, so every register must survive restore. */
#include "common.h"
#include <pthread.h>

#define NREG 15
static const char *names[NREG] = { "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "r8",
				   "r9",  "r10", "r11", "r12", "r13", "r14", "r15" };

/* void hold_gprs(const uint64_t in[15], uint64_t out[15], volatile int *spinning);
 * sets *spinning = 1 once all registers are loaded */
void hold_gprs(const uint64_t *in, uint64_t *out, volatile int *spinning);
__asm__(
	".text\n"
	".globl hold_gprs\n"
	".type hold_gprs,@function\n"
	"hold_gprs:\n"
	"	push %rbx\n	push %rbp\n	push %r12\n	push %r13\n	push %r14\n	push %r15\n"
	"	push %rsi\n" /* out pointer at 0(%rsp) */
	"	sub $8, %rsp\n" /* keep 16-byte alignment */
	"	movl $1, (%rdx)\n" /* announce: the values are loaded right below */
	"	mov 8(%rdi), %rbx\n"
	"	mov 16(%rdi), %rcx\n"
	"	mov 24(%rdi), %rdx\n"
	"	mov 32(%rdi), %rsi\n"
	"	mov 48(%rdi), %rbp\n"
	"	mov 56(%rdi), %r8\n"
	"	mov 64(%rdi), %r9\n"
	"	mov 72(%rdi), %r10\n"
	"	mov 80(%rdi), %r11\n"
	"	mov 88(%rdi), %r12\n"
	"	mov 96(%rdi), %r13\n"
	"	mov 104(%rdi), %r14\n"
	"	mov 112(%rdi), %r15\n"
	"	mov 0(%rdi), %rax\n"
	"	mov 40(%rdi), %rdi\n"
	"1:	pause\n"
	"	cmpl $0, cr_go(%rip)\n"
	"	je 1b\n"
	"	mov %rax, 0(%rsp)\n" /* stash rax in the alignment slot */
	"	mov 8(%rsp), %rax\n" /* out */
	"	mov %rbx, 8(%rax)\n"
	"	mov %rcx, 16(%rax)\n"
	"	mov %rdx, 24(%rax)\n"
	"	mov %rsi, 32(%rax)\n"
	"	mov %rdi, 40(%rax)\n"
	"	mov %rbp, 48(%rax)\n"
	"	mov %r8, 56(%rax)\n"
	"	mov %r9, 64(%rax)\n"
	"	mov %r10, 72(%rax)\n"
	"	mov %r11, 80(%rax)\n"
	"	mov %r12, 88(%rax)\n"
	"	mov %r13, 96(%rax)\n"
	"	mov %r14, 104(%rax)\n"
	"	mov %r15, 112(%rax)\n"
	"	mov 0(%rsp), %rbx\n"
	"	mov %rbx, 0(%rax)\n"
	"	add $8, %rsp\n"
	"	pop %rsi\n"
	"	pop %r15\n	pop %r14\n	pop %r13\n	pop %r12\n	pop %rbp\n	pop %rbx\n"
	"	ret\n"
	".size hold_gprs, .-hold_gprs\n");

struct regset {
	uint64_t in[NREG], out[NREG];
	const char *who;
};

static volatile int thread_spinning, main_spinning;

/* announces READY once the main thread is inside its loop too */
static void *announcer(void *arg)
{
	(void)arg;
	while (!main_spinning)
		cr_sleep_ms(1);
	cr_ready();
	return NULL;
}

static void compare(struct regset *r)
{
	for (int i = 0; i < NREG; i++)
		if (r->in[i] != r->out[i])
			cr_fail("%s: %s = 0x%016llx, expected 0x%016llx", r->who, names[i],
				(unsigned long long)r->out[i], (unsigned long long)r->in[i]);
}

static void *thread_fn(void *arg)
{
	struct regset *r = arg;
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &s, NULL);
	hold_gprs(r->in, r->out, &thread_spinning);
	return NULL;
}

int main(void)
{
	static struct regset main_r = { .who = "main thread" }, thr_r = { .who = "second thread" };
	cr_init();
	for (int i = 0; i < NREG; i++) {
		/* distinct, high bits set, no two equal, not pointers */
		main_r.in[i] = 0xa5a5000000000000ull ^ cr_mix64(0x0900 + i);
		thr_r.in[i] = 0x5a5a000000000000ull ^ cr_mix64(0x0980 + i);
	}
	pthread_t t;
	DIE_IF(pthread_create(&t, NULL, thread_fn, &thr_r), "pthread_create");
	while (!thread_spinning)
		cr_sleep_ms(1);
	pthread_t a;
	DIE_IF(pthread_create(&a, NULL, announcer, NULL), "pthread_create");
	hold_gprs(main_r.in, main_r.out, &main_spinning);
	pthread_join(t, NULL);
	pthread_join(a, NULL);
	compare(&main_r);
	compare(&thr_r);
	cr_finish();
}
