/* ns_core.c - the nameserver's lifecycle and safe mode.
 *
 * ns_init() takes the data folder (created, locked so no second nameserver
 * shares it) and the persisted metadata; ns_free() releases them. Safe mode
 * starts with the process and ends once every server in the persisted known
 * list has sent a full block report, or the safe-mode timeout passes. While
 * it lasts nothing that destroys replicas may run; block creation, ALLOC_WRITE
 * and LOOKUP work as usual.
 *
 * Calls ns_meta.c, ns_settings.c, the delete journal (ns_deljournal.c), the
 * registry, and every module's _free. */
#include "nameserver/ns.h"
#include "nameserver/ns_ec.h"
#include "nameserver/ns_etcd.h"

#include "base/err.h"
#include "base/fsutil.h"
#include "base/log.h"
#include "net/auth.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#define RNG_FALLBACK_SEED 0x2545F4914F6CDD1Dull

int ns_init(struct ns *ns, const struct ns_config *cfg, uint64_t now_ms)
{
    memset(ns, 0, sizeof(*ns));
    ns->cfg = *cfg;
    ns->lock_fd = -1;
    int rc = fs_mkdirs(cfg->data_dir);
    if (rc) {
        log_error("cannot create data folder %s: %s", cfg->data_dir, img_strerror(rc));
        return rc;
    }
    rc = fs_lock_dir(cfg->data_dir, &ns->lock_fd);
    if (rc) {
        if (rc == IMG_ELOCKED)
            log_error("data folder %s is in use by another nameserver", cfg->data_dir);
        else
            log_error("cannot lock data folder %s: %s", cfg->data_dir, img_strerror(rc));
        ns->lock_fd = -1;
        return rc;
    }
    rc = ns_meta_open(&ns->meta, cfg->data_dir, cfg->replicas, cfg->block_size);
    if (rc)
        return rc;
    ns_settings_load(ns);
    rc = ns_dj_open(&ns->dj, cfg->data_dir);
    if (rc) {
        log_error("cannot open the delete journal in %s: %s", cfg->data_dir, img_strerror(rc));
        return rc;
    }
    if (getrandom(&ns->rng, sizeof(ns->rng), 0) != sizeof(ns->rng) || ns->rng == 0)
        ns->rng = RNG_FALLBACK_SEED;
    ns->safe_mode = 1;
    ns->start_ms = now_ms;
    log_info("cluster %s: %zu known servers, next block id %llu, replicas %u, block size %llu",
             ns->meta.cluster_id, ns->meta.nknown, (unsigned long long)ns->meta.next_id,
             ns->meta.replicas, (unsigned long long)ns->meta.block_size);
    return 0;
}

void ns_free(struct ns *ns)
{
    for (size_t i = 0; i < ns->nservers; i++)
        free(ns->servers[i]);
    free(ns->servers);
    ns->servers = NULL;
    ns->nservers = 0;
    ns_blocks_free(&ns->blocks);
    ns_plan_free(ns);
    ns_bad_free(ns);
    ns_ec_free(ns);
    ns_balance_free(ns);
    conn_gate_free(&ns->gate);
    ns_etcd_free(ns);
    free(ns->pool);
    ns->pool = NULL;
    ns->npool = ns->pool_cap = 0;
    ns_meta_free(&ns->meta);
    if (ns->dj.path[0])
        ns_dj_close(&ns->dj);
    auth_keys_free(ns->keys);
    ns->keys = NULL;
    if (ns->lock_fd >= 0)
        close(ns->lock_fd);
    ns->lock_fd = -1;
}

uint64_t ns_rand(struct ns *ns)
{
    uint64_t x = ns->rng ? ns->rng : RNG_FALLBACK_SEED; /* xorshift64* */
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    ns->rng = x;
    return x * 0x2545F4914F6CDD1Dull;
}

int ns_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int ns_safe_mode_check(struct ns *ns, uint64_t now_ms)
{
    if (!ns->safe_mode)
        return 0;
    size_t reported = 0;
    for (size_t i = 0; i < ns->meta.nknown; i++) {
        const struct ns_server *s = ns_registry_find(ns, ns->meta.known[i]);
        if (s && s->full_reported)
            reported++;
    }
    /* With --etcd a new leader's own list of known servers may be old or
     * empty (it never led, or not lately): unless the term's list came from
     * etcd, only the timeout ends its safe mode. */
    if (reported == ns->meta.nknown && (!ns->ha || (ns->known_shared && ns->meta.nknown > 0))) {
        ns->safe_mode = 0;
        log_info("safe mode off: all %zu known servers reported", ns->meta.nknown);
    } else if (now_ms >= ns->start_ms && now_ms - ns->start_ms >= ns->cfg.safe_mode_ms) {
        ns->safe_mode = 0;
        log_warn("safe mode off after the %llu ms timeout: %zu of %zu known servers reported",
                 (unsigned long long)ns->cfg.safe_mode_ms, reported, ns->meta.nknown);
    }
    return ns->safe_mode;
}

int ns_settle_check(struct ns *ns, uint64_t now_ms)
{
    if (!ns->settling)
        return 0;
    size_t up = 0, reported = 0;
    for (size_t i = 0; i < ns->nservers; i++) {
        const struct ns_server *s = ns->servers[i];
        up += s->up;
        reported += s->up && s->term_reported;
    }
    if (reported == up) {
        ns->settling = 0;
        log_info("settled: all %zu up servers sent this term's full report (%llu ms)", up,
                 (unsigned long long)(now_ms - ns->settle_ms));
    } else if (now_ms >= ns->settle_ms && now_ms - ns->settle_ms >= ns->cfg.safe_mode_ms) {
        ns->settling = 0;
        log_warn("settled after the %llu ms timeout: %zu of %zu up servers sent this term's "
                 "full report",
                 (unsigned long long)ns->cfg.safe_mode_ms, reported, up);
    }
    return ns->settling;
}
