/* ds_ec_rebuild.c - EC_REBUILD: a lost or damaged shard of an erasure-coded
 * block rebuilt on this server (docs/nameserver.md, "Erasure-coded
 * blocks", repair).
 *
 * The header and record table come from a surviving shard (EC_READ_RANGE
 * with meta), with the deletions every source knows (the union of their
 * tables as in memory: a delete is never undone by a rebuild); the payload is rebuilt chunk by chunk (DS_EC_REBUILD_CHUNK
 * bytes): the same range of k surviving shards is fetched with
 * EC_READ_RANGE (each checked against its chunk CRCs at its holder) and the
 * lost shard's range decoded. The whole file is then assembled (the new
 * index, the payload's chunk CRCs), checked and written like an
 * EC_PUT_SHARD (ec_shard_write on the thread pool, durable before the
 * answer), opened and reported held: no file is read through it until the
 * nameserver sent the journaled tombstones deleted meanwhile
 * (APPLY_TOMBSTONES, ds_ec_apply). Calls ds_ec.c (ds_ec_adopt), ec.c,
 * ec_shard.c, ds_peer.c. */
#include "dataserver/ds_ec.h"

#include "base/err.h"
#include "base/log.h"
#include "dataserver/store.h"

#include <errno.h>
#include <inttypes.h>
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

static void rebuild_end(struct rebuild *b, int rc)
{
    if (rc == 0) {
        Imgstore__EcRebuildResp m = IMGSTORE__EC_REBUILD_RESP__INIT;
        m.file_bytes = b->file_len;
        log_info("task %" PRIu64 ": shard %u of block %016" PRIx64 " rebuilt here (%zu bytes)",
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

static void part_reply(int status, const struct frame *f, void *arg)
{
    struct part_call *pc = arg;
    struct rebuild *b = pc->b;
    unsigned i = pc->i;
    free(pc);
    if (status == 0 && f->h.status == 0 && f->h.body_len == b->clen && b->nok < b->k &&
        (b->part[i] = malloc(b->clen)) != NULL) {
        memcpy(b->part[i], f->body, b->clen);
        b->nok++;
    }
    if (--b->pending == 0)
        chunk_decode(b);
}

static void next_chunk(struct rebuild *b)
{
    if (b->off >= b->L) {
        finish(b);
        return;
    }
    b->clen = (uint32_t)(b->L - b->off < DS_EC_REBUILD_CHUNK ? b->L - b->off
                                                             : DS_EC_REBUILD_CHUNK);
    b->nok = 0;
    b->pending = 1; /* held while sending */
    for (unsigned i = 0; i < b->nsrc; i++) {
        struct part_call *pc = malloc(sizeof(*pc));
        if (!pc)
            break;
        *pc = (struct part_call){.b = b, .i = i};
        Imgstore__EcReadRange q = IMGSTORE__EC_READ_RANGE__INIT;
        q.block_id = b->id;
        q.index = b->src_index[i];
        q.offset = b->off;
        q.len = b->clen;
        b->pending++;
        if (ds_peer_request(b->ds, b->src_addr[i], FT_EC_READ_RANGE, &q.base, NULL, 0,
                            DS_EC_REBUILD_TIMEOUT_MS, part_reply, pc) != 0) {
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
                     q->n_sources < q->k || q->n_sources > EC_MAX_SHARDS
                 ? IMG_EINVAL
             : ds_ec_find(ds, q->block_id) ? IMG_EEXIST
                                           : 0;
    struct rebuild *b = rc == 0 ? calloc(1, sizeof(*b)) : NULL;
    if (rc == 0 && !b)
        rc = -ENOMEM;
    for (size_t i = 0; rc == 0 && i < q->n_sources; i++) {
        const Imgstore__EcTarget *t = q->sources[i];
        if (!t || !t->server || !t->server->addr || t->index >= q->k + q->m ||
            t->index == q->index || strlen(t->server->addr) >= sizeof(b->src_addr[0]))
            rc = IMG_EINVAL;
        else {
            b->src_index[b->nsrc] = t->index;
            snprintf(b->src_addr[b->nsrc++], sizeof(b->src_addr[0]), "%s", t->server->addr);
        }
    }
    if (rc == 0) {
        b->ds = ds;
        b->r = r;
        b->id = q->block_id;
        b->task = q->task_id;
        b->index = q->index;
        b->k = q->k;
        b->m = q->m;
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
