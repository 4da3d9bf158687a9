/* mkcorpus.c - writes the seed corpus of the fuzz harnesses: small valid
 * examples of every input kind, so fuzzing starts from deep inside the
 * parsers instead of from random bytes.
 *
 * Usage: mkcorpus DIR   (writes DIR/<harness>/<name>, replacing old seeds)
 * `make fuzz-corpus` runs it into tests/fuzz/corpus/. */
#include "dataserver/index.h"
#include "base/crc32c.h"
#include "dataserver/codec.h"
#include "dataserver/needle.h"
#include "proto/fname.h"
#include "proto/frame.h"
#include "proto/imgstore.pb-c.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *root;

struct buf {
    uint8_t *p;
    size_t len, cap;
};

static void put(struct buf *b, const void *data, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        if (!b->p)
            abort();
    }
    if (n)
        memcpy(b->p + b->len, data, n);
    b->len += n;
}

static void put_u8(struct buf *b, uint8_t v) { put(b, &v, 1); }

static void put_u16(struct buf *b, uint16_t v)
{
    uint8_t le[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    put(b, le, 2);
}

/* A part of an input: u16 length, then the bytes. */
static void put_part(struct buf *b, const void *data, size_t n)
{
    put_u16(b, (uint16_t)n);
    put(b, data, n);
}

/* Message m packed as a part (m NULL: an empty part). */
static void put_msg(struct buf *b, const ProtobufCMessage *m)
{
    size_t n = m ? protobuf_c_message_get_packed_size(m) : 0;
    uint8_t *p = malloc(n + 1);
    if (!p)
        abort();
    if (m)
        protobuf_c_message_pack(m, p);
    put_part(b, p, n);
    free(p);
}

static void save(const char *harness, const char *name, const void *data, size_t len)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", root, harness);
    if (mkdir(path, 0755) < 0 && errno != EEXIST) {
        perror(path);
        exit(1);
    }
    snprintf(path, sizeof(path), "%s/%s/%s", root, harness, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

static void save_buf(const char *harness, const char *name, struct buf *b)
{
    save(harness, name, b->p, b->len);
    free(b->p);
    memset(b, 0, sizeof(*b));
}

/* A frame: header + packed head (no body: the harness fuzzes heads). */
static void frame(const char *name, unsigned type, const ProtobufCMessage *m)
{
    size_t n = m ? protobuf_c_message_get_packed_size(m) : 0;
    uint8_t *out = malloc(FRAME_HEADER_SIZE + n + 1);
    struct frame_header h = {.version = FRAME_VERSION, .type = (uint8_t)type, .request_id = 42,
                             .head_len = (uint32_t)n};
    frame_encode(&h, out);
    if (m)
        protobuf_c_message_pack(m, out + FRAME_HEADER_SIZE);
    save("fuzz_frame", name, out, FRAME_HEADER_SIZE + n);
    free(out);
}

static Imgstore__Heartbeat *heartbeat(const char *id, const char *addr, const char *http,
                                      uint64_t first_block, int nblocks, int primary)
{
    static Imgstore__Disk disk = IMGSTORE__DISK__INIT;
    static Imgstore__Disk *disks[1] = {&disk};
    static Imgstore__BlockInfo bi[8];
    static Imgstore__BlockInfo *bis[8];
    static Imgstore__Heartbeat hb;
    disk.path = "/data/d0";
    disk.capacity = 1ull << 40;
    disk.free = 1ull << 39;
    disk.used = 1ull << 30;
    hb = (Imgstore__Heartbeat)IMGSTORE__HEARTBEAT__INIT;
    hb.server_id = (char *)id;
    hb.addr = (char *)addr;
    hb.http_addr = (char *)http;
    hb.n_disks = 1;
    hb.disks = disks;
    hb.full_report = 1;
    for (int i = 0; i < nblocks && i < 8; i++) {
        bi[i] = (Imgstore__BlockInfo)IMGSTORE__BLOCK_INFO__INIT;
        bi[i].block_id = first_block + (uint64_t)i;
        bi[i].size = 4096u * (unsigned)(i + 1);
        bi[i].file_count = (uint32_t)i;
        bi[i].primary = primary;
        bi[i].sealed = i == 2;
        bis[i] = &bi[i];
    }
    hb.n_blocks = (size_t)nblocks;
    hb.blocks = bis;
    return &hb;
}

static void frames(void)
{
    frame("heartbeat", FT_HEARTBEAT,
          &heartbeat("ds1", "127.0.0.1:7411", "127.0.0.1:7481", 1, 3, 1)->base);
    Imgstore__AllocWrite aw = IMGSTORE__ALLOC_WRITE__INIT;
    uint64_t excl[2] = {5, 9};
    aw.count = 4;
    aw.n_exclude = 2;
    aw.exclude = excl;
    frame("alloc_write", FT_ALLOC_WRITE, &aw.base);
    Imgstore__Lookup lk = IMGSTORE__LOOKUP__INIT;
    uint64_t ids[3] = {1, 2, 3};
    lk.n_block_ids = 3;
    lk.block_ids = ids;
    frame("lookup", FT_LOOKUP, &lk.base);
    Imgstore__Write w = IMGSTORE__WRITE__INIT;
    w.block_id = 7;
    w.mime = 2;
    frame("write", FT_WRITE, &w.base);
    Imgstore__Read rd = IMGSTORE__READ__INIT;
    rd.block_id = 7;
    rd.seq = 3;
    rd.cookie = 0xdeadbeef;
    frame("read", FT_READ, &rd.base);
    Imgstore__WriteResp wr = IMGSTORE__WRITE_RESP__INIT;
    wr.block_id = 7;
    wr.seq = 3;
    wr.cookie = 0xdeadbeef;
    wr.crc32c = 0x12345678;
    wr.offset = 64;
    frame("write_resp", FT_WRITE | FRAME_RESPONSE, &wr.base);
    frame("cluster_status", FT_CLUSTER_STATUS, NULL);
}

static void fnames(void)
{
    struct fname f[] = {{1, 1, 0xdeadbeef}, {FNAME_MAX_BLOCK_ID, UINT32_MAX, 0}, {42, 7, 1}};
    const char *ext[] = {"", ".jpg", ".webp"};
    for (int i = 0; i < 3; i++) {
        char s[FNAME_BUF], name[16];
        fname_encode(&f[i], s);
        strcat(s, ext[i]);
        snprintf(name, sizeof(name), "name%d", i);
        save("fuzz_fname", name, s, strlen(s));
    }
}

/* Appends a record to b; returns its offset from the start of b. */
static size_t record(struct buf *b, uint32_t seq, uint32_t cookie, const char *data, int tomb)
{
    struct needle_header h = {.seq = seq, .cookie = cookie, .mime = 1, .ctime = 1700000000,
                              .flags = tomb ? NEEDLE_FLAG_TOMBSTONE : 0};
    uint32_t len = tomb ? 0 : (uint32_t)strlen(data);
    size_t n = needle_record_size(len);
    uint8_t *rec = malloc(n);
    needle_build(rec, &h, data, len);
    size_t at = b->len;
    put(b, rec, n);
    free(rec);
    return at;
}

static void needles(void)
{
    struct buf b = {0};
    record(&b, 1, 0xabcdef01, "hello, world", 0);
    save_buf("fuzz_needle", "file", &b);
    record(&b, 2, 0x01020304, "", 1);
    save_buf("fuzz_needle", "tombstone", &b);
    record(&b, 3, 7, "", 0);
    save_buf("fuzz_needle", "empty_file", &b);

    /* An encoded record (format 3): an SVG-like text, compressed. */
    char text[4096];
    size_t len = 0;
    for (int i = 0; len + 64 < sizeof(text); i++)
        len += (size_t)snprintf(text + len, sizeof(text) - len, "<path d=\"M%d %d L%d %d\"/>\n",
                                i % 7, i % 11, i % 13, i % 5);
    uint8_t *frame;
    uint32_t flen;
    if (codec_encode(text, (uint32_t)len, 3, &frame, &flen) != 0)
        return;
    struct needle_header h = {.seq = 4, .cookie = 9, .mime = 6, .ctime = 1700000000,
                              .flags = NEEDLE_FLAG_HCRC | NEEDLE_FLAG_ENCODED,
                              .encoding = NEEDLE_ENC_ZSTD, .orig_size = (uint32_t)len,
                              .orig_crc = crc32c(0, text, len)};
    size_t n = needle_record_size(NEEDLE_ENC_SIZE + flen);
    uint8_t *rec = malloc(n);
    needle_build(rec, &h, frame, flen);
    save("fuzz_needle", "encoded_file", rec, n);
    free(rec);
    free(frame);
}

/* A recovery input: flags 3 (valid superblock and index header), the index
 * entries of the first `indexed` records, then the records (offsets count
 * from the end of the 64-byte superblock the harness prepends). */
static void recovery(const char *name, int indexed, int corrupt_last, int torn)
{
    struct buf body = {0}, idx = {0}, in = {0};
    size_t off[4];
    uint32_t size[4] = {5, 0, 300, 1};
    off[0] = record(&body, 1, 11, "image", 0);
    off[1] = record(&body, 1, 11, "", 1);
    char big[301];
    memset(big, 'x', 300);
    big[300] = '\0';
    off[2] = record(&body, 2, 22, big, 0);
    off[3] = record(&body, 3, 33, "z", 0);
    int tomb[4] = {0, 1, 0, 0};
    uint32_t seq[4] = {1, 1, 2, 3};
    for (int i = 0; i < indexed; i++) {
        uint8_t e[INDEX_ENTRY_SIZE];
        index_encode_entry(seq[i], 64 + off[i], size[i], tomb[i], e);
        put(&idx, e, sizeof(e));
    }
    if (corrupt_last)
        body.p[off[3] + NEEDLE_HEADER_SIZE] ^= 0xff;
    if (torn)
        body.len -= 4;
    put_u8(&in, 3);
    put_part(&in, idx.p, idx.len);
    put(&in, body.p, body.len);
    save_buf("fuzz_recovery", name, &in);
    free(body.p);
    free(idx.p);
}

static void hb_step(struct buf *in, uint8_t op, const Imgstore__Heartbeat *hb)
{
    put_u8(in, op);
    put_msg(in, &hb->base);
}

static void ns_heartbeats(void)
{
    struct buf in = {0};
    hb_step(&in, 1, heartbeat("ds1", "127.0.0.1:7411", "127.0.0.1:7481", 1, 3, 1));
    hb_step(&in, 1, heartbeat("ds2", "127.0.0.1:7412", "127.0.0.1:7482", 1, 3, 0));
    hb_step(&in, 1, heartbeat("ds3", "127.0.0.1:7413", "127.0.0.1:7483", 4, 2, 1));
    save_buf("fuzz_ns_heartbeat", "three_servers", &in);
    hb_step(&in, 1, heartbeat("ds1", "127.0.0.1:7411", "127.0.0.1:7481", 1, 3, 1));
    Imgstore__Heartbeat *hb = heartbeat("ds1", "127.0.0.1:7411", "127.0.0.1:7481", 2, 1, 1);
    uint64_t removed[1] = {1};
    hb->full_report = 0;
    hb->n_removed_blocks = 1;
    hb->removed_blocks = removed;
    hb_step(&in, 0x80 | 60, hb);
    save_buf("fuzz_ns_heartbeat", "incremental_and_timeout", &in);
}

/* ---- fuzz_ds_rpc: steps of (kind, flags, head, body); kinds as in
 * tests/fuzz/fuzz_ds_rpc.c ---------------------------------------------- */

enum { K_WRITE, K_READ, K_STAT, K_DELETE, K_REPL_APPEND, K_READ_BLOCK, K_VERIFY, K_REPLICATE,
       K_SEAL, K_DELETE_BLOCK, K_SET_REPLICAS, K_STAT_BLOCK, K_COMPACT, K_CREATE, K_UNKNOWN };
#define F_FILE(i) (uint8_t)(1 | (i) << 1) /* patch the file reference to fixture file i */
#define F_REPLICAS 0x40                   /* "@self" / "@peer" replicas */

static void rpc_step(struct buf *in, uint8_t kind, uint8_t flags, const ProtobufCMessage *m,
                     const void *body, size_t body_len)
{
    put_u8(in, kind);
    put_u8(in, flags);
    if (kind == K_UNKNOWN)
        put_u8(in, 99); /* the type */
    put_msg(in, m);
    put_part(in, body, body_len);
}

static Imgstore__Replica rep_self = {PROTOBUF_C_MESSAGE_INIT(&imgstore__replica__descriptor),
                                     "@self", "x:1", "x:1"};
static Imgstore__Replica rep_peer = {PROTOBUF_C_MESSAGE_INIT(&imgstore__replica__descriptor),
                                     "@peer", "x:1", "x:1"};

static void ds_rpc(void)
{
    struct buf in = {0};
    Imgstore__Read rd = IMGSTORE__READ__INIT;
    Imgstore__Write w = IMGSTORE__WRITE__INIT;
    w.block_id = 1;
    w.mime = 2;
    rpc_step(&in, K_WRITE, 0, &w.base, "a new file", 10);
    save_buf("fuzz_ds_rpc", "write", &in);

    rpc_step(&in, K_READ, F_FILE(0), &rd.base, NULL, 0);
    rpc_step(&in, K_READ, F_FILE(1), &rd.base, NULL, 0);
    rpc_step(&in, K_READ, F_FILE(2), &rd.base, NULL, 0);
    rpc_step(&in, K_STAT, F_FILE(1), &rd.base, NULL, 0);
    save_buf("fuzz_ds_rpc", "read_stat", &in);

    Imgstore__Delete del = IMGSTORE__DELETE__INIT;
    rpc_step(&in, K_DELETE, F_FILE(0), &del.base, NULL, 0);
    rpc_step(&in, K_READ, F_FILE(0), &rd.base, NULL, 0);
    rpc_step(&in, K_DELETE, F_FILE(0), &del.base, NULL, 0);
    save_buf("fuzz_ds_rpc", "delete_read", &in);

    struct buf rec = {0};
    record(&rec, 1, 0x5151, "replicated", 0);
    Imgstore__ReplAppend ra = IMGSTORE__REPL_APPEND__INIT;
    ra.block_id = 2;
    ra.offset = 64;
    rpc_step(&in, K_REPL_APPEND, 0, &ra.base, rec.p, rec.len);
    save_buf("fuzz_ds_rpc", "repl_append", &in);
    free(rec.p);

    Imgstore__ReadBlock rb = IMGSTORE__READ_BLOCK__INIT;
    rb.block_id = 1;
    rb.len = 4096;
    rpc_step(&in, K_READ_BLOCK, 0, &rb.base, NULL, 0);
    Imgstore__Verify v = IMGSTORE__VERIFY__INIT;
    v.block_id = 1;
    rpc_step(&in, K_VERIFY, 0x80, &v.base, NULL, 0);
    save_buf("fuzz_ds_rpc", "read_block_verify", &in);

    Imgstore__Replica *reps[1] = {&rep_self};
    Imgstore__ReplicateBlock rep = IMGSTORE__REPLICATE_BLOCK__INIT;
    rep.block_id = 3;
    rep.block_size = 1u << 20;
    rep.source = &rep_peer;
    rep.expected_size = 64;
    rep.n_replicas = 1;
    rep.replicas = reps;
    rep.task_id = 1;
    rpc_step(&in, K_REPLICATE, F_REPLICAS | 0x80, &rep.base, NULL, 0);
    rep.block_id = 1;
    rep.expected_size = 8192;
    rpc_step(&in, K_REPLICATE, F_REPLICAS | 0x80, &rep.base, NULL, 0);
    save_buf("fuzz_ds_rpc", "replicate", &in);

    Imgstore__SealBlock sb = IMGSTORE__SEAL_BLOCK__INIT;
    sb.block_id = 1;
    rpc_step(&in, K_SEAL, 0, &sb.base, NULL, 0);
    Imgstore__StatBlock st = IMGSTORE__STAT_BLOCK__INIT;
    st.block_id = 1;
    rpc_step(&in, K_STAT_BLOCK, 0, &st.base, NULL, 0);
    /* block 1: superblock, three files and a tombstone */
    Imgstore__CompactBlock cb = IMGSTORE__COMPACT_BLOCK__INIT;
    cb.block_id = 1;
    cb.expected_size = 64 + needle_record_size(5) + needle_record_size(3000) +
                       needle_record_size(17) + needle_record_size(0);
    cb.task_id = 2;
    rpc_step(&in, K_COMPACT, 0x80, &cb.base, NULL, 0);
    rpc_step(&in, K_READ, F_FILE(1), &rd.base, NULL, 0);
    save_buf("fuzz_ds_rpc", "seal_stat_compact", &in);

    Imgstore__SetReplicas sr = IMGSTORE__SET_REPLICAS__INIT;
    sr.block_id = 2;
    sr.n_replicas = 1;
    sr.replicas = reps;
    sr.primary = 1;
    rpc_step(&in, K_SET_REPLICAS, F_REPLICAS, &sr.base, NULL, 0);
    Imgstore__DeleteBlock db = IMGSTORE__DELETE_BLOCK__INIT;
    db.block_id = 2;
    db.expected_size = 1u << 20;
    rpc_step(&in, K_DELETE_BLOCK, 0, &db.base, NULL, 0);
    save_buf("fuzz_ds_rpc", "set_replicas_delete_block", &in);

    Imgstore__CreateBlock cr = IMGSTORE__CREATE_BLOCK__INIT;
    cr.block_id = 5;
    cr.block_size = 1u << 20;
    cr.primary = 1;
    cr.n_replicas = 1;
    cr.replicas = reps;
    rpc_step(&in, K_CREATE, F_REPLICAS, &cr.base, NULL, 0);
    w.block_id = 5;
    rpc_step(&in, K_WRITE, 0, &w.base, "into block 5", 12);
    rpc_step(&in, K_UNKNOWN, 0, NULL, NULL, 0);
    save_buf("fuzz_ds_rpc", "create_write_unknown", &in);
}

/* ---- fuzz_ds_http: raw connection bytes; {0}..{2} are the fixture's file
 * names (the last deleted), {T} the upload token ------------------------- */

static void http_seed(const char *name, const char *text)
{
    save("fuzz_ds_http", name, text, strlen(text));
}

static void ds_http(void)
{
    http_seed("get", "GET /{0} HTTP/1.1\r\nHost: cdn\r\n\r\n");
    http_seed("get_ext_head_deleted",
              "GET /{1}.jpg HTTP/1.1\r\nHost: cdn\r\n\r\nHEAD /{2} HTTP/1.1\r\nHost: cdn\r\n\r\n"
              "GET /{2}.webp HTTP/1.0\r\n\r\n");
    http_seed("range", "GET /{1} HTTP/1.1\r\nHost: cdn\r\nRange: bytes=10-99, 200-\r\n\r\n"
                       "GET /{1} HTTP/1.1\r\nHost: cdn\r\nRange: bytes=-5\r\nIf-Range: \"x\"\r\n\r\n"
                       "GET /{1} HTTP/1.1\r\nHost: cdn\r\nRange: bytes=5000-\r\n\r\n");
    http_seed("conditional",
              "GET /{0} HTTP/1.1\r\nHost: cdn\r\nIf-None-Match: W/\"a\", *\r\n\r\n"
              "GET /{0} HTTP/1.1\r\nHost: cdn\r\nIf-Modified-Since: Sun, 06 Nov 2044 08:49:37 GMT\r\n\r\n");
    http_seed("upload", "POST / HTTP/1.1\r\nHost: cdn\r\nAuthorization: Bearer {T}\r\n"
                        "Content-Type: image/png\r\nContent-Length: 5\r\n\r\nhello");
    http_seed("upload_chunked_continue",
              "PUT / HTTP/1.1\r\nHost: cdn\r\nAuthorization: Bearer {T}\r\nExpect: 100-continue\r\n"
              "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
    http_seed("upload_refused", "POST / HTTP/1.1\r\nHost: cdn\r\nAuthorization: Bearer nope\r\n"
                                "Content-Length: 3\r\n\r\nabc"
                                "POST / HTTP/1.1\r\nHost: cdn\r\nContent-Length: 99999999\r\n\r\n");
    http_seed("delete", "DELETE /{0} HTTP/1.1\r\nHost: cdn\r\nAuthorization: Bearer {T}\r\n\r\n"
                        "DELETE /{2} HTTP/1.1\r\nHost: cdn\r\nAuthorization: Bearer {T}\r\n\r\n");
    http_seed("other", "GET /healthz HTTP/1.1\r\nHost: cdn\r\n\r\nGET /metrics HTTP/1.1\r\nHost: cdn\r\n\r\n"
                       "OPTIONS / HTTP/1.1\r\nHost: cdn\r\n\r\nGET /notaname HTTP/1.1\r\nHost: cdn\r\n\r\n"
                       "GET / HTTP/1.1\r\nHost: cdn\r\nConnection: close\r\n\r\n");
}

/* ---- fuzz_ns_rpc: the dataservers' answer mode (u8), error status (u32),
 * hostile answer head (u16 part), then steps of (kind, flags, [raw type],
 * [status], [corruption], head, [body]); kinds and flags as in
 * tests/fuzz/fuzz_ns_rpc.c ------------------------------------------------ */

enum { N_HEARTBEAT, N_ALLOC, N_LOOKUP, N_STATUS, N_DRAIN, N_TASKS, N_LIST_BLOCKS, N_BLOCK_INFO,
       N_RATES, N_CANCEL, N_READONLY, N_SETTINGS, N_SET, N_REBALANCE, N_COMPACT, N_REPAIR,
       N_RAW };
enum { NM_GOOD, NM_ERROR, NM_HOSTILE, NM_SILENT };
#define NF_PIPE 1
#define NF_BODY 2
#define NF_STATUS 4
#define NF_SAME_ID 8
#define NF_CORRUPT 16
#define NF_TICK 32
#define NF_CLOSE 64

static void put_u32(struct buf *b, uint32_t v)
{
    put_u16(b, (uint16_t)v);
    put_u16(b, (uint16_t)(v >> 16));
}

static void ns_input(struct buf *in, uint8_t mode, int32_t status, const char *hostile)
{
    put_u8(in, mode);
    put_u32(in, (uint32_t)status);
    put_part(in, hostile, strlen(hostile));
}

static void ns_step(struct buf *in, uint8_t kind, uint8_t flags, uint8_t raw, uint8_t how,
                    const ProtobufCMessage *m, const char *body)
{
    put_u8(in, kind);
    put_u8(in, flags);
    if (kind == N_RAW)
        put_u8(in, raw);
    if (flags & NF_STATUS)
        put_u32(in, (uint32_t)-5);
    if (flags & NF_CORRUPT)
        put_u8(in, how);
    put_msg(in, m);
    if (flags & NF_BODY)
        put_part(in, body, strlen(body));
}

static void ns_rpc(void)
{
    struct buf in = {0};
    Imgstore__ClusterStatus cs = IMGSTORE__CLUSTER_STATUS__INIT;
    Imgstore__AllocWrite aw = IMGSTORE__ALLOC_WRITE__INIT;
    uint64_t excl[1] = {2}, ids[6] = {1, 2, 3, 4, 5, 6};
    aw.count = 4;
    aw.n_exclude = 1;
    aw.exclude = excl;
    Imgstore__Lookup lk = IMGSTORE__LOOKUP__INIT;
    lk.n_block_ids = 6;
    lk.block_ids = ids;
    Imgstore__ListTasks lt = IMGSTORE__LIST_TASKS__INIT;
    ns_input(&in, NM_GOOD, 0, "");
    ns_step(&in, N_STATUS, 0, 0, 0, &cs.base, NULL);
    ns_step(&in, N_ALLOC, 0, 0, 0, &aw.base, NULL);
    ns_step(&in, N_LOOKUP, 0, 0, 0, &lk.base, NULL);
    ns_step(&in, N_TASKS, NF_TICK, 0, 0, &lt.base, NULL);
    ns_step(&in, N_TASKS, 0, 0, 0, &lt.base, NULL);
    save_buf("fuzz_ns_rpc", "status_alloc_lookup_tasks", &in);

    Imgstore__AdminListBlocks lb = IMGSTORE__ADMIN_LIST_BLOCKS__INIT;
    lb.state = "sealed";
    lb.limit = 2;
    Imgstore__AdminListBlocks lb2 = IMGSTORE__ADMIN_LIST_BLOCKS__INIT;
    lb2.under_replicated = 1;
    lb2.server_id = "fx-ds1";
    lb2.after_id = 1;
    Imgstore__AdminBlockInfo bi = IMGSTORE__ADMIN_BLOCK_INFO__INIT;
    bi.block_id = 4;
    Imgstore__AdminServerRates sr = IMGSTORE__ADMIN_SERVER_RATES__INIT;
    Imgstore__AdminSettings st = IMGSTORE__ADMIN_SETTINGS__INIT;
    Imgstore__AdminRebalance rb = IMGSTORE__ADMIN_REBALANCE__INIT;
    rb.dry_run = 1;
    ns_input(&in, NM_GOOD, 0, "");
    ns_step(&in, N_LIST_BLOCKS, 0, 0, 0, &lb.base, NULL);
    ns_step(&in, N_LIST_BLOCKS, 0, 0, 0, &lb2.base, NULL);
    ns_step(&in, N_BLOCK_INFO, 0, 0, 0, &bi.base, NULL);
    ns_step(&in, N_RATES, 0, 0, 0, &sr.base, NULL);
    ns_step(&in, N_SETTINGS, 0, 0, 0, &st.base, NULL);
    ns_step(&in, N_REBALANCE, 0, 0, 0, &rb.base, NULL);
    rb.dry_run = 0;
    ns_step(&in, N_REBALANCE, NF_TICK, 0, 0, &rb.base, NULL);
    save_buf("fuzz_ns_rpc", "admin_read", &in);

    static const struct {
        const char *key;
        uint64_t value;
    } sets[] = {{"task_cap", 4}, {"heartbeat_timeout", 1}, {"rebalance_band", 1}};
    Imgstore__AdminReadonly ro = IMGSTORE__ADMIN_READONLY__INIT;
    ro.server_id = "fx-ds2";
    ro.readonly = 1;
    Imgstore__Drain dr = IMGSTORE__DRAIN__INIT;
    dr.server_id = "fx-ds1";
    Imgstore__AdminCancelTask ct = IMGSTORE__ADMIN_CANCEL_TASK__INIT;
    ct.task_id = 1;
    ns_input(&in, NM_GOOD, 0, "");
    for (size_t i = 0; i < sizeof(sets) / sizeof(sets[0]); i++) {
        Imgstore__AdminSetSetting set = IMGSTORE__ADMIN_SET_SETTING__INIT;
        set.key = (char *)sets[i].key;
        set.value = sets[i].value;
        ns_step(&in, N_SET, 0, 0, 0, &set.base, NULL);
    }
    ns_step(&in, N_READONLY, 0, 0, 0, &ro.base, NULL);
    ns_step(&in, N_DRAIN, NF_TICK, 0, 0, &dr.base, NULL);
    ns_step(&in, N_TASKS, 0, 0, 0, &lt.base, NULL);
    ns_step(&in, N_CANCEL, 0, 0, 0, &ct.base, NULL);
    dr.cancel = 1;
    ns_step(&in, N_DRAIN, 0, 0, 0, &dr.base, NULL);
    ro.readonly = 0;
    ns_step(&in, N_READONLY, NF_TICK, 0, 0, &ro.base, NULL);
    save_buf("fuzz_ns_rpc", "admin_change", &in);

    Imgstore__AdminCompact co = IMGSTORE__ADMIN_COMPACT__INIT;
    co.block_id = 2;
    Imgstore__AdminCompact co2 = IMGSTORE__ADMIN_COMPACT__INIT;
    co2.threshold_pct = 50;
    co2.dry_run = 1;
    Imgstore__AdminRepair rp = IMGSTORE__ADMIN_REPAIR__INIT;
    rp.block_id = 3;
    Imgstore__AdminRepair rp2 = IMGSTORE__ADMIN_REPAIR__INIT;
    rp2.block_id = 4;
    rp2.status_only = 1;
    static const uint8_t modes[3] = {NM_GOOD, NM_ERROR, NM_HOSTILE};
    static const char *const names[3] = {"compact_repair", "compact_repair_ds_errors",
                                         "compact_repair_ds_hostile"};
    for (int i = 0; i < 3; i++) {
        ns_input(&in, modes[i], -5, "\x08\x02\x10\x80\x80\x40");
        ns_step(&in, N_COMPACT, 0, 0, 0, &co.base, NULL);
        ns_step(&in, N_COMPACT, 0, 0, 0, &co2.base, NULL);
        ns_step(&in, N_REPAIR, 0, 0, 0, &rp.base, NULL);
        ns_step(&in, N_REPAIR, 0, 0, 0, &rp2.base, NULL);
        ns_step(&in, N_TASKS, NF_TICK, 0, 0, &lt.base, NULL);
        ns_step(&in, N_CANCEL, NF_TICK, 0, 0, &ct.base, NULL);
        rp2.block_id = 2;
        ns_step(&in, N_REPAIR, 0, 0, 0, &rp2.base, NULL);
        rp2.block_id = 4;
        aw.count = 8;
        ns_step(&in, N_ALLOC, NF_TICK, 0, 0, &aw.base, NULL);
        ns_step(&in, N_ALLOC, NF_TICK, 0, 0, &aw.base, NULL);
        save_buf("fuzz_ns_rpc", names[i], &in);
    }

    ns_input(&in, NM_SILENT, 0, "");
    ns_step(&in, N_REPAIR, NF_PIPE, 0, 0, &rp.base, NULL);
    ns_step(&in, N_REPAIR, NF_CLOSE, 0, 0, &rp2.base, NULL);
    ns_step(&in, N_STATUS, 0, 0, 0, &cs.base, NULL);
    save_buf("fuzz_ns_rpc", "repair_silent_close", &in);

    /* The client connection becomes a session: a new server, then fx-ds1's. */
    Imgstore__Heartbeat *hb = heartbeat("fx-ds9", "127.0.0.1:7419", "127.0.0.1:7489", 3, 3, 0);
    ns_input(&in, NM_GOOD, 0, "");
    ns_step(&in, N_HEARTBEAT, NF_TICK, 0, 0, &hb->base, NULL);
    ns_step(&in, N_LOOKUP, 0, 0, 0, &lk.base, NULL);
    hb = heartbeat("fx-ds1", "127.0.0.1:7411", "127.0.0.1:7481", 1, 2, 1);
    ns_step(&in, N_HEARTBEAT, NF_TICK, 0, 0, &hb->base, NULL);
    ns_step(&in, N_ALLOC, NF_TICK, 0, 0, &aw.base, NULL);
    ns_step(&in, N_REPAIR, 0, 0, 0, &rp.base, NULL);
    save_buf("fuzz_ns_rpc", "session_heartbeats", &in);

    /* Pipelined frames, a reused id, a body, unknown and response types,
     * then a frame that never completes. */
    ns_input(&in, NM_GOOD, 0, "");
    ns_step(&in, N_LOOKUP, NF_PIPE, 0, 0, &lk.base, NULL);
    ns_step(&in, N_STATUS, NF_PIPE | NF_SAME_ID, 0, 0, &cs.base, NULL);
    ns_step(&in, N_ALLOC, NF_PIPE | NF_BODY, 0, 0, &aw.base, "a body");
    ns_step(&in, N_SETTINGS, NF_PIPE | NF_BODY | NF_STATUS, 0, 0, &st.base, "x");
    ns_step(&in, N_RAW, NF_PIPE, 99, 0, NULL, NULL);
    ns_step(&in, N_RAW, NF_PIPE, FT_LOOKUP | 0x80, 0, &lk.base, NULL);
    ns_step(&in, N_RAW, 0, FT_WRITE, 0, NULL, NULL);
    ns_step(&in, N_LOOKUP, NF_CORRUPT, 0, 4, &lk.base, NULL);
    save_buf("fuzz_ns_rpc", "pipelined_then_truncated", &in);

    ns_input(&in, NM_GOOD, 0, "");
    ns_step(&in, N_LOOKUP, NF_PIPE, 0, 0, &lk.base, NULL);
    ns_step(&in, N_STATUS, NF_CORRUPT, 0, 0, &cs.base, NULL);
    save_buf("fuzz_ns_rpc", "bad_magic", &in);
}

/* ---- fuzz_auth: a keys text, its flags, then handshake steps ---------------- */

static const char auth_keys_text[] =
    "# keys\nmember m1 00112233445566778899aabbccddeeff\n"
    "operator ops 0123456789abcdef0123456789abcdef0123456789abcdef\n"
    "writer app ffeeddccbbaa99887766554433221100\n";

static void auth_head(struct buf *b, const char *text, int client, int have_keys, int cluster)
{
    put_part(b, text, strlen(text));
    put_u8(b, (uint8_t)client);
    put_u8(b, (uint8_t)have_keys);
    put_u8(b, (uint8_t)cluster);
}

static void auth_hello(struct buf *b, int body)
{
    put_u8(b, 0);
    put_u8(b, (uint8_t)body);
}

/* Step 2 (a proof made by the harness for key `key`) or 3 (unknown key). */
static void auth_proved(struct buf *b, int step, int key, uint8_t claims, uint8_t damage)
{
    uint8_t nonce[16];
    for (int i = 0; i < 16; i++)
        nonce[i] = (uint8_t)i;
    put_u8(b, (uint8_t)step);
    if (step == 2)
        put_u8(b, (uint8_t)key);
    put(b, nonce, sizeof(nonce));
    put_u8(b, claims);
    put_u8(b, damage);
}

static void auth_seeds(void)
{
    struct buf in = {0};
    auth_head(&in, auth_keys_text, 0, 1, 1);
    auth_hello(&in, 0);
    auth_proved(&in, 2, 0, 1 | 2 | 4 | 0x30, 0);
    save_buf("fuzz_auth", "good_member", &in);

    auth_head(&in, auth_keys_text, 0, 1, 0);
    auth_hello(&in, 0);
    auth_proved(&in, 2, 2, 0, 0);
    auth_proved(&in, 2, 2, 0, 0);
    save_buf("fuzz_auth", "good_writer_then_again", &in);

    auth_head(&in, auth_keys_text, 0, 1, 0);
    auth_hello(&in, 0);
    auth_proved(&in, 2, 1, 0, 1 | 5 << 3);
    save_buf("fuzz_auth", "damaged_proof", &in);

    auth_head(&in, auth_keys_text, 0, 1, 1);
    auth_hello(&in, 0);
    auth_proved(&in, 2, 0, 1, 0);
    save_buf("fuzz_auth", "foreign_cluster", &in);

    auth_head(&in, auth_keys_text, 0, 1, 0);
    auth_proved(&in, 2, 0, 0, 0);
    auth_hello(&in, 0);
    save_buf("fuzz_auth", "auth_before_hello", &in);

    auth_head(&in, auth_keys_text, 0, 1, 0);
    auth_hello(&in, 1);
    auth_hello(&in, 0);
    save_buf("fuzz_auth", "hello_with_body", &in);

    static const uint8_t raw[] = {0x0a, 0x02, 'm', '1', 0x12, 0x04, 'a', 'b', 'c', 'd', 0x2a, 0};
    auth_head(&in, auth_keys_text, 0, 1, 0);
    auth_hello(&in, 0);
    put_u8(&in, 1);
    put_u8(&in, sizeof(raw));
    put(&in, raw, sizeof(raw));
    save_buf("fuzz_auth", "raw_auth", &in);

    auth_head(&in, auth_keys_text, 0, 1, 0);
    auth_hello(&in, 0);
    auth_proved(&in, 3, 0, 0, 0);
    save_buf("fuzz_auth", "unknown_key", &in);

    auth_head(&in, auth_keys_text, 0, 0, 0);
    auth_hello(&in, 0);
    auth_proved(&in, 2, 0, 0, 0);
    save_buf("fuzz_auth", "auth_off", &in);

    auth_head(&in, "member m1 0011\nboss x 00112233445566778899aabbccddeeff\n", 0, 1, 0);
    auth_hello(&in, 0);
    auth_proved(&in, 3, 0, 0, 0);
    save_buf("fuzz_auth", "bad_keys_text", &in);

    auth_head(&in, "app 00112233445566778899aabbccddeeff\n", 1, 1, 0);
    auth_hello(&in, 0);
    auth_proved(&in, 2, 0, 0, 0);
    save_buf("fuzz_auth", "client_file", &in);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: mkcorpus DIR\n");
        return 2;
    }
    root = argv[1];
    if (mkdir(root, 0755) < 0 && errno != EEXIST) {
        perror(root);
        return 1;
    }
    frames();
    fnames();
    needles();
    recovery("indexed_all", 4, 0, 0);
    recovery("indexed_none", 0, 0, 0);
    recovery("indexed_two_corrupt_last", 2, 1, 0);
    recovery("torn_tail", 1, 0, 1);
    ns_heartbeats();
    ds_rpc();
    ds_http();
    ns_rpc();
    auth_seeds();
    return 0;
}
