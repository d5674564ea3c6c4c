/* kserve.h: the KServe v2 / Open Inference Protocol infer request and response, as Triton
 * speaks them, including Triton's binary tensor extension. Pure functions of bytes: no HTTP,
 * no models, no threads, so the parser can be unit-tested and fuzzed on its own.
 *
 * Request: {"id", "parameters": {"timeout", "binary_data_output"}, "inputs": [{"name",
 * "shape", "datatype", "data" | "parameters": {"binary_data_size"}}], "outputs": [{"name",
 * "parameters": {"binary_data", "classification"}}]}. With the binary extension the body is the
 * JSON header (Inference-Header-Content-Length bytes) followed by the binary inputs back to back,
 * in the order of the inputs that declare binary_data_size. JSON data may be flat or nested arrays
 * (only the element count is checked against the shape); BYTES elements are JSON strings, and
 * FP16/BF16 come only as binary. Every input is checked against the model: known name, given
 * once, datatype, rank, fixed dims, batch within max_batch_size and equal across inputs, and
 * byte size; every error is INFERD_EINVAL (INFERD_EUNSUPPORTED for features we lack) with a
 * message that names the field ("inputs[1].shape[0]: ...", "inputs[0].data[3]: not valid
 * UTF-8").
 *
 * Response: {"model_name", "model_version", "id" (echoed), "outputs": [{"name", "datatype",
 * "shape", "data" | "parameters": {"binary_data_size"}}]}, binary outputs appended after the
 * JSON in output order. FP16/BF16 outputs are written to JSON as numbers; NaN and infinities
 * as the bare tokens NaN, Infinity, -Infinity (as Python's json does).
 *
 * Classification (Triton's extension): an output asked for with "classification": N comes
 * back as a BYTES tensor [batch, N] (no batch dim: [N]) instead of its values: per batch entry
 * (all its elements), the N highest values, best first (ties: lower index first), each as
 * "<value>:<index>" or, when the model has a label for the index, "<value>:<index>:<label>".
 * Values are written as C++'s std::to_string writes them (as Triton does): %f for floating
 * types, integers in decimal. N larger than an entry's element count returns them all.
 */
#ifndef INFERD_API_KSERVE_H
#define INFERD_API_KSERVE_H

#include <stddef.h>
#include <stdint.h>

#include "api/strbuf.h"
#include "util/error.h"
#include "util/tensor.h"

#define INFERD_KSERVE_MAX_TENSORS 16
/* Largest JSON part of an infer request (the whole body without binary data). Parsed JSON
 * costs about 20 bytes of memory per byte of text and is parsed on an HTTP thread, so a 64 MB
 * JSON body would hold 1.2 GB and an HTTP thread for many seconds; larger tensors go as
 * binary data, which is copied once. Over it: INFERD_ETOOLARGE (413). */
#define INFERD_KSERVE_MAX_JSON_BYTES ((size_t)8 << 20)

/* What the parser checks against: a model version's name, batching and tensors. */
typedef struct inferd_kserve_model {
    const char *name;
    long version;
    int max_batch; /* 0: no batch dim; > 0: dim 0 is the batch, at most this */
    int n_inputs;
    const inferd_tensor_desc *inputs;
    int n_outputs;
    const inferd_tensor_desc *outputs;
    /* Labels for classification: label_of(labels_ctx, i) names class i of output
     * labels_output, or returns NULL when it has no label; label_of NULL: no labels. */
    const char *(*label_of)(const void *labels_ctx, int64_t index);
    const void *labels_ctx;
    int labels_output;
} inferd_kserve_model;

/* A parsed request. Caller-allocated; filled by inferd_kserve_parse_infer and released with
 * inferd_kserve_request_deinit (also after a failed parse). */
typedef struct inferd_kserve_request {
    char *id;                                        /* the request id to echo, or NULL */
    int64_t timeout_us;                              /* parameters.timeout, 0 when not given */
    inferd_tensor inputs[INFERD_KSERVE_MAX_TENSORS]; /* in model order; data owned here */
    int n_inputs;
    /* The outputs to return, in response order: all of the model's, or those named. */
    int output_index[INFERD_KSERVE_MAX_TENSORS];  /* model output index */
    int output_binary[INFERD_KSERVE_MAX_TENSORS]; /* nonzero: as binary data */
    int output_class[INFERD_KSERVE_MAX_TENSORS];  /* classification: classes to return; 0:
                                                     the tensor's values */
    int n_outputs;
} inferd_kserve_request;

/* Parses body (len bytes) against model m. header_len is the Inference-Header-Content-Length
 * value, or -1 when the header is absent (the whole body is JSON). The input data is copied,
 * so body may be freed after the call. Returns 0 or a negative code with err naming the
 * field. Any thread. */
int inferd_kserve_parse_infer(const inferd_kserve_model *m, const uint8_t *body, size_t len,
                              long long header_len, inferd_kserve_request *out, inferd_error *err);

void inferd_kserve_request_deinit(inferd_kserve_request *r);

/* Formats the response for r from outputs (one per model output, as the model produced them).
 * On success *body (from inferd_malloc, the caller's) holds *len bytes, the first *json_len of
 * which are JSON; *json_len < *len means binary data follows (send Inference-Header-Content-
 * Length). Any thread. */
int inferd_kserve_format_infer(const inferd_kserve_model *m, const inferd_kserve_request *r,
                               const inferd_tensor *outputs, char **body, size_t *len,
                               size_t *json_len, inferd_error *err);

/* Appends model metadata JSON: {"name", "versions", "platform", "inputs", "outputs"}, and
 * with text non-NULL (a version with a pipeline) "text": {"inputs", "outputs"}, its text
 * signature (see textreq.h). */
void inferd_kserve_format_metadata(inferd_strbuf *b, const inferd_kserve_model *m,
                                   const long *versions, int n_versions, const char *platform,
                                   const inferd_kserve_model *text);

/* Whether the request's JSON (header) names an input called name; 0 also when it is not valid
 * JSON (the full parse then reports why). Used to pick a version's text signature. */
int inferd_kserve_names_input(const uint8_t *body, size_t len, long long header_len,
                              const char *name);

/* parameters.timeout of the request's JSON (header) in microseconds; 0 when absent, not a
 * non-negative integer, or the JSON is not valid (the full parse then reports why). A request
 * for a version that is not in memory waits for its load at most this long, before it can be
 * parsed against the model. */
int64_t inferd_kserve_peek_timeout(const uint8_t *body, size_t len, long long header_len);

#endif
