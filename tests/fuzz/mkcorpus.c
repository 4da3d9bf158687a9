/* mkcorpus.c - writes the seed corpus of the fuzz harnesses: small valid
 * examples of every input kind, so fuzzing starts from deep inside the
 * parsers instead of from random bytes.
 *
 * Usage: mkcorpus DIR   (writes DIR/<harness>/<name>, replacing old seeds)
 * `make fuzz-corpus` runs it into tests/fuzz/corpus/. */
#include "dataserver/index.h"
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
    put_u16(&in, (uint16_t)idx.len);
    put(&in, idx.p, idx.len);
    put(&in, body.p, body.len);
    save_buf("fuzz_recovery", name, &in);
    free(body.p);
    free(idx.p);
}

static void hb_step(struct buf *in, uint8_t op, const Imgstore__Heartbeat *hb)
{
    size_t n = protobuf_c_message_get_packed_size(&hb->base);
    uint8_t *p = malloc(n + 1);
    protobuf_c_message_pack(&hb->base, p);
    put_u8(in, op);
    put_u16(in, (uint16_t)n);
    put(in, p, n);
    free(p);
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
    return 0;
}
