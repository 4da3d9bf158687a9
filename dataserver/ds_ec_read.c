/* ds_ec_read.c - degraded reads of erasure-coded blocks (docs/storage.md,
 * "Degraded reads"): EC_READ_RANGE (a peer asks for a byte range of one of
 * our shards) and ds_ec_reconstruct (a READ with `reconstruct` whose data
 * shard is not readable here: the record's byte range is rebuilt from k
 * other shards).
 *
 * A reconstruction reads the same range of every other shard it can reach
 * (ours on the thread pool, the others' with EC_READ_RANGE to the holders
 * LOOKUP names), decodes the lost data shard's range as soon as k ranges
 * arrived (each checked against its chunk CRCs at its holder), and hands the
 * record to ds_file_finish: the record's own header and CRC32C are checked,
 * and a compressed file decoded, before any byte leaves the server.
 * A rebuild's or shard move's range (EcReadRange.accept_zstd) goes as one
 * zstd frame when that saves 10 % (ds_codec_pack, as READ_BLOCK's chunks);
 * those ranges and the meta a rebuild asks for are counted in the copy
 * metrics, a degraded read's are not.
 * Calls ds_ec.c (shards, table), ec.c (decoding), ds_nsclient.c (LOOKUP),
 * ds_peer.c, ds_codec.c and ds_file.c. */
#include "dataserver/ds_ec.h"

#include "base/err.h"
#include "base/log.h"
#include "dataserver/ds_codec.h"
#include "dataserver/ds_file.h"
#include "dataserver/ds_nsclient.h"
#include "dataserver/needle.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define DS_EC_RANGE_TIMEOUT_MS 5000
#define DS_EC_RANGE_MAX (NEEDLE_HEADER_SIZE + NEEDLE_MAX_DATA + NEEDLE_ALIGN)

/* ---- EC_READ_RANGE -------------------------------------------------------------- */

struct range {
    uv_work_t w;
    struct ds_req *r;
    uint64_t id;
    unsigned index;
    const struct ec_shard *sh;
    uint64_t off;
    uint32_t len;
    int meta;      /* the header and table instead of payload bytes */
    int zstd;      /* EcReadRange.accept_zstd: a rebuild's or move's range */
    uint8_t *tab;  /* meta: the record table as in memory (deletions applied) */
    size_t tab_len;
    uint8_t *buf;
    int rc;
};

static void range_run(uv_work_t *w)
{
    struct range *g = w->data;
    if (g->meta) {
        /* the header from the file, the table as in memory */
        g->rc = ec_shard_read_meta(g->sh, g->buf);
        if (g->rc == 0 && g->sh->hdr_len + g->tab_len == g->len)
            memcpy(g->buf + g->sh->hdr_len, g->tab, g->tab_len);
        else if (g->rc == 0)
            g->rc = IMG_EFORMAT;
    } else {
        g->rc = ec_shard_pread(g->sh, g->off, g->len, g->buf, 1);
    }
}

/* The range packed for the wire (ds_codec.c): a zstd frame when it pays. */
static void range_packed(uint8_t *body, uint32_t body_len, uint32_t raw_len, uint32_t crc,
                         void *arg)
{
    struct range *g = arg;
    Imgstore__EcReadRangeResp m = IMGSTORE__EC_READ_RANGE_RESP__INIT;
    m.raw_len = raw_len;
    m.crc32c = raw_len ? crc : 0;
    ds_codec_count_sent(g->r->ds, body_len, raw_len);
    ds_req_answer(g->r, 0, &m.base, body, body_len, free);
    free(g);
}

static void range_after(uv_work_t *w, int status)
{
    struct range *g = w->data;
    int rc = status < 0 ? status : g->rc;
    if (rc == IMG_ECORRUPT)
        ds_ec_mark_bad(g->r->ds, g->id, g->index);
    free(g->tab);
    if (rc == 0 && g->zstd && !g->meta) {
        uint8_t *buf = g->buf;
        g->buf = NULL;
        ds_codec_pack(g->r->ds, buf, g->len, 1, range_packed, g);
        return;
    }
    if (rc == 0) {
        Imgstore__EcReadRangeResp m = IMGSTORE__EC_READ_RANGE_RESP__INIT;
        if (g->meta) /* part of a rebuild or move: counted with the shard's bytes */
            ds_codec_count_sent(g->r->ds, g->len, 0);
        ds_req_answer(g->r, 0, &m.base, g->buf, g->len, free);
    } else {
        free(g->buf);
        ds_req_fail(g->r, rc);
    }
    free(g);
}

void ds_ec_read_range(struct ds_req *r, const struct frame *f)
{
    struct ds *ds = r->ds;
    Imgstore__EcReadRange *q = ds_req_unpack(r, f, &imgstore__ec_read_range__descriptor);
    if (!q)
        return;
    struct ds_shard *s = ds_ec_shard(ds, q->block_id, q->index);
    if (s && q->meta) {
        q->offset = 0;
        q->len = (uint32_t)ec_shard_meta_len(&s->sh);
    }
    int rc = !s || (s->bad && !q->meta) ? IMG_ENOBLOCKHERE
             : q->meta                  ? (q->len > FRAME_MAX_BODY ? IMG_ETOOBIG : 0)
             : q->len == 0 || q->len > DS_EC_RANGE_MAX || q->offset > s->sh.h.L ||
                     q->len > s->sh.h.L - q->offset
                 ? IMG_EINVAL
                 : 0;
    struct range *g = rc == 0 ? calloc(1, sizeof(*g)) : NULL;
    if (rc == 0 && (!g || !(g->buf = malloc(q->len)))) {
        free(g);
        g = NULL;
        rc = -ENOMEM;
    }
    if (rc == 0) {
        g->r = r;
        g->sh = &s->sh;
        g->off = q->offset;
        g->len = q->len;
        g->meta = q->meta;
        g->zstd = q->accept_zstd;
        if (g->meta && ec_table_encode(s->sh.tab, s->sh.ntab, &g->tab, &g->tab_len) != 0) {
            free(g->buf);
            free(g);
            imgstore__ec_read_range__free_unpacked(q, NULL);
            ds_req_fail(r, -ENOMEM);
            return;
        }
        g->id = q->block_id;
        g->index = q->index;
        g->w.data = g;
        rc = uv_queue_work(ds->loop, &g->w, range_run, range_after);
        if (rc != 0) {
            free(g->tab);
            free(g->buf);
            free(g);
        }
    }
    imgstore__ec_read_range__free_unpacked(q, NULL);
    if (rc != 0)
        ds_req_fail(r, rc);
}

/* ---- reconstruction ------------------------------------------------------------- */

struct recon {
    struct ds *ds;
    uint64_t id, off;   /* block, record offset in the block file */
    uint32_t seq, cookie;
    unsigned flags;
    int deleted;
    ds_file_cb cb;
    void *arg;
    unsigned k, m, d;   /* scheme, the data shard to rebuild */
    uint64_t doff;      /* the range's offset in every shard */
    uint32_t len;
    struct ec_codec codec;
    uint8_t *buf[EC_MAX_SHARDS]; /* the ranges that arrived */
    unsigned asked;     /* bit i: shard i's range was asked for */
    unsigned nok, pending;
    int done;
};

struct piece {
    struct recon *c;
    unsigned index;
    uv_work_t w;
    const struct ec_shard *sh;
    uint8_t *buf;
    int rc;
};

static void recon_free(struct recon *c)
{
    for (unsigned i = 0; i < EC_MAX_SHARDS; i++)
        free(c->buf[i]);
    free(c);
}

/* k ranges are here: decode the lost data shard's range and finish. */
static void recon_decode(struct recon *c)
{
    uint8_t have[EC_MAX_K];
    const uint8_t *src[EC_MAX_K];
    unsigned n = 0;
    for (unsigned i = 0; i < c->k + c->m && n < c->k; i++)
        if (c->buf[i]) {
            have[n] = (uint8_t)i;
            src[n++] = c->buf[i];
        }
    uint8_t *out = malloc(c->len);
    uint8_t want = (uint8_t)c->d;
    int rc = out ? ec_codec_decode(&c->codec, c->len, have, src, &want, 1, &out) : -ENOMEM;
    c->done = 1;
    if (rc != 0) {
        free(out);
        c->cb(rc, NULL, c->off, NULL, c->arg);
        return;
    }
    log_info("block %016" PRIx64 " seq %u rebuilt from %u shards (data shard %u unreadable)",
             c->id, c->seq, c->k, c->d);
    ds_file_finish(c->ds, c->id, c->off, c->seq, c->cookie, c->deleted, c->flags, out, c->len,
                   c->cb, c->arg);
}

/* One range arrived (buf owned, NULL on failure). */
static void piece_done(struct recon *c, unsigned index, uint8_t *buf)
{
    if (buf && !c->done && !c->buf[index]) {
        c->buf[index] = buf;
        buf = NULL;
        c->nok++;
    }
    free(buf);
    if (!c->done && c->nok >= c->k)
        recon_decode(c);
    if (--c->pending > 0)
        return;
    if (!c->done) {
        c->done = 1;
        log_warn("block %016" PRIx64 " seq %u: fewer than %u shards readable; cannot rebuild",
                 c->id, c->seq, c->k);
        c->cb(IMG_EUNAVAIL, NULL, c->off, NULL, c->arg);
    }
    recon_free(c);
}

static void local_run(uv_work_t *w)
{
    struct piece *p = w->data;
    p->rc = p->buf ? ec_shard_pread(p->sh, p->c->doff, p->c->len, p->buf, 1) : -ENOMEM;
}

static void local_after(uv_work_t *w, int status)
{
    struct piece *p = w->data;
    if (p->rc == IMG_ECORRUPT)
        ds_ec_mark_bad(p->c->ds, p->c->id, p->index);
    if (status < 0 || p->rc != 0) {
        free(p->buf);
        p->buf = NULL;
    }
    struct recon *c = p->c;
    unsigned index = p->index;
    uint8_t *buf = p->buf;
    free(p);
    piece_done(c, index, buf);
}

static void remote_reply(int status, const struct frame *f, void *arg)
{
    struct piece *p = arg;
    struct recon *c = p->c;
    uint8_t *buf = NULL;
    if (status == 0 && f->h.status == 0 && f->h.body_len == c->len && (buf = malloc(c->len)))
        memcpy(buf, f->body, c->len);
    unsigned index = p->index;
    free(p);
    piece_done(c, index, buf);
}

/* Asks shard `index` for the range: ours (sh set) or at addr. */
static void ask(struct recon *c, unsigned index, const struct ec_shard *sh, const char *addr)
{
    if (c->asked & (1u << index) || index == c->d)
        return;
    struct piece *p = calloc(1, sizeof(*p));
    if (!p)
        return;
    p->c = c;
    p->index = index;
    c->asked |= 1u << index;
    c->pending++;
    if (sh) {
        p->sh = sh;
        p->buf = malloc(c->len);
        p->w.data = p;
        if (uv_queue_work(c->ds->loop, &p->w, local_run, local_after) == 0)
            return;
        free(p->buf);
    } else {
        Imgstore__EcReadRange q = IMGSTORE__EC_READ_RANGE__INIT;
        q.block_id = c->id;
        q.index = index;
        q.offset = c->doff;
        q.len = c->len;
        if (ds_peer_request(c->ds, addr, FT_EC_READ_RANGE, &q.base, NULL, 0,
                            DS_EC_RANGE_TIMEOUT_MS, remote_reply, p) == 0)
            return;
    }
    free(p);
    c->pending--;
    c->asked &= ~(1u << index);
}

static void recon_located(int status, const struct ds_loc *loc, void *arg)
{
    struct recon *c = arg;
    for (int i = 0; status == 0 && i < loc->nshards; i++)
        if (loc->sh_index[i] < c->k + c->m && strcmp(loc->sh_addr[i], c->ds->listen_addr) != 0)
            ask(c, loc->sh_index[i], NULL, loc->sh_addr[i]);
    piece_done(c, EC_MAX_SHARDS, NULL); /* the hold of the lookup */
}

int ds_ec_reconstruct(struct ds *ds, uint64_t block_id, uint32_t seq, uint32_t cookie,
                      unsigned flags, ds_file_cb cb, void *arg)
{
    const struct ec_tent *e;
    unsigned d;
    uint64_t doff;
    int rc = ds_ec_locate(ds, block_id, seq, &e, &d, &doff);
    if (rc != 0)
        return rc;
    const struct ds_shard *any = ds_ec_find(ds, block_id);
    struct recon *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    int header_only = (flags & DS_FILE_HEADER_ONLY) != 0;
    *c = (struct recon){.ds = ds, .id = block_id, .off = e->off, .seq = seq, .cookie = cookie,
                        .flags = flags, .deleted = e->deleted, .cb = cb, .arg = arg,
                        .k = any->sh.h.k, .m = any->sh.h.m, .d = d, .doff = doff};
    c->len = (uint32_t)(NEEDLE_HEADER_SIZE +
                        (e->deleted     ? 0
                         : header_only ? (e->size >= NEEDLE_ENC_SIZE ? NEEDLE_ENC_SIZE : 0)
                                       : e->size));
    if (ec_codec_init(&c->codec, c->k, c->m) != 0) {
        free(c);
        return IMG_EFORMAT;
    }
    c->pending = 1; /* held until the holders are asked */
    for (unsigned i = 0; i < c->k + c->m; i++) {
        struct ds_shard *s = ds_ec_shard(ds, block_id, i);
        if (s && !s->bad)
            ask(c, i, &s->sh, NULL);
    }
    if (ds_nsc_lookup(ds, block_id, recon_located, c) != 0)
        piece_done(c, EC_MAX_SHARDS, NULL);
    return 0;
}
