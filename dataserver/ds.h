/* ds.h - the dataserver process: shared state of its modules.
 *
 * The dataserver runs one libuv loop on one thread. Modules:
 *   main.c        command line, start-up, signals, shut-down
 * transports (each hands request frames to ds_dispatch):
 *   ds_rpc.c      the native port (clients and peer dataservers), metrics
 *   ds_session.c  the session with the nameserver: heartbeats, its commands
 *   ds_peer.c     connections to peer dataservers (ds_peer_request)
 * dispatch:
 *   ds_dispatch.c the one table type -> handler, who may send it; ds_req
 *                 (ds_req.h), answered with ds_req_answer whatever the
 *                 connection
 * handlers:
 *   ds_repl.c     WRITE, DELETE (primary), REPL_APPEND (secondary)
 *   ds_file.c     the read path of one local file (READ, STAT, DELETE's
 *                 cookie check, the HTTP origin); READ and STAT
 *   ds_block.c    CREATE/SEAL/DELETE/STAT_BLOCK, SET_REPLICAS; deferred
 *                 closes of removed blocks; ds_block_changed
 *   ds_copy.c     REPLICATE_BLOCK (copy, tail catch-up), CANCEL_COPY,
 *                 READ_BLOCK (copy source)
 *   ds_compact.c  COMPACT_BLOCK: scheduling of compactions (the rewrite
 *                 itself is the engine's compact.c)
 *   ds_scrub.c    the scrubber and VERIFY
 *   ds_ec.c       erasure-coded shards: EC_ENCODE, EC_PUT_SHARD, their report
 * background:
 *   ds_throttle.c the token bucket shared by copies and compactions
 *   ds_disk.c     failed-disk checks
 *   ds_metrics.c  Prometheus figures
 * the HTTP origin and the dataserver as a cluster client:
 *   ds_http.c     the HTTP port: GET/HEAD files, uploads, deletes (http_*.c)
 *   ds_nsclient.c LOOKUP and ALLOC_WRITE to the nameserver, with caches
 * authentication (docs/security.md):
 *   ds_auth.c     the keys file and its reload, the member key and claims
 *                 our outgoing connections authenticate with, the cluster id
 *                 this server joined
 * Disk state lives in the storage engine (store.h, block.h, blockio.h,
 * compact.h), which never includes these modules. */
#ifndef DS_DS_H
#define DS_DS_H

#include "net/auth.h"
#include "net/conn.h"
#include "net/limits.h"
#include "proto/nslist.h"
#include "dataserver/store.h"

#include <stdint.h>
#include <uv.h>

#define DS_ADDR_MAX 64
#define DS_HEARTBEAT_MS 1000
#define DS_RECONNECT_MIN_MS 200
/* The heartbeat period while no nameserver session leads (ds_session.c). */
#define DS_LEADERLESS_HB_MS 100
#define DS_RECONNECT_MAX_MS 5000
#define DS_RECONNECT_LIST_MAX_MS 1000 /* the bound with several nameservers (--ns A,B) */
/* A heartbeat tick this late means the process was frozen (SIGSTOP, a stall):
 * the nameserver may have replaced us in replica sets meanwhile. */
#define DS_STALL_MS 3000
/* The nameserver's heartbeat timeout until its first answer says it. */
#define DS_NS_HB_TIMEOUT_MS 3000
#define DS_REPL_TIMEOUT_MS 10000
#define DS_NS_TIMEOUT_MS 10000
/* A sole-member primary waits this long for the nameserver to journal a
 * delete (NOTE_DELETE) before it answers IMG_EUNAVAIL (ds_tomb.c). */
#define DS_NOTE_TIMEOUT_MS 3000
#define DS_APPLY_MAX 65536 /* tombstones in one APPLY_TOMBSTONES */
#define DS_HTTP_MAX_UPLOAD (32u << 20) /* default --max-upload-bytes */
#define DS_HTTP_MAX_INFLIGHT 1024      /* default --max-inflight */
#define DS_HTTP_IDLE_MS 30000          /* default --http-idle-ms */
#define DS_HTTP_HEADER_MS 10000        /* default --http-header-timeout-ms */
#define DS_RECV_BUDGET (256ull << 20)  /* default --max-receive-mb */
#define DS_RECV_SMALL (64u << 10)      /* native frames up to this are never refused busy */
#define DS_MISS_RATE 100               /* default --miss-rate: 404s a second per address */
#define DS_MISS_BURST 200              /* default --miss-burst */

struct ds_peer;
struct ds_copy;
struct ds_removals;
struct ds_throttle;
struct ds_nsclient;
struct http_server;
struct http_tls;

struct auth_link;
struct ds;
/* One nameserver's session (ds_session.c): every nameserver of --ns gets
 * one, kept open, fed heartbeats and block reports (warm standbys); the
 * commands of only one, the leader's, are obeyed. */
struct ds_nss {
    struct ds *ds;
    char addr[DS_ADDR_MAX];
    struct conn *c;          /* NULL while disconnected */
    struct auth_link *link;  /* c's handshake (the nameserver proves the member key) */
    uv_timer_t reconnect_timer;
    int reconnect_ms;
    int need_full;           /* the next heartbeat on c must be a full report */
    int in_flight;           /* a heartbeat awaits its answer */
    int full_in_flight;      /* ... and it is a full report */
    uint64_t sent_ms;        /* loop time it was sent */
    int64_t epoch;           /* the epoch it last answered as leader with; 0: none */
    int standby;             /* its last answer was IMG_ENOTLEADER */
    int refused;             /* a command on it was refused (not yet known to lead) since
                              * its last heartbeat answer: that answer confirms nothing */
};

struct ds {
    uv_loop_t *loop;
    struct store *store;
    /* the nameservers (--ns A,B,C; empty when a test sets ns_addr alone),
     * one session each (nss[0..nnss)), and the one whose commands are
     * obeyed (the leader that answered with the highest epoch): index
     * ns_main (-1: none), address ns_addr (the list's first until one leads) */
    struct nslist ns_list;
    struct ds_nss nss[NSLIST_MAX];
    int nnss;
    int ns_main;
    /* fencing (--etcd on the nameservers): the epoch of the leader's
     * session (0: none, or no HA) and the highest one seen; commands on a
     * session that answered with an older epoch are refused */
    int64_t ns_epoch, ns_epoch_max;
    uint32_t ns_lead_gen; /* bumped whenever ns_main changes (compaction holds) */
    uint64_t fenced; /* commands refused for their epoch */
    uint64_t unled;  /* commands refused on a session not (yet) known to lead */
    char ns_addr[DS_ADDR_MAX];
    /* The addresses this server is known by (heartbeats, replica lists). */
    char listen_addr[DS_ADDR_MAX];
    char http_addr[DS_ADDR_MAX];
    /* The addresses bound when they are not those (--listen / --http with
     * --advertise / --advertise-http, e.g. 0.0.0.0:PORT); "": the above. */
    char listen_bind[DS_ADDR_MAX];
    char http_bind[DS_ADDR_MAX];
    uv_tcp_t listen_tcp;
    int stopping;

    /* authentication (ds_auth.c): keys NULL when off (--insecure) */
    struct auth_keys *keys;
    char member_key[AUTH_NAME_MAX]; /* the key our own connections use */
    char cluster_id[AUTH_CLAIM_MAX]; /* the cluster joined; empty until then */
    uv_timer_t keys_timer;
    /* the leader's session (ds_session.c): nss[ns_main]'s, NULL when none */
    struct conn *ns_conn;
    struct auth_link *ns_link;
    uv_timer_t hb_timer;
    /* 0 until the nameserver answered our full report on this session: it
     * sends any demotion (SET_REPLICAS) before that answer, so until then a
     * block we think we are primary of may have another primary (we were
     * down or cut off). WRITE and DELETE are refused meanwhile, so a stale
     * primary never orders appends the real one does not know about. */
    int primary_confirmed;
    /* 0 from process start (and after a stall) until a nameserver out of
     * safe mode answered our full report: before that answer it has sent
     * every SET_REPLICAS that takes us out of a set we were left out of
     * while down or frozen, so until then no local file is served (a copy
     * that missed tombstones would bring deleted files back). Kept across
     * a lost session: a nameserver outage must not stop reads. */
    int view_confirmed;
    /* 1 once a confirmed view has lapsed (lease run out, or a stall) until it
     * is confirmed again: such copies answer IMG_EVIEWOLD, and still serve a
     * reader that asks with any_view (no current replica answered it).
     * 0 from process start: a copy that was down is never served so. */
    int view_lapsed;
    /* The view lease: loop time until which a confirmed view counts. Each
     * answered heartbeat renews it to (the heartbeat's send time + half the
     * nameserver's heartbeat timeout): the nameserver cannot have declared
     * us down, and so cannot have moved our copies' sets on without us,
     * before then. Past it (no answer: we may be cut off while the
     * nameserver lives on) local copies are not served and the view must be
     * confirmed again by a full report (ds_session.c). */
    uint64_t view_lease_until;
    uint64_t last_tick_ms;    /* loop time of the last heartbeat tick */
    int hb_soon;              /* a heartbeat is wanted before the next tick */
    uint64_t ns_block_size;
    uint32_t ns_replicas;     /* the cluster's replication (HeartbeatResp), 0 until known */
    uint32_t record_format;   /* record format to write (HeartbeatResp; 1 until told) */
    int compress_level;       /* --compress-level: zstd level of uploads (0: store as sent) */
    uint64_t writes_encoded;  /* files stored compressed (format 3) */
    uint64_t encoded_saved_bytes; /* bytes those records saved on each replica */
    uint64_t reads_decoded;   /* reads of compressed records decoded for the reader */
    /* Block copies (ds_copy.c): READ_BLOCK bodies on the wire and the
     * bytes they carried (equal for plain chunks), as target and source. */
    uint64_t copy_received_wire, copy_received_raw, copy_sent_wire, copy_sent_raw;
    /* The loop's lag probe (ds_metrics_lag_start): a timer due every
     * DS_LAG_PROBE_MS; how late it fires is how long the loop was kept
     * from its work. */
    uv_timer_t lag_timer;
    uint64_t lag_due_ns;      /* uv_hrtime() the probe is next due */
    uint64_t lag_max_ns;      /* the longest lateness seen since start */
    int ns_safe_mode;

    /* connections to peers (ds_peer.c) */
    struct ds_peer *peers;

    /* background copies (ds_copy.c), removed blocks (ds_block.c) and the
     * token bucket (ds_throttle.c), NULL until used */
    struct ds_copy *copy;
    struct ds_removals *removals;
    struct ds_throttle *throttle;
    uint64_t copy_sync_bytes;   /* --copy-sync-mb; 0: the default (ds_copy_sync_bytes) */

    /* shards of erasure-coded blocks held here (ds_ec.c), NULL until used */
    struct ds_ec *ec;

    /* failed-disk checks (ds_disk.c), NULL until started */
    struct ds_disk *disk;

    /* compactions (ds_compact.c) and the scrubber (ds_scrub.c), NULL until used */
    struct ds_compact *compact;
    struct ds_scrub *scrub;
    uint64_t scrub_rate;        /* bytes/s of background checking in force; 0: off */
    uint64_t scrub_rate_own;    /* --scrub-rate-mb, used while the nameserver sends 0 */
    uint64_t scrub_shard_chunks; /* shard chunks the scrubber checked */
    uint64_t scrub_shard_bad;    /* ... that failed their CRC32C (shard reported bad) */

    /* the dataserver as a cluster client (ds_nsclient.c) */
    struct ds_nsclient *nsc;

    /* HTTP origin (ds_http.c); limits set by main.c before ds_http_start */
    struct http_server *http;
    char *http_token;           /* bearer secret for uploads; NULL: uploads refused */
    size_t http_token_len;
    uint64_t http_max_upload;   /* bytes; larger bodies get 413 */
    int http_max_inflight;      /* requests doing disk or network work at once */
    int http_idle_ms;           /* keep-alive idle and stalled-write timeout */
    int http_header_ms;         /* whole request head must arrive within this */

    /* Prometheus figures (ds_metrics.c), NULL until first used */
    struct ds_metrics *metrics;

    /* counters */
    uint64_t reads;
    uint64_t writes;
    uint64_t deletes;

    /* Limits (ds_rpc.c, ds_http.c; docs/operations.md, "Limits"), set by
     * main.c; 0: the default. */
    uint64_t recv_budget;       /* --max-receive-mb, bytes: DS_RECV_BUDGET */
    uint64_t recv_used;         /* bytes reserved by requests being received */
    uint64_t recv_busy;         /* uploads answered busy (native and HTTP) */
    uint32_t frame_ms;          /* --frame-timeout-ms: CONN_FRAME_MS */
    uint32_t idle_ms;           /* --idle-timeout-ms (native port): CONN_IDLE_MS */
    uint32_t max_conns;         /* --max-conns (each port): LIMITS_MAX_CONNS */
    uint32_t max_conns_per_addr; /* --max-conns-per-addr: LIMITS_MAX_CONNS_PER_ADDR */
    int miss_rate_set;          /* --miss-rate given (0 turns the slowing off) */
    double miss_rate, miss_burst; /* 404s a second per address, burst */
    struct conn_gate native_gate; /* the native port's connections */
    struct addr_buckets misses;   /* 404s per address (ds_http.c) */
    uint64_t http_misses;         /* 404 answers to GET/HEAD */
    struct addr_set miss_exempt;  /* --miss-exempt: never slowed by the 404s */

    /* HTTPS: a second listener of the origin (ds_http.c; docs/http.md,
     * "HTTPS"), set by main.c */
    char https_addr[DS_ADDR_MAX]; /* --https; "" for none */
    struct http_tls *tls;         /* --tls-cert, --tls-key (owned), NULL for none */
    struct http_server *https;
};

/* ds_rpc.c: the receive budget. Reserves n bytes of request bodies being
 * received: returns 0, or IMG_EBUSY when `gated` and the budget would be
 * exceeded (a lone request is always let in). Ungated reservations
 * (REPL_APPEND: its primary accepted the write already) always succeed. */
int ds_recv_reserve(struct ds *ds, uint64_t n, int gated);
void ds_recv_release(struct ds *ds, uint64_t n);
/* ds_auth.c: starts the keys file's reload timer (every second). */
void ds_auth_start(struct ds *ds);
void ds_auth_stop(struct ds *ds);
/* Starts the handshake on a connection we opened (net/auth_link.h) with our
 * member key and claims (cluster id, server id); authentication off: a
 * pass-through link. NULL when the member key is gone from the file (logged)
 * or out of memory: the caller closes c. */
struct auth_link *ds_auth_link(struct ds *ds, struct conn *c, void (*done)(int status, void *arg),
                               void *arg);
/* Loads the cluster id stored in the first data folder (empty when none). */
int ds_auth_load_cluster(struct ds *ds);
/* Stores `id` as the cluster this server joined (atomically, fsync'd).
 * Returns 0 or an error. */
int ds_auth_save_cluster(struct ds *ds, const char *id);

/* ds_rpc.c: accepts native connections on ds->listen_tcp. */
int ds_rpc_start(struct ds *ds);

/* ds_peer.c: sends any native request to the dataserver at `addr` on the
 * shared peer connection (opened on first use). Same contract as
 * conn_request with a copied body: returns 0 and cb runs exactly once, or an
 * error and cb never runs. */
int ds_peer_request(struct ds *ds, const char *addr, unsigned type, const ProtobufCMessage *msg,
                    const void *body, uint32_t body_len, uint32_t timeout_ms, conn_reply_cb cb,
                    void *arg);
/* Closes every peer connection (pending requests fail with IMG_ECONN). */
void ds_peer_close_all(struct ds *ds);

/* ds_session.c: connects to the nameserver and keeps the session alive. */
int ds_session_start(struct ds *ds);
/* Asks for a heartbeat soon (a block was created or sealed; for a changed
 * block use ds_block_changed, ds_block.h). */
void ds_session_poke(struct ds *ds);
void ds_session_stop(struct ds *ds);

/* ds_http.c: serves the HTTP port. */
int ds_http_start(struct ds *ds);
/* ds_http.c: serves the same origin over TLS on ds->https_addr (after
 * ds_http_start); ds_http_stop stops both and frees ds->tls. */
int ds_https_start(struct ds *ds);
void ds_http_stop(struct ds *ds);

#endif
