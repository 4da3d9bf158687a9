/* ds_admin.c - the `ds-admin` operator command's main: global options, the
 * command table and each command's --help. The commands themselves live in
 * one module per group (tools/admin_status.c, admin_blocks.c, admin_moves.c,
 * admin_settings.c, admin_check.c), their shared helpers in tools/admin.c;
 * every table and JSON document is written through tools/emit.h. The command
 * shows the cluster's servers, its overall health, its blocks, where one file
 * lives, background tasks, drains, read-only marks and runtime settings, as
 * tables for people or JSON for scripts.
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
 *   ns step-down      ADMIN_STEP_DOWN (high availability)
 *
 * Global options come before the command, the command's own after it; every
 * command takes --help. Exit status: 0 success, 1 failure (one line on
 * stderr), `status` at risk, or `file` missing on a replica; 2 usage error.
 * docs/client.md is the reference. */
#include "tools/admin.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A ds-admin command: its name, its arguments and help for `COMMAND --help`,
 * and the function that runs it (in tools/admin_*.c). */
struct command {
    const char *name;
    const char *args;
    const char *help;
    int (*run)(struct admin_ctx *c);
};

/* ---- main ------------------------------------------------------------------ */

static const struct command commands[] = {
    {"status", "", "Cluster summary: servers, capacity, blocks by state, background tasks and a\n"
     "verdict (healthy, degraded, at risk). Exit status 1 when at risk.", admin_cmd_status},
    {"servers", "", "One line per dataserver: address, state, disks, used/capacity, blocks,\n"
     "reads/s and writes/s (over the last heartbeats), time since its last heartbeat.",
     admin_cmd_servers},
    {"blocks", "[--server S] [--state writable|sealed|open] [--under-replicated] [--limit N]",
     "A table of the nameserver's blocks, by id: state, health, size, files, deleted bytes\n"
     "and replicas (* primary, ! on a server that is down). --under-replicated lists blocks\n"
     "with fewer up replicas than the replication (lost ones included). At most --limit\n"
     "blocks (default and maximum 10000) are listed.",
     admin_cmd_blocks},
    {"block", "ID", "One block: state, health, size, files, deleted bytes and every replica;\n"
     "an erasure-coded block also its stripe (each shard's index, holder and state).",
     admin_cmd_block},
    {"file", "NAME", "Where a file lives: block, offset, size, mime, CRC32C, creation time and\n"
     "its replicas, each asked with STAT whether it has the file; a file of an erasure-\n"
     "coded block: its stripe's shards and the answer of its data shard's holder. Exit\n"
     "status 1 when a replica (or that holder) misses it (or disagrees on size or CRC32C).",
     admin_cmd_file},
    {"tasks", "[--all]", "The nameserver's background tasks, running first, then the newest finished\n"
     "(20 of them; --all shows the 256 kept): id, kind (replicate, delete, compact,\n"
     "ec-encode, ec-rebuild, ec-move), block,\n"
     "source->target, progress, bytes, rate, state, age, reason (and error). Also the\n"
     "copy cap, the task cap per server and the drains in progress.",
     admin_cmd_tasks},
    {"cancel", "TASK", "Cancels a running background task: it ends as failed (canceled). A copy\n"
     "also stops on its target server (a partial new copy is removed). The\n"
     "planner may start the same block again after 5 s while the cause remains; to\n"
     "stop a drain, use drain SERVER --cancel. Exit status 1 when no such task runs.",
     admin_cmd_cancel},
    {"drain", "SERVER [--wait] [--cancel]",
     "Moves every block off SERVER: it takes no new blocks, each of its blocks is copied\n"
     "to another server, then its copy is deleted; each shard of an erasure-coded block\n"
     "it holds is copied (or rebuilt) onto a server holding no shard of its stripe, then\n"
     "its copy is deleted. --cancel stops the drain (blocks stay where they are). --wait\n"
     "follows it until the server holds no block and no shard: a progress\n"
     "bar (bytes moved, rate, time left) on a terminal, a progress line otherwise; exit\n"
     "status 0 when done, 1 when a task of the drain failed or the drain stopped.\n"
     "Ctrl-C stops waiting and leaves the drain running. The drain is kept in the\n"
     "nameserver's ns.meta: a restarted nameserver goes on with it until --cancel.",
     admin_cmd_drain},
    {"rebalance", "[--dry-run] [--wait]",
     "Shows how evenly the servers are used (bytes of block copies and shard files /\n"
     "capacity) against the mean, the band (setting rebalance_band, points) and the moves\n"
     "the nameserver plans: sealed blocks (or shards of erasure-coded ones) copied from the\n"
     "fullest to the emptiest servers, then deleted from the source. The balance runs by itself whenever a server is out of the band;\n"
     "without --dry-run the planner is also run at once. --wait follows the moves until\n"
     "every server is in the band: a progress bar (bytes moved, rate, time left) on a\n"
     "terminal, a progress line otherwise; exit status 1 when no move can bring the\n"
     "servers into the band. Ctrl-C stops waiting, not the balance.",
     admin_cmd_rebalance},
    {"readonly", "SERVER on|off",
     "Marks SERVER read-only (on) or not (off): no new block is placed on it and its\n"
     "blocks take no new files (they stay readable; deletes still work). Kept in the\n"
     "nameserver's ns.meta across restarts; shown as read-only by servers.",
     admin_cmd_readonly},
    {"verify", "[BLOCK | --server S] [--wait]",
     "Checks stored records against their CRC32C now (a scrub pass not throttled by the\n"
     "scrub rate): every up replica of BLOCK, every block of server S, or with neither\n"
     "every block of every up server. The command waits for each server's pass (--wait\n"
     "is implied; no progress is reported meanwhile). Bad records mark their block's copy\n"
     "corrupt and the nameserver replaces it from a good replica. Exit status 1 when a\n"
     "bad record is found or a server fails to answer.",
     admin_cmd_verify},
    {"compact", "[BLOCK | --threshold PCT] [--dry-run] [--wait]",
     "Compacts now: BLOCK (sealed, with deleted bytes, whatever their share), or every\n"
     "sealed block whose deleted share is at least PCT % (default: the compact_threshold\n"
     "setting). Lists the blocks chosen (size, deleted bytes, %) and the tasks started;\n"
     "a block whose servers are at the task cap is shown busy. --dry-run only lists.\n"
     "--wait follows the tasks (a bar on a terminal, lines otherwise; with --threshold,\n"
     "busy blocks are asked again as tasks end). Exit status 1 when a block is unknown,\n"
     "not sealed, has no deleted bytes or is busy, or a task failed.",
     admin_cmd_compact},
    {"repair", "BLOCK [--wait]",
     "Checks every replica of BLOCK now (VERIFY of its records and its size on each\n"
     "holder) and prints one line per replica: server, size, bad records and the action\n"
     "taken: ok, catch-up (a short copy gets the missing tail), replace (a copy with bad\n"
     "records is replaced from a good one, then deleted), copy (a missing copy is made),\n"
     "down. --wait follows until the block has the replication count of good, equal\n"
     "copies and no task on it. Exit status 1 when the block is unknown or the wait fails.",
     admin_cmd_repair},
    {"ec", "encode BLOCK|--all-sealed [--wait]",
     "Erasure-codes sealed blocks with the ec setting's scheme (ds-admin set ec 4+2):\n"
     "BLOCK, or every sealed block not encoded yet (--all-sealed; started as the task cap\n"
     "allows). The primary cuts the block into k data and m parity shards, one per\n"
     "server; the stripe is recorded once every shard is durable and checked. ds-admin\n"
     "block ID shows the stripe. --wait follows the tasks. Exit status 1 when ec is off,\n"
     "the block is unknown, not sealed, already encoded or busy, or a task failed.",
     admin_cmd_ec},
    {"settings", "", "The nameserver's runtime settings: value, unit, default, allowed range and\n"
     "where the value comes from. A setting marked * is stored but not applied yet.",
     admin_cmd_settings},
    {"set", "KEY VALUE",
     "Changes one runtime setting (ds-admin settings lists them): copy_rate (MB/s),\n"
     "task_cap (tasks per server), heartbeat_timeout (ms), compact_threshold (%),\n"
     "scrub_rate (MB/s), rebalance_band (points). The nameserver checks the range, writes\n"
     "it to ns.meta (crash-safe) and applies it at once; it wins over the command line\n"
     "after a restart. Exit status 1 when the key is unknown or the value out of range.",
     admin_cmd_set},
    {"ns", "step-down",
     "High availability (nameservers on etcd): the leader hands over on purpose, for an\n"
     "upgrade. It stops acting at once, gives its lease back and does not run for leader\n"
     "for twice the lease TTL, so a standby takes over (within a sixth of the TTL).\n"
     "Needs the operator key. Exit status 1 when the nameserver runs alone (no --etcd).",
     admin_cmd_ns},
    {NULL, NULL, NULL, NULL},
};

/* Command-level option parsing: handles --help, returns 1 when the command
 * must stop with *rc set, 0 to go on. */
static int want_help(const struct admin_ctx *c, const struct command *cmd, int *rc)
{
    for (int i = 1; i < c->argc; i++) {
        if (strcmp(c->argv[i], "--help") == 0 || strcmp(c->argv[i], "-h") == 0) {
            printf("usage: ds-admin [--ns HOST:PORT[,...]] [--json] %s%s%s\n\n%s\n", cmd->name,
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

int main(int argc, char **argv)
{
    struct cli_globals g;
    const char *bad = NULL;
    switch (cli_parse_globals(argc, argv, 1, DEFAULT_NS, &g, &bad)) {
    case CLI_GLOBALS_OK:
        break;
    case CLI_GLOBALS_HELP:
        admin_usage(stdout);
        return EXIT_OK;
    case CLI_GLOBALS_VERSION:
        cli_print_version(ADMIN_PROG);
        return EXIT_OK;
    case CLI_GLOBALS_BAD_TIMEOUT:
        return admin_usage_error("invalid --timeout: ", bad);
    case CLI_GLOBALS_MISSING:
        return admin_usage_error("missing argument for ", bad);
    default:
        return admin_usage_error("unknown option ", bad);
    }
    int json = g.json;
    if (optind >= argc)
        return admin_usage_error("missing command", NULL);
    const struct command *cmd = find_command(argv[optind]);
    if (!cmd)
        return admin_usage_error("unknown command: ", argv[optind]);
    admin_command = cmd->name;
    /* --json is also accepted after the command ("ds-admin blocks --json"). */
    int kept = optind + 1;
    for (int i = optind + 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = 1;
        else
            argv[kept++] = argv[i];
    }
    argc = kept;
    struct admin_ctx ctx = {.ns = g.ns,
                      .json = json,
                      .timeout_given = g.timeout_ms != 0,
                      .argc = argc - optind,
                      .argv = argv + optind};
    int rc;
    if (want_help(&ctx, cmd, &rc))
        return rc;
    if (cli_key_file_check(ADMIN_PROG) != 0)
        return EXIT_FAIL;
    struct imgstore_opts opts = {.timeout_ms = g.timeout_ms};
    if (imgstore_open(g.ns, &opts, &ctx.h) != 0)
        return admin_usage_error(
            "invalid nameserver address list (want HOST:PORT[,HOST:PORT...]): ", g.ns);
    rc = cmd->run(&ctx);
    imgstore_close(ctx.h);
    return rc;
}
