/* Integration test of compaction and scrubbing (issue 4) on three
 * dataservers with 1 MiB blocks and 2 replicas:
 *   1. half the files deleted: every sealed block is compacted (block files
 *      smaller, disk use down), replicas stay byte-identical, every remaining
 *      file reads by its old name from every replica, deleted ones stay
 *      deleted, and a reader thread hammering gets meanwhile never fails;
 *   2. a byte flipped in one replica's block file: the scrubber finds it, the
 *      copy is replaced from the good replica, and the bad bytes are never
 *      served (reads from the bad copy fail with IMGSTORE_ECORRUPT);
 *   3. the nameserver killed during a compaction: deletes of the block go
 *      on after its restart (the hold is released without it). */
#include "tests/integ/cluster.h"
#include "tests/integ/fixture.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <jansson.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NFILES 240
#define MIN_SIZE (8u << 10)
#define MAX_SIZE (40u << 10)
#define BLOCK_SIZE (1u << 20)
#define DEADLINE_MS 25000

static const char *const ds_args[] = {"--scrub-rate-mb", "50", "--copy-sync-mb", "2", NULL};

static void setup(void)
{
    fixture_start(&(struct cluster_opts){.ndataservers = 3, .replicas = 2,
                                         .block_size = BLOCK_SIZE, .ds_args = ds_args});
}

TestSuite(compact, .init = setup, .fini = fixture_stop, .timeout = 90);

static uint64_t seed;
static uint32_t sizes[NFILES];
static char names[NFILES][IMGSTORE_NAME_MAX];
static int deleted[NFILES];
static uint64_t blocks[NFILES]; /* the block of each file, from STAT */

static void upload_all(void)
{
    fixture_upload(seed, 0, NFILES, MIN_SIZE, MAX_SIZE, 3, sizes, names);
}

/* Bytes of every .blk file of dataserver i (one data folder each). */
static uint64_t blk_bytes(int i)
{
    char dir[600];
    snprintf(dir, sizeof(dir), "%s/blocks", C->ds[i].data);
    DIR *d = opendir(dir);
    uint64_t n = 0;
    if (!d)
        return 0;
    for (struct dirent *e; (e = readdir(d));) {
        size_t l = strlen(e->d_name);
        struct stat st;
        char p[1200];
        if (l < 4 || strcmp(e->d_name + l - 4, ".blk") != 0)
            continue;
        snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
        if (stat(p, &st) == 0)
            n += (uint64_t)st.st_size;
    }
    closedir(d);
    return n;
}

static uint64_t all_blk_bytes(void)
{
    uint64_t n = 0;
    for (int i = 0; i < C->nds; i++)
        n += blk_bytes(i);
    return n;
}

/* The blocks the nameserver lists as sealed (`ds-admin --json blocks
 * --state sealed`): only those are compacted; an open block keeps its
 * deleted records until it is sealed. Returns how many, at most max. */
static int sealed_blocks(uint64_t *ids, int max)
{
    struct cluster_run r;
    fixture_admin_json(&r, 10000, "blocks", "--state", "sealed", NULL);
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

/* The deleted bytes the nameserver knows of sealed block id (0: none or
 * not listed). */
static uint64_t deleted_known(uint64_t id)
{
    struct cluster_run r;
    fixture_admin_json(&r, 10000, "blocks", "--state", "sealed", NULL);
    json_t *doc = json_loads(r.out, 0, NULL);
    json_t *arr = json_object_get(doc, "blocks");
    uint64_t n = 0;
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *b = json_array_get(arr, i);
        if ((uint64_t)json_integer_value(json_object_get(b, "block_id")) == id)
            n = (uint64_t)json_integer_value(json_object_get(b, "deleted_bytes"));
    }
    json_decref(doc);
    cluster_run_free(&r);
    return n;
}

/* Bytes of the block files of blocks ids[0..n) on every dataserver. */
static uint64_t blocks_bytes(const uint64_t *ids, int n)
{
    uint64_t sum = 0;
    for (int d = 0; d < C->nds; d++)
        for (int k = 0; k < n; k++) {
            char p[700];
            struct stat st;
            cluster_block_path(C, d, ids[k], p, sizeof(p));
            if (stat(p, &st) == 0)
                sum += (uint64_t)st.st_size;
        }
    return sum;
}

/* Bytes of the files deleted from blocks ids[0..n). */
static uint64_t deleted_in(const uint64_t *ids, int n)
{
    uint64_t sum = 0;
    for (int i = 0; i < NFILES; i++)
        for (int k = 0; k < n && deleted[i]; k++)
            if (blocks[i] == ids[k])
                sum += sizes[i];
    return sum;
}

/* Every file from every listed replica (live: its bytes; deleted: gone). */
static int check_all(const char *when)
{
    return cluster_check_set(C, seed, NFILES, (const char(*)[IMGSTORE_NAME_MAX])names, sizes,
                             deleted, "compact", when);
}

/* Both replicas of every block of a live file hold byte-identical files. */
static int check_identical(void)
{
    imgstore_t *h = cluster_client(C);
    int bad = 0;
    uint64_t last = 0;
    for (int i = 0; i < NFILES; i++) {
        struct imgstore_stat st;
        if (deleted[i] || imgstore_stat(h, names[i], &st) != 0 || st.block_id == last ||
            st.nreplicas < 2)
            continue;
        last = st.block_id;
        void *a = NULL, *b = NULL;
        size_t la = 0, lb = 0;
        char pa[700], pb[700];
        cluster_block_path(C, cluster_ds_index(C, st.replicas[0]), st.block_id, pa, sizeof(pa));
        cluster_block_path(C, cluster_ds_index(C, st.replicas[1]), st.block_id, pb, sizeof(pb));
        if (cluster_read_file(pa, &a, &la) != 0 || cluster_read_file(pb, &b, &lb) != 0 ||
            la != lb || memcmp(a, b, la) != 0) {
            fprintf(stderr, "[compact] block %llu: replicas differ (%zu / %zu bytes)\n",
                    (unsigned long long)st.block_id, la, lb);
            bad++;
        }
        free(a);
        free(b);
    }
    imgstore_close(h);
    return bad;
}

/* The reader thread: gets live files in a loop until told to stop. */
static atomic_int stop_reader, reader_fail, reader_wrong;
static atomic_long reader_ok;

static void *reader(void *arg)
{
    (void)arg;
    imgstore_t *h = cluster_client(C);
    if (!h)
        return NULL;
    uint64_t rng = seed ^ 0x5555;
    while (!atomic_load(&stop_reader)) {
        int i = (int)(cluster_rand(&rng) % NFILES);
        if (i % 2 == 1)
            i--; /* even files are never deleted */
        int rc = cluster_check_file(h, names[i], NULL, seed, (uint64_t)i, sizes[i]);
        if (rc == -EILSEQ)
            atomic_fetch_add(&reader_wrong, 1);
        else if (rc != 0)
            atomic_fetch_add(&reader_fail, 1);
        else
            atomic_fetch_add(&reader_ok, 1);
    }
    imgstore_close(h);
    return NULL;
}

/* Fills blocks[] (the block of every file). */
static void stat_blocks(void)
{
    imgstore_t *h = cluster_client(C);
    for (int i = 0; i < NFILES; i++) {
        struct imgstore_stat st;
        cr_assert_eq(imgstore_stat(h, names[i], &st), 0, "stat of file %d", i);
        blocks[i] = st.block_id;
    }
    imgstore_close(h);
}

static void delete_odd(void)
{
    imgstore_t *h = cluster_client(C);
    for (int i = 1; i < NFILES; i += 2) {
        int rc = -1;
        /* IMG_EUNAVAIL (-1014): a compaction holds deletes; retry. */
        for (int k = 0; k < 100 && rc != 0; k++) {
            rc = imgstore_unlink(h, names[i]);
            if (rc != 0)
                usleep(100 * 1000);
        }
        cr_assert_eq(rc, 0, "delete of file %d: %d", i, rc);
        deleted[i] = 1;
    }
    imgstore_close(h);
}

Test(compact, deletes_are_reclaimed_and_reads_never_stall)
{
    cr_assert_not_null(C);
    seed = cluster_seed("compact");
    upload_all();
    stat_blocks();
    uint64_t sealed[NFILES];
    int nsealed = sealed_blocks(sealed, NFILES);
    cr_assert_gt(nsealed, 0, "%d files of %u..%u bytes must fill a 1 MiB block", NFILES,
                 MIN_SIZE, MAX_SIZE);
    uint64_t before = all_blk_bytes(), sealed_before = blocks_bytes(sealed, nsealed);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, reader, NULL), 0);
    delete_odd();
    /* Both replicas of every sealed block must give back at least the
     * payload of its deleted files (each record also had a header). Open
     * blocks are not compacted: they are left out of the count. */
    uint64_t want = 2 * deleted_in(sealed, nsealed);
    int64_t t0 = cluster_now_ms();
    uint64_t sealed_now = sealed_before;
    while (cluster_now_ms() - t0 < DEADLINE_MS) {
        sealed_now = blocks_bytes(sealed, nsealed);
        if (sealed_now + want <= sealed_before)
            break;
        usleep(200 * 1000);
    }
    usleep(500 * 1000);
    atomic_store(&stop_reader, 1);
    pthread_join(th, NULL);
    fprintf(stderr,
            "[compact] block files %llu -> %llu bytes; %d sealed blocks %llu -> %llu bytes "
            "(%llu deleted bytes x 2); reader %ld ok, %d failed\n",
            (unsigned long long)before, (unsigned long long)all_blk_bytes(), nsealed,
            (unsigned long long)sealed_before, (unsigned long long)sealed_now,
            (unsigned long long)want / 2, atomic_load(&reader_ok), atomic_load(&reader_fail));
    if (sealed_now + want > sealed_before)
        cluster_dump_logs(C, 30);
    cr_assert_leq(sealed_now + want, sealed_before,
                  "compaction must reclaim the deleted bytes of every sealed block");
    cr_assert_eq(atomic_load(&reader_wrong), 0);
    cr_assert_eq(atomic_load(&reader_fail), 0, "reads during compaction must all succeed");
    cr_assert_gt(atomic_load(&reader_ok), 0);
    cr_assert_eq(check_all("after compaction"), 0);
    /* A replica whose compaction failed (e.g. a delete raced it) is replaced
     * from a good one by the planner: replicas converge, not at once. */
    t0 = cluster_now_ms();
    int differ = check_identical();
    while (differ != 0 && cluster_now_ms() - t0 < DEADLINE_MS) {
        usleep(500 * 1000);
        differ = check_identical();
    }
    cr_assert_eq(differ, 0, "replicas must converge to byte-identical files");
    C->passed = 1;
}

Test(compact, scrub_repairs_a_flipped_byte)
{
    cr_assert_not_null(C);
    seed = cluster_seed("scrub");
    upload_all();
    imgstore_t *h = cluster_client(C);
    cr_assert_not_null(h);
    const int victim = 5;
    struct imgstore_stat st;
    fixture_damage_copy(names[victim], sizes[victim], &st);
    char bad_addr[CLUSTER_ADDR_MAX];
    snprintf(bad_addr, sizeof(bad_addr), "%s", st.replicas[1]);

    /* The bad copy never serves the bad bytes. */
    int rc = cluster_check_file(h, names[victim], bad_addr, seed, victim, sizes[victim]);
    cr_assert(rc == IMGSTORE_ECORRUPT || rc == IMGSTORE_ENOTFOUND || rc == -1011,
              "read from the damaged copy: %d", rc);
    /* Wait until the file has two good replicas again. */
    int64_t t0 = cluster_now_ms();
    int good = 0;
    while (cluster_now_ms() - t0 < DEADLINE_MS && !good) {
        imgstore_close(h);
        h = cluster_client(C);
        good = imgstore_stat(h, names[victim], &st) == 0 && st.nreplicas == 2;
        for (int r = 0; good && r < st.nreplicas; r++) {
            rc = cluster_check_file(h, names[victim], st.replicas[r], seed, victim,
                                    sizes[victim]);
            cr_assert_neq(rc, -EILSEQ, "bad bytes served by %s", st.replicas[r]);
            good = rc == 0;
        }
        if (!good)
            usleep(300 * 1000);
    }
    imgstore_close(h);
    cr_assert(good, "the damaged copy must be replaced from the good replica");
    cr_assert_eq(check_all("after repair"), 0);
    C->passed = 1;
}

/* Whether dataserver d's log holds `what`. */
static int log_has(int d, const char *what)
{
    void *text = NULL;
    size_t len = 0;
    int seen = cluster_read_file(C->ds[d].log, &text, &len) == 0 &&
               memmem(text, len, what, strlen(what)) != NULL;
    free(text);
    return seen;
}

/* A compaction whose nameserver dies before every replica answered: the
 * new nameserver never heard of it and sends no release, so the
 * dataservers release its hold themselves (docs/dataserver.md,
 * "Compaction"): a delete of the block succeeds within the library's
 * default deadline, not after the 5 min cap of a hold. Made on purpose:
 * compactions slowed to 1 MB/s (copy_rate, sent with every heartbeat), the
 * block's secondary frozen mid-way while the primary finishes, the
 * nameserver killed, the secondary thawed, the nameserver restarted. */
Test(compact, hold_released_when_the_nameserver_goes)
{
    cr_assert_not_null(C);
    seed = cluster_seed("compact.hold");
    upload_all();
    stat_blocks();
    struct cluster_run r;
    fixture_admin_json(&r, 10000, "set", "compact_threshold", "100", NULL); /* on demand only */
    cluster_run_free(&r);
    fixture_admin_json(&r, 10000, "set", "copy_rate", "1", NULL);
    cluster_run_free(&r);
    delete_odd();
    uint64_t sealed[NFILES];
    cr_assert_gt(sealed_blocks(sealed, NFILES), 0);
    uint64_t b = sealed[0];
    imgstore_t *h = cluster_client(C);
    int f = -1;
    struct imgstore_stat st;
    for (int i = 0; i < NFILES && f < 0; i++)
        if (!deleted[i] && blocks[i] == b)
            f = i;
    cr_assert_geq(f, 0, "no live file left in block %llu", (unsigned long long)b);
    cr_assert_eq(imgstore_stat(h, names[f], &st), 0);
    cr_assert_eq(st.nreplicas, 2);
    int primary = cluster_ds_index(C, st.replicas[0]); /* listed first */
    int secondary = cluster_ds_index(C, st.replicas[1]);
    cr_assert(primary >= 0 && secondary >= 0);
    /* The deletes reach the nameserver with the heartbeats (so does the
     * rate: one more heartbeat). */
    int64_t t0 = cluster_now_ms();
    while (deleted_known(b) == 0) {
        cr_assert_lt(cluster_now_ms() - t0, DEADLINE_MS, "block %llu: no deleted bytes known",
                     (unsigned long long)b);
        usleep(100 * 1000);
    }
    usleep(1500 * 1000);

    char id[32], started[64], done[64];
    snprintf(id, sizeof(id), "%llu", (unsigned long long)b);
    snprintf(started, sizeof(started), "compacting block %s ", id);
    snprintf(done, sizeof(done), "block %s compacted:", id);
    int rc = cluster_admin(C, 10000, &r, "compact", id, NULL);
    cr_assert_eq(rc, 0, "ds-admin compact %s: %s%s", id, r.out, r.err);
    cluster_run_free(&r);
    for (t0 = cluster_now_ms(); !log_has(secondary, started); usleep(5 * 1000))
        cr_assert_lt(cluster_now_ms() - t0, DEADLINE_MS, "%s never compacted block %s",
                     C->ds[secondary].name, id);
    cluster_signal_proc(&C->ds[secondary], SIGSTOP);
    int mid_way = !log_has(secondary, done);
    for (t0 = cluster_now_ms(); !log_has(primary, done); usleep(20 * 1000))
        if (cluster_now_ms() - t0 > DEADLINE_MS) {
            cluster_signal_proc(&C->ds[secondary], SIGCONT);
            cr_assert_fail("%s did not compact block %s", C->ds[primary].name, id);
        }
    cluster_signal_proc(&C->ns, SIGKILL);
    cluster_signal_proc(&C->ds[secondary], SIGCONT);
    cr_assert(mid_way, "%s compacted block %s before it was frozen (copy_rate not in force?)",
              C->ds[secondary].name, id);
    cr_assert_eq(cluster_start_ns(C), 0);
    cr_assert_eq(cluster_wait_ready(C, C->nds, CLUSTER_READY_MS), 0);
    t0 = cluster_now_ms();
    rc = imgstore_unlink(h, names[f]);
    fprintf(stderr, "[compact] delete in block %s after its compaction's nameserver died: %s in "
            "%lld ms\n", id, rc ? imgstore_strerror(rc) : "done",
            (long long)(cluster_now_ms() - t0));
    cr_assert_eq(rc, 0, "a delete of a block whose compaction outlived its nameserver: %s",
                 imgstore_strerror(rc));
    deleted[f] = 1;
    imgstore_close(h);
    cr_assert_eq(check_all("after the nameserver restart"), 0);
    C->passed = 1;
}
