/* ns_compact.c - coordinated compaction of sealed blocks, and the list of
 * bad replicas the planner replaces.
 *
 * A compaction is one planner task (NS_TASK_COMPACT, so no copy or deletion
 * of the block runs meanwhile) in three steps:
 *   1. STAT_BLOCK to every holder: all must answer sealed, not corrupt, with
 *      one size (theirs, which may be ahead of the map by the tombstones of
 *      deletes not yet reported), else the task fails (retried after
 *      NS_RETRY_MS);
 *   2. COMPACT_BLOCK{expected_size} to every holder: each rewrites the block
 *      deterministically and answers its new size and CRC32C;
 *   3. every answer must be a success with the same size and CRC32C. If some
 *      holders compacted and others did not, or results differ, the replicas
 *      are no longer byte-identical: the ones that differ from the first
 *      successful answer are marked bad and the planner replaces them by
 *      copies of a good one. Finally COMPACT_BLOCK{release} ends the delete
 *      hold on every holder.
 * Differing replicas are marked in the bad-replica list (ns_bad.c), which
 * this module prunes at each planner pass. Calls the map, the registry, the
 * settings, the bad list, the planner's task list (ns_plan_task_add) and the
 * delete journal's policy (ns_delnote_compacted: offsets changed). */
#include "nameserver/ns.h"
#include "nameserver/ns_delnote.h"
#include "nameserver/ns_ec.h"

#include "net/conn.h"
#include "base/err.h"
#include "base/log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static const char REASON_COMPACT[] = "deleted bytes";

/* ---- one compaction ------------------------------------------------------- */

struct answer {
    uint16_t server;
    int status;
    uint64_t size;
    uint32_t crc;
};

struct job {
    struct ns *ns;
    uint64_t task_id, block_id, size;
    unsigned n, pending;
    int stat_bad;
    uint16_t counted; /* replica index the task itself counts (its target) */
    struct answer a[NS_BLOCK_SLOTS];
};

struct call {
    struct job *j;
    unsigned i;
};


static void ignore_reply(int status, const struct frame *f, void *arg)
{
    (void)status;
    (void)f;
    (void)arg;
}

static void send_release(struct job *j)
{
    for (unsigned i = 0; i < j->n; i++) {
        struct ns_server *s = ns_registry_at(j->ns, j->a[i].server);
        if (!s || !s->up || !s->conn)
            continue;
        Imgstore__CompactBlock m = IMGSTORE__COMPACT_BLOCK__INIT;
        m.block_id = j->block_id;
        m.task_id = j->task_id;
        m.release = 1;
        conn_request(s->conn, FT_COMPACT_BLOCK, &m.base, NULL, 0, NULL, NS_CMD_TIMEOUT_MS,
                     ignore_reply, NULL);
    }
}

/* Every replica of a compaction works on it, so each counts one task against
 * the per-server cap (the task record counts only its target): this keeps
 * the nameserver from asking a server for more compactions at once than it
 * runs (DS_COMPACT_MAX_ACTIVE), which it would refuse. */
static void job_hold_servers(struct job *j, int delta)
{
    for (unsigned i = 0; i < j->n; i++) {
        struct ns_server *s = ns_registry_at(j->ns, j->a[i].server);
        if (!s || j->a[i].server == j->counted)
            continue;
        if (delta > 0)
            s->tasks++;
        else if (s->tasks)
            s->tasks--;
    }
}

static void job_end(struct job *j, int status, uint64_t size)
{
    struct ns *ns = j->ns;
    job_hold_servers(j, -1);
    if (!ns->stopping) {
        ns_plan_task_end(ns, j->task_id, status, size, uv_now(ns->loop));
        ns_plan_step(ns, uv_now(ns->loop));
    }
    free(j);
}

/* The compacted copies that agree with answer `ref` are a new replica set
 * (a new version): a copy that kept the old layout, or differs, is left out
 * and, being of an older set, is never a source, a primary or "the longest
 * copy" again, even after a restart of ours that forgot the bad marks. */
static void new_set(struct ns *ns, struct job *j, int ref)
{
    struct ns_block *b = ns_blocks_get(&ns->blocks, j->block_id);
    if (!b)
        return;
    const struct answer *r = &j->a[ref];
    uint8_t set = 0;
    for (unsigned i = 0; i < j->n; i++) {
        const struct answer *x = &j->a[i];
        int slot = ns_block_find_rep(b, x->server);
        if (slot >= 0 && x->status == 0 && x->size == r->size && x->crc == r->crc) {
            set |= (uint8_t)(1u << slot);
            b->rsize[slot] = x->size;
        }
    }
    if (!set)
        return;
    ns_delnote_compacted(ns, b, set, r->size); /* the journal's offsets changed */
    if (b->primary == NS_NO_PRIMARY || !(set & (1u << b->primary)))
        for (unsigned i = 0; i < b->nrep; i++)
            if (set & (1u << i)) {
                b->primary = (uint8_t)i;
                break;
            }
    b->inset = set;
    ns_plan_send_set(ns, b);
}

/* Every COMPACT_BLOCK answered: check that the replicas agree. */
static void compact_judge(struct job *j)
{
    struct ns *ns = j->ns;
    int ref = -1, ok = 0, failed = 0;
    for (unsigned i = 0; i < j->n; i++) {
        if (j->a[i].status != 0) {
            failed++;
            continue;
        }
        ok++;
        if (ref < 0)
            ref = (int)i;
    }
    int differ = 0;
    for (unsigned i = 0; ref >= 0 && i < j->n; i++) {
        const struct answer *x = &j->a[i], *r = &j->a[ref];
        if (x->status != 0 || x->size != r->size || x->crc != r->crc) {
            differ = 1;
            ns_bad_mark(ns, j->block_id, x->server,
                                x->status ? "its compaction failed while others succeeded"
                                          : "its compacted copy differs from the others");
        }
    }
    if (ok && !ns->stopping)
        new_set(ns, j, ref);
    if (!ns->stopping)
        send_release(j);
    if (ok && !differ) {
        struct ns_block *b = ns_blocks_get(&ns->blocks, j->block_id);
        log_info("task %" PRIu64 ": block %" PRIu64 " compacted on %u replicas: %" PRIu64
                 " -> %" PRIu64 " bytes, crc32c %08x",
                 j->task_id, j->block_id, ok, j->size, j->a[ref].size, j->a[ref].crc);
        if (b) {
            b->size = j->a[ref].size;
            b->deleted_bytes = 0;
        }
        job_end(j, 0, j->a[ref].size);
        return;
    }
    int rc = differ ? IMG_ECORRUPT : j->a[0].status;
    log_warn("task %" PRIu64 ": compaction of block %" PRIu64 ": %d succeeded, %d failed%s",
             j->task_id, j->block_id, ok, failed,
             differ ? "; the replicas that differ will be replaced" : "");
    job_end(j, rc ? rc : IMG_EINVAL, 0);
}

static void compact_reply(int status, const struct frame *f, void *arg)
{
    struct call *c = arg;
    struct job *j = c->j;
    struct answer *a = &j->a[c->i];
    free(c);
    Imgstore__CompactBlockResp *m =
        conn_reply_unpack(status, f, &imgstore__compact_block_resp__descriptor, &a->status);
    if (m) {
        a->size = m->size;
        a->crc = m->crc32c;
        imgstore__compact_block_resp__free_unpacked(m, NULL);
    }
    if (--j->pending == 0)
        compact_judge(j);
}

/* Sends request `type` (`msg`) to every holder; cb gets a struct call. */
static void send_all(struct job *j, unsigned type, const ProtobufCMessage *msg,
                     conn_reply_cb cb, uint32_t timeout_ms)
{
    j->pending = 1; /* held while sending */
    for (unsigned i = 0; i < j->n; i++) {
        struct ns_server *s = ns_registry_at(j->ns, j->a[i].server);
        struct call *c = malloc(sizeof(*c));
        int rc = !c ? -ENOMEM : !s || !s->up || !s->conn ? IMG_ECONN : 0;
        if (rc == 0) {
            *c = (struct call){.j = j, .i = i};
            j->pending++;
            rc = conn_request(s->conn, type, msg, NULL, 0, NULL, timeout_ms, cb, c);
            if (rc != 0)
                j->pending--;
        }
        if (rc != 0) {
            free(c);
            j->a[i].status = rc;
        }
    }
    j->pending--;
}

static void compact_go(struct job *j)
{
    Imgstore__CompactBlock m = IMGSTORE__COMPACT_BLOCK__INIT;
    m.block_id = j->block_id;
    m.expected_size = j->size;
    m.task_id = j->task_id;
    send_all(j, FT_COMPACT_BLOCK, &m.base, compact_reply, NS_COMPACT_TIMEOUT_MS);
    if (j->pending == 0)
        compact_judge(j);
}

static void stat_reply(int status, const struct frame *f, void *arg)
{
    struct call *c = arg;
    struct job *j = c->j;
    int rc;
    Imgstore__BlockInfo *bi = conn_reply_unpack(status, f, &imgstore__block_info__descriptor, &rc);
    if (!bi || bi->corrupt || !bi->sealed)
        j->stat_bad = 1;
    else
        j->a[c->i].size = bi->size;
    if (bi)
        imgstore__block_info__free_unpacked(bi, NULL);
    free(c);
    if (--j->pending > 0)
        return;
    /* The holders' own sizes rule, not our copy of them: deletes appended
     * tombstones since their last report, so the map may lag by a heartbeat.
     * They must agree with one another (no append in flight). */
    for (unsigned i = 0; i < j->n && !j->stat_bad; i++)
        if (j->a[i].size != j->a[0].size)
            j->stat_bad = 1;
    if (!j->stat_bad)
        j->size = j->a[0].size;
    if (j->stat_bad || j->ns->stopping) {
        log_info("task %" PRIu64 ": block %" PRIu64 " not compacted now: its replicas are not "
                 "all sealed, intact and %" PRIu64 " bytes",
                 j->task_id, j->block_id, j->size);
        job_end(j, IMG_EOFFSET, 0);
        return;
    }
    compact_go(j);
}

static uint64_t start(struct ns *ns, struct ns_block *b, uint64_t now)
{
    struct job *j = calloc(1, sizeof(*j));
    if (!j)
        return 0;
    uint16_t target = b->primary < b->nrep ? b->rep[b->primary] : b->rep[0];
    struct ns_task *t = ns_plan_task_add(ns, NS_TASK_COMPACT, b->id, NS_NO_SERVER, target,
                                         b->size, REASON_COMPACT, now);
    if (!t) {
        free(j);
        return 0;
    }
    uint64_t task_id = t->id;
    j->ns = ns;
    j->task_id = t->id;
    j->block_id = b->id;
    j->size = b->size;
    j->n = b->nrep;
    for (unsigned i = 0; i < b->nrep; i++)
        j->a[i].server = b->rep[i];
    log_info("task %" PRIu64 ": compact block %" PRIu64 " (%" PRIu64 " of %" PRIu64
             " bytes deleted, %u replicas)",
             t->id, b->id, b->deleted_bytes, b->size, b->nrep);
    if (!ns->loop) {
        free(j); /* unit tests inspect the task */
        return task_id;
    }
    j->counted = target;
    job_hold_servers(j, +1);
    Imgstore__StatBlock m = IMGSTORE__STAT_BLOCK__INIT;
    m.block_id = b->id;
    send_all(j, FT_STAT_BLOCK, &m.base, stat_reply, NS_CMD_TIMEOUT_MS);
    if (j->pending == 0)
        job_end(j, IMG_ECONN, 0);
    return task_id;
}

uint64_t ns_compact_start(struct ns *ns, struct ns_block *b, uint64_t now_ms)
{
    return start(ns, b, now_ms);
}

/* A block worth compacting now: sealed, enough deleted bytes, every holder
 * up, good and under the task cap. */
static int wants_compact(const struct ns *ns, const struct ns_block *b, uint32_t pct)
{
    if (!b->sealed || b->nrep == 0 || b->size <= NS_MIN_BLOCK_SIZE / 1024 ||
        ns_ec_usable(ns, b->id) || /* encoded: its copies are about to go */
        b->deleted_bytes * 100 < (uint64_t)pct * b->size)
        return 0;
    uint32_t cap = ns_settings_task_cap(ns);
    for (unsigned i = 0; i < b->nrep; i++) {
        const struct ns_server *s = ns_registry_at(ns, b->rep[i]);
        if (!s || !s->up || !s->conn || s->draining || s->tasks >= cap ||
            ns_bad_has(ns, b->id, s->idx) || ns_block_is_unready(b, i))
            return 0;
    }
    return b->nrep >= ns->meta.replicas;
}


void ns_compact_plan(struct ns *ns, uint64_t now_ms, const uint64_t *busy, size_t nbusy)
{
    uint32_t pct = ns_settings_compact_pct(ns);
    ns_bad_prune(ns);
    for (size_t i = 0; i < ns->blocks.cap; i++) {
        struct ns_block *b = &ns->blocks.slots[i];
        if (!b->id || (nbusy && bsearch(&b->id, busy, nbusy, sizeof(*busy), ns_cmp_u64)) ||
            !wants_compact(ns, b, pct))
            continue;
        start(ns, b, now_ms);
    }
}
