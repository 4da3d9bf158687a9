/* http_int.h - internals shared by the HTTP origin's files, on top of the
 * HTTP server core (net/http_server.h: connections, parsing, limits,
 * timeouts, the in-order response queue):
 *   ds_http.c    the origin's routes: header checks, uploads' bodies,
 *                dispatch by path and method, the common response headers
 *   http_get.c   GET/HEAD of a file: local read or fetch from a replica,
 *                validators, conditionals, ranges
 *   http_put.c   authenticated uploads (POST/PUT /) and deletes
 *   http_util.c  pure helpers (http_util.h)
 *
 * A request is a struct http_req, which begins with the core's struct
 * http_server_req (r->q: method, path, the response, r->q.conn == NULL once
 * its connection closed). The core calls ds_http.c's callbacks; a handler
 * answers by filling r->q.resp_* and calling http_server_finish(&r->q),
 * which is also what frees an orphaned request: work resuming after a wait
 * first calls http_server_drop_orphan(&r->q) and stops when it returns 1. */
#ifndef DS_HTTP_INT_H
#define DS_HTTP_INT_H

#include "dataserver/ds.h"
#include "dataserver/ds_nsclient.h"
#include "dataserver/needle.h"
#include "net/http_server.h"
#include "proto/fname.h"

#include <http_parser.h>
#include <stddef.h>
#include <stdint.h>

#define HTTP_PROXY_TIMEOUT_MS 3000 /* one READ to a replica */
#define HTTP_UPLOAD_TIMEOUT_MS 10000 /* whole upload or delete, retries included */
#define HTTP_UPLOAD_ATTEMPTS 8
#define HTTP_GET_TIMEOUT_MS 8000   /* whole GET or HEAD, rounds over the replicas included */
#define HTTP_ROUND_WAIT_MIN_MS 20  /* first wait before another round of a GET */
#define HTTP_ROUND_WAIT_MAX_MS 500 /* longest wait between rounds */

/* Cache-Control of each kind of answer. Errors get short lifetimes so a CDN
 * neither hammers the origin nor keeps a mistake for long. */
#define HTTP_CC_FILE "public, max-age=31536000, immutable"
#define HTTP_CC_404 "public, max-age=60"
#define HTTP_CC_410 "public, max-age=600"
#define HTTP_CC_4XX "public, max-age=10"
#define HTTP_CC_NOSTORE "no-store"
#define HTTP_RETRY_AFTER_S 1

struct http_req {
    struct http_server_req q; /* first: the core's part (net/http_server.h) */
    struct ds *ds;

    /* the request's headers this origin reads, and an upload's body */
    char *if_none_match, *if_modified_since, *range, *if_range;
    char *authorization, *content_type, *expect, *accept_encoding;
    uint8_t *body;
    size_t body_len, body_cap;

    /* GET/HEAD, DELETE, upload work */
    struct fname f;
    char ext[FNAME_MAX_EXT + 1];
    struct ds_loc loc;
    int loc_from_cache;
    int loc_fresh;         /* loc is the nameserver's answer of this round */
    int replica;           /* next replica to try */
    int ec_next;           /* erasure-coded: next shard holder asked to rebuild the file */
    int lapsed_local;      /* our copy answered IMG_EVIEWOLD */
    int lapsed;            /* replicas that answered IMG_EVIEWOLD */
    int any_view;          /* the last round: copies with a lapsed view serve too */
    int notfound;          /* copies that answered IMG_ENOTFOUND this round */
    int failed;            /* copies that could not answer this round (down, damaged...) */
    int round_wait_ms;     /* wait before the next round */
    int want_zstd;         /* Accept-Encoding allows zstd: compressed files go as stored */
    int attempts;
    uint64_t excl[HTTP_UPLOAD_ATTEMPTS];
    int nexcl;
    uint32_t crc;
    unsigned mime;
    uint64_t deadline_ms;
    uint64_t reserved;     /* bytes of the receive budget this upload's body holds */

    /* metrics (ds_metrics_http, counted when the request is freed) */
    uint64_t start_ns;     /* the head was complete (uv_hrtime) */
    uint64_t answer_ns;    /* the answer was built */
    int status;            /* its status code; 0: never answered */
    int file_get;          /* a GET or HEAD of a file */
    int from_replica;      /* its file was fetched from another replica */
};

/* ds_http.c: runs then(r) after `ms` on the loop, unless the client has
 * gone by then (the request is finished instead). Returns 0, or -ENOMEM
 * (then never runs). */
int http_req_wait(struct http_req *r, uint64_t ms, void (*then)(struct http_req *r));

/* ds_http.c: builds a response with the common headers (Server, Date,
 * Connection) plus `extra` (complete "Name: value\r\n" lines, may be NULL),
 * and a text body (not sent for HEAD), then finishes the request. */
void http_reply_text(struct http_req *r, int code, const char *cache_control,
                     const char *extra, const char *body);
/* Builds the status line and common headers into a malloc'd buffer with
 * room for `more` extra bytes; returns the buffer and its used length in
 * *len, or NULL. */
char *http_head_begin(struct http_req *r, int code, size_t more, size_t *len);

/* http_get.c */
void http_get_start(struct http_req *r);

/* http_put.c */
/* Checks the bearer token of a POST/PUT/DELETE at the end of its headers
 * (a writer-or-better key's secret, or the deprecated upload token):
 * returns 0 when allowed, or the status to refuse with (401: none or not a
 * key; 403: a key below writer, or uploads off). */
int http_auth_check(struct http_req *r);
void http_upload_start(struct http_req *r);
void http_delete_start(struct http_req *r);

#endif
