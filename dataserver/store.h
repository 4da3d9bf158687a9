/* store.h - the dataserver's disks and the blocks on them.
 *
 * Each data folder (one per disk) holds LOCK (flock'd while we run), SERVER_ID
 * (the server's persistent id, the same in every folder; created on first
 * start), and blocks/. store_open locks every folder, agrees on the server id
 * and opens (recovers) every block found. A folder that cannot be opened
 * fails the start with a clear message. */
#ifndef DS_STORE_H
#define DS_STORE_H

#include "dataserver/block.h"
#include "dataserver/uring.h"

#include <stdint.h>
#include <uv.h>

#define STORE_MAX_DISKS 16
#define STORE_BLOCKS_DIR "blocks" /* DIR/blocks: block and shard files */
#define STORE_SERVER_ID_LEN 32 /* hex chars */

struct store_disk {
    char path[4096];
    int lock_fd;
    int failed;
    uint64_t capacity; /* statvfs of the folder, refreshed by store_refresh */
    uint64_t free;
    uint64_t used;     /* bytes of our block files on it */
};

struct store {
    uv_loop_t *loop;
    struct uring *ring;
    char server_id[STORE_SERVER_ID_LEN + 1];
    int ndisks;
    struct store_disk disks[STORE_MAX_DISKS];
    struct block **blocks; /* open hash table by block id */
    uint32_t nblocks, cap;
    uint64_t capacity_cap; /* --capacity: reported capacity of each folder at most this
                            * (free = capacity - used, within the real free space); 0: none */
};

/* Opens the data folders (creating missing ones). Returns 0 with *out owned
 * by the caller (store_close), IMG_ELOCKED when a folder is in use,
 * IMG_EFORMAT when the folders disagree on the server id, or -errno. */
int store_open(uv_loop_t *loop, char **dirs, int ndirs, struct store **out);

/* Closes every block and the ring and unlocks the folders. NULL-safe. The
 * ring is freed when the loop next runs (uring_close). */
void store_close(struct store *s);

/* Returns the block or NULL. */
struct block *store_get(struct store *s, uint64_t id);

/* Creates a block on the folder with the most free space. Returns 0 with *out
 * (owned by the store), IMG_EEXIST, or an error of block_create. */
int store_create_block(struct store *s, uint64_t id, uint64_t max_size, int primary,
                       const struct block_replica *replicas, int nreplicas, struct block **out);

/* Chooses the non-failed folder with the most free space for a new block
 * and writes its blocks folder into dir. Returns the disk index or -ENOSPC. */
int store_pick_disk(struct store *s, char *dir, size_t n);

/* Adds a block opened elsewhere (block_install_copy) to the table; the store
 * owns it from then on. Returns 0, IMG_EEXIST or -ENOMEM (b stays the
 * caller's). */
int store_adopt_block(struct store *s, struct block *b);

/* Takes block `id` out of the table and returns it (the caller now owns it
 * and closes it), or NULL when it is not here. */
struct block *store_remove_block(struct store *s, uint64_t id);

/* Calls fn for every block. fn must not add or remove blocks. */
void store_foreach(struct store *s, void (*fn)(struct block *b, void *arg), void *arg);

/* Refreshes capacity, free and used of every disk (statvfs). With
 * capacity_cap set, a folder reports min(file system size, capacity_cap) and
 * free = that - used, never above the file system's free space. */
void store_refresh(struct store *s);

#endif
