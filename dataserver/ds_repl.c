/* ds_repl.c - connections from a primary to its secondaries.
 *
 * One connection per peer address, opened on first use and reused for every
 * block that peer holds. REPL_APPEND frames for one block go out in offset
 * order on that single connection, so the secondary sees them in the order
 * the primary reserved them. A closed connection is forgotten; the next send
 * opens a new one. */
#include "dataserver/ds.h"

#include "base/err.h"
#include "base/log.h"
#include "proto/imgstore.pb-c.h"

#include <stdlib.h>
#include <string.h>

struct ds_peer {
    struct ds_peer *next;
    struct ds *ds;
    struct conn *c;
    char addr[DS_ADDR_MAX];
};

struct repl_req {
    ds_repl_cb cb;
    void *arg;
};

static void peer_closed(struct conn *c, void *ctx)
{
    struct ds_peer *p = ctx;
    struct ds_peer **pp = &p->ds->peers;
    while (*pp && *pp != p)
        pp = &(*pp)->next;
    if (*pp)
        *pp = p->next;
    free(p);
}

static void peer_frame(struct conn *c, const struct frame *f, void *ctx)
{
    /* Peers only answer our requests; a request from them here is refused. */
    conn_reply(c, &f->h, IMG_EBADTYPE, NULL, NULL, 0, NULL);
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
    p->next = ds->peers;
    ds->peers = p;
    return p;
}

static void repl_reply(int status, const struct frame *f, void *arg)
{
    struct repl_req *r = arg;
    if (status == 0)
        status = f->h.status;
    r->cb(status, r->arg);
    free(r);
}

int ds_repl_send(struct ds *ds, const char *addr, uint64_t block_id, uint64_t offset,
                 uint32_t set_version, const void *rec, uint32_t rec_len, ds_repl_cb cb,
                 void *arg)
{
    struct ds_peer *p = peer_get(ds, addr);
    if (!p)
        return IMG_ECONN;
    struct repl_req *r = malloc(sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->cb = cb;
    r->arg = arg;
    Imgstore__ReplAppend m = IMGSTORE__REPL_APPEND__INIT;
    m.block_id = block_id;
    m.offset = offset;
    m.set_version = set_version;
    m.primary_id = ds->store->server_id;
    int rc = conn_request(p->c, FT_REPL_APPEND, &m.base, rec, rec_len, NULL, DS_REPL_TIMEOUT_MS,
                          repl_reply, r);
    if (rc != 0) {
        free(r);
        return rc;
    }
    return 0;
}

int ds_peer_request(struct ds *ds, const char *addr, unsigned type, const ProtobufCMessage *msg,
                    const void *body, uint32_t body_len, uint32_t timeout_ms, conn_reply_cb cb,
                    void *arg)
{
    struct ds_peer *p = peer_get(ds, addr);
    if (!p)
        return IMG_ECONN;
    return conn_request(p->c, type, msg, body, body_len, NULL, timeout_ms, cb, arg);
}

void ds_repl_close_all(struct ds *ds)
{
    for (struct ds_peer *p = ds->peers; p; p = p->next)
        conn_close(p->c);
}
