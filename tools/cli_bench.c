/* cli_bench.c - the load generator behind `imgstore bench` (see cli_bench.h).
 *
 * Phases: "upload" puts -n files from -c threads; then, for --duration
 * seconds (or --reads operations), the same threads walk a random
 * permutation of the uploaded files and read each one (checking its length
 * and the index stamped in its first bytes), or, with --read-ratio R < 1,
 * delete it instead with probability 1 - R ("read" and "delete" phases share
 * that interval). Every operation's latency is kept (4 bytes each) and the
 * percentiles are exact. Threads share one backend (one library handle).
 *
 * --save-names writes "KEY SIZE INDEX" lines after the upload; --names reads
 * them back and skips the upload, so reads can be measured separately (for
 * example after dropping the page cache). --json prints one compact JSON
 * document, built and written with jansson. */
#include "tools/cli_bench.h"

#include "tools/cli_util.h"
#include "tools/emit.h"
#include "base/array.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BENCH_DEFAULT_FILES 1000
#define BENCH_DEFAULT_CONC 8
#define BENCH_DEFAULT_SIZE 51200
#define BENCH_DEFAULT_DURATION 10.0
#define BENCH_MAX_CONC 1024
#define BENCH_MAX_SIZE (32u << 20) /* imgstore_put's limit */
#define BENCH_STAMP 8              /* bytes of the file index at the start of each file */
#define BENCH_PROGRESS_NS 500000000L
#define BENCH_ERRMSG 160
#define NS_PER_S 1000000000.0
#define JSON_DIGITS 15 /* significant digits of --json reals (rounded to their places first) */
#define MB 1e6

enum { PH_UPLOAD, PH_READ, PH_DELETE, PH_COUNT };
static const char *const phase_names[PH_COUNT] = {"upload", "read", "delete"};

struct bench_opts {
    long nfiles;
    int conc;
    uint32_t size_min, size_max;
    double read_ratio;
    double duration;
    long reads; /* 0: no limit */
    uint64_t seed;
    int json;
    const char *names_in, *names_out;
};

struct bench_file {
    char key[BENCH_KEY_MAX];
    uint32_t size;
    uint64_t index;
    atomic_int state; /* 0 absent, 1 stored, 2 deleted */
};

/* Latencies of one phase in one thread, in microseconds. */
struct lat_vec {
    uint32_t *v;
    size_t n, cap;
    uint64_t bytes;
    uint64_t errors;
};

struct bench_worker;

struct bench_run {
    const struct bench_backend *be;
    const struct bench_opts *o;
    struct bench_file *files;
    long nfiles;
    long *perm;         /* read order */
    atomic_long next;   /* next upload index / permutation slot */
    atomic_long done;   /* operations finished in the running phase */
    atomic_int stop;
    atomic_long live;   /* files stored and not deleted */
    int phase;          /* PH_UPLOAD or PH_READ */
    int64_t deadline_ns;
    pthread_mutex_t err_mu;
    char first_error[BENCH_ERRMSG];
    struct bench_worker *workers;
};

struct bench_worker {
    struct bench_run *run;
    uint64_t rng;
    uint8_t *buf;
    struct lat_vec lat[PH_COUNT];
    pthread_t tid;
};

struct phase_result {
    uint64_t ops, errors, bytes;
    double seconds;
    uint32_t p50, p90, p99, p999, max; /* microseconds */
};

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

static int lat_push(struct lat_vec *l, uint32_t us)
{
    int rc = ARRAY_RESERVE(l->v, l->cap, l->n + 1, 4096);
    if (rc != 0)
        return rc;
    l->v[l->n++] = us;
    return 0;
}

static void note_error(struct bench_run *r, const char *what, const char *key, int err)
{
    pthread_mutex_lock(&r->err_mu);
    if (!r->first_error[0])
        snprintf(r->first_error, sizeof(r->first_error), "%s %s: %s", what, key ? key : "",
                 err == -EILSEQ ? "wrong bytes read back" : r->be->strerror(err));
    pthread_mutex_unlock(&r->err_mu);
}

static void record(struct bench_worker *w, int phase, int64_t t0, int rc, size_t bytes)
{
    int64_t us = (now_ns() - t0) / 1000;
    struct lat_vec *l = &w->lat[phase];
    if (rc != 0) {
        l->errors++;
    } else {
        l->bytes += bytes;
        lat_push(l, us > UINT32_MAX ? UINT32_MAX : (uint32_t)us);
    }
    atomic_fetch_add(&w->run->done, 1);
}

static void upload_one(struct bench_worker *w, long i)
{
    struct bench_run *r = w->run;
    struct bench_file *f = &r->files[i];
    const struct bench_opts *o = r->o;
    uint32_t span = o->size_max - o->size_min + 1;
    f->size = o->size_min + (uint32_t)(splitmix(&w->rng) % span);
    f->index = (uint64_t)i;
    for (uint32_t k = 0; k + 8 <= f->size && k < 64; k += 8) {
        uint64_t v = k == 0 ? f->index : splitmix(&w->rng);
        memcpy(w->buf + k, &v, 8);
    }
    int64_t t0 = now_ns();
    int rc = r->be->put(r->be->ctx, w->buf, f->size, f->key);
    record(w, PH_UPLOAD, t0, rc, f->size);
    if (rc == 0) {
        atomic_store(&f->state, 1);
        atomic_fetch_add(&r->live, 1);
    } else
        note_error(r, "put", NULL, rc);
}

/* Checks what a read returned against the file it should be. */
static int check_read(const struct bench_file *f, const void *data, size_t len)
{
    if (len != f->size)
        return -EILSEQ;
    if (len >= BENCH_STAMP) {
        uint64_t v;
        memcpy(&v, data, sizeof(v));
        if (v != f->index)
            return -EILSEQ;
    }
    return 0;
}

static void read_or_delete(struct bench_worker *w, long slot)
{
    struct bench_run *r = w->run;
    struct bench_file *f = &r->files[r->perm[slot % r->nfiles]];
    if (atomic_load(&f->state) != 1)
        return;
    double u = (double)(splitmix(&w->rng) >> 11) / (double)(UINT64_C(1) << 53);
    int64_t t0 = now_ns();
    if (u >= r->o->read_ratio) {
        int expect = 1;
        if (!atomic_compare_exchange_strong(&f->state, &expect, 2))
            return;
        atomic_fetch_sub(&r->live, 1);
        int rc = r->be->del(r->be->ctx, f->key);
        record(w, PH_DELETE, t0, rc, 0);
        if (rc != 0)
            note_error(r, "delete", f->key, rc);
        return;
    }
    void *data = NULL;
    size_t len = 0;
    int rc = r->be->get(r->be->ctx, f->key, &data, &len);
    if (rc == 0)
        rc = check_read(f, data, len);
    if (data)
        r->be->release(r->be->ctx, data);
    if (rc != 0 && atomic_load(&f->state) == 2)
        return; /* deleted under our feet by another thread: not an error */
    record(w, PH_READ, t0, rc, len);
    if (rc != 0)
        note_error(r, "get", f->key, rc);
}

static void *worker_main(void *arg)
{
    struct bench_worker *w = arg;
    struct bench_run *r = w->run;
    for (;;) {
        if (atomic_load(&r->stop))
            break;
        long i = atomic_fetch_add(&r->next, 1);
        if (r->phase == PH_UPLOAD) {
            if (i >= r->nfiles)
                break;
            upload_one(w, i);
        } else {
            if ((r->o->reads > 0 && i >= r->o->reads) || atomic_load(&r->live) <= 0 ||
                (r->deadline_ns > 0 && now_ns() >= r->deadline_ns))
                break;
            read_or_delete(w, i);
        }
    }
    return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static uint32_t pct(const uint32_t *v, size_t n, double p)
{
    if (n == 0)
        return 0;
    size_t i = (size_t)(p * (double)n);
    return v[i >= n ? n - 1 : i];
}

/* Merges every worker's latencies of `phase` into *res. */
static int summarize(struct bench_run *r, int phase, double seconds, struct phase_result *res)
{
    memset(res, 0, sizeof(*res));
    res->seconds = seconds;
    size_t n = 0;
    for (int t = 0; t < r->o->conc; t++)
        n += r->workers[t].lat[phase].n;
    uint32_t *all = malloc((n ? n : 1) * sizeof(*all));
    if (!all)
        return -ENOMEM;
    size_t k = 0;
    for (int t = 0; t < r->o->conc; t++) {
        struct lat_vec *l = &r->workers[t].lat[phase];
        memcpy(all + k, l->v, l->n * sizeof(*all));
        k += l->n;
        res->bytes += l->bytes;
        res->errors += l->errors;
    }
    qsort(all, n, sizeof(*all), cmp_u32);
    res->ops = n;
    res->p50 = pct(all, n, 0.50);
    res->p90 = pct(all, n, 0.90);
    res->p99 = pct(all, n, 0.99);
    res->p999 = pct(all, n, 0.999);
    res->max = n ? all[n - 1] : 0;
    free(all);
    return 0;
}

/* Runs one phase on every worker, with a progress line on a terminal.
 * Returns the wall time in seconds, or a negative value when threads could
 * not be started. */
static double run_phase(struct bench_run *r, int phase, long total)
{
    r->phase = phase;
    atomic_store(&r->next, 0);
    atomic_store(&r->done, 0);
    r->deadline_ns = 0;
    if (phase != PH_UPLOAD && r->o->duration > 0)
        r->deadline_ns = now_ns() + (int64_t)(r->o->duration * NS_PER_S);
    int64_t t0 = now_ns();
    int started = 0;
    for (; started < r->o->conc; started++)
        if (pthread_create(&r->workers[started].tid, NULL, worker_main, &r->workers[started]) != 0)
            break;
    if (started < r->o->conc)
        atomic_store(&r->stop, 1);
    int tty = isatty(STDERR_FILENO);
    if (tty && started == r->o->conc) {
        for (;;) {
            struct timespec ts = {0, BENCH_PROGRESS_NS};
            nanosleep(&ts, NULL);
            long d = atomic_load(&r->done);
            double s = (double)(now_ns() - t0) / NS_PER_S;
            int finished = (total > 0 && atomic_load(&r->next) >= total) ||
                           (r->deadline_ns > 0 && now_ns() >= r->deadline_ns) ||
                           (phase != PH_UPLOAD && atomic_load(&r->live) <= 0);
            fprintf(stderr, "\r%-6s %ld", phase_names[phase], d);
            if (total > 0)
                fprintf(stderr, "/%ld", total);
            fprintf(stderr, " ops  %.0f ops/s  %.1fs   ", s > 0 ? (double)d / s : 0.0, s);
            if (finished)
                break;
        }
    }
    for (int t = 0; t < started; t++)
        pthread_join(r->workers[t].tid, NULL);
    if (tty)
        fprintf(stderr, "\r%60s\r", "");
    return started == r->o->conc ? (double)(now_ns() - t0) / NS_PER_S : -1.0;
}

static void shuffle(long *perm, long n, uint64_t *rng)
{
    for (long i = 0; i < n; i++)
        perm[i] = i;
    for (long i = n - 1; i > 0; i--) {
        long j = (long)(splitmix(rng) % (uint64_t)(i + 1));
        long t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

static int load_names(struct bench_run *r, const char *path)
{
    FILE *fp = fopen(path, "r");
    if (!fp)
        return -errno;
    long cap = 1024, n = 0;
    struct bench_file *files = calloc((size_t)cap, sizeof(*files));
    char key[BENCH_KEY_MAX];
    unsigned long size;
    uint64_t index;
    while (files && fscanf(fp, "%63s %lu %" SCNu64, key, &size, &index) == 3) {
        if (n == cap) {
            struct bench_file *p = realloc(files, (size_t)cap * 2 * sizeof(*files));
            if (!p)
                break;
            memset(p + cap, 0, (size_t)cap * sizeof(*p));
            files = p;
            cap *= 2;
        }
        snprintf(files[n].key, BENCH_KEY_MAX, "%s", key);
        files[n].size = (uint32_t)size;
        files[n].index = index;
        atomic_store(&files[n].state, 1);
        atomic_fetch_add(&r->live, 1);
        n++;
    }
    fclose(fp);
    if (!files)
        return -ENOMEM;
    r->files = files;
    r->nfiles = n;
    return n > 0 ? 0 : -ENODATA;
}

static int save_names(const struct bench_run *r, const char *path)
{
    FILE *fp = fopen(path, "w");
    if (!fp)
        return -errno;
    for (long i = 0; i < r->nfiles; i++)
        if (atomic_load(&r->files[i].state) == 1)
            fprintf(fp, "%s %u %" PRIu64 "\n", r->files[i].key, r->files[i].size,
                    r->files[i].index);
    return fclose(fp) == 0 ? 0 : -errno;
}

static void print_text(const struct bench_run *r, const struct phase_result *res, const int *ran)
{
    const struct bench_opts *o = r->o;
    printf("backend %s, %ld files of %" PRIu32 "..%" PRIu32 " bytes, %d threads, seed %" PRIu64
           "\n\n",
           r->be->name, r->nfiles, o->size_min, o->size_max, o->conc, o->seed);
    static const char *const hdr[] = {"phase",   "ops",     "errors",  "seconds", "ops/s",
                                      "MB/s",    "p50 ms",  "p90 ms",  "p99 ms",  "p99.9 ms",
                                      "max ms"};
    struct emit_table t;
    emit_table_init(&t, 11, hdr);
    for (int p = 0; p < PH_COUNT; p++) {
        if (!ran[p])
            continue;
        const struct phase_result *x = &res[p];
        emit_text(&t, phase_names[p]);
        emit_cell(&t, "%" PRIu64, x->ops);
        emit_cell(&t, "%" PRIu64, x->errors);
        emit_cell(&t, "%.2f", x->seconds);
        emit_cell(&t, "%.0f", x->seconds > 0 ? x->ops / x->seconds : 0);
        emit_cell(&t, "%.1f", x->seconds > 0 ? x->bytes / MB / x->seconds : 0);
        emit_cell(&t, "%.2f", x->p50 / 1000.0); /* ms */
        emit_cell(&t, "%.2f", x->p90 / 1000.0); /* ms */
        emit_cell(&t, "%.2f", x->p99 / 1000.0); /* ms */
        emit_cell(&t, "%.2f", x->p999 / 1000.0); /* ms */
        emit_cell(&t, "%.2f", x->max / 1000.0); /* ms */
    }
    if (emit_table_end(&t, stdout) != 0)
        return;
    if (r->first_error[0])
        printf("\nfirst error: %s\n", r->first_error);
}

/* x rounded to `decimals` places, as a JSON real. */
static json_t *real_at(double x, int decimals)
{
    double scale = pow(10.0, decimals);
    return json_real(round(x * scale) / scale);
}

/* One JSON document (compact, one line) written with jansson. */
static void print_json(const struct bench_run *r, const struct phase_result *res, const int *ran)
{
    const struct bench_opts *o = r->o;
    json_t *phases = json_array();
    for (int p = 0; phases && p < PH_COUNT; p++) {
        if (!ran[p])
            continue;
        const struct phase_result *x = &res[p];
        json_array_append_new(
            phases,
            json_pack("{s:s, s:I, s:I, s:o, s:o, s:o, s:{s:o, s:o, s:o, s:o, s:o}}", "name",
                      phase_names[p], "ops", (json_int_t)x->ops, "errors", (json_int_t)x->errors,
                      "seconds", real_at(x->seconds, 3), "ops_per_s",
                      real_at(x->seconds > 0 ? x->ops / x->seconds : 0, 1), "mb_per_s",
                      real_at(x->seconds > 0 ? x->bytes / MB / x->seconds : 0, 2), "latency_ms",
                      "p50", real_at(x->p50 / 1000.0, 3), "p90", real_at(x->p90 / 1000.0, 3),
                      "p99", real_at(x->p99 / 1000.0, 3), "p99_9", real_at(x->p999 / 1000.0, 3),
                      "max", real_at(x->max / 1000.0, 3)));
    }
    json_t *doc = json_pack("{s:s, s:I, s:i, s:I, s:I, s:o, s:I, s:o, s:s}", "backend",
                            r->be->name, "files", (json_int_t)r->nfiles, "concurrency", o->conc,
                            "size_min", (json_int_t)o->size_min, "size_max",
                            (json_int_t)o->size_max, "read_ratio", real_at(o->read_ratio, 3),
                            "seed", (json_int_t)o->seed, "phases", phases, "first_error",
                            r->first_error);
    char *text = doc ? json_dumps(doc, JSON_COMPACT | JSON_REAL_PRECISION(JSON_DIGITS)) : NULL;
    json_decref(doc);
    if (!text) {
        fprintf(stderr, "imgstore bench: out of memory writing the JSON result\n");
        return;
    }
    printf("%s\n", text);
    free(text);
}

void bench_usage(FILE *fp)
{
    fprintf(fp,
            "bench options:\n"
            "  -n FILES            files to upload (default %d)\n"
            "  -c CONCURRENCY      threads sharing one handle (default %d)\n"
            "  --size BYTES        size of every file (default %d)\n"
            "  --size-dist MIN:MAX sizes uniform in [MIN, MAX]\n"
            "  --read-ratio R      share of reads in the read phase, the rest are\n"
            "                      deletes (default 1)\n"
            "  --duration S        length of the read phase in seconds (default %.0f;\n"
            "                      0 skips it)\n"
            "  --reads N           end the read phase after N operations\n"
            "  --names FILE        skip the upload; read \"KEY SIZE INDEX\" lines\n"
            "  --save-names FILE   write those lines after the upload\n"
            "  --seed N            random seed (default: time)\n"
            "  --json              print one JSON document\n",
            BENCH_DEFAULT_FILES, BENCH_DEFAULT_CONC, BENCH_DEFAULT_SIZE, BENCH_DEFAULT_DURATION);
}

static int bench_usage_error(const char *prog, const char *msg, const char *arg)
{
    fprintf(stderr, "%s: bench: %s%s%s\n", prog, msg, arg ? " " : "", arg ? arg : "");
    cli_try_help(prog, "bench");
    return 2;
}

static int parse_u32(const char *s, uint32_t *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || v > UINT32_MAX || s[0] == '-')
        return -EINVAL;
    *out = (uint32_t)v;
    return 0;
}

static int parse_double(const char *s, double lo, double hi, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !(v >= lo && v <= hi))
        return -EINVAL;
    *out = v;
    return 0;
}

enum {
    OPT_SIZE = 256,
    OPT_DIST,
    OPT_RATIO,
    OPT_DURATION,
    OPT_READS,
    OPT_NAMES,
    OPT_SAVE,
    OPT_SEED,
    OPT_JSON,
    OPT_NS,
};

#define BENCH_HELP (-1) /* parse_opts printed the help: exit 0 */

/* Parses argv into *o. Returns 0, the usage exit status (2), or BENCH_HELP.
 * *ns gets --ns when given. */
static int parse_opts(const char *prog, int argc, char **argv, struct bench_opts *o,
                      const char **ns)
{
    static const struct option longopts[] = {
        {"size", required_argument, NULL, OPT_SIZE},
        {"size-dist", required_argument, NULL, OPT_DIST},
        {"read-ratio", required_argument, NULL, OPT_RATIO},
        {"duration", required_argument, NULL, OPT_DURATION},
        {"reads", required_argument, NULL, OPT_READS},
        {"names", required_argument, NULL, OPT_NAMES},
        {"save-names", required_argument, NULL, OPT_SAVE},
        {"seed", required_argument, NULL, OPT_SEED},
        {"json", no_argument, NULL, OPT_JSON},
        {"ns", required_argument, NULL, OPT_NS},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    *o = (struct bench_opts){.nfiles = BENCH_DEFAULT_FILES,
                             .conc = BENCH_DEFAULT_CONC,
                             .size_min = BENCH_DEFAULT_SIZE,
                             .size_max = BENCH_DEFAULT_SIZE,
                             .read_ratio = 1.0,
                             .duration = BENCH_DEFAULT_DURATION,
                             .seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32)};
    int c, v;
    double d;
    optind = 0;
    while ((c = getopt_long(argc, argv, ":n:c:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'n':
            if (cli_parse_int(optarg, &v) != 0 || v < 1)
                return bench_usage_error(prog, "invalid -n", optarg);
            o->nfiles = v;
            break;
        case 'c':
            if (cli_parse_int(optarg, &v) != 0 || v < 1 || v > BENCH_MAX_CONC)
                return bench_usage_error(prog, "invalid -c", optarg);
            o->conc = v;
            break;
        case OPT_SIZE:
            /* Empty files are refused by the store: sizes from 1 byte. */
            if (parse_u32(optarg, &o->size_min) != 0 || o->size_min == 0 ||
                o->size_min > BENCH_MAX_SIZE)
                return bench_usage_error(prog, "invalid --size", optarg);
            o->size_max = o->size_min;
            break;
        case OPT_DIST: {
            char *colon = strchr(optarg, ':');
            if (!colon)
                return bench_usage_error(prog, "invalid --size-dist", optarg);
            *colon = '\0';
            int bad = parse_u32(optarg, &o->size_min) != 0 ||
                      parse_u32(colon + 1, &o->size_max) != 0 || o->size_min == 0 ||
                      o->size_min > o->size_max ||
                      o->size_max > BENCH_MAX_SIZE;
            *colon = ':';
            if (bad)
                return bench_usage_error(prog, "invalid --size-dist", optarg);
            break;
        }
        case OPT_RATIO:
            if (parse_double(optarg, 0, 1, &o->read_ratio) != 0)
                return bench_usage_error(prog, "invalid --read-ratio", optarg);
            break;
        case OPT_DURATION:
            if (parse_double(optarg, 0, 86400, &o->duration) != 0)
                return bench_usage_error(prog, "invalid --duration", optarg);
            break;
        case OPT_READS:
            if (parse_double(optarg, 1, 1e12, &d) != 0)
                return bench_usage_error(prog, "invalid --reads", optarg);
            o->reads = (long)d;
            break;
        case OPT_NAMES:
            o->names_in = optarg;
            break;
        case OPT_SAVE:
            o->names_out = optarg;
            break;
        case OPT_SEED:
            if (parse_double(optarg, 0, 1.8e19, &d) != 0)
                return bench_usage_error(prog, "invalid --seed", optarg);
            o->seed = (uint64_t)d;
            break;
        case OPT_JSON:
            o->json = 1;
            break;
        case 'h':
            bench_usage(stdout);
            return BENCH_HELP;
        case OPT_NS:
            if (!ns)
                return bench_usage_error(prog, "unknown option", "--ns");
            *ns = optarg;
            break;
        default:
            return bench_usage_error(prog, c == ':' ? "missing argument for" : "unknown option",
                                     argv[optind - 1]);
        }
    }
    if (optind != argc)
        return bench_usage_error(prog, "unexpected argument", argv[optind]);
    if (o->reads > 0 && o->duration == BENCH_DEFAULT_DURATION)
        o->duration = 0; /* --reads alone: run until N operations */
    return 0;
}

static void run_free(struct bench_run *r)
{
    if (r->workers)
        for (int t = 0; t < r->o->conc; t++) {
            for (int p = 0; p < PH_COUNT; p++)
                free(r->workers[t].lat[p].v);
            free(r->workers[t].buf);
        }
    free(r->workers);
    free(r->files);
    free(r->perm);
    pthread_mutex_destroy(&r->err_mu);
}

static int run_setup(struct bench_run *r, const struct bench_backend *be,
                     const struct bench_opts *o)
{
    memset(r, 0, sizeof(*r));
    r->be = be;
    r->o = o;
    pthread_mutex_init(&r->err_mu, NULL);
    if (o->names_in) {
        int rc = load_names(r, o->names_in);
        if (rc != 0)
            return rc;
    } else {
        r->nfiles = o->nfiles;
        r->files = calloc((size_t)r->nfiles, sizeof(*r->files));
        if (!r->files)
            return -ENOMEM;
    }
    r->perm = malloc((size_t)r->nfiles * sizeof(*r->perm));
    r->workers = calloc((size_t)o->conc, sizeof(*r->workers));
    if (!r->perm || !r->workers)
        return -ENOMEM;
    uint64_t rng = o->seed;
    shuffle(r->perm, r->nfiles, &rng);
    for (int t = 0; t < o->conc; t++) {
        struct bench_worker *w = &r->workers[t];
        w->run = r;
        w->rng = o->seed + (uint64_t)t * UINT64_C(0x1000193);
        w->buf = malloc(o->size_max ? o->size_max : 1);
        if (!w->buf)
            return -ENOMEM;
        for (uint32_t k = 0; k + 8 <= o->size_max; k += 8) {
            uint64_t v = splitmix(&w->rng);
            memcpy(w->buf + k, &v, 8);
        }
    }
    return 0;
}

int bench_main(const char *prog, const struct bench_backend *be, int argc, char **argv)
{
    struct bench_opts o;
    int rc = parse_opts(prog, argc, argv, &o, NULL);
    if (rc != 0)
        return rc == BENCH_HELP ? 0 : rc;
    struct bench_run r;
    struct phase_result res[PH_COUNT];
    int ran[PH_COUNT] = {0};
    int status = 1;
    rc = run_setup(&r, be, &o);
    if (rc != 0) {
        fprintf(stderr, "%s: bench: %s: %s\n", prog, o.names_in ? o.names_in : "setup",
                strerror(-rc));
        goto out;
    }
    double s;
    if (!o.names_in) {
        if ((s = run_phase(&r, PH_UPLOAD, r.nfiles)) < 0 ||
            summarize(&r, PH_UPLOAD, s, &res[PH_UPLOAD]) != 0)
            goto oom;
        ran[PH_UPLOAD] = 1;
        if (o.names_out && (rc = save_names(&r, o.names_out)) != 0)
            fprintf(stderr, "%s: bench: %s: %s\n", prog, o.names_out, strerror(-rc));
    }
    if (o.duration > 0 || o.reads > 0) {
        if ((s = run_phase(&r, PH_READ, o.reads)) < 0 ||
            summarize(&r, PH_READ, s, &res[PH_READ]) != 0 ||
            summarize(&r, PH_DELETE, s, &res[PH_DELETE]) != 0)
            goto oom;
        ran[PH_READ] = o.read_ratio > 0;
        ran[PH_DELETE] = o.read_ratio < 1;
    }
    if (o.json)
        print_json(&r, res, ran);
    else
        print_text(&r, res, ran);
    status = 0;
    for (int p = 0; p < PH_COUNT; p++)
        if (ran[p] && res[p].errors > 0)
            status = 1;
    goto out;
oom:
    fprintf(stderr, "%s: bench: out of memory or threads\n", prog);
out:
    run_free(&r);
    return status;
}

/* ---- the client library as a backend ---- */

static int lib_put(void *ctx, const void *data, size_t len, char key[BENCH_KEY_MAX])
{
    return imgstore_put(ctx, data, len, "image/jpeg", key);
}

static int lib_get(void *ctx, const char *key, void **data, size_t *len)
{
    return imgstore_get(ctx, key, data, len);
}

static void lib_release(void *ctx, void *data)
{
    imgstore_free(data);
}

static int lib_del(void *ctx, const char *key)
{
    return imgstore_unlink(ctx, key);
}

_Static_assert(IMGSTORE_NAME_MAX <= BENCH_KEY_MAX, "a name fits a bench key");

int cli_bench(imgstore_t *h, int argc, char **argv)
{
    /* Find --ns first: it picks the handle the backend uses. */
    struct bench_opts o;
    const char *ns = NULL;
    int rc = parse_opts("imgstore", argc, argv, &o, &ns);
    if (rc != 0)
        return rc == BENCH_HELP ? 0 : rc;
    imgstore_t *own = NULL;
    if (ns) {
        if (imgstore_open(ns, NULL, &own) != 0) {
            fprintf(stderr,
                    "imgstore: bench: invalid --ns '%s' (want HOST:PORT[,HOST:PORT...])\n", ns);
            cli_try_help("imgstore", "bench");
            return 2;
        }
        h = own;
    }
    /* bench_main parses again without --ns: drop it from argv. */
    char **args = malloc(((size_t)argc + 1) * sizeof(*args));
    if (!args) {
        imgstore_close(own);
        return 1;
    }
    int n = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--ns") == 0 && i + 1 < argc) {
            i++;
            continue;
        }
        if (strncmp(argv[i], "--ns=", 5) == 0)
            continue;
        args[n++] = argv[i];
    }
    args[n] = NULL;
    struct bench_backend be = {.name = "imgstore",
                               .ctx = h,
                               .put = lib_put,
                               .get = lib_get,
                               .release = lib_release,
                               .del = lib_del,
                               .strerror = imgstore_strerror};
    rc = bench_main("imgstore", &be, n, args);
    free(args);
    imgstore_close(own);
    return rc;
}
