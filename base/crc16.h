/* crc16.h - CRC-16/T10-DIF, the checksum of a record's header fields
 * (dataserver/needle.c).
 *
 * Backed by ISA-L's crc16_t10dif. crc16(0, buf, len) is the CRC of buf; it
 * detects every error of up to 16 consecutive bits and every odd number of
 * flipped bits. */
#ifndef IMG_CRC16_H
#define IMG_CRC16_H

#include <stddef.h>
#include <stdint.h>

uint16_t crc16(uint16_t crc, const void *buf, size_t len);

#endif
