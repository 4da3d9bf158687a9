/* Integration test: a file removed with `imgstore rm` is gone from every
 * replica (also after its dataservers restart), a second rm is harmless, and
 * the other files are untouched. */
#include "tests/integ/cluster.h"
#include "tests/integ/fixture.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#define NFILES 12
#define VICTIM 3     /* removed through the CLI */
#define LIB_VICTIM 7 /* removed through the library */
#define CLI_TIMEOUT_MS 30000


static void setup(void)
{
    fixture_start(&(struct cluster_opts){.ndataservers = 3, .replicas = 2});
}


TestSuite(delete, .init = setup, .fini = fixture_stop, .timeout = 120);

static int gone(int rc)
{
    return rc == IMGSTORE_EDELETED || rc == IMGSTORE_ENOTFOUND;
}

static int cli(const char *cmd, const char *name, struct cluster_run *r)
{
    const char *argv[] = {"imgstore", "--ns", C->ns.addr, cmd, name, NULL};
    cr_assert_eq(cluster_run(C, argv, NULL, NULL, CLI_TIMEOUT_MS, r), 0);
    return r->exit_code;
}

/* Every replica listed in st answers the name as deleted or missing. */
static void assert_gone_everywhere(imgstore_t *h, const char *name, const struct imgstore_stat *st,
                                   const char *when)
{
    void *data = NULL;
    size_t len = 0;
    for (int r = 0; r < st->nreplicas; r++) {
        int rc = imgstore_get_from(h, name, st->replicas[r], &data, &len);
        cr_assert(gone(rc), "%s: get_from %s on %s returned %d (%s), want EDELETED or ENOTFOUND",
                  when, name, st->replicas[r], rc, imgstore_strerror(rc));
    }
    int rc = imgstore_get(h, name, &data, &len);
    cr_assert(gone(rc), "%s: get %s returned %d (%s)", when, name, rc, imgstore_strerror(rc));
}

Test(delete, rm_removes_from_every_replica)
{
    cr_assert_not_null(C, "the cluster did not start (see above)");
    uint64_t seed = cluster_seed("delete");
    imgstore_t *h = cluster_client(C);
    cr_assert_not_null(h);
    char names[NFILES][IMGSTORE_NAME_MAX];
    size_t sizes[NFILES];
    for (int i = 0; i < NFILES; i++) {
        sizes[i] = 1000 + (size_t)i * 7919;
        cr_assert_eq(cluster_put_file(h, seed, (uint64_t)i, sizes[i], names[i], 1), 0);
    }

    struct imgstore_stat st, st2;
    cr_assert_eq(imgstore_stat(h, names[VICTIM], &st), 0);
    cr_assert_eq(st.nreplicas, 2, "victim has %d replicas, want 2", st.nreplicas);
    cr_assert_eq(imgstore_stat(h, names[LIB_VICTIM], &st2), 0);

    struct cluster_run r;
    cr_assert_eq(cli("rm", names[VICTIM], &r), 0, "imgstore rm exited %d: %s", r.exit_code, r.err);
    cluster_run_free(&r);

    cr_assert_eq(cli("get", names[VICTIM], &r), 1, "imgstore get of a removed file exited %d",
                 r.exit_code);
    cr_assert_eq(r.out_len, 0, "imgstore get of a removed file wrote %zu bytes", r.out_len);
    cr_assert_gt(r.err_len, 0, "imgstore get of a removed file printed no error");
    cluster_run_free(&r);
    cr_assert_eq(cli("stat", names[VICTIM], &r), 1, "imgstore stat of a removed file exited %d",
                 r.exit_code);
    cluster_run_free(&r);
    assert_gone_everywhere(h, names[VICTIM], &st, "after rm");

    /* A second rm fails or succeeds quietly, but crashes nothing. */
    int code = cli("rm", names[VICTIM], &r);
    cr_assert(code == 0 || code == 1, "second imgstore rm exited %d: %s", code, r.err);
    cluster_run_free(&r);
    cr_assert(cluster_alive(&C->ns), "the nameserver died after a second rm");
    for (int i = 0; i < C->nds; i++)
        cr_assert(cluster_alive(&C->ds[i]), "%s died after a second rm", C->ds[i].name);

    /* The library's delete works the same way. */
    cr_assert_eq(imgstore_unlink(h, names[LIB_VICTIM]), 0);
    assert_gone_everywhere(h, names[LIB_VICTIM], &st2, "after imgstore_unlink");
    int rc = imgstore_unlink(h, names[LIB_VICTIM]);
    cr_assert(rc == 0 || gone(rc), "second imgstore_unlink returned %d (%s)", rc,
              imgstore_strerror(rc));

    for (int i = 0; i < NFILES; i++)
        if (i != VICTIM && i != LIB_VICTIM)
            cr_assert_eq(cluster_check_file(h, names[i], NULL, seed, (uint64_t)i, sizes[i]), 0,
                         "file %d was damaged by the deletes", i);

    /* Tombstones are durable: crash and restart the victim's replicas. */
    for (int k = 0; k < st.nreplicas; k++) {
        int i = cluster_ds_index(C, st.replicas[k]);
        cr_assert_geq(i, 0, "replica %s is not one of our dataservers", st.replicas[k]);
        cluster_signal_proc(&C->ds[i], SIGKILL);
        cr_assert_eq(cluster_start_ds(C, i), 0);
    }
    cr_assert_eq(cluster_wait_ready(C, C->nds, CLUSTER_READY_MS), 0);
    /* A fresh handle: this checks the servers, not the old handle's pooled
     * connections to the killed processes. */
    imgstore_close(h);
    h = cluster_client(C);
    cr_assert_not_null(h);
    assert_gone_everywhere(h, names[VICTIM], &st, "after restarting its replicas");
    for (int i = 0; i < NFILES; i++)
        if (i != VICTIM && i != LIB_VICTIM)
            cr_assert_eq(cluster_check_file(h, names[i], NULL, seed, (uint64_t)i, sizes[i]), 0,
                         "file %d unreadable after the restart", i);
    imgstore_close(h);
    C->passed = 1;
}
