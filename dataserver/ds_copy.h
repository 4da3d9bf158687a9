/* ds_copy.h - background block copies, seals and deletions on a dataserver.
 *
 * The nameserver's planner drives these through commands on the dataserver's
 * session (docs/protocol.md, docs/dataserver.md "Block copy"):
 *   REPLICATE_BLOCK  pull a block from a peer (READ_BLOCK), verify, install
 *   SEAL_BLOCK       stop new files on a block
 *   DELETE_BLOCK     drop this server's copy of a block
 *   STAT_BLOCK       describe one block (its size, for the planner's checks)
 *   CANCEL_COPY      stop a running copy whose task was canceled
 * and peers read raw block bytes with READ_BLOCK on the native port.
 *
 * Every background copy of this server shares one token bucket (the copy
 * rate told by the nameserver, DS_COPY_DEFAULT_RATE until then), so copies
 * never take more than the cap however many run. Everything runs on the loop
 * thread; block-file I/O goes through the store's io_uring. */
#ifndef DS_DS_COPY_H
#define DS_DS_COPY_H

#include "dataserver/ds.h"
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
#define DS_COPY_DEFAULT_RATE (50ull * 1000 * 1000) /* bytes/s until told */
#define DS_COPY_MAX_ACTIVE 8                     /* copies at once; more: IMG_EUNAVAIL */
#define DS_COPY_READ_TIMEOUT_MS 30000            /* one READ_BLOCK answer */
#define DS_DELETE_GRACE_MS 2000                  /* a deleted block's fd stays open this long */

/* Handles a command frame on the nameserver session `c` (REPLICATE_BLOCK,
 * SEAL_BLOCK, DELETE_BLOCK, STAT_BLOCK, SET_REPLICAS, CANCEL_COPY). Returns 1
 * when the type is one of these (it is then answered, maybe later), 0
 * otherwise (untouched). */
int ds_copy_session_frame(struct ds *ds, struct conn *c, const struct frame *f);

/* Serves READ_BLOCK received on a native connection: reads the asked range
 * of the block file through io_uring and answers `req` (ds_rpc_answer) with
 * the bytes, the block's durable tail and a CRC32C of the bytes. Takes
 * ownership of `req`: it is answered exactly once, also on failure. */
void ds_copy_read_block(struct ds *ds, const struct frame *f, struct ds_rpc_req *req);

/* Ids of blocks deleted since the last heartbeat that carried them: fills
 * *ids (owned by ds_copy.c, valid until the next call into it) and returns
 * the count. ds_copy_removed_sent(ds, n) drops the first n once sent. */
size_t ds_copy_removed(struct ds *ds, const uint64_t **ids);
void ds_copy_removed_sent(struct ds *ds, size_t n);

/* Drops block `id` from memory without touching its files (its data folder
 * failed, ds_disk.c): new requests get IMG_ENOBLOCKHERE at once, reads in
 * flight finish on the descriptors kept open DS_DELETE_GRACE_MS, and the id
 * is reported in the next heartbeat's removed_blocks. Returns 0,
 * IMG_ENOBLOCKHERE, -EBUSY while a compaction or an append is in flight on it
 * (call again later), or -ENOMEM. */
int ds_copy_drop_block(struct ds *ds, uint64_t id);

/* The background token bucket shared by copies and compactions: takes `len`
 * bytes and returns 0 when they may be moved now, else the milliseconds to
 * wait before asking again (nothing taken). -ENOMEM-free: before the first
 * use the bucket runs at DS_COPY_DEFAULT_RATE. */
uint64_t ds_copy_throttle(struct ds *ds, uint32_t len);

/* Stops every copy (copies with I/O in flight end in their callbacks without
 * answering; a temporary file left behind is removed at the next start) and
 * closes the blocks waiting for their deferred close. Call before
 * store_close, with ds->stopping set. Safe when nothing was ever started. */
void ds_copy_stop(struct ds *ds);

/* Fills out[0..max) with the block copies running here (task, block, bytes
 * done), for the heartbeat. Returns the count. */
size_t ds_copy_progress(struct ds *ds, Imgstore__CopyProgress *out, size_t max);

/* Bytes a copy or compaction writes between two fdatasyncs of its new
 * file (--copy-sync-mb, DS_COPY_SYNC_BYTES by default). */
uint64_t ds_copy_sync_bytes(const struct ds *ds);

#endif
