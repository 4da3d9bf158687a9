/* Unit tests of io_uring on the loop (dataserver/uring.c) and of group
 * commit (dataserver/blockio.c), on a real uv loop. Every test ends by
 * closing the loop, which proves no handle leaked. */
#include "base/err.h"
#include "dataserver/blockio.h"
#include "tests/unit/engine_fixture.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TEST_ID UINT64_C(0x1234)
#define TEST_SIZE (16u << 20)
#define NFILES 300

static char dir[64];
static uv_loop_t loop;
static struct uring *ring;
static struct block *blk;

static void setup(void)
{
    engine_tmpdir(dir, sizeof(dir), "blockio");
    cr_assert_eq(uv_loop_init(&loop), 0);
    cr_assert_eq(uring_init(&loop, 64, &ring), 0);
    cr_assert_eq(block_create(dir, 0, TEST_ID, TEST_SIZE, 1, NULL, 0, &blk), 0);
}

static void teardown(void)
{
    blockio_release(blk);
    block_close(blk);
    uring_close(ring);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_expect_eq(uv_loop_close(&loop), 0, "a handle leaked");
    engine_rmtree(dir);
}

TestSuite(blockio, .init = setup, .fini = teardown);

struct pending {
    uint8_t *rec;
    size_t len;
    uint64_t off;
    struct needle_header h;
    int status;
    int done;
};

static int ndone;
static uint64_t last_off;
static int out_of_order;

static void on_append(int status, void *arg)
{
    struct pending *p = arg;
    p->status = status;
    p->done = 1;
    if (p->off < last_off)
        out_of_order = 1;
    last_off = p->off;
    if (status == 0)
        cr_assert_eq(block_commit(blk, p->off, &p->h), 0);
    ndone++;
}

static void run_until(int *counter, int n)
{
    while (*counter < n)
        uv_run(&loop, UV_RUN_ONCE);
}

static uint32_t fill(uint32_t seq, uint8_t *buf, uint32_t len)
{
    for (uint32_t i = 0; i < len; i++)
        buf[i] = (uint8_t)(seq ^ (i * 7));
    return len;
}

/* Reserves and submits file `i`'s record; returns its pending state. */
static void submit(struct pending *p, uint32_t len)
{
    uint8_t *data = malloc(len ? len : 1);
    uint32_t seq;
    p->len = needle_record_size(len);
    p->rec = malloc(p->len);
    cr_assert_eq(block_reserve(blk, (uint32_t)p->len, &p->off, &seq), 0);
    fill(seq, data, len);
    p->h = (struct needle_header){.mime = 2, .seq = seq, .cookie = seq * 3 + 1, .ctime = 5};
    needle_build(p->rec, &p->h, data, len);
    free(data);
    cr_assert_eq(blockio_append(ring, blk, p->rec, p->len, p->off, on_append, p), 0);
}

static int nread;
static void on_read(int status, void *arg)
{
    *(int *)arg = status;
    nread++;
}

Test(blockio, group_commit_acknowledges_all_in_order)
{
    struct pending *ps = calloc(NFILES, sizeof(*ps));
    ndone = 0;
    for (int i = 0; i < NFILES; i++)
        submit(&ps[i], 1000 + (uint32_t)i * 97);
    run_until(&ndone, NFILES);
    cr_assert_eq(out_of_order, 0);
    for (int i = 0; i < NFILES; i++)
        cr_assert_eq(ps[i].status, 0, "append %d: %d", i, ps[i].status);
    cr_assert_eq(blk->durable_tail, blk->tail);
    cr_assert_eq(block_file_count(blk), NFILES);
    cr_assert_eq(uring_inflight(ring), 0);

    /* every record reads back byte for byte (every other one as a
     * background read, run by the kernel's workers: the same bytes) */
    int *st = calloc(NFILES, sizeof(*st));
    uint8_t **bufs = calloc(NFILES, sizeof(*bufs));
    nread = 0;
    for (int i = 0; i < NFILES; i++) {
        bufs[i] = calloc(1, ps[i].len);
        st[i] = 1;
        if (i % 2)
            cr_assert_eq(
                blockio_read_bg(ring, blk, bufs[i], ps[i].len, ps[i].off, on_read, &st[i]), 0);
        else
            cr_assert_eq(blockio_read(ring, blk, bufs[i], ps[i].len, ps[i].off, on_read, &st[i]),
                         0);
    }
    run_until(&nread, NFILES);
    for (int i = 0; i < NFILES; i++) {
        struct needle_header h;
        cr_assert_eq(st[i], 0);
        cr_assert_eq(memcmp(bufs[i], ps[i].rec, ps[i].len), 0, "record %d differs", i);
        cr_assert_eq(needle_verify(bufs[i], ps[i].len, ps[i].h.seq, ps[i].h.cookie, &h), 0);
        free(bufs[i]);
        free(ps[i].rec);
    }
    free(bufs);
    free(st);
    free(ps);

    /* after a reopen the same files are there */
    blockio_release(blk);
    block_close(blk);
    cr_assert_eq(block_open(dir, 0, TEST_ID, &blk), 0);
    cr_assert_eq(block_file_count(blk), NFILES);
    cr_assert_eq(blk->next_seq, NFILES + 1);
}

Test(blockio, read_beyond_eof_is_an_error)
{
    uint8_t buf[256] = {0};
    int st = 1;
    nread = 0;
    cr_assert_eq(blockio_read(ring, blk, buf, sizeof(buf), BLOCK_SUPER_SIZE - 8, on_read, &st), 0);
    run_until(&nread, 1);
    cr_assert_eq(st, IMG_ECORRUPT);
    cr_assert_eq(blockio_read(ring, blk, buf, sizeof(buf), 1u << 30, on_read, &st), 0);
    run_until(&nread, 2);
    cr_assert_eq(st, IMG_ECORRUPT);
    cr_assert_eq(blockio_read_bg(ring, blk, buf, sizeof(buf), 1u << 30, on_read, &st), 0);
    run_until(&nread, 3);
    cr_assert_eq(st, IMG_ECORRUPT, "a background read past the end is short too");
    cr_assert_eq(blockio_read(ring, blk, NULL, 8, 0, on_read, &st), IMG_EINVAL);
    cr_assert_eq(blockio_disk_error(0), 0, "a short read is no disk failure");
}

Test(blockio, read_error_is_remembered_for_its_folder)
{
    char p[256];
    snprintf(p, sizeof(p), "%s/%016llx.blk", dir, (unsigned long long)TEST_ID);
    int rw = blk->fd;
    blk->fd = open(p, O_WRONLY); /* reads of it fail with EBADF */
    cr_assert(blk->fd >= 0);
    uint8_t buf[64];
    int st = 1;
    nread = 0;
    cr_assert_eq(blockio_read(ring, blk, buf, sizeof(buf), 0, on_read, &st), 0);
    run_until(&nread, 1);
    cr_assert_eq(st, -EBADF);
    cr_assert_eq(blockio_disk_error(blk->disk), -EBADF);
    cr_assert_eq(blockio_disk_error(blk->disk + 1), 0);
    cr_assert_eq(blockio_disk_error(-1), 0);
    cr_assert_eq(blockio_disk_error(BLOCKIO_MAX_DISKS), 0);
    block_fd_put(blk->file); /* the block's own pin: closes the write-only fd */
    blk->file = NULL;
    blk->fd = rw;
}

Test(blockio, write_error_seals_and_fails_appends)
{
    char p[256];
    snprintf(p, sizeof(p), "%s/%016llx.blk", dir, (unsigned long long)TEST_ID);
    int rw = blk->fd;
    blk->fd = open(p, O_RDONLY);
    cr_assert(blk->fd >= 0);
    struct pending ps[3] = {{0}};
    ndone = 0;
    for (int i = 0; i < 3; i++)
        submit(&ps[i], 100);
    run_until(&ndone, 3);
    for (int i = 0; i < 3; i++) {
        cr_assert(ps[i].status < 0);
        free(ps[i].rec);
    }
    cr_assert_eq(blk->sealed, 1);
    cr_assert_eq(blk->durable_tail, BLOCK_SUPER_SIZE);
    uint8_t rec[64] = {0};
    uint64_t off;
    cr_assert_eq(block_reserve_tombstone(blk, NEEDLE_HEADER_SIZE, &off), 0);
    cr_assert(blockio_append(ring, blk, rec, NEEDLE_HEADER_SIZE, off, on_append, NULL) < 0);
    cr_assert_eq(blockio_disk_error(0), -EBADF, "the write error marks folder 0");
    close(blk->fd);
    blk->fd = rw;
}

Test(blockio, append_outside_reservation_is_refused)
{
    uint8_t rec[64] = {0};
    cr_assert_eq(blockio_append(ring, blk, rec, 64, BLOCK_SUPER_SIZE, on_append, NULL),
                 IMG_EINVAL);
    cr_assert_eq(blockio_append(ring, blk, rec, 64, 0, on_append, NULL), IMG_EINVAL);
}

static int nraw;
static void on_raw(int res, void *arg)
{
    *(int *)arg = res;
    nraw++;
}

Test(blockio, uring_fifo_short_reads_and_close_waits)
{
    struct uring *small;
    cr_assert_eq(uring_init(&loop, 2, &small), 0);
    char p[256];
    snprintf(p, sizeof(p), "%s/raw", dir);
    int fd = open(p, O_RDWR | O_CREAT, 0644);
    cr_assert(fd >= 0);
    static uint8_t data[64][512];
    int res[64];
    nraw = 0;
    for (int i = 0; i < 64; i++) {
        memset(data[i], i, sizeof(data[i]));
        cr_assert_eq(uring_write(small, fd, data[i], sizeof(data[i]), (uint64_t)i * 512, on_raw,
                                 &res[i]),
                     0);
    }
    cr_assert(uring_inflight(small) > 2);
    run_until(&nraw, 64);
    for (int i = 0; i < 64; i++)
        cr_assert_eq(res[i], 512);
    int sres = 1;
    cr_assert_eq(uring_fdatasync(small, fd, on_raw, &sres), 0);
    run_until(&nraw, 65);
    cr_assert_eq(sres, 0);

    /* a read across the end of the file returns what exists */
    static uint8_t back[1024];
    cr_assert_eq(uring_read(small, fd, back, sizeof(back), 63 * 512, on_raw, &res[0]), 0);
    run_until(&nraw, 66);
    cr_assert_eq(res[0], 512);
    cr_assert_eq(back[0], 63);

    /* close runs the callbacks of what is still in flight */
    nraw = 0;
    for (int i = 0; i < 10; i++)
        cr_assert_eq(uring_read(small, fd, data[i], 512, (uint64_t)i * 512, on_raw, &res[i]), 0);
    uring_close(small);
    cr_assert_eq(nraw, 10);
    for (int i = 0; i < 10; i++)
        cr_assert_eq(res[i], 512);
    close(fd);

    /* the synchronous calls */
    fd = open(p, O_RDWR);
    cr_assert_eq(uring_pwrite_sync(fd, "abcdef", 6, 40000), 6);
    cr_assert_eq(uring_fdatasync_sync(fd), 0);
    char got[16] = {0};
    cr_assert_eq(uring_pread_sync(fd, got, sizeof(got), 40000), 6);
    cr_assert_str_eq(got, "abcdef");
    cr_assert_eq(uring_pread_sync(-1, got, 1, 0), -EINVAL);
    close(fd);
}
