/* ds_tomb.h - the dataserver's side of the nameserver's delete journal
 * (docs/dataserver.md, "Deletes with one member"): NOTE_DELETE sent by a
 * primary whose replica set is down to itself, and the APPLY_TOMBSTONES
 * handler (journaled tombstones appended to a copy that may lack them). */
#ifndef DS_DS_TOMB_H
#define DS_DS_TOMB_H

#include "dataserver/ds_req.h"

/* Asks the nameserver, on our session, to journal the tombstone of (seq,
 * cookie) of block_id, our tail being tail_after with it appended. cb(0,
 * arg) once the nameserver has it durable; cb(error, arg) when it refused or
 * did not answer within DS_NOTE_TIMEOUT_MS. Returns 0 (cb will run), or
 * IMG_EUNAVAIL when no authenticated session is up, -ENOMEM (cb never
 * runs). */
int ds_tomb_note(struct ds *ds, uint64_t block_id, uint32_t seq, uint32_t cookie,
                 uint64_t tail_after, uint32_t set_version, void (*cb)(int status, void *arg),
                 void *arg);

/* The same for a file of an erasure-coded block (NOTE_DELETE with shards):
 * the holders of shards index[0..n) (at addr[i]) have the tombstone
 * durably; the nameserver journals it for the others. */
int ds_tomb_note_ec(struct ds *ds, uint64_t block_id, uint32_t seq, uint32_t cookie,
                    const uint32_t *index, char **addr, size_t n,
                    void (*cb)(int status, void *arg), void *arg);

/* APPLY_TOMBSTONES (nameserver session): appends a tombstone for every
 * listed file still live in the copy, durably, then answers the count and
 * the durable tail. IMG_EINVAL for unequal lists or more than DS_APPLY_MAX;
 * IMG_ENOBLOCKHERE; IMG_EUNAVAIL while the block is compacting, a copy into
 * it runs, or we hold it as primary of a set with other members (the nameserver
 * demotes first). */
void ds_tomb_apply(struct ds_req *r, const struct frame *f);

#endif
