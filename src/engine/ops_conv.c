/* Convolution and pooling over 1-D and 2-D inputs (N x C x [H x] W): Conv (groups, pads,
 * auto_pad, strides, dilations) as im2col plus the reference gemm, MaxPool (with Indices),
 * AveragePool, GlobalMaxPool and GlobalAveragePool.
 *
 * A 1-D input is handled as 2-D with a height of 1, so one loop nest serves both. Conv's
 * im2col buffer comes from scratch and covers a block of output positions at a time, so its
 * size is bounded by max(CONV_COL_ELEMS, weight size) whatever the input length. */
#include <float.h>
#include <inttypes.h>
#include <math.h>

#include "engine/ops_impl.h"

/* Elements of im2col buffer to aim for per block (16 MiB of floats). */
#define CONV_COL_ELEMS ((int64_t)1 << 22)

/* Spatial geometry in 2-D form: index 0 is height (1 for 1-D inputs), 1 is width. */
typedef struct geom {
    int64_t in[2], k[2], stride[2], dil[2], pb[2], pe[2], out[2];
} geom;

/* Reads up to nsp values of an int-list attribute into v[2 - nsp ..], keeping the defaults in
 * v otherwise; checks count and range. */
static int geom_attr(const eg_node *n, const char *name, int nsp, int64_t lo, int64_t *v,
                     inferd_error *err) {
    int64_t buf[2 * EG_MAX_RANK];
    int present;
    int c = eg_attr_ints(n, name, buf, 2 * EG_MAX_RANK, &present, err);
    if (c < 0)
        return c;
    if (!present)
        return 0;
    if (c != nsp)
        return eg_node_error(err, INFERD_EINVAL, n, "%s has %d values for %d spatial dims", name, c,
                             nsp);
    for (int i = 0; i < c; i++) {
        if (buf[i] < lo || buf[i] > EG_MAX_NUMEL)
            return eg_node_error(err, INFERD_EINVAL, n, "%s holds %" PRId64, name, buf[i]);
        v[2 - nsp + i] = buf[i];
    }
    return 0;
}

/* Fills g from the spatial dims of x, the kernel (kernel[] for the nsp spatial dims) and the
 * attributes. pool: pads must be smaller than the kernel, and ceil_mode applies. */
static int geom_make(const eg_node *n, const eg_tensor *x, const int64_t *kernel, int pool, geom *g,
                     inferd_error *err) {
    int nsp = x->rank - 2;
    for (int i = 0; i < 2; i++) {
        g->in[i] = g->k[i] = g->stride[i] = g->dil[i] = g->out[i] = 1;
        g->pb[i] = g->pe[i] = 0;
    }
    for (int i = 0; i < nsp; i++) {
        g->in[2 - nsp + i] = x->dims[2 + i];
        g->k[2 - nsp + i] = kernel[i];
        if (kernel[i] < 1)
            return eg_node_error(err, INFERD_EINVAL, n, "kernel dim %d is %" PRId64, i, kernel[i]);
    }
    int rc = geom_attr(n, "strides", nsp, 1, g->stride, err);
    if (!rc)
        rc = geom_attr(n, "dilations", nsp, 1, g->dil, err);
    if (rc)
        return rc;
    int64_t ceil_mode = 0;
    if (pool && (rc = eg_attr_i64(n, "ceil_mode", 0, 0, 1, &ceil_mode, err)))
        return rc;
    const char *ap = eg_node_attr_string(n, "auto_pad", "NOTSET");
    int same_upper = strcmp(ap, "SAME_UPPER") == 0, same_lower = strcmp(ap, "SAME_LOWER") == 0;
    int valid = strcmp(ap, "VALID") == 0;
    if (!same_upper && !same_lower && !valid && strcmp(ap, "NOTSET") != 0)
        return eg_node_error(err, INFERD_EINVAL, n, "auto_pad %.40s is not valid", ap);
    if (!same_upper && !same_lower && !valid) {
        int64_t pads[2 * EG_MAX_RANK];
        int present;
        int c = eg_attr_ints(n, "pads", pads, 2 * EG_MAX_RANK, &present, err);
        if (c < 0)
            return c;
        if (present && c != 2 * nsp)
            return eg_node_error(err, INFERD_EINVAL, n, "pads has %d values for %d spatial dims", c,
                                 nsp);
        for (int i = 0; present && i < nsp; i++) {
            if (pads[i] < 0 || pads[i] > EG_MAX_NUMEL || pads[nsp + i] < 0 ||
                pads[nsp + i] > EG_MAX_NUMEL)
                return eg_node_error(err, INFERD_EINVAL, n, "pads must be 0 or more");
            g->pb[2 - nsp + i] = pads[i];
            g->pe[2 - nsp + i] = pads[nsp + i];
        }
    }
    for (int i = 2 - nsp; i < 2; i++) {
        int64_t ek = (g->k[i] - 1) * g->dil[i] + 1, s = g->stride[i];
        if (same_upper || same_lower) {
            g->out[i] = (g->in[i] + s - 1) / s;
            int64_t total = (g->out[i] - 1) * s + ek - g->in[i];
            if (total < 0)
                total = 0;
            g->pb[i] = same_upper ? total / 2 : total - total / 2;
            g->pe[i] = total - g->pb[i];
        } else {
            int64_t span = g->in[i] + g->pb[i] + g->pe[i] - ek;
            if (span < 0)
                return eg_node_error(err, INFERD_EINVAL, n,
                                     "kernel of %" PRId64
                                     " is wider than the padded input of %" PRId64,
                                     ek, g->in[i] + g->pb[i] + g->pe[i]);
            if (ceil_mode && !valid) {
                g->out[i] = (span + s - 1) / s + 1;
                // A window may not start in the right padding.
                if ((g->out[i] - 1) * s >= g->in[i] + g->pb[i])
                    g->out[i]--;
            } else {
                g->out[i] = span / s + 1;
            }
        }
        if (pool && (g->pb[i] >= ek || g->pe[i] >= ek))
            return eg_node_error(err, INFERD_EINVAL, n, "pads must be smaller than the kernel");
    }
    return 0;
}

/* ---- Conv ---- */

typedef struct conv_shape {
    geom g;
    int64_t N, C, M, group;
} conv_shape;

static int conv_shape_get(const eg_node *n, const eg_tensor *in, conv_shape *s, inferd_error *err) {
    const eg_tensor *x = &in[0], *w = &in[1];
    if (x->rank < 3 || x->rank > 4)
        return eg_node_error(err, INFERD_EUNSUPPORTED, n,
                             "only 1-D and 2-D convolutions are supported, input has rank %d",
                             x->rank);
    if (w->rank != x->rank)
        return eg_node_error(err, INFERD_EINVAL, n, "weight rank %d differs from input rank %d",
                             w->rank, x->rank);
    int rc = eg_attr_i64(n, "group", 1, 1, EG_MAX_NUMEL, &s->group, err);
    if (rc)
        return rc;
    s->N = x->dims[0];
    s->C = x->dims[1];
    s->M = w->dims[0];
    if (w->dims[1] * s->group != s->C || s->M % s->group != 0)
        return eg_node_error(err, INFERD_EINVAL, n,
                             "%" PRId64 " input channels, %" PRId64 " filters of %" PRId64
                             " channels and %" PRId64 " groups do not fit",
                             s->C, s->M, w->dims[1], s->group);
    int64_t ks[EG_MAX_RANK];
    int present;
    int c = eg_attr_ints(n, "kernel_shape", ks, EG_MAX_RANK, &present, err);
    if (c < 0)
        return c;
    for (int i = 0; present && i < x->rank - 2; i++)
        if (c != x->rank - 2 || ks[i] != w->dims[2 + i])
            return eg_node_error(err, INFERD_EINVAL, n, "kernel_shape does not match the weight");
    return geom_make(n, x, w->dims + 2, 0, &s->g, err);
}

static int infer_conv(const eg_node *n, const eg_tensor *in, eg_tensor *out, inferd_error *err) {
    conv_shape s;
    int rc = eg_check_dtype(n, in, 0, EG_DT(INFERD_DTYPE_F32), err);
    if (!rc)
        rc = eg_check_same_dtype(n, in, 0, 1, err);
    if (!rc)
        rc = conv_shape_get(n, in, &s, err);
    if (!rc && eg_in_present(n, 2)) {
        rc = eg_check_same_dtype(n, in, 0, 2, err);
        if (!rc && (in[2].rank != 1 || in[2].dims[0] != s.M))
            rc = eg_node_error(err, INFERD_EINVAL, n, "bias must be [%" PRId64 "]", s.M);
    }
    if (rc)
        return rc;
    int nsp = in[0].rank - 2;
    int64_t dims[4] = {s.N, s.M, s.g.out[2 - nsp], s.g.out[1]};
    eg_set_out(&out[0], in[0].dtype, in[0].rank, dims);
    return 0;
}

/* Rows of the im2col matrix (channels x kernel positions) and the output positions per
 * block. */
static void conv_blocks(const conv_shape *s, int64_t *K, int64_t *P, int64_t *Pb) {
    *K = (s->C / s->group) * s->g.k[0] * s->g.k[1];
    *P = s->g.out[0] * s->g.out[1];
    int64_t pb = *K > 0 ? CONV_COL_ELEMS / *K : *P;
    *Pb = pb < 1 ? 1 : pb > *P ? *P : pb;
}

static size_t scratch_conv(const eg_node *n, const eg_tensor *in, const eg_tensor *out,
                           int threads) {
    (void)out;
    (void)threads;
    conv_shape s;
    if (conv_shape_get(n, in, &s, NULL))
        return 0;
    int64_t K, P, Pb;
    conv_blocks(&s, &K, &P, &Pb);
    return (size_t)(K * Pb) * sizeof(float);
}

/* col[r, p] for p in [p0, p0 + pb): the input value under kernel position r for output
 * position p, or 0 in the padding. */
static void im2col(const conv_shape *s, const float *x, int64_t K, int64_t p0, int64_t pb,
                   float *col, int nt) {
    const geom *g = &s->g;
    int64_t kk = g->k[0] * g->k[1], H = g->in[0], W = g->in[1], OW = g->out[1];
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t r = 0; r < K; r++) {
        int64_t c = r / kk, ki = (r % kk) / g->k[1], kj = r % g->k[1];
        const float *xc = x + c * H * W;
        float *cr = col + r * pb;
        for (int64_t p = 0; p < pb; p++) {
            int64_t oh = (p0 + p) / OW, ow = (p0 + p) % OW;
            int64_t ih = oh * g->stride[0] - g->pb[0] + ki * g->dil[0];
            int64_t iw = ow * g->stride[1] - g->pb[1] + kj * g->dil[1];
            cr[p] = ih >= 0 && ih < H && iw >= 0 && iw < W ? xc[ih * W + iw] : 0.0f;
        }
    }
}

static int run_conv(const eg_node *n, const eg_tensor *in, eg_tensor *out, const eg_run_ctx *ctx,
                    inferd_error *err) {
    conv_shape s;
    int rc = conv_shape_get(n, in, &s, err);
    if (rc)
        return rc;
    int64_t K, P, Pb;
    conv_blocks(&s, &K, &P, &Pb);
    float *col = eg_scratch(n, ctx, (size_t)(K * Pb) * sizeof(float), err);
    if (!col)
        return INFERD_EINTERNAL;
    int64_t Cg = s.C / s.group, Mg = s.M / s.group, HW = s.g.in[0] * s.g.in[1];
    const float *x = in[0].data, *w = in[1].data;
    const float *bias = eg_in_present(n, 2) ? in[2].data : NULL;
    float *y = out[0].data;
    // Start from the bias so the products accumulate onto it.
    for (int64_t nm = 0; nm < s.N * s.M; nm++) {
        float b = bias ? bias[nm % s.M] : 0.0f;
        for (int64_t p = 0; p < P; p++)
            y[nm * P + p] = b;
    }
    int threads = eg_par_threads(ctx, s.M * P * K);
    for (int64_t b = 0; b < s.N; b++)
        for (int64_t g = 0; g < s.group; g++) {
            const float *xg = x + (b * s.C + g * Cg) * HW;
            float *yg = y + (b * s.M + g * Mg) * P;
            for (int64_t p0 = 0; p0 < P; p0 += Pb) {
                int64_t pb = P - p0 < Pb ? P - p0 : Pb;
                im2col(&s, xg, K, p0, pb, col, eg_par_threads(ctx, K * pb));
                eg_gemm_f32(0, 0, Mg, pb, K, 1.0f, w + g * Mg * K, K, col, pb, 1.0f, yg + p0, P,
                            threads);
            }
        }
    return 0;
}

EG_OP_IMPL(Conv, 2, 3, 1, 1, infer_conv, run_conv, scratch_conv, 0);

/* ---- MaxPool / AveragePool ---- */

static int pool_geom(const eg_node *n, const eg_tensor *x, geom *g, inferd_error *err) {
    if (x->rank < 3 || x->rank > 4)
        return eg_node_error(err, INFERD_EUNSUPPORTED, n,
                             "only 1-D and 2-D pooling is supported, input has rank %d", x->rank);
    int64_t ks[EG_MAX_RANK];
    int present;
    int c = eg_attr_ints(n, "kernel_shape", ks, EG_MAX_RANK, &present, err);
    if (c < 0)
        return c;
    if (!present || c != x->rank - 2)
        return eg_node_error(err, INFERD_EINVAL, n, "kernel_shape must have %d values",
                             x->rank - 2);
    for (int i = 0; i < c; i++)
        if (ks[i] > EG_MAX_NUMEL)
            return eg_node_error(err, INFERD_EINVAL, n, "kernel_shape holds %" PRId64, ks[i]);
    int rc = geom_make(n, x, ks, 1, g, err);
    if (rc)
        return rc;
    if (n->op == EG_OP_AveragePool && (g->dil[0] != 1 || g->dil[1] != 1))
        return eg_node_error(err, INFERD_EUNSUPPORTED, n, "AveragePool with dilations");
    return 0;
}

static int infer_pool(const eg_node *n, const eg_tensor *in, eg_tensor *out, inferd_error *err) {
    geom g;
    int rc = eg_check_dtype(n, in, 0, EG_DT(INFERD_DTYPE_F32), err);
    if (!rc)
        rc = pool_geom(n, &in[0], &g, err);
    if (!rc && n->op == EG_OP_MaxPool) {
        int64_t so;
        rc = eg_attr_i64(n, "storage_order", 0, 0, 1, &so, err);
    }
    if (rc)
        return rc;
    int nsp = in[0].rank - 2;
    int64_t dims[4] = {in[0].dims[0], in[0].dims[1], g.out[2 - nsp], g.out[1]};
    eg_set_out(&out[0], in[0].dtype, in[0].rank, dims);
    if (eg_out_present(n, 1)) {
        if (n->op != EG_OP_MaxPool)
            return eg_node_error(err, INFERD_EINVAL, n, "has a second output");
        eg_set_out(&out[1], INFERD_DTYPE_I64, in[0].rank, dims);
    }
    return 0;
}

static int run_pool(const eg_node *n, const eg_tensor *in, eg_tensor *out, const eg_run_ctx *ctx,
                    inferd_error *err) {
    geom g;
    int rc = pool_geom(n, &in[0], &g, err);
    if (rc)
        return rc;
    int is_max = n->op == EG_OP_MaxPool;
    int incl = !is_max && eg_node_attr_int(n, "count_include_pad", 0) != 0;
    int col_major = is_max && eg_node_attr_int(n, "storage_order", 0) != 0;
    int64_t NC = in[0].dims[0] * in[0].dims[1], H = g.in[0], W = g.in[1];
    int64_t OH = g.out[0], OW = g.out[1];
    const float *x = in[0].data;
    float *y = out[0].data;
    int64_t *idx = eg_out_present(n, 1) ? out[1].data : NULL;
    int nt = eg_par_threads(ctx, NC * OH * OW * g.k[0] * g.k[1]);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t nc = 0; nc < NC; nc++) {
        const float *xc = x + nc * H * W;
        for (int64_t oh = 0; oh < OH; oh++)
            for (int64_t ow = 0; ow < OW; ow++) {
                int64_t h0 = oh * g.stride[0] - g.pb[0], w0 = ow * g.stride[1] - g.pb[1];
                double acc = is_max ? -INFINITY : 0;
                int64_t cnt = 0, best = 0;
                for (int64_t ki = 0; ki < g.k[0]; ki++) {
                    int64_t ih = h0 + ki * g.dil[0];
                    if (ih < 0 || ih >= H)
                        continue;
                    for (int64_t kj = 0; kj < g.k[1]; kj++) {
                        int64_t iw = w0 + kj * g.dil[1];
                        if (iw < 0 || iw >= W)
                            continue;
                        float v = xc[ih * W + iw];
                        if (is_max) {
                            if (v > acc || cnt == 0) {
                                acc = v;
                                best = col_major ? ih + iw * H : ih * W + iw;
                            }
                        } else {
                            acc += v;
                        }
                        cnt++;
                    }
                }
                int64_t at = (nc * OH + oh) * OW + ow;
                if (is_max) {
                    y[at] = (float)acc;
                    if (idx)
                        idx[at] = nc * H * W + best;
                } else {
                    if (incl) {
                        // Window clipped to the padded input, padding counted.
                        int64_t h1 = h0 + g.k[0], w1 = w0 + g.k[1];
                        h1 = h1 < H + g.pe[0] ? h1 : H + g.pe[0];
                        w1 = w1 < W + g.pe[1] ? w1 : W + g.pe[1];
                        cnt = (h1 - h0) * (w1 - w0);
                    }
                    y[at] = cnt ? (float)(acc / (double)cnt) : 0.0f;
                }
            }
    }
    return 0;
}

EG_OP_IMPL(MaxPool, 1, 1, 1, 2, infer_pool, run_pool, NULL, 0);
EG_OP_IMPL(AveragePool, 1, 1, 1, 1, infer_pool, run_pool, NULL, 0);

/* ---- GlobalMaxPool / GlobalAveragePool ---- */

static int infer_global_pool(const eg_node *n, const eg_tensor *in, eg_tensor *out,
                             inferd_error *err) {
    int rc = eg_check_dtype(n, in, 0, EG_DT_FLOAT, err);
    if (!rc)
        rc = eg_check_rank(n, in, 0, 3, EG_MAX_RANK, err);
    if (rc)
        return rc;
    if (n->op == EG_OP_GlobalMaxPool)
        for (int d = 2; d < in[0].rank; d++)
            if (in[0].dims[d] == 0)
                return eg_node_error(err, INFERD_EINVAL, n, "GlobalMaxPool over an empty dim");
    eg_set_out_like(&out[0], &in[0]);
    for (int d = 2; d < in[0].rank; d++)
        out[0].dims[d] = 1;
    return 0;
}

#define GLOBAL_LOOP(T)                                                                             \
    do {                                                                                           \
        const T *x = in[0].data;                                                                   \
        T *y = out[0].data;                                                                        \
        for (int64_t nc = 0; nc < NC; nc++) {                                                      \
            const T *xs = x + nc * S;                                                              \
            double acc = is_max ? -INFINITY : 0;                                                   \
            for (int64_t k = 0; k < S; k++)                                                        \
                acc = is_max ? (xs[k] > acc || xs[k] != xs[k] ? xs[k] : acc) : acc + xs[k];        \
            y[nc] = (T)(is_max ? acc : S ? acc / (double)S : 0);                                   \
        }                                                                                          \
    } while (0)

static int run_global_pool(const eg_node *n, const eg_tensor *in, eg_tensor *out,
                           const eg_run_ctx *ctx, inferd_error *err) {
    (void)ctx;
    (void)err;
    int is_max = n->op == EG_OP_GlobalMaxPool;
    int64_t NC = in[0].dims[0] * in[0].dims[1], S = eg_dims_prod(in[0].dims, 2, in[0].rank);
    if (in[0].dtype == INFERD_DTYPE_F32)
        GLOBAL_LOOP(float);
    else
        GLOBAL_LOOP(double);
    return 0;
}

EG_OP_IMPL(GlobalMaxPool, 1, 1, 1, 1, infer_global_pool, run_global_pool, NULL, 0);
EG_OP_IMPL(GlobalAveragePool, 1, 1, 1, 1, infer_global_pool, run_global_pool, NULL, 0);
