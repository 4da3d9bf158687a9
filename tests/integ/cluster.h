/* cluster.h - a throw-away imgstore cluster for integration tests.
 *
 * cluster_start() makes a temporary folder (mkdtemp under /tmp), picks free
 * loopback ports, starts one nameserver and N dataservers from the binary
 * folder $IMGSTORE_BIN (default ./build/bin), and waits until the nameserver
 * reports every dataserver "up" and at least one writable block. Each server
 * writes its stdout and stderr to <dir>/log/<name>.log.
 *
 * Safety: every child process is started with PR_SET_PDEATHSIG = SIGKILL, so
 * it dies with the test process even when the test crashes. Call
 * cluster_start() and every restart function from the thread that runs the
 * test (the death signal follows the thread that forked). cluster_stop()
 * stops everything and removes the folder; call it from a Criterion .fini
 * fixture so it also runs after a failed assertion.
 *
 * Keys (docs/security.md): unless opts.insecure, cluster_start writes
 * <dir>/keys (mode 0600: member keys "member1".."member8", one per
 * dataserver, ds[i] using member<i+1>; an operator key "ops", a writer key
 * "app") and one client key file per role (<dir>/member.key of member1,
 * operator.key, writer.key), starts every server with --keys, and sets
 * IMGSTORE_KEY_FILE to the operator key in this process, so every handle
 * it opens and every tool run through cluster_run / cluster_admin has it
 * (remove it with env_del to run a tool without a key).
 *
 * Errors: functions that can fail return 0 or a negative errno; they print
 * one line saying why to stderr, so a test only needs cr_assert_eq(rc, 0). */
#ifndef IMG_TEST_CLUSTER_H
#define IMG_TEST_CLUSTER_H

#include "client/admin.h"
#include "client/imgstore.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define CLUSTER_MAX_DS 8
#define CLUSTER_ADDR_MAX 64
#define CLUSTER_READY_MS 20000 /* deadline for a cluster to become ready */
#define CLUSTER_STOP_MS 5000   /* SIGTERM grace before SIGKILL */
#define CLUSTER_START_ATTEMPTS 3 /* a start whose port was taken meanwhile is tried again */

struct cluster_opts {
    int ndataservers;         /* 0 means 3 */
    int replicas;             /* 0 means 2 */
    uint64_t block_size;      /* 0: the nameserver's default */
    int heartbeat_timeout_ms; /* 0: the nameserver's default */
    int safe_mode_timeout_ms; /* 0: the nameserver's default */
    int disks_per_ds;         /* data folders per dataserver, 0 means 1 */
    /* Extra arguments appended to every dataserver's command line
     * (NULL-terminated; NULL for none). Must outlive the cluster. */
    const char *const *ds_args;
    int ns_http;              /* non-zero: the nameserver also serves HTTP (--http) on a
                               * free port, in ns.http_addr */
    /* Extra arguments appended to the nameserver's command line
     * (NULL-terminated; NULL for none). Must outlive the cluster. */
    const char *const *ns_args;
    int insecure;             /* non-zero: servers run with --insecure, no keys */
    int https;                /* non-zero: every dataserver also serves HTTPS (--https) on
                               * a free port, in ds[i].https_addr; give --tls-cert and
                               * --tls-key in ds_args */
    /* Nameserver addresses put before the nameserver's own in the --ns list
     * of every dataserver, handle (cluster_client, cluster_status) and
     * cluster_admin ("A,B"; NULL for none): dead or standby addresses the
     * callers must go past. Must outlive the cluster. */
    const char *ns_before;
};

/* One server process: its identity survives restarts (same ports, folders). */
struct cluster_proc {
    char name[16];                   /* "ns", "ds1", ... */
    pid_t pid;                       /* 0 when not running */
    char addr[CLUSTER_ADDR_MAX];     /* native 127.0.0.1:PORT */
    char http_addr[CLUSTER_ADDR_MAX]; /* dataservers; the ns with opts.ns_http */
    char https_addr[CLUSTER_ADDR_MAX]; /* dataservers with opts.https */
    char data[512];                  /* data folder(s), comma separated */
    char log[512];
    /* Dataservers: extra arguments for this server alone, appended after
     * opts.ds_args by the next cluster_start_ds (NULL-terminated; NULL for
     * none). Borrowed: must outlive its use. */
    const char *const *args;
};

struct cluster {
    char dir[256]; /* the temporary folder holding everything */
    char bin[512]; /* folder of the binaries */
    struct cluster_opts opts;
    struct cluster_proc ns;
    char ns_list[512]; /* opts.ns_before,ns.addr: the --ns the cluster's callers get */
    struct cluster_proc ds[CLUSTER_MAX_DS];
    int nds;
    int passed; /* set by a test when it ends well: cluster_stop keeps quiet */
    char keys[300];         /* the servers' keys file (empty when insecure) */
    char key_member[300];   /* client key files, one per role */
    char key_operator[300];
    char key_writer[300];
};

/* Starts a cluster as described by opts (NULL for defaults) and waits until it
 * is ready. On success *out is owned by the caller (free with cluster_stop).
 * On failure everything started is stopped, server log tails are printed to
 * stderr and a negative errno is returned (-ETIMEDOUT when not ready). */
int cluster_start(const struct cluster_opts *opts, struct cluster **out);

/* Writes c->keys and the client key files in c->dir and sets
 * IMGSTORE_KEY_FILE to the operator key (cluster_keys.c; called by
 * cluster_start unless opts.insecure). Returns 0 or a negative errno. */
int cluster_write_keys(struct cluster *c);

/* Stops every process (SIGTERM, up to CLUSTER_STOP_MS, then SIGKILL), reaps
 * them and removes the folder. When c->passed is 0, prints the tails of the
 * server logs first. IMGSTORE_KEEP=1 in the environment keeps the folder.
 * NULL-safe. */
void cluster_stop(struct cluster *c);

/* Waits until the nameserver reports at least `nup` servers "up" and at least
 * one writable block, for at most timeout_ms. Returns 0 or -ETIMEDOUT (after
 * printing the last status seen and the log tails). */
int cluster_wait_ready(struct cluster *c, int nup, int timeout_ms);

/* Waits until the nameserver reports exactly `ndown` servers "down".
 * Returns 0 or -ETIMEDOUT. */
int cluster_wait_down(struct cluster *c, int ndown, int timeout_ms);

/* Fetches the cluster status through a fresh handle. *out is freed with
 * imgstore_admin_free_status. Returns 0 or the library's error. */
int cluster_status(const struct cluster *c, Imgstore__ClusterStatusResp **out);

/* Starts (or restarts) dataserver i / the nameserver on its ports and
 * folders. Does not wait for readiness. Returns 0 or a negative errno. */
int cluster_start_ds(struct cluster *c, int i);
int cluster_start_ns(struct cluster *c);

/* Starts one more server process p of the cluster (a second nameserver,
 * say): $bin/argv[0] with argv (NULL-terminated), output to p->log, killed
 * with the test process. Does not wait. p->pid is set; stop it with
 * cluster_signal_proc (cluster_stop does not know it). Returns 0 or a
 * negative errno. */
int cluster_spawn(struct cluster *c, struct cluster_proc *p, const char *const argv[]);

/* Adds dataserver number nds+1 (new ports, one empty data folder, the
 * cluster's ds_args) and starts it; does not wait for it to be up. Returns 0,
 * -ENOSPC when CLUSTER_MAX_DS run already, or a negative errno. */
int cluster_add_ds(struct cluster *c);

/* Sends `sig` to a process and, for SIGKILL and SIGTERM, reaps it (SIGTERM:
 * SIGKILL after CLUSTER_STOP_MS). Returns the waitpid status, or -1 when the
 * process was not running. */
int cluster_signal_proc(struct cluster_proc *p, int sig);

/* Returns 1 when the process is running (not exited, not a zombie). When it
 * has exited, reaps it, prints how it ended and returns 0. */
int cluster_alive(struct cluster_proc *p);

/* Prints the last `lines` lines of every server log to stderr. */
void cluster_dump_logs(const struct cluster *c, int lines);

/* Opens a library handle to the cluster's nameserver; NULL on failure. */
imgstore_t *cluster_client(const struct cluster *c);

/* Uploads len bytes of cluster_fill(seed 7, id len) as image/jpeg through a
 * client of its own; the name in name. Returns 0 or the put's error. */
int cluster_put_sample(const struct cluster *c, size_t len, char name[IMGSTORE_NAME_MAX]);

/* ---- running the command-line tools ------------------------------------- */

struct cluster_run {
    int status;    /* raw waitpid status */
    int exit_code; /* WEXITSTATUS, or 128+signal, or -1 on timeout */
    char *out;     /* captured stdout, NUL-terminated (may contain NULs) */
    size_t out_len;
    char *err; /* captured stderr, NUL-terminated */
    size_t err_len;
};

/* Runs $bin/argv[0] with argv (NULL-terminated), with `env_add` ("K=V"
 * strings, NULL-terminated, may be NULL) added to the environment and
 * `env_del` names removed (may be NULL). Captures stdout and stderr; kills
 * the command after timeout_ms. Returns 0 when the command ran (whatever its
 * exit code) and fills *r (free with cluster_run_free), or a negative errno
 * when it could not be started. */
int cluster_run(const struct cluster *c, const char *const argv[], const char *const env_add[],
                const char *const env_del[], int timeout_ms, struct cluster_run *r);

/* Frees the buffers of *r. NULL-safe. */
void cluster_run_free(struct cluster_run *r);

/* Runs `ds-admin --ns <c->ns_list> ARGS...` (arguments up to the first
 * NULL, at most CLUSTER_ADMIN_MAX_ARGS) with IMGSTORE_NS removed from the
 * environment, like cluster_run. Returns the exit code with *r filled (free
 * with cluster_run_free), or a negative errno when it could not run
 * (printed). */
#define CLUSTER_ADMIN_MAX_ARGS 16
int cluster_admin(const struct cluster *c, int timeout_ms, struct cluster_run *r, ...);

/* cluster_admin with the arguments in ap, after `first` (which may be NULL:
 * no argument). */
int cluster_adminv(const struct cluster *c, int timeout_ms, struct cluster_run *r,
                   const char *first, va_list ap);

/* ---- small helpers shared by the tests ---------------------------------- */

/* Fills buf with len pseudo-random bytes that depend only on (seed, id). */
void cluster_fill(void *buf, size_t len, uint64_t seed, uint64_t id);

/* A splitmix64 step: returns the next value of *state. */
uint64_t cluster_rand(uint64_t *state);

/* Writes len bytes to path (created or truncated). Returns 0 or -errno. */
int cluster_write_file(const char *path, const void *buf, size_t len);

/* Reads a whole file; *buf is malloc'd. Returns 0 or -errno. */
int cluster_read_file(const char *path, void **buf, size_t *len);

/* Connects a blocking TCP socket to "HOST:PORT" with send/receive timeouts of
 * timeout_ms. Returns the fd or a negative errno. */
int cluster_connect(const char *addr, int timeout_ms);

/* Sends all len bytes on a blocking socket (EINTR retried). Returns 0, or -1
 * when the peer closed or the send failed (a server may close on a test:
 * callers that allow it ignore the result). */
int cluster_send_all(int fd, const void *buf, size_t len);

/* GET /metrics from a server's HTTP address (http_addr) and returns the
 * value of one series, named with its exact label text (for instance
 * `imgstore_ds_requests_total{op="read",status="ok"}`); -1 when the server
 * does not answer or has no such series. */
double cluster_metric(const char *http_addr, const char *series);

/* GET `path` from a server's HTTP address: the body (malloc'd, caller
 * frees) of a 200 answer, or NULL. */
char *cluster_http_body(const char *http_addr, const char *path);

/* The status code of GET /name on an HTTP origin (one connection, 1 s to
 * answer), or -1 when it did not answer. */
int cluster_get_status(const char *http_addr, const char *name);

/* The numbers that follow each `tag` in the log at path (e.g. the
 * nameserver's "journaled in N us"): how many (at most 4096), their median
 * and their maximum (0 when none). */
int cluster_log_latencies(const char *path, const char *tag, uint64_t *median, uint64_t *max);

/* Milliseconds on a monotonic clock. */
int64_t cluster_now_ms(void);

/* The folder of the binaries: $IMGSTORE_BIN or ./build/bin. */
const char *cluster_bin_dir(void);

/* ---- test data ---------------------------------------------------------- */

/* Returns the seed of a test's data: $IMGSTORE_SEED when set, otherwise a
 * fresh one. Prints it so a failure can be replayed. */
uint64_t cluster_seed(const char *test);

/* Returns a size in [1, max], log-uniformly distributed. */
uint32_t cluster_log_size(uint64_t *rng, uint32_t max);

/* Uploads file `id` of the data set (size bytes of cluster_fill(seed, id))
 * with up to `attempts` calls of imgstore_put. Returns 0 with name filled,
 * or the last error (printed). */
int cluster_put_file(imgstore_t *h, uint64_t seed, uint64_t id, size_t size,
                     char name[IMGSTORE_NAME_MAX], int attempts);

/* Reads `name` (from any replica, or only from ds_addr when not NULL) and
 * checks it is file `id` of the data set. Returns 0, the library's error, or
 * -EILSEQ when the bytes differ (each failure is printed). */
int cluster_check_file(imgstore_t *h, const char *name, const char *ds_addr, uint64_t seed,
                       uint64_t id, size_t size);

/* Checks files 0..n-1 of a data set through every replica the nameserver
 * lists: a live file (deleted[i] == 0) byte-identical on each, a deleted one
 * reading as deleted or missing. Prints each failure as "[tag] when: ...".
 * Returns the number of failures (an unreachable cluster counts as one). */
int cluster_check_set(const struct cluster *c, uint64_t seed, int n,
                      const char (*names)[IMGSTORE_NAME_MAX], const uint32_t *sizes,
                      const int *deleted, const char *tag, const char *when);

/* ---- shared by several tests' checks ------------------------------------- */

/* Checks file `id` of a data set (stored as `name`, `size` bytes) through
 * every replica the nameserver lists: byte-identical on each; with
 * want_replicas > 0, exactly that many listed. Prints each failure ("[tag]
 * when: file ID: stat RC[, N replicas]"; when may be NULL). Returns the
 * number of failures. */
int cluster_check_replicas(imgstore_t *h, const char *name, uint64_t seed, uint64_t id,
                           size_t size, int want_replicas, const char *tag, const char *when);

/* Reads files from .. to-1 of a data set through h (any replica) and checks
 * their bytes (cluster_check_file). Returns the number of failures. */
int cluster_check_range(imgstore_t *h, uint64_t seed, int from, int to,
                        const char (*names)[IMGSTORE_NAME_MAX], const uint32_t *sizes);

/* The index in c->ds of the dataserver with native address addr, or -1. */
int cluster_ds_index(const struct cluster *c, const char *addr);

/* The path of block `block_id`'s file in dataserver ds's data folder (a
 * dataserver of one data folder) into out (n bytes). */
void cluster_block_path(const struct cluster *c, int ds, uint64_t block_id, char *out, size_t n);

/* ---- etcd (cluster_etcd.c) ------------------------------------------------------ */

#define CLUSTER_ETCD_BIN "/usr/bin/etcd" /* Debian's etcd-server */

/* A free loopback port (bound, read, closed), or -1. */
int cluster_free_port(void);

/* Starts the etcd member `name` listening on client and peer (HOST:PORT,
 * chosen by the caller) with its data and log in the folder dir, as a
 * child killed when this process dies; *pid is its pid. Returns 0 once it
 * answers /health, -1 (no child left, *pid 0) when it exited (a port
 * taken meanwhile) or did not answer within 15 s. */
int cluster_etcd_run(const char *dir, const char *name, const char *client, const char *peer,
                     pid_t *pid);

/* ---- Varnish (cluster_varnish.c) ------------------------------------------------ */

/* Starts varnishd in the foreground as a child (killed when this process
 * dies) in front of the origin on 127.0.0.1:backend_port, on a free
 * loopback port written to listen; its VCL caches for 1 s, keeps objects
 * for revalidation, marks hits (X-Cache) and 304s from the origin
 * (X-Was-304); vcl_recv (may be NULL) is the body of its vcl_recv. Its
 * files and log are under dir. Returns the pid, or -1. */
pid_t cluster_varnish_start(const char *dir, const char *backend_port, const char *vcl_recv,
                            char *listen, size_t listen_size);

/* ---- Proxy (cluster_proxy.c) ---------------------------------------------------- */

/* A TCP forwarder on a free loopback port (written to addr) to target
 * (HOST:PORT), in a thread of this process. Give its address to one server
 * as the other's (e.g. a dataserver's --ns) to cut that path alone. NULL
 * when it cannot listen. */
struct cluster_proxy *cluster_proxy_start(const char *target, char *addr, size_t n);

/* cluster_proxy_start listening on a free port of the IPv4 address host
 * (for instance the host end of a veth pair) instead of loopback. */
struct cluster_proxy *cluster_proxy_start_on(const char *host, const char *target, char *addr,
                                             size_t n);

/* cut != 0: every forwarded connection is closed and new ones are closed
 * at once (a partition of the path); 0: forwards again. */
void cluster_proxy_cut(struct cluster_proxy *p, int cut);

/* Closes everything and frees p (NULL is fine). */
void cluster_proxy_stop(struct cluster_proxy *p);

#endif
