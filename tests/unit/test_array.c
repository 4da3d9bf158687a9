/* Unit tests of base/ helpers added by the duplicate clean-up (issue 13):
 * array_has_u64 (base/array.c). ARRAY_RESERVE is tested in
 * test_wire_rules.c. */
#include "base/array.h"

#include <criterion/criterion.h>
#include <stdint.h>

Test(array, has_u64)
{
    const uint64_t ids[] = {7, UINT64_MAX, 0, 42};
    cr_assert_eq(array_has_u64(ids, 4, 7), 1);
    cr_assert_eq(array_has_u64(ids, 4, 42), 1, "the last one counts");
    cr_assert_eq(array_has_u64(ids, 4, 0), 1);
    cr_assert_eq(array_has_u64(ids, 4, UINT64_MAX), 1);
    cr_assert_eq(array_has_u64(ids, 4, 8), 0);
    cr_assert_eq(array_has_u64(ids, 3, 42), 0, "only the first n are looked at");
    cr_assert_eq(array_has_u64(NULL, 0, 0), 0, "an empty list holds nothing");
}
