/* backend.h: the small C interface every model runtime implements.
 *
 * The repository and the scheduler see models only through this interface: load a version's
 * file, describe its inputs and outputs, run one batch with a thread count chosen by the
 * scheduler, report memory, unload. Two backends sit behind it: the ONNX engine (engine/,
 * platform "onnx", model.onnx) and TorchScript through libtorch (backend/torchscript/,
 * platform "torchscript", model.pt). A new one adds an entry to the table in backend.c.
 *
 * Tensor declarations: config.json may declare a model's inputs and outputs (name, datatype,
 * dims). A TorchScript file has no names or dtypes of its own, so that backend requires them
 * and serves exactly what they say, after checking them against the file. For an ONNX model
 * they are optional and only checked: every declared tensor must exist in the graph with the
 * same datatype and rank, and a dim fixed in both must agree; the graph's own descriptions
 * are what is served.
 */
#ifndef INFERD_BACKEND_BACKEND_H
#define INFERD_BACKEND_BACKEND_H

#include <stdint.h>

#include "util/alloc.h"
#include "util/error.h"
#include "util/tensor.h"

typedef struct inferd_backend_model inferd_backend_model;

typedef struct inferd_backend_options {
    inferd_mem_account *acct; /* charged for everything the model allocates; NULL: process */
    const char *cache_path;   /* file a backend may keep derived data in (the engine's load
                                 cache: packed weights); NULL: none */
    int profile;              /* nonzero: collect per-op timings where supported */
    const inferd_tensor_desc *inputs; /* declared in config.json, or NULL; load copies them */
    int n_inputs;
    const inferd_tensor_desc *outputs;
    int n_outputs;
} inferd_backend_options;

/* Platform names accepted in config.json, and the file each expects in a version folder. */
typedef struct inferd_backend_platform {
    const char *name;      /* canonical: "onnx", "torchscript" */
    const char *alias;     /* Triton's name: "onnxruntime_onnx", "pytorch_libtorch", or NULL */
    const char *file_name; /* "model.onnx", "model.pt" */
} inferd_backend_platform;

/* The platform whose name or alias is name, or NULL. */
const inferd_backend_platform *inferd_backend_find_platform(const char *name);
/* Every accepted name and alias, for messages: "onnx, onnxruntime_onnx, torchscript, ...". */
const char *inferd_backend_platform_names(void);
/* The platform whose file exists in version_dir (first match in table order: model.onnx before
 * model.pt), or NULL. */
const inferd_backend_platform *inferd_backend_detect_platform(const char *version_dir);

/* Loads the model file at path with the given platform. On success *out is owned by the
 * caller (inferd_backend_destroy). INFERD_EUNSUPPORTED when this process cannot run the
 * platform (a build without libtorch and a TorchScript model), with the reason. Safe from any
 * thread; slow (milliseconds to seconds), so call it from a loader thread, never an HTTP
 * thread. */
int inferd_backend_load(const inferd_backend_platform *platform, const char *path,
                        const inferd_backend_options *opts, inferd_backend_model **out,
                        inferd_error *err);
/* NULL does nothing. No run may be in progress. */
void inferd_backend_destroy(inferd_backend_model *m);

const inferd_backend_platform *inferd_backend_model_platform(const inferd_backend_model *m);
int inferd_backend_input_count(const inferd_backend_model *m);
const inferd_tensor_desc *inferd_backend_input(const inferd_backend_model *m, int i);
int inferd_backend_output_count(const inferd_backend_model *m);
const inferd_tensor_desc *inferd_backend_output(const inferd_backend_model *m, int i);

/* Runs one batch: inputs[i] matches inferd_backend_input(m, i) (dim 0 is the batch). On
 * success each outputs[j] gets a buffer from inferd_malloc(NULL) the caller frees with
 * inferd_free. threads: team size for this run, 1..cores. Safe from several threads at once. */
int inferd_backend_run(inferd_backend_model *m, const inferd_tensor *inputs, inferd_tensor *outputs,
                       int threads, inferd_error *err);

/* How the load used cache_path ("off", "hit", "miss (reason), written", ...). */
const char *inferd_backend_cache_status(const inferd_backend_model *m);
int inferd_backend_cache_hit(const inferd_backend_model *m);
/* Milliseconds the load took. */
double inferd_backend_load_ms(const inferd_backend_model *m);

/* Bytes the model holds now. */
int64_t inferd_backend_memory(const inferd_backend_model *m);

#endif
