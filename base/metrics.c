/* metrics.c - the Prometheus text writer of metrics.h: families, samples,
 * fixed-bucket histograms, label escaping and the process figures.
 *
 * The text grows in one malloc'd buffer (doubling), so rendering a scrape
 * costs a few allocations however many series there are. */
#include "base/metrics.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BUF_MIN_CAP 4096
#define PROC_STATUS "/proc/self/status"
#define VMRSS_KEY "VmRSS:"
#define PROC_UPTIME "/proc/uptime"
#define PROC_STAT "/proc/self/stat"
#define STAT_STARTTIME_FIELD 22 /* proc(5): starttime, in clock ticks since boot */
#define NS_PER_S 1e9
#define KIB 1024ull
#define LABELS_MAX 512

/* 100 µs .. 10 s: a cache-hot read is well under a millisecond, a write waits
 * for an fdatasync on every replica, and anything past 10 s is an outage. */
const double metrics_lat_bounds[METRICS_LAT_BUCKETS] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
    0.025,  0.05,    0.1,    0.25,  0.5,    1.0,   10.0,
};

void metrics_hist_observe(struct metrics_hist *h, double seconds)
{
    if (!(seconds > 0))
        seconds = 0;
    size_t i = 0;
    while (i < METRICS_LAT_BUCKETS && seconds > metrics_lat_bounds[i])
        i++;
    h->buckets[i]++;
    h->count++;
    h->sum += seconds;
}

static int buf_reserve(struct metrics_buf *b, size_t more)
{
    if (b->failed)
        return -ENOMEM;
    if (b->len + more + 1 <= b->cap)
        return 0;
    size_t ncap = b->cap ? b->cap : BUF_MIN_CAP;
    while (ncap < b->len + more + 1)
        ncap *= 2;
    char *n = realloc(b->data, ncap);
    if (!n) {
        b->failed = 1;
        return -ENOMEM;
    }
    b->data = n;
    b->cap = ncap;
    return 0;
}

int metrics_printf(struct metrics_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || buf_reserve(b, (size_t)n) != 0)
        return -ENOMEM;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

int metrics_family(struct metrics_buf *b, const char *name, const char *type, const char *help)
{
    return metrics_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Formats a sample value: integers exactly, others with enough digits. */
static void format_value(double v, char *out, size_t n)
{
    if (isinf(v))
        snprintf(out, n, v > 0 ? "+Inf" : "-Inf");
    else if (isnan(v))
        snprintf(out, n, "NaN");
    else if (v == floor(v) && fabs(v) < 1e15)
        snprintf(out, n, "%.0f", v);
    else
        snprintf(out, n, "%.9g", v);
}

int metrics_value(struct metrics_buf *b, const char *name, const char *labels, double value)
{
    char v[64];
    format_value(value, v, sizeof(v));
    if (labels && *labels)
        return metrics_printf(b, "%s{%s} %s\n", name, labels, v);
    return metrics_printf(b, "%s %s\n", name, v);
}

int metrics_hist(struct metrics_buf *b, const char *name, const char *labels,
                 const struct metrics_hist *h)
{
    const char *sep = labels && *labels ? "," : "";
    const char *lab = labels ? labels : "";
    char series[LABELS_MAX];
    uint64_t cum = 0;
    int rc = 0;
    for (size_t i = 0; i <= METRICS_LAT_BUCKETS; i++) {
        cum += h->buckets[i];
        char le[32];
        if (i == METRICS_LAT_BUCKETS)
            snprintf(le, sizeof(le), "+Inf");
        else
            snprintf(le, sizeof(le), "%g", metrics_lat_bounds[i]);
        rc = metrics_printf(b, "%s_bucket{%s%sle=\"%s\"} %llu\n", name, lab, sep, le,
                            (unsigned long long)cum);
    }
    snprintf(series, sizeof(series), "%s_sum", name);
    rc = metrics_value(b, series, lab, h->sum);
    snprintf(series, sizeof(series), "%s_count", name);
    rc = metrics_value(b, series, lab, (double)h->count);
    return rc ? rc : metrics_buf_ok(b);
}

void metrics_escape(const char *in, char *out, size_t outsz)
{
    size_t o = 0;
    if (!outsz)
        return;
    for (; in && *in && o + 2 < outsz; in++) {
        char ch = *in;
        if (ch == '\\' || ch == '"' || ch == '\n') {
            out[o++] = '\\';
            out[o++] = ch == '\n' ? 'n' : ch;
        } else {
            out[o++] = ch;
        }
    }
    out[o] = '\0';
}

int metrics_buf_ok(const struct metrics_buf *b)
{
    return b->failed ? -ENOMEM : 0;
}

void metrics_buf_free(struct metrics_buf *b)
{
    if (!b)
        return;
    free(b->data);
    memset(b, 0, sizeof(*b));
}

uint64_t metrics_process_rss(void)
{
    FILE *f = fopen(PROC_STATUS, "re");
    if (!f)
        return 0;
    char line[256];
    uint64_t kib = 0;
    while (fgets(line, sizeof(line), f)) {
        unsigned long long v;
        if (strncmp(line, VMRSS_KEY, strlen(VMRSS_KEY)) == 0 &&
            sscanf(line + strlen(VMRSS_KEY), "%llu", &v) == 1) {
            kib = v;
            break;
        }
    }
    fclose(f);
    return kib * KIB;
}

/* The clock ticks from boot to this process's start (proc(5) starttime), or
 * -1 when /proc/self/stat cannot be read. */
static double start_ticks(void)
{
    char buf[1024];
    FILE *f = fopen(PROC_STAT, "re");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* The command name may hold spaces: fields are counted after its ')'. */
    char *p = strrchr(buf, ')');
    unsigned long long start = 0;
    for (int field = 2; p && *p && field < STAT_STARTTIME_FIELD; field++)
        p = strchr(p + 1, ' ');
    if (!p || sscanf(p, " %llu", &start) != 1)
        return -1;
    return (double)start;
}

double metrics_process_start_time(void)
{
    /* The wall clock now minus the process's age, computed once: /proc/stat's
     * boot time drifts from the wall clock on some machines (a VM's clock
     * stepped after boot), and a start time must not move between scrapes. */
    static double start;
    if (start > 0)
        return start;
    double age = metrics_process_uptime();
    struct timespec now;
    if (age <= 0 || clock_gettime(CLOCK_REALTIME, &now) != 0)
        return 0;
    start = floor((double)now.tv_sec + (double)now.tv_nsec / NS_PER_S - age);
    return start;
}

double metrics_process_uptime(void)
{
    double up = 0;
    FILE *f = fopen(PROC_UPTIME, "re");
    if (!f)
        return 0;
    int ok = fscanf(f, "%lf", &up) == 1;
    fclose(f);
    double ticks = start_ticks();
    long hz = sysconf(_SC_CLK_TCK);
    if (!ok || ticks < 0 || hz <= 0)
        return 0;
    double since = up - ticks / (double)hz;
    return since > 0 ? since : 0;
}

int metrics_process(struct metrics_buf *b)
{
    double uptime_s = metrics_process_uptime();
    metrics_family(b, "imgstore_process_resident_memory_bytes", "gauge",
                   "Resident memory of the process (VmRSS).");
    metrics_value(b, "imgstore_process_resident_memory_bytes", NULL,
                  (double)metrics_process_rss());
    metrics_family(b, "imgstore_process_uptime_seconds", "gauge",
                   "Seconds since the process started serving.");
    metrics_value(b, "imgstore_process_uptime_seconds", NULL, uptime_s);
    /* The name every Prometheus client library uses, so the usual
     * restart queries (changes(process_start_time_seconds[1h])) work. */
    metrics_family(b, "process_start_time_seconds", "gauge",
                   "Start time of the process since the Unix epoch, in seconds.");
    metrics_value(b, "process_start_time_seconds", NULL, metrics_process_start_time());
    return metrics_buf_ok(b);
}
