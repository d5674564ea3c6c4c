/* kernels.h: the compute layer under the fused ops: oneDNN glue (engine, streams, packed
 * weights, dense layers) and our own vectorised kernels (LayerNorm, GELU, attention).
 *
 * DESIGN
 * Kernel providers sit behind a table of function pointers picked once at start from the
 * CPU's features: an AVX-512 provider (kernels_avx512.c) and a portable one
 * (kernels_generic.c) that is also the naive reference the fast one is tested against.
 * Only files in engine/ include dnnl.h; everything oneDNN-specific stays behind this header.
 *
 * Weights of dense layers are packed once at load into the blocked layout oneDNN's matmul
 * picks for them (it does not depend on the number of rows or threads, so one packed copy
 * serves every plan); plans create primitives against that layout.
 */
#ifndef INFERD_ENGINE_KERNELS_H
#define INFERD_ENGINE_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "util/alloc.h"
#include "util/error.h"

/* Creates the process-wide oneDNN engine and picks kernel providers. Idempotent. */
int eg_kernels_global_init(inferd_error *err);

/* Per-model state shared by its plans: the account to charge and its packed weights. */
typedef struct eg_model_ctx eg_model_ctx;
int eg_model_ctx_create(inferd_mem_account *acct, eg_model_ctx **out, inferd_error *err);
void eg_model_ctx_destroy(eg_model_ctx *c);

/* A dense layer's weight [K, N] packed for oneDNN; owned by the model ctx. */
typedef struct eg_packed_weight eg_packed_weight;

struct eg_cache;
/* Packed weights come from cache (in packing order) instead of being packed; the ctx does not
 * own the cache. */
void eg_model_ctx_use_cache(eg_model_ctx *c, struct eg_cache *cache);
/* The packed weight for (K, N, transposed, scale) from the cache set with
 * eg_model_ctx_use_cache: returns 1 and sets *out, or 0 when there is no cache or it does not
 * match (the caller then packs from source), or a negative code. */
int eg_pack_weight_cached(eg_model_ctx *c, int64_t K, int64_t N, int transposed, float scale,
                          eg_packed_weight **out, inferd_error *err);
/* Whether every packed weight so far came from the cache. */
int eg_model_ctx_all_cached(const eg_model_ctx *c);
/* Packed weights in packing order, for writing a cache. */
int eg_model_ctx_packed_count(const eg_model_ctx *c);
/* The share of the dense layers' work (per row) in layers that can run on listed rows
 * (eg_dense_run_tokens); the others run every row. */
double eg_model_ctx_tokens_share(const eg_model_ctx *c);
void eg_model_ctx_packed_get(const eg_model_ctx *c, int i, int64_t *K, int64_t *N, int *transposed,
                             float *scale, const void **md, size_t *md_size, const void **data,
                             size_t *bytes);

/* Packs w into oneDNN's layout. w is K x N row-major, or N x K row-major when transposed
 * (Gemm's transB, PyTorch's Linear stored [out, in]); scale multiplies every element (Gemm's
 * alpha). w may be unaligned (it can point into the mapped file). */
int eg_pack_weight(eg_model_ctx *c, const float *w, int64_t K, int64_t N, int transposed,
                   float scale, eg_packed_weight **out, inferd_error *err);

/* One of the layers packed side by side into one wider weight (merged Q, K, V projections):
 * w is K x N row-major, or N x K when transposed; scale multiplies it. */
typedef struct eg_weight_part {
    const float *w;
    int64_t N;
    int transposed;
    float scale;
} eg_weight_part;
#define EG_MAX_WEIGHT_PARTS 16
/* Packs the parts' columns side by side into one [K, sum of N] weight. Each part is reordered
 * straight into its place in oneDNN's layout when the layout allows (no copy of the whole
 * weight), else through a side-by-side copy. */
int eg_pack_weight_parts(eg_model_ctx *c, const eg_weight_part *parts, int n, int64_t K,
                         eg_packed_weight **out, inferd_error *err);
int64_t eg_packed_weight_k(const eg_packed_weight *w);
int64_t eg_packed_weight_n(const eg_packed_weight *w);

/* Activations a dense layer can apply after its bias. */
typedef enum eg_act {
    EG_ACT_NONE = 0,
    EG_ACT_RELU,
    EG_ACT_GELU_ERF,
    EG_ACT_GELU_TANH,
    EG_ACT_TANH,
    EG_ACT_SIGMOID,
} eg_act;

/* A dense layer for fixed M: y[M,N] = act(x[M,K] W + bias) (+ residual[M,N]), or with
 * residual_first, act(x W + bias + residual). Layers are shared: a create with the same
 * parameters (and thread count) as a live layer returns it with a reference taken, so plans
 * for new shapes cost little; destroy drops the reference. Runs may share a layer from
 * several threads at once (each run brings its own scratch). */
typedef struct eg_dense eg_dense;
int eg_dense_create(eg_model_ctx *c, const eg_packed_weight *w, int64_t M, int has_bias, eg_act act,
                    int has_residual, int residual_first, int threads, eg_dense **out,
                    inferd_error *err);
void eg_dense_destroy(eg_dense *d);
/* Scratch bytes a run needs (oneDNN's scratchpad). */
size_t eg_dense_scratch(const eg_dense *d);
/* Runs on the calling thread's OpenMP team. x, y, residual row-major; bias [N] or NULL. */
int eg_dense_run(const eg_dense *d, const float *x, const float *bias, const float *residual,
                 float *y, void *scratch, inferd_error *err);
/* eg_dense_run on the valid tokens of a padded batch: x, y and residual are [batch, seq, .]
 * and position s of batch row b is computed when s < lengths[b] (eg_keys_used); y's other
 * rows are set to zero. Runs every row (eg_dense_run) where the layer cannot take a row list. */
int eg_dense_run_tokens(const eg_dense *d, const float *x, const float *bias, const float *residual,
                        float *y, void *scratch, int64_t batch, int64_t seq, const int32_t *lengths,
                        inferd_error *err);

/* A convolution (1-D or 2-D, group 1) for fixed shapes: y = act(conv(x, W) + bias), NCW /
 * NCHW plain layouts. The weight is reordered into the layout oneDNN picks the first time a
 * plan needs it and kept in the model ctx for every later plan (keyed by the weight's bytes
 * and the layout). */
typedef struct eg_conv_shape {
    int rank; /* 3 (N, C, W) or 4 (N, C, H, W) */
    int64_t src[4], wei[4], dst[4];
    int64_t strides[2], dilations[2], pad_l[2], pad_r[2]; /* ONNX values (dilation 1 = none) */
} eg_conv_shape;
typedef struct eg_conv eg_conv;
int eg_conv_create(eg_model_ctx *c, const eg_conv_shape *shape, const float *weights, int has_bias,
                   eg_act act, eg_conv **out, inferd_error *err);
void eg_conv_destroy(eg_conv *conv);
size_t eg_conv_scratch(const eg_conv *conv);
int eg_conv_run(const eg_conv *conv, const float *x, const float *bias, float *y, void *scratch,
                inferd_error *err);

/* The K and V projections' columns of packed weights, unpacked for the [CLS] attention
 * (eg_cls_attention_args): kt [n, K] holds wk's columns [k_off, k_off + n) as rows, vp [K, n]
 * wv's columns [v_off, v_off + n). Made the first time a plan asks and kept in the ctx. */
int eg_cls_weights_get(eg_model_ctx *c, const eg_packed_weight *wk, int64_t k_off,
                       const eg_packed_weight *wv, int64_t v_off, int64_t n, const float **kt,
                       const float **vp, inferd_error *err);

/* ---- vectorised kernels (provider table) ---- */

/* Attention over one batch: see eg_attention_args. */
typedef struct eg_attention_args {
    int64_t batch, seq_q, seq_k, heads, head_dim;
    const float *q, *k, *v; /* element (b, s, h, d) at base + b*bs + s*rs + h*head_dim + d */
    int64_t q_bs, q_rs, k_bs, k_rs, v_bs, v_rs;
    float *out;      /* [batch, out_seq, heads * head_dim] contiguous */
    int64_t out_seq; /* output rows per batch row (seq_q, or q_rows_per_batch when pruned) */
    float scale;
    const float *mask; /* additive mask, element (b, h, i, j) at b*m_bs + h*m_hs + i*m_is + j,
                          strides 0 for broadcast dims; NULL for none */
    int64_t m_bs, m_hs, m_is;
    const int32_t *key_len;   /* per batch row: keys >= key_len[b] are padding and skipped; NULL:
                                 all keys used */
    int64_t q_rows_per_batch; /* queries computed per batch row (<= seq_q; the rest untouched) */
    const int32_t *q_len;     /* per batch row: query rows >= q_len[b] (of q_rows_per_batch)
                                 are padding, their outputs set to zero; NULL: none */
} eg_attention_args;

/* Attention of one query row per batch row (the [CLS] token of a classifier's last layer)
 * whose keys and values are never computed. With the keys k_j = x_j Wk + bk and values
 * v_j = x_j Wv + bv of rows x_j (of width `hidden`), per head:
 *   q . k_j = x_j . (Wk q) + bk . q   and   sum_j p_j v_j = (sum_j p_j x_j) Wv + bv,
 * since the softmax weights p_j sum to 1. That is two products of the rows with a vector
 * instead of projecting every row: 4 seq hidden FLOPs a head against 4 seq hidden head_dim. */
typedef struct eg_cls_attention_args {
    int64_t batch, seq, heads, head_dim, hidden;
    const float *q; /* head h of batch row b at q + b*q_bs + h*head_dim (bias included) */
    int64_t q_bs;
    const float *x;       /* [batch, seq, hidden] */
    const float *kt;      /* [heads*head_dim, hidden]: Wk transposed */
    const float *vp;      /* [hidden, heads*head_dim]: Wv */
    const float *bk, *bv; /* [heads*head_dim] or NULL */
    float scale;
    const float *mask; /* additive, element (b, h, j) at b*m_bs + h*m_hs + j; NULL for none */
    int64_t m_bs, m_hs;
    const int32_t *key_len; /* per batch row: keys >= key_len[b] are padding; NULL: all used */
    float *out;             /* [batch, heads*head_dim] */
} eg_cls_attention_args;

/* Scratch bytes eg_cls_attention needs: threads x eg_cls_attention_thread_floats floats. */
size_t eg_cls_attention_scratch(int64_t seq, int64_t hidden, int threads);
/* Floats of scratch each thread of the [CLS] attention uses: u = Wk q and z = sum_j p_j x_j
 * (hidden each), the scores (seq), and room to stay aligned. */
static inline size_t eg_cls_attention_thread_floats(int64_t seq, int64_t hidden) {
    return (size_t)(2 * hidden + seq + 48);
}

/* Keys batch row b attends to: key_len[b] when given and within seq, else all seq. */
static inline int64_t eg_keys_used(const int32_t *key_len, int64_t b, int64_t seq) {
    return key_len && key_len[b] > 0 && key_len[b] < seq ? key_len[b] : seq;
}

/* C = epilogue(A B) for a dense layer, B packed in 48-column panels (oneDNN's BA16a48b):
 * element (k, n) of B at b + (n / 48) b_panel + 48 k + n % 48, zero past N. The epilogue adds
 * bias, then the residual if residual_first, applies act, then adds the residual otherwise.
 * K above EG_GEMM48_MAX_K runs in passes that add onto C, and needs act EG_ACT_NONE.
 * rows, when set, lists the M rows of A, C and the residual to compute (row i of the product
 * is physical row rows[i] of each); other rows are left alone. */
typedef struct eg_gemm48_args {
    int64_t M, N, K;
    const float *a; /* [M, lda] */
    int64_t lda;
    const float *b;
    int64_t b_panel;
    float *c; /* [M, ldc] */
    int64_t ldc;
    const float *bias;     /* [N] or NULL */
    const float *residual; /* [M, ldr] or NULL */
    int64_t ldr;
    int residual_first;
    eg_act act;
    const int32_t *rows; /* [M] or NULL: rows 0..M-1 */
} eg_gemm48_args;

#define EG_GEMM48_NR 48
#define EG_GEMM48_MC 1024   /* rows of A packed at a time */
#define EG_GEMM48_MAX_K 768 /* K of a call: A's rows are packed whole, K done in one pass */

/* Floats of work (the packed block of A) a gemm48 call on M rows needs. */
static inline size_t eg_gemm48_work_floats(int64_t M, int64_t K) {
    int64_t mc = M < EG_GEMM48_MC ? M : EG_GEMM48_MC;
    if (K > EG_GEMM48_MAX_K) // in passes
        K = EG_GEMM48_MAX_K;
    return (size_t)((mc + 7) / 8 * 8 * K);
}

typedef struct eg_kernel_table {
    const char *name;
    /* y = LayerNorm(x (+ residual)) over rows of n: (x - mean) / sqrt(var + eps) * gamma +
     * beta. residual may be NULL. */
    void (*layernorm)(const float *x, const float *residual, const float *gamma, const float *beta,
                      float *y, int64_t rows, int64_t n, float eps, int threads);
    /* y = gelu(x) elementwise, exact (erf) or tanh approximation. */
    void (*gelu)(const float *x, float *y, int64_t n, int tanh_approx, int threads);
    /* Scaled dot-product attention; scratch of eg_attention_scratch bytes. */
    void (*attention)(const eg_attention_args *a, void *scratch, int threads);
    /* The [CLS] attention above; scratch of eg_cls_attention_scratch bytes. */
    void (*cls_attention)(const eg_cls_attention_args *a, void *scratch, int threads);
    /* The load cache's hash: lanes v[k] = rotl(v[k] + w[k] * P2, 31) * P1 over the 32 words
     * of each 256-byte block (cache.c). NULL: the caller's scalar loop. n % 256 == 0. */
    void (*hash_blocks)(uint64_t v[32], const uint8_t *p, size_t n);
} eg_kernel_table;

/* The GEMM above on the calling thread (gemm_avx512.c; AVX-512 CPUs only), with work of
 * eg_gemm48_work_floats floats, 64-byte aligned. */
void eg_gemm48_avx512(const eg_gemm48_args *g, float *work);

/* The provider picked for this CPU, and the portable reference provider. */
const eg_kernel_table *eg_kernels(void);
const eg_kernel_table *eg_kernels_generic(void);
const eg_kernel_table *eg_kernels_avx512(void); /* NULL if the CPU lacks AVX-512 */

size_t eg_attention_scratch(int64_t seq_k, int64_t head_dim, int threads);

#endif
