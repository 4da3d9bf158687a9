/* Integration test: no failed request that could have been served
 * (docs/client.md, "Retries"). With 3 dataservers and 2 replicas:
 *
 *  (a) a dataserver killed with SIGKILL: every read and every delete of 200
 *      files issued right after the kill succeeds within the library's
 *      default deadline, with one attempt each; the deleted files stay
 *      deleted after the dead server comes back and the cluster has healed;
 *  (b) every dataserver stopped and started again: reads issued right away
 *      all succeed (each waits, within its deadline, for a server that is
 *      not serving yet);
 *  (c) deleting a deleted file succeeds: imgstore_unlink2 says it was
 *      already deleted, `imgstore rm` exits 0 with a note;
 *  (d) a full server is left alone: one dataserver restarted with
 *      --capacity 1M (below its reserve); 100 uploads, one attempt each, all
 *      succeed and none of them has a copy on it, also after it restarts
 *      again (docs/nameserver.md, "Full servers"). */
#include "tests/integ/fixture.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NFILES 200
#define MAX_SIZE (128u << 10)
#define PUT_ATTEMPTS 3
#define HEARTBEAT_TIMEOUT_MS 3000
#define CLI_TIMEOUT_MS 30000

static void setup(void)
{
    fixture_start(&(struct cluster_opts){.ndataservers = 3, .replicas = 2,
                                         .heartbeat_timeout_ms = HEARTBEAT_TIMEOUT_MS});
}

TestSuite(available, .init = setup, .fini = fixture_stop, .timeout = 240);

static uint64_t seed;
static uint32_t sizes[NFILES];
static char names[NFILES][IMGSTORE_NAME_MAX];
static int deleted[NFILES];

/* Uploads the test's data set; returns a handle that has cached nothing. */
static imgstore_t *upload_set(const char *test)
{
    seed = cluster_seed(test);
    memset(deleted, 0, sizeof(deleted));
    fixture_upload(seed, 0, NFILES, 1, MAX_SIZE, PUT_ATTEMPTS, sizes, names);
    imgstore_t *h = cluster_client(C);
    cr_assert_not_null(h);
    return h;
}

/* The dataserver holding the most of the files. */
static int busiest(imgstore_t *h)
{
    int on;
    int v = fixture_busiest_ds(h, (const char(*)[IMGSTORE_NAME_MAX])names, NFILES, 0, &on);
    fprintf(stderr, "[available] %d of %d files have a replica on %s\n", on, NFILES,
            C->ds[v].name);
    return v;
}

Test(available, kill_one_then_read_and_delete)
{
    cr_assert_not_null(C, "the cluster did not start (see above)");
    imgstore_t *h = upload_set("available.kill");
    int victim = busiest(h);

    cluster_signal_proc(&C->ds[victim], SIGKILL);
    int64_t t0 = cluster_now_ms();
    int failed_reads = 0, failed_deletes = 0;
    for (int i = 0; i < NFILES; i++) {
        if (i % 2 == 0) {
            int rc = imgstore_unlink(h, names[i]);
            if (rc != 0) {
                failed_deletes++;
                fprintf(stderr, "[available] delete %d failed: %s\n", i, imgstore_strerror(rc));
            } else {
                deleted[i] = 1;
            }
        } else if (cluster_check_file(h, names[i], NULL, seed, (uint64_t)i, sizes[i]) != 0) {
            failed_reads++;
        }
    }
    fprintf(stderr, "[available] %d reads and %d deletes in %lld ms after the kill: "
            "%d reads failed, %d deletes failed\n", NFILES / 2, NFILES / 2,
            (long long)(cluster_now_ms() - t0), failed_reads, failed_deletes);
    cr_assert_eq(failed_reads, 0, "%d reads failed after one dataserver was killed", failed_reads);
    cr_assert_eq(failed_deletes, 0, "%d deletes failed after one dataserver was killed",
                 failed_deletes);

    /* The dead server comes back with its old copies: no delete is undone,
     * through the library nor through any replica. */
    cr_assert_eq(cluster_start_ds(C, victim), 0);
    cr_assert_eq(cluster_wait_ready(C, C->nds, 30000), 0);
    imgstore_t *fresh = cluster_client(C);
    cr_assert_not_null(fresh);
    for (int i = 0; i < NFILES; i += 2) {
        void *data = NULL;
        size_t len = 0;
        int rc = imgstore_get(fresh, names[i], &data, &len);
        imgstore_free(data);
        cr_assert(rc == IMGSTORE_EDELETED || rc == IMGSTORE_ENOTFOUND,
                  "deleted file %d read back (%s) after the dead server came back", i,
                  rc == 0 ? "its bytes" : imgstore_strerror(rc));
    }
    /* Every listed replica of every live file serves it. Right after the
     * return the planner settles the sets (catches the old copies up, drops
     * the extra ones): a copy listed a moment before its deletion answers
     * "not here" (the library goes on to the next replica), so the per-copy
     * check may need a few rounds. */
    int bad = 1;
    for (int64_t end = cluster_now_ms() + 10000; bad && cluster_now_ms() < end;) {
        bad = cluster_check_set(C, seed, NFILES, (const char(*)[IMGSTORE_NAME_MAX])names, sizes,
                                deleted, "available", "after the server came back");
        if (bad)
            usleep(300 * 1000);
    }
    cr_assert_eq(bad, 0, "some copies still do not serve their files 10 s after the return");
    imgstore_close(fresh);
    imgstore_close(h);
    C->passed = 1;
}

Test(available, restart_every_dataserver_then_read)
{
    cr_assert_not_null(C, "the cluster did not start (see above)");
    imgstore_t *h = upload_set("available.restart");
    for (int d = 0; d < C->nds; d++)
        cluster_signal_proc(&C->ds[d], SIGTERM);
    for (int d = 0; d < C->nds; d++)
        cr_assert_eq(cluster_start_ds(C, d), 0);
    int64_t t0 = cluster_now_ms();
    int bad = 0;
    for (int i = 0; i < NFILES; i++)
        bad += cluster_check_file(h, names[i], NULL, seed, (uint64_t)i, sizes[i]) != 0;
    fprintf(stderr, "[available] %d files read in %lld ms right after restarting every "
            "dataserver: %d failed\n", NFILES, (long long)(cluster_now_ms() - t0), bad);
    cr_assert_eq(bad, 0, "%d of %d reads failed right after the restart", bad, NFILES);
    imgstore_close(h);
    C->passed = 1;
}

Test(available, delete_twice)
{
    cr_assert_not_null(C, "the cluster did not start (see above)");
    imgstore_t *h = cluster_client(C);
    cr_assert_not_null(h);
    seed = cluster_seed("available.twice");
    char name[IMGSTORE_NAME_MAX];
    cr_assert_eq(cluster_put_file(h, seed, 1, 1000, name, PUT_ATTEMPTS), 0);
    int was = -1;
    cr_assert_eq(imgstore_unlink2(h, name, &was), 0);
    cr_assert_eq(was, 0, "the first delete said the file was already deleted");
    cr_assert_eq(imgstore_unlink2(h, name, &was), 0, "deleting a deleted file failed");
    cr_assert_eq(was, 1, "the second delete did not say the file was already deleted");

    const char *rm[] = {"imgstore", "--ns", C->ns.addr, "rm", name, NULL};
    struct cluster_run r;
    cr_assert_eq(cluster_run(C, rm, NULL, NULL, CLI_TIMEOUT_MS, &r), 0);
    cr_assert_eq(r.exit_code, 0, "imgstore rm of a deleted file exited %d: %s", r.exit_code,
                 r.err);
    cr_assert(strstr(r.err, "already deleted") != NULL, "no note on stderr: '%s'", r.err);
    cluster_run_free(&r);
    imgstore_close(h);
    C->passed = 1;
}

/* The free bytes the nameserver knows of server `addr`, or UINT64_MAX. */
static uint64_t ns_free_of(const char *addr)
{
    Imgstore__ClusterStatusResp *st = NULL;
    uint64_t free_bytes = UINT64_MAX;
    if (cluster_status(C, &st) != 0)
        return free_bytes;
    for (size_t i = 0; i < st->n_servers; i++)
        if (strcmp(st->servers[i]->addr, addr) == 0 && strcmp(st->servers[i]->state, "up") == 0)
            free_bytes = st->servers[i]->free;
    imgstore__cluster_status_resp__free_unpacked(st, NULL);
    return free_bytes;
}

/* Restarts dataserver d with its own arguments and waits until the
 * nameserver has its heartbeat saying it has at most 1 MiB free. */
static void restart_full(int d)
{
    static const char *const full_args[] = {"--capacity", "1M", NULL};
    cluster_signal_proc(&C->ds[d], SIGTERM);
    C->ds[d].args = full_args;
    cr_assert_eq(cluster_start_ds(C, d), 0);
    cr_assert_eq(cluster_wait_ready(C, C->nds, CLUSTER_READY_MS), 0);
    int64_t t0 = cluster_now_ms();
    while (ns_free_of(C->ds[d].addr) > (1u << 20)) {
        cr_assert_lt(cluster_now_ms() - t0, 10000, "the nameserver never saw %s full",
                     C->ds[d].name);
        usleep(100 * 1000);
    }
}

/* Copies of files first..first+n-1 on dataserver d. */
static int copies_on(imgstore_t *h, int d, int first, int n)
{
    int on = 0;
    for (int i = first; i < first + n; i++) {
        struct imgstore_stat st;
        cr_assert_eq(imgstore_stat(h, names[i], &st), 0);
        for (int r = 0; r < st.nreplicas; r++)
            on += strcmp(st.replicas[r], C->ds[d].addr) == 0;
    }
    return on;
}

Test(available, full_server_left_alone)
{
    cr_assert_not_null(C, "the cluster did not start (see above)");
    const int full = 2, n = 100;
    restart_full(full);
    seed = cluster_seed("available.full");
    fixture_upload(seed, 0, n, 1, MAX_SIZE, 1, sizes, names);
    imgstore_t *h = cluster_client(C);
    cr_assert_not_null(h);
    int on = copies_on(h, full, 0, n);
    fprintf(stderr, "[available] %d uploads with %s full: all succeeded, %d copies on it\n", n,
            C->ds[full].name, on);
    cr_assert_eq(on, 0, "%d new copies were placed on the full server", on);

    restart_full(full);
    fixture_sizes(seed, n, n, 1, MAX_SIZE, sizes);
    fixture_put_range(h, seed, n, n, sizes, names, 1, "after the full server restarted");
    on = copies_on(h, full, n, n);
    cr_assert_eq(on, 0, "%d copies placed on the full server after its restart", on);
    cr_assert_eq(cluster_check_range(h, seed, 0, 2 * n, (const char(*)[IMGSTORE_NAME_MAX])names, sizes), 0);
    imgstore_close(h);
    C->passed = 1;
}
