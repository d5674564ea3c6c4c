/* bpe.h: the byte-pair-encoding model (GPT-2, RoBERTa, and Hugging Face BPE in general).
 *
 * A word starts as one symbol per character (with the continuation prefix on all but the
 * first and the end-of-word suffix on the last, when configured); characters missing from the
 * vocabulary become <0xNN> byte tokens (byte_fallback) or the unknown token (consecutive
 * ones fused with fuse_unk). Then the lowest-ranked adjacent pair is merged, leftmost first,
 * until no ranked pair is left. A binary heap of candidate pairs makes a word O(n log n), so
 * a long word without spaces cannot stall a request thread.
 *
 * Merges are ranked in the order added. Immutable after loading; encode is safe from any
 * number of threads at once, each with its own scratch.
 */
#ifndef INFERD_PREP_BPE_H
#define INFERD_PREP_BPE_H

#include "prep/scratch.h"
#include "prep/vocab.h"

typedef struct inferd_bpe inferd_bpe;

typedef struct inferd_bpe_options {
    const char *unk_token; /* NULL: unknown characters are dropped */
    const char *prefix;    /* continuing_subword_prefix, NULL for none */
    const char *suffix;    /* end_of_word_suffix, NULL for none */
    int fuse_unk;
    int byte_fallback;
    int ignore_merges; /* a word that is itself in the vocab skips merging */
} inferd_bpe_options;

/* Creates the model over vocab, taking ownership of vocab (destroyed on failure too).
 * Returns 0, INFERD_EINVAL (unk token not in vocab) or INFERD_EINTERNAL. */
int inferd_bpe_create(inferd_vocab *vocab, const inferd_bpe_options *opt, inferd_mem_account *acct,
                      inferd_bpe **out, inferd_error *err);

/* Frees the model and its vocab; NULL does nothing. */
void inferd_bpe_destroy(inferd_bpe *b);

/* The vocab (owned by the model). */
const inferd_vocab *inferd_bpe_vocab(const inferd_bpe *b);

/* Adds the next merge rule "a b" (rank = number of rules added before). Both sides and
 * their concatenation (a + b without b's continuation prefix) must be in the vocab.
 * Load time only, not thread-safe. Returns 0, INFERD_EINVAL naming the missing token, or
 * INFERD_EINTERNAL. */
int inferd_bpe_add_merge(inferd_bpe *b, const char *a, size_t na, const char *bb, size_t nb,
                         inferd_error *err);

/* Appends the ids of the word cps[0..n) to out. Uses scratch slots BYTES, MODEL_A, MODEL_B.
 * Returns 0 or INFERD_EINTERNAL. */
int inferd_bpe_encode(const inferd_bpe *b, inferd_scratch *s, const uint32_t *cps, size_t n,
                      inferd_scratch_ids *out, inferd_error *err);

#endif
