/* ds_scrub.c - the scrubber (ds_scrub.h).
 *
 * A pass walks a snapshot of block ids (sorted) and, in each block, the
 * live files by seq, looked up in the index at the moment of each read (so a
 * compaction swap in between is harmless: the read in flight keeps the old
 * descriptor, the next lookup sees the new layout). One record is read at a
 * time for the whole server. VERIFY passes go first and are not throttled;
 * the continuous cycle takes tokens from its own bucket (ds->scrub_rate) and
 * starts a new pass from a fresh snapshot when one ends. An encoded
 * (compressed) record is also decoded, on the thread pool (ds_codec.c), and
 * must give back the original's size and CRC32C. After the blocks, the
 * cycle walks the shard files of erasure-coded blocks held here (a snapshot
 * taken with the pass's): each payload chunk of EC_CHUNK bytes is read
 * (io_uring, on a dup of the shard's descriptor, so a shard dropped
 * meanwhile is harmless) from the same bucket and checked against its
 * CRC32C in the shard header; a mismatch reports the shard bad
 * (ds_ec_mark_bad: the nameserver rebuilds it elsewhere, as when a read
 * finds it). */
#include "dataserver/ds_scrub.h"

#include "base/crc32c.h"
#include "base/err.h"
#include "base/log.h"
#include "dataserver/blockio.h"
#include "dataserver/ds_block.h"
#include "dataserver/ds_codec.h"
#include "dataserver/ds_ec.h"
#include "dataserver/uring.h"
#include "proto/imgstore.pb-c.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SCRUB_BURST_MS 200 /* the bucket holds at most this much of the rate */

struct pass {
    struct pass *next;
    struct ds_req *req;     /* VERIFY to answer (any transport), or NULL */
    int verify;             /* a VERIFY pass (req), not the cycle */
    uint64_t *ids;
    size_t nids, bi;
    uint32_t seq; /* last seq looked at in ids[bi] */
    uint32_t blocks, bad;
    uint64_t records, bytes;
    uint64_t *bad_blocks;
    size_t nbad;
    /* the cycle's shards, after its blocks */
    struct ds_shard_ref *shards;
    size_t nshards, si;
    uint64_t soff;             /* next payload offset in shards[si] */
    uint32_t shards_done, shards_bad;
    uint64_t chunks;
};

struct ds_scrub {
    struct ds *ds;
    uv_timer_t timer;
    int timer_open;
    struct pass cycle;
    struct pass *verifies; /* FIFO */
    double tokens;
    uint64_t refill_ms;
    struct pass *reading; /* pass whose read is in flight, NULL when idle */
    uint8_t *buf;
    size_t len;
    uint64_t block_id, off;
    uint32_t seq;
    /* a shard chunk being read (sc->reading == &sc->cycle) */
    int chunk_fd;              /* a dup of the shard's descriptor, -1 when none */
    unsigned shard_index;
    uint32_t chunk, chunk_crc;
    const struct ds_shard *shard;
};

static struct ds_scrub *sstate(struct ds *ds)
{
    if (!ds->scrub) {
        struct ds_scrub *sc = calloc(1, sizeof(*sc));
        if (!sc)
            return NULL;
        sc->ds = ds;
        sc->chunk_fd = -1;
        sc->refill_ms = uv_now(ds->loop);
        ds->scrub = sc;
    }
    return ds->scrub;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

struct ids {
    uint64_t *v;
    size_t n, cap;
};

static void collect(struct block *b, void *arg)
{
    struct ids *s = arg;
    if (s->n < s->cap)
        s->v[s->n++] = b->id;
}

/* Fills p->ids with every block id of the server (or just `only`). */
static int pass_snapshot(struct ds *ds, struct pass *p, uint64_t only)
{
    struct ids s = {.cap = only ? 1 : ds->store->nblocks};
    s.v = malloc((s.cap + 1) * sizeof(*s.v));
    if (!s.v)
        return -ENOMEM;
    if (only)
        s.v[s.n++] = only;
    else
        store_foreach(ds->store, collect, &s);
    qsort(s.v, s.n, sizeof(*s.v), cmp_u64);
    free(p->ids);
    p->ids = s.v;
    p->nids = s.n;
    p->bi = 0;
    p->seq = 0;
    free(p->shards);
    p->shards = NULL;
    p->nshards = p->si = 0;
    p->soff = 0;
    if (!p->verify && !only)
        p->nshards = ds_ec_snapshot(ds, &p->shards);
    return 0;
}

static void pass_free(struct pass *p)
{
    free(p->shards);
    free(p->ids);
    free(p->bad_blocks);
    if (p->verify)
        free(p);
}

/* Finds the next live record of the pass: 1 with *b, *off and *len set, 0
 * when the pass is over. */
static int pass_next(struct ds *ds, struct pass *p, struct block **b, uint64_t *off, size_t *len)
{
    while (p->bi < p->nids) {
        struct block *blk = store_get(ds->store, p->ids[p->bi]);
        /* The cycle leaves blocks already known corrupt to the repair. */
        if (blk && (p->verify || !blk->corrupt)) {
            for (uint32_t seq = p->seq + 1; seq <= blk->ix.max_seq; seq++) {
                uint32_t size;
                int deleted;
                p->seq = seq;
                if (index_get(&blk->ix, seq, off, &size, &deleted) != 0 || deleted)
                    continue;
                *b = blk;
                *len = NEEDLE_HEADER_SIZE + (size_t)size;
                return 1;
            }
            p->blocks++;
        }
        p->bi++;
        p->seq = 0;
    }
    return 0;
}

static void mark_bad(struct ds_scrub *sc, struct pass *p)
{
    struct ds *ds = sc->ds;
    struct block *b = store_get(ds->store, sc->block_id);
    p->bad++;
    if (!p->nbad || p->bad_blocks[p->nbad - 1] != sc->block_id) {
        uint64_t *n = realloc(p->bad_blocks, (p->nbad + 1) * sizeof(*n));
        if (n) {
            p->bad_blocks = n;
            p->bad_blocks[p->nbad++] = sc->block_id;
        }
    }
    log_error("scrub: block %016" PRIx64 " seq %" PRIu32 " at offset %" PRIu64
              " fails its check; block marked corrupt (the nameserver replaces this copy)",
              sc->block_id, sc->seq, sc->off);
    if (b && !b->corrupt) {
        b->corrupt = 1;
        b->sealed = 1; /* a damaged copy takes no new files */
        int rc = block_save_meta(b);
        if (rc != 0)
            log_error("block %016" PRIx64 ": cannot save meta: %s", b->id, img_strerror(rc));
        ds_block_changed(ds, b);
    }
}

static void verify_answer(struct ds_scrub *sc, struct pass *p)
{
    Imgstore__VerifyResp resp = IMGSTORE__VERIFY_RESP__INIT;
    resp.blocks = p->blocks;
    resp.records = p->records;
    resp.bytes = p->bytes;
    resp.bad_records = p->bad;
    resp.n_bad_blocks = p->nbad;
    resp.bad_blocks = p->bad_blocks;
    log_info("verify: %u blocks, %" PRIu64 " records, %" PRIu64 " bytes, %u bad", p->blocks,
             p->records, p->bytes, p->bad);
    struct ds *ds = sc->ds;
    /* While stopping: IMG_ECONN on the native port; the session transport
     * drops it. */
    if (p->req)
        ds_req_answer(p->req, ds->stopping ? IMG_ECONN : 0, &resp.base, NULL, 0, NULL);
    pass_free(p);
}

static void bucket_refill(struct ds_scrub *sc)
{
    uint64_t now = uv_now(sc->ds->loop);
    double rate = (double)sc->ds->scrub_rate;
    sc->tokens += rate * (double)(now - sc->refill_ms) / 1000.0;
    if (sc->tokens > rate * SCRUB_BURST_MS / 1000.0)
        sc->tokens = rate * SCRUB_BURST_MS / 1000.0;
    sc->refill_ms = now;
}

static void pump(struct ds_scrub *sc);

/* The record of sc->reading is checked (and sc->buf freed or taken): the
 * next one, or the end of a VERIFY while stopping. */
static void read_end(struct ds_scrub *sc, struct pass *p)
{
    free(sc->buf);
    sc->buf = NULL;
    sc->reading = NULL;
    if (sc->ds->stopping) {
        if (p->verify)
            verify_answer(sc, p);
        return;
    }
    pump(sc);
}

/* An encoded record decoded on the thread pool: a frame that does not give
 * back the original's size and CRC32C is a bad record like any other. */
static void decoded(int status, uint8_t *rec, void *arg)
{
    struct ds_scrub *sc = arg;
    sc->buf = NULL; /* taken by ds_codec_decode */
    free(rec);
    if (status == IMG_ECORRUPT && !sc->ds->stopping)
        mark_bad(sc, sc->reading);
    read_end(sc, sc->reading);
}

static void read_done(int status, void *arg)
{
    struct ds_scrub *sc = arg;
    struct pass *p = sc->reading;
    struct needle_header h;
    if (!sc->ds->stopping && status != -ENOMEM) {
        p->records++;
        p->bytes += sc->len;
        if (status != 0 || needle_decode_header(sc->buf, &h) != 0 || h.seq != sc->seq ||
            (h.flags & NEEDLE_FLAG_TOMBSTONE) || NEEDLE_HEADER_SIZE + (size_t)h.size != sc->len ||
            crc32c(0, sc->buf + NEEDLE_HEADER_SIZE, h.size) != h.data_crc ||
            ((h.flags & NEEDLE_FLAG_ENCODED) &&
             needle_decode_enc(sc->buf + NEEDLE_HEADER_SIZE, &h) != 0)) {
            mark_bad(sc, p);
        } else if (h.flags & NEEDLE_FLAG_ENCODED) {
            /* One record at a time still: sc->reading stays set. */
            int rc = ds_codec_decode(sc->ds, sc->buf, &h, decoded, sc);
            if (rc == 0)
                return;
            sc->buf = NULL; /* freed by ds_codec_decode; left unchecked */
        }
    }
    read_end(sc, p);
}

/* ---- shards ---------------------------------------------------------------------- */

/* The next chunk of the cycle's shards: 1 with sc's chunk fields set and
 * *len its length (the shard still held, its descriptor dup'd), 0 when
 * every shard is done (or a dup failed: retried at the next tick, -1). */
static int shard_next(struct ds_scrub *sc, struct pass *p, size_t *len)
{
    struct ds *ds = sc->ds;
    while (p->si < p->nshards) {
        const struct ds_shard_ref *ref = &p->shards[p->si];
        const struct ds_shard *s = ds_ec_shard(ds, ref->block_id, ref->index);
        if (s && !s->bad && p->soff < s->sh.h.L) {
            uint64_t n = s->sh.h.L - p->soff < EC_CHUNK ? s->sh.h.L - p->soff : EC_CHUNK;
            int fd = dup(s->sh.fd);
            if (fd < 0)
                return -1;
            sc->chunk_fd = fd;
            sc->shard = s;
            sc->block_id = ref->block_id;
            sc->shard_index = ref->index;
            sc->chunk = (uint32_t)(p->soff / EC_CHUNK);
            sc->chunk_crc = s->sh.h.chunk_crc[sc->chunk];
            sc->off = s->sh.hdr_len + p->soff;
            *len = (size_t)n;
            p->soff += n;
            return 1;
        }
        if (s && p->soff)
            p->shards_done++;
        p->si++;
        p->soff = 0;
    }
    return 0;
}

static void chunk_done(int res, void *arg)
{
    struct ds_scrub *sc = arg;
    struct ds *ds = sc->ds;
    struct pass *p = sc->reading;
    close(sc->chunk_fd);
    sc->chunk_fd = -1;
    if (!ds->stopping && res != -ENOMEM) {
        p->chunks++;
        p->bytes += sc->len;
        ds->scrub_shard_chunks++;
        const struct ds_shard *s = ds_ec_shard(ds, sc->block_id, sc->shard_index);
        int bad = res < 0 || (size_t)res != sc->len ||
                  crc32c(0, sc->buf, sc->len) != sc->chunk_crc;
        /* Only the shard that was read (not one rebuilt here since). */
        if (bad && s == sc->shard && !s->bad) {
            p->shards_bad++;
            ds->scrub_shard_bad++;
            log_error("scrub: block %016" PRIx64 " shard %u chunk %u (offset %" PRIu64
                      ") fails its CRC32C%s; shard reported bad (the nameserver rebuilds it "
                      "elsewhere)",
                      sc->block_id, sc->shard_index, sc->chunk, sc->off,
                      res < 0 ? " (read error)" : "");
            ds_ec_mark_bad(ds, sc->block_id, sc->shard_index);
        }
    }
    read_end(sc, p);
}

/* Starts the read of the cycle's next shard chunk: 1 when started, 0 when
 * the shards are done, -1 to come back at the next tick. */
static int shard_read(struct ds_scrub *sc, struct pass *p)
{
    size_t len = 0;
    int more = shard_next(sc, p, &len);
    if (more <= 0)
        return more;
    sc->tokens -= (double)len;
    sc->buf = malloc(len);
    sc->len = len;
    sc->reading = p;
    int rc = sc->buf ? uring_read(sc->ds->store->ring, sc->chunk_fd, sc->buf, len, sc->off,
                                  chunk_done, sc)
                     : -ENOMEM;
    if (rc != 0) {
        p->soff -= len; /* the same chunk at the next tick */
        close(sc->chunk_fd);
        sc->chunk_fd = -1;
        sc->reading = NULL;
        free(sc->buf);
        sc->buf = NULL;
        return -1;
    }
    return 1;
}

/* Starts the next read: of the oldest VERIFY, else of the cycle when its
 * bucket allows. Answers VERIFYs whose pass ended. */
static void pump(struct ds_scrub *sc)
{
    struct ds *ds = sc->ds;
    while (!sc->reading && !ds->stopping) {
        struct pass *p = sc->verifies;
        if (!p) {
            if (!ds->scrub_rate)
                return;
            bucket_refill(sc);
            if (sc->tokens < 0)
                return; /* the timer comes back */
            p = &sc->cycle;
        }
        struct block *b;
        uint64_t off;
        size_t len;
        if (!pass_next(ds, p, &b, &off, &len)) {
            if (p->verify) {
                sc->verifies = p->next;
                verify_answer(sc, p);
                continue;
            }
            int sr = shard_read(sc, p); /* then the shards of encoded blocks */
            if (sr != 0)
                return; /* reading one (sr 1), or back at the next tick */
            /* Routine (every few seconds on a small store): DEBUG, unless a
             * cycle found bad records or shards (each also logged where
             * found). */
            if (p->nids || p->nshards)
                log_msg(p->bad || p->shards_bad ? LOG_WARN : LOG_DEBUG,
                        "scrub: cycle done: %u blocks, %" PRIu64 " records, %u bad; %u shards, "
                        "%" PRIu64 " chunks, %u bad",
                        p->blocks, p->records, p->bad, p->shards_done, p->chunks,
                        p->shards_bad);
            p->blocks = p->bad = 0;
            p->records = p->bytes = 0;
            p->shards_done = p->shards_bad = 0;
            p->chunks = 0;
            pass_snapshot(ds, p, 0);
            return; /* the next cycle starts at the next tick */
        }
        if (!p->verify)
            sc->tokens -= (double)len;
        sc->buf = calloc(1, len);
        sc->len = len;
        sc->block_id = b->id;
        sc->off = off;
        sc->seq = p->seq;
        sc->reading = p;
        int rc = sc->buf ? blockio_read(ds->store->ring, b, sc->buf, len, off, read_done, sc)
                         : -ENOMEM;
        if (rc != 0) {
            sc->reading = NULL;
            free(sc->buf);
            sc->buf = NULL;
            return; /* retried at the next tick */
        }
    }
}

static void tick(uv_timer_t *t)
{
    pump(t->data);
}

static int timer_on(struct ds_scrub *sc)
{
    if (!sc->timer_open) {
        uv_timer_init(sc->ds->loop, &sc->timer);
        sc->timer.data = sc;
        sc->timer_open = 1;
        uv_timer_start(&sc->timer, tick, DS_SCRUB_TICK_MS, DS_SCRUB_TICK_MS);
    }
    return 0;
}

int ds_scrub_start(struct ds *ds)
{
    if (!ds->scrub_rate)
        return 0;
    struct ds_scrub *sc = sstate(ds);
    if (!sc)
        return -ENOMEM;
    log_info("scrub: checking every record at %" PRIu64 " bytes/s", ds->scrub_rate);
    return timer_on(sc);
}

void ds_scrub_set_rate(struct ds *ds, uint64_t bytes_per_s)
{
    if (ds->stopping || bytes_per_s == ds->scrub_rate)
        return;
    log_info("scrub: rate %" PRIu64 " bytes/s (was %" PRIu64 ")%s", bytes_per_s, ds->scrub_rate,
             bytes_per_s ? "" : ": the cycle stops");
    ds->scrub_rate = bytes_per_s;
    if (bytes_per_s && ds_scrub_start(ds) != 0)
        log_warn("scrub: cannot start (out of memory)");
}

/* Queues a VERIFY pass answered on req. Returns 0 (answered later) or the
 * error to answer now. */
static int verify_queue(struct ds *ds, const struct frame *f, struct ds_req *req)
{
    struct ds_scrub *sc = sstate(ds);
    struct pass *p = sc ? calloc(1, sizeof(*p)) : NULL;
    if (!p)
        return -ENOMEM;
    Imgstore__Verify *m = imgstore__verify__unpack(NULL, f->h.head_len, f->head);
    if (!m) {
        free(p);
        return IMG_EPROTO;
    }
    uint64_t id = m->block_id;
    imgstore__verify__free_unpacked(m, NULL);
    if (id && !store_get(ds->store, id)) {
        free(p);
        return IMG_ENOBLOCKHERE;
    }
    if (pass_snapshot(ds, p, id) != 0) {
        free(p);
        return -ENOMEM;
    }
    p->verify = 1;
    p->req = req;
    struct pass **pp = &sc->verifies;
    while (*pp)
        pp = &(*pp)->next;
    *pp = p;
    log_info("verify: checking %s%s", id ? "one block" : "every block",
             ds_req_from_ns(req) ? " (asked by the nameserver)" : "");
    timer_on(sc);
    pump(sc);
    return 0;
}

void ds_scrub_verify(struct ds_req *r, const struct frame *f)
{
    /* The nameserver's VERIFY never has a body: one is a protocol error. */
    int rc = ds_req_from_ns(r) && f->h.body_len ? IMG_EPROTO : verify_queue(r->ds, f, r);
    if (rc != 0)
        ds_req_fail(r, rc);
}

void ds_scrub_stop(struct ds *ds)
{
    struct ds_scrub *sc = ds->scrub;
    if (!sc)
        return;
    if (sc->timer_open)
        uv_close((uv_handle_t *)&sc->timer, NULL);
    while (sc->verifies) {
        struct pass *p = sc->verifies;
        sc->verifies = p->next;
        if (p != sc->reading)
            verify_answer(sc, p);
    }
    free(sc->cycle.ids);
    free(sc->cycle.bad_blocks);
    free(sc->cycle.shards);
    sc->cycle.ids = NULL;
    sc->cycle.bad_blocks = NULL;
    sc->cycle.shards = NULL;
    sc->cycle.nshards = 0;
}
