/* The CPU backend: host memory, OpenBLAS for GEMM, plain C for the rest.
 * "Device" pointers are ordinary host pointers, so upload/download are
 * memcpy and sync is a no-op; the table is what makes it interchangeable
 * with the CUDA backend. */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/simd_cpu.h"

#ifdef CT_HAVE_OPENBLAS
#include <cblas.h>
#endif

static void *cpu_alloc(ct_backend *b, size_t bytes, ct_error *err) {
    /* 64-byte alignment: whole cache lines, and AVX-512 loads if BLAS uses them. */
    size_t rounded = (bytes + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, rounded ? rounded : 64);
    if (!p) ct_fail(err, CT_EXIT_FAILURE, "cpu: out of memory allocating %zu bytes", bytes);
    return p;
}

static void cpu_free(ct_backend *b, void *p) { free(p); }

static void cpu_copy(ct_backend *b, void *dst, const void *src, size_t bytes) {
    if (bytes) memmove(dst, src, bytes);
}

static void cpu_zero(ct_backend *b, void *dst, size_t bytes) {
    if (bytes) memset(dst, 0, bytes);
}

static void cpu_sync(ct_backend *b) {}

static void *cpu_host_alloc(ct_backend *b, size_t bytes, ct_error *err) { return cpu_alloc(b, bytes, err); }

/* Work runs as it is called, so every fence is already passed. */
static void cpu_fence(ct_backend *b, int id) {}

void cpu_step_advance(ct_backend *b, ct_step_ctx *ctx) {
    ctx->step += 1;
    ctx->batch += 1;
    ctx->slot = ctx->ring_len ? (ctx->slot + 1) % ctx->ring_len : 0;
}

/* The three in turn: on the CPU there is no launch to save. */
void cpu_step_finish(ct_backend *b, const ct_stats_args *a, const ct_optim_config *cfg, const ct_optim_buffers *buf,
                     const ct_health_thresholds *th, ct_step_ctx *ctx, ct_step_record *ring) {
    cpu_step_stats(b, a, ctx, ring);
    cpu_optimizer_step(b, cfg, buf, th, ctx, ring);
    cpu_step_advance(b, ctx);
}

static const ct_backend_ops cpu_ops = {
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload = cpu_copy,
    .download = cpu_copy,
    .zero = cpu_zero,
    .sync = cpu_sync,
    .host_alloc = cpu_host_alloc,
    .host_free = cpu_free,
    .download_async = cpu_copy,
    .fence = cpu_fence,
    .fence_wait = cpu_fence,
    /* no capture: the host calls the ops directly every step */
    .gemm = cpu_gemm,
    .bias_act_forward = cpu_bias_act_forward,
    .bias_act_backward = cpu_bias_act_backward,
    .conv_plan = cpu_conv_plan,
    .conv_plan_free = cpu_conv_plan_free,
    .conv2d_forward = cpu_conv2d_forward,
    .conv2d_backward = cpu_conv2d_backward,
    .maxpool_forward = cpu_maxpool_forward,
    .maxpool_backward = cpu_maxpool_backward,
    .dense_chain_plan = cpu_dense_chain_plan,
    .dense_chain_plan_free = cpu_dense_chain_plan_free,
    .dense_chain_train = cpu_dense_chain_train,
    .softmax_xent = cpu_softmax_xent,
    .mse_onehot = cpu_mse_onehot,
    .loss_accumulate = cpu_loss_accumulate,
    .dropout_forward = cpu_dropout_forward,
    .dropout_backward = cpu_dropout_backward,
    .gather_batch = cpu_gather_batch,
    .step_stats = cpu_step_stats,
    .optimizer_step = cpu_optimizer_step,
    .step_advance = cpu_step_advance,
    .step_finish = cpu_step_finish,
};

/* The CPUs this process may run on (taskset, a cgroup's cpuset, a batch
 * scheduler's binding), not the machine's: OpenBLAS threads that outnumber
 * them spin against each other for the same cores. */
static int usable_cpus(void) {
#ifdef __linux__
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
#endif
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    return cores < 1 ? 1 : (int)cores;
}

ct_backend *ct_backend_cpu_create(int threads, ct_error *err) {
    if (cpu_simd_check_env(err) != 0) return NULL;
    ct_backend *b = calloc(1, sizeof *b);
    if (!b) {
        ct_fail(err, CT_EXIT_FAILURE, "cpu: out of memory creating the backend");
        return NULL;
    }
    b->threads = threads > 0 ? threads : usable_cpus();
    b->ops = &cpu_ops;
    b->kind = CT_DEVICE_CPU;
#ifdef CT_HAVE_OPENBLAS
    openblas_set_num_threads(b->threads);
    /* OpenBLAS caps the count at its build's limit (64 on Debian) without a
     * word; the description (logged, and what "same thread count" means for
     * determinism) would then name a count that never ran. A count asked
     * for is refused; the default takes the cap. */
    const int ran = openblas_get_num_threads();
    if (ran != b->threads && threads > 0) {
        free(b);
        ct_fail(err, CT_EXIT_USAGE, "--threads %d: this OpenBLAS runs at most %d threads", threads, ran);
        return NULL;
    }
    b->threads = ran;
    snprintf(b->description, sizeof b->description, "cpu (OpenBLAS, %d thread%s)", b->threads,
             b->threads == 1 ? "" : "s");
#else
    snprintf(b->description, sizeof b->description, "cpu (reference BLAS, 1 thread)");
    b->threads = 1;
#endif
    return b;
}
