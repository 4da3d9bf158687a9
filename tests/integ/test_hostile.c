/* Integration test: hostile input. The nameserver's and a dataserver's native
 * ports get random bytes, truncated and oversized frames, unknown types and
 * garbage protobuf heads; the dataserver's HTTP port gets malformed requests.
 * After each, every server must still run and the cluster must still serve a
 * put and a get: bad input never crashes a process (docs/protocol.md and
 * docs/http.md, "Limits"). */
#include "base/err.h"
#include "proto/frame.h"
#include "tests/integ/cluster.h"
#include "tests/integ/fixture.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define IO_TIMEOUT_MS 3000
#define PIPELINED 50
#define GARBAGE_HEAD 32
#define BIG_HTTP (100 * 1024)

static imgstore_t *H;
static uint64_t seed;
static uint64_t file_id;

static void setup(void)
{
    fixture_start(&(struct cluster_opts){.ndataservers = 3, .replicas = 2});
}

static void teardown(void)
{
    imgstore_close(H);
    H = NULL;
    fixture_stop();
}

TestSuite(hostile, .init = setup, .fini = teardown, .timeout = 240);

/* ---- socket helpers ---------------------------------------------------------- */

/* The server may close on us: that is allowed. */
static void send_all(int fd, const void *buf, size_t len)
{
    (void)cluster_send_all(fd, buf, len);
}

/* Reads exactly len bytes. Returns 1, 0 on orderly close or reset, or
 * -ETIMEDOUT. */
static int recv_all(int fd, void *buf, size_t len)
{
    char *p = buf;
    while (len > 0) {
        ssize_t n = recv(fd, p, len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return -ETIMEDOUT;
        if (n <= 0)
            return 0;
        p += n;
        len -= (size_t)n;
    }
    return 1;
}

/* Reads one response frame (skipping its head and body). Returns 1 with *h,
 * 0 when the server closed, -ETIMEDOUT, or -EPROTO for a bad header. */
static int read_frame(int fd, struct frame_header *h)
{
    uint8_t hdr[FRAME_HEADER_SIZE];
    int rc = recv_all(fd, hdr, sizeof(hdr));
    if (rc <= 0)
        return rc;
    if (frame_decode(hdr, h) != 0)
        return -EPROTO;
    size_t skip = (size_t)h->head_len + h->body_len;
    char junk[4096];
    while (skip > 0) {
        size_t n = skip < sizeof(junk) ? skip : sizeof(junk);
        if ((rc = recv_all(fd, junk, n)) <= 0)
            return rc;
        skip -= n;
    }
    return 1;
}

/* Returns 1 when the server closes the connection within the timeout
 * (answering error frames first is allowed), 0 otherwise. */
static int wait_closed(int fd)
{
    char junk[4096];
    for (;;) {
        ssize_t n = recv(fd, junk, sizeof(junk), 0);
        if (n == 0 || (n < 0 && errno == ECONNRESET))
            return 1;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return 0;
    }
}

static void header(uint8_t out[FRAME_HEADER_SIZE], unsigned type, uint64_t id, uint32_t head_len,
                   uint32_t body_len)
{
    struct frame_header h = {.type = (uint8_t)type, .request_id = id, .head_len = head_len,
                             .body_len = body_len};
    frame_encode(&h, out);
}

static int dial(const char *addr)
{
    int fd = cluster_connect(addr, IO_TIMEOUT_MS);
    cr_assert_geq(fd, 0, "cannot connect to %s: %s", addr, strerror(-fd));
    return fd;
}

/* ---- the health check run after every case ---------------------------------- */

static int http_status(const char *addr, const char *request)
{
    int fd = dial(addr);
    char buf[256] = "";
    send_all(fd, request, strlen(request));
    size_t got = 0;
    while (got < sizeof(buf) - 1 && !strchr(buf, '\n')) {
        ssize_t n = recv(fd, buf + got, sizeof(buf) - 1 - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
        buf[got] = '\0';
    }
    close(fd);
    int code = 0;
    if (sscanf(buf, "HTTP/1.%*d %d", &code) != 1)
        return -1;
    return code;
}

static void assert_healthy(const char *after)
{
    cr_assert(cluster_alive(&C->ns), "the nameserver died after: %s", after);
    for (int i = 0; i < C->nds; i++)
        cr_assert(cluster_alive(&C->ds[i]), "%s died after: %s", C->ds[i].name, after);
    char name[IMGSTORE_NAME_MAX];
    uint64_t id = file_id++;
    size_t size = 3000 + (size_t)(id % 5000);
    cr_assert_eq(cluster_put_file(H, seed, id, size, name, 1), 0, "put failed after: %s", after);
    cr_assert_eq(cluster_check_file(H, name, NULL, seed, id, size), 0, "get failed after: %s",
                 after);
    int code = http_status(C->ds[0].http_addr,
                           "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    cr_assert_eq(code, 200, "GET /healthz answered %d after: %s", code, after);
}

/* ---- native-port cases ----------------------------------------------------------- */

static void case_random_bytes(const char *addr)
{
    uint8_t buf[4096];
    cluster_fill(buf, sizeof(buf), seed, 1);
    buf[0] = 0x00; /* never the magic */
    int fd = dial(addr);
    send_all(fd, buf, sizeof(buf));
    cr_assert(wait_closed(fd), "%s kept a connection open after random bytes", addr);
    close(fd);
}

static void case_truncated_header(const char *addr)
{
    uint8_t h[FRAME_HEADER_SIZE];
    header(h, FT_LOOKUP, 1, 0, 0);
    int fd = dial(addr);
    send_all(fd, h, 10);
    close(fd);
}

static void case_huge_body_then_close(const char *addr)
{
    uint8_t h[FRAME_HEADER_SIZE], junk[1024] = {0};
    header(h, FT_WRITE, 2, 0, FRAME_MAX_BODY);
    int fd = dial(addr);
    send_all(fd, h, sizeof(h));
    send_all(fd, junk, sizeof(junk));
    close(fd);
}

static void case_truncated_head(const char *addr)
{
    uint8_t h[FRAME_HEADER_SIZE], junk[10] = {0x08, 0x01};
    header(h, FT_READ, 3, 1000, 0);
    int fd = dial(addr);
    send_all(fd, h, sizeof(h));
    send_all(fd, junk, sizeof(junk));
    close(fd);
}

static void expect_badtype(int fd, const char *addr, unsigned type, uint64_t id)
{
    struct frame_header r;
    int rc = read_frame(fd, &r);
    cr_assert_eq(rc, 1, "%s: no answer to a frame of unknown type %u (%s)", addr, type,
                 rc == 0 ? "closed" : rc == -ETIMEDOUT ? "timed out" : "bad header");
    cr_assert_eq(r.type, (type | FRAME_RESPONSE) & 0xff, "%s: answer of type %u to type %u", addr,
                 r.type, type);
    cr_assert_eq(r.request_id, id, "%s: answer to request %llu has id %llu", addr,
                 (unsigned long long)id, (unsigned long long)r.request_id);
    cr_assert_eq(r.status, IMG_EBADTYPE, "%s: unknown type %u answered status %d, want %d", addr,
                 type, r.status, IMG_EBADTYPE);
}

static void case_unknown_type(const char *addr)
{
    /* Types 1..59 are taken or reserved (proto/frame.h); these never will be. */
    static const unsigned types[] = {0, 60, 99, 126, 127};
    int fd = dial(addr);
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        uint8_t h[FRAME_HEADER_SIZE];
        header(h, types[i], 100 + i, 0, 0);
        send_all(fd, h, sizeof(h));
        expect_badtype(fd, addr, types[i], 100 + i);
    }
    close(fd);
}

/* A frame sent one byte at a time must be reassembled. */
static void case_byte_by_byte(const char *addr)
{
    uint8_t h[FRAME_HEADER_SIZE];
    header(h, 99, 7, 0, 0);
    int fd = dial(addr);
    for (size_t i = 0; i < sizeof(h); i++) {
        send_all(fd, h + i, 1);
        usleep(1000);
    }
    expect_badtype(fd, addr, 99, 7);
    close(fd);
}

/* Many frames in one write: every one gets its answer. */
static void case_pipelined(const char *addr)
{
    uint8_t buf[PIPELINED * FRAME_HEADER_SIZE];
    int seen[PIPELINED] = {0};
    for (int i = 0; i < PIPELINED; i++)
        header(buf + i * FRAME_HEADER_SIZE, 99, 1000 + (uint64_t)i, 0, 0);
    int fd = dial(addr);
    send_all(fd, buf, sizeof(buf));
    for (int i = 0; i < PIPELINED; i++) {
        struct frame_header r;
        int rc = read_frame(fd, &r);
        cr_assert_eq(rc, 1, "%s: %d of %d pipelined frames answered", addr, i, PIPELINED);
        cr_assert(r.request_id >= 1000 && r.request_id < 1000 + PIPELINED && r.status == IMG_EBADTYPE,
                  "%s: unexpected answer (id %llu, status %d)", addr,
                  (unsigned long long)r.request_id, r.status);
        seen[r.request_id - 1000]++;
    }
    for (int i = 0; i < PIPELINED; i++)
        cr_assert_eq(seen[i], 1, "%s: request %d answered %d times", addr, 1000 + i, seen[i]);
    close(fd);
}

/* Each known type with a head that is not protobuf: an error answer or a
 * closed connection are both fine; silence and crashes are not. */
static void case_garbage_heads(const char *addr)
{
    static const unsigned types[] = {FT_HEARTBEAT, FT_CREATE_BLOCK, FT_ALLOC_WRITE, FT_LOOKUP,
                                     FT_CLUSTER_STATUS, FT_WRITE, FT_READ, FT_STAT, FT_DELETE,
                                     FT_REPL_APPEND};
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        uint8_t buf[FRAME_HEADER_SIZE + GARBAGE_HEAD + 16];
        uint32_t body = types[i] == FT_WRITE || types[i] == FT_REPL_APPEND ? 16 : 0;
        header(buf, types[i], 200 + i, GARBAGE_HEAD, body);
        memset(buf + FRAME_HEADER_SIZE, 0xff, GARBAGE_HEAD + body);
        int fd = dial(addr);
        send_all(fd, buf, FRAME_HEADER_SIZE + GARBAGE_HEAD + body);
        struct frame_header r;
        int rc = read_frame(fd, &r);
        cr_assert(rc != -ETIMEDOUT, "%s: no answer and no close after a garbage %s head", addr,
                  frame_type_name(types[i]));
        if (rc == 1)
            cr_assert_lt(r.status, 0, "%s: a garbage %s head was answered with status %d", addr,
                         frame_type_name(types[i]), r.status);
        close(fd);
    }
}

/* A header the receiver must not trust: it closes the connection. */
static void expect_close_after(const char *addr, const struct frame_header *fh, const char *what)
{
    uint8_t h[FRAME_HEADER_SIZE];
    frame_encode(fh, h);
    int fd = dial(addr);
    send_all(fd, h, sizeof(h));
    cr_assert(wait_closed(fd), "%s kept the connection open after %s", addr, what);
    close(fd);
}

static void case_head_over_limit(const char *addr)
{
    struct frame_header h = {.type = FT_LOOKUP, .request_id = 5, .head_len = FRAME_MAX_HEAD + 1};
    expect_close_after(addr, &h, "head_len = FRAME_MAX_HEAD + 1");
}

static void case_body_over_limit(const char *addr)
{
    struct frame_header h = {.type = FT_WRITE, .request_id = 6, .body_len = FRAME_MAX_BODY + 1};
    expect_close_after(addr, &h, "body_len = FRAME_MAX_BODY + 1");
}

static void case_lengths_max(const char *addr)
{
    struct frame_header h = {.type = FT_WRITE, .request_id = 7, .head_len = UINT32_MAX,
                             .body_len = UINT32_MAX};
    expect_close_after(addr, &h, "head_len = body_len = 2^32-1");
}

static void case_bad_version(const char *addr)
{
    struct frame_header h = {.type = FT_LOOKUP, .request_id = 8};
    uint8_t buf[FRAME_HEADER_SIZE];
    frame_encode(&h, buf);
    buf[2] = FRAME_VERSION + 1;
    int fd = dial(addr);
    send_all(fd, buf, sizeof(buf));
    cr_assert(wait_closed(fd), "%s kept the connection open after a bad version", addr);
    close(fd);
}

static void case_positive_status(const char *addr)
{
    struct frame_header h = {.type = FT_LOOKUP, .request_id = 9, .status = 5};
    expect_close_after(addr, &h, "a positive status");
}

/* A response nobody asked for: ignored or the connection closed. */
static void case_stray_response(const char *addr)
{
    uint8_t h[FRAME_HEADER_SIZE];
    header(h, FT_READ | FRAME_RESPONSE, 424242, 0, 0);
    int fd = dial(addr);
    send_all(fd, h, sizeof(h));
    usleep(100 * 1000);
    close(fd);
}

struct native_case {
    const char *name;
    void (*fn)(const char *addr);
};

static const struct native_case native_cases[] = {
    {"random bytes", case_random_bytes},
    {"truncated header", case_truncated_header},
    {"huge body announced, then close", case_huge_body_then_close},
    {"truncated head, then close", case_truncated_head},
    {"unknown types", case_unknown_type},
    {"header one byte at a time", case_byte_by_byte},
    {"pipelined frames", case_pipelined},
    {"garbage protobuf head of each type", case_garbage_heads},
    {"head_len over the limit", case_head_over_limit},
    {"body_len over the limit", case_body_over_limit},
    {"lengths 2^32-1", case_lengths_max},
    {"bad version", case_bad_version},
    {"positive status", case_positive_status},
    {"stray response", case_stray_response},
};

static void run_native(const char *who, const char *addr)
{
    for (size_t i = 0; i < sizeof(native_cases) / sizeof(native_cases[0]); i++) {
        char what[160];
        snprintf(what, sizeof(what), "%s to the %s (%s)", native_cases[i].name, who, addr);
        native_cases[i].fn(addr);
        assert_healthy(what);
    }
}

/* The native-port cases against the nameserver (ds < 0) or dataserver ds,
 * with the data set of `test`. */
static void native_port(const char *test, const char *who, int ds)
{
    cr_assert_not_null(C, "the cluster did not start (see above)");
    seed = cluster_seed(test);
    H = cluster_client(C);
    cr_assert_not_null(H);
    assert_healthy("nothing");
    run_native(who, ds < 0 ? C->ns.addr : C->ds[ds].addr);
    C->passed = 1;
}

Test(hostile, nameserver_native_port)
{
    native_port("hostile.ns", "nameserver", -1);
}

Test(hostile, dataserver_native_port)
{
    native_port("hostile.ds", "dataserver", 0);
}

/* ---- HTTP cases ----------------------------------------------------------------- */

/* Sends raw bytes to the HTTP port, reads whatever comes back for a moment,
 * and returns the answer's status code (0 when none). */
static int http_raw(const char *addr, const void *buf, size_t len, int half_close)
{
    int fd = dial(addr);
    char resp[512] = "";
    send_all(fd, buf, len);
    if (half_close)
        shutdown(fd, SHUT_WR);
    ssize_t n = recv(fd, resp, sizeof(resp) - 1, 0);
    close(fd);
    int code = 0;
    if (n > 0)
        sscanf(resp, "HTTP/1.%*d %d", &code);
    return code;
}

static char *repeat(const char *head, char c, size_t n, const char *tail)
{
    size_t hl = strlen(head), tl = strlen(tail);
    char *s = malloc(hl + n + tl + 1);
    cr_assert_not_null(s);
    memcpy(s, head, hl);
    memset(s + hl, c, n);
    memcpy(s + hl + n, tail, tl + 1);
    return s;
}

Test(hostile, dataserver_http_port)
{
    cr_assert_not_null(C, "the cluster did not start (see above)");
    seed = cluster_seed("hostile.http");
    H = cluster_client(C);
    cr_assert_not_null(H);
    const char *addr = C->ds[0].http_addr;
    assert_healthy("nothing");

    uint8_t rnd[4096];
    cluster_fill(rnd, sizeof(rnd), seed, 2);
    http_raw(addr, rnd, sizeof(rnd), 0);
    assert_healthy("random bytes to the HTTP port");

    static const char *const small[] = {
        "\r\n\r\n\r\n\r\n",
        "GET /heal",
        "GET\r\n\r\n",
        "BREW /pot HTCPCP/1.0\r\n\r\n",
        "GET /healthz HTTP/9.9\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
        "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nZZZZ\r\nxx\r\n",
        "PUT /x HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\nshort",
        "GET /%00%ff%zz HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /1AAAAAAAAAAAAAAAAAAAA.png HTTP/1.1\r\nHost: a\r\nRange: bytes=9-1\r\n\r\n",
        "GET /1AAAAAAAAAAAAAAAAAAAA HTTP/1.1\r\nHost: a\r\nRange: bytes=-0,5-,x\r\n\r\n",
        "HEAD / HTTP/1.1\r\nHost: a\r\nIf-Modified-Since: yesterday\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(small) / sizeof(small[0]); i++) {
        char what[200];
        snprintf(what, sizeof(what), "HTTP request %zu (%.40s...)", i, small[i]);
        http_raw(addr, small[i], strlen(small[i]), 1);
        assert_healthy(what);
    }

    char *s = repeat("GET /", 'a', BIG_HTTP, " HTTP/1.1\r\nHost: a\r\n\r\n");
    http_raw(addr, s, strlen(s), 1);
    free(s);
    assert_healthy("a 100 KB URL");
    s = repeat("GET /healthz HTTP/1.1\r\nX-Big: ", 'b', BIG_HTTP, "\r\n\r\n");
    http_raw(addr, s, strlen(s), 1);
    free(s);
    assert_healthy("a 100 KB header");
    s = malloc(64 + 2000 * 16);
    cr_assert_not_null(s);
    size_t off = (size_t)sprintf(s, "GET /healthz HTTP/1.1\r\n");
    for (int i = 0; i < 2000; i++)
        off += (size_t)sprintf(s + off, "X%d: y\r\n", i);
    sprintf(s + off, "\r\n");
    http_raw(addr, s, strlen(s), 1);
    free(s);
    assert_healthy("2,000 headers");

    /* Path traversal must not leak local files. */
    int fd = dial(addr);
    const char *trav = "GET /../../../../etc/passwd HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    char resp[4096] = "";
    send_all(fd, trav, strlen(trav));
    size_t got = 0;
    ssize_t n;
    while (got < sizeof(resp) - 1 && (n = recv(fd, resp + got, sizeof(resp) - 1 - got, 0)) > 0)
        got += (size_t)n;
    close(fd);
    cr_assert_null(strstr(resp, "root:"), "path traversal served /etc/passwd");
    assert_healthy("a path traversal");
    C->passed = 1;
}
