/* The CPU backend's two double-precision reductions over the parameter arena,
 * each in a portable reference and an AVX2 twin with the same bits.
 *
 * Both sum in CT_LANES lanes: element i of a stretch goes to lane i % CT_LANES
 * and the lanes are added in lane order at the end. That fixes the order
 * independently of vector width (the reference's lanes are the AVX2 twin's
 * two 4-double registers), so the sums are bit-identical on every run, CPU
 * and thread count. Squares of floats are exact in double; only the sums
 * round.
 *
 *  - Gradient statistics (stats_cpu.c), per stretch g[0..n):
 *      sumsq = sum of g_i^2 over finite g_i     max_abs = max |g_i| over finite g_i
 *      nonfinite = #{g_i NaN or +-Inf}          zeros = #{g_i == 0} (-0 too)
 *  - Update accounting (optim_cpu.c), over the old and new weights:
 *      p += w0_i^2,  u += (w1_i - w0_i)^2   (the difference in double)
 *    accumulated into lanes the caller keeps across blocks; each call starts
 *    at lane 0, so every call but the last must pass a multiple of CT_LANES.
 */
#ifndef CUTRAIN_KERNELS_CPU_REDUCE_LANES_H
#define CUTRAIN_KERNELS_CPU_REDUCE_LANES_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CT_LANES 8

typedef struct {
    double sumsq;
    double max_abs;
    uint64_t nonfinite;
    uint64_t zeros;
} ct_grad_partial;

typedef struct {
    double p[CT_LANES], u[CT_LANES];
} ct_update_lanes;

/* The twins run where cpu_simd_avx2() says; the _ref and _avx2 functions are
 * exported for the tests (an _avx2 function must only be called when
 * cpu_simd_avx2() or the CPU has AVX2; elsewhere it is the reference). */
ct_grad_partial cpu_grad_partial(const float *g, size_t n);
ct_grad_partial cpu_grad_partial_ref(const float *g, size_t n);
ct_grad_partial cpu_grad_partial_avx2(const float *g, size_t n);

void cpu_update_lanes(ct_update_lanes *ls, const float *w0, const float *w1, size_t n);
void cpu_update_lanes_ref(ct_update_lanes *ls, const float *w0, const float *w1, size_t n);
void cpu_update_lanes_avx2(ct_update_lanes *ls, const float *w0, const float *w1, size_t n);

/* The lanes added in lane order. */
double cpu_lanes_sum(const double lanes[CT_LANES]);

#ifdef __cplusplus
}
#endif

#endif
