#ifndef POSTERN_LOG_H
#define POSTERN_LOG_H

#include <postern/api.h>

/* Logging to stderr, one line per call. When stderr is journald's stream
 * (JOURNAL_STREAM), each line gets a "<N>" priority prefix. */
void log_init(void);
void log_set_level(enum postern_log_level level);
/* Parses "err".."debug"; returns -1 when unknown. */
int log_level_parse(const char *name);
void postern_log(enum postern_log_level level, const char *fmt, ...)
	POSTERN_PRINTF(2, 3);
void postern_vlog(enum postern_log_level level, const char *fmt, va_list ap);

#define log_err(...) postern_log(POSTERN_LOG_ERR, __VA_ARGS__)
#define log_warning(...) postern_log(POSTERN_LOG_WARNING, __VA_ARGS__)
#define log_info(...) postern_log(POSTERN_LOG_INFO, __VA_ARGS__)
#define log_debug(...) postern_log(POSTERN_LOG_DEBUG, __VA_ARGS__)

/* Copies str into buf (size > 0) for logging: control bytes and spaces
 * become '?', and it is cut to fit. Returns buf. */
const char *log_safe(char *buf, size_t size, const char *str);

#endif
