/* uring.c - io_uring driven from the libuv loop, plus a private ring for
 * synchronous startup I/O.
 *
 * The loop ring registers an eventfd; a uv_poll_t watches it, and the poll
 * callback drains every completion. Requests are heap-allocated here and
 * freed after their callback. Reads and writes that come back short are
 * resubmitted for the remainder, so a caller sees all-or-error (or, for a
 * read, the bytes up to end of file). The kernel never holds more than
 * `entries` of our requests; the rest wait in a FIFO that is drained as
 * completions free slots. Once a request is submitted the caller must not
 * touch its buffer or fd until the callback has run. */
#include "dataserver/uring.h"

#include "common/log.h"

#include <errno.h>
#include <liburing.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define URING_SYNC_ENTRIES 4

enum uring_op { OP_READ, OP_WRITE, OP_FDATASYNC };

struct uring_req {
    enum uring_op op;
    int fd;
    uint8_t *buf;
    size_t len;
    size_t done; /* bytes transferred so far */
    uint64_t off;
    uring_cb cb;
    void *arg;
    struct uring_req *next; /* FIFO link */
};

struct uring {
    uv_loop_t *loop;
    struct io_uring ring;
    unsigned entries;
    int efd;
    uv_poll_t poll;
    unsigned inflight;  /* accepted, callback not yet run (kernel + FIFO) */
    unsigned in_kernel; /* submitted to the kernel, completion not reaped */
    struct uring_req *q_head, *q_tail;
    int closing;
};

static void fifo_push(struct uring *r, struct uring_req *q)
{
    q->next = NULL;
    if (r->q_tail)
        r->q_tail->next = q;
    else
        r->q_head = q;
    r->q_tail = q;
}

static struct uring_req *fifo_pop(struct uring *r)
{
    struct uring_req *q = r->q_head;
    if (q) {
        r->q_head = q->next;
        if (!r->q_head)
            r->q_tail = NULL;
    }
    return q;
}

static void prep(struct io_uring_sqe *sqe, struct uring_req *q)
{
    switch (q->op) {
    case OP_READ:
        io_uring_prep_read(sqe, q->fd, q->buf + q->done, (unsigned)(q->len - q->done),
                           q->off + q->done);
        break;
    case OP_WRITE:
        io_uring_prep_write(sqe, q->fd, q->buf + q->done, (unsigned)(q->len - q->done),
                            q->off + q->done);
        break;
    case OP_FDATASYNC:
        io_uring_prep_fsync(sqe, q->fd, IORING_FSYNC_DATASYNC);
        break;
    }
    io_uring_sqe_set_data(sqe, q);
}

/* Pushes prepared SQEs to the kernel. A failed submit (the kernel is short of
 * memory or its completion queue is full) leaves them in the ring; they are
 * pushed again after the next completions are reaped. */
static void flush(struct uring *r)
{
    if (io_uring_sq_ready(&r->ring) == 0)
        return;
    int rc = io_uring_submit(&r->ring);
    if (rc < 0 && rc != -EAGAIN && rc != -EBUSY && rc != -EINTR)
        log_error("uring: submit failed: %s", strerror(-rc));
}

/* Hands q to the kernel, or queues it when the ring is at capacity. Once
 * here, q always completes through its callback. */
static void submit_one(struct uring *r, struct uring_req *q)
{
    struct io_uring_sqe *sqe = NULL;
    if (r->in_kernel < r->entries)
        sqe = io_uring_get_sqe(&r->ring);
    if (!sqe) {
        fifo_push(r, q);
        return;
    }
    prep(sqe, q);
    r->in_kernel++;
    flush(r);
}

static void complete(struct uring *r, struct uring_req *q, int res)
{
    r->inflight--;
    q->cb(res, q->arg);
    free(q);
}

/* Moves queued requests to the kernel while there is room. */
static void drain_fifo(struct uring *r)
{
    while (r->q_head && r->in_kernel < r->entries) {
        submit_one(r, fifo_pop(r));
    }
}

/* Largest transfer submitted at once: the SQE length field is 32 bits. */
#define URING_MAX_CHUNK (1u << 30)

static void handle_cqe(struct uring *r, struct uring_req *q, int res)
{
    r->in_kernel--;
    if (res == -EINTR || res == -EAGAIN) {
        submit_one(r, q);
        return;
    }
    if (res < 0 || q->op == OP_FDATASYNC) {
        complete(r, q, res < 0 ? res : 0);
        return;
    }
    if (res == 0) {
        /* End of file for a read; a write that makes no progress is an error. */
        complete(r, q, q->op == OP_READ ? (int)q->done : -EIO);
        return;
    }
    q->done += (size_t)res;
    if (q->done >= q->len) {
        complete(r, q, (int)q->done);
        return;
    }
    submit_one(r, q);
}

/* Reaps every available completion and refills the kernel from the FIFO.
 * Returns the number of completions handled. */
static unsigned reap(struct uring *r)
{
    unsigned n = 0;
    struct io_uring_cqe *cqe;
    while (io_uring_peek_cqe(&r->ring, &cqe) == 0) {
        struct uring_req *q = io_uring_cqe_get_data(cqe);
        int res = cqe->res;
        io_uring_cqe_seen(&r->ring, cqe);
        handle_cqe(r, q, res);
        n++;
    }
    drain_fifo(r);
    flush(r);
    return n;
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    struct uring *r = h->data;
    uint64_t v;
    /* Clear the counter first: a completion posted after this read will make
     * the eventfd readable again, so none is missed. */
    while (read(r->efd, &v, sizeof(v)) < 0 && errno == EINTR)
        ;
    while (reap(r) > 0)
        ;
}

static void on_closed(uv_handle_t *h)
{
    struct uring *r = h->data;
    io_uring_queue_exit(&r->ring);
    close(r->efd);
    free(r);
}

int uring_init(uv_loop_t *loop, unsigned entries, struct uring **out)
{
    if (entries == 0)
        return -EINVAL;
    struct uring *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->loop = loop;
    r->efd = -1;
    int rc = io_uring_queue_init(entries, &r->ring, 0);
    if (rc < 0) {
        free(r);
        return rc;
    }
    r->entries = r->ring.sq.ring_entries;
    r->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (r->efd < 0) {
        rc = -errno;
        goto err;
    }
    rc = io_uring_register_eventfd(&r->ring, r->efd);
    if (rc < 0)
        goto err;
    rc = uv_poll_init(loop, &r->poll, r->efd);
    if (rc < 0)
        goto err;
    r->poll.data = r;
    rc = uv_poll_start(&r->poll, UV_READABLE, on_poll);
    if (rc < 0) {
        /* The handle exists now: the loop frees everything when it closes. */
        r->closing = 1;
        uv_close((uv_handle_t *)&r->poll, on_closed);
        return rc;
    }
    *out = r;
    return 0;
err:
    if (r->efd >= 0)
        close(r->efd);
    io_uring_queue_exit(&r->ring);
    free(r);
    return rc;
}

void uring_close(struct uring *r)
{
    if (!r || r->closing)
        return;
    r->closing = 1;
    /* Wait here for what the kernel still holds: buffers of in-flight
     * requests must not be released under the kernel's feet. */
    while (r->inflight > 0) {
        drain_fifo(r);
        flush(r);
        struct io_uring_cqe *cqe;
        int rc = io_uring_wait_cqe(&r->ring, &cqe);
        if (rc == -EINTR)
            continue;
        if (rc < 0) {
            log_error("uring: waiting for %u requests failed: %s", r->inflight, strerror(-rc));
            break;
        }
        reap(r);
    }
    uv_poll_stop(&r->poll);
    uv_close((uv_handle_t *)&r->poll, on_closed);
}

static int queue(struct uring *r, enum uring_op op, int fd, void *buf, size_t len, uint64_t off,
                 uring_cb cb, void *arg)
{
    if (!r || !cb || fd < 0 || (op != OP_FDATASYNC && !buf && len > 0))
        return -EINVAL;
    if (r->closing)
        return -ECANCELED;
    if (len > URING_MAX_CHUNK || off > INT64_MAX - len)
        return -EINVAL;
    struct uring_req *q = calloc(1, sizeof(*q));
    if (!q)
        return -ENOMEM;
    q->op = op;
    q->fd = fd;
    q->buf = buf;
    q->len = len;
    q->off = off;
    q->cb = cb;
    q->arg = arg;
    r->inflight++;
    submit_one(r, q);
    return 0;
}

int uring_read(struct uring *r, int fd, void *buf, size_t len, uint64_t off, uring_cb cb,
               void *arg)
{
    return queue(r, OP_READ, fd, buf, len, off, cb, arg);
}

int uring_write(struct uring *r, int fd, const void *buf, size_t len, uint64_t off, uring_cb cb,
                void *arg)
{
    return queue(r, OP_WRITE, fd, (void *)buf, len, off, cb, arg);
}

int uring_fdatasync(struct uring *r, int fd, uring_cb cb, void *arg)
{
    return queue(r, OP_FDATASYNC, fd, NULL, 0, 0, cb, arg);
}

unsigned uring_inflight(const struct uring *r)
{
    return r ? r->inflight : 0;
}

/* The private ring of the synchronous calls: created on first use, kept for
 * the life of the process, serialised by a mutex. */
static struct io_uring sync_ring;
static int sync_ready;
static pthread_mutex_t sync_lock = PTHREAD_MUTEX_INITIALIZER;

/* Runs one prepared request on the private ring and returns its result.
 * Caller holds sync_lock. */
static int sync_run(struct uring_req *q)
{
    if (!sync_ready) {
        int rc = io_uring_queue_init(URING_SYNC_ENTRIES, &sync_ring, 0);
        if (rc < 0)
            return rc;
        sync_ready = 1;
    }
    for (;;) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(&sync_ring);
        if (!sqe)
            return -EBUSY;
        prep(sqe, q);
        int rc = io_uring_submit_and_wait(&sync_ring, 1);
        if (rc < 0 && rc != -EINTR)
            return rc;
        struct io_uring_cqe *cqe;
        do
            rc = io_uring_wait_cqe(&sync_ring, &cqe);
        while (rc == -EINTR);
        if (rc < 0)
            return rc;
        int res = cqe->res;
        io_uring_cqe_seen(&sync_ring, cqe);
        if (res == -EINTR || res == -EAGAIN)
            continue;
        return res;
    }
}

static ssize_t sync_rw(enum uring_op op, int fd, void *buf, size_t len, uint64_t off)
{
    if (fd < 0 || (!buf && len > 0) || off > INT64_MAX - len)
        return -EINVAL;
    struct uring_req q = {.op = op, .fd = fd, .buf = buf, .off = off};
    ssize_t ret = 0;
    pthread_mutex_lock(&sync_lock);
    while (q.done < len) {
        size_t want = len - q.done;
        q.len = q.done + (want > URING_MAX_CHUNK ? URING_MAX_CHUNK : want);
        int res = sync_run(&q);
        if (res < 0) {
            ret = res;
            break;
        }
        if (res == 0) {
            if (op == OP_WRITE)
                ret = -EIO;
            break;
        }
        q.done += (size_t)res;
    }
    pthread_mutex_unlock(&sync_lock);
    return ret < 0 ? ret : (ssize_t)q.done;
}

ssize_t uring_pread_sync(int fd, void *buf, size_t len, uint64_t off)
{
    return sync_rw(OP_READ, fd, buf, len, off);
}

ssize_t uring_pwrite_sync(int fd, const void *buf, size_t len, uint64_t off)
{
    return sync_rw(OP_WRITE, fd, (void *)buf, len, off);
}

int uring_fdatasync_sync(int fd)
{
    if (fd < 0)
        return -EINVAL;
    struct uring_req q = {.op = OP_FDATASYNC, .fd = fd};
    pthread_mutex_lock(&sync_lock);
    int res = sync_run(&q);
    pthread_mutex_unlock(&sync_lock);
    return res < 0 ? res : 0;
}
