/* conn.c - framed connections on libuv (see conn.h).
 *
 * Limits (conn_limits): each conn's sweep timer also checks the deadline of
 * the frame being received (its first byte's time plus frame_ms plus its
 * announced length at min_rate) and the idle timeout; an admission
 * callback sees each request frame's header before its bytes are kept, and
 * a refused frame is answered at once and its bytes read and dropped
 * (c->skip), so a refused 64 MiB body costs no memory; so is a response
 * frame that no request of ours awaits. */
#include "net/conn.h"

#include "base/err.h"
#include "base/log.h"
#include "net/limits.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define READ_CHUNK (64u * 1024)
#define SWEEP_MS 100

struct pending {
    struct pending *next;
    uint64_t id;
    uint64_t deadline_ms; /* 0: none */
    conn_reply_cb cb;
    void *arg;
};

struct conn {
    uv_tcp_t tcp;
    uv_timer_t sweep;
    uv_connect_t connect_req;
    int closing;
    int handles_open;
    conn_frame_cb on_frame;
    conn_close_cb on_close;
    void *ctx;
    void *data;
    uint8_t *rbuf;
    size_t rlen, rcap;
    uint64_t next_id;
    /* Requests awaiting an answer, oldest first: a peer answers mostly in
     * order, so matching an answer looks at the head of the list, not at
     * every request in flight (a full report can cause 100,000s). */
    struct pending *pending;
    struct pending **pending_tail; /* the last `next` field, or &pending */
    size_t wq_bytes;
    char peer[CONN_ADDR_TEXT_MAX];
    /* Limits (conn.h, struct conn_limits). */
    struct conn_limits lim;
    struct sockaddr_storage peer_ss; /* counted in lim.gate when gated */
    int gated;
    uint64_t frame_start_ms;  /* first byte of the frame being received; 0: none */
    uint64_t frame_len;       /* its announced length once its header is in; 0: not yet */
    uint64_t last_io_ms;      /* the last byte read or written */
    uint64_t skip;            /* bytes of a refused frame still to drop */
    uint32_t unanswered;      /* requests handed to on_frame, not yet replied to */
    int checked;              /* the frame at rbuf[0] passed the header checks */
    int admitted;             /* the frame at rbuf[0] was admitted: release owed */
    struct frame_header admitted_h;
};

static struct conn_stats stats;

static int send_frame(struct conn *c, unsigned type, int status, uint64_t id,
                      const ProtobufCMessage *msg, const void *body, uint32_t body_len,
                      conn_free_fn body_free);

void conn_stats_get(struct conn_stats *out)
{
    *out = stats;
}

struct wreq {
    uv_write_t req;
    struct conn *c;
    uint8_t *hdr; /* frame header + packed head, malloc'd */
    void *body;
    conn_free_fn body_free;
    size_t total;
};

static void complete_all_pending(struct conn *c, int status)
{
    while (c->pending) {
        struct pending *p = c->pending;
        c->pending = p->next;
        if (!c->pending)
            c->pending_tail = &c->pending;
        p->cb(status, NULL, p->arg);
        free(p);
    }
}

static void on_handle_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    if (--c->handles_open > 0)
        return;
    complete_all_pending(c, IMG_ECONN);
    if (c->admitted) {
        c->admitted = 0;
        if (c->lim.release)
            c->lim.release(c, &c->admitted_h, c->ctx);
    }
    if (c->gated)
        conn_gate_leave(c->lim.gate, &c->peer_ss);
    if (c->on_close)
        c->on_close(c, c->ctx);
    free(c->rbuf);
    free(c);
}

void conn_close(struct conn *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    uv_read_stop((uv_stream_t *)&c->tcp);
    uv_close((uv_handle_t *)&c->sweep, on_handle_closed);
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
}

int conn_is_closing(const struct conn *c)
{
    return c->closing;
}

int conn_reply_status(int status, const struct frame *f)
{
    return status ? status : (f ? f->h.status : IMG_ECONN);
}

void *conn_reply_unpack(int status, const struct frame *f, const ProtobufCMessageDescriptor *desc,
                        int *rc)
{
    *rc = conn_reply_status(status, f);
    if (*rc != 0)
        return NULL;
    ProtobufCMessage *m = protobuf_c_message_unpack(desc, NULL, f->h.head_len, f->head);
    if (!m)
        *rc = IMG_EPROTO;
    return m;
}

const char *conn_peer(const struct conn *c)
{
    return c->peer;
}

size_t conn_write_queue_bytes(const struct conn *c)
{
    return c->wq_bytes;
}

void conn_set_data(struct conn *c, void *data)
{
    c->data = data;
}

void *conn_get_data(const struct conn *c)
{
    return c->data;
}

/* Takes *pp out of c's pending list; before its callback runs, since the
 * callback may send new requests. */
static void unlink_pending(struct conn *c, struct pending **pp)
{
    *pp = (*pp)->next;
    if (!*pp)
        c->pending_tail = pp;
}

/* Closes c when its frame is overdue or it sat idle too long. Returns 1
 * when it closed c. */
static int check_limits(struct conn *c, uint64_t now)
{
    const struct conn_limits *l = &c->lim;
    if (l->frame_ms && c->frame_start_ms) {
        uint64_t allow = l->frame_ms;
        if (l->min_rate)
            allow += c->frame_len * 1000 / l->min_rate;
        if (now - c->frame_start_ms >= allow) {
            log_info("closing connection from %s: a frame of %llu bytes took over %llu ms",
                     c->peer, (unsigned long long)c->frame_len, (unsigned long long)allow);
            stats.frame_timeouts++;
            conn_close(c);
            return 1;
        }
    }
    if (!l->idle_ms || now - c->last_io_ms < l->idle_ms)
        return 0;
    if (c->wq_bytes > 0) {
        /* A peer that stopped reading: nothing written for idle_ms plus
         * what waits at min_rate. */
        uint64_t allow = l->idle_ms + (l->min_rate ? c->wq_bytes * 1000 / l->min_rate : 0);
        if (now - c->last_io_ms >= allow) {
            log_info("closing connection from %s: %zu bytes not read for %llu ms", c->peer,
                     c->wq_bytes, (unsigned long long)allow);
            stats.idle_closes++;
            conn_close(c);
            return 1;
        }
        return 0;
    }
    if (!c->frame_start_ms && !c->pending && c->unanswered == 0) {
        log_debug("closing idle connection with %s", c->peer);
        stats.idle_closes++;
        conn_close(c);
        return 1;
    }
    return 0;
}

static void sweep_cb(uv_timer_t *t)
{
    struct conn *c = t->data;
    uint64_t now = uv_now(t->loop);
    if (check_limits(c, now))
        return;
    struct pending **pp = &c->pending;
    while (*pp) {
        struct pending *p = *pp;
        if (p->deadline_ms && p->deadline_ms <= now) {
            unlink_pending(c, pp);
            p->cb(IMG_ETIMEDOUT, NULL, p->arg);
            free(p);
            if (c->closing)
                return;
            continue;
        }
        pp = &p->next;
    }
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct conn *c = h->data;
    (void)suggested;
    if (c->rcap - c->rlen < READ_CHUNK) {
        size_t ncap = c->rcap ? c->rcap * 2 : READ_CHUNK * 2;
        while (ncap - c->rlen < READ_CHUNK)
            ncap *= 2;
        uint8_t *n = realloc(c->rbuf, ncap);
        if (!n) {
            buf->base = NULL;
            buf->len = 0;
            return;
        }
        c->rbuf = n;
        c->rcap = ncap;
    }
    buf->base = (char *)c->rbuf + c->rlen;
    buf->len = c->rcap - c->rlen;
}

static void dispatch_response(struct conn *c, const struct frame *f)
{
    struct pending **pp = &c->pending;
    while (*pp && (*pp)->id != f->h.request_id)
        pp = &(*pp)->next;
    if (!*pp) {
        log_debug("response to unknown request %llu from %s", (unsigned long long)f->h.request_id,
                  c->peer);
        return;
    }
    struct pending *p = *pp;
    unlink_pending(c, pp);
    p->cb(0, f, p->arg);
    free(p);
}

/* Consumes every complete frame in the read buffer. Returns IMG_E* when the
 * stream is not our protocol (the caller closes the conn). */
static int process_frames(struct conn *c)
{
    size_t off = 0;
    int rc = 0;
    int ended = 0; /* a frame ended here: the bytes after it start a new one */
    for (;;) {
        if (c->skip > 0 && !c->closing) {
            size_t n = c->rlen - off < c->skip ? c->rlen - off : (size_t)c->skip;
            off += n;
            c->skip -= n;
            if (c->skip > 0)
                break;
            ended = 1;
            c->frame_len = 0;
        }
        if (c->closing || c->rlen - off < FRAME_HEADER_SIZE)
            break;
        struct frame f;
        rc = frame_decode(c->rbuf + off, &f.h);
        if (rc != 0)
            break;
        size_t total = FRAME_HEADER_SIZE + (size_t)f.h.head_len + f.h.body_len;
        c->frame_len = total;
        if (!c->checked) {
            /* Before the frame's bytes are kept: a response nobody waits
             * for, or a request its owner refuses, is dropped as it comes. */
            int st = 0, drop = 0;
            if (f.h.type & FRAME_RESPONSE) {
                const struct pending *p = c->pending;
                while (p && p->id != f.h.request_id)
                    p = p->next;
                drop = !p;
                if (drop)
                    log_debug("dropping a response to unknown request %llu from %s",
                              (unsigned long long)f.h.request_id, c->peer);
            } else if (c->lim.admit) {
                st = c->lim.admit(c, &f.h, c->ctx);
                drop = st != 0;
            }
            if (drop) {
                if (st != 0) {
                    stats.refused++;
                    send_frame(c, f.h.type | FRAME_RESPONSE, st, f.h.request_id, NULL, NULL, 0,
                               NULL);
                }
                off += FRAME_HEADER_SIZE;
                c->skip = total - FRAME_HEADER_SIZE;
                continue;
            }
            c->checked = 1;
            if (c->lim.admit && !(f.h.type & FRAME_RESPONSE)) {
                c->admitted = 1;
                c->admitted_h = f.h;
            }
        }
        if (c->rlen - off < total)
            break;
        f.head = c->rbuf + off + FRAME_HEADER_SIZE;
        f.body = f.head + f.h.head_len;
        off += total;
        ended = 1;
        c->frame_len = 0;
        c->checked = 0;
        if (f.h.type & FRAME_RESPONSE) {
            dispatch_response(c, &f);
        } else {
            c->unanswered++;
            c->on_frame(c, &f, c->ctx);
        }
        if (c->admitted) {
            c->admitted = 0;
            if (c->lim.release)
                c->lim.release(c, &f.h, c->ctx);
        }
    }
    if (off > 0 && !c->closing) {
        memmove(c->rbuf, c->rbuf + off, c->rlen - off);
        c->rlen -= off;
    }
    /* Give back memory after a large frame so idle connections stay small. */
    if (!c->closing && c->rlen == 0 && c->rcap > 4 * READ_CHUNK) {
        free(c->rbuf);
        c->rbuf = NULL;
        c->rcap = 0;
    }
    /* The clock of the frame being received starts at its first byte. */
    if (c->closing || (c->rlen == 0 && c->skip == 0)) {
        c->frame_start_ms = 0;
        c->frame_len = 0;
    } else if (ended || !c->frame_start_ms) {
        c->frame_start_ms = c->last_io_ms;
    }
    return rc;
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = s->data;
    (void)buf;
    if (nread < 0) {
        if (nread != UV_EOF)
            log_debug("read from %s: %s", c->peer, uv_strerror((int)nread));
        conn_close(c);
        return;
    }
    if (nread == 0)
        return;
    if (!buf->base) {
        log_warn("out of memory reading from %s", c->peer);
        conn_close(c);
        return;
    }
    c->rlen += (size_t)nread;
    c->last_io_ms = uv_now(s->loop);
    int rc = process_frames(c);
    if (rc != 0 && !c->closing) {
        log_warn("dropping connection from %s: %s", c->peer, img_strerror(rc));
        conn_close(c);
    }
}

static struct conn *conn_new(uv_loop_t *loop, conn_frame_cb on_frame, conn_close_cb on_close,
                             void *ctx)
{
    struct conn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->on_frame = on_frame;
    c->on_close = on_close;
    c->ctx = ctx;
    c->next_id = 1;
    c->pending_tail = &c->pending;
    c->last_io_ms = uv_now(loop);
    uv_tcp_init(loop, &c->tcp);
    uv_timer_init(loop, &c->sweep);
    c->tcp.data = c;
    c->sweep.data = c;
    c->handles_open = 2;
    uv_timer_start(&c->sweep, sweep_cb, SWEEP_MS, SWEEP_MS);
    uv_unref((uv_handle_t *)&c->sweep);
    return c;
}

void conn_addr_text(const struct sockaddr_storage *ss, char *out, size_t len)
{
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
        uv_ip4_name(in, host, sizeof(host));
        port = ntohs(in->sin_port);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
        uv_ip6_name(in6, host, sizeof(host));
        port = ntohs(in6->sin6_port);
    }
    snprintf(out, len, "%s:%d", host, port);
}

static void fill_peer(struct conn *c)
{
    struct sockaddr_storage *ss = &c->peer_ss;
    int len = sizeof(*ss);
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)ss, &len) != 0)
        ss->ss_family = AF_UNSPEC;
    conn_addr_text(ss, c->peer, sizeof(c->peer));
}

struct conn *conn_accept(uv_stream_t *server, conn_frame_cb on_frame, conn_close_cb on_close,
                         void *ctx)
{
    return conn_accept_limited(server, NULL, on_frame, on_close, ctx, NULL);
}

struct conn *conn_accept_limited(uv_stream_t *server, const struct conn_limits *lim,
                                 conn_frame_cb on_frame, conn_close_cb on_close, void *ctx,
                                 int *refused)
{
    if (refused)
        *refused = 0;
    struct conn *c = conn_new(server->loop, on_frame, on_close, ctx);
    if (!c)
        return NULL; /* out of memory: the connection stays unaccepted */
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        c->on_close = NULL;
        conn_close(c);
        return NULL;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    fill_peer(c);
    if (lim) {
        c->lim = *lim;
        if (lim->gate) {
            int rc = conn_gate_enter(lim->gate, &c->peer_ss);
            if (rc != 0) {
                if (rc > 0)
                    log_debug("refusing connection from %s: %s", c->peer,
                              rc == 1 ? "the port is full" : "too many from that address");
                if (refused)
                    *refused = 1;
                c->on_close = NULL;
                conn_close(c);
                return NULL;
            }
            c->gated = 1;
        }
    }
    uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
    return c;
}

void conn_set_timeouts(struct conn *c, const struct conn_limits *lim)
{
    c->lim.frame_ms = lim->frame_ms;
    c->lim.min_rate = lim->min_rate;
    c->lim.idle_ms = lim->idle_ms;
}

static void connect_cb(uv_connect_t *req, int status)
{
    struct conn *c = req->handle->data;
    if (c->closing)
        return;
    if (status < 0) {
        log_debug("connect to %s: %s", c->peer, uv_strerror(status));
        conn_close(c);
        return;
    }
    uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
}

int conn_parse_addr(const char *hostport, struct sockaddr_storage *ss)
{
    if (!hostport)
        return IMG_EINVAL;
    const char *colon = strrchr(hostport, ':');
    if (!colon || colon == hostport || colon[1] == '\0')
        return IMG_EINVAL;
    char host[256];
    size_t hl = (size_t)(colon - hostport);
    if (hl >= sizeof(host))
        return IMG_EINVAL;
    memcpy(host, hostport, hl);
    host[hl] = '\0';
    if (host[0] == '[' && hl >= 2 && host[hl - 1] == ']') {
        memmove(host, host + 1, hl - 2);
        host[hl - 2] = '\0';
    }
    char *end;
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    if (*end || errno || port < 0 || port > 65535)
        return IMG_EINVAL;
    if (strcmp(host, "localhost") == 0)
        strcpy(host, "127.0.0.1");
    memset(ss, 0, sizeof(*ss));
    if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ss) == 0)
        return 0;
    if (uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)ss) == 0)
        return 0;
    return IMG_EINVAL;
}

struct conn *conn_connect(uv_loop_t *loop, const char *hostport, conn_frame_cb on_frame,
                          conn_close_cb on_close, void *ctx)
{
    struct sockaddr_storage ss;
    if (conn_parse_addr(hostport, &ss) != 0)
        return NULL;
    struct conn *c = conn_new(loop, on_frame, on_close, ctx);
    if (!c)
        return NULL;
    snprintf(c->peer, sizeof(c->peer), "%s", hostport);
    uv_tcp_nodelay(&c->tcp, 1);
    int rc = uv_tcp_connect(&c->connect_req, &c->tcp, (struct sockaddr *)&ss, connect_cb);
    if (rc != 0) {
        log_debug("connect to %s: %s", hostport, uv_strerror(rc));
        conn_close(c);
    }
    return c;
}

int conn_listen(uv_loop_t *loop, uv_tcp_t *tcp, const char *hostport, uv_connection_cb cb)
{
    struct sockaddr_storage ss;
    if (conn_parse_addr(hostport, &ss) != 0)
        return -EINVAL;
    uv_tcp_init(loop, tcp);
    int rc = uv_tcp_bind(tcp, (struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)tcp, 512, cb);
    return rc;
}

static void write_cb(uv_write_t *req, int status)
{
    struct wreq *w = (struct wreq *)req;
    struct conn *c = w->c;
    c->wq_bytes -= w->total;
    c->last_io_ms = uv_now(c->tcp.loop);
    if (w->body_free)
        w->body_free(w->body);
    free(w->hdr);
    free(w);
    if (status < 0 && !c->closing) {
        log_debug("write to %s: %s", c->peer, uv_strerror(status));
        conn_close(c);
    }
}

static int send_frame(struct conn *c, unsigned type, int status, uint64_t id,
                      const ProtobufCMessage *msg, const void *body, uint32_t body_len,
                      conn_free_fn body_free)
{
    if (c->closing) {
        if (body_free)
            body_free((void *)body);
        return IMG_ECONN;
    }
    size_t head_len = msg ? protobuf_c_message_get_packed_size(msg) : 0;
    if (head_len > FRAME_MAX_HEAD || body_len > FRAME_MAX_BODY) {
        if (body_free)
            body_free((void *)body);
        return IMG_ETOOBIG;
    }
    int copy = body_len > 0 && !body_free;
    struct wreq *w = calloc(1, sizeof(*w));
    size_t hlen = FRAME_HEADER_SIZE + head_len + (copy ? body_len : 0);
    uint8_t *hdr = w ? malloc(hlen) : NULL;
    if (!hdr) {
        free(w);
        if (body_free)
            body_free((void *)body);
        return -ENOMEM;
    }
    struct frame_header h = {.type = (uint8_t)type,
                             .status = status,
                             .request_id = id,
                             .head_len = (uint32_t)head_len,
                             .body_len = body_len};
    frame_encode(&h, hdr);
    if (msg)
        protobuf_c_message_pack(msg, hdr + FRAME_HEADER_SIZE);
    if (copy)
        memcpy(hdr + FRAME_HEADER_SIZE + head_len, body, body_len);
    w->c = c;
    w->hdr = hdr;
    w->body = (void *)body;
    w->body_free = body_free;
    w->total = hlen + (copy ? 0 : body_len);
    uv_buf_t bufs[2] = {uv_buf_init((char *)hdr, (unsigned)hlen),
                        uv_buf_init((char *)body, copy ? 0 : body_len)};
    int nbufs = (!copy && body_len > 0) ? 2 : 1;
    int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, bufs, (unsigned)nbufs, write_cb);
    if (rc != 0) {
        if (body_free)
            body_free((void *)body);
        free(hdr);
        free(w);
        conn_close(c);
        return IMG_ECONN;
    }
    c->wq_bytes += w->total;
    return 0;
}

int conn_request(struct conn *c, unsigned type, const ProtobufCMessage *msg, const void *body,
                 uint32_t body_len, conn_free_fn body_free, uint32_t timeout_ms,
                 conn_reply_cb cb, void *arg)
{
    struct pending *p = calloc(1, sizeof(*p));
    if (!p) {
        if (body_free)
            body_free((void *)body);
        return -ENOMEM;
    }
    uint64_t id = c->next_id++;
    int rc = send_frame(c, type & ~FRAME_RESPONSE, 0, id, msg, body, body_len, body_free);
    if (rc != 0) {
        free(p);
        return rc;
    }
    p->id = id;
    p->cb = cb;
    p->arg = arg;
    p->deadline_ms = timeout_ms ? uv_now(c->tcp.loop) + timeout_ms : 0;
    *c->pending_tail = p;
    c->pending_tail = &p->next;
    return 0;
}

int conn_reply(struct conn *c, const struct frame_header *req, int status,
               const ProtobufCMessage *msg, const void *body, uint32_t body_len,
               conn_free_fn body_free)
{
    if (c->unanswered > 0)
        c->unanswered--;
    return send_frame(c, req->type | FRAME_RESPONSE, status, req->request_id, msg, body,
                      body_len, body_free);
}

int conn_addr_is_any(const char *hostport)
{
    struct sockaddr_storage ss;
    if (conn_parse_addr(hostport, &ss) != 0)
        return 0;
    if (ss.ss_family == AF_INET)
        return ((const struct sockaddr_in *)&ss)->sin_addr.s_addr == htonl(INADDR_ANY);
    if (ss.ss_family == AF_INET6)
        return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)&ss)->sin6_addr);
    return 0;
}
