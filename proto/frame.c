/* frame.c - frame header codec (see frame.h, docs/protocol.md). */
#include "proto/frame.h"

#include "base/err.h"

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
    put16(p, (uint16_t)(v >> 16));
    put16(p + 2, (uint16_t)v);
}

static void put64(uint8_t *p, uint64_t v)
{
    put32(p, (uint32_t)(v >> 32));
    put32(p + 4, (uint32_t)v);
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
    return ((uint32_t)get16(p) << 16) | get16(p + 2);
}

static uint64_t get64(const uint8_t *p)
{
    return ((uint64_t)get32(p) << 32) | get32(p + 4);
}

void frame_encode(const struct frame_header *h, uint8_t out[FRAME_HEADER_SIZE])
{
    put16(out, FRAME_MAGIC);
    out[2] = FRAME_VERSION;
    out[3] = h->type;
    put32(out + 4, (uint32_t)h->status);
    put64(out + 8, h->request_id);
    put32(out + 16, h->head_len);
    put32(out + 20, h->body_len);
}

int frame_decode(const uint8_t in[FRAME_HEADER_SIZE], struct frame_header *h)
{
    if (get16(in) != FRAME_MAGIC || in[2] != FRAME_VERSION)
        return IMG_EPROTO;
    h->version = in[2];
    h->type = in[3];
    h->status = (int32_t)get32(in + 4);
    h->request_id = get64(in + 8);
    h->head_len = get32(in + 16);
    h->body_len = get32(in + 20);
    if (h->head_len > FRAME_MAX_HEAD || h->body_len > FRAME_MAX_BODY)
        return IMG_ETOOBIG;
    if (h->status > 0)
        return IMG_EPROTO;
    return 0;
}

const char *frame_type_name(unsigned type)
{
    switch (type & ~FRAME_RESPONSE) {
    case FT_HEARTBEAT: return "HEARTBEAT";
    case FT_CREATE_BLOCK: return "CREATE_BLOCK";
    case FT_ALLOC_WRITE: return "ALLOC_WRITE";
    case FT_LOOKUP: return "LOOKUP";
    case FT_CLUSTER_STATUS: return "CLUSTER_STATUS";
    case FT_DRAIN: return "DRAIN";
    case FT_LIST_TASKS: return "LIST_TASKS";
    case FT_WRITE: return "WRITE";
    case FT_READ: return "READ";
    case FT_STAT: return "STAT";
    case FT_DELETE: return "DELETE";
    case FT_REPL_APPEND: return "REPL_APPEND";
    case FT_REPLICATE_BLOCK: return "REPLICATE_BLOCK";
    case FT_READ_BLOCK: return "READ_BLOCK";
    case FT_SEAL_BLOCK: return "SEAL_BLOCK";
    case FT_DELETE_BLOCK: return "DELETE_BLOCK";
    case FT_STAT_BLOCK: return "STAT_BLOCK";
    case FT_CANCEL_COPY: return "CANCEL_COPY";
    case FT_NOTE_DELETE: return "NOTE_DELETE";
    case FT_APPLY_TOMBSTONES: return "APPLY_TOMBSTONES";
    case FT_SET_REPLICAS: return "SET_REPLICAS";
    case FT_COMPACT_BLOCK: return "COMPACT_BLOCK";
    case FT_VERIFY: return "VERIFY";
    case FT_ADMIN_LIST_BLOCKS: return "ADMIN_LIST_BLOCKS";
    case FT_ADMIN_BLOCK_INFO: return "ADMIN_BLOCK_INFO";
    case FT_ADMIN_SERVER_RATES: return "ADMIN_SERVER_RATES";
    case FT_ADMIN_CANCEL_TASK: return "ADMIN_CANCEL_TASK";
    case FT_ADMIN_READONLY: return "ADMIN_READONLY";
    case FT_ADMIN_SETTINGS: return "ADMIN_SETTINGS";
    case FT_ADMIN_SET_SETTING: return "ADMIN_SET_SETTING";
    case FT_ADMIN_REBALANCE: return "ADMIN_REBALANCE";
    case FT_ADMIN_COMPACT: return "ADMIN_COMPACT";
    case FT_ADMIN_REPAIR: return "ADMIN_REPAIR";
    case FT_ADMIN_STEP_DOWN: return "ADMIN_STEP_DOWN";
    case FT_ADMIN_EC_ENCODE: return "ADMIN_EC_ENCODE";
    case FT_EC_ENCODE: return "EC_ENCODE";
    case FT_EC_PUT_SHARD: return "EC_PUT_SHARD";
    case FT_EC_READ_RANGE: return "EC_READ_RANGE";
    case FT_EC_REBUILD: return "EC_REBUILD";
    case FT_EC_TOMB: return "EC_TOMB";
    case FT_AUTH_HELLO: return "AUTH_HELLO";
    case FT_AUTH: return "AUTH";
    default: return "?";
    }
}
