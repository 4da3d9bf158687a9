/* http_server.c - the HTTP/1.1 server core (http_server.h): listening,
 * connections, parsing, limits, timeouts and the in-order response queue,
 * shared by the dataserver's origin (dataserver/ds_http.c) and the
 * nameserver's status port (nameserver/ns_http.c). Calls base/, net/conn.h
 * (conn_listen) and net/limits.h (connections per address) only.
 *
 * Requests are parsed by Debian's http-parser (libhttp-parser), never by
 * hand, on the server's libuv loop; nothing here blocks. Each connection
 * keeps its requests in a FIFO (http_server.h) so HTTP/1.1 keep-alive and
 * pipelining answer strictly in request order even when the server's work
 * completes out of order. Every input is hostile: the request target (414),
 * the header block (431), the time a request head may take (408) and the
 * time a connection may sit idle or stalled are all bounded, and the number
 * of requests holding an in-flight slot is capped (the server answers 503
 * past it). Connections are counted per peer address (net/limits.h).
 *
 * HTTPS (config.tls): the bytes read are ciphertext handed to the
 * connection's TLS state (net/http_tls.h); the plaintext it gives back is
 * parsed as on a plain port, from the same read buffer. Each response is
 * encrypted as a whole when it leaves the queue and written with its
 * request; what TLS itself sends (the handshake, tickets, alerts) goes out
 * as separate writes in the order it was made. */
#include "net/http_server.h"

#include "net/conn.h"
#include "net/http_tls.h"
#include "net/limits.h"
#include "base/list.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define HTTP_SERVER_READ_BUF 16384
#define HTTP_TICK_MIN_MS 20

struct hdr {
    uint16_t name_off, name_len, val_off, val_len;
};

struct http_server {
    uv_loop_t *loop;
    uv_tcp_t listener;
    struct http_server_config cfg;
    struct http_server_ops ops;
    http_parser_settings settings;
    void *user;
    struct http_server_conn *conns; /* every open connection */
    int inflight;                   /* requests holding a slot */
    int tick_ms;                    /* each connection's timeout check */
    int handles;                    /* open handles: listener, 2 per connection */
    int nreqs;                      /* live requests, orphans included */
    int stopped;                    /* freed once handles and nreqs are 0 */
    struct conn_gate gate;          /* connections per address */
    uint64_t header_timeouts, idle_closes;
    uint64_t tls_done, tls_failed;
};

struct http_server_conn {
    uv_tcp_t tcp;
    uv_timer_t tick;
    struct http_server_conn *prev, *next;
    struct http_server *srv;
    http_parser parser;
    int handles;
    int closing;
    int reading;
    int draining;      /* stop parsing: a response that closes is queued */
    int err_status;    /* 414/431 noted by a callback that stopped the parser */
    int nwriting;      /* responses handed to uv_write, not yet written */
    size_t held;       /* unparsed bytes kept at rbuf[0] while paused */
    struct http_server_req *head, *tail, *cur;
    int nqueued;
    uint64_t last_activity_ms; /* the last progress: a head, body bytes, a response written */
    uint64_t head_started_ms; /* 0 when no request head is being received */
    struct sockaddr_storage peer;
    int gated;                /* counted in srv->gate */
    struct http_tls_conn *tls; /* HTTPS: the TLS state (owned), else NULL */
    int tls_up;               /* the handshake is done */
    int tls_fed;              /* bytes came from the peer */
    int tls_counted;          /* counted in srv->tls_failed */
    /* Host lines of the head being parsed (counted whatever keep_headers). */
    char fname[8];
    size_t fname_len;
    int field_open;
    int nhost;
    /* the request being parsed: target and headers */
    char url[HTTP_SERVER_MAX_URL + 1];
    size_t url_len;
    char hbuf[HTTP_SERVER_MAX_HEADER_BYTES];
    size_t hlen;
    struct hdr hdrs[HTTP_SERVER_MAX_HEADERS];
    int nhdrs;
    int last_was_value;
    char rbuf[HTTP_SERVER_READ_BUF];
};

static void hconn_close(struct http_server_conn *hc);
static void hconn_flush(struct http_server_conn *hc);

/* Frees the server once it is stopped and nothing refers to it. */
static void srv_release(struct http_server *srv)
{
    if (srv->stopped && srv->handles == 0 && srv->nreqs == 0) {
        conn_gate_free(&srv->gate);
        free(srv);
    }
}

/* ---- responses ------------------------------------------------------------ */

const char *http_server_reason(int code)
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
    case 409: return "Conflict";
    case 410: return "Gone";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 416: return "Range Not Satisfiable";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

static struct http_server_req *req_new(struct http_server_conn *hc)
{
    struct http_server *srv = hc->srv;
    struct http_server_req *q = calloc(1, srv->cfg.req_size);
    if (!q)
        return NULL;
    q->srv = srv;
    q->conn = hc;
    q->user = srv->user;
    q->peer = hc->peer;
    srv->nreqs++;
    return q;
}

/* Frees q; may free the server (a stopped one, with q its last request). */
static void req_free(struct http_server_req *q)
{
    struct http_server *srv = q->srv;
    if (srv->ops.req_free)
        srv->ops.req_free(q);
    free(q->path);
    free(q->resp_hdr);
    free(q->resp_mem);
    free(q->wire);
    free(q);
    srv->nreqs--;
    srv_release(srv);
}

/* Appends q to its connection's FIFO. */
static void req_enqueue(struct http_server_conn *hc, struct http_server_req *q)
{
    if (hc->tail)
        hc->tail->next = q;
    else
        hc->head = q;
    hc->tail = q;
    hc->nqueued++;
}

void http_server_finish(struct http_server_req *q)
{
    if (q->counted) {
        q->srv->inflight--;
        q->counted = 0;
    }
    q->responded = 1;
    if (!q->conn) {
        req_free(q);
        return;
    }
    q->state = HTTP_REQ_READY;
    hconn_flush(q->conn);
}

int http_server_drop_orphan(struct http_server_req *q)
{
    if (q->conn)
        return 0;
    http_server_finish(q);
    return 1;
}

int http_server_take_slot(struct http_server_req *q)
{
    struct http_server *srv = q->srv;
    if (srv->cfg.max_inflight > 0 && srv->inflight >= srv->cfg.max_inflight)
        return 0;
    srv->inflight++;
    q->counted = 1;
    return 1;
}

static void write_done(uv_write_t *w, int status)
{
    struct http_server_req *q = w->data;
    struct http_server_conn *hc = q->conn;
    int close_after = q->close_after;
    req_free(q);
    hc->nwriting--;
    if (hc->closing)
        return;
    hc->last_activity_ms = uv_now(hc->srv->loop);
    if (status < 0 || close_after) {
        hconn_close(hc);
        return;
    }
    hconn_flush(hc);
    if (!hc->closing && hc->draining && !hc->head && hc->nwriting == 0)
        hconn_close(hc);
}

static void read_resume(struct http_server_conn *hc);

/* ---- TLS ------------------------------------------------------------------------ */

/* What TLS sends by itself (handshake, tickets, alerts, 100 Continue). */
struct tls_write {
    uv_write_t w;
    char data[];
};

static void tls_write_done(uv_write_t *w, int status)
{
    struct http_server_conn *hc = w->handle->data;
    free(w->data);
    if (status < 0 && !hc->closing)
        hconn_close(hc);
}

/* Writes the bytes TLS has waiting. Returns 0 or a negative errno (the
 * caller closes the connection). */
static int tls_flush(struct http_server_conn *hc)
{
    size_t n = http_tls_conn_pending(hc->tls);
    if (n == 0)
        return 0;
    struct tls_write *tw = malloc(sizeof(*tw) + n);
    if (!tw)
        return -ENOMEM;
    n = http_tls_conn_take_out(hc->tls, tw->data, n);
    uv_buf_t b = uv_buf_init(tw->data, (unsigned)n);
    tw->w.data = tw;
    int rc = uv_write(&tw->w, (uv_stream_t *)&hc->tcp, &b, 1, tls_write_done);
    if (rc != 0)
        free(tw);
    return rc;
}

/* Counts a handshake that did not complete (once per connection). */
static void tls_count_failed(struct http_server_conn *hc)
{
    if (hc->tls && !hc->tls_up && !hc->tls_counted) {
        hc->tls_counted = 1;
        hc->srv->tls_failed++;
    }
}

/* A handshake failed: the alert, if the socket takes it, and close. */
static void tls_fail(struct http_server_conn *hc)
{
    char alert[256];
    size_t n = http_tls_conn_take_out(hc->tls, alert, sizeof(alert));
    if (n > 0) {
        uv_buf_t b = uv_buf_init(alert, (unsigned)n);
        uv_try_write((uv_stream_t *)&hc->tcp, &b, 1);
    }
    tls_count_failed(hc);
    hconn_close(hc);
}

/* Encrypts q's response (and a close_notify when the connection closes
 * after it) into q->wire, freeing the plaintext the core owns. Returns 0
 * with *out set, or a negative errno. */
static int tls_seal(struct http_server_conn *hc, struct http_server_req *q, uv_buf_t *out)
{
    int rc = http_tls_conn_write(hc->tls, q->resp_hdr, q->resp_hdr_len);
    if (rc == 0 && q->resp_body_len)
        rc = http_tls_conn_write(hc->tls, q->resp_body, q->resp_body_len);
    if (rc != 0)
        return rc;
    if (q->close_after)
        http_tls_conn_shutdown(hc->tls);
    size_t n = http_tls_conn_pending(hc->tls);
    q->wire = malloc(n ? n : 1);
    if (!q->wire)
        return -ENOMEM;
    n = http_tls_conn_take_out(hc->tls, q->wire, n);
    free(q->resp_hdr);
    free(q->resp_mem);
    q->resp_hdr = NULL;
    q->resp_mem = NULL;
    q->resp_body = NULL;
    *out = uv_buf_init(q->wire, (unsigned)n);
    return 0;
}

/* Writes every READY response at the head of the queue, in order. */
static void hconn_flush(struct http_server_conn *hc)
{
    while (!hc->closing && hc->head && hc->head->state == HTTP_REQ_READY) {
        struct http_server_req *q = hc->head;
        hc->head = q->next;
        if (!hc->head)
            hc->tail = NULL;
        hc->nqueued--;
        q->next = NULL;
        if (!q->resp_hdr) { /* out of memory while building it */
            req_free(q);
            hconn_close(hc);
            return;
        }
        q->state = HTTP_REQ_WRITING;
        uv_buf_t bufs[2] = {uv_buf_init(q->resp_hdr, (unsigned)q->resp_hdr_len),
                            uv_buf_init((char *)q->resp_body, (unsigned)q->resp_body_len)};
        unsigned nbufs = q->resp_body_len ? 2 : 1;
        if (hc->tls) {
            if (tls_seal(hc, q, &bufs[0]) != 0) {
                req_free(q);
                hconn_close(hc);
                return;
            }
            nbufs = 1;
        }
        q->wreq.data = q;
        int close_after = q->close_after;
        if (uv_write(&q->wreq, (uv_stream_t *)&hc->tcp, bufs, nbufs, write_done) != 0) {
            req_free(q);
            hconn_close(hc);
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
    struct http_server_conn *hc = h->data;
    struct http_server *srv = hc->srv;
    if (--hc->handles == 0) {
        http_tls_conn_free(hc->tls);
        free(hc);
    }
    srv->handles--;
    srv_release(srv);
}

static void hconn_close(struct http_server_conn *hc)
{
    if (hc->closing)
        return;
    hc->closing = 1;
    DLIST_UNLINK(hc->srv->conns, hc);
    for (struct http_server_req *q = hc->head, *n; q; q = n) {
        n = q->next;
        q->next = NULL;
        if (q->state == HTTP_REQ_WORKING)
            q->conn = NULL; /* freed when its work completes */
        else
            req_free(q);
    }
    hc->head = hc->tail = hc->cur = NULL;
    hc->nqueued = 0;
    if (hc->gated) {
        conn_gate_leave(&hc->srv->gate, &hc->peer);
        hc->gated = 0;
    }
    uv_close((uv_handle_t *)&hc->tick, conn_handle_closed);
    uv_close((uv_handle_t *)&hc->tcp, conn_handle_closed);
}

/* ---- parsing ------------------------------------------------------------------- */

static int on_message_begin(http_parser *p)
{
    struct http_server_conn *hc = p->data;
    struct http_server_req *q = req_new(hc);
    if (!q)
        return -1;
    q->state = HTTP_REQ_PARSING;
    q->keep_alive = 1;
    req_enqueue(hc, q);
    hc->cur = q;
    hc->url_len = 0;
    hc->hlen = 0;
    hc->nhdrs = 0;
    hc->last_was_value = 0;
    hc->field_open = 0;
    hc->nhost = 0;
    if (!hc->head_started_ms) /* else it runs from an earlier byte (a CRLF) */
        hc->head_started_ms = uv_now(hc->srv->loop);
    return 0;
}

/* Appends len bytes at `at` to buf, which holds *used of at most cap bytes;
 * past cap the request is refused with `status` (414 for the target, 431
 * for the header block) and -1 stops the parser. */
static int append_capped(struct http_server_conn *hc, char *buf, size_t *used, size_t cap,
                         int status, const char *at, size_t len)
{
    if (*used + len > cap) {
        hc->err_status = status;
        return -1;
    }
    memcpy(buf + *used, at, len);
    *used += len;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct http_server_conn *hc = p->data;
    return append_capped(hc, hc->url, &hc->url_len, HTTP_SERVER_MAX_URL, 414, at, len);
}

/* Appends to the header block (names and values of the kept headers). */
static int hdr_append(struct http_server_conn *hc, const char *at, size_t len)
{
    return append_capped(hc, hc->hbuf, &hc->hlen, HTTP_SERVER_MAX_HEADER_BYTES, 431, at, len);
}

/* The field name being read is complete: counts Host lines. */
static void field_end(struct http_server_conn *hc)
{
    if (hc->field_open && hc->fname_len == 4 && strncasecmp(hc->fname, "host", 4) == 0)
        hc->nhost++;
    hc->field_open = 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    struct http_server_conn *hc = p->data;
    if (!hc->field_open) {
        hc->field_open = 1;
        hc->fname_len = 0;
    }
    for (size_t i = 0; i < len && hc->fname_len < sizeof(hc->fname); i++)
        hc->fname[hc->fname_len++] = at[i];
    if (len > sizeof(hc->fname))
        hc->fname_len = sizeof(hc->fname);
    if (!hc->srv->cfg.keep_headers)
        return 0;
    if (hc->nhdrs == 0 || hc->last_was_value) {
        if (hc->nhdrs == HTTP_SERVER_MAX_HEADERS) {
            hc->err_status = 431;
            return -1;
        }
        struct hdr *h = &hc->hdrs[hc->nhdrs++];
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
    struct http_server_conn *hc = p->data;
    field_end(hc);
    if (!hc->srv->cfg.keep_headers)
        return 0;
    if (hc->nhdrs == 0)
        return -1;
    struct hdr *h = &hc->hdrs[hc->nhdrs - 1];
    if (!hc->last_was_value) {
        h->val_off = (uint16_t)hc->hlen;
        hc->last_was_value = 1;
    }
    if (hdr_append(hc, at, len) != 0)
        return -1;
    h->val_len += (uint16_t)len;
    return 0;
}

char *http_server_header(struct http_server_req *q, const char *name, int *oom)
{
    struct http_server_conn *hc = q->conn;
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
        const struct hdr *h = &hc->hdrs[i];
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

void http_server_refuse(struct http_server_req *q)
{
    struct http_server_conn *hc = q->conn;
    q->close_after = 1;
    hc->draining = 1;
    http_parser_pause(&hc->parser, 1);
}

void http_server_continue(struct http_server_req *q)
{
    static char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    struct http_server_conn *hc = q->conn;
    if (!hc || hc->head != q)
        return;
    if (hc->tls) {
        if (http_tls_conn_write(hc->tls, cont, sizeof(cont) - 1) != 0 || tls_flush(hc) != 0)
            hconn_close(hc);
        return;
    }
    uv_buf_t b = uv_buf_init(cont, sizeof(cont) - 1);
    uv_try_write((uv_stream_t *)&hc->tcp, &b, 1);
}

/* The path of the request target: origin form as it is, absolute form
 * ("http://host/NAME", RFC 9112 3.2.2) by its path ("/" when it has none).
 * Returns a new string or NULL (out of memory). */
static char *target_path(const char *url, size_t len)
{
    if (len > 0 && url[0] != '/' && url[0] != '*') {
        struct http_parser_url u;
        http_parser_url_init(&u);
        if (http_parser_parse_url(url, len, 0, &u) == 0 && (u.field_set & (1 << UF_SCHEMA)) &&
            (u.field_set & (1 << UF_HOST))) {
            if (!(u.field_set & (1 << UF_PATH)))
                return strdup("/");
            return strndup(url + u.field_data[UF_PATH].off, u.field_data[UF_PATH].len);
        }
    }
    return strndup(url, strcspn(url, "?#"));
}

/* Refuses q at the end of its head with `code` (the connection closes after
 * the answer). The method is known by then: the answer to a HEAD has no
 * body, whatever its status (RFC 9110 9.3.2). */
static void refuse_head(struct http_server_req *q, int code)
{
    http_server_refuse(q);
    q->keep_alive = 0;
    q->srv->ops.on_error(q, code);
}

static int on_headers_complete(http_parser *p)
{
    struct http_server_conn *hc = p->data;
    struct http_server *srv = hc->srv;
    struct http_server_req *q = hc->cur;
    field_end(hc);
    hc->head_started_ms = 0;
    hc->last_activity_ms = uv_now(srv->loop);
    q->method = p->method;
    q->head_only = p->method == HTTP_HEAD;
    q->http10 = p->http_major == 1 && p->http_minor == 0;
    q->keep_alive = http_should_keep_alive(p);
    q->has_length = (p->flags & F_CONTENTLENGTH) != 0;
    q->length = q->has_length ? p->content_length : 0;
    hc->url[hc->url_len] = '\0';
    q->path = target_path(hc->url, hc->url_len);
    if (!q->path) {
        refuse_head(q, 503);
        return 0;
    }
    /* RFC 9112: 2.3 (version), 3.2 (Host: exactly one in HTTP/1.1, at most
     * one in HTTP/1.0). */
    if (p->http_major != 1 || p->http_minor > 1) {
        refuse_head(q, 505);
        return 0;
    }
    if (hc->nhost > 1 || (hc->nhost == 0 && !q->http10)) {
        refuse_head(q, 400);
        return 0;
    }
    if (srv->ops.on_head)
        srv->ops.on_head(q);
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    struct http_server_conn *hc = p->data;
    struct http_server *srv = hc->srv;
    struct http_server_req *q = hc->cur;
    hc->last_activity_ms = uv_now(srv->loop);
    if (q->responded || !srv->ops.on_body)
        return 0; /* bodies of answered requests are read and dropped */
    srv->ops.on_body(q, at, len, (p->flags & F_CONTENTLENGTH) ? p->content_length : 0);
    return 0;
}

static int on_message_complete(http_parser *p)
{
    struct http_server_conn *hc = p->data;
    struct http_server_req *q = hc->cur;
    hc->cur = NULL;
    if (!q || q->responded)
        return 0;
    if (!q->keep_alive)
        q->close_after = 1;
    q->state = HTTP_REQ_WORKING;
    hc->srv->ops.on_request(q);
    /* Bound what one client can queue: stop after this message and resume
     * reading when the queue drains (hconn_flush). */
    if (!hc->closing && hc->nqueued >= HTTP_SERVER_PIPELINE_MAX)
        http_parser_pause(p, 1);
    return 0;
}

/* A request that broke the parser or a limit: answer it (or a fresh one)
 * and close after the answer. */
static void parse_failed(struct http_server_conn *hc, int code)
{
    struct http_server_req *q = hc->cur;
    hc->cur = NULL;
    if (!q || q->responded) {
        q = req_new(hc);
        if (!q) {
            hconn_close(hc);
            return;
        }
        req_enqueue(hc, q);
    }
    hc->draining = 1;
    hc->head_started_ms = 0;
    q->method = hc->parser.method; /* as far as it was parsed */
    q->keep_alive = 0;
    q->close_after = 1;
    q->head_only = 0;
    q->state = HTTP_REQ_WORKING;
    hc->srv->ops.on_error(q, code);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct http_server_conn *hc = h->data;
    buf->base = hc->rbuf;
    buf->len = sizeof(hc->rbuf);
}

/* Parses n plaintext bytes at `at` (which may be rbuf). Returns 0 when
 * parsing may go on with more bytes, -1 when it stopped: paused for
 * back-pressure (the rest kept at rbuf[0], reading stopped), a request
 * that ends the connection, a parse error, or the connection closed. */
static int parse_input(struct http_server_conn *hc, const char *at, size_t n)
{
    uv_stream_t *s = (uv_stream_t *)&hc->tcp;
    /* Bytes between requests (CRLFs too) start the next head's clock; they
     * are not progress: only a whole head, body bytes or a response count
     * as activity (on_headers_complete, on_body, write_done). */
    if (!hc->cur && !hc->head_started_ms)
        hc->head_started_ms = uv_now(hc->srv->loop);
    size_t done = http_parser_execute(&hc->parser, &hc->srv->settings, at, n);
    if (hc->closing)
        return -1;
    enum http_errno e = HTTP_PARSER_ERRNO(&hc->parser);
    if (e == HPE_PAUSED) {
        if (hc->draining)
            return -1;
        /* Paused for back-pressure: keep the unparsed bytes by not reading
         * more; they are re-fed when reading resumes. */
        hc->held = n - done;
        if (hc->held > 0)
            memmove(hc->rbuf, at + done, hc->held);
        uv_read_stop(s);
        hc->reading = 0;
        read_resume(hc);
        return -1;
    }
    if (e == HPE_OK && hc->parser.upgrade) {
        /* CONNECT or Upgrade: we speak neither. The request was answered as
         * a plain one; nothing after it is read, and the connection closes
         * once the answers are out. */
        uv_read_stop(s);
        hc->reading = 0;
        hc->draining = 1;
        if (hc->tail && hc->tail->state != HTTP_REQ_WRITING)
            hc->tail->close_after = 1;
        if (!hc->head && hc->nwriting == 0)
            hconn_close(hc);
        return -1;
    }
    if (e != HPE_OK || done != n) {
        int code = hc->err_status ? hc->err_status : 400;
        uv_read_stop(s);
        hc->reading = 0;
        parse_failed(hc, code);
        return -1;
    }
    return hc->draining || !hc->reading ? -1 : 0;
}

/* HTTPS: drives the handshake with the ciphertext fed so far, then parses
 * the plaintext it gives until it needs more bytes or parsing stops. */
static void tls_pump(struct http_server_conn *hc)
{
    if (!hc->tls_up) {
        int r = http_tls_conn_handshake(hc->tls);
        if (r < 0) {
            tls_fail(hc);
            return;
        }
        if (tls_flush(hc) != 0) {
            hconn_close(hc);
            return;
        }
        if (r == 0)
            return;
        hc->tls_up = 1;
        hc->srv->tls_done++;
    }
    while (!hc->closing && !hc->draining && hc->reading) {
        long n = http_tls_conn_read(hc->tls, hc->rbuf, sizeof(hc->rbuf));
        if (tls_flush(hc) != 0 || n < 0) { /* an error, or the peer's close_notify */
            hconn_close(hc);
            return;
        }
        if (n == 0 || parse_input(hc, hc->rbuf, (size_t)n) != 0)
            return;
    }
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct http_server_conn *hc = s->data;
    if (hc->closing)
        return;
    if (nread < 0) {
        if (hc->tls_fed)
            tls_count_failed(hc); /* only when the handshake was not done */
        hconn_close(hc);
        return;
    }
    if (nread == 0 || hc->draining)
        return;
    if (hc->tls) {
        /* The ciphertext is copied into the TLS state, so rbuf can take
         * the plaintext. */
        if (http_tls_conn_feed(hc->tls, buf->base, (size_t)nread) != 0) {
            hconn_close(hc);
            return;
        }
        hc->tls_fed = 1;
        tls_pump(hc);
        return;
    }
    parse_input(hc, buf->base, (size_t)nread);
}

/* Resumes reading after back-pressure once the queue and the write queue
 * are short again, first parsing any bytes held when the parser paused. */
static void read_resume(struct http_server_conn *hc)
{
    if (hc->closing || hc->draining || hc->reading)
        return;
    if (hc->nqueued >= HTTP_SERVER_PIPELINE_MAX / 2 || hc->tcp.write_queue_size > HTTP_SERVER_WQ_MAX)
        return;
    if (HTTP_PARSER_ERRNO(&hc->parser) == HPE_PAUSED) {
        size_t held = hc->held;
        hc->held = 0;
        http_parser_pause(&hc->parser, 0);
        hc->reading = 1; /* parse_input must see us as reading */
        if (held > 0 && parse_input(hc, hc->rbuf, held) != 0)
            return;
    }
    if (hc->tls) {
        /* Plaintext may wait in the TLS state, decrypted from bytes read
         * before the pause. */
        hc->reading = 1;
        tls_pump(hc);
        if (hc->closing || !hc->reading || hc->draining)
            return;
    }
    if (uv_read_start((uv_stream_t *)&hc->tcp, alloc_cb, read_cb) == 0)
        hc->reading = 1;
    else
        hconn_close(hc);
}

/* ---- timeouts ------------------------------------------------------------------- */

static int conn_busy(const struct http_server_conn *hc)
{
    for (const struct http_server_req *q = hc->head; q; q = q->next)
        if (q->state == HTTP_REQ_WORKING)
            return 1;
    return 0;
}

static void tick_cb(uv_timer_t *t)
{
    struct http_server_conn *hc = t->data;
    const struct http_server_config *cfg = &hc->srv->cfg;
    uint64_t now = uv_now(hc->srv->loop);
    if (hc->closing)
        return;
    if (cfg->header_ms > 0 && hc->head_started_ms && !hc->draining &&
        now - hc->head_started_ms >= (uint64_t)cfg->header_ms) {
        if (hc->tls && !hc->tls_up) { /* no answer without a TLS session */
            hc->srv->header_timeouts++;
            tls_count_failed(hc);
            hconn_close(hc);
            return;
        }
        uv_read_stop((uv_stream_t *)&hc->tcp);
        hc->reading = 0;
        hc->srv->header_timeouts++;
        parse_failed(hc, 408);
        hc->last_activity_ms = now;
        return;
    }
    /* Idle: no byte in either direction for idle_ms and nothing being
     * worked on (work has its own timeouts). Covers idle keep-alive
     * connections, clients that stop mid-body and clients that stop
     * reading their responses. */
    /* A head being received is the header timer's (when there is one). */
    int head_timed = cfg->header_ms > 0 && hc->head_started_ms && !hc->draining;
    if (now - hc->last_activity_ms >= (uint64_t)cfg->idle_ms && !conn_busy(hc) && !head_timed) {
        hc->srv->idle_closes++;
        hconn_close(hc);
    }
}

static void on_connection(uv_stream_t *server, int status)
{
    struct http_server *srv = server->data;
    if (status < 0)
        return;
    struct http_server_conn *hc = calloc(1, sizeof(*hc));
    if (!hc)
        return;
    hc->srv = srv;
    uv_tcp_init(srv->loop, &hc->tcp);
    uv_timer_init(srv->loop, &hc->tick);
    hc->tcp.data = hc;
    hc->tick.data = hc;
    hc->handles = 2;
    srv->handles += 2;
    DLIST_PUSH(srv->conns, hc);
    if (uv_accept(server, (uv_stream_t *)&hc->tcp) != 0) {
        hconn_close(hc);
        return;
    }
    int len = sizeof(hc->peer);
    if (uv_tcp_getpeername(&hc->tcp, (struct sockaddr *)&hc->peer, &len) != 0)
        hc->peer.ss_family = AF_UNSPEC;
    int rc = conn_gate_enter(&srv->gate, &hc->peer);
    if (rc != 0 && srv->cfg.tls) { /* no answer without a TLS session */
        hconn_close(hc);
        return;
    }
    if (rc != 0) {
        /* Past a cap: a short answer if the socket takes it, and close. */
        static char busy[] = "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n"
                             "Connection: close\r\nContent-Length: 0\r\n\r\n";
        uv_buf_t b = uv_buf_init(busy, sizeof(busy) - 1);
        uv_try_write((uv_stream_t *)&hc->tcp, &b, 1);
        hconn_close(hc);
        return;
    }
    hc->gated = 1;
    if (srv->cfg.tls && !(hc->tls = http_tls_conn_new(srv->cfg.tls))) {
        hconn_close(hc);
        return;
    }
    uv_tcp_nodelay(&hc->tcp, 1);
    http_parser_init(&hc->parser, HTTP_REQUEST);
    hc->parser.data = hc;
    hc->last_activity_ms = uv_now(srv->loop);
    /* The first request head is timed from the connection's start. */
    hc->head_started_ms = hc->last_activity_ms;
    uv_timer_start(&hc->tick, tick_cb, (uint64_t)srv->tick_ms, (uint64_t)srv->tick_ms);
    if (uv_read_start((uv_stream_t *)&hc->tcp, alloc_cb, read_cb) == 0)
        hc->reading = 1;
    else
        hconn_close(hc);
}

/* ---- lifetime ------------------------------------------------------------------- */

static void listener_closed(uv_handle_t *h)
{
    struct http_server *srv = h->data;
    srv->handles--;
    srv_release(srv);
}

int http_server_start(uv_loop_t *loop, const char *addr, const struct http_server_config *cfg,
                      const struct http_server_ops *ops, void *user, struct http_server **out)
{
    *out = NULL;
    struct http_server *srv = calloc(1, sizeof(*srv));
    if (!srv)
        return -ENOMEM;
    srv->loop = loop;
    srv->cfg = *cfg;
    if (srv->cfg.req_size < sizeof(struct http_server_req))
        srv->cfg.req_size = sizeof(struct http_server_req);
    srv->ops = *ops;
    srv->user = user;
    srv->gate.max_total = cfg->max_conns ? cfg->max_conns : LIMITS_MAX_CONNS;
    srv->gate.max_per_addr =
        cfg->max_conns_per_addr ? cfg->max_conns_per_addr : LIMITS_MAX_CONNS_PER_ADDR;
    http_parser_settings_init(&srv->settings);
    srv->settings.on_message_begin = on_message_begin;
    srv->settings.on_url = on_url;
    srv->settings.on_header_field = on_header_field;
    srv->settings.on_header_value = on_header_value;
    srv->settings.on_headers_complete = on_headers_complete;
    srv->settings.on_body = on_body;
    srv->settings.on_message_complete = on_message_complete;
    /* Each connection checks its timeouts four times per shortest one. */
    int tick = cfg->idle_ms;
    if (cfg->header_ms > 0 && cfg->header_ms < tick)
        tick = cfg->header_ms;
    tick /= 4;
    if (tick < HTTP_TICK_MIN_MS)
        tick = HTTP_TICK_MIN_MS;
    srv->tick_ms = tick;
    int rc = conn_listen(loop, &srv->listener, addr, on_connection);
    srv->listener.data = srv;
    if (rc != 0) {
        srv->stopped = 1;
        if (srv->listener.type == UV_TCP) {
            srv->handles = 1;
            uv_close((uv_handle_t *)&srv->listener, listener_closed);
        } else {
            free(srv);
        }
        return rc;
    }
    srv->handles = 1;
    *out = srv;
    return 0;
}

void http_server_stats(const struct http_server *srv, struct http_server_stats *out)
{
    out->open = srv->gate.open;
    out->refused_total = srv->gate.refused_total;
    out->refused_per_addr = srv->gate.refused_per_addr;
    out->header_timeouts = srv->header_timeouts;
    out->idle_closes = srv->idle_closes;
    out->tls_handshakes = srv->tls_done;
    out->tls_failed = srv->tls_failed;
}

uv_tcp_t *http_server_listener(struct http_server *srv)
{
    return &srv->listener;
}

void http_server_stop(struct http_server *srv)
{
    if (!srv || srv->stopped)
        return;
    srv->stopped = 1;
    uv_close((uv_handle_t *)&srv->listener, listener_closed);
    while (srv->conns)
        hconn_close(srv->conns);
}
