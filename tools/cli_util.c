/* cli_util.c - helpers shared by the command-line tools (see cli_util.h). */
#include "tools/cli_util.h"

#include "client/imgstore.h"
#include <stdio.h>

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define KIB 1024.0
#define MS_PER_S 1000u
#define S_PER_MIN 60u
#define S_PER_HOUR 3600u

const char *cli_human_size(uint64_t bytes, char *out)
{
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB"};
    if (bytes < 1024) {
        snprintf(out, CLI_HUMAN_MAX, "%llu B", (unsigned long long)bytes);
        return out;
    }
    double v = (double)bytes / KIB;
    size_t u = 0;
    while (v >= KIB && u + 1 < sizeof(units) / sizeof(units[0])) {
        v /= KIB;
        u++;
    }
    snprintf(out, CLI_HUMAN_MAX, "%.1f %s", v, units[u]);
    return out;
}

const char *cli_human_ms(uint64_t ms, char *out)
{
    uint64_t s = ms / MS_PER_S;
    if (s < S_PER_MIN)
        snprintf(out, CLI_HUMAN_MAX, "%.1fs", (double)ms / MS_PER_S);
    else if (s < S_PER_HOUR)
        snprintf(out, CLI_HUMAN_MAX, "%llum%02llus", (unsigned long long)(s / S_PER_MIN),
                 (unsigned long long)(s % S_PER_MIN));
    else
        snprintf(out, CLI_HUMAN_MAX, "%lluh%02llum", (unsigned long long)(s / S_PER_HOUR),
                 (unsigned long long)(s % S_PER_HOUR / S_PER_MIN));
    return out;
}

int cli_parse_int(const char *s, int *out)
{
    if (!s || !*s)
        return -EINVAL;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (*end || errno || v < 0 || v > INT_MAX)
        return -EINVAL;
    *out = (int)v;
    return 0;
}

int cli_parse_globals(int argc, char **argv, int json_ok, const char *ns_default,
                      struct cli_globals *g, const char **bad)
{
    /* --json last, so that without it the table ends there. */
    struct option longopts[] = {{"ns", required_argument, NULL, 'n'},
                                {"timeout", required_argument, NULL, 't'},
                                {"help", no_argument, NULL, 'h'},
                                {"key-file", required_argument, NULL, 'k'},
                                {"version", no_argument, NULL, 'V'},
                                {"json", no_argument, NULL, 'j'},
                                {NULL, 0, NULL, 0}};
    if (!json_ok)
        longopts[5] = longopts[6];
    *g = (struct cli_globals){.ns = getenv("IMGSTORE_NS")};
    if (!g->ns || !*g->ns)
        g->ns = ns_default;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'n':
            g->ns = optarg;
            break;
        case 't':
            if (cli_parse_int(optarg, &g->timeout_ms) != 0 || g->timeout_ms == 0) {
                *bad = optarg;
                return CLI_GLOBALS_BAD_TIMEOUT;
            }
            break;
        case 'j':
            g->json = 1;
            break;
        case 'k':
            /* Every handle the command opens reads it (imgstore_open). */
            if (setenv("IMGSTORE_KEY_FILE", optarg, 1) != 0) {
                *bad = optarg;
                return CLI_GLOBALS_UNKNOWN;
            }
            break;
        case 'h':
            return CLI_GLOBALS_HELP;
        case 'V':
            return CLI_GLOBALS_VERSION;
        default:
            *bad = argv[optind - 1];
            return c == ':' ? CLI_GLOBALS_MISSING : CLI_GLOBALS_UNKNOWN;
        }
    }
    return CLI_GLOBALS_OK;
}

void cli_print_version(const char *prog)
{
    printf("%s (imgstore) %s\n", prog, IMGSTORE_VERSION);
}

void cli_try_help(const char *prog, const char *cmd)
{
    fprintf(stderr, "try '%s%s%s --help'\n", prog, cmd ? " " : "", cmd ? cmd : "");
}

int cli_key_file_check(const char *prog)
{
    const char *path = getenv("IMGSTORE_KEY_FILE");
    char err[256];
    if (!path || !*path || imgstore_key_file_check(path, err, sizeof(err)) == 0)
        return 0;
    fprintf(stderr, "%s: %s\n", prog, err);
    return -1;
}
