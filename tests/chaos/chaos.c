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
 * Environment: CHAOS_SECONDS (load duration, default 60),
 * CHAOS_HB_TIMEOUT_MS (the nameserver's heartbeat timeout, default 3000: a
 * server out longer than that is declared down and its blocks are copied
 * elsewhere; set it above CHAOS_DOWN_MAX_MS to leave re-replication out),
 * IMGSTORE_SEED
 * (replay: the seed drives sizes, operation mix, fault kinds, victims and
 * moments; thread timing still varies), IMGSTORE_BIN, IMGSTORE_KEEP=1.
 * Output ends with one "N passed, N failed" line per invariant; the exit
 * status is 0 when every invariant held. */
#include "tests/integ/cluster.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHAOS_DEFAULT_SECONDS 60
#define CHAOS_NDS 3
#define CHAOS_REPLICAS 2
#define CHAOS_BLOCK_SIZE (4u << 20) /* small blocks: sealing and new blocks happen */
#define CHAOS_HB_TIMEOUT_MS 3000
#define CHAOS_SAFE_MODE_MS 5000
#define CHAOS_WORKERS 4
#define CHAOS_MAX_FILES (256u << 10)
#define CHAOS_MAX_SIZE (128u << 10)
#define CHAOS_FAULT_GAP_MIN_MS 1500 /* quiet time between faults */
#define CHAOS_FAULT_GAP_MAX_MS 5000
#define CHAOS_DOWN_MIN_MS 300       /* how long a killed or frozen server stays out */
#define CHAOS_DOWN_MAX_MS 4000
#define CHAOS_RECOVER_MS 40000      /* deadline for the cluster to be whole again */
#define CHAOS_ROUND_GRACE_MS 180000 /* the load may go on this long to finish a round */
#define CHAOS_FLIPS 8               /* bytes flipped per damaged block */
#define CHAOS_FINAL_ATTEMPTS 5      /* reads of one file at the end before giving up */
#define CHAOS_MAX_DAMAGED 256
#define CHAOS_DELETE_SHARE 5        /* at most one acknowledged upload in 5 is deleted */
#define CHAOS_HTTP_SAMPLE 20        /* one file in this many is also read over HTTP */
#define CHAOS_TASK_WAIT_MS 20000    /* how long to wait for a copy / compaction to run */
#define CHAOS_SLOW_COPY_MB 1        /* copy_rate (MB/s) while aiming at a running task */
#define CHAOS_TMPFS_MB 96           /* size of the data folder that fills up */
#define CHAOS_FULL_FREE (8u << 20)  /* below this much free space it counts as full */
#define CHAOS_MEM_WARMUP_MS 20000   /* RSS after this much of a process's life is its base */
#define CHAOS_MEM_SLACK_KB (64 * 1024)
/* Servers built with ASan (make asan) hold freed memory in a quarantine of
 * up to 256 MiB (ASan's quarantine_size_mb) before reusing it: their RSS
 * grows by that much with no leak, so the bound allows it. */
#if defined(__SANITIZE_ADDRESS__)
#define CHAOS_MEM_SAN_KB (256 * 1024)
#else
#define CHAOS_MEM_SAN_KB 0
#endif
#define CHAOS_CUT_MIN_MS 1000       /* how long a partition lasts */
#define CHAOS_CUT_MAX_MS 8000
#define NS_COPY_RATE_MB 50          /* the nameserver's defaults, restored after a fault */
#define NS_COMPACT_PCT 30

enum fault {
    F_KILL_DS, F_KILL_NS, F_STOP_DS, F_FLIP_DS, F_FLIP_IDX, F_KILL_COPY, F_KILL_COMPACT,
    F_VANISH_DIR, F_PARTITION, F_ROUND, /* kinds above: the shuffled rounds */
    F_POWER_DS = F_ROUND, F_POWER_ALL, F_FULL_DISK, F_KINDS
};
static const char *fault_names[F_KINDS] = {"kill -9 + restart dataserver",
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
                                           "data folder on a small tmpfs (fills up)"};
/* Kinds of the shuffled rounds: the power cuts need the IMG_FAULT_FS build
 * (CHAOS_POWER_CUT=1, set by make chaos-powercut). */
static int nkinds = F_ROUND;
/* The full data folder is set up once at the start, when allowed. */
static int full_disk_ds = -1;      /* dataserver on the tmpfs, -1: none */
static int64_t full_since_ms = -1; /* first time it was seen full */
static uint64_t full_min_free = UINT64_MAX; /* least free space seen there */
static int64_t load_start_ms;      /* when the load and the faults began */
static unsigned long copy_hits, copy_misses, compact_hits, compact_misses;

enum state { S_FREE, S_PUTTING, S_ACKED, S_PUT_FAILED, S_DELETING, S_DELETED, S_DEL_FAILED };

struct file {
    char name[IMGSTORE_NAME_MAX];
    uint32_t size;
    uint8_t state;
    uint64_t deleted_at; /* op clock when the delete was acknowledged */
};

struct inv {
    const char *what;
    atomic_ulong passed, failed;
};

static struct cluster *C;
static uint64_t seed;
static imgstore_t *H;
static struct file *files;
static atomic_uint nfiles;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_ulong op_clock;
static atomic_int stop_load;

static atomic_ulong puts_ok, puts_failed, gets_ok, gets_failed, dels_ok, dels_failed;
static atomic_ulong gets_gone; /* reads of deleted files answered deleted / not found */

/* The most frequent errors of failed operations, for the report. */
#define CHAOS_ERR_KINDS 8
struct errs {
    int code[CHAOS_ERR_KINDS];
    unsigned long n[CHAOS_ERR_KINDS];
};
static struct errs put_errs, get_errs, del_errs;

static void count_err(struct errs *e, int rc)
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

static void print_errs(const char *what, const struct errs *e)
{
    printf("chaos: %s failed with:", what);
    for (int k = 0; k < CHAOS_ERR_KINDS && e->n[k]; k++)
        printf(" %s %lu;", imgstore_strerror(e->code[k]), e->n[k]);
    printf("\n");
}
static unsigned long faults[F_KINDS];
static int killed_by_us[CLUSTER_MAX_DS + 1]; /* index CLUSTER_MAX_DS: the nameserver */

static struct inv inv_uploads = {.what = "acknowledged uploads readable, byte-identical"};
static struct inv inv_deletes = {.what = "acknowledged deletes stay deleted"};
static struct inv inv_bytes = {.what = "no wrong bytes ever returned"};
static struct inv inv_servers = {.what = "servers not killed never crashed, clean stop"};
static struct inv inv_http = {.what = "HTTP GET on any dataserver agrees (sample)"};
static struct inv inv_memory = {.what = "server memory stays bounded (VmRSS)"};

/* Blocks already damaged on some server (never damaged twice). */
static uint64_t damaged[CHAOS_MAX_DAMAGED];
static int ndamaged;

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void say(const char *fmt, ...)
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

static void fail_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void fail_say(const char *fmt, ...)
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

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static int rand_between(uint64_t *rng, int lo, int hi)
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
    int rc = imgstore_get(H, f.name, &data, &len);
    if (rc != 0) {
        if (f.state == S_DELETED && (rc == IMGSTORE_EDELETED || rc == IMGSTORE_ENOTFOUND)) {
            gets_gone++;
        } else {
            gets_failed++;
            count_err(&get_errs, rc);
        }
        return;
    }
    gets_ok++;
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
    int rc = imgstore_put(H, buf, size, NULL, name);
    free(buf);
    pthread_mutex_lock(&lock);
    if (rc == 0) {
        memcpy(files[i].name, name, sizeof(name));
        files[i].state = S_ACKED;
    } else {
        files[i].state = S_PUT_FAILED;
    }
    pthread_mutex_unlock(&lock);
    if (rc == 0) {
        puts_ok++;
    } else {
        puts_failed++;
        count_err(&put_errs, rc);
    }
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
    int rc = imgstore_unlink(H, name);
    pthread_mutex_lock(&lock);
    if (rc == 0) {
        files[i].state = S_DELETED;
        files[i].deleted_at = ++op_clock;
    } else {
        files[i].state = S_DEL_FAILED;
    }
    pthread_mutex_unlock(&lock);
    if (rc == 0) {
        dels_ok++;
    } else {
        dels_failed++;
        count_err(&del_errs, rc);
    }
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
        } else if ((dels_ok + dels_failed) * CHAOS_DELETE_SHARE < puts_ok) {
            /* Deletes stop at one file in CHAOS_DELETE_SHARE, so a long
             * run keeps most of its files live. */
            int64_t i = pick(&rng, 0);
            if (i >= 0)
                load_delete((uint32_t)i);
        }
    }
    return NULL;
}

/* ---- faults ---------------------------------------------------------------- */

/* ---- the network namespace of one dataserver ------------------------------ */

/* With root and `ip netns`, one dataserver (part_ds) runs in its own network
 * namespace at 10.78.N.2, joined to the host by a veth pair whose host end
 * is 10.78.N.1; every other server listens on 10.78.N.1, so every address
 * is reachable from both sides. A partition takes the host end down. */
static int part_ds = -1;
static int netns_fd = -1, rootns_fd = -1;
static char netns_name[32], veth_host[16];

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Runs a shell command (output to the driver's stderr); returns its exit
 * status (0 when it succeeded). */
static int sh(const char *fmt, ...)
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
static int start_ds(int i)
{
    int in_ns = i == part_ds && setns(netns_fd, CLONE_NEWNET) == 0;
    int rc = cluster_start_ds(C, i);
    if (in_ns && setns(rootns_fd, CLONE_NEWNET) != 0)
        say("setns back to the host's network: %s", strerror(errno));
    return rc;
}

static int proc_slot(const struct cluster_proc *p)
{
    return p == &C->ns ? CLUSTER_MAX_DS : (int)(p - C->ds);
}

/* Checks that every server we did not take down is running; a server that
 * died on its own is a failure of invariant 4 and is restarted. */
static void check_servers(void)
{
    struct cluster_proc *all[CLUSTER_MAX_DS + 1];
    int n = 0;
    all[n++] = &C->ns;
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
        if (p == &C->ns)
            cluster_start_ns(C);
        else
            start_ds((int)(p - C->ds));
    }
}

static int is_damaged(uint64_t id)
{
    for (int i = 0; i < ndamaged; i++)
        if (damaged[i] == id)
            return 1;
    return 0;
}

/* Flips CHAOS_FLIPS bytes (one bit each) past the first `skip` bytes of one
 * file with `suffix` ("blk": block file past its superblock, "idx": index
 * file past its header) of a block of `p` not damaged anywhere before.
 * Returns the block id, or 0 when none qualifies. */
static uint64_t flip_file(const struct cluster_proc *p, const char *suffix, off_t skip,
                          uint64_t *rng)
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
    char path[900];
    snprintf(path, sizeof(path), "%s/%016llx.%s", dir, (unsigned long long)ids[k], suffix);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return 0;
    for (int f = 0; f < CHAOS_FLIPS; f++) {
        off_t at = skip + (off_t)(cluster_rand(rng) % (uint64_t)(sizes[k] - skip));
        uint8_t b;
        if (pread(fd, &b, 1, at) == 1) {
            b ^= (uint8_t)(1u << (cluster_rand(rng) % 8));
            if (pwrite(fd, &b, 1, at) != 1)
                say("pwrite %s: %s", path, strerror(errno));
        }
    }
    close(fd);
    damaged[ndamaged++] = ids[k];
    return ids[k];
}

/* ---- ds-admin -------------------------------------------------------------- */

/* Runs `ds-admin --ns NS ARGS...`; returns its stdout (malloc'd) when it
 * exited 0, else NULL (with a line saying why). */
static char *admin(const char *a1, const char *a2, const char *a3, const char *a4)
{
    const char *argv[] = {"ds-admin", "--ns", C->ns.addr, a1, a2, a3, a4, NULL};
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

static void admin_set(const char *key, unsigned long v)
{
    char val[32];
    snprintf(val, sizeof(val), "%lu", v);
    free(admin("set", key, val, NULL));
}

/* The server id of dataserver i (its data folder's SERVER_ID file). */
static int server_id(int i, char *out, size_t n)
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

/* Copies the string value of "key" inside [obj, end) of a JSON object. */
static void json_str(const char *obj, const char *end, const char *key, char *out, size_t n)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\": \"", key);
    out[0] = '\0';
    const char *k = strstr(obj, pat);
    if (!k || k >= end)
        return;
    k += strlen(pat);
    const char *q = strchr(k, '"');
    if (!q || q > end)
        return;
    snprintf(out, n, "%.*s", (int)(q - k), k);
}

/* Looks for a running background task of `kind` ("replicate", "compact") in
 * `ds-admin --json tasks`; fills its block, source and target dataserver
 * indexes (-1 when none) and returns 1, or 0 when none runs. */
static int running_task(const char *kind, unsigned long long *block, int *src, int *dst)
{
    char *out = admin("--json", "tasks", NULL, NULL);
    int found = 0;
    for (const char *o = out ? strstr(out, "{\"id\": ") : NULL; o && !found;
         o = strstr(o + 1, "{\"id\": ")) {
        const char *end = strchr(o, '}');
        if (!end)
            break;
        char k[32], st[32], sid[80], tid[80];
        json_str(o, end, "kind", k, sizeof(k));
        json_str(o, end, "state", st, sizeof(st));
        if (strcmp(k, kind) != 0 || strcmp(st, "running") != 0)
            continue;
        json_str(o, end, "source", sid, sizeof(sid));
        json_str(o, end, "target", tid, sizeof(tid));
        const char *b = strstr(o, "\"block_id\": ");
        *block = b && b < end ? strtoull(b + 12, NULL, 10) : 0;
        *src = ds_of_id(sid);
        *dst = ds_of_id(tid);
        found = *src >= 0 || *dst >= 0;
    }
    free(out);
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

static void mem_sample(void)
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
static void mem_report(void)
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
static int full_disk_setup(int i)
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

static void full_disk_sample(void)
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

static void full_disk_teardown(void)
{
    if (full_disk_ds >= 0 && umount2(C->ds[full_disk_ds].data, MNT_DETACH) != 0)
        say("umount %s: %s", C->ds[full_disk_ds].data, strerror(errno));
}

/* A dataserver other than the one on the tmpfs (its folder cannot be
 * renamed: a mount point). */
static int pick_not_tmpfs(uint64_t *rng)
{
    int v = (int)(cluster_rand(rng) % (uint64_t)C->nds);
    return v == full_disk_ds ? (v + 1) % C->nds : v;
}

/* Waits until a running task of `kind` shows, for CHAOS_TASK_WAIT_MS, and
 * then kills -9 one of its servers (the source or the target, at random);
 * returns that server's index or -1 when none ran in time. */
static int kill_during_task(const char *kind, uint64_t *rng, unsigned long long *block)
{
    int64_t deadline = cluster_now_ms() + CHAOS_TASK_WAIT_MS;
    while (cluster_now_ms() < deadline) {
        int src = -1, dst = -1;
        if (running_task(kind, block, &src, &dst)) {
            int v = src < 0 ? dst : dst < 0 ? src : (cluster_rand(rng) & 1) ? src : dst;
            killed_by_us[v] = 1;
            cluster_signal_proc(&C->ds[v], SIGKILL);
            say("fault: kill -9 %s, %s of a running %s task of block %llu", C->ds[v].name,
                v == src ? "source" : "target", kind, *block);
            return v;
        }
        sleep_ms(100);
    }
    return -1;
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
    unsigned long long block = 0;
    int v = kill_during_task("replicate", rng, &block);
    if (v >= 0) {
        copy_hits++;
    } else {
        copy_misses++;
        v = x;
        say("no block copy ran within %d ms; kill -9 %s instead", CHAOS_TASK_WAIT_MS,
            C->ds[v].name);
        killed_by_us[v] = 1;
        cluster_signal_proc(&C->ds[v], SIGKILL);
    }
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
    unsigned long long block = 0;
    int v = kill_during_task("compact", rng, &block);
    if (v >= 0) {
        compact_hits++;
    } else {
        compact_misses++;
        v = (int)(cluster_rand(rng) % (uint64_t)C->nds);
        say("no compaction ran within %d ms; kill -9 %s instead", CHAOS_TASK_WAIT_MS,
            C->ds[v].name);
        killed_by_us[v] = 1;
        cluster_signal_proc(&C->ds[v], SIGKILL);
    }
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

static void partition_teardown(void)
{
    if (netns_name[0])
        sh("ip netns del %s 2>/dev/null", netns_name);
    netns_name[0] = '\0';
}

/* Replaces the host of "HOST:PORT" by `host`. */
static void set_host(char *addr, size_t n, const char *host)
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
static int partition_setup(int i)
{
    if (geteuid() != 0) {
        printf("chaos: network partition: skipped (needs root for network namespaces)\n");
        return -1;
    }
    unsigned net = 20 + (unsigned)getpid() % 200;
    snprintf(netns_name, sizeof(netns_name), "imgchaos%d", (int)getpid());
    snprintf(veth_host, sizeof(veth_host), "icv%d", (int)getpid() % 1000000);
    if (sh("ip netns add %s 2>/dev/null", netns_name) != 0) {
        printf("chaos: network partition: skipped (ip netns add not permitted here)\n");
        netns_name[0] = '\0';
        return -1;
    }
    char nspath[64];
    snprintf(nspath, sizeof(nspath), "/run/netns/%s", netns_name);
    netns_fd = open(nspath, O_RDONLY | O_CLOEXEC);
    rootns_fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (netns_fd < 0 || rootns_fd < 0 ||
        sh("ip link add %s type veth peer name eth0 netns %s && ip addr add 10.78.%u.1/24 dev %s"
           " && ip link set %s up",
           veth_host, netns_name, net, veth_host, veth_host) != 0 ||
        sh("ip netns exec %s sh -c 'ip addr add 10.78.%u.2/24 dev eth0 && ip link set eth0 up"
           " && ip link set lo up'",
           netns_name, net) != 0) {
        printf("chaos: network partition: skipped (cannot set up the veth pair)\n");
        partition_teardown();
        return -1;
    }
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
    say("%s in network namespace %s at %s; the others at %s", C->ds[i].name, netns_name, inner,
        host);
    return 0;
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
    if (kind == F_KILL_COPY || kind == F_KILL_COMPACT || kind == F_VANISH_DIR) {
        if (kind == F_KILL_COPY)
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
    struct cluster_proc *p = kind == F_KILL_NS ? &C->ns : &C->ds[v];
    int down_ms = rand_between(rng, CHAOS_DOWN_MIN_MS, CHAOS_DOWN_MAX_MS);
    faults[kind]++;
    killed_by_us[proc_slot(p)] = 1;
    switch (kind) {
    case F_KILL_DS:
    case F_KILL_NS:
        say("fault: kill -9 %s, restart in %d ms", p->name, down_ms);
        cluster_signal_proc(p, SIGKILL);
        sleep_ms(down_ms);
        if (kind == F_KILL_NS)
            cluster_start_ns(C);
        else
            start_ds(v);
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
    default:
        break;
    }
    killed_by_us[proc_slot(p)] = 0;
}

static int kind_in_use(int k)
{
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
static void run_faults(int64_t end_ms, uint64_t *rng)
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
            for (int i = 0; i < nkinds; i++)
                if (kind_in_use(i))
                    order[norder++] = i;
            for (int i = norder - 1; i > 0; i--) {
                int j = (int)(cluster_rand(rng) % (uint64_t)(i + 1)), t = order[i];
                order[i] = order[j];
                order[j] = t;
            }
            next = 0;
        }
        inject((enum fault)order[next++], rng);
        first_round_done |= next >= norder;
        if (cluster_wait_ready(C, C->nds, CHAOS_RECOVER_MS) != 0)
            say("the cluster did not become whole again in %d ms", CHAOS_RECOVER_MS);
    }
}

/* ---- final checks ------------------------------------------------------------ */

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
    struct cluster_proc *all[CLUSTER_MAX_DS + 1];
    int n = 0;
    for (int i = 0; i < C->nds; i++)
        all[n++] = &C->ds[i];
    all[n++] = &C->ns;
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
                         &inv_memory};
    int bad = 0;
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        if (!failed_only || all[i]->failed)
            printf("invariant %zu, %s: %lu passed, %lu failed\n", i + 1, all[i]->what,
                   (unsigned long)all[i]->passed, (unsigned long)all[i]->failed);
        bad |= all[i]->failed != 0;
    }
    for (int k = 0; k < nkinds; k++)
        if (kind_in_use(k) && faults[k] == 0) {
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
        if (!kind_in_use(k) && k != F_FULL_DISK)
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
    if (part_ds < 0)
        printf("chaos: network partition: not injected (skipped at start)\n");
    printf("chaos: uploads acknowledged %lu, failed %lu; reads ok %lu, of deleted files %lu, "
           "failed %lu; deletes acknowledged %lu, failed %lu\n",
           (unsigned long)puts_ok, (unsigned long)puts_failed, (unsigned long)gets_ok,
           (unsigned long)gets_gone, (unsigned long)gets_failed, (unsigned long)dels_ok,
           (unsigned long)dels_failed);
    print_errs("uploads", &put_errs);
    print_errs("reads", &get_errs);
    print_errs("deletes", &del_errs);
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
    seed = cluster_seed("chaos");
    uint64_t rng = seed;
    signal(SIGPIPE, SIG_IGN);
    files = calloc(CHAOS_MAX_FILES, sizeof(*files));
    struct cluster_opts o = {.ndataservers = CHAOS_NDS, .replicas = CHAOS_REPLICAS,
                             .block_size = CHAOS_BLOCK_SIZE,
                             .heartbeat_timeout_ms = env_int("CHAOS_HB_TIMEOUT_MS",
                                                             CHAOS_HB_TIMEOUT_MS),
                             .safe_mode_timeout_ms = CHAOS_SAFE_MODE_MS};
    if (!files || cluster_start(&o, &C) != 0) {
        printf("chaos: the cluster did not start\n0 passed, 1 failed\n");
        return 1;
    }
    if (partition_setup(1) == -2) {
        partition_teardown();
        cluster_stop(C);
        return 1;
    }
    if (full_disk_setup(C->nds - 1) == 0) {
        full_disk_ds = C->nds - 1;
        faults[F_FULL_DISK] = 1;
    }
    struct imgstore_opts ho = {.timeout_ms = 8000, .io_timeout_ms = 2000};
    if (imgstore_open(C->ns.addr, &ho, &H) != 0) {
        printf("chaos: cannot open a client handle\n");
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
    final_checks();
    check_servers();
    mem_report();
    stop_servers();
    full_disk_teardown();
    partition_teardown();
    imgstore_close(H);
    int bad = report();
    C->passed = !bad;
    cluster_stop(C); /* prints the servers' logs when bad */
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
