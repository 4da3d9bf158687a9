/* ds_session.c - the dataserver's sessions with the nameservers.
 *
 * One session per nameserver of --ns (one without a list), each opened at
 * start and reopened with its own growing back-off when it drops. Every
 * session carries heartbeats and block reports, so standbys hold the block
 * map too (warm standbys, docs/nameserver.md "High availability"); a
 * standby answers them IMG_ENOTLEADER. The commands of one session only are
 * obeyed: the leader's, the last one to answer a heartbeat as leader with
 * the highest epoch seen (ds->ns_main, ds->ns_conn). Commands on a session
 * that answered with an older epoch are refused IMG_EEPOCH (fencing), on
 * any other session IMG_EEPOCH too. While no session leads, or the leader's
 * has not answered for DS_HEARTBEAT_MS, heartbeats go out every
 * DS_LEADERLESS_HB_MS (the first one half of that after the leader's
 * session closed or it answered as a standby), so a new leader is found
 * within that.
 *
 * The first heartbeat on a connection is a full block report; later ones,
 * every DS_HEARTBEAT_MS, carry only the blocks that changed (b->dirty, set
 * through ds_block_changed / ds_block_report, cleared here): one change
 * list is built per tick and sent on every session in step; a session that
 * misses one (its last heartbeat still unanswered, or not connected) gets
 * a full report next. The leader's answers set the dataserver's view
 * (primary roles, view lease, safe mode, cluster settings); when another
 * session becomes the leader's, a full report goes to it at once and
 * primary roles wait for its answer. The
 * nameserver sends its commands (CREATE_BLOCK, SET_REPLICAS, REPLICATE_BLOCK,
 * ...) on the same connection: this file is their transport and hands them
 * to ds_dispatch.
 *
 * Authentication (docs/security.md): each connection first authenticates
 * with our member key and claims our server id and the cluster id we
 * joined; no heartbeat goes out, and no command is obeyed, until the
 * nameserver proved the same key (net/auth_link.h). The first nameserver
 * that answers a heartbeat gives us its cluster id, stored (ds_auth.c);
 * a nameserver of another cluster id is refused and the session dropped.
 * May call net/ (conn_*, auth_link), ds_auth.c, ds_dispatch.c, ds_block.c,
 * ds_copy.c, ds_scrub.c and ds_throttle.c (heartbeat contents and answers),
 * ds_compact.c (holds of a leader that went). */
#include "dataserver/ds.h"
#include "dataserver/needle.h"

#include "base/err.h"
#include "base/log.h"
#include "dataserver/ds_block.h"
#include "dataserver/ds_compact.h"
#include "dataserver/ds_copy.h"
#include "dataserver/ds_ec.h"
#include "dataserver/ds_req.h"
#include "dataserver/ds_scrub.h"
#include "dataserver/ds_throttle.h"
#include "net/auth_link.h"
#include "proto/imgstore.pb-c.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void session_connect(struct ds_nss *s);
static void send_heartbeats(struct ds *ds);
static void hb_tick(uv_timer_t *t);

static int nss_ready(const struct ds_nss *s)
{
    return s->c && !conn_is_closing(s->c) && s->link && auth_link_ready(s->link);
}

/* ---- commands: the sessions as a transport of ds_dispatch -------------------- */

static void session_hold(void *link)
{
    (void)link;
}

/* The leader's session may have changed while a command ran (a copy, a
 * compaction, a VERIFY): answer only on the connection the command came
 * on, if it is still the leader's, and never while stopping. */
static void session_send(struct ds *ds, void *link, const struct frame_header *req, int status,
                         const ProtobufCMessage *msg, const void *body, uint32_t body_len,
                         conn_free_fn body_free)
{
    struct conn *c = link;
    if (!ds->stopping && c && c == ds->ns_conn && !conn_is_closing(c))
        conn_reply(c, req, status, msg, body, body_len, body_free);
    else if (body_free)
        body_free((void *)body);
}

/* Commands count as the nameserver's only on the leader's session, once it
 * proved our member key. */
static enum auth_role session_role(struct ds *ds, void *link)
{
    if (!link || link != ds->ns_conn || !auth_link_ready(ds->ns_link))
        return AUTH_NONE;
    return AUTH_MEMBER;
}

static const struct ds_transport session = {
    .name = "nameserver session",
    .carries = DS_FROM_NS,
    .role = session_role,
    .hold = session_hold,
    .send = session_send,
};

static void session_frame(struct conn *c, const struct frame *f, void *ctx)
{
    struct ds_nss *s = ctx;
    struct ds *ds = s->ds;
    if (s->epoch && s->epoch < ds->ns_epoch_max) {
        /* A leader deposed since it answered us: its commands are void. */
        if (ds->fenced++ % 100 == 0)
            log_warn("refused %s from nameserver %s: epoch %lld, older than %lld (%llu refused)",
                     frame_type_name(f->h.type), s->addr, (long long)s->epoch,
                     (long long)ds->ns_epoch_max, (unsigned long long)ds->fenced);
        conn_reply(c, &f->h, IMG_EEPOCH, NULL, NULL, 0, NULL);
        return;
    }
    if (c != ds->ns_conn) {
        /* Not (yet) known to lead: refused at once, so it does not wait
         * out its timeout; a heartbeat soon tells us whether it leads. */
        if (ds->unled++ % 100 == 0)
            log_warn("refused %s from nameserver %s: not the leader we take commands from "
                     "(%llu refused)",
                     frame_type_name(f->h.type), s->addr, (unsigned long long)ds->unled);
        conn_reply(c, &f->h, IMG_EEPOCH, NULL, NULL, 0, NULL);
        s->refused = 1;
        ds_session_poke(ds);
        return;
    }
    ds_dispatch(ds, &session, c, f);
}

/* ---- heartbeats ---------------------------------------------------------------- */

struct report {
    Imgstore__BlockInfo *infos;
    Imgstore__BlockInfo **ptrs;
    char **replica_ids; /* BLOCK_MAX_REPLICAS per block, pointing into blocks */
    size_t n, cap;
    int full;
    int keep_dirty; /* a full report for sessions out of step: the change list is not taken */
};

static void report_add(struct block *b, void *arg)
{
    struct report *r = arg;
    if (!r->full && !b->dirty)
        return;
    if (r->n == r->cap)
        return;
    Imgstore__BlockInfo *bi = &r->infos[r->n];
    imgstore__block_info__init(bi);
    bi->block_id = b->id;
    bi->size = b->durable_tail;
    bi->file_count = block_file_count(b);
    bi->deleted_bytes = b->deleted_bytes;
    bi->sealed = b->sealed;
    bi->primary = b->primary;
    bi->corrupt = b->corrupt;
    bi->set_version = b->set_version;
    char **ids = &r->replica_ids[r->n * BLOCK_MAX_REPLICAS];
    for (int i = 0; i < b->nreplicas; i++)
        ids[i] = b->replicas[i].server_id;
    bi->n_replicas = (size_t)b->nreplicas;
    bi->replicas = ids;
    r->ptrs[r->n] = bi;
    r->n++;
    if (!r->keep_dirty)
        b->dirty = 0;
}

static void count_block(struct block *b, void *arg)
{
    (void)b;
    (*(size_t *)arg)++;
}

/* A session became the leader's (or stopped being it: s NULL). */
static void set_main(struct ds *ds, struct ds_nss *s)
{
    int idx = s ? (int)(s - ds->nss) : -1;
    if (idx == ds->ns_main)
        return;
    ds->ns_main = idx;
    ds->ns_lead_gen++;
    ds->ns_conn = s ? s->c : NULL;
    ds->ns_link = s ? s->link : NULL;
    ds->ns_epoch = s ? s->epoch : 0;
    ds->primary_confirmed = 0; /* until the leader answered our full report */
    if (s) {
        memcpy(ds->ns_addr, s->addr, sizeof(ds->ns_addr));
        log_info("taking commands from nameserver %s", s->addr);
        ds_compact_release_holds(ds); /* no release will come for them */
    } else if (ds->nnss > 1 && !ds->stopping && !ds->hb_soon) {
        /* The leader went (stepped down, deposed, gone): ask the others
         * DS_LEADERLESS_HB_MS / 2 from now and then every
         * DS_LEADERLESS_HB_MS (hb_tick), not at the next tick of
         * DS_HEARTBEAT_MS, so the next leader is found soon after it
         * leads (a planned step-down: within milliseconds). */
        uv_timer_start(&ds->hb_timer, hb_tick, DS_LEADERLESS_HB_MS / 2, DS_HEARTBEAT_MS);
    }
}

/* A standby answered (IMG_ENOTLEADER with a NotLeader head): it holds our
 * report; only its naming of the leader is logged, when it changes. */
static void standby_reply(struct ds_nss *s, const struct frame *f)
{
    struct ds *ds = s->ds;
    if (!s->standby) {
        Imgstore__NotLeader *nl = imgstore__not_leader__unpack(NULL, f->h.head_len, f->head);
        const char *leader = nl && nl->leader_addr ? nl->leader_addr : "";
        log_info("nameserver %s is not the leader%s%s", s->addr, *leader ? "; the leader is " : "",
                 leader);
        if (nl)
            imgstore__not_leader__free_unpacked(nl, NULL);
    }
    s->standby = 1;
    s->epoch = 0;
    s->reconnect_ms = DS_RECONNECT_MIN_MS;
    if (ds->ns_main == (int)(s - ds->nss))
        set_main(ds, NULL); /* it stopped leading */
}

static void heartbeat_reply(int status, const struct frame *f, void *arg)
{
    struct ds_nss *s = arg;
    struct ds *ds = s->ds;
    /* A nameserver sends the commands a full report calls for (SET_REPLICAS
     * leaving a stale copy out, ...) before its answer. Refused because this
     * session did not lead yet, they never took effect: the answer must
     * not confirm our view or primary roles; the next full report, on a
     * session that leads by then, gets them again. */
    int was_full = s->full_in_flight && !s->refused;
    if (s->refused && s->full_in_flight)
        s->need_full = 1;
    s->refused = 0;
    s->in_flight = 0;
    s->full_in_flight = 0;
    if (status != 0 || !f) {
        s->need_full = 1; /* it may have missed changes */
        return;
    }
    if (f->h.status == IMG_ENOTLEADER) {
        standby_reply(s, f);
        return;
    }
    if (f->h.status != 0) {
        log_warn("nameserver %s refused heartbeat: %s", s->addr, img_strerror(f->h.status));
        s->need_full = 1;
        return;
    }
    Imgstore__HeartbeatResp *m = imgstore__heartbeat_resp__unpack(NULL, f->h.head_len, f->head);
    if (!m) {
        log_warn("malformed heartbeat response from nameserver %s", s->addr);
        s->need_full = 1;
        return;
    }
    if (m->epoch > 0 && m->epoch < ds->ns_epoch_max) {
        log_warn("nameserver %s answers for epoch %lld, older than %lld: a deposed leader; "
                 "its session is closed",
                 s->addr, (long long)m->epoch, (long long)ds->ns_epoch_max);
        imgstore__heartbeat_resp__free_unpacked(m, NULL);
        if (s->c)
            conn_close(s->c);
        return;
    }
    if (m->cluster_id && *m->cluster_id && strcmp(m->cluster_id, ds->cluster_id) != 0) {
        if (ds->cluster_id[0]) {
            log_error("nameserver %s is of cluster %s, this server joined cluster %s: refused",
                      s->addr, m->cluster_id, ds->cluster_id);
            imgstore__heartbeat_resp__free_unpacked(m, NULL);
            if (s->c)
                conn_close(s->c);
            return;
        }
        if (ds_auth_save_cluster(ds, m->cluster_id) == 0)
            log_info("joined cluster %s (stored in the data folders)", ds->cluster_id);
    }
    s->standby = 0;
    s->reconnect_ms = DS_RECONNECT_MIN_MS; /* the session works: reset the back-off */
    if (m->epoch > 0) {
        if (m->epoch != s->epoch)
            log_info("nameserver %s leads in epoch %lld", s->addr, (long long)m->epoch);
        s->epoch = m->epoch;
        if (m->epoch > ds->ns_epoch_max)
            ds->ns_epoch_max = m->epoch;
    }
    if (ds->ns_main != (int)(s - ds->nss)) {
        /* The leader: from now on its commands count, and it must check
         * our primary roles against a full report of ours. */
        struct ds_nss *old = ds->ns_main >= 0 ? &ds->nss[ds->ns_main] : NULL;
        set_main(ds, s);
        if (old && old->epoch == s->epoch && old->c)
            conn_close(old->c); /* two sessions answering for one epoch: keep the newer */
        if (!was_full) {
            s->need_full = 1;
            ds_session_poke(ds);
        }
    }
    ds->ns_epoch = s->epoch;
    if (was_full && !ds->primary_confirmed) {
        ds->primary_confirmed = 1;
        log_info("nameserver answered our full report: primary roles confirmed");
    }
    if (!m->safe_mode && !ds->view_confirmed) {
        if (was_full) {
            ds->view_confirmed = 1;
            ds->view_lapsed = 0;
            log_info("nameserver (out of safe mode) answered our full report: serving reads");
        } else {
            s->need_full = 1; /* safe mode ended: let it check our view now */
            ds_session_poke(ds);
        }
    }
    if (ds->view_confirmed) {
        /* It counted us up when it read the heartbeat, which was after we
         * sent it: it cannot declare us down before send + its timeout. */
        uint32_t hb_timeout = m->heartbeat_timeout_ms ? m->heartbeat_timeout_ms : DS_NS_HB_TIMEOUT_MS;
        ds->view_lease_until = s->sent_ms + hb_timeout / 2;
    }
    if (ds->ns_safe_mode != (int)m->safe_mode)
        log_info("nameserver safe mode %s", m->safe_mode ? "on" : "off");
    ds->ns_safe_mode = m->safe_mode;
    ds->ns_block_size = m->block_size;
    ds_scrub_set_rate(ds, m->scrub_rate ? m->scrub_rate : ds->scrub_rate_own);
    if (m->copy_rate)
        ds_throttle_set_rate(ds, m->copy_rate); /* copies and compactions */
    ds->ns_replicas = m->replicas;
    /* The oldest format any server of the cluster reads (1 from an older
     * nameserver), never newer than ours. */
    uint32_t format = m->record_format < 1 ? 1
                      : m->record_format > NEEDLE_FORMAT_NEWEST ? NEEDLE_FORMAT_NEWEST
                                                                : m->record_format;
    if (format != ds->record_format)
        log_info("writing records in format %u (docs/storage.md)", format);
    ds->record_format = format;
    imgstore__heartbeat_resp__free_unpacked(m, NULL);
}

/* One heartbeat message with its block report (full, or the changes);
 * everything borrowed from the store or owned by hb_free. */
struct hb_msg {
    Imgstore__Heartbeat hb;
    struct report r;
    Imgstore__Disk *disks;
    Imgstore__Disk **dptrs;
    Imgstore__CopyProgress copies[DS_COPY_MAX_ACTIVE];
    Imgstore__CopyProgress *cptrs[DS_COPY_MAX_ACTIVE];
    size_t nremoved;
    Imgstore__ShardInfo **shards; /* ds_ec_report */
    size_t nshards;
};

static void hb_free(struct hb_msg *m)
{
    free(m->r.infos);
    free(m->r.ptrs);
    free(m->r.replica_ids);
    free(m->disks);
    free(m->dptrs);
    ds_ec_report_free(m->shards, m->nshards);
}

/* Builds *m: a full report, or (full 0) the changed blocks, which are
 * taken off the change list. 0 or -ENOMEM (then hb_free anyway). */
static int hb_build(struct ds *ds, int full, struct hb_msg *m)
{
    memset(m, 0, sizeof(*m));
    size_t nblocks = 0;
    store_foreach(ds->store, count_block, &nblocks);
    m->r.full = full;
    m->r.keep_dirty = full;
    m->r.cap = nblocks;
    m->r.infos = calloc(nblocks + 1, sizeof(*m->r.infos));
    m->r.ptrs = calloc(nblocks + 1, sizeof(*m->r.ptrs));
    m->r.replica_ids = calloc((nblocks + 1) * BLOCK_MAX_REPLICAS, sizeof(char *));
    m->disks = calloc((size_t)ds->store->ndisks + 1, sizeof(*m->disks));
    m->dptrs = calloc((size_t)ds->store->ndisks + 1, sizeof(*m->dptrs));
    if (!m->r.infos || !m->r.ptrs || !m->r.replica_ids || !m->disks || !m->dptrs)
        return -ENOMEM;
    store_foreach(ds->store, report_add, &m->r);
    for (int i = 0; i < ds->store->ndisks; i++) {
        struct store_disk *d = &ds->store->disks[i];
        imgstore__disk__init(&m->disks[i]);
        m->disks[i].path = d->path;
        m->disks[i].capacity = d->capacity;
        m->disks[i].free = d->free;
        m->disks[i].used = d->used;
        m->disks[i].failed = d->failed;
        m->dptrs[i] = &m->disks[i];
    }
    Imgstore__Heartbeat *hb = &m->hb;
    imgstore__heartbeat__init(hb);
    hb->server_id = ds->store->server_id;
    hb->addr = ds->listen_addr;
    hb->http_addr = ds->http_addr;
    hb->n_disks = (size_t)ds->store->ndisks;
    hb->disks = m->dptrs;
    hb->full_report = full;
    hb->n_blocks = m->r.n;
    hb->blocks = m->r.ptrs;
    hb->reads = ds->reads;
    hb->record_format = NEEDLE_FORMAT_NEWEST;
    hb->writes = ds->writes;
    hb->n_copies = ds_copy_progress(ds, m->copies, DS_COPY_MAX_ACTIVE);
    for (size_t i = 0; i < hb->n_copies; i++)
        m->cptrs[i] = &m->copies[i];
    hb->copies = m->cptrs;
    m->nshards = ds_ec_report(ds, full, &m->shards);
    hb->n_shards = m->nshards;
    hb->shards = m->shards;
    if (!full) { /* a full report implies every removal */
        const uint64_t *removed = NULL;
        m->nremoved = ds_block_removed(ds, &removed);
        hb->n_removed_blocks = m->nremoved;
        hb->removed_blocks = (uint64_t *)removed;
    }
    return 0;
}

/* Sends m on s. 0, or an error (s then needs a full report). */
static int hb_send(struct ds_nss *s, const struct hb_msg *m)
{
    struct ds *ds = s->ds;
    if (conn_request(s->c, FT_HEARTBEAT, &m->hb.base, NULL, 0, NULL, DS_NS_TIMEOUT_MS,
                     heartbeat_reply, s) != 0) {
        s->need_full = 1; /* nothing was sent: report everything again on the next try */
        return IMG_ECONN;
    }
    s->in_flight = 1;
    s->full_in_flight = m->hb.full_report;
    s->sent_ms = uv_now(ds->loop);
    if (m->hb.full_report) {
        s->need_full = 0;
        log_info("sent full block report (%zu blocks) to %s", m->r.n, s->addr);
    }
    return 0;
}

/* One heartbeat on every session that has none in flight: the change list
 * on those in step, a full report on the others. */
static void send_heartbeats(struct ds *ds)
{
    int in_step = 0, behind = 0;
    for (int i = 0; i < ds->nnss; i++) {
        struct ds_nss *s = &ds->nss[i];
        if (!nss_ready(s) || s->in_flight)
            continue;
        if (s->need_full)
            behind++;
        else
            in_step++;
    }
    if (in_step == 0 && behind == 0)
        return;
    store_refresh(ds->store);
    struct hb_msg *m = malloc(sizeof(*m));
    if (!m)
        return;
    if (in_step > 0) {
        /* The changes leave the change list: every session not sent them
         * now needs a full report. */
        if (hb_build(ds, 0, m) == 0) {
            int sent = 0;
            for (int i = 0; i < ds->nnss; i++) {
                struct ds_nss *s = &ds->nss[i];
                if (!s->need_full && nss_ready(s) && !s->in_flight)
                    sent += hb_send(s, m) == 0;
                else
                    s->need_full = 1;
            }
            if (sent)
                ds_block_removed_sent(ds, m->nremoved);
        } else {
            for (int i = 0; i < ds->nnss; i++)
                ds->nss[i].need_full = 1;
        }
        hb_free(m);
    }
    if (behind > 0 && hb_build(ds, 1, m) == 0) {
        for (int i = 0; i < ds->nnss; i++) {
            struct ds_nss *s = &ds->nss[i];
            if (s->need_full && nss_ready(s) && !s->in_flight)
                hb_send(s, m);
        }
    }
    if (behind > 0)
        hb_free(m);
    free(m);
}

/* Every session needs a full report again (its answers before now are
 * not to be trusted: we stalled, or the view lease ran out). */
static void all_need_full(struct ds *ds)
{
    for (int i = 0; i < ds->nnss; i++) {
        ds->nss[i].need_full = 1;
        ds->nss[i].full_in_flight = 0; /* an answer to a report from before is old */
    }
}

static void hb_tick(uv_timer_t *t)
{
    struct ds *ds = t->data;
    uint64_t now = uv_now(ds->loop);
    uint64_t sent = ds->ns_main >= 0 ? ds->nss[ds->ns_main].sent_ms : 0;
    if (ds->last_tick_ms && now - ds->last_tick_ms > DS_STALL_MS) {
        log_warn("this process stalled for %llu ms (stopped?): reads and primary roles wait "
                 "until the nameserver has checked our replica sets again",
                 (unsigned long long)(now - ds->last_tick_ms));
        ds->view_lapsed |= ds->view_confirmed;
        ds->view_confirmed = 0;
        ds->primary_confirmed = 0;
        all_need_full(ds);
    } else if (ds->view_confirmed && now > ds->view_lease_until) {
        log_warn("no nameserver answer for %llu ms: it may have moved our copies' replica sets "
                 "on without us, so they serve only readers that found no current replica "
                 "until it has checked them again",
                 (unsigned long long)(sent ? now - sent : now - ds->view_lease_until));
        ds->view_lapsed = 1;
        ds->view_confirmed = 0;
        ds->primary_confirmed = 0;
        all_need_full(ds);
    }
    ds->last_tick_ms = now;
    ds->hb_soon = 0;
    send_heartbeats(ds);
    const struct ds_nss *m = ds->ns_main >= 0 ? &ds->nss[ds->ns_main] : NULL;
    if (ds->nnss > 1 && !ds->stopping &&
        (!m || (m->in_flight && now - m->sent_ms > DS_HEARTBEAT_MS)))
        /* No leader, or it does not answer (frozen, cut off): ask the
         * others often, to find the next one at once. */
        uv_timer_start(&ds->hb_timer, hb_tick, DS_LEADERLESS_HB_MS, DS_HEARTBEAT_MS);
}

void ds_session_poke(struct ds *ds)
{
    if (ds->hb_soon || ds->stopping)
        return;
    ds->hb_soon = 1;
    /* Coalesce bursts of changes into one heartbeat shortly after. */
    uv_timer_start(&ds->hb_timer, hb_tick, 20, DS_HEARTBEAT_MS);
}

/* ---- connections --------------------------------------------------------------- */

static void reconnect_tick(uv_timer_t *t)
{
    session_connect(t->data);
}

static void session_closed(struct conn *c, void *ctx)
{
    struct ds_nss *s = ctx;
    struct ds *ds = s->ds;
    auth_link_free(conn_get_data(c));
    if (s->c != c)
        return;
    s->c = NULL;
    s->link = NULL;
    s->in_flight = 0;
    s->full_in_flight = 0;
    s->epoch = 0;
    s->standby = 0;
    if (ds->ns_main == (int)(s - ds->nss))
        set_main(ds, NULL); /* we may be demoted while cut off */
    if (ds->stopping)
        return;
    log_warn("lost nameserver session %s; connecting to %s in %d ms", s->addr, s->addr,
             s->reconnect_ms);
    uv_timer_start(&s->reconnect_timer, reconnect_tick, (uint64_t)s->reconnect_ms, 0);
    /* With several nameservers a restarted one must get our reports soon
     * (it may be the next leader): a shorter bound. */
    int max = ds->nnss > 1 ? DS_RECONNECT_LIST_MAX_MS : DS_RECONNECT_MAX_MS;
    s->reconnect_ms *= 2;
    if (s->reconnect_ms > max)
        s->reconnect_ms = max;
}

/* The nameserver proved our member key (or refused us: the link closes the
 * connection and session_closed reconnects with back-off). */
static void session_authed(int status, void *arg)
{
    struct ds_nss *s = arg;
    if (status == 0)
        send_heartbeats(s->ds);
}

static void session_connect(struct ds_nss *s)
{
    struct ds *ds = s->ds;
    if (ds->stopping)
        return;
    s->c = conn_connect(ds->loop, s->addr, session_frame, session_closed, s);
    if (!s->c) {
        log_error("bad nameserver address %s", s->addr);
        return;
    }
    s->link = ds_auth_link(ds, s->c, session_authed, s);
    conn_set_data(s->c, s->link);
    if (!s->link) {
        conn_close(s->c); /* session_closed reconnects later */
        return;
    }
    s->need_full = 1;
    /* Without keys there is no authentication to wait for (session_authed
     * never runs): report at once, not at the next tick (a restart would
     * serve no read for up to DS_HEARTBEAT_MS more). */
    if (auth_link_ready(s->link))
        send_heartbeats(ds);
}

int ds_session_start(struct ds *ds)
{
    uv_timer_init(ds->loop, &ds->hb_timer);
    ds->hb_timer.data = ds;
    ds->nnss = ds->ns_list.n > 0 ? ds->ns_list.n : 1;
    ds->ns_main = -1;
    for (int i = 0; i < ds->nnss; i++) {
        struct ds_nss *s = &ds->nss[i];
        memset(s, 0, sizeof(*s));
        s->ds = ds;
        snprintf(s->addr, sizeof(s->addr), "%s",
                 ds->ns_list.n > 0 ? ds->ns_list.addr[i] : ds->ns_addr);
        s->reconnect_ms = DS_RECONNECT_MIN_MS;
        uv_timer_init(ds->loop, &s->reconnect_timer);
        s->reconnect_timer.data = s;
    }
    uv_timer_start(&ds->hb_timer, hb_tick, DS_HEARTBEAT_MS, DS_HEARTBEAT_MS);
    for (int i = 0; i < ds->nnss; i++)
        session_connect(&ds->nss[i]);
    return 0;
}

void ds_session_stop(struct ds *ds)
{
    uv_timer_stop(&ds->hb_timer);
    uv_close((uv_handle_t *)&ds->hb_timer, NULL);
    for (int i = 0; i < ds->nnss; i++) {
        struct ds_nss *s = &ds->nss[i];
        uv_timer_stop(&s->reconnect_timer);
        uv_close((uv_handle_t *)&s->reconnect_timer, NULL);
        if (s->c)
            conn_close(s->c);
    }
}
