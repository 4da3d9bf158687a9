/* crc32c.c - CRC32C via ISA-L (see crc32c.h). */
#include "base/crc32c.h"

#include <isa-l/crc.h>

uint32_t crc32c(uint32_t crc, const void *buf, size_t len)
{
    /* ISA-L's crc32_iscsi works on the raw register: it neither inverts the
     * seed nor the result, so we do both to get the standard CRC32C. */
    return ~crc32_iscsi((unsigned char *)buf, (int)len, ~crc);
}
