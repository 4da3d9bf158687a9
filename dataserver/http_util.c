/* http_util.c - dates, entity tags, conditionals, ranges and tokens for the
 * HTTP origin (see http_util.h). */
#include "dataserver/http_util.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

void http_format_date(time_t t, char *out)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, HTTP_DATE_LEN + 1, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

int http_parse_date(const char *s, time_t *t)
{
    static const char *const forms[] = {
        "%a, %d %b %Y %H:%M:%S GMT", /* IMF-fixdate */
        "%A, %d-%b-%y %H:%M:%S GMT", /* RFC 850 */
        "%a %b %e %H:%M:%S %Y",      /* asctime */
    };
    while (*s == ' ' || *s == '\t')
        s++;
    for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
        struct tm tm;
        memset(&tm, 0, sizeof(tm));
        const char *end = strptime(s, forms[i], &tm);
        if (!end)
            continue;
        while (*end == ' ' || *end == '\t')
            end++;
        if (*end != '\0')
            continue;
        *t = timegm(&tm);
        return 0;
    }
    return -1;
}

void http_format_etag(uint32_t crc, uint32_t size, char *out)
{
    snprintf(out, HTTP_ETAG_MAX, "\"%08x-%x\"", crc, size);
}

static const char *skip_ows(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

void http_format_etag_zstd(uint32_t crc, uint32_t size, char *out)
{
    snprintf(out, HTTP_ETAG_MAX, "\"%08x-%x-zstd\"", crc, size);
}

static int ows(char c)
{
    return c == ' ' || c == '\t';
}

/* Parses a qvalue (RFC 9110 12.4.2) in p[0..n): returns it in thousandths,
 * or -1 when malformed. */
static int parse_qvalue(const char *p, size_t n)
{
    if (n == 0 || (p[0] != '0' && p[0] != '1'))
        return -1;
    int v = (p[0] - '0') * 1000;
    if (n == 1)
        return v;
    if (p[1] != '.' || n > 5)
        return -1;
    int scale = 100;
    for (size_t i = 2; i < n; i++, scale /= 10) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v += (p[i] - '0') * scale;
    }
    return v <= 1000 ? v : -1;
}

/* The weight of one Accept-Encoding member m[0..n) ("coding *( OWS ;
 * OWS param )"): 1000 without a q parameter; -1 when malformed. *name and
 * *name_len get the coding. */
static int member_weight(const char *m, size_t n, const char **name, size_t *name_len)
{
    size_t i = 0;
    while (i < n && m[i] != ';' && !ows(m[i]))
        i++;
    *name = m;
    *name_len = i;
    int q = 1000;
    while (i < n) {
        while (i < n && ows(m[i]))
            i++;
        if (i == n)
            break;
        if (m[i] != ';')
            return -1;
        i++;
        while (i < n && ows(m[i]))
            i++;
        size_t ps = i;
        while (i < n && m[i] != ';' && !ows(m[i]))
            i++;
        const char *eq = memchr(m + ps, '=', i - ps);
        if (!eq)
            return -1;
        if (eq - (m + ps) == 1 && (m[ps] == 'q' || m[ps] == 'Q')) {
            q = parse_qvalue(eq + 1, (size_t)(m + i - eq - 1));
            if (q < 0)
                return -1;
        }
    }
    return q;
}

int http_accepts_zstd(const char *s)
{
    if (!s)
        return 0;
    int zstd = -1, star = -1;
    while (*s) {
        while (*s == ',' || ows(*s))
            s++;
        size_t n = strcspn(s, ",");
        while (n > 0 && ows(s[n - 1]))
            n--;
        if (n > 0) {
            const char *name;
            size_t nl;
            int w = member_weight(s, n, &name, &nl);
            if (w < 0)
                w = 0; /* malformed: not acceptable */
            if (nl == 4 && strncasecmp(name, "zstd", 4) == 0)
                zstd = zstd < 0 ? w : (w < zstd ? w : zstd);
            else if (nl == 1 && name[0] == '*')
                star = star < 0 ? w : (w < star ? w : star);
        }
        s += strcspn(s, ",");
    }
    if (zstd >= 0)
        return zstd > 0;
    return star > 0;
}

int http_etag_list_match(const char *s, const char *etag)
{
    size_t elen = strlen(etag);
    const char *p = skip_ows(s);
    if (*p == '*' && *skip_ows(p + 1) == '\0')
        return 1;
    while (*p) {
        p = skip_ows(p);
        if (p[0] == 'W' && p[1] == '/')
            p += 2;
        if (*p == '"') {
            const char *q = strchr(p + 1, '"');
            if (!q)
                return 0;
            size_t n = (size_t)(q - p) + 1;
            if (n == elen && memcmp(p, etag, n) == 0)
                return 1;
            p = q + 1;
        }
        const char *comma = strchr(p, ',');
        if (!comma)
            break;
        p = comma + 1;
    }
    return 0;
}

/* Parses decimal digits at *p into *v (no sign, no overflow). 0 or -1. */
static int parse_u64(const char **p, uint64_t *v)
{
    const char *s = *p;
    uint64_t x = 0;
    if (!isdigit((unsigned char)*s))
        return -1;
    while (isdigit((unsigned char)*s)) {
        unsigned d = (unsigned)(*s - '0');
        if (x > (UINT64_MAX - d) / 10)
            return -1;
        x = x * 10 + d;
        s++;
    }
    *p = s;
    *v = x;
    return 0;
}

enum http_range_kind http_parse_range(const char *s, uint64_t len, uint64_t *first,
                                      uint64_t *last)
{
    const char *p = skip_ows(s);
    if (strncasecmp(p, "bytes=", 6) != 0)
        return HTTP_RANGE_NONE;
    p = skip_ows(p + 6);
    if (strchr(p, ','))
        return HTTP_RANGE_NONE; /* several ranges: the whole object is allowed */
    uint64_t a = 0, b = 0;
    int suffix = 0, open = 0;
    if (*p == '-') {
        suffix = 1;
        p++;
        if (parse_u64(&p, &b) != 0)
            return HTTP_RANGE_NONE;
    } else {
        if (parse_u64(&p, &a) != 0 || *p != '-')
            return HTTP_RANGE_NONE;
        p++;
        if (*p == '\0' || *p == ' ' || *p == '\t')
            open = 1;
        else if (parse_u64(&p, &b) != 0)
            return HTTP_RANGE_NONE;
    }
    if (*skip_ows(p) != '\0')
        return HTTP_RANGE_NONE;
    if (suffix) {
        if (b == 0 || len == 0)
            return HTTP_RANGE_UNSAT;
        *first = b >= len ? 0 : len - b;
        *last = len - 1;
        return HTTP_RANGE_OK;
    }
    if (!open && b < a)
        return HTTP_RANGE_NONE; /* invalid: ignored, as RFC 9110 14.2 allows */
    if (a >= len)
        return HTTP_RANGE_UNSAT;
    *first = a;
    *last = open || b >= len ? len - 1 : b;
    return HTTP_RANGE_OK;
}

int http_bearer_ok(const char *auth, const char *secret, size_t secret_len)
{
    const char *p = skip_ows(auth);
    if (strncasecmp(p, "Bearer ", 7) != 0 || secret_len == 0)
        return 0;
    p = skip_ows(p + 7);
    size_t n = strlen(p);
    while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
        n--;
    /* Every byte of the secret is compared whatever the given token is, so
     * the time says nothing about how much of it was right. */
    unsigned diff = n != secret_len;
    for (size_t i = 0; i < secret_len; i++) {
        unsigned char g = i < n ? (unsigned char)p[i] : 0;
        diff |= (unsigned)(g ^ (unsigned char)secret[i]);
    }
    return diff == 0;
}
