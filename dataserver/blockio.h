/* blockio.h - durable appends and reads of block records through io_uring.
 *
 * Group commit: blockio_append writes the record at its offset; once the
 * write completes the record waits for the block's next fdatasync. At most
 * one fdatasync per block is in flight; it covers every write completed
 * before it was submitted, and its completion acknowledges all of them at
 * once. Callbacks run in offset order per block. After an I/O error the
 * block is sealed and every waiting append fails with that error.
 *
 * Ownership: `rec` and `buf` belong to the caller and must stay valid until
 * the callback. If a function returns an error, the callback never runs. */
#ifndef DS_BLOCKIO_H
#define DS_BLOCKIO_H

#include "dataserver/block.h"
#include "dataserver/uring.h"

#include <stddef.h>
#include <stdint.h>

/* status: 0 when durable (append) or read in full (read), else an error. */
typedef void (*blockio_cb)(int status, void *arg);

/* Writes `len` bytes of `rec` at `offset` (reserved before with a
 * block_reserve*) and calls cb when the bytes are durable. The caller calls
 * block_commit after a successful callback. */
int blockio_append(struct uring *r, struct block *b, const void *rec, size_t len,
                   uint64_t offset, blockio_cb cb, void *arg);

/* Reads `len` bytes at `offset` into buf; a short read (file shorter than
 * asked) completes with IMG_ECORRUPT. */
int blockio_read(struct uring *r, struct block *b, void *buf, size_t len, uint64_t offset,
                 blockio_cb cb, void *arg);
/* The same for bulk reads of background work (a block copy's chunks):
 * never run inline in the loop's thread (uring_read_bg). */
int blockio_read_bg(struct uring *r, struct block *b, void *buf, size_t len, uint64_t offset,
                    blockio_cb cb, void *arg);

#define BLOCKIO_MAX_DISKS 16 /* data folders tracked by blockio_disk_error */

/* Returns the first system error (negative errno other than -ENOSPC) a read
 * or write of a block on data folder `disk` (block.disk) failed with, or 0.
 * ds_disk.c marks the folder failed when it is set. */
int blockio_disk_error(int disk);

/* Releases the group-commit state of `b` (call before block_close, when no
 * append is in flight). NULL-safe. */
void blockio_release(struct block *b);

#endif
