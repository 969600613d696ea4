/* Dropout on the GPU: the launches and the rates that need no kernel. The
 * kernel and the map it computes are in dropout_kernel.cuh. */
#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/dropout_kernel.cuh"

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
    dropout_kernel<<<dropout_blocks(im->sm_count, n), CT_DROPOUT_THREADS, 0, im->stream>>>(n, rate, s, seed, layer,
                                                                                          ctx, in, out);
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
