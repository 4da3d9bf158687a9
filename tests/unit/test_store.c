/* Unit tests of the data folders (dataserver/store.c): locking, the server
 * id, reopening blocks, and choosing a folder for a new block. */
#include "base/err.h"
#include "dataserver/store.h"
#include "tests/unit/engine_fixture.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BSIZE (1u << 20)

static char root[64], d0[128], d1[128];
static char *dirs[2] = {d0, d1};
static uv_loop_t loop;

static void setup(void)
{
    engine_tmpdir(root, sizeof(root), "store");
    /* d1 does not exist yet: store_open creates it */
    snprintf(d0, sizeof(d0), "%s/disk0", root);
    snprintf(d1, sizeof(d1), "%s/a/disk1", root);
    cr_assert_eq(uv_loop_init(&loop), 0);
}

static void teardown(void)
{
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_expect_eq(uv_loop_close(&loop), 0, "a handle leaked");
    engine_rmtree(root);
}

TestSuite(store, .init = setup, .fini = teardown);

static void read_id(const char *d, char *out)
{
    char p[256];
    snprintf(p, sizeof(p), "%s/SERVER_ID", d);
    FILE *f = fopen(p, "r");
    cr_assert_not_null(f);
    cr_assert_not_null(fgets(out, 64, f));
    fclose(f);
    out[strcspn(out, "\n")] = '\0';
}

static void close_store(struct store *s)
{
    store_close(s);
    uv_run(&loop, UV_RUN_DEFAULT);
}

Test(store, server_id_persists_and_is_identical)
{
    struct store *s;
    cr_assert_eq(store_open(&loop, dirs, 2, &s), 0);
    char id[STORE_SERVER_ID_LEN + 1];
    memcpy(id, s->server_id, sizeof(id));
    cr_assert_eq(strlen(id), STORE_SERVER_ID_LEN);
    cr_assert_eq(strspn(id, "0123456789abcdef"), STORE_SERVER_ID_LEN);
    char a[64], b[64];
    read_id(d0, a);
    read_id(d1, b);
    cr_assert_str_eq(a, id);
    cr_assert_str_eq(b, id);
    close_store(s);
    cr_assert_eq(store_open(&loop, dirs, 2, &s), 0);
    cr_assert_str_eq(s->server_id, id);
    close_store(s);

    /* a folder with another server's id is refused */
    char p[256];
    snprintf(p, sizeof(p), "%s/SERVER_ID", d1);
    FILE *f = fopen(p, "w");
    fputs("00000000000000000000000000000001\n", f);
    fclose(f);
    cr_assert_eq(store_open(&loop, dirs, 2, &s), IMG_EFORMAT);
    f = fopen(p, "w");
    fputs("not an id\n", f);
    fclose(f);
    cr_assert_eq(store_open(&loop, dirs, 2, &s), IMG_EFORMAT);
    /* a new empty folder gets the existing id */
    unlink(p);
    cr_assert_eq(store_open(&loop, dirs, 2, &s), 0);
    cr_assert_str_eq(s->server_id, id);
    read_id(d1, b);
    cr_assert_str_eq(b, id);
    close_store(s);
}

Test(store, second_open_is_locked_out)
{
    struct store *s, *s2;
    cr_assert_eq(store_open(&loop, dirs, 2, &s), 0);
    cr_assert_eq(store_open(&loop, dirs + 1, 1, &s2), IMG_ELOCKED);
    cr_assert_eq(store_open(&loop, dirs, 2, &s2), IMG_ELOCKED);
    close_store(s);
    cr_assert_eq(store_open(&loop, dirs + 1, 1, &s2), 0);
    close_store(s2);
    cr_assert_eq(store_open(&loop, dirs, 0, &s2), IMG_EINVAL);
}

static void count_block(struct block *b, void *arg)
{
    (*(int *)arg)++;
}

Test(store, blocks_are_created_and_reopened)
{
    struct store *s;
    struct block *b;
    cr_assert_eq(store_open(&loop, dirs, 2, &s), 0);
    const int n = 40;
    for (int i = 1; i <= n; i++) {
        cr_assert_eq(store_create_block(s, (uint64_t)i * 1000003, BSIZE, i % 2, NULL, 0, &b), 0);
        cr_assert_eq(b->id, (uint64_t)i * 1000003);
        cr_assert(b->disk == 0 || b->disk == 1);
        cr_assert_eq(store_get(s, b->id), b);
    }
    cr_assert_eq(store_create_block(s, 1000003, BSIZE, 1, NULL, 0, &b), IMG_EEXIST);
    cr_assert_null(store_get(s, 42));
    store_refresh(s);
    cr_assert(s->disks[0].capacity > 0);
    cr_assert(s->disks[0].free > 0);
    cr_assert_eq(s->disks[0].used + s->disks[1].used, (uint64_t)n * BLOCK_SUPER_SIZE);
    close_store(s);

    /* stray files are skipped; a damaged block does not stop the start */
    char p[256];
    snprintf(p, sizeof(p), "%s/blocks/README", d0);
    FILE *f = fopen(p, "w");
    fclose(f);
    snprintf(p, sizeof(p), "%s/blocks/00000000000000AB.blk", d0);
    f = fopen(p, "w");
    fclose(f);
    snprintf(p, sizeof(p), "%s/blocks/00000000000000ab.blk", d0);
    f = fopen(p, "w");
    fclose(f);

    cr_assert_eq(store_open(&loop, dirs, 2, &s), 0);
    cr_assert_eq(s->nblocks, (uint32_t)n);
    int count = 0;
    store_foreach(s, count_block, &count);
    cr_assert_eq(count, n);
    for (int i = 1; i <= n; i++) {
        b = store_get(s, (uint64_t)i * 1000003);
        cr_assert_not_null(b, "block %d", i);
        cr_assert_eq(b->primary, i % 2);
        cr_assert_eq(b->max_size, BSIZE);
    }
    close_store(s);
}

Test(store, create_picks_the_folder_with_most_space)
{
    struct store *s;
    struct block *b;
    cr_assert_eq(store_open(&loop, dirs, 2, &s), 0);
    /* both folders are on the same file system: mark one failed so the
     * choice is forced, then check the other is used */
    s->disks[0].failed = 1;
    cr_assert_eq(store_create_block(s, 7, BSIZE, 1, NULL, 0, &b), 0);
    cr_assert_eq(b->disk, 1);
    char p[256];
    snprintf(p, sizeof(p), "%s/blocks/0000000000000007.blk", d1);
    cr_assert_eq(access(p, F_OK), 0);
    s->disks[0].failed = 0;
    s->disks[1].failed = 1;
    cr_assert_eq(store_create_block(s, 8, BSIZE, 1, NULL, 0, &b), 0);
    cr_assert_eq(b->disk, 0);
    s->disks[0].failed = 1;
    cr_assert_eq(store_create_block(s, 9, BSIZE, 1, NULL, 0, &b), -ENOSPC);
    close_store(s);
}

Test(store, folders_on_one_file_system_share_new_blocks)
{
    struct store *s;
    struct block *b;
    cr_assert_eq(store_open(&loop, dirs, 2, &s), 0);
    /* Both folders are on /tmp's file system: equal free bytes (within the
     * slack), so each new block goes to the folder holding fewer bytes. */
    int on[2] = {0, 0};
    for (uint64_t id = 1; id <= 6; id++) {
        cr_assert_eq(store_create_block(s, id, BSIZE, 1, NULL, 0, &b), 0);
        on[b->disk]++;
    }
    cr_assert_eq(on[0], 3, "disk0 got %d of 6 blocks", on[0]);
    cr_assert_eq(on[1], 3, "disk1 got %d of 6 blocks", on[1]);
    close_store(s);
}
