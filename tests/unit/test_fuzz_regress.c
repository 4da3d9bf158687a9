/* Regression tests for what the fuzz harnesses (tests/fuzz/) pinned down.
 * Each test is named after the case it pins; the harness that found it and
 * the decision are in docs/reliability.md. */
#include "base/err.h"
#include "dataserver/block.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TEST_ID UINT64_C(1)
#define TEST_SIZE (1u << 20)

static char dir[64];

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    return remove(p);
}

static void setup(void)
{
    snprintf(dir, sizeof(dir), "/tmp/imgstore-fuzzreg-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(fuzz_regress, .init = setup, .fini = teardown);

/* fuzz_recovery: a header that is not a record, in a block file whose size
 * is not a multiple of 8. Recovery must not cut the file (nothing after a
 * bad header is touched), must mark the block corrupt and sealed, and must
 * put the tail at the file size rounded up to 8 so later tombstones stay
 * aligned - the one case where the tail is past the end of the file. */
Test(fuzz_regress, recovery_bad_header_in_unaligned_file_keeps_file_and_aligns_tail)
{
    struct block *b = NULL;
    cr_assert_eq(block_create(dir, 0, TEST_ID, TEST_SIZE, 1, NULL, 0, &b), 0);
    block_close(b);
    char path[128];
    snprintf(path, sizeof(path), "%s/%016llx.blk", dir, (unsigned long long)TEST_ID);
    int fd = open(path, O_WRONLY | O_APPEND);
    cr_assert_geq(fd, 0);
    uint8_t junk[NEEDLE_HEADER_SIZE + 3];
    memset(junk, 0xa5, sizeof(junk)); /* bad magic */
    cr_assert_eq(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
    close(fd);

    b = NULL;
    cr_assert_eq(block_open(dir, 0, TEST_ID, &b), 0);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_size, BLOCK_SUPER_SIZE + (off_t)sizeof(junk), "the file was cut");
    cr_assert(b->corrupt && b->sealed);
    cr_assert_eq(b->tail, (uint64_t)(st.st_size + 7) / 8 * 8);
    cr_assert_eq(block_file_count(b), 0);
    block_close(b);

    /* Opening again finds the same state. */
    b = NULL;
    cr_assert_eq(block_open(dir, 0, TEST_ID, &b), 0);
    cr_assert(b->corrupt && b->sealed);
    cr_assert_eq(b->tail, (uint64_t)(st.st_size + 7) / 8 * 8);
    block_close(b);
}
