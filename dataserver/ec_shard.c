/* ec_shard.c - shard files of erasure-coded blocks: the record table, the
 * checked write of a whole shard file, opening and reading one, the
 * staging and cutover of a compaction's next generation, tombstone files,
 * building a stripe (formats in ec_shard.h and docs/storage.md). Storage engine: calls ec.c, needle.h
 * constants, base/ (CRC32C, little-endian fields, fs helpers); blocking
 * file I/O, run off the event loop by its callers. */
#include "dataserver/ec_shard.h"

#include "base/crc32c.h"
#include "base/hexid.h"
#include "base/err.h"
#include "base/fsutil.h"
#include "base/le.h"
#include "dataserver/needle.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- record table ------------------------------------------------------------ */

int ec_table_encode(const struct ec_tent *e, size_t n, uint8_t **out, size_t *len)
{
    if (n > EC_TABLE_MAX)
        return IMG_EINVAL;
    size_t l = EC_TABLE_HEAD + EC_TABLE_ENTRY * n + 4;
    uint8_t *b = calloc(1, l);
    if (!b)
        return -ENOMEM;
    memcpy(b, EC_TABLE_MAGIC, sizeof(EC_TABLE_MAGIC));
    le_put32(b + 8, (uint32_t)n);
    uint8_t *p = b + EC_TABLE_HEAD;
    for (size_t i = 0; i < n; i++, p += EC_TABLE_ENTRY) {
        if (e[i].seq == 0 || (i > 0 && e[i].seq <= e[i - 1].seq) || e[i].off % NEEDLE_ALIGN ||
            e[i].off / NEEDLE_ALIGN > UINT32_MAX || e[i].size > NEEDLE_MAX_DATA) {
            free(b);
            return IMG_EINVAL;
        }
        le_put32(p, e[i].seq);
        le_put32(p + 4, e[i].cookie);
        le_put32(p + 8, (uint32_t)(e[i].off / NEEDLE_ALIGN));
        le_put32(p + 12, e[i].size | (e[i].deleted ? EC_TABLE_DELETED : 0));
    }
    le_put32(p, crc32c(0, b, (size_t)(p - b)));
    *out = b;
    *len = l;
    return 0;
}

int ec_table_parse(const uint8_t *in, size_t len, uint64_t block_len, struct ec_tent **e,
                   size_t *n)
{
    *e = NULL;
    *n = 0;
    if (len < EC_TABLE_HEAD + 4 || memcmp(in, EC_TABLE_MAGIC, sizeof(EC_TABLE_MAGIC)) != 0 ||
        le_get32(in + 12) != 0)
        return IMG_EFORMAT;
    uint32_t cnt = le_get32(in + 8);
    if (cnt > EC_TABLE_MAX || len != EC_TABLE_HEAD + (size_t)EC_TABLE_ENTRY * cnt + 4)
        return IMG_EFORMAT;
    if (le_get32(in + len - 4) != crc32c(0, in, len - 4))
        return IMG_ECORRUPT;
    struct ec_tent *t = calloc(cnt ? cnt : 1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    const uint8_t *p = in + EC_TABLE_HEAD;
    for (uint32_t i = 0; i < cnt; i++, p += EC_TABLE_ENTRY) {
        uint32_t sz = le_get32(p + 12);
        t[i] = (struct ec_tent){.seq = le_get32(p), .cookie = le_get32(p + 4),
                                .off = (uint64_t)le_get32(p + 8) * NEEDLE_ALIGN,
                                .size = sz & ~EC_TABLE_DELETED,
                                .deleted = (sz & EC_TABLE_DELETED) != 0};
        if (t[i].seq == 0 || (i > 0 && t[i].seq <= t[i - 1].seq) ||
            t[i].size > NEEDLE_MAX_DATA || t[i].off >= block_len ||
            needle_record_size(t[i].size) > block_len - t[i].off) {
            free(t);
            return IMG_EFORMAT;
        }
    }
    *e = t;
    *n = cnt;
    return 0;
}

const struct ec_tent *ec_table_find(const struct ec_tent *e, size_t n, uint32_t seq)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (e[mid].seq == seq)
            return &e[mid];
        if (e[mid].seq < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* ---- whole shard files -------------------------------------------------------- */

void ec_shard_path(const char *blocks_dir, uint64_t id, unsigned index, char *out, size_t n)
{
    snprintf(out, n, "%s/%016" PRIx64 ".s%02u", blocks_dir, id, index);
}

int ec_shard_name(const char *name, uint64_t *id, unsigned *index)
{
    uint64_t v = 0;
    if (!hexid_u64(name, &v))
        return -1;
    const char *s = name + 16;
    if (s[0] != '.' || s[1] != 's' || s[2] < '0' || s[2] > '9' || s[3] < '0' || s[3] > '9' ||
        s[4] != '\0')
        return -1;
    unsigned ix = (unsigned)(s[2] - '0') * 10 + (unsigned)(s[3] - '0');
    if (ix >= EC_MAX_SHARDS)
        return -1;
    *id = v;
    *index = ix;
    return 0;
}

int ec_shard_check(const uint8_t *bytes, size_t len, uint64_t id, unsigned index,
                   struct ec_hdr *h, size_t *hdr_len)
{
    enum ec_why why;
    int rc = ec_hdr_parse(bytes, len, id, h, &why);
    if (rc != 0)
        return rc;
    *hdr_len = ec_hdr_size(h->k, h->L);
    if (h->index != index || len < *hdr_len + h->L) {
        ec_hdr_free(h);
        return IMG_EFORMAT;
    }
    rc = ec_verify_chunks(h, bytes + *hdr_len, 0, h->L, NULL);
    if (rc == 0) {
        struct ec_tent *t;
        size_t n;
        rc = ec_table_parse(bytes + *hdr_len + h->L, len - *hdr_len - h->L, h->block_len, &t,
                            &n);
        free(t);
    }
    if (rc != 0)
        ec_hdr_free(h);
    return rc;
}

int ec_shard_write(const char *blocks_dir, uint64_t id, unsigned index, const uint8_t *bytes,
                   size_t len)
{
    struct ec_hdr h;
    size_t hl;
    int rc = ec_shard_check(bytes, len, id, index, &h, &hl);
    if (rc != 0)
        return rc;
    ec_hdr_free(&h);
    char path[512];
    ec_shard_path(blocks_dir, id, index, path, sizeof(path));
    if (access(path, F_OK) == 0)
        return IMG_EEXIST;
    return fs_write_atomic(path, bytes, len);
}

void ec_shard_next_path(const char *blocks_dir, uint64_t id, unsigned index, char *out,
                        size_t n)
{
    snprintf(out, n, "%s/%016" PRIx64 ".s%02u" EC_NEXT_SUFFIX, blocks_dir, id, index);
}

int ec_shard_stage(const char *blocks_dir, uint64_t id, unsigned index, uint32_t gen,
                   const uint8_t *bytes, size_t len)
{
    struct ec_hdr h;
    size_t hl;
    int rc = ec_shard_check(bytes, len, id, index, &h, &hl);
    if (rc != 0)
        return rc;
    uint32_t got = h.gen;
    ec_hdr_free(&h);
    if (got != gen)
        return IMG_EINVAL;
    char path[512];
    ec_shard_next_path(blocks_dir, id, index, path, sizeof(path));
    return fs_write_atomic(path, bytes, len);
}

/* The generation of the shard file at path when it opens with its checks
 * for block id and shard index: 0 with *gen, or the open's error
 * (IMG_EINVAL for another block or index). */
static int file_gen(const char *path, uint64_t id, unsigned index, uint32_t *gen)
{
    struct ec_shard s;
    int rc = ec_shard_open(path, &s);
    if (rc != 0)
        return rc;
    rc = s.h.block_id == id && s.h.index == index ? 0 : IMG_EINVAL;
    *gen = s.h.gen;
    ec_shard_close(&s);
    return rc;
}

int ec_shard_commit(const char *blocks_dir, uint64_t id, unsigned index, uint32_t gen)
{
    char next[512], path[512];
    ec_shard_next_path(blocks_dir, id, index, next, sizeof(next));
    ec_shard_path(blocks_dir, id, index, path, sizeof(path));
    uint32_t g;
    int rc = file_gen(next, id, index, &g);
    if (rc == -ENOENT) {
        rc = file_gen(path, id, index, &g);
        return rc != 0 ? rc : g == gen ? 0 : -ENOENT;
    }
    if (rc != 0)
        return rc;
    if (g != gen)
        return IMG_EINVAL;
    if (rename(next, path) != 0)
        return -errno;
    return fs_sync_dir(blocks_dir);
}

int ec_shard_unstage(const char *blocks_dir, uint64_t id, unsigned index)
{
    char next[512];
    ec_shard_next_path(blocks_dir, id, index, next, sizeof(next));
    if (unlink(next) != 0)
        return errno == ENOENT ? 0 : -errno;
    return fs_sync_dir(blocks_dir);
}

static int pread_full(int fd, void *buf, size_t len, uint64_t off)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(fd, (uint8_t *)buf + done, len - done, (off_t)(off + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return IMG_EFORMAT; /* shorter than its header says */
        done += (size_t)n;
    }
    return 0;
}

int ec_shard_open(const char *path, struct ec_shard *s)
{
    memset(s, 0, sizeof(*s));
    s->fd = -1;
    if (snprintf(s->path, sizeof(s->path), "%s", path) >= (int)sizeof(s->path))
        return -ENAMETOOLONG;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    uint8_t fixed[EC_HDR_FIXED];
    uint8_t *hdr = NULL, *tab = NULL;
    enum ec_why why;
    size_t hl = 0;
    int rc = fstat(fd, &st) < 0 ? -errno : 0;
    if (rc == 0)
        rc = pread_full(fd, fixed, sizeof(fixed), 0);
    if (rc == 0)
        rc = ec_hdr_peek(fixed, sizeof(fixed), &hl, &why);
    if (rc == 0 && !(hdr = malloc(hl)))
        rc = -ENOMEM;
    if (rc == 0)
        rc = pread_full(fd, hdr, hl, 0);
    if (rc == 0)
        rc = ec_hdr_parse(hdr, hl, UINT64_MAX, &s->h, &why);
    free(hdr);
    uint64_t tab_off = hl + s->h.L;
    if (rc == 0 && ((uint64_t)st.st_size < tab_off + EC_TABLE_HEAD + 4 ||
                    (uint64_t)st.st_size - tab_off > EC_TABLE_HEAD + 4 +
                                                         (uint64_t)EC_TABLE_ENTRY * EC_TABLE_MAX))
        rc = IMG_EFORMAT;
    size_t tl = rc == 0 ? (size_t)((uint64_t)st.st_size - tab_off) : 0;
    if (rc == 0 && !(tab = malloc(tl)))
        rc = -ENOMEM;
    if (rc == 0)
        rc = pread_full(fd, tab, tl, tab_off);
    if (rc == 0)
        rc = ec_table_parse(tab, tl, s->h.block_len, &s->tab, &s->ntab);
    free(tab);
    if (rc != 0) {
        ec_hdr_free(&s->h);
        close(fd);
        return rc;
    }
    s->fd = fd;
    s->hdr_len = hl;
    s->file_size = (uint64_t)st.st_size;
    return 0;
}

int ec_shard_pread(const struct ec_shard *s, uint64_t off, uint64_t len, uint8_t *buf,
                   int check)
{
    if (len == 0 || off > s->h.L || len > s->h.L - off)
        return IMG_EINVAL;
    if (!check)
        return pread_full(s->fd, buf, (size_t)len, s->hdr_len + off);
    /* Read the whole chunks the range touches, check them, copy the range. */
    uint64_t c0 = off / EC_CHUNK * EC_CHUNK;
    uint64_t c1 = (off + len + EC_CHUNK - 1) / EC_CHUNK * EC_CHUNK;
    if (c1 > s->h.L)
        c1 = s->h.L;
    uint8_t *tmp = malloc((size_t)(c1 - c0));
    if (!tmp)
        return -ENOMEM;
    int rc = pread_full(s->fd, tmp, (size_t)(c1 - c0), s->hdr_len + c0);
    if (rc == 0)
        rc = ec_verify_chunks(&s->h, tmp, c0, c1 - c0, NULL);
    if (rc == 0)
        memcpy(buf, tmp + (off - c0), (size_t)len);
    free(tmp);
    return rc;
}

int ec_shard_verify(const struct ec_shard *s, uint32_t *bad_chunk)
{
    uint8_t *buf = malloc(EC_CHUNK);
    if (!buf)
        return -ENOMEM;
    int rc = 0;
    for (uint64_t off = 0; off < s->h.L && rc == 0; off += EC_CHUNK) {
        uint64_t n = s->h.L - off < EC_CHUNK ? s->h.L - off : EC_CHUNK;
        rc = pread_full(s->fd, buf, (size_t)n, s->hdr_len + off);
        if (rc == 0)
            rc = ec_verify_chunks(&s->h, buf, off, n, bad_chunk);
    }
    free(buf);
    return rc;
}

size_t ec_shard_meta_len(const struct ec_shard *s)
{
    return (size_t)(s->file_size - s->h.L);
}

int ec_shard_read_meta(const struct ec_shard *s, uint8_t *buf)
{
    int rc = pread_full(s->fd, buf, s->hdr_len, 0);
    if (rc == 0)
        rc = pread_full(s->fd, buf + s->hdr_len,
                        (size_t)(s->file_size - s->hdr_len - s->h.L), s->hdr_len + s->h.L);
    return rc;
}

int ec_shard_meta_header(const uint8_t *meta, size_t meta_len, uint64_t id, struct ec_hdr *h,
                         size_t *hdr_len)
{
    enum ec_why why;
    int rc = ec_hdr_parse(meta, meta_len, id, h, &why);
    if (rc != 0)
        return rc;
    *hdr_len = ec_hdr_size(h->k, h->L);
    if (meta_len < *hdr_len + EC_TABLE_HEAD + 4) {
        ec_hdr_free(h);
        return IMG_EFORMAT;
    }
    return 0;
}

int ec_shard_assemble(const uint8_t *meta, size_t meta_len, uint64_t id, unsigned index,
                      const uint8_t *payload, uint64_t L, uint8_t **out, size_t *out_len)
{
    struct ec_hdr h;
    size_t hl;
    int rc = ec_shard_meta_header(meta, meta_len, id, &h, &hl);
    if (rc != 0)
        return rc;
    if (h.L != L || index >= (unsigned)(h.k + h.m)) {
        ec_hdr_free(&h);
        return IMG_EFORMAT;
    }
    size_t tl = meta_len - hl, len = hl + (size_t)L + tl;
    uint8_t *f = malloc(len);
    if (!f) {
        ec_hdr_free(&h);
        return -ENOMEM;
    }
    h.index = (uint8_t)index;
    ec_chunk_crcs(payload, L, h.chunk_crc);
    rc = ec_hdr_encode(&h, f, hl);
    ec_hdr_free(&h);
    if (rc != 0) {
        free(f);
        return rc;
    }
    memcpy(f + hl, payload, (size_t)L);
    memcpy(f + hl + L, meta + hl, tl);
    *out = f;
    *out_len = len;
    return 0;
}

void ec_shard_close(struct ec_shard *s)
{
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
    ec_hdr_free(&s->h);
    free(s->tab);
    s->tab = NULL;
    s->ntab = 0;
}

/* ---- tombstones ------------------------------------------------------------------ */

static void tomb_path(const char *dir, uint64_t id, char *out, size_t n)
{
    snprintf(out, n, "%s/%016" PRIx64 EC_TOMB_SUFFIX, dir, id);
}

int ec_tomb_append(const char *blocks_dir, uint64_t id, uint32_t seq, uint32_t cookie)
{
    char path[512];
    tomb_path(blocks_dir, id, path, sizeof(path));
    int is_new = access(path, F_OK) != 0;
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    uint8_t e[EC_TOMB_ENTRY] = {0};
    le_put32(e, seq);
    le_put32(e + 4, cookie);
    le_put32(e + 12, crc32c(0, e, 12));
    int rc = fs_write_full(fd, e, sizeof(e));
    if (rc == 0 && fdatasync(fd) != 0)
        rc = -errno;
    close(fd);
    if (rc == 0 && is_new)
        rc = fs_sync_dir(blocks_dir);
    return rc;
}

int ec_tomb_append_n(const char *blocks_dir, uint64_t id, const uint32_t *seqs,
                     const uint32_t *cookies, size_t n)
{
    if (n == 0)
        return 0;
    char path[512];
    tomb_path(blocks_dir, id, path, sizeof(path));
    uint8_t *buf = calloc(n, EC_TOMB_ENTRY);
    if (!buf)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        uint8_t *e = buf + i * EC_TOMB_ENTRY;
        le_put32(e, seqs[i]);
        le_put32(e + 4, cookies[i]);
        le_put32(e + 12, crc32c(0, e, 12));
    }
    int is_new = access(path, F_OK) != 0;
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    int rc = fd < 0 ? -errno : fs_write_full(fd, buf, n * EC_TOMB_ENTRY);
    if (fd >= 0) {
        if (rc == 0 && fdatasync(fd) != 0)
            rc = -errno;
        close(fd);
    }
    free(buf);
    if (rc == 0 && is_new)
        rc = fs_sync_dir(blocks_dir);
    return rc;
}

int ec_tomb_load(const char *blocks_dir, uint64_t id, uint32_t **seqs, size_t *n)
{
    char path[512];
    tomb_path(blocks_dir, id, path, sizeof(path));
    *seqs = NULL;
    *n = 0;
    char *text = NULL;
    size_t len = 0;
    int rc = fs_read_all(path, (size_t)EC_TOMB_ENTRY * EC_TABLE_MAX, &text, &len);
    if (rc == -ENOENT)
        return 0;
    if (rc != 0)
        return rc;
    uint32_t *v = malloc((len / EC_TOMB_ENTRY + 1) * sizeof(*v));
    if (!v) {
        free(text);
        return -ENOMEM;
    }
    const uint8_t *p = (const uint8_t *)text;
    size_t k = 0;
    for (size_t off = 0; off + EC_TOMB_ENTRY <= len; off += EC_TOMB_ENTRY) {
        if (le_get32(p + off + 12) != crc32c(0, p + off, 12) || le_get32(p + off + 8) != 0)
            break; /* torn or damaged: the valid part ends here */
        v[k++] = le_get32(p + off);
    }
    free(text);
    *seqs = v;
    *n = k;
    return 0;
}

/* ---- building a stripe ----------------------------------------------------------- */

void ec_stripe_files_free(struct ec_stripe_files *f)
{
    for (unsigned i = 0; i < EC_MAX_SHARDS; i++) {
        free(f->file[i]);
        f->file[i] = NULL;
    }
}

static int tent_cmp(const void *a, const void *b)
{
    const struct ec_tent *x = a, *y = b;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Scans the records: recs (every record, for the cut) and the table (one
 * entry per file seq, deleted when a tombstone names it). */
static int scan(const uint8_t *blk, uint64_t block_len, uint64_t first, struct ec_rec **recs,
                size_t *nrecs, struct ec_tent **tab, size_t *ntab)
{
    size_t cap = (size_t)((block_len - first) / NEEDLE_HEADER_SIZE) + 1;
    struct ec_rec *r = malloc(cap * sizeof(*r));
    struct ec_tent *t = malloc(cap * sizeof(*t));
    uint32_t *tomb = malloc(cap * sizeof(*tomb));
    size_t nr = 0, nt = 0, nd = 0;
    int rc = r && t && tomb ? 0 : -ENOMEM;
    for (uint64_t off = first; rc == 0 && off < block_len;) {
        struct needle_header h;
        if (block_len - off < NEEDLE_HEADER_SIZE ||
            needle_decode_header(blk + off, &h) != 0) {
            rc = IMG_ECORRUPT;
            break;
        }
        uint64_t rl = needle_record_size(h.size);
        if (rl > block_len - off ||
            crc32c(0, blk + off + NEEDLE_HEADER_SIZE, h.size) != h.data_crc) {
            rc = IMG_ECORRUPT;
            break;
        }
        r[nr++] = (struct ec_rec){.off = off, .seq = h.seq,
                                  .tomb = (h.flags & NEEDLE_FLAG_TOMBSTONE) != 0};
        if (h.flags & NEEDLE_FLAG_TOMBSTONE)
            tomb[nd++] = h.seq;
        else
            t[nt++] = (struct ec_tent){.seq = h.seq, .cookie = h.cookie, .off = off,
                                       .size = h.size};
        off += rl;
    }
    if (rc == 0) {
        qsort(t, nt, sizeof(*t), tent_cmp);
        for (size_t i = 1; i < nt && rc == 0; i++)
            if (t[i].seq == t[i - 1].seq)
                rc = IMG_ECORRUPT; /* one seq twice: not a block we wrote */
        for (size_t i = 0; i < nd && rc == 0; i++) {
            struct ec_tent *e = (struct ec_tent *)ec_table_find(t, nt, tomb[i]);
            if (e)
                e->deleted = 1;
        }
    }
    free(tomb);
    if (rc != 0) {
        free(r);
        free(t);
        return rc;
    }
    *recs = r;
    *nrecs = nr;
    *tab = t;
    *ntab = nt;
    return 0;
}

int ec_stripe_build(const uint8_t *blk, uint64_t block_len, uint64_t first, uint64_t id,
                    unsigned k, unsigned m, struct ec_stripe_files *out)
{
    return ec_stripe_build_gen(blk, block_len, first, id, k, m, 0, out);
}

int ec_stripe_build_gen(const uint8_t *blk, uint64_t block_len, uint64_t first, uint64_t id,
                        unsigned k, unsigned m, uint32_t gen, struct ec_stripe_files *out)
{
    memset(out, 0, sizeof(*out));
    struct ec_codec c;
    if (ec_codec_init(&c, k, m) != 0 || first > block_len)
        return IMG_EINVAL;
    struct ec_rec *recs = NULL;
    struct ec_tent *tab = NULL;
    size_t nrecs = 0, ntab = 0, tlen = 0;
    uint8_t *tbytes = NULL;
    struct ec_hdr h = {.block_id = id, .k = (uint8_t)k, .m = (uint8_t)m,
                       .block_len = block_len, .gen = gen};
    int rc = scan(blk, block_len, first, &recs, &nrecs, &tab, &ntab);
    if (rc == 0)
        rc = ec_cut(block_len, first, recs, nrecs, k, h.ext, &h.L);
    if (rc == 0)
        rc = ec_table_encode(tab, ntab, &tbytes, &tlen);
    for (size_t i = 0; rc == 0 && i < ntab; i++)
        tab[i].deleted ? out->deleted++ : out->files++;
    free(recs);
    free(tab);
    if (rc != 0)
        return rc;
    h.nchunks = (uint32_t)((h.L + EC_CHUNK - 1) / EC_CHUNK);
    size_t hl = ec_hdr_size(k, h.L);
    uint8_t *payload[EC_MAX_SHARDS];
    h.chunk_crc = malloc(4ull * h.nchunks);
    rc = h.chunk_crc ? 0 : -ENOMEM;
    for (unsigned i = 0; rc == 0 && i < k + m; i++) {
        out->len[i] = hl + h.L + tlen;
        out->file[i] = calloc(1, out->len[i]);
        if (!out->file[i]) {
            rc = -ENOMEM;
            break;
        }
        payload[i] = out->file[i] + hl;
        if (i < k)
            memcpy(payload[i], blk + h.ext[i].start, h.ext[i].end - h.ext[i].start);
        memcpy(payload[i] + h.L, tbytes, tlen);
    }
    if (rc == 0)
        ec_codec_encode(&c, h.L, (const uint8_t *const *)payload, &payload[k]);
    for (unsigned i = 0; rc == 0 && i < k + m; i++) {
        h.index = (uint8_t)i;
        ec_chunk_crcs(payload[i], h.L, h.chunk_crc);
        rc = ec_hdr_encode(&h, out->file[i], hl);
    }
    free(tbytes);
    free(h.chunk_crc);
    if (rc != 0) {
        ec_stripe_files_free(out);
        return rc;
    }
    out->k = k;
    out->m = m;
    out->L = h.L;
    return 0;
}
