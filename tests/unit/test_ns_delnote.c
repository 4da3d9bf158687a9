/* Unit tests of the delete journal's policy (nameserver/ns_delnote.c),
 * without sockets: a copy that may lack journaled tombstones is held out
 * only while no copy holding them is up; entries are dropped once two
 * current copies reach past them; a compaction drops or rebases them. */
#include "base/err.h"
#include "nameserver/ns.h"
#include "nameserver/ns_delnote.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "tests/unit/ns_fixture.h"

TestSuite(ns_delnote, .init = setup, .fini = teardown);

static void noop(int status, void *arg)
{
    *(int *)arg = status;
}

/* Journals a tombstone of block id from server `from`, tail_after `tail`. */
static void note(uint64_t id, uint32_t seq, uint64_t tail, const char *from)
{
    int st = 1;
    struct ns_dj_entry e = {.seq = seq, .cookie = seq + 100, .tail_after = tail};
    cr_assert_eq(ns_dj_append(&ns.dj, NULL, id, &e, from, noop, &st), 0);
    cr_assert_eq(st, 0);
}

Test(ns_delnote, a_copy_is_held_out_only_while_no_holder_is_up)
{
    struct ns_server *a = hb_server("dsA", ROOMY, 0), *b = hb_server("dsB", ROOMY, 0);
    struct ns_server *reps[] = {a, b};
    block(5, 1000, reps, 2);
    note(5, 1, 1024, "dsA"); /* dsA took it while alone */
    struct ns_block *bl = ns_blocks_get(&ns.blocks, 5);

    ns_delnote_gate(&ns, bl, b);
    cr_assert_eq(bl->djwait, 0, "dsA holds them and is up: the set's own rules apply");

    ns_registry_mark_down(&ns, a, "test");
    ns_delnote_gate(&ns, bl, b);
    cr_assert_eq(bl->djwait, 2, "dsB may lack the tombstone and nobody holding it is up");
    cr_assert(ns_block_is_unready(bl, 1), "a held-out copy is not ready");
    cr_assert_eq(ns_block_good_reps(&ns, bl), 0, "nor counted");

    /* The journal's sender is never held out. */
    a = hb_server("dsA", ROOMY, 10);
    ns_delnote_gate(&ns, bl, a);
    cr_assert_eq(bl->djwait, 2);
}

Test(ns_delnote, a_held_out_primary_loses_the_role)
{
    struct ns_server *a = hb_server("dsA", ROOMY, 0), *b = hb_server("dsB", ROOMY, 0);
    struct ns_server *reps[] = {b, a}; /* dsB primary */
    block(6, 1000, reps, 2);
    note(6, 1, 1024, "dsA");
    ns_registry_mark_down(&ns, a, "test");
    struct ns_block *bl = ns_blocks_get(&ns.blocks, 6);
    ns_delnote_gate(&ns, bl, b);
    cr_assert_eq(bl->djwait, 1);
    cr_assert_eq(bl->primary, NS_NO_PRIMARY);
}

Test(ns_delnote, a_current_member_past_every_entry_holds_them)
{
    struct ns_server *a = hb_server("dsA", ROOMY, 0), *b = hb_server("dsB", ROOMY, 0);
    struct ns_server *reps[] = {a, b};
    block(7, 2000, reps, 2); /* both members, both past the tail */
    note(7, 1, 1024, "dsA");
    ns_registry_mark_down(&ns, a, "test");
    struct ns_block *bl = ns_blocks_get(&ns.blocks, 7);
    ns_delnote_gate(&ns, bl, b);
    cr_assert_eq(bl->djwait, 0);
}

Test(ns_delnote, entries_on_two_current_copies_are_dropped)
{
    struct ns_server *a = hb_server("dsA", ROOMY, 0), *b = hb_server("dsB", ROOMY, 0);
    struct ns_server *reps[] = {a, b};
    block(8, 1000, reps, 2);
    note(8, 1, 1024, "dsA");
    note(8, 2, 1048, "dsA");
    struct ns_block *bl = ns_blocks_get(&ns.blocks, 8);
    bl->rsize[0] = 1048; /* only the primary has them */
    ns_delnote_tick(&ns, 100);
    cr_assert_eq(ns_dj_get(&ns.dj, 8)->n, 2, "one copy is not enough");
    bl->rsize[1] = 1024; /* the second copy caught up to the first one */
    ns_delnote_tick(&ns, 200);
    cr_assert_eq(ns_dj_get(&ns.dj, 8)->n, 1);
    cr_assert_eq(ns_dj_get(&ns.dj, 8)->v[0].seq, 2);
    bl->rsize[1] = 1048;
    ns_delnote_tick(&ns, 300);
    cr_assert_null(ns_dj_get(&ns.dj, 8));
}

Test(ns_delnote, a_down_member_does_not_count_for_pruning)
{
    struct ns_server *a = hb_server("dsA", ROOMY, 0), *b = hb_server("dsB", ROOMY, 0);
    struct ns_server *reps[] = {a, b};
    block(9, 2000, reps, 2);
    note(9, 1, 1024, "dsA");
    ns_registry_mark_down(&ns, b, "test");
    ns_delnote_tick(&ns, 100);
    cr_assert_not_null(ns_dj_get(&ns.dj, 9));
}

Test(ns_delnote, compaction_drops_or_rebases)
{
    struct ns_server *a = hb_server("dsA", ROOMY, 0), *b = hb_server("dsB", ROOMY, 0);
    struct ns_server *reps[] = {a, b};
    block(10, 4000, reps, 2);
    note(10, 1, 4000, "dsA");
    struct ns_block *bl = ns_blocks_get(&ns.blocks, 10);
    ns_delnote_compacted(&ns, bl, 1, 2500); /* one copy compacted */
    cr_assert_eq(ns_dj_get(&ns.dj, 10)->v[0].tail_after, 2500, "rebased to the new layout");
    ns_delnote_compacted(&ns, bl, 3, 2500); /* two agreeing copies */
    cr_assert_null(ns_dj_get(&ns.dj, 10));
}

Test(ns_delnote, an_old_copy_is_left_to_the_set_rules_once_a_holder_is_up)
{
    struct ns_server *a = hb_server("dsA", ROOMY, 0), *b = hb_server("dsB", ROOMY, 0);
    struct ns_server *reps[] = {a, b};
    block(11, 1000, reps, 2);
    struct ns_block *bl = ns_blocks_get(&ns.blocks, 11);
    bl->ver = 2; /* dsA alone in the set of version 2; dsB reported version 1 */
    bl->rver[0] = 2;
    bl->rver[1] = 1;
    bl->inset = 1;
    note(11, 1, 1024, "dsA");
    ns_registry_mark_down(&ns, a, "test");
    ns_delnote_gate(&ns, bl, b);
    cr_assert_eq(bl->djwait, 2);
    ns_delnote_tick(&ns, 100);
    cr_assert_eq(bl->djwait, 2, "nobody holding them is up: still held out");
    a = hb_server("dsA", ROOMY, 200);
    ns_delnote_tick(&ns, 300);
    cr_assert_eq(bl->djwait, 0, "dsA is up: dsB (older set) is caught up from it instead");
    cr_assert(ns_block_is_old(bl, 1), "and stays out of the set by its version");
}

Test(ns_delnote, a_current_copy_stays_held_out_until_it_applied)
{
    struct ns_server *a = hb_server("dsA", ROOMY, 0), *b = hb_server("dsB", ROOMY, 0);
    struct ns_server *reps[] = {a, b};
    block(12, 1000, reps, 2);
    note(12, 1, 1024, "dsA");
    ns_registry_mark_down(&ns, a, "test");
    struct ns_block *bl = ns_blocks_get(&ns.blocks, 12);
    ns_delnote_gate(&ns, bl, b); /* after a restart dsB looks current */
    cr_assert_eq(bl->djwait, 2);
    a = hb_server("dsA", ROOMY, 200);
    ns_delnote_tick(&ns, 300);
    cr_assert_eq(bl->djwait, 2, "not of an older set: only APPLY_TOMBSTONES lets it in");
}
