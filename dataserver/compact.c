/* compact.c - the rewrite of a compaction, in the storage engine
 * (compact.h): the deterministic plan, the output's index and CRC32C, the
 * check of each live record, and the synchronous path.
 * May call only the engine (needle, index, uring, block). */
#include "dataserver/compact.h"

#include "base/array.h"
#include "base/crc32c.h"
#include "base/err.h"
#include "dataserver/uring.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- the deterministic output ------------------------------------------ */

void compact_out_init(struct compact_out *o)
{
    memset(o, 0, sizeof(*o));
    index_init(&o->ix);
}

void compact_out_free(struct compact_out *o)
{
    index_free(&o->ix);
    free(o->idx);
}

/* Accounts one record of `len` bytes (header h) written at o->off. */
int compact_out_add(struct compact_out *o, const uint8_t *rec, size_t len,
                    const struct needle_header *h)
{
    int rc = ARRAY_RESERVE(o->idx, o->idx_cap, o->idx_len + INDEX_ENTRY_SIZE,
                           256 * INDEX_ENTRY_SIZE);
    if (rc != 0)
        return rc;
    rc = index_put(&o->ix, h->seq, o->off, h->size);
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
int compact_check_record(const uint8_t *rec, size_t len, uint32_t seq, struct needle_header *h)
{
    if (len < NEEDLE_HEADER_SIZE || needle_decode_header(rec, h) != 0 || h->seq != seq ||
        (h->flags & NEEDLE_FLAG_TOMBSTONE) || needle_record_size(h->size) != len ||
        crc32c(0, rec + NEEDLE_HEADER_SIZE, h->size) != h->data_crc)
        return IMG_ECORRUPT;
    return 0;
}

int compact_plan(const struct block *b, uint32_t **seqs, size_t *n, uint64_t *new_size)
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

void compact_temp_path(const struct block *b, char *out, size_t n)
{
    /* block_alloc keeps room for any suffix after the path */
    size_t len = strnlen(b->path, sizeof(b->path));
    if (len + sizeof(COMPACT_SUFFIX) <= n) {
        memcpy(out, b->path, len);
        memcpy(out + len, COMPACT_SUFFIX, sizeof(COMPACT_SUFFIX));
    } else if (n) {
        out[0] = '\0';
    }
}

/* ---- synchronous path --------------------------------------------------- */

static int sync_copy(struct block *b, int fd, const uint32_t *seqs, size_t n,
                     struct compact_out *o)
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
            rc = compact_check_record(rec, len, seqs[i], &h);
        if (rc == 0 && uring_pwrite_sync(fd, rec, len, o->off) != (ssize_t)len)
            rc = -EIO;
        if (rc == 0)
            rc = compact_out_add(o, rec, len, &h);
        free(rec);
        if (rc != 0)
            return rc;
    }
    return uring_fdatasync_sync(fd);
}

int compact_sync(struct block *b, uint32_t *crc)
{
    char tmp[sizeof(b->path) + 32];
    uint32_t *seqs = NULL;
    size_t n = 0;
    uint64_t size;
    struct compact_out o;
    compact_out_init(&o);
    int rc = compact_plan(b, &seqs, &n, &size);
    if (rc != 0)
        return rc;
    compact_temp_path(b, tmp, sizeof(tmp));
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
    compact_out_free(&o);
    return rc;
}
