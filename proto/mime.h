/* mime.h - the mime-type codes stored in each record header (one byte).
 *
 * Codes are part of the on-disk format (docs/storage.md): never renumber,
 * only append. Code 0 is application/octet-stream. */
#ifndef IMG_MIME_H
#define IMG_MIME_H

#include <stddef.h>

#define MIME_OCTET_STREAM 0
#define MIME_MAX_CODE 255

/* Returns the mime type string of `code` ("application/octet-stream" for
 * unknown codes). Never NULL. */
const char *mime_name(unsigned code);

/* Returns the code of a mime type string (case-insensitive, parameters after
 * ';' ignored), or MIME_OCTET_STREAM when unknown. */
unsigned mime_from_type(const char *type);

/* Returns the code for a file extension ("jpg", "png", without the dot),
 * or MIME_OCTET_STREAM when unknown. */
unsigned mime_from_ext(const char *ext, size_t len);

/* Guesses the code from the first bytes of the data (magic numbers of the
 * common image formats), or MIME_OCTET_STREAM. */
unsigned mime_sniff(const void *data, size_t len);

/* The code an upload is stored with (docs/http.md, "Uploads"): the claimed
 * type (a Content-Type, imgstore_put's `mime`; NULL, unknown or
 * application/octet-stream: none), unless the bytes carry the signature of
 * another image format - JPEG, PNG, GIF, WebP or AVIF, whose magic numbers
 * are unmistakable - in which case that format wins, so PNG bytes are never
 * served as image/jpeg. Bytes without such a signature keep the claimed
 * type (formats without a reliable signature, SVG or BMP, cannot be
 * checked); with no claim either, mime_sniff decides. */
unsigned mime_pick(const char *claimed, const void *data, size_t len);

/* Returns the preferred extension of a code ("jpg"), or NULL when none. */
const char *mime_ext(unsigned code);

#endif
