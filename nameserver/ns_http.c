/* ns_http.c - the nameserver's HTTP port: /metrics, /healthz, /status.json
 * and the status page (ns_http.h), on top of the HTTP server core
 * (net/http_server.h), which owns listening, connections, parsing, limits,
 * the idle timeout and the in-order response queue.
 *
 * Every answer is rendered whole when its request is complete (the core's
 * on_request callback) and handed to the core, so keep-alive and
 * pipelining work. Limits: the URL length (414), parse errors (400 and
 * close) and an idle timeout; header lines are not kept, so neither limited
 * nor timed. The figures are read from struct ns on the loop thread, so a
 * scrape always sees one consistent moment. /status.json is built and
 * written with jansson. */
#include "nameserver/ns_http.h"

#include "base/log.h"
#include "base/metrics.h"
#include "nameserver/ns_admin.h"
#include "net/conn.h"
#include "proto/addr.h"
#include "net/http_server.h"
#include "net/limits.h"
#include "proto/frame.h"

#include <errno.h>
#include <http_parser.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HTTP_IDLE_MS 30000
#define HTTP_HEADER_MS 10000 /* a request head must arrive within this */
#define HTTP_HEAD_MAX 512
#define LABEL_MAX 160
#define CT_TEXT "text/plain; charset=utf-8"
#define CT_HTML "text/html; charset=utf-8"
#define CT_JSON "application/json"
#define PCT 100.0
#define STATUS_BLOCKS_LISTED 10 /* block ids a reason lists, at most */
#define STATUS_REASON_MAX 256
#define STATUS_RATE_MIN_MS 1000
#define MS_PER_S 1000.0
#define REAL_DIGITS 15 /* significant digits of reals in status.json (rounded to 0.1 first) */

struct ns_http {
    struct ns *ns;
    uv_loop_t *loop;
    struct http_server *srv; /* the core: listener and connections */
    int handles;             /* the core's reference; freed at 0 */
    int stopping;
};

/* ---- figures -------------------------------------------------------------- */

static uint32_t servers_up(const struct ns *ns)
{
    return ns_registry_up_count(ns);
}

/* The verdict of ds-admin status: lost blocks or fewer servers up than the
 * replication -> "at risk"; a server down, a block under-replicated or a
 * failed data folder on an up server -> "degraded"; else "healthy". The
 * reasons (status_reasons) name each of these. */
static const char *verdict(const struct ns *ns, const struct ns_admin_totals *t)
{
    uint32_t up = servers_up(ns);
    if (t->lost > 0 || up < ns->meta.replicas)
        return "at risk";
    int failed_disks = 0;
    for (size_t i = 0; i < ns->nservers; i++)
        failed_disks |= ns->servers[i]->up && ns->servers[i]->failed_disks > 0;
    if (up < ns->nservers || t->under_replicated > 0 || failed_disks)
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
        {"imgstore_nameserver_server_up", "gauge", "1 while the dataserver is up."},
        {"imgstore_nameserver_server_capacity_bytes", "gauge", "Capacity of the server's disks."},
        {"imgstore_nameserver_server_used_bytes", "gauge", "Bytes of block files on the server."},
        {"imgstore_nameserver_server_free_bytes", "gauge", "Bytes still available on the server."},
        {"imgstore_nameserver_server_blocks", "gauge", "Replicas the server holds in the block map."},
        {"imgstore_nameserver_server_reads_total", "counter",
         "Reads the server answered since it started (from its heartbeats)."},
        {"imgstore_nameserver_server_writes_total", "counter",
         "Writes the server acknowledged since it started (from its heartbeats)."},
        {"imgstore_nameserver_server_readonly", "gauge", "1 while the server takes no new blocks."},
        {"imgstore_nameserver_server_failed_disks", "gauge",
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

/* imgstore_nameserver_server_info: maps each server id (the `server` label
 * of the other per-server series) to its native and HTTP addresses and the
 * host part of its native address, so dashboards and alerts can join on
 * `server` and show where a server is. */
static void render_server_info(struct metrics_buf *b, const struct ns *ns)
{
    char lab[4 * LABEL_MAX + 64], id[LABEL_MAX], addr[LABEL_MAX], http[LABEL_MAX], host[LABEL_MAX];
    char h[ADDR_HOST_MAX], port[ADDR_PORT_MAX];
    metrics_family(b, "imgstore_nameserver_server_info", "gauge",
                   "Always 1: a registered dataserver's id, native and HTTP addresses and host.");
    for (size_t i = 0; i < ns->nservers; i++) {
        const struct ns_server *s = ns->servers[i];
        if (addr_split(s->addr, h, port) != 0)
            h[0] = '\0';
        metrics_escape(s->id, id, sizeof(id));
        metrics_escape(s->addr, addr, sizeof(addr));
        metrics_escape(s->http_addr, http, sizeof(http));
        metrics_escape(h, host, sizeof(host));
        snprintf(lab, sizeof(lab), "server=\"%s\",addr=\"%s\",http=\"%s\",host=\"%s\"", id,
                 addr, http, host);
        metrics_value(b, "imgstore_nameserver_server_info", lab, 1);
    }
}

static void render_requests(struct metrics_buf *b, const struct ns *ns)
{
    static const unsigned always[] = {FT_HEARTBEAT, FT_ALLOC_WRITE, FT_LOOKUP, FT_CLUSTER_STATUS};
    char lab[LABEL_MAX];
    metrics_family(b, "imgstore_nameserver_requests_total", "counter",
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
        metrics_value(b, "imgstore_nameserver_requests_total", lab, (double)ns->requests[t]);
    }
    metrics_family(b, "imgstore_nameserver_heartbeats_total", "counter",
                   "Heartbeats received from dataservers.");
    metrics_value(b, "imgstore_nameserver_heartbeats_total", NULL, (double)ns->requests[FT_HEARTBEAT]);
}

/* The HTTP port whose connections /metrics shows (one per process). */
static struct http_server *metrics_http;

/* Connections of the native port and of this HTTP port (net/limits.h). */
static void render_conns(struct metrics_buf *b, const struct ns *ns, struct http_server *srv)
{
    struct conn_stats cs;
    struct http_server_stats hs = {0};
    conn_stats_get(&cs);
    if (srv)
        http_server_stats(srv, &hs);
    struct limits_port ports[2] = {
        {.port = "native", .open = ns->gate.open, .refused_total = ns->gate.refused_total,
         .refused_per_addr = ns->gate.refused_per_addr, .timeouts = cs.frame_timeouts,
         .idle_closes = cs.idle_closes},
        {.port = "http", .open = hs.open, .refused_total = hs.refused_total,
         .refused_per_addr = hs.refused_per_addr, .timeouts = hs.header_timeouts,
         .idle_closes = hs.idle_closes},
    };
    limits_render(b, ports, srv ? 2 : 1);
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
    metrics_family(b, "imgstore_nameserver_tasks_running", "gauge",
                   "Background tasks of the planner running now, by kind.");
    metrics_value(b, "imgstore_nameserver_tasks_running", "kind=\"replicate\"", (double)running[0]);
    metrics_value(b, "imgstore_nameserver_tasks_running", "kind=\"delete\"", (double)running[1]);
    metrics_family(b, "imgstore_nameserver_task_remaining_bytes", "gauge",
                   "Bytes the running block copies still have to move.");
    metrics_value(b, "imgstore_nameserver_task_remaining_bytes", NULL, (double)remaining);
    metrics_family(b, "imgstore_nameserver_servers_draining", "gauge", "Servers being drained.");
    metrics_value(b, "imgstore_nameserver_servers_draining", NULL, (double)draining);
    size_t ec_entries = 0;
    for (size_t i = 0; i < ns->dj.nec; i++)
        ec_entries += ns->dj.ec_blocks[i].n;
    metrics_family(b, "imgstore_nameserver_delete_journal_entries", "gauge",
                   "Tombstones in the delete journal, by the kind of block.");
    metrics_value(b, "imgstore_nameserver_delete_journal_entries", "kind=\"replicated\"",
                  (double)(ns->dj.live - ec_entries));
    metrics_value(b, "imgstore_nameserver_delete_journal_entries", "kind=\"erasure_coded\"",
                  (double)ec_entries);
    const struct ns_balance *bl = &ns->bal;
    metrics_family(b, "imgstore_nameserver_balance_moves_running", "gauge",
                   "Rebalance moves running now (copy, then delete of the source's copy).");
    metrics_value(b, "imgstore_nameserver_balance_moves_running", NULL, (double)bl->nmoves);
    metrics_family(b, "imgstore_nameserver_balance_moves_total", "counter",
                   "Rebalance moves ended since the nameserver started, by result.");
    metrics_value(b, "imgstore_nameserver_balance_moves_total", "result=\"done\"", (double)bl->moves_done);
    metrics_value(b, "imgstore_nameserver_balance_moves_total", "result=\"failed\"",
                  (double)bl->moves_failed);
    metrics_family(b, "imgstore_nameserver_balance_moved_bytes_total", "counter",
                   "Bytes of blocks moved by completed rebalance moves.");
    metrics_value(b, "imgstore_nameserver_balance_moved_bytes_total", NULL, (double)bl->bytes_moved);
}

int ns_http_metrics(struct ns *ns, uint64_t now_ms, char **out, size_t *len)
{
    struct metrics_buf b = {0};
    struct ns_admin_totals t;
    uint32_t up = servers_up(ns);
    (void)now_ms;
    ns_admin_totals(ns, &t);
    metrics_family(&b, "imgstore_nameserver_servers", "gauge", "Registered dataservers, by state.");
    metrics_value(&b, "imgstore_nameserver_servers", "state=\"up\"", up);
    metrics_value(&b, "imgstore_nameserver_servers", "state=\"down\"", (double)(ns->nservers - up));
    render_servers(&b, ns);
    render_server_info(&b, ns);
    metrics_family(&b, "imgstore_nameserver_blocks", "gauge",
                   "Blocks in the map, by state (open: unsealed but not writable now).");
    metrics_value(&b, "imgstore_nameserver_blocks", "state=\"writable\"", (double)t.writable);
    metrics_value(&b, "imgstore_nameserver_blocks", "state=\"sealed\"", (double)t.sealed);
    metrics_value(&b, "imgstore_nameserver_blocks", "state=\"open\"", (double)t.open);
    metrics_family(&b, "imgstore_nameserver_blocks_under_replicated", "gauge",
                   "Blocks with fewer up replicas than the replication (but at least one).");
    metrics_value(&b, "imgstore_nameserver_blocks_under_replicated", NULL, (double)t.under_replicated);
    metrics_family(&b, "imgstore_nameserver_blocks_lost", "gauge", "Blocks with no up replica.");
    metrics_value(&b, "imgstore_nameserver_blocks_lost", NULL, (double)t.lost);
    metrics_family(&b, "imgstore_nameserver_block_bytes", "gauge",
                   "Bytes in the blocks of the map (one replica each).");
    metrics_value(&b, "imgstore_nameserver_block_bytes", NULL, (double)t.bytes);
    metrics_family(&b, "imgstore_nameserver_files", "gauge", "Live files in the blocks of the map.");
    metrics_value(&b, "imgstore_nameserver_files", NULL, (double)t.files);
    metrics_family(&b, "imgstore_nameserver_block_id_high_water", "gauge",
                   "The next block id the nameserver hands out.");
    metrics_value(&b, "imgstore_nameserver_block_id_high_water", NULL, (double)ns->meta.next_id);
    metrics_family(&b, "imgstore_nameserver_replication", "gauge", "Replicas kept of every block.");
    metrics_value(&b, "imgstore_nameserver_replication", NULL, ns->meta.replicas);
    metrics_family(&b, "imgstore_nameserver_safe_mode", "gauge", "1 while the nameserver is in safe mode.");
    metrics_value(&b, "imgstore_nameserver_safe_mode", NULL, ns->safe_mode ? 1 : 0);
    render_requests(&b, ns);
    render_conns(&b, ns, metrics_http);
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

/* ---- status.json (jansson) ------------------------------------------------ */

/* x rounded to one decimal, as a JSON real. */
static json_t *real1(double x)
{
    return json_real(round(x * 10.0) / 10.0);
}

/* Sets o[key] = v (a new reference, may be NULL: then *oom is set). */
static void put(json_t *o, const char *key, json_t *v, int *oom)
{
    if (!v || json_object_set_new(o, key, v) != 0)
        *oom = 1;
}

static json_t *json_server(const struct ns_server *s, uint64_t now_ms, int *oom)
{
    json_t *o = json_object();
    if (!o) {
        *oom = 1;
        return NULL;
    }
    put(o, "id", json_string(s->id), oom);
    put(o, "address", json_string(s->addr), oom);
    put(o, "http", json_string(s->http_addr), oom);
    put(o, "state", json_string(s->up ? "up" : "down"), oom);
    put(o, "readonly", json_boolean(s->readonly), oom);
    put(o, "draining", json_boolean(s->draining), oom);
    put(o, "capacity", json_integer((json_int_t)s->capacity), oom);
    put(o, "used", json_integer((json_int_t)s->used), oom);
    put(o, "free", json_integer((json_int_t)s->free), oom);
    put(o, "use_pct", real1(s->capacity ? (double)s->used * PCT / (double)s->capacity : 0.0), oom);
    put(o, "blocks", json_integer(s->nblocks), oom);
    put(o, "disks", json_integer(s->disks), oom);
    put(o, "last_heartbeat_ms",
        json_integer((json_int_t)(now_ms >= s->last_hb_ms ? now_ms - s->last_hb_ms : 0)), oom);
    put(o, "reads", json_integer((json_int_t)s->reads), oom);
    put(o, "writes", json_integer((json_int_t)s->writes), oom);
    put(o, "reads_per_s", real1(s->up ? s->reads_per_s : 0.0), oom);
    put(o, "writes_per_s", real1(s->up ? s->writes_per_s : 0.0), oom);
    put(o, "failed_disks", json_integer(s->failed_disks), oom);
    return o;
}

static const char *task_kind(const struct ns_task *t)
{
    return t->kind == NS_TASK_REPLICATE   ? "replicate"
           : t->kind == NS_TASK_COMPACT   ? "compact"
           : t->kind == NS_TASK_EC_ENCODE ? "ec-encode"
           : t->kind == NS_TASK_EC_REBUILD ? "ec-rebuild"
           : t->kind == NS_TASK_EC_MOVE ? "ec-move"
                                          : "delete";
}

static const char *server_id_of(const struct ns *ns, uint16_t idx)
{
    return idx < ns->nservers ? ns->servers[idx]->id : "";
}

/* The planner's running tasks (ns_plan.c), as a JSON array. */
static json_t *json_tasks(const struct ns *ns, uint64_t now_ms, int *oom)
{
    json_t *a = json_array();
    if (!a) {
        *oom = 1;
        return NULL;
    }
    for (size_t i = 0; i < ns->plan.ntasks; i++) {
        const struct ns_task *t = &ns->plan.tasks[i];
        if (t->state != NS_TASK_RUNNING)
            continue;
        json_t *o = json_object();
        if (!o || json_array_append_new(a, o) != 0) {
            *oom = 1;
            break;
        }
        put(o, "id", json_integer((json_int_t)t->id), oom);
        put(o, "kind", json_string(task_kind(t)), oom);
        put(o, "block_id", json_integer((json_int_t)t->block_id), oom);
        put(o, "source", json_string(server_id_of(ns, t->src)), oom);
        put(o, "target", json_string(server_id_of(ns, t->dst)), oom);
        put(o, "state", json_string("running"), oom);
        put(o, "bytes_done", json_integer((json_int_t)t->bytes_done), oom);
        put(o, "bytes_total", json_integer((json_int_t)t->bytes_total), oom);
        put(o, "age_ms",
            json_integer((json_int_t)(now_ms > t->start_ms ? now_ms - t->start_ms : 0)), oom);
        put(o, "reason", json_string(t->reason), oom);
    }
    return a;
}

/* One reason of the verdict: {"severity", "text", "servers": [ids],
 * "blocks": [ids]} appended to `reasons`. */
static json_t *reason_add(json_t *reasons, const char *severity, const char *text, int *oom)
{
    json_t *r = json_pack("{s:s, s:s, s:[], s:[]}", "severity", severity, "text", text,
                          "servers", "blocks");
    if (!r || json_array_append_new(reasons, r) != 0) {
        *oom = 1;
        return NULL;
    }
    return r;
}

static void reason_list_add(json_t *r, const char *list, json_t *v, int *oom)
{
    if (!r || !v || json_array_append_new(json_object_get(r, list), v) != 0)
        *oom = 1;
}

/* The lost (want_lost) or under-replicated blocks: the first
 * STATUS_BLOCKS_LISTED ids into r's "blocks". */
static void reason_blocks(const struct ns *ns, json_t *r, int want_lost, int *oom)
{
    size_t n = 0;
    for (size_t i = 0; r && i < ns->blocks.cap && n < STATUS_BLOCKS_LISTED; i++) {
        const struct ns_block *b = &ns->blocks.slots[i];
        if (!b->id)
            continue;
        int lost = ns_block_up_reps(ns, b) == 0;
        int under = !lost && ns_block_good_reps(ns, b) < ns->meta.replicas;
        if (want_lost ? lost : under) {
            reason_list_add(r, "blocks", json_integer((json_int_t)b->id), oom);
            n++;
        }
    }
}

/* Why the verdict is not "healthy", worst first: which servers, blocks and
 * disks. An empty array when healthy. */
static json_t *status_reasons(const struct ns *ns, const struct ns_admin_totals *t,
                              uint64_t now_ms, int *oom)
{
    json_t *reasons = json_array();
    char text[STATUS_REASON_MAX];
    uint32_t up = servers_up(ns);
    if (!reasons) {
        *oom = 1;
        return NULL;
    }
    if (t->lost > 0) {
        snprintf(text, sizeof(text), "%llu blocks have no live replica: their files cannot be read",
                 (unsigned long long)t->lost);
        reason_blocks(ns, reason_add(reasons, "at risk", text, oom), 1, oom);
    }
    if (up < ns->meta.replicas) {
        snprintf(text, sizeof(text), "%u of %zu servers up, fewer than %u replicas per block", up,
                 ns->nservers, ns->meta.replicas);
        reason_add(reasons, "at risk", text, oom);
    }
    for (size_t i = 0; i < ns->nservers; i++) {
        const struct ns_server *s = ns->servers[i];
        if (s->up)
            continue;
        uint64_t ago = now_ms >= s->last_hb_ms ? now_ms - s->last_hb_ms : 0;
        snprintf(text, sizeof(text), "server %s (%s) is down: no heartbeat for %llu s", s->id,
                 s->addr, (unsigned long long)(ago / MS_PER_S));
        reason_list_add(reason_add(reasons, "degraded", text, oom), "servers",
                        json_string(s->id), oom);
    }
    if (t->under_replicated > 0) {
        snprintf(text, sizeof(text), "%llu blocks have fewer than %u live replicas",
                 (unsigned long long)t->under_replicated, ns->meta.replicas);
        reason_blocks(ns, reason_add(reasons, "degraded", text, oom), 0, oom);
    }
    for (size_t i = 0; i < ns->nservers; i++) {
        const struct ns_server *s = ns->servers[i];
        if (!s->up || s->failed_disks == 0)
            continue;
        snprintf(text, sizeof(text), "server %s (%s) reports %u failed data folder%s", s->id,
                 s->addr, s->failed_disks, s->failed_disks > 1 ? "s" : "");
        reason_list_add(reason_add(reasons, "degraded", text, oom), "servers",
                        json_string(s->id), oom);
    }
    return reasons;
}

/* Deletes per second: the NOTE_DELETE requests (one per delete, from its
 * primary) between two status.json renders at least STATUS_RATE_MIN_MS
 * apart; the last rate until then. */
static struct {
    uint64_t at_ms, count;
    double per_s;
    int have;
} delete_rate;

static double deletes_per_s(const struct ns *ns, uint64_t now_ms)
{
    uint64_t count = ns->requests[FT_NOTE_DELETE];
    if (!delete_rate.have || count < delete_rate.count) {
        delete_rate.have = 1;
        delete_rate.at_ms = now_ms;
        delete_rate.count = count;
        return 0;
    }
    if (now_ms >= delete_rate.at_ms + STATUS_RATE_MIN_MS) {
        delete_rate.per_s = (double)(count - delete_rate.count) * MS_PER_S /
                            (double)(now_ms - delete_rate.at_ms);
        delete_rate.at_ms = now_ms;
        delete_rate.count = count;
    }
    return delete_rate.per_s;
}

/* Uploads and reads per second summed over the up servers (from their
 * heartbeats' counters), deletes per second, and the running tasks. */
static json_t *status_throughput(const struct ns *ns, uint64_t now_ms)
{
    double reads = 0, writes = 0;
    for (size_t i = 0; i < ns->nservers; i++) {
        if (ns->servers[i]->up) {
            reads += ns->servers[i]->reads_per_s;
            writes += ns->servers[i]->writes_per_s;
        }
    }
    return json_pack("{s:o, s:o, s:o}", "uploads_per_s", real1(writes), "reads_per_s",
                     real1(reads), "deletes_per_s", real1(deletes_per_s(ns, now_ms)));
}

int ns_http_status_json(struct ns *ns, uint64_t now_ms, char **out, size_t *len)
{
    struct ns_admin_totals t;
    uint32_t up = servers_up(ns);
    uint64_t cap = 0, used = 0;
    int oom = 0;
    ns_admin_totals(ns, &t);
    for (size_t i = 0; i < ns->nservers; i++) {
        if (ns->servers[i]->up) {
            cap += ns->servers[i]->capacity;
            used += ns->servers[i]->used;
        }
    }
    json_t *doc = json_object();
    if (!doc)
        return -ENOMEM;
    put(doc, "cluster_id", json_string(ns->meta.cluster_id), &oom);
    put(doc, "safe_mode", json_boolean(ns->safe_mode), &oom);
    put(doc, "replication", json_integer(ns->meta.replicas), &oom);
    put(doc, "block_size", json_integer((json_int_t)ns->meta.block_size), &oom);
    put(doc, "block_id_high_water", json_integer((json_int_t)ns->meta.next_id), &oom);
    put(doc, "uptime_s", json_integer((json_int_t)round(metrics_process_uptime())), &oom);
    put(doc, "servers_up", json_integer(up), &oom);
    put(doc, "servers_down", json_integer((json_int_t)(ns->nservers - up)), &oom);
    put(doc, "capacity_used", json_integer((json_int_t)used), &oom);
    put(doc, "capacity_total", json_integer((json_int_t)cap), &oom);
    put(doc, "blocks",
        json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "total", (json_int_t)t.total,
                  "writable", (json_int_t)t.writable, "sealed", (json_int_t)t.sealed, "open",
                  (json_int_t)t.open, "under_replicated", (json_int_t)t.under_replicated, "lost",
                  (json_int_t)t.lost, "bytes", (json_int_t)t.bytes, "files", (json_int_t)t.files),
        &oom);
    put(doc, "verdict", json_string(verdict(ns, &t)), &oom);
    put(doc, "reasons", status_reasons(ns, &t, now_ms, &oom), &oom);
    put(doc, "throughput", status_throughput(ns, now_ms), &oom);
    json_t *tasks = json_tasks(ns, now_ms, &oom);
    put(doc, "tasks_running", json_integer(tasks ? (json_int_t)json_array_size(tasks) : 0), &oom);
    put(doc, "tasks", tasks, &oom);
    put(doc, "balance",
        json_pack("{s:I, s:I, s:I, s:I}", "moves_running", (json_int_t)ns->bal.nmoves,
                  "moves_done", (json_int_t)ns->bal.moves_done, "moves_failed",
                  (json_int_t)ns->bal.moves_failed, "bytes_moved",
                  (json_int_t)ns->bal.bytes_moved),
        &oom);
    json_t *servers = json_array();
    for (size_t i = 0; servers && i < ns->nservers; i++)
        if (json_array_append_new(servers, json_server(ns->servers[i], now_ms, &oom)) != 0)
            oom = 1;
    put(doc, "servers", servers, &oom);
    /* JSON_ESCAPE_SLASH: no "</script>" can appear when the page inlines it. */
    char *text = oom ? NULL : json_dumps(doc, JSON_ESCAPE_SLASH | JSON_REAL_PRECISION(REAL_DIGITS));
    json_decref(doc);
    if (!text)
        return -ENOMEM;
    size_t n = strlen(text);
    char *withnl = realloc(text, n + 2);
    if (!withnl) {
        free(text);
        return -ENOMEM;
    }
    memcpy(withnl + n, "\n", 2);
    *out = withnl;
    *len = n + 1;
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

/* ---- requests ------------------------------------------------------------- */

static void http_unref(struct ns_http *h)
{
    if (--h->handles == 0)
        free(h);
}

/* Answers q with one response; takes ownership of `body` (malloc'd, may be
 * NULL). Out of memory: the core closes the connection unanswered. */
static void respond(struct http_server_req *q, int code, const char *ctype, char *body,
                    size_t blen, int keep_alive)
{
    char *head = malloc(HTTP_HEAD_MAX);
    if (head)
        q->resp_hdr_len = (size_t)snprintf(
            head, HTTP_HEAD_MAX,
            "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
            "Cache-Control: no-store\r\nConnection: %s\r\n\r\n",
            code, http_server_reason(code), ctype, blen, keep_alive ? "keep-alive" : "close");
    q->resp_hdr = head;
    q->resp_mem = body;
    if (!q->head_only && body && blen) {
        q->resp_body = (const uint8_t *)body;
        q->resp_body_len = blen;
    }
    q->close_after = !keep_alive;
    http_server_finish(q);
}

static void respond_text(struct http_server_req *q, int code, const char *text, int keep_alive)
{
    char *body = strdup(text);
    respond(q, code, CT_TEXT, body, body ? strlen(body) : 0, keep_alive);
}

typedef int (*render_fn)(struct ns *ns, uint64_t now_ms, char **out, size_t *len);

/* Renders a document and answers it, or 500 when it cannot be built. */
static void respond_doc(struct http_server_req *q, render_fn render, struct ns *ns, uint64_t now,
                        const char *ctype, int keep)
{
    char *body = NULL;
    size_t len = 0;
    if (render(ns, now, &body, &len) != 0)
        respond_text(q, 500, "out of memory\n", 0);
    else
        respond(q, 200, ctype, body, len, keep);
}

/* The routes of a complete request. */
static void on_request(struct http_server_req *q)
{
    struct ns_http *h = q->user;
    struct ns *ns = h->ns;
    uint64_t now = uv_now(h->loop);
    int keep = q->keep_alive;
    const char *path = q->path; /* the query string is ignored */
    if (q->method != HTTP_GET && q->method != HTTP_HEAD)
        respond_text(q, 405, "method not allowed\n", keep);
    else if (strcmp(path, "/healthz") == 0)
        respond_text(q, 200, "ok\n", keep);
    else if (strcmp(path, "/metrics") == 0)
        respond_doc(q, ns_http_metrics, ns, now, METRICS_CONTENT_TYPE, keep);
    else if (strcmp(path, "/status.json") == 0)
        respond_doc(q, ns_http_status_json, ns, now, CT_JSON, keep);
    else if (strcmp(path, "/") == 0 || strcmp(path, "/index.html") == 0)
        respond_doc(q, render_page, ns, now, CT_HTML, keep);
    else
        respond_text(q, 404, "not found\n", keep);
}

/* A request the core refuses (414, unparsable 400, 408, out of memory 503,
 * 505): the
 * connection closes after this answer. */
static void on_error(struct http_server_req *q, int code)
{
    if (code == 414 && q->method == HTTP_HEAD)
        q->head_only = 1; /* the answer to a HEAD has no body */
    respond_text(q, code,
                 code == 414   ? "uri too long\n"
                 : code == 503 ? "out of memory\n"
                 : code == 505 ? "http version not supported\n"
                 : code == 408 ? "request head took too long\n"
                               : "bad request\n",
                 0);
}

static const struct http_server_ops ns_http_ops = {
    .on_request = on_request,
    .on_error = on_error,
};

/* ---- lifetime ------------------------------------------------------------- */

void ns_http_stop(struct ns_http *h)
{
    if (!h || h->stopping)
        return;
    h->stopping = 1;
    metrics_http = NULL;
    http_server_stop(h->srv); /* frees itself once closed; calls nothing of ours */
    http_unref(h);
}

int ns_http_start(struct ns *ns, uv_loop_t *loop, const char *addr, struct ns_http **out)
{
    *out = NULL;
    struct ns_http *h = calloc(1, sizeof(*h));
    if (!h)
        return -ENOMEM;
    h->ns = ns;
    h->loop = loop;
    struct http_server_config cfg = {
        .idle_ms = HTTP_IDLE_MS,
        .header_ms = HTTP_HEADER_MS,
        .max_conns = ns->cfg.max_conns,
        .max_conns_per_addr = ns->cfg.max_conns_per_addr,
    };
    int rc = http_server_start(loop, addr, &cfg, &ns_http_ops, h, &h->srv);
    if (rc) {
        log_error("cannot listen on %s (http): %s", addr, uv_strerror(rc));
        free(h);
        return rc;
    }
    h->handles = 1; /* the core's, until ns_http_stop */
    metrics_http = h->srv;
    log_info("http on %s (/metrics, /healthz, /status.json, /)", addr);
    *out = h;
    return 0;
}
