/* fixture.h - the Criterion side shared by the integration tests: the
 * cluster of the running test (C) with its set-up and teardown, and the
 * uploads of a test's data set. It fails the running test on an error
 * (cr_assert), so it is linked into the integration tests but not into the
 * chaos driver (no Criterion program). It calls cluster.h and the client
 * library only.
 *
 * A test file uses it as
 *     static void setup(void)
 *     {
 *         fixture_start(&(struct cluster_opts){.ndataservers = 3, .replicas = 2});
 *     }
 *     TestSuite(name, .init = setup, .fini = fixture_stop, .timeout = 120);
 * (or cr_assert_eq(fixture_start(...), 0) to fail in the set-up already). */
#ifndef IMG_TEST_FIXTURE_H
#define IMG_TEST_FIXTURE_H

#include "tests/integ/cluster.h"

/* The running test's cluster: set by fixture_start, NULL when it did not
 * start (or after fixture_stop). Owned by the fixture. */
extern struct cluster *C;

/* cluster_start(o, &C): 0 or the negative errno (printed by cluster_start).
 * On failure C stays NULL. */
int fixture_start(const struct cluster_opts *o);

/* cluster_stop(C) and C = NULL; a Criterion .fini fixture. */
void fixture_stop(void);

/* Draws sizes[first .. first+n-1] uniformly in [min, max) from a
 * cluster_rand stream seeded with seed + first. */
void fixture_sizes(uint64_t seed, int first, int n, uint32_t min, uint32_t max, uint32_t *sizes);

/* Uploads files first .. first+n-1 of the data set `seed` (sizes[i] bytes
 * each, names[i] filled) through h with up to `attempts` imgstore_put calls
 * each; fails the test on an upload that does not succeed (the message names
 * `when` when it is not NULL). */
void fixture_put_range(imgstore_t *h, uint64_t seed, int first, int n, const uint32_t *sizes,
                       char (*names)[IMGSTORE_NAME_MAX], int attempts, const char *when);

/* fixture_sizes, then fixture_put_range through a fresh handle (no writable
 * block cached from before), closed afterwards. */
void fixture_upload(uint64_t seed, int first, int n, uint32_t min, uint32_t max, int attempts,
                    uint32_t *sizes, char (*names)[IMGSTORE_NAME_MAX]);

#endif
