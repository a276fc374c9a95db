/* A workload with known answers for bpfnb's tests.
 *   workload getpid N          call syscall(SYS_getpid) exactly N times
 *   workload record V1 V2 ...  call record(V) once per value (a uprobe target)
 * The process names itself "bpfnb-wl" so tests can match its comm. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

volatile unsigned long sink;

__attribute__((noinline)) void record(unsigned long value) { sink += value; }

int main(int argc, char **argv) {
    prctl(PR_SET_NAME, "bpfnb-wl", 0, 0, 0);
    if (argc >= 3 && strcmp(argv[1], "getpid") == 0) {
        long n = atol(argv[2]);
        for (long i = 0; i < n; i++) syscall(SYS_getpid);
        return 0;
    }
    if (argc >= 2 && strcmp(argv[1], "record") == 0) {
        for (int i = 2; i < argc; i++) record(strtoul(argv[i], NULL, 10));
        return 0;
    }
    fprintf(stderr, "usage: %s getpid N | record V...\n", argv[0]);
    return 2;
}
