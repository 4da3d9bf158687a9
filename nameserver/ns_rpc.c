/* ns_rpc.c - the nameserver on the wire: the listener, one struct ns_peer per
 * accepted connection, the frame handlers and the liveness/planner timer.
 * (Signals are main.c's: it calls ns_stop.)
 *
 * The one --listen port serves clients and dataserver sessions alike; a
 * connection becomes a session on its first valid HEARTBEAT. Every request
 * frame is unpacked here (on_frame: request_desc, then dispatch) and freed
 * after its handler returns; the handlers here and in the other modules
 * receive the unpacked message. A head that does not unpack, or a body,
 * answers IMG_EPROTO, an unknown type IMG_EBADTYPE.
 *
 * Authentication (docs/security.md): AUTH_HELLO / AUTH are served by
 * net/auth.c on the connection's struct auth_sess; the request table below
 * gives each type its minimum role (reads and read-only views open, writes
 * writer, admin changes operator, HEARTBEAT member), checked against the
 * key's current role in the keys file, re-read every second (on_tick).
 *
 * A heartbeat: ns_hb_validate, ns_registry_heartbeat, ns_hb_apply_blocks
 * (the block map, then the planner, bad list and pool), ns_plan_progress,
 * ns_safe_mode_check. The top of the nameserver with main.c: calls every
 * module.
 *
 * High availability (--etcd, ns_etcd.c): while ns_leads() is 0 (a standby,
 * or a leader whose lease ran out) a HEARTBEAT's block report goes into the
 * block map alone and is answered IMG_ENOTLEADER (warm standby), a LOOKUP is
 * answered from that map, every other request past the handshake is
 * answered IMG_ENOTLEADER with a NotLeader head naming the leader, the
 * timer runs no policy (no pool, no planner), and a leader that stops
 * leading closes every dataserver session (ns_rpc_demoted), so no command
 * can leave it; the dataservers and clients move to the leader. */
#include "nameserver/ns.h"
#include "nameserver/ns_admin.h"
#include "nameserver/ns_delnote.h"
#include "nameserver/ns_ec.h"
#include "nameserver/ns_ecdj.h"
#include "nameserver/ns_etcd.h"
#include "nameserver/ns_ops.h"

#include "net/auth.h"
#include "net/conn.h"
#include "base/err.h"
#include "base/list.h"
#include "base/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* One accepted connection; freed in its close callback. */
struct ns_peer {
    struct ns_peer *prev, *next;
    struct ns *ns;
    struct conn *c;
    struct ns_server *srv; /* the dataserver this session belongs to, or NULL */
    struct auth_sess auth; /* the handshake's state and key name */
};

/* Fills reps/ptrs with b's replicas, primary first; only up ones when
 * `only_up`. Strings are borrowed from the registry. Returns the count. */
static size_t fill_replicas(const struct ns *ns, const struct ns_block *b, int only_up,
                            Imgstore__Replica reps[NS_BLOCK_SLOTS],
                            Imgstore__Replica *ptrs[NS_BLOCK_SLOTS])
{
    struct ns_server *hs[NS_BLOCK_SLOTS];
    unsigned slot[NS_BLOCK_SLOTS], nh = ns_block_holders(ns, b, hs, slot);
    size_t n = 0;
    for (unsigned k = 0; k < nh; k++) {
        unsigned i = slot[k];
        struct ns_server *s = hs[k];
        if (only_up && !s->up)
            continue;
        /* A sealed block's copies outside its replica set may lack
         * tombstones (stale, being caught up or dropped): not listed. */
        if (b->sealed && b->inset && b->primary != i && !(b->inset & (1u << i)))
            continue;
        if (ns_block_is_unready(b, i)) /* of an older set, or joining it */
            continue;
        ns_plan_fill_replica(&reps[n], s);
        ptrs[n] = &reps[n];
        n++;
    }
    return n;
}

static void reply_err(struct conn *c, const struct frame_header *h, int err)
{
    conn_reply(c, h, err, NULL, NULL, 0, NULL);
}

/* IMG_ENOTLEADER, naming the leader when known. */
static void reply_not_leader(struct ns *ns, struct conn *c, const struct frame_header *h)
{
    Imgstore__NotLeader nl = IMGSTORE__NOT_LEADER__INIT;
    nl.leader_addr = (char *)ns_etcd_leader(ns);
    conn_reply(c, h, IMG_ENOTLEADER, &nl.base, NULL, 0, NULL);
}

void ns_rpc_demoted(struct ns *ns)
{
    for (struct ns_peer *p = ns->peers; p; p = p->next)
        if (p->srv)
            conn_close(p->c);
}

/* " (N more refusals not logged)" when refusal WARNs were dropped
 * (auth_log_ok), else "". */
static const char *also_text(unsigned long more, char *buf, size_t n)
{
    if (!more)
        return "";
    snprintf(buf, n, " (%lu more refusals not logged)", more);
    return buf;
}

/* Membership binding (docs/security.md): with authentication on, a server
 * id belongs to the member key of its first authenticated heartbeat
 * (persisted in ns.meta); the session must have claimed that id in its
 * handshake. Returns 0 or IMG_EIDBOUND (logged at WARN with the peer). */
static int check_binding(struct ns_peer *p, const Imgstore__Heartbeat *hb)
{
    struct ns *ns = p->ns;
    if (!ns->keys)
        return 0;
    unsigned long more = 0;
    char also[64];
    if (strcmp(p->auth.server_id, hb->server_id) != 0) {
        if (auth_log_ok(&more))
            log_warn("heartbeat from %s for server %s refused: its handshake claimed server "
                     "'%s'%s",
                     conn_peer(p->c), hb->server_id, p->auth.server_id,
                     also_text(more, also, sizeof(also)));
        return IMG_EIDBOUND;
    }
    const char *bound = ns_meta_bound_key(&ns->meta, hb->server_id);
    if (bound && strcmp(bound, p->auth.key_name) != 0) {
        if (auth_log_ok(&more))
            log_warn("heartbeat from %s for server %s refused: that id is bound to member key "
                     "'%s', the session authenticated with '%s'%s",
                     conn_peer(p->c), hb->server_id, bound, p->auth.key_name,
                     also_text(more, also, sizeof(also)));
        return IMG_EIDBOUND;
    }
    if (!bound && !ns_leads(ns))
        return 0; /* a standby checks bindings, only the leader makes them */
    if (!bound) {
        int rc = ns_meta_bind_key(&ns->meta, hb->server_id, p->auth.key_name);
        if (rc)
            return rc;
        log_info("server %s bound to member key '%s'", hb->server_id, p->auth.key_name);
    }
    return 0;
}

static void handle_heartbeat(struct ns_peer *p, const struct frame_header *h,
                             const Imgstore__Heartbeat *hb)
{
    struct ns *ns = p->ns;
    int rc = ns_hb_validate(hb);
    if (rc) {
        log_warn("invalid heartbeat from %s: bad server id, address or disk count",
                 conn_peer(p->c));
        goto err;
    }
    if ((rc = check_binding(p, hb)) != 0)
        goto err;
    if (p->srv && strcmp(p->srv->id, hb->server_id) != 0) {
        log_warn("session of %s from %s claims to be %s: refused", p->srv->id, conn_peer(p->c),
                 hb->server_id);
        rc = IMG_EINVAL;
        goto err;
    }
    struct ns_server *s = ns_registry_find(ns, hb->server_id);
    if (s && s->conn && s->conn != p->c) {
        struct conn *old = s->conn;
        log_info("server %s: new session from %s replaces the old one", s->id, conn_peer(p->c));
        s->conn = NULL;
        conn_close(old);
    }
    uint64_t now = uv_now(ns->loop);
    if ((rc = ns_registry_heartbeat(ns, hb, p->c, now, &s)) != 0)
        goto err;
    p->srv = s;
    size_t skipped = 0;
    if (!ns_leads(ns)) {
        /* A warm standby: the report goes into the block map alone (no
         * planner, pool or commands); the answer says who leads. */
        struct ns_block_changes ch = {0};
        rc = ns_blocks_apply_report(ns, s, hb, &skipped, &ch);
        ns_block_changes_free(&ch);
        ns_ec_apply_report(ns, s, hb);
        if (rc) {
            log_error("server %s: cannot apply block report: %s", s->id, img_strerror(rc));
            goto err;
        }
        reply_not_leader(ns, p->c, h);
        return;
    }
    if (hb->full_report)
        s->term_reported = 1;
    rc = ns_hb_apply_blocks(ns, s, hb, &skipped);
    skipped += ns_ec_apply_report(ns, s, hb);
    ns_ecdj_report(ns, s, hb); /* shards that may lack journaled tombstones: before the answer */
    if (skipped)
        log_warn("server %s reported %zu invalid block entries (ignored)", s->id, skipped);
    if (rc) {
        log_error("server %s: cannot apply block report: %s", s->id, img_strerror(rc));
        goto err;
    }
    ns_plan_progress(ns, s, hb);
    ns_safe_mode_check(ns, now);
    Imgstore__HeartbeatResp resp = IMGSTORE__HEARTBEAT_RESP__INIT;
    resp.cluster_id = ns->meta.cluster_id;
    resp.block_size = ns->meta.block_size;
    resp.replicas = ns->meta.replicas;
    /* Settling (a new term): its view check waits too (ns_settle_check). */
    resp.safe_mode = ns->safe_mode || ns->settling;
    resp.heartbeat_ms = NS_HEARTBEAT_MS;
    resp.heartbeat_timeout_ms = (uint32_t)ns->cfg.hb_timeout_ms;
    resp.scrub_rate = ns_settings_scrub_rate(ns);
    resp.copy_rate = ns_settings_copy_rate(ns);
    resp.record_format = ns_registry_record_format(ns);
    resp.epoch = ns_etcd_epoch(ns);
    conn_reply(p->c, h, 0, &resp.base, NULL, 0, NULL);
    return;
err:
    reply_err(p->c, h, rc);
}

static void handle_alloc(struct ns_peer *p, const struct frame_header *h,
                         const Imgstore__AllocWrite *aw)
{
    struct ns *ns = p->ns;
    size_t want = aw->count == 0 ? 1 : (aw->count > NS_ALLOC_MAX ? NS_ALLOC_MAX : aw->count);
    size_t nexcl = aw->n_exclude > NS_ALLOC_EXCLUDE_MAX ? NS_ALLOC_EXCLUDE_MAX : aw->n_exclude;
    uint64_t ids[NS_ALLOC_MAX];
    size_t n = ns_pool_pick(ns, aw->exclude, nexcl, ids, want);
    if (n == 0) {
        /* A new term's pool fills as the servers report to us as leader:
         * a wait the clients retry, not a lack of blocks. */
        reply_err(p->c, h, ns->settling ? IMG_ESAFEMODE : IMG_ENOBLOCK);
        ns_pool_plan(ns);
        return;
    }
    Imgstore__WritableBlock wb[NS_ALLOC_MAX], *wbp[NS_ALLOC_MAX];
    Imgstore__Replica reps[NS_ALLOC_MAX][NS_BLOCK_SLOTS];
    Imgstore__Replica *rp[NS_ALLOC_MAX][NS_BLOCK_SLOTS];
    for (size_t i = 0; i < n; i++) {
        const struct ns_block *b = ns_blocks_get(&ns->blocks, ids[i]);
        imgstore__writable_block__init(&wb[i]);
        wb[i].block_id = ids[i];
        wb[i].n_replicas = b ? fill_replicas(ns, b, 1, reps[i], rp[i]) : 0;
        wb[i].replicas = rp[i];
        wbp[i] = &wb[i];
    }
    Imgstore__AllocWriteResp resp = IMGSTORE__ALLOC_WRITE_RESP__INIT;
    resp.n_blocks = n;
    resp.blocks = wbp;
    conn_reply(p->c, h, 0, &resp.base, NULL, 0, NULL);
}

static void handle_lookup(struct ns_peer *p, const struct frame_header *h,
                          const Imgstore__Lookup *lk)
{
    struct ns *ns = p->ns;
    int rc = 0;
    size_t n = lk->n_block_ids;
    Imgstore__BlockLocation *locs = NULL, **lp = NULL;
    Imgstore__Replica(*reps)[NS_BLOCK_SLOTS] = NULL;
    Imgstore__Replica *(*rp)[NS_BLOCK_SLOTS] = NULL;
    struct ns_ec_loc *ecl = NULL;
    if (n > NS_LOOKUP_MAX) {
        rc = IMG_EINVAL;
        goto out;
    }
    locs = calloc(n + 1, sizeof(*locs));
    lp = calloc(n + 1, sizeof(*lp));
    reps = calloc(n + 1, sizeof(*reps));
    rp = calloc(n + 1, sizeof(*rp));
    ecl = calloc(n + 1, sizeof(*ecl));
    if (!locs || !lp || !reps || !rp || !ecl) {
        rc = -ENOMEM;
        goto out;
    }
    size_t found = 0, nunavail = 0;
    uint64_t *unavail = calloc(n + 1, sizeof(*unavail));
    if (!unavail) {
        rc = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        const struct ns_block *b = ns_blocks_get(&ns->blocks, lk->block_ids[i]);
        size_t nr = b ? fill_replicas(ns, b, 1, reps[found], rp[found]) : 0;
        size_t ns_ = ns_ec_fill_loc(ns, lk->block_ids[i], &ecl[found]);
        /* Erasure-coded, its replicated copies gone or superseded (stale ones
         * may lack deletes made on the stripe: never listed then). */
        if (ns_ > 0 && (nr == 0 || ns_ec_supersedes(ns, lk->block_ids[i]))) {
            imgstore__block_location__init(&locs[found]);
            locs[found].block_id = lk->block_ids[i];
            locs[found].sealed = 1;
            ns_ec_put_loc(&ecl[found], &locs[found]);
            lp[found] = &locs[found];
            found++;
            continue;
        }
        if (nr == 0) {
            /* Known without a live holder, or unknown while holders may
             * still report (safe mode: an id below the reserve may live on
             * a server that has not reported yet): not final. */
            if (b || ns_ec_get(ns, lk->block_ids[i]) || !ns_leads(ns) ||
                (ns->safe_mode && lk->block_ids[i] < ns->meta.block_id_reserved))
                unavail[nunavail++] = lk->block_ids[i];
            continue;
        }
        imgstore__block_location__init(&locs[found]);
        locs[found].block_id = b->id;
        locs[found].n_replicas = nr;
        locs[found].replicas = rp[found];
        locs[found].sealed = b->sealed;
        if (ns_ > 0)
            ns_ec_put_loc(&ecl[found], &locs[found]);
        lp[found] = &locs[found];
        found++;
    }
    Imgstore__LookupResp resp = IMGSTORE__LOOKUP_RESP__INIT;
    resp.n_locations = found;
    resp.locations = lp;
    resp.n_unavailable = nunavail;
    resp.unavailable = unavail;
    conn_reply(p->c, h, 0, &resp.base, NULL, 0, NULL);
    free(unavail);
out:
    if (rc)
        reply_err(p->c, h, rc);
    free(locs);
    free(lp);
    free(reps);
    free(rp);
    free(ecl);
}

/* Bytes of the replicated copies on disk (every holder's reported size) and
 * logical bytes (each block once, its longest copy; an encoded block's
 * length counted once even while its copies are kept). */
static void storage_bytes(const struct ns *ns, uint64_t *raw, uint64_t *logical)
{
    *raw = *logical = 0;
    for (size_t i = 0; i < ns->blocks.cap; i++) {
        const struct ns_block *b = &ns->blocks.slots[i];
        if (!b->id)
            continue;
        for (unsigned j = 0; j < b->nrep; j++)
            *raw += b->rsize[j];
        *logical += b->size;
    }
    const struct ns_ec *e = ns->ec;
    for (size_t i = 0; e && i < e->n; i++)
        if (!ns_blocks_get(&ns->blocks, e->v[i].block_id))
            *logical += e->v[i].block_len;
}

static void handle_status(struct ns_peer *p, const struct frame_header *h)
{
    struct ns *ns = p->ns;
    Imgstore__ServerStatus *ss = calloc(ns->nservers + 1, sizeof(*ss));
    Imgstore__ServerStatus **sp = calloc(ns->nservers + 1, sizeof(*sp));
    if (!ss || !sp) {
        reply_err(p->c, h, -ENOMEM);
        goto out;
    }
    uint64_t now = uv_now(ns->loop);
    static char up_text[] = "up", down_text[] = "down";
    for (size_t i = 0; i < ns->nservers; i++) {
        struct ns_server *s = ns->servers[i];
        imgstore__server_status__init(&ss[i]);
        ss[i].server_id = s->id;
        ss[i].addr = s->addr;
        ss[i].http_addr = s->http_addr;
        ss[i].state = s->up ? up_text : down_text;
        ss[i].capacity = s->capacity;
        ss[i].used = s->used;
        ss[i].free = s->free;
        ss[i].blocks = s->nblocks;
        ss[i].disks = s->disks;
        ss[i].failed_disks = s->failed_disks;
        ss[i].last_heartbeat_ms_ago = now >= s->last_hb_ms ? now - s->last_hb_ms : 0;
        ss[i].reads = s->reads;
        ss[i].writes = s->writes;
        ss[i].readonly = s->readonly;
        ss[i].draining = s->draining;
        sp[i] = &ss[i];
    }
    Imgstore__ClusterStatusResp r = IMGSTORE__CLUSTER_STATUS_RESP__INIT;
    r.cluster_id = ns->meta.cluster_id;
    r.safe_mode = ns->safe_mode;
    r.replicas = ns->meta.replicas;
    r.block_size = ns->meta.block_size;
    r.n_servers = ns->nservers;
    r.servers = sp;
    struct ns_admin_totals t; /* one pass over the map */
    ns_admin_totals(ns, &t);
    r.blocks_total = t.total;
    r.blocks_sealed = t.sealed;
    r.blocks_writable = t.writable;
    r.blocks_lost = t.lost;
    r.blocks_under_replicated = t.under_replicated;
    r.block_id_high_water = ns->meta.next_id;
    ns_ec_bytes(ns, &r.ec_raw_bytes, &r.ec_logical_bytes, &r.ec_stripes);
    storage_bytes(ns, &r.raw_bytes, &r.logical_bytes);
    r.raw_bytes += r.ec_raw_bytes;
    r.epoch = ns_etcd_epoch(ns);
    r.leading_ms = ns_etcd_leading_ms(ns);
    conn_reply(p->c, h, 0, &r.base, NULL, 0, NULL);
out:
    free(ss);
    free(sp);
}

/* Each request the nameserver serves: its head message and the minimum
 * role of the key the connection authenticated with. */
struct request_kind {
    unsigned type;
    const ProtobufCMessageDescriptor *desc;
    enum auth_role need;
};

static const struct request_kind kinds[] = {
    {FT_HEARTBEAT, &imgstore__heartbeat__descriptor, AUTH_MEMBER},
    {FT_NOTE_DELETE, &imgstore__note_delete__descriptor, AUTH_MEMBER},
    {FT_ALLOC_WRITE, &imgstore__alloc_write__descriptor, AUTH_WRITER},
    {FT_LOOKUP, &imgstore__lookup__descriptor, AUTH_NONE},
    {FT_CLUSTER_STATUS, &imgstore__cluster_status__descriptor, AUTH_NONE},
    {FT_DRAIN, &imgstore__drain__descriptor, AUTH_OPERATOR},
    {FT_LIST_TASKS, &imgstore__list_tasks__descriptor, AUTH_NONE},
    {FT_ADMIN_LIST_BLOCKS, &imgstore__admin_list_blocks__descriptor, AUTH_NONE},
    {FT_ADMIN_BLOCK_INFO, &imgstore__admin_block_info__descriptor, AUTH_NONE},
    {FT_ADMIN_SERVER_RATES, &imgstore__admin_server_rates__descriptor, AUTH_NONE},
    {FT_ADMIN_CANCEL_TASK, &imgstore__admin_cancel_task__descriptor, AUTH_OPERATOR},
    {FT_ADMIN_READONLY, &imgstore__admin_readonly__descriptor, AUTH_OPERATOR},
    {FT_ADMIN_SETTINGS, &imgstore__admin_settings__descriptor, AUTH_NONE},
    {FT_ADMIN_SET_SETTING, &imgstore__admin_set_setting__descriptor, AUTH_OPERATOR},
    {FT_ADMIN_REBALANCE, &imgstore__admin_rebalance__descriptor, AUTH_OPERATOR},
    {FT_ADMIN_COMPACT, &imgstore__admin_compact__descriptor, AUTH_OPERATOR},
    {FT_ADMIN_REPAIR, &imgstore__admin_repair__descriptor, AUTH_OPERATOR},
    {FT_ADMIN_STEP_DOWN, &imgstore__admin_step_down__descriptor, AUTH_OPERATOR},
    {FT_ADMIN_EC_ENCODE, &imgstore__admin_ec_encode__descriptor, AUTH_OPERATOR},
};

static const struct request_kind *request_kind(unsigned type)
{
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        if (kinds[i].type == type)
            return &kinds[i];
    return NULL;
}

/* ADMIN_STEP_DOWN: the leader hands over (ns_etcd_step_down). */
static void handle_step_down(struct ns_peer *p, const struct frame_header *h)
{
    struct ns *ns = p->ns;
    int64_t epoch = ns_etcd_epoch(ns);
    int hold = ns_etcd_step_down(ns);
    if (hold < 0) {
        reply_err(p->c, h, hold);
        return;
    }
    Imgstore__AdminStepDownResp r = IMGSTORE__ADMIN_STEP_DOWN_RESP__INIT;
    r.addr = (char *)ns_etcd_self(ns);
    r.epoch = epoch;
    r.hold_ms = (uint32_t)hold;
    conn_reply(p->c, h, 0, &r.base, NULL, 0, NULL);
}

/* Hands the unpacked request m (of h->type's message) to its handler. */
static void dispatch(struct ns_peer *p, const struct frame_header *h, const ProtobufCMessage *m)
{
    struct ns *ns = p->ns;
    struct conn *c = p->c;
    switch (h->type) {
    case FT_HEARTBEAT: handle_heartbeat(p, h, (const Imgstore__Heartbeat *)m); break;
    case FT_ALLOC_WRITE: handle_alloc(p, h, (const Imgstore__AllocWrite *)m); break;
    case FT_LOOKUP: handle_lookup(p, h, (const Imgstore__Lookup *)m); break;
    case FT_NOTE_DELETE: ns_delnote_handle(ns, c, h, p->srv, (const Imgstore__NoteDelete *)m); break;
    case FT_CLUSTER_STATUS: handle_status(p, h); break;
    case FT_DRAIN: ns_plan_handle_drain(ns, c, h, (const Imgstore__Drain *)m); break;
    case FT_LIST_TASKS: ns_plan_handle_list(ns, c, h, (const Imgstore__ListTasks *)m); break;
    case FT_ADMIN_REBALANCE: ns_balance_handle(ns, c, h, (const Imgstore__AdminRebalance *)m); break;
    case FT_ADMIN_COMPACT: ns_ops_handle_compact(ns, c, h, (const Imgstore__AdminCompact *)m); break;
    case FT_ADMIN_REPAIR: ns_ops_handle_repair(ns, c, h, (const Imgstore__AdminRepair *)m); break;
    case FT_ADMIN_STEP_DOWN: handle_step_down(p, h); break;
    case FT_ADMIN_EC_ENCODE: ns_ec_handle_encode(ns, c, h, (const Imgstore__AdminEcEncode *)m); break;
    default: ns_admin_handle(ns, c, h, m); break; /* FT_ADMIN_LIST_BLOCKS .. SET_SETTING */
    }
}

static void on_frame(struct conn *c, const struct frame *f, void *ctx)
{
    struct ns_peer *p = ctx;
    if (!p || p->ns->stopping) {
        conn_close(c);
        return;
    }
    p->ns->requests[f->h.type & 0xff]++;
    if (f->h.body_len != 0 && f->h.type >= FT_HEARTBEAT && f->h.type <= FT_LIST_TASKS) {
        reply_err(c, &f->h, IMG_EPROTO); /* no nameserver request carries a body */
        return;
    }
    if (auth_is_handshake(f->h.type)) {
        auth_serve(&p->auth, p->ns->keys, p->ns->meta.cluster_id, c, f);
        return;
    }
    const struct request_kind *k = request_kind(f->h.type);
    if (!k) {
        reply_err(c, &f->h, IMG_EBADTYPE);
        return;
    }
    int rc = auth_sess_check(&p->auth, p->ns->keys, k->need);
    unsigned long more;
    char also[64];
    if (rc) {
        if (f->h.type == FT_HEARTBEAT && auth_log_ok(&more))
            log_warn("heartbeat from %s refused: %s%s", conn_peer(c), img_strerror(rc),
                     also_text(more, also, sizeof(also)));
        reply_err(c, &f->h, rc);
        return;
    }
    if (!ns_leads(p->ns) && f->h.type != FT_HEARTBEAT && f->h.type != FT_LOOKUP) {
        reply_not_leader(p->ns, c, &f->h); /* a standby serves reports and reads alone */
        return;
    }
    ProtobufCMessage *m =
        f->h.body_len ? NULL : protobuf_c_message_unpack(k->desc, NULL, f->h.head_len, f->head);
    if (!m) {
        reply_err(c, &f->h, IMG_EPROTO); /* a head that does not unpack, or a body */
        return;
    }
    dispatch(p, &f->h, m);
    protobuf_c_message_free_unpacked(m, NULL);
}

static void on_close(struct conn *c, void *ctx)
{
    struct ns_peer *p = ctx;
    if (!p)
        return;
    if (p->srv && p->srv->conn == c) {
        if (p->ns->stopping)
            p->srv->up = 0, p->srv->conn = NULL; /* shutting down: not news */
        else
            ns_registry_mark_down(p->ns, p->srv, "session closed");
    }
    ns_ops_conn_closed(c);
    DLIST_UNLINK(p->ns->peers, p);
    free(p);
}

/* No nameserver request carries a body (on_frame refuses them): refused
 * before the body is read, whose bytes are then dropped unkept. */
static int admit(struct conn *c, const struct frame_header *h, void *ctx)
{
    return h->body_len ? IMG_EPROTO : 0;
}

static void on_connection(uv_stream_t *server, int status)
{
    struct ns *ns = server->data;
    if (status < 0) {
        log_warn("accept: %s", uv_strerror(status));
        return;
    }
    struct ns_peer *p = calloc(1, sizeof(*p));
    /* Limits (docs/protocol.md, "Limits"): a dataserver's session
     * heartbeats every second, so it is never idle. */
    struct conn_limits lim = {
        .frame_ms = ns->cfg.frame_ms ? ns->cfg.frame_ms : CONN_FRAME_MS,
        .min_rate = CONN_MIN_RATE,
        .idle_ms = ns->cfg.idle_ms ? ns->cfg.idle_ms : CONN_IDLE_MS,
        .gate = &ns->gate,
        .admit = admit,
    };
    struct conn *c = conn_accept_limited(server, &lim, on_frame, on_close, p, NULL);
    if (!c || !p) {
        if (c)
            conn_close(c); /* on_close sees ctx NULL */
        free(p);
        return;
    }
    p->ns = ns;
    p->c = c;
    DLIST_PUSH(ns->peers, p);
    if (ns->stopping)
        conn_close(c);
}

static void on_tick(uv_timer_t *t)
{
    struct ns *ns = t->data;
    uint64_t now = uv_now(ns->loop);
    if (ns->keys && now - ns->keys_checked_ms >= NS_KEYS_CHECK_MS) {
        char err[AUTH_ERR_MAX];
        ns->keys_checked_ms = now;
        int rc = auth_keys_reload(ns->keys, err);
        if (rc == 1)
            log_info("keys file %s re-read: %zu keys", ns->keys->path, ns->keys->n);
        else if (rc < 0)
            log_error("%s", err);
    }
    ns_etcd_tick(ns);
    ns_registry_check_timeouts(ns, now);
    if (!ns_leads(ns))
        return; /* a standby plans nothing, places nothing */
    ns_safe_mode_check(ns, now);
    ns_settle_check(ns, now);
    ns_pool_plan(ns);
    ns_plan_tick(ns, now);
    ns_delnote_tick(ns, now);
}

/* Logs the address actually bound (useful with port 0). */
static void log_listening(struct ns *ns)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    char addr[CONN_ADDR_TEXT_MAX];
    if (uv_tcp_getsockname(&ns->listener, (struct sockaddr *)&ss, &len) != 0)
        ss.ss_family = AF_UNSPEC;
    conn_addr_text(&ss, addr, sizeof(addr));
    log_info("listening on %s (%s mode)", addr, ns->safe_mode ? "safe" : "normal");
}

int ns_start(struct ns *ns, uv_loop_t *loop)
{
    ns->loop = loop;
    ns->started = 1;
    uv_timer_init(loop, &ns->tick);
    ns->tick.data = ns;
    ns->listener.data = ns;
    ns->gate.max_total = ns->cfg.max_conns ? ns->cfg.max_conns : LIMITS_MAX_CONNS;
    ns->gate.max_per_addr =
        ns->cfg.max_conns_per_addr ? ns->cfg.max_conns_per_addr : LIMITS_MAX_CONNS_PER_ADDR;
    int rc = conn_listen(loop, &ns->listener, ns->cfg.listen, on_connection);
    ns->listener.data = ns; /* conn_listen initialises the handle */
    if (rc) {
        log_error("cannot listen on %s: %s", ns->cfg.listen, uv_strerror(rc));
        return rc;
    }
    uv_timer_start(&ns->tick, on_tick, NS_TICK_MS, NS_TICK_MS);
    ns_safe_mode_check(ns, uv_now(loop));
    log_listening(ns);
    if ((rc = ns_etcd_start(ns, loop, ns_rpc_demoted)) != 0) {
        log_error("cannot start the etcd client: %s", img_strerror(rc));
        return rc;
    }
    return 0;
}

static void close_if_open(uv_handle_t *h)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

void ns_stop(struct ns *ns)
{
    if (ns->stopping || !ns->started)
        return;
    ns->stopping = 1;
    ns_etcd_stop(ns); /* a leader hands its key back first */
    close_if_open((uv_handle_t *)&ns->tick);
    if (ns->listener.type == UV_TCP)
        close_if_open((uv_handle_t *)&ns->listener);
    for (struct ns_peer *p = ns->peers; p; p = p->next)
        conn_close(p->c);
}
