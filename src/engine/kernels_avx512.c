/* kernels_avx512.c: AVX-512 kernels. Compiled with AVX-512 flags; kernels.c calls into this
 * file only after checking the CPU supports them. Tested against kernels_generic.c. */
#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#include "engine/kernels.h"
#include "engine/vmath_avx512.h"

static void layernorm(const float *x, const float *residual, const float *gamma, const float *beta,
                      float *y, int64_t rows, int64_t n, float eps, int threads) {
#pragma omp parallel for num_threads(threads) if (rows * n > 32768) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * n;
        float *yr = y + r * n;
        const float *src = xr;
        __m512 acc = _mm512_setzero_ps();
        if (residual) {
            const float *rr = residual + r * n;
            for (int64_t i = 0; i < n; i += 16) {
                __mmask16 k = tail_mask(n - i);
                __m512 v = _mm512_add_ps(_mm512_maskz_loadu_ps(k, xr + i),
                                         _mm512_maskz_loadu_ps(k, rr + i));
                _mm512_mask_storeu_ps(yr + i, k, v);
                acc = _mm512_add_ps(acc, v);
            }
            src = yr;
        } else {
            for (int64_t i = 0; i < n; i += 16)
                acc = _mm512_add_ps(acc, _mm512_maskz_loadu_ps(tail_mask(n - i), xr + i));
        }
        float mean = _mm512_reduce_add_ps(acc) / (float)n;
        __m512 vm = _mm512_set1_ps(mean);
        acc = _mm512_setzero_ps();
        for (int64_t i = 0; i < n; i += 16) {
            __mmask16 k = tail_mask(n - i);
            __m512 d = _mm512_maskz_sub_ps(k, _mm512_maskz_loadu_ps(k, src + i), vm);
            acc = _mm512_fmadd_ps(d, d, acc);
        }
        float var = _mm512_reduce_add_ps(acc) / (float)n;
        __m512 inv = _mm512_set1_ps(1.0f / sqrtf(var + eps));
        for (int64_t i = 0; i < n; i += 16) {
            __mmask16 k = tail_mask(n - i);
            __m512 d = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, src + i), vm), inv);
            __m512 g = gamma ? _mm512_maskz_loadu_ps(k, gamma + i) : _mm512_set1_ps(1.0f);
            __m512 b = beta ? _mm512_maskz_loadu_ps(k, beta + i) : _mm512_setzero_ps();
            _mm512_mask_storeu_ps(yr + i, k, _mm512_fmadd_ps(d, g, b));
        }
    }
}

static void gelu(const float *x, float *y, int64_t n, int tanh_approx, int threads) {
    int64_t chunks = (n + 1023) / 1024;
#pragma omp parallel for num_threads(threads) if (n > 65536) schedule(static)
    for (int64_t c = 0; c < chunks; c++) {
        int64_t end = (c + 1) * 1024 < n ? (c + 1) * 1024 : n;
        for (int64_t i = c * 1024; i < end; i += 16) {
            __mmask16 k = tail_mask(end - i);
            __m512 r = gelu512(_mm512_maskz_loadu_ps(k, x + i), tanh_approx);
            _mm512_mask_storeu_ps(y + i, k, r);
        }
    }
}

#define QB 4 /* query rows per register block in P x V */
#define SB 8 /* query rows per register block in the scores; eg_attention_scratch has room */

/* The 16 x 16 block in r transposed in place: r[c] becomes column c. Four rounds of
 * shuffles (pairs, quads, 128-bit lanes twice) instead of sixteen gathers. */
static inline void transpose16(__m512 r[16]) {
    __m512 t[16], u[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    // u[4g + c] holds column c (of each 128-bit lane) of rows 4g..4g+3.
    for (int g = 0; g < 16; g += 4) {
        u[g] = _mm512_castpd_ps(
            _mm512_unpacklo_pd(_mm512_castps_pd(t[g]), _mm512_castps_pd(t[g + 2])));
        u[g + 1] = _mm512_castpd_ps(
            _mm512_unpackhi_pd(_mm512_castps_pd(t[g]), _mm512_castps_pd(t[g + 2])));
        u[g + 2] = _mm512_castpd_ps(
            _mm512_unpacklo_pd(_mm512_castps_pd(t[g + 1]), _mm512_castps_pd(t[g + 3])));
        u[g + 3] = _mm512_castpd_ps(
            _mm512_unpackhi_pd(_mm512_castps_pd(t[g + 1]), _mm512_castps_pd(t[g + 3])));
    }
    for (int c = 0; c < 4; c++) {
        __m512 v0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x88);
        __m512 v1 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xdd);
        __m512 w0 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x88);
        __m512 w1 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xdd);
        r[c] = _mm512_shuffle_f32x4(v0, w0, 0x88);
        r[c + 8] = _mm512_shuffle_f32x4(v0, w0, 0xdd);
        r[c + 4] = _mm512_shuffle_f32x4(v1, w1, 0x88);
        r[c + 12] = _mm512_shuffle_f32x4(v1, w1, 0xdd);
    }
}

/* out[r][0..left) = inv[r] * sum_j p[r][j] v[j][0..left) for QB rows, with NV vectors of 16
 * lanes per row kept in registers (NV is a constant in each instance). v rows are v_rs apart
 * and padded to whole vectors. */
#define PV_BLOCK(NV)                                                                               \
    static void pv_block##NV(const float *vb, int64_t v_rs, const float *p, int64_t skpad,         \
                             int64_t L, int64_t left, const float *inv, float *o, int64_t o_rs,    \
                             int nr) {                                                             \
        __m512 acc[QB][NV];                                                                        \
        for (int c = 0; c < NV; c++)                                                               \
            for (int r = 0; r < QB; r++)                                                           \
                acc[r][c] = _mm512_setzero_ps();                                                   \
        for (int64_t j = 0; j < L; j++) {                                                          \
            const float *v = vb + j * v_rs;                                                        \
            __m512 vv[NV];                                                                         \
            for (int c = 0; c < NV; c++)                                                           \
                vv[c] = _mm512_loadu_ps(v + 16 * c);                                               \
            for (int r = 0; r < QB; r++) {                                                         \
                __m512 w = _mm512_set1_ps(p[r * skpad + j]);                                       \
                for (int c = 0; c < NV; c++)                                                       \
                    acc[r][c] = _mm512_fmadd_ps(w, vv[c], acc[r][c]);                              \
            }                                                                                      \
        }                                                                                          \
        /* A constant trip count keeps acc in registers; rows past nr are not stored. */           \
        for (int r = 0; r < QB; r++) {                                                             \
            if (r >= nr)                                                                           \
                break;                                                                             \
            __m512 s = _mm512_set1_ps(inv[r]);                                                     \
            for (int c = 0; c < NV; c++)                                                           \
                _mm512_mask_storeu_ps(o + r * o_rs + 16 * c, tail_mask(left - 16 * c),             \
                                      _mm512_mul_ps(acc[r][c], s));                                \
        }                                                                                          \
    }
PV_BLOCK(1)
PV_BLOCK(2)
PV_BLOCK(3)
PV_BLOCK(4)

/* Asks for rows [r0, r1) of the D floats at base, rows rs apart, to be brought into cache. */
static inline void prefetch_rows(const float *base, int64_t rs, int64_t r0, int64_t r1, int64_t D) {
    for (int64_t r = r0; r < r1; r++) {
        const char *row = (const char *)(base + r * rs);
        for (int64_t off = 0; off < D * 4; off += 64)
            _mm_prefetch(row + off, _MM_HINT_T0);
        _mm_prefetch(row + D * 4 - 1, _MM_HINT_T0);
    }
}

/* One (batch row, head): K transposed into kt so that scores for 16 keys are one FMA per head
 * dim, and V copied into vp with rows dp apart (in the model the rows are thousands of floats
 * apart and a head's rows share a few L1 sets, so P x V read them from L2 again and again); then
 * a softmax per query row; then P x V with D in vectors. Keys past the valid length are never
 * touched. Head (nb, nh), the one this thread most likely runs next, is prefetched on the way
 * (nb < 0: none), since its rows come from L3 or memory. */
static void attention_head(const eg_attention_args *a, int64_t b, int64_t h, float *kt, float *vp,
                           float *p, int64_t skpad, int64_t nb, int64_t nh) {
    const int64_t D = a->head_dim, dp = (D + 15) / 16 * 16;
    int64_t L = eg_keys_used(a->key_len, b, a->seq_k);
    const int64_t Lp = (L + 31) / 32 * 32;
    // K transposed into kt[d][j] a 16 x 16 block at a time; padding keys are zero.
    const float *kb = a->k + b * a->k_bs + h * D;
    for (int64_t j0 = 0; j0 < Lp; j0 += 16) {
        for (int64_t d0 = 0; d0 < D; d0 += 16) {
            __mmask16 dm = tail_mask(D - d0);
            __m512 r[16];
            if (d0 == 0)
                prefetch_rows(kb, a->k_rs, j0 + 16, j0 + 32 < L ? j0 + 32 : L, D);
#pragma GCC unroll 16
            for (int t = 0; t < 16; t++)
                r[t] = _mm512_maskz_loadu_ps(j0 + t < L ? dm : 0, kb + (j0 + t) * a->k_rs + d0);
            transpose16(r);
            int nd = D - d0 < 16 ? (int)(D - d0) : 16;
            for (int c = 0; c < nd; c++)
                _mm512_storeu_ps(kt + (d0 + c) * skpad + j0, r[c]);
        }
    }
    // V rows packed dp apart, zero past D.
    const float *vb = a->v + b * a->v_bs + h * D;
    for (int64_t j = 0; j < L; j++) {
        if (j % 8 == 0)
            prefetch_rows(vb, a->v_rs, j + 8, j + 16 < L ? j + 16 : L, D);
        for (int64_t d0 = 0; d0 < dp; d0 += 16)
            _mm512_storeu_ps(vp + j * dp + d0,
                             _mm512_maskz_loadu_ps(tail_mask(D - d0), vb + j * a->v_rs + d0));
    }

    const __m512 vscale = _mm512_set1_ps(a->scale);
    // Padded query rows: zero.
    const int64_t nq_b = eg_keys_used(a->q_len, b, a->q_rows_per_batch);
    for (int64_t i = nq_b; i < a->q_rows_per_batch; i++)
        memset(a->out + (b * a->out_seq + i) * a->heads * D + h * D, 0, sizeof(float) * (size_t)D);
    // The next head's rows, a share per query block, so that they are in cache when it starts.
    const int64_t nblocks = (nq_b + SB - 1) / SB;
    const int64_t nL = nb >= 0 ? eg_keys_used(a->key_len, nb, a->seq_k) : 0;
    const int64_t nq = nb >= 0 ? eg_keys_used(a->q_len, nb, a->q_rows_per_batch) : 0;
    const int64_t kstep = (nL + nblocks - 1) / nblocks, qstep = (nq + nblocks - 1) / nblocks;
    for (int64_t i0 = 0; i0 < nq_b; i0 += SB) {
        int nr = nq_b - i0 < SB ? (int)(nq_b - i0) : SB;
        if (nb >= 0) {
            int64_t blk = i0 / SB;
            int64_t k0 = blk * kstep, k1 = k0 + kstep < nL ? k0 + kstep : nL;
            int64_t q0 = blk * qstep, q1 = q0 + qstep < nq ? q0 + qstep : nq;
            prefetch_rows(a->k + nb * a->k_bs + nh * D, a->k_rs, k0, k1, D);
            prefetch_rows(a->v + nb * a->v_bs + nh * D, a->v_rs, k0, k1, D);
            prefetch_rows(a->q + nb * a->q_bs + nh * D, a->q_rs, q0, q1, D);
        }
        const float *q[SB];
        const float *m[SB];
        for (int r = 0; r < SB; r++) {
            int64_t i = i0 + (r < nr ? r : 0);
            q[r] = a->q + b * a->q_bs + i * a->q_rs + h * D;
            m[r] = a->mask ? a->mask + b * a->m_bs + h * a->m_hs + i * a->m_is : NULL;
        }
        // Scores: SB query rows x 32 keys per block, one broadcast per row and head dim.
        for (int64_t jb = 0; jb < Lp; jb += 32) {
            __m512 acc0[SB], acc1[SB];
#pragma GCC unroll 8
            for (int r = 0; r < SB; r++)
                acc0[r] = acc1[r] = _mm512_setzero_ps();
            for (int64_t d = 0; d < D; d++) {
                __m512 k0 = _mm512_loadu_ps(kt + d * skpad + jb);
                __m512 k1 = _mm512_loadu_ps(kt + d * skpad + jb + 16);
#pragma GCC unroll 8
                for (int r = 0; r < SB; r++) {
                    __m512 qv = _mm512_set1_ps(q[r][d]);
                    acc0[r] = _mm512_fmadd_ps(qv, k0, acc0[r]);
                    acc1[r] = _mm512_fmadd_ps(qv, k1, acc1[r]);
                }
            }
            __mmask16 k0m = tail_mask(L - jb), k1m = tail_mask(L - jb - 16);
#pragma GCC unroll 8
            for (int r = 0; r < SB; r++) {
                __m512 s0 = _mm512_mul_ps(acc0[r], vscale), s1 = _mm512_mul_ps(acc1[r], vscale);
                if (m[r]) {
                    s0 = _mm512_add_ps(s0, _mm512_maskz_loadu_ps(k0m, m[r] + jb));
                    s1 = _mm512_add_ps(s1, _mm512_maskz_loadu_ps(k1m, m[r] + jb + 16));
                }
                _mm512_storeu_ps(p + r * skpad + jb, s0);
                _mm512_storeu_ps(p + r * skpad + jb + 16, s1);
            }
        }
        // Softmax over the valid keys, the SB rows interleaved so that their maxima and sums are
        // independent chains; padding keys get weight zero. Rows past nr repeat row i0.
        __m512 mx[SB], sum[SB];
#pragma GCC unroll 8
        for (int r = 0; r < SB; r++)
            mx[r] = _mm512_set1_ps(-INFINITY);
        for (int64_t j = 0; j < L; j += 16) {
            __mmask16 k = tail_mask(L - j);
#pragma GCC unroll 8
            for (int r = 0; r < SB; r++)
                mx[r] = _mm512_mask_max_ps(mx[r], k, mx[r], _mm512_loadu_ps(p + r * skpad + j));
        }
#pragma GCC unroll 8
        for (int r = 0; r < SB; r++) {
            mx[r] = _mm512_set1_ps(_mm512_reduce_max_ps(mx[r]));
            sum[r] = _mm512_setzero_ps();
        }
        for (int64_t j = 0; j < Lp; j += 16) {
            __mmask16 k = tail_mask(L - j);
#pragma GCC unroll 8
            for (int r = 0; r < SB; r++) {
                float *pj = p + r * skpad + j;
                __m512 e =
                    _mm512_maskz_mov_ps(k, exp512(_mm512_sub_ps(_mm512_loadu_ps(pj), mx[r])));
                _mm512_storeu_ps(pj, e);
                sum[r] = _mm512_add_ps(sum[r], e);
            }
        }
        float inv[SB];
#pragma GCC unroll 8
        for (int r = 0; r < SB; r++)
            inv[r] = 1.0f / _mm512_reduce_add_ps(sum[r]);
        // P x V, QB rows at a time, head dims in chunks of up to 64 (four vectors).
        for (int r0 = 0; r0 < nr; r0 += QB) {
            int rows = nr - r0 < QB ? nr - r0 : QB;
            const float *pr = p + r0 * skpad;
            for (int64_t dc = 0; dc < D; dc += 64) {
                int nv = (int)((D - dc + 15) / 16);
                if (nv > 4)
                    nv = 4;
                float *o = a->out + (b * a->out_seq + i0 + r0) * a->heads * D + h * D + dc;
                int64_t o_rs = a->heads * D;
                switch (nv) {
                case 1:
                    pv_block1(vp + dc, dp, pr, skpad, L, D - dc, inv + r0, o, o_rs, rows);
                    break;
                case 2:
                    pv_block2(vp + dc, dp, pr, skpad, L, D - dc, inv + r0, o, o_rs, rows);
                    break;
                case 3:
                    pv_block3(vp + dc, dp, pr, skpad, L, D - dc, inv + r0, o, o_rs, rows);
                    break;
                default:
                    pv_block4(vp + dc, dp, pr, skpad, L, D - dc, inv + r0, o, o_rs, rows);
                    break;
                }
            }
        }
    }
}

static void attention(const eg_attention_args *a, void *scratch, int threads) {
    // eg_attention_scratch lays out, per thread: kt (head_dim x skpad), vp (skpad x head_dim
    // rounded up to 16), then SB rows of scores.
    int64_t skpad = (a->seq_k + 31) / 32 * 32;
    size_t per_thread = eg_attention_scratch(a->seq_k, a->head_dim, 1) / sizeof(float);
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static)
    for (int64_t b = 0; b < a->batch; b++)
        for (int64_t h = 0; h < a->heads; h++) {
            float *kt = (float *)scratch + (size_t)omp_get_thread_num() * per_thread;
            float *vp = kt + a->head_dim * skpad;
            // With a static schedule a thread's next head is usually the next in this order.
            int64_t nb = h + 1 < a->heads ? b : b + 1 < a->batch ? b + 1 : -1;
            int64_t nh = h + 1 < a->heads ? h + 1 : 0;
            attention_head(a, b, h, kt, vp, vp + skpad * ((a->head_dim + 15) / 16 * 16), skpad, nb,
                           nh);
        }
}

/* y[0, n) = init (or 0) + sum_r w[r] rows[r][0, n), rows rs floats apart: 128 columns (eight
 * vectors, eight FMA chains) at a time. */
static void weighted_rows(float *y, const float *init, const float *w, int64_t nrows,
                          const float *rows, int64_t rs, int64_t n) {
    for (int64_t c0 = 0; c0 < n; c0 += 128) {
        __mmask16 k[8];
        __m512 acc[8];
#pragma GCC unroll 8
        for (int v = 0; v < 8; v++) {
            k[v] = tail_mask(n - c0 - 16 * v);
            acc[v] = init ? _mm512_maskz_loadu_ps(k[v], init + c0 + 16 * v) : _mm512_setzero_ps();
        }
        if (n - c0 >= 128) {
            for (int64_t r = 0; r < nrows; r++) {
                const __m512 wr = _mm512_set1_ps(w[r]);
                const float *row = rows + r * rs + c0;
#pragma GCC unroll 8
                for (int v = 0; v < 8; v++)
                    acc[v] = _mm512_fmadd_ps(wr, _mm512_loadu_ps(row + 16 * v), acc[v]);
            }
        } else {
            for (int64_t r = 0; r < nrows; r++) {
                const __m512 wr = _mm512_set1_ps(w[r]);
                const float *row = rows + r * rs + c0;
#pragma GCC unroll 8
                for (int v = 0; v < 8; v++)
                    acc[v] = _mm512_fmadd_ps(wr, _mm512_maskz_loadu_ps(k[v], row + 16 * v), acc[v]);
            }
        }
#pragma GCC unroll 8
        for (int v = 0; v < 8; v++)
            _mm512_mask_storeu_ps(y + c0 + 16 * v, k[v], acc[v]);
    }
}

/* out[j] = rows[j] . u over n floats for j in [0, count), eight rows at a time. */
static void row_dots(float *out, const float *rows, int64_t rs, int64_t count, const float *u,
                     int64_t n) {
    for (int64_t j0 = 0; j0 < count; j0 += 8) {
        const float *r[8];
        __m512 acc[8];
#pragma GCC unroll 8
        for (int t = 0; t < 8; t++) {
            r[t] = rows + (j0 + t < count ? j0 + t : j0) * rs;
            acc[t] = _mm512_setzero_ps();
        }
        for (int64_t i = 0; i < n; i += 16) {
            __mmask16 k = tail_mask(n - i);
            __m512 uv = _mm512_maskz_loadu_ps(k, u + i);
#pragma GCC unroll 8
            for (int t = 0; t < 8; t++)
                acc[t] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, r[t] + i), uv, acc[t]);
        }
        for (int t = 0; t < 8 && j0 + t < count; t++)
            out[j0 + t] = _mm512_reduce_add_ps(acc[t]);
    }
}

/* The [CLS] attention (eg_cls_attention_args), one (batch row, head) at a time: u = Wk_h q,
 * the scores as dots of the rows with u, a softmax over the valid keys, z = the weighted sum
 * of the rows, out = bv_h + z Wv_h. */
static void cls_attention(const eg_cls_attention_args *a, void *scratch, int threads) {
    const int64_t D = a->head_dim, H = a->hidden, HD = a->heads * D;
    const size_t per_thread = eg_cls_attention_thread_floats(a->seq, H);
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static)
    for (int64_t b = 0; b < a->batch; b++)
        for (int64_t h = 0; h < a->heads; h++) {
            float *u = (float *)scratch + (size_t)omp_get_thread_num() * per_thread;
            float *z = u + H, *p = z + H;
            int64_t L = eg_keys_used(a->key_len, b, a->seq);
            const float *q = a->q + b * a->q_bs + h * D;
            const float *x = a->x + b * a->seq * H;
            const float *m = a->mask ? a->mask + b * a->m_bs + h * a->m_hs : NULL;
            weighted_rows(u, NULL, q, D, a->kt + h * D * H, H, H);
            float qb = 0;
            for (int64_t d = 0; a->bk && d < D; d++)
                qb += a->bk[h * D + d] * q[d];
            row_dots(p, x, H, L, u, H);
            const __m512 vscale = _mm512_set1_ps(a->scale), vqb = _mm512_set1_ps(qb);
            __m512 mx = _mm512_set1_ps(-INFINITY);
            for (int64_t j = 0; j < L; j += 16) {
                __mmask16 k = tail_mask(L - j);
                __m512 sc =
                    _mm512_mul_ps(_mm512_add_ps(_mm512_maskz_loadu_ps(k, p + j), vqb), vscale);
                if (m)
                    sc = _mm512_add_ps(sc, _mm512_maskz_loadu_ps(k, m + j));
                _mm512_mask_storeu_ps(p + j, k, sc);
                mx = _mm512_mask_max_ps(mx, k, mx, sc);
            }
            const __m512 vmax = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
            __m512 sum = _mm512_setzero_ps();
            for (int64_t j = 0; j < L; j += 16) {
                __mmask16 k = tail_mask(L - j);
                __m512 e = _mm512_maskz_mov_ps(
                    k, exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, p + j), vmax)));
                _mm512_mask_storeu_ps(p + j, k, e);
                sum = _mm512_add_ps(sum, e);
            }
            const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(sum));
            for (int64_t j = 0; j < L; j += 16) {
                __mmask16 k = tail_mask(L - j);
                _mm512_mask_storeu_ps(p + j, k,
                                      _mm512_mul_ps(_mm512_maskz_loadu_ps(k, p + j), inv));
            }
            weighted_rows(z, NULL, p, L, x, H, H);
            weighted_rows(a->out + b * HD + h * D, a->bv ? a->bv + h * D : NULL, z, H,
                          a->vp + h * D, HD, D);
        }
}

static void hash_blocks(uint64_t v[32], const uint8_t *p, size_t n) {
    const __m512i p1 = _mm512_set1_epi64((long long)11400714785074694791ULL);
    const __m512i p2 = _mm512_set1_epi64((long long)14029467366897019727ULL);
    __m512i a[4];
    for (int k = 0; k < 4; k++)
        a[k] = _mm512_loadu_si512(v + 8 * k);
    for (size_t i = 0; i < n; i += 256)
        for (int k = 0; k < 4; k++) {
            __m512i w = _mm512_loadu_si512(p + i + 64 * k);
            a[k] = _mm512_add_epi64(a[k], _mm512_mullo_epi64(w, p2));
            a[k] = _mm512_mullo_epi64(_mm512_rol_epi64(a[k], 31), p1);
        }
    for (int k = 0; k < 4; k++)
        _mm512_storeu_si512(v + 8 * k, a[k]);
}

static const eg_kernel_table avx512 = {
    .name = "avx512",
    .layernorm = layernorm,
    .gelu = gelu,
    .attention = attention,
    .cls_attention = cls_attention,
    .hash_blocks = hash_blocks,
};

const eg_kernel_table *eg_kernels_avx512_table(void) { return &avx512; }
