/* ns_ec.c - erasure-coded blocks on the nameserver (ns_ec.h): the stripe
 * table and the EC_ENCODE task.
 *
 * The table is memory only, like the block map: every shard holder reports
 * its shards (Heartbeat.shards: block, k, m, index, lengths, the data
 * shards' seq ranges, generation, garbage bytes), so a restarted
 * nameserver, or a standby, rebuilds it from the reports. A stripe is
 * created by the first report of one of its shards (and takes its
 * generation: a shard of another one is ignored); a full report drops its
 * sender from the shards it no longer lists. Encoded blocks are not
 * compacted yet: their garbage is shown (ds-admin block, compact_due).
 *
 * An encoding is one planner task (NS_TASK_EC_ENCODE: no copy, deletion or
 * compaction of the block runs meanwhile): STAT_BLOCK to the block's primary
 * (sealed, intact: its size is what it will encode), then EC_ENCODE there
 * with the k+m target servers (up, not draining, not read-only, most free
 * bytes first; the primary is one of them when it qualifies). The primary
 * answers once every shard is durable and checked by its holder; then the
 * stripe is recorded and the replicated copies are deleted (DELETE_BLOCK
 * with the encoded length: a copy of another length is kept). Reads then go
 * to the shard holders (LOOKUP lists them).
 *
 * Repair and drains (EC_REBUILD): a lost shard is rebuilt from k others,
 * most endangered stripes first; a shard on a draining server is moved
 * (NS_TASK_EC_MOVE, once the stripe has no lost shard) to the server with
 * the most free bytes that holds no shard of the stripe: the draining
 * holder is named as a source of the shard itself, so the target copies it
 * as it is and decodes from k others only what it cannot get. Once the
 * target answers, the stripe names it, and the draining holder, noted
 * stale, is told to drop its copy (stale_plan).
 * Calls the registry, the block map, the planner's task list and settings. */
#include "nameserver/ns_ec.h"
#include "nameserver/ns_ecdj.h"

#include "base/array.h"
#include "base/err.h"
#include "base/log.h"
#include "net/conn.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static const char REASON_EC[] = "erasure coding";

static int scheme_ok(unsigned k, unsigned m)
{
    return (k == 4 && m == 2) || (k == 6 && m == 3) || (k == 10 && m == 4);
}

struct ns_stripe *ns_ec_get(const struct ns *ns, uint64_t id)
{
    struct ns_ec *e = ns->ec;
    for (size_t i = 0; e && i < e->n; i++)
        if (e->v[i].block_id == id)
            return &e->v[i];
    return NULL;
}

static int complete(const struct ns_stripe *st);
static int busy(const struct ns *ns, uint64_t id);

/* ns_ec_supersedes for a stripe in hand (no lookup of it). */
static int supersedes(const struct ns *ns, const struct ns_stripe *st)
{
    if (!complete(st) || busy(ns, st->block_id))
        return 0;
    const struct ns_block *b = ns_blocks_get(&ns->blocks, st->block_id);
    for (unsigned i = 0; b && i < b->nrep; i++) {
        const struct ns_server *s = ns_registry_at(ns, b->rep[i]);
        if (s && s->up && b->rsize[i] > st->block_len)
            return 0; /* it took tombstones the stripe lacks: the copies lead */
    }
    return 1;
}

struct ns_stripe *ns_ec_supersedes(const struct ns *ns, uint64_t id)
{
    struct ns_stripe *st = ns_ec_get(ns, id);
    return st && supersedes(ns, st) ? st : NULL;
}

struct ns_stripe *ns_ec_usable(const struct ns *ns, uint64_t id)
{
    struct ns_stripe *st = ns_ec_get(ns, id);
    return st && (st->confirmed || !ns_blocks_get(&ns->blocks, id) || supersedes(ns, st))
               ? st
               : NULL;
}

/* Forgets the stripe of block id (a failed or restarted encoding). */
static void stripe_forget(struct ns *ns, uint64_t id)
{
    struct ns_stripe *st = ns_ec_get(ns, id);
    if (st)
        *st = ns->ec->v[--ns->ec->n];
}

static struct ns_stripe *stripe_add(struct ns *ns, uint64_t id, unsigned k, unsigned m,
                                    uint64_t shard_len, uint64_t block_len)
{
    if (!ns->ec && !(ns->ec = calloc(1, sizeof(struct ns_ec))))
        return NULL;
    struct ns_ec *e = ns->ec;
    if (ARRAY_RESERVE(e->v, e->cap, e->n + 1, 16) != 0)
        return NULL;
    struct ns_stripe *s = &e->v[e->n++];
    memset(s, 0, sizeof(*s));
    s->block_id = id;
    s->k = (uint8_t)k;
    s->m = (uint8_t)m;
    s->shard_len = shard_len;
    s->block_len = block_len;
    for (unsigned i = 0; i < NS_EC_MAX_SHARDS; i++)
        s->holder[i] = NS_NO_SERVER;
    return s;
}

void ns_ec_free(struct ns *ns)
{
    if (!ns->ec)
        return;
    free(ns->ec->seen);
    free(ns->ec->v);
    free(ns->ec);
    ns->ec = NULL;
}

void ns_ec_bytes(const struct ns *ns, uint64_t *raw, uint64_t *logical, uint32_t *stripes)
{
    *raw = *logical = 0;
    *stripes = 0;
    const struct ns_ec *e = ns->ec;
    for (size_t i = 0; e && i < e->n; i++) {
        const struct ns_stripe *s = &e->v[i];
        for (unsigned j = 0; j < (unsigned)(s->k + s->m); j++)
            if (s->holder[j] != NS_NO_SERVER)
                *raw += s->file_bytes[j];
        *logical += s->block_len;
        (*stripes)++;
    }
}

void ns_ec_fill_admin(const struct ns *ns, uint64_t id, Imgstore__AdminBlock *m,
                      Imgstore__AdminShard *sh, Imgstore__AdminShard **sp)
{
    const struct ns_stripe *st = ns_ec_get(ns, id);
    if (!st)
        return;
    static char none[] = "";
    m->ec_k = st->k;
    m->ec_m = st->m;
    m->ec_shard_len = st->shard_len;
    m->ec_gen = st->gen;
    m->ec_garbage_bytes = ns_ec_garbage(ns, st);
    m->ec_compact_due = ns_ec_compact_due(ns_ec_garbage(ns, st), st->block_len,
                                          ns_settings_compact_pct(ns));
    unsigned n = st->k + st->m;
    for (unsigned i = 0; i < n; i++) {
        Imgstore__AdminShard *x = &sh[i];
        imgstore__admin_shard__init(x);
        const struct ns_server *s = ns_registry_at(ns, st->holder[i]);
        x->index = i;
        x->server_id = s ? (char *)s->id : none;
        x->addr = s ? (char *)s->addr : none;
        x->up = s && s->up;
        x->bad = (st->bad >> i) & 1;
        x->file_bytes = s ? st->file_bytes[i] : 0;
        if (i < st->k) {
            x->seq_first = st->seq_first[i];
            x->seq_last = st->seq_last[i];
        }
        sp[i] = x;
    }
    m->n_shards = n;
    m->shards = sp;
}

uint64_t ns_ec_garbage(const struct ns *ns, const struct ns_stripe *st)
{
    uint64_t g = 0;
    for (unsigned i = 0; i < (unsigned)(st->k + st->m); i++) {
        const struct ns_server *s = ns_registry_at(ns, st->holder[i]);
        if (s && s->up && st->garbage[i] > g && st->garbage[i] <= st->block_len)
            g = st->garbage[i];
    }
    return g;
}

int ns_ec_compact_due(uint64_t garbage, uint64_t block_len, uint32_t pct)
{
    if (pct == 0 || pct > 100 || block_len == 0 || garbage == 0 || garbage > block_len)
        return 0;
    return garbage >= block_len / 100 * pct + block_len % 100 * pct / 100;
}

size_t ns_ec_fill_loc(const struct ns *ns, uint64_t id, struct ns_ec_loc *l)
{
    l->n = l->k = 0;
    const struct ns_stripe *st = ns_ec_usable(ns, id);
    if (!st)
        return 0;
    l->k = st->k;
    for (unsigned i = 0; i < (unsigned)(st->k + st->m); i++) {
        const struct ns_server *s = ns_registry_at(ns, st->holder[i]);
        if (!s || !s->up || (st->bad & (1u << i)) || (st->djwait & (1u << i)))
            continue; /* djwait: may lack journaled tombstones (ns_ecdj.c) */
        Imgstore__ShardLocation *x = &l->loc[l->n];
        imgstore__shard_location__init(x);
        imgstore__replica__init(&l->rep[l->n]);
        ns_plan_fill_replica(&l->rep[l->n], s);
        x->index = i;
        x->server = &l->rep[l->n];
        x->seq_first = i < st->k ? st->seq_first[i] : 0;
        x->seq_last = i < st->k ? st->seq_last[i] : 0;
        l->lp[l->n] = x;
        l->n++;
    }
    return l->n;
}

void ns_ec_put_loc(struct ns_ec_loc *l, Imgstore__BlockLocation *bl)
{
    bl->ec_k = l->k;
    bl->n_shards = l->n;
    bl->shards = l->lp;
}

/* s reported shard `index` of st that another up server holds: when s
 * holds no shard of st, it is noted; the planner tells it to drop its copies
 * (DELETE_BLOCK with shards: stale_plan). */
static void drop_stale(struct ns *ns, struct ns_stripe *st, struct ns_server *s, unsigned index)
{
    (void)ns;
    for (unsigned i = 0; i < (unsigned)(st->k + st->m); i++)
        if (st->holder[i] == s->idx)
            return;
    for (unsigned i = 0; i < st->nstale; i++)
        if (st->stale[i] == s->idx)
            return;
    if (st->nstale < NS_EC_STALE_MAX) {
        st->stale_index[st->nstale] = (uint8_t)index;
        st->stale[st->nstale++] = s->idx;
    }
}

struct stale_call {
    struct ns *ns;
    uint64_t block_id;
    uint16_t server;
};

static void stale_reply(int status, const struct frame *f, void *arg)
{
    struct stale_call *c = arg;
    struct ns_stripe *st = ns_ec_get(c->ns, c->block_id);
    int rc = status ? status : f->h.status;
    if (st && (rc == 0 || rc == IMG_ENOBLOCKHERE))
        for (unsigned i = 0; i < st->nstale; i++)
            if (st->stale[i] == c->server) {
                st->nstale--;
                st->stale[i] = st->stale[st->nstale];
                st->stale_index[i] = st->stale_index[st->nstale];
                break;
            }
    free(c);
}

/* Tells the servers holding stale shards of each stripe to drop them,
 * every NS_EC_STALE_RETRY_MS until they answer, each first handing the
 * deletions in its tables to the shard's holder (tombs_to: a delete that
 * reached the old copy of a moved shard is not lost); a drop waits while
 * that holder is not up. */
static void stale_plan(struct ns *ns, uint64_t now)
{
    for (size_t i = 0; i < ns->ec->n; i++) {
        struct ns_stripe *st = &ns->ec->v[i];
        if (!st->nstale || now < st->stale_ms + NS_EC_STALE_RETRY_MS)
            continue;
        st->stale_ms = now;
        for (unsigned j = 0; j < st->nstale; j++) {
            struct ns_server *s = ns_registry_at(ns, st->stale[j]);
            const struct ns_server *h =
                st->stale_index[j] < st->k + st->m
                    ? ns_registry_at(ns, st->holder[st->stale_index[j]])
                    : NULL;
            if (!h || !h->up)
                continue;
            struct stale_call *c = s && s->up && s->conn ? malloc(sizeof(*c)) : NULL;
            if (!c)
                continue;
            *c = (struct stale_call){.ns = ns, .block_id = st->block_id, .server = s->idx};
            log_info("block %" PRIu64 ": %s holds stale shards (rebuilt elsewhere): told to "
                     "drop them",
                     st->block_id, s->id);
            Imgstore__DeleteBlock m = IMGSTORE__DELETE_BLOCK__INIT;
            m.block_id = st->block_id;
            m.shards = 1;
            m.tombs_to = (char *)h->addr;
            if (conn_request(s->conn, FT_DELETE_BLOCK, &m.base, NULL, 0, NULL,
                             NS_CMD_TIMEOUT_MS, stale_reply, c) != 0)
                free(c);
        }
    }
}

/* ---- reports ------------------------------------------------------------------------ */

static int entry_valid(const Imgstore__ShardInfo *x)
{
    if (!x || !scheme_ok(x->k, x->m) || x->index >= x->k + x->m ||
        x->n_seq_first != x->k || x->n_seq_last != x->k || x->shard_len == 0 ||
        x->shard_len % 4096 != 0 || x->block_len == 0 || x->block_len > x->shard_len * x->k)
        return 0;
    for (unsigned i = 0; i < x->k; i++)
        if (x->seq_first[i] > x->seq_last[i])
            return 0;
    return 1;
}

static int listed(const Imgstore__Heartbeat *hb, uint64_t id, unsigned index)
{
    for (size_t i = 0; i < hb->n_shards; i++)
        if (hb->shards[i] && hb->shards[i]->block_id == id && hb->shards[i]->index == index)
            return 1;
    return 0;
}

size_t ns_ec_apply_report(struct ns *ns, struct ns_server *s, const Imgstore__Heartbeat *hb)
{
    size_t ignored = 0;
    if (hb->full_report && ns->ec) {
        for (size_t i = 0; i < ns->ec->n; i++) {
            struct ns_stripe *st = &ns->ec->v[i];
            for (unsigned j = 0; j < (unsigned)(st->k + st->m); j++)
                if (st->holder[j] == s->idx && !listed(hb, st->block_id, j)) {
                    log_warn("block %" PRIu64 ": shard %u no longer on %s", st->block_id, j,
                             s->id);
                    st->holder[j] = NS_NO_SERVER;
                }
        }
    }
    for (size_t i = 0; i < hb->n_shards; i++) {
        const Imgstore__ShardInfo *x = hb->shards[i];
        if (!entry_valid(x)) {
            ignored++;
            continue;
        }
        struct ns_stripe *st = ns_ec_get(ns, x->block_id);
        if (!st && (st = stripe_add(ns, x->block_id, x->k, x->m, x->shard_len, x->block_len)))
            st->gen = x->gen;
        if (!st) {
            ignored++;
            continue;
        }
        if (st->k != x->k || st->m != x->m || st->shard_len != x->shard_len ||
            st->block_len != x->block_len || st->gen != x->gen) {
            log_warn("block %" PRIu64 ": shard %u on %s is of another encoding (%u+%u, "
                     "%" PRIu64 " bytes, generation %u); ignored",
                     x->block_id, x->index, s->id, x->k, x->m, x->shard_len, x->gen);
            ignored++;
            continue;
        }
        if (st->holder[x->index] != s->idx && st->holder[x->index] != NS_NO_SERVER) {
            const struct ns_server *o = ns_registry_at(ns, st->holder[x->index]);
            if (o && o->up) {
                /* A second copy of one shard (rebuilt elsewhere while s was
                 * down, or after s reported it bad): the stripe's holder
                 * keeps it; s drops its copies when it holds no other. */
                drop_stale(ns, st, s, x->index);
                continue;
            }
        }
        st->holder[x->index] = s->idx;
        st->file_bytes[x->index] = x->file_bytes;
        if (x->bad)
            st->bad |= (uint16_t)(1u << x->index);
        else
            st->bad &= (uint16_t)~(1u << x->index);
        st->files = x->files;
        st->garbage[x->index] = x->garbage_bytes;
        for (unsigned j = 0; j < x->k; j++) {
            st->seq_first[j] = x->seq_first[j];
            st->seq_last[j] = x->seq_last[j];
        }
    }
    return ignored;
}

/* ---- the EC_ENCODE task ---------------------------------------------------------------- */

struct job {
    struct ns *ns;
    uint64_t task_id, block_id;
    unsigned k, m;
    uint16_t coord;
    uint16_t target[NS_EC_MAX_SHARDS];
};

static void job_end(struct job *j, int status, uint64_t size)
{
    struct ns *ns = j->ns;
    if (!ns->stopping) {
        ns_plan_task_end(ns, j->task_id, status, size, uv_now(ns->loop));
        ns_plan_step(ns, uv_now(ns->loop));
    }
    free(j);
}

/* One DELETE_BLOCK of a replicated copy of an encoded block. */
struct drop {
    struct ns *ns;
    uint64_t block_id;
    uint16_t server;
};

static void drop_reply(int status, const struct frame *f, void *arg)
{
    struct drop *d = arg;
    struct ns *ns = d->ns;
    int rc;
    Imgstore__DeleteBlockResp *r =
        conn_reply_unpack(status, f, &imgstore__delete_block_resp__descriptor, &rc);
    struct ns_server *s = ns_registry_at(ns, d->server);
    if (r && !ns->stopping && s) {
        ns_block_remove_rep(ns, d->block_id, s);
        log_info("block %" PRIu64 ": replicated copy on %s deleted (the stripe holds it)",
                 d->block_id, s->id);
    } else if (!r) {
        log_warn("block %" PRIu64 ": replicated copy on %s not deleted: %s", d->block_id,
                 s ? s->id : "?", img_strerror(rc));
    }
    if (r)
        imgstore__delete_block_resp__free_unpacked(r, NULL);
    free(d);
}

/* The stripe of b is complete, durable and checked: the replicated copies
 * go (each holder drops its copy only when it is exactly the encoded
 * length, so a copy that took a tombstone since is kept). */
static void drop_replicas(struct ns *ns, uint64_t id, uint64_t block_len)
{
    struct ns_block *b = ns_blocks_get(&ns->blocks, id);
    for (unsigned i = 0; b && i < b->nrep; i++) {
        struct ns_server *s = ns_registry_at(ns, b->rep[i]);
        struct drop *d = s && s->up && s->conn ? malloc(sizeof(*d)) : NULL;
        if (!d)
            continue;
        *d = (struct drop){.ns = ns, .block_id = id, .server = s->idx};
        Imgstore__DeleteBlock m = IMGSTORE__DELETE_BLOCK__INIT;
        m.block_id = id;
        m.expected_size = block_len;
        if (conn_request(s->conn, FT_DELETE_BLOCK, &m.base, NULL, 0, NULL, NS_CMD_TIMEOUT_MS,
                         drop_reply, d) != 0)
            free(d);
    }
}

int ns_ec_stale_copy(struct ns *ns, const struct ns_block *b, struct ns_server *s)
{
    const struct ns_stripe *st = ns_ec_supersedes(ns, b->id);
    if (!st || !ns->loop || !s->up || !s->conn)
        return 0;
    struct drop *d = malloc(sizeof(*d));
    if (!d)
        return 0;
    *d = (struct drop){.ns = ns, .block_id = b->id, .server = s->idx};
    log_info("block %" PRIu64 ": %s reports a replicated copy of it, which its stripe "
             "supersedes: told to delete it", b->id, s->id);
    Imgstore__DeleteBlock m = IMGSTORE__DELETE_BLOCK__INIT;
    m.block_id = b->id;
    m.expected_size = st->block_len;
    if (conn_request(s->conn, FT_DELETE_BLOCK, &m.base, NULL, 0, NULL, NS_CMD_TIMEOUT_MS,
                     drop_reply, d) != 0) {
        free(d);
        return 0;
    }
    return 1;
}

/* Non-zero when every shard of st has a holder. */
static int complete(const struct ns_stripe *st)
{
    for (unsigned i = 0; i < (unsigned)(st->k + st->m); i++)
        if (st->holder[i] == NS_NO_SERVER)
            return 0;
    return 1;
}

static void ignore_reply(int status, const struct frame *f, void *arg)
{
    (void)status;
    (void)f;
    (void)arg;
}

/* A failed encoding: the targets drop what they wrote of it (best effort;
 * a stripe left in reports stays unusable while the block is replicated,
 * ns_ec_usable) and the stripe entry is forgotten. */
static void encode_undo(struct job *j)
{
    struct ns *ns = j->ns;
    if (ns->stopping)
        return;
    for (unsigned i = 0; i < j->k + j->m; i++) {
        struct ns_server *s = ns_registry_at(ns, j->target[i]);
        if (!s || !s->up || !s->conn)
            continue;
        Imgstore__DeleteBlock m = IMGSTORE__DELETE_BLOCK__INIT;
        m.block_id = j->block_id;
        m.shards = 1;
        conn_request(s->conn, FT_DELETE_BLOCK, &m.base, NULL, 0, NULL, NS_CMD_TIMEOUT_MS,
                     ignore_reply, NULL);
    }
    struct ns_stripe *st = ns_ec_get(ns, j->block_id);
    if (st && !st->confirmed)
        stripe_forget(ns, j->block_id);
}

static void encode_reply(int status, const struct frame *f, void *arg)
{
    struct job *j = arg;
    struct ns *ns = j->ns;
    int rc;
    Imgstore__EcEncodeResp *r =
        conn_reply_unpack(status, f, &imgstore__ec_encode_resp__descriptor, &rc);
    if (!r) {
        log_warn("task %" PRIu64 ": block %" PRIu64 " not encoded: %s", j->task_id,
                 j->block_id, img_strerror(rc));
        encode_undo(j);
        job_end(j, rc ? rc : IMG_EPROTO, 0);
        return;
    }
    if (ns->stopping || r->n_seq_first != j->k || r->n_seq_last != j->k) {
        imgstore__ec_encode_resp__free_unpacked(r, NULL);
        encode_undo(j);
        job_end(j, IMG_EPROTO, 0);
        return;
    }
    struct ns_stripe *st = ns_ec_get(ns, j->block_id);
    if (!st)
        st = stripe_add(ns, j->block_id, j->k, j->m, r->shard_len, r->block_len);
    if (st && st->k == j->k && st->m == j->m && st->shard_len == r->shard_len) {
        for (unsigned i = 0; i < j->k + j->m; i++)
            if (st->holder[i] == NS_NO_SERVER)
                st->holder[i] = j->target[i];
        st->confirmed = 1;
        for (unsigned i = 0; i < j->k; i++) {
            st->seq_first[i] = r->seq_first[i];
            st->seq_last[i] = r->seq_last[i];
        }
        st->files = r->files;
    }
    log_info("task %" PRIu64 ": block %" PRIu64 " encoded %u+%u (%" PRIu64
             " bytes, shards of %" PRIu64 ")",
             j->task_id, j->block_id, j->k, j->m, r->block_len, r->shard_len);
    uint64_t len = r->block_len;
    imgstore__ec_encode_resp__free_unpacked(r, NULL);
    if (st && complete(st)) {
        st->drop_ms = uv_now(ns->loop);
        drop_replicas(ns, j->block_id, len);
    }
    job_end(j, st ? 0 : -ENOMEM, len);
}

static void stat_reply(int status, const struct frame *f, void *arg)
{
    struct job *j = arg;
    struct ns *ns = j->ns;
    int rc;
    Imgstore__BlockInfo *bi = conn_reply_unpack(status, f, &imgstore__block_info__descriptor, &rc);
    if (!bi || !bi->sealed || bi->corrupt || ns->stopping) {
        log_info("task %" PRIu64 ": block %" PRIu64 " not encoded now: its primary's copy is "
                 "not sealed and intact",
                 j->task_id, j->block_id);
        if (bi)
            imgstore__block_info__free_unpacked(bi, NULL);
        job_end(j, bi ? IMG_ESEALED : (rc ? rc : IMG_EPROTO), 0);
        return;
    }
    uint64_t size = bi->size;
    imgstore__block_info__free_unpacked(bi, NULL);
    struct ns_server *c = ns_registry_at(ns, j->coord);
    Imgstore__EcTarget tg[NS_EC_MAX_SHARDS], *tp[NS_EC_MAX_SHARDS];
    Imgstore__Replica rp[NS_EC_MAX_SHARDS];
    for (unsigned i = 0; i < j->k + j->m; i++) {
        struct ns_server *s = ns_registry_at(ns, j->target[i]);
        if (!s || !s->up) {
            job_end(j, IMG_EUNAVAIL, 0);
            return;
        }
        imgstore__ec_target__init(&tg[i]);
        imgstore__replica__init(&rp[i]);
        ns_plan_fill_replica(&rp[i], s);
        tg[i].index = i;
        tg[i].server = &rp[i];
        tp[i] = &tg[i];
    }
    Imgstore__EcEncode m = IMGSTORE__EC_ENCODE__INIT;
    m.block_id = j->block_id;
    m.k = j->k;
    m.m = j->m;
    m.task_id = j->task_id;
    m.expected_size = size;
    m.n_targets = j->k + j->m;
    m.targets = tp;
    if (!c || !c->up || !c->conn ||
        conn_request(c->conn, FT_EC_ENCODE, &m.base, NULL, 0, NULL, NS_EC_TIMEOUT_MS,
                     encode_reply, j) != 0)
        job_end(j, IMG_ECONN, 0);
}

/* A server that may take a new shard (a session needed only with a loop:
 * unit tests inspect the tasks). */
static int target_ok(const struct ns *ns, const struct ns_server *s)
{
    return s && s->up && (s->conn || !ns->loop) && !s->draining && !s->readonly &&
           ns_server_has_room(ns, s, ns->meta.block_size / 2);
}

static int by_free(const void *a, const void *b, void *arg)
{
    const struct ns *ns = arg;
    const struct ns_server *x = ns->servers[*(const uint16_t *)a];
    const struct ns_server *y = ns->servers[*(const uint16_t *)b];
    return x->free < y->free ? 1 : x->free > y->free ? -1 : 0;
}

/* Non-zero when a task of any kind runs for block id. */
/* Non-zero when an encoding of block id failed less than NS_RETRY_MS ago
 * (at `now`): it waits, as the replicated planner's failing blocks do, so a
 * block that cannot be encoded yet (its primary's copy not intact, the
 * server busy) is not asked again at once and without end. */
static int encode_failed_lately(const struct ns *ns, uint64_t id, uint64_t now)
{
    for (size_t i = 0; i < ns->plan.ntasks; i++) {
        const struct ns_task *t = &ns->plan.tasks[i];
        if (t->block_id == id && t->kind == NS_TASK_EC_ENCODE && t->state == NS_TASK_FAILED &&
            now < t->end_ms + NS_RETRY_MS)
            return 1;
    }
    return 0;
}

static int busy(const struct ns *ns, uint64_t id)
{
    for (size_t i = 0; i < ns->plan.ntasks; i++)
        if (ns->plan.tasks[i].block_id == id && ns->plan.tasks[i].state == NS_TASK_RUNNING)
            return 1;
    return 0;
}

uint64_t ns_ec_start(struct ns *ns, struct ns_block *b, unsigned k, unsigned m,
                     uint64_t now_ms, const char **why)
{
    *why = NULL;
    if (!scheme_ok(k, m)) {
        *why = "erasure coding is off (ds-admin set ec 4+2)";
        return 0;
    }
    if (!b->sealed) {
        *why = "not sealed";
        return 0;
    }
    if (ns_ec_usable(ns, b->id)) {
        *why = "already encoded";
        return 0;
    }
    if (busy(ns, b->id)) {
        *why = "a task runs for it";
        return 0;
    }
    struct ns_server *c = b->primary < b->nrep ? ns_registry_at(ns, b->rep[b->primary]) : NULL;
    if (!c || !c->up || (!c->conn && ns->loop)) {
        *why = "its primary is not up";
        return 0;
    }
    if (c->tasks >= ns_settings_task_cap(ns)) {
        *why = "its primary runs as many tasks as the task cap allows";
        return 0;
    }
    uint16_t *cand = malloc((ns->nservers + 1) * sizeof(*cand));
    if (!cand) {
        *why = "out of memory";
        return 0;
    }
    size_t n = 0;
    for (size_t i = 0; i < ns->nservers; i++)
        if (target_ok(ns, ns->servers[i]))
            cand[n++] = (uint16_t)i;
    if (n < k + m) {
        free(cand);
        *why = "fewer up servers that can take a shard than k+m";
        return 0;
    }
    qsort_r(cand, n, sizeof(*cand), by_free, ns);
    struct job *j = calloc(1, sizeof(*j));
    struct ns_task *t = j ? ns_plan_task_add(ns, NS_TASK_EC_ENCODE, b->id, c->idx, NS_NO_SERVER,
                                             b->size, REASON_EC, now_ms)
                          : NULL;
    if (!t) {
        free(cand);
        free(j);
        *why = "out of memory";
        return 0;
    }
    *j = (struct job){.ns = ns, .task_id = t->id, .block_id = b->id, .k = k, .m = m,
                      .coord = c->idx};
    stripe_forget(ns, b->id); /* what a failed encoding left, if anything */
    for (unsigned i = 0; i < k + m; i++)
        j->target[i] = cand[i];
    free(cand);
    uint64_t id = t->id;
    log_info("task %" PRIu64 ": encode block %" PRIu64 " %u+%u (%" PRIu64 " bytes) from %s",
             id, b->id, k, m, b->size, c->id);
    if (!ns->loop) {
        free(j); /* unit tests inspect the task */
        return id;
    }
    Imgstore__StatBlock q = IMGSTORE__STAT_BLOCK__INIT;
    q.block_id = b->id;
    if (conn_request(c->conn, FT_STAT_BLOCK, &q.base, NULL, 0, NULL, NS_CMD_TIMEOUT_MS,
                     stat_reply, j) != 0)
        job_end(j, IMG_ECONN, 0);
    return id;
}

/* ---- repair: EC_REBUILD ------------------------------------------------------------- */

static const char REASON_REBUILD[] = "shard lost";

struct rjob {
    struct ns *ns;
    uint64_t task_id, block_id;
    unsigned index;
    uint16_t target;
    uint16_t from;  /* a move: the draining holder; NS_NO_SERVER for a rebuild */
};

static void rebuild_reply(int status, const struct frame *f, void *arg)
{
    struct rjob *j = arg;
    struct ns *ns = j->ns;
    int rc;
    Imgstore__EcRebuildResp *r =
        conn_reply_unpack(status, f, &imgstore__ec_rebuild_resp__descriptor, &rc);
    struct ns_stripe *st = ns_ec_get(ns, j->block_id);
    struct ns_server *t = ns_registry_at(ns, j->target);
    if (r && st && t) {
        uint16_t old = st->holder[j->index];
        st->holder[j->index] = j->target;
        st->file_bytes[j->index] = r->file_bytes;
        st->bad &= (uint16_t)~(1u << j->index);
        struct ns_server *from = ns_registry_at(ns, j->from);
        if (from) /* a move: the old copy hands its deletions over, then goes (stale_plan) */
            drop_stale(ns, st, from, j->index);
        log_info("task %" PRIu64 ": shard %u of block %" PRIu64 " %s on %s%s%s", j->task_id,
                 j->index, j->block_id, from ? "moved" : "rebuilt", t->id,
                 from ? " from " : "", from ? from->id : "");
        /* Held until it has the journaled tombstones; a rebuild's old holder
         * (not a move's: stale_plan hands its deletions over first) drops
         * its copy at once. */
        ns_ecdj_rebuilt(ns, st, j->index, from ? j->target : old);
    } else if (!r) {
        log_warn("task %" PRIu64 ": shard %u of block %" PRIu64 " not rebuilt: %s", j->task_id,
                 j->index, j->block_id, img_strerror(rc));
    }
    if (r)
        imgstore__ec_rebuild_resp__free_unpacked(r, NULL);
    if (!ns->stopping)
        ns_plan_task_end(ns, j->task_id, r ? 0 : (rc ? rc : IMG_EPROTO),
                         r && st ? st->shard_len : 0, uv_now(ns->loop));
    free(j);
}

/* Shard i of st needs rebuilding: no holder, its holder down, or bad. */
static int lost(const struct ns *ns, const struct ns_stripe *st, unsigned i)
{
    const struct ns_server *s = ns_registry_at(ns, st->holder[i]);
    return !s || !s->up || (st->bad & (1u << i));
}

static unsigned surviving(const struct ns *ns, const struct ns_stripe *st)
{
    unsigned n = 0;
    for (unsigned i = 0; i < (unsigned)(st->k + st->m); i++)
        n += !lost(ns, st, i);
    return n;
}

static const char REASON_DRAIN[] = "drain";

int ns_ec_holds(const struct ns_stripe *st, uint16_t idx)
{
    for (unsigned j = 0; j < (unsigned)(st->k + st->m); j++)
        if (st->holder[j] == idx)
            return 1;
    for (unsigned j = 0; j < st->nstale; j++)
        if (st->stale[j] == idx)
            return 1;
    return 0;
}

/* Starts the rebuild of lost shard `index` of st on the server with the most
 * free bytes that holds no shard of the stripe; or, `from` set, its move off
 * server `from` (which holds it: named as a source of the shard itself);
 * `to` set: onto that server only. Returns the task id, 0 when not started. */
static uint64_t start_rebuild(struct ns *ns, struct ns_stripe *st, unsigned index,
                              struct ns_server *from, struct ns_server *to,
                              const char *reason, uint64_t now)
{
    struct ns_server *best = NULL;
    if (from && from->tasks >= ns_settings_task_cap(ns))
        return 0;
    for (size_t i = 0; !to && i < ns->nservers; i++) {
        struct ns_server *s = ns->servers[i];
        int holds = 0;
        for (unsigned j = 0; j < (unsigned)(st->k + st->m) && !holds; j++)
            holds = st->holder[j] == s->idx;
        if (!holds && target_ok(ns, s) && s->tasks < ns_settings_task_cap(ns) &&
            (!best || s->free > best->free))
            best = s;
    }
    if (to && !ns_ec_holds(st, to->idx) && target_ok(ns, to) &&
        to->tasks < ns_settings_task_cap(ns))
        best = to;
    if (!best)
        return 0;
    Imgstore__EcTarget tg[NS_EC_MAX_SHARDS], *tp[NS_EC_MAX_SHARDS];
    Imgstore__Replica rp[NS_EC_MAX_SHARDS];
    unsigned n = 0;
    for (unsigned i = 0; i < (unsigned)(st->k + st->m); i++) {
        if (i == index || lost(ns, st, i))
            continue;
        imgstore__ec_target__init(&tg[n]);
        imgstore__replica__init(&rp[n]);
        ns_plan_fill_replica(&rp[n], ns_registry_at(ns, st->holder[i]));
        tg[n].index = i;
        tg[n].server = &rp[n];
        tp[n] = &tg[n];
        n++;
    }
    if (from) { /* the shard itself, copied as it is */
        imgstore__ec_target__init(&tg[n]);
        imgstore__replica__init(&rp[n]);
        ns_plan_fill_replica(&rp[n], from);
        tg[n].index = index;
        tg[n].server = &rp[n];
        tp[n] = &tg[n];
        n++;
    }
    if (n < (from ? 1u : st->k))
        return 0;
    struct rjob *j = malloc(sizeof(*j));
    struct ns_task *t =
        j ? ns_plan_task_add(ns, from ? NS_TASK_EC_MOVE : NS_TASK_EC_REBUILD, st->block_id,
                             from ? from->idx : NS_NO_SERVER, best->idx, st->shard_len,
                             reason, now)
          : NULL;
    if (!t) {
        free(j);
        return 0;
    }
    *j = (struct rjob){.ns = ns, .task_id = t->id, .block_id = st->block_id, .index = index,
                       .target = best->idx, .from = from ? from->idx : NS_NO_SERVER};
    if (from)
        log_info("task %" PRIu64 ": move shard %u of block %" PRIu64 " from %s to %s (%s)",
                 t->id, index, st->block_id, from->id, best->id, reason);
    else
        log_info("task %" PRIu64 ": rebuild shard %u of block %" PRIu64 " on %s (%u of %u "
                 "shards left)",
                 t->id, index, st->block_id, best->id, surviving(ns, st), st->k + st->m);
    uint64_t id = t->id;
    if (!ns->loop) {
        free(j);
        return id;
    }
    Imgstore__EcRebuild m = IMGSTORE__EC_REBUILD__INIT;
    m.block_id = st->block_id;
    m.index = index;
    m.k = st->k;
    m.m = st->m;
    m.task_id = t->id;
    m.n_sources = n;
    m.sources = tp;
    m.rate_bytes_per_s = from ? ns_settings_copy_rate(ns) : 0; /* a move: as copies go */
    if (conn_request(best->conn, FT_EC_REBUILD, &m.base, NULL, 0, NULL, NS_EC_TIMEOUT_MS,
                     rebuild_reply, j) != 0) {
        free(j);
        ns_plan_task_end(ns, id, IMG_ECONN, 0, now);
        return 0;
    }
    return id;
}

static int by_surviving(const void *a, const void *b, void *arg)
{
    const struct ns *ns = arg;
    const struct ns_stripe *x = &ns->ec->v[*(const size_t *)a];
    const struct ns_stripe *y = &ns->ec->v[*(const size_t *)b];
    unsigned sx = surviving(ns, x), sy = surviving(ns, y);
    return sx < sy ? -1 : sx > sy;
}

/* Stripes with lost shards, most endangered (fewest surviving) first: one
 * rebuild each per pass while the caps allow. */
static void plan_repair(struct ns *ns, uint64_t now_ms)
{
    struct ns_ec *e = ns->ec;
    size_t *order = malloc((e->n + 1) * sizeof(*order)), n = 0;
    if (!order)
        return;
    for (size_t i = 0; i < e->n; i++) {
        const struct ns_stripe *st = &e->v[i];
        unsigned s = surviving(ns, st);
        if (s < (unsigned)(st->k + st->m) && s >= st->k && !busy(ns, st->block_id) &&
            ns_ec_usable(ns, st->block_id))
            order[n++] = i;
    }
    qsort_r(order, n, sizeof(*order), by_surviving, ns);
    for (size_t o = 0; o < n; o++) {
        struct ns_stripe *st = &e->v[order[o]];
        for (unsigned i = 0; i < (unsigned)(st->k + st->m); i++)
            if (lost(ns, st, i)) {
                start_rebuild(ns, st, i, NULL, NULL, REASON_REBUILD, now_ms);
                break; /* one per stripe per pass: the next after it */
            }
    }
    free(order);
}

/* Drains: a whole stripe (no lost shard: repair comes first) with a shard on
 * an up draining server moves that shard, one per stripe per pass, as the
 * caps allow. */
static void plan_moves(struct ns *ns, uint64_t now_ms)
{
    struct ns_ec *e = ns->ec;
    for (size_t o = 0; o < e->n; o++) {
        struct ns_stripe *st = &e->v[o];
        if (surviving(ns, st) < (unsigned)(st->k + st->m) || busy(ns, st->block_id) ||
            !ns_ec_usable(ns, st->block_id))
            continue;
        for (unsigned i = 0; i < (unsigned)(st->k + st->m); i++) {
            struct ns_server *s = ns_registry_at(ns, st->holder[i]);
            if (s && s->draining && (s->conn || !ns->loop)) {
                start_rebuild(ns, st, i, s, NULL, REASON_DRAIN, now_ms);
                break;
            }
        }
    }
}

int ns_ec_movable(const struct ns *ns, const struct ns_stripe *st)
{
    if (!ns_ec_usable(ns, st->block_id) || ns_blocks_get(&ns->blocks, st->block_id) ||
        busy(ns, st->block_id) || st->bad)
        return 0;
    for (unsigned i = 0; i < (unsigned)(st->k + st->m); i++) {
        const struct ns_server *s = ns_registry_at(ns, st->holder[i]);
        if (!s || !s->up || s->draining || (!s->conn && ns->loop))
            return 0;
    }
    return 1;
}

uint64_t ns_ec_start_move(struct ns *ns, uint64_t id, unsigned index, uint16_t from,
                          uint16_t to, const char *reason, uint64_t now_ms)
{
    struct ns_stripe *st = ns_ec_get(ns, id);
    struct ns_server *f = ns_registry_at(ns, from), *t = ns_registry_at(ns, to);
    if (!st || !f || !t || index >= (unsigned)(st->k + st->m) || st->holder[index] != from ||
        !ns_ec_movable(ns, st))
        return 0;
    return start_rebuild(ns, st, index, f, t, reason, now_ms);
}

unsigned ns_ec_shards_on(const struct ns *ns, uint16_t idx)
{
    unsigned n = 0;
    const struct ns_ec *e = ns->ec;
    for (size_t i = 0; e && i < e->n; i++) {
        const struct ns_stripe *st = &e->v[i];
        for (unsigned j = 0; j < (unsigned)(st->k + st->m); j++)
            n += st->holder[j] == idx;
        for (unsigned j = 0; j < st->nstale; j++)
            n += st->stale[j] == idx;
    }
    return n;
}

static int seen_cmp(const void *a, const void *b)
{
    const struct ns_ec_seen *x = a, *y = b;
    return x->block_id < y->block_id ? -1 : x->block_id > y->block_id;
}

/* ec_min_age_h: the sealed blocks not encoded yet, each with the time this
 * nameserver first saw it sealed (kept sorted by id; rebuilt every pass so
 * encoded or vanished blocks leave it); those old enough are encoded as the
 * task cap allows. */
static void plan_age(struct ns *ns, uint64_t now_ms, unsigned k, unsigned m)
{
    uint64_t age_ms = ns_setting(ns, NS_SETTING_EC_MIN_AGE_H) * 3600ull * 1000;
    struct ns_ec *e = ns->ec;
    struct ns_ec_seen *next = malloc((ns->blocks.count + 1) * sizeof(*next));
    if (!next)
        return;
    size_t n = 0;
    for (size_t i = 0; i < ns->blocks.cap; i++) {
        struct ns_block *b = &ns->blocks.slots[i];
        if (!b->id || !b->sealed || ns_ec_usable(ns, b->id) || n >= ns->blocks.count)
            continue;
        struct ns_ec_seen key = {.block_id = b->id};
        const struct ns_ec_seen *old =
            e->nseen ? bsearch(&key, e->seen, e->nseen, sizeof(key), seen_cmp) : NULL;
        next[n] = (struct ns_ec_seen){.block_id = b->id, .ms = old ? old->ms : now_ms};
        const char *why;
        if (now_ms >= next[n].ms + age_ms && !busy(ns, b->id) &&
            !encode_failed_lately(ns, b->id, now_ms))
            ns_ec_start(ns, b, k, m, now_ms, &why);
        n++;
    }
    qsort(next, n, sizeof(*next), seen_cmp);
    free(e->seen);
    e->seen = next;
    e->nseen = e->seen_cap = n;
}

void ns_ec_plan(struct ns *ns, uint64_t now_ms)
{
    unsigned k, m;
    if (ns->safe_mode)
        return;
    if (ns_settings_ec(ns, &k, &m) && ns_setting(ns, NS_SETTING_EC_MIN_AGE_H) > 0 &&
        (ns->ec || (ns->ec = calloc(1, sizeof(struct ns_ec)))))
        plan_age(ns, now_ms, k, m);
    if (!ns->ec)
        return;
    plan_repair(ns, now_ms);
    plan_moves(ns, now_ms);
    if (ns->loop)
        stale_plan(ns, now_ms);
    for (size_t i = 0; ns->loop && i < ns->ec->n; i++) {
        struct ns_stripe *st = &ns->ec->v[i];
        if (now_ms >= st->drop_ms + NS_EC_DROP_RETRY_MS && complete(st) &&
            ns_blocks_get(&ns->blocks, st->block_id) && !busy(ns, st->block_id) &&
            (st->confirmed || supersedes(ns, st))) {
            st->drop_ms = now_ms;
            drop_replicas(ns, st->block_id, st->block_len);
        }
    }
    if (!ns->ec->all_pending)
        return;
    if (!ns_settings_ec(ns, &k, &m)) {
        ns->ec->all_pending = 0;
        return;
    }
    size_t left = 0;
    for (size_t i = 0; i < ns->blocks.cap; i++) {
        struct ns_block *b = &ns->blocks.slots[i];
        const char *why;
        if (!b->id || !b->sealed || ns_ec_usable(ns, b->id))
            continue;
        left++;
        if (!busy(ns, b->id) && !encode_failed_lately(ns, b->id, now_ms))
            ns_ec_start(ns, b, k, m, now_ms, &why);
    }
    if (left == 0) {
        log_info("ec encode --all-sealed: every sealed block is encoded");
        ns->ec->all_pending = 0;
    }
}

/* ---- ADMIN_EC_ENCODE ------------------------------------------------------------------- */

void ns_ec_handle_encode(struct ns *ns, struct conn *c, const struct frame_header *h,
                         const Imgstore__AdminEcEncode *q)
{
    unsigned k = 0, m = 0;
    if (!ns_settings_ec(ns, &k, &m)) {
        conn_reply(c, h, IMG_EINVAL, NULL, NULL, 0, NULL);
        return;
    }
    uint64_t now = uv_now(ns->loop);
    size_t cap = q->all_sealed ? ns->blocks.count + 1 : 1, n = 0;
    uint64_t *tasks = calloc(cap, sizeof(*tasks)), *blocks = calloc(cap, sizeof(*blocks));
    if (!tasks || !blocks) {
        free(tasks);
        free(blocks);
        conn_reply(c, h, -ENOMEM, NULL, NULL, 0, NULL);
        return;
    }
    int rc = 0;
    if (!q->all_sealed) {
        struct ns_block *b = ns_blocks_get(&ns->blocks, q->block_id);
        const char *why = NULL;
        uint64_t t = b ? ns_ec_start(ns, b, k, m, now, &why) : 0;
        if (!b)
            rc = ns_ec_get(ns, q->block_id) ? IMG_EEXIST : IMG_ENOTFOUND;
        else if (!t) {
            log_info("block %" PRIu64 " not encoded: %s", b->id, why);
            rc = ns_ec_usable(ns, b->id) ? IMG_EEXIST
                 : !b->sealed         ? IMG_ESEALED
                 : busy(ns, b->id)    ? IMG_EBUSY
                                      : IMG_EUNAVAIL;
        } else {
            tasks[n] = t;
            blocks[n++] = b->id;
        }
    } else {
        if (!ns->ec && !(ns->ec = calloc(1, sizeof(struct ns_ec)))) {
            free(tasks);
            free(blocks);
            conn_reply(c, h, -ENOMEM, NULL, NULL, 0, NULL);
            return;
        }
        ns->ec->all_pending = 1;
        for (size_t i = 0; i < ns->blocks.cap && n < cap; i++) {
            struct ns_block *b = &ns->blocks.slots[i];
            const char *why;
            if (!b->id || !b->sealed || ns_ec_usable(ns, b->id) || busy(ns, b->id))
                continue;
            uint64_t t = ns_ec_start(ns, b, k, m, now, &why);
            if (t) {
                tasks[n] = t;
                blocks[n++] = b->id;
            }
        }
    }
    Imgstore__AdminEcEncodeResp r = IMGSTORE__ADMIN_EC_ENCODE_RESP__INIT;
    r.n_task_ids = r.n_block_ids = n;
    r.task_ids = tasks;
    r.block_ids = blocks;
    conn_reply(c, h, rc, rc ? NULL : &r.base, NULL, 0, NULL);
    free(tasks);
    free(blocks);
}
