/* chaos.c - the chaos suite: a real cluster under a mixed concurrent load
 * (uploads, reads, deletes through the client library) while faults are
 * injected at random moments, then a check of the invariants that matter to
 * users (docs/reliability.md):
 *
 *   1. every acknowledged upload is readable, byte-identical;
 *   2. every acknowledged delete stays deleted;
 *   3. no read ever returns wrong bytes (during the run and at the end);
 *   4. servers that were not killed never crashed, and every server stops
 *      cleanly on SIGTERM at the end;
 *   5. at the end, a sample of the files read over HTTP from a random
 *      dataserver agrees: 200 and the bytes when live, 404/410 when deleted.
 *
 *   6. the memory of the servers stays bounded: VmRSS of every server process
 *      is sampled between faults; a process that lived past the warm-up
 *      (CHAOS_MEM_WARMUP_MS) must end at most 2x its RSS after warm-up plus
 *      64 MiB (plus 256 MiB under ASan, for its quarantine; survivors at
 *      the end of the run; killed ones at their last sample).
 *
 *   7. no request failed that could have been served (availability, issue
 *      20; avail.c): every failed read or delete of a live file, outside the
 *      nameserver's downtime and the faults that take every replica away,
 *      and every failed upload, counted per fault kind. Enforced only with
 *      CHAOS_AVAIL_STRICT=1; by default the table and one report line are
 *      printed and the run does not fail on it.
 *
 * Faults, one at a time, each kind at least once per run (in a shuffled
 * round-robin order; a short run goes on past CHAOS_SECONDS, at most
 * CHAOS_ROUND_GRACE_MS, until the first round is complete): kill -9 and restart of a dataserver; kill -9 and
 * restart of the nameserver; SIGSTOP then SIGCONT of a dataserver (a frozen
 * server); bytes flipped in a block file of a killed dataserver, then
 * restart; bytes flipped in an index file (.idx) of a killed dataserver, then
 * restart; kill -9 of the source or the target of a running block copy
 * (copies started by `ds-admin drain` with the copy rate lowered, so they
 * last seconds), then the drain cancelled and the server restarted; kill -9
 * of a dataserver running a compaction (`ds-admin set compact_threshold 1`
 * for the time of the fault); a data folder renamed away while its server
 * runs, renamed back and the server restarted. A data folder that fills up:
 * when the driver runs as root and can mount a tmpfs, the last dataserver's
 * data folder is a CHAOS_TMPFS_MB tmpfs for the whole run (counted once);
 * otherwise one line says it was skipped. After each fault the driver waits
 * until the cluster is whole again before the next one. A block is damaged
 * (block or index file) on at most one server, so one good copy always
 * exists. A network partition: when the driver is root and may create
 * network namespaces, ds2 runs in its own namespace (10.78.N.2, the other
 * servers on the host end of its veth pair, 10.78.N.1; set up right after
 * the cluster starts, which is then restarted on those addresses with empty
 * folders) and the fault takes the host end of the veth down for 1 to 8 s;
 * otherwise one line says it was skipped.
 *
 * With CHAOS_POWER_CUT=1 and the dataservers of the IMG_FAULT_FS build
 * (make chaos-powercut), two more kinds: a power cut of one dataserver, and
 * of every dataserver at once (each throws away the block-file writes no
 * completed fdatasync covers; see dataserver/uring.c), then restart.
 *
 * With CHAOS_AVAIL_FAULTS=1, three more kinds in the rounds: one bit of one
 * record's header (seq, cookie or MIME) flipped in a killed dataserver's
 * block file, then restart (the block counts as damaged); a dataserver
 * restarted with --capacity 1M (full) for 3 to 10 s, then restarted
 * without; kill -9 of the nameserver for CHAOS_NS_AWAY_MS (default 60000,
 * at most half of CHAOS_SECONDS) while the load goes on, then restart.
 *
 * With CHAOS_HA=1 (make chaos-ha; ha.c), the HA mode: one etcd, two
 * nameservers in one group, and the rounds hold kill -9 of the leader,
 * SIGSTOP of the leader past the TTL, kill -9 of etcd (each restarted),
 * etcd cut off from the leader, and (ha_net.c; when the driver may create
 * network namespaces, each nameserver runs in its own, else one line says
 * the kind is skipped) a network partition of the leader: its veth down,
 * mostly past the TTL; no dataserver fault, no dataserver partition, no full
 * disk (compactions run as usual: a hold whose leader went is released by
 * the dataservers, docs/dataserver.md). Invariant 7
 * is enforced (CHAOS_AVAIL_STRICT defaults to 1; a nameserver killed or
 * frozen is no excuse, etcd down excuses uploads and deletes), and
 *
 *   8. no two nameservers acted in the same epoch (their logs and the
 *      dataservers' say who led each epoch);
 *   9. a leader cut off (from etcd, or by a partition) past the TTL stopped
 *      acting within the TTL, after a partition the other led in a higher
 *      epoch before it ended, and once back the old leader follows.
 *
 * Skipped with one line when etcd is not installed.
 *
 * With CHAOS_EC=1 (make chaos-ec; ec.c), the erasure-coding mode: seven
 * dataservers, `ds-admin set ec 4+2`, sealed blocks encoded under the load
 * (`ds-admin ec encode --all-sealed` every 2 s), and the rounds hold kill -9
 * of a dataserver and of the nameserver, kill -9 of two dataservers holding
 * shards of one stripe (sometimes kept down until a shard is rebuilt
 * elsewhere) and bytes flipped in a shard file of a killed dataserver; no
 * partition, no full disk. Invariants 1-6 (7 reported) and
 *
 *  10. at the end every stripe is whole: k+m shards on distinct up
 *      servers, none bad, each file on its holder, no damaged file named;
 *  11. the effective storage factor (raw / logical bytes) is below 2.0.
 *
 * Environment: CHAOS_SECONDS (load duration, default 60),
 * CHAOS_HB_TIMEOUT_MS (the nameserver's heartbeat timeout, default 3000: a
 * server out longer than that is declared down and its blocks are copied
 * elsewhere; set it above CHAOS_DOWN_MAX_MS to leave re-replication out),
 * IMGSTORE_SEED
 * (replay: the seed drives sizes, operation mix, fault kinds, victims and
 * moments; thread timing still varies), IMGSTORE_BIN, IMGSTORE_KEEP=1,
 * CHAOS_AVAIL_STRICT, CHAOS_AVAIL_FAULTS, CHAOS_NS_AWAY_MS, CHAOS_HA, CHAOS_EC, CHAOS_NO_PARTITION
 * (replay a seed of a machine without network namespaces).
 * Output ends with one "N passed, N failed" line per invariant; the exit
 * status is 0 when every invariant held.
 *
 * Files: chaos.c (this one: main, the load workers, the final checks, the
 * report), faults.c (fault injection), env.c (network namespace, tmpfs,
 * memory sampling, ds-admin helpers), avail.c (availability per fault
 * kind), ha.c (the HA mode), ha_net.c (its namespaces, invariant 9), ec.c
 * (the erasure-coding mode, invariants 10 and 11), chaos.h (what they
 * share). */
#include "tests/chaos/chaos.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int64_t load_start_ms;      /* when the load and the faults began */
static int avail_strict;    /* CHAOS_AVAIL_STRICT=1: invariant 7 fails the run */

struct cluster *C;
uint64_t seed;
imgstore_t *H;
struct file *files;
atomic_uint nfiles;
pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_ulong op_clock;
static atomic_int stop_load;

/* The outcomes of one kind of operation of the load. */
struct tally {
    atomic_ulong ok, failed;
    struct errs errs; /* the failures by error */
};

static struct tally uploads, reads, deletes;
static atomic_ulong gets_gone; /* reads of deleted files answered deleted / not found */

void count_err(struct errs *e, int rc)
{
    pthread_mutex_lock(&lock);
    for (int k = 0; k < CHAOS_ERR_KINDS; k++)
        if (e->n[k] == 0 || e->code[k] == rc) {
            e->code[k] = rc;
            e->n[k]++;
            break;
        }
    pthread_mutex_unlock(&lock);
}

/* Counts one operation that returned rc: acknowledged, or failed with rc. */
static void tally(struct tally *t, int rc)
{
    if (rc == 0) {
        t->ok++;
    } else {
        t->failed++;
        count_err(&t->errs, rc);
    }
}

void print_errs(const char *what, const struct errs *e)
{
    printf("chaos: %s failed with:", what);
    for (int k = 0; k < CHAOS_ERR_KINDS && e->n[k]; k++)
        printf(" %s %lu;", imgstore_strerror(e->code[k]), e->n[k]);
    printf("\n");
}

struct inv inv_uploads = {.what = "acknowledged uploads readable, byte-identical"};
struct inv inv_deletes = {.what = "acknowledged deletes stay deleted"};
struct inv inv_bytes = {.what = "no wrong bytes ever returned"};
struct inv inv_servers = {.what = "servers not killed never crashed, clean stop"};
struct inv inv_http = {.what = "HTTP GET on any dataserver agrees (sample)"};
struct inv inv_memory = {.what = "server memory stays bounded (VmRSS)"};

void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "[chaos %6.1fs] ", (double)cluster_now_ms() / 1000.0);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* The first failures of invariants, said again after the servers' logs at
 * the end of a failed run (the end is what a CI log keeps). */
#define CHAOS_KEPT_FAILURES 12
static char kept_failures[CHAOS_KEPT_FAILURES][256];
static int nkept_failures;
static unsigned long nfailures;

void fail_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

void fail_say(const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    say("%s", msg);
    nfailures++;
    if (nkept_failures < CHAOS_KEPT_FAILURES)
        memcpy(kept_failures[nkept_failures++], msg, sizeof(msg));
}

void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

int rand_between(uint64_t *rng, int lo, int hi)
{
    return lo + (int)(cluster_rand(rng) % (uint64_t)(hi - lo + 1));
}

/* ---- the load ------------------------------------------------------------ */

/* Says what every dataserver answers for `name`, to find the wrong one. */
static void probe_replicas(const char *name)
{
    for (int d = 0; d < C->nds; d++) {
        void *data = NULL;
        size_t len = 0;
        int rc = imgstore_get_from(H, name, C->ds[d].addr, &data, &len);
        say("  %s (%s): %s", C->ds[d].name, C->ds[d].addr,
            rc == 0 ? "serves the bytes" : imgstore_strerror(rc));
        if (rc == 0)
            imgstore_free(data);
    }
}

/* Reads file i and checks it. `start` is the op clock when the read began. */
static void load_get(uint32_t i, uint64_t start)
{
    pthread_mutex_lock(&lock);
    struct file f = files[i];
    pthread_mutex_unlock(&lock);
    void *data = NULL;
    size_t len = 0;
    struct avail_mark am;
    avail_start(&am);
    int rc = imgstore_get(H, f.name, &data, &len);
    /* Availability: reads of files deleted (or being deleted) are left out. */
    pthread_mutex_lock(&lock);
    int still_live = f.state == S_ACKED && files[i].state == S_ACKED;
    pthread_mutex_unlock(&lock);
    if (still_live)
        avail_end(&am, A_READ, rc, f.name);
    if (rc != 0) {
        if (f.state == S_DELETED && (rc == IMGSTORE_EDELETED || rc == IMGSTORE_ENOTFOUND)) {
            gets_gone++;
        } else {
            tally(&reads, rc);
        }
        return;
    }
    tally(&reads, 0);
    if (f.state == S_DELETED && f.deleted_at < start) {
        fail_say("file %u (%s) was read after its delete was acknowledged", i, f.name);
        inv_deletes.failed++;
        probe_replicas(f.name);
    }
    void *want = malloc(f.size ? f.size : 1);
    cluster_fill(want, f.size, seed, i);
    if (len != f.size || memcmp(data, want, f.size) != 0) {
        fail_say("file %u (%s): WRONG BYTES (%zu bytes, want %u)", i, f.name, len, f.size);
        inv_bytes.failed++;
    } else {
        inv_bytes.passed++;
    }
    free(want);
    imgstore_free(data);
}

static void load_put(uint64_t *rng)
{
    uint32_t i = atomic_fetch_add(&nfiles, 1);
    if (i >= CHAOS_MAX_FILES) {
        nfiles = CHAOS_MAX_FILES;
        return;
    }
    uint32_t size = cluster_log_size(rng, CHAOS_MAX_SIZE);
    pthread_mutex_lock(&lock);
    files[i].size = size;
    files[i].state = S_PUTTING;
    pthread_mutex_unlock(&lock);
    void *buf = malloc(size);
    char name[IMGSTORE_NAME_MAX];
    cluster_fill(buf, size, seed, i);
    struct avail_mark am;
    avail_start(&am);
    int rc = imgstore_put(H, buf, size, NULL, name);
    avail_end(&am, A_UPLOAD, rc, NULL);
    free(buf);
    pthread_mutex_lock(&lock);
    if (rc == 0) {
        memcpy(files[i].name, name, sizeof(name));
        files[i].state = S_ACKED;
    } else {
        files[i].state = S_PUT_FAILED;
    }
    pthread_mutex_unlock(&lock);
    tally(&uploads, rc);
}

static void load_delete(uint32_t i)
{
    char name[IMGSTORE_NAME_MAX];
    pthread_mutex_lock(&lock);
    if (files[i].state != S_ACKED) {
        pthread_mutex_unlock(&lock);
        return;
    }
    files[i].state = S_DELETING;
    memcpy(name, files[i].name, sizeof(name));
    pthread_mutex_unlock(&lock);
    struct avail_mark am;
    avail_start(&am);
    int rc = imgstore_unlink(H, name);
    avail_end(&am, A_DELETE, rc, name);
    pthread_mutex_lock(&lock);
    if (rc == 0) {
        files[i].state = S_DELETED;
        files[i].deleted_at = ++op_clock;
    } else {
        files[i].state = S_DEL_FAILED;
    }
    pthread_mutex_unlock(&lock);
    tally(&deletes, rc);
}

/* Picks a file in state `want` (or deleted, when also_deleted), or -1. */
static int64_t pick(uint64_t *rng, int also_deleted)
{
    uint32_t n = nfiles < CHAOS_MAX_FILES ? nfiles : CHAOS_MAX_FILES;
    for (int tries = 0; n > 0 && tries < 8; tries++) {
        uint32_t i = (uint32_t)(cluster_rand(rng) % n);
        pthread_mutex_lock(&lock);
        int st = files[i].state;
        pthread_mutex_unlock(&lock);
        if (st == S_ACKED || (also_deleted && st == S_DELETED))
            return i;
    }
    return -1;
}

static void *worker(void *arg)
{
    uint64_t rng = seed ^ (uint64_t)(uintptr_t)arg * 0x9e3779b97f4a7c15ull;
    while (!stop_load) {
        unsigned dice = (unsigned)(cluster_rand(&rng) % 100);
        if (dice < 45) {
            load_put(&rng);
        } else if (dice < 90) {
            uint64_t start = ++op_clock;
            int64_t i = pick(&rng, 1);
            if (i >= 0)
                load_get((uint32_t)i, start);
        } else if ((deletes.ok + deletes.failed) * CHAOS_DELETE_SHARE < uploads.ok) {
            /* Deletes stop at one file in CHAOS_DELETE_SHARE, so a long
             * run keeps most of its files live. */
            int64_t i = pick(&rng, 0);
            if (i >= 0)
                load_delete((uint32_t)i);
        }
    }
    return NULL;
}

/* ---- final checks ------------------------------------------------------------ */

/* Checks that every server we did not take down is running; a server that
 * died on its own is a failure of invariant 4 and is restarted. */
void check_servers(void)
{
    struct cluster_proc *all[CLUSTER_MAX_DS + 2];
    int n = 0;
    all[n++] = &C->ns;
    if (ha_on)
        all[n++] = &ha_ns2;
    for (int i = 0; i < C->nds; i++)
        all[n++] = &C->ds[i];
    for (int i = 0; i < n; i++) {
        struct cluster_proc *p = all[i];
        if (killed_by_us[proc_slot(p)])
            continue;
        if (cluster_alive(p)) {
            inv_servers.passed++;
            continue;
        }
        fail_say("%s died without being killed; restarting it", p->name);
        inv_servers.failed++;
        if (p == &C->ns && !ha_on)
            cluster_start_ns(C);
        else if (p == &C->ns || p == &ha_ns2)
            ha_net_start_ns(p);
        else
            start_ds((int)(p - C->ds));
    }
}

/* GET /name on the HTTP port `addr` (one request, Connection: close).
 * Returns the status code with *body (malloc'd) and *len, or -1. */
static int http_get(const char *addr, const char *name, char **body, size_t *len)
{
    *body = NULL;
    *len = 0;
    int fd = cluster_connect(addr, 5000);
    if (fd < 0)
        return -1;
    char req[256];
    int n = snprintf(req, sizeof(req), "GET /%s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n",
                     name, addr);
    if (write(fd, req, (size_t)n) != n) {
        close(fd);
        return -1;
    }
    size_t cap = 1 << 16, got = 0;
    char *buf = malloc(cap + 1);
    for (;;) {
        if (got == cap) {
            cap *= 2;
            buf = realloc(buf, cap + 1);
        }
        ssize_t r = read(fd, buf + got, cap - got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    buf[got] = '\0';
    int status = -1;
    char *eoh = strstr(buf, "\r\n\r\n");
    if (sscanf(buf, "HTTP/1.1 %d", &status) != 1 || !eoh) {
        free(buf);
        return -1;
    }
    *len = got - (size_t)(eoh + 4 - buf);
    *body = malloc(*len + 1);
    memcpy(*body, eoh + 4, *len);
    free(buf);
    return status;
}

/* Reads file i over HTTP from a random dataserver (the file may be local
 * there or fetched from a replica): 200 with the right bytes for a live
 * file, 404 or 410 for a deleted one. */
static void check_http(uint32_t i, uint64_t *rng)
{
    struct file *f = &files[i];
    const struct cluster_proc *p = &C->ds[cluster_rand(rng) % (uint64_t)C->nds];
    char *body = NULL;
    size_t len = 0;
    int status = http_get(p->http_addr, f->name, &body, &len);
    int ok;
    if (f->state == S_DELETED) {
        ok = status == 404 || status == 410;
    } else {
        void *want = malloc(f->size ? f->size : 1);
        cluster_fill(want, f->size, seed, i);
        ok = status == 200 && len == f->size && memcmp(body, want, f->size) == 0;
        free(want);
    }
    if (ok) {
        inv_http.passed++;
    } else {
        fail_say("file %u (%s, %s): HTTP GET on %s answered %d with %zu bytes", i, f->name,
            f->state == S_DELETED ? "deleted" : "live", p->name, status, len);
        inv_http.failed++;
    }
    free(body);
}

/* Waits (up to CHAOS_RECOVER_MS) until the nameserver is out of safe mode
 * and reports no lost and no under-replicated block (every block has the
 * replication count of good copies of its current replica set): the repair
 * of the last faults is over before the files are checked. */
static void wait_healed(void)
{
    int64_t deadline = cluster_now_ms() + CHAOS_RECOVER_MS;
    int calm = 0;
    while (cluster_now_ms() < deadline && calm < 2) {
        Imgstore__ClusterStatusResp *st = NULL;
        int ok = imgstore_admin_cluster_status(H, &st) == 0 && !st->safe_mode &&
                 st->blocks_lost == 0 && st->blocks_under_replicated == 0;
        imgstore_admin_free_status(st);
        calm = ok ? calm + 1 : 0;
        if (calm < 2)
            usleep(500 * 1000);
    }
    if (calm < 2)
        say("the cluster still reports lost or under-replicated blocks after %d ms",
            CHAOS_RECOVER_MS);
}

static void final_checks(void)
{
    uint32_t n = nfiles < CHAOS_MAX_FILES ? nfiles : CHAOS_MAX_FILES;
    uint64_t rng = seed ^ 0x4854545047455421ull;
    for (uint32_t i = 0; i < n; i++) {
        struct file *f = &files[i];
        if (f->state != S_ACKED && f->state != S_DELETED)
            continue;
        if (cluster_rand(&rng) % CHAOS_HTTP_SAMPLE == 0)
            check_http(i, &rng);
        int rc = -1;
        void *data = NULL;
        size_t len = 0;
        for (int a = 0; a < CHAOS_FINAL_ATTEMPTS; a++) {
            rc = imgstore_get(H, f->name, &data, &len);
            if (rc == 0 || rc == IMGSTORE_EDELETED || rc == IMGSTORE_ENOTFOUND)
                break;
            sleep_ms(500);
        }
        if (f->state == S_DELETED) {
            if (rc == 0) {
                fail_say("file %u (%s): deleted, but still readable", i, f->name);
                inv_deletes.failed++;
            } else if (rc == IMGSTORE_EDELETED || rc == IMGSTORE_ENOTFOUND) {
                inv_deletes.passed++;
            } else {
                fail_say("file %u (%s): deleted; the read failed with %s", i, f->name,
                    imgstore_strerror(rc));
                inv_deletes.failed++;
            }
        } else if (rc != 0) {
            fail_say("file %u (%s, %u bytes): LOST: %s", i, f->name, f->size, imgstore_strerror(rc));
            inv_uploads.failed++;
        }
        if (rc != 0) {
            continue;
        }
        void *want = malloc(f->size ? f->size : 1);
        cluster_fill(want, f->size, seed, i);
        int same = len == f->size && memcmp(data, want, f->size) == 0;
        free(want);
        imgstore_free(data);
        if (f->state == S_ACKED) {
            if (same)
                inv_uploads.passed++;
            else
                inv_uploads.failed++;
        }
        if (same) {
            inv_bytes.passed++;
        } else {
            fail_say("file %u (%s): WRONG BYTES at the end (%zu bytes, want %u)", i, f->name, len,
                f->size);
            inv_bytes.failed++;
        }
    }
}

/* Stops every server with SIGTERM: each must exit with status 0. */
static void stop_servers(void)
{
    struct cluster_proc *all[CLUSTER_MAX_DS + 2];
    int n = 0;
    for (int i = 0; i < C->nds; i++)
        all[n++] = &C->ds[i];
    all[n++] = &C->ns;
    if (ha_on)
        all[n++] = &ha_ns2;
    for (int i = 0; i < n; i++) {
        if (!cluster_alive(all[i])) {
            fail_say("%s was not running at the end", all[i]->name);
            inv_servers.failed++;
            continue;
        }
        int st = cluster_signal_proc(all[i], SIGTERM);
        if (st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0) {
            inv_servers.passed++;
        } else {
            fail_say("%s did not stop cleanly on SIGTERM (status %d)", all[i]->name, st);
            inv_servers.failed++;
        }
    }
}

/* Prints one line per invariant (only the failed ones when failed_only) and
 * the fault kinds never injected; returns 1 when the run failed. */
static int report_invariants(int failed_only)
{
    struct inv *all[] = {&inv_uploads, &inv_deletes, &inv_bytes, &inv_servers, &inv_http,
                         &inv_memory, &inv_avail, &inv_epochs, &inv_cutoff, &inv_stripes,
                         &inv_factor};
    /* Invariant 7 (availability) is one of them only with CHAOS_AVAIL_STRICT=1
     * (the default in the HA mode); otherwise avail_report prints it as a
     * report line. Invariants 8 and 9 only in the HA mode, 10 and 11 only
     * in the EC mode. */
    size_t ninv = sizeof(all) / sizeof(all[0]);
    int bad = 0;
    for (size_t i = 0; i < ninv; i++) {
        if ((all[i] == &inv_avail && !avail_strict) ||
            ((all[i] == &inv_epochs || all[i] == &inv_cutoff) && !ha_on) ||
            ((all[i] == &inv_stripes || all[i] == &inv_factor) && !ec_on))
            continue;
        if (!failed_only || all[i]->failed)
            printf("invariant %zu, %s: %lu passed, %lu failed\n", i + 1, all[i]->what,
                   (unsigned long)all[i]->passed, (unsigned long)all[i]->failed);
        bad |= all[i]->failed != 0;
    }
    for (int k = 0; k < F_KINDS; k++)
        if ((k < nkinds || ha_on || ec_on) && kind_in_use(k) &&
            faults[k] == 0) {
            printf("chaos: fault kind \"%s\" was never injected (run longer)\n", fault_names[k]);
            bad = 1;
        }
    fflush(stdout);
    return bad;
}

static int report(void)
{
    unsigned long total = 0;
    printf("chaos: seed %llu (replay with IMGSTORE_SEED=%llu)\n", (unsigned long long)seed,
           (unsigned long long)seed);
    for (int k = 0; k < F_KINDS; k++) {
        if (!kind_in_use(k) && (k != F_FULL_DISK || ec_on))
            continue;
        printf("chaos: faults: %-42s %lu\n", fault_names[k], faults[k]);
        total += faults[k];
    }
    printf("chaos: faults: total %lu\n", total);
    printf("chaos: kills that hit a running task: copies %lu of %lu, compactions %lu of %lu\n",
           copy_hits, copy_hits + copy_misses, compact_hits, compact_hits + compact_misses);
    if (full_disk_ds >= 0) {
        if (full_since_ms >= 0)
            printf("chaos: %s's %d MiB data folder was full from %.1f s into the run on\n",
                   C->ds[full_disk_ds].name, CHAOS_TMPFS_MB,
                   (double)(full_since_ms - load_start_ms) / 1000.0);
        else
            printf("chaos: %s's %d MiB data folder was not seen full (least free space "
                   "sampled: %llu KiB; run longer)\n",
                   C->ds[full_disk_ds].name, CHAOS_TMPFS_MB,
                   (unsigned long long)full_min_free / 1024);
    }
    if (part_ds < 0 && !ha_on && !ec_on)
        printf("chaos: network partition: not injected (skipped at start)\n");
    printf("chaos: uploads acknowledged %lu, failed %lu; reads ok %lu, of deleted files %lu, "
           "failed %lu; deletes acknowledged %lu, failed %lu\n",
           (unsigned long)uploads.ok, (unsigned long)uploads.failed, (unsigned long)reads.ok,
           (unsigned long)gets_gone, (unsigned long)reads.failed, (unsigned long)deletes.ok,
           (unsigned long)deletes.failed);
    print_errs("uploads", &uploads.errs);
    print_errs("reads", &reads.errs);
    print_errs("deletes", &deletes.errs);
    if (ha_on)
        ha_cutoff_report();
    ec_report();
    avail_report(avail_strict);
    return report_invariants(0);
}

static int env_int(const char *name, int dflt)
{
    const char *env = getenv(name);
    return env && *env ? atoi(env) : dflt;
}

int main(void)
{
    int seconds = env_int("CHAOS_SECONDS", CHAOS_DEFAULT_SECONDS);
    if (env_int("CHAOS_POWER_CUT", 0))
        nkinds = F_POWER_ALL + 1;
    avail_strict = env_int("CHAOS_AVAIL_STRICT", 0) != 0;
    avail_faults = env_int("CHAOS_AVAIL_FAULTS", 0) != 0;
    ns_away_ms = env_int("CHAOS_NS_AWAY_MS", CHAOS_NS_AWAY_MS);
    if (ns_away_ms > seconds * 1000 / 2)
        ns_away_ms = seconds * 1000 / 2;
    seed = cluster_seed("chaos");
    uint64_t rng = seed;
    signal(SIGPIPE, SIG_IGN);
    files = calloc(CHAOS_MAX_FILES, sizeof(*files));
    struct cluster_opts o = {.ndataservers = CHAOS_NDS, .replicas = CHAOS_REPLICAS,
                             .block_size = CHAOS_BLOCK_SIZE,
                             .heartbeat_timeout_ms = env_int("CHAOS_HB_TIMEOUT_MS",
                                                             CHAOS_HB_TIMEOUT_MS),
                             .safe_mode_timeout_ms = CHAOS_SAFE_MODE_MS};
    if (env_int("CHAOS_HA", 0)) {
        int rc = ha_setup(&o);
        if (rc == 1) {
            printf("0 passed, 0 failed\n");
            free(files);
            return 0;
        }
        if (rc != 0) {
            printf("chaos: etcd did not start\n0 passed, 1 failed\n");
            ha_teardown();
            return 1;
        }
        avail_strict = env_int("CHAOS_AVAIL_STRICT", 1) != 0;
    } else if (env_int("CHAOS_EC", 0)) {
        ec_setup(&o);
    }
    if (!files || cluster_start(&o, &C) != 0) {
        printf("chaos: the cluster did not start\n0 passed, 1 failed\n");
        ha_teardown();
        return 1;
    }
    if (ha_on && ha_start_ns2() != 0) {
        printf("chaos: the second nameserver did not start\n0 passed, 1 failed\n");
        cluster_stop(C);
        ha_teardown();
        return 1;
    }
    /* The HA mode: the nameservers in namespaces of their own (ha_net.c);
     * no dataserver partition, no full disk. */
    if (ha_on && ha_net_setup() == -2) {
        ha_net_teardown();
        cluster_stop(C);
        ha_teardown();
        return 1;
    }
    if (!ha_on && !ec_on && partition_setup(1) == -2) {
        partition_teardown();
        cluster_stop(C);
        return 1;
    }
    if (!ha_on && !ec_on && full_disk_setup(C->nds - 1) == 0) {
        full_disk_ds = C->nds - 1;
        faults[F_FULL_DISK] = 1;
    }
    struct imgstore_opts ho = {.timeout_ms = CHAOS_CLIENT_TIMEOUT_MS,
                               .io_timeout_ms = CHAOS_CLIENT_IO_TIMEOUT_MS};
    if (imgstore_open(C->ns_list, &ho, &H) != 0) {
        printf("chaos: cannot open a client handle\n");
        cluster_stop(C);
        return 1;
    }
    if (ha_on)
        wait_healed(); /* a fresh etcd prefix: the first leader's safe mode runs out */
    if (ec_on && ec_start() != 0) {
        printf("chaos: EC mode: `ds-admin set ec 4+2` failed\n0 passed, 1 failed\n");
        imgstore_close(H);
        cluster_stop(C);
        return 1;
    }
    say("load of %d workers and faults for %d s", CHAOS_WORKERS, seconds);
    load_start_ms = cluster_now_ms();
    pthread_t th[CHAOS_WORKERS];
    for (int i = 0; i < CHAOS_WORKERS; i++)
        pthread_create(&th[i], NULL, worker, (void *)(uintptr_t)(i + 1));
    run_faults(cluster_now_ms() + (int64_t)seconds * 1000, &rng);
    stop_load = 1;
    for (int i = 0; i < CHAOS_WORKERS; i++)
        pthread_join(th[i], NULL);
    say("load stopped; waiting for the cluster to be whole, then checking every file");
    check_servers();
    cluster_wait_ready(C, C->nds, CHAOS_RECOVER_MS);
    wait_healed();
    ec_wait_whole();
    ec_stop_encoder();
    final_checks();
    ec_check();
    check_servers();
    mem_report();
    stop_servers();
    ha_check_epochs();
    full_disk_teardown();
    partition_teardown();
    ha_net_teardown();
    imgstore_close(H);
    int bad = report();
    C->passed = !bad;
    cluster_stop(C); /* prints the servers' logs when bad */
    ha_teardown();
    if (bad) {
        printf("chaos: what failed (seed %llu):\n", (unsigned long long)seed);
        for (int i = 0; i < nkept_failures; i++)
            printf("chaos:   %s\n", kept_failures[i]);
        if (nfailures > (unsigned long)nkept_failures)
            printf("chaos:   ... and %lu more\n", nfailures - (unsigned long)nkept_failures);
        report_invariants(1);
    }
    free(files);
    return bad;
}
