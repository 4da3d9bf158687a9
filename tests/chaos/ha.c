/* ha.c - the HA mode of the chaos driver (CHAOS_HA=1, `make chaos-ha`): one
 * etcd on random loopback ports in a temporary folder, two nameservers in
 * one group (`--etcd`, TTL CHAOS_HA_TTL_MS; the second, ns2, first in every
 * caller's --ns list), and the fault kinds of high availability:
 *
 *   - kill -9 of the leader, restarted after 0.3 to 4 s (as a standby);
 *   - SIGSTOP of the leader for longer than the TTL, then SIGCONT: it must
 *     step down on its own and never act again in its old epoch;
 *   - kill -9 of etcd, restarted after 0.3 to 4 s on the same ports and
 *     data: the leader stops acting within the TTL, then one leads again;
 *   - etcd cut off from the leader alone, for longer than the TTL, while it
 *     still reaches every dataserver and they reach it (each nameserver
 *     talks to etcd through its own proxy in this process,
 *     tests/integ/cluster_proxy.c): it must stop acting within the TTL
 *     while the other takes over, and its commands are fenced by epoch;
 *   - a network partition of the leader (ha_net.c, when network namespaces
 *     are allowed): cut off from etcd, every dataserver and every client.
 *
 * After each cut, invariant 9 (ha_net.c, ha_check_cutoff): the leader
 * stopped acting within the TTL and follows once back.
 *
 * Invariant 8 (ha_check_epochs, from the logs at the end): no two
 * nameservers acted in the same epoch. Each epoch is claimed by the
 * nameserver logging `leading (epoch N)` and by every dataserver logging
 * `nameserver ADDR leads in epoch N` (it took that leader's answers);
 * an epoch claimed for two addresses fails it.
 *
 * Skipped with one line when etcd is not installed. Calls the cluster
 * helper (tests/integ/cluster.c), the client library, ha_net.c (starting a
 * nameserver in its namespace, invariant 9) and chaos.c's say. */
#include "tests/chaos/chaos.h"

#include "client/admin.h"
#include "proto/frame.h"
#include "proto/imgstore.pb-c.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define HA_MAX_EPOCHS 4096

int ha_on;
struct cluster_proc ha_ns2;
struct inv inv_epochs = {.what = "no two nameservers acted in the same epoch"};

static char etcd_dir[128];
static char etcd_client[64], etcd_peer[64];
static pid_t etcd_pid;
static char ttl_arg[16];
/* Each nameserver reaches etcd through its own proxy: [0] ns, [1] ns2. */
static struct cluster_proxy *etcd_via[2];
static char etcd_via_addr[2][64];
static const char *ns_args[] = {"--etcd", etcd_via_addr[0], "--etcd-ttl-ms", ttl_arg, NULL};

/* Starts etcd on etcd_client/etcd_peer with its data in etcd_dir; 0 once it
 * answers, -1 when it exited or did not answer within 15 s. */
static int etcd_run(void)
{
    return cluster_etcd_run(etcd_dir, "c", etcd_client, etcd_peer, &etcd_pid);
}

int ha_setup(struct cluster_opts *o)
{
    if (access(CLUSTER_ETCD_BIN, X_OK) != 0) {
        printf("chaos: HA mode skipped: %s is not installed (scripts/install-deps.sh)\n",
               CLUSTER_ETCD_BIN);
        return 1;
    }
    snprintf(etcd_dir, sizeof(etcd_dir), "/tmp/imgstore-chaos-etcd-XXXXXX");
    if (!mkdtemp(etcd_dir)) {
        etcd_dir[0] = '\0';
        return -1;
    }
    int rc = -1;
    for (int i = 0; i < 3 && rc != 0; i++) { /* fresh ports each time: one may be taken */
        snprintf(etcd_client, sizeof(etcd_client), "127.0.0.1:%d", cluster_free_port());
        snprintf(etcd_peer, sizeof(etcd_peer), "127.0.0.1:%d", cluster_free_port());
        rc = etcd_run();
    }
    if (rc != 0) {
        say("etcd did not start (log in %s/etcd.log)", etcd_dir);
        return -1;
    }
    for (int i = 0; i < 2; i++) {
        etcd_via[i] = cluster_proxy_start(etcd_client, etcd_via_addr[i], sizeof(etcd_via_addr[i]));
        if (!etcd_via[i]) {
            say("cannot start a proxy in front of etcd");
            return -1;
        }
    }
    snprintf(ttl_arg, sizeof(ttl_arg), "%d", CHAOS_HA_TTL_MS);
    memset(&ha_ns2, 0, sizeof(ha_ns2));
    snprintf(ha_ns2.name, sizeof(ha_ns2.name), "ns2");
    snprintf(ha_ns2.addr, sizeof(ha_ns2.addr), "127.0.0.1:%d", cluster_free_port());
    o->ns_args = ns_args;
    o->ns_before = ha_ns2.addr;
    ha_on = 1;
    say("HA mode: etcd at %s, nameservers ns2 %s and ns, TTL %d ms", etcd_client, ha_ns2.addr,
        CHAOS_HA_TTL_MS);
    return 0;
}

int ha_start_ns2(void)
{
    if (!ha_ns2.data[0]) {
        snprintf(ha_ns2.data, sizeof(ha_ns2.data), "%s/ns2", C->dir);
        snprintf(ha_ns2.log, sizeof(ha_ns2.log), "%s/log/ns2.log", C->dir);
        mkdir(ha_ns2.data, 0755);
    }
    char hb[16], safe[16], block[32];
    snprintf(hb, sizeof(hb), "%d", C->opts.heartbeat_timeout_ms);
    snprintf(safe, sizeof(safe), "%d", C->opts.safe_mode_timeout_ms);
    snprintf(block, sizeof(block), "%llu", (unsigned long long)C->opts.block_size);
    char replicas[8];
    snprintf(replicas, sizeof(replicas), "%d", C->opts.replicas);
    const char *argv[] = {"nameserver", "--listen", ha_ns2.addr, "--data", ha_ns2.data,
                          "--replicas", replicas, "--block-size", block,
                          "--heartbeat-timeout-ms", hb, "--safe-mode-timeout-ms", safe,
                          "--etcd", etcd_via_addr[1], "--etcd-ttl-ms", ttl_arg,
                          "--keys", C->keys, NULL};
    return cluster_spawn(C, &ha_ns2, argv);
}

int ha_etcd_reset(const char *host_ns, const char *host_ns2)
{
    if (etcd_pid > 0) {
        kill(etcd_pid, SIGKILL);
        waitpid(etcd_pid, NULL, 0);
    }
    etcd_pid = 0;
    if (sh("rm -rf '%s/data'", etcd_dir) != 0 || etcd_run() != 0) {
        say("etcd did not start again empty (log in %s/etcd.log)", etcd_dir);
        return -1;
    }
    const char *host[2] = {host_ns, host_ns2};
    for (int i = 0; i < 2; i++) {
        cluster_proxy_stop(etcd_via[i]);
        etcd_via[i] = cluster_proxy_start_on(host[i], etcd_client, etcd_via_addr[i],
                                             sizeof(etcd_via_addr[i]));
        if (!etcd_via[i]) {
            say("cannot start a proxy in front of etcd on %s", host[i]);
            return -1;
        }
    }
    return 0;
}

void ha_teardown(void)
{
    for (int i = 0; i < 2; i++) {
        cluster_proxy_stop(etcd_via[i]);
        etcd_via[i] = NULL;
    }
    if (etcd_pid > 0) {
        kill(etcd_pid, SIGKILL);
        waitpid(etcd_pid, NULL, 0);
        etcd_pid = 0;
    }
    if (etcd_dir[0] && !getenv("IMGSTORE_KEEP")) {
        char cmd[200];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", etcd_dir);
        if (system(cmd) != 0)
            say("could not remove %s", etcd_dir);
    }
    etcd_dir[0] = '\0';
}

/* 1 when the nameserver at addr itself answers CLUSTER_STATUS (it leads;
 * a standby answers IMG_ENOTLEADER, not followed here), with its epoch in
 * *epoch when not NULL. */
static int leads(const char *addr, int64_t *epoch)
{
    struct imgstore_opts o = {.timeout_ms = 1000, .io_timeout_ms = 500};
    imgstore_t *h = NULL;
    ProtobufCMessage *m = NULL;
    int rc = imgstore_open(addr, &o, &h);
    if (rc == 0) {
        Imgstore__ClusterStatus q = IMGSTORE__CLUSTER_STATUS__INIT;
        rc = imgstore_admin_call(h, addr, FT_CLUSTER_STATUS, &q.base,
                                 &imgstore__cluster_status_resp__descriptor, &m);
    }
    if (rc == 0 && epoch)
        *epoch = ((Imgstore__ClusterStatusResp *)m)->epoch;
    imgstore_admin_free_status((Imgstore__ClusterStatusResp *)m);
    imgstore_close(h);
    return rc == 0;
}

int ha_leads(const struct cluster_proc *p)
{
    return p->pid && leads(p->addr, NULL);
}

struct cluster_proc *ha_leader(int64_t *epoch)
{
    int64_t until = cluster_now_ms() + 10000, e = 0;
    struct cluster_proc *both[2] = {&C->ns, &ha_ns2};
    if (epoch)
        *epoch = 0;
    while (cluster_now_ms() < until) {
        for (int i = 0; i < 2; i++)
            if (both[i]->pid && leads(both[i]->addr, &e)) {
                if (epoch)
                    *epoch = e;
                return both[i];
            }
        usleep(100000);
    }
    return NULL;
}

void ha_inject(enum fault kind, uint64_t *rng)
{
    int down_ms = rand_between(rng, CHAOS_DOWN_MIN_MS, CHAOS_DOWN_MAX_MS);
    if (kind == F_HA_ETCD) {
        faults[kind]++;
        say("fault: kill -9 etcd, restart in %d ms", down_ms);
        if (etcd_pid > 0) { /* never kill(0): that is our process group */
            kill(etcd_pid, SIGKILL);
            waitpid(etcd_pid, NULL, 0);
        }
        etcd_pid = 0;
        sleep_ms(down_ms);
        if (etcd_run() != 0)
            fail_say("etcd did not start again (log in %s/etcd.log)", etcd_dir);
        return;
    }
    if (kind == F_HA_PARTITION) {
        ha_net_partition(rng);
        return;
    }
    int64_t epoch = 0;
    struct cluster_proc *p = ha_leader(&epoch);
    if (!p) {
        say("fault: %s: no nameserver leads; skipped", fault_names[kind]);
        return;
    }
    faults[kind]++;
    killed_by_us[proc_slot(p)] = 1;
    if (kind == F_HA_KILL_LEADER) {
        say("fault: kill -9 the leader %s, restart in %d ms", p->name, down_ms);
        cluster_signal_proc(p, SIGKILL);
        sleep_ms(down_ms);
        ha_net_start_ns(p);
    } else if (kind == F_HA_CUT_ETCD) {
        int cut_ms = CHAOS_HA_TTL_MS + rand_between(rng, 500, 2500);
        struct cluster_proxy *via = etcd_via[p == &C->ns ? 0 : 1];
        say("fault: etcd cut off from the leader %s for %d ms (TTL %d ms)", p->name, cut_ms,
            CHAOS_HA_TTL_MS);
        int64_t cut_wall = wall_ms();
        cluster_proxy_cut(via, 1);
        sleep_ms(cut_ms);
        int64_t up_wall = wall_ms();
        cluster_proxy_cut(via, 0);
        ha_check_cutoff(kind, p, epoch, cut_wall, up_wall, 1, 0);
    } else {
        int stop_ms = CHAOS_HA_TTL_MS + rand_between(rng, 500, 2500);
        say("fault: SIGSTOP the leader %s for %d ms (TTL %d ms)", p->name, stop_ms,
            CHAOS_HA_TTL_MS);
        cluster_signal_proc(p, SIGSTOP);
        sleep_ms(stop_ms);
        cluster_signal_proc(p, SIGCONT);
    }
    killed_by_us[proc_slot(p)] = 0;
}

/* ---- invariant 8 ---------------------------------------------------------------- */

struct claim {
    long long epoch;
    char addr[CLUSTER_ADDR_MAX];
    char by[16];
};
static struct claim claims[HA_MAX_EPOCHS];
static int nclaims;

/* Records that `by` saw `addr` act in `epoch`; a second address for one
 * epoch fails invariant 8. */
static void claim(long long epoch, const char *addr, const char *by)
{
    for (int i = 0; i < nclaims; i++) {
        if (claims[i].epoch != epoch)
            continue;
        if (strcmp(claims[i].addr, addr) != 0) {
            fail_say("epoch %lld: %s acted (per %s) and %s acted (per %s)", epoch,
                     claims[i].addr, claims[i].by, addr, by);
            inv_epochs.failed++;
        }
        return;
    }
    if (nclaims == HA_MAX_EPOCHS)
        return;
    claims[nclaims].epoch = epoch;
    snprintf(claims[nclaims].addr, sizeof(claims[nclaims].addr), "%s", addr);
    snprintf(claims[nclaims].by, sizeof(claims[nclaims].by), "%s", by);
    nclaims++;
}

/* Every line of the log at path holding `key`, followed by a number (the
 * epoch), and for the dataservers' lines the address before it. */
static void scan(const char *path, const char *by, const char *own_addr)
{
    void *buf = NULL;
    size_t len = 0;
    if (cluster_read_file(path, &buf, &len) != 0)
        return;
    char *s = buf;
    for (char *line = s, *end; line < s + len; line = end + 1) {
        end = memchr(line, '\n', (size_t)(s + len - line));
        if (!end)
            break; /* a last line still being written */
        *end = '\0';
        const char *p;
        long long epoch;
        char addr[CLUSTER_ADDR_MAX];
        if (own_addr && (p = strstr(line, "ns: leading (epoch ")) &&
            sscanf(p, "ns: leading (epoch %lld)", &epoch) == 1)
            claim(epoch, own_addr, by);
        else if (!own_addr && (p = strstr(line, "ds: nameserver ")) &&
                 sscanf(p, "ds: nameserver %63s leads in epoch %lld", addr, &epoch) == 2)
            claim(epoch, addr, by);
    }
    free(buf);
}

void ha_check_epochs(void)
{
    if (!ha_on)
        return;
    nclaims = 0;
    unsigned long failed = inv_epochs.failed;
    scan(C->ns.log, C->ns.name, C->ns.addr);
    scan(ha_ns2.log, ha_ns2.name, ha_ns2.addr);
    for (int i = 0; i < C->nds; i++)
        scan(C->ds[i].log, C->ds[i].name, NULL);
    if (inv_epochs.failed == failed)
        inv_epochs.passed += (unsigned long)nclaims;
    say("HA: %d epochs led, each by one nameserver%s", nclaims,
        inv_epochs.failed == failed ? "" : " (NOT)");
}
