/* Scenario 02: memory protections.
 * One reservation split into areas separated by PROT_NONE guard pages:
 *   A rw- pattern | guard | B r-- pattern | guard | C -w- pattern |
 *   guard | D r-x code | guard | E --x code | guard (2 pages)
 * After the signal: /proc/self/maps perms unchanged, guard pages still fault,
 * B and C (made readable for the check) hold their patterns, D and E run. */
#include "common.h"
#include <setjmp.h>

#define SEED_A 0x0201
#define SEED_B 0x0202
#define SEED_C 0x0203

static sigjmp_buf jb;
static volatile int faults;

static void on_segv(int sig)
{
	(void)sig;
	faults++;
	siglongjmp(jb, 1);
}

/* returns 1 if reading addr faults */
static int read_faults(volatile uint8_t *addr)
{
	if (sigsetjmp(jb, 1) == 0) {
		(void)*addr;
		return 0;
	}
	return 1;
}

static int write_faults(volatile uint8_t *addr)
{
	if (sigsetjmp(jb, 1) == 0) {
		*addr = 1;
		return 0;
	}
	return 1;
}

/* mov eax, imm32 ; ret  (padded with int3) */
static void put_code(uint8_t *p, uint32_t imm, size_t len)
{
	memset(p, 0xcc, len);
	p[0] = 0xb8;
	memcpy(p + 1, &imm, 4);
	p[5] = 0xc3;
}

int main(void)
{
	size_t ps = cr_page_size();
	/* layout in pages */
	enum { A = 0, NA = 4, G1 = 4, B = 5, NB = 3, G2 = 8, C = 9, NC = 2, G3 = 11,
	       D = 12, ND = 1, G4 = 13, E = 14, NE = 1, G5 = 15, TOTAL = 17 };

	cr_init();
	struct sigaction sa = { 0 };
	sa.sa_handler = on_segv;
	sa.sa_flags = SA_NODEFER;
	sigaction(SIGSEGV, &sa, NULL);

	uint8_t *base = mmap(NULL, TOTAL * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	DIE_IF(base == MAP_FAILED, "mmap");
	cr_fill(base + A * ps, NA * ps, SEED_A);
	cr_fill(base + B * ps, NB * ps, SEED_B);
	cr_fill(base + C * ps, NC * ps, SEED_C);
	put_code(base + D * ps, 0x1234abcd, ps);
	put_code(base + E * ps, 0x600dc0de, ps);
	/* guards were touched too: their content must not matter */
	memset(base + G1 * ps, 0x77, ps);
	DIE_IF(mprotect(base + G1 * ps, ps, PROT_NONE), "mprotect G1");
	DIE_IF(mprotect(base + G2 * ps, ps, PROT_NONE), "mprotect G2");
	DIE_IF(mprotect(base + G3 * ps, ps, PROT_NONE), "mprotect G3");
	DIE_IF(mprotect(base + G4 * ps, ps, PROT_NONE), "mprotect G4");
	DIE_IF(mprotect(base + G5 * ps, 2 * ps, PROT_NONE), "mprotect G5");
	DIE_IF(mprotect(base + B * ps, NB * ps, PROT_READ), "mprotect B");
	DIE_IF(mprotect(base + C * ps, NC * ps, PROT_WRITE), "mprotect C");
	DIE_IF(mprotect(base + D * ps, ND * ps, PROT_READ | PROT_EXEC), "mprotect D");
	DIE_IF(mprotect(base + E * ps, NE * ps, PROT_EXEC), "mprotect E");

	/* the exec-only perms string depends on the CPU (PKU): record it */
	struct cr_map me;
	DIE_IF(cr_map_at(base + E * ps, &me), "maps E");
	char e_perms[5];
	memcpy(e_perms, me.perms, 5);
	int e_readable = !read_faults(base + E * ps);
	int c_readable = !read_faults(base + C * ps);
	int b_writable = !write_faults(base + B * ps + 1);
	DIE_IF(b_writable, "read-only area B is writable before the dump");
	int nvma = 0;
	{
		struct cr_map m;
		for (int pg = 0; pg < TOTAL; pg++) {
			DIE_IF(cr_map_at(base + pg * ps, &m), "maps");
			if (m.start == (unsigned long)(base + pg * ps))
				nvma++;
		}
	}
	faults = 0;

	cr_ready();
	cr_wait();

	cr_expect_perms("A", base + A * ps, "rw-p");
	cr_expect_perms("guard 1", base + G1 * ps, "---p");
	cr_expect_perms("B", base + B * ps, "r--p");
	cr_expect_perms("guard 2", base + G2 * ps, "---p");
	cr_expect_perms("C", base + C * ps, "-w-p");
	cr_expect_perms("guard 3", base + G3 * ps, "---p");
	cr_expect_perms("D", base + D * ps, "r-xp");
	cr_expect_perms("guard 4", base + G4 * ps, "---p");
	cr_expect_perms("E", base + E * ps, e_perms);
	cr_expect_perms("guard 5", base + G5 * ps + ps, "---p");
	{
		struct cr_map m;
		int n = 0;
		for (int pg = 0; pg < TOTAL; pg++)
			if (cr_map_at(base + pg * ps, &m) == 0 && m.start == (unsigned long)(base + pg * ps))
				n++;
		CHECK_EQ(n, nvma, "number of VMAs in the reservation");
	}

	cr_expect_pattern("A content", base + A * ps, NA * ps, SEED_A, 0);
	cr_expect_pattern("B content", base + B * ps, NB * ps, SEED_B, 0);
	CHECK(write_faults(base + B * ps + 1), "read-only area B became writable");
	CHECK(read_faults(base + G1 * ps), "guard page 1 readable");
	CHECK(read_faults(base + G2 * ps + 100), "guard page 2 readable");
	CHECK(write_faults(base + G3 * ps), "guard page 3 writable");
	CHECK(read_faults(base + G4 * ps), "guard page 4 readable");
	CHECK(read_faults(base + G5 * ps + ps + 5), "guard page 5 readable");
	if (e_readable == read_faults(base + E * ps))
		cr_fail("exec-only area E readability changed (was %s)", e_readable ? "readable" : "faulting");
	if (c_readable == read_faults(base + C * ps))
		cr_fail("write-only area C readability changed (was %s)", c_readable ? "readable" : "faulting");

	uint32_t (*fd)(void) = (uint32_t(*)(void))(base + D * ps);
	uint32_t (*fe)(void) = (uint32_t(*)(void))(base + E * ps);
	CHECK_EQ(fd(), 0x1234abcd, "code in r-x area D");
	CHECK_EQ(fe(), 0x600dc0de, "code in --x area E");

	/* write-only area: write works, then make it readable to check content */
	CHECK(!write_faults(base + C * ps + ps), "write-only area C not writable");
	DIE_IF(mprotect(base + C * ps, NC * ps, PROT_READ | PROT_WRITE), "mprotect C rw");
	base[C * ps + ps] = cr_pat_byte(SEED_C, ps); /* undo the probe write */
	cr_expect_pattern("C content", base + C * ps, NC * ps, SEED_C, 0);
	DIE_IF(mprotect(base + E * ps, NE * ps, PROT_READ | PROT_EXEC), "mprotect E r-x");
	CHECK(!memcmp(base + E * ps, "\xb8\xde\xc0\x0d\x60\xc3\xcc\xcc", 8), "E code bytes changed");
	DIE_IF(mprotect(base + G1 * ps, ps, PROT_READ), "mprotect G1 r");
	/* content of a PROT_NONE page that had been written is preserved too */
	for (size_t i = 0; i < ps; i++)
		if (base[G1 * ps + i] != 0x77) {
			cr_fail("guard page 1 content lost at %zu: 0x%02x", i, base[G1 * ps + i]);
			break;
		}
	cr_finish();
}
