/* cluster.c - starts, restarts and stops a throw-away imgstore cluster on
 * loopback for the integration tests, and runs the command-line tools with
 * their output captured. See cluster.h for the contract. */
#include "tests/integ/cluster.h"

#include "base/fsutil.h"
#include "net/conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define POLL_MS 100       /* status polling interval */
#define LOG_TAIL_LINES 40 /* lines of each log shown on failure */
#define LOG_TAIL_BYTES (64 * 1024)
#define MAX_ARGS 32

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("[cluster] ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int64_t cluster_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* ---- ports and folders ---------------------------------------------------- */

/* The kernel's range of ephemeral ports (the local ports of outgoing
 * connections), 32768-60999 unless the machine says otherwise. */
static void ephemeral_range(int *lo, int *hi)
{
    *lo = 32768;
    *hi = 60999;
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    if (f) {
        int a, b;
        if (fscanf(f, "%d %d", &a, &b) == 2 && a > 0 && b >= a && b < 65536)
            *lo = a, *hi = b;
        fclose(f);
    }
}

/* Binds a loopback TCP socket to `port` (0: the kernel picks one). Returns
 * the fd with the port in *got, or a negative errno. */
static int bind_port(int port, int *got)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                             .sin_port = htons((uint16_t)port)};
    socklen_t sl = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &sl) < 0) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    *got = ntohs(sa.sin_port);
    return fd;
}

/* Picks n distinct free loopback ports: all sockets stay bound until every
 * port is chosen, so the same one is never handed out twice. The ports are
 * taken outside the ephemeral range: a server restarted by a test (or the
 * chaos suite) binds its port again, and a port of that range may meanwhile
 * be the local end of some outgoing connection ("address already in use";
 * seen in the chaos suite on a fresh machine). Only when no port is left
 * outside the range does the kernel pick one. */
static int pick_ports(int *ports, int n)
{
    static unsigned seed;
    if (!seed)
        seed = (unsigned)getpid() * 2654435761u ^ (unsigned)time(NULL);
    int fds[3 * CLUSTER_MAX_DS + 2];
    int rc = 0, i, lo, hi;
    ephemeral_range(&lo, &hi);
    int below = lo > 10000 ? lo - 10000 : 0, above = 65535 - hi;
    for (i = 0; i < n; i++) {
        fds[i] = -EADDRINUSE;
        for (int t = 0; t < 200 && fds[i] < 0 && below + above > 0; t++) {
            int k = (int)(rand_r(&seed) % (unsigned)(below + above));
            int port = k < below ? 10000 + k : hi + 1 + (k - below);
            fds[i] = bind_port(port, &ports[i]);
        }
        if (fds[i] < 0)
            fds[i] = bind_port(0, &ports[i]);
        if (fds[i] < 0) {
            rc = fds[i];
            break;
        }
    }
    while (i-- > 0)
        close(fds[i]);
    if (rc)
        say("cannot pick a free port: %s", strerror(-rc));
    return rc;
}

static int make_dir(const char *path)
{
    if (mkdir(path, 0755) < 0 && errno != EEXIST) {
        int rc = -errno;
        say("mkdir %s: %s", path, strerror(errno));
        return rc;
    }
    return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    if (remove(path) < 0)
        say("remove %s: %s", path, strerror(errno));
    return 0;
}

static void rm_rf(const char *dir)
{
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- processes -------------------------------------------------------------- */

/* Child side of a fork: die with the parent, clean signal state, the given
 * stdio, no other inherited descriptors, then exec. Only async-signal-safe
 * calls here: the test process may be multi-threaded. */
static void child_exec(pid_t parent, int in, int out, int err, const char *path, char *const argv[],
                       char *const envp[])
{
    sigset_t none;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(127);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)
        _exit(127);
    close_range(3, ~0u, 0);
    execve(path, argv, envp);
    dprintf(2, "exec %s: %s\n", path, strerror(errno));
    _exit(127);
}

static void describe_status(const char *name, pid_t pid, int st)
{
    if (WIFEXITED(st))
        say("%s (pid %d) exited with code %d", name, (int)pid, WEXITSTATUS(st));
    else if (WIFSIGNALED(st))
        say("%s (pid %d) killed by signal %d (%s)%s", name, (int)pid, WTERMSIG(st),
            strsignal(WTERMSIG(st)), WCOREDUMP(st) ? ", core dumped" : "");
}

/* Starts one server with its output appended to p->log. */
static int spawn_server(struct cluster *c, struct cluster_proc *p, char *const argv[])
{
    char path[700];
    snprintf(path, sizeof(path), "%s/%s", c->bin, argv[0]);
    if (access(path, X_OK) < 0) {
        int rc = -errno;
        say("%s: %s (build it first, or set IMGSTORE_BIN)", path, strerror(errno));
        return rc;
    }
    int log = open(p->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (log < 0 || nul < 0) {
        int rc = -errno;
        say("open %s: %s", p->log, strerror(errno));
        if (log >= 0)
            close(log);
        if (nul >= 0)
            close(nul);
        return rc;
    }
    dprintf(log, "==== [cluster] starting:");
    for (int i = 0; argv[i]; i++)
        dprintf(log, " %s", argv[i]);
    dprintf(log, "\n");
    fflush(stderr);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0)
        child_exec(parent, nul, log, log, path, argv, environ);
    int rc = pid < 0 ? -errno : 0;
    close(log);
    close(nul);
    if (rc) {
        say("fork: %s", strerror(-rc));
        return rc;
    }
    p->pid = pid;
    return 0;
}

int cluster_spawn(struct cluster *c, struct cluster_proc *p, const char *const argv[])
{
    return spawn_server(c, p, (char *const *)argv);
}

int cluster_start_ns(struct cluster *c)
{
    char rep[16], bs[32], hb[32], sm[32];
    char *argv[MAX_ARGS];
    int n = 0;
    /* ns.addr may have changed since the cluster started (the chaos suite
     * moves the cluster onto veth addresses): the callers' list follows. */
    snprintf(c->ns_list, sizeof(c->ns_list), "%s%s%s", c->opts.ns_before ? c->opts.ns_before : "",
             c->opts.ns_before ? "," : "", c->ns.addr);
    argv[n++] = "nameserver";
    argv[n++] = "--listen";
    argv[n++] = c->ns.addr;
    argv[n++] = "--data";
    argv[n++] = c->ns.data;
    snprintf(rep, sizeof(rep), "%d", c->opts.replicas);
    argv[n++] = "--replicas";
    argv[n++] = rep;
    if (c->opts.block_size) {
        snprintf(bs, sizeof(bs), "%llu", (unsigned long long)c->opts.block_size);
        argv[n++] = "--block-size";
        argv[n++] = bs;
    }
    if (c->opts.heartbeat_timeout_ms) {
        snprintf(hb, sizeof(hb), "%d", c->opts.heartbeat_timeout_ms);
        argv[n++] = "--heartbeat-timeout-ms";
        argv[n++] = hb;
    }
    if (c->opts.safe_mode_timeout_ms) {
        snprintf(sm, sizeof(sm), "%d", c->opts.safe_mode_timeout_ms);
        argv[n++] = "--safe-mode-timeout-ms";
        argv[n++] = sm;
    }
    if (c->opts.ns_http) {
        int port;
        if (!c->ns.http_addr[0]) {
            int rc = pick_ports(&port, 1);
            if (rc)
                return rc;
            snprintf(c->ns.http_addr, sizeof(c->ns.http_addr), "127.0.0.1:%d", port);
        }
        argv[n++] = "--http";
        argv[n++] = c->ns.http_addr;
    }
    for (int k = 0; c->opts.ns_args && c->opts.ns_args[k] && n < MAX_ARGS - 1; k++)
        argv[n++] = (char *)c->opts.ns_args[k];
    if (c->opts.insecure) {
        argv[n++] = "--insecure";
    } else {
        argv[n++] = "--keys";
        argv[n++] = c->keys;
    }
    argv[n] = NULL;
    if (c->ns.pid)
        cluster_signal_proc(&c->ns, SIGKILL);
    return spawn_server(c, &c->ns, argv);
}

int cluster_start_ds(struct cluster *c, int i)
{
    if (i < 0 || i >= c->nds)
        return -EINVAL;
    struct cluster_proc *p = &c->ds[i];
    char *argv[MAX_ARGS] = {"dataserver", "--ns",   c->ns_list, "--listen", p->addr,
                            "--http",     p->http_addr, "--data", p->data, NULL};
    int n = 9;
    char member[32];
    if (c->opts.insecure) {
        argv[n++] = "--insecure";
    } else {
        snprintf(member, sizeof(member), "member%d", i + 1);
        argv[n++] = "--keys";
        argv[n++] = c->keys;
        argv[n++] = "--member-key";
        argv[n++] = member;
    }
    if (c->opts.https) {
        argv[n++] = "--https";
        argv[n++] = p->https_addr;
    }
    for (int k = 0; c->opts.ds_args && c->opts.ds_args[k] && n < MAX_ARGS - 1; k++)
        argv[n++] = (char *)c->opts.ds_args[k];
    for (int k = 0; p->args && p->args[k] && n < MAX_ARGS - 1; k++)
        argv[n++] = (char *)p->args[k];
    argv[n] = NULL;
    if (p->pid)
        cluster_signal_proc(p, SIGKILL);
    return spawn_server(c, p, argv);
}

int cluster_add_ds(struct cluster *c)
{
    if (c->nds >= CLUSTER_MAX_DS)
        return -ENOSPC;
    int ports[3], rc = pick_ports(ports, 3);
    if (rc)
        return rc;
    int i = c->nds;
    struct cluster_proc *p = &c->ds[i];
    char sub[300], disk[320], log[sizeof(p->log)];
    memset(p, 0, sizeof(*p));
    snprintf(p->name, sizeof(p->name), "ds%d", i + 1);
    snprintf(p->addr, sizeof(p->addr), "127.0.0.1:%d", ports[0]);
    snprintf(p->http_addr, sizeof(p->http_addr), "127.0.0.1:%d", ports[1]);
    if (c->opts.https)
        snprintf(p->https_addr, sizeof(p->https_addr), "127.0.0.1:%d", ports[2]);
    snprintf(log, sizeof(log), "%s/log/%s.log", c->dir, p->name);
    memcpy(p->log, log, sizeof(log));
    snprintf(sub, sizeof(sub), "%s/%s", c->dir, p->name);
    snprintf(disk, sizeof(disk), "%s/d0", sub);
    if ((rc = make_dir(sub)) || (rc = make_dir(disk)))
        return rc;
    snprintf(p->data, sizeof(p->data), "%s", disk);
    c->nds++;
    return cluster_start_ds(c, i);
}

int cluster_alive(struct cluster_proc *p)
{
    int st;
    if (p->pid <= 0)
        return 0;
    pid_t r = waitpid(p->pid, &st, WNOHANG);
    if (r == 0)
        return 1;
    if (r == p->pid)
        describe_status(p->name, p->pid, st);
    p->pid = 0;
    return 0;
}

/* Waits for pid until deadline (monotonic ms). Returns the status or -1. */
static int reap_until(pid_t pid, int64_t deadline)
{
    int st;
    for (;;) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return st;
        if (r < 0 && errno != EINTR)
            return -1;
        if (cluster_now_ms() >= deadline)
            return -1;
        sleep_ms(10);
    }
}

int cluster_signal_proc(struct cluster_proc *p, int sig)
{
    int st = -1;
    if (p->pid <= 0)
        return -1;
    if (kill(p->pid, sig) < 0 && errno == ESRCH) {
        waitpid(p->pid, &st, 0);
        p->pid = 0;
        return st;
    }
    if (sig != SIGKILL && sig != SIGTERM)
        return 0;
    st = reap_until(p->pid, cluster_now_ms() + (sig == SIGTERM ? CLUSTER_STOP_MS : 10000));
    if (st == -1) {
        say("%s (pid %d) did not stop in %d ms after %s; killing it", p->name, (int)p->pid,
            CLUSTER_STOP_MS, strsignal(sig));
        kill(p->pid, SIGKILL);
        waitpid(p->pid, &st, 0);
    }
    p->pid = 0;
    return st;
}

/* ---- status ------------------------------------------------------------------ */

int cluster_put_sample(const struct cluster *c, size_t len, char name[IMGSTORE_NAME_MAX])
{
    imgstore_t *h = cluster_client(c);
    char *data = malloc(len ? len : 1);
    int rc = h && data ? 0 : -ENOMEM;
    if (rc == 0) {
        cluster_fill(data, len, 7, len);
        rc = imgstore_put(h, data, len, "image/jpeg", name);
    }
    free(data);
    if (h)
        imgstore_close(h);
    return rc;
}

imgstore_t *cluster_client(const struct cluster *c)
{
    imgstore_t *h = NULL;
    if (imgstore_open(c->ns_list, NULL, &h) != 0)
        return NULL;
    return h;
}

int cluster_status(const struct cluster *c, Imgstore__ClusterStatusResp **out)
{
    struct imgstore_opts o = {.timeout_ms = 2000, .io_timeout_ms = 1000};
    imgstore_t *h = NULL;
    int rc = imgstore_open(c->ns_list, &o, &h);
    if (rc == 0)
        rc = imgstore_admin_cluster_status(h, out);
    imgstore_close(h);
    return rc;
}

static int count_state(const Imgstore__ClusterStatusResp *st, const char *state)
{
    int n = 0;
    for (size_t i = 0; i < st->n_servers; i++)
        if (st->servers[i]->state && strcmp(st->servers[i]->state, state) == 0)
            n++;
    return n;
}

static void print_status(const Imgstore__ClusterStatusResp *st)
{
    say("status: safe_mode=%d replicas=%u blocks total=%llu writable=%llu", st->safe_mode,
        st->replicas, (unsigned long long)st->blocks_total,
        (unsigned long long)st->blocks_writable);
    for (size_t i = 0; i < st->n_servers; i++)
        say("  server %s addr=%s http=%s state=%s blocks=%u", st->servers[i]->server_id,
            st->servers[i]->addr, st->servers[i]->http_addr, st->servers[i]->state,
            st->servers[i]->blocks);
}

/* Returns 0 when every running server is alive, -ECHILD after reporting the
 * first one that died. */
static int check_procs(struct cluster *c)
{
    if (c->ns.pid && !cluster_alive(&c->ns))
        return -ECHILD;
    for (int i = 0; i < c->nds; i++)
        if (c->ds[i].pid && !cluster_alive(&c->ds[i]))
            return -ECHILD;
    return 0;
}

/* Polls the status until want(st, nup) holds. */
static int wait_for(struct cluster *c, int (*want)(const struct cluster *, const Imgstore__ClusterStatusResp *, int),
                    int n, int timeout_ms, const char *what)
{
    int64_t deadline = cluster_now_ms() + timeout_ms;
    int last_rc = 0;
    Imgstore__ClusterStatusResp *last = NULL;
    for (;;) {
        if (check_procs(c) < 0) {
            say("a server died while waiting for %s", what);
            break;
        }
        Imgstore__ClusterStatusResp *st = NULL;
        last_rc = cluster_status(c, &st);
        if (last_rc == 0) {
            int ok = want(c, st, n);
            imgstore_admin_free_status(last);
            last = st;
            if (ok) {
                imgstore_admin_free_status(last);
                return 0;
            }
        }
        if (cluster_now_ms() >= deadline) {
            say("timed out after %d ms waiting for %s", timeout_ms, what);
            break;
        }
        sleep_ms(POLL_MS);
    }
    if (last)
        print_status(last);
    else
        say("no cluster status ever received (last error %d: %s)", last_rc,
            imgstore_strerror(last_rc));
    imgstore_admin_free_status(last);
    cluster_dump_logs(c, LOG_TAIL_LINES);
    return -ETIMEDOUT;
}

static int is_ready(const struct cluster *c, const Imgstore__ClusterStatusResp *st, int nup)
{
    (void)c;
    return count_state(st, "up") >= nup && st->blocks_writable >= 1;
}

static int is_down(const struct cluster *c, const Imgstore__ClusterStatusResp *st, int ndown)
{
    return count_state(st, "up") <= c->nds - ndown;
}

int cluster_wait_ready(struct cluster *c, int nup, int timeout_ms)
{
    char what[64];
    snprintf(what, sizeof(what), "%d servers up and a writable block", nup);
    return wait_for(c, is_ready, nup, timeout_ms, what);
}

int cluster_wait_down(struct cluster *c, int ndown, int timeout_ms)
{
    char what[64];
    snprintf(what, sizeof(what), "%d servers reported down", ndown);
    return wait_for(c, is_down, ndown, timeout_ms, what);
}

/* ---- logs ---------------------------------------------------------------------- */

static void dump_log(const char *name, const char *path, int lines)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    off_t size = lseek(fd, 0, SEEK_END);
    off_t from = size > LOG_TAIL_BYTES ? size - LOG_TAIL_BYTES : 0;
    char *buf = malloc(LOG_TAIL_BYTES + 1);
    ssize_t n = buf ? pread(fd, buf, (size_t)(size - from), from) : -1;
    close(fd);
    if (n < 0) {
        free(buf);
        return;
    }
    buf[n] = '\0';
    const char *p = buf + n;
    int seen = 0;
    while (p > buf) {
        if (p[-1] == '\n' && p != buf + n && ++seen > lines)
            break;
        p--;
    }
    fprintf(stderr, "----- last %d lines of %s (%s) -----\n%s%s", lines, name, path, p,
            (n > 0 && buf[n - 1] != '\n') ? "\n" : "");
    free(buf);
}

void cluster_dump_logs(const struct cluster *c, int lines)
{
    dump_log(c->ns.name, c->ns.log, lines);
    for (int i = 0; i < c->nds; i++)
        dump_log(c->ds[i].name, c->ds[i].log, lines);
    fprintf(stderr, "----- end of logs -----\n");
}

/* ---- start and stop -------------------------------------------------------------- */

static int layout(struct cluster *c)
{
    int ports[3 * CLUSTER_MAX_DS + 1];
    char sub[300];
    int rc = pick_ports(ports, 1 + 3 * c->nds);
    if (rc)
        return rc;
    snprintf(sub, sizeof(sub), "%s/log", c->dir);
    if ((rc = make_dir(sub)))
        return rc;
    snprintf(c->ns.name, sizeof(c->ns.name), "ns");
    snprintf(c->ns.addr, sizeof(c->ns.addr), "127.0.0.1:%d", ports[0]);
    snprintf(c->ns.data, sizeof(c->ns.data), "%s/ns", c->dir);
    snprintf(c->ns.log, sizeof(c->ns.log), "%s/log/ns.log", c->dir);
    snprintf(c->ns_list, sizeof(c->ns_list), "%s%s%s", c->opts.ns_before ? c->opts.ns_before : "",
             c->opts.ns_before ? "," : "", c->ns.addr);
    if ((rc = make_dir(c->ns.data)))
        return rc;
    for (int i = 0; i < c->nds; i++) {
        struct cluster_proc *p = &c->ds[i];
        /* The log path is built in a local first: formatting one member of
         * c->ds[i] from other members of *c trips gcc's -Wrestrict at -O1
         * with sanitizers (a false positive). */
        char log[sizeof(p->log)];
        snprintf(p->name, sizeof(p->name), "ds%d", i + 1);
        snprintf(p->addr, sizeof(p->addr), "127.0.0.1:%d", ports[1 + 3 * i]);
        snprintf(p->http_addr, sizeof(p->http_addr), "127.0.0.1:%d", ports[2 + 3 * i]);
        if (c->opts.https)
            snprintf(p->https_addr, sizeof(p->https_addr), "127.0.0.1:%d", ports[3 + 3 * i]);
        snprintf(log, sizeof(log), "%s/log/%s.log", c->dir, p->name);
        memcpy(p->log, log, sizeof(log));
        snprintf(sub, sizeof(sub), "%s/%s", c->dir, p->name);
        if ((rc = make_dir(sub)))
            return rc;
        p->data[0] = '\0';
        for (int d = 0; d < c->opts.disks_per_ds; d++) {
            char disk[320];
            size_t used = strlen(p->data);
            snprintf(disk, sizeof(disk), "%s/d%d", sub, d);
            if ((rc = make_dir(disk)))
                return rc;
            snprintf(p->data + used, sizeof(p->data) - used, "%s%s", d ? "," : "", disk);
        }
    }
    return 0;
}

static int cluster_start_once(const struct cluster_opts *opts, struct cluster **out)
{
    struct cluster *c = calloc(1, sizeof(*c));
    int rc;
    *out = NULL;
    if (!c)
        return -ENOMEM;
    if (opts)
        c->opts = *opts;
    if (c->opts.ndataservers <= 0)
        c->opts.ndataservers = 3;
    if (c->opts.ndataservers > CLUSTER_MAX_DS)
        c->opts.ndataservers = CLUSTER_MAX_DS;
    if (c->opts.replicas <= 0)
        c->opts.replicas = 2;
    if (c->opts.disks_per_ds <= 0)
        c->opts.disks_per_ds = 1;
    c->nds = c->opts.ndataservers;
    snprintf(c->bin, sizeof(c->bin), "%s", cluster_bin_dir());
    snprintf(c->dir, sizeof(c->dir), "/tmp/imgstore-test-XXXXXX");
    if (!mkdtemp(c->dir)) {
        rc = -errno;
        say("mkdtemp: %s", strerror(errno));
        free(c);
        return rc;
    }
    if (c->opts.insecure)
        unsetenv("IMGSTORE_KEY_FILE");
    else if ((rc = cluster_write_keys(c)))
        goto err;
    if ((rc = layout(c)) || (rc = cluster_start_ns(c)))
        goto err;
    for (int i = 0; i < c->nds; i++)
        if ((rc = cluster_start_ds(c, i)))
            goto err;
    if ((rc = cluster_wait_ready(c, c->nds, CLUSTER_READY_MS)))
        goto err;
    say("cluster ready in %s: ns %s, %d dataservers, replicas %d", c->dir, c->ns.addr, c->nds,
        c->opts.replicas);
    *out = c;
    return 0;
err:
    c->passed = 1; /* the failure was already reported */
    cluster_stop(c);
    return rc;
}

/* Free ports are found by binding port 0 and closing the socket, so another
 * process on the machine may take one before our server binds it ("address
 * already in use"): a failed start is tried again, in a new folder with new
 * ports, up to CLUSTER_START_ATTEMPTS times. */
int cluster_start(const struct cluster_opts *opts, struct cluster **out)
{
    int rc = 0;
    for (int attempt = 1; attempt <= CLUSTER_START_ATTEMPTS; attempt++) {
        if ((rc = cluster_start_once(opts, out)) == 0)
            return 0;
        if (attempt < CLUSTER_START_ATTEMPTS)
            say("cluster start failed (%d); trying again with new ports", rc);
    }
    return rc;
}

void cluster_stop(struct cluster *c)
{
    if (!c)
        return;
    if (!c->passed) {
        say("test did not pass; server logs follow (folder %s)", c->dir);
        cluster_dump_logs(c, LOG_TAIL_LINES);
    }
    struct cluster_proc *all[CLUSTER_MAX_DS + 1];
    int n = 0;
    for (int i = 0; i < c->nds; i++)
        all[n++] = &c->ds[i];
    all[n++] = &c->ns;
    for (int i = 0; i < n; i++)
        if (all[i]->pid > 0)
            kill(all[i]->pid, SIGTERM);
    int64_t deadline = cluster_now_ms() + CLUSTER_STOP_MS;
    for (int i = 0; i < n; i++) {
        struct cluster_proc *p = all[i];
        if (p->pid <= 0)
            continue;
        int st = reap_until(p->pid, deadline);
        if (st == -1) {
            say("%s (pid %d) ignored SIGTERM for %d ms; killing it", p->name, (int)p->pid,
                CLUSTER_STOP_MS);
            kill(p->pid, SIGKILL);
            waitpid(p->pid, &st, 0);
        } else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            describe_status(p->name, p->pid, st);
        }
        p->pid = 0;
    }
    const char *keep = getenv("IMGSTORE_KEEP");
    if (keep && strcmp(keep, "1") == 0)
        say("kept %s (IMGSTORE_KEEP=1)", c->dir);
    else if (c->dir[0])
        rm_rf(c->dir);
    free(c);
}

/* ---- command-line tools ------------------------------------------------------------ */

static int name_matches(const char *entry, const char *name)
{
    size_t n = strlen(name);
    return strncmp(entry, name, n) == 0 && entry[n] == '=';
}

static int name_listed(const char *entry, const char *const list[])
{
    for (int i = 0; list && list[i]; i++) {
        const char *eq = strchr(list[i], '=');
        size_t n = eq ? (size_t)(eq - list[i]) : strlen(list[i]);
        if (strncmp(entry, list[i], n) == 0 && entry[n] == '=')
            return 1;
    }
    return 0;
}

/* Builds the child's environment: ours, minus env_del and the names env_add
 * overrides, plus env_add. Returns a malloc'd array of borrowed strings. */
static char **build_env(const char *const env_add[], const char *const env_del[])
{
    size_t n = 0, k = 0;
    while (environ[n])
        n++;
    for (size_t i = 0; env_add && env_add[i]; i++)
        n++;
    char **env = calloc(n + 1, sizeof(*env));
    if (!env)
        return NULL;
    for (size_t i = 0; environ[i]; i++) {
        int drop = name_listed(environ[i], env_add);
        for (size_t d = 0; !drop && env_del && env_del[d]; d++)
            drop = name_matches(environ[i], env_del[d]);
        if (!drop)
            env[k++] = environ[i];
    }
    for (size_t i = 0; env_add && env_add[i]; i++)
        env[k++] = (char *)env_add[i];
    env[k] = NULL;
    return env;
}

struct capture {
    char *buf;
    size_t len, cap;
};

static int capture_read(int fd, struct capture *cp)
{
    if (cp->cap - cp->len < 65536 + 1) {
        size_t cap = cp->cap ? cp->cap * 2 : 131072;
        char *nb = realloc(cp->buf, cap);
        if (!nb)
            return -ENOMEM;
        cp->buf = nb;
        cp->cap = cap;
    }
    ssize_t n = read(fd, cp->buf + cp->len, 65536);
    if (n < 0)
        return errno == EINTR || errno == EAGAIN ? 1 : -errno;
    cp->len += (size_t)n;
    cp->buf[cp->len] = '\0';
    return n > 0;
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

int cluster_admin(const struct cluster *c, int timeout_ms, struct cluster_run *r, ...)
{
    va_list ap;
    va_start(ap, r);
    int rc = cluster_adminv(c, timeout_ms, r, va_arg(ap, const char *), ap);
    va_end(ap);
    return rc;
}

int cluster_adminv(const struct cluster *c, int timeout_ms, struct cluster_run *r,
                   const char *first, va_list ap)
{
    const char *argv[CLUSTER_ADMIN_MAX_ARGS + 4] = {"ds-admin", "--ns", c->ns_list};
    size_t n = 3;
    for (const char *a = first; a != NULL; a = va_arg(ap, const char *)) {
        if (n == CLUSTER_ADMIN_MAX_ARGS + 3) {
            fprintf(stderr, "[cluster] ds-admin: more than %d arguments\n",
                    CLUSTER_ADMIN_MAX_ARGS);
            return -E2BIG;
        }
        argv[n++] = a;
    }
    argv[n] = NULL;
    static const char *const del[] = {"IMGSTORE_NS", NULL};
    int rc = cluster_run(c, argv, NULL, del, timeout_ms, r);
    if (rc != 0) {
        fprintf(stderr, "[cluster] ds-admin %s did not run: %s\n", n > 3 ? argv[3] : "",
                strerror(-rc));
        return rc;
    }
    return r->exit_code;
}

int cluster_run(const struct cluster *c, const char *const argv[], const char *const env_add[],
                const char *const env_del[], int timeout_ms, struct cluster_run *r)
{
    char path[700];
    int po[2] = {-1, -1}, pe[2] = {-1, -1}, nul = -1, rc = 0;
    struct capture co = {0}, ce = {0};
    char **env = NULL;
    memset(r, 0, sizeof(*r));
    snprintf(path, sizeof(path), "%s/%s", c->bin, argv[0]);
    if (access(path, X_OK) < 0) {
        rc = -errno;
        say("%s: %s", path, strerror(errno));
        return rc;
    }
    env = build_env(env_add, env_del);
    if (!env || pipe2(po, O_CLOEXEC) < 0 || pipe2(pe, O_CLOEXEC) < 0 ||
        (nul = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0) {
        rc = env ? -errno : -ENOMEM;
        goto out;
    }
    fflush(stderr);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0)
        child_exec(parent, nul, po[1], pe[1], path, (char *const *)argv, env);
    if (pid < 0) {
        rc = -errno;
        goto out;
    }
    close_fd(&po[1]);
    close_fd(&pe[1]);
    int64_t deadline = cluster_now_ms() + timeout_ms;
    int timed_out = 0;
    while (po[0] >= 0 || pe[0] >= 0) {
        struct pollfd pf[2] = {{.fd = po[0], .events = POLLIN}, {.fd = pe[0], .events = POLLIN}};
        int64_t left = deadline - cluster_now_ms();
        if (left <= 0) {
            timed_out = 1;
            break;
        }
        if (poll(pf, 2, (int)left) < 0 && errno != EINTR)
            break;
        if (pf[0].revents && capture_read(po[0], &co) <= 0)
            close_fd(&po[0]);
        if (pf[1].revents && capture_read(pe[0], &ce) <= 0)
            close_fd(&pe[0]);
    }
    if (timed_out) {
        say("%s did not finish in %d ms; killed", argv[0], timeout_ms);
        kill(pid, SIGKILL);
    }
    while (waitpid(pid, &r->status, 0) < 0 && errno == EINTR)
        ;
    if (timed_out)
        r->exit_code = -1;
    else if (WIFEXITED(r->status))
        r->exit_code = WEXITSTATUS(r->status);
    else
        r->exit_code = 128 + WTERMSIG(r->status);
out:
    close_fd(&po[0]);
    close_fd(&po[1]);
    close_fd(&pe[0]);
    close_fd(&pe[1]);
    close_fd(&nul);
    free(env);
    if (rc) {
        say("cannot run %s: %s", path, strerror(-rc));
        free(co.buf);
        free(ce.buf);
        return rc;
    }
    r->out = co.buf ? co.buf : calloc(1, 1);
    r->out_len = co.len;
    r->err = ce.buf ? ce.buf : calloc(1, 1);
    r->err_len = ce.len;
    return 0;
}

void cluster_run_free(struct cluster_run *r)
{
    if (!r)
        return;
    free(r->out);
    free(r->err);
    r->out = r->err = NULL;
}

/* ---- helpers ------------------------------------------------------------------------- */

uint64_t cluster_rand(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void cluster_fill(void *buf, size_t len, uint64_t seed, uint64_t id)
{
    uint64_t s = seed ^ (id * 0xd1342543de82ef95ull);
    uint64_t x = cluster_rand(&s) | 1;
    unsigned char *p = buf;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        uint64_t v = x * 0x2545f4914f6cdd1dull;
        memcpy(p + i, &v, 8);
    }
    for (; i < len; i++) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        p[i] = (unsigned char)((x * 0x2545f4914f6cdd1dull) >> 56);
    }
}

int cluster_write_file(const char *path, const void *buf, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int rc = -errno;
            close(fd);
            return rc;
        }
        p += n;
        len -= (size_t)n;
    }
    return close(fd) < 0 ? -errno : 0;
}

int cluster_read_file(const char *path, void **buf, size_t *len)
{
    char *b = NULL;
    *buf = NULL;
    *len = 0;
    int rc = fs_read_all(path, SIZE_MAX, &b, len);
    if (rc == 0)
        *buf = b;
    return rc;
}

int cluster_send_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int cluster_connect(const char *addr, int timeout_ms)
{
    struct sockaddr_storage ss;
    if (conn_parse_addr(addr, &ss) != 0)
        return -EINVAL;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&ss, sizeof(ss)) < 0) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    return fd;
}

const char *cluster_bin_dir(void)
{
    const char *bin = getenv("IMGSTORE_BIN");
    return bin && *bin ? bin : "./build/bin";
}

uint64_t cluster_seed(const char *test)
{
    const char *env = getenv("IMGSTORE_SEED");
    uint64_t seed;
    if (env && *env) {
        seed = strtoull(env, NULL, 0);
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t s = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec + (uint64_t)getpid();
        seed = cluster_rand(&s);
    }
    fprintf(stderr, "[%s] data seed %llu (replay with IMGSTORE_SEED=%llu)\n", test,
            (unsigned long long)seed, (unsigned long long)seed);
    return seed;
}

uint32_t cluster_log_size(uint64_t *rng, uint32_t max)
{
    double u = (double)(cluster_rand(rng) >> 11) / (double)(1ull << 53);
    double v = exp(u * log((double)max + 1.0));
    uint32_t n = (uint32_t)v;
    return n < 1 ? 1 : n > max ? max : n;
}

int cluster_put_file(imgstore_t *h, uint64_t seed, uint64_t id, size_t size,
                     char name[IMGSTORE_NAME_MAX], int attempts)
{
    void *buf = malloc(size ? size : 1);
    int rc = -ENOMEM;
    if (!buf)
        return rc;
    cluster_fill(buf, size, seed, id);
    for (int a = 0; a < attempts; a++) {
        rc = imgstore_put(h, buf, size, NULL, name);
        if (rc == 0)
            break;
        fprintf(stderr, "[data] put of file %llu (%zu bytes), attempt %d: %s (%d)\n",
                (unsigned long long)id, size, a + 1, imgstore_strerror(rc), rc);
    }
    free(buf);
    return rc;
}

int cluster_check_file(imgstore_t *h, const char *name, const char *ds_addr, uint64_t seed,
                       uint64_t id, size_t size)
{
    void *data = NULL;
    size_t len = 0;
    int rc = ds_addr ? imgstore_get_from(h, name, ds_addr, &data, &len)
                     : imgstore_get(h, name, &data, &len);
    if (rc) {
        fprintf(stderr, "[data] get %s (file %llu)%s%s: %s (%d)\n", name, (unsigned long long)id,
                ds_addr ? " from " : "", ds_addr ? ds_addr : "", imgstore_strerror(rc), rc);
        return rc;
    }
    void *want = malloc(size ? size : 1);
    if (!want) {
        imgstore_free(data);
        return -ENOMEM;
    }
    cluster_fill(want, size, seed, id);
    if (len != size || memcmp(data, want, size) != 0) {
        size_t at = 0;
        while (at < len && at < size && ((char *)data)[at] == ((char *)want)[at])
            at++;
        fprintf(stderr, "[data] get %s (file %llu)%s%s: %zu bytes, want %zu; first difference at %zu\n",
                name, (unsigned long long)id, ds_addr ? " from " : "", ds_addr ? ds_addr : "", len,
                size, at);
        rc = -EILSEQ;
    }
    free(want);
    imgstore_free(data);
    return rc;
}

int cluster_check_set(const struct cluster *c, uint64_t seed, int n,
                      const char (*names)[IMGSTORE_NAME_MAX], const uint32_t *sizes,
                      const int *deleted, const char *tag, const char *when)
{
    imgstore_t *h = cluster_client(c);
    if (!h)
        return 1;
    int bad = 0;
    for (int i = 0; i < n; i++) {
        if (deleted[i]) {
            void *data = NULL;
            size_t len;
            int rc = imgstore_get(h, names[i], &data, &len);
            free(data);
            if (rc != IMGSTORE_EDELETED && rc != IMGSTORE_ENOTFOUND) {
                fprintf(stderr, "[%s] %s: deleted file %d reads %d\n", tag, when, i, rc);
                bad++;
            }
            continue;
        }
        bad += cluster_check_replicas(h, names[i], seed, (uint64_t)i, sizes[i], 0, tag, when);
    }
    imgstore_close(h);
    return bad;
}

/* ---- shared by several tests' checks (tests-dedupe, issue 13) ------------- */

int cluster_check_replicas(imgstore_t *h, const char *name, uint64_t seed, uint64_t id,
                           size_t size, int want_replicas, const char *tag, const char *when)
{
    struct imgstore_stat st;
    int rc = imgstore_stat(h, name, &st);
    if (rc != 0 || (want_replicas && st.nreplicas != want_replicas)) {
        char n[32] = "";
        if (want_replicas)
            snprintf(n, sizeof(n), ", %d replicas", rc ? 0 : st.nreplicas);
        fprintf(stderr, "[%s] %s%sfile %llu: stat %d%s\n", tag, when ? when : "",
                when ? ": " : "", (unsigned long long)id, rc, n);
        return 1;
    }
    int bad = 0;
    for (int r = 0; r < st.nreplicas; r++)
        bad += cluster_check_file(h, name, st.replicas[r], seed, id, size) != 0;
    return bad;
}

int cluster_check_range(imgstore_t *h, uint64_t seed, int from, int to,
                        const char (*names)[IMGSTORE_NAME_MAX], const uint32_t *sizes)
{
    int bad = 0;
    for (int i = from; i < to; i++)
        bad += cluster_check_file(h, names[i], NULL, seed, (uint64_t)i, sizes[i]) != 0;
    return bad;
}

int cluster_ds_index(const struct cluster *c, const char *addr)
{
    for (int i = 0; i < c->nds; i++)
        if (strcmp(c->ds[i].addr, addr) == 0)
            return i;
    return -1;
}

void cluster_block_path(const struct cluster *c, int ds, uint64_t block_id, char *out, size_t n)
{
    snprintf(out, n, "%s/blocks/%016llx.blk", c->ds[ds].data, (unsigned long long)block_id);
}
