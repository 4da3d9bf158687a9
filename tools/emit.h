/* emit.h - the one output path of the command-line tools: a table builder
 * (columns, then rows of cells given one by one with printf formats) that
 * prints aligned text for people, and a JSON writer (objects, arrays and
 * keyed values; it places the separators, quotes and escapes) for --json.
 * Commands say what a row or a value is; padding and layout are decided
 * here only. Every function writes to the FILE given at init, which stays
 * the caller's. Calls libc, base/array.h and jansson. */
#ifndef IMGSTORE_TOOLS_EMIT_H
#define IMGSTORE_TOOLS_EMIT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define EMIT_CELL_MAX 128  /* longest table cell, with its NUL */
#define EMIT_JSON_DEPTH 8  /* nesting of objects and arrays, at most */

/* ---- tables ---- */

/* A table of text cells printed with aligned columns: columns separated by
 * two spaces, the last column not padded. A failed allocation is kept in
 * err and makes the later calls no-ops, so rows are added without checks. */
struct emit_table {
    int ncols;
    int col;      /* cells given so far of the row being added */
    size_t nrows; /* with the header and the row being added */
    size_t cap;
    int err;      /* 0, or -ENOMEM */
    char (*cells)[EMIT_CELL_MAX]; /* nrows * ncols, row 0 is the header; owned */
};

/* Starts a table with the given header (ncols borrowed strings). */
void emit_table_init(struct emit_table *t, int ncols, const char *const *header);

/* Adds the next cell (printf format; truncated to EMIT_CELL_MAX - 1); the
 * row ends after ncols cells and the next cell starts a new one. */
void emit_cell(struct emit_table *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Adds the next cell: s as it is, "" for NULL. */
void emit_text(struct emit_table *t, const char *s);

/* Rows added so far, without the header. */
size_t emit_table_rows(const struct emit_table *t);

/* Prints the table to fp (nothing when fp is NULL or an allocation failed)
 * and frees its cells. Returns 0 or -ENOMEM. */
int emit_table_end(struct emit_table *t, FILE *fp);

/* ---- JSON ---- */

/* A document is built as a jansson tree (jansson does the strings' escaping
 * and UTF-8 checks and the numbers) and printed when its outermost object or
 * array is closed, with these layouts; values print as jansson writes them
 * (", " and ": " separators). */

/* How an array lays out its elements. */
enum emit_layout {
    EMIT_INLINE,     /* [a, b] */
    EMIT_LINES,      /* [\n  a,\n  b\n] ([] when empty) */
    EMIT_LINES_OPEN, /* [\n  a,\n  b] : no line break before the ] */
};

struct json_t;
struct emit_hint;

/* A JSON document being written. Objects separate members with ", ", or
 * ",\n " after emit_json_break; a document ends with a line break. A
 * failed allocation is kept in err: the document is then not printed (a
 * line on stderr says so). */
struct emit_json {
    FILE *fp;
    struct json_t *root; /* the document being built (owned) */
    int depth;
    int brk; /* the next member of the object starts a new line */
    int err; /* 0, or -ENOMEM */
    struct json_t *stack[EMIT_JSON_DEPTH]; /* the open containers (borrowed from root) */
    struct emit_hint *hints; /* layouts other than the default (owned) */
    size_t nhints, hints_cap;
};

/* Starts a document written to fp. */
void emit_json_init(struct emit_json *j, FILE *fp);

/* In the object being written, the next member goes on a new line
 * (",\n "). */
void emit_json_break(struct emit_json *j);

/* Opens an object or an array as the member `key` of the object being
 * written, or (key NULL) as the next element of the array or the document. */
void emit_json_obj(struct emit_json *j, const char *key);
void emit_json_arr(struct emit_json *j, const char *key, enum emit_layout layout);

/* Closes the innermost object or array; closing the outermost prints the
 * document, ends it with "\n" and frees it. */
void emit_json_end(struct emit_json *j);

/* Values, each as member `key` (or, key NULL, the next array element).
 * Strings that are not valid UTF-8 have their non-ASCII bytes replaced by
 * '?'. */
void emit_json_str(struct emit_json *j, const char *key, const char *s); /* NULL: "" */
void emit_json_strf(struct emit_json *j, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4))); /* a formatted string, quoted */
void emit_json_u64(struct emit_json *j, const char *key, uint64_t v);
void emit_json_i64(struct emit_json *j, const char *key, int64_t v);
/* v rounded to `decimals` places (an integer when 0). */
void emit_json_num(struct emit_json *j, const char *key, int decimals, double v);
void emit_json_bool(struct emit_json *j, const char *key, int v);
void emit_json_null(struct emit_json *j, const char *key);

/* Prints text (white space only) just before the closing bracket of the
 * innermost open object or array. */
void emit_json_raw(struct emit_json *j, const char *text);

#endif
