/* Scenario 07: stack, arguments, environment, auxv and exe link.
 * The program waits 300 frames deep in a recursion whose frames hold
 * patterned locals.  Before the dump it records /proc/self/cmdline, environ,
 * auxv, the mm layout fields of /proc/self/stat, getauxval values and the 16
 * AT_RANDOM bytes, and readlink(/proc/self/exe).
 * After the signal: every frame checks its locals while unwinding, and all
 * the recorded items compare equal. */
#include "common.h"
#include <sys/auxv.h>

#define DEPTH 300
#define SEED 0x0700

extern char **environ;
static int g_argc;
static char **g_argv;

static char cmdline0[65536], environ0[262144], auxv0[4096], exe0[PATH_MAX];
static ssize_t cmdline0_len, environ0_len, auxv0_len;
static unsigned long stat0[64];
static unsigned long aux_keys[] = { AT_PAGESZ, AT_SYSINFO_EHDR, AT_RANDOM, AT_PHDR, AT_PHNUM,
				    AT_ENTRY, AT_BASE, AT_HWCAP, AT_HWCAP2, AT_CLKTCK,
				    AT_EXECFN, AT_UID, AT_EUID, AT_GID, AT_SECURE, AT_MINSIGSTKSZ };
#define NAUX (sizeof(aux_keys) / sizeof(aux_keys[0]))
static unsigned long aux0[NAUX];
static uint8_t random0[16];
static char execfn0[PATH_MAX];
static char *argv_copy[64];
static int nenv0;
static char **environ_ptr0;

/* fields 26..28 (code, stack) and 45..51 (data, brk, args, env) of stat */
static int read_stat_fields(unsigned long *out)
{
	char buf[4096];
	if (cr_read_file("/proc/self/stat", buf, sizeof(buf)) <= 0)
		return -1;
	char *p = strrchr(buf, ')');
	if (!p)
		return -1;
	p += 2; /* field 3 */
	int field = 3;
	memset(out, 0, 64 * sizeof(*out));
	while (*p && field < 64) {
		out[field] = strtoul(p, &p, 10);
		while (*p == ' ')
			p++;
		field++;
	}
	return field;
}

static const int stat_fields[] = { 26, 27, 28, 45, 46, 47, 48, 49, 50, 51 };

static void verify_process_state(void)
{
	char buf[sizeof(environ0)];
	ssize_t n = cr_read_file("/proc/self/cmdline", buf, sizeof(cmdline0));
	CHECK(n == cmdline0_len && !memcmp(buf, cmdline0, (size_t)n),
	      "/proc/self/cmdline changed (%zd bytes, was %zd)", n, cmdline0_len);
	n = cr_read_file("/proc/self/environ", buf, sizeof(environ0));
	CHECK(n == environ0_len && !memcmp(buf, environ0, (size_t)n),
	      "/proc/self/environ changed (%zd bytes, was %zd)", n, environ0_len);
	n = cr_read_file("/proc/self/auxv", buf, sizeof(auxv0));
	CHECK(n == auxv0_len && !memcmp(buf, auxv0, (size_t)n),
	      "/proc/self/auxv changed (%zd bytes, was %zd)", n, auxv0_len);

	for (size_t i = 0; i < NAUX; i++) {
		char what[64];
		snprintf(what, sizeof(what), "getauxval(%lu)", aux_keys[i]);
		CHECK_EQ(getauxval(aux_keys[i]), aux0[i], what);
	}
	CHECK_EQ(getauxval(AT_PAGESZ), cr_page_size(), "AT_PAGESZ vs sysconf");
	if (getauxval(AT_RANDOM))
		CHECK(!memcmp((void *)getauxval(AT_RANDOM), random0, 16), "AT_RANDOM bytes changed");
	if (getauxval(AT_EXECFN))
		CHECK(!strcmp((char *)getauxval(AT_EXECFN), execfn0), "AT_EXECFN string changed");

	unsigned long st[64];
	if (CHECK(read_stat_fields(st) > 51, "cannot parse /proc/self/stat")) {
		for (size_t i = 0; i < sizeof(stat_fields) / sizeof(stat_fields[0]); i++) {
			char what[64];
			snprintf(what, sizeof(what), "/proc/self/stat field %d", stat_fields[i]);
			CHECK_EQ(st[stat_fields[i]], stat0[stat_fields[i]], what);
		}
	}

	char exe[PATH_MAX];
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	exe[n > 0 ? n : 0] = 0;
	CHECK(!strcmp(exe, exe0), "/proc/self/exe is '%s', was '%s'", exe, exe0);

	/* argv and environ in memory */
	for (int i = 0; i < g_argc && i < 64; i++)
		CHECK(!strcmp(g_argv[i], argv_copy[i]), "argv[%d] is '%s', was '%s'", i, g_argv[i], argv_copy[i]);
	CHECK(g_argv[g_argc] == NULL, "argv not NULL terminated");
	CHECK(environ == environ_ptr0, "environ pointer changed");
	int nenv = 0;
	while (environ[nenv])
		nenv++;
	CHECK_EQ(nenv, nenv0, "number of environment strings");
	/* the environment strings in memory equal the recorded /proc copy */
	size_t pos = 0;
	for (int i = 0; i < nenv && pos < (size_t)environ0_len; i++) {
		if (strcmp(environ[i], environ0 + pos)) {
			cr_fail("environ[%d] in memory differs from the original", i);
			break;
		}
		pos += strlen(environ0 + pos) + 1;
	}
	if (nenv0 > 0) {
		char key[128];
		snprintf(key, sizeof(key), "%.*s", (int)strcspn(environ0, "="), environ0);
		const char *v = getenv(key);
		CHECK(v && !strcmp(v, environ0 + strlen(key) + 1), "getenv(%s) changed", key);
	}
}

static int recurse(int depth)
{
	volatile uint8_t local[256];
	volatile uint64_t marker = cr_mix64(depth + SEED);
	for (int i = 0; i < 256; i++)
		local[i] = cr_pat_byte(SEED + depth, i);
	if (depth == DEPTH) {
		cr_ready();
		cr_wait();
		verify_process_state();
	} else {
		recurse(depth + 1);
	}
	int ok = 1;
	for (int i = 0; i < 256; i++)
		if (local[i] != cr_pat_byte(SEED + depth, i))
			ok = 0;
	if (marker != cr_mix64(depth + SEED))
		ok = 0;
	if (!ok)
		cr_fail("stack frame at depth %d (%p) corrupted", depth, (void *)local);
	return ok;
}

int main(int argc, char **argv)
{
	cr_init();
	g_argc = argc;
	g_argv = argv;
	for (int i = 0; i < argc && i < 64; i++)
		argv_copy[i] = strdup(argv[i]);
	cmdline0_len = cr_read_file("/proc/self/cmdline", cmdline0, sizeof(cmdline0));
	environ0_len = cr_read_file("/proc/self/environ", environ0, sizeof(environ0));
	auxv0_len = cr_read_file("/proc/self/auxv", auxv0, sizeof(auxv0));
	DIE_IF(cmdline0_len <= 0 || environ0_len < 0 || auxv0_len <= 0, "read /proc/self files");
	environ_ptr0 = environ;
	while (environ[nenv0])
		nenv0++;
	for (size_t i = 0; i < NAUX; i++)
		aux0[i] = getauxval(aux_keys[i]);
	DIE_IF(aux0[0] == 0 || aux0[1] == 0 || aux0[2] == 0, "missing auxv entries");
	memcpy(random0, (void *)aux0[2], 16);
	if (getauxval(AT_EXECFN))
		snprintf(execfn0, sizeof(execfn0), "%s", (char *)getauxval(AT_EXECFN));
	DIE_IF(read_stat_fields(stat0) <= 51, "parse /proc/self/stat");
	ssize_t n = readlink("/proc/self/exe", exe0, sizeof(exe0) - 1);
	DIE_IF(n <= 0, "readlink /proc/self/exe");
	exe0[n] = 0;

	recurse(0);
	cr_finish();
}
