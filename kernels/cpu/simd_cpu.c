/* Run-time choice of the CPU backend's vector twins (simd_cpu.h). */
#include "kernels/cpu/simd_cpu.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define SIMD_VAR "CUTRAIN_CPU_SIMD"

int cpu_simd_check_env(ct_error *err) {
    const char *v = getenv(SIMD_VAR);
    if (!v || !*v || strcmp(v, "auto") == 0 || strcmp(v, "avx2") == 0 || strcmp(v, "generic") == 0) return 0;
    return ct_fail(err, CT_EXIT_USAGE, "%s=%.40s: expected auto, avx2 or generic", SIMD_VAR, v);
}

static ct_simd_level detect(void) {
    const char *cap = getenv(SIMD_VAR);
    if (cap && strcmp(cap, "generic") == 0) return CT_SIMD_GENERIC;
#if CT_HAVE_X86_SIMD
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("popcnt")) return CT_SIMD_GENERIC;
    if (cap && strcmp(cap, "avx2") == 0) return CT_SIMD_AVX2;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw"))
        return CT_SIMD_AVX512;
    return CT_SIMD_AVX2;
#else
    return CT_SIMD_GENERIC;
#endif
}

ct_simd_level cpu_simd_level(void) {
    /* -1: not decided yet. Racing first callers decide the same value. */
    static atomic_int level = -1;
    int v = atomic_load_explicit(&level, memory_order_relaxed);
    if (v < 0) {
        v = (int)detect();
        atomic_store_explicit(&level, v, memory_order_relaxed);
    }
    return (ct_simd_level)v;
}
