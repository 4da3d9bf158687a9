/* ds_fixture.h - an in-process dataserver for the fuzz harnesses of its
 * request handlers (fuzz_ds_rpc.c, fuzz_ds_http.c).
 *
 * fx_start builds what dataserver/main.c builds: a real store in a fresh
 * temporary data folder, the native port (ds_rpc.c), the HTTP origin
 * (ds_http.c), the nameserver session (ds_session.c) and the scrubber, all on
 * loopback ports picked by the kernel, in this process's libuv loop. The
 * "nameserver" is the fixture itself: it accepts the dataserver's session,
 * answers heartbeats (so the primary roles are confirmed), LOOKUP (every
 * block on this server) and ALLOC_WRITE (block 1 on this server), and sends
 * session commands (CREATE_BLOCK, REPLICATE_BLOCK, ...) as raw frames.
 *
 * The starting state, made through the real request paths: block 1
 * (primary, this server its only replica, so writes need no peer) holding
 * FX_FILES files, the last one deleted; block 2, a secondary whose primary
 * is a closed port (REPL_APPEND target). fx.files[] has their names and
 * cookies. fx_stop shuts everything down the way main.c does and removes the
 * folder, so every fuzz input starts from the same state. ds_fixture.c also
 * defines LLVMFuzzerInitialize for its harnesses (log off, SIGPIPE ignored). */
#ifndef IMG_FUZZ_DS_FIXTURE_H
#define IMG_FUZZ_DS_FIXTURE_H

#include "dataserver/ds.h"
#include "proto/fname.h"
#include "proto/frame.h"

#include <stddef.h>
#include <stdint.h>

#define FX_FILES 3
#define FX_BLOCK_SIZE (1u << 20)
#define FX_PRIMARY_BLOCK 1
#define FX_SECONDARY_BLOCK 2
#define FX_CLOSE_WAIT_MS 2000 /* fx_http: for the server to close after our EOF */
#define FX_NO_ANSWER 1 /* fx_request: no answer within the wait */

struct fx_file {
    struct fname f;
    char name[FNAME_BUF];
    uint32_t size;
    int deleted;
};

struct fx {
    struct ds ds;
    struct fx_file files[FX_FILES];
    char ns_addr[DS_ADDR_MAX];
    int running;
};

extern struct fx fx;

/* Returns the content of fixture file i (size fx.files[i].size). */
const uint8_t *fx_file_data(int i);

/* Starts the dataserver and makes the starting state; aborts on failure (a
 * harness that cannot set up tests nothing). */
void fx_start(void);

/* Stops the dataserver, runs the loop until every handle closed, and removes
 * the data folder. */
void fx_stop(void);

/* Sends one frame of `type` with the raw `head` and `body` to the
 * dataserver: on its native port, or on its nameserver session when
 * `session` is set. Runs the loop until the answer comes or `wait_ms` passed.
 * Returns the answer's status (0 or negative), or FX_NO_ANSWER. The answer's
 * head is copied to *resp_head (malloc'd, *resp_len bytes) when resp_head
 * is not NULL and an answer came. */
int fx_request(int session, unsigned type, const void *head, size_t head_len, const void *body,
               size_t body_len, uint32_t wait_ms, uint8_t **resp_head, size_t *resp_len);

/* The body of the last answer fx_request got (valid until the next one). */
const uint8_t *fx_last_body(size_t *len);

/* Sends raw bytes to the HTTP port and collects what the server answers,
 * until enough(answer so far) says so, the server closes the connection, or
 * `wait_ms` passed; in the last case the sending side is closed (the server
 * then closes) and the loop runs up to FX_CLOSE_WAIT_MS more. *closed tells whether
 * it ended by the server's close or by enough(). Returns the bytes (malloc'd,
 * NUL-terminated; *len without the NUL). */
char *fx_http(const void *req, size_t len, uint32_t wait_ms,
              int (*enough)(const char *buf, size_t len, void *arg), void *arg, int *closed,
              size_t *out_len);

/* Runs the loop for `ms` (lets background work progress). */
void fx_run_for(uint32_t ms);

/* Checks what must hold for every block of the store whatever the requests
 * were: tails aligned, inside [superblock, max size], durable <= tail,
 * every indexed record inside the durable part. Aborts when broken. */
void fx_check_store(void);

#endif
