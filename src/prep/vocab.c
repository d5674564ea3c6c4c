#include "prep/vocab.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "prep/unicode.h"

typedef struct slot {
    uint64_t hash;
    uint32_t off; /* offset of the string in strings */
    uint32_t len;
    int32_t id; /* -1: empty slot */
} slot;

struct inferd_vocab {
    inferd_mem_account *acct;
    slot *slots;
    size_t cap; /* power of two */
    size_t count;
    char *strings;
    size_t str_len, str_cap;
    int32_t max_id;
    size_t max_len;
    uint32_t *by_id; /* id -> slot index + 1 (0: none), kept up to date by set() */
    size_t by_id_cap;
};

int inferd_vocab_create(inferd_mem_account *acct, inferd_vocab **out, inferd_error *err) {
    inferd_vocab *v = inferd_calloc(acct, 1, sizeof *v);
    if (!v)
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory for a vocabulary");
    v->acct = acct;
    v->cap = 64;
    v->slots = inferd_malloc(acct, v->cap * sizeof *v->slots);
    if (!v->slots) {
        inferd_free(v);
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory for a vocabulary");
    }
    for (size_t i = 0; i < v->cap; i++)
        v->slots[i].id = -1;
    v->max_id = -1;
    *out = v;
    return 0;
}

void inferd_vocab_destroy(inferd_vocab *v) {
    if (!v)
        return;
    inferd_free(v->slots);
    inferd_free(v->strings);
    inferd_free(v->by_id);
    inferd_free(v);
}

static int32_t find(const inferd_vocab *v, uint64_t h, const char *tok, size_t n, size_t *where) {
    size_t mask = v->cap - 1;
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
        const slot *s = &v->slots[i];
        if (s->id < 0) {
            if (where)
                *where = i;
            return -1;
        }
        if (s->hash == h && s->len == n && memcmp(v->strings + s->off, tok, n) == 0) {
            if (where)
                *where = i;
            return s->id;
        }
    }
}

static int grow(inferd_vocab *v) {
    size_t ncap = v->cap * 2;
    slot *ns = inferd_malloc(v->acct, ncap * sizeof *ns);
    if (!ns)
        return -1;
    for (size_t i = 0; i < ncap; i++)
        ns[i].id = -1;
    for (size_t i = 0; i < v->cap; i++) {
        if (v->slots[i].id < 0)
            continue;
        size_t j = (size_t)v->slots[i].hash & (ncap - 1);
        while (ns[j].id >= 0)
            j = (j + 1) & (ncap - 1);
        ns[j] = v->slots[i];
    }
    inferd_free(v->slots);
    v->slots = ns;
    v->cap = ncap;
    // Slot indexes moved: rebuild the reverse map.
    if (v->by_id)
        memset(v->by_id, 0, v->by_id_cap * sizeof *v->by_id);
    for (size_t i = 0; v->by_id && i < ncap; i++)
        if (ns[i].id >= 0 && (size_t)ns[i].id < v->by_id_cap)
            v->by_id[ns[i].id] = (uint32_t)i + 1;
    return 0;
}

int inferd_vocab_set(inferd_vocab *v, const char *tok, size_t n, int32_t id, inferd_error *err) {
    if (id < 0)
        return inferd_error_set(err, INFERD_EINVAL, "token id %d is negative", (int)id);
    if (n > 65536)
        return inferd_error_set(err, INFERD_EINVAL, "a token is longer than 64 KiB");
    if ((v->count + 1) * 2 > v->cap && grow(v) != 0)
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory for a vocabulary");
    uint64_t h = inferd_vocab_hash(INFERD_VOCAB_HASH_SEED, tok, n);
    size_t where;
    int32_t old = find(v, h, tok, n, &where);
    if ((size_t)id >= v->by_id_cap) {
        size_t ncap = v->by_id_cap ? v->by_id_cap : 64;
        while (ncap <= (size_t)id)
            ncap *= 2;
        uint32_t *nb = inferd_realloc(v->acct, v->by_id, ncap * sizeof *nb);
        if (!nb)
            return inferd_error_set(err, INFERD_EINTERNAL, "out of memory for a vocabulary");
        memset(nb + v->by_id_cap, 0, (ncap - v->by_id_cap) * sizeof *nb);
        v->by_id = nb;
        v->by_id_cap = ncap;
    }
    if (old < 0) {
        if (v->str_len + n > UINT32_MAX)
            return inferd_error_set(err, INFERD_EINVAL, "vocabulary strings exceed 4 GiB");
        if (v->str_len + n > v->str_cap) {
            size_t ncap = v->str_cap ? v->str_cap * 2 : 4096;
            while (ncap < v->str_len + n)
                ncap *= 2;
            char *ns = inferd_realloc(v->acct, v->strings, ncap);
            if (!ns)
                return inferd_error_set(err, INFERD_EINTERNAL, "out of memory for a vocabulary");
            v->strings = ns;
            v->str_cap = ncap;
        }
        if (n)
            memcpy(v->strings + v->str_len, tok, n);
        v->slots[where] = (slot){h, (uint32_t)v->str_len, (uint32_t)n, id};
        v->str_len += n;
        v->count++;
        if (n > v->max_len)
            v->max_len = n;
    } else {
        v->slots[where].id = id;
    }
    v->by_id[id] = (uint32_t)where + 1;
    if (id > v->max_id)
        v->max_id = id;
    return 0;
}

int32_t inferd_vocab_find(const inferd_vocab *v, const char *tok, size_t n) {
    return find(v, inferd_vocab_hash(INFERD_VOCAB_HASH_SEED, tok, n), tok, n, NULL);
}

int32_t inferd_vocab_find_hashed(const inferd_vocab *v, uint64_t h, const char *tok, size_t n) {
    return find(v, h, tok, n, NULL);
}

size_t inferd_vocab_count(const inferd_vocab *v) { return v->count; }
int32_t inferd_vocab_max_id(const inferd_vocab *v) { return v->max_id; }
size_t inferd_vocab_max_token_bytes(const inferd_vocab *v) { return v->max_len; }

const char *inferd_vocab_token(const inferd_vocab *v, int32_t id, size_t *n) {
    if (id < 0 || (size_t)id >= v->by_id_cap || v->by_id[id] == 0)
        return NULL;
    const slot *s = &v->slots[v->by_id[id] - 1];
    if (s->id != id)
        return NULL; // the string was remapped to another id later
    *n = s->len;
    return v->strings + s->off;
}

static int is_ascii_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

int inferd_vocab_load_txt(const char *path, inferd_mem_account *acct, inferd_vocab **out,
                          inferd_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return inferd_error_set(err, INFERD_ENOTFOUND, "cannot open vocabulary file");
    inferd_vocab *v;
    int rc = inferd_vocab_create(acct, &v, err);
    if (rc) {
        fclose(f);
        return rc;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    int32_t id = 0;
    while ((got = getline(&line, &cap, f)) >= 0) {
        size_t a = 0, b = (size_t)got;
        while (a < b && is_ascii_space(line[a]))
            a++;
        while (b > a && is_ascii_space(line[b - 1]))
            b--;
        size_t bad;
        if (inferd_unicode_validate(line + a, b - a, &bad) != 0) {
            rc = inferd_error_set(err, INFERD_EINVAL, "line %d is not valid UTF-8", (int)id + 1);
            break;
        }
        if ((rc = inferd_vocab_set(v, line + a, b - a, id, err)) != 0)
            break;
        if (id == INT32_MAX - 1) {
            rc = inferd_error_set(err, INFERD_EINVAL, "too many lines");
            break;
        }
        id++;
    }
    free(line);
    fclose(f);
    if (rc) {
        inferd_vocab_destroy(v);
        return rc;
    }
    *out = v;
    return 0;
}
