/* gemm_avx512.c: the dense layers' GEMM on one thread, C = epilogue(A B), reading the weights
 * in place in oneDNN's BA16a48b layout (48-column panels, each K rows of 48 floats). Compiled
 * with AVX-512 flags; kernels.c calls it only on CPUs that have them: for the shapes where it
 * measured faster than oneDNN (gemm48_wins there), and for the valid-token rows of a padded
 * batch (a row list, which oneDNN cannot take).
 *
 * Goto's blocking, tuned on Zen 5 (48 KiB L1D, 1 MiB L2, two 512-bit FMA pipes):
 * - an 8 x 48 register tile: 24 accumulators, each k step three loads of B and eight
 *   broadcasts of A for 24 FMAs;
 * - K up to EG_GEMM48_MAX_K is done in one pass (larger K in passes adding onto C): A is
 *   packed per block of MC rows into 8-row micro-panels, k-major, once, and reused for every
 *   column block; a micro-panel (24 KiB at K = 768) is prefetched into L1 ahead of use;
 * - columns go in blocks of NC (three panels, 432 KiB of B at K = 768) that stay in L2 while
 *   every micro-panel of A sweeps them;
 * - bias, residual and activation are applied in registers as a tile is stored. */
#include <immintrin.h>

#include "engine/kernels.h"
#include "engine/vmath_avx512.h"

#define MR 8
#define NR EG_GEMM48_NR
#define NV (NR / 16)
#define MC EG_GEMM48_MC
#define NC (3 * NR)
#define PREFETCH_A 32 /* k steps ahead */
/* Up to this many rows, the next column block of B is prefetched into L2 while the current one
 * runs: few rows sweep a block too few times for the hardware prefetcher to hide the cold
 * weights' memory latency (BERT-base at 32 rows: 5-8% faster a run). With many rows it is
 * measurably slower (2-3% at 1024). */
#define PREFETCH_B_ROWS 32

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* The physical row of A, C and the residual that logical row r is. */
static inline int64_t phys_row(const eg_gemm48_args *g, int64_t r) {
    return g->rows ? g->rows[r] : r;
}

/* Packs logical rows [r0, r0 + mc) of A, kc columns, into micro-panels of MR rows: panel p
 * holds element (i, k) at ap[p kc MR + k MR + i]; rows past mc are zero. */
static void pack_a(const eg_gemm48_args *g, int64_t r0, int64_t mc, int64_t kc, float *ap) {
    for (int64_t p = 0; p < mc; p += MR, ap += kc * MR) {
        int64_t mr = mc - p < MR ? mc - p : MR;
        const float *src[MR];
        for (int i = 0; i < MR; i++)
            src[i] = g->a + phys_row(g, r0 + p + (i < mr ? i : 0)) * g->lda;
        int64_t k = 0;
        if (mr == MR)
            for (; k + 16 <= kc; k += 16) { // 16 columns of MR rows, transposed through tmp
                float tmp[MR][16];
                for (int i = 0; i < MR; i++)
                    _mm512_storeu_ps(tmp[i], _mm512_loadu_ps(src[i] + k));
                for (int kk = 0; kk < 16; kk++)
                    for (int i = 0; i < MR; i++)
                        ap[(k + kk) * MR + i] = tmp[i][kk];
            }
        for (; k < kc; k++)
            for (int i = 0; i < MR; i++)
                ap[k * MR + i] = i < mr ? src[i][k] : 0.0f;
    }
}

ALWAYS_INLINE __m512 activate(__m512 x, eg_act act) {
    switch (act) {
    case EG_ACT_RELU:
        return _mm512_max_ps(x, _mm512_setzero_ps());
    case EG_ACT_GELU_ERF:
        return gelu512(x, 0);
    case EG_ACT_GELU_TANH:
        return gelu512(x, 1);
    case EG_ACT_TANH:
        return tanh512(x);
    case EG_ACT_SIGMOID: // 1 / (1 + e^-x)
        return _mm512_div_ps(
            _mm512_set1_ps(1.0f),
            _mm512_add_ps(_mm512_set1_ps(1.0f), exp512(_mm512_sub_ps(_mm512_setzero_ps(), x))));
    default:
        return x;
    }
}

/* Where a tile goes (its rows of C and of the residual, from column 0) and what its store
 * does. */
typedef struct tile_out {
    float *c[MR];
    const float *residual[MR]; /* NULL: none */
    int64_t col;
    const float *bias;
    int residual_first;
    eg_act act;
} tile_out;

/* full: a whole tile (mr = MR, every mask full), a constant where it is inlined. */
ALWAYS_INLINE void store_tile(__m512 acc[MR][NV], const tile_out *o, int mr,
                              const __mmask16 mask[NV], int full) {
    __m512 bias[NV];
    for (int v = 0; v < NV; v++)
        bias[v] = o->bias ? _mm512_maskz_loadu_ps(mask[v], o->bias + 16 * v) : _mm512_setzero_ps();
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++) {
        if (i >= mr)
            break;
        float *c = o->c[i] + o->col;
        const float *r = o->residual[i] ? o->residual[i] + o->col : NULL;
        for (int v = 0; v < NV; v++) {
            __m512 x = _mm512_add_ps(acc[i][v], bias[v]);
            if (r && o->residual_first)
                x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(mask[v], r + 16 * v));
            x = activate(x, o->act);
            if (r && !o->residual_first)
                x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(mask[v], r + 16 * v));
            if (full)
                _mm512_storeu_ps(c + 16 * v, x);
            else
                _mm512_mask_storeu_ps(c + 16 * v, mask[v], x);
        }
    }
}

/* acc += one column of the micro-panel (MR floats at ap) times one row of B (NR at b). */
ALWAYS_INLINE void k_step(__m512 acc[MR][NV], const float *restrict ap, const float *restrict b) {
    __m512 bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++)
        bv[v] = _mm512_load_ps(b + 16 * v);
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++) {
        __m512 a = _mm512_set1_ps(ap[i]);
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            acc[i][v] = _mm512_fmadd_ps(a, bv[v], acc[i][v]);
    }
}

/* One MR x NR tile over kc: ap is a packed micro-panel, b the panel's rows (NR floats each).
 * next, next_col: the rows and first column of the tile stored after this one (next NULL:
 * none), whose C and residual are pulled toward L1 while the FMAs run; pf: pf_n lines of B's
 * next column block to pull into L2 (two every two k steps). Out of line: inlined into its
 * caller's loops, GCC scheduled it 2-4% slower. */
__attribute__((noinline)) static void tile(int64_t kc, const float *restrict ap,
                                           const float *restrict b, const tile_out *o, int mr,
                                           int nr, const tile_out *next, int64_t next_col,
                                           const char *pf, int64_t pf_n) {
    __m512 acc[MR][NV];
    __mmask16 mask[NV];
    for (int v = 0; v < NV; v++)
        mask[v] = tail_mask(nr - 16 * v);
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            acc[i][v] = _mm512_setzero_ps();
    if (next)
        for (int i = 0; i < MR; i++)
            for (int v = 0; v < NV; v++) {
                _mm_prefetch((const char *)(next->c[i] + next_col + 16 * v), _MM_HINT_T0);
                if (next->residual[i])
                    _mm_prefetch((const char *)(next->residual[i] + next_col + 16 * v),
                                 _MM_HINT_T0);
            }
    // Two k steps a round, with one prefetch: a 64-byte line holds two steps of the panel.
    int64_t k = 0;
#pragma GCC unroll 2
    for (; k + 2 <= kc; k += 2) {
        _mm_prefetch((const char *)(ap + PREFETCH_A * MR), _MM_HINT_T0);
        if (pf_n > 0) {
            _mm_prefetch(pf, _MM_HINT_T1);
            _mm_prefetch(pf + 64, _MM_HINT_T1);
            pf += 128;
            pf_n -= 2;
        }
        k_step(acc, ap, b);
        k_step(acc, ap + MR, b + NR);
        ap += 2 * MR;
        b += 2 * NR;
    }
    if (k < kc)
        k_step(acc, ap, b);
    if (mr == MR && nr == NR)
        store_tile(acc, o, MR, mask, 1);
    else
        store_tile(acc, o, mr, mask, 0);
}

/* The rows a tile starting at logical row r writes and reads (rows past M repeat r's, and are
 * never stored). */
static void tile_rows(const eg_gemm48_args *g, int64_t r, tile_out *o) {
    for (int i = 0; i < MR; i++) {
        int64_t pr = phys_row(g, r + i < g->M ? r + i : r);
        o->c[i] = g->c + pr * g->ldc;
        o->residual[i] = g->residual ? g->residual + pr * g->ldr : NULL;
    }
}

/* One pass over K (at most EG_GEMM48_MAX_K). */
static void gemm48_pass(const eg_gemm48_args *g, float *work) {
    const int64_t M = g->M, N = g->N, K = g->K;
    tile_out o = {.bias = g->bias, .residual_first = g->residual_first, .act = g->act}, next = o;
    for (int64_t ic = 0; ic < M; ic += MC) {
        int64_t mc = M - ic < MC ? M - ic : MC;
        pack_a(g, ic, mc, K, work);
        for (int64_t jc = 0; jc < N; jc += NC) {
            int64_t jend = jc + NC < N ? jc + NC : N;
            const char *pf = NULL;
            int64_t pf_per_tile = 0;
            if (mc <= PREFETCH_B_ROWS && jend < N) {
                int64_t nxt_end = jend + NC < N ? jend + NC : N;
                int64_t panels = (nxt_end - jend + NR - 1) / NR;
                int64_t lines = panels * g->b_panel * 4 / 64;
                int64_t tiles = (mc + MR - 1) / MR * ((jend - jc + NR - 1) / NR);
                pf = (const char *)(g->b + (jend / NR) * g->b_panel);
                pf_per_tile = (lines + tiles - 1) / tiles;
            }
            for (int64_t ir = 0; ir < mc; ir += MR) {
                int mr = (int)(mc - ir < MR ? mc - ir : MR);
                int64_t row = ic + ir;
                tile_rows(g, row, &o);
                for (int64_t jr = jc; jr < jend; jr += NR) {
                    int nr = (int)(jend - jr < NR ? jend - jr : NR);
                    // The next tile: this row block's next panel, else the next rows.
                    int64_t nrow = jr + NR < jend ? row : row + MR;
                    const tile_out *nxt = NULL;
                    if (nrow + MR <= M) {
                        if (nrow != row)
                            tile_rows(g, nrow, &next);
                        nxt = nrow == row ? &o : &next;
                    }
                    o.col = jr;
                    o.bias = g->bias ? g->bias + jr : NULL;
                    tile(K, work + ir * K, g->b + (jr / NR) * g->b_panel, &o, mr, nr, nxt,
                         jr + NR < jend ? jr + NR : jc, pf, pf_per_tile);
                    if (pf)
                        pf += pf_per_tile * 64;
                }
            }
        }
    }
}

void eg_gemm48_avx512(const eg_gemm48_args *g, float *work) {
    if (g->K <= EG_GEMM48_MAX_K) {
        gemm48_pass(g, work);
        return;
    }
    // K in passes of at most EG_GEMM48_MAX_K (multiples of 16), each adding onto C: the first
    // with the bias and the residual, the rest with C as their residual (each element read
    // just before it is written). Only without an activation (kernels.c).
    int64_t passes = (g->K + EG_GEMM48_MAX_K - 1) / EG_GEMM48_MAX_K;
    int64_t kc = (g->K / passes + 15) / 16 * 16;
    for (int64_t k0 = 0; k0 < g->K; k0 += kc) {
        eg_gemm48_args p = *g;
        p.K = g->K - k0 < kc ? g->K - k0 : kc;
        p.a = g->a + k0;
        p.b = g->b + k0 * EG_GEMM48_NR;
        if (k0) {
            p.bias = NULL;
            p.residual = g->c;
            p.ldr = g->ldc;
        }
        gemm48_pass(&p, work);
    }
}
