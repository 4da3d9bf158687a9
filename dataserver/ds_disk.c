/* ds_disk.c - failed-disk detection and the dropping of a failed folder's
 * blocks (ds_disk.h).
 *
 * A check is a stat(2) of each folder and of its blocks/ folder: cheap, and
 * it sees a disk that vanished (the path is gone, or is now another
 * directory: compared by st_dev and st_ino, recorded at start). I/O errors
 * come from blockio.c, which remembers the first system error per folder.
 * The blocks of a failed folder are looked for at every check: busy ones
 * (an append or a compaction in flight) are dropped once idle, so nothing in
 * flight loses its block. */
#include "dataserver/ds_disk.h"

#include "base/err.h"
#include "base/log.h"
#include "dataserver/blockio.h"
#include "dataserver/ds_block.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct ds_disk {
    uv_timer_t timer; /* first: the close callback frees the struct through it */
    struct ds *ds;
    dev_t dev[STORE_MAX_DISKS];
    ino_t ino[STORE_MAX_DISKS];
    int known[STORE_MAX_DISKS];   /* dev/ino recorded at start */
};

static void tick(uv_timer_t *t)
{
    struct ds_disk *dd = t->data;
    ds_disk_check(dd->ds);
}

int ds_disk_start(struct ds *ds)
{
    struct ds_disk *dd = calloc(1, sizeof(*dd));
    if (!dd)
        return -ENOMEM;
    dd->ds = ds;
    for (int i = 0; i < ds->store->ndisks; i++) {
        struct stat st;
        if (stat(ds->store->disks[i].path, &st) == 0) {
            dd->dev[i] = st.st_dev;
            dd->ino[i] = st.st_ino;
            dd->known[i] = 1;
        }
    }
    uv_timer_init(ds->loop, &dd->timer);
    dd->timer.data = dd;
    uv_timer_start(&dd->timer, tick, DS_DISK_CHECK_MS, DS_DISK_CHECK_MS);
    ds->disk = dd;
    return 0;
}

/* Why folder i counts as failed now, in *why (n bytes); 0 when it is fine. */
static int folder_fails(const struct ds_disk *dd, int i, char *why, size_t n)
{
    const struct store_disk *d = &dd->ds->store->disks[i];
    char blocks[PATH_MAX];
    struct stat st;
    int err;
    if (stat(d->path, &st) != 0) {
        snprintf(why, n, "cannot stat it: %s", strerror(errno));
        return 1;
    }
    if (!S_ISDIR(st.st_mode) || (dd->known[i] && (st.st_dev != dd->dev[i] ||
                                                  st.st_ino != dd->ino[i]))) {
        snprintf(why, n, "it is no longer the directory opened at start (vanished, "
                         "unmounted or moved)");
        return 1;
    }
    if (snprintf(blocks, sizeof(blocks), "%s/blocks", d->path) < (int)sizeof(blocks) &&
        stat(blocks, &st) != 0) {
        snprintf(why, n, "cannot stat its blocks folder: %s", strerror(errno));
        return 1;
    }
    if ((err = blockio_disk_error(i)) != 0) {
        snprintf(why, n, "block I/O failed: %s", img_strerror(err));
        return 1;
    }
    return 0;
}

struct collect {
    int disk;
    uint64_t *ids;
    size_t n, cap;
};

static void collect(struct block *b, void *arg)
{
    struct collect *c = arg;
    if (b->disk == c->disk && c->n < c->cap)
        c->ids[c->n++] = b->id;
}

/* Drops every block of failed folder i that is not busy (the busy ones, and
 * any that arrive later, e.g. a copy installed meanwhile, at a later check). */
static void drop_blocks(struct ds *ds, int i)
{
    struct collect c = {.disk = i, .cap = ds->store->nblocks};
    c.ids = malloc((c.cap + 1) * sizeof(*c.ids));
    if (!c.ids)
        return; /* retried at the next check */
    store_foreach(ds->store, collect, &c);
    uint32_t dropped = 0, busy = 0;
    for (size_t k = 0; k < c.n; k++) {
        int rc = ds_block_drop(ds, c.ids[k]);
        if (rc == 0)
            dropped++;
        else if (rc != IMG_ENOBLOCKHERE)
            busy++;
    }
    free(c.ids);
    if (dropped) {
        log_warn("disk %s failed: %" PRIu32 " blocks dropped (reported removed: the nameserver "
                 "copies them from other replicas)%s",
                 ds->store->disks[i].path, dropped, busy ? "; busy ones follow" : "");
        ds_session_poke(ds);
    }
}

int ds_disk_check(struct ds *ds)
{
    struct ds_disk *dd = ds->disk;
    if (!dd || ds->stopping)
        return 0;
    int failed = 0;
    for (int i = 0; i < ds->store->ndisks; i++) {
        struct store_disk *d = &ds->store->disks[i];
        char why[PATH_MAX + 128];
        if (!d->failed && folder_fails(dd, i, why, sizeof(why))) {
            d->failed = 1;
            d->capacity = d->free = d->used = 0;
            log_error("disk %s failed: %s; it takes no new blocks, its blocks are dropped and "
                      "the other folders keep serving (replace the disk, then restart)",
                      d->path, why);
            ds_session_poke(ds);
        }
        if (d->failed) {
            failed++;
            drop_blocks(ds, i);
        }
    }
    return failed;
}

static void on_closed(uv_handle_t *h)
{
    free(h); /* the timer is the first member of struct ds_disk */
}

void ds_disk_stop(struct ds *ds)
{
    struct ds_disk *dd = ds->disk;
    if (!dd)
        return;
    ds->disk = NULL;
    uv_close((uv_handle_t *)&dd->timer, on_closed);
}
