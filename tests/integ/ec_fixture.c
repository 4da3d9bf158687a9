/* ec_fixture.c - the erasure-coding integration tests' shared helpers
 * (see ec_fixture.h): a block's stripe and shard files, sealed blocks, a GET
 * from an HTTP origin. Fails the running Criterion test on an error. */
#include "tests/integ/ec_fixture.h"
#include "proto/fname.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int ec_name_in_block(const char *name, uint64_t id)
{
    struct fname f;
    cr_assert_eq(fname_decode(name, strlen(name), &f, NULL, NULL), 0, "%s", name);
    return f.block_id == id;
}

int ec_blk_copies(uint64_t id)
{
    int n = 0;
    for (int d = 0; d < C->nds; d++) {
        char p[700];
        struct stat st;
        cluster_block_path(C, d, id, p, sizeof(p));
        n += stat(p, &st) == 0;
    }
    return n;
}

uint64_t ec_first_sealed(void)
{
    struct cluster_run r;
    fixture_admin_json(&r, CLI_MS, "blocks", "--state", "sealed", NULL);
    json_t *doc = json_loads(r.out, 0, NULL);
    json_t *arr = json_object_get(doc, "blocks");
    uint64_t id = json_array_size(arr) ? (uint64_t)json_integer_value(json_object_get(
                                             json_array_get(arr, 0), "block_id"))
                                       : 0;
    json_decref(doc);
    cluster_run_free(&r);
    return id;
}

int ec_stripe_of(uint64_t id, int srv[6])
{
    char arg[32];
    snprintf(arg, sizeof(arg), "%" PRIu64, id);
    struct cluster_run r;
    fixture_admin_json(&r, CLI_MS, "block", arg, NULL);
    json_t *doc = json_loads(r.out, 0, NULL);
    cr_assert_not_null(doc, "%s", r.out);
    int up = 0;
    for (int i = 0; i < 6; i++)
        srv[i] = -1;
    json_t *ec = json_object_get(doc, "ec");
    if (ec) {
        cr_assert_str_eq(json_string_value(ec), "4+2", "%s", r.out);
        json_t *sh = json_object_get(doc, "shards");
        cr_assert_eq(json_array_size(sh), 6, "%s", r.out);
        for (size_t i = 0; i < 6; i++) {
            json_t *s = json_array_get(sh, i);
            cr_assert_eq(json_integer_value(json_object_get(s, "index")), (json_int_t)i);
            const char *addr = json_string_value(json_object_get(s, "address"));
            srv[i] = addr && *addr ? cluster_ds_index(C, addr) : -1;
            up += json_is_true(json_object_get(s, "up")) && srv[i] >= 0;
        }
    }
    json_decref(doc);
    cluster_run_free(&r);
    return up;
}

unsigned ec_shard_files(int d, uint64_t id)
{
    char dir[600], want[32];
    snprintf(dir, sizeof(dir), "%s/blocks", C->ds[d].data);
    snprintf(want, sizeof(want), "%016" PRIx64 ".s", id);
    unsigned mask = 0;
    DIR *dh = opendir(dir);
    cr_assert_not_null(dh);
    for (struct dirent *e; (e = readdir(dh));)
        if (strncmp(e->d_name, want, strlen(want)) == 0 && strlen(e->d_name) == 20)
            mask |= 1u << atoi(e->d_name + 18);
    closedir(dh);
    return mask;
}

uint8_t *ec_http_get(const char *addr, const char *name, size_t *len)
{
    int fd = cluster_connect(addr, 5000);
    cr_assert_geq(fd, 0);
    char req[512];
    int n = snprintf(req, sizeof(req), "GET /%s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                     name);
    cr_assert_eq(cluster_send_all(fd, req, (size_t)n), 0);
    size_t got = 0, cap = MAX_SIZE + 4096;
    uint8_t *buf = malloc(cap + 1);
    for (ssize_t r; got < cap && (r = read(fd, buf + got, cap - got)) > 0;)
        got += (size_t)r;
    close(fd);
    buf[got] = '\0';
    int code = 0;
    const char *cl = strcasestr((char *)buf, "\r\nContent-Length: ");
    uint8_t *body = (uint8_t *)strstr((char *)buf, "\r\n\r\n");
    if (sscanf((char *)buf, "HTTP/1.1 %d", &code) != 1 || code != 200 || !cl || !body) {
        free(buf);
        return NULL;
    }
    *len = (size_t)strtoull(cl + 18, NULL, 10);
    body += 4;
    cr_assert_eq((size_t)(buf + got - body), *len, "GET /%s: short body", name);
    uint8_t *out = malloc(*len ? *len : 1);
    memcpy(out, body, *len);
    free(buf);
    return out;
}

int64_t ec_now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

void ec_wait_stripe(uint64_t id, int srv[6], const char *when)
{
    int64_t end = ec_now_ms() + WAIT_MS;
    int up;
    while ((up = ec_stripe_of(id, srv)) < 6 && ec_now_ms() < end)
        usleep(200 * 1000);
    cr_assert_eq(up, 6, "%s: %d shards of block %" PRIu64 " on up servers", when, up, id);
}
