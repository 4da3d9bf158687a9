/* mime.c - mime-type codes (see mime.h). */
#include "proto/mime.h"

#include <string.h>
#include <strings.h>

struct mime_entry {
    const char *type;
    const char *ext;
    const char *alt_ext;
};

/* Index = code. Append only. */
static const struct mime_entry mimes[] = {
    {"application/octet-stream", NULL, NULL},
    {"image/jpeg", "jpg", "jpeg"},
    {"image/png", "png", NULL},
    {"image/gif", "gif", NULL},
    {"image/webp", "webp", NULL},
    {"image/avif", "avif", NULL},
    {"image/svg+xml", "svg", NULL},
    {"image/bmp", "bmp", NULL},
    {"image/tiff", "tiff", "tif"},
    {"image/x-icon", "ico", NULL},
    {"image/heic", "heic", NULL},
    {"image/jxl", "jxl", NULL},
    {"video/mp4", "mp4", NULL},
    {"text/plain", "txt", NULL},
    {"application/json", "json", NULL},
};

#define NMIMES (sizeof(mimes) / sizeof(mimes[0]))

const char *mime_name(unsigned code)
{
    return code < NMIMES ? mimes[code].type : mimes[0].type;
}

const char *mime_ext(unsigned code)
{
    return code < NMIMES ? mimes[code].ext : NULL;
}

unsigned mime_from_type(const char *type)
{
    if (!type)
        return MIME_OCTET_STREAM;
    size_t n = strcspn(type, "; \t");
    for (unsigned i = 0; i < NMIMES; i++)
        if (strlen(mimes[i].type) == n && strncasecmp(mimes[i].type, type, n) == 0)
            return i;
    return MIME_OCTET_STREAM;
}

unsigned mime_from_ext(const char *ext, size_t len)
{
    for (unsigned i = 1; i < NMIMES; i++) {
        const char *a = mimes[i].ext, *b = mimes[i].alt_ext;
        if (a && strlen(a) == len && strncasecmp(a, ext, len) == 0)
            return i;
        if (b && strlen(b) == len && strncasecmp(b, ext, len) == 0)
            return i;
    }
    return MIME_OCTET_STREAM;
}

unsigned mime_sniff(const void *data, size_t len)
{
    const unsigned char *p = data;
    if (len >= 3 && p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF)
        return 1;
    if (len >= 8 && memcmp(p, "\x89PNG\r\n\x1a\n", 8) == 0)
        return 2;
    if (len >= 6 && (memcmp(p, "GIF87a", 6) == 0 || memcmp(p, "GIF89a", 6) == 0))
        return 3;
    if (len >= 12 && memcmp(p, "RIFF", 4) == 0 && memcmp(p + 8, "WEBP", 4) == 0)
        return 4;
    if (len >= 12 && memcmp(p + 4, "ftypavif", 8) == 0)
        return 5;
    if (len >= 2 && p[0] == 'B' && p[1] == 'M')
        return 7;
    return MIME_OCTET_STREAM;
}

unsigned mime_pick(const char *claimed, const void *data, size_t len)
{
    unsigned claim = claimed ? mime_from_type(claimed) : MIME_OCTET_STREAM;
    unsigned sniffed = mime_sniff(data, len);
    /* Codes 1..5: the signatures mime_sniff is sure of (not BMP's "BM"). */
    if (sniffed >= 1 && sniffed <= 5)
        return sniffed;
    return claim != MIME_OCTET_STREAM ? claim : sniffed;
}
