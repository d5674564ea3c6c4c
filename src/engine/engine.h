/* engine.h: inferd's ONNX executor, the public face of src/engine/.
 *
 * A model is loaded once (parse, graph passes, weights packed for oneDNN) and then run many
 * times. Each distinct input signature gets a plan (shapes fixed, fusions applied, every
 * intermediate buffer placed in one arena, oneDNN primitives created), cached in the model
 * with a bound. Runs may happen concurrently from several threads on one model: plans are
 * immutable once built and each run takes its own arena.
 *
 * Threads: the caller passes the thread count for each run. The engine sets the calling
 * thread's OpenMP team size to it and creates no other threads; OpenMP waits passively
 * (inferd_engine_global_init sets OMP_WAIT_POLICY=passive before the runtime starts).
 */
#ifndef INFERD_ENGINE_ENGINE_H
#define INFERD_ENGINE_ENGINE_H

#include <stdint.h>
#include <stdio.h>

#include "util/alloc.h"
#include "util/error.h"
#include "util/tensor.h"

typedef struct inferd_engine_model inferd_engine_model;

typedef struct inferd_engine_options {
    inferd_mem_account *acct;  /* charged for weights, plans and arenas; NULL: process */
    int max_plans;             /* plans cached per model; 0: default (64) */
    int profile;               /* nonzero: time every op (see inferd_engine_profile_print) */
    int disable_fusion;        /* nonzero: run the graph as imported (for tests) */
    int disable_length_groups; /* nonzero: never split padded batches into length groups (nor
                                  run them on their valid tokens alone) */
    int disable_tokens;        /* nonzero: never run padded batches on their valid tokens alone */
    const char *cache_path;    /* load cache file for this model (see cache.h), or NULL: none */
    int64_t max_arena_bytes;   /* refuse plans whose arena exceeds this; 0: default (4 GiB) */
} inferd_engine_options;

/* Call once before any other engine function and before other threads start: fixes OpenMP's
 * wait policy and creates the oneDNN engine. Returns 0 or a negative code. */
int inferd_engine_global_init(inferd_error *err);

/* Loads an ONNX file (external data files are looked up beside it). On success *out owns
 * everything and the caller destroys it with inferd_engine_destroy. opts may be NULL.
 * Broken or hostile files give INFERD_EINVAL, unsupported ops INFERD_EUNSUPPORTED naming the
 * op type and node. Safe from any thread. */
int inferd_engine_load(const char *path, const inferd_engine_options *opts,
                       inferd_engine_model **out, inferd_error *err);

/* As inferd_engine_load, from bytes in memory (no external data). The bytes must stay valid
 * until the model is destroyed. */
int inferd_engine_load_buffer(const void *data, size_t size, const inferd_engine_options *opts,
                              inferd_engine_model **out, inferd_error *err);

/* Frees the model; NULL does nothing. No run may be in progress. */
void inferd_engine_destroy(inferd_engine_model *m);

/* Inputs and outputs as the graph declares them (dims -1 where dynamic). The descriptors
 * live as long as the model. */
int inferd_engine_input_count(const inferd_engine_model *m);
const inferd_tensor_desc *inferd_engine_input(const inferd_engine_model *m, int i);
int inferd_engine_output_count(const inferd_engine_model *m);
const inferd_tensor_desc *inferd_engine_output(const inferd_engine_model *m, int i);

/* Runs the model once. inputs[i] is the tensor for inferd_engine_input(m, i). On success
 * outputs[j] (for every output) gets dims and a data buffer from inferd_malloc(NULL) that the
 * caller frees with inferd_free. On failure outputs hold nothing to free. threads is the team
 * size for this run (1..cores). Safe from several threads at once. */
int inferd_engine_run(inferd_engine_model *m, const inferd_tensor *inputs, inferd_tensor *outputs,
                      int threads, inferd_error *err);

/* Calls to inferd_engine_run so far, the runs they made (a batch split into length or row
 * groups makes one run a group, a batch taken whole one), and how many of those ran a padded
 * batch on its valid tokens alone. */
void inferd_engine_run_stats(const inferd_engine_model *m, int64_t *runs, int64_t *groups,
                             int64_t *token_runs);

/* Bytes the model holds now (weights, packed weights, plans, arenas). */
int64_t inferd_engine_memory(const inferd_engine_model *m);

/* How the load used the cache: "off", "hit", or "miss (<reason>), written" / "..., not
 * written: <reason>". Lives as long as the model. */
const char *inferd_engine_cache_status(const inferd_engine_model *m);
/* Whether the load came from the cache. */
int inferd_engine_cache_hit(const inferd_engine_model *m);

/* Milliseconds the load took, from opening the file to ready. */
double inferd_engine_load_ms(const inferd_engine_model *m);

/* Writes a description of the model: inputs, outputs, the ops after load-time fusion, and,
 * when inputs is not NULL, the plan those inputs get (steps, fusions, arena size). */
int inferd_engine_describe(inferd_engine_model *m, const inferd_tensor *inputs, int threads,
                           FILE *f, inferd_error *err);

/* Writes the per-op profile gathered so far (when loaded with profile set) as a table. */
void inferd_engine_profile_print(const inferd_engine_model *m, FILE *f);

#endif
