/* ec_fixture.h - the helpers the erasure-coding integration tests share
 * (test_ec.c and test_ec_move.c): their data-set sizes and time limits, a
 * block's 4+2 stripe as ds-admin and the dataservers' folders show it, and
 * a file read over a dataserver's HTTP origin. Like fixture.h it fails the
 * running Criterion test on an error (cr_assert) and works on its cluster
 * C; it is linked into those two tests only (not the chaos driver). It
 * calls fixture.h, cluster.h and proto/fname.h only. */
#ifndef IMG_TEST_EC_FIXTURE_H
#define IMG_TEST_EC_FIXTURE_H

#include "tests/integ/fixture.h"

#include <stddef.h>
#include <stdint.h>

#define NFILES_MAX 9000 /* uploads until a block is sealed: at most this many */
#define BATCH 300
#define MIN_SIZE (10u << 10)
#define MAX_SIZE (18u << 10)
#define BLOCK_SIZE (16u << 20)
#define CLI_MS 20000
#define WAIT_MS 60000

/* Non-zero when file `name` lives in block id. */
int ec_name_in_block(const char *name, uint64_t id);

/* .blk files of block id on every dataserver of C. */
int ec_blk_copies(uint64_t id);

/* The first sealed block the nameserver lists, or 0. */
uint64_t ec_first_sealed(void);

/* ds-admin --json block ID: fills srv[i] with the dataserver index of shard
 * i (-1 when none) and returns how many shards are held by up servers. */
int ec_stripe_of(uint64_t id, int srv[6]);

/* The shard files of block id in dataserver d's folder: a bit mask of
 * their indices. */
unsigned ec_shard_files(int d, uint64_t id);

/* GET /name from an HTTP origin: the body (malloc'd, owned by the caller)
 * and its length from Content-Length, or NULL when the answer is not a 200.
 * An answer over MAX_SIZE + 4096 bytes fails the test. */
uint8_t *ec_http_get(const char *addr, const char *name, size_t *len);

/* CLOCK_MONOTONIC in milliseconds. */
int64_t ec_now_ms(void);

/* Waits (up to WAIT_MS) until block id's stripe has 6 shards on up servers
 * (srv as ec_stripe_of fills it); fails the test otherwise, naming `when`. */
void ec_wait_stripe(uint64_t id, int srv[6], const char *when);

#endif
