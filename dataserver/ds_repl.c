/* ds_repl.c - replicated appends (ds_repl.h): WRITE and DELETE on the
 * primary, REPL_APPEND on a secondary.
 *
 * Every request is hostile until validated; a malformed one gets a specific
 * error status and touches nothing on disk.
 * A delete taken while the block's replica set is down to this primary
 * (fewer than min(2, replicas) members) is journaled at the nameserver
 * (ds_tomb_note) before it is acknowledged: the tombstone's second home.
 * A compressible upload is compressed on the thread pool (ds_codec.c) before
 * its room is reserved, and stored encoded when that pays (format 3).
 * May call the storage engine (block, blockio, needle, codec), ds_codec.c,
 * ds_file.c (the cookie
 * check of a DELETE), ds_peer.c (sends to secondaries), ds_compact.c
 * (ds_compact_busy), ds_tomb.c (NOTE_DELETE) and ds_block.c
 * (ds_block_changed). */
#include "dataserver/ds_repl.h"

#include "base/crc32c.h"
#include "base/err.h"
#include "base/log.h"
#include "dataserver/blockio.h"
#include "dataserver/codec.h"
#include "dataserver/ds_block.h"
#include "dataserver/ds_codec.h"
#include "dataserver/ds_compact.h"
#include "dataserver/ds_ec.h"
#include "dataserver/ds_file.h"
#include "dataserver/ds_tomb.h"
#include "proto/imgstore.pb-c.h"
#include "proto/mime.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

/* One replicated append (a new file or a tombstone) in flight. */
struct rpc_append {
    struct ds_req *req;
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
    int journal;      /* delete by a sole member: journaled before the answer */
};

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

/* ---- sends to the secondaries ---------------------------------------------- */

struct repl_req {
    void (*cb)(int status, void *arg);
    void *arg;
};

static void repl_reply(int status, const struct frame *f, void *arg)
{
    struct repl_req *r = arg;
    r->cb(conn_reply_status(status, f), r->arg);
    free(r);
}

/* Sends one record to the peer at `addr` (REPL_APPEND) and calls
 * cb(status, arg) once with 0 when the peer has it durable, or an error.
 * `rec` is copied. Returns 0, or an error (cb not called). */
static int repl_send(struct ds *ds, const char *addr, uint64_t block_id, uint64_t offset,
                     uint32_t set_version, const void *rec, uint32_t rec_len,
                     void (*cb)(int status, void *arg), void *arg)
{
    struct repl_req *r = malloc(sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->cb = cb;
    r->arg = arg;
    Imgstore__ReplAppend m = IMGSTORE__REPL_APPEND__INIT;
    m.block_id = block_id;
    m.offset = offset;
    m.set_version = set_version;
    m.primary_id = ds->store->server_id;
    int rc = ds_peer_request(ds, addr, FT_REPL_APPEND, &m.base, rec, rec_len, DS_REPL_TIMEOUT_MS,
                             repl_reply, r);
    if (rc != 0) {
        free(r);
        return rc;
    }
    return 0;
}

/* ---- deletes journaled at the nameserver ------------------------------------ */

/* The DELETE of a sole member waiting for NOTE_DELETE's answer. */
struct note_wait {
    struct ds_req *req;
    int was_deleted;
};

static void note_done(int status, void *arg)
{
    struct note_wait *w = arg;
    struct ds *ds = w->req->ds;
    if (status != 0) {
        /* The tombstone is durable here (the file is deleted on this copy),
         * but it has no second home: not acknowledged. */
        log_warn("delete not acknowledged: the nameserver did not journal it: %s",
                 img_strerror(status));
        ds_req_fail(w->req, IMG_EUNAVAIL);
    } else {
        Imgstore__DeleteResp resp = IMGSTORE__DELETE_RESP__INIT;
        resp.was_deleted = w->was_deleted;
        if (!w->was_deleted)
            ds->deletes++;
        ds_req_answer(w->req, 0, &resp.base, NULL, 0, NULL);
    }
    free(w);
}

/* Returns non-zero when b's replica set is down to fewer than
 * min(2, replicas) members: a tombstone must also be journaled. */
static int sole_member(const struct ds *ds, const struct block *b)
{
    return b->nreplicas < (ds->ns_replicas < 2 ? (int)ds->ns_replicas : 2);
}

/* Journals the tombstone of (seq, cookie) at the nameserver, then answers
 * req (taken): success once journaled, IMG_EUNAVAIL otherwise. */
static void note_then_answer(struct ds *ds, struct ds_req *req, uint64_t block_id, uint32_t seq,
                             uint32_t cookie, uint64_t tail_after, int was_deleted)
{
    struct block *b = store_get(ds->store, block_id);
    struct note_wait *w = malloc(sizeof(*w));
    if (!w) {
        ds_req_fail(req, -ENOMEM);
        return;
    }
    *w = (struct note_wait){.req = req, .was_deleted = was_deleted};
    int rc = ds_tomb_note(ds, block_id, seq, cookie, tail_after, b ? b->set_version : 0,
                          note_done, w);
    if (rc != 0) {
        free(w);
        ds_req_fail(req, IMG_EUNAVAIL);
    }
}

/* ---- replicated append (primary side) ------------------------------------ */

static void append_finish(struct rpc_append *a)
{
    struct ds *ds = a->req->ds;
    int status = a->local_status ? a->local_status : a->repl_status;
    struct block *b = store_get(ds->store, a->block_id);
    if (status != 0) {
        if (b && a->local_status == 0)
            /* Durable here, perhaps nowhere else: until the set is whole
             * again this copy alone vouches for it (delete_read_done). */
            block_lonely_note(b, a->offset, a->rec_len);
        if (b && !b->sealed) {
            log_warn("block %llu sealed: %s of seq %u at offset %llu failed: %s",
                     (unsigned long long)a->block_id, a->is_delete ? "delete" : "write",
                     a->h.seq, (unsigned long long)a->offset, img_strerror(status));
            block_seal(b);
            ds_block_changed(ds, b);
        }
        ds_req_fail(a->req, a->local_status ? a->local_status : IMG_EREPL);
    } else if (a->is_delete && a->journal) {
        note_then_answer(ds, a->req, a->block_id, a->h.seq, a->h.cookie, a->offset + a->rec_len,
                         0);
    } else if (a->is_delete) {
        Imgstore__DeleteResp resp = IMGSTORE__DELETE_RESP__INIT;
        ds->deletes++;
        ds_req_answer(a->req, 0, &resp.base, NULL, 0, NULL);
    } else {
        Imgstore__WriteResp resp = IMGSTORE__WRITE_RESP__INIT;
        resp.block_id = a->block_id;
        resp.seq = a->h.seq;
        resp.cookie = a->h.cookie;
        resp.crc32c = a->h.orig_crc; /* of the file as uploaded, encoded or not */
        resp.created = a->h.ctime;
        resp.offset = a->offset;
        ds->writes++;
        ds_req_answer(a->req, 0, &resp.base, NULL, 0, NULL);
    }
    free(a->rec);
    free(a);
}

static void append_local_done(int status, void *arg)
{
    struct rpc_append *a = arg;
    a->local_status = status;
    if (status == 0) {
        struct block *b = store_get(a->req->ds->store, a->block_id);
        if (b) {
            block_commit(b, a->offset, &a->h);
            ds_block_report(a->req->ds, b);
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
        rc = repl_send(ds, b->replicas[i].addr, a->block_id, a->offset, b->set_version, a->rec,
                       a->rec_len, append_repl_done, a);
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
 * `offset` of block b, answering `req` (taken). On failure (out of memory)
 * the reserved range stays a hole, so the block is sealed to keep replicas
 * from diverging, the request is answered and NULL is returned. */
static struct rpc_append *append_new(struct ds_req *req, struct block *b, uint32_t rec_len,
                                     uint64_t offset)
{
    struct rpc_append *a = calloc(1, sizeof(*a));
    uint8_t *rec = a ? malloc(rec_len) : NULL;
    if (!rec) {
        free(a);
        block_seal(b);
        ds_req_fail(req, -ENOMEM);
        return NULL;
    }
    a->req = req;
    a->b = b;
    a->block_id = b->id;
    a->rec = rec;
    a->rec_len = rec_len;
    a->offset = offset;
    a->h.ctime = (uint32_t)time(NULL);
    return a;
}

/* Reserves room for the file in block_id and appends its record on every
 * replica, answering r (taken). `data` is the file as uploaded, or with
 * `frame` the zstd frame it was compressed to (orig_crc: CRC32C of the
 * upload): the record is then encoded (format 3). */
static void write_record(struct ds_req *r, uint64_t block_id, unsigned mime, const void *data,
                         uint32_t len, const uint8_t *frame, uint32_t frame_len,
                         uint32_t orig_crc)
{
    struct ds *ds = r->ds;
    int err = 0;
    struct block *b = writable_primary_block(ds, block_id, &err);
    if (!b) {
        ds_req_fail(r, err);
        return;
    }
    uint32_t rec_len = (uint32_t)needle_record_size(frame ? NEEDLE_ENC_SIZE + frame_len : len);
    uint64_t offset;
    uint32_t seq;
    int rc = block_reserve(b, rec_len, &offset, &seq);
    if (rc != 0) {
        if (rc == IMG_EFULL)
            ds_block_changed(ds, b);
        ds_req_fail(r, rc);
        return;
    }
    struct rpc_append *a = append_new(r, b, rec_len, offset);
    if (!a)
        return;
    a->h.mime = (uint8_t)mime;
    a->h.seq = seq;
    a->h.cookie = random_cookie();
    if (ds->record_format >= 2)
        a->h.flags |= NEEDLE_FLAG_HCRC;
    if (frame) {
        a->h.flags |= NEEDLE_FLAG_ENCODED;
        a->h.encoding = NEEDLE_ENC_ZSTD;
        a->h.orig_size = len;
        a->h.orig_crc = orig_crc;
        needle_build(a->rec, &a->h, frame, frame_len);
        ds->writes_encoded++;
        ds->encoded_saved_bytes += len - a->h.size;
    } else {
        needle_build(a->rec, &a->h, data, len);
    }
    append_start(ds, a);
}

/* A WRITE whose upload is being compressed on the thread pool. */
struct write_enc {
    struct ds_req *req;
    uint64_t block_id;
    unsigned mime;
    uint32_t len;
    uint8_t *data; /* the upload, kept in case compressing does not pay */
};

static void write_encoded(int status, uint8_t *frame, uint32_t frame_len, uint32_t orig_crc,
                          void *arg)
{
    struct write_enc *w = arg;
    if (status < 0)
        ds_req_fail(w->req, status);
    else if (status == 0)
        write_record(w->req, w->block_id, w->mime, NULL, w->len, frame, frame_len, orig_crc);
    else
        write_record(w->req, w->block_id, w->mime, w->data, w->len, NULL, 0, 0);
    free(frame);
    free(w->data);
    free(w);
}

/* Starts compressing an upload worth a trial (ds_codec.c). Returns 0 (r is
 * answered later) or an error (r untouched: store the bytes as they are). */
static int write_compress(struct ds_req *r, uint64_t block_id, unsigned mime, const void *data,
                          uint32_t len)
{
    struct ds *ds = r->ds;
    struct write_enc *w = malloc(sizeof(*w));
    uint8_t *copy = w ? malloc(len) : NULL;
    if (!copy) {
        free(w);
        return -ENOMEM;
    }
    memcpy(copy, data, len);
    *w = (struct write_enc){.req = r, .block_id = block_id, .mime = mime, .len = len,
                            .data = copy};
    int rc = ds_codec_encode(ds, copy, len, ds->compress_level, write_encoded, w);
    if (rc != 0) {
        free(copy);
        free(w);
    }
    return rc;
}

void ds_repl_write(struct ds_req *r, const struct frame *f)
{
    struct ds *ds = r->ds;
    Imgstore__Write *m = ds_req_unpack(r, f, &imgstore__write__descriptor);
    if (!m)
        return;
    uint64_t block_id = m->block_id;
    uint32_t mime = m->mime;
    imgstore__write__free_unpacked(m, NULL);

    int err = 0;
    struct block *b = writable_primary_block(ds, block_id, &err);
    if (!b) {
        ds_req_fail(r, err);
        return;
    }
    if (f->h.body_len > NEEDLE_MAX_DATA) {
        ds_req_fail(r, IMG_ETOOBIG);
        return;
    }
    if (f->h.body_len == 0) { /* an empty file: refused, as by the library and HTTP */
        ds_req_fail(r, IMG_EINVAL);
        return;
    }
    if (mime > MIME_MAX_CODE)
        mime = MIME_OCTET_STREAM;
    /* Compressible uploads are compressed off the loop first, once the
     * whole cluster reads format 3 (docs/storage.md "Encoded records"). */
    if (ds->record_format >= 3 && ds->compress_level > 0 &&
        codec_candidate(mime, f->body, f->h.body_len) &&
        write_compress(r, block_id, mime, f->body, f->h.body_len) == 0)
        return;
    write_record(r, block_id, mime, f->body, f->h.body_len, NULL, 0, 0);
}

/* ---- deletes ---------------------------------------------------------------- */

/* A DELETE whose record header is being read to check its cookie. */
struct rpc_delete {
    struct ds_req *req;
    uint64_t block_id;
    uint32_t seq, cookie; /* as asked; the read checks the cookie */
};

/* The cookie matched: append the tombstone on every replica. */
static void delete_checked(struct ds_req *req, uint64_t block_id, uint32_t seq, uint32_t cookie)
{
    struct ds *ds = req->ds;
    struct block *b = store_get(ds->store, block_id);
    int rc = !b ? IMG_ENOBLOCKHERE : ds_compact_busy(ds, b) ? IMG_EUNAVAIL : 0;
    uint32_t rec_len = (uint32_t)needle_record_size(0);
    uint64_t offset = 0;
    if (rc == 0)
        rc = block_reserve_tombstone(b, rec_len, &offset);
    if (rc != 0) {
        ds_req_fail(req, rc);
        return;
    }
    struct rpc_append *a = append_new(req, b, rec_len, offset);
    if (!a)
        return;
    a->is_delete = 1;
    /* Decided now, with the set the tombstone is sent to. */
    a->journal = sole_member(ds, b);
    a->h.flags = NEEDLE_FLAG_TOMBSTONE | (ds->record_format >= 2 ? NEEDLE_FLAG_HCRC : 0);
    a->h.seq = seq;
    a->h.cookie = cookie;
    needle_build(a->rec, &a->h, NULL, 0);
    append_start(ds, a);
}

static void delete_read_done(int status, const struct needle_header *h, uint64_t offset,
                             uint8_t *rec, void *arg)
{
    struct rpc_delete *d = arg;
    struct ds_req *req = d->req;
    uint64_t block_id = d->block_id;
    uint32_t seq = d->seq, cookie = d->cookie;
    (void)offset;
    free(rec);
    free(d);
    if (status == 0) {
        delete_checked(req, block_id, h->seq, h->cookie);
        return;
    }
    /* Deleting a deleted file succeeds: retries are safe. But not while the
     * block holds lonely records: the tombstone may be one of them, on this
     * copy alone, and an acknowledged delete must have two homes. The
     * caller retries; the set is repaired meanwhile (block_lonely_clear). */
    struct block *b = store_get(req->ds->store, block_id);
    if (status == IMG_EDELETED && b && b->primary && sole_member(req->ds, b)) {
        /* Perhaps deleted by an earlier DELETE whose journaling or
         * replication failed (a lonely tombstone): journaled now, its
         * second home, before it is reported deleted. */
        note_then_answer(req->ds, req, block_id, seq, cookie, b->durable_tail, 1);
        return;
    }
    if (status == IMG_EDELETED && b && b->lonely_to)
        status = IMG_EREPL;
    Imgstore__DeleteResp resp = IMGSTORE__DELETE_RESP__INIT;
    resp.was_deleted = 1;
    if (status == IMG_EDELETED)
        ds_req_answer(req, 0, &resp.base, NULL, 0, NULL);
    else
        ds_req_fail(req, status);
}

/* DELETE: checks the primary may take a tombstone now, then reads the record
 * header of the file to check its cookie (ds_file_read, header only). */
void ds_repl_delete(struct ds_req *r, const struct frame *f)
{
    struct ds *ds = r->ds;
    Imgstore__Delete *m = ds_req_unpack(r, f, &imgstore__delete__descriptor);
    if (!m)
        return;
    uint64_t block_id = m->block_id;
    uint32_t seq = m->seq, cookie = m->cookie;
    imgstore__delete__free_unpacked(m, NULL);
    struct block *b = store_get(ds->store, block_id);
    if (!b && ds_ec_find(ds, block_id)) {
        ds_ec_delete(r, block_id, seq, cookie); /* erasure-coded: shards here */
        return;
    }
    int serves = b ? ds_file_serves(ds, b, 0) : IMG_ENOBLOCKHERE;
    if (serves != 0) {
        ds_req_fail(r, serves);
        return;
    }
    if (!b->primary || !ds->primary_confirmed) {
        ds_req_fail(r, IMG_ENOTPRIMARY);
        return;
    }
    if (ds_compact_busy(ds, b)) {
        ds_req_fail(r, IMG_EUNAVAIL); /* compaction: retry later */
        return;
    }
    /* A set down to this copy (a member died, repair has not finished)
     * still takes deletes: each tombstone is also journaled at the
     * nameserver before it is acknowledged (delete_checked). */
    struct rpc_delete *d = malloc(sizeof(*d));
    if (!d) {
        ds_req_fail(r, -ENOMEM);
        return;
    }
    *d = (struct rpc_delete){.req = r, .block_id = block_id, .seq = seq, .cookie = cookie};
    int rc = ds_file_read(ds, block_id, seq, cookie, DS_FILE_HEADER_ONLY, delete_read_done, d);
    if (rc != 0) {
        free(d);
        ds_req_fail(r, rc);
    }
}

/* ---- replication (secondary side) -------------------------------------------- */

struct rpc_repl {
    struct ds_req *req;
    uint64_t block_id;
    uint64_t offset;
    struct needle_header h;
    uint8_t *rec;
};

static void repl_done(int status, void *arg)
{
    struct rpc_repl *p = arg;
    struct ds *ds = p->req->ds;
    struct block *b = store_get(ds->store, p->block_id);
    if (status == 0 && b) {
        block_commit(b, p->offset, &p->h);
        ds_block_report(ds, b);
    } else if (status != 0) {
        log_warn("replicated append to block %llu at %llu failed: %s",
                 (unsigned long long)p->block_id, (unsigned long long)p->offset,
                 img_strerror(status));
    }
    Imgstore__ReplAppendResp resp = IMGSTORE__REPL_APPEND_RESP__INIT;
    ds_req_answer(p->req, status, status == 0 ? &resp.base : NULL, NULL, 0, NULL);
    free(p->rec);
    free(p);
}

void ds_repl_append(struct ds_req *r, const struct frame *f)
{
    struct ds *ds = r->ds;
    Imgstore__ReplAppend *m = ds_req_unpack(r, f, &imgstore__repl_append__descriptor);
    if (!m)
        return;
    uint64_t block_id = m->block_id, offset = m->offset;
    uint32_t set_version = m->set_version;
    char sender[sizeof(((struct block_replica *)0)->server_id)];
    snprintf(sender, sizeof(sender), "%s", m->primary_id ? m->primary_id : "");
    imgstore__repl_append__free_unpacked(m, NULL);

    struct block *b = store_get(ds->store, block_id);
    if (!b) {
        ds_req_fail(r, IMG_ENOBLOCKHERE);
        return;
    }
    if (b->compacting) {
        ds_req_fail(r, IMG_EUNAVAIL); /* its layout is changing */
        return;
    }
    if (b->primary) {
        /* Only the primary orders appends; another server claiming to is a
         * configuration error we refuse rather than fork the replicas. */
        ds_req_fail(r, IMG_EINVAL);
        return;
    }
    if (set_version < b->set_version &&
        (b->nreplicas < 1 || strcmp(sender, b->replicas[0].server_id) != 0)) {
        /* A primary the nameserver has replaced since (it missed the newer
         * set): taking its appends would fork the replicas. The primary of
         * our set is only slower to get the new set than we were. */
        ds_req_fail(r, IMG_ESTALE);
        return;
    }
    struct needle_header h;
    if (f->h.body_len < NEEDLE_HEADER_SIZE || needle_decode_header(f->body, &h) != 0 ||
        needle_record_size(h.size) != f->h.body_len || (offset % NEEDLE_ALIGN) != 0) {
        ds_req_fail(r, IMG_EPROTO);
        return;
    }
    if (!(h.flags & NEEDLE_FLAG_TOMBSTONE) &&
        crc32c(0, f->body + NEEDLE_HEADER_SIZE, h.size) != h.data_crc) {
        ds_req_fail(r, IMG_ECORRUPT);
        return;
    }
    int rc = block_reserve_at(b, offset, f->h.body_len);
    if (rc != 0) {
        ds_req_fail(r, rc);
        return;
    }
    struct rpc_repl *p = calloc(1, sizeof(*p));
    uint8_t *rec = p ? malloc(f->h.body_len) : NULL;
    if (!rec) {
        free(p);
        block_seal(b);
        ds_req_fail(r, -ENOMEM);
        return;
    }
    memcpy(rec, f->body, f->h.body_len);
    p->req = r;
    p->block_id = block_id;
    p->offset = offset;
    p->h = h;
    p->rec = rec;
    rc = blockio_append(ds->store->ring, b, rec, f->h.body_len, offset, repl_done, p);
    if (rc != 0)
        repl_done(rc, p);
}
