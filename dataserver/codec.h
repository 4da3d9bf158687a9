/* codec.h - the encodings a record's data may be stored in (format 3,
 * docs/storage.md "Encoded records"): which uploads are worth compressing,
 * compressing one, and decoding and checking one.
 *
 * Pure and thread-safe: no I/O, no event loop; the dataserver calls it on
 * the libuv thread pool (ds_codec.c) so that no compression runs on the
 * loop. Every byte handed to codec_decode is hostile. */
#ifndef DS_CODEC_H
#define DS_CODEC_H

#include "dataserver/needle.h"

#include <stddef.h>
#include <stdint.h>

#define CODEC_MIN_SIZE 256         /* smaller uploads are stored as they are */
#define CODEC_MIN_SAVING_PCT 10    /* keep the compressed form only if it saves this share */
#define CODEC_TRIAL_BYTES (64 << 10) /* the trial compresses this prefix first, level 1 */
#define CODEC_LEVEL_DEFAULT 17     /* --compress-level */
#define CODEC_LEVEL_MAX 19
/* Above CODEC_LARGE_BYTES the level is at most CODEC_LEVEL_LARGE: level 17
 * compresses SVG at ~5 MB/s a thread (8 ms for a 40 KB icon, but 1.6 s for
 * an 8 MB drawing); level 9 at ~50 MB/s, 1-2 points of ratio worse. */
#define CODEC_LARGE_BYTES (1u << 20)
#define CODEC_LEVEL_LARGE 9
#define CODEC_WINDOW_LOG 23        /* 8 MiB: what browsers accept for Content-Encoding: zstd */

/* Returns 1 when an upload of MIME code `mime` whose bytes are `data` may be
 * worth a trial compression: not a format that is compressed already (JPEG,
 * PNG, GIF, WebP, AVIF, HEIC, JPEG XL, MP4, gzip, zstd, zip, xz, bzip2,
 * 7z; by its declared type or its first bytes), and at least CODEC_MIN_SIZE
 * bytes. 0 otherwise. */
int codec_candidate(unsigned mime, const void *data, size_t len);

/* Compresses data[len] into one zstd frame (content size recorded, window at
 * most 2^CODEC_WINDOW_LOG) at `level` (1..CODEC_LEVEL_MAX; at most
 * CODEC_LEVEL_LARGE above CODEC_LARGE_BYTES), after a level-1
 * trial of the first CODEC_TRIAL_BYTES. Returns 0 with *out (malloc'd,
 * owned by the caller) and *out_len when the frame plus its encoding header
 * saves at least CODEC_MIN_SAVING_PCT of len; 1 when it would not (nothing
 * allocated); -ENOMEM. */
int codec_encode(const void *data, uint32_t len, int level, uint8_t **out, uint32_t *out_len);

/* Decodes one zstd frame (frame_len bytes) that must hold exactly raw_len
 * bytes (announced in its header, window at most 2^CODEC_WINDOW_LOG) into
 * out[raw_len]. Returns 0 or IMG_ECORRUPT; -ENOMEM. */
int codec_unframe(const uint8_t *frame, uint32_t frame_len, uint8_t *out, uint32_t raw_len);

/* Decodes the encoded data of a record: `frame` (frame_len bytes, after the
 * encoding header) must be one zstd frame holding exactly h->orig_size bytes
 * whose CRC32C is h->orig_crc. Writes them to out[h->orig_size]. Returns 0,
 * IMG_ECORRUPT for anything else (the record is damaged), or -ENOMEM. */
int codec_decode(const struct needle_header *h, const uint8_t *frame, uint32_t frame_len,
                 uint8_t *out);

#endif
