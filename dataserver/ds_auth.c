/* ds_auth.c - the dataserver's side of authentication (docs/security.md).
 *
 * Holds what every transport needs: the keys file (--keys), re-read when it
 * changes (a stat every second: inode, size, mtime; a file that became
 * unusable is logged and the keys read before stay), the member key our own
 * connections authenticate with (--member-key, else the file's first member
 * key, looked up by name at each connection so a rotation needs no
 * restart), and the cluster id this server joined, stored in every data
 * folder (DIR/CLUSTER_ID, written atomically and fsync'd) the first time a
 * nameserver answers a heartbeat, and claimed in every handshake after.
 * May call net/ (auth, auth_link) and base/. */
#include "dataserver/ds.h"

#include "base/err.h"
#include "base/fsutil.h"
#include "base/log.h"
#include "net/auth_link.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define KEYS_CHECK_MS 1000
#define CLUSTER_FILE "CLUSTER_ID"

static void keys_tick(uv_timer_t *t)
{
    struct ds *ds = t->data;
    char err[AUTH_ERR_MAX];
    int rc = auth_keys_reload(ds->keys, err);
    if (rc == 1)
        log_info("keys file %s re-read: %zu keys", ds->keys->path, ds->keys->n);
    else if (rc < 0)
        log_error("%s", err);
}

void ds_auth_start(struct ds *ds)
{
    if (!ds->keys)
        return;
    uv_timer_init(ds->loop, &ds->keys_timer);
    ds->keys_timer.data = ds;
    uv_timer_start(&ds->keys_timer, keys_tick, KEYS_CHECK_MS, KEYS_CHECK_MS);
    uv_unref((uv_handle_t *)&ds->keys_timer);
}

void ds_auth_stop(struct ds *ds)
{
    if (!ds->keys)
        return;
    uv_timer_stop(&ds->keys_timer);
    uv_close((uv_handle_t *)&ds->keys_timer, NULL);
}

struct auth_link *ds_auth_link(struct ds *ds, struct conn *c, void (*done)(int status, void *arg),
                               void *arg)
{
    const struct auth_key *k = NULL;
    if (ds->keys) {
        k = auth_keys_find(ds->keys, ds->member_key);
        if (!k || k->role != AUTH_MEMBER) {
            log_error("member key '%s' is not in %s (or not a member key): cannot authenticate "
                      "to %s",
                      ds->member_key, ds->keys->path, conn_peer(c));
            return NULL;
        }
    }
    struct auth_claims cl = {ds->cluster_id, ds->store ? ds->store->server_id : ""};
    return auth_link_start(c, k, &cl, done, arg);
}

static int cluster_id_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= AUTH_CLAIM_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)s[i]))
            return 0;
    return 1;
}

int ds_auth_load_cluster(struct ds *ds)
{
    ds->cluster_id[0] = '\0';
    for (int i = 0; i < ds->store->ndisks; i++) {
        char path[4200], buf[AUTH_CLAIM_MAX + 2];
        snprintf(path, sizeof(path), "%s/" CLUSTER_FILE, ds->store->disks[i].path);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            if (errno == ENOENT)
                continue;
            log_error("cannot read %s: %s", path, strerror(errno));
            return -errno;
        }
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n < 0)
            return -EIO;
        buf[n] = '\0';
        buf[strcspn(buf, "\n")] = '\0';
        if (!cluster_id_ok(buf)) {
            log_error("%s: not a cluster id", path);
            return IMG_EFORMAT;
        }
        if (ds->cluster_id[0] && strcmp(ds->cluster_id, buf) != 0) {
            log_error("%s: cluster %s, but another data folder says %s", path, buf,
                      ds->cluster_id);
            return IMG_EFORMAT;
        }
        snprintf(ds->cluster_id, sizeof(ds->cluster_id), "%.63s", buf);
    }
    return 0;
}

int ds_auth_save_cluster(struct ds *ds, const char *id)
{
    if (!cluster_id_ok(id))
        return IMG_EINVAL;
    char text[AUTH_CLAIM_MAX + 2];
    int len = snprintf(text, sizeof(text), "%s\n", id);
    int rc = 0;
    for (int i = 0; i < ds->store->ndisks; i++) {
        if (ds->store->disks[i].failed)
            continue;
        char path[4200];
        snprintf(path, sizeof(path), "%s/" CLUSTER_FILE, ds->store->disks[i].path);
        int r = fs_write_atomic(path, text, (size_t)len);
        if (r) {
            log_error("cannot write %s: %s", path, img_strerror(r));
            rc = r;
        }
    }
    if (rc == 0)
        snprintf(ds->cluster_id, sizeof(ds->cluster_id), "%s", id);
    return rc;
}
