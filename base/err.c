/* err.c - descriptions of imgstore error codes (see err.h). */
#include "base/err.h"

#include <string.h>

struct img_err_desc {
    int code;
    const char *name;
    const char *text;
};

static const struct img_err_desc descs[] = {
    {IMG_OK, "OK", "success"},
    {IMG_ENOTFOUND, "IMG_ENOTFOUND", "file not found"},
    {IMG_EDELETED, "IMG_EDELETED", "file was deleted"},
    {IMG_ECORRUPT, "IMG_ECORRUPT", "stored data failed its checksum"},
    {IMG_EFULL, "IMG_EFULL", "block is full"},
    {IMG_ESEALED, "IMG_ESEALED", "block is sealed"},
    {IMG_EREPL, "IMG_EREPL", "replication to a replica failed"},
    {IMG_ENOBLOCK, "IMG_ENOBLOCK", "no writable block available"},
    {IMG_EPROTO, "IMG_EPROTO", "malformed frame or message"},
    {IMG_EBADNAME, "IMG_EBADNAME", "malformed file name"},
    {IMG_ETOOBIG, "IMG_ETOOBIG", "too large"},
    {IMG_ENOTPRIMARY, "IMG_ENOTPRIMARY", "server is not the block's primary"},
    {IMG_ENOBLOCKHERE, "IMG_ENOBLOCKHERE", "block is not on this server"},
    {IMG_EOFFSET, "IMG_EOFFSET", "replicated append at an unexpected offset"},
    {IMG_ETIMEDOUT, "IMG_ETIMEDOUT", "timed out"},
    {IMG_EUNAVAIL, "IMG_EUNAVAIL", "no reachable replica"},
    {IMG_EEXIST, "IMG_EEXIST", "already exists"},
    {IMG_ESAFEMODE, "IMG_ESAFEMODE", "nameserver is in safe mode"},
    {IMG_EBADTYPE, "IMG_EBADTYPE", "unknown message type"},
    {IMG_ELOCKED, "IMG_ELOCKED", "data folder is locked by another process"},
    {IMG_EFORMAT, "IMG_EFORMAT", "file on disk is not in imgstore format"},
    {IMG_ECONN, "IMG_ECONN", "connection failed"},
    {IMG_EINVAL, "IMG_EINVAL", "invalid argument"},
    {IMG_ESTALE, "IMG_ESTALE", "replica set is out of date"},
    {IMG_EVIEWOLD, "IMG_EVIEWOLD", "server's view not confirmed by a nameserver lately"},
    {IMG_EBUSY, "IMG_EBUSY", "server busy receiving other uploads, retry shortly"},
    {IMG_EAUTH, "IMG_EAUTH", "authentication failed (no key, wrong key or key revoked)"},
    {IMG_EPERM, "IMG_EPERM", "key lacks the role for this request"},
    {IMG_EKEYFILE, "IMG_EKEYFILE", "key file unusable (mode, type or a malformed line)"},
    {IMG_EIDBOUND, "IMG_EIDBOUND", "server id is bound to another member key"},
    {IMG_ECLUSTER, "IMG_ECLUSTER", "peer belongs to another cluster"},
    {IMG_ENOTLEADER, "IMG_ENOTLEADER", "nameserver is not the leader"},
    {IMG_EEPOCH, "IMG_EEPOCH", "command from a deposed nameserver leader (older epoch)"},
};

static const struct img_err_desc *find(int err)
{
    for (size_t i = 0; i < sizeof(descs) / sizeof(descs[0]); i++)
        if (descs[i].code == err)
            return &descs[i];
    return NULL;
}

const char *img_strerror(int err)
{
    const struct img_err_desc *d = find(err);
    if (d)
        return d->text;
    /* strerrordesc_np: a static string or NULL. strerror() would return,
     * for a number libc does not know, a buffer its next call frees, and
     * callers keep these texts (several in one reply). */
    const char *s = err < 0 && err > -4096 ? strerrordesc_np(-err) : NULL;
    return s ? s : "unknown error";
}

const char *img_errname(int err)
{
    const struct img_err_desc *d = find(err);
    if (d)
        return d->name;
    if (err < 0 && err > -4096) {
        const char *n = strerrorname_np(-err);
        return n ? n : "E?";
    }
    return "E?";
}
