/* ns_settings.c - the runtime settings an operator changes with ds-admin set
 * (docs/operations.md): their table (name, unit, range, default, help), the
 * value of each in force, and putting a new value into force.
 *
 * A data module at the bottom of the nameserver: ns_meta.c uses the table to
 * parse and write "setting KEY VALUE" lines, ns_core.c loads the persisted
 * values at start, ns_admin.c answers SETTINGS / SET_SETTING with it, and the
 * planner, balance and compaction read the values in force (ns_settings_*).
 * It reads struct ns fields (cfg, meta) and calls no other ns_ module. */
#include "nameserver/ns.h"

#include "base/err.h"
#include "base/log.h"

#include <inttypes.h>
#include <string.h>

/* Units, ranges, defaults of the settings that have no command-line twin. */
#define NS_SET_MB 1000000ull                /* settings' MB/s are decimal */
#define NS_SET_MAX_RATE_MB 100000           /* copy_rate, scrub_rate */
#define NS_SET_MIN_HB_TIMEOUT_MS (2 * NS_HEARTBEAT_MS)
#define NS_SET_MAX_HB_TIMEOUT_MS (3600ull * 1000)
#define NS_SET_DEFAULT_SCRUB_MB 10
#define NS_SET_DEFAULT_BAND 5
#define NS_SET_MAX_EC_AGE_H (24ull * 3650) /* ten years */

static const struct ns_setting_def settings[NS_SETTING_COUNT] = {
    [NS_SETTING_COPY_RATE] = {"copy_rate", "MB/s", NS_DEFAULT_COPY_RATE / NS_SET_MB, 1,
                              NS_SET_MAX_RATE_MB, 1,
                              "background copy cap of each copying dataserver (sent with "
                              "every new copy)"},
    [NS_SETTING_TASK_CAP] = {"task_cap", "tasks", NS_DEFAULT_TASK_CAP, 1, NS_MAX_TASK_CAP, 1,
                             "running background tasks per server"},
    [NS_SETTING_HB_TIMEOUT] = {"heartbeat_timeout", "ms", NS_DEFAULT_HB_TIMEOUT_MS,
                               NS_SET_MIN_HB_TIMEOUT_MS, NS_SET_MAX_HB_TIMEOUT_MS, 1,
                               "a server with no heartbeat for this long is down"},
    [NS_SETTING_COMPACT_PCT] = {"compact_threshold", "%", NS_DEFAULT_COMPACT_PCT, 1, 100, 1,
                                "deleted share of a sealed block that makes it compacted"},
    [NS_SETTING_SCRUB_RATE] = {"scrub_rate", "MB/s", NS_SET_DEFAULT_SCRUB_MB, 0,
                               NS_SET_MAX_RATE_MB, 1,
                               "background checksum reading of each dataserver (sent with "
                               "every heartbeat; 0: each keeps its --scrub-rate-mb)"},
    [NS_SETTING_REBALANCE_BAND] = {"rebalance_band", "points", NS_SET_DEFAULT_BAND, 1, 50, 1,
                                   "how far a server's use % may stray from the cluster's "
                                   "before blocks move"},
    [NS_SETTING_EC] = {"ec", "k*100+m", 0, 0, 1004, 1,
                       "erasure coding of sealed blocks: 0 off, 402 (4+2), 603 (6+3), "
                       "1004 (10+4); ds-admin set ec 4+2 also works"},
    [NS_SETTING_EC_MIN_AGE_H] = {"ec_min_age_h", "hours", 0, 0, NS_SET_MAX_EC_AGE_H, 1,
                                 "sealed blocks older than this are erasure-coded by the "
                                 "planner (0: only by ds-admin ec encode)"},
};

const struct ns_setting_def *ns_setting_def(int k)
{
    return k >= 0 && k < NS_SETTING_COUNT ? &settings[k] : NULL;
}

int ns_setting_find(const char *name)
{
    for (int k = 0; name && k < NS_SETTING_COUNT; k++)
        if (strcmp(settings[k].name, name) == 0)
            return k;
    return -1;
}

const char *ns_setting_name(int k)
{
    return k >= 0 && k < NS_SETTING_COUNT ? settings[k].name : NULL;
}

int ns_setting_check(int k, uint64_t v)
{
    if (k < 0 || k >= NS_SETTING_COUNT || v < settings[k].min || v > settings[k].max)
        return IMG_EINVAL;
    if (k == NS_SETTING_EC && v != 0 && v != 402 && v != 603 && v != 1004)
        return IMG_EINVAL; /* the schemes of dataserver/ec.c */
    return 0;
}

uint64_t ns_setting(const struct ns *ns, int k)
{
    switch (k) {
    case NS_SETTING_COPY_RATE:
        return ns->cfg.copy_rate ? ns->cfg.copy_rate / NS_SET_MB : settings[k].def;
    case NS_SETTING_TASK_CAP: return ns->cfg.task_cap ? ns->cfg.task_cap : settings[k].def;
    case NS_SETTING_HB_TIMEOUT:
        return ns->cfg.hb_timeout_ms ? ns->cfg.hb_timeout_ms : settings[k].def;
    case NS_SETTING_COMPACT_PCT:
        return ns->cfg.compact_pct ? ns->cfg.compact_pct : settings[k].def;
    default: break;
    }
    if (k < 0 || k >= NS_SETTING_COUNT)
        return 0;
    return ns->meta.setting_set & (1u << k) ? ns->meta.setting[k] : settings[k].def;
}

void ns_settings_apply(struct ns *ns, int k, uint64_t v)
{
    switch (k) {
    case NS_SETTING_COPY_RATE: ns->cfg.copy_rate = v * NS_SET_MB; break;
    case NS_SETTING_TASK_CAP: ns->cfg.task_cap = (uint32_t)v; break;
    case NS_SETTING_HB_TIMEOUT: ns->cfg.hb_timeout_ms = v; break;
    case NS_SETTING_COMPACT_PCT: ns->cfg.compact_pct = (uint32_t)v; break;
    default: break; /* read with ns_setting() by whoever uses it */
    }
    ns->plan.kick = 1;
}

void ns_settings_load(struct ns *ns)
{
    for (int k = 0; k < NS_SETTING_COUNT; k++) {
        if (!(ns->meta.setting_set & (1u << k)))
            continue;
        uint64_t was = ns_setting(ns, k), v = ns->meta.setting[k];
        ns_settings_apply(ns, k, v);
        if (was != v && settings[k].applied)
            log_info("setting %s = %" PRIu64 " %s from %s (the command line says %" PRIu64 ")",
                     settings[k].name, v, settings[k].unit, NS_META_FILE, was);
    }
}

uint64_t ns_settings_scrub_rate(const struct ns *ns)
{
    if (!(ns->meta.setting_set & (1u << NS_SETTING_SCRUB_RATE)))
        return 0;
    return ns->meta.setting[NS_SETTING_SCRUB_RATE] * NS_SET_MB;
}

uint32_t ns_settings_task_cap(const struct ns *ns)
{
    return ns->cfg.task_cap ? ns->cfg.task_cap : NS_DEFAULT_TASK_CAP;
}

uint64_t ns_settings_copy_rate(const struct ns *ns)
{
    return ns->cfg.copy_rate ? ns->cfg.copy_rate : NS_DEFAULT_COPY_RATE;
}

int ns_settings_ec(const struct ns *ns, unsigned *k, unsigned *m)
{
    uint64_t v = ns_setting(ns, NS_SETTING_EC);
    if (v == 0 || ns_setting_check(NS_SETTING_EC, v) != 0)
        return 0;
    *k = (unsigned)(v / 100);
    *m = (unsigned)(v % 100);
    return 1;
}

uint32_t ns_settings_compact_pct(const struct ns *ns)
{
    return ns->cfg.compact_pct ? ns->cfg.compact_pct : NS_DEFAULT_COMPACT_PCT;
}
