/* Integration test of moving erasure-coded shards (issue 16): 4+2 stripes
 * of blocks stored with 2 replicas before they were encoded.
 * Suite ec_move (seven dataservers, 16 MiB blocks): drains move shards
 * (drain_moves_shards: a plain copy from the draining holder, deletes during
 * the move handed over, bytes on the wire compressed and counted, ds-admin
 * file of an encoded file; then a damaged range makes the move decode the
 * rest).
 * Suite ec_balance (six then seven dataservers of 64 MiB, 4 MiB blocks):
 * the balance moves shards of ten stripes onto an empty server
 * (rebalance_moves_shards).
 * Encoding, degraded reads, repair, deletes and the scrub of shards:
 * test_ec.c. Helpers shared with it: ec_fixture.c. */
#include "tests/integ/cluster.h"
#include "tests/integ/ec_fixture.h"
#include "proto/fname.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- drains move shards -------------------------------------------------------------- */

#define MOVE_NDS 7

/* The scrubber is off here: the drain test flips a byte in a shard to take
 * a move's fallback (decode the rest from the others), and a scrubber that
 * finds the byte first turns the move into a rebuild of a bad shard (the
 * scrub of shards is tested in test_ec.c). */
static const char *const move_ds_args[] = {"--scrub-rate-mb", "0", NULL};

static void setup_move(void)
{
    fixture_start(&(struct cluster_opts){.ndataservers = MOVE_NDS, .replicas = 2,
                                         .block_size = BLOCK_SIZE, .ds_args = move_ds_args});
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
        uint8_t *body = ec_http_get(C->ds[i % C->nds].http_addr, nm[i], &got);
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
        id = ec_first_sealed();
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
    ec_wait_stripe(id, srv, "after encoding");
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
    while (one < n && !ec_name_in_block(nm[one], id))
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
    cr_assert_eq(ec_shard_files(victim, id), 0, "ds%d still holds shards %#x", victim + 1,
                 ec_shard_files(victim, id));
    int now[6];
    ec_wait_stripe(id, now, "after the drain");
    cr_assert_eq(now[0], spare, "shard 0 went to ds%d, not the spare ds%d", now[0] + 1,
                 spare + 1);
    for (int i = 1; i < 6; i++)
        cr_assert_eq(now[i], srv[i], "shard %d moved", i);
    for (int d = 0; d < C->nds; d++) {
        unsigned want = 0;
        for (int i = 0; i < 6; i++)
            if (now[i] == d)
                want |= 1u << i;
        cr_assert_eq(ec_shard_files(d, id), want, "ds%d holds shards %#x, the nameserver says %#x",
                     d + 1, ec_shard_files(d, id), want);
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
    cr_assert_eq(ec_shard_files(victim2, id), 0, "ds%d still holds shards", victim2 + 1);
    int again[6];
    ec_wait_stripe(id, again, "after the second drain");
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
        ec_wait_stripe(ids[b], srv, "after encoding");
    int64_t end = ec_now_ms() + WAIT_MS;
    for (int b = 0; b < nb; b++)
        while (ec_blk_copies(ids[b]) > 0 && ec_now_ms() < end)
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
        ec_wait_stripe(ids[b], srv, "after the rebalance");
        unsigned seen = 0;
        for (int i = 0; i < 6; i++) {
            cr_assert_eq(seen & (1u << srv[i]), 0, "block %" PRIu64 ": two shards on ds%d",
                         ids[b], srv[i] + 1);
            seen |= 1u << srv[i];
            moved += srv[i] == fresh;
        }
        int64_t until = ec_now_ms() + WAIT_MS; /* the old copies go once handed over */
        for (int d = 0; d < C->nds; d++) {
            unsigned want = 0;
            for (int i = 0; i < 6; i++)
                if (srv[i] == d)
                    want |= 1u << i;
            while (ec_shard_files(d, ids[b]) != want && ec_now_ms() < until)
                usleep(100 * 1000);
            cr_assert_eq(ec_shard_files(d, ids[b]), want, "block %" PRIu64 ": ds%d holds shards "
                         "%#x, the nameserver says %#x", ids[b], d + 1,
                         ec_shard_files(d, ids[b]), want);
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
