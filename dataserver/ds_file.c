/* ds_file.c - the read path of one local file, and READ and STAT (see
 * ds_file.h). An encoded (compressed) record is decoded on the thread pool
 * (ds_codec.c) unless the caller asked for the stored bytes; those are
 * decoded too, and thrown away, when the block is marked corrupt (scrub,
 * verify), so that a copy known to be damaged never sends a frame that does
 * not decode (the caller reads another replica instead).
 * May call the storage engine (store, index, blockio, needle) and
 * ds_codec.c. */
#include "dataserver/ds_file.h"
#include "dataserver/ds_ec.h"

#include "base/err.h"
#include "base/log.h"
#include "dataserver/blockio.h"
#include "dataserver/uring.h"
#include "dataserver/ds_codec.h"
#include "proto/imgstore.pb-c.h"

#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

/* Read buffers (one record each, typically 5-500 KB) are malloc'd and freed
 * thousands of times a second. With glibc's defaults the heap top is handed
 * back to the kernel (brk) whenever 128 KiB lie free there, so almost every
 * read faulted fresh pages in while io_uring copied into them: perf showed
 * page faults under the copy costing ~20 % of the dataserver's time under
 * HTTP load. Keeping freed memory (up to DS_FILE_TRIM_THRESHOLD at the top)
 * and serving records up to DS_FILE_MMAP_THRESHOLD from the heap removes
 * them; larger records still get their own mapping. */
#define DS_FILE_MMAP_THRESHOLD (4 << 20)
#define DS_FILE_TRIM_THRESHOLD (64 << 20)

void ds_file_tune_malloc(void)
{
    mallopt(M_MMAP_THRESHOLD, DS_FILE_MMAP_THRESHOLD);
    mallopt(M_TRIM_THRESHOLD, DS_FILE_TRIM_THRESHOLD);
}

struct file_read {
    struct ds *ds;
    uint64_t block_id;
    uint64_t offset;
    uint32_t seq;
    uint32_t cookie;
    int deleted;
    int header_only;
    int stored; /* DS_FILE_STORED: hand out an encoded record's bytes as stored */
    int check;  /* with stored: decode them first all the same (the block is corrupt) */
    uint8_t *buf;
    size_t len;
    struct needle_header h;
    ds_file_cb cb;
    void *arg;
};

static void log_damage(const struct file_read *r)
{
    log_warn("block %llu seq %u at offset %llu failed its check; needs repair",
             (unsigned long long)r->block_id, r->seq, (unsigned long long)r->offset);
}

/* Hands the outcome to the caller and frees r (and r->buf unless taken). */
static void read_end(struct file_read *r, int status, uint8_t *rec)
{
    r->cb(status, status == 0 ? &r->h : NULL, r->offset, rec, r->arg);
    free(r->buf);
    free(r);
}

/* An encoded record decoded on the thread pool (ds_codec.c). */
static void file_decoded(int status, uint8_t *rec, void *arg)
{
    struct file_read *r = arg;
    r->buf = NULL; /* taken by ds_codec_decode */
    if (status == IMG_ECORRUPT)
        log_damage(r);
    if (status == 0) {
        r->h.size = r->h.orig_size;
        r->h.data_crc = r->h.orig_crc;
        r->ds->reads_decoded++;
    }
    read_end(r, status, rec);
}

/* A stored record of a corrupt block whose frame was checked (ds_codec.c). */
static void file_checked(int status, uint8_t *rec, void *arg)
{
    struct file_read *r = arg;
    r->buf = NULL; /* taken by ds_codec_check */
    if (status == IMG_ECORRUPT)
        log_damage(r);
    read_end(r, status, rec);
}

static void file_read_done(int status, void *arg)
{
    struct file_read *r = arg;
    struct needle_header *h = &r->h;
    if (status == 0) {
        if (r->header_only || r->deleted) {
            status = needle_decode_header(r->buf, h);
            if (status == 0 && h->seq != r->seq)
                status = IMG_ECORRUPT; /* the index points elsewhere: damaged here */
            else if (status == 0 && h->cookie != r->cookie)
                status = IMG_ENOTFOUND;
            /* An encoded file's size is its original size: read with the
             * header (ds_file_read), checked by its own CRC-16. */
            else if (status == 0 && !r->deleted && (h->flags & NEEDLE_FLAG_ENCODED) &&
                     (r->len < NEEDLE_HEADER_SIZE + NEEDLE_ENC_SIZE ||
                      needle_decode_enc(r->buf + NEEDLE_HEADER_SIZE, h) != 0))
                status = IMG_ECORRUPT;
        } else {
            status = needle_verify(r->buf, r->len, r->seq, r->cookie, h);
        }
    }
    if (status == IMG_EFORMAT)
        status = IMG_ECORRUPT;
    if (status == 0 && r->deleted)
        status = IMG_EDELETED;
    if (status == IMG_ECORRUPT)
        log_damage(r);
    if (status == 0 && (h->flags & NEEDLE_FLAG_ENCODED) && r->stored && r->check &&
        !r->header_only) {
        status = ds_codec_check(r->ds, r->buf, h, file_checked, r);
        if (status == 0)
            return;
        r->buf = NULL; /* freed by ds_codec_check */
    }
    if (status == 0 && (h->flags & NEEDLE_FLAG_ENCODED) && !r->stored) {
        if (r->header_only) {
            h->size = h->orig_size; /* describes the file; no bytes read */
            h->data_crc = h->orig_crc;
        } else {
            status = ds_codec_decode(r->ds, r->buf, h, file_decoded, r);
            if (status == 0)
                return;
            r->buf = NULL; /* freed by ds_codec_decode */
        }
    }
    uint8_t *rec = NULL;
    if (status == 0 && !r->header_only) {
        rec = r->buf;
        r->buf = NULL;
    }
    read_end(r, status, rec);
}

int ds_file_serves(const struct ds *ds, const struct block *b, unsigned flags)
{
    int member = 0;
    for (int i = 0; i < b->nreplicas && !member; i++)
        member = strcmp(b->replicas[i].server_id, ds->store->server_id) == 0;
    if (b->stale || !member)
        return IMG_ENOBLOCKHERE;
    if (ds->view_confirmed && uv_now(ds->loop) <= ds->view_lease_until)
        return 0;
    if (!ds->view_confirmed && !ds->view_lapsed)
        return IMG_ENOBLOCKHERE; /* never confirmed since start: it may have been out long */
    return (flags & DS_FILE_ANY_VIEW) ? 0 : IMG_EVIEWOLD;
}

void ds_file_finish(struct ds *ds, uint64_t block_id, uint64_t offset, uint32_t seq,
                    uint32_t cookie, int deleted, unsigned flags, uint8_t *buf, size_t len,
                    ds_file_cb cb, void *arg)
{
    struct file_read *r = calloc(1, sizeof(*r));
    if (!r) {
        free(buf);
        cb(-ENOMEM, NULL, offset, NULL, arg);
        return;
    }
    *r = (struct file_read){.ds = ds, .stored = (flags & DS_FILE_STORED) != 0,
                            .block_id = block_id, .offset = offset, .seq = seq,
                            .cookie = cookie, .deleted = deleted,
                            .header_only = (flags & DS_FILE_HEADER_ONLY) != 0, .buf = buf,
                            .len = len, .cb = cb, .arg = arg};
    file_read_done(0, r);
}

/* ---- a file of an erasure-coded block (ds_ec.c) ---- */

/* One record read from a data shard through io_uring. */
struct shard_read {
    struct file_read *r;
    unsigned flags;
    unsigned index; /* the data shard read */
};

/* The record's own checks are enough for a normal read (its CRC32C covers
 * every byte handed out): only the record's bytes are read, not the 64 KiB
 * chunks around it. A record that fails them here is damaged in the shard
 * (IMG_ECORRUPT: the shard is reported bad and the file rebuilt). */
static void shard_done(int res, void *arg)
{
    struct shard_read *s = arg;
    struct file_read *r = s->r;
    int rc = res < 0 ? res : (size_t)res != r->len ? IMG_ECORRUPT : 0;
    if (rc == 0) {
        struct needle_header h;
        int v = r->header_only || r->deleted
                    ? needle_decode_header(r->buf, &h)
                    : needle_verify(r->buf, r->len, r->seq, r->cookie, &h);
        if (v == IMG_EFORMAT || v == IMG_ECORRUPT ||
            (v == 0 && (r->header_only || r->deleted) && h.seq != r->seq))
            rc = IMG_ECORRUPT;
    }
    unsigned flags = s->flags, index = s->index;
    free(s);
    if (rc == IMG_ECORRUPT) {
        ds_ec_mark_bad(r->ds, r->block_id, index);
        if ((flags & DS_FILE_RECONSTRUCT) &&
            ds_ec_reconstruct(r->ds, r->block_id, r->seq, r->cookie, flags, r->cb, r->arg) == 0) {
            free(r->buf);
            free(r);
            return; /* rebuilt from the other shards instead */
        }
    }
    file_read_done(rc, r);
}

/* Reads file seq of erasure-coded block block_id from the data shard held
 * here that holds its record (one io_uring read of the record's bytes):
 * the same checks and answers as a replica's read follow (file_read_done).
 * IMG_ENOBLOCKHERE when no shard of the block, or not the data shard that
 * holds the file, is here. */
static int shard_file_read(struct ds *ds, uint64_t block_id, uint32_t seq, uint32_t cookie,
                           unsigned flags, ds_file_cb cb, void *arg)
{
    const struct ec_tent *e;
    unsigned dshard;
    uint64_t doff;
    int rc = ds_ec_locate(ds, block_id, seq, &e, &dshard, &doff);
    if (rc != 0)
        return rc;
    if (!ds->view_confirmed && !(ds->view_lapsed && (flags & DS_FILE_ANY_VIEW)))
        return ds->view_lapsed ? IMG_EVIEWOLD : IMG_ENOBLOCKHERE;
    struct ds_shard *sh = ds_ec_shard(ds, block_id, dshard);
    if ((!sh || sh->bad) && (flags & DS_FILE_RECONSTRUCT))
        return ds_ec_reconstruct(ds, block_id, seq, cookie, flags, cb, arg);
    if (!sh || sh->bad)
        return IMG_ENOBLOCKHERE;
    int header_only = (flags & DS_FILE_HEADER_ONLY) != 0;
    size_t len = NEEDLE_HEADER_SIZE +
                 (e->deleted     ? 0
                  : header_only ? (e->size >= NEEDLE_ENC_SIZE ? NEEDLE_ENC_SIZE : 0)
                                : e->size);
    struct file_read *r = calloc(1, sizeof(*r));
    struct shard_read *s = calloc(1, sizeof(*s));
    uint8_t *buf = r && s ? malloc(len) : NULL;
    if (!buf) {
        free(r);
        free(s);
        return -ENOMEM;
    }
    *r = (struct file_read){.ds = ds, .stored = (flags & DS_FILE_STORED) != 0,
                            .block_id = block_id, .offset = e->off, .seq = seq,
                            .cookie = cookie, .deleted = e->deleted, .header_only = header_only,
                            .buf = buf, .len = len, .cb = cb, .arg = arg};
    s->r = r;
    s->flags = flags;
    s->index = dshard;
    rc = uring_read(ds->store->ring, sh->sh.fd, buf, len, sh->sh.hdr_len + doff, shard_done, s);
    if (rc != 0) {
        free(buf);
        free(r);
        free(s);
    }
    return rc;
}

int ds_file_read(struct ds *ds, uint64_t block_id, uint32_t seq, uint32_t cookie,
                 unsigned flags, ds_file_cb cb, void *arg)
{
    struct block *b = store_get(ds->store, block_id);
    /* A copy left out of the replica set may lack tombstones: never serve it
     * (the caller asks a current replica instead). */
    if (!b)
        return shard_file_read(ds, block_id, seq, cookie, flags, cb, arg);
    int rc = ds_file_serves(ds, b, flags);
    if (rc != 0)
        return rc;
    int header_only = (flags & DS_FILE_HEADER_ONLY) != 0;
    uint64_t offset;
    uint32_t size;
    int deleted;
    if (index_get(&b->ix, seq, &offset, &size, &deleted) != 0)
        return IMG_ENOTFOUND;
    struct file_read *r = calloc(1, sizeof(*r));
    /* Header only: with the encoding header when there may be one (an
     * encoded record's size is its original size). */
    size_t len = NEEDLE_HEADER_SIZE + (deleted       ? 0
                                       : header_only ? (size >= NEEDLE_ENC_SIZE ? NEEDLE_ENC_SIZE : 0)
                                                     : size);
    uint8_t *buf = r ? malloc(len) : NULL;
    if (!buf) {
        free(r);
        return -ENOMEM;
    }
    r->ds = ds;
    r->stored = (flags & DS_FILE_STORED) != 0;
    r->check = r->stored && b->corrupt;
    r->block_id = block_id;
    r->offset = offset;
    r->seq = seq;
    r->cookie = cookie;
    r->deleted = deleted;
    r->header_only = header_only;
    r->buf = buf;
    r->len = len;
    r->cb = cb;
    r->arg = arg;
    rc = blockio_read(ds->store->ring, b, buf, len, offset, file_read_done, r);
    if (rc != 0) {
        free(buf);
        free(r);
    }
    return rc;
}

/* ---- READ and STAT ------------------------------------------------------------ */

/* A READ or STAT waiting for its read. */
struct file_req {
    struct ds_req *req;
    uint64_t block_id;
};

static void free_read_body(void *body)
{
    free((uint8_t *)body - NEEDLE_HEADER_SIZE);
}

/* Answers READ (with the data, rec owned) or STAT (rec NULL). */
static void serve_done(int status, const struct needle_header *h, uint64_t offset, uint8_t *rec,
                       void *arg)
{
    struct file_req *fr = arg;
    struct ds_req *req = fr->req;
    struct ds *ds = req->ds;
    uint64_t block_id = fr->block_id;
    free(fr);
    if (status != 0) {
        ds_req_fail(req, status);
        return;
    }
    Imgstore__ReadResp resp = IMGSTORE__READ_RESP__INIT;
    resp.size = h->size;
    resp.crc32c = h->data_crc;
    if (h->flags & NEEDLE_FLAG_ENCODED) {
        resp.encoding = h->encoding;
        resp.stored_size = h->stored_size;
        resp.orig_size = h->orig_size;
        resp.orig_crc32c = h->orig_crc;
    }
    resp.created = h->ctime;
    resp.mime = h->mime;
    struct block *b = store_get(ds->store, block_id);
    if (b) {
        resp.offset = offset;
        resp.primary = b->primary;
    }
    if (!rec) {
        ds_req_answer(req, 0, &resp.base, NULL, 0, NULL);
        return;
    }
    ds->reads++;
    ds_req_answer(req, 0, &resp.base, rec + NEEDLE_HEADER_SIZE, h->size, free_read_body);
}

static void serve(struct ds_req *r, const struct frame *f, unsigned flags)
{
    Imgstore__Read *m = ds_req_unpack(r, f, &imgstore__read__descriptor);
    if (!m)
        return;
    uint64_t block_id = m->block_id;
    uint32_t seq = m->seq, cookie = m->cookie;
    if (m->any_view)
        flags |= DS_FILE_ANY_VIEW;
    if (m->stored)
        flags |= DS_FILE_STORED;
    if (m->reconstruct)
        flags |= DS_FILE_RECONSTRUCT;
    imgstore__read__free_unpacked(m, NULL);
    struct file_req *fr = malloc(sizeof(*fr));
    if (!fr) {
        ds_req_fail(r, -ENOMEM);
        return;
    }
    *fr = (struct file_req){.req = r, .block_id = block_id};
    int rc = ds_file_read(r->ds, block_id, seq, cookie, flags, serve_done, fr);
    if (rc != 0) {
        free(fr);
        ds_req_fail(r, rc);
    }
}

void ds_file_serve_read(struct ds_req *r, const struct frame *f)
{
    serve(r, f, 0);
}

void ds_file_serve_stat(struct ds_req *r, const struct frame *f)
{
    serve(r, f, DS_FILE_HEADER_ONLY);
}
