/* Integration test: the dataserver's origin over TLS (--https, docs/http.md
 * "HTTPS") and the CDN shields exempt from 404 slowing (--miss-exempt).
 * Each test makes a throw-away CA and server certificates for 127.0.0.1
 * (IP SAN) with the `openssl` command in its own temp folder, starts a
 * small cluster whose dataservers serve HTTPS with them, and checks with
 * curl and `openssl s_client` what a CDN would see: the same bytes and
 * headers as on plain HTTP (GET, HEAD, Range, If-None-Match), keep-alive,
 * TLS 1.2 and 1.3 only, ALPN http/1.1, an untrusted CA refused; then the
 * hostile peers (plain HTTP to the TLS port, a stalled or half-sent
 * handshake: closed within the header timeout, counted), a key file that
 * others can read or that does not match (refused at start), and a
 * certificate rotated on disk served without a restart. */
#include "proto/fname.h"
#include "tests/integ/cluster.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define IO_MS 5000
#define OUT_MAX (1 << 16)

static struct cluster *cl;
static char certs[64]; /* the test's folder of certificates ("" when none) */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void teardown(void)
{
    cluster_stop(cl);
    cl = NULL;
    if (certs[0] && !getenv("IMGSTORE_KEEP"))
        nftw(certs, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    certs[0] = '\0';
}

TestSuite(https, .fini = teardown, .timeout = 180);

/* Runs a shell command (formatted) with its stdout (and whatever the
 * command redirects there) in out (cap bytes, NUL-terminated; NULL: dropped).
 * Returns its exit code, or -1 when it did not exit. */
static int run(char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int run(char *out, size_t cap, const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    fflush(NULL);
    FILE *f = popen(cmd, "r");
    cr_assert_not_null(f, "popen %s: %s", cmd, strerror(errno));
    char tmp[4096];
    size_t len = 0, n;
    while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0) {
        if (out && len + 1 < cap) {
            size_t take = n < cap - 1 - len ? n : cap - 1 - len;
            memcpy(out + len, tmp, take);
            len += take;
        }
    }
    if (out)
        out[len] = '\0';
    int st = pclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* A certificate NAME.pem / NAME.key for 127.0.0.1 signed by the test CA. */
static void make_server_cert(const char *name, int serial)
{
    char out[OUT_MAX];
    int rc = run(out, sizeof(out),
                 "cd %s && openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
                 "-keyout %s.key -out %s.csr -subj /CN=127.0.0.1 2>&1 && "
                 "openssl x509 -req -in %s.csr -CA ca.pem -CAkey ca.key -set_serial %d -days 2 "
                 "-extfile ext.cnf -out %s.pem 2>&1 && chmod 600 %s.key",
                 certs, name, name, name, serial, name, name);
    cr_assert_eq(rc, 0, "openssl: %s", out);
}

/* The test's folder with ca.pem (the CA the servers' certificates chain
 * to), other.pem (a CA nobody uses), srv1 (serial 1001) and srv2 (serial
 * 2002), and live.pem / live.key: srv1, what the dataservers are given. */
static void make_certs(void)
{
    char out[OUT_MAX];
    snprintf(certs, sizeof(certs), "/tmp/imgstore-tls-XXXXXX");
    cr_assert_not_null(mkdtemp(certs));
    int rc = run(out, sizeof(out),
                 "cd %s && for ca in ca other; do openssl req -x509 -newkey ec "
                 "-pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $ca.key -out $ca.pem -days 2 "
                 "-subj /CN=imgstore-test-$ca 2>&1 || exit 1; done && printf '%%s\\n' "
                 "subjectAltName=IP:127.0.0.1 basicConstraints=CA:FALSE "
                 "extendedKeyUsage=serverAuth > ext.cnf",
                 certs);
    cr_assert_eq(rc, 0, "openssl: %s", out);
    make_server_cert("srv1", 1001);
    make_server_cert("srv2", 2002);
    rc = run(out, sizeof(out), "cd %s && cp -p srv1.pem live.pem && cp -p srv1.key live.key 2>&1",
             certs);
    cr_assert_eq(rc, 0, "%s", out);
}

/* Starts one dataserver (one replica) serving HTTPS with live.pem/live.key
 * and `more` arguments (NULL-terminated, at most 8). */
static void start(const char *const *more)
{
    static char cert[128], key[128];
    static const char *args[16];
    snprintf(cert, sizeof(cert), "%s/live.pem", certs);
    snprintf(key, sizeof(key), "%s/live.key", certs);
    int n = 0;
    args[n++] = "--tls-cert";
    args[n++] = cert;
    args[n++] = "--tls-key";
    args[n++] = key;
    for (int i = 0; more && more[i] && n < 15; i++)
        args[n++] = more[i];
    args[n] = NULL;
    struct cluster_opts o = {.ndataservers = 1, .replicas = 1, .ds_args = args, .https = 1};
    cr_assert_eq(cluster_start(&o, &cl), 0);
}

/* Uploads one file of len bytes through the library; its name in name. */
static void put_file(size_t len, char name[IMGSTORE_NAME_MAX])
{
    cr_assert_eq(cluster_put_sample(cl, len, name), 0);
}

/* curl with the test CA, at most 10 s, and `opts`. */
#define CURL "curl -sS --max-time 10 --cacert %s/ca.pem "

/* The serial the HTTPS port serves now ("serial=07D2"), in out. */
static void served_serial(char *out, size_t cap)
{
    run(out, cap,
        "openssl s_client -connect %s -CAfile %s/ca.pem </dev/null 2>/dev/null | "
        "openssl x509 -noout -serial",
        cl->ds[0].https_addr, certs);
    out[strcspn(out, "\n")] = '\0';
}

/* ---- raw sockets --------------------------------------------------------------- */

#define send_all cluster_send_all

/* Waits up to ms for the server to close fd; what it sent before is kept
 * in got (cap bytes, NUL-terminated). Returns the milliseconds it took, or
 * -1 when it stayed open. */
static int64_t wait_closed(int fd, int ms, char *got, size_t cap)
{
    int64_t t0 = cluster_now_ms();
    size_t len = 0;
    got[0] = '\0';
    for (;;) {
        int64_t left = t0 + ms - cluster_now_ms();
        if (left <= 0)
            return -1;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, (int)left) <= 0)
            continue;
        char buf[4096];
        ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n > 0 && len + 1 < cap) {
            size_t take = (size_t)n < cap - 1 - len ? (size_t)n : cap - 1 - len;
            memcpy(got + len, buf, take);
            len += take;
            got[len] = '\0';
        }
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            return cluster_now_ms() - t0;
    }
}

/* ---- the origin over TLS ------------------------------------------------------ */

Test(https, serves_like_plain_http)
{
    make_certs();
    char tok[128], out[OUT_MAX];
    snprintf(tok, sizeof(tok), "%s/token", certs);
    cr_assert_eq(cluster_write_file(tok, "sekrit\n", 7), 0);
    cr_assert_eq(chmod(tok, 0600), 0); /* a secret: refused when others may read it */
    const char *const more[] = {"--upload-token-file", tok, NULL};
    start(more);
    char name[IMGSTORE_NAME_MAX];
    size_t len = 300000;
    put_file(len, name);
    char *want = malloc(len);
    cluster_fill(want, len, 7, len);
    char path[256], url[256];
    snprintf(path, sizeof(path), "%s/got", certs);
    snprintf(url, sizeof(url), "https://%s/%s", cl->ds[0].https_addr, name);

    /* GET: the same bytes. */
    int rc = run(out, sizeof(out), CURL "-o %s -w '%%{http_code} %%{http_version}' %s 2>&1",
                 certs, path, url);
    cr_assert_eq(rc, 0, "curl: %s", out);
    cr_assert_str_eq(out, "200 1.1");
    void *got;
    size_t got_len;
    cr_assert_eq(cluster_read_file(path, &got, &got_len), 0);
    cr_assert_eq(got_len, len);
    cr_assert(memcmp(got, want, len) == 0, "the bytes over HTTPS differ");
    free(got);

    /* HEAD: the GET headers, no body. */
    rc = run(out, sizeof(out), CURL "-I %s 2>&1", certs, url);
    cr_assert_eq(rc, 0, "curl: %s", out);
    cr_assert(strncmp(out, "HTTP/1.1 200", 12) == 0, "%s", out);
    cr_assert(strcasestr(out, "\nContent-Length: 300000"), "%s", out);
    char etag[64] = "";
    const char *e = strcasestr(out, "\nETag: ");
    cr_assert_not_null(e, "%s", out);
    snprintf(etag, sizeof(etag), "%.*s", (int)strcspn(e + 7, "\r\n"), e + 7);

    /* Range: 206 and the bytes asked. */
    rc = run(out, sizeof(out), CURL "-r 1000-1999 -o %s -w '%%{http_code}' %s 2>&1", certs, path,
             url);
    cr_assert_eq(rc, 0, "curl: %s", out);
    cr_assert_str_eq(out, "206");
    cr_assert_eq(cluster_read_file(path, &got, &got_len), 0);
    cr_assert_eq(got_len, 1000);
    cr_assert(memcmp(got, want + 1000, 1000) == 0, "the range over HTTPS differs");
    free(got);

    /* Conditional GET: 304. */
    rc = run(out, sizeof(out), CURL "-H 'If-None-Match: %s' -o /dev/null -w '%%{http_code}' %s 2>&1",
             certs, etag, url);
    cr_assert_eq(rc, 0, "curl: %s", out);
    cr_assert_str_eq(out, "304");

    /* Keep-alive: three requests, one connection (one TLS handshake). */
    double hs0 = cluster_metric(cl->ds[0].http_addr, "imgstore_ds_tls_handshakes_total{result=\"done\"}");
    rc = run(out, sizeof(out),
             CURL "-o /dev/null -o /dev/null -o /dev/null -w '%%{num_connects} %%{http_code}\\n' "
                  "%s https://%s/healthz %s 2>&1",
             certs, url, cl->ds[0].https_addr, url);
    cr_assert_eq(rc, 0, "curl: %s", out);
    cr_assert_str_eq(out, "1 200\n0 200\n0 200\n");
    double hs1 = cluster_metric(cl->ds[0].http_addr, "imgstore_ds_tls_handshakes_total{result=\"done\"}");
    cr_assert_eq(hs1 - hs0, 1, "%g handshakes for one keep-alive connection", hs1 - hs0);

    /* TLS 1.3 and 1.2 work; 1.1 and older do not. */
    rc = run(out, sizeof(out), CURL "--tlsv1.3 -o /dev/null -w '%%{http_code}' %s 2>&1", certs, url);
    cr_assert(rc == 0 && strcmp(out, "200") == 0, "TLS 1.3: %d %s", rc, out);
    rc = run(out, sizeof(out), CURL "--tlsv1.2 --tls-max 1.2 -o /dev/null -w '%%{http_code}' %s 2>&1",
             certs, url);
    cr_assert(rc == 0 && strcmp(out, "200") == 0, "TLS 1.2: %d %s", rc, out);
    /* (openssl's client offers TLS 1.1 only below security level 1: the
     * refusal must come from the server, as an alert) */
    rc = run(out, sizeof(out),
             "openssl s_client -connect %s -tls1_1 -cipher DEFAULT@SECLEVEL=0 </dev/null 2>&1",
             cl->ds[0].https_addr);
    cr_assert(rc != 0 && strstr(out, "alert protocol version"), "TLS 1.1: %d %s", rc, out);

    /* ALPN: http/1.1 chosen; a client offering only h2 is refused. */
    rc = run(out, sizeof(out), "openssl s_client -connect %s -alpn h2,http/1.1 </dev/null 2>&1",
             cl->ds[0].https_addr);
    cr_assert(strstr(out, "ALPN protocol: http/1.1"), "%s", out);
    rc = run(out, sizeof(out), "openssl s_client -connect %s -alpn h2 </dev/null 2>&1",
             cl->ds[0].https_addr);
    cr_assert_null(strstr(out, "ALPN protocol:"), "%s", out);
    cr_assert(strstr(out, "no application protocol"), "%s", out);

    /* A certificate from a CA the client does not trust: refused. */
    rc = run(out, sizeof(out),
             "curl -sS --max-time 10 --cacert %s/other.pem -o /dev/null %s 2>&1", certs, url);
    cr_assert_eq(rc, 60, "an untrusted certificate was accepted: %d %s", rc, out);

    /* An upload with the token and Expect: 100-continue (the core's
     * interim answer goes through TLS too), then read back over the plain
     * port. */
    char src[256];
    snprintf(src, sizeof(src), "%s/up.bin", certs);
    cr_assert_eq(cluster_write_file(src, want, len), 0);
    rc = run(out, sizeof(out),
             CURL "-v -H 'Authorization: Bearer sekrit' -H 'Content-Type: image/jpeg' "
                  "-H 'Expect: 100-continue' "
                  "--data-binary @%s https://%s/ 2>&1",
             certs, src, cl->ds[0].https_addr);
    cr_assert_eq(rc, 0, "curl: %s", out);
    cr_assert(strstr(out, "< HTTP/1.1 100 Continue") && strstr(out, "< HTTP/1.1 201 Created"),
              "%s", out);
    /* curl -v: its lines, with the body (one JSON object) among them;
     * jansson reads the object that starts there and stops at its end. */
    const char *doc = strstr(out, "{\"");
    cr_assert_not_null(doc, "no JSON answer in %s", out);
    json_t *answer = json_loads(doc, JSON_DISABLE_EOF_CHECK, NULL);
    const char *nm = json_string_value(json_object_get(answer, "name"));
    cr_assert(nm && *nm, "no name in the answer: %s", doc);
    char up_name[64];
    snprintf(up_name, sizeof(up_name), "/%s", nm);
    json_decref(answer);
    rc = run(out, sizeof(out), "curl -sS --max-time 10 -o %s http://%s%s 2>&1", path,
             cl->ds[0].http_addr, up_name);
    cr_assert_eq(rc, 0, "curl: %s", out);
    cr_assert_eq(cluster_read_file(path, &got, &got_len), 0);
    cr_assert(got_len == len && memcmp(got, want, len) == 0, "the upload over HTTPS differs");
    free(got);

    /* The plain port still serves. */
    char *body = cluster_http_body(cl->ds[0].http_addr, "/healthz");
    cr_assert_not_null(body);
    free(body);
    free(want);
    cl->passed = 1;
}

static const char *const short_head[] = {"--http-header-timeout-ms", "800", NULL};

Test(https, hostile_peers_closed_and_counted)
{
    make_certs();
    start(short_head);
    const char *ha = cl->ds[0].http_addr, *tls = cl->ds[0].https_addr;
    char got[4096];

    /* Plain HTTP to the TLS port: closed at once, never an HTTP answer. */
    int fd = cluster_connect(tls, IO_MS);
    cr_assert_geq(fd, 0);
    const char *req = "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";
    cr_assert_eq(send_all(fd, req, strlen(req)), 0);
    int64_t ms = wait_closed(fd, 3000, got, sizeof(got));
    close(fd);
    cr_assert(ms >= 0 && ms < 700, "plain HTTP to the TLS port: closed after %lld ms",
              (long long)ms);
    cr_assert(strncmp(got, "HTTP/", 5) != 0, "answered in plain text: %s", got);

    /* A stalled handshake (nothing sent), and half a ClientHello: closed
     * at the header timeout (800 ms), not before. */
    static const char half[] = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03";
    for (int k = 0; k < 2; k++) {
        fd = cluster_connect(tls, IO_MS);
        cr_assert_geq(fd, 0);
        if (k == 1)
            cr_assert_eq(send_all(fd, half, sizeof(half) - 1), 0);
        ms = wait_closed(fd, 5000, got, sizeof(got));
        close(fd);
        fprintf(stderr, "[https] stalled handshake %d closed after %lld ms\n", k, (long long)ms);
        cr_assert(ms >= 600 && ms <= 2500, "stalled handshake %d closed after %lld ms", k,
                  (long long)ms);
    }
    cr_assert_geq(cluster_metric(ha, "imgstore_ds_tls_handshakes_total{result=\"failed\"}"), 3);
    cr_assert_geq(cluster_metric(ha, "imgstore_conns_timeout_total{port=\"https\"}"), 2);
    cr_assert_eq(cluster_metric(ha, "imgstore_conns_timeout_total{port=\"http\"}"), 0);

    /* A slow request head after the handshake: 408 over TLS, as on HTTP. */
    char out[OUT_MAX];
    int rc = run(out, sizeof(out),
                 "(printf 'GET /healthz HTTP/1.1\\r\\n'; sleep 2) | openssl s_client -quiet "
                 "-connect %s -CAfile %s/ca.pem 2>/dev/null",
                 tls, certs);
    cr_assert(strncmp(out, "HTTP/1.1 408", 12) == 0, "a slow head over TLS: %d %s", rc, out);

    /* Garbage inside a good TLS session: 400 over TLS, as on HTTP. */
    rc = run(out, sizeof(out),
             "printf 'NOT HTTP AT ALL\\r\\n\\r\\n' | openssl s_client -quiet -ign_eof "
             "-connect %s -CAfile %s/ca.pem 2>/dev/null",
             tls, certs);
    cr_assert(strncmp(out, "HTTP/1.1 400", 12) == 0, "garbage over TLS: %d %s", rc, out);

    /* Random bytes instead of a handshake, from 20 connections: each
     * closed, no answer in plain text. */
    uint64_t rng = 12345;
    for (int k = 0; k < 20; k++) {
        char junk[3000];
        size_t jl = 1 + cluster_rand(&rng) % sizeof(junk);
        for (size_t i = 0; i < jl; i++)
            junk[i] = (char)cluster_rand(&rng);
        if (k % 2)
            junk[0] = 0x16; /* a handshake record's type, then nonsense */
        fd = cluster_connect(tls, IO_MS);
        cr_assert_geq(fd, 0);
        send_all(fd, junk, jl); /* the server may close before it is all sent */
        ms = wait_closed(fd, 3000, got, sizeof(got));
        close(fd);
        cr_assert(ms >= 0, "random bytes %d (%zu): the connection stayed open", k, jl);
        cr_assert(strncmp(got, "HTTP/", 5) != 0, "random bytes %d answered in plain text", k);
    }

    /* Then it serves on, and the server is alive. */
    rc = run(out, sizeof(out), CURL "https://%s/healthz 2>&1", certs, tls);
    cr_assert(rc == 0 && strcmp(out, "ok\n") == 0, "%d %s", rc, out);
    cr_assert(cluster_alive(&cl->ds[0]));
    cl->passed = 1;
}

Test(https, certificate_rotated_without_restart)
{
    make_certs();
    start(NULL);
    char serial[256], out[OUT_MAX];
    served_serial(serial, sizeof(serial));
    cr_assert_str_eq(serial, "serial=03E9"); /* 1001 */

    /* Rotate: the new key, then the new certificate, each by a rename. */
    int rc = run(out, sizeof(out),
                 "cd %s && cp -p srv2.key k.new && mv k.new live.key && cp -p srv2.pem c.new && "
                 "mv c.new live.pem 2>&1",
                 certs);
    cr_assert_eq(rc, 0, "%s", out);
    int64_t t0 = cluster_now_ms();
    while (cluster_now_ms() - t0 < 8000) {
        served_serial(serial, sizeof(serial));
        if (strcmp(serial, "serial=07D2") == 0)
            break;
        usleep(200 * 1000);
    }
    fprintf(stderr, "[https] new certificate served after %lld ms\n",
            (long long)(cluster_now_ms() - t0));
    cr_assert_str_eq(serial, "serial=07D2", "the rotated certificate is not served");
    const char *ha = cl->ds[0].http_addr;
    cr_assert_eq(cluster_metric(ha, "imgstore_ds_tls_reloads_total{result=\"done\"}"), 1);
    cr_assert_eq(cluster_metric(ha, "imgstore_ds_tls_reloads_total{result=\"failed\"}"), 0);
    rc = run(out, sizeof(out), CURL "https://%s/healthz 2>&1", certs, cl->ds[0].https_addr);
    cr_assert(rc == 0 && strcmp(out, "ok\n") == 0, "%d %s", rc, out);

    /* A broken certificate, then a key others can read: ERRORs, the one in
     * force stays. */
    rc = run(out, sizeof(out), "cd %s && echo garbage > c.new && mv c.new live.pem 2>&1", certs);
    cr_assert_eq(rc, 0, "%s", out);
    t0 = cluster_now_ms();
    while (cluster_metric(ha, "imgstore_ds_tls_reloads_total{result=\"failed\"}") < 1 &&
           cluster_now_ms() - t0 < 8000)
        usleep(200 * 1000);
    cr_assert_eq(cluster_metric(ha, "imgstore_ds_tls_reloads_total{result=\"failed\"}"), 1);
    rc = run(out, sizeof(out), "cd %s && cp -p srv2.pem live.pem && chmod 644 live.key 2>&1",
             certs);
    cr_assert_eq(rc, 0, "%s", out);
    t0 = cluster_now_ms();
    while (cluster_metric(ha, "imgstore_ds_tls_reloads_total{result=\"failed\"}") < 2 &&
           cluster_now_ms() - t0 < 8000)
        usleep(200 * 1000);
    cr_assert_eq(cluster_metric(ha, "imgstore_ds_tls_reloads_total{result=\"failed\"}"), 2);
    served_serial(serial, sizeof(serial));
    cr_assert_str_eq(serial, "serial=07D2");
    rc = run(out, sizeof(out), "grep -c 'ERROR.*TLS reload failed' %s", cl->ds[0].log);
    cr_assert_eq(atoi(out), 2, "%s", out);
    rc = run(out, sizeof(out), "grep 'TLS reload failed' %s", cl->ds[0].log);
    cr_assert(strstr(out, "live.pem") && strstr(out, "not readable by group or others"), "%s",
              out);
    cl->passed = 1;
}

/* Runs a dataserver with the TLS flags `tls_args` (shell words) and
 * returns its exit code with its output in out; it must stop at its
 * argument checks (10 s at most). */
static int ds_refused(char *out, size_t cap, const char *tls_args)
{
    return run(out, cap,
               "timeout 10 %s/dataserver --ns 127.0.0.1:1 --listen 127.0.0.1:0 --http 127.0.0.1:0 "
               "--data %s/nodata --insecure --https 127.0.0.1:0 %s 2>&1",
               cluster_bin_dir(), certs, tls_args);
}

Test(https, bad_key_files_refused_at_start)
{
    make_certs();
    char out[OUT_MAX], args[512];
    /* Readable by the group: refused, the file named, exit 2. */
    int rc = run(out, sizeof(out), "chmod 640 %s/srv1.key", certs);
    cr_assert_eq(rc, 0);
    snprintf(args, sizeof(args), "--tls-cert %s/srv1.pem --tls-key %s/srv1.key", certs, certs);
    rc = ds_refused(out, sizeof(out), args);
    cr_assert_eq(rc, 2, "%s", out);
    cr_assert(strstr(out, "srv1.key") && strstr(out, "not readable by group or others"), "%s",
              out);
    cr_assert_eq(strchr(out, '\n') - out + 1, (long)strlen(out), "more than one line: %s", out);
    /* Readable by others only: refused too. */
    run(out, sizeof(out), "chmod 604 %s/srv1.key", certs);
    rc = ds_refused(out, sizeof(out), args);
    cr_assert_eq(rc, 2, "%s", out);
    run(out, sizeof(out), "chmod 600 %s/srv1.key", certs);
    /* A key of another certificate. */
    snprintf(args, sizeof(args), "--tls-cert %s/srv1.pem --tls-key %s/srv2.key", certs, certs);
    rc = ds_refused(out, sizeof(out), args);
    cr_assert_eq(rc, 2, "%s", out);
    cr_assert(strstr(out, "srv2.key does not match the certificate"), "%s", out);
    /* Not a certificate; a missing file; a folder as the key. */
    snprintf(args, sizeof(args), "--tls-cert %s/ext.cnf --tls-key %s/srv1.key", certs, certs);
    rc = ds_refused(out, sizeof(out), args);
    cr_assert(rc == 2 && strstr(out, "ext.cnf"), "%d %s", rc, out);
    snprintf(args, sizeof(args), "--tls-cert %s/none.pem --tls-key %s/srv1.key", certs, certs);
    rc = ds_refused(out, sizeof(out), args);
    cr_assert(rc == 2 && strstr(out, "none.pem"), "%d %s", rc, out);
    snprintf(args, sizeof(args), "--tls-cert %s/srv1.pem --tls-key %s", certs, certs);
    rc = ds_refused(out, sizeof(out), args);
    cr_assert(rc == 2 && strstr(out, "not readable by group or others"), "%d %s", rc, out);
    /* --https without its files. */
    rc = ds_refused(out, sizeof(out), "");
    cr_assert(rc == 2 && strstr(out, "go together"), "%d %s", rc, out);
}

