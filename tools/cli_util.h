/* cli_util.h - small helpers shared by the command-line tools (imgstore,
 * ds-admin): human-readable sizes and durations, aligned text tables and
 * JSON string output. Not part of the library. */
#ifndef IMGSTORE_CLI_UTIL_H
#define IMGSTORE_CLI_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CLI_CELL_MAX 128 /* longest table cell, with its NUL */
#define CLI_HUMAN_MAX 32 /* buffer size for cli_human_* results */

/* Formats a byte count with binary units ("512 B", "1.5 KiB", ... "TiB")
 * into out (CLI_HUMAN_MAX bytes). Returns out. */
const char *cli_human_size(uint64_t bytes, char *out);

/* Formats a duration in milliseconds ("0.4s", "12.0s", "5m12s", "3h04m")
 * into out (CLI_HUMAN_MAX bytes). Returns out. */
const char *cli_human_ms(uint64_t ms, char *out);

/* Writes s as a JSON string literal (quoted, escaped) to fp. NULL writes
 * an empty string. */
void cli_json_string(FILE *fp, const char *s);

/* A table of text cells printed with aligned columns. */
struct cli_table {
    int ncols;
    size_t nrows;
    size_t cap;
    char (*cells)[CLI_CELL_MAX]; /* nrows * ncols, row 0 is the header; owned */
};

/* Starts a table with the given header (ncols borrowed strings). Returns 0
 * or -ENOMEM. */
int cli_table_init(struct cli_table *t, int ncols, const char *const *header);

/* Appends a row of t->ncols strings (copied, truncated to CLI_CELL_MAX - 1).
 * Returns 0 or -ENOMEM. */
int cli_table_add(struct cli_table *t, const char *const *cells);

/* Prints the table: columns separated by two spaces, the last column not
 * padded. */
void cli_table_print(const struct cli_table *t, FILE *fp);

/* Frees the table's cells. NULL-safe. */
void cli_table_free(struct cli_table *t);

/* Parses a non-negative decimal int. Returns 0 with *out or -EINVAL. */
int cli_parse_int(const char *s, int *out);

#endif
