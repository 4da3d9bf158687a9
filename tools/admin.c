/* admin.c - what the ds-admin command modules share: the usage text, the
 * failure and usage lines, argument checks, the nameserver calls more than
 * one command group makes (one block, the task list, a server id from a
 * prefix), and the clock and Ctrl-C flag of the --wait loops. Called by
 * tools/ds_admin.c and tools/admin_*.c; calls the library (client/admin.h),
 * proto/ and base/. */
#include "tools/admin.h"

#include "base/err.h"
#include "proto/frame.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <time.h>

void admin_usage(FILE *fp)
{
    fprintf(fp,
            "usage: ds-admin [--ns HOST:PORT[,...]] [--json] [--timeout MS] [--key-file F] "
            "COMMAND [ARGS]\n"
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
            "  ns step-down           the leading nameserver hands over to a standby (--etcd)\n"
            "\n"
            "options:\n"
            "  --ns HOST:PORT[,HOST:PORT...]\n"
            "                   nameserver(s): a leader and its standbys (default\n"
            "                   $IMGSTORE_NS or %s)\n"
            "  --json           print one JSON document instead of text\n"
            "  --timeout MS     timeout in milliseconds (default 10000)\n"
            "  --key-file F     operator key for commands that change things\n"
            "                   (default $IMGSTORE_KEY_FILE; views need none)\n"
            "  -h, --help       print this help; COMMAND --help prints the command's\n"
            "  --version        print the version\n",
            DEFAULT_NS);
}

const char *admin_command; /* set by main once the command is known */

int admin_usage_error(const char *what, const char *arg)
{
    fprintf(stderr, "%s: %s%s\n", ADMIN_PROG, what, arg ? arg : "");
    cli_try_help(ADMIN_PROG, admin_command);
    return EXIT_USAGE;
}

/* Prints the one failure line of a command and returns EXIT_FAIL. */
int admin_fail(const struct admin_ctx *c, const char *what, int rc)
{
    fprintf(stderr, "%s: %s: nameserver %s: %s\n", ADMIN_PROG, what, c->ns, imgstore_strerror(rc));
    return EXIT_FAIL;
}

double admin_pct(uint64_t part, uint64_t whole)
{
    return whole ? (double)part * PCT / (double)whole : 0.0;
}

int admin_is_up(const Imgstore__ServerStatus *s)
{
    return s->state && strcmp(s->state, STATE_UP) == 0;
}

/* The state shown: down, draining, read-only or up, in that precedence. */
const char *admin_shown_state(const Imgstore__ServerStatus *s)
{
    if (!admin_is_up(s))
        return s->state && *s->state ? s->state : STATE_DOWN;
    return s->draining ? STATE_DRAINING : s->readonly ? STATE_READONLY : STATE_UP;
}

int admin_parse_u64(const char *s, uint64_t *out)
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

const char *admin_iso_time(uint32_t secs, char out[TIME_BUF])
{
    time_t t = (time_t)secs;
    struct tm tm;
    snprintf(out, TIME_BUF, "-");
    if (secs && gmtime_r(&t, &tm))
        strftime(out, TIME_BUF, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return out;
}

/* Requires exactly `n` positional arguments after the command. */
int admin_want_args(const struct admin_ctx *c, int n)
{
    if (c->argc - 1 < n)
        return admin_usage_error("missing argument for ", c->argv[0]);
    if (c->argc - 1 > n)
        return admin_usage_error("unexpected argument: ", c->argv[n + 1]);
    return 0;
}

/* Asks the nameserver about one block. Returns 0 with *out (free with
 * protobuf_c_message_free_unpacked) or the error. */
int admin_block_info(struct admin_ctx *c, uint64_t id, Imgstore__AdminBlockInfoResp **out)
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

/* Sends one admin request to the nameserver; on success *out is the answer
 * (free with protobuf_c_message_free_unpacked). Returns 0 or the error. */
int admin_ns_call(struct admin_ctx *c, unsigned type, const ProtobufCMessage *req,
                  const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out)
{
    return imgstore_admin_call(c->h, NULL, type, req, desc, out);
}

/* Resolves a server argument: an exact id, or a prefix of exactly one id
 * (tables show ids cut to ID_SHOW characters). On success *out is a malloc'd
 * id (caller frees) and 0 is returned; otherwise the failure is printed and
 * EXIT_FAIL returned. */
int admin_resolve_server(struct admin_ctx *c, const char *cmd, const char *arg, char **out)
{
    Imgstore__ClusterStatusResp *st = NULL;
    int rc = imgstore_admin_cluster_status(c->h, &st);
    if (rc != 0)
        return admin_fail(c, cmd, rc);
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
        fprintf(stderr, "%s: %s: %s matches %zu servers; give more of the id\n", ADMIN_PROG, cmd,
                arg, matches);
        return EXIT_FAIL;
    }
    if (matches == 0) {
        fprintf(stderr, "%s: %s: no server %s\n", ADMIN_PROG, cmd, arg);
        return EXIT_FAIL;
    }
    if (!*out)
        return admin_fail(c, cmd, -ENOMEM);
    return 0;
}

/* Fetches LIST_TASKS. Returns 0 with *out (free with
 * protobuf_c_message_free_unpacked) or the error. */
int admin_list_tasks(struct admin_ctx *c, Imgstore__ListTasksResp **out)
{
    Imgstore__ListTasks q = IMGSTORE__LIST_TASKS__INIT;
    ProtobufCMessage *m = NULL;
    int rc = admin_ns_call(c, FT_LIST_TASKS, &q.base, &imgstore__list_tasks_resp__descriptor, &m);
    *out = (Imgstore__ListTasksResp *)m;
    return rc;
}

int admin_task_running(const Imgstore__Task *t)
{
    return t->state && strcmp(t->state, TASK_RUNNING) == 0;
}

const char *admin_or_dash(const char *s)
{
    return s && *s ? s : "-";
}

/* "12.5 MiB/s", or "-" when bytes or time are zero. */
const char *admin_rate_text(uint64_t bytes, uint64_t ms, char out[CLI_HUMAN_MAX])
{
    char size[CLI_HUMAN_MAX];
    if (!bytes || !ms)
        return snprintf(out, CLI_HUMAN_MAX, "-"), out;
    snprintf(out, CLI_HUMAN_MAX, "%s/s", cli_human_size(bytes * MS_PER_S / ms, size));
    return out;
}

void admin_progress_text(struct admin_progress *p, uint64_t moved, uint64_t total, uint64_t left,
                         int64_t el_ms)
{
    admin_rate_text(moved, (uint64_t)el_ms, p->rate);
    if (moved && el_ms > 0)
        cli_human_ms((uint64_t)((double)left * (double)el_ms / (double)moved), p->left);
    else
        snprintf(p->left, sizeof(p->left), "-");
    cli_human_size(moved, p->moved);
    cli_human_size(total, p->total);
}

const char *admin_bar(char bar[BAR_WIDTH + 1], int full)
{
    for (int i = 0; i < BAR_WIDTH; i++)
        bar[i] = i < full ? '#' : '-';
    bar[BAR_WIDTH] = '\0';
    return bar;
}

volatile sig_atomic_t admin_interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    admin_interrupted = 1;
}

void admin_catch_sigint(void)
{
    struct sigaction sa = {.sa_handler = on_sigint};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
}

int64_t admin_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * MS_PER_S + ts.tv_nsec / 1000000;
}

void admin_sleep_poll(void)
{
    struct timespec ts = {.tv_sec = DRAIN_POLL_MS / MS_PER_S,
                          .tv_nsec = (long)(DRAIN_POLL_MS % MS_PER_S) * 1000000L};
    nanosleep(&ts, NULL); /* SIGINT ends it early */
}
