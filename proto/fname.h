/* fname.h - the file-name codec: the public, self-describing name of a file.
 *
 * A name is FNAME_LEN characters: the version character '1' followed by the
 * unpadded base64url encoding (RFC 4648 section 5) of 15 bytes:
 *
 *   +-------------+---------+-----------+-------+
 *   | block_id    | seq     | cookie    | check |
 *   | 6 bytes BE  | 4 B BE  | 4 B BE    | 1 B   |
 *   +-------------+---------+-----------+-------+
 *
 * check is the low byte of CRC32C over the first 14 bytes, so a mistyped name
 * is refused without a disk read. A name may carry a trailing ".ext" (1 to
 * FNAME_MAX_EXT characters of [A-Za-z0-9]); it is only a hint. The cookie is
 * random, so names cannot be guessed from their neighbours. */
#ifndef IMG_FNAME_H
#define IMG_FNAME_H

#include <stddef.h>
#include <stdint.h>

#define FNAME_VERSION_CHAR '1'
#define FNAME_RAW_BYTES 15
#define FNAME_LEN 21 /* 1 version char + 20 base64url chars */
#define FNAME_MAX_EXT 8
#define FNAME_BUF (FNAME_LEN + 1 + FNAME_MAX_EXT + 1) /* name + "." + ext + NUL */
#define FNAME_MAX_BLOCK_ID ((UINT64_C(1) << 48) - 1)

struct fname {
    uint64_t block_id; /* at most FNAME_MAX_BLOCK_ID */
    uint32_t seq;
    uint32_t cookie;
};

/* Encodes `f` into out (at least FNAME_LEN + 1 bytes), NUL-terminated.
 * Returns 0, or IMG_EINVAL when block_id exceeds FNAME_MAX_BLOCK_ID. */
int fname_encode(const struct fname *f, char *out);

/* Parses `len` bytes of `s` (no NUL needed), with or without ".ext".
 * On success fills *f and, when ext is not NULL, points *ext at the extension
 * inside s (or NULL when none) and *ext_len at its length. Returns 0 or
 * IMG_EBADNAME for any malformed form: wrong length, unknown version, bad
 * characters, non-canonical base64, wrong check byte, bad extension. */
int fname_decode(const char *s, size_t len, struct fname *f, const char **ext, size_t *ext_len);

#endif
