/* ds_copy.h - background block copies and tail catch-ups on a dataserver.
 *
 * The nameserver's planner drives these through commands on the dataserver's
 * session (docs/protocol.md, docs/dataserver.md "Block copy"):
 *   REPLICATE_BLOCK  pull a block from a peer (READ_BLOCK), verify, install
 *   CANCEL_COPY      stop a running copy whose task was canceled
 * and peers read raw block bytes with READ_BLOCK on the native port (the
 * other block commands: ds_block.h).
 *
 * Every background copy of this server takes from the server's token bucket
 * (ds_throttle.h), so copies never take more than the cap however many run.
 * Everything runs on the loop thread; block-file I/O goes through the store's
 * io_uring. */
#ifndef DS_DS_COPY_H
#define DS_DS_COPY_H

#include "dataserver/ds_req.h"
#include "proto/imgstore.pb-c.h"

#include <stddef.h>
#include <stdint.h>

/* Bytes asked per READ_BLOCK: each is one disk read at the source and one
 * write at the target, which a reader's disk read may queue behind; 256 KiB
 * gave readers a lower p99 during a rebalance than 1 MiB
 * (docs/performance.md, "Rebalance"). */
#define DS_COPY_CHUNK (1u << 18)
/* A copy or compaction fdatasyncs its new file every this many bytes
 * written (ds->copy_sync_bytes, --copy-sync-mb), not only at its end: one
 * fdatasync of a whole 64 MiB block stalled readers' disk reads for 30-40
 * ms on the benchmark VM; small flushes as the copy goes keep each one
 * short. A disk with a slow cache flush (spinning) may want more. */
#define DS_COPY_SYNC_BYTES (1u << 20)
#define DS_COPY_SYNC_MAX_MB 4096
#define DS_COPY_MAX_ACTIVE 8                     /* copies at once; more: IMG_EUNAVAIL */
#define DS_COPY_READ_TIMEOUT_MS 30000            /* one READ_BLOCK answer */

/* Handlers of the dispatch table (ds_req.h); each answers r exactly once.
 * REPLICATE_BLOCK starts a copy (or a tail catch-up) answered when it ends
 * (ReplicateBlockResp: size, CRC32C, files), or at once when refused or
 * already satisfied. CANCEL_COPY marks a running copy to stop at its next
 * safe point. READ_BLOCK reads the asked range of the block file through
 * io_uring and answers with the bytes, the block's durable tail and a
 * CRC32C of the bytes. */
void ds_copy_replicate(struct ds_req *r, const struct frame *f);
void ds_copy_cancel(struct ds_req *r, const struct frame *f);
void ds_copy_read_block(struct ds_req *r, const struct frame *f);

/* Stops every copy (copies with I/O in flight end in their callbacks, their
 * answers dropped; a temporary file left behind is removed at the next
 * start). Call before store_close, with ds->stopping set. Safe when nothing
 * was ever started. */
void ds_copy_stop(struct ds *ds);

/* Fills out[0..max) with the block copies running here (task, block, bytes
 * done), for the heartbeat. Returns the count. */
size_t ds_copy_progress(struct ds *ds, Imgstore__CopyProgress *out, size_t max);

/* Non-zero when a copy into block `id` (new or catch-up) runs here. */
int ds_copy_running(const struct ds *ds, uint64_t id);

/* Bytes a copy or compaction writes between two fdatasyncs of its new
 * file (--copy-sync-mb, DS_COPY_SYNC_BYTES by default). */
uint64_t ds_copy_sync_bytes(const struct ds *ds);

#endif
