/* Integration test: the command-line tools' contract. `imgstore` exits 0 on
 * success, 1 on failure with one line on stderr, 2 on usage errors, and takes
 * its nameserver from --ns or IMGSTORE_NS; `ds-admin` lists the servers and
 * judges the cluster's health. */
#include "proto/fname.h"
#include "tests/integ/cluster.h"
#include "tests/integ/fixture.h"
#include "tests/integ/json_check.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CLI_TIMEOUT_MS 30000
#define DEAD_NS "127.0.0.1:1" /* nothing listens on port 1 */


static void setup(void)
{
    fixture_start(&(struct cluster_opts){.ndataservers = 3, .replicas = 2});
}


/* Runs a tool with IMGSTORE_NS removed from the environment unless env_add
 * sets it, so the caller's shell cannot change the outcome. */
static int run(const struct cluster *c, const char *const argv[], const char *const env_add[],
               struct cluster_run *r)
{
    static const char *const del[] = {"IMGSTORE_NS", NULL};
    cr_assert_eq(cluster_run(c, argv, env_add, del, CLI_TIMEOUT_MS, r), 0);
    return r->exit_code;
}

static int lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* A failure: exit 1, nothing on stdout, exactly one line on stderr. */
static void assert_failure(const struct cluster *c, const char *const argv[], const char *what)
{
    struct cluster_run r;
    int code = run(c, argv, NULL, &r);
    cr_assert_eq(code, 1, "%s: exit %d, want 1 (stderr: %s)", what, code, r.err);
    cr_assert_eq(r.out_len, 0, "%s: wrote %zu bytes to stdout", what, r.out_len);
    cr_assert_eq(lines(r.err), 1, "%s: want one line on stderr, got:\n%s", what, r.err);
    cluster_run_free(&r);
}

static void assert_usage(const struct cluster *c, const char *const argv[], const char *what)
{
    struct cluster_run r;
    int code = run(c, argv, NULL, &r);
    cr_assert_eq(code, 2, "%s: exit %d, want 2 (stderr: %s)", what, code, r.err);
    cr_assert_gt(r.err_len, 0, "%s: no usage message on stderr", what);
    cluster_run_free(&r);
}

/* Usage errors need no cluster: only the binaries. */
Test(cli, usage_errors, .timeout = 60)
{
    struct cluster c = {0};
    snprintf(c.bin, sizeof(c.bin), "%s", cluster_bin_dir());
    const char *none[] = {"imgstore", NULL};
    const char *unknown[] = {"imgstore", "--ns", DEAD_NS, "frobnicate", NULL};
    const char *put[] = {"imgstore", "--ns", DEAD_NS, "put", NULL};
    const char *get[] = {"imgstore", "--ns", DEAD_NS, "get", NULL};
    const char *rm[] = {"imgstore", "--ns", DEAD_NS, "rm", NULL};
    const char *badopt[] = {"imgstore", "--no-such-option", "get", "x", NULL};
    assert_usage(&c, none, "imgstore with no command");
    assert_usage(&c, unknown, "imgstore frobnicate");
    assert_usage(&c, put, "imgstore put without files");
    assert_usage(&c, get, "imgstore get without a name");
    assert_usage(&c, rm, "imgstore rm without a name");
    assert_usage(&c, badopt, "imgstore --no-such-option");

    const char *admin_none[] = {"ds-admin", NULL};
    const char *admin_unknown[] = {"ds-admin", "--ns", DEAD_NS, "frobnicate", NULL};
    struct cluster_run r;
    cr_assert_neq(run(&c, admin_none, NULL, &r), 0, "ds-admin with no command exited 0");
    cluster_run_free(&r);
    cr_assert_neq(run(&c, admin_unknown, NULL, &r), 0, "ds-admin frobnicate exited 0");
    cluster_run_free(&r);

    /* No server: a clear failure in bounded time, not a hang. */
    const char *dead[] = {"imgstore", "--ns", DEAD_NS, "get", "1AAAAAAAAAAAAAAAAAAAA", NULL};
    int64_t t0 = cluster_now_ms();
    cr_assert_eq(run(&c, dead, NULL, &r), 1, "get with no nameserver exited %d", r.exit_code);
    cluster_run_free(&r);
    fprintf(stderr, "[cli] get with no nameserver failed in %lld ms\n",
            (long long)(cluster_now_ms() - t0));
}

Test(cli, imgstore_commands, .init = setup, .fini = fixture_stop, .timeout = 120)
{
    cr_assert_not_null(C, "the cluster did not start (see above)");
    uint64_t seed = cluster_seed("cli");
    char ns_env[100], path[300], out[300];
    snprintf(ns_env, sizeof(ns_env), "IMGSTORE_NS=%s", C->ns.addr);
    snprintf(path, sizeof(path), "%s/in.png", C->dir);
    snprintf(out, sizeof(out), "%s/out.bin", C->dir);
    char buf[20000];
    cluster_fill(buf, sizeof(buf), seed, 1);
    cr_assert_eq(cluster_write_file(path, buf, sizeof(buf)), 0);

    /* put with IMGSTORE_NS instead of --ns */
    const char *const env[] = {ns_env, NULL};
    const char *put[] = {"imgstore", "put", path, NULL};
    struct cluster_run r;
    cr_assert_eq(run(C, put, env, &r), 0, "put with IMGSTORE_NS exited %d: %s", r.exit_code, r.err);
    char name[IMGSTORE_NAME_MAX] = "";
    cr_assert_eq(lines(r.out), 1, "put of one file printed:\n%s", r.out);
    sscanf(r.out, "%31s", name);
    struct fname f;
    cr_assert_eq(fname_decode(name, strlen(name), &f, NULL, NULL), 0, "not a name: '%s'", name);
    cluster_run_free(&r);

    /* get to stdout, with IMGSTORE_NS */
    const char *get[] = {"imgstore", "get", name, NULL};
    cr_assert_eq(run(C, get, env, &r), 0, "get with IMGSTORE_NS exited %d: %s", r.exit_code, r.err);
    cr_assert(r.out_len == sizeof(buf) && memcmp(r.out, buf, sizeof(buf)) == 0,
              "get to stdout returned %zu bytes, want %zu identical", r.out_len, sizeof(buf));
    cluster_run_free(&r);

    /* --ns wins over a wrong IMGSTORE_NS */
    const char *const bad_env[] = {"IMGSTORE_NS=" DEAD_NS, NULL};
    const char *get_o[] = {"imgstore", "--ns", C->ns.addr, "get", name, "-o", out, NULL};
    cr_assert_eq(run(C, get_o, bad_env, &r), 0, "--ns did not override IMGSTORE_NS: %s", r.err);
    cluster_run_free(&r);
    fixture_file_holds(out, buf, sizeof(buf), "get -o wrote other bytes");

    /* The name with an extension is the same file. */
    char with_ext[IMGSTORE_NAME_MAX + 8];
    snprintf(with_ext, sizeof(with_ext), "%s.png", name);
    const char *get_ext[] = {"imgstore", "--ns", C->ns.addr, "get", with_ext, NULL};
    cr_assert_eq(run(C, get_ext, NULL, &r), 0, "get %s exited %d: %s", with_ext, r.exit_code,
                 r.err);
    cr_assert_eq(r.out_len, sizeof(buf));
    cluster_run_free(&r);

    /* Well-formed but unknown: an unknown block, and a wrong cookie. */
    char unknown[FNAME_LEN + 1], wrong_cookie[FNAME_LEN + 1];
    struct fname u = {.block_id = FNAME_MAX_BLOCK_ID - 12345, .seq = 1, .cookie = 0x12345678};
    cr_assert_eq(fname_encode(&u, unknown), 0);
    struct fname w = f;
    w.cookie ^= 0x5a5a5a5a;
    cr_assert_eq(fname_encode(&w, wrong_cookie), 0);
    const char *get_unknown[] = {"imgstore", "--ns", C->ns.addr, "get", unknown, NULL};
    const char *get_cookie[] = {"imgstore", "--ns", C->ns.addr, "get", wrong_cookie, NULL};
    const char *rm_unknown[] = {"imgstore", "--ns", C->ns.addr, "rm", wrong_cookie, NULL};
    const char *stat_unknown[] = {"imgstore", "--ns", C->ns.addr, "stat", unknown, NULL};
    assert_failure(C, get_unknown, "get of an unknown block");
    assert_failure(C, get_cookie, "get with a wrong cookie");
    assert_failure(C, rm_unknown, "rm with a wrong cookie");
    assert_failure(C, stat_unknown, "stat of an unknown block");

    /* Malformed names. */
    char bad_check[FNAME_LEN + 1];
    strcpy(bad_check, name);
    bad_check[FNAME_LEN - 1] = bad_check[FNAME_LEN - 1] == 'A' ? 'B' : 'A';
    const char *get_short[] = {"imgstore", "--ns", C->ns.addr, "get", "hello", NULL};
    const char *get_check[] = {"imgstore", "--ns", C->ns.addr, "get", bad_check, NULL};
    const char *get_slash[] = {"imgstore", "--ns", C->ns.addr, "get", "../../etc/passwd", NULL};
    assert_failure(C, get_short, "get of 'hello'");
    assert_failure(C, get_check, "get of a name with a wrong check byte");
    assert_failure(C, get_slash, "get of '../../etc/passwd'");

    /* put of a missing file fails without uploading anything. */
    const char *put_missing[] = {"imgstore", "--ns", C->ns.addr, "put", "/nonexistent/x.png",
                                 NULL};
    struct cluster_run rm;
    cr_assert_eq(run(C, put_missing, NULL, &rm), 1, "put of a missing file exited %d",
                 rm.exit_code);
    cr_assert_gt(rm.err_len, 0);
    cluster_run_free(&rm);

    /* stat prints key: value lines. */
    const char *stat[] = {"imgstore", "--ns", C->ns.addr, "stat", name, NULL};
    cr_assert_eq(run(C, stat, NULL, &r), 0, "stat exited %d: %s", r.exit_code, r.err);
    static const char *keys[] = {"name:", "size:", "block:", "seq:", "offset:", "mime:",
                                 "crc32c:", "created:", "replicas:", NULL};
    for (int k = 0; keys[k]; k++)
        cr_assert_not_null(strstr(r.out, keys[k]), "stat output lacks '%s':\n%s", keys[k], r.out);
    cluster_run_free(&r);

    /* rm, then the name is gone. */
    const char *rm_it[] = {"imgstore", "--ns", C->ns.addr, "rm", name, NULL};
    cr_assert_eq(run(C, rm_it, NULL, &r), 0, "rm exited %d: %s", r.exit_code, r.err);
    cluster_run_free(&r);
    const char *get_gone[] = {"imgstore", "--ns", C->ns.addr, "get", name, NULL};
    assert_failure(C, get_gone, "get of a removed file");
    C->passed = 1;
}

/* Returns the line of text containing needle (malloc'd), or NULL. */
static char *line_with(const char *text, const char *needle)
{
    const char *p = strstr(text, needle);
    if (!p)
        return NULL;
    const char *b = p, *e = p;
    while (b > text && b[-1] != '\n')
        b--;
    while (*e && *e != '\n')
        e++;
    return strndup(b, (size_t)(e - b));
}

Test(cli, ds_admin, .init = setup, .fini = fixture_stop, .timeout = 120)
{
    cr_assert_not_null(C, "the cluster did not start (see above)");
    struct cluster_run r;
    const char *servers[] = {"ds-admin", "--ns", C->ns.addr, "servers", NULL};
    cr_assert_eq(run(C, servers, NULL, &r), 0, "ds-admin servers exited %d: %s", r.exit_code,
                 r.err);
    for (int i = 0; i < C->nds; i++) {
        char *l = line_with(r.out, C->ds[i].addr);
        cr_assert_not_null(l, "ds-admin servers does not list %s:\n%s", C->ds[i].addr, r.out);
        cr_assert_not_null(strstr(l, "up"), "ds-admin servers: %s is not up: %s", C->ds[i].addr, l);
        free(l);
    }
    cluster_run_free(&r);

    const char *status[] = {"ds-admin", "--ns", C->ns.addr, "status", NULL};
    cr_assert_eq(run(C, status, NULL, &r), 0, "ds-admin status on a healthy cluster exited %d:\n%s%s",
                 r.exit_code, r.out, r.err);
    cr_assert_gt(r.out_len, 0, "ds-admin status printed nothing");
    cluster_run_free(&r);

    const char *json[] = {"ds-admin", "--ns", C->ns.addr, "--json", "status", NULL};
    cr_assert_eq(run(C, json, NULL, &r), 0, "ds-admin --json status exited %d: %s", r.exit_code,
                 r.err);
    char verdict[32];
    json_at_str(r.out, "verdict", verdict, sizeof(verdict)); /* one object, a verdict */
    cr_assert(strcmp(verdict, "healthy") == 0 || strcmp(verdict, "degraded") == 0 ||
                  strcmp(verdict, "at risk") == 0,
              "verdict '%s' in:\n%s", verdict, r.out);
    cluster_run_free(&r);

    const char *json_servers[] = {"ds-admin", "--ns", C->ns.addr, "--json", "servers", NULL};
    cr_assert_eq(run(C, json_servers, NULL, &r), 0, "ds-admin --json servers exited %d: %s",
                 r.exit_code, r.err);
    for (int i = 0; i < C->nds; i++)
        cr_assert_not_null(strstr(r.out, C->ds[i].addr), "--json servers lacks %s:\n%s",
                           C->ds[i].addr, r.out);
    cluster_run_free(&r);

    /* IMGSTORE_NS works for ds-admin too. */
    char ns_env[100];
    snprintf(ns_env, sizeof(ns_env), "IMGSTORE_NS=%s", C->ns.addr);
    const char *const env[] = {ns_env, NULL};
    const char *status_env[] = {"ds-admin", "status", NULL};
    cr_assert_eq(run(C, status_env, env, &r), 0, "ds-admin status with IMGSTORE_NS exited %d: %s",
                 r.exit_code, r.err);
    cluster_run_free(&r);

    /* No nameserver: a failure, not a hang and not "healthy". */
    const char *dead[] = {"ds-admin", "--ns", DEAD_NS, "status", NULL};
    cr_assert_eq(run(C, dead, NULL, &r), 1, "ds-admin status with no nameserver exited %d",
                 r.exit_code);
    cluster_run_free(&r);
    C->passed = 1;
}
