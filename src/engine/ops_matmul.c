/* Matrix products: the blocked eg_gemm_* reference kernels (also used by Conv and the
 * recurrent ops), MatMul with numpy batch broadcasting, Gemm, and Einsum.
 *
 * The big products of real models go to oneDNN through fused ops; these loops are the
 * reference they are checked against, blocked so they stay usable on the paths nothing fuses.
 */
#include <inttypes.h>
#include <stdint.h>

#include "engine/ops_impl.h"

/* ---- gemm ---- */

/* Tiles of C are independent (each walks all of K), so they are what threads share. */
#define GEMM_MB 32
#define GEMM_NB 256
#define GEMM_KB 256

#define DEFINE_GEMM(T, sfx)                                                                        \
    static void gemm_tile_##sfx(int transA, int transB, int64_t i0, int64_t i1, int64_t j0,        \
                                int64_t j1, int64_t K, T alpha, const T *A, int64_t lda,           \
                                const T *B, int64_t ldb, T beta, T *C, int64_t ldc) {              \
        for (int64_t i = i0; i < i1; i++) {                                                        \
            T *c = C + i * ldc;                                                                    \
            if (beta == 0)                                                                         \
                for (int64_t j = j0; j < j1; j++)                                                  \
                    c[j] = 0;                                                                      \
            else if (beta != 1)                                                                    \
                for (int64_t j = j0; j < j1; j++)                                                  \
                    c[j] *= beta;                                                                  \
        }                                                                                          \
        for (int64_t k0 = 0; k0 < K; k0 += GEMM_KB) {                                              \
            int64_t k1 = k0 + GEMM_KB < K ? k0 + GEMM_KB : K;                                      \
            for (int64_t i = i0; i < i1; i++) {                                                    \
                T *c = C + i * ldc;                                                                \
                if (!transB) {                                                                     \
                    /* Rows of B are contiguous along j: broadcast a(i,k) over them. */            \
                    for (int64_t k = k0; k < k1; k++) {                                            \
                        T a = alpha * (transA ? A[k * lda + i] : A[i * lda + k]);                  \
                        const T *b = B + k * ldb;                                                  \
                        _Pragma("omp simd") for (int64_t j = j0; j < j1; j++) c[j] += a * b[j];    \
                    }                                                                              \
                } else if (!transA) {                                                              \
                    /* B transposed: rows of A and of B are contiguous along k. */                 \
                    const T *a = A + i * lda;                                                      \
                    for (int64_t j = j0; j < j1; j++) {                                            \
                        const T *b = B + j * ldb;                                                  \
                        T s = 0;                                                                   \
                        _Pragma("omp simd reduction(+ : s)") for (int64_t k = k0; k < k1; k++)     \
                            s += a[k] * b[k];                                                      \
                        c[j] += alpha * s;                                                         \
                    }                                                                              \
                } else {                                                                           \
                    for (int64_t j = j0; j < j1; j++) {                                            \
                        const T *b = B + j * ldb;                                                  \
                        T s = 0;                                                                   \
                        for (int64_t k = k0; k < k1; k++)                                          \
                            s += A[k * lda + i] * b[k];                                            \
                        c[j] += alpha * s;                                                         \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    void eg_gemm_##sfx(int transA, int transB, int64_t M, int64_t N, int64_t K, T alpha,           \
                       const T *A, int64_t lda, const T *B, int64_t ldb, T beta, T *C,             \
                       int64_t ldc, int threads) {                                                 \
        int64_t mt = (M + GEMM_MB - 1) / GEMM_MB, nt_ = (N + GEMM_NB - 1) / GEMM_NB;               \
        int64_t tiles = mt * nt_;                                                                  \
        int nt = threads > 1 && tiles > 1 && M * N * K >= EG_PAR_MIN_WORK ? threads : 1;           \
        _Pragma("omp parallel for num_threads(nt) if (nt > 1) schedule(static)") for (int64_t t =  \
                                                                                          0;       \
                                                                                      t < tiles;   \
                                                                                      t++) {       \
            int64_t i0 = (t / nt_) * GEMM_MB, j0 = (t % nt_) * GEMM_NB;                            \
            int64_t i1 = i0 + GEMM_MB < M ? i0 + GEMM_MB : M;                                      \
            int64_t j1 = j0 + GEMM_NB < N ? j0 + GEMM_NB : N;                                      \
            gemm_tile_##sfx(transA, transB, i0, i1, j0, j1, K, alpha, A, lda, B, ldb, beta, C,     \
                            ldc);                                                                  \
        }                                                                                          \
    }
DEFINE_GEMM(float, f32)
DEFINE_GEMM(double, f64)

/* ---- MatMul ---- */

/* Shapes of a MatMul after numpy's promotion of 1-D operands. */
typedef struct mm_shape {
    int64_t M, N, K;
    int brank;                                                        /* batch rank of the output */
    int64_t bdims[EG_MAX_RANK], astr[EG_MAX_RANK], bstr[EG_MAX_RANK]; /* per batch dim */
    int64_t batches;
} mm_shape;

static int mm_shape_get(const eg_node *n, const eg_tensor *a, const eg_tensor *b, mm_shape *s,
                        int64_t *odims, int *orank, inferd_error *err) {
    int ra = a->rank, rb = b->rank;
    if (ra < 1 || rb < 1)
        return eg_node_error(err, INFERD_EINVAL, n, "MatMul inputs must have rank 1 or more");
    s->M = ra >= 2 ? a->dims[ra - 2] : 1;
    s->K = a->dims[ra - 1];
    int64_t kb = rb >= 2 ? b->dims[rb - 2] : b->dims[0];
    s->N = rb >= 2 ? b->dims[rb - 1] : 1;
    if (kb != s->K) {
        char sa[96], sb[96];
        return eg_node_error(err, INFERD_EINVAL, n, "cannot multiply %s by %s",
                             eg_tensor_str(a, sa, sizeof sa), eg_tensor_str(b, sb, sizeof sb));
    }
    eg_tensor ba = {.rank = ra > 2 ? ra - 2 : 0}, bb = {.rank = rb > 2 ? rb - 2 : 0}, bo;
    memcpy(ba.dims, a->dims, sizeof(int64_t) * (size_t)ba.rank);
    memcpy(bb.dims, b->dims, sizeof(int64_t) * (size_t)bb.rank);
    int rc = eg_broadcast_shape(n, &ba, &bb, &bo, err);
    if (rc)
        return rc;
    s->brank = bo.rank;
    s->batches = 1;
    int64_t sa = s->M * s->K, sb = s->K * s->N;
    for (int i = bo.rank - 1; i >= 0; i--) {
        int ia = i - (bo.rank - ba.rank), ib = i - (bo.rank - bb.rank);
        int64_t da = ia >= 0 ? ba.dims[ia] : 1, db = ib >= 0 ? bb.dims[ib] : 1;
        s->bdims[i] = bo.dims[i];
        s->astr[i] = da == 1 ? 0 : sa;
        s->bstr[i] = db == 1 ? 0 : sb;
        sa *= da;
        sb *= db;
        s->batches *= bo.dims[i];
    }
    if (odims) {
        int r = bo.rank;
        memcpy(odims, bo.dims, sizeof(int64_t) * (size_t)r);
        if (ra >= 2)
            odims[r++] = s->M;
        if (rb >= 2)
            odims[r++] = s->N;
        if (r > EG_MAX_RANK)
            return eg_node_error(err, INFERD_EUNSUPPORTED, n, "output rank %d is over %d", r,
                                 EG_MAX_RANK);
        *orank = r;
    }
    return 0;
}

static int infer_matmul(const eg_node *n, const eg_tensor *in, eg_tensor *out, inferd_error *err) {
    int rc = eg_check_dtype(n, in, 0, EG_DT_FLOAT, err);
    if (!rc)
        rc = eg_check_same_dtype(n, in, 0, 1, err);
    mm_shape s;
    int64_t dims[EG_MAX_RANK + 2];
    int r = 0;
    if (!rc)
        rc = mm_shape_get(n, &in[0], &in[1], &s, dims, &r, err);
    if (rc)
        return rc;
    eg_set_out(&out[0], in[0].dtype, r, dims);
    return 0;
}

static int run_matmul(const eg_node *n, const eg_tensor *in, eg_tensor *out, const eg_run_ctx *ctx,
                      inferd_error *err) {
    mm_shape s;
    int rc = mm_shape_get(n, &in[0], &in[1], &s, NULL, NULL, err);
    if (rc)
        return rc;
    // A weight without batch dims against batched activations ([B,S,K] x [K,N], the common
    // case): one product with B*S rows instead of B products of S.
    int fold = s.batches > 1;
    for (int i = 0; i < s.brank && fold; i++)
        fold = s.bstr[i] == 0 && (s.astr[i] != 0 || s.bdims[i] == 1);
    if (fold) {
        s.M *= s.batches;
        s.batches = 1;
    }
    int64_t work = s.M * s.N * s.K;
    int threads = eg_par_threads(ctx, work * s.batches);
    // Many small products: one per thread. Few big ones: threads inside each.
    int outer = s.batches >= threads && work < ((int64_t)1 << 22) ? threads : 1;
    int inner = outer > 1 ? 1 : threads;
    int is32 = in[0].dtype == INFERD_DTYPE_F32;
#pragma omp parallel for num_threads(outer) if (outer > 1) schedule(static)
    for (int64_t bi = 0; bi < s.batches; bi++) {
        int64_t oa = 0, ob = 0, rem = bi;
        for (int i = s.brank - 1; i >= 0; i--) {
            int64_t x = rem % s.bdims[i];
            rem /= s.bdims[i];
            oa += x * s.astr[i];
            ob += x * s.bstr[i];
        }
        int64_t oc = bi * s.M * s.N;
        if (is32)
            eg_gemm_f32(0, 0, s.M, s.N, s.K, 1.0f, (const float *)in[0].data + oa, s.K,
                        (const float *)in[1].data + ob, s.N, 0.0f, (float *)out[0].data + oc, s.N,
                        inner);
        else
            eg_gemm_f64(0, 0, s.M, s.N, s.K, 1.0, (const double *)in[0].data + oa, s.K,
                        (const double *)in[1].data + ob, s.N, 0.0, (double *)out[0].data + oc, s.N,
                        inner);
    }
    return 0;
}

EG_OP_IMPL(MatMul, 2, 2, 1, 1, infer_matmul, run_matmul, NULL, 0);

/* ---- Gemm ---- */

typedef struct gemm_params {
    int64_t transA, transB, M, N, K;
    float alpha, beta;
} gemm_params;

static int gemm_params_get(const eg_node *n, const eg_tensor *in, gemm_params *p,
                           inferd_error *err) {
    int rc = eg_attr_i64(n, "transA", 0, 0, 1, &p->transA, err);
    if (!rc)
        rc = eg_attr_i64(n, "transB", 0, 0, 1, &p->transB, err);
    if (!rc)
        rc = eg_attr_f32(n, "alpha", 1.0f, &p->alpha, err);
    if (!rc)
        rc = eg_attr_f32(n, "beta", 1.0f, &p->beta, err);
    if (!rc)
        rc = eg_check_rank(n, in, 0, 2, 2, err);
    if (!rc)
        rc = eg_check_rank(n, in, 1, 2, 2, err);
    if (rc)
        return rc;
    p->M = in[0].dims[p->transA ? 1 : 0];
    p->K = in[0].dims[p->transA ? 0 : 1];
    p->N = in[1].dims[p->transB ? 0 : 1];
    if (in[1].dims[p->transB ? 1 : 0] != p->K)
        return eg_node_error(err, INFERD_EINVAL, n, "inner dims %" PRId64 " and %" PRId64 " differ",
                             p->K, in[1].dims[p->transB ? 1 : 0]);
    return 0;
}

static int infer_gemm(const eg_node *n, const eg_tensor *in, eg_tensor *out, inferd_error *err) {
    gemm_params p;
    int rc = eg_check_dtype(n, in, 0, EG_DT_FLOAT, err);
    if (!rc)
        rc = eg_check_same_dtype(n, in, 0, 1, err);
    if (!rc)
        rc = gemm_params_get(n, in, &p, err);
    if (rc)
        return rc;
    int64_t dims[2] = {p.M, p.N};
    eg_set_out(&out[0], in[0].dtype, 2, dims);
    if (eg_in_present(n, 2)) {
        // C broadcasts one way only: into [M, N].
        eg_tensor b;
        rc = eg_check_same_dtype(n, in, 0, 2, err);
        if (!rc)
            rc = eg_broadcast_shape(n, &out[0], &in[2], &b, err);
        if (rc)
            return rc;
        if (b.rank != 2 || b.dims[0] != p.M || b.dims[1] != p.N)
            return eg_node_error(err, INFERD_EINVAL, n,
                                 "C does not broadcast to [%" PRId64 ",%" PRId64 "]", p.M, p.N);
    }
    return 0;
}

static int run_gemm(const eg_node *n, const eg_tensor *in, eg_tensor *out, const eg_run_ctx *ctx,
                    inferd_error *err) {
    gemm_params p;
    int rc = gemm_params_get(n, in, &p, err);
    if (rc)
        return rc;
    float beta = 0;
    if (eg_in_present(n, 2) && p.beta != 0) {
        eg_broadcast_copy(&in[2], &out[0], ctx);
        beta = p.beta;
    }
    int threads = eg_par_threads(ctx, p.M * p.N * p.K);
    int64_t lda = in[0].dims[1], ldb = in[1].dims[1];
    if (in[0].dtype == INFERD_DTYPE_F32)
        eg_gemm_f32((int)p.transA, (int)p.transB, p.M, p.N, p.K, p.alpha, in[0].data, lda,
                    in[1].data, ldb, beta, out[0].data, p.N, threads);
    else
        eg_gemm_f64((int)p.transA, (int)p.transB, p.M, p.N, p.K, p.alpha, in[0].data, lda,
                    in[1].data, ldb, beta, out[0].data, p.N, threads);
    return 0;
}

EG_OP_IMPL(Gemm, 2, 3, 1, 1, infer_gemm, run_gemm, NULL, 0);

/* ---- Einsum ---- */

/* Labels: a-z are 0-25, A-Z 26-51, and the dims an ellipsis stands for 52-59 (right-aligned
 * across operands, broadcasting as numpy does). */
#define EIN_LABELS 60
#define EIN_ELL 52
#define EIN_MAX_OPS 4
/* Multiply-adds one Einsum may cost before we call it hostile rather than a model. */
#define EIN_MAX_WORK ((int64_t)1 << 40)

typedef struct einsum_plan {
    int n_ops, out_rank, n_sum;
    int out_labels[EG_MAX_RANK], sum_labels[EIN_LABELS];
    int64_t size[EIN_LABELS];
    int64_t stride[EIN_MAX_OPS][EIN_LABELS];
} einsum_plan;

static int ein_label(char c) {
    if (c >= 'a' && c <= 'z')
        return c - 'a';
    if (c >= 'A' && c <= 'Z')
        return 26 + (c - 'A');
    return -1;
}

/* Parses one term ("bij", "...ij") into labels; *ell is where the ellipsis sits or -1. */
static int ein_term(const eg_node *n, const char *s, size_t len, int *labels, int *count, int *ell,
                    inferd_error *err) {
    *count = 0;
    *ell = -1;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == ' ')
            continue;
        if (c == '.') {
            if (*ell >= 0 || i + 2 >= len || s[i + 1] != '.' || s[i + 2] != '.')
                return eg_node_error(err, INFERD_EINVAL, n, "bad ellipsis in the equation");
            *ell = *count;
            i += 2;
            continue;
        }
        int l = ein_label(c);
        if (l < 0)
            return eg_node_error(err, INFERD_EINVAL, n, "bad character '%c' in the equation", c);
        if (*count >= EG_MAX_RANK)
            return eg_node_error(err, INFERD_EINVAL, n, "equation term has too many labels");
        labels[(*count)++] = l;
    }
    return 0;
}

static int einsum_plan_make(const eg_node *n, const eg_tensor *in, einsum_plan *p, int64_t *odims,
                            inferd_error *err) {
    const char *eq = eg_node_attr_string(n, "equation", NULL);
    if (!eq)
        return eg_node_error(err, INFERD_EINVAL, n, "attribute equation is required");
    if (n->n_in > EIN_MAX_OPS)
        return eg_node_error(err, INFERD_EUNSUPPORTED, n, "Einsum of %d operands", n->n_in);
    memset(p, 0, sizeof *p);
    p->n_ops = n->n_in;
    for (int l = 0; l < EIN_LABELS; l++)
        p->size[l] = -1;
    const char *arrow = strstr(eq, "->");
    size_t lhs_len = arrow ? (size_t)(arrow - eq) : strlen(eq);
    int counts[EIN_LABELS] = {0}, n_ell = 0;
    const char *t = eq;
    for (int k = 0; k < n->n_in; k++) {
        const char *end = memchr(t, ',', (size_t)(eq + lhs_len - t));
        if (k == n->n_in - 1 ? end != NULL : end == NULL)
            return eg_node_error(err, INFERD_EINVAL, n, "equation needs %d terms", n->n_in);
        if (!end)
            end = eq + lhs_len;
        int labels[EG_MAX_RANK], count, ell;
        int rc = ein_term(n, t, (size_t)(end - t), labels, &count, &ell, err);
        if (rc)
            return rc;
        int r = in[k].rank, e = r - count;
        if (e < 0 || (ell < 0 && e != 0))
            return eg_node_error(err, INFERD_EINVAL, n, "term %d has %d labels for rank %d", k,
                                 count, r);
        if (e > n_ell)
            n_ell = e;
        // Walk the operand's dims, giving each its label.
        for (int d = 0, j = 0; d < r; d++) {
            int l;
            if (ell >= 0 && d >= ell && d < ell + e)
                l = EIN_ELL + (EG_MAX_RANK - e) + (d - ell); // right-aligned ellipsis dims
            else
                l = labels[j++];
            int64_t size = in[k].dims[d];
            int64_t st = eg_dims_prod(in[k].dims, d + 1, r);
            if (l >= EIN_ELL) {
                if (size != 1) {
                    if (p->size[l] > 1 && p->size[l] != size)
                        return eg_node_error(err, INFERD_EINVAL, n,
                                             "ellipsis dims do not broadcast");
                    p->size[l] = size;
                    p->stride[k][l] += st;
                } else if (p->size[l] < 0) {
                    p->size[l] = 1;
                }
            } else {
                if (p->size[l] >= 0 && p->size[l] != size)
                    return eg_node_error(err, INFERD_EINVAL, n,
                                         "label '%c' has sizes %" PRId64 " and %" PRId64,
                                         l < 26 ? 'a' + l : 'A' + l - 26, p->size[l], size);
                p->size[l] = size;
                // A label repeated in one term walks the diagonal: strides add up.
                p->stride[k][l] += st;
            }
            counts[l]++;
        }
        t = end + 1;
    }
    // Output labels: explicit, or ellipsis dims then labels seen once in ASCII order.
    int in_out[EIN_LABELS] = {0};
    p->out_rank = 0;
    if (arrow) {
        int labels[EG_MAX_RANK], count, ell;
        const char *o = arrow + 2;
        int rc = ein_term(n, o, strlen(o), labels, &count, &ell, err);
        if (rc)
            return rc;
        if (ell < 0 && n_ell > 0)
            return eg_node_error(err, INFERD_EUNSUPPORTED, n, "summing over ellipsis dims");
        if (count + (ell >= 0 ? n_ell : 0) > EG_MAX_RANK)
            return eg_node_error(err, INFERD_EINVAL, n, "output has too many dims");
        for (int j = 0, d = 0; j <= count; j++) {
            if (j == ell)
                for (int q = EG_MAX_RANK - n_ell; q < EG_MAX_RANK; q++)
                    p->out_labels[d++] = EIN_ELL + q;
            if (j < count)
                p->out_labels[d++] = labels[j];
            p->out_rank = d;
        }
    } else {
        for (int q = EG_MAX_RANK - n_ell; q < EG_MAX_RANK; q++)
            p->out_labels[p->out_rank++] = EIN_ELL + q;
        for (int c = 'A'; c <= 'z'; c++) {
            int l = ein_label((char)c);
            if (l >= 0 && counts[l] == 1) {
                if (p->out_rank >= EG_MAX_RANK)
                    return eg_node_error(err, INFERD_EINVAL, n, "output has too many dims");
                p->out_labels[p->out_rank++] = l;
            }
        }
    }
    int64_t out_numel = 1;
    for (int d = 0; d < p->out_rank; d++) {
        int l = p->out_labels[d];
        if (p->size[l] < 0 || in_out[l])
            return eg_node_error(err, INFERD_EINVAL, n, "output label %d is %s", d,
                                 in_out[l] ? "repeated" : "not in any input");
        in_out[l] = 1;
        if (odims)
            odims[d] = p->size[l];
        out_numel *= p->size[l];
    }
    int64_t sum_numel = 1;
    p->n_sum = 0;
    for (int l = 0; l < EIN_LABELS; l++)
        if (p->size[l] >= 0 && !in_out[l]) {
            p->sum_labels[p->n_sum++] = l;
            sum_numel *= p->size[l];
            if (sum_numel > EIN_MAX_WORK)
                break;
        }
    if (out_numel > 0 && sum_numel > EIN_MAX_WORK / out_numel)
        return eg_node_error(err, INFERD_EUNSUPPORTED, n, "Einsum would take over 2^40 steps");
    return 0;
}

static int infer_einsum(const eg_node *n, const eg_tensor *in, eg_tensor *out, inferd_error *err) {
    int rc = eg_check_dtype(n, in, 0, EG_DT_FLOAT, err);
    for (int k = 1; k < n->n_in && !rc; k++)
        rc = eg_check_same_dtype(n, in, 0, k, err);
    einsum_plan p;
    int64_t dims[EG_MAX_RANK];
    if (!rc)
        rc = einsum_plan_make(n, in, &p, dims, err);
    if (rc)
        return rc;
    eg_set_out(&out[0], in[0].dtype, p.out_rank, dims);
    return 0;
}

/* out[o] = sum over the summed labels of the product of the operands: summed positions go
 * line by line, the last summed label being the line. */
#define EINSUM_LOOP(T)                                                                             \
    do {                                                                                           \
        const T *x[EIN_MAX_OPS];                                                                   \
        for (int k = 0; k < p.n_ops; k++)                                                          \
            x[k] = in[k].data;                                                                     \
        T *y = out[0].data;                                                                        \
        _Pragma(                                                                                   \
            "omp parallel for num_threads(nt) if (nt > 1) schedule(static)") for (int64_t o = 0;   \
                                                                                  o < no; o++) {   \
            int64_t base[EIN_MAX_OPS] = {0}, rem = o;                                              \
            for (int d = p.out_rank - 1; d >= 0; d--) {                                            \
                int l = p.out_labels[d];                                                           \
                int64_t i = rem % p.size[l];                                                       \
                rem /= p.size[l];                                                                  \
                for (int k = 0; k < p.n_ops; k++)                                                  \
                    base[k] += i * p.stride[k][l];                                                 \
            }                                                                                      \
            double acc = 0;                                                                        \
            for (int64_t li = 0; li < lines; li++) {                                               \
                int64_t off[EIN_MAX_OPS];                                                          \
                for (int k = 0; k < p.n_ops; k++)                                                  \
                    off[k] = base[k];                                                              \
                int64_t r2 = li;                                                                   \
                for (int s = p.n_sum - 2; s >= 0; s--) {                                           \
                    int l = p.sum_labels[s];                                                       \
                    int64_t i = r2 % p.size[l];                                                    \
                    r2 /= p.size[l];                                                               \
                    for (int k = 0; k < p.n_ops; k++)                                              \
                        off[k] += i * p.stride[k][l];                                              \
                }                                                                                  \
                if (p.n_ops == 2) {                                                                \
                    const T *a = x[0] + off[0], *b = x[1] + off[1];                                \
                    int64_t sa = lst[0], sb = lst[1];                                              \
                    for (int64_t j = 0; j < line; j++)                                             \
                        acc += (double)a[j * sa] * b[j * sb];                                      \
                } else {                                                                           \
                    for (int64_t j = 0; j < line; j++) {                                           \
                        double v = 1;                                                              \
                        for (int k = 0; k < p.n_ops; k++)                                          \
                            v *= x[k][off[k] + j * lst[k]];                                        \
                        acc += v;                                                                  \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
            y[o] = (T)acc;                                                                         \
        }                                                                                          \
    } while (0)

static int run_einsum(const eg_node *n, const eg_tensor *in, eg_tensor *out, const eg_run_ctx *ctx,
                      inferd_error *err) {
    einsum_plan p;
    int rc = einsum_plan_make(n, in, &p, NULL, err);
    if (rc)
        return rc;
    int64_t no = eg_numel(&out[0]), line = 1, lines = 1, lst[EIN_MAX_OPS] = {0};
    if (p.n_sum > 0) {
        int l = p.sum_labels[p.n_sum - 1];
        line = p.size[l];
        for (int k = 0; k < p.n_ops; k++)
            lst[k] = p.stride[k][l];
        for (int s = 0; s < p.n_sum - 1; s++)
            lines *= p.size[p.sum_labels[s]];
    }
    int nt = eg_par_threads(ctx, no * line * lines);
    if (in[0].dtype == INFERD_DTYPE_F32)
        EINSUM_LOOP(float);
    else
        EINSUM_LOOP(double);
    return 0;
}

EG_OP_IMPL(Einsum, 1, EIN_MAX_OPS, 1, 1, infer_einsum, run_einsum, NULL, 0);
