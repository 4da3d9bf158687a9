/* rpc.c - blocking frame RPC and the per-address connection pool of the
 * client library (see rpc.h).
 *
 * Sockets are non-blocking (SOCK_NONBLOCK | SOCK_CLOEXEC, TCP_NODELAY) and
 * every wait goes through poll() with the time left before the call's
 * deadline, so no call can hang past it. Sends use MSG_NOSIGNAL: a peer
 * that closed its end yields EPIPE, never SIGPIPE. The handshake of a
 * connection (rpc.h, "Authentication") is two calls on it before the
 * request; its proofs are computed by net/auth.c. */
#include "client/rpc.h"

#include "base/err.h"
#include "net/auth.h"
#include "proto/frame.h"
#include "proto/imgstore.pb-c.h"

#include <openssl/crypto.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

struct rpc_conn {
    int fd;
    int authed; /* 1: the handshake succeeded on it, -1: the server refused it */
    char addr[RPC_ADDR_MAX];
    struct rpc_conn *next;
};

int64_t rpc_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int rpc_pool_init(struct rpc_pool *p)
{
    memset(p, 0, sizeof(*p));
    int rc = pthread_mutex_init(&p->mu, NULL);
    if (rc != 0)
        return -rc;
    /* Start request ids somewhere unpredictable so that two handles (or a
     * restarted process) do not reuse the same ids on a long-lived server. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    p->next_id = ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 16);
    return 0;
}

static void conn_free(struct rpc_conn *c)
{
    if (!c)
        return;
    if (c->fd >= 0)
        close(c->fd);
    free(c);
}

void rpc_pool_destroy(struct rpc_pool *p)
{
    struct rpc_conn *c = p->idle;
    while (c) {
        struct rpc_conn *next = c->next;
        conn_free(c);
        c = next;
    }
    p->idle = NULL;
    p->nidle = 0;
    if (p->key)
        OPENSSL_cleanse(p->key, sizeof(*p->key));
    free(p->key);
    p->key = NULL;
    pthread_mutex_destroy(&p->mu);
}

int rpc_pool_set_key(struct rpc_pool *p, const struct auth_key *key)
{
    struct auth_key *k = NULL;
    if (key) {
        k = malloc(sizeof(*k));
        if (!k)
            return -ENOMEM;
        *k = *key;
    }
    if (p->key)
        OPENSSL_cleanse(p->key, sizeof(*p->key));
    free(p->key);
    p->key = k;
    return 0;
}

/* Milliseconds left before `deadline`, clamped to [0, INT_MAX-ish]. */
static int ms_left(int64_t deadline)
{
    int64_t left = deadline - rpc_now_ms();
    if (left <= 0)
        return 0;
    return left > (1 << 30) ? (1 << 30) : (int)left;
}

/* Waits until fd is ready for `events` or the deadline passes. Returns 0,
 * IMG_ETIMEDOUT or IMG_ECONN (the peer hung up or the socket errored). */
static int wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        int left = ms_left(deadline);
        if (left == 0)
            return IMG_ETIMEDOUT;
        struct pollfd pfd = {.fd = fd, .events = events};
        int n = poll(&pfd, 1, left);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return IMG_ECONN;
        }
        if (n == 0)
            return IMG_ETIMEDOUT;
        if (pfd.revents & (events | POLLHUP | POLLERR))
            return 0; /* the following read/write reports the real state */
    }
}

/* After a send or recv on fd failed (errno set): returns 0 when it is worth
 * trying again (interrupted, or fd became ready for `events`), else
 * IMG_ECONN or IMG_ETIMEDOUT. */
static int wait_again(int fd, short events, int64_t deadline)
{
    if (errno == EINTR)
        return 0;
    if (errno != EAGAIN && errno != EWOULDBLOCK)
        return IMG_ECONN;
    return wait_fd(fd, events, deadline);
}

/* Connects one address of a getaddrinfo list. Returns the fd or an error. */
static int connect_one(const struct addrinfo *ai, int64_t deadline)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    ai->ai_protocol);
    if (fd < 0)
        return IMG_ECONN;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    int rc = 0;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        if (errno != EINPROGRESS) {
            rc = IMG_ECONN;
            goto err;
        }
        rc = wait_fd(fd, POLLOUT, deadline);
        if (rc != 0)
            goto err;
        int soerr = 0;
        socklen_t sl = sizeof(soerr);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr != 0) {
            rc = IMG_ECONN;
            goto err;
        }
    }
    return fd;
err:
    close(fd);
    return rc;
}

/* Opens a new connection to `addr`. Returns 0 with *out (owned by the
 * caller) or an error. */
static int conn_open(const char *addr, int64_t deadline, struct rpc_conn **out)
{
    char host[ADDR_HOST_MAX], port[ADDR_PORT_MAX];
    int rc = addr_split(addr, host, port);
    if (rc != 0)
        return rc;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    if (getaddrinfo(host, port, &hints, &res) != 0 || !res)
        return IMG_ECONN;
    int fd = IMG_ECONN;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = connect_one(ai, deadline);
        if (fd >= 0 || fd == IMG_ETIMEDOUT)
            break;
    }
    freeaddrinfo(res);
    if (fd < 0)
        return fd;
    struct rpc_conn *c = calloc(1, sizeof(*c));
    if (!c) {
        close(fd);
        return -ENOMEM;
    }
    c->fd = fd;
    snprintf(c->addr, sizeof(c->addr), "%s", addr);
    *out = c;
    return 0;
}

/* An idle connection is usable only if nothing is waiting to be read on
 * it: readable means EOF, a reset or unsolicited bytes, all fatal. */
static int conn_still_idle(const struct rpc_conn *c)
{
    struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
    return poll(&pfd, 1, 0) == 0;
}

/* Takes an idle connection to `addr` from the pool, or NULL. The caller
 * owns the result. */
static struct rpc_conn *pool_take(struct rpc_pool *p, const char *addr)
{
    for (;;) {
        struct rpc_conn *found = NULL;
        pthread_mutex_lock(&p->mu);
        for (struct rpc_conn **pp = &p->idle; *pp; pp = &(*pp)->next) {
            if (strcmp((*pp)->addr, addr) == 0) {
                found = *pp;
                *pp = found->next;
                found->next = NULL;
                p->nidle--;
                break;
            }
        }
        pthread_mutex_unlock(&p->mu);
        if (!found || conn_still_idle(found))
            return found;
        conn_free(found);
    }
}

/* Returns a healthy connection to the pool (ownership moves to the pool),
 * or closes it when the pool already keeps enough. */
static void pool_put(struct rpc_pool *p, struct rpc_conn *c)
{
    unsigned same = 0;
    pthread_mutex_lock(&p->mu);
    for (struct rpc_conn *i = p->idle; i; i = i->next)
        if (strcmp(i->addr, c->addr) == 0)
            same++;
    if (same < RPC_MAX_IDLE_PER_ADDR && p->nidle < RPC_MAX_IDLE) {
        c->next = p->idle;
        p->idle = c;
        p->nidle++;
        c = NULL;
    }
    pthread_mutex_unlock(&p->mu);
    conn_free(c);
}

/* Sends every byte of the iovecs. Returns 0, IMG_ECONN or IMG_ETIMEDOUT. */
static int send_all(int fd, struct iovec *iov, int iovcnt, int64_t deadline)
{
    while (iovcnt > 0) {
        if (iov->iov_len == 0) {
            iov++;
            iovcnt--;
            continue;
        }
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)iovcnt};
        ssize_t n = sendmsg(fd, &mh, MSG_NOSIGNAL);
        if (n < 0) {
            int rc = wait_again(fd, POLLOUT, deadline);
            if (rc != 0)
                return rc;
            continue;
        }
        size_t done = (size_t)n;
        while (iovcnt > 0 && done >= iov->iov_len) {
            done -= iov->iov_len;
            iov++;
            iovcnt--;
        }
        if (iovcnt > 0) {
            iov->iov_base = (uint8_t *)iov->iov_base + done;
            iov->iov_len -= done;
        }
    }
    return 0;
}

/* Reads exactly len bytes. *got counts bytes read so far (for the caller's
 * "did the peer say anything" test). Returns 0, IMG_ECONN or
 * IMG_ETIMEDOUT. */
static int recv_all(int fd, void *buf, size_t len, int64_t deadline, size_t *got)
{
    uint8_t *p = buf;
    size_t off = 0;
    while (off < len) {
        ssize_t n = recv(fd, p + off, len - off, 0);
        if (n > 0) {
            off += (size_t)n;
            *got += (size_t)n;
            continue;
        }
        if (n == 0)
            return IMG_ECONN;
        int rc = wait_again(fd, POLLIN, deadline);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* Reads one response for (type, id) into *out. Returns 0 or an error. */
static int recv_response(int fd, unsigned type, uint64_t id, uint32_t max_body,
                         int64_t deadline, size_t *got, struct rpc_resp *out)
{
    uint8_t hb[FRAME_HEADER_SIZE];
    struct frame_header h;
    int rc = recv_all(fd, hb, sizeof(hb), deadline, got);
    if (rc != 0)
        return rc;
    rc = frame_decode(hb, &h);
    if (rc != 0)
        return rc;
    if (h.type != (type | FRAME_RESPONSE) || h.request_id != id)
        return IMG_EPROTO;
    if (h.body_len > max_body)
        return IMG_ETOOBIG;
    /* One extra byte so that a zero length still gets a real pointer. */
    out->head = malloc((size_t)h.head_len + 1);
    out->body = malloc((size_t)h.body_len + 1);
    if (!out->head || !out->body)
        return -ENOMEM;
    out->head_len = h.head_len;
    out->body_len = h.body_len;
    rc = recv_all(fd, out->head, h.head_len, deadline, got);
    if (rc == 0)
        rc = recv_all(fd, out->body, h.body_len, deadline, got);
    if (rc != 0)
        return rc;
    out->status = h.status;
    return 0;
}

/* Packs the frame header and head of a request into a malloc'd buffer
 * (owned by the caller). Returns 0 or -ENOMEM / IMG_ETOOBIG. */
static int build_request(unsigned type, uint64_t id, const ProtobufCMessage *req,
                         uint32_t body_len, uint8_t **out, size_t *out_len)
{
    size_t hl = req ? protobuf_c_message_get_packed_size(req) : 0;
    if (hl > FRAME_MAX_HEAD || body_len > FRAME_MAX_BODY)
        return IMG_ETOOBIG;
    uint8_t *buf = malloc(FRAME_HEADER_SIZE + hl);
    if (!buf)
        return -ENOMEM;
    struct frame_header h = {.version = FRAME_VERSION, .type = (uint8_t)type, .status = 0,
                             .request_id = id, .head_len = (uint32_t)hl,
                             .body_len = body_len};
    frame_encode(&h, buf);
    if (req)
        protobuf_c_message_pack(req, buf + FRAME_HEADER_SIZE);
    *out = buf;
    *out_len = FRAME_HEADER_SIZE + hl;
    return 0;
}

/* One attempt on connection c. On 0 the connection is reusable. *got
 * reports whether the peer sent anything. */
static int call_on(struct rpc_conn *c, const uint8_t *req, size_t req_len, unsigned type,
                   uint64_t id, const void *body, uint32_t body_len, uint32_t max_body,
                   int64_t deadline, size_t *got, struct rpc_resp *out)
{
    struct iovec iov[2] = {{.iov_base = (void *)req, .iov_len = req_len},
                           {.iov_base = (void *)body, .iov_len = body ? body_len : 0}};
    int rc = send_all(c->fd, iov, 2, deadline);
    if (rc != 0)
        return rc;
    return recv_response(c->fd, type, id, max_body, deadline, got, out);
}

/* Requests anyone may send: no handshake for them. */
static int is_open(unsigned type)
{
    switch (type) {
    case FT_READ: case FT_STAT: case FT_LOOKUP: case FT_CLUSTER_STATUS: case FT_LIST_TASKS:
    case FT_ADMIN_LIST_BLOCKS: case FT_ADMIN_BLOCK_INFO: case FT_ADMIN_SERVER_RATES:
    case FT_ADMIN_SETTINGS:
        return 1;
    default:
        return 0;
    }
}

/* One request/response of the handshake on c. Returns 0 with *out (status
 * maybe an error) or an error. */
static int hs_call(struct rpc_pool *p, struct rpc_conn *c, unsigned type,
                   const ProtobufCMessage *msg, int64_t deadline, size_t *got,
                   struct rpc_resp *out)
{
    uint64_t id = __atomic_fetch_add(&p->next_id, 1, __ATOMIC_RELAXED);
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = build_request(type, id, msg, 0, &buf, &len);
    if (rc == 0)
        rc = call_on(c, buf, len, type, id, NULL, 0, 0, deadline, got, out);
    free(buf);
    return rc;
}

/* Authenticates c with the pool's key. Returns 0 (c->authed set), 0 with
 * out->status the server's refusal, or an error (IMG_EAUTH: the server did
 * not prove the key). */
static int handshake(struct rpc_pool *p, struct rpc_conn *c, int64_t deadline, size_t *got,
                     struct rpc_resp *out)
{
    const struct auth_key *k = p->key;
    Imgstore__AuthHello hello = IMGSTORE__AUTH_HELLO__INIT;
    int rc = hs_call(p, c, FT_AUTH_HELLO, &hello.base, deadline, got, out);
    if (rc || out->status)
        return rc;
    Imgstore__AuthHelloResp *hr = (Imgstore__AuthHelloResp *)rpc_unpack(
        out, &imgstore__auth_hello_resp__descriptor);
    rpc_resp_free(out);
    if (!hr || hr->server_nonce.len != AUTH_NONCE_LEN) {
        if (hr)
            imgstore__auth_hello_resp__free_unpacked(hr, NULL);
        return IMG_EPROTO;
    }
    uint8_t sn[AUTH_NONCE_LEN], cn[AUTH_NONCE_LEN], proof[AUTH_PROOF_LEN];
    memcpy(sn, hr->server_nonce.data, AUTH_NONCE_LEN);
    imgstore__auth_hello_resp__free_unpacked(hr, NULL);
    if (auth_random(cn, sizeof(cn)) != 0)
        return IMG_EAUTH;
    struct auth_claims cl = {"", ""};
    auth_proof(k, 0, sn, cn, k->name, &cl, proof);
    Imgstore__Auth a = IMGSTORE__AUTH__INIT;
    a.key_name = (char *)k->name;
    a.client_nonce.data = cn;
    a.client_nonce.len = sizeof(cn);
    a.cluster_id = (char *)"";
    a.server_id = (char *)"";
    a.proof.data = proof;
    a.proof.len = sizeof(proof);
    rc = hs_call(p, c, FT_AUTH, &a.base, deadline, got, out);
    if (rc || out->status)
        return rc;
    Imgstore__AuthResp *ar =
        (Imgstore__AuthResp *)rpc_unpack(out, &imgstore__auth_resp__descriptor);
    rpc_resp_free(out);
    if (!ar)
        return IMG_EPROTO;
    rc = auth_proof_check(k, 1, sn, cn, k->name, &cl, ar->server_proof.data, ar->server_proof.len);
    imgstore__auth_resp__free_unpacked(ar, NULL);
    if (rc == 0)
        c->authed = 1;
    return rc;
}

int rpc_call(struct rpc_pool *p, const char *addr, unsigned type, const ProtobufCMessage *req,
             const void *body, uint32_t body_len, uint32_t max_body, int io_timeout_ms,
             int64_t deadline_ms, struct rpc_resp *out)
{
    memset(out, 0, sizeof(*out));
    if (addr_check(addr) != 0 || (body_len && !body))
        return IMG_EINVAL;
    int64_t deadline = rpc_now_ms() + io_timeout_ms;
    if (deadline > deadline_ms)
        deadline = deadline_ms;
    uint64_t id = __atomic_fetch_add(&p->next_id, 1, __ATOMIC_RELAXED);
    uint8_t *buf = NULL;
    size_t buf_len = 0;
    int rc = build_request(type, id, req, body_len, &buf, &buf_len);
    if (rc != 0)
        return rc;
    struct rpc_conn *c = pool_take(p, addr);
    int reused = c != NULL;
    for (;;) {
        if (!c) {
            rc = conn_open(addr, deadline, &c);
            if (rc != 0)
                goto err;
        }
        size_t got = 0;
        rc = 0;
        if (p->key && c->authed == 0 && !is_open(type)) {
            rc = handshake(p, c, deadline, &got, out);
            if (rc == 0 && out->status != 0) {
                /* Refused (a wrong key, or authentication off there): the
                 * server's answer to the request itself decides. */
                rpc_resp_free(out);
                c->authed = -1;
            }
        }
        if (rc == 0)
            rc = call_on(c, buf, buf_len, type, id, body, body_len, max_body, deadline, &got, out);
        if (rc == 0)
            break;
        conn_free(c);
        c = NULL;
        rpc_resp_free(out);
        /* A pooled connection the server closed while idle fails at once
         * with nothing read; that says nothing about the server. */
        if (!(reused && got == 0 && rc == IMG_ECONN))
            goto err;
        reused = 0;
    }
    free(buf);
    /* A connection whose handshake was refused stays unauthenticated; once
     * a write on it is refused for that, it is dropped rather than pooled,
     * so the next write handshakes afresh (the key may have been added to
     * the servers' keys file since: they re-read it every second). */
    if (c->authed == -1 && out->status == IMG_EAUTH)
        conn_free(c);
    else
        pool_put(p, c);
    return 0;
err:
    free(buf);
    conn_free(c);
    rpc_resp_free(out);
    return rc;
}

void rpc_resp_free(struct rpc_resp *r)
{
    if (!r)
        return;
    free(r->head);
    free(r->body);
    memset(r, 0, sizeof(*r));
}

ProtobufCMessage *rpc_unpack(const struct rpc_resp *r, const ProtobufCMessageDescriptor *desc)
{
    return protobuf_c_message_unpack(desc, NULL, r->head_len, r->head);
}
