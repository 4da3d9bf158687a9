/* cli_util.c - helpers shared by the command-line tools (see cli_util.h). */
#include "tools/cli_util.h"

#include <errno.h>
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
