/* baseline_files.c - the file-per-image baseline of `make bench`.
 *
 *   baseline_files --dir DIR [bench options: -n -c --size --duration ...]
 *
 * Runs the same load generator as `imgstore bench` (tools/cli_bench.c), but
 * each image is its own file in a two-level folder tree on a local disk,
 * the way many image stores start out: DIR/xx/yy/<id>, created with
 * O_EXCL, written, fsync'd, and its folder fsync'd so the new name is
 * durable too (what imgstore's acknowledgement promises). A read is
 * open + fstat + read + close into a malloc'd buffer, like the library's get. */
#include "bench/bench_io.h"
#include "tools/cli_bench.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FANOUT 256 /* entries per folder level */

struct files_ctx {
    const char *dir;
    atomic_ulong next_id;
};

static int fsync_path(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) == 0 ? 0 : -errno;
    close(fd);
    return rc;
}

static int files_put(void *vctx, const void *data, size_t len, char key[BENCH_KEY_MAX])
{
    struct files_ctx *ctx = vctx;
    unsigned long id = atomic_fetch_add(&ctx->next_id, 1);
    char folder[BENCH_KEY_MAX + 512], path[BENCH_KEY_MAX + 512];
    snprintf(key, BENCH_KEY_MAX, "%02lx/%02lx/%08lx", id % FANOUT, (id / FANOUT) % FANOUT, id);
    snprintf(folder, sizeof(folder), "%s/%02lx", ctx->dir, id % FANOUT);
    if (mkdir(folder, 0755) != 0 && errno != EEXIST)
        return -errno;
    snprintf(folder, sizeof(folder), "%s/%.5s", ctx->dir, key);
    if (mkdir(folder, 0755) != 0 && errno != EEXIST)
        return -errno;
    snprintf(path, sizeof(path), "%s/%s", ctx->dir, key);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    int rc = bench_write_all(fd, data, len);
    if (rc == 0 && fsync(fd) != 0)
        rc = -errno;
    if (close(fd) != 0 && rc == 0)
        rc = -errno;
    if (rc == 0)
        rc = fsync_path(folder);
    return rc;
}

static int files_get(void *vctx, const char *key, void **data, size_t *len)
{
    struct files_ctx *ctx = vctx;
    char path[BENCH_KEY_MAX + 512];
    snprintf(path, sizeof(path), "%s/%s", ctx->dir, key);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat sb;
    int rc = 0;
    char *buf = NULL;
    size_t n = 0;
    if (fstat(fd, &sb) != 0) {
        rc = -errno;
        goto out;
    }
    buf = malloc(sb.st_size ? (size_t)sb.st_size : 1);
    if (!buf) {
        rc = -ENOMEM;
        goto out;
    }
    while (n < (size_t)sb.st_size) {
        ssize_t r = read(fd, buf + n, (size_t)sb.st_size - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            rc = r < 0 ? -errno : -EIO;
            goto out;
        }
        n += (size_t)r;
    }
out:
    close(fd);
    if (rc != 0) {
        free(buf);
        return rc;
    }
    *data = buf;
    *len = n;
    return 0;
}

static void files_release(void *ctx, void *data)
{
    free(data);
}

static int files_del(void *vctx, const char *key)
{
    struct files_ctx *ctx = vctx;
    char path[BENCH_KEY_MAX + 512];
    snprintf(path, sizeof(path), "%s/%s", ctx->dir, key);
    return unlink(path) == 0 ? 0 : -errno;
}

static const char *files_strerror(int err)
{
    return strerror(-err);
}

int main(int argc, char **argv)
{
    if (argc < 3 || strcmp(argv[1], "--dir") != 0) {
        fprintf(stderr, "usage: baseline_files --dir DIR [bench options]\n");
        bench_usage(stderr);
        return 2;
    }
    struct files_ctx ctx = {.dir = argv[2]};
    if (mkdir(ctx.dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "baseline_files: %s: %s\n", ctx.dir, strerror(errno));
        return 1;
    }
    /* Continue after any files a previous run left, so names never clash. */
    atomic_store(&ctx.next_id, (unsigned long)getpid() << 20);
    struct bench_backend be = {.name = "files",
                               .ctx = &ctx,
                               .put = files_put,
                               .get = files_get,
                               .release = files_release,
                               .del = files_del,
                               .strerror = files_strerror};
    argv[2] = argv[0];
    return bench_main("baseline_files", &be, argc - 2, argv + 2);
}
