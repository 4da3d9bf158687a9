/* index.h - per-block file index: packed in RAM, append-only on disk.
 *
 * In RAM (docs/storage.md "The index in RAM") seqs below `npacked` are
 * packed: groups of INDEX_GROUP consecutive seqs share a 24-byte header
 * (base offset, a step, two field widths, the group's deleted bits) and
 * each seq keeps two bit fields: its offset's distance from base + k*step
 * and its "slack", the bytes between the end of its data and the next
 * record's offset. A record's size is not stored: in an append-only block
 * the next record's offset bounds it, and the slack makes it exact. A block
 * of equal-sized files costs 0.375 bytes per file; 50 KB images about 3.
 * Seqs from `npacked` on (the open end of a block) sit in a plain tail of
 * two u32 arrays (offset / 8, size | deleted bit), 8 bytes per seq, which
 * index_put packs by whole groups once it holds 2 * INDEX_TAIL_KEEP seqs
 * (the newest INDEX_TAIL_KEEP stay plain); index_seal packs all of it.
 * Sequence numbers start at 1; seq 0 is never used (offset 0 holds the
 * block's superblock).
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
#define INDEX_GROUP 64          /* seqs per packed group (one u64 of deleted bits) */
#define INDEX_TAIL_KEEP 4096u   /* newest seqs index_put leaves plain */
#define INDEX_MAX_SEQ (UINT32_MAX - 2 * INDEX_GROUP) /* highest seq index_put takes */

/* One packed group: seqs [g * INDEX_GROUP, (g + 1) * INDEX_GROUP). The
 * offset / 8 of its seq k is base + k * step + field k of w_off bits; an
 * absent seq has the offset of the next present one (or of the packed
 * part's end), so seq k is present iff the next seq's offset is larger.
 * Its size is (next offset - offset) * 8 - NEEDLE_HEADER_SIZE - slack k. */
struct index_group {
    uint32_t base;    /* offset / 8 of seq g * INDEX_GROUP */
    uint32_t pos;     /* byte offset of the group's fields in index.bits */
    uint32_t step;
    uint8_t w_off;    /* bits per offset field (0..32) */
    uint8_t w_slack;  /* bits per slack field (0..32) */
    uint16_t zero;
    uint64_t deleted; /* bit k: seq g * INDEX_GROUP + k deleted */
};

struct index {
    /* Packed part: seqs [0, npacked), npacked a multiple of INDEX_GROUP;
     * groups[npacked / INDEX_GROUP] holds only `base`: the packed part's
     * end (offset / 8 after its last record). */
    struct index_group *groups;
    uint8_t *bits;       /* fields of every group, 8 zero bytes past the last */
    uint32_t npacked;
    uint32_t groups_cap; /* allocated groups */
    size_t bits_len;     /* used bytes of bits (without the 8 bytes of padding) */
    size_t bits_cap;
    /* Plain tail: seq s in [npacked, npacked + cap) at [s - npacked]. */
    uint32_t *off8;   /* offset / 8; 0 = no such file */
    uint32_t *size;   /* data size | INDEX_DELETED */
    uint32_t cap;     /* allocated tail entries */
    uint32_t max_seq; /* highest seq present */
    uint32_t live;    /* files not deleted */
    int plain;        /* 1: never packed again (records out of order, see index.c) */
};

void index_init(struct index *ix);

/* Frees the arrays; the struct may be reused after index_init. NULL-safe. */
void index_free(struct index *ix);

/* Records file `seq` at `offset` (multiple of 8) with `size` bytes. Returns
 * 0, -ENOMEM (index unchanged), or IMG_EINVAL for seq 0 or above
 * INDEX_MAX_SEQ, a bad offset or a size above NEEDLE_MAX_DATA. A seq below npacked (a record older than
 * the packed part: never in a sound block) turns the index back to plain
 * arrays for good. */
int index_put(struct index *ix, uint32_t seq, uint64_t offset, uint32_t size);

/* Marks `seq` deleted. Returns 0 or IMG_ENOTFOUND. */
int index_delete(struct index *ix, uint32_t seq);

/* Looks up `seq` (O(1) in either part). Returns 0 with *offset, *size,
 * *deleted filled, or IMG_ENOTFOUND. */
int index_get(const struct index *ix, uint32_t seq, uint64_t *offset, uint32_t *size,
              int *deleted);

/* Packs every seq up to max_seq (a sealed block: no new file will come)
 * and trims the arrays to their exact sizes. Returns 0 or -ENOMEM (the
 * index is then unchanged and still correct). */
int index_seal(struct index *ix);

/* Checks a packed index read from disk (hostile; index_pack.c fills the
 * struct): every seq packed, nothing plain, the arrays as sealed, widths
 * and field positions inside `bits`, group offsets / 8 never falling and
 * within [lo, hi]. Then every lookup stays inside the arrays and answers
 * offsets inside [lo, hi] * 8 (index_get checks each answer against its
 * group). Returns 0 or IMG_EFORMAT. O(groups). */
int index_check_packed(const struct index *ix, uint64_t lo, uint64_t hi);

/* Bytes of heap the index holds (arrays as allocated). */
size_t index_ram(const struct index *ix);

/* Encodes one on-disk entry into out[INDEX_ENTRY_SIZE]. */
void index_encode_entry(uint32_t seq, uint64_t offset, uint32_t size, int tombstone,
                        uint8_t *out);

/* Decodes one on-disk entry from in[INDEX_ENTRY_SIZE]: the inverse of
 * index_encode_entry. No validation: the caller checks the values. */
void index_decode_entry(const uint8_t *in, uint32_t *seq, uint64_t *offset, uint32_t *size,
                        int *tombstone);

#endif
