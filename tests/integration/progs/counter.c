/* The demo and benchmark program: counts on stdout and holds MEM_MB MiB of
 * distinct data.  On SIGUSR1 it checks every word of that memory and prints
 * PASS or FAIL; on SIGTERM it exits.  Usage: counter [MEM_MB] [PERIOD_MS] */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t check_now, stop_now;

static void on_usr1(int sig) { (void)sig; check_now = 1; }
static void on_term(int sig) { (void)sig; stop_now = 1; }

static uint64_t word(uint64_t i) { return i * 0x9E3779B97F4A7C15ull ^ 0x5DEECE66Dull; }

int main(int argc, char **argv)
{
    size_t mb = argc > 1 ? strtoul(argv[1], NULL, 0) : 16;
    long period = argc > 2 ? strtol(argv[2], NULL, 0) : 500;
    size_t n = mb << 17;                       /* 8-byte words */
    uint64_t *mem = mmap(NULL, n ? n * 8 : 8, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) { perror("mmap"); return 1; }
    for (size_t i = 0; i < n; i++)
        mem[i] = word(i);
    signal(SIGUSR1, on_usr1);
    signal(SIGTERM, on_term);
    printf("READY pid %d holding %zu MiB\n", getpid(), mb);
    fflush(stdout);
    struct timespec ts = { period / 1000, (period % 1000) * 1000000 };
    for (unsigned long count = 0; !stop_now; count++) {
        if (check_now) {
            check_now = 0;
            size_t bad = 0;
            for (size_t i = 0; i < n; i++)
                bad += mem[i] != word(i);
            printf(bad ? "FAIL: %zu words differ\n" : "PASS: %zu MiB intact\n", bad ? bad : mb);
            fflush(stdout);
            if (bad) return 1;
        }
        if (period > 0) {
            printf("count %lu\n", count);
            fflush(stdout);
            nanosleep(&ts, NULL);
        } else {
            pause();
        }
    }
    return 0;
}
