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

#include "base/log.h"

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
    int background;         /* IOSQE_ASYNC: never run inline in the loop's thread */
    struct uring_req *next; /* FIFO link */
#ifdef IMG_FAULT_FS
    struct faultfs_undo *undo; /* OP_WRITE: what it overwrites */
    uint64_t sync_id;          /* OP_FDATASYNC: the writes it covers */
#endif
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

#ifdef IMG_FAULT_FS
/* ---- power-loss simulation (test build only: make chaos-powercut) --------
 *
 * Built only with -DIMG_FAULT_FS; the production build has none of this.
 * Before every block-file write goes out, the bytes it will overwrite (and
 * the file size) are saved in an undo log. A write that has completed is
 * covered by the next fdatasync submitted on the same file; when that
 * fdatasync completes, the write's undo record is dropped. SIGUSR2 is a
 * power cut: a helper thread applies every remaining undo record, newest
 * first (so the file holds only what a completed fdatasync covered), and
 * the process ends at once with _exit(FAULTFS_EXIT). Index files (plain
 * write, never synced) and files synced outside this layer are not
 * simulated. */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>

#define FAULTFS_EXIT 137

struct faultfs_undo {
    dev_t dev;
    ino_t ino;
    char path[256];
    uint64_t off;
    size_t len;      /* bytes saved in old (the part below old_size) */
    uint64_t old_size;
    int completed;   /* the write finished (a later fdatasync covers it) */
    uint64_t sync_id; /* the fdatasync covering it, 0 when none yet */
    uint8_t *old;
    struct faultfs_undo *prev; /* older record */
};

static pthread_mutex_t faultfs_lock = PTHREAD_MUTEX_INITIALIZER;
static struct faultfs_undo *faultfs_newest;
static uint64_t faultfs_next_sync = 1;

static struct faultfs_undo *faultfs_before_write(int fd, size_t len, uint64_t off)
{
    struct stat st;
    char link[64];
    struct faultfs_undo *u = calloc(1, sizeof(*u));
    if (!u || fstat(fd, &st) < 0) {
        free(u);
        return NULL;
    }
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, u->path, sizeof(u->path) - 1);
    u->path[n > 0 ? n : 0] = '\0';
    u->dev = st.st_dev;
    u->ino = st.st_ino;
    u->off = off;
    u->old_size = (uint64_t)st.st_size;
    u->len = off >= u->old_size ? 0 : (size_t)(u->old_size - off < len ? u->old_size - off : len);
    u->old = malloc(u->len ? u->len : 1);
    if (u->len && (!u->old || pread(fd, u->old, u->len, (off_t)off) != (ssize_t)u->len))
        u->len = 0;
    pthread_mutex_lock(&faultfs_lock);
    u->prev = faultfs_newest;
    faultfs_newest = u;
    pthread_mutex_unlock(&faultfs_lock);
    return u;
}

static void faultfs_write_done(struct faultfs_undo *u, int ok)
{
    if (!u)
        return;
    pthread_mutex_lock(&faultfs_lock);
    u->completed = ok; /* a failed write stays undoable: it may have landed in part */
    pthread_mutex_unlock(&faultfs_lock);
}

/* Marks the completed writes of fd's file as covered by a new fdatasync. */
static uint64_t faultfs_sync_submit(int fd)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return 0;
    pthread_mutex_lock(&faultfs_lock);
    uint64_t id = faultfs_next_sync++;
    for (struct faultfs_undo *u = faultfs_newest; u; u = u->prev)
        if (u->completed && !u->sync_id && u->dev == st.st_dev && u->ino == st.st_ino)
            u->sync_id = id;
    pthread_mutex_unlock(&faultfs_lock);
    return id;
}

/* The fdatasync `id` completed: its writes are durable (ok), or not. */
static void faultfs_sync_done(uint64_t id, int ok)
{
    pthread_mutex_lock(&faultfs_lock);
    struct faultfs_undo **pp = &faultfs_newest;
    while (*pp) {
        struct faultfs_undo *u = *pp;
        if (u->sync_id == id) {
            if (ok) {
                *pp = u->prev;
                free(u->old);
                free(u);
                continue;
            }
            u->sync_id = 0;
        }
        pp = &u->prev;
    }
    pthread_mutex_unlock(&faultfs_lock);
}

static void faultfs_undo_one(const struct faultfs_undo *u)
{
    struct stat st;
    int fd = open(u->path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return; /* renamed or removed since: nothing of it to undo */
    if (fstat(fd, &st) == 0 && st.st_dev == u->dev && st.st_ino == u->ino) {
        if (u->len && pwrite(fd, u->old, u->len, (off_t)u->off) < 0)
            perror("faultfs: pwrite");
        if ((uint64_t)st.st_size > u->old_size && ftruncate(fd, (off_t)u->old_size) < 0)
            perror("faultfs: ftruncate");
    }
    close(fd);
}

static void *faultfs_watch(void *arg)
{
    sigset_t *set = arg;
    int sig;
    while (sigwait(set, &sig) != 0)
        ;
    pthread_mutex_lock(&faultfs_lock); /* never released: the process ends */
    unsigned n = 0;
    for (const struct faultfs_undo *u = faultfs_newest; u; u = u->prev, n++)
        faultfs_undo_one(u);
    fprintf(stderr, "faultfs: power cut: %u unsynced block-file writes thrown away\n", n);
    _exit(FAULTFS_EXIT);
    return NULL;
}

__attribute__((constructor)) static void faultfs_init(void)
{
    static sigset_t set;
    pthread_t t;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* inherited by every later thread */
    if (pthread_create(&t, NULL, faultfs_watch, &set) == 0)
        pthread_detach(t);
}
#endif

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
    if (q->background)
        io_uring_sqe_set_flags(sqe, IOSQE_ASYNC);
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
#ifdef IMG_FAULT_FS
    if (q->op == OP_WRITE)
        faultfs_write_done(q->undo, res >= 0);
    else if (q->op == OP_FDATASYNC)
        faultfs_sync_done(q->sync_id, res == 0);
#endif
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
                 int background, uring_cb cb, void *arg)
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
    q->background = background;
#ifdef IMG_FAULT_FS
    if (op == OP_WRITE)
        q->undo = faultfs_before_write(fd, len, off);
    else if (op == OP_FDATASYNC)
        q->sync_id = faultfs_sync_submit(fd);
#endif
    r->inflight++;
    submit_one(r, q);
    return 0;
}

int uring_read(struct uring *r, int fd, void *buf, size_t len, uint64_t off, uring_cb cb,
               void *arg)
{
    return queue(r, OP_READ, fd, buf, len, off, 0, cb, arg);
}

int uring_write(struct uring *r, int fd, const void *buf, size_t len, uint64_t off, uring_cb cb,
                void *arg)
{
    return queue(r, OP_WRITE, fd, (void *)buf, len, off, 0, cb, arg);
}

int uring_read_bg(struct uring *r, int fd, void *buf, size_t len, uint64_t off, uring_cb cb,
                  void *arg)
{
    return queue(r, OP_READ, fd, buf, len, off, 1, cb, arg);
}

int uring_write_bg(struct uring *r, int fd, const void *buf, size_t len, uint64_t off,
                   uring_cb cb, void *arg)
{
    return queue(r, OP_WRITE, fd, (void *)buf, len, off, 1, cb, arg);
}

int uring_fdatasync(struct uring *r, int fd, uring_cb cb, void *arg)
{
    return queue(r, OP_FDATASYNC, fd, NULL, 0, 0, 0, cb, arg);
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
#ifdef IMG_FAULT_FS
    struct faultfs_undo *undo = op == OP_WRITE ? faultfs_before_write(fd, len, off) : NULL;
#endif
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
#ifdef IMG_FAULT_FS
    faultfs_write_done(undo, ret >= 0);
#endif
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
#ifdef IMG_FAULT_FS
    uint64_t sync_id = faultfs_sync_submit(fd);
#endif
    pthread_mutex_lock(&sync_lock);
    int res = sync_run(&q);
    pthread_mutex_unlock(&sync_lock);
#ifdef IMG_FAULT_FS
    faultfs_sync_done(sync_id, res == 0);
#endif
    return res < 0 ? res : 0;
}
