/* fuzz_recovery.c - libFuzzer harness: block recovery (block_open) fed
 * arbitrary block, index and meta files.
 *
 * Input layout (fuzz.h cursor):
 *   u8    flags: bit 0 prepends a valid superblock to the block file,
 *                bit 1 a valid header to the index file,
 *                bit 2 takes the meta file from the input (else a valid one)
 *   part  index file bytes (u16 length prefix)
 *   part  meta file bytes (only with bit 2)
 *   rest  block file bytes
 * The valid superblock, index header and meta are those block_create wrote
 * for block 1 (1 MiB) when the harness started, so half the inputs get past
 * the superblock check and reach the index loader and the record scanner.
 *
 * Properties: recovery never crashes nor reads out of bounds (ASan); when it
 * succeeds, the tail is aligned and inside the file (or, for a corrupt and
 * sealed block, at the file size rounded up to 8), every indexed record
 * lies between the superblock and the tail, and opening the block again
 * succeeds with the same tail and file count (recovery is idempotent). */
#include "base/err.h"
#include "dataserver/block.h"
#include "tests/fuzz/fuzz.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#define FUZZ_BLOCK_ID 1
#define FUZZ_BLOCK_SIZE (1u << 20)
#define FUZZ_MAX_CHECKED_SEQS 100000u

static char blocks_dir[128];
static char blk_path[256], idx_path[256], meta_path[256];
static uint8_t super[BLOCK_SUPER_SIZE];
static uint8_t idx_header[INDEX_HEADER_SIZE];
static char meta_text[4096];
static size_t meta_len;

static size_t read_file(const char *path, void *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    FUZZ_CHECK(fd >= 0);
    ssize_t n = read(fd, buf, cap);
    FUZZ_CHECK(n >= 0);
    close(fd);
    return (size_t)n;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    setenv("IMGSTORE_LOG", "off", 1);
    snprintf(blocks_dir, sizeof(blocks_dir), "%s/blocks", fuzz_tmpdir());
    FUZZ_CHECK(mkdir(blocks_dir, 0755) == 0);
    struct block *b = NULL;
    FUZZ_CHECK(block_create(blocks_dir, 0, FUZZ_BLOCK_ID, FUZZ_BLOCK_SIZE, 1, NULL, 0, &b) == 0);
    block_close(b);
    snprintf(blk_path, sizeof(blk_path), "%s/%016x.blk", blocks_dir, FUZZ_BLOCK_ID);
    snprintf(idx_path, sizeof(idx_path), "%s/%016x.idx", blocks_dir, FUZZ_BLOCK_ID);
    snprintf(meta_path, sizeof(meta_path), "%s/%016x.meta", blocks_dir, FUZZ_BLOCK_ID);
    FUZZ_CHECK(read_file(blk_path, super, sizeof(super)) == sizeof(super));
    FUZZ_CHECK(read_file(idx_path, idx_header, sizeof(idx_header)) == sizeof(idx_header));
    meta_len = read_file(meta_path, meta_text, sizeof(meta_text));
    return 0;
}

static void check_block(struct block *b)
{
    struct stat st;
    FUZZ_CHECK(fstat(b->fd, &st) == 0);
    FUZZ_CHECK(b->tail >= BLOCK_SUPER_SIZE && b->tail % NEEDLE_ALIGN == 0);
    /* The tail is inside the file, except after a header that is not a
     * record: the block is then corrupt and sealed, nothing after the bad
     * header is touched, and the tail is the file size rounded up to 8. */
    uint64_t size8 = ((uint64_t)st.st_size + NEEDLE_ALIGN - 1) / NEEDLE_ALIGN * NEEDLE_ALIGN;
    FUZZ_CHECK(b->tail <= size8);
    FUZZ_CHECK(b->tail <= (uint64_t)st.st_size || (b->corrupt && b->sealed));
    FUZZ_CHECK(b->durable_tail == b->tail);
    FUZZ_CHECK(b->next_seq >= 1);
    uint32_t max = b->ix.max_seq < FUZZ_MAX_CHECKED_SEQS ? b->ix.max_seq : FUZZ_MAX_CHECKED_SEQS;
    for (uint32_t seq = 1; seq <= max; seq++) {
        uint64_t off;
        uint32_t size;
        int rc = block_lookup(b, seq, &off, &size);
        FUZZ_CHECK(rc == 0 || rc == IMG_ENOTFOUND || rc == IMG_EDELETED);
        if (rc != 0)
            continue;
        FUZZ_CHECK(size <= NEEDLE_MAX_DATA);
        FUZZ_CHECK(off >= BLOCK_SUPER_SIZE && off % NEEDLE_ALIGN == 0);
        FUZZ_CHECK(off + needle_record_size(size) <= b->tail);
        FUZZ_CHECK(seq < b->next_seq);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    uint8_t flags = fuzz_u8(&in);
    size_t idx_len, meta_in_len = 0;
    const uint8_t *idx = fuzz_part(&in, &idx_len);
    const uint8_t *meta = (flags & 4) ? fuzz_part(&in, &meta_in_len) : NULL;
    if (flags & 1)
        fuzz_write_file(blk_path, super, sizeof(super), in.p, in.left);
    else
        fuzz_write_file(blk_path, in.p, in.left, NULL, 0);
    if (flags & 2)
        fuzz_write_file(idx_path, idx_header, sizeof(idx_header), idx, idx_len);
    else
        fuzz_write_file(idx_path, idx, idx_len, NULL, 0);
    if (meta)
        fuzz_write_file(meta_path, meta, meta_in_len, NULL, 0);
    else
        fuzz_write_file(meta_path, meta_text, meta_len, NULL, 0);

    struct block *b = NULL;
    int rc = block_open(blocks_dir, 0, FUZZ_BLOCK_ID, &b);
    if (rc != 0) {
        FUZZ_CHECK(b == NULL);
        return 0;
    }
    check_block(b);
    uint64_t tail = b->tail;
    uint32_t files = block_file_count(b);
    block_close(b);

    b = NULL;
    rc = block_open(blocks_dir, 0, FUZZ_BLOCK_ID, &b);
    FUZZ_CHECK(rc == 0);
    check_block(b);
    FUZZ_CHECK(b->tail == tail);
    FUZZ_CHECK(block_file_count(b) == files);
    block_close(b);
    return 0;
}
