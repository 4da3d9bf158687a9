/* dsprobe.c - how long a dataserver takes from exec to serving a read.
 *
 *   dsprobe --addr HOST:PORT --name NAME --log FILE [--timeout-ms MS] -- CMD [ARGS...]
 *
 * Forks, execs CMD (its output appended to FILE) and, from the moment of the
 * exec, asks the server at --addr for file NAME every 2 ms through the client
 * library (imgstore_get_from: that server only, no nameserver involved)
 * until a read succeeds. Prints "pid=PID first_read_ms=MS" and exits 0,
 * leaving the server running for the caller to measure and stop. On timeout
 * it kills the server and exits 1. */
#include "client/imgstore.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define POLL_NS 2000000L
#define PROBE_IO_TIMEOUT_MS 2000

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int main(int argc, char **argv)
{
    const char *addr = NULL, *name = NULL, *log = "/dev/null";
    double timeout_ms = 60000;
    int i = 1;
    for (; i + 1 < argc && strcmp(argv[i], "--") != 0; i += 2) {
        if (strcmp(argv[i], "--addr") == 0)
            addr = argv[i + 1];
        else if (strcmp(argv[i], "--name") == 0)
            name = argv[i + 1];
        else if (strcmp(argv[i], "--log") == 0)
            log = argv[i + 1];
        else if (strcmp(argv[i], "--timeout-ms") == 0)
            timeout_ms = atof(argv[i + 1]);
        else
            break;
    }
    if (!addr || !name || i >= argc || strcmp(argv[i], "--") != 0 || i + 1 >= argc) {
        fprintf(stderr, "usage: dsprobe --addr HOST:PORT --name NAME --log FILE "
                        "[--timeout-ms MS] -- CMD [ARGS...]\n");
        return 2;
    }
    char **cmd = argv + i + 1;
    struct imgstore_opts opts = {.timeout_ms = PROBE_IO_TIMEOUT_MS,
                                 .io_timeout_ms = PROBE_IO_TIMEOUT_MS};
    imgstore_t *h = NULL;
    if (imgstore_open("127.0.0.1:1", &opts, &h) != 0)
        return 1;
    double t0 = now_ms();
    pid_t pid = fork();
    if (pid < 0) {
        perror("dsprobe: fork");
        return 1;
    }
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd >= 0) {
            dup2(fd, STDOUT_FILENO);
            dup2(fd, STDERR_FILENO);
        }
        setpgid(0, 0); /* a Ctrl-C of the suite is handled by its trap */
        execv(cmd[0], cmd);
        _exit(127);
    }
    int last = 0;
    for (;;) {
        void *data = NULL;
        size_t len = 0;
        last = imgstore_get_from(h, name, addr, &data, &len);
        if (last == 0) {
            imgstore_free(data);
            break;
        }
        if (now_ms() - t0 > timeout_ms) {
            fprintf(stderr, "dsprobe: no read from %s after %.0f ms: %s\n", addr, timeout_ms,
                    imgstore_strerror(last));
            kill(pid, SIGKILL);
            imgstore_close(h);
            return 1;
        }
        struct timespec ts = {0, POLL_NS};
        nanosleep(&ts, NULL);
    }
    printf("pid=%d first_read_ms=%.0f\n", (int)pid, now_ms() - t0);
    imgstore_close(h);
    return 0;
}
