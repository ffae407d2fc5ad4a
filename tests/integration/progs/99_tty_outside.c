/* Scenario 99: a tree holding a terminal whose pty master is outside the tree.
 * Started with stdin on a pty slave whose master the harness keeps.  With
 * argument "ctty" it makes that terminal its controlling terminal and then
 * closes it (stdin becomes /dev/null): only the controlling terminal is left.
 * A dump without --shell-job must be refused; the tree runs on and passes
 * (stdin is still a terminal, or its controlling terminal is still there). */
#include "common.h"
#include <sys/ioctl.h>

int main(int argc, char **argv)
{
	cr_init();
	int ctty = argc > 1 && !strcmp(argv[1], "ctty");
	DIE_IF(!isatty(0), "stdin is not a terminal");
	if (ctty) {
		DIE_IF(ioctl(0, TIOCSCTTY, 0), "TIOCSCTTY");
		int null = open("/dev/null", O_RDONLY);
		DIE_IF(null < 0 || dup2(null, 0) != 0, "stdin to /dev/null");
		close(null);
	}
	cr_ready();
	cr_wait();
	if (ctty) {
		int fd = open("/dev/tty", O_RDWR);
		CHECK(fd >= 0, "the controlling terminal is gone: %s", strerror(errno));
	} else {
		CHECK(isatty(0), "stdin is no longer a terminal");
	}
	cr_finish();
}
