/* ds_compact.h - online compaction of a sealed block (docs/dataserver.md).
 *
 * The nameserver sends COMPACT_BLOCK to every replica of a sealed block whose
 * deleted bytes passed its threshold. Each replica rewrites the block the
 * same way: the superblock, then every live record in ascending seq order,
 * byte for byte (seq, cookie, ctime, CRC unchanged: every live file keeps
 * its name), no deleted record and no tombstone. Identical inputs therefore
 * give byte-identical outputs on every replica (DESIGN.md invariant 5). The
 * new file <id>.blk.compact gets a fresh index, is fdatasync'd, renamed over
 * <id>.blk (folder fsync'd, block_swap_file) and the in-memory block switches
 * to it; reads in flight finish on the old descriptor (block_fd_get).
 *
 * Deletes during compaction are refused with IMG_EUNAVAIL (retry later): from
 * COMPACT_BLOCK until the nameserver's release (sent when every replica has
 * answered) or DS_COMPACT_HOLD_MAX_MS, so no tombstone can land on one
 * replica's old layout and another's new one. Reads of the block go on
 * throughout. Bytes read are throttled by the copies' token bucket. */
#ifndef DS_DS_COMPACT_H
#define DS_DS_COMPACT_H

#include "dataserver/block.h"
#include "dataserver/ds.h"

#include <stddef.h>
#include <stdint.h>

#define DS_COMPACT_SUFFIX ".blk.compact"
#define DS_COMPACT_HOLD_MAX_MS (5 * 60 * 1000) /* deletes refused at most this long */
#define DS_COMPACT_MAX_ACTIVE 2                /* compactions at once; more: IMG_EUNAVAIL */

/* The deterministic plan of a compaction: the live seqs of b in ascending
 * order (*seqs malloc'd, owned by the caller) and the size of the output.
 * Returns 0 or -ENOMEM. */
int ds_compact_plan(const struct block *b, uint32_t **seqs, size_t *n, uint64_t *new_size);

/* Compacts b synchronously (start-up tools and unit tests; the server uses
 * the asynchronous path of COMPACT_BLOCK). Same output and swap as the
 * online path. Returns 0 with *crc the CRC32C of the new file, IMG_ECORRUPT
 * when a live record fails its check (nothing changed), or an error of the
 * swap (the block keeps its old file). */
int ds_compact_sync(struct block *b, uint32_t *crc);

/* Returns non-zero when deletes of b must be refused now (compaction running
 * or its hold not released). */
int ds_compact_busy(struct ds *ds, const struct block *b);

/* Handles COMPACT_BLOCK on the nameserver session. Returns 1 when the frame
 * was one (answered now or later), 0 otherwise. */
int ds_compact_session_frame(struct ds *ds, struct conn *c, const struct frame *f);

/* Stops every compaction (the temporary files are removed; jobs with I/O in
 * flight end in their callbacks without answering). Call before
 * store_close with ds->stopping set. */
void ds_compact_stop(struct ds *ds);

#endif
