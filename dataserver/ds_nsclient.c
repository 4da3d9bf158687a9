/* ds_nsclient.c - LOOKUP and ALLOC_WRITE from the dataserver (ds_nsclient.h).
 *
 * One connection to the nameserver, opened on first use and again after it
 * drops. It authenticates with our member key at once (net/auth_link.h);
 * ALLOC_WRITE waits for that, LOOKUP (open to anyone) does not, so a slow
 * or frozen nameserver still lets an expired location be served after
 * DS_NSC_STALE_TIMEOUT_MS. Answers are validated before they are cached, by
 * the protocol's replica-list rule (proto/replicas.h): a malformed address is skipped (for
 * a writable block, a malformed primary refuses the block), a block with no
 * usable replica is treated as absent.
 *
 * With several nameservers (--ns A,B,C) the connection goes to the one that
 * answered last; a request that fails to connect, times out or is refused
 * with IMG_ENOTLEADER moves it to the leader the answer names (NotLeader),
 * else to the next one, and is sent again there, at most once per
 * nameserver of the list. */
#include "dataserver/ds_nsclient.h"

#include "base/array.h"
#include "base/err.h"
#include "base/log.h"
#include "proto/addr.h"
#include "proto/fname.h"
#include "proto/imgstore.pb-c.h"
#include "proto/replicas.h"
#include "net/auth_link.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct ds_nsclient {
    struct ds *ds;
    int cur; /* index in ds->ns_list of the nameserver c goes to */
    struct conn *c;
    struct auth_link *link; /* c's handshake */
    struct ds_loc *locs; /* DS_LOC_SLOTS, slot = block_id % DS_LOC_SLOTS */
    struct ds_loc writable[DS_WRITABLE_MAX];
    int nwritable;
    uint32_t rng;
};

struct nsc_req {
    struct ds *ds;
    int tries;   /* nameservers asked */
    int sent_to; /* the last one, an index of ds->ns_list */
    uint64_t block_id;
    ds_nsc_loc_cb cb;
    void *arg;
};

int ds_nsc_init(struct ds *ds)
{
    struct ds_nsclient *n = calloc(1, sizeof(*n));
    struct ds_loc *locs = n ? calloc(DS_LOC_SLOTS, sizeof(*locs)) : NULL;
    if (!locs) {
        free(n);
        return -ENOMEM;
    }
    n->ds = ds;
    n->locs = locs;
    n->rng = (uint32_t)(uintptr_t)n ^ (uint32_t)uv_hrtime();
    ds->nsc = n;
    return 0;
}

void ds_nsc_stop(struct ds *ds)
{
    struct ds_nsclient *n = ds->nsc;
    if (n && n->c)
        conn_close(n->c);
}

void ds_nsc_free(struct ds *ds)
{
    struct ds_nsclient *n = ds->nsc;
    if (!n)
        return;
    free(n->locs);
    free(n);
    ds->nsc = NULL;
}

static void nsc_frame(struct conn *c, const struct frame *f, void *ctx)
{
    conn_reply(c, &f->h, IMG_EBADTYPE, NULL, NULL, 0, NULL);
}

static void nsc_closed(struct conn *c, void *ctx)
{
    struct ds_nsclient *n = ctx;
    auth_link_free(conn_get_data(c));
    if (n->c == c) {
        n->c = NULL;
        n->link = NULL;
    }
}

static struct conn *nsc_conn(struct ds_nsclient *n)
{
    if (n->c && !conn_is_closing(n->c))
        return n->c;
    const struct nslist *l = &n->ds->ns_list;
    const char *addr = l->n > 0 ? l->addr[n->cur] : n->ds->ns_addr;
    n->c = conn_connect(n->ds->loop, addr, nsc_frame, nsc_closed, n);
    if (!n->c)
        return NULL;
    n->link = ds_auth_link(n->ds, n->c, NULL, NULL);
    conn_set_data(n->c, n->link);
    if (!n->link) {
        conn_close(n->c);
        return NULL; /* nsc_closed forgets it */
    }
    return n->c;
}

/* After a request sent to nameserver `sent_to` (an index of the list), the
 * tries-th one asked, got `status` / f (conn_reply_cb's): returns 1 when it
 * is worth sending again to another one, 0 otherwise. When sent_to is
 * still the current one, the current one becomes the leader an
 * IMG_ENOTLEADER answer names (when in our list), else the next; when
 * another request moved it already, it stays. */
static int nsc_failover(struct ds_nsclient *n, int status, const struct frame *f, int sent_to,
                        int tries)
{
    const struct nslist *l = &n->ds->ns_list;
    status = conn_reply_status(status, f);
    if (n->ds->stopping || l->n < 2 || tries >= l->n ||
        (status != IMG_ECONN && status != IMG_ETIMEDOUT && status != IMG_ENOTLEADER))
        return 0;
    if (sent_to != n->cur)
        return 1;
    int next = -1;
    if (status == IMG_ENOTLEADER && f && f->h.head_len > 0) {
        Imgstore__NotLeader *nl =
            imgstore__not_leader__unpack(NULL, f->h.head_len, f->head);
        if (nl)
            next = nslist_find(l, nl->leader_addr);
        if (nl)
            imgstore__not_leader__free_unpacked(nl, NULL);
    }
    if (next < 0 || next == n->cur)
        next = (n->cur + 1) % l->n;
    log_warn("nameserver %s: %s; asking %s", l->addr[n->cur], img_strerror(status),
             l->addr[next]);
    n->cur = next;
    if (n->c && !conn_is_closing(n->c))
        conn_close(n->c); /* nsc_closed forgets it */
    n->c = NULL;
    n->link = NULL;
    return 1;
}

_Static_assert(DS_ADDR_MAX >= ADDR_MAX, "a ds_loc row holds any wire address");

/* Fills *out from the replicas of a nameserver answer, by the replica-list
 * rule for `use` (proto/replicas.h). 0, or IMG_EPROTO when the list is
 * refused. */
static int loc_from_replicas(struct ds_loc *out, uint64_t block_id, Imgstore__Replica **r,
                             size_t nr, enum replicas_use use, uint64_t expires)
{
    memset(out, 0, sizeof(*out));
    out->block_id = block_id;
    out->expires_ms = expires;
    int got = replicas_addrs(r, nr, use, &out->addr[0][0], DS_LOC_MAX_REPLICAS, DS_ADDR_MAX);
    if (got < 0)
        return got;
    out->n = got;
    return 0;
}

/* Adds the shard holders of LOOKUP location bl to *out. Returns how many. */
static int loc_add_shards(struct ds_loc *out, const Imgstore__BlockLocation *bl)
{
    out->ec_k = (int)bl->ec_k;
    out->nshards = 0;
    for (size_t i = 0; i < bl->n_shards && out->nshards < DS_LOC_MAX_SHARDS; i++) {
        const Imgstore__ShardLocation *s = bl->shards[i];
        Imgstore__Replica *r = s ? s->server : NULL;
        int j = out->nshards;
        if (!r || s->seq_first > s->seq_last ||
            replicas_addrs(&r, 1, REPLICAS_READ, out->sh_addr[j], 1, DS_ADDR_MAX) != 1)
            continue;
        out->sh_index[j] = s->index;
        out->sh_first[j] = s->seq_first;
        out->sh_last[j] = s->seq_last;
        out->nshards++;
    }
    return out->nshards;
}

void ds_nsc_route(struct ds_loc *l, uint32_t seq)
{
    if (l->n > 0 || l->nshards == 0)
        return;
    l->n_replicas_none = 1;
    for (int i = 0; i < l->nshards; i++)
        if ((int)l->sh_index[i] < l->ec_k && l->sh_first[i] && seq >= l->sh_first[i] &&
            seq <= l->sh_last[i]) {
            memcpy(l->addr[0], l->sh_addr[i], DS_ADDR_MAX);
            l->n = 1;
            return;
        }
    for (int i = 0; i < l->nshards && l->n < DS_LOC_MAX_REPLICAS; i++)
        memcpy(l->addr[l->n++], l->sh_addr[i], DS_ADDR_MAX);
}

/* The cached entry of block_id, fresh or expired, or NULL. */
static struct ds_loc *loc_entry(struct ds *ds, uint64_t block_id)
{
    struct ds_loc *l = &ds->nsc->locs[block_id % DS_LOC_SLOTS];
    return (l->n > 0 || l->nshards > 0) && l->block_id == block_id ? l : NULL;
}

int ds_nsc_cached_loc(struct ds *ds, uint64_t block_id, struct ds_loc *out)
{
    struct ds_loc *l = loc_entry(ds, block_id);
    if (!l || l->expires_ms <= uv_now(ds->loop))
        return IMG_ENOTFOUND;
    *out = *l;
    return 0;
}

void ds_nsc_drop_loc(struct ds *ds, uint64_t block_id)
{
    struct ds_loc *l = loc_entry(ds, block_id);
    if (l)
        l->expires_ms = 0;
}

static int lookup_send(struct nsc_req *q);

static void lookup_reply(int status, const struct frame *f, void *arg)
{
    struct nsc_req *q = arg;
    struct ds *ds = q->ds;
    struct ds_loc loc;
    struct ds_loc *stale = loc_entry(ds, q->block_id);
    if (nsc_failover(ds->nsc, status, f, q->sent_to, q->tries) && lookup_send(q) == 0)
        return;
    if (status != 0 && stale) {
        /* The nameserver could not be reached: the last known answer. */
        log_warn("nameserver lookup of block %llu failed (%s): using its last known location",
                 (unsigned long long)q->block_id, img_strerror(status));
        stale->expires_ms = uv_now(ds->loop) + DS_LOC_TTL_MS;
        loc = *stale;
        q->cb(0, &loc, q->arg);
        free(q);
        return;
    }
    Imgstore__LookupResp *m =
        conn_reply_unpack(status, f, &imgstore__lookup_resp__descriptor, &status);
    if (m)
        status = IMG_ENOTFOUND; /* until a location for our block is found in it */
    for (size_t i = 0; m && i < m->n_locations; i++) {
        Imgstore__BlockLocation *bl = m->locations[i];
        if (!bl || bl->block_id != q->block_id)
            continue;
        if (loc_from_replicas(&loc, q->block_id, bl->replicas, bl->n_replicas, REPLICAS_READ,
                              uv_now(ds->loop) + DS_LOC_TTL_MS) != 0) {
            /* erasure-coded with its replicated copies gone: shards only */
            memset(&loc, 0, sizeof(loc));
            loc.block_id = q->block_id;
            loc.expires_ms = uv_now(ds->loop) + DS_LOC_TTL_MS;
            if (bl->n_replicas != 0 || loc_add_shards(&loc, bl) == 0)
                continue;
        } else if (bl->ec_k) {
            loc_add_shards(&loc, bl);
        }
        ds->nsc->locs[q->block_id % DS_LOC_SLOTS] = loc;
        status = 0;
        break;
    }
    for (size_t i = 0; m && status != 0 && i < m->n_unavailable; i++)
        if (m->unavailable[i] == q->block_id)
            status = IMG_EUNAVAIL; /* no live holder right now: 503, not 404 */
    if (m)
        imgstore__lookup_resp__free_unpacked(m, NULL);
    q->cb(status, status == 0 ? &loc : NULL, q->arg);
    free(q);
}

/* Sends q's LOOKUP to the current nameserver. 0, or an error (q not
 * taken). */
static int lookup_send(struct nsc_req *q)
{
    struct ds *ds = q->ds;
    struct conn *c = nsc_conn(ds->nsc);
    if (!c)
        return IMG_ECONN;
    q->sent_to = ds->nsc->cur;
    q->tries++;
    Imgstore__Lookup req = IMGSTORE__LOOKUP__INIT;
    req.block_ids = &q->block_id;
    req.n_block_ids = 1;
    return conn_request(c, FT_LOOKUP, &req.base, NULL, 0, NULL,
                        loc_entry(ds, q->block_id) ? DS_NSC_STALE_TIMEOUT_MS : DS_NSC_TIMEOUT_MS,
                        lookup_reply, q);
}

int ds_nsc_lookup(struct ds *ds, uint64_t block_id, ds_nsc_loc_cb cb, void *arg)
{
    struct nsc_req *q = calloc(1, sizeof(*q));
    if (!q)
        return -ENOMEM;
    q->ds = ds;
    q->block_id = block_id;
    q->cb = cb;
    q->arg = arg;
    int rc = lookup_send(q);
    if (rc != 0)
        free(q);
    return rc;
}

int ds_nsc_writable_pick(struct ds *ds, const uint64_t *excl, int nexcl, struct ds_loc *out)
{
    struct ds_nsclient *n = ds->nsc;
    uint64_t now = uv_now(ds->loop);
    int cand[DS_WRITABLE_MAX], ncand = 0;
    for (int i = 0; i < n->nwritable; i++)
        if (n->writable[i].expires_ms > now &&
            !(nexcl > 0 && array_has_u64(excl, (size_t)nexcl, n->writable[i].block_id)))
            cand[ncand++] = i;
    if (ncand == 0)
        return IMG_ENOBLOCK;
    n->rng = n->rng * 1103515245u + 12345u;
    *out = n->writable[cand[(n->rng >> 16) % (uint32_t)ncand]];
    return 0;
}

void ds_nsc_writable_drop(struct ds *ds, uint64_t block_id)
{
    struct ds_nsclient *n = ds->nsc;
    for (int i = 0; i < n->nwritable; i++) {
        if (n->writable[i].block_id == block_id) {
            n->writable[i] = n->writable[--n->nwritable];
            return;
        }
    }
}

struct alloc_req {
    struct ds *ds;
    int tries;   /* nameservers asked */
    int sent_to; /* the last one, an index of ds->ns_list */
    uint64_t excl[DS_WRITABLE_MAX * 4];
    int nexcl;
    ds_nsc_loc_cb cb;
    void *arg;
};

static int alloc_send(struct alloc_req *q);

static void alloc_reply(int status, const struct frame *f, void *arg)
{
    struct alloc_req *q = arg;
    struct ds *ds = q->ds;
    struct ds_nsclient *n = ds->nsc;
    if (nsc_failover(n, status, f, q->sent_to, q->tries) && alloc_send(q) == 0)
        return;
    Imgstore__AllocWriteResp *m =
        conn_reply_unpack(status, f, &imgstore__alloc_write_resp__descriptor, &status);
    if (m) {
        n->nwritable = 0;
        for (size_t i = 0; i < m->n_blocks && n->nwritable < DS_WRITABLE_MAX; i++) {
            Imgstore__WritableBlock *b = m->blocks[i];
            struct ds_loc l;
            if (!b || b->block_id > FNAME_MAX_BLOCK_ID ||
                loc_from_replicas(&l, b->block_id, b->replicas, b->n_replicas, REPLICAS_WRITE,
                                  uv_now(ds->loop) + DS_WRITABLE_TTL_MS) != 0)
                continue;
            n->writable[n->nwritable++] = l;
        }
        imgstore__alloc_write_resp__free_unpacked(m, NULL);
    }
    struct ds_loc pick;
    if (status == 0)
        status = ds_nsc_writable_pick(ds, q->excl, q->nexcl, &pick);
    q->cb(status, status == 0 ? &pick : NULL, q->arg);
    free(q);
}

/* Sends q's ALLOC_WRITE to the current nameserver (once our key is proved
 * on the connection). 0, or an error (q not taken). */
static int alloc_send(struct alloc_req *q)
{
    struct ds *ds = q->ds;
    if (!nsc_conn(ds->nsc))
        return IMG_ECONN;
    q->sent_to = ds->nsc->cur;
    q->tries++;
    Imgstore__AllocWrite req = IMGSTORE__ALLOC_WRITE__INIT;
    req.count = DS_WRITABLE_MAX / 2;
    req.exclude = q->excl;
    req.n_exclude = (size_t)q->nexcl;
    return auth_link_request(ds->nsc->link, FT_ALLOC_WRITE, &req.base, NULL, 0, NULL,
                             DS_NSC_TIMEOUT_MS, alloc_reply, q);
}

int ds_nsc_alloc_write(struct ds *ds, const uint64_t *excl, int nexcl, ds_nsc_loc_cb cb,
                       void *arg)
{
    struct alloc_req *q = calloc(1, sizeof(*q));
    if (!q)
        return -ENOMEM;
    q->ds = ds;
    q->cb = cb;
    q->arg = arg;
    q->nexcl = nexcl < (int)(sizeof(q->excl) / sizeof(q->excl[0]))
                   ? nexcl
                   : (int)(sizeof(q->excl) / sizeof(q->excl[0]));
    memcpy(q->excl, excl, (size_t)q->nexcl * sizeof(*excl));
    int rc = alloc_send(q);
    if (rc != 0)
        free(q);
    return rc;
}
