/* ds_ec.h - erasure-coded blocks on a dataserver (docs/storage.md,
 * "Erasure-coded blocks"): the shards this server holds, and the
 * handlers that make them.
 *
 * Handlers of the dispatch table (ds_req.h):
 *   EC_ENCODE      (nameserver session) encode a sealed block held here into
 *                  k+m shard files, one per target; answered once every
 *                  shard is durable and checked by its holder
 *   EC_PUT_SHARD   (peer) keep one shard file, checked before it is written
 * The shards found in the data folders at start (ds_ec_load) and those
 * written since are kept open and reported in heartbeats (ds_ec_report). */
#ifndef DS_DS_EC_H
#define DS_DS_EC_H

#include "dataserver/ds_req.h"
#include "dataserver/ec_shard.h"
#include "dataserver/needle.h"
#include "proto/imgstore.pb-c.h"

#include <stddef.h>
#include <stdint.h>

#define DS_EC_TIMEOUT_MS (5 * 60 * 1000) /* one EC_PUT_SHARD answer */
#define DS_EC_HOLD_MS (10 * 60 * 1000)   /* deletes refused this long at most while encoding */
#define DS_EC_MAX_FILE (FRAME_MAX_BODY)  /* a shard file travels in one frame */

/* One shard held here. */
struct ds_shard {
    uint64_t block_id;
    unsigned index;
    int disk;
    int bad;                 /* its bytes failed a check */
    int held;                /* rebuilt here: its record table may lack journaled
                              * tombstones, so no file is read through it until
                              * the nameserver's APPLY_TOMBSTONES (ds_ec_apply) */
    struct ec_shard sh;      /* open file, header, record table */
};

/* Opens every shard file in the data folders (a bad one is logged and
 * left on disk, not reported). Returns 0 or -ENOMEM. */
int ds_ec_load(struct ds *ds);

/* Closes every shard and frees the module's state. */
void ds_ec_close(struct ds *ds);

/* The shard of block `id` held here with the lowest index, or NULL. */
struct ds_shard *ds_ec_find(struct ds *ds, uint64_t id);

/* Shard `index` of block id if held here, else NULL. */
struct ds_shard *ds_ec_shard(struct ds *ds, uint64_t id, unsigned index);

/* Finds file seq of encoded block id in the record table of a shard held
 * here: 0 with *e (valid while the shard is held), the data shard *dshard
 * holding its record and the record's offset *doff in that shard's payload;
 * IMG_ENOBLOCKHERE when no shard of the block is here, IMG_ENOTFOUND when
 * the block has no such file. */
int ds_ec_locate(struct ds *ds, uint64_t id, uint32_t seq, const struct ec_tent **e,
                 unsigned *dshard, uint64_t *doff);

/* The ShardInfo entries of a heartbeat: every shard when `full`, else
 * every shard when one changed since the last report, else none. *out is
 * a malloc'd array of pointers into one allocation (ds_ec_report_free). */
size_t ds_ec_report(struct ds *ds, int full, Imgstore__ShardInfo ***out);
void ds_ec_report_free(Imgstore__ShardInfo **v, size_t n);

/* Opens the shard file `index` of block id in blocks folder dir (disk
 * `disk`): a new struct ds_shard (owned by the caller) or NULL with *rc.
 * Blocking: call it off the loop. */
struct ds_shard *ds_ec_open_shard(const char *dir, uint64_t id, unsigned index, int disk,
                                  int *rc);

/* Adds an opened shard to those held and reported (a heartbeat soon).
 * Returns 0 or -ENOMEM (s stays the caller's). */
int ds_ec_adopt(struct ds *ds, struct ds_shard *s);

/* Closes and frees a shard not adopted. NULL-safe. */
void ds_ec_free_shard(struct ds_shard *s);

/* Drops every shard of block id held here (DELETE_BLOCK with shards: the
 * nameserver counts them nowhere, their shards were rebuilt elsewhere):
 * closed, files removed. Returns 0 or IMG_ENOBLOCKHERE when none is here. */
int ds_ec_drop(struct ds *ds, uint64_t id);

/* Takes one shard of block id out of those held (no longer read, reported
 * or given tombstones; still open): the caller's, to free or adopt again.
 * NULL when none is here. */
struct ds_shard *ds_ec_detach(struct ds *ds, uint64_t id);

/* ds_ec_rebuild.c: DELETE_BLOCK with shards and tombs_to (the old holder of
 * a moved shard, told by the nameserver once the stripe names the new one):
 * the shards of block id here are taken out of service, every deletion in
 * their record tables is handed to the holder at `to` (EC_TOMB, durable
 * there), then their files are removed and r answered 0; when a hand-over
 * fails they are served again and r gets the error (the nameserver asks
 * again). IMG_ENOBLOCKHERE when no shard of the block is here. */
void ds_ec_hand_over(struct ds_req *r, uint64_t id, const char *to);

/* Marks shard `index` of block id bad (its bytes failed a check): no longer
 * read for files, reported bad so the nameserver rebuilds it elsewhere. */
void ds_ec_mark_bad(struct ds *ds, uint64_t id, unsigned index);

/* The blocks folder holding block id's tombstone file here (the folder of
 * its lowest-index shard) into out; -1 when no shard of it is here. */
int ds_ec_tomb_dir(struct ds *ds, uint64_t id, char *out, size_t n);

/* Marks file seq deleted in the record table of every shard of block id
 * held here (in memory; the tombstone file is the caller's). */
void ds_ec_mark_deleted(struct ds *ds, uint64_t id, uint32_t seq);

/* ds_ec_delete.c: DELETE of a file of an encoded block held here as shards
 * (called by ds_repl_delete; answers r once), and EC_TOMB (peer). */
void ds_ec_delete(struct ds_req *r, uint64_t block_id, uint32_t seq, uint32_t cookie);
void ds_ec_tomb(struct ds_req *r, const struct frame *f);

/* APPLY_TOMBSTONES with `shards` (the nameserver's delete journal, called by
 * ds_tomb_apply; takes m): every listed file of the block's record table is
 * marked deleted at once (before any later frame is handled), then the
 * tombstones are appended to the block's tombstone file (one fdatasync) and
 * the block's shards held here are released (held 0). Answers r once:
 * ApplyTombstonesResp (applied: files marked), IMG_ENOBLOCKHERE, IMG_EINVAL
 * (lists), or the write's error. */
void ds_ec_apply(struct ds_req *r, Imgstore__ApplyTombstones *m);

/* A shard held here, by name (the scrubber's snapshot). */
struct ds_shard_ref {
    uint64_t block_id;
    unsigned index;
};

/* Every shard held here, by block id and index: *out malloc'd (owned by the
 * caller; NULL when none or out of memory). Returns how many. */
size_t ds_ec_snapshot(struct ds *ds, struct ds_shard_ref **out);

/* Sets `held` on every shard of block id held here (reported). */
void ds_ec_set_held(struct ds *ds, uint64_t id, int held);

/* ds_ec_rebuild.c: EC_REBUILD (nameserver session). */
void ds_ec_rebuild(struct ds_req *r, const struct frame *f);

void ds_ec_encode(struct ds_req *r, const struct frame *f);
void ds_ec_put_shard(struct ds_req *r, const struct frame *f);

/* ds_ec_read.c: EC_READ_RANGE (peer), and the degraded read of file seq of
 * encoded block block_id whose data shard is not readable here: its record
 * rebuilt from k other shards, then checked like a disk read (ds_file.h's
 * ds_file_cb, called once). Returns 0 (cb runs later) or, without calling
 * cb, IMG_ENOBLOCKHERE / IMG_ENOTFOUND (as ds_ec_locate) or -ENOMEM; cb gets
 * IMG_EUNAVAIL when fewer than k shards could be read. */
void ds_ec_read_range(struct ds_req *r, const struct frame *f);
typedef void (*ds_ec_file_cb)(int status, const struct needle_header *h, uint64_t offset,
                              uint8_t *rec, void *arg);
int ds_ec_reconstruct(struct ds *ds, uint64_t block_id, uint32_t seq, uint32_t cookie,
                      unsigned flags, ds_ec_file_cb cb, void *arg);

#endif
