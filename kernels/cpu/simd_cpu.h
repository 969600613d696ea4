/* Which vector instructions the CPU backend's hand-vectorised loops may use.
 *
 * A loop with a vector twin is written once as an always-inline body and
 * compiled twice: plainly (the reference, SSE2 on x86-64) and inside a
 * CT_TARGET_AVX2 function, where the compiler vectorises it 8 floats wide.
 * The twins perform the same float/double operations on each element in the
 * same order (no FMA: cutrain_core builds with -ffp-contract=off, and the
 * avx2 target does not include fma), so they give the same bits; the
 * reductions fix their order with lanes (reduce_lanes.h) so that vector
 * width does not change it either. Which twin runs is therefore a matter of
 * speed only; tests compare the two directly.
 */
#ifndef CUTRAIN_KERNELS_CPU_SIMD_H
#define CUTRAIN_KERNELS_CPU_SIMD_H

#include "cutrain/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define CT_HAVE_X86_SIMD 1
#define CT_TARGET_AVX2 __attribute__((target("avx2,popcnt")))
#else
#define CT_HAVE_X86_SIMD 0
#define CT_TARGET_AVX2
#endif

/* 1 when the AVX2 twins run: the CPU has AVX2 (and POPCNT, which every
 * AVX2 CPU has) and the environment variable CUTRAIN_CPU_SIMD is not
 * "generic" (which forces the reference twins, to show that a machine
 * without AVX2 gets the same records). Decided once per process. */
int cpu_simd_avx2(void);

/* 0 when CUTRAIN_CPU_SIMD is unset, empty, "auto" or "generic"; else -1 with
 * err naming the variable (CT_EXIT_USAGE). Backend creation calls it, so a
 * typo is an error rather than silently the default. */
int cpu_simd_check_env(ct_error *err);

#ifdef __cplusplus
}
#endif

#endif
