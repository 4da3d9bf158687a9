/* ns_admin.c - the admin requests of the nameserver (docs/operations.md),
 * used by ds-admin: the read-only LIST_BLOCKS, BLOCK_INFO and SERVER_RATES,
 * and the operator's changes CANCEL_TASK, READONLY, SETTINGS / SET_SETTING
 * (the settings' table and values in force are ns_settings.c's).
 *
 * Answers are built from stack/heap arrays whose strings are borrowed from
 * the registry or static tables, so nothing but the arrays is freed. A
 * LIST_BLOCKS answer is capped at NS_ADMIN_LIST_MAX blocks (paging with
 * after_id) so one answer stays far below the frame limit. A change is
 * persisted (ns.meta, fs_write_atomic) before it is applied and answered;
 * when the save fails nothing changes and the error is the answer.
 *
 * Requests arrive unpacked (ns_rpc.c unpacks, checks and frees every frame).
 * Calls the map, the registry, the pool's writable rule, ns_meta.c (marks),
 * ns_settings.c and the planner (ns_plan_cancel); answers on the conn. */
#include "nameserver/ns_admin.h"
#include "nameserver/ns_ec.h"

#include "net/conn.h"
#include "base/err.h"
#include "base/log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

const char *ns_admin_block_state(const struct ns *ns, const struct ns_block *b)
{
    if (b->sealed)
        return NS_STATE_SEALED;
    return ns_block_writable(ns, b) ? NS_STATE_WRITABLE : NS_STATE_OPEN;
}

const char *ns_admin_block_health(const struct ns *ns, const struct ns_block *b)
{
    unsigned up = ns_block_up_reps(ns, b);
    if (up == 0)
        return NS_HEALTH_LOST;
    return ns_block_good_reps(ns, b) < ns->meta.replicas ? NS_HEALTH_UNDER : NS_HEALTH_OK;
}

void ns_admin_totals(const struct ns *ns, struct ns_admin_totals *t)
{
    memset(t, 0, sizeof(*t));
    for (size_t i = 0; i < ns->blocks.cap; i++) {
        const struct ns_block *b = &ns->blocks.slots[i];
        if (!b->id)
            continue;
        unsigned up = ns_block_up_reps(ns, b);
        t->total++;
        if (b->sealed)
            t->sealed++;
        else if (ns_block_writable(ns, b))
            t->writable++;
        else
            t->open++;
        if (up == 0)
            t->lost++;
        else if (ns_block_good_reps(ns, b) < ns->meta.replicas)
            t->under_replicated++;
        t->bytes += b->size;
        t->files += b->file_count;
        t->deleted_bytes += b->deleted_bytes;
    }
}

/* Storage for one AdminBlock answer: the message, its replicas, pointers. */
struct block_msg {
    Imgstore__AdminBlock m;
    Imgstore__AdminReplica reps[NS_BLOCK_SLOTS];
    Imgstore__AdminReplica *rp[NS_BLOCK_SLOTS];
};

/* Fills bm from b, primary first; strings are borrowed from ns. */
static void fill_block(const struct ns *ns, const struct ns_block *b, struct block_msg *bm)
{
    imgstore__admin_block__init(&bm->m);
    bm->m.block_id = b->id;
    bm->m.size = b->size;
    bm->m.file_count = b->file_count;
    bm->m.deleted_bytes = b->deleted_bytes;
    bm->m.state = (char *)ns_admin_block_state(ns, b);
    bm->m.health = (char *)ns_admin_block_health(ns, b);
    bm->m.up_replicas = ns_block_up_reps(ns, b);
    struct ns_server *hs[NS_BLOCK_SLOTS];
    unsigned slot[NS_BLOCK_SLOTS], n = ns_block_holders(ns, b, hs, slot);
    for (unsigned k = 0; k < n; k++) {
        Imgstore__AdminReplica *r = &bm->reps[k];
        imgstore__admin_replica__init(r);
        r->server_id = hs[k]->id;
        r->addr = hs[k]->addr;
        r->http_addr = hs[k]->http_addr;
        r->up = hs[k]->up;
        r->primary = b->primary == slot[k];
        bm->rp[k] = r;
    }
    bm->m.n_replicas = n;
    bm->m.replicas = bm->rp;
}

static void reply_err(struct conn *c, const struct frame_header *h, int err)
{
    conn_reply(c, h, err, NULL, NULL, 0, NULL);
}

static int valid_state(const char *s)
{
    return strcmp(s, NS_STATE_WRITABLE) == 0 || strcmp(s, NS_STATE_SEALED) == 0 ||
           strcmp(s, NS_STATE_OPEN) == 0;
}

/* Collects into *ids (malloc'd) the ids of blocks matching q, sorted. */
static int match_blocks(const struct ns *ns, const Imgstore__AdminListBlocks *q, int sidx,
                        uint64_t **ids, size_t *n)
{
    *ids = malloc((ns->blocks.count + 1) * sizeof(**ids));
    *n = 0;
    if (!*ids)
        return -ENOMEM;
    for (size_t i = 0; i < ns->blocks.cap; i++) {
        const struct ns_block *b = &ns->blocks.slots[i];
        if (!b->id || b->id <= q->after_id)
            continue;
        if (sidx >= 0 && ns_block_find_rep(b, (uint16_t)sidx) < 0)
            continue;
        if (q->state && *q->state && strcmp(q->state, ns_admin_block_state(ns, b)) != 0)
            continue;
        if (q->under_replicated && ns_block_good_reps(ns, b) >= ns->meta.replicas)
            continue;
        (*ids)[(*n)++] = b->id;
    }
    if (*n > 1)
        qsort(*ids, *n, sizeof(**ids), ns_cmp_u64);
    return 0;
}

static void handle_list(struct ns *ns, struct conn *c, const struct frame_header *h,
        const Imgstore__AdminListBlocks *q)
{
    uint64_t *ids = NULL;
    struct block_msg *bms = NULL;
    Imgstore__AdminBlock **bp = NULL;
    size_t n = 0;
    int rc = 0, sidx = -1;
    if (q->server_id && *q->server_id) {
        const struct ns_server *s = ns_registry_find(ns, q->server_id);
        if (!s) {
            rc = IMG_ENOTFOUND;
            goto out;
        }
        sidx = s->idx;
    }
    if (q->state && *q->state && !valid_state(q->state)) {
        rc = IMG_EINVAL;
        goto out;
    }
    if ((rc = match_blocks(ns, q, sidx, &ids, &n)) != 0)
        goto out;
    size_t limit = q->limit && q->limit < NS_ADMIN_LIST_MAX ? q->limit : NS_ADMIN_LIST_MAX;
    size_t shown = n < limit ? n : limit;
    bms = calloc(shown + 1, sizeof(*bms));
    bp = calloc(shown + 1, sizeof(*bp));
    if (!bms || !bp) {
        rc = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < shown; i++) {
        fill_block(ns, ns_blocks_get(&ns->blocks, ids[i]), &bms[i]);
        bp[i] = &bms[i].m;
    }
    Imgstore__AdminListBlocksResp r = IMGSTORE__ADMIN_LIST_BLOCKS_RESP__INIT;
    r.n_blocks = shown;
    r.blocks = bp;
    r.matched = n;
    r.replication = ns->meta.replicas;
    conn_reply(c, h, 0, &r.base, NULL, 0, NULL);
out:
    if (rc)
        reply_err(c, h, rc);
    free(ids);
    free(bms);
    free(bp);
}

static void handle_info(struct ns *ns, struct conn *c, const struct frame_header *h,
        const Imgstore__AdminBlockInfo *q)
{
    const struct ns_block *b = ns_blocks_get(&ns->blocks, q->block_id);
    const struct ns_stripe *st = ns_ec_get(ns, q->block_id);
    if (!b && !st) {
        reply_err(c, h, IMG_ENOTFOUND);
        return;
    }
    struct block_msg bm;
    static char sealed[] = NS_STATE_SEALED, ok[] = "ok";
    if (b) {
        fill_block(ns, b, &bm);
    } else { /* encoded, its replicated copies gone */
        imgstore__admin_block__init(&bm.m);
        bm.m.block_id = st->block_id;
        bm.m.size = st->block_len;
        bm.m.file_count = st->files;
        bm.m.state = sealed;
        bm.m.health = ok;
    }
    Imgstore__AdminShard sh[NS_EC_MAX_SHARDS], *sp[NS_EC_MAX_SHARDS];
    ns_ec_fill_admin(ns, q->block_id, &bm.m, sh, sp);
    Imgstore__AdminBlockInfoResp r = IMGSTORE__ADMIN_BLOCK_INFO_RESP__INIT;
    r.block = &bm.m;
    r.replication = ns->meta.replicas;
    conn_reply(c, h, 0, &r.base, NULL, 0, NULL);
}

static void handle_rates(struct ns *ns, struct conn *c, const struct frame_header *h,
        const Imgstore__AdminServerRates *q)
{
    Imgstore__AdminServerRate *rs = calloc(ns->nservers + 1, sizeof(*rs));
    Imgstore__AdminServerRate **rp = calloc(ns->nservers + 1, sizeof(*rp));
    if (!rs || !rp) {
        reply_err(c, h, -ENOMEM);
        goto out;
    }
    for (size_t i = 0; i < ns->nservers; i++) {
        const struct ns_server *s = ns->servers[i];
        imgstore__admin_server_rate__init(&rs[i]);
        rs[i].server_id = (char *)s->id;
        rs[i].reads_per_s = s->up ? s->reads_per_s : 0;
        rs[i].writes_per_s = s->up ? s->writes_per_s : 0;
        rp[i] = &rs[i];
    }
    Imgstore__AdminServerRatesResp r = IMGSTORE__ADMIN_SERVER_RATES_RESP__INIT;
    r.n_rates = ns->nservers;
    r.rates = rp;
    conn_reply(c, h, 0, &r.base, NULL, 0, NULL);
out:
    free(rs);
    free(rp);
}

static uint64_t now_of(const struct ns *ns)
{
    return ns->loop ? uv_now(ns->loop) : 0;
}

static void handle_cancel(struct ns *ns, struct conn *c, const struct frame_header *h,
        const Imgstore__AdminCancelTask *q)
{
    int rc = ns_plan_cancel(ns, q->task_id, now_of(ns));
    Imgstore__AdminCancelTaskResp r = IMGSTORE__ADMIN_CANCEL_TASK_RESP__INIT;
    conn_reply(c, h, rc, rc ? NULL : &r.base, NULL, 0, NULL);
}

static void handle_readonly(struct ns *ns, struct conn *c, const struct frame_header *h,
        const Imgstore__AdminReadonly *q)
{
    struct ns_server *s = q->server_id ? ns_registry_find(ns, q->server_id) : NULL;
    int on = q->readonly, rc = s ? 0 : IMG_ENOTFOUND;
    if (rc == 0 && !ns_meta_is_readonly(&ns->meta, s->id) != !on) {
        if ((rc = ns_meta_set_readonly(&ns->meta, s->id, on)) == 0)
            log_info("server %s %s read-only by an operator", s->id, on ? "made" : "no longer");
    }
    if (rc) {
        reply_err(c, h, rc);
        return;
    }
    s->readonly = s->ds_readonly || on;
    Imgstore__AdminReadonlyResp r = IMGSTORE__ADMIN_READONLY_RESP__INIT;
    r.readonly = on;
    r.server_readonly = s->ds_readonly;
    conn_reply(c, h, 0, &r.base, NULL, 0, NULL);
}

/* Fills one AdminSetting (strings borrowed from the static table). */
static void fill_setting(const struct ns *ns, int k, Imgstore__AdminSetting *m)
{
    imgstore__admin_setting__init(m);
    const struct ns_setting_def *d = ns_setting_def(k);
    m->key = (char *)d->name;
    m->value = ns_setting(ns, k);
    m->default_value = d->def;
    m->min = d->min;
    m->max = d->max;
    m->unit = (char *)d->unit;
    m->persisted = (ns->meta.setting_set & (1u << k)) != 0;
    m->applied = d->applied;
    m->help = (char *)d->help;
}

static void handle_settings(struct ns *ns, struct conn *c, const struct frame_header *h,
        const Imgstore__AdminSettings *q)
{
    Imgstore__AdminSetting ms[NS_SETTING_COUNT], *mp[NS_SETTING_COUNT];
    for (int k = 0; k < NS_SETTING_COUNT; k++) {
        fill_setting(ns, k, &ms[k]);
        mp[k] = &ms[k];
    }
    Imgstore__AdminSettingsResp r = IMGSTORE__ADMIN_SETTINGS_RESP__INIT;
    r.n_settings = NS_SETTING_COUNT;
    r.settings = mp;
    conn_reply(c, h, 0, &r.base, NULL, 0, NULL);
}

static void handle_set(struct ns *ns, struct conn *c, const struct frame_header *h,
        const Imgstore__AdminSetSetting *q)
{
    int k = ns_setting_find(q->key);
    uint64_t v = q->value;
    int rc = k < 0 ? IMG_ENOTFOUND : ns_setting_check(k, v);
    if (rc == 0)
        rc = ns_meta_set_setting(&ns->meta, k, v);
    if (rc) {
        reply_err(c, h, rc);
        return;
    }
    uint64_t was = ns_setting(ns, k);
    const struct ns_setting_def *d = ns_setting_def(k);
    ns_settings_apply(ns, k, v);
    log_info("setting %s = %" PRIu64 " %s (was %" PRIu64 ")%s", d->name, v, d->unit, was,
             d->applied ? "" : "; stored, not used yet");
    Imgstore__AdminSetting m;
    fill_setting(ns, k, &m);
    Imgstore__AdminSetSettingResp r = IMGSTORE__ADMIN_SET_SETTING_RESP__INIT;
    r.setting = &m;
    conn_reply(c, h, 0, &r.base, NULL, 0, NULL);
}

int ns_admin_handle(struct ns *ns, struct conn *c, const struct frame_header *h,
                    const ProtobufCMessage *m)
{
    switch (h->type) {
    case FT_ADMIN_LIST_BLOCKS: handle_list(ns, c, h, (const Imgstore__AdminListBlocks *)m); break;
    case FT_ADMIN_BLOCK_INFO: handle_info(ns, c, h, (const Imgstore__AdminBlockInfo *)m); break;
    case FT_ADMIN_SERVER_RATES:
        handle_rates(ns, c, h, (const Imgstore__AdminServerRates *)m);
        break;
    case FT_ADMIN_CANCEL_TASK: handle_cancel(ns, c, h, (const Imgstore__AdminCancelTask *)m); break;
    case FT_ADMIN_READONLY: handle_readonly(ns, c, h, (const Imgstore__AdminReadonly *)m); break;
    case FT_ADMIN_SETTINGS: handle_settings(ns, c, h, (const Imgstore__AdminSettings *)m); break;
    case FT_ADMIN_SET_SETTING: handle_set(ns, c, h, (const Imgstore__AdminSetSetting *)m); break;
    default: return 0;
    }
    return 1;
}
