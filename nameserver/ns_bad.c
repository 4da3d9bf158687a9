/* ns_bad.c - the list of bad replicas: copies known bad (a block report
 * marks its copy corrupt, a compaction result or a repair's VERIFY
 * disagrees). The planner counts them as lost, copies the block from a good
 * replica, then deletes them.
 *
 * A data module beside the block map: it reads the map and the registry (for
 * log lines) and sets ns->plan.kick so the planner acts soon; it calls no
 * policy module. */
#include "nameserver/ns.h"

#include "base/array.h"
#include "base/log.h"

#include <inttypes.h>
#include <stdlib.h>

int ns_bad_has(const struct ns *ns, uint64_t block_id, uint16_t server)
{
    for (size_t i = 0; i < ns->nbad; i++)
        if (ns->bad[i].block_id == block_id && ns->bad[i].server == server)
            return 1;
    return 0;
}

void ns_bad_mark(struct ns *ns, uint64_t block_id, uint16_t server, const char *why)
{
    if (ns_bad_has(ns, block_id, server))
        return;
    if (ARRAY_RESERVE(ns->bad, ns->bad_cap, ns->nbad + 1, 16) != 0)
        return;
    ns->bad[ns->nbad++] = (struct ns_bad){.block_id = block_id, .server = server};
    log_warn("block %" PRIu64 ": the copy on %s is bad (%s); it will be replaced from a good "
             "replica",
             block_id, server < ns->nservers ? ns->servers[server]->id : "?", why);
    ns->plan.kick = 1;
}

void ns_bad_prune(struct ns *ns)
{
    size_t k = 0;
    for (size_t i = 0; i < ns->nbad; i++) {
        const struct ns_block *b = ns_blocks_get(&ns->blocks, ns->bad[i].block_id);
        if (b && ns_block_find_rep(b, ns->bad[i].server) >= 0)
            ns->bad[k++] = ns->bad[i];
    }
    ns->nbad = k;
}

void ns_bad_free(struct ns *ns)
{
    free(ns->bad);
    ns->bad = NULL;
    ns->nbad = ns->bad_cap = 0;
}
