/* vmath_avx512.h: vector math for the AVX-512 kernel files (included only by *_avx512.c,
 * which are compiled with AVX-512 flags). */
#ifndef INFERD_ENGINE_VMATH_AVX512_H
#define INFERD_ENGINE_VMATH_AVX512_H

#include <immintrin.h>
#include <stdint.h>

static inline __mmask16 tail_mask(int64_t left) {
    return left >= 16 ? (__mmask16)0xffff : left <= 0 ? 0 : (__mmask16)((1u << left) - 1);
}

/* c[0] x^(n-1) + c[1] x^(n-2) + ... + c[n-1], by Horner's rule (n - 1 FMAs). */
static inline __attribute__((always_inline)) __m512 horner512(__m512 x, const float *c, int n) {
    __m512 p = _mm512_set1_ps(c[0]);
    for (int i = 1; i < n; i++)
        p = _mm512_fmadd_ps(p, x, _mm512_set1_ps(c[i]));
    return p;
}

/* e^x with a degree-6 polynomial after range reduction; relative error ~2e-7. Inputs are
 * clamped to [-87.3, 88.7]: below that the reference gives (nearly) zero as well. */
static inline __m512 exp512(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-87.3f));
    x = _mm512_min_ps(x, _mm512_set1_ps(88.7f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    static const float c[] = {1.0f / 720, 1.0f / 120, 1.0f / 24, 1.0f / 6, 0.5f, 1.0f, 1.0f};
    return _mm512_scalef_ps(horner512(r, c, 7), n);
}

/* erf(x) = x P(x^2) / Q(x^2), degrees 5 and 5, for |x| <= 3.92 (beyond, erf rounds to +-1 in
 * float), fitted by tools/fit_erf.py (Lawson-weighted least squares, max error 1.6e-8 in exact
 * arithmetic, ~4e-7 evaluated in float). 1 / Q from the 14-bit reciprocal and one Newton step
 * (relative error ~2^-27). 18 operations where the exp-based form took 28. */
static inline __m512 erf512(__m512 x) {
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-3.92f)), _mm512_set1_ps(3.92f));
    __m512 t = _mm512_mul_ps(x, x);
    // Highest degree first (tools/fit_erf.py prints them lowest first).
    static const float pc[] = {2.034454992e-06f, 2.874268982e-04f, 3.867430262e-03f,
                               5.305768077e-02f, 1.927475535e-01f, 1.128379024f};
    static const float qc[] = {3.806495006e-05f, 1.187835428e-03f, 1.517055488e-02f,
                               1.150772239e-01f, 5.041497523e-01f, 1.0f};
    __m512 p = horner512(t, pc, 6), q = horner512(t, qc, 6);
    __m512 r = _mm512_rcp14_ps(q);
    r = _mm512_mul_ps(r, _mm512_fnmadd_ps(q, r, _mm512_set1_ps(2.0f)));
    return _mm512_mul_ps(_mm512_mul_ps(x, p), r);
}

/* tanh(x) = sign(x) (1 - 2 / (e^{2|x|} + 1)). */
static inline __m512 tanh512(__m512 x) {
    __m512 e = exp512(_mm512_mul_ps(_mm512_abs_ps(x), _mm512_set1_ps(2.0f)));
    __m512 r =
        _mm512_sub_ps(_mm512_set1_ps(1.0f),
                      _mm512_div_ps(_mm512_set1_ps(2.0f), _mm512_add_ps(e, _mm512_set1_ps(1.0f))));
    __m512i sign = _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32((int)0x80000000));
    return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(r), sign));
}

/* gelu(x) = x/2 (1 + erf(x / sqrt 2)), or with the tanh approximation
 * x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). */
static inline __m512 gelu512(__m512 v, int tanh_approx) {
    __m512 inner;
    if (tanh_approx) {
        __m512 v3 = _mm512_mul_ps(_mm512_mul_ps(v, v), v);
        inner = tanh512(_mm512_mul_ps(_mm512_set1_ps(0.7978845608028654f),
                                      _mm512_fmadd_ps(v3, _mm512_set1_ps(0.044715f), v)));
    } else {
        inner = erf512(_mm512_mul_ps(v, _mm512_set1_ps(0.7071067811865476f)));
    }
    return _mm512_mul_ps(_mm512_mul_ps(v, _mm512_set1_ps(0.5f)),
                         _mm512_add_ps(inner, _mm512_set1_ps(1.0f)));
}

#endif
