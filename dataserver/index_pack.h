/* index_pack.h - compact copies of sealed blocks' index files (<id>.idz,
 * docs/storage.md "Packed index").
 *
 * A sealed block's index entries rarely change (only tombstones are added),
 * so block_open keeps a packed copy of them beside the index file. Version
 * 2 (written now) is the RAM index itself as it stood after the first n
 * entries of the index file (index.h: packed groups and their bit fields)
 * with the block's counters, so a restart installs it without touching an
 * entry (stored as one zstd frame when that saves 10 %); version 1 (still read, then replaced) is the 12-byte entries
 * turned into three columns of deltas (seq, offset/8, size), one zstd
 * frame, applied entry by entry. Either way a restart reads only the index
 * file's entries after the first n. The index file itself is never
 * changed: the packed copy is an accelerator, and any doubt about it (bad
 * check, another block, fewer entries in the index file than it claims or
 * another n-th entry there, a block file shorter than it covered, a
 * structure that could not come from index.c) makes block_open ignore and
 * remove it.
 * Storage engine: calls base/, codec.c, index.h and needle.h only. */
#ifndef DS_INDEX_PACK_H
#define DS_INDEX_PACK_H

#include <stddef.h>
#include <stdint.h>

#include "dataserver/index.h"

#define INDEX_PACK_MAGIC "IMGIDZ1"
#define INDEX_PACK_HEADER_SIZE 40
#define INDEX_PACK2_MAGIC "IMGIDZ2"
#define INDEX_PACK2_HEADER_SIZE 80
#define INDEX_PACK_FIRST_OFF8 8 /* no record starts before block offset 64 (the superblock) */
#define INDEX_PACK_MIN_ENTRIES 1024 /* smaller indexes are read as they are */
#define INDEX_PACK_LEVEL 9
#define INDEX_PACK2_LEVEL 3 /* zstd level of a version 2 payload (written at block_open) */

/* Encodes n entries (n * INDEX_ENTRY_SIZE bytes, index file order) of block
 * `id`, whose records end at block offset `end`, into *out (malloc'd, owned
 * by the caller) of *out_len bytes. Returns 0 or -ENOMEM / IMG_EINVAL. */
int index_pack_encode(uint64_t id, uint64_t end, const uint8_t *entries, uint32_t n,
                      uint8_t **out, size_t *out_len);

/* Decodes a packed index read from disk (hostile): it must be of block
 * `id`, hold at most max_n entries and cover at most `file_size` bytes of
 * the block file. Returns 0 with *entries (malloc'd, n * INDEX_ENTRY_SIZE
 * bytes, owned by the caller) and *n, or IMG_EFORMAT (anything wrong),
 * -ENOMEM. */
int index_pack_decode(const uint8_t *in, size_t len, uint64_t id, uint32_t max_n,
                      uint64_t file_size, uint8_t **entries, uint32_t *n);

/* What a version 2 packed index restores beside the RAM index. */
struct index_pack_meta {
    uint32_t n;             /* index file entries it stands for */
    uint64_t tail;          /* block offset after the last record when written */
    uint32_t next_seq;      /* the block's next seq then */
    uint64_t deleted_bytes; /* the block's deleted bytes then */
    uint8_t last[INDEX_ENTRY_SIZE]; /* the n-th entry, as the index file holds it */
};

/* Reads the packed index at `path` for block `id` whose index file idx_fd
 * holds idx_size bytes and whose block file holds file_size bytes. Returns
 * 0 when it is believable and covers no more entries than the index file
 * holds (nor max_n), with *n the entries covered and either *entries
 * (version 1: malloc'd, *n decoded entries, owned by the caller) or, with
 * *entries NULL, *ix (version 2: an index_seal'ed RAM index, owned by the
 * caller) and *meta; -ENOENT when there is none or the index is too small
 * to have one; IMG_EFORMAT or -errno (*n 0 and *entries NULL then). *ix
 * is left empty unless 0 is returned with *entries NULL. */
int index_pack_load(const char *path, uint64_t id, int idx_fd, uint64_t idx_size, uint32_t max_n,
                    uint64_t file_size, uint8_t **entries, uint32_t *n, struct index *ix,
                    struct index_pack_meta *meta);

/* Writes the version 2 packed index of block `id` to `path` (atomically)
 * when the index file idx_fd holds at least INDEX_PACK_MIN_ENTRIES entries
 * more than *packed (the entries of the packed copy in use), which is then
 * updated: `ix` must be the RAM index of exactly those entries; it is
 * written only when fully packed (index_seal'ed, no plain tail). meta gives
 * tail, next_seq and deleted_bytes (n and last are read from idx_fd).
 * Returns 0 (also when nothing was due or ix is not fully packed) or an
 * error. */
int index_pack_write(const char *path, uint64_t id, int idx_fd, const struct index *ix,
                     const struct index_pack_meta *meta, uint32_t *packed);

#endif
