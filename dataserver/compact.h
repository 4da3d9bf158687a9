/* compact.h - the rewrite of a compaction, part of the storage engine
 * (docs/dataserver.md "Compaction").
 *
 * A compacted block file is the superblock, then every live record of the
 * old file in ascending seq order, byte for byte (seq, cookie, ctime, CRC
 * unchanged), no deleted record and no tombstone: identical inputs give
 * byte-identical outputs on every replica (docs/storage.md). The new
 * file is written as <block path>COMPACT_SUFFIX while its index and CRC32C
 * are built here (struct compact_out), then block_swap_file installs it.
 * The server's online path (ds_compact.c) drives the same steps through
 * io_uring, paced by its token bucket; compact_sync runs them synchronously.
 * Includes only engine headers. */
#ifndef DS_COMPACT_H
#define DS_COMPACT_H

#include "dataserver/block.h"
#include "dataserver/index.h"
#include "dataserver/needle.h"

#include <stddef.h>
#include <stdint.h>

#define COMPACT_SUFFIX ".blk.compact"

/* The output being built: its index (RAM and encoded) and CRC32C. */
struct compact_out {
    struct index ix;
    uint8_t *idx;
    size_t idx_len, idx_cap;
    uint64_t off;  /* bytes written so far */
    uint32_t crc;  /* CRC32C of [0, off) */
    uint32_t files;
};

void compact_out_init(struct compact_out *o);
void compact_out_free(struct compact_out *o);

/* Accounts one record of `len` bytes (header h) written at o->off. Returns
 * 0 or -ENOMEM. */
int compact_out_add(struct compact_out *o, const uint8_t *rec, size_t len,
                    const struct needle_header *h);

/* Checks a live record read for file `seq`: a data record of exactly `len`
 * bytes whose data matches its CRC32C. Returns 0 with *h, or IMG_ECORRUPT. */
int compact_check_record(const uint8_t *rec, size_t len, uint32_t seq, struct needle_header *h);

/* The deterministic plan of a compaction: the live seqs of b in ascending
 * order (*seqs malloc'd, owned by the caller) and the size of the output.
 * Returns 0 or -ENOMEM. */
int compact_plan(const struct block *b, uint32_t **seqs, size_t *n, uint64_t *new_size);

/* Writes the path of b's compaction output (b->path + COMPACT_SUFFIX) into
 * out[0..n); an empty string when it does not fit. */
void compact_temp_path(const struct block *b, char *out, size_t n);

/* Compacts b synchronously (start-up tools and unit tests; the server uses
 * the asynchronous path of COMPACT_BLOCK). Same output and swap as the
 * online path. Returns 0 with *crc the CRC32C of the new file, IMG_ECORRUPT
 * when a live record fails its check (nothing changed), or an error of the
 * swap (the block keeps its old file). */
int compact_sync(struct block *b, uint32_t *crc);

#endif
