/* admin_status.c - ds-admin status and servers: the cluster's verdict and
 * one line per dataserver (CLUSTER_STATUS, ADMIN_SERVER_RATES, LIST_TASKS);
 * with several nameservers (or an HA leader) status asks each one for its
 * role: leader (epoch, how long), standby or unreachable; `ns step-down`
 * (ADMIN_STEP_DOWN) hands the leadership over.
 * Called by the command table in tools/ds_admin.c; calls tools/admin.c and
 * the library. */
#include "tools/admin.h"

#include "base/err.h"
#include "proto/frame.h"
#include "proto/nslist.h"

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


/* Raw bytes per logical byte; 0 when there is nothing stored. */
static double factor(uint64_t raw, uint64_t logical)
{
    return logical ? (double)raw / (double)logical : 0.0;
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
    struct emit_json j;
    emit_json_init(&j, stdout);
    emit_json_arr(&j, NULL, EMIT_LINES);
    for (size_t i = 0; i < st->n_servers; i++) {
        const Imgstore__ServerStatus *s = st->servers[i];
        const Imgstore__AdminServerRate *r = rate_of(rates, s->server_id);
        emit_json_obj(&j, NULL);
        emit_json_str(&j, "id", s->server_id);
        emit_json_str(&j, "address", s->addr);
        emit_json_str(&j, "http", s->http_addr);
        emit_json_str(&j, "state", admin_shown_state(s));
        emit_json_bool(&j, "up", admin_is_up(s));
        emit_json_bool(&j, "readonly", s->readonly);
        emit_json_bool(&j, "draining", s->draining);
        emit_json_u64(&j, "used", s->used);
        emit_json_u64(&j, "capacity", s->capacity);
        emit_json_u64(&j, "free", s->free);
        emit_json_num(&j, "use_pct", 1, admin_pct(s->used, s->capacity));
        emit_json_u64(&j, "blocks", s->blocks);
        emit_json_u64(&j, "disks", s->disks);
        emit_json_u64(&j, "failed_disks", s->failed_disks);
        emit_json_u64(&j, "last_heartbeat_ms", s->last_heartbeat_ms_ago);
        emit_json_u64(&j, "reads", s->reads);
        emit_json_u64(&j, "writes", s->writes);
        if (r) {
            emit_json_num(&j, "reads_per_s", 1, r->reads_per_s);
            emit_json_num(&j, "writes_per_s", 1, r->writes_per_s);
        } else {
            emit_json_null(&j, "reads_per_s");
            emit_json_null(&j, "writes_per_s");
        }
        emit_json_end(&j);
    }
    emit_json_end(&j);
}

static int servers_table(const Imgstore__ClusterStatusResp *st,
                         const Imgstore__AdminServerRatesResp *rates)
{
    static const char *const header[] = {"ID",     "ADDRESS", "HTTP",     "STATE",
                                         "DISKS",  "USED",    "CAPACITY", "USE%",
                                         "BLOCKS", "READS/S", "WRITES/S", "LAST HB"};
    struct emit_table t;
    emit_table_init(&t, sizeof(header) / sizeof(header[0]), header);
    for (size_t i = 0; i < st->n_servers; i++) {
        const Imgstore__ServerStatus *s = st->servers[i];
        const Imgstore__AdminServerRate *r = rate_of(rates, s->server_id);
        char a[CLI_HUMAN_MAX];
        emit_cell(&t, "%.*s", ID_SHOW, s->server_id ? s->server_id : "");
        emit_text(&t, s->addr);
        emit_text(&t, s->http_addr);
        emit_text(&t, admin_shown_state(s));
        if (s->failed_disks)
            emit_cell(&t, "%u (%u failed)", s->disks, s->failed_disks);
        else
            emit_cell(&t, "%u", s->disks);
        emit_text(&t, cli_human_size(s->used, a));
        emit_text(&t, cli_human_size(s->capacity, a));
        if (s->capacity)
            emit_cell(&t, "%.1f%%", admin_pct(s->used, s->capacity));
        else
            emit_text(&t, "-");
        emit_cell(&t, "%u", s->blocks);
        emit_cell(&t, r ? "%.1f" : "-", r ? r->reads_per_s : 0.0);
        emit_cell(&t, r ? "%.1f" : "-", r ? r->writes_per_s : 0.0);
        emit_text(&t, cli_human_ms(s->last_heartbeat_ms_ago, a));
    }
    return emit_table_end(&t, stdout) == 0 ? EXIT_OK : EXIT_FAIL;
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

/* Each nameserver of the list and what it is: "leader", "standby",
 * "unreachable" or the error it answered. */
struct ns_role {
    char addr[ADDR_MAX];
    const char *role;
    int64_t epoch;
    uint64_t leading_ms;
};

/* Asks every nameserver of c->ns for its status, when there are several or
 * the one answering leads an HA group. Returns how many were filled. */
static int ns_roles(struct admin_ctx *c, const Imgstore__ClusterStatusResp *st,
                    struct ns_role *out)
{
    struct nslist l;
    if (nslist_parse(c->ns, &l) != 0 || (l.n < 2 && st->epoch == 0))
        return 0;
    for (int i = 0; i < l.n; i++) {
        Imgstore__ClusterStatus q = IMGSTORE__CLUSTER_STATUS__INIT;
        ProtobufCMessage *m = NULL;
        int rc = imgstore_admin_call(c->h, l.addr[i], FT_CLUSTER_STATUS, &q.base,
                                     &imgstore__cluster_status_resp__descriptor, &m);
        struct ns_role *r = &out[i];
        snprintf(r->addr, sizeof(r->addr), "%s", l.addr[i]);
        r->epoch = 0;
        r->leading_ms = 0;
        if (rc == 0) {
            const Imgstore__ClusterStatusResp *s = (const Imgstore__ClusterStatusResp *)m;
            r->role = "leader";
            r->epoch = s->epoch;
            r->leading_ms = s->leading_ms;
        } else {
            r->role = rc == IMG_ENOTLEADER                        ? "standby"
                      : rc == IMG_ECONN || rc == IMG_ETIMEDOUT ? "unreachable"
                                                                 : img_strerror(rc);
        }
        if (m)
            protobuf_c_message_free_unpacked(m, NULL);
    }
    return l.n;
}

static void status_json(const Imgstore__ClusterStatusResp *st, const struct summary *sm,
                        const struct ns_role *roles, int nroles)
{
    struct emit_json j;
    emit_json_init(&j, stdout);
    emit_json_obj(&j, NULL);
    emit_json_str(&j, "cluster_id", st->cluster_id);
    emit_json_break(&j);
    emit_json_bool(&j, "safe_mode", st->safe_mode);
    emit_json_u64(&j, "replication", st->replicas);
    emit_json_u64(&j, "block_size", st->block_size);
    emit_json_break(&j);
    emit_json_u64(&j, "servers_up", sm->up);
    emit_json_u64(&j, "servers_down", sm->down);
    emit_json_u64(&j, "failed_disks", sm->failed_disks);
    emit_json_break(&j);
    emit_json_u64(&j, "capacity_used", sm->used);
    emit_json_u64(&j, "capacity_total", sm->capacity);
    emit_json_num(&j, "capacity_used_pct", 1, admin_pct(sm->used, sm->capacity));
    emit_json_break(&j);
    emit_json_u64(&j, "blocks_total", st->blocks_total);
    emit_json_u64(&j, "blocks_writable", st->blocks_writable);
    emit_json_u64(&j, "blocks_sealed", st->blocks_sealed);
    emit_json_break(&j);
    emit_json_u64(&j, "blocks_under_replicated", st->blocks_under_replicated);
    emit_json_u64(&j, "blocks_lost", st->blocks_lost);
    emit_json_u64(&j, "block_id_high_water", st->block_id_high_water);
    emit_json_break(&j);
    emit_json_u64(&j, "raw_bytes", st->raw_bytes);
    emit_json_u64(&j, "logical_bytes", st->logical_bytes);
    emit_json_num(&j, "storage_factor", 3, factor(st->raw_bytes, st->logical_bytes));
    emit_json_break(&j);
    emit_json_u64(&j, "ec_stripes", st->ec_stripes);
    emit_json_u64(&j, "ec_raw_bytes", st->ec_raw_bytes);
    emit_json_u64(&j, "ec_logical_bytes", st->ec_logical_bytes);
    emit_json_num(&j, "ec_storage_factor", 3, factor(st->ec_raw_bytes, st->ec_logical_bytes));
    emit_json_break(&j);
    if (sm->tasks >= 0)
        emit_json_i64(&j, "tasks_running", sm->tasks);
    else
        emit_json_null(&j, "tasks_running");
    emit_json_break(&j);
    if (nroles > 0) {
        emit_json_arr(&j, "nameservers", EMIT_INLINE);
        for (int i = 0; i < nroles; i++) {
            emit_json_obj(&j, NULL);
            emit_json_str(&j, "addr", roles[i].addr);
            emit_json_str(&j, "role", roles[i].role);
            if (roles[i].epoch) {
                emit_json_i64(&j, "epoch", roles[i].epoch);
                emit_json_u64(&j, "leading_ms", roles[i].leading_ms);
            }
            emit_json_end(&j);
        }
        emit_json_end(&j);
        emit_json_break(&j);
    }
    emit_json_str(&j, "verdict", sm->verdict);
    emit_json_end(&j);
}

static void status_text(const Imgstore__ClusterStatusResp *st, const struct summary *sm,
                        const struct ns_role *roles, int nroles)
{
    char used[CLI_HUMAN_MAX], cap[CLI_HUMAN_MAX], bs[CLI_HUMAN_MAX];
    printf("cluster:      %s\n", st->cluster_id ? st->cluster_id : "");
    for (int i = 0; i < nroles; i++) {
        printf("%-14s%s %s", i ? "" : "nameservers:", roles[i].addr, roles[i].role);
        if (roles[i].epoch)
            printf(" (epoch %lld, for %.1f s)", (long long)roles[i].epoch,
                   (double)roles[i].leading_ms / 1000.0);
        printf("\n");
    }
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
    char raw[CLI_HUMAN_MAX], logical[CLI_HUMAN_MAX];
    printf("storage:      %s raw for %s logical: factor %.3f\n",
           cli_human_size(st->raw_bytes, raw), cli_human_size(st->logical_bytes, logical),
           factor(st->raw_bytes, st->logical_bytes));
    if (st->ec_stripes)
        printf("erasure-coded: %u blocks, %s raw for %s logical: factor %.3f\n", st->ec_stripes,
               cli_human_size(st->ec_raw_bytes, raw),
               cli_human_size(st->ec_logical_bytes, logical),
               factor(st->ec_raw_bytes, st->ec_logical_bytes));
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
    struct ns_role roles[NSLIST_MAX];
    int nroles = ns_roles(c, st, roles);
    if (c->json)
        status_json(st, &sm, roles, nroles);
    else
        status_text(st, &sm, roles, nroles);
    imgstore_admin_free_status(st);
    return sm.at_risk ? EXIT_FAIL : EXIT_OK;
}

int admin_cmd_ns(struct admin_ctx *c)
{
    int rc = admin_want_args(c, 1);
    if (rc)
        return rc;
    if (strcmp(c->argv[1], "step-down") != 0)
        return admin_usage_error("ns: unknown action (want step-down): ", c->argv[1]);
    Imgstore__AdminStepDown q = IMGSTORE__ADMIN_STEP_DOWN__INIT;
    ProtobufCMessage *m = NULL;
    rc = admin_ns_call(c, FT_ADMIN_STEP_DOWN, &q.base, &imgstore__admin_step_down_resp__descriptor,
                       &m);
    if (rc == IMG_EINVAL) {
        fprintf(stderr, "%s: ns step-down: the nameserver runs alone (no --etcd): nobody to hand "
                        "over to\n",
                ADMIN_PROG);
        return EXIT_FAIL;
    }
    if (rc != 0)
        return admin_fail(c, "ns step-down", rc);
    const Imgstore__AdminStepDownResp *r = (const Imgstore__AdminStepDownResp *)m;
    if (c->json) {
        struct emit_json j;
        emit_json_init(&j, stdout);
        emit_json_obj(&j, NULL);
        emit_json_str(&j, "addr", r->addr);
        emit_json_i64(&j, "epoch", r->epoch);
        emit_json_u64(&j, "hold_ms", r->hold_ms);
        emit_json_end(&j);
    } else {
        printf("nameserver %s stepped down (epoch %lld); it will not run for leader for %u ms: "
               "a standby takes over\n",
               admin_or_dash(r->addr), (long long)r->epoch, r->hold_ms);
    }
    protobuf_c_message_free_unpacked(m, NULL);
    return EXIT_OK;
}
