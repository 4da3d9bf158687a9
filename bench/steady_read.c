/* steady_read.c - a steady (open-loop) read load for bench/rebalance.sh.
 *
 *   steady_read --ns HOST:PORT --names FILE --rate OPS_PER_S --duration SECONDS
 *               [-c THREADS] [--samples FILE]
 *
 * Reads random files of a `imgstore bench --save-names` list ("KEY SIZE
 * INDEX" lines) through one library handle at a fixed total rate: each of
 * THREADS threads has its own schedule (rate / THREADS per second), and a
 * read's latency counts from its scheduled start, so a stall shows in the
 * percentiles even when it delays later reads (no coordinated omission).
 * A read fails when it errors or returns a length other than SIZE. Prints
 * one JSON line (written with jansson): ops, errors, achieved rate and
 * latency percentiles in ms.
 * --samples appends every read's latency in ms to FILE, one per line, so
 * percentiles can be taken over several windows pooled. --trace appends one
 * line per read, "UNIX_MS LATENCY_MS KEY" (UNIX_MS: its scheduled start),
 * to line slow reads up with the servers' logs. */
#include "client/imgstore.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_THREADS 64
#define NS_PER_S 1000000000LL
#define NS_PER_MS 1e6

struct file {
    char key[IMGSTORE_NAME_MAX];
    size_t size;
};

static struct file *files;
static size_t nfiles;
static imgstore_t *handle;
static double rate_per_thread;
static int64_t t_start, t_end;
static atomic_long errors;

struct worker {
    pthread_t tid;
    uint64_t rng;
    int64_t *lat; /* ns, one per read */
    int64_t *due; /* its scheduled start (monotonic ns) */
    uint32_t *file; /* index in files[] */
    size_t n, cap;
};

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

static void sleep_until(int64_t t)
{
    struct timespec ts = {.tv_sec = t / NS_PER_S, .tv_nsec = t % NS_PER_S};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

static uint64_t next_rand(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    int64_t step = (int64_t)((double)NS_PER_S / rate_per_thread);
    for (int64_t due = t_start + (int64_t)(next_rand(&w->rng) % (uint64_t)step); due < t_end;
         due += step) {
        sleep_until(due);
        const struct file *f = &files[next_rand(&w->rng) % nfiles];
        void *data = NULL;
        size_t len = 0;
        int rc = imgstore_get(handle, f->key, &data, &len);
        int64_t done = now_ns();
        if (rc != 0 || len != f->size)
            atomic_fetch_add(&errors, 1);
        imgstore_free(data);
        if (w->n == w->cap) {
            size_t ncap = w->cap ? w->cap * 2 : 4096;
            int64_t *n = realloc(w->lat, ncap * sizeof(*n));
            if (n)
                w->lat = n;
            int64_t *d = n ? realloc(w->due, ncap * sizeof(*d)) : NULL;
            if (d)
                w->due = d;
            uint32_t *fi = d ? realloc(w->file, ncap * sizeof(*fi)) : NULL;
            if (!fi)
                continue;
            w->file = fi;
            w->cap = ncap;
        }
        w->due[w->n] = due;
        w->file[w->n] = (uint32_t)(f - files);
        w->lat[w->n++] = done - due;
    }
    return NULL;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static int load_names(const char *path)
{
    FILE *fp = fopen(path, "r");
    if (!fp) {
        fprintf(stderr, "steady_read: %s: %s\n", path, strerror(errno));
        return -1;
    }
    size_t cap = 0;
    char key[IMGSTORE_NAME_MAX];
    unsigned long size, idx;
    while (fscanf(fp, "%31s %lu %lu", key, &size, &idx) == 3) {
        if (nfiles == cap) {
            cap = cap ? cap * 2 : 1024;
            struct file *n = realloc(files, cap * sizeof(*n));
            if (!n) {
                fclose(fp);
                return -1;
            }
            files = n;
        }
        snprintf(files[nfiles].key, sizeof(files[nfiles].key), "%s", key);
        files[nfiles++].size = size;
    }
    fclose(fp);
    if (nfiles == 0) {
        fprintf(stderr, "steady_read: no \"KEY SIZE INDEX\" lines in %s\n", path);
        return -1;
    }
    return 0;
}

/* Appends "UNIX_MS LATENCY_MS KEY" per read of every worker to path. */
static int write_trace(const char *path, const struct worker *w, int threads)
{
    struct timespec rt;
    clock_gettime(CLOCK_REALTIME, &rt);
    int64_t mono = now_ns(), real = (int64_t)rt.tv_sec * NS_PER_S + rt.tv_nsec;
    FILE *fp = fopen(path, "a");
    for (int i = 0; fp && i < threads; i++)
        for (size_t k = 0; k < w[i].n; k++)
            fprintf(fp, "%.3f %.4f %s\n", (double)(w[i].due[k] - mono + real) / NS_PER_MS,
                    (double)w[i].lat[k] / NS_PER_MS, files[w[i].file[k]].key);
    if (!fp || fclose(fp) != 0) {
        fprintf(stderr, "steady_read: cannot write %s: %s\n", path, strerror(errno));
        return 1;
    }
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: steady_read --ns HOST:PORT --names FILE --rate OPS_PER_S "
                    "--duration SECONDS [-c THREADS] [--samples FILE] [--trace FILE]\n");
}

#define JSON_DIGITS 15 /* significant digits of reals (rounded to their places first) */

/* x rounded to `decimals` places, as a new JSON real (NULL when out of
 * memory: json_pack then fails). */
static json_t *real_at(double x, int decimals)
{
    double scale = pow(10.0, decimals);
    return json_real(round(x * scale) / scale);
}

int main(int argc, char **argv)
{
    const char *ns = NULL, *names = NULL, *samples = NULL, *trace = NULL;
    double rate = 0, duration = 0;
    int threads = 4;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--ns") == 0)
            ns = argv[i + 1];
        else if (strcmp(argv[i], "--names") == 0)
            names = argv[i + 1];
        else if (strcmp(argv[i], "--rate") == 0)
            rate = atof(argv[i + 1]);
        else if (strcmp(argv[i], "--duration") == 0)
            duration = atof(argv[i + 1]);
        else if (strcmp(argv[i], "-c") == 0)
            threads = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--samples") == 0)
            samples = argv[i + 1];
        else if (strcmp(argv[i], "--trace") == 0)
            trace = argv[i + 1];
        else {
            usage();
            return 2;
        }
    }
    if (!ns || !names || rate <= 0 || duration <= 0 || threads < 1 || threads > MAX_THREADS ||
        (argc - 1) % 2) {
        usage();
        return 2;
    }
    if (load_names(names) != 0)
        return 1;
    if (imgstore_open(ns, NULL, &handle) != 0) {
        fprintf(stderr, "steady_read: bad --ns %s\n", ns);
        return 2;
    }
    rate_per_thread = rate / threads;
    static struct worker w[MAX_THREADS];
    t_start = now_ns() + NS_PER_S / 10;
    t_end = t_start + (int64_t)(duration * NS_PER_S);
    for (int i = 0; i < threads; i++) {
        w[i].rng = (uint64_t)t_start ^ ((uint64_t)i << 32);
        if (pthread_create(&w[i].tid, NULL, worker_main, &w[i]) != 0) {
            fprintf(stderr, "steady_read: cannot start threads\n");
            return 1;
        }
    }
    size_t total = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(w[i].tid, NULL);
        total += w[i].n;
    }
    double secs = (double)(now_ns() - t_start) / NS_PER_S;
    if (trace && write_trace(trace, w, threads) != 0)
        return 1;
    int64_t *all = malloc((total + 1) * sizeof(*all));
    if (!all)
        return 1;
    size_t k = 0;
    for (int i = 0; i < threads; i++) {
        memcpy(all + k, w[i].lat, w[i].n * sizeof(*all));
        k += w[i].n;
        free(w[i].lat);
        free(w[i].due);
        free(w[i].file);
    }
    qsort(all, total, sizeof(*all), cmp_i64);
    if (samples) {
        FILE *fp = fopen(samples, "a");
        for (size_t i = 0; fp && i < total; i++)
            fprintf(fp, "%.4f\n", (double)all[i] / NS_PER_MS);
        if (!fp || fclose(fp) != 0) {
            fprintf(stderr, "steady_read: cannot write %s: %s\n", samples, strerror(errno));
            return 1;
        }
    }
#define PCTL(p) (total ? (double)all[(size_t)((double)(total - 1) * (p))] / NS_PER_MS : 0.0)
    json_t *doc = json_pack("{s:I, s:I, s:o, s:o, s:o, s:o, s:o, s:o}", "ops", (json_int_t)total,
                            "errors", (json_int_t)atomic_load(&errors), "ops_per_s",
                            real_at(secs > 0 ? (double)total / secs : 0.0, 1), "p50",
                            real_at(PCTL(0.5), 3), "p90", real_at(PCTL(0.9), 3), "p99",
                            real_at(PCTL(0.99), 3), "p99_9", real_at(PCTL(0.999), 3), "max",
                            real_at(PCTL(1.0), 3));
    char *text = doc ? json_dumps(doc, JSON_COMPACT | JSON_REAL_PRECISION(JSON_DIGITS)) : NULL;
    json_decref(doc);
    int ok = text != NULL;
    if (ok)
        printf("%s\n", text);
    else
        fprintf(stderr, "steady_read: out of memory writing the JSON result\n");
    free(text);
    free(all);
    free(files);
    imgstore_close(handle);
    return ok ? 0 : 1;
}
