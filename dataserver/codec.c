/* codec.c - choosing, compressing and decoding stored encodings (codec.h).
 *
 * zstd only. Each thread keeps one compression and one decompression
 * context (thread-local, made on first use, kept for the thread's life:
 * the libuv pool's threads live as long as the process), so a call
 * allocates nothing but its output. May call needle.h and base/ only. */
#include "dataserver/codec.h"

#include "base/crc32c.h"
#include "base/err.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

/* Leading bytes of formats that are compressed already. */
static const struct {
    const char *magic;
    size_t len;
    size_t at;
} packed[] = {
    {"\xFF\xD8\xFF", 3, 0},          /* JPEG */
    {"\x89PNG\r\n\x1a\n", 8, 0},     /* PNG */
    {"GIF8", 4, 0},                  /* GIF */
    {"WEBP", 4, 8},                  /* RIFF....WEBP */
    {"ftyp", 4, 4},                  /* AVIF, HEIC, MP4 and other ISO-BMFF */
    {"\xFF\x0A", 2, 0},              /* JPEG XL codestream */
    {"\0\0\0\x0CJXL ", 8, 0},        /* JPEG XL container */
    {"\x1F\x8B", 2, 0},              /* gzip (also .svgz) */
    {"\x28\xB5\x2F\xFD", 4, 0},      /* zstd */
    {"PK\x03\x04", 4, 0},            /* zip */
    {"\xFD" "7zXZ", 5, 0},           /* xz */
    {"BZh", 3, 0},                   /* bzip2 */
    {"7z\xBC\xAF", 4, 0},            /* 7z */
};

/* MIME codes of proto/mime.c that are compressed formats. */
static int packed_mime(unsigned mime)
{
    switch (mime) {
    case 1:  /* image/jpeg */
    case 2:  /* image/png */
    case 3:  /* image/gif */
    case 4:  /* image/webp */
    case 5:  /* image/avif */
    case 10: /* image/heic */
    case 11: /* image/jxl */
    case 12: /* video/mp4 */
        return 1;
    default:
        return 0;
    }
}

int codec_candidate(unsigned mime, const void *data, size_t len)
{
    const uint8_t *p = data;
    if (len < CODEC_MIN_SIZE || len > NEEDLE_MAX_DATA || packed_mime(mime))
        return 0;
    for (size_t i = 0; i < sizeof(packed) / sizeof(packed[0]); i++)
        if (len >= packed[i].at + packed[i].len &&
            memcmp(p + packed[i].at, packed[i].magic, packed[i].len) == 0)
            return 0;
    return 1;
}

static __thread ZSTD_CCtx *cctx;
static __thread ZSTD_DCtx *dctx;

/* Compresses src into dst at level; returns the frame's length or 0. */
static size_t compress(const void *src, size_t len, int level, void *dst, size_t cap)
{
    if (!cctx && !(cctx = ZSTD_createCCtx()))
        return 0;
    ZSTD_CCtx_reset(cctx, ZSTD_reset_session_and_parameters);
    if (ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level)) ||
        ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_windowLog, CODEC_WINDOW_LOG)) ||
        ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 1)))
        return 0;
    size_t n = ZSTD_compress2(cctx, dst, cap, src, len);
    return ZSTD_isError(n) ? 0 : n;
}

/* The largest stored length (encoding header + frame) worth keeping. */
static size_t worth(size_t len)
{
    return len - (len * CODEC_MIN_SAVING_PCT + 99) / 100;
}

int codec_encode(const void *data, uint32_t len, int level, uint8_t **out, uint32_t *out_len)
{
    if (level < 1)
        level = 1;
    if (level > CODEC_LEVEL_MAX)
        level = CODEC_LEVEL_MAX;
    if (len > CODEC_LARGE_BYTES && level > CODEC_LEVEL_LARGE)
        level = CODEC_LEVEL_LARGE;
    size_t cap = ZSTD_compressBound(len);
    uint8_t *buf = malloc(cap);
    if (!buf)
        return -ENOMEM;
    if (len > CODEC_TRIAL_BYTES) {
        /* A cheap look at the start: most incompressible uploads stop here. */
        size_t t = compress(data, CODEC_TRIAL_BYTES, 1, buf, cap);
        if (t == 0 || t > worth(CODEC_TRIAL_BYTES)) {
            free(buf);
            return 1;
        }
    }
    size_t n = compress(data, len, level, buf, cap);
    if (n == 0 || NEEDLE_ENC_SIZE + n > worth(len)) {
        free(buf);
        return 1;
    }
    uint8_t *shrunk = realloc(buf, n);
    *out = shrunk ? shrunk : buf;
    *out_len = (uint32_t)n;
    return 0;
}

int codec_unframe(const uint8_t *frame, uint32_t frame_len, uint8_t *out, uint32_t raw_len)
{
    /* The frame must announce exactly the expected size: no output buffer
     * is ever sized by what a hostile frame claims. */
    unsigned long long cs = ZSTD_getFrameContentSize(frame, frame_len);
    if (cs != raw_len)
        return IMG_ECORRUPT;
    if (!dctx && !(dctx = ZSTD_createDCtx()))
        return -ENOMEM;
    ZSTD_DCtx_reset(dctx, ZSTD_reset_session_and_parameters);
    /* Frames we write use at most 2^CODEC_WINDOW_LOG; refuse larger. */
    if (ZSTD_isError(ZSTD_DCtx_setParameter(dctx, ZSTD_d_windowLogMax, CODEC_WINDOW_LOG)))
        return IMG_ECORRUPT;
    size_t n = ZSTD_decompressDCtx(dctx, out, raw_len, frame, frame_len);
    if (ZSTD_isError(n) || n != raw_len)
        return IMG_ECORRUPT;
    return 0;
}

int codec_decode(const struct needle_header *h, const uint8_t *frame, uint32_t frame_len,
                 uint8_t *out)
{
    if (h->encoding != NEEDLE_ENC_ZSTD)
        return IMG_ECORRUPT;
    int rc = codec_unframe(frame, frame_len, out, h->orig_size);
    if (rc != 0)
        return rc;
    if (crc32c(0, out, h->orig_size) != h->orig_crc)
        return IMG_ECORRUPT;
    return 0;
}
