/* Integration test of erasure coding (issue 16) on six dataservers with
 * 16 MiB blocks and 2 replicas:
 *   - ec encode refused while the ec setting is off;
 *   - set ec 4+2, ec encode BLOCK --wait of a sealed block: ds-admin block
 *     shows a 4+2 stripe on six different up servers, each dataserver holds
 *     exactly the shard file the nameserver names, the stripe's raw bytes per
 *     logical byte are at most 1.52 (ds-admin status), a second encode is
 *     refused;
 *   - the replicated copies are deleted once the stripe is recorded (no
 *     .blk file of the block left, ds-admin block lists no replica);
 *   - every file reads byte-identical from the shards through the library
 *     and through every dataserver's HTTP origin;
 *   - deletes (library and HTTP) of some of its files: they read as deleted
 *     (library and HTTP) from then on, also after every restart and every
 *     shard rebuild below, while the others read right; ds-admin block shows
 *     the stripe's garbage grown by (at least half of) the deleted bytes,
 *     generation 0 and no compaction due (1/40 of the files);
 *   - the stripe survives a nameserver restart (rebuilt from the shard
 *     holders' reports) and a shard holder's restart (shard reloaded).
 *   - two shard holders killed (the holders of data shards 0 and 1): every
 *     file of the block still reads byte-identical through the library and
 *     the surviving HTTP origins (degraded reads rebuild the files of the
 *     lost data shards from the four others); the p99 of normal and
 *     degraded reads of the block's files are printed.
 *   - repair: two dataservers added, the two lost shards are rebuilt on
 *     them (a server holding no other shard of the stripe), the stripe is
 *     whole again on up servers, and every file reads byte-identical.
 *   - the two killed servers restarted: their stale shards are dropped;
 *   - a flipped byte in data shard 2's payload: every file still reads
 *     byte-identical (the damaged record's read fails its chunk CRC, the
 *     shard is reported bad and the file rebuilt from the others), and the
 *     shard is rebuilt on a server holding no other shard of the stripe.
 * Shards moved by drains and the balance: test_ec_move.c. Helpers shared
 * with it: ec_fixture.c.
 * Not yet here (docs/nameserver.md, "Erasure-coded blocks"): compaction of
 * encoded blocks (its rewrite is unit-tested in tests/unit/test_ec.c). */
#include "tests/integ/cluster.h"
#include "tests/integ/ec_fixture.h"
#include "proto/fname.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define NDS 6

static void setup(void)
{
    fixture_start(&(struct cluster_opts){.ndataservers = NDS, .replicas = 2,
                                         .block_size = BLOCK_SIZE, .ns_http = 1});
}

TestSuite(ec, .init = setup, .fini = fixture_stop, .timeout = 240);

static uint32_t sizes[NFILES_MAX];
static char names[NFILES_MAX][IMGSTORE_NAME_MAX];
static int deleted[NFILES_MAX];
static int nfiles;

/* Every file of block id read through every dataserver's HTTP origin (the
 * origins spread round-robin over the files). */
static void http_read_block(uint64_t id, const char *when)
{
    uint8_t *want = malloc(MAX_SIZE);
    int done = 0;
    for (int i = 0; i < nfiles; i++) {
        if (!ec_name_in_block(names[i], id) || deleted[i])
            continue;
        const char *addr = C->ds[done % NDS].http_addr;
        size_t len = 0;
        uint8_t *data = ec_http_get(addr, names[i], &len);
        cr_assert_not_null(data, "%s: GET %s from %s failed", when, names[i], addr);
        cluster_fill(want, sizes[i], 7, (uint64_t)i);
        cr_assert(len == sizes[i] && memcmp(data, want, len) == 0, "%s: %s differs over HTTP",
                  when, names[i]);
        free(data);
        done++;
    }
    cr_assert_gt(done, 0, "no file of block %" PRIu64, id);
    free(want);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* Reads every file of block id through one handle; returns the p99 read
 * time in microseconds. */
static int64_t read_block_p99(uint64_t id, const char *when)
{
    imgstore_t *h = cluster_client(C);
    cr_assert_not_null(h);
    uint8_t *want = malloc(MAX_SIZE);
    int64_t *us = malloc(sizeof(*us) * (size_t)nfiles);
    int n = 0;
    for (int i = 0; i < nfiles; i++) {
        if (!ec_name_in_block(names[i], id) || deleted[i])
            continue;
        void *data = NULL;
        size_t len = 0;
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        int rc = imgstore_get(h, names[i], &data, &len);
        clock_gettime(CLOCK_MONOTONIC, &b);
        cr_assert_eq(rc, 0, "%s: get %s: %s", when, names[i], imgstore_strerror(rc));
        cluster_fill(want, sizes[i], 7, (uint64_t)i);
        cr_assert(len == sizes[i] && memcmp(data, want, len) == 0, "%s: %s differs", when,
                  names[i]);
        free(data);
        us[n++] = (b.tv_sec - a.tv_sec) * 1000000 + (b.tv_nsec - a.tv_nsec) / 1000;
    }
    qsort(us, (size_t)n, sizeof(*us), cmp_i64);
    int64_t p99 = us[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1];
    fprintf(stderr, "ec: %s: %d reads of the encoded block, median %lld us, p99 %lld us\n",
            when, n, (long long)us[n / 2], (long long)p99);
    free(us);
    free(want);
    imgstore_close(h);
    return p99;
}

/* Every deleted file reads as deleted through the library (IMGSTORE_EDELETED)
 * and through the up HTTP origins (410). */
static void check_deleted(const char *when)
{
    imgstore_t *h = cluster_client(C);
    cr_assert_not_null(h);
    int n = 0;
    for (int i = 0; i < nfiles; i++) {
        if (!deleted[i])
            continue;
        void *data = NULL;
        size_t len = 0;
        int rc = imgstore_get(h, names[i], &data, &len);
        free(data);
        cr_assert_eq(rc, IMGSTORE_EDELETED, "%s: %s reads as %s, not deleted", when, names[i],
                     imgstore_strerror(rc));
        int d = n++ % C->nds;
        while (!cluster_alive(&C->ds[d]))
            d = (d + 1) % C->nds;
        cr_assert_eq(cluster_get_status(C->ds[d].http_addr, names[i]), 410, "%s: GET %s from ds%d",
                     when, names[i], d + 1);
    }
    cr_assert_gt(n, 0);
    imgstore_close(h);
}

static void read_all(const char *when)
{
    imgstore_t *h = cluster_client(C);
    cr_assert_not_null(h);
    uint8_t *want = malloc(MAX_SIZE);
    for (int i = 0; i < nfiles; i++) {
        if (deleted[i])
            continue;
        void *data = NULL;
        size_t len = 0;
        int rc = imgstore_get(h, names[i], &data, &len);
        cr_assert_eq(rc, 0, "%s: get %s: %s", when, names[i], imgstore_strerror(rc));
        cluster_fill(want, sizes[i], 7, (uint64_t)i);
        cr_assert(len == sizes[i] && memcmp(data, want, len) == 0, "%s: %s differs", when,
                  names[i]);
        free(data);
    }
    free(want);
    imgstore_close(h);
}

/* The stripe's garbage bytes and generation (ds-admin block --json). */
static uint64_t block_garbage(uint64_t id, unsigned *gen, int *due)
{
    char arg[32];
    snprintf(arg, sizeof(arg), "%" PRIu64, id);
    struct cluster_run r;
    fixture_admin_json(&r, CLI_MS, "block", arg, NULL);
    json_t *j = json_loads(r.out, 0, NULL);
    cr_assert_not_null(j, "%s", r.out);
    uint64_t g = (uint64_t)json_integer_value(json_object_get(j, "garbage_bytes"));
    *gen = (unsigned)json_integer_value(json_object_get(j, "generation"));
    *due = json_is_true(json_object_get(j, "compact_due"));
    cr_assert_not_null(json_object_get(j, "garbage_bytes"), "%s", r.out);
    json_decref(j);
    cluster_run_free(&r);
    return g;
}

Test(ec, encode_sealed_block)
{
    /* uploads until the nameserver lists a sealed (full) block */
    fixture_sizes(7, 0, NFILES_MAX, MIN_SIZE, MAX_SIZE, sizes);
    imgstore_t *h = cluster_client(C);
    cr_assert_not_null(h);
    uint64_t id = 0;
    while (!id && nfiles + BATCH <= NFILES_MAX) {
        fixture_put_range(h, 7, nfiles, BATCH, sizes, names, 3, NULL);
        nfiles += BATCH;
        id = ec_first_sealed();
    }
    imgstore_close(h);
    cr_assert_neq(id, 0, "no sealed block after %d uploads", nfiles);
    char arg[32];
    snprintf(arg, sizeof(arg), "%" PRIu64, id);

    /* off by default: refused with its reason */
    struct cluster_run r;
    cr_assert_eq(cluster_admin(C, CLI_MS, &r, "ec", "encode", arg, NULL), 1);
    cr_assert_not_null(strstr(r.err, "erasure coding is off"), "%s", r.err);
    cluster_run_free(&r);
    cr_assert_eq(cluster_admin(C, CLI_MS, &r, "ec", "encode", NULL), 2, "%s", r.err);
    cluster_run_free(&r);

    cr_assert_eq(cluster_admin(C, CLI_MS, &r, "set", "ec", "4+2", NULL), 0, "%s", r.err);
    cluster_run_free(&r);
    cr_assert_eq(cluster_admin(C, 120000, &r, "ec", "encode", arg, "--wait", NULL), 0,
                 "%s%s", r.out, r.err);
    cr_assert_not_null(strstr(r.out, "done"), "%s", r.out);
    cluster_run_free(&r);

    /* the stripe: six shards on six different servers, each file there;
     * the replicated copies gone */
    int srv[6];
    ec_wait_stripe(id, srv, "after encoding");
    int64_t end = ec_now_ms() + WAIT_MS;
    while (ec_blk_copies(id) > 0 && ec_now_ms() < end)
        usleep(100 * 1000);
    cr_assert_eq(ec_blk_copies(id), 0, "replicated copies of block %" PRIu64 " left", id);
    unsigned seen = 0;
    for (int i = 0; i < 6; i++) {
        cr_assert_geq(srv[i], 0);
        cr_assert_eq(seen & (1u << srv[i]), 0, "two shards on ds%d", srv[i] + 1);
        seen |= 1u << srv[i];
    }
    for (int d = 0; d < NDS; d++) {
        unsigned want = 0;
        for (int i = 0; i < 6; i++)
            if (srv[i] == d)
                want |= 1u << i;
        cr_assert_eq(ec_shard_files(d, id), want, "ds%d holds shards %#x, the nameserver says %#x",
                     d + 1, ec_shard_files(d, id), want);
    }
    cr_assert_eq(cluster_admin(C, CLI_MS, &r, "block", arg, NULL), 0, "%s", r.err);
    cr_assert_not_null(strstr(r.out, "erasure-coded: 4+2"), "%s", r.out);
    cluster_run_free(&r);
    fixture_admin_json(&r, CLI_MS, "block", arg, NULL);
    json_t *bj = json_loads(r.out, 0, NULL);
    cr_assert_eq(json_array_size(json_object_get(bj, "replicas")), 0, "%s", r.out);
    json_decref(bj);
    cluster_run_free(&r);

    /* raw bytes per logical byte of the stripe */
    fixture_admin_json(&r, CLI_MS, "status", NULL);
    json_t *st = json_loads(r.out, 0, NULL);
    double f = json_number_value(json_object_get(st, "ec_storage_factor"));
    cr_log_info("4+2 stripe of a %.1f MiB block: %.4f raw bytes per logical byte",
                (double)json_integer_value(json_object_get(st, "ec_logical_bytes")) / 1048576,
                f);
    fprintf(stderr, "ec: 4+2 storage factor %.4f (replication 2: 2.0)\n", f);
    cr_assert(f > 1.45 && f <= 1.52, "storage factor %.4f", f);
    cr_assert_eq(json_integer_value(json_object_get(st, "ec_stripes")), 1);
    json_decref(st);
    cluster_run_free(&r);

    /* a second encoding is refused */
    cr_assert_eq(cluster_admin(C, CLI_MS, &r, "ec", "encode", arg, NULL), 1);
    cr_assert_not_null(strstr(r.err, "already encoded"), "%s", r.err);
    cluster_run_free(&r);

    read_all("after encoding");
    http_read_block(id, "after encoding");

    /* the garbage before the deletes: the records of files deleted
     * before the encoding (none here), tombstones, padding */
    unsigned gen;
    int due;
    uint64_t g0 = block_garbage(id, &gen, &due);
    cr_assert_eq(gen, 0);
    cr_assert(!due);

    /* deletes: every 40th file of the block through the library, one over
     * HTTP; each reads as deleted from then on (checked again after every
     * restart and rebuild below: a rebuild never undoes a delete) */
    uint64_t gone = 0;
    {
        imgstore_t *h2 = cluster_client(C);
        int n = 0, via_http = -1;
        for (int i = 0; i < nfiles; i++) {
            if (!ec_name_in_block(names[i], id) || n++ % 40 != 0)
                continue;
            if (via_http < 0) {
                via_http = i;
                continue;
            }
            int rc = imgstore_unlink(h2, names[i]);
            cr_assert_eq(rc, 0, "unlink %s: %s", names[i], imgstore_strerror(rc));
            deleted[i] = 1;
            gone += sizes[i];
        }
        int again_deleted = -1;
        for (int i = 0; i < nfiles && again_deleted < 0; i++)
            if (deleted[i])
                again_deleted = i;
        int was = -1;
        cr_assert_eq(imgstore_unlink2(h2, names[again_deleted], &was), 0);
        cr_assert_eq(was, 1, "a second delete is not a new one");
        imgstore_close(h2);
        void *text = NULL;
        size_t tlen = 0;
        cr_assert_eq(cluster_read_file(C->key_writer, &text, &tlen), 0);
        char secret[128];
        cr_assert_eq(sscanf(text, "app %127s", secret), 1);
        free(text);
        char req[512];
        int rn = snprintf(req, sizeof(req),
                          "DELETE /%s HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\n"
                          "Connection: close\r\n\r\n",
                          names[via_http], secret);
        int fd = cluster_connect(C->ds[0].http_addr, 5000);
        cr_assert_geq(fd, 0);
        cr_assert_eq(cluster_send_all(fd, req, (size_t)rn), 0);
        char resp[512] = "";
        ssize_t got = read(fd, resp, sizeof(resp) - 1);
        close(fd);
        cr_assert_gt(got, 12);
        cr_assert_eq(atoi(resp + 9), 204, "%s", resp);
        deleted[via_http] = 1;
    }
    check_deleted("after the deletes");
    read_all("after the deletes");
    /* the holders report the deleted files' bytes as garbage (compaction
     * of encoded blocks is not built: the stripe stays at generation 0) */
    {
        uint64_t g = g0;
        int64_t gend = ec_now_ms() + WAIT_MS;
        while (g < g0 + gone / 2 && ec_now_ms() < gend) {
            usleep(100 * 1000);
            g = block_garbage(id, &gen, &due);
        }
        fprintf(stderr, "ec: garbage %" PRIu64 " bytes before the deletes, %" PRIu64
                " after deleting %" PRIu64 " bytes of files\n", g0, g, gone);
        cr_assert_geq(g, g0 + gone / 2, "garbage %" PRIu64 " after deleting %" PRIu64, g, gone);
        cr_assert_eq(gen, 0);
        cr_assert(!due, "a 1/40 share is below the 30%% threshold");
        struct cluster_run r2;
        cr_assert_eq(cluster_admin(C, CLI_MS, &r2, "block", arg, NULL), 0, "%s", r2.err);
        cr_assert_not_null(strstr(r2.out, "generation 0"), "%s", r2.out);
        cr_assert_not_null(strstr(r2.out, "garbage: "), "%s", r2.out);
        cluster_run_free(&r2);
    }

    /* a nameserver restart: the stripe comes back from the reports */
    cr_assert_geq(cluster_signal_proc(&C->ns, SIGTERM), 0);
    cr_assert_eq(cluster_start_ns(C), 0);
    cr_assert_eq(cluster_wait_ready(C, NDS, 30000), 0);
    int again[6];
    ec_wait_stripe(id, again, "after a nameserver restart");
    cr_assert_eq(memcmp(again, srv, sizeof(srv)), 0, "the stripe moved");

    /* a shard holder's restart: its shard is loaded and reported again */
    cr_assert_geq(cluster_signal_proc(&C->ds[srv[2]], SIGTERM), 0);
    cr_assert_eq(cluster_start_ds(C, srv[2]), 0);
    cr_assert_eq(cluster_wait_ready(C, NDS, 30000), 0);
    ec_wait_stripe(id, again, "after a shard holder's restart");
    cr_assert_eq(memcmp(again, srv, sizeof(srv)), 0, "the stripe moved");
    read_all("after the restarts");
    http_read_block(id, "after the restarts");
    check_deleted("after the restarts");

    /* two shard holders down: degraded reads */
    read_block_p99(id, "normal (warm-up)");
    int64_t normal = read_block_p99(id, "normal");
    cr_assert_geq(cluster_signal_proc(&C->ds[srv[0]], SIGKILL), 0);
    cr_assert_geq(cluster_signal_proc(&C->ds[srv[1]], SIGKILL), 0);
    int64_t degraded = read_block_p99(id, "two shard holders down");
    (void)normal;
    (void)degraded;
    int done = 0;
    uint8_t *want = malloc(MAX_SIZE);
    for (int i = 0; i < nfiles; i++) {
        if (!ec_name_in_block(names[i], id) || deleted[i])
            continue;
        int d;
        do
            d = done++ % NDS;
        while (d == srv[0] || d == srv[1]);
        size_t len = 0;
        uint8_t *data = ec_http_get(C->ds[d].http_addr, names[i], &len);
        cr_assert_not_null(data, "degraded: GET %s from ds%d failed", names[i], d + 1);
        cluster_fill(want, sizes[i], 7, (uint64_t)i);
        cr_assert(len == sizes[i] && memcmp(data, want, len) == 0,
                  "degraded: %s differs over HTTP", names[i]);
        free(data);
    }
    free(want);

    /* repair: two new servers take the two lost shards */
    cr_assert_eq(cluster_add_ds(C), 0);
    cr_assert_eq(cluster_add_ds(C), 0);
    int64_t t0 = ec_now_ms();
    int fresh[6];
    ec_wait_stripe(id, fresh, "after the repair");
    fprintf(stderr, "ec: two lost shards rebuilt in %lld ms\n", (long long)(ec_now_ms() - t0));
    for (int i = 0; i < 6; i++) {
        cr_assert(fresh[i] != srv[0] && fresh[i] != srv[1], "shard %d still on a dead server",
                  i);
        if (i >= 2)
            cr_assert_eq(fresh[i], srv[i], "shard %d moved", i);
    }
    cr_assert(fresh[0] >= NDS && fresh[1] >= NDS, "the rebuilt shards are not on the new servers");
    for (int i = 0; i < 2; i++)
        cr_assert_eq(ec_shard_files(fresh[i], id), 1u << i, "ds%d lacks shard %d", fresh[i] + 1, i);
    read_block_p99(id, "after the repair");
    check_deleted("after the repair");

    /* the killed servers come back: their stale shards go */
    for (int i = 0; i < 2; i++)
        cr_assert_eq(cluster_start_ds(C, srv[i]), 0);
    cr_assert_eq(cluster_wait_ready(C, C->nds, 30000), 0);
    end = ec_now_ms() + WAIT_MS;
    while ((ec_shard_files(srv[0], id) || ec_shard_files(srv[1], id)) && ec_now_ms() < end)
        usleep(200 * 1000);
    cr_assert_eq(ec_shard_files(srv[0], id) | ec_shard_files(srv[1], id), 0,
                 "stale shards left on the restarted servers");

    /* a flipped byte in data shard 2's payload */
    {
        char p[700];
        snprintf(p, sizeof(p), "%s/blocks/%016" PRIx64 ".s02", C->ds[fresh[2]].data, id);
        FILE *fp = fopen(p, "r+b");
        cr_assert_not_null(fp, "%s", p);
        uint8_t hdr[64], x;
        cr_assert_eq(fread(hdr, 1, 64, fp), 64);
        uint32_t hl = (uint32_t)hdr[44] | (uint32_t)hdr[45] << 8 | (uint32_t)hdr[46] << 16 |
                      (uint32_t)hdr[47] << 24;
        cr_assert_eq(fseek(fp, (long)hl + 1000, SEEK_SET), 0);
        cr_assert_eq(fread(&x, 1, 1, fp), 1);
        x ^= 0x20;
        cr_assert_eq(fseek(fp, (long)hl + 1000, SEEK_SET), 0);
        cr_assert_eq(fwrite(&x, 1, 1, fp), 1);
        cr_assert_eq(fclose(fp), 0);
    }
    read_block_p99(id, "a flipped byte in data shard 2");
    end = ec_now_ms() + WAIT_MS;
    int healed[6] = {0};
    do {
        usleep(200 * 1000);
        ec_stripe_of(id, healed);
    } while (healed[2] == fresh[2] && ec_now_ms() < end);
    cr_assert_neq(healed[2], fresh[2], "the damaged shard 2 was not rebuilt elsewhere");
    ec_wait_stripe(id, healed, "after rebuilding the damaged shard");
    cr_assert_eq(ec_shard_files(healed[2], id), 1u << 2);
    read_block_p99(id, "after rebuilding the damaged shard");
    http_read_block(id, "after rebuilding the damaged shard");
    check_deleted("after rebuilding the damaged shard");
    C->passed = 1;
}

/* The seq range of data shard `index` of block id (ds-admin block). */
static void shard_seqs(uint64_t id, int index, uint32_t *first, uint32_t *last)
{
    char arg[32];
    snprintf(arg, sizeof(arg), "%" PRIu64, id);
    struct cluster_run r;
    fixture_admin_json(&r, CLI_MS, "block", arg, NULL);
    json_t *doc = json_loads(r.out, 0, NULL);
    json_t *s = json_array_get(json_object_get(doc, "shards"), (size_t)index);
    cr_assert_not_null(s, "%s", r.out);
    *first = (uint32_t)json_integer_value(json_object_get(s, "seq_first"));
    *last = (uint32_t)json_integer_value(json_object_get(s, "seq_last"));
    cr_assert(*first > 0 && *last >= *first, "%s", r.out);
    json_decref(doc);
    cluster_run_free(&r);
}

static long journal_size(void)
{
    char p[700];
    struct stat st;
    snprintf(p, sizeof(p), "%s/deletes.journal", C->ns.data);
    return stat(p, &st) == 0 ? (long)st.st_size : -1;
}

/* Non-zero when dataserver d's log holds `what`. */
static int ds_logged(int d, const char *what)
{
    void *text = NULL;
    size_t len = 0;
    if (cluster_read_file(C->ds[d].log, &text, &len) != 0)
        return 0;
    char *t = realloc(text, len + 1);
    cr_assert_not_null(t);
    t[len] = '\0';
    int found = strstr(t, what) != NULL;
    free(t);
    return found;
}

/* DELETE /name through an HTTP origin with the writer key: the status. */
static int http_delete(const char *addr, const char *name)
{
    void *text = NULL;
    size_t tlen = 0;
    cr_assert_eq(cluster_read_file(C->key_writer, &text, &tlen), 0);
    char secret[128];
    cr_assert_eq(sscanf(text, "app %127s", secret), 1);
    free(text);
    char req[512];
    int rn = snprintf(req, sizeof(req),
                      "DELETE /%s HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\n"
                      "Connection: close\r\n\r\n",
                      name, secret);
    int fd = cluster_connect(addr, 5000);
    cr_assert_geq(fd, 0);
    cr_assert_eq(cluster_send_all(fd, req, (size_t)rn), 0);
    char resp[512] = "";
    ssize_t got = read(fd, resp, sizeof(resp) - 1);
    close(fd);
    cr_assert_gt(got, 12);
    return atoi(resp + 9);
}

/* Encodes the first sealed block 4+2 (uploads until one is sealed); fills
 * srv with its stripe. Returns the block id. */
static uint64_t encoded_block(int srv[6])
{
    fixture_sizes(7, 0, NFILES_MAX, MIN_SIZE, MAX_SIZE, sizes);
    imgstore_t *h = cluster_client(C);
    cr_assert_not_null(h);
    uint64_t id = 0;
    while (!id && nfiles + BATCH <= NFILES_MAX) {
        fixture_put_range(h, 7, nfiles, BATCH, sizes, names, 3, NULL);
        nfiles += BATCH;
        id = ec_first_sealed();
    }
    imgstore_close(h);
    cr_assert_neq(id, 0, "no sealed block after %d uploads", nfiles);
    char arg[32];
    snprintf(arg, sizeof(arg), "%" PRIu64, id);
    struct cluster_run r;
    cr_assert_eq(cluster_admin(C, CLI_MS, &r, "set", "ec", "4+2", NULL), 0, "%s", r.err);
    cluster_run_free(&r);
    cr_assert_eq(cluster_admin(C, 120000, &r, "ec", "encode", arg, "--wait", NULL), 0,
                 "%s%s", r.out, r.err);
    cluster_run_free(&r);
    ec_wait_stripe(id, srv, "after encoding");
    int64_t end = ec_now_ms() + WAIT_MS;
    while (ec_blk_copies(id) > 0 && ec_now_ms() < end)
        usleep(100 * 1000);
    cr_assert_eq(ec_blk_copies(id), 0, "replicated copies of block %" PRIu64 " left", id);
    return id;
}

/* Issue 16/20: deletes while a shard holder is down (one over HTTP, the
 * rest through the library) are acknowledged
 * (the tombstone on the five up holders and in the nameserver's journal);
 * the holder, restarted, never serves a deleted file (library, a read
 * asked of it alone, its HTTP origin, polled from its start on), gets the
 * journaled tombstones and the journal drains. Then the scrubber finds a
 * flipped byte in a parity shard that no read touches and the shard is
 * rebuilt on a seventh server. Then a shard rebuilt while deletes are
 * journaled (its holder killed): held until it has them, never serving a
 * deleted file, and the journal drains. Last, with three holders down (more than the
 * stripe can lose) a delete is refused (IMGSTORE_EUNAVAIL) and the file
 * still reads once they are back. */
Test(ec, deletes_with_a_holder_down_and_shard_scrub)
{
    int srv[6];
    uint64_t id = encoded_block(srv);
    uint32_t first, last;
    shard_seqs(id, 0, &first, &last);
    cr_assert_eq(journal_size(), 0, "nothing journaled before");

    /* 20 files of data shard 0, whose holder is killed: reads of them
     * would go to it once it is back */
    int pick[20], npick = 0;
    for (int i = 0; i < nfiles && npick < 20; i++) {
        struct fname f;
        cr_assert_eq(fname_decode(names[i], strlen(names[i]), &f, NULL, NULL), 0);
        if (f.block_id == id && f.seq >= first && f.seq <= last && f.seq % 3 == 0)
            pick[npick++] = i;
    }
    cr_assert_eq(npick, 20, "data shard 0 holds too few files");
    int victim = srv[0];
    cr_assert_geq(cluster_signal_proc(&C->ds[victim], SIGKILL), 0);
    imgstore_t *h = cluster_client(C);
    cr_assert_not_null(h);
    int64_t t0 = ec_now_ms();
    /* the first through another server's HTTP origin, the others through
     * the library */
    int other = (victim + 1) % NDS;
    cr_assert_eq(http_delete(C->ds[other].http_addr, names[pick[0]]), 204,
                 "HTTP DELETE with shard 0's holder down");
    deleted[pick[0]] = 1;
    for (int k = 1; k < npick; k++) {
        int rc = imgstore_unlink(h, names[pick[k]]);
        cr_assert_eq(rc, 0, "delete %d of 20 (%s) with shard 0's holder down: %s", k + 1,
                     names[pick[k]], imgstore_strerror(rc));
        deleted[pick[k]] = 1;
    }
    fprintf(stderr, "ec: 20 deletes with a shard holder down acknowledged in %lld ms\n",
            (long long)(ec_now_ms() - t0));
    cr_assert_eq(journal_size(), 20 * 104, "each delete journaled once (%ld bytes)",
                 journal_size());
    cr_assert_eq(cluster_metric(C->ns.http_addr,
                                "imgstore_nameserver_delete_journal_entries{kind=\"erasure_coded\"}"),
                 20);
    check_deleted("with shard 0's holder down");

    /* the holder comes back: from its start on, no read through it (or
     * through the library) returns a deleted file */
    cr_assert_eq(cluster_start_ds(C, victim), 0);
    int64_t end = ec_now_ms() + 6000;
    int polls = 0, served_410 = 0;
    while (ec_now_ms() < end) {
        for (int k = 0; k < npick; k++) {
            const char *name = names[pick[k]];
            int code = cluster_get_status(C->ds[victim].http_addr, name);
            cr_assert_neq(code, 200, "the returning holder's origin served deleted %s", name);
            served_410 += code == 410;
            void *data = NULL;
            size_t len = 0;
            int rc = imgstore_get_from(h, name, C->ds[victim].addr, &data, &len);
            free(data);
            cr_assert_neq(rc, 0, "the returning holder served deleted %s", name);
            rc = imgstore_get(h, name, &data, &len);
            free(data);
            cr_assert_eq(rc, IMGSTORE_EDELETED, "deleted %s reads as %s", name,
                         imgstore_strerror(rc));
            polls++;
        }
    }
    fprintf(stderr, "ec: %d polls of deleted files while shard 0's holder returned, %d "
                    "answered 410 by its origin\n",
            polls, served_410);
    cr_assert_gt(served_410, 0, "its origin never answered");
    imgstore_close(h);

    /* the journal drains: every shard's holder has the tombstones */
    cr_assert_eq(cluster_wait_ready(C, NDS, 30000), 0);
    end = ec_now_ms() + WAIT_MS;
    while (journal_size() != 0 && ec_now_ms() < end)
        usleep(100 * 1000);
    cr_assert_eq(journal_size(), 0, "the delete journal did not drain");
    cr_assert_eq(cluster_metric(C->ns.http_addr,
                                "imgstore_nameserver_delete_journal_entries{kind=\"erasure_coded\"}"),
                 0);
    cr_assert(ds_logged(victim, "20 journaled tombstones applied to its shards here"),
              "ds%d did not log the journaled tombstones", victim + 1);
    int again[6];
    ec_wait_stripe(id, again, "after the holder's return");
    cr_assert_eq(memcmp(again, srv, sizeof(srv)), 0, "the stripe moved");
    check_deleted("after the holder's return");
    for (int k = 0; k < npick; k++)
        cr_assert_eq(cluster_get_status(C->ds[victim].http_addr, names[pick[k]]), 410);
    read_all("after the holder's return");

    /* the scrubber: a flipped byte in parity shard 5 (no read touches it
     * while the data shards are up) is found and the shard rebuilt on a
     * seventh server */
    cr_assert_eq(cluster_add_ds(C), 0);
    cr_assert_eq(cluster_wait_ready(C, NDS + 1, 30000), 0);
    {
        char p[700];
        snprintf(p, sizeof(p), "%s/blocks/%016" PRIx64 ".s05", C->ds[srv[5]].data, id);
        FILE *fp = fopen(p, "r+b");
        cr_assert_not_null(fp, "%s", p);
        uint8_t hdr[64], x;
        cr_assert_eq(fread(hdr, 1, 64, fp), 64);
        uint32_t hl = (uint32_t)hdr[44] | (uint32_t)hdr[45] << 8 | (uint32_t)hdr[46] << 16 |
                      (uint32_t)hdr[47] << 24;
        long at = (long)hl + 65536 + 1234; /* chunk 1 */
        cr_assert_eq(fseek(fp, at, SEEK_SET), 0);
        cr_assert_eq(fread(&x, 1, 1, fp), 1);
        x ^= 0x08;
        cr_assert_eq(fseek(fp, at, SEEK_SET), 0);
        cr_assert_eq(fwrite(&x, 1, 1, fp), 1);
        cr_assert_eq(fclose(fp), 0);
    }
    struct cluster_run r;
    cr_assert_eq(cluster_admin(C, CLI_MS, &r, "set", "scrub_rate", "200", NULL), 0, "%s", r.err);
    cluster_run_free(&r);
    t0 = ec_now_ms();
    end = t0 + WAIT_MS;
    int healed[6] = {0};
    do {
        usleep(200 * 1000);
        ec_stripe_of(id, healed);
    } while (healed[5] == srv[5] && ec_now_ms() < end);
    cr_assert_neq(healed[5], srv[5], "the damaged parity shard was not rebuilt elsewhere");
    fprintf(stderr, "ec: a flipped byte in a parity shard found by the scrubber and the shard "
                    "rebuilt in %lld ms\n",
            (long long)(ec_now_ms() - t0));
    cr_assert(ds_logged(srv[5], "shard 5 chunk 1 (offset"), "ds%d: no scrub log line",
              srv[5] + 1);
    cr_assert_eq(cluster_metric(C->ds[srv[5]].http_addr, "imgstore_ds_scrub_shard_bad_total"), 1);
    cr_assert_geq(cluster_metric(C->ds[srv[5]].http_addr, "imgstore_ds_scrub_shard_chunks_total"),
                  2, "chunks 0 and 1 of shard 5 checked");
    ec_wait_stripe(id, healed, "after rebuilding the scrubbed shard");
    cr_assert_eq(healed[5], NDS, "shard 5 not on the seventh server");
    cr_assert_eq(ec_shard_files(healed[5], id), 1u << 5);
    read_all("after the scrub's repair");
    check_deleted("after the scrub's repair");

    /* a shard rebuilt while deletes are journaled: shard 1's holder killed,
     * 10 files of data shard 1 deleted at once, the shard rebuilt on the
     * server holding none (it is held until it has the journaled
     * tombstones): no origin ever serves a deleted file meanwhile, the
     * journal drains without the dead holder */
    {
        int h1 = healed[1];
        shard_seqs(id, 1, &first, &last);
        int pick1[10], n1 = 0;
        for (int i = 0; i < nfiles && n1 < 10; i++) {
            struct fname f;
            cr_assert_eq(fname_decode(names[i], strlen(names[i]), &f, NULL, NULL), 0);
            if (f.block_id == id && f.seq >= first && f.seq <= last && f.seq % 3 == 1 &&
                !deleted[i])
                pick1[n1++] = i;
        }
        cr_assert_eq(n1, 10);
        cr_assert_geq(cluster_signal_proc(&C->ds[h1], SIGKILL), 0);
        h = cluster_client(C);
        for (int k = 0; k < n1; k++) {
            int rc = imgstore_unlink(h, names[pick1[k]]);
            cr_assert_eq(rc, 0, "delete %s with shard 1's holder down: %s", names[pick1[k]],
                         imgstore_strerror(rc));
            deleted[pick1[k]] = 1;
        }
        cr_assert_gt(journal_size(), 0, "journaled");
        int now_s[6], polls1 = 0;
        end = ec_now_ms() + WAIT_MS;
        do {
            for (int k = 0; k < n1; k++) {
                const char *name = names[pick1[k]];
                for (int d = 0; d < C->nds; d++) {
                    if (d == h1)
                        continue;
                    cr_assert_neq(cluster_get_status(C->ds[d].http_addr, name), 200,
                                  "ds%d served deleted %s while shard 1 was rebuilt", d + 1,
                                  name);
                }
                void *data = NULL;
                size_t len = 0;
                int rc = imgstore_get(h, name, &data, &len);
                free(data);
                cr_assert_eq(rc, IMGSTORE_EDELETED, "%s reads as %s", name,
                             imgstore_strerror(rc));
                polls1++;
            }
        } while ((ec_stripe_of(id, now_s) < 6 || journal_size() != 0) && ec_now_ms() < end);
        imgstore_close(h);
        cr_assert_neq(now_s[1], h1, "shard 1 not rebuilt");
        cr_assert_eq(journal_size(), 0, "the journal did not drain after the rebuild");
        fprintf(stderr, "ec: shard 1 rebuilt on ds%d with 10 journaled deletes, %d polls\n",
                now_s[1] + 1, polls1);
        for (int k = 0; k < n1; k++)
            cr_assert_eq(cluster_get_status(C->ds[now_s[1]].http_addr, names[pick1[k]]), 410);
        cr_assert_eq(cluster_start_ds(C, h1), 0);
        cr_assert_eq(cluster_wait_ready(C, NDS + 1, 30000), 0);
        end = ec_now_ms() + WAIT_MS;
        while (ec_shard_files(h1, id) && ec_now_ms() < end)
            usleep(200 * 1000);
        cr_assert_eq(ec_shard_files(h1, id), 0, "the stale shard 1 stayed on ds%d", h1 + 1);
        read_all("after shard 1 was rebuilt");
        check_deleted("after shard 1 was rebuilt");
        memcpy(healed, now_s, sizeof(healed));
    }

    /* three shard holders down (the stripe can lose two): a delete is
     * refused, and nothing of it is left behind once they are back */
    int live = -1;
    for (int i = 0; i < nfiles && live < 0; i++)
        if (ec_name_in_block(names[i], id) && !deleted[i])
            live = i;
    int down[3] = {healed[0], healed[1], healed[2]};
    for (int i = 0; i < 3; i++)
        cr_assert_geq(cluster_signal_proc(&C->ds[down[i]], SIGKILL), 0);
    h = cluster_client(C);
    int rc = imgstore_unlink(h, names[live]);
    cr_assert_eq(rc, IMGSTORE_EUNAVAIL, "delete with 3 of 6 shard holders down: %s",
                 imgstore_strerror(rc));
    imgstore_close(h);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(cluster_start_ds(C, down[i]), 0);
    cr_assert_eq(cluster_wait_ready(C, NDS + 1, 30000), 0);
    ec_wait_stripe(id, again, "after three holders returned");
    read_all("after the refused delete");
    check_deleted("after the refused delete");
    C->passed = 1;
}
