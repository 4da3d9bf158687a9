/* ns_meta.c - the little the nameserver persists: cluster id, the block-id
 * reserve, the replication and block-size settings, the ids of every
 * dataserver it has seen (so safe mode knows whom to wait for), the runtime
 * settings an operator set, the servers an operator made read-only, and the
 * member key each server id is bound to ("server_key ID KEY",
 * docs/security.md).
 *
 * The file DIR/ns.meta is plain text, one "key value" per line, drawn in
 * docs/nameserver.md, written whole with fs_write_atomic. Block ids are handed
 * out from memory; the reserve (a high-water mark) is persisted, fsync'd,
 * before any id at or past it is used, so a crash can skip ids but never
 * reuse one. A file that does not parse is refused, never reset.
 *
 * Data layer: calls only ns_settings.c (the settings' names and ranges) and
 * ns_server_id_valid (ns_registry.c), and base/. */
#include "nameserver/ns.h"

#include "base/err.h"
#include "base/fsutil.h"
#include "base/hexid.h"
#include "base/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define META_HEADER "imgstore-nameserver-meta 1"
#define META_END "end"
#define META_LINE_MAX 256

/* Parses a strict unsigned decimal (no sign, no spaces, no overflow). */
static int parse_u64(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    if (!*s)
        return IMG_EFORMAT;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return IMG_EFORMAT;
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return IMG_EFORMAT;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* ---- lists of server ids: known, read-only, draining ---- */

/* A list is an owned array *ids of *n malloc'd ids (known, nknown of the
 * meta, or the ids, n of a struct ns_idlist). */

static void ids_clear(char ***ids, size_t *n)
{
    for (size_t i = 0; i < *n; i++)
        free((*ids)[i]);
    free(*ids);
    *ids = NULL;
    *n = 0;
}

static int ids_has(char *const *ids, size_t n, const char *id)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(ids[i], id) == 0)
            return 1;
    return 0;
}

/* Appends a copy of `id`. Returns 0 or -ENOMEM. */
static int ids_push(char ***ids, size_t *n, const char *id)
{
    char *copy = strdup(id);
    char **grown = copy ? realloc(*ids, (*n + 1) * sizeof(*grown)) : NULL;
    if (!grown) {
        free(copy);
        return -ENOMEM;
    }
    *ids = grown;
    grown[(*n)++] = copy;
    return 0;
}

/* Parses the ID of one "known_server ID" or "<kind>_server ID" line into the
 * list. */
static int ids_parse(char ***ids, size_t *n, const char *val)
{
    if (!ns_server_id_valid(val) || ids_has(*ids, *n, val) || *n >= NS_MAX_SERVERS)
        return IMG_EFORMAT;
    return ids_push(ids, n, val);
}

/* Adds (on) or removes id in the list and persists the meta; on a failed
 * save the list is as before. */
static int ids_set(struct ns_meta *m, char ***ids, size_t *n, const char *id, int on)
{
    size_t i = 0;
    while (i < *n && strcmp((*ids)[i], id) != 0)
        i++;
    int has = i < *n, rc;
    if (!has == !on)
        return 0;
    if (on) {
        if ((rc = ids_push(ids, n, id)) != 0)
            return rc;
        if ((rc = ns_meta_save(m)) != 0)
            free((*ids)[--*n]);
        return rc;
    }
    char **l = *ids;
    char *gone = l[i];
    l[i] = l[--*n];
    if ((rc = ns_meta_save(m)) != 0) {
        l[(*n)++] = l[i];
        l[i] = gone;
        return rc;
    }
    free(gone);
    return 0;
}

static void known_clear(struct ns_meta *m)
{
    size_t nb = m->nbound;
    ids_clear(&m->bound_ids, &m->nbound);
    m->nbound = nb;
    ids_clear(&m->bound_keys, &m->nbound);
    ids_clear(&m->known, &m->nknown);
    ids_clear(&m->readonly.ids, &m->readonly.n);
    ids_clear(&m->draining.ids, &m->draining.n);
    m->setting_set = 0;
}

/* Applies "setting KEY VALUE" (val is "KEY VALUE"). */
static int parse_setting(struct ns_meta *m, char *val)
{
    char *num = strchr(val, ' ');
    uint64_t v;
    if (!num)
        return IMG_EFORMAT;
    *num++ = '\0';
    int k = ns_setting_find(val);
    if (k < 0 || (m->setting_set & (1u << k)) || parse_u64(num, &v) || ns_setting_check(k, v))
        return IMG_EFORMAT;
    m->setting[k] = v;
    m->setting_set |= 1u << k;
    return 0;
}

/* A key name as net/auth.c accepts it (no white space, not too long). */
static int key_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= 64)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || strchr("-_.@", s[i])))
            return 0;
    return 1;
}

/* Appends the binding id -> key (copies). 0, IMG_EINVAL or -ENOMEM. */
static int bind_push(struct ns_meta *m, const char *id, const char *key)
{
    if (!ns_server_id_valid(id) || !key_name_ok(key) || ids_has(m->bound_ids, m->nbound, id) ||
        m->nbound >= NS_MAX_SERVERS)
        return IMG_EINVAL;
    size_t n = m->nbound;
    int rc = ids_push(&m->bound_ids, &n, id);
    if (rc)
        return rc;
    n = m->nbound;
    if ((rc = ids_push(&m->bound_keys, &n, key)) != 0) {
        free(m->bound_ids[m->nbound]);
        return rc;
    }
    m->nbound = n;
    return 0;
}

/* Parses "ID KEY" of a "server_key" line. */
static int parse_bound(struct ns_meta *m, char *val)
{
    char *key = strchr(val, ' ');
    if (!key)
        return IMG_EFORMAT;
    *key++ = '\0';
    int rc = bind_push(m, val, key);
    return rc == -ENOMEM ? rc : rc ? IMG_EFORMAT : 0;
}

const char *ns_meta_bound_key(const struct ns_meta *m, const char *id)
{
    for (size_t i = 0; i < m->nbound; i++)
        if (strcmp(m->bound_ids[i], id) == 0)
            return m->bound_keys[i];
    return NULL;
}

int ns_meta_bind_key(struct ns_meta *m, const char *id, const char *key)
{
    int rc = bind_push(m, id, key);
    if (rc)
        return rc;
    if ((rc = ns_meta_save(m)) != 0) {
        m->nbound--;
        free(m->bound_ids[m->nbound]);
        free(m->bound_keys[m->nbound]);
    }
    return rc;
}

/* Applies one "key value" line. `seen` tracks single-valued keys. */
static int parse_line(struct ns_meta *m, char *line, unsigned *seen)
{
    enum { SEEN_CLUSTER = 1, SEEN_RESERVED = 2, SEEN_REPLICAS = 4, SEEN_BSIZE = 8 };
    char *val = strchr(line, ' ');
    if (!val)
        return IMG_EFORMAT;
    *val++ = '\0';
    uint64_t v;
    if (strcmp(line, "cluster_id") == 0) {
        if ((*seen & SEEN_CLUSTER) || strlen(val) != NS_CLUSTER_ID_HEX ||
            !hexid_valid(val, NS_CLUSTER_ID_HEX))
            return IMG_EFORMAT;
        memcpy(m->cluster_id, val, NS_CLUSTER_ID_HEX + 1);
        *seen |= SEEN_CLUSTER;
    } else if (strcmp(line, "block_id_reserved") == 0) {
        if ((*seen & SEEN_RESERVED) || parse_u64(val, &v) || v < 1 || v > NS_MAX_BLOCK_ID + 1)
            return IMG_EFORMAT;
        m->block_id_reserved = v;
        *seen |= SEEN_RESERVED;
    } else if (strcmp(line, "replicas") == 0) {
        if ((*seen & SEEN_REPLICAS) || parse_u64(val, &v) || v < NS_MIN_REPLICAS ||
            v > NS_MAX_REPLICAS)
            return IMG_EFORMAT;
        m->replicas = (uint32_t)v;
        *seen |= SEEN_REPLICAS;
    } else if (strcmp(line, "block_size") == 0) {
        if ((*seen & SEEN_BSIZE) || parse_u64(val, &v) || v < NS_MIN_BLOCK_SIZE ||
            v > NS_MAX_BLOCK_SIZE)
            return IMG_EFORMAT;
        m->block_size = v;
        *seen |= SEEN_BSIZE;
    } else if (strcmp(line, "known_server") == 0) {
        return ids_parse(&m->known, &m->nknown, val);
    } else if (strcmp(line, "readonly_server") == 0) {
        return ids_parse(&m->readonly.ids, &m->readonly.n, val);
    } else if (strcmp(line, "draining_server") == 0) {
        return ids_parse(&m->draining.ids, &m->draining.n, val);
    } else if (strcmp(line, "setting") == 0) {
        return parse_setting(m, val);
    } else if (strcmp(line, "server_key") == 0) {
        return parse_bound(m, val);
    } else {
        return IMG_EFORMAT;
    }
    return 0;
}

int ns_meta_parse(const char *text, size_t len, struct ns_meta *m)
{
    const unsigned all_seen = 15;
    unsigned seen = 0;
    int lineno = 0, ended = 0, rc = 0;
    size_t off = 0;
    known_clear(m);
    if (memchr(text, '\0', len))
        return IMG_EFORMAT;
    while (off < len) {
        const char *nl = memchr(text + off, '\n', len - off);
        if (!nl) /* every line, "end" included, is newline-terminated */
            goto err;
        size_t ll = (size_t)(nl - (text + off));
        char line[META_LINE_MAX];
        if (ll >= sizeof(line) || ended)
            goto err;
        memcpy(line, text + off, ll);
        line[ll] = '\0';
        off += ll + 1;
        lineno++;
        if (lineno == 1) {
            if (strcmp(line, META_HEADER) != 0)
                goto err;
        } else if (strcmp(line, META_END) == 0) {
            ended = 1;
        } else if ((rc = parse_line(m, line, &seen)) != 0) {
            if (rc == -ENOMEM)
                return rc;
            goto err;
        }
    }
    if (!ended || seen != all_seen)
        goto err;
    return 0;
err:
    known_clear(m);
    return IMG_EFORMAT;
}

/* Formats *m as the text of its file into a malloc'd *out (*len bytes).
 * Returns 0 or -ENOMEM. */
static int meta_text(const struct ns_meta *m, char **out, size_t *lenp)
{
    size_t cap = 256 + (m->nknown + m->readonly.n + m->draining.n) * (NS_SERVER_ID_MAX + 24) +
                 m->nbound * (NS_SERVER_ID_MAX + 24 + 64) + NS_SETTING_COUNT * 64;
    char *buf = malloc(cap);
    if (!buf)
        return -ENOMEM;
    int n = snprintf(buf, cap,
                     META_HEADER "\ncluster_id %s\nblock_id_reserved %llu\nreplicas %u\n"
                                 "block_size %llu\n",
                     m->cluster_id, (unsigned long long)m->block_id_reserved, m->replicas,
                     (unsigned long long)m->block_size);
    size_t len = (size_t)n;
    for (size_t i = 0; i < m->nknown; i++)
        len += (size_t)snprintf(buf + len, cap - len, "known_server %s\n", m->known[i]);
    for (size_t i = 0; i < m->readonly.n; i++)
        len += (size_t)snprintf(buf + len, cap - len, "readonly_server %s\n", m->readonly.ids[i]);
    for (size_t i = 0; i < m->draining.n; i++)
        len += (size_t)snprintf(buf + len, cap - len, "draining_server %s\n", m->draining.ids[i]);
    for (int k = 0; k < NS_SETTING_COUNT; k++)
        if (m->setting_set & (1u << k))
            len += (size_t)snprintf(buf + len, cap - len, "setting %s %llu\n",
                                    ns_setting_name(k), (unsigned long long)m->setting[k]);
    for (size_t i = 0; i < m->nbound; i++)
        len += (size_t)snprintf(buf + len, cap - len, "server_key %s %s\n", m->bound_ids[i],
                                m->bound_keys[i]);
    len += (size_t)snprintf(buf + len, cap - len, META_END "\n");
    *out = buf;
    *lenp = len;
    return 0;
}

int ns_meta_save(const struct ns_meta *m)
{
    char *buf;
    size_t len;
    int rc = meta_text(m, &buf, &len);
    if (rc)
        return rc;
    rc = fs_write_atomic(m->path, buf, len);
    if (rc)
        log_error("cannot write %s: %s", m->path, img_strerror(rc));
    else if (m->saved)
        m->saved(m->saved_arg, buf, len);
    free(buf);
    return rc;
}

#define SWAP(a, b)                                                                            \
    do {                                                                                      \
        __typeof__(a) t_ = (a);                                                               \
        (a) = (b);                                                                            \
        (b) = t_;                                                                             \
    } while (0)

int ns_meta_adopt(struct ns_meta *m, const char *text, size_t len)
{
    struct ns_meta in;
    memset(&in, 0, sizeof(in));
    int rc = ns_meta_parse(text, len, &in);
    if (rc == 0 && strcmp(in.cluster_id, m->cluster_id) != 0)
        rc = IMG_ECLUSTER;
    if (rc == 0) {
        m->replicas = in.replicas;
        m->block_size = in.block_size;
        SWAP(m->known, in.known);
        SWAP(m->nknown, in.nknown);
        SWAP(m->readonly, in.readonly);
        SWAP(m->draining, in.draining);
        SWAP(m->bound_ids, in.bound_ids);
        SWAP(m->bound_keys, in.bound_keys);
        SWAP(m->nbound, in.nbound);
        memcpy(m->setting, in.setting, sizeof(m->setting));
        m->setting_set = in.setting_set;
    }
    ns_meta_free(&in); /* the lists m had before, or what was parsed */
    return rc;
}

int ns_meta_open(struct ns_meta *m, const char *dir, uint32_t replicas, uint64_t block_size)
{
    char *text = NULL;
    size_t len = 0;
    memset(m, 0, sizeof(*m));
    if (snprintf(m->path, sizeof(m->path), "%s/%s", dir, NS_META_FILE) >= (int)sizeof(m->path))
        return -ENAMETOOLONG;
    int rc = fs_read_all(m->path, NS_META_MAX_BYTES, &text, &len);
    int fresh = rc == -ENOENT;
    if (rc == -EFBIG) {
        log_error("%s is larger than %u bytes: refusing to start", m->path, NS_META_MAX_BYTES);
        return IMG_EFORMAT;
    }
    if (rc && !fresh) {
        log_error("cannot read %s: %s", m->path, img_strerror(rc));
        return rc;
    }
    if (fresh) {
        if ((rc = hexid_random(m->cluster_id, NS_CLUSTER_ID_HEX / 2)) != 0)
            goto err;
        m->block_id_reserved = 1;
        m->replicas = NS_DEFAULT_REPLICAS;
        m->block_size = NS_DEFAULT_BLOCK_SIZE;
    } else if ((rc = ns_meta_parse(text, len, m)) != 0) {
        if (rc == IMG_EFORMAT)
            log_error("%s is corrupt: refusing to start (fix or remove it by hand)", m->path);
        goto err;
    }
    if (replicas && replicas != m->replicas) {
        if (!fresh)
            log_info("replicas changed from %u to %u", m->replicas, replicas);
        m->replicas = replicas;
    }
    if (block_size && block_size != m->block_size) {
        if (!fresh)
            log_info("block size changed from %llu to %llu", (unsigned long long)m->block_size,
                     (unsigned long long)block_size);
        m->block_size = block_size;
    }
    m->next_id = m->block_id_reserved;
    if ((rc = ns_meta_save(m)) != 0)
        goto err;
    free(text);
    return 0;
err:
    free(text);
    ns_meta_free(m);
    return rc;
}

/* Makes the persisted reserve exceed m->next_id. */
static int reserve_past_next(struct ns_meta *m)
{
    if (m->next_id < m->block_id_reserved)
        return 0;
    uint64_t old = m->block_id_reserved;
    uint64_t want = m->next_id + NS_ID_RESERVE_BATCH;
    m->block_id_reserved = want > NS_MAX_BLOCK_ID + 1 ? NS_MAX_BLOCK_ID + 1 : want;
    int rc = ns_meta_save(m);
    if (rc)
        m->block_id_reserved = old;
    return rc;
}

int ns_meta_alloc_id(struct ns_meta *m, uint64_t *id)
{
    if (m->next_id > NS_MAX_BLOCK_ID)
        return -ENOSPC;
    if (m->id_limit && m->next_id >= m->id_limit)
        return -EAGAIN; /* HA: no range of ids in this term (yet) */
    int rc = reserve_past_next(m);
    if (rc)
        return rc;
    *id = m->next_id++;
    return 0;
}

int ns_meta_observe_id(struct ns_meta *m, uint64_t id)
{
    if (id < m->next_id || id > NS_MAX_BLOCK_ID)
        return 0;
    uint64_t old = m->next_id;
    m->next_id = id + 1;
    int rc = reserve_past_next(m);
    if (rc)
        m->next_id = old;
    return rc;
}

int ns_meta_is_known(const struct ns_meta *m, const char *id)
{
    return ids_has(m->known, m->nknown, id);
}

int ns_meta_add_known(struct ns_meta *m, const char *id)
{
    return ids_set(m, &m->known, &m->nknown, id, 1);
}

int ns_meta_is_readonly(const struct ns_meta *m, const char *id)
{
    return ids_has(m->readonly.ids, m->readonly.n, id);
}

int ns_meta_set_readonly(struct ns_meta *m, const char *id, int on)
{
    return ids_set(m, &m->readonly.ids, &m->readonly.n, id, on);
}

int ns_meta_is_draining(const struct ns_meta *m, const char *id)
{
    return ids_has(m->draining.ids, m->draining.n, id);
}

int ns_meta_set_draining(struct ns_meta *m, const char *id, int on)
{
    return ids_set(m, &m->draining.ids, &m->draining.n, id, on);
}

int ns_meta_set_setting(struct ns_meta *m, int k, uint64_t v)
{
    if (k < 0 || k >= NS_SETTING_COUNT)
        return IMG_EINVAL;
    uint64_t old = m->setting[k];
    uint32_t old_set = m->setting_set;
    m->setting[k] = v;
    m->setting_set |= 1u << k;
    int rc = ns_meta_save(m);
    if (rc) {
        m->setting[k] = old;
        m->setting_set = old_set;
    }
    return rc;
}

void ns_meta_free(struct ns_meta *m)
{
    known_clear(m);
}
