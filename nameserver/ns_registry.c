/* ns_registry.c - the table of dataservers, keyed by the persistent server id
 * each one sends in its heartbeats.
 *
 * An entry is created on a server's first heartbeat and never removed while
 * the process runs (its index is what block replicas refer to). A server is up
 * while it has a session and heartbeats keep arriving within the heartbeat
 * timeout; an address change updates the entry. Heartbeats are hostile input:
 * ns_hb_validate() checks them before anything is applied.
 *
 * Data layer: calls ns_meta.c (known ids, operator marks), reads the
 * heartbeat timeout from cfg, and closes sessions of timed-out servers
 * (net/conn.h). */
#include "nameserver/ns.h"

#include "net/conn.h"
#include "base/err.h"
#include "base/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int ns_server_id_valid(const char *id)
{
    if (!id)
        return 0;
    size_t n = 0;
    for (; id[n]; n++) {
        char ch = id[n];
        int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                 (ch >= '0' && ch <= '9') || ch == '_' || ch == '-';
        if (!ok || n >= NS_SERVER_ID_MAX)
            return 0;
    }
    return n > 0;
}

static int addr_valid(const char *a)
{
    struct sockaddr_storage ss;
    return a && strlen(a) < NS_ADDR_MAX && conn_parse_addr(a, &ss) == 0;
}

int ns_hb_validate(const Imgstore__Heartbeat *hb)
{
    if (!hb || !ns_server_id_valid(hb->server_id))
        return IMG_EINVAL;
    if (!addr_valid(hb->addr) || !addr_valid(hb->http_addr))
        return IMG_EINVAL;
    if (hb->n_disks > NS_MAX_DISKS)
        return IMG_EINVAL;
    return 0;
}

struct ns_server *ns_registry_find(const struct ns *ns, const char *id)
{
    for (size_t i = 0; i < ns->nservers; i++)
        if (strcmp(ns->servers[i]->id, id) == 0)
            return ns->servers[i];
    return NULL;
}

struct ns_server *ns_registry_at(const struct ns *ns, uint16_t idx)
{
    return idx < ns->nservers ? ns->servers[idx] : NULL;
}

static uint64_t sat_add(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* Creates the entry for a server seen for the first time. */
static int registry_add(struct ns *ns, const char *id, struct ns_server **out)
{
    if (ns->nservers >= NS_MAX_SERVERS)
        return -ENOSPC;
    struct ns_server *s = calloc(1, sizeof(*s));
    struct ns_server **arr = s ? realloc(ns->servers, (ns->nservers + 1) * sizeof(*arr)) : NULL;
    if (!arr) {
        free(s);
        return -ENOMEM;
    }
    ns->servers = arr;
    int rc = ns_meta_add_known(&ns->meta, id);
    if (rc) {
        free(s);
        return rc;
    }
    s->idx = (uint16_t)ns->nservers;
    snprintf(s->id, sizeof(s->id), "%s", id);
    ns->servers[ns->nservers++] = s;
    *out = s;
    return 0;
}

/* Updates the request rates of `s` from the counters of heartbeat `hb` once
 * at least NS_RATE_MIN_MS passed since the last sample. A counter that went
 * back (the dataserver restarted) restarts the window with rate 0. */
static void registry_rates(struct ns_server *s, const Imgstore__Heartbeat *hb, uint64_t now_ms)
{
    if (!s->up || hb->reads < s->rate_reads || hb->writes < s->rate_writes ||
        now_ms < s->rate_ms) {
        s->reads_per_s = s->writes_per_s = 0;
        s->rate_ms = now_ms;
        s->rate_reads = hb->reads;
        s->rate_writes = hb->writes;
        return;
    }
    uint64_t dt = now_ms - s->rate_ms;
    if (dt < NS_RATE_MIN_MS)
        return;
    s->reads_per_s = (double)(hb->reads - s->rate_reads) * 1000.0 / (double)dt;
    s->writes_per_s = (double)(hb->writes - s->rate_writes) * 1000.0 / (double)dt;
    s->rate_ms = now_ms;
    s->rate_reads = hb->reads;
    s->rate_writes = hb->writes;
}

int ns_registry_heartbeat(struct ns *ns, const Imgstore__Heartbeat *hb, struct conn *c,
                          uint64_t now_ms, struct ns_server **out)
{
    struct ns_server *s = ns_registry_find(ns, hb->server_id);
    int is_new = !ns_meta_is_known(&ns->meta, hb->server_id);
    if (!s) {
        int rc = registry_add(ns, hb->server_id, &s);
        if (rc) {
            log_error("cannot register server %s: %s", hb->server_id, img_strerror(rc));
            return rc;
        }
        s->draining = ns_meta_is_draining(&ns->meta, s->id); /* a drain goes on */
        if (s->draining)
            log_info("server %s is being drained (kept in %s)", s->id, NS_META_FILE);
    } else if (strcmp(s->addr, hb->addr) != 0 || strcmp(s->http_addr, hb->http_addr) != 0) {
        log_info("server %s changed address from %s (http %s) to %s (http %s)", s->id, s->addr,
                 s->http_addr, hb->addr, hb->http_addr);
    }
    snprintf(s->addr, sizeof(s->addr), "%s", hb->addr);
    snprintf(s->http_addr, sizeof(s->http_addr), "%s", hb->http_addr);
    s->capacity = s->free = s->used = 0;
    s->disks = (uint32_t)hb->n_disks;
    uint32_t failed = 0;
    for (size_t i = 0; i < hb->n_disks; i++)
        failed += hb->disks[i] && hb->disks[i]->failed;
    if (failed > s->failed_disks)
        for (size_t i = 0; i < hb->n_disks; i++)
            if (hb->disks[i] && hb->disks[i]->failed)
                log_error("server %s reports disk %s failed (%u of %u disks failed): its blocks "
                          "are re-replicated from other copies",
                          hb->server_id, hb->disks[i]->path ? hb->disks[i]->path : "?", failed,
                          (unsigned)hb->n_disks);
    s->failed_disks = failed;
    for (size_t i = 0; i < hb->n_disks; i++) {
        const Imgstore__Disk *d = hb->disks[i];
        if (!d || d->failed)
            continue;
        s->capacity = sat_add(s->capacity, d->capacity);
        s->free = sat_add(s->free, d->free);
        s->used = sat_add(s->used, d->used);
    }
    registry_rates(s, hb, now_ms);
    s->reads = hb->reads;
    s->writes = hb->writes;
    s->record_format = hb->record_format ? hb->record_format : 1;
    if (!s->ds_readonly != !hb->readonly)
        log_info("server %s reports itself %s", s->id, hb->readonly ? "read-only" : "writable");
    s->ds_readonly = hb->readonly ? 1 : 0;
    s->readonly = s->ds_readonly || ns_meta_is_readonly(&ns->meta, s->id);
    s->last_hb_ms = now_ms;
    s->conn = c;
    if (hb->full_report)
        s->full_reported = 1;
    if (!s->up)
        log_info("server %s up%s at %s (http %s), %u disks, %llu bytes free", s->id,
                 is_new ? " (new)" : "", s->addr, s->http_addr, s->disks,
                 (unsigned long long)s->free);
    s->up = 1;
    *out = s;
    return 0;
}

void ns_registry_mark_down(struct ns *ns, struct ns_server *s, const char *why)
{
    if (s->up)
        log_warn("server %s down: %s", s->id, why);
    s->up = 0;
    s->conn = NULL;
}

int ns_registry_check_timeouts(struct ns *ns, uint64_t now_ms)
{
    int n = 0;
    for (size_t i = 0; i < ns->nservers; i++) {
        struct ns_server *s = ns->servers[i];
        if (!s->up || now_ms < s->last_hb_ms || now_ms - s->last_hb_ms <= ns->cfg.hb_timeout_ms)
            continue;
        struct conn *c = s->conn;
        ns_registry_mark_down(ns, s, "heartbeat timeout");
        if (c)
            conn_close(c);
        n++;
    }
    return n;
}

uint32_t ns_registry_up_count(const struct ns *ns)
{
    uint32_t n = 0;
    for (size_t i = 0; i < ns->nservers; i++)
        n += ns->servers[i]->up ? 1 : 0;
    return n;
}

uint64_t ns_server_reserve(const struct ns *ns, const struct ns_server *s)
{
    uint64_t blocks = ns->meta.block_size * NS_RESERVE_BLOCKS;
    uint64_t share = s->capacity / 100 * NS_RESERVE_PCT;
    return blocks > share ? blocks : share;
}

int ns_server_has_room(const struct ns *ns, const struct ns_server *s, uint64_t bytes)
{
    uint64_t reserve = ns_server_reserve(ns, s);
    return s->free >= reserve && s->free - reserve >= bytes;
}

uint32_t ns_registry_record_format(const struct ns *ns)
{
    uint32_t f = 0;
    for (size_t i = 0; i < ns->nservers; i++) {
        uint32_t g = ns->servers[i]->record_format ? ns->servers[i]->record_format : 1;
        if (f == 0 || g < f)
            f = g;
    }
    return f ? f : 1;
}
