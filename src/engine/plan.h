/* plan.h: a graph specialised for one input signature, ready to run many times.
 *
 * DESIGN
 * Building a plan copies the model's graph (values and nodes; names and attributes stay
 * shared), fixes the input shapes, then walks the nodes in order: infer() gives every
 * output its shape, and a node whose inputs are all known (constants, or Shape of anything)
 * is evaluated right away, so the Shape/Gather/Concat chains exporters emit become constants
 * and every Reshape target is known. Plan-time passes then fuse what needs concrete shapes
 * (attention), dead nodes are dropped, and what remains becomes the step list.
 *
 * Memory: every intermediate value gets an offset in one arena by liveness (greedy, largest
 * first, lowest non-overlapping offset); view ops share their input's bytes; each step's
 * scratch is a short-lived block in the same arena. A run needs only an arena of
 * plan->arena_size bytes: the plan itself is immutable after creation, so any number of runs
 * may use it at once, each with its own arena.
 *
 * Packed tokens: for models whose outputs do not depend on padded positions (e.g. a [CLS]
 * classifier), a plan may run the sequence dims as packed valid tokens; eg_run_info carries
 * the per-run token layout to the few kernels that care (embedding, attention, row gathers).
 */
#ifndef INFERD_ENGINE_PLAN_H
#define INFERD_ENGINE_PLAN_H

#include <stdint.h>

#include "engine/graph.h"
#include "engine/ops.h"

/* Run-wide facts a kernel may need beyond its tensors. */
typedef struct eg_run_info {
    int batch;              /* rows of the token inputs */
    int seq;                /* padded sequence length of the token inputs */
    const int32_t *lengths; /* valid tokens per row (from the attention mask), or NULL */
} eg_run_info;

typedef struct eg_plan eg_plan;

/* What the model hands the planner besides the graph. */
typedef struct eg_plan_options {
    int threads;
    int fuse;        /* apply plan-time fusions */
    void *model_ctx; /* passed to prepare() (packed weights, oneDNN engine) */
    int mask_input;  /* graph input index of the attention mask, or -1 */
    /* Bytes of constants folding may make for this plan (0: no limit): a hostile model's
     * Range or Tile of constants must not allocate gigabytes while the plan is built. */
    int64_t max_fold_bytes;
} eg_plan_options;

/* Builds a plan for inputs (one per graph input, only dtype and dims are read). On success
 * *out is owned by the caller (eg_plan_destroy). Fails with EINVAL when the inputs do not
 * fit the graph, naming the input and dim. */
int eg_plan_create(const eg_graph *g, const eg_tensor *inputs, const eg_plan_options *opts,
                   inferd_mem_account *acct, eg_plan **out, inferd_error *err);
void eg_plan_destroy(eg_plan *p);

/* Bytes of arena a run of this plan needs. */
size_t eg_plan_arena_size(const eg_plan *p);
/* Bytes the plan holds (constants folded at plan time, node state). */
int64_t eg_plan_memory(const eg_plan *p);

/* Per-op timing, filled by runs when profiling is on. */
typedef struct eg_profile_entry {
    const char *op; /* op name */
    double ms;      /* total milliseconds */
    long calls;
} eg_profile_entry;

/* Runs the plan. inputs as for eg_plan_create, with data. arena must hold
 * eg_plan_arena_size bytes (64-byte aligned). On success outputs[j] receive dims and buffers
 * from inferd_malloc(NULL). profile, if not NULL, accumulates per-op time (indexed by eg_op).
 * Safe from several threads at once with different arenas. */
int eg_plan_run(const eg_plan *p, const eg_tensor *inputs, void *arena, const eg_run_info *info,
                inferd_tensor *outputs, int threads, eg_profile_entry *profile, inferd_error *err);

/* Number of steps and of each op among them, for inspection and tests. */
int eg_plan_step_count(const eg_plan *p);
eg_op eg_plan_step_op(const eg_plan *p, int i);

#endif
