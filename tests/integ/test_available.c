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
 *      already deleted, `imgstore rm` exits 0 with a note. */
#include "tests/integ/fixture.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    cr_assert_eq(cluster_check_set(C, seed, NFILES, (const char(*)[IMGSTORE_NAME_MAX])names,
                                   sizes, deleted, "available", "after the server came back"),
                 0);
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
