/* ns_hb.c - what a heartbeat's block report sets off beyond the block map.
 *
 * ns_blocks.c applies the report to the map and returns what changed, one
 * record per entry (struct ns_block_change); this module hands each record
 * to the module that acts on it, in report order:
 *   a stale unsealed copy of a sealed block  -> ns_plan_seal_on (planner)
 *   a copy reported corrupt                  -> ns_bad_mark (bad list)
 *   a copy its stripe supersedes (encoded)  -> ns_ec_stale_copy (deleted)
 *   a sealed block: the reporter's view      -> ns_plan_check_view (planner)
 *   an open (unsealed) block                 -> ns_pool_add (pool)
 * It sits above the map and below ns_rpc.c's heartbeat handler; works
 * without a loop (unit tests, fuzz_ns_heartbeat). Calls ns_blocks.c,
 * ns_bad.c, ns_plan*.c, ns_pool.c, ns_ec.c and ns_delnote.c (the delete
 * journal's gate). */
#include "nameserver/ns.h"
#include "nameserver/ns_delnote.h"
#include "nameserver/ns_ec.h"

#include <errno.h>

/* Hands one record to the planner, the bad list and the pool. Returns 0 or
 * -ENOMEM (the pool could not grow). */
static int hand_over(struct ns *ns, struct ns_server *s, const struct ns_block_change *c)
{
    if (c->stale_unsealed)
        ns_plan_seal_on(ns, c->block_id, s);
    if (c->corrupt)
        ns_bad_mark(ns, c->block_id, s->idx, "it reports a bad record");
    struct ns_block *b = ns_blocks_get(&ns->blocks, c->block_id);
    if (!b)
        return 0; /* gone since (its last holder left in the same report) */
    if (b->sealed && ns->ec && ns_ec_stale_copy(ns, b, s))
        return 0; /* a copy its stripe supersedes: deleted before it serves */
    ns_delnote_gate(ns, b, s); /* before its view is checked: a held-out copy is told so */
    if (b->sealed)
        ns_plan_check_view(ns, b, s, c->claims_primary, c->ids, c->nids);
    else if (ns_pool_add(ns, b) != 0)
        return -ENOMEM;
    return 0;
}

int ns_hb_apply_blocks(struct ns *ns, struct ns_server *s, const Imgstore__Heartbeat *hb,
                       size_t *skipped)
{
    struct ns_block_changes ch = {0};
    int rc = ns_blocks_apply_report(ns, s, hb, skipped, &ch);
    for (size_t i = 0; i < ch.n; i++) {
        int hrc = hand_over(ns, s, &ch.v[i]);
        if (hrc && !rc)
            rc = hrc;
    }
    ns_block_changes_free(&ch);
    return rc;
}
