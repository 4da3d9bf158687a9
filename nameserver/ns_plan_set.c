/* ns_plan_set.c - the planner's part that keeps the replica set of sealed
 * blocks: which holders are in it (b->inset, b->joining, b->ver), telling
 * them (SET_REPLICAS on their sessions), a copy joining the set, and the
 * check of a holder's reported view (ns_plan_check_view, called for every
 * sealed block in a report via ns_hb.c).
 *
 * Split from ns_plan.c (the pass and the task list), which calls it when a
 * copy ends, on failover and to catch up joining copies. Calls the map and
 * the registry, and sends on dataserver sessions (net/conn.h). */
#include "nameserver/ns.h"

#include "net/conn.h"
#include "base/err.h"
#include "base/log.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* The answer of a SET_REPLICAS nobody waits for. */
static void ignore_reply(int status, const struct frame *f, void *arg)
{
    (void)status;
    (void)f;
    (void)arg;
}

void ns_plan_fill_replica(Imgstore__Replica *r, const struct ns_server *s)
{
    imgstore__replica__init(r);
    r->server_id = (char *)s->id;
    r->addr = (char *)s->addr;
    r->http_addr = (char *)s->http_addr;
}

/* Fills reps/rp with b's replica set: the primary first, then the other
 * holders in the set, at most NS_MAX_REPLICAS; slot `without` (a joining
 * copy receiving the list) is left out. Returns the count. */
static size_t set_list(const struct ns *ns, const struct ns_block *b, int without,
                       Imgstore__Replica reps[NS_BLOCK_SLOTS], Imgstore__Replica *rp[NS_BLOCK_SLOTS])
{
    struct ns_server *hs[NS_BLOCK_SLOTS];
    unsigned slot[NS_BLOCK_SLOTS], nh = ns_block_holders(ns, b, hs, slot);
    size_t n = 0;
    for (unsigned k = 0; k < nh && n < NS_MAX_REPLICAS; k++) {
        unsigned i = slot[k];
        if ((b->primary != i && !(b->inset & (1u << i))) || (int)i == without ||
            (b->djwait & (1u << i))) /* held out by the delete journal (ns_delnote.c) */
            continue;
        ns_plan_fill_replica(&reps[n], hs[k]);
        rp[n] = &reps[n];
        n++;
    }
    return n;
}

/* The smallest size reported by a holder in b's set other than `to` and the
 * slot left out; 0 when there is none. */
static uint64_t members_size(const struct ns *ns, const struct ns_block *b,
                             const struct ns_server *to, int without)
{
    uint64_t min = 0;
    int any = 0;
    for (unsigned i = 0; i < b->nrep; i++) {
        struct ns_server *h = ns_registry_at(ns, b->rep[i]);
        int member = b->primary == i || (b->inset & (1u << i));
        if (!h || h == to || !member || (int)i == without || (b->djwait & (1u << i)))
            continue;
        if (!any || b->rsize[i] < min)
            min = b->rsize[i];
        any = 1;
    }
    return min;
}

/* ---- joining the replica set ---------------------------------------------
 *
 * A copy that joins the set of a sealed block (a finished copy as long as
 * the others, by the sizes reported so far) may still lack tombstones: the
 * primary acknowledged deletes to the old members until it got the new set,
 * and the sizes the planner compared may be a heartbeat old. So the joining
 * copy is put in the set the primary and the other members get (from then
 * on every append reaches it, or fails when it is short), while it is told
 * a list without itself: it serves nothing yet, and nothing counts it. The
 * primary answers SET_REPLICAS with its tail (next append offset): every
 * append acknowledged without the joining copy lies below it. A joining
 * copy at least that long is confirmed (told the list with itself); a
 * shorter one is caught up from a member first, then checked again. */

/* The argument of the primary's answer to a set with joining copies. */
struct join_cmd {
    struct ns *ns;
    uint64_t block_id;
    uint32_t ver;
    uint16_t primary; /* server idx */
};

/* Confirms every joining copy of b at least `tail` bytes long. */
static void confirm_joiners(struct ns *ns, struct ns_block *b, uint64_t tail)
{
    for (unsigned i = 0; i < b->nrep; i++) {
        struct ns_server *h = ns_registry_at(ns, b->rep[i]);
        if (!(b->joining & (1u << i)) || !h)
            continue;
        if (b->rsize[i] < tail) {
            log_info("block %" PRIu64 ": %s is short of the primary's tail (%" PRIu64
                     " of %" PRIu64 " bytes): caught up before it joins the replica set",
                     b->id, h->id, b->rsize[i], tail);
            continue;
        }
        b->joining &= (uint8_t)~(1u << i);
        log_info("block %" PRIu64 ": %s joins the replica set (%" PRIu64 " bytes, primary's "
                 "tail %" PRIu64 ")",
                 b->id, h->id, b->rsize[i], tail);
        ns_plan_set_to(ns, b, h);
    }
}

static void join_reply(int status, const struct frame *f, void *arg)
{
    struct join_cmd *c = arg;
    struct ns *ns = c->ns;
    struct ns_block *b = ns->stopping ? NULL : ns_blocks_get(&ns->blocks, c->block_id);
    if (b) {
        b->join_asked = 0;
        int rc;
        Imgstore__SetReplicasResp *m =
            conn_reply_unpack(status, f, &imgstore__set_replicas_resp__descriptor, &rc);
        if (m)
            ns_plan_primary_tail(ns, b, c->primary, c->ver, m->size);
        if (m)
            imgstore__set_replicas_resp__free_unpacked(m, NULL);
        ns->plan.kick = 1;
    }
    free(c);
}

void ns_plan_primary_tail(struct ns *ns, struct ns_block *b, uint16_t primary, uint32_t ver,
                          uint64_t tail)
{
    int slot = ns_block_find_rep(b, primary);
    /* Only an answer to the current set from the current primary. */
    if (b->ver == ver && slot >= 0 && b->primary == slot)
        confirm_joiners(ns, b, tail);
}

void ns_plan_set_to(struct ns *ns, struct ns_block *b, struct ns_server *h)
{
    if (!ns->loop || !h || !h->up || !h->conn)
        return;
    int slot = ns_block_find_rep(b, h->idx);
    int joining = slot >= 0 && (b->joining & (1u << slot));
    Imgstore__Replica reps[NS_BLOCK_SLOTS], *rp[NS_BLOCK_SLOTS];
    Imgstore__SetReplicas m = IMGSTORE__SET_REPLICAS__INIT;
    m.block_id = b->id;
    m.n_replicas = set_list(ns, b, joining ? slot : -1, reps, rp);
    m.replicas = rp;
    m.primary = b->primary != NS_NO_PRIMARY && b->rep[b->primary] == h->idx;
    m.version = b->ver;
    m.members_size = members_size(ns, b, h, joining ? slot : -1);
    if (m.primary && b->joining) {
        /* Its answer carries the tail the joining copies must reach. */
        struct join_cmd *jc = malloc(sizeof(*jc));
        if (!jc)
            return;
        *jc = (struct join_cmd){.ns = ns, .block_id = b->id, .ver = b->ver, .primary = h->idx};
        if (conn_request(h->conn, FT_SET_REPLICAS, &m.base, NULL, 0, NULL, NS_CMD_TIMEOUT_MS,
                         join_reply, jc) != 0)
            free(jc);
        else
            b->join_asked = 1;
        return;
    }
    conn_request(h->conn, FT_SET_REPLICAS, &m.base, NULL, 0, NULL, NS_CMD_TIMEOUT_MS, ignore_reply,
                 NULL);
}

void ns_plan_ask_primary(struct ns *ns, struct ns_block *b)
{
    if (b->joining && !b->join_asked && b->primary != NS_NO_PRIMARY)
        ns_plan_set_to(ns, b, ns_registry_at(ns, b->rep[b->primary]));
}

void ns_plan_send_set(struct ns *ns, struct ns_block *b)
{
    b->ver++; /* a new set: copies left out of it become copies of an old one */
    for (unsigned i = 0; i < b->nrep; i++)
        ns_plan_set_to(ns, b, ns_registry_at(ns, b->rep[i]));
}

void ns_plan_check_view(struct ns *ns, struct ns_block *b, struct ns_server *s,
                        int claims_primary, char **ids, size_t nids)
{
    if (!ns->loop || ns->safe_mode || ns->settling || !s->up)
        return;
    int slot = ns_block_find_rep(b, s->idx);
    if (slot < 0)
        return;
    int is_primary = b->primary == slot;
    int differs = (claims_primary != 0) != is_primary;
    if (claims_primary && !is_primary)
        log_warn("block %" PRIu64 ": %s reports itself primary, but the primary is now %s: "
                 "demoting it",
                 b->id, s->id,
                 b->primary != NS_NO_PRIMARY && ns_registry_at(ns, b->rep[b->primary])
                     ? ns_registry_at(ns, b->rep[b->primary])->id
                     : "?");
    Imgstore__Replica reps[NS_BLOCK_SLOTS], *rp[NS_BLOCK_SLOTS];
    size_t n = set_list(ns, b, (b->joining & (1u << slot)) ? slot : -1, reps, rp);
    differs |= n != nids;
    for (size_t i = 0; !differs && i < n; i++)
        differs = !ids[i] || strcmp(ids[i], rp[i]->server_id) != 0;
    if (differs)
        ns_plan_set_to(ns, b, s);
}
