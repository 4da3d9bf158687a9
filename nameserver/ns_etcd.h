/* ns_etcd.h - high availability: leader election (and the state leaders
 * share) on etcd, for a nameserver started with --etcd (docs/nameserver.md,
 * "High availability").
 *
 * The etcd client runs on a thread of its own and speaks etcd's v3 JSON
 * gateway over HTTP (libcurl, JSON by jansson): it never blocks the loop.
 * It keeps a lease (TTL cfg.ttl_ms, renewed every TTL/3), takes the key
 * PREFIX/leader with a transaction that succeeds only when the key does not
 * exist, and reports to the loop through a uv_async: leading or not, the
 * epoch (the leader key's create revision), the leader's address, the
 * monotonic time until which it may act (the last renewal's send time plus
 * 3/4 of the TTL), and the block-id range it took for its term. A second
 * thread watches the leader key (ns_etcd_watch.c): a change of it runs a
 * round at once, so a standby campaigns as soon as the key is gone. The
 * leader's delete journal is kept in etcd too (ns_etcd_dj.c): a new leader
 * reads it before it acts.
 *
 * The loop side: ns_leads() is the only question the rest of the nameserver
 * asks; it is 1 without --etcd. A leader whose time ran out stops acting at
 * once (ns_leads() turns 0 on the loop's clock even when the thread is
 * stuck), closes every dataserver session and answers as a standby.
 * ns_etcd_init() runs before the loop (it may block up to its timeout): it
 * checks the configuration and makes the cluster id the one etcd holds
 * (PREFIX/cluster_id, created from ours when absent). Calls ns_meta (the
 * cluster id, the id range), ns_registry-free: the sessions are closed
 * through the callback ns_rpc.c gives. */
#ifndef IMG_NS_ETCD_H
#define IMG_NS_ETCD_H

#include "nameserver/ns.h"

#include <stdint.h>
#include <uv.h>

#define NS_ETCD_MAX_ENDPOINTS 8
#define NS_ETCD_PREFIX_MAX 128
#define NS_ETCD_DEFAULT_PREFIX "/imgstore"
#define NS_ETCD_DEFAULT_TTL_MS 2000
#define NS_ETCD_MIN_TTL_MS 1000   /* etcd grants whole seconds, at least 1 */
#define NS_ETCD_MAX_TTL_MS 60000
#define NS_ETCD_ID_RANGE (1ull << 20) /* block ids a leader takes at a time */
#define NS_ETCD_INIT_MS 10000     /* ns_etcd_init waits this long for etcd */

struct ns_etcd_config {
    const char *endpoints; /* "HOST:PORT[,HOST:PORT...]" (borrowed) */
    const char *prefix;    /* key prefix, NULL: NS_ETCD_DEFAULT_PREFIX */
    const char *advertise; /* our native address as clients reach it */
    uint32_t ttl_ms;       /* 0: NS_ETCD_DEFAULT_TTL_MS */
};

/* Parses and checks cfg, connects to etcd and settles the cluster id (our
 * ns.meta takes etcd's; a first nameserver stores its own). Sets ns->ha
 * (owned; ns_etcd_free frees it). Runs before the loop; blocks up to
 * NS_ETCD_INIT_MS. Returns 0, IMG_EINVAL (bad configuration, logged),
 * IMG_ECONN (etcd not reachable in time) or a negative errno. */
int ns_etcd_init(struct ns *ns, const struct ns_etcd_config *cfg);

/* Starts the client thread and its uv_async on `loop`. `demoted` is called
 * on the loop when this nameserver stops leading (ns_rpc.c closes the
 * dataserver sessions). Returns 0 or a negative errno. */
int ns_etcd_start(struct ns *ns, uv_loop_t *loop, void (*demoted)(struct ns *ns));

/* Stops the thread (a leader hands the key back first, so a standby takes
 * over at once) and closes the async handle. Safe when not started. */
void ns_etcd_stop(struct ns *ns);

/* Frees ns->ha after ns_etcd_stop and the loop closed its handles. */
void ns_etcd_free(struct ns *ns);

/* Called by the loop's timer: a lead whose time ran out ends here even when
 * the thread is stuck (the demoted callback runs). */
void ns_etcd_tick(struct ns *ns);

/* 1 when this nameserver may act now: no --etcd, or it holds the leader key
 * and its last renewal is recent enough on the loop's clock. */
int ns_leads(const struct ns *ns);

/* The leader's native address as last read from etcd ("" when unknown, or
 * when this nameserver leads itself), for NotLeader answers. */
const char *ns_etcd_leader(const struct ns *ns);

/* The epoch of the leader this nameserver knows (0: none yet). */
int64_t ns_etcd_epoch(const struct ns *ns);

/* Steps down on purpose: stops acting at once (the demoted callback runs),
 * and the thread revokes the lease and does not run for leader for 2 TTL.
 * Returns that hold in ms, or IMG_EINVAL without --etcd. */
int ns_etcd_step_down(struct ns *ns);

/* With --etcd: stores a delete-journal entry in etcd (key
 * PREFIX/deljournal/BLOCKID/SEQ, the journal file's record as value) in a
 * transaction that succeeds only while the leader key is this term's; many
 * entries share one transaction. cb runs on the loop: 0 once stored,
 * IMG_ENOTLEADER (not leading), IMG_EUNAVAIL (etcd failed) or -ECANCELED
 * (stopping). Returns 0 (cb will run), IMG_EUNAVAIL without --etcd,
 * IMG_ENOTLEADER or -ENOMEM (cb not called). A new leader reads every
 * entry back and merges them into its journal before it acts; entries the
 * journal prunes are deleted from etcd (best effort). */
int ns_etcd_dj_put(struct ns *ns, uint64_t block_id, const struct ns_dj_entry *e,
                   const char *sender, ns_dj_cb cb, void *arg);

/* Our address as published in etcd ("" without --etcd). */
const char *ns_etcd_self(const struct ns *ns);

/* How long this nameserver has led, in ms (0: not leading, or no --etcd). */
uint64_t ns_etcd_leading_ms(const struct ns *ns);

#endif
