/* Integration test: the servers as system services (docs/operations.md,
 * "Signals, readiness and logs").
 *
 *  - SIGHUP: the nameserver with --log-file opens its file again after the
 *    file was moved away (rotation) and logs it there; both servers re-read
 *    their keys file and log it at INFO; a keys file broken at the time is
 *    logged and the keys in force stay; the processes live and serve on.
 *  - sd_notify: with NOTIFY_SOCKET set (a datagram socket of the test, as
 *    systemd gives), the nameserver sends READY=1 once listening, each
 *    dataserver READY=1 once serving, and STOPPING=1 at a SIGTERM.
 *  - journald: when JOURNAL_STREAM names stderr, each line starts with its
 *    syslog priority ("<4>WARN", "<3>ERROR") instead of a time stamp;
 *    otherwise with the time stamp.
 *  - --advertise / --advertise-http: a nameserver bound to 0.0.0.0, then a
 *    dataserver bound to 0.0.0.0, each advertising 127.0.0.1 on the same
 *    ports: the cluster comes back, the dataserver is listed by its
 *    advertised address, and uploads, reads and HTTP GETs through it work;
 *    a wildcard --listen without --advertise is refused.
 *  - SIGHUP re-reads a dataserver's --upload-token-file: the new token
 *    uploads, the old one no longer does; a broken file at the SIGHUP is
 *    logged and the token in force stays.
 *  - Routine periodic lines (`scrub: cycle done`, every ~100 ms on a small
 *    store) are DEBUG: absent at the default level, present with
 *    IMGSTORE_LOG=debug; an idle dataserver or nameserver at INFO writes
 *    almost nothing. */
#include "tests/integ/cluster.h"
#include "tests/integ/fixture.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define WAIT_MS 10000
#define SAMPLE 3000

extern char **environ;

TestSuite(service, .fini = fixture_stop, .timeout = 120);

/* Waits until the file at path contains `what`; returns 1, or 0 after
 * timeout_ms. */
static int file_has(const char *path, const char *what, int timeout_ms)
{
    int64_t end = cluster_now_ms() + timeout_ms;
    do {
        void *buf = NULL;
        size_t len = 0;
        if (cluster_read_file(path, &buf, &len) == 0) {
            int found = memmem(buf, len, what, strlen(what)) != NULL;
            free(buf);
            if (found)
                return 1;
        }
        usleep(50 * 1000);
    } while (cluster_now_ms() < end);
    return 0;
}

/* A put and a get of the same bytes through a new handle. */
static void put_get(const char *when)
{
    char name[IMGSTORE_NAME_MAX];
    cr_assert_eq(cluster_put_sample(C, SAMPLE, name), 0, "%s: put failed", when);
    imgstore_t *h = cluster_client(C);
    cr_assert_not_null(h);
    void *data = NULL;
    size_t len = 0;
    int rc = imgstore_get(h, name, &data, &len);
    imgstore_close(h);
    cr_assert_eq(rc, 0, "%s: get %s: %s", when, name, imgstore_strerror(rc));
    cr_assert_eq(len, SAMPLE, "%s: get %s: %zu bytes", when, name, len);
    imgstore_free(data);
}

Test(service, sighup_reopens_and_reloads)
{
    char logdir[] = "/tmp/imgstore-hup-XXXXXX";
    cr_assert_not_null(mkdtemp(logdir));
    char nslog[64], moved[80];
    snprintf(nslog, sizeof(nslog), "%s/ns.log", logdir);
    snprintf(moved, sizeof(moved), "%s/ns.log.1", logdir);
    const char *ns_args[] = {"--log-file", nslog, NULL};
    int rc = fixture_start(&(struct cluster_opts){.ndataservers = 2, .replicas = 2,
                                                  .ns_args = ns_args});
    if (rc != 0)
        rmdir(logdir);
    cr_assert_eq(rc, 0, "the cluster did not start");
    cr_assert(file_has(nslog, "listening on", WAIT_MS), "the nameserver does not log to %s", nslog);

    /* Rotation: the file moved away, then SIGHUP. */
    cr_assert_eq(rename(nslog, moved), 0);
    cr_assert_eq(kill(C->ns.pid, SIGHUP), 0);
    int reopened = file_has(nslog, "SIGHUP: log file reopened", WAIT_MS);
    int keys = file_has(nslog, "SIGHUP: keys file", WAIT_MS);
    int old_quiet = !file_has(moved, "SIGHUP", 0);
    unlink(nslog);
    unlink(moved);
    rmdir(logdir);
    cr_assert(reopened, "no 'log file reopened' line in the new log file");
    cr_assert(keys, "the nameserver did not log re-reading its keys file on SIGHUP");
    cr_assert(old_quiet, "the SIGHUP lines went to the moved file");
    cr_assert(cluster_alive(&C->ns), "the nameserver died of SIGHUP");

    /* A dataserver logging to stderr: nothing to reopen, keys re-read. */
    cr_assert_eq(kill(C->ds[0].pid, SIGHUP), 0);
    cr_assert(file_has(C->ds[0].log, "SIGHUP: no log file to reopen", WAIT_MS),
              "the dataserver did not log the SIGHUP");
    cr_assert(file_has(C->ds[0].log, "SIGHUP: keys file", WAIT_MS),
              "the dataserver did not log re-reading its keys file");
    cr_assert(cluster_alive(&C->ds[0]), "the dataserver died of SIGHUP");
    put_get("after SIGHUP");

    /* A broken keys file at the SIGHUP: logged, the keys in force stay. */
    void *keys_text = NULL;
    size_t keys_len = 0;
    cr_assert_eq(cluster_read_file(C->keys, &keys_text, &keys_len), 0);
    static const char broken[] = "this is no keys file\n";
    cr_assert_eq(cluster_write_file(C->keys, broken, sizeof(broken) - 1), 0);
    chmod(C->keys, 0600);
    kill(C->ds[1].pid, SIGHUP);
    int logged = file_has(C->ds[1].log, "ERROR ds: SIGHUP: key file", WAIT_MS);
    int alive = cluster_alive(&C->ds[1]);
    cr_assert_eq(cluster_write_file(C->keys, keys_text, keys_len), 0);
    chmod(C->keys, 0600);
    free(keys_text);
    cr_assert(logged, "a broken keys file at SIGHUP was not logged as kept");
    cr_assert(alive, "the dataserver died of SIGHUP with a broken keys file");
    put_get("after SIGHUP with a broken keys file");
    C->passed = 1;
}

/* Collects the datagrams sent to `fd` for up to timeout_ms, or until one
 * contains `until`, appending them to buf ("|"-separated). Returns 1 when
 * `until` arrived. */
static int notify_wait(int fd, char *buf, size_t cap, const char *until, int timeout_ms)
{
    int64_t end = cluster_now_ms() + timeout_ms;
    while (cluster_now_ms() < end) {
        char msg[512];
        ssize_t n = recv(fd, msg, sizeof(msg) - 1, MSG_DONTWAIT);
        if (n < 0) {
            usleep(20 * 1000);
            continue;
        }
        msg[n] = '\0';
        size_t used = strlen(buf);
        snprintf(buf + used, cap - used, "%s|", msg);
        if (strstr(msg, until))
            return 1;
    }
    return 0;
}

Test(service, sd_notify_ready_and_stopping)
{
    char sock[] = "/tmp/imgstore-notify-XXXXXX";
    int tmpfd = mkstemp(sock);
    cr_assert_geq(tmpfd, 0);
    close(tmpfd);
    unlink(sock);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "bind %s: %s", sock,
                 strerror(errno));
    setenv("NOTIFY_SOCKET", sock, 1);
    int rc = fixture_start(&(struct cluster_opts){.ndataservers = 2, .replicas = 2});
    unsetenv("NOTIFY_SOCKET");
    if (rc != 0) {
        close(fd);
        unlink(sock);
    }
    cr_assert_eq(rc, 0, "the cluster did not start");

    char got[4096] = "";
    char want_ns[128], want_ds1[128], want_ds2[128];
    snprintf(want_ns, sizeof(want_ns), "READY=1\nSTATUS=serving on %s", C->ns.addr);
    snprintf(want_ds1, sizeof(want_ds1), "READY=1\nSTATUS=serving native %s", C->ds[0].addr);
    snprintf(want_ds2, sizeof(want_ds2), "READY=1\nSTATUS=serving native %s", C->ds[1].addr);
    int64_t end = cluster_now_ms() + WAIT_MS;
    while ((!strstr(got, want_ns) || !strstr(got, want_ds1) || !strstr(got, want_ds2)) &&
           cluster_now_ms() < end)
        notify_wait(fd, got, sizeof(got), "READY=1", 200);
    int ready_ns = strstr(got, want_ns) != NULL;
    int ready_ds = strstr(got, want_ds1) && strstr(got, want_ds2);
    int stopping = 0;
    if (ready_ns && ready_ds) {
        cluster_signal_proc(&C->ds[1], SIGTERM);
        stopping = notify_wait(fd, got, sizeof(got), "STOPPING=1", WAIT_MS);
    }
    close(fd);
    unlink(sock);
    cr_assert(ready_ns, "no READY=1 from the nameserver; got: %s", got);
    cr_assert(ready_ds, "no READY=1 from both dataservers; got: %s", got);
    cr_assert(stopping, "no STOPPING=1 at a dataserver's SIGTERM; got: %s", got);
    C->passed = 1;
}

/* Runs a nameserver that cannot start (its data folder is a file) with
 * stderr to `path`, JOURNAL_STREAM set to `journal` (NULL: unset). Returns
 * its exit code. */
static int run_failing_ns(const char *dir, const char *path, const char *journal_of)
{
    char data[512], bin[600];
    snprintf(data, sizeof(data), "%s/not-a-folder", dir);
    cr_assert_eq(cluster_write_file(data, "x", 1), 0);
    snprintf(bin, sizeof(bin), "%s/nameserver", cluster_bin_dir());
    int out = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    cr_assert_geq(out, 0);
    char jenv[96] = "JOURNAL_STREAM=";
    if (journal_of) {
        struct stat st;
        cr_assert_eq(stat(journal_of, &st), 0);
        snprintf(jenv, sizeof(jenv), "JOURNAL_STREAM=%llu:%llu", (unsigned long long)st.st_dev,
                 (unsigned long long)st.st_ino);
    }
    /* A sanitizer build's reports go where `make asan` sends them, not to
     * the stderr under test. */
    char asan[512], ubsan[512];
    char *envp[5] = {jenv, "IMGSTORE_LOG=info", NULL};
    int ne = 2;
    if (getenv("ASAN_OPTIONS")) {
        snprintf(asan, sizeof(asan), "ASAN_OPTIONS=%s", getenv("ASAN_OPTIONS"));
        envp[ne++] = asan;
    }
    if (getenv("UBSAN_OPTIONS")) {
        snprintf(ubsan, sizeof(ubsan), "UBSAN_OPTIONS=%s", getenv("UBSAN_OPTIONS"));
        envp[ne++] = ubsan;
    }
    char *argv[] = {"nameserver", "--listen", "127.0.0.1:0", "--data", data, "--insecure", NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, out, STDERR_FILENO);
    posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
    pid_t pid;
    int rc = posix_spawn(&pid, bin, &fa, NULL, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    close(out);
    cr_assert_eq(rc, 0, "spawn %s: %s", bin, strerror(rc));
    int status = 0;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

Test(service, journald_priorities)
{
    char dir[] = "/tmp/imgstore-journal-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char logp[600], plainp[600];
    snprintf(logp, sizeof(logp), "%s/journal.txt", dir);
    snprintf(plainp, sizeof(plainp), "%s/plain.txt", dir);
    /* The file exists before the run, so its device and inode are known:
     * the same file as stderr, as systemd's stream socket would be. */
    cr_assert_eq(cluster_write_file(logp, "", 0), 0);
    int rc_j = run_failing_ns(dir, logp, logp);
    int rc_p = run_failing_ns(dir, plainp, logp /* another file's id: no journal */);
    void *j = NULL, *p = NULL;
    size_t jl = 0, pl = 0;
    cluster_read_file(logp, &j, &jl);
    cluster_read_file(plainp, &p, &pl);
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    (void)!system(cmd);
    cr_assert_eq(rc_j, 1, "a nameserver that cannot start exits 1, not %d", rc_j);
    cr_assert_eq(rc_p, 1);
    cr_assert_not_null(j);
    cr_assert_not_null(p);
    /* Under the journal: every line "<N>LEVEL ns: ...", with the
     * priorities of its level. */
    int lines = 0, warn = 0, err = 0;
    for (char *line = strtok(j, "\n"); line; line = strtok(NULL, "\n")) {
        lines++;
        cr_assert(line[0] == '<' && line[2] == '>', "not a journal line: %s", line);
        if (strncmp(line, "<4>WARN  ns: ", 13) == 0)
            warn++;
        else if (strncmp(line, "<3>ERROR ns: ", 13) == 0)
            err++;
    }
    cr_assert_gt(lines, 0);
    cr_assert_gt(warn, 0, "no '<4>WARN' line (--insecure warns)");
    cr_assert_gt(err, 0, "no '<3>ERROR' line (the data folder is a file)");
    /* JOURNAL_STREAM naming another file: time stamps, no priorities. */
    cr_assert(((char *)p)[0] == '2' && strstr(p, "Z WARN  ns: ") && !strstr(p, "<4>"),
              "without the journal, lines start with the time: %s", (char *)p);
    free(j);
    free(p);
}

Test(service, advertise_other_than_listen)
{
    cr_assert_eq(fixture_start(&(struct cluster_opts){.ndataservers = 2, .replicas = 2}), 0);
    /* The nameserver again, bound to every address on its port. */
    static char ns_any[40]; /* C->opts keeps pointers past this function */
    snprintf(ns_any, sizeof(ns_any), "0.0.0.0:%s", strrchr(C->ns.addr, ':') + 1);
    static const char *ns_args[5];
    ns_args[0] = "--listen", ns_args[1] = ns_any, ns_args[2] = "--advertise";
    ns_args[3] = C->ns.addr, ns_args[4] = NULL;
    cluster_signal_proc(&C->ns, SIGTERM);
    C->opts.ns_args = ns_args;
    cr_assert_eq(cluster_start_ns(C), 0);
    cr_assert(file_has(C->ns.log, "(listening on 0.0.0.0:", WAIT_MS),
              "the nameserver did not log its advertised and bound addresses");
    cr_assert_eq(cluster_wait_ready(C, 2, 20000), 0, "no cluster behind a 0.0.0.0 nameserver");
    /* ds1 again, bound to every address on its ports, advertising the
     * loopback ones the cluster knows. */
    struct cluster_proc *p = &C->ds[0];
    const char *port = strrchr(p->addr, ':') + 1, *hport = strrchr(p->http_addr, ':') + 1;
    char any[40], any_http[40];
    snprintf(any, sizeof(any), "0.0.0.0:%s", port);
    snprintf(any_http, sizeof(any_http), "0.0.0.0:%s", hport);
    const char *args[] = {"--listen", any, "--advertise", p->addr,
                          "--http", any_http, "--advertise-http", p->http_addr, NULL};
    cluster_signal_proc(p, SIGTERM);
    p->args = args;
    cr_assert_eq(cluster_start_ds(C, 0), 0);
    cr_assert(file_has(p->log, "bound to native 0.0.0.0:", WAIT_MS), "no 'bound to' line");
    /* Down first (the old process), then up again under its address. */
    Imgstore__ClusterStatusResp *st = NULL;
    int up = 0;
    int64_t end = cluster_now_ms() + 20000;
    while (!up && cluster_now_ms() < end) {
        if (cluster_status(C, &st) == 0) {
            for (size_t i = 0; i < st->n_servers; i++)
                if (strcmp(st->servers[i]->addr, p->addr) == 0 &&
                    strcmp(st->servers[i]->state, "up") == 0)
                    up = 1;
            imgstore_admin_free_status(st);
        }
        if (!up)
            usleep(100 * 1000);
    }
    cr_assert(up, "the dataserver is not listed up under its advertised address %s", p->addr);
    cr_assert_eq(cluster_wait_ready(C, 2, 20000), 0);
    /* Both replicas of every block: this put goes through ds1. */
    char name[IMGSTORE_NAME_MAX];
    cr_assert_eq(cluster_put_sample(C, SAMPLE, name), 0, "put through the rebound server");
    imgstore_t *h = cluster_client(C);
    void *data = NULL;
    size_t len = 0;
    int rc = imgstore_get_from(h, name, p->addr, &data, &len);
    imgstore_close(h);
    cr_assert_eq(rc, 0, "get from %s: %s", p->addr, imgstore_strerror(rc));
    cr_assert_eq(len, SAMPLE);
    imgstore_free(data);
    char path[64];
    snprintf(path, sizeof(path), "/%s", name);
    char *body = cluster_http_body(p->http_addr, path);
    cr_assert_not_null(body, "HTTP GET %s from %s failed", path, p->http_addr);
    free(body);

    /* A wildcard --listen without --advertise is refused. */
    struct cluster_run r;
    const char *bad[] = {"dataserver", "--ns", C->ns.addr, "--listen", any, "--http",
                         "127.0.0.1:1", "--data", "/nonexistent", "--insecure", NULL};
    cr_assert_eq(cluster_run(C, bad, NULL, NULL, 10000, &r), 0);
    cr_assert_eq(r.exit_code, 2, "exit %d: %s", r.exit_code, r.err);
    cr_assert_not_null(strstr(r.err, "--advertise"), "%s", r.err);
    cluster_run_free(&r);
    C->passed = 1;
}

/* POST of a small PNG to addr with "Authorization: Bearer token"; returns
 * the status code, or -1 when no answer came. */
static int post_with_token(const char *addr, const char *token)
{
    static const char png[] = "\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR token reload";
    int fd = cluster_connect(addr, WAIT_MS);
    if (fd < 0)
        return -1;
    char head[512];
    snprintf(head, sizeof(head),
             "POST / HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\nContent-Type: "
             "image/png\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
             token, sizeof(png));
    char out[2048];
    size_t got = 0;
    ssize_t r;
    int status = -1;
    if (cluster_send_all(fd, head, strlen(head)) == 0 &&
        cluster_send_all(fd, png, sizeof(png)) == 0) {
        while (got + 1 < sizeof(out) && (r = read(fd, out + got, sizeof(out) - 1 - got)) > 0)
            got += (size_t)r;
        out[got] = '\0';
        if (sscanf(out, "HTTP/1.1 %d", &status) != 1)
            status = -1;
    }
    close(fd);
    return status;
}

/* The number of times `what` (not empty) occurs in the file at path from
 * byte `from` on. */
static int count_in(const char *path, size_t from, const char *what)
{
    void *buf = NULL;
    size_t len = 0;
    cr_assert_eq(cluster_read_file(path, &buf, &len), 0, "cannot read %s", path);
    int n = 0;
    for (const char *p = (char *)buf + (from < len ? from : len);
         (p = memmem(p, len - (size_t)(p - (char *)buf), what, strlen(what))); p++)
        n++;
    free(buf);
    return n;
}

/* The size of the file at path (0 when unreadable). */
static size_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (size_t)st.st_size : 0;
}

#define OLD_TOKEN "old-upload-token-7f3a"
#define NEW_TOKEN "new-upload-token-c91e"

Test(service, sighup_rereads_upload_token)
{
    static char tok[64]; /* C->opts keeps pointers past this function */
    snprintf(tok, sizeof(tok), "/tmp/imgstore-hup-token-%d", (int)getpid());
    cr_assert_eq(cluster_write_file(tok, OLD_TOKEN "\n", strlen(OLD_TOKEN) + 1), 0);
    cr_assert_eq(chmod(tok, 0600), 0);
    static const char *ds_args[] = {"--upload-token-file", tok, NULL};
    int rc = fixture_start(&(struct cluster_opts){.ndataservers = 2, .replicas = 2,
                                                  .ds_args = ds_args});
    if (rc != 0)
        unlink(tok);
    cr_assert_eq(rc, 0, "the cluster did not start");
    const char *a = C->ds[0].http_addr;
    int old_before = post_with_token(a, OLD_TOKEN), new_before = post_with_token(a, NEW_TOKEN);

    /* The file replaced (as an operator rotates it), then SIGHUP. */
    int wrote = cluster_write_file(tok, NEW_TOKEN "\n", strlen(NEW_TOKEN) + 1) == 0 &&
                chmod(tok, 0600) == 0;
    kill(C->ds[0].pid, SIGHUP);
    int logged = file_has(C->ds[0].log, "SIGHUP: upload token file", WAIT_MS);
    int old_after = post_with_token(a, OLD_TOKEN), new_after = post_with_token(a, NEW_TOKEN);

    /* A broken file at the SIGHUP: logged, the new token stays in force. */
    int broke = cluster_write_file(tok, "\n", 1) == 0 && chmod(tok, 0600) == 0;
    kill(C->ds[0].pid, SIGHUP);
    int kept_logged = file_has(C->ds[0].log, "(the token in force stays)", WAIT_MS);
    int alive = cluster_alive(&C->ds[0]);
    int new_kept = post_with_token(a, NEW_TOKEN);
    unlink(tok);
    cr_assert(wrote && broke, "cannot write %s", tok);
    cr_assert_eq(old_before, 201, "the first token did not upload: %d", old_before);
    cr_assert_eq(new_before, 401, "a token not yet in the file uploaded: %d", new_before);
    cr_assert(logged, "the dataserver did not log re-reading its upload token file");
    cr_assert_eq(new_after, 201, "the token read at SIGHUP does not upload: %d", new_after);
    cr_assert_eq(old_after, 401, "the replaced token still uploads: %d", old_after);
    cr_assert(kept_logged, "a broken token file at SIGHUP was not logged as kept");
    cr_assert(alive, "the dataserver died of SIGHUP with a broken token file");
    cr_assert_eq(new_kept, 201, "the token in force was lost to a broken file: %d", new_kept);
    C->passed = 1;
}

#define QUIET_MS 3000
#define IDLE_INFO_LINES_MAX 3 /* lines an idle dataserver may write at INFO in QUIET_MS */

Test(service, routine_lines_at_debug)
{
    /* The servers inherit the level: none set means the default (INFO). */
    char *saved = getenv("IMGSTORE_LOG") ? strdup(getenv("IMGSTORE_LOG")) : NULL;
    unsetenv("IMGSTORE_LOG");
    int rc = fixture_start(&(struct cluster_opts){.ndataservers = 2, .replicas = 2});
    cr_assert_eq(rc, 0, "the cluster did not start");
    /* Files to scrub, so that a cycle has something to report. */
    char name[IMGSTORE_NAME_MAX];
    for (int i = 0; i < 5; i++)
        cr_assert_eq(cluster_put_sample(C, SAMPLE, name), 0);
    usleep(500 * 1000);
    size_t mark = file_size(C->ds[0].log), ns_mark = file_size(C->ns.log);
    usleep(QUIET_MS * 1000);
    int info_cycles = count_in(C->ds[0].log, mark, "scrub: cycle done");
    int info_lines = count_in(C->ds[0].log, mark, "\n");
    int ns_lines = count_in(C->ns.log, ns_mark, "\n");

    /* The same server at DEBUG: the cycles are there, many of them. */
    setenv("IMGSTORE_LOG", "debug", 1);
    cluster_signal_proc(&C->ds[0], SIGTERM);
    rc = cluster_start_ds(C, 0);
    if (saved) {
        setenv("IMGSTORE_LOG", saved, 1);
        free(saved);
    } else {
        unsetenv("IMGSTORE_LOG");
    }
    cr_assert_eq(rc, 0, "ds1 did not start again");
    mark = file_size(C->ds[0].log);
    usleep(QUIET_MS * 1000);
    int debug_cycles = count_in(C->ds[0].log, mark, "scrub: cycle done");
    cr_assert_eq(info_cycles, 0, "'scrub: cycle done' logged %d times at INFO", info_cycles);
    cr_assert_leq(info_lines, IDLE_INFO_LINES_MAX, "an idle dataserver wrote %d lines at INFO in %d ms",
                  info_lines, QUIET_MS);
    cr_assert_leq(ns_lines, IDLE_INFO_LINES_MAX, "an idle nameserver wrote %d lines at INFO in %d ms",
                  ns_lines, QUIET_MS);
    cr_assert_geq(debug_cycles, 2, "'scrub: cycle done' logged %d times in %d ms at DEBUG",
                  debug_cycles, QUIET_MS);
    C->passed = 1;
}
