/* ds_rpc.c - the dataserver's native port: WRITE, READ, STAT, DELETE and
 * REPL_APPEND (docs/protocol.md).
 *
 * A write on the primary: reserve seq and offset -> build the record ->
 * append it locally (group commit) and send the same bytes to every secondary
 * -> answer only when the local copy is durable and every secondary answered
 * 0. Any failure fails the write and seals the block (DESIGN.md invariant 5).
 * A delete is the same with a tombstone record. A read is one index lookup and
 * one io_uring read of header and data, checked before it is sent.
 *
 * Every request is hostile until validated; a malformed one gets a specific
 * error status and touches nothing on disk. */
#include "dataserver/ds.h"

#include "base/crc32c.h"
#include "base/err.h"
#include "base/log.h"
#include "dataserver/blockio.h"
#include "dataserver/ds_file.h"
#include "dataserver/ds_compact.h"
#include "dataserver/ds_copy.h"
#include "dataserver/ds_scrub.h"
#include "dataserver/ds_metrics.h"
#include "proto/imgstore.pb-c.h"
#include "proto/mime.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

/* Per-connection state. Requests in flight hold a reference, so a reply can
 * tell whether its connection is still open (c == NULL once closed). */
struct rpc_sess {
    struct ds *ds;
    struct conn *c;
    int refs;
};

/* One replicated append (a new file or a tombstone) in flight. */
struct rpc_append {
    struct rpc_sess *sess;
    struct frame_header req;
    struct block *b;
    uint64_t block_id;
    uint8_t *rec;
    uint32_t rec_len;
    uint64_t offset;
    struct needle_header h;
    int waiting;      /* local write + secondaries not yet answered */
    int local_status; /* 0 once durable locally */
    int repl_status;  /* first secondary failure */
    int is_delete;
};

/* One read (READ, STAT) or the cookie check of a DELETE. */
struct rpc_read {
    struct rpc_sess *sess;
    struct frame_header req;
    uint64_t block_id;
    uint32_t seq;
    uint32_t cookie;
    uint64_t offset;
    uint32_t size;
    int deleted;
    uint8_t *buf;
    size_t len;
};

static void sess_unref(struct rpc_sess *s)
{
    if (--s->refs == 0)
        free(s);
}

static void reply(struct rpc_sess *s, const struct frame_header *req, int status,
                  const ProtobufCMessage *msg, const void *body, uint32_t body_len,
                  conn_free_fn body_free)
{
    ds_metrics_end(s->ds, s, req, status, body_len);
    if (!s->c || conn_is_closing(s->c)) {
        if (body_free)
            body_free((void *)body);
        return;
    }
    conn_reply(s->c, req, status, msg, body, body_len, body_free);
}

/* A request answered later by another module (ds_copy.c). */
struct ds_rpc_req {
    struct rpc_sess *sess;
    struct frame_header h;
};

static struct ds_rpc_req *req_hold(struct rpc_sess *s, const struct frame_header *h)
{
    struct ds_rpc_req *r = malloc(sizeof(*r));
    if (!r)
        return NULL;
    r->sess = s;
    r->h = *h;
    s->refs++;
    return r;
}

void ds_rpc_answer(struct ds_rpc_req *r, int status, const ProtobufCMessage *msg,
                   const void *body, uint32_t body_len, conn_free_fn body_free)
{
    reply(r->sess, &r->h, status, msg, body, body_len, body_free);
    sess_unref(r->sess);
    free(r);
}

static uint32_t random_cookie(void)
{
    static uint32_t pool[256];
    static size_t left;
    if (left == 0) {
        if (getrandom(pool, sizeof(pool), 0) != (ssize_t)sizeof(pool)) {
            /* getrandom cannot fail for small sizes once the pool is seeded;
             * fall back to a time-seeded mix rather than a fixed value. */
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            uint32_t x = (uint32_t)ts.tv_nsec ^ (uint32_t)ts.tv_sec * 2654435761u;
            for (size_t i = 0; i < 256; i++) {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                pool[i] = x;
            }
        }
        left = 256;
    }
    return pool[--left];
}

static struct block *writable_primary_block(struct ds *ds, uint64_t id, int *err)
{
    struct block *b = store_get(ds->store, id);
    if (!b) {
        *err = IMG_ENOBLOCKHERE;
        return NULL;
    }
    if (!b->primary || !ds->primary_confirmed) {
        *err = IMG_ENOTPRIMARY;
        return NULL;
    }
    return b;
}

/* ---- replicated append (primary side) ------------------------------------ */

static void append_finish(struct rpc_append *a)
{
    struct ds *ds = a->sess->ds;
    int status = a->local_status ? a->local_status : a->repl_status;
    struct block *b = store_get(ds->store, a->block_id);
    if (status != 0) {
        if (b && !b->sealed) {
            log_warn("block %llu sealed: %s of seq %u at offset %llu failed: %s",
                     (unsigned long long)a->block_id, a->is_delete ? "delete" : "write",
                     a->h.seq, (unsigned long long)a->offset, img_strerror(status));
            block_seal(b);
            b->dirty = 1;
            ds_session_poke(ds);
        }
        reply(a->sess, &a->req, a->local_status ? a->local_status : IMG_EREPL, NULL, NULL, 0,
              NULL);
    } else if (a->is_delete) {
        Imgstore__DeleteResp resp = IMGSTORE__DELETE_RESP__INIT;
        ds->deletes++;
        reply(a->sess, &a->req, 0, &resp.base, NULL, 0, NULL);
    } else {
        Imgstore__WriteResp resp = IMGSTORE__WRITE_RESP__INIT;
        resp.block_id = a->block_id;
        resp.seq = a->h.seq;
        resp.cookie = a->h.cookie;
        resp.crc32c = a->h.data_crc;
        resp.created = a->h.ctime;
        resp.offset = a->offset;
        ds->writes++;
        reply(a->sess, &a->req, 0, &resp.base, NULL, 0, NULL);
    }
    sess_unref(a->sess);
    free(a->rec);
    free(a);
}

static void append_local_done(int status, void *arg)
{
    struct rpc_append *a = arg;
    a->local_status = status;
    if (status == 0) {
        struct block *b = store_get(a->sess->ds->store, a->block_id);
        if (b) {
            block_commit(b, a->offset, &a->h);
            b->dirty = 1;
        }
    }
    if (--a->waiting == 0)
        append_finish(a);
}

static void append_repl_done(int status, void *arg)
{
    struct rpc_append *a = arg;
    if (status != 0 && a->repl_status == 0)
        a->repl_status = status;
    if (--a->waiting == 0)
        append_finish(a);
}

/* Starts the local append and the sends to every secondary of `a->b`. Takes
 * ownership of `a` (it is finished and freed by the callbacks). */
static void append_start(struct ds *ds, struct rpc_append *a)
{
    struct block *b = a->b;
    a->waiting = 1;
    for (int i = 0; i < b->nreplicas; i++)
        if (strcmp(b->replicas[i].server_id, ds->store->server_id) != 0)
            a->waiting++;
    int pending_sends = a->waiting - 1;
    int rc = blockio_append(ds->store->ring, b, a->rec, a->rec_len, a->offset, append_local_done,
                            a);
    if (rc != 0) {
        a->local_status = rc;
        a->waiting--;
    }
    for (int i = 0; i < b->nreplicas && pending_sends > 0; i++) {
        if (strcmp(b->replicas[i].server_id, ds->store->server_id) == 0)
            continue;
        pending_sends--;
        rc = ds_repl_send(ds, b->replicas[i].addr, a->block_id, a->offset, b->set_version,
                          a->rec, a->rec_len, append_repl_done, a);
        if (rc != 0) {
            if (a->repl_status == 0)
                a->repl_status = rc;
            a->waiting--;
        }
    }
    if (a->waiting == 0)
        append_finish(a);
}

/* Allocates the replicated append of a record of rec_len bytes reserved at
 * `offset` of block b, answering `req` on session s. On failure (out of
 * memory) the reserved range stays a hole, so the block is sealed to keep
 * replicas from diverging, the request is answered and NULL is returned. */
static struct rpc_append *append_new(struct rpc_sess *s, const struct frame_header *req,
                                     struct block *b, uint32_t rec_len, uint64_t offset)
{
    struct rpc_append *a = calloc(1, sizeof(*a));
    uint8_t *rec = a ? malloc(rec_len) : NULL;
    if (!rec) {
        free(a);
        block_seal(b);
        reply(s, req, -ENOMEM, NULL, NULL, 0, NULL);
        return NULL;
    }
    a->sess = s;
    s->refs++;
    a->req = *req;
    a->b = b;
    a->block_id = b->id;
    a->rec = rec;
    a->rec_len = rec_len;
    a->offset = offset;
    a->h.ctime = (uint32_t)time(NULL);
    return a;
}

static void handle_write(struct rpc_sess *s, const struct frame *f)
{
    struct ds *ds = s->ds;
    Imgstore__Write *m = imgstore__write__unpack(NULL, f->h.head_len, f->head);
    if (!m) {
        reply(s, &f->h, IMG_EPROTO, NULL, NULL, 0, NULL);
        return;
    }
    uint64_t block_id = m->block_id;
    uint32_t mime = m->mime;
    imgstore__write__free_unpacked(m, NULL);

    int err = 0;
    struct block *b = writable_primary_block(ds, block_id, &err);
    if (!b) {
        reply(s, &f->h, err, NULL, NULL, 0, NULL);
        return;
    }
    if (f->h.body_len > NEEDLE_MAX_DATA) {
        reply(s, &f->h, IMG_ETOOBIG, NULL, NULL, 0, NULL);
        return;
    }
    if (mime > MIME_MAX_CODE)
        mime = MIME_OCTET_STREAM;
    uint32_t rec_len = (uint32_t)needle_record_size(f->h.body_len);
    uint64_t offset;
    uint32_t seq;
    int rc = block_reserve(b, rec_len, &offset, &seq);
    if (rc != 0) {
        if (rc == IMG_EFULL) {
            b->dirty = 1;
            ds_session_poke(ds);
        }
        reply(s, &f->h, rc, NULL, NULL, 0, NULL);
        return;
    }
    struct rpc_append *a = append_new(s, &f->h, b, rec_len, offset);
    if (!a)
        return;
    a->h.mime = (uint8_t)mime;
    a->h.seq = seq;
    a->h.cookie = random_cookie();
    needle_build(a->rec, &a->h, f->body, f->h.body_len);
    append_start(ds, a);
}

/* ---- reads ------------------------------------------------------------------ */

/* Unpacks the file a READ, STAT (head Read) or DELETE (head Delete) names.
 * Returns 0 or IMG_EPROTO for a head that does not parse. */
static int unpack_file_ref(const struct frame *f, uint64_t *block_id, uint32_t *seq,
                           uint32_t *cookie)
{
    if (f->h.type == FT_DELETE) {
        Imgstore__Delete *m = imgstore__delete__unpack(NULL, f->h.head_len, f->head);
        if (!m)
            return IMG_EPROTO;
        *block_id = m->block_id;
        *seq = m->seq;
        *cookie = m->cookie;
        imgstore__delete__free_unpacked(m, NULL);
        return 0;
    }
    Imgstore__Read *m = imgstore__read__unpack(NULL, f->h.head_len, f->head);
    if (!m)
        return IMG_EPROTO;
    *block_id = m->block_id;
    *seq = m->seq;
    *cookie = m->cookie;
    imgstore__read__free_unpacked(m, NULL);
    return 0;
}

static void free_read_body(void *body)
{
    free((uint8_t *)body - NEEDLE_HEADER_SIZE);
}

static void read_free(struct rpc_read *r)
{
    sess_unref(r->sess);
    free(r->buf);
    free(r);
}

static void delete_checked(struct rpc_read *r);

static void read_done(int status, void *arg)
{
    struct rpc_read *r = arg;
    struct ds *ds = r->sess->ds;
    struct needle_header h;
    if (status == 0) {
        status = needle_decode_header(r->buf, &h);
        if (status == 0 && (h.seq != r->seq || h.cookie != r->cookie))
            status = IMG_ENOTFOUND; /* a wrong cookie reads like a missing file */
    }
    if (status == IMG_EFORMAT)
        status = IMG_ECORRUPT;
    if (status == 0 && r->deleted)
        status = IMG_EDELETED;
    if (status == IMG_ECORRUPT)
        log_warn("block %llu seq %u at offset %llu failed its check; needs repair",
                 (unsigned long long)r->block_id, r->seq, (unsigned long long)r->offset);
    if (r->req.type == FT_DELETE) {
        if (status == 0) {
            delete_checked(r);
            return;
        }
        /* Deleting a deleted file succeeds: retries are safe. */
        Imgstore__DeleteResp resp = IMGSTORE__DELETE_RESP__INIT;
        if (status == IMG_EDELETED)
            reply(r->sess, &r->req, 0, &resp.base, NULL, 0, NULL);
        else
            reply(r->sess, &r->req, status, NULL, NULL, 0, NULL);
        read_free(r);
        return;
    }
    if (status != 0) {
        reply(r->sess, &r->req, status, NULL, NULL, 0, NULL);
        read_free(r);
        return;
    }
    struct block *b = store_get(ds->store, r->block_id);
    Imgstore__ReadResp resp = IMGSTORE__READ_RESP__INIT;
    resp.size = h.size;
    resp.crc32c = h.data_crc;
    resp.created = h.ctime;
    resp.mime = h.mime;
    resp.offset = r->offset;
    resp.primary = b ? b->primary : 0;
    reply(r->sess, &r->req, 0, &resp.base, NULL, 0, NULL);
    read_free(r);
}

/* STAT and DELETE: reads the record header of file (block_id, seq) to check
 * its cookie; READ goes through ds_file.c instead (header and data). */
static void handle_read(struct rpc_sess *s, const struct frame *f)
{
    struct ds *ds = s->ds;
    uint64_t block_id;
    uint32_t seq, cookie;
    if (unpack_file_ref(f, &block_id, &seq, &cookie) != 0) {
        reply(s, &f->h, IMG_EPROTO, NULL, NULL, 0, NULL);
        return;
    }
    struct block *b = store_get(ds->store, block_id);
    if (!b || !ds_file_serves(ds, b)) {
        reply(s, &f->h, IMG_ENOBLOCKHERE, NULL, NULL, 0, NULL);
        return;
    }
    if (f->h.type == FT_DELETE && (!b->primary || !ds->primary_confirmed)) {
        reply(s, &f->h, IMG_ENOTPRIMARY, NULL, NULL, 0, NULL);
        return;
    }
    if (f->h.type == FT_DELETE && ds_compact_busy(ds, b)) {
        reply(s, &f->h, IMG_EUNAVAIL, NULL, NULL, 0, NULL); /* compaction: retry later */
        return;
    }
    if (f->h.type == FT_DELETE && b->nreplicas < (ds->ns_replicas < 2 ? (int)ds->ns_replicas : 2)) {
        /* The set lost a member and is being repaired: a tombstone on one
         * copy alone would not survive the loss of that copy. */
        reply(s, &f->h, IMG_EUNAVAIL, NULL, NULL, 0, NULL);
        return;
    }
    uint64_t offset;
    uint32_t size;
    int deleted;
    if (index_get(&b->ix, seq, &offset, &size, &deleted) != 0) {
        reply(s, &f->h, IMG_ENOTFOUND, NULL, NULL, 0, NULL);
        return;
    }
    struct rpc_read *r = calloc(1, sizeof(*r));
    size_t len = NEEDLE_HEADER_SIZE;
    uint8_t *buf = r ? malloc(len) : NULL;
    if (!buf) {
        free(r);
        reply(s, &f->h, -ENOMEM, NULL, NULL, 0, NULL);
        return;
    }
    r->sess = s;
    s->refs++;
    r->req = f->h;
    r->block_id = block_id;
    r->seq = seq;
    r->cookie = cookie;
    r->offset = offset;
    r->size = size;
    r->deleted = deleted;
    r->buf = buf;
    r->len = len;
    int rc = blockio_read(ds->store->ring, b, buf, len, offset, read_done, r);
    if (rc != 0) {
        reply(s, &f->h, rc, NULL, NULL, 0, NULL);
        read_free(r);
    }
}

/* READ: the shared read path of ds_file.c (one io_uring read, cookie and
 * CRC32C checked); the data goes out straight from the read buffer. */
struct rpc_file_read {
    struct rpc_sess *sess;
    struct frame_header req;
    uint64_t block_id;
    uint32_t seq;
};

static void file_read_done(int status, const struct needle_header *h, uint8_t *rec, void *arg)
{
    struct rpc_file_read *fr = arg;
    struct rpc_sess *s = fr->sess;
    if (status != 0) {
        reply(s, &fr->req, status, NULL, NULL, 0, NULL);
    } else {
        Imgstore__ReadResp resp = IMGSTORE__READ_RESP__INIT;
        resp.size = h->size;
        resp.crc32c = h->data_crc;
        resp.created = h->ctime;
        resp.mime = h->mime;
        struct block *b = store_get(s->ds->store, fr->block_id);
        uint64_t offset;
        uint32_t size;
        int deleted;
        if (b && index_get(&b->ix, fr->seq, &offset, &size, &deleted) == 0) {
            resp.offset = offset;
            resp.primary = b->primary;
        }
        s->ds->reads++;
        reply(s, &fr->req, 0, &resp.base, rec + NEEDLE_HEADER_SIZE, h->size, free_read_body);
    }
    sess_unref(s);
    free(fr);
}

static void handle_file_read(struct rpc_sess *s, const struct frame *f)
{
    uint64_t block_id;
    uint32_t seq, cookie;
    if (unpack_file_ref(f, &block_id, &seq, &cookie) != 0) {
        reply(s, &f->h, IMG_EPROTO, NULL, NULL, 0, NULL);
        return;
    }
    struct rpc_file_read *fr = calloc(1, sizeof(*fr));
    if (!fr) {
        reply(s, &f->h, -ENOMEM, NULL, NULL, 0, NULL);
        return;
    }
    fr->sess = s;
    fr->req = f->h;
    fr->block_id = block_id;
    fr->seq = seq;
    s->refs++;
    int rc = ds_file_read(s->ds, block_id, seq, cookie, 0, file_read_done, fr);
    if (rc != 0) {
        reply(s, &f->h, rc, NULL, NULL, 0, NULL);
        sess_unref(s);
        free(fr);
    }
}

/* ---- deletes ---------------------------------------------------------------- */

/* The cookie matched: append the tombstone on every replica. */
static void delete_checked(struct rpc_read *r)
{
    struct ds *ds = r->sess->ds;
    struct block *b = store_get(ds->store, r->block_id);
    int rc = !b ? IMG_ENOBLOCKHERE : ds_compact_busy(ds, b) ? IMG_EUNAVAIL : 0;
    uint32_t rec_len = (uint32_t)needle_record_size(0);
    uint64_t offset = 0;
    if (rc == 0)
        rc = block_reserve_tombstone(b, rec_len, &offset);
    if (rc != 0) {
        reply(r->sess, &r->req, rc, NULL, NULL, 0, NULL);
        read_free(r);
        return;
    }
    struct rpc_append *a = append_new(r->sess, &r->req, b, rec_len, offset);
    if (!a) {
        read_free(r);
        return;
    }
    a->is_delete = 1;
    a->h.flags = NEEDLE_FLAG_TOMBSTONE;
    a->h.seq = r->seq;
    a->h.cookie = r->cookie;
    needle_build(a->rec, &a->h, NULL, 0);
    read_free(r);
    append_start(ds, a);
}

/* ---- replication (secondary side) -------------------------------------------- */

struct rpc_repl {
    struct rpc_sess *sess;
    struct frame_header req;
    uint64_t block_id;
    uint64_t offset;
    struct needle_header h;
    uint8_t *rec;
};

static void repl_done(int status, void *arg)
{
    struct rpc_repl *p = arg;
    struct ds *ds = p->sess->ds;
    struct block *b = store_get(ds->store, p->block_id);
    if (status == 0 && b) {
        block_commit(b, p->offset, &p->h);
        b->dirty = 1;
    } else if (status != 0) {
        log_warn("replicated append to block %llu at %llu failed: %s",
                 (unsigned long long)p->block_id, (unsigned long long)p->offset,
                 img_strerror(status));
    }
    Imgstore__ReplAppendResp resp = IMGSTORE__REPL_APPEND_RESP__INIT;
    reply(p->sess, &p->req, status, status == 0 ? &resp.base : NULL, NULL, 0, NULL);
    sess_unref(p->sess);
    free(p->rec);
    free(p);
}

static void handle_repl_append(struct rpc_sess *s, const struct frame *f)
{
    struct ds *ds = s->ds;
    Imgstore__ReplAppend *m = imgstore__repl_append__unpack(NULL, f->h.head_len, f->head);
    if (!m) {
        reply(s, &f->h, IMG_EPROTO, NULL, NULL, 0, NULL);
        return;
    }
    uint64_t block_id = m->block_id, offset = m->offset;
    uint32_t set_version = m->set_version;
    char sender[sizeof(((struct block_replica *)0)->server_id)];
    snprintf(sender, sizeof(sender), "%s", m->primary_id ? m->primary_id : "");
    imgstore__repl_append__free_unpacked(m, NULL);

    struct block *b = store_get(ds->store, block_id);
    if (!b) {
        reply(s, &f->h, IMG_ENOBLOCKHERE, NULL, NULL, 0, NULL);
        return;
    }
    if (b->compacting) {
        reply(s, &f->h, IMG_EUNAVAIL, NULL, NULL, 0, NULL); /* its layout is changing */
        return;
    }
    if (b->primary) {
        /* Only the primary orders appends; another server claiming to is a
         * configuration error we refuse rather than fork the replicas. */
        reply(s, &f->h, IMG_EINVAL, NULL, NULL, 0, NULL);
        return;
    }
    if (set_version < b->set_version &&
        (b->nreplicas < 1 || strcmp(sender, b->replicas[0].server_id) != 0)) {
        /* A primary the nameserver has replaced since (it missed the newer
         * set): taking its appends would fork the replicas. The primary of
         * our set is only slower to get the new set than we were. */
        reply(s, &f->h, IMG_ESTALE, NULL, NULL, 0, NULL);
        return;
    }
    struct needle_header h;
    if (f->h.body_len < NEEDLE_HEADER_SIZE || needle_decode_header(f->body, &h) != 0 ||
        needle_record_size(h.size) != f->h.body_len || (offset % NEEDLE_ALIGN) != 0) {
        reply(s, &f->h, IMG_EPROTO, NULL, NULL, 0, NULL);
        return;
    }
    if (!(h.flags & NEEDLE_FLAG_TOMBSTONE) &&
        crc32c(0, f->body + NEEDLE_HEADER_SIZE, h.size) != h.data_crc) {
        reply(s, &f->h, IMG_ECORRUPT, NULL, NULL, 0, NULL);
        return;
    }
    int rc = block_reserve_at(b, offset, f->h.body_len);
    if (rc != 0) {
        reply(s, &f->h, rc, NULL, NULL, 0, NULL);
        return;
    }
    struct rpc_repl *p = calloc(1, sizeof(*p));
    uint8_t *rec = p ? malloc(f->h.body_len) : NULL;
    if (!rec) {
        free(p);
        block_seal(b);
        reply(s, &f->h, -ENOMEM, NULL, NULL, 0, NULL);
        return;
    }
    memcpy(rec, f->body, f->h.body_len);
    p->sess = s;
    s->refs++;
    p->req = f->h;
    p->block_id = block_id;
    p->offset = offset;
    p->h = h;
    p->rec = rec;
    rc = blockio_append(ds->store->ring, b, rec, f->h.body_len, offset, repl_done, p);
    if (rc != 0)
        repl_done(rc, p);
}

/* ---- connections -------------------------------------------------------------- */

static void on_frame(struct conn *c, const struct frame *f, void *ctx)
{
    struct rpc_sess *s = ctx;
    if (s->ds->stopping)
        return;
    ds_metrics_begin(s->ds, s, &f->h);
    switch (f->h.type) {
    case FT_WRITE:
        handle_write(s, f);
        break;
    case FT_READ:
        handle_file_read(s, f);
        break;
    case FT_STAT:
    case FT_DELETE:
        handle_read(s, f);
        break;
    case FT_REPL_APPEND:
        handle_repl_append(s, f);
        break;
    case FT_VERIFY: {
        struct ds_rpc_req *r = req_hold(s, &f->h);
        if (r)
            ds_scrub_verify(s->ds, f, r);
        else
            reply(s, &f->h, -ENOMEM, NULL, NULL, 0, NULL);
        break;
    }
    case FT_READ_BLOCK: {
        struct ds_rpc_req *r = req_hold(s, &f->h);
        if (r)
            ds_copy_read_block(s->ds, f, r);
        else
            reply(s, &f->h, -ENOMEM, NULL, NULL, 0, NULL);
        break;
    }
    default:
        reply(s, &f->h, IMG_EBADTYPE, NULL, NULL, 0, NULL);
        break;
    }
}

static void on_close(struct conn *c, void *ctx)
{
    struct rpc_sess *s = ctx;
    s->c = NULL;
    sess_unref(s);
}

static void on_connection(uv_stream_t *server, int status)
{
    struct ds *ds = server->data;
    if (status < 0) {
        log_warn("accept: %s", uv_strerror(status));
        return;
    }
    struct rpc_sess *s = calloc(1, sizeof(*s));
    if (!s)
        return;
    s->ds = ds;
    s->refs = 1;
    s->c = conn_accept(server, on_frame, on_close, s);
    if (!s->c)
        free(s);
}

int ds_rpc_start(struct ds *ds)
{
    int rc = conn_listen(ds->loop, &ds->listen_tcp, ds->listen_addr, on_connection);
    ds->listen_tcp.data = ds;
    return rc;
}
