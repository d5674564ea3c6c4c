/* kernels_generic.c: portable kernels, written for clarity. They are the reference the
 * vectorised providers are tested against, and the fallback on CPUs without AVX-512. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "engine/kernels.h"

static void layernorm(const float *x, const float *residual, const float *gamma, const float *beta,
                      float *y, int64_t rows, int64_t n, float eps, int threads) {
#pragma omp parallel for num_threads(threads) if (rows * n > 32768)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * n;
        const float *rr = residual ? residual + r * n : NULL;
        float *yr = y + r * n;
        double mean = 0, var = 0;
        for (int64_t i = 0; i < n; i++)
            mean += xr[i] + (rr ? rr[i] : 0.0f);
        mean /= (double)n;
        for (int64_t i = 0; i < n; i++) {
            double d = xr[i] + (rr ? rr[i] : 0.0f) - mean;
            var += d * d;
        }
        var /= (double)n;
        double inv = 1.0 / sqrt(var + eps);
        for (int64_t i = 0; i < n; i++) {
            float v = (float)((xr[i] + (rr ? rr[i] : 0.0f) - mean) * inv);
            yr[i] = v * (gamma ? gamma[i] : 1.0f) + (beta ? beta[i] : 0.0f);
        }
    }
}

static void gelu(const float *x, float *y, int64_t n, int tanh_approx, int threads) {
#pragma omp parallel for num_threads(threads) if (n > 65536)
    for (int64_t i = 0; i < n; i++) {
        double v = x[i];
        if (tanh_approx)
            y[i] = (float)(0.5 * v * (1.0 + tanh(0.7978845608028654 * (v + 0.044715 * v * v * v))));
        else
            y[i] = (float)(0.5 * v * (1.0 + erf(v * 0.7071067811865476)));
    }
}

size_t eg_attention_scratch(int64_t seq_k, int64_t head_dim, int threads) {
    // Per thread: K transposed (head_dim x seq_k rounded up to 32), V packed (seq_k rounded up
    // to 32 rows of head_dim rounded up to 16) and eight rows of scores for the vectorised
    // provider, which takes its per-thread share from here; the generic one uses less.
    int64_t sk = (seq_k + 31) / 32 * 32, dp = (head_dim + 15) / 16 * 16;
    return (size_t)threads * (size_t)(head_dim * sk + sk * dp + 8 * sk + 64) * sizeof(float);
}

static void attention(const eg_attention_args *a, void *scratch, int threads) {
    int64_t sk_pad = (a->seq_k + 15) / 16 * 16;
    size_t per_thread = (size_t)(sk_pad + a->head_dim * sk_pad + 64);
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static)
    for (int64_t b = 0; b < a->batch; b++) {
        for (int64_t h = 0; h < a->heads; h++) {
            float *p = (float *)scratch + (size_t)omp_get_thread_num() * per_thread;
            int64_t L = eg_keys_used(a->key_len, b, a->seq_k);
            int64_t D = a->head_dim;
            int64_t nq = eg_keys_used(a->q_len, b, a->q_rows_per_batch);
            for (int64_t i = nq; i < a->q_rows_per_batch; i++)
                memset(a->out + (b * a->out_seq + i) * a->heads * D + h * D, 0,
                       sizeof(float) * (size_t)D);
            for (int64_t i = 0; i < nq; i++) {
                const float *q = a->q + b * a->q_bs + i * a->q_rs + h * D;
                const float *m = a->mask ? a->mask + b * a->m_bs + h * a->m_hs + i * a->m_is : NULL;
                float mx = -INFINITY;
                for (int64_t j = 0; j < L; j++) {
                    const float *k = a->k + b * a->k_bs + j * a->k_rs + h * D;
                    float s = 0;
                    for (int64_t d = 0; d < D; d++)
                        s += q[d] * k[d];
                    s = s * a->scale + (m ? m[j] : 0.0f);
                    p[j] = s;
                    if (s > mx)
                        mx = s;
                }
                double sum = 0;
                for (int64_t j = 0; j < L; j++) {
                    p[j] = expf(p[j] - mx);
                    sum += p[j];
                }
                float inv = (float)(1.0 / sum);
                float *o = a->out + (b * a->out_seq + i) * a->heads * D + h * D;
                for (int64_t d = 0; d < D; d++)
                    o[d] = 0;
                for (int64_t j = 0; j < L; j++) {
                    const float *v = a->v + b * a->v_bs + j * a->v_rs + h * D;
                    float w = p[j] * inv;
                    for (int64_t d = 0; d < D; d++)
                        o[d] += w * v[d];
                }
            }
        }
    }
}

size_t eg_cls_attention_scratch(int64_t seq, int64_t hidden, int threads) {
    return (size_t)threads * eg_cls_attention_thread_floats(seq, hidden) * sizeof(float);
}

static void cls_attention(const eg_cls_attention_args *a, void *scratch, int threads) {
    const int64_t D = a->head_dim, H = a->hidden, HD = a->heads * D;
    const size_t per_thread = eg_cls_attention_thread_floats(a->seq, H);
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static)
    for (int64_t b = 0; b < a->batch; b++) {
        for (int64_t h = 0; h < a->heads; h++) {
            float *u = (float *)scratch + (size_t)omp_get_thread_num() * per_thread;
            float *z = u + H, *p = z + H;
            int64_t L = eg_keys_used(a->key_len, b, a->seq);
            const float *q = a->q + b * a->q_bs + h * D;
            const float *x = a->x + b * a->seq * H;
            const float *m = a->mask ? a->mask + b * a->m_bs + h * a->m_hs : NULL;
            // u = Wk_h q, and the bias's share bk_h . q, the same for every key.
            float qb = 0;
            for (int64_t i = 0; i < H; i++)
                u[i] = 0;
            for (int64_t d = 0; d < D; d++) {
                const float *kt = a->kt + (h * D + d) * H;
                for (int64_t i = 0; i < H; i++)
                    u[i] += q[d] * kt[i];
                qb += a->bk ? a->bk[h * D + d] * q[d] : 0.0f;
            }
            float mx = -INFINITY;
            for (int64_t j = 0; j < L; j++) {
                float s = 0;
                for (int64_t i = 0; i < H; i++)
                    s += x[j * H + i] * u[i];
                p[j] = (s + qb) * a->scale + (m ? m[j] : 0.0f);
                if (p[j] > mx)
                    mx = p[j];
            }
            double sum = 0;
            for (int64_t j = 0; j < L; j++) {
                p[j] = expf(p[j] - mx);
                sum += p[j];
            }
            // z = sum_j p_j x_j over the normalised weights; out = z Wv_h + bv_h.
            float inv = (float)(1.0 / sum);
            for (int64_t i = 0; i < H; i++)
                z[i] = 0;
            for (int64_t j = 0; j < L; j++)
                for (int64_t i = 0; i < H; i++)
                    z[i] += p[j] * inv * x[j * H + i];
            float *o = a->out + b * HD + h * D;
            for (int64_t d = 0; d < D; d++)
                o[d] = a->bv ? a->bv[h * D + d] : 0.0f;
            for (int64_t i = 0; i < H; i++)
                for (int64_t d = 0; d < D; d++)
                    o[d] += z[i] * a->vp[i * HD + h * D + d];
        }
    }
}

static const eg_kernel_table generic = {
    .name = "generic",
    .layernorm = layernorm,
    .gelu = gelu,
    .attention = attention,
    .cls_attention = cls_attention,
};

const eg_kernel_table *eg_kernels_generic(void) { return &generic; }
