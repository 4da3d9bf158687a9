/* ds_http.c - the dataserver's HTTP port: connections, parsing, limits,
 * timeouts and the in-order response queue of the CDN origin (docs/http.md).
 *
 * Requests are parsed by Debian's http-parser (libhttp-parser), never by
 * hand, on the dataserver's libuv loop; nothing here blocks. Each
 * connection keeps its requests in a FIFO (http_int.h) so HTTP/1.1
 * keep-alive and pipelining answer strictly in request order even when the
 * disk or a replica answers out of order. Every input is hostile: the
 * request target (414), the header block (431), the upload body (413), the
 * time a request head may take (408) and the time a connection may sit idle
 * or stalled are all bounded, and the server-wide number of requests doing
 * disk or network work is capped (503 + Retry-After past it). */
#include "dataserver/http_int.h"

#include "base/err.h"
#include "base/log.h"
#include "dataserver/ds_metrics.h"
#include "dataserver/http_util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define HTTP_TICK_MIN_MS 20

struct http_hdr {
    uint16_t name_off, name_len, val_off, val_len;
};

struct http_conn {
    uv_tcp_t tcp;
    uv_timer_t tick;
    struct http_conn *prev, *next;
    struct http_server *srv;
    struct ds *ds;
    http_parser parser;
    int handles;
    int closing;
    int reading;
    int draining;      /* stop parsing: a response that closes is queued */
    int err_status;    /* 414/431 noted by a callback that stopped the parser */
    int nwriting;      /* responses handed to uv_write, not yet written */
    size_t held;       /* unparsed bytes kept at rbuf[0] while paused */
    struct http_req *head, *tail, *cur;
    int nqueued;
    uint64_t last_activity_ms;
    uint64_t head_started_ms; /* 0 when no request head is being received */
    /* the request being parsed: target and headers */
    char url[HTTP_MAX_URL + 1];
    size_t url_len;
    char hbuf[HTTP_MAX_HEADER_BYTES];
    size_t hlen;
    struct http_hdr hdrs[HTTP_MAX_HEADERS];
    int nhdrs;
    int last_was_value;
    char rbuf[HTTP_READ_BUF];
};

static http_parser_settings settings;

static void http_conn_close(struct http_conn *hc);
static void http_conn_flush(struct http_conn *hc);

/* ---- responses ------------------------------------------------------------ */

const char *http_reason(int code)
{
    switch (code) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 410: return "Gone";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 416: return "Range Not Satisfiable";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    default: return "Unknown";
    }
}

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
    const char *conn = r->close_after ? "Connection: close\r\n"
                       : r->http10    ? "Connection: keep-alive\r\n"
                                      : "";
    int n = snprintf(buf, cap, "HTTP/1.1 %d %s\r\nServer: imgstore\r\nDate: %s\r\n%s", code,
                     http_reason(code), date_now(), conn);
    *len = (size_t)n;
    return buf;
}

void http_reply_text(struct http_req *r, int code, const char *cache_control, const char *extra,
                     const char *body)
{
    size_t blen = strlen(body), len;
    size_t elen = extra ? strlen(extra) : 0;
    if (!r->keep_alive)
        r->close_after = 1;
    char *buf = http_head_begin(r, code, 160 + elen + blen, &len);
    if (!buf) {
        r->close_after = 1;
        r->resp_hdr = NULL;
        http_req_finish(r);
        return;
    }
    int send_body = !r->head_only && code != 304 && code != 204;
    len += (size_t)sprintf(buf + len,
                           "Content-Type: text/plain; charset=utf-8\r\nContent-Length: %zu\r\n"
                           "Cache-Control: %s\r\n%s\r\n",
                           blen, cache_control, extra ? extra : "");
    if (send_body) {
        memcpy(buf + len, body, blen);
        len += blen;
    }
    r->resp_hdr = buf;
    r->resp_hdr_len = len;
    http_req_finish(r);
}

static void req_free(struct http_req *r)
{
    free(r->path);
    free(r->if_none_match);
    free(r->if_modified_since);
    free(r->range);
    free(r->if_range);
    free(r->authorization);
    free(r->content_type);
    free(r->expect);
    free(r->body);
    free(r->resp_hdr);
    free(r->resp_mem);
    free(r);
}

void http_req_finish(struct http_req *r)
{
    if (r->counted) {
        r->ds->http->inflight--;
        r->counted = 0;
    }
    r->responded = 1;
    if (!r->hc) {
        req_free(r);
        return;
    }
    r->state = REQ_READY;
    http_conn_flush(r->hc);
}

static void write_done(uv_write_t *w, int status)
{
    struct http_req *r = w->data;
    struct http_conn *hc = r->hc;
    int close_after = r->close_after;
    req_free(r);
    hc->nwriting--;
    if (hc->closing)
        return;
    hc->last_activity_ms = uv_now(hc->ds->loop);
    if (status < 0 || close_after) {
        http_conn_close(hc);
        return;
    }
    http_conn_flush(hc);
    if (!hc->closing && hc->draining && !hc->head && hc->nwriting == 0)
        http_conn_close(hc);
}

static void read_resume(struct http_conn *hc);

/* Writes every READY response at the head of the queue, in order. */
static void http_conn_flush(struct http_conn *hc)
{
    while (!hc->closing && hc->head && hc->head->state == REQ_READY) {
        struct http_req *r = hc->head;
        hc->head = r->next;
        if (!hc->head)
            hc->tail = NULL;
        hc->nqueued--;
        r->next = NULL;
        if (!r->resp_hdr) { /* out of memory while building it */
            req_free(r);
            http_conn_close(hc);
            return;
        }
        r->state = REQ_WRITING;
        uv_buf_t bufs[2] = {uv_buf_init(r->resp_hdr, (unsigned)r->resp_hdr_len),
                            uv_buf_init((char *)r->resp_body, (unsigned)r->resp_body_len)};
        r->wreq.data = r;
        int close_after = r->close_after;
        if (uv_write(&r->wreq, (uv_stream_t *)&hc->tcp, bufs, r->resp_body_len ? 2 : 1,
                     write_done) != 0) {
            req_free(r);
            http_conn_close(hc);
            return;
        }
        hc->nwriting++;
        if (close_after) {
            /* Nothing after this response will be answered. */
            hc->draining = 1;
            if (hc->reading) {
                uv_read_stop((uv_stream_t *)&hc->tcp);
                hc->reading = 0;
            }
            return;
        }
    }
    read_resume(hc);
}

/* ---- connection lifetime ---------------------------------------------------- */

static void conn_handle_closed(uv_handle_t *h)
{
    struct http_conn *hc = h->data;
    if (--hc->handles == 0)
        free(hc);
}

static void http_conn_close(struct http_conn *hc)
{
    if (hc->closing)
        return;
    hc->closing = 1;
    struct http_server *srv = hc->srv;
    if (hc->prev)
        hc->prev->next = hc->next;
    else
        srv->conns = hc->next;
    if (hc->next)
        hc->next->prev = hc->prev;
    for (struct http_req *r = hc->head, *n; r; r = n) {
        n = r->next;
        r->next = NULL;
        if (r->state == REQ_WORKING)
            r->hc = NULL; /* freed when its work completes */
        else
            req_free(r);
    }
    hc->head = hc->tail = hc->cur = NULL;
    hc->nqueued = 0;
    uv_close((uv_handle_t *)&hc->tick, conn_handle_closed);
    uv_close((uv_handle_t *)&hc->tcp, conn_handle_closed);
}

/* ---- parsing ------------------------------------------------------------------- */

static int on_message_begin(http_parser *p)
{
    struct http_conn *hc = p->data;
    struct http_req *r = calloc(1, sizeof(*r));
    if (!r)
        return -1;
    r->hc = hc;
    r->ds = hc->ds;
    r->state = REQ_PARSING;
    r->keep_alive = 1;
    if (hc->tail)
        hc->tail->next = r;
    else
        hc->head = r;
    hc->tail = r;
    hc->nqueued++;
    hc->cur = r;
    hc->url_len = 0;
    hc->hlen = 0;
    hc->nhdrs = 0;
    hc->last_was_value = 0;
    hc->head_started_ms = uv_now(hc->ds->loop);
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct http_conn *hc = p->data;
    if (hc->url_len + len > HTTP_MAX_URL) {
        hc->err_status = 414;
        return -1;
    }
    memcpy(hc->url + hc->url_len, at, len);
    hc->url_len += len;
    return 0;
}

static int hdr_append(struct http_conn *hc, const char *at, size_t len)
{
    if (hc->hlen + len > HTTP_MAX_HEADER_BYTES) {
        hc->err_status = 431;
        return -1;
    }
    memcpy(hc->hbuf + hc->hlen, at, len);
    hc->hlen += len;
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    struct http_conn *hc = p->data;
    if (hc->nhdrs == 0 || hc->last_was_value) {
        if (hc->nhdrs == HTTP_MAX_HEADERS) {
            hc->err_status = 431;
            return -1;
        }
        struct http_hdr *h = &hc->hdrs[hc->nhdrs++];
        h->name_off = (uint16_t)hc->hlen;
        h->name_len = 0;
        h->val_off = 0;
        h->val_len = 0;
        hc->last_was_value = 0;
    }
    if (hdr_append(hc, at, len) != 0)
        return -1;
    hc->hdrs[hc->nhdrs - 1].name_len += (uint16_t)len;
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    struct http_conn *hc = p->data;
    if (hc->nhdrs == 0)
        return -1;
    struct http_hdr *h = &hc->hdrs[hc->nhdrs - 1];
    if (!hc->last_was_value) {
        h->val_off = (uint16_t)hc->hlen;
        hc->last_was_value = 1;
    }
    if (hdr_append(hc, at, len) != 0)
        return -1;
    h->val_len += (uint16_t)len;
    return 0;
}

/* Copies the value of header `name` (repeated ones joined with ", ") into a
 * new string, or NULL when absent. *oom is set when memory ran out. */
static char *hdr_get(struct http_conn *hc, const char *name, int *oom)
{
    size_t nlen = strlen(name), total = 0;
    for (int i = 0; i < hc->nhdrs; i++)
        if (hc->hdrs[i].name_len == nlen &&
            strncasecmp(hc->hbuf + hc->hdrs[i].name_off, name, nlen) == 0)
            total += hc->hdrs[i].val_len + 2;
    if (total == 0)
        return NULL;
    char *s = malloc(total + 1), *o = s;
    if (!s) {
        *oom = 1;
        return NULL;
    }
    for (int i = 0; i < hc->nhdrs; i++) {
        const struct http_hdr *h = &hc->hdrs[i];
        if (h->name_len != nlen || strncasecmp(hc->hbuf + h->name_off, name, nlen) != 0)
            continue;
        if (o != s) {
            *o++ = ',';
            *o++ = ' ';
        }
        memcpy(o, hc->hbuf + h->val_off, h->val_len);
        o += h->val_len;
    }
    *o = '\0';
    /* A NUL inside a value would hide the rest from the string helpers. */
    if (strlen(s) != (size_t)(o - s)) {
        s[0] = '\0';
    }
    return s;
}

/* Answers `r` early (before its body) and stops reading the connection: the
 * body that follows is never parsed. Used for refused uploads. */
static void refuse_early(struct http_conn *hc, struct http_req *r, int code, const char *extra,
                         const char *body)
{
    r->close_after = 1;
    hc->draining = 1;
    http_parser_pause(&hc->parser, 1);
    http_reply_text(r, code, HTTP_CC_NOSTORE, extra, body);
}

static void send_continue(struct http_conn *hc)
{
    static char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    uv_buf_t b = uv_buf_init(cont, sizeof(cont) - 1);
    uv_try_write((uv_stream_t *)&hc->tcp, &b, 1);
}

static int on_headers_complete(http_parser *p)
{
    struct http_conn *hc = p->data;
    struct http_req *r = hc->cur;
    int oom = 0;
    hc->head_started_ms = 0;
    r->method = p->method;
    r->head_only = p->method == HTTP_HEAD;
    r->http10 = p->http_major == 1 && p->http_minor == 0;
    r->keep_alive = http_should_keep_alive(p);
    hc->url[hc->url_len] = '\0';
    size_t plen = strcspn(hc->url, "?#");
    r->path = strndup(hc->url, plen);
    r->if_none_match = hdr_get(hc, "If-None-Match", &oom);
    r->if_modified_since = hdr_get(hc, "If-Modified-Since", &oom);
    r->range = hdr_get(hc, "Range", &oom);
    r->if_range = hdr_get(hc, "If-Range", &oom);
    r->authorization = hdr_get(hc, "Authorization", &oom);
    r->content_type = hdr_get(hc, "Content-Type", &oom);
    r->expect = hdr_get(hc, "Expect", &oom);
    if (!r->path || oom) {
        refuse_early(hc, r, 503, "Retry-After: 1\r\n", "out of memory\n");
        return 0;
    }
    int upload = (p->method == HTTP_POST || p->method == HTTP_PUT) && strcmp(r->path, "/") == 0;
    int del = p->method == HTTP_DELETE && strcmp(r->path, "/") != 0;
    if (upload || del) {
        int code = http_auth_check(r);
        if (code == 401) {
            refuse_early(hc, r, 401, "WWW-Authenticate: Bearer realm=\"imgstore\"\r\n",
                         "a bearer token is required\n");
            return 0;
        }
        if (code != 0) {
            refuse_early(hc, r, code, NULL, "forbidden\n");
            return 0;
        }
    }
    if (upload) {
        if ((p->flags & F_CONTENTLENGTH) && p->content_length > hc->ds->http_max_upload) {
            refuse_early(hc, r, 413, NULL, "body too large\n");
            return 0;
        }
        if (r->expect && strcasecmp(r->expect, "100-continue") == 0 && hc->head == r)
            send_continue(hc);
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    struct http_conn *hc = p->data;
    struct http_req *r = hc->cur;
    if (r->responded)
        return 0;
    int upload = (r->method == HTTP_POST || r->method == HTTP_PUT) && strcmp(r->path, "/") == 0;
    if (!upload)
        return 0; /* bodies of other requests are read and dropped */
    if (r->body_len + len > hc->ds->http_max_upload) {
        refuse_early(hc, r, 413, NULL, "body too large\n");
        return 0;
    }
    if (r->body_len + len > r->body_cap) {
        size_t cap = r->body_cap ? r->body_cap : 65536;
        while (cap < r->body_len + len)
            cap *= 2;
        if (p->flags & F_CONTENTLENGTH && cap > r->body_len + len + p->content_length)
            cap = r->body_len + len + p->content_length;
        uint8_t *nb = realloc(r->body, cap);
        if (!nb) {
            refuse_early(hc, r, 503, "Retry-After: 1\r\n", "out of memory\n");
            return 0;
        }
        r->body = nb;
        r->body_cap = cap;
    }
    memcpy(r->body + r->body_len, at, len);
    r->body_len += len;
    return 0;
}

/* Takes an in-flight slot for work that touches the disk or the network, or
 * answers 503 when the server is at its limit. Returns 1 when taken. */
static int take_slot(struct http_req *r)
{
    struct http_server *srv = r->ds->http;
    if (srv->inflight >= r->ds->http_max_inflight) {
        http_reply_text(r, 503, HTTP_CC_NOSTORE, "Retry-After: 1\r\n", "overloaded, retry\n");
        return 0;
    }
    srv->inflight++;
    r->counted = 1;
    return 1;
}

static void dispatch(struct http_req *r)
{
    const char *path = r->path;
    int get = r->method == HTTP_GET || r->method == HTTP_HEAD;
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
        if (r->method == HTTP_POST || r->method == HTTP_PUT) {
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
    if (!get && r->method != HTTP_DELETE) {
        http_reply_text(r, 405, HTTP_CC_4XX, "Allow: GET, HEAD, DELETE\r\n",
                        "method not allowed\n");
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
    if (get)
        http_get_start(r);
    else
        http_delete_start(r);
}

static int on_message_complete(http_parser *p)
{
    struct http_conn *hc = p->data;
    struct http_req *r = hc->cur;
    hc->cur = NULL;
    if (!r || r->responded)
        return 0;
    if (!r->keep_alive)
        r->close_after = 1;
    r->state = REQ_WORKING;
    dispatch(r);
    /* Bound what one client can queue: stop after this message and resume
     * reading when the queue drains (http_conn_flush). */
    if (!hc->closing && hc->nqueued >= HTTP_PIPELINE_MAX)
        http_parser_pause(p, 1);
    return 0;
}

/* A request that broke the parser or a limit: answer it (or a fresh one)
 * and close after the answer. */
static void parse_failed(struct http_conn *hc, int code)
{
    struct http_req *r = hc->cur;
    hc->cur = NULL;
    if (!r || r->responded) {
        r = calloc(1, sizeof(*r));
        if (!r) {
            http_conn_close(hc);
            return;
        }
        r->hc = hc;
        r->ds = hc->ds;
        if (hc->tail)
            hc->tail->next = r;
        else
            hc->head = r;
        hc->tail = r;
        hc->nqueued++;
    }
    hc->draining = 1;
    hc->head_started_ms = 0;
    r->keep_alive = 0;
    r->close_after = 1;
    r->head_only = 0;
    r->state = REQ_WORKING;
    const char *body = code == 414 ? "request target too long\n"
                       : code == 431 ? "request header fields too large\n"
                       : code == 408 ? "request head took too long\n"
                                     : "bad request\n";
    http_reply_text(r, code, HTTP_CC_NOSTORE, NULL, body);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct http_conn *hc = h->data;
    buf->base = hc->rbuf;
    buf->len = sizeof(hc->rbuf);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct http_conn *hc = s->data;
    if (hc->closing)
        return;
    if (nread < 0) {
        http_conn_close(hc);
        return;
    }
    if (nread == 0 || hc->draining)
        return;
    hc->last_activity_ms = uv_now(hc->ds->loop);
    size_t done = http_parser_execute(&hc->parser, &settings, buf->base, (size_t)nread);
    if (hc->closing)
        return;
    enum http_errno e = HTTP_PARSER_ERRNO(&hc->parser);
    if (e == HPE_PAUSED) {
        if (hc->draining)
            return;
        /* Paused for back-pressure: keep the unparsed bytes by not reading
         * more; they are re-fed when reading resumes. */
        hc->held = (size_t)nread - done;
        if (hc->held > 0)
            memmove(hc->rbuf, buf->base + done, hc->held);
        uv_read_stop(s);
        hc->reading = 0;
        read_resume(hc);
        return;
    }
    if (e == HPE_OK && hc->parser.upgrade) {
        /* CONNECT or Upgrade: we speak neither. The request was answered as
         * a plain one; nothing after it is read, and the connection closes
         * once the answers are out. */
        uv_read_stop(s);
        hc->reading = 0;
        hc->draining = 1;
        if (hc->tail && hc->tail->state != REQ_WRITING)
            hc->tail->close_after = 1;
        if (!hc->head && hc->nwriting == 0)
            http_conn_close(hc);
        return;
    }
    if (e != HPE_OK || done != (size_t)nread) {
        int code = hc->err_status ? hc->err_status : 400;
        uv_read_stop(s);
        hc->reading = 0;
        parse_failed(hc, code);
    }
}

/* Resumes reading after back-pressure once the queue and the write queue
 * are short again, first parsing any bytes held when the parser paused. */
static void read_resume(struct http_conn *hc)
{
    if (hc->closing || hc->draining || hc->reading)
        return;
    if (hc->nqueued >= HTTP_PIPELINE_MAX / 2 || hc->tcp.write_queue_size > HTTP_WQ_MAX)
        return;
    if (HTTP_PARSER_ERRNO(&hc->parser) == HPE_PAUSED) {
        size_t held = hc->held;
        hc->held = 0;
        http_parser_pause(&hc->parser, 0);
        hc->reading = 1; /* read_cb must see us as reading */
        if (held > 0) {
            uv_buf_t b = uv_buf_init(hc->rbuf, (unsigned)held);
            read_cb((uv_stream_t *)&hc->tcp, (ssize_t)held, &b);
            if (hc->closing || !hc->reading)
                return;
        }
    }
    if (uv_read_start((uv_stream_t *)&hc->tcp, alloc_cb, read_cb) == 0)
        hc->reading = 1;
    else
        http_conn_close(hc);
}

/* ---- timeouts ------------------------------------------------------------------- */

static int conn_busy(const struct http_conn *hc)
{
    for (const struct http_req *r = hc->head; r; r = r->next)
        if (r->state == REQ_WORKING)
            return 1;
    return 0;
}

static void tick_cb(uv_timer_t *t)
{
    struct http_conn *hc = t->data;
    struct ds *ds = hc->ds;
    uint64_t now = uv_now(ds->loop);
    if (hc->closing)
        return;
    if (hc->head_started_ms && !hc->draining &&
        now - hc->head_started_ms >= (uint64_t)ds->http_header_ms) {
        uv_read_stop((uv_stream_t *)&hc->tcp);
        hc->reading = 0;
        parse_failed(hc, 408);
        hc->last_activity_ms = now;
        return;
    }
    /* Idle: no byte in either direction for http_idle_ms and nothing being
     * worked on (work has its own timeouts). Covers idle keep-alive
     * connections, clients that stop mid-body and clients that stop
     * reading their responses. */
    if (now - hc->last_activity_ms >= (uint64_t)ds->http_idle_ms && !conn_busy(hc))
        http_conn_close(hc);
}

static void on_connection(uv_stream_t *server, int status)
{
    struct ds *ds = server->data;
    struct http_server *srv = ds->http;
    if (status < 0)
        return;
    struct http_conn *hc = calloc(1, sizeof(*hc));
    if (!hc)
        return;
    hc->ds = ds;
    hc->srv = srv;
    uv_tcp_init(ds->loop, &hc->tcp);
    uv_timer_init(ds->loop, &hc->tick);
    hc->tcp.data = hc;
    hc->tick.data = hc;
    hc->handles = 2;
    hc->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = hc;
    srv->conns = hc;
    if (uv_accept(server, (uv_stream_t *)&hc->tcp) != 0) {
        http_conn_close(hc);
        return;
    }
    uv_tcp_nodelay(&hc->tcp, 1);
    http_parser_init(&hc->parser, HTTP_REQUEST);
    hc->parser.data = hc;
    hc->last_activity_ms = uv_now(ds->loop);
    /* The first request head is timed from the connection's start. */
    hc->head_started_ms = hc->last_activity_ms;
    int tick = ds->http_header_ms < ds->http_idle_ms ? ds->http_header_ms : ds->http_idle_ms;
    tick /= 4;
    if (tick < HTTP_TICK_MIN_MS)
        tick = HTTP_TICK_MIN_MS;
    uv_timer_start(&hc->tick, tick_cb, (uint64_t)tick, (uint64_t)tick);
    if (uv_read_start((uv_stream_t *)&hc->tcp, alloc_cb, read_cb) == 0)
        hc->reading = 1;
    else
        http_conn_close(hc);
}

int ds_http_start(struct ds *ds)
{
    http_parser_settings_init(&settings);
    settings.on_message_begin = on_message_begin;
    settings.on_url = on_url;
    settings.on_header_field = on_header_field;
    settings.on_header_value = on_header_value;
    settings.on_headers_complete = on_headers_complete;
    settings.on_body = on_body;
    settings.on_message_complete = on_message_complete;
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
    struct http_server *srv = calloc(1, sizeof(*srv));
    if (!srv)
        return -ENOMEM;
    srv->ds = ds;
    ds->http = srv;
    if (!ds->nsc) {
        int rc = ds_nsc_init(ds);
        if (rc != 0)
            return rc;
    }
    int rc = conn_listen(ds->loop, &ds->http_tcp, ds->http_addr, on_connection);
    ds->http_tcp.data = ds;
    return rc;
}

void ds_http_stop(struct ds *ds)
{
    uv_close((uv_handle_t *)&ds->http_tcp, NULL);
    if (ds->http)
        while (ds->http->conns)
            http_conn_close(ds->http->conns);
    ds_nsc_stop(ds);
}
