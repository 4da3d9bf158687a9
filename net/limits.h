/* limits.h - per-address bookkeeping of the servers' ports, bounded in
 * memory: how many connections a port holds in all and per peer address
 * (struct conn_gate, used by the native port in conn.c and the HTTP core
 * in http_server.c), and a token bucket per peer address (struct
 * addr_buckets, the HTTP origin's slowing of 404 guessers).
 *
 * An address is the peer's IP address without its port (IPv4 and IPv6).
 * Both tables are hash tables of a bounded size: a gate holds one entry per
 * address with an open connection (so at most max_total entries); the
 * buckets keep at most `max_entries` addresses, forgetting the one used
 * least recently first.
 *
 * A set of networks (struct addr_set, "ADDR[/BITS],..." from the command
 * line) says which peers a rule leaves alone: the origin's CDN shields,
 * never slowed by the 404 buckets.
 *
 * Threading: one loop thread per table. Calls base/ only. */
#ifndef IMG_NET_LIMITS_H
#define IMG_NET_LIMITS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* The default caps of every port (docs/operations.md, "Limits"). */
#define LIMITS_MAX_CONNS 4096         /* connections of one port in all */
#define LIMITS_MAX_CONNS_PER_ADDR 256 /* connections of one port from one address */

struct gate_entry;
struct bucket_entry;

/* Connection counts of one listening port. Zero-initialise it, set the two
 * caps (0: no cap), free with conn_gate_free. */
struct conn_gate {
    uint32_t max_total;
    uint32_t max_per_addr;
    uint32_t open;             /* connections counted now */
    uint64_t refused_total;    /* refused: the port was full */
    uint64_t refused_per_addr; /* refused: their address was at its cap */
    /* The table (the module's). */
    struct gate_entry **slots;
    size_t nslots;
};

/* Counts a new connection from `ss`. Returns 0 (counted: call
 * conn_gate_leave once when it closes), or 1 when the port is full, 2 when
 * the address is at its cap, -ENOMEM (nothing counted in either case but
 * the refusal counters). */
int conn_gate_enter(struct conn_gate *g, const struct sockaddr_storage *ss);

/* Uncounts a connection counted by conn_gate_enter. */
void conn_gate_leave(struct conn_gate *g, const struct sockaddr_storage *ss);

/* Frees the table (the counts are forgotten). */
void conn_gate_free(struct conn_gate *g);

/* A token bucket per address: `rate` tokens a second, at most `burst`; an
 * address not in the table has a full bucket. Zero-initialise it, set the
 * three parameters (rate 0: no limit, every call allows), free with
 * addr_buckets_free. */
struct addr_buckets {
    double rate;
    double burst;
    size_t max_entries; /* 0: 4096 */
    uint64_t limited;   /* times an address found its bucket empty (addr_buckets_allows) */
    uint64_t emptied;   /* times a bucket went empty (addr_buckets_take) */
    uint64_t taken;     /* tokens taken */
    /* The table and its recency list (the module's). */
    struct bucket_entry **slots;
    size_t nslots, n;
    struct bucket_entry *lru_head, *lru_tail;
};

/* Returns 1 when `ss` has a token left at now_ms (nothing is taken), 0 when
 * its bucket is empty (counted in `limited`); *retry_s, if not NULL, gets
 * the whole seconds until a token is back (at least 1). */
int addr_buckets_allows(struct addr_buckets *b, const struct sockaddr_storage *ss,
                        uint64_t now_ms, unsigned *retry_s);

/* Takes one token of `ss` at now_ms (the bucket may go empty; it never goes
 * below zero). Returns 0 or -ENOMEM (nothing remembered). */
int addr_buckets_take(struct addr_buckets *b, const struct sockaddr_storage *ss, uint64_t now_ms);

/* Up to `max` addresses with the most tokens taken, most first, as
 * "HOST" text in out[i] (64 bytes each) with their counts in taken[i].
 * Returns how many were written. */
size_t addr_buckets_top(const struct addr_buckets *b, size_t max, char (*out)[64],
                        uint64_t *taken);

void addr_buckets_free(struct addr_buckets *b);

/* Networks given on the command line: at most ADDR_SET_MAX of them. */
#define ADDR_SET_MAX 64

struct addr_net {
    uint8_t fam; /* 4 or 6 */
    uint8_t bits;
    uint8_t a[16];
};

struct addr_set {
    size_t n;
    struct addr_net nets[ADDR_SET_MAX];
};

/* Parses a comma-separated list of IPv4 or IPv6 addresses, each
 * optionally with a prefix length ("192.0.2.7,198.51.100.0/24,2001:db8::/32")
 * into *s (replacing what it held). An IPv4-mapped IPv6 network
 * ("::ffff:192.0.2.0/120") is the IPv4 one. Returns 0, or -EINVAL with one
 * line naming the item at fault in err. */
int addr_set_parse(struct addr_set *s, const char *text, char *err, size_t errlen);

/* Returns 1 when the address of `ss` (its port ignored; an IPv4-mapped
 * IPv6 peer as its IPv4 address) is in one of the networks of s. */
int addr_set_has(const struct addr_set *s, const struct sockaddr_storage *ss);

/* One port's figures for /metrics (limits_render). */
struct limits_port {
    const char *port; /* label value: "native", "http" */
    uint64_t open, refused_total, refused_per_addr;
    uint64_t timeouts;    /* a frame or a request head took too long */
    uint64_t idle_closes; /* closed idle */
};

struct metrics_buf;

/* Writes the families imgstore_conns_open, imgstore_conns_refused_total
 * {reason="port_full"|"addr_full"}, imgstore_conns_timeout_total and
 * imgstore_conns_idle_closed_total, one series per port. */
void limits_render(struct metrics_buf *b, const struct limits_port *ports, size_t n);

/* Writes the IP address of `ss` (no port) into out (64 bytes are enough). */
void limits_addr_text(const struct sockaddr_storage *ss, char *out, size_t len);

#endif
