/* loadgen_req.h: builds one valid KServe v2 infer request body from a model's metadata
 * (GET /v2/models/{m}), so `inferd bench` can load a model without a request file.
 *
 * Shapes: a -1 in the first dimension becomes the batch size (1 by default), a -1 anywhere
 * else the sequence length (16 by default). Values, by datatype and input name: integer and
 * BOOL inputs whose name contains "mask" are all ones; integer inputs whose name contains
 * "type" or "segment" (BERT token_type_ids / segment_ids, whose embedding has only a couple of
 * rows) are zeros; other integers are uniform in [0, vocab) (100 by default); FP32/FP64 are
 * standard normal; BOOL is random; BYTES elements are short lowercase words. The generator is
 * seeded, so a seed gives the same body every time.
 *
 * The body is JSON ({"inputs":[{"name","shape","datatype","data"}]}) or, with binary, Triton's
 * binary tensor extension: a JSON header where each input carries "binary_data_size" and
 * outputs are asked for as binary, followed by the raw little-endian tensors in input order;
 * header_len is then the value for the Inference-Header-Content-Length header.
 *
 * Pure functions over caller-owned memory; safe from any thread.
 */
#ifndef INFERD_CLI_LOADGEN_REQ_H
#define INFERD_CLI_LOADGEN_REQ_H

#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

/* Largest tensor (elements) the builder will make, so a metadata typo cannot eat the RAM. */
#define INFERD_LOADGEN_REQ_MAX_ELEMENTS ((int64_t)1 << 26)

typedef struct inferd_loadgen_req_options {
    int64_t batch; /* replaces a -1 first dimension; 1 when 0 */
    int64_t seq;   /* replaces any other -1 dimension; 16 when 0 */
    int64_t vocab; /* integers are drawn from [0, vocab); 100 when 0 */
    int binary;    /* Triton binary tensor extension instead of JSON */
    uint64_t seed; /* random generator seed */
} inferd_loadgen_req_options;

typedef struct inferd_loadgen_req {
    char *body;        /* inferd_malloc'ed; freed by inferd_loadgen_req_deinit */
    size_t body_len;   /* bytes at body */
    size_t header_len; /* binary: bytes of JSON header at the start of body; 0 for JSON */
    char summary[512]; /* "input_ids INT64[1,16], attention_mask INT64[1,16]" for the log */
} inferd_loadgen_req;

/* Parses metadata (JSON text of len bytes) and fills *out. Returns 0, or INFERD_EINVAL for
 * metadata that is not KServe v2 model metadata, INFERD_EUNSUPPORTED for a datatype the
 * builder cannot generate (FP16, BF16 in JSON), INFERD_ETOOLARGE for a tensor over
 * INFERD_LOADGEN_REQ_MAX_ELEMENTS, INFERD_EINTERNAL when out of memory. On failure *out holds
 * nothing to free. */
int inferd_loadgen_req_build(const char *metadata, size_t len,
                             const inferd_loadgen_req_options *opts,
                             inferd_loadgen_req *out /* out */, inferd_error *err);

/* Frees what build allocated; a zeroed struct is fine. */
void inferd_loadgen_req_deinit(inferd_loadgen_req *r);

#endif
