/* ns_ecdj.c - the delete journal for erasure-coded blocks (ns_ecdj.h).
 *
 * The journal's file and RAM are ns_deljournal.c's (entries of kind
 * NS_DJ_KIND_EC in their own table); NOTE_DELETE itself is answered by
 * ns_delnote.c, which calls the checks here. This module is the policy:
 *   bits     entry.shards bit i: the server in jb->ec_holder[i] has the
 *            tombstone durably (it took it from the deleting holder, or
 *            answered APPLY_TOMBSTONES). When shard i's holder changes
 *            (rebuilt elsewhere) bit i is cleared on every entry.
 *   the gate a reported shard whose holder may lack entries, or that its
 *            holder reports held (rebuilt, not released), is held out
 *            (st->djwait: not listed by LOOKUP) and sent APPLY_TOMBSTONES
 *            before the heartbeat is answered; the dataserver marks the files
 *            deleted as the frame arrives, so a returning holder never serves
 *            one once its view is confirmed.
 *   pruning  an entry every shard's holder has is dropped.
 *   stale    a shard rebuilt elsewhere misses the deletes made since: its
 *            former holder (holding no other shard of the stripe) is told
 *            to drop it at once, when the rebuild ends and when it reports
 *            it (before the report is answered).
 * Called by ns_delnote.c (NOTE_DELETE, tick), ns_rpc.c (heartbeats) and
 * ns_ec.c (a rebuilt shard). Calls the journal, the stripe table, the
 * registry, and sends on dataserver sessions. */
#include "nameserver/ns_ecdj.h"

#include "base/err.h"
#include "base/log.h"
#include "net/conn.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define ECDJ_RETRY_MS 1000

static uint16_t all_bits(const struct ns_stripe *st)
{
    return (uint16_t)((1u << (st->k + st->m)) - 1u);
}

/* Ties jb's bits to st's current holders: a shard whose holder changed
 * since loses its bit on every entry. */
static void sync_holders(struct ns_dj_block *jb, const struct ns_stripe *st)
{
    for (unsigned i = 0; i < (unsigned)(st->k + st->m) && i < NS_DJ_EC_SHARDS; i++) {
        if (jb->ec_holder[i] == st->holder[i])
            continue;
        jb->ec_holder[i] = st->holder[i];
        for (size_t j = 0; j < jb->n; j++)
            jb->v[j].shards &= (uint16_t)~(1u << i);
    }
}

/* Non-zero when some entry of jb lacks shard i's bit. */
static int lacking(const struct ns_dj_block *jb, unsigned i)
{
    for (size_t j = 0; jb && j < jb->n; j++)
        if (!(jb->v[j].shards & (1u << i)))
            return 1;
    return 0;
}

/* The shards of st that server idx holds (bits). */
static uint16_t shards_of(const struct ns_stripe *st, uint16_t idx)
{
    uint16_t b = 0;
    for (unsigned i = 0; i < (unsigned)(st->k + st->m); i++)
        if (st->holder[i] == idx)
            b |= (uint16_t)(1u << i);
    return b;
}

/* ---- NOTE_DELETE ------------------------------------------------------------------ */

int ns_ecdj_check_note(struct ns *ns, const struct ns_server *from,
                       const Imgstore__NoteDelete *m, uint16_t *mask,
                       uint16_t srv[NS_DJ_EC_SHARDS])
{
    *mask = 0;
    const struct ns_stripe *st = ns_ec_usable(ns, m->block_id);
    if (!st || !from || !shards_of(st, from->idx))
        return IMG_ENOBLOCKHERE;
    if (m->n_shard_index != m->n_shard_addr || m->n_shard_index > NS_EC_MAX_SHARDS ||
        m->tail_after || m->set_version)
        return IMG_EINVAL;
    for (size_t i = 0; i < m->n_shard_index; i++) {
        unsigned x = m->shard_index[i];
        if (x >= (unsigned)(st->k + st->m) || !m->shard_addr[i])
            return IMG_EINVAL;
        const struct ns_server *h = ns_registry_at(ns, st->holder[x]);
        if (h && strcmp(h->addr, m->shard_addr[i]) == 0) {
            *mask |= (uint16_t)(1u << x);
            srv[x] = h->idx;
        }
    }
    return 0;
}

/* Merges what a note says (the holders srv[] of mask have entry e) into e. */
static void merge_bits(struct ns_dj_block *jb, struct ns_dj_entry *e, uint16_t mask,
                       const uint16_t srv[NS_DJ_EC_SHARDS])
{
    for (unsigned i = 0; i < NS_DJ_EC_SHARDS; i++) {
        if (!(mask & (1u << i)))
            continue;
        if (jb->ec_holder[i] == UINT16_MAX)
            jb->ec_holder[i] = srv[i];
        if (jb->ec_holder[i] == srv[i])
            e->shards |= (uint16_t)(1u << i);
    }
}

int ns_ecdj_known(struct ns *ns, uint64_t block_id, uint32_t seq, uint16_t mask,
                  const uint16_t srv[NS_DJ_EC_SHARDS])
{
    struct ns_dj_block *jb = ns_dj_get_ec(&ns->dj, block_id);
    for (size_t j = 0; jb && j < jb->n; j++)
        if (jb->v[j].seq == seq) {
            merge_bits(jb, &jb->v[j], mask, srv);
            return 1;
        }
    return 0;
}

/* ---- APPLY_TOMBSTONES ------------------------------------------------------------ */

struct apply {
    struct ns *ns;
    uint64_t block_id;
    uint16_t server;
    size_t n;
    uint32_t *seqs; /* owned: the entries sent */
};

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static void apply_reply(int status, const struct frame *f, void *arg)
{
    struct apply *q = arg;
    struct ns *ns = q->ns;
    int rc;
    Imgstore__ApplyTombstonesResp *m =
        ns->stopping ? NULL
                     : conn_reply_unpack(status, f, &imgstore__apply_tombstones_resp__descriptor,
                                         &rc);
    struct ns_stripe *st = ns->stopping ? NULL : ns_ec_get(ns, q->block_id);
    struct ns_server *s = ns_registry_at(ns, q->server);
    if (st) {
        uint16_t mine = shards_of(st, q->server);
        st->djapplying &= (uint16_t)~mine;
        if (!m) {
            st->djretry_ms = ns->loop ? uv_now(ns->loop) + ECDJ_RETRY_MS : 0;
            log_warn("block %" PRIu64 ": %s did not apply the journaled tombstones of its "
                     "shards: %s (retried)",
                     q->block_id, s ? s->id : "?", img_strerror(rc));
        } else {
            struct ns_dj_block *jb = ns_dj_get_ec(&ns->dj, q->block_id);
            if (jb) {
                sync_holders(jb, st);
                qsort(q->seqs, q->n, sizeof(*q->seqs), cmp_u32);
                for (size_t j = 0; j < jb->n; j++)
                    if (q->n && bsearch(&jb->v[j].seq, q->seqs, q->n, sizeof(*q->seqs), cmp_u32))
                        jb->v[j].shards |= mine;
            }
            uint16_t released = 0;
            for (unsigned i = 0; i < (unsigned)(st->k + st->m); i++)
                if ((mine & st->djwait & (1u << i)) && !lacking(jb, i))
                    released |= (uint16_t)(1u << i);
            st->djwait &= (uint16_t)~released;
            log_info("block %" PRIu64 ": %s applied %zu journaled tombstones to its shards "
                     "(%u new)%s",
                     q->block_id, s ? s->id : "?", q->n, m->applied,
                     released ? ": they serve again" : "");
            if (released)
                ns->plan.kick = 1;
        }
    }
    if (m)
        imgstore__apply_tombstones_resp__free_unpacked(m, NULL);
    free(q->seqs);
    free(q);
}

/* Sends server s (holding shards of st) every journaled entry of st's
 * block (none: it only releases a held shard). */
static void send_apply(struct ns *ns, struct ns_stripe *st, struct ns_server *s)
{
    if (!s || !s->up || !s->conn || !ns->loop)
        return;
    struct ns_dj_block *jb = ns_dj_get_ec(&ns->dj, st->block_id);
    size_t n = jb ? jb->n : 0;
    struct apply *q = calloc(1, sizeof(*q));
    uint32_t *seqs = malloc((n + 1) * sizeof(*seqs));
    uint32_t *cookies = malloc((n + 1) * sizeof(*cookies));
    if (!q || !seqs || !cookies) {
        free(q);
        free(seqs);
        free(cookies);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        seqs[i] = jb->v[i].seq;
        cookies[i] = jb->v[i].cookie;
    }
    Imgstore__ApplyTombstones m = IMGSTORE__APPLY_TOMBSTONES__INIT;
    m.block_id = st->block_id;
    m.n_seqs = m.n_cookies = n;
    m.seqs = seqs;
    m.cookies = cookies;
    m.shards = 1;
    *q = (struct apply){.ns = ns, .block_id = st->block_id, .server = s->idx, .n = n,
                        .seqs = seqs};
    if (conn_request(s->conn, FT_APPLY_TOMBSTONES, &m.base, NULL, 0, NULL, NS_CMD_TIMEOUT_MS,
                     apply_reply, q) == 0) {
        st->djapplying |= shards_of(st, s->idx);
        if (n)
            log_info("block %" PRIu64 ": sending %zu journaled tombstones to %s (shards)",
                     st->block_id, n, s->id);
    } else {
        free(seqs);
        free(q);
    }
    free(cookies);
}

/* Holds shard i of st out and sends its holder the entries. */
static void hold_and_send(struct ns *ns, struct ns_stripe *st, unsigned i, const char *why)
{
    struct ns_server *s = ns_registry_at(ns, st->holder[i]);
    if (!s)
        return;
    if (!(st->djwait & (1u << i)))
        log_info("block %" PRIu64 ": shard %u on %s %s: not listed until it has the "
                 "journaled tombstones",
                 st->block_id, i, s->id, why);
    st->djwait |= (uint16_t)(1u << i);
    send_apply(ns, st, s);
}

void ns_ecdj_noted(struct ns *ns, uint64_t block_id, uint32_t seq, uint16_t mask,
                   const uint16_t srv[NS_DJ_EC_SHARDS])
{
    struct ns_dj_block *jb = ns_dj_get_ec(&ns->dj, block_id);
    struct ns_stripe *st = ns_ec_usable(ns, block_id);
    if (!jb)
        return;
    struct ns_dj_entry *e = NULL;
    for (size_t j = jb->n; j-- > 0 && !e;)
        if (jb->v[j].seq == seq)
            e = &jb->v[j];
    if (!e)
        return;
    e->shards = 0;
    merge_bits(jb, e, mask, srv);
    if (!st)
        return;
    sync_holders(jb, st);
    /* An up holder the deleting server did not reach (it came back, or was
     * held out): the tombstone goes to it now, before the delete is
     * acknowledged. */
    uint16_t sent = 0;
    for (unsigned i = 0; i < (unsigned)(st->k + st->m); i++) {
        struct ns_server *s = ns_registry_at(ns, st->holder[i]);
        if (!(e->shards & (1u << i)) && s && s->up && !(sent & (1u << i))) {
            sent |= shards_of(st, s->idx);
            send_apply(ns, st, s);
        }
    }
}

/* ---- heartbeats, rebuilds ------------------------------------------------------- */

static void ignore_reply(int status, const struct frame *f, void *arg)
{
    (void)status;
    (void)f;
    (void)arg;
}

/* Server s holds a copy of shard `index` of st that another server holds
 * now: when s holds no shard of st, it drops its copies at once (ns_ec.c's
 * stale list asks again later if this is lost), handing the deletions in
 * its table to the shard's holder first (tombs_to, as a moved shard's old
 * copy does: a delete that reached it alone is not lost). */
static void drop_now(struct ns *ns, const struct ns_stripe *st, struct ns_server *s,
                     unsigned index)
{
    if (!s || !s->up || !s->conn || !ns->loop || shards_of(st, s->idx))
        return;
    const struct ns_server *h = ns_registry_at(ns, st->holder[index]);
    log_info("block %" PRIu64 ": %s holds a shard rebuilt elsewhere, which misses the deletes "
             "made since: told to drop it now",
             st->block_id, s->id);
    Imgstore__DeleteBlock m = IMGSTORE__DELETE_BLOCK__INIT;
    m.block_id = st->block_id;
    m.shards = 1;
    if (h && h->up)
        m.tombs_to = (char *)h->addr;
    conn_request(s->conn, FT_DELETE_BLOCK, &m.base, NULL, 0, NULL, NS_CMD_TIMEOUT_MS,
                 ignore_reply, NULL);
}

void ns_ecdj_report(struct ns *ns, struct ns_server *s, const Imgstore__Heartbeat *hb)
{
    uint64_t last = 0;
    for (size_t k = 0; k < hb->n_shards; k++) {
        const Imgstore__ShardInfo *x = hb->shards[k];
        if (!x)
            continue;
        struct ns_stripe *st = ns_ec_usable(ns, x->block_id);
        if (!st || x->index >= (unsigned)(st->k + st->m))
            continue;
        if (st->holder[x->index] != s->idx) {
            /* Stale: dropped before its view is confirmed. Not a held one:
             * a rebuild here whose answer is still on its way. */
            const struct ns_server *o = ns_registry_at(ns, st->holder[x->index]);
            if (o && o->up && !x->held && last != x->block_id)
                drop_now(ns, st, s, x->index);
            last = x->block_id;
            continue;
        }
        struct ns_dj_block *jb = ns_dj_get_ec(&ns->dj, x->block_id);
        if (jb)
            sync_holders(jb, st);
        if (!x->held && !lacking(jb, x->index))
            continue;
        if (!(st->djwait & (1u << x->index)))
            log_info("block %" PRIu64 ": shard %u on %s %s: not listed until it has the "
                     "journaled tombstones",
                     st->block_id, x->index, s->id,
                     x->held ? "is held (rebuilt)" : "may lack journaled tombstones");
        st->djwait |= (uint16_t)(1u << x->index);
        if (last != x->block_id) /* one APPLY per block: it covers every shard here */
            send_apply(ns, st, s);
        last = x->block_id;
    }
}

void ns_ecdj_rebuilt(struct ns *ns, struct ns_stripe *st, unsigned index, uint16_t old)
{
    struct ns_dj_block *jb = ns_dj_get_ec(&ns->dj, st->block_id);
    if (jb)
        sync_holders(jb, st);
    hold_and_send(ns, st, index, "was rebuilt");
    if (old != st->holder[index])
        drop_now(ns, st, ns_registry_at(ns, old), index);
}

/* ---- the tick ---------------------------------------------------------------------- */

void ns_ecdj_tick(struct ns *ns, uint64_t now_ms)
{
    for (size_t k = 0; k < ns->dj.nec;) {
        struct ns_dj_block *jb = &ns->dj.ec_blocks[k];
        uint64_t id = jb->block_id;
        struct ns_stripe *st = ns_ec_usable(ns, id);
        if (!st) { /* not reported (yet): kept for the holders that may come back */
            k++;
            continue;
        }
        sync_holders(jb, st);
        size_t dropped = ns_dj_ec_drop_held(&ns->dj, id, all_bits(st));
        if (dropped)
            log_info("block %" PRIu64 ": %zu journaled tombstones are on every shard's holder "
                     "now: dropped from the journal",
                     id, dropped);
        if (!ns_dj_get_ec(&ns->dj, id))
            continue; /* the array moved: index k holds another block now */
        k++;
    }
    if (!ns->ec || !ns->loop)
        return;
    for (size_t k = 0; k < ns->ec->n; k++) {
        struct ns_stripe *st = &ns->ec->v[k];
        struct ns_dj_block *jb = ns_dj_get_ec(&ns->dj, st->block_id);
        if ((!jb && !st->djwait) || now_ms < st->djretry_ms || !ns_ec_usable(ns, st->block_id))
            continue;
        uint16_t done = st->djapplying;
        for (unsigned i = 0; i < (unsigned)(st->k + st->m); i++) {
            struct ns_server *s = ns_registry_at(ns, st->holder[i]);
            if ((done & (1u << i)) || !s || !s->up || !s->conn)
                continue;
            if ((st->djwait & (1u << i)) || lacking(jb, i)) {
                done |= shards_of(st, s->idx);
                send_apply(ns, st, s);
            }
        }
    }
}
