/* ops.h: what the engine knows about each op: how to infer its outputs and how to run it.
 *
 * DESIGN
 * Every op has one eg_op_def. Standard ONNX ops are defined in ops_*.c with straightforward,
 * correct implementations over any shape and dtype the spec allows (the naive reference the
 * fast kernels are tested against); fused ops are defined in fused_*.c and use oneDNN and our
 * vectorised kernels. The planner calls infer() for every node of a plan in topological
 * order, then run() when all inputs are constant (plan-time folding), and the executor calls
 * run() for the rest at run time.
 *
 * infer() is the only place where inputs and attributes are validated: files are untrusted,
 * so it checks dtypes, ranks, dims, attribute values and constant inputs (axes, shapes,
 * indices) and returns INFERD_EINVAL (or EUNSUPPORTED) with a message naming the node.
 * run() may then assume everything infer() checked. Data that only exists at run time (a
 * Gather index coming from a request) is checked by run(), which returns EINVAL rather than
 * read out of bounds.
 */
#ifndef INFERD_ENGINE_OPS_H
#define INFERD_ENGINE_OPS_H

#include "engine/graph.h"

struct eg_run_info; /* plan.h */

/* Per-run context handed to run(). */
typedef struct eg_run_ctx {
    int threads;   /* OpenMP team size of this run; kernels may use `#pragma omp parallel` */
    void *scratch; /* per-node scratch memory of scratch_size bytes (see eg_op_def.scratch) */
    size_t scratch_size;
    void *state;                    /* what prepare() made for this node in this plan, or NULL */
    const struct eg_run_info *info; /* run-wide facts (packed-token layout); may be NULL */
} eg_run_ctx;

typedef struct eg_op_def {
    /* Sets out[j].dtype, rank and dims for every output j < n->n_out whose id is >= 0.
     * in[i] describes input i: dtype INFERD_DTYPE_INVALID when omitted (n->in[i] < 0), data
     * non-NULL when the input's value is known at plan time (always so for initializers and
     * for values computed only from constants and shapes). Ops whose output shape depends on
     * an input's value (Reshape, Expand, Slice, ConstantOfShape, Range, Tile, ...) require
     * that input to be known and fail with EUNSUPPORTED naming it otherwise. Must not set
     * out[j].data. */
    int (*infer)(const eg_node *n, const eg_tensor *in, eg_tensor *out, inferd_error *err);

    /* Computes outputs. out[j].data points at a buffer of out[j]'s inferred byte size (for a
     * view op, see EG_OPF_VIEW). Inputs never alias outputs unless flags allow it. Returns 0,
     * or a negative code for run-time data errors (index out of range). */
    int (*run)(const eg_node *n, const eg_tensor *in, eg_tensor *out, const eg_run_ctx *ctx,
               inferd_error *err);

    /* Optional: bytes of scratch run() needs for these shapes (0 if NULL). */
    size_t (*scratch)(const eg_node *n, const eg_tensor *in, const eg_tensor *out, int threads);

    /* Optional: per-plan preparation (oneDNN primitives, packed weights). *state is released
     * with release(). Called once per plan after infer, with constant inputs' data set. */
    int (*prepare)(const eg_node *n, const eg_tensor *in, const eg_tensor *out, int threads,
                   void *model_ctx, void **state, inferd_error *err);
    void (*release)(void *state);

    unsigned flags;

    /* Optional, for ops with prepare(): scratch bytes given the prepared state (used instead
     * of scratch() when set). */
    size_t (*state_scratch)(const eg_node *n, const void *state);
} eg_op_def;

/* Output 0 is input 0's data reinterpreted with another shape (Reshape, Flatten, Squeeze,
 * Unsqueeze, Identity, Dropout's first output): the planner makes out[0].data alias
 * in[0].data and run() is not called for output 0. */
#define EG_OPF_VIEW 1u
/* run() may be given out[0].data == in[0].data (elementwise ops writing in place). */
#define EG_OPF_INPLACE 2u

/* The definition of op, or NULL if op has none. */
const eg_op_def *eg_op_def_get(eg_op op);

/* Table of the standard ops (ops.c) and of the fused ops (fused.c), indexed by eg_op;
 * entries are NULL where the other table is responsible. */
const eg_op_def *eg_standard_op_def(eg_op op);
const eg_op_def *eg_fused_op_def(eg_op op);

/* Helpers for op implementations. */

/* Multidirectional (numpy) broadcast of shapes a and b into out; EINVAL naming node n when
 * incompatible. */
int eg_broadcast_shape(const eg_node *n, const eg_tensor *a, const eg_tensor *b, eg_tensor *out,
                       inferd_error *err);
/* Normalises axis (negative counts from the end) against rank; EINVAL when out of range. */
int eg_normalize_axis(const eg_node *n, int64_t axis, int rank, int *out, inferd_error *err);
/* Formats an EINVAL/EUNSUPPORTED error prefixed with the node ("node 'x' (Reshape): ..."). */
int eg_node_error(inferd_error *err, int code, const eg_node *n, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
