/* Integration test: bounded resources per connection and HTTP by the letter
 * of RFC 9112 (docs/protocol.md and docs/http.md, "Limits"; issue 14). Each
 * test starts a small cluster whose dataservers get short timeouts or low
 * caps by flag, then plays the hostile client on loopback with raw sockets:
 * stalled and half-sent native frames, stalled 64 MiB uploads (the
 * dataserver's VmRSS is read from /proc), CRLF trickles, requests without
 * or with two Host lines, HTTP/2.0, absolute-form targets, too many
 * connections from one address and a fast 404 guesser. */
#include "proto/fname.h"
#include "proto/frame.h"
#include "base/err.h"
#include "tests/integ/cluster.h"
#include "tests/integ/fixture.h"

#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define IO_MS 5000

static struct cluster *cl;

static void teardown(void)
{
    cluster_stop(cl);
    cl = NULL;
}

TestSuite(limits, .fini = teardown, .timeout = 180);

/* Starts a cluster of `nds` dataservers (one replica each file when 1)
 * with `args` on every dataserver. */
static void start(int nds, const char *const *args, int ns_http)
{
    struct cluster_opts o = {.ndataservers = nds, .replicas = nds > 1 ? 2 : 1,
                             .ds_args = args, .ns_http = ns_http};
    cr_assert_eq(cluster_start(&o, &cl), 0);
}

/* ---- raw sockets ----------------------------------------------------------- */

/* A blocking TCP connection to addr from source address `src` (NULL: any),
 * with send and receive timeouts of io_ms. */
static int connect_from(const char *src, const char *addr, int io_ms)
{
    if (!src)
        return cluster_connect(addr, io_ms);
    char host[64];
    const char *colon = strrchr(addr, ':');
    snprintf(host, sizeof(host), "%.*s", (int)(colon - addr), addr);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    struct sockaddr_in me = {.sin_family = AF_INET};
    inet_pton(AF_INET, host, &sa.sin_addr);
    inet_pton(AF_INET, src, &me.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct timeval tv = {.tv_sec = io_ms / 1000, .tv_usec = (io_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (bind(fd, (struct sockaddr *)&me, sizeof(me)) != 0 ||
        connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

#define send_all cluster_send_all

/* Waits up to ms for the server to close fd (reading and dropping what it
 * sends). Returns the milliseconds it took, or -1 when it stayed open. */
static int64_t wait_closed(int fd, int ms)
{
    int64_t t0 = cluster_now_ms();
    char buf[4096];
    for (;;) {
        int64_t left = t0 + ms - cluster_now_ms();
        if (left <= 0)
            return -1;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, (int)left) <= 0)
            continue;
        ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            return cluster_now_ms() - t0;
    }
}

/* Sends a native frame header announcing head_len and body_len bytes. */
static int send_frame_head(int fd, unsigned type, uint64_t id, uint32_t head_len,
                           uint32_t body_len)
{
    struct frame_header h = {.version = FRAME_VERSION, .type = (uint8_t)type, .request_id = id,
                             .head_len = head_len, .body_len = body_len};
    uint8_t b[FRAME_HEADER_SIZE];
    frame_encode(&h, b);
    return send_all(fd, b, sizeof(b));
}

/* Sends a native frame header (type, id, head_len 0, body_len). */
static int send_frame_header(int fd, unsigned type, uint64_t id, uint32_t body_len)
{
    return send_frame_head(fd, type, id, 0, body_len);
}

/* Reads one native response frame header (its head and body are read and
 * dropped) within the socket's timeout. Returns 0 with *h, or -1. */
static int read_frame(int fd, struct frame_header *h)
{
    uint8_t b[FRAME_HEADER_SIZE];
    size_t got = 0;
    while (got < sizeof(b)) {
        ssize_t n = recv(fd, b + got, sizeof(b) - got, 0);
        if (n <= 0)
            return -1;
        got += (size_t)n;
    }
    if (frame_decode(b, h) != 0)
        return -1;
    size_t rest = (size_t)h->head_len + h->body_len;
    char tmp[4096];
    while (rest > 0) {
        ssize_t n = recv(fd, tmp, rest < sizeof(tmp) ? rest : sizeof(tmp), 0);
        if (n <= 0)
            return -1;
        rest -= (size_t)n;
    }
    return 0;
}

/* ---- /proc figures --------------------------------------------------------- */

static long proc_fds(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    long n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* VmRSS of pid in KiB, -1 when unreadable. */
static long proc_rss_kib(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long kib = -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

/* ---- a tiny HTTP client ---------------------------------------------------- */

/* Reads one HTTP response on fd: returns its status (0 on failure) and
 * copies its head into head (hlen bytes) when not NULL. The body (by
 * Content-Length) is read and dropped. */
static int http_read(int fd, char *head, size_t hlen, int head_req)
{
    static char buf[1 << 16];
    size_t len = 0;
    char *end;
    while (!(end = memmem(buf, len, "\r\n\r\n", 4))) {
        if (len == sizeof(buf))
            return 0;
        ssize_t n = recv(fd, buf + len, sizeof(buf) - len, 0);
        if (n <= 0)
            return 0;
        len += (size_t)n;
    }
    size_t hl = (size_t)(end - buf) + 4;
    int status = 0;
    if (sscanf(buf, "HTTP/1.1 %d", &status) != 1)
        return 0;
    if (head)
        snprintf(head, hlen, "%.*s", (int)hl, buf);
    size_t body = 0;
    char *cl = strcasestr(buf, "\r\nContent-Length:");
    if (cl && cl < end && !head_req)
        body = strtoul(cl + 17, NULL, 10);
    size_t have = len - hl;
    while (have < body) { /* responses here are small; the rest is read */
        char tmp[4096];
        ssize_t n = recv(fd, tmp, sizeof(tmp), 0);
        if (n <= 0)
            return 0;
        have += (size_t)n;
    }
    return status;
}

/* One raw request on a fresh connection; returns the status (0: none). */
static int http_once(const char *addr, const char *req, char *head, size_t hlen)
{
    int fd = cluster_connect(addr, IO_MS);
    if (fd < 0)
        return 0;
    int st = send_all(fd, req, strlen(req)) == 0 ? http_read(fd, head, hlen, 0) : 0;
    close(fd);
    return st;
}

/* Uploads one file of len bytes through the library; its name in name. */
static void put_file(size_t len, char name[IMGSTORE_NAME_MAX])
{
    cr_assert_eq(cluster_put_sample(cl, len, name), 0);
}

/* ---- native port ----------------------------------------------------------- */

static const char *const native_args[] = {"--frame-timeout-ms", "1000", "--idle-timeout-ms",
                                          "3000", NULL};

Test(limits, native_stalled_frame_and_idle)
{
    start(1, native_args, 0);
    const char *addr = cl->ds[0].addr;
    /* A frame header announcing 100 body bytes, 10 of them, then nothing:
     * closed 1 s (+ 100 bytes at 256 KiB/s) after its first byte. */
    int fd = cluster_connect(addr, IO_MS);
    cr_assert_geq(fd, 0);
    cr_assert_eq(send_frame_header(fd, FT_STAT, 1, 100), 0);
    cr_assert_eq(send_all(fd, "0123456789", 10), 0);
    int64_t ms = wait_closed(fd, 5000);
    close(fd);
    cr_assert(ms >= 800 && ms <= 2500, "stalled frame closed after %lld ms (want ~1000)",
              (long long)ms);

    /* A connection that answered a request and then says nothing: kept
     * past the frame timeout, closed by the idle timeout (3 s). */
    fd = cluster_connect(addr, IO_MS);
    cr_assert_geq(fd, 0);
    cr_assert_eq(send_frame_header(fd, FT_STAT, 2, 0), 0);
    struct frame_header h;
    cr_assert_eq(read_frame(fd, &h), 0, "no answer to an empty STAT");
    cr_assert_eq(h.request_id, 2);
    ms = wait_closed(fd, 6000);
    close(fd);
    cr_assert(ms >= 2500 && ms <= 4500, "idle connection closed after %lld ms (want ~3000)",
              (long long)ms);
    cr_assert_geq(cluster_metric(cl->ds[0].http_addr, "imgstore_conns_timeout_total{port=\"native\"}"),
                  1);
    cr_assert_geq(
        cluster_metric(cl->ds[0].http_addr, "imgstore_conns_idle_closed_total{port=\"native\"}"), 1);
    cl->passed = 1;
}

static const char *const ns_native_args[] = {"--frame-timeout-ms", "1000", "--max-conns-per-addr",
                                             "40", NULL};

Test(limits, nameserver_native_port)
{
    struct cluster_opts o = {.ndataservers = 1, .replicas = 1, .ns_args = ns_native_args,
                             .ns_http = 1};
    cr_assert_eq(cluster_start(&o, &cl), 0);
    const char *addr = cl->ns.addr;
    /* A half-sent frame (a head of 100 bytes announced, 10 sent): closed
     * after about 1 s. */
    int fd = cluster_connect(addr, IO_MS);
    cr_assert_geq(fd, 0);
    cr_assert_eq(send_frame_head(fd, FT_LOOKUP, 1, 100, 0), 0);
    cr_assert_eq(send_all(fd, "0123456789", 10), 0);
    int64_t ms = wait_closed(fd, 5000);
    close(fd);
    cr_assert(ms >= 800 && ms <= 2500, "closed after %lld ms (want ~1000)", (long long)ms);
    /* A request with a body (none has one): refused at its header, before
     * the 8 MiB that follow, which are dropped; the connection serves on. */
    fd = cluster_connect(addr, IO_MS);
    cr_assert_geq(fd, 0);
    cr_assert_eq(send_frame_header(fd, FT_LOOKUP, 2, 8u << 20), 0);
    struct frame_header h;
    cr_assert_eq(read_frame(fd, &h), 0, "no answer before the body");
    cr_assert_eq(h.status, IMG_EPROTO);
    char *junk = calloc(1, 8u << 20);
    cr_assert_eq(send_all(fd, junk, 8u << 20), 0);
    free(junk);
    cr_assert_eq(send_frame_header(fd, FT_CLUSTER_STATUS, 3, 0), 0);
    cr_assert_eq(read_frame(fd, &h), 0);
    cr_assert_eq(h.request_id, 3);
    cr_assert_eq(h.status, 0);
    close(fd);
    /* 40 connections from this address at most; the cluster's own
     * dataserver session is one of them. */
    static int fds[40];
    int open = 0, refused = 0;
    for (int i = 0; i < 40; i++) {
        fds[i] = cluster_connect(addr, IO_MS);
        cr_assert_geq(fds[i], 0);
    }
    usleep(300 * 1000);
    for (int i = 0; i < 40; i++) {
        struct pollfd p = {.fd = fds[i], .events = POLLIN};
        char b;
        if (poll(&p, 1, 0) == 1 && recv(fds[i], &b, 1, MSG_DONTWAIT) == 0)
            refused++;
        else
            open++;
        close(fds[i]);
    }
    cr_assert(refused >= 1 && open >= 38, "%d open, %d refused", open, refused);
    cr_assert_geq(cluster_metric(cl->ns.http_addr,
                                 "imgstore_conns_refused_total{port=\"native\",reason=\"addr_full\"}"),
                  1);
    /* The dataserver's session was never cut meanwhile. */
    Imgstore__ClusterStatusResp *st = NULL;
    cr_assert_eq(cluster_status(cl, &st), 0);
    imgstore_admin_free_status(st);
    cr_assert_eq(cluster_wait_ready(cl, 1, 3000), 0);
    cl->passed = 1;
}

#define HALF_SENT 200

Test(limits, half_sent_frames_release_fds)
{
    start(1, native_args, 0);
    pid_t pid = cl->ds[0].pid;
    long before = proc_fds(pid);
    cr_assert_gt(before, 0);
    static int fds[HALF_SENT];
    for (int i = 0; i < HALF_SENT; i++) {
        fds[i] = cluster_connect(cl->ds[0].addr, IO_MS);
        cr_assert_geq(fds[i], 0, "connection %d: %s", i, strerror(-fds[i]));
        cr_assert_eq(send_frame_header(fds[i], FT_WRITE, 1, 1000), 0);
    }
    usleep(300 * 1000);
    long held = proc_fds(pid);
    /* Closed by the frame timeout (1 s); the clients keep their ends. */
    int64_t t0 = cluster_now_ms();
    long after = held;
    while (cluster_now_ms() - t0 < 5000 && after > before + 5) {
        usleep(100 * 1000);
        after = proc_fds(pid);
    }
    fprintf(stderr, "[limits] %d half-sent frames: fds %ld before, %ld held, %ld after %lld ms\n",
            HALF_SENT, before, held, after, (long long)(cluster_now_ms() - t0));
    cr_assert_geq(held, before + HALF_SENT - 5, "the connections were not held at first");
    cr_assert_leq(after, before + 5, "fds still held: %ld (before %ld)", after, before);
    for (int i = 0; i < HALF_SENT; i++)
        close(fds[i]);
    cl->passed = 1;
}

#define STALLED 12
#define BIG_BODY (64u << 20)
#define SENT_BODY (48u << 20)

static const char *const budget_args[] = {"--max-receive-mb", "64", NULL};

Test(limits, stalled_uploads_stay_within_budget)
{
    start(1, budget_args, 0);
    pid_t pid = cl->ds[0].pid;
    const char *addr = cl->ds[0].addr;
    long rss0 = proc_rss_kib(pid);
    cr_assert_gt(rss0, 0);
    static int fds[STALLED];
    char *chunk = calloc(1, 1 << 20);
    int busy = 0;
    for (int i = 0; i < STALLED; i++) {
        fds[i] = cluster_connect(addr, 20000);
        cr_assert_geq(fds[i], 0);
        cr_assert_eq(send_frame_header(fds[i], FT_WRITE, 100 + (uint64_t)i, BIG_BODY), 0);
        for (unsigned sent = 0; sent < SENT_BODY; sent += 1 << 20)
            cr_assert_eq(send_all(fds[i], chunk, 1 << 20), 0, "upload %d stopped at %u", i, sent);
    }
    usleep(500 * 1000);
    long rss1 = proc_rss_kib(pid);
    /* The refused ones were answered busy at once. */
    for (int i = 0; i < STALLED; i++) {
        struct pollfd p = {.fd = fds[i], .events = POLLIN};
        struct frame_header h;
        if (poll(&p, 1, 0) == 1 && read_frame(fds[i], &h) == 0 && h.status == IMG_EBUSY)
            busy++;
    }
    long grown_mib = (rss1 - rss0) / 1024;
    fprintf(stderr, "[limits] %d stalled uploads of 48 of 64 MiB: RSS %ld -> %ld KiB (+%ld MiB), "
                    "%d answered busy\n", STALLED, rss0, rss1, grown_mib, busy);
#ifndef __SANITIZE_ADDRESS__
    cr_assert_lt(grown_mib, 64 + 32, "RSS grew by %ld MiB with a 64 MiB budget", grown_mib);
#else
    /* Under AddressSanitizer freed memory sits in its quarantine (up to
     * 256 MiB), so RSS says nothing of what the server holds: the bound is
     * checked by the plain build; the answers below are checked in both. */
    (void)grown_mib;
#endif
    cr_assert_eq(busy, STALLED - 1, "%d of %d uploads answered busy", busy, STALLED - 1);

    /* One more: answered busy right after its header, before any body. */
    int fd = cluster_connect(addr, 3000);
    cr_assert_geq(fd, 0);
    cr_assert_eq(send_frame_header(fd, FT_WRITE, 999, BIG_BODY), 0);
    struct frame_header h;
    cr_assert_eq(read_frame(fd, &h), 0, "no busy answer before the body");
    cr_assert_eq(h.status, IMG_EBUSY, "status %d", h.status);
    cr_assert_eq(h.request_id, 999);
    close(fd);

    /* The library retries a busy server until its deadline, then says so. */
    struct imgstore_opts o = {.timeout_ms = 1500, .io_timeout_ms = 1000};
    imgstore_t *lib = NULL;
    cr_assert_eq(imgstore_open(cl->ns.addr, &o, &lib), 0);
    size_t len = 1 << 20;
    char name[IMGSTORE_NAME_MAX];
    cr_assert_eq(imgstore_put(lib, chunk, len, "image/png", name), IMGSTORE_EBUSY);
    cr_assert_geq(cluster_metric(cl->ds[0].http_addr, "imgstore_ds_receive_busy_total"), STALLED);

    /* The stalled clients go: uploads work again. */
    for (int i = 0; i < STALLED; i++)
        close(fds[i]);
    int64_t t0 = cluster_now_ms();
    int rc;
    while ((rc = imgstore_put(lib, chunk, len, "image/png", name)) != 0 &&
           cluster_now_ms() - t0 < 5000)
        ;
    cr_assert_eq(rc, 0, "upload after the stalled clients left: %s", imgstore_strerror(rc));
    imgstore_close(lib);
    free(chunk);
    cl->passed = 1;
}

/* ---- connections per address ----------------------------------------------- */

static const char *const conn_args[] = {"--max-conns-per-addr", "5", NULL};

Test(limits, connections_per_address)
{
    start(1, conn_args, 0);
    int fds[5];
    /* Native: 5 from 127.0.0.1 stay open, the 6th is closed at once. */
    for (int i = 0; i < 5; i++) {
        fds[i] = cluster_connect(cl->ds[0].addr, IO_MS);
        cr_assert_geq(fds[i], 0);
    }
    usleep(100 * 1000);
    int fd = cluster_connect(cl->ds[0].addr, IO_MS);
    cr_assert_geq(fd, 0);
    int64_t ms = wait_closed(fd, 2000);
    close(fd);
    cr_assert(ms >= 0 && ms < 1000, "the 6th native connection stayed open (%lld)",
              (long long)ms);
    /* Another address is not counted with them. */
    fd = connect_from("127.0.0.2", cl->ds[0].addr, IO_MS);
    cr_assert_geq(fd, 0);
    cr_assert_eq(send_frame_header(fd, FT_STAT, 5, 0), 0);
    struct frame_header h;
    cr_assert_eq(read_frame(fd, &h), 0, "127.0.0.2 refused too");
    close(fd);
    close(fds[0]);
    usleep(200 * 1000);
    fd = cluster_connect(cl->ds[0].addr, IO_MS);
    cr_assert_eq(send_frame_header(fd, FT_STAT, 6, 0), 0);
    cr_assert_eq(read_frame(fd, &h), 0, "a slot freed is not usable again");
    close(fd);
    for (int i = 1; i < 5; i++)
        close(fds[i]);

    /* HTTP: the 6th gets 503 and is closed. */
    for (int i = 0; i < 5; i++) {
        fds[i] = cluster_connect(cl->ds[0].http_addr, IO_MS);
        cr_assert_geq(fds[i], 0);
    }
    usleep(100 * 1000);
    char head[512];
    int st = http_once(cl->ds[0].http_addr, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n", head,
                       sizeof(head));
    cr_assert_eq(st, 503, "6th HTTP connection: %d", st);
    cr_assert(strcasestr(head, "Retry-After:"), "%s", head);
    for (int i = 0; i < 5; i++)
        close(fds[i]);
    usleep(200 * 1000);
    cr_assert_geq(cluster_metric(cl->ds[0].http_addr,
                                 "imgstore_conns_refused_total{port=\"native\",reason=\"addr_full\"}"),
                  1);
    cr_assert_geq(cluster_metric(cl->ds[0].http_addr,
                                 "imgstore_conns_refused_total{port=\"http\",reason=\"addr_full\"}"),
                  1);
    cl->passed = 1;
}

/* ---- HTTP ------------------------------------------------------------------ */

static const char *const http_args[] = {"--http-header-timeout-ms", "800", "--http-idle-ms",
                                        "1500", NULL};

Test(limits, http_rfc9112)
{
    start(1, http_args, 1);
    char name[IMGSTORE_NAME_MAX], req[512], head[1024];
    put_file(5000, name);
    const char *a = cl->ds[0].http_addr;
    cr_assert_eq(http_once(a, "GET /healthz HTTP/1.1\r\n\r\n", head, sizeof(head)), 400,
                 "no Host: %s", head);
    cr_assert_eq(http_once(a, "GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", head,
                           sizeof(head)),
                 400, "two Host lines: %s", head);
    cr_assert_eq(http_once(a, "GET /healthz HTTP/1.1\r\nHOST: a\r\nhost: a\r\n\r\n", NULL, 0),
                 400);
    cr_assert_eq(http_once(a, "GET /healthz HTTP/2.0\r\nHost: a\r\n\r\n", head, sizeof(head)),
                 505, "HTTP/2.0: %s", head);
    cr_assert_eq(http_once(a, "GET /healthz HTTP/1.2\r\nHost: a\r\n\r\n", NULL, 0), 505);
    cr_assert_eq(http_once(a, "GET /healthz HTTP/1.0\r\n\r\n", NULL, 0), 200,
                 "HTTP/1.0 needs no Host");
    cr_assert_eq(http_once(a, "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n", NULL, 0), 200);
    snprintf(req, sizeof(req), "GET http://cdn.example/%s HTTP/1.1\r\nHost: cdn.example\r\n\r\n",
             name);
    cr_assert_eq(http_once(a, req, head, sizeof(head)), 200, "absolute form: %s", head);
    cr_assert(strcasestr(head, "Content-Length: 5000"), "%s", head);
    snprintf(req, sizeof(req), "GET http://cdn.example/%s?x=1 HTTP/1.1\r\nHost: c\r\n\r\n", name);
    cr_assert_eq(http_once(a, req, NULL, 0), 200);
    snprintf(req, sizeof(req), "GET http://cdn.example/%s HTTP/1.1\r\n\r\n", name);
    cr_assert_eq(http_once(a, req, NULL, 0), 400, "absolute form without Host");
    /* The nameserver's status port shares the core. */
    cr_assert_eq(http_once(cl->ns.http_addr, "GET /healthz HTTP/2.0\r\nHost: a\r\n\r\n", NULL, 0),
                 505);
    cr_assert_eq(http_once(cl->ns.http_addr, "GET /healthz HTTP/1.1\r\n\r\n", NULL, 0), 400);
    cr_assert_eq(http_once(cl->ns.http_addr, "GET http://ns/healthz HTTP/1.1\r\nHost: ns\r\n\r\n",
                           NULL, 0),
                 200);
    cl->passed = 1;
}

Test(limits, http_crlf_trickle_closed)
{
    start(1, http_args, 0);
    int fd = cluster_connect(cl->ds[0].http_addr, IO_MS);
    cr_assert_geq(fd, 0);
    const char *req = "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";
    cr_assert_eq(send_all(fd, req, strlen(req)), 0);
    cr_assert_eq(http_read(fd, NULL, 0, 0), 200);
    /* CRLF every 200 ms: not a request, not progress. The header timer
     * (800 ms) runs from the first one. */
    int64_t t0 = cluster_now_ms();
    int closed = 0;
    while (cluster_now_ms() - t0 < 5000) {
        if (send_all(fd, "\r\n", 2) != 0) {
            closed = 1;
            break;
        }
        if (wait_closed(fd, 200) >= 0) {
            closed = 1;
            break;
        }
    }
    int64_t ms = cluster_now_ms() - t0;
    close(fd);
    cr_assert(closed, "a CRLF trickle kept the connection open for 5 s");
    cr_assert_leq(ms, 2500, "closed after %lld ms", (long long)ms);
    cl->passed = 1;
}

static const char *const miss_args[] = {"--miss-rate", "20", "--miss-burst", "40", NULL};

/* GETs `n` names on one keep-alive connection from `src`: counts the
 * answers 200, 404 and 429 in got[0..2]. The names are `real` with another
 * cookie (a miss) every `every`th request (0: all), else `real` itself. */
static void guess(const char *src, const char *real, int n, int every, int got[3])
{
    struct fname f;
    cr_assert_eq(fname_decode(real, strlen(real), &f, NULL, NULL), 0);
    int fd = connect_from(src, cl->ds[0].http_addr, IO_MS);
    cr_assert_geq(fd, 0);
    for (int i = 0; i < n; i++) {
        char name[FNAME_LEN + 1], req[256];
        int hit = every && i % every != 0;
        struct fname g = f;
        if (!hit)
            g.cookie = f.cookie ^ (uint32_t)(i + 1) * 2654435761u;
        cr_assert_eq(fname_encode(&g, name), 0);
        snprintf(req, sizeof(req), "GET /%s HTTP/1.1\r\nHost: t\r\n\r\n", name);
        cr_assert_eq(send_all(fd, req, strlen(req)), 0);
        char head[512];
        int st = http_read(fd, head, sizeof(head), 0);
        cr_assert(st == 200 || st == 404 || st == 429, "guess %d: status %d", i, st);
        if (st == 429)
            cr_assert(strcasestr(head, "Retry-After:"), "%s", head);
        got[st == 200 ? 0 : st == 404 ? 1 : 2]++;
    }
    close(fd);
}

Test(limits, http_miss_guesser_slowed)
{
    start(1, miss_args, 0);
    char real[IMGSTORE_NAME_MAX];
    put_file(3000, real);
    /* A guesser: 400 wrong cookies as fast as it can. */
    int g[3] = {0, 0, 0};
    int64_t t0 = cluster_now_ms();
    guess("127.0.0.1", real, 400, 0, g);
    double secs = (double)(cluster_now_ms() - t0) / 1000.0;
    fprintf(stderr, "[limits] guesser: %d 404 and %d 429 in %.2f s\n", g[1], g[2], secs);
    /* At most the burst plus the rate over the time it took got a real
     * answer: 100 real answers would take at least (100 - 40) / 20 = 3 s. */
    cr_assert_leq(g[1], 40 + (int)(20 * secs) + 2, "%d misses answered in %.2f s", g[1], secs);
    cr_assert_gt(g[2], 0);
    /* A CDN at another address with a few 404s among its hits: unaffected,
     * while the guesser is still slowed. */
    int n[3] = {0, 0, 0};
    guess("127.0.0.2", real, 60, 6, n);
    cr_assert_eq(n[2], 0, "a normal client got %d 429s", n[2]);
    cr_assert_eq(n[0], 50);
    cr_assert_eq(n[1], 10);
    int again[3] = {0, 0, 0};
    guess("127.0.0.1", real, 5, 1000, again);
    cr_assert_gt(again[2], 0, "the guesser is no longer slowed right after");
    const char *ha = cl->ds[0].http_addr;
    cr_assert_geq(cluster_metric(ha, "imgstore_ds_http_misses_total"), g[1] + n[1]);
    cr_assert_geq(cluster_metric(ha, "imgstore_ds_http_miss_limited_total"), g[2]);
    cr_assert_geq(cluster_metric(ha, "imgstore_ds_http_misses_by_peer{peer=\"127.0.0.1\"}"), g[1]);
    cl->passed = 1;
}

/* A CDN shield listed in --miss-exempt is never slowed (docs/http.md). */
Test(limits, http_miss_exempt_address_never_slowed)
{
    static const char *const args[] = {"--miss-rate", "20", "--miss-burst", "40",
                                       "--miss-exempt", "192.0.2.0/24,127.0.0.1,2001:db8::1",
                                       NULL};
    start(1, args, 0);
    char real[IMGSTORE_NAME_MAX];
    put_file(3000, real);
    /* The exempt shield, a miss every 4th request (100, past the burst of
     * 40), as fast as it can: never 429. */
    int s[3] = {0, 0, 0};
    guess("127.0.0.1", real, 400, 4, s);
    fprintf(stderr, "[limits] exempt: %d 200, %d 404, %d 429\n", s[0], s[1], s[2]);
    cr_assert_eq(s[2], 0, "the exempt address got %d 429s", s[2]);
    cr_assert_eq(s[0], 300);
    cr_assert_eq(s[1], 100);
    /* Another address doing the same is slowed, hits included. */
    int g[3] = {0, 0, 0};
    guess("127.0.0.2", real, 400, 4, g);
    fprintf(stderr, "[limits] not exempt: %d 200, %d 404, %d 429\n", g[0], g[1], g[2]);
    cr_assert_gt(g[2], 0, "the address not exempt was never slowed");
    const char *ha = cl->ds[0].http_addr;
    cr_assert_geq(cluster_metric(ha, "imgstore_ds_http_misses_total"), s[1] + g[1]);
    /* The exempt address is not in the buckets' table at all. */
    cr_assert_eq(cluster_metric(ha, "imgstore_ds_http_misses_by_peer{peer=\"127.0.0.1\"}"), -1);
    cr_assert_geq(cluster_metric(ha, "imgstore_ds_http_misses_by_peer{peer=\"127.0.0.2\"}"), 40);
    cl->passed = 1;
}
