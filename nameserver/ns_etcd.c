/* ns_etcd.c - leader election on etcd through its v3 JSON gateway (see
 * ns_etcd.h).
 *
 * Thread side (ha_run): one curl easy handle, one request at a time, each
 * under a timeout of a third of the TTL; a failed request moves to the next
 * endpoint. Keys and values travel base64-encoded (the gateway's form of
 * protobuf bytes), 64-bit numbers as JSON strings. Every answer is hostile:
 * a missing field, a wrong type or an oversized body counts as a failed
 * request (at most HA_BODY_MAX bytes are kept).
 *
 * The thread runs a round (lease, leader key, shared meta, ids) every TTL/3
 * (TTL/6 as a standby) or at once when kicked (meta to store, ids wanted,
 * a step-down, or a change of the leader key seen by the watch thread of
 * ns_etcd_watch.c: a standby campaigns as soon as the key is deleted), and
 * between rounds sends
 * the delete-journal keys the loop queued (ns_etcd_dj.c, which shares
 * ns_etcd_int.h with this file).
 *
 * Shared state: struct ha_view, written by the thread under `mu` and copied
 * to the loop's own copy in the uv_async callback. The loop never waits on
 * the thread except at ns_etcd_stop. */
#include "nameserver/ns_etcd_int.h"

#include "base/err.h"
#include "base/log.h"
#include "proto/addr.h"
#include "proto/nslist.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

uint64_t ns_etcd_mono_ms(void)
{
    return uv_hrtime() / 1000000;
}

/* ---- base64 ------------------------------------------------------------------ */

char *ns_etcd_b64(const char *s)
{
    size_t n = strlen(s);
    char *out = malloc(4 * ((n + 2) / 3) + 1);
    if (out)
        EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)s, (int)n);
    return out;
}

/* Base64 of n bytes (caller frees), or NULL. */
char *ns_etcd_b64n(const void *p, size_t n)
{
    char *out = malloc(4 * ((n + 2) / 3) + 1);
    if (out)
        EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)p, (int)n);
    return out;
}

/* Decodes base64 text into out (size len, NUL-terminated). 0 or -1. */
int ns_etcd_unb64(const char *in, char *out, size_t len)
{
    size_t n = strlen(in);
    if (n % 4 || 3 * (n / 4) + 1 > len)
        return -1;
    int got = EVP_DecodeBlock((unsigned char *)out, (const unsigned char *)in, (int)n);
    if (got < 0)
        return -1;
    while (n > 0 && in[n - 1] == '=') {
        got--;
        n--;
    }
    out[got] = '\0';
    return memchr(out, '\0', (size_t)got) ? -1 : 0;
}

/* ---- one request ------------------------------------------------------------- */

struct body {
    char *p;
    size_t n;
    int over;
};

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *arg)
{
    struct body *b = arg;
    size_t n = size * nmemb;
    if (b->over || b->n + n > HA_BODY_MAX) {
        b->over = 1;
        return 0; /* curl fails the transfer */
    }
    char *q = realloc(b->p, b->n + n + 1);
    if (!q) {
        b->over = 1;
        return 0;
    }
    memcpy(q + b->n, ptr, n);
    b->p = q;
    b->n += n;
    b->p[b->n] = '\0';
    return n;
}

/* POSTs `req` (stolen) to PATH on the current endpoint, then on the others
 * once each. Returns the parsed answer (caller decrefs) or NULL. */
json_t *ns_etcd_call(struct ns_ha *ha, const char *path, json_t *req, int timeout_ms)
{
    char *text = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    if (!text)
        return NULL;
    json_t *ans = NULL;
    for (int tries = 0; tries < ha->endpoints.n && !ans; tries++) {
        char url[ADDR_MAX + 64];
        snprintf(url, sizeof(url), "http://%s%s", ha->endpoints.addr[ha->ep], path);
        struct body b = {0};
        struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
        curl_easy_reset(ha->curl);
        curl_easy_setopt(ha->curl, CURLOPT_URL, url);
        curl_easy_setopt(ha->curl, CURLOPT_POSTFIELDS, text);
        curl_easy_setopt(ha->curl, CURLOPT_HTTPHEADER, hdr);
        curl_easy_setopt(ha->curl, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(ha->curl, CURLOPT_WRITEDATA, &b);
        curl_easy_setopt(ha->curl, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
        curl_easy_setopt(ha->curl, CURLOPT_CONNECTTIMEOUT_MS, (long)timeout_ms);
        curl_easy_setopt(ha->curl, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(ha->curl, CURLOPT_PROTOCOLS_STR, "http");
        long code = 0;
        CURLcode rc = curl_easy_perform(ha->curl);
        curl_slist_free_all(hdr);
        if (rc == CURLE_OK)
            curl_easy_getinfo(ha->curl, CURLINFO_RESPONSE_CODE, &code);
        if (rc == CURLE_OK && code == 200 && b.p)
            ans = json_loads(b.p, 0, NULL);
        if (!ans || !json_is_object(ans)) {
            json_decref(ans);
            ans = NULL;
            log_warn("etcd %s%s: %s", ha->endpoints.addr[ha->ep], path,
                     rc != CURLE_OK ? curl_easy_strerror(rc) : "bad answer");
            ha->ep = (ha->ep + 1) % ha->endpoints.n;
        }
        free(b.p);
    }
    free(text);
    return ans;
}

/* A 64-bit field the gateway sends as a string (or a number); -1 when
 * absent or malformed, 0 when absent and zero_ok. */
int64_t ns_etcd_num(json_t *o, const char *name)
{
    json_t *v = json_object_get(o, name);
    if (json_is_integer(v))
        return json_integer_value(v);
    if (!json_is_string(v))
        return 0; /* the gateway leaves zero values out */
    const char *s = json_string_value(v);
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    return errno || !*s || *end || x < 0 ? -1 : x;
}

void ns_etcd_key_of(const struct ns_ha *ha, const char *name, char *out)
{
    snprintf(out, HA_KEY_MAX, "%s/%s", ha->prefix, name);
}

/* Reads one key: 1 with its value (NUL-terminated, at most vlen-1 bytes)
 * and revisions, 0 when absent, -1 on failure. */
static int get_key(struct ns_ha *ha, const char *name, char *val, size_t vlen, int64_t *create_rev,
                   int64_t *mod_rev, int64_t *lease)
{
    char key[HA_KEY_MAX];
    ns_etcd_key_of(ha, name, key);
    char *k = ns_etcd_b64(key);
    json_t *ans = k ? ns_etcd_call(ha, "/v3/kv/range", json_pack("{ss}", "key", k), (int)ha->ttl_ms / 3)
                    : NULL;
    free(k);
    if (!ans)
        return -1;
    int rc = 0;
    json_t *kvs = json_object_get(ans, "kvs");
    if (json_is_array(kvs) && json_array_size(kvs) > 0) {
        json_t *kv = json_array_get(kvs, 0);
        json_t *v = json_object_get(kv, "value");
        val[0] = '\0';
        rc = 1;
        if (v && (!json_is_string(v) || ns_etcd_unb64(json_string_value(v), val, vlen) != 0))
            rc = -1;
        *create_rev = ns_etcd_num(kv, "create_revision");
        *mod_rev = ns_etcd_num(kv, "mod_revision");
        if (lease)
            *lease = ns_etcd_num(kv, "lease");
        if (*create_rev <= 0 || *mod_rev <= 0)
            rc = -1;
    }
    json_decref(ans);
    return rc;
}

/* A transaction: when key `name`'s `target` revision ("CREATE" or "MOD")
 * equals rev, puts val under key `put_name` (with the lease when not 0).
 * Returns 1 when it succeeded (*revision: the new revision), 0 when the
 * compare failed, -1 on failure. */
static int put_if(struct ns_ha *ha, const char *name, const char *target, int64_t rev,
                  const char *put_name, const char *val, int64_t lease, int64_t *revision)
{
    char key[HA_KEY_MAX], pkey[HA_KEY_MAX], revs[24], leases[24];
    ns_etcd_key_of(ha, name, key);
    ns_etcd_key_of(ha, put_name, pkey);
    snprintf(revs, sizeof(revs), "%" PRId64, rev);
    snprintf(leases, sizeof(leases), "%" PRId64, lease);
    char *k = ns_etcd_b64(key), *pk = ns_etcd_b64(pkey), *v = ns_etcd_b64(val);
    json_t *req = NULL;
    if (k && pk && v) {
        json_t *put = json_pack("{ssss}", "key", pk, "value", v);
        if (put && lease)
            json_object_set_new(put, "lease", json_string(leases));
        const char *field = strcmp(target, "CREATE") == 0 ? "create_revision" : "mod_revision";
        req = json_pack("{s:[{s:s,s:s,s:s,s:s}],s:[{s:o}]}", "compare", "key", k, "result",
                        "EQUAL", "target", target, field, revs, "success", "request_put", put);
    }
    free(k);
    free(pk);
    free(v);
    json_t *ans = req ? ns_etcd_call(ha, "/v3/kv/txn", req, (int)ha->ttl_ms / 3) : NULL;
    if (!ans)
        return -1;
    int ok = json_is_true(json_object_get(ans, "succeeded"));
    *revision = ns_etcd_num(json_object_get(ans, "header"), "revision");
    json_decref(ans);
    return *revision > 0 ? ok : -1;
}

/* ---- the thread -------------------------------------------------------------- */

/* Hands v to the loop; a meta text in it moves to the loop's side. */
static void publish(struct ns_ha *ha, struct ha_view *v)
{
    pthread_mutex_lock(&ha->mu);
    char *unread = ha->sh.meta_in;
    uint8_t *unread_dj = ha->sh.dj_in;
    size_t unread_dj_n = ha->sh.dj_in_n;
    ha->sh = *v;
    if (!v->meta_in)
        ha->sh.meta_in = unread;
    else
        free(unread);
    if (!v->dj_in) {
        ha->sh.dj_in = unread_dj;
        ha->sh.dj_in_n = unread_dj_n;
    } else {
        free(unread_dj);
    }
    v->meta_in = NULL;
    v->dj_in = NULL;
    v->dj_in_n = 0;
    pthread_mutex_unlock(&ha->mu);
    uv_async_send(&ha->async);
}

/* Reads the shared meta text a former leader stored: into v->meta_in when
 * there is one. 0, or -1 when etcd did not answer. */
static int read_meta(struct ns_ha *ha, struct ha_view *v)
{
    char *buf = malloc(HA_META_MAX);
    if (!buf)
        return -1;
    int64_t crev, mrev;
    int got = get_key(ha, "meta", buf, HA_META_MAX, &crev, &mrev, NULL);
    if (got == 1) {
        free(v->meta_in);
        v->meta_in = buf;
        return 0;
    }
    free(buf);
    return got == 0 ? 0 : -1;
}

/* Stores the leader's latest meta text, only while the leader key is ours
 * (create revision = our epoch). */
static void write_meta(struct ns_ha *ha, const struct ha_view *v)
{
    pthread_mutex_lock(&ha->mu);
    char *text = ha->meta_out;
    ha->meta_out = NULL;
    pthread_mutex_unlock(&ha->mu);
    if (!text)
        return;
    int64_t rev;
    int rc = put_if(ha, "leader", "CREATE", v->epoch, "meta", text, 0, &rev);
    if (rc < 0) {
        pthread_mutex_lock(&ha->mu);
        if (!ha->meta_out) { /* none newer: again next round */
            ha->meta_out = text;
            text = NULL;
        }
        pthread_mutex_unlock(&ha->mu);
    } else if (rc == 0) {
        log_warn("etcd: the shared meta was not stored: the leader key is not ours");
    }
    free(text);
}

/* Takes the next block-id range for a new term. 0 or -1. */
static int take_ids(struct ns_ha *ha, struct ha_view *v)
{
    for (int tries = 0; tries < 3; tries++) {
        char val[32];
        int64_t crev = 0, mrev = 0, rev;
        int got = get_key(ha, "block_ids", val, sizeof(val), &crev, &mrev, NULL);
        if (got < 0)
            return -1;
        uint64_t from = 1;
        if (got == 1) {
            char *end;
            from = strtoull(val, &end, 10);
            if (!val[0] || *end || from == 0 || from > NS_MAX_BLOCK_ID)
                return -1;
        }
        uint64_t to = from + NS_ETCD_ID_RANGE;
        if (to > NS_MAX_BLOCK_ID + 1)
            to = NS_MAX_BLOCK_ID + 1;
        snprintf(val, sizeof(val), "%" PRIu64, to);
        int rc = put_if(ha, "block_ids", got ? "MOD" : "CREATE", got ? mrev : 0, "block_ids", val, 0,
                        &rev);
        if (rc < 0)
            return -1;
        if (rc == 1) {
            v->ids_from = from;
            v->ids_to = to;
            log_info("etcd: block ids %" PRIu64 "..%" PRIu64 " taken for this term", from,
                     to - 1);
            return 0;
        }
    }
    return -1;
}

/* One round: renew (or get) the lease, then read or take the leader key.
 * t0 is when the round started (the renewal's send time). A leader's time
 * to act is extended only when both steps succeeded; it loses the lead at
 * once on evidence (lease expired, the key gone or another's), and when
 * etcd cannot be reached its time simply runs out. */
static void resign(struct ns_ha *ha, const struct ha_view *v);

static void round_once(struct ns_ha *ha, struct ha_view *v, uint64_t t0)
{
    int ttl_s = (int)((ha->ttl_ms + 999) / 1000);
    int was_leader = v->leader;
    pthread_mutex_lock(&ha->mu);
    int resigning = ha->resign;
    uint64_t hold = ha->hold_until_ms;
    ha->resign = 0;
    pthread_mutex_unlock(&ha->mu);
    if (resigning) {
        resign(ha, v); /* the key goes with the lease */
        v->leader = 0;
        v->valid_until_ms = 0;
        v->ids_from = v->ids_to = 0;
    }
    if (t0 < hold) {
        /* Stepped down: only watch who leads. */
        char val[ADDR_MAX];
        int64_t crev = 0, mrev = 0;
        if (get_key(ha, "leader", val, sizeof(val), &crev, &mrev, NULL) == 1 &&
            addr_check(val) == 0) {
            v->epoch = crev;
            snprintf(v->leader_addr, sizeof(v->leader_addr), "%s", val);
        }
        return;
    }
    if (ha->lease > 0) {
        char id[24];
        snprintf(id, sizeof(id), "%" PRId64, ha->lease);
        json_t *ans = ns_etcd_call(ha, "/v3/lease/keepalive", json_pack("{ss}", "ID", id),
                           (int)ha->ttl_ms / 3);
        if (!ans)
            return; /* unreachable: this lease again next round */
        int64_t ttl = ns_etcd_num(json_object_get(ans, "result"), "TTL");
        json_decref(ans);
        if (ttl <= 0) {
            log_warn("etcd: lease %s expired", id);
            ha->lease = 0;
            v->leader = 0;
            return;
        }
    } else {
        json_t *ans = ns_etcd_call(ha, "/v3/lease/grant", json_pack("{si}", "TTL", ttl_s),
                           (int)ha->ttl_ms / 3);
        int64_t id = ans ? ns_etcd_num(ans, "ID") : -1;
        json_decref(ans);
        if (id <= 0)
            return;
        ha->lease = id;
    }
    char val[ADDR_MAX];
    int64_t crev = 0, mrev = 0, lease = 0, rev = 0;
    int got = get_key(ha, "leader", val, sizeof(val), &crev, &mrev, &lease);
    if (got == 0) {
        int rc = put_if(ha, "leader", "CREATE", 0, "leader", ha->me, ha->lease, &rev);
        if (rc == 1) {
            got = 1;
            crev = rev;
            lease = ha->lease;
            snprintf(val, sizeof(val), "%s", ha->me);
        } else {
            got = rc == 0 ? get_key(ha, "leader", val, sizeof(val), &crev, &mrev, &lease) : -1;
        }
    }
    if (got < 0)
        return; /* cannot tell: not extended */
    if (got == 0) {
        v->leader = 0;
        v->leader_addr[0] = '\0';
        return;
    }
    v->leader = lease == ha->lease && strcmp(val, ha->me) == 0;
    if (!v->leader || !was_leader || crev != v->epoch) {
        v->ids_from = v->ids_to = 0;
        v->valid_until_ms = 0; /* a new term acts only once it has its ids */
    }
    v->epoch = crev;
    snprintf(v->leader_addr, sizeof(v->leader_addr), "%s", addr_check(val) == 0 ? val : "");
    if (v->leader && v->ids_to == 0 &&
        (read_meta(ha, v) != 0 || ns_etcd_dj_read(ha, v) != 0 || take_ids(ha, v) != 0))
        return; /* no ids yet: not extended, next round tries again */
    if (v->leader) {
        v->valid_until_ms = t0 + ha->ttl_ms - ha->ttl_ms / 4;
        write_meta(ha, v);
        pthread_mutex_lock(&ha->mu);
        int want = ha->want_ids;
        ha->want_ids = 0;
        pthread_mutex_unlock(&ha->mu);
        if (want && take_ids(ha, v) != 0) {
            pthread_mutex_lock(&ha->mu);
            ha->want_ids = 1; /* next round */
            pthread_mutex_unlock(&ha->mu);
        }
    }
}

/* Gives the leader key back (when ours) and revokes the lease. */
static void resign(struct ns_ha *ha, const struct ha_view *v)
{
    if (ha->lease <= 0)
        return;
    char id[24];
    snprintf(id, sizeof(id), "%" PRId64, ha->lease);
    json_decref(ns_etcd_call(ha, "/v3/lease/revoke", json_pack("{ss}", "ID", id), (int)ha->ttl_ms / 3));
    if (v->leader)
        log_info("etcd: leadership handed back (lease revoked)");
    ha->lease = 0;
}

static void *ha_run(void *arg)
{
    struct ns_ha *ha = arg;
    struct ha_view v = {0};
    uint64_t next = 0;
    pthread_mutex_lock(&ha->mu);
    while (!ha->stop) {
        int round = ha->kick || ns_etcd_mono_ms() >= next;
        ha->kick = 0;
        pthread_mutex_unlock(&ha->mu);
        if (round) {
            uint64_t t0 = ns_etcd_mono_ms();
            round_once(ha, &v, t0);
            publish(ha, &v);
            /* A leader renews every TTL/3; a standby looks for a vacant
             * key twice as often, so a takeover waits at most TTL/6 past
             * expiry. */
            next = t0 + ha->ttl_ms / (v.leader ? 3 : 6);
        }
        ns_etcd_dj_flush(ha, &v); /* delete-journal keys between rounds */
        uint64_t now = ns_etcd_mono_ms();
        pthread_mutex_lock(&ha->mu);
        if (next > now && !ha->stop && !ha->kick && !ha->dj_q) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            uint64_t ns = (uint64_t)ts.tv_nsec + (next - now) * 1000000ull;
            ts.tv_sec += (time_t)(ns / 1000000000ull);
            ts.tv_nsec = (long)(ns % 1000000000ull);
            pthread_cond_timedwait(&ha->cv, &ha->mu, &ts);
        }
    }
    pthread_mutex_unlock(&ha->mu);
    resign(ha, &v);
    return NULL;
}

/* ---- loop side --------------------------------------------------------------- */

/* Notices the end of our lead (on the loop's clock): stops acting. */
static void check(struct ns_ha *ha)
{
    struct ns *ns = ha->ns;
    int leads = ns_leads(ns);
    if (ha->acting && !leads) {
        log_warn("stopped leading (epoch %" PRId64 "): %s", ha->v.epoch,
                 uv_now(ns->loop) < ha->stepped_down_until ? "stepped down"
                 : ha->v.leader                           ? "lease not renewed in time"
                                                          : "leader key lost");
        ns->meta.id_limit = 1; /* no id until the next term's range */
        ha->acting = 0;
        if (ha->demoted)
            ha->demoted(ns);
    }
    if (!ha->acting && leads)
        ha->lead_since_ms = uv_now(ns->loop);
    ha->acting = leads;
    if (leads && ns->meta.id_limit > 1 &&
        ns->meta.next_id + NS_ETCD_ID_RANGE / 4 >= ns->meta.id_limit) {
        pthread_mutex_lock(&ha->mu);
        if (!ha->want_ids) {
            ha->want_ids = 1;
            ha->kick = 1;
            pthread_cond_signal(&ha->cv);
        }
        pthread_mutex_unlock(&ha->mu);
    }
}

/* A new term: takes the shared meta a former leader stored (settings,
 * drains, read-only marks, known servers, key bindings), then stores ours
 * (the first leader of a prefix publishes its own). */
static void adopt_meta(struct ns_ha *ha, char *text)
{
    struct ns *ns = ha->ns;
    ns->known_shared = 0;
    if (text) {
        int rc = ns_meta_adopt(&ns->meta, text, strlen(text));
        if (rc == 0) {
            ns->known_shared = 1;
            ns_settings_load(ns);
            log_info("etcd: took the shared state: %zu known servers, %zu read-only, %zu "
                     "draining",
                     ns->meta.nknown, ns->meta.readonly.n, ns->meta.draining.n);
        } else {
            log_error("etcd: %s/meta unusable (%s): keeping this nameserver's own",
                      ha->prefix, img_strerror(rc));
        }
    }
    ns_meta_save(&ns->meta); /* mirrored to etcd by meta_saved */
}

/* ns_meta_save's hook: the leader's new meta text goes to etcd. */
static void meta_saved(void *arg, const char *text, size_t len)
{
    struct ns_ha *ha = arg;
    if (!ns_leads(ha->ns) || len >= HA_META_MAX)
        return;
    char *copy = strndup(text, len);
    if (!copy)
        return;
    pthread_mutex_lock(&ha->mu);
    free(ha->meta_out);
    ha->meta_out = copy;
    ha->kick = 1;
    pthread_cond_signal(&ha->cv); /* store it now, not at the next renewal */
    pthread_mutex_unlock(&ha->mu);
}

static void on_async(uv_async_t *a)
{
    struct ns_ha *ha = a->data;
    struct ns *ns = ha->ns;
    pthread_mutex_lock(&ha->mu);
    struct ha_view nv = ha->sh;
    ha->sh.meta_in = NULL; /* ours now */
    ha->sh.dj_in = NULL;
    ha->sh.dj_in_n = 0;
    struct dj_item *done = ha->dj_done;
    ha->dj_done = ha->dj_done_tail = NULL;
    pthread_mutex_unlock(&ha->mu);
    ns_etcd_dj_answer(done);
    int new_term = 0;
    if (nv.leader && nv.ids_to && (!ha->v.leader || nv.epoch != ha->v.epoch || !ha->acting)) {
        if (!ha->v.leader || nv.epoch != ha->v.epoch) {
            log_info("leading (epoch %" PRId64 ")", nv.epoch);
            /* The map holds every report sent to us as a standby (warm):
             * safe mode ends as soon as each known server has reported
             * (ns_safe_mode_check, after the shared state is taken);
             * what the last leader did since its last reports is known
             * only once each server reported to us as leader (settling). */
            ns->safe_mode = 1;
            ns->start_ms = uv_now(ns->loop);
            ns->settling = 1;
            ns->settle_ms = ns->start_ms;
            for (size_t i = 0; i < ns->nservers; i++)
                ns->servers[i]->term_reported = 0;
            new_term = 1;
        } else {
            /* Our lease outlived a lapse (etcd slow or unreachable for a
             * while): nobody else could lead; the servers report again. */
            log_info("leading (epoch %" PRId64 ") again: the lease was renewed after a lapse",
                     nv.epoch);
        }
        ns->meta.id_limit = nv.ids_to;
        if (ns->meta.next_id < nv.ids_from)
            ns->meta.next_id = nv.ids_from;
    } else if (nv.leader && nv.epoch == ha->v.epoch && nv.ids_to > ns->meta.id_limit &&
               ha->acting) {
        /* Another range for this term (what is left of the last one is
         * skipped when the new one does not follow it). */
        ns->meta.id_limit = nv.ids_to;
        if (ns->meta.next_id < nv.ids_from)
            ns->meta.next_id = nv.ids_from;
    } else if (!nv.leader && nv.leader_addr[0] &&
               (nv.epoch != ha->v.epoch || strcmp(nv.leader_addr, ha->v.leader_addr) != 0)) {
        log_info("standby: the leader is %s (epoch %" PRId64 ")", nv.leader_addr, nv.epoch);
    }
    ha->v = nv;
    ha->v.meta_in = NULL;
    ha->v.dj_in = NULL;
    ha->v.dj_in_n = 0;
    check(ha);
    if (new_term && ha->acting) {
        adopt_meta(ha, nv.meta_in);
        ns_etcd_dj_adopt(ha, nv.dj_in, nv.dj_in_n);
        ns_safe_mode_check(ns, uv_now(ns->loop));
    }
    free(nv.meta_in);
    free(nv.dj_in);
}

void ns_etcd_tick(struct ns *ns)
{
    if (ns->ha)
        check(ns->ha);
}

int ns_leads(const struct ns *ns)
{
    const struct ns_ha *ha = ns->ha;
    if (!ha)
        return 1;
    return ha->v.leader && ns->loop && uv_now(ns->loop) < ha->v.valid_until_ms &&
           uv_now(ns->loop) >= ha->stepped_down_until;
}

int ns_etcd_step_down(struct ns *ns)
{
    struct ns_ha *ha = ns->ha;
    if (!ha || !ns->loop)
        return IMG_EINVAL;
    uint32_t hold = 2 * ha->ttl_ms;
    log_info("stepping down (epoch %" PRId64 "): not running for leader for %u ms",
             ha->v.epoch, hold);
    ha->stepped_down_until = uv_now(ns->loop) + hold;
    pthread_mutex_lock(&ha->mu);
    ha->resign = 1;
    ha->hold_until_ms = ns_etcd_mono_ms() + hold;
    ha->kick = 1;
    pthread_cond_signal(&ha->cv);
    pthread_mutex_unlock(&ha->mu);
    check(ha); /* stops acting now: the sessions close */
    return (int)hold;
}

const char *ns_etcd_self(const struct ns *ns)
{
    return ns->ha ? ns->ha->me : "";
}

const char *ns_etcd_leader(const struct ns *ns)
{
    return ns->ha && !ns_leads(ns) && strcmp(ns->ha->v.leader_addr, ns->ha->me) != 0
               ? ns->ha->v.leader_addr
               : "";
}

int64_t ns_etcd_epoch(const struct ns *ns)
{
    return ns->ha ? ns->ha->v.epoch : 0;
}

uint64_t ns_etcd_leading_ms(const struct ns *ns)
{
    if (!ns->ha || !ns_leads(ns))
        return 0;
    uint64_t now = uv_now(ns->loop);
    return now > ns->ha->lead_since_ms ? now - ns->ha->lead_since_ms : 0;
}

int ns_etcd_init(struct ns *ns, const struct ns_etcd_config *cfg)
{
    struct ns_ha *ha = calloc(1, sizeof(*ha));
    if (!ha)
        return -ENOMEM;
    ns->ha = ha;
    ha->ns = ns;
    ha->ttl_ms = cfg->ttl_ms ? cfg->ttl_ms : NS_ETCD_DEFAULT_TTL_MS;
    const char *prefix = cfg->prefix ? cfg->prefix : NS_ETCD_DEFAULT_PREFIX;
    if (nslist_parse(cfg->endpoints, &ha->endpoints) != 0) {
        log_error("--etcd: want HOST:PORT[,HOST:PORT...] (at most %d)", NSLIST_MAX);
        return IMG_EINVAL;
    }
    if (!*prefix || strlen(prefix) >= NS_ETCD_PREFIX_MAX || prefix[strlen(prefix) - 1] == '/' ||
        strspn(prefix, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/_.-") !=
            strlen(prefix)) {
        log_error("--etcd-prefix: 1..%d characters of [A-Za-z0-9/_.-], not ending with '/'",
                  NS_ETCD_PREFIX_MAX - 1);
        return IMG_EINVAL;
    }
    snprintf(ha->prefix, sizeof(ha->prefix), "%s", prefix);
    if (addr_check(cfg->advertise) != 0) {
        log_error("the address published in etcd is not HOST:PORT: '%s'",
                  cfg->advertise ? cfg->advertise : "");
        return IMG_EINVAL;
    }
    snprintf(ha->me, sizeof(ha->me), "%s", cfg->advertise);
    if (pthread_mutex_init(&ha->mu, NULL) != 0 || pthread_cond_init(&ha->cv, NULL) != 0)
        return -ENOMEM;
    ha->curl = curl_easy_init();
    if (!ha->curl)
        return -ENOMEM;
    ns->meta.id_limit = 1; /* no block id before a term's range is taken */
    /* The cluster id: etcd's, or ours stored there by the first nameserver. */
    uint64_t until = ns_etcd_mono_ms() + NS_ETCD_INIT_MS;
    for (;;) {
        char id[64];
        int64_t crev, mrev, rev;
        int got = get_key(ha, "cluster_id", id, sizeof(id), &crev, &mrev, NULL);
        if (got == 0 &&
            put_if(ha, "cluster_id", "CREATE", 0, "cluster_id", ns->meta.cluster_id, 0, &rev) ==
                1) {
            log_info("etcd: cluster id %s stored under %s", ns->meta.cluster_id, ha->prefix);
            return 0;
        }
        if (got == 1) {
            if (strlen(id) != 32 || strspn(id, "0123456789abcdef") != 32) {
                log_error("etcd: %s/cluster_id is not a cluster id", ha->prefix);
                return IMG_EFORMAT;
            }
            if (strcmp(id, ns->meta.cluster_id) != 0) {
                log_info("etcd: cluster id %s (was %s in ns.meta)", id, ns->meta.cluster_id);
                char old[sizeof(ns->meta.cluster_id)];
                memcpy(old, ns->meta.cluster_id, sizeof(old));
                memcpy(ns->meta.cluster_id, id, NS_CLUSTER_ID_HEX + 1); /* checked: 32 hex digits */
                int rc = ns_meta_save(&ns->meta);
                if (rc) {
                    memcpy(ns->meta.cluster_id, old, sizeof(old));
                    return rc;
                }
            }
            return 0;
        }
        if (ns_etcd_mono_ms() >= until) {
            log_error("etcd: no endpoint of %s answered within %d ms", cfg->endpoints,
                      NS_ETCD_INIT_MS);
            return IMG_ECONN;
        }
        struct timespec ts = {0, 200 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

int ns_etcd_start(struct ns *ns, uv_loop_t *loop, void (*demoted)(struct ns *ns))
{
    struct ns_ha *ha = ns->ha;
    if (!ha)
        return 0;
    ha->demoted = demoted;
    ns->meta.saved = meta_saved;
    ns->meta.saved_arg = ha;
    ns->dj.on_drop = ns_etcd_dj_dropped;
    ns->dj.on_drop_arg = ha;
    int rc = uv_async_init(loop, &ha->async, on_async);
    if (rc)
        return rc;
    ha->async.data = ha;
    ha->async_open = 1;
    rc = pthread_create(&ha->thread, NULL, ha_run, ha);
    if (rc)
        return -rc;
    ha->thread_started = 1;
    if (ns_etcd_watch_start(ha) != 0)
        log_warn("etcd: no watch on the leader key: changes of leader seen at the polls only");
    return 0;
}

void ns_etcd_stop(struct ns *ns)
{
    struct ns_ha *ha = ns->ha;
    if (!ha)
        return;
    if (ha->thread_started) {
        pthread_mutex_lock(&ha->mu);
        ha->stop = 1;
        pthread_cond_signal(&ha->cv);
        pthread_mutex_unlock(&ha->mu);
        pthread_join(ha->thread, NULL);
        ha->thread_started = 0;
    }
    ns_etcd_watch_stop(ha);
    ns_etcd_dj_cancel(ha); /* puts not answered yet: -ECANCELED */
    ha->v.leader = 0;
    if (ha->async_open) {
        ha->async_open = 0;
        uv_close((uv_handle_t *)&ha->async, NULL);
    }
}

void ns_etcd_free(struct ns *ns)
{
    struct ns_ha *ha = ns->ha;
    if (!ha)
        return;
    if (ha->curl)
        curl_easy_cleanup(ha->curl);
    ns->meta.saved = NULL;
    free(ha->meta_out);
    free(ha->sh.meta_in);
    free(ha->sh.dj_in);
    pthread_mutex_destroy(&ha->mu);
    pthread_cond_destroy(&ha->cv);
    free(ha);
    ns->ha = NULL;
}
