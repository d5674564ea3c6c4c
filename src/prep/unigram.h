/* unigram.h: the Unigram language-model tokenizer (SentencePiece unigram, HF Unigram).
 *
 * Each word is segmented into the pieces whose scores (log probabilities) sum highest,
 * found by Viterbi over character positions. A position no piece covers is bridged by a
 * one-character unknown node scored min_score - 10, as Hugging Face and SentencePiece do;
 * consecutive unknowns are fused into one unknown token, and with byte_fallback an unknown
 * run becomes its <0xNN> byte tokens instead. Candidate pieces at a position are probed by
 * extending one hash byte by byte, bounded by the longest piece.
 *
 * Immutable after loading; encode is safe from any number of threads at once, each with
 * its own scratch.
 */
#ifndef INFERD_PREP_UNIGRAM_H
#define INFERD_PREP_UNIGRAM_H

#include "prep/scratch.h"
#include "prep/vocab.h"

typedef struct inferd_unigram inferd_unigram;

/* Creates an empty model charged to acct. Returns 0 or INFERD_EINTERNAL. */
int inferd_unigram_create(inferd_mem_account *acct, inferd_unigram **out, inferd_error *err);

/* Frees the model; NULL does nothing. */
void inferd_unigram_destroy(inferd_unigram *u);

/* Adds the next piece (id = number of pieces added before) with its score. A repeated piece
 * string keeps its first id for lookups. Load time only. Returns 0, INFERD_EINVAL or
 * INFERD_EINTERNAL. */
int inferd_unigram_add(inferd_unigram *u, const char *piece, size_t n, double score,
                       inferd_error *err);

/* Finishes loading: unk_id (must be < pieces added) and byte_fallback. Returns 0 or
 * INFERD_EINVAL. */
int inferd_unigram_finish(inferd_unigram *u, int32_t unk_id, int byte_fallback, inferd_error *err);

/* The vocab (owned by the model). */
const inferd_vocab *inferd_unigram_vocab(const inferd_unigram *u);

/* Appends the ids of the word cps[0..n) to out. Uses scratch slots BYTES and MODEL_A..C.
 * Returns 0 or INFERD_EINTERNAL. */
int inferd_unigram_encode(const inferd_unigram *u, inferd_scratch *s, const uint32_t *cps, size_t n,
                          inferd_scratch_ids *out, inferd_error *err);

#endif
