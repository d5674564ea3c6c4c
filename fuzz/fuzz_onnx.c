/* fuzz_onnx.c: ONNX import through graph passes, plan building and one run on small
 * generated inputs. Any input must give a model or an error, never a crash or a huge
 * allocation. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"

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
    inferd_tensor in[16];
    inferd_tensor out[64];
    int ok = n <= 16 && inferd_engine_output_count(m) <= 64;
    memset(in, 0, sizeof in);
    for (int i = 0; ok && i < n; i++) {
        const inferd_tensor_desc *d = inferd_engine_input(m, i);
        in[i].dtype = d->dtype;
        in[i].rank = d->rank;
        for (int j = 0; j < d->rank; j++)
            in[i].dims[j] = d->dims[j] < 0 ? 2 : d->dims[j];
        int64_t ne = inferd_tensor_numel(in[i].rank, in[i].dims);
        size_t es = inferd_dtype_size(d->dtype);
        if (ne < 0 || ne > (1 << 16) || es == 0) {
            ok = 0;
            break;
        }
        in[i].nbytes = (size_t)ne * es;
        in[i].data = calloc(1, in[i].nbytes + 1); // zeros are valid ids and masks
    }
    if (ok && inferd_engine_run(m, in, out, 1, &err) == 0)
        for (int j = 0; j < inferd_engine_output_count(m); j++)
            inferd_free(out[j].data);
    for (int i = 0; i < n && i < 16; i++)
        free(in[i].data);
    inferd_engine_destroy(m);
    return 0;
}
