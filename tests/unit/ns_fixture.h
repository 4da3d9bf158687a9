/* ns_fixture.h - the shared fixture of the nameserver unit tests: a
 * nameserver state (struct ns) in a fresh temporary data folder, and a way to
 * register a dataserver as if its heartbeat had arrived. Included by one test
 * file each (test_ns_*.c); everything is static to that file. */
#ifndef TEST_NS_FIXTURE_H
#define TEST_NS_FIXTURE_H

#include "base/err.h"
#include "nameserver/ns.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[64];
static struct ns ns;

static void rm_tree(void)
{
    char p[160];
    static const char *files[] = {NS_META_FILE, NS_META_FILE ".tmp", "LOCK", NS_DJ_FILE,
                                  NS_DJ_FILE ".tmp"};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(p, sizeof(p), "%s/%s", dir, files[i]);
        unlink(p);
    }
    rmdir(dir);
}

static void setup(void)
{
    strcpy(dir, "/tmp/ns_unit_XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    struct ns_config cfg = {.listen = "127.0.0.1:0", .data_dir = dir, .replicas = 2,
                            .hb_timeout_ms = NS_DEFAULT_HB_TIMEOUT_MS,
                            .safe_mode_ms = NS_DEFAULT_SAFE_MODE_MS};
    cr_assert_eq(ns_init(&ns, &cfg, 0), 0);
}

static void teardown(void)
{
    ns_free(&ns);
    rm_tree();
}

/* Free bytes of a server with room to spare (far above its reserve). */
#define ROOMY (1024 * 1024 * NS_MIB)

/* Registers (or refreshes) server `id` with `free_bytes` free, as if its
 * heartbeat arrived at now_ms. Returns the registry entry. */
static struct ns_server *hb_server(const char *id, uint64_t free_bytes, uint64_t now_ms)
{
    static char addr[NS_ADDR_MAX], http[NS_ADDR_MAX];
    static unsigned port = 7000;
    struct ns_server *s = ns_registry_find(&ns, id);
    if (s) {
        snprintf(addr, sizeof(addr), "%s", s->addr);
        snprintf(http, sizeof(http), "%s", s->http_addr);
    } else {
        snprintf(addr, sizeof(addr), "127.0.0.1:%u", port);
        snprintf(http, sizeof(http), "127.0.0.1:%u", port + 1000);
        port++;
    }
    Imgstore__Disk d = IMGSTORE__DISK__INIT;
    Imgstore__Disk *dp = &d;
    d.capacity = free_bytes * 2;
    d.free = free_bytes;
    Imgstore__Heartbeat hb = IMGSTORE__HEARTBEAT__INIT;
    hb.server_id = (char *)id;
    hb.addr = addr;
    hb.http_addr = http;
    hb.n_disks = 1;
    hb.disks = &dp;
    cr_assert_eq(ns_hb_validate(&hb), 0);
    cr_assert_eq(ns_registry_heartbeat(&ns, &hb, NULL, now_ms, &s), 0);
    return s;
}

/* A sealed block of `size` bytes held by reps[0..n-1], the first primary,
 * all in its replica set. (Inline: not every test file uses it.) */
static inline void block(uint64_t id, uint64_t size, struct ns_server *const *reps, unsigned n)
{
    struct ns_block *b = ns_blocks_put(&ns.blocks, id);
    cr_assert_not_null(b);
    for (unsigned i = 0; i < n; i++)
        cr_assert_geq(ns_block_add_rep(&ns, b, reps[i]), 0);
    b->primary = 0;
    b->sealed = 1;
    b->size = size;
    for (unsigned i = 0; i < n; i++)
        b->rsize[i] = size;
    b->inset = (uint8_t)((1u << n) - 1);
}

#endif
