/* ns_plan.c - the self-healing planner: re-replication of blocks that lost
 * replicas, deletion of extra replicas, drain, and the task list.
 *
 * After safe mode, a pass over the block map runs every NS_PLAN_INTERVAL_MS
 * and right after a task ends. Lost redundancy comes first: sealed blocks
 * below the replication setting are copied, fewest up replicas first, each
 * by one REPLICATE_BLOCK to the target's session (the target pulls from the
 * source, verifies and answers). Writable blocks that lost a replica are
 * sealed first (SEAL_BLOCK to every up holder). Extra replicas are deleted
 * only when enough other copies remain and every one of them, asked with
 * STAT_BLOCK, is sealed and of the same size; DELETE_BLOCK carries that size
 * and the dataserver refuses to drop a copy that differs.
 *
 * Caps: each server takes part in at most cfg.task_cap running tasks (as a
 * source, a target or the server deleting); the byte rate of copies is
 * enforced by the copying dataserver (cfg.copy_rate, sent with each
 * REPLICATE_BLOCK). A block with no up replica is counted as lost and logged
 * once at ERROR; it stays in the map.
 *
 * Tasks live in one array (running ones and the last NS_TASKS_KEPT finished
 * ones); callbacks find theirs by id, never by pointer. The replica set of
 * sealed blocks (SET_REPLICAS, joining copies, a holder's view) is
 * ns_plan_set.c's.
 *
 * Calls the map, the registry, the settings, the bad list, ns_plan_set.c,
 * compaction (ns_compact_plan) and the balance (ns_balance_plan, _victim,
 * _reason) - the last two as the pass's later steps - and sends commands on
 * dataserver sessions (net/conn.h). */
#include "nameserver/ns.h"
#include "nameserver/ns_ec.h"

#include "net/conn.h"
#include "base/array.h"
#include "base/err.h"
#include "base/log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static const char REASON_UNDER[] = "under-replicated";
static const char REASON_EXTRA[] = "extra replica";
static const char REASON_DRAIN[] = "drain";
static const char REASON_STALE[] = "stale copy";



/* ---- the task list ---------------------------------------------------------- */

struct ns_task *ns_plan_task(struct ns *ns, uint64_t id)
{
    for (size_t i = 0; i < ns->plan.ntasks; i++)
        if (ns->plan.tasks[i].id == id && ns->plan.tasks[i].state == NS_TASK_RUNNING)
            return &ns->plan.tasks[i];
    return NULL;
}

/* Drops the oldest finished tasks beyond NS_TASKS_KEPT. */
static void tasks_trim(struct ns_plan *p)
{
    size_t finished = 0;
    for (size_t i = 0; i < p->ntasks; i++)
        finished += p->tasks[i].state != NS_TASK_RUNNING;
    size_t drop = finished > NS_TASKS_KEPT ? finished - NS_TASKS_KEPT : 0, keep = 0;
    for (size_t i = 0; i < p->ntasks; i++) {
        if (drop && p->tasks[i].state != NS_TASK_RUNNING) {
            drop--;
            continue;
        }
        p->tasks[keep++] = p->tasks[i];
    }
    p->ntasks = keep;
}

/* Adds a running task; NULL on allocation failure. Valid until the next add. */
static struct ns_task *task_add(struct ns *ns, int kind, uint64_t block_id, uint16_t src,
                                uint16_t dst, uint64_t bytes, const char *reason, uint64_t now)
{
    struct ns_plan *p = &ns->plan;
    tasks_trim(p);
    if (ARRAY_RESERVE(p->tasks, p->cap, p->ntasks + 1, 64) != 0)
        return NULL;
    struct ns_task *t = &p->tasks[p->ntasks++];
    memset(t, 0, sizeof(*t));
    t->id = ++p->next_task_id;
    t->kind = (uint8_t)kind;
    t->state = NS_TASK_RUNNING;
    t->block_id = block_id;
    t->src = src;
    t->dst = dst;
    t->bytes_total = bytes;
    t->reason = reason;
    t->start_ms = now;
    if (ns_registry_at(ns, src))
        ns_registry_at(ns, src)->tasks++;
    if (ns_registry_at(ns, dst))
        ns_registry_at(ns, dst)->tasks++;
    return t;
}

static void task_release(struct ns *ns, struct ns_task *t, int status, uint64_t now)
{
    struct ns_server *s = ns_registry_at(ns, t->src), *d = ns_registry_at(ns, t->dst);
    if (s && s->tasks)
        s->tasks--;
    if (d && d->tasks)
        d->tasks--;
    t->state = status ? NS_TASK_FAILED : NS_TASK_DONE;
    t->err = status;
    t->end_ms = now;
    ns->plan.kick = 1;
}

struct ns_task *ns_plan_task_add(struct ns *ns, int kind, uint64_t block_id, uint16_t src,
                                 uint16_t dst, uint64_t bytes, const char *reason, uint64_t now)
{
    return task_add(ns, kind, block_id, src, dst, bytes, reason, now);
}

void ns_plan_progress(struct ns *ns, const struct ns_server *s, const Imgstore__Heartbeat *hb)
{
    for (size_t i = 0; i < hb->n_copies; i++) {
        const Imgstore__CopyProgress *cp = hb->copies[i];
        struct ns_task *t = cp ? ns_plan_task(ns, cp->task_id) : NULL;
        if (t && t->kind == NS_TASK_REPLICATE && t->dst == s->idx && t->block_id == cp->block_id)
            t->bytes_done = cp->bytes_done < t->bytes_total ? cp->bytes_done : t->bytes_total;
    }
}

int ns_plan_task_end(struct ns *ns, uint64_t id, int status, uint64_t size, uint64_t now_ms)
{
    struct ns_task *t = ns_plan_task(ns, id);
    if (!t)
        return IMG_ENOTFOUND;
    struct ns_server *d = ns_registry_at(ns, t->dst);
    struct ns_block *b = ns_blocks_get(&ns->blocks, t->block_id);
    if (t->kind == NS_TASK_COMPACT || t->kind == NS_TASK_EC_ENCODE ||
        t->kind == NS_TASK_EC_REBUILD || t->kind == NS_TASK_EC_MOVE) {
        t->bytes_done = size; /* ns_compact.c, ns_ec.c logged the outcome */
    } else if (status == 0 && t->kind == NS_TASK_REPLICATE) {
        t->bytes_done = size;
        int slot = b && d ? ns_block_add_rep(ns, b, d) : -1;
        if (b && d && slot < 0)
            log_warn("task %" PRIu64 ": block %" PRIu64 " has no free replica slot for %s", id,
                     t->block_id, d->id);
        if (slot >= 0 && size > b->rsize[slot])
            b->rsize[slot] = size; /* the pass adds it to the set once complete */
        if (slot >= 0) {
            /* Copied from a current copy: of the current set, whatever
             * version the copy started with; tell it the set now (a
             * joining copy: the list without itself, until the primary's
             * tail is checked again against its new length). */
            b->rver[slot] = b->ver;
            ns_plan_set_to(ns, b, d);
            if (b->joining & (1u << slot))
                ns_plan_ask_primary(ns, b);
            else if ((b->inset & (1u << slot)) && b->primary != NS_NO_PRIMARY &&
                     b->primary != (unsigned)slot)
                /* A member caught up: the primary learns the members' size
                 * again, which ends its lonely records (a tombstone that
                 * reached only it), so retried deletes of them succeed. */
                ns_plan_set_to(ns, b, ns_registry_at(ns, b->rep[b->primary]));
        }
        log_info("task %" PRIu64 ": block %" PRIu64 " now also on %s (%" PRIu64 " bytes, %s)",
                 id, t->block_id, d ? d->id : "?", size, t->reason);
    } else if (status == 0) {
        if (d)
            ns_block_remove_rep(ns, t->block_id, d);
        log_info("task %" PRIu64 ": extra copy of block %" PRIu64 " deleted from %s (%s)", id,
                 t->block_id, d ? d->id : "?", t->reason);
    } else {
        log_warn("task %" PRIu64 ": %s of block %" PRIu64 " on %s failed: %s", id,
                 t->kind == NS_TASK_REPLICATE ? "copy" : "deletion", t->block_id,
                 d ? d->id : "?", img_strerror(status));
        if (t->kind == NS_TASK_REPLICATE && status == IMG_ESTALE && d)
            ns_bad_mark(ns, t->block_id, d->idx,
                                "it is not a prefix of the current copies");
    }
    task_release(ns, t, status, now_ms);
    return 0;
}

/* ---- sending commands ------------------------------------------------------ */

/* The argument of one command's reply callback. */
struct cmd {
    struct ns *ns;
    uint64_t task_id;
};

static struct cmd *cmd_new(struct ns *ns, uint64_t task_id)
{
    struct cmd *c = malloc(sizeof(*c));
    if (c)
        *c = (struct cmd){.ns = ns, .task_id = task_id};
    return c;
}

static void replicate_reply(int status, const struct frame *f, void *arg)
{
    struct cmd *c = arg;
    struct ns *ns = c->ns;
    int rc;
    uint64_t size = 0;
    Imgstore__ReplicateBlockResp *m =
        conn_reply_unpack(status, f, &imgstore__replicate_block_resp__descriptor, &rc);
    if (m) {
        size = m->size;
        imgstore__replicate_block_resp__free_unpacked(m, NULL);
    }
    if (!ns->stopping)
        ns_plan_task_end(ns, c->task_id, rc, size, uv_now(ns->loop));
    free(c);
    if (!ns->stopping)
        ns_plan_step(ns, uv_now(ns->loop));
}

/* Sends REPLICATE_BLOCK for task t. Returns 0 or an error (task untouched). */
static int send_replicate(struct ns *ns, struct ns_task *t, const struct ns_block *b)
{
    struct ns_server *s = ns_registry_at(ns, t->src), *d = ns_registry_at(ns, t->dst);
    if (!ns->loop)
        return 0;
    if (!s || !d || !d->conn)
        return IMG_ECONN;
    /* The replica set after the copy: up holders (primary first), then d. */
    Imgstore__Replica reps[NS_BLOCK_SLOTS + 1], *rp[NS_BLOCK_SLOTS + 1], src;
    struct ns_server *hs[NS_BLOCK_SLOTS];
    unsigned slot[NS_BLOCK_SLOTS], nh = ns_block_holders(ns, b, hs, slot);
    size_t n = 0;
    for (unsigned k = 0; k < nh && n < NS_MAX_REPLICAS - 1; k++) {
        if (!hs[k]->up)
            continue;
        ns_plan_fill_replica(&reps[n], hs[k]);
        rp[n] = &reps[n];
        n++;
    }
    ns_plan_fill_replica(&reps[n], d);
    rp[n] = &reps[n];
    n++;
    ns_plan_fill_replica(&src, s);
    Imgstore__ReplicateBlock m = IMGSTORE__REPLICATE_BLOCK__INIT;
    m.block_id = b->id;
    m.block_size = ns->meta.block_size;
    m.source = &src;
    m.expected_size = b->size;
    m.n_replicas = n;
    m.replicas = rp;
    m.task_id = t->id;
    m.rate_bytes_per_s = ns_settings_copy_rate(ns);
    m.set_version = b->ver;
    struct cmd *c = cmd_new(ns, t->id);
    if (!c)
        return -ENOMEM;
    int rc = conn_request(d->conn, FT_REPLICATE_BLOCK, &m.base, NULL, 0, NULL,
                          NS_TASK_TIMEOUT_MS, replicate_reply, c);
    if (rc)
        free(c);
    return rc;
}

static void simple_reply(int status, const struct frame *f, void *arg)
{
    (void)status;
    (void)f;
    free(arg);
}

void ns_plan_seal_on(struct ns *ns, uint64_t block_id, struct ns_server *s)
{
    if (!ns->loop || !s->up || !s->conn)
        return;
    Imgstore__SealBlock m = IMGSTORE__SEAL_BLOCK__INIT;
    m.block_id = block_id;
    struct cmd *c = cmd_new(ns, 0);
    if (c && conn_request(s->conn, FT_SEAL_BLOCK, &m.base, NULL, 0, NULL, NS_CMD_TIMEOUT_MS,
                          simple_reply, c) != 0)
        free(c);
}

/* Asks every up holder of b to seal it (answers are not awaited: the seal
 * shows in their next heartbeat). */
static void send_seal(struct ns *ns, const struct ns_block *b)
{
    if (!ns->loop)
        return;
    for (unsigned i = 0; i < b->nrep; i++) {
        struct ns_server *h = ns_registry_at(ns, b->rep[i]);
        if (!h || !h->up || !h->conn)
            continue;
        Imgstore__SealBlock m = IMGSTORE__SEAL_BLOCK__INIT;
        m.block_id = b->id;
        struct cmd *c = cmd_new(ns, 0);
        if (c && conn_request(h->conn, FT_SEAL_BLOCK, &m.base, NULL, 0, NULL,
                              NS_CMD_TIMEOUT_MS, simple_reply, c) != 0)
            free(c);
    }
}

static void delete_reply(int status, const struct frame *f, void *arg)
{
    struct cmd *c = arg;
    struct ns *ns = c->ns;
    if (!ns->stopping) {
        ns_plan_task_end(ns, c->task_id, conn_reply_status(status, f), 0, uv_now(ns->loop));
        ns_plan_step(ns, uv_now(ns->loop));
    }
    free(c);
}

/* Every kept copy answered: delete the extra one if they all agree. */
static void delete_go(struct ns *ns, struct ns_task *t)
{
    struct ns_server *d = ns_registry_at(ns, t->dst);
    uint64_t now = uv_now(ns->loop);
    if (t->keep_bad || t->keep_size == 0) {
        log_warn("task %" PRIu64 ": kept copies of block %" PRIu64 " are not all settled, "
                 "intact and of one size; %s keeps its copy",
                 t->id, t->block_id, d ? d->id : "?");
        ns_plan_task_end(ns, t->id, IMG_EINVAL, 0, now);
        return;
    }
    /* The kept copies hold everything the victim held when asked (it was a
     * member till now, so they got every tombstone it got): it leaves the
     * set, and the kept copies stop forwarding to it before it goes. A
     * tombstone still reaching it after the STATs makes it longer than
     * keep_size, and the dataserver refuses the DELETE. */
    struct ns_block *b = ns_blocks_get(&ns->blocks, t->block_id);
    int vslot = b && d ? ns_block_find_rep(b, d->idx) : -1;
    /* A copy of an older set, or a bad one (a compaction left it with the
     * other layout), may be longer than the kept copies without holding
     * anything they lack: every acknowledged append is on every member of
     * the current set, which the kept copies are. (Asked before it leaves
     * the set, which makes any leaving copy "old".) */
    int any_size = vslot >= 0 && (ns_block_is_old(b, (unsigned)vslot) ||
                                  ns_bad_has(ns, b->id, d->idx));
    if (vslot >= 0 && (b->inset & (1u << vslot))) {
        b->inset &= (uint8_t)~(1u << vslot);
        ns_plan_send_set(ns, b);
    }
    Imgstore__DeleteBlock m = IMGSTORE__DELETE_BLOCK__INIT;
    m.block_id = t->block_id;
    m.expected_size = t->keep_size;
    m.any_size = any_size;
    struct cmd *c = cmd_new(ns, t->id);
    int rc = !c ? -ENOMEM : !d || !d->conn ? IMG_ECONN : 0;
    if (rc == 0)
        rc = conn_request(d->conn, FT_DELETE_BLOCK, &m.base, NULL, 0, NULL, NS_CMD_TIMEOUT_MS,
                          delete_reply, c);
    if (rc) {
        free(c);
        ns_plan_task_end(ns, t->id, rc, 0, now);
    }
}

static void stat_reply(int status, const struct frame *f, void *arg)
{
    struct cmd *c = arg;
    struct ns *ns = c->ns;
    struct ns_task *t = ns->stopping ? NULL : ns_plan_task(ns, c->task_id);
    free(c);
    if (!t)
        return;
    int rc;
    Imgstore__BlockInfo *bi = conn_reply_unpack(status, f, &imgstore__block_info__descriptor, &rc);
    if (!bi || bi->corrupt || bi->size == 0 || (t->keep_size && bi->size != t->keep_size)) {
        t->keep_bad = 1;
        log_info("task %" PRIu64 ": a kept copy of block %" PRIu64 " answered %s, size %" PRIu64
                 "%s (other copies: %" PRIu64 ")",
                 t->id, t->block_id, img_strerror(rc), bi ? bi->size : 0,
                 bi && bi->corrupt ? ", corrupt" : "", t->keep_size);
    } else {
        t->keep_size = bi->size;
    }
    if (bi)
        imgstore__block_info__free_unpacked(bi, NULL);
    if (--t->verifying == 0)
        delete_go(ns, t);
}

/* Starts a deletion: STAT_BLOCK to every kept copy first. */
static int send_delete(struct ns *ns, struct ns_task *t, const struct ns_block *b)
{
    if (!ns->loop)
        return 0;
    uint64_t id = t->id;
    t->verifying = 1; /* held while sending */
    for (unsigned i = 0; i < b->nrep; i++) {
        struct ns_server *h = ns_registry_at(ns, b->rep[i]);
        if (!h || !h->up || h->idx == t->dst)
            continue;
        Imgstore__StatBlock m = IMGSTORE__STAT_BLOCK__INIT;
        m.block_id = b->id;
        struct cmd *c = cmd_new(ns, id);
        int rc = !c ? -ENOMEM : !h->conn ? IMG_ECONN : 0;
        if (rc == 0)
            rc = conn_request(h->conn, FT_STAT_BLOCK, &m.base, NULL, 0, NULL, NS_CMD_TIMEOUT_MS,
                              stat_reply, c);
        if (rc) {
            free(c);
            t->keep_bad = 1;
        } else {
            t->verifying++;
        }
    }
    if (--t->verifying == 0)
        delete_go(ns, t);
    return 0;
}

/* ---- choosing ---------------------------------------------------------------- */

static int under_cap(const struct ns *ns, const struct ns_server *s)
{
    return s && s->tasks < ns_settings_task_cap(ns);
}

/* Bytes of copies running towards s (so one pass spreads its targets). */
static uint64_t incoming(const struct ns *ns, const struct ns_server *s)
{
    uint64_t n = 0;
    for (size_t i = 0; i < ns->plan.ntasks; i++) {
        const struct ns_task *t = &ns->plan.tasks[i];
        if (t->state == NS_TASK_RUNNING && t->kind == NS_TASK_REPLICATE && t->dst == s->idx)
            n += t->bytes_total;
    }
    return n;
}

/* A recent failed copy of `block_id` from server `src`: try another source. */
static int failed_recently(const struct ns *ns, uint64_t block_id, uint16_t src)
{
    for (size_t i = 0; i < ns->plan.ntasks; i++) {
        const struct ns_task *t = &ns->plan.tasks[i];
        if (t->state == NS_TASK_FAILED && t->block_id == block_id && t->src == src)
            return 1;
    }
    return 0;
}

/* The longest size an up holder of b reported (0 when none is up). */
static uint64_t longest_up(const struct ns *ns, const struct ns_block *b)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < b->nrep; i++) {
        struct ns_server *h = ns_registry_at(ns, b->rep[i]);
        if (h && h->up && b->rsize[i] > n && !ns_block_is_unready(b, i))
            n = b->rsize[i];
    }
    return n;
}

/* The source: an up holder of the longest copy of the current set under the
 * cap: the primary when it qualifies, else the one with the fewest tasks;
 * holders whose copy failed recently only when nothing else is left. With
 * allow_bad (a tail catch-up), a bad copy when no good one qualifies: its bad
 * records may lie before the tail, and a copy checks every record's CRC, so
 * they would fail it, never spread. Returns the server or NULL. */
static struct ns_server *pick_source(const struct ns *ns, const struct ns_block *b, int allow_bad)
{
    struct ns_server *best = NULL;
    unsigned best_score = 0;
    uint64_t longest = longest_up(ns, b);
    for (unsigned i = 0; i < b->nrep; i++) {
        struct ns_server *h = ns_registry_at(ns, b->rep[i]);
        if (!h || !h->up || !under_cap(ns, h) || b->rsize[i] < longest ||
            ns_block_is_unready(b, i) || (!allow_bad && ns_bad_has(ns, b->id, h->idx)))
            continue;
        /* Lower is better: a recent failure, then not the primary, then load. */
        unsigned score = (ns_bad_has(ns, b->id, h->idx) ? 2u * NS_MAX_TASK_CAP * 16 : 0) +
                         (failed_recently(ns, b->id, h->idx) ? 2u * NS_MAX_TASK_CAP * 4 : 0) +
                         (b->primary == i ? 0 : 2u * NS_MAX_TASK_CAP) + h->tasks;
        if (!best || score < best_score) {
            best = h;
            best_score = score;
        }
    }
    return best;
}

/* The target: up, writable, not draining, not holding b, under the cap, with
 * room for b above its reserve once what is already coming has arrived; most
 * free bytes (less what is coming), ties broken randomly. */
static struct ns_server *pick_target(struct ns *ns, const struct ns_block *b)
{
    struct ns_server *best = NULL;
    uint64_t best_free = 0, best_tie = 0;
    for (size_t i = 0; i < ns->nservers; i++) {
        struct ns_server *s = ns->servers[i];
        if (!s->up || s->readonly || s->draining || !under_cap(ns, s) ||
            ns_block_find_rep(b, s->idx) >= 0)
            continue;
        uint64_t in = incoming(ns, s);
        if (!ns_server_has_room(ns, s, in + b->size))
            continue; /* full, or will be: a copy there would fail with ENOSPC */
        uint64_t fr = s->free - in;
        uint64_t tie = ns_rand(ns);
        if (!best || fr > best_free || (fr == best_free && tie < best_tie)) {
            best = s;
            best_free = fr;
            best_tie = tie;
        }
    }
    return best;
}

/* ---- the pass ------------------------------------------------------------------ */

struct cand {
    uint64_t id;
    unsigned good; /* up replicas on servers that are not draining */
};

static int cmp_cand(const void *a, const void *b)
{
    const struct cand *x = a, *y = b;
    if (x->good != y->good)
        return x->good < y->good ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static int cand_push(struct cand **v, size_t *n, size_t *cap, uint64_t id, unsigned good)
{
    int rc = ARRAY_RESERVE(*v, *cap, *n + 1, 256);
    if (rc != 0)
        return rc;
    (*v)[(*n)++] = (struct cand){.id = id, .good = good};
    return 0;
}

/* Logs blocks that became lost (once each) and remembers the set. */
static void note_lost(struct ns *ns, uint64_t *lost, size_t nlost)
{
    if (nlost > 1)
        qsort(lost, nlost, sizeof(*lost), ns_cmp_u64);
    for (size_t i = 0; i < nlost; i++)
        if (!ns->plan.nlost ||
            !bsearch(&lost[i], ns->plan.lost, ns->plan.nlost, sizeof(*lost), ns_cmp_u64))
            log_error("block %" PRIu64 " is lost: no replica is up (kept in the map; it "
                      "comes back when a holder reports it)",
                      lost[i]);
    free(ns->plan.lost);
    ns->plan.lost = lost;
    ns->plan.nlost = nlost;
}

/* Returns, sorted in *out (caller frees), the blocks with a running task or
 * a task that failed less than NS_RETRY_MS ago (so a failing block does not
 * spin the planner). */
static size_t busy_blocks(const struct ns *ns, uint64_t now, uint64_t **out)
{
    uint64_t *v = malloc((ns->plan.ntasks + 1) * sizeof(*v));
    size_t n = 0;
    for (size_t i = 0; v && i < ns->plan.ntasks; i++) {
        const struct ns_task *t = &ns->plan.tasks[i];
        if (t->state == NS_TASK_RUNNING ||
            (t->state == NS_TASK_FAILED && now < t->end_ms + NS_RETRY_MS))
            v[n++] = t->block_id;
    }
    if (v && n > 1)
        qsort(v, n, sizeof(*v), ns_cmp_u64);
    *out = v;
    return n;
}

/* The copy of b to delete: a draining up holder first; else the non-primary
 * up holder with the least free bytes. NULL when none may go. */
static struct ns_server *pick_victim(const struct ns *ns, const struct ns_block *b)
{
    struct ns_server *best = NULL;
    for (unsigned i = 0; i < b->nrep; i++) {
        struct ns_server *h = ns_registry_at(ns, b->rep[i]);
        if (!h || !h->up || !under_cap(ns, h))
            continue;
        if (h->draining || ns_bad_has(ns, b->id, h->idx) || ns_block_is_old(b, i))
            return h;
        if (b->primary == i)
            continue;
        if (!best || h->free < best->free)
            best = h;
    }
    return ns_balance_victim(ns, b, best); /* a balance move deletes its source's copy */
}

static void start_replicate(struct ns *ns, struct ns_block *b, uint64_t now)
{
    struct ns_server *s = pick_source(ns, b, 0);
    struct ns_server *d = s ? pick_target(ns, b) : NULL;
    if (!s || !d)
        return;
    int drain = 0;
    for (unsigned i = 0; i < b->nrep; i++)
        drain |= ns_registry_at(ns, b->rep[i]) && ns_registry_at(ns, b->rep[i])->draining;
    struct ns_task *t = task_add(ns, NS_TASK_REPLICATE, b->id, s->idx, d->idx, b->size,
                                 drain && ns_block_up_reps(ns, b) >= ns->meta.replicas
                                     ? REASON_DRAIN
                                     : REASON_UNDER,
                                 now);
    if (!t)
        return;
    log_info("task %" PRIu64 ": copy block %" PRIu64 " (%" PRIu64 " bytes, %u up replicas) "
             "from %s to %s (%s)",
             t->id, b->id, b->size, ns_block_up_reps(ns, b), s->id, d->id, t->reason);
    int rc = send_replicate(ns, t, b);
    if (rc)
        ns_plan_task_end(ns, t->id, rc, 0, now);
}

uint64_t ns_plan_start_copy(struct ns *ns, struct ns_block *b, struct ns_server *s,
                            struct ns_server *d, const char *reason, uint64_t now_ms)
{
    struct ns_task *t = task_add(ns, NS_TASK_REPLICATE, b->id, s->idx, d->idx, b->size, reason,
                                 now_ms);
    if (!t)
        return 0;
    uint64_t id = t->id;
    log_info("task %" PRIu64 ": copy block %" PRIu64 " (%" PRIu64 " bytes) from %s to %s (%s)",
             id, b->id, b->size, s->id, d->id, reason);
    int rc = send_replicate(ns, t, b);
    if (rc) {
        ns_plan_task_end(ns, id, rc, 0, now_ms);
        return 0;
    }
    return id;
}

static void start_delete(struct ns *ns, struct ns_block *b, uint64_t now)
{
    struct ns_server *v = pick_victim(ns, b);
    if (!v)
        return;
    unsigned keep = 0;
    for (unsigned i = 0; i < b->nrep; i++) {
        struct ns_server *h = ns_registry_at(ns, b->rep[i]);
        keep += h && h->up && !h->draining && h != v && !ns_bad_has(ns, b->id, h->idx) &&
                !ns_block_is_unready(b, i);
    }
    if (keep < ns->meta.replicas)
        return;
    struct ns_task *t = task_add(ns, NS_TASK_DELETE, b->id, NS_NO_SERVER, v->idx, b->size,
                                 v->draining ? REASON_DRAIN
                                             : ns_balance_reason(ns, b, v, REASON_EXTRA),
                                 now);
    if (!t)
        return;
    log_info("task %" PRIu64 ": delete the copy of block %" PRIu64 " on %s (%u up replicas, "
             "%s)",
             t->id, b->id, v->id, ns_block_up_reps(ns, b), t->reason);
    send_delete(ns, t, b);
}

/* Failover of a sealed block whose primary is missing or down past the
 * heartbeat timeout: the up member of the replica set with the longest copy
 * becomes primary (every acknowledged delete is on every member, and a
 * member that joined short lacks the last ones until caught up); among equal
 * lengths a good copy first, then one not draining. A copy of an older set
 * or outside the set never: its data may differ. A bad copy may win by
 * length: its bad records are served by the others, and a tail catch-up may
 * read from it. Returns non-zero when the primary changed. */
static int failover(struct ns *ns, struct ns_block *b, uint64_t now)
{
    struct ns_server *p = b->primary != NS_NO_PRIMARY ? ns_registry_at(ns, b->rep[b->primary]) : NULL;
    if (p && (p->up || now < p->last_hb_ms + ns->cfg.hb_timeout_ms))
        return 0;
    int best = -1;
    unsigned best_rank = 0;
    for (unsigned i = 0; i < b->nrep; i++) {
        struct ns_server *h = ns_registry_at(ns, b->rep[i]);
        if (!h || !h->up || ns_block_is_unready(b, i) || (b->inset && !(b->inset & (1u << i))))
            continue;
        unsigned rank = (ns_bad_has(ns, b->id, h->idx) ? 0 : 2u) + (h->draining ? 0 : 1u);
        if (best < 0 || b->rsize[i] > b->rsize[best] ||
            (b->rsize[i] == b->rsize[best] && rank > best_rank)) {
            best = (int)i;
            best_rank = rank;
        }
    }
    if (best < 0)
        return 0;
    log_info("block %" PRIu64 ": primary %s is down; %s (%" PRIu64 " bytes) promoted", b->id,
             p ? p->id : "(none)", ns_registry_at(ns, b->rep[best])->id, b->rsize[best]);
    b->primary = (uint8_t)best;
    return 1;
}

/* Keeps the replica set of a sealed block: the primary, every up holder
 * already in it, and every up holder whose copy is as long as the longest
 * up copy; down holders leave it. Tells every holder when it changed. */
static void maintain_set(struct ns *ns, struct ns_block *b, uint64_t now)
{
    int changed = failover(ns, b, now);
    if (b->set_shrunk) { /* a member left on its own: the others learn it */
        b->set_shrunk = 0;
        changed = 1;
    }
    uint64_t longest = longest_up(ns, b);
    uint8_t set = 0;
    for (unsigned i = 0; i < b->nrep; i++) {
        struct ns_server *h = ns_registry_at(ns, b->rep[i]);
        if (!h || !h->up || ns_block_is_old(b, i))
            continue;
        if (b->primary == i || (b->inset & (1u << i)) || b->rsize[i] >= longest)
            set |= (uint8_t)(1u << i);
    }
    if (b->primary != NS_NO_PRIMARY)
        set |= (uint8_t)(1u << b->primary);
    /* Copies that come in by length join (see above); copies that leave
     * stop joining. */
    uint8_t joins = (uint8_t)(set & ~b->inset);
    if (b->primary != NS_NO_PRIMARY)
        joins &= (uint8_t)~(1u << b->primary);
    b->joining = (uint8_t)((b->joining | joins) & set);
    if (set != b->inset) {
        b->inset = set;
        changed = 1;
    }
    if (changed) {
        ns_plan_send_set(ns, b);
        return;
    }
    /* Joining copies that look complete by the reported sizes (a catch-up
     * ended, or an earlier answer was lost): ask the primary again. */
    int complete = b->joining != 0;
    for (unsigned i = 0; i < b->nrep && complete; i++)
        if ((b->joining & (1u << i)) && b->rsize[i] < longest)
            complete = 0;
    if (complete)
        ns_plan_ask_primary(ns, b);
}

/* Starts the tail copy of the shortest up holder of a sealed block from a
 * holder of the longest copy. Returns non-zero when a task started. */
static int start_catch_up(struct ns *ns, struct ns_block *b, uint64_t now)
{
    uint64_t longest = longest_up(ns, b);
    int dst = -1;
    uint8_t behind = 0;
    for (unsigned i = 0; i < b->nrep; i++) {
        struct ns_server *h = ns_registry_at(ns, b->rep[i]);
        /* A copy of an older set is caught up too when not longer: the
         * target first checks it is a prefix of the source (else
         * IMG_ESTALE), then takes the current set version. */
        int old = ns_block_is_old(b, i);
        if (!h || !h->up || b->rsize[i] > longest || (!old && b->rsize[i] == longest) ||
            ns_bad_has(ns, b->id, h->idx))
            continue;
        behind |= (uint8_t)(1u << i);
        /* A member of the set gets every tombstone: short in one report is
         * usually a heartbeat still on its way, so it waits one pass. */
        if ((b->inset & (1u << i)) && !(b->behind & (1u << i)))
            continue;
        if (under_cap(ns, h) && (dst < 0 || b->rsize[i] < b->rsize[dst]))
            dst = (int)i;
    }
    b->behind = behind;
    struct ns_server *d = dst >= 0 ? ns_registry_at(ns, b->rep[dst]) : NULL;
    struct ns_server *s = d ? pick_source(ns, b, 1) : NULL;
    if (!s || s == d)
        return 0;
    struct ns_task *t = task_add(ns, NS_TASK_REPLICATE, b->id, s->idx, d->idx,
                                 longest - b->rsize[dst], REASON_STALE, now);
    if (!t)
        return 0;
    log_info("task %" PRIu64 ": catch up block %" PRIu64 " on %s (%" PRIu64 " of %" PRIu64
             " bytes) from %s",
             t->id, b->id, d->id, b->rsize[dst], longest, s->id);
    /* A member may not have our newest set yet (the dataserver refuses to
     * catch up a copy of an older set): it gets it first, on the same
     * session, so before the copy. */
    ns_plan_set_to(ns, b, d);
    int rc = send_replicate(ns, t, b);
    if (rc)
        ns_plan_task_end(ns, t->id, rc, 0, now);
    return 1;
}

static void drain_progress(struct ns *ns)
{
    for (size_t i = 0; i < ns->nservers; i++) {
        struct ns_server *s = ns->servers[i];
        if (s->draining && s->nblocks == 0 && !s->drain_done_logged &&
            ns_ec_shards_on(ns, s->idx) == 0) {
            log_info("drain of %s complete: it holds no block and no shard", s->id);
            s->drain_done_logged = 1;
        }
    }
}

/* Forgets the copies of b that are of an older replica set and sit on a
 * server that is down, once b's set is whole again (`good` good copies).
 * Such a copy is never read, never a source and never counted; kept in the
 * map it only held a holder slot and made the block unmovable (balance
 * moves take blocks with exactly `replicas` holders), so that after a few
 * failures new servers could never fill. Forgetting it leaves the map as a
 * restart would: if the server comes back and reports the copy, its older
 * set version marks it old again and it is deleted as an extra replica. */
static void forget_dead_copies(struct ns *ns, struct ns_block *b, unsigned good)
{
    if (good < ns->meta.replicas)
        return;
    for (unsigned k = b->nrep; k-- > 0;) {
        struct ns_server *h = ns_registry_at(ns, b->rep[k]);
        if (h && !h->up && ns_block_is_old(b, k)) {
            log_info("block %" PRIu64 ": forgetting the copy on %s (down, of an older replica "
                     "set; the set is whole without it)", b->id, h->id);
            ns_block_remove_rep(ns, b->id, h);
        }
    }
}

void ns_plan_step(struct ns *ns, uint64_t now_ms)
{
    if (ns->safe_mode || ns->settling || ns->stopping)
        return;
    ns->plan.kick = 0;
    ns->plan.last_run_ms = now_ms;
    uint64_t *busy = NULL, *lost = NULL;
    struct cand *under = NULL, *extra = NULL;
    size_t nunder = 0, cunder = 0, nextra = 0, cextra = 0, nlost = 0, clost = 0;
    size_t nbusy = busy_blocks(ns, now_ms, &busy);
    if (!busy)
        return;
    for (size_t i = 0; i < ns->blocks.cap; i++) {
        struct ns_block *b = &ns->blocks.slots[i];
        if (!b->id)
            continue;
        unsigned up = 0, good = 0, draining = 0;
        for (unsigned k = 0; k < b->nrep; k++) {
            struct ns_server *h = ns_registry_at(ns, b->rep[k]);
            if (!h || !h->up)
                continue;
            up++;
            /* A bad copy (ns_compact.c) or a copy of an older replica set
             * is replaced like a draining one. */
            int leaving = h->draining || ns_bad_has(ns, b->id, h->idx) ||
                          ns_block_is_old(b, k);
            /* A joining copy is neither good yet nor to be replaced. */
            good += !leaving && !(b->joining & (1u << k));
            draining += leaving;
        }
        if (up == 0) {
            if (ARRAY_RESERVE(lost, clost, nlost + 1, 64) != 0)
                continue;
            lost[nlost++] = b->id;
            continue;
        }
        if (b->sealed)
            maintain_set(ns, b, now_ms);
        if (nbusy && bsearch(&b->id, busy, nbusy, sizeof(*busy), ns_cmp_u64))
            continue;
        forget_dead_copies(ns, b, good);
        if (b->sealed && start_catch_up(ns, b, now_ms))
            continue;
        unsigned joining = 0;
        for (unsigned k = 0; k < b->nrep; k++)
            joining += (b->joining >> k) & 1u;
        int wants_copy = good + joining < ns->meta.replicas;
        int wants_delete = up > ns->meta.replicas && (draining || good > ns->meta.replicas);
        if ((wants_copy || draining) && !b->sealed) {
            send_seal(ns, b); /* copies are made of sealed blocks only */
            continue;
        }
        if ((wants_copy || draining) && ns->ec && ns_ec_supersedes(ns, b->id))
            continue; /* encoded: these copies are being deleted (ns_ec.c) */
        if (wants_copy)
            cand_push(&under, &nunder, &cunder, b->id, good);
        else if (wants_delete && b->sealed)
            cand_push(&extra, &nextra, &cextra, b->id, good);
    }
    note_lost(ns, lost, nlost);
    ns->plan.under = nunder;
    if (nunder > 1)
        qsort(under, nunder, sizeof(*under), cmp_cand);
    for (size_t i = 0; i < nunder; i++) {
        struct ns_block *b = ns_blocks_get(&ns->blocks, under[i].id);
        if (b)
            start_replicate(ns, b, now_ms);
    }
    for (size_t i = 0; i < nextra; i++) {
        struct ns_block *b = ns_blocks_get(&ns->blocks, extra[i].id);
        if (b)
            start_delete(ns, b, now_ms);
    }
    ns_compact_plan(ns, now_ms, busy, nbusy);
    ns_ec_plan(ns, now_ms);
    ns_balance_plan(ns, now_ms);
    drain_progress(ns);
    free(busy);
    free(under);
    free(extra);
}

void ns_plan_tick(struct ns *ns, uint64_t now_ms)
{
    if (ns->plan.kick || now_ms - ns->plan.last_run_ms >= NS_PLAN_INTERVAL_MS)
        ns_plan_step(ns, now_ms);
}

int ns_plan_drain(struct ns *ns, const char *id, int cancel, uint32_t *left)
{
    struct ns_server *s = id ? ns_registry_find(ns, id) : NULL;
    if (!s)
        return IMG_ENOTFOUND;
    int rc = ns_meta_set_draining(&ns->meta, s->id, !cancel); /* survives our restart */
    if (rc != 0)
        return rc;
    unsigned shards = ns_ec_shards_on(ns, s->idx);
    if (!cancel && !s->draining)
        log_info("drain of %s started: %u replicas and %u shards to move", s->id, s->nblocks,
                 shards);
    else if (cancel && s->draining)
        log_info("drain of %s canceled: %u replicas and %u shards left on it", s->id,
                 s->nblocks, shards);
    s->draining = !cancel;
    s->drain_done_logged = 0;
    *left = s->nblocks;
    ns->plan.kick = 1;
    return 0;
}

/* The argument of CANCEL_COPY's reply callback (for its log line). */
struct cancel_cmd {
    struct ns *ns;
    uint64_t task_id, block_id;
    char server_id[NS_SERVER_ID_MAX + 1];
};

/* The target's answer to CANCEL_COPY: only logged. Its REPLICATE_BLOCK is
 * answered -ECANCELED when the copy stops (ignored: the task is gone). */
static void cancel_copy_reply(int status, const struct frame *f, void *arg)
{
    struct cancel_cmd *c = arg;
    int rc = conn_reply_status(status, f);
    if (c->ns->stopping) { /* the session closes with the nameserver: nothing to say */
        free(c);
        return;
    }
    if (rc == 0)
        log_info("task %" PRIu64 ": %s stops its copy of block %" PRIu64, c->task_id,
                 c->server_id, c->block_id);
    else if (rc == IMG_ENOTFOUND)
        log_debug("task %" PRIu64 ": no copy of block %" PRIu64 " running on %s (it ended)",
                  c->task_id, c->block_id, c->server_id);
    else if (rc == IMG_EBADTYPE)
        log_info("task %" PRIu64 ": %s cannot cancel copies (an older dataserver): its copy of "
                 "block %" PRIu64 " runs to the end and is deleted later as an extra replica",
                 c->task_id, c->server_id, c->block_id);
    else
        log_info("task %" PRIu64 ": CANCEL_COPY of block %" PRIu64 " on %s: %s", c->task_id,
                 c->block_id, c->server_id, img_strerror(rc));
    free(c);
}

/* Tells the target of copy task t to stop the copy (CANCEL_COPY on its
 * session), so a canceled copy stops using disk and network at once. No-op
 * without a loop or a session: a copy there ends or fails on its own. */
static void send_cancel_copy(struct ns *ns, const struct ns_task *t)
{
    struct ns_server *d = ns_registry_at(ns, t->dst);
    if (!ns->loop || !d || !d->conn)
        return;
    struct cancel_cmd *c = malloc(sizeof(*c));
    if (!c)
        return;
    c->ns = ns;
    c->task_id = t->id;
    c->block_id = t->block_id;
    snprintf(c->server_id, sizeof(c->server_id), "%s", d->id);
    Imgstore__CancelCopy m = IMGSTORE__CANCEL_COPY__INIT;
    m.block_id = t->block_id;
    m.task_id = t->id;
    if (conn_request(d->conn, FT_CANCEL_COPY, &m.base, NULL, 0, NULL, NS_CMD_TIMEOUT_MS,
                     cancel_copy_reply, c) != 0)
        free(c);
}

int ns_plan_cancel(struct ns *ns, uint64_t id, uint64_t now_ms)
{
    struct ns_task *t = ns_plan_task(ns, id);
    if (!t)
        return IMG_ENOTFOUND;
    log_info("task %" PRIu64 ": canceled by an operator", id);
    if (t->kind == NS_TASK_REPLICATE)
        send_cancel_copy(ns, t);
    return ns_plan_task_end(ns, id, -ECANCELED, 0, now_ms);
}

void ns_plan_free(struct ns *ns)
{
    free(ns->plan.tasks);
    free(ns->plan.lost);
    memset(&ns->plan, 0, sizeof(ns->plan));
}

/* ---- admin frames ---------------------------------------------------------------- */

void ns_plan_handle_drain(struct ns *ns, struct conn *c, const struct frame_header *h,
        const Imgstore__Drain *m)
{
    uint32_t left = 0;
    int rc = ns_plan_drain(ns, m->server_id, m->cancel, &left);
    Imgstore__DrainResp resp = IMGSTORE__DRAIN_RESP__INIT;
    resp.blocks_left = left;
    const struct ns_server *s = rc == 0 ? ns_registry_find(ns, m->server_id) : NULL;
    resp.shards_left = s ? ns_ec_shards_on(ns, s->idx) : 0;
    conn_reply(c, h, rc, rc == 0 ? &resp.base : NULL, NULL, 0, NULL);
}

static char *state_text(const struct ns_task *t)
{
    static char running[] = "running", done[] = "done", failed[] = "failed";
    return t->state == NS_TASK_RUNNING ? running : t->state == NS_TASK_DONE ? done : failed;
}

void ns_plan_handle_list(struct ns *ns, struct conn *c, const struct frame_header *h,
        const Imgstore__ListTasks *m)
{
    static char replicate[] = "replicate", del[] = "delete", none[] = "", compact[] = "compact",
                ec_encode[] = "ec-encode", ec_rebuild[] = "ec-rebuild", ec_move[] = "ec-move";
    size_t n = ns->plan.ntasks;
    Imgstore__Task *tasks = calloc(n + 1, sizeof(*tasks));
    Imgstore__Task **tp = calloc(n + 1, sizeof(*tp));
    Imgstore__DrainStatus *ds = calloc(ns->nservers + 1, sizeof(*ds));
    Imgstore__DrainStatus **dp = calloc(ns->nservers + 1, sizeof(*dp));
    if (!tasks || !tp || !ds || !dp) {
        conn_reply(c, h, -ENOMEM, NULL, NULL, 0, NULL);
        goto out;
    }
    uint64_t now = uv_now(ns->loop);
    size_t k = 0;
    for (int pass = 0; pass < 2; pass++) /* running first, then the newest finished */
        for (size_t j = n; j-- > 0;) {
            const struct ns_task *t = &ns->plan.tasks[j];
            if ((pass == 0) != (t->state == NS_TASK_RUNNING))
                continue;
            Imgstore__Task *o = &tasks[k];
            imgstore__task__init(o);
            o->id = t->id;
            o->kind = t->kind == NS_TASK_REPLICATE   ? replicate
                      : t->kind == NS_TASK_COMPACT   ? compact
                      : t->kind == NS_TASK_EC_ENCODE ? ec_encode
                      : t->kind == NS_TASK_EC_REBUILD ? ec_rebuild
                      : t->kind == NS_TASK_EC_MOVE    ? ec_move
                                                     : del;
            o->state = state_text(t);
            o->block_id = t->block_id;
            o->source = ns_registry_at(ns, t->src) ? ns_registry_at(ns, t->src)->id : none;
            o->target = ns_registry_at(ns, t->dst) ? ns_registry_at(ns, t->dst)->id : none;
            o->bytes_done = t->bytes_done;
            o->bytes_total = t->bytes_total;
            o->reason = (char *)t->reason;
            o->error = t->err ? (char *)img_strerror(t->err) : none;
            o->age_ms = now >= t->start_ms ? now - t->start_ms : 0;
            tp[k++] = o;
        }
    size_t nd = 0;
    for (size_t i = 0; i < ns->nservers; i++) {
        if (!ns->servers[i]->draining)
            continue;
        imgstore__drain_status__init(&ds[nd]);
        ds[nd].server_id = ns->servers[i]->id;
        ds[nd].blocks_left = ns->servers[i]->nblocks;
        ds[nd].shards_left = ns_ec_shards_on(ns, ns->servers[i]->idx);
        dp[nd] = &ds[nd];
        nd++;
    }
    Imgstore__ListTasksResp r = IMGSTORE__LIST_TASKS_RESP__INIT;
    r.n_tasks = k;
    r.tasks = tp;
    r.blocks_lost = ns->plan.nlost;
    r.blocks_under_replicated = ns->plan.under;
    r.n_drains = nd;
    r.drains = dp;
    r.copy_rate_bytes_per_s = ns_settings_copy_rate(ns);
    r.task_cap = ns_settings_task_cap(ns);
    conn_reply(c, h, 0, &r.base, NULL, 0, NULL);
out:
    free(tasks);
    free(tp);
    free(ds);
    free(dp);
}
