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
 */
#include "cutrain/rng.h"
#include "kernels/cuda/cuda_common.h"

#define CT_DROPOUT_THREADS 256

static __global__ void dropout_kernel(size_t n, float rate, float s, uint64_t seed, uint32_t layer,
                                      const ct_step_ctx *ctx, const float *in, float *out) {
    const uint64_t stream = CT_STREAM_DROPOUT(ctx->step, layer);
    const size_t step = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step)
        out[i] = ct_rng_uniform(seed, stream, (uint64_t)i) >= rate ? in[i] * s : 0.0f;
}

static void apply_mask(ct_backend *b, size_t n, float rate, uint64_t seed, uint32_t layer, const ct_step_ctx *ctx,
                       const float *in, float *out) {
    if (n == 0) return;
    ct_cuda_impl *im = ct_cuda(b);
    if (!(rate > 0.0f)) {
        /* rate 0 (or a NaN or negative rate, rejected upstream) is the exact
         * identity: no draws, and ctx is not read (evaluation may pass any). */
        if (in != out)
            CT_CUDA_CHECK(cudaMemcpyAsync(out, in, n * sizeof(float), cudaMemcpyDeviceToDevice, im->stream));
        return;
    }
    if (rate >= 1.0f) {
        /* Every u < 1 <= rate: all units drop. Exact +0.0f, as the CPU's
         * select gives (it never forms 0 * inf). */
        CT_CUDA_CHECK(cudaMemsetAsync(out, 0, n * sizeof(float), im->stream));
        return;
    }
    /* Rounded to float once, on the host, by the CPU's own expression. */
    const float s = 1.0f / (1.0f - rate);
    size_t blocks = (n + CT_DROPOUT_THREADS - 1) / CT_DROPOUT_THREADS;
    const size_t cap = (size_t)im->sm_count * 8; /* the grid-stride loop covers the rest */
    if (blocks > cap) blocks = cap;
    dropout_kernel<<<(unsigned)blocks, CT_DROPOUT_THREADS, 0, im->stream>>>(n, rate, s, seed, layer, ctx, in, out);
    CT_LAUNCH_CHECK("dropout_kernel");
}

void cuda_dropout_forward(ct_backend *b, size_t n, float rate, uint64_t seed, uint32_t layer, const ct_step_ctx *ctx,
                          const float *x, float *y) {
    apply_mask(b, n, rate, seed, layer, ctx, x, y);
}

void cuda_dropout_backward(ct_backend *b, size_t n, float rate, uint64_t seed, uint32_t layer,
                           const ct_step_ctx *ctx, const float *dy, float *dx) {
    apply_mask(b, n, rate, seed, layer, ctx, dy, dx);
}
