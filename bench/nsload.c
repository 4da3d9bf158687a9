/* nsload.c - nameserver RAM per block and block-location lookups/s.
 *
 *   nsload --ns HOST:PORT --ns-pid PID --blocks N [--servers S] [--replicas R]
 *          [--duration SECONDS] [-c THREADS] [--register-only]
 *
 * Speaks the native protocol directly. S fake
 * dataservers (read-only, so the planner never places a block on them) send
 * one full block report each, together describing N sealed blocks with R
 * replicas; the nameserver's VmRSS (/proc/PID/status) is read before and
 * after, and the difference divided by N is its memory per block. The fake
 * servers keep heartbeating while THREADS threads send LOOKUP requests for
 * one random block id each, for SECONDS. Prints key=value lines.
 *
 * The measured case is a nameserver restart: with --register-only the fakes
 * only introduce themselves (an empty full report each), so that the
 * nameserver, started again, knows them and stays in safe mode until all of
 * them have reported; their reports then rebuild the block map as a real
 * fleet's do, without a set change per block. */
#include "client/rpc.h"
#include "net/conn.h"
#include "proto/frame.h"
#include "proto/imgstore.pb-c.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#define BLOCK_ID_BASE 1000000u
#define FAKE_BLOCK_SIZE (UINT64_C(64) << 20)
#define FAKE_FILES 1300
#define REPORT_TIMEOUT_MS 60000
#define CALL_TIMEOUT_MS 5000
#define HEARTBEAT_MS 1000
#define MAX_SERVERS 64
#define MAX_THREADS 64
#define SETTLE_US 500000

/* A fake dataserver: its session with the nameserver is one blocking
 * socket, on which the nameserver may also send requests (SET_REPLICAS)
 * that the fake answers while it waits for a heartbeat's answer. */
struct fake {
    pthread_mutex_t lock; /* one call at a time on the session */
    atomic_int open;      /* has sent its full report */
    int fd;
    uint64_t next_id;
    char id[32], addr[32], http[32];
};

static const char *ns_addr;
static uint64_t nblocks;
static int nservers = 8, nreplicas = 2, register_only;
static struct fake fakes[MAX_SERVERS];
static atomic_int stop;
static atomic_ulong lookups, lookup_errors;

static long vmrss_kb(int pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    FILE *fp = fopen(path, "r");
    long kb = -1;
    if (!fp)
        return -1;
    while (fgets(line, sizeof(line), fp))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    fclose(fp);
    return kb;
}

/* Opens fake f's session with the nameserver (blocking, with timeouts). */
static int session_open(struct fake *f)
{
    struct sockaddr_storage ss;
    if (conn_parse_addr(ns_addr, &ss) != 0)
        return -EINVAL;
    f->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (f->fd < 0)
        return -errno;
    struct timeval tv = {.tv_sec = REPORT_TIMEOUT_MS / 1000};
    setsockopt(f->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(f->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    int one = 1;
    setsockopt(f->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(f->fd, (struct sockaddr *)&ss, sizeof(ss)) != 0) {
        int e = -errno;
        close(f->fd);
        f->fd = -1;
        return e;
    }
    return 0;
}

static int io_all(int fd, void *buf, size_t len, int out)
{
    uint8_t *p = buf;
    while (len) {
        ssize_t n = out ? send(fd, p, len, MSG_NOSIGNAL) : recv(fd, p, len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n == 0 ? -ECONNRESET : -errno;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Sends one frame: header and packed head (msg may be NULL). */
static int send_frame(int fd, unsigned type, int status, uint64_t id, const ProtobufCMessage *msg)
{
    size_t hl = msg ? protobuf_c_message_get_packed_size(msg) : 0;
    uint8_t *buf = malloc(FRAME_HEADER_SIZE + hl);
    if (!buf)
        return -ENOMEM;
    struct frame_header h = {.version = FRAME_VERSION, .type = (uint8_t)type, .status = status,
                             .request_id = id, .head_len = (uint32_t)hl};
    frame_encode(&h, buf);
    if (msg)
        protobuf_c_message_pack(msg, buf + FRAME_HEADER_SIZE);
    int rc = io_all(fd, buf, FRAME_HEADER_SIZE + hl, 1);
    free(buf);
    return rc;
}

/* Sends a request on f's session and waits for its answer's status,
 * answering the nameserver's own requests meanwhile: SET_REPLICAS with the
 * fake block's full size (so a joining copy is never waited for), anything
 * else with an empty success. */
static int session_call(struct fake *f, unsigned type, const ProtobufCMessage *msg)
{
    uint64_t id = ++f->next_id;
    int rc = send_frame(f->fd, type, 0, id, msg);
    for (;;) {
        uint8_t hb[FRAME_HEADER_SIZE];
        struct frame_header h;
        if (rc == 0)
            rc = io_all(f->fd, hb, sizeof(hb), 0);
        if (rc == 0)
            rc = frame_decode(hb, &h);
        if (rc != 0)
            return rc;
        size_t len = (size_t)h.head_len + h.body_len;
        uint8_t *skip = malloc(len + 1);
        if (!skip)
            return -ENOMEM;
        rc = io_all(f->fd, skip, len, 0);
        free(skip);
        if (rc != 0)
            return rc;
        if (h.type & FRAME_RESPONSE) {
            if (h.type == (type | FRAME_RESPONSE) && h.request_id == id)
                return h.status;
            continue; /* an answer to nothing of ours */
        }
        if (h.type == FT_SET_REPLICAS) {
            Imgstore__SetReplicasResp r = IMGSTORE__SET_REPLICAS_RESP__INIT;
            r.size = FAKE_BLOCK_SIZE;
            rc = send_frame(f->fd, h.type | FRAME_RESPONSE, 0, h.request_id, &r.base);
        } else {
            rc = send_frame(f->fd, h.type | FRAME_RESPONSE, 0, h.request_id, NULL);
        }
    }
}

/* Sends one heartbeat of fake server s; a full report lists every block it
 * holds. Returns 0 or an error. */
static int heartbeat(int s, int full)
{
    struct fake *f = &fakes[s];
    Imgstore__Heartbeat hb = IMGSTORE__HEARTBEAT__INIT;
    Imgstore__Disk disk = IMGSTORE__DISK__INIT;
    Imgstore__Disk *disks[1] = {&disk};
    disk.path = "/bench";
    disk.capacity = UINT64_C(1) << 40;
    disk.free = UINT64_C(1) << 39;
    hb.server_id = f->id;
    hb.addr = f->addr;
    hb.http_addr = f->http;
    hb.disks = disks;
    hb.n_disks = 1;
    hb.readonly = 1;
    hb.full_report = full;
    Imgstore__BlockInfo *infos = NULL, **ptrs = NULL;
    char **sets = NULL;
    size_t n = 0;
    if (full && !register_only) {
        size_t cap = (size_t)(nblocks * (uint64_t)nreplicas / (uint64_t)nservers) + 2;
        infos = calloc(cap, sizeof(*infos));
        ptrs = calloc(cap, sizeof(*ptrs));
        sets = calloc(cap * (size_t)nreplicas, sizeof(*sets));
        if (!infos || !ptrs || !sets) {
            free(infos);
            free(ptrs);
            free(sets);
            return -ENOMEM;
        }
        for (uint64_t b = 0; b < nblocks && n < cap; b++) {
            int first = (int)(b % (uint64_t)nservers), holds = -1;
            for (int r = 0; r < nreplicas; r++)
                if ((first + r) % nservers == s)
                    holds = r;
            if (holds < 0)
                continue;
            Imgstore__BlockInfo *bi = &infos[n];
            imgstore__block_info__init(bi);
            bi->block_id = BLOCK_ID_BASE + b;
            bi->size = FAKE_BLOCK_SIZE;
            bi->file_count = FAKE_FILES;
            bi->sealed = 1;
            bi->primary = holds == 0;
            /* The whole replica set, primary first, as a real dataserver
             * reports it: without it the nameserver would first send each
             * holder a SET_REPLICAS, which these fakes do not answer. */
            bi->replicas = &sets[n * (size_t)nreplicas];
            bi->n_replicas = (size_t)nreplicas;
            for (int r = 0; r < nreplicas; r++)
                bi->replicas[r] = fakes[(first + r) % nservers].id;
            bi->set_version = 1;
            ptrs[n++] = bi;
        }
        hb.blocks = ptrs;
        hb.n_blocks = n;
    }
    pthread_mutex_lock(&f->lock);
    int rc = session_call(f, FT_HEARTBEAT, &hb.base);
    pthread_mutex_unlock(&f->lock);
    free(infos);
    free(ptrs);
    free(sets);
    return rc;
}

static void *heartbeat_main(void *arg)
{
    while (!atomic_load(&stop)) {
        usleep(HEARTBEAT_MS * 1000);
        for (int s = 0; s < nservers && !atomic_load(&stop); s++)
            if (atomic_load(&fakes[s].open))
                heartbeat(s, 0);
    }
    return NULL;
}

struct lookup_worker {
    struct rpc_pool *pool;
    uint64_t rng;
    pthread_t tid;
};

static void *lookup_main(void *arg)
{
    struct lookup_worker *w = arg;
    while (!atomic_load(&stop)) {
        w->rng = w->rng * UINT64_C(6364136223846793005) + UINT64_C(1442695040888963407);
        uint64_t id = BLOCK_ID_BASE + (w->rng >> 20) % nblocks;
        Imgstore__Lookup req = IMGSTORE__LOOKUP__INIT;
        req.block_ids = &id;
        req.n_block_ids = 1;
        struct rpc_resp resp;
        int rc = rpc_call(w->pool, ns_addr, FT_LOOKUP, &req.base, NULL, 0, 0, CALL_TIMEOUT_MS,
                          rpc_now_ms() + CALL_TIMEOUT_MS, &resp);
        int ok = 0;
        if (rc == 0 && resp.status == 0) {
            Imgstore__LookupResp *lr =
                (Imgstore__LookupResp *)rpc_unpack(&resp, &imgstore__lookup_resp__descriptor);
            ok = lr && lr->n_locations == 1 && lr->locations[0]->block_id == id;
            if (lr)
                protobuf_c_message_free_unpacked(&lr->base, NULL);
        }
        if (rc == 0)
            rpc_resp_free(&resp);
        atomic_fetch_add(ok ? &lookups : &lookup_errors, 1);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    int pid = 0, threads = 2;
    double duration = 5;
    for (int i = 1; i < argc; i += 2) {
        if (strcmp(argv[i], "--register-only") == 0) {
            register_only = 1;
            i--;
            continue;
        }
        if (i + 1 >= argc)
            break;
        if (strcmp(argv[i], "--ns") == 0)
            ns_addr = argv[i + 1];
        else if (strcmp(argv[i], "--ns-pid") == 0)
            pid = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--blocks") == 0)
            nblocks = strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--servers") == 0)
            nservers = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--replicas") == 0)
            nreplicas = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--duration") == 0)
            duration = atof(argv[i + 1]);
        else if (strcmp(argv[i], "-c") == 0)
            threads = atoi(argv[i + 1]);
    }
    if (!ns_addr || pid <= 0 || nblocks == 0 || nservers < 1 || nservers > MAX_SERVERS ||
        nreplicas < 1 || nreplicas > nservers || threads < 1 || threads > MAX_THREADS) {
        fprintf(stderr, "usage: nsload --ns HOST:PORT --ns-pid PID --blocks N [--servers S] "
                        "[--replicas R] [--duration S] [-c THREADS] [--register-only]\n");
        return 2;
    }
    long rss0 = vmrss_kb(pid);
    /* Fakes that have reported keep heartbeating while the others report. */
    pthread_t hb;
    pthread_create(&hb, NULL, heartbeat_main, NULL);
    for (int s = 0; s < nservers; s++) {
        struct fake *f = &fakes[s];
        pthread_mutex_init(&f->lock, NULL);
        snprintf(f->id, sizeof(f->id), "benchfake%02d", s);
        snprintf(f->addr, sizeof(f->addr), "127.0.0.2:%d", 10000 + s);
        snprintf(f->http, sizeof(f->http), "127.0.0.2:%d", 20000 + s);
        int rc = session_open(f);
        if (rc == 0)
            rc = heartbeat(s, 1);
        if (rc != 0) {
            fprintf(stderr, "nsload: full report of %s refused: %d\n", f->id, rc);
            return 1;
        }
        atomic_store(&f->open, 1);
    }
    if (register_only) {
        atomic_store(&stop, 1);
        pthread_join(hb, NULL);
        for (int s = 0; s < nservers; s++)
            close(fakes[s].fd);
        printf("registered=%d\n", nservers);
        return 0;
    }
    usleep(SETTLE_US);
    long rss1 = vmrss_kb(pid);
    printf("ns_blocks=%" PRIu64 " ns_rss_empty_kb=%ld ns_rss_loaded_kb=%ld "
           "ns_bytes_per_block=%.1f\n",
           nblocks, rss0, rss1, (rss1 - rss0) * 1024.0 / (double)nblocks);
    fflush(stdout);
    struct rpc_pool pool;
    rpc_pool_init(&pool);
    struct lookup_worker w[MAX_THREADS];
    for (int t = 0; t < threads; t++) {
        w[t].pool = &pool;
        w[t].rng = (uint64_t)t * 7919 + (uint64_t)time(NULL);
        pthread_create(&w[t].tid, NULL, lookup_main, &w[t]);
    }
    usleep((useconds_t)(duration * 1e6));
    atomic_store(&stop, 1);
    for (int t = 0; t < threads; t++)
        pthread_join(w[t].tid, NULL);
    pthread_join(hb, NULL);
    printf("lookups=%lu lookup_errors=%lu lookups_per_s=%.0f threads=%d\n",
           (unsigned long)atomic_load(&lookups), (unsigned long)atomic_load(&lookup_errors),
           (double)atomic_load(&lookups) / duration, threads);
    rpc_pool_destroy(&pool);
    for (int s = 0; s < nservers; s++)
        close(fakes[s].fd);
    return atomic_load(&lookup_errors) ? 1 : 0;
}
