/* fuzz_fname.c - libFuzzer harness: the file-name codec (proto/fname.h).
 *
 * The input is a name candidate for fname_decode. A name it accepts must
 * encode back to its first FNAME_LEN characters (names are canonical: one
 * file, one name), with the extension pointing inside the input. The input
 * is also read as a struct fname: encoding must give a name that decodes to
 * the same fields, or refuse a block id above FNAME_MAX_BLOCK_ID. */
#include "base/err.h"
#include "proto/fname.h"
#include "tests/fuzz/fuzz.h"

static void check_decode(const char *s, size_t len)
{
    struct fname f;
    const char *ext = NULL;
    size_t ext_len = 0;
    if (fname_decode(s, len, &f, &ext, &ext_len) != 0)
        return;
    FUZZ_CHECK(f.block_id <= FNAME_MAX_BLOCK_ID);
    char out[FNAME_LEN + 1];
    FUZZ_CHECK(fname_encode(&f, out) == 0);
    FUZZ_CHECK(strlen(out) == FNAME_LEN && memcmp(out, s, FNAME_LEN) == 0);
    if (len == FNAME_LEN) {
        FUZZ_CHECK(ext == NULL && ext_len == 0);
    } else {
        FUZZ_CHECK(ext == s + FNAME_LEN + 1 && ext_len == len - FNAME_LEN - 1);
        FUZZ_CHECK(ext_len >= 1 && ext_len <= FNAME_MAX_EXT);
    }
}

static void check_encode(struct fuzz_in *in)
{
    struct fname f = {0}, g = {0};
    f.block_id = (uint64_t)fuzz_u32(in) | (uint64_t)fuzz_u32(in) << 32;
    f.seq = fuzz_u32(in);
    f.cookie = fuzz_u32(in);
    char out[FNAME_LEN + 1];
    int rc = fname_encode(&f, out);
    if (f.block_id > FNAME_MAX_BLOCK_ID) {
        FUZZ_CHECK(rc == IMG_EINVAL);
        return;
    }
    FUZZ_CHECK(rc == 0);
    FUZZ_CHECK(fname_decode(out, strlen(out), &g, NULL, NULL) == 0);
    FUZZ_CHECK(g.block_id == f.block_id && g.seq == f.seq && g.cookie == f.cookie);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = fuzz_exact_copy(data, size);
    check_decode(s, size);
    free(s);
    struct fuzz_in in = {data, size};
    check_encode(&in);
    return 0;
}
