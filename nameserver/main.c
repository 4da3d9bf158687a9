/* main.c - the nameserver process: parses the command line, runs the loop,
 * and exits 0 after SIGINT/SIGTERM. The one place signals are handled:
 * SIGINT/SIGTERM stop the nameserver (ns_stop) and its HTTP port
 * (ns_http_stop), and the loop runs dry; SIGHUP opens the log file again
 * (--log-file) and re-reads the keys file, logged, never fatal. Under
 * systemd (Type=notify) it sends READY=1 once both ports listen and
 * STOPPING=1 at a stop (sd_notify; a no-op elsewhere). Everything else lives in the ns_* modules
 * (nameserver/ns.h) so unit tests can reach it; main.c calls only ns_init,
 * ns_start, ns_stop, ns_free and ns_http_start / ns_http_stop.
 *
 * Authentication (docs/security.md): --keys FILE, or --insecure to run
 * without (a WARN at start); neither is refused.
 *
 * High availability (docs/nameserver.md): --etcd HOST:PORT[,...] joins the
 * group of nameservers electing a leader on etcd (ns_etcd.c), under
 * --etcd-prefix (default /imgstore), publishing --advertise (default the
 * --listen address) as its address, with a lease of --etcd-ttl-ms.
 *
 * Exit codes: 0 clean stop, 1 start-up failure (folder locked, corrupt
 * metadata, cannot listen), 2 bad arguments or an unusable keys file. */
#include "nameserver/ns.h"
#include "nameserver/ns_etcd.h"
#include "nameserver/ns_http.h"

#include "net/auth.h"
#include "net/conn.h"
#include "base/err.h"
#include "base/log.h"

#include <systemd/sd-daemon.h>

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXIT_BAD_ARGS 2
#define MAX_TIMEOUT_MS (24ull * 3600 * 1000)
#define MAX_COPY_RATE_MB 100000 /* --copy-rate-mb, decimal MB/s */

#ifndef IMG_VERSION
#define IMG_VERSION "unknown" /* the Makefile passes client/imgstore.h's */
#endif

/* Prints the usage (for --help; `make man` turns it into the man page). */
static void usage(FILE *f)
{
    fprintf(f,
            "usage: nameserver --listen HOST:PORT --data DIR (--keys FILE | --insecure) [OPTIONS]\n"
            "\n"
            "The nameserver of an imgstore cluster: the block map (rebuilt from the\n"
            "dataservers' reports), block placement, repair, compaction and rebalancing.\n"
            "\n"
            "options:\n"
            "  --listen HOST:PORT       native port (dataservers, clients, ds-admin)\n"
            "  --data DIR               its folder: cluster id, settings, delete journal\n"
            "  --keys FILE              keys file (docs/security.md); re-read on change and SIGHUP\n"
            "  --insecure               run without authentication (a WARN at start)\n"
            "  --http HOST:PORT         /metrics, /healthz, /status.json and the status page\n"
            "  --advertise HOST:PORT    the address others reach it at, when --listen binds\n"
            "                           another (0.0.0.0, behind NAT); with --etcd, the\n"
            "                           address published in the leader key\n"
            "  --etcd HOST:PORT[,...]   high availability: elect a leader on etcd\n"
            "                           (docs/nameserver.md, \"High availability\")\n"
            "  --etcd-prefix P          its keys' prefix (default /imgstore)\n"
            "  --etcd-ttl-ms MS         the leader's lease (default 2000)\n"
            "  --replicas N             replicas per block, 1..3 (persisted; default 2)\n"
            "  --block-size BYTES       largest block (persisted; default 64 MiB)\n"
            "  --heartbeat-timeout-ms MS  a silent dataserver is down after MS (default 5000)\n"
            "  --safe-mode-timeout-ms MS  longest wait for known servers after a start\n"
            "                           (default 30000)\n"
            "  --task-cap N             background tasks per server (default 2, at most 64)\n"
            "  --copy-rate-mb MB_PER_S  copy rate per copying server (default 50)\n"
            "  --frame-timeout-ms MS    a native frame must be whole within MS plus 1 s per\n"
            "                           256 KiB of it (default 30000)\n"
            "  --idle-timeout-ms MS     idle native connections close (default 300000)\n"
            "  --max-conns N            connections per port (default 4096)\n"
            "  --max-conns-per-addr N   connections per port and peer address (default 256)\n"
            "  --log-file FILE          log there instead of stderr; SIGHUP reopens it\n"
            "  --help                   print this help\n"
            "  --version                print the version\n"
            "\n"
            "signals: SIGTERM/SIGINT stop it (exit 0); SIGHUP re-reads the keys file and\n"
            "reopens the log file. Under systemd it reports readiness (Type=notify).\n"
            "environment: IMGSTORE_LOG=debug|info|warn|error|off (default info).\n"
            "exit status: 0 stopped, 1 start-up failure, 2 bad arguments or keys file\n");
}

/* Prints a usage error: one "nameserver: ..." line saying what was wrong
 * and "try 'nameserver --help'", on stderr. Returns -1. */
static int bad_arg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int bad_arg(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "nameserver: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\ntry 'nameserver --help'\n");
    va_end(ap);
    return -1;
}

/* Parses a decimal number within [lo, hi]. */
static int parse_num(const char *opt, const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    char *end;
    errno = 0;
    if (!s || !*s || *s == '-' || *s == '+')
        return bad_arg("%s: '%s' is not a number", opt, s ? s : "");
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return bad_arg("%s: '%s' is not a number", opt, s);
    if (v < lo || v > hi)
        return bad_arg("%s: '%s' out of range %llu..%llu", opt, s, (unsigned long long)lo,
                       (unsigned long long)hi);
    *out = v;
    return 0;
}

/* The authentication options (kept out of struct ns_config: main loads the
 * keys and hands them to the ns). */
static const char *keys_path;
static int insecure;
/* --etcd and its options (main hands them to ns_etcd_init). */
static struct ns_etcd_config etcd;
static const char *log_file; /* --log-file */

static int parse_args(int argc, char **argv, struct ns_config *cfg)
{
    enum { O_LISTEN = 1, O_DATA, O_REPLICAS, O_BSIZE, O_HBTO, O_SAFETO, O_HELP, O_HTTP, O_TASKCAP,
           O_COPYRATE, O_FRAMETO, O_IDLETO, O_MAXCONNS, O_MAXPERADDR, O_KEYS, O_INSECURE,
           O_ETCD, O_ETCDPREFIX, O_ETCDTTL, O_ADVERTISE, O_VERSION, O_LOGFILE };
    static const struct option opts[] = {
        {"listen", required_argument, NULL, O_LISTEN},
        {"data", required_argument, NULL, O_DATA},
        {"replicas", required_argument, NULL, O_REPLICAS},
        {"block-size", required_argument, NULL, O_BSIZE},
        {"heartbeat-timeout-ms", required_argument, NULL, O_HBTO},
        {"safe-mode-timeout-ms", required_argument, NULL, O_SAFETO},
        {"help", no_argument, NULL, O_HELP},
        {"task-cap", required_argument, NULL, O_TASKCAP},
        {"copy-rate-mb", required_argument, NULL, O_COPYRATE},
        {"http", required_argument, NULL, O_HTTP},
        {"frame-timeout-ms", required_argument, NULL, O_FRAMETO},
        {"idle-timeout-ms", required_argument, NULL, O_IDLETO},
        {"max-conns", required_argument, NULL, O_MAXCONNS},
        {"max-conns-per-addr", required_argument, NULL, O_MAXPERADDR},
        {"keys", required_argument, NULL, O_KEYS},
        {"insecure", no_argument, NULL, O_INSECURE},
        {"etcd", required_argument, NULL, O_ETCD},
        {"etcd-prefix", required_argument, NULL, O_ETCDPREFIX},
        {"etcd-ttl-ms", required_argument, NULL, O_ETCDTTL},
        {"advertise", required_argument, NULL, O_ADVERTISE},
        {"version", no_argument, NULL, O_VERSION},
        {"log-file", required_argument, NULL, O_LOGFILE},
        {NULL, 0, NULL, 0},
    };
    uint64_t v;
    int o;
    opterr = 0;
    while ((o = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (o) {
        case O_LISTEN: cfg->listen = optarg; break;
        case O_DATA: cfg->data_dir = optarg; break;
        case O_HTTP: cfg->http = optarg; break;
        case O_KEYS: keys_path = optarg; break;
        case O_INSECURE: insecure = 1; break;
        case O_ETCD: etcd.endpoints = optarg; break;
        case O_ETCDPREFIX: etcd.prefix = optarg; break;
        case O_ADVERTISE: etcd.advertise = optarg; break;
        case O_ETCDTTL:
            if (parse_num("--etcd-ttl-ms", optarg, NS_ETCD_MIN_TTL_MS, NS_ETCD_MAX_TTL_MS, &v))
                return -1;
            etcd.ttl_ms = (uint32_t)v;
            break;
        case O_LOGFILE: log_file = optarg; break;
        case O_REPLICAS:
            if (parse_num("--replicas", optarg, NS_MIN_REPLICAS, NS_MAX_REPLICAS, &v))
                return -1;
            cfg->replicas = (uint32_t)v;
            break;
        case O_BSIZE:
            if (parse_num("--block-size", optarg, NS_MIN_BLOCK_SIZE, NS_MAX_BLOCK_SIZE, &v))
                return -1;
            cfg->block_size = v;
            break;
        case O_HBTO:
            if (parse_num("--heartbeat-timeout-ms", optarg, 1, MAX_TIMEOUT_MS, &cfg->hb_timeout_ms))
                return -1;
            break;
        case O_SAFETO:
            if (parse_num("--safe-mode-timeout-ms", optarg, 0, MAX_TIMEOUT_MS, &cfg->safe_mode_ms))
                return -1;
            break;
        case O_TASKCAP:
            if (parse_num("--task-cap", optarg, 1, NS_MAX_TASK_CAP, &v))
                return -1;
            cfg->task_cap = (uint32_t)v;
            break;
        case O_COPYRATE:
            if (parse_num("--copy-rate-mb", optarg, 1, MAX_COPY_RATE_MB, &v))
                return -1;
            cfg->copy_rate = v * 1000 * 1000;
            break;
        case O_FRAMETO:
            if (parse_num("--frame-timeout-ms", optarg, 1, MAX_TIMEOUT_MS, &v))
                return -1;
            cfg->frame_ms = (uint32_t)v;
            break;
        case O_IDLETO:
            if (parse_num("--idle-timeout-ms", optarg, 1, MAX_TIMEOUT_MS, &v))
                return -1;
            cfg->idle_ms = (uint32_t)v;
            break;
        case O_MAXCONNS:
            if (parse_num("--max-conns", optarg, 1, 1000000, &v))
                return -1;
            cfg->max_conns = (uint32_t)v;
            break;
        case O_MAXPERADDR:
            if (parse_num("--max-conns-per-addr", optarg, 1, 1000000, &v))
                return -1;
            cfg->max_conns_per_addr = (uint32_t)v;
            break;
        case O_HELP: usage(stdout); exit(0);
        case O_VERSION: printf("nameserver (imgstore) %s\n", IMG_VERSION); exit(0);
        default:
            return bad_arg("%s %s", o == ':' ? "missing value for" : "unknown option",
                           argv[optind - 1]);
        }
    }
    if (optind < argc)
        return bad_arg("unexpected argument: %s", argv[optind]);
    struct sockaddr_storage ss;
    if (!cfg->listen || conn_parse_addr(cfg->listen, &ss) != 0)
        return bad_arg("--listen HOST:PORT is required (an IP address and a port)");
    if (!cfg->data_dir || !*cfg->data_dir)
        return bad_arg("--data DIR is required");
    if (cfg->http && conn_parse_addr(cfg->http, &ss) != 0)
        return bad_arg("--http: '%s' is not HOST:PORT (an IP address and a port)", cfg->http);
    if (etcd.advertise &&
        (conn_parse_addr(etcd.advertise, &ss) != 0 || conn_addr_is_any(etcd.advertise)))
        return bad_arg("--advertise: '%s' is not HOST:PORT with an address others can reach",
                       etcd.advertise);
    if (log_file && !*log_file)
        return bad_arg("--log-file: empty file name");
    if (!etcd.endpoints && (etcd.prefix || etcd.ttl_ms))
        return bad_arg("--etcd-prefix and --etcd-ttl-ms need --etcd");
    if (etcd.endpoints && !etcd.advertise) {
        etcd.advertise = cfg->listen;
        struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        conn_parse_addr(cfg->listen, &ss);
        if ((ss.ss_family == AF_INET && in4->sin_addr.s_addr == htonl(INADDR_ANY)) ||
            (ss.ss_family == AF_INET6 && IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr)) ||
            strcmp(cfg->listen + strlen(cfg->listen) - 2, ":0") == 0)
            return bad_arg("--etcd with --listen %s: give --advertise HOST:PORT (the address "
                           "clients reach this nameserver at)",
                           cfg->listen);
    }
    if (!keys_path && !insecure)
        return bad_arg("--keys FILE is required (or --insecure to run without authentication; "
                       "docs/security.md)");
    return 0;
}

/* What a signal stops (main's stack; the watchers are closed by the first
 * stopping signal so a second one is the default action). */
struct stopper {
    struct ns *ns;
    struct ns_http *http;
    uv_signal_t sig_int, sig_term, sig_hup;
};

static void close_signals(struct stopper *st)
{
    uv_signal_t *sigs[] = {&st->sig_int, &st->sig_term, &st->sig_hup};
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        if (!uv_is_closing((uv_handle_t *)sigs[i]))
            uv_close((uv_handle_t *)sigs[i], NULL);
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct stopper *st = h->data;
    sd_notify(0, "STOPPING=1");
    log_info("signal %d: shutting down", signum);
    ns_stop(st->ns);
    ns_http_stop(st->http);
    close_signals(st);
}

/* SIGHUP: the log file opened again (after a rotation), the keys file read
 * again when it changed. Failures are logged and change nothing. */
static void on_hup(uv_signal_t *h, int signum)
{
    struct stopper *st = h->data;
    log_reopen_on_hup();
    if (!st->ns->keys)
        return;
    char err[AUTH_ERR_MAX];
    int rc = auth_keys_reread(st->ns->keys, err);
    if (rc < 0)
        log_error("SIGHUP: %s", err); /* err says the old keys stay */
    else
        log_info("SIGHUP: keys file %s re-read: %zu keys", st->ns->keys->path,
                 st->ns->keys->n);
}

/* Stops everything on SIGINT and SIGTERM; SIGHUP reloads. The watchers do
 * not keep the loop alive by themselves. */
static void signals_start(uv_loop_t *loop, struct stopper *st)
{
    uv_signal_init(loop, &st->sig_int);
    uv_signal_init(loop, &st->sig_term);
    uv_signal_init(loop, &st->sig_hup);
    st->sig_int.data = st->sig_term.data = st->sig_hup.data = st;
    uv_signal_start(&st->sig_int, on_signal, SIGINT);
    uv_signal_start(&st->sig_term, on_signal, SIGTERM);
    uv_signal_start(&st->sig_hup, on_hup, SIGHUP);
    uv_unref((uv_handle_t *)&st->sig_int);
    uv_unref((uv_handle_t *)&st->sig_term);
    uv_unref((uv_handle_t *)&st->sig_hup);
}

int main(int argc, char **argv)
{
    log_set_component("ns");
    struct ns_config cfg = {.hb_timeout_ms = NS_DEFAULT_HB_TIMEOUT_MS,
                            .safe_mode_ms = NS_DEFAULT_SAFE_MODE_MS};
    if (parse_args(argc, argv, &cfg) != 0)
        return EXIT_BAD_ARGS; /* the one error line is already printed */
    if (log_file) {
        int lrc = log_open_file(log_file);
        if (lrc != 0) {
            fprintf(stderr, "nameserver: --log-file %s: %s\n", log_file, strerror(-lrc));
            return EXIT_BAD_ARGS;
        }
    }
    struct auth_keys *keys = NULL;
    if (keys_path) {
        char err[AUTH_ERR_MAX];
        if (auth_keys_load(keys_path, &keys, err) != 0) {
            fprintf(stderr, "nameserver: %s\n", err);
            return EXIT_BAD_ARGS;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    uv_loop_t loop;
    int rc = uv_loop_init(&loop);
    if (rc) {
        log_error("cannot start the event loop: %s", uv_strerror(rc));
        return 1;
    }
    static struct ns ns;
    struct ns_http *http = NULL; /* freed by itself once closed */
    struct stopper st = {.ns = &ns};
    int status = 0;
    int init_rc = ns_init(&ns, &cfg, uv_now(&loop));
    ns.keys = keys; /* ns_free frees them */
    if (keys)
        log_info("authentication on: keys %s (%zu keys)", keys->path, keys->n);
    else
        log_warn("authentication off (--insecure): anyone who reaches the port can register "
                 "servers, allocate, and run every admin command");
    if (init_rc == 0 && etcd.endpoints && ns_etcd_init(&ns, &etcd) != 0)
        init_rc = -1; /* logged */
    if (init_rc != 0) {
        status = 1;
    } else if (ns_start(&ns, &loop) != 0) {
        ns_stop(&ns);
        status = 1;
    } else if (cfg.http && ns_http_start(&ns, &loop, cfg.http, &http) != 0) {
        ns_stop(&ns);
        status = 1;
    } else {
        st.http = http;
        signals_start(&loop, &st);
        const char *adv = etcd.advertise ? etcd.advertise : cfg.listen;
        if (strcmp(adv, cfg.listen) != 0)
            log_info("advertised as %s (listening on %s)", adv, cfg.listen);
        sd_notifyf(0, "READY=1\nSTATUS=serving on %s%s%s", adv,
                   cfg.http ? ", http " : "", cfg.http ? cfg.http : "");
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    if (status == 0 && !uv_is_closing((uv_handle_t *)&st.sig_int)) {
        /* The loop ran dry without a signal: close the watchers. */
        close_signals(&st);
        uv_run(&loop, UV_RUN_DEFAULT);
    }
    if (status == 0)
        log_info("stopped");
    ns_free(&ns);
    uv_loop_close(&loop);
    return status;
}
