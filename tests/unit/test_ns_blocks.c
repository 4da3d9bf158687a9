/* Unit tests of the block map (nameserver/ns_blocks.c): the hash table, full
 * and incremental block reports, removed blocks, id high-water bumps, and the
 * absence of any per-file state. */
#include "ns_fixture.h"

TestSuite(ns_blocks, .init = setup, .fini = teardown);

#define MAX_INFOS 64

struct report {
    Imgstore__Heartbeat hb;
    Imgstore__BlockInfo bi[MAX_INFOS];
    Imgstore__BlockInfo *bp[MAX_INFOS];
    uint64_t removed[MAX_INFOS];
};

static void report_init(struct report *r, int full)
{
    memset(r, 0, sizeof(*r));
    imgstore__heartbeat__init(&r->hb);
    r->hb.full_report = full;
    r->hb.blocks = r->bp;
    r->hb.removed_blocks = r->removed;
}

static Imgstore__BlockInfo *report_add(struct report *r, uint64_t id, uint64_t size, int primary,
                                       int sealed)
{
    size_t i = r->hb.n_blocks++;
    imgstore__block_info__init(&r->bi[i]);
    r->bi[i].block_id = id;
    r->bi[i].size = size;
    r->bi[i].primary = primary;
    r->bi[i].sealed = sealed;
    r->bp[i] = &r->bi[i];
    return &r->bi[i];
}

static int holds(const struct ns_server *s, uint64_t id)
{
    const struct ns_block *b = ns_blocks_get(&ns.blocks, id);
    return b && ns_block_find_rep(b, s->idx) >= 0;
}

Test(ns_blocks, table_insert_get_delete_many)
{
    const uint64_t n = 20000;
    for (uint64_t id = 1; id <= n; id++) {
        struct ns_block *b = ns_blocks_put(&ns.blocks, id * 7919);
        cr_assert_not_null(b);
        b->size = id;
    }
    cr_assert_eq(ns.blocks.count, n);
    cr_assert_leq(ns.blocks.count * 10, ns.blocks.cap * 7, "load stays under 70%%");
    for (uint64_t id = 1; id <= n; id += 2)
        ns_blocks_del(&ns.blocks, id * 7919);
    cr_assert_eq(ns.blocks.count, n / 2);
    for (uint64_t id = 1; id <= n; id++) {
        struct ns_block *b = ns_blocks_get(&ns.blocks, id * 7919);
        if (id % 2)
            cr_assert_null(b, "id %llu deleted", (unsigned long long)id);
        else
            cr_assert(b && b->size == id, "id %llu kept", (unsigned long long)id);
    }
    cr_assert_null(ns_blocks_get(&ns.blocks, 0));
    cr_assert_null(ns_blocks_put(&ns.blocks, 0), "id 0 is never a block");
}

Test(ns_blocks, no_per_file_state)
{
    /* 96 bytes per block (per-replica sizes and set versions included) whatever the file
     * count: nothing grows with files. */
    cr_assert_eq(sizeof(struct ns_block), 96);
    struct ns_server *a = hb_server("a", ROOMY, 1);
    struct report r;
    report_init(&r, 1);
    report_add(&r, 5, 60u << 20, 1, 1)->file_count = 4000000000u;
    cr_assert_eq(ns_hb_apply_blocks(&ns, a, &r.hb, NULL), 0);
    size_t cap = ns.blocks.cap;
    report_init(&r, 0);
    report_add(&r, 5, 61u << 20, 1, 1)->file_count = 1;
    cr_assert_eq(ns_hb_apply_blocks(&ns, a, &r.hb, NULL), 0);
    cr_assert_eq(ns.blocks.count, 1);
    cr_assert_eq(ns.blocks.cap, cap);
    cr_assert_eq(ns_blocks_get(&ns.blocks, 5)->file_count, 1);
}

Test(ns_blocks, full_report_replaces)
{
    struct ns_server *a = hb_server("a", ROOMY, 1);
    struct ns_server *b = hb_server("b", ROOMY, 1);
    struct report r;
    report_init(&r, 1);
    report_add(&r, 1, 100, 1, 0);
    report_add(&r, 2, 200, 1, 0);
    report_add(&r, 3, 300, 1, 1);
    cr_assert_eq(ns_hb_apply_blocks(&ns, a, &r.hb, NULL), 0);
    report_init(&r, 1);
    report_add(&r, 2, 200, 0, 0);
    cr_assert_eq(ns_hb_apply_blocks(&ns, b, &r.hb, NULL), 0);
    cr_assert_eq(ns.blocks.count, 3);
    cr_assert_eq(a->nblocks, 3);
    /* a restarts and now holds only 2 and 4. */
    report_init(&r, 1);
    report_add(&r, 2, 250, 1, 0);
    report_add(&r, 4, 10, 1, 0);
    cr_assert_eq(ns_hb_apply_blocks(&ns, a, &r.hb, NULL), 0);
    cr_assert_null(ns_blocks_get(&ns.blocks, 1), "no holder left: dropped");
    cr_assert_null(ns_blocks_get(&ns.blocks, 3));
    cr_assert(holds(a, 2) && holds(b, 2) && holds(a, 4));
    cr_assert_eq(a->nblocks, 2);
    cr_assert_eq(b->nblocks, 1);
    struct ns_block *blk = ns_blocks_get(&ns.blocks, 2);
    cr_assert_eq(blk->nrep, 2);
    cr_assert_eq(blk->rep[blk->primary], a->idx);
    cr_assert_eq(blk->size, 250);
    /* an empty full report empties a. */
    report_init(&r, 1);
    cr_assert_eq(ns_hb_apply_blocks(&ns, a, &r.hb, NULL), 0);
    cr_assert_eq(a->nblocks, 0);
    cr_assert_eq(ns.blocks.count, 1);
    cr_assert(holds(b, 2));
    cr_assert_eq(ns_blocks_get(&ns.blocks, 2)->primary, NS_NO_PRIMARY);
}

Test(ns_blocks, incremental_updates_and_removes)
{
    struct ns_server *a = hb_server("a", ROOMY, 1);
    struct ns_server *b = hb_server("b", ROOMY, 1);
    struct report r;
    report_init(&r, 1);
    report_add(&r, 10, 0, 1, 0);
    report_add(&r, 11, 0, 1, 0);
    cr_assert_eq(ns_hb_apply_blocks(&ns, a, &r.hb, NULL), 0);
    report_init(&r, 1);
    report_add(&r, 10, 0, 0, 0);
    cr_assert_eq(ns_hb_apply_blocks(&ns, b, &r.hb, NULL), 0);

    report_init(&r, 0);
    Imgstore__BlockInfo *bi = report_add(&r, 10, 4096, 1, 1);
    bi->file_count = 3;
    bi->deleted_bytes = 100;
    r.removed[r.hb.n_removed_blocks++] = 11;
    r.removed[r.hb.n_removed_blocks++] = 999; /* unknown: ignored */
    cr_assert_eq(ns_hb_apply_blocks(&ns, a, &r.hb, NULL), 0);
    struct ns_block *blk = ns_blocks_get(&ns.blocks, 10);
    cr_assert_eq(blk->size, 4096);
    cr_assert_eq(blk->file_count, 3);
    cr_assert_eq(blk->deleted_bytes, 100);
    cr_assert(blk->sealed);
    cr_assert_eq(blk->nrep, 2, "an incremental report keeps other blocks and holders");
    cr_assert_null(ns_blocks_get(&ns.blocks, 11));
    cr_assert_eq(a->nblocks, 1);

    report_init(&r, 0);
    r.removed[r.hb.n_removed_blocks++] = 10;
    cr_assert_eq(ns_hb_apply_blocks(&ns, b, &r.hb, NULL), 0);
    blk = ns_blocks_get(&ns.blocks, 10);
    cr_assert_eq(blk->nrep, 1);
    cr_assert(holds(a, 10));
    cr_assert_not(holds(b, 10));
    cr_assert_eq(blk->rep[blk->primary], a->idx, "primary slot follows the shift");
    cr_assert(blk->sealed, "sealed stays sealed");
}

Test(ns_blocks, invalid_ids_skipped_and_high_water_bumped)
{
    struct ns_server *a = hb_server("a", ROOMY, 1);
    struct report r;
    report_init(&r, 1);
    report_add(&r, 0, 1, 1, 0);
    report_add(&r, NS_MAX_BLOCK_ID + 1, 1, 1, 0);
    report_add(&r, UINT64_MAX, 1, 1, 0);
    report_add(&r, 123456, 1, 1, 0);
    size_t skipped = 0;
    cr_assert_eq(ns_hb_apply_blocks(&ns, a, &r.hb, &skipped), 0);
    cr_assert_eq(skipped, 3);
    cr_assert_eq(ns.blocks.count, 1);
    cr_assert_eq(ns.meta.next_id, 123457);
    cr_assert_gt(ns.meta.block_id_reserved, 123456);
    uint64_t id;
    cr_assert_eq(ns_meta_alloc_id(&ns.meta, &id), 0);
    cr_assert_eq(id, 123457);
}

Test(ns_blocks, too_many_holders_ignored)
{
    char name[16];
    struct report r;
    for (int i = 0; i < NS_BLOCK_SLOTS + 2; i++) {
        snprintf(name, sizeof(name), "s%d", i);
        struct ns_server *s = hb_server(name, 1, 1);
        report_init(&r, 1);
        report_add(&r, 77, 1, 0, 0);
        size_t skipped = 0;
        cr_assert_eq(ns_hb_apply_blocks(&ns, s, &r.hb, &skipped), 0);
        cr_assert_eq(skipped, i < NS_BLOCK_SLOTS ? 0 : 1);
    }
    cr_assert_eq(ns_blocks_get(&ns.blocks, 77)->nrep, NS_BLOCK_SLOTS);
}

Test(ns_blocks, created_block_enters_map_and_pool)
{
    struct ns_server *a = hb_server("a", ROOMY, 1);
    struct ns_server *b = hb_server("b", ROOMY, 1);
    struct ns_server *reps[2] = {b, a};
    cr_assert_eq(ns_pool_add_created(&ns, 42, reps, 2), 0);
    struct ns_block *blk = ns_blocks_get(&ns.blocks, 42);
    cr_assert_not_null(blk);
    cr_assert_eq(blk->nrep, 2);
    cr_assert_eq(blk->rep[blk->primary], b->idx);
    cr_assert(blk->in_pool);
    cr_assert(ns_block_writable(&ns, blk));
}

/* After a nameserver restart the reports of an old primary (failed over while
 * it was down: older replica-set version, maybe longer) and of the current one
 * arrive in any order: the current one is primary either way, the old copy is
 * marked old, and the block's size is the current copies' size. */
static void old_primary_returns(int old_first)
{
    struct ns_server *o = hb_server("o", 1ull << 30, 1), *p = hb_server("p", 1ull << 30, 1);
    struct report ro, rp;
    report_init(&ro, 1);
    Imgstore__BlockInfo *bo = report_add(&ro, 40, 9000, 1, 1);
    bo->set_version = 5;
    report_init(&rp, 1);
    Imgstore__BlockInfo *bp = report_add(&rp, 40, 8800, 1, 1);
    bp->set_version = 6;
    if (old_first) {
        cr_assert_eq(ns_hb_apply_blocks(&ns, o, &ro.hb, NULL), 0);
        cr_assert_eq(ns_hb_apply_blocks(&ns, p, &rp.hb, NULL), 0);
    } else {
        cr_assert_eq(ns_hb_apply_blocks(&ns, p, &rp.hb, NULL), 0);
        cr_assert_eq(ns_hb_apply_blocks(&ns, o, &ro.hb, NULL), 0);
    }
    struct ns_block *b = ns_blocks_get(&ns.blocks, 40);
    cr_assert_not_null(b);
    cr_assert_eq(b->ver, 6);
    cr_assert_neq(b->primary, NS_NO_PRIMARY);
    cr_assert_eq(b->rep[b->primary], p->idx, "the newer set's primary keeps the role");
    int so = ns_block_find_rep(b, o->idx), sp = ns_block_find_rep(b, p->idx);
    cr_assert(ns_block_is_old(b, (unsigned)so), "the returning copy is of an older set");
    cr_assert_not(ns_block_is_old(b, (unsigned)sp));
    cr_assert_eq(b->size, 8800, "an old copy's extra bytes are not the block's size");
}

Test(ns_blocks, old_primary_reported_first_stays_old) { old_primary_returns(1); }

Test(ns_blocks, old_primary_reported_last_stays_old) { old_primary_returns(0); }

/* A member of a sealed block's set drops its copy (a failed disk: the next
 * report removes it) while the other member stays: the set takes a new
 * version at once (and is to be announced), so when the dropped copy comes
 * back, of the old version and listing itself, it is old, not a member
 * (it lacks every delete acknowledged on the smaller set meanwhile). */
Test(ns_blocks, member_that_drops_its_copy_returns_old)
{
    struct ns_server *a = hb_server("a", 1ull << 30, 1), *p = hb_server("p", 1ull << 30, 1);
    char *list[] = {"a", "p"};
    struct report r;
    report_init(&r, 1);
    Imgstore__BlockInfo *bi = report_add(&r, 50, 7000, 0, 1);
    bi->set_version = 3;
    bi->replicas = list;
    bi->n_replicas = 2;
    cr_assert_eq(ns_hb_apply_blocks(&ns, a, &r.hb, NULL), 0);
    report_init(&r, 1);
    bi = report_add(&r, 50, 7000, 1, 1);
    bi->set_version = 3;
    bi->replicas = list;
    bi->n_replicas = 2;
    cr_assert_eq(ns_hb_apply_blocks(&ns, p, &r.hb, NULL), 0);
    struct ns_block *b = ns_blocks_get(&ns.blocks, 50);
    cr_assert_not_null(b);
    cr_assert_eq(b->inset, 3, "both copies are members of version 3");
    cr_assert_not(b->set_shrunk);

    report_init(&r, 0); /* a's disk failed: its copy is reported removed */
    r.removed[r.hb.n_removed_blocks++] = 50;
    cr_assert_eq(ns_hb_apply_blocks(&ns, a, &r.hb, NULL), 0);
    cr_assert_eq(b->nrep, 1);
    cr_assert_gt(b->ver, 3, "a member that left changes the set's version");
    cr_assert(b->set_shrunk, "the planner is to tell the holders the smaller set");

    report_init(&r, 1); /* a comes back with the copy of version 3 */
    bi = report_add(&r, 50, 7000, 0, 1);
    bi->set_version = 3;
    bi->replicas = list;
    bi->n_replicas = 2;
    cr_assert_eq(ns_hb_apply_blocks(&ns, a, &r.hb, NULL), 0);
    int sa = ns_block_find_rep(b, a->idx);
    cr_assert_geq(sa, 0);
    cr_assert(ns_block_is_old(b, (unsigned)sa), "the returning copy is of the older set");
    cr_assert_not(b->inset & (1u << sa), "and not a member");
}
