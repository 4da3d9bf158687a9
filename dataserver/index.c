/* index.c - the per-block file index: seq -> (offset, size, deleted).
 *
 * Sequence numbers are dense inside a block and files take them in
 * block-file order, so a record's offset grows with its seq and the next
 * record's offset bounds its length. The index keeps two forms (index.h):
 * a plain tail of two u32 arrays indexed by seq for the newest seqs, where
 * appends land, and packed groups of INDEX_GROUP seqs for everything older,
 * looked up in O(1) (one group header, two or three bit fields). index_put
 * packs whole groups as the tail grows past 2 * INDEX_TAIL_KEEP seqs;
 * index_seal packs the rest. Packing needs records in order (each one
 * starting at or after the end of the one before, by seq); an index fed
 * anything else (only hostile or damaged input; tests) stays plain for
 * good, which costs RAM, never a wrong answer. Sizes come back exactly: a
 * seq's slack field holds the bytes between the end of its data and the
 * next seq's offset (its padding to NEEDLE_ALIGN, plus any tombstones or
 * skipped records in between).
 * The on-disk form (<id>.idx) is an append-only list of 12-byte entries; this
 * file only encodes entries, block.c reads and writes the file. */
#include "dataserver/index.h"
#include "base/le.h"

#include "base/err.h"
#include "dataserver/needle.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define INDEX_MIN_CAP 64u
#define INDEX_OFF_SHIFT 3 /* offsets are multiples of 8: stored as offset >> 3 */
#define INDEX_ENTRY_OFF_SEQ 0
#define INDEX_ENTRY_OFF_OFF8 4
#define INDEX_ENTRY_OFF_SIZE 8
#define BITS_PAD 8 /* zero bytes after the last field: fields are read 8 bytes at a time */

_Static_assert(INDEX_ENTRY_OFF_SIZE + 4 == INDEX_ENTRY_SIZE, "index entry is three u32");
_Static_assert(sizeof(INDEX_MAGIC) == 8, "index magic with its NUL fills 8 bytes");
_Static_assert(INDEX_GROUP == 64, "a group's deleted bits fill one u64");
_Static_assert(sizeof(struct index_group) == 24, "24 bytes per group of 64 seqs");
_Static_assert(INDEX_TAIL_KEEP % INDEX_GROUP == 0, "the tail is packed by whole groups");
_Static_assert(1u << INDEX_OFF_SHIFT == NEEDLE_ALIGN, "offsets are record-aligned");

/* Record length in units of 8 bytes of a file of `size` bytes. */
static uint64_t rec8(uint32_t size)
{
    return ((uint64_t)NEEDLE_HEADER_SIZE + size + NEEDLE_ALIGN - 1) >> INDEX_OFF_SHIFT;
}

static unsigned bits_for(uint64_t v)
{
    return v ? 64u - (unsigned)__builtin_clzll(v) : 0;
}

/* Field of w (<= 32) bits at bit `bit` of `bits`. */
static uint32_t field_get(const uint8_t *bits, uint64_t bit, unsigned w)
{
    if (w == 0)
        return 0;
    uint64_t v = le_get64(bits + (bit >> 3)) >> (bit & 7);
    return (uint32_t)(v & ((UINT64_C(1) << w) - 1));
}

/* Stores v (< 2^w, w <= 32) at bit `bit` of zero-filled `bits`. */
static void field_put(uint8_t *bits, uint64_t bit, unsigned w, uint32_t v)
{
    if (w == 0)
        return;
    uint64_t x = le_get64(bits + (bit >> 3)) | ((uint64_t)v << (bit & 7));
    le_put64(bits + (bit >> 3), x);
}

void index_init(struct index *ix)
{
    memset(ix, 0, sizeof(*ix));
}

void index_free(struct index *ix)
{
    if (!ix)
        return;
    free(ix->groups);
    free(ix->bits);
    free(ix->off8);
    free(ix->size);
    index_init(ix);
}

size_t index_ram(const struct index *ix)
{
    return (size_t)ix->groups_cap * sizeof(*ix->groups) + ix->bits_cap +
           (size_t)ix->cap * (sizeof(*ix->off8) + sizeof(*ix->size));
}

/* ---- the packed part ---- */

/* Offset / 8 of packed seq `seq` (present or not). */
static uint64_t packed_off(const struct index *ix, uint32_t seq)
{
    const struct index_group *g = &ix->groups[seq / INDEX_GROUP];
    uint32_t k = seq % INDEX_GROUP;
    return (uint64_t)g->base + (uint64_t)k * g->step +
           field_get(ix->bits, (uint64_t)g->pos * 8 + (uint64_t)k * g->w_off, g->w_off);
}

/* Looks up a packed seq: 0 with *off8 and *size, or IMG_ENOTFOUND. */
static int packed_get(const struct index *ix, uint32_t seq, uint64_t *off8, uint32_t *size)
{
    const struct index_group *g = &ix->groups[seq / INDEX_GROUP];
    uint32_t k = seq % INDEX_GROUP;
    uint64_t off = packed_off(ix, seq);
    uint64_t next = k + 1 < INDEX_GROUP ? packed_off(ix, seq + 1) : g[1].base;
    if (next <= off || next > g[1].base)
        return IMG_ENOTFOUND;
    uint64_t slack = field_get(ix->bits,
                               (uint64_t)g->pos * 8 + (uint64_t)INDEX_GROUP * g->w_off +
                                   (uint64_t)k * g->w_slack,
                               g->w_slack);
    uint64_t bytes = (next - off) << INDEX_OFF_SHIFT;
    if (bytes < NEEDLE_HEADER_SIZE + slack || bytes - NEEDLE_HEADER_SIZE - slack > NEEDLE_MAX_DATA)
        return IMG_ENOTFOUND; /* never from pack_to: only a damaged form read from disk */
    *off8 = off;
    *size = (uint32_t)(bytes - NEEDLE_HEADER_SIZE - slack);
    return 0;
}

/* Widths and step of one group about to be packed. */
struct group_plan {
    uint32_t step;
    uint8_t w_off, w_slack;
};

/* Grows groups to hold `n` entries and bits to hold `len` bytes plus the
 * padding. Returns 0 or -ENOMEM (nothing lost). */
static int packed_reserve(struct index *ix, uint32_t n, size_t len)
{
    if (n > ix->groups_cap) {
        uint64_t ncap = ix->groups_cap ? (uint64_t)ix->groups_cap * 2 : 16;
        while (ncap < n)
            ncap *= 2;
        struct index_group *g = realloc(ix->groups, (size_t)ncap * sizeof(*g));
        if (!g)
            return -ENOMEM;
        ix->groups = g;
        ix->groups_cap = (uint32_t)ncap;
    }
    if (len + BITS_PAD > ix->bits_cap || !ix->bits) {
        size_t ncap = ix->bits_cap ? ix->bits_cap * 2 : 256;
        while (ncap < len + BITS_PAD)
            ncap *= 2;
        uint8_t *b = realloc(ix->bits, ncap);
        if (!b)
            return -ENOMEM;
        memset(b + ix->bits_cap, 0, ncap - ix->bits_cap);
        ix->bits = b;
        ix->bits_cap = ncap;
    }
    return 0;
}

/* Moves the tail's seqs [npacked, upto) into packed groups (upto a
 * multiple of INDEX_GROUP above npacked; seqs past the tail's arrays are
 * absent). The packed part's end (its last group's bound) is the offset of
 * the next present seq in the tail, so that later packs continue it
 * exactly; `final` (nothing after: index_seal) makes it the end of the last
 * record. Without a next seq (not final) nothing is packed. Records out of
 * order, or a first record not at the packed part's end, set ix->plain
 * instead (returns 0, nothing packed). Returns 0 or -ENOMEM (index
 * unchanged). */
static int pack_to(struct index *ix, uint32_t upto, int final)
{
    uint32_t n = upto - ix->npacked, ng = n / INDEX_GROUP, g0 = ix->npacked / INDEX_GROUP;
    uint64_t end = ix->groups ? ix->groups[g0].base : 0, first = 0;
    int have_next = final;
    /* Offsets in order, every record past the end of the one before, up to
     * the first present seq after the range. */
    for (uint32_t i = 0; i < ix->cap && (i < n || !have_next); i++) {
        if (!ix->off8[i])
            continue;
        if (ix->off8[i] < end || (!first && ix->groups && ix->off8[i] != end)) {
            ix->plain = 1;
            return 0;
        }
        first = first ? first : ix->off8[i];
        if (i >= n) {
            end = ix->off8[i]; /* the next seq's offset bounds the range */
            have_next = 1;
            break;
        }
        end = ix->off8[i] + rec8(ix->size[i] & ~INDEX_DELETED);
    }
    if (!have_next)
        return 0;
    if (end > UINT32_MAX) {
        ix->plain = 1;
        return 0;
    }
    uint32_t *o = malloc((size_t)n * sizeof(*o));
    struct group_plan *plan = o ? malloc((size_t)ng * sizeof(*plan)) : NULL;
    if (!plan) {
        free(o);
        return -ENOMEM;
    }
    /* An absent seq takes the offset of the next present one. */
    uint64_t next = end;
    for (uint32_t i = n; i-- > 0;) {
        if (i < ix->cap && ix->off8[i])
            next = ix->off8[i];
        o[i] = (uint32_t)next;
    }
    size_t len = ix->bits_len;
    for (uint32_t j = 0; j < ng; j++) {
        const uint32_t *go = o + (size_t)j * INDEX_GROUP;
        uint32_t step = UINT32_MAX, maxf = 0;
        uint64_t maxs = 0;
        for (uint32_t k = 1; k < INDEX_GROUP; k++)
            if (go[k] - go[k - 1] < step)
                step = go[k] - go[k - 1];
        for (uint32_t k = 0; k < INDEX_GROUP; k++) {
            uint32_t i = j * INDEX_GROUP + k;
            uint32_t f = go[k] - go[0] - k * step;
            maxf = f > maxf ? f : maxf;
            if (i < ix->cap && ix->off8[i]) {
                uint64_t nx = i + 1 < n ? o[i + 1] : end;
                uint64_t s = ((nx - go[k]) << INDEX_OFF_SHIFT) - NEEDLE_HEADER_SIZE -
                             (ix->size[i] & ~INDEX_DELETED);
                maxs = s > maxs ? s : maxs;
            }
        }
        if (maxs > UINT32_MAX) { /* a gap of 4 GiB between two files: keep it plain */
            free(o);
            free(plan);
            ix->plain = 1;
            return 0;
        }
        plan[j] = (struct group_plan){step, (uint8_t)bits_for(maxf), (uint8_t)bits_for(maxs)};
        len += (size_t)INDEX_GROUP / 8 * (plan[j].w_off + plan[j].w_slack);
    }
    if (packed_reserve(ix, g0 + ng + 1, len) != 0) {
        free(o);
        free(plan);
        return -ENOMEM;
    }
    for (uint32_t j = 0; j < ng; j++) {
        struct index_group *g = &ix->groups[g0 + j];
        *g = (struct index_group){.base = o[(size_t)j * INDEX_GROUP],
                                  .pos = (uint32_t)ix->bits_len,
                                  .step = plan[j].step,
                                  .w_off = plan[j].w_off,
                                  .w_slack = plan[j].w_slack};
        uint64_t bit = (uint64_t)g->pos * 8, sbit = bit + (uint64_t)INDEX_GROUP * g->w_off;
        for (uint32_t k = 0; k < INDEX_GROUP; k++) {
            uint32_t i = j * INDEX_GROUP + k;
            field_put(ix->bits, bit + (uint64_t)k * g->w_off, g->w_off,
                      o[i] - g->base - k * g->step);
            if (i >= ix->cap || !ix->off8[i])
                continue;
            uint64_t nx = i + 1 < n ? o[i + 1] : end;
            uint32_t sz = ix->size[i] & ~INDEX_DELETED;
            field_put(ix->bits, sbit + (uint64_t)k * g->w_slack, g->w_slack,
                      (uint32_t)(((nx - o[i]) << INDEX_OFF_SHIFT) - NEEDLE_HEADER_SIZE - sz));
            if (ix->size[i] & INDEX_DELETED)
                g->deleted |= UINT64_C(1) << k;
        }
        ix->bits_len += (size_t)INDEX_GROUP / 8 * (g->w_off + g->w_slack);
    }
    ix->groups[g0 + ng] = (struct index_group){.base = (uint32_t)end};
    free(o);
    free(plan);
    /* The tail keeps what was not packed, from its first slot. */
    if (n < ix->cap) {
        memmove(ix->off8, ix->off8 + n, (size_t)(ix->cap - n) * sizeof(*ix->off8));
        memmove(ix->size, ix->size + n, (size_t)(ix->cap - n) * sizeof(*ix->size));
        memset(ix->off8 + ix->cap - n, 0, (size_t)n * sizeof(*ix->off8));
        memset(ix->size + ix->cap - n, 0, (size_t)n * sizeof(*ix->size));
    } else if (ix->cap) {
        memset(ix->off8, 0, (size_t)ix->cap * sizeof(*ix->off8));
        memset(ix->size, 0, (size_t)ix->cap * sizeof(*ix->size));
    }
    ix->npacked = upto;
    return 0;
}

/* Turns the whole index back into plain arrays (a seq below npacked was
 * put) and keeps it so. Returns 0 or -ENOMEM (index unchanged). */
static int unpack(struct index *ix)
{
    uint64_t ncap = (uint64_t)ix->npacked + ix->cap;
    uint32_t *o = calloc((size_t)ncap, sizeof(*o));
    uint32_t *s = o ? calloc((size_t)ncap, sizeof(*s)) : NULL;
    if (!s) {
        free(o);
        return -ENOMEM;
    }
    for (uint32_t seq = 1; seq < ix->npacked; seq++) {
        uint64_t off8;
        uint32_t size;
        if (packed_get(ix, seq, &off8, &size) != 0)
            continue;
        o[seq] = (uint32_t)off8;
        s[seq] = size | ((ix->groups[seq / INDEX_GROUP].deleted >> (seq % INDEX_GROUP)) & 1
                             ? INDEX_DELETED
                             : 0);
    }
    if (ix->cap) {
        memcpy(o + ix->npacked, ix->off8, (size_t)ix->cap * sizeof(*o));
        memcpy(s + ix->npacked, ix->size, (size_t)ix->cap * sizeof(*s));
    }
    free(ix->groups);
    free(ix->bits);
    free(ix->off8);
    free(ix->size);
    ix->groups = NULL;
    ix->bits = NULL;
    ix->groups_cap = 0;
    ix->bits_len = ix->bits_cap = 0;
    ix->off8 = o;
    ix->size = s;
    ix->cap = (uint32_t)ncap;
    ix->npacked = 0;
    ix->plain = 1;
    return 0;
}

/* ---- the plain tail ---- */

/* Makes room for tail slot `i`, doubling the capacity as often as needed. */
static int grow(struct index *ix, uint32_t i)
{
    if (i < ix->cap)
        return 0;
    uint64_t ncap = ix->cap ? ix->cap : INDEX_MIN_CAP;
    while (ncap <= i)
        ncap *= 2;
    uint32_t *o = realloc(ix->off8, ncap * sizeof(*o));
    if (!o)
        return -ENOMEM;
    ix->off8 = o;
    uint32_t *s = realloc(ix->size, ncap * sizeof(*s));
    if (!s)
        return -ENOMEM; /* the grown first array is kept, cap is not raised */
    ix->size = s;
    memset(o + ix->cap, 0, (ncap - ix->cap) * sizeof(*o));
    memset(s + ix->cap, 0, (ncap - ix->cap) * sizeof(*s));
    ix->cap = (uint32_t)ncap;
    return 0;
}

int index_put(struct index *ix, uint32_t seq, uint64_t offset, uint32_t size)
{
    if (seq == 0 || seq > INDEX_MAX_SEQ || offset == 0 || offset % 8 != 0 ||
        (offset >> INDEX_OFF_SHIFT) > UINT32_MAX || size > NEEDLE_MAX_DATA)
        return IMG_EINVAL;
    if (seq < ix->npacked) {
        int rc = unpack(ix);
        if (rc != 0)
            return rc;
    }
    uint32_t i = seq - ix->npacked;
    int rc = grow(ix, i);
    if (rc != 0)
        return rc;
    if (ix->off8[i] == 0 || (ix->size[i] & INDEX_DELETED))
        ix->live++;
    ix->off8[i] = (uint32_t)(offset >> INDEX_OFF_SHIFT);
    ix->size[i] = size;
    if (seq > ix->max_seq)
        ix->max_seq = seq;
    if (!ix->plain && (uint64_t)ix->max_seq + 1 - ix->npacked >= 2 * INDEX_TAIL_KEEP) {
        uint32_t upto = (ix->max_seq + 1 - INDEX_TAIL_KEEP) / INDEX_GROUP * INDEX_GROUP;
        if (upto > ix->npacked)
            pack_to(ix, upto, 0); /* -ENOMEM: stays in the tail, still right */
    }
    return 0;
}

int index_seal(struct index *ix)
{
    if (ix->max_seq == 0)
        return 0;
    if (!ix->plain && ix->max_seq >= ix->npacked) {
        uint32_t upto = (ix->max_seq / INDEX_GROUP + 1) * INDEX_GROUP;
        int rc = pack_to(ix, upto, 1);
        if (rc != 0)
            return rc;
    }
    if (ix->plain || ix->max_seq >= ix->npacked)
        return 0; /* records out of order: the plain arrays stay */
    free(ix->off8);
    free(ix->size);
    ix->off8 = ix->size = NULL;
    ix->cap = 0;
    uint32_t n = ix->npacked / INDEX_GROUP + 1;
    if (ix->groups && n < ix->groups_cap) {
        struct index_group *g = realloc(ix->groups, (size_t)n * sizeof(*g));
        if (g) {
            ix->groups = g;
            ix->groups_cap = n;
        }
    }
    if (ix->bits && ix->bits_len + BITS_PAD < ix->bits_cap) {
        uint8_t *b = realloc(ix->bits, ix->bits_len + BITS_PAD);
        if (b) {
            ix->bits = b;
            ix->bits_cap = ix->bits_len + BITS_PAD;
        }
    }
    return 0;
}

int index_check_packed(const struct index *ix, uint64_t lo, uint64_t hi)
{
    if (ix->npacked == 0 || ix->npacked % INDEX_GROUP != 0 || ix->npacked > INDEX_MAX_SEQ ||
        ix->max_seq >= ix->npacked || ix->live > ix->max_seq || ix->cap != 0 || ix->plain ||
        !ix->groups || !ix->bits || ix->groups_cap != ix->npacked / INDEX_GROUP + 1 ||
        ix->bits_cap != ix->bits_len + BITS_PAD)
        return IMG_EFORMAT;
    uint32_t ng = ix->npacked / INDEX_GROUP;
    for (uint32_t j = 0; j <= ng; j++) {
        const struct index_group *g = &ix->groups[j];
        if (g->base < lo || g->base > hi || (j > 0 && g->base < g[-1].base) || g->zero)
            return IMG_EFORMAT;
        if (j == ng) /* the end: only its base */
            return g->pos || g->step || g->w_off || g->w_slack || g->deleted ? IMG_EFORMAT : 0;
        if (g->w_off > 32 || g->w_slack > 32 ||
            (uint64_t)g->pos + (size_t)INDEX_GROUP / 8 * (g->w_off + g->w_slack) > ix->bits_len)
            return IMG_EFORMAT;
    }
    return IMG_EFORMAT;
}

int index_delete(struct index *ix, uint32_t seq)
{
    if (seq == 0)
        return IMG_ENOTFOUND;
    if (seq < ix->npacked) {
        uint64_t off8;
        uint32_t size;
        if (packed_get(ix, seq, &off8, &size) != 0)
            return IMG_ENOTFOUND;
        uint64_t bit = UINT64_C(1) << (seq % INDEX_GROUP);
        struct index_group *g = &ix->groups[seq / INDEX_GROUP];
        if (!(g->deleted & bit)) {
            g->deleted |= bit;
            ix->live--;
        }
        return 0;
    }
    uint32_t i = seq - ix->npacked;
    if (i >= ix->cap || ix->off8[i] == 0)
        return IMG_ENOTFOUND;
    if (!(ix->size[i] & INDEX_DELETED)) {
        ix->size[i] |= INDEX_DELETED;
        ix->live--;
    }
    return 0;
}

int index_get(const struct index *ix, uint32_t seq, uint64_t *offset, uint32_t *size,
              int *deleted)
{
    if (seq == 0)
        return IMG_ENOTFOUND;
    if (seq < ix->npacked) {
        uint64_t off8;
        if (packed_get(ix, seq, &off8, size) != 0)
            return IMG_ENOTFOUND;
        *offset = off8 << INDEX_OFF_SHIFT;
        *deleted = (int)((ix->groups[seq / INDEX_GROUP].deleted >> (seq % INDEX_GROUP)) & 1);
        return 0;
    }
    uint32_t i = seq - ix->npacked;
    if (i >= ix->cap || ix->off8[i] == 0)
        return IMG_ENOTFOUND;
    *offset = (uint64_t)ix->off8[i] << INDEX_OFF_SHIFT;
    *size = ix->size[i] & ~INDEX_DELETED;
    *deleted = (ix->size[i] & INDEX_DELETED) != 0;
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
