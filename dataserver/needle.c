/* needle.c - encoding, decoding and checking of block records (needles).
 *
 * A needle is the unit of storage inside a block file: a fixed 24-byte
 * little-endian header (layout in needle.h and docs/storage.md), the file's
 * bytes (or, format 3, a 16-byte encoding header and the encoded bytes), and
 * zero padding to NEEDLE_ALIGN. This module is pure: it never does
 * I/O, never allocates, and treats every byte handed to it as hostile (a
 * record read from disk may be anything). */
#include "dataserver/needle.h"
#include "base/le.h"

#include "base/crc16.h"
#include "base/crc32c.h"
#include "base/err.h"

#include <string.h>

/* Field offsets inside the header; the table in needle.h draws them. */
#define NH_OFF_MAGIC 0 /* NH_OFF_CHECK in format 2 */
#define NH_OFF_CHECK 0
#define NH_OFF_FLAGS 2
#define NH_OFF_MIME 3
#define NH_OFF_SEQ 4
#define NH_OFF_COOKIE 8
#define NH_OFF_SIZE 12
#define NH_OFF_CTIME 16
#define NH_OFF_CRC 20
#define NH_FIELD32 4

/* The encoding header of an encoded record's data (needle.h draws it). */
#define NE_OFF_CHECK 0
#define NE_OFF_ENCODING 2
#define NE_OFF_ZERO8 3
#define NE_OFF_SIZE 4
#define NE_OFF_CRC 8
#define NE_OFF_ZERO32 12
_Static_assert(NE_OFF_ZERO32 + NH_FIELD32 == NEEDLE_ENC_SIZE, "encoding header fields");
_Static_assert(NEEDLE_ENC_SIZE % NEEDLE_ALIGN == 0, "encoded bytes start aligned");

_Static_assert(NH_OFF_CRC + NH_FIELD32 == NEEDLE_HEADER_SIZE,
               "needle header fields must fill NEEDLE_HEADER_SIZE exactly");
_Static_assert(NEEDLE_HEADER_SIZE % NEEDLE_ALIGN == 0,
               "data must start aligned so that padding only follows it");
_Static_assert((NEEDLE_ALIGN & (NEEDLE_ALIGN - 1)) == 0, "NEEDLE_ALIGN is a power of two");

size_t needle_record_size(uint32_t data_len)
{
    uint64_t n = (uint64_t)NEEDLE_HEADER_SIZE + data_len;
    return (size_t)((n + NEEDLE_ALIGN - 1) & ~(uint64_t)(NEEDLE_ALIGN - 1));
}

/* The format-2 check: CRC-16 of every header byte after it. */
static uint16_t header_check(const uint8_t *in)
{
    return crc16(0, in + NH_OFF_FLAGS, NEEDLE_HEADER_SIZE - NH_OFF_FLAGS);
}

void needle_encode_header(const struct needle_header *h, uint8_t *out)
{
    out[NH_OFF_FLAGS] = h->flags;
    out[NH_OFF_MIME] = h->mime;
    le_put32(out + NH_OFF_SEQ, h->seq);
    le_put32(out + NH_OFF_COOKIE, h->cookie);
    le_put32(out + NH_OFF_SIZE, h->size);
    le_put32(out + NH_OFF_CTIME, h->ctime);
    le_put32(out + NH_OFF_CRC, h->data_crc);
    le_put16(out + NH_OFF_CHECK, (h->flags & NEEDLE_FLAG_HCRC) ? header_check(out) : NEEDLE_MAGIC);
}

int needle_decode_header(const uint8_t *in, struct needle_header *h)
{
    struct needle_header t;
    uint16_t check = (in[NH_OFF_FLAGS] & NEEDLE_FLAG_HCRC) ? header_check(in) : NEEDLE_MAGIC;
    if (le_get16(in + NH_OFF_CHECK) != check)
        return IMG_EFORMAT; /* not a record, or its header was damaged */
    t.flags = in[NH_OFF_FLAGS];
    t.mime = in[NH_OFF_MIME];
    t.seq = le_get32(in + NH_OFF_SEQ);
    t.cookie = le_get32(in + NH_OFF_COOKIE);
    t.size = le_get32(in + NH_OFF_SIZE);
    t.ctime = le_get32(in + NH_OFF_CTIME);
    t.data_crc = le_get32(in + NH_OFF_CRC);
    if (t.flags & ~NEEDLE_FLAGS_KNOWN)
        return IMG_EFORMAT;
    if (t.seq == 0 || t.size > NEEDLE_MAX_DATA)
        return IMG_EFORMAT;
    if ((t.flags & NEEDLE_FLAG_TOMBSTONE) && t.size != 0)
        return IMG_EFORMAT;
    /* Encoded: format 3 only (header checked), a file, room for its
     * encoding header. */
    if ((t.flags & NEEDLE_FLAG_ENCODED) &&
        (!(t.flags & NEEDLE_FLAG_HCRC) || (t.flags & NEEDLE_FLAG_TOMBSTONE) ||
         t.size < NEEDLE_ENC_SIZE))
        return IMG_EFORMAT;
    t.encoding = NEEDLE_ENC_NONE;
    t.stored_size = t.size;
    t.orig_size = t.size;
    t.orig_crc = t.data_crc;
    *h = t;
    return 0;
}

static uint16_t enc_check(const uint8_t *in)
{
    return crc16(0, in + NE_OFF_ENCODING, NEEDLE_ENC_SIZE - NE_OFF_ENCODING);
}

void needle_encode_enc(const struct needle_header *h, uint8_t *out)
{
    out[NE_OFF_ENCODING] = h->encoding;
    out[NE_OFF_ZERO8] = 0;
    le_put32(out + NE_OFF_SIZE, h->orig_size);
    le_put32(out + NE_OFF_CRC, h->orig_crc);
    le_put32(out + NE_OFF_ZERO32, 0);
    le_put16(out + NE_OFF_CHECK, enc_check(out));
}

int needle_decode_enc(const uint8_t *in, struct needle_header *h)
{
    if (le_get16(in + NE_OFF_CHECK) != enc_check(in))
        return IMG_EFORMAT;
    uint32_t size = le_get32(in + NE_OFF_SIZE);
    if (in[NE_OFF_ENCODING] != NEEDLE_ENC_ZSTD || in[NE_OFF_ZERO8] != 0 ||
        le_get32(in + NE_OFF_ZERO32) != 0 || size == 0 || size > NEEDLE_MAX_DATA)
        return IMG_EFORMAT;
    h->encoding = in[NE_OFF_ENCODING];
    h->orig_size = size;
    h->orig_crc = le_get32(in + NE_OFF_CRC);
    return 0;
}

void needle_build(uint8_t *out, struct needle_header *h, const void *data, uint32_t len)
{
    uint32_t pre = (h->flags & NEEDLE_FLAG_ENCODED) ? NEEDLE_ENC_SIZE : 0;
    uint8_t *p = out + NEEDLE_HEADER_SIZE;
    size_t total = needle_record_size(pre + len);
    if (pre)
        needle_encode_enc(h, p);
    if (len > 0)
        memcpy(p + pre, data, len);
    h->size = pre + len;
    h->data_crc = crc32c(0, p, h->size);
    h->stored_size = h->size;
    if (!pre) {
        h->encoding = NEEDLE_ENC_NONE;
        h->orig_size = h->size;
        h->orig_crc = h->data_crc;
    }
    needle_encode_header(h, out);
    memset(p + h->size, 0, total - NEEDLE_HEADER_SIZE - h->size);
}

int needle_verify(const uint8_t *rec, size_t len, uint32_t seq, uint32_t cookie,
                  struct needle_header *h)
{
    struct needle_header t;
    if (len < NEEDLE_HEADER_SIZE)
        return IMG_ECORRUPT;
    int rc = needle_decode_header(rec, &t);
    if (rc != 0)
        return rc;
    /* Another seq at the offset the index gave: the index is wrong (a seq
     * has one place in a block, for good), so this copy is damaged. */
    if (t.seq != seq)
        return IMG_ECORRUPT;
    /* A tombstone where a file should be means the offset no longer holds
     * that file; to a reader that is the same as a missing file. */
    if (t.cookie != cookie || (t.flags & NEEDLE_FLAG_TOMBSTONE))
        return IMG_ENOTFOUND;
    if (len - NEEDLE_HEADER_SIZE < t.size)
        return IMG_ECORRUPT;
    if (crc32c(0, rec + NEEDLE_HEADER_SIZE, t.size) != t.data_crc)
        return IMG_ECORRUPT;
    if ((t.flags & NEEDLE_FLAG_ENCODED) && needle_decode_enc(rec + NEEDLE_HEADER_SIZE, &t) != 0)
        return IMG_ECORRUPT;
    *h = t;
    return 0;
}
