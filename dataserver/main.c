/* main.c - the dataserver process: command line, start-up and shut-down.
 *
 *   dataserver --ns HOST:PORT[,HOST:PORT...] --listen HOST:PORT --http HOST:PORT
 *              --data DIR[,DIR...]
 *              (--keys FILE [--member-key NAME] | --insecure)
 *              [--https HOST:PORT --tls-cert FILE --tls-key FILE] [--miss-exempt ADDRS]
 *
 * Without --keys the dataserver refuses to start unless --insecure says
 * authentication is off (docs/security.md); a keys file that is unusable
 * (mode, type, a malformed line) stops it with exit status 2.
 * Start-up order: open and recover the data folders (locks, server id, every
 * block) before listening, so a request never sees a half-loaded store; then
 * the native port, the HTTP port (and the HTTPS one) and the nameserver
 * session. The TLS certificate and key are loaded while the arguments are
 * checked: a bad one stops the start with exit code 2. SIGTERM/SIGINT
 * stop the loop; nothing acknowledged is ever pending at that point because
 * acknowledgements follow fdatasync. SIGHUP opens the log file again
 * (--log-file) and re-reads the keys file, the upload token file and the
 * TLS certificate and key; each outcome is logged, none is fatal. Under
 * systemd (Type=notify) READY=1 is sent once the server serves (a
 * nameserver confirmed its view: what /readyz says), STOPPING=1 at a stop.
 * --advertise / --advertise-http name the addresses the nameserver hands
 * out when --listen / --http bind another (0.0.0.0, a NAT'd address). */
#include "dataserver/codec.h"
#include "dataserver/ds.h"
#include "dataserver/ds_block.h"
#include "dataserver/ds_file.h"
#include "dataserver/ds_metrics.h"
#include "dataserver/ds_compact.h"
#include "dataserver/ds_copy.h"
#include "dataserver/ds_disk.h"
#include "dataserver/ds_ec.h"
#include "dataserver/ds_scrub.h"

#include "base/err.h"
#include "base/log.h"
#include "net/http_tls.h"

#include <systemd/sd-daemon.h>

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef IMG_VERSION
#define IMG_VERSION "unknown" /* the Makefile passes client/imgstore.h's */
#endif

/* A usage error's second line (the first says what was wrong); returns the
 * exit status 2. */
static int try_help(void)
{
    fprintf(stderr, "try 'dataserver --help'\n");
    return 2;
}

/* --help: the whole usage on stdout. */
static void usage(FILE *out)
{
    fprintf(out, "usage: dataserver --ns HOST:PORT[,HOST:PORT...] --listen HOST:PORT "
                 "--http HOST:PORT --data DIR[,DIR...]\n"
                 "       (--keys FILE [--member-key NAME] | --insecure)\n"
                 "       [--advertise HOST:PORT] [--advertise-http HOST:PORT] (the native and\n"
                 "        HTTP addresses others reach this server at, when --listen / --http\n"
                 "        bind others, e.g. 0.0.0.0:PORT or behind NAT)\n"
                 "       [--log-file FILE (log there instead of stderr; SIGHUP reopens it)]\n"
                 "       [--upload-token-file FILE] [--max-upload-bytes N] [--max-inflight N]\n"
                 "       [--http-idle-ms MS] [--http-header-timeout-ms MS]\n"
                 "       [--scrub-rate-mb MB_PER_S (default 5, 0: off)]\n"
                 "       [--compress-level N (zstd level 1-19 of compressible uploads,\n"
                 "        default 17, at most 9 above 1 MiB; 0: store every upload as sent)]\n"
                 "       [--copy-sync-mb MIB (a copy or compaction fdatasyncs every MIB\n"
                 "        written; default 1, larger for disks with a slow cache flush)]\n"
                 "       [--capacity BYTES[k|M|G|T] (capacity reported per data folder, at most\n"
                 "        its file system's; for several servers sharing one disk)]\n"
                 "       [--max-receive-mb MIB (upload bodies being received at once, native\n"
                 "        and HTTP; past it uploads are answered busy; default 256)]\n"
                 "       [--frame-timeout-ms MS (a native frame must be whole within MS plus\n"
                 "        1 s per 256 KiB of it from its first byte; default 30000)]\n"
                 "       [--idle-timeout-ms MS (idle native connections; default 300000)]\n"
                 "       [--max-conns N (per port; default 4096)]\n"
                 "       [--max-conns-per-addr N (per port and client address; default 256)]\n"
                 "       [--miss-rate N (HTTP 404s a second per client address before 429;\n"
                 "        default 100, 0: off)] [--miss-burst N (default 200)]\n"
                 "       [--miss-exempt ADDR[/BITS][,...] (never slowed by 404s: CDN shields)]\n"
                 "       [--https HOST:PORT --tls-cert FILE --tls-key FILE (the origin over\n"
                 "        TLS 1.2/1.3 too; both files are reloaded when they change)]\n"
                 "       [--help] [--version]\n"
                 "\n"
                 "signals: SIGTERM/SIGINT stop it (exit 0); SIGHUP re-reads the keys, upload\n"
                 "token and TLS files and reopens the log file. Under systemd it reports\n"
                 "readiness (Type=notify) once a nameserver confirmed its view.\n"
                 "environment: IMGSTORE_LOG=debug|info|warn|error|off (default info).\n"
                 "exit status: 0 stopped, 1 start-up failure, 2 bad arguments or keys file\n");
}

/* Reads the HTTP upload secret (--upload-token-file, deprecated: a writer
 * key of the keys file does the same): the file's first line, without
 * surrounding white space; 1 to 4096 bytes of visible characters. The file
 * must be a regular file neither group nor others may read or write, like a
 * keys file. Returns 0, or -1 with the reason in err (the token in force,
 * if any, stays). */
static int read_token(const char *path, struct ds *ds, char *err, size_t errlen)
{
    char buf[4098], aerr[AUTH_ERR_MAX];
    struct stat st;
    int fd = auth_file_open(path, &st, aerr);
    if (fd < 0) {
        snprintf(err, errlen, "--upload-token-file: %s", aerr);
        return -1;
    }
    FILE *f = fdopen(fd, "r");
    if (!f) {
        close(fd);
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = buf;
    while (*p == ' ' || *p == '\t')
        p++;
    size_t len = strcspn(p, "\r\n");
    while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
        len--;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)p[i] <= ' ' || (unsigned char)p[i] >= 0x7f)
            len = 0;
    if (len == 0 || len > 4096) {
        snprintf(err, errlen, "%s must hold one token of 1 to 4096 visible characters", path);
        return -1;
    }
    char *tok = strndup(p, len);
    if (!tok) {
        snprintf(err, errlen, "%s: out of memory", path);
        return -1;
    }
    free(ds->http_token); /* a reload (SIGHUP) replaces the one in force */
    ds->http_token = tok;
    ds->http_token_len = len;
    return 0;
}

/* Parses a positive integer option. Returns 0 or -1 (with a message). */
static int parse_pos(const char *arg, const char *what, uint64_t max, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(arg, &end, 10);
    if (errno || end == arg || *end || v == 0 || v > max || arg[0] == '-') {
        fprintf(stderr, "dataserver: %s wants a number from 1 to %llu\n", what,
                (unsigned long long)max);
        return -1;
    }
    *out = v;
    return 0;
}

/* Parses --capacity: a positive number of bytes with an optional binary
 * suffix k, M, G or T (KiB .. TiB). Returns 0 or -1 (with a message). */
static int parse_capacity(const char *arg, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(arg, &end, 10);
    unsigned shift = 0;
    if (*end && !end[1]) {
        const char *p = strchr("kMGT", *end);
        shift = p && *end ? 10u * (unsigned)(p - "kMGT" + 1) : 64;
        end++;
    }
    if (errno || end == arg || *end || arg[0] == '-' || v == 0 || shift >= 64 ||
        v > (UINT64_MAX >> shift)) {
        fprintf(stderr, "dataserver: --capacity wants a positive number of bytes, "
                        "optionally with k, M, G or T (e.g. 256M)\n");
        return -1;
    }
    *out = (uint64_t)v << shift;
    return 0;
}

static int copy_addr(char *dst, const char *src, const char *what)
{
    struct sockaddr_storage ss;
    if (strlen(src) >= DS_ADDR_MAX || conn_parse_addr(src, &ss) != 0) {
        fprintf(stderr, "dataserver: bad %s address '%s' (want HOST:PORT)\n", what, src);
        return -1;
    }
    strcpy(dst, src);
    return 0;
}

/* --ns: one nameserver or several (proto/nslist.h), each an address the
 * loop can connect to; the dataserver keeps a session with each. */
static int parse_ns(struct ds *ds, const char *src)
{
    struct sockaddr_storage ss;
    int ok = nslist_parse(src, &ds->ns_list) == 0;
    for (int i = 0; ok && i < ds->ns_list.n; i++)
        ok = strlen(ds->ns_list.addr[i]) < DS_ADDR_MAX &&
             conn_parse_addr(ds->ns_list.addr[i], &ss) == 0;
    if (!ok) {
        fprintf(stderr,
                "dataserver: bad --ns address list '%s' (want HOST:PORT[,HOST:PORT...], at "
                "most %d, no duplicates)\n",
                src, NSLIST_MAX);
        return -1;
    }
    strcpy(ds->ns_addr, ds->ns_list.addr[0]);
    return 0;
}

static int split_dirs(char *arg, char **dirs, int max)
{
    int n = 0;
    for (char *save = NULL, *tok = strtok_r(arg, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        if (n == max)
            return -1;
        dirs[n++] = tok;
    }
    return n;
}

/* Long options without a short letter. */
enum { OPT_HTTPS = 0x200, OPT_TLS_CERT, OPT_TLS_KEY, OPT_MISS_EXEMPT, OPT_VERSION, OPT_ADVERTISE,
       OPT_ADVERTISE_HTTP, OPT_LOG_FILE, OPT_COMPRESS };

/* Paths kept for SIGHUP; NULL when not given. */
static const char *token_path, *log_file;

/* Checks the HTTPS flags and loads the certificate and key into ds->tls.
 * Returns 0 or -1 (with one line on stderr). */
static int tls_setup(struct ds *ds, const char *cert, const char *key)
{
    char err[600];
    if (!ds->https_addr[0] && !cert && !key)
        return 0;
    if (!ds->https_addr[0] || !cert || !key) {
        fprintf(stderr, "dataserver: --https, --tls-cert and --tls-key go together\n");
        return -1;
    }
    if (http_tls_new(cert, key, &ds->tls, err, sizeof(err)) != 0) {
        fprintf(stderr, "dataserver: %s\n", err);
        return -1;
    }
    return 0;
}

/* Applies --advertise(-http) to one port: `addr` (the --listen or --http
 * value) becomes the bound address `bind` and `adv` the known one. Without
 * adv, a wildcard address (0.0.0.0, ::) is refused: the nameserver would
 * hand it to clients. Returns 0 or -1 (printed). */
static int advertise_address(char *addr, char *bind, const char *adv, const char *flag,
                             const char *adv_flag)
{
    if (!adv) {
        if (conn_addr_is_any(addr)) {
            fprintf(stderr, "dataserver: %s %s binds every address: give %s HOST:PORT, the "
                            "address others reach it at\n", flag, addr, adv_flag);
            return -1;
        }
        return 0;
    }
    if (strlen(adv) >= DS_ADDR_MAX || conn_addr_is_any(adv)) {
        fprintf(stderr, "dataserver: %s '%s' is not HOST:PORT with an address others can "
                        "reach\n", adv_flag, adv);
        return -1;
    }
    char tmp[DS_ADDR_MAX];
    if (copy_addr(tmp, adv, adv_flag) != 0)
        return -1;
    snprintf(bind, DS_ADDR_MAX, "%s", addr);
    snprintf(addr, DS_ADDR_MAX, "%s", tmp);
    return 0;
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct ds *ds = h->data;
    sd_notify(0, "STOPPING=1");
    log_info("signal %d: stopping", signum);
    ds->stopping = 1;
    uv_stop(ds->loop);
}

/* SIGHUP: the log file opened again (after a rotation), the keys file, the
 * upload token file and the TLS files read again. Each failure is logged
 * and keeps what is in force. */
static void on_hup(uv_signal_t *h, int signum)
{
    struct ds *ds = h->data;
    log_reopen_on_hup();
    int rc;
    char err[AUTH_ERR_MAX + 64];
    if (ds->keys) {
        rc = auth_keys_reread(ds->keys, err);
        if (rc < 0)
            log_error("SIGHUP: %s", err); /* err says the old keys stay */
        else
            log_info("SIGHUP: keys file %s re-read: %zu keys", ds->keys->path,
                     ds->keys->n);
    }
    if (token_path) {
        if (read_token(token_path, ds, err, sizeof(err)) != 0)
            log_error("SIGHUP: %s (the token in force stays)", err);
        else
            log_info("SIGHUP: upload token file %s re-read", token_path);
    }
    if (ds->tls && http_tls_reload(ds->tls) == 0)
        log_info("SIGHUP: TLS certificate and key re-read");
}

/* Sends READY=1 to systemd once the server serves (its view confirmed by a
 * nameserver, as /readyz says), then stops looking. */
static void ready_tick(uv_timer_t *t)
{
    struct ds *ds = t->data;
    if (!ds->view_confirmed)
        return;
    sd_notifyf(0, "READY=1\nSTATUS=serving native %s, http %s", ds->listen_addr, ds->http_addr);
    log_info("ready: serving (nameserver %s confirmed our view)", ds->ns_addr);
    uv_timer_stop(t);
}

int main(int argc, char **argv)
{
    static struct option opts[] = {{"ns", required_argument, NULL, 'n'},
                                   {"listen", required_argument, NULL, 'l'},
                                   {"http", required_argument, NULL, 'H'},
                                   {"data", required_argument, NULL, 'd'},
                                   {"upload-token-file", required_argument, NULL, 'T'},
                                   {"max-upload-bytes", required_argument, NULL, 'U'},
                                   {"max-inflight", required_argument, NULL, 'I'},
                                   {"http-idle-ms", required_argument, NULL, 'i'},
                                   {"http-header-timeout-ms", required_argument, NULL, 't'},
                                   {"scrub-rate-mb", required_argument, NULL, 'S'},
                                   {"compress-level", required_argument, NULL, OPT_COMPRESS},
                                   {"copy-sync-mb", required_argument, NULL, 'Y'},
                                   {"capacity", required_argument, NULL, 'C'},
                                   {"max-receive-mb", required_argument, NULL, 'R'},
                                   {"frame-timeout-ms", required_argument, NULL, 'F'},
                                   {"idle-timeout-ms", required_argument, NULL, 'D'},
                                   {"max-conns", required_argument, NULL, 'M'},
                                   {"max-conns-per-addr", required_argument, NULL, 'A'},
                                   {"miss-rate", required_argument, NULL, 'm'},
                                   {"miss-burst", required_argument, NULL, 'b'},
                                   {"keys", required_argument, NULL, 'K'},
                                   {"member-key", required_argument, NULL, 'k'},
                                   {"insecure", no_argument, NULL, 'X'},
                                   {"miss-exempt", required_argument, NULL, OPT_MISS_EXEMPT},
                                   {"https", required_argument, NULL, OPT_HTTPS},
                                   {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
                                   {"tls-key", required_argument, NULL, OPT_TLS_KEY},
                                   {"help", no_argument, NULL, 'h'},
                                   {"version", no_argument, NULL, OPT_VERSION},
                                   {"advertise", required_argument, NULL, OPT_ADVERTISE},
                                   {"advertise-http", required_argument, NULL, OPT_ADVERTISE_HTTP},
                                   {"log-file", required_argument, NULL, OPT_LOG_FILE},
                                   {NULL, 0, NULL, 0}};
    static struct ds ds;
    char *data = NULL;
    const char *keys_path = NULL, *member_key = NULL;
    int insecure = 0;
    const char *tls_cert = NULL, *tls_key = NULL;
    const char *advertise = NULL, *advertise_http = NULL;
    char err[AUTH_ERR_MAX + 64];
    int have_ns = 0, have_listen = 0, have_http = 0, have_scrub = 0, have_compress = 0;
    uint64_t num, capacity = 0;
    int c;
    log_set_component("ds");
    opterr = 0; /* our own one line per problem */
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'n':
            if (parse_ns(&ds, optarg) != 0)
                return try_help();
            have_ns = 1;
            break;
        case 'l':
            if (copy_addr(ds.listen_addr, optarg, "--listen") != 0)
                return try_help();
            have_listen = 1;
            break;
        case 'H':
            if (copy_addr(ds.http_addr, optarg, "--http") != 0)
                return try_help();
            have_http = 1;
            break;
        case 'd':
            data = optarg;
            break;
        case 'T':
            token_path = optarg;
            if (read_token(optarg, &ds, err, sizeof(err)) != 0) {
                fprintf(stderr, "dataserver: %s\n", err);
                return try_help();
            }
            break;
        case OPT_ADVERTISE:
            advertise = optarg;
            break;
        case OPT_ADVERTISE_HTTP:
            advertise_http = optarg;
            break;
        case OPT_LOG_FILE:
            log_file = optarg;
            break;
        case 'U':
            if (parse_pos(optarg, "--max-upload-bytes", NEEDLE_MAX_DATA, &num) != 0)
                return try_help();
            ds.http_max_upload = num;
            break;
        case 'I':
            if (parse_pos(optarg, "--max-inflight", 1000000, &num) != 0)
                return try_help();
            ds.http_max_inflight = (int)num;
            break;
        case 'i':
            if (parse_pos(optarg, "--http-idle-ms", 86400000, &num) != 0)
                return try_help();
            ds.http_idle_ms = (int)num;
            break;
        case 't':
            if (parse_pos(optarg, "--http-header-timeout-ms", 86400000, &num) != 0)
                return try_help();
            ds.http_header_ms = (int)num;
            break;
        case 'S':
            if (strcmp(optarg, "0") == 0)
                num = 0;
            else if (parse_pos(optarg, "--scrub-rate-mb", 100000, &num) != 0)
                return try_help();
            ds.scrub_rate = num * 1000 * 1000;
            have_scrub = 1;
            break;
        case OPT_COMPRESS:
            if (strcmp(optarg, "0") == 0)
                num = 0;
            else if (parse_pos(optarg, "--compress-level", CODEC_LEVEL_MAX, &num) != 0)
                return try_help();
            ds.compress_level = (int)num;
            have_compress = 1;
            break;
        case 'Y':
            if (parse_pos(optarg, "--copy-sync-mb", DS_COPY_SYNC_MAX_MB, &num) != 0)
                return try_help();
            ds.copy_sync_bytes = num << 20;
            break;
        case 'C':
            if (parse_capacity(optarg, &capacity) != 0)
                return try_help();
            break;
        case 'R':
            if (parse_pos(optarg, "--max-receive-mb", 1u << 20, &num) != 0)
                return try_help();
            ds.recv_budget = num << 20;
            break;
        case 'F':
            if (parse_pos(optarg, "--frame-timeout-ms", 86400000, &num) != 0)
                return try_help();
            ds.frame_ms = (uint32_t)num;
            break;
        case 'D':
            if (parse_pos(optarg, "--idle-timeout-ms", 86400000, &num) != 0)
                return try_help();
            ds.idle_ms = (uint32_t)num;
            break;
        case 'M':
            if (parse_pos(optarg, "--max-conns", 1000000, &num) != 0)
                return try_help();
            ds.max_conns = (uint32_t)num;
            break;
        case 'A':
            if (parse_pos(optarg, "--max-conns-per-addr", 1000000, &num) != 0)
                return try_help();
            ds.max_conns_per_addr = (uint32_t)num;
            break;
        case 'm':
            if (strcmp(optarg, "0") == 0)
                num = 0;
            else if (parse_pos(optarg, "--miss-rate", 1000000, &num) != 0)
                return try_help();
            ds.miss_rate = (double)num;
            if (!ds.miss_rate_set && ds.miss_burst == 0)
                ds.miss_burst = DS_MISS_BURST;
            ds.miss_rate_set = 1;
            break;
        case 'b':
            if (parse_pos(optarg, "--miss-burst", 1000000, &num) != 0)
                return try_help();
            ds.miss_burst = (double)num;
            if (!ds.miss_rate_set)
                ds.miss_rate = DS_MISS_RATE;
            ds.miss_rate_set = 1;
            break;
        case 'K':
            keys_path = optarg;
            break;
        case 'k':
            member_key = optarg;
            break;
        case 'X':
            insecure = 1;
            break;
        case OPT_MISS_EXEMPT:
            if (addr_set_parse(&ds.miss_exempt, optarg, err, sizeof(err)) != 0) {
                fprintf(stderr, "dataserver: --miss-exempt: %s\n", err);
                return try_help();
            }
            break;
        case OPT_HTTPS:
            if (copy_addr(ds.https_addr, optarg, "--https") != 0)
                return try_help();
            break;
        case OPT_TLS_CERT:
            tls_cert = optarg;
            break;
        case OPT_TLS_KEY:
            tls_key = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case OPT_VERSION:
            printf("dataserver (imgstore) %s\n", IMG_VERSION);
            return 0;
        default:
            fprintf(stderr, "dataserver: %s: %s\n", c == ':' ? "missing value for" : "unknown option",
                    argv[optind - 1]);
            return try_help();
        }
    }
    const char *missing = !have_ns ? "--ns HOST:PORT" : !have_listen ? "--listen HOST:PORT"
                          : !have_http ? "--http HOST:PORT" : !data ? "--data DIR[,DIR...]" : NULL;
    if (optind != argc) {
        fprintf(stderr, "dataserver: unexpected argument: %s\n", argv[optind]);
        return try_help();
    }
    if (missing) {
        fprintf(stderr, "dataserver: %s is required\n", missing);
        return try_help();
    }
    if (advertise_address(ds.listen_addr, ds.listen_bind, advertise, "--listen",
                          "--advertise") != 0 ||
        advertise_address(ds.http_addr, ds.http_bind, advertise_http, "--http",
                          "--advertise-http") != 0)
        return try_help();
    if (log_file) {
        int lrc = *log_file ? log_open_file(log_file) : -ENOENT;
        if (lrc != 0) {
            fprintf(stderr, "dataserver: --log-file %s: %s\n", log_file, strerror(-lrc));
            return 2;
        }
    }
    if (!keys_path && !insecure) {
        fprintf(stderr, "dataserver: --keys FILE is required (or --insecure to run without "
                        "authentication; docs/security.md)\n");
        return try_help();
    }
    if (keys_path) {
        char err[AUTH_ERR_MAX];
        if (auth_keys_load(keys_path, &ds.keys, err) != 0) {
            fprintf(stderr, "dataserver: %s\n", err);
            return 2;
        }
        const struct auth_key *mk = member_key ? auth_keys_find(ds.keys, member_key)
                                               : auth_keys_first(ds.keys, AUTH_MEMBER);
        if (!mk || mk->role != AUTH_MEMBER) {
            fprintf(stderr, "dataserver: %s: no member key%s%s\n", keys_path,
                    member_key ? " named " : "", member_key ? member_key : "");
            return 2;
        }
        snprintf(ds.member_key, sizeof(ds.member_key), "%s", mk->name);
    }
    char *dirs[STORE_MAX_DISKS];
    int ndirs = split_dirs(data, dirs, STORE_MAX_DISKS);
    if (ndirs <= 0) {
        fprintf(stderr, "dataserver: --data needs 1 to %d folders\n", STORE_MAX_DISKS);
        return try_help();
    }
    if (tls_setup(&ds, tls_cert, tls_key) != 0)
        return 2;
    signal(SIGPIPE, SIG_IGN);
    if (!have_scrub)
        ds.scrub_rate = (uint64_t)DS_SCRUB_DEFAULT_MB * 1000 * 1000;

    ds_file_tune_malloc();
    ds.loop = uv_default_loop();
    int rc = store_open(ds.loop, dirs, ndirs, &ds.store);
    if (rc != 0) {
        fprintf(stderr, "dataserver: cannot open data folders: %s\n", img_strerror(rc));
        log_error("cannot open data folders: %s", img_strerror(rc));
        return 1;
    }
    log_info("server %s: %d data folder(s), %u blocks loaded", ds.store->server_id,
             ds.store->ndisks, ds.store->nblocks);
    ds.store->capacity_cap = capacity;
    if (ds_ec_load(&ds) != 0) {
        log_error("cannot load erasure-coded shards: out of memory");
        store_close(ds.store);
        return 1;
    }
    if (ds_auth_load_cluster(&ds) != 0) {
        fprintf(stderr, "dataserver: cannot read the stored cluster id (see the log)\n");
        store_close(ds.store);
        return 1;
    }
    if (ds.keys)
        log_info("authentication on: keys %s (%zu keys), member key '%s'%s%s", ds.keys->path,
                 ds.keys->n, ds.member_key, ds.cluster_id[0] ? ", cluster " : "",
                 ds.cluster_id);
    else
        log_warn("authentication off (--insecure): anyone who reaches the ports can write, "
                 "delete and act as a cluster member");
    ds_auth_start(&ds);
    if (capacity)
        log_info("capacity of each data folder limited to %llu bytes (--capacity)",
                 (unsigned long long)capacity);
    rc = ds_rpc_start(&ds);
    if (rc != 0) {
        log_error("cannot listen on %s: %s", ds.listen_addr, uv_strerror(rc));
        store_close(ds.store);
        return 1;
    }
    rc = ds_http_start(&ds);
    if (rc != 0) {
        log_error("cannot listen on %s (http): %s", ds.http_addr, uv_strerror(rc));
        store_close(ds.store);
        return 1;
    }
    if (ds.tls && (rc = ds_https_start(&ds)) != 0) {
        log_error("cannot listen on %s (https): %s", ds.https_addr, uv_strerror(rc));
        store_close(ds.store);
        return 1;
    }
    if (!have_compress)
        ds.compress_level = CODEC_LEVEL_DEFAULT;
    ds_session_start(&ds);
    if (ds_disk_start(&ds) != 0)
        log_warn("disk checks: cannot start (out of memory)");
    ds.scrub_rate_own = ds.scrub_rate;
    if (ds_scrub_start(&ds) != 0)
        log_warn("scrub: cannot start (out of memory)");
    char nsl[NSLIST_STR_MAX];
    log_info("serving native %s, http %s%s%s, nameserver %s", ds.listen_addr, ds.http_addr,
             ds.tls ? ", https " : "", ds.tls ? ds.https_addr : "",
             nslist_format(&ds.ns_list, nsl, sizeof(nsl)));

    if (ds.listen_bind[0] || ds.http_bind[0])
        log_info("bound to native %s, http %s; advertised as native %s, http %s",
                 ds.listen_bind[0] ? ds.listen_bind : ds.listen_addr,
                 ds.http_bind[0] ? ds.http_bind : ds.http_addr, ds.listen_addr, ds.http_addr);
    sd_notifyf(0, "STATUS=listening; waiting for nameserver %s to confirm our view", ds.ns_addr);

    uv_signal_t sigterm, sigint, sighup;
    uv_signal_init(ds.loop, &sigterm);
    uv_signal_init(ds.loop, &sigint);
    uv_signal_init(ds.loop, &sighup);
    sigterm.data = sigint.data = sighup.data = &ds;
    uv_signal_start(&sigterm, on_signal, SIGTERM);
    uv_signal_start(&sigint, on_signal, SIGINT);
    uv_signal_start(&sighup, on_hup, SIGHUP);
    uv_timer_t ready_timer;
    uv_timer_init(ds.loop, &ready_timer);
    ready_timer.data = &ds;
    uv_timer_start(&ready_timer, ready_tick, 0, 100);
    uv_unref((uv_handle_t *)&ready_timer);

    ds_metrics_lag_start(&ds);
    uv_run(ds.loop, UV_RUN_DEFAULT);

    /* Shut down: stop taking work, let in-flight disk I/O finish, close. */
    ds_session_stop(&ds);
    ds_auth_stop(&ds);
    ds_copy_stop(&ds);
    ds_block_stop(&ds);
    ds_compact_stop(&ds);
    ds_scrub_stop(&ds);
    ds_disk_stop(&ds);
    ds_peer_close_all(&ds);
    ds_http_stop(&ds);
    ds_metrics_lag_stop(&ds);
    uv_close((uv_handle_t *)&ds.listen_tcp, NULL);
    uv_close((uv_handle_t *)&sigterm, NULL);
    uv_close((uv_handle_t *)&sigint, NULL);
    uv_close((uv_handle_t *)&sighup, NULL);
    uv_close((uv_handle_t *)&ready_timer, NULL);
    uv_run(ds.loop, UV_RUN_NOWAIT);
    ds_ec_close(&ds);
    store_close(ds.store);
    auth_keys_free(ds.keys);
    log_info("stopped");
    return 0;
}
