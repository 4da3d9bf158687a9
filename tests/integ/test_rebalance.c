/* Integration test of rebalancing by used bytes (issue 4) and `ds-admin
 * rebalance` (issue 5): four dataservers with --capacity 128M and 1 MiB
 * blocks hold tens of MB of files; a fifth, empty dataserver joins. Checks:
 *   - `ds-admin rebalance --dry-run --json` shows the fifth server out of
 *     the band and a plan of moves to it;
 *   - the used fractions converge into the band within a bounded time, and
 *     the fifth server ends holding blocks;
 *   - a reader thread reading files all along sees no failure;
 *   - at the end every block has exactly 2 replicas and every file reads
 *     back byte-identical from every replica the nameserver lists;
 *   - `ds-admin rebalance --dry-run --json` then shows an empty plan, and
 *     `ds-admin rebalance --wait` ends at once with exit status 0.
 * And healing leaves a cluster that can still balance (issue 20): two
 * dataservers killed one after the other, each loss repaired, then two new
 * empty servers join; every server up ends within the band, although the
 * dead servers' copies are still in the block map. */
#include "tests/integ/cluster.h"
#include "tests/integ/fixture.h"
#include "tests/integ/json_check.h"

#include "proto/frame.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NFILES 500
#define MIN_SIZE (48u << 10)
#define MAX_SIZE (144u << 10)
#define BLOCK_SIZE (1u << 20)
#define PUT_ATTEMPTS 5
#define BAND_POINTS "2"
#define HEAL_BAND_POINTS "4"
#define COPY_RATE_MB "4"  /* slow enough that the plan is still there when asked */
#define CONVERGE_MS 90000
#define CLI_TIMEOUT_MS 30000
#define POLL_MS 200

static const char *const ds_args[] = {"--capacity", "128M", NULL};

static void setup(void)
{
    fixture_start(&(struct cluster_opts){.ndataservers = 4, .replicas = 2,
                                         .block_size = BLOCK_SIZE, .ds_args = ds_args,
                                         .ns_http = 1});
}

TestSuite(rebalance, .init = setup, .fini = fixture_stop, .timeout = 240);

static uint64_t seed;
static uint32_t sizes[NFILES];
static char names[NFILES][IMGSTORE_NAME_MAX];

/* ds-admin against the test cluster: its exit code, *r filled. */
#define admin(r, ...) cluster_admin(C, CLI_TIMEOUT_MS, r, __VA_ARGS__, NULL)

/* ADMIN_REBALANCE {dry_run} through the library. *out is the caller's. */
static int rebalance_state(imgstore_t *h, Imgstore__AdminRebalanceResp **out)
{
    Imgstore__AdminRebalance q = IMGSTORE__ADMIN_REBALANCE__INIT;
    q.dry_run = 1;
    ProtobufCMessage *m = NULL;
    int rc = imgstore_admin_call(h, NULL, FT_ADMIN_REBALANCE, &q.base,
                                 &imgstore__admin_rebalance_resp__descriptor, &m);
    *out = (Imgstore__AdminRebalanceResp *)m;
    return rc;
}

static void print_state(const char *when, const Imgstore__AdminRebalanceResp *r)
{
    fprintf(stderr, "[rebalance] %s: mean %.2f%%, band %.0f, balanced %d, running %u, "
                    "planned %zu, moved %llu bytes in %u moves (%u failed)\n",
            when, r->mean * 100, r->band * 100, r->balanced, r->moves_running,
            r->n_moves - r->moves_running, (unsigned long long)r->bytes_moved, r->moves_done,
            r->moves_failed);
    for (size_t i = 0; i < r->n_servers; i++)
        fprintf(stderr, "[rebalance]   %s %.2f%% (%llu of %llu bytes)%s\n",
                r->servers[i]->server_id, r->servers[i]->used_fraction * 100,
                (unsigned long long)r->servers[i]->used,
                (unsigned long long)r->servers[i]->capacity,
                r->servers[i]->in_band ? "" : " out of band");
}

/* ---- the reader thread ---------------------------------------------------------- */

static atomic_int reading;
static atomic_long reads, read_failures;

static void *reader(void *arg)
{
    (void)arg;
    imgstore_t *h = cluster_client(C);
    if (!h) {
        atomic_fetch_add(&read_failures, 1);
        return NULL;
    }
    uint64_t rng = seed ^ 0x5eed;
    while (atomic_load(&reading)) {
        int i = (int)(cluster_rand(&rng) % NFILES);
        if (cluster_check_file(h, names[i], NULL, seed, (uint64_t)i, sizes[i]) != 0)
            atomic_fetch_add(&read_failures, 1);
        atomic_fetch_add(&reads, 1);
    }
    imgstore_close(h);
    return NULL;
}

/* ---- checks --------------------------------------------------------------------- */

/* Every file from every replica LOOKUP lists, on a fresh handle. Returns
 * the failures. */
static int check_all(void)
{
    imgstore_t *h = cluster_client(C);
    cr_assert_not_null(h);
    int bad = 0;
    for (int i = 0; i < NFILES; i++)
        bad += cluster_check_replicas(h, names[i], seed, (uint64_t)i, sizes[i], 2, "rebalance",
                                      NULL);
    imgstore_close(h);
    return bad;
}

/* Every block on exactly 2 up replicas. */
static int exact(void)
{
    Imgstore__ClusterStatusResp *st = NULL;
    if (cluster_status(C, &st) != 0)
        return 0;
    uint64_t reps = 0;
    for (size_t i = 0; i < st->n_servers; i++)
        if (strcmp(st->servers[i]->state, "up") == 0)
            reps += st->servers[i]->blocks;
    int ok = st->blocks_under_replicated == 0 && st->blocks_lost == 0 &&
             reps == 2 * st->blocks_total;
    imgstore_admin_free_status(st);
    return ok;
}

/* The start of each test: a running cluster, the data seed of `test`, the
 * band set to `band` points. */
static void begin(const char *test, const char *band)
{
    cr_assert_not_null(C, "cluster did not start");
    seed = cluster_seed(test);
    struct cluster_run r;
    cr_assert_eq(admin(&r, "set", "rebalance_band", band, NULL), 0, "%s", r.err);
    cluster_run_free(&r);
}

Test(rebalance, fifth_server_joins)
{
    begin("rebalance", BAND_POINTS);
    struct cluster_run r;
    cr_assert_eq(admin(&r, "set", "copy_rate", COPY_RATE_MB, NULL), 0, "%s", r.err);
    cluster_run_free(&r);

    imgstore_t *h = cluster_client(C);
    cr_assert_not_null(h);
    fixture_sizes(seed, 0, NFILES, MIN_SIZE, MAX_SIZE, sizes);
    fixture_put_range(h, seed, 0, NFILES, sizes, names, PUT_ATTEMPTS, NULL);
    uint64_t total = 0;
    for (int i = 0; i < NFILES; i++)
        total += sizes[i];
    fprintf(stderr, "[rebalance] %d files, %llu bytes uploaded\n", NFILES,
            (unsigned long long)total);

    atomic_store(&reading, 1);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, reader, NULL), 0);

    /* The fifth server joins, empty. */
    cr_assert_eq(cluster_add_ds(C), 0);
    cr_assert_eq(cluster_wait_ready(C, 5, CLUSTER_READY_MS), 0);
    Imgstore__AdminRebalanceResp *st = NULL;
    int64_t t0 = cluster_now_ms();
    /* Wait for its first heartbeat's capacity to show. */
    for (;;) {
        cr_assert_eq(rebalance_state(h, &st), 0);
        int eligible = 0;
        for (size_t i = 0; i < st->n_servers; i++)
            eligible += st->servers[i]->eligible;
        protobuf_c_message_free_unpacked(&st->base, NULL);
        if (eligible == 5)
            break;
        cr_assert_lt(cluster_now_ms() - t0, 10000, "the fifth server never became eligible");
        usleep(POLL_MS * 1000);
    }

    /* The plan, as an operator sees it. */
    fixture_admin_json(&r, CLI_TIMEOUT_MS, "rebalance", "--dry-run", NULL);
    cr_assert_eq(json_at_bool(r.out, "balanced"), 0, "%s", r.out);
    cr_assert_gt(json_at_num(r.out, "moves[0].block_id"), 0, "a plan of moves: %s", r.out);
    json_t *out_of_band = json_at(r.out, "servers[in_band=false]");
    cr_assert_not_null(out_of_band, "no server out of band: %s", r.out);
    json_decref(out_of_band);
    cluster_run_free(&r);
    cr_assert_eq(admin(&r, "rebalance", "--dry-run", NULL, NULL), 0, "%s", r.err);
    cr_assert(strstr(r.out, "OUT"), "the table marks the server out of the band: %s", r.out);
    cr_assert(strstr(r.out, "dry run: nothing was started"), "%s", r.out);
    cluster_run_free(&r);

    /* Converges into the band. */
    int converged = 0;
    while (cluster_now_ms() - t0 < CONVERGE_MS) {
        cr_assert_eq(rebalance_state(h, &st), 0);
        converged = st->balanced && st->moves_running == 0 && st->n_moves == 0;
        if (converged)
            break;
        protobuf_c_message_free_unpacked(&st->base, NULL);
        st = NULL;
        usleep(POLL_MS * 1000);
    }
    if (st)
        print_state("converged", st);
    cr_assert(converged, "the used fractions did not converge within %d ms", CONVERGE_MS);
    fprintf(stderr, "[rebalance] converged in %lld ms\n",
            (long long)(cluster_now_ms() - t0));
    cr_assert_gt(st->moves_done, 0);
    cr_assert_eq(st->n_servers, 5);
    for (size_t i = 0; i < st->n_servers; i++) {
        const Imgstore__RebalanceServer *s = st->servers[i];
        cr_assert(s->in_band, "%s in the band", s->server_id);
        cr_assert_leq(fabs(s->used_fraction - st->mean), st->band + 1e-9);
    }
    protobuf_c_message_free_unpacked(&st->base, NULL);

    /* Reads went on during the moves. */
    usleep(500 * 1000);
    atomic_store(&reading, 0);
    pthread_join(th, NULL);
    fprintf(stderr, "[rebalance] reader: %ld reads, %ld failures\n", atomic_load(&reads),
            atomic_load(&read_failures));
    cr_assert_gt(atomic_load(&reads), 0);
    cr_assert_eq(atomic_load(&read_failures), 0, "reads failed during the rebalance");

    /* Exactly 2 replicas of every block, every file byte-identical. */
    int64_t t1 = cluster_now_ms();
    while (!exact() && cluster_now_ms() - t1 < 30000)
        usleep(POLL_MS * 1000);
    cr_assert(exact(), "every block has exactly 2 up replicas");
    cr_assert_eq(check_all(), 0, "every file reads back from every replica");

    Imgstore__ClusterStatusResp *cs = NULL;
    cr_assert_eq(cluster_status(C, &cs), 0);
    int fifth_holds = 0;
    for (size_t i = 0; i < cs->n_servers; i++)
        if (strcmp(cs->servers[i]->addr, C->ds[4].addr) == 0)
            fifth_holds = cs->servers[i]->blocks > 0;
    imgstore_admin_free_status(cs);
    cr_assert(fifth_holds, "the fifth server holds blocks");
    /* The moves show in the nameserver's /metrics. */
    double done = cluster_metric(C->ns.http_addr, "imgstore_nameserver_balance_moves_total{result=\"done\"}");
    double moved = cluster_metric(C->ns.http_addr, "imgstore_nameserver_balance_moved_bytes_total");
    fprintf(stderr, "[rebalance] /metrics: %.0f moves done, %.0f bytes moved\n", done, moved);
    cr_assert_gt(done, 0, "imgstore_nameserver_balance_moves_total{result=\"done\"}");
    cr_assert_geq(moved, done * 1024, "imgstore_nameserver_balance_moved_bytes_total");
    cr_assert_eq(cluster_metric(C->ns.http_addr, "imgstore_nameserver_balance_moves_running"), 0);

    /* An empty plan now; --wait ends at once. */
    fixture_admin_json(&r, CLI_TIMEOUT_MS, "rebalance", "--dry-run", NULL);
    cr_assert_eq(json_at_bool(r.out, "balanced"), 1, "%s", r.out);
    cr_assert_eq(json_at_len(r.out, "moves"), 0, "an empty plan: %s", r.out);
    cluster_run_free(&r);
    cr_assert_eq(admin(&r, "rebalance", "--wait", NULL, NULL), 0, "%s%s", r.out, r.err);
    cr_assert(strstr(r.out, "rebalance done"), "%s", r.out);
    cluster_run_free(&r);
    cr_assert_eq(admin(&r, "rebalance", "--wait", "--dry-run", NULL), 2, "usage error");
    cluster_run_free(&r);
    cr_assert_eq(admin(&r, "rebalance", "--help", NULL, NULL), 0);
    cr_assert(strstr(r.out, "--dry-run"), "%s", r.out);
    cluster_run_free(&r);
    imgstore_close(h);
    C->passed = 1;
}

/* ---- healing leaves a cluster that can balance ----------------------------------- */

static void setup_heal(void)
{
    fixture_start(&(struct cluster_opts){.ndataservers = 4, .replicas = 2,
                                         .block_size = BLOCK_SIZE, .ds_args = ds_args,
                                         .heartbeat_timeout_ms = 3000});
}

TestSuite(rebalance_after_heal, .init = setup_heal, .fini = fixture_stop, .timeout = 300);

/* Waits until no block is under-replicated or lost; returns the ms it took. */
static int64_t wait_healed(const char *after)
{
    int64_t t0 = cluster_now_ms();
    for (;;) {
        Imgstore__ClusterStatusResp *st = NULL;
        cr_assert_eq(cluster_status(C, &st), 0);
        int healed = st->blocks_under_replicated == 0 && st->blocks_lost == 0;
        imgstore_admin_free_status(st);
        if (healed)
            return cluster_now_ms() - t0;
        cr_assert_lt(cluster_now_ms() - t0, CONVERGE_MS, "not healed %d ms after %s",
                     CONVERGE_MS, after);
        usleep(POLL_MS * 1000);
    }
}

Test(rebalance_after_heal, two_deaths_then_two_new_servers)
{
    /* 300 files fill 1 MiB blocks of 128 MiB servers to about 11 %: one
     * block is 0.8 point, and the plan stops when no move helps, which can
     * leave a server 2.3 points off; a band of 4 is within reach, while
     * new servers that never fill (the fault this catches) stay ~10 off. */
    begin("rebalance.heal", HEAL_BAND_POINTS);
    imgstore_t *h = cluster_client(C);
    cr_assert_not_null(h);
    const int n = 300;
    fixture_sizes(seed, 0, n, MIN_SIZE, MAX_SIZE, sizes);
    fixture_put_range(h, seed, 0, n, sizes, names, PUT_ATTEMPTS, NULL);

    /* Two deaths, each healed before the next; wait for the planner to
     * see the dead server first. */
    for (int d = 0; d < 2; d++) {
        cluster_signal_proc(&C->ds[d], SIGKILL);
        cr_assert_eq(cluster_wait_down(C, d + 1, 15000), 0);
        fprintf(stderr, "[rebalance] ds%d killed; healed in %lld ms\n", d + 1,
                (long long)wait_healed(C->ds[d].name));
    }
    /* Two empty servers join. */
    cr_assert_eq(cluster_add_ds(C), 0);
    cr_assert_eq(cluster_add_ds(C), 0);
    cr_assert_eq(cluster_wait_ready(C, 4, CLUSTER_READY_MS), 0);

    Imgstore__AdminRebalanceResp *st = NULL;
    int64_t t0 = cluster_now_ms();
    int converged = 0, eligible = 0;
    while (cluster_now_ms() - t0 < CONVERGE_MS) {
        cr_assert_eq(rebalance_state(h, &st), 0);
        eligible = 0;
        for (size_t i = 0; i < st->n_servers; i++)
            eligible += st->servers[i]->eligible;
        converged = eligible == 4 && st->balanced && st->moves_running == 0 && st->n_moves == 0;
        if (converged)
            break;
        protobuf_c_message_free_unpacked(&st->base, NULL);
        st = NULL;
        usleep(POLL_MS * 1000);
    }
    if (!st)
        cr_assert_eq(rebalance_state(h, &st), 0);
    print_state(converged ? "converged" : "not converged", st);
    cr_assert(converged, "the servers up did not all reach the band within %d ms",
              CONVERGE_MS);
    fprintf(stderr, "[rebalance] in the band %lld ms after the new servers joined\n",
            (long long)(cluster_now_ms() - t0));
    for (size_t i = 0; i < st->n_servers; i++) {
        const Imgstore__RebalanceServer *s = st->servers[i];
        if (!s->eligible)
            continue;
        cr_assert(s->in_band, "%s in the band", s->server_id);
        cr_assert_gt(s->used, 0, "%s holds blocks", s->server_id);
    }
    protobuf_c_message_free_unpacked(&st->base, NULL);
    cr_assert_eq(cluster_check_range(h, seed, 0, n, (const char(*)[IMGSTORE_NAME_MAX])names,
                                     sizes),
                 0);
    imgstore_close(h);
    C->passed = 1;
}
