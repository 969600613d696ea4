/* The lane reductions of reduce_lanes.h: the references, then their AVX2
 * twins (intrinsics: the compiler does not vectorise the masked statistics
 * loop by itself), then the dispatch.
 *
 * A twin's 8 float elements i..i+7 are widened to two 4-double registers
 * holding lanes 0-3 and 4-7, and each register lane does exactly the
 * reference lane's operations. The maximum is taken in float and widened at
 * the end: widening is exact and monotone, so that is the same value as the
 * reference's maximum of widened values. Non-finite elements are masked to 0
 * before anything else, like the reference's `fin ? x : 0`.
 */
#include "kernels/cpu/reduce_lanes.h"

#include <float.h>
#include <math.h>

#include "kernels/cpu/simd_cpu.h"

#if CT_HAVE_X86_SIMD
#include <immintrin.h>
#endif

double cpu_lanes_sum(const double lanes[CT_LANES]) {
    double s = 0.0;
    for (int k = 0; k < CT_LANES; ++k) s += lanes[k];
    return s;
}

/* One element of the statistics into lane k. */
static inline void grad_element(float x, int k, double *s, double *m, uint64_t *nf, uint64_t *z) {
    const int fin = fabsf(x) <= FLT_MAX; /* false for NaN too */
    const double d = fin ? (double)x : 0.0;
    s[k] += d * d;
    const double a = fabs(d);
    if (a > m[k]) m[k] = a;
    *nf += (uint64_t)!fin;
    *z += (uint64_t)(x == 0.0f);
}

static ct_grad_partial grad_finish(const double *s, const double *m, uint64_t nf, uint64_t z) {
    ct_grad_partial p = {0.0, 0.0, nf, z};
    p.sumsq = cpu_lanes_sum(s);
    for (int k = 0; k < CT_LANES; ++k)
        if (m[k] > p.max_abs) p.max_abs = m[k];
    return p;
}

ct_grad_partial cpu_grad_partial_ref(const float *g, size_t n) {
    double s[CT_LANES] = {0}, m[CT_LANES] = {0};
    uint64_t nf = 0, z = 0;
    size_t i = 0;
    for (; i + CT_LANES <= n; i += CT_LANES)
        for (int k = 0; k < CT_LANES; ++k) grad_element(g[i + k], k, s, m, &nf, &z);
    for (int k = 0; i < n; ++i, ++k) grad_element(g[i], k, s, m, &nf, &z);
    return grad_finish(s, m, nf, z);
}

static inline void update_element(ct_update_lanes *ls, float w0, float w1, int k) {
    const double o = (double)w0, d = (double)w1 - o;
    ls->p[k] += o * o;
    ls->u[k] += d * d;
}

void cpu_update_lanes_ref(ct_update_lanes *ls, const float *w0, const float *w1, size_t n) {
    size_t i = 0;
    for (; i + CT_LANES <= n; i += CT_LANES)
        for (int k = 0; k < CT_LANES; ++k) update_element(ls, w0[i + k], w1[i + k], k);
    for (int k = 0; i < n; ++i, ++k) update_element(ls, w0[i], w1[i], k);
}

#if CT_HAVE_X86_SIMD

CT_TARGET_AVX2 static inline __m256d widen_lo(__m256 v) { return _mm256_cvtps_pd(_mm256_castps256_ps128(v)); }
CT_TARGET_AVX2 static inline __m256d widen_hi(__m256 v) { return _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)); }

CT_TARGET_AVX2 ct_grad_partial cpu_grad_partial_avx2(const float *g, size_t n) {
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256 flt_max = _mm256_set1_ps(FLT_MAX), zero = _mm256_setzero_ps();
    __m256d s_lo = _mm256_setzero_pd(), s_hi = _mm256_setzero_pd();
    __m256 mx = _mm256_setzero_ps();
    uint64_t nf = 0, z = 0;
    size_t i = 0;
    for (; i + CT_LANES <= n; i += CT_LANES) {
        const __m256 x = _mm256_loadu_ps(g + i);
        const __m256 ax = _mm256_and_ps(x, abs_mask);
        const __m256 fin = _mm256_cmp_ps(ax, flt_max, _CMP_LE_OQ);
        const __m256 xf = _mm256_and_ps(x, fin);
        const __m256d lo = widen_lo(xf), hi = widen_hi(xf);
        s_lo = _mm256_add_pd(s_lo, _mm256_mul_pd(lo, lo));
        s_hi = _mm256_add_pd(s_hi, _mm256_mul_pd(hi, hi));
        mx = _mm256_max_ps(mx, _mm256_and_ps(ax, fin));
        /* movemask sets bit k for lane k: count the set bits. */
        const unsigned bad = ~(unsigned)_mm256_movemask_ps(fin) & 0xffu;
        const unsigned zs = (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(x, zero, _CMP_EQ_OQ));
        nf += (uint64_t)__builtin_popcount(bad);
        z += (uint64_t)__builtin_popcount(zs);
    }
    double s[CT_LANES], m[CT_LANES];
    float mf[CT_LANES];
    _mm256_storeu_pd(s, s_lo);
    _mm256_storeu_pd(s + 4, s_hi);
    _mm256_storeu_ps(mf, mx);
    for (int k = 0; k < CT_LANES; ++k) m[k] = (double)mf[k];
    for (int k = 0; i < n; ++i, ++k) grad_element(g[i], k, s, m, &nf, &z);
    return grad_finish(s, m, nf, z);
}

CT_TARGET_AVX2 void cpu_update_lanes_avx2(ct_update_lanes *ls, const float *w0, const float *w1, size_t n) {
    __m256d p_lo = _mm256_loadu_pd(ls->p), p_hi = _mm256_loadu_pd(ls->p + 4);
    __m256d u_lo = _mm256_loadu_pd(ls->u), u_hi = _mm256_loadu_pd(ls->u + 4);
    size_t i = 0;
    for (; i + CT_LANES <= n; i += CT_LANES) {
        const __m256 a = _mm256_loadu_ps(w0 + i), b = _mm256_loadu_ps(w1 + i);
        const __m256d o_lo = widen_lo(a), o_hi = widen_hi(a);
        const __m256d d_lo = _mm256_sub_pd(widen_lo(b), o_lo), d_hi = _mm256_sub_pd(widen_hi(b), o_hi);
        p_lo = _mm256_add_pd(p_lo, _mm256_mul_pd(o_lo, o_lo));
        p_hi = _mm256_add_pd(p_hi, _mm256_mul_pd(o_hi, o_hi));
        u_lo = _mm256_add_pd(u_lo, _mm256_mul_pd(d_lo, d_lo));
        u_hi = _mm256_add_pd(u_hi, _mm256_mul_pd(d_hi, d_hi));
    }
    _mm256_storeu_pd(ls->p, p_lo);
    _mm256_storeu_pd(ls->p + 4, p_hi);
    _mm256_storeu_pd(ls->u, u_lo);
    _mm256_storeu_pd(ls->u + 4, u_hi);
    for (int k = 0; i < n; ++i, ++k) update_element(ls, w0[i], w1[i], k);
}

#else /* no x86 vector twins: the reference serves */

ct_grad_partial cpu_grad_partial_avx2(const float *g, size_t n) { return cpu_grad_partial_ref(g, n); }
void cpu_update_lanes_avx2(ct_update_lanes *ls, const float *w0, const float *w1, size_t n) {
    cpu_update_lanes_ref(ls, w0, w1, n);
}

#endif

ct_grad_partial cpu_grad_partial(const float *g, size_t n) {
    return cpu_simd_avx2() ? cpu_grad_partial_avx2(g, n) : cpu_grad_partial_ref(g, n);
}

void cpu_update_lanes(ct_update_lanes *ls, const float *w0, const float *w1, size_t n) {
    if (cpu_simd_avx2())
        cpu_update_lanes_avx2(ls, w0, w1, n);
    else
        cpu_update_lanes_ref(ls, w0, w1, n);
}
