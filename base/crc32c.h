/* crc32c.h - CRC32C (Castagnoli), the checksum of every stored record.
 *
 * Backed by ISA-L's crc32_iscsi (hardware accelerated where available).
 * crc32c(0, buf, len) is the standard CRC32C of buf; pass a previous result
 * as `crc` to extend it over more bytes. */
#ifndef IMG_CRC32C_H
#define IMG_CRC32C_H

#include <stddef.h>
#include <stdint.h>

uint32_t crc32c(uint32_t crc, const void *buf, size_t len);

#endif
