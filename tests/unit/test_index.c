/* Unit tests of the dense per-block index (dataserver/index.c). */
#include "base/err.h"
#include "dataserver/index.h"

#include <criterion/criterion.h>

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
    cr_assert_eq(ix.live, 0);
    index_free(&ix);
}

Test(index, grows_by_doubling_and_stays_dense)
{
    struct index ix;
    index_init(&ix);
    const uint32_t n = 100000;
    for (uint32_t s = 1; s <= n; s++)
        cr_assert_eq(index_put(&ix, s, (uint64_t)s * 64, s), 0);
    cr_assert_eq(ix.live, n);
    cr_assert_eq(ix.max_seq, n);
    cr_assert(ix.cap > n && ix.cap <= 2 * (n + 1), "cap %u", ix.cap);
    /* 8 bytes of RAM per file: two u32 arrays */
    cr_assert_eq(sizeof(ix.off8[0]) + sizeof(ix.size[0]), 8);
    for (uint32_t s = 1; s <= n; s += 997) {
        uint64_t off;
        uint32_t size;
        int del;
        cr_assert_eq(index_get(&ix, s, &off, &size, &del), 0);
        cr_assert_eq(off, (uint64_t)s * 64);
        cr_assert_eq(size, s);
    }
    /* the largest offset a block may have */
    cr_assert_eq(index_put(&ix, 5, (UINT64_C(32) << 30) - 8, 1), 0);
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

Test(index, reserve_sizes_exactly_then_doubles)
{
    struct index ix;
    index_init(&ix);
    cr_assert_eq(index_reserve(&ix, 1001), 0);
    cr_assert_eq(ix.cap, 1001);
    cr_assert_eq(index_reserve(&ix, 10), 0); /* never shrinks */
    cr_assert_eq(ix.cap, 1001);
    for (uint32_t seq = 1; seq <= 1000; seq++)
        cr_assert_eq(index_put(&ix, seq, (uint64_t)seq * 64, seq), 0);
    cr_assert_eq(ix.cap, 1001); /* no slack while it fits */
    uint64_t off;
    uint32_t size;
    int del;
    cr_assert_eq(index_get(&ix, 1000, &off, &size, &del), 0);
    cr_assert_eq(off, 64000);
    cr_assert_eq(index_get(&ix, 1001, &off, &size, &del), IMG_ENOTFOUND);
    cr_assert_eq(index_put(&ix, 1001, 64064, 1), 0);
    cr_assert_eq(ix.cap, 2002);
    cr_assert_eq(index_get(&ix, 1500, &off, &size, &del), IMG_ENOTFOUND);
    index_free(&ix);
}
