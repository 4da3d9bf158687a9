/* Integration test: the HTTP origin (docs/http.md, issue 3). A real cluster
 * of three dataservers (two replicas per file, so every file has a server
 * that must fetch it from a replica) is driven with a small raw-socket HTTP
 * client, so pipelining, slow and oversized requests can be sent exactly as
 * a hostile or a CDN client would; a real caching proxy (varnish, when
 * installed) stands in for a CDN. The origin's metrics are checked to move
 * by exactly what was sent (http/origin_metrics). */
#include "proto/fname.h"
#include "tests/integ/cluster.h"
#include "tests/integ/fixture.h"
#include "tests/integ/json_check.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define IO_MS 5000
#define TOKEN "test-token-0123456789abcdef"
#define MAX_UPLOAD 300000
#define IDLE_MS 1500
#define HEADER_MS 800
#define NFILES 4
#define MAX_HDRS 40

static char token_path[256];
static char idle_arg[16] = "1500", header_arg[16] = "800";
static const char *ds_args[] = {"--upload-token-file", token_path, "--max-upload-bytes", "300000",
                                "--http-idle-ms", idle_arg, "--http-header-timeout-ms",
                                header_arg, NULL, NULL, NULL};

/* ---- a tiny HTTP/1.1 client ---------------------------------------------------- */

struct hc {
    int fd;
    char buf[1 << 20];
    size_t len;
};

struct resp {
    int status;
    char head[8192];
    char *names[MAX_HDRS], *vals[MAX_HDRS];
    int nhdrs;
    char *body;
    size_t body_len;
    int closed; /* the server closed the connection after it */
};

static int hc_open_ms(struct hc *h, const char *addr, int io_ms)
{
    h->len = 0;
    h->fd = cluster_connect(addr, io_ms);
    return h->fd;
}

static int hc_open(struct hc *h, const char *addr)
{
    return hc_open_ms(h, addr, IO_MS);
}

static void hc_close(struct hc *h)
{
    if (h->fd >= 0)
        close(h->fd);
    h->fd = -1;
}

static int hc_send(struct hc *h, const void *buf, size_t len)
{
    return cluster_send_all(h->fd, buf, len);
}

/* Reads more bytes into h->buf. 1, 0 at end of stream, -1 on error. */
static int hc_fill(struct hc *h)
{
    if (h->len == sizeof(h->buf))
        return -1;
    ssize_t n;
    do
        n = recv(h->fd, h->buf + h->len, sizeof(h->buf) - h->len, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -1;
    h->len += (size_t)n;
    return n > 0;
}

static void resp_free(struct resp *r)
{
    free(r->body);
    r->body = NULL;
}

static const char *hdr(const struct resp *r, const char *name)
{
    for (int i = 0; i < r->nhdrs; i++)
        if (strcasecmp(r->names[i], name) == 0)
            return r->vals[i];
    return NULL;
}

/* Reads one response; `head_req` says it answers a HEAD. 0 or -1. */
static int hc_read(struct hc *h, struct resp *r, int head_req)
{
    memset(r, 0, sizeof(*r));
    char *end;
    while (!(end = memmem(h->buf, h->len, "\r\n\r\n", 4)))
        if (hc_fill(h) <= 0)
            return -1;
    size_t hlen = (size_t)(end - h->buf) + 4;
    if (hlen >= sizeof(r->head))
        return -1;
    memcpy(r->head, h->buf, hlen);
    r->head[hlen] = '\0';
    memmove(h->buf, h->buf + hlen, h->len - hlen);
    h->len -= hlen;
    if (sscanf(r->head, "HTTP/1.1 %d", &r->status) != 1)
        return -1;
    char *save, *line = strtok_r(r->head, "\r\n", &save);
    while ((line = strtok_r(NULL, "\r\n", &save)) && r->nhdrs < MAX_HDRS) {
        char *colon = strchr(line, ':');
        if (!colon)
            return -1;
        *colon = '\0';
        char *v = colon + 1;
        while (*v == ' ')
            v++;
        r->names[r->nhdrs] = line;
        r->vals[r->nhdrs++] = v;
    }
    const char *cl = hdr(r, "Content-Length");
    size_t n = cl && !head_req && r->status != 304 && r->status != 204 ? strtoul(cl, NULL, 10) : 0;
    r->body = malloc(n + 1);
    while (h->len < n)
        if (hc_fill(h) <= 0) {
            if (h->len < n)
                return -1;
        }
    memcpy(r->body, h->buf, n);
    r->body[n] = '\0';
    r->body_len = n;
    memmove(h->buf, h->buf + n, h->len - n);
    h->len -= n;
    const char *conn = hdr(r, "Connection");
    r->closed = conn && strcasecmp(conn, "close") == 0;
    return 0;
}

/* One request on a fresh connection. */
/* Writes head, `pad` bytes of ch and tail into s (large enough); returns the
 * length. */
static int padded(char *s, const char *head, char ch, int pad, const char *tail)
{
    int n = sprintf(s, "%s", head);
    memset(s + n, ch, (size_t)pad);
    n += pad;
    return n + sprintf(s + n, "%s", tail);
}

/* One request on a fresh connection whose reads wait up to io_ms. */
static int request_ms(const char *addr, const char *req, size_t req_len, struct resp *r,
                      int io_ms)
{
    struct hc *h = malloc(sizeof(*h));
    int rc = -1;
    if (hc_open_ms(h, addr, io_ms) >= 0 && hc_send(h, req, req_len) == 0)
        rc = hc_read(h, r, strncmp(req, "HEAD ", 5) == 0);
    hc_close(h);
    free(h);
    return rc;
}

static int request(const char *addr, const char *req, size_t req_len, struct resp *r)
{
    return request_ms(addr, req, req_len, r, IO_MS);
}

/* GET on a fresh connection whose reads wait up to io_ms. */
static int get_ms(const char *addr, const char *path, const char *extra, struct resp *r,
                  int io_ms)
{
    char req[2048];
    int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: t\r\n%s\r\n", path,
                     extra ? extra : "");
    return request_ms(addr, req, (size_t)n, r, io_ms);
}

static int get(const char *addr, const char *path, const char *extra, struct resp *r)
{
    return get_ms(addr, path, extra, r, IO_MS);
}

/* Uploads data with the given Authorization line; fills name on 201. */
static int upload(const char *addr, const char *auth, const void *data, size_t len,
                  const char *ctype, struct resp *r)
{
    char head[512];
    int n = snprintf(head, sizeof(head),
                     "POST / HTTP/1.1\r\nHost: t\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s"
                     "\r\n",
                     ctype, len, auth ? auth : "");
    char *req = malloc((size_t)n + len);
    memcpy(req, head, (size_t)n);
    memcpy(req + n, data, len);
    int rc = request(addr, req, (size_t)n + len, r);
    free(req);
    return rc;
}

/* The "name" of a 201 answer's JSON body (name: 64 bytes). */
static void json_name(const struct resp *r, char *name)
{
    json_at_str(r->body, "name", name, 64);
    cr_assert(name[0], "an empty name in %s", r->body);
}

/* ---- fixtures ---------------------------------------------------------------------- */

static void setup_args(const char *extra1, const char *extra2)
{
    snprintf(token_path, sizeof(token_path), "/tmp/imgstore-http-token-%d", (int)getpid());
    cr_assert_eq(cluster_write_file(token_path, TOKEN "\n", strlen(TOKEN) + 1), 0);
    cr_assert_eq(chmod(token_path, 0600), 0, "a token file others can read is refused");
    ds_args[8] = extra1;
    ds_args[9] = extra2;
}

static void start(int nds, int replicas)
{
    struct cluster_opts o = {.ndataservers = nds, .replicas = replicas, .ds_args = ds_args};
    cr_assert_eq(fixture_start(&o), 0, "cluster did not start");
}

static void teardown(void)
{
    fixture_stop();
    unlink(token_path);
}

TestSuite(http, .fini = teardown, .timeout = 120);

/* Files uploaded over HTTP by the tests, with their bytes. */
struct file {
    char name[64];
    char *data;
    size_t len;
};

static void make_files(struct file *f, int n, uint64_t seed)
{
    for (int i = 0; i < n; i++) {
        f[i].len = 1000 + (size_t)i * 40000;
        f[i].data = malloc(f[i].len);
        cluster_fill(f[i].data, f[i].len, seed, (uint64_t)i);
        struct resp r;
        char auth[128];
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s\r\n", TOKEN);
        cr_assert_eq(upload(C->ds[i % C->nds].http_addr, auth, f[i].data, f[i].len,
                            i % 2 ? "image/png" : "image/jpeg", &r),
                     0);
        cr_assert_eq(r.status, 201, "upload %d: %d %s", i, r.status, r.body);
        json_name(&r, f[i].name);
        cr_assert(hdr(&r, "Location") && strstr(hdr(&r, "Location"), f[i].name));
        cr_assert(hdr(&r, "ETag"));
        cr_assert_eq(json_at_num(r.body, "size"), (double)f[i].len, "%s", r.body);
        resp_free(&r);
    }
}

/* ---- uploads, authentication, limits ---------------------------------------------- */

Test(http, upload_auth_and_limits)
{
    setup_args(NULL, NULL);
    start(3, 2);
    const char *a = C->ds[0].http_addr;
    struct resp r;
    char data[100] = "\x89PNG\r\n\x1a\n tiny image";

    cr_assert_eq(upload(a, NULL, data, sizeof(data), "image/png", &r), 0);
    cr_assert_eq(r.status, 401);
    cr_assert(hdr(&r, "WWW-Authenticate"));
    resp_free(&r);
    cr_assert_eq(upload(a, "Authorization: Bearer wrong\r\n", data, sizeof(data), "image/png", &r),
                 0);
    cr_assert_eq(r.status, 401, "a token that is no key");
    resp_free(&r);
    cr_assert_eq(upload(a, "Authorization: Bearer " TOKEN "x\r\n", data, sizeof(data),
                        "image/png", &r),
                 0);
    cr_assert_eq(r.status, 401);
    resp_free(&r);

    /* Past --max-upload-bytes: 413 at the headers, before the body. */
    size_t big = MAX_UPLOAD + 1;
    char *b = calloc(1, big);
    cr_assert_eq(upload(a, "Authorization: Bearer " TOKEN "\r\n", b, big, "image/png", &r), 0);
    cr_assert_eq(r.status, 413);
    resp_free(&r);
    free(b);

    /* Accepted: stored with replication, readable through the library too. */
    cr_assert_eq(upload(a, "Authorization: bearer   " TOKEN "\r\n", data, sizeof(data),
                        "image/png", &r),
                 0);
    cr_assert_eq(r.status, 201, "%s", r.body);
    char name[64];
    json_name(&r, name);
    resp_free(&r);
    imgstore_t *h = cluster_client(C);
    void *got;
    size_t got_len;
    cr_assert_eq(imgstore_get(h, name, &got, &got_len), 0);
    cr_assert_eq(got_len, sizeof(data));
    cr_assert_eq(memcmp(got, data, sizeof(data)), 0);
    imgstore_free(got);

    /* A file put with the library is served over HTTP by every server,
     * with its type (the bytes are a PNG: a claim they contradict would
     * lose, tests/integ/test_uploads.c). */
    char lname[IMGSTORE_NAME_MAX];
    cr_assert_eq(imgstore_put(h, data, 50, "image/png", lname), 0);
    for (int i = 0; i < C->nds; i++) {
        char path[80];
        snprintf(path, sizeof(path), "/%s", lname);
        cr_assert_eq(get(C->ds[i].http_addr, path, NULL, &r), 0);
        cr_assert_eq(r.status, 200);
        cr_assert_str_eq(hdr(&r, "Content-Type"), "image/png");
        cr_assert_eq(r.body_len, 50);
        resp_free(&r);
    }
    imgstore_close(h);

    /* DELETE needs the token too, then every server answers 410. */
    char req[256];
    int n = snprintf(req, sizeof(req), "DELETE /%s HTTP/1.1\r\nHost: t\r\n\r\n", name);
    cr_assert_eq(request(a, req, (size_t)n, &r), 0);
    cr_assert_eq(r.status, 401);
    resp_free(&r);
    n = snprintf(req, sizeof(req),
                 "DELETE /%s HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer " TOKEN "\r\n\r\n", name);
    cr_assert_eq(request(C->ds[2].http_addr, req, (size_t)n, &r), 0);
    cr_assert_eq(r.status, 204);
    resp_free(&r);
    for (int i = 0; i < C->nds; i++) {
        char path[80];
        snprintf(path, sizeof(path), "/%s.png", name);
        cr_assert_eq(get(C->ds[i].http_addr, path, NULL, &r), 0);
        cr_assert_eq(r.status, 410, "ds%d: %d", i + 1, r.status);
        cr_assert(strstr(hdr(&r, "Cache-Control"), "max-age="));
        resp_free(&r);
    }
    C->passed = 1;
}

/* ---- reads: every server, headers, conditionals, ranges, errors -------------------- */

static void check_full(const struct resp *r, const struct file *f, const char *ctype)
{
    cr_assert_eq(r->status, 200);
    cr_assert_eq(r->body_len, f->len);
    cr_assert_eq(memcmp(r->body, f->data, f->len), 0);
    cr_assert_str_eq(hdr(r, "Content-Type"), ctype);
    cr_assert_str_eq(hdr(r, "Cache-Control"), "public, max-age=31536000, immutable");
    cr_assert_str_eq(hdr(r, "Accept-Ranges"), "bytes");
    const char *etag = hdr(r, "ETag");
    cr_assert(etag && etag[0] == '"' && etag[strlen(etag) - 1] == '"', "strong quoted ETag");
    cr_assert(hdr(r, "Last-Modified") && strstr(hdr(r, "Last-Modified"), " GMT"));
    cr_assert_null(hdr(r, "Vary"));
    cr_assert_null(hdr(r, "Set-Cookie"));
    cr_assert_null(hdr(r, "Transfer-Encoding"));
}

Test(http, reads)
{
    setup_args(NULL, NULL);
    start(3, 2);
    struct file f[NFILES];
    make_files(f, NFILES, cluster_seed("http.reads"));
    struct resp r, r2;
    char path[128], extra[256];

    /* Every server serves every file: two hold it, the third fetches it. */
    for (int i = 0; i < C->nds; i++) {
        for (int k = 0; k < NFILES; k++) {
            snprintf(path, sizeof(path), "/%s", f[k].name);
            cr_assert_eq(get(C->ds[i].http_addr, path, NULL, &r), 0);
            check_full(&r, &f[k], k % 2 ? "image/png" : "image/jpeg");
            resp_free(&r);
        }
    }
    const char *a = C->ds[0].http_addr;
    snprintf(path, sizeof(path), "/%s.webp", f[1].name);
    cr_assert_eq(get(a, path, NULL, &r), 0);
    check_full(&r, &f[1], "image/png"); /* the stored type wins over the extension */
    char etag[64], lastmod[64];
    snprintf(etag, sizeof(etag), "%s", hdr(&r, "ETag"));
    snprintf(lastmod, sizeof(lastmod), "%s", hdr(&r, "Last-Modified"));
    resp_free(&r);

    /* HEAD: the GET headers, no body. */
    char req[512];
    int n = snprintf(req, sizeof(req), "HEAD %s HTTP/1.1\r\nHost: t\r\n\r\n", path);
    cr_assert_eq(request(C->ds[2].http_addr, req, (size_t)n, &r), 0);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(strtoul(hdr(&r, "Content-Length"), NULL, 10), f[1].len);
    cr_assert_str_eq(hdr(&r, "ETag"), etag);
    resp_free(&r);

    /* If-None-Match: exact, in a list, weak, star; 304 keeps the validators. */
    const char *inm[] = {"%s", "\"nope\", %s", "W/%s", "*"};
    for (size_t i = 0; i < 4; i++) {
        char v[128];
        snprintf(v, sizeof(v), inm[i], etag);
        snprintf(extra, sizeof(extra), "If-None-Match: %s\r\n", v);
        cr_assert_eq(get(a, path, extra, &r), 0);
        cr_assert_eq(r.status, 304, "If-None-Match: %s", v);
        cr_assert_eq(r.body_len, 0);
        cr_assert_str_eq(hdr(&r, "ETag"), etag);
        cr_assert_str_eq(hdr(&r, "Last-Modified"), lastmod);
        cr_assert_str_eq(hdr(&r, "Cache-Control"), "public, max-age=31536000, immutable");
        resp_free(&r);
    }
    /* A non-matching If-None-Match wins over a matching If-Modified-Since. */
    snprintf(extra, sizeof(extra), "If-None-Match: \"other\"\r\nIf-Modified-Since: %s\r\n",
             lastmod);
    cr_assert_eq(get(a, path, extra, &r), 0);
    cr_assert_eq(r.status, 200);
    resp_free(&r);
    snprintf(extra, sizeof(extra), "If-Modified-Since: %s\r\n", lastmod);
    cr_assert_eq(get(a, path, extra, &r), 0);
    cr_assert_eq(r.status, 304);
    resp_free(&r);
    cr_assert_eq(get(a, path, "If-Modified-Since: Sat, 01 Jan 2000 00:00:00 GMT\r\n", &r), 0);
    cr_assert_eq(r.status, 200);
    resp_free(&r);

    /* Ranges. */
    size_t len = f[1].len;
    cr_assert_eq(get(a, path, "Range: bytes=10-19\r\n", &r), 0);
    cr_assert_eq(r.status, 206);
    cr_assert_eq(r.body_len, 10);
    cr_assert_eq(memcmp(r.body, f[1].data + 10, 10), 0);
    char cr[64];
    snprintf(cr, sizeof(cr), "bytes 10-19/%zu", len);
    cr_assert_str_eq(hdr(&r, "Content-Range"), cr);
    resp_free(&r);
    cr_assert_eq(get(C->ds[1].http_addr, path, "Range: bytes=-7\r\n", &r), 0);
    cr_assert_eq(r.status, 206);
    cr_assert_eq(r.body_len, 7);
    cr_assert_eq(memcmp(r.body, f[1].data + len - 7, 7), 0);
    resp_free(&r);
    cr_assert_eq(get(a, path, "Range: bytes=100-\r\n", &r), 0);
    cr_assert_eq(r.status, 206);
    cr_assert_eq(r.body_len, len - 100);
    resp_free(&r);
    snprintf(extra, sizeof(extra), "Range: bytes=%zu-\r\n", len);
    cr_assert_eq(get(a, path, extra, &r), 0);
    cr_assert_eq(r.status, 416);
    snprintf(cr, sizeof(cr), "bytes */%zu", len);
    cr_assert_str_eq(hdr(&r, "Content-Range"), cr);
    resp_free(&r);
    cr_assert_eq(get(a, path, "Range: bytes=0-1,5-9\r\n", &r), 0);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.body_len, len);
    resp_free(&r);
    cr_assert_eq(get(a, path, "Range: bytes=0-1\r\nIf-Range: \"stale\"\r\n", &r), 0);
    cr_assert_eq(r.status, 200);
    resp_free(&r);

    /* Unknown name and wrong cookie read alike (404, same answer);
     * malformed name 400; other methods 405 with Allow. */
    struct fname fn;
    cr_assert_eq(fname_decode(f[0].name, strlen(f[0].name), &fn, NULL, NULL), 0);
    fn.cookie ^= 0x5a5a;
    char wrong[FNAME_LEN + 2] = "/";
    cr_assert_eq(fname_encode(&fn, wrong + 1), 0);
    fn.block_id = FNAME_MAX_BLOCK_ID - 7;
    char unknown[FNAME_LEN + 2] = "/";
    cr_assert_eq(fname_encode(&fn, unknown + 1), 0);
    for (int i = 0; i < C->nds; i++) {
        cr_assert_eq(get(C->ds[i].http_addr, wrong, NULL, &r), 0);
        cr_assert_eq(get(C->ds[i].http_addr, unknown, NULL, &r2), 0);
        cr_assert_eq(r.status, 404, "wrong cookie on ds%d: %d", i + 1, r.status);
        cr_assert_eq(r2.status, 404);
        cr_assert_str_eq(r.body, r2.body);
        cr_assert_str_eq(hdr(&r, "Cache-Control"), hdr(&r2, "Cache-Control"));
        cr_assert_eq(r.nhdrs, r2.nhdrs);
        resp_free(&r);
        resp_free(&r2);
    }
    cr_assert_eq(get(a, "/healthz", NULL, &r), 0);
    cr_assert_eq(r.status, 200);
    resp_free(&r);
    cr_assert_eq(get(a, "/not-a-name", NULL, &r), 0);
    cr_assert_eq(r.status, 400);
    cr_assert(strstr(hdr(&r, "Cache-Control"), "max-age="));
    resp_free(&r);
    n = snprintf(req, sizeof(req), "PATCH /%s HTTP/1.1\r\nHost: t\r\n\r\n", f[0].name);
    cr_assert_eq(request(a, req, (size_t)n, &r), 0);
    cr_assert_eq(r.status, 405);
    cr_assert_str_eq(hdr(&r, "Allow"), "GET, HEAD, DELETE");
    resp_free(&r);
    for (int k = 0; k < NFILES; k++)
        free(f[k].data);
    C->passed = 1;
}

/* ---- origin metrics ------------------------------------------------------------------ */

/* Sends `req` (which asks Connection: close) on a fresh connection and reads
 * until the server closes it. Returns the status code; adds every byte
 * received to *bytes; with `all`, keeps them (NUL-terminated, caller frees). */
static int exchange(const char *addr, const char *req, size_t len, uint64_t *bytes, char **all)
{
    int fd = cluster_connect(addr, IO_MS);
    cr_assert_geq(fd, 0, "connect %s", addr);
    cr_assert_eq(cluster_send_all(fd, req, len), 0);
    size_t n = 0, cap = 65536;
    char *buf = malloc(cap);
    for (;;) {
        if (n + 1 >= cap)
            buf = realloc(buf, cap *= 2);
        ssize_t got = recv(fd, buf + n, cap - n - 1, 0);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        n += (size_t)got;
    }
    close(fd);
    buf[n] = '\0';
    int status = 0;
    cr_assert_eq(sscanf(buf, "HTTP/1.1 %d", &status), 1, "%s: no status line", addr);
    *bytes += n;
    if (all)
        *all = buf;
    else
        free(buf);
    return status;
}

/* `METHOD path` with Connection: close and `extra` header lines. */
static int exchange_m(const char *addr, const char *method, const char *path, const char *extra,
                      uint64_t *bytes)
{
    char req[1024];
    int n = snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n%s\r\n",
                     method, path, extra ? extra : "");
    return exchange(addr, req, (size_t)n, bytes, NULL);
}

/* The whole /metrics answer of addr (its bytes added to *bytes). */
static char *scrape(const char *addr, uint64_t *bytes)
{
    char *all;
    const char *req = "GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    cr_assert_eq(exchange(addr, req, strlen(req), bytes, &all), 200);
    return all;
}

/* The value of `series` (name and exact label text) in a scrape; 0 when
 * absent (series of codes never answered are not listed). */
static double series(const char *text, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = text; (p = strstr(p, name)); p += n)
        if (p > text && p[-1] == '\n' && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    return 0;
}

#define HTTP_ETAG_TEXT 512
#define HREQ(method, code) "imgstore_ds_http_requests_total{method=\"" method "\",code=\"" code "\"}"
#define HCOUNT(method) "imgstore_ds_http_request_duration_seconds_count{method=\"" method "\"}"
#define HINF(method) \
    "imgstore_ds_http_request_duration_seconds_bucket{method=\"" method "\",le=\"+Inf\"}"
#define FROM(src) "imgstore_ds_http_file_answers_total{source=\"" src "\"}"

/* Every answer of the origin moves its series by exactly what was sent:
 * requests by method and code, the latency histogram's counts, the bytes
 * the client received, 304s, and where each file came from (two of the
 * three servers hold each file; the third fetches it from a replica). */
Test(http, origin_metrics)
{
    setup_args(NULL, NULL);
    start(3, 2);
    struct file f[NFILES];
    make_files(f, NFILES, cluster_seed("http.origin_metrics"));
    char etag[NFILES][HTTP_ETAG_TEXT], path[HTTP_ETAG_TEXT], extra[2 * HTTP_ETAG_TEXT];
    struct resp r;
    for (int k = 0; k < NFILES; k++) {
        snprintf(path, sizeof(path), "/%s", f[k].name);
        cr_assert_eq(get(C->ds[0].http_addr, path, NULL, &r), 0);
        cr_assert_eq(r.status, 200);
        snprintf(etag[k], sizeof(etag[k]), "%.400s", hdr(&r, "ETag"));
        resp_free(&r);
    }
    struct fname fn;
    cr_assert_eq(fname_decode(f[0].name, strlen(f[0].name), &fn, NULL, NULL), 0);
    fn.block_id = FNAME_MAX_BLOCK_ID - 7;
    char unknown[FNAME_LEN + 2] = "/";
    cr_assert_eq(fname_encode(&fn, unknown + 1), 0);

    double local = 0, replica = 0;
    for (int i = 0; i < C->nds; i++) {
        const char *a = C->ds[i].http_addr;
        uint64_t sent = 0, scraped = 0, ignored = 0;
        char *m0 = scrape(a, &scraped);
        for (int k = 0; k < NFILES; k++) {
            snprintf(path, sizeof(path), "/%s", f[k].name);
            cr_assert_eq(exchange_m(a, "GET", path, NULL, &sent), 200);
            cr_assert_eq(exchange_m(a, "HEAD", path, NULL, &sent), 200);
            snprintf(extra, sizeof(extra), "If-None-Match: %.400s\r\n", etag[k]);
            cr_assert_eq(exchange_m(a, "GET", path, extra, &sent), 304);
        }
        cr_assert_eq(exchange_m(a, "GET", unknown, NULL, &sent), 404);
        cr_assert_eq(exchange_m(a, "GET", "/not-a-name", NULL, &sent), 400);
        snprintf(path, sizeof(path), "/%s", f[0].name);
        cr_assert_eq(exchange_m(a, "PATCH", path, NULL, &sent), 405);
        cr_assert_eq(exchange_m(a, "DELETE", path, NULL, &sent), 401);
        char *m1 = scrape(a, &ignored);
#define D(name) (series(m1, name) - series(m0, name))
        const char *who = C->ds[i].name;
        /* the first scrape (a GET 200) is counted too; the second is not yet */
        cr_assert_eq(D(HREQ("GET", "200")), NFILES + 1, "%s", who);
        cr_assert_eq(D(HREQ("HEAD", "200")), NFILES, "%s", who);
        cr_assert_eq(D(HREQ("GET", "304")), NFILES, "%s", who);
        cr_assert_eq(D(HREQ("GET", "404")), 1, "%s", who);
        cr_assert_eq(D(HREQ("GET", "400")), 1, "%s", who);
        cr_assert_eq(D(HREQ("OTHER", "405")), 1, "%s", who);
        cr_assert_eq(D(HREQ("DELETE", "401")), 1, "%s", who);
        cr_assert_eq(D("imgstore_ds_http_not_modified_total"), NFILES, "%s", who);
        cr_assert_eq(D("imgstore_ds_http_misses_total"), 1, "%s", who);
        cr_assert_eq(D("imgstore_ds_http_sent_bytes_total"), (double)(sent + scraped),
                     "%s: bytes the clients received", who);
        cr_assert_eq(D(HCOUNT("GET")), 2 * NFILES + 3, "%s", who);
        cr_assert_eq(D(HINF("GET")), 2 * NFILES + 3, "%s", who);
        cr_assert_eq(D(HCOUNT("HEAD")), NFILES, "%s", who);
        cr_assert_eq(D(HCOUNT("OTHER")), 1, "%s", who);
        cr_assert_eq(D(HCOUNT("DELETE")), 1, "%s", who);
        cr_assert_eq(D(FROM("local")) + D(FROM("replica")), 3 * NFILES, "%s", who);
        local += D(FROM("local"));
        replica += D(FROM("replica"));
#undef D
        free(m0);
        free(m1);
    }
    /* each file (GET, HEAD, 304) from a replica on the one server without it */
    cr_assert_eq(replica, 3 * NFILES);
    cr_assert_eq(local, 6 * NFILES);
    for (int k = 0; k < NFILES; k++)
        free(f[k].data);
    C->passed = 1;
}

/* A record whose cookie bytes were flipped on one replica: records are
 * written in format 2 (every header field under a CRC-16, docs/storage.md),
 * so that copy reads as damaged, not as a missing file. Every origin and the
 * library still serve the file from the other replica; with that replica
 * down there is nothing to serve it: 503 after the rounds, never a 404 a
 * cache would keep (docs/http.md, read path 4). */
Test(http, damaged_header_on_one_replica)
{
    setup_args(NULL, NULL);
    start(3, 2);
    struct file f[2];
    make_files(f, 2, cluster_seed("http.damaged_header"));
    struct imgstore_stat st;
    int bad = fixture_damage_record(f[1].name, 8 /* the cookie's first byte */, 0x01, &st);
    char blk[700];
    cluster_block_path(C, bad, st.block_id, blk, sizeof(blk));
    uint8_t *bytes = NULL;
    size_t nbytes = 0;
    cr_assert_eq(cluster_read_file(blk, (void **)&bytes, &nbytes), 0);
    cr_assert_gt(nbytes, st.offset + 2);
    cr_assert_eq(bytes[st.offset + 2] & 0x02, 0x02, "the record is in format 2 (flags bit 1)");
    free(bytes);
    char path[128];
    snprintf(path, sizeof(path), "/%s", f[1].name);
    struct resp r;
    for (int i = 0; i < C->nds; i++) {
        cr_assert_eq(get(C->ds[i].http_addr, path, NULL, &r), 0);
        cr_assert_eq(r.status, 200, "ds%d (damaged copy on ds%d): %d %s", i + 1, bad + 1,
                     r.status, r.body);
        check_full(&r, &f[1], "image/png");
        resp_free(&r);
    }
    /* The library reads it too, whichever replica it asks first. */
    imgstore_t *h = cluster_client(C);
    cr_assert_not_null(h);
    for (int k = 0; k < 10; k++) {
        void *data = NULL;
        size_t len = 0;
        cr_assert_eq(imgstore_get(h, f[1].name, &data, &len), 0, "library read %d", k);
        cr_assert(len == f[1].len && memcmp(data, f[1].data, len) == 0);
        imgstore_free(data);
    }
    imgstore_close(h);
    /* With the good replica down only the damaged copy is left: 503 once
     * the rounds ran out (not a 404: the file exists), not cacheable. */
    int good = cluster_ds_index(C, st.replicas[0]);
    cr_assert_geq(good, 0);
    cluster_signal_proc(&C->ds[good], SIGKILL);
    int64_t t0 = cluster_now_ms();
    cr_assert_eq(get_ms(C->ds[bad].http_addr, path, NULL, &r, 20000), 0);
    cr_assert_eq(r.status, 503, "%d %s", r.status, r.body);
    cr_assert_str_eq(hdr(&r, "Cache-Control"), "no-store");
    cr_assert_geq(cluster_now_ms() - t0, 4000, "the origin went round until its deadline");
    resp_free(&r);
    for (int i = 0; i < 2; i++)
        free(f[i].data);
    C->passed = 1;
}

/* ---- connections: keep-alive, pipelining, limits, timeouts ----------------------- */

Test(http, pipelining_limits_timeouts)
{
    setup_args(NULL, NULL);
    start(3, 2);
    struct file f[NFILES];
    make_files(f, NFILES, cluster_seed("http.pipelining"));
    struct resp r;
    struct hc *h = malloc(sizeof(*h));

    /* Pipelined on every server (so some answers are fetched from a replica
     * and finish after later, local or trivial ones): answers in order. */
    for (int d = 0; d < C->nds; d++) {
        cr_assert(hc_open(h, C->ds[d].http_addr) >= 0);
        char req[8192];
        size_t n = 0;
        int kinds[12];
        for (int i = 0; i < 12; i++) {
            kinds[i] = i % 4;
            const char *nm = f[i % NFILES].name;
            if (kinds[i] == 0 || kinds[i] == 1)
                n += (size_t)sprintf(req + n, "GET /%s HTTP/1.1\r\nHost: t\r\n\r\n", nm);
            else if (kinds[i] == 2)
                n += (size_t)sprintf(req + n, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
            else
                n += (size_t)sprintf(req + n, "HEAD /%s HTTP/1.1\r\nHost: t\r\n\r\n", nm);
        }
        cr_assert_eq(hc_send(h, req, n), 0);
        for (int i = 0; i < 12; i++) {
            cr_assert_eq(hc_read(h, &r, kinds[i] == 3), 0, "answer %d on ds%d", i, d + 1);
            cr_assert_eq(r.status, 200);
            if (kinds[i] <= 1) {
                cr_assert_eq(r.body_len, f[i % NFILES].len, "answer %d out of order", i);
                cr_assert_eq(memcmp(r.body, f[i % NFILES].data, r.body_len), 0);
            } else if (kinds[i] == 2) {
                cr_assert_str_eq(r.body, "ok\n");
            } else {
                cr_assert_eq(strtoul(hdr(&r, "Content-Length"), NULL, 10), f[i % NFILES].len);
            }
            resp_free(&r);
        }
        hc_close(h);
    }

    const char *a = C->ds[0].http_addr;
    /* Oversized request target and header block. */
    size_t big = 20000;
    char *s = malloc(big + 200);
    int n = padded(s, "GET /", 'a', 5000, " HTTP/1.1\r\nHost: t\r\n\r\n");
    cr_assert_eq(request(a, s, (size_t)n, &r), 0);
    cr_assert_eq(r.status, 414);
    resp_free(&r);
    n = padded(s, "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: ", 'b', 12000, "\r\n\r\n");
    cr_assert_eq(request(a, s, (size_t)n, &r), 0);
    cr_assert_eq(r.status, 431);
    resp_free(&r);
    free(s);
    cr_assert_eq(request(a, "BREW / HTCPCP/1.0\r\n\r\n", 21, &r), 0);
    cr_assert_eq(r.status, 400);
    resp_free(&r);

    /* A slow client trickling its header is cut off after the header
     * timeout (408 and close), long before the idle timeout would. */
    cr_assert(hc_open(h, a) >= 0);
    int64_t t0 = cluster_now_ms();
    cr_assert_eq(hc_send(h, "GET /healthz HTTP/1.1\r\n", 23), 0);
    int cut = 0;
    for (int i = 0; i < 40 && !cut; i++) {
        usleep(100 * 1000);
        if (hc_send(h, "X: y\r\n", 6) != 0)
            cut = 1;
        struct timeval tv = {0, 1000};
        setsockopt(h->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        if (hc_fill(h) == 0 || (h->len > 0 && memmem(h->buf, h->len, "\r\n\r\n", 4)))
            cut = 1;
    }
    int64_t took = cluster_now_ms() - t0;
    cr_assert(cut, "slow client not cut off");
    cr_assert(took < HEADER_MS + 1000, "cut off after %lld ms", (long long)took);
    if (h->len > 0)
        cr_assert(strncmp(h->buf, "HTTP/1.1 408", 12) == 0, "%.40s", h->buf);
    hc_close(h);

    /* Keep-alive: several requests on one connection; closed when idle. */
    cr_assert(hc_open(h, a) >= 0);
    for (int i = 0; i < 3; i++) {
        char req[256];
        n = snprintf(req, sizeof(req), "GET /%s HTTP/1.1\r\nHost: t\r\n\r\n", f[i].name);
        cr_assert_eq(hc_send(h, req, (size_t)n), 0);
        cr_assert_eq(hc_read(h, &r, 0), 0);
        cr_assert_eq(r.status, 200);
        cr_assert_eq(r.closed, 0);
        resp_free(&r);
    }
    t0 = cluster_now_ms();
    struct timeval tv = {.tv_sec = 5};
    setsockopt(h->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    cr_assert_eq(hc_fill(h), 0, "idle connection not closed");
    took = cluster_now_ms() - t0;
    cr_assert(took >= IDLE_MS - 300 && took < IDLE_MS + 1500, "idle close after %lld ms",
              (long long)took);
    hc_close(h);
    free(h);
    for (int i = 0; i < C->nds; i++)
        cr_assert(cluster_alive(&C->ds[i]));
    for (int k = 0; k < NFILES; k++)
        free(f[k].data);
    C->passed = 1;
}

/* ---- overload: a bounded number of requests in flight ----------------------------- */

Test(http, overload_503)
{
    setup_args("--max-inflight", "1");
    start(1, 1);
    struct file f[2];
    make_files(f, 2, cluster_seed("http.overload"));
    struct hc *h = malloc(sizeof(*h));
    struct resp r;
    cr_assert(hc_open(h, C->ds[0].http_addr) >= 0);
    char req[1024];
    int n = 0;
    for (int i = 0; i < 4; i++)
        n += sprintf(req + n, "GET /%s HTTP/1.1\r\nHost: t\r\n\r\n", f[1].name);
    cr_assert_eq(hc_send(h, req, (size_t)n), 0);
    int ok = 0, busy = 0;
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(hc_read(h, &r, 0), 0);
        if (r.status == 200) {
            ok++;
            cr_assert_eq(r.body_len, f[1].len);
        } else {
            cr_assert_eq(r.status, 503);
            cr_assert_str_eq(hdr(&r, "Retry-After"), "1");
            cr_assert_str_eq(hdr(&r, "Cache-Control"), "no-store");
            busy++;
        }
        resp_free(&r);
    }
    cr_assert(ok >= 1 && busy >= 1, "ok %d busy %d", ok, busy);
    hc_close(h);
    /* The slot is released: a later request is served. */
    char path[80];
    snprintf(path, sizeof(path), "/%s", f[0].name);
    cr_assert_eq(get(C->ds[0].http_addr, path, NULL, &r), 0);
    cr_assert_eq(r.status, 200);
    resp_free(&r);
    free(h);
    for (int k = 0; k < 2; k++)
        free(f[k].data);
    C->passed = 1;
}

/* ---- through a real caching proxy (varnish) --------------------------------------- */


Test(http, through_caching_proxy)
{
    if (system("command -v varnishd >/dev/null 2>&1") != 0) {
        cr_log_warn("varnishd is not installed: skipping the caching-proxy test");
        return;
    }
    setup_args(NULL, NULL);
    start(2, 2);
    struct file f[1];
    make_files(f, 1, cluster_seed("http.proxy"));
    char listen[64];
    const char *origin = C->ds[0].http_addr;
    pid_t vp = cluster_varnish_start(C->dir, strrchr(origin, ':') + 1, NULL, listen,
                                     sizeof(listen));
    cr_assert(vp > 0);
    struct resp r;
    char path[80];
    snprintf(path, sizeof(path), "/%s", f[0].name);
    int up = 0;
    for (int i = 0; i < 100 && !up; i++) {
        if (get(listen, "/healthz", NULL, &r) == 0) {
            up = r.status == 200;
            resp_free(&r);
        }
        if (!up)
            usleep(100 * 1000);
    }
    if (!up) {
        kill(vp, SIGKILL);
        waitpid(vp, NULL, 0);
        char logp[400];
        snprintf(logp, sizeof(logp), "%s/log/varnish.log", C->dir);
        void *vlog = NULL;
        size_t vlen = 0;
        cluster_read_file(logp, &vlog, &vlen);
        const char *tail = vlog ? (const char *)vlog + (vlen > 2000 ? vlen - 2000 : 0) : "(none)";
        cr_assert_fail("varnish did not start; the end of its output:\n%.*s",
                       vlog ? (int)(vlen > 2000 ? 2000 : vlen) : 6, tail);
    }
    cr_assert_eq(get(listen, path, NULL, &r), 0);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.body_len, f[0].len);
    cr_assert_str_eq(hdr(&r, "X-Cache"), "MISS");
    resp_free(&r);
    cr_assert_eq(get(listen, path, NULL, &r), 0);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(hdr(&r, "X-Cache"), "HIT", "second request not served from the cache");
    cr_assert_eq(memcmp(r.body, f[0].data, f[0].len), 0);
    resp_free(&r);
    usleep(1600 * 1000); /* past the proxy's TTL: it must revalidate */
    cr_assert_eq(get(listen, path, NULL, &r), 0);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(hdr(&r, "X-Was-304"), "true", "revalidation not answered 304");
    cr_assert_eq(r.body_len, f[0].len);
    cr_assert_eq(memcmp(r.body, f[0].data, f[0].len), 0);
    resp_free(&r);
    kill(vp, SIGTERM);
    waitpid(vp, NULL, 0);
    free(f[0].data);
    C->passed = 1;
}
