/* addr.c - the form of a server address on the wire (see addr.h). */
#include "proto/addr.h"

#include "base/err.h"

#include <stdlib.h>
#include <string.h>

int addr_split(const char *addr, char host[ADDR_HOST_MAX], char port[ADDR_PORT_MAX])
{
    if (!addr || strlen(addr) >= ADDR_MAX)
        return IMG_EINVAL;
    const char *colon = strrchr(addr, ':');
    if (!colon || colon == addr)
        return IMG_EINVAL;
    size_t hl = (size_t)(colon - addr);
    const char *h = addr;
    if (h[0] == '[') {
        if (hl < 3 || h[hl - 1] != ']')
            return IMG_EINVAL;
        h++;
        hl -= 2;
    }
    size_t pl = strlen(colon + 1);
    if (hl >= ADDR_HOST_MAX || pl == 0 || pl >= ADDR_PORT_MAX)
        return IMG_EINVAL;
    for (size_t i = 0; i < pl; i++)
        if (colon[1 + i] < '0' || colon[1 + i] > '9')
            return IMG_EINVAL;
    if (atoi(colon + 1) > 65535)
        return IMG_EINVAL;
    memcpy(host, h, hl);
    host[hl] = '\0';
    memcpy(port, colon + 1, pl + 1);
    return 0;
}

int addr_check(const char *addr)
{
    char host[ADDR_HOST_MAX], port[ADDR_PORT_MAX];
    return addr_split(addr, host, port);
}
