/* ns_delnote.h - the policy around the delete journal (ns_delnote.c):
 * NOTE_DELETE, the gate of copies that may lack journaled tombstones,
 * APPLY_TOMBSTONES and pruning. docs/nameserver.md, "Delete journal". */
#ifndef IMG_NS_DELNOTE_H
#define IMG_NS_DELNOTE_H

#include "nameserver/ns.h"

/* Answers NOTE_DELETE request m from server `from` (its session c; NULL when
 * c is no session): the tombstone is journaled (fsync'd) and then answered
 * 0; IMG_ENOTPRIMARY when from is not b's primary, IMG_ENOBLOCKHERE for an
 * unknown block, IMG_EUNAVAIL when the journal is full or failing. */
void ns_delnote_handle(struct ns *ns, struct conn *c, const struct frame_header *h,
                       struct ns_server *from, const Imgstore__NoteDelete *m);

/* Called for each block of a report from s before its view is checked:
 * when b has journaled tombstones that s's copy may lack and no copy holding
 * them all is up, s's copy is held out (b->djwait; it loses the primary
 * role) until APPLY_TOMBSTONES succeeded. No-op otherwise. */
void ns_delnote_gate(struct ns *ns, struct ns_block *b, struct ns_server *s);

/* Block b was compacted and the copies in `set` (bits by slot) agree on
 * `size`: when min(2, replicas) of them, none held out, hold it, the
 * journaled tombstones are now deletions on that many copies and the
 * block's entries are dropped; otherwise they are rebased to the new layout
 * (every tail_after = size). Called by ns_compact.c. */
void ns_delnote_compacted(struct ns *ns, struct ns_block *b, uint8_t set, uint64_t size);

/* Every tick: drops entries held by min(2, replicas) current members, sends
 * APPLY_TOMBSTONES to held-out copies that are up (one in flight per copy,
 * a failed one retried after a second), rewrites the journal file when most
 * of it is dropped. Sends only with a loop. */
void ns_delnote_tick(struct ns *ns, uint64_t now_ms);

#endif
