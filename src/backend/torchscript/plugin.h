/* plugin.h: the C interface between inferd and libinferd_torch.so, the part of the TorchScript
 * backend that is C++ because libtorch is.
 *
 * DESIGN
 * libtorch is a C++ library of several hundred megabytes whose loading starts OpenBLAS's
 * thread pool and registers thousands of operators. inferd does not link it: plugin.cpp is
 * built (when libtorch-dev is installed) into a shared object that torchscript.c opens with
 * dlopen the first time a model.pt is loaded. So a process that serves only ONNX models never
 * maps libtorch and holds no OpenBLAS threads, the binary runs on machines without libtorch,
 * and the sanitizer and unit-test builds of everything else are unchanged. This is also how
 * Triton loads its PyTorch backend.
 *
 * The plugin exports one C symbol, inferd_torch_plugin_get, returning a table of C functions.
 * Only plain C types cross it: inferd_tensor, inferd_error, and opaque module handles. No C++
 * exception ever crosses it: every function catches and reports through inferd_error. The
 * plugin links nothing of inferd; what it needs from inferd (memory accounting, output
 * buffers) comes as function pointers in inferd_torch_host.
 */
#ifndef INFERD_BACKEND_TORCHSCRIPT_PLUGIN_H
#define INFERD_BACKEND_TORCHSCRIPT_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#include "util/error.h"
#include "util/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Raised whenever a function is added, removed or changes meaning. */
#define INFERD_TORCH_ABI_VERSION 1

typedef struct inferd_torch_module inferd_torch_module;

/* What inferd lends the plugin. Every pointer stays valid for the life of the process. */
typedef struct inferd_torch_host {
    /* Adds delta bytes (negative to release) to a model's memory account; acct is the value
     * given to load. Any thread. */
    void (*charge)(void *acct, int64_t delta);
    /* Output buffers: inferd_malloc(NULL, n) / inferd_free. alloc returns NULL when out of
     * memory. Any thread. */
    void *(*alloc)(size_t n);
    void (*free)(void *p);
} inferd_torch_host;

/* One argument of forward (after self), as TorchScript declares it. */
typedef struct inferd_torch_arg {
    char name[64];   /* "input_ids" */
    char type[64];   /* "Tensor", "int", "Optional[Tensor]", ... */
    int has_default; /* may be left out */
} inferd_torch_arg;

typedef struct inferd_torch_plugin {
    int abi_version;           /* INFERD_TORCH_ABI_VERSION */
    const char *torch_version; /* "1.13.1" */

    /* Once per process, before anything else; host is copied. Returns 0 or a negative code.
     * Not thread-safe: the caller runs it under a once guard. */
    int (*init)(const inferd_torch_host *host, inferd_error *err);

    /* Reads a TorchScript file (torch::jit::load) into *out, which the caller frees with
     * destroy. Every tensor the module allocates, now and in later runs, is charged to acct
     * (through host->charge) until it is freed. Any thread; slow. */
    int (*load)(const char *path, void *acct, inferd_torch_module **out, inferd_error *err);
    /* NULL does nothing. No run may be in progress. */
    void (*destroy)(inferd_torch_module *m);

    /* forward's arguments after self: their count, and each one. */
    int (*arg_count)(const inferd_torch_module *m);
    const inferd_torch_arg *(*arg)(const inferd_torch_module *m, int i);
    /* forward's return type as TorchScript prints it ("Tensor", "Tuple[Tensor, Tensor]"). */
    const char *(*return_type)(const inferd_torch_module *m);

    /* Runs forward on n_inputs tensors (read in place, never written) with an OpenMP team of
     * `threads` (and OpenBLAS at that count when this is the only run in progress, else 1).
     * On success writes the n_out outputs (a Tensor result is one, a tuple of Tensors is one
     * each) to outputs, whose buffers come from host->alloc and belong to the caller. Fails
     * with INFERD_EINVAL for a model that raises or returns something other than tensors, or
     * more than max_outputs of them; then no buffer is left allocated. Any thread, several at
     * once on one module. */
    int (*run)(inferd_torch_module *m, const inferd_tensor *inputs, int n_inputs,
               inferd_tensor *outputs, int max_outputs, int *n_out, int threads, inferd_error *err);

    /* Bytes the module's tensors hold right now (weights, buffers, and the activations of runs
     * in progress). Any thread. */
    int64_t (*memory)(const inferd_torch_module *m);

    /* "OpenBLAS 0.3.21 ... (core Haswell)", or how BLAS threads could not be controlled. */
    const char *(*blas_info)(void);
} inferd_torch_plugin;

/* The plugin's table, or NULL when it was built for another abi_version. */
const inferd_torch_plugin *inferd_torch_plugin_get(int abi_version);

#ifdef __cplusplus
}
#endif

#endif
