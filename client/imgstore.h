/* imgstore.h - the imgstore client library.
 *
 * Upload, fetch, delete and inspect images stored in an imgstore cluster.
 * A handle is thread-safe: any number of threads may call any function on the
 * same handle at once. It caches writable blocks and block locations, reuses
 * connections to the nameserver and dataservers, retries a failed upload on
 * another writable block and a failed read on another replica, and gives up
 * with IMGSTORE_ETIMEDOUT when the configured time has passed.
 *
 * Errors: every function returns 0 on success or a negative code, which is
 * either a negative errno or one of the IMGSTORE_E* values below (identical
 * to the server-side codes of base/err.h); imgstore_strerror() describes it.
 *
 * Link with `pkg-config --cflags --libs imgstore`: build/lib/pkgconfig in the
 * build folder, PREFIX/lib/pkgconfig after `make install`. The shared library
 * is libimgstore.so.MAJOR.MINOR with the SONAME libimgstore.so.MAJOR; it
 * exports the functions declared here and nothing else. */
#ifndef IMGSTORE_H
#define IMGSTORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The version of this header. The library's MAJOR is its SONAME's number
 * (libimgstore.so.1): it changes only when a program built against an older
 * header could break; MINOR grows with additions. */
#define IMGSTORE_VERSION_MAJOR 1
#define IMGSTORE_VERSION_MINOR 0
#define IMGSTORE_VERSION_PATCH 0
#define IMGSTORE_VERSION "1.0.0"

#define IMGSTORE_NAME_MAX 32 /* a name with its NUL; names are 21 chars */
#define IMGSTORE_MAX_REPLICAS 3
#define IMGSTORE_ADDR_MAX 64

#define IMGSTORE_ENOTFOUND (-1000)
#define IMGSTORE_EDELETED (-1001)
#define IMGSTORE_ECORRUPT (-1002)
#define IMGSTORE_ENOBLOCK (-1006)
#define IMGSTORE_EPROTO (-1007)
#define IMGSTORE_EBADNAME (-1008)
#define IMGSTORE_ETOOBIG (-1009)
#define IMGSTORE_ETIMEDOUT (-1013)
#define IMGSTORE_EUNAVAIL (-1014)
#define IMGSTORE_ECONN (-1020)
#define IMGSTORE_EINVAL (-1021)
#define IMGSTORE_EBUSY (-1030) /* a dataserver at its receive budget (retried until the
                                * deadline; returned when time ran out) */
#define IMGSTORE_EAUTH (-1024)    /* no key, a wrong key or a revoked one */
#define IMGSTORE_EPERM (-1025)    /* the key lacks the role for this request */
#define IMGSTORE_EKEYFILE (-1026) /* the key file is unusable (mode, type, format) */
#define IMGSTORE_ENOTLEADER (-1035) /* no nameserver of the list leads (an election is under
                                     * way, or the list names standbys only) */

typedef struct imgstore imgstore_t;

struct imgstore_opts {
    int timeout_ms;   /* whole-operation deadline, default 10000 */
    int io_timeout_ms; /* one request to one server, default 3000 */
};

/* Creates a handle for the cluster whose nameserver is at `ns_addr`
 * ("HOST:PORT"), or whose nameservers are at "HOST:PORT,HOST:PORT,..." (at
 * most 8, no spaces, no duplicates: a leader and its standbys; a request
 * goes to the one that answered last and on to the others when it cannot be
 * reached or is not the leader). opts may be NULL for defaults. No connection is made yet.
 * When the environment variable IMGSTORE_KEY_FILE names a key file, the
 * handle uses that key (see imgstore_set_key_file). Returns 0 with *out
 * (free with imgstore_close), IMGSTORE_EINVAL, or IMGSTORE_EKEYFILE / a
 * negative errno when IMGSTORE_KEY_FILE cannot be used. */
int imgstore_open(const char *ns_addr, const struct imgstore_opts *opts, imgstore_t **out);

/* Uploads, deletes and admin changes need a key (docs/security.md); reads
 * never do. A key file holds one line `NAME SECRET` (or `ROLE NAME
 * SECRET`), SECRET 32 to 128 hex digits, and must be a regular file that
 * neither group nor others may read or write (chmod 600).
 *
 * imgstore_key_file_check reads the key file `path` without a handle:
 * returns 0, or IMGSTORE_EKEYFILE / a negative errno with a one-line reason
 * naming the file in err (errlen bytes; err may be NULL). */
int imgstore_key_file_check(const char *path, char *err, size_t errlen);

/* Makes h authenticate with the key in `path` (NULL: no key), replacing the
 * one from IMGSTORE_KEY_FILE. Call before any other call on h runs. Same
 * returns as imgstore_key_file_check. */
int imgstore_set_key_file(imgstore_t *h, const char *path, char *err, size_t errlen);

/* Closes every connection and frees the handle. No call on it may be running.
 * NULL-safe. */
void imgstore_close(imgstore_t *h);

/* Stores `len` bytes (1 byte to 32 MiB) with the cluster's replication.
 * `mime` is a type like "image/jpeg", or NULL to guess from the bytes; bytes
 * that carry the signature of another image format (JPEG, PNG, GIF, WebP,
 * AVIF) are stored with that format's type instead (imgstore_stat shows
 * it). On success the NUL-terminated file name is written to name_out. The
 * call returns only after every replica has the file durable on disk.
 * Returns IMGSTORE_EINVAL for an empty file (len 0) or a NULL argument,
 * IMGSTORE_ETOOBIG past 32 MiB. */
int imgstore_put(imgstore_t *h, const void *data, size_t len, const char *mime,
                 char name_out[IMGSTORE_NAME_MAX]);

/* Fetches a file by name (with or without ".ext"). On success *data is a
 * malloc'd buffer of *len bytes owned by the caller (free with imgstore_free).
 * Returns IMGSTORE_ENOTFOUND for an unknown name or wrong cookie,
 * IMGSTORE_EDELETED for a deleted file, IMGSTORE_EBADNAME for a malformed
 * name. */
int imgstore_get(imgstore_t *h, const char *name, void **data, size_t *len);

/* Like imgstore_get but reads only from the dataserver at `ds_addr`, with no
 * retry elsewhere (for checks and tools). The server answers even when its
 * view of the block has not been confirmed by a nameserver lately (the read
 * asks with any_view; docs/dataserver.md, "View lease"). */
int imgstore_get_from(imgstore_t *h, const char *name, const char *ds_addr, void **data,
                      size_t *len);

/* Frees a buffer returned by the library. NULL-safe. */
void imgstore_free(void *p);

/* Deletes a file on every replica. Deleting a file that is already deleted
 * succeeds, so a caller may retry blindly. Passing failures (a replica
 * restarting, a primary that moved) are retried until the handle's
 * timeout. Returns 0, IMGSTORE_ENOTFOUND, or an error when no replica could
 * record it in time (the delete may then be retried). */
int imgstore_unlink(imgstore_t *h, const char *name);

/* imgstore_unlink, and *was_deleted (may be NULL) says whether the file had
 * been deleted before this call (1) or this call deleted it (0). */
int imgstore_unlink2(imgstore_t *h, const char *name, int *was_deleted);

struct imgstore_stat {
    uint64_t block_id;
    uint32_t seq;
    uint32_t size;
    uint32_t crc32c;
    uint32_t created; /* unix seconds */
    uint64_t offset;  /* of the record in the block file */
    char mime[64];
    int nreplicas;
    char replicas[IMGSTORE_MAX_REPLICAS][IMGSTORE_ADDR_MAX]; /* native HOST:PORT */
};

/* Fills *st for a file. Same errors as imgstore_get. */
int imgstore_stat(imgstore_t *h, const char *name, struct imgstore_stat *st);

/* Returns a static description of an error code. Never NULL. */
const char *imgstore_strerror(int err);

/* Returns the version of the library actually loaded, "MAJOR.MINOR.PATCH"
 * (static; compare with IMGSTORE_VERSION, the header's). Never NULL. */
const char *imgstore_version(void);

#ifdef __cplusplus
}
#endif

#endif
