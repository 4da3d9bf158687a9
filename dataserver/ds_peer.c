/* ds_peer.c - the dataserver as a client of its peer dataservers.
 *
 * One connection per peer address, opened on first use and reused for every
 * request to that peer (replicated appends, READ_BLOCK of copies, READ/STAT of
 * the HTTP proxy). Requests to one peer go out in order on that single
 * connection, so a secondary sees the REPL_APPENDs of a block in the order the
 * primary reserved them. A closed connection is forgotten; the next request
 * opens a new one. A peer only answers our requests: a request it sends on
 * this connection goes through ds_dispatch, which refuses every type there.
 * A connection idle for CONN_PEER_IDLE_MS closes itself (before the peer's
 * longer idle timeout could cut it under a request). Each connection
 * authenticates with our member key first (net/auth_link.h: requests wait
 * until the peer proved the key too).
 * May call net/ (conn_*, auth_link), ds_auth.c and ds_dispatch.c. */
#include "dataserver/ds.h"

#include "base/err.h"
#include "dataserver/ds_req.h"
#include "net/auth_link.h"

#include <stdlib.h>
#include <string.h>

struct ds_peer {
    struct ds_peer *next;
    struct ds *ds;
    struct conn *c;
    struct auth_link *link; /* the handshake; requests go through it */
    char addr[DS_ADDR_MAX];
};

static void peer_closed(struct conn *c, void *ctx)
{
    struct ds_peer *p = ctx;
    struct ds_peer **pp = &p->ds->peers;
    while (*pp && *pp != p)
        pp = &(*pp)->next;
    if (*pp)
        *pp = p->next;
    auth_link_free(p->link);
    free(p);
}

/* A connection we opened: the peer at its other end only answers our
 * requests, so it carries no sender the dispatch table lets in, and every
 * request arriving on it is refused (answered at once, while c is open). */
static void peer_hold(void *link)
{
    (void)link;
}

static void peer_send(struct ds *ds, void *link, const struct frame_header *req, int status,
                      const ProtobufCMessage *msg, const void *body, uint32_t body_len,
                      conn_free_fn body_free)
{
    (void)ds;
    conn_reply(link, req, status, msg, body, body_len, body_free);
}

static enum auth_role peer_role(struct ds *ds, void *link)
{
    return AUTH_NONE;
}

static const struct ds_transport peer_link = {
    .name = "peer",
    .carries = 0,
    .role = peer_role,
    .hold = peer_hold,
    .send = peer_send,
};

static void peer_frame(struct conn *c, const struct frame *f, void *ctx)
{
    struct ds_peer *p = ctx;
    ds_dispatch(p->ds, &peer_link, c, f);
}

static struct ds_peer *peer_get(struct ds *ds, const char *addr)
{
    for (struct ds_peer *p = ds->peers; p; p = p->next)
        if (strcmp(p->addr, addr) == 0 && !conn_is_closing(p->c))
            return p;
    struct ds_peer *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->ds = ds;
    snprintf(p->addr, sizeof(p->addr), "%s", addr);
    p->c = conn_connect(ds->loop, addr, peer_frame, peer_closed, p);
    if (!p->c) {
        free(p);
        return NULL;
    }
    /* Closed idle well before the peer's own idle timeout (CONN_IDLE_MS)
     * would close it under a request being sent. */
    struct conn_limits lim = {.idle_ms = CONN_PEER_IDLE_MS};
    conn_set_timeouts(p->c, &lim);
    p->next = ds->peers;
    ds->peers = p;
    p->link = ds_auth_link(ds, p->c, NULL, NULL);
    if (!p->link) {
        conn_close(p->c); /* peer_closed frees p */
        return NULL;
    }
    return p;
}

int ds_peer_request(struct ds *ds, const char *addr, unsigned type, const ProtobufCMessage *msg,
                    const void *body, uint32_t body_len, uint32_t timeout_ms, conn_reply_cb cb,
                    void *arg)
{
    struct ds_peer *p = peer_get(ds, addr);
    if (!p)
        return IMG_ECONN;
    return auth_link_request(p->link, type, msg, body, body_len, NULL, timeout_ms, cb, arg);
}

void ds_peer_close_all(struct ds *ds)
{
    for (struct ds_peer *p = ds->peers; p; p = p->next)
        conn_close(p->c);
}
