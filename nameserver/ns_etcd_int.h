/* ns_etcd_int.h - what ns_etcd.c (election, shared meta) and ns_etcd_dj.c
 * (the delete journal in etcd) share: the client's state, the view the
 * thread hands the loop, and the request helpers. Private to those two
 * files; the rest of the nameserver includes ns_etcd.h only. */
#ifndef IMG_NS_ETCD_INT_H
#define IMG_NS_ETCD_INT_H

#include "nameserver/ns_etcd.h"
#include "proto/addr.h"
#include "proto/nslist.h"

#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define HA_BODY_MAX (2u << 20) /* the largest etcd answer kept */
#define HA_META_MAX (1u << 20) /* the largest ns.meta text stored in etcd */
#define HA_KEY_MAX (NS_ETCD_PREFIX_MAX + 48)
#define HA_TXN_OPS 64       /* operations per delete-journal transaction (etcd's limit: 128) */
#define HA_DJ_PAGE 512      /* delete-journal keys read per range request */
#define HA_DJ_DEL_MAX 65536 /* pruned keys waiting for their delete; more are left in etcd */

/* A delete-journal entry to put in etcd (cb answered on the loop), or a
 * pruned one to delete there (no cb). */
struct dj_item {
    struct dj_item *next;
    int del;
    uint64_t block_id;
    uint32_t seq;
    uint8_t rec[NS_DJ_REC_SIZE];
    ns_dj_cb cb;
    void *arg;
    int status;
};

/* What the thread tells the loop. */
struct ha_view {
    int leader;              /* holds PREFIX/leader with our lease */
    int64_t epoch;           /* the leader key's create revision (0: no leader seen) */
    char leader_addr[ADDR_MAX];
    uint64_t valid_until_ms; /* monotonic ms: may act before this (leader only) */
    uint64_t ids_from, ids_to; /* block-id range of this term ([from, to); 0: none yet) */
    char *meta_in; /* a new term's shared meta text from etcd (owned; NULL: none) */
    uint8_t *dj_in;  /* a new term's delete-journal records from etcd (owned; NULL: none) */
    size_t dj_in_n;  /* records in dj_in */
};

struct ns_ha {
    struct ns *ns;
    struct nslist endpoints;
    char prefix[NS_ETCD_PREFIX_MAX];
    char me[ADDR_MAX];
    uint32_t ttl_ms;
    /* thread side */
    CURL *curl;
    int ep; /* endpoint in use */
    int64_t lease;
    pthread_t thread;
    int thread_started;
    /* the watch (ns_etcd_watch.c) */
    CURLM *wmulti;
    pthread_t wthread;
    int wthread_started;
    /* shared */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
    struct ha_view sh;
    char *meta_out; /* the leader's latest ns.meta text, not stored in etcd yet */
    int want_ids;   /* the loop used 3/4 of the term's ids: take another range */
    int resign;     /* step down: revoke the lease now */
    uint64_t hold_until_ms; /* monotonic: do not run for leader before */
    int kick;       /* run a round now (meta to store, ids wanted, step-down) */
    struct dj_item *dj_q, *dj_q_tail;       /* to send (owned) */
    size_t dj_ndel;                         /* deletes in dj_q */
    struct dj_item *dj_done, *dj_done_tail; /* puts answered, for the loop (owned) */
    /* loop side */
    uv_async_t async;
    int async_open;
    struct ha_view v;
    int acting; /* ns_leads() when last checked */
    uint64_t lead_since_ms; /* loop time acting turned 1 */
    uint64_t stepped_down_until; /* loop time: not acting before (step-down) */
    void (*demoted)(struct ns *ns);
};

/* ---- helpers of ns_etcd.c (thread side unless said) ---- */

/* Monotonic ms (any thread). */
uint64_t ns_etcd_mono_ms(void);

/* Base64 of the string s / of n bytes at p (caller frees), or NULL. */
char *ns_etcd_b64(const char *s);
char *ns_etcd_b64n(const void *p, size_t n);

/* Decodes base64 text into out (size len, NUL-terminated, no NUL inside).
 * 0 or -1. */
int ns_etcd_unb64(const char *in, char *out, size_t len);

/* POSTs req (stolen) to PATH on the current endpoint, then on the others
 * once each. Returns the parsed answer object (caller decrefs) or NULL. */
json_t *ns_etcd_call(struct ns_ha *ha, const char *path, json_t *req, int timeout_ms);

/* A 64-bit field the gateway sends as a string: 0 when absent, -1 when
 * malformed. */
int64_t ns_etcd_num(json_t *o, const char *name);

/* PREFIX/name into out (HA_KEY_MAX bytes). */
void ns_etcd_key_of(const struct ns_ha *ha, const char *name, char *out);

/* ---- ns_etcd_watch.c ---- */

/* Starts the thread watching PREFIX/leader: each change kicks a round.
 * 0 or -1 (the polls alone then). */
int ns_etcd_watch_start(struct ns_ha *ha);

/* Stops it; ha->stop must be set first. Safe when not started. */
void ns_etcd_watch_stop(struct ns_ha *ha);

/* ---- ns_etcd_dj.c ---- */

/* Thread: reads every delete-journal record stored in etcd into v->dj_in
 * (checked: a bad one is skipped with a WARN). 0, or -1 when etcd did not
 * answer (the term waits). */
int ns_etcd_dj_read(struct ns_ha *ha, struct ha_view *v);

/* Thread: sends the queued puts and deletes (while v leads), hands the
 * answered puts to the loop. */
void ns_etcd_dj_flush(struct ns_ha *ha, const struct ha_view *v);

/* Loop: merges a new term's records into the journal (RAM). */
void ns_etcd_dj_adopt(struct ns_ha *ha, const uint8_t *recs, size_t n);

/* Loop: calls and frees the answered puts of list. */
void ns_etcd_dj_answer(struct dj_item *list);

/* Loop: the journal's on_drop hook (arg: the ns_ha). */
void ns_etcd_dj_dropped(void *arg, uint64_t block_id, const struct ns_dj_entry *e);

/* Loop, after the thread stopped: every queued put is answered
 * -ECANCELED, queued deletes are dropped, the hook is removed. */
void ns_etcd_dj_cancel(struct ns_ha *ha);

#endif
