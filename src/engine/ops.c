/* ops.c: the table of standard ops (each defined in an ops_*.c file), eg_op_def_get, the
 * helpers ops.h declares, and the machinery ops_impl.h declares: the checks every op gets
 * before and after its own infer, validating readers for inputs and attributes, and the
 * broadcasting loops. */
#include "engine/ops.h"

#include <inttypes.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "engine/ops_impl.h"

#define EG_OP_IMPL_PTR_(name) [EG_OP_##name] = &eg_impl_##name,
static const eg_op_impl *const impls[EG_OP_FUSED_FIRST_] = {EG_STANDARD_OPS(EG_OP_IMPL_PTR_)};
#undef EG_OP_IMPL_PTR_

const eg_op_def *eg_standard_op_def(eg_op op) {
    if ((int)op <= 0 || op >= EG_OP_FUSED_FIRST_ || !impls[op])
        return NULL;
    return &impls[op]->def;
}

const eg_op_def *eg_op_def_get(eg_op op) {
    if ((int)op <= 0 || op >= EG_OP_COUNT_)
        return NULL;
    return op >= EG_OP_FUSED_FIRST_ ? eg_fused_op_def(op) : eg_standard_op_def(op);
}

int eg_node_error(inferd_error *err, int code, const eg_node *n, const char *fmt, ...) {
    if (!err)
        return code;
    char node[160], msg[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return inferd_error_set(err, code, "%s: %s", eg_node_str(n, node, sizeof node), msg);
}

int eg_normalize_axis(const eg_node *n, int64_t axis, int rank, int *out, inferd_error *err) {
    if (axis < -(int64_t)rank || axis >= rank)
        return eg_node_error(err, INFERD_EINVAL, n, "axis %" PRId64 " is out of range for rank %d",
                             axis, rank);
    *out = (int)(axis < 0 ? axis + rank : axis);
    return 0;
}

int eg_broadcast_shape(const eg_node *n, const eg_tensor *a, const eg_tensor *b, eg_tensor *out,
                       inferd_error *err) {
    int rank = a->rank > b->rank ? a->rank : b->rank;
    int64_t dims[EG_MAX_RANK];
    for (int i = 0; i < rank; i++) {
        int ia = i - (rank - a->rank), ib = i - (rank - b->rank);
        int64_t da = ia >= 0 ? a->dims[ia] : 1, db = ib >= 0 ? b->dims[ib] : 1;
        if (da != db && da != 1 && db != 1) {
            char sa[96], sb[96];
            return eg_node_error(err, INFERD_EINVAL, n, "shapes %s and %s cannot be broadcast",
                                 eg_tensor_str(a, sa, sizeof sa), eg_tensor_str(b, sb, sizeof sb));
        }
        // A dim of 0 against a dim of 1 broadcasts to 0, as in numpy.
        dims[i] = da == 1 ? db : da;
    }
    out->rank = rank;
    memcpy(out->dims, dims, sizeof(int64_t) * (size_t)rank);
    return 0;
}

/* ---- checked infer ---- */

static int check_tensor_shape(const eg_node *n, const eg_tensor *t, const char *what, int idx,
                              inferd_error *err) {
    if (t->rank < 0 || t->rank > EG_MAX_RANK)
        return eg_node_error(err, INFERD_EINVAL, n, "%s %d has rank %d (at most %d supported)",
                             what, idx, t->rank, EG_MAX_RANK);
    int64_t numel = 1;
    for (int d = 0; d < t->rank; d++) {
        if (t->dims[d] < 0 || t->dims[d] > EG_MAX_NUMEL)
            return eg_node_error(err, INFERD_EINVAL, n, "%s %d has dim %d of size %" PRId64, what,
                                 idx, d, t->dims[d]);
        numel *= t->dims[d];
        if (numel > EG_MAX_NUMEL)
            break;
    }
    if (numel > EG_MAX_NUMEL) {
        char s[128];
        return eg_node_error(err, INFERD_EINVAL, n,
                             "%s %d would be %s, over the limit of %" PRId64 " elements", what, idx,
                             eg_tensor_str(t, s, sizeof s), EG_MAX_NUMEL);
    }
    return 0;
}

int eg_infer_checked(const eg_node *n, const eg_tensor *in, eg_tensor *out, inferd_error *err) {
    if ((int)n->op <= 0 || n->op >= EG_OP_FUSED_FIRST_ || !impls[n->op])
        return eg_node_error(err, INFERD_EUNSUPPORTED, n, "not a standard op");
    const eg_op_impl *im = impls[n->op];
    if (n->n_in < im->min_in || n->n_in > im->max_in) {
        if (im->min_in == im->max_in)
            return eg_node_error(err, INFERD_EINVAL, n, "has %d inputs, expected %d", n->n_in,
                                 im->min_in);
        return eg_node_error(err, INFERD_EINVAL, n, "has %d inputs, expected %d to %d", n->n_in,
                             im->min_in, im->max_in);
    }
    if (n->n_out < im->min_out || n->n_out > im->max_out)
        return eg_node_error(err, INFERD_EINVAL, n, "has %d outputs, expected %d to %d", n->n_out,
                             im->min_out, im->max_out);
    if (!im->out0_optional && !eg_out_present(n, 0))
        return eg_node_error(err, INFERD_EINVAL, n, "has no first output");
    for (int i = 0; i < n->n_in; i++) {
        if (!eg_in_present(n, i)) {
            if (i < im->min_in)
                return eg_node_error(err, INFERD_EINVAL, n, "input %d is required", i);
            continue;
        }
        if (inferd_dtype_size(in[i].dtype) == 0)
            return eg_node_error(err, INFERD_EUNSUPPORTED, n, "input %d has dtype %s", i,
                                 inferd_dtype_name(in[i].dtype));
        int rc = check_tensor_shape(n, &in[i], "input", i, err);
        if (rc)
            return rc;
    }
    for (int j = 0; j < n->n_out; j++)
        memset(&out[j], 0, sizeof out[j]);
    int rc = im->infer(n, in, out, err);
    if (rc)
        return rc;
    for (int j = 0; j < n->n_out; j++) {
        if (!eg_out_present(n, j))
            continue;
        if (INFERD_NEVER(inferd_dtype_size(out[j].dtype) == 0))
            return eg_node_error(err, INFERD_EINTERNAL, n, "output %d has no dtype", j);
        out[j].data = NULL;
        rc = check_tensor_shape(n, &out[j], "output", j, err);
        if (rc)
            return rc;
    }
    return 0;
}

/* ---- input and attribute readers ---- */

int eg_check_dtype(const eg_node *n, const eg_tensor *in, int i, unsigned mask, inferd_error *err) {
    if (eg_dtype_in(in[i].dtype, mask))
        return 0;
    return eg_node_error(err, INFERD_EUNSUPPORTED, n, "input %d of dtype %s is not supported", i,
                         inferd_dtype_name(in[i].dtype));
}

int eg_check_same_dtype(const eg_node *n, const eg_tensor *in, int i, int j, inferd_error *err) {
    if (in[i].dtype == in[j].dtype)
        return 0;
    return eg_node_error(err, INFERD_EINVAL, n, "input %d is %s but input %d is %s", i,
                         inferd_dtype_name(in[i].dtype), j, inferd_dtype_name(in[j].dtype));
}

int eg_check_rank(const eg_node *n, const eg_tensor *in, int i, int lo, int hi, inferd_error *err) {
    if (in[i].rank >= lo && in[i].rank <= hi)
        return 0;
    if (lo == hi)
        return eg_node_error(err, INFERD_EINVAL, n, "input %d has rank %d, expected %d", i,
                             in[i].rank, lo);
    return eg_node_error(err, INFERD_EINVAL, n, "input %d has rank %d, expected %d to %d", i,
                         in[i].rank, lo, hi);
}

int eg_require_const(const eg_node *n, const eg_tensor *in, int i, const char *what,
                     inferd_error *err) {
    if (in[i].data)
        return 0;
    return eg_node_error(err, INFERD_EUNSUPPORTED, n,
                         "input %d (%s) must be known when the model is planned", i, what);
}

int eg_const_ints(const eg_node *n, const eg_tensor *in, int i, const char *what, int64_t *buf,
                  int cap, int *count, inferd_error *err) {
    int rc = eg_require_const(n, in, i, what, err);
    if (rc)
        return rc;
    if (!eg_dtype_in(in[i].dtype, EG_DT_INDEX))
        return eg_node_error(err, INFERD_EINVAL, n, "input %d (%s) must be int32 or int64, not %s",
                             i, what, inferd_dtype_name(in[i].dtype));
    if (in[i].rank > 1)
        return eg_node_error(err, INFERD_EINVAL, n, "input %d (%s) must be 1-D, not rank %d", i,
                             what, in[i].rank);
    int64_t c = eg_numel(&in[i]);
    if (c > cap)
        return eg_node_error(err, INFERD_EINVAL, n,
                             "input %d (%s) has %" PRId64 " values, at most %d allowed", i, what, c,
                             cap);
    for (int64_t k = 0; k < c; k++)
        buf[k] = eg_tensor_get_i64(&in[i], k);
    *count = (int)c;
    return 0;
}

static int scalar_input(const eg_node *n, const eg_tensor *in, int i, const char *what,
                        inferd_error *err) {
    if (what) {
        int rc = eg_require_const(n, in, i, what, err);
        if (rc)
            return rc;
    } else if (!in[i].data) {
        return 1;
    }
    if (eg_numel(&in[i]) != 1)
        return eg_node_error(err, INFERD_EINVAL, n, "input %d%s%s%s must have one element", i,
                             what ? " (" : "", what ? what : "", what ? ")" : "");
    if (!eg_dtype_in(in[i].dtype, EG_DT_ANY & ~EG_DT(INFERD_DTYPE_F16) & ~EG_DT(INFERD_DTYPE_BF16)))
        return eg_node_error(err, INFERD_EUNSUPPORTED, n, "input %d of dtype %s is not supported",
                             i, inferd_dtype_name(in[i].dtype));
    return 0;
}

int eg_scalar_i64(const eg_node *n, const eg_tensor *in, int i, const char *what, int64_t *v,
                  inferd_error *err) {
    int rc = scalar_input(n, in, i, what, err);
    if (rc)
        return rc;
    if (in[i].dtype == INFERD_DTYPE_F32 || in[i].dtype == INFERD_DTYPE_F64) {
        double d = eg_tensor_get_f64(&in[i], 0);
        // Out-of-range float to int conversion is undefined in C; reject it instead.
        if (!(d >= -9.2e18 && d <= 9.2e18))
            return eg_node_error(err, INFERD_EINVAL, n, "input %d holds %g, not an integer", i, d);
        *v = (int64_t)d;
    } else {
        *v = eg_tensor_get_i64(&in[i], 0);
    }
    return 0;
}

int eg_scalar_f64(const eg_node *n, const eg_tensor *in, int i, const char *what, double *v,
                  inferd_error *err) {
    int rc = scalar_input(n, in, i, what, err);
    if (rc)
        return rc;
    *v = eg_tensor_get_f64(&in[i], 0);
    return 0;
}

int eg_attr_i64(const eg_node *n, const char *name, int64_t dflt, int64_t lo, int64_t hi,
                int64_t *v, inferd_error *err) {
    const eg_attr *a = eg_node_attr(n, name);
    if (!a) {
        *v = dflt;
        return 0;
    }
    if (a->type != EG_ATTR_TYPE_INT)
        return eg_node_error(err, INFERD_EINVAL, n, "attribute %s must be an int", name);
    if (a->i < lo || a->i > hi)
        return eg_node_error(err, INFERD_EINVAL, n,
                             "attribute %s is %" PRId64 ", expected %" PRId64 " to %" PRId64, name,
                             a->i, lo, hi);
    *v = a->i;
    return 0;
}

int eg_attr_f32(const eg_node *n, const char *name, float dflt, float *v, inferd_error *err) {
    const eg_attr *a = eg_node_attr(n, name);
    if (!a) {
        *v = dflt;
        return 0;
    }
    if (a->type != EG_ATTR_TYPE_FLOAT)
        return eg_node_error(err, INFERD_EINVAL, n, "attribute %s must be a float", name);
    if (!isfinite(a->f))
        return eg_node_error(err, INFERD_EINVAL, n, "attribute %s is not finite", name);
    *v = a->f;
    return 0;
}

int eg_attr_ints(const eg_node *n, const char *name, int64_t *buf, int cap, int *present,
                 inferd_error *err) {
    const eg_attr *a = eg_node_attr(n, name);
    *present = a != NULL;
    if (!a)
        return 0;
    if (a->type != EG_ATTR_TYPE_INTS)
        return eg_node_error(err, INFERD_EINVAL, n, "attribute %s must be a list of ints", name);
    if (a->n < 0 || a->n > cap)
        return eg_node_error(err, INFERD_EINVAL, n, "attribute %s has %d values, at most %d", name,
                             a->n, cap);
    if (a->n > 0)
        memcpy(buf, a->ints, sizeof(int64_t) * (size_t)a->n);
    return a->n;
}

int eg_normalize_axes(const eg_node *n, int64_t *axes, int count, int rank, inferd_error *err) {
    unsigned seen = 0;
    for (int k = 0; k < count; k++) {
        int a = 0;
        int rc = eg_normalize_axis(n, axes[k], rank, &a, err);
        if (rc)
            return rc;
        if (seen & (1u << a))
            return eg_node_error(err, INFERD_EINVAL, n, "axis %d is given twice", a);
        seen |= 1u << a;
        axes[k] = a;
    }
    return 0;
}

void *eg_scratch(const eg_node *n, const eg_run_ctx *ctx, size_t size, inferd_error *err) {
    if (size == 0) {
        static max_align_t none;
        return &none;
    }
    if (INFERD_NEVER(!ctx || !ctx->scratch || ctx->scratch_size < size)) {
        eg_node_error(err, INFERD_EINTERNAL, n, "needs %zu bytes of scratch, got %zu", size,
                      ctx ? ctx->scratch_size : 0);
        return NULL;
    }
    return ctx->scratch;
}

/* ---- broadcasting ---- */

void eg_bcast_init(eg_bcast *b, const eg_tensor *out, int n_in, const eg_tensor *const *ins) {
    int r = out->rank;
    int64_t dims[EG_MAX_RANK], st[3][EG_MAX_RANK];
    b->n_in = n_in;
    for (int k = 0; k < n_in; k++) {
        const eg_tensor *t = ins[k];
        int64_t s = 1;
        for (int i = r - 1; i >= 0; i--) {
            int ti = i - (r - t->rank);
            int64_t d = ti >= 0 ? t->dims[ti] : 1;
            st[k][i] = d == 1 ? 0 : s;
            s *= d;
        }
    }
    // Drop dims of size 1, then merge neighbours every input walks contiguously.
    int m = 0;
    for (int i = 0; i < r; i++) {
        if (out->dims[i] == 1)
            continue;
        if (m > 0) {
            int merge = 1;
            for (int k = 0; k < n_in; k++)
                if (st[k][m - 1] != st[k][i] * out->dims[i])
                    merge = 0;
            if (merge) {
                dims[m - 1] *= out->dims[i];
                for (int k = 0; k < n_in; k++)
                    st[k][m - 1] = st[k][i];
                continue;
            }
        }
        dims[m] = out->dims[i];
        for (int k = 0; k < n_in; k++)
            st[k][m] = st[k][i];
        m++;
    }
    if (m == 0) {
        dims[0] = 1;
        for (int k = 0; k < n_in; k++)
            st[k][0] = 0;
        m = 1;
    }
    b->rank = m;
    memcpy(b->dims, dims, sizeof(int64_t) * (size_t)m);
    for (int k = 0; k < n_in; k++)
        memcpy(b->strides[k], st[k], sizeof(int64_t) * (size_t)m);
    b->inner = dims[m - 1];
    b->rows = eg_dims_prod(dims, 0, m - 1);
    // A zero-sized output has no rows.
    for (int i = 0; i < m; i++)
        if (dims[i] == 0)
            b->rows = 0;
}

void eg_bcast_row(const eg_bcast *b, int64_t row, int64_t *off) {
    for (int k = 0; k < b->n_in; k++)
        off[k] = 0;
    for (int i = b->rank - 2; i >= 0 && row > 0; i--) {
        int64_t idx = row % b->dims[i];
        row /= b->dims[i];
        for (int k = 0; k < b->n_in; k++)
            off[k] += idx * b->strides[k][i];
    }
}

#define CHUNK ((int64_t)1 << 14)

void eg_binary_apply(const eg_tensor *a, const eg_tensor *b, eg_tensor *out, eg_binary_fn fn,
                     const eg_run_ctx *ctx) {
    int64_t na = eg_numel(a), nb = eg_numel(b), no = eg_numel(out);
    size_t ea = inferd_dtype_size(a->dtype), eb = inferd_dtype_size(b->dtype),
           eo = inferd_dtype_size(out->dtype);
    const char *pa = a->data, *pb = b->data;
    char *po = out->data;
    if (no == 0)
        return;
    int sa = -1, sb = -1;
    if (na == no && nb == no)
        sa = sb = 1;
    else if (na == no && nb == 1)
        sa = 1, sb = 0;
    else if (na == 1 && nb == no)
        sa = 0, sb = 1;
    if (sa >= 0) {
        // Elementwise or scalar: one flat loop, split into chunks for threads.
        int64_t nchunks = (no + CHUNK - 1) / CHUNK;
        int nt = eg_par_threads(ctx, no);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
        for (int64_t c = 0; c < nchunks; c++) {
            int64_t lo = c * CHUNK, len = no - lo < CHUNK ? no - lo : CHUNK;
            fn(pa + (size_t)(lo * sa) * ea, sa, pb + (size_t)(lo * sb) * eb, sb,
               po + (size_t)lo * eo, len);
        }
        return;
    }
    eg_bcast bc;
    const eg_tensor *ins[2] = {a, b};
    eg_bcast_init(&bc, out, 2, ins);
    int64_t inner = bc.inner, isa = bc.strides[0][bc.rank - 1], isb = bc.strides[1][bc.rank - 1];
    int nt = eg_par_threads(ctx, no);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t r = 0; r < bc.rows; r++) {
        int64_t off[3];
        eg_bcast_row(&bc, r, off);
        fn(pa + (size_t)off[0] * ea, isa, pb + (size_t)off[1] * eb, isb,
           po + (size_t)(r * inner) * eo, inner);
    }
}

static void copy_strided(char *dst, const char *src, int64_t stride, int64_t n, size_t es) {
    if (stride == 1) {
        memcpy(dst, src, (size_t)n * es);
        return;
    }
    // stride 0: repeat one element.
    switch (es) {
    case 1:
        memset(dst, *src, (size_t)n);
        break;
    case 2: {
        uint16_t v, *d = (uint16_t *)dst;
        memcpy(&v, src, 2);
        for (int64_t i = 0; i < n; i++)
            d[i] = v;
        break;
    }
    case 4: {
        uint32_t v, *d = (uint32_t *)dst;
        memcpy(&v, src, 4);
        for (int64_t i = 0; i < n; i++)
            d[i] = v;
        break;
    }
    case 8: {
        uint64_t v, *d = (uint64_t *)dst;
        memcpy(&v, src, 8);
        for (int64_t i = 0; i < n; i++)
            d[i] = v;
        break;
    }
    default: {
        for (int64_t i = 0; i < n; i++)
            memcpy(dst + (size_t)i * es, src, es);
        break;
    }
    }
}

void eg_broadcast_copy(const eg_tensor *x, eg_tensor *out, const eg_run_ctx *ctx) {
    int64_t no = eg_numel(out);
    size_t es = inferd_dtype_size(out->dtype);
    if (no == 0)
        return;
    if (eg_numel(x) == no) {
        if (out->data != x->data)
            memmove(out->data, x->data, (size_t)no * es);
        return;
    }
    eg_bcast bc;
    const eg_tensor *ins[1] = {x};
    eg_bcast_init(&bc, out, 1, ins);
    int64_t inner = bc.inner, is = bc.strides[0][bc.rank - 1];
    const char *px = x->data;
    char *po = out->data;
    int nt = eg_par_threads(ctx, no);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t r = 0; r < bc.rows; r++) {
        int64_t off[3];
        eg_bcast_row(&bc, r, off);
        copy_strided(po + (size_t)(r * inner) * es, px + (size_t)off[0] * es, is, inner, es);
    }
}
