/*
 * Shared helpers for the lxc-cr integration test programs.
 *
 * Protocol (see tests/integration/conftest.py):
 *   - set up state, write "READY\n" to stdout,
 *   - wait for SIGUSR1 (the handler only sets cr_go),
 *   - verify everything from inside, print "PASS" and exit 0, or print
 *     "FAIL: <what>" lines and exit 1.  "SKIP: <why>" + exit 77 when the
 *     machine lacks a needed feature.
 * Every program must also pass when no checkpoint happens at all.
 *
 * All output goes through write(2) (never buffered stdio), so that forked
 * children never duplicate buffered text.  Only regular files, directories
 * and /dev/{null,zero,urandom} are used: no pipes, sockets or other special fds.
 */
#ifndef CR_COMMON_H
#define CR_COMMON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>

#define CR_EXIT_SKIP 77
/* How long a program waits for something that should happen at once (a
 * thread waking up, a child's store...) before reporting it as a failure.
 * Only a guard against hangs: nothing is asserted about durations. */
#define CR_PATIENCE_MS 5000
#define CR_PATIENCE_LOOPS(step_ms) (CR_PATIENCE_MS / (step_ms))

/* Set by the SIGUSR1 handler.  Not static: some programs test it from asm. */
__attribute__((visibility("hidden"))) volatile int cr_go;
static int cr_nfail;
static char cr_dir[PATH_MAX]; /* cwd at start: where sync files live */

static inline __attribute__((unused)) pid_t cr_gettid(void) { return (pid_t)syscall(SYS_gettid); }

/* ---------------------------------------------------------------- output */

static __attribute__((unused)) void cr_write_all(int fd, const char *buf, size_t n)
{
	while (n > 0) {
		ssize_t r = write(fd, buf, n);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		buf += r;
		n -= (size_t)r;
	}
}

static __attribute__((unused)) void cr_vprint(const char *prefix, const char *fmt, va_list ap)
{
	char buf[1024];
	int n = snprintf(buf, sizeof(buf), "%s", prefix);
	int m = vsnprintf(buf + n, sizeof(buf) - (size_t)n - 2, fmt, ap);
	if (m < 0)
		m = 0;
	n += m;
	if (n > (int)sizeof(buf) - 2)
		n = (int)sizeof(buf) - 2;
	buf[n++] = '\n';
	cr_write_all(1, buf, (size_t)n);
}

/* Informational line (never contains PASS/FAIL at the start). */
__attribute__((format(printf, 1, 2)))
static __attribute__((unused)) void cr_info(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	cr_vprint("# ", fmt, ap);
	va_end(ap);
}

__attribute__((format(printf, 1, 2)))
static __attribute__((unused)) void cr_fail(const char *fmt, ...)
{
	va_list ap;
	__atomic_fetch_add(&cr_nfail, 1, __ATOMIC_SEQ_CST);
	va_start(ap, fmt);
	cr_vprint("FAIL: ", fmt, ap);
	va_end(ap);
}

/* Setup failure: the scenario could not even be built. */
__attribute__((format(printf, 1, 2), noreturn))
static __attribute__((unused)) void cr_die(const char *fmt, ...)
{
	va_list ap;
	char buf[700];
	int e = errno;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	cr_fail("setup: %s (errno %d: %s)", buf, e, strerror(e));
	_exit(1);
}

__attribute__((format(printf, 1, 2), noreturn))
static __attribute__((unused)) void cr_skip(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	cr_vprint("SKIP: ", fmt, ap);
	va_end(ap);
	_exit(CR_EXIT_SKIP);
}

#define CHECK(cond, ...) ((cond) ? 1 : (cr_fail(__VA_ARGS__), 0))
#define CHECK_EQ(a, b, what)                                                   \
	do {                                                                   \
		long long _a = (long long)(a), _b = (long long)(b);            \
		if (_a != _b)                                                  \
			cr_fail("%s: got %lld (0x%llx), expected %lld (0x%llx)", \
				(what), _a, (unsigned long long)_a, _b,        \
				(unsigned long long)_b);                       \
	} while (0)
#define DIE_IF(cond, ...)                                                      \
	do {                                                                   \
		if (cond)                                                      \
			cr_die(__VA_ARGS__);                                   \
	} while (0)

static __attribute__((unused)) int cr_failed(void) { return __atomic_load_n(&cr_nfail, __ATOMIC_SEQ_CST) != 0; }

/* Root process: print the verdict and exit. */
__attribute__((noreturn))
static __attribute__((unused)) void cr_finish(void)
{
	if (!cr_failed()) {
		cr_write_all(1, "PASS\n", 5);
		exit(0);
	}
	exit(1);
}

/* Forked child: report only through the exit status (and FAIL lines). */
__attribute__((noreturn))
static __attribute__((unused)) void cr_child_exit(void)
{
	_exit(cr_failed() ? 1 : 0);
}

/* ---------------------------------------------------------------- signal */

static __attribute__((unused)) void cr_usr1_handler(int sig)
{
	int e = errno;
	pid_t pid = getpid();
	(void)sig;
	cr_go = 1;
	/* A thread other than the main one took it: make sure main wakes up. */
	if (cr_gettid() != pid)
		syscall(SYS_tgkill, pid, pid, SIGUSR1);
	errno = e;
}

static __attribute__((unused)) void cr_init(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = cr_usr1_handler;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0; /* no SA_RESTART: blocking calls return EINTR */
	if (sigaction(SIGUSR1, &sa, NULL))
		cr_die("sigaction(SIGUSR1)");
	if (!getcwd(cr_dir, sizeof(cr_dir)))
		cr_die("getcwd");
}

static __attribute__((unused)) void cr_ready(void) { cr_write_all(1, "READY\n", 6); }

static __attribute__((unused)) void cr_sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	nanosleep(&ts, NULL); /* EINTR is fine: callers loop */
}

/* Plain wait loop: a bounded sleep, so a signal racing the check is harmless. */
static __attribute__((unused)) void cr_wait(void)
{
	while (!cr_go)
		cr_sleep_ms(100);
}

static __attribute__((unused)) uint64_t cr_now_ns(clockid_t clk)
{
	struct timespec ts;
	clock_gettime(clk, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---------------------------------------------------------------- patterns */

static inline __attribute__((unused)) uint64_t cr_mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static inline __attribute__((unused)) uint64_t cr_pat_word(uint64_t seed, uint64_t w)
{
	return cr_mix64(seed ^ (w * 0xd6e8feb86659fd93ull));
}

/* Byte number `off` of the infinite pattern `seed`. */
static inline __attribute__((unused)) uint8_t cr_pat_byte(uint64_t seed, uint64_t off)
{
	return (uint8_t)(cr_pat_word(seed, off >> 3) >> ((off & 7) * 8));
}

/* Fill p[0..n) with pattern bytes off..off+n. */
static __attribute__((unused)) void cr_fill_off(void *p, size_t n, uint64_t seed, uint64_t off)
{
	uint8_t *b = p;
	size_t i = 0;
	while (i < n && (((uintptr_t)(b + i) & 7) || ((off + i) & 7))) {
		b[i] = cr_pat_byte(seed, off + i);
		i++;
	}
	if (((off + i) & 7) == 0)
		for (; i + 8 <= n; i += 8)
			*(uint64_t *)(b + i) = cr_pat_word(seed, (off + i) >> 3);
	for (; i < n; i++)
		b[i] = cr_pat_byte(seed, off + i);
}

static __attribute__((unused)) void cr_fill(void *p, size_t n, uint64_t seed) { cr_fill_off(p, n, seed, 0); }

/* -1 if p[0..n) holds pattern bytes off..off+n, else first bad index. */
static __attribute__((unused)) ssize_t cr_check_off(const void *p, size_t n, uint64_t seed, uint64_t off)
{
	const volatile uint8_t *b = p;
	size_t i = 0;
	while (i < n && (((uintptr_t)(b + i) & 7) || ((off + i) & 7))) {
		if (b[i] != cr_pat_byte(seed, off + i))
			return (ssize_t)i;
		i++;
	}
	if (((off + i) & 7) == 0)
		for (; i + 8 <= n; i += 8)
			if (*(const volatile uint64_t *)(b + i) != cr_pat_word(seed, (off + i) >> 3))
				break;
	for (; i < n; i++)
		if (b[i] != cr_pat_byte(seed, off + i))
			return (ssize_t)i;
	return -1;
}

static __attribute__((unused)) ssize_t cr_check(const void *p, size_t n, uint64_t seed) { return cr_check_off(p, n, seed, 0); }

/* Report-style check: prints a FAIL line naming the first bad byte. */
static __attribute__((unused)) int cr_expect_pattern(const char *what, const void *p, size_t n, uint64_t seed, uint64_t off)
{
	ssize_t bad = cr_check_off(p, n, seed, off);
	if (bad < 0)
		return 1;
	cr_fail("%s: byte %zd (addr %p) is 0x%02x, expected 0x%02x", what, bad,
		(const void *)((const uint8_t *)p + bad), ((const volatile uint8_t *)p)[bad],
		cr_pat_byte(seed, off + (uint64_t)bad));
	return 0;
}

static __attribute__((unused)) ssize_t cr_nonzero_at(const void *p, size_t n)
{
	const volatile uint8_t *b = p;
	for (size_t i = 0; i < n; i++)
		if (b[i])
			return (ssize_t)i;
	return -1;
}

static __attribute__((unused)) int cr_expect_zero(const char *what, const void *p, size_t n)
{
	ssize_t bad = cr_nonzero_at(p, n);
	if (bad < 0)
		return 1;
	cr_fail("%s: byte %zd (addr %p) is 0x%02x, expected 0", what, bad,
		(const void *)((const uint8_t *)p + bad), ((const volatile uint8_t *)p)[bad]);
	return 0;
}

/* ---------------------------------------------------------------- files */

/* Read a whole (small, /proc) file; NUL terminated; returns length or -1. */
static __attribute__((unused)) ssize_t cr_read_file(const char *path, char *buf, size_t cap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t len = 0;
	if (fd < 0)
		return -1;
	while (len + 1 < cap) {
		ssize_t r = read(fd, buf + len, cap - 1 - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		len += (size_t)r;
	}
	close(fd);
	buf[len] = 0;
	return (ssize_t)len;
}

/* Write a whole buffer into a new file (created 0644, truncated). */
static __attribute__((unused)) void cr_write_file(const char *path, const void *data, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	DIE_IF(fd < 0, "create %s", path);
	const char *p = data;
	while (n) {
		ssize_t r = write(fd, p, n);
		DIE_IF(r <= 0, "write %s", path);
		p += r;
		n -= (size_t)r;
	}
	close(fd);
}

/* Value of "Key:" in a /proc status-like file, whitespace trimmed. */
static __attribute__((unused)) int cr_status_field(const char *path, const char *key, char *out, size_t cap)
{
	char buf[16384];
	size_t kl = strlen(key);
	if (cr_read_file(path, buf, sizeof(buf)) < 0)
		return -1;
	for (char *line = buf; line && *line;) {
		char *nl = strchr(line, '\n');
		if (nl)
			*nl = 0;
		if (!strncmp(line, key, kl) && line[kl] == ':') {
			char *v = line + kl + 1;
			while (*v == ' ' || *v == '\t')
				v++;
			snprintf(out, cap, "%s", v);
			size_t l = strlen(out);
			while (l && (out[l - 1] == ' ' || out[l - 1] == '\t'))
				out[--l] = 0;
			return 0;
		}
		line = nl ? nl + 1 : NULL;
	}
	return -1;
}

/* Process state letter from /proc/PID/stat (or /proc/PID/task/TID/stat). */
static __attribute__((unused)) char cr_proc_state(const char *statpath)
{
	char buf[4096];
	if (cr_read_file(statpath, buf, sizeof(buf)) <= 0)
		return '?';
	char *p = strrchr(buf, ')');
	if (!p || !p[1] || !p[2])
		return '?';
	return p[2];
}

static __attribute__((unused)) char cr_pid_state(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	return cr_proc_state(path);
}

/* Best effort: wait until task `tid` of process `pid` sits in syscall `nr`
 * (so that the dump catches it there).  Never fails the test. */
static __attribute__((unused)) int cr_wait_in_syscall(pid_t pid, pid_t tid, long nr, int timeout_ms)
{
	char path[96], buf[256];
	snprintf(path, sizeof(path), "/proc/%d/task/%d/syscall", (int)pid, (int)tid);
	for (int t = 0; t <= timeout_ms; t += 5) {
		if (cr_read_file(path, buf, sizeof(buf)) > 0 && strtol(buf, NULL, 10) == nr &&
		    buf[0] != 'r')
			return 1;
		cr_sleep_ms(5);
	}
	cr_info("task %d did not reach syscall %ld (continuing)", (int)tid, nr);
	return 0;
}

/* ------------------------------------------------ sync between processes */

/* Children announce readiness by creating an empty file in the start dir. */
static __attribute__((unused)) void cr_sync_post(const char *name)
{
	char path[PATH_MAX + 64];
	snprintf(path, sizeof(path), "%s/sync.%s", cr_dir, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	DIE_IF(fd < 0, "create %s", path);
	close(fd);
}

static __attribute__((unused)) void cr_sync_wait(const char *name)
{
	char path[PATH_MAX + 64];
	snprintf(path, sizeof(path), "%s/sync.%s", cr_dir, name);
	for (int i = 0; i < 20 * 200; i++) { /* 20 s, before READY */
		if (access(path, F_OK) == 0) {
			unlink(path);
			return;
		}
		cr_sleep_ms(5);
	}
	errno = ETIMEDOUT;
	cr_die("sync file %s never appeared", path);
}

/* ---------------------------------------------------------------- children */

static __attribute__((unused)) pid_t cr_fork(void)
{
	pid_t p = fork();
	DIE_IF(p < 0, "fork");
	return p;
}

static __attribute__((unused)) pid_t cr_waitpid(pid_t pid, int *status, int flags)
{
	pid_t r;
	do
		r = waitpid(pid, status, flags);
	while (r < 0 && errno == EINTR);
	return r;
}

/* Wait for a child and check it exited with `code`. */
static __attribute__((unused)) void cr_expect_exit(pid_t pid, int code, const char *name)
{
	int st = 0;
	pid_t r = cr_waitpid(pid, &st, 0);
	if (r != pid) {
		cr_fail("%s (pid %d): waitpid returned %d errno %d", name, (int)pid, (int)r, errno);
		return;
	}
	if (WIFEXITED(st)) {
		if (WEXITSTATUS(st) != code)
			cr_fail("%s (pid %d): exit code %d, expected %d", name, (int)pid,
				WEXITSTATUS(st), code);
	} else if (WIFSIGNALED(st)) {
		cr_fail("%s (pid %d): killed by signal %d, expected exit %d", name, (int)pid,
			WTERMSIG(st), code);
	} else {
		cr_fail("%s (pid %d): odd wait status 0x%x", name, (int)pid, st);
	}
}

/* ---------------------------------------------------------------- maps */

struct cr_map {
	unsigned long start, end, off;
	char perms[5];
	char path[256];
};

static __attribute__((unused)) char *cr_maps_text(void)
{
	size_t cap = 1 << 16, len = 0;
	char *buf = malloc(cap);
	int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
	DIE_IF(!buf || fd < 0, "open /proc/self/maps");
	for (;;) {
		if (len + 4096 > cap) {
			cap *= 2;
			buf = realloc(buf, cap);
			DIE_IF(!buf, "realloc");
		}
		ssize_t r = read(fd, buf + len, cap - len - 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		len += (size_t)r;
	}
	close(fd);
	buf[len] = 0;
	return buf;
}

static __attribute__((unused)) int cr_parse_map_line(const char *line, struct cr_map *m)
{
	int n = 0;
	memset(m, 0, sizeof(*m));
	if (sscanf(line, "%lx-%lx %4s %lx %*s %*s %n", &m->start, &m->end, m->perms, &m->off, &n) < 4)
		return -1;
	if (n > 0) {
		const char *p = line + n;
		size_t l = strcspn(p, "\n");
		if (l >= sizeof(m->path))
			l = sizeof(m->path) - 1;
		memcpy(m->path, p, l);
		m->path[l] = 0;
	}
	return 0;
}

/* Calls fn for every line of /proc/self/maps; returns the number of lines. */
static __attribute__((unused)) int cr_maps_foreach(void (*fn)(const struct cr_map *, void *), void *arg)
{
	char *text = cr_maps_text();
	int count = 0;
	for (char *line = text; *line;) {
		struct cr_map m;
		char *nl = strchr(line, '\n');
		if (cr_parse_map_line(line, &m) == 0) {
			count++;
			if (fn)
				fn(&m, arg);
		}
		if (!nl)
			break;
		line = nl + 1;
	}
	free(text);
	return count;
}

struct cr_find_arg {
	unsigned long addr;
	const char *name;
	struct cr_map *out;
	int found;
};

static __attribute__((unused)) void cr_find_cb(const struct cr_map *m, void *a)
{
	struct cr_find_arg *f = a;
	if (f->found)
		return;
	if ((f->name && !strcmp(m->path, f->name)) ||
	    (!f->name && f->addr >= m->start && f->addr < m->end)) {
		*f->out = *m;
		f->found = 1;
	}
}

/* The VMA containing addr (0 if found). */
static __attribute__((unused)) int cr_map_at(const void *addr, struct cr_map *out)
{
	struct cr_find_arg f = { (unsigned long)addr, NULL, out, 0 };
	cr_maps_foreach(cr_find_cb, &f);
	return f.found ? 0 : -1;
}

/* The first VMA with that name, e.g. "[vdso]" (0 if found). */
static __attribute__((unused)) int cr_map_named(const char *name, struct cr_map *out)
{
	struct cr_find_arg f = { 0, name, out, 0 };
	cr_maps_foreach(cr_find_cb, &f);
	return f.found ? 0 : -1;
}

/* Check the perms string of the VMA holding addr, e.g. "r--p". */
static __attribute__((unused)) int cr_expect_perms(const char *what, const void *addr, const char *perms)
{
	struct cr_map m;
	if (cr_map_at(addr, &m)) {
		cr_fail("%s: no mapping at %p in /proc/self/maps", what, addr);
		return 0;
	}
	if (strcmp(m.perms, perms)) {
		cr_fail("%s: %lx-%lx has perms %s, expected %s", what, m.start, m.end, m.perms, perms);
		return 0;
	}
	return 1;
}

static __attribute__((unused)) size_t cr_page_size(void) { return (size_t)sysconf(_SC_PAGESIZE); }

#endif /* CR_COMMON_H */
