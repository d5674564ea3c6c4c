/* fuzz_onnx.c: ONNX import through graph passes, plan building and two runs on small
 * generated inputs, the second a padded batch. Any input must give a model or an error, never a
 * crash or a huge allocation. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"

/* One run on generated inputs: dynamic dims 2, or with padded, 2 rows and the second dim 20,
 * the mask (an integer [batch, seq] input named so) holding 20 and 5 valid tokens. */
static void run_once(inferd_engine_model *m, int n, int padded) {
    inferd_error err = {0};
    inferd_tensor in[16];
    inferd_tensor out[64];
    int ok = 1;
    memset(in, 0, sizeof in);
    for (int i = 0; ok && i < n; i++) {
        const inferd_tensor_desc *d = inferd_engine_input(m, i);
        in[i].dtype = d->dtype;
        in[i].rank = d->rank;
        for (int j = 0; j < d->rank; j++)
            in[i].dims[j] = d->dims[j] >= 0 ? d->dims[j] : padded && j == 1 ? 20 : 2;
        int64_t ne = inferd_tensor_numel(in[i].rank, in[i].dims);
        size_t es = inferd_dtype_size(d->dtype);
        if (ne < 0 || ne > (1 << 16) || es == 0) {
            ok = 0;
            break;
        }
        in[i].nbytes = (size_t)ne * es;
        in[i].data = calloc(1, in[i].nbytes + 1); // zeros are valid ids and masks
        if (padded && d->rank == 2 && strstr(d->name, "mask") &&
            (d->dtype == INFERD_DTYPE_I64 || d->dtype == INFERD_DTYPE_I32))
            for (int64_t r = 0; r < in[i].dims[0]; r++)
                for (int64_t c = 0; c < in[i].dims[1] && c < (r % 2 ? 5 : 20); c++) {
                    int64_t k = r * in[i].dims[1] + c;
                    if (d->dtype == INFERD_DTYPE_I64)
                        ((int64_t *)in[i].data)[k] = 1;
                    else
                        ((int32_t *)in[i].data)[k] = 1;
                }
    }
    if (ok && inferd_engine_run(m, in, out, 1, &err) == 0)
        for (int j = 0; j < inferd_engine_output_count(m); j++)
            inferd_free(out[j].data);
    for (int i = 0; i < n; i++)
        free(in[i].data);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int init;
    if (!init) {
        inferd_error e;
        inferd_engine_global_init(&e);
        init = 1;
    }
    inferd_error err = {0};
    inferd_engine_model *m = NULL;
    // A small arena cap keeps mutants that blow a dim up (Pad, Tile, Expand) from spending
    // seconds on one big but legitimate op under the sanitizers: the fuzzer should explore
    // graph structure, and plans over the cap must fail cleanly, which is tested too.
    inferd_engine_options opts = {.max_arena_bytes = 8 << 20, .max_plans = 2};
    if (inferd_engine_load_buffer(data, size, &opts, &m, &err) < 0)
        return 0;
    int n = inferd_engine_input_count(m);
    // Twice: every dynamic dim 2; then a padded batch, the second dim 20 and rows of 20 and 5
    // tokens in an attention mask, which takes the padded paths (trimming, length groups,
    // valid-token runs, and the probes that decide between them).
    if (n <= 16 && inferd_engine_output_count(m) <= 64)
        for (int padded = 0; padded < 2; padded++)
            run_once(m, n, padded);
    inferd_engine_destroy(m);
    return 0;
}
