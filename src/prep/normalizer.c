#include "prep/normalizer.h"

#include <string.h>

#include "prep/unicode.h"

void inferd_normalizer_deinit(inferd_normalizer *step) {
    inferd_free(step->pattern);
    inferd_free(step->content);
    step->pattern = step->content = NULL;
}

/* Starts w empty in slot of s, with room for hint + 16 code points. */
static int writer_start(inferd_scratch_cps *w, inferd_scratch *s, inferd_scratch_slot slot,
                        size_t hint) {
    w->s = s;
    w->slot = slot;
    w->n = 0;
    w->cap = 0;
    w->p = NULL;
    return inferd_scratch_cps_reserve(w, hint + 16);
}

static int clean(const inferd_normalizer *st, const uint32_t *in, size_t n, inferd_scratch_cps *w) {
    int python = (st->flags & INFERD_NORMALIZER_FLAG_PYTHON) != 0;
    unsigned control = python ? INFERD_UNICODE_BERT_CONTROL : INFERD_UNICODE_HF_CONTROL;
    unsigned space = python ? INFERD_UNICODE_BERT_SPACE : INFERD_UNICODE_WHITE_SPACE;
    int do_clean = (st->flags & INFERD_NORMALIZER_FLAG_CLEAN_TEXT) != 0;
    int chinese = (st->flags & INFERD_NORMALIZER_FLAG_CHINESE) != 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = in[i];
        if (inferd_scratch_cps_reserve(w, 3))
            return -1;
        if (c >= 0x20 && c < 0x7F) { // printable ASCII: nothing to do
            w->p[w->n++] = c;
            continue;
        }
        unsigned cls = inferd_unicode_class(c);
        if (do_clean) {
            if (c == 0 || c == 0xFFFD || (cls & control))
                continue;
            if (cls & space) {
                w->p[w->n++] = ' ';
                continue;
            }
        }
        if (chinese && (cls & INFERD_UNICODE_CJK)) {
            w->p[w->n++] = ' ';
            w->p[w->n++] = c;
            w->p[w->n++] = ' ';
            continue;
        }
        w->p[w->n++] = c;
    }
    return 0;
}

static int decompose(const uint32_t *in, size_t n, inferd_scratch_cps *w, int compat,
                     int strip_mn) {
    for (size_t i = 0; i < n; i++) {
        if (in[i] < 0xA0) {
            if (inferd_scratch_cps_reserve(w, 1))
                return -1;
            w->p[w->n++] = in[i];
            continue;
        }
        if (inferd_scratch_cps_reserve(w, INFERD_UNICODE_MAX_DECOMP))
            return -1;
        w->n += inferd_unicode_decompose_char(in[i], w->p + w->n, compat);
    }
    inferd_unicode_canonical_order(w->p, w->n);
    if (strip_mn) {
        size_t k = 0;
        for (size_t i = 0; i < w->n; i++)
            if (w->p[i] < 0x300 || !(inferd_unicode_class(w->p[i]) & INFERD_UNICODE_MN))
                w->p[k++] = w->p[i];
        w->n = k;
    }
    return 0;
}

static int replace(const inferd_normalizer *st, const uint32_t *in, size_t n,
                   inferd_scratch_cps *w) {
    size_t m = st->pattern_len;
    for (size_t i = 0; i < n;) {
        if (i + m <= n && in[i] == st->pattern[0] &&
            memcmp(in + i, st->pattern, m * sizeof *in) == 0) {
            if (inferd_scratch_cps_reserve(w, st->content_len))
                return -1;
            if (st->content_len)
                memcpy(w->p + w->n, st->content, st->content_len * sizeof *in);
            w->n += st->content_len;
            i += m;
        } else {
            if (inferd_scratch_cps_reserve(w, 1))
                return -1;
            w->p[w->n++] = in[i++];
        }
    }
    return 0;
}

static int run_step(const inferd_normalizer *st, const uint32_t *in, size_t n,
                    inferd_scratch_cps *w) {
    switch (st->kind) {
    case INFERD_NORMALIZER_KIND_CLEAN:
        return clean(st, in, n, w);
    case INFERD_NORMALIZER_KIND_LOWERCASE:
        if (inferd_scratch_cps_reserve(w, 2 * n))
            return -1;
        w->n = inferd_unicode_lower(in, n, w->p, (st->flags & INFERD_NORMALIZER_FLAG_FINAL_SIGMA));
        return 0;
    case INFERD_NORMALIZER_KIND_NFD:
    case INFERD_NORMALIZER_KIND_NFKD:
    case INFERD_NORMALIZER_KIND_NFC:
    case INFERD_NORMALIZER_KIND_NFKC: {
        int compat =
            st->kind == INFERD_NORMALIZER_KIND_NFKD || st->kind == INFERD_NORMALIZER_KIND_NFKC;
        if (decompose(in, n, w, compat, 0))
            return -1;
        if (st->kind == INFERD_NORMALIZER_KIND_NFC || st->kind == INFERD_NORMALIZER_KIND_NFKC)
            w->n = inferd_unicode_compose(w->p, w->n);
        return 0;
    }
    case INFERD_NORMALIZER_KIND_NFD_STRIP_MN:
        return decompose(in, n, w, 0, 1);
    case INFERD_NORMALIZER_KIND_STRIP_MN:
        if (inferd_scratch_cps_reserve(w, n))
            return -1;
        for (size_t i = 0; i < n; i++)
            if (in[i] < 0x300 || !(inferd_unicode_class(in[i]) & INFERD_UNICODE_MN))
                w->p[w->n++] = in[i];
        return 0;
    case INFERD_NORMALIZER_KIND_STRIP: {
        size_t a = 0, b = n;
        if (st->flags & INFERD_NORMALIZER_FLAG_LEFT)
            while (a < b && (inferd_unicode_class(in[a]) & INFERD_UNICODE_WHITE_SPACE))
                a++;
        if (st->flags & INFERD_NORMALIZER_FLAG_RIGHT)
            while (b > a && (inferd_unicode_class(in[b - 1]) & INFERD_UNICODE_WHITE_SPACE))
                b--;
        if (inferd_scratch_cps_reserve(w, b - a))
            return -1;
        memcpy(w->p, in + a, (b - a) * sizeof *in);
        w->n = b - a;
        return 0;
    }
    case INFERD_NORMALIZER_KIND_REPLACE:
        return replace(st, in, n, w);
    case INFERD_NORMALIZER_KIND_PREPEND:
        if (inferd_scratch_cps_reserve(w, n + st->content_len))
            return -1;
        if (n > 0 && st->content_len) {
            memcpy(w->p, st->content, st->content_len * sizeof *in);
            w->n = st->content_len;
        }
        memcpy(w->p + w->n, in, n * sizeof *in);
        w->n += n;
        return 0;
    }
    return -1;
}

int inferd_normalizer_run(const inferd_normalizer *steps, size_t n_steps, inferd_scratch *s,
                          inferd_scratch_slot *slot, size_t *n, inferd_error *err) {
    for (size_t i = 0; i < n_steps; i++) {
        inferd_scratch_slot from = *slot;
        inferd_scratch_slot to =
            from == INFERD_SCRATCH_SLOT_CP_A ? INFERD_SCRATCH_SLOT_CP_B : INFERD_SCRATCH_SLOT_CP_A;
        inferd_scratch_cps w;
        // The input slot is not touched while the output slot grows, so in stays valid.
        const uint32_t *in = inferd_scratch_get(s, from, *n * sizeof(uint32_t) + 1);
        if (!in || writer_start(&w, s, to, *n) || run_step(&steps[i], in, *n, &w))
            return inferd_error_set(err, INFERD_EINTERNAL, "out of memory while normalizing");
        *slot = to;
        *n = w.n;
    }
    return 0;
}
