/* index_pack.c - packed index files (index_pack.h).
 *
 *   offset size field
 *   0      8    magic "IMGIDZ1\0"
 *   8      8    block id
 *   16     8    end: block offset after the last entry's record
 *   24     4    n: entries
 *   28     4    CRC32C of the n entries as the index file holds them
 *   32     4    frame length
 *   36     4    CRC32C of bytes 0..35
 *   40     ...  one zstd frame of 12 * n bytes: n seq deltas, n offset/8
 *                deltas, n size fields (u32 little-endian each, deltas
 *                modulo 2^32 from the previous entry, the first from 0)
 *
 * index_pack_load and index_pack_write do the file I/O (plain reads of the
 * index file, fs_write_atomic). May call base/, codec.c and index.h. */
#include "dataserver/index_pack.h"

#include "base/crc32c.h"
#include "base/err.h"
#include "base/fsutil.h"
#include "base/le.h"
#include "dataserver/codec.h"
#include "dataserver/index.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#define IP_OFF_ID 8
#define IP_OFF_END 16
#define IP_OFF_N 24
#define IP_OFF_CRC 28
#define IP_OFF_FRAME 32
#define IP_OFF_HCRC 36

_Static_assert(IP_OFF_HCRC + 4 == INDEX_PACK_HEADER_SIZE, "packed index header fields");
_Static_assert(INDEX_ENTRY_SIZE == 12, "three u32 columns");

int index_pack_encode(uint64_t id, uint64_t end, const uint8_t *entries, uint32_t n,
                      uint8_t **out, size_t *out_len)
{
    if (n == 0 || n > UINT32_MAX / INDEX_ENTRY_SIZE)
        return IMG_EINVAL;
    size_t raw = (size_t)n * INDEX_ENTRY_SIZE;
    uint8_t *cols = malloc(raw);
    size_t cap = INDEX_PACK_HEADER_SIZE + ZSTD_compressBound(raw);
    uint8_t *buf = cols ? malloc(cap) : NULL;
    if (!buf) {
        free(cols);
        return -ENOMEM;
    }
    uint32_t prev[3] = {0, 0, 0};
    for (uint32_t i = 0; i < n; i++)
        for (int c = 0; c < 3; c++) {
            uint32_t v = le_get32(entries + (size_t)i * INDEX_ENTRY_SIZE + 4 * (size_t)c);
            le_put32(cols + ((size_t)c * n + i) * 4, c < 2 ? v - prev[c] : v);
            prev[c] = v;
        }
    size_t fl = ZSTD_compress(buf + INDEX_PACK_HEADER_SIZE, cap - INDEX_PACK_HEADER_SIZE, cols, raw,
                              INDEX_PACK_LEVEL);
    free(cols);
    if (ZSTD_isError(fl)) {
        free(buf);
        return -ENOMEM;
    }
    memset(buf, 0, INDEX_PACK_HEADER_SIZE);
    memcpy(buf, INDEX_PACK_MAGIC, sizeof(INDEX_PACK_MAGIC));
    le_put64(buf + IP_OFF_ID, id);
    le_put64(buf + IP_OFF_END, end);
    le_put32(buf + IP_OFF_N, n);
    le_put32(buf + IP_OFF_CRC, crc32c(0, entries, raw));
    le_put32(buf + IP_OFF_FRAME, (uint32_t)fl);
    le_put32(buf + IP_OFF_HCRC, crc32c(0, buf, IP_OFF_HCRC));
    *out = buf;
    *out_len = INDEX_PACK_HEADER_SIZE + fl;
    return 0;
}

int index_pack_decode(const uint8_t *in, size_t len, uint64_t id, uint32_t max_n,
                      uint64_t file_size, uint8_t **entries, uint32_t *n)
{
    if (len < INDEX_PACK_HEADER_SIZE || memcmp(in, INDEX_PACK_MAGIC, sizeof(INDEX_PACK_MAGIC)) ||
        le_get32(in + IP_OFF_HCRC) != crc32c(0, in, IP_OFF_HCRC) || le_get64(in + IP_OFF_ID) != id)
        return IMG_EFORMAT;
    uint32_t cnt = le_get32(in + IP_OFF_N);
    uint64_t end = le_get64(in + IP_OFF_END);
    if (cnt == 0 || cnt > max_n || cnt > UINT32_MAX / INDEX_ENTRY_SIZE || end > file_size ||
        le_get32(in + IP_OFF_FRAME) != len - INDEX_PACK_HEADER_SIZE)
        return IMG_EFORMAT;
    size_t raw = (size_t)cnt * INDEX_ENTRY_SIZE;
    uint8_t *cols = malloc(raw);
    uint8_t *ent = cols ? malloc(raw) : NULL;
    if (!ent) {
        free(cols);
        return -ENOMEM;
    }
    int rc = codec_unframe(in + INDEX_PACK_HEADER_SIZE, (uint32_t)(len - INDEX_PACK_HEADER_SIZE),
                           cols, (uint32_t)raw);
    if (rc == 0) {
        uint32_t prev[3] = {0, 0, 0};
        for (uint32_t i = 0; i < cnt; i++)
            for (int c = 0; c < 3; c++) {
                uint32_t v = le_get32(cols + ((size_t)c * cnt + i) * 4);
                prev[c] = c < 2 ? prev[c] + v : v;
                le_put32(ent + (size_t)i * INDEX_ENTRY_SIZE + 4 * (size_t)c, prev[c]);
            }
        if (crc32c(0, ent, raw) != le_get32(in + IP_OFF_CRC))
            rc = IMG_EFORMAT;
    }
    free(cols);
    if (rc != 0) {
        free(ent);
        return rc == -ENOMEM ? rc : IMG_EFORMAT;
    }
    *entries = ent;
    *n = cnt;
    return 0;
}

int index_pack_load(const char *path, uint64_t id, uint64_t idx_size, uint32_t max_n,
                    uint64_t file_size, uint8_t **entries, uint32_t *n)
{
    uint64_t held = idx_size > INDEX_HEADER_SIZE ? (idx_size - INDEX_HEADER_SIZE) / INDEX_ENTRY_SIZE
                                                 : 0;
    if (held < INDEX_PACK_MIN_ENTRIES)
        return -ENOENT;
    if (held < max_n)
        max_n = (uint32_t)held;
    char *data = NULL;
    size_t len = 0;
    int rc = fs_read_all(path, INDEX_PACK_HEADER_SIZE + ZSTD_compressBound(held * INDEX_ENTRY_SIZE),
                         &data, &len);
    if (rc == -EFBIG)
        return IMG_EFORMAT;
    if (rc != 0)
        return rc;
    rc = index_pack_decode((const uint8_t *)data, len, id, max_n, file_size, entries, n);
    free(data);
    return rc;
}

int index_pack_write(const char *path, uint64_t id, int idx_fd, uint64_t end, uint32_t *packed)
{
    struct stat st;
    if (fstat(idx_fd, &st) < 0)
        return -errno;
    if (st.st_size <= INDEX_HEADER_SIZE)
        return 0;
    uint64_t held = ((uint64_t)st.st_size - INDEX_HEADER_SIZE) / INDEX_ENTRY_SIZE;
    if (held < INDEX_PACK_MIN_ENTRIES || held > UINT32_MAX / INDEX_ENTRY_SIZE ||
        held < (uint64_t)*packed + INDEX_PACK_MIN_ENTRIES)
        return 0;
    size_t raw = (size_t)held * INDEX_ENTRY_SIZE, len = 0;
    uint8_t *ent = malloc(raw), *out = NULL;
    if (!ent)
        return -ENOMEM;
    int rc = 0;
    for (size_t got = 0; rc == 0 && got < raw;) {
        ssize_t r = pread(idx_fd, ent + got, raw - got, (off_t)(INDEX_HEADER_SIZE + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            rc = r < 0 ? -errno : -EIO;
        else
            got += (size_t)r;
    }
    if (rc == 0)
        rc = index_pack_encode(id, end, ent, (uint32_t)held, &out, &len);
    if (rc == 0)
        rc = fs_write_atomic(path, out, len);
    if (rc == 0)
        *packed = (uint32_t)held;
    free(ent);
    free(out);
    return rc;
}
