/* ds_codec.c - codec work on the libuv thread pool (ds_codec.h).
 *
 * One uv_work_t per upload, read or copied chunk: the work function touches only the job
 * (its own copy of the bytes), the after function calls back on the loop. The
 * chunks dataservers send each other (READ_BLOCK of block copies, EC_READ_RANGE
 * of shard rebuilds and moves) are packed here (ds_codec_pack) and counted in
 * the copy metrics.
 * May call the storage engine (codec, needle) and base/. */
#include "dataserver/ds_codec.h"

#include "base/crc32c.h"
#include "base/err.h"
#include "dataserver/codec.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct enc_job {
    uv_work_t w;
    const uint8_t *data; /* the caller's, unchanged until the callback */
    uint32_t len;
    int level;
    int status;
    uint8_t *frame;
    uint32_t frame_len;
    uint32_t orig_crc;
    ds_codec_encode_cb cb;
    void *arg;
};

static void enc_run(uv_work_t *w)
{
    struct enc_job *j = w->data;
    j->orig_crc = crc32c(0, j->data, j->len);
    j->status = codec_encode(j->data, j->len, j->level, &j->frame, &j->frame_len);
}

static void enc_after(uv_work_t *w, int status)
{
    struct enc_job *j = w->data;
    (void)status; /* never cancelled */
    j->cb(j->status, j->status == 0 ? j->frame : NULL, j->frame_len, j->orig_crc, j->arg);
    free(j);
}

int ds_codec_encode(struct ds *ds, const void *data, uint32_t len, int level,
                    ds_codec_encode_cb cb, void *arg)
{
    struct enc_job *j = calloc(1, sizeof(*j));
    if (!j)
        return -ENOMEM;
    j->w.data = j;
    j->data = data;
    j->len = len;
    j->level = level;
    j->cb = cb;
    j->arg = arg;
    int rc = uv_queue_work(ds->loop, &j->w, enc_run, enc_after);
    if (rc != 0)
        free(j);
    return rc;
}

struct dec_job {
    uv_work_t w;
    uint8_t *rec; /* the record as read */
    struct needle_header h;
    int keep; /* ds_codec_check: out is rec itself once its frame decodes */
    int status;
    uint8_t *out;
    ds_codec_decode_cb cb;
    void *arg;
};

static void dec_run(uv_work_t *w)
{
    struct dec_job *j = w->data;
    j->out = malloc((size_t)NEEDLE_HEADER_SIZE + j->h.orig_size);
    if (!j->out) {
        j->status = -ENOMEM;
        return;
    }
    memcpy(j->out, j->rec, NEEDLE_HEADER_SIZE);
    j->status = codec_decode(&j->h, j->rec + NEEDLE_HEADER_SIZE + NEEDLE_ENC_SIZE,
                             j->h.size - NEEDLE_ENC_SIZE, j->out + NEEDLE_HEADER_SIZE);
    if (j->status != 0 || j->keep) {
        free(j->out);
        j->out = NULL;
    }
    if (j->status == 0 && j->keep) {
        j->out = j->rec;
        j->rec = NULL;
    }
}

static void dec_after(uv_work_t *w, int status)
{
    struct dec_job *j = w->data;
    (void)status;
    free(j->rec);
    j->cb(j->status, j->out, j->arg);
    free(j);
}

static int dec_start(struct ds *ds, uint8_t *rec, const struct needle_header *h, int keep,
                     ds_codec_decode_cb cb, void *arg)
{
    struct dec_job *j = calloc(1, sizeof(*j));
    if (!j) {
        free(rec);
        return -ENOMEM;
    }
    j->w.data = j;
    j->rec = rec;
    j->h = *h;
    j->keep = keep;
    j->cb = cb;
    j->arg = arg;
    int rc = uv_queue_work(ds->loop, &j->w, dec_run, dec_after);
    if (rc != 0) {
        free(rec);
        free(j);
    }
    return rc;
}

int ds_codec_decode(struct ds *ds, uint8_t *rec, const struct needle_header *h,
                    ds_codec_decode_cb cb, void *arg)
{
    return dec_start(ds, rec, h, 0, cb, arg);
}

int ds_codec_check(struct ds *ds, uint8_t *rec, const struct needle_header *h,
                   ds_codec_decode_cb cb, void *arg)
{
    return dec_start(ds, rec, h, 1, cb, arg);
}

struct unframe_job {
    uv_work_t w;
    uint8_t *frame;
    uint32_t frame_len, raw_len, crc;
    int status;
    uint8_t *raw;
    ds_codec_unframe_cb cb;
    void *arg;
};

static void unframe_run(uv_work_t *w)
{
    struct unframe_job *j = w->data;
    j->raw = malloc(j->raw_len ? j->raw_len : 1);
    if (!j->raw) {
        j->status = -ENOMEM;
        return;
    }
    j->status = codec_unframe(j->frame, j->frame_len, j->raw, j->raw_len);
    if (j->status == 0 && crc32c(0, j->raw, j->raw_len) != j->crc)
        j->status = IMG_ECORRUPT;
    if (j->status != 0) {
        free(j->raw);
        j->raw = NULL;
    }
}

static void unframe_after(uv_work_t *w, int status)
{
    struct unframe_job *j = w->data;
    (void)status;
    free(j->frame);
    j->cb(j->status, j->raw, j->arg);
    free(j);
}

int ds_codec_unframe(struct ds *ds, uint8_t *frame, uint32_t frame_len, uint32_t raw_len,
                     uint32_t crc, ds_codec_unframe_cb cb, void *arg)
{
    struct unframe_job *j = calloc(1, sizeof(*j));
    if (!j) {
        free(frame);
        return -ENOMEM;
    }
    *j = (struct unframe_job){.frame = frame, .frame_len = frame_len, .raw_len = raw_len,
                              .crc = crc, .cb = cb, .arg = arg};
    j->w.data = j;
    int rc = uv_queue_work(ds->loop, &j->w, unframe_run, unframe_after);
    if (rc != 0) {
        free(frame);
        free(j);
    }
    return rc;
}

/* ---- chunks between dataservers ---------------------------------------------------- */

struct pack_job {
    struct ds *ds;
    uint8_t *buf;
    uint32_t len;
    ds_codec_pack_cb cb;
    void *arg;
};

static void pack_encoded(int status, uint8_t *frame, uint32_t frame_len, uint32_t crc,
                         void *arg)
{
    struct pack_job *j = arg;
    if (status == 0) {
        free(j->buf);
        j->cb(frame, frame_len, j->len, crc, j->arg);
    } else {
        j->cb(j->buf, j->len, 0, crc, j->arg); /* not worth it (or no memory): as it is */
    }
    free(j);
}

void ds_codec_pack(struct ds *ds, uint8_t *buf, uint32_t len, int accept, ds_codec_pack_cb cb,
                   void *arg)
{
    struct pack_job *j = accept && len >= DS_CODEC_WIRE_MIN ? malloc(sizeof(*j)) : NULL;
    if (j) {
        *j = (struct pack_job){.ds = ds, .buf = buf, .len = len, .cb = cb, .arg = arg};
        if (ds_codec_encode(ds, buf, len, DS_CODEC_WIRE_LEVEL, pack_encoded, j) == 0)
            return;
        free(j);
    }
    cb(buf, len, 0, crc32c(0, buf, len), arg);
}

void ds_codec_count_sent(struct ds *ds, uint32_t body_len, uint32_t raw_len)
{
    ds->copy_sent_wire += body_len;
    ds->copy_sent_raw += raw_len ? raw_len : body_len;
}

void ds_codec_count_received(struct ds *ds, uint32_t body_len, uint32_t raw_len)
{
    ds->copy_received_wire += body_len;
    ds->copy_received_raw += raw_len ? raw_len : body_len;
}
