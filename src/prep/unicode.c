#include "prep/unicode.h"

#include <string.h>
#include <utf8proc.h>

int inferd_unicode_validate(const char *s, size_t n, size_t *bad_offset) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        // Eight ASCII bytes at a time: most request text is mostly ASCII.
        while (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, p + i, 8);
            if (w & 0x8080808080808080ULL)
                break;
            i += 8;
        }
        if (i >= n)
            break;
        unsigned c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        uint32_t cp, min;
        if (c >= 0xC2 && c <= 0xDF) {
            need = 1, cp = c & 0x1F, min = 0x80;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2, cp = c & 0x0F, min = 0x800;
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3, cp = c & 0x07, min = 0x10000;
        } else {
            goto bad;
        }
        if (n - i <= need)
            goto bad;
        for (size_t k = 1; k <= need; k++) {
            if ((p[i + k] & 0xC0) != 0x80)
                goto bad;
            cp = (cp << 6) | (p[i + k] & 0x3F);
        }
        if (cp < min || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
            goto bad;
        i += need + 1;
    }
    return 0;
bad:
    if (bad_offset)
        *bad_offset = i;
    return -1;
}

size_t inferd_unicode_decode(const char *s, size_t n, uint32_t *out) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, k = 0;
    while (i < n) {
        unsigned c = p[i];
        if (c < 0x80) {
            out[k++] = c;
            i++;
        } else if (c < 0xE0) {
            out[k++] = ((c & 0x1Fu) << 6) | (p[i + 1] & 0x3Fu);
            i += 2;
        } else if (c < 0xF0) {
            out[k++] = ((c & 0x0Fu) << 12) | ((p[i + 1] & 0x3Fu) << 6) | (p[i + 2] & 0x3Fu);
            i += 3;
        } else {
            out[k++] = ((c & 0x07u) << 18) | ((p[i + 1] & 0x3Fu) << 12) |
                       ((p[i + 2] & 0x3Fu) << 6) | (p[i + 3] & 0x3Fu);
            i += 4;
        }
    }
    return k;
}

size_t inferd_unicode_encode(uint32_t cp, char *out) {
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

size_t inferd_unicode_encode_all(const uint32_t *cps, size_t n, char *out) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (cps[i] < 0x80)
            out[k++] = (char)cps[i];
        else
            k += inferd_unicode_encode(cps[i], out + k);
    }
    return k;
}

static int is_cjk(uint32_t cp) {
    // The blocks BERT's _is_chinese_char lists (CJK Unified Ideographs and extensions, and the
    // compatibility ideographs); Hangul, kana and CJK punctuation are deliberately not in it.
    return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
           (cp >= 0x20000 && cp <= 0x2A6DF) || (cp >= 0x2A700 && cp <= 0x2B73F) ||
           (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B820 && cp <= 0x2CEAF) ||
           (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

static int is_white_space_prop(uint32_t cp) {
    return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
           cp == 0x205F || cp == 0x3000;
}

static int is_mid_letter(uint32_t cp) {
    // Word_Break MidLetter, MidNumLet and Single_Quote: case-ignorable although punctuation.
    switch (cp) {
    case 0x27:
    case 0x2E:
    case 0x3A:
    case 0xB7:
    case 0x387:
    case 0x55F:
    case 0x5F4:
    case 0x2018:
    case 0x2019:
    case 0x2024:
    case 0x2027:
    case 0xFE13:
    case 0xFE52:
    case 0xFE55:
    case 0xFF07:
    case 0xFF0E:
    case 0xFF1A:
        return 1;
    default:
        return 0;
    }
}

static unsigned class_slow(uint32_t cp) {
    unsigned r = 0;
    utf8proc_category_t cat = utf8proc_category((utf8proc_int32_t)cp);
    int tab_nl_cr = cp == '\t' || cp == '\n' || cp == '\r';
    if (cp == ' ' || tab_nl_cr || cat == UTF8PROC_CATEGORY_ZS)
        r |= INFERD_UNICODE_BERT_SPACE;
    if (!tab_nl_cr &&
        (cat == UTF8PROC_CATEGORY_CC || cat == UTF8PROC_CATEGORY_CF ||
         cat == UTF8PROC_CATEGORY_CS || cat == UTF8PROC_CATEGORY_CO || cat == UTF8PROC_CATEGORY_CN))
        r |= INFERD_UNICODE_BERT_CONTROL;
    if (!tab_nl_cr && (cat == UTF8PROC_CATEGORY_CC || cat == UTF8PROC_CATEGORY_CF ||
                       cat == UTF8PROC_CATEGORY_CO || cat == UTF8PROC_CATEGORY_CN))
        r |= INFERD_UNICODE_HF_CONTROL;
    if (is_white_space_prop(cp))
        r |= INFERD_UNICODE_WHITE_SPACE;
    if ((cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) ||
        (cp >= 123 && cp <= 126) || (cat >= UTF8PROC_CATEGORY_PC && cat <= UTF8PROC_CATEGORY_PO))
        r |= INFERD_UNICODE_PUNCT;
    if (is_cjk(cp))
        r |= INFERD_UNICODE_CJK;
    if (cat == UTF8PROC_CATEGORY_MN)
        r |= INFERD_UNICODE_MN;
    if (cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO)
        r |= INFERD_UNICODE_LETTER;
    if (cat >= UTF8PROC_CATEGORY_ND && cat <= UTF8PROC_CATEGORY_NO)
        r |= INFERD_UNICODE_NUMBER;
    if ((cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_ME) ||
        cat == UTF8PROC_CATEGORY_ND || cat == UTF8PROC_CATEGORY_NL || cat == UTF8PROC_CATEGORY_PC ||
        cp == 0x200C || cp == 0x200D)
        r |= INFERD_UNICODE_WORD;
    if (cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LL || cat == UTF8PROC_CATEGORY_LT ||
        utf8proc_tolower((utf8proc_int32_t)cp) != (utf8proc_int32_t)cp ||
        utf8proc_toupper((utf8proc_int32_t)cp) != (utf8proc_int32_t)cp)
        r |= INFERD_UNICODE_CASED;
    if (cat == UTF8PROC_CATEGORY_MN || cat == UTF8PROC_CATEGORY_ME || cat == UTF8PROC_CATEGORY_CF ||
        cat == UTF8PROC_CATEGORY_LM || cat == UTF8PROC_CATEGORY_SK || is_mid_letter(cp))
        r |= INFERD_UNICODE_CASE_IGNORABLE;
    return r;
}

/* ASCII answers, filled on first use. Filling is idempotent (every thread computes the same
 * values), so a racing first use only repeats work; all accesses are atomic builtins, which
 * keeps TSan quiet and works with both gcc and clang. */
static unsigned short ascii_class[128];
static int ascii_ready;

unsigned inferd_unicode_class(uint32_t cp) {
    if (cp < 128) {
        if (!__atomic_load_n(&ascii_ready, __ATOMIC_ACQUIRE)) {
            for (uint32_t c = 0; c < 128; c++)
                __atomic_store_n(&ascii_class[c], (unsigned short)class_slow(c), __ATOMIC_RELAXED);
            __atomic_store_n(&ascii_ready, 1, __ATOMIC_RELEASE);
        }
        return __atomic_load_n(&ascii_class[cp], __ATOMIC_RELAXED);
    }
    if (cp > 0x10FFFF)
        return 0;
    return class_slow(cp);
}

static int final_sigma_at(const uint32_t *in, size_t n, size_t i) {
    // Python's rule: preceded by a cased letter and not followed by one, skipping
    // case-ignorable characters on both sides.
    size_t j = i;
    int before = 0;
    while (j > 0) {
        unsigned c = inferd_unicode_class(in[--j]);
        if (c & INFERD_UNICODE_CASE_IGNORABLE)
            continue;
        before = (c & INFERD_UNICODE_CASED) != 0;
        break;
    }
    if (!before)
        return 0;
    for (size_t k = i + 1; k < n; k++) {
        unsigned c = inferd_unicode_class(in[k]);
        if (c & INFERD_UNICODE_CASE_IGNORABLE)
            continue;
        return (c & INFERD_UNICODE_CASED) == 0;
    }
    return 1;
}

size_t inferd_unicode_lower(const uint32_t *in, size_t n, uint32_t *out, int final_sigma) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = in[i];
        if (c < 128) {
            out[k++] = (c >= 'A' && c <= 'Z') ? c + 32 : c;
        } else if (c == 0x130) {
            // The one unconditional multi-character lowercase mapping in SpecialCasing.txt.
            out[k++] = 'i';
            out[k++] = 0x307;
        } else if (c == 0x3A3 && final_sigma && final_sigma_at(in, n, i)) {
            out[k++] = 0x3C2;
        } else {
            out[k++] = (uint32_t)utf8proc_tolower((utf8proc_int32_t)c);
        }
    }
    return k;
}

size_t inferd_unicode_decompose_char(uint32_t cp, uint32_t *out, int compat) {
    // Nothing below U+00C0 decomposes canonically, and nothing below U+00A0 at all.
    if (cp < 0xA0 || (cp < 0xC0 && !compat)) {
        out[0] = cp;
        return 1;
    }
    utf8proc_option_t opt = UTF8PROC_DECOMPOSE | (compat ? UTF8PROC_COMPAT : 0);
    int bound = 0;
    utf8proc_ssize_t m = utf8proc_decompose_char((utf8proc_int32_t)cp, (utf8proc_int32_t *)out,
                                                 INFERD_UNICODE_MAX_DECOMP, opt, &bound);
    if (m < 1 || m > INFERD_UNICODE_MAX_DECOMP) {
        out[0] = cp; // cannot happen for valid code points; keep the character
        return 1;
    }
    return (size_t)m;
}

void inferd_unicode_canonical_order(uint32_t *out, size_t k) {
    // A stable insertion sort of each run of non-starters by combining class. Runs are a few
    // marks long, so this is linear in practice; ASCII skips the property lookup.
    for (size_t i = 1; i < k; i++) {
        if (out[i] < 0x300)
            continue;
        unsigned ci = utf8proc_get_property((utf8proc_int32_t)out[i])->combining_class;
        if (ci == 0)
            continue;
        size_t j = i;
        uint32_t v = out[i];
        while (j > 0) {
            unsigned cj = utf8proc_get_property((utf8proc_int32_t)out[j - 1])->combining_class;
            if (cj <= ci)
                break;
            out[j] = out[j - 1];
            j--;
        }
        out[j] = v;
    }
}

size_t inferd_unicode_compose(uint32_t *buf, size_t n) {
    if (n == 0)
        return 0;
    utf8proc_ssize_t m =
        utf8proc_normalize_utf32((utf8proc_int32_t *)buf, (utf8proc_ssize_t)n, UTF8PROC_COMPOSE);
    return m < 0 ? n : (size_t)m;
}
