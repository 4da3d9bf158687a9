/* block.h - one block: an append-only block file, its index and its meta.
 *
 * Files of block <id> (16 lower-case hex digits) in <disk>/blocks/:
 *   <id>.blk   superblock (BLOCK_SUPER_SIZE bytes) then records (needle.h)
 *   <id>.idx   persisted index (index.h), may lag the block file
 *   <id>.meta  role and state, small text file written atomically
 *
 * Superblock (little-endian, identical on every replica):
 *   0  8  magic "IMGBLK1\0"
 *   8  4  format version (1)
 *   12 4  reserved (0)
 *   16 8  block id
 *   24 8  max size in bytes
 *   32 28 zero
 *   60 4  CRC32C of bytes 0..59
 *
 * Recovery (block_open): the superblock is checked; index entries are loaded
 * while they are in order and inside the file; the record at the last entry
 * is checked against it (else the whole index is rebuilt); then the block file
 * is scanned from the end of the last indexed record. Every complete record
 * with a valid header and CRC is indexed. A torn final record (extends past
 * the end of the file) is cut off with ftruncate. A complete record whose
 * data fails its CRC is skipped (not served) and the block is marked corrupt;
 * a header that is not a record stops the scan, the block is marked corrupt
 * and sealed, and nothing after it is touched.
 *
 * Threading: a block is used from the loop thread only. */
#ifndef DS_BLOCK_H
#define DS_BLOCK_H

#include "dataserver/index.h"
#include "dataserver/needle.h"

#include <stdint.h>

#define BLOCK_MAGIC "IMGBLK1"
#define BLOCK_FORMAT_VERSION 1
#define BLOCK_SUPER_SIZE 64
#define BLOCK_MAX_REPLICAS 3
#define BLOCK_MIN_SIZE (1u << 20)
#define BLOCK_MAX_SIZE (UINT64_C(32) << 30) /* offsets are stored as offset/8 in u32 */
/* The last bytes of a block are kept for tombstones: block_reserve refuses a
 * new file that would end inside them, so deletes still fit in a full block. */
#define BLOCK_TOMBSTONE_RESERVE (64u << 10)

struct block_replica {
    char server_id[64];
    char addr[64];
    char http_addr[64];
};

struct block {
    uint64_t id;
    uint64_t max_size;
    uint64_t tail;          /* end of the last reserved record: next append offset */
    uint64_t durable_tail;  /* end of the records known durable */
    int fd;                 /* block file, O_RDWR */
    int idx_fd;             /* index file, O_RDWR|O_APPEND */
    int disk;               /* index of the data folder holding it */
    struct index ix;
    uint32_t next_seq;      /* seq the next file gets (primary) */
    uint64_t deleted_bytes; /* record bytes of deleted files and tombstones */
    int primary;
    int sealed;
    int corrupt;
    int nreplicas;
    struct block_replica replicas[BLOCK_MAX_REPLICAS]; /* primary first */
    char path[4096];        /* <disk>/blocks/<id> without suffix */
    int dirty;              /* changed since the last heartbeat report */
    void *io;               /* blockio state (group commit), owned by blockio.c */
};

/* Creates an empty block in folder `blocks_dir` (superblock written and
 * fsync'd, empty index, meta, folder fsync'd). Returns 0 with *out owned by
 * the caller (free with block_close), IMG_EEXIST, IMG_EINVAL for a bad size,
 * or -errno (no files left behind). */
int block_create(const char *blocks_dir, int disk, uint64_t id, uint64_t max_size, int primary,
                 const struct block_replica *replicas, int nreplicas, struct block **out);

/* Opens and recovers block `id` from `blocks_dir` (see Recovery above).
 * Returns 0 with *out, IMG_EFORMAT for a bad superblock or meta, or -errno. */
int block_open(const char *blocks_dir, int disk, uint64_t id, struct block **out);

/* Closes the files and frees the block. NULL-safe. */
void block_close(struct block *b);

/* Writes the meta file (role, sealed, replicas) atomically. 0 or -errno. */
int block_save_meta(struct block *b);

/* Marks the block sealed and saves the meta. 0 or -errno. */
int block_seal(struct block *b);

/* Reserves room for a new file's record of `rec_len` bytes at the tail:
 * returns 0 with *offset and *seq (primary only), IMG_ESEALED, IMG_EFULL
 * (the block is then sealed: it cannot take this file), IMG_ENOTPRIMARY. */
int block_reserve(struct block *b, uint32_t rec_len, uint64_t *offset, uint32_t *seq);

/* Reserves room for a tombstone of `rec_len` bytes at the tail, allowed on
 * sealed blocks too (a delete is not a new file). 0 or IMG_EFULL when even a
 * tombstone does not fit (space is kept for tombstones: see block.c). */
int block_reserve_tombstone(struct block *b, uint32_t rec_len, uint64_t *offset);

/* Secondary side of replication: accepts a record of `rec_len` bytes only at
 * offset == tail. Returns 0, IMG_EOFFSET, or IMG_EFULL. */
int block_reserve_at(struct block *b, uint64_t offset, uint32_t rec_len);

/* Records a durable record (header h at offset) in the index, in RAM and
 * appended to the index file; for a tombstone marks its file deleted.
 * Returns 0 or -errno (the RAM index is still updated). */
int block_commit(struct block *b, uint64_t offset, const struct needle_header *h);

/* Looks up file `seq`: 0 with *offset and *size, IMG_EDELETED, IMG_ENOTFOUND. */
int block_lookup(const struct block *b, uint32_t seq, uint64_t *offset, uint32_t *size);

/* Number of live files. */
uint32_t block_file_count(const struct block *b);

/* Checks a superblock read from a peer for block `id` (same rules as
 * block_open). Returns 0 with *max_size, or IMG_EFORMAT. */
int block_check_super(const uint8_t in[BLOCK_SUPER_SIZE], uint64_t id, uint64_t *max_size);

/* Installs a verified copy of block `id`: `tmp_path` (a durable block file in
 * `blocks_dir`) gets an index file made of `idx_len` bytes of encoded entries
 * (index.h) and a meta (sealed secondary, `replicas`), is renamed to
 * <id>.blk (folder fsync'd) and opened with block_open. Returns 0 with *out
 * owned by the caller, IMG_EEXIST when the block file already exists, or an
 * error; on failure none of the block's files is left behind (tmp_path is
 * the caller's to remove). */
int block_install_copy(const char *blocks_dir, int disk, uint64_t id, const char *tmp_path,
                       const struct block_replica *replicas, int nreplicas,
                       const uint8_t *idx_entries, size_t idx_len, struct block **out);

/* Removes the three files of a block that is no longer open (closed or
 * handed to a deferred close): <path>.blk, .idx, .meta, then fsyncs the
 * folder. Returns 0 or the first -errno. */
int block_unlink_files(const struct block *b);

#endif
