/* Unit tests of the erasure-coding codec (dataserver/ec.c): cutting a block
 * at record boundaries, encoding, decoding every loss pattern up to m
 * shards (4+2 and 6+3 all, 10+4 sampled) byte-exact, range decoding of
 * single records, chunk CRCs, and shard headers: round trip and every
 * damaged field refused with its own reason; shard files (ec_shard.c):
 * built from a block image, written, opened, every file read back from its
 * data shard, damage found; compaction (ec_compact.c): garbage and the
 * threshold rule, the compacted stripe of the next generation holds every
 * live file byte for byte and no deleted one, survives every loss of up to
 * m shards, and a damaged record or a table that does not fit is refused. */
#include "base/crc32c.h"
#include "base/err.h"
#include "base/le.h"
#include "dataserver/ec.h"
#include "dataserver/ec_compact.h"
#include "dataserver/ec_shard.h"
#include "dataserver/needle.h"
#include "tests/unit/engine_fixture.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SUPER 64u

/* A synthetic block: a 64-byte "superblock" of 0xAB and records of random
 * sizes (a few large ones), every 7th followed by a tombstone. */
struct tblock {
    uint8_t *buf;
    uint64_t len;
    struct ec_rec *recs;
    uint32_t *sizes; /* data bytes of each record (0 for a tombstone) */
    size_t n;
};

static uint32_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return (uint32_t)*s;
}

static void make_block(struct tblock *b, uint64_t cap, uint64_t seed)
{
    b->buf = calloc(1, cap);
    b->recs = calloc(cap / NEEDLE_HEADER_SIZE, sizeof(*b->recs));
    b->sizes = calloc(cap / NEEDLE_HEADER_SIZE, sizeof(*b->sizes));
    cr_assert(b->buf && b->recs && b->sizes);
    memset(b->buf, 0xAB, SUPER);
    uint64_t off = SUPER;
    uint32_t seq = 0;
    b->n = 0;
    uint8_t *data = malloc(300000);
    cr_assert_not_null(data);
    for (;;) {
        uint32_t len = rnd(&seed) % 20 == 0 ? 100000 + rnd(&seed) % 200000
                                              : 1 + rnd(&seed) % 9000;
        bool tomb = seq > 0 && seq % 7 == 0 && b->recs[b->n - 1].tomb == 0;
        uint32_t dlen = tomb ? 0 : len;
        if (off + needle_record_size(dlen) > cap)
            break;
        for (uint32_t i = 0; i < dlen; i++)
            data[i] = (uint8_t)rnd(&seed);
        struct needle_header h = {.flags = NEEDLE_FLAG_HCRC, .mime = 1,
                                  .cookie = 0xc0de0000u + seq, .ctime = 1};
        if (tomb) {
            h.flags |= NEEDLE_FLAG_TOMBSTONE;
            h.seq = seq - 3;
        } else {
            h.seq = ++seq;
        }
        h.cookie = 0xc0de0000u + h.seq;
        needle_build(b->buf + off, &h, data, dlen);
        b->recs[b->n] = (struct ec_rec){.off = off, .seq = h.seq, .tomb = tomb};
        b->sizes[b->n] = dlen;
        b->n++;
        off += needle_record_size(dlen);
    }
    free(data);
    b->len = off;
}

static void free_block(struct tblock *b)
{
    free(b->buf);
    free(b->recs);
    free(b->sizes);
}

/* A stripe built from a block: k data + m parity shard payloads of L bytes. */
struct stripe {
    struct ec_codec c;
    struct ec_hdr h;
    uint8_t *shard[EC_MAX_SHARDS];
};

static void make_stripe(struct stripe *s, const struct tblock *b, unsigned k, unsigned m)
{
    memset(s, 0, sizeof(*s));
    cr_assert_eq(ec_codec_init(&s->c, k, m), 0);
    s->h.block_id = 0x1234;
    s->h.k = (uint8_t)k;
    s->h.m = (uint8_t)m;
    s->h.block_len = b->len;
    cr_assert_eq(ec_cut(b->len, SUPER, b->recs, b->n, k, s->h.ext, &s->h.L), 0);
    cr_assert_eq(s->h.L % EC_ALIGN, 0);
    for (unsigned i = 0; i < k + m; i++) {
        s->shard[i] = calloc(1, s->h.L);
        cr_assert_not_null(s->shard[i]);
    }
    for (unsigned i = 0; i < k; i++)
        memcpy(s->shard[i], b->buf + s->h.ext[i].start, s->h.ext[i].end - s->h.ext[i].start);
    ec_codec_encode(&s->c, s->h.L, (const uint8_t *const *)s->shard, &s->shard[k]);
    s->h.nchunks = (uint32_t)((s->h.L + EC_CHUNK - 1) / EC_CHUNK);
}

static void free_stripe(struct stripe *s)
{
    for (unsigned i = 0; i < EC_MAX_SHARDS; i++)
        free(s->shard[i]);
    ec_hdr_free(&s->h);
}

/* Loses the shards in `lost` (bit mask), decodes them from the first k
 * survivors, and checks every lost shard byte for byte. */
static void check_pattern(const struct stripe *s, uint32_t lost)
{
    unsigned k = s->c.k, n = s->c.k + s->c.m;
    uint8_t have[EC_MAX_K], want[EC_MAX_SHARDS];
    const uint8_t *src[EC_MAX_K];
    uint8_t *out[EC_MAX_SHARDS];
    unsigned nh = 0, nw = 0;
    for (unsigned i = 0; i < n; i++) {
        if (lost & (1u << i)) {
            want[nw] = (uint8_t)i;
            out[nw] = malloc(s->h.L);
            cr_assert_not_null(out[nw]);
            nw++;
        } else if (nh < k) {
            have[nh] = (uint8_t)i;
            src[nh] = s->shard[i];
            nh++;
        }
    }
    cr_assert_eq(nh, k);
    if (nw == 0)
        return;
    cr_assert_eq(ec_codec_decode(&s->c, s->h.L, have, src, want, nw, out), 0);
    for (unsigned w = 0; w < nw; w++) {
        cr_assert_eq(memcmp(out[w], s->shard[want[w]], s->h.L), 0,
                     "k=%u lost mask %#x: shard %u differs", k, lost, want[w]);
        free(out[w]);
    }
}

static unsigned popcount(uint32_t v)
{
    return (unsigned)__builtin_popcount(v);
}

/* Every record lies whole in one data shard, inside its seq range. */
static void check_records(const struct stripe *s, const struct tblock *b)
{
    for (size_t i = 0; i < b->n; i++) {
        unsigned sh;
        uint64_t so;
        uint64_t rl = needle_record_size(b->sizes[i]);
        cr_assert_eq(ec_locate(&s->h, b->recs[i].off, rl, &sh, &so), 0, "record %zu", i);
        cr_assert_eq(memcmp(s->shard[sh] + so, b->buf + b->recs[i].off, rl), 0);
        if (!b->recs[i].tomb) {
            cr_assert_geq(b->recs[i].seq, s->h.ext[sh].first_seq);
            cr_assert_leq(b->recs[i].seq, s->h.ext[sh].last_seq);
        }
    }
}

static void all_patterns(unsigned k, unsigned m, uint64_t cap, unsigned step)
{
    struct tblock b;
    make_block(&b, cap, 0x9e3779b97f4a7c15ull + k);
    struct stripe s;
    make_stripe(&s, &b, k, m);
    check_records(&s, &b);
    unsigned n = k + m, tried = 0, seen = 0;
    for (uint32_t lost = 0; lost < (1u << n); lost++) {
        if (popcount(lost) > m)
            continue;
        if (seen++ % step != 0)
            continue;
        check_pattern(&s, lost);
        tried++;
    }
    cr_log_info("%u+%u: %u loss patterns decoded byte-exact (L=%llu)", k, m, tried,
                (unsigned long long)s.h.L);
    cr_assert_gt(tried, 0);
    free_stripe(&s);
    free_block(&b);
}

Test(ec, every_loss_pattern_4_2)
{
    all_patterns(4, 2, 3u << 20, 1); /* 22 patterns */
}

Test(ec, every_loss_pattern_6_3)
{
    all_patterns(6, 3, 3u << 20, 1); /* 130 patterns */
}

Test(ec, sampled_loss_patterns_10_4)
{
    all_patterns(10, 4, 2u << 20, 7); /* 1471 patterns, every 7th: 211 */
}

/* A degraded read: one record's bytes rebuilt from k other shards by
 * decoding only its range, then checked by needle_verify. */
Test(ec, range_decode_single_records)
{
    struct tblock b;
    make_block(&b, 2u << 20, 42);
    struct stripe s;
    make_stripe(&s, &b, 4, 2);
    for (size_t i = 0; i < b.n; i += 3) {
        if (b.recs[i].tomb)
            continue;
        unsigned sh;
        uint64_t so, rl = needle_record_size(b.sizes[i]);
        cr_assert_eq(ec_locate(&s.h, b.recs[i].off, rl, &sh, &so), 0);
        /* the record's shard and the next one lost */
        uint8_t have[4], want = (uint8_t)sh;
        const uint8_t *src[4];
        unsigned nh = 0;
        for (unsigned j = 0; j < 6 && nh < 4; j++)
            if (j != sh && j != (sh + 1) % 6) {
                have[nh] = (uint8_t)j;
                src[nh++] = s.shard[j] + so;
            }
        uint8_t *out = malloc(rl);
        cr_assert_eq(ec_codec_decode(&s.c, rl, have, src, &want, 1, &out), 0);
        struct needle_header nh2;
        cr_assert_eq(needle_verify(out, rl, b.recs[i].seq, b.recs[i].seq + 0xc0de0000u, &nh2), 0);
        cr_assert_eq(memcmp(out, b.buf + b.recs[i].off, rl), 0);
        free(out);
    }
    free_stripe(&s);
    free_block(&b);
}

Test(ec, decode_refuses_bad_indices)
{
    struct ec_codec c;
    cr_assert_eq(ec_codec_init(&c, 4, 2), 0);
    uint8_t buf[6][64] = {{0}};
    const uint8_t *src[4] = {buf[0], buf[1], buf[2], buf[3]};
    uint8_t *out[2] = {buf[4], buf[5]};
    uint8_t dup[4] = {0, 1, 1, 3}, big[4] = {0, 1, 2, 6}, ok[4] = {0, 1, 2, 5};
    uint8_t want[2] = {3, 4}, wdup[2] = {3, 3}, wbig[1] = {6};
    cr_assert_eq(ec_codec_decode(&c, 64, dup, src, want, 2, out), IMG_EINVAL);
    cr_assert_eq(ec_codec_decode(&c, 64, big, src, want, 2, out), IMG_EINVAL);
    cr_assert_eq(ec_codec_decode(&c, 64, ok, src, wdup, 2, out), IMG_EINVAL);
    cr_assert_eq(ec_codec_decode(&c, 64, ok, src, wbig, 1, out), IMG_EINVAL);
    cr_assert_eq(ec_codec_decode(&c, 64, ok, src, want, 0, out), IMG_EINVAL);
    cr_assert_eq(ec_codec_decode(&c, 64, ok, src, want, 2, out), 0);
    cr_assert_eq(ec_codec_init(&c, 5, 2), IMG_EINVAL);
    cr_assert_eq(ec_codec_init(&c, 4, 3), IMG_EINVAL);
}

Test(ec, schemes)
{
    unsigned k, m;
    cr_assert_eq(ec_scheme_parse("4+2", &k, &m), 0);
    cr_assert(k == 4 && m == 2);
    cr_assert_eq(ec_scheme_parse("6+3", &k, &m), 0);
    cr_assert(k == 6 && m == 3);
    cr_assert_eq(ec_scheme_parse("10+4", &k, &m), 0);
    cr_assert(k == 10 && m == 4);
    cr_assert_eq(ec_scheme_parse("4+1", &k, &m), IMG_EINVAL);
    cr_assert_eq(ec_scheme_parse("4+2 ", &k, &m), IMG_EINVAL);
    cr_assert_eq(ec_scheme_parse("", &k, &m), IMG_EINVAL);
    cr_assert_eq(ec_scheme_parse(NULL, &k, &m), IMG_EINVAL);
}

/* The cutting rule on small hand-made cases. */
Test(ec, cut_boundaries)
{
    struct ec_extent e[EC_MAX_K];
    uint64_t L;
    /* records at 64, 1000, 2000, 3000 in a block of 4000 cut in 4:
     * targets 1000, 2000, 3000 are record starts */
    struct ec_rec r[] = {{64, 1, 0}, {1000, 2, 0}, {2000, 3, 0}, {3000, 4, 0}};
    cr_assert_eq(ec_cut(4000, SUPER, r, 4, 4, e, &L), 0);
    cr_assert(e[0].start == 0 && e[0].end == 1000 && e[0].first_seq == 1 && e[0].last_seq == 1);
    cr_assert(e[1].start == 1000 && e[1].end == 2000 && e[1].first_seq == 2);
    cr_assert(e[3].start == 3000 && e[3].end == 4000 && e[3].last_seq == 4);
    cr_assert_eq(L, EC_ALIGN);
    /* one record covers most of the block: boundaries 1-3 all fall on the
     * next record start, extents 1 and 2 are empty */
    struct ec_rec big[] = {{64, 1, 0}, {9000, 2, 1}};
    cr_assert_eq(ec_cut(10000, SUPER, big, 2, 4, e, &L), 0);
    cr_assert(e[0].end == 9000 && e[1].start == 9000 && e[1].end == 9000);
    cr_assert(e[2].start == 9000 && e[2].end == 9000);
    cr_assert(e[3].start == 9000 && e[3].end == 10000);
    cr_assert(e[3].first_seq == 0 && e[3].last_seq == 0); /* a tombstone only */
    cr_assert(e[0].first_seq == 1 && e[0].last_seq == 1);
    cr_assert_eq(L, 3 * EC_ALIGN);
    /* no records: one extent holds the superblock */
    cr_assert_eq(ec_cut(64, SUPER, NULL, 0, 4, e, &L), 0);
    cr_assert(e[0].end == 64 && e[3].start == 64 && e[3].end == 64);
    /* hostile input */
    struct ec_rec unordered[] = {{1000, 1, 0}, {64, 2, 0}};
    cr_assert_eq(ec_cut(4000, SUPER, unordered, 2, 4, e, &L), IMG_EINVAL);
    struct ec_rec outside[] = {{4000, 1, 0}};
    cr_assert_eq(ec_cut(4000, SUPER, outside, 1, 4, e, &L), IMG_EINVAL);
    struct ec_rec insuper[] = {{8, 1, 0}};
    cr_assert_eq(ec_cut(4000, SUPER, insuper, 1, 4, e, &L), IMG_EINVAL);
    cr_assert_eq(ec_cut(4000, SUPER, r, 4, 11, e, &L), IMG_EINVAL);
    cr_assert_eq(ec_cut(4000, SUPER, r, 4, 0, e, &L), IMG_EINVAL);
    cr_assert_eq(ec_cut(0, SUPER, NULL, 0, 4, e, &L), IMG_EINVAL);
}

/* A valid header for a small stripe in out (allocated); *len its size. */
static uint8_t *good_header(struct stripe *s, struct tblock *b, size_t *len)
{
    make_block(b, 1u << 20, 7);
    make_stripe(s, b, 4, 2);
    s->h.index = 5;
    s->h.chunk_crc = malloc(4ull * s->h.nchunks);
    ec_chunk_crcs(s->shard[5], s->h.L, s->h.chunk_crc);
    *len = ec_hdr_size(4, s->h.L);
    uint8_t *out = malloc(*len);
    cr_assert_eq(ec_hdr_encode(&s->h, out, *len), 0);
    return out;
}

/* The header CRC's offset. */
static size_t crc_pos(const uint8_t *hdr)
{
    return EC_HDR_FIXED + (size_t)EC_EXTENT_SIZE * hdr[12] + 4ull * le_get32(hdr + 40);
}

static void reseal(uint8_t *hdr)
{
    size_t p = crc_pos(hdr);
    le_put32(hdr + p, crc32c(0, hdr, p));
}

static void expect_why(const uint8_t *hdr, size_t len, int rc, enum ec_why why)
{
    struct ec_hdr h;
    enum ec_why w = EC_OK;
    cr_assert_eq(ec_hdr_parse(hdr, len, 0x1234, &h, &w), rc, "rc for %s", ec_why_str(why));
    cr_assert_eq(w, why, "got \"%s\", want \"%s\"", ec_why_str(w), ec_why_str(why));
    cr_assert_null(h.chunk_crc);
}

Test(ec, header_round_trip)
{
    struct tblock b;
    struct stripe s;
    size_t len;
    uint8_t *hdr = good_header(&s, &b, &len);
    cr_assert_eq(len % EC_ALIGN, 0);
    size_t hl;
    enum ec_why w;
    cr_assert_eq(ec_hdr_peek(hdr, EC_HDR_FIXED, &hl, &w), 0);
    cr_assert_eq(hl, len);
    struct ec_hdr h;
    cr_assert_eq(ec_hdr_parse(hdr, len, 0x1234, &h, &w), 0);
    cr_assert_eq(w, EC_OK);
    cr_assert(h.k == 4 && h.m == 2 && h.index == 5 && h.L == s.h.L);
    cr_assert(h.block_len == b.len && h.nchunks == s.h.nchunks);
    cr_assert_eq(memcmp(h.ext, s.h.ext, sizeof(h.ext[0]) * 4), 0);
    cr_assert_eq(memcmp(h.chunk_crc, s.h.chunk_crc, 4ull * h.nchunks), 0);
    ec_hdr_free(&h);
    cr_assert_eq(ec_hdr_parse(hdr, len, UINT64_MAX, &h, &w), 0); /* any block id */
    /* payload checks */
    cr_assert_eq(ec_verify_chunks(&h, s.shard[5], 0, h.L, NULL), 0);
    uint32_t bad = 0;
    s.shard[5][EC_CHUNK + 17] ^= 1;
    cr_assert_eq(ec_verify_chunks(&h, s.shard[5], 0, h.L, &bad), IMG_ECORRUPT);
    cr_assert_eq(bad, 1);
    cr_assert_eq(ec_verify_chunks(&h, s.shard[5], 0, EC_CHUNK, NULL), 0);
    cr_assert_eq(ec_verify_chunks(&h, s.shard[5], 1, EC_CHUNK, NULL), IMG_EINVAL);
    cr_assert_eq(ec_verify_chunks(&h, s.shard[5], 0, h.L + EC_CHUNK, NULL), IMG_EINVAL);
    ec_hdr_free(&h);
    free(hdr);
    free_stripe(&s);
    free_block(&b);
}

Test(ec, damaged_headers_refused)
{
    struct tblock b;
    struct stripe s;
    size_t len;
    uint8_t *good = good_header(&s, &b, &len);
    uint8_t *h = malloc(len);
#define FRESH() memcpy(h, good, len)

    FRESH();
    expect_why(h, EC_HDR_FIXED - 1, IMG_EFORMAT, EC_WHY_SHORT);
    expect_why(h, len - 1, IMG_EFORMAT, EC_WHY_SHORT);
    FRESH(), h[0] = 'X';
    expect_why(h, len, IMG_EFORMAT, EC_WHY_MAGIC);
    FRESH(), le_put32(h + 8, 2);
    expect_why(h, len, IMG_EFORMAT, EC_WHY_VERSION);
    FRESH(), h[12] = 5;
    expect_why(h, len, IMG_EFORMAT, EC_WHY_SCHEME);
    FRESH(), h[13] = 0;
    expect_why(h, len, IMG_EFORMAT, EC_WHY_SCHEME);
    FRESH(), h[14] = 6;
    expect_why(h, len, IMG_EFORMAT, EC_WHY_INDEX);
    FRESH(), h[15] = 1;
    expect_why(h, len, IMG_EFORMAT, EC_WHY_RESERVED);
    FRESH(), h[52] = 1;
    expect_why(h, len, IMG_EFORMAT, EC_WHY_RESERVED);
    FRESH(), h[63] = 1;
    expect_why(h, len, IMG_EFORMAT, EC_WHY_RESERVED);
    FRESH(), le_put64(h + 24, s.h.L + 1);
    expect_why(h, len, IMG_EFORMAT, EC_WHY_LENGTH);
    FRESH(), le_put64(h + 24, UINT64_MAX & ~(uint64_t)(EC_ALIGN - 1));
    expect_why(h, len, IMG_EFORMAT, EC_WHY_LENGTH);
    FRESH(), le_put64(h + 24, 0);
    expect_why(h, len, IMG_EFORMAT, EC_WHY_LENGTH);
    FRESH(), le_put32(h + 40, s.h.nchunks + 1);
    expect_why(h, len, IMG_EFORMAT, EC_WHY_LENGTH);
    FRESH(), le_put32(h + 44, (uint32_t)len + EC_ALIGN);
    expect_why(h, len, IMG_EFORMAT, EC_WHY_LENGTH);
    FRESH(), le_put64(h + 32, 0);
    expect_why(h, len, IMG_EFORMAT, EC_WHY_LENGTH);
    FRESH(), le_put64(h + 32, UINT64_MAX);
    expect_why(h, len, IMG_EFORMAT, EC_WHY_LENGTH);
    /* a flipped bit in an extent or a chunk CRC: the header CRC sees it */
    FRESH(), h[EC_HDR_FIXED + 3] ^= 4;
    expect_why(h, len, IMG_ECORRUPT, EC_WHY_CRC);
    FRESH(), h[crc_pos(h) - 2] ^= 4;
    expect_why(h, len, IMG_ECORRUPT, EC_WHY_CRC);
    FRESH(), h[crc_pos(h)] ^= 4;
    expect_why(h, len, IMG_ECORRUPT, EC_WHY_CRC);
    /* forged headers (CRC recomputed): the semantic checks see them */
    FRESH(), le_put64(h + EC_HDR_FIXED + EC_EXTENT_SIZE, s.h.ext[1].start + 8), reseal(h);
    expect_why(h, len, IMG_EFORMAT, EC_WHY_EXTENTS); /* gap between extents */
    FRESH(), le_put64(h + EC_HDR_FIXED, 8), reseal(h);
    expect_why(h, len, IMG_EFORMAT, EC_WHY_EXTENTS); /* not from 0 */
    FRESH(), le_put64(h + EC_HDR_FIXED + 3 * EC_EXTENT_SIZE + 8, b.len - 8), reseal(h);
    expect_why(h, len, IMG_EFORMAT, EC_WHY_EXTENTS); /* does not end at block_len */
    FRESH(), le_put32(h + EC_HDR_FIXED + 16, 0), reseal(h);
    expect_why(h, len, IMG_EFORMAT, EC_WHY_EXTENTS); /* first seq 0, last not */
    FRESH(), le_put32(h + EC_HDR_FIXED + 16, s.h.ext[0].last_seq + 1), reseal(h);
    expect_why(h, len, IMG_EFORMAT, EC_WHY_EXTENTS); /* first > last */
    /* an extent longer than L: end of extent 0 moved to the block's end */
    FRESH();
    for (unsigned i = 0; i < 4; i++) {
        uint8_t *e = h + EC_HDR_FIXED + i * EC_EXTENT_SIZE;
        le_put64(e, i == 0 ? 0 : b.len);
        le_put64(e + 8, b.len);
    }
    reseal(h);
    expect_why(h, len, IMG_EFORMAT, EC_WHY_EXTENTS);
    /* L larger than the longest extent needs (and header length to match) */
    {
        struct ec_hdr big = s.h;
        big.L += EC_ALIGN;
        big.nchunks = (uint32_t)((big.L + EC_CHUNK - 1) / EC_CHUNK);
        uint32_t *crc = calloc(big.nchunks, 4);
        big.chunk_crc = crc;
        cr_assert_eq(ec_hdr_encode(&big, h, len), IMG_EINVAL); /* encode refuses it too */
        size_t bl = ec_hdr_size(4, big.L);
        uint8_t *bh = calloc(1, bl + len);
        memcpy(bh, good, EC_HDR_FIXED + 4 * EC_EXTENT_SIZE);
        le_put64(bh + 24, big.L);
        le_put32(bh + 40, big.nchunks);
        le_put32(bh + 44, (uint32_t)bl);
        reseal(bh);
        expect_why(bh, bl, IMG_EFORMAT, EC_WHY_LENGTH);
        free(bh);
        free(crc);
    }
    /* non-zero padding after the CRC */
    FRESH(), h[len - 1] = 1;
    expect_why(h, len, IMG_EFORMAT, EC_WHY_RESERVED);
    /* another block's shard */
    FRESH(), le_put64(h + 16, 0x9999), reseal(h);
    expect_why(h, len, IMG_EFORMAT, EC_WHY_BLOCK);
    /* random garbage never crashes and never parses */
    uint64_t seed = 99;
    for (int t = 0; t < 2000; t++) {
        FRESH();
        for (int j = 0; j < 3; j++)
            h[rnd(&seed) % len] ^= (uint8_t)(1 + rnd(&seed) % 255);
        struct ec_hdr x;
        enum ec_why w;
        int rc = ec_hdr_parse(h, len, 0x1234, &x, &w);
        if (memcmp(h, good, len) != 0)
            cr_assert_neq(rc, 0, "damaged header parsed (try %d)", t);
        ec_hdr_free(&x);
    }
#undef FRESH
    free(h);
    free(good);
    free_stripe(&s);
    free_block(&b);
}

/* Encoding throughput of one core, printed (docs/performance.md). */
Test(ec, encode_throughput)
{
    struct ec_codec c;
    cr_assert_eq(ec_codec_init(&c, 4, 2), 0);
    size_t L = 16u << 20;
    uint8_t *sh[6];
    for (int i = 0; i < 6; i++) {
        sh[i] = malloc(L);
        cr_assert_not_null(sh[i]);
        memset(sh[i], i * 37 + 1, L);
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rounds = 8;
    for (int r = 0; r < rounds; r++)
        ec_codec_encode(&c, L, (const uint8_t *const *)sh, &sh[4]);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    double mbs = (double)rounds * 4 * (double)L / (1 << 20) / s;
    fprintf(stderr, "ec 4+2 encode: %.0f MB/s of data per core\n", mbs);
    cr_assert_gt(mbs, 50.0);
    for (int i = 0; i < 6; i++)
        free(sh[i]);
}

/* ---- shard files (ec_shard.c) ---- */

Test(ec, stripe_files_write_open_read)
{
    char dir[64];
    engine_tmpdir(dir, sizeof(dir), "ec");
    struct tblock b;
    make_block(&b, 3u << 20, 5);
    struct ec_stripe_files sf;
    cr_assert_eq(ec_stripe_build(b.buf, b.len, SUPER, 0x77, 4, 2, &sf), 0);
    size_t ntomb = 0;
    for (size_t i = 0; i < b.n; i++)
        ntomb += b.recs[i].tomb;
    cr_assert_eq(sf.files + sf.deleted, b.n - ntomb);
    cr_assert_eq(sf.deleted, ntomb);
    /* a damaged payload byte is refused before anything is written */
    sf.file[2][ec_hdr_size(4, sf.L) + 100] ^= 1;
    cr_assert_eq(ec_shard_write(dir, 0x77, 2, sf.file[2], sf.len[2]), IMG_ECORRUPT);
    sf.file[2][ec_hdr_size(4, sf.L) + 100] ^= 1;
    cr_assert_eq(ec_shard_write(dir, 0x77, 3, sf.file[2], sf.len[2]), IMG_EFORMAT); /* index */
    cr_assert_eq(ec_shard_write(dir, 0x78, 2, sf.file[2], sf.len[2]), IMG_EFORMAT); /* block */
    for (unsigned i = 0; i < 6; i++)
        cr_assert_eq(ec_shard_write(dir, 0x77, i, sf.file[i], sf.len[i]), 0);
    cr_assert_eq(ec_shard_write(dir, 0x77, 0, sf.file[0], sf.len[0]), IMG_EEXIST);
    struct ec_shard sh[6];
    for (unsigned i = 0; i < 6; i++) {
        char p[512];
        ec_shard_path(dir, 0x77, i, p, sizeof(p));
        uint64_t id;
        unsigned ix;
        cr_assert_eq(ec_shard_name(strrchr(p, '/') + 1, &id, &ix), 0);
        cr_assert(id == 0x77 && ix == i);
        cr_assert_eq(ec_shard_open(p, &sh[i]), 0, "shard %u", i);
        cr_assert_eq(ec_shard_verify(&sh[i], NULL), 0);
        cr_assert_eq(sh[i].ntab, sf.files + sf.deleted);
    }
    /* every file read from its data shard, byte-exact and verified */
    for (size_t i = 0; i < b.n; i++) {
        if (b.recs[i].tomb)
            continue;
        const struct ec_tent *e = ec_table_find(sh[5].tab, sh[5].ntab, b.recs[i].seq);
        cr_assert_not_null(e);
        cr_assert_eq(e->off, b.recs[i].off);
        unsigned d;
        uint64_t so, rl = needle_record_size(e->size);
        cr_assert_eq(ec_locate(&sh[5].h, e->off, rl, &d, &so), 0);
        uint8_t *rec = malloc(rl);
        cr_assert_eq(ec_shard_pread(&sh[d], so, rl, rec, 1), 0);
        struct needle_header nh;
        cr_assert_eq(needle_verify(rec, rl, e->seq, e->cookie, &nh), 0);
        cr_assert_eq(memcmp(rec, b.buf + e->off, rl), 0);
        free(rec);
    }
    /* deleted files are marked in the table */
    for (size_t i = 0; i < b.n; i++)
        if (b.recs[i].tomb)
            cr_assert(ec_table_find(sh[0].tab, sh[0].ntab, b.recs[i].seq)->deleted);
    /* a flipped byte on disk: found by verify and by a checked read */
    int fd = open(sh[1].path, O_RDWR);
    uint8_t x;
    cr_assert_eq(pread(fd, &x, 1, (off_t)sh[1].hdr_len + EC_CHUNK + 5), 1);
    x ^= 0x40;
    cr_assert_eq(pwrite(fd, &x, 1, (off_t)sh[1].hdr_len + EC_CHUNK + 5), 1);
    close(fd);
    uint32_t bad = 99;
    cr_assert_eq(ec_shard_verify(&sh[1], &bad), IMG_ECORRUPT);
    cr_assert_eq(bad, 1);
    uint8_t buf[64];
    cr_assert_eq(ec_shard_pread(&sh[1], EC_CHUNK, 64, buf, 1), IMG_ECORRUPT);
    cr_assert_eq(ec_shard_pread(&sh[1], 0, 64, buf, 1), 0); /* chunk 0 is intact */
    cr_assert_eq(ec_shard_pread(&sh[1], sh[1].h.L, 1, buf, 1), IMG_EINVAL);
    for (unsigned i = 0; i < 6; i++)
        ec_shard_close(&sh[i]);
    /* a truncated file, and a damaged table, are refused at open */
    char p[512];
    ec_shard_path(dir, 0x77, 4, p, sizeof(p));
    cr_assert_eq(truncate(p, (off_t)sf.len[4] - 1), 0);
    struct ec_shard t;
    cr_assert_neq(ec_shard_open(p, &t), 0);
    ec_shard_path(dir, 0x77, 3, p, sizeof(p));
    fd = open(p, O_RDWR);
    cr_assert_eq(pwrite(fd, "Z", 1, (off_t)sf.len[3] - 10), 1);
    close(fd);
    cr_assert_eq(ec_shard_open(p, &t), IMG_ECORRUPT);
    ec_stripe_files_free(&sf);
    free_block(&b);
    engine_rmtree(dir);
}

Test(ec, stripe_build_refuses_bad_records)
{
    struct tblock b;
    make_block(&b, 1u << 20, 11);
    struct ec_stripe_files sf;
    b.buf[b.recs[3].off + NEEDLE_HEADER_SIZE] ^= 1; /* a data byte */
    cr_assert_eq(ec_stripe_build(b.buf, b.len, SUPER, 1, 4, 2, &sf), IMG_ECORRUPT);
    b.buf[b.recs[3].off + NEEDLE_HEADER_SIZE] ^= 1;
    cr_assert_eq(ec_stripe_build(b.buf, b.len - 8, SUPER, 1, 4, 2, &sf), IMG_ECORRUPT);
    cr_assert_eq(ec_stripe_build(b.buf, b.len, SUPER, 1, 4, 3, &sf), IMG_EINVAL);
    cr_assert_eq(ec_stripe_build(b.buf, b.len, SUPER, 1, 6, 3, &sf), 0);
    ec_stripe_files_free(&sf);
    uint64_t id;
    unsigned ix;
    cr_assert_eq(ec_shard_name("00000000000000ab.s14", &id, &ix), -1);
    cr_assert_eq(ec_shard_name("00000000000000ab.s1", &id, &ix), -1);
    cr_assert_eq(ec_shard_name("00000000000000Ab.s01", &id, &ix), -1);
    cr_assert_eq(ec_shard_name("00000000000000ab.s13", &id, &ix), 0);
    cr_assert(id == 0xab && ix == 13);
    free_block(&b);
}

/* ---- compaction of an encoded block (ec_compact.c) ---- */

/* The header and record table of a built shard file. */
static void shard_meta(const struct ec_stripe_files *sf, unsigned i, struct ec_hdr *h,
                       size_t *hl, struct ec_tent **tab, size_t *n)
{
    cr_assert_eq(ec_shard_check(sf->file[i], sf->len[i], h->block_id, i,
                                h, hl), 0);
    size_t off = *hl + (size_t)h->L;
    cr_assert_eq(ec_table_parse(sf->file[i] + off, sf->len[i] - off, h->block_len, tab, n), 0);
}

/* Lost shards `lost` (bit mask, up to m) of a built stripe decoded from
 * the others, compared with the originals byte for byte. */
static void decode_all(const struct ec_stripe_files *sf, size_t hl, uint32_t lost)
{
    struct ec_codec c;
    cr_assert_eq(ec_codec_init(&c, sf->k, sf->m), 0);
    uint8_t have[EC_MAX_K], want[EC_MAX_SHARDS];
    const uint8_t *src[EC_MAX_K];
    uint8_t *out[EC_MAX_SHARDS];
    unsigned nh = 0, nw = 0;
    for (unsigned i = 0; i < sf->k + sf->m; i++) {
        if (lost & (1u << i)) {
            want[nw] = (uint8_t)i;
            out[nw] = malloc(sf->L);
            cr_assert_not_null(out[nw]);
            nw++;
        } else if (nh < sf->k) {
            have[nh] = (uint8_t)i;
            src[nh++] = sf->file[i] + hl;
        }
    }
    cr_assert_eq(ec_codec_decode(&c, sf->L, have, src, want, nw, out), 0);
    for (unsigned j = 0; j < nw; j++) {
        cr_assert_eq(memcmp(out[j], sf->file[want[j]] + hl, sf->L), 0, "shard %u", want[j]);
        free(out[j]);
    }
}

Test(ec, compact_stripe_keeps_live_files_only)
{
    struct tblock b;
    make_block(&b, 4u << 20, 21);
    struct ec_stripe_files old;
    cr_assert_eq(ec_stripe_build(b.buf, b.len, SUPER, 0x55, 4, 2, &old), 0);
    struct ec_hdr h = {.block_id = 0x55};
    size_t hl, n;
    struct ec_tent *tab;
    shard_meta(&old, 5, &h, &hl, &tab, &n); /* a parity shard's table: every holder has it */
    cr_assert_eq(h.gen, 0);
    /* garbage before any new delete: tombstones, their files, padding */
    uint64_t g0 = ec_compact_garbage(&h, tab, n, SUPER);
    cr_assert_gt(g0, 0);
    cr_assert_lt(g0, h.block_len / 4);
    cr_assert(!ec_compact_due(g0, h.block_len, 30));
    /* delete every live file whose seq is 1 or 2 mod 3: about 2/3 */
    uint64_t live = SUPER;
    size_t nlive = 0;
    for (size_t i = 0; i < n; i++) {
        if (tab[i].seq % 3 != 0)
            tab[i].deleted = 1;
        if (!tab[i].deleted) {
            live += needle_record_size(tab[i].size);
            nlive++;
        }
    }
    uint64_t g = ec_compact_garbage(&h, tab, n, SUPER);
    cr_assert_eq(g, h.block_len - live);
    cr_assert(ec_compact_due(g, h.block_len, 30));
    cr_assert(!ec_compact_due(g, h.block_len, 0)); /* threshold 0: compaction off */
    cr_assert(!ec_compact_due(g, h.block_len, 101));
    const uint8_t *data[EC_MAX_K];
    for (unsigned i = 0; i < 4; i++)
        data[i] = old.file[i] + hl;
    struct ec_stripe_files nw;
    cr_assert_eq(ec_compact_stripe(&h, data, tab, n, SUPER, &nw), 0);
    cr_assert_eq(nw.files, nlive);
    cr_assert_eq(nw.deleted, 0);
    /* raw bytes shrink by about the deleted share */
    uint64_t raw_old = 0, raw_new = 0;
    for (unsigned i = 0; i < 6; i++) {
        raw_old += old.len[i];
        raw_new += nw.len[i];
    }
    double want = (double)live / (double)h.block_len, got = (double)raw_new / (double)raw_old;
    cr_assert(got < want + 0.15 && got > want - 0.05, "raw %.3f of before, live %.3f", got, want);
    /* the cut's bound: no data shard longer than a k-th of the block plus
     * its largest record, rounded up to EC_ALIGN */
    uint64_t biggest = 0;
    for (size_t i = 0; i < n; i++)
        if (!tab[i].deleted && needle_record_size(tab[i].size) > biggest)
            biggest = needle_record_size(tab[i].size);
    cr_assert_leq(nw.L, live / 4 + biggest + EC_ALIGN);
    cr_assert_lt(nw.L, old.L);
    /* every new shard: generation 1, same block and scheme, checked whole */
    struct ec_hdr nh = {.block_id = 0x55};
    size_t nhl, nn;
    struct ec_tent *ntab;
    shard_meta(&nw, 4, &nh, &nhl, &ntab, &nn);
    cr_assert_eq(nh.gen, 1);
    cr_assert(nh.k == 4 && nh.m == 2 && nh.block_id == 0x55);
    cr_assert_eq(nh.block_len, live);
    for (unsigned i = 0; i < 6; i++) {
        struct ec_hdr x;
        size_t xl;
        cr_assert_eq(ec_shard_check(nw.file[i], nw.len[i], 0x55, i, &x, &xl), 0);
        cr_assert_eq(x.gen, 1);
        ec_hdr_free(&x);
    }
    /* the new table holds exactly the live files, each byte-identical */
    cr_assert_eq(nn, nlive);
    for (size_t i = 0, j = 0; i < n; i++) {
        if (tab[i].deleted) {
            cr_assert_null(ec_table_find(ntab, nn, tab[i].seq), "seq %u", tab[i].seq);
            continue;
        }
        const struct ec_tent *e = &ntab[j++];
        cr_assert(e->seq == tab[i].seq && e->cookie == tab[i].cookie && e->size == tab[i].size);
        cr_assert(!e->deleted);
        uint64_t rl = needle_record_size(e->size), so;
        unsigned d;
        cr_assert_eq(ec_locate(&nh, e->off, rl, &d, &so), 0);
        const uint8_t *rec = nw.file[d] + nhl + so;
        struct needle_header x;
        cr_assert_eq(needle_verify(rec, rl, e->seq, e->cookie, &x), 0);
        cr_assert_eq(memcmp(rec, b.buf + tab[i].off, rl), 0, "seq %u", e->seq);
    }
    /* the superblock is kept */
    cr_assert_eq(memcmp(nw.file[0] + nhl, b.buf, SUPER), 0);
    /* the new stripe survives every loss of up to 2 shards */
    for (uint32_t lost = 1; lost < 64; lost++)
        if (popcount(lost) <= 2)
            decode_all(&nw, nhl, lost);
    /* the same input builds the same shards (a pure function) */
    struct ec_stripe_files again;
    cr_assert_eq(ec_compact_stripe(&h, data, tab, n, SUPER, &again), 0);
    for (unsigned i = 0; i < 6; i++)
        cr_assert(again.len[i] == nw.len[i] && !memcmp(again.file[i], nw.file[i], nw.len[i]));
    ec_stripe_files_free(&again);
    /* compacting the new generation again: generation 2, nothing dropped */
    const uint8_t *ndata[EC_MAX_K];
    for (unsigned i = 0; i < 4; i++)
        ndata[i] = nw.file[i] + nhl;
    cr_assert_eq(ec_compact_garbage(&nh, ntab, nn, SUPER), 0);
    cr_assert_eq(ec_compact_stripe(&nh, ndata, ntab, nn, SUPER, &again), 0);
    struct ec_hdr h2;
    size_t h2l;
    cr_assert_eq(ec_shard_check(again.file[0], again.len[0], 0x55, 0, &h2, &h2l), 0);
    cr_assert(h2.gen == 2 && h2.block_len == nh.block_len);
    ec_hdr_free(&h2);
    ec_stripe_files_free(&again);
    free(ntab);
    ec_hdr_free(&nh);
    ec_stripe_files_free(&nw);
    free(tab);
    ec_hdr_free(&h);
    ec_stripe_files_free(&old);
    free_block(&b);
}

Test(ec, compact_stripe_refuses_damage)
{
    struct tblock b;
    make_block(&b, 1u << 20, 33);
    struct ec_stripe_files old, nw;
    cr_assert_eq(ec_stripe_build(b.buf, b.len, SUPER, 0x66, 6, 3, &old), 0);
    struct ec_hdr h = {.block_id = 0x66};
    size_t hl, n;
    struct ec_tent *tab;
    shard_meta(&old, 0, &h, &hl, &tab, &n);
    uint8_t *data[EC_MAX_K];
    for (unsigned i = 0; i < 6; i++)
        data[i] = old.file[i] + hl;
    /* a flipped data byte of a live record: refused, nothing built */
    size_t v = n / 2;
    while (tab[v].deleted)
        v++;
    unsigned d;
    uint64_t so;
    cr_assert_eq(ec_locate(&h, tab[v].off, needle_record_size(tab[v].size), &d, &so), 0);
    data[d][so + NEEDLE_HEADER_SIZE] ^= 1;
    cr_assert_eq(ec_compact_stripe(&h, (const uint8_t *const *)data, tab, n, SUPER, &nw),
                 IMG_ECORRUPT);
    /* the same damage in a deleted record does not matter: it is dropped */
    tab[v].deleted = 1;
    cr_assert_eq(ec_compact_stripe(&h, (const uint8_t *const *)data, tab, n, SUPER, &nw), 0);
    struct ec_hdr nh = {.block_id = 0x66};
    size_t nhl, nn;
    struct ec_tent *ntab;
    shard_meta(&nw, 7, &nh, &nhl, &ntab, &nn);
    cr_assert_null(ec_table_find(ntab, nn, tab[v].seq));
    cr_assert_eq(nn, nw.files);
    free(ntab);
    ec_hdr_free(&nh);
    ec_stripe_files_free(&nw);
    data[d][so + NEEDLE_HEADER_SIZE] ^= 1;
    /* an entry whose cookie is not the record's: corrupt */
    size_t w = v + 1;
    while (w < n && tab[w].deleted)
        w++;
    cr_assert_lt(w, n);
    tab[w].cookie ^= 1;
    cr_assert_eq(ec_compact_stripe(&h, (const uint8_t *const *)data, tab, n, SUPER, &nw),
                 IMG_ECORRUPT);
    tab[w].cookie ^= 1;
    /* a table out of seq order, or claiming more than the block: refused */
    struct ec_tent t2[2] = {tab[w], tab[w]};
    cr_assert_eq(ec_compact_stripe(&h, (const uint8_t *const *)data, t2, 2, SUPER, &nw),
                 IMG_EINVAL);
    struct ec_tent big = tab[w];
    big.size = (uint32_t)h.block_len;
    cr_assert_eq(ec_compact_stripe(&h, (const uint8_t *const *)data, &big, 1, SUPER, &nw),
                 IMG_EINVAL);
    cr_assert_eq(ec_compact_garbage(&h, &big, 1, SUPER), 0);
    /* the generation never wraps */
    h.gen = UINT32_MAX;
    cr_assert_eq(ec_compact_stripe(&h, (const uint8_t *const *)data, tab, n, SUPER, &nw),
                 IMG_EINVAL);
    h.gen = 0;
    /* every file deleted: a stripe of the superblock alone, no files */
    for (size_t i = 0; i < n; i++)
        tab[i].deleted = 1;
    cr_assert_eq(ec_compact_garbage(&h, tab, n, SUPER), h.block_len - SUPER);
    cr_assert_eq(ec_compact_stripe(&h, (const uint8_t *const *)data, tab, n, SUPER, &nw), 0);
    cr_assert_eq(nw.files, 0);
    struct ec_hdr e;
    size_t el;
    cr_assert_eq(ec_shard_check(nw.file[8], nw.len[8], 0x66, 8, &e, &el), 0);
    cr_assert(e.block_len == SUPER && e.gen == 1);
    ec_hdr_free(&e);
    ec_stripe_files_free(&nw);
    free(tab);
    ec_hdr_free(&h);
    ec_stripe_files_free(&old);
    free_block(&b);
}

Test(ec, compact_stage_and_cutover)
{
    char dir[64];
    engine_tmpdir(dir, sizeof(dir), "ecnext");
    struct tblock b;
    make_block(&b, 1u << 20, 44);
    struct ec_stripe_files old, nw;
    cr_assert_eq(ec_stripe_build(b.buf, b.len, SUPER, 0x99, 4, 2, &old), 0);
    for (unsigned i = 0; i < 6; i++)
        cr_assert_eq(ec_shard_write(dir, 0x99, i, old.file[i], old.len[i]), 0);
    struct ec_hdr h = {.block_id = 0x99};
    size_t hl, n;
    struct ec_tent *tab;
    shard_meta(&old, 0, &h, &hl, &tab, &n);
    for (size_t i = 0; i < n; i += 2)
        tab[i].deleted = 1;
    const uint8_t *data[EC_MAX_K];
    for (unsigned i = 0; i < 4; i++)
        data[i] = old.file[i] + hl;
    cr_assert_eq(ec_compact_stripe(&h, data, tab, n, SUPER, &nw), 0);
    /* staging checks the bytes, the shard index and the generation */
    cr_assert_eq(ec_shard_stage(dir, 0x99, 1, 0, nw.file[1], nw.len[1]), IMG_EINVAL);
    cr_assert_eq(ec_shard_stage(dir, 0x99, 2, 1, nw.file[1], nw.len[1]), IMG_EFORMAT);
    nw.file[1][nw.len[1] - 1] ^= 1; /* the table's CRC */
    cr_assert_eq(ec_shard_stage(dir, 0x99, 1, 1, nw.file[1], nw.len[1]), IMG_ECORRUPT);
    nw.file[1][nw.len[1] - 1] ^= 1;
    char p[512], q[512];
    ec_shard_next_path(dir, 0x99, 1, q, sizeof(q));
    cr_assert_neq(access(q, F_OK), 0, "a refused stage left a file");
    for (unsigned i = 0; i < 6; i++)
        cr_assert_eq(ec_shard_stage(dir, 0x99, i, 1, nw.file[i], nw.len[i]), 0);
    cr_assert_eq(ec_shard_stage(dir, 0x99, 1, 1, nw.file[1], nw.len[1]), 0, "sent again");
    /* staged: the shard file is still the old generation, whole */
    struct ec_shard s;
    ec_shard_path(dir, 0x99, 1, p, sizeof(p));
    cr_assert_eq(ec_shard_open(p, &s), 0);
    cr_assert(s.h.gen == 0 && s.ntab == n);
    ec_shard_close(&s);
    uint64_t id;
    unsigned ix;
    cr_assert_eq(ec_shard_name(strrchr(q, '/') + 1, &id, &ix), -1, "a staged file is no shard");
    /* the cutover of shards 0..2 (a cutover cut short by a crash) */
    for (unsigned i = 0; i < 3; i++)
        cr_assert_eq(ec_shard_commit(dir, 0x99, i, 1), 0);
    cr_assert_eq(ec_shard_commit(dir, 0x99, 1, 1), 0, "a repeated cutover");
    cr_assert_eq(ec_shard_commit(dir, 0x99, 3, 2), IMG_EINVAL, "another generation");
    cr_assert_eq(ec_shard_open(p, &s), 0);
    cr_assert(s.h.gen == 1 && s.ntab == nw.files && s.h.block_len < h.block_len);
    cr_assert_eq(ec_shard_verify(&s, NULL), 0);
    ec_shard_close(&s);
    cr_assert_neq(access(q, F_OK), 0);
    /* ... finished later: every shard at generation 1 */
    for (unsigned i = 3; i < 6; i++)
        cr_assert_eq(ec_shard_commit(dir, 0x99, i, 1), 0);
    for (unsigned i = 0; i < 6; i++) {
        ec_shard_path(dir, 0x99, i, p, sizeof(p));
        cr_assert_eq(ec_shard_open(p, &s), 0);
        cr_assert_eq(s.h.gen, 1);
        cr_assert_eq(s.file_size, nw.len[i]);
        ec_shard_close(&s);
    }
    /* nothing staged and the shard of another generation: not committed */
    cr_assert_eq(ec_shard_commit(dir, 0x99, 4, 2), -ENOENT);
    cr_assert_eq(ec_shard_commit(dir, 0x98, 4, 1), -ENOENT);
    /* a compaction given up: its staged file removed, the shard kept */
    cr_assert_eq(ec_shard_stage(dir, 0x99, 5, 1, nw.file[5], nw.len[5]), 0);
    cr_assert_eq(ec_shard_unstage(dir, 0x99, 5), 0);
    cr_assert_eq(ec_shard_unstage(dir, 0x99, 5), 0);
    ec_shard_next_path(dir, 0x99, 5, q, sizeof(q));
    cr_assert_neq(access(q, F_OK), 0);
    ec_shard_path(dir, 0x99, 5, p, sizeof(p));
    cr_assert_eq(ec_shard_open(p, &s), 0);
    ec_shard_close(&s);
    /* a damaged staged file is not renamed over the shard */
    cr_assert_eq(ec_shard_stage(dir, 0x99, 5, 1, nw.file[5], nw.len[5]), 0);
    cr_assert_eq(truncate(q, (off_t)nw.len[5] - 3), 0);
    cr_assert_neq(ec_shard_commit(dir, 0x99, 5, 1), 0);
    cr_assert_eq(access(q, F_OK), 0);
    free(tab);
    ec_hdr_free(&h);
    ec_stripe_files_free(&nw);
    ec_stripe_files_free(&old);
    free_block(&b);
    engine_rmtree(dir);
}
