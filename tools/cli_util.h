/* cli_util.h - small helpers shared by the command-line tools (imgstore,
 * ds-admin): human-readable sizes and durations, and integer arguments
 * (tables and JSON are tools/emit.h). Not part of the library. */
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

#endif
