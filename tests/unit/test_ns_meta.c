/* Unit tests of the nameserver's persisted metadata (nameserver/ns_meta.c):
 * the block-id reserve survives reopen and crashes, corrupt files are
 * refused, settings and known servers persist. */
#include "base/err.h"
#include "base/fsutil.h"
#include "nameserver/ns.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[64];
static char meta_path[128];

static void setup(void)
{
    strcpy(dir, "/tmp/ns_meta_XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(meta_path, sizeof(meta_path), "%s/%s", dir, NS_META_FILE);
}

static void teardown(void)
{
    char tmp[160];
    unlink(meta_path);
    snprintf(tmp, sizeof(tmp), "%s.tmp", meta_path);
    unlink(tmp);
    rmdir(dir);
}

static void write_meta(const char *text)
{
    cr_assert_eq(fs_write_atomic(meta_path, text, strlen(text)), 0);
}

TestSuite(ns_meta, .init = setup, .fini = teardown);

Test(ns_meta, first_start_creates_defaults)
{
    struct ns_meta m;
    cr_assert_eq(ns_meta_open(&m, dir, 0, 0), 0);
    cr_assert_eq(strlen(m.cluster_id), NS_CLUSTER_ID_HEX);
    cr_assert_eq(m.replicas, NS_DEFAULT_REPLICAS);
    cr_assert_eq(m.block_size, NS_DEFAULT_BLOCK_SIZE);
    cr_assert_eq(m.next_id, 1);
    cr_assert_eq(access(meta_path, F_OK), 0);
    char cid[NS_CLUSTER_ID_HEX + 1];
    strcpy(cid, m.cluster_id);
    ns_meta_free(&m);
    cr_assert_eq(ns_meta_open(&m, dir, 3, 2 * NS_MIB), 0);
    cr_assert_str_eq(m.cluster_id, cid);
    cr_assert_eq(m.replicas, 3);
    cr_assert_eq(m.block_size, 2 * NS_MIB);
    ns_meta_free(&m);
    cr_assert_eq(ns_meta_open(&m, dir, 0, 0), 0, "settings persist when not given");
    cr_assert_eq(m.replicas, 3);
    cr_assert_eq(m.block_size, 2 * NS_MIB);
    ns_meta_free(&m);
}

Test(ns_meta, ids_never_reused_across_reopen)
{
    struct ns_meta m;
    uint64_t id, last = 0;
    cr_assert_eq(ns_meta_open(&m, dir, 0, 0), 0);
    for (int i = 0; i < 3000; i++) {
        cr_assert_eq(ns_meta_alloc_id(&m, &id), 0);
        cr_assert_gt(id, last);
        cr_assert_lt(id, m.block_id_reserved, "an id handed out is always below the reserve");
        last = id;
    }
    cr_assert_eq(last, 3000);
    ns_meta_free(&m);
    cr_assert_eq(ns_meta_open(&m, dir, 0, 0), 0);
    cr_assert_eq(ns_meta_alloc_id(&m, &id), 0);
    cr_assert_gt(id, last);
    ns_meta_free(&m);
}

Test(ns_meta, crash_between_reserve_and_use)
{
    /* A process that persisted a reserve and died before using any id of it
     * (we simply drop the in-memory state) restarts past the whole reserve. */
    struct ns_meta m;
    uint64_t id;
    cr_assert_eq(ns_meta_open(&m, dir, 0, 0), 0);
    cr_assert_eq(ns_meta_alloc_id(&m, &id), 0);
    cr_assert_eq(id, 1);
    uint64_t reserved = m.block_id_reserved;
    cr_assert_geq(reserved, 1 + NS_ID_RESERVE_BATCH);
    ns_meta_free(&m); /* "crash": nothing else is written */
    cr_assert_eq(ns_meta_open(&m, dir, 0, 0), 0);
    cr_assert_eq(m.next_id, reserved);
    cr_assert_eq(ns_meta_alloc_id(&m, &id), 0);
    cr_assert_eq(id, reserved);
    ns_meta_free(&m);
}

Test(ns_meta, observed_id_bumps_and_persists)
{
    struct ns_meta m;
    uint64_t id;
    cr_assert_eq(ns_meta_open(&m, dir, 0, 0), 0);
    cr_assert_eq(ns_meta_observe_id(&m, 50000), 0);
    cr_assert_eq(m.next_id, 50001);
    cr_assert_gt(m.block_id_reserved, 50000);
    cr_assert_eq(ns_meta_observe_id(&m, 7), 0, "an old id changes nothing");
    cr_assert_eq(m.next_id, 50001);
    ns_meta_free(&m);
    cr_assert_eq(ns_meta_open(&m, dir, 0, 0), 0);
    cr_assert_eq(ns_meta_alloc_id(&m, &id), 0);
    cr_assert_gt(id, 50000);
    ns_meta_free(&m);
}

Test(ns_meta, ids_exhaust_at_2_48)
{
    struct ns_meta m;
    uint64_t id;
    cr_assert_eq(ns_meta_open(&m, dir, 0, 0), 0);
    cr_assert_eq(ns_meta_observe_id(&m, NS_MAX_BLOCK_ID - 1), 0);
    cr_assert_eq(ns_meta_alloc_id(&m, &id), 0);
    cr_assert_eq(id, NS_MAX_BLOCK_ID);
    cr_assert_eq(ns_meta_alloc_id(&m, &id), -ENOSPC);
    ns_meta_free(&m);
    cr_assert_eq(ns_meta_open(&m, dir, 0, 0), 0, "the exhausted reserve still parses");
    cr_assert_eq(ns_meta_alloc_id(&m, &id), -ENOSPC);
    ns_meta_free(&m);
}

Test(ns_meta, known_servers_persist)
{
    struct ns_meta m;
    cr_assert_eq(ns_meta_open(&m, dir, 0, 0), 0);
    cr_assert_eq(ns_meta_add_known(&m, "ds-a"), 0);
    cr_assert_eq(ns_meta_add_known(&m, "ds_b"), 0);
    cr_assert_eq(ns_meta_add_known(&m, "ds-a"), 0);
    cr_assert_eq(m.nknown, 2);
    ns_meta_free(&m);
    cr_assert_eq(ns_meta_open(&m, dir, 0, 0), 0);
    cr_assert_eq(m.nknown, 2);
    cr_assert(ns_meta_is_known(&m, "ds-a"));
    cr_assert(ns_meta_is_known(&m, "ds_b"));
    cr_assert_not(ns_meta_is_known(&m, "ds-c"));
    ns_meta_free(&m);
}

Test(ns_meta, readonly_and_draining_marks_persist)
{
    struct ns_meta m;
    cr_assert_eq(ns_meta_open(&m, dir, 0, 0), 0);
    cr_assert_eq(ns_meta_set_draining(&m, "ds-a", 1), 0);
    cr_assert_eq(ns_meta_set_draining(&m, "ds-a", 1), 0, "setting twice is a no-op");
    cr_assert_eq(ns_meta_set_readonly(&m, "ds-b", 1), 0);
    cr_assert_eq(ns_meta_set_draining(&m, "ds-c", 1), 0);
    cr_assert_eq(ns_meta_set_draining(&m, "ds-c", 0), 0);
    ns_meta_free(&m);
    cr_assert_eq(ns_meta_open(&m, dir, 0, 0), 0);
    cr_assert(ns_meta_is_draining(&m, "ds-a"), "a drain goes on after a restart");
    cr_assert_not(ns_meta_is_draining(&m, "ds-b"));
    cr_assert_not(ns_meta_is_draining(&m, "ds-c"), "a canceled drain is gone");
    cr_assert(ns_meta_is_readonly(&m, "ds-b"));
    cr_assert_not(ns_meta_is_readonly(&m, "ds-a"));
    ns_meta_free(&m);
}

static const char *good =
    "imgstore-nameserver-meta 1\n"
    "cluster_id 0123456789abcdef0123456789abcdef\n"
    "block_id_reserved 1025\n"
    "replicas 2\n"
    "block_size 67108864\n"
    "known_server ds1\n"
    "end\n";

Test(ns_meta, parses_good_text)
{
    struct ns_meta m;
    memset(&m, 0, sizeof(m));
    cr_assert_eq(ns_meta_parse(good, strlen(good), &m), 0);
    cr_assert_eq(m.block_id_reserved, 1025);
    cr_assert_eq(m.nknown, 1);
    ns_meta_free(&m);
}

Test(ns_meta, corrupt_files_are_refused)
{
    static const char *bad[] = {
        "",
        "garbage\n",
        /* truncated: no end line */
        "imgstore-nameserver-meta 1\ncluster_id 0123456789abcdef0123456789abcdef\n",
        /* bad number */
        "imgstore-nameserver-meta 1\ncluster_id 0123456789abcdef0123456789abcdef\n"
        "block_id_reserved 12x\nreplicas 2\nblock_size 67108864\nend\n",
        /* replicas out of range */
        "imgstore-nameserver-meta 1\ncluster_id 0123456789abcdef0123456789abcdef\n"
        "block_id_reserved 1\nreplicas 9\nblock_size 67108864\nend\n",
        /* reserve past 2^48 */
        "imgstore-nameserver-meta 1\ncluster_id 0123456789abcdef0123456789abcdef\n"
        "block_id_reserved 281474976710657\nreplicas 2\nblock_size 67108864\nend\n",
        /* duplicated key */
        "imgstore-nameserver-meta 1\ncluster_id 0123456789abcdef0123456789abcdef\n"
        "block_id_reserved 1\nblock_id_reserved 2\nreplicas 2\nblock_size 67108864\nend\n",
        /* bad server id */
        "imgstore-nameserver-meta 1\ncluster_id 0123456789abcdef0123456789abcdef\n"
        "block_id_reserved 1\nreplicas 2\nblock_size 67108864\nknown_server a b\nend\n",
        /* short cluster id */
        "imgstore-nameserver-meta 1\ncluster_id 0123\n"
        "block_id_reserved 1\nreplicas 2\nblock_size 67108864\nend\n",
        /* unknown key */
        "imgstore-nameserver-meta 1\ncluster_id 0123456789abcdef0123456789abcdef\n"
        "block_id_reserved 1\nreplicas 2\nblock_size 67108864\ncolour blue\nend\n",
        /* missing key */
        "imgstore-nameserver-meta 1\ncluster_id 0123456789abcdef0123456789abcdef\n"
        "replicas 2\nblock_size 67108864\nend\n",
        /* a server drained twice */
        "imgstore-nameserver-meta 1\ncluster_id 0123456789abcdef0123456789abcdef\n"
        "block_id_reserved 1\nreplicas 2\nblock_size 67108864\ndraining_server a\n"
        "draining_server a\nend\n",
        /* a bad drained server id */
        "imgstore-nameserver-meta 1\ncluster_id 0123456789abcdef0123456789abcdef\n"
        "block_id_reserved 1\nreplicas 2\nblock_size 67108864\ndraining_server a/b\nend\n",
        /* text after end */
        "imgstore-nameserver-meta 1\ncluster_id 0123456789abcdef0123456789abcdef\n"
        "block_id_reserved 1\nreplicas 2\nblock_size 67108864\nend\nx\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct ns_meta m;
        write_meta(bad[i]);
        cr_assert_eq(ns_meta_open(&m, dir, 0, 0), IMG_EFORMAT, "case %zu", i);
        char *text;
        size_t len;
        cr_assert_eq(fs_read_all(meta_path, NS_META_MAX_BYTES, &text, &len), 0);
        cr_assert_str_eq(text, bad[i], "a corrupt file is never rewritten (case %zu)", i);
        free(text);
    }
}

Test(ns_meta, binary_garbage_refused)
{
    char junk[300];
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (char)(i * 7 + 1);
    cr_assert_eq(fs_write_atomic(meta_path, junk, sizeof(junk)), 0);
    struct ns_meta m;
    cr_assert_eq(ns_meta_open(&m, dir, 0, 0), IMG_EFORMAT);
}

Test(ns_meta, member_key_bindings_persist)
{
    struct ns_meta m;
    cr_assert_eq(ns_meta_open(&m, dir, 0, 0), 0);
    cr_assert_null(ns_meta_bound_key(&m, "ds-a"));
    cr_assert_eq(ns_meta_bind_key(&m, "ds-a", "member1"), 0);
    cr_assert_eq(ns_meta_bind_key(&m, "ds_b", "member.2@x"), 0);
    cr_assert_eq(ns_meta_bind_key(&m, "ds-a", "member2"), IMG_EINVAL, "bound once");
    cr_assert_eq(ns_meta_bind_key(&m, "ds-c", "bad key"), IMG_EINVAL);
    cr_assert_eq(ns_meta_bind_key(&m, "ds-c", ""), IMG_EINVAL);
    ns_meta_free(&m);
    cr_assert_eq(ns_meta_open(&m, dir, 0, 0), 0);
    cr_assert_eq(m.nbound, 2);
    cr_assert_str_eq(ns_meta_bound_key(&m, "ds-a"), "member1");
    cr_assert_str_eq(ns_meta_bound_key(&m, "ds_b"), "member.2@x");
    cr_assert_null(ns_meta_bound_key(&m, "ds-c"));
    ns_meta_free(&m);
    static const char *bad[] = {
        "imgstore-nameserver-meta 1\ncluster_id 0123456789abcdef0123456789abcdef\n"
        "block_id_reserved 1\nreplicas 2\nblock_size 67108864\nserver_key ds-a\nend\n",
        "imgstore-nameserver-meta 1\ncluster_id 0123456789abcdef0123456789abcdef\n"
        "block_id_reserved 1\nreplicas 2\nblock_size 67108864\nserver_key ds-a k1\n"
        "server_key ds-a k2\nend\n",
        "imgstore-nameserver-meta 1\ncluster_id 0123456789abcdef0123456789abcdef\n"
        "block_id_reserved 1\nreplicas 2\nblock_size 67108864\nserver_key ds-a k/1\nend\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&m, 0, sizeof(m));
        cr_assert_eq(ns_meta_parse(bad[i], strlen(bad[i]), &m), IMG_EFORMAT, "bad[%zu]", i);
        ns_meta_free(&m);
    }
}

/* ns_meta_save's hook sees the text written. */
static char saved_text[4096];
static void on_saved(void *arg, const char *text, size_t len)
{
    (*(int *)arg)++;
    snprintf(saved_text, sizeof(saved_text), "%.*s", (int)len, text);
}

Test(ns_meta, adopt_takes_the_shared_part)
{
    struct ns_meta m;
    cr_assert_eq(ns_meta_open(&m, dir, 2, 0), 0);
    m.next_id = 5000;
    m.block_id_reserved = 6000;
    cr_assert_eq(ns_meta_add_known(&m, "old1"), 0);
    cr_assert_eq(ns_meta_set_readonly(&m, "old1", 1), 0);
    int calls = 0;
    m.saved = on_saved;
    m.saved_arg = &calls;
    cr_assert_eq(ns_meta_save(&m), 0);
    cr_assert_eq(calls, 1);
    cr_assert(strstr(saved_text, "readonly_server old1\n"), "%s", saved_text);

    char text[1024];
    snprintf(text, sizeof(text),
             "imgstore-nameserver-meta 1\ncluster_id %s\nblock_id_reserved 99\nreplicas 3\n"
             "block_size 2097152\nknown_server ds1\nknown_server ds2\ndraining_server ds2\n"
             "setting task_cap 7\nserver_key ds1 member1\nend\n",
             m.cluster_id);
    cr_assert_eq(ns_meta_adopt(&m, text, strlen(text)), 0);
    cr_assert_eq(m.replicas, 3);
    cr_assert_eq(m.block_size, 2 * NS_MIB);
    cr_assert_eq(m.nknown, 2);
    cr_assert(ns_meta_is_known(&m, "ds2") && !ns_meta_is_known(&m, "old1"));
    cr_assert(!ns_meta_is_readonly(&m, "old1"));
    cr_assert(ns_meta_is_draining(&m, "ds2"));
    cr_assert_str_eq(ns_meta_bound_key(&m, "ds1"), "member1");
    cr_assert_eq(m.setting[NS_SETTING_TASK_CAP], 7);
    cr_assert(m.setting_set & (1u << NS_SETTING_TASK_CAP));
    /* Its own ids stay: another leader's reserve says nothing of ours. */
    cr_assert_eq(m.next_id, 5000);
    cr_assert_eq(m.block_id_reserved, 6000);
    ns_meta_free(&m);
}

Test(ns_meta, adopt_refuses_and_keeps)
{
    struct ns_meta m;
    cr_assert_eq(ns_meta_open(&m, dir, 2, 0), 0);
    cr_assert_eq(ns_meta_add_known(&m, "mine"), 0);
    const char *other =
        "imgstore-nameserver-meta 1\ncluster_id 0123456789abcdef0123456789abcdef\n"
        "block_id_reserved 1\nreplicas 2\nblock_size 2097152\nknown_server x\nend\n";
    if (strcmp(m.cluster_id, "0123456789abcdef0123456789abcdef") != 0)
        cr_assert_eq(ns_meta_adopt(&m, other, strlen(other)), IMG_ECLUSTER);
    const char *bad[] = {"", "end\n", "imgstore-nameserver-meta 1\nreplicas 9\nend\n",
                         "imgstore-nameserver-meta 1\ncluster_id x\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(ns_meta_adopt(&m, bad[i], strlen(bad[i])), IMG_EFORMAT, "%zu", i);
    cr_assert_eq(m.nknown, 1);
    cr_assert(ns_meta_is_known(&m, "mine"));
    cr_assert_eq(m.replicas, 2);
    ns_meta_free(&m);
}
