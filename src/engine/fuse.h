/* fuse.h: graph passes that turn ONNX patterns into fused ops.
 *
 * DESIGN
 * Load-time passes (eg_fuse_load) run once per model on the imported graph and need no
 * shapes: dense layers (MatMul or Gemm with a constant weight, then bias, activation and
 * residual add) become FusedMatMul with the weight packed for oneDNN; sibling dense layers
 * reading the same input (Q, K and V projections) merge into one wider FusedMatMul; the
 * LayerNorm decomposition (ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt, Div, Mul, Add) and the
 * LayerNormalization op become FusedLayerNorm; GELU written with Erf or Tanh becomes
 * FusedGelu (or a post-op of the dense layer before it).
 *
 * Plan-time passes (eg_fuse_plan) run on a plan's copy of the graph once every shape is
 * known: the attention block (Q K^T, scale, mask add, Softmax, x V, with the reshapes and
 * transposes around it) becomes FusedAttention, which reads Q, K, V straight from the dense
 * layer's output and skips padded keys.
 *
 * A pass only rewrites what it has fully verified (constant operands, shapes, attributes);
 * anything else stays as standard ops, which are always correct.
 */
#ifndef INFERD_ENGINE_FUSE_H
#define INFERD_ENGINE_FUSE_H

#include "engine/graph.h"
#include "engine/plan.h"

/* Load-time fusion over the model graph. model_ctx is handed to weight packing. */
int eg_fuse_load(eg_graph *g, void *model_ctx, inferd_error *err);

/* Plan-time fusion over a plan's graph copy (shapes known). */
int eg_fuse_plan(eg_graph *g, const eg_plan_options *opts, inferd_error *err);

/* Shared with plan.c: re-infers node n in g (and folds it when fold and its inputs are
 * constant), and marks nodes whose outputs are unused as dead. */
int eg_plan_infer_node(eg_graph *g, eg_node *n, int fold, inferd_error *err);
int eg_plan_remove_dead(eg_graph *g, inferd_error *err);

#endif
