/* store.c - the dataserver's data folders and the blocks on them.
 *
 * A data folder is <dir>/LOCK (flock'd while we run), <dir>/SERVER_ID (32 hex
 * chars and a newline, the same in every folder) and <dir>/blocks/ holding
 * <16 hex id>.blk/.idx/.meta (and .idz, a sealed block's packed index). store_open locks every folder first, so a
 * second process fails cleanly with IMG_ELOCKED before touching anything,
 * then agrees on the server id and opens (recovers) every block. A block that
 * cannot be opened is logged and left alone on disk; the server starts
 * without it (the nameserver re-replicates what is missing).
 *
 * Blocks live in an open-addressing hash table keyed by block id (linear
 * probing, at most half full, never shrinks; store_remove_block re-inserts
 * the rest of a probe run when a block is deleted). */
#include "dataserver/store.h"

#include "dataserver/ec_shard.h"

#include "base/err.h"
#include "base/fsutil.h"
#include "base/hexid.h"
#include "base/log.h"
#include "dataserver/blockio.h"

#include <dirent.h>
#include <errno.h>
#include <malloc.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define STORE_RING_ENTRIES 256
#define STORE_FREE_SLACK (256ull << 20) /* free bytes closer than this count as equal */
#define STORE_TABLE_MIN 64u
#define STORE_ID_FILE "SERVER_ID"
#define STORE_ID_BYTES (STORE_SERVER_ID_LEN / 2)
#define STORE_ID_FILE_MAX 256
#define BLOCK_NAME_HEX 16
#define BLOCK_SUFFIX ".blk"
#define COPY_TEMP_SUFFIX ".blk.copy" /* an interrupted block copy (ds_copy.c) */

static uint64_t hash64(uint64_t x)
{
    /* splitmix64 finaliser: block ids are sequential, so mix them. */
    x ^= x >> 30;
    x *= UINT64_C(0xbf58476d1ce4e5b9);
    x ^= x >> 27;
    x *= UINT64_C(0x94d049bb133111eb);
    return x ^ (x >> 31);
}

static void table_put(struct block **t, uint32_t cap, struct block *b)
{
    uint32_t i = (uint32_t)hash64(b->id) & (cap - 1);
    while (t[i])
        i = (i + 1) & (cap - 1);
    t[i] = b;
}

/* Makes room for one more block. Returns 0 or -ENOMEM (table unchanged). */
static int table_reserve(struct store *s)
{
    if ((uint64_t)(s->nblocks + 1) * 2 <= s->cap)
        return 0;
    uint32_t ncap = s->cap ? s->cap * 2 : STORE_TABLE_MIN;
    struct block **t = calloc(ncap, sizeof(*t));
    if (!t)
        return -ENOMEM;
    for (uint32_t i = 0; i < s->cap; i++)
        if (s->blocks[i])
            table_put(t, ncap, s->blocks[i]);
    free(s->blocks);
    s->blocks = t;
    s->cap = ncap;
    return 0;
}

struct block *store_get(struct store *s, uint64_t id)
{
    if (!s->cap)
        return NULL;
    uint32_t i = (uint32_t)hash64(id) & (s->cap - 1);
    while (s->blocks[i]) {
        if (s->blocks[i]->id == id)
            return s->blocks[i];
        i = (i + 1) & (s->cap - 1);
    }
    return NULL;
}

/* Adds b (ownership passes to the store). Call table_reserve first. */
static void store_add(struct store *s, struct block *b)
{
    table_put(s->blocks, s->cap, b);
    s->nblocks++;
}

static int blocks_dir(const struct store *s, int disk, char *out, size_t n)
{
    int len = snprintf(out, n, "%s/%s", s->disks[disk].path, STORE_BLOCKS_DIR);
    return len < 0 || (size_t)len >= n ? -ENAMETOOLONG : 0;
}

/* ---- server id ---- */

/* Reads <dir>/SERVER_ID into out (STORE_SERVER_ID_LEN + 1). Returns 0,
 * -ENOENT when there is none, IMG_EFORMAT when it is malformed, or -errno. */
static int id_read(const char *dir, char *out)
{
    char path[PATH_MAX], *text = NULL;
    size_t len;
    snprintf(path, sizeof(path), "%s/%s", dir, STORE_ID_FILE);
    int rc = fs_read_all(path, STORE_ID_FILE_MAX, &text, &len);
    if (rc == -EFBIG)
        return IMG_EFORMAT;
    if (rc != 0)
        return rc;
    if (len > 0 && text[len - 1] == '\n')
        len--;
    rc = len == STORE_SERVER_ID_LEN && hexid_valid(text, len) ? 0 : IMG_EFORMAT;
    if (rc == 0) {
        memcpy(out, text, STORE_SERVER_ID_LEN);
        out[STORE_SERVER_ID_LEN] = '\0';
    }
    free(text);
    return rc;
}

static int id_write(const char *dir, const char *id)
{
    char path[PATH_MAX], text[STORE_SERVER_ID_LEN + 2];
    snprintf(path, sizeof(path), "%s/%s", dir, STORE_ID_FILE);
    snprintf(text, sizeof(text), "%s\n", id);
    return fs_write_atomic(path, text, STORE_SERVER_ID_LEN + 1);
}

/* Agrees on one server id across the folders: the folders that have one
 * must all have the same; folders without one get it (a fresh one if none
 * has any). */
static int agree_server_id(struct store *s)
{
    int missing[STORE_MAX_DISKS] = {0};
    char id[STORE_SERVER_ID_LEN + 1];
    s->server_id[0] = '\0';
    for (int i = 0; i < s->ndisks; i++) {
        int rc = id_read(s->disks[i].path, id);
        if (rc == -ENOENT) {
            missing[i] = 1;
            continue;
        }
        if (rc != 0) {
            log_error("store: %s/%s: %s", s->disks[i].path, STORE_ID_FILE, img_strerror(rc));
            return rc;
        }
        if (s->server_id[0] && strcmp(s->server_id, id) != 0) {
            log_error("store: %s has server id %s, other folders have %s", s->disks[i].path,
                      id, s->server_id);
            return IMG_EFORMAT;
        }
        memcpy(s->server_id, id, sizeof(id));
    }
    if (!s->server_id[0]) {
        int rc = hexid_random(s->server_id, STORE_ID_BYTES);
        if (rc != 0)
            return rc;
        log_info("store: new server id %s", s->server_id);
    }
    for (int i = 0; i < s->ndisks; i++) {
        if (!missing[i])
            continue;
        int rc = id_write(s->disks[i].path, s->server_id);
        if (rc != 0) {
            log_error("store: cannot write %s/%s: %s", s->disks[i].path, STORE_ID_FILE,
                      img_strerror(rc));
            return rc;
        }
    }
    return 0;
}

/* ---- blocks ---- */

/* Parses "<16 lower-case hex>.blk". Returns 1 with *id, else 0. */
static int block_file_name(const char *name, uint64_t *id)
{
    uint64_t v = 0;
    if (!hexid_u64(name, &v)) /* BLOCK_NAME_HEX digits */
        return 0;
    if (strcmp(name + BLOCK_NAME_HEX, BLOCK_SUFFIX) != 0)
        return 0;
    *id = v;
    return 1;
}

/* Files that legitimately sit next to block files and are not logged. */
static int companion_file(const char *name)
{
    static const char *suffixes[] = {".idx", ".meta", ".meta.tmp", ".idz", ".idz.tmp",
                                     EC_TOMB_SUFFIX};
    size_t n = strlen(name);
    if (name[0] == '.')
        return 1;
    /* shards of erasure-coded blocks (ds_ec.c loads them), a shard's
     * write interrupted by a crash (never loaded), and a compaction's
     * staged next generation (ec_shard_stage; never loaded) */
    char base[BLOCK_NAME_HEX + EC_SHARD_SUFFIX_LEN + 1];
    uint64_t id;
    unsigned ix;
    size_t nl = strlen(EC_NEXT_SUFFIX);
    if ((n == BLOCK_NAME_HEX + EC_SHARD_SUFFIX_LEN ||
         (n == BLOCK_NAME_HEX + EC_SHARD_SUFFIX_LEN + 4 &&
          strcmp(name + n - 4, ".tmp") == 0) ||
         (n == BLOCK_NAME_HEX + EC_SHARD_SUFFIX_LEN + nl &&
          strcmp(name + n - nl, EC_NEXT_SUFFIX) == 0) ||
         (n == BLOCK_NAME_HEX + EC_SHARD_SUFFIX_LEN + nl + 4 &&
          strcmp(name + n - nl - 4, EC_NEXT_SUFFIX ".tmp") == 0)) &&
        (memcpy(base, name, sizeof(base) - 1), base[sizeof(base) - 1] = '\0',
         ec_shard_name(base, &id, &ix) == 0))
        return 1;
    for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
        size_t m = strlen(suffixes[i]);
        if (n == BLOCK_NAME_HEX + m && strcmp(name + BLOCK_NAME_HEX, suffixes[i]) == 0)
            return 1;
    }
    return 0;
}

/* Returns non-zero for "<16 hex>.blk.copy": a copy interrupted by a crash,
 * never counted as a replica, removed at start-up. */
static int copy_temp_file(const char *name)
{
    /* A compaction interrupted by a crash leaves ".blk.compact" or
     * ".idx.compact" (ds_compact.c): the block file in place is the truth. */
    static const char *const suffixes[] = {COPY_TEMP_SUFFIX, ".blk.compact", ".idx.compact"};
    for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++)
        if (strlen(name) == BLOCK_NAME_HEX + strlen(suffixes[i]) &&
            strcmp(name + BLOCK_NAME_HEX, suffixes[i]) == 0)
            return 1;
    return 0;
}

static void remove_copy_temp(const char *dir, const char *name)
{
    char path[PATH_MAX + BLOCK_NAME_HEX + 16];
    if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path))
        return; /* cannot name it: leave it, it is never opened as a block */
    if (unlink(path) < 0)
        log_warn("store: cannot remove interrupted copy %s: %s", path, strerror(errno));
    else
        log_info("store: removed interrupted copy %s", path);
}

static int open_block(struct store *s, int disk, const char *dir, uint64_t id)
{
    struct block *b;
    int rc = block_open(dir, disk, id, &b);
    if (rc != 0) {
        log_error("store: block %016" PRIx64 " in %s cannot be opened (%s); skipped", id, dir,
                  img_strerror(rc));
        return 0;
    }
    struct block *dup = store_get(s, id);
    if (dup) {
        log_error("store: block %016" PRIx64 " is in %s and in disk %d; keeping the first", id,
                  dir, dup->disk);
        block_close(b);
        return 0;
    }
    if ((rc = table_reserve(s)) != 0) {
        block_close(b);
        return rc;
    }
    store_add(s, b);
    return 0;
}

static int open_blocks(struct store *s, int disk)
{
    char dir[PATH_MAX];
    int rc = blocks_dir(s, disk, dir, sizeof(dir));
    if (rc != 0)
        return rc;
    DIR *d = opendir(dir);
    if (!d)
        return -errno;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d))) {
        uint64_t id;
        if (block_file_name(de->d_name, &id))
            rc = open_block(s, disk, dir, id);
        else if (copy_temp_file(de->d_name))
            remove_copy_temp(dir, de->d_name);
        else if (!companion_file(de->d_name))
            log_warn("store: ignoring unexpected file %s/%s", dir, de->d_name);
    }
    closedir(d);
    return rc;
}

/* Creates, locks and checks one folder. */
static int open_disk(struct store *s, int i, const char *path)
{
    char dir[PATH_MAX];
    struct store_disk *d = &s->disks[i];
    if (snprintf(d->path, sizeof(d->path), "%s", path) >= (int)sizeof(d->path))
        return -ENAMETOOLONG;
    /* Block paths (<folder>/blocks/<16 hex>) must fit struct block's path. */
    if (strlen(path) + sizeof("/" STORE_BLOCKS_DIR "/") + 16 > BLOCK_PATH_MAX) {
        log_error("store: data folder path %s is too long (at most %zu characters)", path,
                  (size_t)BLOCK_PATH_MAX - sizeof("/" STORE_BLOCKS_DIR "/") - 16);
        return -ENAMETOOLONG;
    }
    int rc = fs_mkdirs(path);
    if (rc == 0)
        rc = blocks_dir(s, i, dir, sizeof(dir));
    if (rc == 0)
        rc = fs_mkdirs(dir);
    if (rc == 0)
        rc = fs_lock_dir(path, &d->lock_fd);
    if (rc != 0)
        log_error("store: data folder %s: %s", path, img_strerror(rc));
    return rc;
}

int store_open(uv_loop_t *loop, char **dirs, int ndirs, struct store **out)
{
    if (!loop || !dirs || ndirs < 1 || ndirs > STORE_MAX_DISKS)
        return IMG_EINVAL;
    struct store *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->loop = loop;
    for (int i = 0; i < STORE_MAX_DISKS; i++)
        s->disks[i].lock_fd = -1;
    int rc = 0;
    for (int i = 0; i < ndirs && rc == 0; i++) {
        rc = open_disk(s, i, dirs[i]);
        s->ndisks = i + 1;
    }
    if (rc == 0)
        rc = agree_server_id(s);
    if (rc == 0)
        rc = uring_init(loop, STORE_RING_ENTRIES, &s->ring);
    for (int i = 0; i < s->ndisks && rc == 0; i++)
        rc = open_blocks(s, i);
    if (rc != 0) {
        store_close(s);
        return rc;
    }
    store_refresh(s);
    /* Loading left freed buffers (index pieces, packed copies) in the heap:
     * give them back, so the resident size is what the blocks keep. */
    malloc_trim(0);
    log_info("store: server %s, %d folder(s), %" PRIu32 " block(s)", s->server_id, s->ndisks,
             s->nblocks);
    *out = s;
    return 0;
}

void store_close(struct store *s)
{
    if (!s)
        return;
    /* The ring first: it waits for in-flight I/O, whose callbacks may still
     * use the blocks. */
    uring_close(s->ring);
    for (uint32_t i = 0; i < s->cap; i++) {
        if (s->blocks[i]) {
            blockio_release(s->blocks[i]);
            block_close(s->blocks[i]);
        }
    }
    free(s->blocks);
    for (int i = 0; i < s->ndisks; i++)
        if (s->disks[i].lock_fd >= 0)
            close(s->disks[i].lock_fd);
    free(s);
}

/* The non-failed folder with the most free bytes; among folders whose free
 * bytes differ by less than STORE_FREE_SLACK (folders on one file system,
 * whose figures move between two statvfs calls), the one holding the fewest
 * of our bytes, so they share the blocks. -1 when every folder failed. */
static int pick_best(const struct store *s)
{
    int best = -1;
    for (int i = 0; i < s->ndisks; i++) {
        const struct store_disk *d = &s->disks[i], *b = best >= 0 ? &s->disks[best] : NULL;
        if (d->failed)
            continue;
        uint64_t diff = !b ? 0 : d->free > b->free ? d->free - b->free : b->free - d->free;
        if (!b || (diff < STORE_FREE_SLACK ? d->used < b->used : d->free > b->free))
            best = i;
    }
    return best;
}

int store_create_block(struct store *s, uint64_t id, uint64_t max_size, int primary,
                       const struct block_replica *replicas, int nreplicas, struct block **out)
{
    char dir[PATH_MAX];
    if (store_get(s, id))
        return IMG_EEXIST;
    store_refresh(s);
    int best = pick_best(s);
    if (best < 0)
        return -ENOSPC;
    int rc = table_reserve(s);
    if (rc == 0)
        rc = blocks_dir(s, best, dir, sizeof(dir));
    struct block *b = NULL;
    if (rc == 0)
        rc = block_create(dir, best, id, max_size, primary, replicas, nreplicas, &b);
    if (rc != 0)
        return rc;
    store_add(s, b);
    s->disks[best].used += b->tail;
    log_info("store: created block %016" PRIx64 " on %s (%s)", id, s->disks[best].path,
             primary ? "primary" : "secondary");
    *out = b;
    return 0;
}

void store_foreach(struct store *s, void (*fn)(struct block *b, void *arg), void *arg)
{
    for (uint32_t i = 0; i < s->cap; i++)
        if (s->blocks[i])
            fn(s->blocks[i], arg);
}

void store_refresh(struct store *s)
{
    for (int i = 0; i < s->ndisks; i++) {
        struct statvfs sv;
        struct store_disk *d = &s->disks[i];
        if (d->failed) /* ds_disk.c: gone; its space counts for nothing */
            d->capacity = d->free = 0;
        else if (statvfs(d->path, &sv) == 0) {
            d->capacity = (uint64_t)sv.f_blocks * sv.f_frsize;
            d->free = (uint64_t)sv.f_bavail * sv.f_frsize;
        } else {
            log_warn("store: statvfs %s: %s", d->path, strerror(errno));
        }
        d->used = 0;
    }
    for (uint32_t i = 0; i < s->cap; i++) {
        struct block *b = s->blocks[i];
        if (b && b->disk >= 0 && b->disk < s->ndisks)
            s->disks[b->disk].used += b->tail;
    }
    for (int i = 0; s->capacity_cap && i < s->ndisks; i++) {
        struct store_disk *d = &s->disks[i];
        if (d->capacity > s->capacity_cap)
            d->capacity = s->capacity_cap;
        uint64_t left = d->capacity > d->used ? d->capacity - d->used : 0;
        if (d->free > left)
            d->free = left;
    }
}

int store_pick_disk(struct store *s, char *dir, size_t n)
{
    store_refresh(s);
    int best = pick_best(s);
    if (best < 0 || blocks_dir(s, best, dir, n) != 0)
        return -ENOSPC;
    return best;
}

int store_adopt_block(struct store *s, struct block *b)
{
    if (store_get(s, b->id))
        return IMG_EEXIST;
    int rc = table_reserve(s);
    if (rc != 0)
        return rc;
    store_add(s, b);
    return 0;
}

struct block *store_remove_block(struct store *s, uint64_t id)
{
    if (!s->cap)
        return NULL;
    uint32_t mask = s->cap - 1, i = (uint32_t)hash64(id) & mask;
    while (s->blocks[i] && s->blocks[i]->id != id)
        i = (i + 1) & mask;
    struct block *b = s->blocks[i];
    if (!b)
        return NULL;
    s->blocks[i] = NULL;
    s->nblocks--;
    /* Re-insert the rest of the probe run so lookups never stop early. */
    for (uint32_t j = (i + 1) & mask; s->blocks[j]; j = (j + 1) & mask) {
        struct block *m = s->blocks[j];
        s->blocks[j] = NULL;
        table_put(s->blocks, s->cap, m);
    }
    return b;
}
