/* json_check.h - JSON checks for the integration tests, parsed with
 * jansson: one whole document, and values by path in it. */
#ifndef TEST_JSON_CHECK_H
#define TEST_JSON_CHECK_H

#include <stddef.h>

/* Fails the current Criterion test unless text is exactly one JSON document;
 * `who` names it in the failure message. */
void check_json(const char *text, const char *who);

/* Values by path in one whole JSON document, parsed with jansson (the test
 * fails when text is not exactly one document). A path is steps joined by
 * '.': a member name ("setting"), an array index ("[0]"), or the first
 * element of an array whose member FIELD is the string (or the integer, or
 * the boolean) VALUE ("[key=task_cap]", "[in_band=false]"); a name and a bracket may share a step
 * ("settings[key=ec].value"). "" is the whole document. */

/* The value at path, a new reference (json_decref), or NULL when the path
 * leads nowhere. */
struct json_t;
struct json_t *json_at(const char *text, const char *path);

/* The number at path, or NAN when absent or not a number. */
double json_at_num(const char *text, const char *path);

/* 1 for true, 0 for false, -1 when absent or not a boolean. */
int json_at_bool(const char *text, const char *path);

/* Copies the string at path into out (n bytes, NUL-terminated); fails the
 * test when there is none. */
void json_at_str(const char *text, const char *path, char *out, size_t n);

/* The number of elements of the array at path (-1 when it is none). */
int json_at_len(const char *text, const char *path);

/* The body of an HTTP answer held whole in text (what follows the blank
 * line after its head), or text itself when it has no head. */
const char *json_http_body(const char *text);

#endif
