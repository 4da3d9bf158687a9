/* hexid.c - random ids written in lower-case hex (see hexid.h). */
#include "base/hexid.h"

#include <errno.h>
#include <stdint.h>
#include <sys/random.h>
#include <sys/types.h>

int hexid_random(char *out, size_t nbytes)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < nbytes;) {
        uint8_t raw[64];
        size_t want = nbytes - i < sizeof(raw) ? nbytes - i : sizeof(raw);
        ssize_t n = getrandom(raw, want, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        for (size_t k = 0; k < (size_t)n; k++, i++) {
            out[2 * i] = hex[raw[k] >> 4];
            out[2 * i + 1] = hex[raw[k] & 0xf];
        }
    }
    out[2 * nbytes] = '\0';
    return 0;
}

int hexid_valid(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

int hexid_u64(const char *s, uint64_t *v)
{
    uint64_t x = 0;
    for (int i = 0; i < 16; i++) {
        char c = s[i];
        if (c >= '0' && c <= '9')
            x = x << 4 | (uint64_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            x = x << 4 | (uint64_t)(c - 'a' + 10);
        else
            return 0;
    }
    *v = x;
    return 1;
}
