/* ns_etcd_dj.c - the delete journal in etcd, for a nameserver started with
 * --etcd (docs/nameserver.md, "High availability" and "Delete journal").
 *
 * Every entry the leader journals (NOTE_DELETE) is stored under
 * PREFIX/deljournal/BLOCKID/SEQ (16 and 8 hex digits) with the journal
 * file's 104-byte record as its value, in transactions of up to HA_TXN_OPS
 * keys that succeed only while PREFIX/leader's create revision is the
 * leader's epoch; ns_delnote.c answers the note once both the file and
 * etcd hold it. Entries the journal prunes are deleted the same way (best
 * effort). A new leader reads them all back (pages of HA_DJ_PAGE keys,
 * every key and value checked: a bad one is skipped with a WARN) before it
 * acts, and merges them into its journal.
 *
 * Thread side (ns_etcd_dj_read, ns_etcd_dj_flush) runs on ns_etcd.c's
 * thread; the loop queues items under ha->mu and gets the answered puts
 * back through the same uv_async. */
#include "nameserver/ns_etcd_int.h"

#include "base/err.h"
#include "base/log.h"

#include <errno.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Decodes base64 text of exactly `want` bytes into out. 0 or -1. */
static int unb64n(const char *in, uint8_t *out, size_t want)
{
    size_t n = strlen(in);
    if (n % 4 || n != 4 * ((want + 2) / 3))
        return -1;
    unsigned char tmp[4 * ((NS_DJ_REC_SIZE + 2) / 3)];
    if (3 * (n / 4) > sizeof(tmp))
        return -1;
    int got = EVP_DecodeBlock(tmp, (const unsigned char *)in, (int)n);
    while (n > 0 && in[n - 1] == '=') {
        got--;
        n--;
    }
    if (got != (int)want)
        return -1;
    memcpy(out, tmp, want);
    return 0;
}

/* ---- the delete journal in etcd (thread side) -------------------------------- */

/* PREFIX/deljournal/BLOCKID/SEQ, both in fixed-width hex (keys sort by
 * block, then seq). */
static void dj_key(const struct ns_ha *ha, uint64_t block_id, uint32_t seq, char *out)
{
    snprintf(out, HA_KEY_MAX, "%s/deljournal/%016" PRIx64 "/%08" PRIx32, ha->prefix, block_id,
             seq);
}

/* Decodes base64 text into a new buffer of *len bytes (binary; caller
 * frees), or NULL. */
static uint8_t *unb64_alloc(const char *in, size_t *len)
{
    size_t n = strlen(in);
    if (n % 4)
        return NULL;
    uint8_t *out = malloc(3 * (n / 4) + 1);
    int got = out ? EVP_DecodeBlock(out, (const unsigned char *)in, (int)n) : -1;
    if (got < 0) {
        free(out);
        return NULL;
    }
    while (n > 0 && in[n - 1] == '=') {
        got--;
        n--;
    }
    *len = (size_t)got;
    return out;
}

/* A key from etcd fit for a log line: at most 80 bytes, others than
 * printable ASCII shown as '?'. */
static void key_for_log(const uint8_t *key, size_t len, char out[84])
{
    size_t n = len > 80 ? 80 : len;
    for (size_t i = 0; i < n; i++)
        out[i] = key[i] >= 0x20 && key[i] < 0x7f ? (char)key[i] : '?';
    memcpy(out + n, len > n ? "..." : "", len > n ? 4 : 1);
}

/* Checks one key-value of the delete journal read from etcd (hostile):
 * appends its record to *buf when the value is one record passing its
 * checks and the key is the one that record's block and seq name; else a
 * WARN. *last (owned) becomes the key, for the next page. Returns 0, or -1
 * when the answer itself is malformed or memory ran out. */
static int dj_take(struct ns_ha *ha, json_t *kv, uint8_t **buf, size_t *n, size_t *cap,
                   uint8_t **last, size_t *last_len)
{
    json_t *k = json_object_get(kv, "key"), *val = json_object_get(kv, "value");
    size_t klen = 0;
    uint8_t *key = json_is_string(k) ? unb64_alloc(json_string_value(k), &klen) : NULL;
    if (!key)
        return -1; /* cannot page on past it */
    free(*last);
    *last = key;
    *last_len = klen;
    char shown[84];
    key_for_log(key, klen, shown);
    uint8_t rec[NS_DJ_REC_SIZE];
    uint64_t id;
    struct ns_dj_entry e;
    char sender[NS_DJ_ID_MAX + 1], want[HA_KEY_MAX];
    if (!json_is_string(val) || unb64n(json_string_value(val), rec, sizeof(rec)) != 0 ||
        ns_dj_rec_decode(rec, &id, &e, sender) != 0) {
        log_warn("etcd: %s is not a delete-journal record: skipped", shown);
        return 0;
    }
    dj_key(ha, id, e.seq, want);
    if (strlen(want) != klen || memcmp(want, key, klen) != 0) {
        log_warn("etcd: %s holds the record of block %" PRIu64 " seq %u: skipped", shown, id,
                 e.seq);
        return 0;
    }
    if (*n >= NS_DJ_MAX_ENTRIES) {
        log_warn("etcd: more than %u delete-journal records: %s skipped", NS_DJ_MAX_ENTRIES,
                 shown);
        return 0;
    }
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 64;
        uint8_t *p = realloc(*buf, c * NS_DJ_REC_SIZE);
        if (!p)
            return -1;
        *buf = p;
        *cap = c;
    }
    memcpy(*buf + *n * NS_DJ_REC_SIZE, rec, NS_DJ_REC_SIZE);
    (*n)++;
    return 0;
}

/* Reads every delete-journal record a former leader stored (pages of
 * HA_DJ_PAGE keys) into v->dj_in. 0, or -1 when etcd did not answer (or
 * answered something malformed): the term does not start yet. */
int ns_etcd_dj_read(struct ns_ha *ha, struct ha_view *v)
{
    char end[HA_KEY_MAX];
    snprintf(end, sizeof(end), "%s/deljournal0", ha->prefix); /* '/' + 1 */
    uint8_t *from = malloc(HA_KEY_MAX), *last = NULL, *buf = NULL;
    size_t from_len = from ? (size_t)snprintf((char *)from, HA_KEY_MAX, "%s/deljournal/",
                                              ha->prefix)
                           : 0;
    size_t n = 0, cap = 0, last_len = 0;
    int rc = from ? 0 : -1;
    while (rc == 0) {
        char *k = ns_etcd_b64n(from, from_len), *e = ns_etcd_b64(end);
        json_t *req = k && e ? json_pack("{sssssi}", "key", k, "range_end", e, "limit",
                                         HA_DJ_PAGE)
                             : NULL;
        free(k);
        free(e);
        json_t *ans = req ? ns_etcd_call(ha, "/v3/kv/range", req, (int)ha->ttl_ms / 3) : NULL;
        if (!ans) {
            rc = -1;
            break;
        }
        json_t *kvs = json_object_get(ans, "kvs");
        size_t got = json_is_array(kvs) ? json_array_size(kvs) : 0;
        for (size_t i = 0; i < got && rc == 0; i++)
            rc = dj_take(ha, json_array_get(kvs, i), &buf, &n, &cap, &last, &last_len);
        int more = json_is_true(json_object_get(ans, "more"));
        json_decref(ans);
        if (rc != 0 || !more || got == 0)
            break;
        /* The next page starts just past the last key (the key + NUL). */
        uint8_t *nf = realloc(from, last_len + 1);
        if (!nf) {
            rc = -1;
            break;
        }
        from = nf;
        memcpy(from, last, last_len);
        from[last_len] = 0;
        from_len = last_len + 1;
    }
    free(from);
    free(last);
    if (rc != 0) {
        free(buf);
        return -1;
    }
    free(v->dj_in);
    v->dj_in = buf;
    v->dj_in_n = n;
    if (n)
        log_info("etcd: %zu delete-journal records read", n);
    return 0;
}

/* One transaction of ops (stolen) guarded by the leader key's create
 * revision = epoch: 1 done, 0 the key is not ours, -1 failure. */
static int txn_guarded(struct ns_ha *ha, int64_t epoch, json_t *ops)
{
    char key[HA_KEY_MAX], revs[24];
    ns_etcd_key_of(ha, "leader", key);
    snprintf(revs, sizeof(revs), "%" PRId64, epoch);
    char *k = ns_etcd_b64(key);
    json_t *req = k ? json_pack("{s:[{s:s,s:s,s:s,s:s}],s:o}", "compare", "key", k, "result",
                                "EQUAL", "target", "CREATE", "create_revision", revs, "success",
                                ops)
                    : NULL;
    if (!req)
        json_decref(ops);
    free(k);
    json_t *ans = req ? ns_etcd_call(ha, "/v3/kv/txn", req, (int)ha->ttl_ms / 3) : NULL;
    if (!ans)
        return -1;
    int ok = json_is_true(json_object_get(ans, "succeeded"));
    int64_t rev = ns_etcd_num(json_object_get(ans, "header"), "revision");
    json_decref(ans);
    return rev > 0 ? ok : -1;
}

/* Sends what the loop queued: puts (each answered) in transactions of at
 * most HA_TXN_OPS keys, then deletes (best effort), all while leading. */
void ns_etcd_dj_flush(struct ns_ha *ha, const struct ha_view *v)
{
    pthread_mutex_lock(&ha->mu);
    struct dj_item *list = ha->dj_q;
    ha->dj_q = ha->dj_q_tail = NULL;
    ha->dj_ndel = 0;
    pthread_mutex_unlock(&ha->mu);
    if (!list)
        return;
    int leads = v->leader && v->epoch > 0 && ns_etcd_mono_ms() < v->valid_until_ms;
    for (int del = 0; del <= 1; del++) {
        struct dj_item *p = list;
        while (p) {
            /* One transaction: up to HA_TXN_OPS items of this kind, no key
             * twice (etcd refuses a transaction naming a key twice). */
            struct dj_item *batch[HA_TXN_OPS];
            size_t nb = 0;
            for (; p && nb < HA_TXN_OPS; p = p->next) {
                if (p->del != del)
                    continue;
                int dup = 0;
                for (size_t i = 0; i < nb && !dup; i++)
                    dup = batch[i]->block_id == p->block_id && batch[i]->seq == p->seq;
                if (dup)
                    break;
                batch[nb++] = p;
            }
            if (nb == 0)
                continue;
            int rc = -1;
            json_t *ops = leads ? json_array() : NULL;
            for (size_t i = 0; ops && i < nb; i++) {
                char key[HA_KEY_MAX];
                dj_key(ha, batch[i]->block_id, batch[i]->seq, key);
                char *k = ns_etcd_b64(key), *val = del ? NULL : ns_etcd_b64n(batch[i]->rec, NS_DJ_REC_SIZE);
                json_t *op = !k || (!del && !val) ? NULL
                             : del ? json_pack("{s:{s:s}}", "request_delete_range", "key", k)
                                   : json_pack("{s:{s:s,s:s}}", "request_put", "key", k,
                                               "value", val);
                free(k);
                free(val);
                if (!op || json_array_append_new(ops, op) != 0) {
                    json_decref(ops);
                    ops = NULL;
                }
            }
            if (ops)
                rc = txn_guarded(ha, v->epoch, ops);
            if (del && rc != 1)
                log_warn("etcd: %zu pruned delete-journal keys not deleted (%s)", nb,
                         rc == 0 ? "not leading" : "etcd failed");
            for (size_t i = 0; i < nb; i++)
                batch[i]->status = rc == 1 ? 0 : rc == 0 || !leads ? IMG_ENOTLEADER : IMG_EUNAVAIL;
        }
    }
    /* Deletes are done with; puts go to the loop for their answers. */
    struct dj_item *puts = NULL, **tail = &puts;
    while (list) {
        struct dj_item *p = list;
        list = p->next;
        p->next = NULL;
        if (p->del) {
            free(p);
        } else {
            *tail = p;
            tail = &p->next;
        }
    }
    if (!puts)
        return;
    pthread_mutex_lock(&ha->mu);
    if (ha->dj_done_tail)
        ha->dj_done_tail->next = puts;
    else
        ha->dj_done = puts;
    struct dj_item *t = puts;
    while (t->next)
        t = t->next;
    ha->dj_done_tail = t;
    pthread_mutex_unlock(&ha->mu);
    uv_async_send(&ha->async);
}

/* A new term: merges the delete-journal records a former leader stored in
 * etcd into this nameserver's journal (RAM), before safe mode can end.
 * Checked again here: a record that fails is skipped with a WARN. */
void ns_etcd_dj_adopt(struct ns_ha *ha, const uint8_t *recs, size_t n)
{
    struct ns *ns = ha->ns;
    size_t added = 0, skipped = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t id;
        struct ns_dj_entry e;
        char sender[NS_DJ_ID_MAX + 1];
        int rc = ns_dj_rec_decode(recs + i * NS_DJ_REC_SIZE, &id, &e, sender);
        if (rc == 0)
            rc = ns_dj_merge(&ns->dj, id, &e, sender);
        if (rc < 0) {
            skipped++;
            log_warn("etcd: delete-journal record %zu not taken: %s", i, img_strerror(rc));
        }
        added += rc == 1;
    }
    if (n)
        log_info("etcd: %zu delete-journal entries taken (%zu new here, %zu skipped): %zu "
                 "entries of %zu blocks journaled",
                 n, added, skipped, ns->dj.live, ns->dj.nblocks);
}

/* Answers the puts the thread finished (on the loop). */
void ns_etcd_dj_answer(struct dj_item *list)
{
    while (list) {
        struct dj_item *p = list;
        list = p->next;
        p->cb(p->status, p->arg);
        free(p);
    }
}

/* Queues one item for the thread (wakes it). */
static void dj_queue(struct ns_ha *ha, struct dj_item *p)
{
    pthread_mutex_lock(&ha->mu);
    if (ha->dj_q_tail)
        ha->dj_q_tail->next = p;
    else
        ha->dj_q = p;
    ha->dj_q_tail = p;
    ha->dj_ndel += p->del;
    pthread_cond_signal(&ha->cv);
    pthread_mutex_unlock(&ha->mu);
}

int ns_etcd_dj_put(struct ns *ns, uint64_t block_id, const struct ns_dj_entry *e,
                   const char *sender, ns_dj_cb cb, void *arg)
{
    struct ns_ha *ha = ns->ha;
    if (!ha || !ha->thread_started)
        return IMG_EUNAVAIL;
    if (!ns_leads(ns))
        return IMG_ENOTLEADER;
    struct dj_item *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->block_id = block_id;
    p->seq = e->seq;
    ns_dj_rec_encode(p->rec, block_id, e, sender);
    p->cb = cb;
    p->arg = arg;
    dj_queue(ha, p);
    return 0;
}

/* ns_dj's on_drop hook: the pruned entry's key is deleted in etcd (best
 * effort: a full queue or a failed delete leaves it, and a later leader
 * merges an entry that its gate then finds held by enough copies). */
void ns_etcd_dj_dropped(void *arg, uint64_t block_id, const struct ns_dj_entry *e)
{
    struct ns_ha *ha = arg;
    if (!ns_leads(ha->ns) || !ha->thread_started)
        return;
    pthread_mutex_lock(&ha->mu);
    size_t queued = ha->dj_ndel;
    pthread_mutex_unlock(&ha->mu);
    if (queued >= HA_DJ_DEL_MAX)
        return;
    struct dj_item *p = calloc(1, sizeof(*p));
    if (!p)
        return;
    p->del = 1;
    p->block_id = block_id;
    p->seq = e->seq;
    dj_queue(ha, p);
}

void ns_etcd_dj_cancel(struct ns_ha *ha)
{
    ha->ns->dj.on_drop = NULL;
    struct dj_item *q = ha->dj_q, *done = ha->dj_done;
    ha->dj_q = ha->dj_q_tail = ha->dj_done = ha->dj_done_tail = NULL;
    ha->dj_ndel = 0;
    for (struct dj_item *p = q; p; p = p->next)
        p->status = -ECANCELED;
    for (struct dj_item *p = q; p;) { /* deletes have no cb */
        struct dj_item *nx = p->next;
        if (p->del) {
            free(p);
        } else {
            p->next = done;
            done = p;
        }
        p = nx;
    }
    ns_etcd_dj_answer(done);
}
