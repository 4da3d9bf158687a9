/* ds_ec_delete.c - deletes of files of erasure-coded blocks (docs/storage.md,
 * "Deletes").
 *
 * A client's DELETE reaches any holder of a shard of the block (ds_repl.c
 * hands it here when the block is held only as shards). That holder checks
 * the file in its record table (unknown seq or other cookie: IMG_ENOTFOUND),
 * asks the nameserver afresh where every shard is (the up holders not held
 * out), and needs at least k of the k+m shards there (fewer: more holders
 * are down than the stripe can lose, IMG_EUNAVAIL). It gives the tombstone
 * to every listed holder, itself included (EC_TOMB): each appends it to the
 * block's tombstone file (fdatasync on the thread pool) and marks the file
 * deleted in its record tables; any failure answers IMG_EUNAVAIL (the
 * client retries: that holder may still serve, and a fresh lookup leaves it
 * out once the nameserver counts it down). When every shard was listed,
 * that is the answer; when some were not (down, held out), the tombstone
 * is also journaled at the nameserver
 * (NOTE_DELETE with shards, ds_tomb.c), which gives it to those holders
 * before they serve again (APPLY_TOMBSTONES, ds_ec_apply below) and to a
 * shard rebuilt meanwhile; the DELETE is answered once the journal has it
 * durable. A file deleted here already takes the same path (a former
 * attempt may have failed half way) and is answered was_deleted. So no
 * acknowledged delete has fewer than two durable homes, and no shard holder
 * serves a deleted file. Calls ds_ec.c, ec_shard.c, ds_nsclient.c,
 * ds_peer.c, ds_tomb.c. */
#include "dataserver/ds_ec.h"

#include "base/err.h"
#include "base/log.h"
#include "dataserver/ds_nsclient.h"
#include "dataserver/ds_tomb.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define DS_EC_TOMB_TIMEOUT_MS 5000

/* ---- one tombstone made durable here ------------------------------------------ */

typedef void (*tomb_cb)(int status, int was_deleted, void *arg);

struct tomb {
    uv_work_t w;
    struct ds *ds;
    uint64_t id;
    uint32_t seq, cookie;
    char dir[PATH_MAX];
    int rc;
    tomb_cb cb;
    void *arg;
};

static void tomb_run(uv_work_t *w)
{
    struct tomb *t = w->data;
    t->rc = ec_tomb_append(t->dir, t->id, t->seq, t->cookie);
}

static void tomb_after(uv_work_t *w, int status)
{
    struct tomb *t = w->data;
    int rc = status < 0 ? status : t->rc;
    if (rc == 0)
        ds_ec_mark_deleted(t->ds, t->id, t->seq);
    else
        log_error("block %016" PRIx64 " seq %u: tombstone not written: %s", t->id, t->seq,
                  img_strerror(rc));
    t->cb(rc, 0, t->arg);
    free(t);
}

/* Records the deletion of file (id, seq, cookie) here. Returns 0 and cb
 * runs later (was_deleted 0), or, without calling cb: IMG_ENOBLOCKHERE,
 * IMG_ENOTFOUND, 1 when the file is deleted here already, -ENOMEM. */
static int tomb_start(struct ds *ds, uint64_t id, uint32_t seq, uint32_t cookie, tomb_cb cb,
                      void *arg)
{
    struct ds_shard *s = ds_ec_find(ds, id);
    if (!s)
        return IMG_ENOBLOCKHERE;
    const struct ec_tent *e = ec_table_find(s->sh.tab, s->sh.ntab, seq);
    if (!e || e->cookie != cookie)
        return IMG_ENOTFOUND;
    if (e->deleted)
        return 1;
    struct tomb *t = calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    *t = (struct tomb){.ds = ds, .id = id, .seq = seq, .cookie = cookie, .cb = cb, .arg = arg};
    ds_ec_tomb_dir(ds, id, t->dir, sizeof(t->dir));
    t->w.data = t;
    int rc = uv_queue_work(ds->loop, &t->w, tomb_run, tomb_after);
    if (rc != 0)
        free(t);
    return rc;
}

/* ---- EC_TOMB (a peer's tombstone) ------------------------------------------------ */

static void tomb_answer(int status, int was_deleted, void *arg)
{
    struct ds_req *r = arg;
    Imgstore__EcTombResp m = IMGSTORE__EC_TOMB_RESP__INIT;
    m.was_deleted = was_deleted;
    ds_req_answer(r, status, status == 0 ? &m.base : NULL, NULL, 0, NULL);
}

void ds_ec_tomb(struct ds_req *r, const struct frame *f)
{
    Imgstore__EcTomb *q = ds_req_unpack(r, f, &imgstore__ec_tomb__descriptor);
    if (!q)
        return;
    int rc = tomb_start(r->ds, q->block_id, q->seq, q->cookie, tomb_answer, r);
    imgstore__ec_tomb__free_unpacked(q, NULL);
    if (rc == 1)
        tomb_answer(0, 1, r);
    else if (rc != 0)
        ds_req_fail(r, rc);
}

/* ---- a client's DELETE ------------------------------------------------------------- */

struct del {
    struct ds *ds;
    struct ds_req *r;
    uint64_t id;
    uint32_t seq, cookie;
    int was_deleted;       /* deleted here already when the DELETE came */
    unsigned pending;
    int rc;
    uint16_t up;           /* shards whose holders were listed */
    unsigned total;        /* k+m */
    size_t n;              /* holders listed */
    uint32_t index[EC_MAX_SHARDS];
    char addr[EC_MAX_SHARDS][DS_ADDR_MAX];
};

static void del_answer(struct del *d, int rc)
{
    if (rc != 0) {
        log_warn("delete of block %016" PRIx64 " seq %u not acknowledged: %s", d->id, d->seq,
                 img_strerror(rc));
        ds_req_fail(d->r, rc == IMG_ENOTFOUND ? IMG_ENOTFOUND : IMG_EUNAVAIL);
    } else {
        Imgstore__DeleteResp m = IMGSTORE__DELETE_RESP__INIT;
        m.was_deleted = d->was_deleted;
        if (!d->was_deleted)
            d->ds->deletes++;
        ds_req_answer(d->r, 0, &m.base, NULL, 0, NULL);
    }
    free(d);
}

static void noted(int status, void *arg)
{
    struct del *d = arg;
    if (status == 0)
        log_info("delete of block %016" PRIx64 " seq %u: on %zu of %u shard holders, journaled "
                 "at the nameserver for the others",
                 d->id, d->seq, d->n, d->total);
    del_answer(d, status);
}

static void del_piece(struct del *d, int status)
{
    if (status != 0 && d->rc == 0)
        d->rc = status;
    if (--d->pending > 0)
        return;
    if (d->rc != 0 || d->up == (uint16_t)((1u << d->total) - 1u)) {
        del_answer(d, d->rc);
        return;
    }
    /* Some shards' holders are down or held out: the journal is the second
     * home they get the tombstone from. */
    char *addrs[EC_MAX_SHARDS];
    for (size_t i = 0; i < d->n; i++)
        addrs[i] = d->addr[i];
    int rc = ds_tomb_note_ec(d->ds, d->id, d->seq, d->cookie, d->index, addrs, d->n, noted, d);
    if (rc != 0)
        del_answer(d, rc);
}

static void local_done(int status, int was_deleted, void *arg)
{
    (void)was_deleted;
    del_piece(arg, status);
}

static void peer_done(int status, const struct frame *f, void *arg)
{
    del_piece(arg, status ? status : f->h.status);
}

static void del_located(int status, const struct ds_loc *loc, void *arg)
{
    struct del *d = arg;
    struct ds *ds = d->ds;
    struct ds_shard *s = ds_ec_find(ds, d->id);
    if (status != 0 || !s) {
        del_answer(d, IMG_EUNAVAIL);
        return;
    }
    d->total = (unsigned)(s->sh.h.k + s->sh.h.m);
    for (int i = 0; i < loc->nshards && d->n < EC_MAX_SHARDS; i++) {
        if (loc->sh_index[i] >= d->total)
            continue;
        d->up |= (uint16_t)(1u << loc->sh_index[i]);
        d->index[d->n] = loc->sh_index[i];
        snprintf(d->addr[d->n++], DS_ADDR_MAX, "%s", loc->sh_addr[i]);
    }
    unsigned nup = (unsigned)__builtin_popcount(d->up);
    if (nup < s->sh.h.k) {
        log_warn("delete of block %016" PRIx64 " seq %u refused: %u of %u shards have an up "
                 "holder, more are down than the stripe can lose (%u)",
                 d->id, d->seq, nup, d->total, (unsigned)s->sh.h.m);
        del_answer(d, IMG_EUNAVAIL);
        return;
    }
    d->pending = 1; /* held while sending */
    for (size_t i = 0; i < d->n; i++) {
        d->pending++;
        if (strcmp(d->addr[i], ds->listen_addr) == 0) {
            int rc = tomb_start(ds, d->id, d->seq, d->cookie, local_done, d);
            if (rc != 0)
                del_piece(d, rc == 1 ? 0 : rc);
            continue;
        }
        Imgstore__EcTomb q = IMGSTORE__EC_TOMB__INIT;
        q.block_id = d->id;
        q.seq = d->seq;
        q.cookie = d->cookie;
        if (ds_peer_request(ds, d->addr[i], FT_EC_TOMB, &q.base, NULL, 0,
                            DS_EC_TOMB_TIMEOUT_MS, peer_done, d) != 0)
            del_piece(d, IMG_ECONN);
    }
    del_piece(d, 0);
}

void ds_ec_delete(struct ds_req *r, uint64_t block_id, uint32_t seq, uint32_t cookie)
{
    struct ds *ds = r->ds;
    struct ds_shard *s = ds_ec_find(ds, block_id);
    const struct ec_tent *e = s ? ec_table_find(s->sh.tab, s->sh.ntab, seq) : NULL;
    if (!e || e->cookie != cookie) {
        ds_req_fail(r, s ? IMG_ENOTFOUND : IMG_ENOBLOCKHERE);
        return;
    }
    struct del *d = calloc(1, sizeof(*d));
    if (!d) {
        ds_req_fail(r, -ENOMEM);
        return;
    }
    *d = (struct del){.ds = ds, .r = r, .id = block_id, .seq = seq, .cookie = cookie,
                      .was_deleted = e->deleted};
    ds_nsc_drop_loc(ds, block_id); /* the holders now, not a cached answer */
    if (ds_nsc_lookup(ds, block_id, del_located, d) != 0) {
        free(d);
        ds_req_fail(r, IMG_EUNAVAIL);
    }
}

/* ---- APPLY_TOMBSTONES for shards (the nameserver's delete journal) -------------------- */

struct apply {
    uv_work_t w;
    struct ds *ds;
    struct ds_req *r;
    uint64_t id;
    char dir[PATH_MAX];
    uint32_t *seqs, *cookies; /* owned: the files of the table among those sent */
    size_t n;
    int rc;
};

static void apply_run(uv_work_t *w)
{
    struct apply *a = w->data;
    a->rc = ec_tomb_append_n(a->dir, a->id, a->seqs, a->cookies, a->n);
}

static void apply_after(uv_work_t *w, int status)
{
    struct apply *a = w->data;
    int rc = status < 0 ? status : a->rc;
    if (rc == 0) {
        struct ds_shard *s = ds_ec_find(a->ds, a->id);
        int was_held = s && s->held;
        ds_ec_set_held(a->ds, a->id, 0);
        if (a->n || was_held)
            log_info("block %016" PRIx64 ": %zu journaled tombstones applied to its shards "
                     "here%s",
                     a->id, a->n, was_held ? "; they serve again" : "");
        Imgstore__ApplyTombstonesResp m = IMGSTORE__APPLY_TOMBSTONES_RESP__INIT;
        m.applied = (uint32_t)a->n;
        ds_req_answer(a->r, 0, &m.base, NULL, 0, NULL);
    } else {
        log_error("block %016" PRIx64 ": journaled tombstones not written: %s", a->id,
                  img_strerror(rc));
        ds_req_fail(a->r, rc);
    }
    free(a->seqs);
    free(a->cookies);
    free(a);
}

void ds_ec_apply(struct ds_req *r, Imgstore__ApplyTombstones *m)
{
    struct ds *ds = r->ds;
    struct ds_shard *s = ds_ec_find(ds, m->block_id);
    int rc = m->n_seqs != m->n_cookies || m->n_seqs > DS_APPLY_MAX ? IMG_EINVAL
             : !s                                                   ? IMG_ENOBLOCKHERE
                                                                    : 0;
    struct apply *a = rc ? NULL : calloc(1, sizeof(*a));
    if (!rc && a) {
        a->seqs = malloc((m->n_seqs + 1) * sizeof(uint32_t));
        a->cookies = malloc((m->n_seqs + 1) * sizeof(uint32_t));
    }
    if (!rc && (!a || !a->seqs || !a->cookies))
        rc = -ENOMEM;
    if (rc) {
        if (a) {
            free(a->seqs);
            free(a->cookies);
            free(a);
        }
        imgstore__apply_tombstones__free_unpacked(m, NULL);
        ds_req_fail(r, rc);
        return;
    }
    /* Marked deleted now, before the next frame (the answer that confirms
     * our view) is handled: nothing deleted is served from here on. Every
     * listed file is written again, deleted here or not (idempotent), so the
     * answer means durable. */
    for (size_t i = 0; i < m->n_seqs; i++) {
        const struct ec_tent *e = ec_table_find(s->sh.tab, s->sh.ntab, m->seqs[i]);
        if (!e || e->cookie != m->cookies[i])
            continue; /* not a file of this block */
        ds_ec_mark_deleted(ds, m->block_id, m->seqs[i]);
        a->seqs[a->n] = m->seqs[i];
        a->cookies[a->n++] = m->cookies[i];
    }
    a->ds = ds;
    a->r = r;
    a->id = m->block_id;
    imgstore__apply_tombstones__free_unpacked(m, NULL);
    ds_ec_tomb_dir(ds, a->id, a->dir, sizeof(a->dir));
    a->w.data = a;
    rc = uv_queue_work(ds->loop, &a->w, apply_run, apply_after);
    if (rc != 0) {
        free(a->seqs);
        free(a->cookies);
        free(a);
        ds_req_fail(r, rc);
    }
}
