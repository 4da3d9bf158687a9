/* fuzz.h - small helpers shared by the libFuzzer harnesses (tests/fuzz/).
 *
 * A harness splits its input with a cursor: fixed-size fields first, then
 * length-prefixed parts, then "the rest". Reading past the end yields zeros
 * and empty parts, never an error, so every input is a valid test case.
 *
 * FUZZ_CHECK aborts (a crash libFuzzer reports and saves) when a property
 * that must hold for every input is broken.
 *
 * util.c has the rest: file and folder helpers, and the raw framed
 * connections the harnesses of in-process servers speak over loopback. */
#ifndef IMG_FUZZ_H
#define IMG_FUZZ_H

#include "proto/frame.h"

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define FUZZ_CHECK(cond)                                                                      \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            fprintf(stderr, "%s:%d: property broken: %s\n", __FILE__, __LINE__, #cond);     \
            abort();                                                                          \
        }                                                                                     \
    } while (0)

struct fuzz_in {
    const uint8_t *p;
    size_t left;
};

static inline uint8_t fuzz_u8(struct fuzz_in *in)
{
    if (in->left == 0)
        return 0;
    in->left--;
    return *in->p++;
}

static inline uint16_t fuzz_u16(struct fuzz_in *in)
{
    uint16_t lo = fuzz_u8(in);
    return (uint16_t)(lo | (uint16_t)fuzz_u8(in) << 8);
}

static inline uint32_t fuzz_u32(struct fuzz_in *in)
{
    uint32_t lo = fuzz_u16(in);
    return lo | (uint32_t)fuzz_u16(in) << 16;
}

/* Takes up to n bytes; *len gets how many there were. */
static inline const uint8_t *fuzz_bytes(struct fuzz_in *in, size_t n, size_t *len)
{
    const uint8_t *p = in->p;
    *len = n < in->left ? n : in->left;
    in->p += *len;
    in->left -= *len;
    return p;
}

/* A part prefixed by its u16 length (little-endian). */
static inline const uint8_t *fuzz_part(struct fuzz_in *in, size_t *len)
{
    return fuzz_bytes(in, fuzz_u16(in), len);
}

/* Returns a malloc'd copy of exactly `size` bytes of data (the caller
 * frees it), so that ASan catches a read one byte too far: libFuzzer's own
 * buffer is not always that tight. */
void *fuzz_exact_copy(const void *data, size_t size);

/* Writes a whole file (created or truncated); aborts on failure, since a
 * harness that cannot set up its case tests nothing. */
void fuzz_write_file(const char *path, const void *a, size_t alen, const void *b, size_t blen);

/* Returns a fresh folder under /dev/shm (or /tmp) made once per process and
 * removed at exit. */
const char *fuzz_tmpdir(void);

/* Removes `path` and everything below it (a missing one is fine). */
void fuzz_rmtree(const char *path);

/* ---- raw framed connections ---------------------------------------------
 * The harness's end of a loopback connection to the server under test, in
 * the process's libuv loop. What the harness sends goes out byte for byte,
 * so hostile heads reach the server's own frame reader; what the server
 * sends is cut into frames, each of which must decode (the server never
 * sends one its own decoder refuses), and handed to on_frame. A harness
 * embeds the struct as the first member of its own and casts back in
 * on_frame. */
struct fuzz_conn;
typedef void (*fuzz_frame_fn)(struct fuzz_conn *c, const struct frame_header *h,
                              const uint8_t *head, const uint8_t *body);

struct fuzz_conn {
    uv_tcp_t tcp;
    uv_connect_t creq;      /* its data is the connection */
    uint8_t *buf;           /* read, not yet a whole frame (malloc'd, freed at close) */
    size_t len, cap;
    fuzz_frame_fn on_frame;
    int open;               /* handle initialised and not yet closed */
    int live;               /* uv_close's callback not run yet */
    int eof;                /* the server closed it, or a read failed */
};

/* Zeroes c and initialises its handle on `loop` (open and live). */
void fuzz_conn_init(struct fuzz_conn *c, uv_loop_t *loop, fuzz_frame_fn on_frame);

/* Starts reading frames; returns 0 or a libuv error. */
int fuzz_conn_start_read(struct fuzz_conn *c);

/* Closes the handle (nothing when closed already); live drops to 0 and the
 * buffer is freed in libuv's close callback. */
void fuzz_conn_close(struct fuzz_conn *c);

/* Writes a then b (blen may be 0) in one write; nothing when closed. */
void fuzz_conn_write(struct fuzz_conn *c, const void *a, size_t alen, const void *b, size_t blen);

/* Sends frame h: its header, h->head_len bytes of head, h->body_len of body. */
void fuzz_conn_send(struct fuzz_conn *c, const struct frame_header *h, const void *head,
                    const void *body);

/* Sends a frame of `type` whose head is m packed (NULL: no head). */
void fuzz_conn_send_msg(struct fuzz_conn *c, unsigned type, int32_t status, uint64_t id,
                        const ProtobufCMessage *m);

/* Runs `loop` until done(arg) returns non-zero or `ms` passed. */
void fuzz_run_until(uv_loop_t *loop, int (*done)(void *), void *arg, uint32_t ms);

#endif
