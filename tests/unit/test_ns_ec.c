/* Unit tests of the nameserver's stripe table (nameserver/ns_ec.c): stripes
 * rebuilt from the shard holders' reports, hostile entries ignored, full
 * reports dropping shards, a second copy of a shard not taken, LOOKUP's
 * shard list, the repair planner (most endangered stripe first, never
 * onto a server holding another shard of the stripe) and drains (a shard of
 * a whole stripe moved off a draining holder, repair first, a down draining
 * holder's shard rebuilt; shards counted per server), a stripe's garbage
 * and generation from the reports (a shard of another generation ignored)
 * and the compaction threshold rule. No loop: the
 * planner's tasks are inspected. */
#include "nameserver/ns_ec.h"

#include "ns_ec_fixture.h"

#include <inttypes.h>

TestSuite(ns_ec, .init = setup, .fini = teardown);

/* Applies a heartbeat of server s listing entries e[0..n). */
static size_t report(struct ns_server *s, Imgstore__ShardInfo *e, size_t n, int full)
{
    Imgstore__ShardInfo *p[16];
    for (size_t i = 0; i < n; i++)
        p[i] = &e[i];
    Imgstore__Heartbeat hb = IMGSTORE__HEARTBEAT__INIT;
    hb.server_id = s->id;
    hb.full_report = full;
    hb.n_shards = n;
    hb.shards = p;
    return ns_ec_apply_report(&ns, s, &hb);
}

static struct ns_server *srv[8];

static void servers(int n)
{
    for (int i = 0; i < n; i++) {
        char id[16];
        snprintf(id, sizeof(id), "ds%d", i + 1);
        srv[i] = hb_server(id, ROOMY - (uint64_t)i * NS_MIB, 1000);
    }
}

/* Block id's six shards reported by srv[0..5]. */
static void stripe(uint64_t id)
{
    for (unsigned i = 0; i < K + M; i++) {
        Imgstore__ShardInfo x = entry(id, i);
        cr_assert_eq(report(srv[i], &x, 1, 0), 0);
    }
}

Test(ns_ec, reports_build_the_stripe)
{
    servers(6);
    stripe(7);
    const struct ns_stripe *st = ns_ec_get(&ns, 7);
    cr_assert_not_null(st);
    cr_assert(st->k == K && st->m == M && st->shard_len == L && st->block_len == BLEN);
    for (unsigned i = 0; i < K + M; i++)
        cr_assert_eq(st->holder[i], srv[i]->idx);
    cr_assert_eq(st->seq_first[2], 200);
    uint64_t raw, logical;
    uint32_t n;
    ns_ec_bytes(&ns, &raw, &logical, &n);
    cr_assert(n == 1 && logical == BLEN && raw == 6ull * (L + 8192));
    struct ns_ec_loc loc;
    cr_assert_eq(ns_ec_fill_loc(&ns, 7, &loc), 6);
    cr_assert_eq(loc.loc[0].index, 0);
    cr_assert_eq(loc.loc[1].seq_first, 100);
    cr_assert_eq(loc.loc[5].seq_last, 0); /* parity: no range */
    ns_registry_mark_down(&ns, srv[1], "test");
    cr_assert_eq(ns_ec_fill_loc(&ns, 7, &loc), 5, "a down holder is not listed");
    cr_assert_eq(ns_ec_fill_loc(&ns, 8, &loc), 0);
}

Test(ns_ec, hostile_entries_ignored)
{
    servers(1);
    Imgstore__ShardInfo e[9];
    uint32_t bad_first[K] = {5, 0, 0, 0}, bad_last[K] = {4, 0, 0, 0};
    for (int i = 0; i < 9; i++)
        e[i] = entry(9, 0);
    e[0].k = 5;                                  /* no such scheme */
    e[1].m = 0;
    e[2].index = K + M;                          /* index out of range */
    e[3].n_seq_first = K - 1;                    /* seq ranges of the wrong count */
    e[4].shard_len = L + 1;                      /* not a multiple of 4 KiB */
    e[5].shard_len = 0;
    e[6].block_len = (uint64_t)K * L + 1;        /* longer than k shards */
    e[7].seq_first = bad_first;                  /* first > last */
    e[7].seq_last = bad_last;
    e[8].block_len = 0;
    cr_assert_eq(report(srv[0], e, 9, 0), 9);
    cr_assert_null(ns_ec_get(&ns, 9), "a hostile entry made a stripe");
}

Test(ns_ec, other_encodings_and_second_copies_ignored)
{
    servers(7);
    stripe(7);
    Imgstore__ShardInfo x = entry(7, 3);
    x.shard_len = 2 * L; /* another encoding of the block */
    cr_assert_eq(report(srv[6], &x, 1, 0), 1);
    x = entry(7, 3); /* a second copy of shard 3 while its holder is up */
    report(srv[6], &x, 1, 0);
    const struct ns_stripe *st = ns_ec_get(&ns, 7);
    cr_assert_eq(st->holder[3], srv[3]->idx, "the first holder keeps its shard");
    cr_assert_eq(st->nstale, 1);
    cr_assert_eq(st->stale[0], srv[6]->idx);
    /* the holder is down: the copy is taken */
    ns_registry_mark_down(&ns, srv[3], "test");
    report(srv[6], &x, 1, 0);
    cr_assert_eq(st->holder[3], srv[6]->idx);
}

Test(ns_ec, full_report_drops_shards)
{
    servers(6);
    stripe(7);
    cr_assert_eq(report(srv[2], NULL, 0, 1), 0);
    const struct ns_stripe *st = ns_ec_get(&ns, 7);
    cr_assert_eq(st->holder[2], NS_NO_SERVER);
    cr_assert_eq(st->holder[1], srv[1]->idx);
    Imgstore__ShardInfo x = entry(7, 2);
    x.bad = 1;
    report(srv[2], &x, 1, 1);
    cr_assert_eq(st->holder[2], srv[2]->idx);
    cr_assert_eq(st->bad, 1u << 2);
}

/* The running EC_REBUILD tasks, in start order, into ids/targets. */
static int rebuilds(uint64_t *ids, uint16_t *targets, int max)
{
    int n = 0;
    for (size_t i = 0; i < ns.plan.ntasks && n < max; i++) {
        const struct ns_task *t = &ns.plan.tasks[i];
        if (t->kind == NS_TASK_EC_REBUILD && t->state == NS_TASK_RUNNING) {
            ids[n] = t->block_id;
            targets[n++] = t->dst;
        }
    }
    return n;
}

Test(ns_ec, repair_most_endangered_first_never_onto_a_holder)
{
    servers(8);
    stripe(7);
    /* block 8: the same six holders; two of its shards are gone */
    stripe(8);
    ns.safe_mode = 0;
    ns_registry_mark_down(&ns, srv[0], "test"); /* shard 0 of both blocks lost */
    ns_ec_get(&ns, 8)->bad = 1u << 4;           /* and shard 4 of block 8 bad */
    ns_ec_plan(&ns, 5000);
    uint64_t ids[4];
    uint16_t tg[4];
    int n = rebuilds(ids, tg, 4);
    cr_assert_eq(n, 2, "one rebuild per stripe per pass (got %d)", n);
    cr_assert_eq(ids[0], 8, "the stripe with 4 of 6 shards left goes first");
    cr_assert_eq(ids[1], 7);
    for (int i = 0; i < n; i++)
        cr_assert(tg[i] == srv[6]->idx || tg[i] == srv[7]->idx,
                  "rebuilt onto a server holding another shard (%u)", tg[i]);
}

Test(ns_ec, no_repair_below_k_shards)
{
    servers(8);
    stripe(7);
    ns.safe_mode = 0;
    for (int i = 0; i < 3; i++) /* 3 of 6 left: fewer than k = 4 */
        ns_registry_mark_down(&ns, srv[i], "test");
    ns_ec_plan(&ns, 5000);
    uint64_t ids[4];
    uint16_t tg[4];
    cr_assert_eq(rebuilds(ids, tg, 4), 0);
}

/* Shards reported for a block whose replicated copies took tombstones since
 * (longer than the encoded block) are what a failed encoding left: not
 * listed, not repaired, not "already encoded". */
Test(ns_ec, reported_stripe_of_a_replicated_block_unused)
{
    servers(8);
    ns.safe_mode = 0;
    struct ns_server *reps[2] = {srv[6], srv[7]};
    block(7, BLEN + 24, reps, 2);
    stripe(7);
    cr_assert_null(ns_ec_supersedes(&ns, 7));
    cr_assert_not_null(ns_ec_get(&ns, 7));
    cr_assert_null(ns_ec_usable(&ns, 7));
    struct ns_ec_loc loc;
    cr_assert_eq(ns_ec_fill_loc(&ns, 7, &loc), 0);
    ns_registry_mark_down(&ns, srv[0], "test");
    ns_ec_plan(&ns, 5000);
    uint64_t ids[4];
    uint16_t tg[4];
    cr_assert_eq(rebuilds(ids, tg, 4), 0);
    ns_ec_get(&ns, 7)->confirmed = 1; /* its EC_ENCODE succeeded */
    cr_assert_not_null(ns_ec_usable(&ns, 7));
    cr_assert_eq(ns_ec_fill_loc(&ns, 7, &loc), 5);
}

/* A complete stripe and replicated copies no longer than the encoded block
 * (a copy that was down when the encoding dropped the others, back; or the
 * copies after a nameserver restart): the stripe supersedes them: LOOKUP
 * lists its shards, it is usable (never encoded again), the planner makes
 * no copy of the block, and the copies are told to go. A longer up copy
 * (tombstones the stripe lacks) turns that off. */
Test(ns_ec, complete_stripe_supersedes_stale_copies)
{
    servers(8);
    ns.safe_mode = 0;
    struct ns_server *reps[1] = {srv[6]};
    block(7, BLEN - 24, reps, 1); /* one stale copy left: under-replicated */
    stripe(7);
    cr_assert_not_null(ns_ec_supersedes(&ns, 7));
    cr_assert_not_null(ns_ec_usable(&ns, 7));
    struct ns_ec_loc loc;
    cr_assert_eq(ns_ec_fill_loc(&ns, 7, &loc), K + M);
    ns_plan_step(&ns, 5000);
    for (size_t i = 0; i < ns.plan.ntasks; i++)
        cr_assert_neq(ns.plan.tasks[i].block_id, 7, "a task for the superseded copies (kind %d)",
                      ns.plan.tasks[i].kind);
    ns_blocks_get(&ns.blocks, 7)->rsize[0] = BLEN + 24;
    cr_assert_null(ns_ec_supersedes(&ns, 7), "a longer copy leads");
    ns_registry_mark_down(&ns, srv[6], "test");
    cr_assert_not_null(ns_ec_supersedes(&ns, 7), "a down copy does not count");
}

/* The encoding tasks running, by block. */
static int encodes(uint64_t *ids, int max)
{
    int n = 0;
    for (size_t i = 0; i < ns.plan.ntasks && n < max; i++) {
        const struct ns_task *t = &ns.plan.tasks[i];
        if (t->kind == NS_TASK_EC_ENCODE && t->state == NS_TASK_RUNNING)
            ids[n++] = t->block_id;
    }
    return n;
}

/* ec_min_age_h: a sealed block is encoded once this nameserver has seen it
 * sealed that long; nothing while ec is off. */
Test(ns_ec, min_age_policy)
{
    servers(8);
    ns.safe_mode = 0;
    struct ns_server *reps[2] = {srv[0], srv[1]};
    block(21, BLEN, reps, 2);
    uint64_t ids[4];
    cr_assert_eq(ns_meta_set_setting(&ns.meta, NS_SETTING_EC_MIN_AGE_H, 1), 0);
    ns_ec_plan(&ns, 1000);
    cr_assert_eq(encodes(ids, 4), 0, "ec is off");
    cr_assert_eq(ns_meta_set_setting(&ns.meta, NS_SETTING_EC, 402), 0);
    ns_ec_plan(&ns, 2000); /* first seen sealed now */
    ns_ec_plan(&ns, 2000 + 3599 * 1000);
    cr_assert_eq(encodes(ids, 4), 0, "encoded before the hour");
    ns_ec_plan(&ns, 2000 + 3600 * 1000);
    cr_assert_eq(encodes(ids, 4), 1);
    cr_assert_eq(ids[0], 21);
}

/* An encoding that failed is not started again for NS_RETRY_MS (an
 * `ec encode --all-sealed` retried a failing block tens of thousands of
 * times a second: docs/chaos-findings.md). */
Test(ns_ec, failed_encoding_waits_before_a_retry)
{
    servers(8);
    ns.safe_mode = 0;
    struct ns_server *reps[2] = {srv[0], srv[1]};
    block(21, BLEN, reps, 2);
    uint64_t ids[4];
    cr_assert_eq(ns_meta_set_setting(&ns.meta, NS_SETTING_EC, 402), 0);
    cr_assert_not_null(ns.ec = calloc(1, sizeof(*ns.ec)));
    ns.ec->all_pending = 1;
    ns_ec_plan(&ns, 1000);
    cr_assert_eq(encodes(ids, 4), 1);
    for (size_t i = 0; i < ns.plan.ntasks; i++)
        if (ns.plan.tasks[i].state == NS_TASK_RUNNING)
            ns_plan_task_end(&ns, ns.plan.tasks[i].id, IMG_EUNAVAIL, 0, 1100);
    cr_assert_eq(encodes(ids, 4), 0);
    ns_ec_plan(&ns, 1200);
    ns_ec_plan(&ns, 1100 + NS_RETRY_MS - 1);
    cr_assert_eq(encodes(ids, 4), 0, "retried before NS_RETRY_MS");
    ns_ec_plan(&ns, 1100 + NS_RETRY_MS);
    cr_assert_eq(encodes(ids, 4), 1, "not retried after NS_RETRY_MS");
}

/* The running tasks of `kind`: blocks, sources and targets. */
static int tasks_of(int kind, uint64_t *ids, uint16_t *src, uint16_t *dst, int max)
{
    int n = 0;
    for (size_t i = 0; i < ns.plan.ntasks && n < max; i++) {
        const struct ns_task *t = &ns.plan.tasks[i];
        if (t->kind == kind && t->state == NS_TASK_RUNNING) {
            ids[n] = t->block_id;
            src[n] = t->src;
            dst[n++] = t->dst;
        }
    }
    return n;
}

/* A drain moves a shard of a whole stripe off the draining holder onto the
 * server with the most free bytes that holds no shard of the stripe; the
 * drained server counts its shards (also stale ones) until they are gone. */
Test(ns_ec, drain_moves_shards_off)
{
    servers(8);
    stripe(7);
    stripe(8);
    ns.safe_mode = 0;
    cr_assert_eq(ns_ec_shards_on(&ns, srv[2]->idx), 2);
    cr_assert_eq(ns_ec_shards_on(&ns, srv[6]->idx), 0);
    srv[2]->draining = 1;
    ns_ec_plan(&ns, 5000);
    uint64_t ids[4];
    uint16_t src[4], dst[4];
    int n = tasks_of(NS_TASK_EC_MOVE, ids, src, dst, 4);
    cr_assert_eq(n, 2, "one move per stripe (got %d)", n);
    for (int i = 0; i < n; i++) {
        cr_assert_eq(src[i], srv[2]->idx, "moved from the draining holder");
        cr_assert(dst[i] == srv[6]->idx || dst[i] == srv[7]->idx,
                  "moved onto a server holding another shard (%u)", dst[i]);
    }
    cr_assert_eq(tasks_of(NS_TASK_EC_REBUILD, ids, src, dst, 4), 0, "nothing is lost");
    /* one move per stripe at a time */
    ns_ec_plan(&ns, 6000);
    cr_assert_eq(tasks_of(NS_TASK_EC_MOVE, ids, src, dst, 4), 2);
    /* a stale shard still counts on its server until it is dropped */
    struct ns_stripe *st = ns_ec_get(&ns, 7);
    st->holder[2] = srv[6]->idx;
    st->stale[st->nstale++] = srv[2]->idx;
    cr_assert_eq(ns_ec_shards_on(&ns, srv[2]->idx), 2);
    st->nstale = 0;
    cr_assert_eq(ns_ec_shards_on(&ns, srv[2]->idx), 1);
}

/* No server outside the stripe: nothing moves (the drain waits). */
Test(ns_ec, drain_without_a_free_server_waits)
{
    servers(6);
    stripe(7);
    ns.safe_mode = 0;
    srv[3]->draining = 1;
    ns_ec_plan(&ns, 5000);
    uint64_t ids[4];
    uint16_t src[4], dst[4];
    cr_assert_eq(tasks_of(NS_TASK_EC_MOVE, ids, src, dst, 4), 0);
    cr_assert_eq(ns_ec_shards_on(&ns, srv[3]->idx), 1);
}

/* A stripe with a lost shard is repaired first (no move meanwhile). */
Test(ns_ec, drain_waits_for_repair)
{
    servers(8);
    stripe(7);
    ns.safe_mode = 0;
    srv[2]->draining = 1;
    ns_registry_mark_down(&ns, srv[0], "test"); /* shard 0 lost */
    ns_ec_plan(&ns, 5000);
    uint64_t ids[4];
    uint16_t src[4], dst[4];
    cr_assert_eq(tasks_of(NS_TASK_EC_MOVE, ids, src, dst, 4), 0, "repair comes first");
    cr_assert_eq(tasks_of(NS_TASK_EC_REBUILD, ids, src, dst, 4), 1);
    cr_assert(dst[0] != srv[2]->idx, "rebuilt onto the draining server");
}

/* A draining holder that is down: its shard is rebuilt from k others. */
Test(ns_ec, drain_of_a_down_holder_rebuilds)
{
    servers(8);
    stripe(7);
    ns.safe_mode = 0;
    srv[2]->draining = 1;
    ns_registry_mark_down(&ns, srv[2], "test");
    ns_ec_plan(&ns, 5000);
    uint64_t ids[4];
    uint16_t src[4], dst[4];
    cr_assert_eq(tasks_of(NS_TASK_EC_MOVE, ids, src, dst, 4), 0);
    cr_assert_eq(tasks_of(NS_TASK_EC_REBUILD, ids, src, dst, 4), 1);
    cr_assert(dst[0] == srv[6]->idx || dst[0] == srv[7]->idx);
}

/* The balance (ns_balance.c) counts shard files in the used bytes and moves
 * shards of whole, idle stripes from the fullest servers onto emptier ones
 * holding nothing of the stripe: one shard per stripe, as ec-move tasks. */
Test(ns_ec, balance_moves_shards)
{
    servers(8);
    for (int i = 0; i < 8; i++) {
        srv[i]->capacity = 1024 * NS_MIB;
        srv[i]->free = 1024 * NS_MIB;
    }
    ns.safe_mode = 0;
    for (uint64_t id = 7; id <= 9; id++) {
        stripe(id);
        struct ns_stripe *st = ns_ec_get(&ns, id);
        st->confirmed = 1;
        for (unsigned j = 0; j < K + M; j++)
            st->file_bytes[j] = 100 * NS_MIB;
    }
    struct ns_bal_view v;
    cr_assert_eq(ns_balance_view(&ns, 5000, &v), 0);
    cr_assert_eq(v.servers[srv[0]->idx].used, 300 * NS_MIB, "shard files counted");
    cr_assert_eq(v.servers[srv[6]->idx].used, 0);
    cr_assert(!v.balanced);
    cr_assert_gt(v.nplan, 0);
    for (size_t i = 0; i < v.nplan; i++)
        cr_assert(v.plan[i].shard, "a shard move planned");
    ns_balance_view_free(&v);
    ns_balance_plan(&ns, 5000);
    uint64_t ids[8];
    uint16_t src[8], dst[8];
    int n = tasks_of(NS_TASK_EC_MOVE, ids, src, dst, 8);
    cr_assert_geq(n, 1);
    for (int i = 0; i < n; i++) {
        cr_assert(dst[i] == srv[6]->idx || dst[i] == srv[7]->idx, "onto a shard holder");
        cr_assert(src[i] < srv[6]->idx, "from a shard holder");
        for (int o = 0; o < i; o++)
            cr_assert_neq(ids[o], ids[i], "two shards of block %" PRIu64 " at once", ids[i]);
    }
    cr_assert_eq(ns.bal.nmoves, (size_t)n);
    /* a stripe with a moving shard has none other planned: the task keeps it busy */
    ns_balance_plan(&ns, 6000);
    cr_assert_eq(tasks_of(NS_TASK_EC_MOVE, ids, src, dst, 8), n);
    /* a move ends when the stripe names its target */
    for (size_t i = 0; i < ns.plan.ntasks; i++) {
        struct ns_task *t = &ns.plan.tasks[i];
        if (t->kind != NS_TASK_EC_MOVE || t->state != NS_TASK_RUNNING)
            continue;
        struct ns_stripe *st = ns_ec_get(&ns, t->block_id);
        for (unsigned j = 0; j < K + M; j++)
            if (st->holder[j] == t->src)
                st->holder[j] = t->dst;
        ns_plan_task_end(&ns, t->id, 0, L, 7000);
    }
    ns_balance_plan(&ns, 8000);
    cr_assert_eq(ns.bal.moves_done, (uint32_t)n);
}

Test(ns_ec, garbage_generation_and_threshold)
{
    servers(7);
    stripe(7);
    struct ns_stripe *st = ns_ec_get(&ns, 7);
    cr_assert_eq(st->gen, 0);
    cr_assert_eq(ns_ec_garbage(&ns, st), 0);
    /* holders know different deletions: the most any up holder reports */
    uint64_t g[K + M] = {100, 4u << 20, 300, 0, 6u << 20, 200};
    for (unsigned i = 0; i < K + M; i++) {
        Imgstore__ShardInfo x = entry(7, i);
        x.garbage_bytes = g[i];
        report(srv[i], &x, 1, 0);
    }
    cr_assert_eq(ns_ec_garbage(&ns, st), 6u << 20);
    ns_registry_mark_down(&ns, srv[4], "test");
    cr_assert_eq(ns_ec_garbage(&ns, st), 4u << 20, "a down holder's report is not used");
    Imgstore__ShardInfo x = entry(7, 1);
    x.garbage_bytes = BLEN + 1; /* more than the block: ignored */
    report(srv[1], &x, 1, 0);
    cr_assert_eq(ns_ec_garbage(&ns, st), 300);
    /* the threshold: 30% of 15 MiB is 4.5 MiB */
    cr_assert(!ns_ec_compact_due(4718591, BLEN, 30));
    cr_assert(ns_ec_compact_due(4718592, BLEN, 30));
    cr_assert(ns_ec_compact_due(BLEN, BLEN, 100));
    cr_assert(!ns_ec_compact_due(BLEN, BLEN, 0), "0: compaction off");
    cr_assert(!ns_ec_compact_due(BLEN, BLEN, 101));
    cr_assert(!ns_ec_compact_due(0, BLEN, 1));
    cr_assert(!ns_ec_compact_due(BLEN + 1, BLEN, 30), "more garbage than block: nonsense");
    cr_assert(ns_ec_compact_due(UINT64_MAX / 2, UINT64_MAX / 2 + 1, 99), "no overflow");
    /* a shard of another generation (a compaction's new stripe) is not
     * taken into a stripe of generation 0 */
    x = entry(7, 3);
    x.gen = 1;
    cr_assert_eq(report(srv[6], &x, 1, 0), 1);
    cr_assert_eq(st->holder[3], srv[3]->idx);
    cr_assert_eq(st->nstale, 0);
    /* a stripe first seen at generation 2 keeps it */
    for (unsigned i = 0; i < K + M; i++) {
        Imgstore__ShardInfo y = entry(8, i);
        y.gen = 2;
        cr_assert_eq(report(srv[i], &y, 1, 0), 0);
    }
    cr_assert_eq(ns_ec_get(&ns, 8)->gen, 2);
}
