/* Unit tests of the delete journal's policy for erasure-coded blocks
 * (nameserver/ns_ecdj.c): NOTE_DELETE with shards checked (hostile lists,
 * a sender holding no shard, addresses that do not match the stripe), the
 * shards' bits of an entry tied to their holders (a rebuilt shard loses its
 * bit), the gate (a reported shard that lacks entries, or is held, is not
 * listed by LOOKUP), and pruning once every shard's holder has an entry.
 * No loop: nothing is sent, the state is inspected. */
#include "nameserver/ns_ecdj.h"

#include "ns_ec_fixture.h"

TestSuite(ns_ecdj, .init = setup, .fini = teardown);

#define ALL 0x3fu

static struct ns_server *srv[8];

/* A heartbeat of s listing e, applied as the leader does (table, gate). */
static void report(struct ns_server *s, Imgstore__ShardInfo *e, int full)
{
    Imgstore__ShardInfo *p[1] = {e};
    Imgstore__Heartbeat hb = IMGSTORE__HEARTBEAT__INIT;
    hb.server_id = s->id;
    hb.full_report = full;
    hb.n_shards = 1;
    hb.shards = p;
    cr_assert_eq(ns_ec_apply_report(&ns, s, &hb), 0);
    ns_ecdj_report(&ns, s, &hb);
}

/* Servers ds1..ds8 (ds1..ds6 hold block id's shards 0..5). */
static void stripe(uint64_t id)
{
    for (int i = 0; i < 8; i++) {
        char sid[16];
        snprintf(sid, sizeof(sid), "ds%d", i + 1);
        srv[i] = hb_server(sid, ROOMY - (uint64_t)i * NS_MIB, 1000);
    }
    for (unsigned i = 0; i < K + M; i++) {
        Imgstore__ShardInfo x = entry(id, i);
        report(srv[i], &x, 0);
    }
    cr_assert_not_null(ns_ec_usable(&ns, id));
}

/* A NOTE_DELETE from `from` naming shards idx[0..n) at their holders. */
static Imgstore__NoteDelete note(uint64_t id, uint32_t seq, const uint32_t *idx, char **addr,
                                 size_t n)
{
    Imgstore__NoteDelete m = IMGSTORE__NOTE_DELETE__INIT;
    m.block_id = id;
    m.seq = seq;
    m.cookie = seq * 3;
    m.shards = 1;
    m.n_shard_index = m.n_shard_addr = n;
    m.shard_index = (uint32_t *)idx;
    m.shard_addr = addr;
    return m;
}

static void on_done(int status, void *arg)
{
    *(int *)arg = status;
}

/* Journals seq of block id as the delete path does: checked, appended,
 * then noted with the holders that have it. */
static void journal(uint64_t id, uint32_t seq, struct ns_server *from, const uint32_t *idx,
                    size_t n)
{
    char *addr[NS_EC_MAX_SHARDS];
    for (size_t i = 0; i < n; i++)
        addr[i] = srv[idx[i]]->addr;
    Imgstore__NoteDelete m = note(id, seq, idx, addr, n);
    uint16_t mask;
    uint16_t who[NS_DJ_EC_SHARDS] = {0};
    cr_assert_eq(ns_ecdj_check_note(&ns, from, &m, &mask, who), 0);
    cr_assert_not(ns_ecdj_known(&ns, id, seq, mask, who));
    struct ns_dj_entry e = {.seq = seq, .cookie = m.cookie, .kind = NS_DJ_KIND_EC};
    int st = 1;
    cr_assert_eq(ns_dj_append(&ns.dj, NULL, id, &e, from->id, on_done, &st), 0);
    cr_assert_eq(st, 0);
    ns_ecdj_noted(&ns, id, seq, mask, who);
}

Test(ns_ecdj, hostile_notes_refused)
{
    stripe(7);
    uint32_t idx[3] = {0, 1, 2};
    char *addr[3] = {srv[0]->addr, srv[1]->addr, srv[2]->addr};
    uint16_t mask, who[NS_DJ_EC_SHARDS];
    Imgstore__NoteDelete m = note(7, 5, idx, addr, 3);
    cr_assert_eq(ns_ecdj_check_note(&ns, srv[0], &m, &mask, who), 0);
    cr_assert_eq(mask, 0x7);
    cr_assert_eq(ns_ecdj_check_note(&ns, srv[6], &m, &mask, who), IMG_ENOBLOCKHERE,
                 "ds7 holds no shard of the stripe");
    m.block_id = 8;
    cr_assert_eq(ns_ecdj_check_note(&ns, srv[0], &m, &mask, who), IMG_ENOBLOCKHERE,
                 "no stripe");
    m.block_id = 7;
    m.n_shard_addr = 2;
    cr_assert_eq(ns_ecdj_check_note(&ns, srv[0], &m, &mask, who), IMG_EINVAL, "unequal lists");
    m.n_shard_addr = 3;
    idx[1] = K + M;
    cr_assert_eq(ns_ecdj_check_note(&ns, srv[0], &m, &mask, who), IMG_EINVAL, "index >= k+m");
    idx[1] = 1;
    addr[2] = NULL;
    cr_assert_eq(ns_ecdj_check_note(&ns, srv[0], &m, &mask, who), IMG_EINVAL, "no address");
    addr[2] = srv[4]->addr; /* not shard 2's holder */
    cr_assert_eq(ns_ecdj_check_note(&ns, srv[0], &m, &mask, who), 0);
    cr_assert_eq(mask, 0x3, "a shard named with another server's address gets no bit");
    m.tail_after = 10;
    cr_assert_eq(ns_ecdj_check_note(&ns, srv[0], &m, &mask, who), IMG_EINVAL);
    m.tail_after = 0;
    uint32_t many[NS_EC_MAX_SHARDS + 1] = {0};
    char *maddr[NS_EC_MAX_SHARDS + 1];
    for (int i = 0; i <= NS_EC_MAX_SHARDS; i++)
        maddr[i] = srv[0]->addr;
    Imgstore__NoteDelete big = note(7, 5, many, maddr, NS_EC_MAX_SHARDS + 1);
    cr_assert_eq(ns_ecdj_check_note(&ns, srv[0], &big, &mask, who), IMG_EINVAL, "too long");
}

/* Shard 0's holder is down: its bit stays unset, the entry stays; when it
 * returns its report holds it out (not listed) until it applied them; once
 * every shard's holder has the entry it is dropped. */
Test(ns_ecdj, returning_holder_is_held_out_and_entries_drain)
{
    stripe(7);
    ns_registry_mark_down(&ns, srv[0], "test");
    uint32_t idx[5] = {1, 2, 3, 4, 5};
    journal(7, 42, srv[1], idx, 5);
    journal(7, 43, srv[2], idx, 5);
    struct ns_dj_block *jb = ns_dj_get_ec(&ns.dj, 7);
    cr_assert_not_null(jb);
    cr_assert_eq(jb->n, 2);
    cr_assert_eq(jb->v[0].shards, ALL & ~1u);
    cr_assert_null(ns_dj_get(&ns.dj, 7), "not in the replicated table");
    /* a second note of seq 42 is known: answered at once, bits merged */
    uint16_t who[NS_DJ_EC_SHARDS] = {0};
    cr_assert(ns_ecdj_known(&ns, 7, 42, 0, who));
    ns_ecdj_tick(&ns, 5000);
    cr_assert_eq(ns_dj_get_ec(&ns.dj, 7)->n, 2, "shard 0 lacks them: kept");

    /* shard 0's holder returns */
    srv[0] = hb_server("ds1", ROOMY, 6000);
    cr_assert(srv[0]->up);
    struct ns_ec_loc loc;
    Imgstore__ShardInfo x = entry(7, 0);
    report(srv[0], &x, 1);
    struct ns_stripe *st = ns_ec_get(&ns, 7);
    cr_assert_eq(st->djwait, 1u, "shard 0 held out");
    cr_assert_eq(ns_ec_fill_loc(&ns, 7, &loc), 5, "not listed while held out");
    for (size_t i = 0; i < loc.n; i++)
        cr_assert_neq(loc.loc[i].index, 0);
    /* another shard reported again, with nothing lacking: not held out */
    x = entry(7, 3);
    report(srv[3], &x, 1);
    cr_assert_eq(st->djwait, 1u);

    /* shard 0's holder applied them (as its APPLY_TOMBSTONES answer does) */
    jb = ns_dj_get_ec(&ns.dj, 7);
    for (size_t i = 0; i < jb->n; i++)
        jb->v[i].shards |= 1u;
    ns_ecdj_tick(&ns, 7000);
    cr_assert_null(ns_dj_get_ec(&ns.dj, 7), "every shard's holder has them: dropped");
    cr_assert_eq(ns.dj.live, 0);
}

/* A shard rebuilt on another server: the entries lose its bit (the new
 * holder may lack them) and the shard is held out until it applied them. */
Test(ns_ecdj, rebuilt_shard_loses_its_bit_and_is_held_out)
{
    stripe(7);
    ns_registry_mark_down(&ns, srv[4], "test");
    uint32_t up5[5] = {0, 1, 2, 3, 5};
    journal(7, 9, srv[0], up5, 5);
    struct ns_stripe *st = ns_ec_get(&ns, 7);
    st->holder[2] = srv[6]->idx; /* shard 2 rebuilt on ds7 */
    ns_ecdj_rebuilt(&ns, st, 2, srv[2]->idx);
    cr_assert_eq(st->djwait, 1u << 2);
    struct ns_dj_block *jb = ns_dj_get_ec(&ns.dj, 7);
    cr_assert_eq(jb->v[0].shards, 0x2bu, "shard 2's bit cleared, shard 4 never had it");
    cr_assert_eq(jb->ec_holder[2], srv[6]->idx);
    struct ns_ec_loc loc;
    cr_assert_eq(ns_ec_fill_loc(&ns, 7, &loc), 4, "ds5 down, ds7 held out");
    /* a report of a held shard (rebuilt, not released) holds it out even
     * with no entry journaled */
    stripe(8);
    Imgstore__ShardInfo x = entry(8, 1);
    x.held = 1;
    report(srv[1], &x, 0);
    cr_assert_eq(ns_ec_get(&ns, 8)->djwait, 1u << 1);
    cr_assert_eq(ns_ec_fill_loc(&ns, 8, &loc), 5);
}
