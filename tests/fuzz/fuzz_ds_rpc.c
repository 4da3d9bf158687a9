/* fuzz_ds_rpc.c - libFuzzer harness: every request the dataserver accepts,
 * through its real frame reader, unpacking, validation and handlers.
 *
 * Each input runs against a fresh in-process dataserver (ds_fixture.h: a
 * real store in a temporary folder, block 1 primary with three files, the
 * last deleted, block 2 a secondary). The input is a sequence of up to
 * FUZZ_MAX_STEPS steps:
 *   u8    kind   which request (kinds[] below, modulo its length)
 *   u8    flags  bit 0: patch the file reference of a READ/STAT/DELETE head
 *                       with fixture file (flags >> 1) % FX_FILES (names
 *                       carry random cookies the fuzzer cannot guess);
 *                bit 6: replicas named "@self" / "@peer" in the head
 *                       become this server / a peer at this server's address
 *                       (so copies have a live source);
 *                bit 7: run the loop 20 ms after the step (background work)
 *   part  head   protobuf head (u16 length prefix)
 *   part  body
 * Native requests go to the native port; the nameserver's commands
 * (REPLICATE_BLOCK, SEAL_BLOCK, DELETE_BLOCK, SET_REPLICAS, STAT_BLOCK,
 * COMPACT_BLOCK, CREATE_BLOCK, CANCEL_COPY) come on the server's nameserver
 * session.
 *
 * Properties: no crash, leak or out-of-bounds access (ASan, UBSan); every
 * answer is a well-formed frame with status 0 or an error code; every native
 * request that needs no peer is answered (no request is dropped); a
 * successful READ of a fixture file returns exactly its bytes, and the
 * deleted one never reads successfully; after every step each block's tails
 * and index stay inside the block (fx_check_store). */
#include "base/err.h"
#include "proto/imgstore.pb-c.h"
#include "tests/fuzz/ds_fixture.h"
#include "tests/fuzz/fuzz.h"

#define FUZZ_MAX_STEPS 12
#define FUZZ_NATIVE_WAIT_MS 2000
#define FUZZ_SESSION_WAIT_MS 200

struct kind {
    unsigned type;
    int session;
    int must_answer; /* answered without a peer or background work */
};

static const struct kind kinds[] = {
    {FT_WRITE, 0, 1},          {FT_READ, 0, 1},           {FT_STAT, 0, 1},
    {FT_DELETE, 0, 1},         {FT_REPL_APPEND, 0, 1},    {FT_READ_BLOCK, 0, 1},
    {FT_VERIFY, 0, 0},         {FT_REPLICATE_BLOCK, 1, 0}, {FT_SEAL_BLOCK, 1, 1},
    {FT_DELETE_BLOCK, 1, 1},   {FT_SET_REPLICAS, 1, 1},   {FT_STAT_BLOCK, 1, 1},
    {FT_COMPACT_BLOCK, 1, 0},  {FT_CREATE_BLOCK, 1, 1},   {0, 0, 1}, /* unknown type */
    {0, 1, 1},                                             /* unknown on the session */
    {FT_CANCEL_COPY, 1, 1},
    {FT_APPLY_TOMBSTONES, 1, 1},
};
#define NKINDS (sizeof(kinds) / sizeof(kinds[0]))

/* READ, STAT (head Read) and DELETE (head Delete, same fields): sets the
 * file reference to fixture file i; keeps the input head when it does not
 * parse (then the server refuses it anyway). */
static uint8_t *patch_ref(const uint8_t *head, size_t *len, int i)
{
    Imgstore__Read *m = imgstore__read__unpack(NULL, *len, head);
    if (!m)
        return NULL;
    m->block_id = fx.files[i].f.block_id;
    m->seq = fx.files[i].f.seq;
    m->cookie = fx.files[i].f.cookie;
    uint8_t *out = malloc(protobuf_c_message_get_packed_size(&m->base) + 1);
    FUZZ_CHECK(out != NULL);
    *len = protobuf_c_message_pack(&m->base, out);
    imgstore__read__free_unpacked(m, NULL);
    return out;
}

/* Fields swapped for the packing of a patched head, restored before the
 * message is freed (protobuf-c frees what it unpacked, and an absent string
 * points to a shared default that must not be freed). */
struct swap {
    char **slot;
    char *orig;
};
static struct swap swaps[3 * 64];
static size_t nswaps;

static void swap_in(char **slot, const char *v)
{
    if (nswaps == sizeof(swaps) / sizeof(swaps[0]))
        return;
    swaps[nswaps++] = (struct swap){slot, *slot};
    *slot = (char *)v;
}

static void fill_replica(Imgstore__Replica *r)
{
    if (!r || !r->server_id)
        return;
    int self = strcmp(r->server_id, "@self") == 0, peer = strcmp(r->server_id, "@peer") == 0;
    if (!self && !peer)
        return;
    swap_in(&r->server_id, self ? fx.ds.store->server_id : "fx-peer");
    swap_in(&r->addr, fx.ds.listen_addr);
    swap_in(&r->http_addr, fx.ds.http_addr);
}

/* The heads that carry replicas, and their messages. */
static const struct {
    unsigned type;
    const ProtobufCMessageDescriptor *desc;
} replica_heads[] = {
    {FT_REPLICATE_BLOCK, &imgstore__replicate_block__descriptor},
    {FT_SET_REPLICAS, &imgstore__set_replicas__descriptor},
    {FT_CREATE_BLOCK, &imgstore__create_block__descriptor},
};

/* fill_replica on every Replica field of m, single or repeated. */
static void fill_replicas(ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    char *base = (char *)m;
    for (unsigned f = 0; f < d->n_fields; f++) {
        const ProtobufCFieldDescriptor *fd = &d->fields[f];
        if (fd->type != PROTOBUF_C_TYPE_MESSAGE || fd->descriptor != &imgstore__replica__descriptor)
            continue;
        if (fd->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(size_t *)(base + fd->quantifier_offset);
            Imgstore__Replica **reps = *(Imgstore__Replica ***)(base + fd->offset);
            for (size_t i = 0; i < n; i++)
                fill_replica(reps[i]);
        } else {
            fill_replica(*(Imgstore__Replica **)(base + fd->offset));
        }
    }
}

/* Replaces "@self" / "@peer" replicas in the heads that carry replicas.
 * Returns the new head (malloc'd, *len updated) or NULL to keep the input. */
static uint8_t *patch_replicas(unsigned type, const uint8_t *head, size_t *len)
{
    ProtobufCMessage *m = NULL;
    nswaps = 0;
    for (size_t i = 0; i < sizeof(replica_heads) / sizeof(replica_heads[0]); i++)
        if (replica_heads[i].type == type)
            m = protobuf_c_message_unpack(replica_heads[i].desc, NULL, *len, head);
    if (!m)
        return NULL;
    fill_replicas(m);
    uint8_t *out = malloc(protobuf_c_message_get_packed_size(m) + 1);
    FUZZ_CHECK(out != NULL);
    *len = protobuf_c_message_pack(m, out);
    while (nswaps > 0) {
        nswaps--;
        *swaps[nswaps].slot = swaps[nswaps].orig;
    }
    protobuf_c_message_free_unpacked(m, NULL);
    return out;
}

static int known_status(int st)
{
    return st == 0 || st == FX_NO_ANSWER || (st < 0 && st >= -4095) ||
           (st <= IMG_ENOTFOUND && st > IMG_ENOTFOUND - 100);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fx_start();
    struct fuzz_in in = {data, size};
    for (int step = 0; step < FUZZ_MAX_STEPS && in.left > 0; step++) {
        const struct kind *k = &kinds[fuzz_u8(&in) % NKINDS];
        uint8_t flags = fuzz_u8(&in);
        unsigned type = k->type ? k->type : (unsigned)fuzz_u8(&in) & ~FRAME_RESPONSE;
        size_t head_len, body_len;
        const uint8_t *head = fuzz_part(&in, &head_len);
        const uint8_t *body = fuzz_part(&in, &body_len);
        int file = -1;
        uint8_t *patched = NULL;
        if ((flags & 1) && (type == FT_READ || type == FT_STAT || type == FT_DELETE)) {
            file = (flags >> 1) % FX_FILES;
            patched = patch_ref(head, &head_len, file);
            if (!patched)
                file = -1;
        } else if (flags & 0x40) {
            patched = patch_replicas(type, head, &head_len);
        }
        /* An exact-size copy, so a read past the head is caught. */
        uint8_t *h = malloc(head_len + 1);
        FUZZ_CHECK(h != NULL);
        memcpy(h, patched ? patched : head, head_len);
        free(patched);
        uint32_t wait = k->session ? FUZZ_SESSION_WAIT_MS : FUZZ_NATIVE_WAIT_MS;
        int st = fx_request(k->session, type, h, head_len, body, body_len, wait, NULL, NULL);
        free(h);
        if (getenv("FUZZ_VERBOSE"))
            fprintf(stderr, "step %d: %s (type %u, %zu+%zu bytes): %d\n", step,
                    frame_type_name(type), type, head_len, body_len, st);
        FUZZ_CHECK(known_status(st));
        if (k->must_answer && !k->session)
            FUZZ_CHECK(st != FX_NO_ANSWER);
        if (type == FT_READ && file >= 0 && st == 0) {
            size_t got;
            const uint8_t *bytes = fx_last_body(&got);
            FUZZ_CHECK(!fx.files[file].deleted);
            FUZZ_CHECK(got == fx.files[file].size);
            FUZZ_CHECK(memcmp(bytes, fx_file_data(file), got) == 0);
        }
        if (type == FT_DELETE && file >= 0 && st == 0)
            fx.files[file].deleted = 1;
        if (flags & 0x80)
            fx_run_for(20);
        fx_check_store();
    }
    fx_stop();
    return 0;
}
