/* ns_pool.c - the writable-block pool, block placement and the planner that
 * keeps the pool filled.
 *
 * The pool is a short list of candidate block ids (unsealed blocks seen in
 * reports or just created); whether a candidate is writable is decided at the
 * moment it is handed out (ns_block_writable), so a block whose server went
 * down simply stops being offered. The planner (every NS_TICK_MS, and when an
 * ALLOC_WRITE finds nothing) creates blocks until at least
 * max(NS_POOL_MIN_TARGET, up servers) are writable, with at most
 * NS_MAX_CREATES_INFLIGHT creations in flight. A block enters the map only
 * when every chosen server answered CREATE_BLOCK with status 0. While a new
 * term settles (--etcd, ns_settle_check) only servers that sent this leader
 * their full report take new blocks, and only blocks all of whose holders
 * did are handed out.
 *
 * Policy layer: calls the map, the registry, ns_meta.c (block ids) and
 * ns_core.c (random ties), and sends on dataserver sessions (net/conn.h). */
#include "nameserver/ns.h"

#include "net/conn.h"
#include "base/array.h"
#include "base/err.h"
#include "base/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* The writable margin is NS_WRITABLE_MARGIN, or a 1/NS_WRITABLE_MARGIN_DIV of
 * the block for small blocks, so that a 1 MiB block can still take files. */
#define NS_WRITABLE_MARGIN_DIV 16
#define NS_CREATE_RETRY_MS 1000 /* pause after a failed creation */
/* Free space is compared in units of this many blocks, so servers whose free
 * bytes differ by less (e.g. dataservers sharing one file system) count as
 * tied and share new blocks at random instead of one always winning. */
#define NS_PLACE_FREE_QUANTUM_BLOCKS 16
/* Used fractions (used / capacity) compare in whole points, so new blocks go
 * to the emptier servers first (docs/nameserver.md, balance) while servers
 * within one point share them; free bytes decide among those. */
#define NS_PLACE_USED_POINTS 100

static uint64_t writable_limit(uint64_t block_size)
{
    uint64_t margin = block_size / NS_WRITABLE_MARGIN_DIV;
    if (margin > NS_WRITABLE_MARGIN)
        margin = NS_WRITABLE_MARGIN;
    return block_size - margin;
}

int ns_block_writable(const struct ns *ns, const struct ns_block *b)
{
    if (b->sealed || b->primary == NS_NO_PRIMARY || b->nrep != ns->meta.replicas)
        return 0;
    if (ns_block_up_reps(ns, b) != b->nrep)
        return 0;
    for (unsigned i = 0; i < b->nrep; i++) {
        const struct ns_server *s = ns->servers[b->rep[i]];
        if (s->draining || s->readonly)
            return 0; /* everything moves off a draining server; a read-only one takes no files */
        if (!ns_server_has_room(ns, s, 0))
            return 0; /* a full server takes no more files: uploads go elsewhere */
    }
    return b->size < writable_limit(ns->meta.block_size);
}

struct cand {
    struct ns_server *s;
    uint64_t used_points; /* used fraction in points (capacity 0: full) */
    uint64_t free_units;  /* free bytes / quantum */
    uint64_t tie;
};

static int cmp_cand(const void *a, const void *b)
{
    const struct cand *x = a, *y = b;
    if (x->used_points != y->used_points)
        return x->used_points < y->used_points ? -1 : 1;
    if (x->free_units != y->free_units)
        return x->free_units > y->free_units ? -1 : 1;
    return x->tie < y->tie ? -1 : x->tie > y->tie;
}

int ns_pool_place(struct ns *ns, unsigned n, struct ns_server **out)
{
    if (n == 0 || n > NS_BLOCK_SLOTS)
        return IMG_EINVAL;
    struct cand *c = malloc((ns->nservers + 1) * sizeof(*c));
    if (!c)
        return -ENOMEM;
    uint64_t quantum = ns->meta.block_size * NS_PLACE_FREE_QUANTUM_BLOCKS;
    size_t nc = 0;
    for (size_t i = 0; i < ns->nservers; i++) {
        struct ns_server *s = ns->servers[i];
        /* A new term: only servers that take our commands already (they
         * sent us, as leader, their full report). */
        if (s->up && !s->readonly && !s->draining && (!ns->settling || s->term_reported) &&
            ns_server_has_room(ns, s, ns->meta.block_size))
            c[nc++] = (struct cand){
                .s = s,
                .used_points = s->capacity ? s->used * NS_PLACE_USED_POINTS / s->capacity
                                           : NS_PLACE_USED_POINTS,
                .free_units = s->free / quantum,
                .tie = ns_rand(ns)};
    }
    int rc = IMG_ENOBLOCK;
    if (nc >= n) {
        if (nc > 1)
            qsort(c, nc, sizeof(*c), cmp_cand);
        for (unsigned i = 0; i < n; i++)
            out[i] = c[i].s;
        rc = 0;
    }
    free(c);
    return rc;
}

int ns_pool_add(struct ns *ns, struct ns_block *b)
{
    if (b->in_pool)
        return 0;
    int rc = ARRAY_RESERVE(ns->pool, ns->pool_cap, ns->npool + 1, 64);
    if (rc != 0)
        return rc;
    ns->pool[ns->npool++] = b->id;
    b->in_pool = 1;
    return 0;
}

int ns_pool_add_created(struct ns *ns, uint64_t id, struct ns_server *const *reps, unsigned n)
{
    struct ns_block *b = ns_blocks_add_created(ns, id, reps, n);
    return b ? ns_pool_add(ns, b) : -ENOMEM;
}

size_t ns_pool_prune(struct ns *ns)
{
    /* Clear every flag first, so an id listed twice (a block dropped and
     * reported again) is kept once. */
    for (size_t i = 0; i < ns->npool; i++) {
        struct ns_block *b = ns_blocks_get(&ns->blocks, ns->pool[i]);
        if (b)
            b->in_pool = 0;
    }
    size_t keep = 0;
    for (size_t i = 0; i < ns->npool; i++) {
        struct ns_block *b = ns_blocks_get(&ns->blocks, ns->pool[i]);
        if (!b || b->in_pool || !ns_block_writable(ns, b))
            continue;
        b->in_pool = 1;
        ns->pool[keep++] = b->id;
    }
    ns->npool = keep;
    return keep;
}

/* A new term (settling): whether every holder of block id sent us its
 * full report as leader, so its primary takes writes (its role confirmed
 * by our answer) and no command of the last leader on it is unknown. */
static int reps_reported(const struct ns *ns, uint64_t id)
{
    const struct ns_block *b = ns_blocks_get(&ns->blocks, id);
    if (!b)
        return 0;
    for (unsigned i = 0; i < b->nrep; i++)
        if (!ns->servers[b->rep[i]]->term_reported)
            return 0;
    return 1;
}

size_t ns_pool_pick(struct ns *ns, const uint64_t *exclude, size_t nexcl, uint64_t *ids,
                    size_t max)
{
    size_t n = ns_pool_prune(ns);
    uint64_t *cands = malloc((n + 1) * sizeof(*cands));
    if (!cands)
        return 0;
    size_t nc = 0;
    for (size_t i = 0; i < n; i++)
        if (!array_has_u64(exclude, nexcl, ns->pool[i]) &&
            (!ns->settling || reps_reported(ns, ns->pool[i])))
            cands[nc++] = ns->pool[i];
    size_t out = 0;
    for (; out < max && out < nc; out++) { /* partial Fisher-Yates */
        size_t j = out + (size_t)(ns_rand(ns) % (nc - out));
        uint64_t t = cands[out];
        cands[out] = cands[j];
        cands[j] = t;
        ids[out] = cands[out];
    }
    free(cands);
    return out;
}

/* One block creation in flight: owned by the planner until the last
 * CREATE_BLOCK answer (or failure) arrives. */
struct ns_create {
    struct ns *ns;
    uint64_t id;
    unsigned n;
    uint16_t srv[NS_MAX_REPLICAS];
    unsigned outstanding; /* answers still due, +1 while sending */
    int err;              /* first failure, 0 when all succeeded */
    uint16_t err_srv;
};

static void create_finish(struct ns_create *cr)
{
    struct ns *ns = cr->ns;
    ns->creates_inflight--;
    if (ns->stopping)
        goto out;
    struct ns_server *reps[NS_MAX_REPLICAS];
    for (unsigned i = 0; i < cr->n; i++)
        reps[i] = ns->servers[cr->srv[i]];
    if (cr->err) {
        log_warn("block %llu not created: %s answered %s; dropped", (unsigned long long)cr->id,
                 ns->servers[cr->err_srv]->id, img_strerror(cr->err));
        if (ns->loop)
            ns->create_retry_ms = uv_now(ns->loop) + NS_CREATE_RETRY_MS;
        goto out;
    }
    int rc = ns_pool_add_created(ns, cr->id, reps, cr->n);
    if (rc) {
        log_error("block %llu: cannot record it: %s", (unsigned long long)cr->id,
                  img_strerror(rc));
        goto out;
    }
    log_info("block %llu created on %s%s%s%s%s (primary first)", (unsigned long long)cr->id,
             reps[0]->id, cr->n > 1 ? ", " : "", cr->n > 1 ? reps[1]->id : "",
             cr->n > 2 ? ", " : "", cr->n > 2 ? reps[2]->id : "");
out:
    free(cr);
}

static void create_fail(struct ns_create *cr, unsigned i, int err)
{
    if (!cr->err) {
        cr->err = err;
        cr->err_srv = cr->srv[i];
    }
}

/* One CREATE_BLOCK request: which creation, and which of its servers (so a
 * failure can name the server). Freed by its reply callback. */
struct create_req {
    struct ns_create *cr;
    unsigned i;
};

static void create_reply_cb(int status, const struct frame *f, void *arg)
{
    struct create_req *rq = arg;
    struct ns_create *cr = rq->cr;
    int err = status ? status : (f ? f->h.status : IMG_ECONN);
    if (err)
        create_fail(cr, rq->i, err);
    free(rq);
    if (--cr->outstanding == 0)
        create_finish(cr);
}

/* Sends CREATE_BLOCK for cr->id to server i of cr. */
static void create_send(struct ns_create *cr, struct ns_server **chosen, unsigned i)
{
    Imgstore__Replica reps[NS_MAX_REPLICAS];
    Imgstore__Replica *rp[NS_MAX_REPLICAS];
    for (unsigned k = 0; k < cr->n; k++) {
        imgstore__replica__init(&reps[k]);
        reps[k].server_id = chosen[k]->id;
        reps[k].addr = chosen[k]->addr;
        reps[k].http_addr = chosen[k]->http_addr;
        rp[k] = &reps[k];
    }
    Imgstore__CreateBlock msg = IMGSTORE__CREATE_BLOCK__INIT;
    msg.block_id = cr->id;
    msg.block_size = cr->ns->meta.block_size;
    msg.primary = i == 0;
    msg.n_replicas = cr->n;
    msg.replicas = rp;
    struct create_req *rq = malloc(sizeof(*rq));
    int rc = -ENOMEM;
    if (rq && chosen[i]->conn) {
        *rq = (struct create_req){.cr = cr, .i = i};
        rc = conn_request(chosen[i]->conn, FT_CREATE_BLOCK, &msg.base, NULL, 0, NULL,
                          NS_CREATE_TIMEOUT_MS, create_reply_cb, rq);
    } else if (rq) {
        rc = IMG_ECONN;
    }
    if (rc) {
        free(rq);
        create_fail(cr, i, rc);
        return;
    }
    cr->outstanding++;
}

/* Starts one block creation. Returns 0 or an error when none was started. */
static int create_start(struct ns *ns)
{
    struct ns_server *chosen[NS_MAX_REPLICAS];
    unsigned n = ns->meta.replicas;
    int rc = ns_pool_place(ns, n, chosen);
    if (rc) {
        if (!ns->warned_few_servers)
            log_warn("not creating blocks: fewer than %u servers up, writable and with room "
                     "above their reserve (%u up)",
                     n, ns_registry_up_count(ns));
        ns->warned_few_servers = 1;
        return rc;
    }
    if (ns->warned_few_servers)
        log_info("enough servers up to create blocks");
    ns->warned_few_servers = 0;
    struct ns_create *cr = calloc(1, sizeof(*cr));
    if (!cr)
        return -ENOMEM;
    if ((rc = ns_meta_alloc_id(&ns->meta, &cr->id)) != 0) {
        log_error("cannot allocate a block id: %s", img_strerror(rc));
        free(cr);
        return rc;
    }
    cr->ns = ns;
    cr->n = n;
    for (unsigned i = 0; i < n; i++)
        cr->srv[i] = chosen[i]->idx;
    cr->outstanding = 1; /* held while sending, so no answer finishes it early */
    ns->creates_inflight++;
    for (unsigned i = 0; i < n; i++)
        create_send(cr, chosen, i);
    if (--cr->outstanding == 0)
        create_finish(cr);
    return 0;
}

void ns_pool_plan(struct ns *ns)
{
    if (ns->stopping || !ns->loop)
        return;
    if (ns->create_retry_ms && uv_now(ns->loop) < ns->create_retry_ms)
        return;
    size_t writable = ns_pool_prune(ns);
    size_t up = ns_registry_up_count(ns);
    size_t target = up > NS_POOL_MIN_TARGET ? up : NS_POOL_MIN_TARGET;
    /* Bounded: a creation that fails at once does not count as in flight. */
    for (unsigned k = 0; k < NS_MAX_CREATES_INFLIGHT && writable + ns->creates_inflight < target &&
                         ns->creates_inflight < NS_MAX_CREATES_INFLIGHT;
         k++) {
        if (create_start(ns) != 0)
            break;
    }
}
