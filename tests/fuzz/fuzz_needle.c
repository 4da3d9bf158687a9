/* fuzz_needle.c - libFuzzer harness: the record codec (dataserver/needle.h).
 *
 * The input is a record as read from disk. needle_decode_header must accept
 * only what docs/storage.md allows, and an accepted header must encode back
 * to the same 24 bytes. needle_verify is run with the header's own seq and
 * cookie (reaching the CRC check) and with another cookie (must be
 * IMG_ENOTFOUND or a format error, never success); success means the data is
 * inside the input and matches its CRC. Finally the data is built into a
 * record with needle_build and must verify. An encoded record (format 3)
 * that verifies is decoded: the original or IMG_ECORRUPT, nothing else. */
#include "base/crc32c.h"
#include "base/err.h"
#include "dataserver/codec.h"
#include "dataserver/needle.h"
#include "tests/fuzz/fuzz.h"

static void check_record(const uint8_t *rec, size_t len)
{
    struct needle_header h, v;
    if (len < NEEDLE_HEADER_SIZE) {
        FUZZ_CHECK(needle_verify(rec, len, 1, 0, &v) == IMG_ECORRUPT);
        return;
    }
    if (needle_decode_header(rec, &h) != 0)
        return;
    FUZZ_CHECK(h.seq != 0 && h.size <= NEEDLE_MAX_DATA);
    FUZZ_CHECK((h.flags & ~NEEDLE_FLAGS_KNOWN) == 0);
    FUZZ_CHECK(!(h.flags & NEEDLE_FLAG_TOMBSTONE) || h.size == 0);
    uint8_t enc[NEEDLE_HEADER_SIZE];
    needle_encode_header(&h, enc);
    FUZZ_CHECK(memcmp(enc, rec, NEEDLE_HEADER_SIZE) == 0);
    FUZZ_CHECK(needle_record_size(h.size) >= NEEDLE_HEADER_SIZE + (size_t)h.size);
    FUZZ_CHECK(needle_record_size(h.size) % NEEDLE_ALIGN == 0);

    int rc = needle_verify(rec, len, h.seq, h.cookie, &v);
    if (rc == 0) {
        FUZZ_CHECK(!(h.flags & NEEDLE_FLAG_TOMBSTONE));
        FUZZ_CHECK(NEEDLE_HEADER_SIZE + (size_t)v.size <= len);
        FUZZ_CHECK(crc32c(0, rec + NEEDLE_HEADER_SIZE, v.size) == v.data_crc);
        /* An encoded record: the frame decodes to exactly the original, or
         * the record is damaged; never anything else. */
        if ((v.flags & NEEDLE_FLAG_ENCODED) && v.orig_size <= (1u << 20)) {
            FUZZ_CHECK(v.size >= NEEDLE_ENC_SIZE && v.encoding == NEEDLE_ENC_ZSTD);
            uint8_t *out = malloc(v.orig_size);
            FUZZ_CHECK(out != NULL);
            int drc = codec_decode(&v, rec + NEEDLE_HEADER_SIZE + NEEDLE_ENC_SIZE,
                                   v.size - NEEDLE_ENC_SIZE, out);
            FUZZ_CHECK(drc == 0 || drc == IMG_ECORRUPT);
            if (drc == 0)
                FUZZ_CHECK(crc32c(0, out, v.orig_size) == v.orig_crc);
            free(out);
        }
    } else {
        FUZZ_CHECK(rc == IMG_ECORRUPT || rc == IMG_ENOTFOUND);
    }
    rc = needle_verify(rec, len, h.seq, h.cookie ^ 1u, &v);
    FUZZ_CHECK(rc == IMG_ENOTFOUND);
}

static void check_build(const uint8_t *data, size_t len)
{
    if (len > NEEDLE_MAX_DATA)
        return;
    struct needle_header h = {.seq = 7, .cookie = 0x1234567u, .mime = 1, .ctime = 1};
    size_t n = needle_record_size((uint32_t)len);
    uint8_t *rec = malloc(n);
    FUZZ_CHECK(rec != NULL);
    needle_build(rec, &h, data, (uint32_t)len);
    struct needle_header v;
    FUZZ_CHECK(needle_verify(rec, n, 7, 0x1234567u, &v) == 0);
    FUZZ_CHECK(v.size == len && memcmp(rec + NEEDLE_HEADER_SIZE, data, len) == 0);
    for (size_t i = NEEDLE_HEADER_SIZE + len; i < n; i++)
        FUZZ_CHECK(rec[i] == 0);
    free(rec);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *rec = fuzz_exact_copy(data, size);
    check_record(rec, size);
    free(rec);
    check_build(data, size);
    return 0;
}
