/* cluster_http.c - what the tests read from the servers' HTTP ports and
 * logs (cluster.h): a GET's status, a body, one /metrics series, and the
 * numbers a log line carries. */
#include "tests/integ/cluster.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define CLUSTER_HTTP_TIMEOUT_MS 5000 /* cluster_http_body, cluster_metric */

int cluster_get_status(const char *http_addr, const char *name)
{
    int fd = cluster_connect(http_addr, 5000);
    if (fd < 0)
        return -1;
    struct timeval tv = {.tv_sec = 1};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char req[256];
    int n = snprintf(req, sizeof(req), "GET /%s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                     name);
    if (n < 0 || (size_t)n >= sizeof(req) || cluster_send_all(fd, req, (size_t)n) != 0) {
        close(fd);
        return -1;
    }
    char buf[64];
    ssize_t got = recv(fd, buf, sizeof(buf) - 1, 0);
    close(fd);
    if (got < 12)
        return -1;
    buf[got] = '\0';
    return atoi(buf + 9);
}

int cluster_log_latencies(const char *path, const char *tag, uint64_t *median, uint64_t *max)
{
    void *log = NULL;
    size_t len = 0;
    *median = *max = 0;
    if (cluster_read_file(path, &log, &len) != 0)
        return 0;
    static uint64_t v[4096];
    int n = 0;
    size_t tl = strlen(tag);
    for (const char *p = log, *end = (const char *)log + len;
         n < 4096 && (p = memmem(p, (size_t)(end - p), tag, tl)) != NULL; p++)
        v[n++] = strtoull(p + tl, NULL, 10);
    free(log);
    for (int i = 1; i < n; i++) /* insertion sort: few values */
        for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
            uint64_t t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    if (n) {
        *median = v[n / 2];
        *max = v[n - 1];
    }
    return n;
}

char *cluster_http_body(const char *http_addr, const char *path)
{
    int fd = cluster_connect(http_addr, CLUSTER_HTTP_TIMEOUT_MS);
    if (fd < 0)
        return NULL;
    char req[512];
    int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n",
                     path, http_addr);
    if (n < 0 || (size_t)n >= sizeof(req) || write(fd, req, (size_t)n) != n) {
        close(fd);
        return NULL;
    }
    size_t len = 0, cap = 1 << 20;
    char *buf = malloc(cap);
    if (!buf) {
        close(fd);
        return NULL;
    }
    for (ssize_t r; len + 1 < cap && (r = read(fd, buf + len, cap - len - 1)) > 0;)
        len += (size_t)r;
    close(fd);
    buf[len] = '\0';
    int code = 0;
    char *body = strstr(buf, "\r\n\r\n");
    if (sscanf(buf, "HTTP/1.1 %d", &code) != 1 || code != 200 || !body) {
        free(buf);
        return NULL;
    }
    memmove(buf, body + 4, strlen(body + 4) + 1);
    return buf;
}

double cluster_metric(const char *http_addr, const char *series)
{
    char *text = cluster_http_body(http_addr, "/metrics");
    if (!text)
        return -1;
    double v = -1;
    size_t plen = strlen(series) + 3;
    char *pat = malloc(plen);
    if (pat) {
        /* a series starts a line: the body's first, or after a newline */
        snprintf(pat, plen, "\n%s ", series);
        const char *val = NULL; /* just past "SERIES " */
        if (strncmp(text, pat + 1, plen - 2) == 0)
            val = text + plen - 2;
        else if ((val = strstr(text, pat)) != NULL)
            val += plen - 1;
        if (val)
            v = strtod(val, NULL);
        free(pat);
    }
    free(text);
    return v;
}
