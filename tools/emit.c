/* emit.c - aligned text tables and JSON documents for the command-line
 * tools (see emit.h). A JSON document is a jansson tree, printed when it is
 * closed: containers with the layouts of emit.h, every key and value as
 * jansson encodes it. Calls libc, base/array.h and jansson. */
#include "tools/emit.h"

#include "base/array.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
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

#define JSON_DIGITS 15 /* significant digits of reals (rounded to their places first) */
#define HINTS_FIRST_CAP 4

/* A container whose layout is not the default: an EMIT_LINES* array, an
 * object with members on new lines, or text before its closing bracket. */
struct emit_hint {
    json_t *node;   /* borrowed from the document */
    int layout;     /* arrays: enum emit_layout */
    json_t *breaks; /* objects: the keys that start a new line (owned) */
    char *tail;     /* printed before the closing bracket (owned) */
};

void emit_json_init(struct emit_json *j, FILE *fp)
{
    memset(j, 0, sizeof(*j));
    j->fp = fp;
}

void emit_json_break(struct emit_json *j)
{
    j->brk = 1;
}

static struct emit_hint *hint_find(const struct emit_json *j, const json_t *node)
{
    for (size_t i = 0; i < j->nhints; i++)
        if (j->hints[i].node == node)
            return &j->hints[i];
    return NULL;
}

static struct emit_hint *hint_get(struct emit_json *j, json_t *node)
{
    struct emit_hint *h = hint_find(j, node);
    if (h)
        return h;
    if (ARRAY_RESERVE(j->hints, j->hints_cap, j->nhints + 1, HINTS_FIRST_CAP) != 0) {
        j->err = -ENOMEM;
        return NULL;
    }
    h = &j->hints[j->nhints++];
    memset(h, 0, sizeof(*h));
    h->node = node;
    return h;
}

static void free_doc(struct emit_json *j)
{
    for (size_t i = 0; i < j->nhints; i++) {
        json_decref(j->hints[i].breaks);
        free(j->hints[i].tail);
    }
    free(j->hints);
    json_decref(j->root);
    FILE *fp = j->fp;
    emit_json_init(j, fp);
}

/* Adds v (a new reference, NULL when its allocation failed) as member `key`
 * of the innermost open object, the next element of the innermost array, or
 * the document. Returns v (borrowed) or NULL. */
static json_t *add(struct emit_json *j, const char *key, json_t *v)
{
    if (!v || j->err || j->depth > EMIT_JSON_DEPTH) {
        j->err = j->err ? j->err : -ENOMEM;
        json_decref(v);
        return NULL;
    }
    int brk = j->brk;
    j->brk = 0;
    if (j->depth == 0) {
        if (j->root) { /* a second document before the first ended */
            json_decref(v);
            j->err = -EINVAL;
            return NULL;
        }
        j->root = v;
        return v;
    }
    json_t *parent = j->stack[j->depth - 1];
    int rc;
    if (json_is_array(parent)) {
        rc = json_array_append_new(parent, v);
    } else {
        if (brk && json_object_size(parent) > 0) {
            struct emit_hint *h = hint_get(j, parent);
            if (h && !h->breaks)
                h->breaks = json_object();
            if (!h || !h->breaks || json_object_set_new(h->breaks, key ? key : "", json_true()))
                j->err = -ENOMEM;
        }
        rc = json_object_set_new(parent, key ? key : "", v);
    }
    if (rc != 0) {
        j->err = -ENOMEM;
        return NULL;
    }
    return v;
}

static void open_container(struct emit_json *j, const char *key, int array,
                           enum emit_layout layout)
{
    json_t *c = add(j, key, array ? json_array() : json_object());
    if (c && array && layout != EMIT_INLINE) {
        struct emit_hint *h = hint_get(j, c);
        if (h)
            h->layout = layout;
    }
    if (j->depth < EMIT_JSON_DEPTH)
        j->stack[j->depth] = c;
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

/* Writes one scalar as jansson encodes it. Returns 0 or -ENOMEM. */
static int print_scalar(FILE *fp, const json_t *v)
{
    char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_REAL_PRECISION(JSON_DIGITS));
    if (!text)
        return -ENOMEM;
    fputs(text, fp);
    free(text);
    return 0;
}

/* Writes v with the layouts of its hints. Returns 0 or -ENOMEM. */
static int print_value(const struct emit_json *j, const json_t *v)
{
    FILE *fp = j->fp;
    const struct emit_hint *h = hint_find(j, v);
    int rc = 0;
    if (json_is_object(v)) {
        const char *key;
        json_t *member;
        size_t n = 0;
        fputc('{', fp);
        json_object_foreach((json_t *)v, key, member) {
            if (n++)
                fputs(h && h->breaks && json_object_get(h->breaks, key) ? ",\n " : ", ", fp);
            json_t *k = json_string(key);
            rc = k ? print_scalar(fp, k) : -ENOMEM;
            json_decref(k);
            fputs(": ", fp);
            if (rc == 0)
                rc = print_value(j, member);
            if (rc != 0)
                return rc;
        }
        fputs(h && h->tail ? h->tail : "", fp);
        fputc('}', fp);
        return 0;
    }
    if (json_is_array(v)) {
        int layout = h ? h->layout : EMIT_INLINE;
        size_t i, n = json_array_size(v);
        json_t *elem;
        fputc('[', fp);
        json_array_foreach((json_t *)v, i, elem) {
            if (layout != EMIT_INLINE)
                fputs(i ? "," LINE_INDENT : LINE_INDENT, fp);
            else if (i)
                fputs(", ", fp);
            if ((rc = print_value(j, elem)) != 0)
                return rc;
        }
        fputs(layout == EMIT_LINES && n > 0 ? "\n" : "", fp);
        fputs(h && h->tail ? h->tail : "", fp);
        fputc(']', fp);
        return 0;
    }
    return print_scalar(fp, v);
}

void emit_json_end(struct emit_json *j)
{
    if (j->depth == 0)
        return;
    j->depth--;
    j->brk = 0;
    if (j->depth > 0)
        return;
    if (j->err == 0 && j->root && print_value(j, j->root) == 0)
        fputc('\n', j->fp);
    else
        fprintf(stderr, "out of memory writing the JSON answer\n");
    free_doc(j);
}

/* s as a JSON string; when it is not valid UTF-8, with '?' for every byte
 * outside ASCII. */
static json_t *string_value(const char *s)
{
    json_t *v = json_string(s ? s : "");
    if (v || !s)
        return v;
    char *copy = strdup(s);
    if (!copy)
        return NULL;
    for (char *p = copy; *p; p++)
        if ((unsigned char)*p >= 0x80)
            *p = '?';
    v = json_string(copy);
    free(copy);
    return v;
}

void emit_json_str(struct emit_json *j, const char *key, const char *s)
{
    add(j, key, string_value(s));
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
    /* jansson's integers are signed 64-bit; larger values (none of ours
     * in practice) go as reals */
    add(j, key, v <= INT64_MAX ? json_integer((json_int_t)v) : json_real((double)v));
}

void emit_json_i64(struct emit_json *j, const char *key, int64_t v)
{
    add(j, key, json_integer((json_int_t)v));
}

void emit_json_num(struct emit_json *j, const char *key, int decimals, double v)
{
    if (decimals <= 0 || !isfinite(v)) {
        add(j, key, isfinite(v) ? json_integer((json_int_t)llround(v)) : json_null());
        return;
    }
    double scale = pow(10.0, decimals);
    add(j, key, json_real(round(v * scale) / scale));
}

void emit_json_bool(struct emit_json *j, const char *key, int v)
{
    add(j, key, json_boolean(v));
}

void emit_json_null(struct emit_json *j, const char *key)
{
    add(j, key, json_null());
}

void emit_json_raw(struct emit_json *j, const char *text)
{
    if (j->depth == 0 || j->depth > EMIT_JSON_DEPTH || !j->stack[j->depth - 1])
        return;
    struct emit_hint *h = hint_get(j, j->stack[j->depth - 1]);
    char *t = h ? strdup(text) : NULL;
    if (!t) {
        j->err = -ENOMEM;
        return;
    }
    free(h->tail);
    h->tail = t;
}
