/* ec_compact.c - compaction of an erasure-coded block, the pure part
 * (ec_compact.h): the garbage count and threshold rule, the compacted
 * block image built from the data shards' payloads and the record table,
 * and its encoding under the next stripe generation. No I/O. */
#include "dataserver/ec_compact.h"

#include "base/err.h"
#include "dataserver/needle.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

uint64_t ec_compact_garbage(const struct ec_hdr *h, const struct ec_tent *tab, size_t n,
                            uint64_t first)
{
    if (h->block_len < first)
        return 0;
    uint64_t body = h->block_len - first, live = 0;
    for (size_t i = 0; i < n; i++)
        if (!tab[i].deleted)
            live += needle_record_size(tab[i].size);
    return live > body ? 0 : body - live;
}

int ec_compact_due(uint64_t garbage, uint64_t block_len, unsigned pct)
{
    if (pct == 0 || pct > 100 || block_len == 0 || garbage == 0)
        return 0;
    /* garbage / block_len >= pct / 100, without overflow for any block */
    return garbage >= block_len / 100 * pct + (block_len % 100) * pct / 100;
}

int ec_compact_image(const struct ec_hdr *h, const uint8_t *const *data,
                     const struct ec_tent *tab, size_t n, uint64_t first, uint8_t **out,
                     uint64_t *out_len)
{
    if (first > h->block_len || h->ext[0].end - h->ext[0].start < first || first > h->L)
        return IMG_EINVAL;
    uint64_t len = first;
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && tab[i].seq <= tab[i - 1].seq)
            return IMG_EINVAL;
        if (!tab[i].deleted)
            len += needle_record_size(tab[i].size);
    }
    if (len > h->block_len)
        return IMG_EINVAL; /* more live bytes than the block: not its table */
    uint8_t *img = malloc(len ? len : 1);
    if (!img)
        return -ENOMEM;
    memcpy(img, data[0], first);
    uint64_t o = first;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const struct ec_tent *e = &tab[i];
        if (e->deleted)
            continue;
        uint64_t rl = needle_record_size(e->size), so;
        unsigned d;
        struct needle_header nh;
        if (e->off < first || ec_locate(h, e->off, rl, &d, &so) != 0 || so + rl > h->L)
            rc = IMG_EINVAL;
        else if (needle_verify(data[d] + so, rl, e->seq, e->cookie, &nh) != 0 ||
                 nh.size != e->size)
            rc = IMG_ECORRUPT;
        else {
            memcpy(img + o, data[d] + so, rl);
            o += rl;
        }
    }
    if (rc != 0) {
        free(img);
        return rc;
    }
    *out = img;
    *out_len = len;
    return 0;
}

int ec_compact_stripe(const struct ec_hdr *h, const uint8_t *const *data,
                      const struct ec_tent *tab, size_t n, uint64_t first,
                      struct ec_stripe_files *out)
{
    memset(out, 0, sizeof(*out));
    if (h->gen == UINT32_MAX)
        return IMG_EINVAL;
    uint8_t *img;
    uint64_t len;
    int rc = ec_compact_image(h, data, tab, n, first, &img, &len);
    if (rc != 0)
        return rc;
    rc = ec_stripe_build_gen(img, len, first, h->block_id, h->k, h->m, h->gen + 1, out);
    free(img);
    return rc;
}
