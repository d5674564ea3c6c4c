/* fused.c: definitions of the fused ops (infer / prepare / run) over kernels.h. */
#include "engine/fused.h"

#include <math.h>
#include <string.h>

#include "engine/ops.h"
#include "engine/plan.h"

static int fail(inferd_error *err, const eg_node *n, const char *what) {
    char b[160];
    return inferd_error_set(err, INFERD_EINVAL, "%s: %s", eg_node_str(n, b, sizeof b), what);
}

static int64_t last_dim(const eg_tensor *t) { return t->rank ? t->dims[t->rank - 1] : 1; }

static int same_shape(const eg_tensor *a, const eg_tensor *b) {
    if (a->rank != b->rank)
        return 0;
    for (int i = 0; i < a->rank; i++)
        if (a->dims[i] != b->dims[i])
            return 0;
    return 1;
}

/* The run's valid-token lengths when it runs a padded batch on its valid tokens alone
 * (eg_run_info) and a tensor's first two dims are that batch's [batch, seq]; else NULL. */
static const int32_t *token_lengths(const eg_run_ctx *ctx, const eg_tensor *t) {
    const eg_run_info *info = ctx->info;
    return info && info->lengths && t->rank >= 2 && t->dims[0] == info->batch &&
                   t->dims[1] == info->seq
               ? info->lengths
               : NULL;
}

/* ---- FusedMatMul ---- */

static int matmul_infer(const eg_node *n, const eg_tensor *in, eg_tensor *out, inferd_error *err) {
    const eg_matmul_params *p = n->params;
    int64_t K = eg_packed_weight_k(p->w), N = eg_packed_weight_n(p->w);
    if (in[0].dtype != INFERD_DTYPE_F32 || in[0].rank < 1 || last_dim(&in[0]) != K)
        return fail(err, n, "input does not match the weight");
    out[0] = in[0];
    out[0].data = NULL;
    out[0].dims[out[0].rank - 1] = N;
    if (n->in[1] >= 0 && (in[1].dtype != INFERD_DTYPE_F32 || eg_tensor_numel(&in[1]) != N))
        return fail(err, n, "bias does not match the weight");
    if (n->in[2] >= 0 && (in[2].dtype != INFERD_DTYPE_F32 || !same_shape(&in[2], &out[0])))
        return fail(err, n, "residual does not match the output");
    return 0;
}

static int matmul_prepare(const eg_node *n, const eg_tensor *in, const eg_tensor *out, int threads,
                          void *model_ctx, void **state, inferd_error *err) {
    const eg_matmul_params *p = n->params;
    int64_t K = eg_packed_weight_k(p->w);
    int64_t M = eg_tensor_numel(&in[0]) / K;
    (void)out;
    if (M > 0 && n->row_pad > M)
        M = n->row_pad; // the planner made every buffer this layer touches large enough
    if (M == 0) {
        *state = NULL;
        return 0;
    }
    return eg_dense_create(model_ctx, p->w, M, n->in[1] >= 0, p->act, n->in[2] >= 0,
                           p->residual_first, threads, (eg_dense **)state, err);
}

static void matmul_release(void *state) { eg_dense_destroy(state); }

static size_t matmul_scratch(const eg_node *n, const void *state) {
    (void)n;
    return state ? eg_dense_scratch(state) : 0;
}

static int matmul_run(const eg_node *n, const eg_tensor *in, eg_tensor *out, const eg_run_ctx *ctx,
                      inferd_error *err) {
    if (!ctx->state)
        return 0; // no rows
    const float *bias = n->in[1] >= 0 ? in[1].data : NULL;
    const float *residual = n->in[2] >= 0 ? in[2].data : NULL;
    // Token rows of a padded batch whose padding the outputs ignore: only the valid ones.
    const int32_t *lengths = in[0].rank == 3 ? token_lengths(ctx, &in[0]) : NULL;
    if (lengths)
        return eg_dense_run_tokens(ctx->state, in[0].data, bias, residual, out[0].data,
                                   ctx->scratch, in[0].dims[0], in[0].dims[1], lengths, err);
    return eg_dense_run(ctx->state, in[0].data, bias, residual, out[0].data, ctx->scratch, err);
}

/* ---- FusedLayerNorm ---- */

static int layernorm_infer(const eg_node *n, const eg_tensor *in, eg_tensor *out,
                           inferd_error *err) {
    if (in[0].dtype != INFERD_DTYPE_F32 || in[0].rank < 1)
        return fail(err, n, "input must be float with rank >= 1");
    int64_t H = last_dim(&in[0]);
    for (int i = 1; i <= 2; i++)
        if (n->in[i] >= 0 && (in[i].dtype != INFERD_DTYPE_F32 || eg_tensor_numel(&in[i]) != H))
            return fail(err, n, "scale or bias does not match the normalised axis");
    if (n->in[3] >= 0 && (in[3].dtype != INFERD_DTYPE_F32 || !same_shape(&in[3], &in[0])))
        return fail(err, n, "residual does not match the input");
    out[0] = in[0];
    out[0].data = NULL;
    return 0;
}

static int layernorm_run(const eg_node *n, const eg_tensor *in, eg_tensor *out,
                         const eg_run_ctx *ctx, inferd_error *err) {
    (void)err;
    const eg_layernorm_params *p = n->params;
    int64_t H = last_dim(&in[0]);
    int64_t rows = H ? eg_tensor_numel(&in[0]) / H : 0;
    eg_kernels()->layernorm(in[0].data, n->in[3] >= 0 ? in[3].data : NULL,
                            n->in[1] >= 0 ? in[1].data : NULL, n->in[2] >= 0 ? in[2].data : NULL,
                            out[0].data, rows, H, p->eps, ctx->threads);
    return 0;
}

/* ---- FusedGelu ---- */

static int gelu_infer(const eg_node *n, const eg_tensor *in, eg_tensor *out, inferd_error *err) {
    if (in[0].dtype != INFERD_DTYPE_F32)
        return fail(err, n, "input must be float");
    out[0] = in[0];
    out[0].data = NULL;
    return 0;
}

static int gelu_run(const eg_node *n, const eg_tensor *in, eg_tensor *out, const eg_run_ctx *ctx,
                    inferd_error *err) {
    (void)err;
    const eg_gelu_params *p = n->params;
    eg_kernels()->gelu(in[0].data, out[0].data, eg_tensor_numel(&in[0]), p->tanh_approx,
                       ctx->threads);
    return 0;
}

/* ---- FusedConv ---- */

/* The Conv's own shape rules apply: infer as the Conv the node was made from. */
static int conv_infer(const eg_node *n, const eg_tensor *in, eg_tensor *out, inferd_error *err) {
    eg_node conv = *n;
    conv.op = EG_OP_Conv;
    conv.op_type = "Conv";
    return eg_standard_op_def(EG_OP_Conv)->infer(&conv, in, out, err);
}

static int conv_prepare(const eg_node *n, const eg_tensor *in, const eg_tensor *out, int threads,
                        void *model_ctx, void **state, inferd_error *err) {
    (void)threads;
    const eg_conv_params *p = n->params;
    eg_conv_shape sh = {.rank = in[0].rank};
    if (sh.rank != 3 && sh.rank != 4)
        return fail(err, n, "only 1-D and 2-D convolutions are fused");
    int sp = sh.rank - 2;
    for (int i = 0; i < sh.rank; i++) {
        sh.src[i] = in[0].dims[i];
        sh.wei[i] = in[1].dims[i];
        sh.dst[i] = out[0].dims[i];
    }
    const eg_attr *st = eg_node_attr(n, "strides"), *dl = eg_node_attr(n, "dilations"),
                  *pd = eg_node_attr(n, "pads");
    for (int i = 0; i < sp; i++) {
        sh.strides[i] = st && st->n == sp ? st->ints[i] : 1;
        sh.dilations[i] = dl && dl->n == sp ? dl->ints[i] : 1;
        sh.pad_l[i] = pd && pd->n == 2 * sp ? pd->ints[i] : 0;
        sh.pad_r[i] = pd && pd->n == 2 * sp ? pd->ints[sp + i] : 0;
    }
    if (eg_tensor_numel(&in[0]) == 0 || eg_tensor_numel(&out[0]) == 0) {
        *state = NULL;
        return 0;
    }
    return eg_conv_create(model_ctx, &sh, in[1].data, n->n_in > 2 && n->in[2] >= 0, p->act,
                          (eg_conv **)state, err);
}

static void conv_release(void *state) { eg_conv_destroy(state); }

static size_t conv_scratch(const eg_node *n, const void *state) {
    (void)n;
    return state ? eg_conv_scratch(state) : 0;
}

static int conv_run(const eg_node *n, const eg_tensor *in, eg_tensor *out, const eg_run_ctx *ctx,
                    inferd_error *err) {
    if (!ctx->state)
        return 0;
    return eg_conv_run(ctx->state, in[0].data, n->n_in > 2 && n->in[2] >= 0 ? in[2].data : NULL,
                       out[0].data, ctx->scratch, err);
}

/* ---- FusedAttention ---- */

/* An additive attention mask must broadcast to [B, heads, Sq, Sk]. */
static int check_mask(const eg_node *n, const eg_tensor *m, int64_t B, int64_t heads, int64_t Sq,
                      int64_t Sk, inferd_error *err) {
    if (m->dtype != INFERD_DTYPE_F32 || m->rank > 4)
        return fail(err, n, "mask must be float with rank <= 4");
    int64_t want[4] = {B, heads, Sq, Sk};
    for (int i = 0; i < m->rank; i++) {
        int64_t d = m->dims[i], w = want[4 - m->rank + i];
        if (d != 1 && d != w)
            return fail(err, n, "mask does not broadcast to [batch, heads, seq, seq]");
    }
    if (m->rank == 0 || m->dims[m->rank - 1] != Sk)
        return fail(err, n, "mask must have one value per key");
    return 0;
}

static int attention_infer(const eg_node *n, const eg_tensor *in, eg_tensor *out,
                           inferd_error *err) {
    const eg_attention_params *p = n->params;
    int64_t HD = p->heads * p->head_dim;
    for (int i = 0; i < 3; i++)
        if (in[i].dtype != INFERD_DTYPE_F32 || in[i].rank != 3)
            return fail(err, n, "Q, K and V must be float [batch, seq, channels]");
    if (in[0].dims[0] != in[1].dims[0] || in[1].dims[0] != in[2].dims[0] ||
        in[1].dims[1] != in[2].dims[1] || p->q_off + HD > in[0].dims[2] ||
        p->k_off + HD > in[1].dims[2] || p->v_off + HD > in[2].dims[2])
        return fail(err, n, "Q, K and V shapes do not agree");
    int64_t B = in[0].dims[0], Sq = in[0].dims[1], Sk = in[1].dims[1];
    if (n->in[3] >= 0 && check_mask(n, &in[3], B, p->heads, Sq, Sk, err) < 0)
        return -1;
    out[0].dtype = INFERD_DTYPE_F32;
    out[0].rank = 3;
    out[0].dims[0] = B;
    out[0].dims[1] = p->q_rows > 0 && p->q_rows < Sq ? p->q_rows : Sq;
    out[0].dims[2] = HD;
    return 0;
}

static size_t attention_scratch(const eg_node *n, const eg_tensor *in, const eg_tensor *out,
                                int threads) {
    const eg_attention_params *p = n->params;
    (void)out;
    return eg_attention_scratch(in[1].dims[1], p->head_dim, threads) +
           sizeof(int32_t) * (size_t)(in[0].dims[0] + 16);
}

/* Masks below this are treated as "never attend": exp of them underflows to exactly 0. */
#define MASKED (-1e4f)

/* The additive mask m (broadcastable to [B, heads, Sq, Sk]) as a base and strides of that
 * view, 0 where broadcast. With one mask row per batch row, keys after the last unmasked one
 * are padding: their weights are exactly zero, so they can be skipped; then the valid
 * lengths go to key_len (B entries) and are returned, else NULL. */
static const int32_t *mask_view(const eg_tensor *m, int64_t B, int64_t Sk, int32_t *key_len,
                                const float **mask, int64_t *m_bs, int64_t *m_hs, int64_t *m_is) {
    int64_t dims[4] = {1, 1, 1, 1};
    for (int i = 0; i < m->rank; i++)
        dims[4 - m->rank + i] = m->dims[i];
    int64_t s_q = Sk, s_h = dims[2] * Sk, s_b = dims[1] * dims[2] * Sk;
    *mask = m->data;
    *m_bs = dims[0] == 1 ? 0 : s_b;
    *m_hs = dims[1] == 1 ? 0 : s_h;
    *m_is = dims[2] == 1 ? 0 : s_q;
    if (dims[1] != 1 || dims[2] != 1)
        return NULL;
    for (int64_t b = 0; b < B; b++) {
        const float *row = *mask + b * *m_bs;
        int64_t L = Sk;
        while (L > 0 && row[L - 1] <= MASKED)
            L--;
        key_len[b] = (int32_t)(L > 0 ? L : Sk);
    }
    return key_len;
}

static int attention_run(const eg_node *n, const eg_tensor *in, eg_tensor *out,
                         const eg_run_ctx *ctx, inferd_error *err) {
    (void)err;
    const eg_attention_params *p = n->params;
    int64_t B = in[0].dims[0], Sq = in[0].dims[1], Sk = in[1].dims[1];
    eg_attention_args a = {
        .batch = B,
        .seq_q = Sq,
        .seq_k = Sk,
        .heads = p->heads,
        .head_dim = p->head_dim,
        .q = (const float *)in[0].data + p->q_off,
        .k = (const float *)in[1].data + p->k_off,
        .v = (const float *)in[2].data + p->v_off,
        .q_rs = in[0].dims[2],
        .k_rs = in[1].dims[2],
        .v_rs = in[2].dims[2],
        .out = out[0].data,
        .scale = p->scale,
        .q_rows_per_batch = out[0].dims[1],
        .out_seq = out[0].dims[1],
    };
    a.q_bs = a.q_rs * Sq;
    a.k_bs = a.k_rs * Sk;
    a.v_bs = a.v_rs * Sk;
    int32_t *key_len =
        (int32_t *)((char *)ctx->scratch + eg_attention_scratch(Sk, p->head_dim, ctx->threads));
    if (n->in[3] >= 0)
        a.key_len = mask_view(&in[3], B, Sk, key_len, &a.mask, &a.m_bs, &a.m_hs, &a.m_is);
    // A run on valid tokens only: padded query rows are not needed either.
    a.q_len = token_lengths(ctx, &in[0]);
    eg_kernels()->attention(&a, ctx->scratch, ctx->threads);
    return 0;
}

/* ---- FusedClsAttention ---- */

static int cls_attention_infer(const eg_node *n, const eg_tensor *in, eg_tensor *out,
                               inferd_error *err) {
    const eg_cls_attention_params *p = n->params;
    int64_t HD = p->heads * p->head_dim, H = eg_packed_weight_k(p->wk);
    if (in[0].dtype != INFERD_DTYPE_F32 || in[0].rank != 3 || in[0].dims[1] != 1 ||
        p->q_off + HD > in[0].dims[2])
        return fail(err, n, "Q must be float [batch, 1, channels]");
    if (in[1].dtype != INFERD_DTYPE_F32 || in[1].rank != 3 || in[1].dims[0] != in[0].dims[0] ||
        in[1].dims[2] != H || eg_packed_weight_k(p->wv) != H)
        return fail(err, n, "rows must be float [batch, seq, hidden] with the weights' hidden");
    if (p->k_off + HD > eg_packed_weight_n(p->wk) || p->v_off + HD > eg_packed_weight_n(p->wv))
        return fail(err, n, "heads do not fit the weights");
    for (int i = 2; i < 4; i++)
        if (n->in[i] >= 0 &&
            (in[i].dtype != INFERD_DTYPE_F32 ||
             eg_tensor_numel(&in[i]) != eg_packed_weight_n(i == 2 ? p->wk : p->wv)))
            return fail(err, n, "bias does not match the weight");
    int64_t B = in[0].dims[0], S = in[1].dims[1];
    if (n->in[4] >= 0 && check_mask(n, &in[4], B, p->heads, S, S, err) < 0)
        return -1;
    out[0].dtype = INFERD_DTYPE_F32;
    out[0].rank = 3;
    out[0].dims[0] = B;
    out[0].dims[1] = 1;
    out[0].dims[2] = HD;
    return 0;
}

typedef struct cls_state {
    const float *kt, *vp;
} cls_state;

static int cls_attention_prepare(const eg_node *n, const eg_tensor *in, const eg_tensor *out,
                                 int threads, void *model_ctx, void **state, inferd_error *err) {
    const eg_cls_attention_params *p = n->params;
    (void)in, (void)out, (void)threads;
    cls_state *st = inferd_calloc(NULL, 1, sizeof *st);
    if (!st)
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory");
    int rc = eg_cls_weights_get(model_ctx, p->wk, p->k_off, p->wv, p->v_off, p->heads * p->head_dim,
                                &st->kt, &st->vp, err);
    if (rc < 0) {
        inferd_free(st);
        return rc;
    }
    *state = st;
    return 0;
}

static void cls_attention_release(void *state) { inferd_free(state); }

static size_t cls_attention_scratch(const eg_node *n, const eg_tensor *in, const eg_tensor *out,
                                    int threads) {
    (void)n, (void)out;
    return eg_cls_attention_scratch(in[1].dims[1], in[1].dims[2], threads) +
           sizeof(int32_t) * (size_t)(in[0].dims[0] + 16);
}

static int cls_attention_run(const eg_node *n, const eg_tensor *in, eg_tensor *out,
                             const eg_run_ctx *ctx, inferd_error *err) {
    (void)err;
    const eg_cls_attention_params *p = n->params;
    const cls_state *st = ctx->state;
    int64_t B = in[0].dims[0], S = in[1].dims[1], H = in[1].dims[2];
    eg_cls_attention_args a = {
        .batch = B,
        .seq = S,
        .heads = p->heads,
        .head_dim = p->head_dim,
        .hidden = H,
        .q = (const float *)in[0].data + p->q_off,
        .q_bs = in[0].dims[2],
        .x = in[1].data,
        .kt = st->kt,
        .vp = st->vp,
        .bk = n->in[2] >= 0 ? (const float *)in[2].data + p->k_off : NULL,
        .bv = n->in[3] >= 0 ? (const float *)in[3].data + p->v_off : NULL,
        .scale = p->scale,
        .out = out[0].data,
    };
    int32_t *key_len =
        (int32_t *)((char *)ctx->scratch + eg_cls_attention_scratch(S, H, ctx->threads));
    int64_t m_is;
    if (n->in[4] >= 0)
        a.key_len = mask_view(&in[4], B, S, key_len, &a.mask, &a.m_bs, &a.m_hs, &m_is);
    eg_kernels()->cls_attention(&a, ctx->scratch, ctx->threads);
    return 0;
}

static const eg_op_def fused_defs[EG_OP_COUNT_] = {
    [EG_OP_FusedMatMul] = {.infer = matmul_infer,
                           .run = matmul_run,
                           .prepare = matmul_prepare,
                           .release = matmul_release,
                           .state_scratch = matmul_scratch},
    [EG_OP_FusedLayerNorm] = {.infer = layernorm_infer, .run = layernorm_run},
    [EG_OP_FusedGelu] = {.infer = gelu_infer, .run = gelu_run},
    [EG_OP_FusedConv] = {.infer = conv_infer,
                         .run = conv_run,
                         .prepare = conv_prepare,
                         .release = conv_release,
                         .state_scratch = conv_scratch},
    [EG_OP_FusedAttention] = {.infer = attention_infer,
                              .run = attention_run,
                              .scratch = attention_scratch},
    [EG_OP_FusedClsAttention] = {.infer = cls_attention_infer,
                                 .run = cls_attention_run,
                                 .scratch = cls_attention_scratch,
                                 .prepare = cls_attention_prepare,
                                 .release = cls_attention_release},
};

const eg_op_def *eg_fused_op_def(eg_op op) {
    if (op < EG_OP_FUSED_FIRST_ || op >= EG_OP_COUNT_ || !fused_defs[op].infer)
        return NULL;
    return &fused_defs[op];
}
