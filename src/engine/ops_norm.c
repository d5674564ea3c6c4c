/* Normalisations: LayerNormalization (opset 17, with its optional Mean and InvStdDev
 * outputs), BatchNormalization in inference mode, and InstanceNormalization. Statistics are
 * accumulated in double (two passes: mean, then variance) so the reference stays accurate for
 * long rows. */
#include <inttypes.h>
#include <math.h>

#include "engine/ops_impl.h"

/* ---- LayerNormalization ---- */

typedef struct ln_params {
    int axis;
    float eps;
    int64_t outer, D; /* rows and normalised elements per row */
} ln_params;

static int ln_params_get(const eg_node *n, const eg_tensor *x, ln_params *p, inferd_error *err) {
    int64_t a;
    int rc = eg_attr_i64(n, "axis", -1, INT64_MIN, INT64_MAX, &a, err);
    if (!rc)
        rc = eg_attr_f32(n, "epsilon", 1e-5f, &p->eps, err);
    if (!rc)
        rc = eg_normalize_axis(n, a, x->rank, &p->axis, err);
    if (rc)
        return rc;
    p->outer = eg_dims_prod(x->dims, 0, p->axis);
    p->D = eg_dims_prod(x->dims, p->axis, x->rank);
    return 0;
}

/* Scale and B must broadcast one way into the normalised shape dims[axis:]. */
static int check_into(const eg_node *n, const eg_tensor *in, int i, const eg_tensor *x, int axis,
                      inferd_error *err) {
    int rn = x->rank - axis;
    int ok = in[i].rank <= rn;
    for (int d = 0; ok && d < in[i].rank; d++) {
        int64_t want = x->dims[axis + rn - in[i].rank + d];
        ok = in[i].dims[d] == want || in[i].dims[d] == 1;
    }
    if (ok)
        return 0;
    char s[96], sx[96];
    return eg_node_error(err, INFERD_EINVAL, n, "input %d %s does not broadcast to %s from axis %d",
                         i, eg_tensor_str(&in[i], s, sizeof s), eg_tensor_str(x, sx, sizeof sx),
                         axis);
}

static int infer_layernorm(const eg_node *n, const eg_tensor *in, eg_tensor *out,
                           inferd_error *err) {
    ln_params p;
    int64_t stash;
    int rc = eg_check_dtype(n, in, 0, EG_DT_FLOAT, err);
    if (!rc)
        rc = eg_check_rank(n, in, 0, 1, EG_MAX_RANK, err);
    if (!rc)
        rc = ln_params_get(n, &in[0], &p, err);
    if (!rc)
        rc = eg_attr_i64(n, "stash_type", 1, INT64_MIN, INT64_MAX, &stash, err);
    for (int i = 1; i < 3 && !rc; i++)
        if (eg_in_present(n, i)) {
            rc = eg_check_same_dtype(n, in, 0, i, err);
            if (!rc)
                rc = check_into(n, in, i, &in[0], p.axis, err);
        }
    if (rc)
        return rc;
    if (stash != 1 && stash != INFERD_DTYPE_F64)
        return eg_node_error(err, INFERD_EUNSUPPORTED, n, "stash_type %" PRId64, stash);
    eg_set_out_like(&out[0], &in[0]);
    for (int j = 1; j < 3; j++)
        if (eg_out_present(n, j)) {
            eg_set_out_like(&out[j], &in[0]);
            out[j].dtype = (inferd_dtype)stash;
            for (int d = p.axis; d < in[0].rank; d++)
                out[j].dims[d] = 1;
        }
    return 0;
}

/* Scale and bias expanded to D elements each, in scratch. */
static size_t scratch_layernorm(const eg_node *n, const eg_tensor *in, const eg_tensor *out,
                                int threads) {
    (void)out;
    (void)threads;
    ln_params p;
    if (ln_params_get(n, &in[0], &p, NULL))
        return 0;
    return (size_t)p.D * 2 * inferd_dtype_size(in[0].dtype);
}

#define LN_ROWS(T)                                                                                 \
    do {                                                                                           \
        const T *x = in[0].data;                                                                   \
        T *y = out[0].data;                                                                        \
        const T *g = sc, *b = bi;                                                                  \
        _Pragma("omp parallel for num_threads(nt) if (nt > 1) schedule(static)") for (int64_t r =  \
                                                                                          0;       \
                                                                                      r < p.outer; \
                                                                                      r++) {       \
            const T *xr = x + r * p.D;                                                             \
            T *yr = y + r * p.D;                                                                   \
            double s = 0, v = 0;                                                                   \
            for (int64_t j = 0; j < p.D; j++)                                                      \
                s += xr[j];                                                                        \
            double mean = p.D ? s / (double)p.D : 0;                                               \
            for (int64_t j = 0; j < p.D; j++) {                                                    \
                double d = xr[j] - mean;                                                           \
                v += d * d;                                                                        \
            }                                                                                      \
            double inv = 1.0 / sqrt((p.D ? v / (double)p.D : 0) + (double)p.eps);                  \
            for (int64_t j = 0; j < p.D; j++)                                                      \
                yr[j] = (T)(((double)xr[j] - mean) * inv * g[j] + b[j]);                           \
            if (mean_out)                                                                          \
                store_stat(mean_out, stash, r, mean);                                              \
            if (inv_out)                                                                           \
                store_stat(inv_out, stash, r, inv);                                                \
        }                                                                                          \
    } while (0)

static inline void store_stat(void *dst, inferd_dtype dt, int64_t r, double v) {
    if (dt == INFERD_DTYPE_F64)
        ((double *)dst)[r] = v;
    else
        ((float *)dst)[r] = (float)v;
}

static int run_layernorm(const eg_node *n, const eg_tensor *in, eg_tensor *out,
                         const eg_run_ctx *ctx, inferd_error *err) {
    ln_params p;
    int rc = ln_params_get(n, &in[0], &p, err);
    if (rc)
        return rc;
    size_t es = inferd_dtype_size(in[0].dtype);
    char *scratch = eg_scratch(n, ctx, (size_t)p.D * 2 * es, err);
    if (!scratch)
        return INFERD_EINTERNAL;
    // Expand Scale (default 1) and B (default 0) to one value per normalised element.
    void *sc = scratch, *bi = scratch + (size_t)p.D * es;
    eg_tensor row = {.dtype = in[0].dtype, .rank = in[0].rank - p.axis};
    memcpy(row.dims, in[0].dims + p.axis, sizeof(int64_t) * (size_t)row.rank);
    for (int i = 1; i < 3; i++) {
        row.data = i == 1 ? sc : bi;
        if (eg_in_present(n, i)) {
            eg_broadcast_copy(&in[i], &row, NULL);
        } else {
            for (int64_t j = 0; j < p.D; j++) {
                if (es == 4)
                    ((float *)row.data)[j] = i == 1 ? 1.0f : 0.0f;
                else
                    ((double *)row.data)[j] = i == 1 ? 1.0 : 0.0;
            }
        }
    }
    void *mean_out = eg_out_present(n, 1) ? out[1].data : NULL;
    void *inv_out = eg_out_present(n, 2) ? out[2].data : NULL;
    inferd_dtype stash = eg_out_present(n, 1)   ? out[1].dtype
                         : eg_out_present(n, 2) ? out[2].dtype
                                                : INFERD_DTYPE_F32;
    int nt = eg_par_threads(ctx, p.outer * p.D * 4);
    if (in[0].dtype == INFERD_DTYPE_F32)
        LN_ROWS(float);
    else
        LN_ROWS(double);
    return 0;
}

EG_OP_IMPL(LayerNormalization, 2, 3, 1, 3, infer_layernorm, run_layernorm, scratch_layernorm, 0);

/* ---- BatchNormalization / InstanceNormalization ---- */

/* Checks that inputs first..last are [C] vectors of X's dtype. */
static int check_channel_vectors(const eg_node *n, const eg_tensor *in, int first, int last,
                                 int64_t C, inferd_error *err) {
    for (int i = first; i <= last; i++) {
        int rc = eg_check_same_dtype(n, in, 0, i, err);
        if (rc)
            return rc;
        if (in[i].rank != 1 || in[i].dims[0] != C) {
            char s[96];
            return eg_node_error(err, INFERD_EINVAL, n, "input %d is %s, expected [%" PRId64 "]", i,
                                 eg_tensor_str(&in[i], s, sizeof s), C);
        }
    }
    return 0;
}

static int infer_batchnorm(const eg_node *n, const eg_tensor *in, eg_tensor *out,
                           inferd_error *err) {
    int64_t training = 0;
    float eps;
    int rc = eg_check_dtype(n, in, 0, EG_DT_FLOAT, err);
    if (!rc)
        rc = eg_check_rank(n, in, 0, 2, EG_MAX_RANK, err);
    if (!rc)
        rc = check_channel_vectors(n, in, 1, 4, in[0].dims[1], err);
    if (!rc)
        rc = eg_attr_i64(n, "training_mode", 0, 0, 1, &training, err);
    if (!rc)
        rc = eg_attr_f32(n, "epsilon", 1e-5f, &eps, err);
    if (rc)
        return rc;
    int wants_stats = 0;
    for (int j = 1; j < n->n_out; j++)
        wants_stats |= eg_out_present(n, j);
    if (training || wants_stats)
        return eg_node_error(err, INFERD_EUNSUPPORTED, n,
                             "training_mode and the running statistics outputs are not supported");
    eg_set_out_like(&out[0], &in[0]);
    return 0;
}

#define BN_LOOP(T)                                                                                 \
    do {                                                                                           \
        const T *x = in[0].data, *sc = in[1].data, *b = in[2].data, *mu = in[3].data,              \
                *var = in[4].data;                                                                 \
        T *y = out[0].data;                                                                        \
        _Pragma("omp parallel for num_threads(nt) if (nt > 1) schedule(static)") for (int64_t nc = \
                                                                                          0;       \
                                                                                      nc < N * C;  \
                                                                                      nc++) {      \
            int64_t c = nc % C;                                                                    \
            T a = (T)(sc[c] / sqrt((double)var[c] + (double)eps)), m = mu[c], bb = b[c];           \
            const T *xs = x + nc * S;                                                              \
            T *ys = y + nc * S;                                                                    \
            for (int64_t s = 0; s < S; s++)                                                        \
                ys[s] = (xs[s] - m) * a + bb;                                                      \
        }                                                                                          \
    } while (0)

static int run_batchnorm(const eg_node *n, const eg_tensor *in, eg_tensor *out,
                         const eg_run_ctx *ctx, inferd_error *err) {
    float eps;
    int rc = eg_attr_f32(n, "epsilon", 1e-5f, &eps, err);
    if (rc)
        return rc;
    int64_t N = in[0].dims[0], C = in[0].dims[1], S = eg_dims_prod(in[0].dims, 2, in[0].rank);
    int nt = eg_par_threads(ctx, N * C * S);
    if (in[0].dtype == INFERD_DTYPE_F32)
        BN_LOOP(float);
    else
        BN_LOOP(double);
    return 0;
}

EG_OP_IMPL(BatchNormalization, 5, 5, 1, 5, infer_batchnorm, run_batchnorm, NULL, EG_OPF_INPLACE);

static int infer_instancenorm(const eg_node *n, const eg_tensor *in, eg_tensor *out,
                              inferd_error *err) {
    float eps;
    int rc = eg_check_dtype(n, in, 0, EG_DT_FLOAT, err);
    if (!rc)
        rc = eg_check_rank(n, in, 0, 3, EG_MAX_RANK, err);
    if (!rc)
        rc = check_channel_vectors(n, in, 1, 2, in[0].dims[1], err);
    if (!rc)
        rc = eg_attr_f32(n, "epsilon", 1e-5f, &eps, err);
    if (rc)
        return rc;
    eg_set_out_like(&out[0], &in[0]);
    return 0;
}

#define IN_LOOP(T)                                                                                 \
    do {                                                                                           \
        const T *x = in[0].data, *sc = in[1].data, *b = in[2].data;                                \
        T *y = out[0].data;                                                                        \
        _Pragma("omp parallel for num_threads(nt) if (nt > 1) schedule(static)") for (int64_t nc = \
                                                                                          0;       \
                                                                                      nc < N * C;  \
                                                                                      nc++) {      \
            int64_t c = nc % C;                                                                    \
            const T *xs = x + nc * S;                                                              \
            T *ys = y + nc * S;                                                                    \
            double s = 0, v = 0;                                                                   \
            for (int64_t k = 0; k < S; k++)                                                        \
                s += xs[k];                                                                        \
            double mean = S ? s / (double)S : 0;                                                   \
            for (int64_t k = 0; k < S; k++)                                                        \
                v += (xs[k] - mean) * (xs[k] - mean);                                              \
            double a = sc[c] / sqrt((S ? v / (double)S : 0) + (double)eps);                        \
            for (int64_t k = 0; k < S; k++)                                                        \
                ys[k] = (T)((xs[k] - mean) * a + b[c]);                                            \
        }                                                                                          \
    } while (0)

static int run_instancenorm(const eg_node *n, const eg_tensor *in, eg_tensor *out,
                            const eg_run_ctx *ctx, inferd_error *err) {
    float eps;
    int rc = eg_attr_f32(n, "epsilon", 1e-5f, &eps, err);
    if (rc)
        return rc;
    int64_t N = in[0].dims[0], C = in[0].dims[1], S = eg_dims_prod(in[0].dims, 2, in[0].rank);
    int nt = eg_par_threads(ctx, N * C * S * 3);
    if (in[0].dtype == INFERD_DTYPE_F32)
        IN_LOOP(float);
    else
        IN_LOOP(double);
    return 0;
}

EG_OP_IMPL(InstanceNormalization, 3, 3, 1, 1, infer_instancenorm, run_instancenorm, NULL,
           EG_OPF_INPLACE);
