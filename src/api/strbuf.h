/* strbuf.h: a growable byte buffer for building response bodies (JSON, Prometheus text).
 *
 * Out of memory is sticky: appends after a failed growth do nothing, and inferd_strbuf_take
 * then returns NULL, so callers check once at the end instead of after every append. The
 * storage comes from inferd_malloc, so a taken buffer can be handed to inferd_http_respond.
 * A strbuf belongs to one thread at a time.
 */
#ifndef INFERD_API_STRBUF_H
#define INFERD_API_STRBUF_H

#include <stddef.h>

typedef struct inferd_strbuf {
    char *data;
    size_t len, cap;
    int failed; /* an allocation failed; contents are incomplete */
} inferd_strbuf;

/* Empty buffer; the caller owns the struct and calls deinit (or take). */
void inferd_strbuf_init(inferd_strbuf *b);
/* Frees the storage. */
void inferd_strbuf_deinit(inferd_strbuf *b);

void inferd_strbuf_append(inferd_strbuf *b, const void *data, size_t n);
void inferd_strbuf_appends(inferd_strbuf *b, const char *s);
void inferd_strbuf_appendf(inferd_strbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Appends s (n bytes, may hold NULs) as a quoted JSON string. Bytes that are not valid UTF-8
 * are written as \u00XX (their Latin-1 reading), so the output is always valid JSON. */
void inferd_strbuf_append_json_string(inferd_strbuf *b, const char *s, size_t n);
/* Appends s as a Prometheus label value (escaping backslash, quote and newline). */
void inferd_strbuf_append_label(inferd_strbuf *b, const char *s);

/* Hands over the contents (inferd_free them) and leaves b empty. NULL when an append failed
 * (the storage is then freed). */
char *inferd_strbuf_take(inferd_strbuf *b, size_t *len);

#endif
