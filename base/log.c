/* log.c - line logger (see log.h). */
#include "base/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static const char *log_component = "imgstore";
static int log_threshold = -1;

static const char *level_names[] = {"DEBUG", "INFO", "WARN", "ERROR"};

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

void log_msg(enum log_level level, const char *fmt, ...)
{
    if ((int)level < threshold())
        return;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char line[2048];
    int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %-5s %s: ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, (int)(tv.tv_usec / 1000), level_names[level], log_component);
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof(line))
        vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s\n", line);
}
