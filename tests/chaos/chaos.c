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
 * Faults, one at a time, each kind at least once per run (in a shuffled
 * round-robin order): kill -9 and restart of a dataserver; kill -9 and
 * restart of the nameserver; SIGSTOP then SIGCONT of a dataserver (a frozen
 * server); bytes flipped in a block file of a killed dataserver, then
 * restart. After each fault the driver waits until the cluster is whole
 * again before the next one, so at most one replica of a file is ever out.
 * A block is damaged on at most one server, so one good copy always exists.
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
#include <sys/stat.h>
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
#define CHAOS_FLIPS 8               /* bytes flipped per damaged block */
#define CHAOS_FINAL_ATTEMPTS 5      /* reads of one file at the end before giving up */
#define CHAOS_MAX_DAMAGED 256
#define CHAOS_DELETE_SHARE 5        /* at most one acknowledged upload in 5 is deleted */
#define CHAOS_HTTP_SAMPLE 20        /* one file in this many is also read over HTTP */

enum fault { F_KILL_DS, F_KILL_NS, F_STOP_DS, F_FLIP_DS, F_POWER_DS, F_POWER_ALL, F_KINDS };
static const char *fault_names[F_KINDS] = {"kill -9 + restart dataserver",
                                           "kill -9 + restart nameserver",
                                           "SIGSTOP/SIGCONT dataserver",
                                           "bytes flipped in a block file + restart",
                                           "power cut of one dataserver + restart",
                                           "power cut of every dataserver + restart"};
/* Fault kinds in use: the power cuts need the IMG_FAULT_FS build
 * (CHAOS_POWER_CUT=1, set by make chaos-powercut). */
static int nkinds = F_POWER_DS;

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
        say("file %u (%s) was read after its delete was acknowledged", i, f.name);
        inv_deletes.failed++;
        probe_replicas(f.name);
    }
    void *want = malloc(f.size ? f.size : 1);
    cluster_fill(want, f.size, seed, i);
    if (len != f.size || memcmp(data, want, f.size) != 0) {
        say("file %u (%s): WRONG BYTES (%zu bytes, want %u)", i, f.name, len, f.size);
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
        say("%s died without being killed; restarting it", p->name);
        inv_servers.failed++;
        if (p == &C->ns)
            cluster_start_ns(C);
        else
            cluster_start_ds(C, (int)(p - C->ds));
    }
}

static int is_damaged(uint64_t id)
{
    for (int i = 0; i < ndamaged; i++)
        if (damaged[i] == id)
            return 1;
    return 0;
}

/* Flips CHAOS_FLIPS bytes past the superblock of one block file of `p` not
 * damaged anywhere before. Returns the block id, or 0 when none qualifies. */
static uint64_t flip_block(const struct cluster_proc *p, uint64_t *rng)
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
        char suffix[8];
        if (strlen(e->d_name) != 20 || sscanf(e->d_name, "%16llx.%3s", &id, suffix) != 2 ||
            strcmp(suffix, "blk") != 0 || is_damaged(id))
            continue;
        char path[900];
        struct stat st;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        if (stat(path, &st) == 0 && st.st_size > 64 + 64) {
            ids[n] = id;
            sizes[n++] = st.st_size;
        }
    }
    closedir(d);
    if (n == 0 || ndamaged >= CHAOS_MAX_DAMAGED)
        return 0;
    int k = (int)(cluster_rand(rng) % (uint64_t)n);
    char path[900];
    snprintf(path, sizeof(path), "%s/%016llx.blk", dir, (unsigned long long)ids[k]);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return 0;
    for (int f = 0; f < CHAOS_FLIPS; f++) {
        off_t at = 64 + (off_t)(cluster_rand(rng) % (uint64_t)(sizes[k] - 64));
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

static void inject(enum fault kind, uint64_t *rng)
{
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
            cluster_start_ds(C, i);
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
            cluster_start_ds(C, v);
        break;
    case F_POWER_DS:
        say("fault: power cut of %s, restart in %d ms", p->name, down_ms);
        power_cut(p);
        sleep_ms(down_ms);
        cluster_start_ds(C, v);
        break;
    case F_STOP_DS:
        say("fault: SIGSTOP %s for %d ms", p->name, down_ms);
        cluster_signal_proc(p, SIGSTOP);
        sleep_ms(down_ms);
        cluster_signal_proc(p, SIGCONT);
        break;
    case F_FLIP_DS: {
        cluster_signal_proc(p, SIGKILL);
        uint64_t id = flip_block(p, rng);
        if (id)
            say("fault: kill -9 %s, %d bytes flipped in block %016llx, restart", p->name,
                CHAOS_FLIPS, (unsigned long long)id);
        else
            say("fault: kill -9 %s (no block to damage yet), restart", p->name);
        cluster_start_ds(C, v);
        break;
    }
    default:
        break;
    }
    killed_by_us[proc_slot(p)] = 0;
}

/* Runs the fault schedule until `end_ms`. */
static void run_faults(int64_t end_ms, uint64_t *rng)
{
    int order[F_KINDS], next = F_KINDS;
    while (cluster_now_ms() < end_ms) {
        sleep_ms(rand_between(rng, CHAOS_FAULT_GAP_MIN_MS, CHAOS_FAULT_GAP_MAX_MS));
        check_servers();
        if (cluster_now_ms() >= end_ms)
            break;
        if (next >= nkinds) { /* a new shuffled round: each kind once */
            for (int i = 0; i < nkinds; i++)
                order[i] = i;
            for (int i = nkinds - 1; i > 0; i--) {
                int j = (int)(cluster_rand(rng) % (uint64_t)(i + 1)), t = order[i];
                order[i] = order[j];
                order[j] = t;
            }
            next = 0;
        }
        inject((enum fault)order[next++], rng);
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
        say("file %u (%s, %s): HTTP GET on %s answered %d with %zu bytes", i, f->name,
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
                say("file %u (%s): deleted, but still readable", i, f->name);
                inv_deletes.failed++;
            } else if (rc == IMGSTORE_EDELETED || rc == IMGSTORE_ENOTFOUND) {
                inv_deletes.passed++;
            } else {
                say("file %u (%s): deleted; the read failed with %s", i, f->name,
                    imgstore_strerror(rc));
                inv_deletes.failed++;
            }
        } else if (rc != 0) {
            say("file %u (%s, %u bytes): LOST: %s", i, f->name, f->size, imgstore_strerror(rc));
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
            say("file %u (%s): WRONG BYTES at the end (%zu bytes, want %u)", i, f->name, len,
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
            say("%s was not running at the end", all[i]->name);
            inv_servers.failed++;
            continue;
        }
        int st = cluster_signal_proc(all[i], SIGTERM);
        if (st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0) {
            inv_servers.passed++;
        } else {
            say("%s did not stop cleanly on SIGTERM (status %d)", all[i]->name, st);
            inv_servers.failed++;
        }
    }
}

static int report(void)
{
    unsigned long total = 0;
    printf("chaos: seed %llu (replay with IMGSTORE_SEED=%llu)\n", (unsigned long long)seed,
           (unsigned long long)seed);
    for (int k = 0; k < nkinds; k++) {
        printf("chaos: faults: %-42s %lu\n", fault_names[k], faults[k]);
        total += faults[k];
    }
    printf("chaos: faults: total %lu\n", total);
    printf("chaos: uploads acknowledged %lu, failed %lu; reads ok %lu, of deleted files %lu, "
           "failed %lu; deletes acknowledged %lu, failed %lu\n",
           (unsigned long)puts_ok, (unsigned long)puts_failed, (unsigned long)gets_ok,
           (unsigned long)gets_gone, (unsigned long)gets_failed, (unsigned long)dels_ok,
           (unsigned long)dels_failed);
    print_errs("uploads", &put_errs);
    print_errs("reads", &get_errs);
    print_errs("deletes", &del_errs);
    struct inv *all[] = {&inv_uploads, &inv_deletes, &inv_bytes, &inv_servers, &inv_http};
    int bad = 0;
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        printf("invariant %zu, %s: %lu passed, %lu failed\n", i + 1, all[i]->what,
               (unsigned long)all[i]->passed, (unsigned long)all[i]->failed);
        bad |= all[i]->failed != 0;
    }
    for (int k = 0; k < nkinds; k++)
        if (faults[k] == 0) {
            printf("chaos: fault kind \"%s\" was never injected (run longer)\n", fault_names[k]);
            bad = 1;
        }
    fflush(stdout);
    return bad;
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
        nkinds = F_KINDS;
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
    struct imgstore_opts ho = {.timeout_ms = 8000, .io_timeout_ms = 2000};
    if (imgstore_open(C->ns.addr, &ho, &H) != 0) {
        printf("chaos: cannot open a client handle\n");
        cluster_stop(C);
        return 1;
    }
    say("load of %d workers and faults for %d s", CHAOS_WORKERS, seconds);
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
    stop_servers();
    imgstore_close(H);
    int bad = report();
    C->passed = !bad;
    cluster_stop(C);
    free(files);
    return bad;
}
