#include "util/error.h"

#include <stdio.h>
#include <string.h>

int inferd_error_setv(inferd_error *err, int code, const char *fmt, va_list ap) {
    if (err) {
        err->code = code;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    }
    return code;
}

int inferd_error_set(inferd_error *err, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    inferd_error_setv(err, code, fmt, ap);
    va_end(ap);
    return code;
}

void inferd_error_prefix(inferd_error *err, const char *fmt, ...) {
    if (!err)
        return;
    char prefix[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    char old[sizeof err->msg];
    memcpy(old, err->msg, sizeof old);
    size_t n = strlen(prefix);
    if (n >= sizeof err->msg)
        n = sizeof err->msg - 1;
    memcpy(err->msg, prefix, n);
    size_t rest = strnlen(old, sizeof old - 1);
    if (rest > sizeof err->msg - 1 - n)
        rest = sizeof err->msg - 1 - n;
    memcpy(err->msg + n, old, rest);
    err->msg[n + rest] = 0;
}

const char *inferd_error_name(int code) {
    switch (code) {
    case INFERD_OK:
        return "ok";
    case INFERD_EINVAL:
        return "invalid argument";
    case INFERD_ENOTFOUND:
        return "not found";
    case INFERD_EUNAVAIL:
        return "unavailable";
    case INFERD_EUNSUPPORTED:
        return "unsupported";
    case INFERD_EINTERNAL:
        return "internal";
    case INFERD_ECANCELLED:
        return "cancelled";
    case INFERD_EBUSY:
        return "busy";
    case INFERD_ETOOLARGE:
        return "too large";
    default:
        return "unknown";
    }
}
