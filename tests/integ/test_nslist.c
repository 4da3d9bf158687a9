/* Integration test: several nameserver addresses (--ns A,B,C, IMGSTORE_NS,
 * imgstore_open; docs/nameserver.md "Several nameserver addresses").
 *
 * `dead_first`: every caller of a real cluster gets a list whose first
 * address is a dead port (connection refused): the dataservers' sessions,
 * the HTTP origin's uploads and remote reads, the library, `imgstore` and
 * `ds-admin` must all go past it. `not_leader`: a fake nameserver (a thread
 * of this test) answers every request with IMG_ENOTLEADER; the library must
 * follow the leader its answer names, first, and fail with
 * IMGSTORE_ENOTLEADER, in time, when no one leads. */
#include "base/err.h"
#include "proto/frame.h"
#include "proto/imgstore.pb-c.h"
#include "tests/integ/cluster.h"
#include "tests/integ/fixture.h"
#include "tests/integ/json_check.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define TOKEN "nslist-token-0123456789abcdef"
#define RUN_MS 30000
#define NFILES 12

static char token_path[300];
static char dead[64]; /* a loopback port nobody listens on */
static const char *ds_args[] = {"--upload-token-file", token_path, NULL};

/* A loopback socket bound to a free port: listening (listen_too) or closed
 * again, so the port refuses connections. Returns the fd (-1 when closed)
 * and the address in addr. */
static int loopback_port(int listen_too, char *addr, size_t len)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    socklen_t sl = sizeof(sa);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    snprintf(addr, len, "127.0.0.1:%d", ntohs(sa.sin_port));
    if (listen_too) {
        cr_assert_eq(listen(fd, 16), 0);
        return fd;
    }
    close(fd);
    return -1;
}

static void setup(void)
{
    snprintf(token_path, sizeof(token_path), "/tmp/imgstore-nslist-token-%d", (int)getpid());
    cr_assert_eq(cluster_write_file(token_path, TOKEN "\n", strlen(TOKEN) + 1), 0);
    cr_assert_eq(chmod(token_path, 0600), 0);
    loopback_port(0, dead, sizeof(dead));
    struct cluster_opts o = {
        .ndataservers = 3, .replicas = 2, .ds_args = ds_args, .ns_before = dead};
    cr_assert_eq(fixture_start(&o), 0, "the cluster did not start past a dead first nameserver");
}

static void teardown(void)
{
    fixture_stop();
    unlink(token_path);
}

TestSuite(nslist, .init = setup, .fini = teardown, .timeout = 180);

/* ---- HTTP ---------------------------------------------------------------------------- */

/* POSTs data (text) to a dataserver's origin; returns the HTTP status and
 * the name of a 201 answer. */
static int http_post(const char *addr, const char *data, char name[IMGSTORE_NAME_MAX])
{
    int fd = cluster_connect(addr, 10000);
    cr_assert(fd >= 0, "connect to %s: %d", addr, fd);
    char head[300];
    int n = snprintf(head, sizeof(head),
                     "POST / HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\nContent-Length: "
                     "%zu\r\nAuthorization: Bearer " TOKEN "\r\nConnection: close\r\n\r\n",
                     strlen(data));
    cr_assert_eq(cluster_send_all(fd, head, (size_t)n), 0);
    cr_assert_eq(cluster_send_all(fd, data, strlen(data)), 0);
    char buf[4096];
    size_t len = 0;
    for (ssize_t r; len + 1 < sizeof(buf) && (r = read(fd, buf + len, sizeof(buf) - len - 1)) > 0;)
        len += (size_t)r;
    close(fd);
    buf[len] = '\0';
    int code = 0;
    sscanf(buf, "HTTP/1.1 %d", &code);
    name[0] = '\0';
    if (code == 201)
        json_at_str(json_http_body(buf), "name", name, 32);
    return code;
}

/* ---- dead first --------------------------------------------------------------------- */

Test(nslist, dead_first)
{
    uint64_t seed = cluster_seed("nslist");
    /* The dataservers keep a session with each nameserver of the list: the
     * dead address (the list's first) is retried, the live one leads: the
     * cluster is up; their logs say so. */
    int moved = 0;
    for (int i = 0; i < C->nds; i++) {
        void *log = NULL;
        size_t len = 0;
        cr_assert_eq(cluster_read_file(C->ds[i].log, &log, &len), 0);
        char want[256], lead[256];
        snprintf(want, sizeof(want), "lost nameserver session %s; connecting to %s", dead, dead);
        snprintf(lead, sizeof(lead), "taking commands from nameserver %s", C->ns.addr);
        moved += memmem(log, len, want, strlen(want)) != NULL &&
                 memmem(log, len, lead, strlen(lead)) != NULL;
        free(log);
    }
    cr_assert_eq(moved, C->nds, "%d of %d dataservers logged the move past %s", moved, C->nds,
                 dead);

    /* The library, through a handle on "dead,live". */
    imgstore_t *h = cluster_client(C);
    cr_assert_not_null(h);
    uint32_t sizes[NFILES];
    char names[NFILES][IMGSTORE_NAME_MAX];
    fixture_sizes(seed, 0, NFILES, 1, 40000, sizes);
    int64_t t0 = cluster_now_ms();
    fixture_put_range(h, seed, 0, NFILES, sizes, names, 1, "dead first");
    int64_t took = cluster_now_ms() - t0;
    cr_assert_eq(cluster_check_range(h, seed, 0, NFILES, names, sizes), 0);
    /* A refused connection costs nothing: no waits, no timeouts. */
    cr_assert_lt(took, 5000, "%d uploads took %lld ms", NFILES, (long long)took);
    imgstore_close(h);

    /* imgstore with --ns and with IMGSTORE_NS. */
    char path[300], ns_env[600];
    snprintf(path, sizeof(path), "%s/in.txt", C->dir);
    cr_assert_eq(cluster_write_file(path, "hello, several nameservers\n", 27), 0);
    const char *put[] = {"imgstore", "--ns", C->ns_list, "put", path, NULL};
    const char *const no_ns[] = {"IMGSTORE_NS", NULL};
    struct cluster_run r;
    cr_assert_eq(cluster_run(C, put, NULL, no_ns, RUN_MS, &r), 0);
    cr_assert_eq(r.exit_code, 0, "imgstore --ns %s put: %s", C->ns_list, r.err);
    char name[IMGSTORE_NAME_MAX] = "";
    sscanf(r.out, "%31s", name);
    cluster_run_free(&r);
    snprintf(ns_env, sizeof(ns_env), "IMGSTORE_NS=%s", C->ns_list);
    const char *const env[] = {ns_env, NULL};
    const char *get[] = {"imgstore", "get", name, NULL};
    cr_assert_eq(cluster_run(C, get, env, NULL, RUN_MS, &r), 0);
    cr_assert_eq(r.exit_code, 0, "IMGSTORE_NS=%s imgstore get: %s", C->ns_list, r.err);
    cr_assert(r.out_len == 27 && memcmp(r.out, "hello, several nameservers\n", 27) == 0);
    cluster_run_free(&r);

    /* ds-admin status and a command that goes to the nameserver. */
    cr_assert_eq(cluster_admin(C, RUN_MS, &r, "status", NULL), 0, "ds-admin status: %s", r.err);
    cr_assert(strstr(r.out, "3 up, 0 down"), "status:\n%s", r.out);
    cluster_run_free(&r);
    cr_assert_eq(cluster_admin(C, RUN_MS, &r, "tasks", NULL), 0, "ds-admin tasks: %s", r.err);
    cluster_run_free(&r);
    /* One nameserver without etcd: nobody to hand over to. */
    cr_assert_eq(cluster_admin(C, RUN_MS, &r, "ns", "step-down", NULL), 1);
    cr_assert(strstr(r.err, "runs alone"), "%s", r.err);
    cluster_run_free(&r);

    /* The HTTP origin: uploads (ALLOC_WRITE past the dead address) and
     * reads through every dataserver, so at least one fetches the file of
     * a block it does not hold (LOOKUP past the dead address). */
    for (int k = 0; k < 3; k++) {
        char body[200], got_name[IMGSTORE_NAME_MAX];
        snprintf(body, sizeof(body), "file %d uploaded through ds%d's origin, seed %llu\n", k,
                 k + 1, (unsigned long long)seed);
        int code = http_post(C->ds[k].http_addr, body, got_name);
        cr_assert_eq(code, 201, "POST to ds%d answered %d", k + 1, code);
        for (int i = 0; i < C->nds; i++) {
            char url[100];
            snprintf(url, sizeof(url), "/%s", got_name);
            char *b = cluster_http_body(C->ds[i].http_addr, url);
            cr_assert_not_null(b, "GET %s from ds%d failed", url, i + 1);
            cr_assert_str_eq(b, body, "GET %s from ds%d", url, i + 1);
            free(b);
        }
    }

    /* The origins' own nameserver connection went past the dead address. */
    int origin_moved = 0;
    for (int i = 0; i < C->nds; i++) {
        void *log = NULL;
        size_t len = 0;
        cr_assert_eq(cluster_read_file(C->ds[i].log, &log, &len), 0);
        char want[256];
        snprintf(want, sizeof(want), "nameserver %s: connection failed; asking %s", dead,
                 C->ns.addr);
        origin_moved += memmem(log, len, want, strlen(want)) != NULL;
        free(log);
    }
    cr_assert_eq(origin_moved, C->nds, "%d of %d origins logged the move past %s", origin_moved,
                 C->nds, dead);

    /* Malformed lists are refused before anything is sent. */
    char dup[200], empty[200];
    snprintf(dup, sizeof(dup), "%s,%s", C->ns.addr, C->ns.addr);
    snprintf(empty, sizeof(empty), "%s,,%s", dead, C->ns.addr);
    const char *bad_lists[] = {dup, empty, "127.0.0.1:1, 127.0.0.1:2"};
    for (size_t i = 0; i < sizeof(bad_lists) / sizeof(bad_lists[0]); i++) {
        const char *st[] = {"imgstore", "--ns", bad_lists[i], "stat", name, NULL};
        cr_assert_eq(cluster_run(C, st, NULL, no_ns, RUN_MS, &r), 0);
        cr_assert_eq(r.exit_code, 2, "imgstore --ns '%s' exited %d", bad_lists[i], r.exit_code);
        cr_assert(strstr(r.err, "invalid nameserver address list"), "stderr: %s", r.err);
        cluster_run_free(&r);
        const char *ds[] = {"dataserver", "--ns", bad_lists[i], "--listen", "127.0.0.1:1",
                            "--http", "127.0.0.1:2", "--data", C->dir, "--insecure", NULL};
        cr_assert_eq(cluster_run(C, ds, NULL, NULL, RUN_MS, &r), 0);
        cr_assert_eq(r.exit_code, 2, "dataserver --ns '%s' exited %d", bad_lists[i],
                     r.exit_code);
        cr_assert(strstr(r.err, "bad --ns address list"), "stderr: %s", r.err);
        cluster_run_free(&r);
    }
    C->passed = 1;
}

/* ---- not the leader ------------------------------------------------------------------ */

/* A fake standby: answers every request frame on every connection with
 * IMG_ENOTLEADER and a NotLeader head naming `leader` (empty: none) until
 * `stop`. Counts the requests it answered. */
struct fake {
    int lfd;
    char addr[64];
    const char *leader;
    volatile int stop;
    int requests; /* __atomic */
    pthread_t thread;
};

static int read_full(int fd, void *buf, size_t len)
{
    for (size_t got = 0; got < len;) {
        ssize_t r = read(fd, (char *)buf + got, len - got);
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return 0;
}

static void fake_conn(struct fake *f, int fd)
{
    struct timeval tv = {.tv_sec = 0, .tv_usec = 200000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    uint8_t hb[FRAME_HEADER_SIZE];
    struct frame_header h;
    while (!f->stop && read_full(fd, hb, sizeof(hb)) == 0 && frame_decode(hb, &h) == 0 &&
           h.head_len + (uint64_t)h.body_len < (1u << 20)) {
        char *skip = malloc((size_t)h.head_len + h.body_len + 1);
        int ok = skip && read_full(fd, skip, (size_t)h.head_len + h.body_len) == 0;
        free(skip);
        if (!ok)
            break;
        Imgstore__NotLeader nl = IMGSTORE__NOT_LEADER__INIT;
        nl.leader_addr = (char *)f->leader;
        uint8_t out[FRAME_HEADER_SIZE + 128];
        size_t hl = imgstore__not_leader__get_packed_size(&nl);
        if (hl > sizeof(out) - FRAME_HEADER_SIZE)
            break; /* not with the addresses of this test */
        imgstore__not_leader__pack(&nl, out + FRAME_HEADER_SIZE);
        struct frame_header rh = {.version = FRAME_VERSION,
                                  .type = (uint8_t)(h.type | FRAME_RESPONSE),
                                  .status = IMG_ENOTLEADER,
                                  .request_id = h.request_id,
                                  .head_len = (uint32_t)hl};
        frame_encode(&rh, out);
        if (cluster_send_all(fd, out, FRAME_HEADER_SIZE + hl) != 0)
            break;
        __atomic_add_fetch(&f->requests, 1, __ATOMIC_RELAXED);
    }
    close(fd);
}

static void *fake_run(void *arg)
{
    struct fake *f = arg;
    while (!f->stop) {
        struct pollfd p = {.fd = f->lfd, .events = POLLIN};
        if (poll(&p, 1, 100) <= 0)
            continue;
        int fd = accept4(f->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd >= 0)
            fake_conn(f, fd); /* one connection at a time is enough here */
    }
    return NULL;
}

static void fake_start(struct fake *f, const char *leader)
{
    memset(f, 0, sizeof(*f));
    f->leader = leader;
    f->lfd = loopback_port(1, f->addr, sizeof(f->addr));
    cr_assert_eq(pthread_create(&f->thread, NULL, fake_run, f), 0);
}

static void fake_stop(struct fake *f)
{
    f->stop = 1;
    pthread_join(f->thread, NULL);
    close(f->lfd);
}

/* Connections waiting on a listening socket nobody accepts from. */
static int pending_conns(int lfd)
{
    int n = 0;
    fcntl(lfd, F_SETFL, O_NONBLOCK);
    for (int fd; (fd = accept(lfd, NULL, NULL)) >= 0; n++)
        close(fd);
    return n;
}

static void put_and_check(imgstore_t *h, const char *what)
{
    char name[IMGSTORE_NAME_MAX];
    const char data[] = "a file put through a standby's hint";
    int rc = imgstore_put(h, data, sizeof(data), "text/plain", name);
    cr_assert_eq(rc, 0, "%s: put: %s", what, imgstore_strerror(rc));
    void *got = NULL;
    size_t len = 0;
    rc = imgstore_get(h, name, &got, &len);
    cr_assert_eq(rc, 0, "%s: get: %s", what, imgstore_strerror(rc));
    cr_assert(len == sizeof(data) && memcmp(got, data, len) == 0);
    imgstore_free(got);
}

Test(nslist, not_leader)
{
    struct fake f, none;
    fake_start(&f, C->ns.addr);
    fake_start(&none, "");
    /* "standby,silent,leader": the standby names the leader, which is
     * asked next; the silent one in between (listening, never accepting)
     * is never connected to. */
    char silent[64], list[300];
    int sfd = loopback_port(1, silent, sizeof(silent));
    snprintf(list, sizeof(list), "%s,%s,%s", f.addr, silent, C->ns.addr);
    imgstore_t *h = NULL;
    cr_assert_eq(imgstore_open(list, NULL, &h), 0);
    put_and_check(h, list);
    cr_assert_gt(__atomic_load_n(&f.requests, __ATOMIC_RELAXED), 0, "the standby was not asked");
    cr_assert_eq(pending_conns(sfd), 0, "the hint was not followed first");
    /* The leader answered last: it is asked first from now on. */
    int before = __atomic_load_n(&f.requests, __ATOMIC_RELAXED);
    for (int i = 0; i < 3; i++)
        put_and_check(h, list);
    cr_assert_eq(__atomic_load_n(&f.requests, __ATOMIC_RELAXED), before,
                 "the standby was asked again after the leader answered");
    imgstore_close(h);

    /* A leader the list does not name is followed too. */
    cr_assert_eq(imgstore_open(f.addr, NULL, &h), 0);
    put_and_check(h, "standby alone");
    imgstore_close(h);

    /* Nobody leads: IMGSTORE_ENOTLEADER once the deadline has come. */
    struct imgstore_opts o = {.timeout_ms = 1500, .io_timeout_ms = 500};
    cr_assert_eq(imgstore_open(none.addr, &o, &h), 0);
    char name[IMGSTORE_NAME_MAX];
    int64_t t0 = cluster_now_ms();
    int rc = imgstore_put(h, "x", 1, NULL, name);
    int64_t took = cluster_now_ms() - t0;
    cr_assert_eq(rc, IMGSTORE_ENOTLEADER, "put with no leader: %s", imgstore_strerror(rc));
    cr_assert(took >= 1400 && took < 3000, "gave up after %lld ms", (long long)took);
    cr_assert_gt(__atomic_load_n(&none.requests, __ATOMIC_RELAXED), 1, "not asked again");
    imgstore_close(h);

    close(sfd);
    fake_stop(&f);
    fake_stop(&none);
    C->passed = 1;
}
