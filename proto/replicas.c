/* replicas.c - the replica-list rule of nameserver answers (see
 * replicas.h). */
#include "proto/replicas.h"

#include "base/err.h"
#include "proto/addr.h"

#include <string.h>

int replicas_addrs(Imgstore__Replica *const *r, size_t n, enum replicas_use use, char *addr,
                   size_t max, size_t stride)
{
    size_t got = 0;
    for (size_t i = 0; i < n && got < max; i++) {
        const char *a = r && r[i] ? r[i]->addr : NULL;
        if (addr_check(a) != 0 || strlen(a) >= stride) {
            if (i == 0 && use == REPLICAS_WRITE)
                return IMG_EPROTO; /* WRITE would reach a secondary */
            continue;
        }
        memcpy(addr + got * stride, a, strlen(a) + 1);
        got++;
    }
    return got > 0 ? (int)got : IMG_EPROTO;
}
