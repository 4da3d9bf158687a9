/* ec_shard.h - one shard file of an erasure-coded block on disk
 * (docs/storage.md, "Shard file"): part of the storage engine, no libuv.
 *
 *   <blockid>.sNN  =  header (ec.h, hdr_len bytes)
 *                     payload (L bytes: data extent zero-padded, or parity)
 *                     record table (the whole block's files, below)
 *
 * Every shard holder keeps the whole block's record table, so any holder
 * maps (seq, cookie) to a block offset and from there (ec_locate) to the
 * data shard and the offset inside it. The table:
 *
 *   offset size  field
 *   0      8     magic "IMGSIX1\0"
 *   8      4     count
 *   12     4     zero
 *   16     16*n  entries by ascending seq: seq u32, cookie u32,
 *                offset/8 u32 (block-file coordinates), size u32 (data
 *                bytes as stored; bit 31: the file is deleted)
 *   ...    4     CRC32C of every table byte before it
 *
 * A shard file is written whole, as it arrived (ec_shard_write: temporary
 * file, fdatasync, rename, folder fsync), and opened with every part
 * checked (ec_shard_open). Reads are synchronous preads: callers run them
 * off the event loop. */
#ifndef DS_EC_SHARD_H
#define DS_EC_SHARD_H

#include "dataserver/ec.h"

#include <stddef.h>
#include <stdint.h>

#define EC_TABLE_MAGIC "IMGSIX1"
#define EC_TABLE_HEAD 16
#define EC_TABLE_ENTRY 16
#define EC_TABLE_DELETED 0x80000000u
#define EC_TABLE_MAX (UINT32_C(1) << 24) /* entries: far above any block's files */
#define EC_SHARD_SUFFIX_LEN 4            /* ".sNN" */

/* One file of the block. */
struct ec_tent {
    uint32_t seq;
    uint32_t cookie;
    uint64_t off;     /* record offset in the block file */
    uint32_t size;    /* data bytes as stored (needle_record_size gives the record) */
    uint8_t deleted;
};

/* Encodes n entries (ascending seq) into a malloc'd table (*out, *len,
 * owned by the caller). Returns 0, IMG_EINVAL (order, range) or -ENOMEM. */
int ec_table_encode(const struct ec_tent *e, size_t n, uint8_t **out, size_t *len);

/* Parses a table of exactly len bytes for a block of block_len bytes:
 * *e malloc'd (owned by the caller), *n entries. Every entry checked (seq
 * ascending and >= 1, offset aligned and inside the block, size within
 * NEEDLE_MAX_DATA, the record inside the block). Returns 0, IMG_EFORMAT
 * (IMG_ECORRUPT for a CRC mismatch) or -ENOMEM. */
int ec_table_parse(const uint8_t *in, size_t len, uint64_t block_len, struct ec_tent **e,
                   size_t *n);

/* Finds seq in a table: the entry or NULL. */
const struct ec_tent *ec_table_find(const struct ec_tent *e, size_t n, uint32_t seq);

/* An open shard file. */
struct ec_shard {
    int fd;
    char path[320];
    struct ec_hdr h;          /* chunk_crc owned */
    size_t hdr_len;
    struct ec_tent *tab;      /* owned */
    size_t ntab;
    uint64_t file_size;
};

/* Writes "<blocks_dir>/<id 16 hex>.sNN" from the whole file's bytes (as
 * received: header, payload, table) after checking them all (header for
 * block `id` and shard `index`, the payload's chunk CRCs, the table).
 * Durable when it returns 0; IMG_EEXIST when the shard file is there,
 * IMG_EFORMAT / IMG_ECORRUPT for bad bytes (nothing written), or -errno. */
int ec_shard_write(const char *blocks_dir, uint64_t id, unsigned index, const uint8_t *bytes,
                   size_t len);

/* ---- a compaction's new generation, staged beside the shard ----
 *
 * "<blocks_dir>/<id 16 hex>.sNN.next" holds shard `index` of the stripe's
 * next generation (ec_compact.h) until the cutover renames it over the
 * shard file. Never loaded or served as a shard (ds_ec_load reads ".sNN"
 * only); the start-up scan leaves it (a cutover may have to finish it). */
#define EC_NEXT_SUFFIX ".next"

/* The staged file's path of shard `index` of block `id` into out[0..n). */
void ec_shard_next_path(const char *blocks_dir, uint64_t id, unsigned index, char *out,
                        size_t n);

/* Writes the staged file from the whole new shard's bytes after the
 * checks of ec_shard_write, and that its header's generation is `gen`
 * (IMG_EINVAL otherwise). A staged file already there is replaced (the
 * same compaction sent again). Durable when it returns 0; else nothing
 * changed: IMG_EFORMAT / IMG_ECORRUPT / IMG_EINVAL, or -errno. */
int ec_shard_stage(const char *blocks_dir, uint64_t id, unsigned index, uint32_t gen,
                   const uint8_t *bytes, size_t len);

/* The cutover of one shard: renames the staged file of generation `gen`
 * over the shard file (one rename, then the folder fsync'd), so a crash
 * leaves the old shard or the new one whole. Returns 0 (also when the
 * shard file already is of generation gen and nothing is staged: a
 * repeated cutover), -ENOENT when neither is there, IMG_EINVAL when the
 * staged file is of another generation, block or index (left in place),
 * IMG_EFORMAT / IMG_ECORRUPT when it does not open, or -errno. */
int ec_shard_commit(const char *blocks_dir, uint64_t id, unsigned index, uint32_t gen);

/* Removes the staged file (a compaction given up), the folder fsync'd.
 * Returns 0, also when there is none, or -errno. */
int ec_shard_unstage(const char *blocks_dir, uint64_t id, unsigned index);

/* Checks a whole shard file's bytes (the checks of ec_shard_write); on
 * success fills *h (chunk_crc owned by the caller: ec_hdr_free) and
 * *hdr_len. */
int ec_shard_check(const uint8_t *bytes, size_t len, uint64_t id, unsigned index,
                   struct ec_hdr *h, size_t *hdr_len);

/* The path of shard `index` of block `id` in blocks_dir into out[0..n). */
void ec_shard_path(const char *blocks_dir, uint64_t id, unsigned index, char *out, size_t n);

/* Parses a file name "<16 hex>.sNN": 0 with *id and *index, else -1. */
int ec_shard_name(const char *name, uint64_t *id, unsigned *index);

/* Opens the shard file at `path` and checks its header, size and table
 * (not the payload: ec_shard_verify). Returns 0 with *s filled (close with
 * ec_shard_close), IMG_EFORMAT / IMG_ECORRUPT, or -errno. */
int ec_shard_open(const char *path, struct ec_shard *s);

/* Reads the payload's chunks and checks their CRCs: 0, IMG_ECORRUPT
 * (*bad_chunk set), or -errno. */
int ec_shard_verify(const struct ec_shard *s, uint32_t *bad_chunk);

/* Reads len payload bytes at shard offset off into buf (pread; blocking).
 * The chunks the range touches are checked against their CRCs when
 * `check` is set. Returns 0, IMG_ECORRUPT, IMG_EINVAL for a range outside
 * the payload, or -errno. */
int ec_shard_pread(const struct ec_shard *s, uint64_t off, uint64_t len, uint8_t *buf,
                   int check);

/* Bytes of the shard file's header and record table (what a rebuild copies
 * from a surviving shard). */
size_t ec_shard_meta_len(const struct ec_shard *s);

/* Reads the header then the record table into buf (ec_shard_meta_len
 * bytes; blocking). Returns 0 or -errno / IMG_EFORMAT. */
int ec_shard_read_meta(const struct ec_shard *s, uint8_t *buf);

/* Builds a whole shard file for shard `index` from another shard's meta
 * (meta: its header then its record table, meta_len bytes, for block id)
 * and the rebuilt payload (L bytes, as the header says): the header gets
 * the new index and the payload's chunk CRCs. Returns 0 with *out (malloc'd,
 * *out_len bytes), IMG_EFORMAT / IMG_ECORRUPT for a bad meta, or -ENOMEM. */
int ec_shard_assemble(const uint8_t *meta, size_t meta_len, uint64_t id, unsigned index,
                      const uint8_t *payload, uint64_t L, uint8_t **out, size_t *out_len);

/* Parses the header at the start of another shard's meta: *h (chunk_crc
 * owned: ec_hdr_free) and *hdr_len. Returns 0 or IMG_EFORMAT / IMG_ECORRUPT. */
int ec_shard_meta_header(const uint8_t *meta, size_t meta_len, uint64_t id, struct ec_hdr *h,
                         size_t *hdr_len);

void ec_shard_close(struct ec_shard *s);


/* ---- tombstones of an encoded block (docs/storage.md, "Deletes") ----
 *
 * "<blocks_dir>/<id 16 hex>.etomb", append-only, one 16-byte entry per
 * deleted file: seq u32, cookie u32, zero u32, CRC32C of the 12 bytes
 * before it u32. Applied to the record tables of the block's shards at
 * load; a torn or damaged entry ends the file's valid part. */
#define EC_TOMB_SUFFIX ".etomb"
#define EC_TOMB_ENTRY 16

/* Appends one entry durably (fdatasync; the folder fsync'd when the file
 * is new). Returns 0 or -errno. Blocking. */
int ec_tomb_append(const char *blocks_dir, uint64_t id, uint32_t seq, uint32_t cookie);

/* Appends n entries (seqs[i], cookies[i]) in one write and one fdatasync
 * (the folder fsync'd when the file is new); n 0 writes nothing. Returns 0
 * or -errno. Blocking. */
int ec_tomb_append_n(const char *blocks_dir, uint64_t id, const uint32_t *seqs,
                     const uint32_t *cookies, size_t n);

/* Reads the valid entries of block id's tombstone file: *seqs malloc'd
 * (owned by the caller), *n of them (0 and NULL when there is no file).
 * Returns 0 or -errno (-ENOENT is 0 with none). */
int ec_tomb_load(const char *blocks_dir, uint64_t id, uint32_t **seqs, size_t *n);

/* ---- building a stripe from a block file's bytes ---- */

/* The k+m shard files of a block, each whole (header, payload, table). */
struct ec_stripe_files {
    unsigned k, m;
    uint64_t L;
    size_t len[EC_MAX_SHARDS];
    uint8_t *file[EC_MAX_SHARDS]; /* owned: ec_stripe_files_free */
    uint32_t files, deleted;      /* live and deleted files of the block */
};

/* Scans the block file image blk[0..block_len) of block `id` (superblock of
 * BLOCK_SUPER_SIZE = `first` bytes, then records; every record's header and
 * data CRC checked, tombstones applied), cuts it, encodes it k+m and builds
 * every shard file. Returns 0 with *out filled, IMG_ECORRUPT for a bad
 * record (nothing built), IMG_EINVAL for a bad scheme, or -ENOMEM. */
int ec_stripe_build(const uint8_t *blk, uint64_t block_len, uint64_t first, uint64_t id,
                    unsigned k, unsigned m, struct ec_stripe_files *out);

/* ec_stripe_build with the stripe generation `gen` in every shard header
 * (ec_stripe_build: 0; a compaction's new stripe: the old one's plus one,
 * ec_compact.h). */
int ec_stripe_build_gen(const uint8_t *blk, uint64_t block_len, uint64_t first, uint64_t id,
                        unsigned k, unsigned m, uint32_t gen, struct ec_stripe_files *out);

void ec_stripe_files_free(struct ec_stripe_files *f);

#endif
