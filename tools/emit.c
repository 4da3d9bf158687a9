/* emit.c - aligned text tables and JSON documents for the command-line
 * tools (see emit.h). Calls libc and base/array.h only. */
#include "tools/emit.h"

#include "base/array.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define TABLE_FIRST_CAP 16
#define LINE_INDENT "\n  " /* an element of an EMIT_LINES array */

/* ---- tables ---- */

static char *cell_at(const struct emit_table *t, size_t row, int col)
{
    return t->cells[row * (size_t)t->ncols + (size_t)col];
}

/* The cell the next emit_cell fills, a new row when the last is complete;
 * NULL after a failed allocation. */
static char *next_cell(struct emit_table *t)
{
    if (t->err)
        return NULL;
    if (t->col == 0 || t->col == t->ncols) {
        /* t->cap counts rows of ncols cells */
        int rc = array_reserve(&t->cells, &t->cap, t->nrows + 1,
                               (size_t)t->ncols * sizeof(*t->cells), TABLE_FIRST_CAP);
        if (rc != 0) {
            t->err = rc;
            return NULL;
        }
        t->nrows++;
        t->col = 0;
    }
    return cell_at(t, t->nrows - 1, t->col++);
}

void emit_table_init(struct emit_table *t, int ncols, const char *const *header)
{
    memset(t, 0, sizeof(*t));
    t->ncols = ncols;
    for (int c = 0; c < ncols; c++)
        emit_text(t, header[c]);
}

void emit_cell(struct emit_table *t, const char *fmt, ...)
{
    char *cell = next_cell(t);
    if (!cell)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cell, EMIT_CELL_MAX, fmt, ap);
    va_end(ap);
}

void emit_text(struct emit_table *t, const char *s)
{
    emit_cell(t, "%s", s ? s : "");
}

size_t emit_table_rows(const struct emit_table *t)
{
    return t->nrows ? t->nrows - 1 : 0;
}

int emit_table_end(struct emit_table *t, FILE *fp)
{
    int err = t->err;
    /* A row left short gets empty cells. */
    while (!t->err && t->col > 0 && t->col < t->ncols)
        emit_text(t, "");
    if (fp && !t->err) {
        size_t width[t->ncols > 0 ? t->ncols : 1];
        for (int c = 0; c < t->ncols; c++) {
            width[c] = 0;
            for (size_t r = 0; r < t->nrows; r++) {
                size_t n = strlen(cell_at(t, r, c));
                if (n > width[c])
                    width[c] = n;
            }
        }
        for (size_t r = 0; r < t->nrows; r++) {
            for (int c = 0; c < t->ncols; c++) {
                if (c + 1 < t->ncols)
                    fprintf(fp, "%-*s  ", (int)width[c], cell_at(t, r, c));
                else
                    fprintf(fp, "%s\n", cell_at(t, r, c));
            }
        }
    }
    err = err ? err : t->err;
    free(t->cells);
    memset(t, 0, sizeof(*t));
    return err;
}

/* ---- JSON ---- */

void emit_json_init(struct emit_json *j, FILE *fp)
{
    memset(j, 0, sizeof(*j));
    j->fp = fp;
}

void emit_json_break(struct emit_json *j)
{
    j->brk = 1;
}

/* Writes what comes before a value: the separator after the previous
 * member, and the key when in an object. */
static void member(struct emit_json *j, const char *key)
{
    if (j->depth > 0) {
        typeof(j->stack[0]) *s = &j->stack[j->depth - 1];
        if (s->array && s->layout != EMIT_INLINE)
            fputs(s->n ? "," LINE_INDENT : LINE_INDENT, j->fp);
        else if (s->n)
            fputs(j->brk && !s->array ? ",\n " : ", ", j->fp);
        s->n++;
    }
    j->brk = 0;
    if (key) {
        emit_json_string(j->fp, key);
        fputs(": ", j->fp);
    }
}

static void open_container(struct emit_json *j, const char *key, int array,
                           enum emit_layout layout)
{
    member(j, key);
    fputc(array ? '[' : '{', j->fp);
    if (j->depth < EMIT_JSON_DEPTH) {
        j->stack[j->depth].array = (char)array;
        j->stack[j->depth].layout = (char)layout;
        j->stack[j->depth].n = 0;
    }
    j->depth++;
}

void emit_json_obj(struct emit_json *j, const char *key)
{
    open_container(j, key, 0, EMIT_INLINE);
}

void emit_json_arr(struct emit_json *j, const char *key, enum emit_layout layout)
{
    open_container(j, key, 1, layout);
}

void emit_json_end(struct emit_json *j)
{
    if (j->depth == 0)
        return;
    j->depth--;
    j->brk = 0;
    int array = 0, lines = 0;
    if (j->depth < EMIT_JSON_DEPTH) {
        array = j->stack[j->depth].array;
        lines = j->stack[j->depth].layout == EMIT_LINES && j->stack[j->depth].n > 0;
    }
    fputs(lines ? "\n" : "", j->fp);
    fputc(array ? ']' : '}', j->fp);
    if (j->depth == 0)
        fputc('\n', j->fp);
}

void emit_json_str(struct emit_json *j, const char *key, const char *s)
{
    member(j, key);
    emit_json_string(j->fp, s);
}

void emit_json_strf(struct emit_json *j, const char *key, const char *fmt, ...)
{
    char buf[EMIT_CELL_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    emit_json_str(j, key, buf);
}

void emit_json_u64(struct emit_json *j, const char *key, uint64_t v)
{
    member(j, key);
    fprintf(j->fp, "%llu", (unsigned long long)v);
}

void emit_json_i64(struct emit_json *j, const char *key, int64_t v)
{
    member(j, key);
    fprintf(j->fp, "%lld", (long long)v);
}

void emit_json_num(struct emit_json *j, const char *key, int decimals, double v)
{
    member(j, key);
    fprintf(j->fp, "%.*f", decimals, v);
}

void emit_json_bool(struct emit_json *j, const char *key, int v)
{
    member(j, key);
    fputs(v ? "true" : "false", j->fp);
}

void emit_json_null(struct emit_json *j, const char *key)
{
    member(j, key);
    fputs("null", j->fp);
}

void emit_json_raw(struct emit_json *j, const char *text)
{
    fputs(text, j->fp);
}

void emit_json_string(FILE *fp, const char *s)
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
