/* ds_ec_delete.c - deletes of files of erasure-coded blocks (docs/storage.md,
 * "Deletes").
 *
 * A client's DELETE reaches any holder of a shard of the block (ds_repl.c
 * hands it here when the block is held only as shards). That holder checks
 * the file in its record table (unknown seq or other cookie: IMG_ENOTFOUND;
 * deleted already: answered with was_deleted), asks the nameserver afresh
 * where every shard is, and requires all k+m shards on up holders (else
 * IMG_EUNAVAIL: a lost shard is being rebuilt; the client retries). It then
 * gives the tombstone to every holder, itself included (EC_TOMB): each
 * appends it to the block's tombstone file (fdatasync on the thread pool)
 * and marks the file deleted in its record tables. The DELETE is answered
 * once every holder has it durable. So no shard holder serves a deleted
 * file, and a shard rebuilt later takes the union of its sources'
 * deletions (ds_ec_rebuild.c). Calls ds_ec.c, ec_shard.c, ds_nsclient.c,
 * ds_peer.c. */
#include "dataserver/ds_ec.h"

#include "base/err.h"
#include "base/log.h"
#include "dataserver/ds_nsclient.h"

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
    unsigned pending;
    int rc;
};

static void del_piece(struct del *d, int status)
{
    if (status != 0 && d->rc == 0)
        d->rc = status;
    if (--d->pending > 0)
        return;
    if (d->rc != 0) {
        log_warn("delete of block %016" PRIx64 " seq %u not on every shard holder: %s", d->id,
                 d->seq, img_strerror(d->rc));
        ds_req_fail(d->r, d->rc == IMG_ENOTFOUND ? IMG_ENOTFOUND : IMG_EUNAVAIL);
    } else {
        Imgstore__DeleteResp m = IMGSTORE__DELETE_RESP__INIT;
        d->ds->deletes++;
        ds_req_answer(d->r, 0, &m.base, NULL, 0, NULL);
    }
    free(d);
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
    unsigned need = s ? (unsigned)(s->sh.h.k + s->sh.h.m) : 0;
    if (status != 0 || !s || (unsigned)loc->nshards < need) {
        /* a shard without an up holder (down, bad, being rebuilt): its new
         * holder could miss the tombstone; the client retries */
        ds_req_fail(d->r, IMG_EUNAVAIL);
        free(d);
        return;
    }
    d->pending = 1; /* held while sending */
    for (int i = 0; i < loc->nshards; i++) {
        d->pending++;
        if (strcmp(loc->sh_addr[i], ds->listen_addr) == 0) {
            int rc = tomb_start(ds, d->id, d->seq, d->cookie, local_done, d);
            if (rc != 0)
                del_piece(d, rc == 1 ? 0 : rc);
            continue;
        }
        Imgstore__EcTomb q = IMGSTORE__EC_TOMB__INIT;
        q.block_id = d->id;
        q.seq = d->seq;
        q.cookie = d->cookie;
        if (ds_peer_request(ds, loc->sh_addr[i], FT_EC_TOMB, &q.base, NULL, 0,
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
    if (e->deleted) {
        Imgstore__DeleteResp m = IMGSTORE__DELETE_RESP__INIT;
        m.was_deleted = 1;
        ds_req_answer(r, 0, &m.base, NULL, 0, NULL);
        return;
    }
    struct del *d = calloc(1, sizeof(*d));
    if (!d) {
        ds_req_fail(r, -ENOMEM);
        return;
    }
    *d = (struct del){.ds = ds, .r = r, .id = block_id, .seq = seq, .cookie = cookie};
    ds_nsc_drop_loc(ds, block_id); /* the holders now, not a cached answer */
    if (ds_nsc_lookup(ds, block_id, del_located, d) != 0) {
        free(d);
        ds_req_fail(r, IMG_EUNAVAIL);
    }
}
