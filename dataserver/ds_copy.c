/* ds_copy.c - background block copies, seals and deletions (ds_copy.h).
 *
 * A copy (REPLICATE_BLOCK) pulls the block from its source in chunks of
 * DS_COPY_CHUNK with READ_BLOCK. Every request starts at a record boundary;
 * the answer's body is checked against the CRC32C the source computed from
 * its disk read, then every complete record in it is checked the way
 * recovery checks records (needle_decode_header, data CRC32C) and indexed,
 * and only those bytes are written to <id>.blk.copy. A record larger than a
 * chunk is asked for whole next time. When the copy reaches the source's
 * durable tail (and at least the expected size), the temporary file is
 * fdatasync'd and block_install_copy writes its index and meta, renames it
 * into place and opens it (block_open's recovery checks it once more); only
 * then does the nameserver get the answer. Any failure removes the temporary
 * file; one left by a crash is removed at start-up (store.c). A copy is
 * never counted as a replica before it is installed.
 *
 * Throttling: the server's token bucket (ds_throttle.c). A chunk is asked
 * for only when the bucket is not in debt; the bytes not received are given
 * back.
 *
 * Cancel: CANCEL_COPY (the nameserver's task was canceled) marks the copy,
 * which ends with -ECANCELED at its next safe point, exactly as a failed
 * copy: a copy waiting for the bucket at once; otherwise when the READ_BLOCK,
 * write, fdatasync or catch-up appends in flight complete (a chunk arriving
 * then is dropped). A catch-up keeps the records already appended (verified
 * and durable).
 *
 * Tail catch-up: a REPLICATE_BLOCK for a block already here but shorter
 * than expected_size copies only the missing tail, from the copy's durable
 * tail, into the block file itself: each verified record is reserved at the
 * tail (block_reserve_at, as a replicated append is) and written through the
 * group commit (blockio_append), then indexed with block_commit, so readers
 * see the new records as soon as they are durable. The block is sealed
 * first; a copy with an append in flight answers IMG_EUNAVAIL. Before the
 * first chunk, the last DS_COPY_CHECK_LEN bytes before our tail are read here
 * and from the source and must be equal: a copy that is not a prefix of the
 * source (an old primary's unacknowledged append where the source has other
 * records, a copy of the other layout of a compaction) is refused with
 * IMG_ESTALE instead of being extended into a mix.
 *
 * Compression on the wire: the target asks with ReadBlock.accept_zstd; the
 * source sends a chunk as one zstd frame (ds_codec_pack: level
 * DS_CODEC_WIRE_LEVEL, on the thread pool) when that saves 10 %,
 * with the CRC32C of the bytes read; the
 * target decodes it on the thread pool and checks size and CRC32C before
 * anything else. Either side may be older: no flag, or no raw_len, is a
 * plain chunk. Bytes on the wire and the bytes they carried are counted
 * both ways (imgstore_ds_copy_*_bytes_total).
 *
 * May call the storage engine (store, block, blockio, uring), ds_peer.c
 * (READ_BLOCK to the source), ds_codec.c, ds_throttle.c and ds_block.c. */
#include "dataserver/ds_copy.h"

#include "base/array.h"
#include "base/crc32c.h"
#include "base/err.h"
#include "base/log.h"
#include "dataserver/blockio.h"
#include "dataserver/ds_block.h"
#include "dataserver/ds_codec.h"
#include "dataserver/ds_throttle.h"
#include "proto/fname.h"
#include "proto/imgstore.pb-c.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define COPY_TEMP_SUFFIX ".blk.copy"
#define READ_MAX_LEN (FRAME_MAX_BODY / 2) /* largest READ_BLOCK body served */
#define DS_COPY_CHECK_LEN 4096u /* bytes before a catch-up's start compared with the source */

struct copy;

struct ds_copy {
    struct ds *ds;
    struct copy *copies;
    unsigned ncopies;
};

struct copy {
    struct copy *next;
    struct ds *ds;
    struct ds_req *req;          /* REPLICATE_BLOCK, answered when the copy ends */
    uint64_t id, max_size, expected, task;
    char src_addr[DS_ADDR_MAX];
    char src_id[64];
    struct block_replica reps[BLOCK_MAX_REPLICAS];
    int nreps;
    int disk;
    char dir[PATH_MAX];
    char tmp[PATH_MAX + 32];
    int fd;
    uint64_t off;                /* verified bytes written so far */
    uint64_t synced_off;         /* of those, made durable by the last fdatasync */
    uint64_t src_tail;           /* the source's durable tail, last seen */
    uint32_t crc;                /* CRC32C of [0, off) */
    uint32_t want;               /* length of the next request */
    uint8_t *idx;                /* encoded index entries */
    size_t idx_len, idx_cap;
    uint8_t *wbuf;               /* bytes being written */
    size_t wlen;
    int catchup;                 /* appending the tail to the block here */
    uint64_t start_off;          /* where the copy started (a catch-up: our tail) */
    int checked;                 /* catch-up: our last bytes equal the source's */
    uint8_t *check_buf;          /* catch-up check: our own bytes, then compared */
    uint32_t check_len;
    uint32_t set_version;        /* version of reps (ReplicateBlock.set_version) */
    uint8_t *cu_buf;             /* catch-up: the records being appended */
    size_t cu_len;
    unsigned cu_pending;         /* catch-up: appends not yet durable */
    int cu_err;
    uv_timer_t timer;            /* throttle wait */
    int timer_open;
    uint64_t started_ms;
    int canceled;                /* CANCEL_COPY: stop at the next safe point */
    uint32_t unframe_len;        /* a compressed chunk being decoded: its length */
};

static struct ds_copy *state(struct ds *ds)
{
    if (!ds->copy) {
        struct ds_copy *dc = calloc(1, sizeof(*dc));
        if (!dc)
            return NULL;
        dc->ds = ds;
        ds->copy = dc;
    }
    return ds->copy;
}
/* ---- copy ------------------------------------------------------------------- */

static void copy_next(struct copy *cp);
static void catchup_finish(struct copy *cp);

static void copy_timer_closed(uv_handle_t *h)
{
    free(h->data);
}

static void copy_free(struct copy *cp)
{
    struct ds_copy *dc = cp->ds->copy;
    for (struct copy **pp = &dc->copies; *pp; pp = &(*pp)->next)
        if (*pp == cp) {
            *pp = cp->next;
            break;
        }
    dc->ncopies--;
    if (cp->fd >= 0)
        close(cp->fd);
    free(cp->idx);
    free(cp->wbuf);
    free(cp->cu_buf);
    free(cp->check_buf);
    if (cp->timer_open)
        uv_close((uv_handle_t *)&cp->timer, copy_timer_closed);
    else
        free(cp);
}

/* Ends a copy: on failure the temporary file goes away. Answers the
 * nameserver. */
static void copy_finish(struct copy *cp, int rc, struct block *b)
{
    struct ds *ds = cp->ds;
    uint64_t ms = uv_now(ds->loop) - cp->started_ms;
    if (rc != 0) {
        if (cp->fd >= 0)
            unlink(cp->tmp);
        if (rc == -ECANCELED && cp->canceled)
            log_info("task %" PRIu64 ": copy of block %" PRIu64 " canceled by the nameserver "
                     "after %" PRIu64 " of %" PRIu64 " bytes (%s)",
                     cp->task, cp->id, cp->off, cp->expected,
                     cp->catchup ? "the records appended are kept" : "temporary file removed");
        else
            log_warn("task %" PRIu64 ": copy of block %" PRIu64 " from %s failed after %" PRIu64
                     " of %" PRIu64 " bytes: %s",
                     cp->task, cp->id, cp->src_addr, cp->off, cp->expected, img_strerror(rc));
    } else {
        log_info("task %" PRIu64 ": block %" PRIu64 " copied from %s (%" PRIu64
                 " bytes, %u files, crc32c %08x) in %" PRIu64 " ms",
                 cp->task, cp->id, cp->src_addr, cp->off, block_file_count(b), cp->crc, ms);
    }
    /* Dropped by the session transport when the server is stopping or the
     * session was replaced while the copy ran. */
    Imgstore__ReplicateBlockResp resp = IMGSTORE__REPLICATE_BLOCK_RESP__INIT;
    resp.size = cp->off;
    resp.crc32c = cp->crc;
    resp.file_count = b ? block_file_count(b) : 0;
    ds_req_answer(cp->req, rc, rc == 0 ? &resp.base : NULL, NULL, 0, NULL);
    if (rc == 0)
        ds_session_poke(ds);
    copy_free(cp);
}

/* Ends a copy the nameserver canceled (CANCEL_COPY) with -ECANCELED, like a
 * failed one. Called only at a safe point, where nothing of the copy is in
 * flight (no READ_BLOCK, write, sync or append): a write is never cut in
 * the middle. Returns 1 when the copy ended (cp is freed), else 0. */
static int copy_cancel_point(struct copy *cp)
{
    if (!cp->canceled)
        return 0;
    copy_finish(cp, -ECANCELED, NULL);
    return 1;
}

static void copy_install(struct copy *cp)
{
    struct ds *ds = cp->ds;
    struct block *b = NULL;
    close(cp->fd);
    cp->fd = -1;
    int rc = block_install_copy(cp->dir, cp->disk, cp->id, cp->tmp, cp->reps, cp->nreps,
                                cp->idx, cp->idx_len, &b);
    if (rc == 0 && b->durable_tail != cp->off)
        rc = IMG_ECORRUPT; /* recovery disagrees with what was verified */
    if (rc == 0 && cp->set_version) {
        b->set_version = cp->set_version; /* the set it joins */
        rc = block_save_meta(b);
    }
    if (rc == 0 && (rc = store_adopt_block(ds->store, b)) == 0)
        ds_block_changed(ds, b);
    if (rc != 0) {
        if (b) {
            block_unlink_files(b);
            block_close(b);
            b = NULL;
        }
        unlink(cp->tmp);
    }
    copy_finish(cp, rc, b);
}

static void copy_synced(int res, void *arg)
{
    struct copy *cp = arg;
    if (cp->ds->stopping || res < 0) {
        copy_finish(cp, res < 0 ? res : IMG_ECONN, NULL);
        return;
    }
    if (copy_cancel_point(cp)) /* synced but not installed: removed */
        return;
    copy_install(cp);
}

uint64_t ds_copy_sync_bytes(const struct ds *ds)
{
    return ds->copy_sync_bytes ? ds->copy_sync_bytes : DS_COPY_SYNC_BYTES;
}

/* A part-way fdatasync (ds_copy_sync_bytes) is done: on to the next chunk. */
static void copy_part_synced(int res, void *arg)
{
    struct copy *cp = arg;
    if (cp->ds->stopping || res < 0) {
        copy_finish(cp, res < 0 ? res : IMG_ECONN, NULL);
        return;
    }
    copy_next(cp);
}

static void copy_written(int res, void *arg)
{
    struct copy *cp = arg;
    size_t len = cp->wlen;
    free(cp->wbuf);
    cp->wbuf = NULL;
    if (cp->ds->stopping || res < 0 || (size_t)res != len) {
        copy_finish(cp, res < 0 ? res : cp->ds->stopping ? IMG_ECONN : -EIO, NULL);
        return;
    }
    cp->off += len;
    if (cp->off - cp->synced_off >= ds_copy_sync_bytes(cp->ds)) {
        cp->synced_off = cp->off;
        int rc = uring_fdatasync(cp->ds->store->ring, cp->fd, copy_part_synced, cp);
        if (rc != 0)
            copy_finish(cp, rc, NULL);
        return;
    }
    copy_next(cp);
}

/* Appends one index entry for a verified record. */
static int idx_add(struct copy *cp, const struct needle_header *h, uint64_t off)
{
    int rc = ARRAY_RESERVE(cp->idx, cp->idx_cap, cp->idx_len + INDEX_ENTRY_SIZE,
                           4096 * INDEX_ENTRY_SIZE);
    if (rc != 0)
        return rc;
    index_encode_entry(h->seq, off, h->size, (h->flags & NEEDLE_FLAG_TOMBSTONE) != 0,
                       cp->idx + cp->idx_len);
    cp->idx_len += INDEX_ENTRY_SIZE;
    return 0;
}

/* Checks the records in body[0..len) (file offset cp->off) and returns in
 * *used how many bytes form complete, valid records (the superblock first
 * when cp->off is 0). A record cut by the end of the body is left for the
 * next request (cp->want grows to hold it). Returns 0 or IMG_ECORRUPT. */
static int check_records(struct copy *cp, const uint8_t *body, size_t len, size_t *used)
{
    size_t pos = 0;
    if (cp->off == 0) {
        uint64_t max;
        if (len < BLOCK_SUPER_SIZE)
            return IMG_ECORRUPT;
        if (block_check_super(body, cp->id, &max) != 0 || max != cp->max_size)
            return IMG_ECORRUPT;
        pos = BLOCK_SUPER_SIZE;
    }
    cp->want = DS_COPY_CHUNK;
    while (len - pos >= NEEDLE_HEADER_SIZE) {
        struct needle_header h;
        if (needle_decode_header(body + pos, &h) != 0 || h.seq > cp->max_size / NEEDLE_HEADER_SIZE)
            return IMG_ECORRUPT;
        size_t rs = needle_record_size(h.size);
        if (len - pos < rs) {
            if (pos == 0 && rs > cp->want)
                cp->want = (uint32_t)rs;
            break;
        }
        if (crc32c(0, body + pos + NEEDLE_HEADER_SIZE, h.size) != h.data_crc)
            return IMG_ECORRUPT;
        int rc = cp->catchup ? 0 : idx_add(cp, &h, cp->off + pos);
        if (rc != 0)
            return rc;
        pos += rs;
    }
    *used = pos;
    return 0;
}

/* Ends a catch-up whose records are all durable. The copy is now a checked
 * prefix-and-tail of the source: it takes the source's set version. */
static void catchup_finish(struct copy *cp)
{
    struct block *b = store_get(cp->ds->store, cp->id);
    int rc = b ? 0 : IMG_ENOBLOCKHERE;
    if (b && cp->set_version > b->set_version) {
        b->set_version = cp->set_version;
        ds_block_changed(cp->ds, b);
        rc = block_save_meta(b);
    }
    copy_finish(cp, rc, b);
}

/* One record of a catch-up chunk on its way to the disk. */
struct cu_rec {
    struct copy *cp;
    uint64_t off;
    const uint8_t *rec;
};

static void catchup_put(struct copy *cp);

static void catchup_done(int status, void *arg)
{
    struct cu_rec *r = arg;
    struct copy *cp = r->cp;
    struct block *b = store_get(cp->ds->store, cp->id);
    struct needle_header h;
    if (status == 0 && (!b || needle_decode_header(r->rec, &h) != 0))
        status = IMG_ENOBLOCKHERE;
    if (status == 0)
        status = block_commit(b, r->off, &h);
    if (status != 0 && cp->cu_err == 0)
        cp->cu_err = status;
    free(r);
    catchup_put(cp);
}

/* Drops one pending append (or the issuing hold) of a catch-up chunk; the
 * last one moves the copy on. */
static void catchup_put(struct copy *cp)
{
    if (--cp->cu_pending > 0)
        return;
    if (cp->cu_err == 0) {
        cp->crc = crc32c(cp->crc, cp->cu_buf, cp->cu_len);
        cp->off += cp->cu_len;
    }
    free(cp->cu_buf);
    cp->cu_buf = NULL;
    if (cp->cu_err != 0 || cp->ds->stopping)
        copy_finish(cp, cp->cu_err ? cp->cu_err : IMG_ECONN, NULL);
    else
        copy_next(cp);
}

/* Appends the verified records body[0..used) at the tail of the block here,
 * one reserved, group-committed append each. */
static void catchup_write(struct copy *cp, const uint8_t *body, size_t used)
{
    struct block *b = store_get(cp->ds->store, cp->id);
    if (!b || b->tail != cp->off || b->durable_tail != cp->off) {
        copy_finish(cp, b ? IMG_EOFFSET : IMG_ENOBLOCKHERE, NULL);
        return;
    }
    if (!(cp->cu_buf = malloc(used))) {
        copy_finish(cp, -ENOMEM, NULL);
        return;
    }
    memcpy(cp->cu_buf, body, used);
    cp->cu_len = used;
    cp->cu_err = 0;
    cp->cu_pending = 1; /* held while issuing */
    for (size_t pos = 0; pos < used;) {
        struct needle_header h;
        needle_decode_header(cp->cu_buf + pos, &h); /* checked by check_records */
        uint32_t rs = (uint32_t)needle_record_size(h.size);
        struct cu_rec *r = malloc(sizeof(*r));
        int rc = r ? block_reserve_at(b, cp->off + pos, rs) : -ENOMEM;
        if (rc == 0) {
            *r = (struct cu_rec){.cp = cp, .off = cp->off + pos, .rec = cp->cu_buf + pos};
            rc = blockio_append(cp->ds->store->ring, b, r->rec, rs, r->off, catchup_done, r);
            if (rc != 0) {
                b->tail -= rs; /* nothing was queued at the tail we reserved */
                block_seal(b);
            }
        }
        if (rc != 0) {
            free(r);
            cp->cu_err = rc;
            break;
        }
        cp->cu_pending++;
        pos += rs;
    }
    catchup_put(cp);
}

/* The bytes of a chunk, checked against their CRC32C: records checked,
 * written (or appended, a catch-up). `asked`: the length requested. */
static void chunk_body(struct copy *cp, const uint8_t *body, uint32_t len, uint32_t asked)
{
    int rc;
    size_t used = 0;
    if (len == 0) {
        /* The source has nothing past our offset: done if it is enough. */
        ds_throttle_refund(cp->ds, asked);
        if (cp->off < cp->expected || cp->off < BLOCK_SUPER_SIZE)
            copy_finish(cp, IMG_EOFFSET, NULL);
        else if (cp->catchup)
            catchup_finish(cp);
        else if ((rc = uring_fdatasync(cp->ds->store->ring, cp->fd, copy_synced, cp)) != 0)
            copy_finish(cp, rc, NULL);
        return;
    }
    if ((rc = check_records(cp, body, len, &used)) != 0) {
        copy_finish(cp, rc, NULL);
        return;
    }
    ds_throttle_refund(cp->ds, (double)asked - (double)used);
    if (used == 0) { /* a record larger than the chunk: ask for it whole */
        copy_next(cp);
        return;
    }
    if (cp->catchup) {
        catchup_write(cp, body, used);
        return;
    }
    cp->wbuf = malloc(used);
    if (!cp->wbuf) {
        copy_finish(cp, -ENOMEM, NULL);
        return;
    }
    memcpy(cp->wbuf, body, used);
    cp->wlen = used;
    cp->crc = crc32c(cp->crc, body, used);
    rc = uring_write_bg(cp->ds->store->ring, cp->fd, cp->wbuf, used, cp->off, copy_written, cp);
    if (rc != 0)
        copy_finish(cp, rc, NULL);
}

/* A compressed chunk decoded (and its CRC32C checked) on the thread pool. */
static void chunk_unframed(int status, uint8_t *raw, void *arg)
{
    struct copy *cp = arg;
    if (status == 0 && cp->ds->stopping)
        status = IMG_ECONN;
    else if (status == 0 && cp->canceled)
        status = -ECANCELED;
    if (status != 0)
        copy_finish(cp, status, NULL);
    else
        chunk_body(cp, raw, cp->unframe_len, cp->want);
    free(raw);
}

static void copy_chunk(int status, const struct frame *f, void *arg)
{
    struct copy *cp = arg;
    int rc = conn_reply_status(status, f);
    if (cp->ds->stopping)
        rc = IMG_ECONN;
    else if (cp->canceled)
        rc = -ECANCELED; /* the chunk is dropped, never written */
    Imgstore__ReadBlockResp *m = NULL;
    if (rc == 0 && !(m = imgstore__read_block_resp__unpack(NULL, f->h.head_len, f->head)))
        rc = IMG_EPROTO;
    /* A compressed chunk: one frame of raw_len <= the length asked, checked
     * after decoding; a plain one is checked now. */
    uint32_t raw_len = m ? m->raw_len : 0;
    if (rc == 0 && raw_len && (raw_len > cp->want || f->h.body_len == 0 ||
                               f->h.body_len >= raw_len))
        rc = IMG_EPROTO;
    if (rc == 0 && !raw_len &&
        (f->h.body_len > cp->want || crc32c(0, f->body, f->h.body_len) != m->crc32c))
        rc = IMG_ECORRUPT; /* damaged on the way: never written */
    if (rc == 0 && m->max_size != cp->max_size)
        rc = IMG_EINVAL;
    if (rc != 0) {
        if (m)
            imgstore__read_block_resp__free_unpacked(m, NULL);
        copy_finish(cp, rc, NULL);
        return;
    }
    cp->src_tail = m->tail;
    uint32_t crc = m->crc32c;
    imgstore__read_block_resp__free_unpacked(m, NULL);
    ds_codec_count_received(cp->ds, f->h.body_len, raw_len);
    if (!raw_len) {
        chunk_body(cp, f->body, f->h.body_len, cp->want);
        return;
    }
    uint8_t *frame = malloc(f->h.body_len);
    if (!frame) {
        copy_finish(cp, -ENOMEM, NULL);
        return;
    }
    memcpy(frame, f->body, f->h.body_len);
    cp->unframe_len = raw_len;
    rc = ds_codec_unframe(cp->ds, frame, f->h.body_len, raw_len, crc, chunk_unframed, cp);
    if (rc != 0)
        copy_finish(cp, rc, NULL);
}

static void copy_timer_cb(uv_timer_t *t)
{
    copy_next(t->data);
}

/* The source's bytes before our tail arrived: equal to ours, or refused. */
static void check_remote(int status, const struct frame *f, void *arg)
{
    struct copy *cp = arg;
    int rc;
    Imgstore__ReadBlockResp *m =
        conn_reply_unpack(status, f, &imgstore__read_block_resp__descriptor, &rc);
    if (m) /* counted as the source counted it */
        ds_codec_count_received(cp->ds, f->h.body_len, m->raw_len);
    if (rc == 0 && (f->h.body_len != cp->check_len || crc32c(0, f->body, f->h.body_len) != m->crc32c))
        rc = IMG_ECORRUPT;
    if (rc == 0 && memcmp(f->body, cp->check_buf, cp->check_len) != 0) {
        log_warn("task %" PRIu64 ": block %" PRIu64 " here is not a prefix of the copy on %s "
                 "(the %u bytes before our tail differ): not caught up",
                 cp->task, cp->id, cp->src_id, cp->check_len);
        rc = IMG_ESTALE;
    }
    if (m)
        imgstore__read_block_resp__free_unpacked(m, NULL);
    if (rc == 0 && cp->ds->stopping)
        rc = IMG_ECONN;
    if (rc != 0) {
        copy_finish(cp, rc, NULL);
        return;
    }
    cp->checked = 1;
    copy_next(cp);
}

/* Our own bytes before the tail are read: ask the source for the same. */
static void check_local_done(int status, void *arg)
{
    struct copy *cp = arg;
    if (status == 0 && cp->ds->stopping)
        status = IMG_ECONN;
    if (status == 0 && cp->canceled)
        status = -ECANCELED;
    if (status != 0) {
        copy_finish(cp, status, NULL);
        return;
    }
    Imgstore__ReadBlock m = IMGSTORE__READ_BLOCK__INIT;
    m.block_id = cp->id;
    m.offset = cp->off - cp->check_len;
    m.len = cp->check_len;
    int rc = ds_peer_request(cp->ds, cp->src_addr, FT_READ_BLOCK, &m.base, NULL, 0,
                             DS_COPY_READ_TIMEOUT_MS, check_remote, cp);
    if (rc != 0)
        copy_finish(cp, rc, NULL);
}

/* Starts the prefix check of a catch-up (see the top of this file). */
static void check_start(struct copy *cp)
{
    struct block *b = store_get(cp->ds->store, cp->id);
    if (!b || b->durable_tail != cp->off) {
        copy_finish(cp, b ? IMG_EOFFSET : IMG_ENOBLOCKHERE, NULL);
        return;
    }
    cp->check_len = (uint32_t)(cp->off < DS_COPY_CHECK_LEN ? cp->off : DS_COPY_CHECK_LEN);
    cp->check_buf = malloc(cp->check_len);
    int rc = cp->check_buf ? blockio_read(cp->ds->store->ring, b, cp->check_buf, cp->check_len,
                                          cp->off - cp->check_len, check_local_done, cp)
                           : -ENOMEM;
    if (rc != 0)
        copy_finish(cp, rc, NULL);
}

/* Asks for the next chunk, or waits for the bucket, or finishes when the
 * source's tail is reached. */
static void copy_next(struct copy *cp)
{
    struct ds *ds = cp->ds;
    if (ds->stopping) {
        copy_finish(cp, IMG_ECONN, NULL);
        return;
    }
    if (copy_cancel_point(cp))
        return;
    if (cp->catchup && !cp->checked) {
        check_start(cp);
        return;
    }
    if (cp->catchup && cp->off >= cp->src_tail && cp->off >= cp->expected) {
        catchup_finish(cp);
        return;
    }
    if (cp->off > 0 && cp->off >= cp->src_tail && cp->off >= cp->expected) {
        int rc = uring_fdatasync(ds->store->ring, cp->fd, copy_synced, cp);
        if (rc != 0)
            copy_finish(cp, rc, NULL);
        return;
    }
    uint64_t wait = ds_throttle_take(ds, cp->want);
    if (wait) {
        if (!cp->timer_open) {
            uv_timer_init(ds->loop, &cp->timer);
            cp->timer.data = cp;
            cp->timer_open = 1;
        }
        uv_timer_start(&cp->timer, copy_timer_cb, wait, 0);
        return;
    }
    Imgstore__ReadBlock m = IMGSTORE__READ_BLOCK__INIT;
    m.block_id = cp->id;
    m.offset = cp->off;
    m.len = cp->want;
    m.accept_zstd = 1;
    int rc = ds_peer_request(ds, cp->src_addr, FT_READ_BLOCK, &m.base, NULL, 0,
                             DS_COPY_READ_TIMEOUT_MS, copy_chunk, cp);
    if (rc != 0)
        copy_finish(cp, rc, NULL);
}

/* Validates REPLICATE_BLOCK and starts the copy. Returns 0 when the copy was
 * started (answered later), 1 when already satisfied (answer 0 now), or an
 * error to answer now. */
static int replicate_start(struct ds *ds, struct ds_req *r, const Imgstore__ReplicateBlock *m,
                           uint64_t *have)
{
    struct ds_copy *dc = state(ds);
    if (!dc)
        return -ENOMEM;
    if (m->block_id == 0 || m->block_id > FNAME_MAX_BLOCK_ID || m->block_size < BLOCK_MIN_SIZE ||
        m->block_size > BLOCK_MAX_SIZE || m->block_size % NEEDLE_ALIGN != 0 ||
        m->expected_size > m->block_size || m->n_replicas > BLOCK_MAX_REPLICAS || !m->source)
        return IMG_EINVAL;
    struct copy *cp = calloc(1, sizeof(*cp));
    if (!cp)
        return -ENOMEM;
    struct block_replica src;
    int rc = ds_block_replica(m->source, &src);
    for (size_t i = 0; rc == 0 && i < m->n_replicas; i++)
        rc = ds_block_replica(m->replicas[i], &cp->reps[i]);
    if (rc == 0 && strcmp(src.server_id, ds->store->server_id) == 0)
        rc = IMG_EINVAL;
    struct block *b = store_get(ds->store, m->block_id);
    if (rc == 0 && b) {
        /* Already here: fine when it is complete, else the tail is caught
         * up in place (a settled copy of the same block only). */
        *have = b->durable_tail;
        if (b->set_version < m->set_version && b->durable_tail > m->expected_size)
            rc = IMG_ESTALE; /* a copy of an older set, longer: to be replaced */
        else if (b->durable_tail >= m->expected_size && b->set_version >= m->set_version)
            rc = 1;
        /* else caught up; a copy of an older set exactly as long is only
         * checked (its last bytes against the source's) and takes the
         * current set version */
        else if (b->max_size != m->block_size)
            rc = IMG_EINVAL;
        else if (b->tail != b->durable_tail)
            rc = IMG_EUNAVAIL;
        cp->catchup = 1;
    }
    for (struct copy *o = dc->copies; rc == 0 && o; o = o->next)
        if (o->id == m->block_id)
            rc = IMG_EEXIST;
    if (rc == 0 && dc->ncopies >= DS_COPY_MAX_ACTIVE)
        rc = IMG_EUNAVAIL;
    if (rc == 0 && !cp->catchup &&
        (cp->disk = store_pick_disk(ds->store, cp->dir, sizeof(cp->dir))) < 0)
        rc = cp->disk;
    if (rc != 0) {
        free(cp);
        return rc;
    }
    ds_throttle_set_rate(ds, m->rate_bytes_per_s);
    cp->ds = ds;
    cp->req = r;
    cp->id = m->block_id;
    cp->max_size = m->block_size;
    cp->expected = m->expected_size;
    cp->task = m->task_id;
    cp->nreps = (int)m->n_replicas;
    cp->set_version = m->set_version;
    cp->want = DS_COPY_CHUNK;
    cp->started_ms = uv_now(ds->loop);
    snprintf(cp->src_addr, sizeof(cp->src_addr), "%s", src.addr);
    snprintf(cp->src_id, sizeof(cp->src_id), "%s", src.server_id);
    cp->fd = -1;
    if (cp->catchup) {
        cp->off = cp->src_tail = cp->start_off = b->durable_tail;
        if (!b->sealed && block_seal(b) == 0)
            log_info("block %" PRIu64 " sealed for its tail catch-up", b->id);
        ds_block_report(ds, b);
    } else {
        snprintf(cp->tmp, sizeof(cp->tmp), "%s/%016" PRIx64 COPY_TEMP_SUFFIX, cp->dir, cp->id);
        cp->fd = open(cp->tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    }
    if (!cp->catchup && cp->fd < 0) {
        rc = -errno;
        free(cp);
        return rc;
    }
    cp->next = dc->copies;
    dc->copies = cp;
    dc->ncopies++;
    log_info("task %" PRIu64 ": %s block %" PRIu64 " (%" PRIu64 " of %" PRIu64 " bytes here) "
             "from %s (%s)",
             cp->task, cp->catchup ? "catching up" : "copying", cp->id, cp->off, cp->expected,
             cp->src_id, cp->src_addr);
    copy_next(cp);
    return 0;
}

void ds_copy_replicate(struct ds_req *r, const struct frame *f)
{
    Imgstore__ReplicateBlock *m = ds_req_unpack(r, f, &imgstore__replicate_block__descriptor);
    if (!m)
        return;
    uint64_t have = 0;
    int rc = replicate_start(r->ds, r, m, &have);
    imgstore__replicate_block__free_unpacked(m, NULL);
    if (rc == 0)
        return;
    Imgstore__ReplicateBlockResp resp = IMGSTORE__REPLICATE_BLOCK_RESP__INIT;
    resp.size = have;
    ds_req_answer(r, rc == 1 ? 0 : rc, rc == 1 ? &resp.base : NULL, NULL, 0, NULL);
}

int ds_copy_running(const struct ds *ds, uint64_t id)
{
    for (struct copy *cp = ds->copy ? ds->copy->copies : NULL; cp; cp = cp->next)
        if (cp->id == id)
            return 1;
    return 0;
}

/* CANCEL_COPY: the nameserver canceled the task of a running copy. The copy
 * is marked and stops at its next safe point (copy_cancel_point); one that
 * only waits for the token bucket stops now. Answers 0, or IMG_ENOTFOUND
 * when no copy of the block (of that task, when task_id is set) runs here. */
void ds_copy_cancel(struct ds_req *r, const struct frame *f)
{
    struct ds *ds = r->ds;
    Imgstore__CancelCopy *m = ds_req_unpack(r, f, &imgstore__cancel_copy__descriptor);
    if (!m)
        return;
    struct copy *cp = ds->copy ? ds->copy->copies : NULL;
    while (cp && (cp->id != m->block_id || (m->task_id && cp->task != m->task_id)))
        cp = cp->next;
    imgstore__cancel_copy__free_unpacked(m, NULL);
    Imgstore__CancelCopyResp resp = IMGSTORE__CANCEL_COPY_RESP__INIT;
    ds_req_answer(r, cp ? 0 : IMG_ENOTFOUND, cp ? &resp.base : NULL, NULL, 0, NULL);
    if (!cp || cp->canceled)
        return;
    cp->canceled = 1;
    /* Waiting for the bucket, nothing of the copy is in flight. */
    if (cp->timer_open && uv_is_active((uv_handle_t *)&cp->timer)) {
        uv_timer_stop(&cp->timer);
        copy_cancel_point(cp);
    }
}

/* ---- READ_BLOCK (source side) ------------------------------------------------- */

struct rb {
    struct ds *ds;
    struct ds_req *req;
    uint64_t block_id;
    uint8_t *buf;
    uint32_t len;
    int zstd; /* ReadBlock.accept_zstd */
};

/* Answers r with `body` (taken; the bytes read, or with raw_len their zstd
 * frame) and the CRC32C of the bytes read, or with rc. Frees r. */
static void rb_send(struct rb *r, int rc, uint8_t *body, uint32_t len, uint32_t raw_len,
                    uint32_t crc)
{
    struct block *b = rc == 0 ? store_get(r->ds->store, r->block_id) : NULL;
    if (rc == 0 && !b)
        rc = IMG_ENOBLOCKHERE; /* deleted while the read ran */
    Imgstore__ReadBlockResp resp = IMGSTORE__READ_BLOCK_RESP__INIT;
    if (rc == 0) {
        resp.tail = b->durable_tail;
        resp.sealed = b->sealed;
        resp.max_size = b->max_size;
        resp.crc32c = crc;
        resp.raw_len = raw_len;
        ds_codec_count_sent(r->ds, len, raw_len);
        ds_req_answer(r->req, 0, &resp.base, body, len, free);
    } else {
        ds_req_fail(r->req, rc);
        free(body);
    }
    free(r);
}

static void rb_answer(struct rb *r, int rc)
{
    uint8_t *buf = r->buf;
    r->buf = NULL;
    rb_send(r, rc, buf, r->len, 0, rc == 0 ? crc32c(0, buf, r->len) : 0);
}

/* The chunk packed (ds_codec.c): compressed when that pays, or as it is. */
static void rb_packed(uint8_t *body, uint32_t body_len, uint32_t raw_len, uint32_t crc,
                      void *arg)
{
    rb_send(arg, 0, body, body_len, raw_len, crc);
}

static void rb_read_done(int status, void *arg)
{
    struct rb *r = arg;
    /* Chunks of compressible records (most SVG, BMP and TIFF records are
     * stored compressed already, but their headers, small files and
     * blocks written before format 3 are not) go as one zstd frame when
     * that saves 10 %, at a fast level, off the loop. */
    if (status != 0) {
        rb_answer(r, status);
        return;
    }
    uint8_t *buf = r->buf;
    r->buf = NULL;
    ds_codec_pack(r->ds, buf, r->len, r->zstd, rb_packed, r);
}

void ds_copy_read_block(struct ds_req *req, const struct frame *f)
{
    struct ds *ds = req->ds;
    struct rb *r = calloc(1, sizeof(*r));
    if (!r) {
        ds_req_fail(req, -ENOMEM);
        return;
    }
    *r = (struct rb){.ds = ds, .req = req};
    Imgstore__ReadBlock *m = imgstore__read_block__unpack(NULL, f->h.head_len, f->head);
    if (!m) {
        rb_answer(r, IMG_EPROTO);
        return;
    }
    r->block_id = m->block_id;
    r->zstd = m->accept_zstd;
    uint64_t off = m->offset, len = m->len;
    imgstore__read_block__free_unpacked(m, NULL);
    struct block *b = store_get(ds->store, r->block_id);
    if (!b) {
        rb_answer(r, IMG_ENOBLOCKHERE);
        return;
    }
    if (off > b->durable_tail) {
        rb_answer(r, IMG_EOFFSET);
        return;
    }
    if (len > READ_MAX_LEN)
        len = READ_MAX_LEN;
    if (len > b->durable_tail - off)
        len = b->durable_tail - off;
    r->len = (uint32_t)len;
    r->buf = malloc(len ? len : 1);
    if (!r->buf) {
        rb_answer(r, -ENOMEM);
        return;
    }
    if (len == 0) {
        rb_answer(r, 0);
        return;
    }
    int rc = blockio_read_bg(ds->store->ring, b, r->buf, len, off, rb_read_done, r);
    if (rc != 0)
        rb_answer(r, rc);
}

/* ---- heartbeat support and shut-down -------------------------------------------- */

size_t ds_copy_progress(struct ds *ds, Imgstore__CopyProgress *out, size_t max)
{
    size_t n = 0;
    for (struct copy *cp = ds->copy ? ds->copy->copies : NULL; cp && n < max; cp = cp->next) {
        imgstore__copy_progress__init(&out[n]);
        out[n].task_id = cp->task;
        out[n].block_id = cp->id;
        out[n].bytes_done = cp->off - cp->start_off;
        n++;
    }
    return n;
}

void ds_copy_stop(struct ds *ds)
{
    struct ds_copy *dc = ds->copy;
    if (!dc)
        return;
    /* Copies with a request or write in flight end in their callbacks
     * (ds->stopping); the temporary files of the others go now. */
    for (struct copy *cp = dc->copies; cp; cp = cp->next)
        if (cp->timer_open)
            uv_timer_stop(&cp->timer);
}
