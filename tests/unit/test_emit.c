/* Unit tests of tools/emit.c's JSON writer: documents built on jansson keep
 * the layouts the tools print (inline members, members on new lines,
 * arrays of one element a line), and every string and number is what
 * jansson makes of it, so hostile text (quotes, control bytes, invalid
 * UTF-8) still gives one valid document. */
#include "tools/emit.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Runs build(j) into a memory stream; returns the text (caller frees). */
static char *render(void (*build)(struct emit_json *j))
{
    char *text = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&text, &len);
    cr_assert_not_null(fp);
    struct emit_json j;
    emit_json_init(&j, fp);
    build(&j);
    fclose(fp);
    return text;
}

static void build_layouts(struct emit_json *j)
{
    emit_json_obj(j, NULL);
    emit_json_str(j, "id", "a\"b\\c\n\x01");
    emit_json_u64(j, "n", 9007199254740993ull); /* 2^53 + 1: exact, not a double */
    emit_json_i64(j, "neg", -5);
    emit_json_break(j);
    emit_json_num(j, "pct", 1, 33.333);
    emit_json_num(j, "whole", 0, 2.6);
    emit_json_bool(j, "ok", 1);
    emit_json_null(j, "none");
    emit_json_break(j);
    emit_json_arr(j, "rows", EMIT_LINES);
    for (int i = 0; i < 2; i++) {
        emit_json_obj(j, NULL);
        emit_json_i64(j, "i", i);
        emit_json_end(j);
    }
    emit_json_end(j);
    emit_json_arr(j, "empty", EMIT_LINES);
    emit_json_end(j);
    emit_json_arr(j, "inline", EMIT_INLINE);
    emit_json_str(j, NULL, "x");
    emit_json_str(j, NULL, NULL);
    emit_json_end(j);
    emit_json_end(j);
}

Test(emit, layouts_and_values)
{
    char *text = render(build_layouts);
    cr_assert_str_eq(text,
                     "{\"id\": \"a\\\"b\\\\c\\n\\u0001\", \"n\": 9007199254740993, "
                     "\"neg\": -5,\n \"pct\": 33.3, \"whole\": 3, \"ok\": true, \"none\": null,\n"
                     " \"rows\": [\n  {\"i\": 0},\n  {\"i\": 1}\n], \"empty\": [], "
                     "\"inline\": [\"x\", \"\"]}\n",
                     "%s", text);
    json_error_t err;
    json_t *doc = json_loads(text, 0, &err);
    cr_assert_not_null(doc, "%s: %s", err.text, text);
    cr_assert_str_eq(json_string_value(json_object_get(doc, "id")), "a\"b\\c\n\x01");
    json_decref(doc);
    free(text);
}

static void build_open_and_tail(struct emit_json *j)
{
    emit_json_obj(j, NULL);
    emit_json_arr(j, "moves", EMIT_LINES_OPEN);
    emit_json_u64(j, NULL, 1);
    emit_json_u64(j, NULL, 2);
    emit_json_end(j);
    emit_json_obj(j, "state");
    emit_json_str(j, "s", "done");
    emit_json_raw(j, "\n");
    emit_json_end(j);
    emit_json_end(j);
}

Test(emit, lines_open_and_raw_tail)
{
    char *text = render(build_open_and_tail);
    cr_assert_str_eq(text, "{\"moves\": [\n  1,\n  2], \"state\": {\"s\": \"done\"\n}}\n", "%s",
                     text);
    free(text);
}

static void build_bad_utf8(struct emit_json *j)
{
    emit_json_obj(j, NULL);
    emit_json_str(j, "path", "/data/\xff\xfe-disk\xc3");
    emit_json_str(j, "ok", "caf\xc3\xa9");
    emit_json_end(j);
}

Test(emit, invalid_utf8_still_valid_json)
{
    char *text = render(build_bad_utf8);
    cr_assert_str_eq(text, "{\"path\": \"/data/?" "?-disk?\", \"ok\": \"caf\xc3\xa9\"}\n", "%s", text);
    json_error_t err;
    json_t *doc = json_loads(text, 0, &err);
    cr_assert_not_null(doc, "%s", err.text);
    json_decref(doc);
    free(text);
}

static void build_two_docs(struct emit_json *j)
{
    emit_json_obj(j, NULL);
    emit_json_i64(j, "a", 1);
    emit_json_end(j);
    emit_json_arr(j, NULL, EMIT_INLINE);
    emit_json_end(j);
}

Test(emit, one_document_after_another)
{
    char *text = render(build_two_docs);
    cr_assert_str_eq(text, "{\"a\": 1}\n[]\n", "%s", text);
    free(text);
}
