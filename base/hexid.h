/* hexid.h - random ids written in lower-case hex, made and checked once.
 *
 * The dataserver's server id (dataserver/store.c, the SERVER_ID file) and
 * the nameserver's cluster id (nameserver/ns_meta.c, ns.meta) are random
 * bytes written as lower-case hex digits: both are made by hexid_random and
 * checked by hexid_valid when read back; block ids in the dataserver's file
 * names are read by hexid_u64. Calls getrandom only. */
#ifndef IMG_HEXID_H
#define IMG_HEXID_H

#include <stddef.h>
#include <stdint.h>

/* Writes nbytes fresh random bytes (getrandom) into out as 2 * nbytes
 * lower-case hex digits and a NUL (out holds 2 * nbytes + 1 chars). Returns
 * 0 or -errno (out then undefined). */
int hexid_random(char *out, size_t nbytes);

/* Returns 1 when each of the len chars at s is a lower-case hex digit
 * (0-9, a-f), else 0; the caller checks the length. */
int hexid_valid(const char *s, size_t len);

/* Reads the 16 lower-case hex digits at s (a block id in a file name) into
 * *v. Returns 1, or 0 when one of them is not a lower-case hex digit. */
int hexid_u64(const char *s, uint64_t *v);

#endif
