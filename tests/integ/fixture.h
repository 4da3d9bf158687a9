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
 * (or cr_assert_eq(fixture_start(...), 0) to fail in the set-up already).
 * It also holds the checks more than one test makes: ds-admin --json runs, a
 * copy damaged on disk, a file's bytes, the busiest dataserver, a server's
 * log lines, one nameserver's answer. */
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

/* Runs `ds-admin --json ARGS...` (arguments up to the first NULL) against C
 * with cluster_adminv; fails the test unless it exits 0 with exactly one
 * JSON document on stdout. *r is filled (free with cluster_run_free). */
void fixture_admin_json(struct cluster_run *r, int timeout_ms, ...);

/* Flips one bit in the middle of the bytes of file `name` (size bytes) in
 * its copy on its second replica, found by imgstore_stat (*st; a fresh
 * handle). Returns the index of the dataserver of the damaged copy. */
int fixture_damage_copy(const char *name, uint32_t size, struct imgstore_stat *st);

/* Like fixture_damage_copy, but XORs `mask` into the byte `at` bytes into
 * the file's record (0: its header's first byte; docs/storage.md). */
int fixture_damage_record(const char *name, uint32_t at, uint8_t mask, struct imgstore_stat *st);

/* Fails the test unless the file at path holds exactly the len bytes of
 * want (`what` names the check in the message). */
void fixture_file_holds(const char *path, const void *want, size_t len, const char *what);

/* The dataserver holding a replica of the most of files names[0 .. n-1]
 * (asked through h); *count gets how many. Fails the test when a stat fails,
 * a file has other than `replicas` replicas (unless 0), or no file is on it. */
int fixture_busiest_ds(imgstore_t *h, const char (*names)[IMGSTORE_NAME_MAX], int n, int replicas,
                       int *count);

/* How many times the log at path holds `text` (0 when it cannot be read). */
int fixture_log_count(const char *path, const char *text);

/* Waits until the log at path holds text more than `seen` times (logs of a
 * restarted server are appended); returns the ms waited or -1. */
int64_t fixture_wait_log(const char *path, const char *text, int seen, int timeout_ms);

/* Asks the nameserver at addr alone for the cluster status (1 s deadline):
 * 0, or its error. */
int fixture_ns_status(const char *addr);

#endif
