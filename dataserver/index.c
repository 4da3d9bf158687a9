/* index.c - the per-block file index: seq -> (offset, size, deleted).
 *
 * Sequence numbers are dense inside a block, so the index is two parallel
 * arrays indexed by seq (struct-of-arrays keeps each entry at exactly 8 bytes:
 * offset / 8 in a u32 and size with a deleted bit in a u32). An index loaded
 * from its file is sized exactly once (index_reserve: 8 bytes per entry of the
 * file); after that, and for new blocks, the arrays grow by doubling.
 * The on-disk form (<id>.idx) is an append-only list of 12-byte entries; this
 * file only encodes entries, block.c reads and writes the file. */
#include "dataserver/index.h"
#include "base/le.h"

#include "base/err.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define INDEX_MIN_CAP 64u
#define INDEX_OFF_SHIFT 3 /* offsets are multiples of 8: stored as offset >> 3 */
#define INDEX_ENTRY_OFF_SEQ 0
#define INDEX_ENTRY_OFF_OFF8 4
#define INDEX_ENTRY_OFF_SIZE 8

_Static_assert(INDEX_ENTRY_OFF_SIZE + 4 == INDEX_ENTRY_SIZE, "index entry is three u32");
_Static_assert(sizeof(INDEX_MAGIC) == 8, "index magic with its NUL fills 8 bytes");

void index_init(struct index *ix)
{
    memset(ix, 0, sizeof(*ix));
}

void index_free(struct index *ix)
{
    if (!ix)
        return;
    free(ix->off8);
    free(ix->size);
    index_init(ix);
}

/* Resizes both arrays to `ncap` (> cap) entries, zero-filling the new ones.
 * On failure the index is unchanged (a grown first array is kept but cap is
 * not raised, so nothing reads past it). */
static int resize(struct index *ix, uint64_t ncap)
{
    uint32_t *o = realloc(ix->off8, ncap * sizeof(*o));
    if (!o)
        return -ENOMEM;
    ix->off8 = o;
    uint32_t *s = realloc(ix->size, ncap * sizeof(*s));
    if (!s)
        return -ENOMEM;
    ix->size = s;
    memset(o + ix->cap, 0, (ncap - ix->cap) * sizeof(*o));
    memset(s + ix->cap, 0, (ncap - ix->cap) * sizeof(*s));
    ix->cap = (uint32_t)ncap;
    return 0;
}

/* Makes room for entry `seq`, doubling the capacity as often as needed. */
static int grow(struct index *ix, uint32_t seq)
{
    if (seq < ix->cap)
        return 0;
    uint64_t ncap = ix->cap ? ix->cap : INDEX_MIN_CAP;
    while (ncap <= seq)
        ncap *= 2;
    if (ncap > UINT32_MAX)
        ncap = UINT32_MAX;
    if (ncap <= seq)
        return IMG_EINVAL;
    return resize(ix, ncap);
}

int index_reserve(struct index *ix, uint32_t n)
{
    if (n <= ix->cap)
        return 0;
    return resize(ix, n);
}

int index_put(struct index *ix, uint32_t seq, uint64_t offset, uint32_t size)
{
    if (seq == 0 || offset == 0 || offset % 8 != 0 || (offset >> INDEX_OFF_SHIFT) > UINT32_MAX ||
        (size & INDEX_DELETED))
        return IMG_EINVAL;
    int rc = grow(ix, seq);
    if (rc != 0)
        return rc;
    if (ix->off8[seq] == 0 || (ix->size[seq] & INDEX_DELETED))
        ix->live++;
    ix->off8[seq] = (uint32_t)(offset >> INDEX_OFF_SHIFT);
    ix->size[seq] = size;
    if (seq > ix->max_seq)
        ix->max_seq = seq;
    return 0;
}

int index_delete(struct index *ix, uint32_t seq)
{
    if (seq == 0 || seq >= ix->cap || ix->off8[seq] == 0)
        return IMG_ENOTFOUND;
    if (!(ix->size[seq] & INDEX_DELETED)) {
        ix->size[seq] |= INDEX_DELETED;
        ix->live--;
    }
    return 0;
}

int index_get(const struct index *ix, uint32_t seq, uint64_t *offset, uint32_t *size,
              int *deleted)
{
    if (seq == 0 || seq >= ix->cap || ix->off8[seq] == 0)
        return IMG_ENOTFOUND;
    *offset = (uint64_t)ix->off8[seq] << INDEX_OFF_SHIFT;
    *size = ix->size[seq] & ~INDEX_DELETED;
    *deleted = (ix->size[seq] & INDEX_DELETED) != 0;
    return 0;
}

void index_encode_entry(uint32_t seq, uint64_t offset, uint32_t size, int tombstone,
                        uint8_t *out)
{
    le_put32(out + INDEX_ENTRY_OFF_SEQ, seq);
    le_put32(out + INDEX_ENTRY_OFF_OFF8, (uint32_t)(offset >> INDEX_OFF_SHIFT));
    le_put32(out + INDEX_ENTRY_OFF_SIZE, (size & ~INDEX_DELETED) | (tombstone ? INDEX_DELETED : 0));
}

void index_decode_entry(const uint8_t *in, uint32_t *seq, uint64_t *offset, uint32_t *size,
                        int *tombstone)
{
    uint32_t sz = le_get32(in + INDEX_ENTRY_OFF_SIZE);
    *seq = le_get32(in + INDEX_ENTRY_OFF_SEQ);
    *offset = (uint64_t)le_get32(in + INDEX_ENTRY_OFF_OFF8) << INDEX_OFF_SHIFT;
    *size = sz & ~INDEX_DELETED;
    *tombstone = (sz & INDEX_DELETED) != 0;
}
