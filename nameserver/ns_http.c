/* ns_http.c - the nameserver's HTTP port: /metrics, /healthz, /status.json
 * and the status page (ns_http.h).
 *
 * One struct http_conn per TCP connection, parsed by http-parser. Every
 * answer is rendered whole when its request is complete and written in
 * request order, so keep-alive and pipelining work. Limits: the URL length
 * (414), parse errors (400 and close) and an idle timeout. The figures are
 * read from struct ns on the loop thread, so a scrape always sees one
 * consistent moment. */
#include "nameserver/ns_http.h"

#include "net/conn.h"
#include "base/log.h"
#include "base/metrics.h"
#include "nameserver/ns_admin.h"
#include "proto/frame.h"

#include <errno.h>
#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HTTP_MAX_URL 2048
#define HTTP_IDLE_MS 30000
#define HTTP_RBUF 8192
#define HTTP_HEAD_MAX 512
#define LABEL_MAX 160
#define CT_TEXT "text/plain; charset=utf-8"
#define CT_HTML "text/html; charset=utf-8"
#define CT_JSON "application/json"
#define PCT 100.0

struct http_conn;

struct ns_http {
    struct ns *ns;
    uv_loop_t *loop;
    uv_tcp_t listener;
    struct http_conn *conns; /* every open connection */
    int handles;             /* open handles; freed at 0 */
    int stopping;
};

struct http_conn {
    struct http_conn *prev, *next;
    struct ns_http *h;
    uv_tcp_t tcp;
    uv_timer_t idle;
    http_parser parser;
    char url[HTTP_MAX_URL + 1];
    size_t url_len;
    int url_too_long;
    int closing;
    int handles;
    char rbuf[HTTP_RBUF];
};

struct http_write {
    uv_write_t req;
    char *head;
    char *body;
    int close_after;
};

static http_parser_settings settings;

/* ---- figures -------------------------------------------------------------- */

static uint32_t servers_up(const struct ns *ns)
{
    return ns_registry_up_count(ns);
}

/* The verdict of ds-admin status: lost blocks or fewer servers up than the
 * replication -> "at risk"; a server down or a block under-replicated ->
 * "degraded"; else "healthy". */
static const char *verdict(const struct ns *ns, const struct ns_admin_totals *t)
{
    uint32_t up = servers_up(ns);
    if (t->lost > 0 || up < ns->meta.replicas)
        return "at risk";
    if (up < ns->nservers || t->under_replicated > 0)
        return "degraded";
    return "healthy";
}

static void server_label(const struct ns_server *s, char *lab, size_t n)
{
    char esc[LABEL_MAX - 16];
    metrics_escape(s->id, esc, sizeof(esc));
    snprintf(lab, n, "server=\"%s\"", esc);
}

/* Per-server families: one series per registered server. */
static void render_servers(struct metrics_buf *b, const struct ns *ns)
{
    static const struct {
        const char *name, *type, *help;
    } fam[] = {
        {"imgstore_ns_server_up", "gauge", "1 while the dataserver is up."},
        {"imgstore_ns_server_capacity_bytes", "gauge", "Capacity of the server's disks."},
        {"imgstore_ns_server_used_bytes", "gauge", "Bytes of block files on the server."},
        {"imgstore_ns_server_free_bytes", "gauge", "Bytes still available on the server."},
        {"imgstore_ns_server_blocks", "gauge", "Replicas the server holds in the block map."},
        {"imgstore_ns_server_reads_total", "counter",
         "Reads the server answered since it started (from its heartbeats)."},
        {"imgstore_ns_server_writes_total", "counter",
         "Writes the server acknowledged since it started (from its heartbeats)."},
        {"imgstore_ns_server_readonly", "gauge", "1 while the server takes no new blocks."},
        {"imgstore_ns_server_failed_disks", "gauge",
         "Data folders the server reports failed (their blocks are re-replicated)."},
    };
    char lab[LABEL_MAX];
    for (size_t f = 0; f < sizeof(fam) / sizeof(fam[0]); f++) {
        metrics_family(b, fam[f].name, fam[f].type, fam[f].help);
        for (size_t i = 0; i < ns->nservers; i++) {
            const struct ns_server *s = ns->servers[i];
            double v[] = {s->up, (double)s->capacity, (double)s->used, (double)s->free,
                          s->nblocks, (double)s->reads, (double)s->writes, s->readonly,
                          s->failed_disks};
            server_label(s, lab, sizeof(lab));
            metrics_value(b, fam[f].name, lab, v[f]);
        }
    }
}

static void render_requests(struct metrics_buf *b, const struct ns *ns)
{
    static const unsigned always[] = {FT_HEARTBEAT, FT_ALLOC_WRITE, FT_LOOKUP, FT_CLUSTER_STATUS};
    char lab[LABEL_MAX];
    metrics_family(b, "imgstore_ns_requests_total", "counter",
                   "Native requests received, by message type.");
    for (unsigned t = 0; t < sizeof(ns->requests) / sizeof(ns->requests[0]); t++) {
        int show = ns->requests[t] != 0;
        for (size_t k = 0; k < sizeof(always) / sizeof(always[0]); k++)
            show |= always[k] == t;
        if (!show)
            continue;
        const char *name = frame_type_name(t);
        if (strcmp(name, "?") == 0)
            snprintf(lab, sizeof(lab), "type=\"unknown_%u\"", t);
        else
            snprintf(lab, sizeof(lab), "type=\"%s\"", name);
        metrics_value(b, "imgstore_ns_requests_total", lab, (double)ns->requests[t]);
    }
    metrics_family(b, "imgstore_ns_heartbeats_total", "counter",
                   "Heartbeats received from dataservers.");
    metrics_value(b, "imgstore_ns_heartbeats_total", NULL, (double)ns->requests[FT_HEARTBEAT]);
}

static void render_tasks(struct metrics_buf *b, const struct ns *ns)
{
    uint64_t running[2] = {0, 0}, remaining = 0, draining = 0;
    for (size_t i = 0; i < ns->plan.ntasks; i++) {
        const struct ns_task *t = &ns->plan.tasks[i];
        if (t->state != NS_TASK_RUNNING)
            continue;
        running[t->kind == NS_TASK_REPLICATE ? 0 : 1]++;
        if (t->bytes_total > t->bytes_done)
            remaining += t->bytes_total - t->bytes_done;
    }
    for (size_t i = 0; i < ns->nservers; i++)
        draining += ns->servers[i]->draining ? 1 : 0;
    metrics_family(b, "imgstore_ns_tasks_running", "gauge",
                   "Background tasks of the planner running now, by kind.");
    metrics_value(b, "imgstore_ns_tasks_running", "kind=\"replicate\"", (double)running[0]);
    metrics_value(b, "imgstore_ns_tasks_running", "kind=\"delete\"", (double)running[1]);
    metrics_family(b, "imgstore_ns_task_remaining_bytes", "gauge",
                   "Bytes the running block copies still have to move.");
    metrics_value(b, "imgstore_ns_task_remaining_bytes", NULL, (double)remaining);
    metrics_family(b, "imgstore_ns_servers_draining", "gauge", "Servers being drained.");
    metrics_value(b, "imgstore_ns_servers_draining", NULL, (double)draining);
    const struct ns_balance *bl = &ns->bal;
    metrics_family(b, "imgstore_ns_balance_moves_running", "gauge",
                   "Rebalance moves running now (copy, then delete of the source's copy).");
    metrics_value(b, "imgstore_ns_balance_moves_running", NULL, (double)bl->nmoves);
    metrics_family(b, "imgstore_ns_balance_moves_total", "counter",
                   "Rebalance moves ended since the nameserver started, by result.");
    metrics_value(b, "imgstore_ns_balance_moves_total", "result=\"done\"", (double)bl->moves_done);
    metrics_value(b, "imgstore_ns_balance_moves_total", "result=\"failed\"",
                  (double)bl->moves_failed);
    metrics_family(b, "imgstore_ns_balance_moved_bytes_total", "counter",
                   "Bytes of blocks moved by completed rebalance moves.");
    metrics_value(b, "imgstore_ns_balance_moved_bytes_total", NULL, (double)bl->bytes_moved);
}

int ns_http_metrics(struct ns *ns, uint64_t now_ms, char **out, size_t *len)
{
    struct metrics_buf b = {0};
    struct ns_admin_totals t;
    uint32_t up = servers_up(ns);
    (void)now_ms;
    ns_admin_totals(ns, &t);
    metrics_family(&b, "imgstore_ns_servers", "gauge", "Registered dataservers, by state.");
    metrics_value(&b, "imgstore_ns_servers", "state=\"up\"", up);
    metrics_value(&b, "imgstore_ns_servers", "state=\"down\"", (double)(ns->nservers - up));
    render_servers(&b, ns);
    metrics_family(&b, "imgstore_ns_blocks", "gauge",
                   "Blocks in the map, by state (open: unsealed but not writable now).");
    metrics_value(&b, "imgstore_ns_blocks", "state=\"writable\"", (double)t.writable);
    metrics_value(&b, "imgstore_ns_blocks", "state=\"sealed\"", (double)t.sealed);
    metrics_value(&b, "imgstore_ns_blocks", "state=\"open\"", (double)t.open);
    metrics_family(&b, "imgstore_ns_blocks_under_replicated", "gauge",
                   "Blocks with fewer up replicas than the replication (but at least one).");
    metrics_value(&b, "imgstore_ns_blocks_under_replicated", NULL, (double)t.under_replicated);
    metrics_family(&b, "imgstore_ns_blocks_lost", "gauge", "Blocks with no up replica.");
    metrics_value(&b, "imgstore_ns_blocks_lost", NULL, (double)t.lost);
    metrics_family(&b, "imgstore_ns_block_bytes", "gauge",
                   "Bytes in the blocks of the map (one replica each).");
    metrics_value(&b, "imgstore_ns_block_bytes", NULL, (double)t.bytes);
    metrics_family(&b, "imgstore_ns_files", "gauge", "Live files in the blocks of the map.");
    metrics_value(&b, "imgstore_ns_files", NULL, (double)t.files);
    metrics_family(&b, "imgstore_ns_block_id_high_water", "gauge",
                   "The next block id the nameserver hands out.");
    metrics_value(&b, "imgstore_ns_block_id_high_water", NULL, (double)ns->meta.next_id);
    metrics_family(&b, "imgstore_ns_replication", "gauge", "Replicas kept of every block.");
    metrics_value(&b, "imgstore_ns_replication", NULL, ns->meta.replicas);
    metrics_family(&b, "imgstore_ns_safe_mode", "gauge", "1 while the nameserver is in safe mode.");
    metrics_value(&b, "imgstore_ns_safe_mode", NULL, ns->safe_mode ? 1 : 0);
    render_requests(&b, ns);
    render_tasks(&b, ns);
    metrics_process(&b);
    if (metrics_buf_ok(&b) != 0) {
        metrics_buf_free(&b);
        return -ENOMEM;
    }
    *out = b.data;
    *len = b.len;
    return 0;
}

/* Appends s as a JSON string literal. */
static void json_string(struct metrics_buf *b, const char *s)
{
    metrics_printf(b, "\"");
    for (; s && *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            metrics_printf(b, "\\%c", ch);
        else if (ch < 0x20 || ch == '<' || ch == '>' || ch == '&')
            metrics_printf(b, "\\u%04x", ch); /* also safe inside <script> */
        else
            metrics_printf(b, "%c", ch);
    }
    metrics_printf(b, "\"");
}

static void json_server(struct metrics_buf *b, const struct ns_server *s, uint64_t now_ms)
{
    metrics_printf(b, "{\"id\": ");
    json_string(b, s->id);
    metrics_printf(b, ", \"address\": ");
    json_string(b, s->addr);
    metrics_printf(b, ", \"http\": ");
    json_string(b, s->http_addr);
    metrics_printf(b, ", \"state\": \"%s\", \"readonly\": %s, \"draining\": %s", s->up ? "up" : "down",
                   s->readonly ? "true" : "false", s->draining ? "true" : "false");
    metrics_printf(b,
                   ", \"capacity\": %llu, \"used\": %llu, \"free\": %llu, \"use_pct\": %.1f, "
                   "\"blocks\": %u, \"disks\": %u, \"last_heartbeat_ms\": %llu, "
                   "\"reads\": %llu, \"writes\": %llu, \"reads_per_s\": %.1f, "
                   "\"writes_per_s\": %.1f, \"failed_disks\": %u}",
                   (unsigned long long)s->capacity, (unsigned long long)s->used,
                   (unsigned long long)s->free,
                   s->capacity ? (double)s->used * PCT / (double)s->capacity : 0.0, s->nblocks,
                   s->disks,
                   (unsigned long long)(now_ms >= s->last_hb_ms ? now_ms - s->last_hb_ms : 0),
                   (unsigned long long)s->reads, (unsigned long long)s->writes,
                   s->up ? s->reads_per_s : 0.0, s->up ? s->writes_per_s : 0.0, s->failed_disks);
}

static const char *task_kind(const struct ns_task *t)
{
    return t->kind == NS_TASK_REPLICATE ? "replicate"
           : t->kind == NS_TASK_COMPACT ? "compact"
                                          : "delete";
}

static const char *server_id_of(const struct ns *ns, uint16_t idx)
{
    return idx < ns->nservers ? ns->servers[idx]->id : "";
}

/* The planner's running tasks (ns_plan.c), as a JSON array. */
static void json_tasks(struct metrics_buf *b, const struct ns *ns, uint64_t now_ms)
{
    int first = 1;
    metrics_printf(b, "[");
    for (size_t i = 0; i < ns->plan.ntasks; i++) {
        const struct ns_task *t = &ns->plan.tasks[i];
        if (t->state != NS_TASK_RUNNING)
            continue;
        metrics_printf(b, "%s\n  {\"id\": %llu, \"kind\": \"%s\", \"block_id\": %llu, \"source\": ",
                       first ? "" : ",", (unsigned long long)t->id, task_kind(t),
                       (unsigned long long)t->block_id);
        json_string(b, server_id_of(ns, t->src));
        metrics_printf(b, ", \"target\": ");
        json_string(b, server_id_of(ns, t->dst));
        metrics_printf(b, ", \"state\": \"running\", \"bytes_done\": %llu, \"bytes_total\": %llu, "
                          "\"age_ms\": %llu, \"reason\": ",
                       (unsigned long long)t->bytes_done, (unsigned long long)t->bytes_total,
                       (unsigned long long)(now_ms > t->start_ms ? now_ms - t->start_ms : 0));
        json_string(b, t->reason);
        metrics_printf(b, "}");
        first = 0;
    }
    metrics_printf(b, "]");
}

int ns_http_status_json(struct ns *ns, uint64_t now_ms, char **out, size_t *len)
{
    struct metrics_buf b = {0};
    struct ns_admin_totals t;
    uint32_t up = servers_up(ns);
    uint64_t cap = 0, used = 0;
    ns_admin_totals(ns, &t);
    for (size_t i = 0; i < ns->nservers; i++) {
        if (ns->servers[i]->up) {
            cap += ns->servers[i]->capacity;
            used += ns->servers[i]->used;
        }
    }
    metrics_printf(&b, "{\"cluster_id\": ");
    json_string(&b, ns->meta.cluster_id);
    metrics_printf(&b,
                   ", \"safe_mode\": %s, \"replication\": %u, \"block_size\": %llu, "
                   "\"block_id_high_water\": %llu, \"uptime_s\": %.0f,\n"
                   " \"servers_up\": %u, \"servers_down\": %u, \"capacity_used\": %llu, "
                   "\"capacity_total\": %llu,\n \"blocks\": {\"total\": %llu, \"writable\": %llu, "
                   "\"sealed\": %llu, \"open\": %llu, \"under_replicated\": %llu, \"lost\": %llu, "
                   "\"bytes\": %llu, \"files\": %llu},\n \"verdict\": \"%s\",\n"
                   " \"tasks\": ",
                   ns->safe_mode ? "true" : "false", ns->meta.replicas,
                   (unsigned long long)ns->meta.block_size, (unsigned long long)ns->meta.next_id,
                   metrics_process_uptime(), up, (unsigned)(ns->nservers - up),
                   (unsigned long long)used, (unsigned long long)cap, (unsigned long long)t.total,
                   (unsigned long long)t.writable, (unsigned long long)t.sealed,
                   (unsigned long long)t.open, (unsigned long long)t.under_replicated,
                   (unsigned long long)t.lost, (unsigned long long)t.bytes,
                   (unsigned long long)t.files, verdict(ns, &t));
    json_tasks(&b, ns, now_ms);
    metrics_printf(&b,
                   ",\n \"balance\": {\"moves_running\": %zu, \"moves_done\": %u, "
                   "\"moves_failed\": %u, \"bytes_moved\": %llu}",
                   ns->bal.nmoves, ns->bal.moves_done, ns->bal.moves_failed,
                   (unsigned long long)ns->bal.bytes_moved);
    metrics_printf(&b, ",\n \"servers\": [");
    for (size_t i = 0; i < ns->nservers; i++) {
        metrics_printf(&b, "%s\n  ", i ? "," : "");
        json_server(&b, ns->servers[i], now_ms);
    }
    metrics_printf(&b, "]}\n");
    if (metrics_buf_ok(&b) != 0) {
        metrics_buf_free(&b);
        return -ENOMEM;
    }
    *out = b.data;
    *len = b.len;
    return 0;
}

/* The status page with the current status inlined, so it shows figures even
 * before its first fetch (and in a browser that only loads it). */
static int render_page(struct ns *ns, uint64_t now_ms, char **out, size_t *len)
{
    char *json;
    size_t jlen;
    int rc = ns_http_status_json(ns, now_ms, &json, &jlen);
    if (rc)
        return rc;
    struct metrics_buf b = {0};
    metrics_printf(&b, "%s%s%s", ns_page_head, json, ns_page_tail);
    free(json);
    if (metrics_buf_ok(&b) != 0) {
        metrics_buf_free(&b);
        return -ENOMEM;
    }
    *out = b.data;
    *len = b.len;
    return 0;
}

/* ---- connections ---------------------------------------------------------- */

static void http_unref(struct ns_http *h)
{
    if (--h->handles == 0)
        free(h);
}

static void conn_freed(uv_handle_t *hd)
{
    struct http_conn *hc = hd->data;
    if (--hc->handles > 0)
        return;
    struct ns_http *h = hc->h;
    free(hc);
    http_unref(h);
}

static void hconn_close(struct http_conn *hc)
{
    if (hc->closing)
        return;
    hc->closing = 1;
    struct ns_http *h = hc->h;
    if (hc->prev)
        hc->prev->next = hc->next;
    else
        h->conns = hc->next;
    if (hc->next)
        hc->next->prev = hc->prev;
    uv_close((uv_handle_t *)&hc->idle, conn_freed);
    uv_close((uv_handle_t *)&hc->tcp, conn_freed);
}

static void write_done(uv_write_t *req, int status)
{
    struct http_write *w = (struct http_write *)req;
    struct http_conn *hc = req->handle->data;
    if (status < 0 || w->close_after)
        hconn_close(hc);
    free(w->head);
    free(w->body);
    free(w);
}

/* Sends one response; takes ownership of `body` (malloc'd, may be NULL). */
static void respond(struct http_conn *hc, int code, const char *reason, const char *ctype,
                    char *body, size_t blen, int head_only, int keep_alive)
{
    struct http_write *w = hc->closing ? NULL : calloc(1, sizeof(*w));
    char *head = w ? malloc(HTTP_HEAD_MAX) : NULL;
    if (!head) {
        free(w);
        free(body);
        hconn_close(hc);
        return;
    }
    int n = snprintf(head, HTTP_HEAD_MAX,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Cache-Control: no-store\r\nConnection: %s\r\n\r\n",
                     code, reason, ctype, blen, keep_alive ? "keep-alive" : "close");
    w->head = head;
    w->body = body;
    w->close_after = !keep_alive;
    uv_buf_t bufs[2] = {uv_buf_init(head, (unsigned)n), uv_buf_init(body, (unsigned)blen)};
    int nbufs = head_only || !body || !blen ? 1 : 2;
    if (uv_write(&w->req, (uv_stream_t *)&hc->tcp, bufs, nbufs, write_done) != 0) {
        free(head);
        free(body);
        free(w);
        hconn_close(hc);
    }
}

static void respond_text(struct http_conn *hc, int code, const char *reason, const char *text,
                         int head_only, int keep_alive)
{
    char *body = strdup(text);
    respond(hc, code, reason, CT_TEXT, body, body ? strlen(body) : 0, head_only, keep_alive);
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

typedef int (*render_fn)(struct ns *ns, uint64_t now_ms, char **out, size_t *len);

/* Renders a document and answers it, or 500 when it cannot be built. */
static void respond_doc(struct http_conn *hc, render_fn render, struct ns *ns, uint64_t now,
                        const char *ctype, int head, int keep)
{
    char *body = NULL;
    size_t len = 0;
    if (render(ns, now, &body, &len) != 0)
        respond_text(hc, 500, "Internal Server Error", "out of memory\n", head, 0);
    else
        respond(hc, 200, "OK", ctype, body, len, head, keep);
}

static int on_message_complete(http_parser *p)
{
    struct http_conn *hc = p->data;
    struct ns *ns = hc->h->ns;
    uint64_t now = uv_now(hc->h->loop);
    int keep = http_should_keep_alive(p);
    int head = p->method == HTTP_HEAD;
    hc->url[hc->url_len] = '\0';
    hc->url[strcspn(hc->url, "?#")] = '\0'; /* the query string is ignored */
    if (hc->url_too_long)
        respond_text(hc, 414, "URI Too Long", "uri too long\n", head, 0);
    else if (p->method != HTTP_GET && p->method != HTTP_HEAD)
        respond_text(hc, 405, "Method Not Allowed", "method not allowed\n", 0, keep);
    else if (strcmp(hc->url, "/healthz") == 0)
        respond_text(hc, 200, "OK", "ok\n", head, keep);
    else if (strcmp(hc->url, "/metrics") == 0)
        respond_doc(hc, ns_http_metrics, ns, now, METRICS_CONTENT_TYPE, head, keep);
    else if (strcmp(hc->url, "/status.json") == 0)
        respond_doc(hc, ns_http_status_json, ns, now, CT_JSON, head, keep);
    else if (strcmp(hc->url, "/") == 0 || strcmp(hc->url, "/index.html") == 0)
        respond_doc(hc, render_page, ns, now, CT_HTML, head, keep);
    else
        respond_text(hc, 404, "Not Found", "not found\n", head, keep);
    return 0;
}

static void alloc_cb(uv_handle_t *hd, size_t suggested, uv_buf_t *buf)
{
    struct http_conn *hc = hd->data;
    (void)suggested;
    buf->base = hc->rbuf;
    buf->len = sizeof(hc->rbuf);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct http_conn *hc = s->data;
    if (nread < 0) {
        hconn_close(hc);
        return;
    }
    if (nread == 0 || hc->closing)
        return;
    uv_timer_again(&hc->idle);
    size_t done = http_parser_execute(&hc->parser, &settings, buf->base, (size_t)nread);
    if (hc->parser.http_errno != HPE_OK || done != (size_t)nread) {
        respond_text(hc, 400, "Bad Request", "bad request\n", 0, 0);
        uv_read_stop(s);
    }
}

static void idle_cb(uv_timer_t *t)
{
    hconn_close(t->data);
}

static void on_connection(uv_stream_t *server, int status)
{
    struct ns_http *h = server->data;
    if (status < 0 || h->stopping)
        return;
    struct http_conn *hc = calloc(1, sizeof(*hc));
    if (!hc)
        return;
    hc->h = h;
    h->handles++;
    uv_tcp_init(h->loop, &hc->tcp);
    uv_timer_init(h->loop, &hc->idle);
    hc->tcp.data = hc->idle.data = hc;
    hc->handles = 2;
    hc->next = h->conns;
    if (h->conns)
        h->conns->prev = hc;
    h->conns = hc;
    if (uv_accept(server, (uv_stream_t *)&hc->tcp) != 0) {
        hconn_close(hc);
        return;
    }
    http_parser_init(&hc->parser, HTTP_REQUEST);
    hc->parser.data = hc;
    uv_timer_start(&hc->idle, idle_cb, HTTP_IDLE_MS, HTTP_IDLE_MS);
    uv_read_start((uv_stream_t *)&hc->tcp, alloc_cb, read_cb);
}

/* ---- lifetime ------------------------------------------------------------- */

static void handle_closed(uv_handle_t *hd)
{
    http_unref(hd->data);
}

void ns_http_stop(struct ns_http *h)
{
    if (!h || h->stopping)
        return;
    h->stopping = 1;
    uv_close((uv_handle_t *)&h->listener, handle_closed);
    while (h->conns)
        hconn_close(h->conns);
}

int ns_http_start(struct ns *ns, uv_loop_t *loop, const char *addr, struct ns_http **out)
{
    *out = NULL;
    struct ns_http *h = calloc(1, sizeof(*h));
    if (!h)
        return -ENOMEM;
    http_parser_settings_init(&settings);
    settings.on_message_begin = on_message_begin;
    settings.on_url = on_url;
    settings.on_message_complete = on_message_complete;
    h->ns = ns;
    h->loop = loop;
    int rc = conn_listen(loop, &h->listener, addr, on_connection);
    h->listener.data = h;
    h->handles = 1;
    if (rc) {
        log_error("cannot listen on %s (http): %s", addr, uv_strerror(rc));
        if (h->listener.type == UV_TCP)
            uv_close((uv_handle_t *)&h->listener, handle_closed);
        else
            free(h);
        return rc;
    }
    log_info("http on %s (/metrics, /healthz, /status.json, /)", addr);
    *out = h;
    return 0;
}
