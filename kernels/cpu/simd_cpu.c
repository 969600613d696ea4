/* Run-time choice of the CPU backend's vector twins (simd_cpu.h). */
#include "kernels/cpu/simd_cpu.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define SIMD_VAR "CUTRAIN_CPU_SIMD"

int cpu_simd_check_env(ct_error *err) {
    const char *v = getenv(SIMD_VAR);
    if (!v || !*v || strcmp(v, "auto") == 0 || strcmp(v, "generic") == 0) return 0;
    return ct_fail(err, CT_EXIT_USAGE, "%s=%.40s: expected auto or generic", SIMD_VAR, v);
}

static int detect(void) {
    const char *force = getenv(SIMD_VAR);
    if (force && strcmp(force, "generic") == 0) return 0;
#if CT_HAVE_X86_SIMD
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt") ? 1 : 0;
#else
    return 0;
#endif
}

int cpu_simd_avx2(void) {
    /* -1: not decided yet. Racing first callers decide the same value. */
    static atomic_int level = -1;
    int v = atomic_load_explicit(&level, memory_order_relaxed);
    if (v < 0) {
        v = detect();
        atomic_store_explicit(&level, v, memory_order_relaxed);
    }
    return v;
}
