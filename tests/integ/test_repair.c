/* Integration test of the operator's on-demand commands (ds-admin compact
 * and repair) and of the scrub_rate setting, on three dataservers with
 * 1 MiB blocks and 2 replicas:
 *   1. set scrub_rate: every dataserver's /metrics shows the new rate within
 *      a few heartbeats, and set 0 gives each its own --scrub-rate-mb back;
 *   2. compact: a quarter of the files deleted (below the automatic
 *      threshold); --dry-run lists the blocks, compact BLOCK --wait compacts
 *      one, compact --threshold --wait the rest; refusals (unknown block,
 *      no deleted bytes, not sealed) exit 1; every live file reads
 *      byte-identical from every replica afterwards;
 *   3. repair: a byte flipped in one replica's block file (the scrubber off,
 *      so nothing else finds it); repair BLOCK --wait --json reports the bad
 *      copy with action replace and ends healed; then every copy verifies
 *      clean and every file reads byte-identical from every replica. */
#include "tests/integ/cluster.h"
#include "tests/integ/fixture.h"
#include "tests/integ/json_check.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NFILES 120
#define MIN_SIZE (8u << 10)
#define MAX_SIZE (40u << 10)
#define BLOCK_SIZE (1u << 20)
#define CLI_TIMEOUT_MS 30000
#define WAIT_TIMEOUT_MS 120000
#define RATE_DEADLINE_MS 10000
#define OWN_SCRUB_MB "3"

static const char *const ds_args[] = {"--scrub-rate-mb", "0", NULL};
static const char *const ds_args_own[] = {"--scrub-rate-mb", OWN_SCRUB_MB, NULL};

static void start(const char *const *args)
{
    struct cluster_opts o = {.ndataservers = 3, .replicas = 2, .block_size = BLOCK_SIZE,
                             .ds_args = args};
    cr_assert_eq(fixture_start(&o), 0);
}

static void setup(void)
{
    start(ds_args);
}

static void setup_own(void)
{
    start(ds_args_own);
}

static uint64_t seed;
static uint32_t sizes[NFILES];
static char names[NFILES][IMGSTORE_NAME_MAX];
static int deleted[NFILES];

/* ds-admin against the test cluster: its exit code, *r filled. */
#define admin(r, timeout_ms, ...) cluster_admin(C, timeout_ms, r, __VA_ARGS__, NULL)

static void upload_all(void)
{
    fixture_upload(seed, 0, NFILES, MIN_SIZE, MAX_SIZE, 3, sizes, names);
}

/* Every file from every replica: live ones byte-identical, deleted ones gone. */
static int check_all(const char *when)
{
    return cluster_check_set(C, seed, NFILES, (const char(*)[IMGSTORE_NAME_MAX])names, sizes,
                             deleted, "repair", when);
}

/* ---- scrub_rate -------------------------------------------------------------------- */

/* Waits until every dataserver's scrub rate metric is `want`. */
static int rates_are(double want)
{
    int64_t t0 = cluster_now_ms();
    while (cluster_now_ms() - t0 < RATE_DEADLINE_MS) {
        int ok = 1;
        for (int i = 0; i < C->nds; i++)
            ok &= cluster_metric(C->ds[i].http_addr, "imgstore_ds_scrub_rate_bytes") == want;
        if (ok)
            return 1;
        usleep(200 * 1000);
    }
    for (int i = 0; i < C->nds; i++)
        fprintf(stderr, "[repair] ds%d scrub rate %.0f, want %.0f\n", i + 1,
                cluster_metric(C->ds[i].http_addr, "imgstore_ds_scrub_rate_bytes"), want);
    return 0;
}

Test(repair, scrub_rate_applied, .init = setup_own, .fini = fixture_stop, .timeout = 120)
{
    cr_assert(rates_are(atof(OWN_SCRUB_MB) * 1e6), "each dataserver starts at its own rate");
    struct cluster_run r;
    cr_assert_eq(admin(&r, CLI_TIMEOUT_MS, "set", "scrub_rate", "7", NULL, NULL, NULL), 0, "%s",
                 r.err);
    cluster_run_free(&r);
    fixture_admin_json(&r, CLI_TIMEOUT_MS, "settings", NULL);
    cr_assert_eq(json_at_bool(r.out, "settings[key=scrub_rate].applied"), 1,
                 "scrub_rate must be applied: %s", r.out);
    cluster_run_free(&r);
    cr_assert(rates_are(7e6), "set scrub_rate 7 reaches every dataserver");
    cr_assert_eq(admin(&r, CLI_TIMEOUT_MS, "set", "scrub_rate", "0", NULL, NULL, NULL), 0, "%s",
                 r.err);
    cluster_run_free(&r);
    cr_assert(rates_are(atof(OWN_SCRUB_MB) * 1e6), "scrub_rate 0: back to --scrub-rate-mb");
    C->passed = 1;
}

/* ---- compact ----------------------------------------------------------------------- */

static void delete_some(int every)
{
    imgstore_t *h = cluster_client(C);
    cr_assert_not_null(h);
    for (int i = 0; i < NFILES; i += every) {
        int rc = -1;
        for (int k = 0; k < 100 && rc != 0; k++)
            if ((rc = imgstore_unlink(h, names[i])) != 0)
                usleep(100 * 1000);
        cr_assert_eq(rc, 0, "delete of file %d: %d", i, rc);
        deleted[i] = 1;
    }
    imgstore_close(h);
}

/* The block of file i. */
static uint64_t block_of(int i)
{
    imgstore_t *h = cluster_client(C);
    struct imgstore_stat st;
    cr_assert_eq(imgstore_stat(h, names[i], &st), 0);
    imgstore_close(h);
    return st.block_id;
}

/* The size and deleted bytes of block id as ds-admin block --json says. */
static void block_sizes(uint64_t id, double *size, double *del)
{
    struct cluster_run r;
    char arg[32];
    snprintf(arg, sizeof(arg), "%llu", (unsigned long long)id);
    cr_assert_eq(admin(&r, CLI_TIMEOUT_MS, "--json", "block", arg, NULL, NULL, NULL), 0, "%s",
                 r.err);
    *size = json_at_num(r.out, "size");
    *del = json_at_num(r.out, "deleted_bytes");
    cluster_run_free(&r);
}

/* Waits until the nameserver shows deleted bytes in block `id` and their
 * count stopped growing for 1.5 s (every delete's heartbeat arrived: a
 * slow run, under ASan, reports them over several heartbeats). */
static void wait_deleted(uint64_t id)
{
    int64_t t0 = cluster_now_ms(), still_since = -1;
    double size = 0, del = 0, last = -1;
    while (cluster_now_ms() - t0 < RATE_DEADLINE_MS) {
        block_sizes(id, &size, &del);
        if (del != last)
            still_since = cluster_now_ms();
        last = del;
        if (del > 0 && cluster_now_ms() - still_since >= 1500)
            return;
        usleep(200 * 1000);
    }
    cr_assert(del > 0, "block %llu shows no deleted bytes", (unsigned long long)id);
}

Test(repair, compact_command, .init = setup, .fini = fixture_stop, .timeout = 240)
{
    seed = cluster_seed("ops_compact");
    struct cluster_run r;
    /* Only the compactions asked for here: with random sizes a block may pass
     * the automatic 30 % and be compacted (its deleted bytes gone) first. */
    cr_assert_eq(admin(&r, CLI_TIMEOUT_MS, "set", "compact_threshold", "100", NULL, NULL, NULL),
                 0, "%s", r.err);
    cluster_run_free(&r);
    upload_all();
    /* Every fifth file: 20 %, below the automatic 30 %. */
    delete_some(5);
    wait_deleted(block_of(1));
    char arg[32];
    /* unknown block, bad arguments */
    cr_assert_eq(admin(&r, CLI_TIMEOUT_MS, "compact", "999999999", NULL, NULL, NULL, NULL), 1);
    cr_assert_not_null(strstr(r.err, "no such block"), "%s", r.err);
    cluster_run_free(&r);
    cr_assert_eq(admin(&r, CLI_TIMEOUT_MS, "compact", "1", "--threshold", "5", NULL, NULL), 2);
    cluster_run_free(&r);
    cr_assert_eq(admin(&r, CLI_TIMEOUT_MS, "compact", "--threshold", "0", NULL, NULL, NULL), 2);
    cluster_run_free(&r);
    cr_assert_eq(admin(&r, CLI_TIMEOUT_MS, "compact", "--help", NULL, NULL, NULL, NULL), 0);
    cr_assert_not_null(strstr(r.out, "usage: ds-admin"), "%s", r.out);
    cluster_run_free(&r);
    /* A block still written (the newest file's) is not sealed, or has no
     * deleted bytes: refused either way with a specific message. */
    snprintf(arg, sizeof(arg), "%llu", (unsigned long long)block_of(NFILES - 1));
    cr_assert_eq(admin(&r, CLI_TIMEOUT_MS, "compact", arg, NULL, NULL, NULL, NULL), 1, "%s", r.out);
    cr_assert(strstr(r.err, "not sealed") || strstr(r.err, "no deleted bytes"), "%s", r.err);
    cluster_run_free(&r);

    /* dry run lists a block past 10 % and starts nothing. Which blocks
     * qualify depends on the sizes and on which blocks are still written
     * (uploads spread over several writable blocks; an open one is never
     * compacted), so the first one listed is the one compacted below. */
    fixture_admin_json(&r, CLI_TIMEOUT_MS, "compact", "--threshold", "10", "--dry-run", NULL);
    double listed = json_at_num(r.out, "blocks[0].block_id");
    cr_assert(listed >= 1, "no block listed: %s", r.out);
    cr_assert_geq(json_at_num(r.out, "blocks[0].deleted_pct"), 10.0, "%s", r.out);
    cr_assert_eq(json_at_len(r.out, "task_ids"), 0, "%s", r.out);
    cluster_run_free(&r);
    uint64_t first = (uint64_t)listed;
    wait_deleted(first);
    cr_assert_eq(admin(&r, CLI_TIMEOUT_MS, "compact", "--threshold", "10", "--dry-run", NULL,
                       NULL), 0);
    cr_assert_not_null(strstr(r.out, "dry run"), "%s", r.out);
    cluster_run_free(&r);

    /* one block now */
    double size0, del0, size1, del1;
    block_sizes(first, &size0, &del0);
    snprintf(arg, sizeof(arg), "%llu", (unsigned long long)first);
    fixture_admin_json(&r, WAIT_TIMEOUT_MS, "compact", arg, "--wait", NULL);
    char res[32];
    json_at_str(r.out, "result", res, sizeof(res));
    cr_assert_str_eq(res, "done", "%s", r.out);
    cluster_run_free(&r);
    block_sizes(first, &size1, &del1);
    fprintf(stderr, "[repair] block %llu: %.0f bytes (%.0f deleted) -> %.0f (%.0f deleted)\n",
            (unsigned long long)first, size0, del0, size1, del1);
    cr_assert_lt(size1, size0, "compaction must shrink the block");
    cr_assert_eq(del1, 0);

    /* every other block past 10 %, with plain progress lines */
    cr_assert_eq(admin(&r, WAIT_TIMEOUT_MS, "compact", "--threshold", "10", "--wait", NULL, NULL),
                 0, "%s\n%s", r.out, r.err);
    cr_assert_not_null(strstr(r.out, "compaction done"), "%s", r.out);
    cr_assert_null(strstr(r.out, "\r"), "no terminal bar when not a terminal: %s", r.out);
    cluster_run_free(&r);
    fixture_admin_json(&r, CLI_TIMEOUT_MS, "compact", "--threshold", "10", "--dry-run", NULL);
    cr_assert_eq(json_at_len(r.out, "blocks"), 0, "all compacted: %s", r.out);
    cluster_run_free(&r);
    cr_assert_eq(check_all("after compact"), 0);
    C->passed = 1;
}

/* ---- repair ------------------------------------------------------------------------ */

Test(repair, flipped_byte, .init = setup, .fini = fixture_stop, .timeout = 240)
{
    seed = cluster_seed("ops_repair");
    upload_all();
    const int victim = 7;
    struct imgstore_stat st;
    int bad_ds = fixture_damage_copy(names[victim], sizes[victim], &st);

    struct cluster_run r;
    char arg[32];
    snprintf(arg, sizeof(arg), "%llu", (unsigned long long)st.block_id);
    cr_assert_eq(admin(&r, CLI_TIMEOUT_MS, "repair", "999999999", NULL, NULL, NULL, NULL), 1);
    cluster_run_free(&r);
    cr_assert_eq(admin(&r, CLI_TIMEOUT_MS, "repair", NULL, NULL, NULL, NULL, NULL), 2);
    cluster_run_free(&r);
    int rc = admin(&r, WAIT_TIMEOUT_MS, "repair", arg, "--wait", "--json", NULL, NULL);
    fprintf(stderr, "[repair] repair %s --wait --json: %s", arg, r.out);
    cr_assert_eq(rc, 0, "%s\n%s", r.out, r.err);
    check_json(r.out, "repair --wait --json");
    cr_assert_geq(json_at_num(r.out, "bad_records"), 1, "%s", r.out);
    char path[128], action[32];
    snprintf(path, sizeof(path), "replicas[addr=%s]", C->ds[bad_ds].addr);
    json_t *o = json_at(r.out, path);
    cr_assert_not_null(o, "the bad copy's server is listed: %s", r.out);
    json_decref(o);
    snprintf(path, sizeof(path), "replicas[addr=%s].action", C->ds[bad_ds].addr);
    json_at_str(r.out, path, action, sizeof(action));
    cr_assert_str_eq(action, "replace", "%s", r.out);
    snprintf(path, sizeof(path), "replicas[addr=%s].bad_records", C->ds[bad_ds].addr);
    cr_assert_geq(json_at_num(r.out, path), 1, "%s", r.out);
    cr_assert_eq(json_at_bool(r.out, "healed"), 1, "%s", r.out);
    cluster_run_free(&r);

    /* Every copy verifies clean now, and every file reads byte-identical. */
    cr_assert_eq(admin(&r, WAIT_TIMEOUT_MS, "verify", arg, NULL, NULL, NULL, NULL), 0, "%s\n%s",
                 r.out, r.err);
    cluster_run_free(&r);
    fixture_admin_json(&r, WAIT_TIMEOUT_MS, "repair", arg, NULL);
    cr_assert_eq(json_at_num(r.out, "bad_records"), 0, "%s", r.out);
    cr_assert_gt(json_at_len(r.out, "replicas"), 0, "%s", r.out);
    o = json_at(r.out, "replicas[action=replace]");
    cr_assert_null(o, "a copy still to replace: %s", r.out);
    cluster_run_free(&r);
    cr_assert_eq(check_all("after repair"), 0);
    C->passed = 1;
}
