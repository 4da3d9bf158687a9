/* Unit tests of rebalancing by used bytes (nameserver/ns_balance.c) and of
 * placement by used fraction (ns_pool.c), without sockets: nothing moves in
 * the band, an empty server receives blocks from the fullest ones, the
 * source's copy (never the primary) is the one deleted, moves in flight
 * count, the plan converges without moving a block twice, no move targets a
 * read-only, draining or down server, repair comes first, the band and the
 * task cap are respected. */
#include "ns_fixture.h"

#include "nameserver/ns_admin.h"

static const uint64_t MIB = NS_MIB;

/* A server of `capacity` bytes (its used bytes come from the block map). */
static struct ns_server *server(const char *id, uint64_t capacity)
{
    struct ns_server *s = hb_server(id, capacity, 1);
    s->capacity = capacity;
    s->free = capacity;
    return s;
}

/* Bytes server s holds in the block map. */
static uint64_t held(const struct ns_server *s)
{
    uint64_t n = 0;
    for (size_t i = 0; i < ns.blocks.cap; i++) {
        const struct ns_block *b = &ns.blocks.slots[i];
        int k = b->id ? ns_block_find_rep(b, s->idx) : -1;
        if (k >= 0)
            n += b->rsize[k];
    }
    return n;
}

static size_t running(int kind, const char *reason)
{
    size_t n = 0;
    for (size_t i = 0; i < ns.plan.ntasks; i++) {
        const struct ns_task *t = &ns.plan.tasks[i];
        n += t->state == NS_TASK_RUNNING && t->kind == kind &&
             (!reason || strcmp(t->reason, reason) == 0);
    }
    return n;
}

/* Four servers of 100 MiB: a..d each hold 20 blocks of 1 MiB (replication
 * 2, primaries spread), e is new and empty. */
static struct ns_server *four_full_one_empty(struct ns_server *sv[5])
{
    const char *ids[] = {"a", "b", "c", "d", "e"};
    for (int i = 0; i < 5; i++)
        sv[i] = server(ids[i], 100 * MIB);
    for (uint64_t id = 1; id <= 40; id++) {
        struct ns_server *r[] = {sv[id % 4], sv[(id + 1) % 4]};
        block(id, MIB, r, 2);
    }
    ns.safe_mode = 0;
    return sv[4];
}

/* Ends every running task successfully (a copy installs `size` bytes). */
/* Every primary answers the set its joining copies were put in with its
 * size as tail (nothing was deleted meanwhile): they are confirmed.
 * Returns how many blocks had joining copies. */
static size_t confirm_joins(void)
{
    size_t n = 0;
    for (size_t i = 0; i < ns.blocks.cap; i++) {
        struct ns_block *b = &ns.blocks.slots[i];
        if (!b->id || !b->joining || b->primary == NS_NO_PRIMARY)
            continue;
        ns_plan_primary_tail(&ns, b, b->rep[b->primary], b->ver, b->rsize[b->primary]);
        cr_assert_eq(b->joining, 0);
        n++;
    }
    return n;
}

static size_t finish_all(uint64_t now)
{
    size_t n = confirm_joins();
    for (size_t i = 0; i < ns.plan.ntasks; i++) {
        struct ns_task *t = &ns.plan.tasks[i];
        if (t->state != NS_TASK_RUNNING)
            continue;
        const struct ns_block *b = ns_blocks_get(&ns.blocks, t->block_id);
        cr_assert_eq(ns_plan_task_end(&ns, t->id, 0, b ? b->size : 0, now), 0);
        n++;
    }
    return n;
}

/* The blocks of these tests are 1 MiB: so is the block size (which sets
 * each server's reserve: 2 MiB here, docs/nameserver.md "Full servers"). */
static void setup_mib_blocks(void)
{
    setup();
    ns.meta.block_size = MIB;
}

TestSuite(ns_balance, .init = setup_mib_blocks, .fini = teardown);

Test(ns_balance, even_cluster_moves_nothing)
{
    struct ns_server *a = server("a", 100 * MIB), *b = server("b", 100 * MIB);
    struct ns_server *c = server("c", 100 * MIB);
    struct ns_server *r1[] = {a, b}, *r2[] = {b, c}, *r3[] = {c, a};
    block(1, 10 * MIB, r1, 2);
    block(2, 10 * MIB, r2, 2);
    block(3, 10 * MIB, r3, 2);
    ns.safe_mode = 0;
    ns_plan_step(&ns, 10);
    cr_assert_eq(ns.plan.ntasks, 0);
    struct ns_bal_view v;
    cr_assert_eq(ns_balance_view(&ns, 10, &v), 0);
    cr_assert(v.balanced);
    cr_assert_eq(v.nplan, 0);
    cr_assert_float_eq(v.mean, 0.2, 1e-9, "20 MiB of 100 MiB each");
    cr_assert_float_eq(v.band, 0.05, 1e-9, "the default band is 5 points");
    ns_balance_view_free(&v);
}

Test(ns_balance, plan_fills_the_empty_server_from_non_primary_copies)
{
    struct ns_server *sv[5];
    struct ns_server *e = four_full_one_empty(sv);
    struct ns_bal_view v;
    cr_assert_eq(ns_balance_view(&ns, 10, &v), 0);
    cr_assert_not(v.balanced);
    cr_assert_float_eq(v.mean, 80.0 / 500.0, 1e-9);
    cr_assert_not(v.servers[e->idx].in_band);
    cr_assert(v.nplan > 0);
    uint64_t to_e = 0;
    for (size_t i = 0; i < v.nplan; i++) {
        const struct ns_bal_plan *p = &v.plan[i];
        const struct ns_block *b = ns_blocks_get(&ns.blocks, p->block_id);
        cr_assert_eq(p->to, e->idx, "every move goes to the empty server");
        cr_assert_neq(b->rep[b->primary], p->from, "the primary's copy never moves");
        cr_assert_geq(ns_block_find_rep(b, p->from), 0);
        for (size_t j = 0; j < i; j++)
            cr_assert_neq(v.plan[j].block_id, p->block_id, "no block moves twice");
        to_e += p->bytes;
    }
    /* e ends within the band and no fuller than the mean plus the band. */
    double fe = (double)to_e / (double)(100 * MIB);
    cr_assert_geq(fe, v.mean - v.band);
    cr_assert_leq(fe, v.mean + v.band);
    ns_balance_view_free(&v);
    cr_assert_eq(ns.plan.ntasks, 0, "a view starts nothing");
}

Test(ns_balance, move_copies_then_deletes_the_source_copy)
{
    struct ns_server *sv[5];
    struct ns_server *e = four_full_one_empty(sv);
    ns_plan_step(&ns, 10);
    /* Task cap 2: e takes part in one move at a time. */
    cr_assert_eq(running(NS_TASK_REPLICATE, NS_BAL_REASON), 1);
    cr_assert_eq(ns.bal.nmoves, 1);
    struct ns_bal_move m = ns.bal.moves[0];
    cr_assert_eq(m.to, e->idx);
    const struct ns_task *t = ns_plan_task(&ns, m.task_id);
    cr_assert_not_null(t);
    cr_assert_eq(t->src, m.from, "the copy reads from the server giving the block up");
    uint64_t from_before = held(ns.servers[m.from]);
    /* The copy is installed: the next pass deletes the source's copy. */
    cr_assert_eq(ns_plan_task_end(&ns, m.task_id, 0, MIB, 20), 0);
    ns_plan_step(&ns, 20);
    cr_assert_eq(confirm_joins(), 1, "the new copy joins the set first");
    ns_plan_step(&ns, 25);
    const struct ns_task *del = NULL;
    for (size_t i = 0; i < ns.plan.ntasks; i++)
        if (ns.plan.tasks[i].state == NS_TASK_RUNNING && ns.plan.tasks[i].kind == NS_TASK_DELETE &&
            ns.plan.tasks[i].block_id == m.block_id)
            del = &ns.plan.tasks[i];
    cr_assert_not_null(del, "the extra copy is deleted");
    cr_assert_eq(del->dst, m.from, "the copy on the source goes, not another one");
    cr_assert_str_eq(del->reason, NS_BAL_REASON);
    cr_assert_eq(ns_plan_task_end(&ns, del->id, 0, 0, 30), 0);
    cr_assert_eq(held(ns.servers[m.from]), from_before - MIB);
    cr_assert_eq(held(e), MIB);
    ns_balance_plan(&ns, 40);
    cr_assert_eq(ns.bal.moves_done, 1);
    cr_assert_eq(ns.bal.bytes_moved, MIB);
}

Test(ns_balance, converges_in_band_without_oscillation)
{
    struct ns_server *sv[5];
    four_full_one_empty(sv);
    ns.cfg.task_cap = 4;
    uint64_t now = 10;
    size_t copies = 0;
    for (int round = 0; round < 200; round++, now += 10) {
        ns_plan_step(&ns, now);
        copies += running(NS_TASK_REPLICATE, NS_BAL_REASON);
        for (size_t s = 0; s < 5; s++)
            cr_assert_leq(sv[s]->tasks, 4, "never beyond the task cap");
        if (finish_all(now) == 0)
            break;
    }
    struct ns_bal_view v;
    cr_assert_eq(ns_balance_view(&ns, now, &v), 0);
    cr_assert(v.balanced, "every server ends in the band");
    cr_assert_eq(v.nplan, 0, "nothing left to plan");
    ns_balance_view_free(&v);
    cr_assert_eq(ns.bal.nmoves, 0);
    cr_assert_eq(ns.bal.moves_done, copies, "every move completed");
    /* 16 MiB is the mean; e needs 11 MiB at least (mean - band) and no more
     * moves than the 16 that reach the mean. */
    cr_assert_geq(held(sv[4]), 11 * MIB);
    cr_assert_leq(copies, 16);
    for (uint64_t id = 1; id <= 40; id++)
        cr_assert_eq(ns_blocks_get(&ns.blocks, id)->nrep, 2, "every block keeps 2 copies");
}

Test(ns_balance, in_flight_moves_count)
{
    struct ns_server *sv[5];
    struct ns_server *e = four_full_one_empty(sv);
    ns_plan_step(&ns, 10);
    cr_assert_eq(ns.bal.nmoves, 1);
    struct ns_bal_view v;
    cr_assert_eq(ns_balance_view(&ns, 10, &v), 0);
    cr_assert_eq(v.servers[e->idx].used, MIB, "the copy heading to e counts");
    cr_assert_eq(v.servers[e->idx].running, 1);
    for (size_t i = 0; i < v.nplan; i++)
        cr_assert_neq(v.plan[i].block_id, ns.bal.moves[0].block_id);
    ns_balance_view_free(&v);
    /* A second pass while the copy runs starts nothing more for e. */
    ns_plan_step(&ns, 20);
    cr_assert_eq(running(NS_TASK_REPLICATE, NS_BAL_REASON), 1);
}

Test(ns_balance, no_target_read_only_draining_or_down)
{
    struct ns_server *sv[5];
    struct ns_server *e = four_full_one_empty(sv);
    e->readonly = 1;
    ns_plan_step(&ns, 10);
    cr_assert_eq(ns.plan.ntasks, 0, "a read-only server receives nothing");
    e->readonly = 0;
    e->draining = 1;
    ns_plan_step(&ns, 20);
    cr_assert_eq(running(NS_TASK_REPLICATE, NS_BAL_REASON), 0, "nor a draining one");
    e->draining = 0;
    e->up = 0;
    ns_plan_step(&ns, 30);
    cr_assert_eq(running(NS_TASK_REPLICATE, NS_BAL_REASON), 0, "nor a down one");
    e->up = 1;
    ns_plan_step(&ns, 40);
    cr_assert_eq(running(NS_TASK_REPLICATE, NS_BAL_REASON), 1);
}

Test(ns_balance, repair_first)
{
    struct ns_server *sv[5];
    struct ns_server *e = four_full_one_empty(sv);
    /* Block 99 lost a copy: a holds it alone. a is left to the repair. */
    struct ns_server *r[] = {sv[0]};
    block(99, MIB, r, 1);
    struct ns_bal_view v;
    cr_assert_eq(ns_balance_view(&ns, 10, &v), 0);
    ns_balance_view_free(&v);
    ns_plan_step(&ns, 10);
    size_t repair = 0;
    for (size_t i = 0; i < ns.plan.ntasks; i++) {
        const struct ns_task *t = &ns.plan.tasks[i];
        if (t->state != NS_TASK_RUNNING)
            continue;
        if (strcmp(t->reason, NS_BAL_REASON) == 0) {
            cr_assert_neq(t->src, sv[0]->idx, "a holds lost redundancy: no balance move");
            cr_assert_neq(t->dst, sv[0]->idx);
        } else {
            repair++;
        }
    }
    cr_assert_eq(repair, 1, "the under-replicated block is copied");
    (void)e;
}

Test(ns_balance, band_and_task_cap)
{
    struct ns_server *sv[5];
    four_full_one_empty(sv);
    ns.meta.setting[NS_SETTING_REBALANCE_BAND] = 20;
    ns.meta.setting_set |= 1u << NS_SETTING_REBALANCE_BAND;
    ns_plan_step(&ns, 10);
    cr_assert_eq(ns.plan.ntasks, 0, "16%% mean, 20 points band: all in band");
    ns.meta.setting_set = 0;
    ns.cfg.task_cap = 1;
    ns_plan_step(&ns, 20);
    cr_assert_eq(ns.plan.ntasks, 0, "half of a cap of 1 leaves no move");
    ns.cfg.task_cap = 4;
    ns_plan_step(&ns, 30);
    cr_assert_eq(running(NS_TASK_REPLICATE, NS_BAL_REASON), 2, "half of 4 into e");
}

Test(ns_balance, primary_copies_stay)
{
    struct ns_server *a = server("a", 100 * MIB), *b = server("b", 100 * MIB);
    struct ns_server *c = server("c", 100 * MIB);
    /* a is the primary of everything and b holds the other copy. */
    for (uint64_t id = 1; id <= 10; id++) {
        struct ns_server *r[] = {a, b};
        block(id, 4 * MIB, r, 2);
    }
    ns.safe_mode = 0;
    struct ns_bal_view v;
    cr_assert_eq(ns_balance_view(&ns, 10, &v), 0);
    cr_assert(v.nplan > 0);
    for (size_t i = 0; i < v.nplan; i++) {
        cr_assert_eq(v.plan[i].from, b->idx, "only b's copies move");
        cr_assert_eq(v.plan[i].to, c->idx);
    }
    ns_balance_view_free(&v);
}

Test(ns_balance, unequal_capacities_balance_fractions)
{
    struct ns_server *a = server("a", 100 * MIB), *b = server("b", 400 * MIB);
    struct ns_server *c = server("c", 100 * MIB);
    /* 60 MiB on each of a and c (60%), b empty: mean 120/600 = 20%. */
    for (uint64_t id = 1; id <= 60; id++) {
        struct ns_server *r[] = {id % 2 ? a : c, id % 2 ? c : a};
        block(id, MIB, r, 2);
    }
    ns.safe_mode = 0;
    struct ns_bal_view v;
    cr_assert_eq(ns_balance_view(&ns, 10, &v), 0);
    uint64_t to_b = 0;
    for (size_t i = 0; i < v.nplan; i++)
        to_b += v.plan[i].to == b->idx ? v.plan[i].bytes : 0;
    double fb = (double)to_b / (double)(400 * MIB);
    cr_assert_geq(fb, 0.15, "b is filled to its share of its larger capacity");
    cr_assert_leq(fb, 0.25);
    ns_balance_view_free(&v);
}

Test(ns_balance, placement_prefers_lower_used_fraction)
{
    struct ns_server *a = server("a", 100 * MIB), *b = server("b", 100 * MIB);
    struct ns_server *c = server("c", 100 * MIB);
    a->used = 50 * MIB;
    b->used = 10 * MIB;
    c->used = 30 * MIB;
    a->free = 90 * MIB; /* more free bytes (a shared file system) do not win */
    struct ns_server *out[3];
    cr_assert_eq(ns_pool_place(&ns, 3, out), 0);
    cr_assert_eq(out[0], b);
    cr_assert_eq(out[1], c);
    cr_assert_eq(out[2], a);
}

Test(ns_balance, target_needs_free_space)
{
    struct ns_server *sv[5];
    struct ns_server *e = four_full_one_empty(sv);
    e->free = MIB / 2; /* its disk is nearly full of something else */
    struct ns_bal_view v;
    cr_assert_eq(ns_balance_view(&ns, 10, &v), 0);
    for (size_t i = 0; i < v.nplan; i++)
        cr_assert_neq(v.plan[i].to, e->idx, "no 1 MiB block into half a MiB");
    ns_balance_view_free(&v);
    e->free = 3 * MIB;
    cr_assert_eq(ns_balance_view(&ns, 10, &v), 0);
    uint64_t to_e = 0;
    for (size_t i = 0; i < v.nplan; i++)
        to_e += v.plan[i].to == e->idx ? v.plan[i].bytes : 0;
    cr_assert_eq(to_e, MIB, "as much as its free space holds above its 2 MiB reserve");
    ns_balance_view_free(&v);
    e->free = 5 * MIB;
    cr_assert_eq(ns_balance_view(&ns, 10, &v), 0);
    to_e = 0;
    for (size_t i = 0; i < v.nplan; i++)
        to_e += v.plan[i].to == e->idx ? v.plan[i].bytes : 0;
    cr_assert_eq(to_e, 3 * MIB, "as much as its free space holds above its 2 MiB reserve");
    ns_balance_view_free(&v);
}

Test(ns_balance, placement_leaves_full_servers_out)
{
    struct ns_server *a = server("a", 100 * MIB), *b = server("b", 100 * MIB);
    a->used = 0;
    a->free = 2 * MIB; /* emptiest by fraction, but no room for a block above its reserve */
    b->used = 30 * MIB;
    struct ns_server *out[2] = {NULL, NULL};
    cr_assert_eq(ns_pool_place(&ns, 1, out), 0);
    cr_assert_eq(out[0], b);
    cr_assert_eq(ns_pool_place(&ns, 2, out), IMG_ENOBLOCK, "a full server is never chosen");
    a->free = 3 * MIB; /* room for one block and the 2 MiB reserve */
    cr_assert_eq(ns_pool_place(&ns, 2, out), 0);
    cr_assert_eq(out[0], a);
    cr_assert_eq(out[1], b);
}
