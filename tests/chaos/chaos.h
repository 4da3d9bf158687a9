/* chaos.h - what the files of the chaos driver share: its constants, the
 * fault kinds, the files of the load and their states, the invariants, and
 * the state of the run (one driver process, so plain globals, each defined
 * in the file that owns it; see the file comments below).
 *
 *   chaos.c   main, the load workers, the final checks, the report;
 *   faults.c  fault injection: the kinds, the schedule, the damage done;
 *   env.c     the environment: network namespace, tmpfs data folder,
 *             memory sampling, ds-admin helpers, starting a dataserver;
 *   avail.c   availability per fault kind (invariant 7);
 *   ha.c      the HA mode (CHAOS_HA=1): etcd, a second nameserver, the HA
 *             fault kinds, invariant 8;
 *   ha_net.c  the HA mode's network namespaces (one per nameserver) and the
 *             partition of the leader, invariant 9;
 *   ec.c      the erasure-coding mode (CHAOS_EC=1): 4+2 on seven
 *             dataservers, encodings under the load, the EC fault kinds,
 *             invariants 10 and 11.
 *
 * The driver links tests/integ/cluster.c and the client library; it may call
 * those and nothing else of the project. */
#ifndef IMG_TEST_CHAOS_H
#define IMG_TEST_CHAOS_H

#include "tests/integ/cluster.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

#define CHAOS_DEFAULT_SECONDS 60
#define CHAOS_NDS 3
#define CHAOS_REPLICAS 2
#define CHAOS_BLOCK_SIZE (4u << 20) /* small blocks: sealing and new blocks happen */
#define CHAOS_HB_TIMEOUT_MS 3000
#define CHAOS_SAFE_MODE_MS 5000
#define CHAOS_WORKERS 4
#define CHAOS_MAX_FILES (256u << 10)
#define CHAOS_MAX_SIZE (128u << 10)
#define CHAOS_FAULT_GAP_MIN_MS 1500 /* quiet time between faults */
#define CHAOS_FAULT_GAP_MAX_MS 5000
#define CHAOS_DOWN_MIN_MS 300       /* how long a killed or frozen server stays out */
#define CHAOS_DOWN_MAX_MS 4000
#define CHAOS_RECOVER_MS 40000      /* deadline for the cluster to be whole again */
#define CHAOS_ROUND_GRACE_MS 180000 /* the load may go on this long to finish a round */
#define CHAOS_FLIPS 8               /* bytes flipped per damaged block */
#define CHAOS_FINAL_ATTEMPTS 5      /* reads of one file at the end before giving up */
#define CHAOS_MAX_DAMAGED 256
#define CHAOS_DELETE_SHARE 5        /* at most one acknowledged upload in 5 is deleted */
#define CHAOS_HTTP_SAMPLE 20        /* one file in this many is also read over HTTP */
#define CHAOS_TASK_WAIT_MS 20000    /* how long to wait for a copy / compaction to run */
#define CHAOS_SLOW_COPY_MB 1        /* copy_rate (MB/s) while aiming at a running task */
#define CHAOS_TMPFS_MB 96           /* size of the data folder that fills up */
#define CHAOS_FULL_FREE (8u << 20)  /* below this much free space it counts as full */
#define CHAOS_MEM_WARMUP_MS 20000   /* RSS after this much of a process's life is its base */
#define CHAOS_MEM_SLACK_KB (64 * 1024)
/* Servers built with ASan (make asan) hold freed memory in a quarantine of
 * up to 256 MiB (ASan's quarantine_size_mb) before reusing it: their RSS
 * grows by that much with no leak, so the bound allows it. */
#if defined(__SANITIZE_ADDRESS__)
#define CHAOS_MEM_SAN_KB (256 * 1024)
#else
#define CHAOS_MEM_SAN_KB 0
#endif
#define CHAOS_CUT_MIN_MS 1000       /* how long a partition lasts */
#define CHAOS_CUT_MAX_MS 8000
#define NS_COPY_RATE_MB 50          /* the nameserver's defaults, restored after a fault */
#define NS_COMPACT_PCT 30
#define CHAOS_NS_AWAY_MS 60000      /* nameserver away (capped to half the run) */
#define CHAOS_CAP_ARG "1M"          /* --capacity of the server made full */
#define CHAOS_CAP_MIN_MS 3000       /* how long it stays full */
#define CHAOS_CAP_MAX_MS 10000
#define CHAOS_CLIENT_TIMEOUT_MS 8000 /* the load's handle: whole-operation deadline */
#define CHAOS_CLIENT_IO_TIMEOUT_MS 2000
#define CHAOS_HA_TTL_MS 2000        /* HA mode: the leader's lease (--etcd-ttl-ms) */
#define CHAOS_EC_NDS 7              /* EC mode: 4+2 needs six servers, one spare */
#define CHAOS_EC_ENCODE_MS 2000     /* EC mode: `ec encode --all-sealed` this often */
#define CHAOS_EC_SCRUB_MB 50        /* EC mode: scrub_rate, so damaged shards are found */
#define CHAOS_EC_LONG_MS 25000      /* EC mode: longest wait for a rebuild with two down */
#define CHAOS_EC_WHOLE_MS 90000     /* EC mode: deadline for every stripe whole at the end */

enum fault {
    F_KILL_DS, F_KILL_NS, F_STOP_DS, F_FLIP_DS, F_FLIP_IDX, F_KILL_COPY, F_KILL_COMPACT,
    F_VANISH_DIR, F_PARTITION, F_ROUND, /* kinds above: the shuffled rounds */
    F_POWER_DS = F_ROUND, F_POWER_ALL, F_FULL_DISK,
    /* With CHAOS_AVAIL_FAULTS=1 (issue 20), in the shuffled rounds too: */
    F_HDR_DAMAGE, F_CAPACITY, F_NS_AWAY,
    /* With CHAOS_HA=1 (ha.c), the only kinds: */
    F_HA_KILL_LEADER, F_HA_STOP_LEADER, F_HA_ETCD, F_HA_CUT_ETCD, F_HA_PARTITION,
    /* With CHAOS_EC=1 (ec.c), with F_KILL_DS and F_KILL_NS: */
    F_EC_KILL_TWO, F_EC_FLIP_SHARD, F_KINDS
};
extern const char *fault_names[F_KINDS];

enum state { S_FREE, S_PUTTING, S_ACKED, S_PUT_FAILED, S_DELETING, S_DELETED, S_DEL_FAILED };

struct file {
    char name[IMGSTORE_NAME_MAX];
    uint32_t size;
    uint8_t state;
    uint64_t deleted_at; /* op clock when the delete was acknowledged */
};

struct inv {
    const char *what;
    atomic_ulong passed, failed;
};

/* The most frequent errors of failed operations, for the report. */
#define CHAOS_ERR_KINDS 8
struct errs {
    int code[CHAOS_ERR_KINDS];
    unsigned long n[CHAOS_ERR_KINDS];
};

/* ---- chaos.c: the run, the load, the invariants --------------------------- */

extern struct cluster *C;      /* the cluster (owned by main) */
extern uint64_t seed;          /* the run's seed: data, mix, faults */
extern imgstore_t *H;          /* the client handle shared by the workers */
extern struct file *files;     /* CHAOS_MAX_FILES entries, under `lock` */
extern atomic_uint nfiles;
extern pthread_mutex_t lock;
extern int64_t load_start_ms;  /* when the load and the faults began */
extern struct inv inv_uploads, inv_deletes, inv_bytes, inv_servers, inv_http, inv_memory;

/* A line to stderr with the time since the driver started. */
void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* say() for a failed invariant: also kept for the end of the report. */
void fail_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void sleep_ms(int ms);
/* A number in [lo, hi] from *rng. */
int rand_between(uint64_t *rng, int lo, int hi);
/* Invariant 4: every server not taken down by a fault is running (a dead
 * one is counted and restarted). */
void check_servers(void);
/* Counts one failure with error rc in e (under `lock`). */
void count_err(struct errs *e, int rc);
/* One line "chaos: WHAT failed with: ERROR N; ..." */
void print_errs(const char *what, const struct errs *e);

/* ---- faults.c: fault injection -------------------------------------------- */

extern int nkinds;                                /* kinds of the shuffled rounds */
extern int avail_faults; /* CHAOS_AVAIL_FAULTS=1: header damage, capacity, ns away */
extern int ns_away_ms;   /* how long the nameserver stays away (F_NS_AWAY) */
extern unsigned long faults[F_KINDS];             /* injected, per kind */
extern int killed_by_us[CLUSTER_MAX_DS + 2]; /* CLUSTER_MAX_DS: the nameserver, +1: ns2 (HA) */
extern unsigned long copy_hits, copy_misses, compact_hits, compact_misses;

/* The slot of a server in killed_by_us (and the memory samples). */
int proc_slot(const struct cluster_proc *p);
/* Non-zero when fault kind k is injected in this run's rounds. */
int kind_in_use(int k);
/* Runs the fault schedule until end_ms (and past it until the first round
 * is complete, at most CHAOS_ROUND_GRACE_MS). */
void run_faults(int64_t end_ms, uint64_t *rng);

/* ---- env.c: namespace, tmpfs, memory, ds-admin ------------------------------ */

extern int part_ds;        /* the dataserver in its own network namespace, -1: none */
extern char veth_host[16]; /* the host end of its veth pair */
extern int full_disk_ds;   /* dataserver on the tmpfs, -1: none */
extern int64_t full_since_ms;
extern uint64_t full_min_free;

/* Runs a shell command; returns its exit status (0 when it succeeded). */
int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Starts (or restarts) dataserver i, in its namespace for part_ds. */
int start_ds(int i);
/* `ds-admin --ns NS ARGS...`: its stdout (malloc'd) when it exited 0, else
 * NULL. */
char *admin(const char *a1, const char *a2, const char *a3, const char *a4);
void admin_set(const char *key, unsigned long v);
/* The server id of dataserver i into out; 0 or -1. */
int server_id(int i, char *out, size_t n);
/* A running background task of `kind`: 1 with its block and servers, or 0. */
int running_task(const char *kind, unsigned long long *block, int *src, int *dst);
/* Invariant 6: samples (between faults) and the final check and figures. */
void mem_sample(void);
void mem_report(void);
/* The data folder that fills up: 0 when dataserver i's folder is now a
 * tmpfs, -1 when skipped (a line says why). */
int full_disk_setup(int i);
void full_disk_sample(void);
void full_disk_teardown(void);
/* The network namespace of dataserver i: 0, -1 (skipped, a line says why)
 * or -2 (the cluster did not come back). */
int partition_setup(int i);
void partition_teardown(void);
/* Replaces the host of "HOST:PORT" (addr, n bytes) by `host`. */
void set_host(char *addr, size_t n, const char *host);

/* A network namespace joined to the host by a veth pair: the host end
 * (`veth`) at 10.78.net.1/24, the inner end eth0 at 10.78.net.2/24, and a
 * fallback route making 10.78.net.0/24 unreachable while the host end is
 * down. */
struct chaos_netns {
    char name[32]; /* `ip netns` name, "" when none */
    char veth[16]; /* the host end */
    unsigned net;  /* 0 until the fallback route is set */
    int fd;        /* /run/netns/NAME, -1 when none */
};
/* Makes it (route: a default route inside via the host end, so the inside
 * reaches every host address). 0, or -1 with *why (a static string) and
 * nothing left behind. */
int netns_make(struct chaos_netns *n, const char *name, const char *veth, unsigned net,
               int route, const char **why);
/* Removes what netns_make made (safe on a zeroed one with fd -1). */
void netns_drop(struct chaos_netns *n);
/* Runs fn(arg) with the calling thread in n (a process forked there lives
 * there), then back in the host's; fn's result. */
int netns_run(const struct chaos_netns *n, int (*fn)(void *), void *arg);

/* ---- avail.c: availability per fault kind (invariant 7) -------------------- */

enum avail_op { A_READ, A_DELETE, A_UPLOAD, A_OPS };

/* What was going on when an operation began (avail_start), for avail_end. */
struct avail_mark {
    int fault;               /* the fault in progress, -1: none */
    unsigned long fault_seq; /* faults begun so far */
    unsigned long ns_seq;    /* odd: the nameserver was down */
    int64_t start_ms;        /* when it began */
};

extern struct inv inv_avail;

/* A fault begins (before its injection) / ends (the cluster is whole again). */
void avail_fault_begin(enum fault kind);
void avail_fault_end(void);
/* The nameserver process goes down (1: killed by a fault) or is back (0). */
void avail_ns_down(int down);
/* Marks the start of an operation / counts its end with its result rc. */
void avail_start(struct avail_mark *m);
void avail_end(const struct avail_mark *m, enum avail_op op, int rc, const char *name);
/* The table per fault kind; with strict 0, also invariant 7 as a report line
 * (with strict 1 it is one of the invariants, printed by chaos.c). */
void avail_report(int strict);

/* ---- ha.c: the HA mode (CHAOS_HA=1) -------------------------------------------- */

extern int ha_on;                  /* the HA mode runs */
extern struct cluster_proc ha_ns2; /* the second nameserver */
extern struct inv inv_epochs;      /* invariant 8 */

/* Before cluster_start: starts etcd and sets o's nameserver options. 0, 1
 * when skipped (etcd not installed; a line says so) or -1. */
int ha_setup(struct cluster_opts *o);
/* Starts (or restarts) ns2. 0 or an error. */
int ha_start_ns2(void);
/* Injects one HA fault kind (F_HA_*). */
void ha_inject(enum fault kind, uint64_t *rng);
/* Invariant 8, from the nameservers' and dataservers' logs. */
void ha_check_epochs(void);
/* Stops etcd and removes its folder. */
void ha_teardown(void);
/* Restarts etcd empty on its ports, its proxies listening on host_ns
 * (ns's) and host_ns2 (ns2's). 0 or -1 (said). */
int ha_etcd_reset(const char *host_ns, const char *host_ns2);
/* 1 when the nameserver p leads (it answers CLUSTER_STATUS itself). */
int ha_leads(const struct cluster_proc *p);
/* The nameserver that leads, waiting up to 10 s; NULL when none. Its epoch
 * in *epoch when not NULL (0 when unknown). */
struct cluster_proc *ha_leader(int64_t *epoch);

/* ---- ha_net.c: the nameservers' network namespaces (HA mode) ------------------ */

extern int ha_net_on;         /* the nameservers run in namespaces of their own */
extern struct inv inv_cutoff; /* invariant 9 */

/* Moves the HA cluster onto veth addresses, each nameserver in its own
 * namespace (etcd restarted empty, the folders emptied). 0, -1 (skipped,
 * one line says why) or -2 (the cluster did not come back). */
int ha_net_setup(void);
void ha_net_teardown(void);
/* Starts (or restarts) nameserver p (C->ns or ha_ns2), inside its
 * namespace when ha_net_setup made them. 0 or an error. */
int ha_net_start_ns(struct cluster_proc *p);
/* F_HA_PARTITION: the leader's veth down for a while, then up. */
void ha_net_partition(uint64_t *rng);
/* Invariant 9 for the leader `old` (of epoch old_epoch) cut off from
 * wall-clock ms cut_wall_ms to up_wall_ms (from etcd alone, or from
 * everything): with long (the cut outlasted the TTL), it logged "stopped
 * leading" within the TTL, and with want_other too, the other nameserver
 * logged leading in a higher epoch before the cut ended; in every case,
 * once back it follows (logs the other as leader in a higher epoch) or
 * leads again (nobody took over), within 3 TTLs. Figures kept for the
 * report. */
void ha_check_cutoff(enum fault kind, const struct cluster_proc *old, int64_t old_epoch,
                     int64_t cut_wall_ms, int64_t up_wall_ms, int long_cut, int want_other);
/* The figures of the cut-off leaders (report). */
void ha_cutoff_report(void);
/* Wall-clock ms (the servers' log timestamps are UTC wall clock). */
int64_t wall_ms(void);

/* ---- ec.c: the erasure-coding mode (CHAOS_EC=1) ------------------------------- */

extern int ec_on;                        /* the EC mode runs */
extern struct inv inv_stripes, inv_factor; /* invariants 10 and 11 */

/* Before cluster_start: CHAOS_EC_NDS dataservers. */
void ec_setup(struct cluster_opts *o);
/* Once the cluster and H are up: `set ec 4+2`, the scrub rate, the encoder
 * thread. 0 or -1. */
int ec_start(void);
void ec_stop_encoder(void);
/* Injects one EC fault kind (F_EC_*). */
void ec_inject(enum fault kind, uint64_t *rng);
/* At the end: waits until every stripe is whole (CHAOS_EC_WHOLE_MS), then
 * checks invariants 10 and 11; the mode's figures. */
void ec_wait_whole(void);
void ec_check(void);
void ec_report(void);

#endif
