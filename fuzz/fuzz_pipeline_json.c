/* fuzz_pipeline_json.c: parses arbitrary bytes as pipeline.json (no version folder, so only
 * file-free tokenizers such as the hashed char tokenizer load), checks them against a fixed
 * BERT-shaped model signature, and runs encode, assemble and postprocess on what loads. */
#include <stdint.h>
#include <string.h>

#include "prep/pipeline.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const inferd_tensor_desc in[] = {
        {"input_ids", INFERD_DTYPE_I64, 2, {-1, -1}},
        {"attention_mask", INFERD_DTYPE_I32, 2, {-1, -1}},
    };
    static const inferd_tensor_desc out[] = {{"logits", INFERD_DTYPE_F32, 2, {-1, 3}}};
    inferd_pipeline_model m = {in, 2, out, 1};
    inferd_pipeline *p = NULL;
    inferd_error err;
    // Every other input is checked against the model, the rest loaded without one.
    if (inferd_pipeline_parse((const char *)data, size, NULL, (size & 1) ? &m : NULL, NULL, &p,
                              &err) != 0)
        return 0;
    inferd_scratch *s;
    if (inferd_scratch_create(NULL, &s) == 0) {
        int32_t L = inferd_pipeline_max_length(p);
        static int32_t ids[2][65536], types[2][65536];
        inferd_encoding e[2] = {{ids[0], types[0], 0, 0}, {ids[1], types[1], 0, 0}};
        const char *a = "Hello, 世界! 😀", *b = "the quick brown fox jumps over the lazy dog";
        int ok = inferd_pipeline_encode(p, s, a, strlen(a), 0, &e[0], &err) == 0 &&
                 inferd_pipeline_encode(p, s, b, strlen(b), 1, &e[1], &err) == 0;
        if (ok && L <= 512) {
            static int64_t buf[3][2 * 512];
            inferd_tensor t[3];
            for (int i = 0; i < 3; i++)
                t[i] = (inferd_tensor){.data = buf[i], .nbytes = sizeof buf[i]};
            inferd_pipeline_assemble(p, e, 2, inferd_pipeline_batch_length(p, e, 2), t, &err);
        }
        inferd_scratch_destroy(s);
    }
    const float row[3] = {0.5f, -1.0f, 2.0f};
    inferd_pipeline_score sc[3];
    size_t n;
    inferd_pipeline_postprocess(p, row, 3, sc, 3, &n, &err);
    inferd_pipeline_destroy(p);
    return 0;
}
