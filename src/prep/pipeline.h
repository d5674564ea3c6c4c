/* pipeline.h: a model version's preprocessing and postprocessing, loaded from its folder.
 *
 * A version folder may hold pipeline.json and the files it names (vocab.txt, tokenizer.json,
 * labels.txt...). Loading reads and checks all of it, and, given the model's inputs and
 * outputs, checks that the two fit (names, dtypes, ranks, label count), so a version whose
 * pipeline does not fit its model fails to load with the reason. docs/pipeline.md is the
 * schema, with examples.
 *
 * The request path then uses it in three steps:
 *   1. inferd_pipeline_encode: one text -> an inferd_encoding (ids, type ids, length), on the
 *      request's own thread, into memory the caller provides, before the batcher;
 *   2. inferd_pipeline_assemble: N encodings -> the model's input tensors [N, L], padded;
 *   3. inferd_pipeline_postprocess: one row of output scores -> labels, scores, top-k.
 *
 * Ownership and threads: a loaded pipeline is immutable and every function taking a const
 * pipeline is safe from any number of threads at once (each thread passes its own scratch).
 * The pipeline and everything it loads are charged to the account given at load. Strings it
 * returns (input names, labels) live as long as the pipeline.
 */
#ifndef INFERD_PREP_PIPELINE_H
#define INFERD_PREP_PIPELINE_H

#include <stddef.h>
#include <stdint.h>

#include "prep/scratch.h"
#include "util/alloc.h"
#include "util/error.h"
#include "util/tensor.h"

typedef struct inferd_pipeline inferd_pipeline;

/* The model's signature, as the backend describes it; dims of -1 are dynamic. */
typedef struct inferd_pipeline_model {
    const inferd_tensor_desc *inputs;
    size_t n_inputs;
    const inferd_tensor_desc *outputs;
    size_t n_outputs;
} inferd_pipeline_model;

/* Which tensor an assembled input holds. */
typedef enum inferd_pipeline_input_kind {
    INFERD_PIPELINE_INPUT_KIND_IDS = 0,
    INFERD_PIPELINE_INPUT_KIND_MASK,
    INFERD_PIPELINE_INPUT_KIND_TYPE_IDS,
} inferd_pipeline_input_kind;

/* One text after tokenizing. The caller provides ids and type_ids, each with room for
 * inferd_pipeline_max_length() entries (from a request arena, say); encode fills them. */
typedef struct inferd_encoding {
    int32_t *ids;
    int32_t *type_ids;
    int32_t len;   /* out: tokens used, special tokens included */
    int truncated; /* out: the text was longer and was cut */
} inferd_encoding;

/* One label of a prediction. label points into the pipeline (labels.txt), or is NULL when the
 * version has no labels file: clients then see the index as a string (see label_text). */
typedef struct inferd_pipeline_score {
    int32_t index;
    float score;
    const char *label;
} inferd_pipeline_score;

/* Loads version_dir/pipeline.json and the files it names, every byte charged to acct. With
 * model non-NULL, also checks the pipeline against the model's inputs and outputs and
 * records their dtypes; with NULL, inputs are assembled as INT64 and nothing is checked.
 * Returns 0, or INFERD_ENOTFOUND (no pipeline.json or a named file), INFERD_EINVAL (bad
 * schema, a path leaving the folder, a mismatch with the model), INFERD_EUNSUPPORTED (a
 * tokenizer.json component we do not implement) or INFERD_EINTERNAL, with err saying which
 * file and key. The caller destroys *out; nothing is kept on failure. Any thread. */
int inferd_pipeline_load(const char *version_dir, const inferd_pipeline_model *model,
                         inferd_mem_account *acct, inferd_pipeline **out, inferd_error *err);

/* As load, with pipeline.json's bytes given (used by the fuzzer). Files it names are still
 * read from version_dir; with version_dir NULL, naming any file is an error. */
int inferd_pipeline_parse(const char *json, size_t n, const char *version_dir,
                          const inferd_pipeline_model *model, inferd_mem_account *acct,
                          inferd_pipeline **out, inferd_error *err);

/* Frees the pipeline and all it loaded; NULL does nothing. No encode may be running. */
void inferd_pipeline_destroy(inferd_pipeline *p);

/* Most tokens one text becomes (special tokens included): the room encodings need. */
int32_t inferd_pipeline_max_length(const inferd_pipeline *p);

/* Tokenizes text item item_index (used only in messages) into enc, using scratch s (one per
 * thread; created with inferd_scratch_create). Returns 0, INFERD_EINVAL ("text item 3 is
 * not valid UTF-8 (byte offset 17)"), INFERD_ETOOLARGE (too many tokens with truncation
 * off) or INFERD_EINTERNAL. Any thread. */
int inferd_pipeline_encode(const inferd_pipeline *p, inferd_scratch *s, const char *text, size_t n,
                           size_t item_index, inferd_encoding *enc, inferd_error *err);

/* Number of model inputs the pipeline feeds (1 to 3), and each one's name, dtype and kind. */
size_t inferd_pipeline_input_count(const inferd_pipeline *p);
const char *inferd_pipeline_input_name(const inferd_pipeline *p, size_t i);
inferd_dtype inferd_pipeline_input_dtype(const inferd_pipeline *p, size_t i);
inferd_pipeline_input_kind inferd_pipeline_input_kind_of(const inferd_pipeline *p, size_t i);

/* The sequence length L to assemble n encodings with: the longest length ("padding":
 * "longest"), max_length ("max_length"), or the model's fixed sequence dim if it has one. */
int64_t inferd_pipeline_batch_length(const inferd_pipeline *p, const inferd_encoding *encs,
                                     size_t n);

/* Fills out[i] (i < input_count) with the [n, L] tensors: ids padded with the pad id, the
 * attention mask (1 for tokens, 0 for padding), type ids padded with 0. The caller sets each
 * out[i].data to a buffer of out[i].nbytes >= n * L * element size (allocated once per plan,
 * say); assemble sets dtype, rank and dims and writes the elements. Returns 0, or
 * INFERD_EINVAL when L is shorter than an encoding, differs from the model's fixed length,
 * or a buffer is too small. Any thread. */
int inferd_pipeline_assemble(const inferd_pipeline *p, const inferd_encoding *encs, size_t n,
                             int64_t L, inferd_tensor *out, inferd_error *err);

/* Name of the model output holding the scores. */
const char *inferd_pipeline_output_name(const inferd_pipeline *p);

/* Turns one row of C output values into at most cap labels, best first: softmax, sigmoid or
 * none, then the top_k best; with a threshold (multi-label), every label scoring at least the
 * threshold, at most top_k of them. *n_out is the count written. Returns 0 or INFERD_EINVAL
 * when C differs from the number of labels. Any thread. */
int inferd_pipeline_postprocess(const inferd_pipeline *p, const float *row, int64_t C,
                                inferd_pipeline_score *out, size_t cap, size_t *n_out,
                                inferd_error *err);

/* The best class of one row of C output values and its score after the pipeline's function
 * (softmax, sigmoid or none), regardless of top_k and threshold: a multi-label prediction
 * whose labels all fall below the threshold still has a best guess. Returns 0 or
 * INFERD_EINVAL as postprocess does. Any thread. */
int inferd_pipeline_best(const inferd_pipeline *p, const float *row, int64_t C,
                         inferd_pipeline_score *out, inferd_error *err);

/* Postprocessing settings, to describe a version's text outputs: the most labels a prediction
 * holds (top_k; 0: no limit, which only a threshold allows), whether it is multi-label (a
 * sigmoid threshold), and the number of labels in the labels file (0 without one). */
size_t inferd_pipeline_top_k(const inferd_pipeline *p);
int inferd_pipeline_multi_label(const inferd_pipeline *p);
size_t inferd_pipeline_label_count(const inferd_pipeline *p);

/* The id that fills input_ids past a text's end (the batcher pads with it too). */
int32_t inferd_pipeline_pad_id(const inferd_pipeline *p);

/* The label of index (from labels.txt), or the index written into buf as a string. */
const char *inferd_pipeline_label_text(const inferd_pipeline *p, int32_t index, char buf[16]);

#endif
