/* Reductions: Reduce{Sum,Mean,Max,Min,Prod,SumSquare,L2,LogSumExp}, ArgMax/ArgMin and
 * Softmax/LogSoftmax.
 *
 * Reductions over any set of axes share one loop: per output element, walk the reduced
 * positions line by line (the innermost reduced dim is the line). Float reductions accumulate
 * in double, so this reference is at least as accurate as the kernels compared with it.
 * Integer sums and products wrap. */
#include <inttypes.h>
#include <math.h>

#include "engine/ops_impl.h"

typedef enum red_kind { R_SUM, R_MEAN, R_MAX, R_MIN, R_PROD, R_SUMSQ, R_L2, R_LSE } red_kind;

static red_kind red_kind_of(eg_op op) {
    switch (op) {
    case EG_OP_ReduceMean:
        return R_MEAN;
    case EG_OP_ReduceMax:
        return R_MAX;
    case EG_OP_ReduceMin:
        return R_MIN;
    case EG_OP_ReduceProd:
        return R_PROD;
    case EG_OP_ReduceSumSquare:
        return R_SUMSQ;
    case EG_OP_ReduceL2:
        return R_L2;
    case EG_OP_ReduceLogSumExp:
        return R_LSE;
    default:
        return R_SUM;
    }
}

/* Axes are an attribute before opset 13 (ReduceSum) or 18 (the others), then an optional
 * input. */
static int reduce_axes(const eg_node *n, const eg_tensor *in, int64_t *axes, int *count,
                       inferd_error *err) {
    int from_input = n->opset >= (n->op == EG_OP_ReduceSum ? 13 : 18);
    *count = 0;
    if (!from_input) {
        int present;
        int rc = eg_attr_ints(n, "axes", axes, EG_MAX_RANK, &present, err);
        if (rc < 0)
            return rc;
        *count = rc;
    } else if (eg_in_present(n, 1)) {
        int rc = eg_const_ints(n, in, 1, "axes", axes, EG_MAX_RANK, count, err);
        if (rc)
            return rc;
    }
    return eg_normalize_axes(n, axes, *count, in[0].rank, err);
}

/* Which input dims are reduced (bit mask); 0 with *noop set means the identity. */
static int reduce_mask(const eg_node *n, const eg_tensor *in, unsigned *mask, int *noop,
                       inferd_error *err) {
    int64_t axes[EG_MAX_RANK], noop_attr;
    int count;
    int rc = reduce_axes(n, in, axes, &count, err);
    if (!rc)
        rc = eg_attr_i64(n, "noop_with_empty_axes", 0, 0, 1, &noop_attr, err);
    if (rc)
        return rc;
    *mask = 0;
    *noop = 0;
    if (count == 0) {
        if (noop_attr)
            *noop = 1;
        else
            *mask = (1u << in[0].rank) - 1;
    }
    for (int k = 0; k < count; k++)
        *mask |= 1u << axes[k];
    return 0;
}

static int infer_reduce(const eg_node *n, const eg_tensor *in, eg_tensor *out, inferd_error *err) {
    red_kind kind = red_kind_of(n->op);
    unsigned mask = eg_dtype_in(in[0].dtype, EG_DT_FLOAT) ? EG_DT_FLOAT
                    : (kind == R_L2 || kind == R_LSE)     ? 0
                                                          : EG_DT_INDEX;
    int rc = eg_check_dtype(n, in, 0, mask, err);
    if (rc)
        return rc;
    unsigned red;
    int noop;
    int64_t keep;
    rc = reduce_mask(n, in, &red, &noop, err);
    if (!rc)
        rc = eg_attr_i64(n, "keepdims", 1, 0, 1, &keep, err);
    if (rc)
        return rc;
    int64_t dims[EG_MAX_RANK];
    int r = 0;
    for (int d = 0; d < in[0].rank; d++) {
        if (!(red & (1u << d)))
            dims[r++] = in[0].dims[d];
        else if (keep)
            dims[r++] = 1;
    }
    eg_set_out(&out[0], in[0].dtype, r, dims);
    return 0;
}

/* The reduction as loops: kept dims give output elements, reduced dims (innermost one being
 * the line) give the positions folded into each. Size-1 dims are dropped and neighbours with
 * the same role merged. */
typedef struct red_loops {
    int nk, nr;
    int64_t kdims[EG_MAX_RANK], kstride[EG_MAX_RANK];
    int64_t rdims[EG_MAX_RANK], rstride[EG_MAX_RANK];
    int64_t line, lstride; /* innermost reduced dim */
    int64_t lines;         /* product of the other reduced dims */
    int64_t count;         /* reduced positions per output element */
} red_loops;

static void red_loops_init(red_loops *L, const eg_tensor *x, unsigned red) {
    int r = x->rank;
    int64_t stride[EG_MAX_RANK];
    if (r > 0)
        stride[r - 1] = 1;
    for (int d = r - 2; d >= 0; d--)
        stride[d] = stride[d + 1] * x->dims[d + 1];
    L->nk = L->nr = 0;
    L->count = 1;
    int last = -1; // role of the previous kept dim: 0 kept, 1 reduced
    for (int d = 0; d < r; d++) {
        int64_t size = x->dims[d];
        int role = (red >> d) & 1;
        if (role)
            L->count *= size;
        if (size == 1)
            continue;
        int64_t *dims = role ? L->rdims : L->kdims, *st = role ? L->rstride : L->kstride;
        int *m = role ? &L->nr : &L->nk;
        if (last == role && *m > 0 && st[*m - 1] == stride[d] * size) {
            dims[*m - 1] *= size;
            st[*m - 1] = stride[d];
        } else {
            dims[*m] = size;
            st[*m] = stride[d];
            (*m)++;
        }
        last = role;
    }
    if (L->nr == 0) {
        L->rdims[0] = 1;
        L->rstride[0] = 0;
        L->nr = 1;
    }
    L->line = L->rdims[L->nr - 1];
    L->lstride = L->rstride[L->nr - 1];
    L->lines = eg_dims_prod(L->rdims, 0, L->nr - 1);
    for (int i = 0; i < L->nr; i++)
        if (L->rdims[i] == 0)
            L->line = L->lines = 0;
}

/* Input offset of output element o. */
static inline int64_t red_base(const red_loops *L, int64_t o) {
    int64_t off = 0;
    for (int i = L->nk - 1; i >= 0 && o > 0; i--) {
        off += (o % L->kdims[i]) * L->kstride[i];
        o /= L->kdims[i];
    }
    return off;
}

/* Offset of reduced line l (below the innermost reduced dim). */
static inline int64_t red_line(const red_loops *L, int64_t l) {
    int64_t off = 0;
    for (int i = L->nr - 2; i >= 0 && l > 0; i--) {
        off += (l % L->rdims[i]) * L->rstride[i];
        l /= L->rdims[i];
    }
    return off;
}

static inline double f_init(red_kind k) {
    return k == R_MAX ? -INFINITY : k == R_MIN ? INFINITY : k == R_PROD ? 1.0 : 0.0;
}

#define FLOAT_LINE(T)                                                                              \
    static double line_##T(red_kind k, const T *x, int64_t n, int64_t st, double acc, double m) {  \
        switch (k) {                                                                               \
        case R_MAX:                                                                                \
            for (int64_t i = 0; i < n; i++) {                                                      \
                double v = x[i * st];                                                              \
                acc = v != v || v > acc ? v : acc;                                                 \
            }                                                                                      \
            break;                                                                                 \
        case R_MIN:                                                                                \
            for (int64_t i = 0; i < n; i++) {                                                      \
                double v = x[i * st];                                                              \
                acc = v != v || v < acc ? v : acc;                                                 \
            }                                                                                      \
            break;                                                                                 \
        case R_PROD:                                                                               \
            for (int64_t i = 0; i < n; i++)                                                        \
                acc *= x[i * st];                                                                  \
            break;                                                                                 \
        case R_SUMSQ:                                                                              \
        case R_L2:                                                                                 \
            for (int64_t i = 0; i < n; i++) {                                                      \
                double v = x[i * st];                                                              \
                acc += v * v;                                                                      \
            }                                                                                      \
            break;                                                                                 \
        case R_LSE:                                                                                \
            for (int64_t i = 0; i < n; i++)                                                        \
                acc += exp(x[i * st] - m);                                                         \
            break;                                                                                 \
        default:                                                                                   \
            for (int64_t i = 0; i < n; i++)                                                        \
                acc += x[i * st];                                                                  \
            break;                                                                                 \
        }                                                                                          \
        return acc;                                                                                \
    }                                                                                              \
    /* The reduction of kind k over output element o's positions. */                               \
    static double reduce_one_##T(red_kind k, const red_loops *L, const T *x, int64_t o) {          \
        const T *base = x + red_base(L, o);                                                        \
        double m = 0;                                                                              \
        if (k == R_LSE) {                                                                          \
            double mx = -INFINITY;                                                                 \
            for (int64_t l = 0; l < L->lines; l++)                                                 \
                mx = line_##T(R_MAX, base + red_line(L, l), L->line, L->lstride, mx, 0);           \
            /* A max of +-inf or NaN would turn x - m into NaN; the result is m anyway. */         \
            m = isfinite(mx) ? mx : 0;                                                             \
        }                                                                                          \
        double acc = f_init(k);                                                                    \
        for (int64_t l = 0; l < L->lines; l++)                                                     \
            acc = line_##T(k, base + red_line(L, l), L->line, L->lstride, acc, m);                 \
        switch (k) {                                                                               \
        case R_MEAN:                                                                               \
            return acc / (double)L->count;                                                         \
        case R_L2:                                                                                 \
            return sqrt(acc);                                                                      \
        case R_LSE:                                                                                \
            return m + log(acc);                                                                   \
        default:                                                                                   \
            return acc;                                                                            \
        }                                                                                          \
    }
FLOAT_LINE(float)
FLOAT_LINE(double)

#define WADD(a, b) ((int64_t)((uint64_t)(a) + (uint64_t)(b)))
#define WMUL(a, b) ((int64_t)((uint64_t)(a) * (uint64_t)(b)))

#define INT_LINE(T)                                                                                \
    static int64_t reduce_one_##T(red_kind k, const red_loops *L, const T *x, int64_t o) {         \
        const T *base = x + red_base(L, o);                                                        \
        int64_t acc = k == R_MAX ? INT64_MIN : k == R_MIN ? INT64_MAX : k == R_PROD ? 1 : 0;       \
        for (int64_t l = 0; l < L->lines; l++) {                                                   \
            const T *p = base + red_line(L, l);                                                    \
            for (int64_t i = 0; i < L->line; i++) {                                                \
                int64_t v = p[i * L->lstride];                                                     \
                switch (k) {                                                                       \
                case R_MAX:                                                                        \
                    acc = v > acc ? v : acc;                                                       \
                    break;                                                                         \
                case R_MIN:                                                                        \
                    acc = v < acc ? v : acc;                                                       \
                    break;                                                                         \
                case R_PROD:                                                                       \
                    acc = WMUL(acc, v);                                                            \
                    break;                                                                         \
                case R_SUMSQ:                                                                      \
                    acc = WADD(acc, WMUL(v, v));                                                   \
                    break;                                                                         \
                default:                                                                           \
                    acc = WADD(acc, v);                                                            \
                    break;                                                                         \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        if (k == R_MEAN)                                                                           \
            acc = L->count ? acc / L->count : 0;                                                   \
        return acc;                                                                                \
    }
INT_LINE(int32_t)
INT_LINE(int64_t)

static int run_reduce(const eg_node *n, const eg_tensor *in, eg_tensor *out, const eg_run_ctx *ctx,
                      inferd_error *err) {
    unsigned red;
    int noop;
    int rc = reduce_mask(n, in, &red, &noop, err);
    if (rc)
        return rc;
    if (noop) {
        int64_t nb = eg_tensor_nbytes(&in[0]);
        if (out[0].data != in[0].data && nb > 0)
            memcpy(out[0].data, in[0].data, (size_t)nb);
        return 0;
    }
    red_kind k = red_kind_of(n->op);
    red_loops L;
    red_loops_init(&L, &in[0], red);
    int64_t no = eg_numel(&out[0]);
    int nt = eg_par_threads(ctx, eg_numel(&in[0]) * (k == R_LSE ? 8 : 1));
    switch (in[0].dtype) {
    case INFERD_DTYPE_F32: {
        const float *x = in[0].data;
        float *y = out[0].data;
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
        for (int64_t o = 0; o < no; o++)
            y[o] = (float)reduce_one_float(k, &L, x, o);
        break;
    }
    case INFERD_DTYPE_F64: {
        const double *x = in[0].data;
        double *y = out[0].data;
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
        for (int64_t o = 0; o < no; o++)
            y[o] = reduce_one_double(k, &L, x, o);
        break;
    }
    case INFERD_DTYPE_I32: {
        const int32_t *x = in[0].data;
        int32_t *y = out[0].data;
        for (int64_t o = 0; o < no; o++)
            y[o] = (int32_t)reduce_one_int32_t(k, &L, x, o);
        break;
    }
    default: {
        const int64_t *x = in[0].data;
        int64_t *y = out[0].data;
        for (int64_t o = 0; o < no; o++)
            y[o] = reduce_one_int64_t(k, &L, x, o);
        break;
    }
    }
    return 0;
}

#define REDUCE(name) EG_OP_IMPL(name, 1, 2, 1, 1, infer_reduce, run_reduce, NULL, 0);
REDUCE(ReduceSum)
REDUCE(ReduceMean)
REDUCE(ReduceMax)
REDUCE(ReduceMin)
REDUCE(ReduceProd)
REDUCE(ReduceSumSquare)
REDUCE(ReduceL2)
REDUCE(ReduceLogSumExp)

/* ---- ArgMax / ArgMin ---- */

typedef struct arg_params {
    int axis, keep, last;
} arg_params;

static int arg_params_get(const eg_node *n, const eg_tensor *in, arg_params *p, inferd_error *err) {
    int64_t a = 0, keep = 1, last = 0;
    int rc = eg_attr_i64(n, "axis", 0, INT64_MIN, INT64_MAX, &a, err);
    if (!rc)
        rc = eg_attr_i64(n, "keepdims", 1, 0, 1, &keep, err);
    if (!rc && n->opset >= 12)
        rc = eg_attr_i64(n, "select_last_index", 0, 0, 1, &last, err);
    if (!rc)
        rc = eg_normalize_axis(n, a, in[0].rank, &p->axis, err);
    p->keep = (int)keep;
    p->last = (int)last;
    return rc;
}

static int infer_arg(const eg_node *n, const eg_tensor *in, eg_tensor *out, inferd_error *err) {
    arg_params p;
    int rc = eg_check_dtype(n, in, 0, EG_DT_NUM, err);
    if (!rc)
        rc = arg_params_get(n, in, &p, err);
    if (rc)
        return rc;
    if (in[0].dims[p.axis] == 0)
        return eg_node_error(err, INFERD_EINVAL, n, "axis %d is empty", p.axis);
    eg_set_out(&out[0], INFERD_DTYPE_I64, 0, NULL);
    for (int d = 0; d < in[0].rank; d++) {
        if (d != p.axis)
            out[0].dims[out[0].rank++] = in[0].dims[d];
        else if (p.keep)
            out[0].dims[out[0].rank++] = 1;
    }
    return 0;
}

/* Index of the max (or min) along the axis; ties go to the first occurrence, or the last with
 * select_last_index. */
#define ARG_LOOP(T)                                                                                \
    do {                                                                                           \
        const T *x = in[0].data;                                                                   \
        for (int64_t o = 0; o < outer; o++)                                                        \
            for (int64_t i = 0; i < inner; i++) {                                                  \
                const T *p = x + o * dim * inner + i;                                              \
                int64_t best = 0;                                                                  \
                for (int64_t j = 1; j < dim; j++) {                                                \
                    T v = p[j * inner], b = p[best * inner];                                       \
                    int better =                                                                   \
                        is_max ? (v > b || (last && v == b)) : (v < b || (last && v == b));        \
                    if (better)                                                                    \
                        best = j;                                                                  \
                }                                                                                  \
                y[o * inner + i] = best;                                                           \
            }                                                                                      \
    } while (0)

static int run_arg(const eg_node *n, const eg_tensor *in, eg_tensor *out, const eg_run_ctx *ctx,
                   inferd_error *err) {
    (void)ctx;
    arg_params p;
    int rc = arg_params_get(n, in, &p, err);
    if (rc)
        return rc;
    int is_max = n->op == EG_OP_ArgMax, last = p.last;
    int64_t outer = eg_dims_prod(in[0].dims, 0, p.axis), dim = in[0].dims[p.axis];
    int64_t inner = eg_dims_prod(in[0].dims, p.axis + 1, in[0].rank);
    int64_t *y = out[0].data;
    switch (in[0].dtype) {
    case INFERD_DTYPE_F32:
        ARG_LOOP(float);
        break;
    case INFERD_DTYPE_F64:
        ARG_LOOP(double);
        break;
    case INFERD_DTYPE_I32:
        ARG_LOOP(int32_t);
        break;
    default:
        ARG_LOOP(int64_t);
        break;
    }
    return 0;
}

EG_OP_IMPL(ArgMax, 1, 1, 1, 1, infer_arg, run_arg, NULL, 0);
EG_OP_IMPL(ArgMin, 1, 1, 1, 1, infer_arg, run_arg, NULL, 0);

/* ---- Softmax / LogSoftmax ---- */

/* The softmax as (outer, dim, inner): before opset 13 the input is coerced to 2-D at axis
 * (default 1) and normalised over everything from axis on; from 13 over the one axis
 * (default -1). */
static int softmax_shape(const eg_node *n, const eg_tensor *x, int64_t *outer, int64_t *dim,
                         int64_t *inner, inferd_error *err) {
    int axis, old = n->opset < 13;
    int64_t a;
    int rc = eg_attr_i64(n, "axis", old ? 1 : -1, INT64_MIN, INT64_MAX, &a, err);
    if (!rc)
        rc = eg_normalize_axis(n, a, x->rank, &axis, err);
    if (rc)
        return rc;
    *outer = eg_dims_prod(x->dims, 0, axis);
    if (old) {
        *dim = eg_dims_prod(x->dims, axis, x->rank);
        *inner = 1;
    } else {
        *dim = x->dims[axis];
        *inner = eg_dims_prod(x->dims, axis + 1, x->rank);
    }
    return 0;
}

static int infer_softmax(const eg_node *n, const eg_tensor *in, eg_tensor *out, inferd_error *err) {
    int64_t o, d, i;
    int rc = eg_check_dtype(n, in, 0, EG_DT_FLOAT, err);
    if (!rc)
        rc = softmax_shape(n, &in[0], &o, &d, &i, err);
    if (rc)
        return rc;
    eg_set_out_like(&out[0], &in[0]);
    return 0;
}

/* One softmax line of n elements at stride st; reads all of x before writing y, so y may
 * alias x. */
#define SOFTMAX_LINE(T, EXP, LOG)                                                                  \
    static void softmax_line_##T(const T *x, T *y, int64_t n, int64_t st, int log_out) {           \
        T mx = -INFINITY;                                                                          \
        for (int64_t j = 0; j < n; j++)                                                            \
            mx = x[j * st] > mx ? x[j * st] : mx;                                                  \
        if (!isfinite(mx))                                                                         \
            mx = mx != mx ? mx : 0;                                                                \
        double sum = 0;                                                                            \
        if (log_out) {                                                                             \
            for (int64_t j = 0; j < n; j++)                                                        \
                sum += EXP(x[j * st] - mx);                                                        \
            T ls = (T)log(sum);                                                                    \
            for (int64_t j = 0; j < n; j++)                                                        \
                y[j * st] = x[j * st] - mx - ls;                                                   \
        } else {                                                                                   \
            for (int64_t j = 0; j < n; j++) {                                                      \
                T e = EXP(x[j * st] - mx);                                                         \
                y[j * st] = e;                                                                     \
                sum += e;                                                                          \
            }                                                                                      \
            T inv = (T)(1.0 / sum);                                                                \
            for (int64_t j = 0; j < n; j++)                                                        \
                y[j * st] *= inv;                                                                  \
        }                                                                                          \
    }
SOFTMAX_LINE(float, expf, logf)
SOFTMAX_LINE(double, exp, log)

static int run_softmax(const eg_node *n, const eg_tensor *in, eg_tensor *out, const eg_run_ctx *ctx,
                       inferd_error *err) {
    int64_t outer, dim, inner;
    int rc = softmax_shape(n, &in[0], &outer, &dim, &inner, err);
    if (rc)
        return rc;
    int log_out = n->op == EG_OP_LogSoftmax;
    int64_t lines = outer * inner;
    int nt = eg_par_threads(ctx, eg_numel(&in[0]) * 8);
    if (in[0].dtype == INFERD_DTYPE_F32) {
        const float *x = in[0].data;
        float *y = out[0].data;
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
        for (int64_t l = 0; l < lines; l++) {
            int64_t at = (l / inner) * dim * inner + l % inner;
            softmax_line_float(x + at, y + at, dim, inner, log_out);
        }
    } else {
        const double *x = in[0].data;
        double *y = out[0].data;
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
        for (int64_t l = 0; l < lines; l++) {
            int64_t at = (l / inner) * dim * inner + l % inner;
            softmax_line_double(x + at, y + at, dim, inner, log_out);
        }
    }
    return 0;
}

EG_OP_IMPL(Softmax, 1, 1, 1, 1, infer_softmax, run_softmax, NULL, EG_OPF_INPLACE);
EG_OP_IMPL(LogSoftmax, 1, 1, 1, 1, infer_softmax, run_softmax, NULL, EG_OPF_INPLACE);
