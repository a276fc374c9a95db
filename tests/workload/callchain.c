/*
 * callchain: a CPU-bound workload with known call chains, for stack-profile tests.
 *
 *   main -> a -> b -> c      c spins ABC units per round
 *   main -> x -> y           y spins XY units per round
 *   main -> s                s reads /dev/zero (kernel time) SYS units per round
 *                            (on x86-64 with an inline syscall, so s is the user leaf)
 *
 * Usage: callchain SECONDS [ABC [XY [SYS [addrs]]]]   (defaults: 3 1 0)
 * The CPU split between c and y follows ABC:XY. The program exits by itself after
 * SECONDS. With "addrs" as fifth argument it first prints the run-time addresses of
 * c, y, main and getpid (one "name=0x..." per line) and then "ready".
 *
 * Build: cc -O0 -g -fno-omit-frame-pointer -o callchain callchain.c
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* One unit of work is `unit_ns` of spinning, timed so CPU shares are exact. It changes every
 * round (10-19 ms) so the rounds never lock in phase with a sampling timer. */
static long unit_ns = 10000000L;

static volatile unsigned long sink;
static int zero_fd = -1;

static long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

__attribute__((noinline)) void c(long units) {
    long end = now_ns() + units * unit_ns;
    while (now_ns() < end)
        for (int i = 0; i < 1000; i++)
            sink += i;
}

__attribute__((noinline)) void b(long units) { c(units); }

__attribute__((noinline)) void a(long units) { b(units); }

__attribute__((noinline)) void y(long units) {
    long end = now_ns() + units * unit_ns;
    while (now_ns() < end)
        for (int i = 0; i < 1000; i++)
            sink += i;
}

__attribute__((noinline)) void x(long units) { y(units); }

/* read(2) of /dev/zero, made from s itself so that s is the user leaf frame */
static inline __attribute__((always_inline)) long read_here(int fd, void *buf,
                                                           unsigned long n) {
#if defined(__x86_64__)
    long ret;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "0"(0L /* SYS_read */), "D"((long)fd), "S"(buf), "d"(n)
                     : "rcx", "r11", "memory");
    return ret;
#else
    return read(fd, buf, n);
#endif
}

__attribute__((noinline)) void s(long units) {
    static char buf[1 << 16];
    long end = now_ns() + units * unit_ns;
    while (now_ns() < end)
        if (read_here(zero_fd, buf, sizeof(buf)) < 0)
            exit(3);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static long arg(int argc, char **argv, int i, long fallback) {
    return argc > i ? strtol(argv[i], NULL, 10) : fallback;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s SECONDS [ABC [XY [SYS [addrs]]]]\n", argv[0]);
        return 2;
    }
    double seconds = strtod(argv[1], NULL);
    long abc = arg(argc, argv, 2, 3), xy = arg(argc, argv, 3, 1), sys = arg(argc, argv, 4, 0);
    if (argc > 5 && strcmp(argv[5], "addrs") == 0) {
        printf("c=%p\ny=%p\nmain=%p\ngetpid=%p\nready\n", (void *)c, (void *)y,
               (void *)main, (void *)getpid);
        fflush(stdout);
    }
    zero_fd = open("/dev/zero", O_RDONLY);
    if (zero_fd < 0)
        return 3;
    double end = now() + seconds;
    for (long round = 0; now() < end; round++) {
        unit_ns = 10000000L + (round * 7919 % 10) * 1000000L;
        a(abc);
        x(xy);
        s(sys);
    }
    return 0;
}
