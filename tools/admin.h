/* admin.h - what the ds-admin modules share: the command context, exit
 * statuses, the failure and usage lines, argument checks, the nameserver
 * calls more than one command group makes, the --wait loops' clock and
 * Ctrl-C flag, and the entry point of every command. tools/ds_admin.c holds
 * main and the command table; each tools/admin_*.c one group of commands;
 * tools/admin.c the helpers below. They call the library (client/admin.h),
 * proto/ and base/, and print through tools/emit.h and tools/cli_util.h. */
#ifndef IMGSTORE_TOOLS_ADMIN_H
#define IMGSTORE_TOOLS_ADMIN_H

#include "client/admin.h"
#include "tools/cli_util.h"
#include "tools/emit.h"

#include <signal.h>
#include <stdint.h>
#include <stdio.h>

#define ADMIN_PROG "ds-admin" /* the first word of every failure line */
#define EXIT_OK 0
#define EXIT_FAIL 1
#define EXIT_USAGE 2
#define DEFAULT_NS "127.0.0.1:7400"
#define ID_SHOW 12 /* characters of a server id shown in tables */
#define PCT 100.0
#define STATE_UP "up"
#define TIME_BUF 32
#define MS_PER_S 1000
#define TASK_RUNNING "running"
#define TASK_FAILED "failed"
#define DRAIN_POLL_MS 1000      /* drain --wait asks the nameserver this often */
#define DRAIN_LINE_MS 10000     /* a progress line at least this often (not a terminal) */
#define BAR_WIDTH 30
#define STATE_DOWN "down"
#define STATE_DRAINING "draining"
#define STATE_READONLY "read-only"

/* What every command gets: the handle, the output mode, its arguments. */
struct admin_ctx {
    imgstore_t *h;
    const char *ns;
    int json;
    int timeout_given; /* --timeout was on the command line */
    int argc;    /* the command's arguments, argv[0] is the command */
    char **argv;
};

/* ---- tools/admin.c ---- */

/* Prints the global usage text to fp. */
void admin_usage(FILE *fp);

/* The command being run (NULL before main found it): usage errors point
 * at its --help. */
extern const char *admin_command;

/* Prints "ds-admin: WHAT ARG" and "try 'ds-admin [COMMAND] --help'" to
 * stderr; returns EXIT_USAGE.
 * arg may be NULL. */
int admin_usage_error(const char *what, const char *arg);

/* Prints the one failure line of a command and returns EXIT_FAIL. */
int admin_fail(const struct admin_ctx *c, const char *what, int rc);

/* part / whole in percent; 0 when whole is 0. */
double admin_pct(uint64_t part, uint64_t whole);

/* The server answers heartbeats (state "up"). */
int admin_is_up(const Imgstore__ServerStatus *s);

/* The state shown: down, draining, read-only or up, in that precedence.
 * Returns a borrowed string. */
const char *admin_shown_state(const Imgstore__ServerStatus *s);

/* Parses an unsigned decimal without sign. Returns 0 with *out, or -1. */
int admin_parse_u64(const char *s, uint64_t *out);

/* Formats secs (Unix time) as ISO 8601 UTC into out, "-" for 0. Returns out. */
const char *admin_iso_time(uint32_t secs, char out[TIME_BUF]);

/* Requires exactly `n` positional arguments after the command: 0, or the
 * usage error's exit status (printed). */
int admin_want_args(const struct admin_ctx *c, int n);

/* Asks the nameserver about one block. Returns 0 with *out (free with
 * protobuf_c_message_free_unpacked) or the error. */
int admin_block_info(struct admin_ctx *c, uint64_t id, Imgstore__AdminBlockInfoResp **out);

/* Sends one admin request to the nameserver; on success *out is the answer
 * (free with protobuf_c_message_free_unpacked). Returns 0 or the error. */
int admin_ns_call(struct admin_ctx *c, unsigned type, const ProtobufCMessage *req,
                  const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out);

/* Resolves a server argument: an exact id, or a prefix of exactly one id.
 * On success *out is a malloc'd id (caller frees) and 0 is returned;
 * otherwise the failure is printed and EXIT_FAIL returned. */
int admin_resolve_server(struct admin_ctx *c, const char *cmd, const char *arg, char **out);

/* Fetches LIST_TASKS. Returns 0 with *out (free with
 * protobuf_c_message_free_unpacked) or the error. */
int admin_list_tasks(struct admin_ctx *c, Imgstore__ListTasksResp **out);

/* The task is running. */
int admin_task_running(const Imgstore__Task *t);

/* s, or "-" when NULL or empty (borrowed). */
const char *admin_or_dash(const char *s);

/* "12.5 MiB/s", or "-" when bytes or time are zero, into out. Returns out. */
const char *admin_rate_text(uint64_t bytes, uint64_t ms, char out[CLI_HUMAN_MAX]);

/* The texts of a --wait progress display: `moved` of `total` bytes in el_ms
 * milliseconds, `left` bytes to go. */
struct admin_progress {
    char moved[CLI_HUMAN_MAX], total[CLI_HUMAN_MAX];
    char rate[CLI_HUMAN_MAX]; /* "12.5 MiB/s" or "-" */
    char left[CLI_HUMAN_MAX]; /* time left at the rate so far, or "-" */
};

/* Fills p (see struct admin_progress). */
void admin_progress_text(struct admin_progress *p, uint64_t moved, uint64_t total, uint64_t left,
                         int64_t el_ms);

/* Writes a progress bar of BAR_WIDTH characters, `full` of them '#', into
 * bar. Returns bar. */
const char *admin_bar(char bar[BAR_WIDTH + 1], int full);

/* Set by SIGINT once admin_catch_sigint ran: a --wait loop stops waiting. */
extern volatile sig_atomic_t admin_interrupted;

/* Installs the SIGINT handler that sets admin_interrupted. */
void admin_catch_sigint(void);

/* The monotonic clock in milliseconds. */
int64_t admin_now_ms(void);

/* Sleeps DRAIN_POLL_MS (SIGINT ends it early). */
void admin_sleep_poll(void);

/* ---- the commands: each returns the exit status ---- */

int admin_cmd_status(struct admin_ctx *c);    /* admin_status.c */
int admin_cmd_servers(struct admin_ctx *c);   /* admin_status.c */
int admin_cmd_ns(struct admin_ctx *c);        /* admin_status.c */
int admin_cmd_blocks(struct admin_ctx *c);    /* admin_blocks.c */
int admin_cmd_block(struct admin_ctx *c);     /* admin_blocks.c */
int admin_cmd_file(struct admin_ctx *c);      /* admin_blocks.c */
int admin_cmd_tasks(struct admin_ctx *c);     /* admin_moves.c */
int admin_cmd_cancel(struct admin_ctx *c);    /* admin_moves.c */
int admin_cmd_drain(struct admin_ctx *c);     /* admin_moves.c */
int admin_cmd_rebalance(struct admin_ctx *c); /* admin_moves.c */
int admin_cmd_readonly(struct admin_ctx *c);  /* admin_settings.c */
int admin_cmd_settings(struct admin_ctx *c);  /* admin_settings.c */
int admin_cmd_set(struct admin_ctx *c);       /* admin_settings.c */
int admin_cmd_verify(struct admin_ctx *c);    /* admin_check.c */
int admin_cmd_compact(struct admin_ctx *c);   /* admin_check.c */
int admin_cmd_repair(struct admin_ctx *c);    /* admin_check.c */
int admin_cmd_ec(struct admin_ctx *c);        /* admin_ec.c */

#endif
