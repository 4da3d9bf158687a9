/* Integration test: 1,000 files of 1 byte to 2 MiB go in through the CLI and
 * through the library (4 threads on one handle) and come back byte-identical,
 * on 3 dataservers with 2 replicas. The CLI's stat is checked against the
 * bytes. The data is seeded: IMGSTORE_SEED=N replays a run. */
#include "base/crc32c.h"
#include "proto/fname.h"
#include "tests/integ/cluster.h"
#include "tests/integ/fixture.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NFILES 1000
#define NCLI 100 /* files 0..NCLI-1 go through `imgstore put` */
#define MAX_SIZE (2u << 20)
#define NTHREADS 4
#define NSTAT 12 /* files checked through `imgstore stat` */
#define CLI_TIMEOUT_MS 120000

static uint64_t seed;
static uint32_t sizes[NFILES];
static char names[NFILES][IMGSTORE_NAME_MAX];

static void setup(void)
{
    fixture_start(&(struct cluster_opts){.ndataservers = 3, .replicas = 2});
}


TestSuite(roundtrip, .init = setup, .fini = fixture_stop, .timeout = 280);

/* Sizes are log-uniform in [1, 2 MiB], so the total stays near 150 MB; the
 * first CLI file and the first library file are exactly 1 byte and the next
 * ones exactly 2 MiB. */
static void make_sizes(void)
{
    uint64_t rng = seed;
    uint64_t total = 0;
    for (int i = 0; i < NFILES; i++) {
        sizes[i] = cluster_log_size(&rng, MAX_SIZE);
        if (i == 0 || i == NCLI)
            sizes[i] = 1;
        if (i == 1 || i == NCLI + 1)
            sizes[i] = MAX_SIZE;
        total += sizes[i];
    }
    fprintf(stderr, "[roundtrip] %d files, %llu bytes in all\n", NFILES,
            (unsigned long long)total);
}

/* ---- CLI upload ------------------------------------------------------------ */

static void in_path(char *out, size_t n, int i)
{
    snprintf(out, n, "%s/in/f%04d.bin", C->dir, i);
}

static void cli_put_all(void)
{
    static char paths[NCLI][300];
    const char *argv[NCLI + 6];
    char dir[300];
    int n = 0;
    snprintf(dir, sizeof(dir), "%s/in", C->dir);
    cr_assert_eq(mkdir(dir, 0755), 0);
    void *buf = malloc(MAX_SIZE);
    cr_assert_not_null(buf);
    argv[n++] = "imgstore";
    argv[n++] = "--ns";
    argv[n++] = C->ns.addr;
    argv[n++] = "put";
    for (int i = 0; i < NCLI; i++) {
        in_path(paths[i], sizeof(paths[i]), i);
        cluster_fill(buf, sizes[i], seed, (uint64_t)i);
        cr_assert_eq(cluster_write_file(paths[i], buf, sizes[i]), 0);
        argv[n++] = paths[i];
    }
    argv[n] = NULL;
    free(buf);

    struct cluster_run r;
    cr_assert_eq(cluster_run(C, argv, NULL, NULL, CLI_TIMEOUT_MS, &r), 0);
    cr_assert_eq(r.exit_code, 0, "imgstore put of %d files exited %d: %s", NCLI, r.exit_code,
                 r.err);
    char *save = NULL, *line = strtok_r(r.out, "\n", &save);
    int got = 0;
    for (; line && got < NCLI; line = strtok_r(NULL, "\n", &save), got++) {
        struct fname f;
        cr_assert_eq(fname_decode(line, strlen(line), &f, NULL, NULL), 0,
                     "line %d of imgstore put is not a file name: '%s'", got + 1, line);
        cr_assert_lt(strlen(line), IMGSTORE_NAME_MAX);
        strcpy(names[got], line);
    }
    cr_assert_eq(got, NCLI, "imgstore put printed %d names for %d files", got, NCLI);
    cr_assert_null(line, "imgstore put printed more lines than files: '%s'", line);
    cluster_run_free(&r);
}

static void cli_get_all(void)
{
    char out[300];
    snprintf(out, sizeof(out), "%s/out.bin", C->dir);
    for (int i = 0; i < NCLI; i++) {
        const char *argv[] = {"imgstore", "--ns", C->ns.addr, "get", names[i], "-o", out, NULL};
        struct cluster_run r;
        cr_assert_eq(cluster_run(C, argv, NULL, NULL, CLI_TIMEOUT_MS, &r), 0);
        cr_assert_eq(r.exit_code, 0, "imgstore get %s (file %d) exited %d: %s", names[i], i,
                     r.exit_code, r.err);
        cluster_run_free(&r);
        void *data, *want = malloc(sizes[i]);
        size_t len;
        cr_assert_eq(cluster_read_file(out, &data, &len), 0);
        cluster_fill(want, sizes[i], seed, (uint64_t)i);
        cr_assert_eq(len, sizes[i], "imgstore get -o of file %d wrote %zu bytes, want %u", i, len,
                     sizes[i]);
        cr_assert(memcmp(data, want, len) == 0, "imgstore get -o of file %d: bytes differ", i);
        free(data);
        free(want);
        unlink(out);
    }
}

/* ---- library upload and read-back from several threads --------------------- */

struct work {
    imgstore_t *h;
    atomic_int next;
    int end;
    atomic_int failures;
    int (*fn)(struct work *w, int i);
};

static int lib_put_one(struct work *w, int i)
{
    return cluster_put_file(w->h, seed, (uint64_t)i, sizes[i], names[i], 1);
}

static int lib_check_one(struct work *w, int i)
{
    return cluster_check_file(w->h, names[i], NULL, seed, (uint64_t)i, sizes[i]);
}

static void *worker(void *arg)
{
    struct work *w = arg;
    for (;;) {
        int i = atomic_fetch_add(&w->next, 1);
        if (i >= w->end)
            break;
        if (w->fn(w, i) != 0)
            atomic_fetch_add(&w->failures, 1);
    }
    return NULL;
}

/* Runs fn over files [from, to) on NTHREADS threads sharing handle h.
 * Returns the number of failures. Assertions stay on the test's thread. */
static int run_threads(imgstore_t *h, int from, int to, int (*fn)(struct work *, int))
{
    struct work w = {.h = h, .end = to, .fn = fn};
    pthread_t t[NTHREADS];
    atomic_init(&w.next, from);
    atomic_init(&w.failures, 0);
    for (int i = 0; i < NTHREADS; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, worker, &w), 0);
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(t[i], NULL);
    return atomic_load(&w.failures);
}

/* ---- CLI stat ------------------------------------------------------------------- */

/* Returns the value of "key: value" in text (a malloc'd copy) or NULL. */
static char *stat_value(const char *text, const char *key)
{
    size_t kl = strlen(key);
    for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        if (strncmp(l, key, kl) == 0 && l[kl] == ':') {
            const char *v = l + kl + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            size_t n = strcspn(v, "\r\n");
            return strndup(v, n);
        }
    }
    return NULL;
}

/* A CRC may be printed in decimal, as 8 hex digits, or with 0x. */
static int crc_matches(const char *v, uint32_t crc)
{
    char dec[16], hex[16], hex0x[16], HEX[16], HEX0x[16];
    snprintf(dec, sizeof(dec), "%u", crc);
    snprintf(hex, sizeof(hex), "%08x", crc);
    snprintf(hex0x, sizeof(hex0x), "0x%08x", crc);
    snprintf(HEX, sizeof(HEX), "%08X", crc);
    snprintf(HEX0x, sizeof(HEX0x), "0x%08X", crc);
    return !strcmp(v, dec) || !strcmp(v, hex) || !strcmp(v, hex0x) || !strcmp(v, HEX) ||
           !strcmp(v, HEX0x) || strtoull(v, NULL, 0) == crc;
}

static void cli_stat_one(imgstore_t *h, int i)
{
    static const char *keys[] = {"name", "size",    "block",   "seq",      "offset",
                                 "mime", "crc32c", "created", "replicas", NULL};
    const char *argv[] = {"imgstore", "--ns", C->ns.addr, "stat", names[i], NULL};
    struct cluster_run r;
    cr_assert_eq(cluster_run(C, argv, NULL, NULL, CLI_TIMEOUT_MS, &r), 0);
    cr_assert_eq(r.exit_code, 0, "imgstore stat %s exited %d: %s", names[i], r.exit_code, r.err);
    for (int k = 0; keys[k]; k++) {
        char *v = stat_value(r.out, keys[k]);
        cr_assert_not_null(v, "imgstore stat %s: no '%s:' line in:\n%s", names[i], keys[k], r.out);
        free(v);
    }
    void *buf = malloc(sizes[i]);
    cluster_fill(buf, sizes[i], seed, (uint64_t)i);
    uint32_t crc = crc32c(0, buf, sizes[i]);
    free(buf);
    char *size = stat_value(r.out, "size");
    char *crcv = stat_value(r.out, "crc32c");
    cr_assert_eq(strtoull(size, NULL, 10), sizes[i], "imgstore stat %s: size %s, want %u",
                 names[i], size, sizes[i]);
    cr_assert(crc_matches(crcv, crc), "imgstore stat %s: crc32c %s, want %08x", names[i], crcv,
              crc);
    free(size);
    free(crcv);

    struct imgstore_stat st;
    cr_assert_eq(imgstore_stat(h, names[i], &st), 0);
    cr_assert_eq(st.size, sizes[i]);
    cr_assert_eq(st.crc32c, crc, "imgstore_stat crc32c %08x, want %08x", st.crc32c, crc);
    cr_assert_eq(st.nreplicas, 2, "file %s has %d replicas, want 2", names[i], st.nreplicas);
    cluster_run_free(&r);
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(a, b);
}

Test(roundtrip, thousand_files)
{
    cr_assert_not_null(C, "the cluster did not start (see above)");
    seed = cluster_seed("roundtrip");
    make_sizes();
    imgstore_t *h = cluster_client(C);
    cr_assert_not_null(h);

    int64_t t0 = cluster_now_ms();
    cli_put_all();
    int64_t t1 = cluster_now_ms();
    cli_get_all();
    int64_t t2 = cluster_now_ms();
    int bad = run_threads(h, NCLI, NFILES, lib_put_one);
    cr_assert_eq(bad, 0, "%d of %d library uploads failed", bad, NFILES - NCLI);
    int64_t t3 = cluster_now_ms();
    bad = run_threads(h, 0, NFILES, lib_check_one);
    cr_assert_eq(bad, 0, "%d of %d files did not read back identical", bad, NFILES);
    int64_t t4 = cluster_now_ms();
    for (int k = 0; k < NSTAT; k++)
        cli_stat_one(h, k < NSTAT / 2 ? k : NCLI + k);
    fprintf(stderr,
            "[roundtrip] cli put %lld ms, cli get %lld ms, lib put %lld ms, lib read %lld ms\n",
            (long long)(t1 - t0), (long long)(t2 - t1), (long long)(t3 - t2),
            (long long)(t4 - t3));

    /* Names are unique. */
    static char sorted[NFILES][IMGSTORE_NAME_MAX];
    memcpy(sorted, names, sizeof(sorted));
    qsort(sorted, NFILES, IMGSTORE_NAME_MAX, cmp_name);
    for (int i = 1; i < NFILES; i++)
        cr_assert_str_neq(sorted[i - 1], sorted[i], "two files got the name %s", sorted[i]);
    imgstore_close(h);
    C->passed = 1;
}
