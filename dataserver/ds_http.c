/* ds_http.c - the dataserver's HTTP port.
 *
 * For now it answers GET/HEAD /healthz (200 "ok") and 404 for any other
 * path; the CDN origin (issue 3) grows here. Requests are parsed by Debian's
 * http-parser, never by hand. HTTP/1.1 keep-alive and pipelining work because
 * every response is written in request order as soon as its request is
 * complete. Limits: URL length (414), parse errors (400 and close), and an
 * idle timeout. */
#include "dataserver/ds.h"

#include "common/log.h"

#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HTTP_MAX_URL 4096
#define HTTP_IDLE_MS 30000

struct http_conn {
    uv_tcp_t tcp;
    uv_timer_t idle;
    http_parser parser;
    struct ds *ds;
    char url[HTTP_MAX_URL + 1];
    size_t url_len;
    int url_too_long;
    int closing;
    int handles;
    char rbuf[16384];
};

struct http_write {
    uv_write_t req;
    char *data;
    int close_after;
};

static http_parser_settings settings;

static void http_free(uv_handle_t *h)
{
    struct http_conn *hc = h->data;
    if (--hc->handles == 0)
        free(hc);
}

static void http_close(struct http_conn *hc)
{
    if (hc->closing)
        return;
    hc->closing = 1;
    uv_close((uv_handle_t *)&hc->idle, http_free);
    uv_close((uv_handle_t *)&hc->tcp, http_free);
}

static void write_done(uv_write_t *req, int status)
{
    struct http_write *w = (struct http_write *)req;
    struct http_conn *hc = req->handle->data;
    if (status < 0 || w->close_after)
        http_close(hc);
    free(w->data);
    free(w);
}

static void respond(struct http_conn *hc, int code, const char *reason, const char *body,
                    int head_only, int keep_alive)
{
    if (hc->closing)
        return;
    struct http_write *w = calloc(1, sizeof(*w));
    size_t blen = strlen(body);
    size_t cap = 512 + blen;
    char *buf = w ? malloc(cap) : NULL;
    if (!buf) {
        free(w);
        http_close(hc);
        return;
    }
    int n = snprintf(buf, cap,
                     "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                     "Cache-Control: no-store\r\nConnection: %s\r\n\r\n%s",
                     code, reason, blen, keep_alive ? "keep-alive" : "close",
                     head_only ? "" : body);
    w->data = buf;
    w->close_after = !keep_alive;
    uv_buf_t b = uv_buf_init(buf, (unsigned)n);
    if (uv_write(&w->req, (uv_stream_t *)&hc->tcp, &b, 1, write_done) != 0) {
        free(buf);
        free(w);
        http_close(hc);
    }
}

static int on_message_begin(http_parser *p)
{
    struct http_conn *hc = p->data;
    hc->url_len = 0;
    hc->url_too_long = 0;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct http_conn *hc = p->data;
    if (hc->url_len + len > HTTP_MAX_URL) {
        hc->url_too_long = 1;
        return 0;
    }
    memcpy(hc->url + hc->url_len, at, len);
    hc->url_len += len;
    return 0;
}

static int on_message_complete(http_parser *p)
{
    struct http_conn *hc = p->data;
    int keep = http_should_keep_alive(p);
    int head = p->method == HTTP_HEAD;
    hc->url[hc->url_len] = '\0';
    if (hc->url_too_long)
        respond(hc, 414, "URI Too Long", "uri too long\n", head, 0);
    else if (p->method != HTTP_GET && p->method != HTTP_HEAD)
        respond(hc, 405, "Method Not Allowed", "method not allowed\n", 0, keep);
    else if (strcmp(hc->url, "/healthz") == 0)
        respond(hc, 200, "OK", "ok\n", head, keep);
    else
        respond(hc, 404, "Not Found", "not found\n", head, keep);
    return 0;
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct http_conn *hc = h->data;
    (void)suggested;
    buf->base = hc->rbuf;
    buf->len = sizeof(hc->rbuf);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct http_conn *hc = s->data;
    if (nread < 0) {
        http_close(hc);
        return;
    }
    if (nread == 0 || hc->closing)
        return;
    uv_timer_again(&hc->idle);
    size_t done = http_parser_execute(&hc->parser, &settings, buf->base, (size_t)nread);
    if (hc->parser.http_errno != HPE_OK || done != (size_t)nread) {
        respond(hc, 400, "Bad Request", "bad request\n", 0, 0);
        uv_read_stop(s);
    }
}

static void idle_cb(uv_timer_t *t)
{
    http_close(t->data);
}

static void on_connection(uv_stream_t *server, int status)
{
    struct ds *ds = server->data;
    if (status < 0)
        return;
    struct http_conn *hc = calloc(1, sizeof(*hc));
    if (!hc)
        return;
    hc->ds = ds;
    uv_tcp_init(ds->loop, &hc->tcp);
    uv_timer_init(ds->loop, &hc->idle);
    hc->tcp.data = hc;
    hc->idle.data = hc;
    hc->handles = 2;
    if (uv_accept(server, (uv_stream_t *)&hc->tcp) != 0) {
        http_close(hc);
        return;
    }
    http_parser_init(&hc->parser, HTTP_REQUEST);
    hc->parser.data = hc;
    uv_timer_start(&hc->idle, idle_cb, HTTP_IDLE_MS, HTTP_IDLE_MS);
    uv_read_start((uv_stream_t *)&hc->tcp, alloc_cb, read_cb);
}

int ds_http_start(struct ds *ds)
{
    http_parser_settings_init(&settings);
    settings.on_message_begin = on_message_begin;
    settings.on_url = on_url;
    settings.on_message_complete = on_message_complete;
    int rc = conn_listen(ds->loop, &ds->http_tcp, ds->http_addr, on_connection);
    ds->http_tcp.data = ds;
    return rc;
}

void ds_http_stop(struct ds *ds)
{
    uv_close((uv_handle_t *)&ds->http_tcp, NULL);
}
