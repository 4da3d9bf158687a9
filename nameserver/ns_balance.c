/* ns_balance.c - rebalancing by used bytes: sealed blocks move from the
 * fullest dataservers to the emptiest until every server's used fraction is
 * within the band (setting rebalance_band, in points) of the cluster's mean.
 *
 * A server's used bytes are the sizes of the copies it holds in the block
 * map (its block reports, updated at once when a task ends) and of the
 * shard files of erasure-coded blocks the stripes name it for, never a
 * count of blocks; its capacity is what its heartbeat reports (the dataserver's
 * --capacity or its file systems). Only eligible servers count: up, not
 * draining, not read-only, capacity known. The mean is sum(used) /
 * sum(capacity) of the eligible servers.
 *
 * A move is one REPLICATE_BLOCK task from the source to the target (reason
 * "rebalance"), then, once the copy is installed, the planner's
 * extra-replica rule deletes the source's copy (ns_balance_victim tells it
 * which one). The block never drops below the replication: the deletion
 * needs `replicas` other verified copies, as every deletion does.
 * A shard of an erasure-coded block moves too (ns_ec_start_move: the target
 * copies it from its holder, an ec-move task with reason "rebalance"; the
 * old copy is dropped by the stripe code once the stripe names the target),
 * only from a whole, idle stripe, never onto a server holding anything of
 * the stripe, one shard per stripe per pass.
 *
 * Lowest priority (ns_plan_step calls it last): only sealed, fully and
 * exactly replicated, idle blocks whose copy on the source is not the
 * primary move; a server holding an under-replicated block or taking part
 * in a repair copy is left alone; a server takes part in at most task_cap/2
 * moves, so repair always has room. Moves in flight count in the planning
 * (the source as if its copy were gone, the target as if it had it), and a
 * move is planned only when the target ends no fuller than the source,
 * which makes sum(used^2 / capacity) fall with every move: no oscillation,
 * and the balance stops when every server is in the band or no move helps.
 *
 * Policy layer, the planner's last step: calls the map, the registry, the
 * settings, the bad list, the planner's task list (ns_plan_start_copy,
 * ns_plan_task) and the stripe table (ns_ec_movable, ns_ec_start_move);
 * ADMIN_REBALANCE arrives unpacked from ns_rpc.c. */
#include "nameserver/ns.h"
#include "nameserver/ns_admin.h"
#include "nameserver/ns_ec.h"

#include "net/conn.h"
#include "base/array.h"
#include "base/err.h"
#include "base/log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define PCT 100.0

/* Moves a server may take part in at once: half its task cap. */
static unsigned move_cap(const struct ns *ns)
{
    return ns_settings_task_cap(ns) / 2;
}


double ns_balance_fraction(const struct ns_bal_server *s)
{
    return s->capacity ? (double)s->used / (double)s->capacity : 0.0;
}

/* ---- the move list ---------------------------------------------------------- */

static struct ns_bal_move *move_of(const struct ns *ns, uint64_t block_id)
{
    for (size_t i = 0; i < ns->bal.nmoves; i++)
        if (ns->bal.moves[i].block_id == block_id)
            return &ns->bal.moves[i];
    return NULL;
}

static int move_add(struct ns *ns, const struct ns_bal_move *m)
{
    struct ns_balance *bl = &ns->bal;
    int rc = ARRAY_RESERVE(bl->moves, bl->cap, bl->nmoves + 1, 16);
    if (rc != 0)
        return rc;
    bl->moves[bl->nmoves++] = *m;
    return 0;
}

/* Returns task `id` in any state (the newest entry), or NULL when trimmed. */
static const struct ns_task *task_any(const struct ns *ns, uint64_t id)
{
    for (size_t i = ns->plan.ntasks; i-- > 0;)
        if (ns->plan.tasks[i].id == id)
            return &ns->plan.tasks[i];
    return NULL;
}

/* Follows every move: a copy that ended installed waits for the deletion of
 * the source's copy; a failed copy, a vanished new copy or a source that
 * keeps its copy past NS_BAL_DELETE_WAIT_MS ends the move as failed (logged);
 * a source whose copy is gone ends it as done. */
static void moves_follow(struct ns *ns, uint64_t now)
{
    struct ns_balance *bl = &ns->bal;
    for (size_t i = 0; i < bl->nmoves;) {
        struct ns_bal_move *m = &bl->moves[i];
        if (m->shard) { /* done when its task ended and the stripe names the target */
            const struct ns_task *t = task_any(ns, m->task_id);
            if (t && t->state == NS_TASK_RUNNING) {
                i++;
                continue;
            }
            const struct ns_stripe *x = ns_ec_get(ns, m->block_id);
            struct ns_server *f = ns_registry_at(ns, m->from), *d = ns_registry_at(ns, m->to);
            if (x && m->index < x->k + x->m && x->holder[m->index] == m->to) {
                bl->moves_done++;
                bl->bytes_moved += m->bytes;
                log_info("balance: shard %u of block %" PRIu64 " moved from %s to %s (%" PRIu64
                         " bytes)",
                         m->index, m->block_id, f ? f->id : "?", d ? d->id : "?", m->bytes);
            } else {
                bl->moves_failed++;
                log_warn("balance: move of shard %u of block %" PRIu64 " from %s to %s given "
                         "up: %s",
                         m->index, m->block_id, f ? f->id : "?", d ? d->id : "?",
                         t && t->err ? img_strerror(t->err) : "the stripe does not name it");
            }
            *m = bl->moves[--bl->nmoves];
            continue;
        }
        const struct ns_block *b = ns_blocks_get(&ns->blocks, m->block_id);
        int has_from = b && ns_block_find_rep(b, m->from) >= 0;
        int has_to = b && ns_block_find_rep(b, m->to) >= 0;
        const char *why = NULL;
        if (!m->copied) {
            const struct ns_task *t = task_any(ns, m->task_id);
            if (t && t->state == NS_TASK_RUNNING) {
                i++;
                continue;
            }
            if (has_to) {
                m->copied = 1;
                m->copied_ms = now;
            } else {
                why = t && t->err ? img_strerror(t->err) : "the copy was not installed";
            }
        }
        if (!why && !has_to)
            why = "the new copy is gone";
        else if (!why && has_from && now >= m->copied_ms + NS_BAL_DELETE_WAIT_MS)
            why = "the source kept its copy";
        struct ns_server *f = ns_registry_at(ns, m->from), *t = ns_registry_at(ns, m->to);
        if (!why && has_from) {
            i++;
            continue;
        }
        if (why) {
            bl->moves_failed++;
            log_warn("balance: move of block %" PRIu64 " from %s to %s given up: %s",
                     m->block_id, f ? f->id : "?", t ? t->id : "?", why);
        } else {
            bl->moves_done++;
            bl->bytes_moved += m->bytes;
            log_info("balance: block %" PRIu64 " moved from %s to %s (%" PRIu64 " bytes)",
                     m->block_id, f ? f->id : "?", t ? t->id : "?", m->bytes);
        }
        *m = bl->moves[--bl->nmoves];
    }
}

/* ---- the state the balance plans on ---------------------------------------- */

/* A block that may move: sealed, exactly `replicas` complete copies, all on
 * up, non-draining servers, none bad, primary known, no task on it. */
struct cand {
    uint64_t id, size;
    uint16_t rep[NS_BLOCK_SLOTS]; /* server idx of each holder, NS_NO_SERVER past nrep */
    uint16_t primary;             /* server idx of the primary's copy (never moved) */
    const struct ns_stripe *stripe; /* a shard (rep[0] its holder), or NULL: a block */
    uint8_t index;                /* the shard's index */
};

struct bal {
    struct ns_bal_server *sv; /* by server idx */
    size_t n;
    unsigned *slots;          /* moves each server may still start */
    uint64_t *room;           /* free bytes (heartbeat) less the copies heading there */
    uint8_t *repair;          /* holds lost redundancy or takes part in a repair */
    double mean, band;
    struct cand *c;           /* by size, largest first */
    size_t nc, ccap;
    uint8_t *taken;           /* c[i] is already in the plan */
    size_t *lstart, *lcount;  /* per server: its slice of `list` */
    uint32_t *list;           /* indexes of c held (not as primary) by each server */
    size_t *ord;              /* scratch: eligible servers by fraction */
};

static void bal_free(struct bal *st)
{
    free(st->sv);
    free(st->slots);
    free(st->room);
    free(st->repair);
    free(st->c);
    free(st->taken);
    free(st->lstart);
    free(st->lcount);
    free(st->list);
    free(st->ord);
    memset(st, 0, sizeof(*st));
}

static int cmp_cand(const void *a, const void *b)
{
    const struct cand *x = a, *y = b;
    if (x->size != y->size)
        return x->size > y->size ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Blocks with a running task or one that failed within NS_RETRY_MS (sorted,
 * caller frees); NULL on allocation failure. */
static uint64_t *busy_blocks(const struct ns *ns, uint64_t now, size_t *n)
{
    uint64_t *v = malloc((ns->plan.ntasks + 1) * sizeof(*v));
    *n = 0;
    for (size_t i = 0; v && i < ns->plan.ntasks; i++) {
        const struct ns_task *t = &ns->plan.tasks[i];
        if (t->state == NS_TASK_RUNNING ||
            (t->state == NS_TASK_FAILED && now < t->end_ms + NS_RETRY_MS))
            v[(*n)++] = t->block_id;
    }
    if (v && *n > 1)
        qsort(v, *n, sizeof(*v), ns_cmp_u64);
    return v;
}

static int push_cand(struct bal *st, const struct ns_block *b)
{
    int rc = ARRAY_RESERVE(st->c, st->ccap, st->nc + 1, 256);
    if (rc != 0)
        return rc;
    struct cand *c = &st->c[st->nc++];
    memset(c, 0, sizeof(*c));
    c->id = b->id;
    c->size = b->size;
    c->primary = b->rep[b->primary];
    for (unsigned k = 0; k < NS_BLOCK_SLOTS; k++)
        c->rep[k] = k < b->nrep ? b->rep[k] : NS_NO_SERVER;
    return 0;
}

/* One pass over the block map: used bytes per server, servers holding lost
 * redundancy, and the blocks that may move. */
static int scan_blocks(struct ns *ns, struct bal *st, const uint64_t *busy, size_t nbusy)
{
    for (size_t i = 0; i < ns->blocks.cap; i++) {
        const struct ns_block *b = &ns->blocks.slots[i];
        if (!b->id)
            continue;
        unsigned good = 0, complete = 0;
        for (unsigned k = 0; k < b->nrep; k++) {
            struct ns_server *h = ns_registry_at(ns, b->rep[k]);
            if (!h)
                continue;
            st->sv[h->idx].used += b->rsize[k];
            if (h->up && !h->draining && !ns_bad_has(ns, b->id, h->idx)) {
                good++;
                complete += b->rsize[k] == b->size;
            }
        }
        if (good < ns->meta.replicas)
            for (unsigned k = 0; k < b->nrep; k++)
                if (b->rep[k] < st->n)
                    st->repair[b->rep[k]] = 1;
        if (!b->sealed || b->size == 0 || b->nrep != ns->meta.replicas || good != b->nrep ||
            complete != b->nrep || b->primary == NS_NO_PRIMARY || b->primary >= b->nrep)
            continue;
        if (nbusy && bsearch(&b->id, busy, nbusy, sizeof(*busy), ns_cmp_u64))
            continue;
        if (move_of(ns, b->id))
            continue;
        if (push_cand(st, b) != 0)
            return -ENOMEM;
    }
    return 0;
}

/* The shard files of the used stripes count in their holders' used bytes;
 * every shard of a stripe that may move (ns_ec_movable) and has no move
 * yet is a candidate, listed for its holder only. */
static int scan_shards(struct ns *ns, struct bal *st)
{
    for (size_t i = 0; ns->ec && i < ns->ec->n; i++) {
        const struct ns_stripe *x = &ns->ec->v[i];
        if (!ns_ec_usable(ns, x->block_id))
            continue;
        for (unsigned j = 0; j < (unsigned)(x->k + x->m); j++)
            if (x->holder[j] < st->n)
                st->sv[x->holder[j]].used += x->file_bytes[j];
        if (!ns_ec_movable(ns, x) || move_of(ns, x->block_id))
            continue;
        for (unsigned j = 0; j < (unsigned)(x->k + x->m); j++) {
            if (x->file_bytes[j] == 0 ||
                ARRAY_RESERVE(st->c, st->ccap, st->nc + 1, 256) != 0)
                continue;
            struct cand *c = &st->c[st->nc++];
            memset(c, 0, sizeof(*c));
            c->id = x->block_id;
            c->size = x->file_bytes[j];
            c->stripe = x;
            c->index = (uint8_t)j;
            c->primary = NS_NO_SERVER;
            for (unsigned k = 0; k < NS_BLOCK_SLOTS; k++)
                c->rep[k] = NS_NO_SERVER;
            c->rep[0] = x->holder[j];
        }
    }
    return 0;
}

/* Builds the per-server lists of movable copies (largest first). */
static int build_lists(struct bal *st)
{
    if (st->nc > 1)
        qsort(st->c, st->nc, sizeof(*st->c), cmp_cand);
    st->taken = calloc(st->nc + 1, 1);
    st->lstart = calloc(st->n + 1, sizeof(*st->lstart));
    st->lcount = calloc(st->n + 1, sizeof(*st->lcount));
    st->list = malloc((st->nc * NS_BLOCK_SLOTS + 1) * sizeof(*st->list));
    if (!st->taken || !st->lstart || !st->lcount || !st->list)
        return -ENOMEM;
    for (size_t i = 0; i < st->nc; i++)
        for (unsigned k = 0; k < NS_BLOCK_SLOTS; k++)
            if (st->c[i].rep[k] < st->n && st->c[i].rep[k] != st->c[i].primary)
                st->lcount[st->c[i].rep[k]]++;
    for (size_t s = 1; s < st->n; s++)
        st->lstart[s] = st->lstart[s - 1] + st->lcount[s - 1];
    memset(st->lcount, 0, (st->n + 1) * sizeof(*st->lcount));
    for (size_t i = 0; i < st->nc; i++)
        for (unsigned k = 0; k < NS_BLOCK_SLOTS; k++) {
            uint16_t s = st->c[i].rep[k];
            if (s < st->n && s != st->c[i].primary)
                st->list[st->lstart[s] + st->lcount[s]++] = (uint32_t)i;
        }
    return 0;
}

/* Computes the state: used bytes, eligibility, moves in flight applied, the
 * mean, the band, each server's free move slots and the movable blocks. */
static int bal_build(struct ns *ns, uint64_t now, struct bal *st)
{
    memset(st, 0, sizeof(*st));
    st->n = ns->nservers;
    st->sv = calloc(st->n + 1, sizeof(*st->sv));
    st->slots = calloc(st->n + 1, sizeof(*st->slots));
    st->room = calloc(st->n + 1, sizeof(*st->room));
    st->repair = calloc(st->n + 1, 1);
    st->ord = calloc(st->n + 1, sizeof(*st->ord));
    size_t nbusy = 0;
    uint64_t *busy = busy_blocks(ns, now, &nbusy);
    if (!st->sv || !st->slots || !st->room || !st->repair || !st->ord || !busy) {
        free(busy);
        bal_free(st);
        return -ENOMEM;
    }
    for (size_t i = 0; i < st->n; i++) {
        struct ns_server *s = ns->servers[i];
        st->sv[i].s = s;
        st->sv[i].capacity = s->capacity;
        st->sv[i].eligible = s->up && !s->draining && !s->readonly && s->capacity > 0;
        uint64_t reserve = ns_server_reserve(ns, s);
        st->room[i] = s->free > reserve ? s->free - reserve : 0; /* a move keeps the reserve */
    }
    int rc = scan_blocks(ns, st, busy, nbusy);
    if (rc == 0)
        rc = scan_shards(ns, st);
    free(busy);
    if (rc == 0)
        rc = build_lists(st);
    if (rc != 0) {
        bal_free(st);
        return rc;
    }
    /* Repair copies running: their servers are busy with lost redundancy. */
    for (size_t i = 0; i < ns->plan.ntasks; i++) {
        const struct ns_task *t = &ns->plan.tasks[i];
        if (t->state != NS_TASK_RUNNING ||
            (t->kind != NS_TASK_REPLICATE && t->kind != NS_TASK_EC_REBUILD) ||
            (t->reason && strcmp(t->reason, NS_BAL_REASON) == 0))
            continue;
        if (t->src < st->n)
            st->repair[t->src] = 1;
        if (t->dst < st->n)
            st->repair[t->dst] = 1;
    }
    /* Moves in flight: the target as if it had the copy, the source as if
     * its copy were gone. */
    for (size_t i = 0; i < ns->bal.nmoves; i++) {
        const struct ns_bal_move *m = &ns->bal.moves[i];
        if (m->from < st->n) {
            struct ns_bal_server *f = &st->sv[m->from];
            f->used = f->used > m->bytes ? f->used - m->bytes : 0;
            f->running++;
        }
        if (!m->copied && m->to < st->n) {
            st->room[m->to] = st->room[m->to] > m->bytes ? st->room[m->to] - m->bytes : 0;
            st->sv[m->to].used += m->bytes;
            st->sv[m->to].running++;
        }
    }
    uint64_t used = 0, capacity = 0;
    for (size_t i = 0; i < st->n; i++)
        if (st->sv[i].eligible) {
            used += st->sv[i].used;
            capacity += st->sv[i].capacity;
        }
    st->mean = capacity ? (double)used / (double)capacity : 0.0;
    st->band = (double)ns_setting(ns, NS_SETTING_REBALANCE_BAND) / PCT;
    unsigned mcap = move_cap(ns), tcap = ns_settings_task_cap(ns);
    for (size_t i = 0; i < st->n; i++) {
        struct ns_bal_server *v = &st->sv[i];
        double f = ns_balance_fraction(v);
        v->in_band = !v->eligible || (f >= st->mean - st->band && f <= st->mean + st->band);
        unsigned room = v->s->tasks < tcap ? tcap - v->s->tasks : 0;
        unsigned left = v->running < mcap ? mcap - v->running : 0;
        st->slots[i] = v->eligible && !st->repair[i] ? (room < left ? room : left) : 0;
    }
    return 0;
}

static int all_in_band(const struct bal *st)
{
    for (size_t i = 0; i < st->n; i++)
        if (!st->sv[i].in_band)
            return 0;
    return 1;
}

/* The first movable copy on server s, not taken and not held by t, of at
 * most `limit` bytes (the largest such), or -1. */
static long pick_block(const struct bal *st, size_t s, size_t t, double limit)
{
    const uint32_t *l = st->list + st->lstart[s];
    size_t lo = 0, hi = st->lcount[s];
    while (lo < hi) { /* first entry whose size <= limit (sizes fall) */
        size_t mid = (lo + hi) / 2;
        if ((double)st->c[l[mid]].size > limit)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (size_t i = lo; i < st->lcount[s]; i++) {
        const struct cand *c = &st->c[l[i]];
        if (st->taken[l[i]])
            continue;
        int held = c->stripe && ns_ec_holds(c->stripe, (uint16_t)t);
        for (unsigned k = 0; k < NS_BLOCK_SLOTS && !held; k++)
            held = c->rep[k] == t;
        if (!held)
            return (long)l[i];
    }
    return -1;
}

/* Finds the next move: from the fullest server that can give a block to the
 * emptiest one, while one of the two is out of the band, with a block small
 * enough that the target ends no fuller than the source. Applies it to the
 * state. `use_slots`: only servers with a free move slot take part. Returns
 * 1 with *out filled, or 0 when no move helps. */
static int bal_next(struct bal *st, int use_slots, struct ns_bal_plan *out)
{
    double hi = st->mean + st->band, lo = st->mean - st->band;
    size_t n = 0;
    for (size_t i = 0; i < st->n; i++)
        if (st->sv[i].eligible && (!use_slots || st->slots[i] > 0))
            st->ord[n++] = i;
    for (size_t i = 1; i < n; i++) { /* insertion sort, fullest first */
        size_t x = st->ord[i], j = i;
        double fx = ns_balance_fraction(&st->sv[x]);
        while (j > 0 && ns_balance_fraction(&st->sv[st->ord[j - 1]]) < fx) {
            st->ord[j] = st->ord[j - 1];
            j--;
        }
        st->ord[j] = x;
    }
    for (size_t a = 0; a < n; a++) {
        size_t s = st->ord[a];
        double fs = ns_balance_fraction(&st->sv[s]);
        for (size_t b = n; b-- > a + 1;) {
            size_t t = st->ord[b];
            double ft = ns_balance_fraction(&st->sv[t]);
            if (ft >= fs)
                break;
            if (!(fs > hi || ft < lo))
                continue;
            double limit = (fs - ft) / (1.0 / (double)st->sv[s].capacity +
                                        1.0 / (double)st->sv[t].capacity);
            if (limit > (double)st->room[t])
                limit = (double)st->room[t]; /* the target's disk must hold it */
            long ci = pick_block(st, s, t, limit);
            if (ci < 0)
                continue;
            uint64_t sz = st->c[ci].size;
            st->taken[ci] = 1;
            for (size_t o = 0; st->c[ci].stripe && o < st->nc; o++)
                if (st->c[o].stripe == st->c[ci].stripe)
                    st->taken[o] = 1; /* one shard per stripe at a time */
            st->sv[s].used = st->sv[s].used > sz ? st->sv[s].used - sz : 0;
            st->sv[t].used += sz;
            st->room[t] -= sz;
            if (use_slots) {
                st->slots[s]--;
                st->slots[t]--;
            }
            *out = (struct ns_bal_plan){.block_id = st->c[ci].id, .bytes = sz,
                                        .from = (uint16_t)s, .to = (uint16_t)t,
                                        .shard = st->c[ci].stripe != NULL,
                                        .index = st->c[ci].index};
            return 1;
        }
    }
    return 0;
}

/* ---- the view (ADMIN_REBALANCE, tests) ---------------------------------------- */

int ns_balance_view(struct ns *ns, uint64_t now_ms, struct ns_bal_view *v)
{
    memset(v, 0, sizeof(*v));
    moves_follow(ns, now_ms);
    struct bal st;
    int rc = bal_build(ns, now_ms, &st);
    if (rc != 0)
        return rc;
    v->mean = st.mean;
    v->band = st.band;
    v->balanced = all_in_band(&st);
    v->nservers = st.n;
    v->servers = malloc((st.n + 1) * sizeof(*v->servers));
    v->plan = malloc(NS_BAL_PLAN_MAX * sizeof(*v->plan));
    if (!v->servers || !v->plan) {
        bal_free(&st);
        ns_balance_view_free(v);
        return -ENOMEM;
    }
    memcpy(v->servers, st.sv, st.n * sizeof(*v->servers));
    struct ns_bal_plan p;
    while (bal_next(&st, 0, &p)) {
        if (v->nplan == NS_BAL_PLAN_MAX) {
            v->truncated = 1;
            break;
        }
        v->plan[v->nplan++] = p;
    }
    bal_free(&st);
    return 0;
}

void ns_balance_view_free(struct ns_bal_view *v)
{
    free(v->servers);
    free(v->plan);
    memset(v, 0, sizeof(*v));
}

/* ---- the planner's step ------------------------------------------------------ */

void ns_balance_plan(struct ns *ns, uint64_t now_ms)
{
    if (ns->safe_mode || ns->settling || ns->stopping)
        return;
    moves_follow(ns, now_ms);
    struct bal st;
    if (bal_build(ns, now_ms, &st) != 0)
        return;
    if (all_in_band(&st)) {
        if (ns->bal.logged_out_of_band && ns->bal.nmoves == 0) {
            log_info("balance: every server is within %.0f points of the mean use (%.1f%%)",
                     st.band * PCT, st.mean * PCT);
            ns->bal.logged_out_of_band = 0;
        }
        bal_free(&st);
        return;
    }
    if (!ns->bal.logged_out_of_band) {
        for (size_t i = 0; i < st.n; i++)
            if (!st.sv[i].in_band)
                log_info("balance: %s uses %.1f%%, the mean is %.1f%% (band %.0f points): "
                         "blocks move",
                         st.sv[i].s->id, ns_balance_fraction(&st.sv[i]) * PCT, st.mean * PCT,
                         st.band * PCT);
        ns->bal.logged_out_of_band = 1;
    }
    struct ns_bal_plan p;
    while (bal_next(&st, 1, &p)) {
        if (p.shard) {
            struct ns_server *d = ns_registry_at(ns, p.to);
            uint64_t id = d && (!ns->loop || d->conn)
                              ? ns_ec_start_move(ns, p.block_id, p.index, p.from, p.to,
                                                 NS_BAL_REASON, now_ms)
                              : 0;
            struct ns_bal_move m = {.block_id = p.block_id, .bytes = p.bytes, .task_id = id,
                                    .from = p.from, .to = p.to, .shard = 1, .index = p.index};
            if (id && move_add(ns, &m) != 0)
                log_warn("balance: out of memory following the move of a shard of block "
                         "%" PRIu64, p.block_id);
            continue;
        }
        struct ns_block *b = ns_blocks_get(&ns->blocks, p.block_id);
        struct ns_server *s = ns_registry_at(ns, p.from), *d = ns_registry_at(ns, p.to);
        if (!b || !s || !d || (ns->loop && !d->conn))
            continue;
        uint64_t id = ns_plan_start_copy(ns, b, s, d, NS_BAL_REASON, now_ms);
        if (!id)
            continue;
        struct ns_bal_move m = {.block_id = p.block_id, .bytes = p.bytes, .task_id = id,
                                .from = p.from, .to = p.to};
        if (move_add(ns, &m) != 0)
            log_warn("balance: out of memory following the move of block %" PRIu64,
                     p.block_id);
    }
    bal_free(&st);
}

/* ---- hooks of the planner's extra-replica deletion ----------------------------- */

/* The move of b whose copy is installed on its target (the target holds b,
 * even when moves_follow has not seen it yet), or NULL. */
static const struct ns_bal_move *installed_move(const struct ns *ns, const struct ns_block *b)
{
    const struct ns_bal_move *m = move_of(ns, b->id);
    return m && (m->copied || ns_block_find_rep(b, m->to) >= 0) ? m : NULL;
}

struct ns_server *ns_balance_victim(const struct ns *ns, const struct ns_block *b,
                                    struct ns_server *dflt)
{
    const struct ns_bal_move *m = installed_move(ns, b);
    if (!m)
        return dflt;
    struct ns_server *s = ns_registry_at(ns, m->from);
    int slot = s ? ns_block_find_rep(b, s->idx) : -1;
    if (slot < 0 || b->primary == slot)
        return dflt; /* gone already, or promoted since: the usual rule decides */
    return s->up && s->tasks < ns_settings_task_cap(ns) ? s : NULL;
}

const char *ns_balance_reason(const struct ns *ns, const struct ns_block *b,
                              const struct ns_server *v, const char *dflt)
{
    const struct ns_bal_move *m = installed_move(ns, b);
    return m && m->from == v->idx ? NS_BAL_REASON : dflt;
}

void ns_balance_free(struct ns *ns)
{
    free(ns->bal.moves);
    memset(&ns->bal, 0, sizeof(ns->bal));
}

/* ---- ADMIN_REBALANCE ----------------------------------------------------------- */

static char *server_name(const struct ns *ns, uint16_t idx)
{
    static char unknown[] = "?";
    struct ns_server *s = ns_registry_at(ns, idx);
    return s ? s->id : unknown;
}

/* Fills the answer's server entries from the view (strings borrowed). */
static void fill_servers(const struct ns_bal_view *v, Imgstore__RebalanceServer *ms,
                         Imgstore__RebalanceServer **mp)
{
    for (size_t i = 0; i < v->nservers; i++) {
        const struct ns_bal_server *s = &v->servers[i];
        Imgstore__RebalanceServer *o = &ms[i];
        imgstore__rebalance_server__init(o);
        o->server_id = s->s->id;
        o->used_fraction = ns_balance_fraction(s);
        o->used = s->used;
        o->capacity = s->capacity;
        o->in_band = s->in_band;
        o->target = s->eligible ? (uint64_t)(v->mean * (double)s->capacity) : 0;
        o->eligible = s->eligible;
        o->moves_running = s->running;
        mp[i] = o;
    }
}

void ns_balance_handle(struct ns *ns, struct conn *c, const struct frame_header *h,
        const Imgstore__AdminRebalance *q)
{
    int dry = q->dry_run;
    uint64_t now = ns->loop ? uv_now(ns->loop) : 0;
    if (!dry) {
        log_info("balance: a pass asked for by an operator");
        ns_plan_step(ns, now);
    }
    struct ns_bal_view v;
    int rc = ns_balance_view(ns, now, &v);
    if (rc != 0) {
        conn_reply(c, h, rc, NULL, NULL, 0, NULL);
        return;
    }
    size_t nm = ns->bal.nmoves + v.nplan;
    Imgstore__RebalanceServer *ms = calloc(v.nservers + 1, sizeof(*ms));
    Imgstore__RebalanceServer **msp = calloc(v.nservers + 1, sizeof(*msp));
    Imgstore__RebalanceMove *mv = calloc(nm + 1, sizeof(*mv));
    Imgstore__RebalanceMove **mvp = calloc(nm + 1, sizeof(*mvp));
    if (!ms || !msp || !mv || !mvp) {
        conn_reply(c, h, -ENOMEM, NULL, NULL, 0, NULL);
        goto out;
    }
    fill_servers(&v, ms, msp);
    Imgstore__AdminRebalanceResp r = IMGSTORE__ADMIN_REBALANCE_RESP__INIT;
    for (size_t i = 0; i < nm; i++) {
        Imgstore__RebalanceMove *o = &mv[i];
        imgstore__rebalance_move__init(o);
        if (i < ns->bal.nmoves) {
            const struct ns_bal_move *m = &ns->bal.moves[i];
            o->block_id = m->block_id;
            o->source = server_name(ns, m->from);
            o->target = server_name(ns, m->to);
            o->bytes = m->bytes;
            o->running = 1;
            o->task_id = m->task_id;
            r.bytes_running += m->bytes;
        } else {
            const struct ns_bal_plan *p = &v.plan[i - ns->bal.nmoves];
            o->block_id = p->block_id;
            o->source = server_name(ns, p->from);
            o->target = server_name(ns, p->to);
            o->bytes = p->bytes;
            r.bytes_planned += p->bytes;
        }
        mvp[i] = o;
    }
    r.mean = v.mean;
    r.band = v.band;
    r.n_servers = v.nservers;
    r.servers = msp;
    r.n_moves = nm;
    r.moves = mvp;
    r.balanced = v.balanced;
    r.moves_running = (uint32_t)ns->bal.nmoves;
    r.truncated = v.truncated;
    r.bytes_moved = ns->bal.bytes_moved;
    r.moves_done = ns->bal.moves_done;
    r.moves_failed = ns->bal.moves_failed;
    r.copy_rate = ns_settings_copy_rate(ns);
    r.stuck = !v.balanced && v.nplan == 0 && ns->bal.nmoves == 0;
    conn_reply(c, h, 0, &r.base, NULL, 0, NULL);
out:
    free(ms);
    free(msp);
    free(mv);
    free(mvp);
    ns_balance_view_free(&v);
}
