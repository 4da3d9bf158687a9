/* ns_delnote.c - the policy around the delete journal (docs/nameserver.md,
 * "Delete journal"):
 *   NOTE_DELETE      a primary whose set is down to itself journals a
 *                    tombstone here before it acknowledges the delete;
 *   the gate         a copy reported while it may lack journaled tombstones
 *                    and no copy holding them all is up is held out
 *                    (b->djwait: not listed, no source, no primary, left out
 *                    of every replica list) ...
 *   APPLY_TOMBSTONES ... until it appended them (sent from the tick);
 *   pruning          entries held by min(2, replicas) current members (by
 *                    their reported sizes) are dropped; the file is
 *                    rewritten when most of it is dropped.
 * With --etcd a NOTE_DELETE is answered once the entry is durable in the
 * journal file and in etcd (ns_etcd_dj_put), both written at once. A note
 * for a file of an erasure-coded block (`shards`) is checked, and its entry
 * looked after, by ns_ecdj.c.
 * Sits with the policy modules: called by ns_rpc.c (NOTE_DELETE, tick) and
 * ns_hb.c (the gate, before the reporter's view is checked). Calls the
 * journal (ns_deljournal.c), ns_etcd.c, the map, the registry and
 * ns_plan_set.c, and sends on dataserver sessions. */
#include "nameserver/ns_delnote.h"
#include "nameserver/ns_ecdj.h"
#include "nameserver/ns_etcd.h"

#include "base/err.h"
#include "base/log.h"
#include "net/conn.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* ---- NOTE_DELETE ----------------------------------------------------------------- */

struct note_req {
    struct ns *ns;
    struct conn *c;
    struct frame_header h;
    uint16_t server;
    uint64_t block_id;
    uint32_t seq;
    int waiting;      /* homes not answered yet: the file, and etcd with --etcd */
    int status;       /* the first failure of either */
    uint64_t t0;      /* uv_hrtime at the request */
    int ec;           /* a file of an erasure-coded block (ns_ecdj.c) */
    uint16_t mask;    /* ... whose shards' holders srv[] have the tombstone */
    uint16_t srv[NS_DJ_EC_SHARDS];
};

/* Called once per home (the journal file; etcd with --etcd): the note is
 * answered when every home answered, 0 only when all made it durable. */
static void note_durable(int status, void *arg)
{
    struct note_req *q = arg;
    struct ns *ns = q->ns;
    if (status && !q->status)
        q->status = status;
    if (--q->waiting > 0)
        return;
    status = q->status;
    if (status == 0)
        log_info("block %" PRIu64 ": tombstone seq %u journaled in %" PRIu64 " us (%s%s)",
                 q->block_id, q->seq, (uv_hrtime() - q->t0) / 1000,
                 ns->ha ? "file and etcd" : "file", q->ec ? ", erasure-coded" : "");
    if (status == 0 && q->ec && !ns->stopping)
        ns_ecdj_noted(ns, q->block_id, q->seq, q->mask, q->srv);
    struct ns_server *s = ns_registry_at(ns, q->server);
    /* Answer only on the session the note came on, if it is still open. */
    if (!ns->stopping && s && s->conn == q->c && !conn_is_closing(q->c)) {
        if (status == 0) {
            Imgstore__NoteDeleteResp resp = IMGSTORE__NOTE_DELETE_RESP__INIT;
            conn_reply(q->c, &q->h, 0, &resp.base, NULL, 0, NULL);
        } else {
            conn_reply(q->c, &q->h, IMG_EUNAVAIL, NULL, NULL, 0, NULL);
        }
    }
    free(q);
}

void ns_delnote_handle(struct ns *ns, struct conn *c, const struct frame_header *h,
                       struct ns_server *from, const Imgstore__NoteDelete *m)
{
    int rc = 0;
    struct ns_block *b = ns_blocks_get(&ns->blocks, m->block_id);
    int slot = b && from ? ns_block_find_rep(b, from->idx) : -1;
    uint16_t mask = 0, srv[NS_DJ_EC_SHARDS] = {0};
    if (!from || from->conn != c)
        rc = IMG_EINVAL; /* only a dataserver's session notes deletes */
    else if (m->shards) {
        /* A file of an erasure-coded block (ns_ecdj.c); one journaled
         * already is answered at once (a retried delete). */
        rc = ns_ecdj_check_note(ns, from, m, &mask, srv);
        if (rc == 0 && ns_ecdj_known(ns, m->block_id, m->seq, mask, srv)) {
            Imgstore__NoteDeleteResp resp = IMGSTORE__NOTE_DELETE_RESP__INIT;
            conn_reply(c, h, 0, &resp.base, NULL, 0, NULL);
            return;
        }
    } else if (!b)
        rc = IMG_ENOBLOCKHERE;
    else if (slot < 0 || b->primary != slot || (b->djwait & (1u << slot)))
        rc = IMG_ENOTPRIMARY;
    struct note_req *q = rc ? NULL : malloc(sizeof(*q));
    if (!rc && !q)
        rc = -ENOMEM;
    if (!rc) {
        *q = (struct note_req){.ns = ns, .c = c, .h = *h, .server = from->idx,
                               .block_id = m->block_id, .seq = m->seq,
                               .waiting = ns->ha ? 2 : 1, .t0 = uv_hrtime(),
                               .ec = m->shards != 0, .mask = mask};
        memcpy(q->srv, srv, sizeof(srv));
        struct ns_dj_entry e = {.seq = m->seq, .cookie = m->cookie, .tail_after = m->tail_after,
                                .set_version = m->set_version,
                                .kind = m->shards ? NS_DJ_KIND_EC : NS_DJ_KIND_REPL};
        rc = ns_dj_append(&ns->dj, ns->loop, m->block_id, &e, from->id, note_durable, q);
        if (rc) {
            free(q);
        } else if (ns->ha) {
            /* With --etcd the entry must survive this host too: a new
             * leader reads it from etcd (written at the same time). */
            int erc = ns_etcd_dj_put(ns, m->block_id, &e, from->id, note_durable, q);
            if (erc)
                note_durable(erc, q);
        }
    }
    if (rc)
        conn_reply(c, h, rc, NULL, NULL, 0, NULL);
}

/* ---- which copies hold the journaled tombstones -------------------------------- */

static uint64_t max_tail(const struct ns_dj_block *jb)
{
    uint64_t t = 0;
    for (size_t i = 0; i < jb->n; i++)
        if (jb->v[i].tail_after > t)
            t = jb->v[i].tail_after;
    return t;
}

/* Slot i of b is a member of the current set that is ready to serve. */
static int current_member(const struct ns *ns, const struct ns_block *b, unsigned i)
{
    struct ns_server *h = ns_registry_at(ns, b->rep[i]);
    return h && h->up && (b->primary == i || (b->inset & (1u << i))) &&
           !ns_block_is_unready(b, i);
}

/* Holder slot i of b holds every entry of jb: it sent or applied them all,
 * or it is a current member whose copy reaches past every entry (members'
 * copies agree up to their sizes). */
static int holds_all(const struct ns *ns, const struct ns_block *b, unsigned i,
                     const struct ns_dj_block *jb)
{
    struct ns_server *h = ns_registry_at(ns, b->rep[i]);
    if (!h)
        return 0;
    if (ns_dj_holds_all(jb, h->id))
        return 1;
    return current_member(ns, b, i) && b->rsize[i] >= max_tail(jb);
}

void ns_delnote_gate(struct ns *ns, struct ns_block *b, struct ns_server *s)
{
    struct ns_dj_block *jb = ns_dj_get(&ns->dj, b->id);
    int slot = ns_block_find_rep(b, s->idx);
    if (!jb || slot < 0 || (b->djwait & (1u << slot)) || holds_all(ns, b, (unsigned)slot, jb))
        return;
    /* A copy holding them all is up: the replica set's own rules (versions,
     * catch-up from it, joining by the primary's tail) keep this one out
     * until it is a prefix of it. */
    for (unsigned i = 0; i < b->nrep; i++) {
        struct ns_server *h = ns_registry_at(ns, b->rep[i]);
        if ((int)i != slot && h && h->up && !(b->djwait & (1u << i)) && holds_all(ns, b, i, jb))
            return;
    }
    b->djwait |= (uint8_t)(1u << slot);
    if (b->primary == slot)
        b->primary = NS_NO_PRIMARY;
    log_info("block %" PRIu64 ": %s may lack %zu journaled tombstones and no copy holding them "
             "is up: it serves nothing until it has appended them",
             b->id, s->id, jb->n);
}

/* ---- APPLY_TOMBSTONES ---------------------------------------------------------- */

#define APPLY_RETRY_MS 1000

struct apply_req {
    struct ns *ns;
    uint64_t block_id;
    uint64_t gen;
    uint16_t server;
};

static void applying_remove(struct ns_dj_block *jb, uint16_t server)
{
    for (unsigned i = 0; i < jb->napplying; i++)
        if (jb->applying[i] == server) {
            jb->applying[i] = jb->applying[--jb->napplying];
            return;
        }
}

static int applying_has(const struct ns_dj_block *jb, uint16_t server)
{
    for (unsigned i = 0; i < jb->napplying; i++)
        if (jb->applying[i] == server)
            return 1;
    return 0;
}

/* Lets slot i of b serve again: the gate is lifted and it is told the set. */
static void release(struct ns *ns, struct ns_block *b, unsigned i)
{
    b->djwait &= (uint8_t)~(1u << i);
    ns_plan_set_to(ns, b, ns_registry_at(ns, b->rep[i]));
    ns->plan.kick = 1; /* failover may choose it now */
}

static void apply_reply(int status, const struct frame *f, void *arg)
{
    struct apply_req *q = arg;
    struct ns *ns = q->ns;
    if (ns->stopping) {
        free(q);
        return;
    }
    int rc;
    Imgstore__ApplyTombstonesResp *m =
        conn_reply_unpack(status, f, &imgstore__apply_tombstones_resp__descriptor, &rc);
    struct ns_dj_block *jb = ns_dj_get(&ns->dj, q->block_id);
    struct ns_block *b = ns_blocks_get(&ns->blocks, q->block_id);
    struct ns_server *s = ns_registry_at(ns, q->server);
    if (jb) {
        applying_remove(jb, q->server);
        if (!m)
            jb->retry_ms = ns->loop ? uv_now(ns->loop) + APPLY_RETRY_MS : 0;
    }
    if (!m) {
        log_warn("block %" PRIu64 ": %s did not append the journaled tombstones: %s (retried)",
                 q->block_id, s ? s->id : "?", img_strerror(rc));
    } else if (jb && s && jb->gen == q->gen) {
        ns_dj_add_holder(jb, s->id);
        int slot = b ? ns_block_find_rep(b, s->idx) : -1;
        log_info("block %" PRIu64 ": %s appended %u of %zu journaled tombstones (size %" PRIu64
                 ")",
                 q->block_id, s->id, m->applied, jb->n, m->size);
        if (slot >= 0) {
            b->rsize[slot] = m->size > b->rsize[slot] ? m->size : b->rsize[slot];
            if (b->djwait & (1u << slot))
                release(ns, b, (unsigned)slot);
        }
    }
    if (m)
        imgstore__apply_tombstones_resp__free_unpacked(m, NULL);
    free(q);
}

static void send_apply(struct ns *ns, struct ns_dj_block *jb, struct ns_server *h)
{
    if (jb->napplying >= NS_DJ_HAS_MAX || applying_has(jb, h->idx))
        return;
    uint32_t *seqs = malloc(jb->n * sizeof(*seqs));
    uint32_t *cookies = malloc(jb->n * sizeof(*cookies));
    struct apply_req *q = malloc(sizeof(*q));
    if (!seqs || !cookies || !q)
        goto out;
    for (size_t i = 0; i < jb->n; i++) {
        seqs[i] = jb->v[i].seq;
        cookies[i] = jb->v[i].cookie;
    }
    Imgstore__ApplyTombstones m = IMGSTORE__APPLY_TOMBSTONES__INIT;
    m.block_id = jb->block_id;
    m.n_seqs = m.n_cookies = jb->n;
    m.seqs = seqs;
    m.cookies = cookies;
    *q = (struct apply_req){.ns = ns, .block_id = jb->block_id, .gen = jb->gen, .server = h->idx};
    if (conn_request(h->conn, FT_APPLY_TOMBSTONES, &m.base, NULL, 0, NULL, NS_CMD_TIMEOUT_MS,
                     apply_reply, q) == 0) {
        jb->applying[jb->napplying++] = h->idx;
        q = NULL;
        log_info("block %" PRIu64 ": sending %zu journaled tombstones to %s", jb->block_id, jb->n,
                 h->id);
    }
out:
    free(seqs);
    free(cookies);
    free(q);
}

/* ---- compaction ------------------------------------------------------------------ */

void ns_delnote_compacted(struct ns *ns, struct ns_block *b, uint8_t set, uint64_t size)
{
    struct ns_dj_block *jb = ns_dj_get(&ns->dj, b->id);
    if (!jb)
        return;
    unsigned need = ns->meta.replicas < 2 ? ns->meta.replicas : 2, n = 0;
    for (unsigned i = 0; i < b->nrep; i++)
        n += (set >> i) & 1u;
    if (n >= need && !(set & b->djwait)) {
        log_info("block %" PRIu64 ": compacted on %u copies: its %zu journaled tombstones "
                 "dropped from the journal",
                 b->id, n, jb->n);
        ns_dj_drop_block(&ns->dj, b->id);
        return;
    }
    ns_dj_rebase(&ns->dj, b->id, size);
}

/* ---- the tick ---------------------------------------------------------------- */

/* The size that min(2, replicas) current members all reach (0: fewer such
 * members): every entry at or below it lives on that many copies. */
static uint64_t covered_size(const struct ns *ns, const struct ns_block *b)
{
    unsigned need = ns->meta.replicas < 2 ? ns->meta.replicas : 2;
    uint64_t top[2] = {0, 0};
    unsigned n = 0;
    for (unsigned i = 0; i < b->nrep; i++) {
        if (!current_member(ns, b, i) || ns_bad_has(ns, b->id, b->rep[i]))
            continue;
        uint64_t sz = b->rsize[i];
        n++;
        if (sz > top[0]) {
            top[1] = top[0];
            top[0] = sz;
        } else if (sz > top[1]) {
            top[1] = sz;
        }
    }
    if (need == 0 || n < need)
        return 0;
    return need == 1 ? top[0] : top[1];
}

void ns_delnote_tick(struct ns *ns, uint64_t now_ms)
{
    for (size_t k = 0; k < ns->dj.nblocks;) {
        struct ns_dj_block *jb = &ns->dj.blocks[k];
        uint64_t id = jb->block_id;
        struct ns_block *b = ns_blocks_get(&ns->blocks, id);
        if (!b) { /* not reported (yet): kept for the copy that may come back */
            k++;
            continue;
        }
        uint64_t covered = covered_size(ns, b);
        size_t dropped = covered ? ns_dj_drop_covered(&ns->dj, id, covered) : 0;
        if (dropped)
            log_info("block %" PRIu64 ": %zu journaled tombstones live on %u current copies "
                     "now: dropped from the journal",
                     id, dropped, ns->meta.replicas < 2 ? ns->meta.replicas : 2);
        jb = ns_dj_get(&ns->dj, id);
        if (!jb) { /* every entry dropped: nothing to wait for */
            for (unsigned i = 0; i < b->nrep; i++)
                if (b->djwait & (1u << i))
                    release(ns, b, i);
            continue; /* the array moved: index k holds another block now */
        }
        int holder_up = 0;
        for (unsigned i = 0; i < b->nrep; i++) {
            struct ns_server *h = ns_registry_at(ns, b->rep[i]);
            holder_up |= h && h->up && !(b->djwait & (1u << i)) && holds_all(ns, b, i, jb);
        }
        for (unsigned i = 0; i < b->nrep; i++) {
            struct ns_server *h = ns_registry_at(ns, b->rep[i]);
            if (!(b->djwait & (1u << i)) || !h || !h->up)
                continue;
            if (holder_up && ns_block_is_old(b, i)) {
                /* A copy holding them all came up (reported after this one)
                 * and this one is of an older set: the set's rules keep it
                 * out and catch it up from a current copy, which an append
                 * of its own would spoil (not a prefix any more). */
                log_info("block %" PRIu64 ": %s is of an older set and a copy holding the "
                         "journaled tombstones is up: left to the replica set's rules",
                         b->id, h->id);
                release(ns, b, i);
            } else if (h->conn && ns->loop && now_ms >= jb->retry_ms) {
                send_apply(ns, jb, h);
            }
        }
        k++;
    }
    ns_ecdj_tick(ns, now_ms); /* the erasure-coded blocks' entries */
    ns_dj_compact(&ns->dj);
}
