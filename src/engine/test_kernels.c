/* test_kernels.c: each fast kernel against the naive reference on random shapes, and the
 * oneDNN dense layer against a plain loop. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <omp.h>

#include "engine/kernels.h"

static uint64_t seed = 12345;
static float frand(void) {
    seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((seed >> 40) & 0xffffff) / (float)0x1000000 * 2.0f - 1.0f;
}

static float *rand_buf(size_t n, float scale) {
    float *p = malloc(n * sizeof *p + 64);
    for (size_t i = 0; i < n; i++)
        p[i] = frand() * scale;
    return p;
}

static float max_diff(const float *a, const float *b, size_t n) {
    float d = 0;
    for (size_t i = 0; i < n; i++) {
        float x = fabsf(a[i] - b[i]);
        if (!(x <= d))
            d = x; // NaN propagates
    }
    return d;
}

#define ASSERT_CLOSE(a, b, n, tol)                                                                 \
    do {                                                                                           \
        float d_ = max_diff(a, b, n);                                                              \
        if (!(d_ <= (tol)))                                                                        \
            fail_msg("max |diff| %g > %g", (double)d_, (double)(tol));                             \
    } while (0)

static const eg_kernel_table *fast(void) {
    const eg_kernel_table *k = eg_kernels_avx512();
    if (!k)
        skip();
    return k;
}

static void test_layernorm_matches_reference(void **state) {
    (void)state;
    const eg_kernel_table *f = fast(), *r = eg_kernels_generic();
    int64_t shapes[][2] = {{1, 1}, {3, 7}, {5, 16}, {17, 312}, {64, 768}, {2, 1000}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t rows = shapes[s][0], n = shapes[s][1];
        for (int with_res = 0; with_res < 2; with_res++) {
            float *x = rand_buf((size_t)(rows * n), 3), *res = rand_buf((size_t)(rows * n), 1);
            float *g = rand_buf((size_t)n, 1), *b = rand_buf((size_t)n, 1);
            float *y1 = malloc(sizeof(float) * (size_t)(rows * n));
            float *y2 = malloc(sizeof(float) * (size_t)(rows * n));
            f->layernorm(x, with_res ? res : NULL, g, b, y1, rows, n, 1e-12f, 2);
            r->layernorm(x, with_res ? res : NULL, g, b, y2, rows, n, 1e-12f, 1);
            ASSERT_CLOSE(y1, y2, (size_t)(rows * n), 2e-5);
            free(x), free(res), free(g), free(b), free(y1), free(y2);
        }
    }
}

static void test_gelu_matches_reference(void **state) {
    (void)state;
    const eg_kernel_table *f = fast(), *r = eg_kernels_generic();
    size_t n = 100003;
    float *x = rand_buf(n, 8);
    x[0] = 0, x[1] = -20, x[2] = 20, x[3] = 1e-8f;
    float *y1 = malloc(n * sizeof *y1), *y2 = malloc(n * sizeof *y2);
    for (int t = 0; t < 2; t++) {
        f->gelu(x, y1, (int64_t)n, t, 2);
        r->gelu(x, y2, (int64_t)n, t, 1);
        ASSERT_CLOSE(y1, y2, n, 5e-6);
    }
    free(x), free(y1), free(y2);
}

/* Attention arguments for Q, K, V packed in one [B, S, 3HD] buffer with a [B, S] mask. */
static eg_attention_args packed_attention(const float *qkv, int64_t B, int64_t S, int64_t H,
                                          int64_t D, const float *mask, int64_t qrows,
                                          int64_t out_seq, float *out) {
    int64_t C = 3 * H * D;
    return (eg_attention_args){.batch = B,
                               .seq_q = S,
                               .seq_k = S,
                               .heads = H,
                               .head_dim = D,
                               .q = qkv,
                               .k = qkv + H * D,
                               .v = qkv + 2 * H * D,
                               .q_bs = S * C,
                               .q_rs = C,
                               .k_bs = S * C,
                               .k_rs = C,
                               .v_bs = S * C,
                               .v_rs = C,
                               .out = out,
                               .scale = 1.0f / sqrtf((float)D),
                               .mask = mask,
                               .m_bs = S,
                               .q_rows_per_batch = qrows,
                               .out_seq = out_seq};
}

/* Attention with Q, K, V packed in one [B, S, 3HD] buffer and a padding mask. */
static void run_attention(int64_t B, int64_t S, int64_t H, int64_t D, int masked, int64_t qrows) {
    int64_t C = 3 * H * D;
    float *qkv = rand_buf((size_t)(B * S * C), 2);
    float *mask = calloc((size_t)(B * S), sizeof(float));
    if (masked)
        for (int64_t b = 0; b < B; b++) {
            int64_t len = 1 + (b * 7) % S;
            for (int64_t j = len; j < S; j++)
                mask[b * S + j] = -10000.0f;
        }
    size_t out_n = (size_t)(B * S * H * D);
    float *o1 = calloc(out_n, sizeof(float)), *o2 = calloc(out_n, sizeof(float));
    eg_attention_args a = packed_attention(qkv, B, S, H, D, mask, qrows, S, NULL);
    size_t scratch = eg_attention_scratch(S, D, 2);
    void *sp = aligned_alloc(64, (scratch + 63) / 64 * 64);
    // Reference over all keys; the fast kernel skips padded ones via key_len.
    a.out = o2;
    eg_kernels_generic()->attention(&a, sp, 1);
    int32_t *key_len = malloc(sizeof(int32_t) * (size_t)B);
    for (int64_t b = 0; b < B; b++) {
        int64_t L = S;
        while (L > 0 && mask[b * S + L - 1] <= -1e4f)
            L--;
        key_len[b] = (int32_t)(L ? L : S);
    }
    a.key_len = key_len;
    a.out = o1;
    fast()->attention(&a, sp, 2);
    for (int64_t b = 0; b < B; b++)
        ASSERT_CLOSE(o1 + b * S * H * D, o2 + b * S * H * D, (size_t)(qrows * H * D), 2e-5);
    // Padded query rows skipped (q_len = the valid lengths): the valid rows as before, the
    // others zero; both providers.
    a.q_len = key_len;
    const eg_kernel_table *providers[] = {eg_kernels_generic(), eg_kernels_avx512()};
    for (int k = 0; k < 2; k++) {
        if (!providers[k])
            continue;
        for (size_t i = 0; i < out_n; i++)
            o1[i] = NAN; // every output row must be written
        providers[k]->attention(&a, sp, 2);
        for (int64_t b = 0; b < B; b++) {
            int64_t valid = key_len[b] < qrows ? key_len[b] : qrows;
            ASSERT_CLOSE(o1 + b * S * H * D, o2 + b * S * H * D, (size_t)(valid * H * D), 2e-5);
            for (int64_t i = valid * H * D; i < qrows * H * D; i++)
                if (o1[b * S * H * D + i] != 0.0f)
                    fail_msg("batch row %lld: padded query output %lld is %g", (long long)b,
                             (long long)i, (double)o1[b * S * H * D + i]);
        }
    }
    free(qkv), free(mask), free(o1), free(o2), free(sp), free(key_len);
}

static void test_attention_matches_reference(void **state) {
    (void)state;
    run_attention(1, 1, 1, 8, 0, 1);
    run_attention(2, 7, 2, 26, 1, 7);
    run_attention(3, 33, 12, 26, 1, 33);
    run_attention(2, 128, 12, 64, 1, 128);
    run_attention(2, 40, 4, 100, 1, 40);
    run_attention(3, 150, 3, 48, 1, 150); // several 16 x 16 blocks of K, keys not a multiple of 32
    run_attention(4, 17, 3, 16, 1, 1);    // only the first query row
}

/* The [CLS] attention, with its keys and values folded into the weights, against attention
 * over keys and values projected row by row (a plain loop) and then the reference kernel;
 * both providers. Q, K and V are one merged packed weight, as the merged projections are. */
static void run_cls_attention(int64_t B, int64_t S, int64_t heads, int64_t D, int64_t Hid) {
    int64_t HD = heads * D, C = 3 * HD;
    eg_model_ctx *ctx;
    inferd_error err = {0};
    assert_int_equal(eg_model_ctx_create(NULL, &ctx, &err), 0);
    float *w = rand_buf((size_t)(Hid * C), 0.2f), *bias = rand_buf((size_t)C, 0.5f);
    float *x = rand_buf((size_t)(B * S * Hid), 1);
    eg_weight_part part = {.w = w, .N = C, .scale = 1.0f};
    eg_packed_weight *pw;
    assert_int_equal(eg_pack_weight_parts(ctx, &part, 1, Hid, &pw, &err), 0);
    // Every row projected: qkv = x W + bias.
    float *qkv = malloc(sizeof(float) * (size_t)(B * S * C));
    for (int64_t r = 0; r < B * S; r++)
        for (int64_t c = 0; c < C; c++) {
            double acc = bias[c];
            for (int64_t i = 0; i < Hid; i++)
                acc += (double)x[r * Hid + i] * w[i * C + c];
            qkv[r * C + c] = (float)acc;
        }
    float *mask = calloc((size_t)(B * S), sizeof(float));
    int32_t *key_len = malloc(sizeof(int32_t) * (size_t)B);
    for (int64_t b = 0; b < B; b++) {
        key_len[b] = (int32_t)(b == 0 ? S : 1 + (b * 5) % S);
        for (int64_t j = key_len[b]; j < S; j++)
            mask[b * S + j] = -10000.0f;
    }
    float *ref = calloc((size_t)(B * HD), sizeof(float));
    eg_attention_args a = packed_attention(qkv, B, S, heads, D, mask, 1, 1, ref);
    size_t scratch = eg_attention_scratch(S, D, 2) + eg_cls_attention_scratch(S, Hid, 2);
    void *sp = aligned_alloc(64, (scratch + 63) / 64 * 64);
    eg_kernels_generic()->attention(&a, sp, 1);

    const float *kt, *vp;
    assert_int_equal(eg_cls_weights_get(ctx, pw, HD, pw, 2 * HD, HD, &kt, &vp, &err), 0);
    float *q0 = malloc(sizeof(float) * (size_t)(B * C)),
          *got = malloc(sizeof(float) * (size_t)(B * HD));
    for (int64_t b = 0; b < B; b++)
        memcpy(q0 + b * C, qkv + b * S * C, sizeof(float) * (size_t)C);
    eg_cls_attention_args c = {.batch = B,
                               .seq = S,
                               .heads = heads,
                               .head_dim = D,
                               .hidden = Hid,
                               .q = q0,
                               .q_bs = C,
                               .x = x,
                               .kt = kt,
                               .vp = vp,
                               .bk = bias + HD,
                               .bv = bias + 2 * HD,
                               .scale = a.scale,
                               .mask = mask,
                               .m_bs = S,
                               .key_len = key_len,
                               .out = got};
    const eg_kernel_table *providers[] = {eg_kernels_generic(), eg_kernels_avx512()};
    for (int k = 0; k < 2; k++) {
        if (!providers[k])
            continue;
        memset(got, 0xff, sizeof(float) * (size_t)(B * HD)); // NaN: every output must be written
        providers[k]->cls_attention(&c, sp, 2);
        ASSERT_CLOSE(got, ref, (size_t)(B * HD), 1e-4);
    }
    free(w), free(bias), free(x), free(qkv), free(mask), free(key_len), free(ref), free(sp);
    free(q0), free(got);
    eg_model_ctx_destroy(ctx);
}

static void test_cls_attention_matches_projected_keys(void **state) {
    (void)state;
    run_cls_attention(1, 2, 1, 8, 16);
    run_cls_attention(2, 7, 2, 26, 40);
    run_cls_attention(3, 33, 12, 16, 312); // widths off the vector length
    run_cls_attention(2, 64, 12, 64, 768); // the peers' base model's layer
}

static void test_dense_matches_loop(void **state) {
    (void)state;
    eg_model_ctx *ctx;
    inferd_error err = {0};
    assert_int_equal(eg_model_ctx_create(NULL, &ctx, &err), 0);
    // {M, K, N, threads}; odd activations add the residual before them (residual_first).
    // AVX-512 CPUs run eg_gemm48_avx512 where N is on 48-column panels and K is 256-768, with
    // up to 32 rows on one thread or from 384 a thread: K off the 16-row blocks, rows off its
    // 8-row tiles, two threads' shares of rows.
    int64_t cases[][4] = {{1, 3, 5, 2},      {7, 312, 936, 2},  {64, 64, 2, 2},
                          {33, 100, 17, 2},  {64, 64, 2, 1},    {33, 100, 17, 1},
                          {40, 312, 936, 1}, {16, 1, 1, 1},     {300, 1000, 70, 1},
                          {389, 300, 96, 1}, {774, 256, 48, 2}, {5, 384, 96, 1},
                          {29, 256, 144, 1}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int64_t M = cases[c][0], K = cases[c][1], N = cases[c][2];
        int threads = (int)cases[c][3];
        for (int tr = 0; tr < 2; tr++) {
            float *w = rand_buf((size_t)(K * N), 0.5f), *x = rand_buf((size_t)(M * K), 1);
            float *bias = rand_buf((size_t)N, 1), *res = rand_buf((size_t)(M * N), 1);
            float *y = malloc(sizeof(float) * (size_t)(M * N)),
                  *ref = malloc(sizeof(float) * (size_t)(M * N));
            eg_packed_weight *pw;
            assert_int_equal(eg_pack_weight(ctx, w, K, N, tr, 0.5f, &pw, &err), 0);
            for (int act = 0; act <= EG_ACT_SIGMOID; act++) {
                eg_dense *d;
                omp_set_num_threads(threads);
                assert_int_equal(
                    eg_dense_create(ctx, pw, M, 1, (eg_act)act, 1, act & 1, threads, &d, &err), 0);
                void *sp = aligned_alloc(64, (eg_dense_scratch(d) + 64) / 64 * 64);
                assert_int_equal(eg_dense_run(d, x, bias, res, y, sp, &err), 0);
                for (int64_t i = 0; i < M; i++)
                    for (int64_t j = 0; j < N; j++) {
                        double s = bias[j];
                        for (int64_t k = 0; k < K; k++)
                            s += (double)x[i * K + k] * 0.5 * (tr ? w[j * K + k] : w[k * N + j]);
                        if (act & 1) // residual first, inside the activation
                            s += res[i * N + j];
                        switch (act) {
                        case EG_ACT_RELU:
                            s = s > 0 ? s : 0;
                            break;
                        case EG_ACT_GELU_ERF:
                            s = 0.5 * s * (1 + erf(s / sqrt(2.0)));
                            break;
                        case EG_ACT_GELU_TANH:
                            s = 0.5 * s * (1 + tanh(0.7978845608 * (s + 0.044715 * s * s * s)));
                            break;
                        case EG_ACT_TANH:
                            s = tanh(s);
                            break;
                        case EG_ACT_SIGMOID:
                            s = 1 / (1 + exp(-s));
                            break;
                        }
                        ref[i * N + j] = (float)(act & 1 ? s : s + res[i * N + j]);
                    }
                ASSERT_CLOSE(y, ref, (size_t)(M * N), 1e-4);
                free(sp);
                eg_dense_destroy(d);
            }
            free(w), free(x), free(bias), free(res), free(y), free(ref);
        }
    }
    eg_model_ctx_destroy(ctx);
}

/* A dense layer on the valid tokens of a padded [batch, seq] batch: those rows as the plain
 * loop gives them, the padded rows zero, where the layer runs on eg_gemm48_avx512 (N on
 * 48-column panels, K a multiple of 16; K over 768 in passes, without activation); other
 * layers compute every row. */
static void test_dense_tokens_match_loop(void **state) {
    (void)state;
    eg_model_ctx *ctx;
    inferd_error err = {0};
    assert_int_equal(eg_model_ctx_create(NULL, &ctx, &err), 0);
    // {batch, seq, K, N, threads, act}
    int64_t cases[][6] = {
        {3, 40, 256, 96, 1, EG_ACT_NONE},      {4, 100, 3072, 48, 2, EG_ACT_NONE},
        {2, 24, 384, 144, 1, EG_ACT_GELU_ERF}, {5, 17, 768, 96, 2, EG_ACT_GELU_ERF},
        {3, 33, 96, 288, 1, EG_ACT_NONE},      {2, 20, 64, 64, 1, EG_ACT_NONE},
        {2, 20, 1000, 96, 1, EG_ACT_GELU_ERF}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int64_t B = cases[c][0], S = cases[c][1], K = cases[c][2], N = cases[c][3], M = B * S;
        int threads = (int)cases[c][4];
        eg_act act = (eg_act)cases[c][5];
        int32_t len[8];
        for (int64_t b = 0; b < B; b++) // full, 1 token, and in between
            len[b] = (int32_t)(b == 0 ? S : b == 1 ? 1 : 1 + (b * 7) % S);
        float *w = rand_buf((size_t)(K * N), 0.5f), *x = rand_buf((size_t)(M * K), 1);
        float *bias = rand_buf((size_t)N, 1), *res = rand_buf((size_t)(M * N), 1);
        float *y = rand_buf((size_t)(M * N), 100); // stale values where nothing is written
        eg_packed_weight *pw;
        assert_int_equal(eg_pack_weight(ctx, w, K, N, 0, 1.0f, &pw, &err), 0);
        eg_dense *d;
        omp_set_num_threads(threads);
        assert_int_equal(eg_dense_create(ctx, pw, M, 1, act, 1, 0, threads, &d, &err), 0);
        void *sp = aligned_alloc(64, (eg_dense_scratch(d) + 64) / 64 * 64);
        assert_int_equal(eg_dense_run_tokens(d, x, bias, res, y, sp, B, S, len, &err), 0);
        int skips =
            eg_kernels_avx512() && N % 48 == 0 && K % 16 == 0 && (K <= 768 || act == EG_ACT_NONE);
        for (int64_t b = 0; b < B; b++)
            for (int64_t s = 0; s < S; s++) {
                int64_t i = b * S + s;
                for (int64_t j = 0; j < N; j++) {
                    double v = bias[j];
                    for (int64_t k = 0; k < K; k++)
                        v += (double)x[i * K + k] * w[k * N + j];
                    if (act == EG_ACT_GELU_ERF)
                        v = 0.5 * v * (1 + erf(v / sqrt(2.0)));
                    v += res[i * N + j];
                    float want = s < len[b] || !skips ? (float)v : 0.0f;
                    if (!(fabsf(y[i * N + j] - want) <= 1e-4f * (1 + fabsf(want))))
                        fail_msg("case %zu: row %lld of batch row %lld (length %d), column "
                                 "%lld: %g, want %g",
                                 c, (long long)s, (long long)b, len[b], (long long)j,
                                 (double)y[i * N + j], (double)want);
                }
            }
        free(sp);
        eg_dense_destroy(d);
        free(w), free(x), free(bias), free(res), free(y);
    }
    eg_model_ctx_destroy(ctx);
}

/* Layers packed side by side give what each layer gives alone: parts on block boundaries (each
 * reordered into its columns) and odd widths (through a side-by-side copy), with transposed
 * and scaled parts. */
static void test_packed_parts_match_each_layer(void **state) {
    (void)state;
    eg_model_ctx *ctx;
    inferd_error err = {0};
    assert_int_equal(eg_model_ctx_create(NULL, &ctx, &err), 0);
    // The last: on whole 48-column blocks with K = 256, for AVX-512's own GEMM (no bias).
    int64_t widths[][3] = {{64, 64, 64}, {768, 768, 768}, {5, 17, 3}, {128, 64, 32}, {96, 48, 144}};
    int64_t Ks[] = {64, 96, 13, 32, 256}, M = 9;
    for (size_t c = 0; c < sizeof Ks / sizeof Ks[0]; c++) {
        int64_t K = Ks[c], N = 0;
        eg_weight_part parts[3];
        float *ws[3];
        for (int i = 0; i < 3; i++) {
            ws[i] = rand_buf((size_t)(K * widths[c][i]), 0.5f);
            parts[i] = (eg_weight_part){.w = ws[i],
                                        .N = widths[c][i],
                                        .transposed = i == 1,
                                        .scale = i == 2 ? 0.25f : 1.0f};
            N += widths[c][i];
        }
        eg_packed_weight *pw;
        assert_int_equal(eg_pack_weight_parts(ctx, parts, 3, K, &pw, &err), 0);
        assert_int_equal(eg_packed_weight_n(pw), N);
        float *x = rand_buf((size_t)(M * K), 1), *y = malloc(sizeof(float) * (size_t)(M * N)),
              *ref = malloc(sizeof(float) * (size_t)(M * N));
        eg_dense *d;
        assert_int_equal(eg_dense_create(ctx, pw, M, 0, EG_ACT_NONE, 0, 0, 1, &d, &err), 0);
        void *sp = aligned_alloc(64, (eg_dense_scratch(d) + 64) / 64 * 64);
        assert_int_equal(eg_dense_run(d, x, NULL, NULL, y, sp, &err), 0);
        for (int64_t i = 0; i < M; i++) {
            int64_t col = 0;
            for (int p = 0; p < 3; p++)
                for (int64_t j = 0; j < parts[p].N; j++, col++) {
                    double s = 0;
                    for (int64_t k = 0; k < K; k++)
                        s += (double)x[i * K + k] * parts[p].scale *
                             (parts[p].transposed ? ws[p][j * K + k] : ws[p][k * parts[p].N + j]);
                    ref[i * N + col] = (float)s;
                }
        }
        ASSERT_CLOSE(y, ref, (size_t)(M * N), 1e-4);
        free(sp);
        eg_dense_destroy(d);
        for (int i = 0; i < 3; i++)
            free(ws[i]);
        free(x), free(y), free(ref);
    }
    eg_model_ctx_destroy(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layernorm_matches_reference),
        cmocka_unit_test(test_gelu_matches_reference),
        cmocka_unit_test(test_attention_matches_reference),
        cmocka_unit_test(test_cls_attention_matches_projected_keys),
        cmocka_unit_test(test_dense_matches_loop),
        cmocka_unit_test(test_dense_tokens_match_loop),
        cmocka_unit_test(test_packed_parts_match_each_layer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
