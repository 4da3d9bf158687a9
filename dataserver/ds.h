/* ds.h - the dataserver process: shared state of its modules.
 *
 * The dataserver runs one libuv loop on one thread. Modules:
 *   main.c        command line, start-up, signals, shut-down
 *   ds_rpc.c      native-port requests: WRITE, READ, STAT, DELETE, REPL_APPEND
 *   ds_repl.c     connections to peer dataservers for replicated appends
 *   ds_session.c  the session with the nameserver: heartbeats, CREATE_BLOCK
 *   ds_http.c     the HTTP port (GET /healthz for now)
 * Disk state lives in the storage engine (store.h, block.h, blockio.h). */
#ifndef DS_DS_H
#define DS_DS_H

#include "common/conn.h"
#include "dataserver/store.h"

#include <stdint.h>
#include <uv.h>

#define DS_ADDR_MAX 64
#define DS_HEARTBEAT_MS 1000
#define DS_RECONNECT_MIN_MS 200
#define DS_RECONNECT_MAX_MS 5000
#define DS_REPL_TIMEOUT_MS 10000
#define DS_NS_TIMEOUT_MS 10000

struct ds_peer;

struct ds {
    uv_loop_t *loop;
    struct store *store;
    char ns_addr[DS_ADDR_MAX];
    char listen_addr[DS_ADDR_MAX];
    char http_addr[DS_ADDR_MAX];
    uv_tcp_t listen_tcp;
    uv_tcp_t http_tcp;
    int stopping;

    /* nameserver session (ds_session.c) */
    struct conn *ns_conn;
    uv_timer_t hb_timer;
    uv_timer_t reconnect_timer;
    int reconnect_ms;
    int need_full_report;
    int hb_in_flight;
    int hb_soon;              /* a heartbeat is wanted before the next tick */
    uint64_t ns_block_size;
    int ns_safe_mode;

    /* peers for replication (ds_repl.c) */
    struct ds_peer *peers;

    /* counters */
    uint64_t reads;
    uint64_t writes;
    uint64_t deletes;
};

/* ds_rpc.c: accepts native connections on ds->listen_tcp. */
int ds_rpc_start(struct ds *ds);

/* ds_repl.c: sends one record to the peer at `addr` (REPL_APPEND) and calls
 * cb(status, arg) once with 0 when the peer has it durable, or an error.
 * `rec` is copied. Returns 0, or an error (cb not called). */
typedef void (*ds_repl_cb)(int status, void *arg);
int ds_repl_send(struct ds *ds, const char *addr, uint64_t block_id, uint64_t offset,
                 const void *rec, uint32_t rec_len, ds_repl_cb cb, void *arg);
/* Closes every peer connection (pending sends fail with IMG_ECONN). */
void ds_repl_close_all(struct ds *ds);

/* ds_session.c: connects to the nameserver and keeps the session alive. */
int ds_session_start(struct ds *ds);
/* Asks for a heartbeat soon (a block was created or sealed). */
void ds_session_poke(struct ds *ds);
void ds_session_stop(struct ds *ds);

/* ds_http.c: serves the HTTP port. */
int ds_http_start(struct ds *ds);
void ds_http_stop(struct ds *ds);

#endif
