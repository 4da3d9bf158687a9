/* Integration test of copy progress (issue 4: tasks visible with progress):
 * with the background copy cap at 1 MB/s, a drain copies 4 MiB blocks for
 * seconds each, and LIST_TASKS shows a running copy with 0 < bytes_done <
 * bytes_total while it runs (the target reports its copies in every
 * heartbeat), not only when it ends. The nameserver is then killed and
 * restarted: the drain goes on (kept in ns.meta), then it is canceled. */
#include "tests/integ/cluster.h"
#include "tests/integ/fixture.h"

#include "proto/frame.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define BLOCK_SIZE (4u << 20)
#define NFILES 40
#define FILE_SIZE (200u << 10)
#define DEADLINE_MS 30000


static void setup(void)
{
    fixture_start(&(struct cluster_opts){.ndataservers = 3, .replicas = 2,
                                         .block_size = BLOCK_SIZE});
}


TestSuite(progress, .init = setup, .fini = fixture_stop, .timeout = 120);

/* Sends one admin request to the nameserver; *out owned by the caller. */
static int ns_admin(imgstore_t *h, unsigned type, const ProtobufCMessage *req,
                    const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out)
{
    return imgstore_admin_call(h, NULL, type, req, desc, out);
}

Test(progress, running_copy_shows_bytes_done)
{
    cr_assert_not_null(C);
    imgstore_t *h = NULL;
    cr_assert_eq(imgstore_open(C->ns.addr, NULL, &h), 0);
    char name[IMGSTORE_NAME_MAX];
    for (int i = 0; i < NFILES; i++)
        cr_assert_eq(cluster_put_file(h, 7, (uint64_t)i, FILE_SIZE, name, 3), 0);

    Imgstore__AdminSetSetting set = IMGSTORE__ADMIN_SET_SETTING__INIT;
    set.key = "copy_rate";
    set.value = 1; /* MB/s */
    ProtobufCMessage *out = NULL;
    cr_assert_eq(ns_admin(h, FT_ADMIN_SET_SETTING, &set.base,
                          &imgstore__admin_set_setting_resp__descriptor, &out),
                 0);
    protobuf_c_message_free_unpacked(out, NULL);

    Imgstore__ClusterStatusResp *st = NULL;
    cr_assert_eq(imgstore_admin_cluster_status(h, &st), 0);
    const Imgstore__ServerStatus *victim = NULL;
    for (size_t i = 0; i < st->n_servers; i++)
        if (!victim || st->servers[i]->blocks > victim->blocks)
            victim = st->servers[i];
    cr_assert_not_null(victim);
    Imgstore__Drain dr = IMGSTORE__DRAIN__INIT;
    dr.server_id = victim->server_id;
    cr_assert_eq(ns_admin(h, FT_DRAIN, &dr.base, &imgstore__drain_resp__descriptor, &out), 0);
    protobuf_c_message_free_unpacked(out, NULL);

    int seen = 0;
    int64_t start = cluster_now_ms();
    while (!seen && cluster_now_ms() - start < DEADLINE_MS) {
        Imgstore__ListTasks lt = IMGSTORE__LIST_TASKS__INIT;
        Imgstore__ListTasksResp *r = NULL;
        cr_assert_eq(ns_admin(h, FT_LIST_TASKS, &lt.base, &imgstore__list_tasks_resp__descriptor,
                              (ProtobufCMessage **)&r),
                     0);
        for (size_t i = 0; i < r->n_tasks; i++) {
            const Imgstore__Task *t = r->tasks[i];
            if (strcmp(t->state, "running") == 0 && strcmp(t->kind, "replicate") == 0 &&
                t->bytes_done > 0 && t->bytes_done < t->bytes_total) {
                fprintf(stderr, "[progress] task %llu: block %llu, %llu of %llu bytes copied\n",
                        (unsigned long long)t->id, (unsigned long long)t->block_id,
                        (unsigned long long)t->bytes_done, (unsigned long long)t->bytes_total);
                seen = 1;
            }
        }
        protobuf_c_message_free_unpacked(&r->base, NULL);
        if (!seen)
            usleep(200 * 1000);
    }
    cr_assert(seen, "no running copy showed partial progress within %d ms", DEADLINE_MS);

    /* The drain is kept in ns.meta: it goes on after a nameserver restart. */
    char victim_id[128];
    snprintf(victim_id, sizeof(victim_id), "%s", victim->server_id);
    imgstore_admin_free_status(st);
    st = NULL;
    cr_assert_neq(cluster_signal_proc(&C->ns, SIGKILL), -1);
    cr_assert_eq(cluster_start_ns(C), 0);
    cr_assert_eq(cluster_wait_ready(C, C->nds, CLUSTER_READY_MS), 0);
    cr_assert_eq(imgstore_admin_cluster_status(h, &st), 0);
    int draining = -1;
    for (size_t i = 0; i < st->n_servers; i++)
        if (strcmp(st->servers[i]->server_id, victim_id) == 0)
            draining = st->servers[i]->draining;
    cr_assert_eq(draining, 1, "the drain was forgotten by the restarted nameserver");

    dr.server_id = victim_id;
    dr.cancel = 1;
    cr_assert_eq(ns_admin(h, FT_DRAIN, &dr.base, &imgstore__drain_resp__descriptor, &out), 0);
    protobuf_c_message_free_unpacked(out, NULL);
    imgstore_admin_free_status(st);
    imgstore_close(h);
    C->passed = 1;
}
