/* http_get.c - GET and HEAD of a file for the HTTP origin (docs/http.md).
 *
 * A block held here is read from disk (ds_file.c: one io_uring read, cookie
 * and CRC32C checked). Any other block, or a local copy that fails its
 * check, is fetched with the native READ (STAT for HEAD) from another
 * replica found with LOOKUP (cached briefly); the bytes are checked against
 * their CRC32C again before they are sent. Replicas are tried in turn: a
 * replica that is unreachable, lacks the block or holds a damaged copy
 * passes to the next; "not found" and "deleted" are final (replicas are
 * byte-identical). Then the validators, the conditional headers (RFC 9110
 * section 13.2.2 order) and a single byte range decide what is sent.
 * A file stored compressed (docs/storage.md, "Encoded records") goes as
 * stored, with Content-Encoding: zstd, to a client whose Accept-Encoding
 * allows zstd (no CPU spent), and decoded to any other; both with
 * Vary: Accept-Encoding and an ETag of their own (docs/http.md). */
#include "dataserver/http_int.h"

#include "base/crc32c.h"
#include "base/err.h"
#include "base/log.h"
#include "dataserver/ds_file.h"
#include "dataserver/http_util.h"
#include "proto/imgstore.pb-c.h"
#include "proto/mime.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void remote_next(struct http_req *r);
static int local_read(struct http_req *r, unsigned flags);
static int lapsed_round(struct http_req *r);
static void round_end(struct http_req *r);

/* Answers an error of the read path with its status code. */
static void get_fail(struct http_req *r, int err)
{
    switch (err) {
    case IMG_ENOTFOUND:
        http_reply_text(r, 404, HTTP_CC_404, NULL, "not found\n");
        break;
    case IMG_EDELETED:
        http_reply_text(r, 410, HTTP_CC_410, NULL, "deleted\n");
        break;
    default:
        http_reply_text(r, 503, HTTP_CC_NOSTORE, "Retry-After: 1\r\n",
                        "no replica could serve the file, retry\n");
        break;
    }
}

/* 1 when the request's validators say the client's copy is current. */
static int not_modified(const struct http_req *r, const char *etag, uint32_t ctime)
{
    if (r->if_none_match)
        return http_etag_list_match(r->if_none_match, etag);
    time_t ims;
    if (r->if_modified_since && http_parse_date(r->if_modified_since, &ims) == 0)
        return (time_t)ctime <= ims;
    return 0;
}

/* 1 when If-Range is absent or still names this representation. */
static int if_range_ok(const struct http_req *r, const char *etag, const char *lastmod)
{
    if (!r->if_range)
        return 1;
    const char *v = r->if_range;
    while (*v == ' ')
        v++;
    if (*v == '"')
        return strcmp(v, etag) == 0;
    if (v[0] == 'W' && v[1] == '/')
        return 0;
    return strcmp(v, lastmod) == 0;
}

/* Builds and sends the answer for file `h` whose data is at `data` (NULL for
 * a header-only read); takes ownership of `mem`. With `zstd`, h is an
 * encoded file read as stored (data: its encoding header, then the frame)
 * and the zstd representation is sent; else data holds the file as
 * uploaded. An encoded file's two representations each have their own
 * strong ETag and both carry Vary: Accept-Encoding; ranges and
 * conditionals apply to the representation sent (RFC 9110 8.8.3, 12.5.3,
 * 13.1, 14). */
static void get_serve(struct http_req *r, const struct needle_header *h, uint8_t *mem,
                      const uint8_t *data, int zstd)
{
    char etag[HTTP_ETAG_MAX], lastmod[HTTP_DATE_LEN + 1];
    int encoded = (h->flags & NEEDLE_FLAG_ENCODED) != 0;
    uint32_t size = h->orig_size; /* of the representation sent */
    if (zstd) {
        http_format_etag_zstd(h->orig_crc, h->orig_size, etag);
        size = h->stored_size - NEEDLE_ENC_SIZE;
        if (data)
            data += NEEDLE_ENC_SIZE;
    } else {
        http_format_etag(h->orig_crc, h->orig_size, etag);
    }
    http_format_date((time_t)h->ctime, lastmod);
    unsigned code = h->mime;
    if (code == MIME_OCTET_STREAM && r->ext[0])
        code = mime_from_ext(r->ext, strlen(r->ext));
    const char *ctype = mime_name(code);
    const char *vary = encoded ? "Vary: Accept-Encoding\r\n" : "";
    const char *cenc = zstd ? "Content-Encoding: zstd\r\n" : "";

    int status = 200;
    uint64_t first = 0, last = size ? size - 1 : 0, clen = size;
    if (not_modified(r, etag, h->ctime)) {
        status = 304;
    } else if (r->range && if_range_ok(r, etag, lastmod)) {
        switch (http_parse_range(r->range, size, &first, &last)) {
        case HTTP_RANGE_OK:
            status = 206;
            clen = last - first + 1;
            break;
        case HTTP_RANGE_UNSAT:
            status = 416;
            clen = 0;
            break;
        case HTTP_RANGE_NONE:
            break;
        }
    }
    if (!r->q.keep_alive)
        r->q.close_after = 1;
    size_t len;
    char *hdr = http_head_begin(r, status, 512, &len);
    if (!hdr) {
        free(mem);
        r->q.close_after = 1;
        http_server_finish(&r->q);
        return;
    }
    if (status == 416) {
        len += (size_t)sprintf(hdr + len,
                               "Content-Type: text/plain; charset=utf-8\r\nContent-Length: 0\r\n"
                               "Content-Range: bytes */%u\r\n%sCache-Control: %s\r\n\r\n",
                               size, vary, HTTP_CC_4XX);
    } else {
        /* 304 carries the same validators and cache headers, no body
         * headers (RFC 9110 15.4.5). */
        if (status != 304)
            len += (size_t)sprintf(hdr + len, "Content-Type: %s\r\n%sContent-Length: %llu\r\n",
                                   ctype, cenc, (unsigned long long)clen);
        if (status == 206)
            len += (size_t)sprintf(hdr + len, "Content-Range: bytes %llu-%llu/%u\r\n",
                                   (unsigned long long)first, (unsigned long long)last, size);
        len += (size_t)sprintf(hdr + len,
                               "ETag: %s\r\nLast-Modified: %s\r\n%sCache-Control: " HTTP_CC_FILE
                               "\r\nAccept-Ranges: bytes\r\nX-Content-Type-Options: nosniff\r\n"
                               "\r\n",
                               etag, lastmod, vary);
    }
    r->q.resp_hdr = hdr;
    r->q.resp_hdr_len = len;
    r->q.resp_mem = mem;
    if (!r->q.head_only && (status == 200 || status == 206) && data && clen > 0) {
        r->q.resp_body = data + first;
        r->q.resp_body_len = (size_t)clen;
    }
    http_server_finish(&r->q);
}

/* ---- local read ------------------------------------------------------------- */

static void local_done(int status, const struct needle_header *h, uint64_t offset, uint8_t *rec,
                       void *arg)
{
    struct http_req *r = arg;
    (void)offset;
    if (http_server_drop_orphan(&r->q)) {
        free(rec);
        return;
    }
    if (status == 0) {
        /* Asked as stored only when the client takes zstd: an encoded file
         * then comes as stored, anything else as uploaded. */
        int zstd = r->want_zstd && (h->flags & NEEDLE_FLAG_ENCODED);
        get_serve(r, h, rec, rec ? rec + NEEDLE_HEADER_SIZE : NULL, zstd);
        return;
    }
    if (status == IMG_EDELETED) {
        get_fail(r, status);
        return;
    }
    /* Not found here (a damaged record header reads so too), damaged or
     * unreadable: never served; ask a replica. */
    r->notfound += status == IMG_ENOTFOUND;
    r->failed += status != IMG_ENOTFOUND;
    remote_next(r);
}

/* ---- remote read ------------------------------------------------------------ */

static void remote_reply(int status, const struct frame *f, void *arg)
{
    struct http_req *r = arg;
    const char *addr = r->loc.addr[r->replica - 1];
    if (http_server_drop_orphan(&r->q))
        return;
    Imgstore__ReadResp *m = conn_reply_unpack(status, f, &imgstore__read_resp__descriptor, &status);
    if (status == 0 && !r->q.head_only &&
        (f->h.body_len != m->size || crc32c(0, f->body, f->h.body_len) != m->crc32c))
        status = IMG_ECORRUPT;
    /* Encoded and sent as stored (asked so, Read.stored): the body is the
     * encoding header and the frame. A replica too old for `stored` sends
     * the file as uploaded without `encoding`. */
    int zstd = status == 0 && r->want_zstd && m->encoding == NEEDLE_ENC_ZSTD;
    if (zstd && (m->stored_size != m->size || m->size < NEEDLE_ENC_SIZE))
        status = IMG_ECORRUPT;
    if (status == 0) {
        int enc = m->encoding == NEEDLE_ENC_ZSTD;
        struct needle_header h = {.mime = (uint8_t)(m->mime > MIME_MAX_CODE ? 0 : m->mime),
                                  .flags = enc ? NEEDLE_FLAG_ENCODED : 0,
                                  .encoding = enc ? NEEDLE_ENC_ZSTD : NEEDLE_ENC_NONE,
                                  .size = m->size,
                                  .ctime = m->created,
                                  .data_crc = m->crc32c,
                                  .stored_size = enc ? m->stored_size : m->size,
                                  .orig_size = enc ? m->orig_size : m->size,
                                  .orig_crc = enc ? m->orig_crc32c : m->crc32c};
        uint8_t *mem = NULL;
        if (!r->q.head_only && m->size > 0) {
            mem = malloc(m->size);
            if (!mem) {
                imgstore__read_resp__free_unpacked(m, NULL);
                get_fail(r, -ENOMEM);
                return;
            }
            memcpy(mem, f->body, m->size);
        }
        imgstore__read_resp__free_unpacked(m, NULL);
        r->from_replica = 1; /* metrics: the proxy path */
        get_serve(r, &h, mem, mem, zstd);
        return;
    }
    if (m)
        imgstore__read_resp__free_unpacked(m, NULL);
    if (status == IMG_EDELETED) {
        get_fail(r, status);
        return;
    }
    if (status == IMG_ECORRUPT)
        log_warn("replica %s has a damaged copy of block %llu seq %u; needs repair", addr,
                 (unsigned long long)r->f.block_id, r->f.seq);
    r->notfound += status == IMG_ENOTFOUND;
    r->lapsed += status == IMG_EVIEWOLD;
    r->failed += status != IMG_ENOTFOUND && status != IMG_EVIEWOLD;
    remote_next(r);
}

static void lookup_done(int status, const struct ds_loc *loc, void *arg)
{
    struct http_req *r = arg;
    if (http_server_drop_orphan(&r->q))
        return;
    if (status == IMG_ENOTFOUND && r->notfound == 0 && r->failed == 0 && !r->lapsed_local) {
        /* The nameserver knows no such block: an unknown name. */
        get_fail(r, IMG_ENOTFOUND);
        return;
    }
    if (status != 0) {
        round_end(r); /* no live holder right now, or no answer: maybe later */
        return;
    }
    r->loc = *loc;
    ds_nsc_route(&r->loc, r->f.seq); /* an erasure-coded block: its data shard's holder */
    r->loc_from_cache = 0;
    r->loc_fresh = 1;
    r->replica = 0;
    remote_next(r);
}

/* Tries the next replica of r->loc other than this server; when every one
 * failed, asks the nameserver again once if the location was cached. */
static void remote_next(struct http_req *r)
{
    struct ds *ds = r->ds;
    if (r->loc.n == 0) {
        if (ds_nsc_cached_loc(ds, r->f.block_id, &r->loc) == 0) {
            ds_nsc_route(&r->loc, r->f.seq);
            r->loc_from_cache = 1;
            r->replica = 0;
        } else {
            if (ds_nsc_lookup(ds, r->f.block_id, lookup_done, r) != 0)
                round_end(r);
            return;
        }
    }
    while (r->replica < r->loc.n) {
        const char *addr = r->loc.addr[r->replica++];
        if (strcmp(addr, ds->listen_addr) == 0)
            continue; /* our own copy was tried first */
        Imgstore__Read req = IMGSTORE__READ__INIT;
        req.block_id = r->f.block_id;
        req.seq = r->f.seq;
        req.cookie = r->f.cookie;
        req.any_view = r->any_view;
        req.stored = r->want_zstd;
        if (ds_peer_request(ds, addr, r->q.head_only ? FT_STAT : FT_READ, &req.base, NULL, 0,
                            HTTP_PROXY_TIMEOUT_MS, remote_reply, r) == 0)
            return;
    }
    /* An erasure-coded block whose data shard holding the file did not
     * answer: a shard holder (this server first, when it holds one)
     * rebuilds the file from k shards (a degraded read). */
    while (r->loc.n_replicas_none && r->ec_next < r->loc.nshards + 1) {
        int i = r->ec_next++;
        if (i == 0) {
            if (local_read(r, DS_FILE_RECONSTRUCT) == 0)
                return; /* local_done goes on */
            continue;
        }
        const char *addr = r->loc.sh_addr[i - 1];
        if (strcmp(addr, ds->listen_addr) == 0 ||
            ((int)r->loc.sh_index[i - 1] < r->loc.ec_k && r->loc.sh_first[i - 1] &&
             r->f.seq >= r->loc.sh_first[i - 1] && r->f.seq <= r->loc.sh_last[i - 1]))
            continue; /* ourselves, or the data shard's holder asked already */
        Imgstore__Read req = IMGSTORE__READ__INIT;
        req.block_id = r->f.block_id;
        req.seq = r->f.seq;
        req.cookie = r->f.cookie;
        req.stored = r->want_zstd;
        req.reconstruct = 1;
        if (ds_peer_request(ds, addr, r->q.head_only ? FT_STAT : FT_READ, &req.base, NULL, 0,
                            HTTP_PROXY_TIMEOUT_MS, remote_reply, r) == 0)
            return;
    }
    if (r->loc_from_cache) {
        ds_nsc_drop_loc(ds, r->f.block_id);
        r->loc_from_cache = 0;
        if (ds_nsc_lookup(ds, r->f.block_id, lookup_done, r) == 0)
            return;
    }
    round_end(r);
}

/* Starts a round: our own copy first, then the replicas of the block's
 * location (cached, or from the nameserver). */
static void round_start(struct http_req *r)
{
    r->notfound = r->failed = r->lapsed = r->lapsed_local = r->any_view = 0;
    r->loc.n = 0;
    r->loc.nshards = 0;
    r->loc.n_replicas_none = 0;
    r->loc_from_cache = r->loc_fresh = 0;
    r->replica = 0;
    r->ec_next = 0;
    int rc = local_read(r, 0);
    if (rc == 0)
        return; /* local_done goes on */
    r->notfound += rc == IMG_ENOTFOUND;
    r->lapsed_local = rc == IMG_EVIEWOLD;
    remote_next(r);
}

/* Every copy of this round was asked (docs/dataserver.md, "HTTP origin"):
 *  - copies whose view lapsed answered and none with a current view did:
 *    one more pass in which they serve (lapsed_round);
 *  - some copy answered not found: 404; cacheable only when no copy failed
 *    to answer (then every holder said so), else no-store: a damaged or
 *    unreachable copy may be hiding the file;
 *  - else (holders down, restarting, damaged, not located): another round
 *    after a growing wait, until HTTP_GET_TIMEOUT_MS; then 503. */
static void round_end(struct http_req *r)
{
    if (lapsed_round(r))
        return;
    if (r->notfound > 0) {
        if (r->failed == 0 && r->lapsed == 0 && !r->lapsed_local)
            get_fail(r, IMG_ENOTFOUND);
        else
            http_reply_text(r, 404, HTTP_CC_NOSTORE, NULL, "not found\n");
        return;
    }
    uint64_t now = uv_now(r->ds->loop);
    int wait = r->round_wait_ms;
    r->round_wait_ms = wait * 2 > HTTP_ROUND_WAIT_MAX_MS ? HTTP_ROUND_WAIT_MAX_MS : wait * 2;
    ds_nsc_drop_loc(r->ds, r->f.block_id); /* ask the nameserver afresh */
    if (now + (uint64_t)wait < r->deadline_ms && http_req_wait(r, (uint64_t)wait, round_start) == 0)
        return;
    get_fail(r, IMG_EUNAVAIL);
}

/* Whether the nameserver's answer of this round lists this server. */
static int loc_lists_us(const struct http_req *r)
{
    for (int i = 0; i < r->loc.n; i++)
        if (strcmp(r->loc.addr[i], r->ds->listen_addr) == 0)
            return 1;
    return 0;
}

/* When no copy with a current view answered but some whose view lapsed did
 * (a nameserver outage, or holders cut off from it), starts one more round
 * over r->loc (our own copy first) in which those serve; returns 1 when it
 * did, 0 when there is nothing left to try. r->loc is the nameserver's
 * answer of this round whenever it could answer (remote_next asks it after
 * a cached location failed); our own lapsed copy serves only if that answer
 * still lists us, or there was none: the nameserver may have moved the
 * block's set on without us (docs/chaos-findings.md, "a stale fallback
 * that served a deleted file"). */
static int lapsed_round(struct http_req *r)
{
    int local = r->lapsed_local && (!r->loc_fresh || loc_lists_us(r));
    if (r->any_view || !(r->lapsed || local))
        return 0;
    r->any_view = 1;
    r->replica = 0;
    if (local && local_read(r, DS_FILE_ANY_VIEW) == 0)
        return 1; /* local_done serves it, or goes on to the replicas */
    remote_next(r);
    return 1;
}

/* Starts reading our own copy; returns 0 when local_done will run. */
static int local_read(struct http_req *r, unsigned flags)
{
    if (r->q.head_only)
        flags |= DS_FILE_HEADER_ONLY;
    if (r->want_zstd)
        flags |= DS_FILE_STORED;
    return ds_file_read(r->ds, r->f.block_id, r->f.seq, r->f.cookie, flags, local_done, r);
}

void http_get_start(struct http_req *r)
{
    r->deadline_ms = uv_now(r->ds->loop) + HTTP_GET_TIMEOUT_MS;
    r->want_zstd = http_accepts_zstd(r->accept_encoding);
    r->round_wait_ms = HTTP_ROUND_WAIT_MIN_MS;
    round_start(r);
}
