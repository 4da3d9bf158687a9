/* limits.c - connection counts and token buckets per peer address (see
 * limits.h). Chained hash tables keyed by the address bytes; the bucket
 * table also keeps its entries in recency order to forget the least
 * recently used one when full. Sets of networks are short arrays matched
 * by prefix. */
#include "net/limits.h"

#include "base/metrics.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GATE_SLOTS 1024
#define BUCKETS_DEFAULT_MAX 4096

struct addr_key {
    uint8_t fam; /* 4 or 6 */
    uint8_t a[16];
};

struct gate_entry {
    struct gate_entry *next;
    struct addr_key k;
    uint32_t count;
};

struct bucket_entry {
    struct bucket_entry *next;             /* hash chain */
    struct bucket_entry *lprev, *lnext;    /* recency: head most recent */
    struct addr_key k;
    double tokens;
    uint64_t at_ms; /* when tokens was computed */
    uint64_t taken;
};

static void key_of(const struct sockaddr_storage *ss, struct addr_key *k)
{
    memset(k, 0, sizeof(*k));
    if (ss->ss_family == AF_INET) {
        k->fam = 4;
        memcpy(k->a, &((const struct sockaddr_in *)ss)->sin_addr, 4);
    } else if (ss->ss_family == AF_INET6) {
        const struct in6_addr *a6 = &((const struct sockaddr_in6 *)ss)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a6)) {
            k->fam = 4;
            memcpy(k->a, a6->s6_addr + 12, 4);
        } else {
            k->fam = 6;
            memcpy(k->a, a6->s6_addr, 16);
        }
    }
}

static size_t key_hash(const struct addr_key *k, size_t nslots)
{
    uint64_t h = 1469598103934665603ull;
    h = (h ^ k->fam) * 1099511628211ull;
    for (size_t i = 0; i < sizeof(k->a); i++)
        h = (h ^ k->a[i]) * 1099511628211ull;
    return (size_t)(h % nslots);
}

static int key_eq(const struct addr_key *a, const struct addr_key *b)
{
    return a->fam == b->fam && memcmp(a->a, b->a, sizeof(a->a)) == 0;
}

void limits_addr_text(const struct sockaddr_storage *ss, char *out, size_t len)
{
    char host[INET6_ADDRSTRLEN] = "?";
    if (ss->ss_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, host, sizeof(host));
    else if (ss->ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, host, sizeof(host));
    snprintf(out, len, "%s", host);
}

static void key_text(const struct addr_key *k, char *out, size_t len)
{
    char host[INET6_ADDRSTRLEN] = "?";
    if (k->fam == 4)
        inet_ntop(AF_INET, k->a, host, sizeof(host));
    else if (k->fam == 6)
        inet_ntop(AF_INET6, k->a, host, sizeof(host));
    snprintf(out, len, "%s", host);
}

/* ---- connection counts ------------------------------------------------------ */

int conn_gate_enter(struct conn_gate *g, const struct sockaddr_storage *ss)
{
    if (g->max_total && g->open >= g->max_total) {
        g->refused_total++;
        return 1;
    }
    if (!g->slots) {
        g->slots = calloc(GATE_SLOTS, sizeof(*g->slots));
        if (!g->slots)
            return -ENOMEM;
        g->nslots = GATE_SLOTS;
    }
    struct addr_key k;
    key_of(ss, &k);
    struct gate_entry **pp = &g->slots[key_hash(&k, g->nslots)];
    struct gate_entry *e = *pp;
    while (e && !key_eq(&e->k, &k))
        e = e->next;
    if (e && g->max_per_addr && e->count >= g->max_per_addr) {
        g->refused_per_addr++;
        return 2;
    }
    if (!e) {
        e = calloc(1, sizeof(*e));
        if (!e)
            return -ENOMEM;
        e->k = k;
        e->next = *pp;
        *pp = e;
    }
    e->count++;
    g->open++;
    return 0;
}

void conn_gate_leave(struct conn_gate *g, const struct sockaddr_storage *ss)
{
    if (!g->slots)
        return;
    struct addr_key k;
    key_of(ss, &k);
    struct gate_entry **pp = &g->slots[key_hash(&k, g->nslots)];
    while (*pp && !key_eq(&(*pp)->k, &k))
        pp = &(*pp)->next;
    struct gate_entry *e = *pp;
    if (!e)
        return;
    g->open--;
    if (--e->count == 0) {
        *pp = e->next;
        free(e);
    }
}

void conn_gate_free(struct conn_gate *g)
{
    for (size_t i = 0; g->slots && i < g->nslots; i++) {
        for (struct gate_entry *e = g->slots[i], *n; e; e = n) {
            n = e->next;
            free(e);
        }
    }
    free(g->slots);
    g->slots = NULL;
    g->nslots = 0;
    g->open = 0;
}

/* ---- token buckets ---------------------------------------------------------- */

static size_t max_entries(const struct addr_buckets *b)
{
    return b->max_entries ? b->max_entries : BUCKETS_DEFAULT_MAX;
}

static void lru_unlink(struct addr_buckets *b, struct bucket_entry *e)
{
    if (e->lprev)
        e->lprev->lnext = e->lnext;
    else
        b->lru_head = e->lnext;
    if (e->lnext)
        e->lnext->lprev = e->lprev;
    else
        b->lru_tail = e->lprev;
    e->lprev = e->lnext = NULL;
}

static void lru_push(struct addr_buckets *b, struct bucket_entry *e)
{
    e->lprev = NULL;
    e->lnext = b->lru_head;
    if (b->lru_head)
        b->lru_head->lprev = e;
    b->lru_head = e;
    if (!b->lru_tail)
        b->lru_tail = e;
}

static void bucket_remove(struct addr_buckets *b, struct bucket_entry *e)
{
    struct bucket_entry **pp = &b->slots[key_hash(&e->k, b->nslots)];
    while (*pp && *pp != e)
        pp = &(*pp)->next;
    if (*pp)
        *pp = e->next;
    lru_unlink(b, e);
    b->n--;
    free(e);
}

static struct bucket_entry *bucket_find(struct addr_buckets *b, const struct addr_key *k)
{
    if (!b->slots)
        return NULL;
    struct bucket_entry *e = b->slots[key_hash(k, b->nslots)];
    while (e && !key_eq(&e->k, k))
        e = e->next;
    return e;
}

/* Refills e's tokens up to now_ms. */
static void refill(const struct addr_buckets *b, struct bucket_entry *e, uint64_t now_ms)
{
    if (now_ms > e->at_ms) {
        e->tokens += b->rate * (double)(now_ms - e->at_ms) / 1000.0;
        if (e->tokens > b->burst)
            e->tokens = b->burst;
        e->at_ms = now_ms;
    }
}

int addr_buckets_allows(struct addr_buckets *b, const struct sockaddr_storage *ss,
                        uint64_t now_ms, unsigned *retry_s)
{
    if (b->rate <= 0)
        return 1;
    struct addr_key k;
    key_of(ss, &k);
    struct bucket_entry *e = bucket_find(b, &k);
    if (!e)
        return 1;
    refill(b, e, now_ms);
    if (e->tokens >= 1.0)
        return 1;
    b->limited++;
    if (retry_s) {
        double s = (1.0 - e->tokens) / b->rate;
        unsigned w = (unsigned)s + 1;
        *retry_s = w < 1 ? 1 : w;
    }
    return 0;
}

int addr_buckets_take(struct addr_buckets *b, const struct sockaddr_storage *ss, uint64_t now_ms)
{
    if (b->rate <= 0)
        return 0;
    struct addr_key k;
    key_of(ss, &k);
    if (!b->slots) {
        size_t n = max_entries(b);
        b->slots = calloc(n, sizeof(*b->slots));
        if (!b->slots)
            return -ENOMEM;
        b->nslots = n;
    }
    struct bucket_entry *e = bucket_find(b, &k);
    if (e) {
        refill(b, e, now_ms);
        lru_unlink(b, e);
    } else {
        if (b->n >= max_entries(b))
            bucket_remove(b, b->lru_tail);
        e = calloc(1, sizeof(*e));
        if (!e)
            return -ENOMEM;
        e->k = k;
        e->tokens = b->burst;
        e->at_ms = now_ms;
        size_t h = key_hash(&k, b->nslots);
        e->next = b->slots[h];
        b->slots[h] = e;
        b->n++;
    }
    lru_push(b, e);
    e->taken++;
    b->taken++;
    int was = e->tokens >= 1.0;
    e->tokens -= 1.0;
    if (e->tokens < 0)
        e->tokens = 0;
    if (was && e->tokens < 1.0)
        b->emptied++;
    return 0;
}

size_t addr_buckets_top(const struct addr_buckets *b, size_t max, char (*out)[64],
                        uint64_t *taken)
{
    const struct bucket_entry *best[16];
    size_t n = 0;
    if (max > 16)
        max = 16;
    for (const struct bucket_entry *e = b->lru_head; e; e = e->lnext) {
        /* Insertion into the sorted top list. */
        size_t i = n < max ? n : max;
        if (i == max && (max == 0 || best[max - 1]->taken >= e->taken))
            continue;
        if (i == max)
            i--;
        while (i > 0 && best[i - 1]->taken < e->taken) {
            best[i] = best[i - 1];
            i--;
        }
        best[i] = e;
        if (n < max)
            n++;
    }
    for (size_t i = 0; i < n; i++) {
        key_text(&best[i]->k, out[i], 64);
        taken[i] = best[i]->taken;
    }
    return n;
}

void addr_buckets_free(struct addr_buckets *b)
{
    for (struct bucket_entry *e = b->lru_head, *n; e; e = n) {
        n = e->lnext;
        free(e);
    }
    free(b->slots);
    b->slots = NULL;
    b->lru_head = b->lru_tail = NULL;
    b->nslots = 0;
    b->n = 0;
}

/* ---- metrics ------------------------------------------------------------------ */

void limits_render(struct metrics_buf *b, const struct limits_port *ports, size_t n)
{
    char lab[96];
    metrics_family(b, "imgstore_conns_open", "gauge", "Connections open, by port.");
    for (size_t i = 0; i < n; i++) {
        snprintf(lab, sizeof(lab), "port=\"%s\"", ports[i].port);
        metrics_value(b, "imgstore_conns_open", lab, (double)ports[i].open);
    }
    metrics_family(b, "imgstore_conns_refused_total", "counter",
                   "Connections closed at once: the port was at --max-conns (port_full) or "
                   "their address at --max-conns-per-addr (addr_full).");
    for (size_t i = 0; i < n; i++) {
        snprintf(lab, sizeof(lab), "port=\"%s\",reason=\"port_full\"", ports[i].port);
        metrics_value(b, "imgstore_conns_refused_total", lab, (double)ports[i].refused_total);
        snprintf(lab, sizeof(lab), "port=\"%s\",reason=\"addr_full\"", ports[i].port);
        metrics_value(b, "imgstore_conns_refused_total", lab, (double)ports[i].refused_per_addr);
    }
    metrics_family(b, "imgstore_conns_timeout_total", "counter",
                   "Connections closed because a frame (native) or a request head (http) "
                   "took too long.");
    for (size_t i = 0; i < n; i++) {
        snprintf(lab, sizeof(lab), "port=\"%s\"", ports[i].port);
        metrics_value(b, "imgstore_conns_timeout_total", lab, (double)ports[i].timeouts);
    }
    metrics_family(b, "imgstore_conns_idle_closed_total", "counter",
                   "Connections closed after their idle timeout.");
    for (size_t i = 0; i < n; i++) {
        snprintf(lab, sizeof(lab), "port=\"%s\"", ports[i].port);
        metrics_value(b, "imgstore_conns_idle_closed_total", lab, (double)ports[i].idle_closes);
    }
}

/* ---- sets of networks --------------------------------------------------------- */

/* Parses one "ADDR[/BITS]" of len bytes. Returns 0 or -EINVAL. */
static int net_parse(const char *item, size_t len, struct addr_net *out)
{
    char buf[INET6_ADDRSTRLEN + 8];
    if (len == 0 || len >= sizeof(buf))
        return -EINVAL;
    memcpy(buf, item, len);
    buf[len] = '\0';
    char *slash = strchr(buf, '/');
    long bits = -1;
    if (slash) {
        char *end;
        *slash = '\0';
        if (!slash[1] || slash[1] == '-' || slash[1] == '+')
            return -EINVAL;
        bits = strtol(slash + 1, &end, 10);
        if (*end)
            return -EINVAL;
    }
    struct in_addr a4;
    struct in6_addr a6;
    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET, buf, &a4) == 1) {
        out->fam = 4;
        if (bits > 32)
            return -EINVAL;
        out->bits = (uint8_t)(bits < 0 ? 32 : bits);
        memcpy(out->a, &a4, 4);
    } else if (inet_pton(AF_INET6, buf, &a6) == 1) {
        out->fam = 6;
        if (bits > 128)
            return -EINVAL;
        out->bits = (uint8_t)(bits < 0 ? 128 : bits);
        memcpy(out->a, &a6, 16);
        if (IN6_IS_ADDR_V4MAPPED(&a6) && out->bits >= 96) {
            memcpy(out->a, a6.s6_addr + 12, 4);
            memset(out->a + 4, 0, 12);
            out->fam = 4;
            out->bits -= 96;
        }
    } else {
        return -EINVAL;
    }
    return 0;
}

int addr_set_parse(struct addr_set *s, const char *text, char *err, size_t errlen)
{
    s->n = 0;
    const char *p = text;
    for (;;) {
        size_t len = strcspn(p, ",");
        if (s->n == ADDR_SET_MAX) {
            snprintf(err, errlen, "at most %d addresses or networks", ADDR_SET_MAX);
            return -EINVAL;
        }
        if (net_parse(p, len, &s->nets[s->n]) != 0) {
            snprintf(err, errlen, "'%.*s' is not an IPv4 or IPv6 address (with an optional /BITS)",
                     (int)(len > 64 ? 64 : len), p);
            s->n = 0;
            return -EINVAL;
        }
        s->n++;
        if (!p[len])
            return 0;
        p += len + 1;
    }
}

int addr_set_has(const struct addr_set *s, const struct sockaddr_storage *ss)
{
    struct addr_key k;
    key_of(ss, &k);
    if (k.fam == 0)
        return 0;
    for (size_t i = 0; i < s->n; i++) {
        const struct addr_net *n = &s->nets[i];
        if (n->fam != k.fam)
            continue;
        unsigned whole = n->bits / 8, rest = n->bits % 8;
        if (memcmp(n->a, k.a, whole) != 0)
            continue;
        if (rest && ((n->a[whole] ^ k.a[whole]) & (uint8_t)(0xff << (8 - rest))))
            continue;
        return 1;
    }
    return 0;
}
