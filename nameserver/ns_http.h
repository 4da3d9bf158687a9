/* ns_http.h - the nameserver's HTTP port (--http HOST:PORT): operators and
 * Prometheus, never clients.
 *
 *   GET /metrics      Prometheus text 0.0.4 (docs/operations.md)
 *   GET /healthz      200 "ok" while the process serves
 *   GET /status.json  the cluster at a glance, as one JSON object
 *   GET /             the status page: self-contained HTML that shows
 *                     /status.json and fetches it again every 2 s
 *
 * Read-only: nothing here changes the nameserver. HEAD works on every path;
 * other methods get 405. Requests are parsed by Debian's http-parser.
 *
 * Lifetime: ns_http_start() listens; ns_http_stop() (main.c calls it on
 * SIGINT/SIGTERM) closes the port and every HTTP connection, so the loop
 * runs dry with the rest of the nameserver. The state is freed once the last
 * handle has closed. */
#ifndef IMG_NS_HTTP_H
#define IMG_NS_HTTP_H

#include "nameserver/ns.h"

#include <stddef.h>
#include <uv.h>

struct ns_http;

/* Starts serving `addr` on `loop` for `ns` (borrowed; must outlive the
 * loop run). Returns 0 with *out set, or a negative errno (logged; nothing
 * is left open). */
int ns_http_start(struct ns *ns, uv_loop_t *loop, const char *addr, struct ns_http **out);

/* Closes the port and every connection. Safe to call more than once. */
void ns_http_stop(struct ns_http *h);

/* Renders the nameserver's metrics / status JSON into a malloc'd,
 * NUL-terminated buffer (*out, *len; the caller frees it). now_ms is loop
 * time. Return 0 or -ENOMEM. Usable without a loop (unit tests). */
int ns_http_metrics(struct ns *ns, uint64_t now_ms, char **out, size_t *len);
int ns_http_status_json(struct ns *ns, uint64_t now_ms, char **out, size_t *len);

/* The status page (ns_page.c): HTML up to the initial JSON, and after it. */
extern const char ns_page_head[];
extern const char ns_page_tail[];

#endif
