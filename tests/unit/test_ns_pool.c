/* Unit tests of placement and the writable pool (nameserver/ns_pool.c):
 * distinct servers, most free first, no down or read-only servers, too few
 * servers -> none; which blocks are writable; ALLOC_WRITE picking. */
#include "ns_fixture.h"

TestSuite(ns_pool, .init = setup, .fini = teardown);

Test(ns_pool, placement_most_free_first_and_distinct)
{
    const uint64_t gib = 1024 * NS_MIB;
    hb_server("a", 100 * gib, 1);
    hb_server("b", 500 * gib, 1);
    hb_server("c", 300 * gib, 1);
    hb_server("d", 50 * gib, 1);
    struct ns_server *out[3];
    cr_assert_eq(ns_pool_place(&ns, 3, out), 0);
    cr_assert_str_eq(out[0]->id, "b");
    cr_assert_str_eq(out[1]->id, "c");
    cr_assert_str_eq(out[2]->id, "a");
    cr_assert_eq(ns_pool_place(&ns, 2, out), 0);
    cr_assert_neq(out[0], out[1]);
}

Test(ns_pool, placement_skips_down_and_readonly)
{
    const uint64_t gib = 1024 * NS_MIB;
    struct ns_server *a = hb_server("a", 900 * gib, 1);
    struct ns_server *b = hb_server("b", 800 * gib, 1);
    hb_server("c", 10 * gib, 1);
    hb_server("d", 5 * gib, 1);
    ns_registry_mark_down(&ns, a, "test");
    b->readonly = 1;
    struct ns_server *out[2];
    cr_assert_eq(ns_pool_place(&ns, 2, out), 0);
    cr_assert_str_eq(out[0]->id, "c");
    cr_assert_str_eq(out[1]->id, "d");
    struct ns_server *out3[3] = {NULL, NULL, NULL};
    cr_assert_eq(ns_pool_place(&ns, 3, out3), IMG_ENOBLOCK, "only two usable servers");
    cr_assert_null(out3[0], "out untouched on failure");
}

Test(ns_pool, placement_not_enough_servers)
{
    struct ns_server *out[3];
    cr_assert_eq(ns_pool_place(&ns, 1, out), IMG_ENOBLOCK, "no servers at all");
    hb_server("a", ROOMY, 1);
    cr_assert_eq(ns_pool_place(&ns, 2, out), IMG_ENOBLOCK);
    cr_assert_eq(ns_pool_place(&ns, 1, out), 0);
}

Test(ns_pool, placement_ties_broken_randomly)
{
    /* Nearly equal free space (less than 16 blocks apart) counts as a tie. */
    hb_server("a", 100 * NS_DEFAULT_BLOCK_SIZE, 1);
    hb_server("b", 100 * NS_DEFAULT_BLOCK_SIZE + 4096, 1);
    hb_server("c", 100 * NS_DEFAULT_BLOCK_SIZE + 8192, 1);
    int first[3] = {0, 0, 0};
    for (int i = 0; i < 300; i++) {
        struct ns_server *out[1];
        cr_assert_eq(ns_pool_place(&ns, 1, out), 0);
        first[out[0]->idx]++;
    }
    for (int i = 0; i < 3; i++)
        cr_assert_gt(first[i], 30, "server %d chosen %d times of 300", i, first[i]);
}

/* Creates block `id` on p (primary) and s. */
static struct ns_block *make_block(uint64_t id, struct ns_server *p, struct ns_server *s)
{
    struct ns_server *reps[2] = {p, s};
    cr_assert_eq(ns_pool_add_created(&ns, id, reps, 2), 0);
    return ns_blocks_get(&ns.blocks, id);
}

Test(ns_pool, writable_rules)
{
    struct ns_server *a = hb_server("a", ROOMY, 1);
    struct ns_server *b = hb_server("b", ROOMY, 1);
    struct ns_server *c = hb_server("c", ROOMY, 1);
    struct ns_block *blk = make_block(1, a, b);
    cr_assert(ns_block_writable(&ns, blk));

    blk->sealed = 1;
    cr_assert_not(ns_block_writable(&ns, blk), "sealed");
    blk->sealed = 0;

    blk->size = ns.meta.block_size - NS_WRITABLE_MARGIN;
    cr_assert_not(ns_block_writable(&ns, blk), "within the margin of full");
    blk->size = ns.meta.block_size - NS_WRITABLE_MARGIN - 1;
    cr_assert(ns_block_writable(&ns, blk));
    blk->size = 0;

    uint8_t prim = blk->primary;
    blk->primary = NS_NO_PRIMARY;
    cr_assert_not(ns_block_writable(&ns, blk), "primary unknown");
    blk->primary = prim;

    ns_registry_mark_down(&ns, b, "test");
    cr_assert_not(ns_block_writable(&ns, blk), "a secondary is down");
    hb_server("b", ROOMY, 2);
    cr_assert(ns_block_writable(&ns, blk));
    b->free = ns_server_reserve(&ns, b) - 1;
    cr_assert_not(ns_block_writable(&ns, blk), "a holder is below its reserve (full)");
    b->free = ns_server_reserve(&ns, b);
    cr_assert(ns_block_writable(&ns, blk), "a holder exactly at its reserve still takes files");
    b->free = ROOMY;
    ns_registry_mark_down(&ns, a, "test");
    cr_assert_not(ns_block_writable(&ns, blk), "the primary is down");
    hb_server("a", ROOMY, 2);

    blk->nrep = 1;
    cr_assert_not(ns_block_writable(&ns, blk), "under-replicated");
    blk->nrep = 2;
    cr_assert_eq(ns_block_add_rep(&ns, blk, c), 2);
    cr_assert_not(ns_block_writable(&ns, blk), "three holders, replicas is 2");
}

Test(ns_pool, small_blocks_still_writable)
{
    struct ns_server *a = hb_server("a", ROOMY, 1);
    struct ns_server *b = hb_server("b", ROOMY, 1);
    ns.meta.block_size = NS_MIN_BLOCK_SIZE;
    struct ns_block *blk = make_block(1, a, b);
    cr_assert(ns_block_writable(&ns, blk), "margin shrinks for 1 MiB blocks");
}

Test(ns_pool, pick_honours_exclude_and_prunes)
{
    struct ns_server *a = hb_server("a", ROOMY, 1);
    struct ns_server *b = hb_server("b", ROOMY, 1);
    for (uint64_t id = 1; id <= 5; id++)
        make_block(id, a, b);
    ns_blocks_get(&ns.blocks, 5)->sealed = 1;
    uint64_t ids[NS_ALLOC_MAX];
    uint64_t excl[] = {1, 2};
    size_t n = ns_pool_pick(&ns, excl, 2, ids, NS_ALLOC_MAX);
    cr_assert_eq(n, 2);
    for (size_t i = 0; i < n; i++)
        cr_assert(ids[i] == 3 || ids[i] == 4);
    cr_assert_neq(ids[0], ids[1]);
    cr_assert_eq(ns.npool, 4, "the sealed block left the pool");
    cr_assert_eq(ns_pool_pick(&ns, NULL, 0, ids, 1), 1);
    ns_registry_mark_down(&ns, a, "test");
    cr_assert_eq(ns_pool_pick(&ns, NULL, 0, ids, NS_ALLOC_MAX), 0, "no writable block");
    cr_assert_eq(ns.npool, 0);
}

Test(ns_pool, pool_dedupes_readded_blocks)
{
    struct ns_server *a = hb_server("a", ROOMY, 1);
    struct ns_server *b = hb_server("b", ROOMY, 1);
    make_block(9, a, b);
    ns_blocks_del(&ns.blocks, 9); /* dropped while listed ... */
    make_block(9, a, b);          /* ... and back: listed twice */
    cr_assert_eq(ns.npool, 2);
    cr_assert_eq(ns_pool_prune(&ns), 1);
    cr_assert_eq(ns.npool, 1);
}
