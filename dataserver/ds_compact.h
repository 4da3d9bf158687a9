/* ds_compact.h - online compaction of a sealed block (docs/dataserver.md).
 *
 * The nameserver sends COMPACT_BLOCK to every replica of a sealed block whose
 * deleted bytes passed its threshold. Each replica rewrites the block the
 * same way: the superblock, then every live record in ascending seq order,
 * byte for byte (seq, cookie, ctime, CRC unchanged: every live file keeps
 * its name), no deleted record and no tombstone. Identical inputs therefore
 * give byte-identical outputs on every replica (docs/storage.md). The
 * new file <id>.blk.compact gets a fresh index, is fdatasync'd, renamed over
 * <id>.blk (folder fsync'd, block_swap_file) and the in-memory block switches
 * to it; reads in flight finish on the old descriptor (block_fd_get).
 *
 * Deletes during compaction are refused with IMG_EUNAVAIL (retry later): from
 * COMPACT_BLOCK until the nameserver's release (sent when every replica has
 * answered) or DS_COMPACT_HOLD_MAX_MS, so no tombstone can land on one
 * replica's old layout and another's new one. A hold whose compaction has
 * ended is released when another nameserver session starts leading (a
 * restarted or new leader never heard of the task and sends no release:
 * deletes would be refused for minutes); at worst the replicas then differ
 * and the nameserver replaces one, as after a failed compaction. Reads of the block go on
 * throughout. Bytes read are throttled by the copies' token bucket
 * (ds_throttle.h). The rewrite itself (plan, output, record checks) is the
 * storage engine's (compact.h); this module schedules it, paces it and
 * answers the nameserver. */
#ifndef DS_DS_COMPACT_H
#define DS_DS_COMPACT_H

#include "dataserver/block.h"
#include "dataserver/compact.h"
#include "dataserver/ds_req.h"

#include <stddef.h>
#include <stdint.h>

#define DS_COMPACT_HOLD_MAX_MS (5 * 60 * 1000) /* deletes refused at most this long */
#define DS_COMPACT_MAX_ACTIVE 2                /* compactions at once; more: IMG_EUNAVAIL */

/* Returns non-zero when deletes of b must be refused now (compaction running
 * or its hold not released). */
int ds_compact_busy(struct ds *ds, const struct block *b);

/* Releases the holds of compactions that have ended (not of running ones):
 * called when a new nameserver session starts leading. */
void ds_compact_release_holds(struct ds *ds);

/* Handler of COMPACT_BLOCK (dispatch table, ds_req.h): starts a compaction
 * answered when it ends, or releases the hold (release set); answers r
 * exactly once. */
void ds_compact_block(struct ds_req *r, const struct frame *f);

/* Stops every compaction (the temporary files are removed; jobs with I/O in
 * flight end in their callbacks, their answers dropped). Call before
 * store_close with ds->stopping set. */
void ds_compact_stop(struct ds *ds);

#endif
