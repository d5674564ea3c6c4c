/* kernels.c: oneDNN glue. Lock order: pack_lock (leaf). */
#include "engine/kernels.h"

#include "engine/cache.h"

#include <dnnl.h>
#include <omp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static dnnl_engine_t g_engine;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static int g_init_status;
static const eg_kernel_table *g_kernels;
static __thread dnnl_stream_t tls_stream;
static int g_gemm48; /* dense layers with many rows run on gemm_avx512.c */

const eg_kernel_table *eg_kernels_avx512_table(void); /* kernels_avx512.c */

const eg_kernel_table *eg_kernels_avx512(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("fma"))
        return eg_kernels_avx512_table();
    return NULL;
}

static void init_once(void) {
    if (dnnl_engine_create(&g_engine, dnnl_cpu, 0) != dnnl_success) {
        g_init_status = -1;
        return;
    }
    g_kernels = eg_kernels_avx512() ? eg_kernels_avx512() : eg_kernels_generic();
    // INFERD_DENSE=onednn: every dense layer on oneDNN's matmul (for comparisons).
    const char *dense = getenv("INFERD_DENSE");
    g_gemm48 = eg_kernels_avx512() && !(dense && !strcmp(dense, "onednn"));
}

int eg_kernels_global_init(inferd_error *err) {
    pthread_once(&g_once, init_once);
    if (g_init_status)
        return inferd_error_set(err, INFERD_EINTERNAL, "cannot create the oneDNN CPU engine");
    return 0;
}

const eg_kernel_table *eg_kernels(void) {
    pthread_once(&g_once, init_once);
    return g_kernels ? g_kernels : eg_kernels_generic();
}

static dnnl_stream_t stream(void) {
    if (!tls_stream)
        dnnl_stream_create(&tls_stream, g_engine, dnnl_stream_default_flags);
    return tls_stream;
}

/* A convolution weight reordered for one layout; shared by every plan that wants it. */
typedef struct conv_weight {
    struct conv_weight *next;
    const float *src; /* the plain weight it was made from */
    dnnl_memory_desc_t md;
    void *data;
} conv_weight;

/* K and V columns unpacked for the [CLS] attention (eg_cls_weights_get). */
typedef struct cls_weight {
    const eg_packed_weight *wk, *wv;
    int64_t k_off, v_off, n;
    float *kt, *vp;
    struct cls_weight *next;
} cls_weight;

struct eg_model_ctx {
    inferd_mem_account *acct;
    pthread_mutex_t pack_lock; /* guards packed, conv_weights and cls_weights */
    eg_packed_weight **packed;
    int n_packed;
    struct eg_cache *cache;
    conv_weight *conv_weights;
    cls_weight *cls_weights;
    pthread_mutex_t dense_lock; /* guards denses */
    struct eg_dense *denses;    /* dense layers in use, shared by the plans that need them */
};

struct eg_packed_weight {
    int64_t K, N;
    int transposed;
    float scale;
    dnnl_memory_desc_t md;
    void *data;
    size_t bytes;
    int borrowed; /* data lives in the cache mapping */
};

int eg_model_ctx_create(inferd_mem_account *acct, eg_model_ctx **out, inferd_error *err) {
    int rc = eg_kernels_global_init(err);
    if (rc < 0)
        return rc;
    eg_model_ctx *c = inferd_calloc(acct, 1, sizeof *c);
    if (!c)
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory");
    c->acct = acct;
    pthread_mutex_init(&c->pack_lock, NULL);
    pthread_mutex_init(&c->dense_lock, NULL);
    *out = c;
    return 0;
}

void eg_model_ctx_destroy(eg_model_ctx *c) {
    if (!c)
        return;
    for (int i = 0; i < c->n_packed; i++) {
        if (!c->packed[i]->borrowed)
            inferd_free(c->packed[i]->data);
        inferd_free(c->packed[i]);
    }
    inferd_free(c->packed);
    for (conv_weight *w = c->conv_weights, *next; w; w = next) {
        next = w->next;
        inferd_free(w->data);
        inferd_free(w);
    }
    for (cls_weight *w = c->cls_weights, *next; w; w = next) {
        next = w->next;
        inferd_free(w->kt);
        inferd_free(w->vp);
        inferd_free(w);
    }
    pthread_mutex_destroy(&c->pack_lock);
    pthread_mutex_destroy(&c->dense_lock);
    inferd_free(c);
}

static int dnnl_fail(inferd_error *err, dnnl_status_t s, const char *what) {
    return inferd_error_set(err, s == dnnl_out_of_memory ? INFERD_EINTERNAL : INFERD_EUNSUPPORTED,
                            "oneDNN failed to %s (status %d)", what, (int)s);
}

/* Whether md is BA16a<nb>b: [K, N] in blocks of 16 rows x nb columns, the nb columns
 * innermost, column blocks outermost; each column block is then K (padded) rows of nb. */
static int is_ba16anb(const dnnl_memory_desc_t *md, int64_t nb) {
    const dnnl_blocking_desc_t *b = &md->format_desc.blocking;
    return md->ndims == 2 && md->format_kind == dnnl_blocked && md->data_type == dnnl_f32 &&
           b->inner_nblks == 2 && b->inner_blks[0] == 16 && b->inner_idxs[0] == 0 &&
           b->inner_blks[1] == nb && b->inner_idxs[1] == 1 && b->strides[0] == 16 * nb &&
           md->padded_dims[0] % 16 == 0 && md->padded_dims[1] % nb == 0 &&
           b->strides[1] >= md->padded_dims[0] * nb;
}

static dnnl_status_t matmul_weights_md(int64_t K, int64_t N, dnnl_format_tag_t tag,
                                       dnnl_memory_desc_t *md) {
    dnnl_memory_desc_t src, wei, dst;
    dnnl_dims_t ds = {64, K}, dw = {K, N}, dd = {64, N};
    dnnl_memory_desc_init_by_tag(&src, 2, ds, dnnl_f32, dnnl_ab);
    dnnl_memory_desc_init_by_tag(&wei, 2, dw, dnnl_f32, tag);
    dnnl_memory_desc_init_by_tag(&dst, 2, dd, dnnl_f32, dnnl_ab);
    dnnl_matmul_desc_t mdesc;
    dnnl_status_t s = dnnl_matmul_desc_init(&mdesc, &src, &wei, NULL, &dst);
    if (s != dnnl_success)
        return s;
    dnnl_primitive_desc_t pd;
    if ((s = dnnl_primitive_desc_create(&pd, &mdesc, NULL, g_engine, NULL)) != dnnl_success)
        return s;
    *md = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    dnnl_primitive_desc_destroy(pd);
    return dnnl_success;
}

/* The layout dense weights [K, N] are packed in: oneDNN's pick (format "any"), except that
 * where it picks 64-column blocks (AVX-512), 48-column blocks when oneDNN takes them and they
 * pad N no more. Our GEMM (gemm_avx512.c) reads those in place, and oneDNN's matmul runs as
 * fast on them (faster at few rows: 1.14x at 8 rows, 1.02-1.04x at 32, on BERT-base's layer
 * shapes). */
static dnnl_status_t query_weights_md(int64_t K, int64_t N, dnnl_memory_desc_t *md) {
    dnnl_status_t s = matmul_weights_md(K, N, dnnl_format_tag_any, md);
    dnnl_memory_desc_t md48;
    if (s == dnnl_success && g_gemm48 && is_ba16anb(md, 64) &&
        (N + 47) / 48 * 48 <= md->padded_dims[1] &&
        matmul_weights_md(K, N, dnnl_BA16a48b, &md48) == dnnl_success && is_ba16anb(&md48, 48))
        *md = md48;
    return s;
}

static int register_packed(eg_model_ctx *c, eg_packed_weight *pw, eg_packed_weight **out,
                           inferd_error *err) {
    pthread_mutex_lock(&c->pack_lock);
    eg_packed_weight **grown =
        inferd_realloc(c->acct, c->packed, sizeof(*grown) * (size_t)(c->n_packed + 1));
    if (grown) {
        c->packed = grown;
        c->packed[c->n_packed++] = pw;
    }
    pthread_mutex_unlock(&c->pack_lock);
    if (!grown) {
        if (!pw->borrowed)
            inferd_free(pw->data);
        inferd_free(pw);
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory packing weights");
    }
    *out = pw;
    return 0;
}

void eg_model_ctx_use_cache(eg_model_ctx *c, struct eg_cache *cache) { c->cache = cache; }

int eg_pack_weight_cached(eg_model_ctx *c, int64_t K, int64_t N, int transposed, float scale,
                          eg_packed_weight **out, inferd_error *err) {
    if (!c->cache)
        return 0;
    eg_packed_weight *pw = inferd_calloc(c->acct, 1, sizeof *pw);
    if (!pw)
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory");
    size_t bytes;
    const void *data =
        eg_cache_next_packed(c->cache, K, N, transposed, scale, &pw->md, sizeof pw->md, &bytes);
    // The stored layout must be the one oneDNN picks on this machine now.
    dnnl_memory_desc_t want;
    if (!data || query_weights_md(K, N, &want) != dnnl_success ||
        !dnnl_memory_desc_equal(&want, &pw->md) || dnnl_memory_desc_get_size(&want) != bytes) {
        inferd_free(pw);
        return 0;
    }
    pw->K = K;
    pw->N = N;
    pw->transposed = transposed;
    pw->scale = scale;
    pw->data = (void *)data;
    pw->bytes = bytes;
    pw->borrowed = 1;
    int rc = register_packed(c, pw, out, err);
    return rc < 0 ? rc : 1;
}

int eg_model_ctx_packed_count(const eg_model_ctx *c) { return c->n_packed; }

static int gemm48_can(const eg_packed_weight *w, eg_act act);

double eg_model_ctx_tokens_share(const eg_model_ctx *c) {
    double can = 0, all = 0;
    for (int i = 0; i < c->n_packed; i++) {
        const eg_packed_weight *w = c->packed[i];
        double flops = (double)w->K * (double)w->N;
        all += flops;
        if (gemm48_can(w, EG_ACT_NONE))
            can += flops;
    }
    return all > 0 ? can / all : 0;
}

int eg_model_ctx_all_cached(const eg_model_ctx *c) {
    for (int i = 0; i < c->n_packed; i++)
        if (!c->packed[i]->borrowed)
            return 0;
    return 1;
}

void eg_model_ctx_packed_get(const eg_model_ctx *c, int i, int64_t *K, int64_t *N, int *transposed,
                             float *scale, const void **md, size_t *md_size, const void **data,
                             size_t *bytes) {
    const eg_packed_weight *pw = c->packed[i];
    *K = pw->K;
    *N = pw->N;
    *transposed = pw->transposed;
    *scale = pw->scale;
    *md = &pw->md;
    *md_size = sizeof pw->md;
    *data = pw->data;
    *bytes = pw->bytes;
}

/* The dense weights' layouts on AVX-512 (BA16a64b and BA16a48b, see is_ba16anb) are filled
 * from a plain [K, N] source by copying row pieces of a column block's width: a plain copy,
 * faster than oneDNN's generic reorder. Returns 0 when dst is neither layout (the caller
 * reorders with oneDNN). Padding is zeroed. */
static int copy_into_column_blocks(const eg_weight_part *part, int64_t K,
                                   const dnnl_memory_desc_t *dst, void *base) {
    int64_t nb = is_ba16anb(dst, 64) ? 64 : is_ba16anb(dst, 48) ? 48 : 0;
    if (!nb || part->transposed || part->scale != 1.0f || dst->dims[0] != K ||
        dst->dims[1] != part->N)
        return 0;
    int64_t N = part->N, Kp = dst->padded_dims[0], Np = dst->padded_dims[1];
    float *d0 = (float *)base + dst->offset0;
    const float *src = part->w;
    int64_t stride_nb = dst->format_desc.blocking.strides[1], n_blocks = Np / nb;
    // Source rows are read in order (the source is usually the mapped file, in 4 KiB pages:
    // walking down a column block would touch a new page each row); each row's pieces go to
    // their column blocks.
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < Kp; k++) {
        float *d = d0 + k * nb;
        for (int64_t j = 0; j < n_blocks; j++, d += stride_nb) {
            int64_t n0 = j * nb, w = k < K && N > n0 ? (N - n0 < nb ? N - n0 : nb) : 0;
            if (w > 0)
                memcpy(d, src + k * N + n0, sizeof(float) * (size_t)w);
            if (w < nb)
                memset(d + w, 0, sizeof(float) * (size_t)(nb - w));
        }
    }
    return 1;
}

/* Reorders one part (plain [K, part->N], or [N, K] when transposed) into dst, scaling it. */
static dnnl_status_t reorder_part(const eg_weight_part *part, int64_t K,
                                  const dnnl_memory_desc_t *dst_md, void *dst) {
    if (copy_into_column_blocks(part, K, dst_md, dst))
        return dnnl_success;
    dnnl_memory_desc_t plain;
    dnnl_dims_t dw = {K, part->N};
    dnnl_memory_desc_init_by_tag(&plain, 2, dw, dnnl_f32, part->transposed ? dnnl_ba : dnnl_ab);
    dnnl_memory_t m_src = NULL, m_dst = NULL;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t rpd = NULL;
    dnnl_primitive_t r = NULL;
    dnnl_status_t s = dnnl_primitive_attr_create(&attr);
    if (s == dnnl_success && part->scale != 1.0f)
        s = dnnl_primitive_attr_set_output_scales(attr, 1, 0, &part->scale);
    // oneDNN reads user memory where it is, unaligned included (it can be the mapped file).
    if (s == dnnl_success &&
        (s = dnnl_memory_create(&m_src, &plain, g_engine, (void *)part->w)) == dnnl_success &&
        (s = dnnl_memory_create(&m_dst, dst_md, g_engine, dst)) == dnnl_success &&
        (s = dnnl_reorder_primitive_desc_create(&rpd, &plain, g_engine, dst_md, g_engine, attr)) ==
            dnnl_success &&
        (s = dnnl_primitive_create(&r, rpd)) == dnnl_success) {
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, m_src}, {DNNL_ARG_TO, m_dst}};
        s = dnnl_primitive_execute(r, stream(), 2, args);
        if (s == dnnl_success)
            s = dnnl_stream_wait(stream());
    }
    dnnl_primitive_destroy(r);
    dnnl_primitive_desc_destroy(rpd);
    dnnl_primitive_attr_destroy(attr);
    dnnl_memory_destroy(m_src);
    dnnl_memory_destroy(m_dst);
    return s;
}

/* Whether each part can be reordered straight into its columns of the packed layout: the
 * layout has no padding and every part starts on a block boundary (oneDNN makes a
 * sub-memory descriptor then). subs receives the parts' descriptors. */
static int parts_fit_layout(const dnnl_memory_desc_t *md, const eg_weight_part *parts, int n,
                            int64_t K, dnnl_memory_desc_t *subs) {
    for (int d = 0; d < md->ndims; d++)
        if (md->padded_dims[d] != md->dims[d])
            return 0;
    int64_t off = 0;
    for (int i = 0; i < n; i++) {
        dnnl_dims_t dims = {K, parts[i].N}, offs = {0, off};
        if (dnnl_memory_desc_init_submemory(&subs[i], md, dims, offs) != dnnl_success)
            return 0;
        off += parts[i].N;
    }
    return 1;
}

int eg_pack_weight_parts(eg_model_ctx *c, const eg_weight_part *parts, int n, int64_t K,
                         eg_packed_weight **out, inferd_error *err) {
    int64_t N = 0;
    for (int i = 0; i < n; i++) {
        if (parts[i].N <= 0 || N > INT64_MAX - parts[i].N)
            return inferd_error_set(err, INFERD_EINVAL, "cannot pack a weight of %lld columns",
                                    (long long)parts[i].N);
        N += parts[i].N;
    }
    if (K <= 0 || N <= 0 || n <= 0 || n > EG_MAX_WEIGHT_PARTS)
        return inferd_error_set(err, INFERD_EINVAL, "cannot pack a %lldx%lld weight", (long long)K,
                                (long long)N);
    eg_packed_weight *pw = inferd_calloc(c->acct, 1, sizeof *pw);
    if (!pw)
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory packing weights");
    pw->K = K;
    pw->N = N;
    pw->transposed = n == 1 ? parts[0].transposed : 0;
    pw->scale = n == 1 ? parts[0].scale : 1.0f;
    dnnl_status_t s = query_weights_md(K, N, &pw->md);
    if (s != dnnl_success) {
        inferd_free(pw);
        return dnnl_fail(err, s, "choose a weight layout");
    }
    pw->bytes = dnnl_memory_desc_get_size(&pw->md);
    pw->data = inferd_malloc(c->acct, pw->bytes);
    if (!pw->data) {
        inferd_free(pw);
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory packing weights");
    }
    dnnl_memory_desc_t subs[EG_MAX_WEIGHT_PARTS];
    if (n == 1) {
        s = reorder_part(&parts[0], K, &pw->md, pw->data);
    } else if (parts_fit_layout(&pw->md, parts, n, K, subs)) {
        // Each part goes to its own columns: no side-by-side copy of the whole weight.
        for (int i = 0; i < n && s == dnnl_success; i++)
            s = reorder_part(&parts[i], K, &subs[i], pw->data);
    } else {
        // Lay the parts side by side ([K, N], scaled), then pack that.
        float *w = inferd_malloc(NULL, sizeof(float) * (size_t)(K * N));
        if (!w) {
            inferd_free(pw->data);
            inferd_free(pw);
            return inferd_error_set(err, INFERD_EINTERNAL, "out of memory merging layers");
        }
        int64_t off = 0;
        for (int i = 0; i < n; i++) {
            const eg_weight_part *p = &parts[i];
            for (int64_t r = 0; r < K; r++) {
                float *row = w + r * N + off;
                if (!p->transposed)
                    memcpy(row, p->w + r * p->N, sizeof(float) * (size_t)p->N);
                else
                    for (int64_t col = 0; col < p->N; col++)
                        memcpy(&row[col], p->w + col * K + r, sizeof(float));
                if (p->scale != 1.0f)
                    for (int64_t col = 0; col < p->N; col++)
                        row[col] *= p->scale;
            }
            off += p->N;
        }
        eg_weight_part whole = {.w = w, .N = N, .transposed = 0, .scale = 1.0f};
        s = reorder_part(&whole, K, &pw->md, pw->data);
        inferd_free(w);
    }
    if (s != dnnl_success) {
        inferd_free(pw->data);
        inferd_free(pw);
        return dnnl_fail(err, s, "pack a weight");
    }
    return register_packed(c, pw, out, err);
}

int eg_pack_weight(eg_model_ctx *c, const float *w, int64_t K, int64_t N, int transposed,
                   float scale, eg_packed_weight **out, inferd_error *err) {
    eg_weight_part part = {.w = w, .N = N, .transposed = transposed, .scale = scale};
    return eg_pack_weight_parts(c, &part, 1, K, out, err);
}

int64_t eg_packed_weight_k(const eg_packed_weight *w) { return w->K; }
int64_t eg_packed_weight_n(const eg_packed_weight *w) { return w->N; }

struct eg_dense {
    const eg_packed_weight *w;
    int64_t M;
    int has_bias, has_residual, residual_post_op;
    /* Sharing: plans of different shapes often need the same layer with the same rows (row
     * padding makes that the rule), so a dense layer is made once and counted. */
    eg_model_ctx *ctx;
    eg_act act;
    int residual_first, threads, refs; /* refs: [ctx->dense_lock] */
    struct eg_dense *next;
    dnnl_memory_desc_t src_md, dst_md, bias_md, res_md, scratch_md;
    dnnl_primitive_t prim;
    size_t scratch;
    int gemm48;         /* runs on eg_gemm48_avx512 (dense_run_gemm48) */
    int rows_ok;        /* eg_gemm48_avx512 can run it on listed rows (eg_dense_run_tokens) */
    size_t gemm48_work; /* bytes of work a thread */
};

/* Whether the weights are in the layout eg_gemm48_avx512 reads: whole 48-column panels. */
static int gemm48_layout(const eg_packed_weight *w) {
    return g_gemm48 && is_ba16anb(&w->md, 48) && w->N % 48 == 0;
}

/* Whether eg_gemm48_avx512 can run a layer at all: its layout, K in multiples of 16 (passes
 * above EG_GEMM48_MAX_K only without an activation). */
static int gemm48_can(const eg_packed_weight *w, eg_act act) {
    return gemm48_layout(w) && w->K % 16 == 0 && (w->K <= EG_GEMM48_MAX_K || act == EG_ACT_NONE);
}

/* Where eg_gemm48_avx512 beats oneDNN's matmul on the same weights, measured on the peers'
 * models' layer shapes, 1 thread: N on whole 48-column panels and K of 256 to 768 (a version
 * summing K = 3072 in blocks lost 3-5% from 32 rows, and was even at 1024; with N = 312 or
 * 936, half a panel wasted, 3-10%), and
 * - from 384 rows a thread: 1.5-3% faster at 1024 rows without activation, 8-10% with GELU;
 * - up to 32 rows on one thread, where it prefetches the cold weights (BERT-base batch 1 x 32:
 *   5-8% faster a run; at 48 and 64 rows 2-3% slower, at 16 even; on two threads, sharing
 *   the panels, 2-10% slower). In between it is even at best with weights in cache and slower
 *   with cold ones.
 * With several threads each takes its share of the rows. */
#define GEMM48_MAX_FEW_ROWS 32
#define GEMM48_MIN_ROWS 384

static int gemm48_wins(const eg_packed_weight *w, int64_t M, int threads) {
    return gemm48_layout(w) && w->K >= 256 && w->K <= EG_GEMM48_MAX_K &&
           ((threads == 1 && M <= GEMM48_MAX_FEW_ROWS) || M / threads >= GEMM48_MIN_ROWS);
}

static dnnl_alg_kind_t act_alg(eg_act a) {
    switch (a) {
    case EG_ACT_RELU:
        return dnnl_eltwise_relu;
    case EG_ACT_GELU_ERF:
        return dnnl_eltwise_gelu_erf;
    case EG_ACT_GELU_TANH:
        return dnnl_eltwise_gelu_tanh;
    case EG_ACT_TANH:
        return dnnl_eltwise_tanh;
    case EG_ACT_SIGMOID:
        return dnnl_eltwise_logistic;
    default:
        return dnnl_alg_kind_undef;
    }
}

/* The shared dense layer for these parameters, with a reference taken, or NULL. [dense_lock] */
static eg_dense *find_dense(eg_model_ctx *c, const eg_packed_weight *w, int64_t M, int has_bias,
                            eg_act act, int has_residual, int residual_first, int threads) {
    for (eg_dense *d = c->denses; d; d = d->next)
        if (d->w == w && d->M == M && d->has_bias == has_bias && d->act == act &&
            d->has_residual == has_residual && d->residual_first == residual_first &&
            d->threads == threads) {
            d->refs++;
            return d;
        }
    return NULL;
}

static int dense_make(eg_model_ctx *c, const eg_packed_weight *w, int64_t M, int has_bias,
                      eg_act act, int has_residual, int residual_first, int threads, eg_dense **out,
                      inferd_error *err);

int eg_dense_create(eg_model_ctx *c, const eg_packed_weight *w, int64_t M, int has_bias, eg_act act,
                    int has_residual, int residual_first, int threads, eg_dense **out,
                    inferd_error *err) {
    // oneDNN sizes the primitive for the calling thread's team (omp_get_max_threads()), which
    // is the plan's thread count: part of the key.
    pthread_mutex_lock(&c->dense_lock);
    eg_dense *d = find_dense(c, w, M, has_bias, act, has_residual, residual_first, threads);
    pthread_mutex_unlock(&c->dense_lock);
    if (d) {
        *out = d;
        return 0;
    }
    int rc = dense_make(c, w, M, has_bias, act, has_residual, residual_first, threads, &d, err);
    if (rc < 0)
        return rc;
    d->ctx = c;
    d->act = act;
    d->residual_first = residual_first;
    d->threads = threads;
    pthread_mutex_lock(&c->dense_lock);
    eg_dense *other = find_dense(c, w, M, has_bias, act, has_residual, residual_first, threads);
    if (!other) {
        d->refs = 1;
        d->next = c->denses;
        c->denses = d;
    }
    pthread_mutex_unlock(&c->dense_lock);
    if (other) { // made meanwhile by another plan
        dnnl_primitive_destroy(d->prim);
        inferd_free(d);
        d = other;
    }
    *out = d;
    return 0;
}

static int dense_make(eg_model_ctx *c, const eg_packed_weight *w, int64_t M, int has_bias,
                      eg_act act, int has_residual, int residual_first, int threads, eg_dense **out,
                      inferd_error *err) {
    eg_dense *d = inferd_calloc(c->acct, 1, sizeof *d);
    if (!d)
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory");
    d->w = w;
    d->M = M;
    d->has_bias = has_bias;
    d->has_residual = has_residual;
    dnnl_dims_t ds = {M, w->K}, dd = {M, w->N}, db = {1, w->N};
    dnnl_memory_desc_init_by_tag(&d->src_md, 2, ds, dnnl_f32, dnnl_ab);
    dnnl_memory_desc_init_by_tag(&d->dst_md, 2, dd, dnnl_f32, dnnl_ab);
    dnnl_memory_desc_init_by_tag(&d->bias_md, 2, db, dnnl_f32, dnnl_ab);
    d->res_md = d->dst_md;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t s;
    if ((s = dnnl_primitive_attr_create(&attr)) != dnnl_success ||
        (s = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user)) !=
            dnnl_success ||
        (s = dnnl_post_ops_create(&po)) != dnnl_success)
        goto fail;
    if (has_residual && residual_first &&
        (s = dnnl_post_ops_append_binary(po, dnnl_binary_add, &d->res_md)) != dnnl_success)
        goto fail;
    if (act != EG_ACT_NONE &&
        (s = dnnl_post_ops_append_eltwise(po, 1.0f, act_alg(act), 0.0f, 0.0f)) != dnnl_success)
        goto fail;
    if (has_residual && !residual_first &&
        (s = dnnl_post_ops_append_binary(po, dnnl_binary_add, &d->res_md)) != dnnl_success)
        goto fail;
    d->residual_post_op = has_residual ? (residual_first ? 0 : (act != EG_ACT_NONE)) : -1;
    if ((s = dnnl_primitive_attr_set_post_ops(attr, po)) != dnnl_success)
        goto fail;
    dnnl_matmul_desc_t mdesc;
    if ((s = dnnl_matmul_desc_init(&mdesc, &d->src_md, &w->md, has_bias ? &d->bias_md : NULL,
                                   &d->dst_md)) != dnnl_success ||
        (s = dnnl_primitive_desc_create(&pd, &mdesc, attr, g_engine, NULL)) != dnnl_success)
        goto fail;
    // The primitive must accept the layout the weight was packed in.
    if (!dnnl_memory_desc_equal(dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0),
                                &w->md)) {
        s = dnnl_unimplemented;
        goto fail;
    }
    d->scratch_md = *dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    d->scratch = dnnl_memory_desc_get_size(&d->scratch_md);
    if ((s = dnnl_primitive_create(&d->prim, pd)) != dnnl_success)
        goto fail;
    d->gemm48 = gemm48_wins(w, M, threads);
    d->rows_ok = gemm48_can(w, act);
    if (d->gemm48 || d->rows_ok) {
        d->gemm48_work = (eg_gemm48_work_floats(M, w->K) * sizeof(float) + 63) / 64 * 64;
        // Then the row list of eg_dense_run_tokens.
        size_t need = (size_t)threads * d->gemm48_work + 64 + (size_t)M * sizeof(int32_t);
        if (d->scratch < need)
            d->scratch = need;
    }
    dnnl_primitive_desc_destroy(pd);
    dnnl_post_ops_destroy(po);
    dnnl_primitive_attr_destroy(attr);
    *out = d;
    return 0;
fail:
    dnnl_primitive_desc_destroy(pd);
    dnnl_post_ops_destroy(po);
    dnnl_primitive_attr_destroy(attr);
    inferd_free(d);
    return dnnl_fail(err, s, "create a dense layer");
}

void eg_dense_destroy(eg_dense *d) {
    if (!d)
        return;
    eg_model_ctx *c = d->ctx;
    pthread_mutex_lock(&c->dense_lock);
    int last = --d->refs == 0;
    if (last)
        for (eg_dense **l = &c->denses; *l; l = &(*l)->next)
            if (*l == d) {
                *l = d->next;
                break;
            }
    pthread_mutex_unlock(&c->dense_lock);
    if (last) {
        dnnl_primitive_destroy(d->prim);
        inferd_free(d);
    }
}

size_t eg_dense_scratch(const eg_dense *d) { return d->scratch; }

/* eg_dense_run on eg_gemm48_avx512, on rows 0..M-1 or, with rows, on the M rows it lists.
 * With T threads, thread t takes rows [M t / T, M (t+1) / T) rounded to the tile's 8 rows,
 * with its own work. */
static void dense_run_gemm48(const eg_dense *d, const float *x, const float *bias,
                             const float *residual, float *y, void *scratch, const int32_t *rows,
                             int64_t M) {
    const int64_t K = d->w->K, N = d->w->N;
    const dnnl_memory_desc_t *md = &d->w->md;
    eg_gemm48_args g = {.M = M,
                        .N = N,
                        .K = K,
                        .a = x,
                        .lda = K,
                        .b = (const float *)d->w->data + md->offset0,
                        .b_panel = md->format_desc.blocking.strides[1],
                        .c = y,
                        .ldc = N,
                        .bias = bias,
                        .residual = residual,
                        .ldr = N,
                        .residual_first = d->residual_first,
                        .act = d->act,
                        .rows = rows};
    char *work = (char *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    int threads = d->threads;
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        int t = omp_get_thread_num(), n = omp_get_num_threads();
        eg_gemm48_args part = g;
        if (n > 1) {
            int64_t lo = M * t / n / 8 * 8, hi = t + 1 == n ? M : M * (t + 1) / n / 8 * 8;
            part.M = hi - lo;
            if (rows) {
                part.rows += lo;
            } else {
                part.a += lo * K;
                part.c += lo * N;
                part.residual = residual ? residual + lo * N : NULL;
            }
        }
        if (part.M > 0)
            eg_gemm48_avx512(&part, (float *)(work + (size_t)t * d->gemm48_work));
    }
}

/* Whether eg_gemm48_avx512 may read the residual of an M x N output y: none, apart from y, or
 * y itself (each element read just before it is written). A residual partly overlapping y
 * could be read after the GEMM has written there: oneDNN then (the planner never places them
 * so). */
static int residual_ok(const float *residual, const float *y, int64_t MN) {
    return !residual || residual == y || residual + MN <= y || y + MN <= residual;
}

int eg_dense_run(const eg_dense *d, const float *x, const float *bias, const float *residual,
                 float *y, void *scratch, inferd_error *err) {
    if (d->gemm48 && residual_ok(residual, y, d->M * d->w->N)) {
        dense_run_gemm48(d, x, bias, residual, y, scratch, NULL, d->M);
        return 0;
    }
    dnnl_memory_t mem[6] = {0};
    dnnl_exec_arg_t args[6];
    int n = 0;
    dnnl_status_t s = dnnl_success;
#define ARG(kind, md, ptr)                                                                         \
    do {                                                                                           \
        if (s == dnnl_success &&                                                                   \
            (s = dnnl_memory_create(&mem[n], md, g_engine, (void *)(ptr))) == dnnl_success) {      \
            args[n].arg = kind;                                                                    \
            args[n].memory = mem[n];                                                               \
            n++;                                                                                   \
        }                                                                                          \
    } while (0)
    ARG(DNNL_ARG_SRC, &d->src_md, x);
    ARG(DNNL_ARG_WEIGHTS, &d->w->md, d->w->data);
    ARG(DNNL_ARG_DST, &d->dst_md, y);
    if (d->has_bias)
        ARG(DNNL_ARG_BIAS, &d->bias_md, bias);
    if (d->has_residual)
        ARG(DNNL_ARG_ATTR_MULTIPLE_POST_OP(d->residual_post_op) | DNNL_ARG_SRC_1, &d->res_md,
            residual);
    if (d->scratch)
        ARG(DNNL_ARG_SCRATCHPAD, &d->scratch_md, scratch);
#undef ARG
    if (s == dnnl_success)
        s = dnnl_primitive_execute(d->prim, stream(), n, args);
    for (int i = 0; i < n; i++)
        dnnl_memory_destroy(mem[i]);
    return s == dnnl_success ? 0 : dnnl_fail(err, s, "run a dense layer");
}

int eg_dense_run_tokens(const eg_dense *d, const float *x, const float *bias, const float *residual,
                        float *y, void *scratch, int64_t batch, int64_t seq, const int32_t *lengths,
                        inferd_error *err) {
    const int64_t N = d->w->N;
    if (!d->rows_ok || batch * seq > d->M || !residual_ok(residual, y, d->M * N))
        return eg_dense_run(d, x, bias, residual, y, scratch, err);
    int32_t *rows = (int32_t *)((char *)scratch + ((size_t)d->threads * d->gemm48_work + 64));
    int64_t m = 0;
    for (int64_t b = 0; b < batch; b++) {
        int64_t len = eg_keys_used(lengths, b, seq);
        for (int64_t s = 0; s < len; s++)
            rows[m++] = (int32_t)(b * seq + s);
        if (len < seq)
            memset(y + (b * seq + len) * N, 0, sizeof(float) * (size_t)((seq - len) * N));
    }
    dense_run_gemm48(d, x, bias, residual, y, scratch, rows, m);
    return 0;
}

/* ---- convolution ---- */

struct eg_conv {
    dnnl_memory_desc_t src_md, wei_md, bias_md, dst_md, scratch_md;
    const void *weights; /* in the layout of wei_md, owned by the model ctx */
    int has_bias;
    dnnl_primitive_t prim;
    size_t scratch;
};

static dnnl_status_t reorder(const dnnl_memory_desc_t *from_md, const void *from,
                             const dnnl_memory_desc_t *to_md, void *to) {
    dnnl_memory_t a = NULL, b = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t r = NULL;
    dnnl_status_t s;
    if ((s = dnnl_memory_create(&a, from_md, g_engine, (void *)from)) == dnnl_success &&
        (s = dnnl_memory_create(&b, to_md, g_engine, to)) == dnnl_success &&
        (s = dnnl_reorder_primitive_desc_create(&pd, from_md, g_engine, to_md, g_engine, NULL)) ==
            dnnl_success &&
        (s = dnnl_primitive_create(&r, pd)) == dnnl_success) {
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, a}, {DNNL_ARG_TO, b}};
        if ((s = dnnl_primitive_execute(r, stream(), 2, args)) == dnnl_success)
            s = dnnl_stream_wait(stream());
    }
    dnnl_primitive_destroy(r);
    dnnl_primitive_desc_destroy(pd);
    dnnl_memory_destroy(a);
    dnnl_memory_destroy(b);
    return s;
}

/* The weight in layout md, reordered once per (weight, layout) and kept in the ctx. */
static const void *conv_weight_for(eg_model_ctx *c, const float *src,
                                   const dnnl_memory_desc_t *plain, const dnnl_memory_desc_t *md) {
    pthread_mutex_lock(&c->pack_lock);
    conv_weight *w = c->conv_weights;
    while (w && !(w->src == src && dnnl_memory_desc_equal(&w->md, md)))
        w = w->next;
    if (!w && (w = inferd_calloc(c->acct, 1, sizeof *w))) {
        w->src = src;
        w->md = *md;
        w->data = inferd_malloc(c->acct, dnnl_memory_desc_get_size(md));
        if (!w->data || reorder(plain, src, md, w->data) != dnnl_success) {
            inferd_free(w->data);
            inferd_free(w);
            w = NULL;
        } else {
            w->next = c->conv_weights;
            c->conv_weights = w;
        }
    }
    pthread_mutex_unlock(&c->pack_lock);
    return w ? w->data : NULL;
}

/* A packed weight back in plain [K, N] row-major layout, in memory of the ctx's account. */
static float *unpack_weight(eg_model_ctx *c, const eg_packed_weight *w) {
    dnnl_dims_t dims = {w->K, w->N};
    dnnl_memory_desc_t plain;
    dnnl_memory_desc_init_by_tag(&plain, 2, dims, dnnl_f32, dnnl_ab);
    float *out = inferd_malloc(c->acct, (size_t)(w->K * w->N) * sizeof(float));
    if (out && reorder(&w->md, w->data, &plain, out) != dnnl_success) {
        inferd_free(out);
        out = NULL;
    }
    return out;
}

static cls_weight *cls_weight_make(eg_model_ctx *c, const eg_packed_weight *wk, int64_t k_off,
                                   const eg_packed_weight *wv, int64_t v_off, int64_t n) {
    cls_weight *w = inferd_calloc(c->acct, 1, sizeof *w);
    float *pk = unpack_weight(c, wk), *pv = wv == wk ? pk : unpack_weight(c, wv);
    int64_t K = wk->K;
    if (w) {
        w->kt = inferd_malloc(c->acct, (size_t)(n * K) * sizeof(float));
        w->vp = inferd_malloc(c->acct, (size_t)(K * n) * sizeof(float));
    }
    int ok = w && pk && pv && w->kt && w->vp;
    for (int64_t i = 0; ok && i < K; i++) {
        for (int64_t j = 0; j < n; j++)
            w->kt[j * K + i] = pk[i * wk->N + k_off + j];
        memcpy(w->vp + i * n, pv + i * wv->N + v_off, (size_t)n * sizeof(float));
    }
    if (pv != pk)
        inferd_free(pv);
    inferd_free(pk);
    if (!ok && w) {
        inferd_free(w->kt);
        inferd_free(w->vp);
        inferd_free(w);
        w = NULL;
    }
    if (w) {
        w->wk = wk;
        w->wv = wv;
        w->k_off = k_off;
        w->v_off = v_off;
        w->n = n;
    }
    return w;
}

int eg_cls_weights_get(eg_model_ctx *c, const eg_packed_weight *wk, int64_t k_off,
                       const eg_packed_weight *wv, int64_t v_off, int64_t n, const float **kt,
                       const float **vp, inferd_error *err) {
    if (wk->K != wv->K || k_off < 0 || v_off < 0 || n < 1 || k_off + n > wk->N || v_off + n > wv->N)
        return inferd_error_set(err, INFERD_EINTERNAL, "[CLS] attention weights out of range");
    pthread_mutex_lock(&c->pack_lock);
    cls_weight *w = c->cls_weights;
    while (w &&
           !(w->wk == wk && w->wv == wv && w->k_off == k_off && w->v_off == v_off && w->n == n))
        w = w->next;
    if (!w && (w = cls_weight_make(c, wk, k_off, wv, v_off, n))) {
        w->next = c->cls_weights;
        c->cls_weights = w;
    }
    pthread_mutex_unlock(&c->pack_lock);
    if (!w)
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory unpacking weights");
    *kt = w->kt;
    *vp = w->vp;
    return 0;
}

int eg_conv_create(eg_model_ctx *c, const eg_conv_shape *sh, const float *weights, int has_bias,
                   eg_act act, eg_conv **out, inferd_error *err) {
    eg_conv *cv = inferd_calloc(c->acct, 1, sizeof *cv);
    if (!cv)
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory");
    int nd = sh->rank, sp = nd - 2;
    dnnl_format_tag_t plain = nd == 3 ? dnnl_abc : dnnl_abcd;
    dnnl_dims_t src, wei, dst, bias = {sh->dst[1]}, strides, dil, pl, pr;
    for (int i = 0; i < nd; i++) {
        src[i] = sh->src[i];
        wei[i] = sh->wei[i];
        dst[i] = sh->dst[i];
    }
    for (int i = 0; i < sp; i++) {
        strides[i] = sh->strides[i];
        dil[i] = sh->dilations[i] - 1; // oneDNN counts the gaps, ONNX the step
        pl[i] = sh->pad_l[i];
        pr[i] = sh->pad_r[i];
    }
    dnnl_memory_desc_t wei_any, wei_plain;
    dnnl_memory_desc_init_by_tag(&cv->src_md, nd, src, dnnl_f32, plain);
    dnnl_memory_desc_init_by_tag(&cv->dst_md, nd, dst, dnnl_f32, plain);
    dnnl_memory_desc_init_by_tag(&wei_any, nd, wei, dnnl_f32, dnnl_format_tag_any);
    dnnl_memory_desc_init_by_tag(&wei_plain, nd, wei, dnnl_f32, plain);
    dnnl_memory_desc_init_by_tag(&cv->bias_md, 1, bias, dnnl_f32, dnnl_a);
    cv->has_bias = has_bias;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_convolution_desc_t cd;
    dnnl_status_t s;
    if ((s = dnnl_primitive_attr_create(&attr)) != dnnl_success ||
        (s = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user)) !=
            dnnl_success ||
        (s = dnnl_post_ops_create(&po)) != dnnl_success)
        goto fail;
    if (act != EG_ACT_NONE &&
        (s = dnnl_post_ops_append_eltwise(po, 1.0f, act_alg(act), 0.0f, 0.0f)) != dnnl_success)
        goto fail;
    if ((s = dnnl_primitive_attr_set_post_ops(attr, po)) != dnnl_success ||
        (s = dnnl_dilated_convolution_forward_desc_init(
             &cd, dnnl_forward_inference, dnnl_convolution_direct, &cv->src_md, &wei_any,
             has_bias ? &cv->bias_md : NULL, &cv->dst_md, strides, dil, pl, pr)) != dnnl_success ||
        (s = dnnl_primitive_desc_create(&pd, &cd, attr, g_engine, NULL)) != dnnl_success)
        goto fail;
    cv->wei_md = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    cv->scratch_md = *dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    cv->scratch = dnnl_memory_desc_get_size(&cv->scratch_md);
    cv->weights = conv_weight_for(c, weights, &wei_plain, &cv->wei_md);
    if (!cv->weights) {
        s = dnnl_out_of_memory;
        goto fail;
    }
    if ((s = dnnl_primitive_create(&cv->prim, pd)) != dnnl_success)
        goto fail;
    dnnl_primitive_desc_destroy(pd);
    dnnl_post_ops_destroy(po);
    dnnl_primitive_attr_destroy(attr);
    *out = cv;
    return 0;
fail:
    dnnl_primitive_desc_destroy(pd);
    dnnl_post_ops_destroy(po);
    dnnl_primitive_attr_destroy(attr);
    inferd_free(cv);
    return dnnl_fail(err, s, "create a convolution");
}

void eg_conv_destroy(eg_conv *cv) {
    if (!cv)
        return;
    dnnl_primitive_destroy(cv->prim);
    inferd_free(cv);
}

size_t eg_conv_scratch(const eg_conv *cv) { return cv->scratch; }

int eg_conv_run(const eg_conv *cv, const float *x, const float *bias, float *y, void *scratch,
                inferd_error *err) {
    dnnl_memory_t mem[5] = {0};
    dnnl_exec_arg_t args[5];
    int n = 0;
    dnnl_status_t s = dnnl_success;
    const struct {
        int arg;
        const dnnl_memory_desc_t *md;
        const void *ptr;
        int on;
    } list[] = {{DNNL_ARG_SRC, &cv->src_md, x, 1},
                {DNNL_ARG_WEIGHTS, &cv->wei_md, cv->weights, 1},
                {DNNL_ARG_DST, &cv->dst_md, y, 1},
                {DNNL_ARG_BIAS, &cv->bias_md, bias, cv->has_bias},
                {DNNL_ARG_SCRATCHPAD, &cv->scratch_md, scratch, cv->scratch > 0}};
    for (int i = 0; i < 5 && s == dnnl_success; i++) {
        if (!list[i].on)
            continue;
        if ((s = dnnl_memory_create(&mem[n], list[i].md, g_engine, (void *)list[i].ptr)) ==
            dnnl_success) {
            args[n].arg = list[i].arg;
            args[n].memory = mem[n];
            n++;
        }
    }
    if (s == dnnl_success)
        s = dnnl_primitive_execute(cv->prim, stream(), n, args);
    for (int i = 0; i < n; i++)
        dnnl_memory_destroy(mem[i]);
    return s == dnnl_success ? 0 : dnnl_fail(err, s, "run a convolution");
}
