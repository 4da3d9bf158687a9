/* json_check.c - JSON checks for the integration tests, on Debian's jansson:
 * enough to prove that `ds-admin --json` and the status endpoints print
 * exactly one well-formed JSON document, and to pick numbers and strings out
 * of it (or out of a part of it that a test found by its text). */
#include "tests/integ/json_check.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void check_json(const char *text, const char *who)
{
    json_error_t err;
    json_t *doc = json_loads(text, JSON_DECODE_ANY, &err);
    cr_assert_not_null(doc, "%s: not one JSON document (line %d column %d: %s):\n%s", who,
                       err.line, err.column, err.text, text);
    json_decref(doc);
}

/* The value after the first "key": in text (a whole document or any part
 * of one), parsed; NULL when the key is absent or no value follows it. The
 * caller owns the result (json_decref). */
static json_t *value_after(const char *text, const char *key)
{
    char pat[128];
    snprintf(pat, sizeof(pat), "\"%s\":", key);
    const char *p = strstr(text, pat);
    if (!p)
        return NULL;
    json_error_t err;
    return json_loads(p + strlen(pat), JSON_DECODE_ANY | JSON_DISABLE_EOF_CHECK, &err);
}

/* The number after the first "key": in text, or NAN. */
double json_num(const char *text, const char *key)
{
    json_t *v = value_after(text, key);
    double d = json_is_number(v) ? json_number_value(v) : NAN;
    json_decref(v);
    return d;
}

/* Copies the string after the first "key": in text into out. */
void json_str(const char *text, const char *key, char *out, size_t n)
{
    json_t *v = value_after(text, key);
    cr_assert(json_is_string(v), "no string \"%s\" in %s", key, text);
    snprintf(out, n, "%s", json_string_value(v));
    json_decref(v);
}
