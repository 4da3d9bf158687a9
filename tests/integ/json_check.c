/* json_check.c - JSON checks for the integration tests, on Debian's jansson:
 * enough to prove that `ds-admin --json` and the status endpoints print
 * exactly one well-formed JSON document, and to pick values out of it by
 * path (json_at*); never by searching its text. */
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

/* One step of a path applied to v (borrowed): a member name, then any
 * number of brackets. Returns the borrowed value reached, or NULL. */
static json_t *step(json_t *v, const char *s, size_t len)
{
    size_t name = strcspn(s, "[");
    if (name > len)
        name = len;
    if (name > 0) {
        char key[128];
        if (name >= sizeof(key))
            return NULL;
        memcpy(key, s, name);
        key[name] = '\0';
        v = json_object_get(v, key);
    }
    const char *p = s + name, *end = s + len;
    while (v && p < end && *p == '[') {
        const char *close = memchr(p, ']', (size_t)(end - p));
        if (!close)
            return NULL;
        char sel[256];
        size_t sl = (size_t)(close - p - 1);
        if (sl >= sizeof(sel))
            return NULL;
        memcpy(sel, p + 1, sl);
        sel[sl] = '\0';
        char *eq = strchr(sel, '=');
        if (!eq) {
            char *e;
            unsigned long i = strtoul(sel, &e, 10);
            v = *sel && !*e ? json_array_get(v, i) : NULL;
        } else {
            *eq = '\0';
            const char *want = eq + 1;
            json_t *hit = NULL;
            for (size_t i = 0; !hit && i < json_array_size(v); i++) {
                json_t *f = json_object_get(json_array_get(v, i), sel);
                char num[64];
                if (json_is_integer(f))
                    snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(f));
                if ((json_is_string(f) && strcmp(json_string_value(f), want) == 0) ||
                    (json_is_integer(f) && strcmp(num, want) == 0) ||
                    (json_is_boolean(f) && strcmp(json_is_true(f) ? "true" : "false", want) == 0))
                    hit = json_array_get(v, i);
            }
            v = hit;
        }
        p = close + 1;
    }
    return p == end ? v : NULL;
}

json_t *json_at(const char *text, const char *path)
{
    json_error_t err;
    json_t *doc = json_loads(text, JSON_DECODE_ANY, &err);
    cr_assert_not_null(doc, "not one JSON document (line %d column %d: %s):\n%s", err.line,
                       err.column, err.text, text);
    json_t *v = doc;
    for (const char *s = path; v && *s;) {
        size_t len = 0; /* up to the next '.' outside brackets */
        for (int in = 0; s[len] && (in || s[len] != '.'); len++)
            in = s[len] == '[' ? 1 : s[len] == ']' ? 0 : in;
        v = step(v, s, len);
        s += len;
        if (*s == '.')
            s++;
    }
    json_incref(v);
    json_decref(doc);
    return v;
}

double json_at_num(const char *text, const char *path)
{
    json_t *v = json_at(text, path);
    double d = json_is_number(v) ? json_number_value(v) : NAN;
    json_decref(v);
    return d;
}

int json_at_bool(const char *text, const char *path)
{
    json_t *v = json_at(text, path);
    int b = json_is_boolean(v) ? json_is_true(v) : -1;
    json_decref(v);
    return b;
}

void json_at_str(const char *text, const char *path, char *out, size_t n)
{
    json_t *v = json_at(text, path);
    cr_assert(json_is_string(v), "no string at %s in %s", path, text);
    snprintf(out, n, "%s", json_string_value(v));
    json_decref(v);
}

const char *json_http_body(const char *text)
{
    const char *b = strncmp(text, "HTTP/", 5) == 0 ? strstr(text, "\r\n\r\n") : NULL;
    return b ? b + 4 : text;
}

int json_at_len(const char *text, const char *path)
{
    json_t *v = json_at(text, path);
    int len = json_is_array(v) ? (int)json_array_size(v) : -1;
    json_decref(v);
    return len;
}
