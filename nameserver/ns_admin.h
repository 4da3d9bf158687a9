/* ns_admin.h - the nameserver's admin requests: the read-only LIST_BLOCKS,
 * BLOCK_INFO and SERVER_RATES, the operator's CANCEL_TASK, READONLY,
 * SETTINGS and SET_SETTING, and the block classification they share with
 * the metrics and the status page (ns_http.c). The runtime settings
 * themselves are ns_settings.c's (declared in ns.h).
 *
 * Everything here runs on the loop thread. */
#ifndef IMG_NS_ADMIN_H
#define IMG_NS_ADMIN_H

#include "nameserver/ns.h"

struct conn;
struct frame_header;

#define NS_ADMIN_LIST_MAX 10000 /* blocks per LIST_BLOCKS answer */

/* A block's state and health, as shown by ds-admin and the metrics. */
#define NS_STATE_WRITABLE "writable" /* the pool may hand it out */
#define NS_STATE_SEALED "sealed"
#define NS_STATE_OPEN "open"         /* unsealed but not writable right now */
#define NS_HEALTH_OK "ok"
#define NS_HEALTH_UNDER "under-replicated"
#define NS_HEALTH_LOST "lost"

/* Returns the static state name of b (NS_STATE_*). */
const char *ns_admin_block_state(const struct ns *ns, const struct ns_block *b);

/* Returns the static health name of b (NS_HEALTH_*): lost with no up
 * replica, under-replicated with fewer up replicas than the replication. */
const char *ns_admin_block_health(const struct ns *ns, const struct ns_block *b);

/* Block totals of the whole map in one pass (also CLUSTER_STATUS's, ns_rpc.c). */
struct ns_admin_totals {
    uint64_t total, writable, sealed, open;
    uint64_t under_replicated, lost; /* as in CLUSTER_STATUS */
    uint64_t bytes, files, deleted_bytes;
};
void ns_admin_totals(const struct ns *ns, struct ns_admin_totals *t);

/* Answers the admin request `m` (unpacked by ns_rpc.c as h->type's head
 * message, which it frees after) on `c` when h->type is FT_ADMIN_LIST_BLOCKS
 * .. FT_ADMIN_SET_SETTING (a change is persisted in ns.meta before it is
 * applied and answered). Returns 1 when answered, 0 when the type is not one
 * of these. */
int ns_admin_handle(struct ns *ns, struct conn *c, const struct frame_header *h,
                    const ProtobufCMessage *m);

#endif
