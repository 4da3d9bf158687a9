/* cli_ds_admin.c - the `ds-admin` operator command: the cluster's servers
 * and its overall health, as tables for people or JSON for scripts.
 *
 * Both commands read one CLUSTER_STATUS from the nameserver. `status` ends
 * with a one-word verdict (healthy, degraded, at risk) and exits 1 when the
 * cluster is at risk, so it can drive an alert. Exit status: 0 success, 1
 * failure or at risk, 2 usage error. docs/client.md is the reference. */
#include "client/admin.h"
#include "client/cli_util.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXIT_OK 0
#define EXIT_FAIL 1
#define EXIT_USAGE 2
#define DEFAULT_NS "127.0.0.1:7400"
#define ID_SHOW 12 /* characters of a server id shown in tables */
#define PCT 100.0
#define STATE_UP "up"

static const char *prog = "ds-admin";

static void usage(FILE *fp)
{
    fprintf(fp,
            "usage: ds-admin [--ns HOST:PORT] [--json] [--timeout MS] COMMAND\n"
            "\n"
            "commands:\n"
            "  servers   one line per dataserver: address, state, space, blocks, heartbeat\n"
            "  status    cluster summary and a verdict: healthy, degraded or at risk\n"
            "            (exit status 1 when at risk)\n"
            "\n"
            "options:\n"
            "  --ns HOST:PORT   nameserver (default $IMGSTORE_NS or %s)\n"
            "  --json           print one JSON document instead of text\n"
            "  --timeout MS     timeout in milliseconds (default 10000)\n"
            "  -h, --help       print this help\n",
            DEFAULT_NS);
}

static double pct(uint64_t part, uint64_t whole)
{
    return whole ? (double)part * PCT / (double)whole : 0.0;
}

static int by_id(const void *a, const void *b)
{
    const Imgstore__ServerStatus *x = *(Imgstore__ServerStatus *const *)a;
    const Imgstore__ServerStatus *y = *(Imgstore__ServerStatus *const *)b;
    return strcmp(x->server_id ? x->server_id : "", y->server_id ? y->server_id : "");
}

static int is_up(const Imgstore__ServerStatus *s)
{
    return s->state && strcmp(s->state, STATE_UP) == 0;
}

/* ---- servers -------------------------------------------------------------- */

static void servers_json(const Imgstore__ClusterStatusResp *st)
{
    printf("[");
    for (size_t i = 0; i < st->n_servers; i++) {
        const Imgstore__ServerStatus *s = st->servers[i];
        printf("%s\n  {\"id\": ", i ? "," : "");
        cli_json_string(stdout, s->server_id);
        printf(", \"address\": ");
        cli_json_string(stdout, s->addr);
        printf(", \"http\": ");
        cli_json_string(stdout, s->http_addr);
        printf(", \"state\": ");
        cli_json_string(stdout, s->state);
        printf(", \"used\": %llu, \"capacity\": %llu, \"free\": %llu, \"use_pct\": %.1f, "
               "\"blocks\": %u, \"disks\": %u, \"last_heartbeat_ms\": %llu, "
               "\"reads\": %llu, \"writes\": %llu}",
               (unsigned long long)s->used, (unsigned long long)s->capacity,
               (unsigned long long)s->free, pct(s->used, s->capacity), s->blocks, s->disks,
               (unsigned long long)s->last_heartbeat_ms_ago, (unsigned long long)s->reads,
               (unsigned long long)s->writes);
    }
    printf("%s]\n", st->n_servers ? "\n" : "");
}

static int servers_table(const Imgstore__ClusterStatusResp *st)
{
    static const char *const header[] = {"ID",   "ADDRESS", "HTTP",   "STATE", "USED",
                                         "CAPACITY", "USE%", "BLOCKS", "LAST HB"};
    struct cli_table t;
    if (cli_table_init(&t, sizeof(header) / sizeof(header[0]), header) != 0)
        return EXIT_FAIL;
    for (size_t i = 0; i < st->n_servers; i++) {
        const Imgstore__ServerStatus *s = st->servers[i];
        char id[ID_SHOW + 1], used[CLI_HUMAN_MAX], cap[CLI_HUMAN_MAX], use[CLI_HUMAN_MAX],
            blocks[CLI_HUMAN_MAX], hb[CLI_HUMAN_MAX];
        snprintf(id, sizeof(id), "%s", s->server_id ? s->server_id : "");
        if (s->capacity)
            snprintf(use, sizeof(use), "%.1f%%", pct(s->used, s->capacity));
        else
            snprintf(use, sizeof(use), "-");
        snprintf(blocks, sizeof(blocks), "%u", s->blocks);
        const char *row[] = {id, s->addr, s->http_addr, s->state,
                             cli_human_size(s->used, used), cli_human_size(s->capacity, cap),
                             use, blocks, cli_human_ms(s->last_heartbeat_ms_ago, hb)};
        if (cli_table_add(&t, row) != 0) {
            cli_table_free(&t);
            return EXIT_FAIL;
        }
    }
    cli_table_print(&t, stdout);
    cli_table_free(&t);
    return EXIT_OK;
}

static int cmd_servers(Imgstore__ClusterStatusResp *st, int json)
{
    if (st->n_servers > 1)
        qsort(st->servers, st->n_servers, sizeof(st->servers[0]), by_id);
    if (json) {
        servers_json(st);
        return EXIT_OK;
    }
    return servers_table(st);
}

/* ---- status ---------------------------------------------------------------- */

struct summary {
    unsigned up, down;
    uint64_t used, capacity; /* over the servers that are up */
    const char *verdict;
    int at_risk;
};

static void summarize(const Imgstore__ClusterStatusResp *st, struct summary *sm)
{
    memset(sm, 0, sizeof(*sm));
    for (size_t i = 0; i < st->n_servers; i++) {
        const Imgstore__ServerStatus *s = st->servers[i];
        if (is_up(s)) {
            sm->up++;
            sm->used += s->used;
            sm->capacity += s->capacity;
        } else {
            sm->down++;
        }
    }
    if (st->blocks_lost > 0 || sm->up < st->replicas) {
        sm->verdict = "at risk";
        sm->at_risk = 1;
    } else if (sm->down > 0 || st->blocks_under_replicated > 0) {
        sm->verdict = "degraded";
    } else {
        sm->verdict = "healthy";
    }
}

static void status_json(const Imgstore__ClusterStatusResp *st, const struct summary *sm)
{
    printf("{\"cluster_id\": ");
    cli_json_string(stdout, st->cluster_id);
    printf(",\n \"safe_mode\": %s, \"replication\": %u, \"block_size\": %llu,\n"
           " \"servers_up\": %u, \"servers_down\": %u,\n"
           " \"capacity_used\": %llu, \"capacity_total\": %llu, \"capacity_used_pct\": %.1f,\n"
           " \"blocks_total\": %llu, \"blocks_writable\": %llu, \"blocks_sealed\": %llu,\n"
           " \"blocks_under_replicated\": %llu, \"blocks_lost\": %llu,"
           " \"block_id_high_water\": %llu,\n \"verdict\": ",
           st->safe_mode ? "true" : "false", st->replicas, (unsigned long long)st->block_size,
           sm->up, sm->down, (unsigned long long)sm->used, (unsigned long long)sm->capacity,
           pct(sm->used, sm->capacity), (unsigned long long)st->blocks_total,
           (unsigned long long)st->blocks_writable, (unsigned long long)st->blocks_sealed,
           (unsigned long long)st->blocks_under_replicated, (unsigned long long)st->blocks_lost,
           (unsigned long long)st->block_id_high_water);
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
    printf("capacity:     %s used of %s (%.1f%%)\n", cli_human_size(sm->used, used),
           cli_human_size(sm->capacity, cap), pct(sm->used, sm->capacity));
    printf("blocks:       %llu total, %llu writable, %llu sealed, %llu under-replicated, "
           "%llu lost\n",
           (unsigned long long)st->blocks_total, (unsigned long long)st->blocks_writable,
           (unsigned long long)st->blocks_sealed,
           (unsigned long long)st->blocks_under_replicated,
           (unsigned long long)st->blocks_lost);
    printf("verdict:      %s\n", sm->verdict);
}

static int cmd_status(Imgstore__ClusterStatusResp *st, int json)
{
    struct summary sm;
    summarize(st, &sm);
    if (json)
        status_json(st, &sm);
    else
        status_text(st, &sm);
    return sm.at_risk ? EXIT_FAIL : EXIT_OK;
}

/* ---- main ------------------------------------------------------------------ */

static int usage_error(const char *what, const char *arg)
{
    fprintf(stderr, "%s: %s%s\n", prog, what, arg ? arg : "");
    usage(stderr);
    return EXIT_USAGE;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {{"ns", required_argument, NULL, 'n'},
                                             {"json", no_argument, NULL, 'j'},
                                             {"timeout", required_argument, NULL, 't'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    const char *ns = getenv("IMGSTORE_NS");
    if (!ns || !*ns)
        ns = DEFAULT_NS;
    struct imgstore_opts opts = {0};
    int json = 0, c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case 'n':
            ns = optarg;
            break;
        case 'j':
            json = 1;
            break;
        case 't':
            if (cli_parse_int(optarg, &opts.timeout_ms) != 0 || opts.timeout_ms == 0)
                return usage_error("invalid --timeout: ", optarg);
            break;
        case 'h':
            usage(stdout);
            return EXIT_OK;
        default:
            return usage_error(c == ':' ? "missing argument for " : "unknown option ",
                               argv[optind - 1]);
        }
    }
    if (optind >= argc)
        return usage_error("missing command", NULL);
    if (optind + 1 < argc)
        return usage_error("unexpected argument: ", argv[optind + 1]);
    const char *cmd = argv[optind];
    int (*run)(Imgstore__ClusterStatusResp *, int) = NULL;
    if (strcmp(cmd, "servers") == 0)
        run = cmd_servers;
    else if (strcmp(cmd, "status") == 0)
        run = cmd_status;
    else
        return usage_error("unknown command: ", cmd);
    imgstore_t *h = NULL;
    if (imgstore_open(ns, &opts, &h) != 0)
        return usage_error("invalid nameserver address (want HOST:PORT): ", ns);
    Imgstore__ClusterStatusResp *st = NULL;
    int rc = imgstore_admin_cluster_status(h, &st);
    imgstore_close(h);
    if (rc != 0) {
        fprintf(stderr, "%s: %s: nameserver %s: %s\n", prog, cmd, ns, imgstore_strerror(rc));
        return EXIT_FAIL;
    }
    int status = run(st, json);
    imgstore_admin_free_status(st);
    return status;
}
