/* torchscript.h: the TorchScript backend: model.pt files run by libtorch, behind the same
 * interface as the ONNX engine (backend/backend.h dispatches to it).
 *
 * DESIGN
 * libtorch is C++ and large, so it lives in a plugin, libinferd_torch.so (plugin.h explains
 * why and what crosses the boundary), which this module opens with dlopen the first time a
 * TorchScript model is loaded. The plugin is looked for at $INFERD_TORCH_PLUGIN when it is set
 * (and only there), else next to the running executable, then where this build put it. A build
 * without libtorch-dev has no plugin, and loading a model.pt fails with "this build of inferd has
 * no TorchScript support (install libtorch-dev and rebuild)".
 *
 * Before the plugin loads, OPENBLAS_NUM_THREADS is set (unless the environment sets it) to the
 * process's thread budget, so OpenBLAS, which starts its pool of threads when libtorch pulls
 * it in, holds at most budget - 1 threads rather than one per core of the host; and
 * OPENBLAS_THREAD_TIMEOUT to 4, so its idle threads sleep rather than spin (torchscript.c).
 *
 * TorchScript files carry no input or output names or dtypes, so config.json declares them
 * (inferd_torchscript_options). Load checks them against the file:
 *   - the declared inputs are forward's arguments, in order and by name (arguments that have
 *     a default may be left out at the end), each a Tensor;
 *   - forward returns a Tensor or a tuple of Tensors;
 *   - a warm-up run, on inputs of the declared dtypes and shapes (dynamic dims: batch 2,
 *     others 16; zeros, and ones for inputs whose name contains "mask"), returns one tensor
 *     per declared output with the declared dtype, rank and fixed dims.
 * Each run checks its inputs against the declarations and its outputs again (a model may
 * return other shapes for other inputs), so the rest of inferd can trust the descriptions.
 *
 * Threads: a run uses an OpenMP team of the size the scheduler gave it, and OpenBLAS at that
 * size when it is the only TorchScript run in progress, else 1 (plugin.cpp). Memory: every
 * tensor the model allocates is charged to opts->acct while it exists (plugin.cpp).
 */
#ifndef INFERD_BACKEND_TORCHSCRIPT_TORCHSCRIPT_H
#define INFERD_BACKEND_TORCHSCRIPT_TORCHSCRIPT_H

#include <stdint.h>

#include "util/alloc.h"
#include "util/error.h"
#include "util/tensor.h"

typedef struct inferd_torchscript_model inferd_torchscript_model;

typedef struct inferd_torchscript_options {
    inferd_mem_account *acct;         /* charged for the model's tensors; NULL: process */
    const inferd_tensor_desc *inputs; /* declared in config.json; copied by load */
    int n_inputs;
    const inferd_tensor_desc *outputs;
    int n_outputs;
} inferd_torchscript_options;

/* Loads the plugin if it is not loaded yet. Returns 0, or INFERD_EUNSUPPORTED with the reason
 * TorchScript models cannot be served by this process (no libtorch in this build, plugin
 * missing or unloadable). The reason is the same on every later call. Any thread. */
int inferd_torchscript_available(inferd_error *err);

/* Loads the TorchScript file at path and checks it against the declarations (above). On
 * success *out is the caller's (inferd_torchscript_destroy). Errors: INFERD_EUNSUPPORTED
 * without the plugin or for a signature inferd cannot call, INFERD_EINVAL for a file libtorch
 * cannot read, missing or mismatched declarations, or a failed warm-up. Any thread; slow
 * (milliseconds to seconds, and the first call also loads libtorch). */
int inferd_torchscript_load(const char *path, const inferd_torchscript_options *opts,
                            inferd_torchscript_model **out, inferd_error *err);
/* NULL does nothing. No run may be in progress. */
void inferd_torchscript_destroy(inferd_torchscript_model *m);

/* The declared inputs and outputs (names owned by the model). */
int inferd_torchscript_input_count(const inferd_torchscript_model *m);
const inferd_tensor_desc *inferd_torchscript_input(const inferd_torchscript_model *m, int i);
int inferd_torchscript_output_count(const inferd_torchscript_model *m);
const inferd_tensor_desc *inferd_torchscript_output(const inferd_torchscript_model *m, int i);

/* As inferd_backend_run: inputs[i] matches input i; on success each outputs[j] gets a buffer
 * from inferd_malloc(NULL) the caller frees with inferd_free; on failure none is left.
 * threads: 1..budget. Safe from several threads at once. */
int inferd_torchscript_run(inferd_torchscript_model *m, const inferd_tensor *inputs,
                           inferd_tensor *outputs, int threads, inferd_error *err);

/* Bytes the model holds now: its tensors (weights, buffers, activations of runs in progress)
 * and its descriptions. Any thread. */
int64_t inferd_torchscript_memory(const inferd_torchscript_model *m);

/* Milliseconds the load took (the warm-up included, libtorch's own loading excluded). */
double inferd_torchscript_load_ms(const inferd_torchscript_model *m);

#endif
