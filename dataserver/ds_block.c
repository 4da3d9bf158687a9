/* ds_block.c - the nameserver's block commands and block removals
 * (ds_block.h).
 *
 * SET_REPLICAS replaces a block's replica list and role (saved in its meta),
 * so the primary forwards tombstones to the replica set the nameserver keeps.
 *
 * A deleted block leaves the table at once (no new I/O can find it) and its
 * files are unlinked; its descriptors stay open DS_DELETE_GRACE_MS so that
 * I/O already queued on them completes, then its file is given back to the
 * file system a step at a time and it is closed.
 * May call the storage engine (store, block, blockio) and ds_session.c
 * (ds_session_poke). */
#include "dataserver/ds_block.h"
#include "dataserver/ds_ec.h"

#include "base/array.h"
#include "base/err.h"
#include "base/log.h"
#include "dataserver/blockio.h"
#include "proto/fname.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define GRAVE_TICK_MS 100     /* deferred closes are checked this often */
/* A deleted block file is given back to the file system this many bytes
 * per tick (ftruncate down, then close): freeing 64 MiB at one close made
 * the file system discard it all at once, which stalled readers' disk reads
 * for 20-30 ms on the benchmark VM (docs/performance.md, "Rebalance"). */
#define GRAVE_STEP_BYTES (4u << 20)

/* A deleted block waiting for its deferred close. */
struct grave {
    struct grave *next;
    struct block *b;
    uint64_t close_at_ms;
    int64_t left; /* bytes the file still holds while shrinking; -1: not started */
};

/* Block removals: the graves and the ids not yet reported. */
struct ds_removals {
    struct ds *ds;
    uint64_t *removed;      /* deleted block ids not yet reported */
    size_t nremoved, removed_cap;
    struct grave *graves;
    uv_timer_t grave_timer;
    int timer_started;
};

static struct ds_removals *removals_state(struct ds *ds)
{
    if (!ds->removals) {
        struct ds_removals *dr = calloc(1, sizeof(*dr));
        if (!dr)
            return NULL;
        dr->ds = ds;
        ds->removals = dr;
    }
    return ds->removals;
}

void ds_block_changed(struct ds *ds, struct block *b)
{
    b->dirty = 1;
    ds_session_poke(ds);
}

void ds_block_report(struct ds *ds, struct block *b)
{
    (void)ds;
    b->dirty = 1;
}

int ds_block_replica(const Imgstore__Replica *r, struct block_replica *out)
{
    struct sockaddr_storage ss;
    if (!r || !r->server_id || !r->addr || !r->http_addr || !r->server_id[0] ||
        strlen(r->server_id) >= sizeof(out->server_id) || strlen(r->addr) >= sizeof(out->addr) ||
        strlen(r->http_addr) >= sizeof(out->http_addr) || conn_parse_addr(r->addr, &ss) != 0)
        return IMG_EINVAL;
    snprintf(out->server_id, sizeof(out->server_id), "%s", r->server_id);
    snprintf(out->addr, sizeof(out->addr), "%s", r->addr);
    snprintf(out->http_addr, sizeof(out->http_addr), "%s", r->http_addr);
    return 0;
}

/* ---- CREATE_BLOCK ----------------------------------------------------------- */

static int create_block(struct ds *ds, const Imgstore__CreateBlock *m)
{
    if (m->block_id == 0 || m->block_id > FNAME_MAX_BLOCK_ID)
        return IMG_EINVAL;
    if (m->block_size < BLOCK_MIN_SIZE || m->block_size > BLOCK_MAX_SIZE)
        return IMG_EINVAL;
    /* An empty list (never with the primary role): no member the nameserver
     * can name is up, and this copy is held out (it may lack journaled
     * tombstones, docs/nameserver.md): it serves nothing. */
    if ((m->n_replicas < 1 && m->primary) || m->n_replicas > BLOCK_MAX_REPLICAS)
        return IMG_EINVAL;
    struct block_replica reps[BLOCK_MAX_REPLICAS];
    memset(reps, 0, sizeof(reps));
    int me = -1;
    for (size_t i = 0; i < m->n_replicas; i++) {
        if (ds_block_replica(m->replicas[i], &reps[i]) != 0)
            return IMG_EINVAL;
        if (strcmp(reps[i].server_id, ds->store->server_id) == 0)
            me = (int)i;
    }
    /* We must be a replica, and the primary exactly when listed first. */
    if (me < 0 || (m->primary != 0) != (me == 0))
        return IMG_EINVAL;
    struct block *b = store_get(ds->store, m->block_id);
    if (b)
        return b->max_size == m->block_size && b->primary == (int)m->primary ? 0 : IMG_EEXIST;
    int rc = store_create_block(ds->store, m->block_id, m->block_size, m->primary, reps,
                                (int)m->n_replicas, &b);
    if (rc != 0) {
        log_error("create block %llu: %s", (unsigned long long)m->block_id, img_strerror(rc));
        return rc;
    }
    ds_block_changed(ds, b);
    log_info("created block %llu (%s, %zu replicas, max %llu bytes)",
             (unsigned long long)m->block_id, m->primary ? "primary" : "secondary",
             m->n_replicas, (unsigned long long)m->block_size);
    return 0;
}

void ds_block_create(struct ds_req *r, const struct frame *f)
{
    Imgstore__CreateBlock *m = ds_req_unpack(r, f, &imgstore__create_block__descriptor);
    if (!m)
        return;
    int rc = create_block(r->ds, m);
    imgstore__create_block__free_unpacked(m, NULL);
    Imgstore__CreateBlockResp resp = IMGSTORE__CREATE_BLOCK_RESP__INIT;
    ds_req_answer(r, rc, rc == 0 ? &resp.base : NULL, NULL, 0, NULL);
}

/* ---- seal, stat, delete -------------------------------------------------- */

void ds_block_seal(struct ds_req *r, const struct frame *f)
{
    struct ds *ds = r->ds;
    Imgstore__SealBlock *m = ds_req_unpack(r, f, &imgstore__seal_block__descriptor);
    if (!m)
        return;
    struct block *b = store_get(ds->store, m->block_id);
    imgstore__seal_block__free_unpacked(m, NULL);
    int rc = b ? 0 : IMG_ENOBLOCKHERE;
    if (b && !b->sealed) {
        rc = block_seal(b);
        log_info("block %" PRIu64 " sealed at the nameserver's request", b->id);
        ds_block_changed(ds, b);
    }
    Imgstore__SealBlockResp resp = IMGSTORE__SEAL_BLOCK_RESP__INIT;
    resp.size = b ? b->durable_tail : 0;
    ds_req_answer(r, rc, rc == 0 ? &resp.base : NULL, NULL, 0, NULL);
}

void ds_block_stat(struct ds_req *r, const struct frame *f)
{
    struct ds *ds = r->ds;
    Imgstore__StatBlock *m = ds_req_unpack(r, f, &imgstore__stat_block__descriptor);
    if (!m)
        return;
    struct block *b = store_get(ds->store, m->block_id);
    imgstore__stat_block__free_unpacked(m, NULL);
    if (!b) {
        ds_req_fail(r, IMG_ENOBLOCKHERE);
        return;
    }
    Imgstore__BlockInfo bi = IMGSTORE__BLOCK_INFO__INIT;
    bi.block_id = b->id;
    /* A copy with appends in flight has no settled size yet. */
    bi.size = b->tail == b->durable_tail ? b->durable_tail : 0;
    bi.file_count = block_file_count(b);
    bi.deleted_bytes = b->deleted_bytes;
    bi.sealed = b->sealed;
    bi.primary = b->primary;
    bi.corrupt = b->corrupt;
    ds_req_answer(r, 0, &bi.base, NULL, 0, NULL);
}

/* Gives back one step of a deleted block's file. Returns 1 while there is
 * more to give back, 0 when the file is ready to be closed. The file is no
 * longer named and no read can start on it; one still in flight (it holds
 * the shared descriptor) is waited for, so it never reads a cut file. */
static int grave_shrink(struct grave *g)
{
    struct block *b = g->b;
    if (b->fd < 0)
        return 0;
    if (b->file && b->file->refs > 1)
        return 1;
    if (g->left < 0) {
        struct stat st;
        g->left = fstat(b->fd, &st) == 0 ? (int64_t)st.st_size : 0;
    }
    if (g->left <= (int64_t)GRAVE_STEP_BYTES)
        return 0;
    g->left -= GRAVE_STEP_BYTES;
    if (ftruncate(b->fd, g->left) != 0) {
        log_warn("block %" PRIu64 ": giving back its deleted file: %s", b->id, strerror(errno));
        return 0;
    }
    return 1;
}

static void grave_tick(uv_timer_t *t)
{
    struct ds_removals *dr = t->data;
    uint64_t now = uv_now(dr->ds->loop);
    for (struct grave **pp = &dr->graves; *pp;) {
        struct grave *g = *pp;
        if (g->close_at_ms > now) {
            pp = &g->next;
            continue;
        }
        if (grave_shrink(g)) {
            pp = &g->next;
            continue;
        }
        *pp = g->next;
        blockio_release(g->b);
        block_close(g->b);
        free(g);
    }
    if (!dr->graves)
        uv_timer_stop(t);
}

static void bury(struct ds *ds, struct ds_removals *dr, struct grave *g, struct block *b);

static int removed_add(struct ds_removals *dr, uint64_t id)
{
    int rc = ARRAY_RESERVE(dr->removed, dr->removed_cap, dr->nremoved + 1, 64);
    if (rc != 0)
        return rc;
    dr->removed[dr->nremoved++] = id;
    return 0;
}

/* Deletes this server's copy of block `id` when no append is in flight and
 * it holds no more than `expected` bytes (what every kept copy holds: a
 * shorter copy is a stale prefix). Returns 0 (also when not here) or an
 * error. */
static int delete_block(struct ds *ds, uint64_t id, uint64_t expected, int any_size)
{
    struct ds_removals *dr = removals_state(ds);
    struct grave *g = calloc(1, sizeof(*g));
    if (!dr || !g || removed_add(dr, 0) != 0) {
        free(g);
        return -ENOMEM;
    }
    dr->nremoved--; /* room reserved: the add below cannot fail */
    struct block *b = store_get(ds->store, id);
    int rc = 0;
    if (!b)
        rc = 1;
    else if (b->tail != b->durable_tail)
        rc = IMG_EINVAL;
    else if (b->durable_tail > expected && !any_size)
        rc = IMG_EOFFSET;
    if (rc != 0) {
        free(g);
        return rc == 1 ? 0 : rc;
    }
    store_remove_block(ds->store, id);
    rc = block_unlink_files(b);
    if (rc != 0)
        log_warn("block %" PRIu64 ": removing its files: %s", id, img_strerror(rc));
    bury(ds, dr, g, b);
    log_info("block %" PRIu64 " deleted (%" PRIu64 " bytes) at the nameserver's request", id,
             expected);
    ds_session_poke(ds);
    return 0;
}

int ds_block_drop(struct ds *ds, uint64_t id)
{
    struct ds_removals *dr = removals_state(ds);
    struct grave *g = calloc(1, sizeof(*g));
    if (!dr || !g || removed_add(dr, 0) != 0) {
        free(g);
        return -ENOMEM;
    }
    dr->nremoved--; /* room reserved: the add in bury cannot fail */
    struct block *b = store_get(ds->store, id);
    int rc = !b ? IMG_ENOBLOCKHERE : b->compacting || b->tail != b->durable_tail ? -EBUSY : 0;
    if (rc != 0) {
        free(g);
        return rc;
    }
    store_remove_block(ds->store, id);
    bury(ds, dr, g, b);
    return 0;
}

/* Closes b (already out of the store) after DS_DELETE_GRACE_MS, and lists
 * its id as removed for the next heartbeat (room reserved by the caller). */
static void bury(struct ds *ds, struct ds_removals *dr, struct grave *g, struct block *b)
{
    uint64_t id = b->id;
    g->b = b;
    g->close_at_ms = uv_now(ds->loop) + DS_DELETE_GRACE_MS;
    g->left = -1;
    g->next = dr->graves;
    dr->graves = g;
    if (!dr->timer_started) {
        uv_timer_init(ds->loop, &dr->grave_timer);
        dr->grave_timer.data = dr;
        dr->timer_started = 1;
    }
    if (!uv_is_active((uv_handle_t *)&dr->grave_timer))
        uv_timer_start(&dr->grave_timer, grave_tick, GRAVE_TICK_MS, GRAVE_TICK_MS);
    dr->removed[dr->nremoved++] = id;
}

void ds_block_delete(struct ds_req *r, const struct frame *f)
{
    struct ds *ds = r->ds;
    Imgstore__DeleteBlock *m = ds_req_unpack(r, f, &imgstore__delete_block__descriptor);
    if (!m)
        return;
    if (m->shards && m->tombs_to && *m->tombs_to) { /* a moved shard's old copy */
        ds_ec_hand_over(r, m->block_id, m->tombs_to);
        imgstore__delete_block__free_unpacked(m, NULL);
        return;
    }
    int rc = m->shards ? ds_ec_drop(ds, m->block_id)
                       : delete_block(ds, m->block_id, m->expected_size, m->any_size);
    if (rc != 0)
        log_warn("delete of block %" PRIu64 " refused: %s", m->block_id, img_strerror(rc));
    imgstore__delete_block__free_unpacked(m, NULL);
    Imgstore__DeleteBlockResp resp = IMGSTORE__DELETE_BLOCK_RESP__INIT;
    ds_req_answer(r, rc, rc == 0 ? &resp.base : NULL, NULL, 0, NULL);
}

/* Applies SET_REPLICAS: the receiver takes the listed replicas (primary
 * first) and its role. It may be left out of the list only when not made
 * primary (a copy about to be caught up or dropped, or held out by the
 * delete journal: then the list may be empty). The primary role is
 * taken only by a sealed block, so a writable block never gets a second
 * writer. Returns 0 or an error; *size gets the tail (next append offset). */
static int set_replicas(struct ds *ds, const Imgstore__SetReplicas *m, uint64_t *size)
{
    struct block *b = store_get(ds->store, m->block_id);
    if (!b)
        return IMG_ENOBLOCKHERE;
    /* The tail, not the durable tail: an append in flight goes to the
     * replicas of the old list, so a copy joining with this list must be at
     * least this long to hold it (ns_plan.c, joining the set). */
    *size = b->tail;
    if (m->n_replicas < 1 || m->n_replicas > BLOCK_MAX_REPLICAS)
        return IMG_EINVAL;
    /* A set older than ours comes from a nameserver that has not heard of
     * the newer one yet (restarted, safe mode): it must not undo it. */
    if (m->version < b->set_version)
        return IMG_ESTALE;
    struct block_replica reps[BLOCK_MAX_REPLICAS];
    memset(reps, 0, sizeof(reps));
    int me = -1;
    for (size_t i = 0; i < m->n_replicas; i++) {
        if (ds_block_replica(m->replicas[i], &reps[i]) != 0)
            return IMG_EINVAL;
        if (strcmp(reps[i].server_id, ds->store->server_id) == 0)
            me = (int)i;
    }
    if (m->primary && me != 0)
        return IMG_EINVAL;
    if (m->primary && !b->sealed) {
        /* Only a sealed block changes primary: no second writer ever. */
        int rc = block_seal(b);
        if (rc != 0)
            return rc;
        log_info("block %" PRIu64 " sealed to take the primary role", b->id);
    }
    int was = b->primary;
    /* The same set again (the nameserver asking the primary for its tail,
     * or re-sending a view): nothing to save, so no fsync on the loop. */
    int same = b->nreplicas == (int)m->n_replicas && b->primary == (m->primary != 0) &&
               memcmp(b->replicas, reps, m->n_replicas * sizeof(reps[0])) == 0 &&
               (me < 0 || b->set_version == m->version);
    if (b->stale != (me < 0))
        log_info("block %" PRIu64 ": %s the replica set", b->id,
                 me < 0 ? "left out of (not served until caught up)" : "back in");
    b->stale = me < 0;
    memcpy(b->replicas, reps, sizeof(reps));
    b->nreplicas = (int)m->n_replicas;
    b->primary = m->primary != 0;
    if (me >= 0)
        b->set_version = m->version; /* a copy left out stays of its older set */
    if (b->primary && block_lonely_clear(b, m->members_size))
        log_info("block %" PRIu64 ": every member holds our last records again", b->id);
    if (same)
        return 0;
    int rc = block_save_meta(b);
    if (was != b->primary)
        log_info("block %" PRIu64 ": %s by the nameserver (%zu replicas)", b->id,
                 b->primary ? "promoted to primary" : "demoted to secondary", m->n_replicas);
    ds_block_changed(ds, b);
    return rc;
}

void ds_block_set_replicas(struct ds_req *r, const struct frame *f)
{
    struct ds *ds = r->ds;
    Imgstore__SetReplicas *m = ds_req_unpack(r, f, &imgstore__set_replicas__descriptor);
    if (!m)
        return;
    uint64_t size = 0;
    int rc = set_replicas(ds, m, &size);
    if (rc != 0 && rc != IMG_ENOBLOCKHERE)
        log_warn("SET_REPLICAS of block %" PRIu64 " refused: %s", m->block_id,
                 img_strerror(rc));
    imgstore__set_replicas__free_unpacked(m, NULL);
    Imgstore__SetReplicasResp resp = IMGSTORE__SET_REPLICAS_RESP__INIT;
    resp.size = size;
    ds_req_answer(r, rc, rc == 0 ? &resp.base : NULL, NULL, 0, NULL);
}

/* ---- heartbeat support and shut-down -------------------------------------------- */

size_t ds_block_removed(struct ds *ds, const uint64_t **ids)
{
    struct ds_removals *dr = ds->removals;
    *ids = dr ? dr->removed : NULL;
    return dr ? dr->nremoved : 0;
}

void ds_block_removed_sent(struct ds *ds, size_t n)
{
    struct ds_removals *dr = ds->removals;
    if (!dr || n == 0)
        return;
    if (n > dr->nremoved)
        n = dr->nremoved;
    memmove(dr->removed, dr->removed + n, (dr->nremoved - n) * sizeof(*dr->removed));
    dr->nremoved -= n;
}

void ds_block_stop(struct ds *ds)
{
    struct ds_removals *dr = ds->removals;
    if (!dr)
        return;
    while (dr->graves) {
        struct grave *g = dr->graves;
        dr->graves = g->next;
        blockio_release(g->b);
        block_close(g->b);
        free(g);
    }
    if (dr->timer_started)
        uv_close((uv_handle_t *)&dr->grave_timer, NULL);
}
