/* ds_codec.h - compressing uploads and decoding stored records off the
 * event loop (docs/storage.md "Encoded records"), and the zstd frames of
 * block copies (docs/dataserver.md).
 *
 * Both run codec.c on the libuv thread pool and call back on the loop, so
 * a large SVG being compressed at a high level never delays other requests.
 * May call the storage engine (codec, needle) only. */
#ifndef DS_DS_CODEC_H
#define DS_DS_CODEC_H

#include "dataserver/ds.h"
#include "dataserver/needle.h"

#include <stdint.h>

/* Called on the loop with the outcome of ds_codec_encode: status 0 with the
 * zstd frame (`frame`, frame_len bytes, owned by the callback: free()) and
 * the CRC32C of the original bytes; 1 when compressing does not pay (store
 * the bytes as they are; frame NULL); or -ENOMEM. */
typedef void (*ds_codec_encode_cb)(int status, uint8_t *frame, uint32_t frame_len,
                                   uint32_t orig_crc, void *arg);

/* Starts compressing data[len] at `level` on the thread pool; data is
 * borrowed: it must stay allocated and unchanged until cb has run.
 * Returns 0 (cb runs later, once) or a negative errno (cb not called). */
int ds_codec_encode(struct ds *ds, const void *data, uint32_t len, int level,
                    ds_codec_encode_cb cb, void *arg);

/* Called on the loop with the outcome of ds_codec_decode: status 0 with
 * `rec` (owned by the callback: free()) holding the record's 24-byte header
 * as read, then h->orig_size decoded bytes; IMG_ECORRUPT (the record is
 * damaged) or -ENOMEM with rec NULL. */
typedef void (*ds_codec_decode_cb)(int status, uint8_t *rec, void *arg);

/* Starts decoding record `rec` (taken: freed whatever happens; at least
 * NEEDLE_HEADER_SIZE + h->size bytes, already checked by needle_verify,
 * h->flags with NEEDLE_FLAG_ENCODED) on the thread pool. Returns 0 (cb
 * runs later, once) or a negative errno (cb not called, rec freed). */
int ds_codec_decode(struct ds *ds, uint8_t *rec, const struct needle_header *h,
                    ds_codec_decode_cb cb, void *arg);

/* Starts checking record `rec` as ds_codec_decode does (taken; at least
 * NEEDLE_HEADER_SIZE + h->size bytes, already checked by needle_verify, h->flags
 * with NEEDLE_FLAG_ENCODED), but hands the record back as stored: cb gets
 * status 0 with `rec` itself when its frame decodes to the original's size and
 * CRC32C (the decoded bytes are thrown away), else IMG_ECORRUPT or -ENOMEM
 * with rec NULL (rec freed). Returns 0 (cb runs later, once) or a negative
 * errno (cb not called, rec freed). */
int ds_codec_check(struct ds *ds, uint8_t *rec, const struct needle_header *h,
                   ds_codec_decode_cb cb, void *arg);

/* Called on the loop with the outcome of ds_codec_unframe: status 0 with
 * `raw` (raw_len bytes, owned by the callback: free()); IMG_ECORRUPT or
 * -ENOMEM with raw NULL. */
typedef void (*ds_codec_unframe_cb)(int status, uint8_t *raw, void *arg);

/* Starts decoding one zstd frame (`frame`, frame_len bytes, taken: freed
 * whatever happens) that must hold exactly raw_len bytes whose CRC32C is
 * `crc` (block copies, ds_copy.c). Returns 0 (cb runs later, once) or a
 * negative errno (cb not called, frame freed). */
int ds_codec_unframe(struct ds *ds, uint8_t *frame, uint32_t frame_len, uint32_t raw_len,
                     uint32_t crc, ds_codec_unframe_cb cb, void *arg);

/* ---- chunks between dataservers (block copies, shard moves) ---------------------- */

#define DS_CODEC_WIRE_MIN 4096u /* smaller chunks go as they are */
#define DS_CODEC_WIRE_LEVEL 1   /* zstd level of chunks on the wire: ~300 MB/s, the wire's pace */

/* Called on the loop with the body of a chunk to send: `body` (body_len
 * bytes, owned by the callback: hand it on or free()) is the bytes
 * themselves when raw_len is 0, else one zstd frame of raw_len bytes; crc is
 * the CRC32C of the bytes (not of the frame). */
typedef void (*ds_codec_pack_cb)(uint8_t *body, uint32_t body_len, uint32_t raw_len,
                                 uint32_t crc, void *arg);

/* Packs the chunk buf[len] (taken) for a peer: as one zstd frame (level
 * DS_CODEC_WIRE_LEVEL, on the thread pool) when the peer accepts one
 * (`accept`: ReadBlock.accept_zstd, EcReadRange.accept_zstd), the chunk is
 * at least DS_CODEC_WIRE_MIN bytes and the frame saves 10 % (codec_encode),
 * else as it is. cb runs once, possibly before this returns. The bytes are
 * counted by the caller (ds_codec_count_sent). */
void ds_codec_pack(struct ds *ds, uint8_t *buf, uint32_t len, int accept, ds_codec_pack_cb cb,
                   void *arg);

/* Counts a chunk sent or received in the copy metrics
 * (imgstore_ds_copy_{sent,received}_bytes_total: wire and raw forms). */
void ds_codec_count_sent(struct ds *ds, uint32_t body_len, uint32_t raw_len);
void ds_codec_count_received(struct ds *ds, uint32_t body_len, uint32_t raw_len);

#endif
