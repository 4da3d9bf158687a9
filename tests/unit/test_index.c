/* Unit tests of the per-block index (dataserver/index.c): plain tail and
 * packed groups, checked against a reference model of plain arrays. */
#include "base/err.h"
#include "dataserver/index.h"
#include "dataserver/needle.h"

#include <criterion/criterion.h>
#include <stdlib.h>

Test(index, put_get_delete)
{
    struct index ix;
    uint64_t off;
    uint32_t size;
    int del;
    index_init(&ix);
    cr_assert_eq(index_get(&ix, 1, &off, &size, &del), IMG_ENOTFOUND);
    cr_assert_eq(index_put(&ix, 1, 64, 100), 0);
    cr_assert_eq(index_put(&ix, 2, 192, 5), 0);
    cr_assert_eq(ix.live, 2);
    cr_assert_eq(ix.max_seq, 2);
    cr_assert_eq(index_get(&ix, 1, &off, &size, &del), 0);
    cr_assert_eq(off, 64);
    cr_assert_eq(size, 100);
    cr_assert_eq(del, 0);
    cr_assert_eq(index_delete(&ix, 1), 0);
    cr_assert_eq(index_delete(&ix, 1), 0); /* idempotent */
    cr_assert_eq(ix.live, 1);
    cr_assert_eq(index_get(&ix, 1, &off, &size, &del), 0);
    cr_assert_eq(del, 1);
    cr_assert_eq(size, 100);
    cr_assert_eq(index_delete(&ix, 3), IMG_ENOTFOUND);
    cr_assert_eq(index_delete(&ix, 0), IMG_ENOTFOUND);
    cr_assert_eq(index_get(&ix, 1000000, &off, &size, &del), IMG_ENOTFOUND);
    index_free(&ix);
    index_free(&ix);
    index_free(NULL);
}

Test(index, refuses_bad_arguments)
{
    struct index ix;
    index_init(&ix);
    cr_assert_eq(index_put(&ix, 0, 64, 1), IMG_EINVAL);
    cr_assert_eq(index_put(&ix, 1, 65, 1), IMG_EINVAL);
    cr_assert_eq(index_put(&ix, 1, 0, 1), IMG_EINVAL);
    cr_assert_eq(index_put(&ix, 1, (UINT64_C(1) << 35) + 8, 1), IMG_EINVAL);
    cr_assert_eq(index_put(&ix, 1, 64, INDEX_DELETED | 1), IMG_EINVAL);
    cr_assert_eq(index_put(&ix, 1, 64, NEEDLE_MAX_DATA + 1), IMG_EINVAL);
    cr_assert_eq(ix.live, 0);
    index_free(&ix);
}

Test(index, entry_codec)
{
    uint8_t e[INDEX_ENTRY_SIZE];
    uint32_t seq, size;
    uint64_t off;
    int tomb;
    index_encode_entry(0x01020304, 0x80, 500, 0, e);
    cr_assert_eq(e[0], 0x04);
    cr_assert_eq(e[4], 0x10); /* 0x80 / 8 */
    index_decode_entry(e, &seq, &off, &size, &tomb);
    cr_assert_eq(seq, 0x01020304);
    cr_assert_eq(off, 0x80);
    cr_assert_eq(size, 500);
    cr_assert_eq(tomb, 0);
    index_encode_entry(3, 4096, 0, 1, e);
    cr_assert_eq(e[11], 0x80);
    index_decode_entry(e, &seq, &off, &size, &tomb);
    cr_assert_eq(tomb, 1);
    cr_assert_eq(size, 0);
}


/* Reference model: what every seq should answer. */
struct model {
    uint64_t *off; /* 0: absent */
    uint32_t *size;
    uint8_t *del;
    uint32_t n; /* seqs [0, n) */
};

static void model_init(struct model *m, uint32_t n)
{
    m->off = calloc(n, sizeof(*m->off));
    m->size = calloc(n, sizeof(*m->size));
    m->del = calloc(n, 1);
    m->n = n;
    cr_assert(m->off && m->size && m->del);
}

static void model_free(struct model *m)
{
    free(m->off);
    free(m->size);
    free(m->del);
}

/* Every seq of the model (and a few past it) answers as the model says. */
static void check_all(const struct index *ix, const struct model *m)
{
    uint32_t live = 0;
    for (uint32_t seq = 0; seq < m->n + 2 * INDEX_GROUP; seq++) {
        uint64_t off;
        uint32_t size;
        int del;
        int rc = index_get(ix, seq, &off, &size, &del);
        if (seq >= m->n || m->off[seq] == 0) {
            cr_assert_eq(rc, IMG_ENOTFOUND, "seq %u should be absent", seq);
            continue;
        }
        cr_assert_eq(rc, 0, "seq %u", seq);
        cr_assert_eq(off, m->off[seq], "seq %u offset %lu vs %lu", seq, (unsigned long)off,
                     (unsigned long)m->off[seq]);
        cr_assert_eq(size, m->size[seq], "seq %u size %u vs %u", seq, size, m->size[seq]);
        cr_assert_eq(del, m->del[seq], "seq %u deleted", seq);
        live += !m->del[seq];
    }
    cr_assert_eq(ix->live, live);
}

/* Appends files 1..n-1 as a block would: each record after the one before,
 * sizes from size_of(seq), `gap` tombstones after every seq divisible by
 * gap_every (0: none), seqs divisible by hole_every skipped (0: none). */
static void fill(struct index *ix, struct model *m, uint32_t (*size_of)(uint32_t), uint32_t gap_every,
                 uint32_t hole_every)
{
    uint64_t off = 64;
    for (uint32_t seq = 1; seq < m->n; seq++) {
        if (hole_every && seq % hole_every == 0)
            continue;
        uint32_t sz = size_of(seq);
        cr_assert_eq(index_put(ix, seq, off, sz), 0);
        m->off[seq] = off;
        m->size[seq] = sz;
        off += needle_record_size(sz);
        if (gap_every && seq % gap_every == 0)
            off += 3 * needle_record_size(0); /* three tombstones */
    }
}

static uint32_t size_8(uint32_t seq)
{
    (void)seq;
    return 8;
}

static uint32_t size_images(uint32_t seq)
{
    return 40000 + (uint32_t)((seq * 2654435761u) % 20001); /* 40-60 KB, any alignment */
}

static uint32_t size_wild(uint32_t seq)
{
    uint32_t h = seq * 2654435761u;
    return h % 997 == 0 ? NEEDLE_MAX_DATA - (h % 8) : h % 5 == 0 ? 0 : h % 3000; /* 0 B to 32 MiB */
}

Test(index, packs_as_it_grows_and_answers_exactly)
{
    struct index ix;
    struct model m;
    index_init(&ix);
    model_init(&m, 3 * INDEX_TAIL_KEEP + 77);
    fill(&ix, &m, size_images, 0, 0);
    /* everything but the newest seqs is packed */
    cr_assert_geq(ix.npacked, m.n - 2 * INDEX_TAIL_KEEP);
    cr_assert_leq(ix.npacked, m.n - INDEX_TAIL_KEEP);
    cr_assert_eq(ix.npacked % INDEX_GROUP, 0);
    cr_assert_eq(ix.max_seq, m.n - 1);
    check_all(&ix, &m);
    cr_assert_eq(index_seal(&ix), 0);
    cr_assert_eq(ix.cap, 0); /* no plain tail left */
    cr_assert_eq(ix.npacked, (m.n - 1) / INDEX_GROUP * INDEX_GROUP + INDEX_GROUP);
    check_all(&ix, &m);
    /* 40-60 KB images: well under 5 bytes per file */
    cr_assert_lt((double)index_ram(&ix) / (m.n - 1), 4.0, "%.2f B/file",
                 (double)index_ram(&ix) / (m.n - 1));
    model_free(&m);
    index_free(&ix);
}

Test(index, equal_small_files_cost_under_half_a_byte)
{
    struct index ix;
    struct model m;
    index_init(&ix);
    model_init(&m, 1000001);
    fill(&ix, &m, size_8, 0, 0);
    cr_assert_lt((double)index_ram(&ix) / (m.n - 1), 1.0); /* before sealing: tail and slack */
    cr_assert_eq(index_seal(&ix), 0);
    cr_assert_lt((double)index_ram(&ix) / (m.n - 1), 0.4, "%.3f B/file",
                 (double)index_ram(&ix) / (m.n - 1));
    check_all(&ix, &m);
    model_free(&m);
    index_free(&ix);
}

Test(index, gaps_holes_and_wild_sizes)
{
    struct index ix;
    struct model m;
    index_init(&ix);
    model_init(&m, 2 * INDEX_TAIL_KEEP + 3 * INDEX_GROUP + 5);
    fill(&ix, &m, size_wild, 5, 11); /* tombstones in between, seqs never written */
    cr_assert_gt(ix.npacked, 0);
    check_all(&ix, &m);
    cr_assert_eq(index_seal(&ix), 0);
    check_all(&ix, &m);
    model_free(&m);
    index_free(&ix);
}

Test(index, deletes_in_both_parts)
{
    struct index ix;
    struct model m;
    index_init(&ix);
    model_init(&m, 2 * INDEX_TAIL_KEEP + 200);
    fill(&ix, &m, size_images, 0, 0);
    cr_assert_gt(ix.npacked, 0);
    uint32_t seqs[] = {1, 2, INDEX_GROUP - 1, INDEX_GROUP, ix.npacked - 1, ix.npacked,
                       m.n - 1};
    for (size_t i = 0; i < sizeof(seqs) / sizeof(seqs[0]); i++) {
        cr_assert_eq(index_delete(&ix, seqs[i]), 0, "seq %u", seqs[i]);
        cr_assert_eq(index_delete(&ix, seqs[i]), 0); /* idempotent */
        m.del[seqs[i]] = 1;
    }
    cr_assert_eq(index_delete(&ix, m.n), IMG_ENOTFOUND);
    cr_assert_eq(index_delete(&ix, 0), IMG_ENOTFOUND);
    check_all(&ix, &m);
    cr_assert_eq(index_seal(&ix), 0); /* deleted bits survive packing */
    check_all(&ix, &m);
    cr_assert_eq(index_delete(&ix, 5), 0);
    m.del[5] = 1;
    check_all(&ix, &m);
    model_free(&m);
    index_free(&ix);
}

Test(index, one_record_and_the_largest_offsets)
{
    struct index ix;
    struct model m;
    index_init(&ix);
    model_init(&m, 2);
    cr_assert_eq(index_put(&ix, 1, 64, 0), 0); /* a block of one empty file */
    m.off[1] = 64;
    cr_assert_eq(index_seal(&ix), 0);
    cr_assert_eq(ix.npacked, INDEX_GROUP);
    check_all(&ix, &m);
    index_free(&ix);
    /* a 32 GiB block's last file, at its last 32 MiB */
    index_init(&ix);
    uint64_t off = (UINT64_C(32) << 30) - (UINT64_C(64) << 10) - needle_record_size(NEEDLE_MAX_DATA);
    off &= ~(uint64_t)7;
    uint64_t off1 = off - (UINT64_C(3) << 30); /* 3 GiB of other records between */
    cr_assert_eq(index_put(&ix, 1, off1, 100), 0);
    cr_assert_eq(index_put(&ix, 2, off, NEEDLE_MAX_DATA), 0);
    model_free(&m);
    model_init(&m, 3);
    m.off[1] = off1, m.size[1] = 100, m.off[2] = off, m.size[2] = NEEDLE_MAX_DATA;
    cr_assert_eq(index_seal(&ix), 0);
    cr_assert_eq(ix.cap, 0);
    check_all(&ix, &m);
    model_free(&m);
    index_free(&ix);
    /* an empty index seals to nothing */
    index_init(&ix);
    cr_assert_eq(index_seal(&ix), 0);
    cr_assert_eq(index_ram(&ix), 0);
    uint64_t o;
    uint32_t sz;
    int del;
    cr_assert_eq(index_get(&ix, 1, &o, &sz, &del), IMG_ENOTFOUND);
    index_free(&ix);
}

Test(index, appends_after_sealing_and_old_seqs_unpack)
{
    struct index ix;
    struct model m;
    index_init(&ix);
    model_init(&m, 3 * INDEX_GROUP + 1);
    m.n = 2 * INDEX_GROUP;
    fill(&ix, &m, size_images, 0, 0);
    cr_assert_eq(index_seal(&ix), 0);
    cr_assert_eq(ix.npacked, 2 * INDEX_GROUP);
    /* a seq after the packed part goes to a new tail */
    uint64_t off = m.off[m.n - 1] + needle_record_size(m.size[m.n - 1]);
    cr_assert_eq(index_put(&ix, 2 * INDEX_GROUP + 3, off, 77), 0);
    m.n = 3 * INDEX_GROUP + 1;
    m.off[2 * INDEX_GROUP + 3] = off, m.size[2 * INDEX_GROUP + 3] = 77;
    check_all(&ix, &m);
    /* one inside it (never from a sound block) turns the index plain, still right */
    cr_assert_eq(index_delete(&ix, 7), 0);
    m.del[7] = 1;
    cr_assert_eq(index_put(&ix, 9, 1 << 20, 5), 0);
    m.off[9] = 1 << 20, m.size[9] = 5;
    cr_assert_eq(ix.npacked, 0);
    cr_assert_eq(ix.plain, 1);
    check_all(&ix, &m);
    cr_assert_eq(index_seal(&ix), 0); /* stays plain: records out of order */
    check_all(&ix, &m);
    model_free(&m);
    index_free(&ix);
}

Test(index, records_out_of_order_stay_plain)
{
    struct index ix;
    struct model m;
    index_init(&ix);
    model_init(&m, 2 * INDEX_TAIL_KEEP + 10);
    for (uint32_t seq = 1; seq < m.n; seq++) {
        uint64_t off = (uint64_t)(m.n - seq) * 64; /* offsets fall as seqs grow */
        cr_assert_eq(index_put(&ix, seq, off, 8), 0);
        m.off[seq] = off, m.size[seq] = 8;
    }
    cr_assert_eq(ix.npacked, 0);
    cr_assert_eq(ix.plain, 1);
    check_all(&ix, &m);
    /* a record overlapping the one before */
    index_free(&ix);
    index_init(&ix);
    cr_assert_eq(index_put(&ix, 1, 64, 100), 0);
    cr_assert_eq(index_put(&ix, 2, 128, 8), 0); /* 64 + 124 > 128 */
    cr_assert_eq(index_seal(&ix), 0);
    cr_assert_eq(ix.plain, 1);
    uint64_t off;
    uint32_t size;
    int del;
    cr_assert_eq(index_get(&ix, 2, &off, &size, &del), 0);
    cr_assert_eq(off, 128);
    model_free(&m);
    index_free(&ix);
}

Test(index, packing_goes_on_after_a_seal)
{
    struct index ix;
    struct model m;
    index_init(&ix);
    model_init(&m, 3 * INDEX_TAIL_KEEP);
    m.n = 100;
    fill(&ix, &m, size_8, 0, 0);
    cr_assert_eq(index_seal(&ix), 0);
    /* records right after the last one: packed on as they come (seqs from
     * the end of the packed part: one inside it would unpack) */
    uint64_t off = m.off[99] + needle_record_size(8);
    cr_assert_eq(ix.npacked, 2 * INDEX_GROUP);
    for (uint32_t seq = 2 * INDEX_GROUP; seq < 3 * INDEX_TAIL_KEEP;
         seq++, off += needle_record_size(8)) {
        cr_assert_eq(index_put(&ix, seq, off, 8), 0);
        m.off[seq] = off, m.size[seq] = 8;
    }
    m.n = 3 * INDEX_TAIL_KEEP;
    cr_assert_eq(ix.plain, 0);
    cr_assert_gt(ix.npacked, INDEX_TAIL_KEEP);
    check_all(&ix, &m);
    /* after a seal, one past a gap (tombstones) stays plain from there on */
    cr_assert_eq(index_seal(&ix), 0);
    uint32_t s0 = ix.npacked;
    off += 10 * needle_record_size(0);
    model_free(&m);
    model_init(&m, s0 + 2 * INDEX_TAIL_KEEP + 1);
    for (uint32_t seq = 1; seq < s0; seq++) {
        uint64_t o;
        uint32_t sz;
        int del;
        if (index_get(&ix, seq, &o, &sz, &del) == 0)
            m.off[seq] = o, m.size[seq] = sz;
    }
    for (uint32_t seq = s0; seq < m.n; seq++, off += needle_record_size(8)) {
        cr_assert_eq(index_put(&ix, seq, off, 8), 0);
        m.off[seq] = off, m.size[seq] = 8;
    }
    cr_assert_eq(ix.plain, 1);
    cr_assert_eq(ix.npacked, s0);
    check_all(&ix, &m);
    model_free(&m);
    index_free(&ix);
}
