/* Which vector instructions the CPU backend's hand-vectorised loops may use.
 *
 * A loop with vector twins is written once as an always-inline body and
 * compiled three times (CT_SIMD_TWINS): plainly (the reference, SSE2 on
 * x86-64), for AVX2 and for AVX-512, where the compiler vectorises it 8 or
 * 16 floats wide. The twins perform the same float/double operations on each
 * element in the same order (no FMA: cutrain_core builds with
 * -ffp-contract=off, and neither target includes fma; no reciprocal
 * approximations: IEEE division and square root in every width), so they
 * give the same bits; the reductions fix their order with lanes
 * (reduce_lanes.h) so that vector width does not change it either. Which twin
 * runs is therefore a matter of speed only; tests compare them.
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
#define CT_TARGET_AVX512 __attribute__((target("avx2,popcnt,avx512f,avx512dq,avx512vl,avx512bw")))
#else
#define CT_HAVE_X86_SIMD 0
#define CT_TARGET_AVX2
#define CT_TARGET_AVX512
#endif

/* The twins a process runs. */
typedef enum { CT_SIMD_GENERIC = 0, CT_SIMD_AVX2 = 1, CT_SIMD_AVX512 = 2 } ct_simd_level;

/* The best level the CPU has (AVX2 with POPCNT; AVX-512 F, DQ, VL and BW),
 * capped by the environment variable CUTRAIN_CPU_SIMD: "generic" forces the
 * reference twins, "avx2" caps at AVX2 (to show that every level writes the
 * same records); unset, empty or "auto" takes the best. Decided once per
 * process. */
ct_simd_level cpu_simd_level(void);
static inline int cpu_simd_avx2(void) { return cpu_simd_level() >= CT_SIMD_AVX2; }

/* 0 when CUTRAIN_CPU_SIMD is unset, empty, "auto", "avx2" or "generic"; else
 * -1 with err naming the variable (CT_EXIT_USAGE). Backend creation calls it,
 * so a typo is an error rather than silently the default. */
int cpu_simd_check_env(ct_error *err);

#define CT_INLINE static inline __attribute__((always_inline))

/* Defines static NAME_generic, NAME_avx2 and NAME_avx512, each calling the
 * always-inline NAME_body with the same arguments; CT_SIMD_CALL calls the
 * one this process runs. */
#define CT_SIMD_TWINS(name, params, args)                                  \
    static void name##_generic params { name##_body args; }                \
    CT_TARGET_AVX2 static void name##_avx2 params { name##_body args; }    \
    CT_TARGET_AVX512 static void name##_avx512 params { name##_body args; }

#define CT_SIMD_CALL(level, name, args)                                                        \
    ((level) >= CT_SIMD_AVX512 ? name##_avx512 args : (level) >= CT_SIMD_AVX2 ? name##_avx2 args \
                                                                                 : name##_generic args)

#ifdef __cplusplus
}
#endif

#endif
