/* ds_metrics.h - the dataserver's Prometheus metrics (GET /metrics on its
 * HTTP port).
 *
 * ds_rpc.c reports each native request twice: when it arrives
 * (ds_metrics_begin) and when it is answered (ds_metrics_end); that gives
 * request counts by operation and status, latency histograms, bytes in and
 * out, requests and replicated appends in flight, and checksum failures.
 * The HTTP origin reports each answer once (ds_metrics_http): requests by
 * method and status code, latency by method, response bytes, file answers
 * served from the local copy or fetched from a replica, and 304s.
 * Everything else (disks, blocks by state, memory) is read from the store
 * when a scrape renders the text. Names and labels: docs/operations.md.
 *
 * Threading: loop thread only. The state hangs off ds->metrics, allocated on
 * first use; a failed allocation only loses figures, never a request. */
#ifndef DS_METRICS_H
#define DS_METRICS_H

#include "dataserver/ds.h"

#include <stddef.h>
#include <stdint.h>

/* Records the arrival of request `req` on connection `sess` (any pointer that
 * identifies the connection while the request is in flight). */
void ds_metrics_begin(struct ds *ds, const void *sess, const struct frame_header *req);

/* Records the answer to `req` on `sess`: status 0 or an error code, and the
 * bytes of the response body. A request never begun still counts (without a
 * latency). */
void ds_metrics_end(struct ds *ds, const void *sess, const struct frame_header *req, int status,
                    uint32_t body_out);

/* Where an HTTP answer's file came from (ds_metrics_http). */
enum ds_http_source {
    DS_HTTP_SRC_NONE,    /* not a file answer (an error, an upload, /metrics...) */
    DS_HTTP_SRC_LOCAL,   /* read from this server's copy */
    DS_HTTP_SRC_REPLICA, /* fetched from another replica (the proxy path) */
};

/* Records one HTTP answer of the origin: the request's method (enum
 * http_method), the status code it was answered with, the seconds from
 * the end of its head to its answer being built, the response bytes handed
 * to the connection (status line, headers and body; 0 when it was never
 * sent) and where its file came from. Codes outside 100..599 count as 0. */
void ds_metrics_http(struct ds *ds, unsigned method, int code, double seconds, uint64_t bytes,
                     enum ds_http_source source);

/* Renders every metric as Prometheus text (0.0.4). On success *out is a
 * malloc'd NUL-terminated buffer of *len bytes owned by the caller (free()).
 * Returns 0 or -ENOMEM. */
int ds_metrics_render(struct ds *ds, char **out, size_t *len);

/* Starts the loop's lag probe: a timer every DS_LAG_PROBE_MS whose
 * lateness (uv_hrtime) is the time the loop spent in one piece of work, the
 * longest kept in ds->lag_max_ns (imgstore_ds_loop_stall_max_seconds).
 * ds_metrics_lag_stop closes it. */
#define DS_LAG_PROBE_MS 5
void ds_metrics_lag_start(struct ds *ds);
void ds_metrics_lag_stop(struct ds *ds);

/* Frees ds->metrics (in-flight records included). NULL-safe on either. */
void ds_metrics_free(struct ds *ds);

#endif
