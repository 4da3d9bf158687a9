/* ds_throttle.c - the background token bucket (ds_throttle.h).
 * May call libuv's clock only. */
#include "dataserver/ds_throttle.h"

#include <stdlib.h>

#define BUCKET_BURST_MS 100 /* the bucket holds at most this much of the rate */

struct ds_throttle {
    double tokens; /* bytes; negative = debt */
    uint64_t refill_ms;
    uint64_t rate; /* bytes/s */
};

static struct ds_throttle *throttle_state(struct ds *ds)
{
    if (!ds->throttle) {
        struct ds_throttle *t = calloc(1, sizeof(*t));
        if (!t)
            return NULL;
        t->rate = DS_THROTTLE_DEFAULT_RATE;
        t->refill_ms = uv_now(ds->loop);
        ds->throttle = t;
    }
    return ds->throttle;
}

static void bucket_refill(struct ds *ds, struct ds_throttle *t)
{
    uint64_t now = uv_now(ds->loop);
    double cap = (double)t->rate * BUCKET_BURST_MS / 1000.0;
    t->tokens += (double)t->rate * (double)(now - t->refill_ms) / 1000.0;
    if (t->tokens > cap)
        t->tokens = cap;
    t->refill_ms = now;
}

uint64_t ds_throttle_take(struct ds *ds, uint32_t len)
{
    struct ds_throttle *t = throttle_state(ds);
    if (!t)
        return 1;
    bucket_refill(ds, t);
    if (t->tokens < 0)
        return (uint64_t)(-t->tokens * 1000.0 / (double)t->rate) + 1;
    t->tokens -= len;
    return 0;
}

void ds_throttle_refund(struct ds *ds, double bytes)
{
    struct ds_throttle *t = throttle_state(ds);
    if (t)
        t->tokens += bytes;
}

void ds_throttle_set_rate(struct ds *ds, uint64_t bytes_per_s)
{
    struct ds_throttle *t = throttle_state(ds);
    if (t && bytes_per_s)
        t->rate = bytes_per_s;
}
