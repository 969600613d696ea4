/* Inverted dropout with a recomputed mask; the same map as
 * kernels/cpu/dropout_cpu.c:
 *
 *     keep_i = [u_i >= rate],  u_i = ct_rng_uniform(seed, stream, i)
 *     out_i  = keep_i ? in_i * s : 0,   s = (float)(1 / (1 - rate))
 *     stream = CT_STREAM_DROPOUT(ctx->step, layer)
 *
 * Forward (x -> y) and backward (dy -> dx) are the identical elementwise
 * map, so they share one kernel and so draw the same mask. u_i is a pure
 * function of (seed, stream, i) computed by the same integer code as on the
 * host (cutrain/rng.h), and s is computed on the host in float exactly as
 * the CPU does, then applied by one float multiply: the output matches the
 * CPU bit for bit.
 *
 * The step is read from ctx inside the kernel (ctx is device memory), so a
 * captured graph draws a fresh mask at every replay. Kernel: a grid-stride
 * loop over n with a capped grid; in place (in == out) is allowed, since
 * each element is read and written by the same thread.
 *
 * The device code (dropout_cuda.cu launches it; tests/emu runs it on the CPU).
 */
#ifndef CUTRAIN_KERNELS_CUDA_DROPOUT_KERNEL_CUH
#define CUTRAIN_KERNELS_CUDA_DROPOUT_KERNEL_CUH

#include <stddef.h>
#include <stdint.h>

#include "cutrain/backend.h"
#include "cutrain/rng.h"

#define CT_DROPOUT_THREADS 256

static __global__ void dropout_kernel(size_t n, float rate, float s, uint64_t seed, uint32_t layer,
                                      const ct_step_ctx *ctx, const float *in, float *out) {
    const uint64_t stream = CT_STREAM_DROPOUT(ctx->step, layer);
    const size_t step = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step)
        out[i] = ct_rng_uniform(seed, stream, (uint64_t)i) >= rate ? in[i] * s : 0.0f;
}

/* Blocks for the grid-stride loop over n on a GPU of sm_count SMs (host). */
static inline unsigned dropout_blocks(int sm_count, size_t n) {
    size_t blocks = (n + CT_DROPOUT_THREADS - 1) / CT_DROPOUT_THREADS;
    const size_t cap = (size_t)sm_count * 8; /* the grid-stride loop covers the rest */
    return (unsigned)(blocks < cap ? blocks : cap);
}

#endif
