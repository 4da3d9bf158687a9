/* admin_check.c - ds-admin verify, compact and repair: checking stored
 * records now, compacting blocks with deleted bytes and fixing the copies of
 * one block, each with --wait (VERIFY, ADMIN_COMPACT, ADMIN_REPAIR,
 * LIST_TASKS). Called by the command table in tools/ds_admin.c; calls
 * tools/admin.c and the library. */
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

#define VERIFY_TIMEOUT_MS (3600 * 1000) /* one VERIFY answer, unless --timeout */

/* An argument of verify, compact or repair that no option took: an unknown
 * option, or the command's one BLOCK id, parsed into *block. Returns 0, or
 * the usage error's exit status (printed). */
static int block_operand(const char *arg, uint64_t *block)
{
    if (arg[0] == '-')
        return admin_usage_error("unknown option ", arg);
    if (*block || admin_parse_u64(arg, block) != 0 || *block == 0)
        return admin_usage_error("invalid block id: ", arg);
    return 0;
}

/* ---- verify ------------------------------------------------------------------------ */

/* One dataserver asked to VERIFY, and its answer. */
struct verify_target {
    char *id, *addr;                 /* owned */
    int rc;
    Imgstore__VerifyResp *resp;      /* when rc == 0 (owned) */
};

static void targets_free(struct verify_target *t, size_t n)
{
    for (size_t i = 0; t && i < n; i++) {
        free(t[i].id);
        free(t[i].addr);
        if (t[i].resp)
            protobuf_c_message_free_unpacked(&t[i].resp->base, NULL);
    }
    free(t);
}

static int target_add(struct verify_target **t, size_t *n, const char *id, const char *addr)
{
    struct verify_target *nt = realloc(*t, (*n + 1) * sizeof(*nt));
    if (!nt)
        return -ENOMEM;
    *t = nt;
    nt[*n] = (struct verify_target){.id = strdup(id ? id : ""), .addr = strdup(addr ? addr : "")};
    if (!nt[*n].id || !nt[*n].addr) {
        free(nt[*n].id);
        free(nt[*n].addr);
        return -ENOMEM;
    }
    (*n)++;
    return 0;
}

/* The servers to ask: the up replicas of `block` (when non-zero), else server
 * `only` (when not NULL), else every up server. Returns 0 or EXIT_FAIL (printed). */
static int verify_targets(struct admin_ctx *c, uint64_t block, const char *only,
                          struct verify_target **t, size_t *n)
{
    int rc = 0;
    if (block) {
        Imgstore__AdminBlockInfoResp *info = NULL;
        if ((rc = admin_block_info(c, block, &info)) == IMGSTORE_ENOTFOUND) {
            fprintf(stderr, "%s: verify: block %" PRIu64 ": not in the block map\n", ADMIN_PROG,
                    block);
            return EXIT_FAIL;
        }
        if (rc != 0)
            return admin_fail(c, "verify", rc);
        for (size_t i = 0; rc == 0 && i < info->block->n_replicas; i++)
            if (info->block->replicas[i]->up)
                rc = target_add(t, n, info->block->replicas[i]->server_id,
                                info->block->replicas[i]->addr);
        protobuf_c_message_free_unpacked(&info->base, NULL);
        return rc ? admin_fail(c, "verify", rc) : 0;
    }
    char *id = NULL;
    if (only && (rc = admin_resolve_server(c, "verify", only, &id)) != 0)
        return rc;
    Imgstore__ClusterStatusResp *st = NULL;
    if ((rc = imgstore_admin_cluster_status(c->h, &st)) != 0) {
        free(id);
        return admin_fail(c, "verify", rc);
    }
    for (size_t i = 0; rc == 0 && i < st->n_servers; i++) {
        const Imgstore__ServerStatus *s = st->servers[i];
        if ((id && strcmp(s->server_id, id) != 0) || (!id && !admin_is_up(s)))
            continue;
        rc = target_add(t, n, s->server_id, s->addr);
    }
    imgstore_admin_free_status(st);
    free(id);
    return rc ? admin_fail(c, "verify", rc) : 0;
}

static void verify_json(const struct verify_target *t, size_t n, uint64_t bad, int ok)
{
    struct emit_json j;
    emit_json_init(&j, stdout);
    emit_json_obj(&j, NULL);
    emit_json_bool(&j, "ok", ok);
    emit_json_u64(&j, "bad_records", bad);
    emit_json_arr(&j, "servers", EMIT_LINES);
    for (size_t i = 0; i < n; i++) {
        const Imgstore__VerifyResp *r = t[i].resp;
        emit_json_obj(&j, NULL);
        emit_json_str(&j, "server", t[i].id);
        emit_json_str(&j, "address", t[i].addr);
        if (!r) {
            emit_json_str(&j, "error", imgstore_strerror(t[i].rc));
            emit_json_end(&j);
            continue;
        }
        emit_json_null(&j, "error");
        emit_json_u64(&j, "blocks", r->blocks);
        emit_json_u64(&j, "records", r->records);
        emit_json_u64(&j, "bytes", r->bytes);
        emit_json_u64(&j, "bad_records", r->bad_records);
        emit_json_arr(&j, "bad_blocks", EMIT_INLINE);
        for (size_t k = 0; k < r->n_bad_blocks; k++)
            emit_json_u64(&j, NULL, r->bad_blocks[k]);
        emit_json_end(&j);
        emit_json_end(&j);
    }
    emit_json_end(&j);
    emit_json_end(&j);
}

static int verify_table(const struct verify_target *t, size_t n)
{
    static const char *const header[] = {"SERVER",      "ADDRESS",    "BLOCKS", "RECORDS", "BYTES",
                                         "BAD RECORDS", "BAD BLOCKS"};
    struct emit_table tb;
    emit_table_init(&tb, sizeof(header) / sizeof(header[0]), header);
    for (size_t i = 0; i < n; i++) {
        const Imgstore__VerifyResp *r = t[i].resp;
        char bytes[CLI_HUMAN_MAX], list[EMIT_CELL_MAX] = "";
        emit_cell(&tb, "%.*s", ID_SHOW, t[i].id);
        emit_text(&tb, t[i].addr);
        if (!r) {
            for (int k = 0; k < 4; k++) /* blocks, records, bytes, bad records */
                emit_text(&tb, "-");
            emit_cell(&tb, "error: %s", imgstore_strerror(t[i].rc));
            continue;
        }
        emit_cell(&tb, "%u", r->blocks);
        emit_cell(&tb, "%" PRIu64, r->records);
        emit_text(&tb, cli_human_size(r->bytes, bytes));
        emit_cell(&tb, "%u", r->bad_records);
        size_t used = 0;
        for (size_t k = 0; k < r->n_bad_blocks && used < sizeof(list); k++) {
            int w = snprintf(list + used, sizeof(list) - used, "%s%" PRIu64, k ? "," : "",
                             r->bad_blocks[k]);
            used += w > 0 ? (size_t)w : 0;
        }
        emit_text(&tb, *list ? list : "-");
    }
    return emit_table_end(&tb, stdout) == 0 ? EXIT_OK : EXIT_FAIL;
}

int admin_cmd_verify(struct admin_ctx *c)
{
    uint64_t block = 0;
    const char *only = NULL;
    for (int i = 1; i < c->argc; i++) {
        if (strcmp(c->argv[i], "--wait") == 0)
            continue; /* VERIFY answers when its pass is over: the command always waits */
        if (strcmp(c->argv[i], "--server") == 0) {
            if (++i >= c->argc)
                return admin_usage_error("missing argument for ", "--server");
            only = c->argv[i];
        } else {
            int rc = block_operand(c->argv[i], &block);
            if (rc != 0)
                return rc;
        }
    }
    if (block && only)
        return admin_usage_error("give a BLOCK or --server, not both", NULL);
    struct verify_target *t = NULL;
    size_t n = 0;
    int rc = verify_targets(c, block, only, &t, &n);
    if (rc != 0) {
        targets_free(t, n);
        return rc;
    }
    if (n == 0) {
        fprintf(stderr, "%s: verify: no server is up to ask\n", ADMIN_PROG);
        return EXIT_FAIL;
    }
    /* A pass over a whole server takes long: unless --timeout was given, wait
     * up to VERIFY_TIMEOUT_MS for each answer. */
    imgstore_t *h = c->h;
    struct imgstore_opts o = {.timeout_ms = VERIFY_TIMEOUT_MS};
    if (!c->timeout_given && imgstore_open(c->ns, &o, &h) != 0)
        h = c->h;
    Imgstore__Verify q = IMGSTORE__VERIFY__INIT;
    q.block_id = block;
    uint64_t bad = 0;
    int ok = 1;
    for (size_t i = 0; i < n; i++) {
        ProtobufCMessage *m = NULL;
        t[i].rc = imgstore_admin_call(h, t[i].addr, FT_VERIFY, &q.base,
                                      &imgstore__verify_resp__descriptor, &m);
        t[i].resp = (Imgstore__VerifyResp *)m;
        if (t[i].rc == 0 && !t[i].resp)
            t[i].rc = IMGSTORE_EPROTO;
        ok &= t[i].rc == 0 && t[i].resp->bad_records == 0;
        bad += t[i].resp ? t[i].resp->bad_records : 0;
    }
    if (h != c->h)
        imgstore_close(h);
    /* Refused by every server for the key (none, wrong, or below operator):
     * one line, like every other command refused so. */
    size_t refused = 0;
    for (size_t i = 0; i < n; i++)
        refused += t[i].rc == IMGSTORE_EAUTH || t[i].rc == IMGSTORE_EPERM;
    if (refused == n) {
        fprintf(stderr, "%s: verify: %s\n", ADMIN_PROG, imgstore_strerror(t[0].rc));
        targets_free(t, n);
        return EXIT_FAIL;
    }
    int status = EXIT_OK;
    if (c->json)
        verify_json(t, n, bad, ok);
    else if ((status = verify_table(t, n)) == EXIT_OK)
        printf(ok ? "every record checked is intact\n"
                  : "bad records were found or a server failed: copies marked corrupt are "
                    "replaced by the nameserver\n");
    targets_free(t, n);
    return status == EXIT_OK && ok ? EXIT_OK : EXIT_FAIL;
}

/* ---- compact and repair ------------------------------------------------------------ */

#define OPS_WAIT_MS (30 * 60 * 1000) /* --wait gives up after this long */
#define REPAIR_TIMEOUT_MS 120000     /* one ADMIN_REPAIR answer (VERIFY of one block) */
#define COMPACT_ROUNDS 50            /* compact --threshold --wait: requests at most */

/* The sentence for a refused ADMIN_COMPACT / ADMIN_REPAIR. */
static const char *ops_error(int rc)
{
    switch (rc) {
    case IMG_ENOTFOUND: return "no such block in the block map";
    case -EINPROGRESS: return "the block is not sealed (it still takes files)";
    case -ENODATA: return "the block has no deleted bytes";
    case -EBUSY:
        return "the block is busy: a background task works on it, or a replica's server is "
               "down, draining, bad or at the task cap (ds-admin tasks); try again later";
    case IMG_ESAFEMODE: return "the nameserver is in safe mode";
    default: return imgstore_strerror(rc);
    }
}

static int ops_fail(const char *cmd, int rc)
{
    fprintf(stderr, "%s: %s: %s\n", ADMIN_PROG, cmd, ops_error(rc));
    return EXIT_FAIL;
}

/* The state of task `id` in a LIST_TASKS answer: the task or NULL (trimmed). */
static const Imgstore__Task *find_task(const Imgstore__ListTasksResp *r, uint64_t id)
{
    for (size_t i = 0; i < r->n_tasks; i++)
        if (r->tasks[i]->id == id)
            return r->tasks[i];
    return NULL;
}

/* Waits until none of tasks[0..n-1] runs. Progress: a bar on a terminal, a
 * line when it changed otherwise (not with --json). *failed gets the count
 * of tasks that failed. Returns 0, or the error of LIST_TASKS, or -EINTR. */
static int ops_wait_tasks(struct admin_ctx *c, const char *what, const uint64_t *tasks, size_t n,
                          size_t *failed)
{
    int tty = isatty(STDOUT_FILENO);
    int64_t t0 = admin_now_ms(), last_line = 0;
    size_t last_done = SIZE_MAX;
    admin_catch_sigint();
    *failed = 0;
    while (!admin_interrupted) {
        Imgstore__ListTasksResp *r = NULL;
        int rc = admin_list_tasks(c, &r);
        if (rc != 0)
            return rc;
        size_t done = 0, bad = 0;
        for (size_t i = 0; i < n; i++) {
            const Imgstore__Task *t = find_task(r, tasks[i]);
            if (t && admin_task_running(t))
                continue;
            done++;
            bad += t && t->state && strcmp(t->state, TASK_FAILED) == 0;
        }
        protobuf_c_message_free_unpacked(&r->base, NULL);
        int64_t el = admin_now_ms() - t0;
        char elt[CLI_HUMAN_MAX];
        if (!c->json && tty) {
            char bar[BAR_WIDTH + 1];
            admin_bar(bar, n ? (int)(done * BAR_WIDTH / n) : BAR_WIDTH);
            printf("\r[%s] %zu of %zu tasks done, %zu failed  %s\033[K", bar, done, n, bad,
                   cli_human_ms((uint64_t)el, elt));
            fflush(stdout);
        } else if (!c->json && (done != last_done || admin_now_ms() - last_line >= DRAIN_LINE_MS)) {
            printf("%s: %zu of %zu tasks done, %zu failed, %s\n", what, done, n, bad,
                   cli_human_ms((uint64_t)el, elt));
            fflush(stdout);
            last_done = done;
            last_line = admin_now_ms();
        }
        if (done == n) {
            if (!c->json && tty)
                printf("\n");
            *failed = bad;
            return 0;
        }
        if (el > OPS_WAIT_MS)
            return IMGSTORE_ETIMEDOUT;
        admin_sleep_poll();
    }
    if (!c->json && tty)
        printf("\n");
    return -EINTR;
}

/* One block of an ADMIN_COMPACT answer as the next element of j. */
static void compact_block_json(struct emit_json *j, const Imgstore__AdminCompactBlock *b)
{
    emit_json_obj(j, NULL);
    emit_json_u64(j, "block_id", b->block_id);
    emit_json_u64(j, "size", b->size);
    emit_json_u64(j, "deleted_bytes", b->deleted_bytes);
    emit_json_num(j, "deleted_pct", 1, b->deleted_pct);
    emit_json_u64(j, "task_id", b->task_id);
    emit_json_str(j, "state", b->state);
    emit_json_end(j);
}

static int compact_table(const Imgstore__AdminCompactResp *r)
{
    static const char *const head[] = {"BLOCK", "SIZE", "DELETED", "DELETED%", "TASK", "STATE"};
    struct emit_table t;
    emit_table_init(&t, sizeof(head) / sizeof(head[0]), head);
    for (size_t i = 0; i < r->n_blocks; i++) {
        const Imgstore__AdminCompactBlock *b = r->blocks[i];
        char a[CLI_HUMAN_MAX];
        emit_cell(&t, "%" PRIu64, b->block_id);
        emit_text(&t, cli_human_size(b->size, a));
        emit_text(&t, cli_human_size(b->deleted_bytes, a));
        emit_cell(&t, "%.1f%%", b->deleted_pct);
        if (b->task_id)
            emit_cell(&t, "%" PRIu64, b->task_id);
        else
            emit_text(&t, "-");
        emit_text(&t, admin_or_dash(b->state));
    }
    return emit_table_end(&t, stdout) == 0 ? EXIT_OK : EXIT_FAIL;
}

/* One ADMIN_COMPACT request. Returns 0 with *out or the error. */
static int compact_call(struct admin_ctx *c, uint64_t block, uint32_t pct, int dry,
                        Imgstore__AdminCompactResp **out)
{
    Imgstore__AdminCompact q = IMGSTORE__ADMIN_COMPACT__INIT;
    q.block_id = block;
    q.threshold_pct = pct;
    q.dry_run = dry;
    ProtobufCMessage *m = NULL;
    int rc = admin_ns_call(c, FT_ADMIN_COMPACT, &q.base, &imgstore__admin_compact_resp__descriptor,
                           &m);
    *out = (Imgstore__AdminCompactResp *)m;
    return rc == 0 && !m ? IMGSTORE_EPROTO : rc;
}

int admin_cmd_compact(struct admin_ctx *c)
{
    uint64_t block = 0;
    int pct = 0, have_pct = 0, dry = 0, wait = 0;
    for (int i = 1; i < c->argc; i++) {
        if (strcmp(c->argv[i], "--wait") == 0) {
            wait = 1;
        } else if (strcmp(c->argv[i], "--dry-run") == 0) {
            dry = 1;
        } else if (strcmp(c->argv[i], "--threshold") == 0) {
            if (++i >= c->argc)
                return admin_usage_error("missing argument for ", "--threshold");
            if (cli_parse_int(c->argv[i], &pct) != 0 || pct < 1 || pct > 100)
                return admin_usage_error("invalid --threshold (1..100): ", c->argv[i]);
            have_pct = 1;
        } else {
            int rc = block_operand(c->argv[i], &block);
            if (rc != 0)
                return rc;
        }
    }
    if (block && have_pct)
        return admin_usage_error("give a BLOCK or --threshold, not both", NULL);
    if (dry && wait)
        return admin_usage_error("--dry-run and --wait exclude each other", NULL);
    Imgstore__AdminCompactResp *r = NULL;
    int rc = compact_call(c, block, (uint32_t)pct, dry, &r);
    if (rc != 0)
        return ops_fail("compact", rc);
    /* --wait with a threshold: blocks left busy (task cap) are asked again
     * once the started tasks end, until none is left or nothing starts. */
    uint64_t *all = NULL;
    size_t nall = 0, failed = 0, busy = 0;
    int status = EXIT_OK;
    struct emit_json j;
    emit_json_init(&j, stdout);
    for (int round = 0; r; round++) {
        busy = 0;
        for (size_t i = 0; i < r->n_blocks; i++)
            busy += r->blocks[i]->task_id == 0 && !dry;
        if (!c->json) {
            if (round == 0 && r->n_blocks == 0)
                printf("no sealed block has %u%% or more deleted bytes\n", r->threshold_pct);
            else if (r->n_blocks)
                compact_table(r);
        }
        uint64_t *grown = realloc(all, (nall + r->n_task_ids + 1) * sizeof(*all));
        if (!grown) {
            status = EXIT_FAIL;
            break;
        }
        all = grown;
        memcpy(all + nall, r->task_ids, r->n_task_ids * sizeof(*all));
        size_t started = r->n_task_ids;
        nall += started;
        if (c->json && (!wait || round == 0)) {
            emit_json_obj(&j, NULL);
            emit_json_u64(&j, "threshold_pct", r->threshold_pct);
            emit_json_bool(&j, "dry_run", dry);
            emit_json_arr(&j, "blocks", EMIT_INLINE);
            for (size_t i = 0; i < r->n_blocks; i++)
                compact_block_json(&j, r->blocks[i]);
            emit_json_end(&j);
            emit_json_arr(&j, "task_ids", EMIT_INLINE);
            for (size_t i = 0; i < r->n_task_ids; i++)
                emit_json_u64(&j, NULL, r->task_ids[i]);
            emit_json_end(&j);
            if (!wait) /* with --wait the document ends after the tasks */
                emit_json_end(&j);
        }
        protobuf_c_message_free_unpacked(&r->base, NULL);
        r = NULL;
        if (!wait || started == 0)
            break;
        size_t f = 0;
        rc = ops_wait_tasks(c, "compact", all + nall - started, started, &f);
        failed += f;
        if (rc != 0) {
            status = rc == -EINTR ? EXIT_FAIL : admin_fail(c, "compact --wait", rc);
            if (rc == -EINTR)
                fprintf(stderr, "%s: stopped waiting; the compactions go on\n", ADMIN_PROG);
            break;
        }
        if (block || busy == 0 || round + 1 >= COMPACT_ROUNDS)
            break;
        if ((rc = compact_call(c, 0, (uint32_t)pct, 0, &r)) != 0) {
            status = ops_fail("compact", rc);
            break;
        }
    }
    if (wait && status == EXIT_OK && failed)
        status = EXIT_FAIL;
    if (c->json && wait) {
        emit_json_u64(&j, "tasks_started", nall);
        emit_json_u64(&j, "tasks_failed", failed);
        emit_json_str(&j, "result", status == EXIT_OK ? "done" : failed ? "task failed" : "error");
        emit_json_end(&j);
    } else if (!c->json && wait && status == EXIT_OK)
        printf("compaction done: %zu tasks\n", nall);
    else if (!c->json && wait && failed)
        fprintf(stderr, "%s: compact: %zu of %zu tasks failed (ds-admin tasks says why); the "
                        "planner retries automatic compaction\n", ADMIN_PROG, failed, nall);
    else if (!c->json && !wait && !dry && nall)
        printf("%zu compactions started (ds-admin tasks follows them)\n", nall);
    if (r)
        protobuf_c_message_free_unpacked(&r->base, NULL);
    free(all);
    return status;
}

/* One ADMIN_REPAIR request on handle h. Returns 0 with *out or the error. */
static int repair_call(imgstore_t *h, uint64_t block, int status_only,
                       Imgstore__AdminRepairResp **out)
{
    Imgstore__AdminRepair q = IMGSTORE__ADMIN_REPAIR__INIT;
    q.block_id = block;
    q.status_only = status_only;
    ProtobufCMessage *m = NULL;
    int rc = imgstore_admin_call(h, NULL, FT_ADMIN_REPAIR, &q.base,
                                 &imgstore__admin_repair_resp__descriptor, &m);
    *out = (Imgstore__AdminRepairResp *)m;
    return rc == 0 && !m ? IMGSTORE_EPROTO : rc;
}

/* Healed: the replication count of good (up, not bad, full-size) copies, no
 * other copy, and no task on the block. */
static int repair_healed(const Imgstore__AdminRepairResp *r)
{
    if (r->task_running || r->good_replicas < r->replication || r->n_replicas != r->replication)
        return 0;
    for (size_t i = 0; i < r->n_replicas; i++)
        if (strcmp(r->replicas[i]->action, "ok") != 0)
            return 0;
    return 1;
}

static void repair_json(const Imgstore__AdminRepairResp *r, const Imgstore__AdminRepairResp *end,
                        const char *result)
{
    uint32_t bad = 0;
    for (size_t i = 0; i < r->n_replicas; i++)
        bad += r->replicas[i]->bad_records;
    struct emit_json j;
    emit_json_init(&j, stdout);
    emit_json_obj(&j, NULL);
    emit_json_u64(&j, "block_id", r->block_id);
    emit_json_u64(&j, "replication", r->replication);
    emit_json_u64(&j, "size", r->size);
    emit_json_bool(&j, "sealed", r->sealed);
    emit_json_u64(&j, "bad_records", bad);
    emit_json_arr(&j, "replicas", EMIT_INLINE);
    for (size_t i = 0; i < r->n_replicas; i++) {
        const Imgstore__AdminRepairReplica *x = r->replicas[i];
        emit_json_obj(&j, NULL);
        emit_json_str(&j, "server", x->server_id);
        emit_json_str(&j, "addr", x->addr);
        emit_json_bool(&j, "up", x->up);
        emit_json_u64(&j, "size", x->size);
        emit_json_u64(&j, "bad_records", x->bad_records);
        emit_json_str(&j, "action", x->action);
        emit_json_str(&j, "error", x->error);
        emit_json_end(&j);
    }
    emit_json_end(&j);
    if (end) {
        emit_json_bool(&j, "healed", repair_healed(end));
        emit_json_u64(&j, "good_replicas", end->good_replicas);
        emit_json_str(&j, "result", result);
    }
    emit_json_end(&j);
}

static int repair_table(const Imgstore__AdminRepairResp *r)
{
    static const char *const head[] = {"SERVER", "ADDRESS", "STATE", "SIZE", "BAD RECORDS",
                                       "ACTION", "ERROR"};
    struct emit_table t;
    emit_table_init(&t, sizeof(head) / sizeof(head[0]), head);
    for (size_t i = 0; i < r->n_replicas; i++) {
        const Imgstore__AdminRepairReplica *x = r->replicas[i];
        char size[CLI_HUMAN_MAX];
        int none = !x->server_id || !*x->server_id;
        emit_text(&t, none ? "(new copy)" : x->server_id);
        emit_text(&t, admin_or_dash(x->addr));
        emit_text(&t, none ? "-" : x->up ? STATE_UP : STATE_DOWN);
        emit_text(&t, none ? "-" : cli_human_size(x->size, size));
        if (none)
            emit_text(&t, "-");
        else
            emit_cell(&t, "%u", x->bad_records);
        emit_text(&t, x->action);
        emit_text(&t, admin_or_dash(x->error));
    }
    if (t.err) {
        emit_table_end(&t, NULL);
        return EXIT_FAIL;
    }
    char size[CLI_HUMAN_MAX];
    printf("block %" PRIu64 ": %s, %s, replication %u\n", r->block_id,
           r->sealed ? "sealed" : "not sealed", cli_human_size(r->size, size), r->replication);
    emit_table_end(&t, stdout);
    return EXIT_OK;
}

/* Polls the block until healed. Returns 0 with *end (owned) or an error. */
static int repair_wait(struct admin_ctx *c, imgstore_t *h, uint64_t block,
                       Imgstore__AdminRepairResp **end)
{
    int tty = isatty(STDOUT_FILENO);
    int64_t t0 = admin_now_ms(), last_line = 0;
    char last[64] = "";
    admin_catch_sigint();
    *end = NULL;
    while (!admin_interrupted) {
        Imgstore__AdminRepairResp *r = NULL;
        int rc = repair_call(h, block, 1, &r);
        if (rc != 0)
            return rc;
        char now[64], elt[CLI_HUMAN_MAX];
        snprintf(now, sizeof(now), "%u of %u good copies, %zu replicas%s", r->good_replicas,
                 r->replication, r->n_replicas, r->task_running ? ", a task runs" : "");
        if (!c->json &&
            (tty || strcmp(now, last) != 0 || admin_now_ms() - last_line >= DRAIN_LINE_MS)) {
            printf(tty ? "\rrepair %" PRIu64 ": %s, %s\033[K" : "repair %" PRIu64 ": %s, %s\n",
                   block, now, cli_human_ms((uint64_t)(admin_now_ms() - t0), elt));
            fflush(stdout);
            snprintf(last, sizeof(last), "%s", now);
            last_line = admin_now_ms();
        }
        if (repair_healed(r)) {
            if (!c->json && tty)
                printf("\n");
            *end = r;
            return 0;
        }
        protobuf_c_message_free_unpacked(&r->base, NULL);
        if (admin_now_ms() - t0 > OPS_WAIT_MS)
            return IMGSTORE_ETIMEDOUT;
        admin_sleep_poll();
    }
    if (!c->json && tty)
        printf("\n");
    return -EINTR;
}

int admin_cmd_repair(struct admin_ctx *c)
{
    uint64_t block = 0;
    int wait = 0;
    for (int i = 1; i < c->argc; i++) {
        if (strcmp(c->argv[i], "--wait") == 0) {
            wait = 1;
        } else {
            int rc = block_operand(c->argv[i], &block);
            if (rc != 0)
                return rc;
        }
    }
    if (!block)
        return admin_usage_error("missing argument for ", "repair");
    /* VERIFY of every replica takes a while: a longer timeout unless given. */
    imgstore_t *h = c->h;
    struct imgstore_opts o = {.timeout_ms = REPAIR_TIMEOUT_MS};
    if (!c->timeout_given && imgstore_open(c->ns, &o, &h) != 0)
        h = c->h;
    Imgstore__AdminRepairResp *r = NULL, *end = NULL;
    int rc = repair_call(h, block, 0, &r);
    int status = EXIT_OK;
    if (rc != 0) {
        status = ops_fail("repair", rc);
        goto out;
    }
    if (!c->json)
        repair_table(r);
    if (wait) {
        rc = repair_wait(c, h, block, &end);
        if (rc == -EINTR)
            fprintf(stderr, "%s: stopped waiting; the repair goes on\n", ADMIN_PROG);
        else if (rc != 0)
            admin_fail(c, "repair --wait", rc);
        status = rc == 0 ? EXIT_OK : EXIT_FAIL;
        if (!c->json && rc == 0)
            printf("block %" PRIu64 " healed: %u good, equal copies\n", block, end->good_replicas);
    } else if (!c->json) {
        int todo = 0;
        for (size_t i = 0; i < r->n_replicas; i++)
            todo |= strcmp(r->replicas[i]->action, "ok") != 0;
        printf(todo ? "the planner fixes the copies above (ds-admin repair %" PRIu64
                      " --wait follows it)\n"
                    : "every replica is intact\n",
               block);
    }
    if (c->json)
        repair_json(r, wait ? end : NULL,
                    !wait ? "checked" : rc == 0 ? "healed" : rc == -EINTR ? "interrupted" : "error");
out:
    if (r)
        protobuf_c_message_free_unpacked(&r->base, NULL);
    if (end)
        protobuf_c_message_free_unpacked(&end->base, NULL);
    if (h != c->h)
        imgstore_close(h);
    return status;
}
