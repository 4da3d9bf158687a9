/* ds_req.h - one request to the dataserver, answered the same way whatever
 * connection it came on, and the dispatch from message type to handler
 * (ds_dispatch.c).
 *
 * A transport (the native port, ds_rpc.c; the nameserver session,
 * ds_session.c; a connection we opened to a peer, ds_peer.c) hands every
 * request frame to ds_dispatch. ds_dispatch looks the type up in its one
 * table, checks that this transport may carry a sender allowed to send that
 * type and that the connection's key has the type's minimum role
 * (docs/security.md; the single place where epoch fencing will live too),
 * wraps the request in a struct ds_req and calls the handler. A handler never
 * touches the connection: it answers with ds_req_answer, exactly once, now or
 * later (after disk or network I/O). The transport decides what an answer to
 * a connection that is gone means (dropped; an owned body is freed).
 * May call net/ (frames) only; the transports call it. */
#ifndef DS_DS_REQ_H
#define DS_DS_REQ_H

#include "dataserver/ds.h"

#include <stdint.h>

/* Who may send a message type (the dispatch table's column). */
#define DS_FROM_CLIENT 1u /* applications, ds-admin, another dataserver's HTTP origin */
#define DS_FROM_PEER 2u   /* a peer dataserver: replicated appends, block copies */
#define DS_FROM_NS 4u     /* the nameserver, on its session */

/* A connection a request can arrive on. `carries` is the set of DS_FROM_*
 * senders that may be at its other end: the native port cannot tell clients
 * from peers by their role alone. role() says what the key the connection
 * authenticated with may do now (AUTH_MEMBER for all when authentication
 * is off). hold() is called once per request
 * dispatched on `link` (the request keeps it), send() answers one and
 * releases that hold; it drops the answer (freeing an owned body) when the
 * connection is gone. */
struct ds_transport {
    const char *name;
    unsigned carries;
    enum auth_role (*role)(struct ds *ds, void *link);
    void (*hold)(void *link);
    void (*send)(struct ds *ds, void *link, const struct frame_header *req, int status,
                 const ProtobufCMessage *msg, const void *body, uint32_t body_len,
                 conn_free_fn body_free);
};

/* One request being served. Owned by the handler it was given to until it
 * passes it to ds_req_answer. */
struct ds_req {
    struct ds *ds;
    const struct ds_transport *t; /* the connection it came on */
    void *link;                   /* that connection's state (the transport's) */
    struct frame_header h;        /* its header: type, request id, lengths */
};

/* Handles request frame `f` (valid only during the call: copy what is kept)
 * and answers r exactly once with ds_req_answer, now or later. */
typedef void (*ds_handler_fn)(struct ds_req *r, const struct frame *f);

/* Routes request frame f that arrived on `link` of transport t: a type not
 * in the table, or not allowed from what t carries, is answered
 * IMG_EBADTYPE; one whose minimum role the connection's key lacks,
 * IMG_EAUTH (no key, or revoked) or IMG_EPERM (a lower role). */
void ds_dispatch(struct ds *ds, const struct ds_transport *t, void *link, const struct frame *f);

/* Answers r and frees it. Body ownership as in conn_reply (an owned body is
 * freed also when the answer is dropped). */
void ds_req_answer(struct ds_req *r, int status, const ProtobufCMessage *msg, const void *body,
                   uint32_t body_len, conn_free_fn body_free);

/* Answers r with status only (no message, no body). */
void ds_req_fail(struct ds_req *r, int status);

/* Unpacks the head of request frame f as a `desc` message (the handler's
 * &imgstore__X__descriptor). Returns it, owned by the caller (freed with
 * its imgstore__X__free_unpacked), or NULL after answering r IMG_EPROTO: a
 * head that does not unpack; r is then gone. */
void *ds_req_unpack(struct ds_req *r, const struct frame *f,
                    const ProtobufCMessageDescriptor *desc);

/* Returns non-zero when r came on the nameserver's session. */
int ds_req_from_ns(const struct ds_req *r);

#endif
