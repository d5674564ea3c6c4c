/* normalizer.h: text normalization steps run on code points before splitting into words.
 *
 * Each step rewrites a code-point array into another (Unicode forms, lowercasing, accent
 * stripping, BERT's text cleaning, string replacement). Hugging Face normalizers and BERT's
 * BasicTokenizer both compile to a flat list of these steps (Sequence is flattened, and
 * BertNormalizer becomes CLEAN + LOWERCASE + NFD_STRIP_MN in the reference's order), so one
 * small executor serves both.
 *
 * Steps are plain data owned by whoever built them (a tokenizer); after building they are
 * read-only and a list may be run from any number of threads, each with its own scratch.
 */
#ifndef INFERD_PREP_NORMALIZER_H
#define INFERD_PREP_NORMALIZER_H

#include <stddef.h>
#include <stdint.h>

#include "prep/scratch.h"
#include "util/error.h"

typedef enum inferd_normalizer_kind {
    INFERD_NORMALIZER_KIND_CLEAN = 0, /* BERT clean_text and/or CJK spacing (flags) */
    INFERD_NORMALIZER_KIND_LOWERCASE, /* full lowercase; FINAL_SIGMA as Python does */
    INFERD_NORMALIZER_KIND_NFD,
    INFERD_NORMALIZER_KIND_NFC,
    INFERD_NORMALIZER_KIND_NFKD,
    INFERD_NORMALIZER_KIND_NFKC,
    INFERD_NORMALIZER_KIND_STRIP_MN,     /* drop nonspacing marks (HF StripAccents) */
    INFERD_NORMALIZER_KIND_NFD_STRIP_MN, /* NFD, then drop nonspacing marks (BERT accents) */
    INFERD_NORMALIZER_KIND_STRIP,        /* trim White_Space (LEFT/RIGHT flags) */
    INFERD_NORMALIZER_KIND_REPLACE,      /* every pattern occurrence -> content */
    INFERD_NORMALIZER_KIND_PREPEND,      /* content before a non-empty text */
} inferd_normalizer_kind;

enum {
    INFERD_NORMALIZER_FLAG_CLEAN_TEXT = 1u << 0,  /* CLEAN: drop controls, whitespace -> ' ' */
    INFERD_NORMALIZER_FLAG_CHINESE = 1u << 1,     /* CLEAN: spaces around CJK ideographs */
    INFERD_NORMALIZER_FLAG_PYTHON = 1u << 2,      /* CLEAN: BERT Python classes, not HF's */
    INFERD_NORMALIZER_FLAG_FINAL_SIGMA = 1u << 3, /* LOWERCASE: Python's final sigma */
    INFERD_NORMALIZER_FLAG_LEFT = 1u << 4,        /* STRIP */
    INFERD_NORMALIZER_FLAG_RIGHT = 1u << 5,       /* STRIP */
};

typedef struct inferd_normalizer {
    inferd_normalizer_kind kind;
    unsigned flags;
    uint32_t *pattern; /* REPLACE: non-empty pattern; inferd_malloc'd, freed by deinit */
    size_t pattern_len;
    uint32_t *content; /* REPLACE replacement / PREPEND text; inferd_malloc'd, may be NULL */
    size_t content_len;
} inferd_normalizer;

/* Frees pattern and content of one step. */
void inferd_normalizer_deinit(inferd_normalizer *step);

/* Runs steps[0..n_steps) over the n code points held in scratch slot *slot (CP_A or CP_B).
 * The result is left in the slot named by *slot on return (the steps ping-pong between the
 * two) with its length in *n. Returns 0 or INFERD_EINTERNAL when out of memory. */
int inferd_normalizer_run(const inferd_normalizer *steps, size_t n_steps, inferd_scratch *s,
                          inferd_scratch_slot *slot, size_t *n, inferd_error *err);

#endif
