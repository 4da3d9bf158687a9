/* Unit tests of the wire contract's rules: address form (proto/addr.c),
 * replica lists of nameserver answers (proto/replicas.c), the retry table
 * (proto/retry.c), and the array helper (base/array.c). */
#include "base/array.h"
#include "base/err.h"
#include "proto/addr.h"
#include "proto/replicas.h"
#include "proto/retry.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

Test(addr, forms)
{
    char host[ADDR_HOST_MAX], port[ADDR_PORT_MAX];
    cr_assert_eq(addr_split("127.0.0.1:9000", host, port), 0);
    cr_assert_str_eq(host, "127.0.0.1");
    cr_assert_str_eq(port, "9000");
    cr_assert_eq(addr_split("[::1]:80", host, port), 0);
    cr_assert_str_eq(host, "::1");
    cr_assert_eq(addr_check("ds1.example:65535"), 0);
    cr_assert_eq(addr_check(NULL), IMG_EINVAL);
    cr_assert_eq(addr_check(""), IMG_EINVAL);
    cr_assert_eq(addr_check("host"), IMG_EINVAL);
    cr_assert_eq(addr_check(":80"), IMG_EINVAL);
    cr_assert_eq(addr_check("h:"), IMG_EINVAL);
    cr_assert_eq(addr_check("h:65536"), IMG_EINVAL);
    cr_assert_eq(addr_check("h:8x"), IMG_EINVAL);
    cr_assert_eq(addr_check("[]:80"), IMG_EINVAL);
    char longa[ADDR_MAX + 8];
    memset(longa, 'a', sizeof(longa));
    strcpy(longa + ADDR_MAX - 2, ":1"); /* 65 characters */
    cr_assert_eq(addr_check(longa), IMG_EINVAL);
}

/* A replica list of up to 4 entries; NULL addr means a missing address. */
struct list {
    Imgstore__Replica reps[4];
    Imgstore__Replica *p[4];
};

static Imgstore__Replica **mklist(struct list *l, const char *a0, const char *a1,
                                  const char *a2)
{
    const char *a[3] = {a0, a1, a2};
    for (int i = 0; i < 3; i++) {
        imgstore__replica__init(&l->reps[i]);
        l->reps[i].addr = (char *)a[i];
        l->p[i] = &l->reps[i];
    }
    return l->p;
}

Test(replicas, keeps_order_and_skips_bad)
{
    struct list l;
    char addr[3][ADDR_MAX];
    Imgstore__Replica **r = mklist(&l, "10.0.0.1:1", "bad", "10.0.0.3:3");
    cr_assert_eq(replicas_addrs(r, 3, REPLICAS_READ, &addr[0][0], 3, ADDR_MAX), 2);
    cr_assert_str_eq(addr[0], "10.0.0.1:1");
    cr_assert_str_eq(addr[1], "10.0.0.3:3");
    cr_assert_eq(replicas_addrs(r, 3, REPLICAS_WRITE, &addr[0][0], 3, ADDR_MAX), 2);
    cr_assert_eq(replicas_addrs(r, 3, REPLICAS_READ, &addr[0][0], 1, ADDR_MAX), 1);
}

Test(replicas, bad_primary)
{
    struct list l;
    char addr[3][ADDR_MAX];
    Imgstore__Replica **r = mklist(&l, NULL, "10.0.0.2:2", "10.0.0.3:3");
    /* Reads: the other replicas still serve the block. */
    cr_assert_eq(replicas_addrs(r, 3, REPLICAS_READ, &addr[0][0], 3, ADDR_MAX), 2);
    cr_assert_str_eq(addr[0], "10.0.0.2:2");
    /* Writes: WRITE would reach a secondary, so the block is refused. */
    cr_assert_eq(replicas_addrs(r, 3, REPLICAS_WRITE, &addr[0][0], 3, ADDR_MAX), IMG_EPROTO);
    l.p[0] = NULL;
    cr_assert_eq(replicas_addrs(r, 3, REPLICAS_WRITE, &addr[0][0], 3, ADDR_MAX), IMG_EPROTO);
}

Test(replicas, none_usable)
{
    struct list l;
    char addr[3][ADDR_MAX];
    Imgstore__Replica **r = mklist(&l, "x", "y", NULL);
    cr_assert_eq(replicas_addrs(r, 3, REPLICAS_READ, &addr[0][0], 3, ADDR_MAX), IMG_EPROTO);
    cr_assert_eq(replicas_addrs(NULL, 0, REPLICAS_READ, &addr[0][0], 3, ADDR_MAX), IMG_EPROTO);
    /* An address longer than the caller's rows is not usable either. */
    r = mklist(&l, "10.0.0.1:1", NULL, NULL);
    cr_assert_eq(replicas_addrs(r, 1, REPLICAS_READ, &addr[0][0], 3, 8), IMG_EPROTO);
}

Test(retry, table)
{
    static const int write_other[] = {IMG_EREPL,        IMG_EFULL, IMG_ESEALED,
                                      IMG_ENOTPRIMARY,  IMG_ENOBLOCKHERE, IMG_ECONN,
                                      IMG_ETIMEDOUT,    IMG_EPROTO, IMG_ECORRUPT,
                                      IMG_EVIEWOLD,     -ENOSPC};
    for (size_t i = 0; i < sizeof(write_other) / sizeof(write_other[0]); i++)
        cr_assert_eq(retry_action(RETRY_WRITE, write_other[i]), RETRY_OTHER, "%d",
                     write_other[i]);
    cr_assert_eq(retry_action(RETRY_WRITE, IMG_ENOTFOUND), RETRY_FINAL);
    cr_assert_eq(retry_action(RETRY_WRITE, -ENOMEM), RETRY_FINAL);
    cr_assert_eq(retry_action(RETRY_WRITE, IMG_ENOBLOCK), RETRY_FINAL);

    cr_assert_eq(retry_action(RETRY_ALLOC, IMG_ENOBLOCK), RETRY_WAIT);
    cr_assert_eq(retry_action(RETRY_ALLOC, IMG_ESAFEMODE), RETRY_WAIT);
    cr_assert_eq(retry_action(RETRY_ALLOC, IMG_ETIMEDOUT), RETRY_WAIT);
    cr_assert_eq(retry_action(RETRY_ALLOC, IMG_ECONN), RETRY_WAIT);
    cr_assert_eq(retry_action(RETRY_ALLOC, IMG_EPROTO), RETRY_FINAL);

    cr_assert_eq(retry_action(RETRY_READ, IMG_EDELETED), RETRY_FINAL);
    cr_assert_eq(retry_action(RETRY_READ, IMG_ENOTFOUND), RETRY_OTHER);
    cr_assert_eq(retry_action(RETRY_READ, IMG_ECORRUPT), RETRY_OTHER);
    cr_assert_eq(retry_action(RETRY_READ, -EIO), RETRY_OTHER);

    cr_assert_eq(retry_action(RETRY_DELETE, IMG_ENOTPRIMARY), RETRY_OTHER);
    cr_assert_eq(retry_action(RETRY_DELETE, IMG_ENOBLOCKHERE), RETRY_OTHER);
    cr_assert_eq(retry_action(RETRY_DELETE, IMG_ECONN), RETRY_OTHER);
    cr_assert_eq(retry_action(RETRY_DELETE, IMG_EUNAVAIL), RETRY_OTHER);
    cr_assert_eq(retry_action(RETRY_DELETE, IMG_ETIMEDOUT), RETRY_OTHER);
    cr_assert_eq(retry_action(RETRY_DELETE, IMG_EREPL), RETRY_OTHER);
    cr_assert_eq(retry_action(RETRY_DELETE, IMG_ENOTFOUND), RETRY_FINAL);
    cr_assert_eq(retry_action(RETRY_DELETE, IMG_EBADNAME), RETRY_FINAL);
    cr_assert_eq(retry_action(RETRY_DELETE, -ENOSPC), RETRY_FINAL);

    cr_assert_eq(retry_write_excludes(IMG_EFULL), 1);
    cr_assert_eq(retry_write_excludes(IMG_ECORRUPT), 0);
}

Test(array, grows_by_doubling)
{
    uint64_t *a = NULL;
    size_t cap = 0;
    cr_assert_eq(ARRAY_RESERVE(a, cap, 1, 4), 0);
    cr_assert_eq(cap, 4);
    for (uint64_t i = 0; i < 4; i++)
        a[i] = i;
    cr_assert_eq(ARRAY_RESERVE(a, cap, 4, 4), 0); /* room already */
    cr_assert_eq(cap, 4);
    cr_assert_eq(ARRAY_RESERVE(a, cap, 5, 4), 0);
    cr_assert_eq(cap, 8);
    cr_assert_eq(ARRAY_RESERVE(a, cap, 33, 4), 0);
    cr_assert_eq(cap, 64);
    for (uint64_t i = 0; i < 4; i++)
        cr_assert_eq(a[i], i);
    uint64_t *keep = a;
    cr_assert_eq(ARRAY_RESERVE(a, cap, SIZE_MAX / 4, 4), -ENOMEM);
    cr_assert_eq(a, keep);
    cr_assert_eq(cap, 64);
    cr_assert_eq(ARRAY_RESERVE(a, cap, SIZE_MAX, 4), -ENOMEM);
    free(a);
}
