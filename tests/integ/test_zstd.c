/* Integration tests of compressed storage (docs/storage.md "Encoded
 * records"): uploads of compressible types are stored zstd-compressed by the
 * real dataservers on loopback, every reader (library, HTTP origin) gets the
 * original bytes and size, incompressible types stay as sent, and a record
 * whose compressed bytes do not decode to the recorded original is served
 * from the other replica (also, once verify has marked the copy corrupt, to
 * clients that take zstd) until repair replaces it. */
#include "base/crc16.h"
#include "base/crc32c.h"
#include "tests/integ/fixture.h"
#include "tests/integ/json_check.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <jansson.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>
#include <zstd.h>

#define TOKEN "zstd-test-token-0123456789"
#define REC_HEADER 24 /* docs/storage.md: the record header */
#define ENC_HEADER 16 /* the encoding header of an encoded record */
#define FLAG_ENCODED 0x04

static char token_path[256];
static const char *ds_args[] = {"--upload-token-file", token_path, NULL};

static void teardown(void)
{
    fixture_stop();
    unlink(token_path);
}

static void start(void)
{
    snprintf(token_path, sizeof(token_path), "/tmp/imgstore-zstd-token-%d", (int)getpid());
    cr_assert_eq(cluster_write_file(token_path, TOKEN "\n", strlen(TOKEN) + 1), 0);
    cr_assert_eq(chmod(token_path, 0600), 0);
    struct cluster_opts o = {.ndataservers = 3, .replicas = 2, .ds_args = ds_args};
    cr_assert_eq(fixture_start(&o), 0, "cluster did not start");
}

TestSuite(zstd, .init = start, .fini = teardown, .timeout = 120);

/* ---- a small HTTP/1.1 client: one request per connection ------------------ */

struct resp {
    int status;
    char *head; /* the header block, NUL-terminated */
    char *body;
    size_t body_len;
};

static void resp_free(struct resp *r)
{
    free(r->head);
    free(r->body);
    memset(r, 0, sizeof(*r));
}

/* The value of header `name` in r (a static copy), or NULL. */
static const char *hdr(const struct resp *r, const char *name)
{
    static char v[256];
    size_t n = strlen(name);
    for (const char *p = strstr(r->head, "\r\n"); p; p = strstr(p + 2, "\r\n")) {
        if (strncasecmp(p + 2, name, n) == 0 && p[2 + n] == ':') {
            const char *s = p + 3 + n;
            while (*s == ' ')
                s++;
            size_t l = strcspn(s, "\r");
            snprintf(v, sizeof(v), "%.*s", (int)(l < sizeof(v) - 1 ? l : sizeof(v) - 1), s);
            return v;
        }
    }
    return NULL;
}

static int http(const char *addr, const void *req, size_t len, struct resp *r)
{
    memset(r, 0, sizeof(*r));
    char host[64];
    snprintf(host, sizeof(host), "%s", addr);
    char *colon = strrchr(host, ':');
    if (!colon)
        return -EINVAL;
    *colon = '\0';
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    inet_pton(AF_INET, host, &sa.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        return -errno;
    }
    for (size_t off = 0; off < len;) {
        ssize_t n = write(fd, (const char *)req + off, len - off);
        if (n <= 0) {
            close(fd);
            return -EIO;
        }
        off += (size_t)n;
    }
    size_t cap = 1 << 16, got = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (got == cap)
            buf = realloc(buf, cap *= 2);
        ssize_t n = read(fd, buf + got, cap - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    char *end = memmem(buf, got, "\r\n\r\n", 4);
    if (!end || sscanf(buf, "HTTP/1.1 %d", &r->status) != 1) {
        free(buf);
        return -EPROTO;
    }
    size_t hl = (size_t)(end - buf) + 2;
    r->head = strndup(buf, hl);
    r->body_len = got - hl - 2;
    r->body = malloc(r->body_len + 1);
    memcpy(r->body, end + 4, r->body_len);
    r->body[r->body_len] = '\0';
    free(buf);
    return 0;
}

static void get(const char *addr, const char *path, const char *extra, struct resp *r)
{
    char req[1024];
    int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n%s\r\n",
                     path, extra ? extra : "");
    cr_assert_eq(http(addr, req, (size_t)n, r), 0, "GET %s from %s", path, addr);
}

static void post(const char *addr, const void *data, size_t len, const char *ctype, char *name)
{
    char head[512];
    int n = snprintf(head, sizeof(head),
                     "POST / HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: %s\r\n"
                     "Content-Length: %zu\r\nAuthorization: Bearer " TOKEN "\r\n\r\n",
                     ctype, len);
    char *req = malloc((size_t)n + len);
    memcpy(req, head, (size_t)n);
    memcpy(req + n, data, len);
    struct resp r;
    cr_assert_eq(http(addr, req, (size_t)n + len, &r), 0);
    free(req);
    cr_assert_eq(r.status, 201, "upload: %d %s", r.status, r.body);
    json_at_str(r.body, "name", name, IMGSTORE_NAME_MAX);
    cr_assert(name[0], "an empty name in %s", r.body);
    resp_free(&r);
}

/* ---- the data ------------------------------------------------------------ */

/* An SVG of about len bytes (paths of a drawing: compresses like real
 * icons, about 4-6x). */
static char *svg(size_t len, unsigned seed)
{
    char *s = malloc(len + 1);
    size_t n = (size_t)snprintf(s, len + 1,
                                "<?xml version=\"1.0\"?>\n<svg xmlns=\"http://www.w3.org/2000/"
                                "svg\" width=\"64\" height=\"64\">\n");
    uint64_t st = seed;
    while (n < len) {
        uint64_t x = cluster_rand(&st);
        n += (size_t)snprintf(s + n, len + 1 - n,
                              "  <path d=\"M%u.%u %u.%u l%u %u\" style=\"fill:#%02x%02x%02x\"/>\n",
                              (unsigned)(x % 64), (unsigned)(x >> 8) % 10,
                              (unsigned)(x >> 16) % 64, (unsigned)(x >> 24) % 10,
                              (unsigned)(x >> 32) % 9, (unsigned)(x >> 40) % 9,
                              (unsigned)(x >> 44) % 4 * 0x40, (unsigned)(x >> 48) % 4 * 0x40,
                              (unsigned)(x >> 52) % 4 * 0x40);
    }
    return s;
}

/* Reads the record header (and encoding header) of `name` from its copy on
 * replica `which` into rec[REC_HEADER + ENC_HEADER]; returns its ds index. */
static int read_record_head(const char *name, int which, uint8_t *rec, struct imgstore_stat *st)
{
    imgstore_t *h = cluster_client(C);
    cr_assert_not_null(h);
    cr_assert_eq(imgstore_stat(h, name, st), 0);
    imgstore_close(h);
    int ds = cluster_ds_index(C, st->replicas[which]);
    cr_assert_geq(ds, 0);
    char p[700];
    cluster_block_path(C, ds, st->block_id, p, sizeof(p));
    int fd = open(p, O_RDONLY);
    cr_assert_geq(fd, 0, "%s: %s", p, strerror(errno));
    cr_assert_eq(pread(fd, rec, REC_HEADER + ENC_HEADER, (off_t)st->offset),
                 REC_HEADER + ENC_HEADER);
    close(fd);
    return ds;
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void check_get(imgstore_t *h, const char *name, const void *want, size_t len)
{
    void *got = NULL;
    size_t got_len = 0;
    cr_assert_eq(imgstore_get(h, name, &got, &got_len), 0, "get %s", name);
    cr_assert(got_len == len && memcmp(got, want, len) == 0, "get %s: other bytes", name);
    free(got);
    struct imgstore_stat st;
    cr_assert_eq(imgstore_stat(h, name, &st), 0);
    cr_assert_eq(st.size, len, "stat: the original size");
}

/* A metric of dataserver i's /metrics (summed over label sets). */
static double metric(int i, const char *name)
{
    struct resp r;
    get(C->ds[i].http_addr, "/metrics", NULL, &r);
    cr_assert_eq(r.status, 200);
    double sum = 0;
    size_t n = strlen(name);
    for (char *p = r.body; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (strncmp(p, name, n) == 0 && (p[n] == ' ' || p[n] == '{'))
            sum += strtod(strchr(p + n, ' ') + 1, NULL);
    resp_free(&r);
    return sum;
}

static void check_zstd_body(const struct resp *r, const void *want, size_t len);

/* ---- tests ----------------------------------------------------------------- */

Test(zstd, compressible_uploads_are_stored_compressed)
{
    imgstore_t *h = cluster_client(C);
    cr_assert_not_null(h);
    /* Through the library. */
    size_t len = 60000;
    char *s = svg(len, 1);
    len = strlen(s);
    char name[IMGSTORE_NAME_MAX];
    cr_assert_eq(imgstore_put(h, s, len, "image/svg+xml", name), 0);
    check_get(h, name, s, len);
    uint8_t rec[REC_HEADER + ENC_HEADER];
    struct imgstore_stat st;
    for (int which = 0; which < 2; which++) {
        read_record_head(name, which, rec, &st);
        cr_assert(rec[2] & FLAG_ENCODED, "replica %d: the SVG is stored compressed", which);
        uint32_t stored = le32(rec + 12);
        cr_assert_lt(stored, len / 2, "stored %u of %zu bytes", stored, len);
        cr_assert_eq(le32(rec + REC_HEADER + 4), len, "the original size is recorded");
        cr_assert_eq(le32(rec + REC_HEADER + 8), crc32c(0, s, len), "and its CRC32C");
    }
    /* `imgstore get` and `imgstore stat`: the original bytes and size. */
    static const char *const del[] = {"IMGSTORE_NS", NULL};
    struct cluster_run run;
    const char *get_argv[] = {"imgstore", "--ns", C->ns.addr, "get", name, NULL};
    cr_assert_eq(cluster_run(C, get_argv, NULL, del, 10000, &run), 0);
    cr_assert_eq(run.exit_code, 0, "%s", run.err);
    cr_assert(run.out_len == len && memcmp(run.out, s, len) == 0, "imgstore get: other bytes");
    cluster_run_free(&run);
    const char *stat_argv[] = {"imgstore", "--ns", C->ns.addr, "stat", name, NULL};
    cr_assert_eq(cluster_run(C, stat_argv, NULL, del, 10000, &run), 0);
    char want_size[32];
    snprintf(want_size, sizeof(want_size), "size: %zu\n", len);
    cr_assert(run.exit_code == 0 && strstr(run.out, want_size), "imgstore stat: %s%s", run.out,
              run.err);
    cluster_run_free(&run);

    /* Over HTTP, without Accept-Encoding: the original bytes. */
    char path[IMGSTORE_NAME_MAX + 2];
    snprintf(path, sizeof(path), "/%s", name);
    for (int i = 0; i < C->nds; i++) {
        struct resp r;
        get(C->ds[i].http_addr, path, NULL, &r);
        cr_assert_eq(r.status, 200, "ds%d: %d", i + 1, r.status);
        cr_assert(r.body_len == len && memcmp(r.body, s, len) == 0, "ds%d: other bytes", i + 1);
        cr_assert_null(hdr(&r, "Content-Encoding"));
        resp_free(&r);
    }

    /* Uploaded over HTTP, read through the library. */
    char *s2 = svg(9000, 2), name2[IMGSTORE_NAME_MAX];
    size_t len2 = strlen(s2);
    post(C->ds[0].http_addr, s2, len2, "image/svg+xml", name2);
    check_get(h, name2, s2, len2);
    read_record_head(name2, 0, rec, &st);
    cr_assert(rec[2] & FLAG_ENCODED, "an HTTP upload is compressed too");

    /* A JPEG is never compressed, even one made of repeated bytes. */
    size_t jl = 50000;
    uint8_t *jpeg = malloc(jl);
    memset(jpeg, 0x55, jl);
    memcpy(jpeg, "\xFF\xD8\xFF\xE0", 4);
    char name3[IMGSTORE_NAME_MAX];
    cr_assert_eq(imgstore_put(h, jpeg, jl, "image/jpeg", name3), 0);
    check_get(h, name3, jpeg, jl);
    read_record_head(name3, 0, rec, &st);
    cr_assert_eq(rec[2] & FLAG_ENCODED, 0, "JPEG stays as sent");
    cr_assert_eq(le32(rec + 12), jl);
    /* Nor is a small file, nor one that does not compress by 10 %. */
    uint8_t rnd[4000];
    cluster_fill(rnd, sizeof(rnd), 9, 9);
    char name4[IMGSTORE_NAME_MAX];
    cr_assert_eq(imgstore_put(h, rnd, sizeof(rnd), "image/bmp", name4), 0);
    check_get(h, name4, rnd, sizeof(rnd));
    read_record_head(name4, 0, rec, &st);
    cr_assert_eq(rec[2] & FLAG_ENCODED, 0, "random bytes stay as sent");

    /* The primaries counted what compression saved. */
    double enc = 0, saved = 0;
    for (int i = 0; i < C->nds; i++) {
        enc += metric(i, "imgstore_ds_files_encoded_total");
        saved += metric(i, "imgstore_ds_encoded_saved_bytes_total");
    }
    cr_assert_eq(enc, 2);
    cr_assert_gt(saved, (double)len / 2);

    /* Deleting a compressed file works like any other. */
    cr_assert_eq(imgstore_unlink(h, name), 0);
    void *got = NULL;
    size_t got_len;
    cr_assert_neq(imgstore_get(h, name, &got, &got_len), 0);
    free(jpeg);
    free(s2);
    free(s);
    imgstore_close(h);
    C->passed = 1;
}

Test(zstd, undecodable_copy_is_served_from_the_other_replica)
{
    imgstore_t *h = cluster_client(C);
    cr_assert_not_null(h);
    char *s = svg(30000, 3);
    size_t len = strlen(s);
    char name[IMGSTORE_NAME_MAX];
    cr_assert_eq(imgstore_put(h, s, len, "image/svg+xml", name), 0);

    /* On the second replica, break the zstd frame and seal the record again
     * (new data CRC, new header check): every check of the stored bytes
     * passes, only decoding can tell. */
    uint8_t rec[REC_HEADER + ENC_HEADER];
    struct imgstore_stat st;
    int ds = read_record_head(name, 1, rec, &st);
    cr_assert(rec[2] & FLAG_ENCODED);
    uint32_t stored = le32(rec + 12);
    char p[700];
    cluster_block_path(C, ds, st.block_id, p, sizeof(p));
    int fd = open(p, O_RDWR);
    cr_assert_geq(fd, 0);
    uint8_t *data = malloc(stored);
    cr_assert_eq(pread(fd, data, stored, (off_t)st.offset + REC_HEADER), (ssize_t)stored);
    for (uint32_t i = ENC_HEADER + 16; i < stored; i += 7)
        data[i] ^= 0x5a;
    uint32_t crc = crc32c(0, data, stored);
    rec[20] = (uint8_t)crc;
    rec[21] = (uint8_t)(crc >> 8);
    rec[22] = (uint8_t)(crc >> 16);
    rec[23] = (uint8_t)(crc >> 24);
    uint16_t check = crc16(0, rec + 2, REC_HEADER - 2);
    rec[0] = (uint8_t)check;
    rec[1] = (uint8_t)(check >> 8);
    cr_assert_eq(pwrite(fd, data, stored, (off_t)st.offset + REC_HEADER), (ssize_t)stored);
    cr_assert_eq(pwrite(fd, rec, REC_HEADER, (off_t)st.offset), REC_HEADER);
    close(fd);
    free(data);

    /* The damaged copy, asked alone, is refused as damaged. */
    void *got_bad = NULL;
    size_t got_bad_len = 0;
    cr_assert_eq(imgstore_get_from(h, name, C->ds[ds].addr, &got_bad, &got_bad_len),
                 IMGSTORE_ECORRUPT);
    /* Every reader still gets the original: the library (whichever replica
     * it asks first: a random one; 20 clients miss the damaged one first
     * with odds of 1 in 2^20) and the HTTP origin of the damaged server itself. */
    for (int i = 0; i < 20; i++) {
        imgstore_t *h2 = cluster_client(C);
        check_get(h2, name, s, len);
        imgstore_close(h2);
    }
    char path[IMGSTORE_NAME_MAX + 2];
    snprintf(path, sizeof(path), "/%s", name);
    struct resp r;
    get(C->ds[ds].http_addr, path, NULL, &r);
    cr_assert_eq(r.status, 200);
    cr_assert(r.body_len == len && memcmp(r.body, s, len) == 0);
    resp_free(&r);
    /* verify (the scrubber's pass) decodes encoded records too: the copy
     * whose stored bytes all check out but whose frame does not decode is
     * a bad record, on that server alone. */
    char block[32];
    snprintf(block, sizeof(block), "%llu", (unsigned long long)st.block_id);
    struct cluster_run run;
    int vrc = cluster_admin(C, 30000, &run, "--json", "verify", block, NULL);
    cr_assert_eq(vrc, 1, "a bad record fails verify: %s%s", run.out, run.err);
    char want[128];
    snprintf(want, sizeof(want), "servers[address=%s].bad_records", C->ds[ds].addr);
    cr_assert_eq(json_at_num(run.out, want), 1, "ds%d's answer: %s", ds + 1, run.out);
    json_t *intact = json_at(run.out, "servers[bad_records=0]");
    cr_assert_not_null(intact, "the other copy is intact: %s", run.out);
    json_decref(intact);
    cluster_run_free(&run);
    /* Now marked corrupt, the damaged copy never sends its frame to a client
     * that takes zstd: it decodes it first, finds it damaged and sends the
     * other replica's (as stored). Every server, the damaged one first. */
    for (int k = 0; k < C->nds; k++) {
        int i = (ds + k) % C->nds;
        get(C->ds[i].http_addr, path, "Accept-Encoding: zstd\r\n", &r);
        cr_assert_eq(r.status, 200, "ds%d", i + 1);
        check_zstd_body(&r, s, len);
        resp_free(&r);
    }
    /* repair replaces the damaged copy; then every copy verifies clean and
     * serves the original, decoded or as stored. */
    int rrc = cluster_admin(C, 60000, &run, "--json", "repair", block, "--wait", NULL);
    fprintf(stderr, "[zstd] repair %s --wait --json: %s", block, run.out);
    cr_assert_eq(rrc, 0, "%s%s", run.out, run.err);
    char rpath[160], action[32];
    snprintf(rpath, sizeof(rpath), "replicas[addr=%s].action", C->ds[ds].addr);
    json_at_str(run.out, rpath, action, sizeof(action)); /* the damaged copy's server is listed */
    cr_assert_str_eq(action, "replace", "%s", run.out);
    cr_assert_eq(json_at_bool(run.out, "healed"), 1, "%s", run.out);
    cluster_run_free(&run);
    vrc = cluster_admin(C, 30000, &run, "verify", block, NULL);
    cr_assert_eq(vrc, 0, "every copy verifies after the repair: %s%s", run.out, run.err);
    cluster_run_free(&run);
    imgstore_t *h3 = cluster_client(C);
    cr_assert_eq(imgstore_stat(h3, name, &st), 0);
    cr_assert_eq(st.nreplicas, 2);
    for (int k = 0; k < st.nreplicas; k++) {
        int i = cluster_ds_index(C, st.replicas[k]);
        cr_assert_geq(i, 0);
        void *got = NULL;
        size_t got_len = 0;
        cr_assert_eq(imgstore_get_from(h3, name, C->ds[i].addr, &got, &got_len), 0, "ds%d", i + 1);
        cr_assert(got_len == len && memcmp(got, s, len) == 0, "ds%d: other bytes", i + 1);
        free(got);
        get(C->ds[i].http_addr, path, "Accept-Encoding: zstd\r\n", &r);
        cr_assert_eq(r.status, 200);
        check_zstd_body(&r, s, len);
        resp_free(&r);
        read_record_head(name, k, rec, &st);
        cr_assert(rec[2] & FLAG_ENCODED, "the new copy is stored compressed too");
    }
    imgstore_close(h3);
    /* The damaged server said so. */
    char lp[600];
    snprintf(lp, sizeof(lp), "%s", C->ds[ds].log);
    void *log;
    size_t log_len;
    cr_assert_eq(cluster_read_file(lp, &log, &log_len), 0);
    cr_assert(memmem(log, log_len, "failed its check", 16), "no damage logged on ds%d", ds + 1);
    free(log);
    free(s);
    imgstore_close(h);
    C->passed = 1;
}

/* Large SVGs compressed at the default level take tens of milliseconds each;
 * on the thread pool they must not hold the loop up. The loop's longest
 * stall (the dataservers' lag probe) is printed and bounded well below the
 * time one compression takes. */
Test(zstd, compression_keeps_the_loop_free)
{
    imgstore_t *h = cluster_client(C);
    cr_assert_not_null(h);
    size_t len = 8u << 20;
    char *s = svg(len, 4);
    len = strlen(s);
    double before = 0;
    for (int i = 0; i < C->nds; i++) {
        double v = metric(i, "imgstore_ds_loop_stall_max_seconds");
        before = v > before ? v : before;
    }
    struct timeval t0, t1;
    gettimeofday(&t0, NULL);
    char name[IMGSTORE_NAME_MAX];
    int n = 4;
    for (int i = 0; i < n; i++) {
        s[100 + i] = (char)('a' + i); /* not four equal files */
        cr_assert_eq(imgstore_put(h, s, len, "image/svg+xml", name), 0);
    }
    gettimeofday(&t1, NULL);
    double put_ms = ((double)(t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_usec - t0.tv_usec) / 1e3) / n;
    check_get(h, name, s, len);
    double stall = 0;
    for (int i = 0; i < C->nds; i++) {
        double v = metric(i, "imgstore_ds_loop_stall_max_seconds");
        stall = v > stall ? v : stall;
    }
    cr_assert_eq(metric(0, "imgstore_ds_files_encoded_total") +
                     metric(1, "imgstore_ds_files_encoded_total") +
                     metric(2, "imgstore_ds_files_encoded_total"), n);
    fprintf(stderr, "[zstd] %d uploads of %zu bytes (SVG): %.1f ms each (compression included); "
                    "longest loop stall %.1f ms (%.1f ms before them)\n",
            n, len, put_ms, stall * 1e3, before * 1e3);
    /* What one such compression costs a thread (the dataservers' default
     * level, 9): had it run on the loop, the loop would have stalled so
     * long at least. */
    size_t cap = ZSTD_compressBound(len);
    void *frame = malloc(cap);
    gettimeofday(&t0, NULL);
    size_t fl = ZSTD_compress(frame, cap, s, len, 9);
    gettimeofday(&t1, NULL);
    cr_assert(!ZSTD_isError(fl));
    double comp_ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_usec - t0.tv_usec) / 1e3;
    fprintf(stderr, "[zstd] one compression at level 9 here: %.1f ms, %zu -> %zu bytes\n", comp_ms,
            len, fl);
    free(frame);
    cr_assert_lt(stall * 1e3, comp_ms, "the loop waited for a compression");
    free(s);
    imgstore_close(h);
    C->passed = 1;
}

/* ---- compressed delivery over HTTP ------------------------------------------ */

/* Fails unless r is a zstd representation of want[len]. */
static void check_zstd_body(const struct resp *r, const void *want, size_t len)
{
    cr_assert_str_eq(hdr(r, "Content-Encoding"), "zstd");
    cr_assert_lt(r->body_len, len / 2, "the stored, compressed bytes are sent");
    cr_assert_eq(ZSTD_getFrameContentSize(r->body, r->body_len), len);
    void *out = malloc(len);
    size_t n = ZSTD_decompress(out, len, r->body, r->body_len);
    cr_assert(!ZSTD_isError(n) && n == len && memcmp(out, want, len) == 0,
              "the frame decodes to the upload");
    free(out);
}

/* Runs curl with `args` (headers to dir/curl.head, body to dir/curl.body);
 * returns the status code curl saw, *head and *body (read_file'd: free()). */
static int curl(const char *args, const char *url, char **head, size_t *hl, char **body,
                size_t *bl)
{
    char cmd[1200], hp[300], bp[300];
    snprintf(hp, sizeof(hp), "%s/curl.head", C->dir);
    snprintf(bp, sizeof(bp), "%s/curl.body", C->dir);
    unlink(bp);
    snprintf(cmd, sizeof(cmd), "curl -sS %s -D %s -o %s -w '%%{http_code}' http://%s", args, hp,
             bp, url);
    FILE *f = popen(cmd, "r");
    cr_assert_not_null(f);
    int code = 0;
    if (fscanf(f, "%d", &code) != 1)
        code = -1;
    cr_assert_eq(pclose(f), 0, "%s", cmd);
    void *v;
    cr_assert_eq(cluster_read_file(hp, &v, hl), 0);
    *head = v;
    if (cluster_read_file(bp, &v, bl) != 0) {
        v = NULL; /* no body written (HEAD, 304) */
        *bl = 0;
    }
    *body = v;
    return code;
}

/* The value of header `name` in curl's header file (as hdr()). */
static const char *curl_hdr(const char *head, size_t hl, const char *name)
{
    struct resp r = {.head = strndup(head, hl)};
    const char *v = hdr(&r, name);
    free(r.head);
    return v;
}

Test(zstd, http_delivery)
{
    imgstore_t *h = cluster_client(C);
    cr_assert_not_null(h);
    char *s = svg(40000, 5);
    size_t len = strlen(s);
    char name[IMGSTORE_NAME_MAX], path[IMGSTORE_NAME_MAX + 2];
    cr_assert_eq(imgstore_put(h, s, len, "image/svg+xml", name), 0);
    snprintf(path, sizeof(path), "/%s", name);
    struct imgstore_stat st;
    uint8_t rec[REC_HEADER + ENC_HEADER];
    read_record_head(name, 0, rec, &st);
    size_t zlen = le32(rec + 12) - ENC_HEADER;
    char tag_id[64], tag_z[64];

    /* Every dataserver: the two holders from their disk, the third through
     * a replica (Read.stored). */
    for (int i = 0; i < C->nds; i++) {
        const char *a = C->ds[i].http_addr;
        struct resp r;
        get(a, path, "Accept-Encoding: gzip, deflate, br, zstd\r\n", &r);
        cr_assert_eq(r.status, 200, "ds%d", i + 1);
        check_zstd_body(&r, s, len);
        cr_assert_eq(r.body_len, zlen);
        cr_assert_str_eq(hdr(&r, "Vary"), "Accept-Encoding");
        cr_assert_str_eq(hdr(&r, "Content-Type"), "image/svg+xml");
        snprintf(tag_z, sizeof(tag_z), "%s", hdr(&r, "ETag"));
        cr_assert(strstr(tag_z, "-zstd\"") && tag_z[0] == '"', "strong, its own: %s", tag_z);
        resp_free(&r);

        get(a, path, NULL, &r);
        cr_assert_eq(r.status, 200);
        cr_assert(r.body_len == len && memcmp(r.body, s, len) == 0, "identity: the upload");
        cr_assert_null(hdr(&r, "Content-Encoding"));
        cr_assert_str_eq(hdr(&r, "Vary"), "Accept-Encoding");
        snprintf(tag_id, sizeof(tag_id), "%s", hdr(&r, "ETag"));
        cr_assert(strcmp(tag_id, tag_z) != 0 && !strstr(tag_id, "zstd"));
        resp_free(&r);

        get(a, path, "Accept-Encoding: zstd;q=0, gzip\r\n", &r);
        cr_assert_eq(r.status, 200);
        cr_assert_null(hdr(&r, "Content-Encoding"), "zstd;q=0 is a no");
        cr_assert_eq(r.body_len, len);
        resp_free(&r);
    }

    const char *a = C->ds[2].http_addr;
    char extra[256];
    struct resp r;
    /* HEAD: the headers of the representation chosen, no body. */
    char req[512];
    int n = snprintf(req, sizeof(req),
                     "HEAD %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\nAccept-Encoding: zstd"
                     "\r\n\r\n", path);
    for (int i = 0; i < C->nds; i++) {
        cr_assert_eq(http(C->ds[i].http_addr, req, (size_t)n, &r), 0);
        cr_assert_eq(r.status, 200);
        cr_assert_eq(r.body_len, 0);
        cr_assert_eq(strtoull(hdr(&r, "Content-Length"), NULL, 10), zlen, "ds%d", i + 1);
        cr_assert_str_eq(hdr(&r, "Content-Encoding"), "zstd");
        cr_assert_str_eq(hdr(&r, "ETag"), tag_z);
        cr_assert_str_eq(hdr(&r, "Vary"), "Accept-Encoding");
        resp_free(&r);
    }
    n = snprintf(req, sizeof(req), "HEAD %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                 path);
    cr_assert_eq(http(a, req, (size_t)n, &r), 0);
    cr_assert_eq(strtoull(hdr(&r, "Content-Length"), NULL, 10), len);
    cr_assert_str_eq(hdr(&r, "ETag"), tag_id);
    resp_free(&r);

    /* 304 against the representation that would be sent. */
    snprintf(extra, sizeof(extra), "Accept-Encoding: zstd\r\nIf-None-Match: %s\r\n", tag_z);
    get(a, path, extra, &r);
    cr_assert_eq(r.status, 304);
    cr_assert_str_eq(hdr(&r, "ETag"), tag_z);
    cr_assert_str_eq(hdr(&r, "Vary"), "Accept-Encoding");
    resp_free(&r);
    snprintf(extra, sizeof(extra), "Accept-Encoding: zstd\r\nIf-None-Match: %s\r\n", tag_id);
    get(a, path, extra, &r);
    cr_assert_eq(r.status, 200, "the identity tag does not match the zstd representation");
    check_zstd_body(&r, s, len);
    resp_free(&r);
    snprintf(extra, sizeof(extra), "If-None-Match: %s\r\n", tag_z);
    get(a, path, extra, &r);
    cr_assert_eq(r.status, 200, "nor the other way round");
    cr_assert_eq(r.body_len, len);
    resp_free(&r);
    snprintf(extra, sizeof(extra), "If-None-Match: %s\r\n", tag_id);
    get(a, path, extra, &r);
    cr_assert_eq(r.status, 304);
    resp_free(&r);

    /* Ranges are of the representation sent. */
    get(a, path, "Accept-Encoding: zstd\r\nRange: bytes=0-99\r\n", &r);
    cr_assert_eq(r.status, 206);
    char want_cr[64];
    snprintf(want_cr, sizeof(want_cr), "bytes 0-99/%zu", zlen);
    cr_assert_str_eq(hdr(&r, "Content-Range"), want_cr);
    cr_assert_str_eq(hdr(&r, "Content-Encoding"), "zstd");
    cr_assert_eq(r.body_len, 100);
    struct resp full;
    get(a, path, "Accept-Encoding: zstd\r\n", &full);
    cr_assert(memcmp(r.body, full.body, 100) == 0, "the frame's first 100 bytes");
    resp_free(&r);
    snprintf(extra, sizeof(extra), "Accept-Encoding: zstd\r\nRange: bytes=%zu-\r\n", zlen);
    get(a, path, extra, &r);
    cr_assert_eq(r.status, 416, "past the end of the zstd representation");
    resp_free(&r);
    snprintf(extra, sizeof(extra), "Range: bytes=%zu-%zu\r\n", len - 10, len - 1);
    get(a, path, extra, &r);
    cr_assert_eq(r.status, 206, "inside the identity representation");
    cr_assert(r.body_len == 10 && memcmp(r.body, s + len - 10, 10) == 0);
    resp_free(&r);
    snprintf(extra, sizeof(extra), "Accept-Encoding: zstd\r\nRange: bytes=10-19\r\nIf-Range: %s\r\n",
             tag_id);
    get(a, path, extra, &r);
    cr_assert_eq(r.status, 200, "If-Range with the other representation's tag: all of it");
    check_zstd_body(&r, s, len);
    resp_free(&r);
    resp_free(&full);

    /* A file stored as sent: no Content-Encoding, no Vary, whatever is asked. */
    size_t jl = 30000;
    uint8_t *jpeg = malloc(jl);
    memset(jpeg, 0x11, jl);
    memcpy(jpeg, "\xFF\xD8\xFF\xE0", 4);
    char jn[IMGSTORE_NAME_MAX], jp[IMGSTORE_NAME_MAX + 2];
    cr_assert_eq(imgstore_put(h, jpeg, jl, "image/jpeg", jn), 0);
    snprintf(jp, sizeof(jp), "/%s", jn);
    for (int i = 0; i < C->nds; i++) {
        get(C->ds[i].http_addr, jp, "Accept-Encoding: zstd\r\n", &r);
        cr_assert_eq(r.status, 200);
        cr_assert(r.body_len == jl && memcmp(r.body, jpeg, jl) == 0);
        cr_assert_null(hdr(&r, "Content-Encoding"));
        cr_assert_null(hdr(&r, "Vary"), "only compressed files vary");
        resp_free(&r);
    }
    free(jpeg);

    /* curl --compressed asks for zstd (libcurl built with it) and decodes. */
    if (system("curl -V 2>/dev/null | grep -qw zstd") == 0) {
        char cmd[700], out[300];
        snprintf(out, sizeof(out), "%s/curl.out", C->dir);
        snprintf(cmd, sizeof(cmd),
                 "curl -sS --compressed -D %s/curl.head -o %s http://%s%s", C->dir, out, a, path);
        cr_assert_eq(system(cmd), 0, "%s", cmd);
        fixture_file_holds(out, s, len, "curl --compressed: the upload");
        char hp[300];
        snprintf(hp, sizeof(hp), "%s/curl.head", C->dir);
        void *head;
        size_t hl;
        cr_assert_eq(cluster_read_file(hp, &head, &hl), 0);
        cr_assert(memmem(head, hl, "Content-Encoding: zstd", 22), "curl got it compressed");
        free(head);

        /* HEAD, 304 and Range with curl, per representation. */
        char url[300], args[300], *hd, *bd;
        size_t hdl, bdl;
        snprintf(url, sizeof(url), "%s%s", a, path);
        int code = curl("-I -H 'Accept-Encoding: zstd'", url, &hd, &hdl, &bd, &bdl);
        cr_assert_eq(code, 200, "curl -I");
        cr_assert_str_eq(curl_hdr(hd, hdl, "Content-Encoding"), "zstd");
        cr_assert_str_eq(curl_hdr(hd, hdl, "ETag"), tag_z);
        cr_assert_str_eq(curl_hdr(hd, hdl, "Vary"), "Accept-Encoding");
        cr_assert_eq(strtoull(curl_hdr(hd, hdl, "Content-Length"), NULL, 10), zlen);
        free(hd);
        free(bd);
        code = curl("-I", url, &hd, &hdl, &bd, &bdl);
        cr_assert_eq(code, 200);
        cr_assert_null(curl_hdr(hd, hdl, "Content-Encoding"));
        cr_assert_str_eq(curl_hdr(hd, hdl, "ETag"), tag_id);
        cr_assert_eq(strtoull(curl_hdr(hd, hdl, "Content-Length"), NULL, 10), len);
        free(hd);
        free(bd);
        snprintf(args, sizeof(args), "-H 'Accept-Encoding: zstd' -H 'If-None-Match: %s'", tag_z);
        code = curl(args, url, &hd, &hdl, &bd, &bdl);
        cr_assert_eq(code, 304, "curl: the zstd tag with zstd");
        cr_assert_str_eq(curl_hdr(hd, hdl, "ETag"), tag_z);
        cr_assert_eq(bdl, 0);
        free(hd);
        free(bd);
        snprintf(args, sizeof(args), "-H 'If-None-Match: %s'", tag_z);
        code = curl(args, url, &hd, &hdl, &bd, &bdl);
        cr_assert_eq(code, 200, "curl: the zstd tag without zstd");
        cr_assert(bdl == len && memcmp(bd, s, len) == 0);
        free(hd);
        free(bd);
        code = curl("-r 0-99 -H 'Accept-Encoding: zstd'", url, &hd, &hdl, &bd, &bdl);
        cr_assert_eq(code, 206, "curl -r with zstd");
        snprintf(want_cr, sizeof(want_cr), "bytes 0-99/%zu", zlen);
        cr_assert_str_eq(curl_hdr(hd, hdl, "Content-Range"), want_cr);
        cr_assert_str_eq(curl_hdr(hd, hdl, "Content-Encoding"), "zstd");
        cr_assert(bdl == 100 && memcmp(bd, "\x28\xB5\x2F\xFD", 4) == 0, "the frame's start");
        free(hd);
        free(bd);
        code = curl("-r 0-99", url, &hd, &hdl, &bd, &bdl);
        cr_assert_eq(code, 206, "curl -r identity");
        snprintf(want_cr, sizeof(want_cr), "bytes 0-99/%zu", len);
        cr_assert_str_eq(curl_hdr(hd, hdl, "Content-Range"), want_cr);
        cr_assert(bdl == 100 && memcmp(bd, s, 100) == 0, "the upload's first 100 bytes");
        free(hd);
        free(bd);
    } else {
        cr_log_warn("curl without zstd: the curl check is skipped");
    }
    free(s);
    imgstore_close(h);
    C->passed = 1;
}

/* ---- through a caching proxy (varnish) ---------------------------------------- */

/* Starts varnishd in front of the origin at 127.0.0.1:backend_port as
 * docs/http.md advises for compressed files: its own gzip handling off
 * (it would rewrite Accept-Encoding to gzip), Accept-Encoding normalized to
 * "zstd" or nothing so that Vary keeps two variants at most. A 1 s TTL
 * with a long keep makes it revalidate with the stored ETag. */

Test(zstd, through_caching_proxy)
{
    if (system("command -v varnishd >/dev/null 2>&1") != 0) {
        cr_log_warn("varnishd is not installed: skipping the caching-proxy test");
        return;
    }
    imgstore_t *h = cluster_client(C);
    cr_assert_not_null(h);
    char *s = svg(30000, 6);
    size_t len = strlen(s);
    char name[IMGSTORE_NAME_MAX], path[IMGSTORE_NAME_MAX + 2];
    cr_assert_eq(imgstore_put(h, s, len, "image/svg+xml", name), 0);
    snprintf(path, sizeof(path), "/%s", name);
    char listen[64];
    const char *origin = C->ds[0].http_addr;
    /* Accept-Encoding cut down to "zstd" or nothing, so the cache keeps
     * exactly two variants (docs/http.md). */
    pid_t vp = cluster_varnish_start(C->dir, strrchr(origin, ':') + 1,
                                     "  if (req.http.Accept-Encoding ~ \"(^|,)\\s*zstd\\s*(,|$)\") {\n"
                                     "    set req.http.Accept-Encoding = \"zstd\";\n"
                                     "  } else {\n    unset req.http.Accept-Encoding;\n  }\n",
                                     listen, sizeof(listen));
    cr_assert(vp > 0);
    struct resp r;
    int up = 0;
    const char *hz = "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    for (int i = 0; i < 100 && !up; i++) {
        if (http(listen, hz, strlen(hz), &r) == 0) {
            up = r.status == 200;
            resp_free(&r);
        }
        if (!up)
            usleep(100 * 1000);
    }
    if (!up) {
        kill(vp, SIGKILL);
        waitpid(vp, NULL, 0);
        cluster_dump_logs(C, 40);
        cr_assert_fail("varnish did not start (log/varnish.log)");
    }
    const char *zae = "Accept-Encoding: gzip, deflate, br, zstd\r\n";
    /* The zstd variant, then the identity one: each fetched once. */
    get(listen, path, zae, &r);
    cr_assert_eq(r.status, 200);
    check_zstd_body(&r, s, len);
    cr_assert_str_eq(hdr(&r, "X-Cache"), "MISS");
    char tag_z[64];
    snprintf(tag_z, sizeof(tag_z), "%s", hdr(&r, "ETag"));
    resp_free(&r);
    get(listen, path, NULL, &r);
    cr_assert_eq(r.status, 200);
    cr_assert(r.body_len == len && memcmp(r.body, s, len) == 0, "identity through the cache");
    cr_assert_null(hdr(&r, "Content-Encoding"));
    cr_assert_str_eq(hdr(&r, "X-Cache"), "MISS", "another variant (Vary)");
    resp_free(&r);
    get(listen, path, "Accept-Encoding: br, zstd\r\n", &r);
    cr_assert_str_eq(hdr(&r, "X-Cache"), "HIT");
    check_zstd_body(&r, s, len);
    resp_free(&r);
    get(listen, path, "Accept-Encoding: gzip\r\n", &r);
    cr_assert_str_eq(hdr(&r, "X-Cache"), "HIT");
    cr_assert(r.body_len == len && memcmp(r.body, s, len) == 0, "no zstd: never the frame");
    resp_free(&r);
    char extra[200];
    snprintf(extra, sizeof(extra), "%sIf-None-Match: %s\r\n", zae, tag_z);
    get(listen, path, extra, &r);
    cr_assert_eq(r.status, 304, "the cache matches the zstd tag");
    resp_free(&r);
    /* Vary, HEAD and Range of each cached variant, from the cache. */
    get(listen, path, zae, &r);
    size_t zlen = r.body_len;
    cr_assert_str_eq(hdr(&r, "Vary"), "Accept-Encoding", "the cache passes Vary on");
    struct resp full = r;
    char req[512];
    int n = snprintf(req, sizeof(req), "HEAD %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n%s"
                     "\r\n", path, zae);
    cr_assert_eq(http(listen, req, (size_t)n, &r), 0);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.body_len, 0, "HEAD: no body");
    cr_assert_str_eq(hdr(&r, "Content-Encoding"), "zstd");
    cr_assert_str_eq(hdr(&r, "ETag"), tag_z);
    cr_assert_str_eq(hdr(&r, "Vary"), "Accept-Encoding");
    resp_free(&r);
    snprintf(extra, sizeof(extra), "%sRange: bytes=0-99\r\n", zae);
    get(listen, path, extra, &r);
    cr_assert_eq(r.status, 206, "a range of the zstd variant");
    char want_cr[64];
    snprintf(want_cr, sizeof(want_cr), "bytes 0-99/%zu", zlen);
    cr_assert_str_eq(hdr(&r, "Content-Range"), want_cr);
    cr_assert_str_eq(hdr(&r, "Content-Encoding"), "zstd");
    cr_assert(r.body_len == 100 && memcmp(r.body, full.body, 100) == 0);
    resp_free(&r);
    resp_free(&full);
    get(listen, path, "Range: bytes=0-99\r\n", &r);
    cr_assert_eq(r.status, 206, "a range of the identity variant");
    snprintf(want_cr, sizeof(want_cr), "bytes 0-99/%zu", len);
    cr_assert_str_eq(hdr(&r, "Content-Range"), want_cr);
    cr_assert_null(hdr(&r, "Content-Encoding"));
    cr_assert(r.body_len == 100 && memcmp(r.body, s, 100) == 0);
    resp_free(&r);
    /* A file stored as sent: one variant, no Vary, through the cache too. */
    size_t jl = 20000;
    uint8_t *jpeg = malloc(jl);
    memset(jpeg, 0x22, jl);
    memcpy(jpeg, "\xFF\xD8\xFF\xE0", 4);
    char jn[IMGSTORE_NAME_MAX], jp[IMGSTORE_NAME_MAX + 2];
    cr_assert_eq(imgstore_put(h, jpeg, jl, "image/jpeg", jn), 0);
    snprintf(jp, sizeof(jp), "/%s", jn);
    get(listen, jp, zae, &r);
    cr_assert_eq(r.status, 200);
    cr_assert(r.body_len == jl && memcmp(r.body, jpeg, jl) == 0);
    cr_assert_null(hdr(&r, "Content-Encoding"));
    cr_assert_null(hdr(&r, "Vary"), "only compressed files vary");
    resp_free(&r);
    get(listen, jp, NULL, &r);
    cr_assert_str_eq(hdr(&r, "X-Cache"), "HIT", "one variant for every Accept-Encoding");
    resp_free(&r);
    free(jpeg);
    /* Past the TTL: the cache revalidates each variant with its own tag,
     * and the origin answers 304 for the representation it would send. */
    usleep(1600 * 1000);
    get(listen, path, zae, &r);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(hdr(&r, "X-Was-304"), "true", "zstd variant not revalidated with 304");
    check_zstd_body(&r, s, len);
    resp_free(&r);
    get(listen, path, NULL, &r);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(hdr(&r, "X-Was-304"), "true", "identity variant not revalidated with 304");
    cr_assert(r.body_len == len && memcmp(r.body, s, len) == 0);
    resp_free(&r);
    kill(vp, SIGTERM);
    waitpid(vp, NULL, 0);
    free(s);
    imgstore_close(h);
    C->passed = 1;
}

/* ---- compressed block copies ------------------------------------------------ */

/* Records stored as sent (--compress-level 0, like blocks written before
 * format 3): a repair copies them in zstd-compressed chunks. */
static const char *copy_args[] = {"--compress-level", "0", NULL};

static void start_copy(void)
{
    struct cluster_opts o = {.ndataservers = 3, .replicas = 2, .ds_args = copy_args,
                             .heartbeat_timeout_ms = 2000};
    cr_assert_eq(fixture_start(&o), 0, "cluster did not start");
}

TestSuite(zstd_copy, .init = start_copy, .fini = fixture_stop, .timeout = 120);

Test(zstd_copy, repair_sends_compressed_chunks)
{
    imgstore_t *h = cluster_client(C);
    cr_assert_not_null(h);
    enum { N = 60 };
    static char names[N][IMGSTORE_NAME_MAX];
    static char *data[N];
    size_t lens[N], total = 0;
    for (int i = 0; i < N; i++) {
        data[i] = svg(16000, 100 + (unsigned)i);
        lens[i] = strlen(data[i]);
        total += lens[i];
        cr_assert_eq(imgstore_put(h, data[i], lens[i], "image/svg+xml", names[i]), 0);
    }
    struct imgstore_stat st;
    cr_assert_eq(imgstore_stat(h, names[0], &st), 0);
    uint64_t block = st.block_id;
    static int in_block[N]; /* the files of names[0]'s block (uploads spread over blocks) */
    size_t in_total = 0;
    for (int i = 0; i < N; i++) {
        struct imgstore_stat s2;
        cr_assert_eq(imgstore_stat(h, names[i], &s2), 0);
        in_block[i] = s2.block_id == block;
        in_total += in_block[i] ? lens[i] : 0;
    }
    imgstore_close(h);
    int victim = cluster_ds_index(C, st.replicas[0]);
    int keeper = cluster_ds_index(C, st.replicas[1]);
    int target = 3 - victim - keeper;
    cr_assert(victim >= 0 && keeper >= 0 && target >= 0 && target < 3);

    cluster_signal_proc(&C->ds[victim], SIGKILL);
    cr_assert_eq(cluster_wait_down(C, 1, 15000), 0);
    int moved = 0;
    for (int t = 0; t < 300 && !moved; t++) {
        imgstore_t *h2 = cluster_client(C);
        struct imgstore_stat s3;
        if (h2 && imgstore_stat(h2, names[0], &s3) == 0 && s3.nreplicas == 2)
            moved = cluster_ds_index(C, s3.replicas[0]) == target ||
                    cluster_ds_index(C, s3.replicas[1]) == target;
        imgstore_close(h2);
        if (!moved)
            usleep(100 * 1000);
    }
    cr_assert(moved, "block %llu not repaired onto ds%d", (unsigned long long)block, target + 1);

    /* Every copy ran between the two survivors: what one sent the other
     * received. Wait for the last copies (other blocks) to end. */
    double wire = 0, raw = 0, sent_wire = 0, sent_raw = 0;
    for (int t = 0; t < 100; t++) {
        wire = raw = sent_wire = sent_raw = 0;
        for (int k = 0; k < 2; k++) {
            int d = k ? keeper : target;
            wire += metric(d, "imgstore_ds_copy_received_bytes_total{form=\"wire\"}");
            raw += metric(d, "imgstore_ds_copy_received_bytes_total{form=\"raw\"}");
            sent_wire += metric(d, "imgstore_ds_copy_sent_bytes_total{form=\"wire\"}");
            sent_raw += metric(d, "imgstore_ds_copy_sent_bytes_total{form=\"raw\"}");
        }
        if (sent_wire == wire && sent_raw == raw)
            break;
        usleep(100 * 1000);
    }
    fprintf(stderr, "[zstd_copy] repair after losing ds%d (%zu bytes of SVG records uploaded): "
                    "%.0f bytes on the wire for %.0f block bytes copied (%.1f %%)\n",
            victim + 1, total, wire, raw, raw > 0 ? 100 * wire / raw : 0);
    cr_assert_geq(raw, (double)in_total, "the block's records were copied");
    cr_assert_lt(wire, raw / 2, "the chunks went compressed");
    cr_assert_eq(sent_wire, wire, "what the sources sent is what the targets got");
    cr_assert_eq(sent_raw, raw);

    /* The new copy holds every file, byte for byte. */
    h = cluster_client(C);
    for (int i = 0; i < N; i++) {
        void *got = NULL;
        size_t got_len = 0;
        if (in_block[i]) {
            cr_assert_eq(imgstore_get_from(h, names[i], C->ds[target].addr, &got, &got_len), 0,
                         "file %d from the new copy", i);
            cr_assert(got_len == lens[i] && memcmp(got, data[i], lens[i]) == 0, "file %d", i);
            free(got);
        }
        free(data[i]);
    }
    imgstore_close(h);
    C->passed = 1;
}

/* Copy bytes (form "wire" or "raw") every dataserver of the cluster sent
 * (sent != 0) or received, summed. */
static double copy_total(int sent, const char *form)
{
    char m[96];
    snprintf(m, sizeof(m), "imgstore_ds_copy_%s_bytes_total{form=\"%s\"}",
             sent ? "sent" : "received", form);
    double v = 0;
    for (int i = 0; i < C->nds; i++)
        v += metric(i, m);
    return v;
}

/* A drain moves blocks with the same copies as a repair: compressed chunks. */
Test(zstd_copy, drain_sends_compressed_chunks)
{
    imgstore_t *h = cluster_client(C);
    cr_assert_not_null(h);
    enum { N = 40 };
    static char names[N][IMGSTORE_NAME_MAX];
    static char *data[N];
    size_t lens[N];
    for (int i = 0; i < N; i++) {
        data[i] = svg(16000, 300 + (unsigned)i);
        lens[i] = strlen(data[i]);
        cr_assert_eq(imgstore_put(h, data[i], lens[i], "image/svg+xml", names[i]), 0);
    }
    struct imgstore_stat st;
    cr_assert_eq(imgstore_stat(h, names[0], &st), 0);
    int victim = cluster_ds_index(C, st.replicas[0]);
    cr_assert_geq(victim, 0);
    imgstore_close(h);
    double w0 = copy_total(0, "wire"), r0 = copy_total(0, "raw");
    /* Its server id, from `ds-admin --json servers` (each object: id, then address). */
    struct cluster_run run;
    cr_assert_eq(cluster_admin(C, 30000, &run, "--json", "servers", NULL), 0, "%s", run.err);
    char path[160], id[128] = "";
    snprintf(path, sizeof(path), "[address=%s].id", C->ds[victim].addr);
    json_at_str(run.out, path, id, sizeof(id));
    cr_assert(id[0], "%s", run.out);
    cluster_run_free(&run);
    int rc = cluster_admin(C, 90000, &run, "drain", id, "--wait", NULL);
    cr_assert_eq(rc, 0, "drain --wait: %s%s", run.out, run.err);
    cluster_run_free(&run);
    double wire = 0, raw = 0;
    for (int t = 0; t < 100; t++) {
        wire = copy_total(0, "wire") - w0;
        raw = copy_total(0, "raw") - r0;
        if (copy_total(1, "wire") - w0 == wire && copy_total(1, "raw") - r0 == raw)
            break;
        usleep(100 * 1000);
    }
    fprintf(stderr, "[zstd_copy] drain of ds%d: %.0f bytes on the wire for %.0f block bytes "
                    "copied (%.1f %%)\n",
            victim + 1, wire, raw, raw > 0 ? 100 * wire / raw : 0);
    cr_assert_geq(raw, (double)lens[0], "the drained server's blocks were copied");
    cr_assert_lt(wire, raw / 2, "the chunks went compressed");
    cr_assert_eq(copy_total(1, "wire") - w0, wire, "what the sources sent the targets got");
    /* Every file from every holder, none on the drained server. */
    h = cluster_client(C);
    for (int i = 0; i < N; i++) {
        struct imgstore_stat s2;
        cr_assert_eq(imgstore_stat(h, names[i], &s2), 0);
        for (int k = 0; k < s2.nreplicas; k++) {
            int d = cluster_ds_index(C, s2.replicas[k]);
            cr_assert(d >= 0 && d != victim, "file %d still on the drained server", i);
            void *got = NULL;
            size_t got_len = 0;
            cr_assert_eq(imgstore_get_from(h, names[i], C->ds[d].addr, &got, &got_len), 0);
            cr_assert(got_len == lens[i] && memcmp(got, data[i], lens[i]) == 0, "file %d", i);
            free(got);
        }
        free(data[i]);
    }
    imgstore_close(h);
    C->passed = 1;
}
