/* util.c - what the fuzz harnesses share (see fuzz.h): file and folder
 * helpers, and the raw framed connections and loop helper of the harnesses
 * that talk to an in-process server (ds_fixture.c, fuzz_ns_rpc.c). */
#include "tests/fuzz/fuzz.h"

#include <fcntl.h>
#include <ftw.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[64];

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

void fuzz_rmtree(const char *path)
{
    nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void rm_tmpdir(void)
{
    if (tmpdir[0])
        fuzz_rmtree(tmpdir);
}

const char *fuzz_tmpdir(void)
{
    if (tmpdir[0])
        return tmpdir;
    snprintf(tmpdir, sizeof(tmpdir), "/dev/shm/imgstore-fuzz-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        snprintf(tmpdir, sizeof(tmpdir), "/tmp/imgstore-fuzz-XXXXXX");
        if (!mkdtemp(tmpdir)) {
            perror("mkdtemp");
            abort();
        }
    }
    atexit(rm_tmpdir);
    return tmpdir;
}

void *fuzz_exact_copy(const void *data, size_t size)
{
    void *p = malloc(size ? size : 1);
    FUZZ_CHECK(p != NULL);
    memcpy(p, data, size);
    return p;
}

static void write_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n <= 0) {
            perror("fuzz write");
            abort();
        }
        p += n;
        len -= (size_t)n;
    }
}

void fuzz_write_file(const char *path, const void *a, size_t alen, const void *b, size_t blen)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        perror(path);
        abort();
    }
    write_all(fd, a, alen);
    write_all(fd, b, blen);
    close(fd);
}

/* ---- raw framed connections ------------------------------------------------ */

struct wreq {
    uv_write_t w;
    uint8_t data[];
};

static void conn_closed(uv_handle_t *h)
{
    struct fuzz_conn *c = h->data;
    c->live = 0;
    free(c->buf);
    c->buf = NULL;
    c->len = c->cap = 0;
}

void fuzz_conn_init(struct fuzz_conn *c, uv_loop_t *loop, fuzz_frame_fn on_frame)
{
    memset(c, 0, sizeof(*c));
    uv_tcp_init(loop, &c->tcp);
    c->tcp.data = c;
    c->creq.data = c;
    c->on_frame = on_frame;
    c->open = 1;
    c->live = 1;
}

void fuzz_conn_close(struct fuzz_conn *c)
{
    if (!c->open)
        return;
    c->open = 0;
    uv_close((uv_handle_t *)&c->tcp, conn_closed);
}

static void conn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *out)
{
    struct fuzz_conn *c = h->data;
    if (c->cap - c->len < 65536) {
        c->cap = c->cap * 2 + 65536;
        c->buf = realloc(c->buf, c->cap);
        FUZZ_CHECK(c->buf != NULL);
    }
    *out = uv_buf_init((char *)c->buf + c->len, (unsigned)(c->cap - c->len));
}

static void conn_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct fuzz_conn *c = s->data;
    if (n < 0) {
        c->eof = 1;
        fuzz_conn_close(c);
        return;
    }
    c->len += (size_t)n;
    size_t used = 0;
    while (c->len - used >= FRAME_HEADER_SIZE) {
        struct frame_header h;
        /* The server never sends a frame its own decoder refuses. */
        FUZZ_CHECK(frame_decode(c->buf + used, &h) == 0);
        size_t total = FRAME_HEADER_SIZE + (size_t)h.head_len + h.body_len;
        if (c->len - used < total)
            break;
        const uint8_t *head = c->buf + used + FRAME_HEADER_SIZE;
        c->on_frame(c, &h, head, head + h.head_len);
        used += total;
        if (!c->open)
            return;
    }
    memmove(c->buf, c->buf + used, c->len - used);
    c->len -= used;
}

int fuzz_conn_start_read(struct fuzz_conn *c)
{
    return uv_read_start((uv_stream_t *)&c->tcp, conn_alloc, conn_read);
}

static void write_done(uv_write_t *w, int status)
{
    free(w);
}

void fuzz_conn_write(struct fuzz_conn *c, const void *a, size_t alen, const void *b, size_t blen)
{
    if (!c->open)
        return;
    struct wreq *w = malloc(sizeof(*w) + alen + blen + 1);
    FUZZ_CHECK(w != NULL);
    memcpy(w->data, a, alen);
    if (blen)
        memcpy(w->data + alen, b, blen);
    uv_buf_t buf = uv_buf_init((char *)w->data, (unsigned)(alen + blen));
    if (uv_write(&w->w, (uv_stream_t *)&c->tcp, &buf, 1, write_done) != 0)
        free(w);
}

void fuzz_conn_send(struct fuzz_conn *c, const struct frame_header *h, const void *head,
                    const void *body)
{
    uint8_t *hb = malloc(FRAME_HEADER_SIZE + h->head_len + 1);
    FUZZ_CHECK(hb != NULL);
    frame_encode(h, hb);
    if (h->head_len)
        memcpy(hb + FRAME_HEADER_SIZE, head, h->head_len);
    fuzz_conn_write(c, hb, FRAME_HEADER_SIZE + h->head_len, body, h->body_len);
    free(hb);
}

void fuzz_conn_send_msg(struct fuzz_conn *c, unsigned type, int32_t status, uint64_t id,
                        const ProtobufCMessage *m)
{
    size_t n = m ? protobuf_c_message_get_packed_size(m) : 0;
    uint8_t *head = malloc(n + 1);
    FUZZ_CHECK(head != NULL);
    if (m)
        protobuf_c_message_pack(m, head);
    struct frame_header h = {.version = FRAME_VERSION, .type = (uint8_t)type, .status = status,
                             .request_id = id, .head_len = (uint32_t)n};
    fuzz_conn_send(c, &h, head, NULL);
    free(head);
}

/* ---- the loop ------------------------------------------------------------------ */

static void timer_fired(uv_timer_t *t)
{
    *(int *)t->data = 1;
}

void fuzz_run_until(uv_loop_t *loop, int (*done)(void *), void *arg, uint32_t ms)
{
    uv_timer_t t;
    int expired = 0;
    uv_timer_init(loop, &t);
    t.data = &expired;
    uv_timer_start(&t, timer_fired, ms, 0);
    while (!done(arg) && !expired)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
}
