/* http_put.c - authenticated uploads (POST / and PUT /) and deletes
 * (DELETE /NAME) for the HTTP origin (docs/http.md).
 *
 * Authentication (docs/security.md): `Authorization: Bearer SECRET` with
 * the secret of a writer-or-better key of the keys file (every key is
 * compared, in constant time), or the deprecated --upload-token-file token.
 * No token, or one that is neither: 401; a key below writer: 403; no keys
 * file and no token (uploads off): 403.
 *
 * An upload follows the protocol's retry table (proto/retry.h), as the
 * client library does: a writable block from ALLOC_WRITE (cached briefly),
 * WRITE with the bytes to its primary, which replicates before it answers;
 * a write the block refuses (EREPL, EFULL, ESEALED, ENOTPRIMARY,
 * ENOBLOCKHERE, a lost connection, a timeout) is retried on another block,
 * excluding the failed ones; ENOBLOCK waits a little and asks again. The
 * CRC32C the primary reports must equal the one computed here over the
 * received body; the 201's JSON body is written with jansson. A delete goes to the block's primary, asking the
 * nameserver again once when it moved or its primary died. */
#include "dataserver/http_int.h"

#include "base/crc32c.h"
#include "base/err.h"
#include "base/log.h"
#include "dataserver/http_util.h"
#include "proto/imgstore.pb-c.h"
#include "proto/mime.h"
#include "proto/retry.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define UPLOAD_WAIT_MS 100 /* pause after IMG_ENOBLOCK before asking again */

/* Finds the token of "Bearer TOKEN" (any case, optional white space).
 * Returns 0 with *tok, *len or -1. */
static int bearer_token(const char *auth, const char **tok, size_t *len)
{
    const char *p = auth;
    while (*p == ' ' || *p == '\t')
        p++;
    if (strncasecmp(p, "Bearer ", 7) != 0)
        return -1;
    p += 7;
    while (*p == ' ' || *p == '\t')
        p++;
    size_t n = strlen(p);
    while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
        n--;
    if (n == 0)
        return -1;
    *tok = p;
    *len = n;
    return 0;
}

int http_auth_check(struct http_req *r)
{
    struct ds *ds = r->ds;
    const char *tok;
    size_t len;
    if (!r->authorization || bearer_token(r->authorization, &tok, &len) != 0)
        return 401;
    if (!ds->keys && !ds->http_token)
        return 403; /* uploads are off */
    int legacy = ds->http_token &&
                 http_bearer_ok(r->authorization, ds->http_token, ds->http_token_len);
    const struct auth_key *k = ds->keys ? auth_keys_by_secret(ds->keys, tok, len) : NULL;
    if (legacy)
        return 0;
    if (!k)
        return 401;
    return k->role >= AUTH_WRITER ? 0 : 403;
}

static void upload_fail(struct http_req *r, int err)
{
    if (err == IMG_ETOOBIG) {
        http_reply_text(r, 413, HTTP_CC_NOSTORE, NULL, "body too large\n");
        return;
    }
    char msg[160];
    snprintf(msg, sizeof(msg), "upload failed: %s\n", img_strerror(err));
    log_warn("http upload of %zu bytes failed: %s", r->body_len, img_strerror(err));
    http_reply_text(r, 503, HTTP_CC_NOSTORE, "Retry-After: 1\r\n", msg);
}

static void upload_next(struct http_req *r);
static void upload_send(struct http_req *r);

/* The 201 answer's body: {"name":..,"size":..,"etag":..} and a line break,
 * written by jansson (compact). NULL when out of memory; the caller frees. */
static char *created_body(const char *name, size_t size, const char *etag)
{
    json_t *o = json_pack("{s:s, s:I, s:s}", "name", name, "size", (json_int_t)size, "etag", etag);
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    char *body = text ? malloc(strlen(text) + 2) : NULL;
    if (body)
        sprintf(body, "%s\n", text);
    free(text);
    return body;
}

static void upload_created(struct http_req *r, const char *name)
{
    char etag[HTTP_ETAG_MAX], extra[160];
    http_format_etag(r->crc, (uint32_t)r->body_len, etag);
    char *body = created_body(name, r->body_len, etag);
    snprintf(extra, sizeof(extra), "Location: /%s\r\nETag: %s\r\n", name, etag);
    if (!r->q.keep_alive || !body)
        r->q.close_after = 1;
    size_t len, blen = body ? strlen(body) : 0;
    char *hdr = body ? http_head_begin(r, 201, 256 + strlen(extra) + blen, &len) : NULL;
    if (hdr) {
        len += (size_t)sprintf(hdr + len,
                               "Content-Type: application/json\r\nContent-Length: %zu\r\n"
                               "Cache-Control: no-store\r\n%s\r\n%s",
                               blen, extra, r->q.head_only ? "" : body);
    }
    free(body);
    r->q.resp_hdr = hdr;
    r->q.resp_hdr_len = hdr ? len : 0;
    free(r->body);
    r->body = NULL;
    http_server_finish(&r->q);
}

static void write_reply(int status, const struct frame *f, void *arg)
{
    struct http_req *r = arg;
    Imgstore__WriteResp *m = conn_reply_unpack(status, f, &imgstore__write_resp__descriptor, &status);
    if (m && m->block_id != 0 && m->block_id != r->loc.block_id)
        status = IMG_EPROTO;
    else if (m && m->crc32c != r->crc)
        status = IMG_ECORRUPT;
    if (status == 0) {
        struct fname fn = {.block_id = r->loc.block_id, .seq = m->seq, .cookie = m->cookie};
        char name[FNAME_LEN + 1];
        imgstore__write_resp__free_unpacked(m, NULL);
        if (http_server_drop_orphan(&r->q))
            return;
        if (fname_encode(&fn, name) != 0) {
            upload_fail(r, IMG_EPROTO);
            return;
        }
        upload_created(r, name);
        return;
    }
    if (m)
        imgstore__write_resp__free_unpacked(m, NULL);
    if (http_server_drop_orphan(&r->q))
        return;
    if (retry_action(RETRY_WRITE, status) == RETRY_WAIT &&
        uv_now(r->ds->loop) + UPLOAD_WAIT_MS < r->deadline_ms &&
        http_req_wait(r, UPLOAD_WAIT_MS, upload_send) == 0)
        return; /* the primary is busy receiving: the same block, later */
    if (retry_action(RETRY_WRITE, status) != RETRY_OTHER) {
        upload_fail(r, status);
        return;
    }
    ds_nsc_writable_drop(r->ds, r->loc.block_id);
    if (retry_write_excludes(status)) {
        ds_nsc_drop_loc(r->ds, r->loc.block_id);
        if (r->nexcl < HTTP_UPLOAD_ATTEMPTS)
            r->excl[r->nexcl++] = r->loc.block_id;
    }
    upload_next(r);
}

static void upload_send(struct http_req *r)
{
    Imgstore__Write req = IMGSTORE__WRITE__INIT;
    req.block_id = r->loc.block_id;
    req.mime = r->mime;
    int rc = ds_peer_request(r->ds, r->loc.addr[0], FT_WRITE, &req.base, r->body,
                             (uint32_t)r->body_len, HTTP_PROXY_TIMEOUT_MS, write_reply, r);
    if (rc != 0) {
        ds_nsc_writable_drop(r->ds, r->loc.block_id);
        if (r->nexcl < HTTP_UPLOAD_ATTEMPTS)
            r->excl[r->nexcl++] = r->loc.block_id;
        upload_next(r);
    }
}

static void alloc_done(int status, const struct ds_loc *loc, void *arg)
{
    struct http_req *r = arg;
    if (http_server_drop_orphan(&r->q))
        return;
    if (status == 0) {
        r->loc = *loc;
        upload_send(r);
        return;
    }
    if (retry_action(RETRY_ALLOC, status) == RETRY_WAIT &&
        uv_now(r->ds->loop) + UPLOAD_WAIT_MS < r->deadline_ms &&
        http_req_wait(r, UPLOAD_WAIT_MS, upload_next) == 0)
        return;
    upload_fail(r, status);
}

/* One more attempt: a cached writable block, else ALLOC_WRITE. */
static void upload_next(struct http_req *r)
{
    struct ds *ds = r->ds;
    if (++r->attempts > HTTP_UPLOAD_ATTEMPTS * 4 || uv_now(ds->loop) >= r->deadline_ms) {
        upload_fail(r, IMG_ETIMEDOUT);
        return;
    }
    if (ds_nsc_writable_pick(ds, r->excl, r->nexcl, &r->loc) == 0) {
        upload_send(r);
        return;
    }
    int rc = ds_nsc_alloc_write(ds, r->excl, r->nexcl, alloc_done, r);
    if (rc != 0)
        alloc_done(rc, NULL, r);
}

void http_upload_start(struct http_req *r)
{
    if (r->body_len == 0) {
        http_reply_text(r, 400, HTTP_CC_NOSTORE, NULL, "empty body: nothing to store\n");
        return;
    }
    if (r->body_len > r->ds->http_max_upload || r->body_len > NEEDLE_MAX_DATA) {
        upload_fail(r, IMG_ETOOBIG);
        return;
    }
    /* The Content-Type, unless the bytes are another image format
     * (proto/mime.h, mime_pick). */
    r->mime = mime_pick(r->content_type, r->body, r->body_len);
    r->crc = crc32c(0, r->body, r->body_len);
    r->deadline_ms = uv_now(r->ds->loop) + HTTP_UPLOAD_TIMEOUT_MS;
    upload_next(r);
}

/* ---- deletes ---------------------------------------------------------------- */

static void delete_send(struct http_req *r);

static void delete_lookup_done(int status, const struct ds_loc *loc, void *arg)
{
    struct http_req *r = arg;
    if (http_server_drop_orphan(&r->q))
        return;
    if (status == IMG_ENOTFOUND) {
        http_reply_text(r, 404, HTTP_CC_NOSTORE, NULL, "not found\n");
        return;
    }
    if (status != 0) {
        http_reply_text(r, 503, HTTP_CC_NOSTORE, "Retry-After: 1\r\n", "nameserver unavailable\n");
        return;
    }
    r->loc = *loc;
    r->loc_from_cache = 0;
    delete_send(r);
}

static void delete_relookup(struct http_req *r, int err)
{
    ds_nsc_drop_loc(r->ds, r->f.block_id);
    if (retry_action(RETRY_DELETE, err) == RETRY_OTHER &&
        (r->loc_from_cache || r->attempts++ == 0)) {
        r->loc_from_cache = 0;
        if (ds_nsc_lookup(r->ds, r->f.block_id, delete_lookup_done, r) == 0)
            return;
    }
    char msg[160];
    snprintf(msg, sizeof(msg), "delete failed: %s\n", img_strerror(err));
    http_reply_text(r, 503, HTTP_CC_NOSTORE, "Retry-After: 1\r\n", msg);
}

static void delete_reply(int status, const struct frame *f, void *arg)
{
    struct http_req *r = arg;
    if (status == 0)
        status = f->h.status;
    if (http_server_drop_orphan(&r->q))
        return;
    switch (status) {
    case 0:
    case IMG_EDELETED:
        http_reply_text(r, 204, HTTP_CC_NOSTORE, NULL, "");
        return;
    case IMG_ENOTFOUND:
        http_reply_text(r, 404, HTTP_CC_NOSTORE, NULL, "not found\n");
        return;
    default:
        delete_relookup(r, status);
        return;
    }
}

static void delete_send(struct http_req *r)
{
    /* An erasure-coded block: a shard holder (the file's data shard's
     * first) hands the tombstone to every shard holder. */
    ds_nsc_route(&r->loc, r->f.seq);
    Imgstore__Delete req = IMGSTORE__DELETE__INIT;
    req.block_id = r->f.block_id;
    req.seq = r->f.seq;
    req.cookie = r->f.cookie;
    if (ds_peer_request(r->ds, r->loc.addr[0], FT_DELETE, &req.base, NULL, 0,
                        HTTP_UPLOAD_TIMEOUT_MS, delete_reply, r) != 0)
        delete_relookup(r, IMG_ECONN);
}

void http_delete_start(struct http_req *r)
{
    if (ds_nsc_cached_loc(r->ds, r->f.block_id, &r->loc) == 0) {
        r->loc_from_cache = 1;
        delete_send(r);
        return;
    }
    if (ds_nsc_lookup(r->ds, r->f.block_id, delete_lookup_done, r) != 0)
        http_reply_text(r, 503, HTTP_CC_NOSTORE, "Retry-After: 1\r\n", "nameserver unavailable\n");
}
