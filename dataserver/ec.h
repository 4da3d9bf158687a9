/* ec.h - erasure coding of sealed blocks (docs/storage.md, "Erasure-coded
 * blocks"): the storage-layer codec, with no I/O and no libuv.
 *
 * A sealed block file is cut into k data shards at record boundaries
 * (ec_cut), so every record lies whole in one data shard; each data shard
 * is zero-padded to the shard length L (the longest extent rounded up to
 * EC_ALIGN); m parity shards of L bytes are computed with ISA-L
 * (ec_codec_encode). Any byte range [o, o+n) of the shards can be rebuilt
 * from any k surviving shards (ec_codec_decode): Reed-Solomon works byte by
 * byte, so a degraded read decodes only the range it needs.
 *
 * Each shard file `<blockid>.sNN` starts with a header (ec_hdr_encode,
 * ec_hdr_parse) of ec_hdr_size(k, L) bytes, a multiple of EC_ALIGN, then
 * the L payload bytes:
 *
 *   offset size  field
 *   0      8     magic "IMGSHD1\0"
 *   8      4     version = 1
 *   12     1     k
 *   13     1     m
 *   14     1     shard index (0..k-1 data, k..k+m-1 parity)
 *   15     1     zero
 *   16     8     block id
 *   24     8     L: payload length, multiple of EC_ALIGN, >= EC_ALIGN
 *   32     8     block length (the block file's size = end of extent k-1)
 *   40     4     nchunks = ceil(L / EC_CHUNK)
 *   44     4     header length (bytes, = ec_hdr_size(k, L))
 *   48     4     stripe generation: 0 as encoded, one more per compaction
 *   52     12    zero
 *   64     24*k  extents: start u64, end u64, first seq u32, last seq u32
 *   ...    4*nchunks  CRC32C of each EC_CHUNK of the payload (last: partial)
 *   ...    4     CRC32C of every header byte before it
 *   ...    0..   zero up to the header length
 *
 * All integers little-endian. Every field is checked on parse; a damaged
 * header is refused with a specific reason (enum ec_why). */
#ifndef DS_EC_H
#define DS_EC_H

#include <stddef.h>
#include <stdint.h>

#define EC_MAGIC "IMGSHD1"
#define EC_VERSION 1
#define EC_MAX_K 10
#define EC_MAX_M 4
#define EC_MAX_SHARDS (EC_MAX_K + EC_MAX_M)
#define EC_ALIGN 4096u            /* shard length and header length unit */
#define EC_CHUNK (64u << 10)       /* payload bytes per CRC32C */
#define EC_HDR_FIXED 64
#define EC_EXTENT_SIZE 24
#define EC_MAX_L (UINT64_C(32) << 30) /* no shard exceeds the largest block */
#define EC_MAX_CHUNKS ((uint32_t)(EC_MAX_L / EC_CHUNK))

/* Why a header was refused (ec_hdr_parse); EC_OK when it was not. */
enum ec_why {
    EC_OK = 0,
    EC_WHY_SHORT,     /* fewer bytes than the header needs */
    EC_WHY_MAGIC,     /* not a shard file */
    EC_WHY_VERSION,   /* a version this code does not read */
    EC_WHY_SCHEME,    /* k+m not one of the schemes (4+2, 6+3, 10+4) */
    EC_WHY_INDEX,     /* shard index >= k+m */
    EC_WHY_LENGTH,    /* L, nchunks or the header length inconsistent */
    EC_WHY_RESERVED,  /* a zero field or the padding is not zero */
    EC_WHY_CRC,       /* the header's CRC32C does not match */
    EC_WHY_EXTENTS,   /* extents not contiguous from 0, longer than L, or seqs wrong */
    EC_WHY_BLOCK,     /* another block's shard than the caller expected */
};

/* The name of a reason ("bad magic", ...), static. */
const char *ec_why_str(enum ec_why why);

/* One data shard's part of the block file: [start, end) in block-file
 * coordinates, and the least and greatest seq of the live (non-tombstone)
 * records in it (both 0 when it has none). */
struct ec_extent {
    uint64_t start;
    uint64_t end;
    uint32_t first_seq;
    uint32_t last_seq;
};

/* A shard header. chunk_crc: nchunks CRC32Cs, owned by the header (freed
 * by ec_hdr_free; NULL until set). */
struct ec_hdr {
    uint64_t block_id;
    uint8_t k, m, index;
    uint64_t L;
    uint64_t block_len;
    uint32_t nchunks;
    uint32_t gen;             /* stripe generation (0: as encoded; +1 per compaction) */
    struct ec_extent ext[EC_MAX_K];
    uint32_t *chunk_crc;
};

/* Returns 0 when k+m is a scheme we encode (4+2, 6+3, 10+4), else IMG_EINVAL. */
int ec_scheme_check(unsigned k, unsigned m);

/* Parses "4+2", "6+3" or "10+4" into *k, *m. Returns 0 or IMG_EINVAL. */
int ec_scheme_parse(const char *s, unsigned *k, unsigned *m);

/* A record of the block being cut: its offset in the block file and seq;
 * tomb: a tombstone (not counted in the seq ranges). */
struct ec_rec {
    uint64_t off;
    uint32_t seq;
    uint8_t tomb;
};

/* Cuts a block file of block_len bytes whose records start at recs[0..n)
 * (ascending offsets, each >= first, the superblock's end, and < block_len)
 * into k extents: boundary i is the first record start at or after
 * i*block_len/k (block_len when there is none), extent 0 starts at 0.
 * Fills ext[0..k) and *L (the longest extent rounded up to EC_ALIGN, at
 * least EC_ALIGN). Returns 0, or IMG_EINVAL for a bad k, offsets out of
 * order or range, or an L above EC_MAX_L. */
int ec_cut(uint64_t block_len, uint64_t first, const struct ec_rec *recs, size_t n,
           unsigned k, struct ec_extent *ext, uint64_t *L);

/* Finds the data shard holding [off, off+len) of the block file: *shard and
 * *shard_off (offset inside the shard's payload). Returns 0, or IMG_EINVAL
 * when the range is empty, outside the block, or crosses two extents. */
int ec_locate(const struct ec_hdr *h, uint64_t off, uint64_t len, unsigned *shard,
              uint64_t *shard_off);

/* Encoding and decoding tables of one scheme; plain data, no cleanup. */
struct ec_codec {
    unsigned k, m;
    uint8_t matrix[EC_MAX_SHARDS * EC_MAX_K]; /* (k+m) x k, first k rows identity */
    uint8_t tbls[32 * EC_MAX_K * EC_MAX_M];
};

/* Builds the Cauchy matrix and tables of k+m. Returns 0 or IMG_EINVAL. */
int ec_codec_init(struct ec_codec *c, unsigned k, unsigned m);

/* Computes parity[0..m) (len bytes each) from data[0..k) (len bytes each):
 * the same byte range of every shard. */
void ec_codec_encode(const struct ec_codec *c, size_t len, const uint8_t *const *data,
                     uint8_t *const *parity);

/* Rebuilds shards want[0..nwant) over len bytes (the same range of every
 * shard) from the k shards have[0..k) (distinct indices < k+m, any order)
 * whose bytes are src[0..k); out[i] receives shard want[i]. Any shard may
 * be wanted (1 <= nwant <= k+m), lost or not. Returns 0, or IMG_EINVAL for
 * repeated or out-of-range indices or a bad nwant. */
int ec_codec_decode(const struct ec_codec *c, size_t len, const uint8_t *have,
                    const uint8_t *const *src, const uint8_t *want, unsigned nwant,
                    uint8_t *const *out);

/* Bytes of the header of a k-shard stripe with shard length L. */
size_t ec_hdr_size(unsigned k, uint64_t L);

/* CRC32Cs of payload[0..L) per EC_CHUNK into crc[0..ceil(L/EC_CHUNK)). */
void ec_chunk_crcs(const uint8_t *payload, uint64_t L, uint32_t *crc);

/* Checks payload bytes [off, off+len) against the header's chunk CRCs:
 * [off, off+len) must cover whole chunks (off a multiple of EC_CHUNK, len a
 * multiple of EC_CHUNK or reaching L). Returns 0, IMG_ECORRUPT at the first
 * mismatch (*bad_chunk set when not NULL), or IMG_EINVAL for a bad range. */
int ec_verify_chunks(const struct ec_hdr *h, const uint8_t *bytes, uint64_t off,
                     uint64_t len, uint32_t *bad_chunk);

/* Writes h (chunk_crc set) into out[0..ec_hdr_size(h->k, h->L)), which
 * must have that many bytes (outlen). Returns 0, or IMG_EINVAL when h does
 * not pass the checks ec_hdr_parse makes or outlen is short. */
int ec_hdr_encode(const struct ec_hdr *h, uint8_t *out, size_t outlen);

/* Reads the fixed part in[0..EC_HDR_FIXED) and returns the whole header's
 * length in *hdr_len (so a reader knows how much more to read), after the
 * checks that need only those bytes. Returns 0, or IMG_EFORMAT with *why. */
int ec_hdr_peek(const uint8_t *in, size_t len, size_t *hdr_len, enum ec_why *why);

/* Parses and checks a whole header from in[0..len). expect_id: the block
 * the caller expects (UINT64_MAX: any). On success fills *h (h->chunk_crc
 * allocated: the caller frees it with ec_hdr_free) and returns 0; else
 * IMG_EFORMAT (IMG_ECORRUPT for a CRC mismatch, -ENOMEM) with *why set,
 * and *h owns nothing. */
int ec_hdr_parse(const uint8_t *in, size_t len, uint64_t expect_id, struct ec_hdr *h,
                 enum ec_why *why);

/* Frees h->chunk_crc (h itself is the caller's). */
void ec_hdr_free(struct ec_hdr *h);

#endif
