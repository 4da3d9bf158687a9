/* Unit tests of packed indexes (dataserver/index_pack.c and their use by
 * block_open, dataserver/block.c): written for sealed blocks, read instead
 * of the index file's entries, and never trusted when anything is wrong. */
#include "base/crc32c.h"
#include "base/err.h"
#include "base/le.h"
#include "dataserver/block.h"
#include "dataserver/index.h"
#include "dataserver/index_pack.h"
#include "dataserver/uring.h"
#include "tests/unit/engine_fixture.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#define TEST_ID UINT64_C(0x00000000000000cd)
#define TEST_SIZE (8u << 20)
#define NFILES 3000
#define COOKIE(seq) (0xc0de0000u + (seq))

static char dir[64];

static void setup(void)
{
    engine_tmpdir(dir, sizeof(dir), "index_pack");
}

static void teardown(void)
{
    engine_rmtree(dir);
}

TestSuite(index_pack, .init = setup, .fini = teardown);

static void path(const char *suffix, char *out, size_t n)
{
    snprintf(out, n, "%s/%016llx%s", dir, (unsigned long long)TEST_ID, suffix);
}

static off_t fsize(const char *suffix)
{
    char p[256];
    struct stat st;
    path(suffix, p, sizeof(p));
    return stat(p, &st) == 0 ? st.st_size : -1;
}

static uint32_t content(uint32_t seq, uint32_t salt, uint8_t *buf)
{
    uint32_t len = 50 + (seq * 37 + salt) % 900;
    for (uint32_t i = 0; i < len; i++)
        buf[i] = (uint8_t)(seq * 31 + i + salt);
    return len;
}

/* A sealed block of files 1..n (contents depend on salt), closed. */
static void make_sealed(uint32_t n, uint32_t salt)
{
    struct block *b = NULL;
    struct block_replica r[1] = {{"0123456789abcdef0123456789abcdef", "127.0.0.1:7001",
                                  "127.0.0.1:8001"}};
    cr_assert_eq(block_create(dir, 0, TEST_ID, TEST_SIZE, 1, r, 1, &b), 0);
    uint8_t data[1024];
    for (uint32_t s = 1; s <= n; s++) {
        uint32_t len = content(s, salt, data);
        engine_append(b, s, COOKIE(s), 1, data, len);
    }
    cr_assert_eq(block_seal(b), 0);
    block_close(b);
}

static void check_all(struct block *b, uint32_t n, uint32_t salt)
{
    uint8_t want[1024], rec[1200];
    for (uint32_t s = 1; s <= n; s++) {
        uint64_t off;
        uint32_t size;
        cr_assert_eq(block_lookup(b, s, &off, &size), 0, "file %u", s);
        size_t rs = needle_record_size(size);
        cr_assert_eq(uring_pread_sync(b->fd, rec, rs, off), (ssize_t)rs);
        struct needle_header h;
        cr_assert_eq(needle_verify(rec, rs, s, COOKIE(s), &h), 0, "file %u", s);
        uint32_t len = content(s, salt, want);
        cr_assert(h.size == len && memcmp(rec + NEEDLE_HEADER_SIZE, want, len) == 0, "file %u", s);
    }
}

static struct block *open_ok(void)
{
    struct block *b = NULL;
    cr_assert_eq(block_open(dir, 0, TEST_ID, &b), 0);
    return b;
}

Test(index_pack, written_for_sealed_blocks_and_read_instead)
{
    make_sealed(NFILES, 0);
    cr_assert_eq(fsize(".idz"), -1, "not before the block was opened sealed");
    struct block *b = open_ok(); /* loads the index file, writes the packed copy */
    cr_assert_eq(b->packed_entries, NFILES);
    block_close(b);
    off_t idx = fsize(".idx"), idz = fsize(".idz");
    fprintf(stderr, "[index_pack] %d entries: index file %lld bytes, packed %lld bytes\n", NFILES,
            (long long)idx, (long long)idz);
    cr_assert_lt(idz * 2, idx, "a restart reads at least 2x less");
    b = open_ok(); /* from the packed copy */
    cr_assert_eq(b->packed_entries, NFILES);
    check_all(b, NFILES, 0);
    /* Tombstones after it go to the index file, read after the packed
     * entries. */
    for (uint32_t s = 1; s <= 10; s++)
        engine_tombstone(b, s, COOKIE(s));
    block_close(b);
    b = open_ok();
    cr_assert_eq(b->packed_entries, NFILES, "10 more entries: not worth a new copy");
    uint64_t off;
    uint32_t size;
    for (uint32_t s = 1; s <= 10; s++)
        cr_assert_neq(block_lookup(b, s, &off, &size), 0, "file %u deleted", s);
    check_all(b, 0, 0);
    cr_assert_eq(block_lookup(b, 11, &off, &size), 0);
    block_close(b);
}

Test(index_pack, open_blocks_are_never_packed)
{
    struct block *b = NULL;
    struct block_replica r[1] = {{"0123456789abcdef0123456789abcdef", "127.0.0.1:7001",
                                  "127.0.0.1:8001"}};
    cr_assert_eq(block_create(dir, 0, TEST_ID, TEST_SIZE, 1, r, 1, &b), 0);
    uint8_t data[1024];
    for (uint32_t s = 1; s <= 2000; s++)
        engine_append(b, s, COOKIE(s), 1, data, content(s, 0, data));
    block_close(b);
    b = open_ok();
    block_close(b);
    cr_assert_eq(fsize(".idz"), -1);
}

Test(index_pack, damaged_packed_index_is_ignored_and_rewritten)
{
    make_sealed(NFILES, 0);
    block_close(open_ok());
    off_t len = fsize(".idz");
    char p[256];
    path(".idz", p, sizeof(p));
    /* A flipped byte anywhere: header, frame, end. */
    off_t at[] = {0, 9, 17, 25, 29, 33, 37, 45, len / 2, len - 1};
    for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
        int fd = open(p, O_RDWR);
        cr_assert(fd >= 0);
        uint8_t x;
        cr_assert_eq(pread(fd, &x, 1, at[i]), 1);
        x ^= 0x21;
        cr_assert_eq(pwrite(fd, &x, 1, at[i]), 1);
        close(fd);
        struct block *b = open_ok();
        check_all(b, NFILES, 0);
        cr_assert_eq(b->packed_entries, NFILES, "rewritten after byte %lld", (long long)at[i]);
        block_close(b);
        b = open_ok();
        cr_assert_eq(b->packed_entries, NFILES);
        block_close(b);
    }
    /* Cut short, or empty. */
    cr_assert_eq(truncate(p, len / 3), 0);
    struct block *b = open_ok();
    check_all(b, NFILES, 0);
    block_close(b);
    cr_assert_eq(truncate(p, 0), 0);
    b = open_ok();
    check_all(b, NFILES, 0);
    block_close(b);
}

Test(index_pack, stale_packed_index_of_another_layout)
{
    /* The packed copy of one block file beside another block file of the
     * same id (files of other sizes): never believed. */
    make_sealed(NFILES, 0);
    block_close(open_ok());
    char p[256], keep[300];
    path(".idz", p, sizeof(p));
    snprintf(keep, sizeof(keep), "%s.old", p);
    cr_assert_eq(rename(p, keep), 0);
    const char *sfx[] = {".blk", ".idx", ".meta"};
    for (int i = 0; i < 3; i++) {
        char q[256];
        path(sfx[i], q, sizeof(q));
        cr_assert_eq(unlink(q), 0);
    }
    make_sealed(NFILES, 7);
    cr_assert_eq(rename(keep, p), 0);
    struct block *b = open_ok();
    check_all(b, NFILES, 7);
    block_close(b);
    b = open_ok();
    check_all(b, NFILES, 7);
    block_close(b);
}

Test(index_pack, decode_refuses_hostile_input)
{
    uint8_t ent[INDEX_ENTRY_SIZE * 3];
    index_encode_entry(1, 64, 10, 0, ent);
    index_encode_entry(2, 104, 20, 0, ent + 12);
    index_encode_entry(1, 160, 0, 1, ent + 24);
    uint8_t *out = NULL, *back = NULL;
    size_t len = 0;
    uint32_t n = 0;
    cr_assert_eq(index_pack_encode(5, 184, ent, 3, &out, &len), 0);
    cr_assert_eq(index_pack_decode(out, len, 5, 3, 184, &back, &n), 0);
    cr_assert(n == 3 && memcmp(back, ent, sizeof(ent)) == 0, "round trip");
    free(back);
    cr_assert_eq(index_pack_decode(out, len, 6, 3, 184, &back, &n), IMG_EFORMAT, "other block");
    cr_assert_eq(index_pack_decode(out, len, 5, 2, 184, &back, &n), IMG_EFORMAT,
                 "more entries than the index file");
    cr_assert_eq(index_pack_decode(out, len, 5, 3, 183, &back, &n), IMG_EFORMAT,
                 "past the block file");
    for (size_t cut = 0; cut < len; cut++)
        cr_assert_eq(index_pack_decode(out, cut, 5, 3, 184, &back, &n), IMG_EFORMAT, "cut %zu",
                     cut);
    for (size_t i = 0; i < len * 8; i++) {
        out[i / 8] ^= (uint8_t)(1u << (i % 8));
        int rc = index_pack_decode(out, len, 5, 3, 184, &back, &n);
        if (rc == 0) {
            /* Only a flip inside the frame that decodes the same can pass. */
            cr_assert(n == 3 && memcmp(back, ent, sizeof(ent)) == 0, "bit %zu", i);
            free(back);
        }
        out[i / 8] ^= (uint8_t)(1u << (i % 8));
    }
    free(out);
}

static uint8_t *read_file(const char *suffix, size_t *len)
{
    char p[256];
    path(suffix, p, sizeof(p));
    FILE *f = fopen(p, "rb");
    cr_assert(f);
    cr_assert_eq(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    cr_assert_gt(n, 0);
    rewind(f);
    uint8_t *buf = malloc((size_t)n);
    cr_assert(buf && fread(buf, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void write_file(const char *suffix, const uint8_t *buf, size_t len)
{
    char p[256];
    path(suffix, p, sizeof(p));
    FILE *f = fopen(p, "wb");
    cr_assert(f && fwrite(buf, 1, len, f) == len);
    fclose(f);
}

Test(index_pack, version_1_still_read_then_rewritten)
{
    make_sealed(NFILES, 0);
    /* A packed copy as the previous release wrote it. */
    size_t ilen, blen;
    uint8_t *idx = read_file(".idx", &ilen);
    free(read_file(".blk", &blen));
    uint32_t n = (uint32_t)((ilen - INDEX_HEADER_SIZE) / INDEX_ENTRY_SIZE);
    uint8_t *v1 = NULL;
    size_t v1len = 0;
    cr_assert_eq(index_pack_encode(TEST_ID, blen, idx + INDEX_HEADER_SIZE, n, &v1, &v1len), 0);
    write_file(".idz", v1, v1len);
    free(idx);
    free(v1);
    struct block *b = open_ok(); /* reads version 1, writes version 2 */
    check_all(b, NFILES, 0);
    cr_assert_eq(b->packed_entries, NFILES);
    block_close(b);
    size_t zlen;
    uint8_t *z = read_file(".idz", &zlen);
    cr_assert_eq(memcmp(z, INDEX_PACK2_MAGIC, 8), 0, "rewritten as version 2");
    free(z);
    b = open_ok();
    check_all(b, NFILES, 0);
    cr_assert_eq(b->packed_entries, NFILES);
    block_close(b);
}

/* Rewrites the version 2 copy's checks after a change, as a forger would
 * (z with a plain payload). */
static void reseal_v2(uint8_t *z, size_t len)
{
    le_put32(z + 68, crc32c(0, z + INDEX_PACK2_HEADER_SIZE, len - INDEX_PACK2_HEADER_SIZE));
    le_put32(z + 76, crc32c(0, z, 76));
}

/* The payload length a version 2 header announces (groups, bit fields). */
static size_t v2_payload_len(const uint8_t *z)
{
    return ((size_t)le_get32(z + 28) / INDEX_GROUP + 1) * 24 + le_get32(z + 44);
}

/* A version 2 copy z[*len] with its payload as it is (decoded when stored
 * as a zstd frame), checks resealed; malloc'd, *len updated. */
static uint8_t *v2_plain(const uint8_t *z, size_t *len)
{
    size_t plen = v2_payload_len(z);
    uint8_t *out = malloc(INDEX_PACK2_HEADER_SIZE + plen);
    cr_assert(out);
    memcpy(out, z, INDEX_PACK2_HEADER_SIZE);
    if (le_get32(z + 72) == 0) {
        cr_assert_eq(*len, INDEX_PACK2_HEADER_SIZE + plen);
        memcpy(out + INDEX_PACK2_HEADER_SIZE, z + INDEX_PACK2_HEADER_SIZE, plen);
    } else {
        size_t n = ZSTD_decompress(out + INDEX_PACK2_HEADER_SIZE, plen,
                                   z + INDEX_PACK2_HEADER_SIZE, *len - INDEX_PACK2_HEADER_SIZE);
        cr_assert(!ZSTD_isError(n) && n == plen);
    }
    le_put32(out + 72, 0);
    *len = INDEX_PACK2_HEADER_SIZE + plen;
    reseal_v2(out, *len);
    return out;
}

Test(index_pack, version_2_forged_structure_is_refused)
{
    make_sealed(NFILES, 0);
    block_close(open_ok());
    size_t olen, len;
    uint8_t *orig = read_file(".idz", &olen);
    cr_assert_eq(memcmp(orig, INDEX_PACK2_MAGIC, 8), 0);
    len = olen;
    uint8_t *plain = v2_plain(orig, &len); /* the structure checks, not the frame's */
    uint32_t npacked = le_get32(orig + 28);
    size_t groups = INDEX_PACK2_HEADER_SIZE, last = groups + (size_t)(npacked / INDEX_GROUP) * 24;
    struct {
        size_t at;
        uint32_t v;
        int width;
        const char *what;
    } forge[] = {
        {groups + 12, 40, 1, "offset field wider than 32 bits"},
        {groups + 13, 33, 1, "slack field wider than 32 bits"},
        {groups + 4, 0x7fffffff, 4, "fields past the end"},
        {groups + 0, 0, 4, "an offset inside the superblock"},
        {groups + 24, 0xffffffffu, 4, "offsets falling"},
        {last, 0x7fffffff, 4, "an end past the block file"},
        {last + 8, 1, 4, "an end group with fields"},
        {groups + 14, 1, 1, "reserved bits set"},
        {28, npacked + INDEX_GROUP, 4, "npacked without its groups"},
        {32, npacked, 4, "max_seq past the packed seqs"},
        {36, npacked, 4, "more live files than seqs"},
        {40, 1, 4, "next seq below max_seq"},
        {72, 1, 4, "a frame length with a plain payload"},
        {56, 0, 4, "a last entry of seq 0"},
        {64, NEEDLE_MAX_DATA + 1, 4, "a last entry too large"},
    };
    for (size_t i = 0; i < sizeof(forge) / sizeof(forge[0]); i++) {
        uint8_t *z = malloc(len);
        cr_assert(z);
        memcpy(z, plain, len);
        if (forge[i].width == 1)
            z[forge[i].at] = (uint8_t)forge[i].v;
        else
            le_put32(z + forge[i].at, forge[i].v);
        reseal_v2(z, len);
        write_file(".idz", z, len);
        free(z);
        struct block *b = open_ok();
        check_all(b, NFILES, 0);
        block_close(b);
        size_t now_len;
        uint8_t *now = read_file(".idz", &now_len);
        /* refused: removed and written again from the index file */
        cr_assert(now_len == olen && memcmp(now, orig, olen) == 0, "%s: not rewritten",
                  forge[i].what);
        free(now);
    }
    /* The same forgery inside a frame that decodes well is refused too. */
    uint8_t *z = malloc(len);
    cr_assert(z);
    memcpy(z, plain, len);
    z[INDEX_PACK2_HEADER_SIZE + 12] = 40; /* an offset field wider than 32 bits */
    reseal_v2(z, len);
    size_t cap = ZSTD_compressBound(len);
    uint8_t *fz = malloc(INDEX_PACK2_HEADER_SIZE + cap);
    cr_assert(fz);
    memcpy(fz, z, INDEX_PACK2_HEADER_SIZE);
    size_t fl = ZSTD_compress(fz + INDEX_PACK2_HEADER_SIZE, cap, z + INDEX_PACK2_HEADER_SIZE,
                              len - INDEX_PACK2_HEADER_SIZE, 3);
    cr_assert(!ZSTD_isError(fl));
    le_put32(fz + 72, (uint32_t)fl);
    le_put32(fz + 76, crc32c(0, fz, 76));
    write_file(".idz", fz, INDEX_PACK2_HEADER_SIZE + fl);
    free(fz);
    free(z);
    struct block *b = open_ok();
    check_all(b, NFILES, 0);
    block_close(b);
    size_t now_len;
    uint8_t *now = read_file(".idz", &now_len);
    cr_assert(now_len == olen && memcmp(now, orig, olen) == 0, "forged frame: not rewritten");
    free(now);
    free(plain);
    free(orig);
}

Test(index_pack, version_2_of_another_index_file_is_refused)
{
    make_sealed(NFILES, 0);
    block_close(open_ok());
    /* The index file's last entry changes (a record moved): the copy's
     * n-th entry no longer matches it. */
    size_t ilen;
    uint8_t *idx = read_file(".idx", &ilen);
    uint8_t *e = idx + ilen - INDEX_ENTRY_SIZE;
    uint32_t seq, size;
    uint64_t off;
    int tomb;
    index_decode_entry(e, &seq, &off, &size, &tomb);
    index_encode_entry(seq, off, size, 1, e); /* same place, now a tombstone */
    write_file(".idx", idx, ilen);
    free(idx);
    struct block *b = open_ok(); /* the index file is then checked against the block file */
    check_all(b, NFILES, 0);
    block_close(b);
}

Test(index_pack, version_2_with_seq_holes_is_kept)
{
    /* As a compacted block leaves it: seqs far above the entry count. */
    struct block *b = NULL;
    struct block_replica r[1] = {{"0123456789abcdef0123456789abcdef", "127.0.0.1:7001",
                                  "127.0.0.1:8001"}};
    cr_assert_eq(block_create(dir, 0, TEST_ID, TEST_SIZE, 1, r, 1, &b), 0);
    uint8_t data[1024];
    const uint32_t n = 1500;
    for (uint32_t i = 1; i <= n; i++) {
        b->next_seq = 7 * i; /* the seqs between were compacted away */
        engine_append(b, 7 * i, COOKIE(7 * i), 1, data, content(7 * i, 0, data));
    }
    cr_assert_eq(block_seal(b), 0);
    block_close(b);
    block_close(open_ok()); /* writes the packed copy */
    /* An entry the copy stands for is spoiled: were the copy refused, the
     * index file would be read, found damaged and rebuilt. */
    size_t ilen;
    uint8_t *idx = read_file(".idx", &ilen);
    le_put32(idx + INDEX_HEADER_SIZE + 4 * INDEX_ENTRY_SIZE + 4, 0);
    write_file(".idx", idx, ilen);
    b = open_ok();
    cr_assert_eq(b->packed_entries, n);
    cr_assert_eq(b->ix.max_seq, 7 * n);
    uint64_t off;
    uint32_t size;
    for (uint32_t s = 1; s <= 7 * n + 1; s++)
        cr_assert_eq(block_lookup(b, s, &off, &size) == 0, s % 7 == 0 && s <= 7 * n, "seq %u", s);
    block_close(b);
    size_t now_len;
    uint8_t *now = read_file(".idx", &now_len);
    cr_assert(now_len == ilen && memcmp(now, idx, ilen) == 0,
              "the copy was believed: the index file was not read");
    free(now);
    free(idx);
}

Test(index_pack, version_2_random_forgeries_stay_inside_the_block)
{
    /* A forger who recomputes the CRCs can change any byte of a version 2
     * copy. Whatever is believed, every lookup must stay inside the block
     * file and within the largest record (reads then fail their checks,
     * docs/storage.md). */
    make_sealed(NFILES, 0);
    block_close(open_ok());
    size_t len, blen;
    uint8_t *stored = read_file(".idz", &len);
    uint8_t *orig = v2_plain(stored, &len); /* forged as it is decoded */
    free(stored);
    free(read_file(".blk", &blen));
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (int round = 0; round < 200; round++) {
        uint8_t *z = malloc(len);
        cr_assert(z);
        memcpy(z, orig, len);
        for (int k = 0; k < 1 + round % 4; k++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            size_t at = INDEX_PACK2_HEADER_SIZE + (size_t)(x % (len - INDEX_PACK2_HEADER_SIZE));
            z[at] ^= (uint8_t)(1u << ((x >> 32) % 8));
        }
        reseal_v2(z, len);
        write_file(".idz", z, len);
        free(z);
        struct block *b = open_ok();
        for (uint32_t s = 0; s <= NFILES + INDEX_GROUP; s++) {
            uint64_t off;
            uint32_t size;
            int rc = block_lookup(b, s, &off, &size);
            if (rc == 0 || rc == IMG_EDELETED)
                cr_assert(off >= BLOCK_SUPER_SIZE && size <= NEEDLE_MAX_DATA &&
                              off + needle_record_size(size) <= blen,
                          "round %d seq %u: offset %llu size %u", round, s,
                          (unsigned long long)off, size);
        }
        block_close(b);
    }
    free(orig);
}

/* A sealed block of n files of pseudo-random sizes 1..16 KiB (seed), closed:
 * bit fields with no pattern for zstd to find. */
static void make_sealed_random(uint32_t n, uint64_t seed)
{
    struct block *b = NULL;
    struct block_replica r[1] = {{"0123456789abcdef0123456789abcdef", "127.0.0.1:7001",
                                  "127.0.0.1:8001"}};
    cr_assert_eq(block_create(dir, 0, TEST_ID, 64u << 20, 1, r, 1, &b), 0);
    static uint8_t data[16 << 10];
    for (uint32_t s = 1; s <= n; s++) {
        seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
        engine_append(b, s, COOKIE(s), 1, data, 1 + (uint32_t)(seed % sizeof(data)));
    }
    cr_assert_eq(block_seal(b), 0);
    block_close(b);
}

Test(index_pack, version_2_payload_stored_as_zstd_when_it_pays)
{
    /* Regular sizes: the payload goes as one zstd frame, read back whole. */
    make_sealed(NFILES, 0);
    block_close(open_ok());
    size_t len;
    uint8_t *z = read_file(".idz", &len);
    size_t plen = v2_payload_len(z);
    fprintf(stderr, "[index_pack] regular sizes: payload %zu bytes, stored %zu\n", plen,
            len - INDEX_PACK2_HEADER_SIZE);
    cr_assert_neq(le_get32(z + 72), 0, "stored as a frame");
    cr_assert_eq(le_get32(z + 72), len - INDEX_PACK2_HEADER_SIZE);
    cr_assert_lt(len - INDEX_PACK2_HEADER_SIZE, plen * 9 / 10, "saves 10 %% at least");
    struct block *b = open_ok();
    cr_assert_eq(b->packed_entries, NFILES, "the frame is believed");
    check_all(b, NFILES, 0);
    block_close(b);
    /* A frame announcing another size, or cut short: refused, rewritten. */
    uint8_t *f = malloc(len);
    cr_assert(f);
    memcpy(f, z, len);
    le_put32(f + 44, le_get32(f + 44) + 8); /* bits_len: the frame holds 8 bytes fewer */
    le_put32(f + 76, crc32c(0, f, 76));
    write_file(".idz", f, len);
    b = open_ok();
    check_all(b, NFILES, 0);
    block_close(b);
    size_t now_len;
    uint8_t *now = read_file(".idz", &now_len);
    cr_assert(now_len == len && memcmp(now, z, len) == 0, "other size: not rewritten");
    free(now);
    le_put32(f + 44, le_get32(z + 44));
    le_put32(f + 72, (uint32_t)(len - INDEX_PACK2_HEADER_SIZE - 5));
    le_put32(f + 76, crc32c(0, f, 76));
    write_file(".idz", f, len - 5);
    b = open_ok();
    check_all(b, NFILES, 0);
    block_close(b);
    now = read_file(".idz", &now_len);
    cr_assert(now_len == len && memcmp(now, z, len) == 0, "cut frame: not rewritten");
    free(now);
    free(f);
    free(z);
    char p[256];
    const char *sfx[] = {".blk", ".idx", ".meta", ".idz"};
    for (int i = 0; i < 4; i++) {
        path(sfx[i], p, sizeof(p));
        cr_assert_eq(unlink(p), 0);
    }

    /* Random sizes: zstd would not save 10 %, the payload stays as it is. */
    make_sealed_random(1500, 0x1234567);
    block_close(open_ok());
    z = read_file(".idz", &len);
    fprintf(stderr, "[index_pack] random sizes: payload %zu bytes, stored %zu\n",
            v2_payload_len(z), len - INDEX_PACK2_HEADER_SIZE);
    cr_assert_eq(le_get32(z + 72), 0, "a plain payload");
    cr_assert_eq(len, INDEX_PACK2_HEADER_SIZE + v2_payload_len(z));
    free(z);
    b = open_ok();
    cr_assert_eq(b->packed_entries, 1500);
    block_close(b);
}
