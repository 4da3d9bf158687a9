/* ns_blocks.c - the block map: block id -> the servers holding a replica,
 * which of them is primary, sealed flag, size, live file count and deleted
 * bytes. Never anything per file.
 *
 * It is soft state, rebuilt only from dataserver block reports: a full report
 * replaces everything one server holds, an incremental one updates the listed
 * blocks and drops `removed_blocks`. Replicas on a down server stay in the map
 * (they count as down replicas) until that server reports again.
 *
 * Storage is one open-addressing hash table with linear probing and
 * backward-shift deletion: 96 bytes per slot, load kept under 70 %.
 *
 * The map decides nothing: applying a report only records, per entry, what
 * the modules above must act on (struct ns_block_change: a stale unsealed
 * copy, a corrupt copy, the reporter's view of a sealed block's set, an open
 * block for the pool); ns_hb.c hands that to the planner, the bad list and
 * the pool. Calls only ns_meta.c (block ids), ns_bad.c (good replicas) and
 * the delete journal (ns_dj_drop_block when a block's last holder deleted it).
 *
 * Replica-set versions: every change of a sealed block's set the nameserver
 * makes (ns_plan.c) bumps b->ver and is sent with SET_REPLICAS; dataservers
 * save it and report it. After a restart the nameserver learns the highest
 * version from the reports, so a returning copy of an older set (an old
 * primary failed over while it was down) is recognised whatever the order of
 * the reports and whatever its size, and never chosen over the newer one.
 * A member that leaves on its own (its report drops the copy) also bumps
 * b->ver: a set's members change only with its version. */
#include "nameserver/ns.h"

#include "base/array.h"
#include "base/err.h"
#include "base/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(sizeof(struct ns_block) == 96, "keep the per-block footprint small");

#define TABLE_MIN_CAP 1024
#define LOAD_NUM 7 /* grow when count / cap would exceed LOAD_NUM / LOAD_DEN */
#define LOAD_DEN 10

static size_t home_slot(uint64_t id, size_t cap)
{
    uint64_t h = id * 0x9E3779B97F4A7C15ull; /* Fibonacci hashing */
    h ^= h >> 29;
    return (size_t)h & (cap - 1);
}

struct ns_block *ns_blocks_get(const struct ns_blocks *t, uint64_t id)
{
    if (!t->cap || id == 0)
        return NULL;
    size_t mask = t->cap - 1;
    for (size_t i = home_slot(id, t->cap);; i = (i + 1) & mask) {
        if (t->slots[i].id == id)
            return &t->slots[i];
        if (t->slots[i].id == 0)
            return NULL;
    }
}

static int table_grow(struct ns_blocks *t)
{
    size_t ncap = t->cap ? t->cap * 2 : TABLE_MIN_CAP;
    struct ns_block *n = calloc(ncap, sizeof(*n));
    if (!n)
        return -ENOMEM;
    for (size_t i = 0; i < t->cap; i++) {
        if (!t->slots[i].id)
            continue;
        size_t j = home_slot(t->slots[i].id, ncap);
        while (n[j].id)
            j = (j + 1) & (ncap - 1);
        n[j] = t->slots[i];
    }
    free(t->slots);
    t->slots = n;
    t->cap = ncap;
    return 0;
}

struct ns_block *ns_blocks_put(struct ns_blocks *t, uint64_t id)
{
    if (id == 0)
        return NULL;
    struct ns_block *b = ns_blocks_get(t, id);
    if (b)
        return b;
    if ((t->count + 1) * LOAD_DEN > t->cap * LOAD_NUM && table_grow(t) != 0)
        return NULL;
    size_t i = home_slot(id, t->cap);
    while (t->slots[i].id)
        i = (i + 1) & (t->cap - 1);
    b = &t->slots[i];
    memset(b, 0, sizeof(*b));
    b->id = id;
    b->primary = NS_NO_PRIMARY;
    t->count++;
    return b;
}

void ns_blocks_del(struct ns_blocks *t, uint64_t id)
{
    struct ns_block *b = ns_blocks_get(t, id);
    if (!b)
        return;
    size_t mask = t->cap - 1;
    size_t i = (size_t)(b - t->slots);
    for (size_t j = (i + 1) & mask; t->slots[j].id; j = (j + 1) & mask) {
        size_t k = home_slot(t->slots[j].id, t->cap);
        /* Move j back into the hole at i unless its home lies in (i, j]. */
        int stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
        if (!stays) {
            t->slots[i] = t->slots[j];
            i = j;
        }
    }
    memset(&t->slots[i], 0, sizeof(t->slots[i]));
    t->count--;
}

void ns_blocks_free(struct ns_blocks *t)
{
    free(t->slots);
    memset(t, 0, sizeof(*t));
}

int ns_block_find_rep(const struct ns_block *b, uint16_t sidx)
{
    for (unsigned i = 0; i < b->nrep; i++)
        if (b->rep[i] == sidx)
            return (int)i;
    return -1;
}

int ns_block_add_rep(struct ns *ns, struct ns_block *b, struct ns_server *s)
{
    int slot = ns_block_find_rep(b, s->idx);
    if (slot >= 0)
        return slot;
    if (b->nrep >= NS_BLOCK_SLOTS)
        return -ENOSPC;
    b->rep[b->nrep] = s->idx;
    b->rsize[b->nrep] = 0;
    b->rver[b->nrep] = 0;
    b->inset &= (uint8_t)~(1u << b->nrep);
    b->joining &= (uint8_t)~(1u << b->nrep);
    b->djwait &= (uint8_t)~(1u << b->nrep) & 0xfu;
    s->nblocks++;
    return b->nrep++;
}

/* Removes server s from block `id`; drops the block when no holder is left. */
static void block_remove_rep(struct ns *ns, uint64_t id, struct ns_server *s)
{
    struct ns_block *b = ns_blocks_get(&ns->blocks, id);
    if (!b)
        return;
    int slot = ns_block_find_rep(b, s->idx);
    if (slot < 0)
        return;
    int member = (b->inset >> slot) & 1;
    memmove(&b->rep[slot], &b->rep[slot + 1], (size_t)(b->nrep - slot - 1) * sizeof(b->rep[0]));
    memmove(&b->rsize[slot], &b->rsize[slot + 1],
            (size_t)(b->nrep - slot - 1) * sizeof(b->rsize[0]));
    memmove(&b->rver[slot], &b->rver[slot + 1],
            (size_t)(b->nrep - slot - 1) * sizeof(b->rver[0]));
    /* Slots above `slot` move down one: so do their replica-set bits. */
    uint8_t low = (uint8_t)(b->inset & ((1u << slot) - 1));
    b->inset = (uint8_t)(low | ((b->inset >> (slot + 1)) << slot));
    low = (uint8_t)(b->joining & ((1u << slot) - 1));
    b->joining = (uint8_t)(low | ((b->joining >> (slot + 1)) << slot));
    low = (uint8_t)(b->djwait & ((1u << slot) - 1));
    b->djwait = (uint8_t)(low | ((b->djwait >> (slot + 1)) << slot)) & 0xfu;
    b->behind = 0;
    b->nrep--;
    if (b->primary == slot)
        b->primary = NS_NO_PRIMARY;
    else if (b->primary != NS_NO_PRIMARY && b->primary > slot)
        b->primary--;
    if (s->nblocks)
        s->nblocks--;
    if (member && b->nrep > 0) {
        /* A member left the set on its own (it dropped its copy: a failed
         * disk). The set the others were told is not the set any more: it
         * takes a new version now, so no later SET_REPLICAS can tell them
         * the smaller set under the old version. A copy of that version
         * coming back (the disk back, the server restarted) would otherwise
         * still list itself in a set of the current version and count as a
         * member, without the deletes acknowledged meanwhile (journaled
         * while the set was down to one copy). The planner announces it. */
        b->ver++;
        b->set_shrunk = 1;
    }
    if (b->nrep == 0) {
        ns_blocks_del(&ns->blocks, id);
        ns_dj_drop_block(&ns->dj, id); /* its last holder deleted it */
    }
}

int ns_block_is_old(const struct ns_block *b, unsigned i)
{
    return i < b->nrep && b->rver[i] < b->ver && !(b->inset & (1u << i));
}

int ns_block_is_unready(const struct ns_block *b, unsigned i)
{
    return ns_block_is_old(b, i) ||
           (i < b->nrep && ((b->joining & (1u << i)) || (b->djwait & (1u << i))));
}

unsigned ns_block_good_reps(const struct ns *ns, const struct ns_block *b)
{
    unsigned n = 0;
    for (unsigned i = 0; i < b->nrep; i++)
        if (b->rep[i] < ns->nservers && ns->servers[b->rep[i]]->up && !ns_block_is_unready(b, i) &&
            !ns_bad_has(ns, b->id, b->rep[i]))
            n++;
    return n;
}

unsigned ns_block_holders(const struct ns *ns, const struct ns_block *b,
                          struct ns_server *hs[NS_BLOCK_SLOTS], unsigned slot[NS_BLOCK_SLOTS])
{
    unsigned n = 0;
    for (unsigned pass = 0; pass < 2; pass++)
        for (unsigned i = 0; i < b->nrep; i++) {
            if ((pass == 0) != (b->primary == i) || b->rep[i] >= ns->nservers)
                continue;
            hs[n] = ns->servers[b->rep[i]];
            slot[n++] = i;
        }
    return n;
}

unsigned ns_block_up_reps(const struct ns *ns, const struct ns_block *b)
{
    unsigned n = 0;
    for (unsigned i = 0; i < b->nrep; i++)
        if (b->rep[i] < ns->nservers && ns->servers[b->rep[i]]->up)
            n++;
    return n;
}

/* Returns non-zero when the replica list of bi names server `id`. */
static int lists(const Imgstore__BlockInfo *bi, const char *id)
{
    for (size_t i = 0; i < bi->n_replicas; i++)
        if (bi->replicas[i] && strcmp(bi->replicas[i], id) == 0)
            return 1;
    return 0;
}

/* Appends a zeroed record for block `id` to ch. Returns it, or NULL. */
static struct ns_block_change *change_add(struct ns_block_changes *ch, uint64_t id)
{
    if (ARRAY_RESERVE(ch->v, ch->cap, ch->n + 1, 16) != 0)
        return NULL;
    struct ns_block_change *c = &ch->v[ch->n++];
    memset(c, 0, sizeof(*c));
    c->block_id = id;
    return c;
}

void ns_block_changes_free(struct ns_block_changes *ch)
{
    free(ch->v);
    memset(ch, 0, sizeof(*ch));
}

/* Applies one BlockInfo from s, recording what the modules above must act on
 * in ch. Returns 0, 1 when the entry was skipped, or a negative error. */
static int apply_block(struct ns *ns, struct ns_server *s, const Imgstore__BlockInfo *bi,
                       struct ns_block_changes *ch)
{
    if (!bi || bi->block_id == 0 || bi->block_id > NS_MAX_BLOCK_ID)
        return 1;
    int rc = ns_meta_observe_id(&ns->meta, bi->block_id);
    if (rc)
        return rc;
    struct ns_block *b = ns_blocks_put(&ns->blocks, bi->block_id);
    if (!b)
        return -ENOMEM;
    int slot = ns_block_add_rep(ns, b, s);
    if (slot < 0) {
        log_warn("block %llu: more than %d holders, ignoring %s", (unsigned long long)b->id,
                 NS_BLOCK_SLOTS, s->id);
        return 1;
    }
    struct ns_block_change *chg = change_add(ch, b->id);
    if (!chg)
        return -ENOMEM;
    b->rver[slot] = bi->set_version;
    if (bi->set_version > b->ver) {
        /* A newer set than we knew (we restarted): the set we kept is of an
         * older one; the planner rebuilds it from current copies. */
        if (b->ver || b->inset)
            log_info("block %llu: %s reports replica set version %u (we knew %u)",
                     (unsigned long long)b->id, s->id, bi->set_version, b->ver);
        b->ver = bi->set_version;
        if (b->sealed)
            b->inset = 0;
        b->joining = 0;
        if (b->primary != NS_NO_PRIMARY && b->primary != slot && b->sealed)
            b->primary = NS_NO_PRIMARY;
    }
    int old = ns_block_is_old(b, (unsigned)slot);
    /* Of a sealed block, the primary is the nameserver's choice (failover,
     * ns_plan.c): a returning old primary does not take the role back while
     * the chosen one is up; ns_plan_check_view demotes it. A copy of an
     * older set never takes it. */
    struct ns_server *cur = b->primary != NS_NO_PRIMARY && b->primary != slot &&
                                    b->rep[b->primary] < ns->nservers
                                ? ns->servers[b->rep[b->primary]]
                                : NULL;
    int keep_cur = b->sealed && cur && cur->up;
    if (old && b->primary == slot)
        b->primary = NS_NO_PRIMARY;
    if (bi->primary && !keep_cur && !old)
        b->primary = (uint8_t)slot;
    else if (!bi->primary && b->primary == slot && !b->sealed)
        b->primary = NS_NO_PRIMARY;
    if (b->sealed && !bi->sealed && !bi->corrupt)
        chg->stale_unsealed = 1; /* a stale copy must not take writes */
    if (bi->sealed || bi->corrupt)
        b->sealed = 1;
    chg->corrupt = bi->corrupt != 0;
    b->rsize[slot] = bi->size;
    if (!b->sealed)
        b->inset |= (uint8_t)(1u << slot); /* writable: the set CREATE_BLOCK gave */
    else if (!old && bi->set_version == b->ver && !(b->joining & (1u << slot)) &&
             lists(bi, s->id))
        /* It was told the current set with itself in it: a member (this
         * keeps the set across our restart; a joining copy is told a list
         * without itself until it is confirmed, so it rejoins by the
         * planner's check). */
        b->inset |= (uint8_t)(1u << slot);
    if (!old && (bi->size >= b->size || b->primary == slot)) {
        b->file_count = bi->file_count;
        b->deleted_bytes = bi->deleted_bytes;
    }
    b->size = 0;
    for (unsigned i = 0; i < b->nrep; i++)
        if (b->rsize[i] > b->size && !ns_block_is_old(b, i))
            b->size = b->rsize[i];
    chg->claims_primary = bi->primary != 0;
    chg->ids = bi->replicas;
    chg->nids = bi->n_replicas;
    return 0;
}

/* Collects the ids of every block s holds. Caller frees *out. */
static int held_by(struct ns *ns, struct ns_server *s, uint64_t **out, size_t *n)
{
    size_t cnt = 0, cap = s->nblocks + 1;
    uint64_t *ids = malloc(cap * sizeof(*ids));
    if (!ids)
        return -ENOMEM;
    for (size_t i = 0; i < ns->blocks.cap && cnt < cap; i++) {
        const struct ns_block *b = &ns->blocks.slots[i];
        if (b->id && ns_block_find_rep(b, s->idx) >= 0)
            ids[cnt++] = b->id;
    }
    *out = ids;
    *n = cnt;
    return 0;
}

/* Full report: s now holds exactly the listed blocks. */
static int apply_full(struct ns *ns, struct ns_server *s, const Imgstore__Heartbeat *hb,
                      size_t *skipped, struct ns_block_changes *ch)
{
    uint64_t *old = NULL, *listed = NULL;
    size_t nold = 0, nlisted = 0;
    int rc = held_by(ns, s, &old, &nold);
    if (rc)
        goto out;
    listed = malloc((hb->n_blocks + 1) * sizeof(*listed));
    if (!listed) {
        rc = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < hb->n_blocks; i++) {
        rc = apply_block(ns, s, hb->blocks[i], ch);
        if (rc < 0)
            goto out;
        if (rc == 1)
            (*skipped)++;
        else
            listed[nlisted++] = hb->blocks[i]->block_id;
    }
    rc = 0;
    if (nlisted > 1)
        qsort(listed, nlisted, sizeof(*listed), ns_cmp_u64);
    for (size_t i = 0; i < nold; i++)
        if (!nlisted || !bsearch(&old[i], listed, nlisted, sizeof(*listed), ns_cmp_u64))
            block_remove_rep(ns, old[i], s);
out:
    free(old);
    free(listed);
    return rc;
}

int ns_blocks_apply_report(struct ns *ns, struct ns_server *s, const Imgstore__Heartbeat *hb,
                           size_t *skipped, struct ns_block_changes *ch)
{
    size_t dummy = 0;
    if (!skipped)
        skipped = &dummy;
    if (hb->full_report)
        return apply_full(ns, s, hb, skipped, ch);
    for (size_t i = 0; i < hb->n_blocks; i++) {
        int rc = apply_block(ns, s, hb->blocks[i], ch);
        if (rc < 0)
            return rc;
        if (rc == 1)
            (*skipped)++;
    }
    for (size_t i = 0; i < hb->n_removed_blocks; i++)
        block_remove_rep(ns, hb->removed_blocks[i], s);
    return 0;
}

struct ns_block *ns_blocks_add_created(struct ns *ns, uint64_t id, struct ns_server *const *reps,
                                       unsigned n)
{
    struct ns_block *b = ns_blocks_put(&ns->blocks, id);
    if (!b)
        return NULL;
    for (unsigned i = 0; i < n; i++) {
        int slot = ns_block_add_rep(ns, b, reps[i]);
        if (i == 0 && slot >= 0)
            b->primary = (uint8_t)slot;
        if (slot >= 0)
            b->inset |= (uint8_t)(1u << slot);
    }
    return b;
}

void ns_block_remove_rep(struct ns *ns, uint64_t id, struct ns_server *s)
{
    block_remove_rep(ns, id, s);
}
