/* ds_block.h - the nameserver's block commands on a dataserver, and what
 * follows a block's removal.
 *
 * Handlers of the dispatch table (ds_req.h), sent on the nameserver session:
 *   CREATE_BLOCK   create an empty block here (primary when listed first)
 *   SEAL_BLOCK     stop new files on a block
 *   DELETE_BLOCK   drop this server's copy of a block
 *   STAT_BLOCK     describe one block (its size, for the planner's checks)
 *   SET_REPLICAS   replace a block's replica list and role (saved in its meta)
 * Each answers r exactly once.
 *
 * A deleted or dropped block leaves the table at once (no new I/O can find
 * it); its descriptors stay open DS_DELETE_GRACE_MS so that I/O already
 * queued on them completes (a "grave"), then it is closed; its id is reported
 * in the next heartbeat's removed_blocks. Also here: ds_block_changed, the
 * one way a module outside the storage engine tells the nameserver that a
 * block changed. */
#ifndef DS_DS_BLOCK_H
#define DS_DS_BLOCK_H

#include "dataserver/ds_req.h"
#include "proto/imgstore.pb-c.h"

#include <stddef.h>
#include <stdint.h>

#define DS_DELETE_GRACE_MS 2000 /* a deleted block's fd stays open this long */

void ds_block_create(struct ds_req *r, const struct frame *f);
void ds_block_seal(struct ds_req *r, const struct frame *f);
void ds_block_delete(struct ds_req *r, const struct frame *f);
void ds_block_stat(struct ds_req *r, const struct frame *f);
void ds_block_set_replicas(struct ds_req *r, const struct frame *f);

/* Marks b changed for the next heartbeat's report and asks for that
 * heartbeat soon (a block created, sealed, marked corrupt, re-assigned). */
void ds_block_changed(struct ds *ds, struct block *b);

/* Marks b changed for the next regular heartbeat's report, without asking
 * for one sooner (a committed append: one heartbeat per append would flood
 * the nameserver). */
void ds_block_report(struct ds *ds, struct block *b);

/* Copies replica `r` of a command into *out after checking it (ids and
 * addresses present and short enough, addr parses). Returns 0 or IMG_EINVAL. */
int ds_block_replica(const Imgstore__Replica *r, struct block_replica *out);

/* Drops block `id` from memory without touching its files (its data folder
 * failed, ds_disk.c): new requests get IMG_ENOBLOCKHERE at once, reads in
 * flight finish on the descriptors kept open DS_DELETE_GRACE_MS, and the id
 * is reported in the next heartbeat's removed_blocks. Returns 0,
 * IMG_ENOBLOCKHERE, -EBUSY while a compaction or an append is in flight on it
 * (call again later), or -ENOMEM. */
int ds_block_drop(struct ds *ds, uint64_t id);

/* Ids of blocks deleted since the last heartbeat that carried them: fills
 * *ids (owned by ds_block.c, valid until the next call into it) and returns
 * the count. ds_block_removed_sent(ds, n) drops the first n once sent. */
size_t ds_block_removed(struct ds *ds, const uint64_t **ids);
void ds_block_removed_sent(struct ds *ds, size_t n);

/* Closes the blocks waiting for their deferred close. Call before
 * store_close, with ds->stopping set. Safe when nothing was ever deleted. */
void ds_block_stop(struct ds *ds);

#endif
