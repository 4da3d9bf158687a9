/* ec_tool.c - helpers of bench/ec.sh (`make bench-ec`):
 *   ec_tool encode [MB]   encoding throughput of one core for 4+2, 6+3 and
 *                         10+4 (dataserver/ec.c, ISA-L): MB of data encoded
 *                         per second, over MB (default 256) of data each;
 *                         prints "K+M MB/s" lines
 *   ec_tool filter ID...  copies the lines of an `imgstore bench
 *                         --save-names` file on stdin whose name is in one
 *                         of the blocks ID... to stdout */
#include "dataserver/ec.h"
#include "proto/fname.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int encode(long mb)
{
    static const unsigned schemes[][2] = {{4, 2}, {6, 3}, {10, 4}};
    size_t L = 4u << 20; /* a 4 MiB shard: a 16 MiB block cut in 4 */
    uint8_t *sh[EC_MAX_SHARDS];
    for (int i = 0; i < EC_MAX_SHARDS; i++) {
        sh[i] = malloc(L);
        if (!sh[i])
            return 1;
        for (size_t j = 0; j < L; j++)
            sh[i][j] = (uint8_t)(j * 31 + (size_t)i * 7);
    }
    for (size_t s = 0; s < sizeof(schemes) / sizeof(schemes[0]); s++) {
        struct ec_codec c;
        unsigned k = schemes[s][0], m = schemes[s][1];
        if (ec_codec_init(&c, k, m) != 0)
            return 1;
        long rounds = mb * (1 << 20) / (long)(k * L);
        if (rounds < 1)
            rounds = 1;
        double t0 = now_s();
        for (long r = 0; r < rounds; r++)
            ec_codec_encode(&c, L, (const uint8_t *const *)sh, &sh[k]);
        double dt = now_s() - t0;
        printf("%u+%u %.0f\n", k, m, (double)rounds * k * L / 1e6 / dt);
    }
    for (int i = 0; i < EC_MAX_SHARDS; i++)
        free(sh[i]);
    return 0;
}

static int filter(int n, char **ids)
{
    char line[512];
    while (fgets(line, sizeof(line), stdin)) {
        size_t len = strcspn(line, " \n");
        struct fname f;
        if (fname_decode(line, len, &f, NULL, NULL) != 0)
            continue;
        for (int i = 0; i < n; i++)
            if (strtoull(ids[i], NULL, 10) == f.block_id) {
                fputs(line, stdout);
                break;
            }
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "encode") == 0)
        return encode(argc > 2 ? atol(argv[2]) : 256);
    if (argc >= 2 && strcmp(argv[1], "filter") == 0)
        return filter(argc - 2, argv + 2);
    fprintf(stderr, "usage: ec_tool encode [MB] | filter ID...\n");
    return 2;
}
