/* mkblocks.c - writes a dataserver data folder full of small files, fast.
 *
 *   mkblocks --dir DIR --files N [--size BYTES] [--block-size BYTES]
 *            [--first-id ID]
 *
 * For the RAM-per-file and restart rows of `make bench`: uploading 10
 * million files through the cluster would take far longer than the suite
 * may run, so this writes what those uploads would leave on disk, with the
 * storage engine's own code: block_create (superblock, empty index, meta),
 * needle_build for every record and index_encode_entry for every index
 * entry, appended in large sequential writes. Blocks are filled as
 * block_reserve would fill them (up to the tombstone reserve) and sealed;
 * the folder gets a SERVER_ID and each block names that server as its only
 * replica (primary). Cookies are random, as in real uploads.
 *
 * Prints "files=N blocks=B blk_bytes=X idx_bytes=Y payload_bytes=Z" and
 * "name=NAME" for the last file written (a file a restarted server must
 * serve). Exit status 0, or 1 with one line on stderr. */
#include "base/err.h"
#include "bench/bench_io.h"
#include "dataserver/block.h"
#include "dataserver/index.h"
#include "dataserver/needle.h"
#include "proto/fname.h"
#include "proto/mime.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (8u << 20)        /* bytes of records written at once */
#define DEFAULT_SIZE 8          /* bytes of data per file */
#define DEFAULT_BLOCK (64u << 20)
#define SERVER_ID_HEX 32
#define FAKE_ADDR "127.0.0.1:1" /* replica address in the meta; never dialled */

static uint64_t rng_state;

static uint64_t rnd(void)
{
    uint64_t z = (rng_state += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

static int die(const char *what, int err)
{
    fprintf(stderr, "mkblocks: %s: %s\n", what, img_strerror(err));
    return 1;
}

static int pwrite_all(int fd, const void *buf, size_t len, off_t off)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t w = pwrite(fd, p, len, off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        p += w;
        off += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Reads DIR/SERVER_ID or creates it. */
static int server_id(const char *dir, char id[SERVER_ID_HEX + 1])
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/SERVER_ID", dir);
    FILE *fp = fopen(path, "r");
    if (fp) {
        int ok = fscanf(fp, "%32s", id) == 1 && strlen(id) == SERVER_ID_HEX;
        fclose(fp);
        return ok ? 0 : IMG_EFORMAT;
    }
    for (int i = 0; i < SERVER_ID_HEX; i++)
        id[i] = "0123456789abcdef"[rnd() & 15];
    id[SERVER_ID_HEX] = '\0';
    fp = fopen(path, "w");
    if (!fp)
        return -errno;
    fprintf(fp, "%s\n", id);
    return fclose(fp) == 0 ? 0 : -errno;
}

struct totals {
    uint64_t files, blk, idx, payload;
    char last_name[FNAME_LEN + 1];
};

/* Writes one sealed block holding `nfiles` files of `size` bytes. */
static int write_block(const char *blocks_dir, uint64_t id, uint64_t max_size, uint32_t size,
                       uint32_t nfiles, const struct block_replica *self, struct totals *t)
{
    struct block *b = NULL;
    int rc = block_create(blocks_dir, 0, id, max_size, 1, self, 1, &b);
    if (rc != 0)
        return rc;
    uint32_t rec_len = (uint32_t)needle_record_size(size);
    uint8_t *buf = malloc(CHUNK), *ibuf = malloc((CHUNK / rec_len + 1) * INDEX_ENTRY_SIZE);
    uint8_t *data = calloc(1, size ? size : 1);
    if (!buf || !ibuf || !data) {
        rc = -ENOMEM;
        goto out;
    }
    uint64_t off = BLOCK_SUPER_SIZE;
    uint32_t now = (uint32_t)time(NULL), cookie = 0;
    size_t used = 0, iused = 0;
    uint64_t chunk_off = off;
    for (uint32_t seq = 1; seq <= nfiles; seq++) {
        if (used + rec_len > CHUNK) {
            if ((rc = pwrite_all(b->fd, buf, used, (off_t)chunk_off)) != 0 ||
                (rc = bench_write_all(b->idx_fd, ibuf, iused)) != 0)
                goto out;
            chunk_off = off;
            used = iused = 0;
        }
        if (size >= 8) {
            uint64_t v = ((uint64_t)id << 32) | seq;
            memcpy(data, &v, 8);
        }
        cookie = (uint32_t)rnd();
        struct needle_header h = {.mime = (uint8_t)mime_from_type("image/jpeg"),
                                  .seq = seq,
                                  .cookie = cookie,
                                  .ctime = now};
        needle_build(buf + used, &h, data, size);
        index_encode_entry(seq, off, size, 0, ibuf + iused);
        used += rec_len;
        iused += INDEX_ENTRY_SIZE;
        off += rec_len;
    }
    if ((rc = pwrite_all(b->fd, buf, used, (off_t)chunk_off)) != 0 ||
        (rc = bench_write_all(b->idx_fd, ibuf, iused)) != 0)
        goto out;
    b->sealed = 1;
    if ((rc = block_save_meta(b)) != 0)
        goto out;
    struct fname f = {.block_id = id, .seq = nfiles, .cookie = cookie};
    if (nfiles > 0)
        fname_encode(&f, t->last_name);
    t->files += nfiles;
    t->blk += off;
    t->idx += INDEX_HEADER_SIZE + (uint64_t)nfiles * INDEX_ENTRY_SIZE;
    t->payload += (uint64_t)nfiles * size;
out:
    free(buf);
    free(ibuf);
    free(data);
    block_close(b);
    return rc;
}

int main(int argc, char **argv)
{
    const char *dir = NULL;
    uint64_t nfiles = 0, max_size = DEFAULT_BLOCK, first_id = 1;
    uint32_t size = DEFAULT_SIZE;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--dir") == 0)
            dir = argv[i + 1];
        else if (strcmp(argv[i], "--files") == 0)
            nfiles = strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--size") == 0)
            size = (uint32_t)strtoul(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--block-size") == 0)
            max_size = strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--first-id") == 0)
            first_id = strtoull(argv[i + 1], NULL, 10);
        else
            break;
    }
    if (!dir || nfiles == 0 || size > NEEDLE_MAX_DATA || first_id == 0) {
        fprintf(stderr, "usage: mkblocks --dir DIR --files N [--size BYTES] "
                        "[--block-size BYTES] [--first-id ID]\n");
        return 2;
    }
    if (getrandom(&rng_state, sizeof(rng_state), 0) != sizeof(rng_state))
        rng_state = (uint64_t)time(NULL);
    char blocks_dir[4200];
    snprintf(blocks_dir, sizeof(blocks_dir), "%s/blocks", dir);
    if ((mkdir(dir, 0755) != 0 && errno != EEXIST) ||
        (mkdir(blocks_dir, 0755) != 0 && errno != EEXIST))
        return die(dir, -errno);
    struct block_replica self = {0};
    int rc = server_id(dir, self.server_id);
    if (rc != 0)
        return die("SERVER_ID", rc);
    snprintf(self.addr, sizeof(self.addr), "%s", FAKE_ADDR);
    snprintf(self.http_addr, sizeof(self.http_addr), "%s", FAKE_ADDR);
    uint64_t rec = needle_record_size(size);
    uint64_t per_block = (max_size - BLOCK_TOMBSTONE_RESERVE - BLOCK_SUPER_SIZE) / rec;
    if (per_block > max_size / NEEDLE_HEADER_SIZE)
        per_block = max_size / NEEDLE_HEADER_SIZE;
    struct totals t = {0};
    uint64_t id = first_id, blocks = 0;
    for (uint64_t left = nfiles; left > 0; id++, blocks++) {
        uint32_t n = (uint32_t)(left < per_block ? left : per_block);
        rc = write_block(blocks_dir, id, max_size, size, n, &self, &t);
        if (rc != 0)
            return die("writing a block", rc);
        left -= n;
    }
    printf("files=%" PRIu64 " blocks=%" PRIu64 " blk_bytes=%" PRIu64 " idx_bytes=%" PRIu64
           " payload_bytes=%" PRIu64 "\nname=%s\n",
           t.files, blocks, t.blk, t.idx, t.payload, t.last_name);
    return 0;
}
