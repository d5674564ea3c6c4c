/* Elementwise ops: unary math and activations, broadcasting binary arithmetic, comparisons and
 * logic, the variadic Sum/Mean/Max/Min, Clip and Where.
 *
 * Integer arithmetic wraps around (computed in the unsigned type) instead of being undefined
 * on overflow, and integer division or modulo by zero (or INT_MIN / -1) yields 0 rather than
 * trapping: exporters only divide shape values, and a hostile file must not crash us. */
#include <float.h>
#include <math.h>
#include <stdint.h>

#include "engine/ops_impl.h"

/* ---- unary ---- */

typedef struct un_params {
    float alpha, beta;
    double lo, hi;    /* Clip bounds for float inputs */
    int64_t ilo, ihi; /* Clip bounds for integer inputs */
    int tanh_approx;  /* Gelu */
} un_params;

typedef void (*un_fn)(const void *x, void *y, int64_t n, const un_params *p);

#define UN_KERNEL(fname, T, TO, EXPR)                                                              \
    static void fname(const void *px_, void *py_, int64_t n, const un_params *p) {                 \
        const T *px = px_;                                                                         \
        TO *py = py_;                                                                              \
        (void)p;                                                                                   \
        _Pragma("omp simd") for (int64_t i = 0; i < n; i++) {                                      \
            T x = px[i];                                                                           \
            py[i] = (EXPR);                                                                        \
        }                                                                                          \
    }

/* Same expression for float and double, with the float and double spellings of the math
 * functions. */
#define UN_FLOAT(name, EXPR_F, EXPR_D)                                                             \
    UN_KERNEL(name##_f32, float, float, EXPR_F) UN_KERNEL(name##_f64, double, double, EXPR_D)

static inline float sigmoidf_(float x) { return 1.0f / (1.0f + expf(-x)); }
static inline double sigmoid_(double x) { return 1.0 / (1.0 + exp(-x)); }
static inline float softplusf_(float x) {
    // log(1 + e^x) without overflowing e^x for large x.
    return x > 0 ? x + log1pf(expf(-x)) : log1pf(expf(x));
}
static inline double softplus_(double x) { return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x)); }
static inline float geluf_(float x, int approx) {
    if (approx)
        return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
    return 0.5f * x * (1.0f + erff(x * 0.7071067811865476f));
}
static inline double gelu_(double x, int approx) {
    if (approx)
        return 0.5 * x * (1.0 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
    return 0.5 * x * (1.0 + erf(x * 0.7071067811865476));
}

UN_FLOAT(abs, fabsf(x), fabs(x))
UN_FLOAT(acos, acosf(x), acos(x))
UN_FLOAT(asin, asinf(x), asin(x))
UN_FLOAT(atan, atanf(x), atan(x))
UN_FLOAT(ceil, ceilf(x), ceil(x))
UN_FLOAT(cos, cosf(x), cos(x))
UN_FLOAT(erf, erff(x), erf(x))
UN_FLOAT(exp, expf(x), exp(x))
UN_FLOAT(floor, floorf(x), floor(x))
UN_FLOAT(log, logf(x), log(x))
UN_FLOAT(neg, -x, -x)
UN_FLOAT(recip, 1.0f / x, 1.0 / x)
// x < 0 rather than max(x, 0) so that NaN passes through.
UN_FLOAT(relu, x < 0 ? 0.0f : x, x < 0 ? 0.0 : x)
// nearbyint rounds halves to even in the default rounding mode, as ONNX Round requires.
UN_FLOAT(round, nearbyintf(x), nearbyint(x))
UN_FLOAT(sigmoid, sigmoidf_(x), sigmoid_(x))
UN_FLOAT(sign, (float)((x > 0) - (x < 0)), (double)((x > 0) - (x < 0)))
UN_FLOAT(sin, sinf(x), sin(x))
UN_FLOAT(sqrt, sqrtf(x), sqrt(x))
UN_FLOAT(tan, tanf(x), tan(x))
UN_FLOAT(tanh, tanhf(x), tanh(x))
UN_FLOAT(softplus, softplusf_(x), softplus_(x))
UN_FLOAT(softsign, x / (1.0f + fabsf(x)), x / (1.0 + fabs(x)))
UN_FLOAT(elu, x >= 0 ? x : p->alpha * expm1f(x), x >= 0 ? x : p->alpha * expm1(x))
UN_FLOAT(leakyrelu, x >= 0 ? x : p->alpha * x, x >= 0 ? x : p->alpha * x)
UN_FLOAT(hardsigmoid, fmaxf(0.0f, fminf(1.0f, p->alpha *x + p->beta)),
         fmax(0.0, fmin(1.0, p->alpha *x + p->beta)))
UN_FLOAT(gelu, geluf_(x, p->tanh_approx), gelu_(x, p->tanh_approx))
UN_FLOAT(clip, x < (float)p->lo ? (float)p->lo : (x > (float)p->hi ? (float)p->hi : x),
         x < p->lo ? p->lo : (x > p->hi ? p->hi : x))
UN_KERNEL(isnan_f32, float, uint8_t, x != x)
UN_KERNEL(isnan_f64, double, uint8_t, x != x)
UN_KERNEL(not_b8, uint8_t, uint8_t, !x)

/* Integer kernels: negation and absolute value wrap (-INT_MIN is INT_MIN). */
#define UN_INT(T, U, sfx)                                                                          \
    UN_KERNEL(abs_##sfx, T, T, x < 0 ? (T)(0 - (U)x) : x)                                          \
    UN_KERNEL(neg_##sfx, T, T, (T)(0 - (U)x))                                                      \
    UN_KERNEL(sign_##sfx, T, T, (T)((x > 0) - (x < 0)))                                            \
    UN_KERNEL(relu_##sfx, T, T, x < 0 ? 0 : x)                                                     \
    UN_KERNEL(clip_##sfx, T, T, x < (T)p->ilo ? (T)p->ilo : (x > (T)p->ihi ? (T)p->ihi : x))
UN_INT(int32_t, uint32_t, i32)
UN_INT(int64_t, uint64_t, i64)

typedef struct un_entry {
    eg_op op;
    un_fn f32, f64, i32, i64;
} un_entry;

static const un_entry un_table[] = {
    {EG_OP_Abs, abs_f32, abs_f64, abs_i32, abs_i64},
    {EG_OP_Acos, acos_f32, acos_f64, NULL, NULL},
    {EG_OP_Asin, asin_f32, asin_f64, NULL, NULL},
    {EG_OP_Atan, atan_f32, atan_f64, NULL, NULL},
    {EG_OP_Ceil, ceil_f32, ceil_f64, NULL, NULL},
    {EG_OP_Cos, cos_f32, cos_f64, NULL, NULL},
    {EG_OP_Erf, erf_f32, erf_f64, NULL, NULL},
    {EG_OP_Exp, exp_f32, exp_f64, NULL, NULL},
    {EG_OP_Floor, floor_f32, floor_f64, NULL, NULL},
    {EG_OP_Log, log_f32, log_f64, NULL, NULL},
    {EG_OP_Neg, neg_f32, neg_f64, neg_i32, neg_i64},
    {EG_OP_Reciprocal, recip_f32, recip_f64, NULL, NULL},
    {EG_OP_Relu, relu_f32, relu_f64, relu_i32, relu_i64},
    {EG_OP_Round, round_f32, round_f64, NULL, NULL},
    {EG_OP_Sigmoid, sigmoid_f32, sigmoid_f64, NULL, NULL},
    {EG_OP_Sign, sign_f32, sign_f64, sign_i32, sign_i64},
    {EG_OP_Sin, sin_f32, sin_f64, NULL, NULL},
    {EG_OP_Sqrt, sqrt_f32, sqrt_f64, NULL, NULL},
    {EG_OP_Tan, tan_f32, tan_f64, NULL, NULL},
    {EG_OP_Tanh, tanh_f32, tanh_f64, NULL, NULL},
    {EG_OP_Softplus, softplus_f32, softplus_f64, NULL, NULL},
    {EG_OP_Softsign, softsign_f32, softsign_f64, NULL, NULL},
    {EG_OP_Elu, elu_f32, elu_f64, NULL, NULL},
    {EG_OP_LeakyRelu, leakyrelu_f32, leakyrelu_f64, NULL, NULL},
    {EG_OP_HardSigmoid, hardsigmoid_f32, hardsigmoid_f64, NULL, NULL},
    {EG_OP_Gelu, gelu_f32, gelu_f64, NULL, NULL},
    {EG_OP_Clip, clip_f32, clip_f64, clip_i32, clip_i64},
    {EG_OP_IsNaN, isnan_f32, isnan_f64, NULL, NULL},
};

static un_fn un_kernel(eg_op op, inferd_dtype dt) {
    if (op == EG_OP_Not)
        return dt == INFERD_DTYPE_BOOL ? not_b8 : NULL;
    for (size_t k = 0; k < sizeof un_table / sizeof un_table[0]; k++) {
        if (un_table[k].op != op)
            continue;
        switch (dt) {
        case INFERD_DTYPE_F32:
            return un_table[k].f32;
        case INFERD_DTYPE_F64:
            return un_table[k].f64;
        case INFERD_DTYPE_I32:
            return un_table[k].i32;
        case INFERD_DTYPE_I64:
            return un_table[k].i64;
        default:
            return NULL;
        }
    }
    return NULL;
}

static int un_attrs(const eg_node *n, un_params *p, inferd_error *err) {
    int rc = 0;
    memset(p, 0, sizeof *p);
    switch (n->op) {
    case EG_OP_Elu:
        rc = eg_attr_f32(n, "alpha", 1.0f, &p->alpha, err);
        break;
    case EG_OP_LeakyRelu:
        rc = eg_attr_f32(n, "alpha", 0.01f, &p->alpha, err);
        break;
    case EG_OP_HardSigmoid:
        rc = eg_attr_f32(n, "alpha", 0.2f, &p->alpha, err);
        if (!rc)
            rc = eg_attr_f32(n, "beta", 0.5f, &p->beta, err);
        break;
    case EG_OP_Gelu: {
        const char *a = eg_node_attr_string(n, "approximate", "none");
        if (strcmp(a, "tanh") == 0)
            p->tanh_approx = 1;
        else if (strcmp(a, "none") != 0)
            rc = eg_node_error(err, INFERD_EINVAL, n, "approximate must be none or tanh, not %.40s",
                               a);
        break;
    }
    default:
        break;
    }
    return rc;
}

static int infer_unary(const eg_node *n, const eg_tensor *in, eg_tensor *out, inferd_error *err) {
    if (!un_kernel(n->op, in[0].dtype))
        return eg_node_error(err, INFERD_EUNSUPPORTED, n, "dtype %s is not supported",
                             inferd_dtype_name(in[0].dtype));
    un_params p;
    int rc = un_attrs(n, &p, err);
    if (rc)
        return rc;
    eg_set_out_like(&out[0], &in[0]);
    if (n->op == EG_OP_IsNaN)
        out[0].dtype = INFERD_DTYPE_BOOL;
    return 0;
}

#define CHUNK ((int64_t)1 << 14)

static void un_apply(un_fn f, const eg_tensor *x, eg_tensor *y, const un_params *p,
                     const eg_run_ctx *ctx) {
    int64_t n = eg_numel(x);
    size_t ex = inferd_dtype_size(x->dtype), ey = inferd_dtype_size(y->dtype);
    const char *px = x->data;
    char *py = y->data;
    int64_t nchunks = (n + CHUNK - 1) / CHUNK;
    // Transcendentals cost ~10 simple operations each: count them as such for threading.
    int nt = eg_par_threads(ctx, n * 8);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t c = 0; c < nchunks; c++) {
        int64_t lo = c * CHUNK, len = n - lo < CHUNK ? n - lo : CHUNK;
        f(px + (size_t)lo * ex, py + (size_t)lo * ey, len, p);
    }
}

static int run_unary(const eg_node *n, const eg_tensor *in, eg_tensor *out, const eg_run_ctx *ctx,
                     inferd_error *err) {
    un_params p;
    int rc = un_attrs(n, &p, err);
    if (rc)
        return rc;
    un_apply(un_kernel(n->op, in[0].dtype), &in[0], &out[0], &p, ctx);
    return 0;
}

#define UNARY(name, flags) EG_OP_IMPL(name, 1, 1, 1, 1, infer_unary, run_unary, NULL, flags);
UNARY(Abs, EG_OPF_INPLACE)
UNARY(Acos, EG_OPF_INPLACE)
UNARY(Asin, EG_OPF_INPLACE)
UNARY(Atan, EG_OPF_INPLACE)
UNARY(Ceil, EG_OPF_INPLACE)
UNARY(Cos, EG_OPF_INPLACE)
UNARY(Erf, EG_OPF_INPLACE)
UNARY(Exp, EG_OPF_INPLACE)
UNARY(Floor, EG_OPF_INPLACE)
UNARY(Log, EG_OPF_INPLACE)
UNARY(Neg, EG_OPF_INPLACE)
UNARY(Reciprocal, EG_OPF_INPLACE)
UNARY(Relu, EG_OPF_INPLACE)
UNARY(Round, EG_OPF_INPLACE)
UNARY(Sigmoid, EG_OPF_INPLACE)
UNARY(Sign, EG_OPF_INPLACE)
UNARY(Sin, EG_OPF_INPLACE)
UNARY(Sqrt, EG_OPF_INPLACE)
UNARY(Tan, EG_OPF_INPLACE)
UNARY(Tanh, EG_OPF_INPLACE)
UNARY(Softplus, EG_OPF_INPLACE)
UNARY(Softsign, EG_OPF_INPLACE)
UNARY(Elu, EG_OPF_INPLACE)
UNARY(LeakyRelu, EG_OPF_INPLACE)
UNARY(HardSigmoid, EG_OPF_INPLACE)
UNARY(Gelu, EG_OPF_INPLACE)
UNARY(IsNaN, 0)
UNARY(Not, EG_OPF_INPLACE)

/* ---- Clip ---- */

/* Bounds come from attributes before opset 11 and from optional one-element inputs after. */
static int clip_bounds(const eg_node *n, const eg_tensor *in, int need_data, un_params *p,
                       inferd_error *err) {
    int is_int = eg_dtype_in(in[0].dtype, EG_DT_INDEX);
    int64_t imin = in[0].dtype == INFERD_DTYPE_I32 ? INT32_MIN : INT64_MIN;
    int64_t imax = in[0].dtype == INFERD_DTYPE_I32 ? INT32_MAX : INT64_MAX;
    p->lo = -INFINITY;
    p->hi = INFINITY;
    p->ilo = imin;
    p->ihi = imax;
    if (n->opset < 11) {
        float lo, hi;
        int rc = eg_attr_f32(n, "min", -FLT_MAX, &lo, err);
        if (!rc)
            rc = eg_attr_f32(n, "max", FLT_MAX, &hi, err);
        if (rc)
            return rc;
        p->lo = lo;
        p->hi = hi;
        return 0;
    }
    for (int i = 1; i <= 2; i++) {
        if (!eg_in_present(n, i))
            continue;
        int rc = eg_check_same_dtype(n, in, 0, i, err);
        if (rc)
            return rc;
        if (eg_numel(&in[i]) != 1)
            return eg_node_error(err, INFERD_EINVAL, n, "input %d (%s) must have one element", i,
                                 i == 1 ? "min" : "max");
        if (!in[i].data) {
            if (need_data)
                return eg_node_error(err, INFERD_EINTERNAL, n, "input %d has no data", i);
            continue;
        }
        if (is_int) {
            int64_t v = eg_tensor_get_i64(&in[i], 0);
            *(i == 1 ? &p->ilo : &p->ihi) = v;
        } else {
            *(i == 1 ? &p->lo : &p->hi) = eg_tensor_get_f64(&in[i], 0);
        }
    }
    return 0;
}

static int infer_clip(const eg_node *n, const eg_tensor *in, eg_tensor *out, inferd_error *err) {
    int rc = eg_check_dtype(n, in, 0, EG_DT_NUM, err);
    un_params p;
    if (!rc)
        rc = clip_bounds(n, in, 0, &p, err);
    if (rc)
        return rc;
    eg_set_out_like(&out[0], &in[0]);
    return 0;
}

static int run_clip(const eg_node *n, const eg_tensor *in, eg_tensor *out, const eg_run_ctx *ctx,
                    inferd_error *err) {
    un_params p;
    int rc = clip_bounds(n, in, 1, &p, err);
    if (rc)
        return rc;
    un_apply(un_kernel(EG_OP_Clip, in[0].dtype), &in[0], &out[0], &p, ctx);
    return 0;
}

EG_OP_IMPL(Clip, 1, 3, 1, 1, infer_clip, run_clip, NULL, EG_OPF_INPLACE);

/* ---- binary ---- */

#define BIN_KERNEL(fname, TA, TB, TO, EXPR)                                                        \
    static void fname(const void *pa_, int64_t sa, const void *pb_, int64_t sb, void *po_,         \
                      int64_t n) {                                                                 \
        const TA *pa = pa_;                                                                        \
        const TB *pb = pb_;                                                                        \
        TO *po = po_;                                                                              \
        if (sa && sb) {                                                                            \
            _Pragma("omp simd") for (int64_t i = 0; i < n; i++) {                                  \
                TA x = pa[i];                                                                      \
                TB y = pb[i];                                                                      \
                po[i] = (EXPR);                                                                    \
            }                                                                                      \
        } else if (sa) {                                                                           \
            TB y = pb[0];                                                                          \
            _Pragma("omp simd") for (int64_t i = 0; i < n; i++) {                                  \
                TA x = pa[i];                                                                      \
                po[i] = (EXPR);                                                                    \
            }                                                                                      \
        } else if (sb) {                                                                           \
            TA x = pa[0];                                                                          \
            _Pragma("omp simd") for (int64_t i = 0; i < n; i++) {                                  \
                TB y = pb[i];                                                                      \
                po[i] = (EXPR);                                                                    \
            }                                                                                      \
        } else {                                                                                   \
            TA x = pa[0];                                                                          \
            TB y = pb[0];                                                                          \
            TO v = (EXPR);                                                                         \
            for (int64_t i = 0; i < n; i++)                                                        \
                po[i] = v;                                                                         \
        }                                                                                          \
    }

/* Wrapping and non-trapping integer arithmetic (see the top of the file). */
#define INT_HELPERS(T, U, sfx)                                                                     \
    static inline T add_##sfx(T x, T y) { return (T)((U)x + (U)y); }                               \
    static inline T sub_##sfx(T x, T y) { return (T)((U)x - (U)y); }                               \
    static inline T mul_##sfx(T x, T y) { return (T)((U)x * (U)y); }                               \
    static inline T div_##sfx(T x, T y) {                                                          \
        return y == 0 ? 0 : y == -1 ? (T)(0 - (U)x) : (T)(x / y);                                  \
    }                                                                                              \
    /* Result takes the divisor's sign, as Python's % (Mod with fmod=0). */                        \
    static inline T mod_##sfx(T x, T y) {                                                          \
        if (y == 0 || y == -1)                                                                     \
            return 0;                                                                              \
        T r = (T)(x % y);                                                                          \
        return r != 0 && ((r < 0) != (y < 0)) ? (T)(r + y) : r;                                    \
    }                                                                                              \
    /* Result takes the dividend's sign, as C's % (Mod with fmod=1). */                            \
    static inline T fmod_##sfx(T x, T y) { return y == 0 || y == -1 ? 0 : (T)(x % y); }            \
    static inline T pow_##sfx(T x, T y) {                                                          \
        if (y < 0) /* integer result of x^y truncated toward zero */                               \
            return x == 1 ? 1 : x == -1 ? ((y & 1) ? -1 : 1) : 0;                                  \
        U r = 1, b = (U)x;                                                                         \
        for (T e = y; e > 0; e >>= 1) {                                                            \
            if (e & 1)                                                                             \
                r *= b;                                                                            \
            b *= b;                                                                                \
        }                                                                                          \
        return (T)r;                                                                               \
    }
INT_HELPERS(int32_t, uint32_t, i32)
INT_HELPERS(int64_t, uint64_t, i64)

/* Max and Min propagate NaN from either side. */
#define FMAX(x, y) ((x) != (x) || (x) > (y) ? (x) : (y))
#define FMIN(x, y) ((x) != (x) || (x) < (y) ? (x) : (y))

#define BIN_FLOAT(T, sfx, POW, FMOD)                                                               \
    BIN_KERNEL(add_k##sfx, T, T, T, x + y)                                                         \
    BIN_KERNEL(sub_k##sfx, T, T, T, x - y)                                                         \
    BIN_KERNEL(mul_k##sfx, T, T, T, x *y)                                                          \
    BIN_KERNEL(div_k##sfx, T, T, T, x / y)                                                         \
    BIN_KERNEL(fmod_k##sfx, T, T, T, FMOD(x, y))                                                   \
    BIN_KERNEL(max_k##sfx, T, T, T, FMAX(x, y))                                                    \
    BIN_KERNEL(min_k##sfx, T, T, T, FMIN(x, y))                                                    \
    BIN_KERNEL(eq_k##sfx, T, T, uint8_t, x == y)                                                   \
    BIN_KERNEL(gt_k##sfx, T, T, uint8_t, x > y)                                                    \
    BIN_KERNEL(ge_k##sfx, T, T, uint8_t, x >= y)                                                   \
    BIN_KERNEL(lt_k##sfx, T, T, uint8_t, x < y)                                                    \
    BIN_KERNEL(le_k##sfx, T, T, uint8_t, x <= y)                                                   \
    BIN_KERNEL(pow_k##sfx##_f32, T, float, T, POW(x, (T)y))                                        \
    BIN_KERNEL(pow_k##sfx##_f64, T, double, T, POW(x, (T)y))                                       \
    BIN_KERNEL(pow_k##sfx##_i32, T, int32_t, T, POW(x, (T)y))                                      \
    BIN_KERNEL(pow_k##sfx##_i64, T, int64_t, T, POW(x, (T)y))
BIN_FLOAT(float, f32, powf, fmodf)
BIN_FLOAT(double, f64, pow, fmod)

#define BIN_INT(T, sfx)                                                                            \
    BIN_KERNEL(add_k##sfx, T, T, T, add_##sfx(x, y))                                               \
    BIN_KERNEL(sub_k##sfx, T, T, T, sub_##sfx(x, y))                                               \
    BIN_KERNEL(mul_k##sfx, T, T, T, mul_##sfx(x, y))                                               \
    BIN_KERNEL(div_k##sfx, T, T, T, div_##sfx(x, y))                                               \
    BIN_KERNEL(mod_k##sfx, T, T, T, mod_##sfx(x, y))                                               \
    BIN_KERNEL(fmod_k##sfx, T, T, T, fmod_##sfx(x, y))                                             \
    BIN_KERNEL(max_k##sfx, T, T, T, x > y ? x : y)                                                 \
    BIN_KERNEL(min_k##sfx, T, T, T, x < y ? x : y)                                                 \
    BIN_KERNEL(eq_k##sfx, T, T, uint8_t, x == y)                                                   \
    BIN_KERNEL(gt_k##sfx, T, T, uint8_t, x > y)                                                    \
    BIN_KERNEL(ge_k##sfx, T, T, uint8_t, x >= y)                                                   \
    BIN_KERNEL(lt_k##sfx, T, T, uint8_t, x < y)                                                    \
    BIN_KERNEL(le_k##sfx, T, T, uint8_t, x <= y)
BIN_INT(int32_t, i32)
BIN_INT(int64_t, i64)
BIN_KERNEL(pow_ki32_i32, int32_t, int32_t, int32_t, pow_i32(x, y))
BIN_KERNEL(pow_ki32_i64, int32_t, int64_t, int32_t,
           pow_i32(x, y > INT32_MAX   ? INT32_MAX
                      : y < INT32_MIN ? INT32_MIN
                                      : (int32_t)y))
BIN_KERNEL(pow_ki64_i64, int64_t, int64_t, int64_t, pow_i64(x, y))
BIN_KERNEL(pow_ki64_i32, int64_t, int32_t, int64_t, pow_i64(x, y))

BIN_KERNEL(eq_kb8, uint8_t, uint8_t, uint8_t, (x != 0) == (y != 0))
BIN_KERNEL(and_kb8, uint8_t, uint8_t, uint8_t, x &&y)
BIN_KERNEL(or_kb8, uint8_t, uint8_t, uint8_t, x || y)
BIN_KERNEL(xor_kb8, uint8_t, uint8_t, uint8_t, (x != 0) != (y != 0))

/* Pow with a one-element exponent of 2 (LayerNorm and GELU decompositions square a tensor):
 * a multiplication, exact and much cheaper than powf. */
BIN_KERNEL(square_kf32, float, float, float, ((void)y, x *x))

typedef struct bin_entry {
    eg_op op;
    eg_binary_fn f32, f64, i32, i64, b8;
} bin_entry;

static const bin_entry bin_table[] = {
    {EG_OP_Add, add_kf32, add_kf64, add_ki32, add_ki64, NULL},
    {EG_OP_Sub, sub_kf32, sub_kf64, sub_ki32, sub_ki64, NULL},
    {EG_OP_Mul, mul_kf32, mul_kf64, mul_ki32, mul_ki64, NULL},
    {EG_OP_Div, div_kf32, div_kf64, div_ki32, div_ki64, NULL},
    {EG_OP_Max, max_kf32, max_kf64, max_ki32, max_ki64, NULL},
    {EG_OP_Min, min_kf32, min_kf64, min_ki32, min_ki64, NULL},
    {EG_OP_Sum, add_kf32, add_kf64, add_ki32, add_ki64, NULL},
    {EG_OP_Mean, add_kf32, add_kf64, NULL, NULL, NULL},
    {EG_OP_Equal, eq_kf32, eq_kf64, eq_ki32, eq_ki64, eq_kb8},
    {EG_OP_Greater, gt_kf32, gt_kf64, gt_ki32, gt_ki64, NULL},
    {EG_OP_GreaterOrEqual, ge_kf32, ge_kf64, ge_ki32, ge_ki64, NULL},
    {EG_OP_Less, lt_kf32, lt_kf64, lt_ki32, lt_ki64, NULL},
    {EG_OP_LessOrEqual, le_kf32, le_kf64, le_ki32, le_ki64, NULL},
    {EG_OP_And, NULL, NULL, NULL, NULL, and_kb8},
    {EG_OP_Or, NULL, NULL, NULL, NULL, or_kb8},
    {EG_OP_Xor, NULL, NULL, NULL, NULL, xor_kb8},
};

static eg_binary_fn pow_kernel(inferd_dtype base, inferd_dtype ex) {
    static const struct {
        inferd_dtype b, e;
        eg_binary_fn f;
    } t[] = {
        {INFERD_DTYPE_F32, INFERD_DTYPE_F32, pow_kf32_f32},
        {INFERD_DTYPE_F32, INFERD_DTYPE_F64, pow_kf32_f64},
        {INFERD_DTYPE_F32, INFERD_DTYPE_I32, pow_kf32_i32},
        {INFERD_DTYPE_F32, INFERD_DTYPE_I64, pow_kf32_i64},
        {INFERD_DTYPE_F64, INFERD_DTYPE_F32, pow_kf64_f32},
        {INFERD_DTYPE_F64, INFERD_DTYPE_F64, pow_kf64_f64},
        {INFERD_DTYPE_F64, INFERD_DTYPE_I32, pow_kf64_i32},
        {INFERD_DTYPE_F64, INFERD_DTYPE_I64, pow_kf64_i64},
        {INFERD_DTYPE_I32, INFERD_DTYPE_I32, pow_ki32_i32},
        {INFERD_DTYPE_I32, INFERD_DTYPE_I64, pow_ki32_i64},
        {INFERD_DTYPE_I64, INFERD_DTYPE_I64, pow_ki64_i64},
        {INFERD_DTYPE_I64, INFERD_DTYPE_I32, pow_ki64_i32},
    };
    for (size_t k = 0; k < sizeof t / sizeof t[0]; k++)
        if (t[k].b == base && t[k].e == ex)
            return t[k].f;
    return NULL;
}

/* The kernel of a binary (or folded variadic) op for these input dtypes; NULL if none. */
static eg_binary_fn bin_kernel(const eg_node *n, inferd_dtype a, inferd_dtype b) {
    if (n->op == EG_OP_Pow)
        return pow_kernel(a, b);
    if (a != b)
        return NULL;
    if (n->op == EG_OP_Mod) {
        int fm = eg_node_attr_int(n, "fmod", 0) != 0;
        switch (a) {
        case INFERD_DTYPE_F32:
            return fm ? fmod_kf32 : NULL;
        case INFERD_DTYPE_F64:
            return fm ? fmod_kf64 : NULL;
        case INFERD_DTYPE_I32:
            return fm ? fmod_ki32 : mod_ki32;
        case INFERD_DTYPE_I64:
            return fm ? fmod_ki64 : mod_ki64;
        default:
            return NULL;
        }
    }
    for (size_t k = 0; k < sizeof bin_table / sizeof bin_table[0]; k++) {
        if (bin_table[k].op != n->op)
            continue;
        switch (a) {
        case INFERD_DTYPE_F32:
            return bin_table[k].f32;
        case INFERD_DTYPE_F64:
            return bin_table[k].f64;
        case INFERD_DTYPE_I32:
            return bin_table[k].i32;
        case INFERD_DTYPE_I64:
            return bin_table[k].i64;
        case INFERD_DTYPE_BOOL:
            return bin_table[k].b8;
        default:
            return NULL;
        }
    }
    return NULL;
}

static int is_comparison(eg_op op) {
    return op == EG_OP_Equal || op == EG_OP_Greater || op == EG_OP_GreaterOrEqual ||
           op == EG_OP_Less || op == EG_OP_LessOrEqual;
}

static int infer_binary(const eg_node *n, const eg_tensor *in, eg_tensor *out, inferd_error *err) {
    if (n->op != EG_OP_Pow) {
        int rc = eg_check_same_dtype(n, in, 0, 1, err);
        if (rc)
            return rc;
    }
    if (!bin_kernel(n, in[0].dtype, in[1].dtype)) {
        if (n->op == EG_OP_Mod && eg_dtype_in(in[0].dtype, EG_DT_FLOAT))
            return eg_node_error(err, INFERD_EINVAL, n, "float Mod requires fmod=1");
        if (n->op == EG_OP_Pow && in[0].dtype != in[1].dtype)
            return eg_node_error(err, INFERD_EUNSUPPORTED, n,
                                 "%s raised to a %s power is not supported",
                                 inferd_dtype_name(in[0].dtype), inferd_dtype_name(in[1].dtype));
        return eg_node_error(err, INFERD_EUNSUPPORTED, n, "dtype %s is not supported",
                             inferd_dtype_name(in[0].dtype));
    }
    int rc = eg_broadcast_shape(n, &in[0], &in[1], &out[0], err);
    if (rc)
        return rc;
    out[0].dtype = is_comparison(n->op) ? INFERD_DTYPE_BOOL : in[0].dtype;
    return 0;
}

static int run_binary(const eg_node *n, const eg_tensor *in, eg_tensor *out, const eg_run_ctx *ctx,
                      inferd_error *err) {
    (void)err;
    eg_binary_fn f = bin_kernel(n, in[0].dtype, in[1].dtype);
    if (n->op == EG_OP_Pow && in[0].dtype == INFERD_DTYPE_F32 && eg_numel(&in[1]) == 1 &&
        eg_tensor_get_f64(&in[1], 0) == 2.0)
        f = square_kf32;
    eg_binary_apply(&in[0], &in[1], &out[0], f, ctx);
    return 0;
}

#define BINARY(name, flags) EG_OP_IMPL(name, 2, 2, 1, 1, infer_binary, run_binary, NULL, flags);
BINARY(Add, EG_OPF_INPLACE)
BINARY(Sub, EG_OPF_INPLACE)
BINARY(Mul, EG_OPF_INPLACE)
BINARY(Div, EG_OPF_INPLACE)
BINARY(Pow, EG_OPF_INPLACE)
BINARY(Mod, EG_OPF_INPLACE)
BINARY(Equal, 0)
BINARY(Greater, 0)
BINARY(GreaterOrEqual, 0)
BINARY(Less, 0)
BINARY(LessOrEqual, 0)
BINARY(And, EG_OPF_INPLACE)
BINARY(Or, EG_OPF_INPLACE)
BINARY(Xor, EG_OPF_INPLACE)

/* ---- variadic Sum, Mean, Max, Min ---- */

static int infer_variadic(const eg_node *n, const eg_tensor *in, eg_tensor *out,
                          inferd_error *err) {
    if (!bin_kernel(n, in[0].dtype, in[0].dtype))
        return eg_node_error(err, INFERD_EUNSUPPORTED, n, "dtype %s is not supported",
                             inferd_dtype_name(in[0].dtype));
    eg_tensor acc = in[0];
    for (int i = 1; i < n->n_in; i++) {
        if (!eg_in_present(n, i))
            return eg_node_error(err, INFERD_EINVAL, n, "input %d is missing", i);
        int rc = eg_check_same_dtype(n, in, 0, i, err);
        if (!rc)
            rc = eg_broadcast_shape(n, &acc, &in[i], &acc, err);
        if (rc)
            return rc;
    }
    eg_set_out(&out[0], in[0].dtype, acc.rank, acc.dims);
    return 0;
}

UN_KERNEL(divide_f32, float, float, x / p->alpha)
UN_KERNEL(divide_f64, double, double, x / (double)p->alpha)

static int run_variadic(const eg_node *n, const eg_tensor *in, eg_tensor *out,
                        const eg_run_ctx *ctx, inferd_error *err) {
    (void)err;
    eg_binary_fn f = bin_kernel(n, in[0].dtype, in[0].dtype);
    if (n->n_in == 1) {
        eg_broadcast_copy(&in[0], &out[0], ctx);
        return 0;
    }
    // Fold left to right; the first step may broadcast both inputs, the later ones read the
    // accumulated output in place (same element, so no hazard).
    eg_binary_apply(&in[0], &in[1], &out[0], f, ctx);
    for (int i = 2; i < n->n_in; i++)
        eg_binary_apply(&out[0], &in[i], &out[0], f, ctx);
    if (n->op == EG_OP_Mean) {
        un_params p = {.alpha = (float)n->n_in};
        un_apply(in[0].dtype == INFERD_DTYPE_F64 ? divide_f64 : divide_f32, &out[0], &out[0], &p,
                 ctx);
    }
    return 0;
}

#define VARIADIC(name)                                                                             \
    EG_OP_IMPL(name, 1, EG_VARIADIC, 1, 1, infer_variadic, run_variadic, NULL, 0);
VARIADIC(Sum)
VARIADIC(Mean)
VARIADIC(Max)
VARIADIC(Min)

/* ---- Where ---- */

static int infer_where(const eg_node *n, const eg_tensor *in, eg_tensor *out, inferd_error *err) {
    if (in[0].dtype != INFERD_DTYPE_BOOL)
        return eg_node_error(err, INFERD_EINVAL, n, "condition must be bool, not %s",
                             inferd_dtype_name(in[0].dtype));
    int rc = eg_check_same_dtype(n, in, 1, 2, err);
    eg_tensor s = in[0];
    if (!rc)
        rc = eg_broadcast_shape(n, &s, &in[1], &s, err);
    if (!rc)
        rc = eg_broadcast_shape(n, &s, &in[2], &s, err);
    if (rc)
        return rc;
    eg_set_out(&out[0], in[1].dtype, s.rank, s.dims);
    return 0;
}

#define WHERE_ROW(T)                                                                               \
    do {                                                                                           \
        const T *x = (const T *)px + ox, *y = (const T *)py + oy;                                  \
        T *o = (T *)po + r * inner;                                                                \
        for (int64_t i = 0; i < inner; i++)                                                        \
            o[i] = c[i * sc] ? x[i * sx] : y[i * sy];                                              \
    } while (0)

static int run_where(const eg_node *n, const eg_tensor *in, eg_tensor *out, const eg_run_ctx *ctx,
                     inferd_error *err) {
    (void)n;
    (void)err;
    eg_bcast bc;
    const eg_tensor *ins[3] = {&in[0], &in[1], &in[2]};
    eg_bcast_init(&bc, &out[0], 3, ins);
    size_t es = inferd_dtype_size(out[0].dtype);
    int64_t inner = bc.inner, sc = bc.strides[0][bc.rank - 1], sx = bc.strides[1][bc.rank - 1],
            sy = bc.strides[2][bc.rank - 1];
    const uint8_t *pc = in[0].data;
    const void *px = in[1].data, *py = in[2].data;
    void *po = out[0].data;
    int nt = eg_par_threads(ctx, eg_numel(&out[0]));
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t r = 0; r < bc.rows; r++) {
        int64_t off[3];
        eg_bcast_row(&bc, r, off);
        const uint8_t *c = pc + off[0];
        int64_t ox = off[1], oy = off[2];
        switch (es) {
        case 1:
            WHERE_ROW(uint8_t);
            break;
        case 2:
            WHERE_ROW(uint16_t);
            break;
        case 4:
            WHERE_ROW(uint32_t);
            break;
        default:
            WHERE_ROW(uint64_t);
            break;
        }
    }
    return 0;
}

EG_OP_IMPL(Where, 3, 3, 1, 1, infer_where, run_where, NULL, 0);
