/* block_meta.c - a block's meta file (<id>.meta), a small key=value text
 * file replaced atomically (write, fsync, rename):
 *   version=1
 *   block=<16 hex>
 *   primary=0|1
 *   sealed=0|1
 *   corrupt=0|1
 *   set_version=<u32>                         (optional: 0 when absent)
 *   lonely=<from> <to>                        (optional: no lonely records)
 *   replica=<server_id> <addr> <http_addr>    (0..BLOCK_MAX_REPLICAS lines)
 * Read at open as hostile input: unknown keys, bad values, a wrong block id
 * or a file over META_MAX refuse the block (block.c decides what follows).
 * Calls base/ (fsutil, log) only. */
#include "dataserver/block.h"
#include "dataserver/block_int.h"

#include "base/err.h"
#include "base/fsutil.h"
#include "base/log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define META_VERSION 1
#define META_MAX 4096 /* a meta file larger than this is not ours */

/* A replica field is stored as one whitespace-free token. */
static int token_valid(const char *s, size_t cap)
{
    size_t n = strnlen(s, cap);
    if (n == 0 || n == cap)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] <= ' ' || s[i] == 0x7f)
            return 0;
    return 1;
}

int block_replicas_valid(const struct block_replica *r, int n)
{
    if (n < 0 || n > BLOCK_MAX_REPLICAS || (n > 0 && !r))
        return 0;
    for (int i = 0; i < n; i++)
        if (!token_valid(r[i].server_id, sizeof(r[i].server_id)) ||
            !token_valid(r[i].addr, sizeof(r[i].addr)) ||
            !token_valid(r[i].http_addr, sizeof(r[i].http_addr)))
            return 0;
    return 1;
}

int block_save_meta(struct block *b)
{
    char buf[META_MAX], path[sizeof(b->path) + SUFFIX_MAX];
    if (!block_replicas_valid(b->replicas, b->nreplicas))
        return IMG_EINVAL;
    int n = snprintf(buf, sizeof(buf),
                     "version=%d\nblock=%016" PRIx64 "\nprimary=%d\nsealed=%d\ncorrupt=%d\n"
                     "set_version=%" PRIu32 "\n",
                     META_VERSION, b->id, b->primary ? 1 : 0, b->sealed ? 1 : 0,
                     b->corrupt ? 1 : 0, b->set_version);
    if (b->lonely_to && n > 0 && (size_t)n < sizeof(buf))
        n += snprintf(buf + n, sizeof(buf) - (size_t)n, "lonely=%" PRIu64 " %" PRIu64 "\n",
                      b->lonely_from, b->lonely_to);
    for (int i = 0; i < b->nreplicas && n > 0 && (size_t)n < sizeof(buf); i++)
        n += snprintf(buf + n, sizeof(buf) - (size_t)n, "replica=%s %s %s\n",
                      b->replicas[i].server_id, b->replicas[i].addr, b->replicas[i].http_addr);
    if (n < 0 || (size_t)n >= sizeof(buf))
        return IMG_EINVAL;
    block_path_of(b, ".meta", path, sizeof(path));
    return fs_write_atomic(path, buf, (size_t)n);
}

static int parse_flag(const char *v, int *out)
{
    if (strcmp(v, "0") != 0 && strcmp(v, "1") != 0)
        return IMG_EFORMAT;
    *out = v[0] == '1';
    return 0;
}

/* Parses "<server_id> <addr> <http_addr>" into r. */
static int parse_replica(char *v, struct block_replica *r)
{
    char *fields[3], *save = NULL;
    size_t caps[3] = {sizeof(r->server_id), sizeof(r->addr), sizeof(r->http_addr)};
    char *dst[3] = {r->server_id, r->addr, r->http_addr};
    for (int i = 0; i < 3; i++) {
        fields[i] = strtok_r(i == 0 ? v : NULL, " ", &save);
        if (!fields[i] || strlen(fields[i]) >= caps[i])
            return IMG_EFORMAT;
        memcpy(dst[i], fields[i], strlen(fields[i]) + 1);
        if (!token_valid(dst[i], caps[i]))
            return IMG_EFORMAT;
    }
    return strtok_r(NULL, " ", &save) ? IMG_EFORMAT : 0;
}

/* Parses a set_version value: 1..10 decimal digits fitting in u32. */
static int parse_u32(const char *v, uint32_t *out)
{
    size_t n = strlen(v);
    if (n == 0 || n > 10 || strspn(v, "0123456789") != n)
        return IMG_EFORMAT;
    unsigned long long x = strtoull(v, NULL, 10);
    if (x > UINT32_MAX)
        return IMG_EFORMAT;
    *out = (uint32_t)x;
    return 0;
}

/* Parses "<from> <to>" (decimal, from < to) of a lonely= line. */
static int parse_lonely(const char *v, uint64_t *from, uint64_t *to)
{
    char tail;
    unsigned long long a, b;
    if (strspn(v, "0123456789 ") != strlen(v) || sscanf(v, "%llu %llu%c", &a, &b, &tail) != 2 ||
        a >= b)
        return IMG_EFORMAT;
    *from = a;
    *to = b;
    return 0;
}

/* Parses meta text (NUL-terminated, modified in place) into b. Every key but
 * replica must appear exactly once (set_version and lonely at most once:
 * metas written before set_version existed lack it, lonely is written only
 * when there are lonely records); unknown keys are refused. */
static int meta_parse(struct block *b, char *text)
{
    enum { K_VERSION, K_BLOCK, K_PRIMARY, K_SEALED, K_CORRUPT, K_SET_VERSION, K_LONELY, K_N };
    static const char *keys[K_N] = {"version", "block",   "primary",    "sealed",
                                    "corrupt", "set_version", "lonely"};
    int seen[K_N] = {0};
    char *save = NULL;
    b->nreplicas = 0;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *eq = strchr(line, '=');
        if (line[0] == '#' || line[0] == '\0')
            continue;
        if (!eq)
            return IMG_EFORMAT;
        *eq = '\0';
        char *v = eq + 1;
        if (strcmp(line, "replica") == 0) {
            if (b->nreplicas >= BLOCK_MAX_REPLICAS ||
                parse_replica(v, &b->replicas[b->nreplicas]) != 0)
                return IMG_EFORMAT;
            b->nreplicas++;
            continue;
        }
        int k = 0;
        while (k < K_N && strcmp(line, keys[k]) != 0)
            k++;
        if (k == K_N || seen[k]++)
            return IMG_EFORMAT;
        char idhex[ID_HEX_LEN + 1];
        int rc = 0;
        switch (k) {
        case K_VERSION:
            rc = strcmp(v, "1") == 0 ? 0 : IMG_EFORMAT;
            break;
        case K_BLOCK:
            snprintf(idhex, sizeof(idhex), "%016" PRIx64, b->id);
            rc = strcmp(v, idhex) == 0 ? 0 : IMG_EFORMAT;
            break;
        case K_PRIMARY:
            rc = parse_flag(v, &b->primary);
            break;
        case K_SEALED:
            rc = parse_flag(v, &b->sealed);
            break;
        case K_CORRUPT:
            rc = parse_flag(v, &b->corrupt);
            break;
        case K_SET_VERSION:
            rc = parse_u32(v, &b->set_version);
            break;
        case K_LONELY:
            rc = parse_lonely(v, &b->lonely_from, &b->lonely_to);
            break;
        }
        if (rc != 0)
            return rc;
    }
    b->set_version = seen[K_SET_VERSION] ? b->set_version : 0;
    if (!seen[K_LONELY])
        b->lonely_from = b->lonely_to = 0;
    for (int k = 0; k < K_N; k++)
        if (!seen[k] && k != K_SET_VERSION && k != K_LONELY)
            return IMG_EFORMAT;
    return 0;
}

int block_meta_load(struct block *b)
{
    char path[sizeof(b->path) + SUFFIX_MAX];
    char *text = NULL;
    size_t len;
    block_path_of(b, ".meta", path, sizeof(path));
    int rc = fs_read_all(path, META_MAX, &text, &len);
    if (rc == -EFBIG)
        return IMG_EFORMAT;
    if (rc != 0)
        return rc;
    rc = strlen(text) == len ? meta_parse(b, text) : IMG_EFORMAT;
    free(text);
    return rc;
}

