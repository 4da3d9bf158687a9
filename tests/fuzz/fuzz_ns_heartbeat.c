/* fuzz_ns_heartbeat.c - libFuzzer harness: the nameserver's handling of
 * dataserver heartbeats and block reports, without sockets.
 *
 * The input is a sequence of steps, each a u8 (time advance in 100 ms units,
 * high bit: run the heartbeat timeout check) and a u16-prefixed protobuf
 * Heartbeat head. Each head goes through what the HEARTBEAT handler of
 * nameserver/ns_rpc.c does: unpack, ns_hb_validate, ns_registry_heartbeat,
 * ns_hb_apply_blocks, ns_safe_mode_check; then the ALLOC_WRITE path
 * (ns_pool_prune, ns_pool_pick). A fresh nameserver (new data folder state)
 * serves each input.
 *
 * Properties: nothing crashes or leaks; after every step the block map is
 * consistent: each block has at most NS_BLOCK_SLOTS distinct holders, all
 * registered servers, a primary slot inside them, and each server's block
 * count equals the number of blocks listing it; picked writable blocks exist
 * and are writable. */
#include "nameserver/ns.h"
#include "tests/fuzz/fuzz.h"
#include "tests/fuzz/ns_check.h"

#include <unistd.h>

#define FUZZ_MAX_STEPS 64
#define FUZZ_STEP_MS 100

static char data_dir[128];
static char meta_path[192];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    setenv("IMGSTORE_LOG", "off", 1);
    snprintf(data_dir, sizeof(data_dir), "%s/ns", fuzz_tmpdir());
    snprintf(meta_path, sizeof(meta_path), "%s/%s", data_dir, NS_META_FILE);
    return 0;
}

static void step(struct ns *ns, const uint8_t *head, size_t len, uint64_t now)
{
    Imgstore__Heartbeat *hb = imgstore__heartbeat__unpack(NULL, len, head);
    if (!hb)
        return;
    struct ns_server *s = NULL;
    if (ns_hb_validate(hb) == 0 && ns_registry_heartbeat(ns, hb, NULL, now, &s) == 0) {
        FUZZ_CHECK(s != NULL && ns_registry_find(ns, hb->server_id) == s);
        size_t skipped = 0;
        ns_hb_apply_blocks(ns, s, hb, &skipped);
        ns_safe_mode_check(ns, now);
    }
    imgstore__heartbeat__free_unpacked(hb, NULL);
    fuzz_check_block_map(ns);

    ns_pool_prune(ns);
    uint64_t ids[NS_ALLOC_MAX];
    size_t n = ns_pool_pick(ns, NULL, 0, ids, NS_ALLOC_MAX);
    FUZZ_CHECK(n <= NS_ALLOC_MAX);
    for (size_t i = 0; i < n; i++) {
        const struct ns_block *b = ns_blocks_get(&ns->blocks, ids[i]);
        FUZZ_CHECK(b != NULL && ns_block_writable(ns, b));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ns_config cfg = {
        .listen = "127.0.0.1:1",
        .data_dir = data_dir,
        .hb_timeout_ms = NS_DEFAULT_HB_TIMEOUT_MS,
        .safe_mode_ms = NS_DEFAULT_SAFE_MODE_MS,
    };
    struct ns ns;
    uint64_t now = 1000;
    unlink(meta_path);
    FUZZ_CHECK(ns_init(&ns, &cfg, now) == 0);
    ns.rng = 0x9e3779b97f4a7c15ull; /* reproducible runs */
    struct fuzz_in in = {data, size};
    for (int i = 0; i < FUZZ_MAX_STEPS && in.left > 0; i++) {
        uint8_t op = fuzz_u8(&in);
        size_t len;
        const uint8_t *head = fuzz_part(&in, &len);
        now += (uint64_t)(op & 0x7f) * FUZZ_STEP_MS;
        if (op & 0x80) {
            ns_registry_check_timeouts(&ns, now);
            fuzz_check_block_map(&ns);
        }
        uint8_t *copy = fuzz_exact_copy(head, len);
        step(&ns, copy, len, now);
        free(copy);
    }
    ns_free(&ns);
    return 0;
}
