/* cli_ds_admin.c - the `ds-admin` operator command: the cluster's servers,
 * its overall health, its blocks, where one file lives, background tasks,
 * drains, read-only marks and runtime settings, as tables for people or
 * JSON for scripts.
 *
 *   status            CLUSTER_STATUS (+ LIST_TASKS when the nameserver has it)
 *   servers           CLUSTER_STATUS + ADMIN_SERVER_RATES
 *   blocks, block ID  ADMIN_LIST_BLOCKS, ADMIN_BLOCK_INFO
 *   file NAME         ADMIN_BLOCK_INFO, then STAT on every replica
 *   tasks, cancel ID  LIST_TASKS, ADMIN_CANCEL_TASK
 *   drain SERVER      DRAIN; --wait polls LIST_TASKS and ADMIN_LIST_BLOCKS
 *   rebalance         ADMIN_REBALANCE; --wait polls it (dry run)
 *   readonly S on|off ADMIN_READONLY
 *   settings, set     ADMIN_SETTINGS, ADMIN_SET_SETTING
 *   compact, repair   ADMIN_COMPACT, ADMIN_REPAIR; --wait polls LIST_TASKS / ADMIN_REPAIR
 *
 * Global options come before the command, the command's own after it; every
 * command takes --help. Exit status: 0 success, 1 failure (one line on
 * stderr), `status` at risk, or `file` missing on a replica; 2 usage error.
 * docs/client.md is the reference. */
#include "client/admin.h"
#include "tools/cli_util.h"

#include "base/err.h"
#include "proto/fname.h"
#include "proto/frame.h"
#include "proto/mime.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define EXIT_OK 0
#define EXIT_FAIL 1
#define EXIT_USAGE 2
#define DEFAULT_NS "127.0.0.1:7400"
#define ID_SHOW 12 /* characters of a server id shown in tables */
#define PCT 100.0
#define STATE_UP "up"
#define TIME_BUF 32
#define REPLICAS_TEXT 160
#define MS_PER_S 1000
#define TASK_RUNNING "running"
#define TASK_DONE "done"
#define TASK_FAILED "failed"
#define TASKS_FINISHED_SHOWN 20 /* finished tasks in the table without --all */
#define DRAIN_POLL_MS 1000      /* drain --wait asks the nameserver this often */
#define DRAIN_LINE_MS 10000     /* a progress line at least this often (not a terminal) */
#define BAR_WIDTH 30
#define VERIFY_TIMEOUT_MS (3600 * 1000) /* one VERIFY answer, unless --timeout */
#define BYTES_PER_MB 1e6        /* settings' MB/s are decimal */
#define STATE_DOWN "down"
#define STATE_DRAINING "draining"
#define STATE_READONLY "read-only"

static const char *prog = "ds-admin";

/* What every command gets: the handle, the output mode, its arguments. */
struct ctx {
    imgstore_t *h;
    const char *ns;
    int json;
    int timeout_given; /* --timeout was on the command line */
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
            "  tasks [--all]          background tasks: copies and deletions, with progress\n"
            "  cancel TASK            cancel a running background task\n"
            "  drain SERVER [--wait] [--cancel]\n"
            "                         move every block off a server (--wait: follow it)\n"
            "  rebalance [--dry-run] [--wait]\n"
            "                         even out the servers' used bytes (--dry-run: show the plan)\n"
            "  readonly SERVER on|off no new blocks or files on a server (kept across restarts)\n"
            "  verify [BLOCK | --server S] [--wait]\n"
            "                         check stored records against their CRC32C now\n"
            "  compact [BLOCK | --threshold PCT] [--dry-run] [--wait]\n"
            "                         compact one block, or every block past PCT %% deleted\n"
            "  repair BLOCK [--wait]  check every replica of a block now and fix bad, short or\n"
            "                         missing copies\n"
            "  settings               runtime settings of the nameserver\n"
            "  set KEY VALUE          change a runtime setting (validated, persisted, in force\n"
            "                         at once)\n"
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

/* The state shown: down, draining, read-only or up, in that precedence. */
static const char *shown_state(const Imgstore__ServerStatus *s)
{
    if (!is_up(s))
        return s->state && *s->state ? s->state : STATE_DOWN;
    return s->draining ? STATE_DRAINING : s->readonly ? STATE_READONLY : STATE_UP;
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
        cli_json_string(stdout, shown_state(s));
        printf(", \"up\": %s, \"readonly\": %s, \"draining\": %s", is_up(s) ? "true" : "false",
               s->readonly ? "true" : "false", s->draining ? "true" : "false");
        printf(", \"used\": %llu, \"capacity\": %llu, \"free\": %llu, \"use_pct\": %.1f, "
               "\"blocks\": %u, \"disks\": %u, \"failed_disks\": %u, \"last_heartbeat_ms\": %llu, "
               "\"reads\": %llu, \"writes\": %llu",
               (unsigned long long)s->used, (unsigned long long)s->capacity,
               (unsigned long long)s->free, pct(s->used, s->capacity), s->blocks, s->disks,
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
            snprintf(use, sizeof(use), "%.1f%%", pct(s->used, s->capacity));
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
                             shown_state(s),
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
        if (is_up(s)) {
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
           " \"servers_up\": %u, \"servers_down\": %u, \"failed_disks\": %u,\n"
           " \"capacity_used\": %llu, \"capacity_total\": %llu, \"capacity_used_pct\": %.1f,\n"
           " \"blocks_total\": %llu, \"blocks_writable\": %llu, \"blocks_sealed\": %llu,\n"
           " \"blocks_under_replicated\": %llu, \"blocks_lost\": %llu,"
           " \"block_id_high_water\": %llu,\n",
           st->safe_mode ? "true" : "false", st->replicas, (unsigned long long)st->block_size,
           sm->up, sm->down, sm->failed_disks, (unsigned long long)sm->used, (unsigned long long)sm->capacity,
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
    if (sm->failed_disks)
        printf("failed disks: %u (ds-admin servers shows where; replace and restart)\n",
               sm->failed_disks);
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

/* ---- shared by the operator commands ------------------------------------------ */

/* Sends one admin request to the nameserver; on success *out is the answer
 * (free with protobuf_c_message_free_unpacked). Returns 0 or the error. */
static int ns_call(struct ctx *c, unsigned type, const ProtobufCMessage *req,
                   const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out)
{
    return imgstore_admin_call(c->h, NULL, type, req, desc, out);
}

/* Resolves a server argument: an exact id, or a prefix of exactly one id
 * (tables show ids cut to ID_SHOW characters). On success *out is a malloc'd
 * id (caller frees) and 0 is returned; otherwise the failure is printed and
 * EXIT_FAIL returned. */
static int resolve_server(struct ctx *c, const char *cmd, const char *arg, char **out)
{
    Imgstore__ClusterStatusResp *st = NULL;
    int rc = imgstore_admin_cluster_status(c->h, &st);
    if (rc != 0)
        return fail(c, cmd, rc);
    const char *found = NULL;
    size_t matches = 0, len = strlen(arg);
    for (size_t i = 0; i < st->n_servers; i++) {
        const char *id = st->servers[i]->server_id ? st->servers[i]->server_id : "";
        if (strcmp(id, arg) == 0) {
            found = id;
            matches = 1;
            break;
        }
        if (len && strncmp(id, arg, len) == 0) {
            found = id;
            matches++;
        }
    }
    if (matches == 1)
        *out = strdup(found);
    imgstore_admin_free_status(st);
    if (matches > 1) {
        fprintf(stderr, "%s: %s: %s matches %zu servers; give more of the id\n", prog, cmd, arg,
                matches);
        return EXIT_FAIL;
    }
    if (matches == 0) {
        fprintf(stderr, "%s: %s: no server %s\n", prog, cmd, arg);
        return EXIT_FAIL;
    }
    if (!*out)
        return fail(c, cmd, -ENOMEM);
    return 0;
}

/* Fetches LIST_TASKS. Returns 0 with *out (free with
 * protobuf_c_message_free_unpacked) or the error. */
static int list_tasks(struct ctx *c, Imgstore__ListTasksResp **out)
{
    Imgstore__ListTasks q = IMGSTORE__LIST_TASKS__INIT;
    ProtobufCMessage *m = NULL;
    int rc = ns_call(c, FT_LIST_TASKS, &q.base, &imgstore__list_tasks_resp__descriptor, &m);
    *out = (Imgstore__ListTasksResp *)m;
    return rc;
}

static int is_running(const Imgstore__Task *t)
{
    return t->state && strcmp(t->state, TASK_RUNNING) == 0;
}

static const char *str_or_dash(const char *s)
{
    return s && *s ? s : "-";
}

/* "12.5 MiB/s", or "-" when bytes or time are zero. */
static const char *rate_text(uint64_t bytes, uint64_t ms, char out[CLI_HUMAN_MAX])
{
    char size[CLI_HUMAN_MAX];
    if (!bytes || !ms)
        return snprintf(out, CLI_HUMAN_MAX, "-"), out;
    snprintf(out, CLI_HUMAN_MAX, "%s/s", cli_human_size(bytes * MS_PER_S / ms, size));
    return out;
}

/* ---- tasks ------------------------------------------------------------------------ */

/* A task's progress in percent; -1 when unknown (a copy reports its bytes
 * only when it ends). */
static double task_progress(const Imgstore__Task *t)
{
    if (t->state && strcmp(t->state, TASK_DONE) == 0)
        return PCT;
    if (!t->bytes_done || !t->bytes_total)
        return -1;
    double p = pct(t->bytes_done, t->bytes_total);
    return p > PCT ? PCT : p;
}

static void task_json(const Imgstore__Task *t)
{
    printf("{\"id\": %" PRIu64 ", \"kind\": ", t->id);
    cli_json_string(stdout, t->kind);
    printf(", \"block_id\": %" PRIu64 ", \"source\": ", t->block_id);
    cli_json_string(stdout, t->source);
    printf(", \"target\": ");
    cli_json_string(stdout, t->target);
    printf(", \"state\": ");
    cli_json_string(stdout, t->state);
    double p = task_progress(t);
    if (p >= 0)
        printf(", \"progress_pct\": %.1f", p);
    else
        printf(", \"progress_pct\": null");
    printf(", \"bytes_done\": %" PRIu64 ", \"bytes_total\": %" PRIu64 ", \"age_ms\": %" PRIu64,
           t->bytes_done, t->bytes_total, t->age_ms);
    if (is_running(t) && t->bytes_done && t->age_ms)
        printf(", \"bytes_per_s\": %" PRIu64, t->bytes_done * MS_PER_S / t->age_ms);
    else
        printf(", \"bytes_per_s\": null");
    printf(", \"reason\": ");
    cli_json_string(stdout, t->reason);
    printf(", \"error\": ");
    cli_json_string(stdout, t->error);
    printf("}");
}

static void tasks_json(const Imgstore__ListTasksResp *r)
{
    printf("{\"copy_rate_bytes_per_s\": %" PRIu64 ", \"task_cap\": %u, \"blocks_lost\": %" PRIu64
           ", \"blocks_under_replicated\": %" PRIu64 ",\n \"drains\": [",
           r->copy_rate_bytes_per_s, r->task_cap, r->blocks_lost, r->blocks_under_replicated);
    for (size_t i = 0; i < r->n_drains; i++) {
        printf("%s{\"server\": ", i ? ", " : "");
        cli_json_string(stdout, r->drains[i]->server_id);
        printf(", \"blocks_left\": %u}", r->drains[i]->blocks_left);
    }
    printf("],\n \"tasks\": [");
    for (size_t i = 0; i < r->n_tasks; i++) {
        printf("%s\n  ", i ? "," : "");
        task_json(r->tasks[i]);
    }
    printf("%s]}\n", r->n_tasks ? "\n" : "");
}

/* Formats one task as a table row into cells (each CLI_CELL_MAX). */
static void task_row(const Imgstore__Task *t, char cells[][CLI_CELL_MAX])
{
    char a[CLI_HUMAN_MAX], b[CLI_HUMAN_MAX];
    snprintf(cells[0], CLI_CELL_MAX, "%" PRIu64, t->id);
    snprintf(cells[1], CLI_CELL_MAX, "%s", str_or_dash(t->kind));
    snprintf(cells[2], CLI_CELL_MAX, "%" PRIu64, t->block_id);
    if (t->source && *t->source) /* a copy; a deletion has only the server dropping its copy */
        snprintf(cells[3], CLI_CELL_MAX, "%.*s->%.*s", ID_SHOW, t->source, ID_SHOW,
                 str_or_dash(t->target));
    else
        snprintf(cells[3], CLI_CELL_MAX, "%.*s", ID_SHOW, str_or_dash(t->target));
    double p = task_progress(t);
    if (p >= 0)
        snprintf(cells[4], CLI_CELL_MAX, "%.0f%%", p);
    else
        snprintf(cells[4], CLI_CELL_MAX, "-");
    snprintf(cells[5], CLI_CELL_MAX, "%s", cli_human_size(t->bytes_total, a));
    snprintf(cells[6], CLI_CELL_MAX, "%s",
             is_running(t) ? rate_text(t->bytes_done, t->age_ms, b) : "-");
    snprintf(cells[7], CLI_CELL_MAX, "%s", str_or_dash(t->state));
    snprintf(cells[8], CLI_CELL_MAX, "%s", cli_human_ms(t->age_ms, a));
    if (t->error && *t->error)
        snprintf(cells[9], CLI_CELL_MAX, "%s: %s", str_or_dash(t->reason), t->error);
    else
        snprintf(cells[9], CLI_CELL_MAX, "%s", str_or_dash(t->reason));
}

static int tasks_table(const Imgstore__ListTasksResp *r, int all)
{
    static const char *const header[] = {"ID",       "KIND",  "BLOCK", "SOURCE->TARGET",
                                         "PROGRESS", "BYTES", "RATE",  "STATE",
                                         "AGE",      "REASON"};
    enum { NCOLS = sizeof(header) / sizeof(header[0]) };
    struct cli_table t;
    size_t running = 0, finished = 0, shown = 0;
    if (cli_table_init(&t, NCOLS, header) != 0)
        return EXIT_FAIL;
    for (size_t i = 0; i < r->n_tasks; i++) {
        const Imgstore__Task *k = r->tasks[i];
        int run = is_running(k);
        running += run;
        finished += !run;
        if (!run && !all && finished > TASKS_FINISHED_SHOWN)
            continue;
        char cells[NCOLS][CLI_CELL_MAX];
        const char *row[NCOLS];
        task_row(k, cells);
        for (int j = 0; j < NCOLS; j++)
            row[j] = cells[j];
        if (cli_table_add(&t, row) != 0) {
            cli_table_free(&t);
            return EXIT_FAIL;
        }
        shown++;
    }
    printf("%zu running, %zu finished kept; copy cap %.0f MB/s per server, %u tasks per server\n",
           running, finished, (double)r->copy_rate_bytes_per_s / BYTES_PER_MB, r->task_cap);
    for (size_t i = 0; i < r->n_drains; i++)
        printf("draining %s: %u blocks left\n", r->drains[i]->server_id,
               r->drains[i]->blocks_left);
    if (shown)
        cli_table_print(&t, stdout);
    else
        printf("no background tasks\n");
    if (shown < r->n_tasks)
        printf("(%zu older finished tasks not shown; use --all)\n", r->n_tasks - shown);
    cli_table_free(&t);
    return EXIT_OK;
}

static int cmd_tasks(struct ctx *c)
{
    int all = 0;
    for (int i = 1; i < c->argc; i++) {
        if (strcmp(c->argv[i], "--all") == 0)
            all = 1;
        else
            return usage_error("unexpected argument: ", c->argv[i]);
    }
    Imgstore__ListTasksResp *r = NULL;
    int rc = list_tasks(c, &r);
    if (rc != 0)
        return fail(c, "tasks", rc);
    int status = EXIT_OK;
    if (c->json)
        tasks_json(r);
    else
        status = tasks_table(r, all);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    return status;
}

/* ---- cancel ----------------------------------------------------------------------- */

static int cmd_cancel(struct ctx *c)
{
    int rc = want_args(c, 1);
    if (rc)
        return rc;
    uint64_t id;
    if (parse_u64(c->argv[1], &id) != 0 || id == 0)
        return usage_error("invalid task id: ", c->argv[1]);
    Imgstore__AdminCancelTask q = IMGSTORE__ADMIN_CANCEL_TASK__INIT;
    q.task_id = id;
    ProtobufCMessage *m = NULL;
    rc = ns_call(c, FT_ADMIN_CANCEL_TASK, &q.base, &imgstore__admin_cancel_task_resp__descriptor,
                 &m);
    if (rc == IMGSTORE_ENOTFOUND) {
        fprintf(stderr, "%s: cancel: no running task %" PRIu64 " (ds-admin tasks lists them)\n",
                prog, id);
        return EXIT_FAIL;
    }
    if (rc != 0)
        return fail(c, "cancel", rc);
    protobuf_c_message_free_unpacked(m, NULL);
    if (c->json)
        printf("{\"task\": %" PRIu64 ", \"canceled\": true}\n", id);
    else
        printf("task %" PRIu64 " canceled; the planner may start its block again in a few "
               "seconds while the cause remains (drain SERVER --cancel stops a drain)\n",
               id);
    return EXIT_OK;
}

/* ---- readonly ------------------------------------------------------------------------ */

static int readonly_set(struct ctx *c, const char *id, int on);

static int cmd_readonly(struct ctx *c)
{
    int rc = want_args(c, 2);
    if (rc)
        return rc;
    const char *mode = c->argv[2];
    int on = strcmp(mode, "on") == 0;
    if (!on && strcmp(mode, "off") != 0)
        return usage_error("readonly takes on or off, not ", mode);
    char *id = NULL;
    if ((rc = resolve_server(c, "readonly", c->argv[1], &id)) != 0)
        return rc;
    rc = readonly_set(c, id, on);
    free(id);
    return rc;
}

/* Sends READONLY for server `id` and prints the outcome. */
static int readonly_set(struct ctx *c, const char *id, int on)
{
    int rc;
    Imgstore__AdminReadonly q = IMGSTORE__ADMIN_READONLY__INIT;
    q.server_id = (char *)id;
    q.readonly = on;
    ProtobufCMessage *m = NULL;
    rc = ns_call(c, FT_ADMIN_READONLY, &q.base, &imgstore__admin_readonly_resp__descriptor, &m);
    if (rc == IMGSTORE_ENOTFOUND) {
        fprintf(stderr, "%s: readonly: no server %s\n", prog, id);
        return EXIT_FAIL;
    }
    if (rc != 0)
        return fail(c, "readonly", rc);
    const Imgstore__AdminReadonlyResp *r = (const Imgstore__AdminReadonlyResp *)m;
    if (c->json) {
        printf("{\"server\": ");
        cli_json_string(stdout, id);
        printf(", \"readonly\": %s, \"server_readonly\": %s}\n", r->readonly ? "true" : "false",
               r->server_readonly ? "true" : "false");
    } else if (on) {
        printf("%s is read-only: no new block goes to it and its blocks take no new files "
               "(kept across nameserver restarts)\n",
               id);
    } else {
        printf("%s is no longer read-only%s\n", id,
               r->server_readonly ? " by the operator (it still reports itself read-only)" : "");
    }
    protobuf_c_message_free_unpacked(m, NULL);
    return EXIT_OK;
}

/* ---- settings, set ---------------------------------------------------------------------- */

static int get_settings(struct ctx *c, Imgstore__AdminSettingsResp **out)
{
    Imgstore__AdminSettings q = IMGSTORE__ADMIN_SETTINGS__INIT;
    ProtobufCMessage *m = NULL;
    int rc = ns_call(c, FT_ADMIN_SETTINGS, &q.base, &imgstore__admin_settings_resp__descriptor,
                     &m);
    *out = (Imgstore__AdminSettingsResp *)m;
    return rc;
}

static const Imgstore__AdminSetting *setting_of(const Imgstore__AdminSettingsResp *r,
                                                const char *key)
{
    for (size_t i = 0; r && i < r->n_settings; i++)
        if (r->settings[i]->key && strcmp(r->settings[i]->key, key) == 0)
            return r->settings[i];
    return NULL;
}

/* Where a setting's value comes from. */
static const char *setting_source(const Imgstore__AdminSetting *s)
{
    if (s->persisted)
        return "set (ns.meta)";
    return s->value == s->default_value ? "default" : "command line";
}

static void setting_json(const Imgstore__AdminSetting *s)
{
    printf("{\"key\": ");
    cli_json_string(stdout, s->key);
    printf(", \"value\": %" PRIu64 ", \"unit\": ", s->value);
    cli_json_string(stdout, s->unit);
    printf(", \"default\": %" PRIu64 ", \"min\": %" PRIu64 ", \"max\": %" PRIu64
           ", \"persisted\": %s, \"applied\": %s, \"source\": ",
           s->default_value, s->min, s->max, s->persisted ? "true" : "false",
           s->applied ? "true" : "false");
    cli_json_string(stdout, setting_source(s));
    printf(", \"help\": ");
    cli_json_string(stdout, s->help);
    printf("}");
}

static int settings_table(const Imgstore__AdminSettingsResp *r)
{
    static const char *const header[] = {"KEY", "VALUE", "UNIT", "DEFAULT", "RANGE", "SOURCE",
                                         "MEANING"};
    enum { NCOLS = sizeof(header) / sizeof(header[0]) };
    struct cli_table t;
    int unapplied = 0;
    if (cli_table_init(&t, NCOLS, header) != 0)
        return EXIT_FAIL;
    for (size_t i = 0; i < r->n_settings; i++) {
        const Imgstore__AdminSetting *s = r->settings[i];
        char key[CLI_CELL_MAX], val[CLI_HUMAN_MAX], def[CLI_HUMAN_MAX], range[CLI_CELL_MAX];
        snprintf(key, sizeof(key), "%s%s", s->key, s->applied ? "" : " *");
        snprintf(val, sizeof(val), "%" PRIu64, s->value);
        snprintf(def, sizeof(def), "%" PRIu64, s->default_value);
        snprintf(range, sizeof(range), "%" PRIu64 "..%" PRIu64, s->min, s->max);
        unapplied |= !s->applied;
        const char *row[NCOLS] = {key,   val, s->unit, def,
                                  range, setting_source(s), s->help ? s->help : ""};
        if (cli_table_add(&t, row) != 0) {
            cli_table_free(&t);
            return EXIT_FAIL;
        }
    }
    cli_table_print(&t, stdout);
    cli_table_free(&t);
    if (unapplied)
        printf("* stored and persisted, but not applied yet: nothing in the cluster uses it\n");
    return EXIT_OK;
}

static int cmd_settings(struct ctx *c)
{
    int rc = want_args(c, 0);
    if (rc)
        return rc;
    Imgstore__AdminSettingsResp *r = NULL;
    if ((rc = get_settings(c, &r)) != 0)
        return fail(c, "settings", rc);
    int status = EXIT_OK;
    if (c->json) {
        printf("{\"settings\": [");
        for (size_t i = 0; i < r->n_settings; i++) {
            printf("%s\n  ", i ? "," : "");
            setting_json(r->settings[i]);
        }
        printf("%s]}\n", r->n_settings ? "\n" : "");
    } else {
        status = settings_table(r);
    }
    protobuf_c_message_free_unpacked(&r->base, NULL);
    return status;
}

static int cmd_set(struct ctx *c)
{
    int rc = want_args(c, 2);
    if (rc)
        return rc;
    const char *key = c->argv[1];
    uint64_t v;
    if (parse_u64(c->argv[2], &v) != 0)
        return usage_error("the value must be a whole number: ", c->argv[2]);
    Imgstore__AdminSettingsResp *before = NULL;
    if ((rc = get_settings(c, &before)) != 0)
        return fail(c, "set", rc);
    const Imgstore__AdminSetting *old = setting_of(before, key);
    int status = EXIT_FAIL;
    if (!old) {
        fprintf(stderr, "%s: set: no setting %s (ds-admin settings lists them)\n", prog, key);
        goto out;
    }
    if (v < old->min || v > old->max) {
        fprintf(stderr, "%s: set: %s must be %" PRIu64 "..%" PRIu64 " %s, not %" PRIu64 "\n",
                prog, key, old->min, old->max, old->unit, v);
        goto out;
    }
    Imgstore__AdminSetSetting q = IMGSTORE__ADMIN_SET_SETTING__INIT;
    q.key = (char *)key;
    q.value = v;
    ProtobufCMessage *m = NULL;
    rc = ns_call(c, FT_ADMIN_SET_SETTING, &q.base,
                 &imgstore__admin_set_setting_resp__descriptor, &m);
    const Imgstore__AdminSetSettingResp *r = (const Imgstore__AdminSetSettingResp *)m;
    if (rc == 0 && !r->setting)
        rc = IMGSTORE_EPROTO;
    if (rc != 0) {
        if (m)
            protobuf_c_message_free_unpacked(m, NULL);
        fail(c, "set", rc);
        goto out;
    }
    if (c->json) {
        printf("{\"previous\": %" PRIu64 ", \"setting\": ", old->value);
        setting_json(r->setting);
        printf("}\n");
    } else {
        printf("%s = %" PRIu64 " %s (was %" PRIu64 "), kept in ns.meta%s\n", key,
               r->setting->value, r->setting->unit, old->value,
               r->setting->applied ? " and in force now"
                                   : "; not applied yet: nothing in the cluster uses it");
    }
    protobuf_c_message_free_unpacked(m, NULL);
    status = EXIT_OK;
out:
    protobuf_c_message_free_unpacked(&before->base, NULL);
    return status;
}

/* ---- drain ------------------------------------------------------------------------- */

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

/* What a server holds: its blocks (ids sorted, owned) and their bytes, from
 * ADMIN_LIST_BLOCKS pages. */
struct holding {
    uint64_t *ids;
    size_t n;
    uint64_t bytes;
};

static int holding_of(struct ctx *c, const char *server, struct holding *h)
{
    memset(h, 0, sizeof(*h));
    Imgstore__AdminListBlocks q = IMGSTORE__ADMIN_LIST_BLOCKS__INIT;
    q.server_id = (char *)server;
    for (;;) {
        ProtobufCMessage *m = NULL;
        int rc = ns_call(c, FT_ADMIN_LIST_BLOCKS, &q.base,
                         &imgstore__admin_list_blocks_resp__descriptor, &m);
        if (rc != 0) {
            free(h->ids);
            h->ids = NULL;
            return rc;
        }
        const Imgstore__AdminListBlocksResp *r = (const Imgstore__AdminListBlocksResp *)m;
        uint64_t *ids = realloc(h->ids, (h->n + r->n_blocks + 1) * sizeof(*ids));
        if (!ids) {
            protobuf_c_message_free_unpacked(m, NULL);
            free(h->ids);
            h->ids = NULL;
            return -ENOMEM;
        }
        h->ids = ids;
        for (size_t i = 0; i < r->n_blocks; i++) {
            h->ids[h->n++] = r->blocks[i]->block_id;
            h->bytes += r->blocks[i]->size;
        }
        int more = r->n_blocks > 0 && r->matched > r->n_blocks;
        if (more)
            q.after_id = r->blocks[r->n_blocks - 1]->block_id;
        protobuf_c_message_free_unpacked(m, NULL);
        if (!more)
            return 0;
    }
}

static int has_id(const struct holding *h, uint64_t id)
{
    for (size_t i = 0; i < h->n; i++)
        if (h->ids[i] == id)
            return 1;
    return 0;
}

/* The state of a drain as seen at one poll. */
struct drain_view {
    int draining;           /* the nameserver still lists the drain */
    uint32_t blocks_left;
    uint64_t bytes_left;
    const Imgstore__Task *failed; /* a failed task of this drain (borrowed), or NULL */
};

struct drain_wait {
    const char *server;
    struct holding start;  /* what the server held when the wait began */
    uint64_t first_task;   /* tasks with a lower id are older than the wait */
    int64_t t0;
    int tty;
    uint32_t last_blocks;
    uint64_t last_bytes;
    int64_t last_line;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * MS_PER_S + ts.tv_nsec / 1000000;
}

static void sleep_poll(void)
{
    struct timespec ts = {.tv_sec = DRAIN_POLL_MS / MS_PER_S,
                          .tv_nsec = (long)(DRAIN_POLL_MS % MS_PER_S) * 1000000L};
    nanosleep(&ts, NULL); /* SIGINT ends it early */
}

/* Polls LIST_TASKS and the server's blocks. *tasks is owned by the caller
 * afterwards (free with protobuf_c_message_free_unpacked; v->failed points
 * into it). */
static int drain_poll(struct ctx *c, const struct drain_wait *w, struct drain_view *v,
                      Imgstore__ListTasksResp **tasks)
{
    memset(v, 0, sizeof(*v));
    int rc = list_tasks(c, tasks);
    if (rc != 0)
        return rc;
    const Imgstore__ListTasksResp *r = *tasks;
    for (size_t i = 0; i < r->n_drains; i++)
        if (r->drains[i]->server_id && strcmp(r->drains[i]->server_id, w->server) == 0) {
            v->draining = 1;
            v->blocks_left = r->drains[i]->blocks_left;
        }
    for (size_t i = 0; i < r->n_tasks && !v->failed; i++) {
        const Imgstore__Task *t = r->tasks[i];
        if (t->id >= w->first_task && t->state && strcmp(t->state, TASK_FAILED) == 0 &&
            has_id(&w->start, t->block_id))
            v->failed = t;
    }
    struct holding now;
    if ((rc = holding_of(c, w->server, &now)) != 0)
        return rc;
    v->bytes_left = now.bytes;
    free(now.ids);
    return 0;
}

/* Prints the progress bar (terminal) or a progress line (when it changed,
 * or every DRAIN_LINE_MS). */
static void drain_show(struct drain_wait *w, const struct drain_view *v)
{
    int64_t el = now_ms() - w->t0;
    uint64_t total = w->start.bytes;
    uint64_t moved = total > v->bytes_left ? total - v->bytes_left : 0;
    double p = total ? pct(moved, total) : (v->blocks_left ? 0.0 : PCT);
    char m[CLI_HUMAN_MAX], tot[CLI_HUMAN_MAX], rate[CLI_HUMAN_MAX], left[CLI_HUMAN_MAX];
    rate_text(moved, (uint64_t)el, rate);
    if (moved && el > 0)
        cli_human_ms((uint64_t)((double)v->bytes_left * (double)el / (double)moved), left);
    else
        snprintf(left, sizeof(left), "-");
    cli_human_size(moved, m);
    cli_human_size(total, tot);
    if (w->tty) {
        char bar[BAR_WIDTH + 1];
        int full = (int)(p * BAR_WIDTH / PCT);
        for (int i = 0; i < BAR_WIDTH; i++)
            bar[i] = i < full ? '#' : '-';
        bar[BAR_WIDTH] = '\0';
        if (moved)
            printf("\r[%s] %3.0f%%  %s of %s  %s  %s left  %u blocks left\033[K", bar, p, m,
                   tot, rate, left, v->blocks_left);
        else
            printf("\r[%s] %3.0f%%  %s of %s  %u blocks left\033[K", bar, p, m, tot,
                   v->blocks_left);
        fflush(stdout);
        return;
    }
    int64_t t = now_ms();
    if (v->blocks_left == w->last_blocks && v->bytes_left == w->last_bytes &&
        t - w->last_line < DRAIN_LINE_MS)
        return;
    if (moved)
        printf("drain %s: %.0f%% moved (%s of %s), %u blocks left, %s, about %s left\n",
               w->server, p, m, tot, v->blocks_left, rate, left);
    else
        printf("drain %s: %.0f%% moved (%s of %s), %u blocks left\n", w->server, p, m, tot,
               v->blocks_left);
    fflush(stdout);
    w->last_blocks = v->blocks_left;
    w->last_bytes = v->bytes_left;
    w->last_line = t;
}

static void drain_json(const struct drain_wait *w, const struct drain_view *v, const char *result)
{
    uint64_t moved = w->start.bytes > v->bytes_left ? w->start.bytes - v->bytes_left : 0;
    printf("{\"server\": ");
    cli_json_string(stdout, w->server);
    printf(", \"result\": \"%s\", \"draining\": %s, \"blocks_left\": %u, \"bytes_total\": %" PRIu64
           ", \"bytes_moved\": %" PRIu64 ", \"bytes_left\": %" PRIu64 ", \"elapsed_ms\": %" PRId64,
           result, v->draining ? "true" : "false", v->blocks_left, w->start.bytes, moved,
           v->bytes_left, now_ms() - w->t0);
    if (v->failed) {
        printf(", \"failed_task\": ");
        task_json(v->failed);
    }
    printf("}\n");
}

/* The id the next task will have at least (tasks already listed are older). */
static uint64_t next_task_id(struct ctx *c)
{
    Imgstore__ListTasksResp *tasks = NULL;
    uint64_t next = 0;
    if (list_tasks(c, &tasks) != 0)
        return 0;
    for (size_t i = 0; i < tasks->n_tasks; i++)
        if (tasks->tasks[i]->id >= next)
            next = tasks->tasks[i]->id + 1;
    protobuf_c_message_free_unpacked(&tasks->base, NULL);
    return next;
}

/* Waits until `server` holds nothing; tasks from first_task on count. Returns
 * the exit status. */
static int drain_wait(struct ctx *c, const char *server, uint64_t first_task)
{
    struct drain_wait w = {.server = server, .tty = isatty(STDOUT_FILENO), .t0 = now_ms(),
                           .first_task = first_task};
    Imgstore__ListTasksResp *tasks = NULL;
    int rc = holding_of(c, server, &w.start);
    if (rc != 0)
        return fail(c, "drain", rc);
    w.last_blocks = UINT32_MAX;
    struct sigaction sa = {.sa_handler = on_sigint};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    int status = EXIT_FAIL;
    struct drain_view v = {0};
    const char *result = "interrupted";
    while (!interrupted) {
        tasks = NULL;
        if ((rc = drain_poll(c, &w, &v, &tasks)) != 0) {
            if (w.tty)
                printf("\n");
            fail(c, "drain --wait", rc);
            result = "error";
            break;
        }
        if (!c->json)
            drain_show(&w, &v);
        if (v.failed || !v.draining || v.blocks_left == 0) {
            if (w.tty && !c->json)
                printf("\n");
            if (v.failed) {
                result = "task failed";
                fprintf(stderr,
                        "%s: drain %s: task %" PRIu64 " (%s of block %" PRIu64 ") failed: %s; "
                        "the drain goes on and the planner retries (ds-admin tasks)\n",
                        prog, server, v.failed->id, v.failed->kind, v.failed->block_id,
                        str_or_dash(v.failed->error));
            } else if (!v.draining) {
                result = "not draining";
                fprintf(stderr, "%s: drain %s: the server is no longer draining (canceled, or "
                                "the nameserver restarted)\n", prog, server);
            } else {
                result = "done";
                status = EXIT_OK;
                char tot[CLI_HUMAN_MAX], el[CLI_HUMAN_MAX];
                if (!c->json)
                    printf("drain of %s done: %s moved in %s; it holds no block and can be "
                           "stopped\n",
                           server, cli_human_size(w.start.bytes, tot),
                           cli_human_ms((uint64_t)(now_ms() - w.t0), el));
            }
            if (c->json)
                drain_json(&w, &v, result);
            protobuf_c_message_free_unpacked(&tasks->base, NULL);
            free(w.start.ids);
            return status;
        }
        protobuf_c_message_free_unpacked(&tasks->base, NULL);
        sleep_poll();
    }
    if (interrupted) {
        if (w.tty && !c->json)
            printf("\n");
        fprintf(stderr, "%s: stopped waiting; the drain of %s goes on (ds-admin drain %s "
                        "--cancel stops it)\n", prog, server, server);
    }
    if (c->json)
        drain_json(&w, &v, result);
    free(w.start.ids);
    return status;
}

static int drain_run(struct ctx *c, const char *server, int wait, int cancel);

static int cmd_drain(struct ctx *c)
{
    int wait = 0, cancel = 0;
    const char *server = NULL;
    for (int i = 1; i < c->argc; i++) {
        if (strcmp(c->argv[i], "--wait") == 0)
            wait = 1;
        else if (strcmp(c->argv[i], "--cancel") == 0)
            cancel = 1;
        else if (c->argv[i][0] == '-' && c->argv[i][1])
            return usage_error("unknown option ", c->argv[i]);
        else if (server)
            return usage_error("unexpected argument: ", c->argv[i]);
        else
            server = c->argv[i];
    }
    if (!server)
        return usage_error("missing argument for ", "drain");
    if (wait && cancel)
        return usage_error("--wait and --cancel exclude each other", NULL);
    char *id = NULL;
    int rc = resolve_server(c, "drain", server, &id);
    if (rc != 0)
        return rc;
    rc = drain_run(c, id, wait, cancel);
    free(id);
    return rc;
}

/* Sends DRAIN for server `server`, then waits when asked. */
static int drain_run(struct ctx *c, const char *server, int wait, int cancel)
{
    uint64_t first_task = wait ? next_task_id(c) : 0;
    Imgstore__Drain q = IMGSTORE__DRAIN__INIT;
    q.server_id = (char *)server;
    q.cancel = cancel;
    ProtobufCMessage *m = NULL;
    int rc = ns_call(c, FT_DRAIN, &q.base, &imgstore__drain_resp__descriptor, &m);
    if (rc == IMGSTORE_ENOTFOUND) {
        fprintf(stderr, "%s: drain: no server %s\n", prog, server);
        return EXIT_FAIL;
    }
    if (rc != 0)
        return fail(c, "drain", rc);
    uint32_t left = ((const Imgstore__DrainResp *)m)->blocks_left;
    protobuf_c_message_free_unpacked(m, NULL);
    if (wait) {
        if (!c->json)
            printf("draining %s: %u replicas to move (Ctrl-C stops waiting, not the drain)\n",
                   server, left);
        fflush(stdout);
        return drain_wait(c, server, first_task);
    }
    if (c->json) {
        printf("{\"server\": ");
        cli_json_string(stdout, server);
        printf(", \"draining\": %s, \"blocks_left\": %u}\n", cancel ? "false" : "true", left);
    } else if (cancel) {
        printf("drain of %s canceled: %u replicas stay on it\n", server, left);
    } else {
        printf("draining %s: %u replicas to move (ds-admin drain %s --wait follows it)\n", server,
               left, server);
    }
    return EXIT_OK;
}

/* ---- rebalance --------------------------------------------------------------------- */

#define REBAL_MOVES_SHOWN 20 /* planned moves in the table (--json lists every one) */

/* Sends ADMIN_REBALANCE. On success *out is the caller's (free with
 * protobuf_c_message_free_unpacked). */
static int rebalance_call(struct ctx *c, int dry_run, Imgstore__AdminRebalanceResp **out)
{
    Imgstore__AdminRebalance q = IMGSTORE__ADMIN_REBALANCE__INIT;
    q.dry_run = dry_run;
    ProtobufCMessage *m = NULL;
    int rc = ns_call(c, FT_ADMIN_REBALANCE, &q.base, &imgstore__admin_rebalance_resp__descriptor,
                     &m);
    *out = (Imgstore__AdminRebalanceResp *)m;
    return rc;
}

static int64_t signed_delta(const Imgstore__RebalanceServer *s)
{
    return s->used >= s->target ? (int64_t)(s->used - s->target) : -(int64_t)(s->target - s->used);
}

static void rebalance_json(const Imgstore__AdminRebalanceResp *r, int dry_run)
{
    printf("{\"dry_run\": %s, \"mean_pct\": %.3f, \"band_points\": %.3f, \"balanced\": %s, "
           "\"stuck\": %s,\n \"moves_running\": %u, \"bytes_running\": %" PRIu64
           ", \"bytes_planned\": %" PRIu64 ", \"truncated\": %s, \"moves_done\": %u, "
           "\"moves_failed\": %u, \"bytes_moved\": %" PRIu64 ", \"copy_rate_bytes_per_s\": %" PRIu64
           ",\n \"servers\": [",
           dry_run ? "true" : "false", r->mean * PCT, r->band * PCT, r->balanced ? "true" : "false",
           r->stuck ? "true" : "false", r->moves_running, r->bytes_running, r->bytes_planned,
           r->truncated ? "true" : "false", r->moves_done, r->moves_failed, r->bytes_moved,
           r->copy_rate);
    for (size_t i = 0; i < r->n_servers; i++) {
        const Imgstore__RebalanceServer *s = r->servers[i];
        printf("%s\n  {\"server\": ", i ? "," : "");
        cli_json_string(stdout, s->server_id);
        printf(", \"eligible\": %s, \"used_bytes\": %" PRIu64 ", \"capacity_bytes\": %" PRIu64
               ", \"used_pct\": %.3f, \"target_bytes\": %" PRIu64 ", \"delta_bytes\": %" PRId64
               ", \"in_band\": %s, \"moves_running\": %u}",
               s->eligible ? "true" : "false", s->used, s->capacity, s->used_fraction * PCT,
               s->target, signed_delta(s), s->in_band ? "true" : "false", s->moves_running);
    }
    printf("],\n \"moves\": [");
    for (size_t i = 0; i < r->n_moves; i++) {
        const Imgstore__RebalanceMove *m = r->moves[i];
        printf("%s\n  {\"block_id\": %" PRIu64 ", \"source\": ", i ? "," : "", m->block_id);
        cli_json_string(stdout, m->source);
        printf(", \"target\": ");
        cli_json_string(stdout, m->target);
        printf(", \"bytes\": %" PRIu64 ", \"running\": %s, \"task_id\": %" PRIu64 "}", m->bytes,
               m->running ? "true" : "false", m->task_id);
    }
    printf("]}\n");
}

static int rebalance_servers_table(const Imgstore__AdminRebalanceResp *r)
{
    static const char *const header[] = {"SERVER", "USED", "CAPACITY", "USE", "TARGET",
                                         "DELTA",  "BAND", "MOVES"};
    enum { NCOLS = sizeof(header) / sizeof(header[0]) };
    struct cli_table t;
    if (cli_table_init(&t, NCOLS, header) != 0)
        return EXIT_FAIL;
    for (size_t i = 0; i < r->n_servers; i++) {
        const Imgstore__RebalanceServer *s = r->servers[i];
        char cells[NCOLS][CLI_CELL_MAX], a[CLI_HUMAN_MAX];
        const char *row[NCOLS];
        int64_t d = signed_delta(s);
        snprintf(cells[0], CLI_CELL_MAX, "%.*s", ID_SHOW, s->server_id);
        snprintf(cells[1], CLI_CELL_MAX, "%s", cli_human_size(s->used, a));
        snprintf(cells[2], CLI_CELL_MAX, "%s", cli_human_size(s->capacity, a));
        snprintf(cells[3], CLI_CELL_MAX, "%.1f%%", s->used_fraction * PCT);
        if (s->eligible) {
            snprintf(cells[4], CLI_CELL_MAX, "%s", cli_human_size(s->target, a));
            snprintf(cells[5], CLI_CELL_MAX, "%s%s", d < 0 ? "-" : "+",
                     cli_human_size((uint64_t)(d < 0 ? -d : d), a));
            snprintf(cells[6], CLI_CELL_MAX, "%s", s->in_band ? "in" : "OUT");
        } else {
            snprintf(cells[4], CLI_CELL_MAX, "-");
            snprintf(cells[5], CLI_CELL_MAX, "-");
            snprintf(cells[6], CLI_CELL_MAX, "excluded");
        }
        snprintf(cells[7], CLI_CELL_MAX, "%u", s->moves_running);
        for (int j = 0; j < NCOLS; j++)
            row[j] = cells[j];
        if (cli_table_add(&t, row) != 0) {
            cli_table_free(&t);
            return EXIT_FAIL;
        }
    }
    cli_table_print(&t, stdout);
    cli_table_free(&t);
    return EXIT_OK;
}

static int rebalance_moves_table(const Imgstore__AdminRebalanceResp *r)
{
    static const char *const header[] = {"BLOCK", "SOURCE->TARGET", "SIZE", "STATE"};
    enum { NCOLS = sizeof(header) / sizeof(header[0]) };
    struct cli_table t;
    size_t shown = 0, planned = 0;
    if (cli_table_init(&t, NCOLS, header) != 0)
        return EXIT_FAIL;
    for (size_t i = 0; i < r->n_moves; i++) {
        const Imgstore__RebalanceMove *m = r->moves[i];
        if (!m->running && ++planned > REBAL_MOVES_SHOWN)
            continue;
        char cells[NCOLS][CLI_CELL_MAX], a[CLI_HUMAN_MAX];
        const char *row[NCOLS];
        snprintf(cells[0], CLI_CELL_MAX, "%" PRIu64, m->block_id);
        snprintf(cells[1], CLI_CELL_MAX, "%.*s->%.*s", ID_SHOW, m->source, ID_SHOW, m->target);
        snprintf(cells[2], CLI_CELL_MAX, "%s", cli_human_size(m->bytes, a));
        if (m->running)
            snprintf(cells[3], CLI_CELL_MAX, "running (task %" PRIu64 ")", m->task_id);
        else
            snprintf(cells[3], CLI_CELL_MAX, "planned");
        for (int j = 0; j < NCOLS; j++)
            row[j] = cells[j];
        if (cli_table_add(&t, row) != 0) {
            cli_table_free(&t);
            return EXIT_FAIL;
        }
        shown++;
    }
    if (shown)
        cli_table_print(&t, stdout);
    if (shown < r->n_moves)
        printf("(%zu more planned moves not shown; --json lists them)\n", r->n_moves - shown);
    cli_table_free(&t);
    return EXIT_OK;
}

static int rebalance_text(const Imgstore__AdminRebalanceResp *r, int dry_run)
{
    char a[CLI_HUMAN_MAX], b[CLI_HUMAN_MAX];
    size_t out = 0;
    for (size_t i = 0; i < r->n_servers; i++)
        out += !r->servers[i]->in_band;
    printf("mean use %.1f%%, band +-%.0f points: %s\n", r->mean * PCT, r->band * PCT,
           r->balanced ? "every server is in the band"
           : r->stuck  ? "servers are out of the band, but no move would help"
                       : "servers are out of the band");
    if (out)
        printf("%zu server%s out of the band\n", out, out == 1 ? "" : "s");
    if (rebalance_servers_table(r) != EXIT_OK)
        return EXIT_FAIL;
    printf("\n%u moves running (%s), %zu planned (%s%s); copy cap %.0f MB/s per server\n",
           r->moves_running, cli_human_size(r->bytes_running, a),
           r->n_moves - r->moves_running, cli_human_size(r->bytes_planned, b),
           r->truncated ? ", more after these" : "", (double)r->copy_rate / BYTES_PER_MB);
    if (r->n_moves && rebalance_moves_table(r) != EXIT_OK)
        return EXIT_FAIL;
    if (dry_run)
        printf("dry run: nothing was started\n");
    else if (!r->balanced && !r->stuck)
        printf("the planner runs the moves (ds-admin rebalance --wait follows them)\n");
    return EXIT_OK;
}

/* Progress of a rebalance --wait. */
struct rebal_wait {
    uint64_t moved0;   /* bytes_moved when the wait began */
    uint32_t failed0;  /* moves_failed when the wait began */
    int64_t t0, last_line;
    uint64_t last_left;
    int tty;
};

static void rebalance_show(struct rebal_wait *w, const Imgstore__AdminRebalanceResp *r)
{
    int64_t el = now_ms() - w->t0;
    uint64_t moved = r->bytes_moved > w->moved0 ? r->bytes_moved - w->moved0 : 0;
    uint64_t left = r->bytes_running + r->bytes_planned, total = moved + left;
    double p = total ? pct(moved, total) : PCT;
    char m[CLI_HUMAN_MAX], tot[CLI_HUMAN_MAX], rate[CLI_HUMAN_MAX], eta[CLI_HUMAN_MAX];
    rate_text(moved, (uint64_t)el, rate);
    if (moved && el > 0)
        cli_human_ms((uint64_t)((double)left * (double)el / (double)moved), eta);
    else
        snprintf(eta, sizeof(eta), "-");
    cli_human_size(moved, m);
    cli_human_size(total, tot);
    if (w->tty) {
        char bar[BAR_WIDTH + 1];
        int full = (int)(p * BAR_WIDTH / PCT);
        for (int i = 0; i < BAR_WIDTH; i++)
            bar[i] = i < full ? '#' : '-';
        bar[BAR_WIDTH] = '\0';
        printf("\r[%s] %3.0f%%  %s of %s  %s  %s left  %u moves running\033[K", bar, p, m, tot,
               rate, eta, r->moves_running);
        fflush(stdout);
        return;
    }
    int64_t t = now_ms();
    if (left == w->last_left && t - w->last_line < DRAIN_LINE_MS)
        return;
    printf("rebalance: %.0f%% moved (%s of %s), %u moves running, %s, about %s left\n", p, m,
           tot, r->moves_running, rate, eta);
    fflush(stdout);
    w->last_left = left;
    w->last_line = t;
}

/* Follows the balance until every server is in the band and no move runs.
 * Returns the exit status. */
static int rebalance_wait(struct ctx *c, const Imgstore__AdminRebalanceResp *first)
{
    struct rebal_wait w = {.moved0 = first->bytes_moved, .failed0 = first->moves_failed,
                           .t0 = now_ms(), .tty = isatty(STDOUT_FILENO), .last_left = UINT64_MAX};
    struct sigaction sa = {.sa_handler = on_sigint};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    Imgstore__AdminRebalanceResp *r = NULL;
    int status = EXIT_FAIL;
    const char *result = "interrupted";
    while (!interrupted) {
        int rc = rebalance_call(c, 1, &r);
        if (rc != 0) {
            if (w.tty && !c->json)
                printf("\n");
            fail(c, "rebalance --wait", rc);
            result = "error";
            break;
        }
        if (!c->json)
            rebalance_show(&w, r);
        int done = r->balanced && r->moves_running == 0;
        if (done || r->stuck) {
            if (w.tty && !c->json)
                printf("\n");
            uint64_t moved = r->bytes_moved - w.moved0;
            char m[CLI_HUMAN_MAX], el[CLI_HUMAN_MAX];
            cli_human_size(moved, m);
            cli_human_ms((uint64_t)(now_ms() - w.t0), el);
            if (done) {
                result = "done";
                status = EXIT_OK;
                if (!c->json)
                    printf("rebalance done: %s moved in %s; every server is within %.0f points "
                           "of the mean use (%.1f%%)%s\n",
                           m, el, r->band * PCT, r->mean * PCT,
                           r->moves_failed > w.failed0 ? "; some moves failed and were retried"
                                                       : "");
            } else {
                result = "stuck";
                fprintf(stderr, "%s: rebalance: servers stay out of the band but no move would "
                                "help (blocks too large, or only primary copies left on the "
                                "fullest servers); %s moved\n", prog, m);
            }
            break;
        }
        protobuf_c_message_free_unpacked(&r->base, NULL);
        r = NULL;
        sleep_poll();
    }
    if (interrupted) {
        if (w.tty && !c->json)
            printf("\n");
        fprintf(stderr, "%s: stopped waiting; the balance goes on in the nameserver\n", prog);
    }
    if (c->json) {
        if (r) {
            printf("{\"result\": \"%s\", \"bytes_moved\": %" PRIu64 ", \"elapsed_ms\": %" PRId64
                   ", \"state\": ",
                   result, r->bytes_moved - w.moved0, now_ms() - w.t0);
            rebalance_json(r, 1);
            printf("}\n");
        } else {
            printf("{\"result\": \"%s\"}\n", result);
        }
    }
    if (r)
        protobuf_c_message_free_unpacked(&r->base, NULL);
    return status;
}

static int cmd_rebalance(struct ctx *c)
{
    int dry_run = 0, wait = 0;
    for (int i = 1; i < c->argc; i++) {
        if (strcmp(c->argv[i], "--dry-run") == 0)
            dry_run = 1;
        else if (strcmp(c->argv[i], "--wait") == 0)
            wait = 1;
        else if (c->argv[i][0] == '-' && c->argv[i][1])
            return usage_error("unknown option ", c->argv[i]);
        else
            return usage_error("unexpected argument: ", c->argv[i]);
    }
    if (dry_run && wait)
        return usage_error("--dry-run and --wait exclude each other", NULL);
    Imgstore__AdminRebalanceResp *r = NULL;
    int rc = rebalance_call(c, dry_run, &r);
    if (rc != 0)
        return fail(c, "rebalance", rc);
    int status;
    if (wait) {
        if (!c->json) {
            char a[CLI_HUMAN_MAX];
            printf("rebalance: mean use %.1f%%, band +-%.0f points, %s to move (Ctrl-C stops "
                   "waiting, not the balance)\n",
                   r->mean * PCT, r->band * PCT,
                   cli_human_size(r->bytes_running + r->bytes_planned, a));
            fflush(stdout);
        }
        status = rebalance_wait(c, r);
    } else if (c->json) {
        rebalance_json(r, dry_run);
        status = EXIT_OK;
    } else {
        status = rebalance_text(r, dry_run);
    }
    protobuf_c_message_free_unpacked(&r->base, NULL);
    return status;
}

/* ---- verify ------------------------------------------------------------------------ */

/* One dataserver asked to VERIFY, and its answer. */
struct verify_target {
    char *id, *addr;                 /* owned */
    int rc;
    Imgstore__VerifyResp *resp;      /* when rc == 0 (owned) */
};

static void targets_free(struct verify_target *t, size_t n)
{
    for (size_t i = 0; t && i < n; i++) {
        free(t[i].id);
        free(t[i].addr);
        if (t[i].resp)
            protobuf_c_message_free_unpacked(&t[i].resp->base, NULL);
    }
    free(t);
}

static int target_add(struct verify_target **t, size_t *n, const char *id, const char *addr)
{
    struct verify_target *nt = realloc(*t, (*n + 1) * sizeof(*nt));
    if (!nt)
        return -ENOMEM;
    *t = nt;
    nt[*n] = (struct verify_target){.id = strdup(id ? id : ""), .addr = strdup(addr ? addr : "")};
    if (!nt[*n].id || !nt[*n].addr) {
        free(nt[*n].id);
        free(nt[*n].addr);
        return -ENOMEM;
    }
    (*n)++;
    return 0;
}

/* The servers to ask: the up replicas of `block` (when non-zero), else server
 * `only` (when not NULL), else every up server. Returns 0 or EXIT_FAIL (printed). */
static int verify_targets(struct ctx *c, uint64_t block, const char *only,
                          struct verify_target **t, size_t *n)
{
    int rc = 0;
    if (block) {
        Imgstore__AdminBlockInfoResp *info = NULL;
        if ((rc = block_info(c, block, &info)) == IMGSTORE_ENOTFOUND) {
            fprintf(stderr, "%s: verify: block %" PRIu64 ": not in the block map\n", prog, block);
            return EXIT_FAIL;
        }
        if (rc != 0)
            return fail(c, "verify", rc);
        for (size_t i = 0; rc == 0 && i < info->block->n_replicas; i++)
            if (info->block->replicas[i]->up)
                rc = target_add(t, n, info->block->replicas[i]->server_id,
                                info->block->replicas[i]->addr);
        protobuf_c_message_free_unpacked(&info->base, NULL);
        return rc ? fail(c, "verify", rc) : 0;
    }
    char *id = NULL;
    if (only && (rc = resolve_server(c, "verify", only, &id)) != 0)
        return rc;
    Imgstore__ClusterStatusResp *st = NULL;
    if ((rc = imgstore_admin_cluster_status(c->h, &st)) != 0) {
        free(id);
        return fail(c, "verify", rc);
    }
    for (size_t i = 0; rc == 0 && i < st->n_servers; i++) {
        const Imgstore__ServerStatus *s = st->servers[i];
        if ((id && strcmp(s->server_id, id) != 0) || (!id && !is_up(s)))
            continue;
        rc = target_add(t, n, s->server_id, s->addr);
    }
    imgstore_admin_free_status(st);
    free(id);
    return rc ? fail(c, "verify", rc) : 0;
}

static void verify_json(const struct verify_target *t, size_t n, uint64_t bad, int ok)
{
    printf("{\"ok\": %s, \"bad_records\": %" PRIu64 ", \"servers\": [", ok ? "true" : "false",
           bad);
    for (size_t i = 0; i < n; i++) {
        printf("%s\n  {\"server\": ", i ? "," : "");
        cli_json_string(stdout, t[i].id);
        printf(", \"address\": ");
        cli_json_string(stdout, t[i].addr);
        const Imgstore__VerifyResp *r = t[i].resp;
        if (!r) {
            printf(", \"error\": ");
            cli_json_string(stdout, imgstore_strerror(t[i].rc));
            printf("}");
            continue;
        }
        printf(", \"error\": null, \"blocks\": %u, \"records\": %" PRIu64 ", \"bytes\": %" PRIu64
               ", \"bad_records\": %u, \"bad_blocks\": [",
               r->blocks, r->records, r->bytes, r->bad_records);
        for (size_t k = 0; k < r->n_bad_blocks; k++)
            printf("%s%" PRIu64, k ? ", " : "", r->bad_blocks[k]);
        printf("]}");
    }
    printf("%s]}\n", n ? "\n" : "");
}

static int verify_table(const struct verify_target *t, size_t n)
{
    static const char *const header[] = {"SERVER",      "ADDRESS",    "BLOCKS", "RECORDS", "BYTES",
                                         "BAD RECORDS", "BAD BLOCKS"};
    enum { NCOLS = sizeof(header) / sizeof(header[0]) };
    struct cli_table tb;
    if (cli_table_init(&tb, NCOLS, header) != 0)
        return EXIT_FAIL;
    for (size_t i = 0; i < n; i++) {
        const Imgstore__VerifyResp *r = t[i].resp;
        char id[ID_SHOW + 1], blocks[CLI_HUMAN_MAX], recs[CLI_HUMAN_MAX], bytes[CLI_HUMAN_MAX],
            bad[CLI_HUMAN_MAX], list[CLI_CELL_MAX] = "";
        snprintf(id, sizeof(id), "%s", t[i].id);
        if (r) {
            snprintf(blocks, sizeof(blocks), "%u", r->blocks);
            snprintf(recs, sizeof(recs), "%" PRIu64, r->records);
            cli_human_size(r->bytes, bytes);
            snprintf(bad, sizeof(bad), "%u", r->bad_records);
            size_t used = 0;
            for (size_t k = 0; k < r->n_bad_blocks && used < sizeof(list); k++) {
                int w = snprintf(list + used, sizeof(list) - used, "%s%" PRIu64, k ? "," : "",
                                 r->bad_blocks[k]);
                used += w > 0 ? (size_t)w : 0;
            }
        } else {
            snprintf(blocks, sizeof(blocks), "-");
            snprintf(recs, sizeof(recs), "-");
            snprintf(bytes, sizeof(bytes), "-");
            snprintf(bad, sizeof(bad), "-");
            snprintf(list, sizeof(list), "error: %s", imgstore_strerror(t[i].rc));
        }
        const char *row[NCOLS] = {id, t[i].addr, blocks, recs, bytes, bad, *list ? list : "-"};
        if (cli_table_add(&tb, row) != 0) {
            cli_table_free(&tb);
            return EXIT_FAIL;
        }
    }
    cli_table_print(&tb, stdout);
    cli_table_free(&tb);
    return EXIT_OK;
}

static int cmd_verify(struct ctx *c)
{
    uint64_t block = 0;
    const char *only = NULL;
    for (int i = 1; i < c->argc; i++) {
        if (strcmp(c->argv[i], "--wait") == 0)
            continue; /* VERIFY answers when its pass is over: the command always waits */
        if (strcmp(c->argv[i], "--server") == 0) {
            if (++i >= c->argc)
                return usage_error("missing argument for ", "--server");
            only = c->argv[i];
        } else if (c->argv[i][0] == '-') {
            return usage_error("unknown option ", c->argv[i]);
        } else if (block || parse_u64(c->argv[i], &block) != 0 || block == 0) {
            return usage_error("invalid block id: ", c->argv[i]);
        }
    }
    if (block && only)
        return usage_error("give a BLOCK or --server, not both", NULL);
    struct verify_target *t = NULL;
    size_t n = 0;
    int rc = verify_targets(c, block, only, &t, &n);
    if (rc != 0) {
        targets_free(t, n);
        return rc;
    }
    if (n == 0) {
        fprintf(stderr, "%s: verify: no server is up to ask\n", prog);
        return EXIT_FAIL;
    }
    /* A pass over a whole server takes long: unless --timeout was given, wait
     * up to VERIFY_TIMEOUT_MS for each answer. */
    imgstore_t *h = c->h;
    struct imgstore_opts o = {.timeout_ms = VERIFY_TIMEOUT_MS};
    if (!c->timeout_given && imgstore_open(c->ns, &o, &h) != 0)
        h = c->h;
    Imgstore__Verify q = IMGSTORE__VERIFY__INIT;
    q.block_id = block;
    uint64_t bad = 0;
    int ok = 1;
    for (size_t i = 0; i < n; i++) {
        ProtobufCMessage *m = NULL;
        t[i].rc = imgstore_admin_call(h, t[i].addr, FT_VERIFY, &q.base,
                                      &imgstore__verify_resp__descriptor, &m);
        t[i].resp = (Imgstore__VerifyResp *)m;
        if (t[i].rc == 0 && !t[i].resp)
            t[i].rc = IMGSTORE_EPROTO;
        ok &= t[i].rc == 0 && t[i].resp->bad_records == 0;
        bad += t[i].resp ? t[i].resp->bad_records : 0;
    }
    if (h != c->h)
        imgstore_close(h);
    int status = EXIT_OK;
    if (c->json)
        verify_json(t, n, bad, ok);
    else if ((status = verify_table(t, n)) == EXIT_OK)
        printf(ok ? "every record checked is intact\n"
                  : "bad records were found or a server failed: copies marked corrupt are "
                    "replaced by the nameserver\n");
    targets_free(t, n);
    return status == EXIT_OK && ok ? EXIT_OK : EXIT_FAIL;
}

/* ---- compact and repair ------------------------------------------------------------ */

#define OPS_WAIT_MS (30 * 60 * 1000) /* --wait gives up after this long */
#define REPAIR_TIMEOUT_MS 120000     /* one ADMIN_REPAIR answer (VERIFY of one block) */
#define COMPACT_ROUNDS 50            /* compact --threshold --wait: requests at most */

/* The sentence for a refused ADMIN_COMPACT / ADMIN_REPAIR. */
static const char *ops_error(int rc)
{
    switch (rc) {
    case IMG_ENOTFOUND: return "no such block in the block map";
    case -EINPROGRESS: return "the block is not sealed (it still takes files)";
    case -ENODATA: return "the block has no deleted bytes";
    case -EBUSY:
        return "the block is busy: a background task works on it, or a replica's server is "
               "down, draining, bad or at the task cap (ds-admin tasks); try again later";
    case IMG_ESAFEMODE: return "the nameserver is in safe mode";
    default: return imgstore_strerror(rc);
    }
}

static int ops_fail(const char *cmd, int rc)
{
    fprintf(stderr, "%s: %s: %s\n", prog, cmd, ops_error(rc));
    return EXIT_FAIL;
}

/* The state of task `id` in a LIST_TASKS answer: the task or NULL (trimmed). */
static const Imgstore__Task *find_task(const Imgstore__ListTasksResp *r, uint64_t id)
{
    for (size_t i = 0; i < r->n_tasks; i++)
        if (r->tasks[i]->id == id)
            return r->tasks[i];
    return NULL;
}

/* Waits until none of tasks[0..n-1] runs. Progress: a bar on a terminal, a
 * line when it changed otherwise (not with --json). *failed gets the count
 * of tasks that failed. Returns 0, or the error of LIST_TASKS, or -EINTR. */
static int ops_wait_tasks(struct ctx *c, const char *what, const uint64_t *tasks, size_t n,
                          size_t *failed)
{
    int tty = isatty(STDOUT_FILENO);
    int64_t t0 = now_ms(), last_line = 0;
    size_t last_done = SIZE_MAX;
    struct sigaction sa = {.sa_handler = on_sigint};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    *failed = 0;
    while (!interrupted) {
        Imgstore__ListTasksResp *r = NULL;
        int rc = list_tasks(c, &r);
        if (rc != 0)
            return rc;
        size_t done = 0, bad = 0;
        for (size_t i = 0; i < n; i++) {
            const Imgstore__Task *t = find_task(r, tasks[i]);
            if (t && is_running(t))
                continue;
            done++;
            bad += t && t->state && strcmp(t->state, TASK_FAILED) == 0;
        }
        protobuf_c_message_free_unpacked(&r->base, NULL);
        int64_t el = now_ms() - t0;
        char elt[CLI_HUMAN_MAX];
        if (!c->json && tty) {
            char bar[BAR_WIDTH + 1];
            int full = n ? (int)(done * BAR_WIDTH / n) : BAR_WIDTH;
            for (int i = 0; i < BAR_WIDTH; i++)
                bar[i] = i < full ? '#' : '-';
            bar[BAR_WIDTH] = '\0';
            printf("\r[%s] %zu of %zu tasks done, %zu failed  %s\033[K", bar, done, n, bad,
                   cli_human_ms((uint64_t)el, elt));
            fflush(stdout);
        } else if (!c->json && (done != last_done || now_ms() - last_line >= DRAIN_LINE_MS)) {
            printf("%s: %zu of %zu tasks done, %zu failed, %s\n", what, done, n, bad,
                   cli_human_ms((uint64_t)el, elt));
            fflush(stdout);
            last_done = done;
            last_line = now_ms();
        }
        if (done == n) {
            if (!c->json && tty)
                printf("\n");
            *failed = bad;
            return 0;
        }
        if (el > OPS_WAIT_MS)
            return IMGSTORE_ETIMEDOUT;
        sleep_poll();
    }
    if (!c->json && tty)
        printf("\n");
    return -EINTR;
}

static void compact_block_json(const Imgstore__AdminCompactBlock *b)
{
    printf("{\"block_id\": %" PRIu64 ", \"size\": %" PRIu64 ", \"deleted_bytes\": %" PRIu64
           ", \"deleted_pct\": %.1f, \"task_id\": %" PRIu64 ", \"state\": ",
           b->block_id, b->size, b->deleted_bytes, b->deleted_pct, b->task_id);
    cli_json_string(stdout, b->state);
    printf("}");
}

static int compact_table(const Imgstore__AdminCompactResp *r)
{
    static const char *const head[] = {"BLOCK", "SIZE", "DELETED", "DELETED%", "TASK", "STATE"};
    struct cli_table t;
    if (cli_table_init(&t, 6, head) != 0)
        return EXIT_FAIL;
    for (size_t i = 0; i < r->n_blocks; i++) {
        const Imgstore__AdminCompactBlock *b = r->blocks[i];
        char id[24], size[CLI_HUMAN_MAX], del[CLI_HUMAN_MAX], p[16], task[24];
        snprintf(id, sizeof(id), "%" PRIu64, b->block_id);
        snprintf(p, sizeof(p), "%.1f%%", b->deleted_pct);
        if (b->task_id)
            snprintf(task, sizeof(task), "%" PRIu64, b->task_id);
        else
            snprintf(task, sizeof(task), "-");
        const char *row[] = {id, cli_human_size(b->size, size), cli_human_size(b->deleted_bytes, del),
                             p, task, str_or_dash(b->state)};
        if (cli_table_add(&t, row) != 0) {
            cli_table_free(&t);
            return EXIT_FAIL;
        }
    }
    cli_table_print(&t, stdout);
    cli_table_free(&t);
    return EXIT_OK;
}

/* One ADMIN_COMPACT request. Returns 0 with *out or the error. */
static int compact_call(struct ctx *c, uint64_t block, uint32_t pct, int dry,
                        Imgstore__AdminCompactResp **out)
{
    Imgstore__AdminCompact q = IMGSTORE__ADMIN_COMPACT__INIT;
    q.block_id = block;
    q.threshold_pct = pct;
    q.dry_run = dry;
    ProtobufCMessage *m = NULL;
    int rc = ns_call(c, FT_ADMIN_COMPACT, &q.base, &imgstore__admin_compact_resp__descriptor, &m);
    *out = (Imgstore__AdminCompactResp *)m;
    return rc == 0 && !m ? IMGSTORE_EPROTO : rc;
}

static int cmd_compact(struct ctx *c)
{
    uint64_t block = 0;
    int pct = 0, have_pct = 0, dry = 0, wait = 0;
    for (int i = 1; i < c->argc; i++) {
        if (strcmp(c->argv[i], "--wait") == 0) {
            wait = 1;
        } else if (strcmp(c->argv[i], "--dry-run") == 0) {
            dry = 1;
        } else if (strcmp(c->argv[i], "--threshold") == 0) {
            if (++i >= c->argc)
                return usage_error("missing argument for ", "--threshold");
            if (cli_parse_int(c->argv[i], &pct) != 0 || pct < 1 || pct > 100)
                return usage_error("invalid --threshold (1..100): ", c->argv[i]);
            have_pct = 1;
        } else if (c->argv[i][0] == '-') {
            return usage_error("unknown option ", c->argv[i]);
        } else if (block || parse_u64(c->argv[i], &block) != 0 || block == 0) {
            return usage_error("invalid block id: ", c->argv[i]);
        }
    }
    if (block && have_pct)
        return usage_error("give a BLOCK or --threshold, not both", NULL);
    if (dry && wait)
        return usage_error("--dry-run and --wait exclude each other", NULL);
    Imgstore__AdminCompactResp *r = NULL;
    int rc = compact_call(c, block, (uint32_t)pct, dry, &r);
    if (rc != 0)
        return ops_fail("compact", rc);
    /* --wait with a threshold: blocks left busy (task cap) are asked again
     * once the started tasks end, until none is left or nothing starts. */
    uint64_t *all = NULL;
    size_t nall = 0, failed = 0, busy = 0;
    int status = EXIT_OK;
    for (int round = 0; r; round++) {
        busy = 0;
        for (size_t i = 0; i < r->n_blocks; i++)
            busy += r->blocks[i]->task_id == 0 && !dry;
        if (!c->json) {
            if (round == 0 && r->n_blocks == 0)
                printf("no sealed block has %u%% or more deleted bytes\n", r->threshold_pct);
            else if (r->n_blocks)
                compact_table(r);
        }
        uint64_t *grown = realloc(all, (nall + r->n_task_ids + 1) * sizeof(*all));
        if (!grown) {
            status = EXIT_FAIL;
            break;
        }
        all = grown;
        memcpy(all + nall, r->task_ids, r->n_task_ids * sizeof(*all));
        size_t started = r->n_task_ids;
        nall += started;
        if (c->json && (!wait || round == 0)) {
            printf("{\"threshold_pct\": %u, \"dry_run\": %s, \"blocks\": [", r->threshold_pct,
                   dry ? "true" : "false");
            for (size_t i = 0; i < r->n_blocks; i++) {
                printf(i ? ", " : "");
                compact_block_json(r->blocks[i]);
            }
            printf("], \"task_ids\": [");
            for (size_t i = 0; i < r->n_task_ids; i++)
                printf("%s%" PRIu64, i ? ", " : "", r->task_ids[i]);
            printf("]%s", wait ? "" : "}\n");
        }
        protobuf_c_message_free_unpacked(&r->base, NULL);
        r = NULL;
        if (!wait || started == 0)
            break;
        size_t f = 0;
        rc = ops_wait_tasks(c, "compact", all + nall - started, started, &f);
        failed += f;
        if (rc != 0) {
            status = rc == -EINTR ? EXIT_FAIL : fail(c, "compact --wait", rc);
            if (rc == -EINTR)
                fprintf(stderr, "%s: stopped waiting; the compactions go on\n", prog);
            break;
        }
        if (block || busy == 0 || round + 1 >= COMPACT_ROUNDS)
            break;
        if ((rc = compact_call(c, 0, (uint32_t)pct, 0, &r)) != 0) {
            status = ops_fail("compact", rc);
            break;
        }
    }
    if (wait && status == EXIT_OK && failed)
        status = EXIT_FAIL;
    if (c->json && wait)
        printf(", \"tasks_started\": %zu, \"tasks_failed\": %zu, \"result\": \"%s\"}\n", nall,
               failed, status == EXIT_OK ? "done" : failed ? "task failed" : "error");
    else if (!c->json && wait && status == EXIT_OK)
        printf("compaction done: %zu tasks\n", nall);
    else if (!c->json && wait && failed)
        fprintf(stderr, "%s: compact: %zu of %zu tasks failed (ds-admin tasks says why); the "
                        "planner retries automatic compaction\n", prog, failed, nall);
    else if (!c->json && !wait && !dry && nall)
        printf("%zu compactions started (ds-admin tasks follows them)\n", nall);
    if (r)
        protobuf_c_message_free_unpacked(&r->base, NULL);
    free(all);
    return status;
}

/* One ADMIN_REPAIR request on handle h. Returns 0 with *out or the error. */
static int repair_call(imgstore_t *h, uint64_t block, int status_only,
                       Imgstore__AdminRepairResp **out)
{
    Imgstore__AdminRepair q = IMGSTORE__ADMIN_REPAIR__INIT;
    q.block_id = block;
    q.status_only = status_only;
    ProtobufCMessage *m = NULL;
    int rc = imgstore_admin_call(h, NULL, FT_ADMIN_REPAIR, &q.base,
                                 &imgstore__admin_repair_resp__descriptor, &m);
    *out = (Imgstore__AdminRepairResp *)m;
    return rc == 0 && !m ? IMGSTORE_EPROTO : rc;
}

/* Healed: the replication count of good (up, not bad, full-size) copies, no
 * other copy, and no task on the block. */
static int repair_healed(const Imgstore__AdminRepairResp *r)
{
    if (r->task_running || r->good_replicas < r->replication || r->n_replicas != r->replication)
        return 0;
    for (size_t i = 0; i < r->n_replicas; i++)
        if (strcmp(r->replicas[i]->action, "ok") != 0)
            return 0;
    return 1;
}

static void repair_json(const Imgstore__AdminRepairResp *r, const Imgstore__AdminRepairResp *end,
                        const char *result)
{
    uint32_t bad = 0;
    for (size_t i = 0; i < r->n_replicas; i++)
        bad += r->replicas[i]->bad_records;
    printf("{\"block_id\": %" PRIu64 ", \"replication\": %u, \"size\": %" PRIu64
           ", \"sealed\": %s, \"bad_records\": %u, \"replicas\": [",
           r->block_id, r->replication, r->size, r->sealed ? "true" : "false", bad);
    for (size_t i = 0; i < r->n_replicas; i++) {
        const Imgstore__AdminRepairReplica *x = r->replicas[i];
        printf("%s{\"server\": ", i ? ", " : "");
        cli_json_string(stdout, x->server_id);
        printf(", \"addr\": ");
        cli_json_string(stdout, x->addr);
        printf(", \"up\": %s, \"size\": %" PRIu64 ", \"bad_records\": %u, \"action\": ",
               x->up ? "true" : "false", x->size, x->bad_records);
        cli_json_string(stdout, x->action);
        printf(", \"error\": ");
        cli_json_string(stdout, x->error);
        printf("}");
    }
    printf("]");
    if (end)
        printf(", \"healed\": %s, \"good_replicas\": %u, \"result\": \"%s\"",
               repair_healed(end) ? "true" : "false", end->good_replicas, result);
    printf("}\n");
}

static int repair_table(const Imgstore__AdminRepairResp *r)
{
    static const char *const head[] = {"SERVER", "ADDRESS", "STATE", "SIZE", "BAD RECORDS",
                                       "ACTION", "ERROR"};
    struct cli_table t;
    if (cli_table_init(&t, 7, head) != 0)
        return EXIT_FAIL;
    for (size_t i = 0; i < r->n_replicas; i++) {
        const Imgstore__AdminRepairReplica *x = r->replicas[i];
        char size[CLI_HUMAN_MAX], bad[16];
        snprintf(bad, sizeof(bad), "%u", x->bad_records);
        int none = !x->server_id || !*x->server_id;
        const char *row[] = {none ? "(new copy)" : x->server_id, str_or_dash(x->addr),
                             none ? "-" : x->up ? STATE_UP : STATE_DOWN,
                             none ? "-" : cli_human_size(x->size, size), none ? "-" : bad,
                             x->action, str_or_dash(x->error)};
        if (cli_table_add(&t, row) != 0) {
            cli_table_free(&t);
            return EXIT_FAIL;
        }
    }
    char size[CLI_HUMAN_MAX];
    printf("block %" PRIu64 ": %s, %s, replication %u\n", r->block_id,
           r->sealed ? "sealed" : "not sealed", cli_human_size(r->size, size), r->replication);
    cli_table_print(&t, stdout);
    cli_table_free(&t);
    return EXIT_OK;
}

/* Polls the block until healed. Returns 0 with *end (owned) or an error. */
static int repair_wait(struct ctx *c, imgstore_t *h, uint64_t block,
                       Imgstore__AdminRepairResp **end)
{
    int tty = isatty(STDOUT_FILENO);
    int64_t t0 = now_ms(), last_line = 0;
    char last[64] = "";
    struct sigaction sa = {.sa_handler = on_sigint};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    *end = NULL;
    while (!interrupted) {
        Imgstore__AdminRepairResp *r = NULL;
        int rc = repair_call(h, block, 1, &r);
        if (rc != 0)
            return rc;
        char now[64], elt[CLI_HUMAN_MAX];
        snprintf(now, sizeof(now), "%u of %u good copies, %zu replicas%s", r->good_replicas,
                 r->replication, r->n_replicas, r->task_running ? ", a task runs" : "");
        if (!c->json && (tty || strcmp(now, last) != 0 || now_ms() - last_line >= DRAIN_LINE_MS)) {
            printf(tty ? "\rrepair %" PRIu64 ": %s, %s\033[K" : "repair %" PRIu64 ": %s, %s\n",
                   block, now, cli_human_ms((uint64_t)(now_ms() - t0), elt));
            fflush(stdout);
            snprintf(last, sizeof(last), "%s", now);
            last_line = now_ms();
        }
        if (repair_healed(r)) {
            if (!c->json && tty)
                printf("\n");
            *end = r;
            return 0;
        }
        protobuf_c_message_free_unpacked(&r->base, NULL);
        if (now_ms() - t0 > OPS_WAIT_MS)
            return IMGSTORE_ETIMEDOUT;
        sleep_poll();
    }
    if (!c->json && tty)
        printf("\n");
    return -EINTR;
}

static int cmd_repair(struct ctx *c)
{
    uint64_t block = 0;
    int wait = 0;
    for (int i = 1; i < c->argc; i++) {
        if (strcmp(c->argv[i], "--wait") == 0)
            wait = 1;
        else if (c->argv[i][0] == '-')
            return usage_error("unknown option ", c->argv[i]);
        else if (block || parse_u64(c->argv[i], &block) != 0 || block == 0)
            return usage_error("invalid block id: ", c->argv[i]);
    }
    if (!block)
        return usage_error("missing argument for ", "repair");
    /* VERIFY of every replica takes a while: a longer timeout unless given. */
    imgstore_t *h = c->h;
    struct imgstore_opts o = {.timeout_ms = REPAIR_TIMEOUT_MS};
    if (!c->timeout_given && imgstore_open(c->ns, &o, &h) != 0)
        h = c->h;
    Imgstore__AdminRepairResp *r = NULL, *end = NULL;
    int rc = repair_call(h, block, 0, &r);
    int status = EXIT_OK;
    if (rc != 0) {
        status = ops_fail("repair", rc);
        goto out;
    }
    if (!c->json)
        repair_table(r);
    if (wait) {
        rc = repair_wait(c, h, block, &end);
        if (rc == -EINTR)
            fprintf(stderr, "%s: stopped waiting; the repair goes on\n", prog);
        else if (rc != 0)
            fail(c, "repair --wait", rc);
        status = rc == 0 ? EXIT_OK : EXIT_FAIL;
        if (!c->json && rc == 0)
            printf("block %" PRIu64 " healed: %u good, equal copies\n", block, end->good_replicas);
    } else if (!c->json) {
        int todo = 0;
        for (size_t i = 0; i < r->n_replicas; i++)
            todo |= strcmp(r->replicas[i]->action, "ok") != 0;
        printf(todo ? "the planner fixes the copies above (ds-admin repair %" PRIu64
                      " --wait follows it)\n"
                    : "every replica is intact\n",
               block);
    }
    if (c->json)
        repair_json(r, wait ? end : NULL,
                    !wait ? "checked" : rc == 0 ? "healed" : rc == -EINTR ? "interrupted" : "error");
out:
    if (r)
        protobuf_c_message_free_unpacked(&r->base, NULL);
    if (end)
        protobuf_c_message_free_unpacked(&end->base, NULL);
    if (h != c->h)
        imgstore_close(h);
    return status;
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
    {"tasks", "[--all]", "The nameserver's background tasks, running first, then the newest finished\n"
     "(20 of them; --all shows the 256 kept): id, kind (replicate, delete), block,\n"
     "source->target, progress, bytes, rate, state, age, reason (and error). Also the\n"
     "copy cap, the task cap per server and the drains in progress.",
     cmd_tasks},
    {"cancel", "TASK", "Cancels a running background task: it ends as failed (canceled). A copy\n"
     "also stops on its target server (a partial new copy is removed). The\n"
     "planner may start the same block again after 5 s while the cause remains; to\n"
     "stop a drain, use drain SERVER --cancel. Exit status 1 when no such task runs.",
     cmd_cancel},
    {"drain", "SERVER [--wait] [--cancel]",
     "Moves every block off SERVER: it takes no new blocks, each of its blocks is copied\n"
     "to another server, then its copy is deleted. --cancel stops the drain (blocks stay\n"
     "where they are). --wait follows it until the server holds no block: a progress\n"
     "bar (bytes moved, rate, time left) on a terminal, a progress line otherwise; exit\n"
     "status 0 when done, 1 when a task of the drain failed or the drain stopped.\n"
     "Ctrl-C stops waiting and leaves the drain running. A restarted nameserver forgets\n"
     "drains.",
     cmd_drain},
    {"rebalance", "[--dry-run] [--wait]",
     "Shows how evenly the servers are used (bytes of block copies / capacity) against\n"
     "the mean, the band (setting rebalance_band, points) and the moves the nameserver\n"
     "plans: sealed blocks copied from the fullest to the emptiest servers, then deleted\n"
     "from the source. The balance runs by itself whenever a server is out of the band;\n"
     "without --dry-run the planner is also run at once. --wait follows the moves until\n"
     "every server is in the band: a progress bar (bytes moved, rate, time left) on a\n"
     "terminal, a progress line otherwise; exit status 1 when no move can bring the\n"
     "servers into the band. Ctrl-C stops waiting, not the balance.",
     cmd_rebalance},
    {"readonly", "SERVER on|off",
     "Marks SERVER read-only (on) or not (off): no new block is placed on it and its\n"
     "blocks take no new files (they stay readable; deletes still work). Kept in the\n"
     "nameserver's ns.meta across restarts; shown as read-only by servers.",
     cmd_readonly},
    {"verify", "[BLOCK | --server S] [--wait]",
     "Checks stored records against their CRC32C now (a scrub pass not throttled by the\n"
     "scrub rate): every up replica of BLOCK, every block of server S, or with neither\n"
     "every block of every up server. The command waits for each server's pass (--wait\n"
     "is implied; no progress is reported meanwhile). Bad records mark their block's copy\n"
     "corrupt and the nameserver replaces it from a good replica. Exit status 1 when a\n"
     "bad record is found or a server fails to answer.",
     cmd_verify},
    {"compact", "[BLOCK | --threshold PCT] [--dry-run] [--wait]",
     "Compacts now: BLOCK (sealed, with deleted bytes, whatever their share), or every\n"
     "sealed block whose deleted share is at least PCT % (default: the compact_threshold\n"
     "setting). Lists the blocks chosen (size, deleted bytes, %) and the tasks started;\n"
     "a block whose servers are at the task cap is shown busy. --dry-run only lists.\n"
     "--wait follows the tasks (a bar on a terminal, lines otherwise; with --threshold,\n"
     "busy blocks are asked again as tasks end). Exit status 1 when a block is unknown,\n"
     "not sealed, has no deleted bytes or is busy, or a task failed.",
     cmd_compact},
    {"repair", "BLOCK [--wait]",
     "Checks every replica of BLOCK now (VERIFY of its records and its size on each\n"
     "holder) and prints one line per replica: server, size, bad records and the action\n"
     "taken: ok, catch-up (a short copy gets the missing tail), replace (a copy with bad\n"
     "records is replaced from a good one, then deleted), copy (a missing copy is made),\n"
     "down. --wait follows until the block has the replication count of good, equal\n"
     "copies and no task on it. Exit status 1 when the block is unknown or the wait fails.",
     cmd_repair},
    {"settings", "", "The nameserver's runtime settings: value, unit, default, allowed range and\n"
     "where the value comes from. A setting marked * is stored but not applied yet.",
     cmd_settings},
    {"set", "KEY VALUE",
     "Changes one runtime setting (ds-admin settings lists them): copy_rate (MB/s),\n"
     "task_cap (tasks per server), heartbeat_timeout (ms), compact_threshold (%),\n"
     "scrub_rate (MB/s), rebalance_band (points). The nameserver checks the range, writes\n"
     "it to ns.meta (crash-safe) and applies it at once; it wins over the command line\n"
     "after a restart. Exit status 1 when the key is unknown or the value out of range.",
     cmd_set},
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
    int json = 0, timeout_given = 0, c;
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
            timeout_given = 1;
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
    struct ctx ctx = {.ns = ns,
                      .json = json,
                      .timeout_given = timeout_given,
                      .argc = argc - optind,
                      .argv = argv + optind};
    int rc;
    if (want_help(&ctx, cmd, &rc))
        return rc;
    if (imgstore_open(ns, &opts, &ctx.h) != 0)
        return usage_error("invalid nameserver address (want HOST:PORT): ", ns);
    rc = cmd->run(&ctx);
    imgstore_close(ctx.h);
    return rc;
}
