/* ec_compact.h - compaction of an erasure-coded block, the pure part
 * (docs/storage.md, "Compaction of an encoded block"): part of the storage
 * engine, no I/O and no libuv.
 *
 * An encoded block's deleted files keep their bytes in the data shards
 * (the record table only marks them). Its garbage is every byte of the
 * block file that is not a live record (ec_compact_garbage); past the
 * cluster's compact threshold (the same `compact_threshold` percentage as
 * a replicated block's deleted bytes, ec_compact_due) the block is
 * rewritten exactly as a replicated compaction rewrites a block file: the
 * superblock, then every live record in ascending seq order, byte for
 * byte (seq, cookie, ctime, CRC unchanged, so every live file keeps its
 * name; ec_compact_image), and that image is encoded again with the same
 * k+m under the next stripe generation (ec_compact_stripe). The input is
 * the k data shards' payloads (read from their holders, or decoded from
 * any k shards when one is lost) and the union of the holders' record
 * tables (every deletion known); the output is a pure function of the
 * live records, so two compactors of the same input build identical
 * shards. Includes only engine headers. */
#ifndef DS_EC_COMPACT_H
#define DS_EC_COMPACT_H

#include "dataserver/ec.h"
#include "dataserver/ec_shard.h"

#include <stddef.h>
#include <stdint.h>

/* Bytes of the block file (h->block_len, the superblock of `first` bytes
 * excluded) that are not live records of tab[0..n): deleted files'
 * records, tombstone records and padding. 0 when the table claims more
 * live bytes than the block has (a table that does not fit: not ours to
 * compact). */
uint64_t ec_compact_garbage(const struct ec_hdr *h, const struct ec_tent *tab, size_t n,
                            uint64_t first);

/* Whether a block with `garbage` bytes out of block_len is due for
 * compaction at threshold pct (percent, 1..100; 0: compaction off), the
 * rule of replicated blocks: garbage >= pct% of the block. */
int ec_compact_due(uint64_t garbage, uint64_t block_len, unsigned pct);

/* Builds the compacted block file image: the superblock (block bytes
 * [0, first), from data shard 0) then every live entry of tab[0..n)
 * (ascending seq), its record located with ec_locate in data[0..h->k)
 * (the data shards' payloads, h->L bytes each) and checked (header, seq,
 * cookie, data CRC32C) before it is copied. *out malloc'd (owned by the
 * caller), *out_len bytes. Returns 0, IMG_ECORRUPT for a record that
 * fails its checks (nothing built: the shard that held it is damaged),
 * IMG_EINVAL for a table that does not fit the header, or -ENOMEM. */
int ec_compact_image(const struct ec_hdr *h, const uint8_t *const *data,
                     const struct ec_tent *tab, size_t n, uint64_t first, uint8_t **out,
                     uint64_t *out_len);

/* ec_compact_image, then the image encoded into the k+m shard files of
 * the next generation (h->gen + 1; same block id, k and m). Returns 0
 * with *out filled (ec_stripe_files_free), or the errors above;
 * IMG_EINVAL when the generation would wrap. */
int ec_compact_stripe(const struct ec_hdr *h, const uint8_t *const *data,
                      const struct ec_tent *tab, size_t n, uint64_t first,
                      struct ec_stripe_files *out);

#endif
