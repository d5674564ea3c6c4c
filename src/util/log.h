/* log.h: one line per event on stderr, as text or as JSON lines (--log-format json).
 * Safe from any thread; each line is written with a single write(2). */
#ifndef INFERD_UTIL_LOG_H
#define INFERD_UTIL_LOG_H

typedef enum inferd_log_level {
    INFERD_LOG_LEVEL_DEBUG = 0,
    INFERD_LOG_LEVEL_INFO = 1,
    INFERD_LOG_LEVEL_WARN = 2,
    INFERD_LOG_LEVEL_ERROR = 3,
} inferd_log_level;

typedef enum inferd_log_format {
    INFERD_LOG_FORMAT_TEXT = 0,
    INFERD_LOG_FORMAT_JSON = 1,
} inferd_log_format;

/* Call before starting threads. Defaults: INFO, TEXT. */
void inferd_log_configure(inferd_log_level min_level, inferd_log_format format);

void inferd_log(inferd_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define inferd_log_debug(...) inferd_log(INFERD_LOG_LEVEL_DEBUG, __VA_ARGS__)
#define inferd_log_info(...) inferd_log(INFERD_LOG_LEVEL_INFO, __VA_ARGS__)
#define inferd_log_warn(...) inferd_log(INFERD_LOG_LEVEL_WARN, __VA_ARGS__)
#define inferd_log_error(...) inferd_log(INFERD_LOG_LEVEL_ERROR, __VA_ARGS__)

#endif
