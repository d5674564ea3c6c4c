#include "prep/tokenizer.h"

#include <string.h>

#include "prep/unicode.h"

struct inferd_tokenizer {
    inferd_tokenizer_parts p;
    /* Added tokens indexed by first byte, longest first within a byte: first[b] is the
     * index in order[] of the first token starting with b, count[b] how many do. */
    uint32_t *order;
    uint32_t first[256], count[256];
};

void inferd_tokenizer_parts_deinit(inferd_tokenizer_parts *p) {
    for (size_t i = 0; i < p->n_normalizers; i++)
        inferd_normalizer_deinit(&p->normalizers[i]);
    inferd_free(p->normalizers);
    for (size_t i = 0; i < p->n_pretoks; i++)
        inferd_pretok_deinit(&p->pretoks[i]);
    inferd_free(p->pretoks);
    for (size_t i = 0; i < p->n_added; i++)
        inferd_free(p->added[i].content);
    inferd_free(p->added);
    switch (p->model_kind) {
    case INFERD_TOKENIZER_MODEL_KIND_WORDPIECE:
        inferd_wordpiece_destroy(p->model);
        break;
    case INFERD_TOKENIZER_MODEL_KIND_BPE:
        inferd_bpe_destroy(p->model);
        break;
    case INFERD_TOKENIZER_MODEL_KIND_UNIGRAM:
        inferd_unigram_destroy(p->model);
        break;
    case INFERD_TOKENIZER_MODEL_KIND_CHAR:
        inferd_chartok_destroy(p->model);
        break;
    case INFERD_TOKENIZER_MODEL_KIND_NONE:
        break;
    }
    memset(p, 0, sizeof *p);
}

int inferd_tokenizer_create(inferd_tokenizer_parts *parts, inferd_mem_account *acct,
                            inferd_tokenizer **out, inferd_error *err) {
    if (!parts->model || parts->model_kind == INFERD_TOKENIZER_MODEL_KIND_NONE) {
        inferd_tokenizer_parts_deinit(parts);
        return inferd_error_set(err, INFERD_EINVAL, "tokenizer has no model");
    }
    inferd_tokenizer *t = inferd_calloc(acct, 1, sizeof *t);
    uint32_t *order = inferd_malloc(acct, (parts->n_added + 1) * sizeof *order);
    if (!t || !order) {
        inferd_free(t);
        inferd_free(order);
        inferd_tokenizer_parts_deinit(parts);
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory for a tokenizer");
    }
    t->p = *parts;
    memset(parts, 0, sizeof *parts);
    // Bucket the added tokens by first byte, longest first (insertion sort: they are few).
    size_t k = 0;
    for (unsigned b = 0; b < 256; b++) {
        t->first[b] = (uint32_t)k;
        for (size_t i = 0; i < t->p.n_added; i++) {
            if ((unsigned char)t->p.added[i].content[0] != b)
                continue;
            size_t j = k++;
            while (j > t->first[b] && t->p.added[order[j - 1]].len < t->p.added[i].len) {
                order[j] = order[j - 1];
                j--;
            }
            order[j] = (uint32_t)i;
        }
        t->count[b] = (uint32_t)k - t->first[b];
    }
    t->order = order;
    *out = t;
    return 0;
}

void inferd_tokenizer_destroy(inferd_tokenizer *t) {
    if (!t)
        return;
    inferd_tokenizer_parts_deinit(&t->p);
    inferd_free(t->order);
    inferd_free(t);
}

static const inferd_vocab *model_vocab(const inferd_tokenizer *t) {
    switch (t->p.model_kind) {
    case INFERD_TOKENIZER_MODEL_KIND_WORDPIECE:
        return inferd_wordpiece_vocab(t->p.model);
    case INFERD_TOKENIZER_MODEL_KIND_UNIGRAM:
        return inferd_unigram_vocab(t->p.model);
    case INFERD_TOKENIZER_MODEL_KIND_CHAR:
        return inferd_chartok_vocab(t->p.model);
    case INFERD_TOKENIZER_MODEL_KIND_BPE:
        return inferd_bpe_vocab(t->p.model);
    case INFERD_TOKENIZER_MODEL_KIND_NONE:
        break;
    }
    return NULL;
}

int32_t inferd_tokenizer_token_id(const inferd_tokenizer *t, const char *tok, size_t n) {
    for (size_t i = 0; i < t->p.n_added; i++)
        if (t->p.added[i].len == n && memcmp(t->p.added[i].content, tok, n) == 0)
            return t->p.added[i].id;
    const inferd_vocab *v = model_vocab(t);
    return v ? inferd_vocab_find(v, tok, n) : -1;
}

void inferd_tokenizer_set_template(inferd_tokenizer *t, const inferd_tokenizer_template *tp) {
    t->p.tmpl = *tp;
}

size_t inferd_tokenizer_num_special(const inferd_tokenizer *t) {
    return t->p.tmpl.n_prefix + t->p.tmpl.n_suffix;
}

int32_t inferd_tokenizer_pad_id(const inferd_tokenizer *t) { return t->p.pad_id; }

inferd_tokenizer_model_kind inferd_tokenizer_model(const inferd_tokenizer *t) {
    return t->p.model_kind;
}

static int is_word_byte_before(const char *text, size_t at) {
    // Whether the character ending at byte `at` is a word character (\w).
    if (at == 0)
        return 0;
    size_t i = at - 1;
    while (i > 0 && ((unsigned char)text[i] & 0xC0) == 0x80)
        i--;
    uint32_t cp;
    inferd_unicode_decode(text + i, at - i, &cp);
    return (inferd_unicode_class(cp) & INFERD_UNICODE_WORD) != 0;
}

static int is_word_byte_after(const char *text, size_t n, size_t at) {
    if (at >= n)
        return 0;
    size_t e = at + 1;
    while (e < n && ((unsigned char)text[e] & 0xC0) == 0x80)
        e++;
    uint32_t cp;
    inferd_unicode_decode(text + at, e - at, &cp);
    return (inferd_unicode_class(cp) & INFERD_UNICODE_WORD) != 0;
}

/* Finds the next added token in text[from..n): its start and end (after lstrip/rstrip) and
 * id. Returns 0 when there is none. */
static int next_added(const inferd_tokenizer *t, const char *text, size_t n, size_t from,
                      size_t *ms, size_t *me, int32_t *id) {
    for (size_t i = from; i < n; i++) {
        unsigned b = (unsigned char)text[i];
        for (uint32_t k = 0; k < t->count[b]; k++) {
            const inferd_tokenizer_added *a = &t->p.added[t->order[t->first[b] + k]];
            if (a->len > n - i || memcmp(text + i, a->content, a->len) != 0)
                continue;
            size_t s = i, e = i + a->len;
            if ((a->flags & INFERD_TOKENIZER_ADDED_SINGLE_WORD) &&
                (is_word_byte_before(text, s) || is_word_byte_after(text, n, e)))
                continue;
            if (a->flags & INFERD_TOKENIZER_ADDED_LSTRIP)
                while (s > from && (text[s - 1] == ' ' || text[s - 1] == '\t' ||
                                    text[s - 1] == '\n' || text[s - 1] == '\r'))
                    s--;
            if (a->flags & INFERD_TOKENIZER_ADDED_RSTRIP)
                while (e < n &&
                       (text[e] == ' ' || text[e] == '\t' || text[e] == '\n' || text[e] == '\r'))
                    e++;
            *ms = s;
            *me = e;
            *id = a->id;
            return 1;
        }
    }
    return 0;
}

static int encode_segment(const inferd_tokenizer *t, inferd_scratch *s, const char *text, size_t n,
                          int first, inferd_scratch_ids *out, inferd_error *err) {
    uint32_t *cp = inferd_scratch_get(s, INFERD_SCRATCH_SLOT_CP_A, (n + 1) * sizeof *cp);
    if (!cp)
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory while tokenizing");
    size_t ncp = inferd_unicode_decode(text, n, cp);
    inferd_scratch_slot slot = INFERD_SCRATCH_SLOT_CP_A, pslot;
    int rc = inferd_normalizer_run(t->p.normalizers, t->p.n_normalizers, s, &slot, &ncp, err);
    size_t np = 0;
    if (!rc)
        rc = inferd_pretok_run(t->p.pretoks, t->p.n_pretoks, s, first, &slot, &ncp, &pslot, &np,
                               err);
    if (rc)
        return rc;
    const uint32_t *c = inferd_scratch_get(s, slot, ncp * sizeof *c + 4);
    const inferd_piece *pc = inferd_scratch_get(s, pslot, np * sizeof *pc + 8);
    if (!c || !pc)
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory while tokenizing");
    for (size_t i = 0; i < np && !inferd_scratch_ids_full(out); i++) {
        const uint32_t *w = c + pc[i].off;
        size_t wn = pc[i].len;
        switch (t->p.model_kind) {
        case INFERD_TOKENIZER_MODEL_KIND_WORDPIECE:
            rc = inferd_wordpiece_encode(t->p.model, s, w, wn, out, err);
            break;
        case INFERD_TOKENIZER_MODEL_KIND_BPE:
            rc = inferd_bpe_encode(t->p.model, s, w, wn, out, err);
            break;
        case INFERD_TOKENIZER_MODEL_KIND_UNIGRAM:
            rc = inferd_unigram_encode(t->p.model, s, w, wn, out, err);
            break;
        case INFERD_TOKENIZER_MODEL_KIND_CHAR:
            inferd_chartok_encode(t->p.model, w, wn, out);
            break;
        case INFERD_TOKENIZER_MODEL_KIND_NONE:
            rc = inferd_error_set(err, INFERD_EINTERNAL, "tokenizer has no model");
            break;
        }
        if (rc)
            return rc;
    }
    return 0;
}

int inferd_tokenizer_encode(const inferd_tokenizer *t, inferd_scratch *s, const char *text,
                            size_t n, size_t max_length, int truncate, int32_t *ids,
                            int32_t *type_ids, size_t *len, int *truncated, inferd_error *err) {
    const inferd_tokenizer_template *tp = &t->p.tmpl;
    size_t special = tp->n_prefix + tp->n_suffix;
    *len = 0;
    if (truncated)
        *truncated = 0;
    if (INFERD_NEVER(max_length <= special))
        return inferd_error_set(err, INFERD_EINVAL, "max_length %zu leaves no room for text",
                                max_length);
    size_t bad;
    if (inferd_unicode_validate(text, n, &bad) != 0)
        return inferd_error_set(err, INFERD_EINVAL, "text is not valid UTF-8 (byte offset %zu)",
                                bad);
    inferd_scratch_ids out = {ids + tp->n_prefix, 0, max_length - special, 0};
    size_t pos = 0;
    int first = 1;
    while (pos <= n && !inferd_scratch_ids_full(&out)) {
        size_t ms = n, me = n;
        int32_t aid = -1;
        int found = t->p.n_added ? next_added(t, text, n, pos, &ms, &me, &aid) : 0;
        if (ms > pos || (!found && pos == 0)) {
            int rc = encode_segment(t, s, text + pos, ms - pos, first, &out, err);
            if (rc)
                return rc;
        }
        first = 0;
        if (!found)
            break;
        inferd_scratch_ids_push(&out, aid);
        pos = me;
    }
    if (out.overflow && !truncate)
        return inferd_error_set(err, INFERD_ETOOLARGE, "text needs more than max_length %zu tokens",
                                max_length);
    for (size_t i = 0; i < tp->n_prefix; i++) {
        ids[i] = tp->prefix_ids[i];
        type_ids[i] = tp->prefix_types[i];
    }
    for (size_t i = 0; i < out.n; i++)
        type_ids[tp->n_prefix + i] = tp->seq_type;
    size_t k = tp->n_prefix + out.n;
    for (size_t i = 0; i < tp->n_suffix; i++) {
        ids[k] = tp->suffix_ids[i];
        type_ids[k] = tp->suffix_types[i];
        k++;
    }
    *len = k;
    if (truncated)
        *truncated = out.overflow;
    return 0;
}
