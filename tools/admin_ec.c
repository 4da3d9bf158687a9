/* admin_ec.c - ds-admin ec: erasure coding of sealed blocks
 * (ADMIN_EC_ENCODE; docs/operations.md). `ec encode BLOCK` starts the
 * encoding of one sealed block, `ec encode --all-sealed` of every sealed
 * block (the nameserver starts them as its task cap allows); --wait follows
 * the tasks until they end. Called by the command table in tools/ds_admin.c;
 * calls tools/admin.c and the library. */
#include "tools/admin.h"

#include "base/err.h"
#include "proto/frame.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The state of task `id` in LIST_TASKS: 1 running, 0 done, -1 failed or
 * gone (*err its error text when failed). */
static int task_state(const Imgstore__ListTasksResp *l, uint64_t id, const char **err)
{
    for (size_t i = 0; l && i < l->n_tasks; i++) {
        const Imgstore__Task *t = l->tasks[i];
        if (t->id != id)
            continue;
        if (admin_task_running(t))
            return 1;
        if (t->state && strcmp(t->state, TASK_FAILED) == 0) {
            *err = t->error;
            return -1;
        }
        return 0;
    }
    return -1;
}

/* Waits for every task in ids; returns the number that failed. */
static size_t wait_tasks(struct admin_ctx *c, const uint64_t *ids, size_t n)
{
    size_t failed = 0;
    int *done = calloc(n ? n : 1, sizeof(*done));
    if (!done)
        return n;
    admin_catch_sigint();
    for (size_t left = n; left > 0 && !admin_interrupted;) {
        Imgstore__ListTasksResp *l = NULL;
        if (admin_list_tasks(c, &l) != 0) {
            admin_sleep_poll();
            continue;
        }
        for (size_t i = 0; i < n; i++) {
            if (done[i])
                continue;
            const char *err = NULL;
            int st = task_state(l, ids[i], &err);
            if (st == 1)
                continue;
            done[i] = 1;
            left--;
            if (st < 0) {
                failed++;
                if (!c->json)
                    printf("task %" PRIu64 " failed%s%s\n", ids[i], err ? ": " : "",
                           err ? err : "");
            } else if (!c->json) {
                printf("task %" PRIu64 " done\n", ids[i]);
            }
        }
        protobuf_c_message_free_unpacked(&l->base, NULL);
        if (left > 0)
            admin_sleep_poll();
    }
    free(done);
    return failed + (admin_interrupted ? 1 : 0);
}

int admin_cmd_ec(struct admin_ctx *c)
{
    if (c->argc < 2 || strcmp(c->argv[1], "encode") != 0)
        return admin_usage_error("ec takes: encode BLOCK|--all-sealed [--wait]", NULL);
    uint64_t block = 0;
    int all = 0, wait = 0;
    for (int i = 2; i < c->argc; i++) {
        if (strcmp(c->argv[i], "--all-sealed") == 0)
            all = 1;
        else if (strcmp(c->argv[i], "--wait") == 0)
            wait = 1;
        else if (block || admin_parse_u64(c->argv[i], &block) != 0 || block == 0)
            return admin_usage_error("invalid block id: ", c->argv[i]);
    }
    if (!!block == all)
        return admin_usage_error("ec encode takes a BLOCK or --all-sealed", NULL);
    Imgstore__AdminEcEncode q = IMGSTORE__ADMIN_EC_ENCODE__INIT;
    q.block_id = block;
    q.all_sealed = all;
    ProtobufCMessage *m = NULL;
    int rc = admin_ns_call(c, FT_ADMIN_EC_ENCODE, &q.base,
                           &imgstore__admin_ec_encode_resp__descriptor, &m);
    if (rc != 0) {
        const char *why = rc == IMGSTORE_EINVAL    ? "erasure coding is off (ds-admin set ec 4+2)"
                          : rc == IMGSTORE_ENOTFOUND ? "no such block"
                          : rc == IMG_EEXIST         ? "already encoded"
                          : rc == IMG_ESEALED        ? "the block is not sealed"
                          : rc == IMG_EBUSY          ? "a task runs for the block"
                          : rc == IMG_EUNAVAIL
                              ? "cannot start now (primary down or at the task cap, or fewer "
                                "servers that can take a shard than k+m; see the nameserver's log)"
                              : NULL;
        if (why) {
            fprintf(stderr, "%s: ec encode: %s\n", ADMIN_PROG, why);
            return EXIT_FAIL;
        }
        return admin_fail(c, "ec encode", rc);
    }
    const Imgstore__AdminEcEncodeResp *r = (const Imgstore__AdminEcEncodeResp *)m;
    if (c->json) {
        struct emit_json j;
        emit_json_init(&j, stdout);
        emit_json_obj(&j, NULL);
        emit_json_arr(&j, "tasks", EMIT_INLINE);
        for (size_t i = 0; i < r->n_task_ids; i++) {
            emit_json_obj(&j, NULL);
            emit_json_u64(&j, "task", r->task_ids[i]);
            emit_json_u64(&j, "block", i < r->n_block_ids ? r->block_ids[i] : 0);
            emit_json_end(&j);
        }
        emit_json_end(&j);
        emit_json_end(&j);
    } else {
        for (size_t i = 0; i < r->n_task_ids; i++)
            printf("task %" PRIu64 ": encode block %" PRIu64 "\n", r->task_ids[i],
                   i < r->n_block_ids ? r->block_ids[i] : 0);
        if (all)
            printf("%zu encodings started; the others start as the task cap allows\n",
                   r->n_task_ids);
    }
    size_t failed = wait ? wait_tasks(c, r->task_ids, r->n_task_ids) : 0;
    protobuf_c_message_free_unpacked(m, NULL);
    return failed ? EXIT_FAIL : EXIT_OK;
}
