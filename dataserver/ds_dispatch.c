/* ds_dispatch.c - the one table from message type to handler (ds_req.h).
 *
 * Every request the dataserver serves, from any connection, is routed here:
 * ds_rpc.c (native port), ds_session.c (nameserver session) and ds_peer.c
 * (connections we opened to peers) call ds_dispatch. The table says which
 * senders may send each type; a transport that carries none of them gets
 * IMG_EBADTYPE, exactly like a type the dataserver does not know. It also
 * says the minimum role of the key a connection must have authenticated
 * with (docs/security.md): reads are open, writes and deletes need a writer
 * key, VERIFY an operator key, everything between servers a member key;
 * the role is the key's current one (a revoked key is refused at once).
 * Epoch fencing is to be checked here too. Handlers unpack
 * their request with ds_req_unpack, which answers a head that does not
 * unpack with IMG_EPROTO, the same for every type.
 * May call the handler modules (ds_file, ds_repl, ds_copy, ds_block,
 * ds_compact, ds_scrub, ds_tomb, ds_ec) and the transports through struct ds_transport. */
#include "dataserver/ds_req.h"

#include "base/err.h"
#include "dataserver/ds_block.h"
#include "dataserver/ds_compact.h"
#include "dataserver/ds_copy.h"
#include "dataserver/ds_ec.h"
#include "dataserver/ds_file.h"
#include "dataserver/ds_repl.h"
#include "dataserver/ds_scrub.h"
#include "dataserver/ds_tomb.h"

#include <errno.h>
#include <stdlib.h>

struct route {
    unsigned type;
    unsigned from; /* DS_FROM_* senders allowed */
    enum auth_role need; /* minimum role of the connection's key */
    ds_handler_fn fn;
};

static const struct route routes[] = {
    /* files (docs/protocol.md) */
    {FT_WRITE, DS_FROM_CLIENT, AUTH_WRITER, ds_repl_write},
    {FT_DELETE, DS_FROM_CLIENT, AUTH_WRITER, ds_repl_delete},
    {FT_READ, DS_FROM_CLIENT | DS_FROM_PEER, AUTH_NONE, ds_file_serve_read},
    {FT_STAT, DS_FROM_CLIENT | DS_FROM_PEER, AUTH_NONE, ds_file_serve_stat},
    /* between dataservers */
    {FT_REPL_APPEND, DS_FROM_PEER, AUTH_MEMBER, ds_repl_append},
    {FT_READ_BLOCK, DS_FROM_PEER, AUTH_MEMBER, ds_copy_read_block},
    /* checks: ds-admin verify, or the nameserver's repair */
    {FT_VERIFY, DS_FROM_CLIENT | DS_FROM_NS, AUTH_OPERATOR, ds_scrub_verify},
    /* the nameserver's commands on its session */
    {FT_CREATE_BLOCK, DS_FROM_NS, AUTH_MEMBER, ds_block_create},
    {FT_SET_REPLICAS, DS_FROM_NS, AUTH_MEMBER, ds_block_set_replicas},
    {FT_SEAL_BLOCK, DS_FROM_NS, AUTH_MEMBER, ds_block_seal},
    {FT_DELETE_BLOCK, DS_FROM_NS, AUTH_MEMBER, ds_block_delete},
    {FT_STAT_BLOCK, DS_FROM_NS, AUTH_MEMBER, ds_block_stat},
    {FT_REPLICATE_BLOCK, DS_FROM_NS, AUTH_MEMBER, ds_copy_replicate},
    {FT_CANCEL_COPY, DS_FROM_NS, AUTH_MEMBER, ds_copy_cancel},
    {FT_COMPACT_BLOCK, DS_FROM_NS, AUTH_MEMBER, ds_compact_block},
    {FT_APPLY_TOMBSTONES, DS_FROM_NS, AUTH_MEMBER, ds_tomb_apply},
    /* erasure coding (ds_ec.c) */
    {FT_EC_ENCODE, DS_FROM_NS, AUTH_MEMBER, ds_ec_encode},
    {FT_EC_PUT_SHARD, DS_FROM_PEER, AUTH_MEMBER, ds_ec_put_shard},
    {FT_EC_READ_RANGE, DS_FROM_PEER, AUTH_MEMBER, ds_ec_read_range},
    {FT_EC_REBUILD, DS_FROM_NS, AUTH_MEMBER, ds_ec_rebuild},
    {FT_EC_TOMB, DS_FROM_PEER, AUTH_MEMBER, ds_ec_tomb},
};

void ds_dispatch(struct ds *ds, const struct ds_transport *t, void *link, const struct frame *f)
{
    const struct route *rt = NULL;
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
        if (routes[i].type == f->h.type) {
            rt = &routes[i];
            break;
        }
    t->hold(link);
    struct ds_req *r = malloc(sizeof(*r));
    if (!r) {
        t->send(ds, link, &f->h, -ENOMEM, NULL, NULL, 0, NULL);
        return;
    }
    *r = (struct ds_req){.ds = ds, .t = t, .link = link, .h = f->h};
    if (!rt || !(rt->from & t->carries)) {
        ds_req_fail(r, IMG_EBADTYPE);
        return;
    }
    if (rt->need != AUTH_NONE) {
        enum auth_role have = t->role(ds, link);
        if (have < rt->need) {
            ds_req_fail(r, have == AUTH_NONE ? IMG_EAUTH : IMG_EPERM);
            return;
        }
    }
    rt->fn(r, f);
}

void ds_req_answer(struct ds_req *r, int status, const ProtobufCMessage *msg, const void *body,
                   uint32_t body_len, conn_free_fn body_free)
{
    r->t->send(r->ds, r->link, &r->h, status, msg, body, body_len, body_free);
    free(r);
}

void ds_req_fail(struct ds_req *r, int status)
{
    ds_req_answer(r, status, NULL, NULL, 0, NULL);
}

void *ds_req_unpack(struct ds_req *r, const struct frame *f,
                    const ProtobufCMessageDescriptor *desc)
{
    ProtobufCMessage *m = protobuf_c_message_unpack(desc, NULL, f->h.head_len, f->head);
    if (!m)
        ds_req_fail(r, IMG_EPROTO);
    return m;
}

int ds_req_from_ns(const struct ds_req *r)
{
    return (r->t->carries & DS_FROM_NS) != 0;
}
