/* Scenario 13: AMX tile state.
 * If the CPU has AMX-TILE (CPUID.7.0:EDX[24]) and the kernel supports
 * XTILEDATA: request permission (ARCH_REQ_XCOMP_PERM, 18), load a tile
 * configuration (palette 1, tmm0-tmm3 with 16 rows x 64 bytes, tmm4 smaller)
 * and tile data, plus ymm0-ymm3 values, then spin in an asm loop on cr_go.
 * Afterwards store the configuration, the tiles and the ymm registers and
 * compare (a restore that drops the enlarged xstate silently zeroes AVX state
 * too).  Otherwise SKIP. */
#include "common.h"
#include <cpuid.h>
#include <pthread.h>

#define ARCH_GET_XCOMP_SUPP 0x1021
#define ARCH_GET_XCOMP_PERM 0x1022
#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

struct tilecfg {
	uint8_t palette, start_row;
	uint8_t reserved[14];
	uint16_t colsb[16];
	uint8_t rows[16];
} __attribute__((packed, aligned(64)));

#define NT 5
struct amx_io {
	struct tilecfg cfg;           /* 0 */
	uint8_t tile[NT][16 * 64];    /* 64: tmm0..tmm4, stride 64 */
	struct tilecfg cfg_out;       /* 64 + 5120 = 5184 */
	uint8_t ymm[4][32];           /* 5248 */
} __attribute__((aligned(64)));

/* void hold_amx(struct amx_io *in, struct amx_io *out, volatile int *spinning) */
void hold_amx(struct amx_io *in, struct amx_io *out, volatile int *spinning);
__asm__(
	".text\n"
	".globl hold_amx\n"
	".type hold_amx,@function\n"
	"hold_amx:\n"
	"	push %rbx\n"
	"	mov $64, %rbx\n"
	"	ldtilecfg 0(%rdi)\n"
	"	lea 64(%rdi), %rax\n"
	"	tileloadd (%rax,%rbx,1), %tmm0\n"
	"	add $1024, %rax\n"
	"	tileloadd (%rax,%rbx,1), %tmm1\n"
	"	add $1024, %rax\n"
	"	tileloadd (%rax,%rbx,1), %tmm2\n"
	"	add $1024, %rax\n"
	"	tileloadd (%rax,%rbx,1), %tmm3\n"
	"	add $1024, %rax\n"
	"	tileloadd (%rax,%rbx,1), %tmm4\n"
	"	vmovdqu 5248(%rdi), %ymm0\n"
	"	vmovdqu 5280(%rdi), %ymm1\n"
	"	vmovdqu 5312(%rdi), %ymm2\n"
	"	vmovdqu 5344(%rdi), %ymm3\n"
	"	movl $1, (%rdx)\n"
	"1:	pause\n"
	"	cmpl $0, cr_go(%rip)\n"
	"	je 1b\n"
	"	vmovdqu %ymm0, 5248(%rsi)\n"
	"	vmovdqu %ymm1, 5280(%rsi)\n"
	"	vmovdqu %ymm2, 5312(%rsi)\n"
	"	vmovdqu %ymm3, 5344(%rsi)\n"
	"	vzeroupper\n"
	"	sttilecfg 5184(%rsi)\n"
	"	lea 64(%rsi), %rax\n"
	"	tilestored %tmm0, (%rax,%rbx,1)\n"
	"	add $1024, %rax\n"
	"	tilestored %tmm1, (%rax,%rbx,1)\n"
	"	add $1024, %rax\n"
	"	tilestored %tmm2, (%rax,%rbx,1)\n"
	"	add $1024, %rax\n"
	"	tilestored %tmm3, (%rax,%rbx,1)\n"
	"	add $1024, %rax\n"
	"	tilestored %tmm4, (%rax,%rbx,1)\n"
	"	tilerelease\n"
	"	pop %rbx\n"
	"	ret\n"
	".size hold_amx, .-hold_amx\n");

_Static_assert(__builtin_offsetof(struct amx_io, cfg_out) == 5184, "layout");
_Static_assert(__builtin_offsetof(struct amx_io, ymm) == 5248, "layout");

static volatile int spinning;

static void *announcer(void *arg)
{
	(void)arg;
	while (!spinning)
		cr_sleep_ms(1);
	cr_ready();
	return NULL;
}

int main(void)
{
	unsigned a, b, c, d;
	static struct amx_io in, out;
	if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(d & (1u << 24)))
		cr_skip("CPU lacks AMX-TILE (CPUID.7.0:EDX[24])");
	unsigned long supp = 0;
	if (syscall(SYS_arch_prctl, ARCH_GET_XCOMP_SUPP, &supp) || !(supp & (1ul << XFEATURE_XTILEDATA)))
		cr_skip("kernel does not support XTILEDATA (supp 0x%lx)", supp);
	if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA))
		cr_skip("ARCH_REQ_XCOMP_PERM(XTILEDATA) failed: %s", strerror(errno));
	cr_init();

	in.cfg.palette = 1;
	for (int t = 0; t < 4; t++) {
		in.cfg.colsb[t] = 64;
		in.cfg.rows[t] = 16;
	}
	in.cfg.colsb[4] = 32; /* tmm4: 8 rows x 32 bytes */
	in.cfg.rows[4] = 8;
	cr_fill(in.tile, sizeof(in.tile), 0x1300);
	cr_fill(in.ymm, sizeof(in.ymm), 0x1301);
	memset(&out, 0, sizeof(out));

	pthread_t an;
	DIE_IF(pthread_create(&an, NULL, announcer, NULL), "pthread_create");
	hold_amx(&in, &out, &spinning);
	pthread_join(an, NULL);

	CHECK(!memcmp(&in.cfg, &out.cfg_out, sizeof(in.cfg)), "tile configuration changed (palette %u)",
	      out.cfg_out.palette);
	for (int t = 0; t < NT; t++) {
		int rows = in.cfg.rows[t], cols = in.cfg.colsb[t];
		for (int r = 0; r < rows; r++)
			if (memcmp(in.tile[t] + r * 64, out.tile[t] + r * 64, (size_t)cols)) {
				cr_fail("tmm%d row %d differs", t, r);
				break;
			}
	}
	for (int r = 0; r < 4; r++)
		CHECK(!memcmp(in.ymm[r], out.ymm[r], 32), "ymm%d differs (AVX state lost next to AMX)", r);
	unsigned long perm = 0;
	syscall(SYS_arch_prctl, ARCH_GET_XCOMP_PERM, &perm);
	CHECK(perm & (1ul << XFEATURE_XTILEDATA), "XTILEDATA permission lost (perm 0x%lx)", perm);
	cr_finish();
}
