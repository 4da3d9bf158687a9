/* ds_file.h - reading one file of a local block: the dataserver's read path,
 * and the READ and STAT handlers built on it.
 *
 * index lookup (RAM) -> one io_uring read of header and data -> needle_verify
 * (seq, cookie, CRC32C) -> for an encoded record, decoding on the thread
 * pool and the original's CRC32C (ds_codec.c). Shared by READ, STAT, the cookie check of DELETE
 * (ds_repl.c) and the HTTP origin so all obey the same rules: a wrong cookie is IMG_ENOTFOUND, exactly
 * like a missing file; a deleted file is IMG_EDELETED only when its cookie
 * matches (so deletions cannot be probed either); a CRC mismatch is
 * IMG_ECORRUPT, logged for repair, and its bytes are never handed out.
 * A block held here only as erasure-coded shards (ds_ec.h) is read from the
 * data shard holding the record (one io_uring read of the record, the same
 * checks), or rebuilt from other shards with DS_FILE_RECONSTRUCT. */
#ifndef DS_FILE_H
#define DS_FILE_H

#include "dataserver/ds.h"
#include "dataserver/ds_req.h"
#include "dataserver/needle.h"

#include <stdint.h>

/* Called once with the outcome. On status 0, *h describes the file, `offset`
 * is where its record was read in the block file and, unless the read was
 * header-only, `rec` holds NEEDLE_HEADER_SIZE + h->size bytes
 * (the data starts at rec + NEEDLE_HEADER_SIZE); ownership of `rec` passes to
 * the callback (release with free()). On error rec is NULL and h is NULL.
 * h->size and h->data_crc are those of the original file (an encoded record
 * is decoded and checked against them first), except with DS_FILE_STORED:
 * then an encoded record's data is handed out as stored (its encoding
 * header, then the zstd frame; h->size = h->stored_size), checked by
 * decoding only when the block is marked corrupt (then a frame that does not
 * decode is IMG_ECORRUPT as without the flag). h->flags,
 * encoding, stored_size, orig_size and orig_crc tell how it is stored. */
typedef void (*ds_file_cb)(int status, const struct needle_header *h, uint64_t offset, uint8_t *rec,
                           void *arg);

/* Sets glibc's malloc thresholds for the read buffers (see ds_file.c):
 * process-wide, so called once at start-up, before serving. */
void ds_file_tune_malloc(void);

/* Flags of ds_file_serves and ds_file_read. */
#define DS_FILE_HEADER_ONLY 1u /* read and check the header only (no CRC): 24 bytes, and the
                                * 16-byte encoding header of an encoded record */
#define DS_FILE_ANY_VIEW 2u    /* serve with a lapsed view too (Read.any_view) */
#define DS_FILE_STORED 4u      /* an encoded record's bytes as stored, not decoded */
#define DS_FILE_RECONSTRUCT 8u /* erasure-coded: rebuild the record from other shards when
                                * its data shard is not here (Read.reconstruct) */

/* Returns 0 when this server may serve reads of block b: b is in the
 * block's replica set as last told by the nameserver (SET_REPLICAS, saved in
 * the block's meta), not marked stale, and the nameserver has checked our
 * view since the process started (ds->view_confirmed) with the view lease
 * still running. A copy left out of the set may lack tombstones, so it never
 * answers for the block, also after a restart (IMG_ENOBLOCKHERE). A copy
 * whose view lapsed answers IMG_EVIEWOLD, or serves with DS_FILE_ANY_VIEW
 * (docs/dataserver.md, "View lease"). */
int ds_file_serves(const struct ds *ds, const struct block *b, unsigned flags);

/* Starts reading file (block_id, seq, cookie) from this server's disks. With
 * DS_FILE_HEADER_ONLY only the header is read and checked (no data CRC
 * check: use it for STAT/HEAD-like answers). Returns 0 (cb runs later,
 * exactly once) or, without calling cb: IMG_ENOBLOCKHERE when the block is
 * not here, IMG_EVIEWOLD (see ds_file_serves), IMG_ENOTFOUND when the index
 * has no such seq, -ENOMEM, or the ring's error. */
int ds_file_read(struct ds *ds, uint64_t block_id, uint32_t seq, uint32_t cookie,
                 unsigned flags, ds_file_cb cb, void *arg);

/* Finishes a read whose record bytes were obtained elsewhere (a degraded
 * read of an erasure-coded block, ds_ec_read.c): buf (len bytes, owned,
 * taken) is the record of file seq at block offset `offset` (header only
 * when `deleted`), checked and decoded exactly as a read from disk, and cb
 * runs once with the outcome. */
void ds_file_finish(struct ds *ds, uint64_t block_id, uint64_t offset, uint32_t seq,
                    uint32_t cookie, int deleted, unsigned flags, uint8_t *buf, size_t len,
                    ds_file_cb cb, void *arg);

/* Handlers of the dispatch table (ds_req.h). READ: header and data of one
 * file, checked, the data sent straight from the read buffer. STAT: its
 * record header only (cookie checked, no CRC). Each answers r once. */
void ds_file_serve_read(struct ds_req *r, const struct frame *f);
void ds_file_serve_stat(struct ds_req *r, const struct frame *f);

#endif
