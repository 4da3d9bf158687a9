/* array.c - growing a malloc'd array by doubling, looking up an id (see
 * array.h). */
#include "base/array.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int array_reserve(void *pp, size_t *cap, size_t need, size_t size, size_t first)
{
    if (need <= *cap)
        return 0;
    size_t ncap = *cap ? *cap : (first ? first : 1);
    while (ncap < need) {
        if (ncap > SIZE_MAX / 2)
            return -ENOMEM;
        ncap *= 2;
    }
    if (size && ncap > SIZE_MAX / size)
        return -ENOMEM;
    void *old;
    memcpy(&old, pp, sizeof(old)); /* pp holds a T *: read it as a void * */
    void *n = realloc(old, ncap * size);
    if (!n)
        return -ENOMEM;
    memcpy(pp, &n, sizeof(n));
    *cap = ncap;
    return 0;
}

int array_has_u64(const uint64_t *a, size_t n, uint64_t v)
{
    for (size_t i = 0; i < n; i++)
        if (a[i] == v)
            return 1;
    return 0;
}
