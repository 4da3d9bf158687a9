/* Unit tests of the file-name codec (proto/fname.c) and the mime table. */
#include "base/crc32c.h"
#include "base/err.h"
#include "proto/fname.h"
#include "proto/mime.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void roundtrip(uint64_t block, uint32_t seq, uint32_t cookie)
{
    struct fname f = {block, seq, cookie}, g;
    char buf[FNAME_BUF];
    cr_assert_eq(fname_encode(&f, buf), 0);
    cr_assert_eq(strlen(buf), FNAME_LEN);
    cr_assert_eq(buf[0], FNAME_VERSION_CHAR);
    for (size_t i = 0; i < FNAME_LEN; i++)
        cr_assert(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
                         buf[i]) != NULL, "char %zu of %s is not URL-safe", i, buf);
    const char *ext = (const char *)1;
    size_t elen = 99;
    cr_assert_eq(fname_decode(buf, strlen(buf), &g, &ext, &elen), 0);
    cr_assert_eq(g.block_id, block);
    cr_assert_eq(g.seq, seq);
    cr_assert_eq(g.cookie, cookie);
    cr_assert_null(ext);
    cr_assert_eq(elen, 0);
}

Test(fname, roundtrip_edges)
{
    roundtrip(0, 0, 0);
    roundtrip(1, 1, 1);
    roundtrip(FNAME_MAX_BLOCK_ID, UINT32_MAX, UINT32_MAX);
    roundtrip(0x123456789aULL, 0xdeadbeef, 0x01020304);
}

Test(fname, roundtrip_random)
{
    srand(7);
    for (int i = 0; i < 20000; i++) {
        uint64_t b = (((uint64_t)rand() << 31) ^ (uint64_t)rand()) & FNAME_MAX_BLOCK_ID;
        roundtrip(b, (uint32_t)rand() * 2u + 1, (uint32_t)rand() ^ ((uint32_t)rand() << 16));
    }
}

Test(fname, extension_is_a_hint)
{
    struct fname f = {42, 7, 0xcafef00d}, g;
    char buf[FNAME_BUF + 8];
    fname_encode(&f, buf);
    strcat(buf, ".jpg");
    const char *ext;
    size_t elen;
    cr_assert_eq(fname_decode(buf, strlen(buf), &g, &ext, &elen), 0);
    cr_assert_eq(g.block_id, 42);
    cr_assert_eq(elen, 3);
    cr_assert_eq(strncmp(ext, "jpg", 3), 0);
}

Test(fname, rejects_block_id_too_large)
{
    struct fname f = {FNAME_MAX_BLOCK_ID + 1, 0, 0};
    char buf[FNAME_BUF];
    cr_assert_eq(fname_encode(&f, buf), IMG_EINVAL);
}

Test(fname, rejects_malformed)
{
    struct fname f = {1234, 56, 0x9abcdef0}, g;
    char good[FNAME_BUF];
    fname_encode(&f, good);
    char buf[64];

    cr_assert_eq(fname_decode(NULL, 0, &g, NULL, NULL), IMG_EBADNAME);
    cr_assert_eq(fname_decode("", 0, &g, NULL, NULL), IMG_EBADNAME);
    /* too short */
    cr_assert_eq(fname_decode(good, FNAME_LEN - 1, &g, NULL, NULL), IMG_EBADNAME);
    /* too long without a dot */
    snprintf(buf, sizeof(buf), "%sA", good);
    cr_assert_eq(fname_decode(buf, strlen(buf), &g, NULL, NULL), IMG_EBADNAME);
    /* bad version */
    strcpy(buf, good);
    buf[0] = '2';
    cr_assert_eq(fname_decode(buf, strlen(buf), &g, NULL, NULL), IMG_EBADNAME);
    /* bad characters in every position */
    const char bad[] = "+/=.%\n \0~";
    for (size_t pos = 1; pos < FNAME_LEN; pos++)
        for (size_t k = 0; k < sizeof(bad) - 1; k++) {
            strcpy(buf, good);
            buf[pos] = bad[k];
            cr_assert_eq(fname_decode(buf, FNAME_LEN, &g, NULL, NULL), IMG_EBADNAME,
                         "pos %zu char %d", pos, bad[k]);
        }
    /* empty, too long and non-alphanumeric extensions */
    snprintf(buf, sizeof(buf), "%s.", good);
    cr_assert_eq(fname_decode(buf, strlen(buf), &g, NULL, NULL), IMG_EBADNAME);
    snprintf(buf, sizeof(buf), "%s.abcdefghi", good);
    cr_assert_eq(fname_decode(buf, strlen(buf), &g, NULL, NULL), IMG_EBADNAME);
    snprintf(buf, sizeof(buf), "%s.j/g", good);
    cr_assert_eq(fname_decode(buf, strlen(buf), &g, NULL, NULL), IMG_EBADNAME);
    snprintf(buf, sizeof(buf), "%s.jpg.png", good);
    cr_assert_eq(fname_decode(buf, strlen(buf), &g, NULL, NULL), IMG_EBADNAME);
}

Test(fname, every_single_char_change_is_refused)
{
    /* The check byte catches any one mistyped character. */
    struct fname f = {987654321, 12345, 0x11223344}, g;
    char good[FNAME_BUF], buf[FNAME_BUF];
    fname_encode(&f, good);
    const char *alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    int accepted = 0;
    for (size_t pos = 1; pos < FNAME_LEN; pos++)
        for (const char *a = alpha; *a; a++) {
            if (*a == good[pos])
                continue;
            strcpy(buf, good);
            buf[pos] = *a;
            if (fname_decode(buf, FNAME_LEN, &g, NULL, NULL) == 0)
                accepted++;
        }
    /* A one-byte check lets about 1 in 256 through; 20*63 changes -> a few. */
    cr_assert_lt(accepted, 20, "%d single-character typos accepted", accepted);
}

Test(fname, random_strings_never_crash)
{
    srand(3);
    char buf[40];
    struct fname g;
    for (int i = 0; i < 100000; i++) {
        size_t n = (size_t)rand() % sizeof(buf);
        for (size_t k = 0; k < n; k++)
            buf[k] = (char)rand();
        int rc = fname_decode(buf, n, &g, NULL, NULL);
        cr_assert(rc == 0 || rc == IMG_EBADNAME);
    }
}

Test(crc32c, known_vector)
{
    cr_assert_eq(crc32c(0, "123456789", 9), 0xE3069283u);
    uint32_t part = crc32c(0, "1234", 4);
    cr_assert_eq(crc32c(part, "56789", 5), 0xE3069283u);
    cr_assert_eq(crc32c(0, "", 0), 0);
}

Test(mime, table)
{
    cr_assert_str_eq(mime_name(mime_from_type("image/JPEG; q=1")), "image/jpeg");
    cr_assert_eq(mime_from_type("nonsense/x"), MIME_OCTET_STREAM);
    cr_assert_str_eq(mime_name(mime_from_ext("jpeg", 4)), "image/jpeg");
    cr_assert_str_eq(mime_name(mime_from_ext("PNG", 3)), "image/png");
    cr_assert_str_eq(mime_name(9999), "application/octet-stream");
    cr_assert_str_eq(mime_name(mime_sniff("\x89PNG\r\n\x1a\nxxxx", 12)), "image/png");
    cr_assert_str_eq(mime_name(mime_sniff("\xff\xd8\xff\xe0", 4)), "image/jpeg");
}

/* The stored type of an upload (mime_pick): a sure signature of another
 * image format wins over the claim; otherwise the claim; without one, the
 * sniffed type. */
Test(mime, pick)
{
    static const char png[] = "\x89PNG\r\n\x1a\nrest";
    static const char jpeg[] = "\xff\xd8\xff\xe0rest";
    static const char gif[] = "GIF87arest";
    static const char webp[] = "RIFF\x10\x00\x00\x00WEBPrest";
    static const char avif[] = "\x00\x00\x00\x1c" "ftypavifrest";
    static const char bm[] = "BM looks like a bitmap";
    static const char text[] = "plain words";
    cr_assert_str_eq(mime_name(mime_pick("image/jpeg", png, sizeof(png))), "image/png");
    cr_assert_str_eq(mime_name(mime_pick("image/png", jpeg, sizeof(jpeg))), "image/jpeg");
    cr_assert_str_eq(mime_name(mime_pick("image/png", gif, sizeof(gif))), "image/gif");
    cr_assert_str_eq(mime_name(mime_pick("image/jpeg", webp, sizeof(webp))), "image/webp");
    cr_assert_str_eq(mime_name(mime_pick("image/png", avif, sizeof(avif))), "image/avif");
    cr_assert_str_eq(mime_name(mime_pick("image/png", png, sizeof(png))), "image/png");
    /* BMP's two-byte mark is too weak to overrule a claim, but names
     * unclaimed bytes. */
    cr_assert_str_eq(mime_name(mime_pick("text/plain", bm, sizeof(bm))), "text/plain");
    cr_assert_str_eq(mime_name(mime_pick(NULL, bm, sizeof(bm))), "image/bmp");
    cr_assert_str_eq(mime_name(mime_pick("image/svg+xml", text, sizeof(text))), "image/svg+xml");
    cr_assert_str_eq(mime_name(mime_pick(NULL, png, sizeof(png))), "image/png");
    cr_assert_str_eq(mime_name(mime_pick("application/octet-stream", gif, sizeof(gif))),
                     "image/gif");
    cr_assert_str_eq(mime_name(mime_pick("no/such-type", text, sizeof(text))),
                     "application/octet-stream");
    cr_assert_str_eq(mime_name(mime_pick(NULL, text, sizeof(text))), "application/octet-stream");
    /* Too short for any signature: the claim. */
    cr_assert_str_eq(mime_name(mime_pick("image/png", "\xff\xd8", 2)), "image/png");
    cr_assert_str_eq(mime_name(mime_pick("image/png", NULL, 0)), "image/png");
}
