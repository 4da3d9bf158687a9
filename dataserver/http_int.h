/* http_int.h - internals shared by the HTTP origin's files:
 *   ds_http.c    listening, connections, parsing (http-parser), limits,
 *                timeouts, the in-order response queue, dispatch
 *   http_get.c   GET/HEAD of a file: local read or fetch from a replica,
 *                validators, conditionals, ranges
 *   http_put.c   authenticated uploads (POST/PUT /) and deletes
 *   http_util.c  pure helpers (http_util.h)
 *
 * Requests of one connection sit in a FIFO in arrival order. A request is
 * PARSING until its message is complete, WORKING while its disk read or
 * network call runs, READY once its response is built; responses leave the
 * head of the FIFO only, so pipelined responses keep request order whatever
 * order the work completes in. When a connection closes, its WORKING
 * requests are orphaned (hc = NULL) and freed by their own completion. */
#ifndef DS_HTTP_INT_H
#define DS_HTTP_INT_H

#include "dataserver/ds.h"
#include "dataserver/ds_nsclient.h"
#include "dataserver/needle.h"
#include "proto/fname.h"

#include <http_parser.h>
#include <stddef.h>
#include <stdint.h>

#define HTTP_MAX_URL 2048          /* request target bytes; past it 414 */
#define HTTP_MAX_HEADER_BYTES 8192 /* header field + value bytes; past it 431 */
#define HTTP_MAX_HEADERS 64        /* header lines; past it 431 */
#define HTTP_PIPELINE_MAX 32       /* queued requests before reading pauses */
#define HTTP_WQ_MAX (4u << 20)     /* unsent bytes before reading pauses */
#define HTTP_READ_BUF 16384
#define HTTP_PROXY_TIMEOUT_MS 3000 /* one READ to a replica */
#define HTTP_UPLOAD_TIMEOUT_MS 10000 /* whole upload or delete, retries included */
#define HTTP_UPLOAD_ATTEMPTS 8

/* Cache-Control of each kind of answer. Errors get short lifetimes so a CDN
 * neither hammers the origin nor keeps a mistake for long. */
#define HTTP_CC_FILE "public, max-age=31536000, immutable"
#define HTTP_CC_404 "public, max-age=60"
#define HTTP_CC_410 "public, max-age=600"
#define HTTP_CC_4XX "public, max-age=10"
#define HTTP_CC_NOSTORE "no-store"
#define HTTP_RETRY_AFTER_S 1

struct http_conn;

enum http_req_state { REQ_PARSING, REQ_WORKING, REQ_READY, REQ_WRITING };

struct http_req {
    struct http_req *next;
    struct http_conn *hc; /* NULL once the connection closed (orphaned) */
    struct ds *ds;
    enum http_req_state state;
    unsigned method;       /* enum http_method */
    int head_only;
    int keep_alive;        /* the client wants the connection kept */
    int http10;
    int counted;           /* holds one of the server's in-flight slots */
    int responded;         /* a response was built (maybe early, at headers) */

    /* the request */
    char *path;            /* request target without query, NUL-terminated */
    char *if_none_match, *if_modified_since, *range, *if_range;
    char *authorization, *content_type, *expect;
    uint8_t *body;
    size_t body_len, body_cap;

    /* GET/HEAD, DELETE, upload work */
    struct fname f;
    char ext[FNAME_MAX_EXT + 1];
    struct ds_loc loc;
    int loc_from_cache;
    int replica;           /* next replica to try */
    int attempts;
    uint64_t excl[HTTP_UPLOAD_ATTEMPTS];
    int nexcl;
    uint32_t crc;
    unsigned mime;
    uint64_t deadline_ms;

    /* the response */
    char *resp_hdr;
    size_t resp_hdr_len;
    uint8_t *resp_mem;     /* freed after the write */
    const uint8_t *resp_body;
    size_t resp_body_len;
    int close_after;
    uv_write_t wreq;
};

struct http_server {
    struct ds *ds;
    struct http_conn *conns;
    int inflight;
};

/* ds_http.c: builds a response with the common headers (Server, Date,
 * Connection) plus `extra` (complete "Name: value\r\n" lines, may be NULL),
 * and a text body (not sent for HEAD), then finishes the request. */
void http_reply_text(struct http_req *r, int code, const char *cache_control,
                     const char *extra, const char *body);
/* Builds the status line and common headers into a malloc'd buffer with
 * room for `more` extra bytes; returns the buffer and its used length in
 * *len, or NULL. */
char *http_head_begin(struct http_req *r, int code, size_t more, size_t *len);
/* Marks the request's response built (resp_* filled) and sends whatever is
 * ready at the head of its connection's queue. Releases the in-flight slot.
 * Frees an orphaned request. */
void http_req_finish(struct http_req *r);
/* Returns the reason phrase of a status code. */
const char *http_reason(int code);

/* http_get.c */
void http_get_start(struct http_req *r);

/* http_put.c */
/* Checks the bearer token of a POST/PUT/DELETE at the end of its headers:
 * returns 0 when allowed, or the status to refuse with (401, 403). */
int http_auth_check(struct http_req *r);
void http_upload_start(struct http_req *r);
void http_delete_start(struct http_req *r);

#endif
