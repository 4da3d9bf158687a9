/* fsutil.h - crash-safe small-file helpers shared by both servers and the
 * imgstore CLI (get -o).
 *
 * Every persistent small file (ids, high-water marks, settings) is written
 * with fs_write_atomic: temp file -> fsync -> rename -> fsync of the folder,
 * so a crash leaves either the old or the new content, never a torn one. */
#ifndef IMG_FSUTIL_H
#define IMG_FSUTIL_H

#include <stddef.h>

/* Replaces `path` with `len` bytes of `data` atomically and durably.
 * Returns 0 or a negative errno; on failure the old file is untouched. */
int fs_write_atomic(const char *path, const void *data, size_t len);

/* Writes all `len` bytes of `data` to fd, retrying short writes and EINTR.
 * Returns 0, a negative errno, or -EIO when write(2) wrote nothing. */
int fs_write_full(int fd, const void *data, size_t len);

/* Reads the whole of `path` (at most `max` bytes) into a malloc'd buffer that
 * the caller frees; a NUL is appended (not counted in *len). Returns 0,
 * -ENOENT when missing, -EFBIG when larger than max, or a negative errno. */
int fs_read_all(const char *path, size_t max, char **out, size_t *len);

/* Creates `path` and its parents (mode 0755). Returns 0 or a negative errno. */
int fs_mkdirs(const char *path);

/* fsyncs the folder `dir` so that entries created or renamed in it are
 * durable. Returns 0 or a negative errno. */
int fs_sync_dir(const char *dir);

/* Takes an exclusive, non-blocking lock on `dir`/LOCK, so two processes cannot
 * share a data folder. On success *fd holds the lock until closed (or the
 * process exits). Returns 0, IMG_ELOCKED when held elsewhere, or -errno. */
int fs_lock_dir(const char *dir, int *fd);

#endif
