/* ds_session.c - the dataserver's session with the nameserver.
 *
 * One connection, opened at start and reopened with growing back-off when it
 * drops. With several nameservers (--ns A,B,C) a dropped or refused
 * connection moves the session to the next one of the list; the back-off
 * grows once per round of the list; a nameserver that answers a heartbeat
 * IMG_ENOTLEADER (a standby) sends the session to the leader it names. The
 * first heartbeat on a connection is
 * a full block report; later ones, every DS_HEARTBEAT_MS, carry only the
 * blocks that changed (b->dirty, set through ds_block_changed /
 * ds_block_report, cleared here). The
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
 * ds_copy.c and ds_scrub.c (heartbeat contents and answers). */
#include "dataserver/ds.h"
#include "dataserver/needle.h"

#include "base/err.h"
#include "base/log.h"
#include "dataserver/ds_block.h"
#include "dataserver/ds_copy.h"
#include "dataserver/ds_req.h"
#include "dataserver/ds_scrub.h"
#include "net/auth_link.h"
#include "proto/imgstore.pb-c.h"

#include <stdlib.h>
#include <string.h>

static void session_connect(struct ds *ds);

/* ---- commands: the session as a transport of ds_dispatch --------------------- */

static void session_hold(void *link)
{
    (void)link;
}

/* The session may have been replaced while a command ran (a copy, a
 * compaction, a VERIFY): answer only on the connection the command came on,
 * if it is still the session, and never while stopping. */
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

/* Commands count as the nameserver's only on the current session, once it
 * proved our member key. */
static enum auth_role session_role(struct ds *ds, void *link)
{
    if (link != ds->ns_conn || !auth_link_ready(ds->ns_link))
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
    struct ds *ds = ctx;
    if (ds->ns_epoch && ds->ns_epoch < ds->ns_epoch_max) {
        /* A leader deposed since it answered us: its commands are void. */
        if (ds->fenced++ % 100 == 0)
            log_warn("refused %s from nameserver %s: epoch %lld, older than %lld (%llu refused)",
                     frame_type_name(f->h.type), ds->ns_addr, (long long)ds->ns_epoch,
                     (long long)ds->ns_epoch_max, (unsigned long long)ds->fenced);
        conn_reply(c, &f->h, IMG_EEPOCH, NULL, NULL, 0, NULL);
        return;
    }
    ds_dispatch(ctx, &session, c, f);
}

/* ---- heartbeats ---------------------------------------------------------------- */

struct report {
    Imgstore__BlockInfo *infos;
    Imgstore__BlockInfo **ptrs;
    char **replica_ids; /* BLOCK_MAX_REPLICAS per block, pointing into blocks */
    size_t n, cap;
    int full;
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
    b->dirty = 0;
}

static void count_block(struct block *b, void *arg)
{
    (void)b;
    (*(size_t *)arg)++;
}

static void heartbeat_reply(int status, const struct frame *f, void *arg)
{
    struct ds *ds = arg;
    int was_full = ds->hb_full_in_flight;
    ds->hb_in_flight = 0;
    ds->hb_full_in_flight = 0;
    if (status != 0 || !f)
        return;
    if (f->h.status == IMG_ENOTLEADER && ds->ns_list.n > 1) {
        /* A standby: to the leader it names (when in our list), else on. */
        Imgstore__NotLeader *nl = imgstore__not_leader__unpack(NULL, f->h.head_len, f->head);
        ds->ns_hint = nl ? nslist_find(&ds->ns_list, nl->leader_addr) : -1;
        log_info("nameserver %s is not the leader%s%s", ds->ns_addr,
                 ds->ns_hint >= 0 ? "; the leader is " : "",
                 ds->ns_hint >= 0 ? ds->ns_list.addr[ds->ns_hint] : "");
        if (nl)
            imgstore__not_leader__free_unpacked(nl, NULL);
        ds->need_full_report = 1;
        /* A live standby, an election under way: ask again soon, no back-off. */
        ds->reconnect_ms = DS_RECONNECT_MIN_MS;
        ds->ns_no_backoff = 1;
        if (ds->ns_conn)
            conn_close(ds->ns_conn);
        return;
    }
    if (f->h.status != 0) {
        log_warn("nameserver refused heartbeat: %s", img_strerror(f->h.status));
        ds->need_full_report = 1;
        return;
    }
    Imgstore__HeartbeatResp *m = imgstore__heartbeat_resp__unpack(NULL, f->h.head_len, f->head);
    if (!m) {
        log_warn("malformed heartbeat response from nameserver");
        return;
    }
    if (m->epoch > 0 && m->epoch < ds->ns_epoch_max) {
        log_warn("nameserver %s answers for epoch %lld, older than %lld: a deposed leader; "
                 "moving on",
                 ds->ns_addr, (long long)m->epoch, (long long)ds->ns_epoch_max);
        imgstore__heartbeat_resp__free_unpacked(m, NULL);
        if (ds->ns_conn)
            conn_close(ds->ns_conn);
        return;
    }
    if (m->epoch > 0) {
        if (m->epoch != ds->ns_epoch)
            log_info("nameserver %s leads in epoch %lld", ds->ns_addr, (long long)m->epoch);
        ds->ns_epoch = m->epoch;
        if (m->epoch > ds->ns_epoch_max)
            ds->ns_epoch_max = m->epoch;
    }
    if (m->cluster_id && *m->cluster_id && strcmp(m->cluster_id, ds->cluster_id) != 0) {
        if (ds->cluster_id[0]) {
            log_error("nameserver %s is of cluster %s, this server joined cluster %s: refused",
                      ds->ns_addr, m->cluster_id, ds->cluster_id);
            imgstore__heartbeat_resp__free_unpacked(m, NULL);
            if (ds->ns_conn)
                conn_close(ds->ns_conn);
            return;
        }
        if (ds_auth_save_cluster(ds, m->cluster_id) == 0)
            log_info("joined cluster %s (stored in the data folders)", ds->cluster_id);
    }
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
            ds->need_full_report = 1; /* safe mode ended: let it check our view now */
            ds_session_poke(ds);
        }
    }
    if (ds->view_confirmed) {
        /* It counted us up when it read the heartbeat, which was after we
         * sent it: it cannot declare us down before send + its timeout. */
        uint32_t hb_timeout = m->heartbeat_timeout_ms ? m->heartbeat_timeout_ms : DS_NS_HB_TIMEOUT_MS;
        ds->view_lease_until = ds->hb_sent_ms + hb_timeout / 2;
    }
    if (ds->ns_safe_mode != (int)m->safe_mode)
        log_info("nameserver safe mode %s", m->safe_mode ? "on" : "off");
    ds->ns_safe_mode = m->safe_mode;
    ds->reconnect_ms = DS_RECONNECT_MIN_MS; /* the session works: reset the back-off */
    ds->ns_block_size = m->block_size;
    ds_scrub_set_rate(ds, m->scrub_rate ? m->scrub_rate : ds->scrub_rate_own);
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

static void send_heartbeat(struct ds *ds)
{
    if (!ds->ns_conn || conn_is_closing(ds->ns_conn) || ds->hb_in_flight ||
        !auth_link_ready(ds->ns_link))
        return;
    store_refresh(ds->store);
    size_t nblocks = 0;
    store_foreach(ds->store, count_block, &nblocks);

    struct report r = {.full = ds->need_full_report, .cap = nblocks};
    r.infos = calloc(nblocks + 1, sizeof(*r.infos));
    r.ptrs = calloc(nblocks + 1, sizeof(*r.ptrs));
    r.replica_ids = calloc((nblocks + 1) * BLOCK_MAX_REPLICAS, sizeof(char *));
    Imgstore__Disk *disks = calloc((size_t)ds->store->ndisks, sizeof(*disks));
    Imgstore__Disk **dptrs = calloc((size_t)ds->store->ndisks, sizeof(*dptrs));
    if (!r.infos || !r.ptrs || !r.replica_ids || !disks || !dptrs)
        goto out;
    store_foreach(ds->store, report_add, &r);

    for (int i = 0; i < ds->store->ndisks; i++) {
        struct store_disk *d = &ds->store->disks[i];
        imgstore__disk__init(&disks[i]);
        disks[i].path = d->path;
        disks[i].capacity = d->capacity;
        disks[i].free = d->free;
        disks[i].used = d->used;
        disks[i].failed = d->failed;
        dptrs[i] = &disks[i];
    }
    Imgstore__Heartbeat hb = IMGSTORE__HEARTBEAT__INIT;
    hb.server_id = ds->store->server_id;
    hb.addr = ds->listen_addr;
    hb.http_addr = ds->http_addr;
    hb.n_disks = (size_t)ds->store->ndisks;
    hb.disks = dptrs;
    hb.full_report = r.full;
    hb.n_blocks = r.n;
    hb.blocks = r.ptrs;
    hb.reads = ds->reads;
    hb.record_format = NEEDLE_FORMAT_NEWEST;
    hb.writes = ds->writes;
    Imgstore__CopyProgress copies[DS_COPY_MAX_ACTIVE], *cptrs[DS_COPY_MAX_ACTIVE];
    hb.n_copies = ds_copy_progress(ds, copies, DS_COPY_MAX_ACTIVE);
    for (size_t i = 0; i < hb.n_copies; i++)
        cptrs[i] = &copies[i];
    hb.copies = cptrs;
    const uint64_t *removed = NULL;
    size_t nremoved = ds_block_removed(ds, &removed);
    if (!r.full) { /* a full report implies every removal */
        hb.n_removed_blocks = nremoved;
        hb.removed_blocks = (uint64_t *)removed;
    }
    if (conn_request(ds->ns_conn, FT_HEARTBEAT, &hb.base, NULL, 0, NULL, DS_NS_TIMEOUT_MS,
                     heartbeat_reply, ds) == 0) {
        ds_block_removed_sent(ds, nremoved);
        ds->hb_in_flight = 1;
        ds->hb_full_in_flight = r.full;
        ds->hb_sent_ms = uv_now(ds->loop);
        if (r.full)
            log_info("sent full block report (%zu blocks) to %s", r.n, ds->ns_addr);
        ds->need_full_report = 0;
    } else {
        /* Nothing was sent: report everything again on the next try. */
        ds->need_full_report = 1;
    }
out:
    free(r.infos);
    free(r.ptrs);
    free(r.replica_ids);
    free(disks);
    free(dptrs);
}

static void hb_tick(uv_timer_t *t)
{
    struct ds *ds = t->data;
    uint64_t now = uv_now(ds->loop);
    if (ds->last_tick_ms && now - ds->last_tick_ms > DS_STALL_MS) {
        log_warn("this process stalled for %llu ms (stopped?): reads and primary roles wait "
                 "until the nameserver has checked our replica sets again",
                 (unsigned long long)(now - ds->last_tick_ms));
        ds->view_lapsed |= ds->view_confirmed;
        ds->view_confirmed = 0;
        ds->primary_confirmed = 0;
        ds->need_full_report = 1;
        ds->hb_full_in_flight = 0; /* an answer to a report from before the stall is old */
    } else if (ds->view_confirmed && now > ds->view_lease_until) {
        log_warn("no nameserver answer for %llu ms: it may have moved our copies' replica sets "
                 "on without us, so they serve only readers that found no current replica "
                 "until it has checked them again",
                 (unsigned long long)(now - ds->hb_sent_ms));
        ds->view_lapsed = 1;
        ds->view_confirmed = 0;
        ds->primary_confirmed = 0;
        ds->need_full_report = 1;
        ds->hb_full_in_flight = 0;
    }
    ds->last_tick_ms = now;
    ds->hb_soon = 0;
    send_heartbeat(ds);
}

void ds_session_poke(struct ds *ds)
{
    if (ds->hb_soon || ds->stopping)
        return;
    ds->hb_soon = 1;
    /* Coalesce bursts of changes into one heartbeat shortly after. */
    uv_timer_start(&ds->hb_timer, hb_tick, 20, DS_HEARTBEAT_MS);
}

/* ---- connection ---------------------------------------------------------------- */

static void reconnect_tick(uv_timer_t *t)
{
    session_connect(t->data);
}

static void session_closed(struct conn *c, void *ctx)
{
    struct ds *ds = ctx;
    auth_link_free(conn_get_data(c));
    if (ds->ns_conn == c) {
        ds->ns_conn = NULL;
        ds->ns_link = NULL;
    }
    ds->hb_in_flight = 0;
    ds->ns_epoch = 0;
    ds->primary_confirmed = 0; /* we may be demoted while cut off */
    if (ds->stopping)
        return;
    char lost[DS_ADDR_MAX];
    memcpy(lost, ds->ns_addr, sizeof(lost));
    if (ds->ns_list.n > 1) {
        int hint = ds->ns_hint;
        ds->ns_hint = -1;
        ds->ns_cur = hint >= 0 && hint != ds->ns_cur ? hint : (ds->ns_cur + 1) % ds->ns_list.n;
        memcpy(ds->ns_addr, ds->ns_list.addr[ds->ns_cur], sizeof(ds->ns_addr));
    }
    log_warn("lost nameserver session %s; connecting to %s in %d ms", lost, ds->ns_addr,
             ds->reconnect_ms);
    uv_timer_start(&ds->reconnect_timer, reconnect_tick, (uint64_t)ds->reconnect_ms, 0);
    int no_backoff = ds->ns_no_backoff;
    ds->ns_no_backoff = 0;
    if (no_backoff || (ds->ns_list.n > 1 && ds->ns_cur != 0))
        return; /* the back-off grows once per round of the list, not after a standby */
    ds->reconnect_ms *= 2;
    if (ds->reconnect_ms > DS_RECONNECT_MAX_MS)
        ds->reconnect_ms = DS_RECONNECT_MAX_MS;
}

/* The nameserver proved our member key (or refused us: the link closes the
 * connection and session_closed reconnects with back-off). */
static void session_authed(int status, void *arg)
{
    struct ds *ds = arg;
    if (status == 0)
        send_heartbeat(ds);
}

static void session_connect(struct ds *ds)
{
    if (ds->stopping)
        return;
    ds->ns_conn = conn_connect(ds->loop, ds->ns_addr, session_frame, session_closed, ds);
    if (!ds->ns_conn) {
        log_error("bad nameserver address %s", ds->ns_addr);
        return;
    }
    ds->ns_link = ds_auth_link(ds, ds->ns_conn, session_authed, ds);
    conn_set_data(ds->ns_conn, ds->ns_link);
    if (!ds->ns_link) {
        conn_close(ds->ns_conn); /* session_closed reconnects later */
        return;
    }
    ds->need_full_report = 1;
    ds->primary_confirmed = 0;
    send_heartbeat(ds);
}

int ds_session_start(struct ds *ds)
{
    uv_timer_init(ds->loop, &ds->hb_timer);
    uv_timer_init(ds->loop, &ds->reconnect_timer);
    ds->hb_timer.data = ds;
    ds->reconnect_timer.data = ds;
    ds->reconnect_ms = DS_RECONNECT_MIN_MS;
    ds->ns_hint = -1;
    uv_timer_start(&ds->hb_timer, hb_tick, DS_HEARTBEAT_MS, DS_HEARTBEAT_MS);
    session_connect(ds);
    return 0;
}

void ds_session_stop(struct ds *ds)
{
    uv_timer_stop(&ds->hb_timer);
    uv_timer_stop(&ds->reconnect_timer);
    uv_close((uv_handle_t *)&ds->hb_timer, NULL);
    uv_close((uv_handle_t *)&ds->reconnect_timer, NULL);
    if (ds->ns_conn)
        conn_close(ds->ns_conn);
}
