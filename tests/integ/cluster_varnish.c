/* cluster_varnish.c - Varnish as the CDN stand-in of the HTTP tests
 * (cluster.h, "Varnish"): integ_http and integ_zstd start it the same way. */
#include "tests/integ/cluster.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

pid_t cluster_varnish_start(const char *dir, const char *backend_port, const char *vcl_recv,
                            char *listen, size_t listen_size)
{
    int port = cluster_free_port();
    if (port < 0)
        return -1;
    snprintf(listen, listen_size, "127.0.0.1:%d", port);
    char vcl[512], work[300], vclsrc[2048];
    snprintf(vcl, sizeof(vcl), "%s/origin.vcl", dir);
    snprintf(work, sizeof(work), "%s/varnish", dir);
    /* A 1 s TTL with a long keep: after it the proxy revalidates with the
     * stored ETag, and marks what the origin answered. */
    int n = snprintf(vclsrc, sizeof(vclsrc),
                     "vcl 4.1;\nbackend default { .host = \"127.0.0.1\"; .port = \"%s\"; }\n"
                     "%s%s%s"
                     "sub vcl_backend_response {\n  set beresp.ttl = 1s;\n"
                     "  set beresp.grace = 0s;\n  set beresp.keep = 1h;\n"
                     "  set beresp.http.X-Was-304 = beresp.was_304;\n}\n"
                     "sub vcl_deliver {\n  if (obj.hits > 0) { set resp.http.X-Cache = \"HIT\"; }"
                     " else { set resp.http.X-Cache = \"MISS\"; }\n}\n",
                     backend_port, vcl_recv ? "sub vcl_recv {\n" : "", vcl_recv ? vcl_recv : "",
                     vcl_recv ? "}\n" : "");
    if (n < 0 || (size_t)n >= sizeof(vclsrc) || cluster_write_file(vcl, vclsrc, (size_t)n) != 0)
        return -1;
    chmod(dir, 0755);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        char log[400];
        snprintf(log, sizeof(log), "%s/log/varnish.log", dir);
        if (!freopen(log, "a", stdout) || !freopen(log, "a", stderr))
            _exit(127);
        /* -j none: no privilege dropping. As root in a sandbox that refuses
         * setuid and the like, varnishd's default jail fails ("VCL
         * compilation failed: Permission denied"); the tests have no use
         * for it. The working folder stays in our world-readable test
         * folder. http_gzip_support=off: Varnish passes Accept-Encoding and
         * Content-Encoding through untouched (docs/http.md). */
        execlp("varnishd", "varnishd", "-F", "-j", "none", "-n", work, "-a", listen, "-T",
               "127.0.0.1:0", "-f", vcl, "-p", "http_gzip_support=off", "-s", "malloc,32m",
               (char *)NULL);
        _exit(127);
    }
    return pid;
}
