/* Integration test: deletes while a block's replica set is down to one
 * member (docs/nameserver.md, "Delete journal").
 *
 * Three dataservers, replication 2. The third server is made read-only so
 * no repair copy can be placed (repair held back). One member of a block's
 * set is killed with SIGKILL: deletes of the block's files must succeed at
 * once (the primary journals each tombstone at the nameserver). Then the
 * member that took the deletes is killed, the nameserver restarted (the
 * journal survives) and the first member restarted: its old copy is now the
 * only one. Every deleted file must stay deleted (library, each listed
 * replica, every HTTP origin) and every live file of the block must read
 * back once the nameserver has sent the copy the journaled tombstones. */
#include "tests/integ/cluster.h"
#include "tests/integ/fixture.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define NFILES 40
#define CLI_TIMEOUT_MS 30000
#define SETTLE_MS 30000 /* the old copy gets the tombstones and serves */

static void setup(void)
{
    fixture_start(&(struct cluster_opts){.ndataservers = 3,
                                         .replicas = 2,
                                         .heartbeat_timeout_ms = 2000,
                                         .safe_mode_timeout_ms = 3000});
}

TestSuite(deljournal, .init = setup, .fini = fixture_stop, .timeout = 240);

static int gone(int rc)
{
    return rc == IMGSTORE_EDELETED || rc == IMGSTORE_ENOTFOUND;
}


/* The server id of dataserver i (ids are random: asked of the nameserver). */
static void server_id(int i, char *out, size_t n)
{
    Imgstore__ClusterStatusResp *st = NULL;
    cr_assert_eq(cluster_status(C, &st), 0);
    out[0] = '\0';
    for (size_t k = 0; k < st->n_servers; k++)
        if (strcmp(st->servers[k]->addr, C->ds[i].addr) == 0)
            snprintf(out, n, "%s", st->servers[k]->server_id);
    imgstore__cluster_status_resp__free_unpacked(st, NULL);
    cr_assert(out[0], "no server id for %s", C->ds[i].name);
}

/* Waits until n servers are up and safe mode is over (no writable block is
 * possible here: the third server is read-only). */
static void wait_up(int n)
{
    int64_t until = cluster_now_ms() + CLUSTER_READY_MS;
    for (;;) {
        Imgstore__ClusterStatusResp *st = NULL;
        int up = 0, safe = 1;
        if (cluster_status(C, &st) == 0) {
            safe = st->safe_mode;
            for (size_t k = 0; k < st->n_servers; k++)
                up += strcmp(st->servers[k]->state, "up") == 0;
            imgstore__cluster_status_resp__free_unpacked(st, NULL);
        }
        if (up >= n && !safe)
            return;
        cr_assert_lt(cluster_now_ms(), until, "%d servers up (want %d), safe mode %d", up, n,
                     safe);
        usleep(100 * 1000);
    }
}


static int ds_by_name(const char *addr)
{
    int i = cluster_ds_index(C, addr);
    cr_assert_geq(i, 0, "replica %s is not one of our dataservers", addr);
    return i;
}

Test(deljournal, deletes_with_one_member_survive_its_loss)
{
    cr_assert_not_null(C, "the cluster did not start (see above)");
    uint64_t seed = cluster_seed("deljournal");
    imgstore_t *h = cluster_client(C);
    cr_assert_not_null(h);
    char names[NFILES][IMGSTORE_NAME_MAX];
    size_t sizes[NFILES];
    uint64_t blocks[NFILES];
    for (int i = 0; i < NFILES; i++) {
        sizes[i] = 500 + (size_t)i * 331;
        cr_assert_eq(cluster_put_file(h, seed, (uint64_t)i, sizes[i], names[i], 1), 0);
    }
    struct imgstore_stat st;
    cr_assert_eq(imgstore_stat(h, names[0], &st), 0);
    cr_assert_eq(st.nreplicas, 2);
    uint64_t victim_block = st.block_id;
    int a = ds_by_name(st.replicas[0]), b = ds_by_name(st.replicas[1]);
    int t = 3 - a - b; /* the third server */
    int nin = 0;
    for (int i = 0; i < NFILES; i++) {
        struct imgstore_stat s2;
        cr_assert_eq(imgstore_stat(h, names[i], &s2), 0);
        blocks[i] = s2.block_id;
        nin += s2.block_id == victim_block;
    }
    cr_assert_geq(nin, 4, "only %d files in block %llu", nin, (unsigned long long)victim_block);

    /* Hold repair back: the third server takes no copy. */
    struct cluster_run r;
    char tid[80];
    server_id(t, tid, sizeof(tid));
    cr_assert_eq(cluster_admin(C, CLI_TIMEOUT_MS, &r, "readonly", tid, "on", NULL), 0);
    cr_assert_eq(r.exit_code, 0, "ds-admin readonly: %s", r.err);
    cluster_run_free(&r);

    /* Kill one member: the other takes the deletes alone. Which one stays
     * depends on the order in stat's list; kill the second listed. */
    int first = b, taker = a;
    cluster_signal_proc(&C->ds[first], SIGKILL);
    int ndel = 0, failed = 0;
    int deleted[NFILES] = {0};
    for (int i = 0; i < NFILES; i++) {
        if (blocks[i] != victim_block || (i % 2) != 0)
            continue;
        int rc = imgstore_unlink(h, names[i]);
        if (rc != 0) {
            failed++;
            fprintf(stderr, "delete %s failed: %s\n", names[i], imgstore_strerror(rc));
        } else {
            deleted[i] = 1;
        }
        ndel++;
    }
    fprintf(stderr, "deljournal: %d of %d deletes failed with one member left\n", failed, ndel);
    uint64_t med = 0, max = 0;
    int nnotes = cluster_log_latencies(C->ns.log, "journaled in ", &med, &max);
    cr_assert_gt(nnotes, 0, "no delete was journaled at the nameserver");
    fprintf(stderr, "deljournal: %d NOTE_DELETE journaled in the file alone: median %llu us, "
            "max %llu us\n",
            nnotes, (unsigned long long)med, (unsigned long long)max);
    cr_assert_eq(failed, 0, "%d of %d deletes failed while the set had one member", failed,
                 ndel);
    for (int i = 0; i < NFILES; i++)
        if (deleted[i]) {
            void *data = NULL;
            size_t len = 0;
            int rc = imgstore_get(h, names[i], &data, &len);
            cr_assert(gone(rc), "%s readable after its delete: %d", names[i], rc);
        }
    imgstore_close(h);

    /* Lose the member that took the deletes; restart the nameserver (the
     * journal is all that remembers them) and the first member, whose old
     * copy is now the only one. */
    cluster_signal_proc(&C->ds[taker], SIGKILL);
    cluster_signal_proc(&C->ns, SIGKILL);
    cr_assert_eq(cluster_start_ns(C), 0);
    cr_assert_eq(cluster_start_ds(C, first), 0);
    wait_up(2);

    h = cluster_client(C);
    cr_assert_not_null(h);
    /* Every live file of the block reads back once the old copy has the
     * tombstones; no deleted file is ever readable meanwhile. */
    int64_t until = cluster_now_ms() + SETTLE_MS;
    int live_ok = 0;
    while (!live_ok) {
        for (int i = 0; i < NFILES; i++)
            if (deleted[i]) {
                void *data = NULL;
                size_t len = 0;
                int rc = imgstore_get_from(h, names[i], C->ds[first].addr, &data, &len);
                cr_assert(rc != 0, "%s served by %s after the restarts", names[i],
                          C->ds[first].name);
                free(data);
                int code = cluster_get_status(C->ds[first].http_addr, names[i]);
                cr_assert(code != 200, "%s served over HTTP by %s after the restarts", names[i],
                          C->ds[first].name);
                code = cluster_get_status(C->ds[t].http_addr, names[i]);
                cr_assert(code != 200, "%s served over HTTP by %s after the restarts", names[i],
                          C->ds[t].name);
            }
        live_ok = 1;
        for (int i = 0; i < NFILES && live_ok; i++)
            if (blocks[i] == victim_block && !deleted[i])
                live_ok = cluster_check_file(h, names[i], NULL, seed, (uint64_t)i, sizes[i]) == 0;
        if (!live_ok) {
            cr_assert_lt(cluster_now_ms(), until, "the block's live files are still unreadable");
            usleep(200 * 1000);
        }
    }
    /* Now settled: deleted files answer deleted/not found everywhere. */
    for (int i = 0; i < NFILES; i++)
        if (deleted[i]) {
            void *data = NULL;
            size_t len = 0;
            int rc = imgstore_get(h, names[i], &data, &len);
            cr_assert(gone(rc), "%s: get returned %d (%s)", names[i], rc, imgstore_strerror(rc));
            rc = imgstore_get_from(h, names[i], C->ds[first].addr, &data, &len);
            cr_assert(gone(rc), "%s: get_from %s returned %d (%s)", names[i], C->ds[first].name,
                      rc, imgstore_strerror(rc));
            int code = cluster_get_status(C->ds[first].http_addr, names[i]);
            cr_assert(code == 404 || code == 410, "%s: HTTP %d from %s", names[i], code,
                      C->ds[first].name);
            code = cluster_get_status(C->ds[t].http_addr, names[i]);
            cr_assert(code == 404 || code == 410, "%s: HTTP %d from %s", names[i], code,
                      C->ds[t].name);
            /* Deleting again succeeds (idempotent), journaled or not. */
            rc = imgstore_unlink(h, names[i]);
            cr_assert(rc == 0 || gone(rc), "second delete of %s: %d (%s)", names[i], rc,
                      imgstore_strerror(rc));
        }
    imgstore_close(h);
    C->passed = 1;
}
