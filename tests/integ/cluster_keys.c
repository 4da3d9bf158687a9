/* cluster_keys.c - the keys of a test cluster (cluster.h, "Keys";
 * docs/security.md): the servers' keys file and one client key file per
 * role, all mode 0600, and IMGSTORE_KEY_FILE for this process. */
#include "tests/integ/cluster.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

/* Writes text to path with mode 0600. Returns 0 or -errno. */
static int write_secret_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    size_t len = strlen(text);
    int rc = write(fd, text, len) == (ssize_t)len ? 0 : -EIO;
    close(fd);
    return rc;
}

/* A fresh secret of 64 hex digits into out (65 bytes). */
static int make_secret(char out[65])
{
    unsigned char b[32];
    if (getrandom(b, sizeof(b), 0) != sizeof(b))
        return -EIO;
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", b[i]);
    return 0;
}

int cluster_write_keys(struct cluster *c)
{
    char sm[65], so[65], sw[65], text[2048];
    int rc;
    if ((rc = make_secret(sm)) || (rc = make_secret(so)) || (rc = make_secret(sw)))
        return rc;
    snprintf(c->keys, sizeof(c->keys), "%s/keys", c->dir);
    snprintf(c->key_member, sizeof(c->key_member), "%s/member.key", c->dir);
    snprintf(c->key_operator, sizeof(c->key_operator), "%s/operator.key", c->dir);
    snprintf(c->key_writer, sizeof(c->key_writer), "%s/writer.key", c->dir);
    int n = snprintf(text, sizeof(text),
                     "# test cluster keys\nmember member1 %s\noperator ops %s\nwriter app %s\n",
                     sm, so, sw);
    /* One more member key per further dataserver: dataserver i uses
     * member<i+1> (each server id is bound to its own key). */
    for (int i = 2; i <= CLUSTER_MAX_DS; i++) {
        char s[65];
        if ((rc = make_secret(s)))
            return rc;
        n += snprintf(text + n, sizeof(text) - (size_t)n, "member member%d %s\n", i, s);
    }
    if ((rc = write_secret_file(c->keys, text)))
        return rc;
    snprintf(text, sizeof(text), "member1 %s\n", sm);
    if ((rc = write_secret_file(c->key_member, text)))
        return rc;
    snprintf(text, sizeof(text), "operator ops %s\n", so);
    if ((rc = write_secret_file(c->key_operator, text)))
        return rc;
    snprintf(text, sizeof(text), "app %s\n", sw);
    if ((rc = write_secret_file(c->key_writer, text)))
        return rc;
    return setenv("IMGSTORE_KEY_FILE", c->key_operator, 1) ? -errno : 0;
}
