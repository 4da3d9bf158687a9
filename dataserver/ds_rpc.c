/* ds_rpc.c - the dataserver's native port: accepts connections and hands
 * every request frame to ds_dispatch (ds_req.h), which routes WRITE, READ,
 * STAT, DELETE, REPL_APPEND, READ_BLOCK and VERIFY to their handlers.
 *
 * Limits (docs/protocol.md, "Limits"): connections are counted per address
 * (--max-conns, --max-conns-per-addr), frames and idle connections timed
 * (--frame-timeout-ms, --idle-timeout-ms), and every frame over
 * DS_RECV_SMALL reserves its length in the receive budget
 * (--max-receive-mb) while it is received: past the budget it is answered
 * IMG_EBUSY and its bytes dropped, but for REPL_APPEND, always let in.
 *
 * This file is the native transport: it counts each request in the metrics
 * when it arrives and when it is answered, and drops the answer to a
 * connection closed meanwhile. Clients and peer dataservers both connect
 * here; they are told apart by the role of the key they authenticated with
 * (AUTH_HELLO / AUTH, served here by net/auth.c, kept per connection; the
 * role is checked in ds_dispatch).
 * May call net/ (conn_*, auth), ds_dispatch.c and ds_metrics.c. */
#include "dataserver/ds.h"

#include "base/err.h"
#include "base/log.h"
#include "dataserver/ds_metrics.h"
#include "dataserver/ds_req.h"

#include <stdlib.h>

/* Per-connection state. Requests in flight hold a reference, so a reply can
 * tell whether its connection is still open (c == NULL once closed). */
struct rpc_sess {
    struct ds *ds;
    struct conn *c;
    int refs;
    struct auth_sess auth; /* the handshake's state and key name */
};

static void sess_unref(struct rpc_sess *s)
{
    if (--s->refs == 0)
        free(s);
}

static void rpc_hold(void *link)
{
    ((struct rpc_sess *)link)->refs++;
}

static void rpc_send(struct ds *ds, void *link, const struct frame_header *req, int status,
                     const ProtobufCMessage *msg, const void *body, uint32_t body_len,
                     conn_free_fn body_free)
{
    struct rpc_sess *s = link;
    ds_metrics_end(ds, s, req, status, body_len);
    if (!s->c || conn_is_closing(s->c)) {
        if (body_free)
            body_free((void *)body);
    } else {
        conn_reply(s->c, req, status, msg, body, body_len, body_free);
    }
    sess_unref(s);
}

static enum auth_role rpc_role(struct ds *ds, void *link)
{
    return auth_sess_role(&((struct rpc_sess *)link)->auth, ds->keys);
}

static const struct ds_transport native = {
    .name = "native",
    .carries = DS_FROM_CLIENT | DS_FROM_PEER,
    .role = rpc_role,
    .hold = rpc_hold,
    .send = rpc_send,
};

static void on_frame(struct conn *c, const struct frame *f, void *ctx)
{
    struct rpc_sess *s = ctx;
    if (s->ds->stopping)
        return;
    if (auth_is_handshake(f->h.type)) {
        auth_serve(&s->auth, s->ds->keys, s->ds->cluster_id, c, f);
        return;
    }
    ds_metrics_begin(s->ds, s, &f->h);
    ds_dispatch(s->ds, &native, s, f);
}

static void on_close(struct conn *c, void *ctx)
{
    struct rpc_sess *s = ctx;
    s->c = NULL;
    sess_unref(s);
}

int ds_recv_reserve(struct ds *ds, uint64_t n, int gated)
{
    uint64_t budget = ds->recv_budget ? ds->recv_budget : DS_RECV_BUDGET;
    if (gated && ds->recv_used > 0 && ds->recv_used + n > budget) {
        ds->recv_busy++;
        return IMG_EBUSY;
    }
    ds->recv_used += n;
    return 0;
}

void ds_recv_release(struct ds *ds, uint64_t n)
{
    ds->recv_used = ds->recv_used > n ? ds->recv_used - n : 0;
}

static uint64_t frame_bytes(const struct frame_header *h)
{
    return (uint64_t)h->head_len + h->body_len;
}

static int admit(struct conn *c, const struct frame_header *h, void *ctx)
{
    struct rpc_sess *s = ctx;
    uint64_t n = frame_bytes(h);
    if (n <= DS_RECV_SMALL)
        return 0;
    return ds_recv_reserve(s->ds, n, h->type != FT_REPL_APPEND);
}

static void release(struct conn *c, const struct frame_header *h, void *ctx)
{
    struct rpc_sess *s = ctx;
    uint64_t n = frame_bytes(h);
    if (n > DS_RECV_SMALL)
        ds_recv_release(s->ds, n);
}

static void on_connection(uv_stream_t *server, int status)
{
    struct ds *ds = server->data;
    if (status < 0) {
        log_warn("accept: %s", uv_strerror(status));
        return;
    }
    struct rpc_sess *s = calloc(1, sizeof(*s));
    if (!s)
        return;
    s->ds = ds;
    s->refs = 1;
    struct conn_limits lim = {
        .frame_ms = ds->frame_ms ? ds->frame_ms : CONN_FRAME_MS,
        .min_rate = CONN_MIN_RATE,
        .idle_ms = ds->idle_ms ? ds->idle_ms : CONN_IDLE_MS,
        .gate = &ds->native_gate,
        .admit = admit,
        .release = release,
    };
    s->c = conn_accept_limited(server, &lim, on_frame, on_close, s, NULL);
    if (!s->c)
        free(s);
}

int ds_rpc_start(struct ds *ds)
{
    ds->native_gate.max_total = ds->max_conns ? ds->max_conns : LIMITS_MAX_CONNS;
    ds->native_gate.max_per_addr =
        ds->max_conns_per_addr ? ds->max_conns_per_addr : LIMITS_MAX_CONNS_PER_ADDR;
    int rc = conn_listen(ds->loop, &ds->listen_tcp,
                         ds->listen_bind[0] ? ds->listen_bind : ds->listen_addr, on_connection);
    ds->listen_tcp.data = ds;
    return rc;
}
