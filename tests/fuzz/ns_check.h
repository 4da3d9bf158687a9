/* ns_check.h - the block map invariants both nameserver harnesses check
 * after every step (fuzz_ns_heartbeat.c, fuzz_ns_rpc.c). A static function
 * in a header rather than in util.c: util.c is linked into every harness,
 * and the dataserver ones do not link the nameserver. */
#ifndef IMG_FUZZ_NS_CHECK_H
#define IMG_FUZZ_NS_CHECK_H

#include "nameserver/ns.h"
#include "tests/fuzz/fuzz.h"

/* Checks that each block of ns's map has at most NS_BLOCK_SLOTS distinct
 * holders, all registered servers, a primary slot inside them, and is found
 * by its id; that each server's index is its place; and that each server's
 * block count is the number of blocks listing it. Aborts when broken. */
static inline void fuzz_check_block_map(const struct ns *ns)
{
    uint32_t *count = calloc(ns->nservers + 1, sizeof(*count));
    FUZZ_CHECK(count != NULL);
    for (size_t i = 0; i < ns->blocks.cap; i++) {
        const struct ns_block *b = &ns->blocks.slots[i];
        if (b->id == 0)
            continue;
        FUZZ_CHECK(b->nrep <= NS_BLOCK_SLOTS);
        FUZZ_CHECK(b->primary == NS_NO_PRIMARY || b->primary < b->nrep);
        for (unsigned r = 0; r < b->nrep; r++) {
            FUZZ_CHECK(b->rep[r] < ns->nservers);
            for (unsigned q = 0; q < r; q++)
                FUZZ_CHECK(b->rep[q] != b->rep[r]);
            count[b->rep[r]]++;
        }
        FUZZ_CHECK(ns_blocks_get(&ns->blocks, b->id) == b);
    }
    for (size_t i = 0; i < ns->nservers; i++) {
        FUZZ_CHECK(ns->servers[i]->idx == i);
        FUZZ_CHECK(ns->servers[i]->nblocks == count[i]);
    }
    free(count);
}

#endif
