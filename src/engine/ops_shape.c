/* Shape and data-movement ops: the views (Reshape, Flatten, Squeeze, Unsqueeze, Identity,
 * Dropout), Shape, Size, Constant, ConstantOfShape, Range, Expand, Tile, Concat, Split, Slice,
 * Pad and Transpose.
 *
 * The planner aliases a view's output with its input and skips run(); run() still copies when
 * the buffers differ, because constant folding may call it with separate buffers. */
#include <inttypes.h>
#include <math.h>

#include "engine/ops_impl.h"

/* Copies input 0 to output 0 when they are separate buffers (views, see above). */
static void view_copy(const eg_tensor *in, eg_tensor *out) {
    int64_t nb = eg_tensor_nbytes(&out[0]);
    if (out[0].data != in[0].data && in[0].data && nb > 0)
        memmove(out[0].data, in[0].data, (size_t)nb);
}

static int run_view(const eg_node *n, const eg_tensor *in, eg_tensor *out, const eg_run_ctx *ctx,
                    inferd_error *err) {
    (void)n;
    (void)ctx;
    (void)err;
    view_copy(in, out);
    return 0;
}

/* ---- Reshape ---- */

static int infer_reshape(const eg_node *n, const eg_tensor *in, eg_tensor *out, inferd_error *err) {
    int64_t shape[EG_MAX_RANK], allowzero = 0;
    int count = 0;
    int rc = eg_const_ints(n, in, 1, "shape", shape, EG_MAX_RANK, &count, err);
    if (!rc && n->opset >= 14)
        rc = eg_attr_i64(n, "allowzero", 0, 0, 1, &allowzero, err);
    if (rc)
        return rc;
    int infer_at = -1, has_zero = 0;
    int64_t known = 1;
    for (int i = 0; i < count; i++) {
        int64_t d = shape[i];
        if (d == -1) {
            if (infer_at >= 0)
                return eg_node_error(err, INFERD_EINVAL, n, "shape has more than one -1");
            infer_at = i;
            continue;
        }
        if (d < -1 || d > EG_MAX_NUMEL)
            return eg_node_error(err, INFERD_EINVAL, n, "shape holds %" PRId64, d);
        if (d == 0 && !allowzero) {
            if (i >= in[0].rank)
                return eg_node_error(err, INFERD_EINVAL, n,
                                     "shape copies dim %d of a rank-%d input", i, in[0].rank);
            d = shape[i] = in[0].dims[i];
        } else if (d == 0) {
            has_zero = 1;
        }
        known *= d;
        if (known > EG_MAX_NUMEL)
            return eg_node_error(err, INFERD_EINVAL, n, "shape has over %" PRId64 " elements",
                                 EG_MAX_NUMEL);
    }
    int64_t numel = eg_numel(&in[0]);
    if (infer_at >= 0) {
        if (has_zero)
            return eg_node_error(err, INFERD_EINVAL, n, "shape has both -1 and 0 with allowzero");
        if (known == 0 || numel % known != 0) {
            char s[128];
            return eg_node_error(err, INFERD_EINVAL, n, "cannot reshape %s leaving a -1 dim",
                                 eg_tensor_str(&in[0], s, sizeof s));
        }
        shape[infer_at] = numel / known;
        known *= shape[infer_at];
    }
    if (known != numel) {
        char s[128];
        return eg_node_error(err, INFERD_EINVAL, n, "cannot reshape %s into %" PRId64 " elements",
                             eg_tensor_str(&in[0], s, sizeof s), known);
    }
    eg_set_out(&out[0], in[0].dtype, count, shape);
    return 0;
}

EG_OP_IMPL(Reshape, 2, 2, 1, 1, infer_reshape, run_view, NULL, EG_OPF_VIEW);

/* ---- Flatten ---- */

static int infer_flatten(const eg_node *n, const eg_tensor *in, eg_tensor *out, inferd_error *err) {
    int r = in[0].rank;
    int64_t axis;
    int rc = eg_attr_i64(n, "axis", 1, -r, r, &axis, err);
    if (rc)
        return rc;
    if (axis < 0)
        axis += r;
    int64_t dims[2] = {eg_dims_prod(in[0].dims, 0, (int)axis),
                       eg_dims_prod(in[0].dims, (int)axis, r)};
    eg_set_out(&out[0], in[0].dtype, 2, dims);
    return 0;
}

EG_OP_IMPL(Flatten, 1, 1, 1, 1, infer_flatten, run_view, NULL, EG_OPF_VIEW);

/* ---- Squeeze / Unsqueeze ---- */

/* Axes come from an attribute before opset 13 and from input 1 from 13 on; *present says
 * whether they were given at all. */
static int squeeze_axes(const eg_node *n, const eg_tensor *in, int64_t *axes, int *count,
                        int *present, inferd_error *err) {
    if (n->opset < 13) {
        int rc = eg_attr_ints(n, "axes", axes, EG_MAX_RANK, present, err);
        if (rc < 0)
            return rc;
        *count = rc;
        return 0;
    }
    *present = eg_in_present(n, 1);
    *count = 0;
    if (!*present)
        return 0;
    return eg_const_ints(n, in, 1, "axes", axes, EG_MAX_RANK, count, err);
}

static int infer_squeeze(const eg_node *n, const eg_tensor *in, eg_tensor *out, inferd_error *err) {
    int64_t axes[EG_MAX_RANK];
    int count, present;
    int rc = squeeze_axes(n, in, axes, &count, &present, err);
    if (!rc)
        rc = eg_normalize_axes(n, axes, count, in[0].rank, err);
    if (rc)
        return rc;
    unsigned drop = 0;
    // An empty axes list squeezes every 1, as if axes were not given (as ONNX Runtime does).
    if (!present || count == 0) {
        for (int i = 0; i < in[0].rank; i++)
            if (in[0].dims[i] == 1)
                drop |= 1u << i;
    }
    for (int k = 0; k < count; k++) {
        if (in[0].dims[axes[k]] != 1)
            return eg_node_error(err, INFERD_EINVAL, n,
                                 "cannot squeeze axis %" PRId64 " of size %" PRId64, axes[k],
                                 in[0].dims[axes[k]]);
        drop |= 1u << axes[k];
    }
    int64_t dims[EG_MAX_RANK];
    int r = 0;
    for (int i = 0; i < in[0].rank; i++)
        if (!(drop & (1u << i)))
            dims[r++] = in[0].dims[i];
    eg_set_out(&out[0], in[0].dtype, r, dims);
    return 0;
}

EG_OP_IMPL(Squeeze, 1, 2, 1, 1, infer_squeeze, run_view, NULL, EG_OPF_VIEW);

static int infer_unsqueeze(const eg_node *n, const eg_tensor *in, eg_tensor *out,
                           inferd_error *err) {
    int64_t axes[EG_MAX_RANK];
    int count, present;
    int rc = squeeze_axes(n, in, axes, &count, &present, err);
    if (rc)
        return rc;
    if (!present)
        return eg_node_error(err, INFERD_EINVAL, n, "axes are required");
    int r = in[0].rank + count;
    if (r > EG_MAX_RANK)
        return eg_node_error(err, INFERD_EUNSUPPORTED, n, "output rank %d is over %d", r,
                             EG_MAX_RANK);
    rc = eg_normalize_axes(n, axes, count, r, err);
    if (rc)
        return rc;
    unsigned ins = 0;
    for (int k = 0; k < count; k++)
        ins |= 1u << axes[k];
    int64_t dims[EG_MAX_RANK];
    for (int i = 0, j = 0; i < r; i++)
        dims[i] = (ins & (1u << i)) ? 1 : in[0].dims[j++];
    eg_set_out(&out[0], in[0].dtype, r, dims);
    return 0;
}

EG_OP_IMPL(Unsqueeze, 1, 2, 1, 1, infer_unsqueeze, run_view, NULL, EG_OPF_VIEW);

/* ---- Identity / Dropout ---- */

static int infer_identity(const eg_node *n, const eg_tensor *in, eg_tensor *out,
                          inferd_error *err) {
    (void)n;
    (void)err;
    eg_set_out_like(&out[0], &in[0]);
    return 0;
}

EG_OP_IMPL(Identity, 1, 1, 1, 1, infer_identity, run_view, NULL, EG_OPF_VIEW);

/* Inference-mode Dropout is the identity; a training-mode Dropout would be random, so it is
 * refused unless its ratio is known to be 0. */
static int infer_dropout(const eg_node *n, const eg_tensor *in, eg_tensor *out, inferd_error *err) {
    int rc = eg_check_dtype(n, in, 0, EG_DT_ANY, err);
    if (rc)
        return rc;
    double ratio = 0.5;
    if (n->opset < 12) {
        float r;
        rc = eg_attr_f32(n, "ratio", 0.5f, &r, err);
        ratio = r;
    } else if (eg_in_present(n, 1)) {
        rc = eg_scalar_f64(n, in, 1, NULL, &ratio, err);
        rc = rc > 0 ? 0 : rc;
    }
    if (rc)
        return rc;
    if (eg_in_present(n, 2)) {
        int64_t training = 0;
        rc = eg_scalar_i64(n, in, 2, "training_mode", &training, err);
        if (rc)
            return rc;
        if (training && ratio != 0)
            return eg_node_error(err, INFERD_EUNSUPPORTED, n,
                                 "training_mode dropout is not supported");
    }
    eg_set_out_like(&out[0], &in[0]);
    if (eg_out_present(n, 1))
        eg_set_out(&out[1], INFERD_DTYPE_BOOL, in[0].rank, in[0].dims);
    return 0;
}

static int run_dropout(const eg_node *n, const eg_tensor *in, eg_tensor *out, const eg_run_ctx *ctx,
                       inferd_error *err) {
    (void)ctx;
    (void)err;
    view_copy(in, out);
    if (eg_out_present(n, 1) && out[1].data && eg_numel(&out[1]) > 0)
        memset(out[1].data, 1, (size_t)eg_numel(&out[1]));
    return 0;
}

EG_OP_IMPL(Dropout, 1, 3, 1, 2, infer_dropout, run_dropout, NULL, EG_OPF_VIEW);

/* ---- Shape / Size ---- */

/* Clamps Shape's start/end (opset 15) to [0, rank]. */
static void shape_range(const eg_node *n, int rank, int64_t *lo, int64_t *hi) {
    int64_t s = 0, e = rank;
    if (n->opset >= 15) {
        s = eg_node_attr_int(n, "start", 0);
        e = eg_node_attr_int(n, "end", rank);
    }
    if (s < 0)
        s += rank;
    if (e < 0)
        e += rank;
    s = s < 0 ? 0 : s > rank ? rank : s;
    e = e < 0 ? 0 : e > rank ? rank : e;
    *lo = s;
    *hi = e > s ? e : s;
}

static int infer_shape(const eg_node *n, const eg_tensor *in, eg_tensor *out, inferd_error *err) {
    (void)err;
    int64_t lo, hi;
    shape_range(n, in[0].rank, &lo, &hi);
    int64_t len = hi - lo;
    eg_set_out(&out[0], INFERD_DTYPE_I64, 1, &len);
    return 0;
}

/* Reads only in[0]'s dims: the planner runs it with no input data. */
static int run_shape(const eg_node *n, const eg_tensor *in, eg_tensor *out, const eg_run_ctx *ctx,
                     inferd_error *err) {
    (void)ctx;
    (void)err;
    int64_t lo, hi, *o = out[0].data;
    shape_range(n, in[0].rank, &lo, &hi);
    for (int64_t i = lo; i < hi; i++)
        o[i - lo] = in[0].dims[i];
    return 0;
}

EG_OP_IMPL(Shape, 1, 1, 1, 1, infer_shape, run_shape, NULL, 0);

static int infer_size(const eg_node *n, const eg_tensor *in, eg_tensor *out, inferd_error *err) {
    (void)n;
    (void)in;
    (void)err;
    eg_set_out(&out[0], INFERD_DTYPE_I64, 0, NULL);
    return 0;
}

/* Like Shape, reads only dims. */
static int run_size(const eg_node *n, const eg_tensor *in, eg_tensor *out, const eg_run_ctx *ctx,
                    inferd_error *err) {
    (void)n;
    (void)ctx;
    (void)err;
    *(int64_t *)out[0].data = eg_numel(&in[0]);
    return 0;
}

EG_OP_IMPL(Size, 1, 1, 1, 1, infer_size, run_size, NULL, 0);

/* ---- Constant / ConstantOfShape ---- */

/* The one value attribute of a Constant node as a tensor; EUNSUPPORTED for strings and sparse
 * tensors. The data points into the attribute. */
static int constant_value(const eg_node *n, eg_tensor *t, inferd_error *err) {
    const eg_attr *found = NULL;
    for (int i = 0; i < n->n_attr; i++) {
        const char *name = n->attr[i].name;
        if (strncmp(name, "value", 5) != 0 && strcmp(name, "sparse_value") != 0)
            continue;
        if (found)
            return eg_node_error(err, INFERD_EINVAL, n, "has both %.40s and %.40s", found->name,
                                 name);
        found = &n->attr[i];
    }
    if (!found)
        return eg_node_error(err, INFERD_EINVAL, n, "has no value attribute");
    const eg_attr *a = found;
    memset(t, 0, sizeof *t);
    if (strcmp(a->name, "value") == 0 && a->type == EG_ATTR_TYPE_TENSOR) {
        *t = a->t;
        if (inferd_dtype_size(t->dtype) == 0)
            return eg_node_error(err, INFERD_EUNSUPPORTED, n, "value of dtype %s",
                                 inferd_dtype_name(t->dtype));
        if (t->rank < 0 || t->rank > EG_MAX_RANK)
            return eg_node_error(err, INFERD_EINVAL, n, "value has rank %d", t->rank);
        int64_t nb = eg_tensor_nbytes(t);
        if (nb < 0 || (nb > 0 && !t->data))
            return eg_node_error(err, INFERD_EINVAL, n, "value has bad dims or no data");
    } else if (strcmp(a->name, "value_float") == 0 && a->type == EG_ATTR_TYPE_FLOAT) {
        t->dtype = INFERD_DTYPE_F32;
        t->data = (void *)&a->f;
    } else if (strcmp(a->name, "value_int") == 0 && a->type == EG_ATTR_TYPE_INT) {
        t->dtype = INFERD_DTYPE_I64;
        t->data = (void *)&a->i;
    } else if (strcmp(a->name, "value_floats") == 0 && a->type == EG_ATTR_TYPE_FLOATS) {
        t->dtype = INFERD_DTYPE_F32;
        t->rank = 1;
        t->dims[0] = a->n;
        t->data = a->floats;
    } else if (strcmp(a->name, "value_ints") == 0 && a->type == EG_ATTR_TYPE_INTS) {
        t->dtype = INFERD_DTYPE_I64;
        t->rank = 1;
        t->dims[0] = a->n;
        t->data = a->ints;
    } else {
        return eg_node_error(err, INFERD_EUNSUPPORTED, n, "attribute %.40s is not supported",
                             a->name);
    }
    if (t->rank == 1 && t->dims[0] < 0)
        return eg_node_error(err, INFERD_EINVAL, n, "value has a negative length");
    return 0;
}

static int infer_constant(const eg_node *n, const eg_tensor *in, eg_tensor *out,
                          inferd_error *err) {
    (void)in;
    eg_tensor t;
    int rc = constant_value(n, &t, err);
    if (rc)
        return rc;
    eg_set_out(&out[0], t.dtype, t.rank, t.dims);
    return 0;
}

static int run_constant(const eg_node *n, const eg_tensor *in, eg_tensor *out,
                        const eg_run_ctx *ctx, inferd_error *err) {
    (void)in;
    (void)ctx;
    eg_tensor t;
    int rc = constant_value(n, &t, err);
    if (rc)
        return rc;
    int64_t nb = eg_tensor_nbytes(&t);
    if (nb > 0)
        memcpy(out[0].data, t.data, (size_t)nb);
    return 0;
}

EG_OP_IMPL(Constant, 0, 0, 1, 1, infer_constant, run_constant, NULL, 0);

/* ConstantOfShape's fill value: the one-element tensor attribute, or float 0. */
static int cos_value(const eg_node *n, eg_tensor *t, inferd_error *err) {
    static const float zero = 0;
    const eg_attr *a = eg_node_attr(n, "value");
    memset(t, 0, sizeof *t);
    if (!a) {
        t->dtype = INFERD_DTYPE_F32;
        t->data = (void *)&zero;
        return 0;
    }
    if (a->type != EG_ATTR_TYPE_TENSOR || inferd_dtype_size(a->t.dtype) == 0 ||
        a->t.rank > EG_MAX_RANK || eg_tensor_numel(&a->t) != 1 || !a->t.data)
        return eg_node_error(err, INFERD_EINVAL, n, "value must be a one-element tensor");
    *t = a->t;
    return 0;
}

static int infer_constant_of_shape(const eg_node *n, const eg_tensor *in, eg_tensor *out,
                                   inferd_error *err) {
    int64_t dims[EG_MAX_RANK];
    int count;
    eg_tensor v;
    int rc = eg_const_ints(n, in, 0, "shape", dims, EG_MAX_RANK, &count, err);
    if (!rc)
        rc = cos_value(n, &v, err);
    if (rc)
        return rc;
    for (int i = 0; i < count; i++)
        if (dims[i] < 0)
            return eg_node_error(err, INFERD_EINVAL, n, "shape holds %" PRId64, dims[i]);
    eg_set_out(&out[0], v.dtype, count, dims);
    return 0;
}

static void fill_value(void *dst, const void *val, size_t es, int64_t count) {
    char *d = dst;
    if (count == 0)
        return;
    int zero = 1;
    for (size_t b = 0; b < es; b++)
        zero &= ((const char *)val)[b] == 0;
    if (zero) {
        memset(d, 0, (size_t)count * es);
        return;
    }
    for (int64_t i = 0; i < count; i++)
        memcpy(d + (size_t)i * es, val, es);
}

static int run_constant_of_shape(const eg_node *n, const eg_tensor *in, eg_tensor *out,
                                 const eg_run_ctx *ctx, inferd_error *err) {
    (void)in;
    (void)ctx;
    eg_tensor v;
    int rc = cos_value(n, &v, err);
    if (rc)
        return rc;
    fill_value(out[0].data, v.data, inferd_dtype_size(v.dtype), eg_numel(&out[0]));
    return 0;
}

EG_OP_IMPL(ConstantOfShape, 1, 1, 1, 1, infer_constant_of_shape, run_constant_of_shape, NULL, 0);

/* ---- Range ---- */

#define RANGE_DT (EG_DT_FLOAT | EG_DT_INDEX | EG_DT(INFERD_DTYPE_I16))

/* Element count of Range(start, limit, delta): max(ceil((limit - start) / delta), 0), exact for
 * integers (computed on magnitudes in uint64, so no step can overflow). */
static int range_count(const eg_node *n, const eg_tensor *in, int64_t *count, inferd_error *err) {
    if (eg_dtype_in(in[0].dtype, EG_DT_FLOAT)) {
        double s = eg_tensor_get_f64(&in[0], 0), l = eg_tensor_get_f64(&in[1], 0),
               d = eg_tensor_get_f64(&in[2], 0);
        if (d == 0 || !isfinite(s) || !isfinite(l) || !isfinite(d))
            return eg_node_error(err, INFERD_EINVAL, n,
                                 "start, limit and delta must be finite "
                                 "and delta non-zero");
        // The difference is taken in the input's precision, then divided in double, as ONNX
        // Runtime does: the element count (a shape) must agree with it exactly.
        double span = in[0].dtype == INFERD_DTYPE_F32 ? (double)((float)l - (float)s) : l - s;
        double c = ceil(span / d);
        if (!(c <= (double)EG_MAX_NUMEL))
            return eg_node_error(err, INFERD_EINVAL, n, "would have %g elements", c);
        *count = c > 0 ? (int64_t)c : 0;
        return 0;
    }
    int64_t s = eg_tensor_get_i64(&in[0], 0), l = eg_tensor_get_i64(&in[1], 0),
            d = eg_tensor_get_i64(&in[2], 0);
    if (d == 0)
        return eg_node_error(err, INFERD_EINVAL, n, "delta is 0");
    uint64_t span, step;
    if (d > 0) {
        if (l <= s) {
            *count = 0;
            return 0;
        }
        span = (uint64_t)l - (uint64_t)s;
        step = (uint64_t)d;
    } else {
        if (l >= s) {
            *count = 0;
            return 0;
        }
        span = (uint64_t)s - (uint64_t)l;
        step = 0 - (uint64_t)d;
    }
    uint64_t c = span / step + (span % step != 0);
    if (c > (uint64_t)EG_MAX_NUMEL)
        return eg_node_error(err, INFERD_EINVAL, n, "would have %" PRIu64 " elements", c);
    *count = (int64_t)c;
    return 0;
}

static int infer_range(const eg_node *n, const eg_tensor *in, eg_tensor *out, inferd_error *err) {
    int rc = eg_check_dtype(n, in, 0, RANGE_DT, err);
    for (int i = 0; i < 3 && !rc; i++) {
        static const char *const what[] = {"start", "limit", "delta"};
        rc = eg_check_same_dtype(n, in, 0, i, err);
        if (!rc)
            rc = eg_require_const(n, in, i, what[i], err);
        if (!rc && eg_numel(&in[i]) != 1)
            rc = eg_node_error(err, INFERD_EINVAL, n, "%s must be a scalar", what[i]);
    }
    int64_t count = 0;
    if (!rc)
        rc = range_count(n, in, &count, err);
    if (rc)
        return rc;
    eg_set_out(&out[0], in[0].dtype, 1, &count);
    return 0;
}

static int run_range(const eg_node *n, const eg_tensor *in, eg_tensor *out, const eg_run_ctx *ctx,
                     inferd_error *err) {
    (void)n;
    (void)ctx;
    (void)err;
    int64_t c = out[0].dims[0];
    switch (in[0].dtype) {
    case INFERD_DTYPE_F32: {
        float s = *(const float *)in[0].data, d = *(const float *)in[2].data, *o = out[0].data;
        for (int64_t i = 0; i < c; i++)
            o[i] = s + (float)i * d;
        break;
    }
    case INFERD_DTYPE_F64: {
        double s = *(const double *)in[0].data, d = *(const double *)in[2].data, *o = out[0].data;
        for (int64_t i = 0; i < c; i++)
            o[i] = s + (double)i * d;
        break;
    }
    default: {
        // Integers: every value lies between start and limit, so wrapping math is exact.
        uint64_t s = (uint64_t)eg_tensor_get_i64(&in[0], 0),
                 d = (uint64_t)eg_tensor_get_i64(&in[2], 0);
        for (int64_t i = 0; i < c; i++) {
            int64_t v = (int64_t)(s + (uint64_t)i * d);
            if (in[0].dtype == INFERD_DTYPE_I64)
                ((int64_t *)out[0].data)[i] = v;
            else if (in[0].dtype == INFERD_DTYPE_I32)
                ((int32_t *)out[0].data)[i] = (int32_t)v;
            else
                ((int16_t *)out[0].data)[i] = (int16_t)v;
        }
        break;
    }
    }
    return 0;
}

EG_OP_IMPL(Range, 3, 3, 1, 1, infer_range, run_range, NULL, 0);

/* ---- Expand / Tile ---- */

static int infer_expand(const eg_node *n, const eg_tensor *in, eg_tensor *out, inferd_error *err) {
    eg_tensor s = {.dtype = in[0].dtype};
    int count;
    int rc = eg_const_ints(n, in, 1, "shape", s.dims, EG_MAX_RANK, &count, err);
    if (rc)
        return rc;
    s.rank = count;
    for (int i = 0; i < count; i++)
        if (s.dims[i] < 0 || s.dims[i] > EG_MAX_NUMEL)
            return eg_node_error(err, INFERD_EINVAL, n, "shape holds %" PRId64, s.dims[i]);
    eg_tensor o;
    rc = eg_broadcast_shape(n, &in[0], &s, &o, err);
    if (rc)
        return rc;
    eg_set_out(&out[0], in[0].dtype, o.rank, o.dims);
    return 0;
}

static int run_expand(const eg_node *n, const eg_tensor *in, eg_tensor *out, const eg_run_ctx *ctx,
                      inferd_error *err) {
    (void)n;
    (void)err;
    eg_broadcast_copy(&in[0], &out[0], ctx);
    return 0;
}

EG_OP_IMPL(Expand, 2, 2, 1, 1, infer_expand, run_expand, NULL, 0);

static int infer_tile(const eg_node *n, const eg_tensor *in, eg_tensor *out, inferd_error *err) {
    int64_t rep[EG_MAX_RANK], dims[EG_MAX_RANK];
    int count;
    int rc = eg_const_ints(n, in, 1, "repeats", rep, EG_MAX_RANK, &count, err);
    if (rc)
        return rc;
    if (count != in[0].rank)
        return eg_node_error(err, INFERD_EINVAL, n, "has %d repeats for rank %d", count,
                             in[0].rank);
    for (int i = 0; i < count; i++) {
        if (rep[i] < 0 || rep[i] > EG_MAX_NUMEL)
            return eg_node_error(err, INFERD_EINVAL, n, "repeats holds %" PRId64, rep[i]);
        dims[i] = in[0].dims[i] * rep[i];
    }
    eg_set_out(&out[0], in[0].dtype, count, dims);
    return 0;
}

static int run_tile(const eg_node *n, const eg_tensor *in, eg_tensor *out, const eg_run_ctx *ctx,
                    inferd_error *err) {
    (void)n;
    (void)err;
    int r = in[0].rank;
    size_t es = inferd_dtype_size(in[0].dtype);
    int64_t no = eg_numel(&out[0]);
    if (no == 0)
        return 0;
    if (r == 0) {
        memcpy(out[0].data, in[0].data, es);
        return 0;
    }
    // Each output row (innermost dim) is the matching input row repeated.
    int64_t in_inner = in[0].dims[r - 1], out_inner = out[0].dims[r - 1];
    int64_t rows = no / out_inner;
    int64_t istride[EG_MAX_RANK];
    istride[r - 1] = 1;
    for (int i = r - 2; i >= 0; i--)
        istride[i] = istride[i + 1] * in[0].dims[i + 1];
    const char *src = in[0].data;
    char *dst = out[0].data;
    int nt = eg_par_threads(ctx, no);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t row = 0; row < rows; row++) {
        int64_t rem = row, off = 0;
        for (int i = r - 2; i >= 0; i--) {
            int64_t o = rem % out[0].dims[i];
            rem /= out[0].dims[i];
            off += (o % in[0].dims[i]) * istride[i];
        }
        char *d = dst + (size_t)(row * out_inner) * es;
        for (int64_t j = 0; j < out_inner; j += in_inner)
            memcpy(d + (size_t)j * es, src + (size_t)off * es, (size_t)in_inner * es);
    }
    return 0;
}

EG_OP_IMPL(Tile, 2, 2, 1, 1, infer_tile, run_tile, NULL, 0);

/* ---- Concat / Split ---- */

static int infer_concat(const eg_node *n, const eg_tensor *in, eg_tensor *out, inferd_error *err) {
    const eg_attr *a = eg_node_attr(n, "axis");
    if (!a || a->type != EG_ATTR_TYPE_INT)
        return eg_node_error(err, INFERD_EINVAL, n, "attribute axis is required");
    int r = in[0].rank, axis;
    if (r == 0)
        return eg_node_error(err, INFERD_EINVAL, n, "cannot concatenate scalars");
    int rc = eg_normalize_axis(n, a->i, r, &axis, err);
    if (rc)
        return rc;
    int64_t dims[EG_MAX_RANK];
    memcpy(dims, in[0].dims, sizeof dims);
    for (int i = 1; i < n->n_in; i++) {
        if (!eg_in_present(n, i))
            return eg_node_error(err, INFERD_EINVAL, n, "input %d is missing", i);
        rc = eg_check_same_dtype(n, in, 0, i, err);
        if (rc)
            return rc;
        int ok = in[i].rank == r;
        for (int d = 0; ok && d < r; d++)
            ok = d == axis || in[i].dims[d] == dims[d];
        if (!ok) {
            char s0[96], s1[96];
            return eg_node_error(err, INFERD_EINVAL, n, "cannot concatenate %s and %s on axis %d",
                                 eg_tensor_str(&in[0], s0, sizeof s0),
                                 eg_tensor_str(&in[i], s1, sizeof s1), axis);
        }
        dims[axis] += in[i].dims[axis];
        if (dims[axis] > EG_MAX_NUMEL)
            return eg_node_error(err, INFERD_EINVAL, n, "output is too large");
    }
    eg_set_out(&out[0], in[0].dtype, r, dims);
    return 0;
}

static int concat_axis(const eg_node *n, int rank) {
    int64_t a = eg_node_attr_int(n, "axis", 0);
    return (int)(a < 0 ? a + rank : a);
}

static int run_concat(const eg_node *n, const eg_tensor *in, eg_tensor *out, const eg_run_ctx *ctx,
                      inferd_error *err) {
    (void)err;
    int r = out[0].rank, axis = concat_axis(n, r);
    size_t es = inferd_dtype_size(out[0].dtype);
    int64_t outer = eg_dims_prod(out[0].dims, 0, axis);
    int64_t inner = eg_dims_prod(out[0].dims, axis + 1, r);
    int64_t orow = out[0].dims[axis] * inner; // elements per outer index in the output
    char *dst = out[0].data;
    int nt = eg_par_threads(ctx, eg_numel(&out[0]));
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t o = 0; o < outer; o++) {
        int64_t at = 0;
        for (int i = 0; i < n->n_in; i++) {
            int64_t len = in[i].dims[axis] * inner;
            if (len)
                memcpy(dst + (size_t)(o * orow + at) * es,
                       (const char *)in[i].data + (size_t)(o * len) * es, (size_t)len * es);
            at += len;
        }
    }
    return 0;
}

EG_OP_IMPL(Concat, 1, EG_VARIADIC, 1, 1, infer_concat, run_concat, NULL, 0);

/* Split sizes along the axis, from the split attribute (before 13) or input (from 13), or
 * equal parts (ceil-sized with a smaller last part when num_outputs is given, opset 18). */
static int split_sizes(const eg_node *n, const eg_tensor *in, int axis, int64_t *sizes,
                       inferd_error *err) {
    int k = n->n_out, count = -1, present = 0;
    int64_t dim = in[0].dims[axis];
    if (n->opset < 13) {
        int rc = eg_attr_ints(n, "split", sizes, k, &present, err);
        if (rc < 0)
            return rc;
        count = present ? rc : -1;
    } else if (eg_in_present(n, 1)) {
        int64_t tmp[EG_VARIADIC];
        int rc = eg_const_ints(n, in, 1, "split", tmp, EG_VARIADIC, &count, err);
        if (rc)
            return rc;
        if (count != k)
            return eg_node_error(err, INFERD_EINVAL, n, "split has %d sizes for %d outputs", count,
                                 k);
        memcpy(sizes, tmp, sizeof(int64_t) * (size_t)k);
    }
    if (count >= 0) {
        if (count != k)
            return eg_node_error(err, INFERD_EINVAL, n, "split has %d sizes for %d outputs", count,
                                 k);
        int64_t sum = 0;
        for (int i = 0; i < k; i++) {
            if (sizes[i] < 0 || sizes[i] > EG_MAX_NUMEL)
                return eg_node_error(err, INFERD_EINVAL, n, "split holds %" PRId64, sizes[i]);
            sum += sizes[i];
        }
        if (sum != dim)
            return eg_node_error(err, INFERD_EINVAL, n,
                                 "split sizes add up to %" PRId64 ", not %" PRId64, sum, dim);
        return 0;
    }
    const eg_attr *no = eg_node_attr(n, "num_outputs");
    if (no && n->opset >= 18) {
        if (no->type != EG_ATTR_TYPE_INT || no->i != k)
            return eg_node_error(err, INFERD_EINVAL, n, "num_outputs must equal %d outputs", k);
        int64_t each = (dim + k - 1) / k;
        for (int i = 0; i < k; i++) {
            int64_t left = dim - each * i;
            sizes[i] = left < 0 ? 0 : left < each ? left : each;
        }
        return 0;
    }
    if (dim % k != 0)
        return eg_node_error(err, INFERD_EINVAL, n,
                             "cannot split a dim of %" PRId64 " into %d equal parts", dim, k);
    for (int i = 0; i < k; i++)
        sizes[i] = dim / k;
    return 0;
}

static int infer_split(const eg_node *n, const eg_tensor *in, eg_tensor *out, inferd_error *err) {
    int64_t a;
    int axis;
    int rc = eg_attr_i64(n, "axis", 0, INT64_MIN, INT64_MAX, &a, err);
    if (!rc && in[0].rank == 0)
        rc = eg_node_error(err, INFERD_EINVAL, n, "cannot split a scalar");
    if (!rc)
        rc = eg_normalize_axis(n, a, in[0].rank, &axis, err);
    int64_t sizes[EG_VARIADIC];
    if (!rc)
        rc = split_sizes(n, in, axis, sizes, err);
    if (rc)
        return rc;
    for (int j = 0; j < n->n_out; j++) {
        eg_set_out_like(&out[j], &in[0]);
        out[j].dims[axis] = sizes[j];
    }
    return 0;
}

static int run_split(const eg_node *n, const eg_tensor *in, eg_tensor *out, const eg_run_ctx *ctx,
                     inferd_error *err) {
    (void)ctx;
    (void)err;
    int r = in[0].rank, axis = concat_axis(n, r);
    size_t es = inferd_dtype_size(in[0].dtype);
    int64_t outer = eg_dims_prod(in[0].dims, 0, axis);
    int64_t inner = eg_dims_prod(in[0].dims, axis + 1, r);
    int64_t irow = in[0].dims[axis] * inner;
    int64_t at = 0;
    for (int j = 0; j < n->n_out; j++) {
        int64_t len = out[j].dims[axis] * inner;
        if (eg_out_present(n, j) && out[j].data && len)
            for (int64_t o = 0; o < outer; o++)
                memcpy((char *)out[j].data + (size_t)(o * len) * es,
                       (const char *)in[0].data + (size_t)(o * irow + at) * es, (size_t)len * es);
        at += len;
    }
    return 0;
}

EG_OP_IMPL(Split, 1, 2, 1, EG_VARIADIC, infer_split, run_split, NULL, 0);

/* ---- Slice ---- */

typedef struct slice_plan {
    int64_t start[EG_MAX_RANK], step[EG_MAX_RANK], count[EG_MAX_RANK];
} slice_plan;

static int slice_params(const eg_node *n, const eg_tensor *in, int64_t *v, int *count, int which,
                        inferd_error *err) {
    static const char *const names[] = {"", "starts", "ends", "axes", "steps"};
    if (n->opset < 10) {
        int present;
        int rc = eg_attr_ints(n, names[which], v, EG_MAX_RANK, &present, err);
        if (rc < 0)
            return rc;
        *count = present ? rc : -1;
        return 0;
    }
    if (!eg_in_present(n, which)) {
        *count = -1;
        return 0;
    }
    return eg_const_ints(n, in, which, names[which], v, EG_MAX_RANK, count, err);
}

/* Effective start, step and count of every axis, following the ONNX clamping rules. */
static int slice_plan_make(const eg_node *n, const eg_tensor *in, slice_plan *p,
                           inferd_error *err) {
    int r = in[0].rank;
    int64_t starts[EG_MAX_RANK], ends[EG_MAX_RANK], axes[EG_MAX_RANK], steps[EG_MAX_RANK];
    int ns, ne, na, nst;
    int rc = slice_params(n, in, starts, &ns, 1, err);
    if (!rc)
        rc = slice_params(n, in, ends, &ne, 2, err);
    if (!rc)
        rc = slice_params(n, in, axes, &na, 3, err);
    if (!rc)
        rc = slice_params(n, in, steps, &nst, 4, err);
    if (rc)
        return rc;
    if (ns < 0 || ne < 0 || ns != ne || (na >= 0 && na != ns) || (nst >= 0 && nst != ns))
        return eg_node_error(err, INFERD_EINVAL, n,
                             "starts, ends, axes and steps must have the same length");
    if (na < 0)
        for (int k = 0; k < ns; k++)
            axes[k] = k;
    rc = eg_normalize_axes(n, axes, ns, r, err);
    if (rc)
        return rc;
    for (int d = 0; d < r; d++) {
        p->start[d] = 0;
        p->step[d] = 1;
        p->count[d] = in[0].dims[d];
    }
    for (int k = 0; k < ns; k++) {
        int d = (int)axes[k];
        int64_t dim = in[0].dims[d], s = starts[k], e = ends[k], st = nst >= 0 ? steps[k] : 1;
        if (st == 0)
            return eg_node_error(err, INFERD_EINVAL, n, "step is 0 on axis %d", d);
        if (s < 0)
            s += dim;
        if (e < 0)
            e += dim;
        int64_t c;
        if (st > 0) {
            s = s < 0 ? 0 : s > dim ? dim : s;
            e = e < 0 ? 0 : e > dim ? dim : e;
            c = e > s ? (e - s - 1) / st + 1 : 0;
        } else {
            s = s < 0 ? 0 : s > dim - 1 ? dim - 1 : s;
            e = e < -1 ? -1 : e > dim - 1 ? dim - 1 : e;
            int64_t mag = st == INT64_MIN ? INT64_MAX : -st; // no overflow negating
            c = s > e ? (s - e - 1) / mag + 1 : 0;
        }
        p->start[d] = c ? s : 0;
        p->step[d] = st;
        p->count[d] = c;
    }
    return 0;
}

static int infer_slice(const eg_node *n, const eg_tensor *in, eg_tensor *out, inferd_error *err) {
    if (n->opset >= 10 && n->n_in < 3)
        return eg_node_error(err, INFERD_EINVAL, n, "needs data, starts and ends inputs");
    slice_plan p;
    int rc = slice_plan_make(n, in, &p, err);
    if (rc)
        return rc;
    eg_set_out(&out[0], in[0].dtype, in[0].rank, p.count);
    return 0;
}

static int run_slice(const eg_node *n, const eg_tensor *in, eg_tensor *out, const eg_run_ctx *ctx,
                     inferd_error *err) {
    slice_plan p;
    int rc = slice_plan_make(n, in, &p, err);
    if (rc)
        return rc;
    int r = in[0].rank;
    size_t es = inferd_dtype_size(in[0].dtype);
    int64_t no = eg_numel(&out[0]);
    if (no == 0)
        return 0;
    if (r == 0) {
        memcpy(out[0].data, in[0].data, es);
        return 0;
    }
    int64_t istride[EG_MAX_RANK];
    istride[r - 1] = 1;
    for (int i = r - 2; i >= 0; i--)
        istride[i] = istride[i + 1] * in[0].dims[i + 1];
    int64_t inner = p.count[r - 1], rows = no / inner;
    int64_t ist = p.step[r - 1];
    const char *src = in[0].data;
    char *dst = out[0].data;
    int nt = eg_par_threads(ctx, no);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t row = 0; row < rows; row++) {
        int64_t rem = row, off = p.start[r - 1];
        for (int i = r - 2; i >= 0; i--) {
            int64_t o = rem % p.count[i];
            rem /= p.count[i];
            off += (p.start[i] + o * p.step[i]) * istride[i];
        }
        char *d = dst + (size_t)(row * inner) * es;
        if (ist == 1) {
            memcpy(d, src + (size_t)off * es, (size_t)inner * es);
        } else {
            for (int64_t j = 0; j < inner; j++)
                memcpy(d + (size_t)j * es, src + (size_t)(off + j * ist) * es, es);
        }
    }
    return 0;
}

EG_OP_IMPL(Slice, 1, 5, 1, 1, infer_slice, run_slice, NULL, 0);

/* ---- Pad ---- */

typedef enum pad_mode { PAD_CONSTANT, PAD_REFLECT, PAD_EDGE } pad_mode;

typedef struct pad_plan {
    pad_mode mode;
    int64_t begin[EG_MAX_RANK], end[EG_MAX_RANK];
} pad_plan;

static int pad_plan_make(const eg_node *n, const eg_tensor *in, pad_plan *p, inferd_error *err) {
    int r = in[0].rank;
    const char *mode = eg_node_attr_string(n, "mode", "constant");
    if (strcmp(mode, "constant") == 0)
        p->mode = PAD_CONSTANT;
    else if (strcmp(mode, "reflect") == 0)
        p->mode = PAD_REFLECT;
    else if (strcmp(mode, "edge") == 0)
        p->mode = PAD_EDGE;
    else
        return eg_node_error(err, INFERD_EUNSUPPORTED, n, "mode %.40s is not supported", mode);
    int64_t pads[2 * EG_MAX_RANK], axes[EG_MAX_RANK];
    int count, na = -1;
    if (n->opset < 11) {
        int present;
        int rc = eg_attr_ints(n, "pads", pads, 2 * EG_MAX_RANK, &present, err);
        if (rc < 0)
            return rc;
        count = rc;
    } else {
        int rc = eg_const_ints(n, in, 1, "pads", pads, 2 * EG_MAX_RANK, &count, err);
        if (!rc && eg_in_present(n, 3))
            rc = eg_const_ints(n, in, 3, "axes", axes, EG_MAX_RANK, &na, err);
        if (!rc && na >= 0)
            rc = eg_normalize_axes(n, axes, na, r, err);
        if (rc)
            return rc;
    }
    if (na < 0) {
        na = r;
        for (int k = 0; k < r; k++)
            axes[k] = k;
    }
    if (count != 2 * na)
        return eg_node_error(err, INFERD_EINVAL, n, "has %d pads for %d axes", count, na);
    memset(p->begin, 0, sizeof p->begin);
    memset(p->end, 0, sizeof p->end);
    for (int k = 0; k < na; k++) {
        int d = (int)axes[k];
        int64_t b = pads[k], e = pads[k + na], dim = in[0].dims[d];
        if (b < -EG_MAX_NUMEL || b > EG_MAX_NUMEL || e < -EG_MAX_NUMEL || e > EG_MAX_NUMEL ||
            dim + b + e < 0)
            return eg_node_error(err, INFERD_EINVAL, n,
                                 "pads %" PRId64 ",%" PRId64 " do not fit axis %d of size %" PRId64,
                                 b, e, d, dim);
        // Reflection needs that many elements to mirror; edge needs one to repeat.
        if ((p->mode == PAD_REFLECT && (b >= dim || e >= dim) && (b > 0 || e > 0)) ||
            (p->mode == PAD_EDGE && dim == 0 && (b > 0 || e > 0)))
            return eg_node_error(err, INFERD_EINVAL, n,
                                 "%s padding of %" PRId64 ",%" PRId64
                                 " on axis %d of size %" PRId64,
                                 mode, b, e, d, dim);
        p->begin[d] = b;
        p->end[d] = e;
    }
    return 0;
}

static int infer_pad(const eg_node *n, const eg_tensor *in, eg_tensor *out, inferd_error *err) {
    pad_plan p;
    int rc = pad_plan_make(n, in, &p, err);
    if (!rc && n->opset >= 11 && eg_in_present(n, 2)) {
        rc = eg_check_same_dtype(n, in, 0, 2, err);
        if (!rc && eg_numel(&in[2]) != 1)
            rc = eg_node_error(err, INFERD_EINVAL, n, "constant_value must have one element");
    }
    if (rc)
        return rc;
    eg_set_out_like(&out[0], &in[0]);
    for (int d = 0; d < in[0].rank; d++)
        out[0].dims[d] = in[0].dims[d] + p.begin[d] + p.end[d];
    return 0;
}

/* Input index for output index o on an axis, or -1 for a constant-padded position. */
static inline int64_t pad_map(int64_t o, int64_t begin, int64_t dim, pad_mode mode) {
    int64_t i = o - begin;
    if (i >= 0 && i < dim)
        return i;
    if (mode == PAD_CONSTANT)
        return -1;
    if (mode == PAD_EDGE)
        return i < 0 ? 0 : dim - 1;
    // Reflect without repeating the edge; pads are < dim, so one reflection suffices.
    return i < 0 ? -i : 2 * (dim - 1) - i;
}

static int run_pad(const eg_node *n, const eg_tensor *in, eg_tensor *out, const eg_run_ctx *ctx,
                   inferd_error *err) {
    pad_plan p;
    int rc = pad_plan_make(n, in, &p, err);
    if (rc)
        return rc;
    int r = in[0].rank;
    size_t es = inferd_dtype_size(in[0].dtype);
    int64_t no = eg_numel(&out[0]);
    // The constant: input 2 (opset 11+) or the value attribute, converted to the input dtype.
    char value[8] = {0};
    if (n->opset >= 11 && eg_in_present(n, 2) && in[2].data) {
        memcpy(value, in[2].data, es);
    } else if (n->opset < 11) {
        float v = eg_node_attr_float(n, "value", 0.0f);
        if (in[0].dtype == INFERD_DTYPE_F32)
            memcpy(value, &v, 4);
        else if (in[0].dtype == INFERD_DTYPE_F64) {
            double dv = v;
            memcpy(value, &dv, 8);
        }
    }
    if (no == 0)
        return 0;
    if (r == 0) {
        memcpy(out[0].data, in[0].data, es);
        return 0;
    }
    int64_t istride[EG_MAX_RANK];
    istride[r - 1] = 1;
    for (int i = r - 2; i >= 0; i--)
        istride[i] = istride[i + 1] * in[0].dims[i + 1];
    int64_t inner = out[0].dims[r - 1], rows = no / inner, idim = in[0].dims[r - 1];
    int64_t b = p.begin[r - 1];
    // Output positions [lo, hi) of the innermost axis copy input elements lo-b .. hi-b-1.
    int64_t lo = b > 0 ? b : 0, hi = b + idim < inner ? b + idim : inner;
    const char *src = in[0].data;
    char *dst = out[0].data;
    int nt = eg_par_threads(ctx, no);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t row = 0; row < rows; row++) {
        int64_t rem = row, off = 0;
        int fill = 0;
        for (int i = r - 2; i >= 0; i--) {
            int64_t o = rem % out[0].dims[i];
            rem /= out[0].dims[i];
            int64_t ii = pad_map(o, p.begin[i], in[0].dims[i], p.mode);
            if (ii < 0)
                fill = 1;
            else
                off += ii * istride[i];
        }
        char *d = dst + (size_t)(row * inner) * es;
        if (fill) {
            fill_value(d, value, es, inner);
            continue;
        }
        const char *s = src + (size_t)off * es;
        for (int64_t j = 0; j < lo && j < inner; j++) {
            int64_t ii = pad_map(j, b, idim, p.mode);
            memcpy(d + (size_t)j * es, ii < 0 ? value : s + (size_t)ii * es, es);
        }
        if (hi > lo)
            memcpy(d + (size_t)lo * es, s + (size_t)(lo - b) * es, (size_t)(hi - lo) * es);
        for (int64_t j = hi > lo ? hi : lo; j < inner; j++) {
            int64_t ii = pad_map(j, b, idim, p.mode);
            memcpy(d + (size_t)j * es, ii < 0 ? value : s + (size_t)ii * es, es);
        }
    }
    return 0;
}

EG_OP_IMPL(Pad, 1, 4, 1, 1, infer_pad, run_pad, NULL, 0);

/* ---- Transpose ---- */

static int transpose_perm(const eg_node *n, int r, int64_t *perm, inferd_error *err) {
    int present;
    int count = eg_attr_ints(n, "perm", perm, EG_MAX_RANK, &present, err);
    if (count < 0)
        return count;
    if (!present) {
        for (int i = 0; i < r; i++)
            perm[i] = r - 1 - i;
        return 0;
    }
    if (count != r)
        return eg_node_error(err, INFERD_EINVAL, n, "perm has %d entries for rank %d", count, r);
    unsigned seen = 0;
    for (int i = 0; i < r; i++) {
        if (perm[i] < 0 || perm[i] >= r || (seen & (1u << perm[i])))
            return eg_node_error(err, INFERD_EINVAL, n, "perm is not a permutation of 0..%d",
                                 r - 1);
        seen |= 1u << perm[i];
    }
    return 0;
}

static int infer_transpose(const eg_node *n, const eg_tensor *in, eg_tensor *out,
                           inferd_error *err) {
    int64_t perm[EG_MAX_RANK];
    int rc = transpose_perm(n, in[0].rank, perm, err);
    if (rc)
        return rc;
    eg_set_out_like(&out[0], &in[0]);
    for (int i = 0; i < in[0].rank; i++)
        out[0].dims[i] = in[0].dims[perm[i]];
    return 0;
}

static int run_transpose(const eg_node *n, const eg_tensor *in, eg_tensor *out,
                         const eg_run_ctx *ctx, inferd_error *err) {
    int64_t perm[EG_MAX_RANK];
    int rc = transpose_perm(n, in[0].rank, perm, err);
    if (rc)
        return rc;
    int r = in[0].rank;
    size_t es = inferd_dtype_size(in[0].dtype);
    int64_t no = eg_numel(&out[0]);
    if (no == 0)
        return 0;
    int64_t istride[EG_MAX_RANK];
    if (r > 0)
        istride[r - 1] = 1;
    for (int i = r - 2; i >= 0; i--)
        istride[i] = istride[i + 1] * in[0].dims[i + 1];
    // Output dims in order with the input stride each walks; size-1 dims dropped and output
    // neighbours that are neighbours in the input too merged.
    int64_t dims[EG_MAX_RANK], st[EG_MAX_RANK];
    int m = 0;
    for (int i = 0; i < r; i++) {
        int64_t d = out[0].dims[i], s = istride[perm[i]];
        if (d == 1)
            continue;
        if (m > 0 && st[m - 1] == s * d) {
            dims[m - 1] *= d;
            st[m - 1] = s;
            continue;
        }
        dims[m] = d;
        st[m] = s;
        m++;
    }
    if (m == 0 || (m == 1 && st[0] == 1)) {
        memcpy(out[0].data, in[0].data, (size_t)no * es);
        return 0;
    }
    int64_t inner = dims[m - 1], ist = st[m - 1], rows = no / inner;
    const char *src = in[0].data;
    char *dst = out[0].data;
    int nt = eg_par_threads(ctx, no);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t row = 0; row < rows; row++) {
        int64_t rem = row, off = 0;
        for (int i = m - 2; i >= 0; i--) {
            off += (rem % dims[i]) * st[i];
            rem /= dims[i];
        }
        char *d = dst + (size_t)(row * inner) * es;
        const char *s = src + (size_t)off * es;
        if (ist == 1) {
            memcpy(d, s, (size_t)inner * es);
            continue;
        }
        switch (es) {
        case 1:
            for (int64_t j = 0; j < inner; j++)
                d[j] = s[j * ist];
            break;
        case 2:
            for (int64_t j = 0; j < inner; j++)
                ((uint16_t *)d)[j] = ((const uint16_t *)s)[j * ist];
            break;
        case 4:
            for (int64_t j = 0; j < inner; j++)
                ((uint32_t *)d)[j] = ((const uint32_t *)s)[j * ist];
            break;
        default:
            for (int64_t j = 0; j < inner; j++)
                ((uint64_t *)d)[j] = ((const uint64_t *)s)[j * ist];
            break;
        }
    }
    return 0;
}

EG_OP_IMPL(Transpose, 1, 1, 1, 1, infer_transpose, run_transpose, NULL, 0);
