/* err.h - the one error convention of imgstore.
 *
 * Every function that can fail returns int: 0 on success, a negative errno
 * (-ENOENT, -EIO, ...) for system failures, or one of the IMG_E* codes below
 * for failures that are ours. img_strerror() turns either into a sentence.
 * The same numbers travel in the `status` field of response frames, so a
 * client sees exactly the error the server saw. */
#ifndef IMG_ERR_H
#define IMG_ERR_H

enum img_err {
    IMG_OK = 0,
    IMG_ENOTFOUND = -1000, /* no such file (or wrong cookie: indistinguishable) */
    IMG_EDELETED = -1001,  /* the file existed and was deleted */
    IMG_ECORRUPT = -1002,  /* stored bytes fail their checksum */
    IMG_EFULL = -1003,     /* the block has no room for this file */
    IMG_ESEALED = -1004,   /* the block takes no more files */
    IMG_EREPL = -1005,     /* a replica failed; the write is not acknowledged */
    IMG_ENOBLOCK = -1006,  /* no writable block is available right now */
    IMG_EPROTO = -1007,    /* malformed frame or message */
    IMG_EBADNAME = -1008,  /* malformed file name */
    IMG_ETOOBIG = -1009,   /* file or frame larger than the limit */
    IMG_ENOTPRIMARY = -1010, /* this server does not order appends for the block */
    IMG_ENOBLOCKHERE = -1011, /* the block is not on this server */
    IMG_EOFFSET = -1012,   /* replicated append at the wrong offset */
    IMG_ETIMEDOUT = -1013, /* no answer in time */
    IMG_EUNAVAIL = -1014,  /* no reachable server holds the block */
    IMG_EEXIST = -1015,    /* the block already exists */
    IMG_ESAFEMODE = -1016, /* the nameserver is in safe mode */
    IMG_EBADTYPE = -1017,  /* unknown message type */
    IMG_ELOCKED = -1018,   /* the data folder is in use by another process */
    IMG_EFORMAT = -1019,   /* a file on disk is not in our format */
    IMG_ECONN = -1020,     /* connection lost or refused */
    IMG_EINVAL = -1021,    /* invalid argument */
    IMG_ESTALE = -1022,    /* the sender's replica set is older than ours */
    IMG_EVIEWOLD = -1023,  /* this server's view of its sets is not confirmed lately (lease
                            * lapsed): ask another replica, or again with any_view */
    IMG_EBUSY = -1030,     /* the server is at its receive budget: retry shortly */
    IMG_EAUTH = -1024,     /* authentication required or failed (no key, bad proof, key revoked) */
    IMG_EPERM = -1025,     /* the key lacks the role for this request */
    IMG_EKEYFILE = -1026,  /* a key file is unusable: its mode, type or a malformed line */
    IMG_EIDBOUND = -1027,  /* the server id is bound to another member key */
    IMG_ECLUSTER = -1028,  /* the peer belongs to another cluster (cluster id differs) */
    IMG_ENOTLEADER = -1035, /* this nameserver is a standby: ask the leader (the answer's
                             * NotLeader head may name it) or the next nameserver */
    IMG_EEPOCH = -1036,    /* a command from a deposed nameserver leader (its epoch is older
                            * than one this dataserver has seen) */
};

/* Returns a static, human-readable description of `err` (an IMG_E* code or a
 * negative errno). Never returns NULL. */
const char *img_strerror(int err);

/* Returns the symbolic name of `err` ("IMG_ENOTFOUND", "ENOENT"). */
const char *img_errname(int err);

#endif
