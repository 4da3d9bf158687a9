/* Integration test of failed-disk handling (issue 4): three dataservers
 * with two data folders each, 1 MiB blocks, 2 replicas. Files are uploaded,
 * then one dataserver's folder holding blocks is renamed away (rename(2):
 * the disk vanished). Checked:
 *   - the dataserver reports the disk failed (ds-admin servers --json shows
 *     failed_disks 1, status says degraded, the nameserver's /metrics has
 *     imgstore_nameserver_server_failed_disks 1 for it);
 *   - every block that was on it is back to 2 replicas within a bounded
 *     time, none of them on the vanished folder;
 *   - every file reads byte-identical from every replica;
 *   - the dataserver's other folder keeps serving its files (folders on one
 *     file system share the blocks: store.c breaks free-space ties by the
 *     bytes each folder holds). */
#include "tests/integ/cluster.h"
#include "tests/integ/fixture.h"
#include "tests/integ/json_check.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NFILES 200
#define NLATE 300 /* uploads after the failure, at most */
#define LATE_BATCH 30
#define NALL (NFILES + NLATE)
#define MIN_SIZE (8u << 10)
#define MAX_SIZE (40u << 10)
#define BLOCK_SIZE (1u << 20)
#define HEAL_DEADLINE_MS 60000
#define FAIL_DEADLINE_MS 15000
#define CLI_TIMEOUT_MS 30000
#define MAX_IDS 256

static void setup(void)
{
    cr_assert_eq(fixture_start(&(struct cluster_opts){.ndataservers = 3, .replicas = 2,
                                                      .block_size = BLOCK_SIZE,
                                                      .disks_per_ds = 2, .ns_http = 1}),
                 0);
}

TestSuite(disk, .init = setup, .fini = fixture_stop, .timeout = 240);

static uint64_t seed;
static uint32_t sizes[NALL];
static char names[NALL][IMGSTORE_NAME_MAX];

static void upload(int first, int n)
{
    fixture_upload(seed, first, n, MIN_SIZE, MAX_SIZE, 5, sizes, names);
}

/* Folder k (0 or 1) of dataserver d: C->ds[d].data is "A,B". */
static void folder(int d, int k, char *out, size_t n)
{
    char tmp[600];
    snprintf(tmp, sizeof(tmp), "%s", C->ds[d].data);
    char *comma = strchr(tmp, ',');
    cr_assert_not_null(comma, "two folders expected: %s", C->ds[d].data);
    *comma = '\0';
    snprintf(out, n, "%s", k == 0 ? tmp : comma + 1);
}

/* Block ids of the .blk files in folder/blocks. */
static size_t blocks_in(const char *dir, uint64_t *ids, size_t max)
{
    char p[700];
    snprintf(p, sizeof(p), "%s/blocks", dir);
    DIR *d = opendir(p);
    size_t n = 0;
    if (!d)
        return 0;
    for (struct dirent *e; (e = readdir(d)) && n < max;) {
        size_t l = strlen(e->d_name);
        if (l == 20 && strcmp(e->d_name + 16, ".blk") == 0)
            ids[n++] = strtoull(e->d_name, NULL, 16);
    }
    closedir(d);
    return n;
}

static int has(const uint64_t *ids, size_t n, uint64_t id)
{
    for (size_t i = 0; i < n; i++)
        if (ids[i] == id)
            return 1;
    return 0;
}

/* failed_disks of dataserver d as the nameserver reports it, or -1; its
 * server id in id[] when given. */
static int failed_disks(int d, char id[64])
{
    Imgstore__ClusterStatusResp *st = NULL;
    if (cluster_status(C, &st) != 0)
        return -1;
    int n = -1;
    for (size_t i = 0; i < st->n_servers; i++)
        if (st->servers[i]->addr && strcmp(st->servers[i]->addr, C->ds[d].addr) == 0) {
            n = (int)st->servers[i]->failed_disks;
            if (id)
                snprintf(id, 64, "%s", st->servers[i]->server_id);
        }
    imgstore_admin_free_status(st);
    return n;
}

/* 1 when every file of a block in lost[] has 2 replicas, none of them a
 * copy on the vanished folder (the victim may hold a new copy on its good
 * folder: then it must be listed there). */
static int healed(int victim, const uint64_t *lost, size_t nlost, const char *good_dir)
{
    imgstore_t *h = cluster_client(C);
    int ok = h != NULL;
    uint64_t now_good[MAX_IDS];
    size_t ngood = blocks_in(good_dir, now_good, MAX_IDS);
    for (int i = 0; ok && i < NFILES; i++) {
        struct imgstore_stat st;
        if (imgstore_stat(h, names[i], &st) != 0) {
            ok = 0;
            break;
        }
        if (!has(lost, nlost, st.block_id))
            continue;
        ok = st.nreplicas == 2;
        for (int r = 0; ok && r < st.nreplicas; r++)
            if (strcmp(st.replicas[r], C->ds[victim].addr) == 0)
                ok = has(now_good, ngood, st.block_id);
    }
    if (h)
        imgstore_close(h);
    return ok;
}

/* Every file from every replica, byte-identical. */
static int check_all(int n)
{
    imgstore_t *h = cluster_client(C);
    cr_assert_not_null(h);
    int bad = 0;
    for (int i = 0; i < n; i++)
        bad += cluster_check_replicas(h, names[i], seed, (uint64_t)i, sizes[i], 0, "disk", NULL);
    imgstore_close(h);
    return bad;
}

Test(disk, vanished_folder_is_re_replicated)
{
    seed = cluster_seed("disk");
    upload(0, NFILES);
    /* The victim: the dataserver folder holding the most blocks. */
    int victim = -1, vk = 0;
    size_t most = 0;
    uint64_t ids[MAX_IDS];
    for (int d = 0; d < C->nds; d++)
        for (int k = 0; k < 2; k++) {
            char dir[600];
            folder(d, k, dir, sizeof(dir));
            size_t n = blocks_in(dir, ids, MAX_IDS);
            if (n > most) {
                most = n;
                victim = d;
                vk = k;
            }
        }
    cr_assert_geq(victim, 0);
    char dir[600], good_dir[600], gone[700];
    folder(victim, vk, dir, sizeof(dir));
    folder(victim, 1 - vk, good_dir, sizeof(good_dir));
    uint64_t lost[MAX_IDS];
    size_t nlost = blocks_in(dir, lost, MAX_IDS);
    cr_assert_gt(nlost, 0);
    snprintf(gone, sizeof(gone), "%s.gone", dir);
    int64_t t0 = cluster_now_ms();
    cr_assert_eq(rename(dir, gone), 0, "rename %s: %s", dir, strerror(errno));
    fprintf(stderr, "[disk] %s renamed away: %zu blocks on it\n", dir, nlost);

    /* reported failed */
    while (failed_disks(victim, NULL) != 1 && cluster_now_ms() - t0 < FAIL_DEADLINE_MS)
        usleep(200 * 1000);
    int64_t t_failed = cluster_now_ms() - t0;
    char victim_id[64];
    cr_assert_eq(failed_disks(victim, victim_id), 1, "the disk must be reported failed");
    /* ... also in the nameserver's /metrics */
    char series[160];
    snprintf(series, sizeof(series), "imgstore_nameserver_server_failed_disks{server=\"%s\"}",
             victim_id);
    cr_assert_eq(cluster_metric(C->ns.http_addr, series), 1, "%s", series);
    /* ... and in /status.json, which the status page shows */
    snprintf(series, sizeof(series), "servers[id=%s].failed_disks", victim_id);
    char *js = cluster_http_body(C->ns.http_addr, "/status.json");
    cr_assert_not_null(js);
    cr_assert_eq(json_at_num(js, series), 1, "%s", js);
    free(js);
    struct cluster_run r;
    const char *argv[] = {"ds-admin", "--ns", C->ns.addr, "--json", "servers", NULL};
    cr_assert_eq(cluster_run(C, argv, NULL, NULL, CLI_TIMEOUT_MS, &r), 0);
    cr_assert_eq(r.exit_code, 0, "%s", r.err);
    check_json(r.out, "servers --json");
    snprintf(series, sizeof(series), "[address=%s].failed_disks", C->ds[victim].addr);
    cr_assert_eq(json_at_num(r.out, series), 1, "%s", r.out);
    cluster_run_free(&r);
    const char *argv2[] = {"ds-admin", "--ns", C->ns.addr, "status", NULL};
    cr_assert_eq(cluster_run(C, argv2, NULL, NULL, CLI_TIMEOUT_MS, &r), 0);
    cr_assert_not_null(strstr(r.out, "failed disks: 1"), "%s", r.out);
    cluster_run_free(&r);

    /* every block of the folder back to full replication */
    int ok = 0;
    while (!(ok = healed(victim, lost, nlost, good_dir)) &&
           cluster_now_ms() - t0 < HEAL_DEADLINE_MS)
        usleep(500 * 1000);
    int64_t t_healed = cluster_now_ms() - t0;
    fprintf(stderr, "[disk] failure reported after %lld ms, %zu blocks re-replicated after %lld ms\n",
            (long long)t_failed, nlost, (long long)t_healed);
    cr_assert(ok, "every block of the vanished folder must have 2 replicas again");
    cr_assert_eq(check_all(NFILES), 0);

    /* the other folder takes new blocks and serves them */
    int n = NFILES;
    uint64_t kept[MAX_IDS];
    size_t nkept = 0;
    while (n < NALL && nkept == 0) {
        upload(n, LATE_BATCH);
        n += LATE_BATCH;
        nkept = blocks_in(good_dir, kept, MAX_IDS);
    }
    /* A heartbeat apart: the block reports of the newest blocks. */
    usleep(1500 * 1000);
    cr_assert_eq(check_all(n), 0);
    imgstore_t *h = cluster_client(C);
    cr_assert_not_null(h);
    nkept = blocks_in(good_dir, kept, MAX_IDS);
    int served = 0;
    for (int i = 0; i < n; i++) {
        struct imgstore_stat st;
        cr_assert_eq(imgstore_stat(h, names[i], &st), 0);
        if (!has(kept, nkept, st.block_id))
            continue;
        cr_assert_eq(cluster_check_file(h, names[i], C->ds[victim].addr, seed, (uint64_t)i,
                                        sizes[i]), 0, "file %d from the good folder", i);
        served++;
    }
    imgstore_close(h);
    fprintf(stderr, "[disk] %d files served from the good folder (%zu blocks)\n", served, nkept);
    cr_assert_gt(served, 0, "the dataserver's other folder must keep serving");
    C->passed = 1;
}
