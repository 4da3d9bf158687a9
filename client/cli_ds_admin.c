/* cli_ds_admin.c - the `ds-admin` operator command: the cluster's servers,
 * its overall health, its blocks and where one file lives, as tables for
 * people or JSON for scripts.
 *
 *   status            CLUSTER_STATUS (+ LIST_TASKS when the nameserver has it)
 *   servers           CLUSTER_STATUS + ADMIN_SERVER_RATES
 *   blocks, block ID  ADMIN_LIST_BLOCKS, ADMIN_BLOCK_INFO
 *   file NAME         ADMIN_BLOCK_INFO, then STAT on every replica
 *
 * Global options come before the command, the command's own after it; every
 * command takes --help. Exit status: 0 success, 1 failure (one line on
 * stderr), `status` at risk, or `file` missing on a replica; 2 usage error.
 * docs/client.md is the reference. */
#include "client/admin.h"
#include "client/cli_util.h"

#include "common/err.h"
#include "proto/fname.h"
#include "proto/frame.h"
#include "proto/mime.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EXIT_OK 0
#define EXIT_FAIL 1
#define EXIT_USAGE 2
#define DEFAULT_NS "127.0.0.1:7400"
#define ID_SHOW 12 /* characters of a server id shown in tables */
#define PCT 100.0
#define STATE_UP "up"
#define TIME_BUF 32
#define REPLICAS_TEXT 160

static const char *prog = "ds-admin";

/* What every command gets: the handle, the output mode, its arguments. */
struct ctx {
    imgstore_t *h;
    const char *ns;
    int json;
    int argc;    /* the command's arguments, argv[0] is the command */
    char **argv;
};

struct command {
    const char *name;
    const char *args;
    const char *help;
    int (*run)(struct ctx *c);
};

static const struct command commands[];

static void usage(FILE *fp)
{
    fprintf(fp,
            "usage: ds-admin [--ns HOST:PORT] [--json] [--timeout MS] COMMAND [ARGS]\n"
            "\n"
            "commands:\n"
            "  status                 cluster summary and a verdict: healthy, degraded or at risk\n"
            "                         (exit status 1 when at risk)\n"
            "  servers                one line per dataserver: state, space, blocks, reads/s,\n"
            "                         writes/s, heartbeat\n"
            "  blocks [--server S] [--state writable|sealed|open] [--under-replicated]\n"
            "         [--limit N]     a table of blocks\n"
            "  block ID               one block: state, size, files, replicas\n"
            "  file NAME              where a file lives, and whether every replica has it\n"
            "                         (exit status 1 when a replica misses it)\n"
            "\n"
            "options:\n"
            "  --ns HOST:PORT   nameserver (default $IMGSTORE_NS or %s)\n"
            "  --json           print one JSON document instead of text\n"
            "  --timeout MS     timeout in milliseconds (default 10000)\n"
            "  -h, --help       print this help; COMMAND --help prints the command's\n",
            DEFAULT_NS);
}

static int usage_error(const char *what, const char *arg)
{
    fprintf(stderr, "%s: %s%s\n", prog, what, arg ? arg : "");
    usage(stderr);
    return EXIT_USAGE;
}

/* Prints the one failure line of a command and returns EXIT_FAIL. */
static int fail(const struct ctx *c, const char *what, int rc)
{
    fprintf(stderr, "%s: %s: nameserver %s: %s\n", prog, what, c->ns, imgstore_strerror(rc));
    return EXIT_FAIL;
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

static int parse_u64(const char *s, uint64_t *out)
{
    char *end;
    if (!s || !*s || *s == '-' || *s == '+')
        return -1;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end)
        return -1;
    *out = v;
    return 0;
}

static const char *iso_time(uint32_t secs, char out[TIME_BUF])
{
    time_t t = (time_t)secs;
    struct tm tm;
    snprintf(out, TIME_BUF, "-");
    if (secs && gmtime_r(&t, &tm))
        strftime(out, TIME_BUF, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return out;
}

/* Command-level option parsing: handles --help, returns 1 when the command
 * must stop with *rc set, 0 to go on. */
static int want_help(const struct ctx *c, const struct command *cmd, int *rc)
{
    for (int i = 1; i < c->argc; i++) {
        if (strcmp(c->argv[i], "--help") == 0 || strcmp(c->argv[i], "-h") == 0) {
            printf("usage: ds-admin [--ns HOST:PORT] [--json] %s%s%s\n\n%s\n", cmd->name,
                   cmd->args[0] ? " " : "", cmd->args, cmd->help);
            *rc = EXIT_OK;
            return 1;
        }
    }
    return 0;
}

static const struct command *find_command(const char *name)
{
    for (const struct command *k = commands; k->name; k++)
        if (strcmp(k->name, name) == 0)
            return k;
    return NULL;
}

/* Requires exactly `n` positional arguments after the command. */
static int want_args(const struct ctx *c, int n)
{
    if (c->argc - 1 < n)
        return usage_error("missing argument for ", c->argv[0]);
    if (c->argc - 1 > n)
        return usage_error("unexpected argument: ", c->argv[n + 1]);
    return 0;
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
        cli_json_string(stdout, s->state);
        printf(", \"used\": %llu, \"capacity\": %llu, \"free\": %llu, \"use_pct\": %.1f, "
               "\"blocks\": %u, \"disks\": %u, \"last_heartbeat_ms\": %llu, "
               "\"reads\": %llu, \"writes\": %llu",
               (unsigned long long)s->used, (unsigned long long)s->capacity,
               (unsigned long long)s->free, pct(s->used, s->capacity), s->blocks, s->disks,
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
            snprintf(use, sizeof(use), "%.1f%%", pct(s->used, s->capacity));
        else
            snprintf(use, sizeof(use), "-");
        snprintf(blocks, sizeof(blocks), "%u", s->blocks);
        snprintf(disks, sizeof(disks), "%u", s->disks);
        snprintf(rps, sizeof(rps), r ? "%.1f" : "-", r ? r->reads_per_s : 0.0);
        snprintf(wps, sizeof(wps), r ? "%.1f" : "-", r ? r->writes_per_s : 0.0);
        const char *row[] = {id,
                             s->addr,
                             s->http_addr,
                             s->state,
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

static int cmd_servers(struct ctx *c)
{
    int rc = want_args(c, 0);
    if (rc)
        return rc;
    Imgstore__ClusterStatusResp *st = NULL;
    if ((rc = imgstore_admin_cluster_status(c->h, &st)) != 0)
        return fail(c, "servers", rc);
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

/* Counts the running background tasks (LIST_TASKS); -1 when unavailable. */
static long running_tasks(struct ctx *c)
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
           " \"servers_up\": %u, \"servers_down\": %u,\n"
           " \"capacity_used\": %llu, \"capacity_total\": %llu, \"capacity_used_pct\": %.1f,\n"
           " \"blocks_total\": %llu, \"blocks_writable\": %llu, \"blocks_sealed\": %llu,\n"
           " \"blocks_under_replicated\": %llu, \"blocks_lost\": %llu,"
           " \"block_id_high_water\": %llu,\n",
           st->safe_mode ? "true" : "false", st->replicas, (unsigned long long)st->block_size,
           sm->up, sm->down, (unsigned long long)sm->used, (unsigned long long)sm->capacity,
           pct(sm->used, sm->capacity), (unsigned long long)st->blocks_total,
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
    printf("capacity:     %s used of %s (%.1f%%)\n", cli_human_size(sm->used, used),
           cli_human_size(sm->capacity, cap), pct(sm->used, sm->capacity));
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

static int cmd_status(struct ctx *c)
{
    int rc = want_args(c, 0);
    if (rc)
        return rc;
    Imgstore__ClusterStatusResp *st = NULL;
    if ((rc = imgstore_admin_cluster_status(c->h, &st)) != 0)
        return fail(c, "status", rc);
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

/* ---- blocks and block ------------------------------------------------------- */

/* "ds1*,ds2,ds3!" : primary starred, down replicas marked with '!'. */
static const char *replicas_text(const Imgstore__AdminBlock *b, char *out, size_t n)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < b->n_replicas && used < n; i++) {
        const Imgstore__AdminReplica *r = b->replicas[i];
        char id[ID_SHOW + 1];
        snprintf(id, sizeof(id), "%s", r->server_id ? r->server_id : "");
        int w = snprintf(out + used, n - used, "%s%s%s%s", i ? "," : "", id,
                         r->primary ? "*" : "", r->up ? "" : "!");
        used += w > 0 ? (size_t)w : 0;
    }
    return out;
}

static void block_json(const Imgstore__AdminBlock *b, const char *indent)
{
    printf("%s{\"block_id\": %" PRIu64 ", \"state\": ", indent, b->block_id);
    cli_json_string(stdout, b->state);
    printf(", \"health\": ");
    cli_json_string(stdout, b->health);
    printf(", \"size\": %" PRIu64 ", \"files\": %u, \"deleted_bytes\": %" PRIu64
           ", \"up_replicas\": %u, \"replicas\": [",
           b->size, b->file_count, b->deleted_bytes, b->up_replicas);
    for (size_t i = 0; i < b->n_replicas; i++) {
        const Imgstore__AdminReplica *r = b->replicas[i];
        printf("%s{\"server\": ", i ? ", " : "");
        cli_json_string(stdout, r->server_id);
        printf(", \"address\": ");
        cli_json_string(stdout, r->addr);
        printf(", \"http\": ");
        cli_json_string(stdout, r->http_addr);
        printf(", \"up\": %s, \"primary\": %s}", r->up ? "true" : "false",
               r->primary ? "true" : "false");
    }
    printf("]}");
}

static int blocks_table(const Imgstore__AdminListBlocksResp *r)
{
    static const char *const header[] = {"BLOCK", "STATE",   "HEALTH",  "SIZE",
                                         "FILES", "DELETED", "REPLICAS"};
    struct cli_table t;
    if (cli_table_init(&t, sizeof(header) / sizeof(header[0]), header) != 0)
        return EXIT_FAIL;
    for (size_t i = 0; i < r->n_blocks; i++) {
        const Imgstore__AdminBlock *b = r->blocks[i];
        char id[CLI_HUMAN_MAX], size[CLI_HUMAN_MAX], files[CLI_HUMAN_MAX], del[CLI_HUMAN_MAX],
            reps[REPLICAS_TEXT];
        snprintf(id, sizeof(id), "%" PRIu64, b->block_id);
        snprintf(files, sizeof(files), "%u", b->file_count);
        const char *row[] = {id,
                             b->state,
                             b->health,
                             cli_human_size(b->size, size),
                             files,
                             cli_human_size(b->deleted_bytes, del),
                             replicas_text(b, reps, sizeof(reps))};
        if (cli_table_add(&t, row) != 0) {
            cli_table_free(&t);
            return EXIT_FAIL;
        }
    }
    cli_table_print(&t, stdout);
    cli_table_free(&t);
    if (r->matched > r->n_blocks)
        printf("(%zu of %" PRIu64 " matching blocks shown; use --limit)\n", r->n_blocks,
               r->matched);
    else
        printf("(%" PRIu64 " blocks; * primary, ! replica on a server that is down)\n",
               r->matched);
    return EXIT_OK;
}

static int cmd_blocks(struct ctx *c)
{
    static const struct option longopts[] = {{"server", required_argument, NULL, 's'},
                                             {"state", required_argument, NULL, 't'},
                                             {"under-replicated", no_argument, NULL, 'u'},
                                             {"limit", required_argument, NULL, 'l'},
                                             {NULL, 0, NULL, 0}};
    Imgstore__AdminListBlocks q = IMGSTORE__ADMIN_LIST_BLOCKS__INIT;
    int o, limit;
    optind = 1;
    opterr = 0;
    while ((o = getopt_long(c->argc, c->argv, ":", longopts, NULL)) != -1) {
        switch (o) {
        case 's': q.server_id = optarg; break;
        case 't':
            if (strcmp(optarg, "writable") && strcmp(optarg, "sealed") && strcmp(optarg, "open"))
                return usage_error("--state must be writable, sealed or open: ", optarg);
            q.state = optarg;
            break;
        case 'u': q.under_replicated = 1; break;
        case 'l':
            if (cli_parse_int(optarg, &limit) != 0 || limit <= 0)
                return usage_error("invalid --limit: ", optarg);
            q.limit = (uint32_t)limit;
            break;
        default:
            return usage_error(o == ':' ? "missing argument for " : "unknown option ",
                               c->argv[optind - 1]);
        }
    }
    if (optind < c->argc)
        return usage_error("unexpected argument: ", c->argv[optind]);
    ProtobufCMessage *m = NULL;
    int rc = imgstore_admin_call(c->h, NULL, FT_ADMIN_LIST_BLOCKS, &q.base,
                                 &imgstore__admin_list_blocks_resp__descriptor, &m);
    if (rc == IMGSTORE_ENOTFOUND && q.server_id) {
        fprintf(stderr, "%s: blocks: no server %s\n", prog, q.server_id);
        return EXIT_FAIL;
    }
    if (rc != 0)
        return fail(c, "blocks", rc);
    const Imgstore__AdminListBlocksResp *r = (const Imgstore__AdminListBlocksResp *)m;
    int status = EXIT_OK;
    if (c->json) {
        printf("{\"matched\": %" PRIu64 ", \"replication\": %u, \"blocks\": [", r->matched,
               r->replication);
        for (size_t i = 0; i < r->n_blocks; i++) {
            printf("%s\n", i ? "," : "");
            block_json(r->blocks[i], "  ");
        }
        printf("%s]}\n", r->n_blocks ? "\n" : "");
    } else {
        status = blocks_table(r);
    }
    protobuf_c_message_free_unpacked(m, NULL);
    return status;
}

/* Asks the nameserver about one block. Returns 0 with *out (free with
 * protobuf_c_message_free_unpacked) or the error. */
static int block_info(struct ctx *c, uint64_t id, Imgstore__AdminBlockInfoResp **out)
{
    Imgstore__AdminBlockInfo q = IMGSTORE__ADMIN_BLOCK_INFO__INIT;
    q.block_id = id;
    ProtobufCMessage *m = NULL;
    int rc = imgstore_admin_call(c->h, NULL, FT_ADMIN_BLOCK_INFO, &q.base,
                                 &imgstore__admin_block_info_resp__descriptor, &m);
    *out = (Imgstore__AdminBlockInfoResp *)m;
    if (rc == 0 && !(*out)->block) {
        protobuf_c_message_free_unpacked(m, NULL);
        *out = NULL;
        rc = IMGSTORE_EPROTO;
    }
    return rc;
}

static void block_text(const Imgstore__AdminBlock *b, uint32_t replication)
{
    char size[CLI_HUMAN_MAX], del[CLI_HUMAN_MAX];
    printf("block:        %" PRIu64 "\n", b->block_id);
    printf("state:        %s\n", b->state);
    printf("health:       %s (%u of %u replicas up)\n", b->health, b->up_replicas, replication);
    printf("size:         %s (%" PRIu64 " bytes)\n", cli_human_size(b->size, size), b->size);
    printf("files:        %u\n", b->file_count);
    printf("deleted:      %s (%.1f%% of the block)\n", cli_human_size(b->deleted_bytes, del),
           pct(b->deleted_bytes, b->size));
    printf("replicas:\n");
    for (size_t i = 0; i < b->n_replicas; i++) {
        const Imgstore__AdminReplica *r = b->replicas[i];
        printf("  %-12.12s  %-21s  %-4s  %s\n", r->server_id ? r->server_id : "",
               r->addr ? r->addr : "", r->up ? "up" : "down", r->primary ? "primary" : "");
    }
}

static int cmd_block(struct ctx *c)
{
    int rc = want_args(c, 1);
    if (rc)
        return rc;
    uint64_t id;
    if (parse_u64(c->argv[1], &id) != 0 || id == 0)
        return usage_error("invalid block id: ", c->argv[1]);
    Imgstore__AdminBlockInfoResp *r = NULL;
    rc = block_info(c, id, &r);
    if (rc == IMGSTORE_ENOTFOUND) {
        fprintf(stderr, "%s: block %" PRIu64 ": not in the block map\n", prog, id);
        return EXIT_FAIL;
    }
    if (rc != 0)
        return fail(c, "block", rc);
    if (c->json) {
        block_json(r->block, "");
        printf("\n");
    } else {
        block_text(r->block, r->replication);
    }
    protobuf_c_message_free_unpacked(&r->base, NULL);
    return EXIT_OK;
}

/* ---- file -------------------------------------------------------------------- */

/* What one replica said about the file. */
struct replica_answer {
    const Imgstore__AdminReplica *rep;
    int rc;                  /* 0: it has the file */
    Imgstore__ReadResp *st;  /* when rc == 0 (owned) */
};

static const char *answer_text(int rc)
{
    if (rc == 0)
        return "has it";
    if (rc == IMGSTORE_EDELETED)
        return "deleted";
    if (rc == IMGSTORE_ENOTFOUND)
        return "missing";
    return imgstore_strerror(rc);
}

static void file_json(const char *name, const struct fname *f, const struct replica_answer *a,
                      size_t n, const Imgstore__ReadResp *st, int complete)
{
    char created[TIME_BUF];
    printf("{\"name\": ");
    cli_json_string(stdout, name);
    printf(", \"block\": %" PRIu64 ", \"seq\": %u", f->block_id, f->seq);
    if (st)
        printf(", \"offset\": %" PRIu64 ", \"size\": %u, \"mime\": \"%s\", \"crc32c\": \"%08x\", "
               "\"created\": \"%s\"",
               st->offset, st->size, mime_name(st->mime), st->crc32c,
               iso_time(st->created, created));
    printf(", \"on_every_replica\": %s, \"replicas\": [", complete ? "true" : "false");
    for (size_t i = 0; i < n; i++) {
        printf("%s{\"server\": ", i ? ", " : "");
        cli_json_string(stdout, a[i].rep->server_id);
        printf(", \"address\": ");
        cli_json_string(stdout, a[i].rep->addr);
        printf(", \"up\": %s, \"primary\": %s, \"has_file\": %s, \"answer\": ",
               a[i].rep->up ? "true" : "false", a[i].rep->primary ? "true" : "false",
               a[i].rc == 0 ? "true" : "false");
        cli_json_string(stdout, answer_text(a[i].rc));
        if (a[i].st)
            printf(", \"crc32c\": \"%08x\", \"size\": %u", a[i].st->crc32c, a[i].st->size);
        printf("}");
    }
    printf("]}\n");
}

static void file_text(const char *name, const struct fname *f, const struct replica_answer *a,
                      size_t n, const Imgstore__ReadResp *st, int complete)
{
    char created[TIME_BUF], size[CLI_HUMAN_MAX];
    printf("name:         %s\n", name);
    printf("block:        %" PRIu64 "\n", f->block_id);
    printf("seq:          %u\n", f->seq);
    if (st) {
        printf("offset:       %" PRIu64 "\n", st->offset);
        printf("size:         %s (%u bytes)\n", cli_human_size(st->size, size), st->size);
        printf("mime:         %s\n", mime_name(st->mime));
        printf("crc32c:       %08x\n", st->crc32c);
        printf("created:      %s\n", iso_time(st->created, created));
    }
    printf("replicas:\n");
    for (size_t i = 0; i < n; i++)
        printf("  %-12.12s  %-21s  %-4s  %-7s  %s\n",
               a[i].rep->server_id ? a[i].rep->server_id : "", a[i].rep->addr ? a[i].rep->addr : "",
               a[i].rep->up ? "up" : "down", a[i].rep->primary ? "primary" : "",
               answer_text(a[i].rc));
    printf("on every replica: %s\n", complete ? "yes" : "no");
}

static int cmd_file(struct ctx *c)
{
    int rc = want_args(c, 1);
    if (rc)
        return rc;
    const char *name = c->argv[1];
    struct fname f;
    if (fname_decode(name, strlen(name), &f, NULL, NULL) != 0) {
        fprintf(stderr, "%s: file %s: %s\n", prog, name, imgstore_strerror(IMG_EBADNAME));
        return EXIT_FAIL;
    }
    Imgstore__AdminBlockInfoResp *info = NULL;
    rc = block_info(c, f.block_id, &info);
    if (rc == IMGSTORE_ENOTFOUND) {
        fprintf(stderr, "%s: file %s: %s (block %" PRIu64 " is not in the block map)\n", prog,
                name, imgstore_strerror(rc), f.block_id);
        return EXIT_FAIL;
    }
    if (rc != 0)
        return fail(c, "file", rc);
    const Imgstore__AdminBlock *b = info->block;
    struct replica_answer *a = calloc(b->n_replicas + 1, sizeof(*a));
    if (!a) {
        protobuf_c_message_free_unpacked(&info->base, NULL);
        return fail(c, "file", -ENOMEM);
    }
    Imgstore__Read q = IMGSTORE__READ__INIT;
    q.block_id = f.block_id;
    q.seq = f.seq;
    q.cookie = f.cookie;
    const Imgstore__ReadResp *st = NULL;
    int complete = b->n_replicas > 0, found = 0, deleted = 0;
    for (size_t i = 0; i < b->n_replicas; i++) {
        ProtobufCMessage *m = NULL;
        a[i].rep = b->replicas[i];
        a[i].rc = imgstore_admin_call(c->h, b->replicas[i]->addr, FT_STAT, &q.base,
                                      &imgstore__read_resp__descriptor, &m);
        a[i].st = (Imgstore__ReadResp *)m;
        complete &= a[i].rc == 0;
        found |= a[i].rc == 0;
        deleted |= a[i].rc == IMGSTORE_EDELETED;
        if (!st && a[i].st)
            st = a[i].st;
    }
    /* Replicas are byte-identical: every copy must agree on size and CRC. */
    for (size_t i = 0; st && i < b->n_replicas; i++)
        if (a[i].st && (a[i].st->crc32c != st->crc32c || a[i].st->size != st->size))
            complete = 0;
    if (c->json)
        file_json(name, &f, a, b->n_replicas, st, complete);
    else
        file_text(name, &f, a, b->n_replicas, st, complete);
    if (!found)
        fprintf(stderr, "%s: file %s: %s\n", prog, name,
                imgstore_strerror(deleted ? IMGSTORE_EDELETED : IMGSTORE_ENOTFOUND));
    for (size_t i = 0; i < b->n_replicas; i++)
        if (a[i].st)
            protobuf_c_message_free_unpacked(&a[i].st->base, NULL);
    free(a);
    protobuf_c_message_free_unpacked(&info->base, NULL);
    return complete ? EXIT_OK : EXIT_FAIL;
}

/* ---- main ------------------------------------------------------------------ */

static const struct command commands[] = {
    {"status", "", "Cluster summary: servers, capacity, blocks by state, background tasks and a\n"
     "verdict (healthy, degraded, at risk). Exit status 1 when at risk.", cmd_status},
    {"servers", "", "One line per dataserver: address, state, disks, used/capacity, blocks,\n"
     "reads/s and writes/s (over the last heartbeats), time since its last heartbeat.",
     cmd_servers},
    {"blocks", "[--server S] [--state writable|sealed|open] [--under-replicated] [--limit N]",
     "A table of the nameserver's blocks, by id: state, health, size, files, deleted bytes\n"
     "and replicas (* primary, ! on a server that is down). --under-replicated lists blocks\n"
     "with fewer up replicas than the replication (lost ones included). At most --limit\n"
     "blocks (default and maximum 10000) are listed.",
     cmd_blocks},
    {"block", "ID", "One block: state, health, size, files, deleted bytes and every replica.",
     cmd_block},
    {"file", "NAME", "Where a file lives: block, offset, size, mime, CRC32C, creation time and\n"
     "its replicas, each asked with STAT whether it has the file. Exit status 1 when a\n"
     "replica misses it (or disagrees on size or CRC32C).",
     cmd_file},
    {NULL, NULL, NULL, NULL},
};

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
    /* "+": stop at the command, whose own options follow it. */
    while ((c = getopt_long(argc, argv, "+:h", longopts, NULL)) != -1) {
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
    const struct command *cmd = find_command(argv[optind]);
    if (!cmd)
        return usage_error("unknown command: ", argv[optind]);
    /* --json is also accepted after the command ("ds-admin blocks --json"). */
    int kept = optind + 1;
    for (int i = optind + 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = 1;
        else
            argv[kept++] = argv[i];
    }
    argc = kept;
    struct ctx ctx = {.ns = ns, .json = json, .argc = argc - optind, .argv = argv + optind};
    int rc;
    if (want_help(&ctx, cmd, &rc))
        return rc;
    if (imgstore_open(ns, &opts, &ctx.h) != 0)
        return usage_error("invalid nameserver address (want HOST:PORT): ", ns);
    rc = cmd->run(&ctx);
    imgstore_close(ctx.h);
    return rc;
}
