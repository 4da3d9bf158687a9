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
 *      again (docs/nameserver.md, "Full servers");
 *  (e) a server that comes back serves none of the files deleted while it
 *      was down, from its first answer on;
 *  (f) a holder cut off from the nameserver serves no file deleted
 *      meanwhile to a reader with an old location (suite `lapsed`). */
#include "tests/integ/fixture.h"

#include <criterion/criterion.h>
#include <pthread.h>
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

/* Deletes the even files and reads the odd ones through h, one call
 * each, counting the failures; returns the slowest call's milliseconds. */
static int64_t read_and_delete(imgstore_t *h, int *failed_reads, int *failed_deletes)
{
    int64_t worst = 0;
    *failed_reads = *failed_deletes = 0;
    for (int i = 0; i < NFILES; i++) {
        int64_t t0 = cluster_now_ms();
        if (i % 2 == 0) {
            int rc = imgstore_unlink(h, names[i]);
            if (rc != 0) {
                (*failed_deletes)++;
                fprintf(stderr, "[available] delete %d failed: %s\n", i, imgstore_strerror(rc));
            } else {
                deleted[i] = 1;
            }
        } else if (cluster_check_file(h, names[i], NULL, seed, (uint64_t)i, sizes[i]) != 0) {
            (*failed_reads)++;
        }
        if (cluster_now_ms() - t0 > worst)
            worst = cluster_now_ms() - t0;
    }
    return worst;
}

Test(available, kill_one_then_read_and_delete)
{
    cr_assert_not_null(C, "the cluster did not start (see above)");
    imgstore_t *h = upload_set("available.kill");
    int victim = busiest(h);

    cluster_signal_proc(&C->ds[victim], SIGKILL);
    int64_t t0 = cluster_now_ms();
    int failed_reads, failed_deletes;
    read_and_delete(h, &failed_reads, &failed_deletes);
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

/* A dataserver stopped (SIGSTOP) for less than the heartbeat timeout: the
 * nameserver keeps it in its sets, so deletes of its blocks wait for it;
 * every delete and read issued during the stop succeeds within the
 * library's default deadline, and nothing deleted comes back. The SIGCONT
 * comes from a thread, on time whatever the calls are doing. */
struct resume {
    int ds, after_ms;
};

static void *resume_later(void *arg)
{
    const struct resume *r = arg;
    usleep((useconds_t)r->after_ms * 1000);
    cluster_signal_proc(&C->ds[r->ds], SIGCONT);
    return NULL;
}

Test(available, stop_one_then_delete)
{
    cr_assert_not_null(C, "the cluster did not start (see above)");
    imgstore_t *h = upload_set("available.stop");
    struct resume r = {.ds = busiest(h), .after_ms = HEARTBEAT_TIMEOUT_MS * 2 / 3};
    pthread_t th;
    cluster_signal_proc(&C->ds[r.ds], SIGSTOP);
    cr_assert_eq(pthread_create(&th, NULL, resume_later, &r), 0);
    int64_t t0 = cluster_now_ms();
    int failed_reads, failed_deletes;
    int64_t worst = read_and_delete(h, &failed_reads, &failed_deletes);
    pthread_join(th, NULL);
    fprintf(stderr, "[available] %d reads and %d deletes in %lld ms from a %d ms SIGSTOP of %s: "
            "%d reads failed, %d deletes failed, slowest %lld ms\n", NFILES / 2, NFILES / 2,
            (long long)(cluster_now_ms() - t0), r.after_ms, C->ds[r.ds].name, failed_reads,
            failed_deletes, (long long)worst);
    cr_assert_eq(failed_reads, 0, "%d reads failed around a SIGSTOP", failed_reads);
    cr_assert_eq(failed_deletes, 0, "%d deletes failed around a SIGSTOP", failed_deletes);
    cr_assert_eq(cluster_check_set(C, seed, NFILES, (const char(*)[IMGSTORE_NAME_MAX])names,
                                   sizes, deleted, "available", "after the stop"),
                 0);
    imgstore_close(h);
    C->passed = 1;
}

/* Polls the HTTP origin of dataserver `victim` (just restarted) for 4 s
 * with GETs of the deleted files names[on[0..non-1]]: each must be answered
 * by it alone or proxied to the current holders, never 200. `when` says
 * when they were deleted, for the messages. */
static void poll_origin_for_deleted(int victim, const int *on, int non, const char *when)
{
    int served = 0, answered = 0;
    for (int64_t t0 = cluster_now_ms(); cluster_now_ms() - t0 < 4000;) {
        for (int k = 0; k < non; k++) {
            int st = cluster_get_status(C->ds[victim].http_addr, names[on[k]]);
            answered += st > 0;
            if (st == 200 && served++ == 0)
                fprintf(stderr, "[available] %s served deleted file %d %lld ms after its "
                        "restart\n", C->ds[victim].name, on[k],
                        (long long)(cluster_now_ms() - t0));
        }
    }
    fprintf(stderr, "[available] %d GETs of %d files deleted %s on %s after its restart: %d "
            "served\n", answered, non, when, C->ds[victim].name, served);
    cr_assert_gt(answered, 0, "%s never answered", C->ds[victim].name);
    cr_assert_eq(served, 0, "%s served files deleted %s %d times", C->ds[victim].name, when,
                 served);
}

/* A dataserver killed while its blocks' sets moved on without it, and
 * files of those blocks deleted meanwhile: from its restart on, its HTTP
 * origin never serves one of them (it must not count its old copies as
 * current before the nameserver has told it they are out; commands that
 * arrive before its session is known to lead were refused, and the answer
 * to that full report must then confirm nothing: docs/dataserver.md,
 * "View lease"). Each GET is answered by it alone or proxied to the
 * current holders: never 200. */
Test(available, returning_server_serves_no_deleted_file)
{
    cr_assert_not_null(C, "the cluster did not start (see above)");
    imgstore_t *h = upload_set("available.return");
    int victim = busiest(h);
    int on[NFILES], non = 0;
    for (int i = 0; i < NFILES && non < 50; i++) {
        struct imgstore_stat st;
        cr_assert_eq(imgstore_stat(h, names[i], &st), 0);
        for (int r = 0; r < st.nreplicas; r++)
            if (strcmp(st.replicas[r], C->ds[victim].addr) == 0)
                on[non++] = i;
    }
    cluster_signal_proc(&C->ds[victim], SIGKILL);
    int64_t t0 = cluster_now_ms();
    for (int k = 0; k < non; k++) { /* every set moves on without it */
        for (;;) {
            imgstore_t *q = cluster_client(C);
            struct imgstore_stat st;
            int rc = q ? imgstore_stat(q, names[on[k]], &st) : -1, listed = 0;
            imgstore_close(q);
            for (int r = 0; rc == 0 && r < st.nreplicas; r++)
                listed |= strcmp(st.replicas[r], C->ds[victim].addr) == 0;
            if (rc == 0 && !listed)
                break;
            cr_assert_lt(cluster_now_ms() - t0, 30000, "file %d still lists %s", on[k],
                         C->ds[victim].name);
            usleep(100 * 1000);
        }
        cr_assert_eq(imgstore_unlink(h, names[on[k]]), 0, "delete of file %d", on[k]);
        deleted[on[k]] = 1;
    }
    cr_assert_eq(cluster_start_ds(C, victim), 0);
    poll_origin_for_deleted(victim, on, non, "while it was down");
    imgstore_close(h);
    C->passed = 1;
}

/* A dataserver whose data folder vanished (renamed away: its disk check
 * drops every block of it, while its open block files still work), files
 * of those blocks deleted meanwhile (each retried until acknowledged), the
 * folder renamed back and the server killed and restarted: from its restart
 * on its HTTP origin never serves one of them. With `ns_restart`, the
 * nameserver is restarted just before the folder goes (the chaos run that
 * found this: safe mode while the copies were dropped). */
static void restart_full(int d);

static void vanish_then_return(const char *test, int ns_restart, int third_full)
{
    imgstore_t *h = upload_set(test);
    int victim = busiest(h), other = -1;
    int on[NFILES], non = 0;
    for (int i = 0; i < NFILES && non < 50; i++) {
        struct imgstore_stat st;
        cr_assert_eq(imgstore_stat(h, names[i], &st), 0);
        int has = 0, with = -1;
        for (int r = 0; r < st.nreplicas; r++) {
            int d = cluster_ds_index(C, st.replicas[r]);
            if (d == victim)
                has = 1;
            else
                with = d;
        }
        if (!has || with < 0 || (third_full && other >= 0 && with != other))
            continue;
        other = with;
        on[non++] = i;
    }
    cr_assert_gt(non, 0, "no file has a copy on %s", C->ds[victim].name);
    if (third_full) { /* no server can take a new copy: the set shrinks to one */
        int third = 3 - victim - other;
        restart_full(third);
        fprintf(stderr, "[available] %d files on %s and %s; %s is full\n", non,
                C->ds[victim].name, C->ds[other].name, C->ds[third].name);
    }
    if (ns_restart) {
        cluster_signal_proc(&C->ns, SIGKILL);
        cr_assert_eq(cluster_start_ns(C), 0);
    }
    char gone[600];
    snprintf(gone, sizeof(gone), "%s.vanished", C->ds[victim].data);
    cr_assert_eq(rename(C->ds[victim].data, gone), 0, "rename %s away", C->ds[victim].data);
    int64_t t0 = cluster_now_ms();
    for (;;) { /* its disk check dropped the blocks; the nameserver knows */
        imgstore_t *q = cluster_client(C);
        struct imgstore_stat st;
        int rc = q ? imgstore_stat(q, names[on[0]], &st) : -1, listed = 0;
        imgstore_close(q);
        for (int r = 0; rc == 0 && r < st.nreplicas; r++)
            listed |= strcmp(st.replicas[r], C->ds[victim].addr) == 0;
        if (rc == 0 && !listed)
            break;
        cr_assert_lt(cluster_now_ms() - t0, 30000, "file %d still lists %s", on[0],
                     C->ds[victim].name);
        usleep(50 * 1000);
    }
    fprintf(stderr, "[available] %s's copies dropped %lld ms after its folder vanished\n",
            C->ds[victim].name, (long long)(cluster_now_ms() - t0));
    int failures = 0;
    for (int k = 0; k < non; k++) {
        int rc;
        while ((rc = imgstore_unlink(h, names[on[k]])) != 0) {
            failures++;
            cr_assert_lt(cluster_now_ms() - t0, 60000, "delete of file %d: %s", on[k],
                         imgstore_strerror(rc));
            usleep(100 * 1000);
        }
        deleted[on[k]] = 1;
    }
    fprintf(stderr, "[available] %d deletes acknowledged %lld ms after %s's folder vanished "
            "(%d failed attempts)\n", non, (long long)(cluster_now_ms() - t0),
            C->ds[victim].name, failures);
    cr_assert_eq(rename(gone, C->ds[victim].data), 0, "rename %s back", gone);
    cluster_signal_proc(&C->ds[victim], SIGKILL);
    cr_assert_eq(cluster_start_ds(C, victim), 0);
    poll_origin_for_deleted(victim, on, non, "while its folder was away");
    /* Its old copies are caught up (or replaced): the cluster heals, also
     * when no third server has room, and every file reads as it should. */
    int healed = 0;
    for (t0 = cluster_now_ms(); !healed && cluster_now_ms() - t0 < 30000;) {
        Imgstore__ClusterStatusResp *st = NULL;
        if (cluster_status(C, &st) == 0) {
            healed = st->blocks_under_replicated == 0 && st->blocks_lost == 0;
            imgstore__cluster_status_resp__free_unpacked(st, NULL);
        }
        if (!healed)
            usleep(200 * 1000);
    }
    fprintf(stderr, "[available] %s in %lld ms after the return\n",
            healed ? "healed" : "not healed", (long long)(cluster_now_ms() - t0));
    cr_assert(healed, "blocks still under-replicated 30 s after %s came back",
              C->ds[victim].name);
    cr_assert_eq(cluster_check_set(C, seed, NFILES, (const char(*)[IMGSTORE_NAME_MAX])names,
                                   sizes, deleted, "available", "after the folder came back"),
                 0);
    imgstore_close(h);
    C->passed = 1;
}

Test(available, vanished_folder_serves_no_deleted_file)
{
    cr_assert_not_null(C, "the cluster did not start (see above)");
    vanish_then_return("available.vanish", 0, 0);
}

Test(available, vanished_folder_after_ns_restart_serves_no_deleted_file)
{
    cr_assert_not_null(C, "the cluster did not start (see above)");
    vanish_then_return("available.vanish_ns", 1, 0);
}

/* No third server can take a copy: the nameserver shrinks the set to the
 * one copy left (deletes are journaled), and the copy that comes back must
 * not count as a member of that set. */
Test(available, vanished_folder_no_spare_serves_no_deleted_file)
{
    cr_assert_not_null(C, "the cluster did not start (see above)");
    vanish_then_return("available.vanish_full", 0, 1);
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

/* (e) A holder cut off from the nameserver, while readers still reach it,
 * serves nothing that was deleted meanwhile (docs/chaos-findings.md, "a
 * stale fallback that served a deleted file"). ds1 reaches the nameserver only
 * through a proxy; a reader caches the location {ds1, B} of a file; the
 * proxy is cut; the nameserver moves the block's set on to {B, C}; the file
 * is deleted (acknowledged by B and C); B is killed. The reader's cached
 * location then leads it to B (down) and ds1, whose view lapsed and which
 * never heard of the delete: the reader must ask the nameserver before it
 * reads a lapsed copy, and answer "deleted". */
#define LAPSED_HB_TIMEOUT_MS 2000
#define CACHE_TTL_GUARD_MS 9000 /* the library keeps a location 10 s (client/cache.h) */

static struct cluster_proxy *lapsed_proxy;

static void setup_lapsed(void)
{
    fixture_start(&(struct cluster_opts){.ndataservers = 3, .replicas = 2,
                                         .heartbeat_timeout_ms = LAPSED_HB_TIMEOUT_MS});
}

static void stop_lapsed(void)
{
    cluster_proxy_stop(lapsed_proxy);
    lapsed_proxy = NULL;
    fixture_stop();
}

TestSuite(lapsed, .init = setup_lapsed, .fini = stop_lapsed, .timeout = 120);

/* Whether dataserver d is listed in st. */
static int lists(const struct imgstore_stat *st, int d)
{
    for (int r = 0; r < st->nreplicas; r++)
        if (strcmp(st->replicas[r], C->ds[d].addr) == 0)
            return 1;
    return 0;
}

Test(lapsed, cut_off_holder_serves_no_deleted_file)
{
    cr_assert_not_null(C, "the cluster did not start (see above)");
    /* A file, and one of its two holders as the server to cut off: that
     * one is restarted to reach the nameserver through a proxy. */
    seed = cluster_seed("available.lapsed");
    fixture_upload(seed, 0, 20, 1, MAX_SIZE, PUT_ATTEMPTS, sizes, names);
    imgstore_t *reader = cluster_client(C), *h = cluster_client(C);
    cr_assert(reader && h);
    const int f = 0;
    struct imgstore_stat st;
    cr_assert_eq(imgstore_stat(h, names[f], &st), 0);
    cr_assert_eq(st.nreplicas, 2);
    const int cut = cluster_ds_index(C, st.replicas[1]);
    const int other = cluster_ds_index(C, st.replicas[0]);
    cr_assert(cut >= 0 && other >= 0);
    char via[CLUSTER_ADDR_MAX];
    lapsed_proxy = cluster_proxy_start(C->ns.addr, via, sizeof(via));
    cr_assert_not_null(lapsed_proxy);
    const char *const ns_via[] = {"--ns", via, NULL};
    cluster_signal_proc(&C->ds[cut], SIGTERM);
    C->ds[cut].args = ns_via;
    cr_assert_eq(cluster_start_ds(C, cut), 0);
    cr_assert_eq(cluster_wait_ready(C, C->nds, CLUSTER_READY_MS), 0);
    /* The reader caches the location {other, cut}. */
    cr_assert_eq(cluster_check_file(reader, names[f], NULL, seed, (uint64_t)f, sizes[f]), 0);

    /* Cut; wait for the set to move on without it (a fresh handle each
     * time: no cache). */
    cluster_proxy_cut(lapsed_proxy, 1);
    int64_t t0 = cluster_now_ms();
    for (;;) {
        imgstore_t *q = cluster_client(C);
        int rc = q ? imgstore_stat(q, names[f], &st) : -1;
        imgstore_close(q);
        if (rc == 0 && st.nreplicas == 2 && !lists(&st, cut))
            break;
        cr_assert_lt(cluster_now_ms() - t0, 30000,
                     "the nameserver did not move the set on without the cut-off %s",
                     C->ds[cut].name);
        usleep(100 * 1000);
    }
    fprintf(stderr, "[available] set moved on without %s %lld ms after the cut\n",
            C->ds[cut].name, (long long)(cluster_now_ms() - t0));
    cr_assert_eq(imgstore_unlink(h, names[f]), 0, "delete after the set moved on");
    cluster_signal_proc(&C->ds[other], SIGKILL);
    cr_assert_lt(cluster_now_ms() - t0, CACHE_TTL_GUARD_MS,
                 "the reader's cached location expired before the read (machine too slow "
                 "for this test's timing)");

    void *data = NULL;
    size_t len = 0;
    int rc = imgstore_get(reader, names[f], &data, &len);
    imgstore_free(data);
    fprintf(stderr, "[available] read through the stale location: %s\n",
            rc == 0 ? "the deleted file's bytes" : imgstore_strerror(rc));
    cr_assert(rc == IMGSTORE_EDELETED || rc == IMGSTORE_ENOTFOUND,
              "a reader with the old location read the deleted file (%s)",
              rc == 0 ? "its bytes, from the cut-off copy" : imgstore_strerror(rc));

    /* Healed: ds1 rejoins and learns that its copy is out of the set (a
     * read aimed at one copy, imgstore_get_from, reads a lapsed one until
     * then); the file stays deleted everywhere. */
    cluster_proxy_cut(lapsed_proxy, 0);
    cr_assert_eq(cluster_start_ds(C, other), 0);
    cr_assert_eq(cluster_wait_ready(C, C->nds, CLUSTER_READY_MS), 0);
    for (int d = 0; d < C->nds; d++) {
        t0 = cluster_now_ms();
        while ((rc = cluster_check_file(h, names[f], C->ds[d].addr, seed, (uint64_t)f,
                                        sizes[f])) == 0 &&
               cluster_now_ms() - t0 < 10000)
            usleep(200 * 1000);
        cr_assert_neq(rc, 0, "%s serves the deleted file 10 s after the partition healed",
                      C->ds[d].name);
    }
    imgstore_close(reader);
    imgstore_close(h);
    C->passed = 1;
}
