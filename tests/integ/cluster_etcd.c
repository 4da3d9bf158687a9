/* cluster_etcd.c - one etcd member for the tests of high availability
 * (cluster.h, "etcd"): integ_ha and the chaos suite's HA mode start it the
 * same way, as a child that dies with the test process. */
#include "tests/integ/cluster.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

int cluster_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &sl) == 0)
        port = ntohs(sa.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

int cluster_etcd_run(const char *dir, const char *name, const char *client, const char *peer,
                     pid_t *pid)
{
    char data[300], log[300], curl[100], purl[100], cluster[120];
    snprintf(data, sizeof(data), "%s/data", dir);
    snprintf(log, sizeof(log), "%s/etcd.log", dir);
    snprintf(curl, sizeof(curl), "http://%s", client);
    snprintf(purl, sizeof(purl), "http://%s", peer);
    snprintf(cluster, sizeof(cluster), "%s=http://%s", name, peer);
    pid_t parent = getpid();
    *pid = fork();
    if (*pid < 0) {
        *pid = 0;
        return -1;
    }
    if (*pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        execl(CLUSTER_ETCD_BIN, "etcd", "--name", name, "--data-dir", data,
              "--listen-client-urls", curl, "--advertise-client-urls", curl,
              "--listen-peer-urls", purl, "--initial-advertise-peer-urls", purl,
              "--initial-cluster", cluster, "--log-level", "warn", (char *)NULL);
        _exit(127);
    }
    int64_t until = cluster_now_ms() + 15000;
    while (cluster_now_ms() < until) {
        char *b = cluster_http_body(client, "/health");
        int ok = b && strstr(b, "true");
        free(b);
        if (ok)
            return 0;
        if (waitpid(*pid, NULL, WNOHANG) == *pid)
            break; /* exited: a port was taken meanwhile */
        usleep(100000);
    }
    kill(*pid, SIGKILL);
    waitpid(*pid, NULL, 0);
    *pid = 0;
    return -1;
}
