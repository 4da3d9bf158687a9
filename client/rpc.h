/* rpc.h - blocking request/response calls on the native protocol, with a
 * pool of idle connections per server address (client library internals).
 *
 * The client library speaks docs/protocol.md over plain blocking-style
 * sockets (non-blocking fds driven by poll(), so every wait honours a
 * deadline). One request is in flight per connection: rpc_call sends a
 * frame, waits for the matching response and hands the connection back to
 * the pool. A connection that saw any error is closed, never reused.
 *
 * Threading: an rpc_pool is shared by every thread of a handle; its idle
 * list is protected by its own mutex, and a connection taken from the pool
 * belongs to exactly one call until it is returned.
 *
 * Authentication (docs/security.md): when the pool has a key, a connection
 * authenticates (AUTH_HELLO, AUTH, the server's proof checked) before the
 * first request on it that is not a read (READ, STAT, LOOKUP and the
 * read-only views never pay); the connection stays authenticated in the
 * pool. A server that refuses the key answers the request with its error
 * (IMG_EAUTH, IMG_EPERM); a server that cannot prove the key fails the call
 * with IMG_EAUTH. A connection whose request was refused with IMG_EAUTH
 * after a refused handshake is closed, not pooled, so a key added to the
 * servers' keys file later is accepted without a new handle.
 *
 * Every response is hostile input: the header is validated (frame_decode),
 * the type must be the request's type with FRAME_RESPONSE set, the request
 * id must match, and the body may not exceed the caller's limit. */
#ifndef IMGSTORE_RPC_H
#define IMGSTORE_RPC_H

#include "proto/addr.h"

#include <protobuf-c/protobuf-c.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#define RPC_ADDR_MAX ADDR_MAX      /* "HOST:PORT" with its NUL (proto/addr.h) */
#define RPC_MAX_IDLE_PER_ADDR 8    /* idle connections kept per server */
#define RPC_MAX_IDLE 128           /* idle connections kept in all */

struct rpc_conn;
struct auth_key;

struct rpc_pool {
    pthread_mutex_t mu;
    struct rpc_conn *idle; /* singly linked, most recently used first */
    unsigned nidle;
    uint64_t next_id; /* request ids; advanced atomically */
    struct auth_key *key; /* owned (rpc_pool_set_key); NULL: no key */
};

/* A received response. head and body are malloc'd and owned by the struct;
 * release them with rpc_resp_free. */
struct rpc_resp {
    int status; /* the frame's status: 0 or a negative error code */
    uint8_t *head;
    uint32_t head_len;
    uint8_t *body;
    uint32_t body_len;
};

/* Initialises an empty pool. Returns 0 or a negative errno. */
int rpc_pool_init(struct rpc_pool *p);

/* Closes every idle connection and destroys the mutex. No call may be
 * running on the pool. */
void rpc_pool_destroy(struct rpc_pool *p);

/* Sets the key requests authenticate with (copied; NULL: none). Call before
 * any rpc_call runs on the pool. Returns 0 or -ENOMEM. */
int rpc_pool_set_key(struct rpc_pool *p, const struct auth_key *key);

/* Returns the current CLOCK_MONOTONIC time in milliseconds. */
int64_t rpc_now_ms(void);

/* Sends one request of `type` to `addr` and waits for its response.
 *
 * `req` is packed as the head (NULL for an empty head); `body` (borrowed,
 * may be NULL when body_len is 0) is sent after it. The wait for the
 * connection and the response ends at min(now + io_timeout_ms, deadline_ms)
 * (monotonic, see rpc_now_ms). A response body longer than max_body is
 * refused as IMG_ETOOBIG.
 *
 * Returns 0 when a well-formed response arrived: *out then holds it (its
 * status may still be an error; the caller frees it with rpc_resp_free).
 * Otherwise returns IMG_ECONN (refused, reset, closed), IMG_ETIMEDOUT,
 * IMG_EPROTO / IMG_ETOOBIG (bad response), IMG_EINVAL (an address not of
 * the form of proto/addr.h) or
 * -ENOMEM, and *out is left empty. A reused idle connection found closed by
 * the peer before any reply byte is retried once on a fresh connection. */
int rpc_call(struct rpc_pool *p, const char *addr, unsigned type, const ProtobufCMessage *req,
             const void *body, uint32_t body_len, uint32_t max_body, int io_timeout_ms,
             int64_t deadline_ms, struct rpc_resp *out);

/* Frees the buffers of a response and empties it. NULL-safe, idempotent. */
void rpc_resp_free(struct rpc_resp *r);

/* Unpacks the head of a successful response with `desc`. Returns the
 * message (owned by the caller, freed with protobuf_c_message_free_unpacked)
 * or NULL when it does not parse. */
ProtobufCMessage *rpc_unpack(const struct rpc_resp *r, const ProtobufCMessageDescriptor *desc);

#endif
