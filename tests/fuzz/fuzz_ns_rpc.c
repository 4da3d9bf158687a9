/* fuzz_ns_rpc.c - libFuzzer harness: every request the nameserver accepts,
 * through its real listener, frame reader, unpacking, validation and
 * handlers (nameserver/ns_rpc.c dispatch).
 *
 * Each input runs against a fresh in-process nameserver (ns_init + ns_start
 * on this process's libuv loop, data folder under fuzz_tmpdir(), so every
 * ns.meta write - SET_SETTING, READONLY, DRAIN, known servers, id reserve -
 * stays there). Three fake dataservers register through real HEARTBEAT
 * frames on loopback sessions (full reports): fx-ds1 and fx-ds2 hold block 1
 * (writable), block 2 (sealed, 60 % deleted: COMPACT) and fx-ds1 alone block
 * 3 (under-replicated: REPAIR copies); fx-ds2 and fx-ds3 hold block 4 (the
 * copy on fx-ds2 corrupt), fx-ds3 alone block 5; fx-ds3 then disconnects
 * (down: block 5 lost). The server's 200 ms timer is stopped; its work (the
 * planner, block creation, timeouts) runs when a step asks, so a run does
 * not depend on timing. The fake dataservers answer the nameserver's
 * commands (CREATE_BLOCK, SEAL_BLOCK, STAT_BLOCK, VERIFY, COMPACT_BLOCK,
 * REPLICATE_BLOCK, DELETE_BLOCK, SET_REPLICAS, CANCEL_COPY) as the input's
 * first byte says: proper answers, an error status, a hostile head, or
 * never.
 *
 * The input after that: a u32 status (error mode), a u16-prefixed head
 * (hostile mode), then up to FUZZ_MAX_STEPS frames sent on a fresh client
 * connection:
 *   u8    kind   the type (kinds[] below, modulo its length; the last kind
 *                takes the next u8 as a raw type, FRAME_RESPONSE included)
 *   u8    flags  bit 0: pipelined (sent without waiting for the answer)
 *                bit 1: a body follows (u16-prefixed)
 *                bit 2: the header's status is the next u32 (a positive one
 *                       is refused like a corrupt header)
 *                bit 3: reuse the previous request id
 *                bit 4: corrupt the header as the next u8 says (bad magic,
 *                       version, head or body length over the limit, a head
 *                       length past the bytes sent); the last step
 *                bit 5: run the timer's work after the step
 *                bit 6: close the connection right after sending (answers
 *                       of this and pipelined requests are lost; the next
 *                       step opens a new one)
 *   part  head   protobuf head (u16 length prefix)
 *
 * Properties: no crash, leak or out-of-bounds access (ASan, UBSan); every
 * frame the nameserver sends decodes; every answer matches a request still
 * waiting (same id, the request's type | FRAME_RESPONSE), has status 0 or a
 * known IMG_E* / errno code, no head when it failed, and a head that unpacks
 * as the type's answer message when it succeeded, with type-specific checks
 * (ALLOC_WRITE never hands out an excluded block, LOOKUP only asked blocks,
 * LIST_BLOCKS sorted ids after after_id, ...); every request is answered
 * (REPAIR with silent dataservers aside) and a well-framed connection is
 * never dropped; after every step the nameserver's state is consistent
 * (block map, registry, tasks, operator marks); at the end ns.meta parses
 * and holds exactly the settings and marks in force. */
#include "net/conn.h"
#include "base/err.h"
#include "nameserver/ns.h"
#include "nameserver/ns_admin.h"
#include "nameserver/ns_ops.h"
#include "proto/frame.h"
#include "proto/imgstore.pb-c.h"
#include "tests/fuzz/fuzz.h"
#include "tests/fuzz/ns_check.h"

#include <signal.h>
#include <unistd.h>

#define FUZZ_MAX_STEPS 16
#define FUZZ_WAIT_MS 3000   /* for the answers of a step (loopback, in-process) */
#define FUZZ_SETUP_MS 5000
#define FX_NDS 3
#define FX_BLOCK_SIZE (4 * NS_MIB)
#define FX_MAX_PENDING 64
#define FX_NO_DS (-1)

/* ---- the fixture's blocks ------------------------------------------------------ */

struct fx_copy {
    uint64_t block_id, size, deleted;
    uint32_t files;
    int sealed, primary, corrupt;
};

/* What each fake dataserver holds (reported in its full heartbeat). */
static const struct fx_copy copies[FX_NDS][3] = {
    {{1, 65536, 0, 3, 0, 1, 0}, {2, NS_MIB, 600 * 1024, 10, 1, 1, 0}, {3, 262144, 0, 4, 1, 1, 0}},
    {{1, 65536, 0, 3, 0, 0, 0}, {2, NS_MIB, 600 * 1024, 10, 1, 0, 0}, {4, 131072, 0, 2, 1, 1, 1}},
    {{4, 131072, 0, 2, 1, 0, 0}, {5, 8192, 0, 1, 1, 1, 0}, {0, 0, 0, 0, 0, 0, 0}},
};
static const char *const ds_ids[FX_NDS] = {"fx-ds1", "fx-ds2", "fx-ds3"};

enum { MODE_GOOD, MODE_ERROR, MODE_HOSTILE, MODE_SILENT };

/* ---- raw framed connections ------------------------------------------------------ */

struct pend {
    uint64_t id;
    unsigned type;
    int must;          /* the answer must come */
    uint8_t *head;     /* the request's head (malloc'd) */
    size_t head_len;
    int ambiguous;     /* another request of its type had its id: answers may swap */
};

struct peer {
    struct fuzz_conn c; /* first: peer_frame casts back */
    uv_shutdown_t sreq;
    int ds;            /* index of the fake dataserver, FX_NO_DS for the client */
    int connected;
    int hb_done, hb_status;
    uint64_t hb_id;
};

static struct {
    struct ns ns;
    struct ns_config cfg;
    uv_loop_t *loop;
    char dir[128], addr[64];
    struct peer ds[FX_NDS];
    struct peer cli;
    int mode;
    int32_t err_status;
    /* The client connection answered a command of the nameserver (it sent a
     * HEARTBEAT, so it is a dataserver session) with a positive status: a
     * malformed frame, which closes it like a corrupt header. */
    int cli_malformed;
    const uint8_t *hostile;
    size_t hostile_len;
    struct pend pend[FX_MAX_PENDING];
    size_t npend;
    uint64_t next_id;
    int verbose;
} fx;

static void send_msg(struct peer *p, unsigned type, int32_t status, uint64_t id,
                     const ProtobufCMessage *m)
{
    fuzz_conn_send_msg(&p->c, type, status, id, m);
}

/* ---- the fake dataservers' answers to the nameserver's commands -------------------- */

static const struct fx_copy *copy_of(int ds, uint64_t id)
{
    for (int i = 0; ds >= 0 && i < 3; i++)
        if (copies[ds][i].block_id && copies[ds][i].block_id == id)
            return &copies[ds][i];
    return NULL;
}

/* What a fake dataserver says of its copy c (STAT_BLOCK, heartbeats). */
static void copy_info(const struct fx_copy *c, Imgstore__BlockInfo *bi)
{
    imgstore__block_info__init(bi);
    bi->block_id = c->block_id;
    bi->size = c->size;
    bi->file_count = c->files;
    bi->deleted_bytes = c->deleted;
    bi->sealed = c->sealed;
    bi->primary = c->primary;
    bi->corrupt = c->corrupt;
}

/* A proper answer to command `h` on dataserver ds (FX_NO_DS: the client
 * connection turned session, which holds nothing). */
static void answer_good(struct peer *p, const struct frame_header *h, const uint8_t *head)
{
    unsigned rt = h->type | FRAME_RESPONSE;
    /* Every command's field 1 is the block id. */
    Imgstore__StatBlock *sb = imgstore__stat_block__unpack(NULL, h->head_len, head);
    FUZZ_CHECK(sb != NULL); /* the nameserver sends well-formed commands */
    const struct fx_copy *c = copy_of(p->ds, sb->block_id);
    imgstore__stat_block__free_unpacked(sb, NULL);
    switch (h->type) {
    case FT_CREATE_BLOCK: {
        Imgstore__CreateBlockResp r = IMGSTORE__CREATE_BLOCK_RESP__INIT;
        send_msg(p, rt, 0, h->request_id, &r.base);
        return;
    }
    case FT_VERIFY: {
        Imgstore__VerifyResp r = IMGSTORE__VERIFY_RESP__INIT;
        r.blocks = 1;
        r.records = c ? c->files : 0;
        r.bad_records = c && c->corrupt ? 1 : 0;
        send_msg(p, rt, c ? 0 : IMG_ENOBLOCKHERE, h->request_id, c ? &r.base : NULL);
        return;
    }
    case FT_REPLICATE_BLOCK: {
        Imgstore__ReplicateBlock *m = imgstore__replicate_block__unpack(NULL, h->head_len, head);
        FUZZ_CHECK(m != NULL);
        Imgstore__ReplicateBlockResp r = IMGSTORE__REPLICATE_BLOCK_RESP__INIT;
        r.size = m->expected_size;
        r.crc32c = 0x1234;
        imgstore__replicate_block__free_unpacked(m, NULL);
        send_msg(p, rt, 0, h->request_id, &r.base);
        return;
    }
    case FT_DELETE_BLOCK: {
        Imgstore__DeleteBlockResp r = IMGSTORE__DELETE_BLOCK_RESP__INIT;
        send_msg(p, rt, c ? 0 : IMG_ENOBLOCKHERE, h->request_id, c ? &r.base : NULL);
        return;
    }
    case FT_CANCEL_COPY: /* copies are answered at once here: none runs */
        send_msg(p, rt, IMG_ENOTFOUND, h->request_id, NULL);
        return;
    default: break;
    }
    if (!c) {
        send_msg(p, rt, h->type == FT_SEAL_BLOCK || h->type == FT_STAT_BLOCK ||
                                h->type == FT_COMPACT_BLOCK || h->type == FT_SET_REPLICAS
                            ? IMG_ENOBLOCKHERE
                            : IMG_EBADTYPE,
                 h->request_id, NULL);
        return;
    }
    switch (h->type) {
    case FT_SEAL_BLOCK: {
        Imgstore__SealBlockResp r = IMGSTORE__SEAL_BLOCK_RESP__INIT;
        r.size = c->size;
        send_msg(p, rt, 0, h->request_id, &r.base);
        break;
    }
    case FT_SET_REPLICAS: {
        Imgstore__SetReplicasResp r = IMGSTORE__SET_REPLICAS_RESP__INIT;
        r.size = c->size;
        send_msg(p, rt, 0, h->request_id, &r.base);
        break;
    }
    case FT_STAT_BLOCK: {
        Imgstore__BlockInfo r;
        copy_info(c, &r);
        send_msg(p, rt, 0, h->request_id, &r.base);
        break;
    }
    case FT_COMPACT_BLOCK: {
        Imgstore__CompactBlock *m = imgstore__compact_block__unpack(NULL, h->head_len, head);
        FUZZ_CHECK(m != NULL);
        Imgstore__CompactBlockResp r = IMGSTORE__COMPACT_BLOCK_RESP__INIT;
        if (!m->release) {
            r.size = c->size - c->deleted;
            r.crc32c = 0x5678;
            r.file_count = c->files;
            r.reclaimed = c->deleted;
        }
        imgstore__compact_block__free_unpacked(m, NULL);
        send_msg(p, rt, 0, h->request_id, &r.base);
        break;
    }
    default: send_msg(p, rt, IMG_EBADTYPE, h->request_id, NULL); break;
    }
}

/* A command from the nameserver to a fake dataserver (or to the client
 * connection, after it sent a HEARTBEAT): answered as the input's mode says. */
static void ds_command(struct peer *p, const struct frame_header *h, const uint8_t *head)
{
    if (fx.verbose)
        fprintf(stderr, "  ns -> %s: %s\n", p->ds >= 0 ? ds_ids[p->ds] : "client",
                frame_type_name(h->type));
    switch (fx.mode) {
    case MODE_GOOD: answer_good(p, h, head); break;
    case MODE_ERROR:
        if (p->ds < 0 && fx.err_status > 0)
            fx.cli_malformed = 1;
        send_msg(p, h->type | FRAME_RESPONSE, fx.err_status, h->request_id, NULL);
        break;
    case MODE_HOSTILE: {
        struct frame_header r = {.version = FRAME_VERSION, .type = h->type | FRAME_RESPONSE,
                                 .request_id = h->request_id,
                                 .head_len = (uint32_t)fx.hostile_len};
        fuzz_conn_send(&p->c, &r, fx.hostile, NULL);
        break;
    }
    default: break; /* silent */
    }
}

/* ---- answers to the client's requests --------------------------------------------- */

static int known_status(int st)
{
    return st == 0 || strcmp(img_errname(st), "E?") != 0;
}

/* Returns non-zero for the types ns_rpc.c dispatches. */
static int ns_type(unsigned t)
{
    return (t >= FT_HEARTBEAT && t <= FT_LIST_TASKS) || t == FT_NOTE_DELETE ||
           (t >= FT_ADMIN_LIST_BLOCKS && t <= FT_ADMIN_EC_ENCODE) ||
           t == FT_AUTH_HELLO || t == FT_AUTH; /* the handshake: every server's */
}

static const ProtobufCMessageDescriptor *resp_desc(unsigned t)
{
    switch (t) {
    case FT_HEARTBEAT: return &imgstore__heartbeat_resp__descriptor;
    case FT_ALLOC_WRITE: return &imgstore__alloc_write_resp__descriptor;
    case FT_LOOKUP: return &imgstore__lookup_resp__descriptor;
    case FT_CLUSTER_STATUS: return &imgstore__cluster_status_resp__descriptor;
    case FT_DRAIN: return &imgstore__drain_resp__descriptor;
    case FT_LIST_TASKS: return &imgstore__list_tasks_resp__descriptor;
    case FT_ADMIN_LIST_BLOCKS: return &imgstore__admin_list_blocks_resp__descriptor;
    case FT_ADMIN_BLOCK_INFO: return &imgstore__admin_block_info_resp__descriptor;
    case FT_ADMIN_SERVER_RATES: return &imgstore__admin_server_rates_resp__descriptor;
    case FT_ADMIN_CANCEL_TASK: return &imgstore__admin_cancel_task_resp__descriptor;
    case FT_ADMIN_READONLY: return &imgstore__admin_readonly_resp__descriptor;
    case FT_ADMIN_SETTINGS: return &imgstore__admin_settings_resp__descriptor;
    case FT_ADMIN_SET_SETTING: return &imgstore__admin_set_setting_resp__descriptor;
    case FT_ADMIN_REBALANCE: return &imgstore__admin_rebalance_resp__descriptor;
    case FT_ADMIN_COMPACT: return &imgstore__admin_compact_resp__descriptor;
    case FT_ADMIN_REPAIR: return &imgstore__admin_repair_resp__descriptor;
    case FT_ADMIN_STEP_DOWN: return &imgstore__admin_step_down_resp__descriptor;
    case FT_AUTH_HELLO: return &imgstore__auth_hello_resp__descriptor;
    case FT_AUTH: return &imgstore__auth_resp__descriptor;
    case FT_ADMIN_EC_ENCODE: return &imgstore__admin_ec_encode_resp__descriptor;
    default: return NULL;
    }
}

static void check_replicas(Imgstore__Replica **r, size_t n)
{
    FUZZ_CHECK(n <= NS_BLOCK_SLOTS);
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK(ns_server_id_valid(r[i]->server_id));
}

/* Checks a successful answer against its request. */
static void check_success(const struct pend *q, const ProtobufCMessage *m)
{
    switch (q->type) {
    case FT_ALLOC_WRITE: {
        const Imgstore__AllocWriteResp *r = (const void *)m;
        Imgstore__AllocWrite *a = imgstore__alloc_write__unpack(NULL, q->head_len, q->head);
        FUZZ_CHECK(a != NULL);
        size_t want = a->count == 0 ? 1 : a->count > NS_ALLOC_MAX ? NS_ALLOC_MAX : a->count;
        size_t nexcl = a->n_exclude > NS_ALLOC_EXCLUDE_MAX ? NS_ALLOC_EXCLUDE_MAX : a->n_exclude;
        FUZZ_CHECK(r->n_blocks >= 1 && r->n_blocks <= want);
        for (size_t i = 0; i < r->n_blocks; i++) {
            FUZZ_CHECK(r->blocks[i]->block_id != 0);
            for (size_t k = 0; k < nexcl; k++)
                FUZZ_CHECK(r->blocks[i]->block_id != a->exclude[k]);
            for (size_t k = 0; k < i; k++)
                FUZZ_CHECK(r->blocks[i]->block_id != r->blocks[k]->block_id);
            check_replicas(r->blocks[i]->replicas, r->blocks[i]->n_replicas);
        }
        imgstore__alloc_write__free_unpacked(a, NULL);
        break;
    }
    case FT_LOOKUP: {
        const Imgstore__LookupResp *r = (const void *)m;
        Imgstore__Lookup *a = imgstore__lookup__unpack(NULL, q->head_len, q->head);
        FUZZ_CHECK(a != NULL);
        FUZZ_CHECK(a->n_block_ids <= NS_LOOKUP_MAX && r->n_locations <= a->n_block_ids);
        for (size_t i = 0; i < r->n_locations; i++) {
            int asked = 0;
            for (size_t k = 0; k < a->n_block_ids && !asked; k++)
                asked = a->block_ids[k] == r->locations[i]->block_id;
            FUZZ_CHECK(asked);
            FUZZ_CHECK(r->locations[i]->n_replicas >= 1);
            check_replicas(r->locations[i]->replicas, r->locations[i]->n_replicas);
        }
        imgstore__lookup__free_unpacked(a, NULL);
        break;
    }
    case FT_CLUSTER_STATUS: {
        const Imgstore__ClusterStatusResp *r = (const void *)m;
        FUZZ_CHECK(r->blocks_sealed + r->blocks_writable <= r->blocks_total);
        FUZZ_CHECK(r->blocks_lost + r->blocks_under_replicated <= r->blocks_total);
        FUZZ_CHECK(r->n_servers >= FX_NDS && r->n_servers <= NS_MAX_SERVERS);
        break;
    }
    case FT_ADMIN_LIST_BLOCKS: {
        const Imgstore__AdminListBlocksResp *r = (const void *)m;
        Imgstore__AdminListBlocks *a = imgstore__admin_list_blocks__unpack(NULL, q->head_len, q->head);
        FUZZ_CHECK(a != NULL);
        FUZZ_CHECK(r->n_blocks <= r->matched && r->n_blocks <= NS_ADMIN_LIST_MAX);
        FUZZ_CHECK(a->limit == 0 || r->n_blocks <= a->limit);
        for (size_t i = 0; i < r->n_blocks; i++) {
            FUZZ_CHECK(r->blocks[i]->block_id > a->after_id);
            FUZZ_CHECK(i == 0 || r->blocks[i]->block_id > r->blocks[i - 1]->block_id);
            FUZZ_CHECK(r->blocks[i]->n_replicas <= NS_BLOCK_SLOTS);
        }
        imgstore__admin_list_blocks__free_unpacked(a, NULL);
        break;
    }
    case FT_ADMIN_SET_SETTING: {
        const Imgstore__AdminSetSettingResp *r = (const void *)m;
        FUZZ_CHECK(r->setting != NULL && r->setting->persisted);
        FUZZ_CHECK(r->setting->value >= r->setting->min && r->setting->value <= r->setting->max);
        break;
    }
    case FT_ADMIN_SETTINGS: {
        const Imgstore__AdminSettingsResp *r = (const void *)m;
        FUZZ_CHECK(r->n_settings == NS_SETTING_COUNT);
        break;
    }
    case FT_ADMIN_COMPACT: {
        const Imgstore__AdminCompactResp *r = (const void *)m;
        FUZZ_CHECK(r->n_task_ids <= r->n_blocks && r->n_blocks <= NS_OPS_COMPACT_MAX);
        break;
    }
    case FT_ADMIN_REPAIR: {
        const Imgstore__AdminRepairResp *r = (const void *)m;
        Imgstore__AdminRepair *a = imgstore__admin_repair__unpack(NULL, q->head_len, q->head);
        FUZZ_CHECK(a != NULL);
        FUZZ_CHECK(r->block_id == a->block_id && r->block_id != 0);
        FUZZ_CHECK(r->n_replicas <= NS_BLOCK_SLOTS + NS_MAX_REPLICAS);
        FUZZ_CHECK(r->good_replicas <= r->n_replicas);
        imgstore__admin_repair__free_unpacked(a, NULL);
        break;
    }
    case FT_ADMIN_REBALANCE: {
        const Imgstore__AdminRebalanceResp *r = (const void *)m;
        FUZZ_CHECK(r->n_servers <= NS_MAX_SERVERS);
        break;
    }
    default: break;
    }
}

static void client_answer(const struct frame_header *h, const uint8_t *head)
{
    unsigned type = h->type & ~FRAME_RESPONSE;
    size_t i = 0;
    while (i < fx.npend && !(fx.pend[i].id == h->request_id && fx.pend[i].type == type))
        i++;
    if (fx.verbose)
        fprintf(stderr, "  answer %s id %llu: %d (%s)\n", frame_type_name(type),
                (unsigned long long)h->request_id, h->status, img_errname(h->status));
    /* The nameserver answers only requests, each once. */
    FUZZ_CHECK(i < fx.npend);
    /* Two requests of one type under one id (a reused id) may be answered
     * in either order: which request an answer is for cannot be told, so
     * only the checks that hold for both are made. */
    int ambiguous = fx.pend[i].ambiguous;
    for (size_t j = 0; j < fx.npend; j++)
        if (j != i && fx.pend[j].id == h->request_id && fx.pend[j].type == type)
            ambiguous = fx.pend[j].ambiguous = 1;
    struct pend q = fx.pend[i];
    fx.pend[i] = fx.pend[--fx.npend];
    FUZZ_CHECK(known_status(h->status));
    if (!ns_type(type))
        FUZZ_CHECK(h->status == IMG_EBADTYPE || h->status == IMG_EPROTO);
    if (h->status != 0) {
        FUZZ_CHECK(h->head_len == 0); /* a failed request's answer has no head */
    } else {
        const ProtobufCMessageDescriptor *d = resp_desc(type);
        FUZZ_CHECK(d != NULL);
        ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, h->head_len, head);
        FUZZ_CHECK(m != NULL);
        if (!ambiguous)
            check_success(&q, m);
        protobuf_c_message_free_unpacked(m, NULL);
    }
    free(q.head);
}

static void ds_answer(struct peer *p, const struct frame_header *h, const uint8_t *head)
{
    if (h->request_id != p->hb_id || p->hb_done)
        return;
    p->hb_done = 1;
    p->hb_status = h->status;
    if (h->status == 0) {
        Imgstore__HeartbeatResp *r = imgstore__heartbeat_resp__unpack(NULL, h->head_len, head);
        FUZZ_CHECK(r != NULL);
        FUZZ_CHECK(r->block_size == FX_BLOCK_SIZE && r->replicas == NS_DEFAULT_REPLICAS);
        imgstore__heartbeat_resp__free_unpacked(r, NULL);
    }
}

static void peer_frame(struct fuzz_conn *c, const struct frame_header *h, const uint8_t *head,
                       const uint8_t *body)
{
    struct peer *p = (struct peer *)c;
    FUZZ_CHECK(h->body_len == 0); /* nothing the nameserver sends has a body */
    if (!(h->type & FRAME_RESPONSE))
        ds_command(p, h, head);
    else if (p->ds == FX_NO_DS)
        client_answer(h, head);
    else
        ds_answer(p, h, head);
}

static void peer_connected(uv_connect_t *req, int status)
{
    struct peer *p = req->data;
    if (status != 0 || fuzz_conn_start_read(&p->c) != 0) {
        p->c.eof = 1;
        fuzz_conn_close(&p->c);
        return;
    }
    p->connected = 1;
}

static int connected_or_eof(void *arg);

/* Connects p to the nameserver (p's previous handle, if any, is closed). */
static void peer_open(struct peer *p, int ds)
{
    for (int i = 0; i < 1000 && p->c.live; i++)
        uv_run(fx.loop, UV_RUN_NOWAIT);
    FUZZ_CHECK(!p->c.live);
    memset(p, 0, sizeof(*p));
    p->ds = ds;
    fuzz_conn_init(&p->c, fx.loop, peer_frame);
    uv_tcp_nodelay(&p->c.tcp, 1); /* as conn.c does: two answers in a row are not held 40 ms */
    struct sockaddr_storage ss;
    FUZZ_CHECK(conn_parse_addr(fx.addr, &ss) == 0);
    FUZZ_CHECK(uv_tcp_connect(&p->c.creq, &p->c.tcp, (struct sockaddr *)&ss, peer_connected) == 0);
    fuzz_run_until(fx.loop, connected_or_eof, p, FUZZ_SETUP_MS);
    FUZZ_CHECK(p->connected);
    if (fx.verbose) {
        struct sockaddr_in me;
        int n = sizeof(me);
        uv_tcp_getsockname(&p->c.tcp, (struct sockaddr *)&me, &n);
        fprintf(stderr, "  %s connected from port %u\n", ds >= 0 ? ds_ids[ds] : "client",
                (unsigned)ntohs(me.sin_port));
    }
}

/* ---- loop helpers ------------------------------------------------------------------ */

static int connected_or_eof(void *arg)
{
    struct peer *p = arg;
    return p->connected || p->c.eof;
}

static int hb_done(void *arg)
{
    return ((struct peer *)arg)->hb_done;
}

static int ds3_down(void *arg)
{
    struct ns_server *s = ns_registry_find(&fx.ns, ds_ids[2]);
    return s && !s->up;
}

/* Every request that must be answered is, or the client connection closed. */
static int answered(void *arg)
{
    if (!fx.cli.c.open)
        return 1;
    for (size_t i = 0; i < fx.npend; i++)
        if (fx.pend[i].must)
            return 0;
    return 1;
}

static int cli_closed(void *arg)
{
    return !fx.cli.c.open;
}

/* ---- invariants -------------------------------------------------------------------- */

static int idlist_has(const struct ns_idlist *l, const char *id)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->ids[i], id) == 0)
            return 1;
    return 0;
}

/* The block map (ns_check.h), then what this harness's state adds: ids,
 * the registry against ns.meta, the tasks, the pool and the settings. */
static void check_ns(void)
{
    const struct ns *ns = &fx.ns;
    fuzz_check_block_map(ns);
    size_t used = 0;
    for (size_t i = 0; i < ns->blocks.cap; i++) {
        const struct ns_block *b = &ns->blocks.slots[i];
        if (b->id == 0)
            continue;
        used++;
        FUZZ_CHECK(b->id <= NS_MAX_BLOCK_ID);
        FUZZ_CHECK(b->nrep >= 1); /* no holder: dropped */
        FUZZ_CHECK(b->id < ns->meta.next_id); /* ids handed out or seen stay below */
    }
    FUZZ_CHECK(used == ns->blocks.count);
    FUZZ_CHECK(ns->meta.next_id <= ns->meta.block_id_reserved);
    FUZZ_CHECK(ns->nservers >= FX_NDS && ns->nservers == ns->meta.nknown);
    for (size_t i = 0; i < ns->nservers; i++) {
        const struct ns_server *s = ns->servers[i];
        FUZZ_CHECK(ns_server_id_valid(s->id));
        FUZZ_CHECK(ns_meta_is_known(&ns->meta, s->id));
        FUZZ_CHECK(!s->readonly == !(s->ds_readonly || ns_meta_is_readonly(&ns->meta, s->id)));
        FUZZ_CHECK(!s->draining == !ns_meta_is_draining(&ns->meta, s->id));
        FUZZ_CHECK(!s->conn || s->up);
    }
    for (size_t i = 0; i < ns->meta.readonly.n; i++)
        FUZZ_CHECK(ns_registry_find(ns, ns->meta.readonly.ids[i]) != NULL);
    for (size_t i = 0; i < ns->meta.draining.n; i++)
        FUZZ_CHECK(ns_registry_find(ns, ns->meta.draining.ids[i]) != NULL);
    for (size_t i = 0; i < ns->plan.ntasks; i++) {
        const struct ns_task *t = &ns->plan.tasks[i];
        FUZZ_CHECK(t->kind <= NS_TASK_EC_MOVE && t->state <= NS_TASK_FAILED);
        FUZZ_CHECK(t->src == NS_NO_SERVER || t->src < ns->nservers);
        FUZZ_CHECK(t->dst == NS_NO_SERVER || t->dst < ns->nservers);
        FUZZ_CHECK(t->id >= 1 && t->id <= ns->plan.next_task_id);
    }
    FUZZ_CHECK(ns->npool <= ns->pool_cap || ns->pool_cap == 0);
    for (int k = 0; k < NS_SETTING_COUNT; k++)
        if (ns->meta.setting_set & (1u << k))
            FUZZ_CHECK(ns_setting_check(k, ns->meta.setting[k]) == 0);
}

/* ns.meta as saved parses and holds what is in force. */
static void check_meta_file(void)
{
    FILE *f = fopen(fx.ns.meta.path, "rb");
    FUZZ_CHECK(f != NULL);
    static char text[NS_META_MAX_BYTES + 1];
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    FUZZ_CHECK(n < sizeof(text) - 1);
    text[n] = '\0';
    struct ns_meta m;
    memset(&m, 0, sizeof(m));
    FUZZ_CHECK(ns_meta_parse(text, n, &m) == 0);
    const struct ns_meta *live = &fx.ns.meta;
    FUZZ_CHECK(strcmp(m.cluster_id, live->cluster_id) == 0);
    FUZZ_CHECK(m.block_id_reserved == live->block_id_reserved);
    FUZZ_CHECK(m.replicas == live->replicas && m.block_size == live->block_size);
    FUZZ_CHECK(m.nknown == live->nknown);
    FUZZ_CHECK(m.setting_set == live->setting_set);
    for (int k = 0; k < NS_SETTING_COUNT; k++)
        if (m.setting_set & (1u << k))
            FUZZ_CHECK(m.setting[k] == live->setting[k]);
    FUZZ_CHECK(m.readonly.n == live->readonly.n && m.draining.n == live->draining.n);
    for (size_t i = 0; i < m.readonly.n; i++)
        FUZZ_CHECK(idlist_has(&live->readonly, m.readonly.ids[i]));
    for (size_t i = 0; i < m.draining.n; i++)
        FUZZ_CHECK(idlist_has(&live->draining, m.draining.ids[i]));
    ns_meta_free(&m);
}

/* ---- start and stop ------------------------------------------------------------------ */

static void ds_heartbeat(int ds)
{
    struct peer *p = &fx.ds[ds];
    Imgstore__Disk disk = IMGSTORE__DISK__INIT, *disks[1] = {&disk};
    disk.path = "/fx";
    disk.capacity = 1ull << 40;
    disk.free = (1ull << 40) - (ds + 1) * (1ull << 30);
    disk.used = (ds + 1) * (1ull << 30);
    Imgstore__BlockInfo bi[3], *bis[3];
    char *reps[3][2];
    Imgstore__Heartbeat hb = IMGSTORE__HEARTBEAT__INIT;
    char addr[32], http[32];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", 7411 + ds);
    snprintf(http, sizeof(http), "127.0.0.1:%d", 7481 + ds);
    hb.server_id = (char *)ds_ids[ds];
    hb.addr = addr;
    hb.http_addr = http;
    hb.n_disks = 1;
    hb.disks = disks;
    hb.full_report = 1;
    for (int i = 0; i < 3 && copies[ds][i].block_id; i++) {
        const struct fx_copy *c = &copies[ds][i];
        copy_info(c, &bi[i]);
        /* the replica set as the holders know it, primary first */
        size_t nr = 0;
        for (int o = 0; o < FX_NDS; o++) {
            const struct fx_copy *oc = copy_of(o, c->block_id);
            if (oc && oc->primary)
                reps[i][nr++] = (char *)ds_ids[o];
        }
        for (int o = 0; o < FX_NDS && nr < 2; o++) {
            const struct fx_copy *oc = copy_of(o, c->block_id);
            if (oc && !oc->primary)
                reps[i][nr++] = (char *)ds_ids[o];
        }
        bi[i].n_replicas = nr;
        bi[i].replicas = reps[i];
        bis[hb.n_blocks++] = &bi[i];
    }
    hb.blocks = bis;
    p->hb_id = ++fx.next_id;
    send_msg(p, FT_HEARTBEAT, 0, p->hb_id, &hb.base);
    fuzz_run_until(fx.loop, hb_done, p, FUZZ_SETUP_MS);
    FUZZ_CHECK(p->hb_done && p->hb_status == 0);
}

static void fx_start(void)
{
    if (!fx.dir[0])
        snprintf(fx.dir, sizeof(fx.dir), "%s/ns", fuzz_tmpdir());
    fuzz_rmtree(fx.dir);
    fx.loop = uv_default_loop();
    fx.cfg = (struct ns_config){
        .listen = "127.0.0.1:0",
        .data_dir = fx.dir,
        .replicas = NS_DEFAULT_REPLICAS,
        .block_size = FX_BLOCK_SIZE,
        .hb_timeout_ms = NS_DEFAULT_HB_TIMEOUT_MS,
        .safe_mode_ms = NS_DEFAULT_SAFE_MODE_MS,
    };
    FUZZ_CHECK(ns_init(&fx.ns, &fx.cfg, uv_now(fx.loop)) == 0);
    fx.ns.rng = 0x9e3779b97f4a7c15ull; /* reproducible runs */
    FUZZ_CHECK(ns_start(&fx.ns, fx.loop) == 0);
    /* The timer's work runs when a step asks (run_tick), not by the clock. */
    uv_timer_stop(&fx.ns.tick);
    struct sockaddr_in sa;
    int n = sizeof(sa);
    FUZZ_CHECK(uv_tcp_getsockname(&fx.ns.listener, (struct sockaddr *)&sa, &n) == 0);
    snprintf(fx.addr, sizeof(fx.addr), "127.0.0.1:%u", (unsigned)ntohs(sa.sin_port));
    for (int i = 0; i < FX_NDS; i++) {
        peer_open(&fx.ds[i], i);
        ds_heartbeat(i);
    }
    FUZZ_CHECK(!fx.ns.safe_mode); /* every known server reported */
    fuzz_conn_close(&fx.ds[2].c);
    fuzz_run_until(fx.loop, ds3_down, NULL, FUZZ_SETUP_MS);
    FUZZ_CHECK(ds3_down(NULL));
    check_ns();
}

static void fx_stop(void)
{
    ns_stop(&fx.ns);
    for (int i = 0; i < FX_NDS; i++)
        fuzz_conn_close(&fx.ds[i].c);
    fuzz_conn_close(&fx.cli.c);
    for (int i = 0; i < 4000 && uv_loop_alive(fx.loop); i++) {
        uv_run(fx.loop, UV_RUN_NOWAIT);
        if (uv_loop_alive(fx.loop))
            usleep(250);
    }
    FUZZ_CHECK(!uv_loop_alive(fx.loop)); /* every handle closes at shut-down */
    ns_free(&fx.ns);
    for (size_t i = 0; i < fx.npend; i++)
        free(fx.pend[i].head);
    fx.npend = 0;
    fuzz_rmtree(fx.dir);
}

/* What the 200 ms timer of ns_rpc.c does (on_tick). */
static void run_tick(void)
{
    uint64_t now = uv_now(fx.loop);
    ns_registry_check_timeouts(&fx.ns, now);
    ns_safe_mode_check(&fx.ns, now);
    ns_pool_plan(&fx.ns);
    ns_plan_tick(&fx.ns, now);
}

/* ---- the input ----------------------------------------------------------------------- */

#define K_RAW 0xffu
static const unsigned kinds[] = {
    FT_HEARTBEAT,          FT_ALLOC_WRITE,        FT_LOOKUP,           FT_CLUSTER_STATUS,
    FT_DRAIN,              FT_LIST_TASKS,         FT_ADMIN_LIST_BLOCKS, FT_ADMIN_BLOCK_INFO,
    FT_ADMIN_SERVER_RATES, FT_ADMIN_CANCEL_TASK,  FT_ADMIN_READONLY,   FT_ADMIN_SETTINGS,
    FT_ADMIN_SET_SETTING,  FT_ADMIN_REBALANCE,    FT_ADMIN_COMPACT,    FT_ADMIN_REPAIR,
    K_RAW,
};
#define NKINDS (sizeof(kinds) / sizeof(kinds[0]))

enum { F_PIPE = 1, F_BODY = 2, F_STATUS = 4, F_SAME_ID = 8, F_CORRUPT = 16, F_TICK = 32,
       F_CLOSE = 64 };

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    setenv("IMGSTORE_LOG", "off", 0); /* IMGSTORE_LOG=debug to see the server's log */
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

/* Drops what the client still waits for (its connection is gone). */
static void forget_pending(void)
{
    for (size_t i = 0; i < fx.npend; i++)
        free(fx.pend[i].head);
    fx.npend = 0;
}

static void wait_answers(int corrupt)
{
    fuzz_run_until(fx.loop, answered, NULL, FUZZ_WAIT_MS);
    /* Every request is answered, and a well-framed connection is never
     * dropped (a corrupt header closes it, and so does a malformed answer
     * the client gave as a dataserver session: its requests are lost). */
    if (fx.cli_malformed)
        return;
    FUZZ_CHECK(corrupt || !fx.cli.c.eof);
    FUZZ_CHECK(answered(NULL));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fx.verbose = getenv("FUZZ_VERBOSE") != NULL;
    struct fuzz_in in = {data, size};
    fx.mode = fuzz_u8(&in) % 4;
    fx.err_status = (int32_t)fuzz_u32(&in);
    fx.cli_malformed = 0;
    fx.hostile = fuzz_part(&in, &fx.hostile_len);
    fx_start();
    peer_open(&fx.cli, FX_NO_DS);
    int corrupt = 0;
    uint64_t last_id = 0;
    for (int step = 0; step < FUZZ_MAX_STEPS && in.left > 0 && !corrupt && !fx.cli_malformed;
         step++) {
        unsigned kind = kinds[fuzz_u8(&in) % NKINDS];
        uint8_t flags = fuzz_u8(&in);
        unsigned type = kind == K_RAW ? fuzz_u8(&in) : kind;
        int32_t status = flags & F_STATUS ? (int32_t)fuzz_u32(&in) : 0;
        uint8_t how = flags & F_CORRUPT ? fuzz_u8(&in) % 5 : 0;
        size_t head_len, body_len = 0;
        const uint8_t *head = fuzz_part(&in, &head_len);
        const uint8_t *body = flags & F_BODY ? fuzz_part(&in, &body_len) : NULL;
        if (!fx.cli.c.open) { /* closed by the previous step */
            forget_pending();
            peer_open(&fx.cli, FX_NO_DS);
        }
        uint64_t id = flags & F_SAME_ID && last_id ? last_id : ++fx.next_id;
        last_id = id;
        struct frame_header h = {.version = FRAME_VERSION, .type = (uint8_t)type,
                                 .status = status, .request_id = id,
                                 .head_len = (uint32_t)head_len, .body_len = (uint32_t)body_len};
        size_t sent_head = head_len;
        /* frame_decode refuses a positive status like a bad magic. */
        if (status > 0 && !(flags & F_CORRUPT)) {
            corrupt = 1;
            how = 0xff;
        }
        if (flags & F_CORRUPT) {
            corrupt = 1;
            switch (how) {
            case 0: break; /* bad magic: below */
            case 1: break; /* bad version: below (frame_encode writes its own) */
            case 2: h.head_len = FRAME_MAX_HEAD + 1; break;
            case 3: h.body_len = FRAME_MAX_BODY + 1; break;
            default: h.head_len = (uint32_t)head_len + 1 + (how << 4); break; /* never complete */
            }
        }
        if (fx.verbose)
            fprintf(stderr, "step %d: %s (type %u, flags 0x%02x, corruption %u, %zu+%zu bytes)\n",
                    step, frame_type_name(type), type, flags, how, head_len, body_len);
        /* A request whose header announces a body is refused at its header
         * (no nameserver request has one), before its head arrives: it may
         * be answered even when the rest never comes. */
        int refused_early = corrupt && how == 4 && body_len > 0 && status <= 0;
        if (!(type & FRAME_RESPONSE) && (!corrupt || refused_early)) {
            FUZZ_CHECK(fx.npend < FX_MAX_PENDING);
            struct pend *q = &fx.pend[fx.npend++];
            q->id = id;
            q->type = type;
            q->must = !refused_early && !(type == FT_ADMIN_REPAIR && fx.mode == MODE_SILENT);
            q->ambiguous = 0;
            q->head = malloc(head_len + 1);
            FUZZ_CHECK(q->head != NULL);
            memcpy(q->head, head, head_len);
            q->head_len = head_len;
        }
        uint8_t *frame = malloc(FRAME_HEADER_SIZE + sent_head + body_len + 1);
        FUZZ_CHECK(frame != NULL);
        frame_encode(&h, frame);
        if (corrupt && how == 0)
            frame[0] ^= 0x5a;
        if (corrupt && how == 1)
            frame[2] = FRAME_VERSION + 1;
        memcpy(frame + FRAME_HEADER_SIZE, head, sent_head);
        if (body_len)
            memcpy(frame + FRAME_HEADER_SIZE + sent_head, body, body_len);
        fuzz_conn_write(&fx.cli.c, frame, FRAME_HEADER_SIZE + sent_head + body_len, NULL, 0);
        free(frame);
        if (corrupt) {
            /* The server closes at once, or at our EOF when the frame never
             * completes; earlier answers may be lost with the connection. */
            if (how == 4 && fx.cli.c.open && fx.cli.connected) {
                fx.cli.sreq.data = &fx.cli;
                uv_shutdown(&fx.cli.sreq, (uv_stream_t *)&fx.cli.c.tcp, NULL);
            }
            fuzz_run_until(fx.loop, cli_closed, NULL, FUZZ_WAIT_MS);
            FUZZ_CHECK(!fx.cli.c.open);
            forget_pending();
        } else if (flags & F_CLOSE) {
            fuzz_conn_close(&fx.cli.c);
            forget_pending();
            uv_run(fx.loop, UV_RUN_NOWAIT);
        } else if (!(flags & F_PIPE)) {
            wait_answers(0);
        }
        if (flags & F_TICK)
            run_tick();
        check_ns();
    }
    if (!corrupt)
        wait_answers(0);
    check_ns();
    check_meta_file();
    fx_stop();
    return 0;
}
