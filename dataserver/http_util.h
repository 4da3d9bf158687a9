/* http_util.h - the HTTP origin's pure helpers: dates, entity tags,
 * conditional and range headers, bearer tokens. No I/O, no allocation, so
 * each can be tested alone and is safe on hostile input: every function
 * bounds its reads by the given length. */
#ifndef DS_HTTP_UTIL_H
#define DS_HTTP_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define HTTP_DATE_LEN 29 /* "Sun, 06 Nov 1994 08:49:37 GMT" */
#define HTTP_ETAG_MAX 32 /* quoted: "xxxxxxxx-xxxxxxxx" + NUL */

/* Formats t as an IMF-fixdate into out (at least HTTP_DATE_LEN + 1 bytes). */
void http_format_date(time_t t, char *out);

/* Parses an HTTP date (IMF-fixdate, RFC 850 or asctime form). Returns 0 with
 * *t, or -1 when the value is not a date (the header is then ignored). */
int http_parse_date(const char *s, time_t *t);

/* Writes the strong entity tag of a file's bytes, with its quotes, into out
 * (HTTP_ETAG_MAX bytes): the CRC32C and the size, so it changes whenever
 * the bytes could differ. */
void http_format_etag(uint32_t crc, uint32_t size, char *out);

/* Writes the strong entity tag of the zstd-encoded representation of the
 * same file (Content-Encoding: zstd): the file's tag with "-zstd" before
 * the closing quote, so neither representation's tag ever matches the
 * other's (RFC 9110 8.8.3). */
void http_format_etag_zstd(uint32_t crc, uint32_t size, char *out);

/* Accept-Encoding (RFC 9110 12.5.3): returns 1 when the value `s` (codings
 * with optional q-values, comma separated; repeated header lines joined
 * with ", ") allows "zstd": named with a q-value above 0, or not named and
 * "*" has a q-value above 0. q=0 (0, 0.0, 0.00, 0.000) means "not
 * acceptable". A member whose parameters or q-value are malformed counts as
 * not acceptable. NULL (no header) gives 0: identity for clients that did
 * not ask. Coding names compare case-insensitively. */
int http_accepts_zstd(const char *s);

/* If-None-Match: returns 1 when the list `s` ("*", or entity tags, weak or
 * strong, comma separated) matches `etag` (quoted) by weak comparison, else
 * 0. Malformed members are skipped. */
int http_etag_list_match(const char *s, const char *etag);

enum http_range_kind {
    HTTP_RANGE_NONE,  /* no usable single range: send the whole object (200) */
    HTTP_RANGE_OK,    /* one satisfiable range: 206 with [*first, *last] */
    HTTP_RANGE_UNSAT, /* one well-formed but unsatisfiable range: 416 */
};

/* Parses a Range header value against an object of `len` bytes. Several
 * ranges, another unit or a malformed value give HTTP_RANGE_NONE. */
enum http_range_kind http_parse_range(const char *s, uint64_t len, uint64_t *first,
                                      uint64_t *last);

/* Returns 1 when the Authorization value `auth` is "Bearer <token>" with the
 * token equal to secret[0..secret_len), else 0. The time taken depends only
 * on secret_len, never on where the given token differs. */
int http_bearer_ok(const char *auth, const char *secret, size_t secret_len);

#endif
