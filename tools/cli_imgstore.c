/* cli_imgstore.c - the `imgstore` command: put, get, rm and stat files on an
 * imgstore cluster through the client library.
 *
 * Exit status: 0 success; 1 a failure, reported as exactly one line on
 * stderr ("imgstore: get NAME: file not found"); 2 a usage error, reported
 * as one line saying what was wrong and "try 'imgstore --help'" on stderr
 * (--help prints the usage on stdout, --version the version).
 * docs/client.md is the reference. */
#include "tools/cli_bench.h"
#include "tools/cli_util.h"
#include "client/imgstore.h"
#include "base/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define EXIT_OK 0
#define EXIT_FAIL 1
#define EXIT_USAGE 2
#define DEFAULT_NS "127.0.0.1:7400"
#define PUT_MAX_BYTES (32u << 20) /* imgstore_put's limit, see imgstore.h */
#define READ_CHUNK (64u << 10)
#define TIME_BUF 32

static const char *prog = "imgstore";

static void usage(FILE *fp)
{
    fprintf(fp,
            "usage: imgstore [--ns HOST:PORT[,...]] [--timeout MS] [--key-file F] COMMAND "
            "[ARGS]\n"
            "\n"
            "commands:\n"
            "  put [--mime TYPE] FILE...  store files, print one name per line\n"
            "  get NAME [-o OUT]          write a file's bytes to OUT or stdout\n"
            "  rm NAME                    delete a file\n"
            "  stat NAME                  print a file's metadata\n"
            "  bench [OPTIONS]            upload then read files, report ops/s and latency\n"
            "                             (imgstore bench --help lists its options)\n"
            "\n"
            "options:\n"
            "  --ns HOST:PORT[,HOST:PORT...]\n"
            "                   nameserver(s): a leader and its standbys (default\n"
            "                   $IMGSTORE_NS or %s)\n"
            "  --timeout MS     whole-operation timeout in milliseconds (default 10000)\n"
            "  --key-file F     key for put and rm (default $IMGSTORE_KEY_FILE; reads need none)\n"
            "  -h, --help       print this help\n"
            "  --version        print the version\n"
            "\n"
            "exit status: 0 success, 1 failure, 2 usage error\n",
            DEFAULT_NS);
}

/* Reports a usage error as one line plus "try 'imgstore --help'"; returns
 * EXIT_USAGE. */
static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", prog);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    cli_try_help(prog, NULL);
    return EXIT_USAGE;
}

/* Names what getopt_long found wrong ("+:..." optstrings return ':' for a
 * missing argument). */
static const char *opt_problem(int c)
{
    return c == ':' ? "missing argument for" : "unknown option";
}

/* Parses the one option of command `cmd`, --NAME VALUE or -LETTER VALUE,
 * into *value (left as it is when absent); optind is then at the first
 * operand. Returns EXIT_OK, or the usage error's status (printed). */
static int one_option(const char *cmd, int argc, char **argv, const char *name, char letter,
                      const char **value)
{
    const struct option longopts[] = {{name, required_argument, NULL, letter},
                                      {NULL, 0, NULL, 0}};
    const char optstring[] = {':', letter, ':', '\0'};
    int c;
    optind = 0;
    while ((c = getopt_long(argc, argv, optstring, longopts, NULL)) != -1) {
        if (c == letter)
            *value = optarg;
        else
            return usage_error("%s: %s %s", cmd, opt_problem(c), argv[optind - 1]);
    }
    return EXIT_OK;
}

/* Reports a failure of `cmd` on `what` as one line and returns EXIT_FAIL. */
static int fail(const char *cmd, const char *what, const char *why)
{
    fprintf(stderr, "%s: %s %s: %s\n", prog, cmd, what, why);
    return EXIT_FAIL;
}

/* Reads a whole file ("-" is stdin) of at most PUT_MAX_BYTES into a
 * malloc'd buffer owned by the caller. Returns 0, -EFBIG, or -errno. */
static int read_file(const char *path, uint8_t **out, size_t *len)
{
    int fd = strcmp(path, "-") == 0 ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    uint8_t *buf = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    struct stat sb;
    if (fstat(fd, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        rc = -EISDIR;
        goto err;
    }
    for (;;) {
        if (n == cap) {
            if (cap > PUT_MAX_BYTES) {
                rc = -EFBIG;
                goto err;
            }
            size_t ncap = cap ? cap * 2 : READ_CHUNK;
            uint8_t *p = realloc(buf, ncap + 1);
            if (!p) {
                rc = -ENOMEM;
                goto err;
            }
            buf = p;
            cap = ncap;
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            rc = -errno;
            goto err;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    if (n > PUT_MAX_BYTES) {
        rc = -EFBIG;
        goto err;
    }
    if (fd != STDIN_FILENO)
        close(fd);
    *out = buf;
    *len = n;
    return 0;
err:
    if (fd != STDIN_FILENO)
        close(fd);
    free(buf);
    return rc;
}

static int cmd_put(imgstore_t *h, int argc, char **argv)
{
    const char *mime = NULL;
    int rc = one_option("put", argc, argv, "mime", 'm', &mime);
    if (rc != EXIT_OK)
        return rc;
    if (optind >= argc)
        return usage_error("put: missing FILE");
    for (int i = optind; i < argc; i++) {
        uint8_t *data = NULL;
        size_t len = 0;
        rc = read_file(argv[i], &data, &len);
        if (rc == -EFBIG)
            return fail("put", argv[i], imgstore_strerror(IMGSTORE_ETOOBIG));
        if (rc != 0)
            return fail("put", argv[i], strerror(-rc));
        if (len == 0) { /* the library refuses it too (IMGSTORE_EINVAL) */
            free(data);
            return fail("put", argv[i], "empty file: nothing to store");
        }
        char name[IMGSTORE_NAME_MAX];
        rc = imgstore_put(h, data, len, mime, name);
        free(data);
        if (rc != 0)
            return fail("put", argv[i], imgstore_strerror(rc));
        printf("%s\n", name);
        fflush(stdout);
    }
    return EXIT_OK;
}

static int cmd_get(imgstore_t *h, int argc, char **argv)
{
    const char *outpath = NULL;
    int rc = one_option("get", argc, argv, "output", 'o', &outpath);
    if (rc != EXIT_OK)
        return rc;
    if (optind + 1 != argc)
        return usage_error("get: expected exactly one NAME");
    const char *name = argv[optind];
    void *data = NULL;
    size_t len = 0;
    rc = imgstore_get(h, name, &data, &len);
    if (rc != 0)
        return fail("get", name, imgstore_strerror(rc));
    int status = EXIT_OK;
    if (outpath) {
        rc = fs_write_atomic(outpath, data, len);
        if (rc != 0) {
            fprintf(stderr, "%s: get %s: %s: %s\n", prog, name, outpath, strerror(-rc));
            status = EXIT_FAIL;
        }
    } else {
        rc = fs_write_full(STDOUT_FILENO, data, len);
        if (rc != 0) {
            fprintf(stderr, "%s: get %s: stdout: %s\n", prog, name, strerror(-rc));
            status = EXIT_FAIL;
        }
    }
    imgstore_free(data);
    return status;
}

/* Checks that a command got exactly one NAME and no options. */
static int one_name(const char *cmd, int argc, char **argv)
{
    if (argc != 2 || (argv[1][0] == '-' && argv[1][1] != '\0')) {
        return usage_error("%s: expected exactly one NAME", cmd);
    }
    return EXIT_OK;
}

static int cmd_rm(imgstore_t *h, int argc, char **argv)
{
    int rc = one_name("rm", argc, argv);
    if (rc != EXIT_OK)
        return rc;
    int was_deleted = 0;
    rc = imgstore_unlink2(h, argv[1], &was_deleted);
    if (rc != 0)
        return fail("rm", argv[1], imgstore_strerror(rc));
    if (was_deleted) /* success all the same: a retried rm is safe */
        fprintf(stderr, "imgstore: rm %s: note: the file was already deleted\n", argv[1]);
    return EXIT_OK;
}

static int cmd_stat(imgstore_t *h, int argc, char **argv)
{
    int rc = one_name("stat", argc, argv);
    if (rc != EXIT_OK)
        return rc;
    struct imgstore_stat st;
    rc = imgstore_stat(h, argv[1], &st);
    if (rc != 0)
        return fail("stat", argv[1], imgstore_strerror(rc));
    char created[TIME_BUF] = "-";
    time_t t = (time_t)st.created;
    struct tm tm;
    if (gmtime_r(&t, &tm))
        strftime(created, sizeof(created), "%Y-%m-%dT%H:%M:%SZ", &tm);
    printf("name: %s\n", argv[1]);
    printf("size: %u\n", st.size);
    printf("block: %llu\n", (unsigned long long)st.block_id);
    printf("seq: %u\n", st.seq);
    printf("offset: %llu\n", (unsigned long long)st.offset);
    printf("mime: %s\n", st.mime);
    printf("crc32c: %08x\n", st.crc32c);
    printf("created: %s\n", created);
    printf("replicas: ");
    for (int i = 0; i < st.nreplicas; i++)
        printf("%s%s", i ? "," : "", st.replicas[i]);
    printf("\n");
    return EXIT_OK;
}

struct command {
    const char *name;
    int (*run)(imgstore_t *h, int argc, char **argv);
};

static const struct command commands[] = {
    {"put", cmd_put},
    {"get", cmd_get},
    {"rm", cmd_rm},
    {"stat", cmd_stat},
    {"bench", cli_bench},
};

int main(int argc, char **argv)
{
    struct cli_globals g;
    const char *bad = NULL;
    switch (cli_parse_globals(argc, argv, 0, DEFAULT_NS, &g, &bad)) {
    case CLI_GLOBALS_OK:
        break;
    case CLI_GLOBALS_HELP:
        usage(stdout);
        return EXIT_OK;
    case CLI_GLOBALS_VERSION:
        cli_print_version(prog);
        return EXIT_OK;
    case CLI_GLOBALS_BAD_TIMEOUT:
        return usage_error("invalid --timeout '%s'", bad);
    case CLI_GLOBALS_MISSING:
        return usage_error("missing argument for %s", bad);
    default:
        return usage_error("unknown option %s", bad);
    }
    if (optind >= argc)
        return usage_error("missing command");
    const char *cmd = argv[optind];
    const struct command *run = NULL;
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(commands[i].name, cmd) == 0)
            run = &commands[i];
    if (!run)
        return usage_error("unknown command '%s'", cmd);
    if (cli_key_file_check("imgstore") != 0)
        return EXIT_FAIL;
    struct imgstore_opts opts = {.timeout_ms = g.timeout_ms};
    imgstore_t *h = NULL;
    if (imgstore_open(g.ns, &opts, &h) != 0)
        return usage_error("invalid nameserver address list '%s' (want HOST:PORT[,HOST:PORT...])",
                           g.ns);
    int status = run->run(h, argc - optind, argv + optind);
    imgstore_close(h);
    return status;
}
