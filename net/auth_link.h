/* auth_link.h - the client side of the handshake on a struct conn we opened
 * (a server's sessions to other servers: dataserver -> nameserver,
 * dataserver -> dataserver), with the requests sent meanwhile held back.
 *
 * auth_link_start sends AUTH_HELLO, then AUTH with the proof; once the
 * server's proof checks, the held requests go out in order. Requests sent
 * through auth_link_request before that are queued (head packed and
 * re-read, body copied or kept). A failed handshake fails every held
 * request with its error (IMG_EAUTH, IMG_ECLUSTER, ...), logs it and closes
 * the conn. Without a key (authentication off) requests pass straight
 * through.
 *
 * Lifetime: owned by the conn's owner, freed with auth_link_free from the
 * conn's close callback (which runs after every pending request callback,
 * so the handshake's own callbacks never see a freed link). */
#ifndef IMG_NET_AUTH_LINK_H
#define IMG_NET_AUTH_LINK_H

#include "net/auth.h"
#include "net/conn.h"

#define AUTH_LINK_TIMEOUT_MS 5000 /* each handshake request */

struct auth_link;

/* Called once when the handshake ends: status 0 (or authentication off) or
 * its error. May be NULL. */
typedef void (*auth_link_done_cb)(int status, void *arg);

/* Starts the handshake on c with key (copied; NULL: authentication off, the
 * link passes requests through) and the claims (copied). Returns the link
 * or NULL (out of memory: the caller closes c). */
struct auth_link *auth_link_start(struct conn *c, const struct auth_key *key,
                                  const struct auth_claims *claims, auth_link_done_cb done,
                                  void *arg);

/* conn_request, held until the handshake succeeded. Same contract. */
int auth_link_request(struct auth_link *l, unsigned type, const ProtobufCMessage *msg,
                      const void *body, uint32_t body_len, conn_free_fn body_free,
                      uint32_t timeout_ms, conn_reply_cb cb, void *arg);

/* 1 once the server proved the key (or authentication is off). */
int auth_link_ready(const struct auth_link *l);

/* Fails what is still held with IMG_ECONN and frees the link. NULL-safe. */
void auth_link_free(struct auth_link *l);

#endif
