/* Unit tests of the nameserver's delete journal (nameserver/ns_deljournal.c):
 * appends are durable and reload, a torn tail is cut, a record failing its
 * CRC is skipped, covered entries are dropped, the file is rewritten when
 * most of it is dropped, many appends share one fdatasync, limits hold,
 * entries from etcd merge once (RAM only), dropped entries are reported;
 * erasure-coded blocks' entries: the versioned record (IDJ2 with a kind
 * byte, IDJ1 unchanged), hostile IDJ2 records refused, their own table
 * (reload, merge, drop once on every shard, rewrite of both kinds). */
#include "base/crc32c.h"
#include "base/err.h"
#include "nameserver/ns_deljournal.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

static char dir[64];
static char path[128];

static void setup(void)
{
    strcpy(dir, "/tmp/ns_dj_XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/%s", dir, NS_DJ_FILE);
}

static void teardown(void)
{
    char tmp[160];
    unlink(path);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    unlink(tmp);
    rmdir(dir);
}

TestSuite(ns_deljournal, .init = setup, .fini = teardown);

struct done {
    int calls;
    int status;
};

static void on_done(int status, void *arg)
{
    struct done *d = arg;
    d->calls++;
    d->status = status;
}

static void add(struct ns_dj *dj, uv_loop_t *loop, uint64_t block, uint32_t seq, uint64_t tail,
                const char *sender, struct done *d)
{
    struct ns_dj_entry e = {.seq = seq, .cookie = seq * 7u + 1, .tail_after = tail,
                            .set_version = 3};
    cr_assert_eq(ns_dj_append(dj, loop, block, &e, sender, on_done, d), 0);
}

static off_t file_size(void)
{
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    return st.st_size;
}

Test(ns_deljournal, append_is_durable_and_reloads)
{
    struct ns_dj dj;
    cr_assert_eq(ns_dj_open(&dj, dir), 0);
    cr_assert_null(ns_dj_get(&dj, 5));
    struct done d = {0};
    add(&dj, NULL, 5, 10, 1000, "dsA", &d);
    cr_assert_eq(d.calls, 1, "without a loop the append is answered before it returns");
    cr_assert_eq(d.status, 0);
    add(&dj, NULL, 5, 11, 1024, "dsA", &d);
    add(&dj, NULL, 9, 1, 500, "dsB", &d);
    cr_assert_eq(d.calls, 3);
    cr_assert_eq(file_size(), 3 * NS_DJ_REC_SIZE);
    struct ns_dj_block *jb = ns_dj_get(&dj, 5);
    cr_assert_not_null(jb);
    cr_assert_eq(jb->n, 2);
    cr_assert(ns_dj_holds_all(jb, "dsA"));
    cr_assert_not(ns_dj_holds_all(jb, "dsB"));
    ns_dj_close(&dj);

    cr_assert_eq(ns_dj_open(&dj, dir), 0);
    cr_assert_eq(dj.live, 3);
    jb = ns_dj_get(&dj, 5);
    cr_assert_not_null(jb);
    cr_assert_eq(jb->n, 2);
    cr_assert_eq(jb->v[0].seq, 10);
    cr_assert_eq(jb->v[0].cookie, 71);
    cr_assert_eq(jb->v[1].tail_after, 1024);
    cr_assert_eq(jb->v[1].set_version, 3);
    cr_assert(ns_dj_holds_all(jb, "dsA"), "the sender is known again after a reload");
    jb = ns_dj_get(&dj, 9);
    cr_assert_not_null(jb);
    cr_assert(ns_dj_holds_all(jb, "dsB"));
    ns_dj_close(&dj);
}

Test(ns_deljournal, an_entry_from_another_sender_leaves_no_holder)
{
    struct ns_dj dj;
    cr_assert_eq(ns_dj_open(&dj, dir), 0);
    struct done d = {0};
    add(&dj, NULL, 5, 10, 1000, "dsA", &d);
    add(&dj, NULL, 5, 11, 1100, "dsB", &d); /* dsB lacks entry 10 as far as we know */
    struct ns_dj_block *jb = ns_dj_get(&dj, 5);
    cr_assert_eq(jb->nhas, 0);
    ns_dj_add_holder(jb, "dsC"); /* applied them all */
    cr_assert(ns_dj_holds_all(jb, "dsC"));
    add(&dj, NULL, 5, 12, 1200, "dsC", &d);
    jb = ns_dj_get(&dj, 5);
    cr_assert(ns_dj_holds_all(jb, "dsC"));
    cr_assert_eq(jb->nhas, 1);
    ns_dj_close(&dj);
    /* Reloaded: two senders, so nobody is known to hold them all. */
    cr_assert_eq(ns_dj_open(&dj, dir), 0);
    cr_assert_eq(ns_dj_get(&dj, 5)->nhas, 0);
    ns_dj_close(&dj);
}

Test(ns_deljournal, torn_tail_is_cut)
{
    struct ns_dj dj;
    cr_assert_eq(ns_dj_open(&dj, dir), 0);
    struct done d = {0};
    for (uint32_t i = 1; i <= 3; i++)
        add(&dj, NULL, 7, i, 100 * i, "dsA", &d);
    ns_dj_close(&dj);
    int fd = open(path, O_WRONLY | O_APPEND);
    cr_assert_geq(fd, 0);
    uint8_t junk[50];
    memset(junk, 0xab, sizeof(junk));
    cr_assert_eq(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
    close(fd);

    cr_assert_eq(ns_dj_open(&dj, dir), 0);
    cr_assert_eq(dj.live, 3);
    cr_assert_eq(file_size(), 3 * NS_DJ_REC_SIZE, "the partial record is cut off");
    add(&dj, NULL, 7, 4, 400, "dsA", &d);
    ns_dj_close(&dj);
    cr_assert_eq(ns_dj_open(&dj, dir), 0);
    cr_assert_eq(dj.live, 4, "an append after a cut tail reloads");
    cr_assert_eq(dj.skipped_crc, 0);
    ns_dj_close(&dj);
}

Test(ns_deljournal, record_failing_its_crc_is_skipped)
{
    struct ns_dj dj;
    cr_assert_eq(ns_dj_open(&dj, dir), 0);
    struct done d = {0};
    for (uint32_t i = 1; i <= 3; i++)
        add(&dj, NULL, 7, i, 100 * i, "dsA", &d);
    ns_dj_close(&dj);
    int fd = open(path, O_RDWR);
    cr_assert_geq(fd, 0);
    uint8_t b;
    off_t at = NS_DJ_REC_SIZE + 17; /* inside the second record's seq */
    cr_assert_eq(pread(fd, &b, 1, at), 1);
    b ^= 0x40;
    cr_assert_eq(pwrite(fd, &b, 1, at), 1);
    close(fd);

    cr_assert_eq(ns_dj_open(&dj, dir), 0);
    cr_assert_eq(dj.skipped_crc, 1);
    struct ns_dj_block *jb = ns_dj_get(&dj, 7);
    cr_assert_not_null(jb);
    cr_assert_eq(jb->n, 2);
    cr_assert_eq(jb->v[0].seq, 1);
    cr_assert_eq(jb->v[1].seq, 3);
    ns_dj_close(&dj);
}

Test(ns_deljournal, covered_entries_are_dropped)
{
    struct ns_dj dj;
    cr_assert_eq(ns_dj_open(&dj, dir), 0);
    struct done d = {0};
    for (uint32_t i = 1; i <= 4; i++)
        add(&dj, NULL, 7, i, 100 * i, "dsA", &d);
    add(&dj, NULL, 8, 1, 50, "dsA", &d);
    cr_assert_eq(ns_dj_drop_covered(&dj, 7, 250), 2);
    struct ns_dj_block *jb = ns_dj_get(&dj, 7);
    cr_assert_eq(jb->n, 2);
    cr_assert_eq(jb->v[0].seq, 3);
    cr_assert_eq(dj.live, 3);
    cr_assert_eq(ns_dj_drop_covered(&dj, 7, 399), 1);
    cr_assert_eq(ns_dj_drop_covered(&dj, 7, 400), 1);
    cr_assert_null(ns_dj_get(&dj, 7), "a block without entries is forgotten");
    cr_assert_eq(ns_dj_drop_covered(&dj, 7, 1000), 0);
    ns_dj_drop_block(&dj, 8);
    cr_assert_null(ns_dj_get(&dj, 8));
    cr_assert_eq(dj.live, 0);
    ns_dj_close(&dj);
}

Test(ns_deljournal, file_is_rewritten_when_mostly_dropped)
{
    struct ns_dj dj;
    cr_assert_eq(ns_dj_open(&dj, dir), 0);
    struct done d = {0};
    for (uint32_t i = 1; i <= 80; i++)
        add(&dj, NULL, 1 + i % 2, i, 10 * i, "dsA", &d);
    cr_assert_eq(ns_dj_compact(&dj), 0, "nothing dropped: no rewrite");
    ns_dj_drop_covered(&dj, 1, 300); /* block 1: even i, 2..30: 15 entries */
    cr_assert_eq(ns_dj_compact(&dj), 0, "most of it still live: no rewrite");
    ns_dj_drop_covered(&dj, 1, 10000); /* block 1 gone: 40 of 80 */
    ns_dj_drop_covered(&dj, 2, 600);   /* block 2: odd i 1..59: 30 more dropped */
    cr_assert_eq(dj.live, 10);
    cr_assert_eq(ns_dj_compact(&dj), 1);
    cr_assert_eq(file_size(), 10 * NS_DJ_REC_SIZE);
    add(&dj, NULL, 2, 81, 10000, "dsA", &d); /* appends go on in the new file */
    ns_dj_close(&dj);
    cr_assert_eq(ns_dj_open(&dj, dir), 0);
    cr_assert_eq(dj.live, 11);
    struct ns_dj_block *jb = ns_dj_get(&dj, 2);
    cr_assert_eq(jb->v[0].seq, 61);
    cr_assert_eq(jb->v[10].seq, 81);
    cr_assert(ns_dj_holds_all(jb, "dsA"), "the rewrite keeps a holder as the sender");
    ns_dj_drop_covered(&dj, 2, 1u << 30);
    cr_assert_eq(ns_dj_compact(&dj), 1, "everything dropped: rewritten empty");
    cr_assert_eq(file_size(), 0);
    ns_dj_close(&dj);
}

Test(ns_deljournal, appends_share_fdatasyncs_with_a_loop)
{
    uv_loop_t loop;
    cr_assert_eq(uv_loop_init(&loop), 0);
    struct ns_dj dj;
    cr_assert_eq(ns_dj_open(&dj, dir), 0);
    struct done d[20] = {{0}};
    for (uint32_t i = 0; i < 20; i++)
        add(&dj, &loop, 3, i + 1, 100 + i, "dsA", &d[i]);
    cr_assert_eq(d[0].calls, 0, "answered only once durable");
    cr_assert_null(ns_dj_get(&dj, 3), "not in RAM before it is durable");
    uv_run(&loop, UV_RUN_DEFAULT);
    for (int i = 0; i < 20; i++) {
        cr_assert_eq(d[i].calls, 1);
        cr_assert_eq(d[i].status, 0);
    }
    cr_assert_eq(dj.appends, 20);
    cr_assert_leq(dj.syncs, 2, "%llu fdatasyncs for 20 appends", (unsigned long long)dj.syncs);
    cr_assert_eq(ns_dj_get(&dj, 3)->n, 20);
    cr_assert_eq(file_size(), 20 * NS_DJ_REC_SIZE);
    ns_dj_close(&dj);
    uv_loop_close(&loop);
}

Test(ns_deljournal, hostile_files_and_limits)
{
    /* A file of garbage loads as nothing, with every record skipped. */
    int fd = open(path, O_CREAT | O_WRONLY, 0600);
    cr_assert_geq(fd, 0);
    uint8_t junk[3 * NS_DJ_REC_SIZE];
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (uint8_t)(i * 31 + 7);
    cr_assert_eq(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
    close(fd);
    struct ns_dj dj;
    cr_assert_eq(ns_dj_open(&dj, dir), 0);
    cr_assert_eq(dj.live, 0);
    cr_assert_eq(dj.skipped_crc, 3);
    /* A full block refuses more. */
    struct ns_dj_block *jb;
    struct done d = {0};
    add(&dj, NULL, 4, 1, 100, "dsA", &d);
    jb = ns_dj_get(&dj, 4);
    size_t n = jb->n;
    jb->n = NS_DJ_MAX_PER_BLOCK; /* pretend: writing 65536 synced records is slow */
    struct ns_dj_entry e = {.seq = 2, .cookie = 3, .tail_after = 200};
    cr_assert_eq(ns_dj_append(&dj, NULL, 4, &e, "dsA", on_done, &d), IMG_EUNAVAIL);
    jb->n = n;
    ns_dj_close(&dj);
}

Test(ns_deljournal, blocks_in_any_order_are_found)
{
    struct ns_dj dj;
    cr_assert_eq(ns_dj_open(&dj, dir), 0);
    struct done d = {0};
    static const uint64_t ids[] = {900, 30, 700, 1, 500, 31, 2};
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
        add(&dj, NULL, ids[i], (uint32_t)i + 1, 100, "dsA", &d);
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        struct ns_dj_block *jb = ns_dj_get(&dj, ids[i]);
        cr_assert_not_null(jb, "block %llu", (unsigned long long)ids[i]);
        cr_assert_eq(jb->v[0].seq, i + 1);
    }
    cr_assert_null(ns_dj_get(&dj, 600));
    ns_dj_drop_block(&dj, 30);
    cr_assert_eq(ns_dj_drop_covered(&dj, 700, 100), 1);
    cr_assert_null(ns_dj_get(&dj, 30));
    cr_assert_null(ns_dj_get(&dj, 700));
    cr_assert_eq(ns_dj_get(&dj, 31)->v[0].seq, 6);
    cr_assert_eq(ns_dj_get(&dj, 900)->v[0].seq, 1);
    for (size_t i = 1; i < dj.nblocks; i++)
        cr_assert_lt(dj.blocks[i - 1].block_id, dj.blocks[i].block_id);
    ns_dj_close(&dj);
}

struct drops {
    int n;
    uint64_t last_block;
    uint32_t last_seq;
};

static void on_drop(void *arg, uint64_t block_id, const struct ns_dj_entry *e)
{
    struct drops *d = arg;
    d->n++;
    d->last_block = block_id;
    d->last_seq = e->seq;
}

/* Entries from etcd (a former leader's) are merged once, into RAM only;
 * a record round-trips through encode/decode and a damaged one fails. */
Test(ns_deljournal, merge_adds_each_seq_once_in_ram_only)
{
    struct ns_dj dj;
    cr_assert_eq(ns_dj_open(&dj, dir), 0);
    struct done d = {0};
    add(&dj, NULL, 5, 10, 1000, "dsA", &d);
    struct ns_dj_entry e = {.seq = 10, .cookie = 1, .tail_after = 1000, .set_version = 3};
    cr_assert_eq(ns_dj_merge(&dj, 5, &e, "dsA"), 0, "seq 10 of block 5 is known");
    e.seq = 12;
    e.tail_after = 1100;
    cr_assert_eq(ns_dj_merge(&dj, 5, &e, "dsB"), 1);
    cr_assert_eq(ns_dj_merge(&dj, 5, &e, "dsB"), 0, "merged once");
    cr_assert_eq(ns_dj_merge(&dj, 8, &e, "dsB"), 1);
    cr_assert_eq(dj.live, 3);
    struct ns_dj_block *jb = ns_dj_get(&dj, 5);
    cr_assert_eq(jb->n, 2);
    cr_assert_not(ns_dj_holds_all(jb, "dsA"), "dsA did not send the merged entry");
    cr_assert_eq(file_size(), NS_DJ_REC_SIZE, "merged entries are not appended to the file");

    uint8_t rec[NS_DJ_REC_SIZE];
    ns_dj_rec_encode(rec, 77, &e, "dsC");
    uint64_t id = 0;
    struct ns_dj_entry out;
    char sender[NS_DJ_ID_MAX + 1];
    cr_assert_eq(ns_dj_rec_decode(rec, &id, &out, sender), 0);
    cr_assert(id == 77 && out.seq == 12 && out.tail_after == 1100 && strcmp(sender, "dsC") == 0);
    rec[50] ^= 1;
    cr_assert_eq(ns_dj_rec_decode(rec, &id, &out, sender), -1, "a damaged record fails its CRC");
    ns_dj_close(&dj);
}

/* Every entry leaving RAM by pruning is reported (the etcd copy is
 * deleted by the hook's owner). */
Test(ns_deljournal, dropped_entries_are_reported)
{
    struct ns_dj dj;
    cr_assert_eq(ns_dj_open(&dj, dir), 0);
    struct drops dr = {0};
    dj.on_drop = on_drop;
    dj.on_drop_arg = &dr;
    struct done d = {0};
    add(&dj, NULL, 5, 10, 1000, "dsA", &d);
    add(&dj, NULL, 5, 11, 2000, "dsA", &d);
    add(&dj, NULL, 6, 1, 500, "dsA", &d);
    cr_assert_eq(ns_dj_drop_covered(&dj, 5, 1500), 1);
    cr_assert_eq(dr.n, 1);
    cr_assert(dr.last_block == 5 && dr.last_seq == 10);
    ns_dj_drop_block(&dj, 6);
    cr_assert_eq(dr.n, 2);
    cr_assert(dr.last_block == 6 && dr.last_seq == 1);
    ns_dj_rebase(&dj, 5, 100);
    cr_assert_eq(dr.n, 2, "a rebase drops nothing");
    ns_dj_close(&dj);
}

/* ---- erasure-coded blocks' entries (kind NS_DJ_KIND_EC, record IDJ2) ---- */

static void add_ec(struct ns_dj *dj, uint64_t block, uint32_t seq, uint16_t shards,
                   struct done *d)
{
    struct ns_dj_entry e = {.seq = seq, .cookie = seq * 7u + 1, .kind = NS_DJ_KIND_EC,
                            .shards = shards};
    cr_assert_eq(ns_dj_append(dj, NULL, block, &e, "dsE", on_done, d), 0);
}

/* A replicated entry is written as before (IDJ1, byte-identical); an EC one
 * as IDJ2 with its kind byte; both round-trip, and the RAM-only shard bits
 * are not in the record. */
Test(ns_deljournal, ec_record_is_versioned_and_round_trips)
{
    uint8_t rec[NS_DJ_REC_SIZE];
    uint64_t id = 0;
    struct ns_dj_entry out;
    char sender[NS_DJ_ID_MAX + 1];
    struct ns_dj_entry r = {.seq = 3, .cookie = 4, .tail_after = 900, .set_version = 2};
    ns_dj_rec_encode(rec, 5, &r, "dsA");
    cr_assert_eq(rec[4] | rec[5] << 8 | rec[6] << 16 | (uint32_t)rec[7] << 24, NS_DJ_MAGIC);
    cr_assert(rec[101] == 0 && rec[102] == 0 && rec[103] == 0, "IDJ1 as before kinds");
    cr_assert_eq(ns_dj_rec_decode(rec, &id, &out, sender), 0);
    cr_assert_eq(out.kind, NS_DJ_KIND_REPL);

    struct ns_dj_entry e = {.seq = 12, .cookie = 99, .kind = NS_DJ_KIND_EC, .shards = 0x1f};
    ns_dj_rec_encode(rec, 77, &e, "dsC");
    cr_assert_eq(rec[4] | rec[5] << 8 | rec[6] << 16 | (uint32_t)rec[7] << 24, NS_DJ_MAGIC2);
    cr_assert_eq(rec[101], NS_DJ_KIND_EC);
    cr_assert_eq(ns_dj_rec_decode(rec, &id, &out, sender), 0);
    cr_assert(id == 77 && out.seq == 12 && out.cookie == 99 && out.kind == NS_DJ_KIND_EC &&
              out.tail_after == 0 && out.set_version == 0 && strcmp(sender, "dsC") == 0);
    cr_assert_eq(out.shards, 0, "the shard bits live in RAM only");
}

/* Hostile IDJ2 records: an unknown kind, a reserved byte set, an EC entry
 * with a tail or set version, each with a valid CRC: all refused. */
Test(ns_deljournal, hostile_ec_records_fail)
{
    uint8_t rec[NS_DJ_REC_SIZE];
    uint64_t id;
    struct ns_dj_entry out;
    char sender[NS_DJ_ID_MAX + 1];
    struct ns_dj_entry e = {.seq = 1, .cookie = 2, .kind = NS_DJ_KIND_EC};
    static const struct {
        size_t off;
        uint8_t v;
    } bad[] = {{101, 2}, {101, 0xff}, {102, 1}, {103, 0x80}, {24, 1}, {32, 1}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ns_dj_rec_encode(rec, 9, &e, "dsA");
        rec[bad[i].off] = bad[i].v;
        uint32_t crc = crc32c(0, rec + 4, NS_DJ_REC_SIZE - 4);
        rec[0] = (uint8_t)crc;
        rec[1] = (uint8_t)(crc >> 8);
        rec[2] = (uint8_t)(crc >> 16);
        rec[3] = (uint8_t)(crc >> 24);
        cr_assert_eq(ns_dj_rec_decode(rec, &id, &out, sender), -1, "byte %zu = %#x accepted",
                     bad[i].off, bad[i].v);
    }
    /* A replicated entry in an IDJ2 record (kind 0) is valid. */
    struct ns_dj_entry r = {.seq = 1, .cookie = 2, .tail_after = 10, .set_version = 1};
    ns_dj_rec_encode(rec, 9, &r, "dsA");
    rec[4] = (uint8_t)NS_DJ_MAGIC2;
    rec[5] = (uint8_t)(NS_DJ_MAGIC2 >> 8);
    rec[6] = (uint8_t)(NS_DJ_MAGIC2 >> 16);
    rec[7] = (uint8_t)(NS_DJ_MAGIC2 >> 24);
    uint32_t crc = crc32c(0, rec + 4, NS_DJ_REC_SIZE - 4);
    for (int k = 0; k < 4; k++)
        rec[k] = (uint8_t)(crc >> (8 * k));
    cr_assert_eq(ns_dj_rec_decode(rec, &id, &out, sender), 0);
    cr_assert(out.kind == NS_DJ_KIND_REPL && out.tail_after == 10);
}

/* EC entries live in their own table (the replicated policy never sees
 * them), reload into it from the file, are dropped once every shard's bit
 * is set (reported to on_drop), and a rewrite keeps both kinds. */
Test(ns_deljournal, ec_entries_have_their_own_table)
{
    struct ns_dj dj;
    cr_assert_eq(ns_dj_open(&dj, dir), 0);
    struct done d = {0};
    add(&dj, NULL, 5, 10, 1000, "dsA", &d);
    add_ec(&dj, 5, 20, 0x1e, &d);
    add_ec(&dj, 5, 21, 0x3f, &d);
    add_ec(&dj, 8, 1, 0, &d);
    cr_assert_eq(d.calls, 4);
    cr_assert_eq(d.status, 0);
    cr_assert_eq(dj.live, 4);
    cr_assert_eq(ns_dj_get(&dj, 5)->n, 1, "the replicated table holds its entry only");
    cr_assert_null(ns_dj_get(&dj, 8));
    struct ns_dj_block *jb = ns_dj_get_ec(&dj, 5);
    cr_assert_not_null(jb);
    cr_assert_eq(jb->n, 2);
    cr_assert_eq(jb->v[0].shards, 0x1e);
    cr_assert_eq(jb->ec_holder[0], UINT16_MAX, "no holder known yet");
    /* replicated pruning leaves the EC entries alone */
    cr_assert_eq(ns_dj_drop_covered(&dj, 5, UINT64_MAX), 1);
    cr_assert_not_null(ns_dj_get_ec(&dj, 5));
    struct drops dr = {0};
    dj.on_drop = on_drop;
    dj.on_drop_arg = &dr;
    cr_assert_eq(ns_dj_ec_drop_held(&dj, 5, 0x3f), 1, "only seq 21 is on all six");
    cr_assert(dr.n == 1 && dr.last_block == 5 && dr.last_seq == 21);
    cr_assert_eq(ns_dj_ec_drop_held(&dj, 5, 0), 0, "an empty stripe drops nothing");
    dj.on_drop = NULL;
    ns_dj_close(&dj);

    cr_assert_eq(ns_dj_open(&dj, dir), 0);
    cr_assert_eq(dj.live, 4, "the file still holds every record");
    cr_assert_eq(dj.nec, 2);
    jb = ns_dj_get_ec(&dj, 5);
    cr_assert_eq(jb->n, 2);
    cr_assert(jb->v[0].kind == NS_DJ_KIND_EC && jb->v[0].shards == 0,
              "reloaded: no holder is known to have it");
    cr_assert_eq(ns_dj_get(&dj, 5)->n, 1);
    cr_assert_eq(ns_dj_merge(&dj, 5, &(struct ns_dj_entry){.seq = 20, .kind = NS_DJ_KIND_EC},
                             "dsB"),
                 0, "seq 20 is known in the EC table");
    cr_assert_eq(ns_dj_merge(&dj, 5, &(struct ns_dj_entry){.seq = 30, .kind = NS_DJ_KIND_EC},
                             "dsB"),
                 1);
    /* everything dropped: the rewrite leaves an empty file */
    ns_dj_drop_block(&dj, 5);
    ns_dj_ec_drop_held(&dj, 5, 0);
    jb = ns_dj_get_ec(&dj, 5);
    for (size_t i = 0; i < jb->n; i++)
        jb->v[i].shards = 0x3f;
    cr_assert_eq(ns_dj_ec_drop_held(&dj, 5, 0x3f), 3);
    jb = ns_dj_get_ec(&dj, 8);
    jb->v[0].shards = 0xff;
    cr_assert_eq(ns_dj_ec_drop_held(&dj, 8, 0x3f), 1);
    cr_assert_eq(dj.live, 0);
    cr_assert_eq(ns_dj_compact(&dj), 1);
    cr_assert_eq(file_size(), 0);
    ns_dj_close(&dj);
}

/* A rewrite with live entries of both kinds keeps each in its table. */
Test(ns_deljournal, rewrite_keeps_both_kinds)
{
    struct ns_dj dj;
    cr_assert_eq(ns_dj_open(&dj, dir), 0);
    struct done d = {0};
    for (uint32_t i = 1; i <= 70; i++)
        add(&dj, NULL, 3, i, 100 * i, "dsA", &d);
    add_ec(&dj, 4, 7, 0, &d);
    add(&dj, NULL, 3, 71, 100000, "dsA", &d);
    cr_assert_eq(ns_dj_drop_covered(&dj, 3, 7000), 70);
    cr_assert_eq(ns_dj_compact(&dj), 1);
    cr_assert_eq(file_size(), 2 * NS_DJ_REC_SIZE);
    ns_dj_close(&dj);
    cr_assert_eq(ns_dj_open(&dj, dir), 0);
    cr_assert_eq(ns_dj_get(&dj, 3)->n, 1);
    cr_assert_eq(ns_dj_get_ec(&dj, 4)->n, 1);
    cr_assert_eq(ns_dj_get_ec(&dj, 4)->v[0].seq, 7);
    cr_assert_null(ns_dj_get_ec(&dj, 3));
    ns_dj_close(&dj);
}
