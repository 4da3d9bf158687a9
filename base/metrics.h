/* metrics.h - a tiny Prometheus text-format (version 0.0.4) writer shared by
 * the nameserver and the dataserver.
 *
 * A process keeps its own counters and histograms (plain integers updated on
 * the loop thread) and renders them into a growable text buffer when
 * GET /metrics is asked. Names follow the Prometheus conventions:
 * imgstore_<what>_total for counters, _seconds for durations, _bytes for
 * sizes. Every family is introduced once with metrics_family() (its # HELP
 * and # TYPE lines), then one metrics_value() per labelled series.
 *
 * Errors: the buffer functions return 0 or -ENOMEM; after a failure the
 * buffer stays valid (freed by metrics_buf_free) but its text is incomplete,
 * and further writes keep failing, so a caller may check only the last one
 * (metrics_buf_ok). */
#ifndef IMG_METRICS_H
#define IMG_METRICS_H

#include <stddef.h>
#include <stdint.h>

#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* Upper bounds (seconds) of the latency histogram buckets; +Inf is implied. */
#define METRICS_LAT_BUCKETS 14
extern const double metrics_lat_bounds[METRICS_LAT_BUCKETS];

/* A fixed-bucket latency histogram. Zero-initialise it. */
struct metrics_hist {
    uint64_t buckets[METRICS_LAT_BUCKETS + 1]; /* non-cumulative; last is +Inf */
    uint64_t count;
    double sum; /* seconds */
};

/* Adds one observation of `seconds` (negative values count as 0). */
void metrics_hist_observe(struct metrics_hist *h, double seconds);

/* A growable text buffer. Zero-initialise it; free with metrics_buf_free. */
struct metrics_buf {
    char *data; /* NUL-terminated when len > 0 (owned) */
    size_t len, cap;
    int failed; /* an allocation failed: the text is incomplete */
};

/* Appends formatted text. Returns 0 or -ENOMEM. */
int metrics_printf(struct metrics_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Writes the "# HELP name help" and "# TYPE name type" lines of one family.
 * type is "counter", "gauge" or "histogram". */
int metrics_family(struct metrics_buf *b, const char *name, const char *type, const char *help);

/* Writes one sample line: name{labels} value. `labels` is the text between
 * the braces ('k="v",k2="v2"') or NULL/"" for none; label values must
 * already be escaped (see metrics_escape). Integral values print without
 * a decimal point. */
int metrics_value(struct metrics_buf *b, const char *name, const char *labels, double value);

/* Writes the _bucket, _sum and _count lines of a histogram family `name`
 * (whose # HELP/TYPE lines were already written) with extra `labels`. */
int metrics_hist(struct metrics_buf *b, const char *name, const char *labels,
                 const struct metrics_hist *h);

/* Copies `in` into out (outsz bytes, NUL-terminated, truncated when needed)
 * with backslash, double quote and newline escaped for a label value. */
void metrics_escape(const char *in, char *out, size_t outsz);

/* Returns 0 when every write so far succeeded, -ENOMEM otherwise. */
int metrics_buf_ok(const struct metrics_buf *b);

/* Frees the buffer's text. NULL-safe. */
void metrics_buf_free(struct metrics_buf *b);

/* Returns the resident set size of this process in bytes (VmRSS of
 * /proc/self/status), or 0 when it cannot be read. */
uint64_t metrics_process_rss(void);

/* Returns the seconds since this process started (/proc/self/stat against
 * /proc/uptime), or 0 when they cannot be read. */
double metrics_process_uptime(void);

/* Returns the time this process started, in whole seconds since the Unix
 * epoch (the wall clock at the first call minus the process's age from
 * /proc), or 0 when /proc cannot be read. The same value on every call
 * after the first that succeeds. Loop thread (or any one thread) only. */
double metrics_process_start_time(void);

/* Writes the process families every imgstore server exposes:
 * imgstore_process_resident_memory_bytes, imgstore_process_uptime_seconds
 * and process_start_time_seconds. */
int metrics_process(struct metrics_buf *b);

#endif
