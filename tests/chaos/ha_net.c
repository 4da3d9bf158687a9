/* ha_net.c - the network namespaces of the chaos driver's HA mode (ha.c)
 * and the partition of the leader.
 *
 * With root and `ip netns`, right after the cluster starts, each nameserver
 * moves into a network namespace of its own: ns at 10.78.N.2 and ns2 at
 * 10.78.N+1.2, each joined to the host by a veth pair whose host end is
 * 10.78.N.1 (N+1.1), with a default route through it. The dataservers, the
 * etcd proxies of ha.c (ns's on 10.78.N.1, ns2's on 10.78.N+1.1) and the
 * clients stay on the host; the dataservers listen on 10.78.N.1, which
 * both namespaces reach (a host address stays reachable while the veth it
 * belongs to is down). The cluster is stopped, etcd restarted empty, the
 * folders emptied (blocks made so far name the loopback addresses) and
 * everything started again on those addresses before the load starts (the
 * logs of the loopback cluster are moved aside, LOG.loopback).
 * Where namespaces are not allowed (not root, `ip netns add` refused,
 * CHAOS_NO_PARTITION=1) one line says the kind is skipped.
 *
 * The fault (F_HA_PARTITION) takes the leader's host end down: the leader
 * is cut off from etcd, from every dataserver and from every client at
 * once; three times in four for longer than the TTL (TTL + 1 to 3 s), else
 * for 0.3 s to TTL - 0.3 s; then up again.
 *
 * Invariant 9 (ha_check_cutoff, after this fault and after etcd cut off
 * from the leader, ha.c), from the nameservers' logs (UTC wall-clock
 * timestamps, compared with this process's wall clock):
 *   - after a cut longer than the TTL, the leader logged "stopped leading"
 *     within the TTL of the cut;
 *   - after a partition longer than the TTL, the other nameserver logged
 *     "leading (epoch E)" with E above the cut-off leader's epoch before
 *     the cut ended;
 *   - after every cut, within 3 TTLs of its end, the old leader follows
 *     (logs "standby: the leader is" the other in a higher epoch) or leads
 *     again (nobody took over during a short cut).
 * Invariant 8 (one nameserver per epoch) and availability (avail.c, a row
 * of its own) hold as for every kind.
 *
 * Calls env.c (namespaces, sh, set_host, start_ds), ha.c (etcd, ha_leader)
 * and the cluster helper. */
#include "tests/chaos/chaos.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define HA_CUT_KEPT 64 /* figures kept per kind for the report */

int ha_net_on;
struct inv inv_cutoff = {.what = "a cut-off leader stops within the TTL, then follows"};

static struct chaos_netns nsnet[2] = {{.fd = -1}, {.fd = -1}}; /* [0] ns, [1] ns2 */

/* Figures of the cuts of one kind: ms from the cut to "stopped leading" and
 * to the other's "leading", for the report. */
struct cut_figures {
    int n, nshort;
    int64_t stop_ms[HA_CUT_KEPT], lead_ms[HA_CUT_KEPT];
    int nstop, nlead;
};
static struct cut_figures figs[F_KINDS];

int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int start_ns_fn(void *arg)
{
    struct cluster_proc *p = arg;
    return p == &C->ns ? cluster_start_ns(C) : ha_start_ns2();
}

int ha_net_start_ns(struct cluster_proc *p)
{
    if (!ha_net_on)
        return start_ns_fn(p);
    return netns_run(&nsnet[p == &C->ns ? 0 : 1], start_ns_fn, p);
}

void ha_net_teardown(void)
{
    for (int i = 0; i < 2; i++)
        netns_drop(&nsnet[i]); /* ha_net_on stays: the report names the kind */
}

/* Moves a stopped server's log aside (LOG.loopback): the lines of the
 * cluster before the move (its epochs, its addresses) are not those of the
 * run; invariant 8 reads the new log. */
static void log_aside(const struct cluster_proc *p)
{
    char to[600];
    snprintf(to, sizeof(to), "%s.loopback", p->log);
    if (p->log[0] && rename(p->log, to) != 0)
        say("cannot move %s aside", p->log);
}

int ha_net_setup(void)
{
    const char *off = getenv("CHAOS_NO_PARTITION");
    if (off && *off && strcmp(off, "0") != 0) {
        printf("chaos: network partition of the leader: skipped (CHAOS_NO_PARTITION)\n");
        return -1;
    }
    if (geteuid() != 0) {
        printf("chaos: network partition of the leader: skipped (needs root for network "
               "namespaces)\n");
        return -1;
    }
    unsigned net = 20 + (unsigned)getpid() % 200;
    for (int i = 0; i < 2; i++) {
        char name[32], veth[16];
        const char *why = "";
        snprintf(name, sizeof(name), "imgchaha%d%c", (int)getpid(), 'a' + i);
        snprintf(veth, sizeof(veth), "ihv%d%c", (int)getpid() % 1000000, 'a' + i);
        if (netns_make(&nsnet[i], name, veth, net + (unsigned)i, 1, &why) != 0) {
            printf("chaos: network partition of the leader: skipped (%s)\n", why);
            ha_net_teardown();
            return -1;
        }
    }
    char host[2][32], inner[2][32];
    for (int i = 0; i < 2; i++) {
        snprintf(host[i], sizeof(host[i]), "10.78.%u.1", net + (unsigned)i);
        snprintf(inner[i], sizeof(inner[i]), "10.78.%u.2", net + (unsigned)i);
    }
    for (int k = 0; k < C->nds; k++)
        cluster_signal_proc(&C->ds[k], SIGTERM);
    cluster_signal_proc(&C->ns, SIGTERM);
    cluster_signal_proc(&ha_ns2, SIGTERM);
    log_aside(&C->ns);
    log_aside(&ha_ns2);
    for (int k = 0; k < C->nds; k++)
        log_aside(&C->ds[k]);
    if (ha_etcd_reset(host[0], host[1]) != 0)
        return -2;
    struct cluster_proc *nss[2] = {&C->ns, &ha_ns2};
    for (int i = 0; i < 2; i++) {
        sh("rm -rf '%s' && mkdir '%s'", nss[i]->data, nss[i]->data);
        set_host(nss[i]->addr, sizeof(nss[i]->addr), inner[i]);
    }
    for (int k = 0; k < C->nds; k++) {
        struct cluster_proc *p = &C->ds[k];
        sh("rm -rf '%s' && mkdir '%s'", p->data, p->data);
        set_host(p->addr, sizeof(p->addr), host[0]);
        set_host(p->http_addr, sizeof(p->http_addr), host[0]);
    }
    ha_net_on = 1;
    if (ha_net_start_ns(&C->ns) != 0 || ha_net_start_ns(&ha_ns2) != 0) {
        printf("chaos: network partition of the leader: a nameserver did not start in its "
               "namespace\n");
        return -2;
    }
    for (int k = 0; k < C->nds; k++)
        start_ds(k);
    if (cluster_wait_ready(C, C->nds, CHAOS_RECOVER_MS) != 0) {
        printf("chaos: network partition of the leader: the cluster did not come up on the "
               "veth addresses\n");
        return -2;
    }
    say("HA: ns in network namespace %s at %s, ns2 in %s at %s; dataservers at %s", nsnet[0].name,
        inner[0], nsnet[1].name, inner[1], host[0]);
    return 0;
}

void ha_net_partition(uint64_t *rng)
{
    int64_t epoch = 0;
    struct cluster_proc *p = ha_leader(&epoch);
    if (!p) {
        say("fault: %s: no nameserver leads; skipped", fault_names[F_HA_PARTITION]);
        return;
    }
    faults[F_HA_PARTITION]++;
    int long_cut = cluster_rand(rng) % 4 != 0;
    int cut_ms = long_cut ? CHAOS_HA_TTL_MS + rand_between(rng, 1000, 3000)
                          : rand_between(rng, 300, CHAOS_HA_TTL_MS - 300);
    const struct chaos_netns *n = &nsnet[p == &C->ns ? 0 : 1];
    say("fault: network partition of the leader %s (epoch %lld) for %d ms (TTL %d ms)", p->name,
        (long long)epoch, cut_ms, CHAOS_HA_TTL_MS);
    int64_t cut_wall = wall_ms();
    if (sh("ip link set %s down", n->veth) != 0)
        say("ip link set %s down failed", n->veth);
    sleep_ms(cut_ms);
    int64_t up_wall = wall_ms();
    if (sh("ip link set %s up", n->veth) != 0)
        say("ip link set %s up failed", n->veth);
    ha_check_cutoff(F_HA_PARTITION, p, epoch, cut_wall, up_wall, long_cut, long_cut);
}

/* ---- invariant 9 ---------------------------------------------------------------- */

/* The UTC wall-clock ms of a log line ("2026-12-08T00:02:31.075Z ..."), or -1. */
static int64_t line_ms(const char *line)
{
    struct tm tm = {0};
    int ms = 0;
    if (sscanf(line, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
               &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms) != 7)
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int64_t)timegm(&tm) * 1000 + ms;
}

/* The first line of the log at path, at or after wall ms `from`, holding
 * `text` followed by a number (an epoch) above min_epoch, after `addr` when
 * not NULL ("standby: the leader is ADDR (epoch N)"); its wall ms, or -1. */
static int64_t find_line(const char *path, int64_t from, const char *text, const char *addr,
                         int64_t min_epoch)
{
    void *buf = NULL;
    size_t len = 0;
    if (cluster_read_file(path, &buf, &len) != 0)
        return -1;
    int64_t found = -1;
    char *s = buf;
    for (char *line = s, *end; found < 0 && line < s + len; line = end + 1) {
        end = memchr(line, '\n', (size_t)(s + len - line));
        if (!end)
            break; /* a last line still being written */
        *end = '\0';
        const char *t = strstr(line, text);
        int64_t ms = t ? line_ms(line) : -1;
        if (ms < from)
            continue;
        t += strlen(text);
        if (addr) {
            size_t al = strlen(addr);
            if (strncmp(t, addr, al) != 0 || t[al] != ' ')
                continue;
            t += al + 1;
        }
        long long epoch = -1;
        if (sscanf(t, "(epoch %lld)", &epoch) == 1 && epoch > min_epoch)
            found = ms;
    }
    free(buf);
    return found;
}

static void cut_failed(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void cut_failed(const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fail_say("invariant 9: %s", msg);
    inv_cutoff.failed++;
}

void ha_check_cutoff(enum fault kind, const struct cluster_proc *old, int64_t old_epoch,
                     int64_t cut_wall_ms, int64_t up_wall_ms, int long_cut, int want_other)
{
    const struct cluster_proc *other = old == &C->ns ? &ha_ns2 : &C->ns;
    struct cut_figures *f = &figs[kind];
    f->n++;
    f->nshort += !long_cut;
    if (long_cut) {
        int64_t stop = find_line(old->log, cut_wall_ms, "ns: stopped leading ", NULL, old_epoch - 1);
        if (stop < 0 || stop - cut_wall_ms > CHAOS_HA_TTL_MS)
            cut_failed("%s (epoch %lld) cut off did not stop within the TTL (%lld ms)", old->name,
                       (long long)old_epoch, stop < 0 ? -1LL : (long long)(stop - cut_wall_ms));
        else
            inv_cutoff.passed++;
        if (stop >= 0 && f->nstop < HA_CUT_KEPT)
            f->stop_ms[f->nstop++] = stop - cut_wall_ms;
    }
    if (want_other) {
        int64_t led = find_line(other->log, cut_wall_ms, "ns: leading ", NULL, old_epoch);
        if (led < 0 || led > up_wall_ms)
            cut_failed("%s did not lead in an epoch above %lld while %s was cut off", other->name,
                       (long long)old_epoch, old->name);
        else
            inv_cutoff.passed++;
        if (led >= 0 && led <= up_wall_ms && f->nlead < HA_CUT_KEPT)
            f->lead_ms[f->nlead++] = led - cut_wall_ms;
    }
    /* Back: it follows the other, or leads again when nobody took over. */
    int64_t until = cluster_now_ms() + 3 * CHAOS_HA_TTL_MS;
    for (;;) {
        if (find_line(old->log, cut_wall_ms, "ns: standby: the leader is ", other->addr,
                      old_epoch) >= 0 ||
            (!want_other && ha_leads(old))) {
            inv_cutoff.passed++;
            break;
        }
        if (cluster_now_ms() >= until) {
            cut_failed("%s, back after its cut, neither follows %s nor leads", old->name,
                       other->name);
            break;
        }
        sleep_ms(100);
    }
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static void print_ms(const char *what, int64_t *v, int n)
{
    if (n == 0)
        return;
    qsort(v, (size_t)n, sizeof(*v), cmp64);
    printf("chaos: HA: %s: %d, %lld / %lld / %lld ms (min / median / max)\n", what, n,
           (long long)v[0], (long long)v[n / 2], (long long)v[n - 1]);
}

void ha_cutoff_report(void)
{
    for (int k = F_HA_KILL_LEADER; k < F_KINDS; k++) {
        struct cut_figures *f = &figs[k];
        if (!f->n)
            continue;
        printf("chaos: HA: %s: %d cuts (%d shorter than the TTL)\n", fault_names[k], f->n,
               f->nshort);
        print_ms("  from the cut to the leader's \"stopped leading\"", f->stop_ms, f->nstop);
        print_ms("  from the cut to the other's \"leading\"", f->lead_ms, f->nlead);
    }
}
