/* array.c - growing a malloc'd array by doubling (see array.h). */
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
