/* Unit tests of encoded records: the encoding header (dataserver/needle.c)
 * and compressing, choosing and decoding (dataserver/codec.c). */
#include "base/crc16.h"
#include "base/crc32c.h"
#include "base/err.h"
#include "dataserver/codec.h"
#include "dataserver/needle.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

/* An SVG-like text of about `len` bytes: compresses well, like the icons
 * of a catalogue. */
static char *svg(size_t len)
{
    char *s = malloc(len + 1);
    cr_assert_not_null(s);
    size_t n = (size_t)snprintf(s, len + 1, "<svg xmlns=\"http://www.w3.org/2000/svg\">");
    for (unsigned i = 0; n < len; i++)
        n += (size_t)snprintf(s + n, len + 1 - n,
                              "<path d=\"M%u %u L%u %u\" fill=\"#%06x\"/>\n", i % 97, i % 13,
                              i * 7 % 101, i % 5, (i * 2654435761u) & 0x3f3f3f);
    return s;
}

/* Builds an encoded record of data[len] into a fresh buffer (*rec_len). */
static uint8_t *encoded_record(const char *data, uint32_t len, struct needle_header *h,
                               size_t *rec_len)
{
    uint8_t *frame;
    uint32_t flen;
    cr_assert_eq(codec_encode(data, len, 3, &frame, &flen), 0, "an SVG must compress");
    *h = (struct needle_header){.flags = NEEDLE_FLAG_HCRC | NEEDLE_FLAG_ENCODED, .mime = 6,
                                .seq = 5, .cookie = 0xabcdef, .ctime = 1700000000,
                                .encoding = NEEDLE_ENC_ZSTD, .orig_size = len,
                                .orig_crc = crc32c(0, data, len)};
    *rec_len = needle_record_size(NEEDLE_ENC_SIZE + flen);
    uint8_t *rec = malloc(*rec_len);
    cr_assert_not_null(rec);
    needle_build(rec, h, frame, flen);
    free(frame);
    return rec;
}

Test(codec, encoded_record_roundtrip)
{
    char *s = svg(20000);
    uint32_t len = (uint32_t)strlen(s);
    struct needle_header h, g;
    size_t rl;
    uint8_t *rec = encoded_record(s, len, &h, &rl);
    cr_assert_lt(h.size, len * 9 / 10, "kept only when it saves 10 %%");
    cr_assert_eq(h.stored_size, h.size);
    cr_assert_eq(needle_verify(rec, rl, 5, 0xabcdef, &g), 0);
    cr_assert_eq(g.encoding, NEEDLE_ENC_ZSTD);
    cr_assert_eq(g.orig_size, len);
    cr_assert_eq(g.orig_crc, crc32c(0, s, len));
    cr_assert_eq(g.size, h.size, "size: the stored bytes");
    cr_assert_eq(g.data_crc, crc32c(0, rec + NEEDLE_HEADER_SIZE, g.size));
    uint8_t *out = malloc(len);
    cr_assert_eq(codec_decode(&g, rec + NEEDLE_HEADER_SIZE + NEEDLE_ENC_SIZE,
                              g.size - NEEDLE_ENC_SIZE, out), 0);
    cr_assert(memcmp(out, s, len) == 0, "the original bytes come back");
    /* The frame is a plain zstd frame any decoder reads (HTTP delivery). */
    unsigned long long cs = ZSTD_getFrameContentSize(rec + NEEDLE_HEADER_SIZE + NEEDLE_ENC_SIZE,
                                                     g.size - NEEDLE_ENC_SIZE);
    cr_assert_eq(cs, len);
    free(out);
    free(rec);
    free(s);
}

Test(codec, plain_record_describes_itself)
{
    const char data[] = "plain bytes";
    uint8_t rec[64];
    struct needle_header h = {.flags = NEEDLE_FLAG_HCRC, .seq = 1, .cookie = 2}, g;
    needle_build(rec, &h, data, sizeof(data) - 1);
    cr_assert_eq(needle_verify(rec, sizeof(rec), 1, 2, &g), 0);
    cr_assert_eq(g.encoding, NEEDLE_ENC_NONE);
    cr_assert_eq(g.orig_size, sizeof(data) - 1);
    cr_assert_eq(g.orig_crc, g.data_crc);
}

Test(codec, every_encoding_header_bit_is_checked)
{
    struct needle_header h = {.encoding = NEEDLE_ENC_ZSTD, .orig_size = 12345,
                              .orig_crc = 0x89abcdef}, g;
    uint8_t enc[NEEDLE_ENC_SIZE];
    needle_encode_enc(&h, enc);
    cr_assert_eq(needle_decode_enc(enc, &g), 0);
    cr_assert_eq(g.orig_size, 12345);
    cr_assert_eq(g.orig_crc, 0x89abcdef);
    for (int bit = 0; bit < NEEDLE_ENC_SIZE * 8; bit++) {
        enc[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        cr_assert_eq(needle_decode_enc(enc, &g), IMG_EFORMAT, "bit %d flipped unseen", bit);
        enc[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    /* A well-checked header with values out of range is refused too. */
    h.orig_size = 0;
    needle_encode_enc(&h, enc);
    cr_assert_eq(needle_decode_enc(enc, &g), IMG_EFORMAT);
    h.orig_size = NEEDLE_MAX_DATA + 1;
    needle_encode_enc(&h, enc);
    cr_assert_eq(needle_decode_enc(enc, &g), IMG_EFORMAT);
    h.orig_size = 10;
    h.encoding = 2;
    needle_encode_enc(&h, enc);
    cr_assert_eq(needle_decode_enc(enc, &g), IMG_EFORMAT, "unknown encoding");
}

Test(codec, encoded_flag_rules)
{
    uint8_t hb[NEEDLE_HEADER_SIZE];
    struct needle_header h = {.flags = NEEDLE_FLAG_ENCODED, .seq = 1, .size = 100}, g;
    needle_encode_header(&h, hb);
    cr_assert_eq(needle_decode_header(hb, &g), IMG_EFORMAT, "format 3 needs the header check");
    h.flags = NEEDLE_FLAG_ENCODED | NEEDLE_FLAG_HCRC | NEEDLE_FLAG_TOMBSTONE;
    h.size = 0;
    needle_encode_header(&h, hb);
    cr_assert_eq(needle_decode_header(hb, &g), IMG_EFORMAT, "a tombstone is never encoded");
    h.flags = NEEDLE_FLAG_ENCODED | NEEDLE_FLAG_HCRC;
    h.size = NEEDLE_ENC_SIZE - 1;
    needle_encode_header(&h, hb);
    cr_assert_eq(needle_decode_header(hb, &g), IMG_EFORMAT, "no room for the encoding header");
    h.size = NEEDLE_ENC_SIZE;
    needle_encode_header(&h, hb);
    cr_assert_eq(needle_decode_header(hb, &g), 0);
}

/* Rebuilds rec's stored CRC and header after its data was changed: a record
 * that every check of the stored bytes accepts. */
static void reseal(uint8_t *rec, struct needle_header *h)
{
    h->data_crc = crc32c(0, rec + NEEDLE_HEADER_SIZE, h->size);
    needle_encode_header(h, rec);
}

static int decode_rec(const uint8_t *rec, size_t rl, uint8_t *out)
{
    struct needle_header g;
    int rc = needle_verify(rec, rl, 5, 0xabcdef, &g);
    if (rc != 0)
        return rc;
    return codec_decode(&g, rec + NEEDLE_HEADER_SIZE + NEEDLE_ENC_SIZE,
                        g.size - NEEDLE_ENC_SIZE, out);
}

Test(codec, damaged_payload_is_corrupt)
{
    char *s = svg(30000);
    uint32_t len = (uint32_t)strlen(s);
    struct needle_header h;
    size_t rl;
    uint8_t *rec = encoded_record(s, len, &h, &rl);
    uint8_t *out = malloc(len + 4096);
    uint8_t *frame = rec + NEEDLE_HEADER_SIZE + NEEDLE_ENC_SIZE;
    uint32_t flen = h.size - NEEDLE_ENC_SIZE;

    /* A flipped bit anywhere in the stored bytes: the stored CRC sees it. */
    frame[flen / 2] ^= 0x10;
    cr_assert_eq(decode_rec(rec, rl, out), IMG_ECORRUPT);
    /* Resealed (a writer that stored a bad frame): decoding sees it. */
    reseal(rec, &h);
    cr_assert_eq(decode_rec(rec, rl, out), IMG_ECORRUPT);
    frame[flen / 2] ^= 0x10;
    reseal(rec, &h);
    cr_assert_eq(decode_rec(rec, rl, out), 0);

    /* The original's CRC or size recorded wrong. */
    struct needle_header bad = h;
    bad.orig_crc ^= 1;
    needle_encode_enc(&bad, rec + NEEDLE_HEADER_SIZE);
    reseal(rec, &h);
    cr_assert_eq(decode_rec(rec, rl, out), IMG_ECORRUPT);
    bad = h;
    bad.orig_size = len - 1;
    needle_encode_enc(&bad, rec + NEEDLE_HEADER_SIZE);
    reseal(rec, &h);
    cr_assert_eq(decode_rec(rec, rl, out), IMG_ECORRUPT, "the frame says another size");

    /* A frame cut short, and a frame that is not zstd at all. */
    struct needle_header g = h;
    cr_assert_eq(codec_decode(&g, frame, flen - 1, out), IMG_ECORRUPT);
    cr_assert_eq(codec_decode(&g, frame, 3, out), IMG_ECORRUPT);
    memset(frame, 'x', flen);
    cr_assert_eq(codec_decode(&g, frame, flen, out), IMG_ECORRUPT);
    free(out);
    free(rec);
    free(s);
}

Test(codec, frame_bigger_than_it_says_is_refused)
{
    /* A hostile frame claims orig_size but holds more: never written past
     * the buffer, refused. */
    char *s = svg(4000);
    uint32_t len = (uint32_t)strlen(s);
    size_t cap = ZSTD_compressBound(len);
    uint8_t *frame = malloc(cap);
    size_t n = ZSTD_compress(frame, cap, s, len, 3);
    cr_assert(!ZSTD_isError(n));
    /* Hide the content size: the decoder must not trust the buffer size. */
    ZSTD_CCtx *c = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, 0);
    n = ZSTD_compress2(c, frame, cap, s, len);
    ZSTD_freeCCtx(c);
    cr_assert(!ZSTD_isError(n));
    struct needle_header h = {.encoding = NEEDLE_ENC_ZSTD, .orig_size = 100,
                              .orig_crc = crc32c(0, s, 100)};
    uint8_t out[100];
    cr_assert_eq(codec_decode(&h, frame, (uint32_t)n, out), IMG_ECORRUPT);
    free(frame);
    free(s);
}

Test(codec, candidates)
{
    uint8_t buf[1024];
    memset(buf, 'a', sizeof(buf));
    cr_assert_eq(codec_candidate(6, buf, sizeof(buf)), 1, "SVG");
    cr_assert_eq(codec_candidate(0, buf, sizeof(buf)), 1, "octet-stream: tried");
    cr_assert_eq(codec_candidate(6, buf, CODEC_MIN_SIZE - 1), 0, "too small to pay");
    cr_assert_eq(codec_candidate(1, buf, sizeof(buf)), 0, "declared JPEG");
    cr_assert_eq(codec_candidate(2, buf, sizeof(buf)), 0, "declared PNG");
    memcpy(buf, "\xFF\xD8\xFF\xE0", 4);
    cr_assert_eq(codec_candidate(6, buf, sizeof(buf)), 0, "JPEG bytes under an SVG name");
    memcpy(buf, "\x89PNG\r\n\x1a\n", 8);
    cr_assert_eq(codec_candidate(0, buf, sizeof(buf)), 0, "PNG bytes");
    memcpy(buf, "\x1F\x8B\x08\x00", 4);
    cr_assert_eq(codec_candidate(6, buf, sizeof(buf)), 0, "svgz");
    memcpy(buf, "BM", 2);
    cr_assert_eq(codec_candidate(7, buf, sizeof(buf)), 1, "BMP");
}

Test(codec, incompressible_is_kept_as_is)
{
    size_t len = 1000000;
    uint8_t *buf = malloc(len);
    uint32_t x = 12345;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        buf[i] = (uint8_t)x;
    }
    uint8_t *frame = NULL;
    uint32_t flen = 0;
    cr_assert_eq(codec_encode(buf, (uint32_t)len, 9, &frame, &flen), 1);
    cr_assert_null(frame);
    /* A compressible start passes the trial; the rest (93 % random) makes
     * the whole save under 10 %: the full try decides. */
    memset(buf, 'z', CODEC_TRIAL_BYTES + 4000);
    cr_assert_eq(codec_encode(buf, (uint32_t)len, 3, &frame, &flen), 1, "saves under 10 %%");
    free(buf);
}
