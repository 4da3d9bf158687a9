/* ds_http.c - the dataserver's HTTP port, the CDN origin (docs/http.md), on
 * top of the HTTP server core (net/http_server.h), which owns listening,
 * connections, parsing, limits, timeouts and the in-order response queue.
 * Here: the origin's callbacks for that core - the headers it reads and
 * the checks at the end of a request head (token, upload size, 100-continue),
 * the upload body, the routes (/healthz, /readyz, /metrics, uploads, files:
 * http_get.c, http_put.c) and the answers to what the core refuses - and
 * the common response headers (Server, Date, Connection). Requests that do
 * disk or network work take one of the core's in-flight slots
 * (--max-inflight; 503 + Retry-After past it). An upload's body holds its
 * length in the receive budget (ds_recv_reserve; 503 + Retry-After past
 * it) until the body is whole. 404s are counted per client address: one
 * that spent its bucket (--miss-rate, --miss-burst) gets 429 +
 * Retry-After for every file GET or HEAD until it refills; the addresses
 * of --miss-exempt (CDN shields) are never counted nor slowed. The same
 * origin may also listen with TLS (--https): a second server of the core
 * with the same callbacks and limits. Every answer is counted once in the
 * origin's metrics (ds_metrics_http) when its request is freed. */
#include "dataserver/http_int.h"

#include "base/err.h"
#include "base/log.h"
#include "dataserver/ds_metrics.h"
#include "dataserver/http_util.h"
#include "net/http_tls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define NS_PER_S 1e9

/* ---- responses ------------------------------------------------------------ */

/* The Date header value, formatted once per second. */
static const char *date_now(void)
{
    static char buf[HTTP_DATE_LEN + 1];
    static time_t last;
    time_t now = time(NULL);
    if (now != last) {
        http_format_date(now, buf);
        last = now;
    }
    return buf;
}

char *http_head_begin(struct http_req *r, int code, size_t more, size_t *len)
{
    size_t cap = 256 + more;
    char *buf = malloc(cap);
    if (!buf)
        return NULL;
    const char *conn = r->q.close_after ? "Connection: close\r\n"
                       : r->q.http10      ? "Connection: keep-alive\r\n"
                                          : "";
    r->status = code;
    r->answer_ns = uv_hrtime();
    int n = snprintf(buf, cap, "HTTP/1.1 %d %s\r\nServer: imgstore\r\nDate: %s\r\n%s", code,
                     http_server_reason(code), date_now(), conn);
    *len = (size_t)n;
    return buf;
}

struct req_wait {
    uv_timer_t t;
    struct http_req *r;
    void (*then)(struct http_req *r);
};

static void req_wait_closed(uv_handle_t *h)
{
    free(h->data);
}

static void req_wait_done(uv_timer_t *t)
{
    struct req_wait *w = t->data;
    struct http_req *r = w->r;
    void (*then)(struct http_req *) = w->then;
    uv_close((uv_handle_t *)t, req_wait_closed);
    if (http_server_drop_orphan(&r->q))
        return;
    then(r);
}

int http_req_wait(struct http_req *r, uint64_t ms, void (*then)(struct http_req *r))
{
    struct req_wait *w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    w->r = r;
    w->then = then;
    w->t.data = w;
    uv_timer_init(r->ds->loop, &w->t);
    uv_timer_start(&w->t, req_wait_done, ms, 0);
    return 0;
}

/* A 404 to a GET or HEAD: one token of the client's address. */
static void note_miss(struct http_req *r)
{
    struct ds *ds = r->ds;
    ds->http_misses++;
    if (!addr_set_has(&ds->miss_exempt, &r->q.peer))
        addr_buckets_take(&ds->misses, &r->q.peer, uv_now(ds->loop));
}

void http_reply_text(struct http_req *r, int code, const char *cache_control, const char *extra,
                     const char *body)
{
    if (code == 404 && (r->q.method == HTTP_GET || r->q.method == HTTP_HEAD))
        note_miss(r);
    size_t blen = strlen(body), len;
    size_t elen = extra ? strlen(extra) : 0;
    if (!r->q.keep_alive)
        r->q.close_after = 1;
    char *buf = http_head_begin(r, code, 160 + elen + blen, &len);
    if (!buf) {
        r->q.close_after = 1;
        r->q.resp_hdr = NULL;
        http_server_finish(&r->q);
        return;
    }
    int send_body = !r->q.head_only && code != 304 && code != 204;
    len += (size_t)sprintf(buf + len,
                           "Content-Type: text/plain; charset=utf-8\r\nContent-Length: %zu\r\n"
                           "Cache-Control: %s\r\n%s\r\n",
                           blen, cache_control, extra ? extra : "");
    if (send_body) {
        memcpy(buf + len, body, blen);
        len += blen;
    }
    r->q.resp_hdr = buf;
    r->q.resp_hdr_len = len;
    http_server_finish(&r->q);
}

/* ---- the core's callbacks ---------------------------------------------------- */

/* The origin's request of a core request; every callback starts here. */
static struct http_req *req_of(struct http_server_req *q)
{
    struct http_req *r = (struct http_req *)q;
    r->ds = q->user;
    if (!r->start_ns)
        r->start_ns = uv_hrtime();
    return r;
}

/* Gives back what r's body holds of the receive budget. */
static void body_unreserve(struct http_req *r)
{
    if (r->reserved) {
        ds_recv_release(r->ds, r->reserved);
        r->reserved = 0;
    }
}

/* Holds `want` bytes of the receive budget for r's body in all. Returns 0
 * or IMG_EBUSY. */
static int body_reserve(struct http_req *r, uint64_t want)
{
    if (want <= r->reserved)
        return 0;
    int rc = ds_recv_reserve(r->ds, want - r->reserved, 1);
    if (rc == 0)
        r->reserved = want;
    return rc;
}

/* Counts r's answer in the origin's metrics, once, as r is freed: by then
 * its response was handed to the connection (or the client had gone). */
static void count_answer(struct http_req *r)
{
    if (!r->ds || !r->status)
        return;
    struct http_server_req *q = &r->q;
    uint64_t bytes = q->conn ? q->resp_hdr_len + q->resp_body_len : 0;
    enum ds_http_source src = DS_HTTP_SRC_NONE;
    int file = r->status == 200 || r->status == 206 || r->status == 304 || r->status == 416;
    if (r->file_get && file)
        src = r->from_replica ? DS_HTTP_SRC_REPLICA : DS_HTTP_SRC_LOCAL;
    double s = r->answer_ns > r->start_ns ? (double)(r->answer_ns - r->start_ns) / NS_PER_S : 0;
    ds_metrics_http(r->ds, q->method, r->status, s, bytes, src);
}

static void req_free(struct http_server_req *q)
{
    struct http_req *r = (struct http_req *)q;
    count_answer(r);
    body_unreserve(r);
    free(r->if_none_match);
    free(r->if_modified_since);
    free(r->range);
    free(r->if_range);
    free(r->authorization);
    free(r->content_type);
    free(r->expect);
    free(r->accept_encoding);
    free(r->body);
}

/* Answers `r` early (before its body) and stops reading the connection: the
 * body that follows is never parsed. Used for refused uploads. */
static void refuse_early(struct http_req *r, int code, const char *extra, const char *body)
{
    http_server_refuse(&r->q);
    http_reply_text(r, code, HTTP_CC_NOSTORE, extra, body);
}

static int is_upload(const struct http_req *r)
{
    return (r->q.method == HTTP_POST || r->q.method == HTTP_PUT) && strcmp(r->q.path, "/") == 0;
}

static void on_head(struct http_server_req *q)
{
    struct http_req *r = req_of(q);
    int oom = 0;
    r->if_none_match = http_server_header(q, "If-None-Match", &oom);
    r->if_modified_since = http_server_header(q, "If-Modified-Since", &oom);
    r->range = http_server_header(q, "Range", &oom);
    r->if_range = http_server_header(q, "If-Range", &oom);
    r->authorization = http_server_header(q, "Authorization", &oom);
    r->content_type = http_server_header(q, "Content-Type", &oom);
    r->expect = http_server_header(q, "Expect", &oom);
    r->accept_encoding = http_server_header(q, "Accept-Encoding", &oom);
    if (oom) {
        refuse_early(r, 503, "Retry-After: 1\r\n", "out of memory\n");
        return;
    }
    int upload = is_upload(r);
    int del = q->method == HTTP_DELETE && strcmp(q->path, "/") != 0;
    if (upload || del) {
        int code = http_auth_check(r);
        if (code == 401 && !r->authorization) {
            refuse_early(r, 401, "WWW-Authenticate: Bearer realm=\"imgstore\"\r\n",
                         "a bearer token is required\n");
            return;
        }
        if (code == 401) {
            refuse_early(r, 401,
                         "WWW-Authenticate: Bearer realm=\"imgstore\", error=\"invalid_token\"\r\n",
                         "the bearer token is not a key of this cluster\n");
            return;
        }
        if (code != 0) {
            refuse_early(r, code, NULL, "forbidden\n");
            return;
        }
    }
    if (upload) {
        if (q->has_length && q->length > r->ds->http_max_upload) {
            refuse_early(r, 413, NULL, "body too large\n");
            return;
        }
        if (q->has_length && body_reserve(r, q->length) != 0) {
            refuse_early(r, 503, "Retry-After: 1\r\n", "busy receiving other uploads, retry\n");
            return;
        }
        if (r->expect && strcasecmp(r->expect, "100-continue") == 0)
            http_server_continue(q);
    }
}

static void on_body(struct http_server_req *q, const char *at, size_t len, uint64_t left)
{
    struct http_req *r = req_of(q);
    if (!is_upload(r))
        return; /* bodies of other requests are read and dropped */
    if (r->body_len + len > r->ds->http_max_upload) {
        refuse_early(r, 413, NULL, "body too large\n");
        return;
    }
    if (body_reserve(r, r->body_len + len) != 0) { /* chunked: as it comes */
        refuse_early(r, 503, "Retry-After: 1\r\n", "busy receiving other uploads, retry\n");
        return;
    }
    if (r->body_len + len > r->body_cap) {
        size_t cap = r->body_cap ? r->body_cap : 65536;
        while (cap < r->body_len + len)
            cap *= 2;
        if (q->has_length && cap > r->body_len + len + left)
            cap = r->body_len + len + left;
        uint8_t *nb = realloc(r->body, cap);
        if (!nb) {
            refuse_early(r, 503, "Retry-After: 1\r\n", "out of memory\n");
            return;
        }
        r->body = nb;
        r->body_cap = cap;
    }
    memcpy(r->body + r->body_len, at, len);
    r->body_len += len;
}

/* Takes an in-flight slot for work that touches the disk or the network, or
 * answers 503 when the server is at its limit. Returns 1 when taken. */
static int take_slot(struct http_req *r)
{
    if (!http_server_take_slot(&r->q)) {
        http_reply_text(r, 503, HTTP_CC_NOSTORE, "Retry-After: 1\r\n", "overloaded, retry\n");
        return 0;
    }
    return 1;
}

/* The routes of a complete request. */
static void on_request(struct http_server_req *q)
{
    struct http_req *r = req_of(q);
    const char *path = q->path;
    int get = q->method == HTTP_GET || q->method == HTTP_HEAD;
    body_unreserve(r); /* the body is whole: no longer being received */
    if (strcmp(path, "/healthz") == 0) {
        if (get)
            http_reply_text(r, 200, HTTP_CC_NOSTORE, NULL, "ok\n");
        else
            http_reply_text(r, 405, HTTP_CC_4XX, "Allow: GET, HEAD\r\n", "method not allowed\n");
        return;
    }
    if (strcmp(path, "/readyz") == 0 && get) {
        /* Ready once a nameserver has confirmed our view since start-up (or
         * since a stall): before that, local copies are not served (ds_file.c),
         * so a load balancer or a start-up script waits for this. */
        if (r->ds->view_confirmed)
            http_reply_text(r, 200, HTTP_CC_NOSTORE, NULL, "ready\n");
        else
            http_reply_text(r, 503, HTTP_CC_NOSTORE, "Retry-After: 1\r\n",
                            "not serving local reads yet: waiting for the nameserver\n");
        return;
    }
    if (strcmp(path, "/metrics") == 0 && get) { /* Prometheus text (ds_metrics.c) */
        char *text = NULL;
        size_t text_len;
        if (ds_metrics_render(r->ds, &text, &text_len) == 0)
            http_reply_text(r, 200, HTTP_CC_NOSTORE, NULL, text);
        else
            http_reply_text(r, 500, HTTP_CC_NOSTORE, NULL, "out of memory\n");
        free(text);
        return;
    }
    if (strcmp(path, "/") == 0) {
        if (q->method == HTTP_POST || q->method == HTTP_PUT) {
            if (take_slot(r))
                http_upload_start(r);
        } else if (get) {
            http_reply_text(r, 404, HTTP_CC_404, NULL, "not found\n");
        } else {
            http_reply_text(r, 405, HTTP_CC_4XX, "Allow: GET, HEAD, POST, PUT\r\n",
                            "method not allowed\n");
        }
        return;
    }
    if (!get && q->method != HTTP_DELETE) {
        http_reply_text(r, 405, HTTP_CC_4XX, "Allow: GET, HEAD, DELETE\r\n",
                        "method not allowed\n");
        return;
    }
    unsigned retry_s = 1;
    if (get && !addr_buckets_allows(&r->ds->misses, &q->peer, uv_now(r->ds->loop), &retry_s) &&
        !addr_set_has(&r->ds->miss_exempt, &q->peer)) {
        char extra[48];
        snprintf(extra, sizeof(extra), "Retry-After: %u\r\n", retry_s);
        http_reply_text(r, 429, HTTP_CC_NOSTORE, extra, "too many misses, slow down\n");
        return;
    }
    const char *ext = NULL;
    size_t ext_len = 0;
    if (path[0] != '/' || fname_decode(path + 1, strlen(path + 1), &r->f, &ext, &ext_len) != 0) {
        http_reply_text(r, 400, HTTP_CC_4XX, NULL, "malformed file name\n");
        return;
    }
    if (ext && ext_len < sizeof(r->ext)) {
        memcpy(r->ext, ext, ext_len);
        r->ext[ext_len] = '\0';
    }
    if (!take_slot(r))
        return;
    r->file_get = get;
    if (get)
        http_get_start(r);
    else
        http_delete_start(r);
}

/* A request the core refuses (a limit, a parse error, out of memory): it
 * closes the connection after this answer. */
static void on_error(struct http_server_req *q, int code)
{
    struct http_req *r = req_of(q);
    if (code == 503) {
        http_reply_text(r, 503, HTTP_CC_NOSTORE, "Retry-After: 1\r\n", "out of memory\n");
        return;
    }
    const char *body = code == 414 ? "request target too long\n"
                       : code == 431 ? "request header fields too large\n"
                       : code == 408 ? "request head took too long\n"
                       : code == 505 ? "http version not supported\n"
                                     : "bad request\n";
    http_reply_text(r, code, HTTP_CC_NOSTORE, NULL, body);
}

static const struct http_server_ops ds_http_ops = {
    .on_head = on_head,
    .on_body = on_body,
    .on_request = on_request,
    .on_error = on_error,
    .req_free = req_free,
};

/* The core's settings of both ports. */
static struct http_server_config http_config(const struct ds *ds)
{
    struct http_server_config cfg = {
        .header_ms = ds->http_header_ms,
        .idle_ms = ds->http_idle_ms,
        .max_inflight = ds->http_max_inflight,
        .keep_headers = 1,
        .req_size = sizeof(struct http_req),
        .max_conns = ds->max_conns,
        .max_conns_per_addr = ds->max_conns_per_addr,
    };
    return cfg;
}

int ds_http_start(struct ds *ds)
{
    if (ds->http_max_upload == 0)
        ds->http_max_upload = DS_HTTP_MAX_UPLOAD;
    if (ds->http_max_upload > NEEDLE_MAX_DATA)
        ds->http_max_upload = NEEDLE_MAX_DATA;
    if (ds->http_max_inflight <= 0)
        ds->http_max_inflight = DS_HTTP_MAX_INFLIGHT;
    if (ds->http_idle_ms <= 0)
        ds->http_idle_ms = DS_HTTP_IDLE_MS;
    if (ds->http_header_ms <= 0)
        ds->http_header_ms = DS_HTTP_HEADER_MS;
    if (!ds->miss_rate_set) {
        ds->miss_rate = DS_MISS_RATE;
        ds->miss_burst = DS_MISS_BURST;
    }
    if (ds->miss_burst < 1)
        ds->miss_burst = ds->miss_rate > 1 ? ds->miss_rate : 1;
    ds->misses.rate = ds->miss_rate;
    ds->misses.burst = ds->miss_burst;
    if (!ds->nsc) {
        int rc = ds_nsc_init(ds);
        if (rc != 0)
            return rc;
    }
    struct http_server_config cfg = http_config(ds);
    return http_server_start(ds->loop, ds->http_bind[0] ? ds->http_bind : ds->http_addr, &cfg,
                             &ds_http_ops, ds, &ds->http);
}

int ds_https_start(struct ds *ds)
{
    struct http_server_config cfg = http_config(ds);
    cfg.tls = ds->tls;
    int rc = http_server_start(ds->loop, ds->https_addr, &cfg, &ds_http_ops, ds, &ds->https);
    if (rc == 0 && http_tls_watch(ds->tls, ds->loop) != 0)
        log_warn("TLS: cannot watch the certificate files (out of memory): no reload");
    return rc;
}

void ds_http_stop(struct ds *ds)
{
    http_server_stop(ds->http); /* frees itself once closed */
    ds->http = NULL;
    http_server_stop(ds->https);
    ds->https = NULL;
    http_tls_free(ds->tls); /* open connections keep their own reference */
    ds->tls = NULL;
    ds_nsc_stop(ds);
}
