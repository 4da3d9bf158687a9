/* Unit tests of the self-healing planner (nameserver/ns_plan.c), without
 * sockets: which blocks get tasks first, source and target choice, the
 * per-server cap, nothing in safe mode, lost blocks counted and kept, extra
 * replicas deleted only with enough other copies, drain, primary failover,
 * the replica set and tail catch-up of short copies. */
#include "tests/unit/ns_fixture.h"

static const uint64_t GIB = 1024 * NS_MIB;

/* A server with `free_bytes` free whose full report arrived at time 1. */
static struct ns_server *server(const char *id, uint64_t free_bytes)
{
    struct ns_server *s = hb_server(id, free_bytes, 1);
    s->full_reported = 1;
    return s;
}

static size_t running(int kind)
{
    size_t n = 0;
    for (size_t i = 0; i < ns.plan.ntasks; i++)
        n += ns.plan.tasks[i].state == NS_TASK_RUNNING && ns.plan.tasks[i].kind == kind;
    return n;
}

static const struct ns_task *task_for(uint64_t block_id)
{
    for (size_t i = 0; i < ns.plan.ntasks; i++)
        if (ns.plan.tasks[i].block_id == block_id && ns.plan.tasks[i].state == NS_TASK_RUNNING)
            return &ns.plan.tasks[i];
    return NULL;
}

/* The primary (server p) answers the set of block `id` with tail `tail`;
 * every joining copy must then be confirmed. */
static void join_confirm(uint64_t id, struct ns_server *p, uint64_t tail)
{
    struct ns_block *blk = ns_blocks_get(&ns.blocks, id);
    cr_assert_not_null(blk);
    cr_assert_neq(blk->joining, 0, "a new copy joins the set");
    ns_plan_primary_tail(&ns, blk, p->idx, blk->ver, tail);
    cr_assert_eq(blk->joining, 0, "joining copies confirmed by the primary's tail");
}

/* Copy task t of block `id` ends at time 20 with `size` bytes; the new copy
 * joins the set when the primary p confirms it, and nothing is deleted
 * before. Returns the block's next task: the DELETE of the copy now extra. */
static const struct ns_task *copy_joins_then_delete(const struct ns_task *t, uint64_t id,
                                                    struct ns_server *p, uint64_t size)
{
    cr_assert_eq(ns_plan_task_end(&ns, t->id, 0, size, 20), 0);
    ns_plan_step(&ns, 30);
    cr_assert_null(task_for(id), "nothing is deleted while the new copy is joining");
    join_confirm(id, p, size);
    ns_plan_step(&ns, 35);
    t = task_for(id);
    cr_assert_not_null(t);
    cr_assert_eq(t->kind, NS_TASK_DELETE);
    return t;
}

/* Planning on (safe mode over), and block `id` of `size` bytes on a, its
 * primary, b and, unless NULL, c. Returns the block. */
static struct ns_block *held_block(uint64_t id, uint64_t size, struct ns_server *a,
                                   struct ns_server *b, struct ns_server *c)
{
    struct ns_server *r[] = {a, b, c};
    ns.safe_mode = 0;
    block(id, size, r, c ? 3 : 2);
    return ns_blocks_get(&ns.blocks, id);
}

/* The replica set of blk (a's copy) is at version `ver`; b's copy, `size`
 * bytes, is of the set before it and out of the set. */
static void old_copy_on_b(struct ns_block *blk, uint32_t ver, uint64_t size)
{
    blk->ver = ver;
    blk->rver[0] = ver;
    blk->rver[1] = ver - 1;
    blk->rsize[1] = size;
    blk->inset = 1u;
}

TestSuite(ns_plan, .init = setup, .fini = teardown);

Test(ns_plan, nothing_in_safe_mode)
{
    struct ns_server *a = server("a", GIB), *b = server("b", GIB);
    server("c", 9 * GIB);
    struct ns_server *r[] = {a, b};
    block(1, 1000, r, 2);
    b->up = 0;
    ns.safe_mode = 1;
    ns_plan_step(&ns, 10);
    cr_assert_eq(ns.plan.ntasks, 0);
    ns.safe_mode = 0;
    ns_plan_step(&ns, 20);
    cr_assert_eq(running(NS_TASK_REPLICATE), 1);
}

Test(ns_plan, repair_target_keeps_its_reserve)
{
    struct ns_server *a = server("a", GIB), *b = server("b", GIB);
    struct ns_server *c = server("c", 5 * GIB), *d = server("d", 2 * GIB);
    struct ns_server *r[] = {a, b};
    ns.safe_mode = 0;
    block(7, 64 * NS_MIB, r, 2);
    c->free = ns_server_reserve(&ns, c) + 32 * NS_MIB; /* most free, but not room for 64 MiB */
    d->free = ns_server_reserve(&ns, d) - 1;            /* full */
    b->up = 0;
    ns_plan_step(&ns, 10);
    cr_assert_null(task_for(7), "no copy onto a server that would end below its reserve");
    d->free = ns_server_reserve(&ns, d) + 64 * NS_MIB;
    ns_plan_step(&ns, 20);
    const struct ns_task *t = task_for(7);
    cr_assert_not_null(t);
    cr_assert_eq(t->dst, d->idx, "the only server with room for the block above its reserve");
}

Test(ns_plan, source_primary_target_most_free)
{
    struct ns_server *a = server("a", GIB), *b = server("b", 2 * GIB);
    struct ns_server *c = server("c", 5 * GIB);
    server("d", 3 * GIB);
    held_block(7, 4096, a, b, NULL);
    b->up = 0;
    ns_plan_step(&ns, 10);
    const struct ns_task *t = task_for(7);
    cr_assert_not_null(t);
    cr_assert_eq(t->src, a->idx, "the up replica is the source");
    cr_assert_eq(t->dst, c->idx, "the server with the most free bytes is the target");
    cr_assert_eq(t->bytes_total, 4096);
    /* The copy is reported: the target holds the block now. */
    cr_assert_eq(ns_plan_task_end(&ns, t->id, 0, 4096, 30), 0);
    cr_assert_geq(ns_block_find_rep(ns_blocks_get(&ns.blocks, 7), c->idx), 0);
    cr_assert_eq(a->tasks + c->tasks, 0, "cap slots released");
}

Test(ns_plan, fewest_replicas_first_and_cap)
{
    ns.meta.replicas = 3;
    struct ns_server *a = server("a", GIB), *b = server("b", GIB), *c = server("c", GIB);
    struct ns_server *d = server("d", 8 * GIB);
    ns.safe_mode = 0;
    /* Block 1 keeps 2 of 3 replicas, block 2 only 1 of 3: block 2 first. */
    struct ns_server *r1[] = {a, b, c}, *r2[] = {c, a, b};
    block(1, 100, r1, 3);
    block(2, 100, r2, 3);
    c->up = 0;
    ns_plan_step(&ns, 10);
    /* Both draw on a (cap 2) and d; block 2 (1 up) must be among them. */
    cr_assert_not_null(task_for(2), "the block with the fewest replicas goes first");
    for (size_t i = 0; i < ns.nservers; i++)
        cr_assert_leq(ns.servers[i]->tasks, NS_DEFAULT_TASK_CAP, "%s over the cap",
                      ns.servers[i]->id);
    (void)d;
}

Test(ns_plan, cap_limits_running_tasks)
{
    struct ns_server *a = server("a", GIB), *b = server("b", GIB);
    server("c", 9 * GIB);
    for (uint64_t id = 1; id <= 10; id++)
        held_block(id, 100, a, b, NULL);
    b->up = 0;
    ns_plan_step(&ns, 10);
    cr_assert_eq(running(NS_TASK_REPLICATE), NS_DEFAULT_TASK_CAP);
    ns_plan_step(&ns, 20);
    cr_assert_eq(running(NS_TASK_REPLICATE), NS_DEFAULT_TASK_CAP, "no task beyond the cap");
}

Test(ns_plan, lost_blocks_counted_not_dropped)
{
    struct ns_server *a = server("a", GIB), *b = server("b", GIB);
    server("c", GIB);
    held_block(5, 100, a, b, NULL);
    a->up = b->up = 0;
    ns_plan_step(&ns, 10);
    ns_plan_step(&ns, 2000);
    cr_assert_eq(ns.plan.nlost, 1);
    cr_assert_not_null(ns_blocks_get(&ns.blocks, 5), "a lost block stays in the map");
    cr_assert_eq(ns.plan.ntasks, 0);
}

Test(ns_plan, extra_replica_deleted_only_with_enough_copies)
{
    struct ns_server *a = server("a", GIB), *b = server("b", GIB), *c = server("c", 2 * GIB);
    held_block(9, 100, a, b, c);
    ns_plan_step(&ns, 10);
    const struct ns_task *t = task_for(9);
    cr_assert_not_null(t);
    cr_assert_eq(t->kind, NS_TASK_DELETE);
    cr_assert_neq(t->dst, a->idx, "the primary's copy is kept");
    cr_assert_eq(t->dst, b->idx, "the copy on the fullest server goes");
    cr_assert_eq(ns_plan_task_end(&ns, t->id, 0, 0, 20), 0);
    cr_assert_eq(ns_blocks_get(&ns.blocks, 9)->nrep, 2);
    /* With one of the remaining two down, nothing more is deleted. */
    ns_plan_step(&ns, 30);
    cr_assert_eq(running(NS_TASK_DELETE), 0);
    c->up = 0;
    held_block(10, 100, a, b, c);
    ns_plan_step(&ns, 40);
    cr_assert_null(task_for(10), "only 2 up copies: nothing is extra");
}

Test(ns_plan, drain_copies_then_deletes)
{
    struct ns_server *a = server("a", GIB), *b = server("b", GIB), *c = server("c", GIB);
    held_block(3, 100, a, b, NULL);
    uint32_t left = 0;
    cr_assert_eq(ns_plan_drain(&ns, "b", 0, &left), 0);
    cr_assert_eq(left, 1);
    cr_assert_eq(ns_plan_drain(&ns, "nope", 0, &left), IMG_ENOTFOUND);
    struct ns_server *out[2];
    cr_assert_eq(ns_pool_place(&ns, 2, out), 0);
    cr_assert(out[0] != b && out[1] != b, "no new block on a draining server");
    ns_plan_step(&ns, 10);
    const struct ns_task *t = task_for(3);
    cr_assert_not_null(t);
    cr_assert_eq(t->kind, NS_TASK_REPLICATE);
    cr_assert_eq(t->dst, c->idx);
    t = copy_joins_then_delete(t, 3, a, 100);
    cr_assert_eq(t->dst, b->idx, "the draining copy goes");
    cr_assert_eq(ns_plan_task_end(&ns, t->id, 0, 0, 40), 0);
    cr_assert_eq(b->nblocks, 0);
}

Test(ns_plan, primary_failover_promotes_longest_after_timeout)
{
    struct ns_server *a = server("a", GIB), *b = server("b", GIB), *c = server("c", GIB);
    ns.meta.replicas = 3;
    struct ns_block *blk = held_block(9, 8192, a, b, c);
    blk->rsize[1] = 4096; /* b is short, c holds the longest copy */
    a->up = 0;
    a->last_hb_ms = 1;
    ns_plan_step(&ns, 100);
    cr_assert_eq(blk->primary, 0, "no failover before the heartbeat timeout");
    ns_plan_step(&ns, 1 + NS_DEFAULT_HB_TIMEOUT_MS);
    cr_assert_eq(blk->rep[blk->primary], c->idx, "the longest up copy becomes primary");
    cr_assert(blk->inset & (1u << blk->primary));
    cr_assert_not(blk->inset & 1u, "the down old primary leaves the replica set");
}

Test(ns_plan, stale_copy_caught_up_from_the_longest)
{
    struct ns_server *a = server("a", GIB), *b = server("b", GIB);
    struct ns_block *blk = held_block(11, 8192, a, b, NULL);
    blk->rsize[1] = 4096;
    blk->inset = 1u; /* b came back short: not in the set */
    ns_plan_step(&ns, 10);
    const struct ns_task *t = task_for(11);
    cr_assert_not_null(t);
    cr_assert_eq(t->kind, NS_TASK_REPLICATE);
    cr_assert_eq(t->src, a->idx);
    cr_assert_eq(t->dst, b->idx);
    cr_assert_str_eq(t->reason, "stale copy");
    cr_assert_eq(t->bytes_total, 4096, "only the tail is copied");
    cr_assert_not(blk->inset & 2u, "a short copy joins the set only when complete");
    cr_assert_eq(ns_plan_task_end(&ns, t->id, 0, 8192, 20), 0);
    cr_assert_eq(blk->rsize[1], 8192);
    ns_plan_step(&ns, 30);
    cr_assert(blk->inset & 2u, "the caught-up copy is in the set");
}

Test(ns_plan, member_short_for_one_report_waits_a_pass)
{
    struct ns_server *a = server("a", GIB), *b = server("b", GIB);
    held_block(12, 8192, a, b, NULL)->rsize[1] = 8000;
    ns_plan_step(&ns, 10);
    cr_assert_null(task_for(12), "a heartbeat may still be on its way");
    ns_plan_step(&ns, 2000);
    cr_assert_not_null(task_for(12), "still short a pass later: caught up");
}

Test(ns_plan, new_copy_joins_set_only_when_complete)
{
    struct ns_server *a = server("a", GIB), *b = server("b", GIB), *c = server("c", 5 * GIB);
    held_block(13, 8192, a, b, NULL);
    b->up = 0;
    ns_plan_step(&ns, 10);
    const struct ns_task *t = task_for(13);
    cr_assert_not_null(t);
    cr_assert_eq(t->dst, c->idx);
    /* Tombstones went to a while the copy ran: the copy is short. */
    struct ns_block *blk = ns_blocks_get(&ns.blocks, 13);
    blk->rsize[0] = 8256;
    cr_assert_eq(ns_plan_task_end(&ns, t->id, 0, 8192, 20), 0);
    int slot = ns_block_find_rep(blk, c->idx);
    cr_assert_geq(slot, 0);
    ns_plan_step(&ns, 30);
    cr_assert_not(blk->inset & (1u << slot));
    const struct ns_task *cu = task_for(13);
    cr_assert_not_null(cu);
    cr_assert_str_eq(cu->reason, "stale copy");
}

Test(ns_plan, old_copy_never_source_and_replaced)
{
    struct ns_server *a = server("a", GIB), *b = server("b", GIB), *c = server("c", 5 * GIB);
    struct ns_block *blk = held_block(14, 8192, a, b, NULL);
    /* b returns with a copy of an older set, longer than a's: it may hold
     * appends a never had, and lack a's tombstones. */
    old_copy_on_b(blk, 3, 9000);
    ns_plan_step(&ns, 10);
    const struct ns_task *t = task_for(14);
    cr_assert_not_null(t, "one good copy: a new one is made");
    cr_assert_eq(t->kind, NS_TASK_REPLICATE);
    cr_assert_eq(t->src, a->idx, "never copied from the old copy, even when longer");
    cr_assert_eq(t->dst, c->idx);
    cr_assert_not(blk->inset & 2u, "the old copy never joins the set");
    t = copy_joins_then_delete(t, 14, a, 8192);
    cr_assert_eq(t->dst, b->idx, "the old copy is the one deleted");
}

/* A new copy as long as the others by the reported sizes joins the set the
 * primary gets, but is not counted, listed or made a source until the
 * primary's tail is known: a tombstone the primary acknowledged before it
 * knew the new copy may be missing from it. */
Test(ns_plan, new_copy_joins_only_when_as_long_as_the_primary_tail)
{
    struct ns_server *a = server("a", GIB), *b = server("b", GIB), *c = server("c", 5 * GIB);
    struct ns_block *blk = held_block(16, 8192, a, b, NULL);
    b->up = 0; /* b is lost: a new copy goes to c */
    b->last_hb_ms = 1;
    ns_plan_step(&ns, 1 + NS_DEFAULT_HB_TIMEOUT_MS);
    const struct ns_task *t = task_for(16);
    cr_assert_not_null(t);
    cr_assert_eq(t->dst, c->idx);
    cr_assert_eq(ns_plan_task_end(&ns, t->id, 0, 8192, 2 + NS_DEFAULT_HB_TIMEOUT_MS), 0);
    ns_plan_step(&ns, 3 + NS_DEFAULT_HB_TIMEOUT_MS);
    int cs = ns_block_find_rep(blk, c->idx);
    cr_assert_geq(cs, 0);
    cr_assert(blk->inset & (1u << cs), "the primary forwards to the new copy");
    cr_assert(blk->joining & (1u << cs), "but it is joining");
    cr_assert(ns_block_is_unready(blk, (unsigned)cs));
    cr_assert_eq(ns_block_good_reps(&ns, blk), 1, "a joining copy is not counted");
    cr_assert_null(task_for(16), "and no third copy is made meanwhile");
    /* The primary answers: a tombstone made its tail 8216, the new copy has
     * 8192 bytes: not confirmed; it is caught up from a. */
    blk->rsize[0] = 8216;
    ns_plan_primary_tail(&ns, blk, a->idx, blk->ver, 8216);
    cr_assert(blk->joining & (1u << cs), "short of the primary's tail: still joining");
    ns_plan_primary_tail(&ns, blk, c->idx, blk->ver, 0);
    cr_assert(blk->joining & (1u << cs), "an answer from another server is ignored");
    ns_plan_step(&ns, 4 + NS_DEFAULT_HB_TIMEOUT_MS); /* a member short once waits a pass */
    ns_plan_step(&ns, 5 + NS_DEFAULT_HB_TIMEOUT_MS);
    t = task_for(16);
    cr_assert_not_null(t, "the joining copy is caught up");
    cr_assert_eq(t->src, a->idx);
    cr_assert_eq(t->dst, c->idx);
    cr_assert_eq(ns_plan_task_end(&ns, t->id, 0, 8216, 6 + NS_DEFAULT_HB_TIMEOUT_MS), 0);
    cr_assert(blk->joining & (1u << cs), "confirmed only by the primary's answer");
    ns_plan_primary_tail(&ns, blk, a->idx, blk->ver - 1, 8216);
    cr_assert(blk->joining & (1u << cs), "an answer to an older set is ignored");
    ns_plan_primary_tail(&ns, blk, a->idx, blk->ver, 8216);
    cr_assert_not(blk->joining & (1u << cs), "as long as the primary's tail: confirmed");
    cr_assert_eq(ns_block_good_reps(&ns, blk), 2);
}

Test(ns_plan, set_change_bumps_version)
{
    struct ns_server *a = server("a", GIB), *b = server("b", GIB), *c = server("c", GIB);
    ns.meta.replicas = 3;
    struct ns_block *blk = held_block(15, 8192, a, b, c);
    uint32_t v = blk->ver;
    a->up = 0;
    a->last_hb_ms = 1;
    ns_plan_step(&ns, 1 + NS_DEFAULT_HB_TIMEOUT_MS);
    cr_assert_gt(blk->ver, v, "failover is a new set version");
    a->up = 1; /* a returns with its old version: it is not trusted */
    cr_assert(ns_block_is_old(blk, 0));
}

Test(ns_plan, old_prefix_caught_up_from_bad_current_copy)
{
    struct ns_server *a = server("a", GIB), *b = server("b", GIB);
    server("c", 5 * GIB);
    struct ns_block *blk = held_block(16, 8192, a, b, NULL);
    /* b was down while a took deletes alone (a new set), and a's copy then
     * went bad: b's shorter copy is caught up from a (its tail only). */
    old_copy_on_b(blk, 4, 8000);
    ns_bad_mark(&ns, 16, a->idx, "test");
    ns_plan_step(&ns, 10);
    const struct ns_task *t = task_for(16);
    cr_assert_not_null(t);
    cr_assert_eq(t->kind, NS_TASK_REPLICATE);
    cr_assert_eq(t->dst, b->idx, "the old prefix is caught up first");
    cr_assert_eq(t->src, a->idx);
    cr_assert_str_eq(t->reason, "stale copy");
}

Test(ns_plan, copy_progress_from_heartbeats)
{
    struct ns_server *a = server("a", GIB), *b = server("b", GIB), *c = server("c", 5 * GIB);
    held_block(17, 8192, a, b, NULL);
    b->up = 0;
    ns_plan_step(&ns, 10);
    struct ns_task *t = (struct ns_task *)task_for(17);
    cr_assert_not_null(t);
    cr_assert_eq(t->dst, c->idx);
    Imgstore__CopyProgress p[3], *pp[3];
    for (int i = 0; i < 3; i++) {
        imgstore__copy_progress__init(&p[i]);
        pp[i] = &p[i];
    }
    p[0].task_id = t->id;
    p[0].block_id = 17;
    p[0].bytes_done = 4096;
    p[1].task_id = t->id; /* names another block: ignored */
    p[1].block_id = 99;
    p[1].bytes_done = 1;
    p[2].task_id = t->id + 100; /* no such task */
    p[2].block_id = 17;
    Imgstore__Heartbeat hb = IMGSTORE__HEARTBEAT__INIT;
    hb.n_copies = 3;
    hb.copies = pp;
    ns_plan_progress(&ns, c, &hb);
    cr_assert_eq(t->bytes_done, 4096, "progress shows while the copy runs");
    ns_plan_progress(&ns, a, &hb);
    cr_assert_eq(t->bytes_done, 4096, "only the copy's target reports it");
    p[0].bytes_done = 1u << 30;
    ns_plan_progress(&ns, c, &hb);
    cr_assert_eq(t->bytes_done, t->bytes_total, "never past the total");
}
