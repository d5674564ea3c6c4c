/* error.h: how every inferd module reports failure.
 *
 * A function that can fail returns 0 on success or a negative INFERD_E* code, and fills a
 * caller-provided inferd_error with one sentence a client can read. Only api/ maps the codes
 * to HTTP statuses (one table, api/status.c). The set follows Triton's error codes plus busy.
 */
#ifndef INFERD_UTIL_ERROR_H
#define INFERD_UTIL_ERROR_H

#include <stdarg.h>

enum {
    INFERD_OK = 0,
    INFERD_EINVAL = -1,       /* invalid argument: bad request, bad file, wrong shape */
    INFERD_ENOTFOUND = -2,    /* no such model, version, file or tensor */
    INFERD_EUNAVAIL = -3,     /* exists but cannot serve now (loading, draining, shutting down) */
    INFERD_EUNSUPPORTED = -4, /* valid but not implemented: an unknown op, dtype or feature */
    INFERD_EINTERNAL = -5,    /* our bug or an OS failure (out of memory, I/O error) */
    INFERD_ECANCELLED = -6,   /* the request was cancelled or timed out */
    INFERD_EBUSY = -7,        /* refused by admission control: queue full, would miss timeout */
    INFERD_ETOOLARGE = -8,    /* over a configured limit (body size, tensor elements) */
};

typedef struct inferd_error {
    int code;      /* one of the INFERD_E* values, 0 when no error was set */
    char msg[256]; /* one sentence a client can read */
} inferd_error;

/* Fills err (if not NULL) with code and a printf-style message, and returns code, so callers
 * can write `return inferd_error_set(err, INFERD_EINVAL, "bad dim %d", d);`. */
int inferd_error_set(inferd_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int inferd_error_setv(inferd_error *err, int code, const char *fmt, va_list ap);

/* Prefixes err->msg with a printf-style context ("model m1: " + old message), keeping code. */
void inferd_error_prefix(inferd_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Short lowercase name of a code: "invalid argument", "not found", ... */
const char *inferd_error_name(int code);

/* "Cannot happen, but must not crash in production": in debug builds (no NDEBUG) these abort
 * when the condition is surprising; in release builds they just return the condition so the
 * caller can recover. Use as `if (INFERD_NEVER(p == NULL)) return INFERD_EINTERNAL;`. */
#ifdef NDEBUG
#define INFERD_ALWAYS(x) (x)
#define INFERD_NEVER(x) (x)
#else
#include <assert.h>
#define INFERD_ALWAYS(x) ((x) ? 1 : (assert(0 && #x), 0))
#define INFERD_NEVER(x) ((x) ? (assert(0 && !#x), 1) : 0)
#endif

#endif
