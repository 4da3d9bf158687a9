/* crc16.c - CRC-16/T10-DIF via ISA-L (see crc16.h). */
#include "base/crc16.h"

#include <isa-l/crc.h>

uint16_t crc16(uint16_t crc, const void *buf, size_t len)
{
    return crc16_t10dif(crc, (const unsigned char *)buf, (uint64_t)len);
}
