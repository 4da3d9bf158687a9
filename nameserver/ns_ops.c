/* ns_ops.c - on-demand compaction and repair for ds-admin (ns_ops.h).
 *
 * ADMIN_COMPACT is answered at once: the chosen blocks, and the COMPACT
 * tasks started for them (ns_compact_start; each holder counts against the
 * task cap as in the automatic compaction). ADMIN_REPAIR is answered when
 * every up holder of the block answered STAT_BLOCK and VERIFY (sent on its
 * session); the pending repairs are kept in a list so that an admin
 * connection closing meanwhile is forgotten (ns_ops_conn_closed) and the
 * late answer goes nowhere.
 *
 * Requests arrive unpacked from ns_rpc.c. Calls the map, the registry, the
 * settings, the bad list, compaction (ns_compact_start) and the planner's
 * kick, and sends on dataserver sessions (net/conn.h). */
#include "nameserver/ns_ops.h"

#include "net/conn.h"
#include "base/err.h"
#include "base/log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static const char ACT_OK[] = "ok", ACT_CATCH_UP[] = "catch-up", ACT_REPLACE[] = "replace",
                  ACT_COPY[] = "copy", ACT_DOWN[] = "down";
static const char ST_STARTED[] = "started", ST_DRY[] = "dry run", ST_BUSY[] = "busy";


static void reply_err(struct conn *c, const struct frame_header *h, int err)
{
    conn_reply(c, h, err, NULL, NULL, 0, NULL);
}

/* Returns non-zero when a running task works on block `id`. */
static int task_on(const struct ns *ns, uint64_t id)
{
    for (size_t i = 0; i < ns->plan.ntasks; i++)
        if (ns->plan.tasks[i].block_id == id && ns->plan.tasks[i].state == NS_TASK_RUNNING)
            return 1;
    return 0;
}

/* Returns 0 when b can be compacted now, -EBUSY when a task runs on it or a
 * holder is down, bad, draining or at the task cap. */
static int compact_ready(const struct ns *ns, const struct ns_block *b)
{
    uint32_t cap = ns_settings_task_cap(ns);
    if (task_on(ns, b->id) || b->nrep == 0)
        return -EBUSY;
    for (unsigned i = 0; i < b->nrep; i++) {
        const struct ns_server *s = ns_registry_at(ns, b->rep[i]);
        if (!s || !s->up || !s->conn || s->draining || s->tasks >= cap ||
            ns_bad_has(ns, b->id, s->idx))
            return -EBUSY;
    }
    return 0;
}

static double share(const struct ns_block *b)
{
    return b->size ? (double)b->deleted_bytes * 100.0 / (double)b->size : 0.0;
}

/* Collects into ids (malloc'd, sorted) the sealed blocks with deleted bytes
 * whose deleted share is at least pct. */
static int choose(const struct ns *ns, uint32_t pct, uint64_t **ids, size_t *n)
{
    *n = 0;
    *ids = malloc((ns->blocks.count + 1) * sizeof(**ids));
    if (!*ids)
        return -ENOMEM;
    for (size_t i = 0; i < ns->blocks.cap; i++) {
        const struct ns_block *b = &ns->blocks.slots[i];
        if (b->id && b->sealed && b->deleted_bytes &&
            b->deleted_bytes * 100 >= (uint64_t)pct * b->size)
            (*ids)[(*n)++] = b->id;
    }
    if (*n > 1)
        qsort(*ids, *n, sizeof(**ids), ns_cmp_u64);
    if (*n > NS_OPS_COMPACT_MAX)
        *n = NS_OPS_COMPACT_MAX;
    return 0;
}

void ns_ops_handle_compact(struct ns *ns, struct conn *c, const struct frame_header *h,
        const Imgstore__AdminCompact *q)
{
    uint64_t id = q->block_id;
    uint32_t pct = q->threshold_pct;
    int dry = q->dry_run;
    uint64_t *ids = NULL;
    size_t n = 0;
    Imgstore__AdminCompactBlock *bs = NULL, **bp = NULL;
    uint64_t *tasks = NULL;
    int rc = 0;
    if (pct > 100) {
        rc = IMG_EINVAL;
        goto out;
    }
    if (ns->safe_mode) {
        rc = IMG_ESAFEMODE;
        goto out;
    }
    if (pct == 0)
        pct = ns_settings_compact_pct(ns);
    if (id) {
        const struct ns_block *b = ns_blocks_get(&ns->blocks, id);
        rc = !b ? IMG_ENOTFOUND : !b->sealed ? -EINPROGRESS : !b->deleted_bytes ? -ENODATA
             : dry                          ? 0
                                            : compact_ready(ns, b);
        if (rc)
            goto out;
        if (!(ids = malloc(sizeof(*ids)))) {
            rc = -ENOMEM;
            goto out;
        }
        ids[n++] = id;
    } else if ((rc = choose(ns, pct, &ids, &n)) != 0) {
        goto out;
    }
    bs = calloc(n + 1, sizeof(*bs));
    bp = calloc(n + 1, sizeof(*bp));
    tasks = calloc(n + 1, sizeof(*tasks));
    if (!bs || !bp || !tasks) {
        rc = -ENOMEM;
        goto out;
    }
    uint64_t now = ns->loop ? uv_now(ns->loop) : 0;
    size_t nt = 0;
    for (size_t i = 0; i < n; i++) {
        /* Looked up again each time: starting a task may run the planner. */
        struct ns_block *b = ns_blocks_get(&ns->blocks, ids[i]);
        imgstore__admin_compact_block__init(&bs[i]);
        bp[i] = &bs[i];
        bs[i].block_id = ids[i];
        if (!b)
            continue;
        bs[i].size = b->size;
        bs[i].deleted_bytes = b->deleted_bytes;
        bs[i].deleted_pct = share(b);
        bs[i].state = (char *)(dry ? ST_DRY : ST_BUSY);
        if (dry || compact_ready(ns, b) != 0)
            continue;
        log_info("compaction of block %" PRIu64 " asked by an operator (%.1f%% deleted)", b->id,
                 share(b));
        uint64_t t = ns_compact_start(ns, b, now);
        if (t) {
            bs[i].task_id = t;
            bs[i].state = (char *)ST_STARTED;
            tasks[nt++] = t;
        }
    }
    if (id && !dry && nt == 0) {
        rc = -EBUSY;
        goto out;
    }
    Imgstore__AdminCompactResp r = IMGSTORE__ADMIN_COMPACT_RESP__INIT;
    r.n_blocks = n;
    r.blocks = bp;
    r.n_task_ids = nt;
    r.task_ids = tasks;
    r.threshold_pct = id ? 0 : pct;
    conn_reply(c, h, 0, &r.base, NULL, 0, NULL);
out:
    if (rc)
        reply_err(c, h, rc);
    free(ids);
    free(bs);
    free(bp);
    free(tasks);
}

/* ---- repair ----------------------------------------------------------------------- */

/* What one holder answered. */
struct holder {
    uint16_t server;
    int stat_rc, verify_rc;
    uint64_t size;
    int have_size, corrupt;
    uint32_t bad_records;
};

struct repair {
    struct repair *next;
    struct ns *ns;
    struct conn *c;          /* the admin connection; NULL once it closed */
    struct frame_header h;   /* its request */
    uint64_t block_id;
    unsigned n, pending;
    struct holder hold[NS_BLOCK_SLOTS];
};

struct call {
    struct repair *r;
    unsigned i;
};

static struct repair *repairs; /* pending, on the loop thread */

void ns_ops_conn_closed(struct conn *c)
{
    for (struct repair *r = repairs; r; r = r->next)
        if (r->c == c)
            r->c = NULL;
}

static void repair_unlink(struct repair *r)
{
    for (struct repair **pp = &repairs; *pp; pp = &(*pp)->next)
        if (*pp == r) {
            *pp = r->next;
            return;
        }
}

static uint64_t longest_good(const struct ns *ns, const struct ns_block *b,
                             const struct repair *r)
{
    uint64_t longest = 0;
    for (unsigned i = 0; i < b->nrep; i++) {
        const struct ns_server *s = ns_registry_at(ns, b->rep[i]);
        if (!s || !s->up || ns_bad_has(ns, b->id, b->rep[i]))
            continue;
        uint64_t size = b->rsize[i];
        for (unsigned k = 0; r && k < r->n; k++)
            if (r->hold[k].server == b->rep[i] && r->hold[k].have_size)
                size = r->hold[k].size;
        if (size > longest)
            longest = size;
    }
    return longest;
}

/* Builds and sends the answer from the map and, when r is not NULL, the
 * holders' answers (bad copies already marked). */
static void repair_answer(struct ns *ns, struct conn *c, const struct frame_header *h,
                          const struct ns_block *b, const struct repair *r)
{
    Imgstore__AdminRepairReplica reps[NS_BLOCK_SLOTS + NS_MAX_REPLICAS];
    Imgstore__AdminRepairReplica *rp[NS_BLOCK_SLOTS + NS_MAX_REPLICAS];
    static char empty[] = "";
    size_t n = 0;
    uint32_t good = 0;
    uint64_t longest = longest_good(ns, b, r);
    for (unsigned i = 0; i < b->nrep; i++) {
        struct ns_server *s = ns_registry_at(ns, b->rep[i]);
        if (!s)
            continue;
        Imgstore__AdminRepairReplica *x = &reps[n];
        imgstore__admin_repair_replica__init(x);
        x->server_id = s->id;
        x->addr = s->addr;
        x->up = s->up;
        x->size = b->rsize[i];
        x->error = empty;
        for (unsigned k = 0; r && k < r->n; k++) {
            const struct holder *y = &r->hold[k];
            if (y->server != b->rep[i])
                continue;
            if (y->have_size)
                x->size = y->size;
            x->bad_records = y->bad_records;
            int err = y->verify_rc ? y->verify_rc : y->stat_rc;
            x->error = err ? (char *)img_strerror(err) : empty;
        }
        x->bad = ns_bad_has(ns, b->id, s->idx);
        if (!s->up)
            x->action = (char *)ACT_DOWN;
        else if (x->bad)
            x->action = (char *)ACT_REPLACE;
        else if (x->size < longest)
            x->action = (char *)ACT_CATCH_UP;
        else
            x->action = (char *)ACT_OK;
        good += s->up && !x->bad && x->size >= longest;
        rp[n] = x;
        n++;
    }
    unsigned usable = 0;
    for (unsigned i = 0; i < b->nrep; i++) {
        const struct ns_server *s = ns_registry_at(ns, b->rep[i]);
        usable += s && s->up && !ns_bad_has(ns, b->id, s->idx);
    }
    for (unsigned k = usable; k < ns->meta.replicas && n < NS_BLOCK_SLOTS + NS_MAX_REPLICAS; k++) {
        Imgstore__AdminRepairReplica *x = &reps[n];
        imgstore__admin_repair_replica__init(x);
        x->server_id = empty;
        x->addr = empty;
        x->error = empty;
        x->action = (char *)ACT_COPY;
        rp[n++] = x;
    }
    Imgstore__AdminRepairResp m = IMGSTORE__ADMIN_REPAIR_RESP__INIT;
    m.block_id = b->id;
    m.replication = ns->meta.replicas;
    m.size = longest;
    m.sealed = b->sealed;
    m.n_replicas = n;
    m.replicas = rp;
    m.task_running = task_on(ns, b->id);
    m.good_replicas = good;
    conn_reply(c, h, 0, &m.base, NULL, 0, NULL);
}

/* Every holder answered: judge, kick the planner, answer. */
static void repair_done(struct repair *r)
{
    struct ns *ns = r->ns;
    repair_unlink(r);
    struct ns_block *b = ns->stopping ? NULL : ns_blocks_get(&ns->blocks, r->block_id);
    if (b) {
        for (unsigned k = 0; k < r->n; k++) {
            struct holder *y = &r->hold[k];
            int slot = ns_block_find_rep(b, y->server);
            if (slot < 0)
                continue;
            if (y->bad_records || y->corrupt)
                ns_bad_mark(ns, b->id, y->server,
                                    y->bad_records ? "an operator's repair found bad records"
                                                   : "it reports its copy corrupt");
            else if (y->have_size && y->size > b->rsize[slot])
                b->rsize[slot] = y->size;
        }
        log_info("repair of block %" PRIu64 " checked %u replicas", b->id, r->n);
        ns->plan.kick = 1;
    }
    if (r->c && !conn_is_closing(r->c)) {
        if (b)
            repair_answer(ns, r->c, &r->h, b, r);
        else
            conn_reply(r->c, &r->h, ns->stopping ? IMG_ECONN : IMG_ENOTFOUND, NULL, NULL, 0,
                       NULL);
    }
    free(r);
}

static void stat_reply(int status, const struct frame *f, void *arg)
{
    struct call *k = arg;
    struct repair *r = k->r;
    struct holder *y = &r->hold[k->i];
    free(k);
    Imgstore__BlockInfo *bi =
        conn_reply_unpack(status, f, &imgstore__block_info__descriptor, &y->stat_rc);
    if (bi) {
        y->size = bi->size;
        y->have_size = 1;
        y->corrupt = bi->corrupt;
        imgstore__block_info__free_unpacked(bi, NULL);
    }
    if (--r->pending == 0)
        repair_done(r);
}

static void verify_reply(int status, const struct frame *f, void *arg)
{
    struct call *k = arg;
    struct repair *r = k->r;
    struct holder *y = &r->hold[k->i];
    free(k);
    Imgstore__VerifyResp *m =
        conn_reply_unpack(status, f, &imgstore__verify_resp__descriptor, &y->verify_rc);
    if (m) {
        y->bad_records = m->bad_records;
        imgstore__verify_resp__free_unpacked(m, NULL);
    }
    if (--r->pending == 0)
        repair_done(r);
}

/* Sends one request to holder i; failures are recorded as its answer. */
static void send_one(struct repair *r, unsigned i, unsigned type, const ProtobufCMessage *msg,
                     uint32_t timeout_ms, conn_reply_cb cb, int *rc_out)
{
    struct ns_server *s = ns_registry_at(r->ns, r->hold[i].server);
    struct call *k = malloc(sizeof(*k));
    int rc = !k ? -ENOMEM : !s || !s->up || !s->conn ? IMG_ECONN : 0;
    if (rc == 0) {
        *k = (struct call){.r = r, .i = i};
        r->pending++;
        rc = conn_request(s->conn, type, msg, NULL, 0, NULL, timeout_ms, cb, k);
        if (rc)
            r->pending--;
    }
    if (rc)
        free(k);
    *rc_out = rc;
}

void ns_ops_handle_repair(struct ns *ns, struct conn *c, const struct frame_header *h,
        const Imgstore__AdminRepair *q)
{
    uint64_t id = q->block_id;
    int status_only = q->status_only;
    const struct ns_block *b = id ? ns_blocks_get(&ns->blocks, id) : NULL;
    if (!b) {
        reply_err(c, h, id ? IMG_ENOTFOUND : IMG_EINVAL);
        return;
    }
    if (status_only || !ns->loop) {
        repair_answer(ns, c, h, b, NULL);
        return;
    }
    struct repair *r = calloc(1, sizeof(*r));
    if (!r) {
        reply_err(c, h, -ENOMEM);
        return;
    }
    r->ns = ns;
    r->c = c;
    r->h = *h;
    r->block_id = id;
    r->n = b->nrep;
    for (unsigned i = 0; i < b->nrep; i++)
        r->hold[i].server = b->rep[i];
    r->next = repairs;
    repairs = r;
    log_info("repair of block %" PRIu64 " asked by an operator: checking %u replicas", id,
             b->nrep);
    r->pending = 1; /* held while sending */
    for (unsigned i = 0; i < r->n; i++) {
        Imgstore__StatBlock sm = IMGSTORE__STAT_BLOCK__INIT;
        sm.block_id = id;
        send_one(r, i, FT_STAT_BLOCK, &sm.base, NS_CMD_TIMEOUT_MS, stat_reply,
                 &r->hold[i].stat_rc);
        Imgstore__Verify vm = IMGSTORE__VERIFY__INIT;
        vm.block_id = id;
        send_one(r, i, FT_VERIFY, &vm.base, NS_OPS_VERIFY_TIMEOUT_MS, verify_reply,
                 &r->hold[i].verify_rc);
    }
    if (--r->pending == 0)
        repair_done(r);
}
