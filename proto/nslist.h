/* nslist.h - a list of nameserver addresses ("A,B,C"), as given to --ns,
 * IMGSTORE_NS and imgstore_open.
 *
 * A cluster may run several nameservers (one leads, the others stand by,
 * docs/nameserver.md "High availability"). Every caller of a nameserver
 * holds their addresses in this list, tries the one that answered last
 * first, and goes to the next on a connection failure or on IMG_ENOTLEADER,
 * whose answer may name the leader (a NotLeader head): that address is
 * tried next. Which index is "current" is the caller's state (a handle's,
 * shared by threads, or a dataserver's loop); the list is read-only once
 * parsed. Calls proto/addr.h only. */
#ifndef IMG_NSLIST_H
#define IMG_NSLIST_H

#include "proto/addr.h"

#define NSLIST_MAX 8                         /* addresses in one list */
#define NSLIST_STR_MAX (NSLIST_MAX * ADDR_MAX) /* "A,B,..." with its NUL */

struct nslist {
    int n; /* 1..NSLIST_MAX after a successful parse */
    char addr[NSLIST_MAX][ADDR_MAX];
};

/* Parses "HOST:PORT[,HOST:PORT...]" into *out: each element of the form of
 * proto/addr.h, no empty element, no spaces, no duplicate, at most
 * NSLIST_MAX, the whole shorter than NSLIST_STR_MAX. Returns 0, or
 * IMG_EINVAL (s may be NULL; *out is then empty). */
int nslist_parse(const char *s, struct nslist *out);

/* Returns the index of addr in the list, or -1. */
int nslist_find(const struct nslist *l, const char *addr);

/* Writes the list back as "A,B,C" into buf (size len, truncated, always
 * terminated when len > 0). Returns buf. */
const char *nslist_format(const struct nslist *l, char *buf, unsigned len);

#endif
