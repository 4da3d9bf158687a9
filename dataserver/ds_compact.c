/* ds_compact.c - online compaction of a sealed block (ds_compact.h).
 *
 * One job per block: the plan (live seqs in ascending order) is fixed when
 * the job starts; then, one record at a time, the bucket is asked for the
 * record's bytes, the record is read through io_uring (blockio_read pins the
 * old file), checked (header, seq, CRC32C) and written at the output tail of
 * <id>.blk.compact while its index entry and the file's CRC32C are built.
 * At the end the output is fdatasync'd and block_swap_file installs it. Any
 * failure removes the temporary file and leaves the block as it was; one
 * left by a crash is removed at the next start (store.c removes unknown
 * files' temporaries the same way as copies'). */
#include "dataserver/ds_compact.h"

#include "base/crc32c.h"
#include "base/err.h"
#include "base/log.h"
#include "dataserver/blockio.h"
#include "dataserver/ds_copy.h"
#include "proto/imgstore.pb-c.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- the deterministic output ------------------------------------------ */

/* The output being built: its index (RAM and encoded) and CRC32C. */
struct out {
    struct index ix;
    uint8_t *idx;
    size_t idx_len, idx_cap;
    uint64_t off;  /* bytes written so far */
    uint32_t crc;  /* CRC32C of [0, off) */
    uint32_t files;
};

static void out_init(struct out *o)
{
    memset(o, 0, sizeof(*o));
    index_init(&o->ix);
}

static void out_free(struct out *o)
{
    index_free(&o->ix);
    free(o->idx);
}

/* Accounts one record of `len` bytes (header h) written at o->off. */
static int out_add(struct out *o, const uint8_t *rec, size_t len, const struct needle_header *h)
{
    if (o->idx_len + INDEX_ENTRY_SIZE > o->idx_cap) {
        size_t ncap = o->idx_cap ? o->idx_cap * 2 : 256 * INDEX_ENTRY_SIZE;
        uint8_t *n = realloc(o->idx, ncap);
        if (!n)
            return -ENOMEM;
        o->idx = n;
        o->idx_cap = ncap;
    }
    int rc = index_put(&o->ix, h->seq, o->off, h->size);
    if (rc != 0)
        return rc;
    index_encode_entry(h->seq, o->off, h->size, 0, o->idx + o->idx_len);
    o->idx_len += INDEX_ENTRY_SIZE;
    o->crc = crc32c(o->crc, rec, len);
    o->off += len;
    o->files++;
    return 0;
}

/* Checks a live record read for file `seq`: a data record of exactly `len`
 * bytes whose data matches its CRC32C. Returns 0 with *h, or IMG_ECORRUPT. */
static int check_record(const uint8_t *rec, size_t len, uint32_t seq, struct needle_header *h)
{
    if (len < NEEDLE_HEADER_SIZE || needle_decode_header(rec, h) != 0 || h->seq != seq ||
        (h->flags & NEEDLE_FLAG_TOMBSTONE) || needle_record_size(h->size) != len ||
        crc32c(0, rec + NEEDLE_HEADER_SIZE, h->size) != h->data_crc)
        return IMG_ECORRUPT;
    return 0;
}

int ds_compact_plan(const struct block *b, uint32_t **seqs, size_t *n, uint64_t *new_size)
{
    uint32_t *v = malloc(((size_t)b->ix.live + 1) * sizeof(*v));
    size_t k = 0;
    uint64_t size = BLOCK_SUPER_SIZE;
    if (!v)
        return -ENOMEM;
    for (uint32_t seq = 1; seq <= b->ix.max_seq && k < b->ix.live; seq++) {
        uint64_t off;
        uint32_t sz;
        int deleted;
        if (index_get(&b->ix, seq, &off, &sz, &deleted) != 0 || deleted)
            continue;
        v[k++] = seq;
        size += needle_record_size(sz);
    }
    *seqs = v;
    *n = k;
    *new_size = size;
    return 0;
}

static void temp_path(const struct block *b, char *out, size_t n)
{
    /* block_alloc keeps room for any suffix after the path */
    size_t len = strnlen(b->path, sizeof(b->path));
    if (len + sizeof(DS_COMPACT_SUFFIX) <= n) {
        memcpy(out, b->path, len);
        memcpy(out + len, DS_COMPACT_SUFFIX, sizeof(DS_COMPACT_SUFFIX));
    } else if (n) {
        out[0] = '\0';
    }
}

/* ---- synchronous path --------------------------------------------------- */

static int sync_copy(struct block *b, int fd, const uint32_t *seqs, size_t n, struct out *o)
{
    uint8_t sb[BLOCK_SUPER_SIZE];
    uint64_t max;
    if (uring_pread_sync(b->fd, sb, sizeof(sb), 0) != (ssize_t)sizeof(sb) ||
        block_check_super(sb, b->id, &max) != 0)
        return IMG_ECORRUPT;
    if (uring_pwrite_sync(fd, sb, sizeof(sb), 0) != (ssize_t)sizeof(sb))
        return -EIO;
    o->crc = crc32c(0, sb, sizeof(sb));
    o->off = sizeof(sb);
    for (size_t i = 0; i < n; i++) {
        uint64_t off;
        uint32_t size;
        struct needle_header h;
        if (block_lookup(b, seqs[i], &off, &size) != 0)
            return IMG_ECORRUPT;
        size_t len = needle_record_size(size);
        uint8_t *rec = malloc(len);
        int rc = rec ? 0 : -ENOMEM;
        if (rc == 0 && uring_pread_sync(b->fd, rec, len, off) != (ssize_t)len)
            rc = IMG_ECORRUPT;
        if (rc == 0)
            rc = check_record(rec, len, seqs[i], &h);
        if (rc == 0 && uring_pwrite_sync(fd, rec, len, o->off) != (ssize_t)len)
            rc = -EIO;
        if (rc == 0)
            rc = out_add(o, rec, len, &h);
        free(rec);
        if (rc != 0)
            return rc;
    }
    return uring_fdatasync_sync(fd);
}

int ds_compact_sync(struct block *b, uint32_t *crc)
{
    char tmp[sizeof(b->path) + 32];
    uint32_t *seqs = NULL;
    size_t n = 0;
    uint64_t size;
    struct out o;
    out_init(&o);
    int rc = ds_compact_plan(b, &seqs, &n, &size);
    if (rc != 0)
        return rc;
    temp_path(b, tmp, sizeof(tmp));
    int fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        free(seqs);
        return -errno;
    }
    rc = sync_copy(b, fd, seqs, n, &o);
    if (rc == 0)
        rc = block_swap_file(b, tmp, fd, &o.ix, o.off, o.idx, o.idx_len);
    if (rc != 0) {
        close(fd);
        unlink(tmp);
    } else {
        *crc = o.crc;
    }
    free(seqs);
    out_free(&o);
    return rc;
}

/* ---- online path (COMPACT_BLOCK) ------------------------------------------- */

struct job {
    struct job *next;
    struct ds *ds;
    struct conn *ns_conn;
    struct frame_header req;
    uint64_t id, task, old_size;
    struct block *b;       /* checked against the store at every step */
    uint32_t *seqs;
    size_t nseqs, next_i;  /* next_i 0: the superblock, i: seqs[i - 1] */
    char tmp[PATH_MAX + 32];
    int fd;
    struct out o;
    uint8_t *buf;
    size_t len;
    uint32_t seq;
    uv_timer_t timer;
    int timer_open;
    uint64_t started_ms;
    uint64_t synced_off;   /* bytes of the output made durable so far */
};

struct ds_compact {
    struct job *jobs;
    unsigned njobs;
};

static struct ds_compact *cstate(struct ds *ds)
{
    if (!ds->compact)
        ds->compact = calloc(1, sizeof(struct ds_compact));
    return ds->compact;
}

int ds_compact_busy(struct ds *ds, const struct block *b)
{
    return b->compacting || (b->hold_until_ms && uv_now(ds->loop) < b->hold_until_ms);
}

static void job_timer_closed(uv_handle_t *h)
{
    free(h->data);
}

static void job_free(struct job *j)
{
    struct ds_compact *dc = j->ds->compact;
    for (struct job **pp = &dc->jobs; *pp; pp = &(*pp)->next)
        if (*pp == j) {
            *pp = j->next;
            dc->njobs--;
            break;
        }
    if (j->fd >= 0) {
        close(j->fd);
        unlink(j->tmp);
    }
    free(j->seqs);
    free(j->buf);
    out_free(&j->o);
    if (j->timer_open)
        uv_close((uv_handle_t *)&j->timer, job_timer_closed);
    else
        free(j);
}

static void job_finish(struct job *j, int rc)
{
    struct ds *ds = j->ds;
    struct block *b = store_get(ds->store, j->id);
    if (b == j->b)
        b->compacting = 0;
    else
        b = NULL;
    if (rc == 0 && b) {
        rc = block_swap_file(b, j->tmp, j->fd, &j->o.ix, j->o.off, j->o.idx, j->o.idx_len);
        if (rc == 0)
            j->fd = -1; /* the block's now */
    } else if (rc == 0) {
        rc = IMG_ENOBLOCKHERE; /* deleted meanwhile */
    }
    uint64_t ms = uv_now(ds->loop) - j->started_ms;
    if (rc == 0) {
        log_info("task %" PRIu64 ": block %" PRIu64 " compacted: %" PRIu64 " -> %" PRIu64
                 " bytes, %u files, crc32c %08x, in %" PRIu64 " ms",
                 j->task, j->id, j->old_size, j->o.off, j->o.files, j->o.crc, ms);
        ds_session_poke(ds);
    } else {
        log_warn("task %" PRIu64 ": compaction of block %" PRIu64 " failed: %s", j->task, j->id,
                 img_strerror(rc));
        if (rc == IMG_ECORRUPT && b && !b->corrupt) {
            b->corrupt = 1;
            b->dirty = 1;
            block_save_meta(b);
            ds_session_poke(ds);
        }
    }
    if (!ds->stopping && j->ns_conn == ds->ns_conn && ds->ns_conn &&
        !conn_is_closing(ds->ns_conn)) {
        Imgstore__CompactBlockResp resp = IMGSTORE__COMPACT_BLOCK_RESP__INIT;
        resp.size = j->o.off;
        resp.crc32c = j->o.crc;
        resp.file_count = j->o.files;
        resp.reclaimed = j->old_size > j->o.off ? j->old_size - j->o.off : 0;
        conn_reply(j->ns_conn, &j->req, rc, rc == 0 ? &resp.base : NULL, NULL, 0, NULL);
    }
    job_free(j);
}

static void job_step(struct job *j);

static void job_timer_cb(uv_timer_t *t)
{
    job_step(t->data);
}

static void job_synced(int res, void *arg)
{
    struct job *j = arg;
    job_finish(j, j->ds->stopping ? IMG_ECONN : res < 0 ? res : 0);
}

/* A part-way fdatasync (ds_copy_sync_bytes) is done: on to the next record. */
static void job_part_synced(int res, void *arg)
{
    struct job *j = arg;
    int rc = j->ds->stopping ? IMG_ECONN : res < 0 ? res : 0;
    if (rc != 0)
        job_finish(j, rc);
    else
        job_step(j);
}

static void job_written(int res, void *arg)
{
    struct job *j = arg;
    int rc = j->ds->stopping ? IMG_ECONN : res < 0 ? res : (size_t)res != j->len ? -EIO : 0;
    if (rc == 0 && j->next_i == 0) {
        j->o.crc = crc32c(0, j->buf, j->len);
        j->o.off = j->len;
    } else if (rc == 0) {
        struct needle_header h;
        needle_decode_header(j->buf, &h);
        rc = out_add(&j->o, j->buf, j->len, &h);
    }
    free(j->buf);
    j->buf = NULL;
    if (rc != 0) {
        job_finish(j, rc);
        return;
    }
    j->next_i++;
    if (j->o.off - j->synced_off >= ds_copy_sync_bytes(j->ds)) {
        j->synced_off = j->o.off;
        rc = uring_fdatasync(j->ds->store->ring, j->fd, job_part_synced, j);
        if (rc != 0)
            job_finish(j, rc);
        return;
    }
    job_step(j);
}

static void job_read(int status, void *arg)
{
    struct job *j = arg;
    int rc = j->ds->stopping ? IMG_ECONN : status;
    uint64_t max;
    struct needle_header h;
    if (rc == 0 && j->next_i == 0)
        rc = block_check_super(j->buf, j->id, &max) != 0 ? IMG_ECORRUPT : 0;
    else if (rc == 0)
        rc = check_record(j->buf, j->len, j->seq, &h);
    if (rc == 0)
        rc = uring_write_bg(j->ds->store->ring, j->fd, j->buf, j->len, j->o.off, job_written, j);
    if (rc != 0)
        job_finish(j, rc);
}

/* Reads the next record (after the bucket allows it), or syncs the output
 * when every record is in. */
static void job_step(struct job *j)
{
    struct ds *ds = j->ds;
    struct block *b = store_get(ds->store, j->id);
    if (ds->stopping || b != j->b) {
        job_finish(j, ds->stopping ? IMG_ECONN : IMG_ENOBLOCKHERE);
        return;
    }
    if (j->next_i > j->nseqs) {
        int rc = uring_fdatasync(ds->store->ring, j->fd, job_synced, j);
        if (rc != 0)
            job_finish(j, rc);
        return;
    }
    uint64_t off = 0;
    uint32_t size = 0;
    j->len = BLOCK_SUPER_SIZE;
    if (j->next_i > 0) {
        j->seq = j->seqs[j->next_i - 1];
        if (block_lookup(b, j->seq, &off, &size) != 0) {
            job_finish(j, IMG_ECORRUPT);
            return;
        }
        j->len = needle_record_size(size);
    }
    uint64_t wait = ds_copy_throttle(ds, (uint32_t)j->len);
    if (wait) {
        if (!j->timer_open) {
            uv_timer_init(ds->loop, &j->timer);
            j->timer.data = j;
            j->timer_open = 1;
        }
        uv_timer_start(&j->timer, job_timer_cb, wait, 0);
        return;
    }
    /* calloc: the kernel fills it, and valgrind cannot see io_uring writes */
    j->buf = calloc(1, j->len);
    int rc = j->buf ? blockio_read(ds->store->ring, b, j->buf, j->len, off, job_read, j)
                    : -ENOMEM;
    if (rc != 0)
        job_finish(j, rc);
}

/* Validates COMPACT_BLOCK and starts the job. Returns 0 when started
 * (answered later) or an error to answer now. */
static int compact_start(struct ds *ds, struct conn *c, const struct frame *f,
                         const Imgstore__CompactBlock *m)
{
    struct ds_compact *dc = cstate(ds);
    struct block *b = store_get(ds->store, m->block_id);
    if (!dc)
        return -ENOMEM;
    if (!b)
        return IMG_ENOBLOCKHERE;
    if (b->compacting)
        return IMG_EEXIST;
    if (!b->sealed || b->corrupt)
        return IMG_EINVAL;
    if (b->tail != b->durable_tail || b->durable_tail != m->expected_size)
        return IMG_EOFFSET;
    if (dc->njobs >= DS_COMPACT_MAX_ACTIVE)
        return IMG_EUNAVAIL;
    struct job *j = calloc(1, sizeof(*j));
    if (!j)
        return -ENOMEM;
    out_init(&j->o);
    uint64_t new_size;
    int rc = ds_compact_plan(b, &j->seqs, &j->nseqs, &new_size);
    if (rc != 0) {
        free(j);
        return rc;
    }
    j->ds = ds;
    j->ns_conn = c;
    j->req = f->h;
    j->id = b->id;
    j->b = b;
    j->task = m->task_id;
    j->old_size = b->durable_tail;
    j->started_ms = uv_now(ds->loop);
    temp_path(b, j->tmp, sizeof(j->tmp));
    j->fd = open(j->tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (j->fd < 0) {
        rc = -errno;
        free(j->seqs);
        free(j);
        return rc;
    }
    j->next = dc->jobs;
    dc->jobs = j;
    dc->njobs++;
    b->compacting = 1;
    b->hold_until_ms = uv_now(ds->loop) + DS_COMPACT_HOLD_MAX_MS;
    log_info("task %" PRIu64 ": compacting block %" PRIu64 " (%" PRIu64 " bytes, %" PRIu64
             " deleted, %zu live files -> %" PRIu64 " bytes)",
             j->task, j->id, j->old_size, b->deleted_bytes, j->nseqs, new_size);
    job_step(j);
    return 0;
}

static void handle_compact(struct ds *ds, struct conn *c, const struct frame *f)
{
    Imgstore__CompactBlock *m = imgstore__compact_block__unpack(NULL, f->h.head_len, f->head);
    if (!m) {
        conn_reply(c, &f->h, IMG_EPROTO, NULL, NULL, 0, NULL);
        return;
    }
    int rc;
    if (m->release) {
        struct block *b = store_get(ds->store, m->block_id);
        if (b)
            b->hold_until_ms = 0;
        rc = 0;
    } else {
        rc = compact_start(ds, c, f, m);
        if (rc == 0) {
            imgstore__compact_block__free_unpacked(m, NULL);
            return;
        }
        log_warn("compaction of block %" PRIu64 " refused: %s", m->block_id, img_strerror(rc));
    }
    imgstore__compact_block__free_unpacked(m, NULL);
    Imgstore__CompactBlockResp resp = IMGSTORE__COMPACT_BLOCK_RESP__INIT;
    conn_reply(c, &f->h, rc, rc == 0 ? &resp.base : NULL, NULL, 0, NULL);
}

int ds_compact_session_frame(struct ds *ds, struct conn *c, const struct frame *f)
{
    if (f->h.type != FT_COMPACT_BLOCK)
        return 0;
    handle_compact(ds, c, f);
    return 1;
}

void ds_compact_stop(struct ds *ds)
{
    struct ds_compact *dc = ds->compact;
    if (!dc)
        return;
    /* Jobs waiting on the bucket end now; the others in their callbacks. */
    for (struct job *j = dc->jobs, *next; j; j = next) {
        next = j->next;
        if (j->timer_open && uv_is_active((uv_handle_t *)&j->timer)) {
            uv_timer_stop(&j->timer);
            job_finish(j, IMG_ECONN);
        }
    }
    if (!dc->jobs) {
        free(dc);
        ds->compact = NULL;
    }
}
