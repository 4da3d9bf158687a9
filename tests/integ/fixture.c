/* fixture.c - the integration tests' cluster fixture and data-set uploads
 * (see fixture.h). Fails the running Criterion test on an error; calls
 * cluster.c and the client library only. */
#include "tests/integ/fixture.h"

#include <criterion/criterion.h>
#include <stddef.h>

struct cluster *C;

int fixture_start(const struct cluster_opts *o)
{
    return cluster_start(o, &C);
}

void fixture_stop(void)
{
    cluster_stop(C);
    C = NULL;
}

void fixture_sizes(uint64_t seed, int first, int n, uint32_t min, uint32_t max, uint32_t *sizes)
{
    uint64_t rng = seed + (uint64_t)first;
    for (int i = first; i < first + n; i++)
        sizes[i] = min + (uint32_t)(cluster_rand(&rng) % (max - min));
}

void fixture_put_range(imgstore_t *h, uint64_t seed, int first, int n, const uint32_t *sizes,
                       char (*names)[IMGSTORE_NAME_MAX], int attempts, const char *when)
{
    for (int i = first; i < first + n; i++)
        cr_assert_eq(cluster_put_file(h, seed, (uint64_t)i, sizes[i], names[i], attempts), 0,
                     "%s%supload %d failed %d times", when ? when : "", when ? ": " : "", i,
                     attempts);
}

void fixture_upload(uint64_t seed, int first, int n, uint32_t min, uint32_t max, int attempts,
                    uint32_t *sizes, char (*names)[IMGSTORE_NAME_MAX])
{
    fixture_sizes(seed, first, n, min, max, sizes);
    imgstore_t *h = cluster_client(C);
    cr_assert_not_null(h);
    fixture_put_range(h, seed, first, n, sizes, names, attempts, NULL);
    imgstore_close(h);
}
