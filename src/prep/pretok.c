#include "prep/pretok.h"

#include <string.h>

#include "prep/unicode.h"

void inferd_pretok_deinit(inferd_pretok *step) {
    inferd_free(step->pattern);
    step->pattern = NULL;
}

uint32_t inferd_pretok_byte_char(unsigned b) {
    // bytes_to_unicode keeps printable Latin-1 bytes as themselves and numbers the other 68
    // bytes 256, 257, ... in byte order: 0..32, then 127..160, then 173.
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255))
        return b;
    if (b <= 32)
        return 256 + b;
    if (b >= 127 && b <= 160)
        return 289 + (b - 127);
    return 323; // 173, the soft hyphen
}

typedef struct pieces {
    inferd_scratch *s;
    inferd_scratch_slot slot;
    inferd_piece *p;
    size_t n, cap;
} pieces;

static int emit(pieces *o, size_t off, size_t len) {
    if (len == 0)
        return 0; // Hugging Face drops empty splits
    if (o->n == o->cap) {
        size_t want = o->cap ? o->cap * 2 : 64;
        inferd_piece *p = inferd_scratch_get(o->s, o->slot, want * sizeof *p);
        if (!p)
            return -1;
        o->p = p;
        o->cap = want;
    }
    o->p[o->n++] = (inferd_piece){(uint32_t)off, (uint32_t)len};
    return 0;
}

/* Streams the (span, is_match) sequence of one piece through a split behaviour. */
typedef struct splitter {
    pieces *out;
    inferd_pretok_behavior b;
    int have; /* a pending piece [ps, pe) */
    int pending_match;
    size_t ps, pe;
} splitter;

static int span(splitter *sp, size_t a, size_t e, int match) {
    if (a == e)
        return 0;
    switch (sp->b) {
    case INFERD_PRETOK_BEHAVIOR_REMOVED:
        return match ? 0 : emit(sp->out, a, e - a);
    case INFERD_PRETOK_BEHAVIOR_ISOLATED:
        return emit(sp->out, a, e - a);
    case INFERD_PRETOK_BEHAVIOR_MERGED_WITH_PREVIOUS:
        // A match joins the gap just before it; a match after a match stands alone.
        if (match && sp->have && !sp->pending_match) {
            sp->pe = e;
            sp->pending_match = 1;
            return 0;
        }
        break;
    case INFERD_PRETOK_BEHAVIOR_MERGED_WITH_NEXT:
        // A match joins the gap just after it.
        if (!match && sp->have && sp->pending_match) {
            sp->pe = e;
            sp->pending_match = 0;
            int rc = emit(sp->out, sp->ps, sp->pe - sp->ps);
            sp->have = 0;
            return rc;
        }
        if (!match && !sp->have)
            return emit(sp->out, a, e - a);
        break;
    case INFERD_PRETOK_BEHAVIOR_CONTIGUOUS:
        if (match && sp->have && sp->pending_match) {
            sp->pe = e;
            return 0;
        }
        break;
    }
    if (sp->have && emit(sp->out, sp->ps, sp->pe - sp->ps))
        return -1;
    sp->have = 1;
    sp->ps = a;
    sp->pe = e;
    sp->pending_match = match;
    return 0;
}

static int span_end(splitter *sp) {
    int rc = sp->have ? emit(sp->out, sp->ps, sp->pe - sp->ps) : 0;
    sp->have = 0;
    return rc;
}

/* Length of the match of a splitting step at i (0: no match). */
static size_t match_at(const inferd_pretok *st, const uint32_t *c, size_t i, size_t end) {
    switch (st->kind) {
    case INFERD_PRETOK_KIND_WHITESPACE_SPLIT:
        return (inferd_unicode_class(c[i]) & INFERD_UNICODE_WHITE_SPACE) ? 1 : 0;
    case INFERD_PRETOK_KIND_PUNCTUATION:
        return (inferd_unicode_class(c[i]) & INFERD_UNICODE_PUNCT) ? 1 : 0;
    case INFERD_PRETOK_KIND_DIGITS:
        return (inferd_unicode_class(c[i]) & INFERD_UNICODE_NUMBER) ? 1 : 0;
    case INFERD_PRETOK_KIND_METASPACE:
        return c[i] == st->replacement ? 1 : 0;
    case INFERD_PRETOK_KIND_SPLIT:
        if (end - i >= st->pattern_len && c[i] == st->pattern[0] &&
            memcmp(c + i, st->pattern, st->pattern_len * sizeof *c) == 0)
            return st->pattern_len;
        return 0;
    default:
        return 0;
    }
}

static int split_piece(const inferd_pretok *st, inferd_pretok_behavior b, const uint32_t *c,
                       inferd_piece pc, pieces *out) {
    splitter sp = {.out = out, .b = b};
    int invert = (st->flags & INFERD_PRETOK_FLAG_INVERT) != 0;
    size_t end = (size_t)pc.off + pc.len, gap = pc.off;
    for (size_t i = pc.off; i < end;) {
        size_t m = match_at(st, c, i, end);
        if (m == 0) {
            i++;
            continue;
        }
        if (span(&sp, gap, i, invert) || span(&sp, i, i + m, !invert))
            return -1;
        i += m;
        gap = i;
    }
    if (span(&sp, gap, end, invert))
        return -1;
    return span_end(&sp);
}

/* Rust regex \w+|[^\w\s]+, matches kept and the rest dropped. */
static int whitespace_piece(const uint32_t *c, inferd_piece pc, pieces *out) {
    size_t end = (size_t)pc.off + pc.len;
    size_t i = pc.off;
    while (i < end) {
        unsigned k = inferd_unicode_class(c[i]);
        if (k & INFERD_UNICODE_WHITE_SPACE && !(k & INFERD_UNICODE_WORD)) {
            i++;
            continue;
        }
        int word = (k & INFERD_UNICODE_WORD) != 0;
        size_t j = i + 1;
        while (j < end) {
            unsigned kj = inferd_unicode_class(c[j]);
            int wj = (kj & INFERD_UNICODE_WORD) != 0;
            if (wj != word || (!wj && (kj & INFERD_UNICODE_WHITE_SPACE)))
                break;
            j++;
        }
        if (emit(out, i, j - i))
            return -1;
        i = j;
    }
    return 0;
}

enum { CL_L = 1, CL_N = 2, CL_S = 4 };

static int gpt2_class(uint32_t cp) {
    unsigned k = inferd_unicode_class(cp);
    return ((k & INFERD_UNICODE_LETTER) ? CL_L : 0) | ((k & INFERD_UNICODE_NUMBER) ? CL_N : 0) |
           ((k & INFERD_UNICODE_WHITE_SPACE) ? CL_S : 0);
}

/* GPT-2's pattern, tried alternative by alternative at each position as a backtracking
 * regex engine would:
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * Returns the length of the match at i (always >= 1: the last alternative takes any space). */
static size_t gpt2_match(const uint32_t *c, size_t i, size_t end) {
    if (c[i] == '\'' && i + 1 < end) {
        uint32_t d = c[i + 1];
        if (d == 's' || d == 't' || d == 'm' || d == 'd')
            return 2;
        if (i + 2 < end) {
            uint32_t e = c[i + 2];
            if ((d == 'r' && e == 'e') || (d == 'v' && e == 'e') || (d == 'l' && e == 'l'))
                return 3;
        }
    }
    size_t j = (c[i] == ' ' && i + 1 < end) ? i + 1 : i;
    int k = gpt2_class(c[j]);
    if (j == i + 1 || !(k & CL_S)) {
        int want = (k & CL_L) ? CL_L : (k & CL_N) ? CL_N : (k & CL_S) ? 0 : -1;
        if (want > 0) {
            size_t e = j + 1;
            while (e < end && (gpt2_class(c[e]) & want))
                e++;
            return e - i;
        }
        if (want < 0) { // [^\s\p{L}\p{N}]+
            size_t e = j + 1;
            while (e < end && !(gpt2_class(c[e]) & (CL_L | CL_N | CL_S)))
                e++;
            return e - i;
        }
    }
    // c[i] is white space here (a space before another space, or another space character).
    size_t r = i + 1;
    while (r < end && (gpt2_class(c[r]) & CL_S))
        r++;
    if (r == end || r - i == 1)
        return r - i;
    return r - i - 1; // leave the last space to prefix the next word
}

static size_t utf8_len(uint32_t v) { return v < 0x80 ? 1 : v < 0x800 ? 2 : v < 0x10000 ? 3 : 4; }

/* ByteLevel: optional prefix space, the GPT-2 split, then each UTF-8 byte of a word becomes
 * its printable stand-in, so the new buffer has one code point per byte. */
static int byte_level(const inferd_pretok *st, const uint32_t *c, const inferd_piece *in,
                      size_t n_in, inferd_scratch_cps *w, pieces *out) {
    for (size_t p = 0; p < n_in; p++) {
        size_t start = w->n;
        if (inferd_scratch_cps_reserve(w, (size_t)in[p].len + 1))
            return -1;
        if ((st->flags & INFERD_PRETOK_FLAG_ADD_PREFIX_SPACE) && c[in[p].off] != ' ')
            w->p[w->n++] = ' ';
        memcpy(w->p + w->n, c + in[p].off, in[p].len * sizeof *c);
        w->n += in[p].len;
        // Split on code points first (the regex sees text), then move to byte units.
        size_t wend = w->n, first = out->n;
        for (size_t i = start; i < wend;) {
            size_t m =
                (st->flags & INFERD_PRETOK_FLAG_USE_REGEX) ? gpt2_match(w->p, i, wend) : wend - i;
            if (emit(out, i, m))
                return -1;
            i += m;
        }
        size_t bytepos = start;
        for (size_t k = first; k < out->n; k++) {
            size_t nb = 0;
            for (size_t i = out->p[k].off; i < (size_t)out->p[k].off + out->p[k].len; i++)
                nb += utf8_len(w->p[i]);
            out->p[k] = (inferd_piece){(uint32_t)bytepos, (uint32_t)nb};
            bytepos += nb;
        }
        if (inferd_scratch_cps_reserve(w, bytepos - wend))
            return -1;
        // Expand from the back: each code point is read before anything overwrites it.
        size_t dst = bytepos;
        for (size_t i = wend; i-- > start;) {
            char b[4];
            size_t k = inferd_unicode_encode(w->p[i], b);
            dst -= k;
            for (size_t j = 0; j < k; j++)
                w->p[dst + j] = inferd_pretok_byte_char((unsigned char)b[j]);
        }
        w->n = bytepos;
    }
    return 0;
}

/* Metaspace: ' ' becomes the replacement, a replacement is prefixed by the prepend scheme,
 * then (with split) the word is cut before each replacement character. */
static int metaspace(const inferd_pretok *st, const uint32_t *c, const inferd_piece *in,
                     size_t n_in, int first, inferd_scratch_cps *w, pieces *out) {
    for (size_t p = 0; p < n_in; p++) {
        size_t start = w->n;
        if (inferd_scratch_cps_reserve(w, (size_t)in[p].len + 1))
            return -1;
        int starts_with = in[p].len > 0 && (c[in[p].off] == ' ' || c[in[p].off] == st->replacement);
        int prepend =
            (st->flags & INFERD_PRETOK_FLAG_PREPEND_ALWAYS) ||
            ((st->flags & INFERD_PRETOK_FLAG_PREPEND_FIRST) && first && p == 0 && in[p].off == 0);
        if (prepend && !starts_with)
            w->p[w->n++] = st->replacement;
        for (size_t i = in[p].off; i < (size_t)in[p].off + in[p].len; i++)
            w->p[w->n++] = c[i] == ' ' ? st->replacement : c[i];
        inferd_piece word = {(uint32_t)start, (uint32_t)(w->n - start)};
        if (!(st->flags & INFERD_PRETOK_FLAG_SPLIT)) {
            if (emit(out, word.off, word.len))
                return -1;
        } else if (split_piece(st, INFERD_PRETOK_BEHAVIOR_MERGED_WITH_NEXT, w->p, word, out)) {
            return -1;
        }
    }
    return 0;
}

int inferd_pretok_run(const inferd_pretok *steps, size_t n_steps, inferd_scratch *s, int first,
                      inferd_scratch_slot *cp_slot, size_t *n, inferd_scratch_slot *piece_slot,
                      size_t *n_pieces, inferd_error *err) {
    if (*n >= ((size_t)1 << 31) / 4)
        return inferd_error_set(err, INFERD_ETOOLARGE, "text is too long to tokenize");
    pieces cur = {.s = s, .slot = INFERD_SCRATCH_SLOT_PIECES_A};
    if (emit(&cur, 0, *n))
        goto oom;
    for (size_t k = 0; k < n_steps; k++) {
        const inferd_pretok *st = &steps[k];
        pieces out = {.s = s,
                      .slot = cur.slot == INFERD_SCRATCH_SLOT_PIECES_A
                                  ? INFERD_SCRATCH_SLOT_PIECES_B
                                  : INFERD_SCRATCH_SLOT_PIECES_A};
        const uint32_t *c = inferd_scratch_get(s, *cp_slot, *n * sizeof *c + 4);
        if (!c)
            goto oom;
        if (st->kind == INFERD_PRETOK_KIND_BYTE_LEVEL || st->kind == INFERD_PRETOK_KIND_METASPACE) {
            inferd_scratch_cps w = {.s = s,
                                    .slot = *cp_slot == INFERD_SCRATCH_SLOT_CP_A
                                                ? INFERD_SCRATCH_SLOT_CP_B
                                                : INFERD_SCRATCH_SLOT_CP_A};
            int rc = st->kind == INFERD_PRETOK_KIND_BYTE_LEVEL
                         ? byte_level(st, c, cur.p, cur.n, &w, &out)
                         : metaspace(st, c, cur.p, cur.n, first, &w, &out);
            if (rc)
                goto oom;
            *cp_slot = w.slot;
            *n = w.n;
        } else {
            for (size_t i = 0; i < cur.n; i++) {
                int rc = st->kind == INFERD_PRETOK_KIND_WHITESPACE
                             ? whitespace_piece(c, cur.p[i], &out)
                             : split_piece(st,
                                           st->kind == INFERD_PRETOK_KIND_WHITESPACE_SPLIT
                                               ? INFERD_PRETOK_BEHAVIOR_REMOVED
                                               : st->behavior,
                                           c, cur.p[i], &out);
                if (rc)
                    goto oom;
            }
        }
        cur = out;
    }
    *piece_slot = cur.slot;
    *n_pieces = cur.n;
    return 0;
oom:
    return inferd_error_set(err, INFERD_EINTERNAL, "out of memory while splitting text");
}
