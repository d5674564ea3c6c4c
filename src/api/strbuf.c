#include "api/strbuf.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "util/alloc.h"

void inferd_strbuf_init(inferd_strbuf *b) { memset(b, 0, sizeof *b); }

void inferd_strbuf_deinit(inferd_strbuf *b) {
    inferd_free(b->data);
    memset(b, 0, sizeof *b);
}

static int reserve(inferd_strbuf *b, size_t extra) {
    if (b->failed)
        return -1;
    if (b->len + extra + 1 <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1) {
        if (cap > SIZE_MAX / 2) {
            b->failed = 1;
            return -1;
        }
        cap *= 2;
    }
    char *p = inferd_realloc(NULL, b->data, cap);
    if (!p) {
        b->failed = 1;
        return -1;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

void inferd_strbuf_append(inferd_strbuf *b, const void *data, size_t n) {
    if (reserve(b, n) < 0)
        return;
    memcpy(b->data + b->len, data, n);
    b->len += n;
    b->data[b->len] = 0;
}

void inferd_strbuf_appends(inferd_strbuf *b, const char *s) {
    inferd_strbuf_append(b, s, strlen(s));
}

void inferd_strbuf_appendf(inferd_strbuf *b, const char *fmt, ...) {
    char small[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof small) {
        inferd_strbuf_append(b, small, (size_t)n);
        return;
    }
    if (reserve(b, (size_t)n) < 0)
        return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    size_t len;
    unsigned min;
    if (c < 0x80)
        return 1;
    if ((c & 0xE0) == 0xC0) {
        len = 2;
        min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
        len = 3;
        min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
        len = 4;
        min = 0x10000;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    unsigned cp = c & (0x7F >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

void inferd_strbuf_append_json_string(inferd_strbuf *b, const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    if (reserve(b, n + 2) < 0)
        return;
    b->data[b->len++] = '"';
    size_t i = 0;
    while (i < n) {
        // Copy the longest run that needs no escaping in one go.
        size_t j = i;
        while (j < n && p[j] >= 0x20 && p[j] < 0x80 && p[j] != '"' && p[j] != '\\')
            j++;
        if (j > i) {
            inferd_strbuf_append(b, p + i, j - i);
            i = j;
            continue;
        }
        unsigned char c = p[i];
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            inferd_strbuf_append(b, esc, 2);
            i++;
        } else if (c < 0x20) {
            const char *named = c == '\n' ? "\\n" : c == '\r' ? "\\r" : c == '\t' ? "\\t" : NULL;
            if (named)
                inferd_strbuf_appends(b, named);
            else
                inferd_strbuf_appendf(b, "\\u%04x", c);
            i++;
        } else {
            size_t len = utf8_len(p + i, n - i);
            if (len) {
                inferd_strbuf_append(b, p + i, len);
                i += len;
            } else {
                inferd_strbuf_appendf(b, "\\u%04x", c);
                i++;
            }
        }
    }
    inferd_strbuf_append(b, "\"", 1);
}

void inferd_strbuf_append_label(inferd_strbuf *b, const char *s) {
    for (; *s; s++) {
        if (*s == '\\')
            inferd_strbuf_appends(b, "\\\\");
        else if (*s == '"')
            inferd_strbuf_appends(b, "\\\"");
        else if (*s == '\n')
            inferd_strbuf_appends(b, "\\n");
        else
            inferd_strbuf_append(b, s, 1);
    }
}

char *inferd_strbuf_take(inferd_strbuf *b, size_t *len) {
    if (b->failed) {
        inferd_strbuf_deinit(b);
        *len = 0;
        return NULL;
    }
    if (!b->data && reserve(b, 0) < 0) {
        *len = 0;
        return NULL;
    }
    char *d = b->data;
    *len = b->len;
    memset(b, 0, sizeof *b);
    return d;
}
