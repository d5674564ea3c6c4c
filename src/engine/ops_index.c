/* Indexing ops: Gather, GatherElements, OneHot, Trilu, CumSum and TopK.
 *
 * Indices often arrive with the request (token ids into an embedding), so run() checks every
 * index and returns EINVAL naming the offending value instead of reading out of bounds. */
#include <inttypes.h>

#include "engine/ops_impl.h"

/* ---- Gather ---- */

static int gather_axis(const eg_node *n, int rank, int *axis, inferd_error *err) {
    int64_t a;
    int rc = eg_attr_i64(n, "axis", 0, INT64_MIN, INT64_MAX, &a, err);
    if (!rc)
        rc = eg_normalize_axis(n, a, rank, axis, err);
    return rc;
}

/* Checks every index against [-dim, dim). */
static int check_indices(const eg_node *n, const eg_tensor *idx, int64_t dim, inferd_error *err) {
    int64_t c = eg_numel(idx);
    for (int64_t k = 0; k < c; k++) {
        int64_t v = eg_tensor_get_i64(idx, k);
        if (v < -dim || v >= dim)
            return eg_node_error(err, INFERD_EINVAL, n,
                                 "index %" PRId64 " is out of range for a dim of %" PRId64, v, dim);
    }
    return 0;
}

static int infer_gather(const eg_node *n, const eg_tensor *in, eg_tensor *out, inferd_error *err) {
    int r = in[0].rank, q = in[1].rank, axis;
    int rc = eg_check_dtype(n, in, 1, EG_DT_INDEX, err);
    if (!rc)
        rc = eg_check_rank(n, in, 0, 1, EG_MAX_RANK, err);
    if (!rc)
        rc = gather_axis(n, r, &axis, err);
    if (rc)
        return rc;
    if (r - 1 + q > EG_MAX_RANK)
        return eg_node_error(err, INFERD_EUNSUPPORTED, n, "output rank %d is over %d", r - 1 + q,
                             EG_MAX_RANK);
    if (in[1].data && (rc = check_indices(n, &in[1], in[0].dims[axis], err)))
        return rc;
    int64_t dims[EG_MAX_RANK];
    int k = 0;
    for (int i = 0; i < axis; i++)
        dims[k++] = in[0].dims[i];
    for (int i = 0; i < q; i++)
        dims[k++] = in[1].dims[i];
    for (int i = axis + 1; i < r; i++)
        dims[k++] = in[0].dims[i];
    eg_set_out(&out[0], in[0].dtype, k, dims);
    return 0;
}

static int run_gather(const eg_node *n, const eg_tensor *in, eg_tensor *out, const eg_run_ctx *ctx,
                      inferd_error *err) {
    int r = in[0].rank, axis;
    int rc = gather_axis(n, r, &axis, err);
    if (rc)
        return rc;
    int64_t dim = in[0].dims[axis];
    rc = check_indices(n, &in[1], dim, err);
    if (rc)
        return rc;
    size_t es = inferd_dtype_size(in[0].dtype);
    int64_t outer = eg_dims_prod(in[0].dims, 0, axis);
    int64_t inner = eg_dims_prod(in[0].dims, axis + 1, r);
    int64_t ni = eg_numel(&in[1]);
    size_t row = (size_t)inner * es;
    if (eg_numel(&out[0]) == 0)
        return 0;
    const char *src = in[0].data;
    char *dst = out[0].data;
    int is64 = in[1].dtype == INFERD_DTYPE_I64;
    const int64_t *i64 = in[1].data;
    const int32_t *i32 = in[1].data;
    int nt = eg_par_threads(ctx, outer * ni * inner);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static) collapse(2)
    for (int64_t o = 0; o < outer; o++) {
        for (int64_t k = 0; k < ni; k++) {
            int64_t v = is64 ? i64[k] : i32[k];
            if (v < 0)
                v += dim;
            memcpy(dst + (size_t)(o * ni + k) * row, src + (size_t)(o * dim + v) * row, row);
        }
    }
    return 0;
}

EG_OP_IMPL(Gather, 2, 2, 1, 1, infer_gather, run_gather, NULL, 0);

/* ---- GatherElements ---- */

static int infer_gather_elements(const eg_node *n, const eg_tensor *in, eg_tensor *out,
                                 inferd_error *err) {
    int r = in[0].rank, axis;
    int rc = eg_check_dtype(n, in, 1, EG_DT_INDEX, err);
    if (!rc)
        rc = eg_check_rank(n, in, 0, 1, EG_MAX_RANK, err);
    if (!rc)
        rc = eg_check_rank(n, in, 1, r, r, err);
    if (!rc)
        rc = gather_axis(n, r, &axis, err);
    if (rc)
        return rc;
    // Every other dim of indices must fit inside data, so positions stay in bounds.
    for (int d = 0; d < r; d++)
        if (d != axis && in[1].dims[d] > in[0].dims[d])
            return eg_node_error(err, INFERD_EINVAL, n,
                                 "indices dim %d is %" PRId64 " but data's is %" PRId64, d,
                                 in[1].dims[d], in[0].dims[d]);
    if (in[1].data && (rc = check_indices(n, &in[1], in[0].dims[axis], err)))
        return rc;
    eg_set_out(&out[0], in[0].dtype, r, in[1].dims);
    return 0;
}

static int run_gather_elements(const eg_node *n, const eg_tensor *in, eg_tensor *out,
                               const eg_run_ctx *ctx, inferd_error *err) {
    (void)ctx;
    int r = in[0].rank, axis;
    int rc = gather_axis(n, r, &axis, err);
    if (rc)
        return rc;
    int64_t dim = in[0].dims[axis];
    rc = check_indices(n, &in[1], dim, err);
    if (rc)
        return rc;
    size_t es = inferd_dtype_size(in[0].dtype);
    int64_t stride[EG_MAX_RANK], idx[EG_MAX_RANK] = {0};
    stride[r - 1] = 1;
    for (int d = r - 2; d >= 0; d--)
        stride[d] = stride[d + 1] * in[0].dims[d + 1];
    int64_t c = eg_numel(&in[1]);
    const char *src = in[0].data;
    char *dst = out[0].data;
    for (int64_t k = 0; k < c; k++) {
        int64_t v = eg_tensor_get_i64(&in[1], k), off = 0;
        if (v < 0)
            v += dim;
        for (int d = 0; d < r; d++)
            off += (d == axis ? v : idx[d]) * stride[d];
        memcpy(dst + (size_t)k * es, src + (size_t)off * es, es);
        for (int d = r - 1; d >= 0; d--) {
            if (++idx[d] < in[1].dims[d])
                break;
            idx[d] = 0;
        }
    }
    return 0;
}

EG_OP_IMPL(GatherElements, 2, 2, 1, 1, infer_gather_elements, run_gather_elements, NULL, 0);

/* ---- OneHot ---- */

static int onehot_axis(const eg_node *n, int rank, int *axis, inferd_error *err) {
    int64_t a;
    int rc = eg_attr_i64(n, "axis", -1, INT64_MIN, INT64_MAX, &a, err);
    if (!rc)
        rc = eg_normalize_axis(n, a, rank + 1, axis, err);
    return rc;
}

#define ONEHOT_IDX_DT                                                                              \
    (EG_DT_NUM | EG_DT(INFERD_DTYPE_I8) | EG_DT(INFERD_DTYPE_U8) | EG_DT(INFERD_DTYPE_I16) |       \
     EG_DT(INFERD_DTYPE_U16) | EG_DT(INFERD_DTYPE_U32) | EG_DT(INFERD_DTYPE_U64))

static int infer_onehot(const eg_node *n, const eg_tensor *in, eg_tensor *out, inferd_error *err) {
    int r = in[0].rank, axis;
    int64_t depth;
    int rc = eg_check_dtype(n, in, 0, ONEHOT_IDX_DT, err);
    if (!rc)
        rc = eg_scalar_i64(n, in, 1, "depth", &depth, err);
    if (!rc && eg_numel(&in[2]) != 2)
        rc = eg_node_error(err, INFERD_EINVAL, n, "values must hold two elements");
    if (!rc && r + 1 > EG_MAX_RANK)
        rc = eg_node_error(err, INFERD_EUNSUPPORTED, n, "output rank %d is over %d", r + 1,
                           EG_MAX_RANK);
    if (!rc)
        rc = onehot_axis(n, r, &axis, err);
    if (rc)
        return rc;
    if (depth < 1 || depth > EG_MAX_NUMEL)
        return eg_node_error(err, INFERD_EINVAL, n, "depth is %" PRId64, depth);
    int64_t dims[EG_MAX_RANK];
    for (int i = 0, j = 0; i <= r; i++)
        dims[i] = i == axis ? depth : in[0].dims[j++];
    eg_set_out(&out[0], in[2].dtype, r + 1, dims);
    return 0;
}

static int run_onehot(const eg_node *n, const eg_tensor *in, eg_tensor *out, const eg_run_ctx *ctx,
                      inferd_error *err) {
    (void)ctx;
    int r = in[0].rank, axis;
    int rc = onehot_axis(n, r, &axis, err);
    if (rc)
        return rc;
    int64_t depth = out[0].dims[axis];
    size_t es = inferd_dtype_size(out[0].dtype);
    const char *off = in[2].data, *on = off + es;
    char *dst = out[0].data;
    int64_t no = eg_numel(&out[0]);
    for (int64_t k = 0; k < no; k++)
        memcpy(dst + (size_t)k * es, off, es);
    // Index k of the input = (outer o, inner i) around the new axis.
    int64_t inner = eg_dims_prod(in[0].dims, axis, r), ni = eg_numel(&in[0]);
    int is_float = eg_dtype_in(in[0].dtype, EG_DT_FLOAT);
    for (int64_t k = 0; k < ni; k++) {
        int64_t v;
        if (is_float) {
            double d = eg_tensor_get_f64(&in[0], k);
            if (!(d > -(double)EG_MAX_NUMEL - 1 && d < (double)EG_MAX_NUMEL + 1))
                continue;
            v = (int64_t)d;
        } else {
            v = eg_tensor_get_i64(&in[0], k);
        }
        if (v < 0)
            v += depth;
        // Indices outside [-depth, depth) leave their row all off, as the spec says.
        if (v < 0 || v >= depth)
            continue;
        int64_t o = k / inner, i = k % inner;
        memcpy(dst + (size_t)((o * depth + v) * inner + i) * es, on, es);
    }
    return 0;
}

EG_OP_IMPL(OneHot, 3, 3, 1, 1, infer_onehot, run_onehot, NULL, 0);

/* ---- Trilu ---- */

static int trilu_k(const eg_node *n, const eg_tensor *in, int64_t *k, inferd_error *err) {
    *k = 0;
    if (!eg_in_present(n, 1))
        return 0;
    if (in[1].dtype != INFERD_DTYPE_I64 || eg_numel(&in[1]) != 1)
        return eg_node_error(err, INFERD_EINVAL, n, "k must be a one-element int64 tensor");
    if (in[1].data)
        *k = *(const int64_t *)in[1].data;
    return 0;
}

static int infer_trilu(const eg_node *n, const eg_tensor *in, eg_tensor *out, inferd_error *err) {
    int64_t k, upper;
    int rc = eg_check_rank(n, in, 0, 2, EG_MAX_RANK, err);
    if (!rc)
        rc = trilu_k(n, in, &k, err);
    if (!rc)
        rc = eg_attr_i64(n, "upper", 1, 0, 1, &upper, err);
    if (rc)
        return rc;
    eg_set_out_like(&out[0], &in[0]);
    return 0;
}

static int run_trilu(const eg_node *n, const eg_tensor *in, eg_tensor *out, const eg_run_ctx *ctx,
                     inferd_error *err) {
    (void)ctx;
    int64_t k;
    int rc = trilu_k(n, in, &k, err);
    if (rc)
        return rc;
    int upper = eg_node_attr_int(n, "upper", 1) != 0;
    int r = in[0].rank;
    int64_t rows = in[0].dims[r - 2], cols = in[0].dims[r - 1];
    int64_t mats = eg_dims_prod(in[0].dims, 0, r - 2);
    // Clamp k so j - i - k never overflows; beyond the matrix it changes nothing.
    if (k > EG_MAX_NUMEL)
        k = EG_MAX_NUMEL + 1;
    if (k < -EG_MAX_NUMEL)
        k = -EG_MAX_NUMEL - 1;
    size_t es = inferd_dtype_size(in[0].dtype);
    const char *src = in[0].data;
    char *dst = out[0].data;
    for (int64_t m = 0; m < mats; m++)
        for (int64_t i = 0; i < rows; i++) {
            size_t base = (size_t)((m * rows + i) * cols) * es;
            for (int64_t j = 0; j < cols; j++) {
                int keep = upper ? j - i >= k : j - i <= k;
                if (keep)
                    memcpy(dst + base + (size_t)j * es, src + base + (size_t)j * es, es);
                else
                    memset(dst + base + (size_t)j * es, 0, es);
            }
        }
    return 0;
}

EG_OP_IMPL(Trilu, 1, 2, 1, 1, infer_trilu, run_trilu, NULL, EG_OPF_INPLACE);

/* ---- CumSum ---- */

static int cumsum_axis(const eg_node *n, const eg_tensor *in, int *axis, inferd_error *err) {
    if (!eg_dtype_in(in[1].dtype, EG_DT_INDEX) || eg_numel(&in[1]) != 1)
        return eg_node_error(err, INFERD_EINVAL, n, "axis must be a one-element integer tensor");
    *axis = 0;
    if (!in[1].data)
        return 1;
    return eg_normalize_axis(n, eg_tensor_get_i64(&in[1], 0), in[0].rank, axis, err);
}

static int infer_cumsum(const eg_node *n, const eg_tensor *in, eg_tensor *out, inferd_error *err) {
    int axis;
    int rc = eg_check_dtype(n, in, 0, EG_DT_NUM, err);
    if (!rc)
        rc = eg_check_rank(n, in, 0, 1, EG_MAX_RANK, err);
    if (!rc)
        rc = cumsum_axis(n, in, &axis, err);
    if (rc < 0)
        return rc;
    eg_set_out_like(&out[0], &in[0]);
    return 0;
}

#define CUMSUM(T, ADD)                                                                             \
    do {                                                                                           \
        const T *x = in[0].data;                                                                   \
        T *y = out[0].data;                                                                        \
        for (int64_t o = 0; o < outer; o++)                                                        \
            for (int64_t i = 0; i < inner; i++) {                                                  \
                T acc = 0;                                                                         \
                for (int64_t s = 0; s < dim; s++) {                                                \
                    int64_t j = reverse ? dim - 1 - s : s;                                         \
                    int64_t at = (o * dim + j) * inner + i;                                        \
                    T v = x[at];                                                                   \
                    if (exclusive) {                                                               \
                        y[at] = acc;                                                               \
                        acc = ADD(acc, v);                                                         \
                    } else {                                                                       \
                        acc = ADD(acc, v);                                                         \
                        y[at] = acc;                                                               \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
    } while (0)

#define PLUS(a, b) ((a) + (b))
#define WRAP_ADD32(a, b) ((int32_t)((uint32_t)(a) + (uint32_t)(b)))
#define WRAP_ADD64(a, b) ((int64_t)((uint64_t)(a) + (uint64_t)(b)))

static int run_cumsum(const eg_node *n, const eg_tensor *in, eg_tensor *out, const eg_run_ctx *ctx,
                      inferd_error *err) {
    (void)ctx;
    int axis;
    int rc = cumsum_axis(n, in, &axis, err);
    if (rc)
        return rc < 0 ? rc : eg_node_error(err, INFERD_EINTERNAL, n, "axis has no data");
    int exclusive = eg_node_attr_int(n, "exclusive", 0) != 0;
    int reverse = eg_node_attr_int(n, "reverse", 0) != 0;
    int r = in[0].rank;
    int64_t outer = eg_dims_prod(in[0].dims, 0, axis), dim = in[0].dims[axis];
    int64_t inner = eg_dims_prod(in[0].dims, axis + 1, r);
    // Element-at-a-time so out may alias in (each element is read before it is written).
    switch (in[0].dtype) {
    case INFERD_DTYPE_F32:
        CUMSUM(float, PLUS);
        break;
    case INFERD_DTYPE_F64:
        CUMSUM(double, PLUS);
        break;
    case INFERD_DTYPE_I32:
        CUMSUM(int32_t, WRAP_ADD32);
        break;
    default:
        CUMSUM(int64_t, WRAP_ADD64);
        break;
    }
    return 0;
}

EG_OP_IMPL(CumSum, 2, 2, 1, 1, infer_cumsum, run_cumsum, NULL, 0);

/* ---- TopK ---- */

typedef struct topk_params {
    int axis, largest;
    int64_t k;
} topk_params;

static int topk_params_get(const eg_node *n, const eg_tensor *in, topk_params *p,
                           inferd_error *err) {
    int64_t a, largest, sorted;
    int rc = eg_attr_i64(n, "axis", -1, INT64_MIN, INT64_MAX, &a, err);
    if (!rc)
        rc = eg_attr_i64(n, "largest", 1, 0, 1, &largest, err);
    if (!rc)
        rc = eg_attr_i64(n, "sorted", 1, 0, 1, &sorted, err);
    if (!rc)
        rc = eg_normalize_axis(n, a, in[0].rank, &p->axis, err);
    if (rc)
        return rc;
    p->largest = (int)largest;
    if (n->opset < 10) {
        rc = eg_attr_i64(n, "k", 0, 0, INT64_MAX, &p->k, err);
        if (!eg_node_attr(n, "k"))
            rc = eg_node_error(err, INFERD_EINVAL, n, "attribute k is required");
    } else {
        if (!eg_in_present(n, 1))
            return eg_node_error(err, INFERD_EINVAL, n, "input K is required");
        if (in[1].dtype != INFERD_DTYPE_I64)
            return eg_node_error(err, INFERD_EINVAL, n, "K must be int64");
        rc = eg_scalar_i64(n, in, 1, "K", &p->k, err);
    }
    if (rc)
        return rc;
    if (p->k < 0 || p->k > in[0].dims[p->axis])
        return eg_node_error(err, INFERD_EINVAL, n, "K is %" PRId64 " for an axis of %" PRId64,
                             p->k, in[0].dims[p->axis]);
    return 0;
}

static int infer_topk(const eg_node *n, const eg_tensor *in, eg_tensor *out, inferd_error *err) {
    topk_params p;
    int rc = eg_check_dtype(n, in, 0, EG_DT_NUM, err);
    if (!rc)
        rc = eg_check_rank(n, in, 0, 1, EG_MAX_RANK, err);
    if (!rc)
        rc = topk_params_get(n, in, &p, err);
    if (rc)
        return rc;
    eg_set_out_like(&out[0], &in[0]);
    out[0].dims[p.axis] = p.k;
    if (eg_out_present(n, 1)) {
        eg_set_out_like(&out[1], &out[0]);
        out[1].dtype = INFERD_DTYPE_I64;
    }
    return 0;
}

static size_t scratch_topk(const eg_node *n, const eg_tensor *in, const eg_tensor *out,
                           int threads) {
    (void)out;
    (void)threads;
    int64_t a = eg_node_attr_int(n, "axis", -1);
    if (a < 0)
        a += in[0].rank;
    if (a < 0 || a >= in[0].rank)
        return 0;
    return (size_t)in[0].dims[a] * 2 * sizeof(int64_t);
}

/* Orders positions (within one slice) by value: the wanted end first, ties by lower position,
 * NaN above every number. */
typedef struct topk_slice {
    const void *base;
    int64_t stride;
    inferd_dtype dt;
    int largest;
} topk_slice;

static inline int topk_before(const topk_slice *s, int64_t a, int64_t b) {
    int cmp;
    switch (s->dt) {
    case INFERD_DTYPE_F32:
    case INFERD_DTYPE_F64: {
        double x, y;
        if (s->dt == INFERD_DTYPE_F32) {
            x = ((const float *)s->base)[a * s->stride];
            y = ((const float *)s->base)[b * s->stride];
        } else {
            x = ((const double *)s->base)[a * s->stride];
            y = ((const double *)s->base)[b * s->stride];
        }
        int nx = x != x, ny = y != y;
        cmp = nx || ny ? nx - ny : (x > y) - (x < y);
        break;
    }
    case INFERD_DTYPE_I32: {
        int32_t x = ((const int32_t *)s->base)[a * s->stride];
        int32_t y = ((const int32_t *)s->base)[b * s->stride];
        cmp = (x > y) - (x < y);
        break;
    }
    default: {
        int64_t x = ((const int64_t *)s->base)[a * s->stride];
        int64_t y = ((const int64_t *)s->base)[b * s->stride];
        cmp = (x > y) - (x < y);
        break;
    }
    }
    if (cmp == 0)
        return a < b;
    return s->largest ? cmp > 0 : cmp < 0;
}

/* Bottom-up merge sort of idx[0..n) using tmp; stable and O(n log n) whatever the data. */
static void topk_sort(const topk_slice *s, int64_t *idx, int64_t *tmp, int64_t n) {
    for (int64_t w = 1; w < n; w *= 2) {
        for (int64_t lo = 0; lo < n; lo += 2 * w) {
            int64_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            int64_t i = lo, j = mid, o = lo;
            while (i < mid && j < hi)
                tmp[o++] = topk_before(s, idx[j], idx[i]) ? idx[j++] : idx[i++];
            while (i < mid)
                tmp[o++] = idx[i++];
            while (j < hi)
                tmp[o++] = idx[j++];
        }
        memcpy(idx, tmp, sizeof(int64_t) * (size_t)n);
    }
}

static int run_topk(const eg_node *n, const eg_tensor *in, eg_tensor *out, const eg_run_ctx *ctx,
                    inferd_error *err) {
    topk_params p;
    int rc = topk_params_get(n, in, &p, err);
    if (rc)
        return rc;
    int r = in[0].rank;
    int64_t dim = in[0].dims[p.axis], outer = eg_dims_prod(in[0].dims, 0, p.axis);
    int64_t inner = eg_dims_prod(in[0].dims, p.axis + 1, r);
    int64_t *idx = eg_scratch(n, ctx, (size_t)dim * 2 * sizeof(int64_t), err);
    if (!idx)
        return err ? err->code : INFERD_EINTERNAL;
    int64_t *tmp = idx + dim;
    size_t es = inferd_dtype_size(in[0].dtype);
    int want_idx = eg_out_present(n, 1) && out[1].data;
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++) {
            topk_slice s = {(const char *)in[0].data + (size_t)(o * dim * inner + i) * es, inner,
                            in[0].dtype, p.largest};
            for (int64_t j = 0; j < dim; j++)
                idx[j] = j;
            topk_sort(&s, idx, tmp, dim);
            for (int64_t j = 0; j < p.k; j++) {
                int64_t at = (o * p.k + j) * inner + i;
                memcpy((char *)out[0].data + (size_t)at * es,
                       (const char *)s.base + (size_t)(idx[j] * inner) * es, es);
                if (want_idx)
                    ((int64_t *)out[1].data)[at] = idx[j];
            }
        }
    return 0;
}

EG_OP_IMPL(TopK, 1, 2, 1, 2, infer_topk, run_topk, scratch_topk, 0);
