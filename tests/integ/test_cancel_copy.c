/* Integration test of `ds-admin cancel` on a running block copy: the
 * nameserver tells the copying dataserver (CANCEL_COPY), which stops the
 * copy instead of finishing it for the nameserver to delete as an extra
 * replica later (a canceled copy kept using disk and network for seconds).
 *
 * With the copy cap at 1 MB/s and one task per server, a drain copies one
 * 4 MiB block at a time, for about 3 s each (a copy asks for 1 MiB chunks,
 * one per second). Once a fresh copy of at least MIN_COPY bytes runs (its
 * task is listed running and its <id>.blk.copy is on the target), the drain
 * is canceled (nothing plans the block again) and the task with `ds-admin
 * cancel`. Then:
 *   - within a few seconds the target logs the cancel and its temporary file
 *     is gone;
 *   - after the time the copy needed to complete has passed, it did not:
 *     the target never logged it copied and holds no file of the block;
 *   - the task is listed failed ("canceled"), and every file still reads
 *     through every replica. */
#include "tests/integ/cluster.h"
#include "tests/integ/fixture.h"

#include "proto/frame.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BLOCK_SIZE (4u << 20)
#define NFILES 64
#define FILE_SIZE (256u << 10)
#define PUT_ATTEMPTS 10
#define COPY_RATE_MB 1                 /* the copy cap while the test runs */
#define MIN_COPY (3u << 20)            /* a copy this long takes >= 2 s at 1 MB/s */
#define MAX_AGE_MS 1000                /* a copy found later may end before the cancel */
#define FIND_DEADLINE_MS 40000         /* until a long enough copy runs */
#define STOP_DEADLINE_MS 5000          /* the target stops a canceled copy */
#define COMPLETE_SLACK_MS 1500         /* past the time the copy needed */
#define CLI_TIMEOUT_MS 30000
#define POLL_MS 50
#define ID_MAX 80


static void setup(void)
{
    cr_assert_eq(fixture_start(&(struct cluster_opts){.ndataservers = 3, .replicas = 2,
                                                      .block_size = BLOCK_SIZE}),
                 0);
}


TestSuite(cancel_copy, .init = setup, .fini = fixture_stop, .timeout = 180);

/* Runs ds-admin ARGS and fails the test unless it exits 0. */
static void admin_ok(const char *a1, const char *a2, const char *a3)
{
    struct cluster_run r;
    int rc = cluster_admin(C, CLI_TIMEOUT_MS, &r, a1, a2, a3, NULL);
    cr_assert_eq(rc, 0, "ds-admin %s %s %s: exit %d\n%s%s", a1, a2 ? a2 : "", a3 ? a3 : "", rc,
                 r.out ? r.out : "", r.err ? r.err : "");
    cluster_run_free(&r);
}

/* Dataserver whose data folder holds SERVER_ID `id`, or -1. */
static int ds_of(const char *id)
{
    for (int i = 0; i < C->nds; i++) {
        char path[600];
        snprintf(path, sizeof(path), "%s/SERVER_ID", C->ds[i].data);
        void *buf = NULL;
        size_t len = 0;
        int same = cluster_read_file(path, &buf, &len) == 0 && len >= strlen(id) &&
                   memcmp(buf, id, strlen(id)) == 0;
        free(buf);
        if (same)
            return i;
    }
    return -1;
}

/* Whether dataserver i has block `id`'s file with `suffix` (".blk",
 * ".blk.copy") in its data folder. */
static int has_block_file(int i, uint64_t id, const char *suffix)
{
    char path[700];
    snprintf(path, sizeof(path), "%s/blocks/%016" PRIx64 "%s", C->ds[i].data, id, suffix);
    return access(path, F_OK) == 0;
}

/* Whether dataserver i's log holds `text`. */
static int log_has(int i, const char *text)
{
    void *buf = NULL;
    size_t len = 0;
    int found = cluster_read_file(C->ds[i].log, &buf, &len) == 0 &&
                memmem(buf, len, text, strlen(text)) != NULL;
    free(buf);
    return found;
}

static Imgstore__ListTasksResp *list_tasks(imgstore_t *h)
{
    Imgstore__ListTasks q = IMGSTORE__LIST_TASKS__INIT;
    ProtobufCMessage *out = NULL;
    cr_assert_eq(imgstore_admin_call(h, NULL, FT_LIST_TASKS, &q.base,
                                     &imgstore__list_tasks_resp__descriptor, &out),
                 0);
    return (Imgstore__ListTasksResp *)out;
}

/* The copy found running, and when it started (test clock). */
struct running {
    uint64_t task, block, bytes;
    int target;   /* dataserver index */
    int64_t start_ms;
};

/* Waits until a copy task of at least MIN_COPY bytes, started less than
 * MAX_AGE_MS ago, runs and its temporary file is on the target. */
static struct running find_running_copy(imgstore_t *h)
{
    int64_t start = cluster_now_ms();
    while (cluster_now_ms() - start < FIND_DEADLINE_MS) {
        Imgstore__ListTasksResp *r = list_tasks(h);
        struct running found = {.target = -1};
        for (size_t i = 0; i < r->n_tasks && found.target < 0; i++) {
            const Imgstore__Task *t = r->tasks[i];
            if (strcmp(t->state, "running") != 0 || strcmp(t->kind, "replicate") != 0 ||
                t->bytes_total < MIN_COPY || t->age_ms > MAX_AGE_MS)
                continue;
            int d = ds_of(t->target);
            if (d < 0 || !has_block_file(d, t->block_id, ".blk.copy"))
                continue;
            found = (struct running){.task = t->id, .block = t->block_id, .bytes = t->bytes_total,
                                     .target = d,
                                     .start_ms = cluster_now_ms() - (int64_t)t->age_ms};
        }
        protobuf_c_message_free_unpacked(&r->base, NULL);
        if (found.target >= 0)
            return found;
        usleep(POLL_MS * 1000);
    }
    cr_assert_fail("no copy of at least %u bytes ran within %d ms", MIN_COPY, FIND_DEADLINE_MS);
    return (struct running){.target = -1};
}

/* The state and error LIST_TASKS shows for task `id`. */
static void task_outcome(imgstore_t *h, uint64_t id, char *state, char *error, size_t n)
{
    Imgstore__ListTasksResp *r = list_tasks(h);
    snprintf(state, n, "(not listed)");
    error[0] = '\0';
    for (size_t i = 0; i < r->n_tasks; i++)
        if (r->tasks[i]->id == id) {
            snprintf(state, n, "%s", r->tasks[i]->state);
            snprintf(error, n, "%s", r->tasks[i]->error ? r->tasks[i]->error : "");
        }
    protobuf_c_message_free_unpacked(&r->base, NULL);
}

Test(cancel_copy, canceled_copy_stops_on_the_target)
{
    uint64_t seed = cluster_seed("cancel_copy");
    static char names[NFILES][IMGSTORE_NAME_MAX];
    uint32_t sizes[NFILES];
    int deleted[NFILES] = {0};
    imgstore_t *h = cluster_client(C);
    cr_assert_not_null(h);
    for (int i = 0; i < NFILES; i++) {
        sizes[i] = FILE_SIZE;
        cr_assert_eq(cluster_put_file(h, seed, (uint64_t)i, FILE_SIZE, names[i], PUT_ATTEMPTS),
                     0);
    }

    /* Slow copies, one at a time per server, and no balance moves. */
    char rate[16];
    snprintf(rate, sizeof(rate), "%d", COPY_RATE_MB);
    admin_ok("set", "copy_rate", rate);
    admin_ok("set", "task_cap", "1");
    admin_ok("set", "rebalance_band", "50");

    /* Drain the holder of the most blocks: its oldest (full) blocks go first. */
    Imgstore__ClusterStatusResp *st = NULL;
    cr_assert_eq(imgstore_admin_cluster_status(h, &st), 0);
    char victim[ID_MAX] = "";
    uint32_t most = 0;
    for (size_t i = 0; i < st->n_servers; i++)
        if (st->servers[i]->blocks >= most) {
            most = st->servers[i]->blocks;
            snprintf(victim, sizeof(victim), "%s", st->servers[i]->server_id);
        }
    imgstore_admin_free_status(st);
    cr_assert_neq(victim[0], '\0');
    admin_ok("drain", victim, NULL);

    struct running cp = find_running_copy(h);
    fprintf(stderr, "[cancel_copy] task %" PRIu64 ": block %" PRIu64 " (%" PRIu64
                    " bytes) copying to ds%d, canceling it\n",
            cp.task, cp.block, cp.bytes, cp.target + 1);
    admin_ok("drain", victim, "--cancel"); /* nothing plans the block again */
    char task[32];
    snprintf(task, sizeof(task), "%" PRIu64, cp.task);
    admin_ok("cancel", task, NULL);

    /* The target stops the copy and removes its temporary file. */
    char canceled[128], copied[128];
    snprintf(canceled, sizeof(canceled),
             "task %" PRIu64 ": copy of block %" PRIu64 " canceled by the nameserver", cp.task,
             cp.block);
    snprintf(copied, sizeof(copied), "task %" PRIu64 ": block %" PRIu64 " copied from", cp.task,
             cp.block);
    int64_t t0 = cluster_now_ms();
    int stopped = 0;
    while (!stopped && cluster_now_ms() - t0 < STOP_DEADLINE_MS) {
        stopped = log_has(cp.target, canceled) && !has_block_file(cp.target, cp.block, ".blk.copy");
        if (!stopped)
            usleep(POLL_MS * 1000);
    }
    cr_assert(stopped, "ds%d did not stop the canceled copy within %d ms (log line: %s; "
                       "temporary file: %s)",
              cp.target + 1, STOP_DEADLINE_MS, log_has(cp.target, canceled) ? "yes" : "no",
              has_block_file(cp.target, cp.block, ".blk.copy") ? "still there" : "gone");
    fprintf(stderr, "[cancel_copy] ds%d stopped the copy %" PRId64 " ms after the cancel\n",
            cp.target + 1, cluster_now_ms() - t0);

    /* Past the time the whole copy needed, it still did not complete. */
    int64_t done_by = cp.start_ms + (int64_t)(cp.bytes * 1000 / (COPY_RATE_MB * 1000000ull)) +
                      COMPLETE_SLACK_MS;
    while (cluster_now_ms() < done_by)
        usleep(POLL_MS * 1000);
    cr_assert(!log_has(cp.target, copied), "ds%d completed the canceled copy of block %" PRIu64,
              cp.target + 1, cp.block);
    cr_assert(!has_block_file(cp.target, cp.block, ".blk"),
              "ds%d holds block %" PRIu64 " after its copy was canceled", cp.target + 1,
              cp.block);
    cr_assert(!has_block_file(cp.target, cp.block, ".blk.copy"));

    char state[128], error[128];
    task_outcome(h, cp.task, state, error, sizeof(state));
    cr_assert_str_eq(state, "failed", "task %" PRIu64 ": %s", cp.task, state);
    cr_assert(strstr(error, "cancel") != NULL, "task %" PRIu64 " error: %s", cp.task, error);

    imgstore_close(h);
    cr_assert_eq(cluster_check_set(C, seed, NFILES, (const char(*)[IMGSTORE_NAME_MAX])names, sizes,
                                   deleted, "cancel_copy", "after the cancel"),
                 0);
    C->passed = 1;
}
