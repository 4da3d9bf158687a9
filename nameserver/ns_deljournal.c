/* ns_deljournal.c - the delete journal's file and RAM (ns_deljournal.h).
 *
 * File DIR/deletes.journal: records of NS_DJ_REC_SIZE bytes, little-endian,
 * appended in order (docs/nameserver.md draws the record). Appends are
 * batched: while one batch is written and fdatasync'd on libuv's thread pool,
 * the next ones queue; each append is answered when its batch is durable,
 * and only then enters RAM (so nothing is used before it is durable). A
 * rewrite (ns_dj_compact) keeps the live entries only, atomically.
 * Calls base/ only; decides nothing (ns_delnote.c is the policy). */
#include "nameserver/ns_deljournal.h"
#include "base/le.h"

#include "base/crc32c.h"
#include "base/err.h"
#include "base/fsutil.h"
#include "base/log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct ns_dj_pending {
    struct ns_dj_pending *next;
    uint64_t block_id;
    struct ns_dj_entry e;
    char sender[NS_DJ_ID_MAX + 1];
    ns_dj_cb cb;
    void *arg;
};

/* ---- the record --------------------------------------------------------------- */

void ns_dj_rec_encode(uint8_t *out, uint64_t block_id, const struct ns_dj_entry *e,
                      const char *sender)
{
    memset(out, 0, NS_DJ_REC_SIZE);
    le_put32(out + 4, e->kind == NS_DJ_KIND_REPL ? NS_DJ_MAGIC : NS_DJ_MAGIC2);
    out[101] = e->kind;
    le_put64(out + 8, block_id);
    le_put32(out + 16, e->seq);
    le_put32(out + 20, e->cookie);
    le_put64(out + 24, e->tail_after);
    le_put32(out + 32, e->set_version);
    size_t n = sender ? strnlen(sender, NS_DJ_ID_MAX) : 0;
    out[36] = (uint8_t)n;
    memcpy(out + 37, sender ? sender : "", n);
    le_put32(out, crc32c(0, out + 4, NS_DJ_REC_SIZE - 4));
}

int ns_dj_rec_decode(const uint8_t *in, uint64_t *block_id, struct ns_dj_entry *e,
                     char sender[NS_DJ_ID_MAX + 1])
{
    uint32_t magic = le_get32(in + 4);
    if (le_get32(in) != crc32c(0, in + 4, NS_DJ_REC_SIZE - 4) ||
        (magic != NS_DJ_MAGIC && magic != NS_DJ_MAGIC2) || in[36] > NS_DJ_ID_MAX)
        return -1;
    *block_id = le_get64(in + 8);
    e->seq = le_get32(in + 16);
    e->cookie = le_get32(in + 20);
    e->tail_after = le_get64(in + 24);
    e->set_version = le_get32(in + 32);
    e->kind = NS_DJ_KIND_REPL;
    e->shards = 0;
    if (magic == NS_DJ_MAGIC2) {
        /* IDJ2: a kind this build knows, the reserved bytes zero; an EC
         * entry has no tail or set version. */
        if (in[101] > NS_DJ_KIND_EC || in[102] || in[103] ||
            (in[101] == NS_DJ_KIND_EC && (e->tail_after || e->set_version)))
            return -1;
        e->kind = in[101];
    }
    memcpy(sender, in + 37, in[36]);
    sender[in[36]] = '\0';
    return *block_id == 0 ? -1 : 0;
}

/* ---- RAM ------------------------------------------------------------------------ */

/* One of the two sorted tables: replicated blocks' entries, or erasure-coded
 * blocks' (ec). */
struct tab {
    struct ns_dj_block **v;
    size_t *n, *cap;
};

static struct tab tab_of(struct ns_dj *dj, int ec)
{
    return ec ? (struct tab){&dj->ec_blocks, &dj->nec, &dj->ec_cap}
              : (struct tab){&dj->blocks, &dj->nblocks, &dj->cap};
}

/* The index of block_id in the sorted table, or where it would go. */
static size_t block_pos(struct tab t, uint64_t block_id)
{
    size_t lo = 0, hi = *t.n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if ((*t.v)[mid].block_id < block_id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static struct ns_dj_block *tab_get(struct tab t, uint64_t block_id)
{
    size_t i = block_pos(t, block_id);
    return i < *t.n && (*t.v)[i].block_id == block_id ? &(*t.v)[i] : NULL;
}

struct ns_dj_block *ns_dj_get(struct ns_dj *dj, uint64_t block_id)
{
    return tab_get(tab_of(dj, 0), block_id);
}

struct ns_dj_block *ns_dj_get_ec(struct ns_dj *dj, uint64_t block_id)
{
    return tab_get(tab_of(dj, 1), block_id);
}

int ns_dj_holds_all(const struct ns_dj_block *jb, const char *id)
{
    for (unsigned i = 0; i < jb->nhas; i++)
        if (strcmp(jb->has[i], id) == 0)
            return 1;
    return 0;
}

void ns_dj_add_holder(struct ns_dj_block *jb, const char *id)
{
    if (!id || !*id || ns_dj_holds_all(jb, id) || jb->nhas >= NS_DJ_HAS_MAX)
        return;
    snprintf(jb->has[jb->nhas++], sizeof(jb->has[0]), "%s", id);
}

static struct ns_dj_block *block_put(struct tab t, uint64_t block_id)
{
    struct ns_dj_block *jb = tab_get(t, block_id);
    if (jb)
        return jb;
    if (*t.n == *t.cap) {
        size_t cap = *t.cap ? *t.cap * 2 : 16;
        struct ns_dj_block *v = realloc(*t.v, cap * sizeof(*v));
        if (!v)
            return NULL;
        *t.v = v;
        *t.cap = cap;
    }
    size_t i = block_pos(t, block_id);
    memmove(&(*t.v)[i + 1], &(*t.v)[i], (*t.n - i) * sizeof((*t.v)[0]));
    (*t.n)++;
    jb = &(*t.v)[i];
    memset(jb, 0, sizeof(*jb));
    jb->block_id = block_id;
    for (unsigned k = 0; k < NS_DJ_EC_SHARDS; k++)
        jb->ec_holder[k] = UINT16_MAX; /* no server yet */
    return jb;
}

static void block_forget(struct ns_dj *dj, struct tab t, struct ns_dj_block *jb);

/* Adds e to block_id's entries (the table of its kind). The sender holds
 * every entry only if it held the earlier ones too (or there were none).
 * Returns 0 or -ENOMEM. */
static int entry_add(struct ns_dj *dj, uint64_t block_id, const struct ns_dj_entry *e,
                     const char *sender)
{
    struct tab t = tab_of(dj, e->kind == NS_DJ_KIND_EC);
    struct ns_dj_block *jb = block_put(t, block_id);
    if (!jb)
        return -ENOMEM;
    if (jb->n == jb->cap) {
        size_t cap = jb->cap ? jb->cap * 2 : 8;
        struct ns_dj_entry *v = realloc(jb->v, cap * sizeof(*v));
        if (!v) {
            if (jb->n == 0)
                block_forget(dj, t, jb);
            return -ENOMEM;
        }
        jb->v = v;
        jb->cap = cap;
    }
    int sender_had_all = jb->n == 0 || (sender && ns_dj_holds_all(jb, sender));
    jb->v[jb->n++] = *e;
    jb->gen++;
    jb->nhas = 0; /* only the sender has this one */
    if (sender_had_all)
        ns_dj_add_holder(jb, sender);
    dj->live++;
    return 0;
}

static void block_forget(struct ns_dj *dj, struct tab t, struct ns_dj_block *jb)
{
    dj->live -= jb->n;
    free(jb->v);
    size_t i = (size_t)(jb - *t.v);
    memmove(jb, jb + 1, (*t.n - i - 1) * sizeof(*jb));
    (*t.n)--;
}

size_t ns_dj_drop_covered(struct ns_dj *dj, uint64_t block_id, uint64_t covered)
{
    struct ns_dj_block *jb = ns_dj_get(dj, block_id);
    if (!jb)
        return 0;
    size_t k = 0;
    for (size_t i = 0; i < jb->n; i++)
        if (jb->v[i].tail_after > covered)
            jb->v[k++] = jb->v[i];
        else if (dj->on_drop)
            dj->on_drop(dj->on_drop_arg, block_id, &jb->v[i]);
    size_t dropped = jb->n - k;
    dj->live -= dropped;
    jb->n = k;
    if (k == 0)
        block_forget(dj, tab_of(dj, 0), jb);
    return dropped;
}

size_t ns_dj_ec_drop_held(struct ns_dj *dj, uint64_t block_id, uint16_t all)
{
    struct tab t = tab_of(dj, 1);
    struct ns_dj_block *jb = tab_get(t, block_id);
    if (!jb || all == 0)
        return 0;
    size_t k = 0;
    for (size_t i = 0; i < jb->n; i++)
        if ((jb->v[i].shards & all) != all)
            jb->v[k++] = jb->v[i];
        else if (dj->on_drop)
            dj->on_drop(dj->on_drop_arg, block_id, &jb->v[i]);
    size_t dropped = jb->n - k;
    dj->live -= dropped;
    jb->n = k;
    if (k == 0)
        block_forget(dj, t, jb);
    return dropped;
}

void ns_dj_rebase(struct ns_dj *dj, uint64_t block_id, uint64_t tail)
{
    struct ns_dj_block *jb = ns_dj_get(dj, block_id);
    for (size_t i = 0; jb && i < jb->n; i++)
        jb->v[i].tail_after = tail;
}

void ns_dj_drop_block(struct ns_dj *dj, uint64_t block_id)
{
    struct ns_dj_block *jb = ns_dj_get(dj, block_id);
    if (!jb)
        return;
    for (size_t i = 0; dj->on_drop && i < jb->n; i++)
        dj->on_drop(dj->on_drop_arg, block_id, &jb->v[i]);
    block_forget(dj, tab_of(dj, 0), jb);
}

int ns_dj_merge(struct ns_dj *dj, uint64_t block_id, const struct ns_dj_entry *e,
                const char *sender)
{
    struct ns_dj_block *jb = tab_get(tab_of(dj, e->kind == NS_DJ_KIND_EC), block_id);
    for (size_t i = 0; jb && i < jb->n; i++)
        if (jb->v[i].seq == e->seq)
            return 0;
    if ((jb && jb->n >= NS_DJ_MAX_PER_BLOCK) || dj->live >= NS_DJ_MAX_ENTRIES)
        return IMG_EUNAVAIL;
    int rc = entry_add(dj, block_id, e, sender);
    return rc ? rc : 1;
}

/* ---- the file ------------------------------------------------------------------- */

int ns_dj_open(struct ns_dj *dj, const char *dir)
{
    memset(dj, 0, sizeof(*dj));
    dj->fd = -1;
    if ((size_t)snprintf(dj->path, sizeof(dj->path), "%s/%s", dir, NS_DJ_FILE) >=
        sizeof(dj->path))
        return -ENAMETOOLONG;
    int fd = open(dj->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    uint64_t whole = (uint64_t)st.st_size / NS_DJ_REC_SIZE * NS_DJ_REC_SIZE;
    if ((uint64_t)st.st_size != whole) {
        log_warn("%s: torn tail of %llu bytes cut off (a record cut by a crash)", dj->path,
                 (unsigned long long)((uint64_t)st.st_size - whole));
        if (ftruncate(fd, (off_t)whole) != 0 || fdatasync(fd) != 0) {
            int e = -errno;
            close(fd);
            return e;
        }
    }
    uint8_t rec[NS_DJ_REC_SIZE];
    for (uint64_t off = 0; off < whole; off += NS_DJ_REC_SIZE) {
        ssize_t r = pread(fd, rec, sizeof(rec), (off_t)off);
        if (r != (ssize_t)sizeof(rec)) {
            int e = r < 0 ? -errno : -EIO;
            close(fd);
            ns_dj_close(dj);
            return e;
        }
        dj->file_recs++;
        uint64_t id;
        struct ns_dj_entry e;
        char sender[NS_DJ_ID_MAX + 1];
        if (ns_dj_rec_decode(rec, &id, &e, sender) != 0) {
            dj->skipped_crc++;
            log_warn("%s: record at offset %llu fails its CRC or magic: skipped", dj->path,
                     (unsigned long long)off);
            continue;
        }
        if (entry_add(dj, id, &e, sender) != 0) {
            close(fd);
            ns_dj_close(dj);
            return -ENOMEM;
        }
    }
    dj->fd = fd;
    dj->end = whole;
    if (dj->live)
        log_info("%s: %zu journaled tombstones of %zu blocks loaded (%zu erasure-coded)",
                 dj->path, dj->live, dj->nblocks + dj->nec, dj->nec);
    return 0;
}

/* Writes len bytes at off and syncs them: 0 or a negative errno. */
static int write_sync(int fd, const uint8_t *buf, size_t len, uint64_t off)
{
    size_t done = 0;
    while (done < len) {
        ssize_t w = pwrite(fd, buf + done, len - done, (off_t)(off + done));
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        done += (size_t)w;
    }
    return fdatasync(fd) == 0 ? 0 : -errno;
}

/* Ends a batch: entries enter RAM on success, every append is answered. */
static void batch_done(struct ns_dj *dj, struct ns_dj_pending *list, int rc)
{
    if (rc == 0) {
        size_t n = 0;
        for (struct ns_dj_pending *p = list; p; p = p->next)
            n++;
        dj->end += n * NS_DJ_REC_SIZE;
        dj->file_recs += n;
        dj->syncs++;
    } else {
        log_error("%s: append failed: %s", dj->path, img_strerror(rc));
    }
    while (list) {
        struct ns_dj_pending *p = list;
        list = p->next;
        int st = rc;
        if (st == 0 && entry_add(dj, p->block_id, &p->e, p->sender) != 0)
            st = -ENOMEM; /* durable, but not in RAM: the delete is not acknowledged */
        if (st == 0)
            dj->appends++;
        p->cb(st, p->arg);
        free(p);
    }
}

static void work_run(uv_work_t *w)
{
    struct ns_dj *dj = w->data;
    dj->work_rc = write_sync(dj->fd, dj->work_buf, dj->work_len, dj->work_off);
}

static void flush(struct ns_dj *dj, uv_loop_t *loop);

static void work_after(uv_work_t *w, int status)
{
    struct ns_dj *dj = w->data;
    struct ns_dj_pending *list = dj->batch;
    dj->batch = NULL;
    dj->writing = 0;
    free(dj->work_buf);
    dj->work_buf = NULL;
    int rc = status < 0 ? status : dj->work_rc;
    if (dj->closing && rc == 0)
        rc = -ECANCELED;
    batch_done(dj, list, rc);
    if (!dj->closing && dj->pend_head)
        flush(dj, w->loop);
}

/* Writes every queued append in one batch (on the thread pool with a loop). */
static void flush(struct ns_dj *dj, uv_loop_t *loop)
{
    if (dj->writing || !dj->pend_head)
        return;
    size_t n = 0;
    for (struct ns_dj_pending *p = dj->pend_head; p; p = p->next)
        n++;
    struct ns_dj_pending *list = dj->pend_head;
    dj->pend_head = dj->pend_tail = NULL;
    uint8_t *buf = malloc(n * NS_DJ_REC_SIZE);
    if (!buf) {
        batch_done(dj, list, -ENOMEM);
        return;
    }
    size_t k = 0;
    for (struct ns_dj_pending *p = list; p; p = p->next, k++)
        ns_dj_rec_encode(buf + k * NS_DJ_REC_SIZE, p->block_id, &p->e, p->sender);
    if (dj->fd < 0) {
        free(buf);
        batch_done(dj, list, -EBADF);
        return;
    }
    if (!loop) {
        int rc = write_sync(dj->fd, buf, n * NS_DJ_REC_SIZE, dj->end);
        free(buf);
        batch_done(dj, list, rc);
        return;
    }
    dj->batch = list;
    dj->work_buf = buf;
    dj->work_len = n * NS_DJ_REC_SIZE;
    dj->work_off = dj->end;
    dj->work.data = dj;
    dj->writing = 1;
    int rc = uv_queue_work(loop, &dj->work, work_run, work_after);
    if (rc != 0) {
        dj->writing = 0;
        dj->batch = NULL;
        free(buf);
        dj->work_buf = NULL;
        batch_done(dj, list, rc);
    }
}

int ns_dj_append(struct ns_dj *dj, uv_loop_t *loop, uint64_t block_id,
                 const struct ns_dj_entry *e, const char *sender, ns_dj_cb cb, void *arg)
{
    struct ns_dj_block *jb = tab_get(tab_of(dj, e->kind == NS_DJ_KIND_EC), block_id);
    size_t queued = 0;
    for (struct ns_dj_pending *p = dj->pend_head; p; p = p->next)
        queued++;
    if ((jb && jb->n >= NS_DJ_MAX_PER_BLOCK) || dj->live + queued >= NS_DJ_MAX_ENTRIES ||
        dj->closing)
        return IMG_EUNAVAIL;
    struct ns_dj_pending *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->block_id = block_id;
    p->e = *e;
    snprintf(p->sender, sizeof(p->sender), "%s", sender ? sender : "");
    p->cb = cb;
    p->arg = arg;
    if (dj->pend_tail)
        dj->pend_tail->next = p;
    else
        dj->pend_head = p;
    dj->pend_tail = p;
    flush(dj, loop);
    return 0;
}

int ns_dj_compact(struct ns_dj *dj)
{
    if (dj->writing || dj->fd < 0 || dj->file_recs == 0)
        return 0;
    if (dj->live != 0 && (dj->file_recs < NS_DJ_COMPACT_MIN || dj->live * 2 >= dj->file_recs))
        return 0;
    uint8_t *buf = dj->live ? malloc(dj->live * NS_DJ_REC_SIZE) : NULL;
    if (dj->live && !buf)
        return -ENOMEM;
    size_t k = 0;
    for (int ec = 0; ec <= 1; ec++) {
        struct tab t = tab_of(dj, ec);
        for (size_t i = 0; i < *t.n; i++) {
            const struct ns_dj_block *jb = &(*t.v)[i];
            /* One holder of every entry is kept as the sender, so a reload
             * knows that copy holds them all. */
            const char *sender = jb->nhas ? jb->has[0] : "";
            for (size_t j = 0; j < jb->n; j++, k++)
                ns_dj_rec_encode(buf + k * NS_DJ_REC_SIZE, jb->block_id, &jb->v[j], sender);
        }
    }
    int rc = fs_write_atomic(dj->path, buf, k * NS_DJ_REC_SIZE);
    free(buf);
    if (rc != 0) {
        log_error("%s: rewrite failed: %s (the old file stays)", dj->path, img_strerror(rc));
        return rc;
    }
    int fd = open(dj->path, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        rc = -errno;
        log_error("%s: reopen after rewrite failed: %s", dj->path, img_strerror(rc));
        close(dj->fd);
        dj->fd = -1;
        return rc;
    }
    close(dj->fd);
    dj->fd = fd;
    log_info("%s: rewritten, %zu of %zu records kept", dj->path, k, dj->file_recs);
    dj->end = (uint64_t)k * NS_DJ_REC_SIZE;
    dj->file_recs = k;
    dj->compactions++;
    return 1;
}

void ns_dj_close(struct ns_dj *dj)
{
    dj->closing = 1;
    while (dj->pend_head) {
        struct ns_dj_pending *p = dj->pend_head;
        dj->pend_head = p->next;
        p->cb(-ECANCELED, p->arg);
        free(p);
    }
    dj->pend_tail = NULL;
    if (dj->fd >= 0)
        close(dj->fd);
    dj->fd = -1;
    for (size_t i = 0; i < dj->nblocks; i++)
        free(dj->blocks[i].v);
    free(dj->blocks);
    dj->blocks = NULL;
    dj->nblocks = dj->cap = 0;
    for (size_t i = 0; i < dj->nec; i++)
        free(dj->ec_blocks[i].v);
    free(dj->ec_blocks);
    dj->ec_blocks = NULL;
    dj->nec = dj->ec_cap = 0;
    dj->live = 0;
}
