/* textreq.h: the text API's requests and answers, as bytes: the /v1 predict body, the KServe
 * text signature (its tensors and metadata), and the predictions both return. Pure functions:
 * no HTTP, no models, no threads, so they can be unit-tested and fuzzed on their own.
 *
 * /v1 predict: {"text": "..."} (one text) or {"instances": ["...", ...]} (a batch), optionally
 * with "parameters": {"timeout": microseconds}. The answer is
 *   {"model_name", "model_version", "predictions": [{"label", "score", ...}, ...]}
 * with one prediction per text, in request order (see inferd_textreq_format_predictions).
 *
 * A per-team route (config.json "routes", repo/config.h) takes {"<input>": "text"} or, for a
 * batch route, {"<input>": ["text", ...]}, and answers with the route's field names: one
 * object {"<label>": ..., "<score>": ..., "<top_k>": [{"<label>", "<score>"}, ...]} per text
 * (fields the route leaves out are absent); a batch route answers with the list of them, bare
 * or as {"<results>": [...]}.
 *
 * KServe text signature: a version with a pipeline also accepts one BYTES input "text" of
 * shape [N] and answers with "label" (BYTES [N]) and "score" (FP32 [N]), plus "top_labels"
 * (BYTES [N, k]) and "top_scores" (FP32 [N, k]) when the pipeline returns more than one label
 * per text (top_k > 1, or multi-label). inferd_textreq_signature describes it so the KServe
 * parser and formatter (kserve.h) handle it like any model's tensors.
 *
 * Limits: at most max_items texts per request and max_bytes bytes per text (before
 * tokenizing; truncation to max_length tokens is the pipeline's job). Over either limit is
 * INFERD_ETOOLARGE naming the item. Invalid UTF-8 is INFERD_EINVAL naming the item.
 */
#ifndef INFERD_API_TEXTREQ_H
#define INFERD_API_TEXTREQ_H

#include <stddef.h>
#include <stdint.h>

#include "api/strbuf.h"
#include "prep/pipeline.h"
#include "repo/config.h"
#include "util/error.h"
#include "util/tensor.h"

#define INFERD_TEXTREQ_DEFAULT_MAX_ITEMS 256
#define INFERD_TEXTREQ_DEFAULT_MAX_BYTES 65536

typedef struct inferd_textreq_limits {
    size_t max_items; /* texts per request */
    size_t max_bytes; /* bytes per text */
} inferd_textreq_limits;

/* One text: len bytes at text, owned by whatever holds the parsed request. */
typedef struct inferd_text_item {
    const char *text;
    size_t len;
} inferd_text_item;

/* A parsed /v1 predict body. Caller-allocated; filled by inferd_textreq_parse_predict and
 * released with inferd_textreq_predict_deinit (also after a failed parse). The items point
 * into the parsed document that the struct keeps. */
typedef struct inferd_textreq_predict {
    inferd_text_item *items;
    size_t n_items;
    int64_t timeout_us; /* parameters.timeout, 0 when not given */
    void *doc_;         /* private: the parsed JSON the items point into */
} inferd_textreq_predict;

/* Parses a /v1 predict body (len bytes). Returns 0, INFERD_EINVAL (malformed JSON, unknown or
 * missing keys, a text that is not a string or not UTF-8: the message names the field and the
 * item, e.g. "instances[3]: text item 3 is not valid UTF-8 (...)"), or INFERD_ETOOLARGE (too
 * many texts, a text over max_bytes). Any thread. */
int inferd_textreq_parse_predict(const uint8_t *body, size_t len, const inferd_textreq_limits *lim,
                                 inferd_textreq_predict *out, inferd_error *err);
void inferd_textreq_predict_deinit(inferd_textreq_predict *r);

/* Parses the body of a request through route rt into out (as inferd_textreq_parse_predict,
 * with its errors naming the route's field: "texts[2]: must be a string, got an integer",
 * "request: unknown key 'txt' (expected text)", "text: missing (the text)"). timeout_us is 0:
 * a route's requests use the model's default timeout. Release out with
 * inferd_textreq_predict_deinit, also after a failure. Any thread. */
int inferd_textreq_parse_route(const uint8_t *body, size_t len, const inferd_config_route *rt,
                               const inferd_textreq_limits *lim, inferd_textreq_predict *out,
                               inferd_error *err);

/* Checks the texts of a KServe "text" input (a STRING tensor of shape [N], elements as 4-byte
 * lengths + bytes) against the limits and lists them in items (room for lim->max_items).
 * Does not check UTF-8 (tokenizing does, naming the item). Returns 0, INFERD_EINVAL (not a
 * rank-1 STRING tensor, malformed elements) or INFERD_ETOOLARGE. Any thread. */
int inferd_textreq_items_from_tensor(const inferd_tensor *t, const inferd_textreq_limits *lim,
                                     inferd_text_item *items, size_t *n, inferd_error *err);

/* The prediction for one text. top holds n_top labels, best first: the pipeline's top_k, or
 * for a multi-label pipeline those at or above its threshold (at most top_k). best is the best
 * label and its score whatever the threshold. Labels may be NULL (no labels file): the class
 * index is then shown as a string. */
typedef struct inferd_text_result {
    inferd_pipeline_score best;
    inferd_pipeline_score *top;
    size_t n_top;
    int64_t classes; /* scores the model returned for this text */
    int truncated;   /* the text was cut at max_length tokens */
} inferd_text_result;

/* Appends the /v1 answer for n results. Per text: "label" and "score" (the best); "top_k":
 * [{"label", "score"}, ...] when the pipeline's top_k is above 1 and it is not multi-label;
 * "labels": [...] and "scores": [...] (at or above the threshold, best first) when it is
 * multi-label; "truncated": true when the text was cut. Any thread. */
void inferd_textreq_format_predictions(inferd_strbuf *b, const char *model, long version,
                                       const inferd_pipeline *p, const inferd_text_result *results,
                                       size_t n);

/* Appends route rt's answer for n results (see the top of this file). top_k lists what /v1 shows
 * for the text: its top_k labels, or for a multi-label pipeline those at or above the
 * threshold. Any thread. */
void inferd_textreq_format_route(inferd_strbuf *b, const inferd_config_route *rt,
                                 const inferd_pipeline *p, const inferd_text_result *results,
                                 size_t n);

/* Labels each text has in top_labels/top_scores: 0 when the signature has no such outputs
 * (one label per text), top_k, or for a multi-label pipeline without top_k the number of
 * classes (classes: the model's class dim, -1 if dynamic; the labels file wins). -1 when that
 * is not known before a run. */
int64_t inferd_textreq_top_width(const inferd_pipeline *p, int64_t classes);

/* The KServe text signature: inputs[0] = text, outputs[0..*n_outputs) = label, score and,
 * when top_width != 0, top_labels, top_scores ([-1, top_width]). Names are static. */
void inferd_textreq_signature(int64_t top_width, inferd_tensor_desc inputs[1],
                              inferd_tensor_desc outputs[4], int *n_outputs);

/* Builds the signature's output tensors (as the model's outputs would be, one per signature
 * output, in signature order) from n results; width is inferd_textreq_top_width (when it is
 * -1, the classes of the first result are used). Rows with fewer labels than width are padded with
 * "" and score 0. Each tensor's data comes from inferd_malloc; free them with
 * inferd_textreq_free_outputs. Returns 0 or INFERD_EINTERNAL (out of memory). Any thread. */
int inferd_textreq_build_outputs(const inferd_pipeline *p, const inferd_text_result *results,
                                 size_t n, int64_t width, inferd_tensor outputs[4],
                                 inferd_error *err);
void inferd_textreq_free_outputs(inferd_tensor outputs[4]);

/* The label of s as text (its label, or its index written into buf). */
const char *inferd_textreq_label(const inferd_pipeline *p, const inferd_pipeline_score *s,
                                 char buf[16]);

#endif
