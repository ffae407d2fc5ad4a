/* Scenario 10: SSE/AVX and x87 state.
 * Two threads each spin in an asm loop holding distinct 256-bit values in
 * ymm0-ymm15 (so xmm0-15 and the upper halves), a non-default MXCSR
 * (round-toward-zero + FTZ), a non-default x87 control word and two values on
 * the x87 stack.  When cr_go is set, the loop stores everything and the C code
 * compares.  SKIP without AVX. */
#include "common.h"
#include <cpuid.h>
#include <pthread.h>

struct avx_state {
	uint8_t ymm[16][32]; /* 0 */
	int64_t x87[2];      /* 512 */
	uint32_t mxcsr;      /* 528 */
	uint16_t fcw;        /* 532 */
	uint16_t pad;
} __attribute__((aligned(64)));

void hold_avx(const struct avx_state *in, struct avx_state *out, volatile int *spinning);
__asm__(
	".text\n"
	".globl hold_avx\n"
	".type hold_avx,@function\n"
	"hold_avx:\n"
	"	sub $24, %rsp\n"
	"	stmxcsr 0(%rsp)\n"
	"	fnstcw 4(%rsp)\n"
	"	ldmxcsr 528(%rdi)\n"
	"	fldcw 532(%rdi)\n"
	"	fildq 512(%rdi)\n"
	"	fildq 520(%rdi)\n"
	"	vmovdqu 0(%rdi), %ymm0\n	vmovdqu 32(%rdi), %ymm1\n"
	"	vmovdqu 64(%rdi), %ymm2\n	vmovdqu 96(%rdi), %ymm3\n"
	"	vmovdqu 128(%rdi), %ymm4\n	vmovdqu 160(%rdi), %ymm5\n"
	"	vmovdqu 192(%rdi), %ymm6\n	vmovdqu 224(%rdi), %ymm7\n"
	"	vmovdqu 256(%rdi), %ymm8\n	vmovdqu 288(%rdi), %ymm9\n"
	"	vmovdqu 320(%rdi), %ymm10\n	vmovdqu 352(%rdi), %ymm11\n"
	"	vmovdqu 384(%rdi), %ymm12\n	vmovdqu 416(%rdi), %ymm13\n"
	"	vmovdqu 448(%rdi), %ymm14\n	vmovdqu 480(%rdi), %ymm15\n"
	"	movl $1, (%rdx)\n"
	"1:	pause\n"
	"	cmpl $0, cr_go(%rip)\n"
	"	je 1b\n"
	"	vmovdqu %ymm0, 0(%rsi)\n	vmovdqu %ymm1, 32(%rsi)\n"
	"	vmovdqu %ymm2, 64(%rsi)\n	vmovdqu %ymm3, 96(%rsi)\n"
	"	vmovdqu %ymm4, 128(%rsi)\n	vmovdqu %ymm5, 160(%rsi)\n"
	"	vmovdqu %ymm6, 192(%rsi)\n	vmovdqu %ymm7, 224(%rsi)\n"
	"	vmovdqu %ymm8, 256(%rsi)\n	vmovdqu %ymm9, 288(%rsi)\n"
	"	vmovdqu %ymm10, 320(%rsi)\n	vmovdqu %ymm11, 352(%rsi)\n"
	"	vmovdqu %ymm12, 384(%rsi)\n	vmovdqu %ymm13, 416(%rsi)\n"
	"	vmovdqu %ymm14, 448(%rsi)\n	vmovdqu %ymm15, 480(%rsi)\n"
	"	fistpq 520(%rsi)\n"
	"	fistpq 512(%rsi)\n"
	"	stmxcsr 528(%rsi)\n"
	"	fnstcw 532(%rsi)\n"
	"	ldmxcsr 0(%rsp)\n"
	"	fldcw 4(%rsp)\n"
	"	vzeroupper\n"
	"	add $24, %rsp\n"
	"	ret\n"
	".size hold_avx, .-hold_avx\n");

struct job {
	struct avx_state in, out;
	const char *who;
	volatile int spinning;
};

static void *thread_fn(void *arg)
{
	struct job *j = arg;
	hold_avx(&j->in, &j->out, &j->spinning);
	return NULL;
}

static void *announcer(void *arg)
{
	struct job *m = arg;
	while (!m->spinning)
		cr_sleep_ms(1);
	cr_ready();
	return NULL;
}

static void setup(struct job *j, uint64_t seed, const char *who)
{
	j->who = who;
	cr_fill(j->in.ymm, sizeof(j->in.ymm), seed);
	j->in.x87[0] = (int64_t)(cr_mix64(seed) >> 12);
	j->in.x87[1] = -(int64_t)(cr_mix64(seed + 1) >> 13);
	j->in.mxcsr = 0x1f80 | 0x6000 | 0x8000; /* masks, RC=toward zero, FTZ */
	j->in.fcw = 0x0f7f;                     /* x87: RC=truncate, 64-bit precision */
}

static void compare(struct job *j)
{
	for (int r = 0; r < 16; r++)
		if (memcmp(j->in.ymm[r], j->out.ymm[r], 32)) {
			const uint64_t *g = (const uint64_t *)j->out.ymm[r], *e = (const uint64_t *)j->in.ymm[r];
			cr_fail("%s: ymm%d = %016llx:%016llx:%016llx:%016llx, expected %016llx:%016llx:%016llx:%016llx",
				j->who, r, (unsigned long long)g[3], (unsigned long long)g[2],
				(unsigned long long)g[1], (unsigned long long)g[0], (unsigned long long)e[3],
				(unsigned long long)e[2], (unsigned long long)e[1], (unsigned long long)e[0]);
		}
	CHECK(j->in.x87[0] == j->out.x87[0] && j->in.x87[1] == j->out.x87[1],
	      "%s: x87 stack holds %lld,%lld, expected %lld,%lld", j->who, (long long)j->out.x87[0],
	      (long long)j->out.x87[1], (long long)j->in.x87[0], (long long)j->in.x87[1]);
	CHECK(j->out.mxcsr == j->in.mxcsr, "%s: MXCSR 0x%x, expected 0x%x", j->who, j->out.mxcsr, j->in.mxcsr);
	CHECK(j->out.fcw == j->in.fcw, "%s: x87 control word 0x%x, expected 0x%x", j->who, j->out.fcw, j->in.fcw);
}

int main(void)
{
	unsigned a, b, c, d;
	static struct job mj, tj;
	if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_AVX) || !(c & bit_OSXSAVE))
		cr_skip("CPU or OS lacks AVX");
	uint32_t xlo, xhi;
	__asm__ volatile("xgetbv" : "=a"(xlo), "=d"(xhi) : "c"(0));
	if ((xlo & 6) != 6)
		cr_skip("XCR0 does not enable SSE+AVX state");
	cr_init();
	setup(&mj, 0x1000, "main thread");
	setup(&tj, 0x1001, "second thread");
	pthread_t t, an;
	DIE_IF(pthread_create(&t, NULL, thread_fn, &tj), "pthread_create");
	while (!tj.spinning)
		cr_sleep_ms(1);
	DIE_IF(pthread_create(&an, NULL, announcer, &mj), "pthread_create");
	hold_avx(&mj.in, &mj.out, &mj.spinning);
	pthread_join(t, NULL);
	pthread_join(an, NULL);
	compare(&mj);
	compare(&tj);
	cr_finish();
}
