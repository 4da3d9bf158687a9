/* Integration test: what an operator uses. GET /metrics of the nameserver
 * and of every dataserver parse as Prometheus text, pass `promtool check
 * metrics` without a warning, and their counters move with requests; the
 * nameserver maps server ids to addresses; deploy/alerts.yml passes
 * `promtool check rules` and its unit tests (alerts_test.yml); the status
 * page names the verdict's reasons, fits 1280 px and looks like its
 * reference screenshot (status_page_ref.png, within png_compare.py's
 * tolerance); /status.json and the status page show the live cluster
 * (the page also in headless Chromium, when installed); every ds-admin
 * command works in table and --json form with the documented exit codes. */
#include "tests/integ/cluster.h"
#include "tests/integ/fixture.h"
#include "tests/integ/json_check.h"

#include <criterion/criterion.h>
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CLI_TIMEOUT_MS 30000
#define HTTP_TIMEOUT_MS 5000
#define NFILES 20
#define FILE_SIZE 3000
#define HB_WAIT_MS 2500 /* a heartbeat (1 s) carries new counters; rates need two */
#define CHROMIUM_TIMEOUT_S 90
#define PAGE_WIDTH 1280  /* the status page must fit this window */
#define PAGE_NARROW 700  /* ... and show that its tables scroll in this one */
#define PAGE_HEIGHT 1000
#define DOWN_WAIT_MS 20000


static void setup(void)
{
    cr_assert_eq(
        fixture_start(&(struct cluster_opts){.ndataservers = 3, .replicas = 2, .ns_http = 1}), 0);
}


/* ---- helpers: HTTP, Prometheus text, JSON --------------------------------- */

/* GET `path` from addr with Connection: close. Returns the status code and
 * the malloc'd body in *body (caller frees), or fails the test. */
static int http_get(const char *addr, const char *path, char **body)
{
    int fd = cluster_connect(addr, HTTP_TIMEOUT_MS);
    cr_assert_geq(fd, 0, "connect %s: %s", addr, strerror(-fd));
    char req[512];
    int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n",
                     path, addr);
    cr_assert_eq(write(fd, req, (size_t)n), n);
    size_t len = 0, cap = 65536;
    char *buf = malloc(cap);
    for (;;) {
        if (len + 1 >= cap)
            buf = realloc(buf, cap *= 2);
        ssize_t r = read(fd, buf + len, cap - len - 1);
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    buf[len] = '\0';
    int code = 0;
    cr_assert_eq(sscanf(buf, "HTTP/1.1 %d", &code), 1, "GET %s%s: no status line", addr, path);
    char *start = strstr(buf, "\r\n\r\n");
    cr_assert_not_null(start, "GET %s%s: no end of headers", addr, path);
    *body = strdup(start + 4);
    free(buf);
    return code;
}

static int name_char(char ch, int first)
{
    return isalpha((unsigned char)ch) || ch == '_' || ch == ':' ||
           (!first && isdigit((unsigned char)ch));
}

/* Checks one sample line "name{k="v",...} value"; returns the name length. */
static size_t check_sample(const char *line)
{
    const char *p = line;
    cr_assert(name_char(*p, 1), "bad metric name in: %s", line);
    while (name_char(*p, 0))
        p++;
    size_t nlen = (size_t)(p - line);
    if (*p == '{') {
        p++;
        while (*p != '}') {
            cr_assert(name_char(*p, 1), "bad label name in: %s", line);
            while (name_char(*p, 0))
                p++;
            cr_assert(p[0] == '=' && p[1] == '"', "bad label in: %s", line);
            p += 2;
            while (*p && *p != '"')
                p += *p == '\\' ? 2 : 1;
            cr_assert_eq(*p, '"', "unterminated label value in: %s", line);
            p++;
            if (*p == ',')
                p++;
        }
        p++;
    }
    cr_assert_eq(*p, ' ', "no value in: %s", line);
    char *end;
    double v = strtod(p + 1, &end);
    (void)v;
    cr_assert(end != p + 1 && (*end == '\0' || *end == '\n' || *end == ' '),
              "bad value in: %s", line);
    return nlen;
}

/* Validates a whole exposition: every line a comment (# HELP / # TYPE with a
 * known type) or a sample whose family was typed before it. */
static void check_prometheus(const char *text, const char *who)
{
    char typed[512][96];
    size_t ntyped = 0, samples = 0;
    char *copy = strdup(text), *save = NULL;
    cr_assert(strlen(text) > 0, "%s: empty /metrics", who);
    for (char *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        if (strncmp(l, "# HELP ", 7) == 0)
            continue;
        if (strncmp(l, "# TYPE ", 7) == 0) {
            char name[96], type[32];
            cr_assert_eq(sscanf(l + 7, "%95s %31s", name, type), 2, "%s: bad TYPE: %s", who, l);
            cr_assert(!strcmp(type, "counter") || !strcmp(type, "gauge") ||
                          !strcmp(type, "histogram"),
                      "%s: unknown type: %s", who, l);
            cr_assert_lt(ntyped, 512);
            snprintf(typed[ntyped++], sizeof(typed[0]), "%s", name);
            continue;
        }
        cr_assert_neq(l[0], '#', "%s: unknown comment: %s", who, l);
        size_t nlen = check_sample(l);
        int found = 0;
        for (size_t i = 0; i < ntyped && !found; i++) {
            size_t tl = strlen(typed[i]);
            found = nlen >= tl && strncmp(l, typed[i], tl) == 0 &&
                    (nlen == tl || !strncmp(l + tl, "_bucket", nlen - tl) ||
                     !strncmp(l + tl, "_sum", nlen - tl) || !strncmp(l + tl, "_count", nlen - tl));
        }
        cr_assert(found, "%s: sample without a # TYPE: %s", who, l);
        samples++;
    }
    free(copy);
    cr_assert_gt(samples, 10, "%s: only %zu samples", who, samples);
}

/* Returns the value of the series `series` (name with its exact label text),
 * or NAN when absent. */
static double metric(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; (p = strstr(p, series)); p += n) {
        if ((p == text || p[-1] == '\n') && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    }
    return NAN;
}

static char *metrics_of(const char *addr)
{
    char *body;
    int code = http_get(addr, "/metrics", &body);
    cr_assert_eq(code, 200, "GET %s/metrics: %d", addr, code);
    return body;
}

static double ds_sum(const char *series)
{
    double sum = 0;
    for (int i = 0; i < C->nds; i++) {
        char *m = metrics_of(C->ds[i].http_addr);
        double v = metric(m, series);
        free(m);
        cr_assert(!isnan(v), "%s: no series %s", C->ds[i].name, series);
        sum += v;
    }
    return sum;
}

/* Uploads files 0..n-1 (FILE_SIZE bytes each) and, with `check`, then reads
 * each back through h. */
static void put_files(imgstore_t *h, uint64_t seed, char names[][IMGSTORE_NAME_MAX], int n,
                      int check)
{
    for (int i = 0; i < n; i++)
        cr_assert_eq(cluster_put_file(h, seed, (uint64_t)i, FILE_SIZE, names[i], 5), 0);
    for (int i = 0; check && i < n; i++)
        cr_assert_eq(cluster_check_file(h, names[i], NULL, seed, (uint64_t)i, FILE_SIZE), 0);
}

/* ds-admin against the test cluster: its exit code, *r filled. */
#define admin(r, ...) cluster_admin(C, CLI_TIMEOUT_MS, r, __VA_ARGS__, NULL)

/* ---- metrics ------------------------------------------------------------------- */

Test(ops, metrics_parse_and_move, .init = setup, .fini = fixture_stop, .timeout = 180)
{
    char *m = metrics_of(C->ns.http_addr);
    check_prometheus(m, "nameserver");
    cr_assert_eq(metric(m, "imgstore_nameserver_servers{state=\"up\"}"), 3, "%s", m);
    cr_assert_eq(metric(m, "imgstore_nameserver_blocks_lost"), 0);
    cr_assert_gt(metric(m, "imgstore_nameserver_heartbeats_total"), 0);
    cr_assert_gt(metric(m, "imgstore_process_resident_memory_bytes"), 0);
    cr_assert_gt(metric(m, "imgstore_nameserver_block_id_high_water"), 0);
    double allocs = metric(m, "imgstore_nameserver_requests_total{type=\"ALLOC_WRITE\"}");
    free(m);
    for (int i = 0; i < C->nds; i++) {
        m = metrics_of(C->ds[i].http_addr);
        check_prometheus(m, C->ds[i].name);
        cr_assert_gt(metric(m, "imgstore_process_resident_memory_bytes"), 0);
        cr_assert_eq(metric(m, "imgstore_ds_nameserver_connected"), 1);
        free(m);
    }
    double writes0 = ds_sum("imgstore_ds_requests_total{op=\"write\",status=\"ok\"}");
    double reads0 = ds_sum("imgstore_ds_requests_total{op=\"read\",status=\"ok\"}");
    double lat0 = ds_sum("imgstore_ds_request_duration_seconds_count{op=\"write\"}");
    double in0 = ds_sum("imgstore_ds_received_bytes_total");
    double out0 = ds_sum("imgstore_ds_sent_bytes_total");

    imgstore_t *h = cluster_client(C);
    uint64_t seed = cluster_seed("ops_metrics");
    char names[NFILES][IMGSTORE_NAME_MAX];
    put_files(h, seed, names, NFILES, 1);
    imgstore_close(h);

    cr_assert_eq(ds_sum("imgstore_ds_requests_total{op=\"write\",status=\"ok\"}") - writes0,
                 NFILES);
    cr_assert_geq(ds_sum("imgstore_ds_requests_total{op=\"read\",status=\"ok\"}") - reads0,
                  NFILES);
    cr_assert_eq(ds_sum("imgstore_ds_request_duration_seconds_count{op=\"write\"}") - lat0,
                 NFILES);
    cr_assert_geq(ds_sum("imgstore_ds_received_bytes_total") - in0, 2.0 * NFILES * FILE_SIZE);
    cr_assert_geq(ds_sum("imgstore_ds_sent_bytes_total") - out0, 1.0 * NFILES * FILE_SIZE);
    cr_assert_gt(ds_sum("imgstore_ds_files"), 0);

    m = metrics_of(C->ns.http_addr);
    cr_assert_gt(metric(m, "imgstore_nameserver_requests_total{type=\"ALLOC_WRITE\"}"), allocs);
    cr_assert_gt(metric(m, "imgstore_nameserver_requests_total{type=\"CLUSTER_STATUS\"}"), 0);
    free(m);

    char *body;
    cr_assert_eq(http_get(C->ns.http_addr, "/healthz", &body), 200);
    cr_assert_str_eq(body, "ok\n");
    free(body);
    cr_assert_eq(http_get(C->ns.http_addr, "/nope", &body), 404);
    free(body);
    C->passed = 1;
}

/* ---- promtool: names, units, types, alert rules ------------------------------- */

#define PROMTOOL_HINT "promtool is missing: scripts/install-deps.sh installs Debian's prometheus"
#define ALERTS_FILE "deploy/alerts.yml"
#define ALERTS_TESTS "tests/integ/alerts_test.yml"
#define START_SLACK_S 600 /* the servers started within this before the test's scrape */

/* Runs `cmd` (a shell line) with stderr joined to stdout; returns its exit
 * code and its output in *out (malloc'd, caller frees). */
static int run_capture(const char *cmd, char **out)
{
    char line[4096];
    snprintf(line, sizeof(line), "%s 2>&1", cmd);
    FILE *f = popen(line, "r");
    cr_assert_not_null(f, "popen %s", cmd);
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap);
    size_t n;
    while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (len + 1 >= cap)
            buf = realloc(buf, cap *= 2);
    }
    buf[len] = '\0';
    int rc = pclose(f);
    *out = buf;
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/* promtool check metrics on one server's /metrics: no error, no warning. */
static void promtool_metrics(const char *addr, const char *who)
{
    char path[512], cmd[1024], *m = metrics_of(addr), *out;
    snprintf(path, sizeof(path), "%s/metrics-%s.txt", C->dir, who);
    cr_assert_eq(cluster_write_file(path, m, strlen(m)), 0);
    free(m);
    snprintf(cmd, sizeof(cmd), "promtool check metrics < '%s'", path);
    int rc = run_capture(cmd, &out);
    cr_assert_eq(rc, 0, "%s: promtool check metrics failed (%d):\n%s", who, rc, out);
    cr_assert_str_empty(out, "%s: promtool check metrics warns:\n%s", who, out);
    free(out);
}

/* The value of `label` in a sample line (up to its closing quote) into
 * out, or "" when absent. */
static void label_of(const char *line, const char *label, char *out, size_t n)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "%s=\"", label);
    const char *p = strstr(line, pat);
    out[0] = '\0';
    if (!p)
        return;
    p += strlen(pat);
    size_t len = strcspn(p, "\"\n");
    snprintf(out, n, "%.*s", (int)(len < n ? len : n - 1), p);
}

Test(ops, promtool_and_info, .init = setup, .fini = fixture_stop, .timeout = 120)
{
    char *out;
    cr_assert_eq(system("command -v promtool >/dev/null 2>&1"), 0, PROMTOOL_HINT);
    promtool_metrics(C->ns.http_addr, "ns");
    for (int i = 0; i < C->nds; i++)
        promtool_metrics(C->ds[i].http_addr, C->ds[i].name);
    int rc = run_capture("promtool check rules " ALERTS_FILE, &out);
    cr_assert_eq(rc, 0, "promtool check rules " ALERTS_FILE " (%d):\n%s", rc, out);
    free(out);
    /* The rules fire on the failures the verdict names (unit tests with
     * made-up series: tests/integ/alerts_test.yml). */
    rc = run_capture("promtool test rules " ALERTS_TESTS, &out);
    cr_assert_eq(rc, 0, "promtool test rules " ALERTS_TESTS " (%d):\n%s", rc, out);
    free(out);

    /* One info series per dataserver: its id (as in the per-server series),
     * native and HTTP addresses and host. */
    char *m = metrics_of(C->ns.http_addr);
    for (int i = 0; i < C->nds; i++) {
        char pat[160], id[64], http[64], host[64], up[160];
        snprintf(pat, sizeof(pat), "addr=\"%s\"", C->ds[i].addr);
        const char *line = NULL;
        for (const char *p = m; (p = strstr(p, "\nimgstore_nameserver_server_info{")); p++) {
            const char *eol = strchr(p + 1, '\n');
            const char *hit = strstr(p + 1, pat);
            if (hit && (!eol || hit < eol)) {
                line = p + 1;
                break;
            }
        }
        cr_assert_not_null(line, "no imgstore_nameserver_server_info for %s:\n%s", C->ds[i].addr,
                           m);
        label_of(line, "server", id, sizeof(id));
        label_of(line, "http", http, sizeof(http));
        label_of(line, "host", host, sizeof(host));
        cr_assert_str_eq(http, C->ds[i].http_addr);
        cr_assert_str_eq(host, "127.0.0.1");
        cr_assert(strstr(line, "} 1\n") != NULL, "info value is not 1: %.200s", line);
        snprintf(up, sizeof(up), "imgstore_nameserver_server_up{server=\"%s\"}", id);
        cr_assert_eq(metric(m, up), 1, "%s: the info's id has no server_up series", id);
    }
    /* process_start_time_seconds: a fixed moment, shortly before now. */
    double start = metric(m, "process_start_time_seconds");
    free(m);
    double now = (double)time(NULL);
    cr_assert(start > now - START_SLACK_S && start <= now + 1, "start %f, now %f", start, now);
    m = metrics_of(C->ns.http_addr);
    cr_assert_eq(metric(m, "process_start_time_seconds"), start);
    free(m);
    for (int i = 0; i < C->nds; i++) {
        m = metrics_of(C->ds[i].http_addr);
        double ds_start = metric(m, "process_start_time_seconds");
        cr_assert(ds_start > now - START_SLACK_S && ds_start <= now + 1, "%s: start %f",
                  C->ds[i].name, ds_start);
        free(m);
    }
    C->passed = 1;
}

/* ---- status page ------------------------------------------------------------- */

static int have_chromium(void)
{
    return system("command -v chromium >/dev/null 2>&1") == 0;
}

/* Loads the page in headless Chromium in a window `width` px wide; returns
 * the DOM after the scripts ran (a refresh included) and whether the
 * console reported anything. */
static char *chromium_dom(const char *url, int width, int *console_lines)
{
    char cmd[2048], dom[512], err[512], prof[512];
    snprintf(dom, sizeof(dom), "%s/dom.html", C->dir);
    snprintf(err, sizeof(err), "%s/log/chromium.log", C->dir);
    snprintf(prof, sizeof(prof), "%s/chromium-profile", C->dir);
    snprintf(cmd, sizeof(cmd),
             "timeout %d chromium --headless --no-sandbox --disable-gpu "
             "--disable-background-networking --disable-component-update --no-first-run "
             "--user-data-dir=%s --enable-logging=stderr --v=0 --virtual-time-budget=3000 "
             "--window-size=%d,%d --hide-scrollbars --dump-dom %s >%s 2>%s",
             CHROMIUM_TIMEOUT_S, prof, width, PAGE_HEIGHT, url, dom, err);
    int rc = system(cmd);
    cr_assert(WIFEXITED(rc) && WEXITSTATUS(rc) == 0, "chromium failed (%d); see %s", rc, err);
    void *buf, *ebuf;
    size_t len, elen;
    cr_assert_eq(cluster_read_file(dom, &buf, &len), 0);
    cr_assert_eq(cluster_read_file(err, &ebuf, &elen), 0);
    char *text = realloc(buf, len + 1);
    text[len] = '\0';
    *console_lines = 0;
    char *e = realloc(ebuf, elen + 1);
    e[elen] = '\0';
    for (char *p = e; (p = strstr(p, ":CONSOLE(")); p++) {
        fprintf(stderr, "console: %.200s\n", p);
        (*console_lines)++;
    }
    free(e);
    return text;
}

/* The text of the element with id `id` in a dumped DOM. */
static void dom_text(const char *dom, const char *id, char *out, size_t n)
{
    char pat[96];
    snprintf(pat, sizeof(pat), "id=\"%s\"", id);
    const char *p = strstr(dom, pat);
    cr_assert_not_null(p, "no element #%s in the page", id);
    p = strchr(p, '>');
    cr_assert_not_null(p);
    p++;
    size_t i = 0;
    while (p[i] && p[i] != '<' && i + 1 < n) {
        out[i] = p[i];
        i++;
    }
    out[i] = '\0';
}

Test(ops, status_page, .init = setup, .fini = fixture_stop, .timeout = 240)
{
    imgstore_t *h = cluster_client(C);
    uint64_t seed = cluster_seed("ops_page");
    char names[NFILES][IMGSTORE_NAME_MAX];
    put_files(h, seed, names, NFILES, 0);
    imgstore_close(h);
    usleep(HB_WAIT_MS * 1000); /* the primaries report their file counts */

    char *js;
    cr_assert_eq(http_get(C->ns.http_addr, "/status.json", &js), 200);
    check_json(js, "/status.json");
    cr_assert_eq(json_at_num(js, "servers_up"), 3, "%s", js);
    cr_assert_eq(json_at_num(js, "servers_down"), 0);
    cr_assert_eq(json_at_num(js, "blocks.files"), NFILES, "%s", js);
    cr_assert_geq(json_at_num(js, "blocks.total"), 1);
    cr_assert_eq(json_at_num(js, "blocks.lost"), 0);
    char verdict[32];
    json_at_str(js, "verdict", verdict, sizeof(verdict));
    cr_assert_str_eq(verdict, "healthy", "%s", js);
    cr_assert_eq(json_at_num(js, "balance.moves_running"), 0, "%s", js);
    cr_assert_eq(json_at_num(js, "balance.bytes_moved"), 0, "%s", js);
    cr_assert_eq(json_at_len(js, "servers"), C->nds, "%s", js);
    for (int i = 0; i < C->nds; i++) {
        char path[96];
        snprintf(path, sizeof(path), "servers[address=%s].failed_disks", C->ds[i].addr);
        cr_assert_eq(json_at_num(js, path), 0, "%s missing or with failed disks in %s",
                     C->ds[i].addr, js);
    }
    double blocks_total = json_at_num(js, "blocks.total");

    char *page;
    cr_assert_eq(http_get(C->ns.http_addr, "/", &page), 200);
    cr_assert_not_null(strstr(page, "<!DOCTYPE html>"));
    cr_assert_not_null(strstr(page, C->ds[0].addr), "the page does not inline the status");
    cr_assert_null(strstr(page, "src=\"http"), "the page loads an external asset");
    free(page);

    if (!have_chromium()) {
        fprintf(stderr, "status_page: chromium is not installed; the browser check is skipped "
                        "(make test-ui installs it)\n");
        free(js);
        C->passed = 1;
        return;
    }
    char url[128], v[64];
    int console;
    snprintf(url, sizeof(url), "http://%s/", C->ns.http_addr);
    char *dom = chromium_dom(url, PAGE_WIDTH, &console);
    cr_assert_eq(console, 0, "the page logged to the console");
    dom_text(dom, "servers-up", v, sizeof(v));
    cr_assert_str_eq(v, "3", "servers up shown: '%s'", v);
    dom_text(dom, "servers-down", v, sizeof(v));
    cr_assert_str_eq(v, "0");
    dom_text(dom, "blocks-total", v, sizeof(v));
    cr_assert_eq(strtod(v, NULL), blocks_total, "blocks shown: '%s'", v);
    dom_text(dom, "files", v, sizeof(v));
    cr_assert_eq(strtod(v, NULL), NFILES, "files shown: '%s'", v);
    dom_text(dom, "blocks-lost", v, sizeof(v));
    cr_assert_str_eq(v, "0");
    dom_text(dom, "verdict", v, sizeof(v));
    cr_assert_str_eq(v, "healthy");
    dom_text(dom, "balance", v, sizeof(v));
    cr_assert(strncmp(v, "rebalance: 0 moves running, 0 done", 34) == 0, "balance: '%s'", v);
    for (int i = 0; i < C->nds; i++)
        cr_assert_not_null(strstr(dom, C->ds[i].addr), "%s not shown", C->ds[i].addr);
    int rows = 0;
    for (const char *p = dom; (p = strstr(p, "<tr class=\"server\"")); p++)
        rows++;
    cr_assert_eq(rows, 3, "%d server rows", rows);
    cr_assert_not_null(strstr(dom, "class=\"bar"), "no capacity bar");
    dom_text(dom, "updated", v, sizeof(v));
    cr_assert(strncmp(v, "updated", 7) == 0, "the refresh did not run: '%s'", v);
    free(dom);
    free(js);
    C->passed = 1;
}

/* ---- ds-admin ---------------------------------------------------------------- */

/* The id of the dataserver at `addr` in a /status.json document. */
static void status_server_id(const char *js, const char *addr, char *id, size_t n)
{
    json_error_t err;
    json_t *doc = json_loads(js, 0, &err);
    cr_assert_not_null(doc, "%s", err.text);
    size_t i;
    json_t *s;
    id[0] = '\0';
    json_array_foreach(json_object_get(doc, "servers"), i, s) {
        if (strcmp(json_string_value(json_object_get(s, "address")), addr) == 0)
            snprintf(id, n, "%s", json_string_value(json_object_get(s, "id")));
    }
    json_decref(doc);
    cr_assert(id[0], "no server %s in %s", addr, js);
}

/* A server down: the verdict names it (status.json "reasons" and the page),
 * the throughput and tasks cards are there, and the page fits 1280 px (no
 * table overflows its card) while at 700 px the servers table scrolls
 * inside its card. */
Test(ops, status_page_reasons, .init = setup, .fini = fixture_stop, .timeout = 240)
{
    char *js, id[64], v[256];
    cr_assert_eq(http_get(C->ns.http_addr, "/status.json", &js), 200);
    status_server_id(js, C->ds[2].addr, id, sizeof(id));
    cr_assert_eq(json_at_len(js, "reasons"), 0, "healthy, yet reasons: %s", js);
    cr_assert(!isnan(json_at_num(js, "throughput.uploads_per_s")) &&
                  !isnan(json_at_num(js, "throughput.reads_per_s")) &&
                  !isnan(json_at_num(js, "throughput.deletes_per_s")),
              "%s", js);
    cr_assert_eq(json_at_num(js, "tasks_running"), 0, "%s", js);
    free(js);

    cr_assert_geq(cluster_signal_proc(&C->ds[2], SIGKILL), 0);
    int64_t deadline = cluster_now_ms() + DOWN_WAIT_MS;
    for (;;) {
        cr_assert_eq(http_get(C->ns.http_addr, "/status.json", &js), 200);
        if (json_at_num(js, "servers_down") == 1)
            break;
        cr_assert_lt(cluster_now_ms(), deadline, "%s never seen down: %s", id, js);
        free(js);
        usleep(200 * 1000);
    }
    check_json(js, "/status.json");
    json_at_str(js, "verdict", v, sizeof(v));
    cr_assert_str_eq(v, "degraded", "%s", js);
    int named = 0, nreasons = json_at_len(js, "reasons");
    for (int i = 0; i < nreasons && !named; i++) {
        char path[64];
        snprintf(path, sizeof(path), "reasons[%d].servers", i);
        json_t *list = json_at(js, path);
        named = json_array_size(list) == 1 &&
                strcmp(json_string_value(json_array_get(list, 0)) ?: "", id) == 0;
        json_decref(list);
    }
    cr_assert(named, "no reason names %s alone: %s", id, js);
    free(js);

    if (!have_chromium()) {
        fprintf(stderr, "status_page_reasons: chromium is not installed; the browser check is "
                        "skipped (make test-ui installs it)\n");
        C->passed = 1;
        return;
    }
    char url[128];
    int console;
    snprintf(url, sizeof(url), "http://%s/", C->ns.http_addr);
    char *dom = chromium_dom(url, PAGE_WIDTH, &console);
    cr_assert_eq(console, 0, "the page logged to the console");
    dom_text(dom, "verdict", v, sizeof(v));
    cr_assert_str_eq(v, "degraded");
    cr_assert_not_null(strstr(dom, "<section id=\"reasons-box\">"), "the reasons are hidden");
    const char *r = strstr(dom, "<li class=\"reason degraded\">");
    cr_assert_not_null(r, "no reason listed: %s", dom);
    char want[160];
    snprintf(want, sizeof(want), "server %s (%s) is down", id, C->ds[2].addr);
    cr_assert_not_null(strstr(r, want), "the reason does not name %s", id);
    dom_text(dom, "servers-down", v, sizeof(v));
    cr_assert_str_eq(v, "1");
    dom_text(dom, "tasks-running", v, sizeof(v));
    cr_assert(isdigit((unsigned char)v[0]), "tasks in flight: '%s'", v);
    dom_text(dom, "uploads-per-s", v, sizeof(v));
    cr_assert(isdigit((unsigned char)v[0]), "uploads/s: '%s'", v);
    dom_text(dom, "deletes-per-s", v, sizeof(v));
    cr_assert(isdigit((unsigned char)v[0]), "deletes/s: '%s'", v);
    cr_assert_null(strstr(dom, "scroll overflowing\""), "a table overflows its card at %d px",
                   PAGE_WIDTH);
    cr_assert_not_null(strstr(dom, "class=\"scroll\""), "no scrolling table box");
    free(dom);
    /* the check can fail: in a narrow window the servers table must scroll */
    dom = chromium_dom(url, PAGE_NARROW, &console);
    cr_assert_not_null(strstr(dom, "class=\"scroll overflowing\""),
                       "at %d px the servers table fits?", PAGE_NARROW);
    free(dom);
    C->passed = 1;
}

/* ---- status page screenshot ------------------------------------------------- */

#define SHOT_FIXTURE "tests/integ/status_fixture.json"
#define SHOT_REF "tests/integ/status_page_ref.png"
#define SHOT_COMPARE "tests/integ/png_compare.py"
#define SHOT_UPDATE_ENV "IMGSTORE_UPDATE_REF" /* 1: write the shot as the new reference */
#define SHOT_HEIGHT 1400 /* the whole page of the fixture */

/* The page the nameserver serves, with its inlined status replaced by the
 * fixed one of SHOT_FIXTURE (a degraded cluster of four servers with every
 * kind of row), so the screenshot is the same on every run. Writes it to
 * `path`. */
static void fixed_page(const char *path)
{
    char *page;
    void *fix;
    size_t fix_len;
    cr_assert_eq(http_get(C->ns.http_addr, "/", &page), 200);
    cr_assert_eq(cluster_read_file(SHOT_FIXTURE, &fix, &fix_len), 0, "%s", SHOT_FIXTURE);
    const char *open = "var INITIAL = ", *close = ";\n(function";
    char *start = strstr(page, open);
    cr_assert_not_null(start, "no inlined status in the page");
    start += strlen(open);
    char *end = strstr(start, close);
    cr_assert_not_null(end);
    size_t head = (size_t)(start - page), tail = strlen(end);
    char *out = malloc(head + fix_len + tail);
    memcpy(out, page, head);
    memcpy(out + head, fix, fix_len);
    memcpy(out + head + fix_len, end, tail);
    cr_assert_eq(cluster_write_file(path, out, head + fix_len + tail), 0);
    free(out);
    free(fix);
    free(page);
}

/* A screenshot of the page (1280 px wide, a fixed status with every kind of
 * row: reasons, a down, a draining read-only and a nearly full server,
 * running tasks) compared with the checked-in reference within
 * png_compare.py's tolerance: a section gone, moved or spilling out of its
 * card fails; font rendering does not. No table of that page overflows. */
Test(ops, status_page_screenshot, .init = setup, .fini = fixture_stop, .timeout = 240)
{
    if (!have_chromium()) {
        fprintf(stderr, "status_page_screenshot: chromium is not installed; skipped "
                        "(make test-ui installs it)\n");
        C->passed = 1;
        return;
    }
    char html[512], shot[512], log[512], cmd[4096], *out;
    snprintf(html, sizeof(html), "%s/page.html", C->dir);
    snprintf(shot, sizeof(shot), "%s/page.png", C->dir);
    snprintf(log, sizeof(log), "%s/log/chromium-shot.log", C->dir);
    fixed_page(html);
    snprintf(cmd, sizeof(cmd),
             "timeout %d chromium --headless --no-sandbox --disable-gpu "
             "--disable-background-networking --disable-component-update --no-first-run "
             "--user-data-dir=%s/chromium-shot --virtual-time-budget=3000 --hide-scrollbars "
             "--force-device-scale-factor=1 --window-size=%d,%d --screenshot=%s file://%s "
             ">%s 2>&1",
             CHROMIUM_TIMEOUT_S, C->dir, PAGE_WIDTH, SHOT_HEIGHT, shot, html, log);
    int rc = system(cmd);
    cr_assert(WIFEXITED(rc) && WEXITSTATUS(rc) == 0, "chromium failed (%d); see %s", rc, log);
    /* the same page's layout facts: no table spills out of its card */
    char url[600];
    int console;
    snprintf(url, sizeof(url), "file://%s", html);
    char *dom = chromium_dom(url, PAGE_WIDTH, &console); /* the refresh fails: no server */
    cr_assert_not_null(strstr(dom, "<tr class=\"server\""), "no server rows");
    cr_assert_null(strstr(dom, "scroll overflowing\""), "a table overflows its card at %d px",
                   PAGE_WIDTH);
    free(dom);
    const char *update = getenv(SHOT_UPDATE_ENV);
    if (update && strcmp(update, "1") == 0) {
        snprintf(cmd, sizeof(cmd), "cp '%s' " SHOT_REF, shot);
        cr_assert_eq(system(cmd), 0);
        fprintf(stderr, "status_page_screenshot: wrote %s\n", SHOT_REF);
    }
    snprintf(cmd, sizeof(cmd), "python3 " SHOT_COMPARE " '%s' " SHOT_REF, shot);
    rc = run_capture(cmd, &out);
    fprintf(stderr, "status_page_screenshot: %s", out);
    cr_assert_eq(rc, 0, "the page differs from %s (set %s=1 to accept it): %s", SHOT_REF,
                 SHOT_UPDATE_ENV, out);
    free(out);
    C->passed = 1;
}

Test(ops, ds_admin_commands, .init = setup, .fini = fixture_stop, .timeout = 240)
{
    imgstore_t *h = cluster_client(C);
    uint64_t seed = cluster_seed("ops_admin");
    char names[NFILES][IMGSTORE_NAME_MAX];
    put_files(h, seed, names, NFILES, 1);
    usleep(HB_WAIT_MS * 1000);
    struct cluster_run r;

    /* servers: the new columns, and rates in the JSON */
    cr_assert_eq(admin(&r, "servers", NULL, NULL, NULL, NULL), 0, "%s", r.err);
    cr_assert_not_null(strstr(r.out, "READS/S"), "%s", r.out);
    cr_assert_not_null(strstr(r.out, "WRITES/S"));
    cluster_run_free(&r);
    fixture_admin_json(&r, CLI_TIMEOUT_MS, "servers", NULL);
    cr_assert_eq(json_at_len(r.out, ""), C->nds, "%s", r.out);
    cr_assert(!isnan(json_at_num(r.out, "[0].reads_per_s")), "%s", r.out);
    cluster_run_free(&r);

    /* status */
    fixture_admin_json(&r, CLI_TIMEOUT_MS, "status", NULL);
    cluster_run_free(&r);

    /* blocks: every filter, table and JSON */
    cr_assert_eq(admin(&r, "blocks", NULL, NULL, NULL, NULL), 0, "%s", r.err);
    cr_assert_not_null(strstr(r.out, "BLOCK"), "%s", r.out);
    cr_assert_not_null(strstr(r.out, "writable"), "%s", r.out);
    cluster_run_free(&r);
    fixture_admin_json(&r, CLI_TIMEOUT_MS, "blocks", NULL);
    double all = json_at_num(r.out, "matched");
    cr_assert_geq(all, 1, "%s", r.out);
    cr_assert_eq(json_at_num(r.out, "replication"), 2);
    cr_assert_eq(json_at_len(r.out, "blocks"), all, "%s", r.out);
    char block[32];
    snprintf(block, sizeof(block), "%.0f", json_at_num(r.out, "blocks[0].block_id"));
    /* A server that surely holds a block: a replica of the first one listed
     * (not simply the first server, which may hold none). */
    char server[80];
    json_at_str(r.out, "blocks[0].replicas[0].server", server, sizeof(server));
    cluster_run_free(&r);
    cr_assert_eq(admin(&r, "blocks", "--server", server, "--json", NULL), 0, "%s", r.err);
    check_json(r.out, "blocks --server");
    double on_server = json_at_num(r.out, "matched");
    cr_assert(on_server >= 1 && on_server <= all, "%s", r.out);
    for (int i = 0; i < (int)on_server; i++) {
        char path[160];
        snprintf(path, sizeof(path), "blocks[%d].replicas[server=%s]", i, server);
        json_t *rep = json_at(r.out, path);
        cr_assert_not_null(rep, "block %d listed for %s has no replica there: %s", i, server,
                           r.out);
        json_decref(rep);
    }
    cluster_run_free(&r);
    fixture_admin_json(&r, CLI_TIMEOUT_MS, "blocks", "--under-replicated", NULL);
    cr_assert_eq(json_at_num(r.out, "matched"), 0, "%s", r.out);
    cluster_run_free(&r);
    fixture_admin_json(&r, CLI_TIMEOUT_MS, "blocks", "--state", "sealed", NULL);
    cluster_run_free(&r);
    cr_assert_eq(admin(&r, "blocks", "--server", "no-such-server", NULL, NULL), 1);
    cluster_run_free(&r);
    cr_assert_eq(admin(&r, "blocks", "--state", "bogus", NULL, NULL), 2);
    cluster_run_free(&r);

    /* block ID */
    cr_assert_eq(admin(&r, "block", block, NULL, NULL, NULL), 0, "%s", r.err);
    cr_assert_not_null(strstr(r.out, "primary"), "%s", r.out);
    cluster_run_free(&r);
    fixture_admin_json(&r, CLI_TIMEOUT_MS, "block", block, NULL);
    cr_assert_eq(json_at_num(r.out, "up_replicas"), 2, "%s", r.out);
    cluster_run_free(&r);
    cr_assert_eq(admin(&r, "block", "281474976710000", NULL, NULL, NULL), 1);
    cluster_run_free(&r);
    cr_assert_eq(admin(&r, "block", "x", NULL, NULL, NULL), 2);
    cluster_run_free(&r);

    /* file NAME: on every replica, then deleted */
    struct imgstore_stat st;
    cr_assert_eq(imgstore_stat(h, names[0], &st), 0);
    cr_assert_eq(admin(&r, "file", names[0], NULL, NULL, NULL), 0, "%s", r.err);
    cr_assert_not_null(strstr(r.out, "on every replica: yes"), "%s", r.out);
    char crc[16];
    snprintf(crc, sizeof(crc), "%08x", st.crc32c);
    cr_assert_not_null(strstr(r.out, crc), "crc %s not in %s", crc, r.out);
    cluster_run_free(&r);
    fixture_admin_json(&r, CLI_TIMEOUT_MS, "file", names[0], NULL);
    cr_assert_eq(json_at_num(r.out, "size"), FILE_SIZE, "%s", r.out);
    cr_assert_eq(json_at_num(r.out, "block"), (double)st.block_id);
    cr_assert_eq(json_at_bool(r.out, "on_every_replica"), 1, "%s", r.out);
    cluster_run_free(&r);
    cr_assert_eq(imgstore_unlink(h, names[1]), 0);
    cr_assert_eq(admin(&r, "file", names[1], NULL, NULL, NULL), 1);
    cr_assert_not_null(strstr(r.out, "deleted"), "%s", r.out);
    cluster_run_free(&r);
    cr_assert_eq(admin(&r, "file", "not-a-name", NULL, NULL, NULL), 1);
    cluster_run_free(&r);

    /* --help per command, usage errors */
    static const char *const cmds[] = {"status", "servers", "blocks", "block", "file"};
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        cr_assert_eq(admin(&r, cmds[i], "--help", NULL, NULL, NULL), 0, "%s --help", cmds[i]);
        cr_assert_not_null(strstr(r.out, "usage: ds-admin"), "%s", r.out);
        cluster_run_free(&r);
    }
    cr_assert_eq(admin(&r, "block", NULL, NULL, NULL, NULL), 2);
    cluster_run_free(&r);
    cr_assert_eq(admin(&r, "servers", "extra", NULL, NULL, NULL), 2);
    cluster_run_free(&r);
    imgstore_close(h);
    C->passed = 1;
}
