/* Unit tests of base/ helpers added by the duplicate clean-up (issue 13):
 * array_has_u64 (base/array.c), the list macros (base/list.h) and the hex
 * ids (base/hexid.c). ARRAY_RESERVE is tested in test_wire_rules.c. */
#include "base/array.h"
#include "base/hexid.h"
#include "base/list.h"

#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

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

struct node {
    struct node *prev, *next;
    int v;
};

/* The values of the list from head, as a number with one digit each. */
static int digits(const struct node *head)
{
    int d = 0;
    for (const struct node *n = head; n; n = n->next) {
        cr_assert(n->next == NULL || n->next->prev == n, "prev links back");
        d = d * 10 + n->v;
    }
    return d;
}

Test(list, push_and_unlink)
{
    struct node a = {.v = 1}, b = {.v = 2}, c = {.v = 3}, *head = NULL;
    DLIST_PUSH(head, &a);
    DLIST_PUSH(head, &b);
    DLIST_PUSH(head, &c);
    cr_assert_eq(digits(head), 321);
    cr_assert_null(head->prev);
    DLIST_UNLINK(head, &b); /* middle */
    cr_assert_eq(digits(head), 31);
    DLIST_UNLINK(head, &c); /* first */
    cr_assert_eq(digits(head), 1);
    cr_assert_null(a.prev);
    DLIST_PUSH(head, &b);
    DLIST_UNLINK(head, &a); /* last */
    cr_assert_eq(digits(head), 2);
    DLIST_UNLINK(head, &b); /* only */
    cr_assert_null(head);
}

Test(hexid, random_and_valid)
{
    char a[33], b[33];
    memset(a, 'x', sizeof(a));
    cr_assert_eq(hexid_random(a, 16), 0);
    cr_assert_eq(strlen(a), 32);
    cr_assert_eq(strspn(a, "0123456789abcdef"), 32);
    cr_assert_eq(hexid_valid(a, 32), 1);
    cr_assert_eq(hexid_random(b, 16), 0);
    cr_assert_str_neq(a, b, "two fresh ids differ");
    cr_assert_eq(hexid_valid("0123456789abcdef", 16), 1);
    cr_assert_eq(hexid_valid("0123456789ABCDEF", 16), 0, "upper case is refused");
    cr_assert_eq(hexid_valid("01g3", 4), 0);
    cr_assert_eq(hexid_valid("01\0003", 4), 0, "a NUL inside is refused");
    cr_assert_eq(hexid_valid("", 0), 1, "the caller checks the length");
}
