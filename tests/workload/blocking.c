/*
 * blocking: off-CPU time with known durations, for off-CPU profile tests.
 *
 *   main -> sleeper   nanosleep for SLEEP_MS
 *   main -> reader    read(2) from a pipe whose writer (a forked child) writes after
 *                     SLEEP_MS + PIPE_MS, so the read blocks for about PIPE_MS
 *
 * Usage: blocking SLEEP_MS PIPE_MS
 * Build: cc -O1 -g -fno-omit-frame-pointer -o blocking blocking.c
 */
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

__attribute__((noinline)) void sleeper(long ms) { sleep_ms(ms); }

static volatile char sink;

__attribute__((noinline)) void reader(int fd) {
    char c;
    if (read(fd, &c, 1) != 1)
        exit(2);
    sink = c;  /* not a tail call: reader stays on the stack */
}

int main(int argc, char **argv) {
    if (argc < 3)
        return 1;
    long sleep = strtol(argv[1], NULL, 10), pipe_ms = strtol(argv[2], NULL, 10);
    int fds[2];
    if (pipe(fds) != 0)
        return 1;
    pid_t child = fork();
    if (child == 0) {
        sleep_ms(sleep + pipe_ms);
        return write(fds[1], "x", 1) == 1 ? 0 : 1;
    }
    sleeper(sleep);
    reader(fds[0]);
    waitpid(child, NULL, 0);
    return 0;
}
