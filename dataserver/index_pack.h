/* index_pack.h - compact copies of sealed blocks' index files (<id>.idz,
 * docs/storage.md "Packed index").
 *
 * A sealed block's index entries rarely change (only tombstones are added),
 * so block_open keeps a packed copy of them beside the index file: the 12-byte
 * entries turned into three columns of deltas (seq, offset/8, size), one
 * zstd frame. A restart reads the packed copy instead of those entries and
 * only the index file's entries after them. The index file itself is never
 * changed: the packed copy is an accelerator, and any doubt about it (bad
 * check, another block, fewer entries in the index file than it claims, a
 * block file shorter than it covered) makes block_open ignore and remove it.
 * Storage engine: calls base/, codec.c and index.h only. */
#ifndef DS_INDEX_PACK_H
#define DS_INDEX_PACK_H

#include <stddef.h>
#include <stdint.h>

#define INDEX_PACK_MAGIC "IMGIDZ1"
#define INDEX_PACK_HEADER_SIZE 40
#define INDEX_PACK_MIN_ENTRIES 1024 /* smaller indexes are read as they are */
#define INDEX_PACK_LEVEL 9

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

/* Reads the packed index at `path` for block `id` whose index file holds
 * idx_size bytes and whose block file holds file_size bytes: 0 with
 * *entries (malloc'd) and *n when it is believable and covers no more
 * entries than the index file holds (nor max_n); -ENOENT when there is
 * none or the index is too small to have one; IMG_EFORMAT or -errno. */
int index_pack_load(const char *path, uint64_t id, uint64_t idx_size, uint32_t max_n,
                    uint64_t file_size, uint8_t **entries, uint32_t *n);

/* Writes the packed copy of the index file idx_fd's entries to `path`
 * (atomically) when it holds at least INDEX_PACK_MIN_ENTRIES more than
 * *packed (the entries of the packed copy in use), which is then updated.
 * `end`: the block's tail. Returns 0 (also when nothing was due) or an
 * error. */
int index_pack_write(const char *path, uint64_t id, int idx_fd, uint64_t end, uint32_t *packed);

#endif
