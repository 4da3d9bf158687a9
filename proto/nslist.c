/* nslist.c - a list of nameserver addresses (see nslist.h). */
#include "proto/nslist.h"

#include "base/err.h"

#include <stdio.h>
#include <string.h>

int nslist_parse(const char *s, struct nslist *out)
{
    memset(out, 0, sizeof(*out));
    if (!s || strlen(s) >= NSLIST_STR_MAX)
        return IMG_EINVAL;
    const char *p = s;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == 0 || len >= ADDR_MAX || out->n == NSLIST_MAX)
            goto bad;
        char a[ADDR_MAX];
        memcpy(a, p, len);
        a[len] = '\0';
        if (strpbrk(a, " \t\r\n") || addr_check(a) != 0 || nslist_find(out, a) >= 0)
            goto bad;
        memcpy(out->addr[out->n++], a, len + 1);
        if (!comma)
            return 0;
        p = comma + 1;
    }
bad:
    memset(out, 0, sizeof(*out));
    return IMG_EINVAL;
}

int nslist_find(const struct nslist *l, const char *addr)
{
    for (int i = 0; addr && i < l->n; i++)
        if (strcmp(l->addr[i], addr) == 0)
            return i;
    return -1;
}

const char *nslist_format(const struct nslist *l, char *buf, unsigned len)
{
    if (len == 0)
        return buf;
    buf[0] = '\0';
    size_t used = 0;
    for (int i = 0; i < l->n && used + 1 < len; i++) {
        int w = snprintf(buf + used, len - used, "%s%s", i ? "," : "", l->addr[i]);
        if (w < 0)
            break;
        used += (size_t)w;
    }
    return buf;
}
