/* Unit tests of the deterministic compaction rewrite (dataserver/compact.c):
 * two replicas built from the same records and deletes compact to
 * byte-identical files; live files keep their seq, cookie and bytes (so their
 * names); deleted files and tombstones are gone; the index is rebuilt and
 * survives a reopen; reads pinned on the old file still work after the swap. */
#include "dataserver/block.h"
#include "dataserver/blockio.h"
#include "dataserver/compact.h"
#include "tests/unit/engine_fixture.h"

#include "base/crc32c.h"
#include "base/err.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TEST_ID 0x42ull
#define TEST_SIZE (4u << 20)
#define NFILES 60
#define COOKIE(seq) (0x9e3779b9u * (seq) + 7u)

static char root[64], dir_a[128], dir_b[128];

static void setup(void)
{
    engine_tmpdir(root, sizeof(root), "compact");
    snprintf(dir_a, sizeof(dir_a), "%s/a", root);
    snprintf(dir_b, sizeof(dir_b), "%s/b", root);
    cr_assert_eq(mkdir(dir_a, 0755), 0);
    cr_assert_eq(mkdir(dir_b, 0755), 0);
}

static void teardown(void)
{
    engine_rmtree(root);
}

TestSuite(compact, .init = setup, .fini = teardown);

static uint32_t content(uint32_t seq, uint8_t *buf)
{
    uint32_t len = 100 + seq * 997 % 30000;
    for (uint32_t i = 0; i < len; i++)
        buf[i] = (uint8_t)(seq * 31 + i * 7);
    return len;
}

static void append(struct block *b, uint32_t want_seq)
{
    static uint8_t data[32768];
    uint32_t len = content(want_seq, data);
    engine_append(b, want_seq, COOKIE(want_seq), 1000 + want_seq, data, len);
    b->durable_tail = b->tail;
}

static void delete(struct block *b, uint32_t seq)
{
    engine_tombstone(b, seq, COOKIE(seq));
    b->durable_tail = b->tail;
}

/* One replica: NFILES files, every odd one deleted, sealed. */
static struct block *replica(const char *dir)
{
    struct block *b = NULL;
    struct block_replica r[1] = {{"0123456789abcdef0123456789abcdef", "127.0.0.1:7001",
                                  "127.0.0.1:8001"}};
    cr_assert_eq(block_create(dir, 0, TEST_ID, TEST_SIZE, 1, r, 1, &b), 0);
    for (uint32_t s = 1; s <= NFILES; s++)
        append(b, s);
    for (uint32_t s = 1; s <= NFILES; s += 2)
        delete(b, s);
    cr_assert_eq(block_seal(b), 0);
    return b;
}

static void read_all(const char *path, uint8_t **buf, size_t *len)
{
    struct stat st;
    int fd = open(path, O_RDONLY);
    cr_assert_geq(fd, 0);
    cr_assert_eq(fstat(fd, &st), 0);
    *len = (size_t)st.st_size;
    *buf = malloc(*len + 1);
    cr_assert_eq(pread(fd, *buf, *len, 0), (ssize_t)*len);
    close(fd);
}

/* Checks every file of b: live ones (even seqs) read back whole with their
 * seq and cookie, deleted ones are gone. */
static void check_files(struct block *b)
{
    uint8_t want[32768];
    for (uint32_t s = 1; s <= NFILES; s++) {
        uint64_t off;
        uint32_t size;
        int rc = block_lookup(b, s, &off, &size);
        if (s % 2) {
            cr_assert_eq(rc, IMG_ENOTFOUND, "deleted seq %u must be gone", s);
            continue;
        }
        cr_assert_eq(rc, 0, "live seq %u", s);
        uint32_t len = content(s, want);
        cr_assert_eq(size, len);
        uint8_t *rec = malloc(NEEDLE_HEADER_SIZE + size);
        struct needle_header h;
        cr_assert_eq(uring_pread_sync(b->fd, rec, NEEDLE_HEADER_SIZE + size, off),
                     (ssize_t)(NEEDLE_HEADER_SIZE + size));
        cr_assert_eq(needle_verify(rec, NEEDLE_HEADER_SIZE + size, s, COOKIE(s), &h), 0);
        cr_assert_eq(h.ctime, 1000 + s);
        cr_assert_eq(memcmp(rec + NEEDLE_HEADER_SIZE, want, len), 0);
        free(rec);
    }
}

Test(compact, replicas_compact_byte_identical)
{
    struct block *a = replica(dir_a), *b = replica(dir_b);
    uint64_t before = a->durable_tail;
    uint32_t crc_a = 0, crc_b = 0;
    cr_assert_eq(compact_sync(a, &crc_a), 0);
    cr_assert_eq(compact_sync(b, &crc_b), 0);
    cr_assert_eq(crc_a, crc_b);
    cr_assert_lt(a->durable_tail, before);
    cr_assert_eq(a->durable_tail, b->durable_tail);
    cr_assert_eq(a->deleted_bytes, 0);
    cr_assert_eq(block_file_count(a), NFILES / 2);

    char pa[256], pb[256];
    snprintf(pa, sizeof(pa), "%s/%016llx.blk", dir_a, TEST_ID);
    snprintf(pb, sizeof(pb), "%s/%016llx.blk", dir_b, TEST_ID);
    uint8_t *ba, *bb;
    size_t la, lb;
    read_all(pa, &ba, &la);
    read_all(pb, &bb, &lb);
    cr_assert_eq(la, lb);
    cr_assert_eq(la, a->durable_tail);
    cr_assert_eq(memcmp(ba, bb, la), 0, "replicas must be byte-identical");
    cr_assert_eq(crc32c(0, ba, la), crc_a);
    free(ba);
    free(bb);
    check_files(a);
    block_close(a);
    block_close(b);
}

Test(compact, index_rebuilt_and_survives_reopen)
{
    struct block *a = replica(dir_a);
    uint32_t crc;
    cr_assert_eq(compact_sync(a, &crc), 0);
    uint64_t tail = a->durable_tail;
    block_close(a);
    a = NULL;
    cr_assert_eq(block_open(dir_a, 0, TEST_ID, &a), 0);
    cr_assert_eq(a->durable_tail, tail);
    cr_assert(a->sealed);
    cr_assert_not(a->corrupt);
    check_files(a);
    /* Without the index file, the scan finds the same files. */
    block_close(a);
    char pi[256];
    snprintf(pi, sizeof(pi), "%s/%016llx.idx", dir_a, TEST_ID);
    cr_assert_eq(unlink(pi), 0);
    cr_assert_eq(block_open(dir_a, 0, TEST_ID, &a), 0);
    check_files(a);
    block_close(a);
}

Test(compact, pinned_old_file_outlives_the_swap)
{
    struct block *a = replica(dir_a);
    uint64_t off;
    uint32_t size;
    cr_assert_eq(block_lookup(a, 40, &off, &size), 0);
    struct block_fd *old = block_fd_get(a); /* a read in flight on the old file */
    cr_assert_not_null(old);
    uint32_t crc;
    cr_assert_eq(compact_sync(a, &crc), 0);
    cr_assert_neq(old->fd, a->fd);
    uint8_t *rec = malloc(NEEDLE_HEADER_SIZE + size);
    struct needle_header h;
    cr_assert_eq(uring_pread_sync(old->fd, rec, NEEDLE_HEADER_SIZE + size, off),
                 (ssize_t)(NEEDLE_HEADER_SIZE + size));
    cr_assert_eq(needle_verify(rec, NEEDLE_HEADER_SIZE + size, 40, COOKIE(40), &h), 0);
    free(rec);
    block_fd_put(old);
    check_files(a);
    block_close(a);
}

Test(compact, corrupt_record_leaves_block_unchanged)
{
    struct block *a = replica(dir_a);
    uint64_t off, tail = a->durable_tail;
    uint32_t size;
    cr_assert_eq(block_lookup(a, 10, &off, &size), 0);
    uint8_t x = 0xff;
    cr_assert_eq(pwrite(a->fd, &x, 1, (off_t)(off + NEEDLE_HEADER_SIZE + 3)), 1);
    uint32_t crc;
    cr_assert_eq(compact_sync(a, &crc), IMG_ECORRUPT);
    cr_assert_eq(a->durable_tail, tail);
    char pt[256];
    snprintf(pt, sizeof(pt), "%s/%016llx%s", dir_a, TEST_ID, COMPACT_SUFFIX);
    cr_assert_neq(access(pt, F_OK), 0, "the temporary file is removed");
    block_close(a);
}
