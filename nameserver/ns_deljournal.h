/* ns_deljournal.h - the nameserver's delete journal (docs/nameserver.md,
 * "Delete journal"): the second durable home of a tombstone that a block's
 * primary took while its replica set was down to itself.
 *
 * Data layer: a file DIR/deletes.journal (append-only, fixed-size records
 * each with a CRC32C, fdatasync'd before an append is reported durable, many
 * appends per fdatasync) and the same entries in RAM per block. It decides
 * nothing: ns_delnote.c (policy) says what to append, what is covered and
 * when a copy holds every entry. Runs on the loop's thread; the write and
 * fdatasync run on libuv's thread pool. Without a loop (unit tests) an
 * append is written and synced before it returns. With --etcd the entries
 * are kept in etcd too (ns_etcd_dj.c): a new leader merges them in
 * (ns_dj_merge) and pruned ones are reported through on_drop. Entries of
 * erasure-coded blocks (kind NS_DJ_KIND_EC, ns_ecdj.c) share the file and
 * the limits but live in their own table, so the replicated policy never
 * sees them. */
#ifndef IMG_NS_DELJOURNAL_H
#define IMG_NS_DELJOURNAL_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define NS_DJ_FILE "deletes.journal"
#define NS_DJ_REC_SIZE 104          /* bytes of one record (docs/nameserver.md) */
#define NS_DJ_MAGIC 0x314a4449u     /* "IDJ1" little-endian: a replicated block's record */
#define NS_DJ_MAGIC2 0x324a4449u    /* "IDJ2": a record with a kind byte (offset 101) */
#define NS_DJ_KIND_REPL 0           /* a sole member's tombstone (written as IDJ1) */
#define NS_DJ_KIND_EC 1             /* a file of an erasure-coded block (IDJ2) */
#define NS_DJ_EC_SHARDS 16          /* shard indexes tracked per erasure-coded block */
#define NS_DJ_ID_MAX 64             /* sender id bytes kept in a record */
#define NS_DJ_MAX_PER_BLOCK 65536   /* entries of one block; more: IMG_EUNAVAIL */
#define NS_DJ_MAX_ENTRIES (1u << 22) /* entries in all; more: IMG_EUNAVAIL */
#define NS_DJ_HAS_MAX 4             /* servers known to hold every entry of a block */
#define NS_DJ_COMPACT_MIN 64        /* records in the file before a rewrite is considered */

/* One journaled tombstone. */
struct ns_dj_entry {
    uint32_t seq, cookie;
    uint64_t tail_after;   /* the primary's tail with the tombstone appended (0: EC) */
    uint32_t set_version;  /* the primary's replica-set version (0: EC) */
    uint8_t kind;          /* NS_DJ_KIND_* (in the record) */
    uint16_t shards;       /* EC, RAM only: bit i, shard i's holder (ec_holder[i]) has it */
};

/* The entries of one block (RAM), and which servers hold all of them. */
struct ns_dj_block {
    uint64_t block_id;
    struct ns_dj_entry *v;   /* owned, in journal order */
    size_t n, cap;
    uint64_t gen;            /* bumped by every entry added */
    char has[NS_DJ_HAS_MAX][NS_DJ_ID_MAX + 1]; /* servers holding every entry */
    unsigned nhas;
    /* Policy state (ns_delnote.c): APPLY_TOMBSTONES in flight, by server idx. */
    uint16_t applying[NS_DJ_HAS_MAX];
    unsigned napplying;
    uint64_t retry_ms;       /* loop time before which no APPLY is sent again */
    /* Erasure-coded blocks (ns_ecdj.c): the server each shard's bits are
     * about (a bit is cleared when the shard's holder changes). */
    uint16_t ec_holder[NS_DJ_EC_SHARDS];
};

/* An append waiting for its fdatasync (ns_deljournal.c). */
struct ns_dj_pending;

typedef void (*ns_dj_cb)(int status, void *arg);

struct ns_dj {
    char path[PATH_MAX];      /* DIR/deletes.journal */
    int fd;                   /* -1 when closed */
    uint64_t end;             /* bytes of whole records in the file */
    struct ns_dj_block *blocks; /* owned; sorted by block id (binary search: the
                                 * gate looks every reported block up) */
    size_t nblocks, cap;
    struct ns_dj_block *ec_blocks; /* the same for erasure-coded blocks' entries
                                    * (kind NS_DJ_KIND_EC; owned, sorted) */
    size_t nec, ec_cap;
    size_t live;              /* entries in RAM */
    size_t file_recs;         /* records in the file, dropped ones included */
    struct ns_dj_pending *pend_head, *pend_tail; /* waiting for the next batch */
    struct ns_dj_pending *batch; /* being written */
    int writing;
    int closing;              /* ns_dj_close ran: late batches answer -ECANCELED */
    uv_work_t work;
    int work_rc;
    uint8_t *work_buf;
    size_t work_len;
    uint64_t work_off;
    /* Called for each entry leaving RAM by ns_dj_drop_covered or
     * ns_dj_drop_block (the etcd copy is deleted too; NULL: none). */
    void (*on_drop)(void *arg, uint64_t block_id, const struct ns_dj_entry *e);
    void *on_drop_arg;
    /* counters (metrics, tests) */
    uint64_t appends, syncs, skipped_crc, compactions;
};

/* Encodes one record (out: NS_DJ_REC_SIZE bytes, CRC included): IDJ1 for a
 * replicated block's entry (as before kinds existed), IDJ2 with the kind
 * byte for an erasure-coded block's. */
void ns_dj_rec_encode(uint8_t *out, uint64_t block_id, const struct ns_dj_entry *e,
                      const char *sender);

/* Decodes and checks one record (CRC, magic, id length, block id not 0; for
 * IDJ2 a known kind, the reserved bytes zero, and an EC entry's tail_after
 * and set_version 0): 0 with the outputs filled (e->shards 0), or -1. Pure:
 * any thread may call it. */
int ns_dj_rec_decode(const uint8_t *in, uint64_t *block_id, struct ns_dj_entry *e,
                     char sender[NS_DJ_ID_MAX + 1]);

/* Adds an entry known durable elsewhere (the etcd copy a former leader
 * wrote) to RAM only, unless block_id already has an entry of that seq.
 * Returns 1 when added, 0 when known, IMG_EUNAVAIL when the block or the
 * journal is full, -ENOMEM. */
int ns_dj_merge(struct ns_dj *dj, uint64_t block_id, const struct ns_dj_entry *e,
                const char *sender);

/* Opens (creating when missing) DIR/deletes.journal and loads every record
 * into RAM. A torn tail (a partial record at the end) is cut off; a record
 * whose CRC or magic is wrong is skipped with a WARN (counted in
 * skipped_crc). Returns 0 or a negative errno (then nothing to close). */
int ns_dj_open(struct ns_dj *dj, const char *dir);

/* Appends one entry. With a loop: queued; the queue is written and
 * fdatasync'd in one go when no batch is being written (group commit); cb
 * gets 0 once durable (the entry is then in RAM) or the error. Without a
 * loop: written, synced and added before return, cb called. The sender's id
 * (the server holding the tombstone) is kept in the record. Returns 0 (cb
 * will be called or was called), IMG_EUNAVAIL when the block or the journal
 * is full, -ENOMEM (cb not called). */
int ns_dj_append(struct ns_dj *dj, uv_loop_t *loop, uint64_t block_id,
                 const struct ns_dj_entry *e, const char *sender, ns_dj_cb cb, void *arg);

/* Returns the entries of block_id, or NULL when it has none. Valid until the
 * next append, drop or compaction. ns_dj_get: replicated entries only;
 * ns_dj_get_ec: erasure-coded ones (the two never mix). */
struct ns_dj_block *ns_dj_get(struct ns_dj *dj, uint64_t block_id);
struct ns_dj_block *ns_dj_get_ec(struct ns_dj *dj, uint64_t block_id);

/* Drops the erasure-coded entries of block_id whose shards bits include all
 * of `all` (every shard's holder has them). Returns how many were dropped;
 * a block left without entries is forgotten. */
size_t ns_dj_ec_drop_held(struct ns_dj *dj, uint64_t block_id, uint16_t all);

/* Non-zero when server `id` is known to hold every entry of jb. */
int ns_dj_holds_all(const struct ns_dj_block *jb, const char *id);

/* Records that server `id` holds every entry of jb (no-op when listed or the
 * list is full). */
void ns_dj_add_holder(struct ns_dj_block *jb, const char *id);

/* Drops the entries of block_id whose tail_after <= covered. Returns how
 * many were dropped; a block left without entries is forgotten. */
size_t ns_dj_drop_covered(struct ns_dj *dj, uint64_t block_id, uint64_t covered);

/* Sets the tail_after of every entry of block_id to `tail` (RAM only): the
 * block was compacted and its offsets changed. */
void ns_dj_rebase(struct ns_dj *dj, uint64_t block_id, uint64_t tail);

/* Forgets every entry of block_id (the block was deleted). */
void ns_dj_drop_block(struct ns_dj *dj, uint64_t block_id);

/* Rewrites the file with the live entries only (temp file, fsync, rename,
 * fsync of the folder) when most of it is dropped and no batch is being
 * written. Returns 1 when rewritten, 0 when not needed, or a negative errno
 * (the old file stays). */
int ns_dj_compact(struct ns_dj *dj);

/* Closes the file and frees everything. Call after the loop ran dry (no
 * batch in flight). Safe on a zeroed or closed journal. */
void ns_dj_close(struct ns_dj *dj);

#endif
