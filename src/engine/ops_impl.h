/* ops_impl.h: machinery shared by the standard op implementations (ops_*.c): the per-op record
 * behind the public eg_op_def table, validating readers for inputs and attributes of untrusted
 * files, broadcasting, parallel loops, a blocked matrix product and float16/bfloat16
 * conversion. Nothing outside src/engine/ops*.c includes it.
 *
 * DESIGN
 * Every standard op defines one eg_op_impl with EG_OP_IMPL. The public eg_op_def inside it has
 * eg_infer_checked as infer: that function does the checks every op needs (input and output
 * counts, required inputs present, input dtypes known, ranks and dims sane, no dim or element
 * count over EG_MAX_NUMEL), calls the op's own infer, then checks every output against the
 * same cap. An op's infer therefore only checks what is specific to it, and no hostile file
 * can make any op allocate more than EG_MAX_NUMEL elements per output or index past an int64.
 */
#ifndef INFERD_ENGINE_OPS_IMPL_H
#define INFERD_ENGINE_OPS_IMPL_H

#include <stdint.h>
#include <string.h>

#include "engine/ops.h"

/* Largest element count (and largest single dim) of any tensor an op reads or writes. Products
 * of two such numbers fit in int64, so index arithmetic never overflows. */
#define EG_MAX_NUMEL ((int64_t)1 << 31)

/* Upper bound on the inputs of variadic ops (Concat, Sum, Max, ...). */
#define EG_VARIADIC 4096

typedef int (*eg_infer_fn)(const eg_node *n, const eg_tensor *in, eg_tensor *out,
                           inferd_error *err);

typedef struct eg_op_impl {
    eg_op_def def;        /* what eg_op_def_get returns; def.infer is eg_infer_checked */
    eg_infer_fn infer;    /* the op's own checks and shape rules */
    int min_in, max_in;   /* input count range; the first min_in inputs must be present */
    int min_out, max_out; /* output count range */
    int out0_optional;    /* output 0 may be omitted (recurrent ops returning only Y_h) */
} eg_op_impl;

/* Checks common to all standard ops, then the op's own infer; see DESIGN. */
int eg_infer_checked(const eg_node *n, const eg_tensor *in, eg_tensor *out, inferd_error *err);

#define EG_OP_IMPL(op_, in_lo, in_hi, out_lo, out_hi, infer_, run_, scratch_, flags_)              \
    const eg_op_impl eg_impl_##op_ = {                                                             \
        .def = {.infer = eg_infer_checked, .run = run_, .scratch = scratch_, .flags = flags_},     \
        .infer = infer_,                                                                           \
        .min_in = in_lo,                                                                           \
        .max_in = in_hi,                                                                           \
        .min_out = out_lo,                                                                         \
        .max_out = out_hi,                                                                         \
    }

#define EG_OP_IMPL_DECL_(name) extern const eg_op_impl eg_impl_##name;
EG_STANDARD_OPS(EG_OP_IMPL_DECL_)
#undef EG_OP_IMPL_DECL_

/* ---- dtypes ---- */

#define EG_DT(t) (1u << (t))
#define EG_DT_FLOAT (EG_DT(INFERD_DTYPE_F32) | EG_DT(INFERD_DTYPE_F64))
#define EG_DT_INDEX (EG_DT(INFERD_DTYPE_I32) | EG_DT(INFERD_DTYPE_I64))
#define EG_DT_NUM (EG_DT_FLOAT | EG_DT_INDEX)
/* Every dtype with a fixed element size (everything but strings). */
#define EG_DT_ANY                                                                                  \
    (EG_DT(INFERD_DTYPE_F32) | EG_DT(INFERD_DTYPE_U8) | EG_DT(INFERD_DTYPE_I8) |                   \
     EG_DT(INFERD_DTYPE_U16) | EG_DT(INFERD_DTYPE_I16) | EG_DT(INFERD_DTYPE_I32) |                 \
     EG_DT(INFERD_DTYPE_I64) | EG_DT(INFERD_DTYPE_BOOL) | EG_DT(INFERD_DTYPE_F16) |                \
     EG_DT(INFERD_DTYPE_F64) | EG_DT(INFERD_DTYPE_U32) | EG_DT(INFERD_DTYPE_U64) |                 \
     EG_DT(INFERD_DTYPE_BF16))

static inline int eg_dtype_in(inferd_dtype t, unsigned mask) {
    return (unsigned)t < 32 && (mask & EG_DT(t)) != 0;
}

/* ---- inputs, outputs and attributes ---- */

/* Input i is given (listed and not omitted). */
static inline int eg_in_present(const eg_node *n, int i) { return i < n->n_in && n->in[i] >= 0; }
/* Output j is wanted. */
static inline int eg_out_present(const eg_node *n, int j) { return j < n->n_out && n->out[j] >= 0; }

static inline int64_t eg_numel(const eg_tensor *t) {
    int64_t c = 1;
    for (int i = 0; i < t->rank; i++)
        c *= t->dims[i];
    return c;
}

/* Product of dims[lo..hi). */
static inline int64_t eg_dims_prod(const int64_t *dims, int lo, int hi) {
    int64_t c = 1;
    for (int i = lo; i < hi; i++)
        c *= dims[i];
    return c;
}

static inline void eg_set_out(eg_tensor *o, inferd_dtype dt, int rank, const int64_t *dims) {
    o->dtype = dt;
    o->rank = rank;
    for (int i = 0; i < rank; i++)
        o->dims[i] = dims[i];
    o->data = NULL;
}

/* Same dtype and shape as t, no data. */
static inline void eg_set_out_like(eg_tensor *o, const eg_tensor *t) {
    eg_set_out(o, t->dtype, t->rank, t->dims);
}

/* EUNSUPPORTED naming input i and its dtype unless its dtype is in mask. */
int eg_check_dtype(const eg_node *n, const eg_tensor *in, int i, unsigned mask, inferd_error *err);
/* EINVAL unless inputs i and j have the same dtype. */
int eg_check_same_dtype(const eg_node *n, const eg_tensor *in, int i, int j, inferd_error *err);
/* EINVAL unless lo <= rank of input i <= hi. */
int eg_check_rank(const eg_node *n, const eg_tensor *in, int i, int lo, int hi, inferd_error *err);
/* EUNSUPPORTED naming input i (what) unless its value is known at plan time. */
int eg_require_const(const eg_node *n, const eg_tensor *in, int i, const char *what,
                     inferd_error *err);

/* Reads the value of integer input i (int32 or int64, rank 0 or 1, at most cap elements) into
 * buf and its count into *count. The input must be known (eg_require_const). */
int eg_const_ints(const eg_node *n, const eg_tensor *in, int i, const char *what, int64_t *buf,
                  int cap, int *count, inferd_error *err);
/* Reads a one-element input (any numeric dtype, any rank) as int64 or double. When `what` is
 * NULL the input need not be known at plan time: returns 1 and leaves *v alone if unknown. */
int eg_scalar_i64(const eg_node *n, const eg_tensor *in, int i, const char *what, int64_t *v,
                  inferd_error *err);
int eg_scalar_f64(const eg_node *n, const eg_tensor *in, int i, const char *what, double *v,
                  inferd_error *err);

/* Integer attribute with a default; EINVAL when present with another type or outside
 * [lo, hi]. */
int eg_attr_i64(const eg_node *n, const char *name, int64_t dflt, int64_t lo, int64_t hi,
                int64_t *v, inferd_error *err);
/* Float attribute with a default; EINVAL when present with another type or not finite. */
int eg_attr_f32(const eg_node *n, const char *name, float dflt, float *v, inferd_error *err);
/* Integer-list attribute: copies up to cap values into buf and returns the count, 0 when
 * absent (*present says which), or a negative code when the type is wrong or it is too long. */
int eg_attr_ints(const eg_node *n, const char *name, int64_t *buf, int cap, int *present,
                 inferd_error *err);

/* Normalises axes (buf[0..count)) against rank in place: negatives count from the end, each
 * must be in range and appear once. */
int eg_normalize_axes(const eg_node *n, int64_t *axes, int count, int rank, inferd_error *err);

/* ---- parallel loops ---- */

/* Below this many element operations an op stays on the calling thread. */
#define EG_PAR_MIN_WORK ((int64_t)1 << 15)

/* Team size for a loop doing `work` element operations: 1 (no threads) for small work. */
static inline int eg_par_threads(const eg_run_ctx *ctx, int64_t work) {
    if (!ctx || ctx->threads <= 1 || work < EG_PAR_MIN_WORK)
        return 1;
    return ctx->threads;
}

/* Scratch memory of at least size bytes handed to run(), or NULL after filling err. */
void *eg_scratch(const eg_node *n, const eg_run_ctx *ctx, size_t size, inferd_error *err);

/* ---- broadcasting ---- */

/* Up to three inputs broadcast to one output shape, with dims of size 1 dropped and dims that
 * every input walks contiguously merged. Iteration goes by rows of the innermost dim; inner
 * strides are 0 or 1. */
typedef struct eg_bcast {
    int rank; /* >= 1 */
    int n_in;
    int64_t dims[EG_MAX_RANK];
    int64_t strides[3][EG_MAX_RANK];
    int64_t rows, inner;
} eg_bcast;

void eg_bcast_init(eg_bcast *b, const eg_tensor *out, int n_in, const eg_tensor *const *ins);
/* Element offsets of each input at the start of row `row`. */
void eg_bcast_row(const eg_bcast *b, int64_t row, int64_t *off);

/* Kernel over n elements: o[i] = f(a[i * sa], b[i * sb]) with sa, sb in {0, 1}. */
typedef void (*eg_binary_fn)(const void *a, int64_t sa, const void *b, int64_t sb, void *o,
                             int64_t n);
/* out = fn(a, b) with numpy broadcasting; out's dims are set. */
void eg_binary_apply(const eg_tensor *a, const eg_tensor *b, eg_tensor *out, eg_binary_fn fn,
                     const eg_run_ctx *ctx);
/* Copies x broadcast into out's shape (same dtype). */
void eg_broadcast_copy(const eg_tensor *x, eg_tensor *out, const eg_run_ctx *ctx);

/* ---- matrix products ---- */

/* C = alpha * op(A) op(B) + beta * C for row-major matrices, where op transposes when the
 * flag is set; A is M x K after op, B is K x N after op. beta == 0 overwrites C (NaN in C is
 * ignored). Splits rows over up to `threads` threads when the work is large. */
void eg_gemm_f32(int transA, int transB, int64_t M, int64_t N, int64_t K, float alpha,
                 const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                 int64_t ldc, int threads);
void eg_gemm_f64(int transA, int transB, int64_t M, int64_t N, int64_t K, double alpha,
                 const double *A, int64_t lda, const double *B, int64_t ldb, double beta, double *C,
                 int64_t ldc, int threads);

#endif
