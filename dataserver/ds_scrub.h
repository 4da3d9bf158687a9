/* ds_scrub.h - the scrubber: every live record re-read and its CRC32C checked.
 *
 * A slow continuous cycle over every block of the server (blocks by id, files
 * by seq) reads one record at a time through io_uring (blockio_read) at most
 * at ds->scrub_rate bytes/s (--scrub-rate-mb, default DS_SCRUB_DEFAULT_MB; 0
 * turns the cycle off). A record whose header, seq or data CRC32C is wrong
 * marks its block corrupt (meta saved, reported in the next heartbeat): the
 * nameserver then replaces this copy from a good replica and deletes it.
 * Reads already refuse to serve bad bytes (IMG_ECORRUPT), so nothing bad is
 * served meanwhile. VERIFY (admin -> ds) runs a pass at once over one block or
 * all of them and answers with what it found. */
#ifndef DS_DS_SCRUB_H
#define DS_DS_SCRUB_H

#include "dataserver/ds_req.h"

#define DS_SCRUB_DEFAULT_MB 5      /* default --scrub-rate-mb (10^6 bytes/s) */
#define DS_SCRUB_TICK_MS 100       /* the cycle looks at its bucket this often */

/* Starts the continuous cycle when ds->scrub_rate is not 0. Returns 0 or
 * -ENOMEM. */
int ds_scrub_start(struct ds *ds);

/* Puts `bytes_per_s` in force as the cycle's rate (0: off), at once and
 * logged when it changes; starts the cycle's timer when needed. Called with
 * every heartbeat answer (the nameserver's scrub_rate, else --scrub-rate-mb). */
void ds_scrub_set_rate(struct ds *ds, uint64_t bytes_per_s);

/* Handler of VERIFY (dispatch table, ds_req.h), from ds-admin on the native
 * port or from the nameserver on its session (repair): runs a pass and
 * answers r exactly once (VerifyResp, or IMG_ENOBLOCKHERE / an error). */
void ds_scrub_verify(struct ds_req *r, const struct frame *f);

/* Stops the cycle and fails pending VERIFYs with IMG_ECONN (a read in flight
 * ends in its callback). Call with ds->stopping set, before store_close. */
void ds_scrub_stop(struct ds *ds);

#endif
