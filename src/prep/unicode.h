/* unicode.h: the character facts every tokenizer needs, in one place and fast.
 *
 * Text arrives as UTF-8 from untrusted clients, so validation reports the byte offset of the
 * first bad byte instead of guessing. Tokenizers then work on arrays of code points (uint32_t):
 * decoding once keeps every later pass (normalizers, splitters, models) free of UTF-8 edge cases.
 *
 * Character classes come in two flavours because the references disagree on small points:
 * BERT's Python tokenization.py (used by the "wordpiece" pipeline tokenizer) and Hugging Face's
 * Rust tokenizers (used for tokenizer.json). ASCII is answered from a table; everything else
 * from utf8proc's property tables, so no call allocates and all are safe from any thread.
 */
#ifndef INFERD_PREP_UNICODE_H
#define INFERD_PREP_UNICODE_H

#include <stddef.h>
#include <stdint.h>

/* Class bits returned by inferd_unicode_class. */
enum {
    INFERD_UNICODE_BERT_SPACE = 1u << 0,   /* BERT _is_whitespace: space, \t, \n, \r or Zs */
    INFERD_UNICODE_BERT_CONTROL = 1u << 1, /* BERT _is_control: category C* except \t\n\r */
    INFERD_UNICODE_HF_CONTROL = 1u << 2,   /* HF is_control: Cc, Cf, Cn, Co except \t\n\r */
    INFERD_UNICODE_WHITE_SPACE = 1u << 3,  /* the White_Space property (Rust is_whitespace) */
    INFERD_UNICODE_PUNCT = 1u << 4,        /* BERT/HF punctuation: ASCII symbols or P* */
    INFERD_UNICODE_CJK = 1u << 5,          /* BERT's CJK ideograph blocks */
    INFERD_UNICODE_MN = 1u << 6,           /* nonspacing mark (Mn), removed by accent stripping */
    INFERD_UNICODE_LETTER = 1u << 7,       /* L* (regex \p{L}) */
    INFERD_UNICODE_NUMBER = 1u << 8,       /* N* (regex \p{N}, Rust is_numeric) */
    INFERD_UNICODE_WORD = 1u << 9,         /* regex \w: L*, M*, Nd, Nl, Pc, ZWJ, ZWNJ */
    INFERD_UNICODE_CASED = 1u << 10,       /* has case (for the final-sigma rule) */
    INFERD_UNICODE_CASE_IGNORABLE = 1u << 11, /* skipped by the final-sigma rule */
};

/* Returns 0 if s[0..n) is well-formed UTF-8 (no overlongs, surrogates or code points above
 * U+10FFFF), else -1 with *bad_offset (if not NULL) set to the offset of the first byte of
 * the first ill-formed sequence. */
int inferd_unicode_validate(const char *s, size_t n, size_t *bad_offset);

/* Decodes valid UTF-8 (checked by inferd_unicode_validate first) into out, which must hold n
 * code points. Returns the number of code points written. */
size_t inferd_unicode_decode(const char *s, size_t n, uint32_t *out);

/* Writes the UTF-8 form of cp (at most 4 bytes) to out and returns its length. */
size_t inferd_unicode_encode(uint32_t cp, char *out);

/* Encodes n code points into out, which must hold 4 * n bytes; returns the bytes written. */
size_t inferd_unicode_encode_all(const uint32_t *cps, size_t n, char *out);

/* The INFERD_UNICODE_* bits that hold for cp. */
unsigned inferd_unicode_class(uint32_t cp);

/* Lowercases n code points into out (room for 2 * n: U+0130 becomes two code points) and
 * returns the count written. Mapping is Unicode's full lowercase, as Python's str.lower()
 * and Rust's char::to_lowercase do; with final_sigma, capital sigma at the end of a word
 * becomes the final form as in Python (Rust's per-character mapping does not do this). */
size_t inferd_unicode_lower(const uint32_t *in, size_t n, uint32_t *out, int final_sigma);

/* Most code points one code point can decompose into (canonical or compatibility). */
#define INFERD_UNICODE_MAX_DECOMP 18

/* Writes the canonical (compat = 0) or compatibility decomposition of cp to out (room for
 * INFERD_UNICODE_MAX_DECOMP) and returns its length (1 when cp does not decompose). Marks are
 * not yet in canonical order: run inferd_unicode_canonical_order over the whole result. */
size_t inferd_unicode_decompose_char(uint32_t cp, uint32_t *out, int compat);

/* Puts each run of combining marks in buf into canonical order (by combining class, stable),
 * completing NFD/NFKD after inferd_unicode_decompose_char. */
void inferd_unicode_canonical_order(uint32_t *buf, size_t n);

/* Canonical composition in place of a decomposed sequence (NFD -> NFC, NFKD -> NFKC).
 * Returns the new length. */
size_t inferd_unicode_compose(uint32_t *buf, size_t n);

#endif
