/* log.h - one line per significant event: time, level, component, message.
 *
 * Lines go to stderr. The level threshold comes from IMGSTORE_LOG
 * (debug|info|warn|error|off, default info; off is for fuzzers and tests). Never call on a successful read's
 * hot path. */
#ifndef IMG_LOG_H
#define IMG_LOG_H

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Sets the component name printed on every line (e.g. "ds", "ns"). The string
 * must outlive every later log call. */
void log_set_component(const char *component);

void log_msg(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
