/* fixture.c - the integration tests' cluster fixture, data-set uploads and
 * shared checks (see fixture.h). Fails the running Criterion test on an
 * error; calls cluster.c, json_check.c and the client library only. */
#include "tests/integ/fixture.h"
#include "tests/integ/json_check.h"
#include "proto/frame.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FIXTURE_RECORD_HEADER 24 /* bytes before a record's data (docs/storage.md) */

struct cluster *C;

int fixture_start(const struct cluster_opts *o)
{
    return cluster_start(o, &C);
}

void fixture_stop(void)
{
    cluster_stop(C);
    C = NULL;
}

void fixture_sizes(uint64_t seed, int first, int n, uint32_t min, uint32_t max, uint32_t *sizes)
{
    uint64_t rng = seed + (uint64_t)first;
    for (int i = first; i < first + n; i++)
        sizes[i] = min + (uint32_t)(cluster_rand(&rng) % (max - min));
}

void fixture_put_range(imgstore_t *h, uint64_t seed, int first, int n, const uint32_t *sizes,
                       char (*names)[IMGSTORE_NAME_MAX], int attempts, const char *when)
{
    for (int i = first; i < first + n; i++)
        cr_assert_eq(cluster_put_file(h, seed, (uint64_t)i, sizes[i], names[i], attempts), 0,
                     "%s%supload %d failed %d times", when ? when : "", when ? ": " : "", i,
                     attempts);
}

void fixture_upload(uint64_t seed, int first, int n, uint32_t min, uint32_t max, int attempts,
                    uint32_t *sizes, char (*names)[IMGSTORE_NAME_MAX])
{
    fixture_sizes(seed, first, n, min, max, sizes);
    imgstore_t *h = cluster_client(C);
    cr_assert_not_null(h);
    fixture_put_range(h, seed, first, n, sizes, names, attempts, NULL);
    imgstore_close(h);
}

void fixture_admin_json(struct cluster_run *r, int timeout_ms, ...)
{
    char who[256] = "";
    size_t used = 0;
    va_list ap, names;
    va_start(ap, timeout_ms);
    va_copy(names, ap);
    for (const char *a; (a = va_arg(names, const char *)) != NULL && used < sizeof(who);) {
        int w = snprintf(who + used, sizeof(who) - used, "%s ", a);
        used += w > 0 ? (size_t)w : 0;
    }
    va_end(names);
    int rc = cluster_adminv(C, timeout_ms, r, "--json", ap);
    va_end(ap);
    cr_assert_eq(rc, 0, "ds-admin --json %s: exit %d\n%s%s", who, rc, rc >= 0 ? r->out : "",
                 rc >= 0 ? r->err : "");
    strncat(who, "--json", sizeof(who) - strlen(who) - 1);
    check_json(r->out, who);
}

int fixture_damage_copy(const char *name, uint32_t size, struct imgstore_stat *st)
{
    return fixture_damage_record(name, FIXTURE_RECORD_HEADER + size / 2, 0x40, st);
}

int fixture_damage_record(const char *name, uint32_t at_in_record, uint8_t mask,
                          struct imgstore_stat *st)
{
    imgstore_t *h = cluster_client(C);
    cr_assert_not_null(h);
    int rc = imgstore_stat(h, name, st);
    imgstore_close(h);
    cr_assert_eq(rc, 0);
    cr_assert_eq(st->nreplicas, 2);
    int ds = cluster_ds_index(C, st->replicas[1]);
    cr_assert_geq(ds, 0);
    char p[700];
    cluster_block_path(C, ds, st->block_id, p, sizeof(p));
    int fd = open(p, O_RDWR);
    cr_assert_geq(fd, 0, "%s: %s", p, strerror(errno));
    uint8_t x;
    off_t at = (off_t)(st->offset + at_in_record);
    cr_assert_eq(pread(fd, &x, 1, at), 1);
    x ^= mask;
    cr_assert_eq(pwrite(fd, &x, 1, at), 1);
    close(fd);
    return ds;
}

void fixture_file_holds(const char *path, const void *want, size_t len, const char *what)
{
    void *data;
    size_t got;
    cr_assert_eq(cluster_read_file(path, &data, &got), 0);
    cr_assert(got == len && memcmp(data, want, len) == 0, "%s", what);
    free(data);
}

int fixture_busiest_ds(imgstore_t *h, const char (*names)[IMGSTORE_NAME_MAX], int n, int replicas,
                       int *count)
{
    int on[CLUSTER_MAX_DS] = {0};
    for (int i = 0; i < n; i++) {
        struct imgstore_stat st;
        cr_assert_eq(imgstore_stat(h, names[i], &st), 0);
        if (replicas)
            cr_assert_eq(st.nreplicas, replicas, "file %d has %d replicas", i, st.nreplicas);
        for (int r = 0; r < st.nreplicas; r++)
            for (int d = 0; d < C->nds; d++)
                on[d] += strcmp(st.replicas[r], C->ds[d].addr) == 0;
    }
    int v = 0;
    for (int d = 1; d < C->nds; d++)
        if (on[d] > on[v])
            v = d;
    cr_assert_gt(on[v], 0, "no file on the busiest dataserver: the test proves nothing");
    *count = on[v];
    return v;
}

/* How many times the log at path holds `text`. */
int fixture_log_count(const char *path, const char *text)
{
    void *log = NULL;
    size_t len = 0;
    if (cluster_read_file(path, &log, &len) != 0)
        return 0;
    int n = 0;
    for (const char *p = log, *end = (const char *)log + len;
         (p = memmem(p, (size_t)(end - p), text, strlen(text))) != NULL; p++)
        n++;
    free(log);
    return n;
}

/* Waits until the log at path holds text more than `seen` times (logs of a
 * restarted server are appended); returns the ms waited or -1. */
int64_t fixture_wait_log(const char *path, const char *text, int seen, int timeout_ms)
{
    int64_t t0 = cluster_now_ms();
    while (cluster_now_ms() - t0 < timeout_ms) {
        if (fixture_log_count(path, text) > seen)
            return cluster_now_ms() - t0;
        usleep(20000);
    }
    return -1;
}

/* The status through one nameserver alone: 0, or its error. */
int fixture_ns_status(const char *addr)
{
    struct imgstore_opts o = {.timeout_ms = 1000, .io_timeout_ms = 500};
    imgstore_t *h = NULL;
    Imgstore__ClusterStatusResp *st = NULL;
    int rc = imgstore_open(addr, &o, &h);
    if (rc == 0) {
        ProtobufCMessage *m = NULL;
        Imgstore__ClusterStatus q = IMGSTORE__CLUSTER_STATUS__INIT;
        rc = imgstore_admin_call(h, addr, FT_CLUSTER_STATUS, &q.base,
                                 &imgstore__cluster_status_resp__descriptor, &m);
        st = (Imgstore__ClusterStatusResp *)m;
    }
    imgstore_admin_free_status(st);
    imgstore_close(h);
    return rc;
}
