/* cache.c - writable-block and block-location caches of the client library
 * (see cache.h). */
#include "client/cache.h"

#include "base/array.h"
#include "base/err.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int cache_init(struct cache *c)
{
    memset(c, 0, sizeof(*c));
    c->locs = calloc(CACHE_LOC_SLOTS, sizeof(*c->locs));
    if (!c->locs)
        return -ENOMEM;
    int rc = pthread_mutex_init(&c->mu, NULL);
    if (rc != 0) {
        free(c->locs);
        c->locs = NULL;
        return -rc;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    c->rng = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ ((uint64_t)getpid() << 40) ^
             (uint64_t)(uintptr_t)c;
    return 0;
}

void cache_destroy(struct cache *c)
{
    if (!c || !c->locs)
        return;
    free(c->locs);
    c->locs = NULL;
    pthread_mutex_destroy(&c->mu);
}

uint32_t cache_random(struct cache *c)
{
    /* splitmix64 over an atomically advanced counter: lock-free and good
     * enough to spread load over blocks and replicas. */
    uint64_t z = __atomic_add_fetch(&c->rng, UINT64_C(0x9E3779B97F4A7C15), __ATOMIC_RELAXED);
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return (uint32_t)((z ^ (z >> 31)) >> 16);
}

int cache_loc_from_replicas(struct cache_loc *out, uint64_t block_id, Imgstore__Replica **r,
                            size_t n, enum replicas_use use)
{
    memset(out, 0, sizeof(*out));
    out->block_id = block_id;
    int got = replicas_addrs(r, n, use, &out->addr[0][0], CACHE_MAX_REPLICAS, RPC_ADDR_MAX);
    if (got < 0)
        return got;
    out->n = got;
    return 0;
}

int cache_loc_add_shards(struct cache_loc *out, const Imgstore__BlockLocation *bl)
{
    out->ec_k = (int)bl->ec_k;
    out->nshards = 0;
    for (size_t i = 0; i < bl->n_shards && out->nshards < CACHE_EC_SHARDS; i++) {
        const Imgstore__ShardLocation *s = bl->shards[i];
        if (!s || !s->server || s->seq_first > s->seq_last)
            continue;
        struct cache_shard *d = &out->shards[out->nshards];
        Imgstore__Replica *r = s->server;
        if (replicas_addrs(&r, 1, REPLICAS_READ, d->addr, 1, RPC_ADDR_MAX) != 1)
            continue;
        d->index = s->index;
        d->seq_first = s->seq_first;
        d->seq_last = s->seq_last;
        out->nshards++;
    }
    return out->nshards;
}

int cache_loc_route(const struct cache_loc *loc, uint32_t seq, struct cache_loc *out)
{
    out->n = 0;
    if (loc->n > 0) {
        out->n = loc->n;
        memcpy(out->addr, loc->addr, sizeof(out->addr));
        return 1;
    }
    for (int i = 0; i < loc->nshards; i++) {
        const struct cache_shard *s = &loc->shards[i];
        if ((int)s->index < loc->ec_k && s->seq_first && seq >= s->seq_first &&
            seq <= s->seq_last) {
            memcpy(out->addr[0], s->addr, RPC_ADDR_MAX);
            out->n = 1;
            return 1;
        }
    }
    for (int i = 0; i < loc->nshards && out->n < CACHE_MAX_REPLICAS; i++)
        memcpy(out->addr[out->n++], loc->shards[i].addr, RPC_ADDR_MAX);
    return 0;
}

void cache_loc_route_degraded(const struct cache_loc *loc, uint32_t seq, struct cache_loc *out)
{
    out->n = 0;
    for (int i = 0; i < loc->nshards && out->n < CACHE_MAX_REPLICAS; i++) {
        const struct cache_shard *s = &loc->shards[i];
        if ((int)s->index < loc->ec_k && s->seq_first && seq >= s->seq_first &&
            seq <= s->seq_last)
            continue; /* the data shard's holder: it did not answer */
        memcpy(out->addr[out->n++], s->addr, RPC_ADDR_MAX);
    }
}

static int find_writable(const struct cache *c, uint64_t block_id)
{
    for (int i = 0; i < c->nwritable; i++)
        if (c->writable[i].block_id == block_id)
            return i;
    return -1;
}

void cache_writable_add(struct cache *c, const struct cache_loc *l)
{
    pthread_mutex_lock(&c->mu);
    int i = find_writable(c, l->block_id);
    if (i >= 0)
        c->writable[i] = *l;
    else if (c->nwritable < CACHE_WRITABLE_MAX)
        c->writable[c->nwritable++] = *l;
    pthread_mutex_unlock(&c->mu);
}

int cache_writable_pick(struct cache *c, const uint64_t *excl, size_t nexcl,
                        struct cache_loc *out)
{
    uint32_t r = cache_random(c);
    int rc = IMG_ENOBLOCK;
    pthread_mutex_lock(&c->mu);
    int n = c->nwritable;
    for (int k = 0; n > 0 && k < n; k++) {
        const struct cache_loc *l = &c->writable[(r + (uint32_t)k) % (uint32_t)n];
        if (!array_has_u64(excl, nexcl, l->block_id)) {
            *out = *l;
            rc = 0;
            break;
        }
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

void cache_writable_drop(struct cache *c, uint64_t block_id)
{
    pthread_mutex_lock(&c->mu);
    int i = find_writable(c, block_id);
    if (i >= 0)
        c->writable[i] = c->writable[--c->nwritable];
    pthread_mutex_unlock(&c->mu);
}

static struct cache_loc *slot(struct cache *c, uint64_t block_id)
{
    return &c->locs[block_id % CACHE_LOC_SLOTS];
}

static int loc_get(struct cache *c, uint64_t block_id, int64_t now, struct cache_loc *out)
{
    int rc = IMG_ENOTFOUND;
    pthread_mutex_lock(&c->mu);
    struct cache_loc *s = slot(c, block_id);
    if ((s->n > 0 || s->nshards > 0) && s->block_id == block_id && s->expires_ms > now) {
        *out = *s;
        rc = 0;
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

int cache_loc_get(struct cache *c, uint64_t block_id, struct cache_loc *out)
{
    return loc_get(c, block_id, rpc_now_ms(), out);
}

int cache_loc_get_stale(struct cache *c, uint64_t block_id, struct cache_loc *out)
{
    return loc_get(c, block_id, INT64_MIN, out);
}

void cache_loc_put(struct cache *c, const struct cache_loc *l)
{
    int64_t expires = rpc_now_ms() + CACHE_LOC_TTL_MS;
    pthread_mutex_lock(&c->mu);
    struct cache_loc *s = slot(c, l->block_id);
    *s = *l;
    s->expires_ms = expires;
    pthread_mutex_unlock(&c->mu);
}

void cache_loc_drop(struct cache *c, uint64_t block_id)
{
    pthread_mutex_lock(&c->mu);
    struct cache_loc *s = slot(c, block_id);
    if (s->block_id == block_id)
        s->n = s->nshards = 0;
    pthread_mutex_unlock(&c->mu);
}
