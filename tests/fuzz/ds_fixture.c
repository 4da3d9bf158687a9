/* ds_fixture.c - an in-process dataserver for the fuzz harnesses (see
 * ds_fixture.h). Everything goes over real loopback sockets in the one libuv
 * loop: the harness speaks raw frames, so hostile heads reach the server's
 * own frame reader, unpacking and validation unchanged. */
#include "tests/fuzz/ds_fixture.h"

#include "base/err.h"
#include "dataserver/block.h"
#include "dataserver/ds_block.h"
#include "dataserver/ds_compact.h"
#include "dataserver/ds_ec.h"
#include "dataserver/ds_copy.h"
#include "dataserver/ds_metrics.h"
#include "dataserver/ds_nsclient.h"
#include "dataserver/ds_scrub.h"
#include "dataserver/index.h"
#include "net/http_server.h"
#include "proto/imgstore.pb-c.h"
#include "tests/fuzz/fuzz.h"

#include <signal.h>
#include <unistd.h>

struct fx fx;

/* Once per process, for both harnesses: the server's log off, and a write to
 * a connection the other side closed fails instead of killing the process. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    setenv("IMGSTORE_LOG", "off", 1);
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

/* ---- raw framed connections ------------------------------------------------ */

struct rawc {
    struct fuzz_conn c; /* first: on_frame casts back */
    int session; /* the dataserver's heartbeat session (nameserver side) */
};

#define FX_NS_CONNS 8
static uv_tcp_t ns_listen;
static int ns_listen_open;
static struct rawc ns_conns[FX_NS_CONNS];
static struct rawc cli;
static uint64_t next_id = 1000;

/* the request fx_request waits for */
static uint64_t wait_id;
static int wait_done, wait_status;
static uint8_t *wait_head, *wait_body;
static size_t wait_head_len, wait_body_len;

/* Sends one frame with a raw head; returns its request id. */
static uint64_t raw_send(struct rawc *rc, unsigned type, const void *head, size_t head_len,
                         const void *body, size_t body_len)
{
    struct frame_header h = {.version = FRAME_VERSION, .type = (uint8_t)type,
                             .request_id = ++next_id, .head_len = (uint32_t)head_len,
                             .body_len = (uint32_t)body_len};
    fuzz_conn_send(&rc->c, &h, head, body);
    return h.request_id;
}

static void raw_reply(struct rawc *rc, const struct frame_header *req, int32_t status,
                      const ProtobufCMessage *m)
{
    fuzz_conn_send_msg(&rc->c, req->type | FRAME_RESPONSE, status, req->request_id, m);
}

/* An answer to a request of ours (on any connection). */
static void got_answer(const struct frame_header *h, const uint8_t *head, const uint8_t *body)
{
    if (!(h->type & FRAME_RESPONSE) || h->request_id != wait_id || wait_done)
        return;
    wait_done = 1;
    wait_status = h->status;
    free(wait_head);
    wait_head = malloc(h->head_len + 1);
    FUZZ_CHECK(wait_head != NULL);
    memcpy(wait_head, head, h->head_len);
    wait_head_len = h->head_len;
    free(wait_body);
    wait_body = malloc(h->body_len + 1);
    FUZZ_CHECK(wait_body != NULL);
    memcpy(wait_body, body, h->body_len);
    wait_body_len = h->body_len;
}

const uint8_t *fx_last_body(size_t *len)
{
    *len = wait_body_len;
    return wait_body;
}

/* ---- the fake nameserver ---------------------------------------------------- */

static void self_replica(Imgstore__Replica *r)
{
    *r = (Imgstore__Replica)IMGSTORE__REPLICA__INIT;
    r->server_id = fx.ds.store->server_id;
    r->addr = fx.ds.listen_addr;
    r->http_addr = fx.ds.http_addr;
}

static void ns_frame(struct fuzz_conn *c, const struct frame_header *h, const uint8_t *head,
                     const uint8_t *body)
{
    struct rawc *rc = (struct rawc *)c;
    if (h->type & FRAME_RESPONSE) {
        got_answer(h, head, body);
        return;
    }
    Imgstore__Replica self;
    Imgstore__Replica *selfp = &self;
    self_replica(&self);
    switch (h->type) {
    case FT_HEARTBEAT: {
        rc->session = 1;
        Imgstore__HeartbeatResp r = IMGSTORE__HEARTBEAT_RESP__INIT;
        r.cluster_id = "fuzz";
        r.block_size = FX_BLOCK_SIZE;
        r.replicas = 1;
        r.heartbeat_ms = DS_HEARTBEAT_MS;
        raw_reply(rc, h, 0, &r.base);
        break;
    }
    case FT_LOOKUP: {
        Imgstore__Lookup *m = imgstore__lookup__unpack(NULL, h->head_len, head);
        FUZZ_CHECK(m != NULL); /* the dataserver sends well-formed lookups */
        Imgstore__BlockLocation *locs = calloc(m->n_block_ids + 1, sizeof(*locs));
        Imgstore__BlockLocation **ptrs = calloc(m->n_block_ids + 1, sizeof(*ptrs));
        FUZZ_CHECK(locs && ptrs);
        Imgstore__LookupResp r = IMGSTORE__LOOKUP_RESP__INIT;
        for (size_t i = 0; i < m->n_block_ids; i++) {
            if (!store_get(fx.ds.store, m->block_ids[i]))
                continue;
            Imgstore__BlockLocation *l = &locs[r.n_locations];
            *l = (Imgstore__BlockLocation)IMGSTORE__BLOCK_LOCATION__INIT;
            l->block_id = m->block_ids[i];
            l->n_replicas = 1;
            l->replicas = &selfp;
            ptrs[r.n_locations++] = l;
        }
        r.locations = ptrs;
        raw_reply(rc, h, 0, &r.base);
        free(locs);
        free(ptrs);
        imgstore__lookup__free_unpacked(m, NULL);
        break;
    }
    case FT_ALLOC_WRITE: {
        Imgstore__WritableBlock wb = IMGSTORE__WRITABLE_BLOCK__INIT;
        Imgstore__WritableBlock *wbp = &wb;
        wb.block_id = FX_PRIMARY_BLOCK;
        wb.n_replicas = 1;
        wb.replicas = &selfp;
        Imgstore__AllocWriteResp r = IMGSTORE__ALLOC_WRITE_RESP__INIT;
        r.n_blocks = 1;
        r.blocks = &wbp;
        raw_reply(rc, h, 0, &r.base);
        break;
    }
    default:
        raw_reply(rc, h, IMG_EBADTYPE, NULL);
        break;
    }
}

static void ns_accept(uv_stream_t *server, int status)
{
    if (status < 0)
        return;
    struct rawc *rc = NULL;
    for (int i = 0; i < FX_NS_CONNS && !rc; i++)
        if (!ns_conns[i].c.live)
            rc = &ns_conns[i];
    FUZZ_CHECK(rc != NULL);
    memset(rc, 0, sizeof(*rc));
    fuzz_conn_init(&rc->c, fx.ds.loop, ns_frame);
    if (uv_accept(server, (uv_stream_t *)&rc->c.tcp) != 0 || fuzz_conn_start_read(&rc->c) != 0)
        fuzz_conn_close(&rc->c);
}

static struct rawc *session(void)
{
    for (int i = 0; i < FX_NS_CONNS; i++)
        if (ns_conns[i].c.open && ns_conns[i].session)
            return &ns_conns[i];
    return NULL;
}

/* ---- the native client -------------------------------------------------------- */

static void cli_frame(struct fuzz_conn *c, const struct frame_header *h, const uint8_t *head,
                      const uint8_t *body)
{
    got_answer(h, head, body);
}

static void cli_connected(uv_connect_t *req, int status)
{
    struct fuzz_conn *c = req->data;
    if (status != 0 || fuzz_conn_start_read(c) != 0)
        fuzz_conn_close(c);
}

static void cli_open(void)
{
    memset(&cli, 0, sizeof(cli));
    fuzz_conn_init(&cli.c, fx.ds.loop, cli_frame);
    struct sockaddr_storage ss;
    FUZZ_CHECK(conn_parse_addr(fx.ds.listen_addr, &ss) == 0);
    FUZZ_CHECK(uv_tcp_connect(&cli.c.creq, &cli.c.tcp, (struct sockaddr *)&ss, cli_connected) == 0);
}

/* ---- loop helpers --------------------------------------------------------------- */

static int flag_set(void *flag)
{
    return *(const int *)flag;
}

/* Runs the loop until *flag is set or ms passed. */
static void run_until(int *flag, uint32_t ms)
{
    fuzz_run_until(fx.ds.loop, flag_set, flag, ms);
}

void fx_run_for(uint32_t ms)
{
    int never = 0;
    run_until(&never, ms);
}

int fx_request(int to_session, unsigned type, const void *head, size_t head_len,
               const void *body, size_t body_len, uint32_t wait_ms, uint8_t **resp_head,
               size_t *resp_len)
{
    struct rawc *rc = to_session ? session() : &cli;
    if (!rc || !rc->c.open)
        return FX_NO_ANSWER;
    wait_done = 0;
    wait_id = raw_send(rc, type, head, head_len, body, body_len);
    run_until(&wait_done, wait_ms);
    if (!wait_done)
        return FX_NO_ANSWER;
    if (resp_head) {
        *resp_head = wait_head;
        *resp_len = wait_head_len;
        wait_head = NULL;
    }
    return wait_status;
}

/* ---- HTTP ---------------------------------------------------------------------------- */

struct hcli {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_shutdown_t sreq;
    char *buf;
    size_t len, cap;
    const void *req;
    size_t req_len;
    int done, closed;
    int (*enough)(const char *buf, size_t len, void *arg);
    void *arg;
};

static void hcli_closed(uv_handle_t *h)
{
    ((struct hcli *)h->data)->closed = 1;
}

static void hcli_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *out)
{
    struct hcli *c = h->data;
    if (c->cap - c->len < 65536) {
        c->cap = c->cap * 2 + 65536;
        c->buf = realloc(c->buf, c->cap + 1);
        FUZZ_CHECK(c->buf != NULL);
    }
    *out = uv_buf_init(c->buf + c->len, (unsigned)(c->cap - c->len));
}

static void hcli_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct hcli *c = s->data;
    if (n < 0) {
        c->done = 1;
        return;
    }
    c->len += (size_t)n;
    c->buf[c->len] = '\0';
    if (c->enough && c->enough(c->buf, c->len, c->arg))
        c->done = 1;
}

static void hcli_shut(uv_shutdown_t *req, int status)
{
}

static void hcli_written(uv_write_t *w, int status)
{
    free(w);
}

static void hcli_connected(uv_connect_t *req, int status)
{
    struct hcli *c = req->data;
    if (status != 0) {
        c->done = 1;
        return;
    }
    if (c->req_len == 0) {
        c->done = 1;
        return;
    }
    uv_read_start((uv_stream_t *)&c->tcp, hcli_alloc, hcli_read);
    uv_write_t *w = malloc(sizeof(*w));
    FUZZ_CHECK(w != NULL);
    w->data = c;
    uv_buf_t b = uv_buf_init((char *)c->req, (unsigned)c->req_len);
    if (uv_write(w, (uv_stream_t *)&c->tcp, &b, 1, hcli_written) != 0) {
        free(w);
        c->done = 1;
    }
}

char *fx_http(const void *req, size_t len, uint32_t wait_ms,
              int (*enough)(const char *buf, size_t len, void *arg), void *arg, int *closed,
              size_t *out_len)
{
    struct hcli c = {.req = req, .req_len = len, .enough = enough, .arg = arg};
    uv_tcp_init(fx.ds.loop, &c.tcp);
    c.tcp.data = &c;
    c.creq.data = &c;
    c.sreq.data = &c;
    struct sockaddr_storage ss;
    FUZZ_CHECK(conn_parse_addr(fx.ds.http_addr, &ss) == 0);
    FUZZ_CHECK(uv_tcp_connect(&c.creq, &c.tcp, (struct sockaddr *)&ss, hcli_connected) == 0);
    run_until(&c.done, wait_ms);
    if (!c.done) {
        /* Not all answers yet: end the sending side; the server closes. */
        uv_shutdown(&c.sreq, (uv_stream_t *)&c.tcp, hcli_shut);
        run_until(&c.done, FX_CLOSE_WAIT_MS);
    }
    *closed = c.done;
    uv_close((uv_handle_t *)&c.tcp, hcli_closed);
    run_until(&c.closed, 1000);
    FUZZ_CHECK(c.closed);
    if (!c.buf) {
        c.buf = malloc(1);
        FUZZ_CHECK(c.buf != NULL);
    }
    c.buf[c.len] = '\0';
    *out_len = c.len;
    return c.buf;
}

/* ---- start and stop ---------------------------------------------------------------- */

static char data_dir[192];

const uint8_t *fx_file_data(int i)
{
    static uint8_t data[FX_FILES][4096];
    static int made;
    if (!made) {
        for (int k = 0; k < FX_FILES; k++)
            for (size_t j = 0; j < sizeof(data[k]); j++)
                data[k][j] = (uint8_t)(j * 31 + (size_t)k * 7 + 1);
        made = 1;
    }
    return data[i];
}

static void bound_addr(uv_tcp_t *t, char *out)
{
    struct sockaddr_in sa;
    int n = sizeof(sa);
    FUZZ_CHECK(uv_tcp_getsockname(t, (struct sockaddr *)&sa, &n) == 0);
    snprintf(out, DS_ADDR_MAX, "127.0.0.1:%u", (unsigned)ntohs(sa.sin_port));
}

static void create_block(uint64_t id, int primary)
{
    Imgstore__Replica self, peer = IMGSTORE__REPLICA__INIT;
    self_replica(&self);
    peer.server_id = "fx-peer";
    peer.addr = "127.0.0.1:1";
    peer.http_addr = "127.0.0.1:1";
    Imgstore__Replica *reps[2] = {primary ? &self : &peer, &self};
    Imgstore__CreateBlock m = IMGSTORE__CREATE_BLOCK__INIT;
    m.block_id = id;
    m.block_size = FX_BLOCK_SIZE;
    m.primary = primary;
    m.n_replicas = primary ? 1 : 2;
    m.replicas = reps;
    uint8_t head[512];
    size_t n = protobuf_c_message_pack(&m.base, head);
    FUZZ_CHECK(fx_request(1, FT_CREATE_BLOCK, head, n, NULL, 0, 5000, NULL, NULL) == 0);
}

static void write_file(int i)
{
    static const uint32_t sizes[FX_FILES] = {5, 3000, 17};
    Imgstore__Write w = IMGSTORE__WRITE__INIT;
    w.block_id = FX_PRIMARY_BLOCK;
    w.mime = 1;
    uint8_t head[64];
    size_t n = protobuf_c_message_pack(&w.base, head);
    uint8_t *resp = NULL;
    size_t rlen = 0;
    int rc = fx_request(0, FT_WRITE, head, n, fx_file_data(i), sizes[i], 5000, &resp, &rlen);
    FUZZ_CHECK(rc == 0);
    Imgstore__WriteResp *r = imgstore__write_resp__unpack(NULL, rlen, resp);
    FUZZ_CHECK(r != NULL);
    struct fx_file *f = &fx.files[i];
    f->f = (struct fname){.block_id = r->block_id, .seq = r->seq, .cookie = r->cookie};
    f->size = sizes[i];
    FUZZ_CHECK(fname_encode(&f->f, f->name) == 0);
    imgstore__write_resp__free_unpacked(r, NULL);
    free(resp);
}

static void delete_file(int i)
{
    Imgstore__Delete d = IMGSTORE__DELETE__INIT;
    d.block_id = fx.files[i].f.block_id;
    d.seq = fx.files[i].f.seq;
    d.cookie = fx.files[i].f.cookie;
    uint8_t head[64];
    size_t n = protobuf_c_message_pack(&d.base, head);
    FUZZ_CHECK(fx_request(0, FT_DELETE, head, n, NULL, 0, 5000, NULL, NULL) == 0);
    fx.files[i].deleted = 1;
}

void fx_start(void)
{
    struct ds *ds = &fx.ds;
    if (!data_dir[0])
        snprintf(data_dir, sizeof(data_dir), "%s/ds", fuzz_tmpdir());
    fuzz_rmtree(data_dir);
    memset(&fx, 0, sizeof(fx));
    ds->loop = uv_default_loop();
    char *dirs[1] = {data_dir};
    FUZZ_CHECK(store_open(ds->loop, dirs, 1, &ds->store) == 0);
    ds->scrub_rate = 0;
    ds->http_max_upload = 1u << 20;
    ds->http_max_inflight = 8;
    ds->http_idle_ms = DS_HTTP_IDLE_MS;
    ds->http_header_ms = DS_HTTP_HEADER_MS;
    ds->http_token = strdup("fuzz-token");
    ds->http_token_len = strlen(ds->http_token);
    /* Every input comes from 127.0.0.1: slowing its 404s would answer most
     * GETs 429 and hide the read path from the fuzzer. */
    ds->miss_rate_set = 1;
    ds->miss_rate = 0;

    FUZZ_CHECK(conn_listen(ds->loop, &ns_listen, "127.0.0.1:0", ns_accept) == 0);
    ns_listen_open = 1;
    bound_addr(&ns_listen, ds->ns_addr);
    snprintf(ds->listen_addr, sizeof(ds->listen_addr), "127.0.0.1:0");
    snprintf(ds->http_addr, sizeof(ds->http_addr), "127.0.0.1:0");
    FUZZ_CHECK(ds_rpc_start(ds) == 0);
    bound_addr(&ds->listen_tcp, ds->listen_addr);
    FUZZ_CHECK(ds_http_start(ds) == 0);
    bound_addr(http_server_listener(ds->http), ds->http_addr);
    ds_session_start(ds);
    FUZZ_CHECK(ds_scrub_start(ds) == 0);
    fx.running = 1;

    /* The session is up and the primary roles confirmed. */
    run_until(&ds->primary_confirmed, 5000);
    FUZZ_CHECK(ds->primary_confirmed && session() != NULL);
    cli_open();
    create_block(FX_PRIMARY_BLOCK, 1);
    create_block(FX_SECONDARY_BLOCK, 0);
    for (int i = 0; i < FX_FILES; i++)
        write_file(i);
    delete_file(FX_FILES - 1);
}

static void walk_print(uv_handle_t *h, void *arg)
{
    if (!uv_is_closing(h))
        fprintf(stderr, "fx_stop: handle %s still open\n", uv_handle_type_name(h->type));
}

void fx_stop(void)
{
    struct ds *ds = &fx.ds;
    if (!fx.running)
        return;
    fx.running = 0;
    /* dataserver/main.c's shut-down, in its order */
    ds->stopping = 1;
    ds_session_stop(ds);
    ds_copy_stop(ds);
    ds_block_stop(ds);
    ds_compact_stop(ds);
    ds_scrub_stop(ds);
    ds_peer_close_all(ds);
    ds_http_stop(ds);
    uv_close((uv_handle_t *)&ds->listen_tcp, NULL);
    fuzz_conn_close(&cli.c);
    for (int i = 0; i < FX_NS_CONNS; i++)
        fuzz_conn_close(&ns_conns[i].c);
    if (ns_listen_open) {
        uv_close((uv_handle_t *)&ns_listen, NULL);
        ns_listen_open = 0;
    }
    uv_run(ds->loop, UV_RUN_NOWAIT);
    store_close(ds->store);
    for (int i = 0; i < 2000 && uv_loop_alive(ds->loop); i++) {
        uv_run(ds->loop, UV_RUN_NOWAIT);
        if (uv_loop_alive(ds->loop))
            usleep(500);
    }
    if (uv_loop_alive(ds->loop)) {
        uv_walk(ds->loop, walk_print, NULL);
        FUZZ_CHECK(!"every handle closes at shut-down");
    }
    ds_ec_close(ds); /* after the loop drained: no shard work in flight */
    free(ds->http_token);
    conn_gate_free(&ds->native_gate);
    addr_buckets_free(&ds->misses);
    free(ds->http);
    ds_nsc_free(ds);
    ds_metrics_free(ds);
    free(wait_head);
    free(wait_body);
    wait_head = wait_body = NULL;
    wait_head_len = wait_body_len = 0;
    fuzz_rmtree(data_dir);
}

/* ---- invariants ------------------------------------------------------------------------ */

static void check_block(struct block *b, void *arg)
{
    FUZZ_CHECK(b->tail >= BLOCK_SUPER_SIZE && b->tail % NEEDLE_ALIGN == 0);
    FUZZ_CHECK(b->durable_tail >= BLOCK_SUPER_SIZE && b->durable_tail <= b->tail);
    FUZZ_CHECK(b->tail <= b->max_size);
    FUZZ_CHECK(b->nreplicas >= 0 && b->nreplicas <= BLOCK_MAX_REPLICAS);
    uint32_t max = b->ix.max_seq < 4096 ? b->ix.max_seq : 4096;
    for (uint32_t seq = 1; seq <= max; seq++) {
        uint64_t off;
        uint32_t size;
        int deleted;
        if (index_get(&b->ix, seq, &off, &size, &deleted) != 0)
            continue;
        FUZZ_CHECK(off >= BLOCK_SUPER_SIZE && off % NEEDLE_ALIGN == 0);
        FUZZ_CHECK(off + needle_record_size(size) <= b->tail);
    }
}

void fx_check_store(void)
{
    store_foreach(fx.ds.store, check_block, NULL);
}

/* The dataserver allocates some state once per process and leaves it to the
 * process exit (the HTTP server, the nameserver client and its caches, the
 * metrics table, the copy/compaction/scrub states). The fixture starts a
 * server per input: it frees the first three itself (fx_stop); the small
 * states private to ds_copy.c, ds_block.c, ds_throttle.c, ds_compact.c and
 * ds_scrub.c are suppressed by
 * allocating function. Leaks of anything allocated per request
 * are still reported. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:state\n"          /* state(), removals_state(), throttle_state(), cstate(),
                                    * sstate() of ds_copy/block/throttle/compact/scrub */
           "leak:removed_add\n";   /* ds_block's list of removed blocks, kept in its state */
}
