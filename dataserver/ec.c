/* ec.c - erasure coding of sealed blocks: cutting a block into data shards
 * at record boundaries, Reed-Solomon encoding and range decoding with ISA-L
 * (Cauchy matrix), and the shard header (format in ec.h and
 * docs/storage.md). Pure computation on caller buffers: no files, no libuv.
 * Calls base/ (CRC32C, little-endian fields) and ISA-L only. */
#include "dataserver/ec.h"

#include "base/crc32c.h"
#include "base/err.h"
#include "base/le.h"

#include <errno.h>
#include <isa-l/erasure_code.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

const char *ec_why_str(enum ec_why why)
{
    switch (why) {
    case EC_OK: return "ok";
    case EC_WHY_SHORT: return "header truncated";
    case EC_WHY_MAGIC: return "bad magic";
    case EC_WHY_VERSION: return "unknown version";
    case EC_WHY_SCHEME: return "unknown k+m scheme";
    case EC_WHY_INDEX: return "shard index out of range";
    case EC_WHY_LENGTH: return "shard length, chunk count or header length inconsistent";
    case EC_WHY_RESERVED: return "reserved bytes not zero";
    case EC_WHY_CRC: return "header CRC mismatch";
    case EC_WHY_EXTENTS: return "bad data extents";
    case EC_WHY_BLOCK: return "shard of another block";
    }
    return "unknown reason";
}

int ec_scheme_check(unsigned k, unsigned m)
{
    if ((k == 4 && m == 2) || (k == 6 && m == 3) || (k == 10 && m == 4))
        return 0;
    return IMG_EINVAL;
}

int ec_scheme_parse(const char *s, unsigned *k, unsigned *m)
{
    static const struct { const char *name; unsigned k, m; } schemes[] = {
        {"4+2", 4, 2}, {"6+3", 6, 3}, {"10+4", 10, 4},
    };
    if (!s)
        return IMG_EINVAL;
    for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++)
        if (strcmp(s, schemes[i].name) == 0) {
            *k = schemes[i].k;
            *m = schemes[i].m;
            return 0;
        }
    return IMG_EINVAL;
}

static uint64_t round_up(uint64_t v, uint64_t a)
{
    return (v + a - 1) / a * a;
}

static uint32_t chunk_count(uint64_t L)
{
    return (uint32_t)((L + EC_CHUNK - 1) / EC_CHUNK);
}

int ec_cut(uint64_t block_len, uint64_t first, const struct ec_rec *recs, size_t n,
           unsigned k, struct ec_extent *ext, uint64_t *L)
{
    if (k < 1 || k > EC_MAX_K || block_len == 0 || first > block_len)
        return IMG_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (recs[i].off < first || recs[i].off >= block_len ||
            (i > 0 && recs[i].off <= recs[i - 1].off) || recs[i].seq == 0)
            return IMG_EINVAL;
    uint64_t b[EC_MAX_K + 1];
    b[0] = 0;
    b[k] = block_len;
    size_t r = 0;
    for (unsigned i = 1; i < k; i++) {
        /* floor(i * block_len / k) without overflow */
        uint64_t target = block_len / k * i + block_len % k * i / k;
        while (r < n && recs[r].off < target)
            r++;
        b[i] = r < n ? recs[r].off : block_len;
    }
    uint64_t longest = 0;
    size_t j = 0;
    for (unsigned i = 0; i < k; i++) {
        ext[i].start = b[i];
        ext[i].end = b[i + 1];
        ext[i].first_seq = 0;
        ext[i].last_seq = 0;
        for (; j < n && recs[j].off < b[i + 1]; j++) {
            if (recs[j].tomb)
                continue;
            uint32_t s = recs[j].seq;
            if (ext[i].first_seq == 0 || s < ext[i].first_seq)
                ext[i].first_seq = s;
            if (s > ext[i].last_seq)
                ext[i].last_seq = s;
        }
        if (b[i + 1] - b[i] > longest)
            longest = b[i + 1] - b[i];
    }
    uint64_t l = round_up(longest, EC_ALIGN);
    if (l < EC_ALIGN)
        l = EC_ALIGN;
    if (l > EC_MAX_L)
        return IMG_EINVAL;
    *L = l;
    return 0;
}

int ec_locate(const struct ec_hdr *h, uint64_t off, uint64_t len, unsigned *shard,
              uint64_t *shard_off)
{
    if (len == 0 || off >= h->block_len || len > h->block_len - off)
        return IMG_EINVAL;
    for (unsigned i = 0; i < h->k; i++) {
        const struct ec_extent *e = &h->ext[i];
        if (off >= e->start && off < e->end) {
            if (len > e->end - off)
                return IMG_EINVAL;
            *shard = i;
            *shard_off = off - e->start;
            return 0;
        }
    }
    return IMG_EINVAL;
}

int ec_codec_init(struct ec_codec *c, unsigned k, unsigned m)
{
    if (ec_scheme_check(k, m) != 0)
        return IMG_EINVAL;
    memset(c, 0, sizeof(*c));
    c->k = k;
    c->m = m;
    gf_gen_cauchy1_matrix(c->matrix, (int)(k + m), (int)k);
    ec_init_tables((int)k, (int)m, &c->matrix[k * k], c->tbls);
    return 0;
}

void ec_codec_encode(const struct ec_codec *c, size_t len, const uint8_t *const *data,
                     uint8_t *const *parity)
{
    if (len == 0)
        return;
    ec_encode_data((int)len, (int)c->k, (int)c->m, (unsigned char *)c->tbls,
                   (unsigned char **)data, (unsigned char **)parity);
}

int ec_codec_decode(const struct ec_codec *c, size_t len, const uint8_t *have,
                    const uint8_t *const *src, const uint8_t *want, unsigned nwant,
                    uint8_t *const *out)
{
    unsigned k = c->k, n = c->k + c->m;
    if (nwant < 1 || nwant > n)
        return IMG_EINVAL;
    bool seen[EC_MAX_SHARDS] = {false};
    for (unsigned i = 0; i < k; i++) {
        if (have[i] >= n || seen[have[i]])
            return IMG_EINVAL;
        seen[have[i]] = true;
    }
    bool wseen[EC_MAX_SHARDS] = {false};
    for (unsigned i = 0; i < nwant; i++) {
        if (want[i] >= n || wseen[want[i]])
            return IMG_EINVAL;
        wseen[want[i]] = true;
    }
    uint8_t sub[EC_MAX_K * EC_MAX_K], inv[EC_MAX_K * EC_MAX_K];
    for (unsigned i = 0; i < k; i++)
        memcpy(&sub[i * k], &c->matrix[have[i] * k], k);
    if (gf_invert_matrix(sub, inv, (int)k) != 0)
        return IMG_EINVAL; /* cannot happen with a Cauchy matrix */
    uint8_t rows[EC_MAX_SHARDS * EC_MAX_K];
    for (unsigned w = 0; w < nwant; w++) {
        uint8_t *row = &rows[w * k];
        if (want[w] < k) {
            memcpy(row, &inv[want[w] * k], k);
            continue;
        }
        const uint8_t *enc = &c->matrix[want[w] * k];
        for (unsigned j = 0; j < k; j++) {
            uint8_t s = 0;
            for (unsigned l = 0; l < k; l++)
                s ^= gf_mul(enc[l], inv[l * k + j]);
            row[j] = s;
        }
    }
    if (len == 0)
        return 0;
    uint8_t tbls[32 * EC_MAX_K * EC_MAX_SHARDS];
    ec_init_tables((int)k, (int)nwant, rows, tbls);
    ec_encode_data((int)len, (int)k, (int)nwant, tbls, (unsigned char **)src,
                   (unsigned char **)out);
    return 0;
}

size_t ec_hdr_size(unsigned k, uint64_t L)
{
    uint64_t raw = EC_HDR_FIXED + (uint64_t)EC_EXTENT_SIZE * k + 4ull * chunk_count(L) + 4;
    return (size_t)round_up(raw, EC_ALIGN);
}

void ec_chunk_crcs(const uint8_t *payload, uint64_t L, uint32_t *crc)
{
    uint32_t n = chunk_count(L);
    for (uint32_t i = 0; i < n; i++) {
        uint64_t off = (uint64_t)i * EC_CHUNK;
        uint64_t len = L - off < EC_CHUNK ? L - off : EC_CHUNK;
        crc[i] = crc32c(0, payload + off, (size_t)len);
    }
}

int ec_verify_chunks(const struct ec_hdr *h, const uint8_t *bytes, uint64_t off,
                     uint64_t len, uint32_t *bad_chunk)
{
    if (off % EC_CHUNK != 0 || off > h->L || len > h->L - off ||
        (len % EC_CHUNK != 0 && off + len != h->L))
        return IMG_EINVAL;
    for (uint64_t p = 0; p < len; p += EC_CHUNK) {
        uint64_t n = len - p < EC_CHUNK ? len - p : EC_CHUNK;
        uint32_t c = (uint32_t)((off + p) / EC_CHUNK);
        if (crc32c(0, bytes + p, (size_t)n) != h->chunk_crc[c]) {
            if (bad_chunk)
                *bad_chunk = c;
            return IMG_ECORRUPT;
        }
    }
    return 0;
}

/* The checks of the fields that do not need the chunk table or extents. */
static enum ec_why check_fixed(unsigned k, unsigned m, unsigned index, uint64_t L,
                               uint64_t block_len, uint32_t nchunks)
{
    if (ec_scheme_check(k, m) != 0)
        return EC_WHY_SCHEME;
    if (index >= k + m)
        return EC_WHY_INDEX;
    if (L < EC_ALIGN || L % EC_ALIGN != 0 || L > EC_MAX_L || nchunks != chunk_count(L) ||
        block_len == 0 || block_len > L * k)
        return EC_WHY_LENGTH;
    return EC_OK;
}

static enum ec_why check_extents(const struct ec_hdr *h)
{
    uint64_t longest = 0;
    for (unsigned i = 0; i < h->k; i++) {
        const struct ec_extent *e = &h->ext[i];
        uint64_t want_start = i == 0 ? 0 : h->ext[i - 1].end;
        if (e->start != want_start || e->end < e->start || e->end - e->start > h->L)
            return EC_WHY_EXTENTS;
        if ((e->first_seq == 0) != (e->last_seq == 0) || e->first_seq > e->last_seq)
            return EC_WHY_EXTENTS;
        if (e->end - e->start > longest)
            longest = e->end - e->start;
    }
    if (h->ext[h->k - 1].end != h->block_len)
        return EC_WHY_EXTENTS;
    uint64_t l = round_up(longest, EC_ALIGN);
    if ((l < EC_ALIGN ? EC_ALIGN : l) != h->L)
        return EC_WHY_LENGTH;
    return EC_OK;
}

int ec_hdr_encode(const struct ec_hdr *h, uint8_t *out, size_t outlen)
{
    if (check_fixed(h->k, h->m, h->index, h->L, h->block_len, h->nchunks) != EC_OK ||
        check_extents(h) != EC_OK || !h->chunk_crc)
        return IMG_EINVAL;
    size_t size = ec_hdr_size(h->k, h->L);
    if (outlen < size)
        return IMG_EINVAL;
    memset(out, 0, size);
    memcpy(out, EC_MAGIC, sizeof(EC_MAGIC)); /* 7 chars and the NUL */
    le_put32(out + 8, EC_VERSION);
    out[12] = h->k;
    out[13] = h->m;
    out[14] = h->index;
    le_put64(out + 16, h->block_id);
    le_put64(out + 24, h->L);
    le_put64(out + 32, h->block_len);
    le_put32(out + 40, h->nchunks);
    le_put32(out + 44, (uint32_t)size);
    le_put32(out + 48, h->gen);
    uint8_t *p = out + EC_HDR_FIXED;
    for (unsigned i = 0; i < h->k; i++, p += EC_EXTENT_SIZE) {
        le_put64(p, h->ext[i].start);
        le_put64(p + 8, h->ext[i].end);
        le_put32(p + 16, h->ext[i].first_seq);
        le_put32(p + 20, h->ext[i].last_seq);
    }
    for (uint32_t i = 0; i < h->nchunks; i++, p += 4)
        le_put32(p, h->chunk_crc[i]);
    le_put32(p, crc32c(0, out, (size_t)(p - out)));
    return 0;
}

int ec_hdr_peek(const uint8_t *in, size_t len, size_t *hdr_len, enum ec_why *why)
{
    enum ec_why w = EC_OK;
    if (len < EC_HDR_FIXED)
        w = EC_WHY_SHORT;
    else if (memcmp(in, EC_MAGIC, sizeof(EC_MAGIC)) != 0)
        w = EC_WHY_MAGIC;
    else if (le_get32(in + 8) != EC_VERSION)
        w = EC_WHY_VERSION;
    else if (in[15] != 0)
        w = EC_WHY_RESERVED;
    else {
        for (int i = 52; i < EC_HDR_FIXED; i++)
            if (in[i] != 0)
                w = EC_WHY_RESERVED;
    }
    if (w == EC_OK)
        w = check_fixed(in[12], in[13], in[14], le_get64(in + 24), le_get64(in + 32),
                        le_get32(in + 40));
    if (w == EC_OK && le_get32(in + 44) != ec_hdr_size(in[12], le_get64(in + 24)))
        w = EC_WHY_LENGTH;
    *why = w;
    if (w != EC_OK)
        return IMG_EFORMAT;
    *hdr_len = le_get32(in + 44);
    return 0;
}

int ec_hdr_parse(const uint8_t *in, size_t len, uint64_t expect_id, struct ec_hdr *h,
                 enum ec_why *why)
{
    size_t size;
    memset(h, 0, sizeof(*h));
    int rc = ec_hdr_peek(in, len, &size, why);
    if (rc != 0)
        return rc;
    if (len < size) {
        *why = EC_WHY_SHORT;
        return IMG_EFORMAT;
    }
    h->k = in[12];
    h->m = in[13];
    h->index = in[14];
    h->block_id = le_get64(in + 16);
    h->L = le_get64(in + 24);
    h->block_len = le_get64(in + 32);
    h->nchunks = le_get32(in + 40);
    h->gen = le_get32(in + 48);
    const uint8_t *p = in + EC_HDR_FIXED;
    for (unsigned i = 0; i < h->k; i++, p += EC_EXTENT_SIZE) {
        h->ext[i].start = le_get64(p);
        h->ext[i].end = le_get64(p + 8);
        h->ext[i].first_seq = le_get32(p + 16);
        h->ext[i].last_seq = le_get32(p + 20);
    }
    const uint8_t *crcs = p;
    p += 4ull * h->nchunks;
    if (le_get32(p) != crc32c(0, in, (size_t)(p - in))) {
        *why = EC_WHY_CRC;
        return IMG_ECORRUPT;
    }
    for (const uint8_t *z = p + 4; z < in + size; z++)
        if (*z != 0) {
            *why = EC_WHY_RESERVED;
            return IMG_EFORMAT;
        }
    enum ec_why w = check_extents(h);
    if (w == EC_OK && expect_id != UINT64_MAX && h->block_id != expect_id)
        w = EC_WHY_BLOCK;
    if (w != EC_OK) {
        *why = w;
        return IMG_EFORMAT;
    }
    h->chunk_crc = malloc(4ull * h->nchunks);
    if (!h->chunk_crc) {
        *why = EC_OK;
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < h->nchunks; i++)
        h->chunk_crc[i] = le_get32(crcs + 4ull * i);
    *why = EC_OK;
    return 0;
}

void ec_hdr_free(struct ec_hdr *h)
{
    free(h->chunk_crc);
    h->chunk_crc = NULL;
}
