/* ds_throttle.h - the background token bucket of a dataserver.
 *
 * Every background copy (ds_copy.c) and compaction (ds_compact.c) of this
 * server takes from one bucket, so together they never move more than the
 * copy rate told by the nameserver (ReplicateBlock.rate_bytes_per_s;
 * DS_THROTTLE_DEFAULT_RATE until then) however many run. The bucket holds at
 * most BUCKET_BURST_MS of the rate; it may go into debt by one request, and
 * nothing is taken while it is in debt. Loop thread only; the state hangs off
 * ds->throttle, allocated on first use. */
#ifndef DS_DS_THROTTLE_H
#define DS_DS_THROTTLE_H

#include "dataserver/ds.h"

#include <stdint.h>

#define DS_THROTTLE_DEFAULT_RATE (50ull * 1000 * 1000) /* bytes/s until told */

/* Takes `len` bytes and returns 0 when they may be moved now, else the
 * milliseconds to wait before asking again (nothing taken). Out of memory
 * for the state: always 1 (wait and ask again). */
uint64_t ds_throttle_take(struct ds *ds, uint32_t len);

/* Gives back `bytes` taken but not moved (a chunk answered short). */
void ds_throttle_refund(struct ds *ds, double bytes);

/* Puts `bytes_per_s` in force (not 0). */
void ds_throttle_set_rate(struct ds *ds, uint64_t bytes_per_s);

#endif
