/* bench_io.h - the write loop the benchmark helpers (the .c files of bench/) share.
 * Header only (static inline), so that each helper stays one .c file built
 * into its own binary; calls libc only. */
#ifndef IMG_BENCH_IO_H
#define IMG_BENCH_IO_H

#include <errno.h>
#include <stddef.h>
#include <unistd.h>

/* Writes all len bytes of buf to fd at its file position (for an O_APPEND
 * file, at its end), retrying after EINTR and short writes. Returns 0 or a
 * negative errno. */
static inline int bench_write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

#endif
