/* log.h - one line per significant event: time, level, component, message.
 *
 * Lines go to stderr, or to the file of log_open_file (which takes stderr's
 * place, so anything else written to stderr lands there too). The level
 * threshold comes from IMGSTORE_LOG (debug|info|warn|error|off, default info;
 * off is for fuzzers and tests). Under systemd, when stderr is the journal
 * (JOURNAL_STREAM names it), each line starts with its syslog priority
 * ("<7>" debug, "<6>" info, "<4>" warn, "<3>" error) instead of the time,
 * which the journal records itself. Never call on a successful read's hot
 * path. */
#ifndef IMG_LOG_H
#define IMG_LOG_H

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Sets the component name printed on every line (e.g. "ds", "ns"). The string
 * must outlive every later log call. */
void log_set_component(const char *component);

/* Makes `path` (created mode 0640, appended to) the log: it replaces stderr.
 * `path` must outlive every later log_reopen. Returns 0 or -errno (stderr
 * unchanged). */
int log_open_file(const char *path);

/* Opens the file of log_open_file again (after a rotation moved it away):
 * returns 0, 1 when there is no log file, or -errno (the old file stays in
 * use). Lines written meanwhile go to one file or the other. */
int log_reopen(void);

/* log_reopen for SIGHUP, with its outcome logged as "SIGHUP: ..." (INFO,
 * ERROR when the file could not be opened again). */
void log_reopen_on_hup(void);

/* The log file's path, or NULL when logging to stderr as started. */
const char *log_file_path(void);

void log_msg(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
