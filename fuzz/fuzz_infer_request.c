/* fuzz_infer_request.c: the KServe v2 infer request parser (JSON and binary tensors) and the
 * response formatter (classification included: the text model labels its class 0), against two
 * models: a batched text classifier and an unbatched model with every datatype. Input layout: 2
 * bytes little-endian Inference-Header-Content-Length (0xFFFF: no header), then the body. */
#include <stdint.h>
#include <string.h>

#include "api/kserve.h"
#include "util/alloc.h"

static const inferd_tensor_desc text_in[] = {
    {"input_ids", INFERD_DTYPE_I64, 2, {-1, -1}},
    {"attention_mask", INFERD_DTYPE_I64, 2, {-1, -1}},
};
static const inferd_tensor_desc text_out[] = {{"logits", INFERD_DTYPE_F32, 2, {-1, 2}}};
static const inferd_tensor_desc all_in[] = {
    {"b", INFERD_DTYPE_BOOL, 1, {2}},   {"u8", INFERD_DTYPE_U8, 1, {2}},
    {"i16", INFERD_DTYPE_I16, 1, {-1}}, {"u64", INFERD_DTYPE_U64, 1, {2}},
    {"f64", INFERD_DTYPE_F64, 1, {2}},  {"s", INFERD_DTYPE_STRING, 1, {-1}},
    {"h", INFERD_DTYPE_F16, 1, {2}},
};
static const inferd_tensor_desc all_out[] = {{"s", INFERD_DTYPE_STRING, 1, {-1}},
                                             {"h", INFERD_DTYPE_F16, 1, {2}}};
/* Labels for the text model's logits (classification): class 0 only. */
static const char *label_of(const void *ctx, int64_t index) {
    (void)ctx;
    return index == 0 ? "neg" : NULL;
}

static const inferd_kserve_model models[] = {
    {.name = "text",
     .version = 1,
     .max_batch = 8,
     .n_inputs = 2,
     .inputs = text_in,
     .n_outputs = 1,
     .outputs = text_out,
     .label_of = label_of},
    {.name = "all",
     .version = 2,
     .max_batch = 0,
     .n_inputs = 7,
     .inputs = all_in,
     .n_outputs = 2,
     .outputs = all_out},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2)
        return 0;
    unsigned sel = (unsigned)data[0] | (unsigned)data[1] << 8;
    const uint8_t *body = data + 2;
    size_t len = size - 2;
    long long hl = sel == 0xFFFF ? -1 : (long long)sel;
    for (size_t m = 0; m < sizeof models / sizeof models[0]; m++) {
        inferd_kserve_request r;
        inferd_error err;
        if (inferd_kserve_parse_infer(&models[m], body, len, hl, &r, &err) == 0) {
            // Echo the inputs' shapes into outputs the formatter can walk.
            inferd_tensor outs[2];
            memset(outs, 0, sizeof outs);
            float logits[16] = {0};
            uint8_t strings[] = {1, 0, 0, 0, 'x', 0, 0, 0, 0};
            uint16_t half[2] = {0x3c00, 0x7e00};
            if (m == 0) {
                int64_t b = r.inputs[0].dims[0];
                outs[0] = (inferd_tensor){.dtype = INFERD_DTYPE_F32, .rank = 2, .dims = {b, 2}};
                outs[0].data = logits;
                outs[0].nbytes = (size_t)b * 8;
            } else {
                outs[0] = (inferd_tensor){.dtype = INFERD_DTYPE_STRING,
                                          .rank = 1,
                                          .dims = {2},
                                          .data = strings,
                                          .nbytes = sizeof strings};
                outs[1] = (inferd_tensor){
                    .dtype = INFERD_DTYPE_F16, .rank = 1, .dims = {2}, .data = half, .nbytes = 4};
            }
            char *out;
            size_t out_len, json_len;
            if (inferd_kserve_format_infer(&models[m], &r, outs, &out, &out_len, &json_len, &err) ==
                0)
                inferd_free(out);
        }
        inferd_kserve_request_deinit(&r);
    }
    return 0;
}
