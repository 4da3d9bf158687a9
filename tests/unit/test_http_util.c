/* Unit tests of the HTTP origin's pure helpers (dataserver/http_util.c):
 * Accept-Encoding and the entity tags of the two representations of a
 * compressed file. */
#include "dataserver/http_util.h"

#include <criterion/criterion.h>
#include <string.h>

Test(http_util, accept_encoding_zstd)
{
    cr_assert_eq(http_accepts_zstd(NULL), 0, "no header: identity");
    cr_assert_eq(http_accepts_zstd(""), 0);
    cr_assert_eq(http_accepts_zstd("zstd"), 1);
    cr_assert_eq(http_accepts_zstd("ZSTD"), 1, "codings are case-insensitive");
    cr_assert_eq(http_accepts_zstd("gzip, deflate, br, zstd"), 1, "what browsers send");
    cr_assert_eq(http_accepts_zstd("gzip, deflate, br"), 0);
    cr_assert_eq(http_accepts_zstd("zstd;q=0"), 0, "q=0 means not acceptable");
    cr_assert_eq(http_accepts_zstd("zstd; q=0.000"), 0);
    cr_assert_eq(http_accepts_zstd("zstd ;Q=0.0"), 0);
    cr_assert_eq(http_accepts_zstd("zstd;q=0.001"), 1);
    cr_assert_eq(http_accepts_zstd("zstd;q=1.000"), 1);
    cr_assert_eq(http_accepts_zstd("zstd;q=0.5, gzip;q=1"), 1);
    cr_assert_eq(http_accepts_zstd("*"), 1, "any coding");
    cr_assert_eq(http_accepts_zstd("*;q=0"), 0);
    cr_assert_eq(http_accepts_zstd("*, zstd;q=0"), 0, "named beats *");
    cr_assert_eq(http_accepts_zstd("zstd;q=0, *"), 0);
    cr_assert_eq(http_accepts_zstd("*;q=0, zstd"), 1);
    cr_assert_eq(http_accepts_zstd("identity"), 0);
    cr_assert_eq(http_accepts_zstd("zstdx, xzstd"), 0, "whole names only");
    cr_assert_eq(http_accepts_zstd("  ,, zstd ,"), 1, "empty members and spaces");
    cr_assert_eq(http_accepts_zstd("gzip, zstd"), 1, "joined repeated lines");
    /* Malformed q-values make the member not acceptable, never a crash. */
    cr_assert_eq(http_accepts_zstd("zstd;q=2"), 0);
    cr_assert_eq(http_accepts_zstd("zstd;q=1.5"), 0);
    cr_assert_eq(http_accepts_zstd("zstd;q=0.0001"), 0);
    cr_assert_eq(http_accepts_zstd("zstd;q="), 0);
    cr_assert_eq(http_accepts_zstd("zstd;q"), 0);
    cr_assert_eq(http_accepts_zstd("zstd;q=.5"), 0);
    cr_assert_eq(http_accepts_zstd("zstd;q=-1"), 0);
    cr_assert_eq(http_accepts_zstd("zstd x"), 0);
    cr_assert_eq(http_accepts_zstd("zstd;level=3"), 1, "other parameters are ignored");
    cr_assert_eq(http_accepts_zstd("zstd;level=3;q=0"), 0);
}

Test(http_util, representation_etags_differ)
{
    char a[HTTP_ETAG_MAX], b[HTTP_ETAG_MAX];
    http_format_etag(0xffffffffu, 0xffffffffu, a);
    http_format_etag_zstd(0xffffffffu, 0xffffffffu, b);
    cr_assert_str_eq(a, "\"ffffffff-ffffffff\"");
    cr_assert_str_eq(b, "\"ffffffff-ffffffff-zstd\"", "the longest tag fits");
    cr_assert_eq(http_etag_list_match(a, b), 0);
    cr_assert_eq(http_etag_list_match(b, a), 0);
    cr_assert_eq(http_etag_list_match(b, b), 1);
    cr_assert_eq(http_etag_list_match("W/\"ffffffff-ffffffff-zstd\"", b), 1, "weak comparison");
}
