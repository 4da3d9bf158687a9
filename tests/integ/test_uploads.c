/* Integration test: what an upload must be (docs/http.md, "Uploads";
 * client/imgstore.h, imgstore_put).
 *
 *  - Empty uploads are refused everywhere: imgstore_put with len 0 answers
 *    IMGSTORE_EINVAL, `imgstore put` of an empty file exits 1 with one line
 *    saying so, an HTTP POST or PUT with an empty body gets 400; nothing is
 *    stored.
 *  - An upload whose bytes are another image format than the type it
 *    claims is stored with the format of its bytes (mime_pick): PNG bytes
 *    sent as image/jpeg are image/png, over the library and over HTTP
 *    (also served with that Content-Type); bytes without a known signature
 *    keep the claimed type; without a claim the bytes decide. */
#include "tests/integ/cluster.h"
#include "tests/integ/fixture.h"
#include "tests/integ/json_check.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define IO_MS 10000

static void setup(void)
{
    cr_assert_eq(fixture_start(&(struct cluster_opts){.ndataservers = 2, .replicas = 2}), 0);
}

TestSuite(uploads, .init = setup, .fini = fixture_stop, .timeout = 120);

static const char png[] = "\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR a small png";
static const char gif[] = "GIF89a\x01\x00\x01\x00 a small gif";
static const char jpeg[] = "\xff\xd8\xff\xe0\x00\x10JFIF a small jpeg";

/* The secret of the cluster's writer key ("app SECRET" in C->key_writer). */
static void writer_secret(char *out, size_t n)
{
    void *buf = NULL;
    size_t len = 0;
    cr_assert_eq(cluster_read_file(C->key_writer, &buf, &len), 0);
    char *sp = memchr(buf, ' ', len);
    cr_assert_not_null(sp);
    size_t s = (size_t)((char *)buf + len - (sp + 1));
    while (s > 0 && (sp[s] == '\n' || sp[s] == '\0'))
        s--;
    cr_assert_lt(s, n);
    memcpy(out, sp + 1, s);
    out[s] = '\0';
    free(buf);
}

/* Sends one HTTP request (head, then len bytes of body) on a fresh
 * connection to addr and reads the whole answer (the server closes after
 * "Connection: close") into out (n bytes). Returns the status code or -1. */
static int http(const char *addr, const char *head, const void *body, size_t len, char *out,
                size_t n)
{
    int fd = cluster_connect(addr, IO_MS);
    if (fd < 0)
        return -1;
    if (cluster_send_all(fd, head, strlen(head)) != 0 ||
        (len && cluster_send_all(fd, body, len) != 0)) {
        close(fd);
        return -1;
    }
    size_t got = 0;
    ssize_t r;
    while (got + 1 < n && (r = read(fd, out + got, n - 1 - got)) > 0)
        got += (size_t)r;
    out[got] = '\0';
    close(fd);
    int status = -1;
    return sscanf(out, "HTTP/1.1 %d", &status) == 1 ? status : -1;
}

/* Uploads over HTTP to dataserver 0: METHOD / with the writer key. */
static int http_upload(const char *method, const void *body, size_t len, const char *type,
                       char *out, size_t n)
{
    char secret[200], head[600];
    writer_secret(secret, sizeof(secret));
    snprintf(head, sizeof(head),
             "%s / HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\n%s%s%sContent-Length: "
             "%zu\r\nConnection: close\r\n\r\n",
             method, secret, type ? "Content-Type: " : "", type ? type : "", type ? "\r\n" : "",
             len);
    return http(C->ds[0].http_addr, head, body, len, out, n);
}

/* The stored type of `name` (imgstore_stat). */
static void assert_mime(imgstore_t *h, const char *name, const char *want, const char *what)
{
    struct imgstore_stat st;
    int rc = imgstore_stat(h, name, &st);
    cr_assert_eq(rc, 0, "%s: stat %s: %s", what, name, imgstore_strerror(rc));
    cr_assert_str_eq(st.mime, want, "%s: stored as %s, want %s", what, st.mime, want);
}

/* Files stored on the dataservers (their imgstore_ds_files gauges). */
static double files_total(void)
{
    double n = 0;
    for (int i = 0; i < C->nds; i++) {
        double v = cluster_metric(C->ds[i].http_addr, "imgstore_ds_files");
        cr_assert_geq(v, 0, "no imgstore_ds_files from %s", C->ds[i].http_addr);
        n += v;
    }
    return n;
}

Test(uploads, empty_refused)
{
    imgstore_t *h = cluster_client(C);
    cr_assert_not_null(h);
    double before = files_total();
    char name[IMGSTORE_NAME_MAX];
    cr_assert_eq(imgstore_put(h, "", 0, "image/jpeg", name), IMGSTORE_EINVAL);
    cr_assert_eq(imgstore_put(h, NULL, 0, NULL, name), IMGSTORE_EINVAL);
    imgstore_close(h);

    /* The command line: exit 1, one line naming the file. */
    char path[600];
    snprintf(path, sizeof(path), "%s/empty.jpg", C->dir);
    cr_assert_eq(cluster_write_file(path, "", 0), 0);
    const char *argv[] = {"imgstore", "--ns", C->ns.addr, "put", path, NULL};
    const char *del[] = {"IMGSTORE_NS", NULL};
    struct cluster_run r;
    cr_assert_eq(cluster_run(C, argv, NULL, del, IO_MS, &r), 0);
    cr_assert_eq(r.exit_code, 1, "imgstore put of an empty file: exit %d (%s)", r.exit_code,
                 r.err);
    char want[700];
    snprintf(want, sizeof(want), "imgstore: put %s: empty file: nothing to store\n", path);
    cr_assert_str_eq(r.err, want);
    cr_assert_eq(r.out_len, 0, "printed a name: %s", r.out);
    cluster_run_free(&r);

    /* HTTP: 400 for POST and PUT, with and without a type. */
    char out[4096];
    int st = http_upload("POST", "", 0, "image/jpeg", out, sizeof(out));
    cr_assert_eq(st, 400, "POST of an empty body: %s", out);
    cr_assert_not_null(strstr(out, "empty body"), "%s", out);
    st = http_upload("PUT", "", 0, NULL, out, sizeof(out));
    cr_assert_eq(st, 400, "PUT of an empty body: %s", out);
    cr_assert_eq(files_total(), before, "an empty upload stored something");
    /* And a real upload does count, so the check above can see one. */
    h = cluster_client(C);
    cr_assert_eq(imgstore_put(h, png, sizeof(png), NULL, name), 0);
    imgstore_close(h);
    cr_assert_gt(files_total(), before, "imgstore_ds_files did not count an upload");
    C->passed = 1;
}

/* The name in a 201 answer's JSON body ("name":"..."). */
static void created_name(const char *out, char name[IMGSTORE_NAME_MAX])
{
    json_at_str(json_http_body(out), "name", name, IMGSTORE_NAME_MAX);
    cr_assert(name[0], "an empty name in %s", out);
}

Test(uploads, type_follows_the_bytes)
{
    imgstore_t *h = cluster_client(C);
    cr_assert_not_null(h);
    char name[IMGSTORE_NAME_MAX];
    /* Library: a claim the bytes contradict loses; one they do not, stays. */
    cr_assert_eq(imgstore_put(h, png, sizeof(png), "image/jpeg", name), 0);
    assert_mime(h, name, "image/png", "PNG bytes claimed image/jpeg");
    cr_assert_eq(imgstore_put(h, jpeg, sizeof(jpeg), "image/jpeg", name), 0);
    assert_mime(h, name, "image/jpeg", "JPEG bytes claimed image/jpeg");
    cr_assert_eq(imgstore_put(h, gif, sizeof(gif), NULL, name), 0);
    assert_mime(h, name, "image/gif", "GIF bytes, no claim");
    static const char svg[] = "<svg xmlns=\"http://www.w3.org/2000/svg\"/>";
    cr_assert_eq(imgstore_put(h, svg, sizeof(svg) - 1, "image/svg+xml", name), 0);
    assert_mime(h, name, "image/svg+xml", "SVG (no signature) keeps its claim");
    static const char text[] = "BM is not a bitmap here";
    cr_assert_eq(imgstore_put(h, text, sizeof(text) - 1, "text/plain", name), 0);
    assert_mime(h, name, "text/plain", "text starting with BM keeps its claim");

    /* HTTP: GIF bytes sent as image/png are stored and served as GIF. */
    char out[4096];
    int st = http_upload("POST", gif, sizeof(gif), "image/png", out, sizeof(out));
    cr_assert_eq(st, 201, "%s", out);
    created_name(out, name);
    assert_mime(h, name, "image/gif", "GIF bytes POSTed as image/png");
    char head[200];
    snprintf(head, sizeof(head), "GET /%s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", name);
    st = http(C->ds[1].http_addr, head, NULL, 0, out, sizeof(out));
    cr_assert_eq(st, 200, "%s", out);
    cr_assert_not_null(strcasestr(out, "Content-Type: image/gif"), "served as: %s", out);
    imgstore_close(h);
    C->passed = 1;
}
