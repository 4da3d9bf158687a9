/* fuzz_ds_http.c - libFuzzer harness: the HTTP origin of the dataserver fed
 * raw request bytes, through its real connection reader, http-parser
 * callbacks, limits (net/http_server.c), request checks and handlers
 * (ds_http.c, http_get.c, http_put.c, http_util.c).
 *
 * Each input runs against a fresh in-process dataserver (ds_fixture.h; its
 * nameserver answers LOOKUP and ALLOC_WRITE with this server, so GETs,
 * uploads and deletes run to the end). The input is the bytes of one
 * connection, usually one or more pipelined requests. Before sending,
 * "{0}", "{1}", "{2}" become the names of the fixture files (the last one
 * deleted) and "{T}" the upload token, so the fuzzer reaches the paths that
 * need a live file or a valid Authorization; the seeds use them.
 *
 * The harness reads until it has as many answers as http-parser finds
 * complete requests in the input, or the server closes, or 2 s passed (then
 * it closes its sending side and waits for the server to close).
 *
 * Properties: no crash, leak or out-of-bounds access (ASan, UBSan); the
 * server always ends the exchange (answers or closes); everything it sends
 * parses as a sequence of HTTP/1.x responses (bodies framed by
 * Content-Length, HEAD answers without one) with a status from the set the
 * origin uses; a 200 carrying a fixture file's ETag has exactly that file's
 * bytes, a 206 has the bytes its Content-Range names, and the deleted file
 * is never served (200, 206 or 304 with its ETag). */
#include "base/crc32c.h"
#include "dataserver/http_util.h"
#include "tests/fuzz/ds_fixture.h"
#include "tests/fuzz/fuzz.h"

#include <http_parser.h>
#include <inttypes.h>
#include <strings.h>

#define FUZZ_WAIT_MS 2000
#define FUZZ_NO_REQUEST_WAIT_MS 20
#define FUZZ_MAX_REQS 64
#define FUZZ_MAX_INPUT 65536

/* ---- the requests in the input (to know how many answers to expect and
 * which are to HEAD) ------------------------------------------------------- */

struct reqs {
    int n;
    int head[FUZZ_MAX_REQS];
};

static int req_done(http_parser *p)
{
    struct reqs *r = p->data;
    if (r->n < FUZZ_MAX_REQS)
        r->head[r->n] = p->method == HTTP_HEAD;
    r->n++;
    return 0;
}

static void count_requests(const char *buf, size_t len, struct reqs *out)
{
    http_parser_settings s;
    memset(&s, 0, sizeof(s));
    s.on_message_complete = req_done;
    http_parser p;
    http_parser_init(&p, HTTP_REQUEST);
    p.data = out;
    http_parser_execute(&p, &s, buf, len);
}

/* ---- the answers ----------------------------------------------------------- */

struct resp {
    const struct reqs *reqs;
    int n;          /* complete final answers */
    int status;
    char etag[64], crange[128];
    const char *field; /* header being read */
    size_t field_len;
    int in_etag, in_crange;
    const char *body;
    size_t body_len;
    int check;      /* check the properties (else only count) */
};

static int rsp_begin(http_parser *p)
{
    struct resp *r = p->data;
    r->etag[0] = r->crange[0] = '\0';
    r->in_etag = r->in_crange = 0;
    r->body = NULL;
    r->body_len = 0;
    return 0;
}

static int rsp_field(http_parser *p, const char *at, size_t len)
{
    struct resp *r = p->data;
    r->in_etag = len == 4 && strncasecmp(at, "ETag", 4) == 0;
    r->in_crange = len == 13 && strncasecmp(at, "Content-Range", 13) == 0;
    return 0;
}

static int rsp_value(http_parser *p, const char *at, size_t len)
{
    struct resp *r = p->data;
    char *dst = r->in_etag ? r->etag : r->in_crange ? r->crange : NULL;
    size_t cap = r->in_etag ? sizeof(r->etag) : sizeof(r->crange);
    if (dst) {
        size_t have = strlen(dst);
        if (have + len < cap) {
            memcpy(dst + have, at, len);
            dst[have + len] = '\0';
        }
    }
    return 0;
}

static int rsp_headers(http_parser *p)
{
    struct resp *r = p->data;
    /* An answer to HEAD has no body whatever its Content-Length says. */
    int idx = r->n;
    if (p->status_code >= 200 && idx < FUZZ_MAX_REQS && idx < r->reqs->n && r->reqs->head[idx])
        return 1;
    return 0;
}

static int rsp_body(http_parser *p, const char *at, size_t len)
{
    struct resp *r = p->data;
    if (!r->body)
        r->body = at;
    r->body_len += len;
    return 0;
}

static int known_code(unsigned c)
{
    static const unsigned codes[] = {100, 200, 201, 204, 206, 304, 400, 401, 403, 404, 405,
                                     408, 410, 411, 413, 414, 416, 431, 500, 501, 502, 503,
                                     504, 505, 507};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
        if (codes[i] == c)
            return 1;
    return 0;
}

static void check_answer(struct resp *r, unsigned code)
{
    FUZZ_CHECK(known_code(code));
    for (int i = 0; i < FX_FILES; i++) {
        const struct fx_file *f = &fx.files[i];
        char etag[HTTP_ETAG_MAX];
        http_format_etag(crc32c(0, fx_file_data(i), f->size), f->size, etag);
        if (strcmp(r->etag, etag) != 0)
            continue;
        if (f->deleted)
            FUZZ_CHECK(code != 200 && code != 206 && code != 304);
        if (code == 200 && r->body) {
            FUZZ_CHECK(r->body_len == f->size);
            FUZZ_CHECK(memcmp(r->body, fx_file_data(i), f->size) == 0);
        }
        if (code == 206 && r->body) {
            uint64_t first, last, total;
            FUZZ_CHECK(sscanf(r->crange, "bytes %" SCNu64 "-%" SCNu64 "/%" SCNu64, &first,
                              &last, &total) == 3);
            FUZZ_CHECK(total == f->size && first <= last && last < total);
            FUZZ_CHECK(r->body_len == last - first + 1);
            FUZZ_CHECK(memcmp(r->body, fx_file_data(i) + first, r->body_len) == 0);
        }
    }
}

static int rsp_done(http_parser *p)
{
    struct resp *r = p->data;
    if (p->status_code < 200)
        return 0; /* 100 Continue: an interim answer */
    if (r->check)
        check_answer(r, p->status_code);
    r->n++;
    return 0;
}

/* Parses the answers; returns how many complete ones there are and whether
 * all the bytes parsed (*ok). */
static int parse_answers(const char *buf, size_t len, const struct reqs *reqs, int check,
                         int *ok)
{
    http_parser_settings s;
    memset(&s, 0, sizeof(s));
    s.on_message_begin = rsp_begin;
    s.on_header_field = rsp_field;
    s.on_header_value = rsp_value;
    s.on_headers_complete = rsp_headers;
    s.on_body = rsp_body;
    s.on_message_complete = rsp_done;
    struct resp r = {.reqs = reqs, .check = check};
    http_parser p;
    http_parser_init(&p, HTTP_RESPONSE);
    p.data = &r;
    size_t n = http_parser_execute(&p, &s, buf, len);
    *ok = n == len && HTTP_PARSER_ERRNO(&p) == HPE_OK;
    return r.n;
}

static int enough(const char *buf, size_t len, void *arg)
{
    const struct reqs *reqs = arg;
    int ok;
    return reqs->n > 0 && parse_answers(buf, len, reqs, 0, &ok) >= reqs->n;
}

/* ---- input ----------------------------------------------------------------------- */

/* Copies the input with the placeholders replaced. */
static char *expand(const uint8_t *data, size_t size, size_t *out_len)
{
    size_t cap = size * 8 + 64, n = 0;
    char *out = malloc(cap);
    FUZZ_CHECK(out != NULL);
    for (size_t i = 0; i < size; i++) {
        const char *rep = NULL;
        if (data[i] == '{' && i + 2 < size && data[i + 2] == '}') {
            char k = (char)data[i + 1];
            if (k >= '0' && k < '0' + FX_FILES)
                rep = fx.files[k - '0'].name;
            else if (k == 'T')
                rep = "fuzz-token";
        }
        if (rep) {
            size_t l = strlen(rep);
            memcpy(out + n, rep, l);
            n += l;
            i += 2;
        } else {
            out[n++] = (char)data[i];
        }
    }
    *out_len = n;
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > FUZZ_MAX_INPUT)
        return 0;
    fx_start();
    size_t len;
    char *req = expand(data, size, &len);
    struct reqs reqs = {0};
    count_requests(req, len, &reqs);
    int closed;
    size_t got;
    /* No complete request: nothing to wait for, end the connection soon. */
    uint32_t wait = reqs.n > 0 ? FUZZ_WAIT_MS : FUZZ_NO_REQUEST_WAIT_MS;
    char *ans = fx_http(req, len, wait, enough, &reqs, &closed, &got);
    if (getenv("FUZZ_VERBOSE")) {
        fprintf(stderr, "--- request:\n");
        fwrite(req, 1, len, stderr);
        fprintf(stderr, "\n--- answer (%s):\n", closed ? "complete" : "incomplete");
        fwrite(ans, 1, got, stderr);
    }
    FUZZ_CHECK(closed); /* answered everything, or closed the connection */
    int ok;
    parse_answers(ans, got, &reqs, 1, &ok);
    FUZZ_CHECK(ok);
    free(ans);
    free(req);
    fx_check_store();
    fx_stop();
    return 0;
}
