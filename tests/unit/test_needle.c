/* Unit tests of the needle record codec (dataserver/needle.c). */
#include "base/crc16.h"
#include "base/crc32c.h"
#include "base/err.h"
#include "dataserver/needle.h"

#include <criterion/criterion.h>
#include <string.h>

static struct needle_header hdr(uint32_t seq, uint32_t cookie)
{
    struct needle_header h = {.flags = NEEDLE_FLAG_HCRC, .mime = 3, .seq = seq,
                              .cookie = cookie, .ctime = 1700000000};
    return h;
}

Test(needle, record_size_pads_to_8)
{
    cr_assert_eq(needle_record_size(0), 24);
    cr_assert_eq(needle_record_size(1), 32);
    cr_assert_eq(needle_record_size(8), 32);
    cr_assert_eq(needle_record_size(9), 40);
    cr_assert_eq(needle_record_size(NEEDLE_MAX_DATA), NEEDLE_MAX_DATA + 24);
}

Test(needle, header_layout_is_little_endian)
{
    struct needle_header h = hdr(0x04030201, 0x08070605), g;
    h.size = 0x0c0b0a09;
    h.data_crc = 0x14131211;
    h.ctime = 0x10f0e0d;
    uint8_t out[NEEDLE_HEADER_SIZE];
    needle_encode_header(&h, out);
    uint16_t check = crc16(0, out + 2, NEEDLE_HEADER_SIZE - 2);
    cr_assert_eq(out[0], (uint8_t)check, "format 2: the header's CRC-16, little-endian");
    cr_assert_eq(out[1], (uint8_t)(check >> 8));
    cr_assert_eq(out[2], NEEDLE_FLAG_HCRC);
    cr_assert_eq(out[3], 3);
    cr_assert_eq(out[4], 0x01);
    cr_assert_eq(out[7], 0x04);
    cr_assert_eq(out[8], 0x05);
    cr_assert_eq(out[20], 0x11);
    cr_assert_eq(out[23], 0x14);
    /* size is above NEEDLE_MAX_DATA: decoding must refuse it */
    cr_assert_eq(needle_decode_header(out, &g), IMG_EFORMAT);
}

Test(needle, build_and_verify_roundtrip)
{
    const char data[] = "hello, needle";
    uint32_t len = sizeof(data) - 1;
    uint8_t rec[64];
    memset(rec, 0xAA, sizeof(rec));
    struct needle_header h = hdr(7, 0xdeadbeef), g;
    needle_build(rec, &h, data, len);
    cr_assert_eq(h.size, len);
    cr_assert_eq(h.data_crc, crc32c(0, data, len));
    size_t rs = needle_record_size(len);
    for (size_t i = NEEDLE_HEADER_SIZE + len; i < rs; i++)
        cr_assert_eq(rec[i], 0, "padding byte %zu not zero", i);
    cr_assert_eq(needle_verify(rec, rs, 7, 0xdeadbeef, &g), 0);
    cr_assert_eq(g.seq, 7);
    cr_assert_eq(g.mime, 3);
    cr_assert_eq(g.ctime, 1700000000);
    cr_assert_eq(memcmp(rec + NEEDLE_HEADER_SIZE, data, len), 0);
}

Test(needle, verify_wrong_cookie_is_not_found_wrong_seq_damaged)
{
    uint8_t rec[64];
    struct needle_header h = hdr(7, 1234), g;
    needle_build(rec, &h, "abc", 3);
    cr_assert_eq(needle_verify(rec, sizeof(rec), 7, 1235, &g), IMG_ENOTFOUND);
    /* Another seq where the index pointed: the index is damaged. */
    cr_assert_eq(needle_verify(rec, sizeof(rec), 8, 1234, &g), IMG_ECORRUPT);
}

Test(needle, verify_detects_corruption)
{
    uint8_t rec[64];
    struct needle_header h = hdr(7, 1234), g;
    needle_build(rec, &h, "abcdef", 6);
    rec[NEEDLE_HEADER_SIZE + 2] ^= 1;
    cr_assert_eq(needle_verify(rec, sizeof(rec), 7, 1234, &g), IMG_ECORRUPT);
    rec[NEEDLE_HEADER_SIZE + 2] ^= 1;
    /* too short to hold the data */
    cr_assert_eq(needle_verify(rec, NEEDLE_HEADER_SIZE + 3, 7, 1234, &g), IMG_ECORRUPT);
    cr_assert_eq(needle_verify(rec, 10, 7, 1234, &g), IMG_ECORRUPT);
    rec[0] ^= 0xff;
    cr_assert_eq(needle_verify(rec, sizeof(rec), 7, 1234, &g), IMG_EFORMAT);
}

Test(needle, decode_refuses_bad_headers)
{
    uint8_t out[NEEDLE_HEADER_SIZE];
    struct needle_header h = hdr(1, 1), g;
    needle_encode_header(&h, out);
    cr_assert_eq(needle_decode_header(out, &g), 0);

    h.seq = 0;
    needle_encode_header(&h, out);
    cr_assert_eq(needle_decode_header(out, &g), IMG_EFORMAT);

    h = hdr(1, 1);
    h.flags |= 0x80;
    needle_encode_header(&h, out);
    cr_assert_eq(needle_decode_header(out, &g), IMG_EFORMAT);

    h = hdr(1, 1);
    h.flags = NEEDLE_FLAG_TOMBSTONE;
    h.size = 5;
    needle_encode_header(&h, out);
    cr_assert_eq(needle_decode_header(out, &g), IMG_EFORMAT);

    h.size = NEEDLE_MAX_DATA + 1;
    h.flags = NEEDLE_FLAG_HCRC;
    needle_encode_header(&h, out);
    cr_assert_eq(needle_decode_header(out, &g), IMG_EFORMAT);
}

Test(needle, tombstone_roundtrip)
{
    uint8_t rec[NEEDLE_HEADER_SIZE];
    struct needle_header h = hdr(9, 77), g;
    h.flags = NEEDLE_FLAG_TOMBSTONE;
    needle_build(rec, &h, NULL, 0);
    cr_assert_eq(needle_decode_header(rec, &g), 0);
    cr_assert(g.flags & NEEDLE_FLAG_TOMBSTONE);
    cr_assert_eq(g.size, 0);
    /* a tombstone is never served as the file */
    cr_assert_eq(needle_verify(rec, sizeof(rec), 9, 77, &g), IMG_ENOTFOUND);
}

/* Format 2: a flipped bit anywhere in the header (cookie, seq, MIME, size,
 * time, data CRC, flags, the check itself) makes the record damaged
 * (IMG_EFORMAT, which readers treat as a damaged copy), never another file
 * or a missing one; CRC-16 catches every single and double bit flip here. */
Test(needle, every_header_bit_is_checked)
{
    uint8_t rec[64], bad[64];
    struct needle_header h = hdr(7, 1234), g;
    needle_build(rec, &h, "abcdef", 6);
    cr_assert_eq(needle_verify(rec, sizeof(rec), 7, 1234, &g), 0);
    for (int a = 0; a < NEEDLE_HEADER_SIZE * 8; a++)
        for (int b = a; b < NEEDLE_HEADER_SIZE * 8; b++) {
            memcpy(bad, rec, sizeof(rec));
            bad[a / 8] ^= (uint8_t)(1u << (a % 8));
            if (b != a)
                bad[b / 8] ^= (uint8_t)(1u << (b % 8));
            cr_assert_eq(needle_decode_header(bad, &g), IMG_EFORMAT, "bits %d and %d", a, b);
            cr_assert_eq(needle_verify(bad, sizeof(bad), 7, 1234, &g), IMG_EFORMAT,
                         "bits %d and %d", a, b);
        }
}

/* Format 1 records (magic, no header check), as blocks written before
 * format 2 hold them (and as a cluster with a server that reads no other
 * writes them), are still read and written. */
Test(needle, format_1_still_read)
{
    uint8_t rec[64];
    struct needle_header h = hdr(7, 1234), g;
    needle_build(rec, &h, "abcdef", 6);
    h.flags = 0; /* format 1 is written when asked (no NEEDLE_FLAG_HCRC) */
    needle_build(rec, &h, "abcdef", 6);
    cr_assert_eq(rec[0], 0x49, "NEEDLE_MAGIC, little-endian");
    cr_assert_eq(rec[1], 0x4e);
    cr_assert_eq(rec[2], 0);
    cr_assert_eq(needle_verify(rec, sizeof(rec), 7, 1234, &g), 0);
    cr_assert_eq(g.flags, 0);
    rec[2] ^= 1; /* a flipped bit in a format-1 header may go unseen: a tombstone now */
    cr_assert_eq(needle_verify(rec, sizeof(rec), 7, 1234, &g), IMG_EFORMAT,
                 "a tombstone with a size");
    rec[2] ^= 1;
    cr_assert_eq(needle_verify(rec, sizeof(rec), 7, 1235, &g), IMG_ENOTFOUND,
                 "format 1: a wrong cookie is still only not found");
    rec[0] ^= 1;
    cr_assert_eq(needle_decode_header(rec, &g), IMG_EFORMAT, "bad magic");
}
