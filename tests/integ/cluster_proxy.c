/* cluster_proxy.c - a TCP forwarder the tests put between one server and
 * another (cluster.h, "Proxy"): cutting it is a partition of that one path
 * on loopback (a dataserver cut off from the nameserver while clients still
 * reach it), without network namespaces or root. One thread, poll(2) over
 * the listener and every pair of sockets; blocking writes (test traffic). */
#include "tests/integ/cluster.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PROXY_PAIRS 32
#define PROXY_BUF 65536

struct cluster_proxy {
    char target[CLUSTER_ADDR_MAX];
    int lfd;
    int fds[PROXY_PAIRS][2]; /* [accepted, upstream], -1 when unused */
    atomic_int cut, stop;
    pthread_t th;
};

static void pair_close(struct cluster_proxy *p, int i)
{
    for (int k = 0; k < 2; k++) {
        if (p->fds[i][k] >= 0)
            close(p->fds[i][k]);
        p->fds[i][k] = -1;
    }
}

static void accept_one(struct cluster_proxy *p)
{
    int fd = accept(p->lfd, NULL, NULL);
    if (fd < 0)
        return;
    if (atomic_load(&p->cut)) {
        close(fd); /* the path is cut: the caller sees its connection end */
        return;
    }
    for (int i = 0; i < PROXY_PAIRS; i++)
        if (p->fds[i][0] < 0) {
            int up = cluster_connect(p->target, 2000);
            if (up < 0)
                break;
            p->fds[i][0] = fd;
            p->fds[i][1] = up;
            return;
        }
    close(fd);
}

static void *proxy_main(void *arg)
{
    struct cluster_proxy *p = arg;
    char *buf = malloc(PROXY_BUF);
    while (buf && !atomic_load(&p->stop)) {
        struct pollfd pf[1 + 2 * PROXY_PAIRS];
        int map[1 + 2 * PROXY_PAIRS], n = 0;
        pf[n] = (struct pollfd){.fd = p->lfd, .events = POLLIN};
        map[n++] = -1;
        int cut = atomic_load(&p->cut);
        for (int i = 0; i < PROXY_PAIRS; i++) {
            if (p->fds[i][0] < 0)
                continue;
            if (cut) {
                pair_close(p, i);
                continue;
            }
            for (int k = 0; k < 2; k++) {
                pf[n] = (struct pollfd){.fd = p->fds[i][k], .events = POLLIN};
                map[n++] = i * 2 + k;
            }
        }
        if (poll(pf, (nfds_t)n, 50) <= 0)
            continue;
        if (pf[0].revents)
            accept_one(p);
        for (int j = 1; j < n; j++) {
            if (!pf[j].revents)
                continue;
            int i = map[j] / 2, k = map[j] % 2;
            if (p->fds[i][k] < 0)
                continue; /* closed earlier in this round */
            ssize_t r = recv(p->fds[i][k], buf, PROXY_BUF, 0);
            if (r <= 0 || cluster_send_all(p->fds[i][1 - k], buf, (size_t)r) != 0)
                pair_close(p, i);
        }
    }
    free(buf);
    for (int i = 0; i < PROXY_PAIRS; i++)
        pair_close(p, i);
    return NULL;
}

struct cluster_proxy *cluster_proxy_start(const char *target, char *addr, size_t n)
{
    return cluster_proxy_start_on("127.0.0.1", target, addr, n);
}

struct cluster_proxy *cluster_proxy_start_on(const char *host, const char *target, char *addr,
                                             size_t n)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        return NULL;
    struct cluster_proxy *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    snprintf(p->target, sizeof(p->target), "%s", target);
    memset(p->fds, -1, sizeof(p->fds));
    socklen_t len = sizeof(sa);
    p->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (p->lfd < 0 || bind(p->lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        listen(p->lfd, 16) != 0 || getsockname(p->lfd, (struct sockaddr *)&sa, &len) != 0 ||
        pthread_create(&p->th, NULL, proxy_main, p) != 0) {
        if (p->lfd >= 0)
            close(p->lfd);
        free(p);
        return NULL;
    }
    snprintf(addr, n, "%s:%d", host, ntohs(sa.sin_port));
    return p;
}

void cluster_proxy_cut(struct cluster_proxy *p, int cut)
{
    atomic_store(&p->cut, cut != 0);
}

void cluster_proxy_stop(struct cluster_proxy *p)
{
    if (!p)
        return;
    atomic_store(&p->stop, 1);
    pthread_join(p->th, NULL);
    close(p->lfd);
    free(p);
}
