/* test_limits.c - the per-address tables of net/limits.c: connection counts
 * refuse past the port's and the address's caps and forget an address
 * whose last connection left; token buckets allow a burst, refill at their
 * rate, stay bounded in memory (the least recently used address is
 * forgotten), and list the addresses with the most misses; sets of
 * networks (--miss-exempt) parse and match by prefix. */
#include "net/limits.h"

#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

static struct sockaddr_storage v4(const char *ip, int port)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *in = (struct sockaddr_in *)&ss;
    in->sin_family = AF_INET;
    in->sin_port = htons((uint16_t)port);
    cr_assert_eq(inet_pton(AF_INET, ip, &in->sin_addr), 1);
    return ss;
}

static struct sockaddr_storage v6(const char *ip)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    in6->sin6_family = AF_INET6;
    cr_assert_eq(inet_pton(AF_INET6, ip, &in6->sin6_addr), 1);
    return ss;
}

Test(gate, caps_per_address_and_in_all)
{
    struct conn_gate g = {.max_total = 5, .max_per_addr = 2};
    struct sockaddr_storage a = v4("10.0.0.1", 1000), a2 = v4("10.0.0.1", 2000);
    struct sockaddr_storage b = v4("10.0.0.2", 1000);
    /* The port is not part of the address; v4-mapped v6 is the v4 one. */
    struct sockaddr_storage a6 = v6("::ffff:10.0.0.1");
    cr_assert_eq(conn_gate_enter(&g, &a), 0);
    cr_assert_eq(conn_gate_enter(&g, &a2), 0);
    cr_assert_eq(conn_gate_enter(&g, &a6), 2);
    cr_assert_eq(g.refused_per_addr, 1);
    cr_assert_eq(conn_gate_enter(&g, &b), 0);
    cr_assert_eq(conn_gate_enter(&g, &b), 0);
    struct sockaddr_storage c = v6("2001:db8::1");
    cr_assert_eq(conn_gate_enter(&g, &c), 0);
    cr_assert_eq(g.open, 5);
    struct sockaddr_storage d = v4("10.0.0.3", 1);
    cr_assert_eq(conn_gate_enter(&g, &d), 1);
    cr_assert_eq(g.refused_total, 1);
    conn_gate_leave(&g, &a);
    cr_assert_eq(conn_gate_enter(&g, &d), 0);
    conn_gate_leave(&g, &a2);
    conn_gate_leave(&g, &a2); /* not counted any more: ignored */
    cr_assert_eq(g.open, 4);
    cr_assert_eq(conn_gate_enter(&g, &a), 0);
    cr_assert_eq(conn_gate_enter(&g, &a), 1); /* full again */
    conn_gate_free(&g);
}

Test(gate, no_caps)
{
    struct conn_gate g = {0};
    struct sockaddr_storage a = v4("127.0.0.1", 1);
    for (int i = 0; i < 10000; i++)
        cr_assert_eq(conn_gate_enter(&g, &a), 0);
    for (int i = 0; i < 10000; i++)
        conn_gate_leave(&g, &a);
    cr_assert_eq(g.open, 0);
    conn_gate_free(&g);
}

Test(buckets, burst_then_rate)
{
    struct addr_buckets b = {.rate = 10, .burst = 20};
    struct sockaddr_storage a = v4("192.0.2.1", 5), o = v4("192.0.2.2", 5);
    uint64_t t = 1000;
    unsigned retry = 0;
    for (int i = 0; i < 20; i++) {
        cr_assert(addr_buckets_allows(&b, &a, t, &retry), "miss %d refused", i);
        cr_assert_eq(addr_buckets_take(&b, &a, t), 0);
    }
    cr_assert_not(addr_buckets_allows(&b, &a, t, &retry));
    cr_assert_geq(retry, 1);
    cr_assert_eq(b.emptied, 1);
    cr_assert_eq(b.limited, 1);
    cr_assert(addr_buckets_allows(&b, &o, t, NULL), "another address is not slowed");
    /* 10 a second: one token back after 100 ms, not before. */
    cr_assert_not(addr_buckets_allows(&b, &a, t + 90, NULL));
    cr_assert(addr_buckets_allows(&b, &a, t + 100, NULL));
    cr_assert_eq(addr_buckets_take(&b, &a, t + 100), 0);
    cr_assert_not(addr_buckets_allows(&b, &a, t + 100, NULL));
    /* Never more than the burst, however long it waited. */
    int n = 0;
    t += 1000000;
    while (addr_buckets_allows(&b, &a, t, NULL) && n < 100) {
        addr_buckets_take(&b, &a, t);
        n++;
    }
    cr_assert_eq(n, 20);
    addr_buckets_free(&b);
}

Test(buckets, rate_zero_is_off)
{
    struct addr_buckets b = {.rate = 0, .burst = 1};
    struct sockaddr_storage a = v4("192.0.2.1", 5);
    for (int i = 0; i < 1000; i++) {
        cr_assert(addr_buckets_allows(&b, &a, 1, NULL));
        addr_buckets_take(&b, &a, 1);
    }
    cr_assert_eq(b.n, 0);
    addr_buckets_free(&b);
}

Test(buckets, bounded_and_top)
{
    struct addr_buckets b = {.rate = 1, .burst = 5, .max_entries = 64};
    char ip[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(ip, sizeof(ip), "10.1.%d.%d", i / 256, i % 256);
        struct sockaddr_storage a = v4(ip, 1);
        cr_assert_eq(addr_buckets_take(&b, &a, 1000), 0);
        cr_assert_leq(b.n, 64);
    }
    /* The guesser used most recently and most: listed first. */
    struct sockaddr_storage g = v4("198.51.100.7", 1), h = v4("198.51.100.8", 1);
    for (int i = 0; i < 9; i++)
        addr_buckets_take(&b, &g, 2000);
    for (int i = 0; i < 4; i++)
        addr_buckets_take(&b, &h, 2000);
    cr_assert_not(addr_buckets_allows(&b, &g, 2000, NULL));
    char out[3][64];
    uint64_t taken[3];
    cr_assert_eq(addr_buckets_top(&b, 3, out, taken), 3);
    cr_assert_str_eq(out[0], "198.51.100.7");
    cr_assert_eq(taken[0], 9);
    cr_assert_str_eq(out[1], "198.51.100.8");
    cr_assert_eq(taken[1], 4);
    cr_assert_eq(taken[2], 1);
    /* The oldest entry was forgotten: a fresh, full bucket. */
    struct sockaddr_storage first = v4("10.1.0.0", 1);
    cr_assert(addr_buckets_allows(&b, &first, 2000, NULL));
    addr_buckets_free(&b);
}

Test(addr_set, networks_and_errors)
{
    struct addr_set s;
    char err[160];
    cr_assert_eq(addr_set_parse(&s, "192.0.2.7,198.51.100.0/24,2001:db8::/32,::ffff:203.0.113.0/120",
                                err, sizeof(err)),
                 0, "%s", err);
    cr_assert_eq(s.n, 4);
    struct sockaddr_storage in[] = {v4("192.0.2.7", 5), v4("198.51.100.255", 1),
                                    v6("2001:db8:ffff::1"), v6("::ffff:192.0.2.7"),
                                    v4("203.0.113.9", 1)};
    for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++)
        cr_assert(addr_set_has(&s, &in[i]), "address %zu not in the set", i);
    struct sockaddr_storage out[] = {v4("192.0.2.8", 5), v4("198.51.101.0", 1),
                                     v6("2001:db9::1"), v6("::1"), v4("203.0.114.1", 1)};
    for (size_t i = 0; i < sizeof(out) / sizeof(out[0]); i++)
        cr_assert_not(addr_set_has(&s, &out[i]), "address %zu in the set", i);
    /* /0 is everything of its family; odd prefixes match bit by bit. */
    cr_assert_eq(addr_set_parse(&s, "0.0.0.0/0,10.0.0.128/25", err, sizeof(err)), 0);
    struct sockaddr_storage any = v4("8.8.8.8", 1), six = v6("2001:db8::1");
    cr_assert(addr_set_has(&s, &any));
    cr_assert_not(addr_set_has(&s, &six));
    cr_assert_eq(addr_set_parse(&s, "10.0.0.128/25", err, sizeof(err)), 0);
    struct sockaddr_storage lo = v4("10.0.0.127", 1), hi = v4("10.0.0.200", 1);
    cr_assert_not(addr_set_has(&s, &lo));
    cr_assert(addr_set_has(&s, &hi));
    const char *bad[] = {"", "1.2.3.4,", ",1.2.3.4", "1.2.3.4/33", "::1/129", "1.2.3.4/",
                         "1.2.3.4/-1", "1.2.3.4/x", "example.com", "1.2.3", "1.2.3.4 "};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        cr_assert_eq(addr_set_parse(&s, bad[i], err, sizeof(err)), -EINVAL, "'%s' accepted", bad[i]);
        cr_assert_neq(err[0], '\0');
        cr_assert_eq(s.n, 0);
    }
    char many[2048] = "";
    for (int i = 0; i <= ADDR_SET_MAX; i++)
        snprintf(many + strlen(many), sizeof(many) - strlen(many), "%s10.0.0.%d", i ? "," : "", i);
    cr_assert_eq(addr_set_parse(&s, many, err, sizeof(err)), -EINVAL);
    cr_assert(strstr(err, "at most"), "%s", err);
}
