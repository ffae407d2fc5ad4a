/* Scenario 11: AVX-512 state.
 * Two threads each spin in an asm loop holding distinct 512-bit values in
 * zmm0-zmm31 and distinct 64-bit masks in k1-k7.  When cr_go is set the loop
 * stores them and the C code compares.  SKIP without AVX-512F/BW or without
 * OS support (XCR0 opmask/ZMM_Hi256/Hi16_ZMM). */
#include "common.h"
#include <cpuid.h>
#include <pthread.h>

struct zstate {
	uint8_t zmm[32][64]; /* 0 */
	uint64_t k[7];       /* 2048: k1..k7 */
} __attribute__((aligned(64)));

void hold_zmm(const struct zstate *in, struct zstate *out, volatile int *spinning);
__asm__(
	".text\n"
	".globl hold_zmm\n"
	".type hold_zmm,@function\n"
	"hold_zmm:\n"
	"	vmovdqu64 0(%rdi), %zmm0\n"
	"	vmovdqu64 64(%rdi), %zmm1\n"
	"	vmovdqu64 128(%rdi), %zmm2\n"
	"	vmovdqu64 192(%rdi), %zmm3\n"
	"	vmovdqu64 256(%rdi), %zmm4\n"
	"	vmovdqu64 320(%rdi), %zmm5\n"
	"	vmovdqu64 384(%rdi), %zmm6\n"
	"	vmovdqu64 448(%rdi), %zmm7\n"
	"	vmovdqu64 512(%rdi), %zmm8\n"
	"	vmovdqu64 576(%rdi), %zmm9\n"
	"	vmovdqu64 640(%rdi), %zmm10\n"
	"	vmovdqu64 704(%rdi), %zmm11\n"
	"	vmovdqu64 768(%rdi), %zmm12\n"
	"	vmovdqu64 832(%rdi), %zmm13\n"
	"	vmovdqu64 896(%rdi), %zmm14\n"
	"	vmovdqu64 960(%rdi), %zmm15\n"
	"	vmovdqu64 1024(%rdi), %zmm16\n"
	"	vmovdqu64 1088(%rdi), %zmm17\n"
	"	vmovdqu64 1152(%rdi), %zmm18\n"
	"	vmovdqu64 1216(%rdi), %zmm19\n"
	"	vmovdqu64 1280(%rdi), %zmm20\n"
	"	vmovdqu64 1344(%rdi), %zmm21\n"
	"	vmovdqu64 1408(%rdi), %zmm22\n"
	"	vmovdqu64 1472(%rdi), %zmm23\n"
	"	vmovdqu64 1536(%rdi), %zmm24\n"
	"	vmovdqu64 1600(%rdi), %zmm25\n"
	"	vmovdqu64 1664(%rdi), %zmm26\n"
	"	vmovdqu64 1728(%rdi), %zmm27\n"
	"	vmovdqu64 1792(%rdi), %zmm28\n"
	"	vmovdqu64 1856(%rdi), %zmm29\n"
	"	vmovdqu64 1920(%rdi), %zmm30\n"
	"	vmovdqu64 1984(%rdi), %zmm31\n"
	"	kmovq 2048(%rdi), %k1\n"
	"	kmovq 2056(%rdi), %k2\n"
	"	kmovq 2064(%rdi), %k3\n"
	"	kmovq 2072(%rdi), %k4\n"
	"	kmovq 2080(%rdi), %k5\n"
	"	kmovq 2088(%rdi), %k6\n"
	"	kmovq 2096(%rdi), %k7\n"
	"	movl $1, (%rdx)\n"
	"1:	pause\n"
	"	cmpl $0, cr_go(%rip)\n"
	"	je 1b\n"
	"	vmovdqu64 %zmm0, 0(%rsi)\n"
	"	vmovdqu64 %zmm1, 64(%rsi)\n"
	"	vmovdqu64 %zmm2, 128(%rsi)\n"
	"	vmovdqu64 %zmm3, 192(%rsi)\n"
	"	vmovdqu64 %zmm4, 256(%rsi)\n"
	"	vmovdqu64 %zmm5, 320(%rsi)\n"
	"	vmovdqu64 %zmm6, 384(%rsi)\n"
	"	vmovdqu64 %zmm7, 448(%rsi)\n"
	"	vmovdqu64 %zmm8, 512(%rsi)\n"
	"	vmovdqu64 %zmm9, 576(%rsi)\n"
	"	vmovdqu64 %zmm10, 640(%rsi)\n"
	"	vmovdqu64 %zmm11, 704(%rsi)\n"
	"	vmovdqu64 %zmm12, 768(%rsi)\n"
	"	vmovdqu64 %zmm13, 832(%rsi)\n"
	"	vmovdqu64 %zmm14, 896(%rsi)\n"
	"	vmovdqu64 %zmm15, 960(%rsi)\n"
	"	vmovdqu64 %zmm16, 1024(%rsi)\n"
	"	vmovdqu64 %zmm17, 1088(%rsi)\n"
	"	vmovdqu64 %zmm18, 1152(%rsi)\n"
	"	vmovdqu64 %zmm19, 1216(%rsi)\n"
	"	vmovdqu64 %zmm20, 1280(%rsi)\n"
	"	vmovdqu64 %zmm21, 1344(%rsi)\n"
	"	vmovdqu64 %zmm22, 1408(%rsi)\n"
	"	vmovdqu64 %zmm23, 1472(%rsi)\n"
	"	vmovdqu64 %zmm24, 1536(%rsi)\n"
	"	vmovdqu64 %zmm25, 1600(%rsi)\n"
	"	vmovdqu64 %zmm26, 1664(%rsi)\n"
	"	vmovdqu64 %zmm27, 1728(%rsi)\n"
	"	vmovdqu64 %zmm28, 1792(%rsi)\n"
	"	vmovdqu64 %zmm29, 1856(%rsi)\n"
	"	vmovdqu64 %zmm30, 1920(%rsi)\n"
	"	vmovdqu64 %zmm31, 1984(%rsi)\n"
	"	kmovq %k1, 2048(%rsi)\n"
	"	kmovq %k2, 2056(%rsi)\n"
	"	kmovq %k3, 2064(%rsi)\n"
	"	kmovq %k4, 2072(%rsi)\n"
	"	kmovq %k5, 2080(%rsi)\n"
	"	kmovq %k6, 2088(%rsi)\n"
	"	kmovq %k7, 2096(%rsi)\n"
	"	vzeroupper\n"
	"	ret\n"
	".size hold_zmm, .-hold_zmm\n");

struct job {
	struct zstate in, out;
	const char *who;
	volatile int spinning;
};

static void *thread_fn(void *arg)
{
	struct job *j = arg;
	hold_zmm(&j->in, &j->out, &j->spinning);
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

static void compare(struct job *j)
{
	for (int r = 0; r < 32; r++)
		if (memcmp(j->in.zmm[r], j->out.zmm[r], 64)) {
			int lane = 0;
			while (lane < 8 && !memcmp(j->in.zmm[r] + 8 * lane, j->out.zmm[r] + 8 * lane, 8))
				lane++;
			cr_fail("%s: zmm%d differs (first bad 64-bit lane %d: %016llx, expected %016llx)",
				j->who, r, lane, (unsigned long long)((uint64_t *)j->out.zmm[r])[lane],
				(unsigned long long)((uint64_t *)j->in.zmm[r])[lane]);
		}
	for (int k = 0; k < 7; k++)
		CHECK(j->in.k[k] == j->out.k[k], "%s: k%d = %016llx, expected %016llx", j->who, k + 1,
		      (unsigned long long)j->out.k[k], (unsigned long long)j->in.k[k]);
}

int main(void)
{
	unsigned a, b, c, d;
	static struct job mj = { .who = "main thread" }, tj = { .who = "second thread" };
	if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_OSXSAVE))
		cr_skip("no OSXSAVE");
	if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(b & bit_AVX512F))
		cr_skip("CPU lacks avx512f");
	if (!(b & bit_AVX512BW))
		cr_skip("CPU lacks avx512bw (64-bit mask registers)");
	uint32_t xlo, xhi;
	__asm__ volatile("xgetbv" : "=a"(xlo), "=d"(xhi) : "c"(0));
	if ((xlo & 0xe6) != 0xe6)
		cr_skip("XCR0 0x%x does not enable AVX-512 state", xlo);
	cr_init();
	cr_fill(mj.in.zmm, sizeof(mj.in.zmm), 0x1100);
	cr_fill(tj.in.zmm, sizeof(tj.in.zmm), 0x1101);
	for (int k = 0; k < 7; k++) {
		mj.in.k[k] = cr_mix64(0x1110 + k);
		tj.in.k[k] = cr_mix64(0x1120 + k);
	}
	pthread_t t, an;
	DIE_IF(pthread_create(&t, NULL, thread_fn, &tj), "pthread_create");
	while (!tj.spinning)
		cr_sleep_ms(1);
	DIE_IF(pthread_create(&an, NULL, announcer, &mj), "pthread_create");
	hold_zmm(&mj.in, &mj.out, &mj.spinning);
	pthread_join(t, NULL);
	pthread_join(an, NULL);
	compare(&mj);
	compare(&tj);
	cr_finish();
}
