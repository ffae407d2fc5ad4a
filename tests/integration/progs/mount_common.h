/* Helpers for the mount scenarios (100-119): mountinfo lines as the program sees them. */
#ifndef CR_MOUNT_COMMON_H
#define CR_MOUNT_COMMON_H
#include "common.h"
#include <sys/mount.h>

struct mnt_line {
	int id, parent;
	char root[PATH_MAX], point[PATH_MAX], opts[256], tags[256], fstype[64], source[256], super[512];
};

/* The topmost mount at `point` (the last mountinfo line for it); 0 if there is none. */
static __attribute__((unused)) int mnt_find(const char *point, struct mnt_line *out)
{
	FILE *f = fopen("/proc/self/mountinfo", "r");
	char line[4096];
	int found = 0;
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		struct mnt_line m = {0};
		char *sep = strstr(line, " - ");
		if (!sep)
			continue;
		*sep = 0;
		int n = 0;
		if (sscanf(line, "%d %d %*s %4095s %4095s %255s %n", &m.id, &m.parent, m.root, m.point, m.opts, &n) < 5)
			continue;
		snprintf(m.tags, sizeof(m.tags), "%s", line + n);
		if (sscanf(sep + 3, "%63s %255s %511s", m.fstype, m.source, m.super) < 2)
			continue;
		if (strcmp(m.point, point) == 0) {
			*out = m;
			found = 1;
		}
	}
	fclose(f);
	return found;
}

/* Is `word` one of the comma- or space-separated items of `list`? */
static __attribute__((unused)) int mnt_has(const char *list, const char *word)
{
	size_t n = strlen(word);
	for (const char *p = list; (p = strstr(p, word)); p += n)
		if ((p == list || p[-1] == ',' || p[-1] == ' ') && (p[n] == 0 || p[n] == ',' || p[n] == ' '))
			return 1;
	return 0;
}

/* N of a "shared:N" / "master:N" tag, 0 if absent. */
static __attribute__((unused)) int mnt_tag(const char *tags, const char *name)
{
	const char *p = strstr(tags, name);
	return p ? atoi(p + strlen(name) + 1) : 0;
}

/* The file at path holds exactly want. */
static __attribute__((unused)) void check_content(const char *path, const char *want)
{
	char buf[256];
	ssize_t n = cr_read_file(path, buf, sizeof(buf) - 1);
	buf[n > 0 ? n : 0] = 0;
	CHECK(n == (ssize_t)strlen(want) && strcmp(buf, want) == 0, "%s holds '%s', expected '%s'", path, buf, want);
}

/* The topmost mount at point has that type, every per-mount option of opts and every
 * superblock option of super (comma-separated); its line goes to out when given. */
static __attribute__((unused)) void check_mount(const char *point, const char *fstype, const char *opts,
						 const char *super, struct mnt_line *out)
{
	struct mnt_line m;
	if (!CHECK(mnt_find(point, &m), "no mount at %s", point))
		return;
	CHECK(strcmp(m.fstype, fstype) == 0, "%s: type %s, expected %s", point, m.fstype, fstype);
	char want[256];
	snprintf(want, sizeof(want), "%s", opts);
	for (char *w = strtok(want, ","); w; w = strtok(NULL, ","))
		CHECK(mnt_has(m.opts, w), "%s: options %s lack %s", point, m.opts, w);
	snprintf(want, sizeof(want), "%s", super);
	for (char *w = strtok(want, ","); w; w = strtok(NULL, ","))
		CHECK(mnt_has(m.super, w), "%s: superblock options %s lack %s", point, m.super, w);
	if (out)
		*out = m;
}

#endif
