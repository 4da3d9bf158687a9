/* cli_util.h - small helpers shared by the command-line tools (imgstore,
 * ds-admin): human-readable sizes and durations, integer arguments and the
 * options before the command (tables and JSON are tools/emit.h). Not part of
 * the library. */
#ifndef IMGSTORE_CLI_UTIL_H
#define IMGSTORE_CLI_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CLI_HUMAN_MAX 32 /* buffer size for cli_human_* results */

/* Formats a byte count with binary units ("512 B", "1.5 KiB", ... "TiB")
 * into out (CLI_HUMAN_MAX bytes). Returns out. */
const char *cli_human_size(uint64_t bytes, char *out);

/* Formats a duration in milliseconds ("0.4s", "12.0s", "5m12s", "3h04m")
 * into out (CLI_HUMAN_MAX bytes). Returns out. */
const char *cli_human_ms(uint64_t ms, char *out);

/* Parses a non-negative decimal int. Returns 0 with *out or -EINVAL. */
int cli_parse_int(const char *s, int *out);

/* The options the imgstore and ds-admin commands take before the command.
 * --key-file F sets IMGSTORE_KEY_FILE, so every handle the command opens
 * authenticates with that key (client/imgstore.h). */
struct cli_globals {
    const char *ns;  /* --ns, else $IMGSTORE_NS, else the caller's default (borrowed) */
    int timeout_ms;  /* --timeout, 0 when not given */
    int json;        /* --json (ds-admin only) */
};

/* What cli_parse_globals found. */
enum cli_globals_rc {
    CLI_GLOBALS_OK = 0,      /* optind is at the command (or argc) */
    CLI_GLOBALS_HELP,        /* -h or --help */
    CLI_GLOBALS_VERSION,     /* --version */
    CLI_GLOBALS_BAD_TIMEOUT, /* *bad: the --timeout value (not a positive int) */
    CLI_GLOBALS_MISSING,     /* *bad: the option whose value is missing */
    CLI_GLOBALS_UNKNOWN,     /* *bad: the unknown option */
};

/* --version: prints "PROG (imgstore) VERSION" (the library's header's) on
 * stdout. */
void cli_print_version(const char *prog);

/* The second line of every usage error, on stderr: "try 'PROG --help'", or
 * "try 'PROG CMD --help'" when cmd is not NULL. */
void cli_try_help(const char *prog, const char *cmd);

/* Checks the key file named by IMGSTORE_KEY_FILE (if any). Returns 0, or
 * -1 after printing "PROG: key file F: why" on stderr. */
int cli_key_file_check(const char *prog);

/* Parses argv up to the command (getopt_long, "+": the command's options are
 * its own) into *g: --ns, --timeout, --key-file, -h/--help and, when json_ok, --json;
 * ns_default when neither --ns nor $IMGSTORE_NS is given. Stops at the first
 * problem. Returns an enum cli_globals_rc; *bad points into argv. */
int cli_parse_globals(int argc, char **argv, int json_ok, const char *ns_default,
                      struct cli_globals *g, const char **bad);

#endif
