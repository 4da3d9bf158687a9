/* Integration test: authentication (docs/security.md) on real servers.
 *
 * Each measured hole of issue 14 is tried as an attacker on the network
 * would: heartbeats claiming an existing dataserver's id with another
 * address (no key; another server's member key) are refused and never
 * change where clients are sent; a dataserver of another cluster is
 * refused; `imgstore rm` and every mutating ds-admin command fail without a
 * key (exit 1, one line), work with the right key, and an operator command
 * fails with a writer key; a key revoked from the file is refused without a
 * restart, also on a connection that authenticated before; key files that
 * others may read are refused by servers and tools; HTTP uploads and
 * deletes answer 401 / 201 / 204 by the bearer key; on a dataserver's port
 * frames between servers need a member key and a second handshake drops
 * a connection's authentication; a cluster started --insecure is open (and
 * its HTTP uploads, without keys or token, answer 403); a key added to the
 * file is accepted on a handle that was refused before (no new handle). */
#include "base/err.h"
#include "net/auth.h"
#include "proto/frame.h"
#include "proto/imgstore.pb-c.h"
#include "tests/integ/cluster.h"
#include "tests/integ/fixture.h"
#include "tests/integ/json_check.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define RUN_MS 30000

static void setup(void)
{
    cr_assert_eq(fixture_start(&(struct cluster_opts){.ndataservers = 3, .replicas = 2}), 0);
}

TestSuite(auth, .init = setup, .fini = fixture_stop, .timeout = 240);

/* ---- raw frames ----------------------------------------------------------------- */

static void send_all(int fd, const void *buf, size_t len)
{
    cr_assert_eq(cluster_send_all(fd, buf, len), 0, "send: %s", strerror(errno));
}

static void recv_all(int fd, void *buf, size_t len)
{
    uint8_t *p = buf;
    while (len) {
        ssize_t n = recv(fd, p, len, 0);
        cr_assert_gt(n, 0, "recv: %s", n == 0 ? "closed" : strerror(errno));
        p += n;
        len -= (size_t)n;
    }
}

/* Sends one request and reads its answer; returns the status, the head
 * unpacked as `desc` into *out when asked for and the status is 0. */
static int call(int fd, unsigned type, const ProtobufCMessage *m,
                const ProtobufCMessageDescriptor *desc, void **out)
{
    static uint64_t id = 1000;
    uint8_t buf[FRAME_HEADER_SIZE + 4096];
    size_t hl = m ? protobuf_c_message_get_packed_size(m) : 0;
    cr_assert_lt(hl, 4096);
    struct frame_header h = {.version = FRAME_VERSION, .type = (uint8_t)type,
                             .request_id = ++id, .head_len = (uint32_t)hl};
    frame_encode(&h, buf);
    if (m)
        protobuf_c_message_pack(m, buf + FRAME_HEADER_SIZE);
    send_all(fd, buf, FRAME_HEADER_SIZE + hl);
    uint8_t hb[FRAME_HEADER_SIZE];
    recv_all(fd, hb, sizeof(hb));
    struct frame_header r;
    cr_assert_eq(frame_decode(hb, &r), 0);
    cr_assert_eq(r.type, type | FRAME_RESPONSE);
    cr_assert_eq(r.request_id, id);
    cr_assert_lt(r.head_len, 1u << 20);
    uint8_t *head = malloc(r.head_len + 1);
    recv_all(fd, head, r.head_len);
    cr_assert_eq(r.body_len, 0);
    if (out) {
        *out = NULL;
        if (r.status == 0) {
            *out = protobuf_c_message_unpack(desc, NULL, r.head_len, head);
            cr_assert_not_null(*out);
        }
    }
    free(head);
    return r.status;
}

/* The handshake as a member would do it, with key k claiming server_id;
 * on success the answer must name role `want`. Returns the status of AUTH. */
static int raw_auth_as(int fd, const struct auth_key *k, const char *server_id, const char *want)
{
    Imgstore__AuthHello hello = IMGSTORE__AUTH_HELLO__INIT;
    Imgstore__AuthHelloResp *hr = NULL;
    cr_assert_eq(call(fd, FT_AUTH_HELLO, &hello.base, &imgstore__auth_hello_resp__descriptor,
                      (void **)&hr),
                 0);
    cr_assert_eq(hr->server_nonce.len, AUTH_NONCE_LEN);
    uint8_t sn[AUTH_NONCE_LEN], cn[AUTH_NONCE_LEN] = {1, 2, 3}, proof[AUTH_PROOF_LEN];
    memcpy(sn, hr->server_nonce.data, sizeof(sn));
    imgstore__auth_hello_resp__free_unpacked(hr, NULL);
    struct auth_claims cl = {"", server_id};
    auth_proof(k, 0, sn, cn, k->name, &cl, proof);
    Imgstore__Auth a = IMGSTORE__AUTH__INIT;
    a.key_name = (char *)k->name;
    a.client_nonce.data = cn;
    a.client_nonce.len = sizeof(cn);
    a.cluster_id = (char *)"";
    a.server_id = (char *)server_id;
    a.proof.data = proof;
    a.proof.len = sizeof(proof);
    Imgstore__AuthResp *ar = NULL;
    int st = call(fd, FT_AUTH, &a.base, &imgstore__auth_resp__descriptor, (void **)&ar);
    if (st == 0) {
        cr_assert_str_eq(ar->role, want);
        cr_assert_eq(auth_proof_check(k, 1, sn, cn, k->name, &cl, ar->server_proof.data,
                                      ar->server_proof.len),
                     0, "the nameserver proves the key too");
        imgstore__auth_resp__free_unpacked(ar, NULL);
    }
    return st;
}

static int raw_auth(int fd, const struct auth_key *k, const char *server_id)
{
    return raw_auth_as(fd, k, server_id, "member");
}

/* A heartbeat claiming server `id` at `addr`; returns its status. */
static int raw_heartbeat(int fd, const char *id, const char *addr)
{
    Imgstore__Disk d = IMGSTORE__DISK__INIT, *dp = &d;
    d.path = (char *)"/impostor";
    d.capacity = 1ull << 40;
    d.free = 1ull << 40;
    Imgstore__Heartbeat hb = IMGSTORE__HEARTBEAT__INIT;
    hb.server_id = (char *)id;
    hb.addr = (char *)addr;
    hb.http_addr = (char *)addr;
    hb.n_disks = 1;
    hb.disks = &dp;
    hb.full_report = 1;
    return call(fd, FT_HEARTBEAT, &hb.base, NULL, NULL);
}

/* ---- helpers ---------------------------------------------------------------------- */

/* The id of the dataserver at native address addr, from the status. */
static void server_id_of(const char *addr, char *out, size_t n)
{
    Imgstore__ClusterStatusResp *st = NULL;
    cr_assert_eq(cluster_status(C, &st), 0);
    out[0] = '\0';
    for (size_t i = 0; i < st->n_servers; i++)
        if (strcmp(st->servers[i]->addr, addr) == 0)
            snprintf(out, n, "%s", st->servers[i]->server_id);
    imgstore_admin_free_status(st);
    cr_assert(out[0], "no server at %s", addr);
}

/* Every listed server is at its own address and up; returns how many. */
static size_t servers_at_home(void)
{
    Imgstore__ClusterStatusResp *st = NULL;
    cr_assert_eq(cluster_status(C, &st), 0);
    size_t n = st->n_servers;
    for (size_t i = 0; i < n; i++) {
        cr_assert_geq(cluster_ds_index(C, st->servers[i]->addr), 0, "server %s listed at %s",
                      st->servers[i]->server_id, st->servers[i]->addr);
        cr_assert_str_eq(st->servers[i]->state, "up");
    }
    imgstore_admin_free_status(st);
    return n;
}

/* How many times `what` occurs in the log at path. */
static int log_count(const char *path, const char *what)
{
    void *text = NULL;
    size_t len = 0;
    if (cluster_read_file(path, &text, &len) != 0)
        return 0;
    int n = 0;
    for (const char *p = text; (p = strstr(p, what)); p++)
        n++;
    free(text);
    return n;
}

/* Waits (up to 15 s) until every server's log holds more lines with `what`
 * than counted in before[] (ns first, then the dataservers). */
static void wait_logs(const char *what, const int *before)
{
    int64_t t0 = cluster_now_ms();
    for (int i = 0; i <= C->nds; i++) {
        const char *log = i == 0 ? C->ns.log : C->ds[i - 1].log;
        while (log_count(log, what) <= before[i]) {
            cr_assert_lt(cluster_now_ms() - t0, 15000, "no '%s' in %s", what, log);
            usleep(50000);
        }
    }
}

static void count_logs(const char *what, int *out)
{
    for (int i = 0; i <= C->nds; i++)
        out[i] = log_count(i == 0 ? C->ns.log : C->ds[i - 1].log, what);
}

/* Rewrites the servers' keys file (atomically, mode 0600) with `text`
 * appended to or replacing it, and waits until every server re-read it. */
static void keys_rewrite(const char *text, int append)
{
    int before[CLUSTER_MAX_DS + 1];
    count_logs("re-read", before);
    void *old = NULL;
    size_t len = 0;
    cr_assert_eq(cluster_read_file(C->keys, &old, &len), 0);
    char tmp[400];
    snprintf(tmp, sizeof(tmp), "%s.new", C->keys);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    cr_assert_geq(fd, 0);
    if (append)
        cr_assert_eq(write(fd, old, len), (ssize_t)len);
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    free(old);
    cr_assert_eq(rename(tmp, C->keys), 0);
    wait_logs("re-read", before);
}

/* The line of key `name` in the servers' keys file, into out. */
static void key_line(const char *name, char *out, size_t n)
{
    void *text = NULL;
    size_t len = 0;
    cr_assert_eq(cluster_read_file(C->keys, &text, &len), 0);
    char pat[80];
    snprintf(pat, sizeof(pat), " %s ", name);
    const char *p = strstr(text, pat);
    cr_assert_not_null(p, "no key %s", name);
    while (p > (const char *)text && p[-1] != '\n')
        p--;
    size_t l = strcspn(p, "\n");
    cr_assert_lt(l, n);
    memcpy(out, p, l);
    out[l] = '\0';
    free(text);
}

/* Writes a client key file dir/name with `line` and mode; returns its path. */
static const char *client_key(const char *name, const char *line, mode_t mode)
{
    static char path[8][400];
    static int k;
    char *p = path[k++ % 8];
    snprintf(p, 400, "%s/%s", C->dir, name);
    char text[300];
    snprintf(text, sizeof(text), "%s\n", line);
    cr_assert_eq(cluster_write_file(p, text, strlen(text)), 0);
    cr_assert_eq(chmod(p, mode), 0);
    return p;
}

static int lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* Runs a tool (argv[0] "imgstore" or "ds-admin", --ns added) with the key
 * file `key` (NULL: none). Returns the exit code; *r filled. */
static int tool(const char *key, struct cluster_run *r, const char *const *args)
{
    const char *argv[24] = {args[0], "--ns", C->ns.addr};
    int n = 3;
    for (int i = 1; args[i]; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    char env[450];
    snprintf(env, sizeof(env), "IMGSTORE_KEY_FILE=%s", key ? key : "");
    const char *add[] = {env, NULL};
    const char *del[] = {"IMGSTORE_KEY_FILE", "IMGSTORE_NS", NULL};
    cr_assert_eq(cluster_run(C, argv, key ? add : NULL, del, RUN_MS, r), 0);
    return r->exit_code;
}

/* A refusal: exit 1, one line on stderr containing `why`. */
static void assert_refused(const char *key, const char *why, const char *const *args)
{
    struct cluster_run r;
    int code = tool(key, &r, args);
    cr_assert_eq(code, 1, "%s %s: exit %d, want 1 (stderr: %s)", args[0], args[1], code, r.err);
    cr_assert_eq(lines(r.err), 1, "%s %s: want one line, got:\n%s", args[0], args[1], r.err);
    cr_assert(strstr(r.err, why), "%s %s: '%s' not in: %s", args[0], args[1], why, r.err);
    cluster_run_free(&r);
}

static void assert_ok(const char *key, const char *const *args)
{
    struct cluster_run r;
    int code = tool(key, &r, args);
    cr_assert_eq(code, 0, "%s %s: exit %d (stderr: %s)", args[0], args[1], code, r.err);
    cluster_run_free(&r);
}

static int http_status(const char *addr, const char *req)
{
    int fd = cluster_connect(addr, 5000);
    cr_assert_geq(fd, 0);
    send_all(fd, req, strlen(req));
    char buf[512];
    ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
    close(fd);
    cr_assert_gt(n, 12);
    buf[n] = '\0';
    return atoi(buf + 9);
}

/* GET path from an HTTP address: the body of a 200 answer (malloc'd, *len
 * bytes; binary-safe), or NULL. */
static char *http_get(const char *addr, const char *path, size_t *len)
{
    int fd = cluster_connect(addr, 5000);
    if (fd < 0)
        return NULL;
    char req[256];
    int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                     path);
    send_all(fd, req, (size_t)n);
    size_t got = 0, cap = 1 << 20;
    char *buf = malloc(cap);
    for (ssize_t r; got < cap && (r = recv(fd, buf + got, cap - got, 0)) > 0;)
        got += (size_t)r;
    close(fd);
    char *end = memmem(buf, got, "\r\n\r\n", 4);
    if (got < 12 || atoi(buf + 9) != 200 || !end) {
        free(buf);
        return NULL;
    }
    size_t off = (size_t)(end + 4 - buf);
    memmove(buf, buf + off, got - off);
    *len = got - off;
    return buf;
}

/* ---- impersonation ------------------------------------------------------------- */

Test(auth, impersonating_heartbeat_refused)
{
    uint64_t seed = cluster_seed("auth.impersonate");
    imgstore_t *h = cluster_client(C);
    cr_assert_not_null(h);
    enum { N = 20 };
    char names[N][IMGSTORE_NAME_MAX];
    uint32_t sizes[N];
    for (int i = 0; i < N; i++) {
        sizes[i] = 1000 + 97 * (uint32_t)i;
        cr_assert_eq(cluster_put_file(h, seed, (uint64_t)i, sizes[i], names[i], 3), 0);
    }
    char victim[80];
    server_id_of(C->ds[0].addr, victim, sizeof(victim));
    const char *fake = "127.0.0.1:9"; /* the impostor's address */

    /* 1. No key: the heartbeat is refused before anything is read. */
    int fd = cluster_connect(C->ns.addr, 5000);
    cr_assert_geq(fd, 0);
    cr_assert_eq(raw_heartbeat(fd, victim, fake), IMG_EAUTH);
    /* A key name that is not in the file, with a made-up secret. */
    struct auth_key guess = {.name = "member1", .secret_len = 32};
    cr_assert_eq(raw_auth(fd, &guess, victim), IMG_EAUTH, "a wrong secret");
    cr_assert_eq(raw_heartbeat(fd, victim, fake), IMG_EAUTH, "still unauthenticated");
    close(fd);

    /* 2. Another server's member key (ds2's): authenticated, but the id is
     * bound to ds1's key. */
    char line[300], err[AUTH_ERR_MAX];
    key_line("member2", line, sizeof(line));
    struct auth_key k2;
    cr_assert_eq(auth_key_file_load(client_key("m2.key", line, 0600), &k2, err), 0, "%s", err);
    fd = cluster_connect(C->ns.addr, 5000);
    cr_assert_geq(fd, 0);
    cr_assert_eq(raw_auth(fd, &k2, victim), 0);
    cr_assert_eq(raw_heartbeat(fd, victim, fake), IMG_EIDBOUND);
    close(fd);
    /* ... and claiming one id in the handshake, another in the heartbeat. */
    fd = cluster_connect(C->ns.addr, 5000);
    cr_assert_eq(raw_auth(fd, &k2, "0123456789abcdef0123456789abcdef"), 0);
    cr_assert_eq(raw_heartbeat(fd, victim, fake), IMG_EIDBOUND);
    close(fd);

    /* Nothing moved: every server at its own address and up, every file
     * read right through the library (fresh handles: no cached location)
     * and through each dataserver's HTTP origin (its proxy path too). */
    cr_assert_eq(servers_at_home(), (size_t)C->nds);
    for (int round = 0; round < 3; round++) {
        imgstore_t *fresh = cluster_client(C);
        for (int i = 0; i < N; i++)
            cr_assert_eq(cluster_check_file(fresh, names[i], NULL, seed, (uint64_t)i, sizes[i]),
                         0);
        imgstore_close(fresh);
    }
    for (int d = 0; d < C->nds; d++)
        for (int i = 0; i < N; i++) {
            char path[64];
            snprintf(path, sizeof(path), "/%s", names[i]);
            size_t blen = 0;
            char *body = http_get(C->ds[d].http_addr, path, &blen);
            cr_assert_not_null(body, "GET %s from ds%d", names[i], d + 1);
            cr_assert_eq(blen, sizes[i], "GET %s from ds%d: %zu bytes", names[i], d + 1, blen);
            char *want = malloc(sizes[i]);
            cluster_fill(want, sizes[i], seed, (uint64_t)i);
            cr_assert_eq(memcmp(body, want, sizes[i]), 0, "GET %s from ds%d: other bytes",
                         names[i], d + 1);
            free(want);
            free(body);
        }
    /* The refusals are logged with the peer's address. */
    void *log = NULL;
    size_t len = 0;
    cr_assert_eq(cluster_read_file(C->ns.log, &log, &len), 0);
    cr_assert(strstr(log, "that id is bound to member key 'member1'"));
    cr_assert(strstr(log, "heartbeat from 127.0.0.1:"));
    free(log);
    imgstore_close(h);
    C->passed = 1;
}

/* A dataserver that joined another cluster is refused by this one. */
Test(auth, foreign_cluster_refused)
{
    struct cluster *other = NULL;
    struct cluster *mine = C;
    cr_assert_eq(cluster_start(&(struct cluster_opts){.ndataservers = 1, .replicas = 1}, &other),
                 0);
    setenv("IMGSTORE_KEY_FILE", mine->key_operator, 1);
    /* Its dataserver (which stored the other cluster's id) now points at our
     * nameserver, with our keys. */
    cluster_signal_proc(&other->ds[0], SIGTERM);
    static const char *args[8];
    args[0] = "--ns";
    args[1] = mine->ns.addr;
    args[2] = "--keys";
    args[3] = mine->keys;
    args[4] = "--member-key";
    args[5] = "member8";
    args[6] = NULL;
    other->ds[0].args = args;
    cr_assert_eq(cluster_start_ds(other, 0), 0);
    /* Both sides log the refusal (the dataserver tries again and again). */
    int64_t t0 = cluster_now_ms();
    while (log_count(mine->ns.log, "claims another cluster id") < 2 ||
           log_count(other->ds[0].log, "peer belongs to another cluster") < 2) {
        cr_assert_lt(cluster_now_ms() - t0, 15000, "no refusal logged on both sides");
        usleep(50000);
    }
    cr_assert(cluster_alive(&other->ds[0]));
    cr_assert_eq(servers_at_home(), (size_t)mine->nds, "the foreign server is not listed");
    other->passed = 1;
    cluster_stop(other);
    C->passed = 1;
}

/* ---- keys on the tools ----------------------------------------------------------- */

Test(auth, mutating_commands_need_a_key)
{
    imgstore_t *h = cluster_client(C);
    char name[IMGSTORE_NAME_MAX], name2[IMGSTORE_NAME_MAX];
    cr_assert_eq(cluster_put_file(h, 7, 1, 3000, name, 3), 0);
    cr_assert_eq(cluster_put_file(h, 7, 2, 3000, name2, 3), 0);
    struct imgstore_stat st;
    cr_assert_eq(imgstore_stat(h, name, &st), 0);
    char block[32], id[80];
    snprintf(block, sizeof(block), "%llu", (unsigned long long)st.block_id);
    server_id_of(C->ds[2].addr, id, sizeof(id));
    const char *none = NULL, *w = C->key_writer, *op = C->key_operator;
    const char *noauth = "authentication failed", *norole = "lacks the role";

    /* The file to upload with the CLI. */
    char src[400];
    snprintf(src, sizeof(src), "%s/up.bin", C->dir);
    cr_assert_eq(cluster_write_file(src, "hello auth\n", 11), 0);

    const char *const *cmds[] = {
        (const char *[]){"imgstore", "rm", name, NULL},
        (const char *[]){"imgstore", "put", src, NULL},
        (const char *[]){"ds-admin", "readonly", id, "on", NULL},
        (const char *[]){"ds-admin", "set", "scrub_rate", "7", NULL},
        (const char *[]){"ds-admin", "drain", id, NULL},
        (const char *[]){"ds-admin", "cancel", "1", NULL},
        (const char *[]){"ds-admin", "compact", block, NULL},
        (const char *[]){"ds-admin", "repair", block, NULL},
        (const char *[]){"ds-admin", "rebalance", NULL},
        (const char *[]){"ds-admin", "verify", block, NULL},
    };
    size_t n = sizeof(cmds) / sizeof(cmds[0]);
    for (size_t i = 0; i < n; i++)
        assert_refused(none, noauth, cmds[i]);
    /* A writer key: rm and put work, operator commands do not. */
    for (size_t i = 2; i < n; i++)
        assert_refused(w, norole, cmds[i]);
    assert_ok(w, (const char *[]){"imgstore", "put", src, NULL});
    assert_ok(w, (const char *[]){"imgstore", "rm", name, NULL});
    /* The operator key: accepted (and it may do what a writer may). */
    assert_ok(op, (const char *[]){"ds-admin", "readonly", id, "on", NULL});
    assert_ok(op, (const char *[]){"ds-admin", "readonly", id, "off", NULL});
    assert_ok(op, (const char *[]){"ds-admin", "set", "scrub_rate", "7", NULL});
    assert_ok(op, (const char *[]){"ds-admin", "verify", block, NULL});
    assert_ok(op, (const char *[]){"imgstore", "rm", name2, NULL});
    /* Reads and views need none. */
    assert_ok(none, (const char *[]){"ds-admin", "servers", NULL});
    assert_ok(none, (const char *[]){"ds-admin", "settings", NULL});
    /* A key file others may read is refused by the tool itself. */
    char line[300];
    key_line("ops", line, sizeof(line));
    const char *open_key = client_key("open.key", line, 0644);
    assert_refused(open_key, "mode 0644", (const char *[]){"ds-admin", "readonly", id, "on", NULL});
    assert_refused(open_key, "mode 0644", (const char *[]){"imgstore", "rm", name2, NULL});
    /* ... also through --key-file. */
    struct cluster_run r;
    const char *argv[] = {"imgstore", "--ns", C->ns.addr, "--key-file", open_key, "rm", name2,
                          NULL};
    const char *del[] = {"IMGSTORE_KEY_FILE", NULL};
    cr_assert_eq(cluster_run(C, argv, NULL, del, RUN_MS, &r), 0);
    cr_assert_eq(r.exit_code, 1);
    cr_assert(strstr(r.err, "lets group or others read or write it"), "%s", r.err);
    cluster_run_free(&r);
    imgstore_close(h);
    C->passed = 1;
}

/* ---- revocation -------------------------------------------------------------------- */

Test(auth, revoked_key_refused_without_restart)
{
    /* A pooled connection that authenticated with the writer key. */
    unsetenv("IMGSTORE_KEY_FILE");
    imgstore_t *h = cluster_client(C);
    char err[256];
    cr_assert_eq(imgstore_set_key_file(h, C->key_writer, err, sizeof(err)), 0, "%s", err);
    char name[IMGSTORE_NAME_MAX];
    cr_assert_eq(imgstore_put(h, "abc", 3, "text/plain", name), 0);
    cr_assert_eq(imgstore_unlink(h, name), 0);
    cr_assert_eq(imgstore_put(h, "abcd", 4, "text/plain", name), 0);

    /* Revoke "app" and "ops", add a new operator key "ops2". */
    void *text = NULL;
    size_t len = 0;
    cr_assert_eq(cluster_read_file(C->keys, &text, &len), 0);
    char *kept = calloc(1, len + 400);
    for (char *save = NULL, *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
        if (!strstr(l, " app ") && !strstr(l, " ops ")) {
            strcat(kept, l);
            strcat(kept, "\n");
        }
    free(text);
    strcat(kept,
           "operator ops2 00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n");
    keys_rewrite(kept, 0);
    free(kept);

    /* The same handle, the same pooled connections: refused now. */
    char n2[IMGSTORE_NAME_MAX];
    cr_assert_eq(imgstore_put(h, "xyz", 3, "text/plain", n2), IMGSTORE_EAUTH);
    cr_assert_eq(imgstore_unlink(h, name), IMGSTORE_EAUTH);
    imgstore_close(h);
    /* New connections with the old keys too; the new key works. */
    char id[80];
    server_id_of(C->ds[1].addr, id, sizeof(id));
    assert_refused(C->key_operator, "authentication failed",
                   (const char *[]){"ds-admin", "readonly", id, "on", NULL});
    assert_refused(C->key_writer, "authentication failed",
                   (const char *[]){"imgstore", "rm", name, NULL});
    const char *k2 = client_key(
        "ops2.key", "ops2 00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff", 0600);
    assert_ok(k2, (const char *[]){"ds-admin", "readonly", id, "on", NULL});
    assert_ok(k2, (const char *[]){"ds-admin", "readonly", id, "off", NULL});
    assert_ok(k2, (const char *[]){"imgstore", "rm", name, NULL});
    /* Reads never needed a key. */
    h = cluster_client(C);
    void *got;
    size_t got_len;
    cr_assert_eq(imgstore_get(h, name, &got, &got_len), IMGSTORE_EDELETED);
    imgstore_close(h);

    /* A keys file made world-readable is refused on reload, the keys read
     * before stay (ops2 still works) and an ERROR names the file. */
    int before[CLUSTER_MAX_DS + 1];
    count_logs("mode 0644 lets group or others read or write it", before);
    cr_assert_eq(chmod(C->keys, 0644), 0);
    cr_assert_eq(utimensat(AT_FDCWD, C->keys, NULL, 0), 0);
    wait_logs("mode 0644 lets group or others read or write it", before);
    assert_ok(k2, (const char *[]){"ds-admin", "readonly", id, "on", NULL});
    cr_assert_eq(chmod(C->keys, 0600), 0);
    C->passed = 1;
}

/* A handle whose key the servers did not know yet: refused, and accepted on
 * the same handle once the key is added to the keys file (the connections
 * whose handshake was refused are not kept in the pool). */
Test(auth, key_added_later_accepted_on_the_same_handle)
{
    unsetenv("IMGSTORE_KEY_FILE");
    const char *secret = "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd";
    char line[200];
    snprintf(line, sizeof(line), "app3 %s", secret);
    const char *k3 = client_key("app3.key", line, 0600);
    imgstore_t *h = cluster_client(C);
    char err[256];
    cr_assert_eq(imgstore_set_key_file(h, k3, err, sizeof(err)), 0, "%s", err);
    char name[IMGSTORE_NAME_MAX];
    cr_assert_eq(imgstore_put(h, "early", 5, "text/plain", name), IMGSTORE_EAUTH);
    cr_assert_eq(imgstore_put(h, "early", 5, "text/plain", name), IMGSTORE_EAUTH);

    snprintf(line, sizeof(line), "writer app3 %s\n", secret);
    keys_rewrite(line, 1);
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(imgstore_put(h, "later", 5, "text/plain", name), 0, "put %d", i);
        cr_assert_eq(imgstore_unlink(h, name), 0, "unlink %d", i);
    }
    imgstore_close(h);
    C->passed = 1;
}

/* ---- servers refuse unusable keys files ----------------------------------------------- */

Test(auth, servers_refuse_open_keys_files)
{
    char path[400], data[400];
    snprintf(path, sizeof(path), "%s/open-keys", C->dir);
    snprintf(data, sizeof(data), "%s/x", C->dir);
    cr_assert_eq(cluster_write_file(path, "member m 00112233445566778899aabbccddeeff\n", 42), 0);
    cr_assert_eq(chmod(path, 0644), 0);
    struct cluster_run r;
    const char *ns[] = {"nameserver", "--listen", "127.0.0.1:1", "--data", data, "--keys", path,
                        NULL};
    cr_assert_eq(cluster_run(C, ns, NULL, NULL, RUN_MS, &r), 0);
    cr_assert_eq(r.exit_code, 2, "%s", r.err);
    cr_assert(strstr(r.err, "mode 0644") && strstr(r.err, path), "%s", r.err);
    cluster_run_free(&r);
    const char *ds[] = {"dataserver", "--ns", C->ns.addr, "--listen", "127.0.0.1:1", "--http",
                        "127.0.0.1:1", "--data", data, "--keys", path, NULL};
    cr_assert_eq(cluster_run(C, ds, NULL, NULL, RUN_MS, &r), 0);
    cr_assert_eq(r.exit_code, 2, "%s", r.err);
    cr_assert(strstr(r.err, "mode 0644"), "%s", r.err);
    cluster_run_free(&r);
    /* No --keys and no --insecure: refused. */
    const char *bare[] = {"nameserver", "--listen", "127.0.0.1:1", "--data", data, NULL};
    cr_assert_eq(cluster_run(C, bare, NULL, NULL, RUN_MS, &r), 0);
    cr_assert_eq(r.exit_code, 2, "%s", r.err);
    cr_assert(strstr(r.err, "--insecure"), "%s", r.err);
    cluster_run_free(&r);
    /* A malformed line: its number is named. */
    cr_assert_eq(chmod(path, 0600), 0);
    cr_assert_eq(cluster_write_file(path, "# k\nmember m 0011\n", 18), 0);
    cr_assert_eq(cluster_run(C, ns, NULL, NULL, RUN_MS, &r), 0);
    cr_assert_eq(r.exit_code, 2, "%s", r.err);
    cr_assert(strstr(r.err, "line 2"), "%s", r.err);
    cluster_run_free(&r);
    C->passed = 1;
}

/* ---- HTTP ----------------------------------------------------------------------------- */

Test(auth, http_uploads_and_deletes_take_keys)
{
    char line[300];
    key_line("app", line, sizeof(line));
    const char *secret = strrchr(line, ' ') + 1;
    const char *a = C->ds[0].http_addr;
    char req[800];
    const char *body = "GIF89a-tiny";
    /* No token: 401 with WWW-Authenticate. */
    snprintf(req, sizeof(req),
             "POST / HTTP/1.1\r\nHost: t\r\nContent-Type: image/gif\r\nContent-Length: %zu\r\n"
             "\r\n%s",
             strlen(body), body);
    cr_assert_eq(http_status(a, req), 401);
    /* A token that is no key (a secret's prefix, a key name): 401. */
    snprintf(req, sizeof(req),
             "POST / HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %.40s\r\n"
             "Content-Type: image/gif\r\nContent-Length: %zu\r\n\r\n%s",
             secret, strlen(body), body);
    cr_assert_eq(http_status(a, req), 401);
    snprintf(req, sizeof(req),
             "POST / HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer app\r\n"
             "Content-Type: image/gif\r\nContent-Length: %zu\r\n\r\n%s",
             strlen(body), body);
    cr_assert_eq(http_status(a, req), 401);
    /* The writer key's secret: 201. */
    snprintf(req, sizeof(req),
             "POST / HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\n"
             "Content-Type: image/gif\r\nContent-Length: %zu\r\n\r\n%s",
             secret, strlen(body), body);
    int fd = cluster_connect(a, 5000);
    send_all(fd, req, strlen(req));
    char resp[1024];
    ssize_t n = recv(fd, resp, sizeof(resp) - 1, 0);
    close(fd);
    cr_assert_gt(n, 12);
    resp[n] = '\0';
    cr_assert_eq(atoi(resp + 9), 201, "%s", resp);
    char name[64];
    json_at_str(json_http_body(resp), "name", name, sizeof(name));
    /* DELETE: 401 without, 204 with the key. */
    snprintf(req, sizeof(req), "DELETE /%s HTTP/1.1\r\nHost: t\r\n\r\n", name);
    cr_assert_eq(http_status(C->ds[1].http_addr, req), 401);
    snprintf(req, sizeof(req), "DELETE /%s HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\n\r\n",
             name, secret);
    cr_assert_eq(http_status(C->ds[1].http_addr, req), 204);
    /* A key revoked from the file: 401 at once (no restart). */
    void *text = NULL;
    size_t len = 0;
    cr_assert_eq(cluster_read_file(C->keys, &text, &len), 0);
    char *p = strstr(text, "writer app ");
    cr_assert_not_null(p);
    memcpy(p, "writer old ", 11); /* renamed: the secret stays, now of key "old" */
    char *q = strstr(p, secret);
    q[0] = q[0] == 'f' ? '0' : 'f'; /* and changed */
    keys_rewrite(text, 0);
    free(text);
    snprintf(req, sizeof(req),
             "POST / HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\n"
             "Content-Type: image/gif\r\nContent-Length: %zu\r\n\r\n%s",
             secret, strlen(body), body);
    cr_assert_eq(http_status(a, req), 401);
    C->passed = 1;
}

/* ---- the dataserver's native port: frames between servers need a member key ---- */

Test(auth, dataserver_port_roles)
{
    imgstore_t *h = cluster_client(C);
    char name[IMGSTORE_NAME_MAX];
    cr_assert_eq(cluster_put_file(h, 9, 1, 500, name, 3), 0);
    struct imgstore_stat st;
    cr_assert_eq(imgstore_stat(h, name, &st), 0);
    imgstore_close(h);
    int d = cluster_ds_index(C, st.replicas[0]);
    cr_assert_geq(d, 0);
    Imgstore__ReplAppend ra = IMGSTORE__REPL_APPEND__INIT;
    ra.block_id = st.block_id;
    ra.offset = 1u << 20;
    ra.primary_id = (char *)"0123456789abcdef0123456789abcdef";
    Imgstore__SealBlock sb = IMGSTORE__SEAL_BLOCK__INIT;
    sb.block_id = st.block_id;

    /* No key: REPL_APPEND refused for authentication, before anything. */
    int fd = cluster_connect(C->ds[d].addr, 5000);
    cr_assert_geq(fd, 0);
    cr_assert_eq(call(fd, FT_REPL_APPEND, &ra.base, NULL, NULL), IMG_EAUTH);
    /* A nameserver command on the native port: not from here at all. */
    cr_assert_eq(call(fd, FT_SEAL_BLOCK, &sb.base, NULL, NULL), IMG_EBADTYPE);
    close(fd);

    /* An operator key: authenticated, but not a member. */
    char line[300], err[AUTH_ERR_MAX];
    key_line("ops", line, sizeof(line));
    struct auth_key ko;
    cr_assert_eq(auth_key_file_load(client_key("ops.key", line, 0600), &ko, err), 0, "%s", err);
    fd = cluster_connect(C->ds[d].addr, 5000);
    cr_assert_eq(raw_auth_as(fd, &ko, "", "operator"), 0);
    cr_assert_eq(call(fd, FT_REPL_APPEND, &ra.base, NULL, NULL), IMG_EPERM);
    /* A second handshake on the connection fails it, for good. */
    Imgstore__AuthHello hello = IMGSTORE__AUTH_HELLO__INIT;
    cr_assert_eq(call(fd, FT_AUTH_HELLO, &hello.base, NULL, NULL), IMG_EAUTH);
    Imgstore__Verify v = IMGSTORE__VERIFY__INIT;
    v.block_id = st.block_id;
    cr_assert_eq(call(fd, FT_VERIFY, &v.base, NULL, NULL), IMG_EAUTH, "no longer authenticated");
    close(fd);
    /* The file is still there and intact. */
    h = cluster_client(C);
    cr_assert_eq(cluster_check_file(h, name, NULL, 9, 1, 500), 0);
    imgstore_close(h);
    C->passed = 1;
}

/* ---- the off switch ------------------------------------------------------------------ */

Test(auth, insecure_cluster_is_open)
{
    struct cluster *open_c = NULL;
    cr_assert_eq(cluster_start(&(struct cluster_opts){.ndataservers = 1, .replicas = 1,
                                                      .insecure = 1},
                               &open_c),
                 0);
    void *log = NULL;
    size_t len = 0;
    cr_assert_eq(cluster_read_file(open_c->ns.log, &log, &len), 0);
    cr_assert(strstr(log, "authentication off (--insecure)"), "a WARN at start");
    free(log);
    /* No key anywhere: put and rm work. */
    cr_assert_null(getenv("IMGSTORE_KEY_FILE"));
    imgstore_t *h = cluster_client(open_c);
    char name[IMGSTORE_NAME_MAX];
    cr_assert_eq(imgstore_put(h, "open", 4, "text/plain", name), 0);
    cr_assert_eq(imgstore_unlink(h, name), 0);
    /* A key the servers cannot check: the request goes on without it. */
    char kp[400];
    snprintf(kp, sizeof(kp), "%s/k.key", open_c->dir);
    cr_assert_eq(cluster_write_file(kp, "k 00112233445566778899aabbccddeeff\n", 35), 0);
    cr_assert_eq(chmod(kp, 0600), 0);
    cr_assert_eq(imgstore_set_key_file(h, kp, NULL, 0), 0);
    cr_assert_eq(imgstore_put(h, "open", 4, "text/plain", name), 0);
    imgstore_close(h);
    /* HTTP uploads are off without keys or an upload token: 403. */
    char req[300];
    snprintf(req, sizeof(req),
             "POST / HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer 00112233445566778899aabbccddeeff"
             "\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\nopen");
    cr_assert_eq(http_status(open_c->ds[0].http_addr, req), 403);
    open_c->passed = 1;
    cluster_stop(open_c);
    setenv("IMGSTORE_KEY_FILE", C->key_operator, 1);
    C->passed = 1;
}
