/* admin_moves.c - ds-admin tasks, cancel, drain and rebalance: the
 * background tasks that move block copies, and the two operations that
 * start them, with their --wait progress (LIST_TASKS, ADMIN_CANCEL_TASK,
 * DRAIN, ADMIN_LIST_BLOCKS, ADMIN_REBALANCE). Called by the command table in
 * tools/ds_admin.c; calls tools/admin.c and the library. */
#include "tools/admin.h"

#include "base/err.h"
#include "proto/frame.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <unistd.h>

#define TASK_DONE "done"
#define TASKS_FINISHED_SHOWN 20 /* finished tasks in the table without --all */
#define BYTES_PER_MB 1e6        /* settings' MB/s are decimal */

/* ---- tasks ------------------------------------------------------------------------ */

/* A task's progress in percent; -1 when unknown (a copy reports its bytes
 * only when it ends). */
static double task_progress(const Imgstore__Task *t)
{
    if (t->state && strcmp(t->state, TASK_DONE) == 0)
        return PCT;
    if (!t->bytes_done || !t->bytes_total)
        return -1;
    double p = admin_pct(t->bytes_done, t->bytes_total);
    return p > PCT ? PCT : p;
}

/* One task as member `key` of j (or, key NULL, its next element). */
static void task_json(struct emit_json *j, const char *key, const Imgstore__Task *t)
{
    emit_json_obj(j, key);
    emit_json_u64(j, "id", t->id);
    emit_json_str(j, "kind", t->kind);
    emit_json_u64(j, "block_id", t->block_id);
    emit_json_str(j, "source", t->source);
    emit_json_str(j, "target", t->target);
    emit_json_str(j, "state", t->state);
    double p = task_progress(t);
    if (p >= 0)
        emit_json_num(j, "progress_pct", 1, p);
    else
        emit_json_null(j, "progress_pct");
    emit_json_u64(j, "bytes_done", t->bytes_done);
    emit_json_u64(j, "bytes_total", t->bytes_total);
    emit_json_u64(j, "age_ms", t->age_ms);
    if (admin_task_running(t) && t->bytes_done && t->age_ms)
        emit_json_u64(j, "bytes_per_s", t->bytes_done * MS_PER_S / t->age_ms);
    else
        emit_json_null(j, "bytes_per_s");
    emit_json_str(j, "reason", t->reason);
    emit_json_str(j, "error", t->error);
    emit_json_end(j);
}

static void tasks_json(const Imgstore__ListTasksResp *r)
{
    struct emit_json j;
    emit_json_init(&j, stdout);
    emit_json_obj(&j, NULL);
    emit_json_u64(&j, "copy_rate_bytes_per_s", r->copy_rate_bytes_per_s);
    emit_json_u64(&j, "task_cap", r->task_cap);
    emit_json_u64(&j, "blocks_lost", r->blocks_lost);
    emit_json_u64(&j, "blocks_under_replicated", r->blocks_under_replicated);
    emit_json_break(&j);
    emit_json_arr(&j, "drains", EMIT_INLINE);
    for (size_t i = 0; i < r->n_drains; i++) {
        emit_json_obj(&j, NULL);
        emit_json_str(&j, "server", r->drains[i]->server_id);
        emit_json_u64(&j, "blocks_left", r->drains[i]->blocks_left);
        emit_json_u64(&j, "shards_left", r->drains[i]->shards_left);
        emit_json_end(&j);
    }
    emit_json_end(&j);
    emit_json_break(&j);
    emit_json_arr(&j, "tasks", EMIT_LINES);
    for (size_t i = 0; i < r->n_tasks; i++)
        task_json(&j, NULL, r->tasks[i]);
    emit_json_end(&j);
    emit_json_end(&j);
}

/* Adds one task as a row of the tasks table. */
static void task_row(struct emit_table *tb, const Imgstore__Task *t)
{
    char a[CLI_HUMAN_MAX];
    emit_cell(tb, "%" PRIu64, t->id);
    emit_text(tb, admin_or_dash(t->kind));
    emit_cell(tb, "%" PRIu64, t->block_id);
    if (t->source && *t->source) /* a copy; a deletion has only the server dropping its copy */
        emit_cell(tb, "%.*s->%.*s", ID_SHOW, t->source, ID_SHOW, admin_or_dash(t->target));
    else
        emit_cell(tb, "%.*s", ID_SHOW, admin_or_dash(t->target));
    double p = task_progress(t);
    if (p >= 0)
        emit_cell(tb, "%.0f%%", p);
    else
        emit_text(tb, "-");
    emit_text(tb, cli_human_size(t->bytes_total, a));
    emit_text(tb, admin_task_running(t) ? admin_rate_text(t->bytes_done, t->age_ms, a) : "-");
    emit_text(tb, admin_or_dash(t->state));
    emit_text(tb, cli_human_ms(t->age_ms, a));
    if (t->error && *t->error)
        emit_cell(tb, "%s: %s", admin_or_dash(t->reason), t->error);
    else
        emit_text(tb, admin_or_dash(t->reason));
}

static int tasks_table(const Imgstore__ListTasksResp *r, int all)
{
    static const char *const header[] = {"ID",       "KIND",  "BLOCK", "SOURCE->TARGET",
                                         "PROGRESS", "BYTES", "RATE",  "STATE",
                                         "AGE",      "REASON"};
    struct emit_table t;
    size_t running = 0, finished = 0;
    emit_table_init(&t, sizeof(header) / sizeof(header[0]), header);
    for (size_t i = 0; i < r->n_tasks; i++) {
        const Imgstore__Task *k = r->tasks[i];
        int run = admin_task_running(k);
        running += run;
        finished += !run;
        if (!run && !all && finished > TASKS_FINISHED_SHOWN)
            continue;
        task_row(&t, k);
    }
    size_t shown = emit_table_rows(&t);
    if (t.err) {
        emit_table_end(&t, NULL);
        return EXIT_FAIL;
    }
    printf("%zu running, %zu finished kept; copy cap %.0f MB/s per server, %u tasks per server\n",
           running, finished, (double)r->copy_rate_bytes_per_s / BYTES_PER_MB, r->task_cap);
    for (size_t i = 0; i < r->n_drains; i++)
        printf("draining %s: %u blocks and %u shards left\n", r->drains[i]->server_id,
               r->drains[i]->blocks_left, r->drains[i]->shards_left);
    if (!shown)
        printf("no background tasks\n");
    emit_table_end(&t, shown ? stdout : NULL);
    if (shown < r->n_tasks)
        printf("(%zu older finished tasks not shown; use --all)\n", r->n_tasks - shown);
    return EXIT_OK;
}

int admin_cmd_tasks(struct admin_ctx *c)
{
    int all = 0;
    for (int i = 1; i < c->argc; i++) {
        if (strcmp(c->argv[i], "--all") == 0)
            all = 1;
        else
            return admin_usage_error("unexpected argument: ", c->argv[i]);
    }
    Imgstore__ListTasksResp *r = NULL;
    int rc = admin_list_tasks(c, &r);
    if (rc != 0)
        return admin_fail(c, "tasks", rc);
    int status = EXIT_OK;
    if (c->json)
        tasks_json(r);
    else
        status = tasks_table(r, all);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    return status;
}

/* ---- cancel ----------------------------------------------------------------------- */

int admin_cmd_cancel(struct admin_ctx *c)
{
    int rc = admin_want_args(c, 1);
    if (rc)
        return rc;
    uint64_t id;
    if (admin_parse_u64(c->argv[1], &id) != 0 || id == 0)
        return admin_usage_error("invalid task id: ", c->argv[1]);
    Imgstore__AdminCancelTask q = IMGSTORE__ADMIN_CANCEL_TASK__INIT;
    q.task_id = id;
    ProtobufCMessage *m = NULL;
    rc = admin_ns_call(c, FT_ADMIN_CANCEL_TASK, &q.base,
                       &imgstore__admin_cancel_task_resp__descriptor, &m);
    if (rc == IMGSTORE_ENOTFOUND) {
        fprintf(stderr, "%s: cancel: no running task %" PRIu64 " (ds-admin tasks lists them)\n",
                ADMIN_PROG, id);
        return EXIT_FAIL;
    }
    if (rc != 0)
        return admin_fail(c, "cancel", rc);
    protobuf_c_message_free_unpacked(m, NULL);
    if (c->json) {
        struct emit_json j;
        emit_json_init(&j, stdout);
        emit_json_obj(&j, NULL);
        emit_json_u64(&j, "task", id);
        emit_json_bool(&j, "canceled", 1);
        emit_json_end(&j);
    } else {
        printf("task %" PRIu64 " canceled; the planner may start its block again in a few "
               "seconds while the cause remains (drain SERVER --cancel stops a drain)\n",
               id);
    }
    return EXIT_OK;
}

/* ---- drain ------------------------------------------------------------------------- */

/* What a server holds: its blocks (ids sorted, owned) and their bytes, from
 * ADMIN_LIST_BLOCKS pages. */
struct holding {
    uint64_t *ids;
    size_t n;
    uint64_t bytes;
};

static int holding_of(struct admin_ctx *c, const char *server, struct holding *h)
{
    memset(h, 0, sizeof(*h));
    Imgstore__AdminListBlocks q = IMGSTORE__ADMIN_LIST_BLOCKS__INIT;
    q.server_id = (char *)server;
    for (;;) {
        ProtobufCMessage *m = NULL;
        int rc = admin_ns_call(c, FT_ADMIN_LIST_BLOCKS, &q.base,
                               &imgstore__admin_list_blocks_resp__descriptor, &m);
        if (rc != 0) {
            free(h->ids);
            h->ids = NULL;
            return rc;
        }
        const Imgstore__AdminListBlocksResp *r = (const Imgstore__AdminListBlocksResp *)m;
        uint64_t *ids = realloc(h->ids, (h->n + r->n_blocks + 1) * sizeof(*ids));
        if (!ids) {
            protobuf_c_message_free_unpacked(m, NULL);
            free(h->ids);
            h->ids = NULL;
            return -ENOMEM;
        }
        h->ids = ids;
        for (size_t i = 0; i < r->n_blocks; i++) {
            h->ids[h->n++] = r->blocks[i]->block_id;
            h->bytes += r->blocks[i]->size;
        }
        int more = r->n_blocks > 0 && r->matched > r->n_blocks;
        if (more)
            q.after_id = r->blocks[r->n_blocks - 1]->block_id;
        protobuf_c_message_free_unpacked(m, NULL);
        if (!more)
            return 0;
    }
}

static int has_id(const struct holding *h, uint64_t id)
{
    for (size_t i = 0; i < h->n; i++)
        if (h->ids[i] == id)
            return 1;
    return 0;
}

/* The state of a drain as seen at one poll. */
struct drain_view {
    int draining;           /* the nameserver still lists the drain */
    uint32_t blocks_left;
    uint32_t shards_left;   /* shards of erasure-coded blocks */
    uint64_t bytes_left;
    const Imgstore__Task *failed; /* a failed task of this drain (borrowed), or NULL */
};

struct drain_wait {
    const char *server;
    struct holding start;  /* what the server held when the wait began */
    uint64_t first_task;   /* tasks with a lower id are older than the wait */
    int64_t t0;
    int tty;
    uint32_t last_blocks, last_shards;
    uint64_t last_bytes;
    int64_t last_line;
};

/* Polls LIST_TASKS and the server's blocks. *tasks is owned by the caller
 * afterwards (free with protobuf_c_message_free_unpacked; v->failed points
 * into it). */
static int drain_poll(struct admin_ctx *c, const struct drain_wait *w, struct drain_view *v,
                      Imgstore__ListTasksResp **tasks)
{
    memset(v, 0, sizeof(*v));
    int rc = admin_list_tasks(c, tasks);
    if (rc != 0)
        return rc;
    const Imgstore__ListTasksResp *r = *tasks;
    for (size_t i = 0; i < r->n_drains; i++)
        if (r->drains[i]->server_id && strcmp(r->drains[i]->server_id, w->server) == 0) {
            v->draining = 1;
            v->blocks_left = r->drains[i]->blocks_left;
            v->shards_left = r->drains[i]->shards_left;
        }
    for (size_t i = 0; i < r->n_tasks && !v->failed; i++) {
        const Imgstore__Task *t = r->tasks[i];
        if (t->id >= w->first_task && t->state && strcmp(t->state, TASK_FAILED) == 0 &&
            has_id(&w->start, t->block_id))
            v->failed = t;
    }
    struct holding now;
    if ((rc = holding_of(c, w->server, &now)) != 0)
        return rc;
    v->bytes_left = now.bytes;
    free(now.ids);
    return 0;
}

/* Prints the progress bar (terminal) or a progress line (when it changed,
 * or every DRAIN_LINE_MS). */
static void drain_show(struct drain_wait *w, const struct drain_view *v)
{
    int64_t el = admin_now_ms() - w->t0;
    uint64_t total = w->start.bytes;
    uint64_t moved = total > v->bytes_left ? total - v->bytes_left : 0;
    double p = total ? admin_pct(moved, total) : (v->blocks_left || v->shards_left ? 0.0 : PCT);
    struct admin_progress pr;
    admin_progress_text(&pr, moved, total, v->bytes_left, el);
    if (w->tty) {
        char bar[BAR_WIDTH + 1];
        admin_bar(bar, (int)(p * BAR_WIDTH / PCT));
        if (moved)
            printf("\r[%s] %3.0f%%  %s of %s  %s  %s left  %u blocks, %u shards left\033[K", bar,
                   p, pr.moved, pr.total, pr.rate, pr.left, v->blocks_left, v->shards_left);
        else
            printf("\r[%s] %3.0f%%  %s of %s  %u blocks, %u shards left\033[K", bar, p, pr.moved,
                   pr.total, v->blocks_left, v->shards_left);
        fflush(stdout);
        return;
    }
    int64_t t = admin_now_ms();
    if (v->blocks_left == w->last_blocks && v->shards_left == w->last_shards &&
        v->bytes_left == w->last_bytes && t - w->last_line < DRAIN_LINE_MS)
        return;
    if (moved)
        printf("drain %s: %.0f%% moved (%s of %s), %u blocks and %u shards left, %s, about %s "
               "left\n",
               w->server, p, pr.moved, pr.total, v->blocks_left, v->shards_left, pr.rate,
               pr.left);
    else
        printf("drain %s: %.0f%% moved (%s of %s), %u blocks and %u shards left\n", w->server, p,
               pr.moved, pr.total, v->blocks_left, v->shards_left);
    fflush(stdout);
    w->last_blocks = v->blocks_left;
    w->last_shards = v->shards_left;
    w->last_bytes = v->bytes_left;
    w->last_line = t;
}

static void drain_json(const struct drain_wait *w, const struct drain_view *v, const char *result)
{
    uint64_t moved = w->start.bytes > v->bytes_left ? w->start.bytes - v->bytes_left : 0;
    struct emit_json j;
    emit_json_init(&j, stdout);
    emit_json_obj(&j, NULL);
    emit_json_str(&j, "server", w->server);
    emit_json_str(&j, "result", result);
    emit_json_bool(&j, "draining", v->draining);
    emit_json_u64(&j, "blocks_left", v->blocks_left);
    emit_json_u64(&j, "shards_left", v->shards_left);
    emit_json_u64(&j, "bytes_total", w->start.bytes);
    emit_json_u64(&j, "bytes_moved", moved);
    emit_json_u64(&j, "bytes_left", v->bytes_left);
    emit_json_i64(&j, "elapsed_ms", admin_now_ms() - w->t0);
    if (v->failed)
        task_json(&j, "failed_task", v->failed);
    emit_json_end(&j);
}

/* The id the next task will have at least (tasks already listed are older). */
static uint64_t next_task_id(struct admin_ctx *c)
{
    Imgstore__ListTasksResp *tasks = NULL;
    uint64_t next = 0;
    if (admin_list_tasks(c, &tasks) != 0)
        return 0;
    for (size_t i = 0; i < tasks->n_tasks; i++)
        if (tasks->tasks[i]->id >= next)
            next = tasks->tasks[i]->id + 1;
    protobuf_c_message_free_unpacked(&tasks->base, NULL);
    return next;
}

/* Waits until `server` holds nothing; tasks from first_task on count. Returns
 * the exit status. */
static int drain_wait(struct admin_ctx *c, const char *server, uint64_t first_task)
{
    struct drain_wait w = {.server = server, .tty = isatty(STDOUT_FILENO), .t0 = admin_now_ms(),
                           .first_task = first_task};
    Imgstore__ListTasksResp *tasks = NULL;
    int rc = holding_of(c, server, &w.start);
    if (rc != 0)
        return admin_fail(c, "drain", rc);
    w.last_blocks = UINT32_MAX;
    admin_catch_sigint();
    int status = EXIT_FAIL;
    struct drain_view v = {0};
    const char *result = "interrupted";
    while (!admin_interrupted) {
        tasks = NULL;
        if ((rc = drain_poll(c, &w, &v, &tasks)) != 0) {
            if (w.tty)
                printf("\n");
            admin_fail(c, "drain --wait", rc);
            result = "error";
            break;
        }
        if (!c->json)
            drain_show(&w, &v);
        if (v.failed || !v.draining || (v.blocks_left == 0 && v.shards_left == 0)) {
            if (w.tty && !c->json)
                printf("\n");
            if (v.failed) {
                result = "task failed";
                fprintf(stderr,
                        "%s: drain %s: task %" PRIu64 " (%s of block %" PRIu64 ") failed: %s; "
                        "the drain goes on and the planner retries (ds-admin tasks)\n",
                        ADMIN_PROG, server, v.failed->id, v.failed->kind, v.failed->block_id,
                        admin_or_dash(v.failed->error));
            } else if (!v.draining) {
                result = "not draining";
                fprintf(stderr, "%s: drain %s: the server is no longer draining (canceled, or "
                                "the nameserver restarted)\n", ADMIN_PROG, server);
            } else {
                result = "done";
                status = EXIT_OK;
                char tot[CLI_HUMAN_MAX], el[CLI_HUMAN_MAX];
                if (!c->json)
                    printf("drain of %s done: %s moved in %s; it holds no block and no shard "
                           "and can be stopped\n",
                           server, cli_human_size(w.start.bytes, tot),
                           cli_human_ms((uint64_t)(admin_now_ms() - w.t0), el));
            }
            if (c->json)
                drain_json(&w, &v, result);
            protobuf_c_message_free_unpacked(&tasks->base, NULL);
            free(w.start.ids);
            return status;
        }
        protobuf_c_message_free_unpacked(&tasks->base, NULL);
        admin_sleep_poll();
    }
    if (admin_interrupted) {
        if (w.tty && !c->json)
            printf("\n");
        fprintf(stderr, "%s: stopped waiting; the drain of %s goes on (ds-admin drain %s "
                        "--cancel stops it)\n", ADMIN_PROG, server, server);
    }
    if (c->json)
        drain_json(&w, &v, result);
    free(w.start.ids);
    return status;
}

static int drain_run(struct admin_ctx *c, const char *server, int wait, int cancel);

int admin_cmd_drain(struct admin_ctx *c)
{
    int wait = 0, cancel = 0;
    const char *server = NULL;
    for (int i = 1; i < c->argc; i++) {
        if (strcmp(c->argv[i], "--wait") == 0)
            wait = 1;
        else if (strcmp(c->argv[i], "--cancel") == 0)
            cancel = 1;
        else if (c->argv[i][0] == '-' && c->argv[i][1])
            return admin_usage_error("unknown option ", c->argv[i]);
        else if (server)
            return admin_usage_error("unexpected argument: ", c->argv[i]);
        else
            server = c->argv[i];
    }
    if (!server)
        return admin_usage_error("missing argument for ", "drain");
    if (wait && cancel)
        return admin_usage_error("--wait and --cancel exclude each other", NULL);
    char *id = NULL;
    int rc = admin_resolve_server(c, "drain", server, &id);
    if (rc != 0)
        return rc;
    rc = drain_run(c, id, wait, cancel);
    free(id);
    return rc;
}

/* Sends DRAIN for server `server`, then waits when asked. */
static int drain_run(struct admin_ctx *c, const char *server, int wait, int cancel)
{
    uint64_t first_task = wait ? next_task_id(c) : 0;
    Imgstore__Drain q = IMGSTORE__DRAIN__INIT;
    q.server_id = (char *)server;
    q.cancel = cancel;
    ProtobufCMessage *m = NULL;
    int rc = admin_ns_call(c, FT_DRAIN, &q.base, &imgstore__drain_resp__descriptor, &m);
    if (rc == IMGSTORE_ENOTFOUND) {
        fprintf(stderr, "%s: drain: no server %s\n", ADMIN_PROG, server);
        return EXIT_FAIL;
    }
    if (rc != 0)
        return admin_fail(c, "drain", rc);
    uint32_t left = ((const Imgstore__DrainResp *)m)->blocks_left;
    uint32_t shards = ((const Imgstore__DrainResp *)m)->shards_left;
    protobuf_c_message_free_unpacked(m, NULL);
    if (wait) {
        if (!c->json)
            printf("draining %s: %u replicas and %u shards to move (Ctrl-C stops waiting, not "
                   "the drain)\n",
                   server, left, shards);
        fflush(stdout);
        return drain_wait(c, server, first_task);
    }
    if (c->json) {
        struct emit_json j;
        emit_json_init(&j, stdout);
        emit_json_obj(&j, NULL);
        emit_json_str(&j, "server", server);
        emit_json_bool(&j, "draining", !cancel);
        emit_json_u64(&j, "blocks_left", left);
        emit_json_u64(&j, "shards_left", shards);
        emit_json_end(&j);
    } else if (cancel) {
        printf("drain of %s canceled: %u replicas and %u shards stay on it\n", server, left,
               shards);
    } else {
        printf("draining %s: %u replicas and %u shards to move (ds-admin drain %s --wait "
               "follows it)\n",
               server, left, shards, server);
    }
    return EXIT_OK;
}

/* ---- rebalance --------------------------------------------------------------------- */

#define REBAL_MOVES_SHOWN 20 /* planned moves in the table (--json lists every one) */

/* Sends ADMIN_REBALANCE. On success *out is the caller's (free with
 * protobuf_c_message_free_unpacked). */
static int rebalance_call(struct admin_ctx *c, int dry_run, Imgstore__AdminRebalanceResp **out)
{
    Imgstore__AdminRebalance q = IMGSTORE__ADMIN_REBALANCE__INIT;
    q.dry_run = dry_run;
    ProtobufCMessage *m = NULL;
    int rc = admin_ns_call(c, FT_ADMIN_REBALANCE, &q.base,
                           &imgstore__admin_rebalance_resp__descriptor, &m);
    *out = (Imgstore__AdminRebalanceResp *)m;
    return rc;
}

static int64_t signed_delta(const Imgstore__RebalanceServer *s)
{
    return s->used >= s->target ? (int64_t)(s->used - s->target) : -(int64_t)(s->target - s->used);
}

/* The balance as member `key` of j (or, key NULL, the document). */
static void rebalance_json(struct emit_json *j, const char *key,
                           const Imgstore__AdminRebalanceResp *r, int dry_run)
{
    emit_json_obj(j, key);
    emit_json_bool(j, "dry_run", dry_run);
    emit_json_num(j, "mean_pct", 3, r->mean * PCT);
    emit_json_num(j, "band_points", 3, r->band * PCT);
    emit_json_bool(j, "balanced", r->balanced);
    emit_json_bool(j, "stuck", r->stuck);
    emit_json_break(j);
    emit_json_u64(j, "moves_running", r->moves_running);
    emit_json_u64(j, "bytes_running", r->bytes_running);
    emit_json_u64(j, "bytes_planned", r->bytes_planned);
    emit_json_bool(j, "truncated", r->truncated);
    emit_json_u64(j, "moves_done", r->moves_done);
    emit_json_u64(j, "moves_failed", r->moves_failed);
    emit_json_u64(j, "bytes_moved", r->bytes_moved);
    emit_json_u64(j, "copy_rate_bytes_per_s", r->copy_rate);
    emit_json_break(j);
    emit_json_arr(j, "servers", EMIT_LINES_OPEN);
    for (size_t i = 0; i < r->n_servers; i++) {
        const Imgstore__RebalanceServer *s = r->servers[i];
        emit_json_obj(j, NULL);
        emit_json_str(j, "server", s->server_id);
        emit_json_bool(j, "eligible", s->eligible);
        emit_json_u64(j, "used_bytes", s->used);
        emit_json_u64(j, "capacity_bytes", s->capacity);
        emit_json_num(j, "used_pct", 3, s->used_fraction * PCT);
        emit_json_u64(j, "target_bytes", s->target);
        emit_json_i64(j, "delta_bytes", signed_delta(s));
        emit_json_bool(j, "in_band", s->in_band);
        emit_json_u64(j, "moves_running", s->moves_running);
        emit_json_end(j);
    }
    emit_json_end(j);
    emit_json_break(j);
    emit_json_arr(j, "moves", EMIT_LINES_OPEN);
    for (size_t i = 0; i < r->n_moves; i++) {
        const Imgstore__RebalanceMove *m = r->moves[i];
        emit_json_obj(j, NULL);
        emit_json_u64(j, "block_id", m->block_id);
        emit_json_str(j, "source", m->source);
        emit_json_str(j, "target", m->target);
        emit_json_u64(j, "bytes", m->bytes);
        emit_json_bool(j, "running", m->running);
        emit_json_u64(j, "task_id", m->task_id);
        emit_json_end(j);
    }
    emit_json_end(j);
    emit_json_end(j);
}

static int rebalance_servers_table(const Imgstore__AdminRebalanceResp *r)
{
    static const char *const header[] = {"SERVER", "USED", "CAPACITY", "USE", "TARGET",
                                         "DELTA",  "BAND", "MOVES"};
    struct emit_table t;
    emit_table_init(&t, sizeof(header) / sizeof(header[0]), header);
    for (size_t i = 0; i < r->n_servers; i++) {
        const Imgstore__RebalanceServer *s = r->servers[i];
        char a[CLI_HUMAN_MAX];
        int64_t d = signed_delta(s);
        emit_cell(&t, "%.*s", ID_SHOW, s->server_id);
        emit_text(&t, cli_human_size(s->used, a));
        emit_text(&t, cli_human_size(s->capacity, a));
        emit_cell(&t, "%.1f%%", s->used_fraction * PCT);
        if (s->eligible) {
            emit_text(&t, cli_human_size(s->target, a));
            emit_cell(&t, "%s%s", d < 0 ? "-" : "+", cli_human_size((uint64_t)(d < 0 ? -d : d), a));
            emit_text(&t, s->in_band ? "in" : "OUT");
        } else {
            emit_text(&t, "-");
            emit_text(&t, "-");
            emit_text(&t, "excluded");
        }
        emit_cell(&t, "%u", s->moves_running);
    }
    return emit_table_end(&t, stdout) == 0 ? EXIT_OK : EXIT_FAIL;
}

static int rebalance_moves_table(const Imgstore__AdminRebalanceResp *r)
{
    static const char *const header[] = {"BLOCK", "SOURCE->TARGET", "SIZE", "STATE"};
    struct emit_table t;
    size_t planned = 0;
    emit_table_init(&t, sizeof(header) / sizeof(header[0]), header);
    for (size_t i = 0; i < r->n_moves; i++) {
        const Imgstore__RebalanceMove *m = r->moves[i];
        if (!m->running && ++planned > REBAL_MOVES_SHOWN)
            continue;
        char a[CLI_HUMAN_MAX];
        emit_cell(&t, "%" PRIu64, m->block_id);
        emit_cell(&t, "%.*s->%.*s", ID_SHOW, m->source, ID_SHOW, m->target);
        emit_text(&t, cli_human_size(m->bytes, a));
        if (m->running)
            emit_cell(&t, "running (task %" PRIu64 ")", m->task_id);
        else
            emit_text(&t, "planned");
    }
    size_t shown = emit_table_rows(&t);
    if (emit_table_end(&t, shown ? stdout : NULL) != 0)
        return EXIT_FAIL;
    if (shown < r->n_moves)
        printf("(%zu more planned moves not shown; --json lists them)\n", r->n_moves - shown);
    return EXIT_OK;
}

static int rebalance_text(const Imgstore__AdminRebalanceResp *r, int dry_run)
{
    char a[CLI_HUMAN_MAX], b[CLI_HUMAN_MAX];
    size_t out = 0;
    for (size_t i = 0; i < r->n_servers; i++)
        out += !r->servers[i]->in_band;
    printf("mean use %.1f%%, band +-%.0f points: %s\n", r->mean * PCT, r->band * PCT,
           r->balanced ? "every server is in the band"
           : r->stuck  ? "servers are out of the band, but no move would help"
                       : "servers are out of the band");
    if (out)
        printf("%zu server%s out of the band\n", out, out == 1 ? "" : "s");
    if (rebalance_servers_table(r) != EXIT_OK)
        return EXIT_FAIL;
    printf("\n%u moves running (%s), %zu planned (%s%s); copy cap %.0f MB/s per server\n",
           r->moves_running, cli_human_size(r->bytes_running, a),
           r->n_moves - r->moves_running, cli_human_size(r->bytes_planned, b),
           r->truncated ? ", more after these" : "", (double)r->copy_rate / BYTES_PER_MB);
    if (r->n_moves && rebalance_moves_table(r) != EXIT_OK)
        return EXIT_FAIL;
    if (dry_run)
        printf("dry run: nothing was started\n");
    else if (!r->balanced && !r->stuck)
        printf("the planner runs the moves (ds-admin rebalance --wait follows them)\n");
    return EXIT_OK;
}

/* Progress of a rebalance --wait. */
struct rebal_wait {
    uint64_t moved0;   /* bytes_moved when the wait began */
    uint32_t failed0;  /* moves_failed when the wait began */
    int64_t t0, last_line;
    uint64_t last_left;
    int tty;
};

static void rebalance_show(struct rebal_wait *w, const Imgstore__AdminRebalanceResp *r)
{
    int64_t el = admin_now_ms() - w->t0;
    uint64_t moved = r->bytes_moved > w->moved0 ? r->bytes_moved - w->moved0 : 0;
    uint64_t left = r->bytes_running + r->bytes_planned, total = moved + left;
    double p = total ? admin_pct(moved, total) : PCT;
    struct admin_progress pr;
    admin_progress_text(&pr, moved, total, left, el);
    if (w->tty) {
        char bar[BAR_WIDTH + 1];
        admin_bar(bar, (int)(p * BAR_WIDTH / PCT));
        printf("\r[%s] %3.0f%%  %s of %s  %s  %s left  %u moves running\033[K", bar, p, pr.moved,
               pr.total, pr.rate, pr.left, r->moves_running);
        fflush(stdout);
        return;
    }
    int64_t t = admin_now_ms();
    if (left == w->last_left && t - w->last_line < DRAIN_LINE_MS)
        return;
    printf("rebalance: %.0f%% moved (%s of %s), %u moves running, %s, about %s left\n", p,
           pr.moved, pr.total, r->moves_running, pr.rate, pr.left);
    fflush(stdout);
    w->last_left = left;
    w->last_line = t;
}

/* Follows the balance until every server is in the band and no move runs.
 * Returns the exit status. */
static int rebalance_wait(struct admin_ctx *c, const Imgstore__AdminRebalanceResp *first)
{
    struct rebal_wait w = {.moved0 = first->bytes_moved, .failed0 = first->moves_failed,
                           .t0 = admin_now_ms(), .tty = isatty(STDOUT_FILENO),
                           .last_left = UINT64_MAX};
    admin_catch_sigint();
    Imgstore__AdminRebalanceResp *r = NULL;
    int status = EXIT_FAIL;
    const char *result = "interrupted";
    while (!admin_interrupted) {
        int rc = rebalance_call(c, 1, &r);
        if (rc != 0) {
            if (w.tty && !c->json)
                printf("\n");
            admin_fail(c, "rebalance --wait", rc);
            result = "error";
            break;
        }
        if (!c->json)
            rebalance_show(&w, r);
        int done = r->balanced && r->moves_running == 0;
        if (done || r->stuck) {
            if (w.tty && !c->json)
                printf("\n");
            uint64_t moved = r->bytes_moved - w.moved0;
            char m[CLI_HUMAN_MAX], el[CLI_HUMAN_MAX];
            cli_human_size(moved, m);
            cli_human_ms((uint64_t)(admin_now_ms() - w.t0), el);
            if (done) {
                result = "done";
                status = EXIT_OK;
                if (!c->json)
                    printf("rebalance done: %s moved in %s; every server is within %.0f points "
                           "of the mean use (%.1f%%)%s\n",
                           m, el, r->band * PCT, r->mean * PCT,
                           r->moves_failed > w.failed0 ? "; some moves failed and were retried"
                                                       : "");
            } else {
                result = "stuck";
                fprintf(stderr, "%s: rebalance: servers stay out of the band but no move would "
                                "help (blocks too large, or only primary copies left on the "
                                "fullest servers); %s moved\n", ADMIN_PROG, m);
            }
            break;
        }
        protobuf_c_message_free_unpacked(&r->base, NULL);
        r = NULL;
        admin_sleep_poll();
    }
    if (admin_interrupted) {
        if (w.tty && !c->json)
            printf("\n");
        fprintf(stderr, "%s: stopped waiting; the balance goes on in the nameserver\n", ADMIN_PROG);
    }
    if (c->json) {
        struct emit_json j;
        emit_json_init(&j, stdout);
        emit_json_obj(&j, NULL);
        emit_json_str(&j, "result", result);
        if (r) {
            emit_json_u64(&j, "bytes_moved", r->bytes_moved - w.moved0);
            emit_json_i64(&j, "elapsed_ms", admin_now_ms() - w.t0);
            rebalance_json(&j, "state", r, 1);
            emit_json_raw(&j, "\n"); /* "state" is printed as a whole document was */
        }
        emit_json_end(&j);
    }
    if (r)
        protobuf_c_message_free_unpacked(&r->base, NULL);
    return status;
}

int admin_cmd_rebalance(struct admin_ctx *c)
{
    int dry_run = 0, wait = 0;
    for (int i = 1; i < c->argc; i++) {
        if (strcmp(c->argv[i], "--dry-run") == 0)
            dry_run = 1;
        else if (strcmp(c->argv[i], "--wait") == 0)
            wait = 1;
        else if (c->argv[i][0] == '-' && c->argv[i][1])
            return admin_usage_error("unknown option ", c->argv[i]);
        else
            return admin_usage_error("unexpected argument: ", c->argv[i]);
    }
    if (dry_run && wait)
        return admin_usage_error("--dry-run and --wait exclude each other", NULL);
    Imgstore__AdminRebalanceResp *r = NULL;
    int rc = rebalance_call(c, dry_run, &r);
    if (rc != 0)
        return admin_fail(c, "rebalance", rc);
    int status;
    if (wait) {
        if (!c->json) {
            char a[CLI_HUMAN_MAX];
            printf("rebalance: mean use %.1f%%, band +-%.0f points, %s to move (Ctrl-C stops "
                   "waiting, not the balance)\n",
                   r->mean * PCT, r->band * PCT,
                   cli_human_size(r->bytes_running + r->bytes_planned, a));
            fflush(stdout);
        }
        status = rebalance_wait(c, r);
    } else if (c->json) {
        struct emit_json j;
        emit_json_init(&j, stdout);
        rebalance_json(&j, NULL, r, dry_run);
        status = EXIT_OK;
    } else {
        status = rebalance_text(r, dry_run);
    }
    protobuf_c_message_free_unpacked(&r->base, NULL);
    return status;
}
