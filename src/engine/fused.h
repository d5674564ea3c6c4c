/* fused.h: parameters of the fused ops, shared by the passes that create them (fuse.c) and
 * the definitions that run them (fused.c). Inputs of each fused node are listed by index. */
#ifndef INFERD_ENGINE_FUSED_H
#define INFERD_ENGINE_FUSED_H

#include "engine/graph.h"
#include "engine/kernels.h"

/* FusedMatMul: in[0] x [..., K], in[1] bias [N] (optional), in[2] residual with the output's
 * shape (optional); out[0] [..., N] = act(x W + bias) + residual, or act(x W + bias +
 * residual) when residual_first. */
typedef struct eg_matmul_params {
    eg_packed_weight *w;
    eg_act act;
    int residual_first;
} eg_matmul_params;

/* FusedLayerNorm: in[0] x, in[1] gamma [n] (optional), in[2] beta [n] (optional), in[3]
 * residual added to x first (optional); normalises over the last axis. */
typedef struct eg_layernorm_params {
    float eps;
} eg_layernorm_params;

/* FusedConv: a Conv (group 1, explicit pads) on oneDNN, with the Conv's inputs (x, W, bias)
 * and attributes, and an activation. */
typedef struct eg_conv_params {
    eg_act act;
} eg_conv_params;

/* FusedGelu: in[0] x. */
typedef struct eg_gelu_params {
    int tanh_approx;
} eg_gelu_params;

/* FusedAttention: in[0], in[1], in[2] hold Q, K, V as [B, S, C] rows (possibly the same
 * value, at column offsets q_off, k_off, v_off); in[3] additive mask broadcastable to
 * [B, heads, Sq, Sk] (optional). out[0] [B, Sq, heads * head_dim]. */
typedef struct eg_attention_params {
    int64_t heads, head_dim;
    int64_t q_off, k_off, v_off;
    float scale;
    int64_t q_rows; /* query rows computed per batch row; 0 = all */
} eg_attention_params;

/* FusedClsAttention: a FusedAttention computing only query row 0 (q_rows 1) whose keys and
 * values come from dense layers over rows X, folded (eg_cls_attention_args). in[0] Q rows
 * [B, 1, C] (at q_off), in[1] X [B, S, hidden], in[2] the K layer's bias (optional), in[3]
 * the V layer's bias (optional), in[4] additive mask (optional, as FusedAttention).
 * out[0] [B, 1, heads * head_dim]. */
typedef struct eg_cls_attention_params {
    int64_t heads, head_dim;
    int64_t q_off, k_off, v_off; /* column offsets in Q, wk and wv (and the biases) */
    float scale;
    eg_packed_weight *wk, *wv;
} eg_cls_attention_params;

#endif
