/* cache.h - the client library's caches of writable blocks and block
 * locations (client library internals).
 *
 * Writable blocks come from ALLOC_WRITE and are handed out at random to
 * uploads until a write on one fails, when the caller drops it. Locations
 * come from LOOKUP (and ALLOC_WRITE) and live CACHE_LOC_TTL_MS, in a
 * direct-mapped table of CACHE_LOC_SLOTS entries: bounded memory, a newer
 * block simply evicts an older one in the same slot.
 *
 * Threading: every function locks the cache's mutex; entries are copied in
 * and out, so no caller ever holds a pointer into the cache. */
#ifndef IMGSTORE_CACHE_H
#define IMGSTORE_CACHE_H

#include "client/rpc.h"
#include "proto/imgstore.pb-c.h"
#include "proto/replicas.h"

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#define CACHE_MAX_REPLICAS 8    /* replicas kept per block; more are ignored */
#define CACHE_WRITABLE_MAX 16   /* writable blocks kept */
#define CACHE_LOC_SLOTS 1024    /* location table size */
#define CACHE_LOC_TTL_MS 10000  /* a location is re-asked after this */

#define CACHE_EC_SHARDS 14      /* shard holders kept per erasure-coded block */

/* One shard holder of an erasure-coded block (LOOKUP's ShardLocation). */
struct cache_shard {
    uint32_t index;
    uint32_t seq_first, seq_last; /* data shards: the live files' seq range */
    char addr[RPC_ADDR_MAX];
};

/* Where a block lives: native addresses, primary first; for an
 * erasure-coded block (ec_k > 0) also its shard holders. */
struct cache_loc {
    uint64_t block_id;
    int n; /* replicas; 0 with nshards 0 marks an empty slot */
    int sealed;
    int64_t expires_ms;
    char addr[CACHE_MAX_REPLICAS][RPC_ADDR_MAX];
    int ec_k;
    int nshards;
    struct cache_shard shards[CACHE_EC_SHARDS];
};

struct cache {
    pthread_mutex_t mu;
    struct cache_loc writable[CACHE_WRITABLE_MAX];
    int nwritable;
    struct cache_loc *locs; /* CACHE_LOC_SLOTS entries, owned */
    uint64_t rng;           /* advanced atomically */
};

/* Initialises an empty cache. Returns 0 or a negative errno. */
int cache_init(struct cache *c);

/* Frees the cache's memory. NULL-safe on an initialised or zeroed cache. */
void cache_destroy(struct cache *c);

/* Returns a pseudo-random number (thread-safe, not for secrets). */
uint32_t cache_random(struct cache *c);

/* Fills *out from a protobuf replica list (borrowed) by the protocol's
 * replica-list rule for `use` (proto/replicas.h). Returns 0, or IMG_EPROTO
 * when the list is refused. */
int cache_loc_from_replicas(struct cache_loc *out, uint64_t block_id, Imgstore__Replica **r,
                            size_t n, enum replicas_use use);

/* Adds the shard holders of LOOKUP location bl (borrowed) to *out: ec_k and
 * every entry with a usable address (others are skipped). Returns how many. */
int cache_loc_add_shards(struct cache_loc *out, const Imgstore__BlockLocation *bl);

/* The addresses to READ file `seq` of a block at: its replicas when it has
 * any; else the holder of the data shard whose seq range holds seq, or,
 * when none does, every shard holder (each answers from the block's record
 * table). Fills out->n and out->addr only. Returns 1 when out holds
 * replicas or the data shard's holder, 0 for the fallback (that holder is
 * not listed: down, or the seq is in no range). */
int cache_loc_route(const struct cache_loc *loc, uint32_t seq, struct cache_loc *out);

/* The shard holders of loc other than the holder of the data shard whose
 * seq range holds seq (their addresses), for a degraded read: each can
 * rebuild the file. Fills out->n and out->addr only. */
void cache_loc_route_degraded(const struct cache_loc *loc, uint32_t seq, struct cache_loc *out);

/* Adds (or replaces) a writable block; when the cache is full the new one is
 * ignored. */
void cache_writable_add(struct cache *c, const struct cache_loc *l);

/* Copies a random writable block whose id is not in excl[0..nexcl) into
 * *out. Returns 0, or IMG_ENOBLOCK when there is none. */
int cache_writable_pick(struct cache *c, const uint64_t *excl, size_t nexcl,
                        struct cache_loc *out);

/* Forgets a writable block (after a failed write on it). */
void cache_writable_drop(struct cache *c, uint64_t block_id);

/* Copies the unexpired location of block_id into *out. Returns 0 or
 * IMG_ENOTFOUND on a miss. */
int cache_loc_get(struct cache *c, uint64_t block_id, struct cache_loc *out);

/* Copies the location of block_id into *out even when it has expired (the
 * last one known: what a reader falls back on while the nameserver cannot
 * be reached). Returns 0 or IMG_ENOTFOUND on a miss or a dropped entry. */
int cache_loc_get_stale(struct cache *c, uint64_t block_id, struct cache_loc *out);

/* Stores a location (copied), valid for CACHE_LOC_TTL_MS from now. */
void cache_loc_put(struct cache *c, const struct cache_loc *l);

/* Forgets the location of block_id (after an error that suggests it moved,
 * or a pass in which every replica failed). A forgotten location is never a
 * stale fallback (cache_loc_get_stale). */
void cache_loc_drop(struct cache *c, uint64_t block_id);

#endif
