/* conn.h - framed native-protocol connections on a libuv loop.
 *
 * One struct conn wraps one TCP stream in either direction. It reads frames
 * (proto/frame.h), hands each complete one to the owner's frame callback, and
 * sends requests and responses. Either side may send requests on the same
 * connection: a frame with FRAME_RESPONSE set is matched to the pending
 * request with its request_id and given to that request's callback instead;
 * one that no pending request awaits is read and dropped, never kept.
 *
 * Threading: a conn belongs to the loop it was created on; call it only from
 * that loop's thread.
 *
 * Lifetime: the conn is freed by the module after the close callback has run.
 * conn_close() may be called from any callback, including the frame callback;
 * after it the conn delivers no more frames, every pending request callback
 * runs once with IMG_ECONN, then the close callback runs once. */
#ifndef IMG_CONN_H
#define IMG_CONN_H

#include "proto/frame.h"

#include <protobuf-c/protobuf-c.h>
#include <stdint.h>
#include <uv.h>

struct conn;

/* A received frame. head and body point into the connection's read buffer and
 * are valid only until the callback returns; copy what you keep. */
struct frame {
    struct frame_header h;
    const uint8_t *head;
    const uint8_t *body;
};

/* Called for every request frame (FRAME_RESPONSE clear) received. */
typedef void (*conn_frame_cb)(struct conn *c, const struct frame *f, void *ctx);

/* Called once, after the conn closed for any reason; the conn is freed right
 * after it returns. */
typedef void (*conn_close_cb)(struct conn *c, void *ctx);

/* Called once per request: with the response frame (status 0; the frame's own
 * h.status says whether the peer succeeded), or with f == NULL and status
 * IMG_ETIMEDOUT or IMG_ECONN. */
typedef void (*conn_reply_cb)(int status, const struct frame *f, void *arg);

/* The outcome of a request as its conn_reply_cb sees it: `status` when the
 * request failed here, else the peer's h.status (IMG_ECONN for a missing
 * frame). Returns 0 when the peer succeeded. */
int conn_reply_status(int status, const struct frame *f);

/* For a conn_reply_cb whose reply carries a `desc` message: when the request
 * succeeded (conn_reply_status is 0), unpacks the head and returns it, owned
 * by the caller (freed with its imgstore__X__free_unpacked), with *rc 0.
 * Otherwise returns NULL with *rc the failure, IMG_EPROTO for a head that
 * does not unpack. */
void *conn_reply_unpack(int status, const struct frame *f, const ProtobufCMessageDescriptor *desc,
                        int *rc);

/* Frees a body handed to conn_send_* with ownership. */
typedef void (*conn_free_fn)(void *body);

/* Accepts a pending connection on `server`. Returns the conn or NULL (the
 * pending connection is then dropped). `ctx` is passed to both callbacks. */
struct conn *conn_accept(uv_stream_t *server, conn_frame_cb on_frame, conn_close_cb on_close,
                         void *ctx);

/* ---- limits (docs/protocol.md, "Limits") ---------------------------------- */

#define CONN_FRAME_MS 30000          /* a frame's fixed allowance */
#define CONN_MIN_RATE (256u << 10)   /* bytes a second a frame's length is allowed at */
#define CONN_IDLE_MS 300000          /* an accepted connection with nothing owed */
#define CONN_PEER_IDLE_MS 60000      /* a pooled outgoing connection closes itself sooner */

/* Asked when the header of a request frame has arrived, before its head
 * and body are read: returns 0 to receive the frame (conn_release_cb then
 * runs exactly once for it: after its frame callback, or when the conn
 * closes first), or an IMG_E* status: the conn answers the request with
 * that status at once (no head, no body) and reads the frame's remaining
 * bytes without keeping them. */
typedef int (*conn_admit_cb)(struct conn *c, const struct frame_header *h, void *ctx);
typedef void (*conn_release_cb)(struct conn *c, const struct frame_header *h, void *ctx);

struct conn_gate; /* net/limits.h */

/* What a connection may hold and for how long. Zero fields: no limit. */
struct conn_limits {
    /* A frame (request or response) must be whole within frame_ms plus its
     * announced length at min_rate bytes a second, counted from its first
     * byte; else the conn closes. */
    uint32_t frame_ms;
    uint32_t min_rate;
    /* The conn closes after idle_ms without a byte in either direction
     * while no frame is half received, no request of either side awaits
     * its answer and nothing waits to be written; or, with bytes waiting
     * to be written, after idle_ms plus those bytes at min_rate without
     * any written (a peer that stopped reading). */
    uint32_t idle_ms;
    /* conn_accept_limited only: counts the connection per address and
     * refuses it past the gate's caps (borrowed; must outlive the conn). */
    struct conn_gate *gate;
    conn_admit_cb admit;     /* optional */
    conn_release_cb release; /* optional; with admit */
};

/* conn_accept with limits (copied). A connection the gate refuses is
 * closed at once: NULL is returned and *refused (if not NULL) set to 1. */
struct conn *conn_accept_limited(uv_stream_t *server, const struct conn_limits *lim,
                                 conn_frame_cb on_frame, conn_close_cb on_close, void *ctx,
                                 int *refused);

/* Sets the timeouts of a conn (frame_ms, min_rate, idle_ms of lim; its
 * gate and admission are ignored), e.g. an idle timeout on a pooled
 * outgoing connection. */
void conn_set_timeouts(struct conn *c, const struct conn_limits *lim);

/* Closes counted by reason since start (all conns of the process). */
struct conn_stats {
    uint64_t frame_timeouts; /* a frame took too long */
    uint64_t idle_closes;    /* idle past idle_ms */
    uint64_t refused;        /* admission refused a frame */
};
void conn_stats_get(struct conn_stats *out);

/* Starts connecting to `hostport` ("127.0.0.1:7000"). Frames may be sent at
 * once; they are queued until the connection is up. If it fails, pending
 * requests fail with IMG_ECONN and on_close runs. Returns NULL when the
 * address is malformed. */
struct conn *conn_connect(uv_loop_t *loop, const char *hostport, conn_frame_cb on_frame,
                          conn_close_cb on_close, void *ctx);

/* Sends a request. `msg` may be NULL (empty head). If body_free is NULL the
 * body is copied; otherwise the conn owns `body` and frees it with body_free
 * once written (also on failure). `cb` runs exactly once unless this returns
 * an error, in which case it never runs (and an owned body is already
 * freed). timeout_ms 0 means no timeout. */
int conn_request(struct conn *c, unsigned type, const ProtobufCMessage *msg, const void *body,
                 uint32_t body_len, conn_free_fn body_free, uint32_t timeout_ms,
                 conn_reply_cb cb, void *arg);

/* Sends the response to the request `req` (its type and request id are
 * reused). Same body ownership rules as conn_request. Returns 0 or an error
 * when the conn is closing (an owned body is freed either way). */
int conn_reply(struct conn *c, const struct frame_header *req, int status,
               const ProtobufCMessage *msg, const void *body, uint32_t body_len,
               conn_free_fn body_free);

/* Starts closing. Safe to call more than once. */
void conn_close(struct conn *c);

/* Returns non-zero once conn_close ran or the stream failed. */
int conn_is_closing(const struct conn *c);

/* Returns the peer address as "HOST:PORT" (empty before connect). */
const char *conn_peer(const struct conn *c);

/* Bytes queued for writing and not yet written (for backpressure). */
size_t conn_write_queue_bytes(const struct conn *c);

/* Owner data slot. */
void conn_set_data(struct conn *c, void *data);
void *conn_get_data(const struct conn *c);

#define CONN_ADDR_TEXT_MAX 64 /* "HOST:PORT" with its NUL, IPv6 included */

/* Writes the IPv4 or IPv6 address `ss` as "HOST:PORT" into out (len bytes,
 * CONN_ADDR_TEXT_MAX is enough); "?:0" for any other family. */
void conn_addr_text(const struct sockaddr_storage *ss, char *out, size_t len);

/* Splits "HOST:PORT" into a sockaddr. Returns 0 or IMG_EINVAL. */
int conn_parse_addr(const char *hostport, struct sockaddr_storage *ss);

/* Whether `hostport` parses (conn_parse_addr) to the wildcard address
 * 0.0.0.0 or ::, which can be bound but not reached: a server listening there
 * must advertise another (--advertise). 0 otherwise, also when it does not
 * parse. */
int conn_addr_is_any(const char *hostport);

/* Binds and listens on `hostport`. Returns 0 or a negative errno. */
int conn_listen(uv_loop_t *loop, uv_tcp_t *tcp, const char *hostport, uv_connection_cb cb);

#endif
