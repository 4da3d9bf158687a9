/* block.c - one block: its append-only block file, its index and its meta.
 *
 * The block file is the truth. block_open checks the superblock, loads the
 * persisted index as far as it is believable, then scans the block file from
 * the end of the last indexed record and repairs what a crash can leave: a
 * torn final record is cut off, records the index missed are indexed, and the
 * index file is brought back in line. Every byte read from disk is treated as
 * hostile: sizes and offsets are bounds-checked before use, and no value
 * read can make us allocate more than the block's size allows.
 *
 * All block-file I/O goes through io_uring (the private synchronous ring at
 * open and create; blockio.c for the loop). The index file is not the block
 * file: it is appended with plain write(2), never fsync'd, and truncated to
 * nothing whenever a write to it fails, so the next open rebuilds it. A
 * sealed block's RAM index (packed whole by index_seal) is also saved
 * (<id>.idz, index_pack.h), installed at open instead of reading the
 * entries it stands for, and dropped at the first doubt.
 *
 * The meta file (<id>.meta: roles, replica set, flags) is block_meta.c's.
 */
#include "dataserver/block.h"
#include "dataserver/block_int.h"
#include "base/le.h"

#include "base/array.h"
#include "base/crc32c.h"
#include "base/err.h"
#include "base/fsutil.h"
#include "base/log.h"
#include "dataserver/index_pack.h"
#include "dataserver/uring.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Superblock field offsets (drawn in block.h and docs/storage.md). */
#define SB_OFF_MAGIC 0
#define SB_MAGIC_LEN 8
#define SB_OFF_VERSION 8
#define SB_OFF_RESERVED 12
#define SB_OFF_ID 16
#define SB_OFF_MAX_SIZE 24
#define SB_OFF_ZERO 32
#define SB_OFF_CRC 60
#define SB_CRC_LEN 4

_Static_assert(sizeof(BLOCK_MAGIC) == SB_MAGIC_LEN, "block magic with its NUL fills 8 bytes");
_Static_assert(SB_OFF_CRC + SB_CRC_LEN == BLOCK_SUPER_SIZE, "superblock ends with its CRC");
_Static_assert(BLOCK_SUPER_SIZE % NEEDLE_ALIGN == 0, "records start aligned");
_Static_assert(BLOCK_SUPER_SIZE == INDEX_PACK_FIRST_OFF8 * NEEDLE_ALIGN, "packed index bound");
_Static_assert(BLOCK_MIN_SIZE > BLOCK_TOMBSTONE_RESERVE + BLOCK_SUPER_SIZE,
               "a block always has room for files and tombstones");

#define SCAN_CHUNK (1u << 20)     /* recovery reads the block file in 1 MiB pieces */
#define IDX_READ_ENTRIES 4096     /* index entries read at once at open */
#define IDX_LOAD_ENTRIES (1u << 18) /* load_index reads 3 MiB of entries at once */
#define PREALLOC_STEP (1u << 20)  /* disk space allocated ahead at a time */

static int block_prealloc(struct block *b, uint64_t need);

static uint64_t align_up(uint64_t v)
{
    return (v + NEEDLE_ALIGN - 1) & ~(uint64_t)(NEEDLE_ALIGN - 1);
}

static int size_valid(uint64_t max_size)
{
    return max_size >= BLOCK_MIN_SIZE && max_size <= BLOCK_MAX_SIZE &&
           max_size % NEEDLE_ALIGN == 0;
}

/* The largest seq a block of max_size can hold: every record takes at least
 * a header. Bounds what a hostile record can make the index allocate. */
static uint32_t seq_limit(const struct block *b)
{
    return (uint32_t)(b->max_size / NEEDLE_HEADER_SIZE);
}

void block_path_of(const struct block *b, const char *suffix, char *out, size_t n)
{
    snprintf(out, n, "%s%s", b->path, suffix);
}

/* ---- superblock ---- */

static void sb_encode(uint64_t id, uint64_t max_size, uint8_t *out)
{
    memset(out, 0, BLOCK_SUPER_SIZE);
    memcpy(out + SB_OFF_MAGIC, BLOCK_MAGIC, SB_MAGIC_LEN);
    le_put32(out + SB_OFF_VERSION, BLOCK_FORMAT_VERSION);
    le_put64(out + SB_OFF_ID, id);
    le_put64(out + SB_OFF_MAX_SIZE, max_size);
    le_put32(out + SB_OFF_CRC, crc32c(0, out, SB_OFF_CRC));
}

/* Checks a superblock read from disk for block `id`. Returns 0 with
 * *max_size, or IMG_EFORMAT. */
static int sb_check(const uint8_t *in, uint64_t id, uint64_t *max_size)
{
    if (memcmp(in + SB_OFF_MAGIC, BLOCK_MAGIC, SB_MAGIC_LEN) != 0)
        return IMG_EFORMAT;
    if (le_get32(in + SB_OFF_CRC) != crc32c(0, in, SB_OFF_CRC))
        return IMG_EFORMAT;
    if (le_get32(in + SB_OFF_VERSION) != BLOCK_FORMAT_VERSION || le_get32(in + SB_OFF_RESERVED) != 0)
        return IMG_EFORMAT;
    for (int i = SB_OFF_ZERO; i < SB_OFF_CRC; i++)
        if (in[i] != 0)
            return IMG_EFORMAT;
    if (le_get64(in + SB_OFF_ID) != id || !size_valid(le_get64(in + SB_OFF_MAX_SIZE)))
        return IMG_EFORMAT;
    *max_size = le_get64(in + SB_OFF_MAX_SIZE);
    return 0;
}

/* ---- index file ---- */

/* Gives up on the index file after a failed write: an empty file makes the
 * next open rebuild it from the block file, so no entry is ever missed. */
static void idx_abandon(struct block *b, int err)
{
    log_warn("block %016" PRIx64 ": index file write failed (%s); it will be rebuilt", b->id,
             img_strerror(err));
    if (ftruncate(b->idx_fd, 0) < 0)
        log_error("block %016" PRIx64 ": cannot truncate index file: %s", b->id,
                  strerror(errno));
}

static void idx_header(uint64_t id, uint8_t *out)
{
    memset(out, 0, INDEX_HEADER_SIZE);
    memcpy(out, INDEX_MAGIC, sizeof(INDEX_MAGIC));
    le_put64(out + sizeof(INDEX_MAGIC), id);
}

static int idx_reset(struct block *b)
{
    uint8_t hdr[INDEX_HEADER_SIZE];
    idx_header(b->id, hdr);
    if (ftruncate(b->idx_fd, 0) < 0)
        return -errno;
    return fs_write_full(b->idx_fd, hdr, sizeof(hdr));
}

/* ---- applying records to the RAM index ---- */

/* Applies one record (data or tombstone) to the RAM index and the deleted
 * byte count. Returns 0 or -ENOMEM / IMG_EINVAL from index_put. */
static int apply(struct block *b, uint32_t seq, uint64_t offset, uint32_t size, int tombstone)
{
    if (seq >= b->next_seq && seq < UINT32_MAX)
        b->next_seq = seq + 1;
    if (!tombstone)
        return index_put(&b->ix, seq, offset, size);
    uint64_t off;
    uint32_t sz;
    int deleted;
    if (index_get(&b->ix, seq, &off, &sz, &deleted) == 0 && !deleted) {
        index_delete(&b->ix, seq);
        b->deleted_bytes += needle_record_size(sz);
    }
    b->deleted_bytes += needle_record_size(0);
    return 0;
}

static void reset_ram(struct block *b)
{
    index_free(&b->ix);
    index_init(&b->ix);
    b->deleted_bytes = 0;
    b->next_seq = 1;
}

/* ---- recovery ---- */

/* A window on the block file used by the recovery scan. */
struct reader {
    int fd;
    uint64_t file_size;
    uint8_t *buf;
    size_t cap;
    uint64_t off; /* file offset of buf[0] */
    size_t len;   /* valid bytes in buf */
};

/* Makes [pos, pos + n) available in r->buf. Returns a pointer to pos, or
 * NULL with *err set (0 when the file ends before pos + n). */
static const uint8_t *reader_get(struct reader *r, uint64_t pos, size_t n, int *err)
{
    *err = 0;
    if (pos >= r->off && pos + n <= r->off + r->len)
        return r->buf + (pos - r->off);
    if (pos + n > r->file_size)
        return NULL;
    if (n > r->cap) {
        /* calloc, not realloc: the kernel fills it, and tools like valgrind
         * cannot see io_uring writes. n is at most one record, which
         * needle_decode_header bounded by NEEDLE_MAX_DATA. */
        size_t ncap = n > SCAN_CHUNK ? n : SCAN_CHUNK;
        uint8_t *nb = calloc(1, ncap);
        if (!nb) {
            *err = -ENOMEM;
            return NULL;
        }
        free(r->buf);
        r->buf = nb;
        r->cap = ncap;
        r->len = 0;
    }
    uint64_t want = r->file_size - pos < r->cap ? r->file_size - pos : r->cap;
    ssize_t got = uring_pread_sync(r->fd, r->buf, (size_t)want, pos);
    r->off = pos;
    r->len = got > 0 ? (size_t)got : 0;
    if (got < 0) {
        *err = (int)got;
        return NULL;
    }
    if ((size_t)got < n)
        return NULL;
    return r->buf;
}

/* ---- packed index (index_pack.h) ---- */

/* Removes <id>.idz; b->packed_entries = 0. */
static void packed_drop(struct block *b)
{
    char path[sizeof(b->path) + SUFFIX_MAX];
    block_path_of(b, ".idz", path, sizeof(path));
    if (unlink(path) == 0)
        log_info("block %016" PRIx64 ": packed index removed", b->id);
    b->packed_entries = 0;
}

/* Reads a believable <id>.idz (index_pack_load); removes a bad one. */
static void packed_load(struct block *b, uint64_t idx_size, uint64_t file_size,
                        uint8_t **entries, uint32_t *n, struct index *ix,
                        struct index_pack_meta *meta)
{
    char path[sizeof(b->path) + SUFFIX_MAX];
    block_path_of(b, ".idz", path, sizeof(path));
    int rc = index_pack_load(path, b->id, b->idx_fd, idx_size, seq_limit(b), file_size, entries, n,
                             ix, meta);
    if (rc != 0 && rc != -ENOENT) {
        log_warn("block %016" PRIx64 ": packed index unusable (%s); reading the index file",
                 b->id, img_strerror(rc));
        packed_drop(b);
    }
}

/* A sealed block's packed index (version 2: its RAM index, which recover
 * left standing for exactly the index file's entries), (re)written at open
 * (index_pack_write). */
static void packed_write(struct block *b)
{
    char path[sizeof(b->path) + SUFFIX_MAX];
    struct index_pack_meta m = {.tail = b->tail, .next_seq = b->next_seq,
                                .deleted_bytes = b->deleted_bytes};
    block_path_of(b, ".idz", path, sizeof(path));
    int rc = b->sealed ? index_pack_write(path, b->id, b->idx_fd, &b->ix, &m, &b->packed_entries)
                       : 0;
    if (rc != 0)
        log_warn("block %016" PRIx64 ": cannot write its packed index: %s", b->id,
                 img_strerror(rc));
}

/* Loads index entries while they are believable. Sets *scan_from to the end
 * of the last loaded record, *keep to the bytes of the index file to keep
 * (0: rewrite it) and *data_seq to the highest file seq loaded. Returns 0 or
 * -errno. */
static int load_index(struct block *b, uint64_t file_size, uint64_t *scan_from, uint64_t *keep,
                      uint32_t *data_seq)
{
    uint8_t hdr[INDEX_HEADER_SIZE], want[INDEX_HEADER_SIZE];
    uint64_t end = BLOCK_SUPER_SIZE, pos = INDEX_HEADER_SIZE, last_off = 0;
    uint32_t last_seq = 0, last_size = 0, last_data_seq = 0;
    int last_tomb = 0, stop = 0, damaged = 0;
    *scan_from = BLOCK_SUPER_SIZE;
    *keep = 0;
    *data_seq = 0;
    idx_header(b->id, want);
    ssize_t n = pread(b->idx_fd, hdr, INDEX_HEADER_SIZE, 0);
    if (n != INDEX_HEADER_SIZE || memcmp(hdr, want, INDEX_HEADER_SIZE) != 0)
        return 0;
    /* The RAM index packs itself as it fills (index.h): no sizing ahead. */
    struct stat st;
    uint64_t idx_size = 0;
    if (fstat(b->idx_fd, &st) == 0)
        idx_size = (uint64_t)st.st_size;
    uint8_t *buf = malloc((size_t)IDX_LOAD_ENTRIES * INDEX_ENTRY_SIZE);
    if (!buf)
        return -ENOMEM;
    /* The packed copy of the first entries, if believable, stands for them
     * (index_pack.h): version 1's entries go through the same checks below
     * (and the copy is then rewritten as version 2); version 2 is the RAM
     * index after them, and its last entry is checked like any other. */
    uint8_t *packed = NULL;
    uint32_t npacked = 0;
    struct index pix;
    struct index_pack_meta pm;
    index_init(&pix);
    packed_load(b, idx_size, file_size, &packed, &npacked, &pix, &pm);
    b->packed_entries = packed ? 0 : npacked;
    if (!packed && npacked) {
        index_free(&b->ix);
        b->ix = pix;
        b->next_seq = pm.next_seq;
        b->deleted_bytes = pm.deleted_bytes;
        last_data_seq = b->ix.max_seq;
        index_decode_entry(pm.last, &last_seq, &last_off, &last_size, &last_tomb);
        end = last_off + needle_record_size(last_size);
        pos += (uint64_t)npacked * INDEX_ENTRY_SIZE;
    }
    while (!stop) {
        const uint8_t *src = packed ? packed : buf;
        if (packed)
            n = (ssize_t)((size_t)npacked * INDEX_ENTRY_SIZE);
        else
            n = pread(b->idx_fd, buf, (size_t)IDX_LOAD_ENTRIES * INDEX_ENTRY_SIZE, (off_t)pos);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < INDEX_ENTRY_SIZE)
            break;
        for (size_t i = 0; i + INDEX_ENTRY_SIZE <= (size_t)n; i += INDEX_ENTRY_SIZE) {
            uint32_t seq, size;
            uint64_t off;
            int tomb;
            index_decode_entry(src + i, &seq, &off, &size, &tomb);
            if (seq == 0 || seq > seq_limit(b) || off < end || size > NEEDLE_MAX_DATA ||
                (tomb && size != 0) || off + needle_record_size(size) > file_size ||
                (!tomb && seq <= last_data_seq)) {
                /* Unbelievable. The last entries of an index may be torn by a
                 * crash (the records past them are scanned below); a bad
                 * entry with whole ones after it is damage, and what it
                 * says (where the next record starts, which seq is where)
                 * cannot be trusted: every record is found again by a scan
                 * of the block file. So is a data seq that does not grow
                 * (files take seqs in block-file order). */
                damaged = pos + 2 * INDEX_ENTRY_SIZE <= idx_size || (!tomb && seq <= last_data_seq);
                stop = 1;
                break;
            }
            if (!tomb)
                last_data_seq = seq;
            int rc = apply(b, seq, off, size, tomb);
            if (rc != 0) {
                free(packed);
                free(buf);
                return rc;
            }
            end = off + needle_record_size(size);
            last_off = off, last_seq = seq, last_size = size, last_tomb = tomb;
            pos += INDEX_ENTRY_SIZE;
        }
        free(packed);
        packed = NULL;
    }
    free(packed);
    free(buf);
    if (damaged || last_seq == 0 || stop)
        packed_drop(b); /* a doubt about the index: never the packed copy again */
    if (damaged) {
        log_warn("block %016" PRIx64 ": index damaged at entry %" PRIu64 "; rebuilding it from "
                 "the block file", b->id, (pos - INDEX_HEADER_SIZE) / INDEX_ENTRY_SIZE);
        reset_ram(b);
        return 0;
    }
    if (last_seq != 0) {
        /* The index is only believed if its last entry names the record
         * really found at that offset. */
        uint8_t hb[NEEDLE_HEADER_SIZE] = {0};
        struct needle_header h;
        if (uring_pread_sync(b->fd, hb, sizeof(hb), last_off) != (ssize_t)sizeof(hb) ||
            needle_decode_header(hb, &h) != 0 || h.seq != last_seq || h.size != last_size ||
            !(h.flags & NEEDLE_FLAG_TOMBSTONE) != !last_tomb) {
            log_warn("block %016" PRIx64 ": index does not match the block file; rebuilding",
                     b->id);
            packed_drop(b);
            reset_ram(b);
            return 0;
        }
    }
    *scan_from = end;
    *keep = pos;
    *data_seq = last_data_seq;
    return 0;
}

/* Growable list of index entries found by the scan, appended at the end. */
struct entries {
    uint8_t *buf;
    size_t len, cap;
};

static int entries_add(struct entries *e, uint32_t seq, uint64_t off, uint32_t size, int tomb)
{
    int rc = ARRAY_RESERVE(e->buf, e->cap, e->len + INDEX_ENTRY_SIZE,
                           INDEX_ENTRY_SIZE * IDX_READ_ENTRIES);
    if (rc != 0)
        return rc;
    index_encode_entry(seq, off, size, tomb, e->buf + e->len);
    e->len += INDEX_ENTRY_SIZE;
    return 0;
}

#define SCAN_MISMATCH 1 /* scan's answer: the loaded index contradicts the file */

/* Scans records from `pos` to the end of the file (see block.h, Recovery),
 * collecting index entries for what it finds. Sets b->tail. A file record
 * whose seq is not above `data_floor` (the index's last file seq) means the
 * index believed something the block file does not say (files take seqs in
 * file order): returns SCAN_MISMATCH at once. */
static int scan(struct block *b, struct reader *r, uint64_t pos, struct entries *e,
                uint32_t data_floor)
{
    int err;
    while (pos < r->file_size) {
        struct needle_header h;
        const uint8_t *p = reader_get(r, pos, NEEDLE_HEADER_SIZE, &err);
        if (!p && err)
            return err;
        if (!p)
            break; /* torn: not even a whole header */
        if (needle_decode_header(p, &h) != 0 || h.seq > seq_limit(b)) {
            log_error("block %016" PRIx64 ": no record at offset %" PRIu64
                      "; block marked corrupt and sealed",
                      b->id, pos);
            b->corrupt = b->sealed = 1;
            /* Nothing after the bad header is touched: later writes (only
             * tombstones: the block is sealed) go past the end of the file. */
            b->tail = align_up(r->file_size);
            return 0;
        }
        size_t rs = needle_record_size(h.size);
        p = reader_get(r, pos, rs, &err);
        if (!p && err)
            return err;
        if (!p)
            break; /* torn final record */
        if (crc32c(0, p + NEEDLE_HEADER_SIZE, h.size) != h.data_crc) {
            log_error("block %016" PRIx64 ": record seq %" PRIu32 " at offset %" PRIu64
                      " fails its CRC; skipped, block marked corrupt",
                      b->id, h.seq, pos);
            b->corrupt = 1;
            if (h.seq >= b->next_seq)
                b->next_seq = h.seq + 1;
        } else {
            int tomb = (h.flags & NEEDLE_FLAG_TOMBSTONE) != 0;
            if (!tomb && h.seq <= data_floor)
                return SCAN_MISMATCH;
            int rc = apply(b, h.seq, pos, h.size, tomb);
            if (rc == 0)
                rc = entries_add(e, h.seq, pos, h.size, tomb);
            if (rc != 0)
                return rc;
        }
        pos += rs;
    }
    b->tail = pos;
    if (pos < r->file_size) {
        log_warn("block %016" PRIx64 ": cutting a torn record at offset %" PRIu64
                 " (%" PRIu64 " bytes)",
                 b->id, pos, r->file_size - pos);
        if (ftruncate(b->fd, (off_t)pos) < 0)
            return -errno;
        int rc = uring_fdatasync_sync(b->fd);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* Brings the index file in line with what recovery found: keeps its first
 * `keep` bytes (0: a fresh header) and appends the scanned entries. */
static void idx_fix(struct block *b, uint64_t keep, const struct entries *e)
{
    struct stat st;
    int rc = 0;
    if (keep == 0)
        rc = idx_reset(b);
    else if (fstat(b->idx_fd, &st) < 0)
        rc = -errno;
    else if ((uint64_t)st.st_size != keep && ftruncate(b->idx_fd, (off_t)keep) < 0)
        rc = -errno;
    if (rc == 0 && e->len > 0)
        rc = fs_write_full(b->idx_fd, e->buf, e->len);
    if (rc != 0)
        idx_abandon(b, rc);
}

static int recover(struct block *b, uint64_t file_size)
{
    uint64_t scan_from, keep;
    struct reader r = {.fd = b->fd, .file_size = file_size};
    struct entries e = {0};
    int was_sealed = b->sealed, was_corrupt = b->corrupt;
    uint32_t data_seq;
    int rc = load_index(b, file_size, &scan_from, &keep, &data_seq);
    if (rc == 0)
        rc = scan(b, &r, scan_from, &e, data_seq);
    if (rc == SCAN_MISMATCH) {
        /* Only the index's last entry is checked against the file when it
         * loads; a wrong one before it shows here. Believe the file alone. */
        log_warn("block %016" PRIx64 ": index does not match the records after it; "
                 "rebuilding it from the block file", b->id);
        packed_drop(b);
        reset_ram(b);
        b->sealed = was_sealed;
        b->corrupt = was_corrupt;
        e.len = 0;
        keep = 0;
        rc = scan(b, &r, BLOCK_SUPER_SIZE, &e, 0);
    }
    if (rc == 0)
        idx_fix(b, keep, &e);
    if (rc == 0 && (b->sealed != was_sealed || b->corrupt != was_corrupt))
        rc = block_save_meta(b);
    free(r.buf);
    free(e.buf);
    return rc;
}

/* ---- create, open, close ---- */

static int block_alloc(const char *blocks_dir, int disk, uint64_t id, struct block **out)
{
    struct block *b = calloc(1, sizeof(*b));
    if (!b)
        return -ENOMEM;
    int n = snprintf(b->path, sizeof(b->path), "%s/%016" PRIx64, blocks_dir, id);
    if (n < 0 || (size_t)n + SUFFIX_MAX >= sizeof(b->path)) {
        free(b);
        return -ENAMETOOLONG;
    }
    b->id = id;
    b->disk = disk;
    b->fd = b->idx_fd = -1;
    b->next_seq = 1;
    index_init(&b->ix);
    *out = b;
    return 0;
}

int block_create(const char *blocks_dir, int disk, uint64_t id, uint64_t max_size, int primary,
                 const struct block_replica *replicas, int nreplicas, struct block **out)
{
    char path[sizeof(((struct block *)0)->path) + SUFFIX_MAX];
    uint8_t sb[BLOCK_SUPER_SIZE], ih[INDEX_HEADER_SIZE];
    struct block *b = NULL;
    int created = 0;
    if (!size_valid(max_size) || !block_replicas_valid(replicas, nreplicas))
        return IMG_EINVAL;
    int rc = block_alloc(blocks_dir, disk, id, &b);
    if (rc != 0)
        return rc;
    b->max_size = max_size;
    b->primary = primary ? 1 : 0;
    b->nreplicas = nreplicas;
    if (nreplicas > 0)
        memcpy(b->replicas, replicas, (size_t)nreplicas * sizeof(*replicas));
    b->tail = b->durable_tail = BLOCK_SUPER_SIZE;

    block_path_of(b, ".blk", path, sizeof(path));
    b->fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (b->fd < 0) {
        rc = errno == EEXIST ? IMG_EEXIST : -errno;
        goto err;
    }
    created = 1;
    sb_encode(id, max_size, sb);
    ssize_t n = uring_pwrite_sync(b->fd, sb, sizeof(sb), 0);
    if (n != (ssize_t)sizeof(sb)) {
        rc = n < 0 ? (int)n : -EIO;
        goto err;
    }
    if ((rc = uring_fdatasync_sync(b->fd)) != 0)
        goto err;
    b->prealloc_end = b->tail;
    if (block_prealloc(b, b->tail + BLOCK_TOMBSTONE_RESERVE) != 0) {
        rc = -ENOSPC; /* not even room for its tombstones: no block here */
        goto err;
    }
    block_path_of(b, ".idx", path, sizeof(path));
    b->idx_fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    if (b->idx_fd < 0) {
        rc = -errno;
        goto err;
    }
    idx_header(id, ih);
    if ((rc = fs_write_full(b->idx_fd, ih, sizeof(ih))) != 0)
        goto err;
    if ((rc = block_save_meta(b)) != 0)
        goto err;
    if ((rc = fs_sync_dir(blocks_dir)) != 0)
        goto err;
    b->dirty = 1;
    *out = b;
    return 0;
err:
    if (created) {
        const char *suffixes[] = {".blk", ".idx", ".meta", ".idz"};
        for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
            block_path_of(b, suffixes[i], path, sizeof(path));
            unlink(path);
        }
    }
    block_close(b);
    return rc;
}

int block_open(const char *blocks_dir, int disk, uint64_t id, struct block **out)
{
    char path[sizeof(((struct block *)0)->path) + SUFFIX_MAX];
    uint8_t sb[BLOCK_SUPER_SIZE] = {0};
    struct stat st;
    struct block *b = NULL;
    int rc = block_alloc(blocks_dir, disk, id, &b);
    if (rc != 0)
        return rc;
    if ((rc = block_meta_load(b)) != 0)
        goto err;
    block_path_of(b, ".blk", path, sizeof(path));
    b->fd = open(path, O_RDWR | O_CLOEXEC);
    if (b->fd < 0 || fstat(b->fd, &st) < 0) {
        rc = -errno;
        goto err;
    }
    if (!S_ISREG(st.st_mode) || st.st_size < BLOCK_SUPER_SIZE) {
        rc = IMG_EFORMAT;
        goto err;
    }
    ssize_t n = uring_pread_sync(b->fd, sb, sizeof(sb), 0);
    if (n < 0) {
        rc = (int)n;
        goto err;
    }
    if (n != (ssize_t)sizeof(sb) || (rc = sb_check(sb, id, &b->max_size)) != 0) {
        rc = IMG_EFORMAT;
        goto err;
    }
    block_path_of(b, ".idx", path, sizeof(path));
    b->idx_fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (b->idx_fd < 0) {
        rc = -errno;
        goto err;
    }
    if ((rc = recover(b, (uint64_t)st.st_size)) != 0)
        goto err;
    if (b->sealed)
        index_seal(&b->ix); /* -ENOMEM: its tail stays plain */
    packed_write(b);
    b->durable_tail = b->tail;
    b->prealloc_end = b->tail;
    if (block_prealloc(b, b->tail + BLOCK_TOMBSTONE_RESERVE) != 0)
        log_warn("block %016" PRIx64 ": no disk space for its next tombstones; deletes of its "
                 "files may fail until space is freed", b->id);
    b->dirty = 1;
    *out = b;
    return 0;
err:
    block_close(b);
    return rc;
}

void block_close(struct block *b)
{
    if (!b)
        return;
    if (b->file)
        block_fd_put(b->file); /* reads in flight keep the descriptor */
    else if (b->fd >= 0)
        close(b->fd);
    if (b->idx_fd >= 0)
        close(b->idx_fd);
    index_free(&b->ix);
    free(b);
}

int block_seal(struct block *b)
{
    if (!b->sealed)
        b->dirty = 1;
    b->sealed = 1;
    index_seal(&b->ix); /* no new file will come: pack its index (-ENOMEM: later) */
    return block_save_meta(b);
}

int block_lonely_note(struct block *b, uint64_t offset, uint32_t len)
{
    uint64_t end = offset + len;
    if (b->lonely_to && b->lonely_from <= offset && b->lonely_to >= end)
        return 0;
    b->lonely_from = b->lonely_to && b->lonely_from < offset ? b->lonely_from : offset;
    b->lonely_to = b->lonely_to > end ? b->lonely_to : end;
    return block_save_meta(b);
}

int block_lonely_clear(struct block *b, uint64_t members_size)
{
    if (!b->lonely_to || members_size < b->lonely_to)
        return 0;
    b->lonely_from = b->lonely_to = 0;
    block_save_meta(b);
    return 1;
}

/* ---- appends ---- */

/* Disk space ahead of the tail. A file system that fills up must never fail
 * a delete: tombstones of a block this server holds always find allocated
 * space. So the block file keeps its space allocated (fallocate with
 * FALLOC_FL_KEEP_SIZE: the file's size, which recovery reads, is unchanged)
 * up to BLOCK_TOMBSTONE_RESERVE past the tail, extended PREALLOC_STEP at a
 * time, and a data record that would eat into that window when it cannot be
 * extended is refused with -ENOSPC (the client writes elsewhere; the
 * nameserver stops placing on a full server). Ensures space up to `need`
 * (at most max_size). Returns 0 or -ENOSPC; a file system without fallocate
 * gives no guarantee and always gets 0. */
static int block_prealloc(struct block *b, uint64_t need)
{
    if (need > b->max_size)
        need = b->max_size;
    if (b->prealloc_end >= need)
        return 0;
    uint64_t from = b->prealloc_end > b->tail ? b->prealloc_end : b->tail;
    uint64_t end = need + PREALLOC_STEP < b->max_size ? need + PREALLOC_STEP : b->max_size;
    if (fallocate(b->fd, FALLOC_FL_KEEP_SIZE, (off_t)from, (off_t)(end - from)) == 0) {
        b->prealloc_end = end;
        return 0;
    }
    if (errno == EOPNOTSUPP || errno == ENOSYS) {
        b->prealloc_end = b->max_size; /* nothing to keep: as without it */
        return 0;
    }
    /* Full (or another error, which the write itself will meet): try just
     * what is needed, so a nearly full disk still takes it. */
    if (need > from && fallocate(b->fd, FALLOC_FL_KEEP_SIZE, (off_t)from, (off_t)(need - from)) == 0) {
        b->prealloc_end = need;
        return 0;
    }
    return -ENOSPC;
}

static int rec_len_valid(uint32_t rec_len)
{
    return rec_len >= NEEDLE_HEADER_SIZE && rec_len % NEEDLE_ALIGN == 0 &&
           rec_len <= needle_record_size(NEEDLE_MAX_DATA);
}

int block_reserve(struct block *b, uint32_t rec_len, uint64_t *offset, uint32_t *seq)
{
    if (!b->primary)
        return IMG_ENOTPRIMARY;
    if (b->sealed)
        return IMG_ESEALED;
    if (!rec_len_valid(rec_len))
        return IMG_EINVAL;
    if (b->tail + rec_len > b->max_size - BLOCK_TOMBSTONE_RESERVE ||
        b->next_seq > seq_limit(b)) {
        int rc = block_seal(b);
        if (rc != 0)
            log_error("block %016" PRIx64 ": cannot save meta while sealing: %s", b->id,
                      img_strerror(rc));
        return IMG_EFULL;
    }
    if (block_prealloc(b, b->tail + rec_len + BLOCK_TOMBSTONE_RESERVE) != 0)
        return -ENOSPC; /* the disk is full: keep what is left for tombstones */
    *offset = b->tail;
    *seq = b->next_seq++;
    b->tail += rec_len;
    b->dirty = 1;
    return 0;
}

int block_reserve_tombstone(struct block *b, uint32_t rec_len, uint64_t *offset)
{
    if (!rec_len_valid(rec_len))
        return IMG_EINVAL;
    if (b->tail + rec_len > b->max_size)
        return IMG_EFULL;
    /* Within the window kept for tombstones; extending it is best effort. */
    block_prealloc(b, b->tail + rec_len + BLOCK_TOMBSTONE_RESERVE);
    *offset = b->tail;
    b->tail += rec_len;
    b->dirty = 1;
    return 0;
}

int block_reserve_at(struct block *b, uint64_t offset, uint32_t rec_len)
{
    if (!rec_len_valid(rec_len))
        return IMG_EINVAL;
    if (offset != b->tail)
        return IMG_EOFFSET;
    if (b->tail + rec_len > b->max_size)
        return IMG_EFULL;
    /* A replicated record: a tombstone-sized one may use the window kept
     * for tombstones, a larger one only space beyond it. */
    uint64_t need = b->tail + rec_len;
    if (block_prealloc(b, need + BLOCK_TOMBSTONE_RESERVE) != 0 &&
        rec_len > needle_record_size(0) && block_prealloc(b, need) != 0)
        return -ENOSPC;
    b->tail += rec_len;
    b->dirty = 1;
    return 0;
}

int block_commit(struct block *b, uint64_t offset, const struct needle_header *h)
{
    int tomb = (h->flags & NEEDLE_FLAG_TOMBSTONE) != 0;
    uint8_t ent[INDEX_ENTRY_SIZE];
    if (h->seq == 0 || h->seq > seq_limit(b) || h->size > NEEDLE_MAX_DATA ||
        offset < BLOCK_SUPER_SIZE || offset % NEEDLE_ALIGN != 0 ||
        offset + needle_record_size(h->size) > b->max_size)
        return IMG_EINVAL;
    int rc = apply(b, h->seq, offset, h->size, tomb);
    if (rc != 0)
        return rc;
    b->dirty = 1;
    index_encode_entry(h->seq, offset, h->size, tomb, ent);
    rc = fs_write_full(b->idx_fd, ent, sizeof(ent));
    if (rc != 0)
        idx_abandon(b, rc);
    return rc;
}

int block_lookup(const struct block *b, uint32_t seq, uint64_t *offset, uint32_t *size)
{
    int deleted;
    int rc = index_get(&b->ix, seq, offset, size, &deleted);
    if (rc != 0)
        return rc;
    return deleted ? IMG_EDELETED : 0;
}

uint32_t block_file_count(const struct block *b)
{
    return b->ix.live;
}

/* ---- copies from a peer (ds_copy.c) ---- */

int block_check_super(const uint8_t in[BLOCK_SUPER_SIZE], uint64_t id, uint64_t *max_size)
{
    return sb_check(in, id, max_size);
}

static int unlink_suffix(const struct block *b, const char *suffix)
{
    char path[sizeof(b->path) + SUFFIX_MAX];
    block_path_of(b, suffix, path, sizeof(path));
    return unlink(path) < 0 && errno != ENOENT ? -errno : 0;
}

int block_install_copy(const char *blocks_dir, int disk, uint64_t id, const char *tmp_path,
                       const struct block_replica *replicas, int nreplicas,
                       const uint8_t *idx_entries, size_t idx_len, struct block **out)
{
    char path[sizeof(((struct block *)0)->path) + SUFFIX_MAX];
    uint8_t ih[INDEX_HEADER_SIZE];
    struct block *b = NULL;
    if (!block_replicas_valid(replicas, nreplicas) || idx_len % INDEX_ENTRY_SIZE != 0)
        return IMG_EINVAL;
    int rc = block_alloc(blocks_dir, disk, id, &b);
    if (rc != 0)
        return rc;
    block_path_of(b, ".blk", path, sizeof(path));
    if (access(path, F_OK) == 0) {
        block_close(b);
        return IMG_EEXIST;
    }
    b->sealed = 1;
    b->nreplicas = nreplicas;
    if (nreplicas > 0)
        memcpy(b->replicas, replicas, (size_t)nreplicas * sizeof(*replicas));
    block_path_of(b, ".idx", path, sizeof(path));
    b->idx_fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    if (b->idx_fd < 0) {
        rc = -errno;
        goto err;
    }
    idx_header(id, ih);
    if ((rc = fs_write_full(b->idx_fd, ih, sizeof(ih))) != 0 ||
        (idx_len && (rc = fs_write_full(b->idx_fd, idx_entries, idx_len)) != 0))
        goto err;
    if ((rc = block_save_meta(b)) != 0)
        goto err;
    unlink_suffix(b, ".idz"); /* of a block file that is no more */
    block_path_of(b, ".blk", path, sizeof(path));
    if (rename(tmp_path, path) < 0) {
        rc = -errno;
        goto err;
    }
    if ((rc = fs_sync_dir(blocks_dir)) != 0 || (rc = block_open(blocks_dir, disk, id, out)) != 0) {
        unlink_suffix(b, ".blk");
        goto err;
    }
    block_close(b);
    return 0;
err:
    unlink_suffix(b, ".idx");
    unlink_suffix(b, ".meta");
    block_close(b);
    return rc;
}

int block_unlink_files(const struct block *b)
{
    const char *suffixes[] = {".blk", ".idx", ".meta", ".idz"};
    int rc = 0;
    for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
        int r = unlink_suffix(b, suffixes[i]);
        if (r != 0 && rc == 0)
            rc = r;
    }
    char dir[sizeof(b->path)];
    snprintf(dir, sizeof(dir), "%s", b->path);
    char *slash = strrchr(dir, '/');
    if (slash) {
        *slash = '\0';
        int r = fs_sync_dir(dir);
        if (r != 0 && rc == 0)
            rc = r;
    }
    return rc;
}

/* ---- shared descriptors and compaction swap (ds_compact.c) ---- */

struct block_fd *block_fd_get(struct block *b)
{
    if (!b->file) {
        b->file = malloc(sizeof(*b->file));
        if (!b->file)
            return NULL;
        b->file->fd = b->fd;
        b->file->refs = 1; /* the block's own pin */
    }
    b->file->refs++;
    return b->file;
}

void block_fd_put(struct block_fd *f)
{
    if (!f || --f->refs > 0)
        return;
    if (f->fd >= 0)
        close(f->fd);
    free(f);
}

int block_swap_file(struct block *b, const char *tmp_path, int new_fd, struct index *ix,
                    uint64_t tail, const uint8_t *idx_entries, size_t idx_len)
{
    char path[sizeof(b->path) + SUFFIX_MAX], ipath[sizeof(b->path) + SUFFIX_MAX];
    char dir[sizeof(b->path)];
    uint8_t ih[INDEX_HEADER_SIZE];
    struct block_fd *nf = malloc(sizeof(*nf));
    if (!nf)
        return -ENOMEM;
    snprintf(dir, sizeof(dir), "%s", b->path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    /* The new index goes beside the old one first; the old one is emptied
     * before the block file changes, so no crash pairs an index with the
     * wrong block file (an empty index is rebuilt by a scan). */
    block_path_of(b, ".idx.compact", ipath, sizeof(ipath));
    int ifd = open(ipath, O_RDWR | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    int rc = ifd < 0 ? -errno : 0;
    idx_header(b->id, ih);
    if (rc == 0)
        rc = fs_write_full(ifd, ih, sizeof(ih));
    if (rc == 0 && idx_len)
        rc = fs_write_full(ifd, idx_entries, idx_len);
    if (rc == 0 && ftruncate(b->idx_fd, 0) < 0)
        rc = -errno;
    if (rc == 0)
        packed_drop(b); /* before the block file changes, like the index */
    block_path_of(b, ".blk", path, sizeof(path));
    if (rc == 0 && rename(tmp_path, path) < 0)
        rc = -errno;
    if (rc != 0) {
        if (ifd >= 0)
            close(ifd);
        unlink(ipath);
        free(nf);
        return rc;
    }
    /* From here the new block file is in place: finish the switch. */
    char idx_path[sizeof(b->path) + SUFFIX_MAX];
    block_path_of(b, ".idx", idx_path, sizeof(idx_path));
    if (rename(ipath, idx_path) < 0)
        log_warn("block %016" PRIx64 ": cannot install the compacted index (%s); it will be "
                 "rebuilt", b->id, strerror(errno));
    rc = fs_sync_dir(dir);
    if (rc != 0)
        log_warn("block %016" PRIx64 ": fsync of the folder after compaction: %s", b->id,
                 img_strerror(rc));
    nf->fd = new_fd;
    nf->refs = 1;
    if (b->file)
        block_fd_put(b->file);
    else
        close(b->fd);
    b->file = nf;
    b->fd = new_fd;
    close(b->idx_fd);
    b->idx_fd = ifd;
    index_free(&b->ix);
    b->ix = *ix;
    index_init(ix);
    index_seal(&b->ix); /* compacted blocks are sealed */
    b->tail = b->durable_tail = tail;
    b->prealloc_end = tail;
    block_prealloc(b, tail + BLOCK_TOMBSTONE_RESERVE); /* best effort, as at open */
    b->deleted_bytes = 0;
    b->dirty = 1;
    return 0;
}
