/* graph.h: the engine's intermediate representation of an ONNX graph.
 *
 * DESIGN
 * Import (onnx_import.c) turns a ModelProto into an eg_graph: values (tensors by name) and
 * nodes (ops reading and writing values by index). Load-time passes rewrite the graph (fold
 * constants, fuse patterns, drop dead nodes). A plan (plan.c) copies the value table, fixes
 * every shape for one input signature, evaluates whatever became constant, places buffers
 * and prepares kernels; the graph itself is never modified by planning, so plans for
 * different signatures share it and can be built concurrently under the model's plan lock.
 *
 * All memory of a graph (names, attributes, index arrays) comes from the graph's own arena
 * and is freed together by eg_graph_destroy. Constant tensor data is either borrowed (raw
 * initializer bytes inside the mapped file, which outlives the graph) or allocated from the
 * arena (folded constants); the graph never frees tensor data individually.
 */
#ifndef INFERD_ENGINE_GRAPH_H
#define INFERD_ENGINE_GRAPH_H

#include <stddef.h>
#include <stdint.h>

#include "util/alloc.h"
#include "util/error.h"
#include "util/tensor.h"

#define EG_MAX_RANK INFERD_MAX_RANK

/* A tensor as kernels see it: dtype, concrete dims and data. During shape inference data is
 * NULL unless the value is known (constant); dims are -1 where unknown (only in the graph's
 * declared input/output shapes, never inside a plan). */
typedef struct eg_tensor {
    inferd_dtype dtype;
    int rank;
    int64_t dims[EG_MAX_RANK];
    void *data;
} eg_tensor;

/* Element count (1 for rank 0); -1 if any dim is unknown or the count overflows. */
int64_t eg_tensor_numel(const eg_tensor *t);
/* Bytes of data (numel * dtype size); -1 when numel is -1 or the size overflows. */
int64_t eg_tensor_nbytes(const eg_tensor *t);
/* Writes "float[8,128,312]" into buf. */
const char *eg_tensor_str(const eg_tensor *t, char *buf, size_t n);
/* Reads element i of an integer or float tensor as int64 / double (any numeric dtype). */
int64_t eg_tensor_get_i64(const eg_tensor *t, int64_t i);
double eg_tensor_get_f64(const eg_tensor *t, int64_t i);

/* Attribute types, numbered as ONNX's AttributeProto.AttributeType. */
typedef enum eg_attr_type {
    EG_ATTR_TYPE_UNDEFINED = 0,
    EG_ATTR_TYPE_FLOAT = 1,
    EG_ATTR_TYPE_INT = 2,
    EG_ATTR_TYPE_STRING = 3,
    EG_ATTR_TYPE_TENSOR = 4,
    EG_ATTR_TYPE_GRAPH = 5,
    EG_ATTR_TYPE_FLOATS = 6,
    EG_ATTR_TYPE_INTS = 7,
    EG_ATTR_TYPE_STRINGS = 8,
} eg_attr_type;

typedef struct eg_attr {
    const char *name;
    eg_attr_type type;
    float f;
    int64_t i;
    const char *s; /* NUL-terminated copy; s_len excludes the NUL */
    size_t s_len;
    int n; /* element count of ints / floats / strings */
    int64_t *ints;
    float *floats;
    const char **strings;
    eg_tensor t; /* for TENSOR: data points at raw little-endian elements */
} eg_attr;

/* Every op the engine knows. Standard ONNX ops first (their implementations live in
 * ops_*.c), then fused ops that only graph passes create (fused.c). */
// clang-format off
#define EG_STANDARD_OPS(X) \
    X(Abs) X(Acos) X(Add) X(And) X(ArgMax) X(ArgMin) X(Asin) X(Atan) X(AveragePool) \
    X(BatchNormalization) X(Cast) X(CastLike) X(Ceil) X(Clip) X(Concat) X(Constant) \
    X(ConstantOfShape) X(Conv) X(Cos) X(CumSum) X(Div) X(Dropout) X(Einsum) X(Elu) X(Equal) \
    X(Erf) X(Exp) X(Expand) X(Flatten) X(Floor) X(GRU) X(Gather) X(GatherElements) \
    X(Gelu) X(Gemm) X(GlobalAveragePool) X(GlobalMaxPool) X(Greater) \
    X(GreaterOrEqual) X(HardSigmoid) X(Identity) X(InstanceNormalization) X(IsNaN) \
    X(LSTM) X(LayerNormalization) X(LeakyRelu) X(Less) X(LessOrEqual) X(Log) \
    X(LogSoftmax) X(MatMul) X(Max) X(MaxPool) X(Mean) X(Min) X(Mod) X(Mul) X(Neg) \
    X(Not) X(OneHot) X(Or) X(Pad) X(Pow) X(RNN) X(Range) X(Reciprocal) X(ReduceL2) \
    X(ReduceLogSumExp) X(ReduceMax) X(ReduceMean) X(ReduceMin) X(ReduceProd) \
    X(ReduceSum) X(ReduceSumSquare) X(Relu) X(Reshape) X(Round) X(Shape) X(Sigmoid) \
    X(Sign) X(Sin) X(Size) X(Slice) X(Softmax) X(Softplus) X(Softsign) X(Split) \
    X(Sqrt) X(Squeeze) X(Sub) X(Sum) X(Tan) X(Tanh) X(Tile) X(TopK) X(Transpose) \
    X(Trilu) X(Unsqueeze) X(Where) X(Xor)

#define EG_FUSED_OPS(X) \
    X(FusedMatMul) /* dense layer on oneDNN: bias, activation, residual add */ \
    X(FusedLayerNorm) /* LayerNorm over the last axis, from the op or its decomposition */ \
    X(FusedAttention) /* softmax(Q K^T * scale + mask) V per head, padded keys skipped */ \
    X(FusedClsAttention) /* one query row's attention, keys and values folded into it */ \
    X(FusedGelu) /* GELU from its Erf or tanh pattern */ \
    X(FusedConv) /* Conv on oneDNN with bias and activation */ \
    X(FusedEmbedding) /* word + position (+ type) embedding gathers and adds */
// clang-format on

#define EG_OP_ENUM_(name) EG_OP_##name,
typedef enum eg_op {
    EG_OP_UNKNOWN = 0,
    EG_STANDARD_OPS(EG_OP_ENUM_) EG_OP_FUSED_FIRST_,
    /* The first fused op takes the value of EG_OP_FUSED_FIRST_. */
    EG_OP_FUSED_BEFORE_ = EG_OP_FUSED_FIRST_ - 1,
    EG_FUSED_OPS(EG_OP_ENUM_) EG_OP_COUNT_
} eg_op;
#undef EG_OP_ENUM_

/* Name of an op ("MatMul", "FusedAttention"). */
const char *eg_op_name(eg_op op);
/* Standard op for an ONNX (domain, op_type); EG_OP_UNKNOWN when not supported. domain ""
 * and "ai.onnx" are the default domain. */
eg_op eg_op_from_onnx(const char *domain, const char *op_type);

typedef struct eg_node {
    eg_op op;
    const char *name;    /* node name from the file, "" when it had none */
    const char *op_type; /* op type as written in the file, for messages */
    int opset;           /* opset version of the node's domain */
    int n_in, n_out;
    int *in;  /* value ids; -1 for an omitted optional input */
    int *out; /* value ids; -1 for an omitted optional output */
    int n_attr;
    eg_attr *attr;
    void *params; /* parameters of fused ops, allocated from the graph arena */
    int dead;     /* removed by a pass; skipped everywhere */
    /* Set by the planner on a plan's copy of a dense layer: run it on this many rows (>= the
     * real ones, whose buffers the planner made large enough), so that primitives exist for a
     * few row counts instead of one per batch shape. 0: exactly the real rows. */
    int64_t row_pad;
} eg_node;

typedef struct eg_value {
    const char *name;
    eg_tensor t;  /* declared or inferred dtype and dims; data set when is_const */
    int is_const; /* initializer or folded: t.data (or file_data) holds the elements */
    /* Initializer bytes still in the mapped ONNX file: possibly unaligned and valid only
     * while the model loads. eg_value_materialize copies them into t.data (aligned) for the
     * constants the model keeps; weights that get packed are read from here directly. */
    const void *file_data;
    void *packed;    /* packed weight (fused_matmul.c) made from this constant, or NULL */
    int producer;    /* node id, or -1 for graph inputs and constants */
    int n_consumers; /* live nodes reading it (kept up to date by eg_graph_recount) */
    int is_output;   /* one of the graph outputs */
    const char *sym[EG_MAX_RANK]; /* symbolic dim names of graph inputs/outputs, or NULL */
} eg_value;

typedef struct eg_graph eg_graph;
struct eg_graph {
    eg_value *values;
    int n_values, cap_values;
    eg_node *nodes;
    int n_nodes, cap_nodes;
    int *inputs; /* value ids of the graph's real inputs (initializers excluded) */
    int n_inputs;
    int *outputs;
    int n_outputs;
    int opset; /* default-domain opset */
    inferd_mem_account *acct;
    struct eg_arena_block *arena; /* allocation blocks, freed by eg_graph_destroy */
    /* Bytes of constants plan-time folding may make (0: no limit), and has made; past the
     * cap, nodes are left to run (their outputs count in the arena, whose size is capped). */
    int64_t fold_cap, folded;
};

/* Creates an empty graph charging acct (NULL: process). Returns NULL when out of memory. */
eg_graph *eg_graph_create(inferd_mem_account *acct);
void eg_graph_destroy(eg_graph *g);

/* Arena allocation tied to the graph's lifetime, 64-byte aligned, zeroed. NULL on OOM. */
void *eg_graph_alloc(eg_graph *g, size_t n);
char *eg_graph_strdup(eg_graph *g, const char *s);

/* Adds a value; returns its id or a negative code (out of memory). Name is copied. */
int eg_graph_add_value(eg_graph *g, const char *name, inferd_error *err);
/* Finds a value by name; -1 if none. Linear in the number of values with a hash index built
 * by eg_graph_index; import and passes call it after adding values. */
int eg_graph_find_value(const eg_graph *g, const char *name);
/* Adds a node with room for n_in inputs and n_out outputs (all -1); returns its id. */
int eg_graph_add_node(eg_graph *g, eg_op op, const char *name, int n_in, int n_out,
                      inferd_error *err);

/* Recomputes producers and consumer counts from the live nodes. */
void eg_graph_recount(eg_graph *g);
/* Orders live nodes topologically (in place, dead nodes dropped). Fails with EINVAL naming a
 * node on a cycle, or a value read before anything produces it. */
int eg_graph_toposort(eg_graph *g, inferd_error *err);

/* Makes v's constant data available at v->t.data (aligned, owned by the graph), copying it
 * from file_data if needed. Returns 0 or a negative code (out of memory). */
int eg_value_materialize(eg_graph *g, eg_value *v, inferd_error *err);

/* Attribute lookup on a node; NULL if absent. */
const eg_attr *eg_node_attr(const eg_node *n, const char *name);
/* Typed attribute getters with a default for absent attributes. */
int64_t eg_node_attr_int(const eg_node *n, const char *name, int64_t dflt);
float eg_node_attr_float(const eg_node *n, const char *name, float dflt);
const char *eg_node_attr_string(const eg_node *n, const char *name, const char *dflt);

/* Writes "node 'name' (OpType)" into buf, for error messages. */
const char *eg_node_str(const eg_node *n, char *buf, size_t size);

#endif
