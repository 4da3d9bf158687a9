/* replicas.h - the one rule for a block's replica list in a nameserver
 * answer.
 *
 * LOOKUP (BlockLocation) and ALLOC_WRITE (WritableBlock) answer with a
 * block's replicas, primary first (a LOOKUP lists the primary first only
 * when it is up: docs/protocol.md). The client library (client/cache.c,
 * client/imgstore.c) and the dataserver's cluster client
 * (dataserver/ds_nsclient.c) both turn such a list into the addresses they
 * send requests to, by this rule:
 *
 *   - a replica whose address is missing or not HOST:PORT (proto/addr.h) is
 *     skipped; at most `max` replicas are kept, in the answer's order, so
 *     the primary stays first;
 *   - for reading (a LOOKUP answer), a bad primary is skipped like any other
 *     replica: the others still serve the block's files;
 *   - for writing (an ALLOC_WRITE answer), WRITE goes to the first address,
 *     which must be the primary: a block whose primary is unusable is
 *     refused as a whole (the uploader takes another block);
 *   - a list with no usable replica is refused.
 *
 * Calls proto/addr.c only; the answer itself is protobuf-c's. */
#ifndef IMG_REPLICAS_H
#define IMG_REPLICAS_H

#include "proto/imgstore.pb-c.h"

#include <stddef.h>

/* What the addresses will be used for. */
enum replicas_use {
    REPLICAS_READ,  /* READ/STAT on any replica, DELETE on the first */
    REPLICAS_WRITE, /* WRITE on the first, which must be the primary */
};

/* Copies the usable addresses of the replica list r[0..n) (borrowed; r may
 * be NULL when n is 0, entries may be NULL) into `max` rows of `stride`
 * bytes at addr (stride >= ADDR_MAX), by the rule above. Returns the number
 * of rows filled (1..max), or IMG_EPROTO when the list is refused. */
int replicas_addrs(Imgstore__Replica *const *r, size_t n, enum replicas_use use, char *addr,
                   size_t max, size_t stride);

#endif
