/* array.h - growing a malloc'd array by doubling, and looking a value up in
 * an array of ids, written once.
 *
 * Used wherever a module appends to an array it owns (the nameserver's pool,
 * tasks, moves and bad copies, the dataserver's index entries, the bench's
 * latencies, ...): the capacity starts at a given size and
 * doubles until the array holds what is asked for; every multiplication is
 * checked, so an absurd request fails with -ENOMEM instead of wrapping
 * around. array_has_u64 is the "is this block id in the exclude list"
 * test of the write paths (client cache, dataserver, nameserver pool).
 * Calls nothing but realloc. */
#ifndef IMG_ARRAY_H
#define IMG_ARRAY_H

#include <stddef.h>
#include <stdint.h>

/* Makes room for `need` elements of `size` bytes in the array *pp (pp is the
 * address of the owner's `T *`, malloc'd or NULL) of which *cap elements are
 * allocated: *cap becomes `first` when it is 0, then doubles until it is at
 * least `need`. Returns 0 (the pointer and *cap updated; nothing done when
 * *cap >= need already), or -ENOMEM on an allocation failure or an overflow
 * (the array and *cap untouched). */
int array_reserve(void *pp, size_t *cap, size_t need, size_t size, size_t first);

/* array_reserve for the array `p` (a `T *` lvalue) with capacity `cap` (a
 * size_t lvalue). */
#define ARRAY_RESERVE(p, cap, need, first) \
    array_reserve(&(p), &(cap), (need), sizeof(*(p)), (first))

/* Returns 1 when one of the n values at a (may be NULL when n is 0) equals
 * v, else 0. */
int array_has_u64(const uint64_t *a, size_t n, uint64_t v);

#endif
