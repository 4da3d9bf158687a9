/* log.c - line logger (see log.h). */
#include "base/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static const char *log_component = "imgstore";
static int log_threshold = -1;
static int log_journal = -1; /* stderr is the journal: "<N>" prefixes */
static const char *log_path; /* log_open_file's, NULL: stderr */

static const char *level_names[] = {"DEBUG", "INFO", "WARN", "ERROR"};
static const int level_priorities[] = {7, 6, 4, 3}; /* syslog's debug, info, warning, err */

void log_set_component(const char *component)
{
    log_component = component;
}

static int threshold(void)
{
    if (log_threshold < 0) {
        const char *e = getenv("IMGSTORE_LOG");
        log_threshold = LOG_INFO;
        if (e && strcmp(e, "debug") == 0)
            log_threshold = LOG_DEBUG;
        else if (e && strcmp(e, "warn") == 0)
            log_threshold = LOG_WARN;
        else if (e && strcmp(e, "error") == 0)
            log_threshold = LOG_ERROR;
        else if (e && strcmp(e, "off") == 0)
            log_threshold = LOG_ERROR + 1;
    }
    return log_threshold;
}

/* Whether stderr is the journal's stream: systemd sets JOURNAL_STREAM to
 * "DEVICE:INODE" of the socket it connected stderr (or stdout) to. */
static int journal(void)
{
    if (log_journal < 0) {
        const char *e = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;
        log_journal = e && sscanf(e, "%llu:%llu", &dev, &ino) == 2 && fstat(STDERR_FILENO, &st) == 0 &&
                      (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
    }
    return log_journal;
}

/* Opens log_path and puts it in stderr's place. */
static int open_path(void)
{
    int fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0)
        return -errno;
    int rc = dup2(fd, STDERR_FILENO) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

int log_open_file(const char *path)
{
    const char *old = log_path;
    log_path = path;
    int rc = open_path();
    if (rc != 0) {
        log_path = old;
        return rc;
    }
    log_journal = 0; /* a file is no journal stream */
    return 0;
}

int log_reopen(void)
{
    return log_path ? open_path() : 1;
}

void log_reopen_on_hup(void)
{
    int rc = log_reopen();
    if (rc < 0)
        log_error("SIGHUP: cannot reopen the log file %s: %s (still writing to the old one)",
                  log_path, strerror(-rc));
    else if (rc == 0)
        log_info("SIGHUP: log file reopened: %s", log_path);
    else
        log_info("SIGHUP: no log file to reopen");
}

const char *log_file_path(void)
{
    return log_path;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    if ((int)level < threshold())
        return;
    char line[2048];
    int n;
    if (journal()) {
        n = snprintf(line, sizeof(line), "<%d>%-5s %s: ", level_priorities[level],
                     level_names[level], log_component);
    } else {
        struct timeval tv;
        gettimeofday(&tv, NULL);
        struct tm tm;
        gmtime_r(&tv.tv_sec, &tm);
        n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %-5s %s: ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, (int)(tv.tv_usec / 1000), level_names[level], log_component);
    }
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof(line))
        vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s\n", line);
}
