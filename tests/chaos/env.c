/* env.c - the environment of the chaos driver (chaos.c): starting a
 * dataserver (inside its network namespace for the partitioned one), the
 * network namespace and veth pair, the tmpfs data folder that fills up, the
 * memory samples of the server processes (invariant 6) and the ds-admin
 * helpers the faults use (their JSON read with jansson). It calls the cluster
 * helper (tests/integ/cluster.c), the shell (`ip`, `cp`) and chaos.c's say;
 * never the load or the fault schedule. */
#include "tests/chaos/chaos.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

/* The full data folder is set up once at the start, when allowed. */
int full_disk_ds = -1;      /* dataserver on the tmpfs, -1: none */
int64_t full_since_ms = -1; /* first time it was seen full */
uint64_t full_min_free = UINT64_MAX; /* least free space seen there */

/* ---- the network namespace of one dataserver ------------------------------ */

/* With root and `ip netns`, one dataserver (part_ds) runs in its own network
 * namespace at 10.78.N.2, joined to the host by a veth pair whose host end
 * is 10.78.N.1; every other server listens on 10.78.N.1, so every address
 * is reachable from both sides. A partition takes the host end down. (The
 * HA mode puts the nameservers in namespaces of their own the same way,
 * ha_net.c.) */
int part_ds = -1;
static struct chaos_netns part_ns = {.fd = -1};
static int rootns_fd = -1;
char veth_host[16];

/* Runs a shell command (output to the driver's stderr); returns its exit
 * status (0 when it succeeded). */
int sh(const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    int st = system(cmd);
    return st == -1 ? -1 : WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* Starts (or restarts) dataserver i, inside its namespace for part_ds:
 * setns applies to the calling thread, and the server is forked from it. */
static int start_ds_fn(void *arg)
{
    return cluster_start_ds(C, *(int *)arg);
}

int start_ds(int i)
{
    if (i == part_ds)
        return netns_run(&part_ns, start_ds_fn, &i);
    return cluster_start_ds(C, i);
}

/* ---- ds-admin -------------------------------------------------------------- */

/* Runs `ds-admin --ns NS ARGS...`; returns its stdout (malloc'd) when it
 * exited 0, else NULL (with a line saying why). */
char *admin(const char *a1, const char *a2, const char *a3, const char *a4)
{
    const char *argv[] = {"ds-admin", "--ns", C->ns_list, a1, a2, a3, a4, NULL};
    struct cluster_run r;
    if (cluster_run(C, argv, NULL, NULL, 10000, &r) != 0)
        return NULL;
    char *out = NULL;
    if (r.exit_code == 0) {
        out = r.out;
        r.out = NULL;
    } else {
        say("ds-admin %s %s %s: exit %d: %.200s", a1, a2 ? a2 : "", a3 ? a3 : "", r.exit_code,
            r.err ? r.err : "");
    }
    cluster_run_free(&r);
    return out;
}

void admin_set(const char *key, unsigned long v)
{
    char val[32];
    snprintf(val, sizeof(val), "%lu", v);
    free(admin("set", key, val, NULL));
}

/* The server id of dataserver i (its data folder's SERVER_ID file). */
int server_id(int i, char *out, size_t n)
{
    char path[700];
    snprintf(path, sizeof(path), "%s/SERVER_ID", C->ds[i].data);
    void *buf = NULL;
    size_t len = 0;
    if (cluster_read_file(path, &buf, &len) != 0)
        return -1;
    while (len > 0 && (((char *)buf)[len - 1] == '\n' || ((char *)buf)[len - 1] == ' '))
        len--;
    snprintf(out, n, "%.*s", (int)len, (char *)buf);
    free(buf);
    return 0;
}

static int ds_of_id(const char *id)
{
    for (int i = 0; i < C->nds; i++) {
        char mine[80];
        if (server_id(i, mine, sizeof(mine)) == 0 && *id && strcmp(mine, id) == 0)
            return i;
    }
    return -1;
}

/* The string field `key` of a JSON object ("" when absent or not a string). */
static const char *str_of(const json_t *obj, const char *key)
{
    const char *v = json_string_value(json_object_get(obj, key));
    return v ? v : "";
}

/* Looks for a running background task of `kind` ("replicate", "compact") in
 * `ds-admin --json tasks` (parsed with jansson); fills its block, source and
 * target dataserver indexes (-1 when none) and returns 1, or 0 when none
 * runs. */
int running_task(const char *kind, unsigned long long *block, int *src, int *dst)
{
    char *out = admin("--json", "tasks", NULL, NULL);
    json_t *doc = out ? json_loads(out, 0, NULL) : NULL;
    free(out);
    json_t *tasks = json_object_get(doc, "tasks");
    int found = 0;
    for (size_t i = 0; !found && i < json_array_size(tasks); i++) {
        const json_t *t = json_array_get(tasks, i);
        if (strcmp(str_of(t, "kind"), kind) != 0 || strcmp(str_of(t, "state"), "running") != 0)
            continue;
        json_t *b = json_object_get(t, "block_id");
        *block = json_is_integer(b) ? (unsigned long long)json_integer_value(b) : 0;
        *src = ds_of_id(str_of(t, "source"));
        *dst = ds_of_id(str_of(t, "target"));
        found = *src >= 0 || *dst >= 0;
    }
    json_decref(doc);
    return found;
}

/* ---- memory ----------------------------------------------------------------- */

/* One process of a server slot (it changes with every restart). */
struct mem {
    pid_t pid;
    int64_t born_ms;   /* when first seen */
    long base_kb;      /* first sample after the warm-up, 0 before */
    long max_kb, last_kb;
    int restarted;     /* the slot had another process before */
};
static struct mem mem[CLUSTER_MAX_DS + 1];
static unsigned long mem_samples;

static long rss_kb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    while (f && fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb;
}

static long mem_limit_kb(const struct mem *m)
{
    return 2 * m->base_kb + CHAOS_MEM_SLACK_KB + CHAOS_MEM_SAN_KB;
}

/* Checks the process that lived in a slot (at its end, or at the end of the
 * run): invariant 6. */
static void mem_check(const char *name, const struct mem *m, const char *when)
{
    if (m->pid == 0 || m->base_kb == 0)
        return; /* did not live past the warm-up */
    if (m->last_kb <= mem_limit_kb(m)) {
        inv_memory.passed++;
        return;
    }
    fail_say("%s (pid %d, %s): RSS %ld KiB above its bound %ld KiB (base %ld KiB after warm-up)",
        name, (int)m->pid, when, m->last_kb, mem_limit_kb(m), m->base_kb);
    inv_memory.failed++;
}

void mem_sample(void)
{
    for (int s = 0; s <= C->nds; s++) {
        struct cluster_proc *p = s == C->nds ? &C->ns : &C->ds[s];
        struct mem *m = &mem[s == C->nds ? CLUSTER_MAX_DS : s];
        pid_t pid = p->pid;
        if (pid == 0)
            continue;
        if (m->pid != pid) {
            if (m->pid)
                mem_check(p->name, m, "killed");
            int restarted = m->pid != 0;
            *m = (struct mem){.pid = pid, .born_ms = cluster_now_ms(), .restarted = restarted};
        }
        long kb = rss_kb(pid);
        if (kb <= 0)
            continue;
        mem_samples++;
        m->last_kb = kb;
        if (kb > m->max_kb)
            m->max_kb = kb;
        if (!m->base_kb && cluster_now_ms() - m->born_ms >= CHAOS_MEM_WARMUP_MS)
            m->base_kb = kb;
    }
}

/* Final memory check and figures of the processes alive at the end. */
void mem_report(void)
{
    mem_sample();
    for (int s = 0; s <= C->nds; s++) {
        const char *name = s == C->nds ? C->ns.name : C->ds[s].name;
        struct mem *m = &mem[s == C->nds ? CLUSTER_MAX_DS : s];
        if (!m->pid)
            continue;
        mem_check(name, m, m->restarted ? "restarted during the run" : "never killed");
        const char *life = m->restarted ? "restarted" : "never killed";
        if (!m->base_kb)
            printf("chaos: memory: %-4s %s, younger than the warm-up: end %ld KiB\n", name, life,
                   m->last_kb);
        else
            printf("chaos: memory: %-4s %s: VmRSS after warm-up %ld KiB, max %ld KiB, end %ld "
                   "KiB (bound %ld KiB)\n",
                   name, life, m->base_kb, m->max_kb, m->last_kb, mem_limit_kb(m));
    }
    printf("chaos: memory: %lu samples; processes checked %lu\n", mem_samples,
           (unsigned long)(inv_memory.passed + inv_memory.failed));
}

/* ---- the data folder that fills up ---------------------------------------- */

/* Puts dataserver i's data folder on a CHAOS_TMPFS_MB tmpfs: stop it, move
 * its files onto the new mount, start it. Returns 0, or -1 (skipped, one
 * line says why) when this machine does not allow it. */
int full_disk_setup(int i)
{
    struct cluster_proc *p = &C->ds[i];
    if (geteuid() != 0) {
        printf("chaos: full data folder: skipped (needs root to mount a tmpfs)\n");
        return -1;
    }
    char aside[700], opts[64], cmd[1600];
    snprintf(aside, sizeof(aside), "%s.orig", p->data);
    snprintf(opts, sizeof(opts), "size=%dm", CHAOS_TMPFS_MB);
    cluster_signal_proc(p, SIGTERM);
    if (rename(p->data, aside) != 0 || mkdir(p->data, 0755) != 0) {
        printf("chaos: full data folder: skipped (cannot move %s: %s)\n", p->data,
               strerror(errno));
        rename(aside, p->data);
        start_ds(i);
        return -1;
    }
    if (mount("tmpfs", p->data, "tmpfs", 0, opts) != 0) {
        printf("chaos: full data folder: skipped (mount -t tmpfs not allowed here: %s)\n",
               strerror(errno));
        rmdir(p->data);
        rename(aside, p->data);
        start_ds(i);
        return -1;
    }
    snprintf(cmd, sizeof(cmd), "cp -a '%s'/. '%s'/ && rm -rf '%s'", aside, p->data, aside);
    if (system(cmd) != 0)
        say("full data folder: copying the files of %s failed", p->name);
    start_ds(i);
    say("%s: data folder on a %d MiB tmpfs (%s)", p->name, CHAOS_TMPFS_MB, p->data);
    return 0;
}

void full_disk_sample(void)
{
    struct statvfs v;
    if (full_disk_ds < 0 || statvfs(C->ds[full_disk_ds].data, &v) != 0)
        return;
    uint64_t avail = (uint64_t)v.f_bavail * v.f_frsize;
    if (avail < full_min_free)
        full_min_free = avail;
    if (full_since_ms < 0 && avail < CHAOS_FULL_FREE) {
        full_since_ms = cluster_now_ms();
        say("%s: data folder full (%llu KiB free)", C->ds[full_disk_ds].name,
            (unsigned long long)v.f_bavail * v.f_frsize / 1024);
    }
}

void full_disk_teardown(void)
{
    if (full_disk_ds >= 0 && umount2(C->ds[full_disk_ds].data, MNT_DETACH) != 0)
        say("umount %s: %s", C->ds[full_disk_ds].data, strerror(errno));
}


/* ---- network namespaces ------------------------------------------------------ */

int netns_run(const struct chaos_netns *n, int (*fn)(void *), void *arg)
{
    if (rootns_fd < 0)
        rootns_fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    int in_ns = n->fd >= 0 && rootns_fd >= 0 && setns(n->fd, CLONE_NEWNET) == 0;
    if (n->fd >= 0 && !in_ns)
        say("setns into %s: %s", n->name, strerror(errno));
    int rc = fn(arg);
    if (in_ns && setns(rootns_fd, CLONE_NEWNET) != 0)
        say("setns back to the host's network: %s", strerror(errno));
    return rc;
}

void netns_drop(struct chaos_netns *n)
{
    if (n->net)
        sh("ip route del unreachable 10.78.%u.0/24 metric 4242 2>/dev/null", n->net);
    n->net = 0;
    if (n->fd >= 0)
        close(n->fd);
    n->fd = -1;
    if (n->name[0])
        sh("ip netns del %s 2>/dev/null", n->name);
    n->name[0] = '\0';
}

int netns_make(struct chaos_netns *n, const char *name, const char *veth, unsigned net,
               int route, const char **why)
{
    memset(n, 0, sizeof(*n));
    n->fd = -1;
    snprintf(n->veth, sizeof(n->veth), "%s", veth);
    if (sh("ip netns add %s 2>/dev/null", name) != 0) {
        *why = "ip netns add not permitted here";
        return -1;
    }
    snprintf(n->name, sizeof(n->name), "%s", name);
    char nspath[64];
    snprintf(nspath, sizeof(nspath), "/run/netns/%s", name);
    n->fd = open(nspath, O_RDONLY | O_CLOEXEC);
    if (rootns_fd < 0)
        rootns_fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    char gw[48] = "";
    if (route)
        snprintf(gw, sizeof(gw), " && ip route add default via 10.78.%u.1", net);
    if (n->fd < 0 || rootns_fd < 0 ||
        sh("ip link add %s type veth peer name eth0 netns %s && ip addr add 10.78.%u.1/24 dev %s"
           " && ip link set %s up",
           veth, name, net, veth, veth) != 0 ||
        sh("ip netns exec %s sh -c 'ip addr add 10.78.%u.2/24 dev eth0 && ip link set eth0 up"
           " && ip link set lo up%s'",
           name, net, gw) != 0) {
        *why = "cannot set up the veth pair";
        netns_drop(n);
        return -1;
    }
    /* While the host end is down its connected route is gone, and packets
     * for 10.78.N.2 would follow the default route: on a machine behind an
     * intercepting proxy something there accepts the connection and answers
     * "HTTP/1.1 400" to our frames. A partitioned server must be
     * unreachable, so a fallback route says so (EHOSTUNREACH). */
    if (sh("ip route add unreachable 10.78.%u.0/24 metric 4242", net) != 0) {
        *why = "cannot add the fallback route";
        netns_drop(n);
        return -1;
    }
    n->net = net;
    return 0;
}

void partition_teardown(void)
{
    netns_drop(&part_ns);
}

/* Replaces the host of "HOST:PORT" by `host`. */
void set_host(char *addr, size_t n, const char *host)
{
    const char *colon = strrchr(addr, ':');
    char port[16];
    snprintf(port, sizeof(port), "%s", colon ? colon + 1 : "0");
    snprintf(addr, n, "%s:%s", host, port);
}

/* Moves the cluster onto the veth addresses with dataserver i in its own
 * namespace (see part_ds). The cluster is stopped, its folders emptied (the
 * blocks made so far name the old addresses) and started again. Returns 0,
 * or -1 (skipped, one line says why). */
int partition_setup(int i)
{
    const char *off = getenv("CHAOS_NO_PARTITION");
    if (off && *off && strcmp(off, "0") != 0) {
        /* To replay a seed of a machine where namespaces were not allowed:
         * the fault schedule depends on the kinds available. */
        printf("chaos: network partition: skipped (CHAOS_NO_PARTITION)\n");
        return -1;
    }
    if (geteuid() != 0) {
        printf("chaos: network partition: skipped (needs root for network namespaces)\n");
        return -1;
    }
    unsigned net = 20 + (unsigned)getpid() % 200;
    char name[32], veth[16];
    const char *why = "";
    snprintf(name, sizeof(name), "imgchaos%d", (int)getpid());
    snprintf(veth, sizeof(veth), "icv%d", (int)getpid() % 1000000);
    if (netns_make(&part_ns, name, veth, net, 0, &why) != 0) {
        printf("chaos: network partition: skipped (%s)\n", why);
        return -1;
    }
    snprintf(veth_host, sizeof(veth_host), "%s", veth);
    char host[32], inner[32];
    snprintf(host, sizeof(host), "10.78.%u.1", net);
    snprintf(inner, sizeof(inner), "10.78.%u.2", net);
    for (int k = 0; k < C->nds; k++)
        cluster_signal_proc(&C->ds[k], SIGTERM);
    cluster_signal_proc(&C->ns, SIGTERM);
    sh("rm -rf '%s' && mkdir '%s'", C->ns.data, C->ns.data);
    set_host(C->ns.addr, sizeof(C->ns.addr), host);
    for (int k = 0; k < C->nds; k++) {
        struct cluster_proc *p = &C->ds[k];
        sh("rm -rf '%s' && mkdir '%s'", p->data, p->data);
        set_host(p->addr, sizeof(p->addr), k == i ? inner : host);
        set_host(p->http_addr, sizeof(p->http_addr), k == i ? inner : host);
    }
    part_ds = i;
    cluster_start_ns(C);
    for (int k = 0; k < C->nds; k++)
        start_ds(k);
    if (cluster_wait_ready(C, C->nds, CHAOS_RECOVER_MS) != 0) {
        printf("chaos: network partition: the cluster did not come up on the veth addresses\n");
        return -2;
    }
    say("%s in network namespace %s at %s; the others at %s", C->ds[i].name, part_ns.name, inner,
        host);
    return 0;
}

