/* ns_ec.h - erasure-coded blocks on the nameserver (ns_ec.c): the stripe
 * table (which server holds which shard of which block), rebuilt from the
 * shard holders' reports, and the EC_ENCODE task. docs/nameserver.md,
 * "Erasure-coded blocks". The replica-set code (ns_blocks.c, ns_plan*.c)
 * is not involved: an encoded block's shards live in their own table. */
#ifndef IMG_NS_EC_H
#define IMG_NS_EC_H

#include "nameserver/ns.h"

#define NS_EC_MAX_K 10
#define NS_EC_MAX_SHARDS 14
#define NS_EC_TIMEOUT_MS (10 * 60 * 1000) /* one EC_ENCODE answer */
#define NS_EC_DROP_RETRY_MS 10000         /* replicated copies of an encoded block: asked again */
#define NS_EC_STALE_RETRY_MS 2000         /* stale shards: asked again */
#define NS_EC_STALE_MAX 4                 /* servers with stale shards kept per stripe */

/* One stripe: k data + m parity shards of block_id. */
struct ns_stripe {
    uint64_t block_id;
    uint8_t k, m;
    uint64_t shard_len, block_len;
    uint32_t files;
    uint32_t gen;                      /* stripe generation of its shards (0: as encoded) */
    uint64_t garbage[NS_EC_MAX_SHARDS]; /* block bytes not live, by shard i's holder's table */
    uint16_t holder[NS_EC_MAX_SHARDS]; /* server idx, NS_NO_SERVER when unknown */
    uint64_t file_bytes[NS_EC_MAX_SHARDS];
    uint16_t bad;                      /* bit i: shard i's holder reported it bad */
    uint32_t seq_first[NS_EC_MAX_K], seq_last[NS_EC_MAX_K];
    uint64_t drop_ms;                  /* loop time DELETE_BLOCK last went to its copies */
    uint64_t stale_ms;                 /* ... and to the servers holding stale shards */
    uint16_t stale[NS_EC_STALE_MAX];   /* servers that reported shards held elsewhere */
    uint8_t stale_index[NS_EC_STALE_MAX]; /* ... which shard (its deletions go to its holder) */
    uint8_t nstale;
    uint8_t confirmed;                 /* its EC_ENCODE succeeded here (see ns_ec_usable) */
    /* The delete journal (ns_ecdj.c): bit i, shard i's holder may lack
     * journaled tombstones (returned, rebuilt): not listed until it applied
     * them; bit i of djapplying: APPLY_TOMBSTONES in flight to it. */
    uint16_t djwait, djapplying;
    uint64_t djretry_ms;               /* no APPLY_TOMBSTONES resent before */
};

/* When this nameserver first saw a block sealed (ec_min_age_h). */
struct ns_ec_seen {
    uint64_t block_id;
    uint64_t ms;
};

struct ns_ec {
    struct ns_stripe *v; /* owned */
    size_t n, cap;
    int all_pending;     /* ec encode --all-sealed: more blocks to start as slots free */
    struct ns_ec_seen *seen; /* sealed blocks not encoded yet, by id (owned) */
    size_t nseen, seen_cap;
};

/* The stripe of block id, or NULL. Valid until the next insertion. */
struct ns_stripe *ns_ec_get(const struct ns *ns, uint64_t id);

/* The stripe of block id when it may be used (read, repaired, make the
 * replicated copies go): its encoding succeeded on this nameserver, or the
 * block has no replicated copy left (the encoding finished before), or it
 * supersedes the copies left (ns_ec_supersedes). A stripe seen only in
 * reports while the block's copies took tombstones since (longer than the
 * encoded block) is what a failed encoding left: ignored. NULL otherwise. */
struct ns_stripe *ns_ec_usable(const struct ns *ns, uint64_t id);

/* The stripe of block id when it supersedes the block's replicated copies:
 * every shard has a holder, no task of the block runs (an encoding), and no
 * up copy is longer than the encoded block (a longer one took tombstones
 * after the encoding: the copies lead, as before the drop). A copy no
 * longer than the stripe's block holds nothing the stripe lacks, and may
 * lack deletes made on the stripe since: a copy that was down when the
 * encoding dropped the others, back later, or reported to a nameserver
 * that restarted since (docs/chaos-findings.md, "a stale copy of an
 * encoded block comes back"). LOOKUP answers such a block with its stripe,
 * the planner does not repair its copies, and they are deleted. */
struct ns_stripe *ns_ec_supersedes(const struct ns *ns, uint64_t id);

/* A report of server s listed replicated block b: when its stripe
 * supersedes the copies, s is told to delete its copy (before the answer to
 * the report, so it never serves it) and 1 is returned; else 0. */
int ns_ec_stale_copy(struct ns *ns, const struct ns_block *b, struct ns_server *s);

/* Applies the shards of a validated heartbeat from s: each entry (checked:
 * a known scheme, index < k+m, k seq ranges) records s as that shard's
 * holder; a full report also drops s from the shards it no longer lists.
 * Entries that disagree with the stripe's scheme or lengths are ignored
 * (logged). Returns the number of ignored entries. */
size_t ns_ec_apply_report(struct ns *ns, struct ns_server *s, const Imgstore__Heartbeat *hb);

/* Starts an EC_ENCODE task for sealed block b with scheme k+m (STAT_BLOCK
 * to its primary, then EC_ENCODE there with k+m targets: up, not draining,
 * not read-only, most free bytes first). Returns the task id, 0 when it
 * cannot start now (*why: a static reason). */
uint64_t ns_ec_start(struct ns *ns, struct ns_block *b, unsigned k, unsigned m,
                     uint64_t now_ms, const char **why);

/* A planner pass: replicated copies left of a complete stripe are asked to
 * go again (every NS_EC_DROP_RETRY_MS); after ec encode --all-sealed,
 * encodings of the sealed blocks not encoded yet start as the task cap
 * allows, until none is left (or ec is set off); with ec on and
 * ec_min_age_h > 0, a sealed block this nameserver has seen sealed for that
 * long is encoded (the age counts from the first pass that saw it sealed:
 * the nameserver keeps no seal time, so a restart starts the clocks again). */
void ns_ec_plan(struct ns *ns, uint64_t now_ms);

/* Non-zero when a shard of st may move now (the balance): st is used, its
 * block has no replicated copy left, every shard is on an up, non-draining
 * holder and none is bad, and no task runs for the block. */
int ns_ec_movable(const struct ns *ns, const struct ns_stripe *st);

/* Non-zero when server idx holds a shard of st, or a stale copy of one it
 * has yet to drop (such a server cannot take a shard of st). */
int ns_ec_holds(const struct ns_stripe *st, uint16_t idx);

/* The balance: moves shard `index` of block id off server `from` (its
 * holder) onto `to` (holding nothing of the stripe, writable, with room,
 * within the task cap), as a drain moves it (task kind ec-move, reason
 * `reason`: static text). Returns the task id, 0 when it cannot start. */
uint64_t ns_ec_start_move(struct ns *ns, uint64_t id, unsigned index, uint16_t from,
                          uint16_t to, const char *reason, uint64_t now_ms);

/* Shards held by server idx: those the stripes name it for, and stale ones
 * it has yet to drop (a drain is done when none is left). */
unsigned ns_ec_shards_on(const struct ns *ns, uint16_t idx);

/* ADMIN_EC_ENCODE: one block now, or (all_sealed) every sealed block the
 * caps allow now, the others on the next planner passes. */
void ns_ec_handle_encode(struct ns *ns, struct conn *c, const struct frame_header *h,
                         const Imgstore__AdminEcEncode *m);

/* The data shards of a stripe as LOOKUP lists them (storage for one
 * location; strings borrowed from ns). */
struct ns_ec_loc {
    unsigned k, n;
    Imgstore__ShardLocation loc[NS_EC_MAX_SHARDS];
    Imgstore__ShardLocation *lp[NS_EC_MAX_SHARDS];
    Imgstore__Replica rep[NS_EC_MAX_SHARDS];
};

/* Fills *l with the up holders of block id's shards, data shards first
 * (none when the block is not encoded). Returns how many. */
size_t ns_ec_fill_loc(const struct ns *ns, uint64_t id, struct ns_ec_loc *l);

/* Puts l's shards into a LOOKUP location (ec_k, shards). */
void ns_ec_put_loc(struct ns_ec_loc *l, Imgstore__BlockLocation *bl);

/* Raw bytes of every shard file, and the logical bytes (block lengths) of
 * the stripes (ds-admin status). */
void ns_ec_bytes(const struct ns *ns, uint64_t *raw, uint64_t *logical, uint32_t *stripes);

/* Garbage of a stripe: the most bytes of the block that are not live
 * records any up holder reports (its record table knows the most
 * deletions); reports above the block's length are ignored. */
uint64_t ns_ec_garbage(const struct ns *ns, const struct ns_stripe *st);

/* Whether `garbage` bytes of a block_len-byte encoded block reach pct
 * percent (compact_threshold, the rule of replicated blocks; 0 or above
 * 100: never). Pure. */
int ns_ec_compact_due(uint64_t garbage, uint64_t block_len, uint32_t pct);

/* Fills the stripe part of m (ec_k, ec_m, ec_shard_len, ec_gen,
 * ec_garbage_bytes, ec_compact_due, shards) for block
 * id, using sh[] and sp[] (NS_EC_MAX_SHARDS each) as storage; strings are
 * borrowed from ns. No-op when the block is not encoded. */
void ns_ec_fill_admin(const struct ns *ns, uint64_t id, Imgstore__AdminBlock *m,
                      Imgstore__AdminShard *sh, Imgstore__AdminShard **sp);

void ns_ec_free(struct ns *ns);

#endif
