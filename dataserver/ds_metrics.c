/* ds_metrics.c - the dataserver's Prometheus metrics (ds_metrics.h).
 *
 * Counters are plain integers bumped on the loop thread. Latency needs the
 * arrival time of each request until its answer: requests in flight are kept
 * in a small chained hash keyed by (connection, request id), one node per
 * request, removed when the answer is counted. A hostile peer reusing a
 * request id in flight only gets one of the two timed; the table is capped
 * (INFLIGHT_MAX) so it can never grow without bound. */
#include "dataserver/ds_metrics.h"

#include "base/err.h"
#include "base/metrics.h"
#include "net/http_server.h"
#include "net/http_tls.h"
#include "net/limits.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INFLIGHT_BUCKETS 1024 /* power of two */
#define INFLIGHT_MAX 65536    /* requests timed at once; beyond, only counted */
#define NS_PER_S 1e9
#define LABEL_MAX 160

enum op { OP_WRITE, OP_READ, OP_STAT, OP_DELETE, OP_REPL_APPEND, OP_OTHER, OP_COUNT };

static const char *const op_names[OP_COUNT] = {"write",  "read",        "stat",
                                               "delete", "repl_append", "other"};

/* Status slots: 0 ok, 1.. one per IMG_E* code, then every errno together. */
#define ST_IMG_FIRST IMG_ENOTFOUND
#define ST_IMG_LAST IMG_EINVAL
#define ST_IMG_SLOTS (ST_IMG_FIRST - ST_IMG_LAST + 1)
#define ST_SYSTEM (1 + ST_IMG_SLOTS)
#define ST_COUNT (ST_SYSTEM + 1)

/* HTTP methods counted apart; every other method is "OTHER". */
enum hmethod { HM_GET, HM_HEAD, HM_POST, HM_PUT, HM_DELETE, HM_OTHER, HM_COUNT };

static const char *const hmethod_names[HM_COUNT] = {"GET", "HEAD", "POST", "PUT", "DELETE",
                                                    "OTHER"};

#define HTTP_CODE_MIN 100
#define HTTP_CODE_MAX 599
#define HTTP_CODES (HTTP_CODE_MAX - HTTP_CODE_MIN + 2) /* last slot: out of range */

struct http_figures {
    uint64_t requests[HM_COUNT][HTTP_CODES];
    struct metrics_hist latency[HM_COUNT];
    uint64_t bytes_sent;
    uint64_t from[3]; /* by enum ds_http_source */
    uint64_t not_modified;
};

struct inflight {
    struct inflight *next;
    const void *sess;
    uint64_t request_id;
    uint64_t start_ns;
};

struct ds_metrics {
    uint64_t requests[OP_COUNT][ST_COUNT];
    struct metrics_hist latency[OP_COUNT];
    uint64_t bytes_in, bytes_out;
    uint64_t crc_failures;
    uint64_t untimed; /* answers with no recorded arrival */
    int64_t inflight_ops[OP_COUNT];
    struct inflight *buckets[INFLIGHT_BUCKETS];
    size_t ninflight;
    struct http_figures http;
};

static enum op op_of(unsigned type)
{
    switch (type) {
    case FT_WRITE: return OP_WRITE;
    case FT_READ: return OP_READ;
    case FT_STAT: return OP_STAT;
    case FT_DELETE: return OP_DELETE;
    case FT_REPL_APPEND: return OP_REPL_APPEND;
    default: return OP_OTHER;
    }
}

static int status_slot(int status)
{
    if (status == 0)
        return 0;
    if (status <= ST_IMG_FIRST && status >= ST_IMG_LAST)
        return 1 + (ST_IMG_FIRST - status);
    return ST_SYSTEM;
}

/* The label value of a status slot: "ok", "notfound", "corrupt", "system". */
static void status_label(int slot, char *out, size_t n)
{
    if (slot == 0) {
        snprintf(out, n, "ok");
        return;
    }
    if (slot == ST_SYSTEM) {
        snprintf(out, n, "system");
        return;
    }
    const char *name = img_errname(ST_IMG_FIRST - (slot - 1)); /* "IMG_ENOTFOUND" */
    const char *prefix = "IMG_E";
    if (strncmp(name, prefix, strlen(prefix)) == 0)
        name += strlen(prefix);
    size_t i = 0;
    for (; name[i] && i + 1 < n; i++)
        out[i] = (char)tolower((unsigned char)name[i]);
    out[i] = '\0';
}

static struct ds_metrics *get(struct ds *ds)
{
    if (!ds->metrics)
        ds->metrics = calloc(1, sizeof(*ds->metrics));
    return ds->metrics;
}

static size_t bucket_of(const void *sess, uint64_t id)
{
    uint64_t h = ((uint64_t)(uintptr_t)sess ^ (id * 0x9E3779B97F4A7C15ull)) * 0xBF58476D1CE4E5B9ull;
    return (size_t)(h >> 32) & (INFLIGHT_BUCKETS - 1);
}

void ds_metrics_begin(struct ds *ds, const void *sess, const struct frame_header *req)
{
    struct ds_metrics *m = get(ds);
    if (!m)
        return;
    enum op op = op_of(req->type);
    if (op == OP_WRITE || op == OP_REPL_APPEND)
        m->bytes_in += req->body_len;
    /* Only the five request kinds answered through ds_rpc.c's rpc_send are
     * timed; others (block copies) are answered elsewhere and would never
     * leave the table. */
    if (op == OP_OTHER || m->ninflight >= INFLIGHT_MAX)
        return;
    struct inflight *n = malloc(sizeof(*n));
    if (!n)
        return;
    size_t b = bucket_of(sess, req->request_id);
    n->sess = sess;
    n->request_id = req->request_id;
    n->start_ns = uv_hrtime();
    n->next = m->buckets[b];
    m->buckets[b] = n;
    m->ninflight++;
    m->inflight_ops[op]++;
}

void ds_metrics_end(struct ds *ds, const void *sess, const struct frame_header *req, int status,
                    uint32_t body_out)
{
    struct ds_metrics *m = get(ds);
    if (!m)
        return;
    enum op op = op_of(req->type);
    m->requests[op][status_slot(status)]++;
    m->bytes_out += body_out;
    if (status == IMG_ECORRUPT)
        m->crc_failures++;
    size_t b = bucket_of(sess, req->request_id);
    for (struct inflight **pp = &m->buckets[b]; *pp; pp = &(*pp)->next) {
        struct inflight *n = *pp;
        if (n->sess != sess || n->request_id != req->request_id)
            continue;
        *pp = n->next;
        metrics_hist_observe(&m->latency[op], (double)(uv_hrtime() - n->start_ns) / NS_PER_S);
        m->ninflight--;
        m->inflight_ops[op]--;
        free(n);
        return;
    }
    m->untimed++;
}

static enum hmethod hmethod_of(unsigned method)
{
    switch (method) {
    case HTTP_GET: return HM_GET;
    case HTTP_HEAD: return HM_HEAD;
    case HTTP_POST: return HM_POST;
    case HTTP_PUT: return HM_PUT;
    case HTTP_DELETE: return HM_DELETE;
    default: return HM_OTHER;
    }
}

void ds_metrics_http(struct ds *ds, unsigned method, int code, double seconds, uint64_t bytes,
                     enum ds_http_source source)
{
    struct ds_metrics *m = get(ds);
    if (!m)
        return;
    struct http_figures *h = &m->http;
    enum hmethod hm = hmethod_of(method);
    int slot = code >= HTTP_CODE_MIN && code <= HTTP_CODE_MAX ? code - HTTP_CODE_MIN
                                                              : HTTP_CODES - 1;
    h->requests[hm][slot]++;
    metrics_hist_observe(&h->latency[hm], seconds);
    h->bytes_sent += bytes;
    if (source == DS_HTTP_SRC_LOCAL || source == DS_HTTP_SRC_REPLICA)
        h->from[source]++;
    if (code == 304)
        h->not_modified++;
}

void ds_metrics_free(struct ds *ds)
{
    if (!ds || !ds->metrics)
        return;
    for (size_t i = 0; i < INFLIGHT_BUCKETS; i++) {
        struct inflight *n = ds->metrics->buckets[i];
        while (n) {
            struct inflight *next = n->next;
            free(n);
            n = next;
        }
    }
    free(ds->metrics);
    ds->metrics = NULL;
}

/* ---- rendering ------------------------------------------------------------ */

static void render_requests(struct metrics_buf *b, const struct ds_metrics *m)
{
    char lab[LABEL_MAX], st[64];
    metrics_family(b, "imgstore_ds_requests_total", "counter",
                   "Native requests answered, by operation and status.");
    for (int op = 0; op < OP_COUNT; op++) {
        for (int s = 0; s < ST_COUNT; s++) {
            /* ok and the common errors always appear, so rates start at 0 */
            if (!m->requests[op][s] && s != 0)
                continue;
            status_label(s, st, sizeof(st));
            snprintf(lab, sizeof(lab), "op=\"%s\",status=\"%s\"", op_names[op], st);
            metrics_value(b, "imgstore_ds_requests_total", lab, (double)m->requests[op][s]);
        }
    }
    metrics_family(b, "imgstore_ds_request_duration_seconds", "histogram",
                   "Time from a native request's arrival to its answer, by operation.");
    for (int op = 0; op < OP_OTHER; op++) {
        snprintf(lab, sizeof(lab), "op=\"%s\"", op_names[op]);
        metrics_hist(b, "imgstore_ds_request_duration_seconds", lab, &m->latency[op]);
    }
    metrics_family(b, "imgstore_ds_requests_in_flight", "gauge",
                   "Native requests received and not yet answered, by operation.");
    for (int op = 0; op < OP_OTHER; op++) {
        snprintf(lab, sizeof(lab), "op=\"%s\"", op_names[op]);
        metrics_value(b, "imgstore_ds_requests_in_flight", lab, (double)m->inflight_ops[op]);
    }
    metrics_family(b, "imgstore_ds_replication_in_flight", "gauge",
                   "Replicated appends in flight: writes and deletes this primary is "
                   "replicating plus REPL_APPENDs being applied here.");
    metrics_value(b, "imgstore_ds_replication_in_flight", NULL,
                  (double)(m->inflight_ops[OP_WRITE] + m->inflight_ops[OP_DELETE] +
                           m->inflight_ops[OP_REPL_APPEND]));
    metrics_family(b, "imgstore_ds_received_bytes_total", "counter",
                   "File and record bytes received (WRITE and REPL_APPEND bodies).");
    metrics_value(b, "imgstore_ds_received_bytes_total", NULL, (double)m->bytes_in);
    metrics_family(b, "imgstore_ds_sent_bytes_total", "counter",
                   "File bytes sent in answers (READ bodies).");
    metrics_value(b, "imgstore_ds_sent_bytes_total", NULL, (double)m->bytes_out);
    metrics_family(b, "imgstore_ds_crc_failures_total", "counter",
                   "Records whose checksum failed when read or received.");
    metrics_value(b, "imgstore_ds_crc_failures_total", NULL, (double)m->crc_failures);
}

/* The HTTP origin's families (docs/http.md, "Metrics"). */
static void render_http(struct metrics_buf *b, const struct http_figures *h)
{
    char lab[LABEL_MAX];
    metrics_family(b, "imgstore_ds_http_requests_total", "counter",
                   "HTTP requests answered by the origin, by method and status code.");
    for (int hm = 0; hm < HM_COUNT; hm++) {
        for (int c = 0; c < HTTP_CODES; c++) {
            /* GET 200 always appears, so rates start at 0 */
            if (!h->requests[hm][c] && !(hm == HM_GET && c == 200 - HTTP_CODE_MIN))
                continue;
            snprintf(lab, sizeof(lab), "method=\"%s\",code=\"%d\"", hmethod_names[hm],
                     c == HTTP_CODES - 1 ? 0 : c + HTTP_CODE_MIN);
            metrics_value(b, "imgstore_ds_http_requests_total", lab, (double)h->requests[hm][c]);
        }
    }
    metrics_family(b, "imgstore_ds_http_request_duration_seconds", "histogram",
                   "Time from the end of an HTTP request's head to its answer, by method.");
    for (int hm = 0; hm < HM_COUNT; hm++) {
        snprintf(lab, sizeof(lab), "method=\"%s\"", hmethod_names[hm]);
        metrics_hist(b, "imgstore_ds_http_request_duration_seconds", lab, &h->latency[hm]);
    }
    metrics_family(b, "imgstore_ds_http_sent_bytes_total", "counter",
                   "Bytes of HTTP responses (status line, headers and body) handed to "
                   "connections.");
    metrics_value(b, "imgstore_ds_http_sent_bytes_total", NULL, (double)h->bytes_sent);
    metrics_family(b, "imgstore_ds_http_file_answers_total", "counter",
                   "GET and HEAD answers about a file (200, 206, 304, 416), by where the file "
                   "came from: this server's copy or another replica (the proxy path).");
    metrics_value(b, "imgstore_ds_http_file_answers_total", "source=\"local\"",
                  (double)h->from[DS_HTTP_SRC_LOCAL]);
    metrics_value(b, "imgstore_ds_http_file_answers_total", "source=\"replica\"",
                  (double)h->from[DS_HTTP_SRC_REPLICA]);
    metrics_family(b, "imgstore_ds_http_not_modified_total", "counter",
                   "Conditional GET and HEAD requests answered 304 Not Modified.");
    metrics_value(b, "imgstore_ds_http_not_modified_total", NULL, (double)h->not_modified);
}

static void render_disks(struct metrics_buf *b, struct store *st)
{
    static const struct {
        const char *name, *help;
    } fam[] = {
        {"imgstore_ds_disk_capacity_bytes", "Size of the file system holding a data folder."},
        {"imgstore_ds_disk_free_bytes", "Bytes available to the dataserver in a data folder."},
        {"imgstore_ds_disk_used_bytes", "Bytes held by block files in a data folder."},
        {"imgstore_ds_disk_failed", "1 when a data folder has failed."},
    };
    char lab[LABEL_MAX], esc[LABEL_MAX - 16];
    store_refresh(st);
    for (size_t f = 0; f < sizeof(fam) / sizeof(fam[0]); f++) {
        metrics_family(b, fam[f].name, "gauge", fam[f].help);
        for (int i = 0; i < st->ndisks; i++) {
            const struct store_disk *d = &st->disks[i];
            uint64_t v[] = {d->capacity, d->free, d->used, (uint64_t)(d->failed != 0)};
            metrics_escape(d->path, esc, sizeof(esc));
            snprintf(lab, sizeof(lab), "folder=\"%s\"", esc);
            metrics_value(b, fam[f].name, lab, (double)v[f]);
        }
    }
}

struct block_tally {
    uint64_t writable, sealed, corrupt, primary, files, bytes, deleted_bytes;
};

static void tally_block(struct block *blk, void *arg)
{
    struct block_tally *t = arg;
    if (blk->corrupt)
        t->corrupt++;
    else if (blk->sealed)
        t->sealed++;
    else
        t->writable++;
    t->primary += blk->primary ? 1 : 0;
    t->files += block_file_count(blk);
    t->bytes += blk->tail;
    t->deleted_bytes += blk->deleted_bytes;
}

static void render_blocks(struct metrics_buf *b, struct store *st)
{
    struct block_tally t = {0};
    store_foreach(st, tally_block, &t);
    metrics_family(b, "imgstore_ds_blocks", "gauge",
                   "Blocks held, by state (writable: not sealed; corrupt: a bad record found).");
    metrics_value(b, "imgstore_ds_blocks", "state=\"writable\"", (double)t.writable);
    metrics_value(b, "imgstore_ds_blocks", "state=\"sealed\"", (double)t.sealed);
    metrics_value(b, "imgstore_ds_blocks", "state=\"corrupt\"", (double)t.corrupt);
    metrics_family(b, "imgstore_ds_primary_blocks", "gauge",
                   "Blocks for which this server orders appends.");
    metrics_value(b, "imgstore_ds_primary_blocks", NULL, (double)t.primary);
    metrics_family(b, "imgstore_ds_files", "gauge", "Live files in the blocks held.");
    metrics_value(b, "imgstore_ds_files", NULL, (double)t.files);
    metrics_family(b, "imgstore_ds_block_bytes", "gauge", "Bytes appended to the blocks held.");
    metrics_value(b, "imgstore_ds_block_bytes", NULL, (double)t.bytes);
    metrics_family(b, "imgstore_ds_deleted_bytes", "gauge",
                   "Bytes held by deleted files and tombstones (reclaimed by compaction).");
    metrics_value(b, "imgstore_ds_deleted_bytes", NULL, (double)t.deleted_bytes);
}

#define MISS_TOP 10 /* addresses listed by imgstore_ds_http_misses_by_peer */

/* Connections, the receive budget and the 404s per address (limits). */
static void render_limits(struct metrics_buf *b, struct ds *ds)
{
    struct conn_stats cs;
    struct http_server_stats hs = {0}, ts = {0};
    conn_stats_get(&cs);
    if (ds->http)
        http_server_stats(ds->http, &hs);
    if (ds->https)
        http_server_stats(ds->https, &ts);
    struct limits_port ports[3] = {
        {.port = "native", .open = ds->native_gate.open,
         .refused_total = ds->native_gate.refused_total,
         .refused_per_addr = ds->native_gate.refused_per_addr, .timeouts = cs.frame_timeouts,
         .idle_closes = cs.idle_closes},
        {.port = "http", .open = hs.open, .refused_total = hs.refused_total,
         .refused_per_addr = hs.refused_per_addr, .timeouts = hs.header_timeouts,
         .idle_closes = hs.idle_closes},
        {.port = "https", .open = ts.open, .refused_total = ts.refused_total,
         .refused_per_addr = ts.refused_per_addr, .timeouts = ts.header_timeouts,
         .idle_closes = ts.idle_closes},
    };
    limits_render(b, ports, ds->https ? 3 : 2);
    if (ds->https) {
        uint64_t reloads, reloads_failed;
        http_tls_reloads(ds->tls, &reloads, &reloads_failed);
        metrics_family(b, "imgstore_ds_tls_handshakes_total", "counter",
                       "TLS handshakes on the HTTPS port, done and failed (an error, the "
                       "header timeout, or the client leaving half way).");
        metrics_value(b, "imgstore_ds_tls_handshakes_total", "result=\"done\"",
                      (double)ts.tls_handshakes);
        metrics_value(b, "imgstore_ds_tls_handshakes_total", "result=\"failed\"",
                      (double)ts.tls_failed);
        metrics_family(b, "imgstore_ds_tls_reloads_total", "counter",
                       "Times the certificate and key files were loaded again after a change.");
        metrics_value(b, "imgstore_ds_tls_reloads_total", "result=\"done\"", (double)reloads);
        metrics_value(b, "imgstore_ds_tls_reloads_total", "result=\"failed\"",
                      (double)reloads_failed);
    }
    metrics_family(b, "imgstore_ds_receive_bytes", "gauge",
                   "Bytes of upload bodies being received, held in the receive budget.");
    metrics_value(b, "imgstore_ds_receive_bytes", NULL, (double)ds->recv_used);
    metrics_family(b, "imgstore_ds_receive_budget_bytes", "gauge",
                   "The receive budget (--max-receive-mb).");
    metrics_value(b, "imgstore_ds_receive_budget_bytes", NULL,
                  (double)(ds->recv_budget ? ds->recv_budget : DS_RECV_BUDGET));
    metrics_family(b, "imgstore_ds_receive_busy_total", "counter",
                   "Uploads answered busy (IMG_EBUSY, HTTP 503) at the receive budget.");
    metrics_value(b, "imgstore_ds_receive_busy_total", NULL, (double)ds->recv_busy);
    metrics_family(b, "imgstore_ds_http_misses_total", "counter",
                   "GET and HEAD requests answered 404.");
    metrics_value(b, "imgstore_ds_http_misses_total", NULL, (double)ds->http_misses);
    metrics_family(b, "imgstore_ds_http_miss_limited_total", "counter",
                   "GET and HEAD requests answered 429: their address spent its 404 bucket.");
    metrics_value(b, "imgstore_ds_http_miss_limited_total", NULL, (double)ds->misses.limited);
    metrics_family(b, "imgstore_ds_http_miss_peers_slowed_total", "counter",
                   "Times an address spent its 404 bucket.");
    metrics_value(b, "imgstore_ds_http_miss_peers_slowed_total", NULL,
                  (double)ds->misses.emptied);
    char addr[MISS_TOP][64], esc[128], lab[LABEL_MAX];
    uint64_t taken[MISS_TOP];
    size_t n = addr_buckets_top(&ds->misses, MISS_TOP, addr, taken);
    metrics_family(b, "imgstore_ds_http_misses_by_peer", "gauge",
                   "404s of the addresses with the most of them (at most 10 listed; counted "
                   "while the address is remembered).");
    for (size_t i = 0; i < n; i++) {
        metrics_escape(addr[i], esc, sizeof(esc));
        snprintf(lab, sizeof(lab), "peer=\"%s\"", esc);
        metrics_value(b, "imgstore_ds_http_misses_by_peer", lab, (double)taken[i]);
    }
}

int ds_metrics_render(struct ds *ds, char **out, size_t *len)
{
    struct metrics_buf b = {0};
    struct ds_metrics *m = get(ds);
    *out = NULL;
    *len = 0;
    if (!m)
        return -ENOMEM;
    render_requests(&b, m);
    render_http(&b, &m->http);
    if (ds->store) {
        render_disks(&b, ds->store);
        render_blocks(&b, ds->store);
    }
    metrics_family(&b, "imgstore_ds_nameserver_connected", "gauge",
                   "1 while the session with the nameserver is open.");
    metrics_value(&b, "imgstore_ds_nameserver_connected", NULL, ds->ns_conn ? 1 : 0);
    metrics_family(&b, "imgstore_ds_nameserver_safe_mode", "gauge",
                   "1 while the nameserver reports safe mode.");
    metrics_value(&b, "imgstore_ds_nameserver_safe_mode", NULL, ds->ns_safe_mode ? 1 : 0);
    metrics_family(&b, "imgstore_ds_scrub_rate_bytes", "gauge",
                   "Bytes per second the scrubber reads (0: off).");
    metrics_value(&b, "imgstore_ds_scrub_rate_bytes", NULL, (double)ds->scrub_rate);
    metrics_family(&b, "imgstore_ds_scrub_shard_chunks_total", "counter",
                   "Chunks of erasure-coded shards the scrubber checked.");
    metrics_value(&b, "imgstore_ds_scrub_shard_chunks_total", NULL,
                  (double)ds->scrub_shard_chunks);
    metrics_family(&b, "imgstore_ds_scrub_shard_bad_total", "counter",
                   "Shard chunks that failed their CRC32C in the scrubber (shard reported bad).");
    metrics_value(&b, "imgstore_ds_scrub_shard_bad_total", NULL, (double)ds->scrub_shard_bad);
    metrics_family(&b, "imgstore_ds_loop_stall_max_seconds", "gauge",
                   "Longest time the event loop was kept from a due timer since start.");
    metrics_value(&b, "imgstore_ds_loop_stall_max_seconds", NULL, (double)ds->lag_max_ns / NS_PER_S);
    metrics_family(&b, "imgstore_ds_files_encoded_total", "counter",
                   "Uploads this primary stored compressed (record format 3).");
    metrics_value(&b, "imgstore_ds_files_encoded_total", NULL, (double)ds->writes_encoded);
    metrics_family(&b, "imgstore_ds_encoded_saved_bytes_total", "counter",
                   "Bytes per replica that compressed uploads saved.");
    metrics_value(&b, "imgstore_ds_encoded_saved_bytes_total", NULL,
                  (double)ds->encoded_saved_bytes);
    metrics_family(&b, "imgstore_ds_reads_decoded_total", "counter",
                   "Reads of compressed records decoded for the reader.");
    metrics_value(&b, "imgstore_ds_reads_decoded_total", NULL, (double)ds->reads_decoded);
    metrics_family(&b, "imgstore_ds_copy_received_bytes_total", "counter",
                   "Block-copy chunks received: bytes on the wire, and the block bytes they carried.");
    metrics_value(&b, "imgstore_ds_copy_received_bytes_total", "form=\"wire\"",
                  (double)ds->copy_received_wire);
    metrics_value(&b, "imgstore_ds_copy_received_bytes_total", "form=\"raw\"",
                  (double)ds->copy_received_raw);
    metrics_family(&b, "imgstore_ds_copy_sent_bytes_total", "counter",
                   "Block-copy chunks sent (READ_BLOCK): bytes on the wire, and the block bytes "
                   "they carried.");
    metrics_value(&b, "imgstore_ds_copy_sent_bytes_total", "form=\"wire\"",
                  (double)ds->copy_sent_wire);
    metrics_value(&b, "imgstore_ds_copy_sent_bytes_total", "form=\"raw\"",
                  (double)ds->copy_sent_raw);
    render_limits(&b, ds);
    metrics_process(&b);
    if (metrics_buf_ok(&b) != 0 || !b.data) {
        metrics_buf_free(&b);
        return -ENOMEM;
    }
    *out = b.data;
    *len = b.len;
    return 0;
}

/* ---- the loop's lag probe ------------------------------------------------ */

static void lag_tick(uv_timer_t *t)
{
    struct ds *ds = t->data;
    uint64_t now = uv_hrtime();
    if (now > ds->lag_due_ns && now - ds->lag_due_ns > ds->lag_max_ns)
        ds->lag_max_ns = now - ds->lag_due_ns;
    ds->lag_due_ns = now + (uint64_t)DS_LAG_PROBE_MS * 1000000u;
}

void ds_metrics_lag_start(struct ds *ds)
{
    uv_timer_init(ds->loop, &ds->lag_timer);
    ds->lag_timer.data = ds;
    ds->lag_due_ns = uv_hrtime() + (uint64_t)DS_LAG_PROBE_MS * 1000000u;
    uv_timer_start(&ds->lag_timer, lag_tick, DS_LAG_PROBE_MS, DS_LAG_PROBE_MS);
    uv_unref((uv_handle_t *)&ds->lag_timer);
}

void ds_metrics_lag_stop(struct ds *ds)
{
    if (uv_is_active((uv_handle_t *)&ds->lag_timer))
        uv_close((uv_handle_t *)&ds->lag_timer, NULL);
}
