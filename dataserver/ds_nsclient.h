/* ds_nsclient.h - the dataserver as a client of the cluster: where blocks
 * live (LOOKUP), where to write (ALLOC_WRITE), both asked of the nameserver
 * on a connection of its own (not the heartbeat session, so a slow lookup
 * never delays a heartbeat), with small caches in front.
 *
 * Used by the HTTP origin to fetch files of blocks held elsewhere and to
 * store uploads. Everything runs on the loop thread. Location answers are
 * cached for DS_LOC_TTL_MS: blocks rarely move and a stale entry only costs
 * one failed request before it is dropped. */
#ifndef DS_NSCLIENT_H
#define DS_NSCLIENT_H

#include "dataserver/ds.h"

#include <stdint.h>

#define DS_LOC_MAX_REPLICAS 3
#define DS_LOC_TTL_MS 10000     /* how long a LOOKUP answer is trusted */
#define DS_LOC_SLOTS 1024       /* direct-mapped location cache */
#define DS_WRITABLE_MAX 8       /* writable blocks kept from ALLOC_WRITE */
#define DS_WRITABLE_TTL_MS 5000 /* how long an ALLOC_WRITE answer is used */
#define DS_NSC_TIMEOUT_MS 3000  /* one request to the nameserver */
#define DS_NSC_STALE_TIMEOUT_MS 500 /* a LOOKUP while an expired answer waits */

#define DS_LOC_MAX_SHARDS 14

/* Where one block lives: native addresses, primary first; an erasure-coded
 * block whose replicated copies are gone has n 0 and its shard holders
 * (LOOKUP's ShardLocation: index, seq range of a data shard, address). */
struct ds_loc {
    uint64_t block_id;
    int n;
    char addr[DS_LOC_MAX_REPLICAS][DS_ADDR_MAX];
    uint64_t expires_ms; /* loop time after which the entry is stale */
    int ec_k, nshards;
    int n_replicas_none;  /* set by ds_nsc_route: the addresses are shard holders */
    uint32_t sh_index[DS_LOC_MAX_SHARDS];
    uint32_t sh_first[DS_LOC_MAX_SHARDS], sh_last[DS_LOC_MAX_SHARDS];
    char sh_addr[DS_LOC_MAX_SHARDS][DS_ADDR_MAX];
};

/* For a shard-only location (n 0): sets n and addr to where file `seq` is
 * read: the holder of the data shard whose seq range holds it, else the
 * first shard holders (each answers from the block's record table). No-op
 * for a location with replicas. */
void ds_nsc_route(struct ds_loc *l, uint32_t seq);

/* status 0 with *loc (valid during the call only), or IMG_ENOTFOUND when no
 * live server holds the block, or the request's error. */
typedef void (*ds_nsc_loc_cb)(int status, const struct ds_loc *loc, void *arg);

/* Creates the client state (no connection yet). 0 or -ENOMEM. */
int ds_nsc_init(struct ds *ds);
/* Closes the connection; pending callbacks run with IMG_ECONN. */
void ds_nsc_stop(struct ds *ds);
/* Frees the client once stopped and its connection closed (the loop ran);
 * for a process that starts dataservers again (the fuzz fixture). */
void ds_nsc_free(struct ds *ds);

/* Copies the cached, fresh location of block_id into *out. 0 or
 * IMG_ENOTFOUND on a miss. */
int ds_nsc_cached_loc(struct ds *ds, uint64_t block_id, struct ds_loc *out);
/* Marks the cached location of block_id expired (kept only as the last
 * known answer, see ds_nsc_lookup). */
void ds_nsc_drop_loc(struct ds *ds, uint64_t block_id);
/* Asks the nameserver where block_id lives (and caches the answer). Returns 0
 * (cb runs later, exactly once) or an error (cb never runs).
 *
 * When an expired answer is cached, the nameserver gets
 * DS_NSC_STALE_TIMEOUT_MS; if it cannot be reached (down, frozen, cut off)
 * cb gets the expired answer, kept for another TTL: a nameserver outage must
 * not stop the origin from serving blocks it located before. An answer that
 * is out of date shows itself on the replicas. */
int ds_nsc_lookup(struct ds *ds, uint64_t block_id, ds_nsc_loc_cb cb, void *arg);

/* Picks a cached writable block not among excl[0..nexcl). 0 with *out, or
 * IMG_ENOBLOCK when none is cached. */
int ds_nsc_writable_pick(struct ds *ds, const uint64_t *excl, int nexcl, struct ds_loc *out);
/* Forgets a writable block (it failed a write). */
void ds_nsc_writable_drop(struct ds *ds, uint64_t block_id);
/* Asks the nameserver for writable blocks, excluding excl[0..nexcl), and
 * caches them; cb gets one of them (status 0), IMG_ENOBLOCK, or an error.
 * Returns 0 (cb runs later, exactly once) or an error (cb never runs). */
int ds_nsc_alloc_write(struct ds *ds, const uint64_t *excl, int nexcl, ds_nsc_loc_cb cb,
                       void *arg);

#endif
