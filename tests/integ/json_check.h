/* json_check.h - JSON checks for the integration tests, parsed with
 * jansson: one whole document, and values found by key. */
#ifndef TEST_JSON_CHECK_H
#define TEST_JSON_CHECK_H

#include <stddef.h>

/* Fails the current Criterion test unless text is exactly one JSON document;
 * `who` names it in the failure message. */
void check_json(const char *text, const char *who);

/* The number after the first "key": in text (a document or the part of one
 * a test found by its text; the value is parsed with jansson), or NAN. */
double json_num(const char *text, const char *key);

/* Copies the string after the first "key": in text into out (n bytes, NUL-
 * terminated); fails the test when the key is missing. */
void json_str(const char *text, const char *key, char *out, size_t n);

#endif
