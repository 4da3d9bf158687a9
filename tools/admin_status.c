/* admin_status.c - ds-admin status and servers: the cluster's verdict and
 * one line per dataserver (CLUSTER_STATUS, ADMIN_SERVER_RATES, LIST_TASKS).
 * Called by the command table in tools/ds_admin.c; calls tools/admin.c and
 * the library. */
#include "tools/admin.h"

#include "base/err.h"
#include "proto/frame.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int by_id(const void *a, const void *b)
{
    const Imgstore__ServerStatus *x = *(Imgstore__ServerStatus *const *)a;
    const Imgstore__ServerStatus *y = *(Imgstore__ServerStatus *const *)b;
    return strcmp(x->server_id ? x->server_id : "", y->server_id ? y->server_id : "");
}

/* ---- servers -------------------------------------------------------------- */

/* Looks up a server's rates in an ADMIN_SERVER_RATES answer (NULL: none). */
static const Imgstore__AdminServerRate *rate_of(const Imgstore__AdminServerRatesResp *r,
                                                const char *id)
{
    for (size_t i = 0; r && i < r->n_rates; i++)
        if (r->rates[i]->server_id && id && strcmp(r->rates[i]->server_id, id) == 0)
            return r->rates[i];
    return NULL;
}

static void servers_json(const Imgstore__ClusterStatusResp *st,
                         const Imgstore__AdminServerRatesResp *rates)
{
    printf("[");
    for (size_t i = 0; i < st->n_servers; i++) {
        const Imgstore__ServerStatus *s = st->servers[i];
        const Imgstore__AdminServerRate *r = rate_of(rates, s->server_id);
        printf("%s\n  {\"id\": ", i ? "," : "");
        cli_json_string(stdout, s->server_id);
        printf(", \"address\": ");
        cli_json_string(stdout, s->addr);
        printf(", \"http\": ");
        cli_json_string(stdout, s->http_addr);
        printf(", \"state\": ");
        cli_json_string(stdout, admin_shown_state(s));
        printf(", \"up\": %s, \"readonly\": %s, \"draining\": %s", admin_is_up(s) ? "true" : "false",
               s->readonly ? "true" : "false", s->draining ? "true" : "false");
        printf(", \"used\": %llu, \"capacity\": %llu, \"free\": %llu, \"use_pct\": %.1f, "
               "\"blocks\": %u, \"disks\": %u, \"failed_disks\": %u, \"last_heartbeat_ms\": %llu, "
               "\"reads\": %llu, \"writes\": %llu",
               (unsigned long long)s->used, (unsigned long long)s->capacity,
               (unsigned long long)s->free, admin_pct(s->used, s->capacity), s->blocks, s->disks,
               s->failed_disks,
               (unsigned long long)s->last_heartbeat_ms_ago, (unsigned long long)s->reads,
               (unsigned long long)s->writes);
        if (r)
            printf(", \"reads_per_s\": %.1f, \"writes_per_s\": %.1f}", r->reads_per_s,
                   r->writes_per_s);
        else
            printf(", \"reads_per_s\": null, \"writes_per_s\": null}");
    }
    printf("%s]\n", st->n_servers ? "\n" : "");
}

static int servers_table(const Imgstore__ClusterStatusResp *st,
                         const Imgstore__AdminServerRatesResp *rates)
{
    static const char *const header[] = {"ID",     "ADDRESS", "HTTP",     "STATE",
                                         "DISKS",  "USED",    "CAPACITY", "USE%",
                                         "BLOCKS", "READS/S", "WRITES/S", "LAST HB"};
    struct cli_table t;
    if (cli_table_init(&t, sizeof(header) / sizeof(header[0]), header) != 0)
        return EXIT_FAIL;
    for (size_t i = 0; i < st->n_servers; i++) {
        const Imgstore__ServerStatus *s = st->servers[i];
        const Imgstore__AdminServerRate *r = rate_of(rates, s->server_id);
        char id[ID_SHOW + 1], used[CLI_HUMAN_MAX], cap[CLI_HUMAN_MAX], use[CLI_HUMAN_MAX],
            blocks[CLI_HUMAN_MAX], hb[CLI_HUMAN_MAX], disks[CLI_HUMAN_MAX], rps[CLI_HUMAN_MAX],
            wps[CLI_HUMAN_MAX];
        snprintf(id, sizeof(id), "%s", s->server_id ? s->server_id : "");
        if (s->capacity)
            snprintf(use, sizeof(use), "%.1f%%", admin_pct(s->used, s->capacity));
        else
            snprintf(use, sizeof(use), "-");
        snprintf(blocks, sizeof(blocks), "%u", s->blocks);
        if (s->failed_disks)
            snprintf(disks, sizeof(disks), "%u (%u failed)", s->disks, s->failed_disks);
        else
            snprintf(disks, sizeof(disks), "%u", s->disks);
        snprintf(rps, sizeof(rps), r ? "%.1f" : "-", r ? r->reads_per_s : 0.0);
        snprintf(wps, sizeof(wps), r ? "%.1f" : "-", r ? r->writes_per_s : 0.0);
        const char *row[] = {id,
                             s->addr,
                             s->http_addr,
                             admin_shown_state(s),
                             disks,
                             cli_human_size(s->used, used),
                             cli_human_size(s->capacity, cap),
                             use,
                             blocks,
                             rps,
                             wps,
                             cli_human_ms(s->last_heartbeat_ms_ago, hb)};
        if (cli_table_add(&t, row) != 0) {
            cli_table_free(&t);
            return EXIT_FAIL;
        }
    }
    cli_table_print(&t, stdout);
    cli_table_free(&t);
    return EXIT_OK;
}

int admin_cmd_servers(struct admin_ctx *c)
{
    int rc = admin_want_args(c, 0);
    if (rc)
        return rc;
    Imgstore__ClusterStatusResp *st = NULL;
    if ((rc = imgstore_admin_cluster_status(c->h, &st)) != 0)
        return admin_fail(c, "servers", rc);
    /* The rates are extra: an older nameserver without them shows "-". */
    Imgstore__AdminServerRates rq = IMGSTORE__ADMIN_SERVER_RATES__INIT;
    ProtobufCMessage *m = NULL;
    imgstore_admin_call(c->h, NULL, FT_ADMIN_SERVER_RATES, &rq.base,
                        &imgstore__admin_server_rates_resp__descriptor, &m);
    Imgstore__AdminServerRatesResp *rates = (Imgstore__AdminServerRatesResp *)m;
    if (st->n_servers > 1)
        qsort(st->servers, st->n_servers, sizeof(st->servers[0]), by_id);
    int status = EXIT_OK;
    if (c->json)
        servers_json(st, rates);
    else
        status = servers_table(st, rates);
    if (m)
        protobuf_c_message_free_unpacked(m, NULL);
    imgstore_admin_free_status(st);
    return status;
}

/* ---- status ---------------------------------------------------------------- */

struct summary {
    unsigned up, down;
    unsigned failed_disks; /* over the servers that are up */
    uint64_t used, capacity; /* over the servers that are up */
    const char *verdict;
    int at_risk;
    long tasks; /* running background tasks, -1 when the nameserver has none */
};

static void summarize(const Imgstore__ClusterStatusResp *st, struct summary *sm)
{
    memset(sm, 0, sizeof(*sm));
    for (size_t i = 0; i < st->n_servers; i++) {
        const Imgstore__ServerStatus *s = st->servers[i];
        if (admin_is_up(s)) {
            sm->up++;
            sm->failed_disks += s->failed_disks;
            sm->used += s->used;
            sm->capacity += s->capacity;
        } else {
            sm->down++;
        }
    }
    if (st->blocks_lost > 0 || sm->up < st->replicas) {
        sm->verdict = "at risk";
        sm->at_risk = 1;
    } else if (sm->down > 0 || st->blocks_under_replicated > 0 || sm->failed_disks > 0) {
        sm->verdict = "degraded";
    } else {
        sm->verdict = "healthy";
    }
}

/* Counts the running background tasks (LIST_TASKS); -1 when unavailable. */
static long running_tasks(struct admin_ctx *c)
{
    Imgstore__ListTasks rq = IMGSTORE__LIST_TASKS__INIT;
    ProtobufCMessage *m = NULL;
    if (imgstore_admin_call(c->h, NULL, FT_LIST_TASKS, &rq.base,
                            &imgstore__list_tasks_resp__descriptor, &m) != 0)
        return -1;
    const Imgstore__ListTasksResp *r = (const Imgstore__ListTasksResp *)m;
    long n = 0;
    for (size_t i = 0; i < r->n_tasks; i++)
        n += r->tasks[i]->state && strcmp(r->tasks[i]->state, "running") == 0;
    protobuf_c_message_free_unpacked(m, NULL);
    return n;
}

static void status_json(const Imgstore__ClusterStatusResp *st, const struct summary *sm)
{
    printf("{\"cluster_id\": ");
    cli_json_string(stdout, st->cluster_id);
    printf(",\n \"safe_mode\": %s, \"replication\": %u, \"block_size\": %llu,\n"
           " \"servers_up\": %u, \"servers_down\": %u, \"failed_disks\": %u,\n"
           " \"capacity_used\": %llu, \"capacity_total\": %llu, \"capacity_used_pct\": %.1f,\n"
           " \"blocks_total\": %llu, \"blocks_writable\": %llu, \"blocks_sealed\": %llu,\n"
           " \"blocks_under_replicated\": %llu, \"blocks_lost\": %llu,"
           " \"block_id_high_water\": %llu,\n",
           st->safe_mode ? "true" : "false", st->replicas, (unsigned long long)st->block_size,
           sm->up, sm->down, sm->failed_disks, (unsigned long long)sm->used, (unsigned long long)sm->capacity,
           admin_pct(sm->used, sm->capacity), (unsigned long long)st->blocks_total,
           (unsigned long long)st->blocks_writable, (unsigned long long)st->blocks_sealed,
           (unsigned long long)st->blocks_under_replicated, (unsigned long long)st->blocks_lost,
           (unsigned long long)st->block_id_high_water);
    if (sm->tasks >= 0)
        printf(" \"tasks_running\": %ld,\n", sm->tasks);
    else
        printf(" \"tasks_running\": null,\n");
    printf(" \"verdict\": ");
    cli_json_string(stdout, sm->verdict);
    printf("}\n");
}

static void status_text(const Imgstore__ClusterStatusResp *st, const struct summary *sm)
{
    char used[CLI_HUMAN_MAX], cap[CLI_HUMAN_MAX], bs[CLI_HUMAN_MAX];
    printf("cluster:      %s\n", st->cluster_id ? st->cluster_id : "");
    printf("safe mode:    %s\n", st->safe_mode ? "on" : "off");
    printf("replication:  %u\n", st->replicas);
    printf("block size:   %s\n", cli_human_size(st->block_size, bs));
    printf("servers:      %u up, %u down\n", sm->up, sm->down);
    if (sm->failed_disks)
        printf("failed disks: %u (ds-admin servers shows where; replace and restart)\n",
               sm->failed_disks);
    printf("capacity:     %s used of %s (%.1f%%)\n", cli_human_size(sm->used, used),
           cli_human_size(sm->capacity, cap), admin_pct(sm->used, sm->capacity));
    printf("blocks:       %llu total, %llu writable, %llu sealed, %llu under-replicated, "
           "%llu lost\n",
           (unsigned long long)st->blocks_total, (unsigned long long)st->blocks_writable,
           (unsigned long long)st->blocks_sealed,
           (unsigned long long)st->blocks_under_replicated,
           (unsigned long long)st->blocks_lost);
    if (sm->tasks >= 0)
        printf("tasks:        %ld running\n", sm->tasks);
    printf("verdict:      %s\n", sm->verdict);
}

int admin_cmd_status(struct admin_ctx *c)
{
    int rc = admin_want_args(c, 0);
    if (rc)
        return rc;
    Imgstore__ClusterStatusResp *st = NULL;
    if ((rc = imgstore_admin_cluster_status(c->h, &st)) != 0)
        return admin_fail(c, "status", rc);
    struct summary sm;
    summarize(st, &sm);
    sm.tasks = running_tasks(c);
    if (c->json)
        status_json(st, &sm);
    else
        status_text(st, &sm);
    imgstore_admin_free_status(st);
    return sm.at_risk ? EXIT_FAIL : EXIT_OK;
}
