#include "util/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static inferd_log_level min_level = INFERD_LOG_LEVEL_INFO;
static inferd_log_format log_format = INFERD_LOG_FORMAT_TEXT;

static const char *level_names[] = {"debug", "info", "warn", "error"};

void inferd_log_configure(inferd_log_level level, inferd_log_format format) {
    min_level = level;
    log_format = format;
}

/* Appends s to buf[*len..cap) as the inside of a JSON string. */
static void json_escape(char *buf, size_t *len, size_t cap, const char *s) {
    for (; *s && *len + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            buf[(*len)++] = '\\';
            buf[(*len)++] = (char)c;
        } else if (c < 0x20) {
            *len += (size_t)snprintf(buf + *len, cap - *len, "\\u%04x", c);
        } else {
            buf[(*len)++] = (char)c;
        }
    }
}

void inferd_log(inferd_log_level level, const char *fmt, ...) {
    if (level < min_level)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[32];
    size_t w = strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + w, sizeof when - w, ".%03ldZ", ts.tv_nsec / 1000000);

    char line[1400];
    size_t len;
    if (log_format == INFERD_LOG_FORMAT_JSON) {
        len = (size_t)snprintf(line, sizeof line, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"",
                               when, level_names[level]);
        json_escape(line, &len, sizeof line - 4, msg);
        memcpy(line + len, "\"}\n", 3);
        len += 3;
    } else {
        len = (size_t)snprintf(line, sizeof line, "%s %-5s %s\n", when, level_names[level], msg);
        if (len >= sizeof line) {
            len = sizeof line - 1;
            line[len - 1] = '\n';
        }
    }
    ssize_t r = write(STDERR_FILENO, line, len);
    (void)r;
}
