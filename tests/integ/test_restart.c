/* Integration test: restarts. (a) The nameserver stopped with SIGTERM and
 * started again rebuilds its block map from the dataservers' reports: every
 * file stays readable and uploads work. (b) A dataserver killed with SIGKILL
 * and restarted on the same folder reloads its index and serves its files
 * itself; (c) uploads after its restart work. A clean SIGTERM stop exits 0. */
#include "tests/integ/cluster.h"
#include "tests/integ/fixture.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define NFILES 120
#define NNEW 40
#define MAX_SIZE (512u << 10)
#define PUT_ATTEMPTS 3
#define CLI_TIMEOUT_MS 30000

static void setup(void)
{
    fixture_start(&(struct cluster_opts){.ndataservers = 3, .replicas = 2,
                                         .heartbeat_timeout_ms = 3000,
                                         .safe_mode_timeout_ms = 5000});
}

TestSuite(restart, .init = setup, .fini = fixture_stop, .timeout = 180);

static uint64_t seed;
static uint32_t sizes[NFILES + 2 * NNEW];
static char names[NFILES + 2 * NNEW][IMGSTORE_NAME_MAX];

static void put_range(imgstore_t *h, int from, int to, const char *when)
{
    fixture_put_range(h, seed, from, to - from, sizes, names, PUT_ATTEMPTS, when);
}

/* The start of each test: the data set of `test` (its sizes), a handle
 * (the caller's) and files 0..n-1 uploaded through it. */
static imgstore_t *begin(const char *test, int n, const char *when)
{
    cr_assert_not_null(C, "the cluster did not start (see above)");
    seed = cluster_seed(test);
    uint64_t rng = seed;
    for (int i = 0; i < NFILES + 2 * NNEW; i++)
        sizes[i] = cluster_log_size(&rng, MAX_SIZE);
    imgstore_t *h = cluster_client(C);
    cr_assert_not_null(h);
    put_range(h, 0, n, when);
    return h;
}

static void check_range(imgstore_t *h, int from, int to, const char *when)
{
    int bad =
        cluster_check_range(h, seed, from, to, (const char(*)[IMGSTORE_NAME_MAX])names, sizes);
    cr_assert_eq(bad, 0, "%s: %d of %d files unreadable", when, bad, to - from);
}

static void assert_clean_exit(const char *name, int st)
{
    cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
              "%s did not exit cleanly on SIGTERM (wait status 0x%x: %s %d)", name, st,
              st != -1 && WIFEXITED(st) ? "exit code" : "signal",
              st == -1 ? -1 : WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
}

/* Uploads and reads one file through the CLI (a new process, new handle). */
static void cli_roundtrip(void)
{
    char path[300], out[300];
    snprintf(path, sizeof(path), "%s/cli.bin", C->dir);
    snprintf(out, sizeof(out), "%s/cli.out", C->dir);
    char buf[5000];
    cluster_fill(buf, sizeof(buf), seed, 999999);
    cr_assert_eq(cluster_write_file(path, buf, sizeof(buf)), 0);
    const char *put[] = {"imgstore", "--ns", C->ns.addr, "put", path, NULL};
    struct cluster_run r;
    cr_assert_eq(cluster_run(C, put, NULL, NULL, CLI_TIMEOUT_MS, &r), 0);
    cr_assert_eq(r.exit_code, 0, "imgstore put exited %d: %s", r.exit_code, r.err);
    char name[IMGSTORE_NAME_MAX] = "";
    sscanf(r.out, "%31s", name);
    cluster_run_free(&r);
    const char *get[] = {"imgstore", "--ns", C->ns.addr, "get", name, "-o", out, NULL};
    cr_assert_eq(cluster_run(C, get, NULL, NULL, CLI_TIMEOUT_MS, &r), 0);
    cr_assert_eq(r.exit_code, 0, "imgstore get %s exited %d: %s", name, r.exit_code, r.err);
    cluster_run_free(&r);
    fixture_file_holds(out, buf, sizeof(buf), "imgstore get: bytes differ");
}

Test(restart, nameserver)
{
    imgstore_t *h = begin("restart.nameserver", NFILES, "before the restart");

    assert_clean_exit("the nameserver", cluster_signal_proc(&C->ns, SIGTERM));
    cr_assert_eq(cluster_start_ns(C), 0);
    int64_t t0 = cluster_now_ms();
    cr_assert_eq(cluster_wait_ready(C, C->nds, CLUSTER_READY_MS), 0,
                 "the cluster did not recover after the nameserver restart");
    fprintf(stderr, "[restart] cluster ready %lld ms after the nameserver restart\n",
            (long long)(cluster_now_ms() - t0));

    /* The old handle must find its way to the new nameserver process. */
    check_range(h, 0, NFILES, "old handle after the nameserver restart");
    put_range(h, NFILES, NFILES + NNEW, "old handle after the nameserver restart");
    check_range(h, NFILES, NFILES + NNEW, "old handle, new files");
    imgstore_close(h);

    /* A handle that knows nothing must rely on the rebuilt block map. */
    h = cluster_client(C);
    cr_assert_not_null(h);
    check_range(h, 0, NFILES + NNEW, "fresh handle after the nameserver restart");
    put_range(h, NFILES + NNEW, NFILES + 2 * NNEW, "fresh handle after the nameserver restart");
    check_range(h, NFILES + NNEW, NFILES + 2 * NNEW, "fresh handle, new files");
    cli_roundtrip();
    imgstore_close(h);
    C->passed = 1;
}

Test(restart, dataserver)
{
    imgstore_t *h = begin("restart.dataserver", NFILES, "before the crash");

    /* The victim is the dataserver holding the most files. */
    static char where[NFILES][IMGSTORE_MAX_REPLICAS][IMGSTORE_ADDR_MAX];
    static int on_victim[NFILES];
    int per_ds[CLUSTER_MAX_DS] = {0}, victim = 0, count = 0;
    for (int i = 0; i < NFILES; i++) {
        struct imgstore_stat st;
        cr_assert_eq(imgstore_stat(h, names[i], &st), 0);
        memcpy(where[i], st.replicas, sizeof(where[i]));
        for (int r = 0; r < st.nreplicas; r++)
            for (int d = 0; d < C->nds; d++)
                per_ds[d] += strcmp(st.replicas[r], C->ds[d].addr) == 0;
    }
    for (int d = 1; d < C->nds; d++)
        if (per_ds[d] > per_ds[victim])
            victim = d;
    for (int i = 0; i < NFILES; i++) {
        on_victim[i] = 0;
        for (int r = 0; r < IMGSTORE_MAX_REPLICAS; r++)
            on_victim[i] |= strcmp(where[i][r], C->ds[victim].addr) == 0;
        count += on_victim[i];
    }
    fprintf(stderr, "[restart] %d of %d files have a replica on %s\n", count, NFILES,
            C->ds[victim].name);
    cr_assert_gt(count, 0, "no file on the victim: the test proves nothing");

    /* (b) crash, restart on the same folder, serve the old files itself. */
    cluster_signal_proc(&C->ds[victim], SIGKILL);
    cr_assert_eq(cluster_start_ds(C, victim), 0);
    int64_t t0 = cluster_now_ms();
    cr_assert_eq(cluster_wait_ready(C, C->nds, CLUSTER_READY_MS), 0,
                 "the restarted dataserver did not come back up");
    fprintf(stderr, "[restart] %s up again after %lld ms\n", C->ds[victim].name,
            (long long)(cluster_now_ms() - t0));
    imgstore_t *fresh = cluster_client(C);
    cr_assert_not_null(fresh);
    int bad = 0;
    for (int i = 0; i < NFILES; i++)
        if (on_victim[i])
            bad += cluster_check_file(fresh, names[i], C->ds[victim].addr, seed, (uint64_t)i,
                                      sizes[i]) != 0;
    cr_assert_eq(bad, 0, "%d of %d files not served by the restarted %s", bad, count,
                 C->ds[victim].name);
    check_range(h, 0, NFILES, "old handle after the dataserver restart");

    /* (c) uploads after the restart, through both handles. */
    put_range(h, NFILES, NFILES + NNEW, "old handle after the dataserver restart");
    put_range(fresh, NFILES + NNEW, NFILES + 2 * NNEW, "fresh handle after the dataserver restart");
    check_range(fresh, NFILES, NFILES + 2 * NNEW, "files uploaded after the restart");

    /* A clean stop exits 0, and a cleanly stopped server also comes back. */
    const int other = (victim + 1) % C->nds;
    assert_clean_exit(C->ds[other].name, cluster_signal_proc(&C->ds[other], SIGTERM));
    cr_assert_eq(cluster_start_ds(C, other), 0);
    cr_assert_eq(cluster_wait_ready(C, C->nds, CLUSTER_READY_MS), 0);
    imgstore_close(fresh);
    fresh = cluster_client(C);
    cr_assert_not_null(fresh);
    bad = 0;
    for (int i = 0; i < NFILES + 2 * NNEW; i++) {
        struct imgstore_stat st;
        cr_assert_eq(imgstore_stat(fresh, names[i], &st), 0);
        for (int r = 0; r < st.nreplicas; r++)
            if (strcmp(st.replicas[r], C->ds[other].addr) == 0)
                bad += cluster_check_file(fresh, names[i], C->ds[other].addr, seed,
                                          (uint64_t)i, sizes[i]) != 0;
    }
    cr_assert_eq(bad, 0, "%d files not served by %s after its SIGTERM restart", bad,
                 C->ds[other].name);
    imgstore_close(fresh);
    imgstore_close(h);
    C->passed = 1;
}

/* 1 when the dataserver's /readyz answers 200 (it serves its local copies). */
static int ds_ready(int i)
{
    char *body = cluster_http_body(C->ds[i].http_addr, "/readyz");
    free(body);
    return body != NULL;
}

/* Waits up to timeout_ms for ds_ready(i) to become `want`; returns the ms it
 * took, or -1. */
static int wait_ready_state(int i, int want, int timeout_ms)
{
    int64_t t0 = cluster_now_ms();
    while (cluster_now_ms() - t0 < timeout_ms) {
        if (ds_ready(i) == want)
            return (int)(cluster_now_ms() - t0);
        usleep(50 * 1000);
    }
    return -1;
}

/* GET /name from dataserver i's HTTP origin: 0 on 200, -1 otherwise. */
static int origin_get(int i, const char *name)
{
    char path[512];
    snprintf(path, sizeof(path), "/%.480s", name);
    char *body = cluster_http_body(C->ds[i].http_addr, path);
    free(body);
    return body ? 0 : -1;
}

/* The view lease (docs/dataserver.md): a dataserver whose heartbeats go
 * unanswered for half the nameserver's heartbeat timeout is no longer ready
 * (its copies answer IMG_EVIEWOLD: the nameserver may be moving their sets on
 * without it), and ready again once a nameserver has answered its full
 * report. The nameserver is frozen, not killed: it lives on, as behind a
 * partition. Meanwhile every copy has lapsed, so readers that find no
 * current replica read the lapsed ones: the library and the HTTP origin of
 * every dataserver still serve every file. */
Test(restart, view_lease)
{
    imgstore_t *h = begin("restart.view_lease", 20, "before the freeze");
    for (int i = 0; i < C->nds; i++)
        cr_assert_eq(wait_ready_state(i, 1, 10000) >= 0, 1, "ds%d never ready", i + 1);

    /* The origins have served these names before (their location caches
     * are warm, as in front of a CDN). */
    for (int i = 0; i < 20; i++)
        cr_assert_eq(origin_get(i % C->nds, names[i]), 0, "GET %s before the freeze", names[i]);
    cr_assert_eq(kill(C->ns.pid, SIGSTOP), 0);
    /* Lease 1.5 s after the last answered heartbeat's send; checked at each
     * 1 s tick and at each read. */
    int ms = wait_ready_state(0, 0, 6000);
    if (ms < 0)
        kill(C->ns.pid, SIGCONT);
    cr_assert(ms >= 0, "ds1 still served its copies 6 s into a nameserver freeze");
    fprintf(stderr, "[restart] ds1's view lapsed %d ms into the freeze\n", ms);
    for (int i = 0; i < C->nds; i++)
        wait_ready_state(i, 0, 3000);
    int bad = 0, bad_http = 0;
    for (int i = 0; i < 20; i++) {
        bad += cluster_check_file(h, names[i], NULL, seed, (uint64_t)i, sizes[i]) != 0;
        bad_http += origin_get(i % C->nds, names[i]) != 0;
    }
    kill(C->ns.pid, SIGCONT);
    cr_assert_eq(bad, 0, "%d of 20 library reads failed while the nameserver was frozen", bad);
    cr_assert_eq(bad_http, 0, "%d of 20 HTTP GETs failed while the nameserver was frozen",
                 bad_http);

    for (int i = 0; i < C->nds; i++) {
        int back = wait_ready_state(i, 1, 15000);
        cr_assert(back >= 0, "ds%d did not serve again after the nameserver came back", i + 1);
    }
    check_range(h, 0, 20, "after the nameserver came back");
    imgstore_close(h);
    C->passed = 1;
}
