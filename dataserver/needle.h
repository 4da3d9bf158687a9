/* needle.h - one record (needle) of a block file (docs/storage.md).
 *
 *   offset size field
 *   0      2    check      NEEDLE_MAGIC (format 1), or CRC-16/T10-DIF of
 *                          bytes 2-23 when flags has NEEDLE_FLAG_HCRC (2)
 *   2      1    flags      NEEDLE_FLAG_*
 *   3      1    mime       mime code (proto/mime.h)
 *   4      4    seq        file sequence inside the block (>= 1)
 *   8      4    cookie     random, must match the file name
 *   12     4    size       data length in bytes (0 for a tombstone)
 *   16     4    ctime      create time, unix seconds
 *   20     4    data_crc   CRC32C of the data
 *   24     size data
 *   ...    0-7  zero padding to NEEDLE_ALIGN
 *
 * All integers are little-endian. A tombstone is a header with
 * NEEDLE_FLAG_TOMBSTONE set, the seq and cookie of the deleted file, size 0.
 *
 * Format 3 adds NEEDLE_FLAG_ENCODED (only with NEEDLE_FLAG_HCRC, never on a
 * tombstone): the data is stored encoded (compressed), and starts with a
 * 16-byte encoding header, then the encoded bytes:
 *
 *   0      2    check      CRC-16/T10-DIF of bytes 2-15
 *   2      1    encoding   NEEDLE_ENC_ZSTD (one zstd frame follows)
 *   3      1    zero
 *   4      4    orig_size  the file's size as uploaded (>= 1)
 *   8      4    orig_crc   CRC32C of the file as uploaded
 *   12     4    zero
 *   16     ...  the zstd frame
 *
 * `size` and `data_crc` of the record header describe the stored bytes (the
 * encoding header and the frame), so every check that reads no more than the
 * record (recovery, scrubbing, copies, compaction) works unchanged; orig_crc
 * covers the bytes a reader gets, checked after decoding (codec.c).
 *
 * Format 2 covers every header field with the check, so a flipped bit in a
 * cookie, seq, MIME, size or time reads as a damaged record (another replica
 * serves it; scrub, verify and repair replace it), never as a different file
 * or a missing one. Format 1 records (magic, data CRC only) are still read,
 * and still written while some dataserver of the cluster reads only them
 * (HeartbeatResp.record_format). */
#ifndef DS_NEEDLE_H
#define DS_NEEDLE_H

#include <stddef.h>
#include <stdint.h>

#define NEEDLE_MAGIC 0x4E49u
#define NEEDLE_HEADER_SIZE 24
#define NEEDLE_ALIGN 8
#define NEEDLE_FLAG_TOMBSTONE 0x01u
#define NEEDLE_FLAG_HCRC 0x02u /* format 2: bytes 0-1 are the header's CRC, not the magic */
#define NEEDLE_FLAG_ENCODED 0x04u /* format 3: the data starts with an encoding header */
#define NEEDLE_FORMAT_NEWEST 3 /* the newest record format this code reads and writes */
#define NEEDLE_FLAGS_KNOWN (NEEDLE_FLAG_TOMBSTONE | NEEDLE_FLAG_HCRC | NEEDLE_FLAG_ENCODED)
#define NEEDLE_ENC_SIZE 16  /* the encoding header of an encoded record's data */
#define NEEDLE_ENC_NONE 0   /* struct needle_header.encoding of a plain record */
#define NEEDLE_ENC_ZSTD 1   /* one zstd frame */
#define NEEDLE_MAX_DATA (32u << 20) /* largest file we store */

struct needle_header {
    uint8_t flags;
    uint8_t mime;
    uint32_t seq;
    uint32_t cookie;
    uint32_t size;
    uint32_t ctime;
    uint32_t data_crc;
    /* Not part of the 24 bytes: the encoding header of a format-3 record
     * (needle_verify, needle_decode_enc); for a plain one NEEDLE_ENC_NONE,
     * orig_size = size and orig_crc = data_crc. stored_size: the data's
     * bytes on disk (the header's size as read; readers that decode a
     * record change size, not this). */
    uint8_t encoding;
    uint32_t stored_size;
    uint32_t orig_size;
    uint32_t orig_crc;
};

/* Bytes a record with `data_len` bytes of data occupies: header, data and
 * padding to NEEDLE_ALIGN. */
size_t needle_record_size(uint32_t data_len);

/* Writes the header into out[NEEDLE_HEADER_SIZE]: format 2 when h->flags
 * has NEEDLE_FLAG_HCRC, else format 1 (with NEEDLE_MAGIC). */
void needle_encode_header(const struct needle_header *h, uint8_t *out);

/* Parses a header of either format (h->flags tells which).
 * Returns 0, or IMG_EFORMAT for a bad magic or header CRC, unknown flags,
 * seq 0, a size above NEEDLE_MAX_DATA, or a tombstone with a size. */
int needle_decode_header(const uint8_t *in, struct needle_header *h);

/* Writes the encoding header (encoding, orig_size, orig_crc of h) into
 * out[NEEDLE_ENC_SIZE]. */
void needle_encode_enc(const struct needle_header *h, uint8_t *out);

/* Parses the encoding header at in[NEEDLE_ENC_SIZE] into h->encoding,
 * orig_size and orig_crc. Returns 0, or IMG_EFORMAT for a bad check, an
 * unknown encoding, non-zero reserved bytes, or an original size of 0 or
 * above NEEDLE_MAX_DATA. */
int needle_decode_enc(const uint8_t *in, struct needle_header *h);

/* Builds a complete record into out (needle_record_size(len) bytes): header
 * from h with size = len and data_crc computed here, the data, zero padding.
 * h->data_crc is updated. A record with NEEDLE_FLAG_ENCODED in h->flags
 * gets data = the encoding header (from h) followed by `data`, so len is
 * the encoded length and needle_record_size(NEEDLE_ENC_SIZE + len) bytes
 * are written; h->size is then NEEDLE_ENC_SIZE + len. */
void needle_build(uint8_t *out, struct needle_header *h, const void *data, uint32_t len);

/* Checks a record read from disk (at least NEEDLE_HEADER_SIZE + size bytes in
 * rec) against the file it should be: returns 0 and fills *h; IMG_ENOTFOUND
 * when the cookie differs or it is a tombstone (a wrong cookie must look like
 * a missing file); IMG_EFORMAT for a bad header; IMG_ECORRUPT when the seq
 * differs (the index that gave the offset is wrong), the data does not
 * match its CRC32C, or an encoded record's encoding header is bad. The
 * encoded bytes themselves are not decoded here (codec_decode). */
int needle_verify(const uint8_t *rec, size_t len, uint32_t seq, uint32_t cookie,
                  struct needle_header *h);

#endif
