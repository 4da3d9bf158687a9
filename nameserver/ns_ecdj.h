/* ns_ecdj.h - the delete journal for erasure-coded blocks (ns_ecdj.c;
 * docs/nameserver.md, "Delete journal", erasure-coded blocks).
 *
 * A delete of a file of an encoded block taken while some shard holders are
 * down (or held out) has its tombstone on every up holder and, journaled
 * here (kind NS_DJ_KIND_EC), a second durable home for the others. Each
 * entry knows which shards' holders have it (bit i: ns_dj_block.ec_holder[i]
 * has it durably); a holder that may lack entries (reported back after being
 * down, or a rebuilt shard) is held out (ns_stripe.djwait: not listed by
 * LOOKUP) and sent APPLY_TOMBSTONES with `shards`; an entry is dropped once
 * every shard's holder has it. */
#ifndef IMG_NS_ECDJ_H
#define IMG_NS_ECDJ_H

#include "nameserver/ns.h"
#include "nameserver/ns_ec.h"

/* Checks a NOTE_DELETE with `shards` from `from`: the block's stripe is
 * usable and `from` holds one of its shards. Fills *mask with the shards
 * whose holder (srv[i], server idx) is the one the note names at
 * shard_addr. Returns 0, IMG_ENOBLOCKHERE or IMG_EINVAL (lists). */
int ns_ecdj_check_note(struct ns *ns, const struct ns_server *from,
                       const Imgstore__NoteDelete *m, uint16_t *mask,
                       uint16_t srv[NS_DJ_EC_SHARDS]);

/* Non-zero when seq of block_id is journaled already (its known holders are
 * then merged from mask/srv): the note is answered at once. */
int ns_ecdj_known(struct ns *ns, uint64_t block_id, uint32_t seq, uint16_t mask,
                  const uint16_t srv[NS_DJ_EC_SHARDS]);

/* The entry of seq is durable and in RAM: its bits are tied to the holders
 * the note named, and every up holder lacking it is sent APPLY_TOMBSTONES at
 * once (before the note is answered). */
void ns_ecdj_noted(struct ns *ns, uint64_t block_id, uint32_t seq, uint16_t mask,
                   const uint16_t srv[NS_DJ_EC_SHARDS]);

/* A heartbeat from s was applied to the stripe table (leader only, before it
 * is answered): each reported shard s holds that is held (rebuilt, not yet
 * released) or may lack journaled entries is held out and sent
 * APPLY_TOMBSTONES now, so the frame reaches s before the answer that
 * confirms its view. A stale shard (another up server holds it now) on a
 * server holding no shard of the stripe is dropped now (DELETE_BLOCK with
 * shards): its record table misses the deletes made since. */
void ns_ecdj_report(struct ns *ns, struct ns_server *s, const Imgstore__Heartbeat *hb);

/* Shard `index` of st was rebuilt on its (new) holder: held out and sent
 * APPLY_TOMBSTONES (with the entries, or none: it releases the shard). Its
 * former holder `old` (bad shard), when up and holding no other shard of
 * the stripe, is told to drop its copy now, before any LOOKUP lists the new
 * one (deletes from then on do not reach it). */
void ns_ecdj_rebuilt(struct ns *ns, struct ns_stripe *st, unsigned index, uint16_t old);

/* Every tick: drops entries every shard's holder has, sends
 * APPLY_TOMBSTONES to up holders that lack entries or are held out (one in
 * flight per holder, a failed one retried after a second). */
void ns_ecdj_tick(struct ns *ns, uint64_t now_ms);

#endif
