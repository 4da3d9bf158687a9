/* fname.c - file-name codec (see fname.h). */
#include "proto/fname.h"

#include "base/crc32c.h"
#include "base/err.h"

#include <string.h>

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int b64_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

static void pack(const struct fname *f, uint8_t raw[FNAME_RAW_BYTES])
{
    for (int i = 0; i < 6; i++)
        raw[i] = (uint8_t)(f->block_id >> (8 * (5 - i)));
    for (int i = 0; i < 4; i++) {
        raw[6 + i] = (uint8_t)(f->seq >> (8 * (3 - i)));
        raw[10 + i] = (uint8_t)(f->cookie >> (8 * (3 - i)));
    }
    raw[14] = (uint8_t)crc32c(0, raw, 14);
}

int fname_encode(const struct fname *f, char *out)
{
    if (f->block_id > FNAME_MAX_BLOCK_ID)
        return IMG_EINVAL;
    uint8_t raw[FNAME_RAW_BYTES];
    pack(f, raw);
    out[0] = FNAME_VERSION_CHAR;
    char *o = out + 1;
    /* 15 bytes are exactly five 3-byte groups: 20 characters, no padding. */
    for (int i = 0; i < FNAME_RAW_BYTES; i += 3) {
        uint32_t v = ((uint32_t)raw[i] << 16) | ((uint32_t)raw[i + 1] << 8) | raw[i + 2];
        *o++ = b64[(v >> 18) & 63];
        *o++ = b64[(v >> 12) & 63];
        *o++ = b64[(v >> 6) & 63];
        *o++ = b64[v & 63];
    }
    *o = '\0';
    return 0;
}

static int check_ext(const char *e, size_t n)
{
    if (n < 1 || n > FNAME_MAX_EXT)
        return IMG_EBADNAME;
    for (size_t i = 0; i < n; i++) {
        char c = e[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')))
            return IMG_EBADNAME;
    }
    return 0;
}

int fname_decode(const char *s, size_t len, struct fname *f, const char **ext, size_t *ext_len)
{
    if (!s || len < FNAME_LEN)
        return IMG_EBADNAME;
    const char *e = NULL;
    size_t elen = 0;
    if (len > FNAME_LEN) {
        if (s[FNAME_LEN] != '.')
            return IMG_EBADNAME;
        e = s + FNAME_LEN + 1;
        elen = len - FNAME_LEN - 1;
        if (check_ext(e, elen) != 0)
            return IMG_EBADNAME;
    }
    if (s[0] != FNAME_VERSION_CHAR)
        return IMG_EBADNAME;
    uint8_t raw[FNAME_RAW_BYTES];
    const char *p = s + 1;
    for (int i = 0; i < FNAME_RAW_BYTES; i += 3) {
        uint32_t v = 0;
        for (int k = 0; k < 4; k++) {
            int d = b64_value(p[k]);
            if (d < 0)
                return IMG_EBADNAME;
            v = (v << 6) | (uint32_t)d;
        }
        raw[i] = (uint8_t)(v >> 16);
        raw[i + 1] = (uint8_t)(v >> 8);
        raw[i + 2] = (uint8_t)v;
        p += 4;
    }
    if (raw[14] != (uint8_t)crc32c(0, raw, 14))
        return IMG_EBADNAME;
    struct fname out = {0};
    for (int i = 0; i < 6; i++)
        out.block_id = (out.block_id << 8) | raw[i];
    for (int i = 0; i < 4; i++) {
        out.seq = (out.seq << 8) | raw[6 + i];
        out.cookie = (out.cookie << 8) | raw[10 + i];
    }
    *f = out;
    if (ext) {
        *ext = e;
        *ext_len = elen;
    }
    return 0;
}
