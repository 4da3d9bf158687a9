/* uring.h - io_uring driven from the libuv loop.
 *
 * One ring per dataserver process. Its completion eventfd is watched by a
 * uv_poll_t on the loop, so submitting and completing I/O never blocks the
 * loop. Short reads and writes are continued internally: a callback sees
 * either the full length or an error. If the submission queue is full,
 * requests wait in an internal FIFO and are submitted as slots free up.
 *
 * Ownership: the caller owns buffers and must keep them, and the fd, valid
 * and untouched until the callback runs. If a function returns an error, the
 * callback is never called. */
#ifndef DS_URING_H
#define DS_URING_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct uring;

/* Called once per request with res = bytes transferred (the full length for
 * reads/writes; a read hitting end of file returns the bytes that existed)
 * or 0 for fdatasync, or a negative errno. */
typedef void (*uring_cb)(int res, void *arg);

/* Creates the ring with `entries` slots on `loop`. Returns 0 or -errno. */
int uring_init(uv_loop_t *loop, unsigned entries, struct uring **out);

/* Stops watching and frees the ring once every in-flight request completed
 * (their callbacks still run). NULL-safe. It waits for the kernel right here,
 * running those callbacks before it returns; requests made after the call
 * fail with -ECANCELED. The memory is released by the loop (uv_close), so
 * run the loop once more before uv_loop_close. */
void uring_close(struct uring *r);

int uring_read(struct uring *r, int fd, void *buf, size_t len, uint64_t off, uring_cb cb,
               void *arg);
int uring_write(struct uring *r, int fd, const void *buf, size_t len, uint64_t off, uring_cb cb,
                void *arg);
int uring_fdatasync(struct uring *r, int fd, uring_cb cb, void *arg);

/* Background variants for bulk transfers (block copies): submitted with
 * IOSQE_ASYNC, so the kernel runs them in its io-wq workers, never inline
 * in the loop's thread (a 1 MiB page-cache copy there delays every request
 * queued behind it). */
int uring_read_bg(struct uring *r, int fd, void *buf, size_t len, uint64_t off, uring_cb cb,
                  void *arg);
int uring_write_bg(struct uring *r, int fd, const void *buf, size_t len, uint64_t off,
                   uring_cb cb, void *arg);

/* Requests submitted and not yet completed. */
unsigned uring_inflight(const struct uring *r);

/* Synchronous variants for startup (recovery scans, block creation) before
 * the loop serves anything; they use a private ring of their own. Return the
 * byte count (pread/pwrite semantics, full length unless EOF) or -errno. */
ssize_t uring_pread_sync(int fd, void *buf, size_t len, uint64_t off);
ssize_t uring_pwrite_sync(int fd, const void *buf, size_t len, uint64_t off);
/* fdatasync through the same private ring. Returns 0 or -errno. */
int uring_fdatasync_sync(int fd);

#endif
