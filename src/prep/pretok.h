/* pretok.h: pre-tokenizers, which cut normalized text into words for the model.
 *
 * A word ("piece") is a run of code points in a buffer. Splitting steps only rewrite the
 * list of pieces; ByteLevel and Metaspace also rewrite the text, so they write a new buffer.
 * The split behaviours (removed, isolated, merged with previous/next, contiguous) follow
 * Hugging Face's SplitDelimiterBehavior exactly, and empty pieces are dropped as it does.
 * GPT-2's regex is implemented by hand: we link no regex library.
 *
 * Steps are plain data, read-only after building, and may run from any number of threads at
 * once, each with its own scratch.
 */
#ifndef INFERD_PREP_PRETOK_H
#define INFERD_PREP_PRETOK_H

#include <stddef.h>
#include <stdint.h>

#include "prep/scratch.h"
#include "util/error.h"

typedef enum inferd_pretok_kind {
    INFERD_PRETOK_KIND_WHITESPACE_SPLIT = 0, /* split on White_Space, removing it */
    INFERD_PRETOK_KIND_WHITESPACE,           /* regex \w+|[^\w\s]+ */
    INFERD_PRETOK_KIND_PUNCTUATION,          /* split on BERT punctuation, by behavior */
    INFERD_PRETOK_KIND_DIGITS,               /* split on numeric characters, by behavior */
    INFERD_PRETOK_KIND_SPLIT,                /* split on a literal string, by behavior */
    INFERD_PRETOK_KIND_BYTE_LEVEL,           /* GPT-2: regex split, bytes -> printable chars */
    INFERD_PRETOK_KIND_METASPACE,            /* ' ' -> replacement, prefix, split before it */
} inferd_pretok_kind;

typedef enum inferd_pretok_behavior {
    INFERD_PRETOK_BEHAVIOR_REMOVED = 0,
    INFERD_PRETOK_BEHAVIOR_ISOLATED,
    INFERD_PRETOK_BEHAVIOR_MERGED_WITH_PREVIOUS,
    INFERD_PRETOK_BEHAVIOR_MERGED_WITH_NEXT,
    INFERD_PRETOK_BEHAVIOR_CONTIGUOUS,
} inferd_pretok_behavior;

enum {
    INFERD_PRETOK_FLAG_ADD_PREFIX_SPACE = 1u << 0, /* BYTE_LEVEL */
    INFERD_PRETOK_FLAG_USE_REGEX = 1u << 1,        /* BYTE_LEVEL */
    INFERD_PRETOK_FLAG_INVERT = 1u << 2,           /* SPLIT: the pattern marks the words */
    INFERD_PRETOK_FLAG_PREPEND_ALWAYS = 1u << 3,   /* METASPACE: prefix every word */
    INFERD_PRETOK_FLAG_PREPEND_FIRST = 1u << 4,    /* METASPACE: prefix the text's start */
    INFERD_PRETOK_FLAG_SPLIT = 1u << 5,            /* METASPACE: split before replacement */
};

typedef struct inferd_pretok {
    inferd_pretok_kind kind;
    inferd_pretok_behavior behavior; /* PUNCTUATION, DIGITS, SPLIT */
    unsigned flags;
    uint32_t replacement; /* METASPACE: usually U+2581 */
    uint32_t *pattern;    /* SPLIT: non-empty; inferd_malloc'd, freed by deinit */
    size_t pattern_len;
} inferd_pretok;

/* One word: code points [off, off + len) of the current buffer. */
typedef struct inferd_piece {
    uint32_t off, len;
} inferd_piece;

/* Frees pattern. */
void inferd_pretok_deinit(inferd_pretok *step);

/* Cuts the n code points in scratch slot *cp_slot into pieces by running steps in order.
 * first says whether this text starts the request (Metaspace's "first" prepend scheme).
 * On return *cp_slot and *n name the buffer the pieces refer to (ByteLevel and Metaspace
 * write a new one), *piece_slot holds the pieces and *n_pieces their count. Returns 0 or
 * INFERD_EINTERNAL (out of memory) / INFERD_ETOOLARGE (over 2^31 code points). */
int inferd_pretok_run(const inferd_pretok *steps, size_t n_steps, inferd_scratch *s, int first,
                      inferd_scratch_slot *cp_slot, size_t *n, inferd_scratch_slot *piece_slot,
                      size_t *n_pieces, inferd_error *err);

/* GPT-2's printable stand-in for byte b (bytes_to_unicode in encoder.py). */
uint32_t inferd_pretok_byte_char(unsigned b);

#endif
