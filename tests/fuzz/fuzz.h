/* fuzz.h - small helpers shared by the libFuzzer harnesses (tests/fuzz/).
 *
 * A harness splits its input with a cursor: fixed-size fields first, then
 * length-prefixed parts, then "the rest". Reading past the end yields zeros
 * and empty parts, never an error, so every input is a valid test case.
 *
 * FUZZ_CHECK aborts (a crash libFuzzer reports and saves) when a property
 * that must hold for every input is broken. */
#ifndef IMG_FUZZ_H
#define IMG_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* Writes a whole file (created or truncated); aborts on failure, since a
 * harness that cannot set up its case tests nothing. */
void fuzz_write_file(const char *path, const void *a, size_t alen, const void *b, size_t blen);

/* Returns a fresh folder under /dev/shm (or /tmp) made once per process and
 * removed at exit. */
const char *fuzz_tmpdir(void);

#endif
