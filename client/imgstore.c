/* imgstore.c - the public client library (client/imgstore.h) and its admin
 * call (client/admin.h).
 *
 * Each public call runs under one whole-operation deadline (timeout_ms) and
 * every single request under io_timeout_ms (never past the deadline). The
 * rules for retrying are the protocol's: which errors are worth another
 * attempt is proto/retry.h's table, which replicas of an answer are usable
 * is proto/replicas.h's rule (docs/protocol.md, docs/client.md); this file
 * decides only the waits and the order of attempts:
 *
 *   put    - a random cached writable block; a write refused by the block
 *            (EREPL, EFULL, ESEALED, ENOTPRIMARY, ENOBLOCKHERE) or lost to a
 *            connection error or timeout drops the block and tries another,
 *            excluding the failed ones from the next ALLOC_WRITE; ENOBLOCK
 *            (or ESAFEMODE, a timeout, an unreachable nameserver) from the
 *            nameserver waits 50 ms, growing to 200 ms, and retries.
 *   get    - replicas from the location cache, starting at a random one;
 *            unreachable, corrupt or missing replicas pass to the next one;
 *            EDELETED is final. A location that only failed is asked again
 *            once.
 *   unlink - to the primary; a location that names the wrong primary is
 *            asked again once.
 *
 * The nameserver may be a list (proto/nslist.h): a request goes to the one
 * that answered last, and on a connection failure, IMG_ENOTLEADER or (with
 * others to ask) a timeout to the leader the answer named, else to the next
 * one (ns_pass); a pass where none answered waits and goes round again.
 *
 * Threading: a handle holds no state outside its pool and caches, which
 * lock themselves, so every call may run on any number of threads. */
#include "client/admin.h"
#include "client/cache.h"
#include "client/imgstore.h"
#include "client/rpc.h"

#include "base/crc32c.h"
#include "base/err.h"
#include "net/auth.h"
#include "proto/fname.h"
#include "proto/frame.h"
#include "proto/mime.h"
#include "proto/nslist.h"
#include "proto/retry.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_TIMEOUT_MS 10000
#define DEFAULT_IO_TIMEOUT_MS 3000
#define PUT_MAX_BYTES (32u << 20)   /* the largest file imgstore_put accepts */
#define ALLOC_COUNT 4               /* writable blocks asked per ALLOC_WRITE */
#define PUT_MAX_EXCLUDE 32          /* failed blocks remembered per put */
#define NOBLOCK_WAIT_MIN_MS 50      /* first wait after IMG_ENOBLOCK */
#define NOBLOCK_WAIT_MAX_MS 200     /* longest wait after IMG_ENOBLOCK */
#define NS_RETRY_MIN_MS 50          /* first wait after the nameserver was unreachable */
#define NS_RETRY_MAX_MS 1000        /* longest wait between nameserver attempts */
#define STALE_LOOKUP_MS 500         /* how long a lookup may take while a stale location waits */
#define NS_AWAY_MS 1000             /* after such a lookup failed: stale locations without asking */
#define ROUND_WAIT_MIN_MS 20        /* first wait before another round of a read or delete */
#define ROUND_WAIT_MAX_MS 500       /* longest wait between rounds */

struct imgstore {
    struct nslist ns; /* the nameservers, read-only after open */
    int ns_cur;       /* index of the one that answered last (__atomic) */
    int64_t ns_away_until; /* no nameserver answered a lookup lately (__atomic) */
    int timeout_ms;
    int io_timeout_ms;
    struct rpc_pool pool;
    struct cache cache;
};

/* The public codes (client/imgstore.h, which includes nothing of ours) are
 * the protocol's (base/err.h): a renumbering on either side fails here. */
#define SAME_CODE(e) _Static_assert(IMGSTORE_##e == IMG_##e, "IMGSTORE_" #e " != IMG_" #e)
SAME_CODE(ENOTFOUND);
SAME_CODE(EDELETED);
SAME_CODE(ECORRUPT);
SAME_CODE(ENOBLOCK);
SAME_CODE(EPROTO);
SAME_CODE(EBADNAME);
SAME_CODE(ETOOBIG);
SAME_CODE(ETIMEDOUT);
SAME_CODE(EUNAVAIL);
SAME_CODE(ECONN);
SAME_CODE(EINVAL);
SAME_CODE(EAUTH);
SAME_CODE(EPERM);
SAME_CODE(EKEYFILE);
SAME_CODE(ENOTLEADER);
#undef SAME_CODE
_Static_assert(IMGSTORE_ADDR_MAX == ADDR_MAX, "IMGSTORE_ADDR_MAX != ADDR_MAX");

/* ---- handle ------------------------------------------------------------- */

int imgstore_open(const char *ns_addr, const struct imgstore_opts *opts, imgstore_t **out)
{
    if (!out)
        return IMGSTORE_EINVAL;
    *out = NULL;
    struct nslist ns;
    if (nslist_parse(ns_addr, &ns) != 0)
        return IMGSTORE_EINVAL;
    if (opts && (opts->timeout_ms < 0 || opts->io_timeout_ms < 0))
        return IMGSTORE_EINVAL;
    imgstore_t *h = calloc(1, sizeof(*h));
    if (!h)
        return -ENOMEM;
    h->ns = ns;
    h->timeout_ms = opts && opts->timeout_ms ? opts->timeout_ms : DEFAULT_TIMEOUT_MS;
    h->io_timeout_ms = opts && opts->io_timeout_ms ? opts->io_timeout_ms : DEFAULT_IO_TIMEOUT_MS;
    int rc = rpc_pool_init(&h->pool);
    if (rc != 0) {
        free(h);
        return rc;
    }
    rc = cache_init(&h->cache);
    if (rc != 0) {
        rpc_pool_destroy(&h->pool);
        free(h);
        return rc;
    }
    const char *kf = getenv("IMGSTORE_KEY_FILE");
    if (kf && *kf && (rc = imgstore_set_key_file(h, kf, NULL, 0)) != 0) {
        imgstore_close(h);
        return rc;
    }
    *out = h;
    return 0;
}

int imgstore_key_file_check(const char *path, char *err, size_t errlen)
{
    struct auth_key k;
    char why[AUTH_ERR_MAX];
    if (!path)
        return IMGSTORE_EINVAL;
    int rc = auth_key_file_load(path, &k, why);
    OPENSSL_cleanse(&k, sizeof(k));
    if (rc && err && errlen)
        snprintf(err, errlen, "%s", why);
    return rc;
}

int imgstore_set_key_file(imgstore_t *h, const char *path, char *err, size_t errlen)
{
    if (!h)
        return IMGSTORE_EINVAL;
    if (!path)
        return rpc_pool_set_key(&h->pool, NULL);
    struct auth_key k;
    char why[AUTH_ERR_MAX];
    int rc = auth_key_file_load(path, &k, why);
    if (rc == 0)
        rc = rpc_pool_set_key(&h->pool, &k);
    else if (err && errlen)
        snprintf(err, errlen, "%s", why);
    OPENSSL_cleanse(&k, sizeof(k));
    return rc;
}

void imgstore_close(imgstore_t *h)
{
    if (!h)
        return;
    rpc_pool_destroy(&h->pool);
    cache_destroy(&h->cache);
    free(h);
}

void imgstore_free(void *p)
{
    free(p);
}

const char *imgstore_strerror(int err)
{
    return img_strerror(err);
}

static int64_t op_deadline(const imgstore_t *h)
{
    return rpc_now_ms() + h->timeout_ms;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Waits *wait ms (never past the deadline) before another round of an
 * operation whose last round failed for a passing reason, and doubles *wait
 * up to ROUND_WAIT_MAX_MS. Returns 0 when the deadline has come (no wait). */
static int round_wait(int *wait, int64_t deadline)
{
    int64_t left = deadline - rpc_now_ms();
    if (left <= 0)
        return 0;
    sleep_ms(left < *wait ? (int)left : *wait);
    *wait = *wait * 2 > ROUND_WAIT_MAX_MS ? ROUND_WAIT_MAX_MS : *wait * 2;
    return rpc_now_ms() < deadline;
}

/* ---- requests ------------------------------------------------------------ */

/* Sends a request with no bodies to `addr` and unpacks the response head with
 * `desc`. Returns 0 with *msg (owned by the caller, free with
 * protobuf_c_message_free_unpacked), the server's error status, or a
 * transport error. When the status is IMG_ENOTLEADER and `leader` is not
 * NULL, the leader its NotLeader head names (a valid address, else "") is
 * copied to leader[ADDR_MAX]. */
static int call_msg(imgstore_t *h, const char *addr, unsigned type, const ProtobufCMessage *req,
                    int64_t deadline, const ProtobufCMessageDescriptor *desc,
                    ProtobufCMessage **msg, char *leader)
{
    struct rpc_resp resp;
    *msg = NULL;
    if (leader)
        leader[0] = '\0';
    int rc = rpc_call(&h->pool, addr, type, req, NULL, 0, 0, h->io_timeout_ms, deadline, &resp);
    if (rc != 0)
        return rc;
    rc = resp.status;
    if (rc == 0) {
        *msg = rpc_unpack(&resp, desc);
        if (!*msg)
            rc = IMG_EPROTO;
    } else if (rc == IMG_ENOTLEADER && leader && resp.head_len > 0) {
        Imgstore__NotLeader *nl =
            (Imgstore__NotLeader *)rpc_unpack(&resp, &imgstore__not_leader__descriptor);
        if (nl && nl->leader_addr && addr_check(nl->leader_addr) == 0)
            snprintf(leader, ADDR_MAX, "%s", nl->leader_addr);
        if (nl)
            imgstore__not_leader__free_unpacked(nl, NULL);
    }
    rpc_resp_free(&resp);
    return rc;
}

/* Whether a nameserver's answer sends the caller to another one: it could
 * not be reached, it is not the leader, or (when there are others to ask)
 * it did not answer in time. */
static int ns_failover(int rc, int n)
{
    return rc == IMG_ECONN || rc == IMG_ENOTLEADER || (rc == IMG_ETIMEDOUT && n > 1);
}

/* One pass over the nameserver list: first the one that answered last,
 * then, after a failover answer, the leader it named (when there is one
 * not asked yet), else the next one not asked yet. The nameserver that
 * gives another answer becomes the current one. Returns that answer (as
 * call_msg), or the last failover answer when every one was asked. */
static int ns_pass(imgstore_t *h, unsigned type, const ProtobufCMessage *req, int64_t deadline,
                   const ProtobufCMessageDescriptor *desc, ProtobufCMessage **msg)
{
    int n = h->ns.n;
    int idx = __atomic_load_n(&h->ns_cur, __ATOMIC_RELAXED);
    if (idx < 0 || idx >= n)
        idx = 0;
    unsigned asked = 0; /* bit i: h->ns.addr[i] was asked */
    int outside = 0;    /* leaders asked that are not in the list */
    char hint[ADDR_MAX], other[ADDR_MAX];
    const char *addr = h->ns.addr[idx];
    for (;;) {
        int rc = call_msg(h, addr, type, req, deadline, desc, msg, hint);
        if (idx >= 0)
            asked |= 1u << idx;
        if (!ns_failover(rc, n)) {
            if (idx >= 0)
                __atomic_store_n(&h->ns_cur, idx, __ATOMIC_RELAXED);
            return rc;
        }
        if (rpc_now_ms() >= deadline)
            return rc;
        int next = hint[0] ? nslist_find(&h->ns, hint) : -1;
        if (hint[0] && next < 0 && outside < NSLIST_MAX) {
            /* A leader our list does not name (the list is out of date):
             * asked, but never made the current one. */
            outside++;
            memcpy(other, hint, sizeof(other));
            idx = -1;
            addr = other;
            continue;
        }
        if (next >= 0 && (asked & (1u << next)))
            next = -1;
        for (int k = 1; next < 0 && k <= n; k++) {
            int j = (idx < 0 ? k - 1 : idx + k) % n;
            if (!(asked & (1u << j)))
                next = j;
        }
        if (next < 0)
            return rc;
        idx = next;
        addr = h->ns.addr[idx];
    }
}

/* ns_pass, retried with growing waits while no nameserver can be reached
 * (restarting, or a network blip) or none leads (an election), until the
 * deadline. Returns what the last attempt returned. */
static int call_ns(imgstore_t *h, unsigned type, const ProtobufCMessage *req, int64_t deadline,
                   const ProtobufCMessageDescriptor *desc, ProtobufCMessage **msg)
{
    int wait = NS_RETRY_MIN_MS, last = 0;
    for (;;) {
        int rc = ns_pass(h, type, req, deadline, desc, msg);
        if (rc == IMG_ETIMEDOUT && last)
            return last; /* time ran out while no nameserver could be reached, or none led */
        if (rc != IMG_ECONN && rc != IMG_ENOTLEADER)
            return rc;
        last = rc;
        int64_t left = deadline - rpc_now_ms();
        if (left <= 0)
            return rc;
        sleep_ms(left < wait ? (int)left : wait);
        wait = wait * 2 > NS_RETRY_MAX_MS ? NS_RETRY_MAX_MS : wait * 2;
    }
}

/* Asks the nameserver for writable blocks and adds the usable ones to the
 * cache. Returns 0, IMG_ENOBLOCK when none came back, or an error. */
static int alloc_write(imgstore_t *h, uint64_t *excl, size_t nexcl, int64_t deadline)
{
    Imgstore__AllocWrite req = IMGSTORE__ALLOC_WRITE__INIT;
    req.count = ALLOC_COUNT;
    req.exclude = excl;
    req.n_exclude = nexcl;
    ProtobufCMessage *m;
    int rc = call_ns(h, FT_ALLOC_WRITE, &req.base, deadline,
                     &imgstore__alloc_write_resp__descriptor, &m);
    if (rc != 0)
        return rc;
    Imgstore__AllocWriteResp *resp = (Imgstore__AllocWriteResp *)m;
    int added = 0;
    for (size_t i = 0; i < resp->n_blocks; i++) {
        Imgstore__WritableBlock *b = resp->blocks[i];
        struct cache_loc l;
        if (!b || b->block_id > FNAME_MAX_BLOCK_ID ||
            cache_loc_from_replicas(&l, b->block_id, b->replicas, b->n_replicas,
                                    REPLICAS_WRITE) != 0)
            continue;
        cache_writable_add(&h->cache, &l);
        cache_loc_put(&h->cache, &l);
        added++;
    }
    protobuf_c_message_free_unpacked(m, NULL);
    return added ? 0 : IMG_ENOBLOCK;
}

/* Asks the nameserver where block_id lives and caches the answer. Returns 0
 * with *out, IMG_ENOTFOUND when the nameserver knows no such block,
 * IMG_EUNAVAIL when it has no live replica right now, or an
 * error. */
static int lookup(imgstore_t *h, uint64_t block_id, int64_t deadline, struct cache_loc *out)
{
    Imgstore__Lookup req = IMGSTORE__LOOKUP__INIT;
    req.block_ids = &block_id;
    req.n_block_ids = 1;
    ProtobufCMessage *m;
    int rc = call_ns(h, FT_LOOKUP, &req.base, deadline, &imgstore__lookup_resp__descriptor,
                     &m);
    if (rc != 0)
        return rc;
    Imgstore__LookupResp *resp = (Imgstore__LookupResp *)m;
    rc = IMG_ENOTFOUND;
    for (size_t i = 0; i < resp->n_locations; i++) {
        Imgstore__BlockLocation *bl = resp->locations[i];
        if (!bl || bl->block_id != block_id)
            continue;
        if (cache_loc_from_replicas(out, block_id, bl->replicas, bl->n_replicas,
                                    REPLICAS_READ) != 0) {
            /* erasure-coded with its replicated copies gone: shards only */
            memset(out, 0, sizeof(*out));
            out->block_id = block_id;
            if (bl->n_replicas != 0 || cache_loc_add_shards(out, bl) == 0)
                continue;
        } else if (bl->ec_k) {
            cache_loc_add_shards(out, bl);
        }
        out->sealed = bl->sealed;
        cache_loc_put(&h->cache, out);
        rc = 0;
        break;
    }
    for (size_t i = 0; rc != 0 && i < resp->n_unavailable; i++)
        if (resp->unavailable[i] == block_id)
            rc = IMG_EUNAVAIL; /* no live holder right now: not final */
    protobuf_c_message_free_unpacked(m, NULL);
    return rc;
}

/* How locate() may answer, and where its answer came from. */
enum locate_mode {
    LOCATE_CACHED, /* the cache, while its entry lives */
    LOCATE_VERIFY, /* ask the nameserver; a cached entry only if it cannot answer */
    LOCATE_FRESH,  /* ask the nameserver, whole deadline, no fallback */
};
enum locate_from {
    FROM_NS,       /* the nameserver's answer, just now */
    FROM_CACHE,    /* a cached answer, not checked */
    FROM_FALLBACK, /* a cached answer: the nameserver could not be asked just now */
};

/* Returns the location of block_id from the cache or the nameserver, as
 * `mode` allows; *from tells which.
 *
 * When only an expired location is cached (not a dropped one), or the mode
 * is LOCATE_VERIFY, the nameserver gets STALE_LOOKUP_MS to answer; if it
 * cannot be reached in that time (down, frozen, cut off) or no nameserver
 * of the list leads, the cached location is used (and kept for another
 * TTL), and for NS_AWAY_MS the nameserver is not asked in this case: a
 * nameserver outage must not stop reads of blocks already located, nor
 * make each of them wait. LOCATE_FRESH (the last pass failed, or a replica
 * said the block moved) asks with the whole deadline and no fallback: a
 * location that failed must not send readers to lapsed copies that may have
 * been left out of their set (docs/chaos-findings.md, "a stale fallback
 * that served a deleted file"). */
static int locate(imgstore_t *h, uint64_t block_id, enum locate_mode mode, int64_t deadline,
                  struct cache_loc *out, enum locate_from *from)
{
    *from = FROM_NS;
    if (mode == LOCATE_CACHED && cache_loc_get(&h->cache, block_id, out) == 0) {
        *from = FROM_CACHE;
        return 0;
    }
    struct cache_loc stale;
    if (mode == LOCATE_FRESH || cache_loc_get_stale(&h->cache, block_id, &stale) != 0)
        return lookup(h, block_id, deadline, out);
    int64_t now = rpc_now_ms();
    int rc = IMG_ETIMEDOUT;
    if (now >= __atomic_load_n(&h->ns_away_until, __ATOMIC_RELAXED)) {
        int64_t short_deadline = now + STALE_LOOKUP_MS;
        rc = lookup(h, block_id, short_deadline < deadline ? short_deadline : deadline, out);
        if (rc == IMG_ETIMEDOUT || rc == IMG_ECONN || rc == IMG_ENOTLEADER)
            __atomic_store_n(&h->ns_away_until, rpc_now_ms() + NS_AWAY_MS, __ATOMIC_RELAXED);
    }
    if ((rc == IMG_ETIMEDOUT || rc == IMG_ECONN || rc == IMG_ENOTLEADER) &&
        rpc_now_ms() < deadline) {
        cache_loc_put(&h->cache, &stale);
        *out = stale;
        *from = FROM_FALLBACK;
        return 0;
    }
    return rc;
}

/* ---- put ----------------------------------------------------------------- */

/* Sends one WRITE to the primary of `b`. Returns 0 with the file name in
 * name_out, or the error of this attempt. */
static int put_once(imgstore_t *h, const struct cache_loc *b, const void *data, size_t len,
                    unsigned mime, uint32_t crc, int64_t deadline, char *name_out)
{
    Imgstore__Write req = IMGSTORE__WRITE__INIT;
    req.block_id = b->block_id;
    req.mime = mime;
    struct rpc_resp resp;
    int rc = rpc_call(&h->pool, b->addr[0], FT_WRITE, &req.base, data, (uint32_t)len, 0,
                      h->io_timeout_ms, deadline, &resp);
    if (rc != 0)
        return rc;
    Imgstore__WriteResp *wr = NULL;
    rc = resp.status;
    if (rc != 0)
        goto out;
    wr = (Imgstore__WriteResp *)rpc_unpack(&resp, &imgstore__write_resp__descriptor);
    if (!wr || (wr->block_id != 0 && wr->block_id != b->block_id)) {
        rc = IMG_EPROTO;
        goto out;
    }
    if (wr->crc32c != crc) {
        rc = IMG_ECORRUPT;
        goto out;
    }
    struct fname f = {.block_id = b->block_id, .seq = wr->seq, .cookie = wr->cookie};
    rc = fname_encode(&f, name_out);
out:
    if (wr)
        protobuf_c_message_free_unpacked(&wr->base, NULL);
    rpc_resp_free(&resp);
    return rc;
}

/* Gets a writable block not in excl, asking the nameserver when the cache
 * has none. Returns 0 with *b, or an error (IMG_ENOBLOCK: wait, retry). */
static int put_pick(imgstore_t *h, uint64_t *excl, size_t nexcl, int64_t deadline,
                    struct cache_loc *b)
{
    if (cache_writable_pick(&h->cache, excl, nexcl, b) == 0)
        return 0;
    int rc = alloc_write(h, excl, nexcl, deadline);
    if (rc != 0)
        return rc;
    return cache_writable_pick(&h->cache, excl, nexcl, b);
}

int imgstore_put(imgstore_t *h, const void *data, size_t len, const char *mime,
                 char name_out[IMGSTORE_NAME_MAX])
{
    if (!h || !name_out || !data || len == 0) /* an empty file is refused */
        return IMGSTORE_EINVAL;
    if (len > PUT_MAX_BYTES)
        return IMGSTORE_ETOOBIG;
    unsigned code = mime_pick(mime, data, len);
    uint32_t crc = crc32c(0, data, len);
    int64_t deadline = op_deadline(h);
    uint64_t excl[PUT_MAX_EXCLUDE];
    size_t nexcl = 0;
    int wait = NOBLOCK_WAIT_MIN_MS;
    /* At the deadline the caller learns the last reason an attempt failed
     * (a refused connection says so), not just that time ran out. */
    int last = IMGSTORE_ETIMEDOUT;
    for (;;) {
        int64_t left = deadline - rpc_now_ms();
        if (left <= 0)
            return last;
        struct cache_loc b;
        int rc = put_pick(h, excl, nexcl, deadline, &b);
        if (rc != 0)
            last = rc;
        if (retry_action(RETRY_ALLOC, rc) == RETRY_WAIT) {
            /* Nothing writable right now: the nameserver is creating blocks
             * (or restarting). Wait a little longer each time. When blocks
             * this call excluded (a write on them failed) are all the pool
             * has, the nameserver sees enough writable blocks and creates
             * none: they are allowed again, their trouble may be over (a
             * new leader confirming primaries; seen in ha/deposed_leader,
             * where uploads waited out their deadline). */
            if (rc == IMG_ENOBLOCK)
                nexcl = 0;
            sleep_ms(left < wait ? (int)left : wait);
            wait = wait * 2 > NOBLOCK_WAIT_MAX_MS ? NOBLOCK_WAIT_MAX_MS : wait * 2;
            continue;
        }
        if (rc != 0)
            return rc;
        rc = put_once(h, &b, data, len, code, crc, deadline, name_out);
        if (rc == 0)
            return 0;
        last = rc;
        if (retry_action(RETRY_WRITE, rc) == RETRY_WAIT) {
            /* The primary is at its receive budget: the same block, after
             * a pause that grows (the deadline still holds). */
            left = deadline - rpc_now_ms();
            if (left <= 0)
                return rc;
            sleep_ms(left < wait ? (int)left : wait);
            wait = wait * 2 > NOBLOCK_WAIT_MAX_MS ? NOBLOCK_WAIT_MAX_MS : wait * 2;
            continue;
        }
        if (retry_action(RETRY_WRITE, rc) != RETRY_OTHER)
            return rc;
        cache_writable_drop(&h->cache, b.block_id);
        if (retry_write_excludes(rc)) {
            cache_loc_drop(&h->cache, b.block_id);
            if (nexcl < PUT_MAX_EXCLUDE)
                excl[nexcl++] = b.block_id;
        }
    }
}

/* ---- get / stat ------------------------------------------------------------ */

/* What one replica answered to READ or STAT. */
struct read_result {
    Imgstore__ReadResp *rr; /* owned */
    uint8_t *body;          /* owned, READ only */
    uint32_t body_len;
};

static void read_result_free(struct read_result *r)
{
    if (r->rr)
        protobuf_c_message_free_unpacked(&r->rr->base, NULL);
    free(r->body);
    memset(r, 0, sizeof(*r));
}

/* How read_one asks (Read.any_view, Read.reconstruct). */
#define READ_ANY_VIEW 1u    /* serve with a lapsed view too */
#define READ_RECONSTRUCT 2u /* erasure-coded: rebuild the file from other shards */

/* Sends READ or STAT for f to one replica and checks the answer (size and
 * CRC32C of the body for READ). Returns 0 with *res (owned by the caller,
 * release with read_result_free) or the error of this replica. */
static int read_one(imgstore_t *h, const char *addr, unsigned type, const struct fname *f,
                    unsigned rflags, int64_t deadline, struct read_result *res)
{
    memset(res, 0, sizeof(*res));
    Imgstore__Read req = IMGSTORE__READ__INIT;
    req.block_id = f->block_id;
    req.seq = f->seq;
    req.cookie = f->cookie;
    req.any_view = (rflags & READ_ANY_VIEW) != 0;
    req.reconstruct = (rflags & READ_RECONSTRUCT) != 0;
    uint32_t max_body = type == FT_READ ? PUT_MAX_BYTES : 0;
    struct rpc_resp resp;
    int rc = rpc_call(&h->pool, addr, type, &req.base, NULL, 0, max_body, h->io_timeout_ms,
                      deadline, &resp);
    if (rc != 0)
        return rc;
    rc = resp.status;
    if (rc != 0)
        goto out;
    res->rr = (Imgstore__ReadResp *)rpc_unpack(&resp, &imgstore__read_resp__descriptor);
    if (!res->rr) {
        rc = IMG_EPROTO;
        goto out;
    }
    if (type == FT_READ) {
        if (resp.body_len != res->rr->size ||
            crc32c(0, resp.body, resp.body_len) != res->rr->crc32c) {
            rc = IMG_ECORRUPT;
            goto out;
        }
        res->body = resp.body;
        res->body_len = resp.body_len;
        resp.body = NULL;
    }
out:
    rpc_resp_free(&resp);
    if (rc != 0)
        read_result_free(res);
    return rc;
}

/* Tallies the replicas' errors of one pass to pick the error to report. */
struct read_tally {
    int notfound;
    int corrupt;
    int moved;  /* ENOBLOCKHERE: the location is stale */
    int lapsed; /* EVIEWOLD: a holder whose view lease lapsed (nameserver away?) */
    int other;
    int last;
};

/* One pass over the replicas of loc, starting at a random one. Returns 0
 * with *res (owned by the caller), IMG_EDELETED (final), IMG_ETIMEDOUT, or
 * -EAGAIN when every replica failed (*t says how). */
static int read_pass(imgstore_t *h, const struct cache_loc *loc, unsigned type,
                     const struct fname *f, unsigned rflags, int64_t deadline,
                     struct read_result *res, struct read_tally *t)
{
    uint32_t start = cache_random(&h->cache);
    for (int i = 0; i < loc->n; i++) {
        if (rpc_now_ms() >= deadline)
            return IMG_ETIMEDOUT;
        const char *addr = loc->addr[(start + (uint32_t)i) % (uint32_t)loc->n];
        int rc = read_one(h, addr, type, f, rflags, deadline, res);
        if (rc == 0 || retry_action(RETRY_READ, rc) == RETRY_FINAL)
            return rc;
        t->last = rc;
        if (rc == IMG_ENOTFOUND)
            t->notfound++;
        else if (rc == IMG_ECORRUPT)
            t->corrupt++;
        else if (rc == IMG_ENOBLOCKHERE)
            t->moved++;
        else if (rc == IMG_EVIEWOLD)
            t->lapsed++;
        else
            t->other++;
    }
    return -EAGAIN;
}

/* Maps a pass where every replica failed to the error the caller sees. */
static int read_verdict(const struct read_tally *t, int n)
{
    if (t->notfound == n)
        return IMG_ENOTFOUND;
    if (t->corrupt > 0)
        return IMG_ECORRUPT;
    if (t->notfound > 0)
        return IMG_ENOTFOUND;
    if (t->last == IMG_ETIMEDOUT)
        return IMG_ETIMEDOUT;
    return IMG_EUNAVAIL;
}

/* Reads f (READ or STAT) from any replica. On 0 *res and *loc are filled;
 * the caller releases *res.
 *
 * Rounds until the deadline: a round is one pass over the replicas of the
 * block's location. Only these end the call early: a replica's bytes (0),
 * EDELETED, ENOTFOUND from every replica of a location, ENOTFOUND from one
 * replica of a fresh location while the others failed (an authoritative
 * holder answered; the others could not say otherwise), or the nameserver
 * knowing no such block. Everything else (a replica unreachable, not
 * serving yet, damaged, no longer holding the block; no live holder right
 * now) asks the nameserver for a fresh location and goes round again after
 * a growing wait (docs/client.md). */
static int read_any(imgstore_t *h, const struct fname *f, unsigned type, int64_t deadline,
                    struct read_result *res, struct cache_loc *loc)
{
    int wait = ROUND_WAIT_MIN_MS, last = IMG_ETIMEDOUT;
    enum locate_mode mode = LOCATE_CACHED;
    for (;;) {
        enum locate_from from;
        int rc = locate(h, f->block_id, mode, deadline, loc, &from);
        if (rc == IMG_EUNAVAIL) {
            last = rc;
            if (!round_wait(&wait, deadline))
                return last;
            continue;
        }
        if (rc != 0)
            return rc;
        struct read_tally t = {0};
        struct cache_loc route; /* replicas, or the shard holder of f's seq */
        /* An encoded block whose data shard holding f has no listed holder
         * (down): the shard holders rebuild it at once (a holder answers
         * IMG_ENOTFOUND from its table for a seq it does not know). */
        unsigned first = cache_loc_route(loc, f->seq, &route) ? 0 : READ_RECONSTRUCT;
        rc = read_pass(h, &route, type, f, first, deadline, res, &t);
        if (rc == -EAGAIN && t.lapsed > 0 && from == FROM_CACHE) {
            /* Only holders whose view lapsed answered, from a cached
             * location: the nameserver may have moved the block's set on
             * without them (and deletes been acknowledged by the new set).
             * Ask it first; serve from them only if it cannot answer. */
            mode = LOCATE_VERIFY;
            continue;
        }
        if (rc == -EAGAIN && t.lapsed > 0) {
            /* No holder with a current view answered, some with a lapsed one
             * did, and the location is the nameserver's current answer, or
             * the nameserver is away: they serve a reader that found
             * nothing better. */
            struct read_tally lt = {0};
            rc = read_pass(h, &route, type, f, READ_ANY_VIEW, deadline, res, &lt);
            if (rc == -EAGAIN)
                t.last = lt.last;
        }
        if (rc == -EAGAIN && loc->n == 0 && loc->nshards > 1) {
            /* An erasure-coded block whose data shard holding f did not
             * answer (down, damaged): another shard's holder rebuilds the
             * file from k shards (a degraded read). */
            struct cache_loc others;
            cache_loc_route_degraded(loc, f->seq, &others);
            struct read_tally dt = {0};
            rc = read_pass(h, &others, type, f, READ_RECONSTRUCT, deadline, res, &dt);
            if (rc == -EAGAIN)
                t.last = dt.last;
        }
        if (rc != -EAGAIN) {
            /* A replica that no longer holds the block (moved by a
             * rebalance or a drain, or left out of the set): the cached
             * location is stale even though another replica answered.
             * Forget it, or every later read of the block would try the
             * old holder first half of the time. */
            if (t.moved > 0 && from != FROM_NS)
                cache_loc_drop(&h->cache, f->block_id);
            if (rc == IMG_ETIMEDOUT) /* the deadline came mid-pass: say what we saw */
                return t.last ? read_verdict(&t, route.n) : last;
            return rc;
        }
        if (t.notfound == route.n || (t.notfound > 0 && from == FROM_NS))
            return IMG_ENOTFOUND;
        last = read_verdict(&t, route.n);
        /* Some replica was unreachable, damaged, not serving yet or did not
         * hold the block: the location may be stale. Ask the nameserver
         * again; right away the first time, after a wait from then on. */
        cache_loc_drop(&h->cache, f->block_id);
        if (mode == LOCATE_FRESH && !round_wait(&wait, deadline))
            return last;
        mode = LOCATE_FRESH;
    }
}

/* Decodes a public name (with or without ".ext"). */
static int parse_name(const char *name, struct fname *f)
{
    if (!name)
        return IMGSTORE_EBADNAME;
    return fname_decode(name, strlen(name), f, NULL, NULL);
}

/* Fetches a file from any replica (ds_addr NULL) or from ds_addr alone.
 * Arguments are checked by the callers. */
static int get_file(imgstore_t *h, const char *name, const char *ds_addr, void **data,
                    size_t *len)
{
    struct fname f;
    int rc = parse_name(name, &f);
    if (rc != 0)
        return rc;
    struct read_result res;
    struct cache_loc loc;
    rc = ds_addr ? read_one(h, ds_addr, FT_READ, &f, 1, op_deadline(h), &res)
                 : read_any(h, &f, FT_READ, op_deadline(h), &res, &loc);
    if (rc != 0)
        return rc;
    *data = res.body;
    *len = res.body_len;
    res.body = NULL;
    read_result_free(&res);
    return 0;
}

int imgstore_get(imgstore_t *h, const char *name, void **data, size_t *len)
{
    if (!h || !data || !len)
        return IMGSTORE_EINVAL;
    return get_file(h, name, NULL, data, len);
}

int imgstore_get_from(imgstore_t *h, const char *name, const char *ds_addr, void **data,
                      size_t *len)
{
    if (!h || !data || !len || addr_check(ds_addr) != 0)
        return IMGSTORE_EINVAL;
    return get_file(h, name, ds_addr, data, len);
}

int imgstore_stat(imgstore_t *h, const char *name, struct imgstore_stat *st)
{
    if (!h || !st)
        return IMGSTORE_EINVAL;
    struct fname f;
    int rc = parse_name(name, &f);
    if (rc != 0)
        return rc;
    struct read_result res;
    struct cache_loc loc;
    rc = read_any(h, &f, FT_STAT, op_deadline(h), &res, &loc);
    if (rc != 0)
        return rc;
    memset(st, 0, sizeof(*st));
    st->block_id = f.block_id;
    st->seq = f.seq;
    st->size = res.rr->size;
    st->crc32c = res.rr->crc32c;
    st->created = res.rr->created;
    st->offset = res.rr->offset;
    snprintf(st->mime, sizeof(st->mime), "%s", mime_name(res.rr->mime));
    for (int i = 0; i < loc.n && i < IMGSTORE_MAX_REPLICAS; i++) {
        snprintf(st->replicas[i], IMGSTORE_ADDR_MAX, "%s", loc.addr[i]);
        st->nreplicas++;
    }
    read_result_free(&res);
    return 0;
}

/* ---- unlink ---------------------------------------------------------------- */

int imgstore_unlink(imgstore_t *h, const char *name)
{
    return imgstore_unlink2(h, name, NULL);
}

/* DELETE goes to the block's primary, in rounds until the deadline: a
 * round that failed for a passing reason (retry.h: the primary moved,
 * restarted, is unreachable, not confirmed yet, a replica failed) asks the
 * nameserver for a fresh location, right away the first time and after a
 * growing wait from then on. EDELETED means an earlier delete (ours, in a
 * round whose answer was lost, or someone else's) already did it: success. */
int imgstore_unlink2(imgstore_t *h, const char *name, int *was_deleted)
{
    if (was_deleted)
        *was_deleted = 0;
    if (!h)
        return IMGSTORE_EINVAL;
    struct fname f;
    int rc = parse_name(name, &f);
    if (rc != 0)
        return rc;
    int64_t deadline = op_deadline(h);
    Imgstore__Delete req = IMGSTORE__DELETE__INIT;
    req.block_id = f.block_id;
    req.seq = f.seq;
    req.cookie = f.cookie;
    /* sent: an earlier round's DELETE may have been applied (its answer was
     * an error), so "it was deleted before" may be our own doing. */
    int fresh = 0, wait = ROUND_WAIT_MIN_MS, sent = 0;
    for (;;) {
        struct cache_loc loc;
        enum locate_from from;
        rc = locate(h, f.block_id, fresh ? LOCATE_FRESH : LOCATE_CACHED, deadline, &loc, &from);
        if (rc == 0) {
            /* An erasure-coded block: a shard holder (the file's data shard's
             * first) hands the tombstone to every shard holder. */
            struct cache_loc route;
            cache_loc_route(&loc, f.seq, &route);
            ProtobufCMessage *m = NULL;
            rc = call_msg(h, route.addr[0], FT_DELETE, &req.base, deadline,
                          &imgstore__delete_resp__descriptor, &m, NULL);
            if (rc == 0 && was_deleted)
                *was_deleted = ((Imgstore__DeleteResp *)m)->was_deleted && !sent;
            if (m)
                protobuf_c_message_free_unpacked(m, NULL);
            sent = 1;
        }
        if (rc == IMG_EDELETED) { /* the answer of servers before was_deleted */
            if (was_deleted)
                *was_deleted = !sent;
            return 0;
        }
        if (rc == 0 || retry_action(RETRY_DELETE, rc) != RETRY_OTHER)
            return rc;
        cache_loc_drop(&h->cache, f.block_id);
        if (fresh && !round_wait(&wait, deadline))
            return rc;
        fresh = 1;
    }
}

/* ---- admin ------------------------------------------------------------------ */

int imgstore_admin_cluster_status(imgstore_t *h, Imgstore__ClusterStatusResp **out)
{
    if (!h || !out)
        return IMGSTORE_EINVAL;
    *out = NULL;
    Imgstore__ClusterStatus req = IMGSTORE__CLUSTER_STATUS__INIT;
    ProtobufCMessage *m;
    int rc = ns_pass(h, FT_CLUSTER_STATUS, &req.base, op_deadline(h),
                     &imgstore__cluster_status_resp__descriptor, &m);
    if (rc != 0)
        return rc;
    *out = (Imgstore__ClusterStatusResp *)m;
    return 0;
}

void imgstore_admin_free_status(Imgstore__ClusterStatusResp *st)
{
    if (st)
        imgstore__cluster_status_resp__free_unpacked(st, NULL);
}

int imgstore_admin_call(imgstore_t *h, const char *addr, unsigned type,
                        const ProtobufCMessage *req, const ProtobufCMessageDescriptor *desc,
                        ProtobufCMessage **out)
{
    if (!out)
        return IMGSTORE_EINVAL;
    *out = NULL;
    if (!h || !desc || (addr && addr_check(addr) != 0))
        return IMGSTORE_EINVAL;
    if (!addr)
        return ns_pass(h, type, req, op_deadline(h), desc, out);
    return call_msg(h, addr, type, req, op_deadline(h), desc, out, NULL);
}
