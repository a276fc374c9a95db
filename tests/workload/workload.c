/* A workload with known answers for bpfnb's tests.
 *   workload getpid N          call syscall(SYS_getpid) exactly N times
 *   workload record V1 V2 ...  call record(V) once per value (a uprobe target; it also
 *                              fires the USDT probe bpfnb:recorded and calls doubled(V))
 *   workload spin SECONDS      burn CPU (a perf-event sampling target)
 * The process names itself "bpfnb-wl" so tests can match its comm. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <sys/sdt.h>

volatile unsigned long sink;

__attribute__((noinline)) void record(unsigned long value) {
    DTRACE_PROBE1(bpfnb, recorded, value);
    sink += value;
}

__attribute__((noinline)) unsigned long doubled(unsigned long value) { return 2 * value; }

int main(int argc, char **argv) {
    prctl(PR_SET_NAME, "bpfnb-wl", 0, 0, 0);
    if (argc >= 3 && strcmp(argv[1], "getpid") == 0) {
        long n = atol(argv[2]);
        for (long i = 0; i < n; i++) syscall(SYS_getpid);
        return 0;
    }
    if (argc >= 2 && strcmp(argv[1], "record") == 0) {
        for (int i = 2; i < argc; i++) record(doubled(strtoul(argv[i], NULL, 10)) / 2);
        return 0;
    }
    if (argc >= 3 && strcmp(argv[1], "spin") == 0) {
        struct timespec now, end;
        clock_gettime(CLOCK_MONOTONIC, &end);
        end.tv_sec += atol(argv[2]);
        do {
            for (int i = 0; i < 100000; i++) sink++;
            clock_gettime(CLOCK_MONOTONIC, &now);
        } while (now.tv_sec < end.tv_sec ||
                 (now.tv_sec == end.tv_sec && now.tv_nsec < end.tv_nsec));
        return 0;
    }
    fprintf(stderr, "usage: %s getpid N | record V...\n", argv[0]);
    return 2;
}
