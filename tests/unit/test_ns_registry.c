/* Unit tests of the dataserver registry (nameserver/ns_registry.c) and safe
 * mode (nameserver/ns_core.c): heartbeat validation, registration, address
 * changes, liveness timeouts, safe-mode exit. */
#include "ns_fixture.h"

TestSuite(ns_registry, .init = setup, .fini = teardown);

Test(ns_registry, server_id_rules)
{
    cr_assert(ns_server_id_valid("ds1"));
    cr_assert(ns_server_id_valid("A-b_9"));
    char max[NS_SERVER_ID_MAX + 2];
    memset(max, 'x', NS_SERVER_ID_MAX);
    max[NS_SERVER_ID_MAX] = '\0';
    cr_assert(ns_server_id_valid(max));
    max[NS_SERVER_ID_MAX] = 'x';
    max[NS_SERVER_ID_MAX + 1] = '\0';
    cr_assert_not(ns_server_id_valid(max), "65 chars");
    cr_assert_not(ns_server_id_valid(""));
    cr_assert_not(ns_server_id_valid(NULL));
    cr_assert_not(ns_server_id_valid("ds 1"));
    cr_assert_not(ns_server_id_valid("ds/1"));
    cr_assert_not(ns_server_id_valid("ds.1"));
    cr_assert_not(ns_server_id_valid("d\xc3\xa9"));
}

Test(ns_registry, heartbeat_validation)
{
    Imgstore__Heartbeat hb = IMGSTORE__HEARTBEAT__INIT;
    hb.server_id = "ds1";
    hb.addr = "127.0.0.1:7000";
    hb.http_addr = "127.0.0.1:8000";
    cr_assert_eq(ns_hb_validate(&hb), 0);
    cr_assert_eq(ns_hb_validate(NULL), IMG_EINVAL);
    hb.server_id = "bad id";
    cr_assert_eq(ns_hb_validate(&hb), IMG_EINVAL);
    hb.server_id = "";
    cr_assert_eq(ns_hb_validate(&hb), IMG_EINVAL);
    hb.server_id = "ds1";
    static char *bad_addrs[] = {"", "127.0.0.1", "127.0.0.1:", ":7000", "127.0.0.1:70000",
                                "127.0.0.1:-1", "not.an.ip:7000", "127.0.0.1:7x"};
    for (size_t i = 0; i < sizeof(bad_addrs) / sizeof(bad_addrs[0]); i++) {
        hb.addr = bad_addrs[i];
        cr_assert_eq(ns_hb_validate(&hb), IMG_EINVAL, "addr '%s'", bad_addrs[i]);
        hb.addr = "127.0.0.1:7000";
        hb.http_addr = bad_addrs[i];
        cr_assert_eq(ns_hb_validate(&hb), IMG_EINVAL, "http_addr '%s'", bad_addrs[i]);
        hb.http_addr = "127.0.0.1:8000";
    }
    char longaddr[NS_ADDR_MAX + 16];
    memset(longaddr, '1', sizeof(longaddr));
    memcpy(longaddr + sizeof(longaddr) - 6, ":7000", 6);
    hb.addr = longaddr;
    cr_assert_eq(ns_hb_validate(&hb), IMG_EINVAL);
    hb.addr = "[::1]:7000";
    cr_assert_eq(ns_hb_validate(&hb), 0, "IPv6 is fine");
    hb.n_disks = NS_MAX_DISKS + 1;
    cr_assert_eq(ns_hb_validate(&hb), IMG_EINVAL, "absurd disk count");
}

Test(ns_registry, registers_and_persists_known)
{
    struct ns_server *s = hb_server("ds1", 1000, 10);
    cr_assert_eq(ns.nservers, 1);
    cr_assert(s->up);
    cr_assert_eq(s->free, 1000);
    cr_assert_eq(s->capacity, 2000);
    cr_assert_eq(s->disks, 1);
    cr_assert(ns_meta_is_known(&ns.meta, "ds1"));
    cr_assert_eq(hb_server("ds1", 500, 20), s, "same id, same entry");
    cr_assert_eq(ns.nservers, 1);
    cr_assert_eq(s->free, 500);
    cr_assert_eq(ns_registry_up_count(&ns), 1);
}

Test(ns_registry, address_change_updates_entry)
{
    struct ns_server *s = hb_server("ds1", 1000, 10);
    Imgstore__Heartbeat hb = IMGSTORE__HEARTBEAT__INIT;
    hb.server_id = "ds1";
    hb.addr = "127.0.0.2:9000";
    hb.http_addr = "127.0.0.2:9001";
    struct ns_server *s2;
    cr_assert_eq(ns_registry_heartbeat(&ns, &hb, NULL, 20, &s2), 0);
    cr_assert_eq(s2, s);
    cr_assert_eq(ns.nservers, 1);
    cr_assert_str_eq(s->addr, "127.0.0.2:9000");
    cr_assert_str_eq(s->http_addr, "127.0.0.2:9001");
}

Test(ns_registry, heartbeat_timeout_marks_down)
{
    struct ns_server *a = hb_server("a", 1, 1000);
    struct ns_server *b = hb_server("b", 1, 4000);
    cr_assert_eq(ns_registry_check_timeouts(&ns, 1000 + NS_DEFAULT_HB_TIMEOUT_MS), 0);
    cr_assert_eq(ns_registry_check_timeouts(&ns, 1001 + NS_DEFAULT_HB_TIMEOUT_MS), 1);
    cr_assert_not(a->up);
    cr_assert(b->up);
    cr_assert_eq(ns_registry_up_count(&ns), 1);
    hb_server("a", 1, 7000);
    cr_assert(a->up, "a heartbeat brings it back");
}

Test(ns_registry, disk_sums_saturate_and_skip_failed)
{
    Imgstore__Disk d[3] = {IMGSTORE__DISK__INIT, IMGSTORE__DISK__INIT, IMGSTORE__DISK__INIT};
    Imgstore__Disk *dp[3] = {&d[0], &d[1], &d[2]};
    d[0].free = UINT64_MAX - 1;
    d[1].free = 10;
    d[2].free = 99;
    d[2].failed = 1;
    Imgstore__Heartbeat hb = IMGSTORE__HEARTBEAT__INIT;
    hb.server_id = "ds1";
    hb.addr = "127.0.0.1:1";
    hb.http_addr = "127.0.0.1:2";
    hb.n_disks = 3;
    hb.disks = dp;
    struct ns_server *s;
    cr_assert_eq(ns_registry_heartbeat(&ns, &hb, NULL, 1, &s), 0);
    cr_assert_eq(s->free, UINT64_MAX);
    cr_assert_eq(s->disks, 3);
}

Test(ns_registry, safe_mode_ends_when_known_servers_report)
{
    /* Start fresh with two known servers, as after a restart. */
    cr_assert_eq(ns_meta_add_known(&ns.meta, "a"), 0);
    cr_assert_eq(ns_meta_add_known(&ns.meta, "b"), 0);
    ns.safe_mode = 1;
    ns.start_ms = 0;
    struct ns_server *a = hb_server("a", 1, 10);
    cr_assert(ns_safe_mode_check(&ns, 10), "no full report yet");
    a->full_reported = 1;
    cr_assert(ns_safe_mode_check(&ns, 20), "b still missing");
    struct ns_server *b = hb_server("b", 1, 30);
    b->full_reported = 1;
    cr_assert_not(ns_safe_mode_check(&ns, 30));
}

Test(ns_registry, safe_mode_ends_on_timeout)
{
    cr_assert_eq(ns_meta_add_known(&ns.meta, "gone"), 0);
    ns.safe_mode = 1;
    ns.start_ms = 100;
    cr_assert(ns_safe_mode_check(&ns, 100 + NS_DEFAULT_SAFE_MODE_MS - 1));
    cr_assert_not(ns_safe_mode_check(&ns, 100 + NS_DEFAULT_SAFE_MODE_MS));
}
