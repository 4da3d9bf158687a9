/* retry.h - which failures are worth another attempt: one table for an
 * upload, a read and a delete.
 *
 * The client library (client/imgstore.c) and the dataserver's HTTP origin
 * (dataserver/http_put.c) follow the same rules (docs/protocol.md,
 * "Retry rules"); they differ only in how long they wait and how often
 * they try, which stays theirs. An error of one attempt (the server's
 * status or the transport's error) maps to what to do next:
 *
 *   step    RETRY_OTHER                          RETRY_WAIT
 *   WRITE   EREPL EFULL ESEALED ENOTPRIMARY      EBUSY: the same block later
 *           ENOBLOCKHERE ECONN ETIMEDOUT EPROTO
 *           EUNAVAIL ECORRUPT: another writable
 *           block
 *   ALLOC   -                                    ENOBLOCK ESAFEMODE
 *                                                ETIMEDOUT ECONN EUNAVAIL
 *                                                ENOTLEADER
 *   READ    every error but EDELETED: the        -
 *           next replica
 *   DELETE  ENOTPRIMARY ENOBLOCKHERE ECONN       -
 *           ETIMEDOUT EUNAVAIL EREPL ESAFEMODE:
 *           a fresh location, again
 *
 * Anything else is RETRY_FINAL. Calls nothing. */
#ifndef IMG_RETRY_H
#define IMG_RETRY_H

/* The step that failed. */
enum retry_step {
    RETRY_WRITE,  /* WRITE of a new file to a writable block's primary */
    RETRY_ALLOC,  /* getting a writable block (ALLOC_WRITE) */
    RETRY_READ,   /* READ or STAT on one replica */
    RETRY_DELETE, /* DELETE on the block's primary */
    RETRY_NSTEPS
};

/* What to do next. */
enum retry_action {
    RETRY_FINAL, /* report the error: another attempt cannot help */
    RETRY_OTHER, /* WRITE: another block; READ: the next replica; DELETE:
                  * the block moved or its primary died, ask LOOKUP again */
    RETRY_WAIT,  /* ALLOC: nothing writable right now; wait, ask again;
                  * WRITE: the primary is busy (EBUSY); wait, send again */
};

/* Returns what to do after `step` failed with `err` (nonzero). */
enum retry_action retry_action(enum retry_step step, int err);

/* After a WRITE failed with a RETRY_OTHER error: returns 1 when the block
 * itself is in doubt (its cached location is dropped and it is excluded
 * from the next ALLOC_WRITE), 0 when only the bytes were damaged on the way
 * (IMG_ECORRUPT: the block is only dropped from the writable cache). */
int retry_write_excludes(int err);

#endif
