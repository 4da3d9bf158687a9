/* admin_blocks.c - ds-admin blocks, block and file: the block map as a
 * table, one block, and where one file lives (ADMIN_LIST_BLOCKS,
 * ADMIN_BLOCK_INFO, then STAT on every replica; for an erasure-coded block
 * the stripe's shards, and STAT on the holder of the data shard the file
 * lies in). Called by the command table in tools/ds_admin.c; calls
 * tools/admin.c and the library. */
#include "tools/admin.h"

#include "base/err.h"
#include "proto/frame.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <getopt.h>
#include "proto/fname.h"
#include "proto/mime.h"

#define REPLICAS_TEXT 160

/* ---- blocks and block ------------------------------------------------------- */

/* "ds1*,ds2,ds3!" : primary starred, down replicas marked with '!'. */
static const char *replicas_text(const Imgstore__AdminBlock *b, char *out, size_t n)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < b->n_replicas && used < n; i++) {
        const Imgstore__AdminReplica *r = b->replicas[i];
        char id[ID_SHOW + 1];
        snprintf(id, sizeof(id), "%s", r->server_id ? r->server_id : "");
        int w = snprintf(out + used, n - used, "%s%s%s%s", i ? "," : "", id,
                         r->primary ? "*" : "", r->up ? "" : "!");
        used += w > 0 ? (size_t)w : 0;
    }
    return out;
}

/* One block as the next value of j (an array element, or the document). */
static void block_json(struct emit_json *j, const Imgstore__AdminBlock *b)
{
    emit_json_obj(j, NULL);
    emit_json_u64(j, "block_id", b->block_id);
    emit_json_str(j, "state", b->state);
    emit_json_str(j, "health", b->health);
    emit_json_u64(j, "size", b->size);
    emit_json_u64(j, "files", b->file_count);
    emit_json_u64(j, "deleted_bytes", b->deleted_bytes);
    emit_json_u64(j, "up_replicas", b->up_replicas);
    emit_json_arr(j, "replicas", EMIT_INLINE);
    for (size_t i = 0; i < b->n_replicas; i++) {
        const Imgstore__AdminReplica *r = b->replicas[i];
        emit_json_obj(j, NULL);
        emit_json_str(j, "server", r->server_id);
        emit_json_str(j, "address", r->addr);
        emit_json_str(j, "http", r->http_addr);
        emit_json_bool(j, "up", r->up);
        emit_json_bool(j, "primary", r->primary);
        emit_json_end(j);
    }
    emit_json_end(j);
    if (b->ec_k) {
        emit_json_strf(j, "ec", "%u+%u", b->ec_k, b->ec_m);
        emit_json_u64(j, "shard_len", b->ec_shard_len);
        emit_json_u64(j, "generation", b->ec_gen);
        emit_json_u64(j, "garbage_bytes", b->ec_garbage_bytes);
        emit_json_bool(j, "compact_due", b->ec_compact_due);
        emit_json_arr(j, "shards", EMIT_INLINE);
        for (size_t i = 0; i < b->n_shards; i++) {
            const Imgstore__AdminShard *s = b->shards[i];
            emit_json_obj(j, NULL);
            emit_json_u64(j, "index", s->index);
            emit_json_str(j, "kind", s->index < b->ec_k ? "data" : "parity");
            emit_json_str(j, "server", s->server_id);
            emit_json_str(j, "address", s->addr);
            emit_json_bool(j, "up", s->up);
            emit_json_bool(j, "bad", s->bad);
            emit_json_u64(j, "file_bytes", s->file_bytes);
            if (s->index < b->ec_k) {
                emit_json_u64(j, "seq_first", s->seq_first);
                emit_json_u64(j, "seq_last", s->seq_last);
            }
            emit_json_end(j);
        }
        emit_json_end(j);
    }
    emit_json_end(j);
}

static void blocks_json(const Imgstore__AdminListBlocksResp *r)
{
    struct emit_json j;
    emit_json_init(&j, stdout);
    emit_json_obj(&j, NULL);
    emit_json_u64(&j, "matched", r->matched);
    emit_json_u64(&j, "replication", r->replication);
    emit_json_arr(&j, "blocks", EMIT_LINES);
    for (size_t i = 0; i < r->n_blocks; i++)
        block_json(&j, r->blocks[i]);
    emit_json_end(&j);
    emit_json_end(&j);
}

static int blocks_table(const Imgstore__AdminListBlocksResp *r)
{
    static const char *const header[] = {"BLOCK", "STATE",   "HEALTH",  "SIZE",
                                         "FILES", "DELETED", "REPLICAS"};
    struct emit_table t;
    emit_table_init(&t, sizeof(header) / sizeof(header[0]), header);
    for (size_t i = 0; i < r->n_blocks; i++) {
        const Imgstore__AdminBlock *b = r->blocks[i];
        char a[CLI_HUMAN_MAX], reps[REPLICAS_TEXT];
        emit_cell(&t, "%" PRIu64, b->block_id);
        emit_text(&t, b->state);
        emit_text(&t, b->health);
        emit_text(&t, cli_human_size(b->size, a));
        emit_cell(&t, "%u", b->file_count);
        emit_text(&t, cli_human_size(b->deleted_bytes, a));
        emit_text(&t, replicas_text(b, reps, sizeof(reps)));
    }
    if (emit_table_end(&t, stdout) != 0)
        return EXIT_FAIL;
    if (r->matched > r->n_blocks)
        printf("(%zu of %" PRIu64 " matching blocks shown; use --limit)\n", r->n_blocks,
               r->matched);
    else
        printf("(%" PRIu64 " blocks; * primary, ! replica on a server that is down)\n",
               r->matched);
    return EXIT_OK;
}

int admin_cmd_blocks(struct admin_ctx *c)
{
    static const struct option longopts[] = {{"server", required_argument, NULL, 's'},
                                             {"state", required_argument, NULL, 't'},
                                             {"under-replicated", no_argument, NULL, 'u'},
                                             {"limit", required_argument, NULL, 'l'},
                                             {NULL, 0, NULL, 0}};
    Imgstore__AdminListBlocks q = IMGSTORE__ADMIN_LIST_BLOCKS__INIT;
    int o, limit;
    optind = 1;
    opterr = 0;
    while ((o = getopt_long(c->argc, c->argv, ":", longopts, NULL)) != -1) {
        switch (o) {
        case 's': q.server_id = optarg; break;
        case 't':
            if (strcmp(optarg, "writable") && strcmp(optarg, "sealed") && strcmp(optarg, "open"))
                return admin_usage_error("--state must be writable, sealed or open: ", optarg);
            q.state = optarg;
            break;
        case 'u': q.under_replicated = 1; break;
        case 'l':
            if (cli_parse_int(optarg, &limit) != 0 || limit <= 0)
                return admin_usage_error("invalid --limit: ", optarg);
            q.limit = (uint32_t)limit;
            break;
        default:
            return admin_usage_error(o == ':' ? "missing argument for " : "unknown option ",
                                     c->argv[optind - 1]);
        }
    }
    if (optind < c->argc)
        return admin_usage_error("unexpected argument: ", c->argv[optind]);
    ProtobufCMessage *m = NULL;
    int rc = imgstore_admin_call(c->h, NULL, FT_ADMIN_LIST_BLOCKS, &q.base,
                                 &imgstore__admin_list_blocks_resp__descriptor, &m);
    if (rc == IMGSTORE_ENOTFOUND && q.server_id) {
        fprintf(stderr, "%s: blocks: no server %s\n", ADMIN_PROG, q.server_id);
        return EXIT_FAIL;
    }
    if (rc != 0)
        return admin_fail(c, "blocks", rc);
    const Imgstore__AdminListBlocksResp *r = (const Imgstore__AdminListBlocksResp *)m;
    int status = EXIT_OK;
    if (c->json) {
        blocks_json(r);
    } else {
        status = blocks_table(r);
    }
    protobuf_c_message_free_unpacked(m, NULL);
    return status;
}

static void block_text(const Imgstore__AdminBlock *b, uint32_t replication)
{
    char size[CLI_HUMAN_MAX], del[CLI_HUMAN_MAX];
    printf("block:        %" PRIu64 "\n", b->block_id);
    printf("state:        %s\n", b->state);
    printf("health:       %s (%u of %u replicas up)\n", b->health, b->up_replicas, replication);
    printf("size:         %s (%" PRIu64 " bytes)\n", cli_human_size(b->size, size), b->size);
    printf("files:        %u\n", b->file_count);
    printf("deleted:      %s (%.1f%% of the block)\n", cli_human_size(b->deleted_bytes, del),
           admin_pct(b->deleted_bytes, b->size));
    printf("replicas:\n");
    for (size_t i = 0; i < b->n_replicas; i++) {
        const Imgstore__AdminReplica *r = b->replicas[i];
        printf("  %-12.12s  %-21s  %-4s  %s\n", r->server_id ? r->server_id : "",
               r->addr ? r->addr : "", r->up ? "up" : "down", r->primary ? "primary" : "");
    }
    if (!b->ec_k)
        return;
    char sl[CLI_HUMAN_MAX];
    char gb[CLI_HUMAN_MAX];
    printf("erasure-coded: %u+%u, shards of %s, generation %u\n", b->ec_k, b->ec_m,
           cli_human_size(b->ec_shard_len, sl), b->ec_gen);
    printf("garbage: %s (deleted files' records, tombstones, padding)%s\n",
           cli_human_size(b->ec_garbage_bytes, gb),
           b->ec_compact_due ? ", past compact_threshold" : "");
    for (size_t i = 0; i < b->n_shards; i++) {
        const Imgstore__AdminShard *s = b->shards[i];
        char seqs[48] = "";
        if (s->index < b->ec_k)
            snprintf(seqs, sizeof(seqs), "seq %u..%u", s->seq_first, s->seq_last);
        printf("  s%02u %-6s  %-12.12s  %-21s  %-7s  %s\n", s->index,
               s->index < b->ec_k ? "data" : "parity",
               s->server_id && *s->server_id ? s->server_id : "(none)", s->addr ? s->addr : "",
               !s->server_id || !*s->server_id ? "missing" : s->bad ? "bad" : s->up ? "up" : "down",
               seqs);
    }
}

int admin_cmd_block(struct admin_ctx *c)
{
    int rc = admin_want_args(c, 1);
    if (rc)
        return rc;
    uint64_t id;
    if (admin_parse_u64(c->argv[1], &id) != 0 || id == 0)
        return admin_usage_error("invalid block id: ", c->argv[1]);
    Imgstore__AdminBlockInfoResp *r = NULL;
    rc = admin_block_info(c, id, &r);
    if (rc == IMGSTORE_ENOTFOUND) {
        fprintf(stderr, "%s: block %" PRIu64 ": not in the block map\n", ADMIN_PROG, id);
        return EXIT_FAIL;
    }
    if (rc != 0)
        return admin_fail(c, "block", rc);
    if (c->json) {
        struct emit_json j;
        emit_json_init(&j, stdout);
        block_json(&j, r->block);
    } else {
        block_text(r->block, r->replication);
    }
    protobuf_c_message_free_unpacked(&r->base, NULL);
    return EXIT_OK;
}

/* ---- file -------------------------------------------------------------------- */

/* What one replica said about the file. */
struct replica_answer {
    const Imgstore__AdminReplica *rep;
    int rc;                  /* 0: it has the file */
    Imgstore__ReadResp *st;  /* when rc == 0 (owned) */
};

static const char *answer_text(int rc)
{
    if (rc == 0)
        return "has it";
    if (rc == IMGSTORE_EDELETED)
        return "deleted";
    if (rc == IMGSTORE_ENOTFOUND)
        return "missing";
    return imgstore_strerror(rc);
}

/* The fields `ds-admin file --json` starts with, replicated or encoded:
 * the name, its block and seq, and what a holder's STAT said (st, if any). */
static void file_json_head(struct emit_json *j, const char *name, const struct fname *f,
                           const Imgstore__ReadResp *st)
{
    char created[TIME_BUF];
    emit_json_str(j, "name", name);
    emit_json_u64(j, "block", f->block_id);
    emit_json_u64(j, "seq", f->seq);
    if (st) {
        emit_json_u64(j, "offset", st->offset);
        emit_json_u64(j, "size", st->size);
        emit_json_str(j, "mime", mime_name(st->mime));
        emit_json_strf(j, "crc32c", "%08x", st->crc32c);
        emit_json_str(j, "created", admin_iso_time(st->created, created));
    }
}

static void file_json(const char *name, const struct fname *f, const struct replica_answer *a,
                      size_t n, const Imgstore__ReadResp *st, int complete)
{
    struct emit_json j;
    emit_json_init(&j, stdout);
    emit_json_obj(&j, NULL);
    file_json_head(&j, name, f, st);
    emit_json_bool(&j, "on_every_replica", complete);
    emit_json_arr(&j, "replicas", EMIT_INLINE);
    for (size_t i = 0; i < n; i++) {
        emit_json_obj(&j, NULL);
        emit_json_str(&j, "server", a[i].rep->server_id);
        emit_json_str(&j, "address", a[i].rep->addr);
        emit_json_bool(&j, "up", a[i].rep->up);
        emit_json_bool(&j, "primary", a[i].rep->primary);
        emit_json_bool(&j, "has_file", a[i].rc == 0);
        emit_json_str(&j, "answer", answer_text(a[i].rc));
        if (a[i].st) {
            emit_json_strf(&j, "crc32c", "%08x", a[i].st->crc32c);
            emit_json_u64(&j, "size", a[i].st->size);
        }
        emit_json_end(&j);
    }
    emit_json_end(&j);
    emit_json_end(&j);
}

static void file_text(const char *name, const struct fname *f, const struct replica_answer *a,
                      size_t n, const Imgstore__ReadResp *st, int complete)
{
    char created[TIME_BUF], size[CLI_HUMAN_MAX];
    printf("name:         %s\n", name);
    printf("block:        %" PRIu64 "\n", f->block_id);
    printf("seq:          %u\n", f->seq);
    if (st) {
        printf("offset:       %" PRIu64 "\n", st->offset);
        printf("size:         %s (%u bytes)\n", cli_human_size(st->size, size), st->size);
        printf("mime:         %s\n", mime_name(st->mime));
        printf("crc32c:       %08x\n", st->crc32c);
        printf("created:      %s\n", admin_iso_time(st->created, created));
    }
    printf("replicas:\n");
    for (size_t i = 0; i < n; i++)
        printf("  %-12.12s  %-21s  %-4s  %-7s  %s\n",
               a[i].rep->server_id ? a[i].rep->server_id : "", a[i].rep->addr ? a[i].rep->addr : "",
               a[i].rep->up ? "up" : "down", a[i].rep->primary ? "primary" : "",
               answer_text(a[i].rc));
    printf("on every replica: %s\n", complete ? "yes" : "no");
}

/* A shard's state as ds-admin block shows it. */
static const char *shard_state(const Imgstore__AdminShard *s)
{
    return !s->server_id || !*s->server_id ? "missing" : s->bad ? "bad" : s->up ? "up" : "down";
}

/* ds-admin file NAME of an erasure-coded block (its replicated copies gone):
 * the stripe's shards, and the answer of the holder of the data shard whose
 * seq range holds the file (where a read goes). Returns the exit status. */
static int file_ec(struct admin_ctx *c, const char *name, const struct fname *f,
                   const Imgstore__AdminBlock *b)
{
    const Imgstore__AdminShard *d = NULL;
    for (size_t i = 0; i < b->n_shards && !d; i++) {
        const Imgstore__AdminShard *s = b->shards[i];
        if (s->index < b->ec_k && s->seq_first && s->seq_first <= f->seq && f->seq <= s->seq_last)
            d = s;
    }
    Imgstore__Read q = IMGSTORE__READ__INIT;
    q.block_id = f->block_id;
    q.seq = f->seq;
    q.cookie = f->cookie;
    ProtobufCMessage *m = NULL;
    int rc = !d ? IMGSTORE_ENOTFOUND
             : !d->addr || !*d->addr ? IMGSTORE_EUNAVAIL
                                     : imgstore_admin_call(c->h, d->addr, FT_STAT, &q.base,
                                                           &imgstore__read_resp__descriptor, &m);
    const Imgstore__ReadResp *st = rc == 0 ? (const Imgstore__ReadResp *)m : NULL;
    char created[TIME_BUF], size[CLI_HUMAN_MAX];
    if (c->json) {
        struct emit_json j;
        emit_json_init(&j, stdout);
        emit_json_obj(&j, NULL);
        file_json_head(&j, name, f, st);
        emit_json_strf(&j, "ec", "%u+%u", b->ec_k, b->ec_m);
        if (d)
            emit_json_u64(&j, "data_shard", d->index);
        else
            emit_json_null(&j, "data_shard");
        emit_json_str(&j, "answer", answer_text(rc));
        emit_json_arr(&j, "shards", EMIT_INLINE);
        for (size_t i = 0; i < b->n_shards; i++) {
            const Imgstore__AdminShard *s = b->shards[i];
            emit_json_obj(&j, NULL);
            emit_json_u64(&j, "index", s->index);
            emit_json_str(&j, "kind", s->index < b->ec_k ? "data" : "parity");
            emit_json_str(&j, "server", s->server_id);
            emit_json_str(&j, "address", s->addr);
            emit_json_str(&j, "state", shard_state(s));
            emit_json_bool(&j, "holds_file", s == d);
            emit_json_end(&j);
        }
        emit_json_end(&j);
        emit_json_end(&j);
    } else {
        printf("name:         %s\n", name);
        printf("block:        %" PRIu64 " (erasure-coded %u+%u)\n", f->block_id, b->ec_k,
               b->ec_m);
        printf("seq:          %u\n", f->seq);
        if (st) {
            printf("offset:       %" PRIu64 "\n", st->offset);
            printf("size:         %s (%u bytes)\n", cli_human_size(st->size, size), st->size);
            printf("mime:         %s\n", mime_name(st->mime));
            printf("crc32c:       %08x\n", st->crc32c);
            printf("created:      %s\n", admin_iso_time(st->created, created));
        }
        printf("shards:\n");
        for (size_t i = 0; i < b->n_shards; i++) {
            const Imgstore__AdminShard *s = b->shards[i];
            printf("  s%02u %-6s  %-12.12s  %-21s  %-7s  %s\n", s->index,
                   s->index < b->ec_k ? "data" : "parity",
                   s->server_id && *s->server_id ? s->server_id : "(none)",
                   s->addr ? s->addr : "", shard_state(s), s == d ? answer_text(rc) : "");
        }
        if (d)
            printf("in data shard: s%02u (%s)\n", d->index, answer_text(rc));
        else
            printf("in data shard: none (no data shard lists its seq)\n");
    }
    if (rc != 0)
        fprintf(stderr, "%s: file %s: %s\n", ADMIN_PROG, name, imgstore_strerror(rc));
    if (m)
        protobuf_c_message_free_unpacked(m, NULL);
    return rc == 0 ? EXIT_OK : EXIT_FAIL;
}

int admin_cmd_file(struct admin_ctx *c)
{
    int rc = admin_want_args(c, 1);
    if (rc)
        return rc;
    const char *name = c->argv[1];
    struct fname f;
    if (fname_decode(name, strlen(name), &f, NULL, NULL) != 0) {
        fprintf(stderr, "%s: file %s: %s\n", ADMIN_PROG, name, imgstore_strerror(IMG_EBADNAME));
        return EXIT_FAIL;
    }
    Imgstore__AdminBlockInfoResp *info = NULL;
    rc = admin_block_info(c, f.block_id, &info);
    if (rc == IMGSTORE_ENOTFOUND) {
        fprintf(stderr, "%s: file %s: %s (block %" PRIu64 " is not in the block map)\n", ADMIN_PROG,
                name, imgstore_strerror(rc), f.block_id);
        return EXIT_FAIL;
    }
    if (rc != 0)
        return admin_fail(c, "file", rc);
    const Imgstore__AdminBlock *b = info->block;
    if (b->ec_k && b->n_replicas == 0) {
        rc = file_ec(c, name, &f, b);
        protobuf_c_message_free_unpacked(&info->base, NULL);
        return rc;
    }
    struct replica_answer *a = calloc(b->n_replicas + 1, sizeof(*a));
    if (!a) {
        protobuf_c_message_free_unpacked(&info->base, NULL);
        return admin_fail(c, "file", -ENOMEM);
    }
    Imgstore__Read q = IMGSTORE__READ__INIT;
    q.block_id = f.block_id;
    q.seq = f.seq;
    q.cookie = f.cookie;
    const Imgstore__ReadResp *st = NULL;
    int complete = b->n_replicas > 0, found = 0, deleted = 0;
    for (size_t i = 0; i < b->n_replicas; i++) {
        ProtobufCMessage *m = NULL;
        a[i].rep = b->replicas[i];
        a[i].rc = imgstore_admin_call(c->h, b->replicas[i]->addr, FT_STAT, &q.base,
                                      &imgstore__read_resp__descriptor, &m);
        a[i].st = (Imgstore__ReadResp *)m;
        complete &= a[i].rc == 0;
        found |= a[i].rc == 0;
        deleted |= a[i].rc == IMGSTORE_EDELETED;
        if (!st && a[i].st)
            st = a[i].st;
    }
    /* Replicas are byte-identical: every copy must agree on size and CRC. */
    for (size_t i = 0; st && i < b->n_replicas; i++)
        if (a[i].st && (a[i].st->crc32c != st->crc32c || a[i].st->size != st->size))
            complete = 0;
    if (c->json)
        file_json(name, &f, a, b->n_replicas, st, complete);
    else
        file_text(name, &f, a, b->n_replicas, st, complete);
    if (!found)
        fprintf(stderr, "%s: file %s: %s\n", ADMIN_PROG, name,
                imgstore_strerror(deleted ? IMGSTORE_EDELETED : IMGSTORE_ENOTFOUND));
    for (size_t i = 0; i < b->n_replicas; i++)
        if (a[i].st)
            protobuf_c_message_free_unpacked(&a[i].st->base, NULL);
    free(a);
    protobuf_c_message_free_unpacked(&info->base, NULL);
    return complete ? EXIT_OK : EXIT_FAIL;
}
