/* ns_ec_fixture.h - what the unit tests of erasure-coded blocks on the
 * nameserver share (test_ns_ec.c, test_ns_ecdj.c): a 4+2 stripe of a
 * 15 MiB block in 4 MiB shards, and a valid ShardInfo entry of it. */
#ifndef IMG_TEST_NS_EC_FIXTURE_H
#define IMG_TEST_NS_EC_FIXTURE_H

#include "ns_fixture.h"

#define K 4
#define M 2
#define L (4u << 20)
#define BLEN (15u << 20)

static uint32_t firsts[K] = {1, 100, 200, 300}, lasts[K] = {99, 199, 299, 400};

/* One ShardInfo entry of block id, shard index (valid unless changed). */
static inline Imgstore__ShardInfo entry(uint64_t id, unsigned index)
{
    Imgstore__ShardInfo x = IMGSTORE__SHARD_INFO__INIT;
    x.block_id = id;
    x.k = K;
    x.m = M;
    x.index = index;
    x.shard_len = L;
    x.block_len = BLEN;
    x.file_bytes = L + 8192;
    x.n_seq_first = x.n_seq_last = K;
    x.seq_first = firsts;
    x.seq_last = lasts;
    x.files = 400;
    return x;
}

#endif
