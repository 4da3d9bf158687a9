/* engine_fixture.h - shared by the storage-engine unit tests (test_block.c,
 * test_blockio.c, test_compact.c, test_store.c): a temporary folder made
 * before and removed after each test, and records (files and tombstones)
 * written straight into a block with the synchronous io_uring calls, as a
 * server would write them. Included by one test file each; everything is
 * static inline to that file. Calls dataserver/block.h and uring.h only. */
#ifndef TEST_ENGINE_FIXTURE_H
#define TEST_ENGINE_FIXTURE_H

#include "dataserver/block.h"
#include "dataserver/uring.h"

#include <criterion/criterion.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

/* Makes a fresh folder /tmp/imgstore-NAME-XXXXXX into dir (n bytes). */
static inline void engine_tmpdir(char *dir, size_t n, const char *name)
{
    snprintf(dir, n, "/tmp/imgstore-%s-XXXXXX", name);
    cr_assert_not_null(mkdtemp(dir));
}

static inline int engine_rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st, (void)flag, (void)f;
    return remove(p);
}

/* Removes the folder dir and everything below it. */
static inline void engine_rmtree(const char *dir)
{
    nftw(dir, engine_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Appends a file record (mime 1; data, len bytes) to primary block b: the
 * block must give it seq want_seq. Returns its offset. */
static inline uint64_t engine_append(struct block *b, uint32_t want_seq, uint32_t cookie,
                                     uint32_t ctime, const void *data, uint32_t len)
{
    uint32_t seq;
    uint64_t off;
    size_t rs = needle_record_size(len);
    uint8_t *rec = malloc(rs);
    cr_assert_not_null(rec);
    cr_assert_eq(block_reserve(b, (uint32_t)rs, &off, &seq), 0);
    cr_assert_eq(seq, want_seq);
    struct needle_header h = {.mime = 1, .seq = seq, .cookie = cookie, .ctime = ctime};
    needle_build(rec, &h, data, len);
    cr_assert_eq(uring_pwrite_sync(b->fd, rec, rs, off), (ssize_t)rs);
    cr_assert_eq(block_commit(b, off, &h), 0);
    free(rec);
    return off;
}

/* Appends a tombstone of file seq (with its cookie) to block b. */
static inline void engine_tombstone(struct block *b, uint32_t seq, uint32_t cookie)
{
    uint8_t rec[NEEDLE_HEADER_SIZE];
    uint64_t off;
    cr_assert_eq(block_reserve_tombstone(b, NEEDLE_HEADER_SIZE, &off), 0);
    struct needle_header h = {.flags = NEEDLE_FLAG_TOMBSTONE, .seq = seq, .cookie = cookie};
    needle_build(rec, &h, NULL, 0);
    cr_assert_eq(uring_pwrite_sync(b->fd, rec, sizeof(rec), off), (ssize_t)sizeof(rec));
    cr_assert_eq(block_commit(b, off, &h), 0);
}

#endif
