#include "api/jsonpos.h"

#include <stdio.h>
#include <string.h>

#define MAX_DEPTH 64
#define MAX_KEY 64

typedef struct walker {
    const char *s;
    size_t n, i, pos;
    char *path;
    size_t cap, len; /* the path so far; len may exceed cap - 1, then the path is cut */
    int found;
} walker;

static void skip_ws(walker *w) {
    while (w->i < w->n &&
           (w->s[w->i] == ' ' || w->s[w->i] == '\t' || w->s[w->i] == '\n' || w->s[w->i] == '\r'))
        w->i++;
}

/* Appends to the path, keeping it NUL-terminated within cap. */
static void path_push(walker *w, const char *text, size_t n) {
    for (size_t k = 0; k < n; k++, w->len++)
        if (w->len + 1 < w->cap)
            w->path[w->len] = text[k];
    w->path[w->len + 1 < w->cap ? w->len : w->cap - 1] = 0;
}

static void path_truncate(walker *w, size_t len) {
    w->len = len;
    w->path[len + 1 < w->cap ? len : w->cap - 1] = 0;
}

/* Skips a string token starting at its opening quote; notes whether pos lies in it. */
static void string_token(walker *w, size_t *start, size_t *end) {
    *start = w->i++;
    while (w->i < w->n && w->s[w->i] != '"')
        w->i += w->s[w->i] == '\\' ? 2 : 1;
    if (w->i > w->n)
        w->i = w->n;
    *end = w->i; // the closing quote, or n when the text ends inside the string
    if (w->i < w->n)
        w->i++;
    if (w->pos > *start && w->pos <= *end + 1)
        w->found = 1;
}

static void value(walker *w, int depth);

static void object(walker *w, int depth) {
    size_t base = w->len;
    w->i++; // '{'
    for (;;) {
        skip_ws(w);
        if (w->i >= w->n || w->s[w->i] == '}' || w->s[w->i] != '"') {
            w->i += w->i < w->n;
            return;
        }
        size_t ks, ke;
        string_token(w, &ks, &ke);
        size_t klen = ke - ks - 1 < MAX_KEY ? ke - ks - 1 : MAX_KEY;
        if (base > 0)
            path_push(w, ".", 1);
        path_push(w, w->s + ks + 1, klen);
        if (w->found)
            return;
        skip_ws(w);
        if (w->i < w->n && w->s[w->i] == ':')
            w->i++;
        value(w, depth + 1);
        if (w->found)
            return;
        path_truncate(w, base);
        skip_ws(w);
        if (w->i < w->n && w->s[w->i] == ',') {
            w->i++;
            continue;
        }
        w->i += w->i < w->n; // '}' or garbage: stop here either way
        return;
    }
}

static void array(walker *w, int depth) {
    size_t base = w->len;
    w->i++; // '['
    for (long idx = 0;; idx++) {
        skip_ws(w);
        if (w->i >= w->n || w->s[w->i] == ']') {
            w->i += w->i < w->n;
            return;
        }
        char buf[32];
        int k = snprintf(buf, sizeof buf, "[%ld]", idx);
        path_push(w, buf, (size_t)k);
        size_t before = w->i;
        value(w, depth + 1);
        if (w->found)
            return;
        path_truncate(w, base);
        skip_ws(w);
        if (w->i < w->n && w->s[w->i] == ',') {
            w->i++;
            continue;
        }
        if (w->i == before)
            w->i++; // never loop on a byte no rule consumes
        if (w->i < w->n && w->s[w->i] == ']') {
            w->i++;
            return;
        }
        if (w->i >= w->n)
            return;
    }
}

static void value(walker *w, int depth) {
    skip_ws(w);
    if (w->i >= w->n)
        return;
    if (depth > MAX_DEPTH) {
        w->i = w->n;
        return;
    }
    char c = w->s[w->i];
    if (c == '{') {
        object(w, depth);
    } else if (c == '[') {
        array(w, depth);
    } else if (c == '"') {
        size_t a, b;
        string_token(w, &a, &b);
    } else {
        // A number or a literal: up to the next delimiter.
        while (w->i < w->n && !strchr(",]} \t\r\n", w->s[w->i]))
            w->i++;
    }
}

int inferd_jsonpos_string_path(const char *s, size_t n, size_t pos, char *path, size_t cap) {
    if (!path || cap == 0)
        return 0;
    path[0] = 0;
    walker w = {.s = s, .n = n, .pos = pos, .path = path, .cap = cap};
    value(&w, 0);
    if (!w.found)
        path[0] = 0;
    return w.found;
}

int inferd_jsonpos_is_encoding_error(const char *text) {
    return strstr(text, "unable to decode byte") || strstr(text, "invalid Unicode") ||
           strstr(text, "invalid UTF-8");
}

const char *inferd_json_type_name(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    default:
        return "null";
    }
}
