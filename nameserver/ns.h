/* ns.h - the nameserver's shared state and its modules' contracts.
 *
 * The nameserver knows blocks, never files (docs/nameserver.md). Its state is
 * one struct ns. Modules by layer, each calling only those below it:
 *   data:     runtime settings (ns_settings.c), persisted metadata
 *             (ns_meta.c), the registry of dataservers (ns_registry.c), bad
 *             replicas (ns_bad.c), the soft block map rebuilt from block
 *             reports (ns_blocks.c), which returns what a report changed,
 *             the delete journal's file and RAM (ns_deljournal.h);
 *   policy:   the writable-block pool (ns_pool.c), the self-healing planner
 *             (ns_plan.c, ns_plan_set.c), compaction (ns_compact.c), the
 *             balance (ns_balance.c), the delete journal's policy
 *             (ns_delnote.h);
 *   glue:     a report's changes handed to the policy modules (ns_hb.c);
 *   requests: admin (ns_admin.c), operator ops (ns_ops.c), HTTP (ns_http.c);
 *   wire:     listener, unpacking of every frame, dispatch, timer (ns_rpc.c);
 *   process:  arguments, loop, signals (main.c).
 *
 * Everything here runs on the loop's thread. Every module except ns_rpc.c
 * works without sockets, so unit tests call it as plain functions: pass
 * now_ms explicitly and leave ns->loop NULL.
 *
 * Error convention: int return, 0 on success, a negative errno or an IMG_E*
 * code of base/err.h on failure. */
#ifndef IMG_NS_H
#define IMG_NS_H

#include "nameserver/ns_deljournal.h"
#include "net/limits.h"
#include "proto/imgstore.pb-c.h"

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct conn;
struct frame;
struct frame_header;
struct ns;
struct ns_block;

/* ---- limits and defaults ------------------------------------------------ */

#define NS_DEFAULT_REPLICAS 2
#define NS_MIN_REPLICAS 1
#define NS_MAX_REPLICAS 3
#define NS_MIB (1024ull * 1024)
#define NS_DEFAULT_BLOCK_SIZE (64 * NS_MIB)
#define NS_MIN_BLOCK_SIZE NS_MIB
#define NS_MAX_BLOCK_SIZE (32ull * 1024 * NS_MIB)
#define NS_DEFAULT_HB_TIMEOUT_MS 5000
#define NS_DEFAULT_SAFE_MODE_MS 30000

#define NS_MAX_BLOCK_ID ((1ull << 48) - 1) /* block ids are 1 .. 2^48-1 */
#define NS_ID_RESERVE_BATCH 1024           /* ids reserved per fsync'd meta write */

#define NS_SERVER_ID_MAX 64  /* server ids: 1..64 chars of [A-Za-z0-9_-] */
#define NS_ADDR_MAX 128      /* "HOST:PORT" including the NUL */
#define NS_MAX_SERVERS 4096  /* registry size; server refs in blocks are uint16_t */
#define NS_MAX_DISKS 256     /* disks accepted in one heartbeat */

/* Replica slots kept per block. More than NS_MAX_REPLICAS so that a block
 * being copied (future re-replication) still fits; a reporter beyond this is
 * ignored with a warning. */
#define NS_BLOCK_SLOTS 4
#define NS_NO_PRIMARY 0xffu

#define NS_HEARTBEAT_MS 1000        /* interval told to dataservers */
#define NS_TICK_MS 200              /* planner / liveness timer */
#define NS_KEYS_CHECK_MS 1000       /* the keys file is looked at (stat) this often */
#define NS_CREATE_TIMEOUT_MS 5000   /* CREATE_BLOCK answer deadline */
#define NS_MAX_CREATES_INFLIGHT 2   /* block creations in flight at once */
#define NS_POOL_MIN_TARGET 2        /* writable blocks kept: max(this, up servers) */
#define NS_WRITABLE_MARGIN NS_MIB   /* a block this close to full is not handed out */
#define NS_ALLOC_MAX 8              /* writable blocks per ALLOC_WRITE answer */
#define NS_ALLOC_EXCLUDE_MAX 1024   /* exclude entries considered per ALLOC_WRITE */
#define NS_LOOKUP_MAX 1024          /* block ids per LOOKUP */
#define NS_RATE_MIN_MS 1000         /* shortest window of a server's request rates */
/* A server keeps free the larger of NS_RESERVE_BLOCKS blocks and
 * NS_RESERVE_PCT % of its capacity: no new block, copy or move is placed on
 * it, and its open blocks are not handed out for writes, once its free bytes
 * would fall below that (docs/nameserver.md, "Full servers"). */
#define NS_RESERVE_BLOCKS 2
#define NS_RESERVE_PCT 1

/* ---- persisted metadata (ns_meta.c) -------------------------------------- */

#define NS_META_FILE "ns.meta"
#define NS_META_MAX_BYTES (1u << 20)
#define NS_CLUSTER_ID_HEX 32 /* 128 random bits */

/* Runtime settings an operator changes with ds-admin set (ns_settings.c has
 * their names, units, ranges and defaults): validated, persisted in ns.meta
 * ("setting KEY VALUE") and applied at once. A persisted value wins over the
 * command line at start. */
enum ns_setting_key {
    NS_SETTING_COPY_RATE,      /* MB/s (10^6 bytes) per copying server: cfg.copy_rate */
    NS_SETTING_TASK_CAP,       /* running planner tasks per server: cfg.task_cap */
    NS_SETTING_HB_TIMEOUT,     /* ms without a heartbeat before a server is down */
    NS_SETTING_COMPACT_PCT,    /* deleted share of a block (%) that compacts it: cfg.compact_pct */
    NS_SETTING_SCRUB_RATE,     /* MB/s of background checksum reading per server */
    NS_SETTING_REBALANCE_BAND, /* points of use% a server may stray from the mean */
    NS_SETTING_EC,             /* erasure coding of sealed blocks: 0 off, else k*100+m
                                * (402, 603, 1004: ns_settings_ec) */
    NS_SETTING_EC_MIN_AGE_H,   /* sealed blocks older than this (hours) are encoded by the
                                * planner; 0: only on demand (ds-admin ec encode) */
    NS_SETTING_COUNT
};

/* A set of server ids an operator marked (read-only, draining), persisted in
 * ns.meta one line per id. */
struct ns_idlist {
    char **ids; /* owned */
    size_t n;
};

struct ns_meta {
    char path[PATH_MAX];                  /* DIR/ns.meta */
    char cluster_id[NS_CLUSTER_ID_HEX + 1];
    uint64_t block_id_reserved;           /* every id below this may have been used */
    uint64_t next_id;                     /* next id handed out (memory only) */
    uint64_t id_limit;                    /* with --etcd: ids below it only (the term's
                                           * range, ns_etcd.c); 0: no limit */
    uint32_t replicas;
    uint64_t block_size;
    char **known;                         /* server ids ever registered (owned) */
    size_t nknown;
    uint64_t setting[NS_SETTING_COUNT];   /* values set by an operator */
    uint32_t setting_set;                 /* bit k: setting[k] is set (persisted) */
    struct ns_idlist readonly;            /* servers an operator made read-only */
    struct ns_idlist draining;            /* servers an operator is draining */
    /* Membership binding (docs/security.md): server id i is bound to the
     * member key named bound_keys[i], the key of its first authenticated
     * heartbeat. Both arrays owned, nbound entries. */
    char **bound_ids;
    char **bound_keys;
    size_t nbound;
    /* Called after each successful ns_meta_save with the file's text
     * (borrowed for the call); NULL: none. With --etcd, ns_etcd.c mirrors
     * the text to etcd while it leads. */
    void (*saved)(void *arg, const char *text, size_t len);
    void *saved_arg;
};

/* The member key name server `id` is bound to, or NULL (not bound yet). */
const char *ns_meta_bound_key(const struct ns_meta *m, const char *id);

/* Binds server `id` to member key `key` and persists it (fsync'd). Returns
 * 0, IMG_EINVAL for a malformed name, or the save's error (then unbound). */
int ns_meta_bind_key(struct ns_meta *m, const char *id, const char *key);

/* Parses the text of a meta file into *m (known ids malloc'd into m). Does
 * not touch m->path or m->next_id. Returns 0, or IMG_EFORMAT when anything is
 * missing, duplicated, unknown or out of range (then *m holds nothing to
 * free beyond what ns_meta_free releases). */
int ns_meta_parse(const char *text, size_t len, struct ns_meta *m);

/* Loads DIR/ns.meta or creates it on first start (new random cluster id).
 * replicas / block_size of 0 mean "keep the persisted value" (or the default
 * on first start); non-zero values override and are persisted. next_id is
 * set to the persisted reserve, so ids handed out before a crash are never
 * reused. Returns 0, IMG_EFORMAT for a corrupt file (never reset), or a
 * negative errno. On failure *m needs no ns_meta_free. */
int ns_meta_open(struct ns_meta *m, const char *dir, uint32_t replicas, uint64_t block_size);

/* Writes *m to its path with fs_write_atomic (then calls m->saved). Returns
 * 0 or a negative errno. */
int ns_meta_save(const struct ns_meta *m);

/* With --etcd, a new leader takes the shared part of the meta text another
 * leader stored (replicas, block size, known, read-only and draining
 * servers, settings, key bindings); its own path, cluster id and block-id
 * reserve stay. Returns 0, IMG_EFORMAT (text not a meta file), IMG_ECLUSTER
 * (another cluster's) or -ENOMEM; *m is unchanged on failure. Does not
 * save. */
int ns_meta_adopt(struct ns_meta *m, const char *text, size_t len);

/* Hands out the next block id into *id. Before next_id reaches the persisted
 * reserve, a new reserve (next_id + NS_ID_RESERVE_BATCH) is persisted first.
 * Returns 0, -ENOSPC when ids are exhausted, -EAGAIN when m->id_limit is
 * reached (with --etcd: the term has no range of ids), or the save error
 * (then no id is handed out and the state is unchanged). */
int ns_meta_alloc_id(struct ns_meta *m, uint64_t *id);

/* Records that `id` exists (seen in a block report): next_id moves past it
 * and the reserve is persisted when needed. Returns 0 or the save error. */
int ns_meta_observe_id(struct ns_meta *m, uint64_t id);

/* Returns non-zero when server `id` is in the known list. */
int ns_meta_is_known(const struct ns_meta *m, const char *id);

/* Adds server `id` to the known list and persists it; no-op if present.
 * Returns 0, -ENOMEM, or the save error (then the list is unchanged). */
int ns_meta_add_known(struct ns_meta *m, const char *id);

/* Returns non-zero when an operator made server `id` read-only. */
int ns_meta_is_readonly(const struct ns_meta *m, const char *id);

/* Sets or clears the operator's read-only mark of server `id` and persists
 * it (no-op when unchanged). Returns 0, -ENOMEM, or the save error (then the
 * mark is unchanged). */
int ns_meta_set_readonly(struct ns_meta *m, const char *id, int on);

/* Returns non-zero when an operator is draining server `id`. */
int ns_meta_is_draining(const struct ns_meta *m, const char *id);

/* Sets or clears the drain mark of server `id` and persists it, like
 * ns_meta_set_readonly: a drain goes on after a nameserver restart. */
int ns_meta_set_draining(struct ns_meta *m, const char *id, int on);

/* Sets setting k to v (already validated) and persists it. Returns 0 or the
 * save error (then the setting is unchanged). */
int ns_meta_set_setting(struct ns_meta *m, int k, uint64_t v);

/* Frees what *m owns. Safe on a zeroed struct. */
void ns_meta_free(struct ns_meta *m);

/* ---- runtime settings (ns_settings.c) -------------------------------------- */

/* One runtime setting: its name, unit, range and default (in the unit), and
 * whether anything in the nameserver uses it yet. Static text. */
struct ns_setting_def {
    const char *name;
    const char *unit;
    uint64_t def, min, max;
    int applied;
    const char *help;
};

/* Returns the table entry of setting k, or NULL when k is out of range. */
const struct ns_setting_def *ns_setting_def(int k);

/* Returns the setting called `name` (enum ns_setting_key), or -1. */
int ns_setting_find(const char *name);

/* Returns the name of setting k ("copy_rate"), or NULL when k is out of range. */
const char *ns_setting_name(int k);

/* Returns 0 when v is within setting k's range, IMG_EINVAL otherwise. */
int ns_setting_check(int k, uint64_t v);

/* Returns the value of setting k in force, in its unit: the operator's
 * (persisted) value, else the command line's, else the default. */
uint64_t ns_setting(const struct ns *ns, int k);

/* Copies the persisted settings into ns->cfg (logged when they override the
 * command line). Called once by ns_init. */
void ns_settings_load(struct ns *ns);

/* Puts setting k = v (already validated and persisted) into force: the ones
 * the nameserver uses live in cfg; the planner runs its next pass at once. */
void ns_settings_apply(struct ns *ns, int k, uint64_t v);

/* The values in force the modules use, in the units they work in: running
 * tasks per server, copy bytes/s per copying server, deleted % that compacts
 * a block. */
uint32_t ns_settings_task_cap(const struct ns *ns);
uint64_t ns_settings_copy_rate(const struct ns *ns);
uint32_t ns_settings_compact_pct(const struct ns *ns);

/* The ec setting in force: returns 1 and sets *k, *m when erasure coding is
 * on (4+2, 6+3 or 10+4), 0 when it is off. */
int ns_settings_ec(const struct ns *ns, unsigned *k, unsigned *m);

/* The scrub_rate setting as sent in every HeartbeatResp: bytes/s, or 0 when
 * no operator set it (or set 0), so each dataserver keeps --scrub-rate-mb. */
uint64_t ns_settings_scrub_rate(const struct ns *ns);

/* ---- dataserver registry (ns_registry.c) --------------------------------- */

struct ns_server {
    uint16_t idx;                      /* position in ns->servers, never changes */
    char id[NS_SERVER_ID_MAX + 1];
    char addr[NS_ADDR_MAX];
    char http_addr[NS_ADDR_MAX];
    int up;
    int readonly;                      /* ds_readonly or an operator's mark (ns.meta) */
    int ds_readonly;                   /* the server reports itself read-only */
    int full_reported;                 /* sent a full report since we started */
    int term_reported;                 /* --etcd: sent a full report to us as leader this term */
    struct conn *conn;                 /* live session, NULL when none */
    uint64_t last_hb_ms;               /* loop time of the last heartbeat */
    uint32_t disks;
    uint32_t failed_disks;             /* disks it reports failed (Disk.failed) */
    uint32_t record_format;            /* newest record format it reads (1 when unsaid) */
    uint64_t capacity, free, used;     /* summed over its disks, bytes */
    uint64_t reads, writes;
    uint32_t nblocks;                  /* replicas it holds in the block map */
    int draining;                      /* DRAIN: no new blocks; everything moves off */
    int drain_done_logged;
    unsigned tasks;                    /* running planner tasks it takes part in */
    /* request rates (ns_registry.c): counters over >= NS_RATE_MIN_MS between samples */
    uint64_t rate_ms, rate_reads, rate_writes; /* last sample: loop time, counters */
    double reads_per_s, writes_per_s;
};

/* Returns non-zero when `id` is 1..NS_SERVER_ID_MAX chars of [A-Za-z0-9_-]. */
int ns_server_id_valid(const char *id);

/* Checks every field of a heartbeat: server id, addr and http_addr (must
 * parse with conn_parse_addr and fit NS_ADDR_MAX), disk count. Block entries
 * are checked one by one when applied. Returns 0 or IMG_EINVAL. */
int ns_hb_validate(const Imgstore__Heartbeat *hb);

/* Returns the server with `id`, or NULL. */
struct ns_server *ns_registry_find(const struct ns *ns, const char *id);

/* Returns the server at registry index `idx` (a block's rep[], a task's
 * src/dst), or NULL when idx is out of range (NS_NO_SERVER). */
struct ns_server *ns_registry_at(const struct ns *ns, uint16_t idx);

/* Applies a validated heartbeat to the registry: creates the entry (and adds
 * the id to the persisted known list), updates addresses (logged), counters
 * and disks, marks it up at now_ms with session `c` (may be NULL in tests).
 * Does not touch the block map. On success *out is the entry (owned by ns).
 * Returns 0, -ENOSPC when the registry is full, -ENOMEM, or a save error. */
int ns_registry_heartbeat(struct ns *ns, const Imgstore__Heartbeat *hb, struct conn *c,
                          uint64_t now_ms, struct ns_server **out);

/* Marks `s` down (logged once) and forgets its session pointer; the caller
 * closes the conn if it is still open. */
void ns_registry_mark_down(struct ns *ns, struct ns_server *s, const char *why);

/* Marks down every up server whose last heartbeat is older than the
 * heartbeat timeout, closing its session. Returns how many went down. */
int ns_registry_check_timeouts(struct ns *ns, uint64_t now_ms);

/* Returns the number of up servers. */
uint32_t ns_registry_up_count(const struct ns *ns);

/* The record format dataservers write: the oldest any known server reads
 * (down ones included: they come back with their binary); a server that has
 * not sent a heartbeat since our start counts as format 1. */
uint32_t ns_registry_record_format(const struct ns *ns);

/* The bytes s keeps free (NS_RESERVE_BLOCKS, NS_RESERVE_PCT). */
uint64_t ns_server_reserve(const struct ns *ns, const struct ns_server *s);

/* Non-zero when s can take `bytes` more and still keep its reserve. */
int ns_server_has_room(const struct ns *ns, const struct ns_server *s, uint64_t bytes);

/* ---- a heartbeat's block report (ns_hb.c) ------------------------------------ */

/* Applies the block part of a validated heartbeat from `s` to the map
 * (ns_blocks_apply_report) and hands what changed to the modules acting on
 * it: stale unsealed copies to the planner (ns_plan_seal_on), corrupt copies
 * to the bad list, the reporter's view of each sealed block to the planner
 * (ns_plan_check_view), open blocks to the pool. *skipped as in
 * ns_blocks_apply_report. Returns 0, -ENOMEM, or a save error. */
int ns_hb_apply_blocks(struct ns *ns, struct ns_server *s, const Imgstore__Heartbeat *hb,
                       size_t *skipped);

/* ---- self-healing planner (ns_plan.c) ------------------------------------ */

#define NS_DEFAULT_TASK_CAP 2                     /* running tasks per server */
#define NS_MAX_TASK_CAP 64
#define NS_DEFAULT_COPY_RATE (50ull * 1000 * 1000) /* bytes/s per copying server */
#define NS_PLAN_INTERVAL_MS 1000                  /* full planner pass at least this often */
#define NS_TASK_TIMEOUT_MS (10 * 60 * 1000)       /* one copy, one answer */
#define NS_CMD_TIMEOUT_MS 10000                   /* SEAL/STAT/DELETE answers */
#define NS_TASKS_KEPT 256                         /* finished tasks kept for LIST_TASKS */
#define NS_RETRY_MS 5000                          /* a block whose task failed waits this long */
#define NS_NO_SERVER 0xffffu

enum ns_task_kind {
    NS_TASK_REPLICATE,
    NS_TASK_DELETE,
    NS_TASK_COMPACT,
    NS_TASK_EC_ENCODE,  /* ns_ec.c: a sealed block encoded k+m */
    NS_TASK_EC_REBUILD, /* ns_ec.c: a lost or bad shard rebuilt on another server */
    NS_TASK_EC_MOVE,    /* ns_ec.c: a shard moved off a draining server */
};
enum ns_task_state { NS_TASK_RUNNING, NS_TASK_DONE, NS_TASK_FAILED };

/* One background action of the planner. Running tasks hold a slot of the
 * per-server cap on each server taking part (src and dst). */
struct ns_task {
    uint64_t id;
    uint64_t block_id;
    uint8_t kind;             /* enum ns_task_kind */
    uint8_t state;            /* enum ns_task_state */
    uint8_t verifying;        /* delete: STAT_BLOCK answers still due */
    uint16_t src;             /* replicate: source server idx; delete: NS_NO_SERVER */
    uint16_t dst;             /* replicate: target; delete: the server dropping its copy */
    uint64_t bytes_done, bytes_total;
    uint64_t keep_size;       /* delete: size every kept copy reported */
    int keep_bad;             /* delete: a kept copy disagreed or failed */
    uint64_t start_ms, end_ms;
    int err;
    const char *reason;       /* static text: "under-replicated", "extra replica", "drain" */
};

struct ns_plan {
    struct ns_task *tasks;    /* running ones and the last finished ones (owned) */
    size_t ntasks, cap;
    uint64_t next_task_id;
    uint64_t last_run_ms;
    int kick;                 /* run the next pass without waiting for the interval */
    uint64_t *lost;           /* ids already logged as lost, sorted (owned) */
    size_t nlost;
    uint64_t under;           /* blocks below the replication setting at the last pass */
};

/* One planner pass (no-op in safe mode): seals writable blocks that lost a
 * replica or sit on a draining server; starts re-replication of sealed
 * under-replicated blocks (fewest up replicas first; source: the primary
 * when up, else an up holder; target: up, writable, not draining, not a
 * holder, most free bytes); starts deletion of extra replicas (a draining
 * holder first; never the primary unless draining; only when enough other
 * up, non-draining copies remain, checked with STAT_BLOCK to be sealed and
 * equal in size). Each server takes part in at most cfg.task_cap running
 * tasks. Blocks with no up replica are counted as lost and logged once at
 * ERROR, never dropped. Compaction (ns_compact_plan) and, last, the balance
 * (ns_balance_plan) follow. Commands are sent only when ns->loop is set; unit
 * tests inspect the tasks instead. */
void ns_plan_step(struct ns *ns, uint64_t now_ms);

/* Called by the timer: runs a pass when kicked or every NS_PLAN_INTERVAL_MS. */
void ns_plan_tick(struct ns *ns, uint64_t now_ms);

/* Ends task `id` with `status` (0: success). For a replication, `size` is the
 * installed copy's size and the target enters the block map; for a deletion
 * the server leaves it. Returns 0 or IMG_ENOTFOUND (no such running task). */
int ns_plan_task_end(struct ns *ns, uint64_t id, int status, uint64_t size, uint64_t now_ms);

/* Takes the progress of the copies s reports running (Heartbeat.copies)
 * into their tasks' bytes_done: a copy task shows its progress while it
 * runs, not only at its end. Entries for unknown tasks, other targets or
 * other blocks are ignored. */
void ns_plan_progress(struct ns *ns, const struct ns_server *s, const Imgstore__Heartbeat *hb);

/* Returns running task `id`, or NULL. Valid until the next planner call. */
struct ns_task *ns_plan_task(struct ns *ns, uint64_t id);

/* Starts (cancel = 0) or stops draining server `id`; *left gets the replicas
 * it still holds. Returns 0 or IMG_ENOTFOUND. */
int ns_plan_drain(struct ns *ns, const char *id, int cancel, uint32_t *left);

/* Cancels running task `id`: it ends as failed with -ECANCELED (an answer
 * that comes later is ignored; the planner may plan the block again after
 * NS_RETRY_MS). The target of a copy task is sent CANCEL_COPY on its session
 * so the copy stops there too (its answer is only logged). Returns 0 or
 * IMG_ENOTFOUND (no such running task). */
int ns_plan_cancel(struct ns *ns, uint64_t id, uint64_t now_ms);

/* Sends SEAL_BLOCK for block_id to s (no answer awaited; no-op without a
 * loop): used when s reports unsealed a block the map knows as sealed. */
void ns_plan_seal_on(struct ns *ns, uint64_t block_id, struct ns_server *s);

/* Checks one sealed block's report from holder s (called by ns_blocks.c
 * after the entry was applied, `claims_primary` and the reported replica ids
 * as sent): a holder claiming the primary role of a block whose primary is
 * another up server is demoted, and a holder whose replica list differs from
 * the nameserver's set gets SET_REPLICAS. No-op without a loop. */
void ns_plan_check_view(struct ns *ns, struct ns_block *b, struct ns_server *s,
                        int claims_primary, char **ids, size_t nids);

/* ---- the replica set of sealed blocks (ns_plan_set.c) ---- */

/* Fills r with server s's id and addresses (strings borrowed from s). */
void ns_plan_fill_replica(Imgstore__Replica *r, const struct ns_server *s);

/* Sends h b's current set (SET_REPLICAS, same version; a joining copy gets
 * the list without itself; the primary's answer is awaited for its tail when
 * copies are joining). No-op without a loop or when h is down. */
void ns_plan_set_to(struct ns *ns, struct ns_block *b, struct ns_server *h);

/* Sends the current set to the primary again (same version), for its tail,
 * when copies are joining and no answer is due. */
void ns_plan_ask_primary(struct ns *ns, struct ns_block *b);

/* Records a change of b's replica set (b->ver + 1) and sends SET_REPLICAS
 * with the set (primary first) and its version to every up holder of b (a
 * joining copy gets the list without itself; only the primary's answer is
 * awaited, when copies are joining; no sending without a loop). */
void ns_plan_send_set(struct ns *ns, struct ns_block *b);

/* The primary (server idx) answered SET_REPLICAS of set version `ver` of b
 * with its tail: every joining copy at least that long is confirmed (told
 * the set with itself in it); ignored when the set or primary changed since.
 * (Called on the answer; tests call it directly.) */
void ns_plan_primary_tail(struct ns *ns, struct ns_block *b, uint16_t primary, uint32_t ver,
                          uint64_t tail);

/* Frees the task list. */
void ns_plan_free(struct ns *ns);

/* Adds a running task (see ns_task) for modules beyond the planner (ns_compact.c);
 * NULL on allocation failure. Valid until the next planner call. */
struct ns_task *ns_plan_task_add(struct ns *ns, int kind, uint64_t block_id, uint16_t src,
                                 uint16_t dst, uint64_t bytes, const char *reason, uint64_t now);

/* ---- compaction and bad replicas (ns_compact.c) ----------------------------- */

#define NS_DEFAULT_COMPACT_PCT 30 /* deleted share of a sealed block that compacts it */
#define NS_COMPACT_TIMEOUT_MS (10 * 60 * 1000) /* one COMPACT_BLOCK answer */

/* Starts COMPACT tasks (STAT_BLOCK to every holder, then COMPACT_BLOCK to
 * every holder, then a check that all answers agree in size and CRC32C) for
 * sealed blocks whose deleted bytes reach cfg.compact_pct percent of their
 * size (NS_DEFAULT_COMPACT_PCT when 0), all of whose holders are up, good and
 * under the task cap, and that are not in busy[0..nbusy-1] (sorted). Also
 * forgets bad marks of copies that are gone. Commands only with ns->loop. */
void ns_compact_plan(struct ns *ns, uint64_t now_ms, const uint64_t *busy, size_t nbusy);

/* Starts one COMPACT task for b now (the steps above; the caller checked
 * that b is sealed, not busy, and every holder up, good and under the cap).
 * Returns the task id, or 0 when no task could be added (out of memory). */
uint64_t ns_compact_start(struct ns *ns, struct ns_block *b, uint64_t now_ms);

/* Answer DRAIN and LIST_TASKS requests on c (ns_rpc.c unpacks the frame,
 * dispatches and frees the message). */
void ns_plan_handle_drain(struct ns *ns, struct conn *c, const struct frame_header *h,
                          const Imgstore__Drain *m);
void ns_plan_handle_list(struct ns *ns, struct conn *c, const struct frame_header *h,
                         const Imgstore__ListTasks *m);

/* Starts a REPLICATE_BLOCK task copying sealed block b from s to d for
 * another module (ns_balance.c), with `reason` (static text). Returns the
 * task id, or 0 when nothing started (allocation or send failure; a failed
 * send ends the task as failed). */
uint64_t ns_plan_start_copy(struct ns *ns, struct ns_block *b, struct ns_server *s,
                            struct ns_server *d, const char *reason, uint64_t now_ms);

/* ---- rebalancing by used bytes (ns_balance.c) -------------------------------- */

#define NS_BAL_REASON "rebalance"          /* reason of its copies and deletions */
#define NS_BAL_PLAN_MAX 1000               /* planned moves listed by ADMIN_REBALANCE */
#define NS_BAL_DELETE_WAIT_MS (60 * 1000)  /* a copied move whose source keeps its copy
                                            * this long is given up (the copy stays) */

/* One move of the balance: a copy of block_id from `from` to `to` (task
 * task_id), then the deletion of from's copy by the planner's extra-replica
 * rule (ns_balance_victim). */
struct ns_bal_move {
    uint64_t block_id;
    uint64_t bytes;
    uint64_t task_id;          /* the copy */
    uint64_t copied_ms;        /* when the copy was installed */
    uint16_t from, to;         /* server idx */
    int copied;                /* the copy is installed; from's deletion is due */
    uint8_t shard, index;      /* a shard of an erasure-coded block (ns_ec.c), its index */
};

struct ns_balance {
    struct ns_bal_move *moves; /* running moves (owned) */
    size_t nmoves, cap;
    uint64_t bytes_moved;      /* completed moves since start */
    uint32_t moves_done, moves_failed;
    int logged_out_of_band;    /* "out of band" logged since the last "balanced" */
};

/* One server as the balance sees it (ns_balance_view). */
struct ns_bal_server {
    struct ns_server *s;       /* borrowed */
    uint64_t used;             /* bytes of its copies in the block map and of its shard
                                * files (ns_ec.c), moves in flight applied */
    uint64_t capacity;
    int eligible;              /* up, not draining, not read-only, capacity > 0 */
    int in_band;
    unsigned running;          /* running moves it takes part in */
};

/* A planned move (ns_balance_view). */
struct ns_bal_plan {
    uint64_t block_id, bytes;
    uint16_t from, to;
    uint8_t shard, index;      /* a shard move (ns_ec_start_move) */
};

/* The balance of the cluster and the moves it still needs (owned arrays,
 * freed with ns_balance_view_free). */
struct ns_bal_view {
    double mean;               /* sum(used) / sum(capacity) of the eligible servers */
    double band;               /* rebalance_band as a fraction */
    struct ns_bal_server *servers; /* one per registry entry, by idx */
    size_t nservers;
    struct ns_bal_plan *plan;  /* greedy plan from the current state, no task caps */
    size_t nplan;
    int truncated;             /* the plan went on past NS_BAL_PLAN_MAX */
    int balanced;              /* every eligible server is within the band */
};

/* Returns the used fraction of `s` in view v (0 when its capacity is 0). */
double ns_balance_fraction(const struct ns_bal_server *s);

/* Computes the balance now: per server used bytes (from the block map,
 * in-flight moves applied) and capacity, the mean, the band, and the moves
 * the balance would make from here (each from the fullest server that can
 * give a block to the emptiest, only while one of them is out of the band,
 * and only when the target stays no fuller than the source). Returns 0 or
 * -ENOMEM (then *v holds nothing). */
int ns_balance_view(struct ns *ns, uint64_t now_ms, struct ns_bal_view *v);

/* Frees what ns_balance_view allocated. Safe on a zeroed view. */
void ns_balance_view_free(struct ns_bal_view *v);

/* The planner's lowest-priority step (ns_plan_step calls it last): follows
 * the running moves, then, when servers are out of the band, starts moves of
 * sealed, fully replicated, idle blocks whose copy on the source is not the
 * primary, from the fullest to the emptiest eligible server. A server takes
 * part in at most task_cap / 2 moves, never beyond the task cap, and not
 * while it holds an under-replicated block or takes part in a repair copy.
 * No-op in safe mode. Commands only with ns->loop. */
void ns_balance_plan(struct ns *ns, uint64_t now_ms);

/* The planner's choice of the copy of b to delete (ns_plan.c pick_victim):
 * for a block whose balance copy is installed, the source's copy, or NULL
 * while the source cannot take the task; `dflt` otherwise. */
struct ns_server *ns_balance_victim(const struct ns *ns, const struct ns_block *b,
                                    struct ns_server *dflt);

/* The reason of deleting v's copy of b: NS_BAL_REASON for a balance move's
 * source, `dflt` otherwise. */
const char *ns_balance_reason(const struct ns *ns, const struct ns_block *b,
                              const struct ns_server *v, const char *dflt);

/* Answers ADMIN_REBALANCE request q on c (ns_rpc.c unpacks and frees it). */
void ns_balance_handle(struct ns *ns, struct conn *c, const struct frame_header *h,
                       const Imgstore__AdminRebalance *q);

/* Frees the move list. */
void ns_balance_free(struct ns *ns);

/* ---- bad replicas (ns_bad.c) ------------------------------------------------ */

/* A replica known bad: it reported its copy corrupt (scrub, recovery, a
 * failed compaction) or its compaction result disagreed with the others. The
 * planner counts it as lost: copies the block from a good replica, then
 * deletes it. */
struct ns_bad {
    uint64_t block_id;
    uint16_t server;
};

/* Returns non-zero when server idx `server`'s copy of block_id is bad. */
int ns_bad_has(const struct ns *ns, uint64_t block_id, uint16_t server);

/* Marks server `server`'s copy of block_id bad (logged once) and kicks the
 * planner. */
void ns_bad_mark(struct ns *ns, uint64_t block_id, uint16_t server, const char *why);

/* Forgets marks of copies the map no longer has (each compaction pass). */
void ns_bad_prune(struct ns *ns);

/* Frees the bad list. */
void ns_bad_free(struct ns *ns);

/* ---- block map (ns_blocks.c) --------------------------------------------- */

/* One block: 80 bytes, no per-file state. Open addressing, id 0 = empty. */
struct ns_block {
    uint64_t id;
    uint64_t size;                   /* bytes of the longest copy reported */
    uint64_t deleted_bytes;
    uint32_t file_count;
    uint16_t rep[NS_BLOCK_SLOTS];    /* server idx of each replica holder */
    uint8_t nrep;
    uint8_t primary;                 /* slot in rep[] of the primary, or NS_NO_PRIMARY */
    uint8_t sealed;
    uint8_t in_pool;                 /* listed in ns->pool (writable candidate) */
    uint64_t rsize[NS_BLOCK_SLOTS];  /* size each holder reported, by slot */
    uint8_t inset;                   /* bit i: rep[i] is in the replica set told to holders */
    uint8_t behind;                  /* bit i: rep[i] was short at the last planner pass */
    uint8_t joining;                 /* bit i: rep[i] is in the set (the primary forwards to
                                      * it) but not yet told so: it may lack tombstones
                                      * acknowledged before the primary knew it (ns_plan.c) */
    uint8_t join_asked : 1;          /* the primary was asked for its tail, no answer yet */
    uint8_t set_shrunk : 1;          /* a member left on its own (ns_blocks.c): the planner
                                      * tells the holders the smaller set */
    uint8_t djwait : NS_BLOCK_SLOTS; /* bit i: rep[i] may lack tombstones of the delete journal
                                      * and no copy holding them is up: held out (not listed,
                                      * no source, no primary, in no replica list) until it
                                      * appended them (ns_delnote.c) */
    uint32_t ver;                    /* version of the replica set: the highest reported,
                                      * bumped by every change the nameserver makes */
    uint32_t rver[NS_BLOCK_SLOTS];   /* set version each holder last reported */
};

struct ns_blocks {
    struct ns_block *slots;  /* power-of-two array (owned) */
    size_t cap;              /* 0 or a power of two */
    size_t count;
};

/* Returns non-zero when holder slot i of b has a copy of an older replica
 * set: it reported a set version below b->ver and is not in the set the
 * nameserver keeps. Such a copy may lack tombstones or hold appends the
 * current copies never had, so it is never a source, never in the set, never
 * counted as a good replica, and is replaced rather than caught up. Members
 * of the set are trusted whatever they last reported (a report may cross
 * the SET_REPLICAS that moved them to the new version). */
int ns_block_is_old(const struct ns_block *b, unsigned i);

/* Returns non-zero when holder slot i of b is of an older set (above) or
 * joining the set (not yet confirmed complete against the primary's tail):
 * such a copy is no source, no primary, not counted and not listed. */
int ns_block_is_unready(const struct ns_block *b, unsigned i);

/* Returns the block `id`, or NULL. The pointer is valid until the next
 * insertion or removal. */
struct ns_block *ns_blocks_get(const struct ns_blocks *t, uint64_t id);

/* Returns the block `id`, inserting an empty one (no replicas, no primary)
 * when missing. Returns NULL on allocation failure. */
struct ns_block *ns_blocks_put(struct ns_blocks *t, uint64_t id);

/* Removes block `id` if present. */
void ns_blocks_del(struct ns_blocks *t, uint64_t id);

/* Frees the table. */
void ns_blocks_free(struct ns_blocks *t);

/* Returns the slot of server `sidx` in b->rep, or -1. */
int ns_block_find_rep(const struct ns_block *b, uint16_t sidx);

/* Adds server `s` as a holder of b (no-op when present). Returns the slot or
 * -ENOSPC when every slot is taken. */
int ns_block_add_rep(struct ns *ns, struct ns_block *b, struct ns_server *s);

/* Writes b's holders whose server is registered into hs, and their slots in
 * b->rep into slot: the primary first (when b has one), then the others in
 * slot order, the order of every replica list the nameserver sends. Returns
 * how many. */
unsigned ns_block_holders(const struct ns *ns, const struct ns_block *b,
                          struct ns_server *hs[NS_BLOCK_SLOTS], unsigned slot[NS_BLOCK_SLOTS]);

/* Returns how many replicas of b are on up servers. */
unsigned ns_block_up_reps(const struct ns *ns, const struct ns_block *b);

/* Returns how many of b's replicas are up, of the current set and not bad:
 * a block with fewer than the replication count is under-replicated (at
 * risk) even when more copies are up. */
unsigned ns_block_good_reps(const struct ns *ns, const struct ns_block *b);

/* What applying one entry of a block report changed that the modules above
 * the map act on (ns_hb_apply_blocks hands it over): one record per applied
 * entry, in report order. */
struct ns_block_change {
    uint64_t block_id;
    uint8_t stale_unsealed;  /* the reporter holds unsealed a block the map knows
                              * sealed: the planner seals it there (ns_plan_seal_on) */
    uint8_t corrupt;         /* the reporter's copy has a bad record (ns_bad_mark) */
    uint8_t claims_primary;  /* the entry's primary flag */
    char **ids;              /* the entry's replica list, borrowed from the report:
                              * for ns_plan_check_view when the block is sealed */
    size_t nids;
};

/* A growing list of changes (v owned; free with ns_block_changes_free). */
struct ns_block_changes {
    struct ns_block_change *v;
    size_t n, cap;
};

/* Frees the list. Safe on a zeroed one. */
void ns_block_changes_free(struct ns_block_changes *ch);

/* Applies the block part of a validated heartbeat from `s`: a full report
 * replaces everything s holds in the map; an incremental one updates the
 * listed blocks and removes s from `removed_blocks`. Blocks left with no
 * holder are dropped. Entries with an invalid id are skipped (counted in
 * *skipped when not NULL). Ids at or past next_id bump it (persisted). Each
 * applied entry appends a record to *ch (pointers into hb: valid while hb
 * is). Decides nothing beyond the map: the caller hands *ch to the planner,
 * the bad list and the pool (ns_hb_apply_blocks). Returns 0, -ENOMEM, or a
 * save error (the map stays consistent). */
int ns_blocks_apply_report(struct ns *ns, struct ns_server *s, const Imgstore__Heartbeat *hb,
                           size_t *skipped, struct ns_block_changes *ch);

/* Removes server s as a holder of block `id` (dropping the block when no
 * holder is left). No-op when s does not hold it. */
void ns_block_remove_rep(struct ns *ns, uint64_t id, struct ns_server *s);

/* Records a block that every chosen server created: holders rep[0..n-1],
 * primary rep[0], empty, unsealed (ns_pool_add_created also lists it in the
 * pool). Returns the block (valid until the next insertion or removal), or
 * NULL on allocation failure. */
struct ns_block *ns_blocks_add_created(struct ns *ns, uint64_t id, struct ns_server *const *reps,
                                       unsigned n);

/* ---- writable pool and placement (ns_pool.c) ----------------------------- */

/* Returns non-zero when b may take writes: unsealed, primary known and up,
 * exactly ns->meta.replicas holders, all up, writable and above their
 * reserve, size < block_size - margin. */
int ns_block_writable(const struct ns *ns, const struct ns_block *b);

/* Chooses n distinct up, non-readonly, non-draining servers with room for a
 * block above their reserve (ns_server_has_room), the emptiest first: lowest
 * used fraction (used / capacity, in whole points), then most free bytes
 * (in units of 16 blocks), ties broken randomly, into out[0..n-1]. Returns 0 or
 * IMG_ENOBLOCK when fewer than n qualify (out untouched then). */
int ns_pool_place(struct ns *ns, unsigned n, struct ns_server **out);

/* Lists b as a writable candidate (no-op when listed). Returns 0 or -ENOMEM. */
int ns_pool_add(struct ns *ns, struct ns_block *b);

/* Records a block every chosen server created (ns_blocks_add_created) and
 * lists it in the pool. Returns 0 or -ENOMEM. */
int ns_pool_add_created(struct ns *ns, uint64_t id, struct ns_server *const *reps, unsigned n);

/* Drops candidates that are gone or no longer writable. Returns how many
 * writable blocks remain listed. */
size_t ns_pool_prune(struct ns *ns);

/* Fills ids[0..max-1] with writable blocks not in exclude[0..nexcl-1], in
 * random order. Returns how many were written. */
size_t ns_pool_pick(struct ns *ns, const uint64_t *exclude, size_t nexcl, uint64_t *ids,
                    size_t max);

/* One planner step: starts block creations (CREATE_BLOCK to each chosen
 * server's session) until the pool target is covered or
 * NS_MAX_CREATES_INFLIGHT are in flight. Needs sessions (ns->loop). */
void ns_pool_plan(struct ns *ns);

/* ---- the nameserver ------------------------------------------------------- */

struct ns_peer; /* one accepted connection (ns_rpc.c) */

struct ns_config {
    const char *listen;
    const char *data_dir;
    const char *http;         /* --http HOST:PORT (ns_http.c), NULL: none */
    uint32_t replicas;        /* 0: persisted value or default */
    uint64_t block_size;      /* 0: persisted value or default */
    uint64_t hb_timeout_ms;
    uint64_t safe_mode_ms;
    uint32_t task_cap;        /* background tasks per server; 0: NS_DEFAULT_TASK_CAP */
    uint64_t copy_rate;       /* bytes/s per copying server; 0: NS_DEFAULT_COPY_RATE */
    uint32_t compact_pct;     /* deleted % that compacts a block; 0: NS_DEFAULT_COMPACT_PCT */
    /* Limits of both ports (docs/operations.md, "Limits"); 0: the default. */
    uint32_t frame_ms;        /* --frame-timeout-ms: CONN_FRAME_MS */
    uint32_t idle_ms;         /* --idle-timeout-ms (native port): CONN_IDLE_MS */
    uint32_t max_conns;       /* --max-conns: LIMITS_MAX_CONNS (each port) */
    uint32_t max_conns_per_addr; /* --max-conns-per-addr: LIMITS_MAX_CONNS_PER_ADDR */
};

struct auth_keys;
struct ns_ha;

struct ns {
    struct ns_config cfg;
    struct ns_meta meta;
    int lock_fd;                    /* -1 when no lock is held */

    struct ns_server **servers;     /* index = ns_server.idx (owned) */
    size_t nservers;

    struct ns_blocks blocks;

    uint64_t *pool;                 /* writable candidates (ids, owned) */
    size_t npool, pool_cap;
    unsigned creates_inflight;
    uint64_t create_retry_ms;       /* loop time before which no creation starts */
    int warned_few_servers;

    int safe_mode;
    uint64_t start_ms;
    /* --etcd: 1 from the start of a term until every up server sent this
     * leader a full report (or the safe-mode timeout passed): until then
     * the map may lack the last commands of the previous leader (replica
     * set versions), so the planner, balancer and set changes wait
     * (ns_settle_check); settle_ms: the loop time the term began */
    int settling;
    uint64_t settle_ms;

    struct ns_plan plan;            /* self-healing tasks (ns_plan.c) */
    struct ns_balance bal;          /* rebalancing moves (ns_balance.c) */
    struct ns_dj dj;                /* the delete journal (ns_deljournal.c, ns_delnote.c) */
    struct ns_bad *bad;             /* bad replicas (ns_bad.c, owned) */
    struct ns_ec *ec;               /* erasure-coded stripes (ns_ec.c, owned), NULL until one */
    size_t nbad, bad_cap;

    uint64_t rng;                   /* xorshift state, never 0 */

    uv_loop_t *loop;                /* NULL in unit tests */
    uv_tcp_t listener;
    uv_timer_t tick;
    struct ns_peer *peers;          /* every accepted connection */
    struct conn_gate gate;          /* the native port's connections per address */
    uint64_t requests[256];         /* requests received, by frame type (metrics) */
    struct auth_keys *keys;         /* --keys (owned, ns_free frees it); NULL: off */
    struct ns_ha *ha;               /* --etcd (ns_etcd.c, owned); NULL: one nameserver */
    int known_shared;               /* --etcd: the known servers of this term came from
                                     * etcd, so all of them reporting ends safe mode */
    uint64_t keys_checked_ms;       /* loop time the keys file was last looked at */
    int stopping;
    int started;
};

/* Initialises *ns with `cfg` (strings are borrowed and must outlive ns):
 * creates and locks the data folder, opens the metadata, seeds the random
 * state, and enters safe mode at now_ms. Returns 0, IMG_ELOCKED, IMG_EFORMAT
 * or a negative errno; on failure ns_free is still safe. */
int ns_init(struct ns *ns, const struct ns_config *cfg, uint64_t now_ms);

/* Frees everything ns owns (not the struct); releases the folder lock. Call
 * only after the loop has closed every handle (or when it never started). */
void ns_free(struct ns *ns);

/* Returns a pseudo-random 64-bit value (not for secrets). */
uint64_t ns_rand(struct ns *ns);

/* qsort/bsearch comparison of two uint64_t (block ids). */
int ns_cmp_u64(const void *a, const void *b);

/* Leaves safe mode when every known server has sent a full report or the
 * safe-mode timeout has passed (logged once). Returns ns->safe_mode. */
int ns_safe_mode_check(struct ns *ns, uint64_t now_ms);
/* Ends a new term's settling (ns->settling) once every up server sent a
 * full report this term, or after the safe-mode timeout (logged). Returns
 * ns->settling. */
int ns_settle_check(struct ns *ns, uint64_t now_ms);

/* Starts listening on cfg.listen and the liveness/planner timer on `loop`
 * (signals are the caller's: main.c calls ns_stop on SIGINT/SIGTERM).
 * Returns 0 or a negative errno (logged). */
int ns_start(struct ns *ns, uv_loop_t *loop);

/* With --etcd: this nameserver stopped leading; closes every dataserver
 * session so no command leaves it (ns_etcd.c calls it on the loop). */
void ns_rpc_demoted(struct ns *ns);

/* Closes the listener, every connection and the timer; the loop then runs
 * dry. Safe to call more than once. */
void ns_stop(struct ns *ns);

#endif
