/* admin_settings.c - ds-admin readonly, settings and set: an operator's
 * read-only mark on a server and the nameserver's runtime settings
 * (ADMIN_READONLY, ADMIN_SETTINGS, ADMIN_SET_SETTING). Called by the command
 * table in tools/ds_admin.c; calls tools/admin.c and the library. */
#include "tools/admin.h"

#include "base/err.h"
#include "proto/frame.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- readonly ------------------------------------------------------------------------ */

static int readonly_set(struct admin_ctx *c, const char *id, int on);

int admin_cmd_readonly(struct admin_ctx *c)
{
    int rc = admin_want_args(c, 2);
    if (rc)
        return rc;
    const char *mode = c->argv[2];
    int on = strcmp(mode, "on") == 0;
    if (!on && strcmp(mode, "off") != 0)
        return admin_usage_error("readonly takes on or off, not ", mode);
    char *id = NULL;
    if ((rc = admin_resolve_server(c, "readonly", c->argv[1], &id)) != 0)
        return rc;
    rc = readonly_set(c, id, on);
    free(id);
    return rc;
}

/* Sends READONLY for server `id` and prints the outcome. */
static int readonly_set(struct admin_ctx *c, const char *id, int on)
{
    int rc;
    Imgstore__AdminReadonly q = IMGSTORE__ADMIN_READONLY__INIT;
    q.server_id = (char *)id;
    q.readonly = on;
    ProtobufCMessage *m = NULL;
    rc = admin_ns_call(c, FT_ADMIN_READONLY, &q.base, &imgstore__admin_readonly_resp__descriptor,
                       &m);
    if (rc == IMGSTORE_ENOTFOUND) {
        fprintf(stderr, "%s: readonly: no server %s\n", ADMIN_PROG, id);
        return EXIT_FAIL;
    }
    if (rc != 0)
        return admin_fail(c, "readonly", rc);
    const Imgstore__AdminReadonlyResp *r = (const Imgstore__AdminReadonlyResp *)m;
    if (c->json) {
        struct emit_json j;
        emit_json_init(&j, stdout);
        emit_json_obj(&j, NULL);
        emit_json_str(&j, "server", id);
        emit_json_bool(&j, "readonly", r->readonly);
        emit_json_bool(&j, "server_readonly", r->server_readonly);
        emit_json_end(&j);
    } else if (on) {
        printf("%s is read-only: no new block goes to it and its blocks take no new files "
               "(kept across nameserver restarts)\n",
               id);
    } else {
        printf("%s is no longer read-only%s\n", id,
               r->server_readonly ? " by the operator (it still reports itself read-only)" : "");
    }
    protobuf_c_message_free_unpacked(m, NULL);
    return EXIT_OK;
}

/* ---- settings, set ---------------------------------------------------------------------- */

static int get_settings(struct admin_ctx *c, Imgstore__AdminSettingsResp **out)
{
    Imgstore__AdminSettings q = IMGSTORE__ADMIN_SETTINGS__INIT;
    ProtobufCMessage *m = NULL;
    int rc = admin_ns_call(c, FT_ADMIN_SETTINGS, &q.base,
                           &imgstore__admin_settings_resp__descriptor, &m);
    *out = (Imgstore__AdminSettingsResp *)m;
    return rc;
}

static const Imgstore__AdminSetting *setting_of(const Imgstore__AdminSettingsResp *r,
                                                const char *key)
{
    for (size_t i = 0; r && i < r->n_settings; i++)
        if (r->settings[i]->key && strcmp(r->settings[i]->key, key) == 0)
            return r->settings[i];
    return NULL;
}

/* Where a setting's value comes from. */
static const char *setting_source(const Imgstore__AdminSetting *s)
{
    if (s->persisted)
        return "set (ns.meta)";
    return s->value == s->default_value ? "default" : "command line";
}

/* One setting as member `key` of j (or, key NULL, its next element). */
static void setting_json(struct emit_json *j, const char *key, const Imgstore__AdminSetting *s)
{
    emit_json_obj(j, key);
    emit_json_str(j, "key", s->key);
    emit_json_u64(j, "value", s->value);
    emit_json_str(j, "unit", s->unit);
    emit_json_u64(j, "default", s->default_value);
    emit_json_u64(j, "min", s->min);
    emit_json_u64(j, "max", s->max);
    emit_json_bool(j, "persisted", s->persisted);
    emit_json_bool(j, "applied", s->applied);
    emit_json_str(j, "source", setting_source(s));
    emit_json_str(j, "help", s->help);
    emit_json_end(j);
}

static int settings_table(const Imgstore__AdminSettingsResp *r)
{
    static const char *const header[] = {"KEY", "VALUE", "UNIT", "DEFAULT", "RANGE", "SOURCE",
                                         "MEANING"};
    struct emit_table t;
    int unapplied = 0;
    emit_table_init(&t, sizeof(header) / sizeof(header[0]), header);
    for (size_t i = 0; i < r->n_settings; i++) {
        const Imgstore__AdminSetting *s = r->settings[i];
        emit_cell(&t, "%s%s", s->key, s->applied ? "" : " *");
        emit_cell(&t, "%" PRIu64, s->value);
        emit_text(&t, s->unit);
        emit_cell(&t, "%" PRIu64, s->default_value);
        emit_cell(&t, "%" PRIu64 "..%" PRIu64, s->min, s->max);
        emit_text(&t, setting_source(s));
        emit_text(&t, s->help);
        unapplied |= !s->applied;
    }
    if (emit_table_end(&t, stdout) != 0)
        return EXIT_FAIL;
    if (unapplied)
        printf("* stored and persisted, but not applied yet: nothing in the cluster uses it\n");
    return EXIT_OK;
}

int admin_cmd_settings(struct admin_ctx *c)
{
    int rc = admin_want_args(c, 0);
    if (rc)
        return rc;
    Imgstore__AdminSettingsResp *r = NULL;
    if ((rc = get_settings(c, &r)) != 0)
        return admin_fail(c, "settings", rc);
    int status = EXIT_OK;
    if (c->json) {
        struct emit_json j;
        emit_json_init(&j, stdout);
        emit_json_obj(&j, NULL);
        emit_json_arr(&j, "settings", EMIT_LINES);
        for (size_t i = 0; i < r->n_settings; i++)
            setting_json(&j, NULL, r->settings[i]);
        emit_json_end(&j);
        emit_json_end(&j);
    } else {
        status = settings_table(r);
    }
    protobuf_c_message_free_unpacked(&r->base, NULL);
    return status;
}

/* The ec setting's value for "off", "4+2", "6+3", "10+4": 0 or k*100+m. */
static int ec_value(const char *s, uint64_t *v)
{
    static const struct { const char *name; uint64_t v; } names[] = {
        {"off", 0}, {"4+2", 402}, {"6+3", 603}, {"10+4", 1004},
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(s, names[i].name) == 0) {
            *v = names[i].v;
            return 0;
        }
    return -1;
}

int admin_cmd_set(struct admin_ctx *c)
{
    int rc = admin_want_args(c, 2);
    if (rc)
        return rc;
    const char *key = c->argv[1];
    uint64_t v;
    if (strcmp(key, "ec") == 0 && ec_value(c->argv[2], &v) == 0)
        ; /* off, 4+2, 6+3, 10+4 */
    else if (admin_parse_u64(c->argv[2], &v) != 0)
        return admin_usage_error(strcmp(key, "ec") == 0
                                     ? "ec takes off, 4+2, 6+3 or 10+4, not "
                                     : "the value must be a whole number: ",
                                 c->argv[2]);
    Imgstore__AdminSettingsResp *before = NULL;
    if ((rc = get_settings(c, &before)) != 0)
        return admin_fail(c, "set", rc);
    const Imgstore__AdminSetting *old = setting_of(before, key);
    int status = EXIT_FAIL;
    if (!old) {
        fprintf(stderr, "%s: set: no setting %s (ds-admin settings lists them)\n", ADMIN_PROG, key);
        goto out;
    }
    if (v < old->min || v > old->max) {
        fprintf(stderr, "%s: set: %s must be %" PRIu64 "..%" PRIu64 " %s, not %" PRIu64 "\n",
                ADMIN_PROG, key, old->min, old->max, old->unit, v);
        goto out;
    }
    Imgstore__AdminSetSetting q = IMGSTORE__ADMIN_SET_SETTING__INIT;
    q.key = (char *)key;
    q.value = v;
    ProtobufCMessage *m = NULL;
    rc = admin_ns_call(c, FT_ADMIN_SET_SETTING, &q.base,
                       &imgstore__admin_set_setting_resp__descriptor, &m);
    const Imgstore__AdminSetSettingResp *r = (const Imgstore__AdminSetSettingResp *)m;
    if (rc == 0 && !r->setting)
        rc = IMGSTORE_EPROTO;
    if (rc != 0) {
        if (m)
            protobuf_c_message_free_unpacked(m, NULL);
        admin_fail(c, "set", rc);
        goto out;
    }
    if (c->json) {
        struct emit_json j;
        emit_json_init(&j, stdout);
        emit_json_obj(&j, NULL);
        emit_json_u64(&j, "previous", old->value);
        setting_json(&j, "setting", r->setting);
        emit_json_end(&j);
    } else {
        printf("%s = %" PRIu64 " %s (was %" PRIu64 "), kept in ns.meta%s\n", key,
               r->setting->value, r->setting->unit, old->value,
               r->setting->applied ? " and in force now"
                                   : "; not applied yet: nothing in the cluster uses it");
    }
    protobuf_c_message_free_unpacked(m, NULL);
    status = EXIT_OK;
out:
    protobuf_c_message_free_unpacked(&before->base, NULL);
    return status;
}
