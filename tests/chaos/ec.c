/* ec.c - the erasure-coding mode of the chaos driver (CHAOS_EC=1, `make
 * chaos-ec`): CHAOS_EC_NDS dataservers (a 4+2 stripe needs six distinct
 * servers; the seventh takes rebuilt shards), `ds-admin set ec 4+2`, the
 * scrubber at CHAOS_EC_SCRUB_MB MB/s (so a damaged shard is found within
 * seconds), and a thread that runs `ds-admin ec encode --all-sealed` every
 * CHAOS_EC_ENCODE_MS while the load goes on, so sealed blocks are encoded
 * under the faults. The fault kinds of this mode (with the standard kill -9
 * of a dataserver and of the nameserver):
 *
 *   - kill -9 of two dataservers holding shards of one stripe (found from
 *     the shard files on disk), restarted after 0.3 to 4 s, or one time in
 *     three kept down until the nameserver has rebuilt one of their shards
 *     of that stripe on another server (at most CHAOS_EC_LONG_MS);
 *   - kill -9 of a dataserver, CHAOS_FLIPS bytes flipped (one bit each) in
 *     one of its shard files past the header (anywhere after it, or one
 *     time in three all in the record table after the payload), restart. At most one shard of a stripe is damaged in a run, so with
 *     two holders down k good shards are left.
 *
 * Invariants of the mode, checked at the end once the stripes had time to
 * heal (CHAOS_EC_WHOLE_MS):
 *
 *  10. every stripe is whole: the nameserver names k+m shards on k+m
 *      distinct up servers, none bad, each holder has the shard file on
 *      disk, and no damaged shard file is still named (it was found and
 *      rebuilt);
 *  11. the effective storage factor (raw / logical bytes, `ds-admin
 *      status`) is below 2.0.
 *
 * The stripes are the blocks the encoder thread started encoding and those
 * with a shard file on some server. The block info comes from the
 * nameserver (ADMIN_BLOCK_INFO through the client library); the encodings
 * are started with ds-admin (an operator key). Calls the cluster helper,
 * the client library, env.c (admin, start_ds) and chaos.c's say. */
#include "tests/chaos/chaos.h"

#include "client/admin.h"
#include "proto/frame.h"
#include "proto/imgstore.pb-c.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define EC_K 4
#define EC_M 2
#define EC_N (EC_K + EC_M)
#define EC_MAX_STRIPES 8192
#define EC_MAX_DAMAGED 256

int ec_on;
struct inv inv_stripes = {.what = "every stripe whole at the end (k+m distinct up holders)"};
struct inv inv_factor = {.what = "effective storage factor below 2.0"};

/* Blocks whose encoding the driver started (under ec_lock). */
static uint64_t started[EC_MAX_STRIPES];
static int nstarted;
static pthread_mutex_t ec_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_t enc_th;
static atomic_int enc_stop, enc_running;
static atomic_ulong enc_calls, enc_failed_calls, enc_tasks;

/* Kills of two holders, and the long ones that saw a shard rebuilt. */
static unsigned long two_long, two_rebuilt_while_down, two_no_stripe;

/* A shard file damaged by F_EC_FLIP_SHARD: where, and the bytes it now has
 * at the flipped offsets (a rebuilt file differs there). */
struct damage {
    uint64_t block;
    int index, ds, n; /* n: the offsets flipped (each once) */
    off_t at[CHAOS_FLIPS];
    uint8_t now[CHAOS_FLIPS];
};
static struct damage damage[EC_MAX_DAMAGED];
static int ndamage;
static unsigned long flips_table, flips_payload;

/* Final figures. */
static unsigned long fin_stripes, fin_whole, fin_replicated, fin_stale_files;

/* ---- setup and the encoder thread --------------------------------------------- */

void ec_setup(struct cluster_opts *o)
{
    o->ndataservers = CHAOS_EC_NDS;
    ec_on = 1;
    say("EC mode: %d dataservers, %d+%d, encodings every %d ms", CHAOS_EC_NDS, EC_K, EC_M,
        CHAOS_EC_ENCODE_MS);
}

/* Notes a block whose encoding was started (once). */
static void note_started(uint64_t id)
{
    pthread_mutex_lock(&ec_lock);
    int seen = 0;
    for (int i = 0; i < nstarted && !seen; i++)
        seen = started[i] == id;
    if (!seen && nstarted < EC_MAX_STRIPES)
        started[nstarted++] = id;
    pthread_mutex_unlock(&ec_lock);
}

/* One `ds-admin --json ec encode --all-sealed`: the blocks whose encoding
 * started. Quiet when it fails (the nameserver may be down, in safe mode or
 * at its task cap): counted. */
static void encode_all(void)
{
    const char *argv[] = {"ds-admin", "--ns", C->ns_list, "--json", "ec", "encode",
                          "--all-sealed", NULL};
    struct cluster_run r;
    enc_calls++;
    if (cluster_run(C, argv, NULL, NULL, 10000, &r) != 0) {
        enc_failed_calls++;
        return;
    }
    json_t *doc = r.exit_code == 0 && r.out ? json_loads(r.out, 0, NULL) : NULL;
    if (!doc)
        enc_failed_calls++;
    json_t *tasks = json_object_get(doc, "tasks");
    for (size_t i = 0; i < json_array_size(tasks); i++) {
        json_t *b = json_object_get(json_array_get(tasks, i), "block");
        if (json_is_integer(b) && json_integer_value(b) > 0) {
            note_started((uint64_t)json_integer_value(b));
            enc_tasks++;
        }
    }
    json_decref(doc);
    cluster_run_free(&r);
}

static void *encoder(void *arg)
{
    (void)arg;
    while (!enc_stop) {
        encode_all();
        for (int t = 0; t < CHAOS_EC_ENCODE_MS / 100 && !enc_stop; t++)
            sleep_ms(100);
    }
    return NULL;
}

int ec_start(void)
{
    char *out = admin("set", "ec", "4+2", NULL);
    if (!out)
        return -1;
    free(out);
    admin_set("scrub_rate", CHAOS_EC_SCRUB_MB);
    if (pthread_create(&enc_th, NULL, encoder, NULL) != 0)
        return -1;
    enc_running = 1;
    return 0;
}

void ec_stop_encoder(void)
{
    if (!enc_running)
        return;
    enc_stop = 1;
    pthread_join(enc_th, NULL);
    enc_running = 0;
}

/* ---- shard files on disk ---------------------------------------------------------- */

/* The shard indexes of block `id` held in dataserver d's folder (a mask), or
 * with id 0 every shard file there: calls fn(id, index) for each. */
static unsigned shard_files(int d, uint64_t id, void (*fn)(uint64_t, int, void *), void *arg)
{
    char dir[600];
    snprintf(dir, sizeof(dir), "%s/blocks", C->ds[d].data);
    DIR *dh = opendir(dir);
    if (!dh)
        return 0;
    unsigned mask = 0;
    for (struct dirent *e; (e = readdir(dh));) {
        unsigned long long b;
        unsigned idx;
        char tail;
        if (strlen(e->d_name) != 20 || sscanf(e->d_name, "%16llx.s%2u%c", &b, &idx, &tail) != 2 ||
            e->d_name[16] != '.' || idx >= EC_N)
            continue;
        if (id && b != id)
            continue;
        mask |= 1u << idx;
        if (fn)
            fn((uint64_t)b, (int)idx, arg);
    }
    closedir(dh);
    return mask;
}

/* The blocks with a shard file on a running server, and on which servers. */
struct on_disk {
    uint64_t id[EC_MAX_STRIPES];
    unsigned ds_mask[EC_MAX_STRIPES];
    int n, cur_ds;
};

static void note_file(uint64_t id, int index, void *arg)
{
    (void)index;
    struct on_disk *o = arg;
    int i = 0;
    while (i < o->n && o->id[i] != id)
        i++;
    if (i == o->n) {
        if (o->n == EC_MAX_STRIPES)
            return;
        o->id[o->n] = id;
        o->ds_mask[o->n++] = 0;
    }
    o->ds_mask[i] |= 1u << o->cur_ds;
}

static void scan_disk(struct on_disk *o, int running_only)
{
    o->n = 0;
    for (int d = 0; d < C->nds; d++) {
        if (running_only && (killed_by_us[d] || !C->ds[d].pid))
            continue;
        o->cur_ds = d;
        shard_files(d, 0, note_file, o);
    }
}

static int damaged_block(uint64_t id)
{
    for (int i = 0; i < ndamage; i++)
        if (damage[i].block == id)
            return 1;
    return 0;
}

/* ---- the stripe as the nameserver sees it ----------------------------------------- */

struct stripe {
    int ec;          /* 1: the block is encoded (k+m known) */
    int replicas;    /* replicated copies still listed */
    int holder[EC_N]; /* dataserver index of each shard, -1: none or unknown */
    int up[EC_N], bad[EC_N];
};

/* ADMIN_BLOCK_INFO of block id: 0 with *s, or an error (IMGSTORE_ENOTFOUND:
 * not in the block map, no stripe). */
static int stripe_info(uint64_t id, struct stripe *s)
{
    memset(s, 0, sizeof(*s));
    for (int i = 0; i < EC_N; i++)
        s->holder[i] = -1;
    Imgstore__AdminBlockInfo q = IMGSTORE__ADMIN_BLOCK_INFO__INIT;
    q.block_id = id;
    ProtobufCMessage *m = NULL;
    int rc = imgstore_admin_call(H, NULL, FT_ADMIN_BLOCK_INFO, &q.base,
                                 &imgstore__admin_block_info_resp__descriptor, &m);
    if (rc != 0)
        return rc;
    const Imgstore__AdminBlock *b = ((Imgstore__AdminBlockInfoResp *)m)->block;
    if (b) {
        s->replicas = (int)b->n_replicas;
        s->ec = b->ec_k == EC_K && b->ec_m == EC_M;
        for (size_t i = 0; s->ec && i < b->n_shards; i++) {
            const Imgstore__AdminShard *sh = b->shards[i];
            if (sh->index >= EC_N)
                continue;
            s->holder[sh->index] = sh->addr && *sh->addr ? cluster_ds_index(C, sh->addr) : -1;
            s->up[sh->index] = sh->up;
            s->bad[sh->index] = sh->bad;
        }
    }
    protobuf_c_message_free_unpacked(m, NULL);
    return 0;
}

/* ---- the fault kinds ------------------------------------------------------------------ */

/* Two dataservers holding shards of one stripe: a stripe with shards on at
 * least two running servers (random), and two of them. 0, or -1 when no
 * stripe has two yet. */
static int pick_two(uint64_t *rng, uint64_t *block, int *a, int *b)
{
    struct on_disk *o = malloc(sizeof(*o));
    if (!o)
        return -1;
    scan_disk(o, 1);
    int cand = 0, pick = -1;
    for (int i = 0; i < o->n; i++)
        if (__builtin_popcount(o->ds_mask[i]) >= 2 && cluster_rand(rng) % (uint64_t)++cand == 0)
            pick = i;
    if (pick < 0) {
        free(o);
        return -1;
    }
    int ds[CLUSTER_MAX_DS], n = 0;
    for (int d = 0; d < C->nds; d++)
        if (o->ds_mask[pick] & (1u << d))
            ds[n++] = d;
    *block = o->id[pick];
    free(o);
    int i = (int)(cluster_rand(rng) % (uint64_t)n);
    int j = (int)(cluster_rand(rng) % (uint64_t)(n - 1));
    *a = ds[i];
    *b = ds[j >= i ? j + 1 : j];
    return 0;
}

/* 1 once the stripe of `block` names a holder other than a and b for a
 * shard that a or b held (lost_mask) and that holder is up. */
static int rebuilt_elsewhere(uint64_t block, unsigned lost_mask, int a, int b)
{
    struct stripe s;
    if (stripe_info(block, &s) != 0 || !s.ec)
        return 0;
    for (int i = 0; i < EC_N; i++)
        if ((lost_mask & (1u << i)) && s.holder[i] >= 0 && s.holder[i] != a &&
            s.holder[i] != b && s.up[i])
            return 1;
    return 0;
}

static void fault_kill_two(uint64_t *rng)
{
    uint64_t block = 0;
    int a, b;
    int down_ms = rand_between(rng, CHAOS_DOWN_MIN_MS, CHAOS_DOWN_MAX_MS);
    int long_down = cluster_rand(rng) % 3 == 0;
    faults[F_EC_KILL_TWO]++;
    if (pick_two(rng, &block, &a, &b) != 0) {
        two_no_stripe++;
        a = (int)(cluster_rand(rng) % (uint64_t)C->nds);
        b = (a + 1 + (int)(cluster_rand(rng) % (uint64_t)(C->nds - 1))) % C->nds;
        say("fault: no stripe with two holders yet; kill -9 %s and %s", C->ds[a].name,
            C->ds[b].name);
        long_down = 0;
    }
    unsigned lost = block ? shard_files(a, block, NULL, NULL) | shard_files(b, block, NULL, NULL)
                          : 0;
    killed_by_us[a] = killed_by_us[b] = 1;
    cluster_signal_proc(&C->ds[a], SIGKILL);
    cluster_signal_proc(&C->ds[b], SIGKILL);
    if (long_down) {
        two_long++;
        say("fault: kill -9 %s and %s (shards 0x%x of block %016" PRIx64 "), down until one "
            "is rebuilt elsewhere (at most %d ms)",
            C->ds[a].name, C->ds[b].name, lost, block, CHAOS_EC_LONG_MS);
        int64_t t0 = cluster_now_ms(), until = t0 + CHAOS_EC_LONG_MS;
        int done = 0;
        while (!done && cluster_now_ms() < until) {
            sleep_ms(250);
            done = rebuilt_elsewhere(block, lost, a, b);
        }
        if (done) {
            two_rebuilt_while_down++;
            say("a shard of block %016" PRIx64 " was rebuilt elsewhere %lld ms after the kill",
                block, (long long)(cluster_now_ms() - t0));
        } else {
            say("no shard of block %016" PRIx64 " rebuilt elsewhere within %d ms", block,
                CHAOS_EC_LONG_MS);
        }
    } else if (block) {
        say("fault: kill -9 %s and %s (shards 0x%x of block %016" PRIx64 "), restart in %d ms",
            C->ds[a].name, C->ds[b].name, lost, block, down_ms);
        sleep_ms(down_ms);
    } else {
        sleep_ms(down_ms);
    }
    start_ds(a);
    start_ds(b);
    killed_by_us[a] = killed_by_us[b] = 0;
}

/* Picks one shard file of dataserver d of a stripe never damaged: its path,
 * block and index; 0 or -1. */
struct pick_shard {
    uint64_t *rng;
    uint64_t block;
    int index, seen;
};

static void consider_shard(uint64_t id, int index, void *arg)
{
    struct pick_shard *p = arg;
    if (damaged_block(id))
        return;
    if (cluster_rand(p->rng) % (uint64_t)++p->seen == 0) {
        p->block = id;
        p->index = index;
    }
}

/* Flips CHAOS_FLIPS bytes of the shard file past its header (hdr_len, at
 * offset 44); records the damage. 0 or -1. */
static int flip_shard(int d, uint64_t block, int index, uint64_t *rng)
{
    char path[700];
    snprintf(path, sizeof(path), "%s/blocks/%016" PRIx64 ".s%02d", C->ds[d].data, block, index);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct stat st;
    uint8_t hdr[64];
    if (fstat(fd, &st) != 0 || pread(fd, hdr, sizeof(hdr), 0) != (ssize_t)sizeof(hdr)) {
        close(fd);
        return -1;
    }
    uint32_t hdr_len;
    uint64_t L;
    memcpy(&hdr_len, hdr + 44, 4);
    memcpy(&L, hdr + 24, 8);
    if (hdr_len < 64 || (off_t)hdr_len + 64 > st.st_size || ndamage >= EC_MAX_DAMAGED) {
        close(fd);
        return -1;
    }
    struct damage *dm = &damage[ndamage];
    *dm = (struct damage){.block = block, .index = index, .ds = d};
    /* The record table is a few KiB after a payload of about 1 MiB: one
     * time in three every flip goes there, else anywhere past the header. */
    off_t from = hdr_len;
    if ((off_t)(hdr_len + L) + 16 < st.st_size && cluster_rand(rng) % 3 == 0)
        from = (off_t)(hdr_len + L);
    for (int f = 0; f < CHAOS_FLIPS; f++) {
        off_t at = from + (off_t)(cluster_rand(rng) % (uint64_t)(st.st_size - from));
        uint8_t byte;
        int again = 0;
        for (int g = 0; g < dm->n; g++)
            again |= dm->at[g] == at;
        if (again || pread(fd, &byte, 1, at) != 1)
            continue;
        byte ^= (uint8_t)(1u << (cluster_rand(rng) % 8));
        if (pwrite(fd, &byte, 1, at) != 1) {
            say("pwrite %s: %s", path, strerror(errno));
            continue;
        }
        dm->at[dm->n] = at;
        dm->now[dm->n++] = byte;
        if ((uint64_t)at >= hdr_len + L)
            flips_table++;
        else
            flips_payload++;
    }
    close(fd);
    ndamage++;
    return 0;
}

static void fault_flip_shard(uint64_t *rng)
{
    faults[F_EC_FLIP_SHARD]++;
    int start = (int)(cluster_rand(rng) % (uint64_t)C->nds), v = -1;
    struct pick_shard p = {.rng = rng};
    for (int t = 0; t < C->nds && v < 0; t++) {
        int d = (start + t) % C->nds;
        p.seen = 0;
        shard_files(d, 0, consider_shard, &p);
        if (p.seen)
            v = d;
    }
    if (v < 0) {
        v = start;
        say("fault: kill -9 %s (no shard file to damage yet), restart", C->ds[v].name);
        killed_by_us[v] = 1;
        cluster_signal_proc(&C->ds[v], SIGKILL);
        start_ds(v);
        killed_by_us[v] = 0;
        return;
    }
    killed_by_us[v] = 1;
    cluster_signal_proc(&C->ds[v], SIGKILL);
    if (flip_shard(v, p.block, p.index, rng) == 0)
        say("fault: kill -9 %s, %d bytes flipped in shard %d of block %016" PRIx64
            " past its header, restart",
            C->ds[v].name, CHAOS_FLIPS, p.index, p.block);
    else
        say("fault: kill -9 %s (shard %d of block %016" PRIx64 " not damaged), restart",
            C->ds[v].name, p.index, p.block);
    start_ds(v);
    killed_by_us[v] = 0;
}

void ec_inject(enum fault kind, uint64_t *rng)
{
    if (kind == F_EC_KILL_TWO)
        fault_kill_two(rng);
    else if (kind == F_EC_FLIP_SHARD)
        fault_flip_shard(rng);
}

/* ---- the end: invariants 10 and 11 ------------------------------------------------- */

/* 1 when damage d's file is still there with the flipped bytes. */
static int damage_present(const struct damage *d)
{
    char path[700];
    snprintf(path, sizeof(path), "%s/blocks/%016" PRIx64 ".s%02d", C->ds[d->ds].data, d->block,
             d->index);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    int same = d->n > 0;
    for (int f = 0; f < d->n && same; f++) {
        uint8_t byte;
        same = pread(fd, &byte, 1, d->at[f]) == 1 && byte == d->now[f];
    }
    close(fd);
    return same;
}

/* Checks stripe `id`; with say_why, says what is wrong. 1 whole, 0 not, -1
 * no stripe (the block is still replicated, or unknown). */
static int check_stripe(uint64_t id, int say_why)
{
    struct stripe s;
    int rc = stripe_info(id, &s);
    if (rc != 0 || !s.ec) {
        if (say_why && rc != 0 && rc != IMGSTORE_ENOTFOUND)
            say("block %016" PRIx64 ": block info: %s", id, imgstore_strerror(rc));
        return rc == 0 ? -1 : rc == IMGSTORE_ENOTFOUND ? -1 : 0;
    }
    unsigned seen = 0;
    for (int i = 0; i < EC_N; i++) {
        int h = s.holder[i];
        const char *why = h < 0 ? "no holder"
                          : !s.up[i] ? "holder down"
                          : s.bad[i] ? "reported bad"
                          : (seen & (1u << h)) ? "holder holds another shard of the stripe"
                          : !C->ds[h].pid ? "holder not running"
                          : !(shard_files(h, id, NULL, NULL) & (1u << i)) ? "no file on its holder"
                          : NULL;
        for (int k = 0; !why && k < ndamage; k++)
            if (damage[k].block == id && damage[k].index == i && damage[k].ds == h &&
                damage_present(&damage[k]))
                why = "the damaged file is still in service";
        if (why) {
            if (say_why)
                fail_say("block %016" PRIx64 ": shard %d: %s (%s)", id, i, why,
                         h >= 0 ? C->ds[h].name : "-");
            return 0;
        }
        seen |= 1u << h;
    }
    return 1;
}

/* Every block the driver knows as encoded or with shards on disk (ids[],
 * malloc'd; count returned). */
static int known_blocks(uint64_t **ids)
{
    struct on_disk *o = malloc(sizeof(*o));
    *ids = malloc(sizeof(uint64_t) * 2 * EC_MAX_STRIPES);
    if (!o || !*ids) {
        free(o);
        return 0;
    }
    scan_disk(o, 0);
    int n = 0;
    pthread_mutex_lock(&ec_lock);
    for (int i = 0; i < nstarted; i++)
        (*ids)[n++] = started[i];
    pthread_mutex_unlock(&ec_lock);
    int nstart = n;
    for (int i = 0; i < o->n; i++) {
        int dup = 0;
        for (int j = 0; j < nstart && !dup; j++)
            dup = (*ids)[j] == o->id[i];
        if (!dup)
            (*ids)[n++] = o->id[i];
    }
    free(o);
    return n;
}

/* Waits until every stripe is whole (at most CHAOS_EC_WHOLE_MS). */
void ec_wait_whole(void)
{
    if (!ec_on)
        return;
    int64_t t0 = cluster_now_ms(), until = t0 + CHAOS_EC_WHOLE_MS;
    int whole = 0;
    while (!whole && cluster_now_ms() < until) {
        uint64_t *ids;
        int n = known_blocks(&ids);
        whole = 1;
        for (int i = 0; i < n && whole; i++)
            whole = check_stripe(ids[i], 0) != 0;
        free(ids);
        if (!whole)
            sleep_ms(1000);
    }
    say("EC: stripes %s after %lld ms", whole ? "whole" : "NOT whole",
        (long long)(cluster_now_ms() - t0));
}

/* Counts the lines of path holding `what` (and `what2` after it, unless
 * NULL). */
static unsigned long log_count(const char *path, const char *what, const char *what2)
{
    void *buf = NULL;
    size_t len = 0;
    if (cluster_read_file(path, &buf, &len) != 0)
        return 0;
    unsigned long n = 0;
    char *s = buf, *end = s + len;
    for (char *p = s; p < end;) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t ll = nl ? (size_t)(nl - p) : (size_t)(end - p);
        const char *at = memmem(p, ll, what, strlen(what));
        if (at && (!what2 || memmem(at, ll - (size_t)(at - p), what2, strlen(what2))))
            n++;
        p += ll + 1;
    }
    free(buf);
    return n;
}

/* Invariants 10 and 11, and the figures of the mode (printed by
 * ec_report). */
void ec_check(void)
{
    if (!ec_on)
        return;
    uint64_t *ids;
    int n = known_blocks(&ids);
    for (int i = 0; i < n; i++) {
        int w = check_stripe(ids[i], 1);
        if (w < 0) {
            fin_replicated++;
            continue;
        }
        fin_stripes++;
        if (w) {
            fin_whole++;
            inv_stripes.passed++;
        } else {
            inv_stripes.failed++;
        }
    }
    /* Shard files no stripe names on that server (stale copies left). */
    for (int i = 0; i < n; i++) {
        struct stripe s;
        if (stripe_info(ids[i], &s) != 0)
            continue;
        for (int d = 0; d < C->nds; d++) {
            unsigned mask = shard_files(d, ids[i], NULL, NULL);
            for (int x = 0; x < EC_N; x++)
                if ((mask & (1u << x)) && (!s.ec || s.holder[x] != d))
                    fin_stale_files++;
        }
    }
    free(ids);
    Imgstore__ClusterStatusResp *st = NULL;
    if (imgstore_admin_cluster_status(H, &st) != 0 || !st->logical_bytes) {
        fail_say("EC: no cluster status for the storage factor");
        inv_factor.failed++;
    } else {
        double f = (double)st->raw_bytes / (double)st->logical_bytes;
        double ef = st->ec_logical_bytes ? (double)st->ec_raw_bytes / (double)st->ec_logical_bytes
                                         : 0.0;
        printf("chaos: EC: storage: %" PRIu64 " raw for %" PRIu64 " logical bytes: factor "
               "%.3f; %u stripes: %" PRIu64 " raw for %" PRIu64 " logical: factor %.3f\n",
               st->raw_bytes, st->logical_bytes, f, st->ec_stripes, st->ec_raw_bytes,
               st->ec_logical_bytes, ef);
        if (f < 2.0) {
            inv_factor.passed++;
        } else {
            fail_say("EC: storage factor %.3f, not below 2.0", f);
            inv_factor.failed++;
        }
    }
    imgstore_admin_free_status(st);
}

void ec_report(void)
{
    if (!ec_on)
        return;
    unsigned long begun = log_count(C->ns.log, ": encode block ", NULL);
    unsigned long encoded = log_count(C->ns.log, " encoded 4+2 (", NULL);
    unsigned long not_encoded = log_count(C->ns.log, "task ", " not encoded");
    unsigned long ns_rebuilt = log_count(C->ns.log, "task ", " rebuilt on ");
    unsigned long ns_moved = log_count(C->ns.log, "task ", " moved on ");
    unsigned long ds_rebuilt = 0, scrub_bad = 0;
    for (int d = 0; d < C->nds; d++) {
        ds_rebuilt += log_count(C->ds[d].log, " rebuilt here (", NULL);
        scrub_bad += log_count(C->ds[d].log, "fails its CRC32C; shard reported bad", NULL);
    }
    printf("chaos: EC: encode --all-sealed calls %lu (%lu failed) started %lu encodings; the "
           "nameserver's log: %lu begun, %lu blocks encoded, %lu failed or put off\n",
           (unsigned long)enc_calls, (unsigned long)enc_failed_calls, (unsigned long)enc_tasks,
           begun, encoded, not_encoded);
    printf("chaos: EC: shards rebuilt %lu (nameserver log; dataserver logs %lu), moved %lu; "
           "the scrubber found %lu bad chunks\n",
           ns_rebuilt, ds_rebuilt, ns_moved, scrub_bad);
    printf("chaos: EC: two holders killed: %lu, kept down for a rebuild %lu (rebuilt while down "
           "%lu), no stripe with two holders yet %lu\n",
           faults[F_EC_KILL_TWO], two_long, two_rebuilt_while_down, two_no_stripe);
    printf("chaos: EC: shard files damaged %d (bytes flipped in payloads %lu, record tables "
           "%lu)\n",
           ndamage, flips_payload, flips_table);
    printf("chaos: EC: at the end: %lu stripes (%lu whole), %lu blocks still replicated, %lu "
           "shard files not named by a stripe\n",
           fin_stripes, fin_whole, fin_replicated, fin_stale_files);
}
