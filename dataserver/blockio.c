/* blockio.c - durable appends (group commit) and reads of block records.
 *
 * Per block, the appends in progress sit in a list sorted by offset. A write
 * completion stamps its append with the generation of the next fdatasync to
 * be submitted; at most one fdatasync per block is in flight, and when it
 * completes every append stamped with its generation (or an earlier one) is
 * durable. Callbacks are delivered from the head of the list only, so they
 * run in offset order, and b->durable_tail moves forward with them. The first
 * I/O error seals the block, is remembered, and fails every append still
 * waiting and every later one; an append whose write is still in the kernel
 * fails when that write completes (its buffer is in use until then).
 *
 * The per-block state hangs off b->io. blockio_release detaches it; if an
 * fdatasync is still in flight, the state is freed when it completes. */
#include "dataserver/blockio.h"

#include "base/err.h"
#include "base/list.h"
#include "base/log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>

enum bio_state { BIO_WRITING, BIO_WRITTEN };

struct bio_append {
    struct bio_block *bb;
    uint64_t offset;
    size_t len;
    enum bio_state state;
    uint64_t gen; /* first fdatasync generation that covers this write */
    blockio_cb cb;
    void *arg;
    struct bio_append *prev, *next;
};

struct bio_block {
    struct block *b; /* NULL once released */
    struct uring *r;
    struct bio_append *head, *tail; /* sorted by offset */
    uint64_t next_gen;     /* generation of the next fdatasync submitted */
    uint64_t syncing_gen;  /* generation of the fdatasync in flight */
    uint64_t durable_gen;  /* last completed generation */
    unsigned uncovered;    /* writes completed since the last fdatasync went out */
    int syncing;
    int delivering;
    int error;
    int released;
};

struct bio_read {
    struct block_fd *file; /* pinned: a compaction swap cannot close it under us */
    int disk;              /* the block's data folder, for blockio_disk_error */
    size_t len;
    blockio_cb cb;
    void *arg;
};

/* The first I/O error seen per data folder (ds_disk.c polls it). */
static int disk_errors[BLOCKIO_MAX_DISKS];

/* Remembers a system error (a negative errno, not ENOSPC: a full disk is not
 * a failed one) of a read or write on folder `disk`. */
static void note_disk_error(int disk, int err)
{
    if (disk >= 0 && disk < BLOCKIO_MAX_DISKS && err < 0 && err > IMG_ENOTFOUND &&
        err != -ENOSPC && err != -ECANCELED && err != -EINTR && err != -EAGAIN &&
        !disk_errors[disk])
        disk_errors[disk] = err;
}

int blockio_disk_error(int disk)
{
    return disk >= 0 && disk < BLOCKIO_MAX_DISKS ? disk_errors[disk] : 0;
}

static struct bio_block *state_of(struct block *b)
{
    if (!b->io) {
        struct bio_block *bb = calloc(1, sizeof(*bb));
        if (!bb)
            return NULL;
        bb->b = b;
        bb->next_gen = 1;
        b->io = bb;
    }
    return b->io;
}

static void list_insert(struct bio_block *bb, struct bio_append *a)
{
    struct bio_append *p = bb->tail;
    while (p && p->offset > a->offset)
        p = p->prev;
    a->prev = p;
    a->next = p ? p->next : bb->head;
    if (a->next)
        a->next->prev = a;
    else
        bb->tail = a;
    if (p)
        p->next = a;
    else
        bb->head = a;
}

static void list_remove(struct bio_block *bb, struct bio_append *a)
{
    if (!a->next)
        bb->tail = a->prev;
    DLIST_UNLINK(bb->head, a);
}

static void maybe_free(struct bio_block *bb)
{
    if (bb->released && !bb->head && !bb->syncing && !bb->delivering)
        free(bb);
}

/* Runs callbacks from the head of the list while the head is finished: durable
 * (success), or failed after an error. Re-entrant calls return at once; the
 * outer loop picks up whatever they changed. May free bb when released. */
static void deliver(struct bio_block *bb)
{
    if (bb->delivering)
        return;
    bb->delivering = 1;
    struct bio_append *a;
    while ((a = bb->head) && a->state == BIO_WRITTEN) {
        int status;
        if (a->gen <= bb->durable_gen)
            status = 0;
        else if (bb->error)
            status = bb->error;
        else
            break;
        list_remove(bb, a);
        if (status == 0 && bb->b && a->offset + a->len > bb->b->durable_tail)
            bb->b->durable_tail = a->offset + a->len;
        a->cb(status, a->arg);
        free(a);
    }
    bb->delivering = 0;
    maybe_free(bb);
}

static void fail(struct bio_block *bb, int err)
{
    if (!bb->error) {
        bb->error = err;
        if (bb->b)
            note_disk_error(bb->b->disk, err);
        if (bb->b) {
            log_error("block %016" PRIx64 ": I/O error (%s); sealing it", bb->b->id,
                      img_strerror(err));
            int rc = block_seal(bb->b);
            if (rc != 0)
                log_error("block %016" PRIx64 ": cannot save meta: %s", bb->b->id,
                          img_strerror(rc));
        }
    }
}

static void on_sync(int res, void *arg);

/* Submits an fdatasync covering every completed write, unless one is in
 * flight already (its completion calls here again). */
static void maybe_sync(struct bio_block *bb)
{
    if (bb->syncing || bb->error || bb->uncovered == 0)
        return;
    if (!bb->b) {
        fail(bb, -ECANCELED);
        return;
    }
    int rc = uring_fdatasync(bb->r, bb->b->fd, on_sync, bb);
    if (rc != 0) {
        fail(bb, rc);
        return;
    }
    bb->syncing = 1;
    bb->syncing_gen = bb->next_gen++;
    bb->uncovered = 0;
}

static void on_sync(int res, void *arg)
{
    struct bio_block *bb = arg;
    bb->syncing = 0;
    if (res < 0)
        fail(bb, res);
    else
        bb->durable_gen = bb->syncing_gen;
    bb->delivering++; /* keep bb alive across maybe_sync */
    maybe_sync(bb);
    bb->delivering--;
    deliver(bb);
}

static void on_write(int res, void *arg)
{
    struct bio_append *a = arg;
    struct bio_block *bb = a->bb;
    a->state = BIO_WRITTEN;
    a->gen = bb->next_gen;
    if (res < 0) {
        fail(bb, res);
    } else {
        bb->uncovered++;
        maybe_sync(bb);
    }
    deliver(bb);
}

int blockio_append(struct uring *r, struct block *b, const void *rec, size_t len,
                   uint64_t offset, blockio_cb cb, void *arg)
{
    if (!r || !b || !rec || !cb || len == 0 || offset < BLOCK_SUPER_SIZE ||
        offset > b->tail || len > b->tail - offset)
        return IMG_EINVAL;
    struct bio_block *bb = state_of(b);
    if (!bb)
        return -ENOMEM;
    if (bb->error)
        return bb->error;
    struct bio_append *a = calloc(1, sizeof(*a));
    if (!a)
        return -ENOMEM;
    a->bb = bb;
    a->offset = offset;
    a->len = len;
    a->state = BIO_WRITING;
    a->cb = cb;
    a->arg = arg;
    bb->r = r;
    list_insert(bb, a);
    int rc = uring_write(r, b->fd, rec, len, offset, on_write, a);
    if (rc != 0) {
        list_remove(bb, a);
        free(a);
    }
    return rc;
}

static void on_read(int res, void *arg)
{
    struct bio_read *q = arg;
    int status = res < 0 ? res : (size_t)res < q->len ? IMG_ECORRUPT : 0;
    note_disk_error(q->disk, res);
    block_fd_put(q->file);
    q->cb(status, q->arg);
    free(q);
}

static int bio_read(struct uring *r, struct block *b, void *buf, size_t len, uint64_t offset,
                    int background, blockio_cb cb, void *arg)
{
    if (!r || !b || !buf || !cb || offset > UINT64_MAX - len)
        return IMG_EINVAL;
    struct bio_read *q = malloc(sizeof(*q));
    if (!q)
        return -ENOMEM;
    q->file = block_fd_get(b);
    if (!q->file) {
        free(q);
        return -ENOMEM;
    }
    q->disk = b->disk;
    q->len = len;
    q->cb = cb;
    q->arg = arg;
    int rc = background ? uring_read_bg(r, q->file->fd, buf, len, offset, on_read, q)
                        : uring_read(r, q->file->fd, buf, len, offset, on_read, q);
    if (rc != 0) {
        block_fd_put(q->file);
        free(q);
    }
    return rc;
}

int blockio_read(struct uring *r, struct block *b, void *buf, size_t len, uint64_t offset,
                 blockio_cb cb, void *arg)
{
    return bio_read(r, b, buf, len, offset, 0, cb, arg);
}

int blockio_read_bg(struct uring *r, struct block *b, void *buf, size_t len, uint64_t offset,
                    blockio_cb cb, void *arg)
{
    return bio_read(r, b, buf, len, offset, 1, cb, arg);
}

void blockio_release(struct block *b)
{
    if (!b || !b->io)
        return;
    struct bio_block *bb = b->io;
    b->io = NULL;
    bb->b = NULL;
    bb->released = 1;
    maybe_free(bb);
}
