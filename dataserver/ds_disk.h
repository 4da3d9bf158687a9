/* ds_disk.h - failed-disk detection: each data folder is checked every
 * DS_DISK_CHECK_MS (and its block I/O errors, blockio_disk_error). A folder
 * whose path no longer stats as the directory opened at start (st_dev and
 * st_ino compared: it vanished, was unmounted or renamed away), whose blocks
 * folder is gone, or whose block I/O failed with a system error, is marked
 * failed once (logged at ERROR; Disk.failed in every heartbeat). Its blocks
 * are then dropped from memory (ds_block_drop: new requests get
 * IMG_ENOBLOCKHERE, reads in flight finish) and reported in removed_blocks,
 * so the nameserver re-replicates them from the other copies. The other
 * folders keep serving; a failed folder stays failed until a restart. */
#ifndef DS_DS_DISK_H
#define DS_DS_DISK_H

#include "dataserver/ds.h"

#define DS_DISK_CHECK_MS 2000 /* every folder is checked this often */

/* Records the identity (st_dev, st_ino) of every data folder and starts the
 * check timer. Returns 0 or -ENOMEM. */
int ds_disk_start(struct ds *ds);

/* Runs one check now (the timer's work): marks folders failed and drops the
 * blocks of failed folders that are not busy. Returns how many folders are
 * failed. */
int ds_disk_check(struct ds *ds);

/* Stops the timer (closed on the next loop turn) and frees the state. */
void ds_disk_stop(struct ds *ds);

#endif
