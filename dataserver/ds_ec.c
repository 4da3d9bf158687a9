/* ds_ec.c - erasure-coded blocks on a dataserver (ds_ec.h): the shards held
 * here, EC_ENCODE (the nameserver asks a holder of a sealed block to encode
 * it) and EC_PUT_SHARD (a peer hands us one shard file).
 *
 * EC_ENCODE: the block's current file is pinned and read whole on the
 * thread pool, where ec_stripe_build checks every record, cuts and encodes
 * the block and builds the k+m shard files; a shard meant for this server is
 * written there too. Back on the loop each other shard goes to its target
 * (EC_PUT_SHARD, the whole file as the body); the answer waits for all of
 * them. Deletes of the block are refused meanwhile (b->hold_until_ms, as
 * during a compaction), so no tombstone lands after the snapshot, and after
 * a success until the nameserver deletes the replicated copy.
 * EC_PUT_SHARD: the body is checked and written on the thread pool
 * (ec_shard_write: header, chunk CRCs, table; durable before the answer),
 * then opened and added to the shards reported in heartbeats (each with
 * its generation and the block's garbage by its record table, ec_compact;
 * a shard added or a file deleted sends them all with the next heartbeat).
 * Calls the storage engine (store, block, ec, ec_shard, ec_compact), ds_peer.c,
 * ds_session.c (a heartbeat soon) and the dispatch's ds_req. */
#include "dataserver/ds_ec.h"

#include "base/array.h"
#include "base/err.h"
#include "base/log.h"
#include "dataserver/block.h"
#include "dataserver/ec_compact.h"
#include "dataserver/needle.h"
#include "dataserver/store.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct ds_ec {
    struct ds_shard **v; /* owned */
    size_t n, cap;
    int dirty;           /* a shard was added, or a file deleted, since the last report */
};

static struct ds_ec *state(struct ds *ds)
{
    if (!ds->ec)
        ds->ec = calloc(1, sizeof(struct ds_ec));
    return ds->ec;
}

static int add_shard(struct ds *ds, struct ds_shard *s)
{
    struct ds_ec *e = state(ds);
    if (!e)
        return -ENOMEM;
    if (ARRAY_RESERVE(e->v, e->cap, e->n + 1, 16) != 0)
        return -ENOMEM;
    e->v[e->n++] = s;
    e->dirty = 1;
    return 0;
}

static void free_shard(struct ds_shard *s)
{
    if (!s)
        return;
    ec_shard_close(&s->sh);
    free(s);
}

struct ds_shard *ds_ec_find(struct ds *ds, uint64_t id)
{
    struct ds_ec *e = ds->ec;
    struct ds_shard *best = NULL;
    for (size_t i = 0; e && i < e->n; i++)
        if (e->v[i]->block_id == id && (!best || e->v[i]->index < best->index))
            best = e->v[i];
    return best;
}

struct ds_shard *ds_ec_shard(struct ds *ds, uint64_t id, unsigned index)
{
    struct ds_ec *e = ds->ec;
    for (size_t i = 0; e && i < e->n; i++)
        if (e->v[i]->block_id == id && e->v[i]->index == index)
            return e->v[i];
    return NULL;
}

int ds_ec_locate(struct ds *ds, uint64_t id, uint32_t seq, const struct ec_tent **e,
                 unsigned *dshard, uint64_t *doff)
{
    struct ds_shard *s = ds_ec_find(ds, id);
    if (!s || s->held)
        return IMG_ENOBLOCKHERE; /* held: its table may lack journaled tombstones */
    const struct ec_tent *t = ec_table_find(s->sh.tab, s->sh.ntab, seq);
    if (!t)
        return IMG_ENOTFOUND;
    uint64_t len = needle_record_size(t->size);
    if (ec_locate(&s->sh.h, t->off, len, dshard, doff) != 0)
        return IMG_ECORRUPT; /* the table and the extents disagree */
    *e = t;
    return 0;
}

/* Opens shard file `path` expected to be shard `index` of block `id`:
 * a new struct ds_shard (owned by the caller) or NULL with *rc. */
static struct ds_shard *open_shard(const char *path, uint64_t id, unsigned index, int disk,
                                   int *rc)
{
    struct ds_shard *s = calloc(1, sizeof(*s));
    if (!s) {
        *rc = -ENOMEM;
        return NULL;
    }
    *rc = ec_shard_open(path, &s->sh);
    if (*rc == 0 && (s->sh.h.block_id != id || s->sh.h.index != index)) {
        ec_shard_close(&s->sh);
        *rc = IMG_EFORMAT; /* renamed by hand: the name and the header disagree */
    }
    if (*rc != 0) {
        free(s);
        return NULL;
    }
    s->block_id = id;
    s->index = index;
    s->disk = disk;
    return s;
}

static void blocks_dir(const struct ds *ds, int disk, char *out, size_t n)
{
    snprintf(out, n, "%s/%s", ds->store->disks[disk].path, STORE_BLOCKS_DIR);
}

static void load_tombs(struct ds *ds);

int ds_ec_load(struct ds *ds)
{
    for (int d = 0; d < ds->store->ndisks; d++) {
        char dir[PATH_MAX];
        blocks_dir(ds, d, dir, sizeof(dir));
        DIR *dh = opendir(dir);
        if (!dh)
            continue;
        struct dirent *de;
        while ((de = readdir(dh)) != NULL) {
            uint64_t id;
            unsigned index;
            if (ec_shard_name(de->d_name, &id, &index) != 0)
                continue;
            char path[PATH_MAX + 32];
            ec_shard_path(dir, id, index, path, sizeof(path));
            int rc;
            struct ds_shard *s = open_shard(path, id, index, d, &rc);
            if (!s) {
                log_error("shard %s cannot be used (%s); left on disk, not reported", path,
                          img_strerror(rc));
                continue;
            }
            if (add_shard(ds, s) != 0) {
                free_shard(s);
                closedir(dh);
                return -ENOMEM;
            }
        }
        closedir(dh);
    }
    load_tombs(ds);
    if (ds->ec && ds->ec->n)
        log_info("%zu erasure-coded shards found", ds->ec->n);
    return 0;
}

void ds_ec_close(struct ds *ds)
{
    struct ds_ec *e = ds->ec;
    if (!e)
        return;
    for (size_t i = 0; i < e->n; i++)
        free_shard(e->v[i]);
    free(e->v);
    free(e);
    ds->ec = NULL;
}

struct ds_shard *ds_ec_open_shard(const char *dir, uint64_t id, unsigned index, int disk,
                                  int *rc)
{
    char path[PATH_MAX + 32];
    ec_shard_path(dir, id, index, path, sizeof(path));
    return open_shard(path, id, index, disk, rc);
}

int ds_ec_adopt(struct ds *ds, struct ds_shard *s)
{
    int rc = add_shard(ds, s);
    if (rc == 0)
        ds_session_poke(ds);
    return rc;
}

void ds_ec_free_shard(struct ds_shard *s)
{
    free_shard(s);
}

int ds_ec_tomb_dir(struct ds *ds, uint64_t id, char *out, size_t n)
{
    struct ds_shard *s = ds_ec_find(ds, id);
    if (!s)
        return -1;
    blocks_dir(ds, s->disk, out, n);
    return 0;
}

void ds_ec_mark_deleted(struct ds *ds, uint64_t id, uint32_t seq)
{
    struct ds_ec *e = ds->ec;
    for (size_t i = 0; e && i < e->n; i++) {
        struct ds_shard *s = e->v[i];
        if (s->block_id != id)
            continue;
        struct ec_tent *t = (struct ec_tent *)ec_table_find(s->sh.tab, s->sh.ntab, seq);
        if (t && !t->deleted) {
            t->deleted = 1;
            e->dirty = 1; /* the next heartbeat reports its files and garbage */
        }
    }
}

/* Applies the tombstone file of every block with a shard here (at load). */
static void load_tombs(struct ds *ds)
{
    struct ds_ec *e = ds->ec;
    for (size_t i = 0; e && i < e->n; i++) {
        struct ds_shard *s = e->v[i];
        if (ds_ec_find(ds, s->block_id) != s)
            continue; /* once per block: its lowest-index shard */
        char dir[PATH_MAX];
        blocks_dir(ds, s->disk, dir, sizeof(dir));
        uint32_t *seqs;
        size_t n;
        int rc = ec_tomb_load(dir, s->block_id, &seqs, &n);
        if (rc != 0) {
            log_error("block %016" PRIx64 ": tombstone file unreadable (%s)", s->block_id,
                      img_strerror(rc));
            continue;
        }
        for (size_t j = 0; j < n; j++)
            ds_ec_mark_deleted(ds, s->block_id, seqs[j]);
        free(seqs);
    }
}

int ds_ec_drop(struct ds *ds, uint64_t id)
{
    struct ds_ec *e = ds->ec;
    int dropped = 0;
    for (size_t i = 0; e && i < e->n;) {
        struct ds_shard *s = e->v[i];
        if (s->block_id != id) {
            i++;
            continue;
        }
        char path[sizeof(s->sh.path)];
        memcpy(path, s->sh.path, sizeof(path));
        e->v[i] = e->v[--e->n];
        free_shard(s);
        if (unlink(path) != 0)
            log_warn("stale shard %s: cannot remove: %s", path, strerror(errno));
        else
            log_info("stale shard %s removed (rebuilt elsewhere)", path);
        dropped++;
    }
    if (dropped)
        e->dirty = 1;
    return dropped ? 0 : IMG_ENOBLOCKHERE;
}

static int ref_cmp(const void *a, const void *b)
{
    const struct ds_shard_ref *x = a, *y = b;
    if (x->block_id != y->block_id)
        return x->block_id < y->block_id ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

size_t ds_ec_snapshot(struct ds *ds, struct ds_shard_ref **out)
{
    struct ds_ec *e = ds->ec;
    *out = NULL;
    if (!e || e->n == 0 || !(*out = malloc(e->n * sizeof(**out))))
        return 0;
    for (size_t i = 0; i < e->n; i++)
        (*out)[i] = (struct ds_shard_ref){.block_id = e->v[i]->block_id,
                                          .index = e->v[i]->index};
    qsort(*out, e->n, sizeof(**out), ref_cmp);
    return e->n;
}

void ds_ec_set_held(struct ds *ds, uint64_t id, int held)
{
    struct ds_ec *e = ds->ec;
    for (size_t i = 0; e && i < e->n; i++)
        if (e->v[i]->block_id == id && e->v[i]->held != held) {
            e->v[i]->held = held;
            e->dirty = 1;
        }
}

struct ds_shard *ds_ec_detach(struct ds *ds, uint64_t id)
{
    struct ds_ec *e = ds->ec;
    for (size_t i = 0; e && i < e->n; i++) {
        struct ds_shard *s = e->v[i];
        if (s->block_id == id) {
            e->v[i] = e->v[--e->n];
            e->dirty = 1;
            return s;
        }
    }
    return NULL;
}

void ds_ec_mark_bad(struct ds *ds, uint64_t id, unsigned index)
{
    struct ds_shard *s = ds_ec_shard(ds, id, index);
    if (!s || s->bad)
        return;
    s->bad = 1;
    ds->ec->dirty = 1;
    log_error("block %016" PRIx64 ": shard %u failed its chunk CRC check; reported bad for "
              "repair",
              id, index);
    ds_session_poke(ds);
}

/* ---- heartbeat report ------------------------------------------------------------- */

size_t ds_ec_report(struct ds *ds, int full, Imgstore__ShardInfo ***out)
{
    struct ds_ec *e = ds->ec;
    *out = NULL;
    if (!e || e->n == 0 || (!full && !e->dirty))
        return 0;
    size_t n = e->n;
    /* one allocation: pointers, infos, then 2*EC_MAX_K seqs per shard */
    size_t sz = n * (sizeof(Imgstore__ShardInfo *) + sizeof(Imgstore__ShardInfo) +
                     2 * EC_MAX_K * sizeof(uint32_t));
    uint8_t *mem = calloc(1, sz);
    if (!mem)
        return 0; /* the next report tries again */
    Imgstore__ShardInfo **v = (Imgstore__ShardInfo **)mem;
    Imgstore__ShardInfo *infos = (Imgstore__ShardInfo *)(mem + n * sizeof(*v));
    uint32_t *seqs = (uint32_t *)(mem + n * (sizeof(*v) + sizeof(*infos)));
    for (size_t i = 0; i < n; i++) {
        const struct ds_shard *s = e->v[i];
        const struct ec_hdr *h = &s->sh.h;
        Imgstore__ShardInfo *x = &infos[i];
        imgstore__shard_info__init(x);
        x->block_id = s->block_id;
        x->k = h->k;
        x->m = h->m;
        x->index = s->index;
        x->shard_len = h->L;
        x->block_len = h->block_len;
        x->file_bytes = s->sh.file_size;
        x->bad = s->bad;
        x->held = s->held;
        uint32_t *first = seqs + i * 2 * EC_MAX_K, *last = first + EC_MAX_K;
        for (unsigned j = 0; j < h->k; j++) {
            first[j] = h->ext[j].first_seq;
            last[j] = h->ext[j].last_seq;
        }
        x->n_seq_first = x->n_seq_last = h->k;
        x->seq_first = first;
        x->seq_last = last;
        uint32_t files = 0;
        for (size_t t = 0; t < s->sh.ntab; t++)
            files += !s->sh.tab[t].deleted;
        x->files = files;
        x->gen = h->gen;
        x->garbage_bytes = ec_compact_garbage(h, s->sh.tab, s->sh.ntab, BLOCK_SUPER_SIZE);
        v[i] = x;
    }
    e->dirty = 0;
    *out = v;
    return n;
}

void ds_ec_report_free(Imgstore__ShardInfo **v, size_t n)
{
    (void)n;
    free(v);
}

/* ---- EC_PUT_SHARD ------------------------------------------------------------------- */

struct put {
    uv_work_t w;
    struct ds *ds;
    struct ds_req *r;
    uint64_t id;
    unsigned index;
    int disk;
    char dir[PATH_MAX];
    uint8_t *bytes;
    size_t len;
    int rc;
    struct ds_shard *s;
};

static void put_run(uv_work_t *w)
{
    struct put *p = w->data;
    p->rc = ec_shard_write(p->dir, p->id, p->index, p->bytes, p->len);
    if (p->rc == 0) {
        char path[PATH_MAX + 32];
        ec_shard_path(p->dir, p->id, p->index, path, sizeof(path));
        p->s = open_shard(path, p->id, p->index, p->disk, &p->rc);
    }
}

static void put_after(uv_work_t *w, int status)
{
    struct put *p = w->data;
    struct ds *ds = p->ds;
    int rc = status < 0 ? status : p->rc;
    if (rc == 0 && (rc = add_shard(ds, p->s)) == 0) {
        log_info("block %016" PRIx64 ": shard %u written (%zu bytes)", p->id, p->index, p->len);
        ds_session_poke(ds);
    } else {
        free_shard(p->s);
        log_warn("block %016" PRIx64 ": shard %u refused: %s", p->id, p->index,
                 img_strerror(rc));
    }
    Imgstore__EcPutShardResp m = IMGSTORE__EC_PUT_SHARD_RESP__INIT;
    ds_req_answer(p->r, rc, rc == 0 ? &m.base : NULL, NULL, 0, NULL);
    free(p->bytes);
    free(p);
}

/* Non-zero when this server already holds shard `index` of block `id`. */
static int holds(struct ds *ds, uint64_t id, unsigned index)
{
    struct ds_ec *e = ds->ec;
    for (size_t i = 0; e && i < e->n; i++)
        if (e->v[i]->block_id == id && e->v[i]->index == index)
            return 1;
    return 0;
}

void ds_ec_put_shard(struct ds_req *r, const struct frame *f)
{
    struct ds *ds = r->ds;
    Imgstore__EcPutShard *q = ds_req_unpack(r, f, &imgstore__ec_put_shard__descriptor);
    if (!q)
        return;
    uint64_t id = q->block_id;
    unsigned index = q->index;
    imgstore__ec_put_shard__free_unpacked(q, NULL);
    if (index >= EC_MAX_SHARDS || f->h.body_len < EC_HDR_FIXED) {
        ds_req_fail(r, IMG_EINVAL);
        return;
    }
    if (holds(ds, id, index)) {
        ds_req_fail(r, IMG_EEXIST);
        return;
    }
    struct put *p = calloc(1, sizeof(*p));
    uint8_t *bytes = p ? malloc(f->h.body_len) : NULL;
    if (!p || !bytes) {
        free(p);
        ds_req_fail(r, -ENOMEM);
        return;
    }
    int disk = store_pick_disk(ds->store, p->dir, sizeof(p->dir));
    if (disk < 0) {
        free(p);
        free(bytes);
        ds_req_fail(r, disk);
        return;
    }
    memcpy(bytes, f->body, f->h.body_len);
    *p = (struct put){.ds = ds, .r = r, .id = id, .index = index, .disk = disk,
                      .bytes = bytes, .len = f->h.body_len};
    blocks_dir(ds, disk, p->dir, sizeof(p->dir));
    p->w.data = p;
    int rc = uv_queue_work(ds->loop, &p->w, put_run, put_after);
    if (rc != 0) {
        free(bytes);
        free(p);
        ds_req_fail(r, rc);
    }
}

/* ---- EC_ENCODE ---------------------------------------------------------------------- */

struct enc {
    uv_work_t w;
    struct ds *ds;
    struct ds_req *r;
    uint64_t id, task, size;
    unsigned k, m;
    struct block_fd *bfd;
    char addr[EC_MAX_SHARDS][64];
    int local[EC_MAX_SHARDS];
    int disk;
    char dir[PATH_MAX];
    struct ec_stripe_files sf;
    struct ds_shard *mine[EC_MAX_SHARDS];
    int rc;
    unsigned pending;
};

static int pread_all(int fd, uint8_t *buf, uint64_t len)
{
    uint64_t done = 0;
    while (done < len) {
        ssize_t n = pread(fd, buf + done, (size_t)(len - done), (off_t)done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : IMG_EFORMAT;
        done += (uint64_t)n;
    }
    return 0;
}

static void enc_run(uv_work_t *w)
{
    struct enc *j = w->data;
    uint8_t *buf = malloc(j->size ? j->size : 1);
    j->rc = buf ? pread_all(j->bfd->fd, buf, j->size) : -ENOMEM;
    if (j->rc == 0)
        j->rc = ec_stripe_build(buf, j->size, BLOCK_SUPER_SIZE, j->id, j->k, j->m, &j->sf);
    free(buf);
    for (unsigned i = 0; j->rc == 0 && i < j->k + j->m; i++)
        if (j->sf.len[i] > DS_EC_MAX_FILE)
            j->rc = IMG_ETOOBIG;
    for (unsigned i = 0; j->rc == 0 && i < j->k + j->m; i++) {
        if (!j->local[i])
            continue;
        j->rc = ec_shard_write(j->dir, j->id, i, j->sf.file[i], j->sf.len[i]);
        if (j->rc == 0) {
            char path[PATH_MAX + 32];
            ec_shard_path(j->dir, j->id, i, path, sizeof(path));
            j->mine[i] = open_shard(path, j->id, i, j->disk, &j->rc);
        }
    }
}

static void enc_finish(struct enc *j)
{
    struct ds *ds = j->ds;
    struct block *b = store_get(ds->store, j->id);
    int rc = j->rc;
    /* Encoded: deletes stay refused until the nameserver drops this copy
     * (a tombstone now would miss the stripe). Failed: deletes resume. */
    if (b)
        b->hold_until_ms = rc == 0 ? UINT64_MAX : 0;
    Imgstore__EcEncodeResp m = IMGSTORE__EC_ENCODE_RESP__INIT;
    uint32_t first[EC_MAX_K], last[EC_MAX_K];
    struct ec_hdr h;
    enum ec_why why;
    memset(&h, 0, sizeof(h));
    if (rc == 0 && (rc = ec_hdr_parse(j->sf.file[0], j->sf.len[0], j->id, &h, &why)) == 0) {
        m.shard_len = h.L;
        m.block_len = h.block_len;
        m.files = j->sf.files;
        for (unsigned i = 0; i < h.k; i++) {
            first[i] = h.ext[i].first_seq;
            last[i] = h.ext[i].last_seq;
        }
        m.n_seq_first = m.n_seq_last = h.k;
        m.seq_first = first;
        m.seq_last = last;
        ec_hdr_free(&h);
    }
    if (rc == 0)
        log_info("task %" PRIu64 ": block %016" PRIx64 " encoded %u+%u, shard length %" PRIu64,
                 j->task, j->id, j->k, j->m, m.shard_len);
    else
        log_warn("task %" PRIu64 ": encoding block %016" PRIx64 " failed: %s", j->task, j->id,
                 img_strerror(rc));
    ds_req_answer(j->r, rc, rc == 0 ? &m.base : NULL, NULL, 0, NULL);
    ec_stripe_files_free(&j->sf);
    free(j);
}

static void put_reply(int status, const struct frame *f, void *arg)
{
    struct enc *j = arg;
    (void)f;
    int rc = status;
    if (rc == 0 && f && f->h.status != 0)
        rc = f->h.status;
    if (rc != 0 && j->rc == 0)
        j->rc = rc;
    if (--j->pending == 0)
        enc_finish(j);
}

static void enc_after(uv_work_t *w, int status)
{
    struct enc *j = w->data;
    struct ds *ds = j->ds;
    block_fd_put(j->bfd);
    j->bfd = NULL;
    if (status < 0 && j->rc == 0)
        j->rc = status;
    for (unsigned i = 0; i < EC_MAX_SHARDS; i++) {
        if (!j->mine[i])
            continue;
        if (j->rc == 0 && add_shard(ds, j->mine[i]) == 0)
            ds_session_poke(ds);
        else
            free_shard(j->mine[i]);
        j->mine[i] = NULL;
    }
    j->pending = 1; /* held while sending */
    for (unsigned i = 0; j->rc == 0 && i < j->k + j->m; i++) {
        if (j->local[i])
            continue;
        Imgstore__EcPutShard q = IMGSTORE__EC_PUT_SHARD__INIT;
        q.block_id = j->id;
        q.index = i;
        q.task_id = j->task;
        j->pending++;
        int rc = ds_peer_request(ds, j->addr[i], FT_EC_PUT_SHARD, &q.base, j->sf.file[i],
                                 (uint32_t)j->sf.len[i], DS_EC_TIMEOUT_MS, put_reply, j);
        if (rc != 0) {
            j->pending--;
            j->rc = rc;
        }
    }
    if (--j->pending == 0)
        enc_finish(j);
}

void ds_ec_encode(struct ds_req *r, const struct frame *f)
{
    struct ds *ds = r->ds;
    Imgstore__EcEncode *q = ds_req_unpack(r, f, &imgstore__ec_encode__descriptor);
    if (!q)
        return;
    int rc = ec_scheme_check(q->k, q->m) != 0 || q->n_targets != q->k + q->m ? IMG_EINVAL : 0;
    struct enc *j = rc == 0 ? calloc(1, sizeof(*j)) : NULL;
    if (rc == 0 && !j)
        rc = -ENOMEM;
    unsigned seen = 0;
    for (size_t i = 0; rc == 0 && i < q->n_targets; i++) {
        const Imgstore__EcTarget *t = q->targets[i];
        if (!t || t->index >= q->k + q->m || (seen & (1u << t->index)) || !t->server ||
            !t->server->server_id || !t->server->addr ||
            strlen(t->server->addr) >= sizeof(j->addr[0])) {
            rc = IMG_EINVAL;
            break;
        }
        seen |= 1u << t->index;
        snprintf(j->addr[t->index], sizeof(j->addr[0]), "%s", t->server->addr);
        j->local[t->index] = strcmp(t->server->server_id, ds->store->server_id) == 0;
    }
    struct block *b = rc == 0 ? store_get(ds->store, q->block_id) : NULL;
    if (rc == 0 && !b)
        rc = IMG_ENOBLOCKHERE;
    else if (rc == 0 && !b->sealed)
        rc = IMG_ESEALED;
    else if (rc == 0 && b->corrupt)
        rc = IMG_ECORRUPT;
    else if (rc == 0 && (b->compacting ||
                         (b->hold_until_ms && uv_now(ds->loop) < b->hold_until_ms)))
        rc = IMG_EBUSY;
    else if (rc == 0 && (b->tail != q->expected_size || b->durable_tail != b->tail))
        rc = IMG_EOFFSET;
    else if (rc == 0 && b->tail / q->k + NEEDLE_MAX_DATA + (1u << 20) > DS_EC_MAX_FILE)
        rc = IMG_ETOOBIG; /* a shard may not fit in one frame: refused before reading
                           * (an extent is at most tail/k plus one record) */
    for (unsigned i = 0; rc == 0 && i < q->k + q->m; i++)
        if (holds(ds, q->block_id, i))
            rc = IMG_EEXIST;
    if (rc == 0) {
        j->ds = ds;
        j->r = r;
        j->id = q->block_id;
        j->task = q->task_id;
        j->k = q->k;
        j->m = q->m;
        j->size = b->tail;
        j->disk = store_pick_disk(ds->store, j->dir, sizeof(j->dir));
        if (j->disk < 0)
            rc = j->disk;
        else
            blocks_dir(ds, j->disk, j->dir, sizeof(j->dir));
    }
    if (rc == 0 && !(j->bfd = block_fd_get(b)))
        rc = -ENOMEM;
    imgstore__ec_encode__free_unpacked(q, NULL);
    if (rc == 0) {
        j->w.data = j;
        b->hold_until_ms = uv_now(ds->loop) + DS_EC_HOLD_MS;
        rc = uv_queue_work(ds->loop, &j->w, enc_run, enc_after);
        if (rc != 0) {
            b->hold_until_ms = 0;
            block_fd_put(j->bfd);
        }
    }
    if (rc != 0) {
        free(j);
        ds_req_fail(r, rc);
    }
}
