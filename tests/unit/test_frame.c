/* Unit tests of the frame header codec (proto/frame.c). */
#include "base/err.h"
#include "proto/frame.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

Test(frame, roundtrip)
{
    struct frame_header h = {.type = FT_WRITE | FRAME_RESPONSE, .status = IMG_EREPL,
                             .request_id = 0x0102030405060708ULL, .head_len = 77,
                             .body_len = 2u << 20};
    uint8_t buf[FRAME_HEADER_SIZE];
    frame_encode(&h, buf);
    struct frame_header d;
    cr_assert_eq(frame_decode(buf, &d), 0);
    cr_assert_eq(d.version, FRAME_VERSION);
    cr_assert_eq(d.type, FT_WRITE | FRAME_RESPONSE);
    cr_assert_eq(d.status, IMG_EREPL);
    cr_assert_eq(d.request_id, 0x0102030405060708ULL);
    cr_assert_eq(d.head_len, 77);
    cr_assert_eq(d.body_len, 2u << 20);
}

Test(frame, big_endian_layout)
{
    struct frame_header h = {.type = FT_READ, .request_id = 1, .head_len = 2, .body_len = 3};
    uint8_t buf[FRAME_HEADER_SIZE];
    frame_encode(&h, buf);
    static const uint8_t want[FRAME_HEADER_SIZE] = {0x49, 0x53, 1, FT_READ, 0, 0, 0, 0,
                                                    0, 0, 0, 0, 0, 0, 0, 1,
                                                    0, 0, 0, 2, 0, 0, 0, 3};
    cr_assert_arr_eq(buf, want, FRAME_HEADER_SIZE);
}

Test(frame, rejects_bad_magic_and_version)
{
    struct frame_header h = {.type = FT_READ};
    uint8_t buf[FRAME_HEADER_SIZE];
    struct frame_header d;
    frame_encode(&h, buf);
    buf[0] ^= 0xff;
    cr_assert_eq(frame_decode(buf, &d), IMG_EPROTO);
    frame_encode(&h, buf);
    buf[2] = FRAME_VERSION + 1;
    cr_assert_eq(frame_decode(buf, &d), IMG_EPROTO);
}

Test(frame, rejects_oversized_lengths)
{
    struct frame_header h = {.type = FT_WRITE, .head_len = FRAME_MAX_HEAD + 1};
    uint8_t buf[FRAME_HEADER_SIZE];
    struct frame_header d;
    frame_encode(&h, buf);
    cr_assert_eq(frame_decode(buf, &d), IMG_ETOOBIG);
    h.head_len = 0;
    h.body_len = FRAME_MAX_BODY + 1;
    frame_encode(&h, buf);
    cr_assert_eq(frame_decode(buf, &d), IMG_ETOOBIG);
    h.body_len = FRAME_MAX_BODY;
    frame_encode(&h, buf);
    cr_assert_eq(frame_decode(buf, &d), 0);
}

Test(frame, rejects_positive_status)
{
    struct frame_header h = {.type = FT_WRITE | FRAME_RESPONSE, .status = 5};
    uint8_t buf[FRAME_HEADER_SIZE];
    struct frame_header d;
    frame_encode(&h, buf);
    cr_assert_eq(frame_decode(buf, &d), IMG_EPROTO);
}

Test(frame, random_headers_never_crash)
{
    srand(42);
    uint8_t buf[FRAME_HEADER_SIZE];
    struct frame_header d;
    int ok = 0;
    for (int i = 0; i < 100000; i++) {
        for (int k = 0; k < FRAME_HEADER_SIZE; k++)
            buf[k] = (uint8_t)rand();
        if (i & 1) {
            buf[0] = 0x49;
            buf[1] = 0x53;
            buf[2] = 1;
        }
        int rc = frame_decode(buf, &d);
        cr_assert(rc == 0 || rc == IMG_EPROTO || rc == IMG_ETOOBIG);
        if (rc == 0) {
            ok++;
            cr_assert_leq(d.head_len, FRAME_MAX_HEAD);
            cr_assert_leq(d.body_len, FRAME_MAX_BODY);
        }
    }
    cr_assert_gt(ok, 0);
}

Test(frame, type_names)
{
    cr_assert_str_eq(frame_type_name(FT_WRITE), "WRITE");
    cr_assert_str_eq(frame_type_name(FT_WRITE | FRAME_RESPONSE), "WRITE");
    cr_assert_str_eq(frame_type_name(200), "?");
}
