/* tokenizer.h: one text -> token ids, the way the model was trained to see it.
 *
 * A tokenizer is the Hugging Face pipeline, made of data:
 *   added tokens   matched in the raw text first (leftmost, longest), each becoming its id;
 *   normalizers    on the text between them (normalizer.h);
 *   pre-tokenizers cutting it into words (pretok.h);
 *   a model        turning each word into ids (WordPiece, BPE, Unigram or one id per char);
 *   a template     of special tokens around the sequence, with type ids.
 * BERT's tokenizer, the char tokenizer and tokenizer.json all become one of these, so there is
 * one encode path to test and to fuzz.
 *
 * Truncation happens while encoding: once the sequence holds max_length tokens (less the
 * template's special tokens) encoding stops, so an over-long request costs O(its bytes) for
 * decoding and splitting but never runs the model on words that would be cut.
 *
 * A tokenizer is immutable once created, and encode is safe from any number of threads at
 * once, each with its own scratch.
 */
#ifndef INFERD_PREP_TOKENIZER_H
#define INFERD_PREP_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "prep/bpe.h"
#include "prep/chartok.h"
#include "prep/normalizer.h"
#include "prep/pretok.h"
#include "prep/scratch.h"
#include "prep/unigram.h"
#include "prep/wordpiece.h"

typedef struct inferd_tokenizer inferd_tokenizer;

typedef enum inferd_tokenizer_model_kind {
    INFERD_TOKENIZER_MODEL_KIND_NONE = 0,
    INFERD_TOKENIZER_MODEL_KIND_WORDPIECE,
    INFERD_TOKENIZER_MODEL_KIND_BPE,
    INFERD_TOKENIZER_MODEL_KIND_UNIGRAM,
    INFERD_TOKENIZER_MODEL_KIND_CHAR,
} inferd_tokenizer_model_kind;

enum {
    INFERD_TOKENIZER_ADDED_SINGLE_WORD = 1u << 0, /* only as a whole word */
    INFERD_TOKENIZER_ADDED_LSTRIP = 1u << 1,      /* swallows white space before it */
    INFERD_TOKENIZER_ADDED_RSTRIP = 1u << 2,      /* swallows white space after it */
};

typedef struct inferd_tokenizer_added {
    char *content; /* inferd_malloc'd UTF-8, non-empty */
    size_t len;
    int32_t id;
    unsigned flags;
} inferd_tokenizer_added;

#define INFERD_TOKENIZER_MAX_SPECIAL 8

/* The single-sequence template: prefix tokens, the sequence, suffix tokens. */
typedef struct inferd_tokenizer_template {
    int32_t prefix_ids[INFERD_TOKENIZER_MAX_SPECIAL], prefix_types[INFERD_TOKENIZER_MAX_SPECIAL];
    size_t n_prefix;
    int32_t seq_type;
    int32_t suffix_ids[INFERD_TOKENIZER_MAX_SPECIAL], suffix_types[INFERD_TOKENIZER_MAX_SPECIAL];
    size_t n_suffix;
} inferd_tokenizer_template;

/* Everything a tokenizer is made of. inferd_tokenizer_create takes ownership of every
 * pointer here (arrays from inferd_malloc, model from its create function) whether it
 * succeeds or fails; inferd_tokenizer_parts_deinit frees parts that were never handed over. */
typedef struct inferd_tokenizer_parts {
    inferd_normalizer *normalizers;
    size_t n_normalizers;
    inferd_pretok *pretoks;
    size_t n_pretoks;
    inferd_tokenizer_model_kind model_kind;
    void *model; /* inferd_wordpiece, inferd_bpe, inferd_unigram or inferd_chartok */
    inferd_tokenizer_added *added;
    size_t n_added;
    inferd_tokenizer_template tmpl;
    int32_t pad_id; /* default padding id (-1: none known) */
} inferd_tokenizer_parts;

/* Frees whatever parts holds and zeroes it. */
void inferd_tokenizer_parts_deinit(inferd_tokenizer_parts *parts);

/* Makes a tokenizer of parts (zeroed on return: ownership always moves). Returns 0,
 * INFERD_EINVAL (no model) or INFERD_EINTERNAL. The caller destroys the tokenizer. */
int inferd_tokenizer_create(inferd_tokenizer_parts *parts, inferd_mem_account *acct,
                            inferd_tokenizer **out, inferd_error *err);

/* Frees t and all its parts; NULL does nothing. */
void inferd_tokenizer_destroy(inferd_tokenizer *t);

/* Replaces the special-token template. Load time only, before the tokenizer is shared. */
void inferd_tokenizer_set_template(inferd_tokenizer *t, const inferd_tokenizer_template *tp);

/* The id of a token string: an added token, else a vocabulary entry; -1 if neither. */
int32_t inferd_tokenizer_token_id(const inferd_tokenizer *t, const char *tok, size_t n);

/* Number of special tokens the template adds around every sequence. */
size_t inferd_tokenizer_num_special(const inferd_tokenizer *t);

/* The padding id the tokenizer itself suggests, -1 if none. */
int32_t inferd_tokenizer_pad_id(const inferd_tokenizer *t);

/* The model kind (for messages and tests). */
inferd_tokenizer_model_kind inferd_tokenizer_model(const inferd_tokenizer *t);

/* Encodes text[0..n) into ids and type_ids (each with room for max_length), writing the count
 * to *len. If the text needs more than max_length tokens (special tokens included): with
 * truncate, the sequence is cut at the end (special tokens kept) and *truncated set to 1;
 * without, INFERD_ETOOLARGE. Invalid UTF-8 gives INFERD_EINVAL with the byte offset.
 * max_length must exceed the number of special tokens. */
int inferd_tokenizer_encode(const inferd_tokenizer *t, inferd_scratch *s, const char *text,
                            size_t n, size_t max_length, int truncate, int32_t *ids,
                            int32_t *type_ids, size_t *len, int *truncated, inferd_error *err);

#endif
