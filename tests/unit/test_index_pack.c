/* Unit tests of packed indexes (dataserver/index_pack.c and their use by
 * block_open, dataserver/block.c): written for sealed blocks, read instead
 * of the index file's entries, and never trusted when anything is wrong. */
#include "base/err.h"
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
