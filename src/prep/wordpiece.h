/* wordpiece.h: the WordPiece model: one word -> sub-word ids, greedy longest match first.
 *
 * This is the second half of BERT's tokenizer (WordpieceTokenizer) and Hugging Face's
 * WordPiece model: from the start of the word take the longest vocabulary entry, continue
 * with continuation pieces ("##ing"); if some position matches nothing, or the word has more
 * than max_chars characters, the whole word becomes the unknown token.
 *
 * Prefix hashes are extended byte by byte and each is probed once, so a word costs
 * O(length x longest token) hash probes, with no allocation beyond the scratch.
 * The model is immutable after create and safe from any number of threads at once.
 */
#ifndef INFERD_PREP_WORDPIECE_H
#define INFERD_PREP_WORDPIECE_H

#include "prep/scratch.h"
#include "prep/vocab.h"

typedef struct inferd_wordpiece inferd_wordpiece;

/* Creates the model over vocab, taking ownership of vocab (destroyed with the model, or
 * here on failure). prefix is the continuation marker ("##"), unk the unknown token's string
 * (which must be in vocab), max_chars the longest word not mapped to unk (BERT: 100).
 * Returns 0, INFERD_EINVAL naming a missing unk token, or INFERD_EINTERNAL. */
int inferd_wordpiece_create(inferd_vocab *vocab, const char *prefix, const char *unk,
                            size_t max_chars, inferd_mem_account *acct, inferd_wordpiece **out,
                            inferd_error *err);

/* Frees the model and its vocab; NULL does nothing. */
void inferd_wordpiece_destroy(inferd_wordpiece *wp);

/* The vocab (owned by the model). */
const inferd_vocab *inferd_wordpiece_vocab(const inferd_wordpiece *wp);

/* Appends the ids of the word cps[0..n) to out. Uses scratch slots BYTES, MODEL_A, MODEL_B.
 * Returns 0 or INFERD_EINTERNAL (out of memory). */
int inferd_wordpiece_encode(const inferd_wordpiece *wp, inferd_scratch *s, const uint32_t *cps,
                            size_t n, inferd_scratch_ids *out, inferd_error *err);

#endif
