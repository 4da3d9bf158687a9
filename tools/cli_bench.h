/* cli_bench.h - the load generator behind `imgstore bench` (docs/performance.md).
 *
 * The engine uploads files from several threads, then reads them back at
 * random (and optionally deletes some), and reports per phase: operations/s,
 * MB/s, latency percentiles and errors. What it talks to is a backend: the
 * imgstore client library for `imgstore bench`, or one file per image in a
 * folder tree for the baseline of `make bench` (bench/baseline_files.c), so
 * both are measured by exactly the same code. Not part of the library. */
#ifndef IMGSTORE_CLI_BENCH_H
#define IMGSTORE_CLI_BENCH_H

#include "client/imgstore.h"

#include <stddef.h>
#include <stdio.h>

#define BENCH_KEY_MAX 64 /* a backend's key (name or path) with its NUL */

/* A storage backend. Every function is called from many threads at once and
 * returns 0 or a negative error code that strerror describes. */
struct bench_backend {
    const char *name; /* "imgstore", "files" */
    void *ctx;
    /* Stores len bytes durably; writes the key that reads it back. */
    int (*put)(void *ctx, const void *data, size_t len, char key[BENCH_KEY_MAX]);
    /* Reads a file whole. *data is released with release(). */
    int (*get)(void *ctx, const char *key, void **data, size_t *len);
    void (*release)(void *ctx, void *data);
    /* Deletes a file. */
    int (*del)(void *ctx, const char *key);
    const char *(*strerror)(int err);
};

/* Parses the bench options (argv[0] is the command name), runs the benchmark
 * against `be` and prints the report on stdout. `prog` prefixes messages.
 * Returns the exit status: 0 when every operation succeeded, 1 when any
 * failed (the report is still printed), 2 for a usage error. */
int bench_main(const char *prog, const struct bench_backend *be, int argc, char **argv);

/* `imgstore bench`: bench_main with the client library as the backend. When
 * the options carry --ns, a handle on that nameserver replaces h. */
int cli_bench(imgstore_t *h, int argc, char **argv);

/* Prints the bench options (for the usage texts). */
void bench_usage(FILE *fp);

#endif
