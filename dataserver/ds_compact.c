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
#include "dataserver/ds_block.h"
#include "dataserver/ds_copy.h"
#include "dataserver/ds_throttle.h"
#include "proto/imgstore.pb-c.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- online path (COMPACT_BLOCK) ------------------------------------------- */

struct job {
    struct job *next;
    struct ds *ds;
    struct ds_req *req;    /* COMPACT_BLOCK, answered when the job ends */
    uint64_t id, task, old_size;
    struct block *b;       /* checked against the store at every step */
    uint32_t *seqs;
    size_t nseqs, next_i;  /* next_i 0: the superblock, i: seqs[i - 1] */
    char tmp[PATH_MAX + 32];
    int fd;
    struct compact_out o;
    uint8_t *buf;
    size_t len;
    uint32_t seq;
    uv_timer_t timer;
    int timer_open;
    uint64_t started_ms;
    uint64_t synced_off;   /* bytes of the output made durable so far */
    uint32_t lead_gen;     /* ds->ns_lead_gen when ordered */
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

static void release_hold(struct block *b, void *arg)
{
    if (b->hold_until_ms && !b->compacting) {
        b->hold_until_ms = 0;
        (*(int *)arg)++;
    }
}

void ds_compact_release_holds(struct ds *ds)
{
    int n = 0;
    store_foreach(ds->store, release_hold, &n);
    if (n)
        log_info("released the compaction holds of %d block%s: the nameserver that ordered "
                 "them no longer leads this session, deletes of them go on", n, n == 1 ? "" : "s");
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
    compact_out_free(&j->o);
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
            block_save_meta(b);
            ds_block_changed(ds, b);
        }
    }
    if (b && j->lead_gen != ds->ns_lead_gen) {
        b->hold_until_ms = 0; /* its nameserver went: no release will come */
        log_info("task %" PRIu64 ": block %" PRIu64 ": compaction hold released (the "
                 "nameserver that ordered it no longer leads this session)", j->task, j->id);
    }
    /* Dropped by the session transport when stopping or when the session
     * was replaced meanwhile. */
    Imgstore__CompactBlockResp resp = IMGSTORE__COMPACT_BLOCK_RESP__INIT;
    resp.size = j->o.off;
    resp.crc32c = j->o.crc;
    resp.file_count = j->o.files;
    resp.reclaimed = j->old_size > j->o.off ? j->old_size - j->o.off : 0;
    ds_req_answer(j->req, rc, rc == 0 ? &resp.base : NULL, NULL, 0, NULL);
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
        rc = compact_out_add(&j->o, j->buf, j->len, &h);
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
        rc = compact_check_record(j->buf, j->len, j->seq, &h);
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
    uint64_t wait = ds_throttle_take(ds, (uint32_t)j->len);
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
static int compact_start(struct ds *ds, struct ds_req *r, const Imgstore__CompactBlock *m)
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
    compact_out_init(&j->o);
    uint64_t new_size;
    int rc = compact_plan(b, &j->seqs, &j->nseqs, &new_size);
    if (rc != 0) {
        free(j);
        return rc;
    }
    j->ds = ds;
    j->req = r;
    j->id = b->id;
    j->b = b;
    j->task = m->task_id;
    j->old_size = b->durable_tail;
    j->started_ms = uv_now(ds->loop);
    j->lead_gen = ds->ns_lead_gen;
    compact_temp_path(b, j->tmp, sizeof(j->tmp));
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

void ds_compact_block(struct ds_req *r, const struct frame *f)
{
    struct ds *ds = r->ds;
    Imgstore__CompactBlock *m = ds_req_unpack(r, f, &imgstore__compact_block__descriptor);
    if (!m)
        return;
    int rc;
    if (m->release) {
        struct block *b = store_get(ds->store, m->block_id);
        if (b)
            b->hold_until_ms = 0;
        rc = 0;
    } else {
        rc = compact_start(ds, r, m);
        if (rc == 0) {
            imgstore__compact_block__free_unpacked(m, NULL);
            return;
        }
        log_warn("compaction of block %" PRIu64 " refused: %s", m->block_id, img_strerror(rc));
    }
    imgstore__compact_block__free_unpacked(m, NULL);
    Imgstore__CompactBlockResp resp = IMGSTORE__COMPACT_BLOCK_RESP__INIT;
    ds_req_answer(r, rc, rc == 0 ? &resp.base : NULL, NULL, 0, NULL);
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
