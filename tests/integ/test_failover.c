/* Integration test: with 3 dataservers and 2 replicas, a dataserver killed
 * with SIGKILL loses no file: every file stays readable from its other
 * replica, and uploads keep working, both before and after the nameserver
 * has noticed the loss. */
#include "tests/integ/cluster.h"
#include "tests/integ/fixture.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#define NFILES 200
#define NNEW 40 /* uploads in each phase after the kill */
#define MAX_SIZE (256u << 10)
#define PUT_ATTEMPTS 3
#define HEARTBEAT_TIMEOUT_MS 3000

static void setup(void)
{
    fixture_start(&(struct cluster_opts){.ndataservers = 3, .replicas = 2,
                                         .heartbeat_timeout_ms = HEARTBEAT_TIMEOUT_MS});
}

TestSuite(failover, .init = setup, .fini = fixture_stop, .timeout = 180);

static uint64_t seed;
static uint32_t sizes[NFILES + 2 * NNEW];
static char names[NFILES + 2 * NNEW][IMGSTORE_NAME_MAX];

static int check_range(imgstore_t *h, int from, int to, const char *when)
{
    int bad =
        cluster_check_range(h, seed, from, to, (const char(*)[IMGSTORE_NAME_MAX])names, sizes);
    if (bad)
        fprintf(stderr, "[failover] %s: %d of %d files unreadable\n", when, bad, to - from);
    return bad;
}

static void put_range(imgstore_t *h, int from, int to, const char *when)
{
    fixture_put_range(h, seed, from, to - from, sizes, names, PUT_ATTEMPTS, when);
}

Test(failover, kill_one_dataserver)
{
    cr_assert_not_null(C, "the cluster did not start (see above)");
    seed = cluster_seed("failover");
    uint64_t rng = seed;
    for (int i = 0; i < NFILES + 2 * NNEW; i++)
        sizes[i] = cluster_log_size(&rng, MAX_SIZE);
    imgstore_t *h = cluster_client(C);
    cr_assert_not_null(h);
    put_range(h, 0, NFILES, "before the kill");

    /* The victim is the dataserver holding the most files. */
    int on;
    int victim = fixture_busiest_ds(h, (const char(*)[IMGSTORE_NAME_MAX])names, NFILES, 2, &on);
    fprintf(stderr, "[failover] %d of %d files have a replica on %s, which is killed now\n", on,
            NFILES, C->ds[victim].name);

    cluster_signal_proc(&C->ds[victim], SIGKILL);
    int64_t t0 = cluster_now_ms();
    cr_assert_eq(check_range(h, 0, NFILES, "right after the kill"), 0);
    fprintf(stderr, "[failover] %d files read back in %lld ms after the kill\n", NFILES,
            (long long)(cluster_now_ms() - t0));

    /* Before the nameserver has noticed: the library must route around. */
    put_range(h, NFILES, NFILES + NNEW, "right after the kill");
    cr_assert_eq(check_range(h, NFILES, NFILES + NNEW, "new files"), 0);

    cr_assert_eq(cluster_wait_down(C, 1, HEARTBEAT_TIMEOUT_MS + 10000), 0,
                 "the nameserver did not mark the killed dataserver down");
    put_range(h, NFILES + NNEW, NFILES + 2 * NNEW, "after the nameserver noticed");
    cr_assert_eq(check_range(h, 0, NFILES + 2 * NNEW, "after the nameserver noticed"), 0);

    /* A new handle (no cached locations) reads everything too. */
    imgstore_close(h);
    h = cluster_client(C);
    cr_assert_not_null(h);
    cr_assert_eq(check_range(h, 0, NFILES + 2 * NNEW, "with a fresh handle"), 0);
    cr_assert(cluster_alive(&C->ns), "the nameserver died");
    for (int i = 0; i < C->nds; i++)
        cr_assert(i == victim || cluster_alive(&C->ds[i]), "%s died", C->ds[i].name);
    imgstore_close(h);
    C->passed = 1;
}
