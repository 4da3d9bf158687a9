/* Integration test: a nameserver with --etcd facing a hostile etcd gateway
 * (docs/nameserver.md, "High availability"; issue 15; the real-etcd tests
 * are in test_ha.c).
 *
 * A fake gateway on a loopback port answers the cluster-id read properly,
 * so the nameserver starts, and everything else with junk, in turn:
 * `junk_from_etcd` (it never leads on junk, never dies, and stops cleanly
 * on SIGTERM) and `junk_on_the_watch` (a watch stream of junk lines and
 * then one endless line: lines with events kick a round each, the rest
 * nothing, and the endless one is cut off long before it holds memory
 * without bound). */
#include "base/err.h"
#include "tests/integ/cluster.h"
#include "tests/integ/fixture.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* A fake etcd gateway: answers the cluster-id read properly (so the
 * nameserver starts) and everything else with one of `junk`, in turn. */
struct fake_etcd {
    int lfd;
    char addr[64];
    volatile int stop;
    int answered; /* __atomic */
    pthread_t thread;
    int watch_junk;   /* the first /v3/watch gets watch_lines, then an endless line */
    int watches;      /* /v3/watch requests seen (__atomic) */
    int watch_cut;    /* errno of the endless line's send (EPIPE, ECONNRESET: cut off) */
    size_t watch_fed; /* bytes of the endless line sent before that */
};

/* The endless line's bytes at most: loopback sockets buffer several MiB
 * (tcp_rmem and tcp_wmem autotuning), so a nameserver slow to read (a
 * loaded machine) still has to cut it long before this. */
#define WATCH_FLOOD (64u << 20)

/* Lines of a watch stream: two (the last two) carry events and must kick a
 * round each; the rest must be ignored. */
static const char *const watch_lines[] = {
    "not json",
    "{\"result\": {\"events\": \"x\"}}",
    "{\"result\": 5}",
    "[{\"result\": {\"events\": [1]}}]",
    "{\"result\": {\"events\": []}}",
    "{\"result\": {\"events\": [{\"type\": 7}]}}",
    "{\"result\": {\"events\": [{\"type\": \"DELETE\", \"kv\": {}}]}}",
};

/* The first watch: a stream of watch_lines, then one line without end (up
 * to WATCH_FLOOD bytes, more than the socket buffers of both ends hold):
 * the nameserver must cut the stream at its line bound. */
static void fake_watch(struct fake_etcd *f, int fd)
{
    const char *head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                       "Connection: close\r\n\r\n";
    struct timeval tv = {.tv_sec = 3};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (cluster_send_all(fd, head, strlen(head)) != 0)
        goto out;
    for (size_t i = 0; i < sizeof(watch_lines) / sizeof(watch_lines[0]); i++)
        if (cluster_send_all(fd, watch_lines[i], strlen(watch_lines[i])) != 0 ||
            cluster_send_all(fd, "\n", 1) != 0)
            goto out;
    /* A flood of changes: each kicks a round, 8 more are logged (10 a
     * second at most). */
    const char *flood = "{\"result\": {\"events\": [{\"kv\": {}}]}}\n";
    for (int i = 0; i < 30; i++)
        if (cluster_send_all(fd, flood, strlen(flood)) != 0)
            goto out;
    usleep(300 * 1000); /* the lines are read and acted on before the endless one */
    char chunk[4096];
    memset(chunk, 'a', sizeof(chunk));
    while (f->watch_fed < WATCH_FLOOD) {
        ssize_t n = send(fd, chunk, sizeof(chunk), MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            f->watch_cut = errno;
            break;
        }
        f->watch_fed += (size_t)n;
    }
out:
    close(fd);
}

static const char *const junk[] = {
    "not json at all",
    "[1, 2, 3]",
    "{\"ID\": {}, \"TTL\": \"x\", \"kvs\": \"x\", \"succeeded\": 7, \"header\": []}",
    "{\"result\": {\"TTL\": \"-3\"}, \"ID\": \"-1\"}",
    "{\"kvs\": [{\"value\": \"!!!not base64\", \"create_revision\": \"-5\", \"lease\": 3}]}",
    "{\"kvs\": [{\"value\": \"AAAA\", \"create_revision\": \"99999999999999999999999\"}]}",
    "{\"ID\": \"12\", \"TTL\": \"2\", \"succeeded\": true, \"header\": {\"revision\": \"0\"}}",
    "{\"kvs\": [{\"value\": \"MTI3LjAuMC4xOjE=\", \"create_revision\": \"5\", \"mod_revision\": "
    "\"5\", \"lease\": \"12\"}], \"result\": {\"TTL\": \"2\"}, \"ID\": \"12\"}",
};

static void fake_etcd_conn(struct fake_etcd *f, int fd)
{
    char req[8192];
    size_t len = 0;
    req[0] = '\0';
    struct timeval tv = {.tv_sec = 1};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    for (;;) {
        ssize_t r = read(fd, req + len, sizeof(req) - 1 - len);
        if (r <= 0)
            break;
        len += (size_t)r;
        req[len] = '\0';
        char *body = strstr(req, "\r\n\r\n");
        const char *cl = strcasestr(req, "Content-Length:");
        if (body && (!cl || strlen(body + 4) >= (size_t)atoi(cl + 15)))
            break;
        if (len == sizeof(req) - 1)
            break;
    }
    if (strstr(req, "POST /v3/watch") && f->watch_junk &&
        __atomic_fetch_add(&f->watches, 1, __ATOMIC_RELAXED) == 0) {
        fake_watch(f, fd);
        return;
    }
    int n = __atomic_fetch_add(&f->answered, 1, __ATOMIC_RELAXED);
    /* "L2ltZ3N0b3JlL2NsdXN0ZXJfaWQ=" is base64 of "/imgstore/cluster_id". */
    const char *ans;
    char ok[256];
    int code = 200;
    if (strstr(req, "/v3/kv/range") && strstr(req, "L2ltZ3N0b3JlL2NsdXN0ZXJfaWQ=")) {
        /* base64 of a valid cluster id, 32 hex chars */
        snprintf(ok, sizeof(ok),
                 "{\"kvs\": [{\"value\": \"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\", "
                 "\"create_revision\": \"2\", \"mod_revision\": \"2\"}]}");
        ans = ok;
    } else if (n % 10 == 9) {
        code = 500;
        ans = "{}";
    } else {
        ans = junk[(size_t)n % (sizeof(junk) / sizeof(junk[0]))];
    }
    char head[256];
    int hl = snprintf(head, sizeof(head),
                      "HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                      "Connection: close\r\n\r\n",
                      code, strlen(ans));
    if (cluster_send_all(fd, head, (size_t)hl) == 0)
        cluster_send_all(fd, ans, strlen(ans));
    close(fd);
}

static void *fake_etcd_run(void *arg)
{
    struct fake_etcd *f = arg;
    while (!f->stop) {
        struct pollfd p = {.fd = f->lfd, .events = POLLIN};
        if (poll(&p, 1, 100) <= 0)
            continue;
        int fd = accept4(f->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd >= 0)
            fake_etcd_conn(f, fd);
    }
    return NULL;
}

/* Runs a nameserver with --etcd on the fake f (its folder in a cluster of
 * its own, started for that): it takes the cluster id, never leads on junk
 * and never dies for 5 s; then it stops cleanly on SIGTERM. Returns the
 * cluster (the caller checks more and stops it) with the nameserver's log
 * in log. */
static struct cluster *run_on_fake(struct fake_etcd *f, char *log, size_t loglen);

Test(ha_hostile, junk_from_etcd, .timeout = 120)
{
    struct fake_etcd f = {0};
    char log[512];
    struct cluster *c = run_on_fake(&f, log, sizeof(log));
    c->passed = 1;
    cluster_stop(c);
}

/* The watch stream of the leader key is hostile too: lines that are not
 * objects with events kick nothing, each line with events kicks one round
 * (logged, at most 10 a second), a line longer than the bound (64 KiB)
 * ends the stream (the gateway's send fails, before WATCH_FLOOD) and
 * the watch is opened again. */
Test(ha_hostile, junk_on_the_watch, .timeout = 120)
{
    struct fake_etcd f = {.watch_junk = 1};
    char log[512];
    struct cluster *c = run_on_fake(&f, log, sizeof(log));
    fprintf(stderr, "[ha] watch: %zu bytes of an endless line sent before the cut (%s); %d "
            "watches\n",
            f.watch_fed, strerror(f.watch_cut), __atomic_load_n(&f.watches, __ATOMIC_RELAXED));
    cr_assert(f.watch_cut == EPIPE || f.watch_cut == ECONNRESET,
              "the endless line was not cut (errno %d, %zu bytes taken)", f.watch_cut,
              f.watch_fed);
    cr_assert_lt(f.watch_fed, WATCH_FLOOD);
    cr_assert_geq(__atomic_load_n(&f.watches, __ATOMIC_RELAXED), 2,
                  "the watch was not opened again");
    cr_assert_eq(fixture_log_count(log, "the leader key was deleted (watch)"), 1);
    cr_assert_eq(fixture_log_count(log, "the leader key was written (watch)"), 9,
                 "the first change and 8 of the flood are logged");
    c->passed = 1;
    cluster_stop(c);
}

static struct cluster *run_on_fake(struct fake_etcd *f, char *log, size_t loglen)
{
    f->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    cr_assert(f->lfd >= 0 && bind(f->lfd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
              getsockname(f->lfd, (struct sockaddr *)&sa, &sl) == 0 && listen(f->lfd, 16) == 0);
    snprintf(f->addr, sizeof(f->addr), "127.0.0.1:%d", ntohs(sa.sin_port));
    cr_assert_eq(pthread_create(&f->thread, NULL, fake_etcd_run, f), 0);

    struct cluster *c = NULL;
    struct cluster_opts o = {.ndataservers = 1, .replicas = 1, .insecure = 1};
    /* A cluster only for its folder and helpers: its own nameserver is
     * replaced below by one on the fake etcd. */
    cr_assert_eq(cluster_start(&o, &c), 0);
    struct cluster_proc p = {0};
    snprintf(p.name, sizeof(p.name), "nsx");
    snprintf(p.addr, sizeof(p.addr), "127.0.0.1:%d", cluster_free_port());
    snprintf(p.data, sizeof(p.data), "%s/nsx", c->dir);
    snprintf(p.log, sizeof(p.log), "%s/log/nsx.log", c->dir);
    cr_assert_eq(mkdir(p.data, 0755), 0);
    const char *argv[] = {"nameserver", "--listen", p.addr, "--data", p.data, "--insecure",
                          "--etcd", f->addr, "--etcd-ttl-ms", "1000", NULL};
    cr_assert_eq(cluster_spawn(c, &p, argv), 0);
    /* It took the cluster id, then never leads on junk, and never dies. */
    int64_t t0 = cluster_now_ms();
    while (cluster_now_ms() - t0 < 5000) {
        cr_assert(cluster_alive(&p), "the nameserver died on junk from etcd");
        usleep(200000);
    }
    cr_assert_gt(fixture_log_count(p.log, "etcd: cluster id 0123456789abcdef0123456789abcdef"), 0);
    cr_assert_gt(__atomic_load_n(&f->answered, __ATOMIC_RELAXED), 20, "etcd was not asked");
    cr_assert_eq(fixture_log_count(p.log, "leading (epoch"), 0, "it led on junk");
    cr_assert_eq(fixture_ns_status(p.addr), IMG_ENOTLEADER);
    int st = cluster_signal_proc(&p, SIGTERM);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status %d", st);
    f->stop = 1;
    pthread_join(f->thread, NULL);
    close(f->lfd);
    snprintf(log, loglen, "%s", p.log);
    return c;
}

/* etcd unreachable (frozen): the leader stops acting within the TTL and
 * every nameserver answers as a standby; reads of files already located go
 * on; once etcd is back a leader acts again and uploads resume. */
