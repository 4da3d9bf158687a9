/* http_tls.h - TLS for the HTTP server core (net/http_server.c), with
 * Debian's OpenSSL (libssl): a listener's certificate and key (struct
 * http_tls: loaded at start, watched and reloaded when their files change)
 * and one connection's TLS state (struct http_tls_conn: an SSL object on
 * two memory BIOs, so the bytes on the wire stay libuv's business). The
 * core feeds the ciphertext it reads in (http_tls_conn_feed), drives the
 * handshake, reads plaintext out, encrypts its responses and writes what
 * http_tls_conn_take_out gives it.
 *
 * Protocol: TLS 1.2 and 1.3 only, OpenSSL's default ciphers in the
 * server's order of preference, ALPN "http/1.1" (a client offering ALPN
 * without it is refused), no renegotiation. Nothing here blocks or touches
 * a socket.
 *
 * The key file must be a regular file that neither group nor others can
 * read; the certificate file holds the server certificate first, then any
 * intermediates (PEM). Every error names its file.
 *
 * Threading: one loop thread. Calls base/ only (and OpenSSL, libuv). */
#ifndef IMG_NET_HTTP_TLS_H
#define IMG_NET_HTTP_TLS_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define HTTP_TLS_WATCH_MS 1000 /* how often the files are looked at */

struct http_tls;
struct http_tls_conn;

/* Checks that `key` is a regular file not readable by group or others.
 * Returns 0, or -1 with one line (naming the file) in err. */
int http_tls_check_key_file(const char *key, char *err, size_t errlen);

/* Loads the certificate chain `cert` and the private key `key` (PEM) and
 * checks that they match. Returns 0 with *out (free with http_tls_free),
 * or -1 with one line naming the file at fault in err. The paths are
 * copied. */
int http_tls_new(const char *cert, const char *key, struct http_tls **out, char *err,
                 size_t errlen);

/* Starts looking at both files every HTTP_TLS_WATCH_MS on `loop`: once a
 * change has stayed for one look (a file being written is not loaded half
 * way), both are loaded again; a failure logs an ERROR and keeps the ones
 * in force. Connections open at a reload keep what they started with.
 * Returns 0 or a negative errno. */
int http_tls_watch(struct http_tls *t, uv_loop_t *loop);

/* Loads both files again now. Returns 0, or -1 (an ERROR is logged; the
 * ones in force stay). */
int http_tls_reload(struct http_tls *t);

/* Times both files were loaded again, and reloads that failed. */
void http_tls_reloads(const struct http_tls *t, uint64_t *done, uint64_t *failed);

/* Stops the watch and frees t (once its timer closed, when it was
 * watching). Connections still open keep their own reference to what they
 * use. NULL-safe. */
void http_tls_free(struct http_tls *t);

/* ---- one connection ------------------------------------------------------ */

/* A new connection's TLS state with the certificate in force. Returns NULL
 * when out of memory. */
struct http_tls_conn *http_tls_conn_new(struct http_tls *t);
void http_tls_conn_free(struct http_tls_conn *c); /* NULL-safe */

/* Hands len ciphertext bytes read from the peer over (copied). Returns 0
 * or -ENOMEM. */
int http_tls_conn_feed(struct http_tls_conn *c, const void *buf, size_t len);

/* Drives the handshake with what was fed. Returns 1 once it is done (and
 * from then on), 0 when it wants more bytes, or -EPROTO when it failed (a
 * client speaking plain HTTP, an old TLS version, no common cipher or
 * ALPN). Bytes to send may be waiting afterwards, an alert too. */
int http_tls_conn_handshake(struct http_tls_conn *c);

/* Decrypts up to cap bytes of application data into buf. Returns the
 * count, 0 when more ciphertext is needed, -EPIPE when the peer closed
 * the TLS session (close_notify), or -EPROTO on a protocol error. */
long http_tls_conn_read(struct http_tls_conn *c, void *buf, size_t cap);

/* Encrypts len bytes (all of them: the output buffer grows). Returns 0, or
 * -ENOMEM / -EPROTO. */
int http_tls_conn_write(struct http_tls_conn *c, const void *buf, size_t len);

/* Queues a close_notify alert (the connection will close after it). */
void http_tls_conn_shutdown(struct http_tls_conn *c);

/* Bytes waiting to be sent to the peer. */
size_t http_tls_conn_pending(const struct http_tls_conn *c);

/* Moves up to len waiting bytes into buf; returns how many. */
size_t http_tls_conn_take_out(struct http_tls_conn *c, void *buf, size_t len);

#endif
