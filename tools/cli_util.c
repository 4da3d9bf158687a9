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

void cli_json_string(FILE *fp, const char *s)
{
    fputc('"', fp);
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", fp); break;
        case '\\': fputs("\\\\", fp); break;
        case '\n': fputs("\\n", fp); break;
        case '\r': fputs("\\r", fp); break;
        case '\t': fputs("\\t", fp); break;
        default:
            if (*p < 0x20 || *p == 0x7f)
                fprintf(fp, "\\u%04x", *p);
            else
                fputc(*p, fp);
        }
    }
    fputc('"', fp);
}

static int table_grow(struct cli_table *t)
{
    if (t->nrows < t->cap)
        return 0;
    size_t cap = t->cap ? t->cap * 2 : 16;
    void *p = realloc(t->cells, cap * (size_t)t->ncols * CLI_CELL_MAX);
    if (!p)
        return -ENOMEM;
    t->cells = p;
    t->cap = cap;
    return 0;
}

int cli_table_add(struct cli_table *t, const char *const *cells)
{
    if (table_grow(t) != 0)
        return -ENOMEM;
    for (int c = 0; c < t->ncols; c++)
        snprintf(t->cells[t->nrows * (size_t)t->ncols + (size_t)c], CLI_CELL_MAX, "%s",
                 cells[c] ? cells[c] : "");
    t->nrows++;
    return 0;
}

int cli_table_init(struct cli_table *t, int ncols, const char *const *header)
{
    memset(t, 0, sizeof(*t));
    t->ncols = ncols;
    return cli_table_add(t, header);
}

void cli_table_print(const struct cli_table *t, FILE *fp)
{
    size_t width[t->ncols > 0 ? t->ncols : 1];
    for (int c = 0; c < t->ncols; c++) {
        width[c] = 0;
        for (size_t r = 0; r < t->nrows; r++) {
            size_t n = strlen(t->cells[r * (size_t)t->ncols + (size_t)c]);
            if (n > width[c])
                width[c] = n;
        }
    }
    for (size_t r = 0; r < t->nrows; r++) {
        for (int c = 0; c < t->ncols; c++) {
            const char *cell = t->cells[r * (size_t)t->ncols + (size_t)c];
            if (c + 1 < t->ncols)
                fprintf(fp, "%-*s  ", (int)width[c], cell);
            else
                fprintf(fp, "%s\n", cell);
        }
    }
}

void cli_table_free(struct cli_table *t)
{
    if (!t)
        return;
    free(t->cells);
    memset(t, 0, sizeof(*t));
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
