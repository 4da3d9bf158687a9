/* Integration test of self-healing (issue 4) on four dataservers with 1 MiB
 * blocks and 2 replicas, in three phases on one cluster:
 *   1. kill -9 the dataserver holding the most files: every block is copied
 *      back to 2 up replicas on the survivors within a bounded time, and every
 *      file reads back byte-identical from every replica the nameserver lists;
 *      then every tenth file is deleted: the killed server was the primary of
 *      many of their sealed blocks (a survivor is promoted), and the new
 *      copies got the tombstones (SET_REPLICAS), so no server serves them;
 *   2. the killed server restarts with its old copies, which lack those
 *      tombstones: its primary roles are taken back from it, its stale copies
 *      are caught up or deleted until every block has exactly 2 replicas, and
 *      still no server serves a deleted file;
 *   3. DRAIN of one server: it ends holding nothing, every file is readable
 *      from every listed replica, and LIST_TASKS shows the work done; a
 *      client handle that cached the old locations meets the drained server
 *      at most once per moved block (a "block not here" answer drops the
 *      cached location even when another replica served the read). */
#include "tests/integ/cluster.h"
#include "tests/integ/fixture.h"

#include "proto/frame.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define NFILES 1000
#define MIN_SIZE (64u << 10)
#define MAX_SIZE (256u << 10)
#define BLOCK_SIZE (1u << 20)
#define PUT_ATTEMPTS 3
#define HEARTBEAT_TIMEOUT_MS 2000
#define HEAL_DEADLINE_MS 60000
#define RPC_TIMEOUT_MS 5000

static void setup(void)
{
    fixture_start(&(struct cluster_opts){.ndataservers = 4, .replicas = 2,
                                         .block_size = BLOCK_SIZE,
                                         .heartbeat_timeout_ms = HEARTBEAT_TIMEOUT_MS});
}

TestSuite(heal, .init = setup, .fini = fixture_stop, .timeout = 150);

static uint64_t seed;
static uint32_t sizes[NFILES];
static char names[NFILES][IMGSTORE_NAME_MAX];
static int deleted[NFILES];

#define DELETE_EVERY 10
#define DELETE_RETRY_MS 15000

/* A deleted file must not be served by any running dataserver. Returns the
 * number of servers that served it. */
static int check_deleted(imgstore_t *h, int i)
{
    int bad = 0;
    for (int d = 0; d < C->nds; d++) {
        if (!cluster_alive(&C->ds[d]))
            continue;
        void *data = NULL;
        size_t len = 0;
        int rc = imgstore_get_from(h, names[i], C->ds[d].addr, &data, &len);
        if (rc == 0) {
            fprintf(stderr, "[heal] deleted file %d served by %s\n", i, C->ds[d].name);
            imgstore_free(data);
            bad++;
        }
    }
    return bad;
}

/* Reads every file from every replica LOOKUP lists (fresh handle: no cached
 * locations). Returns the number of failures. */
static int check_all(const char *when, int want_replicas)
{
    imgstore_t *h = cluster_client(C);
    cr_assert_not_null(h);
    int bad = 0;
    for (int i = 0; i < NFILES; i++) {
        if (deleted[i]) {
            bad += check_deleted(h, i);
            continue;
        }
        bad += cluster_check_replicas(h, names[i], seed, (uint64_t)i, sizes[i], want_replicas,
                                      "heal", when);
    }
    imgstore_close(h);
    if (bad)
        fprintf(stderr, "[heal] %s: %d failures\n", when, bad);
    return bad;
}

/* Reads every live file `times` times through h (any replica). Returns the
 * number of failures. */
static int read_live(imgstore_t *h, int times)
{
    int bad = 0;
    for (int t = 0; t < times; t++)
        for (int i = 0; i < NFILES; i++)
            if (!deleted[i])
                bad += cluster_check_file(h, names[i], NULL, seed, (uint64_t)i, sizes[i]) != 0;
    return bad;
}

/* READ requests dataserver d answered with "block not here". */
static double stale_reads(int d)
{
    double ok = cluster_metric(C->ds[d].http_addr, "imgstore_ds_requests_total{op=\"read\","
                                                   "status=\"ok\"}");
    cr_assert_geq(ok, 0, "no read metrics from %s", C->ds[d].name);
    double n = cluster_metric(C->ds[d].http_addr, "imgstore_ds_requests_total{op=\"read\","
                                                  "status=\"noblockhere\"}");
    return n < 0 ? 0 : n; /* the series appears with its first count */
}

static const Imgstore__ServerStatus *server_of(const Imgstore__ClusterStatusResp *st,
                                               const char *addr)
{
    for (size_t i = 0; i < st->n_servers; i++)
        if (strcmp(st->servers[i]->addr, addr) == 0)
            return st->servers[i];
    return NULL;
}

/* Replicas held by up servers, summed. */
static uint64_t up_replicas(const Imgstore__ClusterStatusResp *st)
{
    uint64_t n = 0;
    for (size_t i = 0; i < st->n_servers; i++)
        if (strcmp(st->servers[i]->state, "up") == 0)
            n += st->servers[i]->blocks;
    return n;
}

typedef int (*cond_fn)(const Imgstore__ClusterStatusResp *st, const void *arg);

/* Polls the cluster status until cond holds; returns the elapsed ms or -1. */
static int64_t wait_until(cond_fn cond, const void *arg, int timeout_ms, const char *what)
{
    int64_t t0 = cluster_now_ms();
    Imgstore__ClusterStatusResp *st = NULL;
    while (cluster_now_ms() - t0 < timeout_ms) {
        imgstore_admin_free_status(st);
        st = NULL;
        if (cluster_status(C, &st) == 0 && cond(st, arg)) {
            imgstore_admin_free_status(st);
            return cluster_now_ms() - t0;
        }
        usleep(100 * 1000);
    }
    if (st)
        fprintf(stderr, "[heal] timed out waiting for %s: %llu blocks, %llu under-replicated, "
                        "%llu lost, %llu up replicas\n",
                what, (unsigned long long)st->blocks_total,
                (unsigned long long)st->blocks_under_replicated,
                (unsigned long long)st->blocks_lost, (unsigned long long)up_replicas(st));
    imgstore_admin_free_status(st);
    cluster_dump_logs(C, 30);
    return -1;
}

static int healed(const Imgstore__ClusterStatusResp *st, const void *arg)
{
    (void)arg;
    return st->blocks_under_replicated == 0 && st->blocks_lost == 0 &&
           up_replicas(st) >= 2 * st->blocks_total;
}

static int exact(const Imgstore__ClusterStatusResp *st, const void *arg)
{
    (void)arg;
    return st->blocks_under_replicated == 0 && st->blocks_lost == 0 &&
           up_replicas(st) == 2 * st->blocks_total;
}

static int drained(const Imgstore__ClusterStatusResp *st, const void *arg)
{
    const Imgstore__ServerStatus *s = server_of(st, arg);
    return s && s->blocks == 0 && exact(st, NULL);
}

/* Sends one admin request to the nameserver through a fresh library handle
 * (with the cluster's operator key: DRAIN needs it) and unpacks the answer
 * with `desc`. Returns the status or an error. */
static int ns_call(unsigned type, const ProtobufCMessage *req,
                   const ProtobufCMessageDescriptor *desc, void **resp)
{
    imgstore_t *h = cluster_client(C);
    if (!h)
        return -5;
    ProtobufCMessage *m = NULL;
    int rc = imgstore_admin_call(h, NULL, type, req, desc, &m);
    imgstore_close(h);
    *resp = m;
    return rc == 0 && !m ? -5 : rc;
}

static void print_tasks(void)
{
    Imgstore__ListTasks lt = IMGSTORE__LIST_TASKS__INIT;
    Imgstore__ListTasksResp *r = NULL;
    int rc = ns_call(FT_LIST_TASKS, &lt.base, &imgstore__list_tasks_resp__descriptor, (void **)&r);
    cr_assert_eq(rc, 0, "LIST_TASKS failed: %d", rc);
    size_t done = 0, failed = 0, caught_up = 0;
    for (size_t i = 0; i < r->n_tasks; i++) {
        caught_up += strcmp(r->tasks[i]->state, "done") == 0 &&
                     strcmp(r->tasks[i]->reason, "stale copy") == 0;
        done += strcmp(r->tasks[i]->state, "done") == 0;
        failed += strcmp(r->tasks[i]->state, "failed") == 0;
    }
    fprintf(stderr, "[heal] LIST_TASKS: %zu tasks listed (%zu done, %zu failed), %llu lost, "
                    "cap %u, rate %llu B/s\n",
            r->n_tasks, done, failed, (unsigned long long)r->blocks_lost, r->task_cap,
            (unsigned long long)r->copy_rate_bytes_per_s);
    fprintf(stderr, "[heal] %zu stale copies caught up\n", caught_up);
    cr_assert_gt(done, 0, "no finished task listed");
    cr_assert_eq(r->blocks_lost, 0);
    imgstore__list_tasks_resp__free_unpacked(r, NULL);
}

Test(heal, kill_restart_drain)
{
    cr_assert_not_null(C, "the cluster did not start (see above)");
    seed = cluster_seed("heal");
    fixture_sizes(seed, 0, NFILES, MIN_SIZE, MAX_SIZE, sizes);
    imgstore_t *h = cluster_client(C);
    cr_assert_not_null(h);
    int64_t t0 = cluster_now_ms();
    fixture_put_range(h, seed, 0, NFILES, sizes, names, PUT_ATTEMPTS, NULL);
    imgstore_close(h);
    Imgstore__ClusterStatusResp *st = NULL;
    cr_assert_eq(cluster_status(C, &st), 0);
    fprintf(stderr, "[heal] %d files in %llu blocks uploaded in %lld ms\n", NFILES,
            (unsigned long long)st->blocks_total, (long long)(cluster_now_ms() - t0));
    cr_assert_gt(st->blocks_total, 100, "too few blocks for the test to mean much");
    int victim = 0;
    for (int d = 1; d < C->nds; d++)
        if (server_of(st, C->ds[d].addr)->blocks > server_of(st, C->ds[victim].addr)->blocks)
            victim = d;
    fprintf(stderr, "[heal] killing %s with %u replicas\n", C->ds[victim].name,
            server_of(st, C->ds[victim].addr)->blocks);
    imgstore_admin_free_status(st);

    /* 1. Lost redundancy is repaired on the survivors. */
    cluster_signal_proc(&C->ds[victim], SIGKILL);
    cr_assert_eq(cluster_wait_down(C, 1, HEARTBEAT_TIMEOUT_MS + 10000), 0);
    int64_t ms = wait_until(healed, NULL, HEAL_DEADLINE_MS, "re-replication");
    cr_assert_geq(ms, 0, "blocks not back to 2 replicas within %d ms", HEAL_DEADLINE_MS);
    fprintf(stderr, "[heal] every block back to 2 up replicas %lld ms after the kill was noticed\n",
            (long long)ms);
    cr_assert_eq(check_all("after re-replication", 2), 0);

    /* Deletes on blocks whose primary was killed, some re-replicated. */
    h = cluster_client(C);
    cr_assert_not_null(h);
    int ndel = 0, retried = 0;
    for (int i = 0; i < NFILES; i += DELETE_EVERY) {
        int64_t t1 = cluster_now_ms();
        int rc;
        while ((rc = imgstore_unlink(h, names[i])) != 0 &&
               cluster_now_ms() - t1 < DELETE_RETRY_MS) {
            retried++;
            usleep(200 * 1000);
        }
        cr_assert_eq(rc, 0, "delete of file %d failed: %s", i, imgstore_strerror(rc));
        deleted[i] = 1;
        ndel++;
    }
    imgstore_close(h);
    fprintf(stderr, "[heal] %d files deleted (%d retries)\n", ndel, retried);
    cr_assert_eq(check_all("after deletes on re-replicated blocks", 2), 0);

    /* 2. The old server comes back: its now extra copies are deleted. */
    cr_assert_eq(cluster_start_ds(C, victim), 0);
    cr_assert_eq(cluster_wait_ready(C, 4, 20000), 0);
    ms = wait_until(exact, NULL, HEAL_DEADLINE_MS, "extra copies deleted");
    cr_assert_geq(ms, 0, "extra copies not deleted within %d ms", HEAL_DEADLINE_MS);
    fprintf(stderr, "[heal] extra copies deleted %lld ms after the restart\n", (long long)ms);
    cr_assert_eq(check_all("after extra copies were deleted", 2), 0);

    /* 3. Drain one server until it holds nothing. A reader handle caches
     * every block's location first, so it holds the drained server's. */
    int drain = (victim + 1) % C->nds;
    imgstore_t *hr = cluster_client(C);
    cr_assert_not_null(hr);
    cr_assert_eq(read_live(hr, 1), 0);
    cr_assert_eq(cluster_status(C, &st), 0);
    const Imgstore__ServerStatus *ss = server_of(st, C->ds[drain].addr);
    cr_assert_not_null(ss);
    uint32_t drained_blocks = ss->blocks;
    Imgstore__Drain dr = IMGSTORE__DRAIN__INIT;
    dr.server_id = ss->server_id;
    fprintf(stderr, "[heal] draining %s (%u replicas)\n", C->ds[drain].name, ss->blocks);
    Imgstore__DrainResp *dresp = NULL;
    int rc = ns_call(FT_DRAIN, &dr.base, &imgstore__drain_resp__descriptor, (void **)&dresp);
    imgstore_admin_free_status(st);
    cr_assert_eq(rc, 0, "DRAIN failed: %d", rc);
    imgstore__drain_resp__free_unpacked(dresp, NULL);
    ms = wait_until(drained, C->ds[drain].addr, HEAL_DEADLINE_MS, "drain");
    cr_assert_geq(ms, 0, "drain not finished within %d ms", HEAL_DEADLINE_MS);
    fprintf(stderr, "[heal] %s drained in %lld ms\n", C->ds[drain].name, (long long)ms);
    cr_assert_eq(check_all("after the drain", 2), 0);
    /* The reader's cached locations still name the drained server: the
     * first read of each moved block that tries it gets "block not here"
     * and drops the stale location, so later reads go to the new holders.
     * Three reads of every file may meet it at most once per block. */
    double stale0 = stale_reads(drain);
    cr_assert_eq(read_live(hr, 3), 0);
    double stale = stale_reads(drain) - stale0;
    fprintf(stderr, "[heal] after the drain, %d reads of every file through an old handle: %.0f "
                    "went to the drained server (it held %u blocks)\n",
            3, stale, drained_blocks);
    cr_assert_leq(stale, drained_blocks, "a stale location was kept after \"block not here\"");
    imgstore_close(hr);
    print_tasks();
    for (int i = 0; i < C->nds; i++)
        cr_assert(cluster_alive(&C->ds[i]), "%s died", C->ds[i].name);
    cr_assert(cluster_alive(&C->ns), "the nameserver died");
    C->passed = 1;
}
