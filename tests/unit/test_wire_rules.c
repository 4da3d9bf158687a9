/* Unit tests of the wire contract's rules: address form (proto/addr.c),
 * nameserver address lists (proto/nslist.c), replica lists of nameserver answers (proto/replicas.c), the retry table
 * (proto/retry.c), and the array helper (base/array.c). */
#include "base/array.h"
#include "base/err.h"
#include "proto/addr.h"
#include "proto/nslist.h"
#include "proto/replicas.h"
#include "proto/retry.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
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

Test(nslist, one_and_several)
{
    struct nslist l;
    cr_assert_eq(nslist_parse("127.0.0.1:9000", &l), 0);
    cr_assert_eq(l.n, 1);
    cr_assert_str_eq(l.addr[0], "127.0.0.1:9000");
    cr_assert_eq(nslist_parse("10.0.0.1:1,[::1]:2,localhost:65535", &l), 0);
    cr_assert_eq(l.n, 3);
    cr_assert_str_eq(l.addr[0], "10.0.0.1:1");
    cr_assert_str_eq(l.addr[1], "[::1]:2");
    cr_assert_str_eq(l.addr[2], "localhost:65535");
    cr_assert_eq(nslist_find(&l, "[::1]:2"), 1);
    cr_assert_eq(nslist_find(&l, "[::1]:3"), -1);
    cr_assert_eq(nslist_find(&l, NULL), -1);
    char buf[NSLIST_STR_MAX];
    cr_assert_str_eq(nslist_format(&l, buf, sizeof(buf)), "10.0.0.1:1,[::1]:2,localhost:65535");
    char small[12];
    cr_assert_str_eq(nslist_format(&l, small, sizeof(small)), "10.0.0.1:1,");
    /* The most a list holds. */
    char many[NSLIST_STR_MAX] = "";
    for (int i = 0; i < NSLIST_MAX; i++)
        snprintf(many + strlen(many), sizeof(many) - strlen(many), "%s10.0.0.%d:80",
                 i ? "," : "", i);
    cr_assert_eq(nslist_parse(many, &l), 0);
    cr_assert_eq(l.n, NSLIST_MAX);
    cr_assert_str_eq(nslist_format(&l, buf, sizeof(buf)), many);
}

Test(nslist, refused)
{
    static const char *bad[] = {
        "", ",", "127.0.0.1:1,", ",127.0.0.1:1", "127.0.0.1:1,,127.0.0.2:1",
        "127.0.0.1:1, 127.0.0.2:1", " 127.0.0.1:1", "127.0.0.1:1 ", "127.0.0.1",
        "127.0.0.1:1,127.0.0.2", "127.0.0.1:99999", "127.0.0.1:1,127.0.0.1:1",
        "127.0.0.1:x", ":1", "127.0.0.1:1;127.0.0.2:1x",
    };
    struct nslist l;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        l.n = 5;
        cr_assert_eq(nslist_parse(bad[i], &l), IMG_EINVAL, "'%s' accepted", bad[i]);
        cr_assert_eq(l.n, 0, "'%s' left entries", bad[i]);
    }
    cr_assert_eq(nslist_parse(NULL, &l), IMG_EINVAL);
    /* One too many, and one element as long as an address may not be. */
    char many[NSLIST_STR_MAX] = "";
    for (int i = 0; i <= NSLIST_MAX; i++)
        snprintf(many + strlen(many), sizeof(many) - strlen(many), "%s10.0.0.%d:80",
                 i ? "," : "", i);
    cr_assert_eq(nslist_parse(many, &l), IMG_EINVAL);
    char longhost[ADDR_MAX + 8];
    memset(longhost, 'a', sizeof(longhost));
    memcpy(longhost + ADDR_MAX, ":80", 4);
    cr_assert_eq(nslist_parse(longhost, &l), IMG_EINVAL);
    /* A whole string past the limit is refused before it is looked at. */
    char huge[NSLIST_STR_MAX + 16];
    memset(huge, ',', sizeof(huge) - 1);
    huge[sizeof(huge) - 1] = '\0';
    cr_assert_eq(nslist_parse(huge, &l), IMG_EINVAL);
}

/* The retry table: for each step, the codes that get one action. */
#define RETRY_CASE_CODES 11
static const struct {
    enum retry_step step;
    enum retry_action action;
    int codes[RETRY_CASE_CODES]; /* 0 ends the list */
} retry_cases[] = {
    {RETRY_WRITE, RETRY_OTHER,
     {IMG_EREPL, IMG_EFULL, IMG_ESEALED, IMG_ENOTPRIMARY, IMG_ENOBLOCKHERE, IMG_ECONN,
      IMG_ETIMEDOUT, IMG_EPROTO, IMG_ECORRUPT, IMG_EVIEWOLD, -ENOSPC}},
    {RETRY_WRITE, RETRY_FINAL, {IMG_ENOTFOUND, -ENOMEM, IMG_ENOBLOCK}},
    {RETRY_WRITE, RETRY_WAIT, {IMG_EBUSY}},
    {RETRY_WRITE, RETRY_OTHER, {-ECANCELED}},
    {RETRY_DELETE, RETRY_OTHER, {-ECANCELED}},
    {RETRY_ALLOC, RETRY_FINAL, {IMG_EBUSY}},
    {RETRY_READ, RETRY_OTHER, {IMG_EBUSY}},
    {RETRY_ALLOC, RETRY_WAIT,
     {IMG_ENOBLOCK, IMG_ESAFEMODE, IMG_ETIMEDOUT, IMG_ECONN, IMG_ENOTLEADER}},
    {RETRY_WRITE, RETRY_FINAL, {IMG_ENOTLEADER}},
    {RETRY_ALLOC, RETRY_FINAL, {IMG_EPROTO}},
    {RETRY_READ, RETRY_FINAL, {IMG_EDELETED}},
    {RETRY_READ, RETRY_OTHER, {IMG_ENOTFOUND, IMG_ECORRUPT, -EIO}},
    {RETRY_DELETE, RETRY_OTHER,
     {IMG_ENOTPRIMARY, IMG_ENOBLOCKHERE, IMG_ECONN, IMG_EUNAVAIL, IMG_ETIMEDOUT, IMG_EREPL,
      IMG_EPROTO}},
    {RETRY_DELETE, RETRY_FINAL, {IMG_ENOTFOUND, IMG_EBADNAME, -ENOSPC}},
    /* A missing or wrong key is final everywhere: a read never passes to
     * another replica for it, an upload never tries another block. */
    {RETRY_WRITE, RETRY_FINAL, {IMG_EAUTH, IMG_EPERM, IMG_EKEYFILE}},
    {RETRY_ALLOC, RETRY_FINAL, {IMG_EAUTH, IMG_EPERM, IMG_EKEYFILE}},
    {RETRY_READ, RETRY_FINAL, {IMG_EAUTH, IMG_EPERM, IMG_EKEYFILE}},
    {RETRY_DELETE, RETRY_FINAL, {IMG_EAUTH, IMG_EPERM, IMG_EKEYFILE}},
};

Test(retry, table)
{
    for (size_t i = 0; i < sizeof(retry_cases) / sizeof(retry_cases[0]); i++)
        for (size_t k = 0; k < RETRY_CASE_CODES && retry_cases[i].codes[k] != 0; k++)
            cr_assert_eq(retry_action(retry_cases[i].step, retry_cases[i].codes[k]),
                         retry_cases[i].action, "step %d, code %d", retry_cases[i].step,
                         retry_cases[i].codes[k]);

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
