/* ns_ops.h - the operator's on-demand compaction and repair (ds-admin compact
 * and repair): FT_ADMIN_COMPACT and FT_ADMIN_REPAIR on the nameserver.
 *
 * Compaction reuses ns_compact.c (same task, caps and delete hold); repair
 * asks every holder of a block to VERIFY it and STAT_BLOCK it over their
 * sessions, marks copies with bad records bad (ns_compact_mark_bad: the
 * planner replaces them) and kicks the planner, which catches up short
 * copies and copies missing ones. Everything runs on the loop thread. */
#ifndef IMG_NS_OPS_H
#define IMG_NS_OPS_H

#include "nameserver/ns.h"

struct conn;
struct frame_header;

#define NS_OPS_VERIFY_TIMEOUT_MS 60000 /* one VERIFY of one block */
#define NS_OPS_COMPACT_MAX 10000       /* blocks listed in one AdminCompactResp */

/* Answers FT_ADMIN_COMPACT request q (unpacked by ns_rpc.c) on c: IMG_ESAFEMODE,
 * IMG_ENOTFOUND (unknown block), -EINPROGRESS (not sealed), -ENODATA (no
 * deleted bytes), -EBUSY (a task runs on it, or a holder is down, bad,
 * draining or at the task cap), IMG_EINVAL (threshold over 100), else an
 * AdminCompactResp. */
void ns_ops_handle_compact(struct ns *ns, struct conn *c, const struct frame_header *h,
                           const Imgstore__AdminCompact *q);

/* Answers FT_ADMIN_REPAIR request q (unpacked by ns_rpc.c; nothing of it is
 * kept) on c, once every holder answered (or at once with status_only):
 * IMG_EINVAL (block 0), IMG_ENOTFOUND, or an AdminRepairResp. */
void ns_ops_handle_repair(struct ns *ns, struct conn *c, const struct frame_header *h,
                          const Imgstore__AdminRepair *q);

/* Forgets connection c (it is closing): a repair still running answers
 * nobody. Called by ns_rpc.c for every closed connection. */
void ns_ops_conn_closed(struct conn *c);

#endif
