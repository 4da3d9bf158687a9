/* faults.c - fault injection of the chaos driver (chaos.c): the fault kinds
 * and their names, the shuffled schedule (run_faults), each kind's
 * injection (inject and the fault_* functions), and the record of the damage
 * done (a block is damaged on at most one server). It calls the cluster
 * helper (tests/integ/cluster.c), env.c (start_ds, ds-admin, namespace),
 * ha.c and ec.c (their modes' kinds) and chaos.c's say/sleep; never the load
 * or the final checks. */
#include "tests/chaos/chaos.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *fault_names[F_KINDS] = {"kill -9 + restart dataserver",
                                           "kill -9 + restart nameserver",
                                           "SIGSTOP/SIGCONT dataserver",
                                           "bytes flipped in a block file + restart",
                                           "bytes flipped in an index file + restart",
                                           "kill -9 during a block copy + restart",
                                           "kill -9 during a compaction + restart",
                                           "data folder vanished, back + restart",
                                           "network partition of a dataserver",
                                           "power cut of one dataserver + restart",
                                           "power cut of every dataserver + restart",
                                           "data folder on a small tmpfs (fills up)",
                                           "one record header damaged + restart",
                                           "capacity of a dataserver reached",
                                           "nameserver away (kill -9, long restart)",
                                           "HA: kill -9 the leader + restart",
                                           "HA: SIGSTOP the leader past the TTL",
                                           "HA: kill -9 etcd + restart",
                                           "HA: etcd cut off from the leader",
                                           "HA: network partition of the leader",
                                           "EC: kill -9 two holders of a stripe",
                                           "EC: bytes flipped in a shard + restart"};
/* Kinds of the shuffled rounds: the power cuts need the IMG_FAULT_FS build
 * (CHAOS_POWER_CUT=1, set by make chaos-powercut). */
int nkinds = F_ROUND;
int avail_faults;
int ns_away_ms = CHAOS_NS_AWAY_MS;
unsigned long copy_hits, copy_misses, compact_hits, compact_misses;

unsigned long faults[F_KINDS];
int killed_by_us[CLUSTER_MAX_DS + 2]; /* CLUSTER_MAX_DS: the nameserver, +1: ns2 (HA) */

/* Blocks already damaged on some server (never damaged twice). */
static uint64_t damaged[CHAOS_MAX_DAMAGED];
static int ndamaged;

int proc_slot(const struct cluster_proc *p)
{
    return p == &C->ns ? CLUSTER_MAX_DS : p == &ha_ns2 ? CLUSTER_MAX_DS + 1 : (int)(p - C->ds);
}

static int is_damaged(uint64_t id)
{
    for (int i = 0; i < ndamaged; i++)
        if (damaged[i] == id)
            return 1;
    return 0;
}

/* Picks one file with `suffix` ("blk", "idx") longer than skip + 64 bytes,
 * of a block of `p` not damaged anywhere before: its block id with its
 * path and size, or 0 when none qualifies. */
static uint64_t pick_block_file(const struct cluster_proc *p, const char *suffix, off_t skip,
                                uint64_t *rng, char path[900], off_t *size)
{
    char dir[600];
    snprintf(dir, sizeof(dir), "%s/blocks", p->data);
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    uint64_t ids[512];
    off_t sizes[512];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 512) {
        unsigned long long id;
        char sfx[8];
        if (strlen(e->d_name) != 20 || sscanf(e->d_name, "%16llx.%3s", &id, sfx) != 2 ||
            strcmp(sfx, suffix) != 0 || is_damaged(id))
            continue;
        char path[900];
        struct stat st;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        if (stat(path, &st) == 0 && st.st_size > skip + 64) {
            ids[n] = id;
            sizes[n++] = st.st_size;
        }
    }
    closedir(d);
    if (n == 0 || ndamaged >= CHAOS_MAX_DAMAGED)
        return 0;
    int k = (int)(cluster_rand(rng) % (uint64_t)n);
    snprintf(path, 900, "%s/%016llx.%s", dir, (unsigned long long)ids[k], suffix);
    *size = sizes[k];
    return ids[k];
}

/* Flips CHAOS_FLIPS bytes (one bit each) past the first `skip` bytes of one
 * file with `suffix` ("blk": block file past its superblock, "idx": index
 * file past its header) of a block of `p` not damaged anywhere before.
 * Returns the block id, or 0 when none qualifies. */
static uint64_t flip_file(const struct cluster_proc *p, const char *suffix, off_t skip,
                          uint64_t *rng)
{
    char path[900];
    off_t size;
    uint64_t id = pick_block_file(p, suffix, skip, rng, path, &size);
    if (!id)
        return 0;
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return 0;
    for (int f = 0; f < CHAOS_FLIPS; f++) {
        off_t at = skip + (off_t)(cluster_rand(rng) % (uint64_t)(size - skip));
        uint8_t b;
        if (pread(fd, &b, 1, at) == 1) {
            b ^= (uint8_t)(1u << (cluster_rand(rng) % 8));
            if (pwrite(fd, &b, 1, at) != 1)
                say("pwrite %s: %s", path, strerror(errno));
        }
    }
    close(fd);
    damaged[ndamaged++] = id;
    return id;
}

/* Flips one bit of one record's header (docs/storage.md, "Needle"): its
 * seq, cookie or MIME field, in the block file of a block of `p` not damaged
 * anywhere before. Says which; returns the block id, or 0 when no block
 * file with a record qualifies. */
static uint64_t damage_header(const struct cluster_proc *p, uint64_t *rng)
{
    char path[900];
    off_t size;
    uint64_t id = pick_block_file(p, "blk", 64, rng, path, &size);
    void *buf = NULL;
    size_t len = 0;
    if (!id || cluster_read_file(path, &buf, &len) != 0)
        return 0;
    /* Walks the records after the 64-byte superblock; picks a file record
     * (not a tombstone) at random among them (reservoir). */
    const uint8_t *b = buf;
    uint64_t at = 64, pick = 0, nrec = 0;
    while (at + 24 <= len && b[at] == 0x49 && b[at + 1] == 0x4E) {
        uint32_t dsize;
        memcpy(&dsize, b + at + 12, 4);
        if (!(b[at + 2] & 1) && cluster_rand(rng) % ++nrec == 0)
            pick = at;
        at = (at + 24 + dsize + 7) & ~(uint64_t)7;
    }
    free(buf);
    if (nrec == 0)
        return 0;
    static const struct { const char *name; int off, len; } fields[] = {
        {"seq", 4, 4}, {"cookie", 8, 4}, {"MIME", 3, 1}};
    int fi = (int)(cluster_rand(rng) % 3);
    off_t where = (off_t)pick + fields[fi].off + (off_t)(cluster_rand(rng) % (uint64_t)fields[fi].len);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    uint8_t byte;
    if (fd < 0 || pread(fd, &byte, 1, where) != 1) {
        if (fd >= 0)
            close(fd);
        return 0;
    }
    byte ^= (uint8_t)(1u << (cluster_rand(rng) % 8));
    if (pwrite(fd, &byte, 1, where) != 1)
        say("pwrite %s: %s", path, strerror(errno));
    close(fd);
    damaged[ndamaged++] = id;
    say("fault: kill -9 %s, one bit of the %s field of the record at offset %llu of block "
        "%016llx flipped, restart",
        p->name, fields[fi].name, (unsigned long long)pick, (unsigned long long)id);
    return id;
}

/* A dataserver other than the one on the tmpfs (its folder cannot be
 * renamed: a mount point). */
static int pick_not_tmpfs(uint64_t *rng)
{
    int v = (int)(cluster_rand(rng) % (uint64_t)C->nds);
    return v == full_disk_ds ? (v + 1) % C->nds : v;
}

/* Waits until a running task of `kind` shows, for CHAOS_TASK_WAIT_MS, and
 * then kills -9 one of its servers (the source or the target, at random),
 * counting a hit in *hits. When none ran in time (`what` names the task in
 * the message), counts a miss in *misses and kills -9 server `fallback`
 * instead (-1: one drawn from rng then). Returns the server killed. */
static int kill_during_task(const char *kind, const char *what, uint64_t *rng, int fallback,
                            unsigned long *hits, unsigned long *misses)
{
    unsigned long long block = 0;
    int64_t deadline = cluster_now_ms() + CHAOS_TASK_WAIT_MS;
    while (cluster_now_ms() < deadline) {
        int src = -1, dst = -1;
        if (running_task(kind, &block, &src, &dst)) {
            int v = src < 0 ? dst : dst < 0 ? src : (cluster_rand(rng) & 1) ? src : dst;
            killed_by_us[v] = 1;
            cluster_signal_proc(&C->ds[v], SIGKILL);
            say("fault: kill -9 %s, %s of a running %s task of block %llu", C->ds[v].name,
                v == src ? "source" : "target", kind, block);
            (*hits)++;
            return v;
        }
        sleep_ms(100);
    }
    (*misses)++;
    int v = fallback >= 0 ? fallback : (int)(cluster_rand(rng) % (uint64_t)C->nds);
    say("no %s ran within %d ms; kill -9 %s instead", what, CHAOS_TASK_WAIT_MS, C->ds[v].name);
    killed_by_us[v] = 1;
    cluster_signal_proc(&C->ds[v], SIGKILL);
    return v;
}

/* Power cut of a dataserver of the IMG_FAULT_FS build: SIGUSR2 makes it
 * throw away every block-file write no completed fdatasync covers, and exit. */
static void power_cut(struct cluster_proc *p)
{
    cluster_signal_proc(p, SIGUSR2);
    int64_t deadline = cluster_now_ms() + 5000;
    while (cluster_alive(p) && cluster_now_ms() < deadline)
        sleep_ms(10);
    if (p->pid) {
        say("%s did not exit after its power cut; killing it", p->name);
        cluster_signal_proc(p, SIGKILL);
    }
}

/* kill -9 of the source or the target of a running block copy: copies are
 * started by draining a dataserver with the copy rate lowered (so each lasts
 * seconds); the drain is cancelled before the restart. */
static void fault_copy(uint64_t *rng)
{
    int x = (int)(cluster_rand(rng) % (uint64_t)C->nds);
    int down_ms = rand_between(rng, CHAOS_DOWN_MIN_MS, CHAOS_DOWN_MAX_MS);
    char id[80];
    faults[F_KILL_COPY]++;
    if (server_id(x, id, sizeof(id)) != 0)
        snprintf(id, sizeof(id), "?");
    admin_set("copy_rate", CHAOS_SLOW_COPY_MB);
    say("fault: drain %s to start block copies, then kill -9 during one", C->ds[x].name);
    free(admin("drain", id, NULL, NULL));
    int v = kill_during_task("replicate", "block copy", rng, x, &copy_hits, &copy_misses);
    sleep_ms(down_ms);
    free(admin("drain", id, "--cancel", NULL));
    admin_set("copy_rate", NS_COPY_RATE_MB);
    start_ds(v);
    killed_by_us[v] = 0;
}

/* kill -9 of a dataserver running a compaction: the threshold is lowered to
 * 1 % for the time of the fault, so sealed blocks with deletions compact
 * (slowly: the copy rate caps compactions too). */
static void fault_compact(uint64_t *rng)
{
    int down_ms = rand_between(rng, CHAOS_DOWN_MIN_MS, CHAOS_DOWN_MAX_MS);
    faults[F_KILL_COMPACT]++;
    admin_set("copy_rate", CHAOS_SLOW_COPY_MB);
    admin_set("compact_threshold", 1);
    say("fault: compact_threshold 1 %%, kill -9 during a compaction");
    int v = kill_during_task("compact", "compaction", rng, -1, &compact_hits, &compact_misses);
    admin_set("compact_threshold", NS_COMPACT_PCT);
    admin_set("copy_rate", NS_COPY_RATE_MB);
    sleep_ms(down_ms);
    start_ds(v);
    killed_by_us[v] = 0;
}

/* A data folder renamed away while its dataserver runs, renamed back after a
 * while, then the server restarted (kill -9, as it may be wedged). Whether
 * it kept running meanwhile is said, not judged: the invariants are that no
 * acknowledged upload is lost, no wrong bytes are served and the other
 * servers do not crash. */
static void fault_vanish(uint64_t *rng)
{
    int v = pick_not_tmpfs(rng);
    struct cluster_proc *p = &C->ds[v];
    int down_ms = rand_between(rng, CHAOS_DOWN_MIN_MS, CHAOS_DOWN_MAX_MS);
    char gone[700];
    snprintf(gone, sizeof(gone), "%s.vanished", p->data);
    faults[F_VANISH_DIR]++;
    killed_by_us[v] = 1;
    if (rename(p->data, gone) != 0) {
        say("fault: cannot rename the data folder of %s away: %s", p->name, strerror(errno));
        killed_by_us[v] = 0;
        return;
    }
    say("fault: data folder of %s renamed away for %d ms", p->name, down_ms);
    sleep_ms(down_ms);
    int alive = cluster_alive(p);
    if (rename(gone, p->data) != 0)
        say("cannot rename %s back: %s", gone, strerror(errno));
    if (alive)
        cluster_signal_proc(p, SIGKILL);
    say("%s %s without its data folder; restarting it", p->name,
        alive ? "kept running" : "exited");
    start_ds(v);
    killed_by_us[v] = 0;
}
/* A dataserver that reached its capacity: restarted (SIGTERM) with
 * --capacity CHAOS_CAP_ARG, so it reports no free space, kept so for a
 * while (once the cluster sees it up again), then restarted without it. */
static void fault_capacity(uint64_t *rng)
{
    static const char *const cap_args[] = {"--capacity", CHAOS_CAP_ARG, NULL};
    int v = pick_not_tmpfs(rng);
    struct cluster_proc *p = &C->ds[v];
    int full_ms = rand_between(rng, CHAOS_CAP_MIN_MS, CHAOS_CAP_MAX_MS);
    faults[F_CAPACITY]++;
    killed_by_us[v] = 1;
    say("fault: %s restarted with --capacity %s (full) for %d ms", p->name, CHAOS_CAP_ARG,
        full_ms);
    cluster_signal_proc(p, SIGTERM);
    p->args = cap_args;
    start_ds(v);
    if (cluster_wait_ready(C, C->nds, CHAOS_RECOVER_MS) != 0)
        say("%s did not come back with its small capacity in %d ms", p->name, CHAOS_RECOVER_MS);
    sleep_ms(full_ms);
    cluster_signal_proc(p, SIGTERM);
    p->args = NULL;
    start_ds(v);
    killed_by_us[v] = 0;
}

/* Cuts the namespaced dataserver off (host end of its veth down) for a
 * while. It is not killed: it must survive, and so must everything else. */
static void fault_partition(uint64_t *rng)
{
    int cut_ms = rand_between(rng, CHAOS_CUT_MIN_MS, CHAOS_CUT_MAX_MS);
    faults[F_PARTITION]++;
    say("fault: network partition of %s for %d ms", C->ds[part_ds].name, cut_ms);
    if (sh("ip link set %s down", veth_host) != 0)
        say("ip link set %s down failed", veth_host);
    sleep_ms(cut_ms);
    if (sh("ip link set %s up", veth_host) != 0)
        say("ip link set %s up failed", veth_host);
}

static void inject(enum fault kind, uint64_t *rng)
{
    if (kind == F_PARTITION) {
        fault_partition(rng);
        return;
    }
    if (kind >= F_EC_KILL_TWO) {
        ec_inject(kind, rng);
        return;
    }
    if (kind >= F_HA_KILL_LEADER) {
        ha_inject(kind, rng);
        return;
    }
    if (kind == F_KILL_COPY || kind == F_KILL_COMPACT || kind == F_VANISH_DIR ||
        kind == F_CAPACITY) {
        if (kind == F_CAPACITY)
            fault_capacity(rng);
        else if (kind == F_KILL_COPY)
            fault_copy(rng);
        else if (kind == F_KILL_COMPACT)
            fault_compact(rng);
        else
            fault_vanish(rng);
        return;
    }
    if (kind == F_POWER_ALL) {
        int down_ms = rand_between(rng, CHAOS_DOWN_MIN_MS, CHAOS_DOWN_MAX_MS);
        faults[kind]++;
        say("fault: power cut of every dataserver, restart in %d ms", down_ms);
        for (int i = 0; i < C->nds; i++)
            killed_by_us[i] = 1;
        for (int i = 0; i < C->nds; i++)
            cluster_signal_proc(&C->ds[i], SIGUSR2);
        for (int i = 0; i < C->nds; i++)
            power_cut(&C->ds[i]);
        sleep_ms(down_ms);
        for (int i = 0; i < C->nds; i++) {
            start_ds(i);
            killed_by_us[i] = 0;
        }
        return;
    }
    int v = (int)(cluster_rand(rng) % (uint64_t)C->nds);
    int ns = kind == F_KILL_NS || kind == F_NS_AWAY;
    struct cluster_proc *p = ns ? &C->ns : &C->ds[v];
    int down_ms = rand_between(rng, CHAOS_DOWN_MIN_MS, CHAOS_DOWN_MAX_MS);
    if (kind == F_NS_AWAY)
        down_ms = ns_away_ms;
    faults[kind]++;
    killed_by_us[proc_slot(p)] = 1;
    switch (kind) {
    case F_KILL_DS:
    case F_KILL_NS:
    case F_NS_AWAY:
        say("fault: kill -9 %s, restart in %d ms", p->name, down_ms);
        if (ns)
            avail_ns_down(1);
        cluster_signal_proc(p, SIGKILL);
        sleep_ms(down_ms);
        if (ns) {
            cluster_start_ns(C);
            avail_ns_down(0);
        } else {
            start_ds(v);
        }
        break;
    case F_POWER_DS:
        say("fault: power cut of %s, restart in %d ms", p->name, down_ms);
        power_cut(p);
        sleep_ms(down_ms);
        start_ds(v);
        break;
    case F_STOP_DS:
        say("fault: SIGSTOP %s for %d ms", p->name, down_ms);
        cluster_signal_proc(p, SIGSTOP);
        sleep_ms(down_ms);
        cluster_signal_proc(p, SIGCONT);
        break;
    case F_FLIP_DS:
    case F_FLIP_IDX: {
        int idx = kind == F_FLIP_IDX;
        cluster_signal_proc(p, SIGKILL);
        uint64_t id = idx ? flip_file(p, "idx", 16, rng) : flip_file(p, "blk", 64, rng);
        if (id)
            say("fault: kill -9 %s, %d bytes flipped in the %s file of block %016llx, restart",
                p->name, CHAOS_FLIPS, idx ? "index" : "block", (unsigned long long)id);
        else
            say("fault: kill -9 %s (no %s file to damage yet), restart", p->name,
                idx ? "index" : "block");
        start_ds(v);
        break;
    }
    case F_HDR_DAMAGE:
        cluster_signal_proc(p, SIGKILL);
        if (!damage_header(p, rng))
            say("fault: kill -9 %s (no record to damage yet), restart", p->name);
        start_ds(v);
        break;
    default:
        break;
    }
    killed_by_us[proc_slot(p)] = 0;
}

/* CHAOS_KINDS=1,7 (fault numbers, enum fault in chaos.h): only these kinds,
 * for replaying one failure's neighbourhood; unset: every kind. */
static int kind_listed(int k)
{
    const char *only = getenv("CHAOS_KINDS");
    if (!only || !*only)
        return 1;
    for (const char *p = only; *p;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p)
            return 0;
        if (v == k)
            return 1;
        p = *end == ',' ? end + 1 : end;
    }
    return 0;
}

int kind_in_use(int k)
{
    if (!kind_listed(k))
        return 0;
    if (ha_on)
        return k >= F_HA_KILL_LEADER && k <= F_HA_PARTITION && (k != F_HA_PARTITION || ha_net_on);
    if (ec_on) /* the EC mode: its own kinds and the kills of one server */
        return k == F_KILL_DS || k == F_KILL_NS || k >= F_EC_KILL_TWO;
    if (k >= F_HA_KILL_LEADER)
        return 0;
    if (k >= F_HDR_DAMAGE)
        return avail_faults;
    return k < nkinds && (k != F_PARTITION || part_ds >= 0);
}

/* Non-zero while the fault schedule goes on: until `end_ms`, and past it
 * (at most CHAOS_ROUND_GRACE_MS) until the first round is complete, so a
 * short run on a slow machine still injects every kind once. */
static int faults_go_on(int64_t end_ms, int first_round_done)
{
    int64_t now = cluster_now_ms();
    return now < end_ms || (!first_round_done && now < end_ms + CHAOS_ROUND_GRACE_MS);
}

/* Runs the fault schedule until `end_ms` (see faults_go_on). */
void run_faults(int64_t end_ms, uint64_t *rng)
{
    int order[F_KINDS], norder = 0, next = 0, first_round_done = 0;
    while (faults_go_on(end_ms, first_round_done)) {
        sleep_ms(rand_between(rng, CHAOS_FAULT_GAP_MIN_MS, CHAOS_FAULT_GAP_MAX_MS));
        mem_sample();
        full_disk_sample();
        check_servers();
        if (!faults_go_on(end_ms, first_round_done))
            break;
        if (next >= norder) { /* a new shuffled round: each kind in use once */
            norder = 0;
            for (int i = 0; i < F_KINDS; i++)
                if (kind_in_use(i))
                    order[norder++] = i;
            for (int i = norder - 1; i > 0; i--) {
                int j = (int)(cluster_rand(rng) % (uint64_t)(i + 1)), t = order[i];
                order[i] = order[j];
                order[j] = t;
            }
            next = 0;
        }
        avail_fault_begin((enum fault)order[next]);
        inject((enum fault)order[next++], rng);
        first_round_done |= next >= norder;
        if (cluster_wait_ready(C, C->nds, CHAOS_RECOVER_MS) != 0)
            say("the cluster did not become whole again in %d ms", CHAOS_RECOVER_MS);
        avail_fault_end();
    }
}
