/* Integration test of ds-admin's operator commands (issue 5) against a real
 * cluster, each in table and --json form (the JSON parsed whole with
 * jansson, values read by path: json_check.h):
 *   - settings / set: validated, in force, persisted across a nameserver
 *     restart; a setting nothing uses yet says so;
 *   - readonly SERVER on|off: persisted across the restart, shown by
 *     servers, and no new file lands on the read-only server;
 *   - tasks, cancel, verify, --help and the usage/failure exit codes;
 *   - drain SERVER --wait on a non-terminal: plain progress lines, exit 0,
 *     and the server ends holding no block with every file still readable. */
#include "tests/integ/cluster.h"
#include "tests/integ/fixture.h"
#include "tests/integ/json_check.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CLI_TIMEOUT_MS 30000
#define DRAIN_TIMEOUT_MS 120000
#define BLOCK_SIZE (1u << 20)
#define NFILES 40
#define FILE_SIZE (60u << 10)
#define PUT_ATTEMPTS 10
#define HB_WAIT_MS 2500 /* a heartbeat (1 s) carries new block sizes */
#define SERVER_ID_MAX 80


static void setup(void)
{
    cr_assert_eq(fixture_start(&(struct cluster_opts){.ndataservers = 3, .replicas = 2,
                                                      .block_size = BLOCK_SIZE}),
                 0);
}


/* ---- helpers: running ds-admin, minimal JSON ------------------------------------ */

/* ds-admin against the test cluster: its exit code, *r filled. */
#define admin_t(r, timeout_ms, ...) cluster_admin(C, timeout_ms, r, __VA_ARGS__, NULL)
#define admin(r, ...) admin_t(r, CLI_TIMEOUT_MS, __VA_ARGS__)

/* The id of the n-th server (by id) of servers --json. */
static void server_id(int n, char *out, size_t len)
{
    struct cluster_run r;
    fixture_admin_json(&r, CLI_TIMEOUT_MS, "servers", NULL);
    char path[32];
    snprintf(path, sizeof(path), "[%d].id", n);
    json_at_str(r.out, path, out, len);
    cluster_run_free(&r);
}

static void put_files(uint64_t seed, char names[][IMGSTORE_NAME_MAX], int first, int n)
{
    imgstore_t *h = cluster_client(C); /* fresh: no writable block cached from before */
    cr_assert_not_null(h);
    for (int i = first; i < first + n; i++)
        cr_assert_eq(cluster_put_file(h, seed, (uint64_t)i, FILE_SIZE, names[i], PUT_ATTEMPTS),
                     0);
    imgstore_close(h);
}

/* Number of blocks `id` holds (blocks --server ID --json). */
static double blocks_on(const char *id)
{
    struct cluster_run r;
    fixture_admin_json(&r, CLI_TIMEOUT_MS, "blocks", "--server", id, NULL);
    double n = json_at_num(r.out, "matched");
    cluster_run_free(&r);
    return n;
}

/* ---- settings, readonly, tasks, cancel ------------------------------------------- */

static void check_help(const char *cmd)
{
    struct cluster_run r;
    cr_assert_eq(admin(&r, cmd, "--help", NULL, NULL, NULL), 0, "%s --help: %s", cmd, r.err);
    cr_assert_not_null(strstr(r.out, "usage: ds-admin"), "%s --help: %s", cmd, r.out);
    cr_assert_not_null(strstr(r.out, cmd), "%s", r.out);
    cluster_run_free(&r);
}

/* The usage errors and failures of the new commands. */
static void check_exit_codes(void)
{
    static const char *const cases[][4] = {
        /* args, expected exit code as text */
        {"set", "task_cap", "many", "2"},      {"set", "task_cap", NULL, "2"},
        {"set", "no_such_key", "1", "1"},      {"set", "task_cap", "0", "1"},
        {"set", "copy_rate", "100001", "1"},   {"readonly", "no-such-server", "on", "1"},
        {"readonly", "x", "maybe", "2"},       {"cancel", "987654", NULL, "1"},
        {"cancel", "abc", NULL, "2"},          {"drain", "no-such-server", NULL, "1"},
        {"drain", NULL, NULL, "2"},            {"tasks", "--bogus", NULL, "2"},
        {"settings", "extra", NULL, "2"},
        {"set", "ec", "5+1", "2"},             {"set", "ec", "500", "1"},
        {"set", "ec", "2000", "1"},            {"set", "ec_min_age_h", "87601", "1"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct cluster_run r;
        int want = atoi(cases[i][3]);
        int got = admin(&r, cases[i][0], cases[i][1], cases[i][2], NULL, NULL);
        cr_assert_eq(got, want, "ds-admin %s %s %s: exit %d, want %d\n%s", cases[i][0],
                     cases[i][1] ? cases[i][1] : "", cases[i][2] ? cases[i][2] : "", got, want,
                     r.err);
        cr_assert_gt(r.err_len, 0, "no message on stderr for %s", cases[i][0]);
        cluster_run_free(&r);
    }
}

Test(admin, settings_readonly_tasks, .init = setup, .fini = fixture_stop, .timeout = 240)
{
    static const char *const cmds[] = {"tasks",    "cancel",   "drain", "readonly",
                                       "settings", "set",      "verify"};
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
        check_help(cmds[i]);
    check_exit_codes();
    struct cluster_run r;

    /* settings: table and JSON, defaults */
    cr_assert_eq(admin(&r, "settings", NULL, NULL, NULL, NULL), 0, "%s", r.err);
    cr_assert_not_null(strstr(r.out, "KEY"), "%s", r.out);
    cr_assert_not_null(strstr(r.out, "copy_rate"), "%s", r.out);
    cr_assert_not_null(strstr(r.out, "MB/s"), "%s", r.out);
    cluster_run_free(&r);
    fixture_admin_json(&r, CLI_TIMEOUT_MS, "settings", NULL);
    cr_assert_eq(json_at_num(r.out, "settings[key=task_cap].value"), 2, "%s", r.out);
    cr_assert_eq(json_at_num(r.out, "settings[key=copy_rate].value"), 50, "%s", r.out);
    cluster_run_free(&r);

    /* set: in force at once (LIST_TASKS reports the planner's caps) */
    cr_assert_eq(admin(&r, "set", "task_cap", "4", NULL, NULL), 0, "%s", r.err);
    cr_assert_not_null(strstr(r.out, "task_cap = 4"), "%s", r.out);
    cluster_run_free(&r);
    fixture_admin_json(&r, CLI_TIMEOUT_MS, "set", "copy_rate", "120", NULL);
    cr_assert_eq(json_at_num(r.out, "previous"), 50, "%s", r.out);
    cr_assert_eq(json_at_num(r.out, "setting.value"), 120, "%s", r.out);
    cluster_run_free(&r);
    cr_assert_eq(admin(&r, "set", "scrub_rate", "20", NULL, NULL), 0, "%s", r.err);
    cluster_run_free(&r);
    /* ec: off by default, a scheme by name or number */
    fixture_admin_json(&r, CLI_TIMEOUT_MS, "settings", NULL);
    cr_assert_eq(json_at_num(r.out, "settings[key=ec].value"), 0, "%s", r.out);
    cr_assert_eq(json_at_num(r.out, "settings[key=ec_min_age_h].value"), 0, "%s", r.out);
    cluster_run_free(&r);
    cr_assert_eq(admin(&r, "set", "ec", "6+3", NULL, NULL), 0, "%s", r.err);
    cr_assert_not_null(strstr(r.out, "ec = 603"), "%s", r.out);
    cluster_run_free(&r);
    cr_assert_eq(admin(&r, "set", "ec", "off", NULL, NULL), 0, "%s", r.err);
    cluster_run_free(&r);
    cr_assert_eq(admin(&r, "set", "ec", "4+2", NULL, NULL), 0, "%s", r.err);
    cluster_run_free(&r);
    fixture_admin_json(&r, CLI_TIMEOUT_MS, "tasks", NULL);
    cr_assert_eq(json_at_num(r.out, "task_cap"), 4, "%s", r.out);
    cr_assert_eq(json_at_num(r.out, "copy_rate_bytes_per_s"), 120e6, "%s", r.out);
    cluster_run_free(&r);

    /* readonly: one server */
    char ro[SERVER_ID_MAX];
    server_id(0, ro, sizeof(ro));
    cr_assert_eq(admin(&r, "readonly", ro, "on", NULL, NULL), 0, "%s", r.err);
    cluster_run_free(&r);

    /* a nameserver restart keeps settings and the read-only mark */
    cr_assert_geq(cluster_signal_proc(&C->ns, SIGTERM), 0);
    cr_assert_eq(cluster_start_ns(C), 0);
    cr_assert_eq(cluster_wait_ready(C, 3, CLUSTER_READY_MS), 0);
    fixture_admin_json(&r, CLI_TIMEOUT_MS, "settings", NULL);
    cr_assert_eq(json_at_num(r.out, "settings[key=task_cap].value"), 4, "%s", r.out);
    cr_assert_eq(json_at_num(r.out, "settings[key=copy_rate].value"), 120, "%s", r.out);
    cr_assert_eq(json_at_num(r.out, "settings[key=scrub_rate].value"), 20, "%s", r.out);
    cr_assert_eq(json_at_num(r.out, "settings[key=ec].value"), 402, "%s", r.out);
    cr_assert_eq(json_at_bool(r.out, "settings[key=task_cap].persisted"), 1, "%s", r.out);
    cluster_run_free(&r);
    cr_assert_eq(admin(&r, "settings", NULL, NULL, NULL, NULL), 0, "%s", r.err);
    cr_assert_not_null(strstr(r.out, "set (ns.meta)"), "%s", r.out);
    cluster_run_free(&r);
    fixture_admin_json(&r, CLI_TIMEOUT_MS, "servers", NULL);
    char path[SERVER_ID_MAX + 32], state[32];
    snprintf(path, sizeof(path), "[id=%s].state", ro);
    json_at_str(r.out, path, state, sizeof(state));
    cr_assert_str_eq(state, "read-only", "%s", r.out);
    snprintf(path, sizeof(path), "[id=%s].readonly", ro);
    cr_assert_eq(json_at_bool(r.out, path), 1, "%s", r.out);
    cluster_run_free(&r);
    cr_assert_eq(admin(&r, "servers", NULL, NULL, NULL, NULL), 0, "%s", r.err);
    cr_assert_not_null(strstr(r.out, "read-only"), "%s", r.out);
    cluster_run_free(&r);

    /* no new file lands on the read-only server */
    uint64_t seed = cluster_seed("admin_readonly");
    char names[NFILES][IMGSTORE_NAME_MAX];
    put_files(seed, names, 0, NFILES / 2);
    for (int i = 0; i < NFILES / 2; i++) {
        fixture_admin_json(&r, CLI_TIMEOUT_MS, "file", names[i], NULL);
        snprintf(path, sizeof(path), "replicas[server=%s]", ro);
        cr_assert_gt(json_at_len(r.out, "replicas"), 0, "%s", r.out);
        json_t *on_ro = json_at(r.out, path);
        cr_assert_null(on_ro, "file %s went to read-only %s: %s", names[i], ro, r.out);
        cluster_run_free(&r);
    }

    /* off again: shown up, and JSON form */
    fixture_admin_json(&r, CLI_TIMEOUT_MS, "readonly", ro, "off", NULL);
    cr_assert_eq(json_at_bool(r.out, "readonly"), 0, "%s", r.out);
    cluster_run_free(&r);
    cr_assert_eq(admin(&r, "--json", "servers", NULL, NULL, NULL), 0, "%s", r.err);
    snprintf(path, sizeof(path), "[id=%s].state", ro);
    json_at_str(r.out, path, state, sizeof(state));
    cr_assert_str_eq(state, "up", "%s", r.out);
    cluster_run_free(&r);

    /* tasks: the table (no task or a header) */
    cr_assert_eq(admin(&r, "tasks", NULL, NULL, NULL, NULL), 0, "%s", r.err);
    cr_assert_not_null(strstr(r.out, "4 tasks per server"), "%s", r.out);
    cluster_run_free(&r);
    C->passed = 1;
}

/* ---- drain --wait ------------------------------------------------------------------ */

Test(admin, drain_wait, .init = setup, .fini = fixture_stop, .timeout = 240)
{
    uint64_t seed = cluster_seed("admin_drain");
    char names[NFILES][IMGSTORE_NAME_MAX];
    put_files(seed, names, 0, NFILES);
    usleep(HB_WAIT_MS * 1000);
    char victim[SERVER_ID_MAX];
    int n = 0;
    do
        server_id(n++, victim, sizeof(victim));
    while (blocks_on(victim) < 1 && n < 3);
    cr_assert_geq(blocks_on(victim), 1, "no server holds a block");

    struct cluster_run r;
    int rc = admin_t(&r, DRAIN_TIMEOUT_MS, "drain", victim, "--wait", NULL, NULL);
    cr_assert_eq(rc, 0, "drain --wait: exit %d\n%s\n%s", rc, r.out, r.err);
    cr_assert_null(strchr(r.out, '\r'), "progress bar on a non-terminal: %s", r.out);
    cr_assert_not_null(strstr(r.out, "% moved"), "no progress line: %s", r.out);
    cr_assert_not_null(strstr(r.out, "done"), "%s", r.out);
    cluster_run_free(&r);
    cr_assert_eq(blocks_on(victim), 0);

    /* every file still reads back */
    imgstore_t *h = cluster_client(C);
    for (int i = 0; i < NFILES; i++)
        cr_assert_eq(cluster_check_file(h, names[i], NULL, seed, (uint64_t)i, FILE_SIZE), 0);
    imgstore_close(h);

    /* verify: every up server, table and JSON; an unknown block fails */
    cr_assert_eq(admin(&r, "verify", NULL, NULL, NULL, NULL), 0, "%s%s", r.out, r.err);
    cr_assert_not_null(strstr(r.out, "BAD RECORDS"), "%s", r.out);
    cr_assert_not_null(strstr(r.out, "intact"), "%s", r.out);
    cluster_run_free(&r);
    fixture_admin_json(&r, CLI_TIMEOUT_MS, "verify", "--wait", NULL);
    cr_assert_eq(json_at_bool(r.out, "ok"), 1, "%s", r.out);
    double records = 0; /* summed over the servers (the drained one holds none) */
    int nservers = json_at_len(r.out, "servers");
    cr_assert_gt(nservers, 0, "%s", r.out);
    for (int i = 0; i < nservers; i++) {
        char path[32];
        snprintf(path, sizeof(path), "servers[%d].records", i);
        records += json_at_num(r.out, path);
    }
    cr_assert_geq(records, NFILES, "%s", r.out);
    cluster_run_free(&r);
    cr_assert_eq(admin(&r, "verify", "987654321", NULL, NULL, NULL), 1, "%s", r.err);
    cluster_run_free(&r);

    /* the tasks of the drain, table and JSON; the server shows draining */
    cr_assert_eq(admin(&r, "tasks", "--all", NULL, NULL, NULL), 0, "%s", r.err);
    cr_assert_not_null(strstr(r.out, "SOURCE->TARGET"), "%s", r.out);
    cr_assert_not_null(strstr(r.out, "drain"), "%s", r.out);
    cr_assert_not_null(strstr(r.out, "100%"), "%s", r.out);
    cluster_run_free(&r);
    fixture_admin_json(&r, CLI_TIMEOUT_MS, "tasks", NULL);
    json_t *done = json_at(r.out, "tasks[state=done]");
    cr_assert_not_null(done, "no task done: %s", r.out);
    json_decref(done);
    cluster_run_free(&r);
    cr_assert_eq(admin(&r, "servers", NULL, NULL, NULL, NULL), 0, "%s", r.err);
    cr_assert_not_null(strstr(r.out, "draining"), "%s", r.out);
    cluster_run_free(&r);

    /* --wait --json on the empty server: one document; then cancel */
    fixture_admin_json(&r, CLI_TIMEOUT_MS, "drain", victim, "--wait", NULL);
    cr_assert_eq(json_at_num(r.out, "blocks_left"), 0, "%s", r.out);
    cluster_run_free(&r);
    fixture_admin_json(&r, CLI_TIMEOUT_MS, "drain", victim, "--cancel", NULL);
    cr_assert_eq(json_at_bool(r.out, "draining"), 0, "%s", r.out);
    cluster_run_free(&r);
    cr_assert_eq(admin(&r, "drain", victim, "--wait", "--cancel", NULL), 2);
    cluster_run_free(&r);
    C->passed = 1;
}
