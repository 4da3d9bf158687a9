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
/* Room for a block's path (<disk>/blocks/<id>, suffixes added separately):
 * kept in struct block, once per block in RAM, so it is sized for real data
 * folder paths (up to ~200 characters) rather than PATH_MAX; a longer data
 * folder gets -ENAMETOOLONG from block_create/block_open. */
#define BLOCK_PATH_MAX 256

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
    uint64_t prealloc_end;  /* disk space allocated up to here (block_prealloc in block.c) */
    int fd;                 /* block file, O_RDWR */
    int idx_fd;             /* index file, O_RDWR|O_APPEND */
    uint32_t packed_entries; /* entries of the packed index <id>.idz in use (0: none) */
    int disk;               /* index of the data folder holding it */
    struct index ix;
    uint32_t next_seq;      /* seq the next file gets (primary) */
    uint64_t deleted_bytes; /* record bytes of deleted files and tombstones */
    int primary;
    int sealed;
    int corrupt;
    int stale;              /* left out of the nameserver's replica set (SET_REPLICAS):
                               not served over the native port until put back */
    int nreplicas;
    struct block_replica replicas[BLOCK_MAX_REPLICAS]; /* primary first */
    uint32_t set_version;   /* version of `replicas` (SET_REPLICAS); 0 until changed */
    /* Lonely records (primary): [lonely_from, lonely_to) holds records
     * durable here whose replicated append failed, so no other copy may have
     * them; lonely_to 0: none. Kept in the meta until SET_REPLICAS says
     * every other member holds them (block_lonely_clear). */
    uint64_t lonely_from, lonely_to;
    char path[BLOCK_PATH_MAX]; /* <disk>/blocks/<id> without suffix */
    int dirty;              /* changed since the last heartbeat report */
    void *io;               /* blockio state (group commit), owned by blockio.c */
    struct block_fd *file;  /* holder of fd shared with reads in flight, NULL until pinned */
    int compacting;         /* a compaction is rewriting it (ds_compact.c) */
    uint64_t hold_until_ms; /* deletes refused until this loop time (ds_compact.c) */
};

/* The block file descriptor as shared by reads in flight: compaction
 * replaces b->fd while reads submitted on the old file still run, and the
 * old descriptor is closed only when the last of them completed. */
struct block_fd {
    int fd;
    unsigned refs;
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

/* Notes that the record [offset, offset + len) reached this copy only and
 * saves the meta. Returns 0 or the save's error (the note stays in memory). */
int block_lonely_note(struct block *b, uint64_t offset, uint32_t len);

/* Forgets the lonely records when the other members of the set hold at least
 * members_size bytes, covering them all (saves the meta). Returns 1 when
 * they were forgotten, 0 when there were none or they are still lonely. */
int block_lonely_clear(struct block *b, uint64_t members_size);

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

/* Pins the block's current file for one read: returns the holder (its fd
 * stays open until the matching block_fd_put) or NULL on -ENOMEM. */
struct block_fd *block_fd_get(struct block *b);

/* Drops one pin; the descriptor is closed with the last one. NULL-safe. */
void block_fd_put(struct block_fd *f);

/* Replaces the block file by a compacted one (ds_compact.c): `tmp_path`
 * (durable, open as `new_fd`, same superblock, the live records of the old
 * file) becomes <id>.blk and `idx_entries` (idx_len bytes of encoded entries,
 * index.h) the new index file; the old index file is removed before the
 * rename, so a crash between the steps leaves a block file whose index is
 * rebuilt by a scan at the next open. On success the block uses the new file
 * at once (fd, index `ix` moved into b, tail, deleted_bytes = 0), reads in
 * flight on the old file keep its descriptor until they complete, and 0 is
 * returned; new_fd and *ix then belong to b. On failure b is unchanged (its
 * old file still in place, the index file possibly empty: rebuilt at the
 * next open) and the caller keeps new_fd, *ix and tmp_path. */
int block_swap_file(struct block *b, const char *tmp_path, int new_fd, struct index *ix,
                    uint64_t tail, const uint8_t *idx_entries, size_t idx_len);

/* Removes the three files of a block that is no longer open (closed or
 * handed to a deferred close): <path>.blk, .idx, .meta, then fsyncs the
 * folder. Returns 0 or the first -errno. */
int block_unlink_files(const struct block *b);

#endif
