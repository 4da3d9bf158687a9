/* ds_tomb.c - the delete journal as the dataserver sees it (ds_tomb.h).
 *
 * NOTE_DELETE goes out on the nameserver session (ds->ns_conn) once a sole
 * member's tombstone is durable here; ds_repl.c acknowledges the delete only
 * on its success. APPLY_TOMBSTONES comes in on the session: every listed file
 * still live in the copy gets a tombstone appended at the copy's tail (not
 * replicated: the nameserver sends it only to a copy it holds out of every
 * replica set), all durable before the answer; one with `shards` is for the
 * shards of an erasure-coded block (ds_ec_apply). NOTE_DELETE with `shards`
 * (ds_tomb_note_ec) journals a tombstone that some shard holders lack.
 * May call net/ (conn_request, auth_link), the storage engine (block,
 * blockio, index, needle), ds_block.c (ds_block_changed), ds_copy.c
 * (ds_copy_running) and ds_compact.c (ds_compact_busy). */
#include "dataserver/ds_tomb.h"

#include "base/err.h"
#include "base/log.h"
#include "dataserver/blockio.h"
#include "dataserver/ds_block.h"
#include "dataserver/ds_compact.h"
#include "dataserver/ds_copy.h"
#include "dataserver/ds_ec.h"
#include "net/auth_link.h"
#include "proto/imgstore.pb-c.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- NOTE_DELETE ------------------------------------------------------------------ */

struct note {
    void (*cb)(int status, void *arg);
    void *arg;
};

static void note_reply(int status, const struct frame *f, void *arg)
{
    struct note *n = arg;
    n->cb(conn_reply_status(status, f), n->arg);
    free(n);
}

int ds_tomb_note(struct ds *ds, uint64_t block_id, uint32_t seq, uint32_t cookie,
                 uint64_t tail_after, uint32_t set_version, void (*cb)(int status, void *arg),
                 void *arg)
{
    if (ds->stopping || !ds->ns_conn || conn_is_closing(ds->ns_conn) || !ds->ns_link ||
        !auth_link_ready(ds->ns_link))
        return IMG_EUNAVAIL;
    struct note *n = malloc(sizeof(*n));
    if (!n)
        return -ENOMEM;
    *n = (struct note){.cb = cb, .arg = arg};
    Imgstore__NoteDelete m = IMGSTORE__NOTE_DELETE__INIT;
    m.block_id = block_id;
    m.seq = seq;
    m.cookie = cookie;
    m.tail_after = tail_after;
    m.set_version = set_version;
    int rc = conn_request(ds->ns_conn, FT_NOTE_DELETE, &m.base, NULL, 0, NULL, DS_NOTE_TIMEOUT_MS,
                          note_reply, n);
    if (rc != 0) {
        free(n);
        return IMG_EUNAVAIL;
    }
    return 0;
}

int ds_tomb_note_ec(struct ds *ds, uint64_t block_id, uint32_t seq, uint32_t cookie,
                    const uint32_t *index, char **addr, size_t n,
                    void (*cb)(int status, void *arg), void *arg)
{
    if (ds->stopping || !ds->ns_conn || conn_is_closing(ds->ns_conn) || !ds->ns_link ||
        !auth_link_ready(ds->ns_link))
        return IMG_EUNAVAIL;
    struct note *nt = malloc(sizeof(*nt));
    if (!nt)
        return -ENOMEM;
    *nt = (struct note){.cb = cb, .arg = arg};
    Imgstore__NoteDelete m = IMGSTORE__NOTE_DELETE__INIT;
    m.block_id = block_id;
    m.seq = seq;
    m.cookie = cookie;
    m.shards = 1;
    m.n_shard_index = m.n_shard_addr = n;
    m.shard_index = (uint32_t *)index;
    m.shard_addr = addr;
    int rc = conn_request(ds->ns_conn, FT_NOTE_DELETE, &m.base, NULL, 0, NULL, DS_NOTE_TIMEOUT_MS,
                          note_reply, nt);
    if (rc != 0) {
        free(nt);
        return IMG_EUNAVAIL;
    }
    return 0;
}

/* ---- APPLY_TOMBSTONES ------------------------------------------------------------ */

/* One APPLY_TOMBSTONES with its appends in flight. */
struct apply {
    struct ds_req *req;
    uint64_t block_id;
    unsigned waiting;  /* appends not yet durable (+1 while they are started) */
    unsigned applied;
    int status;        /* first failure */
};

/* One tombstone being appended. */
struct apply_rec {
    struct apply *a;
    uint64_t offset;
    struct needle_header h;
    uint8_t *rec;
};

static void apply_finish(struct apply *a)
{
    struct ds *ds = a->req->ds;
    struct block *b = store_get(ds->store, a->block_id);
    if (b && a->applied)
        ds_block_changed(ds, b);
    if (a->status != 0) {
        log_warn("block %llu: appending journaled tombstones failed: %s",
                 (unsigned long long)a->block_id, img_strerror(a->status));
        if (b && !b->sealed)
            block_seal(b);
        ds_req_fail(a->req, a->status);
    } else {
        if (a->applied)
            log_info("block %llu: %u journaled tombstones appended (nameserver's delete journal)",
                     (unsigned long long)a->block_id, a->applied);
        Imgstore__ApplyTombstonesResp resp = IMGSTORE__APPLY_TOMBSTONES_RESP__INIT;
        resp.applied = a->applied;
        resp.size = b ? b->durable_tail : 0;
        ds_req_answer(a->req, 0, &resp.base, NULL, 0, NULL);
    }
    free(a);
}

static void apply_rec_done(int status, void *arg)
{
    struct apply_rec *ar = arg;
    struct apply *a = ar->a;
    struct block *b = store_get(a->req->ds->store, a->block_id);
    if (status == 0 && !b)
        status = IMG_ENOBLOCKHERE;
    if (status == 0)
        status = block_commit(b, ar->offset, &ar->h);
    if (status == 0)
        a->applied++;
    else if (a->status == 0)
        a->status = status;
    free(ar->rec);
    free(ar);
    if (--a->waiting == 0)
        apply_finish(a);
}

/* Starts the append of one tombstone; a failure is recorded in a. */
static void apply_one(struct ds *ds, struct block *b, struct apply *a, uint32_t seq,
                      uint32_t cookie)
{
    uint32_t rec_len = (uint32_t)needle_record_size(0);
    struct apply_rec *ar = calloc(1, sizeof(*ar));
    uint8_t *rec = ar ? malloc(rec_len) : NULL;
    int rc = rec ? block_reserve_tombstone(b, rec_len, &ar->offset) : -ENOMEM;
    if (rc != 0) {
        free(rec);
        free(ar);
        if (a->status == 0)
            a->status = rc;
        return;
    }
    ar->a = a;
    ar->rec = rec;
    ar->h.flags = NEEDLE_FLAG_TOMBSTONE | (ds->record_format >= 2 ? NEEDLE_FLAG_HCRC : 0);
    ar->h.seq = seq;
    ar->h.cookie = cookie;
    ar->h.ctime = (uint32_t)time(NULL);
    needle_build(rec, &ar->h, NULL, 0);
    a->waiting++;
    rc = blockio_append(ds->store->ring, b, rec, rec_len, ar->offset, apply_rec_done, ar);
    if (rc != 0) {
        /* The reserved range stays a hole: the copy must not take more. */
        block_seal(b);
        a->waiting--;
        if (a->status == 0)
            a->status = rc;
        free(rec);
        free(ar);
    }
}

void ds_tomb_apply(struct ds_req *r, const struct frame *f)
{
    struct ds *ds = r->ds;
    Imgstore__ApplyTombstones *m = ds_req_unpack(r, f, &imgstore__apply_tombstones__descriptor);
    if (!m)
        return;
    if (m->shards) {
        ds_ec_apply(r, m); /* the shards of an erasure-coded block (ds_ec_delete.c) */
        return;
    }
    int rc = 0;
    struct block *b = NULL;
    if (m->n_seqs != m->n_cookies || m->n_seqs > DS_APPLY_MAX)
        rc = IMG_EINVAL;
    else if (!(b = store_get(ds->store, m->block_id)))
        rc = IMG_ENOBLOCKHERE;
    else if (b->compacting || ds_compact_busy(ds, b) || ds_copy_running(ds, b->id) ||
             (b->primary && b->nreplicas > 1))
        rc = IMG_EUNAVAIL; /* the nameserver asks again (a primary with members: once
                            * demoted, or the members would miss the tombstones) */
    struct apply *a = rc ? NULL : calloc(1, sizeof(*a));
    if (!rc && !a)
        rc = -ENOMEM;
    if (rc) {
        imgstore__apply_tombstones__free_unpacked(m, NULL);
        ds_req_fail(r, rc);
        return;
    }
    a->req = r;
    a->block_id = b->id;
    a->waiting = 1; /* held while the appends are started */
    for (size_t i = 0; i < m->n_seqs && a->status == 0; i++) {
        uint64_t offset;
        uint32_t size;
        int deleted;
        if (index_get(&b->ix, m->seqs[i], &offset, &size, &deleted) != 0 || deleted)
            continue; /* unknown here, or deleted already */
        apply_one(ds, b, a, m->seqs[i], m->cookies[i]);
    }
    imgstore__apply_tombstones__free_unpacked(m, NULL);
    if (--a->waiting == 0)
        apply_finish(a);
}
