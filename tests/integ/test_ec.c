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
 *     shard rebuild below, while the others read right;
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
 * Suite ec_move (seven dataservers): drains move shards (drain_moves_shards:
 * a plain copy from the draining holder, deletes during the move handed
 * over, bytes on the wire compressed and counted, ds-admin file of an
 * encoded file; then a damaged range makes the move decode the rest).
 * Suite ec_balance (six then seven dataservers of 64 MiB): the balance
 * moves shards of ten stripes onto an empty server (rebalance_moves_shards).
 * Not yet here (docs/nameserver.md, "Erasure-coded blocks"): compaction of
 * encoded blocks. */
#include "tests/integ/cluster.h"
#include "tests/integ/fixture.h"
#include "proto/fname.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define NDS 6
#define NFILES_MAX 9000 /* uploads until a block is sealed: at most this many */
#define BATCH 300
#define MIN_SIZE (10u << 10)
#define MAX_SIZE (18u << 10)
#define BLOCK_SIZE (16u << 20)
#define CLI_MS 20000
#define WAIT_MS 60000

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

/* Non-zero when file `name` lives in block id. */
static int name_in_block(const char *name, uint64_t id)
{
    struct fname f;
    cr_assert_eq(fname_decode(name, strlen(name), &f, NULL, NULL), 0, "%s", name);
    return f.block_id == id;
}

/* .blk files of block id on every dataserver. */
static int blk_copies(uint64_t id)
{
    int n = 0;
    for (int d = 0; d < NDS; d++) {
        char p[700];
        struct stat st;
        cluster_block_path(C, d, id, p, sizeof(p));
        n += stat(p, &st) == 0;
    }
    return n;
}

/* The first sealed block the nameserver lists, or 0. */
static uint64_t first_sealed(void)
{
    struct cluster_run r;
    fixture_admin_json(&r, CLI_MS, "blocks", "--state", "sealed", NULL);
    json_t *doc = json_loads(r.out, 0, NULL);
    json_t *arr = json_object_get(doc, "blocks");
    uint64_t id = json_array_size(arr) ? (uint64_t)json_integer_value(json_object_get(
                                             json_array_get(arr, 0), "block_id"))
                                       : 0;
    json_decref(doc);
    cluster_run_free(&r);
    return id;
}

/* ds-admin --json block ID: fills srv[i] with the dataserver index of shard
 * i (-1 when none) and returns how many shards are held by up servers. */
static int stripe_of(uint64_t id, int srv[6])
{
    char arg[32];
    snprintf(arg, sizeof(arg), "%" PRIu64, id);
    struct cluster_run r;
    fixture_admin_json(&r, CLI_MS, "block", arg, NULL);
    json_t *doc = json_loads(r.out, 0, NULL);
    cr_assert_not_null(doc, "%s", r.out);
    int up = 0;
    for (int i = 0; i < 6; i++)
        srv[i] = -1;
    json_t *ec = json_object_get(doc, "ec");
    if (ec) {
        cr_assert_str_eq(json_string_value(ec), "4+2", "%s", r.out);
        json_t *sh = json_object_get(doc, "shards");
        cr_assert_eq(json_array_size(sh), 6, "%s", r.out);
        for (size_t i = 0; i < 6; i++) {
            json_t *s = json_array_get(sh, i);
            cr_assert_eq(json_integer_value(json_object_get(s, "index")), (json_int_t)i);
            const char *addr = json_string_value(json_object_get(s, "address"));
            srv[i] = addr && *addr ? cluster_ds_index(C, addr) : -1;
            up += json_is_true(json_object_get(s, "up")) && srv[i] >= 0;
        }
    }
    json_decref(doc);
    cluster_run_free(&r);
    return up;
}

/* The shard files of block id in dataserver d's folder: a bit mask of
 * their indices. */
static unsigned shard_files(int d, uint64_t id)
{
    char dir[600], want[32];
    snprintf(dir, sizeof(dir), "%s/blocks", C->ds[d].data);
    snprintf(want, sizeof(want), "%016" PRIx64 ".s", id);
    unsigned mask = 0;
    DIR *dh = opendir(dir);
    cr_assert_not_null(dh);
    for (struct dirent *e; (e = readdir(dh));)
        if (strncmp(e->d_name, want, strlen(want)) == 0 && strlen(e->d_name) == 20)
            mask |= 1u << atoi(e->d_name + 18);
    closedir(dh);
    return mask;
}

/* GET /name from an HTTP origin: the body (malloc'd) and its length from
 * Content-Length, or NULL when the answer is not a 200. */
static uint8_t *http_get(const char *addr, const char *name, size_t *len)
{
    int fd = cluster_connect(addr, 5000);
    cr_assert_geq(fd, 0);
    char req[512];
    int n = snprintf(req, sizeof(req), "GET /%s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                     name);
    cr_assert_eq(cluster_send_all(fd, req, (size_t)n), 0);
    size_t got = 0, cap = MAX_SIZE + 4096;
    uint8_t *buf = malloc(cap + 1);
    for (ssize_t r; got < cap && (r = read(fd, buf + got, cap - got)) > 0;)
        got += (size_t)r;
    close(fd);
    buf[got] = '\0';
    int code = 0;
    const char *cl = strcasestr((char *)buf, "\r\nContent-Length: ");
    uint8_t *body = (uint8_t *)strstr((char *)buf, "\r\n\r\n");
    if (sscanf((char *)buf, "HTTP/1.1 %d", &code) != 1 || code != 200 || !cl || !body) {
        free(buf);
        return NULL;
    }
    *len = (size_t)strtoull(cl + 18, NULL, 10);
    body += 4;
    cr_assert_eq((size_t)(buf + got - body), *len, "GET /%s: short body", name);
    uint8_t *out = malloc(*len ? *len : 1);
    memcpy(out, body, *len);
    free(buf);
    return out;
}

/* Every file of block id read through every dataserver's HTTP origin (the
 * origins spread round-robin over the files). */
static void http_read_block(uint64_t id, const char *when)
{
    uint8_t *want = malloc(MAX_SIZE);
    int done = 0;
    for (int i = 0; i < nfiles; i++) {
        if (!name_in_block(names[i], id) || deleted[i])
            continue;
        const char *addr = C->ds[done % NDS].http_addr;
        size_t len = 0;
        uint8_t *data = http_get(addr, names[i], &len);
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
        if (!name_in_block(names[i], id) || deleted[i])
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

static int64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Waits until block id's stripe has 6 shards on up servers. */
static void wait_stripe(uint64_t id, int srv[6], const char *when)
{
    int64_t end = now_ms() + WAIT_MS;
    int up;
    while ((up = stripe_of(id, srv)) < 6 && now_ms() < end)
        usleep(200 * 1000);
    cr_assert_eq(up, 6, "%s: %d shards of block %" PRIu64 " on up servers", when, up, id);
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
        id = first_sealed();
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
    wait_stripe(id, srv, "after encoding");
    int64_t end = now_ms() + WAIT_MS;
    while (blk_copies(id) > 0 && now_ms() < end)
        usleep(100 * 1000);
    cr_assert_eq(blk_copies(id), 0, "replicated copies of block %" PRIu64 " left", id);
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
        cr_assert_eq(shard_files(d, id), want, "ds%d holds shards %#x, the nameserver says %#x",
                     d + 1, shard_files(d, id), want);
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

    /* deletes: every 40th file of the block through the library, one over
     * HTTP; each reads as deleted from then on (checked again after every
     * restart and rebuild below: a rebuild never undoes a delete) */
    {
        imgstore_t *h2 = cluster_client(C);
        int n = 0, via_http = -1;
        for (int i = 0; i < nfiles; i++) {
            if (!name_in_block(names[i], id) || n++ % 40 != 0)
                continue;
            if (via_http < 0) {
                via_http = i;
                continue;
            }
            int rc = imgstore_unlink(h2, names[i]);
            cr_assert_eq(rc, 0, "unlink %s: %s", names[i], imgstore_strerror(rc));
            deleted[i] = 1;
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

    /* a nameserver restart: the stripe comes back from the reports */
    cr_assert_geq(cluster_signal_proc(&C->ns, SIGTERM), 0);
    cr_assert_eq(cluster_start_ns(C), 0);
    cr_assert_eq(cluster_wait_ready(C, NDS, 30000), 0);
    int again[6];
    wait_stripe(id, again, "after a nameserver restart");
    cr_assert_eq(memcmp(again, srv, sizeof(srv)), 0, "the stripe moved");

    /* a shard holder's restart: its shard is loaded and reported again */
    cr_assert_geq(cluster_signal_proc(&C->ds[srv[2]], SIGTERM), 0);
    cr_assert_eq(cluster_start_ds(C, srv[2]), 0);
    cr_assert_eq(cluster_wait_ready(C, NDS, 30000), 0);
    wait_stripe(id, again, "after a shard holder's restart");
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
        if (!name_in_block(names[i], id) || deleted[i])
            continue;
        int d;
        do
            d = done++ % NDS;
        while (d == srv[0] || d == srv[1]);
        size_t len = 0;
        uint8_t *data = http_get(C->ds[d].http_addr, names[i], &len);
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
    int64_t t0 = now_ms();
    int fresh[6];
    wait_stripe(id, fresh, "after the repair");
    fprintf(stderr, "ec: two lost shards rebuilt in %lld ms\n", (long long)(now_ms() - t0));
    for (int i = 0; i < 6; i++) {
        cr_assert(fresh[i] != srv[0] && fresh[i] != srv[1], "shard %d still on a dead server",
                  i);
        if (i >= 2)
            cr_assert_eq(fresh[i], srv[i], "shard %d moved", i);
    }
    cr_assert(fresh[0] >= NDS && fresh[1] >= NDS, "the rebuilt shards are not on the new servers");
    for (int i = 0; i < 2; i++)
        cr_assert_eq(shard_files(fresh[i], id), 1u << i, "ds%d lacks shard %d", fresh[i] + 1, i);
    read_block_p99(id, "after the repair");
    check_deleted("after the repair");

    /* the killed servers come back: their stale shards go */
    for (int i = 0; i < 2; i++)
        cr_assert_eq(cluster_start_ds(C, srv[i]), 0);
    cr_assert_eq(cluster_wait_ready(C, C->nds, 30000), 0);
    end = now_ms() + WAIT_MS;
    while ((shard_files(srv[0], id) || shard_files(srv[1], id)) && now_ms() < end)
        usleep(200 * 1000);
    cr_assert_eq(shard_files(srv[0], id) | shard_files(srv[1], id), 0,
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
    end = now_ms() + WAIT_MS;
    int healed[6] = {0};
    do {
        usleep(200 * 1000);
        stripe_of(id, healed);
    } while (healed[2] == fresh[2] && now_ms() < end);
    cr_assert_neq(healed[2], fresh[2], "the damaged shard 2 was not rebuilt elsewhere");
    wait_stripe(id, healed, "after rebuilding the damaged shard");
    cr_assert_eq(shard_files(healed[2], id), 1u << 2);
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
        id = first_sealed();
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
    wait_stripe(id, srv, "after encoding");
    int64_t end = now_ms() + WAIT_MS;
    while (blk_copies(id) > 0 && now_ms() < end)
        usleep(100 * 1000);
    cr_assert_eq(blk_copies(id), 0, "replicated copies of block %" PRIu64 " left", id);
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
    int64_t t0 = now_ms();
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
            (long long)(now_ms() - t0));
    cr_assert_eq(journal_size(), 20 * 104, "each delete journaled once (%ld bytes)",
                 journal_size());
    cr_assert_eq(cluster_metric(C->ns.http_addr,
                                "imgstore_nameserver_delete_journal_entries{kind=\"erasure_coded\"}"),
                 20);
    check_deleted("with shard 0's holder down");

    /* the holder comes back: from its start on, no read through it (or
     * through the library) returns a deleted file */
    cr_assert_eq(cluster_start_ds(C, victim), 0);
    int64_t end = now_ms() + 6000;
    int polls = 0, served_410 = 0;
    while (now_ms() < end) {
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
    end = now_ms() + WAIT_MS;
    while (journal_size() != 0 && now_ms() < end)
        usleep(100 * 1000);
    cr_assert_eq(journal_size(), 0, "the delete journal did not drain");
    cr_assert_eq(cluster_metric(C->ns.http_addr,
                                "imgstore_nameserver_delete_journal_entries{kind=\"erasure_coded\"}"),
                 0);
    cr_assert(ds_logged(victim, "20 journaled tombstones applied to its shards here"),
              "ds%d did not log the journaled tombstones", victim + 1);
    int again[6];
    wait_stripe(id, again, "after the holder's return");
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
    t0 = now_ms();
    end = t0 + WAIT_MS;
    int healed[6] = {0};
    do {
        usleep(200 * 1000);
        stripe_of(id, healed);
    } while (healed[5] == srv[5] && now_ms() < end);
    cr_assert_neq(healed[5], srv[5], "the damaged parity shard was not rebuilt elsewhere");
    fprintf(stderr, "ec: a flipped byte in a parity shard found by the scrubber and the shard "
                    "rebuilt in %lld ms\n",
            (long long)(now_ms() - t0));
    cr_assert(ds_logged(srv[5], "shard 5 chunk 1 (offset"), "ds%d: no scrub log line",
              srv[5] + 1);
    cr_assert_eq(cluster_metric(C->ds[srv[5]].http_addr, "imgstore_ds_scrub_shard_bad_total"), 1);
    cr_assert_geq(cluster_metric(C->ds[srv[5]].http_addr, "imgstore_ds_scrub_shard_chunks_total"),
                  2, "chunks 0 and 1 of shard 5 checked");
    wait_stripe(id, healed, "after rebuilding the scrubbed shard");
    cr_assert_eq(healed[5], NDS, "shard 5 not on the seventh server");
    cr_assert_eq(shard_files(healed[5], id), 1u << 5);
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
        end = now_ms() + WAIT_MS;
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
        } while ((stripe_of(id, now_s) < 6 || journal_size() != 0) && now_ms() < end);
        imgstore_close(h);
        cr_assert_neq(now_s[1], h1, "shard 1 not rebuilt");
        cr_assert_eq(journal_size(), 0, "the journal did not drain after the rebuild");
        fprintf(stderr, "ec: shard 1 rebuilt on ds%d with 10 journaled deletes, %d polls\n",
                now_s[1] + 1, polls1);
        for (int k = 0; k < n1; k++)
            cr_assert_eq(cluster_get_status(C->ds[now_s[1]].http_addr, names[pick1[k]]), 410);
        cr_assert_eq(cluster_start_ds(C, h1), 0);
        cr_assert_eq(cluster_wait_ready(C, NDS + 1, 30000), 0);
        end = now_ms() + WAIT_MS;
        while (shard_files(h1, id) && now_ms() < end)
            usleep(200 * 1000);
        cr_assert_eq(shard_files(h1, id), 0, "the stale shard 1 stayed on ds%d", h1 + 1);
        read_all("after shard 1 was rebuilt");
        check_deleted("after shard 1 was rebuilt");
        memcpy(healed, now_s, sizeof(healed));
    }

    /* three shard holders down (the stripe can lose two): a delete is
     * refused, and nothing of it is left behind once they are back */
    int live = -1;
    for (int i = 0; i < nfiles && live < 0; i++)
        if (name_in_block(names[i], id) && !deleted[i])
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
    wait_stripe(id, again, "after three holders returned");
    read_all("after the refused delete");
    check_deleted("after the refused delete");
    C->passed = 1;
}

/* ---- drains move shards -------------------------------------------------------------- */

#define MOVE_NDS 7

static void setup_move(void)
{
    fixture_start(&(struct cluster_opts){.ndataservers = MOVE_NDS, .replicas = 2,
                                         .block_size = BLOCK_SIZE});
}

TestSuite(ec_move, .init = setup_move, .fini = fixture_stop, .timeout = 240);

/* File i of the drain test: its first half random, the rest one repeated
 * byte (stored as it is under image/png, so its shard ranges compress on
 * the wire). */
static void move_fill(uint8_t *buf, uint32_t len, int i)
{
    cluster_fill(buf, len / 2, 11, (uint64_t)i);
    memset(buf + len / 2, 'a' + i % 26, len - len / 2);
}

/* Deletes of files of one data shard while a drain moves it (a thread). */
struct deleter {
    char (*nm)[IMGSTORE_NAME_MAX];
    int n;
    uint64_t block;               /* the encoded block */
    uint32_t seq_first, seq_last; /* the moved data shard's files */
    int *del;                     /* set for every file deleted */
    volatile int stop;
    int done, failed;
};

static void *deleter_main(void *arg)
{
    struct deleter *d = arg;
    imgstore_t *h = cluster_client(C);
    if (!h) {
        d->failed++;
        return NULL;
    }
    for (int i = 0, k = 0; i < d->n && !d->stop; i++) {
        struct fname f;
        if (fname_decode(d->nm[i], strlen(d->nm[i]), &f, NULL, NULL) != 0 ||
            f.block_id != d->block || f.seq < d->seq_first || f.seq > d->seq_last ||
            k++ % 3 != 0)
            continue;
        int rc = -1;
        for (int a = 0; a < 100 && rc != 0; a++) { /* refused while a holder hands over */
            rc = imgstore_unlink(h, d->nm[i]);
            if (rc != 0)
                usleep(50 * 1000);
        }
        if (rc == 0) {
            d->del[i] = 1;
            d->done++;
        } else {
            d->failed++;
        }
    }
    imgstore_close(h);
    return NULL;
}

/* The sum over every dataserver of imgstore_ds_copy_{sent,received}_bytes_total. */
static double copy_total(int sent, const char *form)
{
    char m[96];
    snprintf(m, sizeof(m), "imgstore_ds_copy_%s_bytes_total{form=\"%s\"}",
             sent ? "sent" : "received", form);
    double v = 0;
    for (int i = 0; i < C->nds; i++) {
        double x = cluster_metric(C->ds[i].http_addr, m);
        cr_assert_geq(x, 0, "ds%d has no %s", i + 1, m);
        v += x;
    }
    return v;
}

/* Every file of the drain test read through the library and through the
 * HTTP origins of every dataserver (round-robin), byte-identical. */
static void move_read_all(int n, const uint32_t *len, char (*nm)[IMGSTORE_NAME_MAX],
                          const int *del, const char *when)
{
    imgstore_t *h = cluster_client(C);
    cr_assert_not_null(h);
    uint8_t *want = malloc(MAX_SIZE);
    for (int i = 0; i < n; i++) {
        move_fill(want, len[i], i);
        void *data = NULL;
        size_t got = 0;
        int rc = imgstore_get(h, nm[i], &data, &got);
        if (del[i]) { /* deleted: so read from the library and every origin */
            free(data);
            struct fname f;
            fname_decode(nm[i], strlen(nm[i]), &f, NULL, NULL);
            cr_assert_eq(rc, IMGSTORE_EDELETED, "%s: deleted %s (block %" PRIu64 " seq %u) reads "
                         "as %s", when, nm[i], f.block_id, f.seq, imgstore_strerror(rc));
            for (int d = 0; d < C->nds; d++)
                cr_assert_eq(cluster_get_status(C->ds[d].http_addr, nm[i]), 410,
                             "%s: deleted %s from ds%d", when, nm[i], d + 1);
            continue;
        }
        cr_assert_eq(rc, 0, "%s: get %s: %s", when, nm[i], imgstore_strerror(rc));
        cr_assert(got == len[i] && memcmp(data, want, got) == 0, "%s: %s differs", when, nm[i]);
        free(data);
        uint8_t *body = http_get(C->ds[i % C->nds].http_addr, nm[i], &got);
        cr_assert_not_null(body, "%s: GET %s from ds%d", when, nm[i], i % C->nds + 1);
        cr_assert(got == len[i] && memcmp(body, want, got) == 0, "%s: %s differs over HTTP",
                  when, nm[i]);
        free(body);
    }
    free(want);
    imgstore_close(h);
}

static double storage_factor(void)
{
    struct cluster_run r;
    fixture_admin_json(&r, CLI_MS, "status", NULL);
    json_t *st = json_loads(r.out, 0, NULL);
    cr_assert_not_null(st, "%s", r.out);
    double f = json_number_value(json_object_get(st, "ec_storage_factor"));
    json_decref(st);
    cluster_run_free(&r);
    return f;
}

/* The server id of dataserver d (ds-admin --json servers). */
static void server_id(int d, char *id, size_t n)
{
    struct cluster_run r;
    cr_assert_eq(cluster_admin(C, CLI_MS, &r, "--json", "servers", NULL), 0, "%s", r.err);
    json_t *doc = json_loads(r.out, 0, NULL);
    json_t *arr = json_is_array(doc) ? doc : json_object_get(doc, "servers");
    id[0] = '\0';
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *s = json_array_get(arr, i);
        const char *a = json_string_value(json_object_get(s, "address"));
        if (a && strcmp(a, C->ds[d].addr) == 0)
            snprintf(id, n, "%s", json_string_value(json_object_get(s, "id")));
    }
    cr_assert(id[0], "no id for ds%d in %s", d + 1, r.out);
    json_decref(doc);
    cluster_run_free(&r);
}

/* ds-admin drain SERVER --wait of a server holding a data shard: the shard
 * is copied to the one server holding none of the stripe, the stripe record
 * names it, the drained server keeps no shard file, every file reads
 * byte-identical (library, HTTP), the raw/logical factor is unchanged, and
 * the move's bytes are counted on the wire (compressed: the files' second
 * halves are one repeated byte). Files of the moved data shard are deleted
 * all through the drain (a thread): every one reads as deleted afterwards
 * from the library and every HTTP origin (a delete that reached the old
 * copy during the move is handed to the new holder, never lost). Then the
 * fallback: a second drain of a holder whose shard has a flipped byte in
 * its middle copies up to the damaged range and decodes the rest, at the
 * copy rate (2 MB/s: the 4 MiB shard takes at least 1.5 s). */
Test(ec_move, drain_moves_shards)
{
    static uint32_t len[NFILES_MAX];
    static char nm[NFILES_MAX][IMGSTORE_NAME_MAX];
    int n = 0;
    fixture_sizes(11, 0, NFILES_MAX, MIN_SIZE, MAX_SIZE, len);
    imgstore_t *h = cluster_client(C);
    cr_assert_not_null(h);
    uint8_t *buf = malloc(MAX_SIZE);
    uint64_t id = 0;
    while (!id && n + BATCH <= NFILES_MAX) {
        for (int i = n; i < n + BATCH; i++) {
            move_fill(buf, len[i], i);
            int rc = imgstore_put(h, buf, len[i], "image/png", nm[i]);
            cr_assert_eq(rc, 0, "upload %d: %s", i, imgstore_strerror(rc));
        }
        n += BATCH;
        id = first_sealed();
    }
    free(buf);
    imgstore_close(h);
    cr_assert_neq(id, 0, "no sealed block after %d uploads", n);
    char arg[32];
    snprintf(arg, sizeof(arg), "%" PRIu64, id);
    struct cluster_run r;
    cr_assert_eq(cluster_admin(C, CLI_MS, &r, "set", "ec", "4+2", NULL), 0, "%s", r.err);
    cluster_run_free(&r);
    cr_assert_eq(cluster_admin(C, 120000, &r, "ec", "encode", arg, "--wait", NULL), 0, "%s%s",
                 r.out, r.err);
    cluster_run_free(&r);
    int srv[6];
    wait_stripe(id, srv, "after encoding");
    int spare = -1;
    for (int d = 0; d < C->nds; d++) {
        int holds = 0;
        for (int i = 0; i < 6; i++)
            holds |= srv[i] == d;
        if (!holds)
            spare = d;
    }
    cr_assert_geq(spare, 0);
    double f0 = storage_factor();
    cr_assert(f0 > 1.45 && f0 <= 1.52, "storage factor %.4f", f0);

    /* ds-admin file of an encoded block: its shards, the file's data shard */
    int one = 0;
    while (one < n && !name_in_block(nm[one], id))
        one++;
    cr_assert_lt(one, n);
    cr_assert_eq(cluster_admin(C, CLI_MS, &r, "file", nm[one], NULL), 0, "%s%s", r.out, r.err);
    cr_assert_not_null(strstr(r.out, "erasure-coded 4+2"), "%s", r.out);
    cr_assert_not_null(strstr(r.out, "s05 parity"), "%s", r.out);
    cr_assert_not_null(strstr(r.out, "in data shard: s0"), "%s", r.out);
    cluster_run_free(&r);
    fixture_admin_json(&r, CLI_MS, "file", nm[one], NULL);
    json_t *fj = json_loads(r.out, 0, NULL);
    cr_assert_not_null(fj, "%s", r.out);
    cr_assert_eq(json_array_size(json_object_get(fj, "shards")), 6, "%s", r.out);
    cr_assert_str_eq(json_string_value(json_object_get(fj, "answer")), "has it", "%s", r.out);
    json_decref(fj);
    cluster_run_free(&r);

    /* drain the holder of data shard 0 */
    int victim = srv[0];
    char vid[128];
    server_id(victim, vid, sizeof(vid));
    double sw0 = copy_total(1, "wire"), sr0 = copy_total(1, "raw");
    double rw0 = copy_total(0, "wire"), rr0 = copy_total(0, "raw");
    static int del[NFILES_MAX];
    struct deleter dl = {.nm = nm, .n = n, .del = del, .block = id};
    {
        fixture_admin_json(&r, CLI_MS, "block", arg, NULL);
        json_t *bj = json_loads(r.out, 0, NULL);
        json_t *s0 = json_array_get(json_object_get(bj, "shards"), 0);
        dl.seq_first = (uint32_t)json_integer_value(json_object_get(s0, "seq_first"));
        dl.seq_last = (uint32_t)json_integer_value(json_object_get(s0, "seq_last"));
        cr_assert(dl.seq_first > 0 && dl.seq_last >= dl.seq_first, "%s", r.out);
        json_decref(bj);
        cluster_run_free(&r);
    }
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, deleter_main, &dl), 0);
    int drc = cluster_admin(C, 120000, &r, "drain", vid, "--wait", NULL);
    dl.stop = 1;
    pthread_join(th, NULL);
    cr_assert_eq(drc, 0, "drain: %s%s", r.out, r.err);
    cr_assert_not_null(strstr(r.out, "no shard"), "%s", r.out);
    cluster_run_free(&r);
    fprintf(stderr, "ec: %d files of the moved shard deleted during the drain (%d failed)\n",
            dl.done, dl.failed);
    cr_assert_gt(dl.done, 0);
    cr_assert_eq(dl.failed, 0);

    /* nothing left on it; the stripe whole, shard 0 on the spare server */
    cr_assert_eq(shard_files(victim, id), 0, "ds%d still holds shards %#x", victim + 1,
                 shard_files(victim, id));
    int now[6];
    wait_stripe(id, now, "after the drain");
    cr_assert_eq(now[0], spare, "shard 0 went to ds%d, not the spare ds%d", now[0] + 1,
                 spare + 1);
    for (int i = 1; i < 6; i++)
        cr_assert_eq(now[i], srv[i], "shard %d moved", i);
    for (int d = 0; d < C->nds; d++) {
        unsigned want = 0;
        for (int i = 0; i < 6; i++)
            if (now[i] == d)
                want |= 1u << i;
        cr_assert_eq(shard_files(d, id), want, "ds%d holds shards %#x, the nameserver says %#x",
                     d + 1, shard_files(d, id), want);
    }
    double f1 = storage_factor();
    fprintf(stderr, "ec: storage factor %.4f before the drain, %.4f after\n", f0, f1);
    cr_assert(f1 > f0 - 0.001 && f1 < f0 + 0.001, "factor %.4f before, %.4f after", f0, f1);

    /* the move in the task list */
    fixture_admin_json(&r, CLI_MS, "tasks", NULL);
    cr_assert_not_null(strstr(r.out, "\"ec-move\""), "%s", r.out);
    cluster_run_free(&r);

    /* its bytes on the wire: counted by the sender and the receiver alike */
    double sw = 0, sr = 0, rw = 0, rr = 0;
    for (int t = 0; t < 50; t++) {
        sw = copy_total(1, "wire") - sw0;
        sr = copy_total(1, "raw") - sr0;
        rw = copy_total(0, "wire") - rw0;
        rr = copy_total(0, "raw") - rr0;
        if (sw == rw && sr == rr)
            break;
        usleep(100 * 1000);
    }
    fprintf(stderr, "ec: shard move: %.0f bytes on the wire for %.0f shard bytes (%.1f %%)\n",
            rw, rr, rr > 0 ? 100 * rw / rr : 0);
    cr_assert(sw == rw && sr == rr, "sent %.0f/%.0f, received %.0f/%.0f", sw, sr, rw, rr);
    cr_assert_geq(rr, (double)(BLOCK_SIZE / 4) * 0.9, "the shard's payload was counted");
    cr_assert_lt(rw, rr * 0.9, "the shard's ranges went compressed");

    /* the old copy handed its deletions to the new holder before going */
    {
        void *text = NULL;
        size_t tl = 0;
        cr_assert_eq(cluster_read_file(C->ds[victim].log, &text, &tl), 0);
        cr_assert_not_null(strstr(text, "deletions handed over); the copy here is removed"),
                           "no hand-over in ds%d's log", victim + 1);
        free(text);
    }
    /* the target copied the shard (no decoding) and says what crossed the wire */
    {
        void *text = NULL;
        size_t tl = 0;
        cr_assert_eq(cluster_read_file(C->ds[spare].log, &text, &tl), 0);
        const char *at = strstr(text, "moved here from");
        cr_assert_not_null(at, "no move in ds%d's log", spare + 1);
        unsigned long long copied = 0, decoded = 1, wire = 0, raw = 0;
        const char *p = strstr(at, "; ");
        cr_assert(p && sscanf(p, "; %llu payload bytes copied, %llu decoded; wire %llu raw %llu",
                              &copied, &decoded, &wire, &raw) == 4, "%.200s", at);
        fprintf(stderr, "ec: the moved shard: %llu payload bytes copied, %llu decoded, %llu "
                        "bytes on the wire for %llu\n", copied, decoded, wire, raw);
        cr_assert_eq(decoded, 0, "the move decoded %llu bytes", decoded);
        cr_assert_geq(copied, (unsigned long long)(BLOCK_SIZE / 4) * 9 / 10);
        cr_assert_lt(wire, raw * 9 / 10, "the shard's ranges went compressed");
        free(text);
    }

    move_read_all(n, len, nm, del, "after the drain");

    /* the fallback: the drained server takes part again, and the holder of
     * data shard 1 is drained with a flipped byte in the middle of its
     * payload: the copy stops at the damaged range (its chunk CRC), the rest
     * is decoded from the other shards, and every file still reads right */
    cr_assert_eq(cluster_admin(C, CLI_MS, &r, "drain", vid, "--cancel", NULL), 0, "%s", r.err);
    cluster_run_free(&r);
    int victim2 = now[1];
    {
        char p[700];
        snprintf(p, sizeof(p), "%s/blocks/%016" PRIx64 ".s01", C->ds[victim2].data, id);
        FILE *fp = fopen(p, "r+b");
        cr_assert_not_null(fp, "%s", p);
        uint8_t hdr[64], x;
        cr_assert_eq(fread(hdr, 1, 64, fp), 64);
        uint32_t hl = (uint32_t)hdr[44] | (uint32_t)hdr[45] << 8 | (uint32_t)hdr[46] << 16 |
                      (uint32_t)hdr[47] << 24;
        long at = (long)hl + (2l << 20) + 12345;
        cr_assert_eq(fseek(fp, at, SEEK_SET), 0);
        cr_assert_eq(fread(&x, 1, 1, fp), 1);
        x ^= 0x01;
        cr_assert_eq(fseek(fp, at, SEEK_SET), 0);
        cr_assert_eq(fwrite(&x, 1, 1, fp), 1);
        cr_assert_eq(fclose(fp), 0);
    }
    char vid2[128];
    server_id(victim2, vid2, sizeof(vid2));
    /* a move goes at the copy rate, as block copies do */
    cr_assert_eq(cluster_admin(C, CLI_MS, &r, "set", "copy_rate", "2", NULL), 0, "%s", r.err);
    cluster_run_free(&r);
    cr_assert_eq(cluster_admin(C, 120000, &r, "drain", vid2, "--wait", NULL), 0, "drain: %s%s",
                 r.out, r.err);
    cluster_run_free(&r);
    cr_assert_eq(shard_files(victim2, id), 0, "ds%d still holds shards", victim2 + 1);
    int again[6];
    wait_stripe(id, again, "after the second drain");
    cr_assert_eq(again[1], victim, "shard 1 went to ds%d, not ds%d", again[1] + 1, victim + 1);
    {
        void *text = NULL;
        size_t tl = 0;
        cr_assert_eq(cluster_read_file(C->ds[victim].log, &text, &tl), 0);
        const char *at = strstr(text, "shard 1 of block");
        at = at ? strstr(at, "moved here from") : NULL;
        cr_assert_not_null(at, "no move of shard 1 in ds%d's log", victim + 1);
        unsigned long long copied = 0, decoded = 0, ms = 0;
        const char *p = strstr(at, "; ");
        cr_assert(p && sscanf(p, "; %llu payload bytes copied, %llu decoded", &copied,
                              &decoded) == 2, "%.200s", at);
        const char *in = strstr(p, ") in ");
        cr_assert(in && sscanf(in, ") in %llu ms", &ms) == 1, "%.200s", at);
        fprintf(stderr, "ec: shard 1 with a damaged range moved in %llu ms at 2 MB/s: %llu "
                        "payload bytes copied, %llu decoded\n", ms, copied, decoded);
        cr_assert_geq(ms, 1500, "4 MiB moved in %llu ms at a copy rate of 2 MB/s", ms);
        cr_assert(copied >= (1ull << 20) && copied <= (3ull << 20), "copied %llu", copied);
        cr_assert_gt(decoded, 0);
        free(text);
    }
    move_read_all(n, len, nm, del, "after the second drain");
    C->passed = 1;
}

/* ---- the balance moves shards ----------------------------------------------------------- */

#define BAL_BLOCK (4u << 20)
#define BAL_FILES 4000

static const char *const bal_ds_args[] = {"--capacity", "64M", NULL};

static void setup_balance(void)
{
    fixture_start(&(struct cluster_opts){.ndataservers = 6, .replicas = 2,
                                         .block_size = BAL_BLOCK, .ds_args = bal_ds_args});
}

TestSuite(ec_balance, .init = setup_balance, .fini = fixture_stop, .timeout = 240);

/* The ids of the sealed blocks (at most max), sorted by the nameserver. */
static int sealed_ids(uint64_t *ids, int max)
{
    struct cluster_run r;
    fixture_admin_json(&r, CLI_MS, "blocks", "--state", "sealed", NULL);
    json_t *doc = json_loads(r.out, 0, NULL);
    json_t *arr = json_object_get(doc, "blocks");
    int n = 0;
    for (size_t i = 0; i < json_array_size(arr) && n < max; i++)
        ids[n++] = (uint64_t)json_integer_value(json_object_get(json_array_get(arr, i),
                                                                 "block_id"));
    json_decref(doc);
    cluster_run_free(&r);
    return n;
}

/* Ten 4 MiB blocks encoded 4+2 on six servers of 64 MiB each, then an empty
 * seventh server: `ds-admin rebalance --wait` evens the use by moving
 * shards onto it (ec-move tasks, reason rebalance), never two shards of a
 * stripe on one server; every stripe stays whole and every file reads
 * byte-identical. */
Test(ec_balance, rebalance_moves_shards)
{
    static uint32_t len[BAL_FILES];
    static char nm[BAL_FILES][IMGSTORE_NAME_MAX];
    fixture_sizes(13, 0, BAL_FILES, MIN_SIZE, MAX_SIZE, len);
    imgstore_t *h = cluster_client(C);
    cr_assert_not_null(h);
    uint64_t ids[64];
    int n = 0, nb = 0;
    while ((nb = sealed_ids(ids, 64)) < 10 && n + BATCH <= BAL_FILES) {
        fixture_put_range(h, 13, n, BATCH, len, nm, 3, NULL);
        n += BATCH;
    }
    imgstore_close(h);
    cr_assert_geq(nb, 10, "%d sealed blocks after %d uploads", nb, n);
    struct cluster_run r;
    cr_assert_eq(cluster_admin(C, CLI_MS, &r, "set", "ec", "4+2", NULL), 0, "%s", r.err);
    cluster_run_free(&r);
    cr_assert_eq(cluster_admin(C, 180000, &r, "ec", "encode", "--all-sealed", "--wait", NULL), 0,
                 "%s%s", r.out, r.err);
    cluster_run_free(&r);
    int srv[6];
    for (int b = 0; b < nb; b++)
        wait_stripe(ids[b], srv, "after encoding");
    int64_t end = now_ms() + WAIT_MS;
    for (int b = 0; b < nb; b++)
        while (blk_copies(ids[b]) > 0 && now_ms() < end)
            usleep(100 * 1000);

    /* an empty seventh server: shards come to it */
    cr_assert_eq(cluster_add_ds(C), 0);
    cr_assert_eq(cluster_wait_ready(C, C->nds, 30000), 0);
    int fresh = C->nds - 1;
    cr_assert_eq(cluster_admin(C, CLI_MS, &r, "set", "rebalance_band", "3", NULL), 0, "%s",
                 r.err);
    cluster_run_free(&r);
    cr_assert_eq(cluster_admin(C, 180000, &r, "rebalance", "--wait", NULL), 0, "%s%s", r.out,
                 r.err);
    cluster_run_free(&r);
    int moved = 0;
    for (int b = 0; b < nb; b++) {
        wait_stripe(ids[b], srv, "after the rebalance");
        unsigned seen = 0;
        for (int i = 0; i < 6; i++) {
            cr_assert_eq(seen & (1u << srv[i]), 0, "block %" PRIu64 ": two shards on ds%d",
                         ids[b], srv[i] + 1);
            seen |= 1u << srv[i];
            moved += srv[i] == fresh;
        }
        int64_t until = now_ms() + WAIT_MS; /* the old copies go once handed over */
        for (int d = 0; d < C->nds; d++) {
            unsigned want = 0;
            for (int i = 0; i < 6; i++)
                if (srv[i] == d)
                    want |= 1u << i;
            while (shard_files(d, ids[b]) != want && now_ms() < until)
                usleep(100 * 1000);
            cr_assert_eq(shard_files(d, ids[b]), want, "block %" PRIu64 ": ds%d holds shards "
                         "%#x, the nameserver says %#x", ids[b], d + 1,
                         shard_files(d, ids[b]), want);
        }
    }
    fprintf(stderr, "ec: the rebalance moved %d shards onto the new server\n", moved);
    cr_assert_geq(moved, 3, "only %d shards moved onto the empty server", moved);
    fixture_admin_json(&r, CLI_MS, "tasks", NULL);
    cr_assert_not_null(strstr(r.out, "\"ec-move\""), "%s", r.out);
    cr_assert_not_null(strstr(r.out, "\"rebalance\""), "%s", r.out);
    cluster_run_free(&r);
    h = cluster_client(C);
    for (int i = 0; i < n; i++) {
        int rc = cluster_check_file(h, nm[i], NULL, 13, (uint64_t)i, len[i]);
        cr_assert_eq(rc, 0, "file %d: %s", i, imgstore_strerror(rc));
    }
    imgstore_close(h);
    C->passed = 1;
}
