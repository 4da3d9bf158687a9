/* http_server.h - the one HTTP/1.1 server core of the project, on a libuv
 * loop: listening, accepting, the connection list, parsing with Debian's
 * http-parser (libhttp-parser), header collection with limits, the header
 * and idle timeouts, pipelining with back-pressure, the in-order response
 * queue and close logic. It knows no path and no header's meaning: the
 * server on top (dataserver/ds_http.c, the CDN origin; nameserver/ns_http.c,
 * the status port) gives callbacks (struct http_server_ops) that the core
 * calls with a request object, and answers through the core
 * (http_server_finish). May call base/ and net/ only (and libuv, http-parser).
 *
 * Requests of one connection sit in a FIFO in arrival order. A request is
 * PARSING until its message is complete, WORKING while the server works on
 * it, READY once its response is built; responses leave the head of the
 * FIFO only, so pipelined responses keep request order whatever order the
 * work completes in. When a connection closes, its WORKING requests are
 * orphaned (conn = NULL) and freed when the server finishes them.
 *
 * Every input is hostile: the request target (414), the header block (431),
 * the time a request head may take (408) and the time a connection may sit
 * idle or stalled are bounded, unparsable requests get 400, and a client
 * can queue at most HTTP_SERVER_PIPELINE_MAX requests and
 * HTTP_SERVER_WQ_MAX unsent bytes before its reading pauses. The header
 * timer runs from the first byte after the previous request (CRLFs
 * included), and only progress (a whole head, body bytes, a response
 * written) counts as activity for the idle timeout. Requests follow RFC
 * 9112: a version other than 1.0 and 1.1 gets 505, a missing (HTTP/1.1)
 * or repeated Host 400, and an absolute-form target is served by its path.
 * The connections of a port are capped in all and per peer address
 * (net/limits.h); one past a cap gets 503 and is closed.
 *
 * With config.tls a port speaks HTTP/1.1 over TLS (net/http_tls.h): the
 * same requests, limits and timeouts, the handshake counting as part of
 * the first request head (a stalled handshake is closed at the header
 * timeout, without an answer); a peer whose handshake fails (a client
 * speaking plain HTTP, an old TLS version) is closed and counted.
 *
 * Threading: everything runs on the loop's thread. */
#ifndef IMG_HTTP_SERVER_H
#define IMG_HTTP_SERVER_H

#include <http_parser.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define HTTP_SERVER_MAX_URL 2048          /* request target bytes; past it 414 */
#define HTTP_SERVER_MAX_HEADER_BYTES 8192 /* header field + value bytes; past it 431 */
#define HTTP_SERVER_MAX_HEADERS 64        /* header lines; past it 431 */
#define HTTP_SERVER_PIPELINE_MAX 32       /* queued requests before reading pauses */
#define HTTP_SERVER_WQ_MAX (4u << 20)     /* unsent bytes before reading pauses */

struct http_server;
struct http_server_conn;
struct http_tls;

enum http_server_req_state {
    HTTP_REQ_PARSING,
    HTTP_REQ_WORKING,
    HTTP_REQ_READY,
    HTTP_REQ_WRITING
};

/* One request. The core allocates it (zeroed, config.req_size bytes: a
 * server's own request struct begins with this one) and frees it after its
 * response is written, or when its connection closes while it is not
 * WORKING, or at http_server_finish once orphaned. */
struct http_server_req {
    /* Set by the core; the server reads them. */
    struct http_server *srv;
    struct http_server_conn *conn; /* NULL once the connection closed (orphaned) */
    void *user;                    /* the pointer given to http_server_start */
    unsigned method;               /* enum http_method */
    int head_only;                 /* HEAD: the body is not sent */
    int keep_alive;                /* the client wants the connection kept */
    int http10;
    struct sockaddr_storage peer;  /* the client's address */
    char *path;                    /* request target's path, without query, NUL-terminated */
    int has_length;                /* a Content-Length was given: */
    uint64_t length;               /* its value */
    int responded;                 /* a response was built (maybe early, at headers) */

    /* Set by the server before http_server_finish: the response. resp_hdr
     * (malloc'd; NULL: out of memory, the connection closes) holds the
     * status line and headers and maybe a small body; resp_body
     * (resp_body_len bytes, may point into resp_mem) follows it; resp_mem
     * (malloc'd, may be NULL) is freed after the write. close_after: the
     * connection closes once this response is written. */
    char *resp_hdr;
    size_t resp_hdr_len;
    void *resp_mem;
    const uint8_t *resp_body;
    size_t resp_body_len;
    int close_after;

    /* The core's. */
    struct http_server_req *next;
    enum http_server_req_state state;
    int counted; /* holds one of the server's in-flight slots */
    char *wire;  /* TLS: the encrypted response being written (malloc'd) */
    uv_write_t wreq;
};

/* What the server on top does with requests. Each callback runs on the loop
 * thread from inside the core; each may answer its request (fill resp_*,
 * then http_server_finish) at once or later. */
struct http_server_ops {
    /* Optional. The request head is complete: method, path, length are set
     * and http_server_header() reads the headers (only during this call).
     * The server may answer early, see http_server_refuse. */
    void (*on_head)(struct http_server_req *q);
    /* Optional. Body bytes of a request not answered yet; `left` is what
     * Content-Length still announces after them (0 without one). */
    void (*on_body)(struct http_server_req *q, const char *at, size_t len, uint64_t left);
    /* The message is complete and was not answered early: the request is
     * WORKING until the server answers it. */
    void (*on_request)(struct http_server_req *q);
    /* The core refuses the request: code is 400 (unparsable, or Host missing
     * or repeated), 408 (head too slow), 414 (target too long), 431 (headers
     * too large), 503 (out of memory) or 505 (HTTP version). close_after is
     * set (and head_only cleared, but for 503;
     * method is what the parser read, if it got that far); the server
     * answers it. */
    void (*on_error)(struct http_server_req *q, int code);
    /* Optional. Frees what the server added to q (never q itself). */
    void (*req_free)(struct http_server_req *q);
};

struct http_server_config {
    int header_ms;      /* a request head must arrive within this; 0: no limit */
    int idle_ms;        /* no byte either way and nothing WORKING: close */
    int max_inflight;   /* requests holding a slot (http_server_take_slot); 0: no cap */
    int keep_headers;   /* 0: header lines are neither kept nor limited */
    size_t req_size;    /* bytes of each request (>= sizeof(struct http_server_req)) */
    unsigned max_conns;          /* connections in all; 0: LIMITS_MAX_CONNS */
    unsigned max_conns_per_addr; /* from one address; 0: LIMITS_MAX_CONNS_PER_ADDR */
    struct http_tls *tls;        /* non-NULL: HTTPS with these certificates (borrowed:
                                  * must outlive the server) */
};

/* Counters of a server since its start. */
struct http_server_stats {
    uint64_t open;             /* connections open now */
    uint64_t refused_total;    /* refused: the port was full */
    uint64_t refused_per_addr; /* refused: the address was at its cap */
    uint64_t header_timeouts;  /* 408: a request head too slow */
    uint64_t idle_closes;      /* closed idle (or stalled) */
    uint64_t tls_handshakes;   /* TLS handshakes completed */
    uint64_t tls_failed;       /* TLS handshakes failed: an error, the header timeout, or
                                * the peer closing after its first bytes */
};

void http_server_stats(const struct http_server *srv, struct http_server_stats *out);

/* Listens on `addr` (HOST:PORT) on `loop`. cfg and ops are copied; `user`
 * (borrowed) is given to every request as q->user. Returns 0 with *out, or
 * a negative errno (nothing is left open; the server frees itself). */
int http_server_start(uv_loop_t *loop, const char *addr, const struct http_server_config *cfg,
                      const struct http_server_ops *ops, void *user, struct http_server **out);

/* Closes the listener and every connection (WORKING requests are
 * orphaned). The server frees itself once its handles have closed and its
 * last request is freed; do not use `srv` after this call. */
void http_server_stop(struct http_server *srv);

/* The listening socket (to read the port bound to ":0"). */
uv_tcp_t *http_server_listener(struct http_server *srv);

/* The value of header `name` of the request being parsed (repeated ones
 * joined with ", ") in a new string (the caller frees it), or NULL when
 * absent. *oom is set when memory ran out. Only from on_head. */
char *http_server_header(struct http_server_req *q, const char *name, int *oom);

/* Takes an in-flight slot for work that touches the disk or the network:
 * returns 1, or 0 when the server is at config.max_inflight (the server
 * then answers it, e.g. 503). The slot is given back by
 * http_server_finish. */
int http_server_take_slot(struct http_server_req *q);

/* From on_head or on_body: the answer to q will come before its body is
 * read and the connection closes after it; nothing more is parsed. Used to
 * refuse uploads. The server then answers q. */
void http_server_refuse(struct http_server_req *q);

/* From on_head: sends "100 Continue" when q is first in its connection's
 * queue (earlier responses would otherwise be overtaken). */
void http_server_continue(struct http_server_req *q);

/* Marks q's response built (resp_* filled) and sends whatever is ready at
 * the head of its connection's queue. Gives back its in-flight slot. Frees
 * an orphaned request. */
void http_server_finish(struct http_server_req *q);

/* For a server's work resuming after a wait (a disk read, a nameserver or
 * replica answer, a timer): when q's connection closed meanwhile (q is
 * orphaned), finishes q, which frees it, and returns 1: the work stops
 * there. Returns 0, q untouched, while the connection is open. */
int http_server_drop_orphan(struct http_server_req *q);

/* Returns the reason phrase of a status code. */
const char *http_server_reason(int code);

#endif
