/* index.h - per-block file index: dense in RAM, append-only on disk.
 *
 * In RAM, seq i maps to an 8-byte entry (offset / 8, size | deleted bit), so a
 * block of N files costs 8 bytes per file plus array slack. Sequence numbers
 * start at 1; entry 0 is never used (offset 0 holds the block's superblock).
 *
 * On disk (<id>.idx): a 16-byte header (magic "IMGIDX1\0", block id u64 LE)
 * followed by 12-byte entries {seq u32, offset/8 u32, size u32 with bit 31 =
 * tombstone}, little-endian, one per record in block-file order. The index
 * file is never fsync'd: it may lag the block file, and the block file is
 * the truth (see block.h, recovery). */
#ifndef DS_INDEX_H
#define DS_INDEX_H

#include <stddef.h>
#include <stdint.h>

#define INDEX_MAGIC "IMGIDX1"
#define INDEX_HEADER_SIZE 16
#define INDEX_ENTRY_SIZE 12
#define INDEX_DELETED 0x80000000u

struct index {
    uint32_t *off8;   /* [seq] offset / 8; 0 = no such file */
    uint32_t *size;   /* [seq] data size | INDEX_DELETED */
    uint32_t cap;     /* allocated entries */
    uint32_t max_seq; /* highest seq present */
    uint32_t live;    /* files not deleted */
};

void index_init(struct index *ix);

/* Frees the arrays; the struct may be reused after index_init. NULL-safe. */
void index_free(struct index *ix);

/* Makes room for seqs below `n` in one allocation of exactly n entries (no
 * doubling slack), e.g. sized from an index file's length before loading it.
 * Returns 0 (also when the room exists already) or -ENOMEM (index
 * unchanged). */
int index_reserve(struct index *ix, uint32_t n);

/* Records file `seq` at `offset` (multiple of 8) with `size` bytes. Returns
 * 0, -ENOMEM (index unchanged), or IMG_EINVAL for seq 0 or a bad offset. */
int index_put(struct index *ix, uint32_t seq, uint64_t offset, uint32_t size);

/* Marks `seq` deleted. Returns 0 or IMG_ENOTFOUND. */
int index_delete(struct index *ix, uint32_t seq);

/* Looks up `seq`. Returns 0 with *offset, *size, *deleted filled, or
 * IMG_ENOTFOUND. */
int index_get(const struct index *ix, uint32_t seq, uint64_t *offset, uint32_t *size,
              int *deleted);

/* Encodes one on-disk entry into out[INDEX_ENTRY_SIZE]. */
void index_encode_entry(uint32_t seq, uint64_t offset, uint32_t size, int tombstone,
                        uint8_t *out);

/* Decodes one on-disk entry from in[INDEX_ENTRY_SIZE]: the inverse of
 * index_encode_entry. No validation: the caller checks the values. */
void index_decode_entry(const uint8_t *in, uint32_t *seq, uint64_t *offset, uint32_t *size,
                        int *tombstone);

#endif
