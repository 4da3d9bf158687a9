/* ds_ec_rebuild.c - EC_REBUILD: a lost or damaged shard of an erasure-coded
 * block rebuilt on this server, or a shard moved here off a draining server
 * (docs/nameserver.md, "Erasure-coded blocks", repair and drains; the old
 * copy's hand-over of its deletions is here too).
 *
 * The header and record table come from a surviving shard (EC_READ_RANGE
 * with meta), with the deletions every source knows (the union of their
 * tables as in memory: a delete is never undone by a rebuild); the payload
 * is rebuilt chunk by chunk (DS_EC_REBUILD_CHUNK bytes): the same range of k surviving shards is fetched with
 * EC_READ_RANGE (each checked against its chunk CRCs at its holder) and the
 * lost shard's range decoded. The whole file is then assembled (the new
 * index, the payload's chunk CRCs), checked and written like an
 * EC_PUT_SHARD (ec_shard_write on the thread pool, durable before the
 * answer), opened and reported held: no file is read through it until the
 * nameserver sent the journaled tombstones deleted meanwhile
 * (APPLY_TOMBSTONES, ds_ec_apply).
 *
 * A move (a drain): one source holds the very shard being rebuilt (the
 * draining holder). It is asked first for the meta, and for every chunk
 * alone: its range (checked against its chunk CRCs at its holder) is taken
 * as it is, one read instead of k. When it fails to give a range, the
 * move goes on as a rebuild from the others from that chunk on.
 *
 * A move (not a repair) takes from the server's background token bucket
 * (ds_throttle.c, EcRebuild.rate_bytes_per_s) as block copies do: each
 * chunk is asked for only when the bucket is not in debt.
 *
 * Payload ranges are asked with accept_zstd: a range may come as one zstd
 * frame (ds_codec.c, as READ_BLOCK's chunks), decoded and checked against
 * its CRC32C on the thread pool. Every byte received is counted in the copy
 * metrics (wire and raw).
 *
 * The old copy of a moved shard (ds_ec_hand_over): once the stripe names
 * the new holder, the nameserver tells the old one to drop its copy with
 * the new holder's address; its shard leaves service at once (a delete
 * arriving later is refused and retried by the client against the stripe's
 * holders), every deletion in its table goes to the new holder (EC_TOMB),
 * and only then is its file removed. So a delete that reached the old copy
 * while the move ran is never lost. Calls ds_ec.c (ds_ec_adopt, ds_ec_apply),
 * ec.c, ec_shard.c, ds_codec.c, ds_peer.c. */
#include "dataserver/ds_ec.h"

#include "base/err.h"
#include "base/log.h"
#include "dataserver/ds_codec.h"
#include "dataserver/ds_throttle.h"
#include "dataserver/store.h"

#include <errno.h>
#include <inttypes.h>
#include <unistd.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DS_EC_REBUILD_CHUNK (1u << 20)
#define DS_EC_REBUILD_TIMEOUT_MS 30000

struct rebuild {
    struct ds *ds;
    struct ds_req *r;
    uint64_t id, task;
    unsigned index, k, m;
    unsigned nsrc;
    unsigned src_index[EC_MAX_SHARDS];
    char src_addr[EC_MAX_SHARDS][64];
    int copy_src;             /* a move: the source holding shard `index` itself, else -1 */
    int copy_failed;          /* it failed a range: decoded from the others since */
    uint64_t copied;          /* payload bytes taken from it as they are */
    uint64_t wire, raw;       /* bytes received, and the bytes they carried */
    int throttle;             /* a move: chunks wait for the token bucket */
    uv_timer_t timer;         /* ... the wait */
    int timer_open;
    uint64_t started_ms;
    unsigned meta_from;       /* next source asked for the meta */
    uint8_t *meta;            /* the first source's header and table */
    size_t meta_len, hl;
    struct ec_tent *tab;      /* its table, with every source's deletions */
    size_t ntab;
    uint64_t L;
    uint8_t *payload;         /* L bytes being rebuilt */
    uint64_t off;             /* the chunk being rebuilt */
    uint32_t clen;
    uint8_t *part[EC_MAX_SHARDS]; /* the chunk's range from each source */
    unsigned pending, nok;
    int rc;
    struct ec_codec codec;
    /* the write on the thread pool */
    uv_work_t w;
    char dir[PATH_MAX];
    int disk;
    uint8_t *file;
    size_t file_len;
    struct ds_shard *s;
};

static void rebuild_closed(uv_handle_t *h)
{
    free(h->data);
}

static void rebuild_end(struct rebuild *b, int rc)
{
    if (rc == 0) {
        Imgstore__EcRebuildResp m = IMGSTORE__EC_REBUILD_RESP__INIT;
        m.file_bytes = b->file_len;
        if (b->copy_src >= 0)
            log_info("task %" PRIu64 ": shard %u of block %016" PRIx64 " moved here from %s "
                     "(%zu bytes; %" PRIu64 " payload bytes copied, %" PRIu64 " decoded; "
                     "wire %" PRIu64 " raw %" PRIu64 ") in %" PRIu64 " ms",
                     b->task, b->index, b->id, b->src_addr[b->copy_src], b->file_len,
                     b->copied, b->L - b->copied, b->wire, b->raw,
                     uv_now(b->ds->loop) - b->started_ms);
        else
            log_info("task %" PRIu64 ": shard %u of block %016" PRIx64 " rebuilt here (%zu "
                     "bytes)",
                     b->task, b->index, b->id, b->file_len);
        ds_req_answer(b->r, 0, &m.base, NULL, 0, NULL);
    } else {
        log_warn("task %" PRIu64 ": rebuilding shard %u of block %016" PRIx64 " failed: %s",
                 b->task, b->index, b->id, img_strerror(rc));
        ds_req_fail(b->r, rc);
    }
    for (unsigned i = 0; i < EC_MAX_SHARDS; i++)
        free(b->part[i]);
    free(b->meta);
    free(b->tab);
    free(b->payload);
    free(b->file);
    if (b->timer_open)
        uv_close((uv_handle_t *)&b->timer, rebuild_closed);
    else
        free(b);
}

static void write_run(uv_work_t *w)
{
    struct rebuild *b = w->data;
    b->rc = ec_shard_write(b->dir, b->id, b->index, b->file, b->file_len);
    if (b->rc == 0)
        b->s = ds_ec_open_shard(b->dir, b->id, b->index, b->disk, &b->rc);
}

static void write_after(uv_work_t *w, int status)
{
    struct rebuild *b = w->data;
    int rc = status < 0 ? status : b->rc;
    if (rc == 0)
        b->s->held = 1; /* until the nameserver's APPLY_TOMBSTONES (ds_ec_apply) */
    if (rc == 0 && (rc = ds_ec_adopt(b->ds, b->s)) != 0)
        ds_ec_free_shard(b->s);
    rebuild_end(b, rc);
}

static void finish(struct rebuild *b)
{
    int rc = ec_shard_assemble(b->meta, b->meta_len, b->id, b->index, b->payload, b->L,
                               &b->file, &b->file_len);
    if (rc == 0) {
        b->disk = store_pick_disk(b->ds->store, b->dir, sizeof(b->dir));
        rc = b->disk < 0 ? b->disk : 0;
    }
    if (rc == 0) {
        snprintf(b->dir, sizeof(b->dir), "%s/%s", b->ds->store->disks[b->disk].path,
                 STORE_BLOCKS_DIR);
        b->w.data = b;
        rc = uv_queue_work(b->ds->loop, &b->w, write_run, write_after);
    }
    if (rc != 0)
        rebuild_end(b, rc);
}

static void next_chunk(struct rebuild *b);

/* One chunk's range from source i arrived (or failed). */
struct part_call {
    struct rebuild *b;
    unsigned i;
};

static void chunk_decode(struct rebuild *b)
{
    uint8_t have[EC_MAX_K];
    const uint8_t *src[EC_MAX_K];
    unsigned n = 0;
    for (unsigned i = 0; i < b->nsrc && n < b->k; i++)
        if (b->part[i]) {
            have[n] = (uint8_t)b->src_index[i];
            src[n++] = b->part[i];
        }
    uint8_t want = (uint8_t)b->index;
    uint8_t *out = b->payload + b->off;
    int rc = n == b->k ? ec_codec_decode(&b->codec, b->clen, have, src, &want, 1, &out)
                       : IMG_EUNAVAIL;
    for (unsigned i = 0; i < EC_MAX_SHARDS; i++) {
        free(b->part[i]);
        b->part[i] = NULL;
    }
    if (rc != 0) {
        rebuild_end(b, rc);
        return;
    }
    b->off += b->clen;
    next_chunk(b);
}

/* A source's range arrived whole (raw, clen bytes, owned) or not (NULL). */
static void part_done(struct part_call *pc, uint8_t *raw)
{
    struct rebuild *b = pc->b;
    unsigned i = pc->i;
    free(pc);
    if (raw && b->nok < b->k && !b->part[i]) {
        b->part[i] = raw;
        raw = NULL;
        b->nok++;
    }
    free(raw);
    if (--b->pending == 0)
        chunk_decode(b);
}

static void part_unframed(int status, uint8_t *raw, void *arg)
{
    part_done(arg, status == 0 ? raw : NULL);
    if (status != 0)
        free(raw);
}

/* Checks an EC_READ_RANGE answer of clen bytes: 1 when plain (the body is
 * the bytes), 2 when a zstd frame of them (*raw_len, *crc), 0 when bad.
 * Counts what arrived. */
static int range_answer(struct rebuild *b, int status, const struct frame *f, uint32_t *crc)
{
    if (status != 0 || f->h.status != 0)
        return 0;
    Imgstore__EcReadRangeResp *m =
        imgstore__ec_read_range_resp__unpack(NULL, f->h.head_len, f->head);
    if (!m)
        return 0;
    uint32_t raw_len = m->raw_len;
    *crc = m->crc32c;
    imgstore__ec_read_range_resp__free_unpacked(m, NULL);
    ds_codec_count_received(b->ds, f->h.body_len, raw_len);
    b->wire += f->h.body_len;
    b->raw += raw_len ? raw_len : f->h.body_len;
    if (!raw_len)
        return f->h.body_len == b->clen ? 1 : 0;
    return raw_len == b->clen && f->h.body_len > 0 && f->h.body_len < raw_len ? 2 : 0;
}

/* Decodes the frame in f's body (kind 2 of range_answer) on the thread
 * pool; cb gets clen bytes. Returns 0 or an error (cb not called). */
static int range_unframe(struct rebuild *b, const struct frame *f, uint32_t crc,
                         ds_codec_unframe_cb cb, void *arg)
{
    uint8_t *frame = malloc(f->h.body_len);
    if (!frame)
        return -ENOMEM;
    memcpy(frame, f->body, f->h.body_len);
    return ds_codec_unframe(b->ds, frame, f->h.body_len, b->clen, crc, cb, arg);
}

static void part_reply(int status, const struct frame *f, void *arg)
{
    struct part_call *pc = arg;
    struct rebuild *b = pc->b;
    uint32_t crc = 0;
    int kind = range_answer(b, status, f, &crc);
    uint8_t *raw = NULL;
    if (kind == 2 && b->nok < b->k && range_unframe(b, f, crc, part_unframed, pc) == 0)
        return; /* part_unframed goes on */
    if (kind == 1 && b->nok < b->k && (raw = malloc(b->clen)) != NULL)
        memcpy(raw, f->body, b->clen);
    part_done(pc, raw);
}

/* A move: the chunk from the draining holder's own shard, or (NULL) the
 * chunk is decoded from the others from now on. */
static void copy_done(struct rebuild *b, const uint8_t *raw)
{
    if (!raw) {
        log_warn("task %" PRIu64 ": shard %u of block %016" PRIx64 ": %s gave no range at "
                 "%" PRIu64 "; rebuilt from the other shards from there",
                 b->task, b->index, b->id, b->src_addr[b->copy_src], b->off);
        b->copy_failed = 1;
    } else {
        memcpy(b->payload + b->off, raw, b->clen);
        b->copied += b->clen;
        b->off += b->clen;
    }
    next_chunk(b);
}

static void copy_unframed(int status, uint8_t *raw, void *arg)
{
    copy_done(arg, status == 0 ? raw : NULL);
    free(raw);
}

static void copy_reply(int status, const struct frame *f, void *arg)
{
    struct rebuild *b = arg;
    uint32_t crc = 0;
    int kind = range_answer(b, status, f, &crc);
    if (kind == 2 && range_unframe(b, f, crc, copy_unframed, b) == 0)
        return;
    copy_done(b, kind == 1 ? f->body : NULL);
}

/* Asks source i for the chunk's range; 0 or an error (cb not called). */
static int ask_range(struct rebuild *b, unsigned i, conn_reply_cb cb, void *arg)
{
    Imgstore__EcReadRange q = IMGSTORE__EC_READ_RANGE__INIT;
    q.block_id = b->id;
    q.index = b->src_index[i];
    q.offset = b->off;
    q.len = b->clen;
    q.accept_zstd = 1;
    return ds_peer_request(b->ds, b->src_addr[i], FT_EC_READ_RANGE, &q.base, NULL, 0,
                           DS_EC_REBUILD_TIMEOUT_MS, cb, arg);
}

static void throttle_tick(uv_timer_t *t)
{
    next_chunk(t->data);
}

static void next_chunk(struct rebuild *b)
{
    if (b->off >= b->L) {
        finish(b);
        return;
    }
    b->clen = (uint32_t)(b->L - b->off < DS_EC_REBUILD_CHUNK ? b->L - b->off
                                                             : DS_EC_REBUILD_CHUNK);
    uint64_t wait = b->throttle ? ds_throttle_take(b->ds, b->clen) : 0;
    if (wait) {
        if (!b->timer_open) {
            uv_timer_init(b->ds->loop, &b->timer);
            b->timer.data = b;
            b->timer_open = 1;
        }
        uv_timer_start(&b->timer, throttle_tick, wait, 0);
        return;
    }
    if (b->copy_src >= 0 && !b->copy_failed) {
        if (ask_range(b, (unsigned)b->copy_src, copy_reply, b) == 0)
            return;
        b->copy_failed = 1;
    }
    b->nok = 0;
    b->pending = 1; /* held while sending */
    for (unsigned i = 0; i < b->nsrc; i++) {
        if ((int)i == b->copy_src)
            continue;
        struct part_call *pc = malloc(sizeof(*pc));
        if (!pc)
            break;
        *pc = (struct part_call){.b = b, .i = i};
        b->pending++;
        if (ask_range(b, i, part_reply, pc) != 0) {
            b->pending--;
            free(pc);
        }
    }
    if (--b->pending == 0)
        chunk_decode(b);
}

static void ask_meta(struct rebuild *b);

/* Marks deleted in b's table every file another source's meta says is
 * deleted (a rebuilt shard takes the union of its sources' deletions). */
static void union_deleted(struct rebuild *b, const uint8_t *meta, size_t len)
{
    struct ec_hdr h;
    size_t hl;
    struct ec_tent *t;
    size_t n;
    if (ec_shard_meta_header(meta, len, b->id, &h, &hl) != 0)
        return;
    uint64_t block_len = h.block_len;
    ec_hdr_free(&h);
    if (ec_table_parse(meta + hl, len - hl, block_len, &t, &n) != 0)
        return;
    for (size_t i = 0; i < n; i++)
        if (t[i].deleted) {
            struct ec_tent *e = (struct ec_tent *)ec_table_find(b->tab, b->ntab, t[i].seq);
            if (e)
                e->deleted = 1;
        }
    free(t);
}

static void meta_reply(int status, const struct frame *f, void *arg)
{
    struct rebuild *b = arg;
    struct ec_hdr h;
    size_t hl;
    int ok = status == 0 && f->h.status == 0 && f->h.body_len > 0;
    if (ok) {
        ds_codec_count_received(b->ds, f->h.body_len, 0);
        b->wire += f->h.body_len;
        b->raw += f->h.body_len;
    }
    if (ok && b->meta) {
        union_deleted(b, f->body, f->h.body_len);
    } else if (ok && (b->meta = malloc(f->h.body_len)) != NULL) {
        memcpy(b->meta, f->body, f->h.body_len);
        b->meta_len = f->h.body_len;
        if (ec_shard_meta_header(b->meta, b->meta_len, b->id, &h, &hl) == 0) {
            int good = h.k == b->k && h.m == b->m;
            uint64_t block_len = h.block_len;
            b->L = h.L;
            b->hl = hl;
            ec_hdr_free(&h);
            if (good && ec_table_parse(b->meta + hl, b->meta_len - hl, block_len, &b->tab,
                                       &b->ntab) == 0)
                good = 1;
            else
                good = 0;
            if (good) {
                ask_meta(b); /* the others' deletions too */
                return;
            }
        }
        free(b->meta);
        b->meta = NULL;
    }
    ask_meta(b); /* the next source */
}

/* Every source asked for its meta: the table with the union of the
 * deletions goes into the meta, then the payload is rebuilt. */
static void meta_done(struct rebuild *b)
{
    uint8_t *tb;
    size_t tl;
    uint8_t *m2 = NULL;
    if (ec_table_encode(b->tab, b->ntab, &tb, &tl) == 0) {
        m2 = malloc(b->hl + tl);
        if (m2) {
            memcpy(m2, b->meta, b->hl);
            memcpy(m2 + b->hl, tb, tl);
            free(b->meta);
            b->meta = m2;
            b->meta_len = b->hl + tl;
        }
        free(tb);
    }
    if (!m2 || !(b->payload = malloc(b->L))) {
        rebuild_end(b, -ENOMEM);
        return;
    }
    next_chunk(b);
}

static void ask_meta(struct rebuild *b)
{
    /* every source in turn: the first good answer gives the header and the
     * table, every later one its deletions */
    while (b->meta_from < b->nsrc) {
        unsigned i = b->meta_from++;
        Imgstore__EcReadRange q = IMGSTORE__EC_READ_RANGE__INIT;
        q.block_id = b->id;
        q.index = b->src_index[i];
        q.meta = 1;
        if (ds_peer_request(b->ds, b->src_addr[i], FT_EC_READ_RANGE, &q.base, NULL, 0,
                            DS_EC_REBUILD_TIMEOUT_MS, meta_reply, b) == 0)
            return;
    }
    if (b->meta)
        meta_done(b);
    else
        rebuild_end(b, IMG_EUNAVAIL);
}

void ds_ec_rebuild(struct ds_req *r, const struct frame *f)
{
    struct ds *ds = r->ds;
    Imgstore__EcRebuild *q = ds_req_unpack(r, f, &imgstore__ec_rebuild__descriptor);
    if (!q)
        return;
    int rc = ec_scheme_check(q->k, q->m) != 0 || q->index >= q->k + q->m ||
                     q->n_sources == 0 || q->n_sources > EC_MAX_SHARDS
                 ? IMG_EINVAL
             : ds_ec_find(ds, q->block_id) ? IMG_EEXIST
                                           : 0;
    struct rebuild *b = rc == 0 ? calloc(1, sizeof(*b)) : NULL;
    if (rc == 0 && !b)
        rc = -ENOMEM;
    if (b)
        b->copy_src = -1;
    for (size_t i = 0; rc == 0 && i < q->n_sources; i++) {
        const Imgstore__EcTarget *t = q->sources[i];
        if (!t || !t->server || !t->server->addr || t->index >= q->k + q->m ||
            (t->index == q->index && b->copy_src >= 0) ||
            strlen(t->server->addr) >= sizeof(b->src_addr[0]))
            rc = IMG_EINVAL;
        else {
            if (t->index == q->index) /* a move: this source is asked first */
                b->copy_src = (int)b->nsrc;
            b->src_index[b->nsrc] = t->index;
            snprintf(b->src_addr[b->nsrc++], sizeof(b->src_addr[0]), "%s", t->server->addr);
        }
    }
    if (rc == 0 && b->copy_src > 0) {
        unsigned c = (unsigned)b->copy_src, x = b->src_index[0];
        char a[sizeof(b->src_addr[0])];
        memcpy(a, b->src_addr[0], sizeof(a));
        memcpy(b->src_addr[0], b->src_addr[c], sizeof(a));
        memcpy(b->src_addr[c], a, sizeof(a));
        b->src_index[0] = b->src_index[c];
        b->src_index[c] = x;
        b->copy_src = 0;
    }
    if (rc == 0 && b->copy_src < 0 && b->nsrc < q->k)
        rc = IMG_EINVAL; /* a rebuild needs k sources */
    if (rc == 0 && b->copy_src >= 0 && q->rate_bytes_per_s) {
        b->throttle = 1;
        ds_throttle_set_rate(ds, q->rate_bytes_per_s);
    }
    if (rc == 0) {
        b->ds = ds;
        b->r = r;
        b->id = q->block_id;
        b->task = q->task_id;
        b->index = q->index;
        b->k = q->k;
        b->m = q->m;
        b->started_ms = uv_now(ds->loop);
        rc = ec_codec_init(&b->codec, b->k, b->m);
    }
    imgstore__ec_rebuild__free_unpacked(q, NULL);
    if (rc != 0) {
        free(b);
        ds_req_fail(r, rc);
        return;
    }
    ask_meta(b);
}

/* ---- a moved shard's old copy: its deletions handed over ----------------------------- */

#define DS_EC_HANDOVER_INFLIGHT 16 /* EC_TOMB requests in flight */

struct handover {
    struct ds *ds;
    struct ds_req *r;
    uint64_t id;
    char to[64];
    struct ds_shard *sh[EC_MAX_SHARDS]; /* taken out of service */
    unsigned nsh;
    struct ec_tent *del;                /* the deleted entries to hand over */
    size_t n, next;
    unsigned inflight;
    int rc;
};

static void handover_pump(struct handover *h);

static void handover_end(struct handover *h)
{
    struct ds *ds = h->ds;
    for (unsigned i = 0; i < h->nsh; i++) {
        struct ds_shard *s = h->sh[i];
        if (h->rc == 0) {
            char path[sizeof(s->sh.path)];
            memcpy(path, s->sh.path, sizeof(path));
            ds_ec_free_shard(s);
            if (unlink(path) != 0)
                log_warn("moved shard %s: cannot remove: %s", path, strerror(errno));
        } else if (ds->stopping || ds_ec_adopt(ds, s) != 0) {
            ds_ec_free_shard(s); /* the file stays: loaded again at the next start */
        }
    }
    if (h->rc == 0)
        log_info("block %016" PRIx64 ": shard moved to %s (%zu deletions handed over); the "
                 "copy here is removed",
                 h->id, h->to, h->n);
    else
        log_warn("block %016" PRIx64 ": deletions not handed to %s (%s); the shard here is "
                 "kept",
                 h->id, h->to, img_strerror(h->rc));
    if (h->rc == 0) {
        Imgstore__DeleteBlockResp m = IMGSTORE__DELETE_BLOCK_RESP__INIT;
        ds_req_answer(h->r, 0, &m.base, NULL, 0, NULL);
    } else {
        ds_req_fail(h->r, h->rc);
    }
    free(h->del);
    free(h);
}

static void handover_reply(int status, const struct frame *f, void *arg)
{
    struct handover *h = arg;
    int rc = status ? status : f->h.status;
    if (rc != 0 && h->rc == 0)
        h->rc = rc;
    h->inflight--;
    handover_pump(h);
}

static void handover_pump(struct handover *h)
{
    if (h->ds->stopping && h->rc == 0)
        h->rc = IMG_ECONN;
    while (h->rc == 0 && h->next < h->n && h->inflight < DS_EC_HANDOVER_INFLIGHT) {
        const struct ec_tent *e = &h->del[h->next++];
        Imgstore__EcTomb q = IMGSTORE__EC_TOMB__INIT;
        q.block_id = h->id;
        q.seq = e->seq;
        q.cookie = e->cookie;
        h->inflight++;
        int rc = ds_peer_request(h->ds, h->to, FT_EC_TOMB, &q.base, NULL, 0,
                                 DS_EC_REBUILD_TIMEOUT_MS, handover_reply, h);
        if (rc != 0) {
            h->inflight--;
            h->rc = rc;
        }
    }
    if (h->inflight == 0 && (h->rc != 0 || h->next >= h->n))
        handover_end(h);
}

void ds_ec_hand_over(struct ds_req *r, uint64_t id, const char *to)
{
    struct handover *h = calloc(1, sizeof(*h));
    if (!h || strlen(to) >= sizeof(h->to)) {
        free(h);
        ds_req_fail(r, h ? IMG_EINVAL : -ENOMEM);
        return;
    }
    *h = (struct handover){.ds = r->ds, .r = r, .id = id};
    snprintf(h->to, sizeof(h->to), "%s", to);
    size_t cap = 0;
    for (struct ds_shard *s; h->nsh < EC_MAX_SHARDS && (s = ds_ec_detach(r->ds, id));) {
        h->sh[h->nsh++] = s;
        cap += s->sh.ntab;
    }
    if (h->nsh == 0) {
        free(h);
        ds_req_fail(r, IMG_ENOBLOCKHERE);
        return;
    }
    if (!(h->del = malloc((cap + 1) * sizeof(*h->del))))
        h->rc = -ENOMEM;
    for (unsigned i = 0; h->del && i < h->nsh; i++) {
        const struct ec_shard *sh = &h->sh[i]->sh;
        for (size_t j = 0; j < sh->ntab; j++) /* a duplicate is harmless: was_deleted */
            if (sh->tab[j].deleted && (i == 0 || !ec_table_find(h->del, h->n, sh->tab[j].seq)))
                h->del[h->n++] = sh->tab[j];
    }
    handover_pump(h);
}
