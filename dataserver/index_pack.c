/* index_pack.c - packed index files (index_pack.h).
 *
 * Version 1 (read only):
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
 * Version 2 (written), little-endian:
 *   0      8    magic "IMGIDZ2\0"
 *   8      8    block id
 *   16     8    tail: block offset after the last record when written
 *   24     4    n: index file entries it stands for
 *   28     4    npacked (a multiple of 64)
 *   32     4    max_seq
 *   36     4    live
 *   40     4    next_seq
 *   44     4    bits_len
 *   48     8    deleted_bytes
 *   56     12   the n-th entry of the index file, as it holds it
 *   68     4    CRC32C of the payload (as decoded)
 *   72     4    frame: 0 when the payload follows as it is, else the length
 *                of the one zstd frame (codec.c) it was stored as
 *   76     4    CRC32C of bytes 0..75
 *   80     ...  payload: npacked / 64 + 1 groups of 24 bytes {base u32,
 *                pos u32, step u32, w_off u8, w_slack u8, zero u16,
 *                deleted u64} (struct index_group), then bits_len bytes of
 *                bit fields (index.h); or its zstd frame, kept only when it
 *                saves CODEC_MIN_SAVING_PCT (regular layouts: equal sizes
 *                pack ~23x further; random sizes' bit fields do not)
 *
 * index_pack_load and index_pack_write do the file I/O (plain reads of the
 * index file, fs_write_atomic); only version 2 is written. May call base/,
 * codec.c, index.h and needle.h. */
#include "dataserver/index_pack.h"

#include "base/crc32c.h"
#include "base/err.h"
#include "base/fsutil.h"
#include "base/le.h"
#include "dataserver/codec.h"
#include "dataserver/index.h"
#include "dataserver/needle.h"

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

#define V2_OFF_TAIL 16
#define V2_OFF_N 24
#define V2_OFF_NPACKED 28
#define V2_OFF_MAX_SEQ 32
#define V2_OFF_LIVE 36
#define V2_OFF_NEXT_SEQ 40
#define V2_OFF_BITS_LEN 44
#define V2_OFF_DELETED_BYTES 48
#define V2_OFF_LAST 56
#define V2_OFF_PCRC 68
#define V2_OFF_FRAME 72
#define V2_OFF_HCRC 76
#define V2_GROUP_SIZE 24
#define BITS_PAD 8 /* as index.c: zero bytes after the last field */

_Static_assert(V2_OFF_HCRC + 4 == INDEX_PACK2_HEADER_SIZE, "version 2 header fields");
_Static_assert(V2_OFF_LAST + INDEX_ENTRY_SIZE == V2_OFF_PCRC, "the last entry fits");
_Static_assert(sizeof(INDEX_PACK2_MAGIC) == 8, "magic with its NUL fills 8 bytes");

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

/* Writes ix and *meta as version 2 (index_pack_write). */
static int save_v2(const char *path, uint64_t id, const struct index *ix,
                   const struct index_pack_meta *meta)
{
    if (ix->npacked == 0 || ix->cap != 0 || ix->plain || ix->max_seq >= ix->npacked ||
        ix->bits_len > UINT32_MAX)
        return IMG_EINVAL;
    size_t ng = (size_t)ix->npacked / INDEX_GROUP + 1;
    size_t len = INDEX_PACK2_HEADER_SIZE + ng * V2_GROUP_SIZE + ix->bits_len;
    uint8_t *buf = calloc(1, len);
    if (!buf)
        return -ENOMEM;
    uint8_t *p = buf + INDEX_PACK2_HEADER_SIZE;
    for (size_t j = 0; j < ng; j++, p += V2_GROUP_SIZE) {
        const struct index_group *g = &ix->groups[j];
        le_put32(p, g->base);
        le_put32(p + 4, g->pos);
        le_put32(p + 8, g->step);
        p[12] = g->w_off;
        p[13] = g->w_slack;
        le_put64(p + 16, g->deleted);
    }
    if (ix->bits_len)
        memcpy(p, ix->bits, ix->bits_len);
    memcpy(buf, INDEX_PACK2_MAGIC, sizeof(INDEX_PACK2_MAGIC));
    le_put64(buf + IP_OFF_ID, id);
    le_put64(buf + V2_OFF_TAIL, meta->tail);
    le_put32(buf + V2_OFF_N, meta->n);
    le_put32(buf + V2_OFF_NPACKED, ix->npacked);
    le_put32(buf + V2_OFF_MAX_SEQ, ix->max_seq);
    le_put32(buf + V2_OFF_LIVE, ix->live);
    le_put32(buf + V2_OFF_NEXT_SEQ, meta->next_seq);
    le_put32(buf + V2_OFF_BITS_LEN, (uint32_t)ix->bits_len);
    le_put64(buf + V2_OFF_DELETED_BYTES, meta->deleted_bytes);
    memcpy(buf + V2_OFF_LAST, meta->last, INDEX_ENTRY_SIZE);
    size_t plen = len - INDEX_PACK2_HEADER_SIZE;
    le_put32(buf + V2_OFF_PCRC, crc32c(0, buf + INDEX_PACK2_HEADER_SIZE, plen));
    /* The payload as one zstd frame when that saves enough (codec.c). */
    uint8_t *frame = NULL;
    uint32_t flen = 0;
    int rc = plen <= UINT32_MAX ? codec_encode(buf + INDEX_PACK2_HEADER_SIZE, (uint32_t)plen,
                                               INDEX_PACK2_LEVEL, &frame, &flen)
                                : 1;
    if (rc < 0) {
        free(buf);
        return rc;
    }
    if (rc == 0) {
        memcpy(buf + INDEX_PACK2_HEADER_SIZE, frame, flen); /* flen < plen */
        free(frame);
        len = INDEX_PACK2_HEADER_SIZE + flen;
        le_put32(buf + V2_OFF_FRAME, flen);
    }
    le_put32(buf + V2_OFF_HCRC, crc32c(0, buf, V2_OFF_HCRC));
    rc = fs_write_atomic(path, buf, len);
    free(buf);
    return rc;
}

/* Decodes a version 2 packed index (hostile) into *ix and *meta. Returns
 * 0 or IMG_EFORMAT / -ENOMEM (*ix untouched). */
static int decode_v2(const uint8_t *in, size_t len, uint64_t id, uint32_t max_n,
                     uint32_t seq_max, uint64_t file_size, struct index *ix,
                     struct index_pack_meta *meta)
{
    if (len < INDEX_PACK2_HEADER_SIZE || memcmp(in, INDEX_PACK2_MAGIC, sizeof(INDEX_PACK2_MAGIC)) ||
        le_get32(in + V2_OFF_HCRC) != crc32c(0, in, V2_OFF_HCRC) ||
        le_get64(in + IP_OFF_ID) != id)
        return IMG_EFORMAT;
    struct index_pack_meta m = {.n = le_get32(in + V2_OFF_N),
                                .tail = le_get64(in + V2_OFF_TAIL),
                                .next_seq = le_get32(in + V2_OFF_NEXT_SEQ),
                                .deleted_bytes = le_get64(in + V2_OFF_DELETED_BYTES)};
    memcpy(m.last, in + V2_OFF_LAST, INDEX_ENTRY_SIZE);
    uint32_t seq, size;
    uint64_t off;
    int tomb;
    index_decode_entry(m.last, &seq, &off, &size, &tomb);
    if (seq == 0 || seq > seq_max || off < INDEX_PACK_FIRST_OFF8 * NEEDLE_ALIGN ||
        size > NEEDLE_MAX_DATA || (tomb && size != 0) || off + needle_record_size(size) > file_size)
        return IMG_EFORMAT; /* the checks every entry of the index file gets (block.c) */
    uint32_t npacked = le_get32(in + V2_OFF_NPACKED), bits_len = le_get32(in + V2_OFF_BITS_LEN);
    uint32_t flen = le_get32(in + V2_OFF_FRAME);
    uint64_t ng = (uint64_t)npacked / INDEX_GROUP + 1;
    uint64_t plen = ng * V2_GROUP_SIZE + bits_len;
    /* Seqs are bounded by the block's size, not by the entries: a
     * compacted block keeps its files' seqs with holes between them. At
     * most 64 bits of fields per seq (index.h), so a frame never makes us
     * allocate more than a plain payload of the block could be. */
    if (m.n == 0 || m.n > max_n || m.tail > file_size || m.deleted_bytes > file_size ||
        npacked % INDEX_GROUP != 0 || npacked > (uint64_t)seq_max + INDEX_GROUP ||
        m.next_seq > (uint64_t)seq_max + 1 || bits_len > (uint64_t)npacked * 8 ||
        (flen == 0 ? len != INDEX_PACK2_HEADER_SIZE + plen
                   : len != INDEX_PACK2_HEADER_SIZE + (uint64_t)flen || flen >= plen))
        return IMG_EFORMAT;
    const uint8_t *payload = in + INDEX_PACK2_HEADER_SIZE;
    uint8_t *decoded = NULL;
    if (flen != 0) {
        decoded = malloc((size_t)plen);
        if (!decoded)
            return -ENOMEM;
        int rc = codec_unframe(payload, flen, decoded, (uint32_t)plen);
        if (rc != 0) {
            free(decoded);
            return rc == -ENOMEM ? rc : IMG_EFORMAT;
        }
        payload = decoded;
    }
    if (le_get32(in + V2_OFF_PCRC) != crc32c(0, payload, (size_t)plen)) {
        free(decoded);
        return IMG_EFORMAT;
    }
    struct index t;
    index_init(&t);
    t.groups = malloc((size_t)ng * sizeof(*t.groups));
    t.bits = t.groups ? calloc(1, (size_t)bits_len + BITS_PAD) : NULL;
    if (!t.bits) {
        index_free(&t);
        free(decoded);
        return -ENOMEM;
    }
    const uint8_t *p = payload;
    for (uint64_t j = 0; j < ng; j++, p += V2_GROUP_SIZE)
        t.groups[j] = (struct index_group){.base = le_get32(p),
                                           .pos = le_get32(p + 4),
                                           .step = le_get32(p + 8),
                                           .w_off = p[12],
                                           .w_slack = p[13],
                                           .zero = le_get16(p + 14),
                                           .deleted = le_get64(p + 16)};
    memcpy(t.bits, p, bits_len);
    free(decoded);
    t.npacked = npacked;
    t.groups_cap = (uint32_t)ng;
    t.bits_len = bits_len;
    t.bits_cap = (size_t)bits_len + BITS_PAD;
    t.max_seq = le_get32(in + V2_OFF_MAX_SEQ);
    t.live = le_get32(in + V2_OFF_LIVE);
    if (index_check_packed(&t, INDEX_PACK_FIRST_OFF8, m.tail / NEEDLE_ALIGN) != 0 ||
        m.next_seq <= t.max_seq) {
        index_free(&t);
        return IMG_EFORMAT;
    }
    *ix = t;
    *meta = m;
    return 0;
}

int index_pack_load(const char *path, uint64_t id, int idx_fd, uint64_t idx_size, uint32_t max_n,
                    uint64_t file_size, uint8_t **entries, uint32_t *n, struct index *ix,
                    struct index_pack_meta *meta)
{
    uint64_t held = idx_size > INDEX_HEADER_SIZE ? (idx_size - INDEX_HEADER_SIZE) / INDEX_ENTRY_SIZE
                                                 : 0;
    if (held < INDEX_PACK_MIN_ENTRIES)
        return -ENOENT;
    uint32_t seq_max = max_n;
    *n = 0;
    *entries = NULL;
    if (held < max_n)
        max_n = (uint32_t)held;
    char *data = NULL;
    size_t len = 0;
    /* Version 1 is at most a frame of the entries it stands for; version 2
     * at most a group header per 64 seqs and two 32-bit fields per seq, and
     * seqs may far outnumber entries (a compacted block keeps its files'
     * seqs): bounded by the block's size, as a plain index of it would be. */
    uint64_t v1max = INDEX_PACK_HEADER_SIZE + ZSTD_compressBound(held * INDEX_ENTRY_SIZE);
    uint64_t v2max = INDEX_PACK2_HEADER_SIZE + ((uint64_t)seq_max / INDEX_GROUP + 2) * V2_GROUP_SIZE +
                     (uint64_t)seq_max * 8;
    int rc = fs_read_all(path, (size_t)(v1max > v2max ? v1max : v2max), &data, &len);
    if (rc == -EFBIG)
        return IMG_EFORMAT;
    if (rc != 0)
        return rc;
    const uint8_t *in = (const uint8_t *)data;
    *entries = NULL;
    if (len >= sizeof(INDEX_PACK2_MAGIC) && memcmp(in, INDEX_PACK2_MAGIC, sizeof(INDEX_PACK2_MAGIC)) == 0) {
        rc = decode_v2(in, len, id, max_n, seq_max, file_size, ix, meta);
        /* The index file must still hold the entry it ends with. */
        uint8_t last[INDEX_ENTRY_SIZE];
        if (rc == 0 && (pread(idx_fd, last, sizeof(last),
                              (off_t)(INDEX_HEADER_SIZE + ((uint64_t)meta->n - 1) * INDEX_ENTRY_SIZE)) !=
                            (ssize_t)sizeof(last) ||
                        memcmp(last, meta->last, sizeof(last)) != 0)) {
            index_free(ix);
            rc = IMG_EFORMAT;
        }
        if (rc == 0)
            *n = meta->n;
    } else {
        rc = index_pack_decode(in, len, id, max_n, file_size, entries, n);
    }
    free(data);
    if (rc != 0)
        *n = 0; /* *entries is only set on success */
    return rc;
}

int index_pack_write(const char *path, uint64_t id, int idx_fd, const struct index *ix,
                     const struct index_pack_meta *meta, uint32_t *packed)
{
    struct stat st;
    if (ix->npacked == 0 || ix->cap != 0 || ix->plain)
        return 0; /* never packed whole (index.h): nothing to write */
    if (fstat(idx_fd, &st) < 0)
        return -errno;
    if (st.st_size <= INDEX_HEADER_SIZE)
        return 0;
    uint64_t held = ((uint64_t)st.st_size - INDEX_HEADER_SIZE) / INDEX_ENTRY_SIZE;
    if (held < INDEX_PACK_MIN_ENTRIES || held > UINT32_MAX / INDEX_ENTRY_SIZE ||
        held < (uint64_t)*packed + INDEX_PACK_MIN_ENTRIES)
        return 0;
    struct index_pack_meta m = *meta;
    m.n = (uint32_t)held;
    ssize_t r = pread(idx_fd, m.last, sizeof(m.last),
                      (off_t)(INDEX_HEADER_SIZE + (held - 1) * INDEX_ENTRY_SIZE));
    if (r != (ssize_t)sizeof(m.last))
        return r < 0 ? -errno : -EIO;
    int rc = save_v2(path, id, ix, &m);
    if (rc == 0)
        *packed = m.n;
    return rc;
}
